//! What an audit-log listing asks for (SPEC §6.3): the filters, the sort and
//! the keyset page, parsed from untrusted text into typed values, and the
//! paging rule that turns a cursor into an id range. No I/O: the REST API,
//! the export and the Admin Center page all parse and page the same way.

use std::net::IpAddr;

use crate::audit::{Action, SourceType};
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
    pub source_id: Option<i64>,
    pub actor_id: Option<i64>,
    /// Canonical text of an IP address, as events store it.
    pub ip_address: Option<String>,
    pub action: Option<Action>,
    /// Inclusive bounds on `created_at`.
    pub created_from: Option<Timestamp>,
    pub created_to: Option<Timestamp>,
}

/// The listing order. Ids grow with time, so both orders are keyset orders
/// on the id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuditSort {
    /// `-created_at`, the default.
    #[default]
    NewestFirst,
    /// `created_at`.
    OldestFirst,
}

impl AuditSort {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditSort::NewestFirst => "-created_at",
            AuditSort::OldestFirst => "created_at",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "-created_at" => Some(AuditSort::NewestFirst),
            "created_at" => Some(AuditSort::OldestFirst),
            _ => None,
        }
    }
}

/// Filters and sort of one listing or export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub filter: AuditFilter,
    pub sort: AuditSort,
}

fn positive_id(name: &str, raw: &str) -> Result<i64, QueryError> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| refuse(format!("{name} must be a positive whole number.")))
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
    fn name(self, field: &str) -> &'static str {
        let (api, form) = match field {
            "source_type" => ("filter[source_type]", "Source type"),
            "source_id" => ("filter[source_id]", "Source"),
            "actor_id" => ("filter[actor_id]", "Actor"),
            "ip_address" => ("filter[ip_address]", "IP address"),
            "action" => ("filter[action]", "Action"),
            "created_at" => ("filter[created_at][]", "Date range"),
            _ => ("sort", "Sort"),
        };
        match self {
            Spelling::Api => api,
            Spelling::Form => form,
        }
    }
}

/// Collects parameters one by one, then checks how they combine.
#[derive(Debug, Default)]
pub struct AuditQueryBuilder {
    spelling: Spelling,
    query: AuditQuery,
    seen: Vec<&'static str>,
    created_at: Vec<Timestamp>,
}

impl AuditQueryBuilder {
    pub fn new(spelling: Spelling) -> Self {
        AuditQueryBuilder {
            spelling,
            ..AuditQueryBuilder::default()
        }
    }

    /// Marks `field` as given; refuses it the second time.
    fn once(&mut self, field: &'static str) -> Result<&'static str, QueryError> {
        let shown = self.spelling.name(field);
        if self.seen.contains(&field) {
            return Err(refuse(format!("{shown} is given more than once.")));
        }
        self.seen.push(field);
        Ok(shown)
    }

    /// Takes one parameter by its bare name (`source_type`, `source_id`,
    /// `actor_id`, `ip_address`, `action`, `created_at`, `sort`). Returns
    /// `false` for a name that is not one of these.
    pub fn set(&mut self, name: &str, value: &str) -> Result<bool, QueryError> {
        let value = value.trim();
        match name {
            "source_type" => {
                let shown = self.once("source_type")?;
                let t = SourceType::parse(value).ok_or_else(|| {
                    refuse(format!(
                        "{shown} must be one of api_token, account_setting, account, user."
                    ))
                })?;
                self.query.filter.source_type = Some(t);
            }
            "source_id" => {
                let shown = self.once("source_id")?;
                self.query.filter.source_id = Some(positive_id(shown, value)?);
            }
            "actor_id" => {
                let shown = self.once("actor_id")?;
                self.query.filter.actor_id = Some(positive_id(shown, value)?);
            }
            "ip_address" => {
                let shown = self.once("ip_address")?;
                let ip: IpAddr = value
                    .parse()
                    .map_err(|_| refuse(format!("{shown} must be an IPv4 or IPv6 address.")))?;
                self.query.filter.ip_address = Some(ip.to_string());
            }
            "action" => {
                let shown = self.once("action")?;
                let a = Action::parse(value).ok_or_else(|| {
                    refuse(format!(
                        "{shown} must be one of create, update, deactivate, reactivate, rotate, destroy."
                    ))
                })?;
                self.query.filter.action = Some(a);
            }
            "created_at" => {
                let shown = self.spelling.name("created_at");
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
            "sort" => {
                let shown = self.once("sort")?;
                self.query.sort = AuditSort::parse(value)
                    .ok_or_else(|| refuse(format!("{shown} must be -created_at or created_at.")))?;
            }
            _ => return Ok(false),
        }
        Ok(true)
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
        let names = |f| self.spelling.name(f);
        let (id_name, type_name, range_name) = (names("source_id"), names("source_type"), names("created_at"));
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
            if key == "sort" {
                b.set("sort", value)?;
                continue;
            }
            let Some(rest) = key.strip_prefix("filter[") else {
                continue;
            };
            let name = match rest {
                "created_at][]" => "created_at",
                _ => rest.strip_suffix(']').unwrap_or(""),
            };
            let known = name != "sort" && (name != "created_at" || rest == "created_at][]");
            if !known || !b.set(name, value)? {
                return Err(refuse("Unknown filter. Filters are filter[source_type], filter[source_id], filter[actor_id], filter[ip_address], filter[action] and filter[created_at][]."));
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
            out.push(("filter[source_type]", t.as_str().to_owned()));
        }
        if let Some(id) = f.source_id {
            out.push(("filter[source_id]", id.to_string()));
        }
        if let Some(id) = f.actor_id {
            out.push(("filter[actor_id]", id.to_string()));
        }
        if let Some(ip) = &f.ip_address {
            out.push(("filter[ip_address]", ip.clone()));
        }
        if let Some(a) = f.action {
            out.push(("filter[action]", a.as_str().to_owned()));
        }
        if let (Some(from), Some(to)) = (f.created_from, f.created_to) {
            out.push(("filter[created_at][]", rfc3339(from)));
            out.push(("filter[created_at][]", rfc3339(to)));
        }
        if self.sort != AuditSort::default() {
            out.push(("sort", self.sort.as_str().to_owned()));
        }
        out
    }
}

/// The id range and order of one page query: `id > above`, `id < below`,
/// at most `limit` rows (one more than the page, to learn whether more
/// follow), in descending id order when `descending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seek {
    pub above: Option<i64>,
    pub below: Option<i64>,
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
    pub fn new(sort: AuditSort, after: Option<i64>, before: Option<i64>, size: i64) -> Self {
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
    pub fn continue_after(&self, last: i64) -> Self {
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
        assert_eq!(q.filter.actor_id, Some(3));
        assert_eq!(q.filter.ip_address.as_deref(), Some("::ffff:10.0.0.1"));
        assert_eq!(q.filter.action, Some(Action::Deactivate));
        assert_eq!(q.filter.created_from, Some(1_795_737_600));
        assert_eq!(q.filter.created_to, Some(1_795_737_600 + 9 * 3600));
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

    /// Simulates a table of ids 1..=n and walks it with [`Seek`].
    fn fetch(n: i64, s: &Seek) -> Vec<i64> {
        let mut ids: Vec<i64> = (1..=n)
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
            let flat: Vec<i64> = pages.concat();
            let mut expected: Vec<i64> = (1..=10).collect();
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
        assert_eq!(fetch(10, &s), vec![10, 9, 8, 7]);
        assert_eq!(fetch(10, &s.continue_after(7)), vec![6, 5, 4, 3]);
        let s = Seek::from_start(AuditSort::OldestFirst, 4);
        assert_eq!(fetch(10, &s.continue_after(8)), vec![9, 10]);
    }
}
