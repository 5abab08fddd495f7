//! `/admin/audit-log`: the account's audit events as a table (time, actor,
//! action, source, change, IP), filtered by source type, action, actor and
//! date range, and paged by cursor, newest first (README.md, "Audit log").
//! "View audit log" on a token lands here with
//! `?source_type=api_token&source_id={id}`. The filters and paging are the
//! REST API's own (`latchkey_core::audit_query`), plus the actor's kind: the
//! Actor filter offers the account's people, deleted people who acted, the
//! Operator and System. Yes/no changes read as words ("Suspended"); the
//! stored wording, which the REST API returns, is left as it is. Accounts
//! not on an Enterprise plan see why the log is unavailable.

use std::sync::LazyLock;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use latchkey_app::Page;
use latchkey_core::audit::{Action, ActorType, AuditEvent, SourceType};
use latchkey_core::audit_query::{AuditQuery, AuditQueryBuilder, Param, Spelling};
use latchkey_core::id::AuditEventId;
use latchkey_core::time::{rfc3339, Timestamp};
use strum::IntoEnumIterator;

use super::page::{render, Layout, Nav, PageResult};
use super::session::AdminPage;
use crate::state::AppState;

const PATH: &str = "/admin/audit-log";
const PAGE_SIZE: i64 = 50;

/// The 403 message of docs/api.md ("Errors"), shown instead of the log.
const UNAVAILABLE: &str = "The audit log is available on Enterprise plans.";

/// One event as the table shows it.
pub struct EventView {
    pub id: AuditEventId,
    pub time: String,
    pub time_iso: String,
    pub actor: String,
    /// "Operator" (the CLI) or "System"; empty for a user.
    pub actor_kind: &'static str,
    pub action: &'static str,
    pub source: String,
    pub change: String,
    pub ip: String,
}

fn view(e: &AuditEvent) -> EventView {
    EventView {
        id: e.id,
        // Wraps, if the column needs the room, after the date only.
        time: show_seconds(e.created_at).replace(" UTC", "\u{a0}UTC"),
        time_iso: rfc3339(e.created_at),
        actor: e.actor_name.clone(),
        actor_kind: match e.actor_type {
            ActorType::User => "",
            ActorType::Operator => "Operator",
            ActorType::System => "System",
        },
        action: e.action.label(),
        source: e.source_label.clone(),
        change: friendly_change(e.source_type, &e.change_description),
        ip: e.ip_address.clone().unwrap_or_default(),
    }
}

/// The words of a yes/no change (`suspended changed from false to true`) on
/// the page: the field, then what turning it on and off reads as.
const YES_NO_WORDS: [(&str, &str, &str); 5] = [
    ("verified", "Verified", "Unverified"),
    ("suspended", "Suspended", "Unsuspended"),
    (
        "api_token_access",
        "API token access turned on",
        "API token access turned off",
    ),
    (
        "token_policy.require_expiry",
        "New tokens must expire",
        "New tokens need not expire",
    ),
    (
        "token_policy.require_assigned_user",
        "New tokens must have an assigned user",
        "New tokens need no assigned user",
    ),
];

/// The words for one stored clause, when it is a yes/no change of a field
/// of [`YES_NO_WORDS`].
fn yes_no_words(clause: &str) -> Option<&'static str> {
    let (field, values) = clause.split_once(" changed from ")?;
    let (_, on, off) = YES_NO_WORDS.iter().find(|(f, _, _)| *f == field)?;
    match values {
        "false to true" => Some(on),
        "true to false" => Some(off),
        _ => None,
    }
}

/// A stored change description as the page shows it: each yes/no clause in
/// words, the others as stored, still joined by "; ". Quoted values (names,
/// descriptions) are free text that may hold "; " and look like a clause,
/// so only clauses that certainly are clauses are reworded: every clause of
/// an account-settings event (which quotes nothing), and otherwise those at
/// the end (every record puts its yes/no fields last, and a quoted value
/// always ends in `"`).
fn friendly_change(source_type: SourceType, stored: &str) -> String {
    if source_type == SourceType::AccountSetting {
        return stored
            .split("; ")
            .map(|c| yes_no_words(c).unwrap_or(c))
            .collect::<Vec<_>>()
            .join("; ");
    }
    let mut rest = stored;
    let mut tail = Vec::new();
    loop {
        let (head, last) = rest.rsplit_once("; ").unwrap_or(("", rest));
        match yes_no_words(last) {
            Some(words) if !last.is_empty() => {
                tail.push(words);
                rest = head;
                if head.is_empty() {
                    break;
                }
            }
            _ => break,
        }
    }
    tail.reverse();
    let mut out: Vec<&str> = Vec::with_capacity(tail.len() + 1);
    if !rest.is_empty() {
        out.push(rest);
    }
    out.extend(tail);
    out.join("; ")
}

/// `2026-11-27 09:14:57 UTC`: an audit trail needs the seconds.
fn show_seconds(ts: Timestamp) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp(ts.unix())
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// The filter form's values as submitted, to show them again.
#[derive(Debug, Default)]
pub struct Filters {
    pub source_type: String,
    pub source_id: String,
    pub action: String,
    /// A user's id, `operator` or `system` (`actor`; `actor_id`, the
    /// earlier name, is read too).
    pub actor: String,
    pub from: String,
    pub to: String,
    /// The browser's offset from UTC in minutes east (`tz`, set by the
    /// script): From and To are days of that zone; without it, of UTC.
    pub tz: String,
}

impl Filters {
    fn any(&self) -> bool {
        [
            &self.source_type,
            &self.source_id,
            &self.action,
            &self.actor,
            &self.from,
            &self.to,
        ]
        .iter()
        .any(|v| !v.is_empty())
    }

    /// The query string that keeps these filters, plus `extra`.
    fn href(&self, extra: Option<(&str, String)>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("source_type", &self.source_type),
            ("source_id", &self.source_id),
            ("action", &self.action),
            ("actor", &self.actor),
            ("from", &self.from),
            ("to", &self.to),
            ("tz", &self.tz),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        if let Some((k, v)) = extra {
            q.append_pair(k, &v);
        }
        let q = q.finish();
        if q.is_empty() {
            PATH.to_owned()
        } else {
            format!("{PATH}?{q}")
        }
    }
}

/// The start (`end == false`) or the last second (`end == true`) of a
/// `YYYY-MM-DD` day in the zone `offset` minutes east of UTC.
fn day(raw: &str, end: bool, name: &str, offset: i64) -> Result<Timestamp, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(raw, &format).map_err(|_| format!("{name} must be a date like 2026-11-27."))?;
    let start = Timestamp::from_unix(date.midnight().assume_utc().unix_timestamp() - offset * 60);
    Ok(if end { start.plus_secs(86_399) } else { start })
}

/// `tz`: minutes east of UTC, at most 14 hours either way; anything else is UTC.
fn offset(raw: Option<&str>) -> i64 {
    raw.and_then(|v| v.parse::<i64>().ok())
        .filter(|m| m.abs() <= 14 * 60)
        .unwrap_or(0)
}

/// What the page's query asks for, or why it cannot be answered.
#[derive(Debug, Default)]
struct Request {
    query: AuditQuery,
    after: Option<AuditEventId>,
    before: Option<AuditEventId>,
}

fn cursor(raw: &str) -> Result<AuditEventId, String> {
    raw.parse::<AuditEventId>()
        .ok()
        .filter(|id| *id >= AuditEventId::new(0))
        .ok_or_else(|| "The page link is not valid.".to_owned())
}

fn parse(raw: Option<&str>) -> (Filters, Result<Request, String>) {
    let mut f = Filters::default();
    let mut b = AuditQueryBuilder::new(Spelling::Form);
    let (mut after, mut before) = (None, None);
    let mut outcome: Result<(), String> = Ok(());
    let mut range = (None, None);
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.trim().to_owned()))
        .collect();
    // The form keeps a source's id (after "View audit log") with the type
    // it belongs to, `source_of`: once another source type is chosen, the
    // id names something else and is dropped.
    let first = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let stale_id = first("source_of").is_some_and(|of| of != first("source_type").unwrap_or(""));
    let tz = offset(first("tz"));
    if tz != 0 {
        f.tz = tz.to_string();
    }
    for (key, value) in pairs.iter().filter(|(k, _)| !(stale_id && k == "source_id")) {
        let value = value.clone();
        let step = match key.as_str() {
            "source_type" | "source_id" | "action" => {
                let slot = match key.as_str() {
                    "source_type" => &mut f.source_type,
                    "source_id" => &mut f.source_id,
                    _ => &mut f.action,
                };
                *slot = value.clone();
                if value.is_empty() {
                    Ok(())
                } else {
                    b.set(key, &value).map(|_| ()).map_err(|e| e.0)
                }
            }
            "actor" | "actor_id" => {
                f.actor = value.clone();
                match actor_kind(&value) {
                    _ if value.is_empty() => Ok(()),
                    Some(kind) => {
                        b.set_actor_type(kind);
                        Ok(())
                    }
                    // A user's id, checked as the API's `filter[actor_id]`
                    // (given twice, it is refused as such).
                    None => b.set_param(Param::ActorId, &value).map_err(|e| e.0),
                }
            }
            "from" => {
                f.from = value.clone();
                if value.is_empty() {
                    Ok(())
                } else {
                    day(&value, false, "From", tz).map(|t| range.0 = Some(t))
                }
            }
            "to" => {
                f.to = value.clone();
                if value.is_empty() {
                    Ok(())
                } else {
                    day(&value, true, "To", tz).map(|t| range.1 = Some(t))
                }
            }
            "after" => cursor(&value).map(|n| after = Some(n)),
            "before" => cursor(&value).map(|n| before = Some(n)),
            _ => Ok(()),
        };
        if outcome.is_ok() {
            outcome = step;
        }
    }
    if let Err(e) = outcome {
        return (f, Err(e));
    }
    b.set_range(range.0, range.1);
    match b.finish() {
        Ok(query) => {
            let request = Request {
                query,
                after,
                before: if after.is_some() { None } else { before },
            };
            (f, Ok(request))
        }
        Err(e) => (f, Err(e.0)),
    }
}

/// The actors that are not people, as the Actor filter offers them: the
/// CLI's operator and latchkey itself (`ActorType`'s wire spelling, label).
const ACTOR_KINDS: [(ActorType, &str); 2] = [(ActorType::Operator, "Operator"), (ActorType::System, "System")];

/// `operator` or `system`: an actor filtered by kind rather than by id.
fn actor_kind(value: &str) -> Option<ActorType> {
    ACTOR_KINDS
        .iter()
        .map(|(kind, _)| *kind)
        .find(|kind| kind.as_str() == value)
}

/// A source type's label on the page.
fn source_type_label(kind: SourceType) -> &'static str {
    match kind {
        SourceType::ApiToken => "API token",
        SourceType::User => "User",
        SourceType::AccountSetting => "Account settings",
        SourceType::Account => "Account",
    }
}

/// The order the source-type select lists them in (most asked for first).
const SOURCE_TYPE_ORDER: [SourceType; 4] = [
    SourceType::ApiToken,
    SourceType::User,
    SourceType::AccountSetting,
    SourceType::Account,
];

/// The source types and actions, as (value, label) for the selects, spelled
/// by their enums.
static SOURCE_TYPES: LazyLock<Vec<(&'static str, &'static str)>> = LazyLock::new(|| {
    SOURCE_TYPE_ORDER
        .iter()
        .map(|k| (k.as_str(), source_type_label(*k)))
        .collect()
});

fn actions() -> Vec<(&'static str, &'static str)> {
    Action::iter().map(|a| (a.as_str(), a.label())).collect()
}

#[derive(Template)]
#[template(path = "audit_log.html")]
struct AuditTemplate {
    l: Layout,
    available: bool,
    unavailable: &'static str,
    events: Vec<EventView>,
    f: Filters,
    filtered: bool,
    source_types: &'static [(&'static str, &'static str)],
    actions: Vec<(&'static str, &'static str)>,
    /// Operator and System, as (value, label).
    actor_kinds: Vec<(&'static str, &'static str)>,
    /// The account's people, then deleted people who acted, as (id, label).
    actors: Vec<(String, String)>,
    /// "API token: Jira sync" when the page shows one source's events.
    scoped: Option<String>,
    errors: Vec<String>,
    newer: Option<String>,
    older: Option<String>,
}

pub async fn page(State(state): State<AppState>, admin: AdminPage, RawQuery(raw): RawQuery) -> PageResult {
    let mut t = AuditTemplate {
        l: admin.layout(Nav::AuditLog),
        available: admin.account().plan.can_view_audit_log(),
        unavailable: UNAVAILABLE,
        events: Vec::new(),
        f: Filters::default(),
        filtered: false,
        source_types: SOURCE_TYPES.as_slice(),
        actions: actions(),
        actor_kinds: ACTOR_KINDS.iter().map(|(k, label)| (k.as_str(), *label)).collect(),
        actors: Vec::new(),
        scoped: None,
        errors: Vec::new(),
        newer: None,
        older: None,
    };
    if !t.available {
        return Ok(render(StatusCode::FORBIDDEN, &t));
    }
    let (users, _) = state
        .app
        .users_page(
            &admin.access,
            Page {
                after: None,
                before: None,
                size: 100,
            },
        )
        .await?;
    // Deleted people stay in the log as actors, so they stay in the filter.
    let deleted = state.app.deleted_audit_actors(&admin.access, 100).await?;
    t.actors = users
        .into_iter()
        .map(|u| (u.id.to_string(), u.name))
        .chain(
            deleted
                .into_iter()
                .map(|u| (u.id.to_string(), format!("{} (deleted)", u.name))),
        )
        .collect();
    let (filters, request) = parse(raw.as_deref());
    t.filtered = filters.any();
    let known = |v: &str| actor_kind(v).is_some() || t.actors.iter().any(|(id, _)| id == v);
    if !filters.actor.is_empty() && !known(&filters.actor) {
        t.actors
            .push((filters.actor.clone(), format!("User {}", filters.actor)));
    }
    let request = match request {
        Ok(r) => r,
        Err(message) => {
            t.f = filters;
            t.errors.push(message);
            return Ok(render(StatusCode::BAD_REQUEST, &t));
        }
    };
    let (events, has_more) = state
        .app
        .audit_page(&admin.access, &request.query, request.after, request.before, PAGE_SIZE)
        .await?;
    let backwards = request.before.is_some();
    let (first, last) = (events.first().map(|e| e.id), events.last().map(|e| e.id));
    if (!backwards && has_more) || (backwards && last.is_some()) {
        t.older = last.map(|id| filters.href(Some(("after", id.to_string()))));
    }
    if (backwards && has_more) || (request.after.is_some() && first.is_some()) {
        t.newer = first.map(|id| filters.href(Some(("before", id.to_string()))));
    }
    let q = &request.query.filter;
    if let (Some(kind), Some(id)) = (q.source_type, q.source_id) {
        t.scoped = Some(match events.first() {
            Some(e) => e.source_label.clone(),
            None => {
                format!("{} {id}", source_type_label(kind))
            }
        });
    }
    t.events = events.iter().map(view).collect();
    t.f = filters;
    Ok(render(StatusCode::OK, &t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::id::UserId;

    #[test]
    fn form_filters_parse_into_the_api_query() {
        let (f, r) = parse(Some(
            "source_type=api_token&source_id=7&action=&actor=3&from=2026-11-27&to=2026-11-27&after=90",
        ));
        let r = r.expect("valid");
        assert_eq!(f.source_id, "7");
        assert_eq!(r.query.filter.source_type, Some(SourceType::ApiToken));
        assert_eq!(r.query.filter.source_id, Some(7));
        assert_eq!(r.query.filter.action, None);
        assert_eq!(r.query.filter.actor_id, Some(UserId::new(3)));
        assert_eq!(r.query.filter.created_from, Some(Timestamp::from_unix(1_795_737_600)));
        assert_eq!(
            r.query.filter.created_to,
            Some(Timestamp::from_unix(1_795_737_600 + 86_399))
        );
        assert_eq!(r.after, Some(AuditEventId::new(90)));
        assert_eq!(
            f.href(Some(("before", "5".into()))),
            "/admin/audit-log?source_type=api_token&source_id=7&actor=3&from=2026-11-27&to=2026-11-27&before=5"
        );
    }

    #[test]
    fn bad_form_filters_say_what_is_wrong_in_the_forms_words() {
        for (q, message) in [
            ("source_id=7", "Source requires Source type."),
            ("source_type=token", "Source type must be one of"),
            ("action=delete", "Action must be one of"),
            ("actor=me", "Actor must be a positive whole number."),
            ("actor=user", "Actor must be a positive whole number."),
            ("actor=3&actor_id=4", "Actor is given more than once."),
            ("from=27/11/2026", "From must be a date like 2026-11-27."),
            (
                "from=2026-11-28&to=2026-11-27",
                "The start of Date range must not be after its end.",
            ),
            ("after=x", "The page link is not valid."),
        ] {
            let (_, r) = parse(Some(q));
            let e = r.expect_err(q);
            assert!(e.starts_with(message), "{q}: {e}");
        }
    }

    #[test]
    fn days_are_of_the_browsers_zone_when_it_says_so() {
        let (f, r) = parse(Some("from=2026-11-27&to=2026-11-27&tz=-480"));
        let q = r.expect("valid").query.filter;
        // Midnight at UTC-8 is 08:00 UTC.
        assert_eq!(q.created_from, Some(Timestamp::from_unix(1_795_737_600 + 8 * 3600)));
        assert_eq!(
            q.created_to,
            Some(Timestamp::from_unix(1_795_737_600 + 8 * 3600 + 86_399))
        );
        assert_eq!(f.tz, "-480");
        assert!(f.href(None).ends_with("&tz=-480"), "{}", f.href(None));
        for bad in ["tz=9999", "tz=x", "tz="] {
            let (f, r) = parse(Some(&format!("from=2026-11-27&{bad}")));
            assert_eq!(
                r.expect(bad).query.filter.created_from,
                Some(Timestamp::from_unix(1_795_737_600))
            );
            assert_eq!(f.tz, "", "{bad}");
        }
    }

    #[test]
    fn a_source_id_of_another_source_type_is_dropped() {
        let (f, r) = parse(Some("source_id=3&source_of=api_token&source_type=user"));
        let r = r.expect("valid");
        assert_eq!((f.source_id.as_str(), r.query.filter.source_id), ("", None));
        assert_eq!(r.query.filter.source_type, Some(SourceType::User));
        let (f, r) = parse(Some("source_id=3&source_of=api_token&source_type="));
        assert_eq!(
            (f.source_id.as_str(), r.expect("valid").query.filter.source_id),
            ("", None)
        );
        let (_, r) = parse(Some("source_id=3&source_of=api_token&source_type=api_token"));
        assert_eq!(r.expect("valid").query.filter.source_id, Some(3));
    }

    #[test]
    fn the_actor_is_a_user_by_id_or_the_operator_or_system_by_kind() {
        for (q, kind, id) in [
            ("actor=operator", Some(ActorType::Operator), None),
            ("actor=system", Some(ActorType::System), None),
            ("actor=3", None, Some(UserId::new(3))),
            ("actor_id=3", None, Some(UserId::new(3))),
            ("actor=", None, None),
        ] {
            let (f, r) = parse(Some(q));
            let filter = r.expect(q).query.filter;
            assert_eq!((filter.actor_type, filter.actor_id), (kind, id), "{q}");
            assert_eq!(f.actor, q.split_once('=').map_or("", |(_, v)| v), "{q}");
        }
        let (f, _) = parse(Some("actor=system"));
        assert_eq!(f.href(None), "/admin/audit-log?actor=system");
    }

    #[test]
    fn yes_no_changes_read_as_words_and_quoted_text_is_left_alone() {
        use SourceType::{AccountSetting, ApiToken, User};
        for (kind, stored, shown) in [
            (User, "suspended changed from false to true", "Suspended"),
            (User, "suspended changed from true to false", "Unsuspended"),
            (
                User,
                r#"name changed from "A" to "B"; verified changed from false to true; suspended changed from true to false"#,
                r#"name changed from "A" to "B"; Verified; Unsuspended"#,
            ),
            (User, "password changed", "password changed"),
            (User, "", ""),
            (
                User,
                r#"email changed from "a@x.io" to "b@y.io""#,
                r#"email changed from "a@x.io" to "b@y.io""#,
            ),
            // A name that looks like clauses stays as typed; the real
            // clause after it is reworded.
            (
                User,
                r#"name changed from "A" to "x; suspended changed from false to true; y"; verified changed from true to false"#,
                r#"name changed from "A" to "x; suspended changed from false to true; y"; Unverified"#,
            ),
            (
                ApiToken,
                r#"description changed from "A" to "suspended changed from false to true""#,
                r#"description changed from "A" to "suspended changed from false to true""#,
            ),
            (
                AccountSetting,
                "api_token_access changed from false to true; token_policy.max_lifetime_days changed from not set to 90; token_policy.require_expiry changed from false to true",
                "API token access turned on; token_policy.max_lifetime_days changed from not set to 90; New tokens must expire",
            ),
            (User, "verified changed from maybe to true", "verified changed from maybe to true"),
        ] {
            assert_eq!(friendly_change(kind, stored), shown, "{stored}");
        }
    }

    #[test]
    fn times_show_the_seconds() {
        assert_eq!(
            show_seconds(Timestamp::from_unix(1_795_770_897)),
            "2026-11-27 09:14:57 UTC"
        );
    }
}
