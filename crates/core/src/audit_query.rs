//! What an audit-log listing asks for (README.md, "Audit log"; docs/api.md
//! has the parameters and their 400 errors): the filters, the sort and
//! the keyset page, parsed from untrusted text into typed values, and the
//! paging rule that turns a cursor into an id range. No I/O: the REST API,
//! the export and the Admin Center page all parse and page the same way.

use std::net::IpAddr;

use serde::Serialize;
use strum::{Display, EnumIter, EnumString, IntoEnumIterator, IntoStaticStr, VariantNames};

use crate::audit::{Action, ActorType, SourceType};
use crate::id::{AuditEventId, UserId};
use crate::time::{parse_rfc3339, rfc3339, Timestamp};

/// A refused query, with a message that names the parameter but never
/// echoes its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

fn refuse(message: impl Into<String>) -> QueryError {
    QueryError(message.into())
}

/// Which events to list. Every field narrows the listing; `None` does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub source_type: Option<SourceType>,
    /// A row id of the kind `source_type` names (see
    /// `AuditEvent::source_id`).
    pub source_id: Option<i64>,
    pub actor_id: Option<UserId>,
    /// Who acted, by kind: the Admin Center's Actor filter offers Operator
    /// and System this way. The REST API has no parameter for it
    /// (docs/api.md lists its filters), so [`AuditQuery::from_api_pairs`]
    /// never sets it and [`AuditQuery::api_pairs`] cannot carry it.
    pub actor_type: Option<ActorType>,
    /// Canonical text of an IP address, as events store it.
    pub ip_address: Option<String>,
    pub action: Option<Action>,
    /// Inclusive bounds on `created_at`.
    pub created_from: Option<Timestamp>,
    pub created_to: Option<Timestamp>,
}

/// The listing order, spelled as the `sort` parameter's values. Ids grow
/// with time, so both orders are keyset orders on the id.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    IntoStaticStr,
    EnumString,
    VariantNames,
    EnumIter,
    Display,
)]
pub enum AuditSort {
    /// `-created_at`, the default.
    #[default]
    #[serde(rename = "-created_at")]
    #[strum(serialize = "-created_at")]
    NewestFirst,
    /// `created_at`.
    #[serde(rename = "created_at")]
    #[strum(serialize = "created_at")]
    OldestFirst,
}

/// Filters and sort of one listing or export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub filter: AuditFilter,
    pub sort: AuditSort,
}

/// The refusal of a `filter[...]` that names no filter; it lists them all.
fn unknown_filter() -> QueryError {
    let filters: Vec<&str> = Param::iter()
        .filter(|p| *p != Param::Sort)
        .map(Param::api_name)
        .collect();
    let (last, rest) = filters.split_last().map_or(("", &[][..]), |(l, r)| (*l, r));
    refuse(format!("Unknown filter. Filters are {} and {last}.", rest.join(", ")))
}

fn positive_id(name: &str, raw: &str) -> Result<i64, QueryError> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| refuse(format!("{name} must be a positive whole number.")))
}

/// One parameter of a listing, by its bare name (`source_type`, ...,
/// `created_at`, `sort`): the name [`AuditQueryBuilder::set`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, IntoStaticStr, EnumString, VariantNames, EnumIter, Display)]
#[strum(serialize_all = "snake_case")]
pub enum Param {
    SourceType,
    SourceId,
    ActorId,
    IpAddress,
    Action,
    CreatedAt,
    Sort,
}

impl Param {
    /// The REST API's name for it (README.md, "Audit log").
    pub fn api_name(self) -> &'static str {
        match self {
            Param::SourceType => "filter[source_type]",
            Param::SourceId => "filter[source_id]",
            Param::ActorId => "filter[actor_id]",
            Param::IpAddress => "filter[ip_address]",
            Param::Action => "filter[action]",
            Param::CreatedAt => "filter[created_at][]",
            Param::Sort => "sort",
        }
    }

    /// The Admin Center filter form's label for it.
    pub fn form_label(self) -> &'static str {
        match self {
            Param::SourceType => "Source type",
            Param::SourceId => "Source",
            Param::ActorId => "Actor",
            Param::IpAddress => "IP address",
            Param::Action => "Action",
            Param::CreatedAt => "Date range",
            Param::Sort => "Sort",
        }
    }
}

/// How the caller names the parameters, so that messages use its words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Spelling {
    /// The REST API: `filter[source_type]`, `filter[created_at][]`, `sort`.
    #[default]
    Api,
    /// The Admin Center's filter form: "Source type", "Date range".
    Form,
}

impl Spelling {
    fn name(self, param: Param) -> &'static str {
        match self {
            Spelling::Api => param.api_name(),
            Spelling::Form => param.form_label(),
        }
    }
}

/// Collects parameters one by one, then checks how they combine.
#[derive(Debug, Default)]
pub struct AuditQueryBuilder {
    spelling: Spelling,
    query: AuditQuery,
    seen: Vec<Param>,
    created_at: Vec<Timestamp>,
}

impl AuditQueryBuilder {
    pub fn new(spelling: Spelling) -> Self {
        AuditQueryBuilder {
            spelling,
            ..AuditQueryBuilder::default()
        }
    }

    /// Marks `param` as given; refuses it the second time.
    fn once(&mut self, param: Param) -> Result<&'static str, QueryError> {
        let shown = self.spelling.name(param);
        if self.seen.contains(&param) {
            return Err(refuse(format!("{shown} is given more than once.")));
        }
        self.seen.push(param);
        Ok(shown)
    }

    /// Takes one parameter by its bare name (`source_type`, `source_id`,
    /// `actor_id`, `ip_address`, `action`, `created_at`, `sort`). Returns
    /// `false` for a name that is not one of these.
    pub fn set(&mut self, name: &str, value: &str) -> Result<bool, QueryError> {
        let Ok(param) = name.parse::<Param>() else {
            return Ok(false);
        };
        self.set_param(param, value)?;
        Ok(true)
    }

    /// Takes one parameter.
    pub fn set_param(&mut self, param: Param, value: &str) -> Result<(), QueryError> {
        let value = value.trim();
        match param {
            Param::SourceType => {
                let shown = self.once(param)?;
                let t = SourceType::parse(value)
                    .ok_or_else(|| refuse(format!("{shown} must be one of {}.", SourceType::VARIANTS.join(", "))))?;
                self.query.filter.source_type = Some(t);
            }
            Param::SourceId => {
                let shown = self.once(param)?;
                self.query.filter.source_id = Some(positive_id(shown, value)?);
            }
            Param::ActorId => {
                let shown = self.once(param)?;
                self.query.filter.actor_id = Some(UserId::new(positive_id(shown, value)?));
            }
            Param::IpAddress => {
                let shown = self.once(param)?;
                let ip: IpAddr = value
                    .parse()
                    .map_err(|_| refuse(format!("{shown} must be an IPv4 or IPv6 address.")))?;
                self.query.filter.ip_address = Some(ip.to_string());
            }
            Param::Action => {
                let shown = self.once(param)?;
                let a = Action::parse(value)
                    .ok_or_else(|| refuse(format!("{shown} must be one of {}.", Action::VARIANTS.join(", "))))?;
                self.query.filter.action = Some(a);
            }
            Param::CreatedAt => {
                let shown = self.spelling.name(param);
                if self.created_at.len() == 2 {
                    return Err(refuse(format!("{shown} must be given exactly twice: start, then end.")));
                }
                let t = parse_rfc3339(value).ok_or_else(|| {
                    refuse(format!(
                        "{shown} must be an RFC 3339 time such as 2026-11-27T09:14:57Z."
                    ))
                })?;
                self.created_at.push(t);
            }
            Param::Sort => {
                let shown = self.once(param)?;
                self.query.sort = value
                    .parse::<AuditSort>()
                    .map_err(|_| refuse(format!("{shown} must be {}.", AuditSort::VARIANTS.join(" or "))))?;
            }
        }
        Ok(())
    }

    /// Narrows the listing to one kind of actor (the Admin Center's Actor
    /// filter; not a REST parameter).
    pub fn set_actor_type(&mut self, actor_type: ActorType) {
        self.query.filter.actor_type = Some(actor_type);
    }

    /// Sets either end of the date range from an already-parsed bound (for
    /// a form whose inputs are dates rather than RFC 3339 times).
    pub fn set_range(&mut self, from: Option<Timestamp>, to: Option<Timestamp>) {
        self.query.filter.created_from = from;
        self.query.filter.created_to = to;
    }

    /// Checks how the parameters combine: a source id needs a source type,
    /// and a range given as `created_at` needs both ends; no range may end
    /// before it starts.
    pub fn finish(mut self) -> Result<AuditQuery, QueryError> {
        let names = |p| self.spelling.name(p);
        let (id_name, type_name, range_name) = (
            names(Param::SourceId),
            names(Param::SourceType),
            names(Param::CreatedAt),
        );
        let f = &mut self.query.filter;
        if f.source_id.is_some() && f.source_type.is_none() {
            return Err(refuse(format!("{id_name} requires {type_name}.")));
        }
        match self.created_at.as_slice() {
            [] => {}
            [from, to] => {
                f.created_from = Some(*from);
                f.created_to = Some(*to);
            }
            _ => {
                return Err(refuse(format!(
                    "{range_name} must be given exactly twice: start, then end."
                )))
            }
        }
        if let (Some(from), Some(to)) = (f.created_from, f.created_to) {
            if from > to {
                return Err(refuse(format!("The start of {range_name} must not be after its end.")));
            }
        }
        Ok(self.query)
    }
}

impl AuditQuery {
    /// Parses the REST API's parameters (`filter[...]`, `sort`), already
    /// percent-decoded. Other parameters are left to the caller; an unknown
    /// `filter[...]` is refused.
    pub fn from_api_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self, QueryError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut b = AuditQueryBuilder::new(Spelling::Api);
        for (key, value) in pairs {
            let (key, value) = (key.as_ref(), value.as_ref());
            match Param::iter().find(|p| p.api_name() == key) {
                Some(param) => b.set_param(param, value)?,
                None if key.starts_with("filter[") => return Err(unknown_filter()),
                // `page[...]` and the like are the caller's.
                None => {}
            }
        }
        b.finish()
    }

    /// The canonical REST parameters of this query, for the `links` that
    /// carry it from page to page.
    pub fn api_pairs(&self) -> Vec<(&'static str, String)> {
        let f = &self.filter;
        let mut out = Vec::new();
        if let Some(t) = f.source_type {
            out.push((Param::SourceType.api_name(), t.to_string()));
        }
        if let Some(id) = f.source_id {
            out.push((Param::SourceId.api_name(), id.to_string()));
        }
        if let Some(id) = f.actor_id {
            out.push((Param::ActorId.api_name(), id.to_string()));
        }
        if let Some(ip) = &f.ip_address {
            out.push((Param::IpAddress.api_name(), ip.clone()));
        }
        if let Some(a) = f.action {
            out.push((Param::Action.api_name(), a.to_string()));
        }
        if let (Some(from), Some(to)) = (f.created_from, f.created_to) {
            out.push((Param::CreatedAt.api_name(), rfc3339(from)));
            out.push((Param::CreatedAt.api_name(), rfc3339(to)));
        }
        if self.sort != AuditSort::default() {
            out.push((Param::Sort.api_name(), self.sort.to_string()));
        }
        out
    }
}

/// The id range and order of one page query: `id > above`, `id < below`,
/// at most `limit` rows (one more than the page, to learn whether more
/// follow), in descending id order when `descending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seek {
    pub above: Option<AuditEventId>,
    pub below: Option<AuditEventId>,
    pub descending: bool,
    pub limit: i64,
    /// The rows come back in the opposite of the listing order (a step
    /// backwards) and must be reversed.
    reverse: bool,
    size: i64,
}

impl Seek {
    /// The query for the page of `size` rows after (or before) the row with
    /// id `after` (`before`) in `sort` order. Rows inserted while a client
    /// walks forwards never shift a page: a cursor is an id, not an offset.
    pub fn new(sort: AuditSort, after: Option<AuditEventId>, before: Option<AuditEventId>, size: i64) -> Self {
        let newest_first = sort == AuditSort::NewestFirst;
        let (above, below, descending, reverse) = match (after, before) {
            (_, Some(b)) if newest_first => (Some(b), None, false, true),
            (_, Some(b)) => (None, Some(b), true, true),
            (Some(a), None) if newest_first => (None, Some(a), true, false),
            (Some(a), None) => (Some(a), None, false, false),
            (None, None) => (None, None, newest_first, false),
        };
        Seek {
            above,
            below,
            descending,
            limit: size + 1,
            reverse,
            size,
        }
    }

    /// Every row from the start, in listing order, `limit` at a time (the
    /// export walks this way).
    pub fn from_start(sort: AuditSort, limit: i64) -> Self {
        let mut s = Seek::new(sort, None, None, limit);
        s.limit = limit;
        s
    }

    /// The next batch of a walk from the start, after the row with id `last`.
    pub fn continue_after(&self, last: AuditEventId) -> Self {
        let mut s = *self;
        if self.descending {
            s.below = Some(last);
        } else {
            s.above = Some(last);
        }
        s
    }

    /// Turns the fetched rows into the page, in listing order, and whether
    /// more rows follow in the direction of travel.
    pub fn finish<T>(&self, mut rows: Vec<T>) -> (Vec<T>, bool) {
        let has_more = rows.len() as i64 > self.size;
        rows.truncate(self.size.max(0) as usize);
        if self.reverse {
            rows.reverse();
        }
        (rows, has_more)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &[(&str, &str)]) -> Result<AuditQuery, QueryError> {
        AuditQuery::from_api_pairs(q.iter().copied())
    }

    #[test]
    fn every_filter_parses_into_its_typed_value() {
        let q = parse(&[
            ("filter[source_type]", "apitoken"),
            ("filter[source_id]", "7"),
            ("filter[actor_id]", "3"),
            ("filter[ip_address]", "::ffff:10.0.0.1"),
            ("filter[action]", "deactivate"),
            ("filter[created_at][]", "2026-11-27T00:00:00Z"),
            ("filter[created_at][]", "2026-11-27T10:00:00+01:00"),
            ("sort", "created_at"),
            ("page[size]", "5"),
        ])
        .expect("valid");
        assert_eq!(q.filter.source_type, Some(SourceType::ApiToken));
        assert_eq!(q.filter.source_id, Some(7));
        assert_eq!(q.filter.actor_id, Some(UserId::new(3)));
        assert_eq!(q.filter.ip_address.as_deref(), Some("::ffff:10.0.0.1"));
        assert_eq!(q.filter.action, Some(Action::Deactivate));
        let midnight = Timestamp::from_unix(1_795_737_600);
        assert_eq!(q.filter.created_from, Some(midnight));
        assert_eq!(q.filter.created_to, Some(midnight.plus_secs(9 * 3600)));
        assert_eq!(q.sort, AuditSort::OldestFirst);
    }

    #[test]
    fn no_parameters_mean_every_event_newest_first() {
        assert_eq!(parse(&[]), Ok(AuditQuery::default()));
    }

    #[test]
    fn invalid_filters_are_refused_without_echoing_them() {
        let cases: &[&[(&str, &str)]] = &[
            &[("filter[source_type]", "token")],
            &[("filter[source_id]", "7")],
            &[("filter[source_type]", "user"), ("filter[source_id]", "x")],
            &[("filter[source_type]", "user"), ("filter[source_id]", "0")],
            &[("filter[actor_id]", "-3")],
            &[("filter[actor_id]", "99999999999999999999")],
            &[("filter[ip_address]", "10.0.0.256")],
            &[("filter[action]", "delete")],
            &[("filter[created_at][]", "2026-11-27T00:00:00Z")],
            &[
                ("filter[created_at][]", "yesterday"),
                ("filter[created_at][]", "2026-11-27T00:00:00Z"),
            ],
            &[
                ("filter[created_at][]", "2026-11-28T00:00:00Z"),
                ("filter[created_at][]", "2026-11-27T00:00:00Z"),
            ],
            &[
                ("filter[created_at][]", "2026-11-27T00:00:00Z"),
                ("filter[created_at][]", "2026-11-27T00:00:00Z"),
                ("filter[created_at][]", "2026-11-27T00:00:00Z"),
            ],
            &[("filter[created_at]", "2026-11-27T00:00:00Z")],
            &[("filter[colour]", "lk_secret")],
            &[("filter[action]", "create"), ("filter[action]", "update")],
            &[("sort", "id")],
            &[("filter[sort]", "created_at")],
        ];
        for case in cases {
            let err = parse(case).expect_err(&format!("{case:?}"));
            assert!(!err.0.contains("lk_secret") && !err.0.contains("yesterday"), "{err}");
        }
    }

    #[test]
    fn refusals_list_the_accepted_values() {
        let message = |q: &[(&str, &str)]| parse(q).expect_err("refused").0;
        assert_eq!(
            message(&[("filter[source_type]", "token")]),
            "filter[source_type] must be one of api_token, account_setting, account, user."
        );
        assert_eq!(
            message(&[("filter[action]", "delete")]),
            "filter[action] must be one of create, update, deactivate, reactivate, rotate, destroy, prune."
        );
        assert_eq!(message(&[("sort", "id")]), "sort must be -created_at or created_at.");
        assert_eq!(
            message(&[("filter[colour]", "red")]),
            "Unknown filter. Filters are filter[source_type], filter[source_id], filter[actor_id], filter[ip_address], filter[action] and filter[created_at][]."
        );
        for key in ["filter[created_at]", "filter[sort]", "filter[source_type", "filter[]"] {
            assert!(message(&[(key, "x")]).starts_with("Unknown filter."), "{key}");
        }
    }

    #[test]
    fn the_builder_takes_bare_names_and_reports_in_the_callers_words() {
        let mut b = AuditQueryBuilder::new(Spelling::Form);
        assert_eq!(b.set("colour", "red"), Ok(false));
        assert_eq!(b.set("filter[action]", "create"), Ok(false));
        assert_eq!(b.set("action", "create"), Ok(true));
        assert_eq!(
            b.set("action", "create"),
            Err(QueryError("Action is given more than once.".to_owned()))
        );
        assert_eq!(
            b.set("source_type", "x").map_err(|e| e.0),
            Err("Source type must be one of api_token, account_setting, account, user.".to_owned())
        );
        assert!(Param::iter().all(|p| p.to_string().parse() == Ok(p)));
    }

    #[test]
    fn the_api_names_wrap_the_bare_names() {
        for p in Param::iter() {
            let expected = match p {
                Param::Sort => "sort".to_owned(),
                Param::CreatedAt => format!("filter[{p}][]"),
                _ => format!("filter[{p}]"),
            };
            assert_eq!(p.api_name(), expected);
        }
    }

    #[test]
    fn serde_and_strum_spell_every_sort_alike() {
        crate::wire::assert_one_spelling::<AuditSort>();
        assert_eq!(AuditSort::default().to_string(), "-created_at");
    }

    #[test]
    fn canonical_pairs_round_trip() {
        let q = parse(&[
            ("filter[source_type]", "apitoken"),
            ("filter[source_id]", "7"),
            ("filter[created_at][]", "2026-11-27T00:00:00Z"),
            ("filter[created_at][]", "2026-11-28T00:00:00Z"),
            ("sort", "created_at"),
        ])
        .expect("valid");
        let again = AuditQuery::from_api_pairs(q.api_pairs()).expect("canonical");
        assert_eq!(again, q);
        assert_eq!(q.api_pairs()[0], ("filter[source_type]", "api_token".to_owned()));
    }

    fn ids(range: impl IntoIterator<Item = i64>) -> Vec<AuditEventId> {
        range.into_iter().map(AuditEventId::new).collect()
    }

    /// Simulates a table of ids 1..=n and walks it with [`Seek`].
    fn fetch(n: i64, s: &Seek) -> Vec<AuditEventId> {
        let mut ids: Vec<AuditEventId> = ids(1..=n)
            .into_iter()
            .filter(|id| s.above.is_none_or(|a| *id > a) && s.below.is_none_or(|b| *id < b))
            .collect();
        if s.descending {
            ids.reverse();
        }
        ids.truncate(s.limit as usize);
        ids
    }

    #[test]
    fn walking_forwards_then_backwards_visits_each_page_in_order() {
        for sort in [AuditSort::NewestFirst, AuditSort::OldestFirst] {
            let mut pages = Vec::new();
            let mut after = None;
            loop {
                let seek = Seek::new(sort, after, None, 3);
                let (page, more) = seek.finish(fetch(10, &seek));
                after = page.last().copied();
                pages.push(page);
                if !more {
                    break;
                }
            }
            let flat: Vec<AuditEventId> = pages.concat();
            let mut expected = ids(1..=10);
            if sort == AuditSort::NewestFirst {
                expected.reverse();
            }
            assert_eq!(flat, expected, "{sort:?}");
            // Back from the last page: each earlier page, in listing order.
            let mut before = pages.last().and_then(|p| p.first().copied());
            for want in pages.iter().rev().skip(1) {
                let seek = Seek::new(sort, None, before, 3);
                let (page, _) = seek.finish(fetch(10, &seek));
                assert_eq!(&page, want, "{sort:?}");
                before = page.first().copied();
            }
            let seek = Seek::new(sort, None, before, 3);
            assert_eq!(seek.finish(fetch(10, &seek)), (vec![], false));
        }
    }

    #[test]
    fn an_export_walk_continues_where_the_last_batch_ended() {
        let s = Seek::from_start(AuditSort::NewestFirst, 4);
        assert_eq!(fetch(10, &s), ids([10, 9, 8, 7]));
        assert_eq!(fetch(10, &s.continue_after(AuditEventId::new(7))), ids([6, 5, 4, 3]));
        let s = Seek::from_start(AuditSort::OldestFirst, 4);
        assert_eq!(fetch(10, &s.continue_after(AuditEventId::new(8))), ids([9, 10]));
    }
}
