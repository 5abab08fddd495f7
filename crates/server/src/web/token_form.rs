//! The restriction fields of the Add and Edit API token forms (README.md,
//! "First run: a token from the browser", "IP allowlists"): **Access**
//! (full, or a checklist of the deployment's scopes grouped by resource),
//! **Assigned user**, **Expires**, **Allowed IPs** and **Rate limit**. Plain
//! form fields, so the forms work without JavaScript; the rules (offered
//! scopes, a user of the account, an expiry that only moves earlier and
//! stays in the future, valid networks, a limit within bounds) are the
//! domain's and the store's, and their messages are shown on the form, next
//! to their field when they have one.
//!
//! The fields: `access` (`full` or `restricted`), `scope` (repeated: `read`,
//! `write`, `{resource}:read`, `{resource}:write`), `assigned_user_id` (""
//! for anyone in the account, else a user id), `expires` (`never`, `keep`,
//! `7`, `30`, `90` or `date`) and `expires_on` (`YYYY-MM-DD`: the token
//! stops working at the end of that day, 23:59:59 UTC), `allowed_ips` (CIDRs
//! or addresses, one a line or separated by commas; empty for any address),
//! `rate_limit_requests` and `rate_limit_per_seconds` (both empty for no
//! limit). A field that is not sent at all leaves the token's value alone
//! on Edit and is the default (full access, anyone, never, any address, no
//! limit) on Add.

use std::collections::{BTreeSet, HashMap};

use latchkey_app::{AdminAccess, App, Page};
use latchkey_core::{
    allowlist::IpAllowlist,
    error::Invalid,
    id::UserId,
    rate_limit::RateLimit,
    scope::{ScopeCatalog, Scopes},
    time::Timestamp,
    token::ApiToken,
    user::User,
};

use super::page::{capitalised, show_time, PageError};
use super::session::Fields;

const DAY: i64 = 86_400;
/// The "in N days" choices of **Expires**.
const PRESET_DAYS: [i64; 3] = [7, 30, 90];
/// Users are read in pages of this many for the **Assigned user** select.
const USER_PAGE: i64 = 1000;

/// What an admin entered (or, on a fresh Edit form, what the token holds),
/// kept as text so that a refused form shows it again unchanged.
#[derive(Debug, Clone, Default)]
pub struct Entered {
    pub restricted: bool,
    /// The ticked boxes, as `read`, `write`, `{resource}:read`,
    /// `{resource}:write` (a stored `{resource}` ticks both of its boxes).
    pub ticked: BTreeSet<String>,
    /// "" for anyone in the account.
    pub assigned: String,
    pub expires: String,
    pub expires_on: String,
    /// As typed; on a fresh Edit form, one network a line.
    pub allowed_ips: String,
    pub rate_requests: String,
    pub rate_per_seconds: String,
}

impl Entered {
    /// The form's fields as sent.
    pub fn from_fields(fields: &Fields) -> Entered {
        Entered {
            restricted: fields.get("access") == Some("restricted"),
            ticked: fields.all("scope").flat_map(expand_name).collect(),
            assigned: fields.text("assigned_user_id").trim().to_owned(),
            expires: fields.text("expires").to_owned(),
            expires_on: fields.text("expires_on").trim().to_owned(),
            allowed_ips: fields.text("allowed_ips").trim().to_owned(),
            rate_requests: fields.text("rate_limit_requests").trim().to_owned(),
            rate_per_seconds: fields.text("rate_limit_per_seconds").trim().to_owned(),
        }
    }

    /// A fresh Add form: full access, anyone, never.
    pub fn new_token() -> Entered {
        Entered {
            expires: "never".to_owned(),
            ..Entered::default()
        }
    }

    /// A fresh Edit form: the token as it is, its expiry kept.
    pub fn of_token(t: &ApiToken) -> Entered {
        Entered {
            restricted: t.scopes.is_some(),
            ticked: t.scopes.as_ref().map(coverage).unwrap_or_default(),
            assigned: t.assigned_user_id.map(|u| u.to_string()).unwrap_or_default(),
            expires: "keep".to_owned(),
            expires_on: String::new(),
            allowed_ips: t
                .allowed_ips
                .as_ref()
                .map(|l| l.names().collect::<Vec<_>>().join("\n"))
                .unwrap_or_default(),
            rate_requests: t.rate_limit.map(|r| r.requests.to_string()).unwrap_or_default(),
            rate_per_seconds: t.rate_limit.map(|r| r.per_seconds.to_string()).unwrap_or_default(),
        }
    }
}

/// The boxes a scope name ticks: `users` ticks `users:read` and
/// `users:write`; other names tick their own box.
fn expand_name(name: &str) -> Vec<String> {
    let name = name.trim();
    if name.is_empty() || name.contains(':') || name == "read" || name == "write" {
        vec![name.to_owned()]
    } else {
        vec![format!("{name}:read"), format!("{name}:write")]
    }
}

/// What scopes cover, as the boxes they tick: two lists that tick the same
/// boxes grant the same requests.
fn coverage(scopes: &Scopes) -> BTreeSet<String> {
    scopes.names().flat_map(|n| expand_name(&n)).collect()
}

/// The restriction fields of a submitted form. `None`: the field was not
/// sent (Edit leaves it alone; Add takes the default).
#[derive(Debug, Default)]
pub struct Parsed {
    pub scopes: Option<Option<Scopes>>,
    pub assigned_user_id: Option<Option<UserId>>,
    pub expires_at: Option<Option<Timestamp>>,
    pub allowed_ips: Option<Option<IpAllowlist>>,
    pub rate_limit: Option<Option<RateLimit>>,
}

/// A refused form's message, and the field it is about: `allowed_ips` or
/// `rate_limit` (the ids its message is tied to with `aria-describedby`),
/// or "" for the form as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormError {
    pub field: &'static str,
    pub message: String,
}

impl FormError {
    pub fn general(message: impl Into<String>) -> FormError {
        FormError {
            field: "",
            message: message.into(),
        }
    }

    /// The domain's refusal, tied to its field when the form has one.
    pub fn of(invalid: &Invalid) -> FormError {
        FormError {
            field: match invalid.field.as_str() {
                "allowed_ips" => "allowed_ips",
                "rate_limit" => "rate_limit",
                _ => "",
            },
            message: capitalised(&invalid.description),
        }
    }

    /// The message about `field`, if any.
    pub fn find<'a>(errors: &'a [FormError], field: &str) -> Option<&'a str> {
        errors.iter().find(|e| e.field == field).map(|e| e.message.as_str())
    }
}

/// Reads the restriction fields; each problem adds a message to `errors`.
pub fn parse(fields: &Fields, catalog: &ScopeCatalog, now: Timestamp, errors: &mut Vec<FormError>) -> Parsed {
    let mut out = parse_access(fields, catalog, now, errors);
    if let Some(text) = fields.get("allowed_ips") {
        match parse_allowlist(text) {
            Ok(list) => out.allowed_ips = Some(list),
            Err(i) => errors.push(FormError::of(&i)),
        }
    }
    let requests = fields.get("rate_limit_requests");
    let per = fields.get("rate_limit_per_seconds");
    if requests.is_some() || per.is_some() {
        match parse_rate_limit(requests.unwrap_or(""), per.unwrap_or("")) {
            Ok(limit) => out.rate_limit = Some(limit),
            Err(e) => errors.push(e),
        }
    }
    out
}

/// **Allowed IPs**: networks or addresses, one a line or separated by
/// commas; nothing at all is any address.
pub fn parse_allowlist(text: &str) -> Result<Option<IpAllowlist>, Invalid> {
    let entries: Vec<&str> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|e| !e.is_empty())
        .collect();
    if entries.is_empty() {
        return Ok(None);
    }
    IpAllowlist::parse(&entries).map(Some)
}

/// **Rate limit**: requests and per how many seconds, both whole numbers
/// within the domain's bounds; both empty is no limit.
pub fn parse_rate_limit(requests: &str, per_seconds: &str) -> Result<Option<RateLimit>, FormError> {
    let (requests, per_seconds) = (requests.trim(), per_seconds.trim());
    if requests.is_empty() && per_seconds.is_empty() {
        return Ok(None);
    }
    let whole = |v: &str| v.parse::<i64>().ok();
    match (whole(requests), whole(per_seconds)) {
        (Some(r), Some(s)) => RateLimit::new(r, s).map(Some).map_err(|i| FormError {
            field: "rate_limit",
            message: format!("Rate limit: {}", i.description),
        }),
        _ => Err(FormError {
            field: "rate_limit",
            message: "Enter the rate limit as two whole numbers, requests and seconds, or leave both empty for no \
                      limit."
                .to_owned(),
        }),
    }
}

/// Access, assigned user and expiry.
fn parse_access(fields: &Fields, catalog: &ScopeCatalog, now: Timestamp, errors: &mut Vec<FormError>) -> Parsed {
    let mut out = Parsed::default();
    let names: Vec<&str> = fields.all("scope").collect();
    match fields.get("access") {
        None => {}
        Some("full") if names.is_empty() => out.scopes = Some(None),
        Some("full") => errors.push(FormError::general(
            "You ticked scopes but chose Full access. Choose Restricted to limit the token to them, \
             or untick them."
                .to_owned(),
        )),
        Some("restricted") if names.is_empty() => errors.push(FormError::general(
            "A restricted token needs at least one scope: tick one, or choose Full access.",
        )),
        Some("restricted") => match catalog.parse_scopes(&names) {
            Ok(s) => out.scopes = Some(Some(s)),
            Err(i) => errors.push(FormError::of(&i)),
        },
        Some(_) => errors.push(FormError::general("Choose Full access or Restricted.")),
    }
    match fields.get("assigned_user_id").map(str::trim) {
        None => {}
        Some("") => out.assigned_user_id = Some(None),
        Some(id) => match id.parse::<UserId>().ok().filter(|u| *u > UserId::new(0)) {
            Some(id) => out.assigned_user_id = Some(Some(id)),
            None => errors.push(FormError::general(
                "Choose a user from the list, or anyone in the account.",
            )),
        },
    }
    let on = fields.text("expires_on").trim();
    let choice = fields.get("expires");
    if !on.is_empty() && choice.is_some_and(|c| c != "date") {
        errors.push(FormError::general(format!(
            "You entered the date {on} but did not choose \u{201c}On a date\u{201d}: choose it to expire the token \
             then, or clear the date."
        )));
        return out;
    }
    match choice {
        None | Some("keep") => {}
        Some("" | "never") => out.expires_at = Some(None),
        Some("date") if on.is_empty() => errors.push(FormError::general("Enter the date the token expires on.")),
        Some("date") => match end_of_day(on) {
            Some(at) => out.expires_at = Some(Some(at)),
            None => errors.push(FormError::general("Enter the expiry date as YYYY-MM-DD.")),
        },
        Some(days) => match PRESET_DAYS.iter().find(|d| d.to_string() == days) {
            Some(d) => out.expires_at = Some(Some(now.plus_secs(d * DAY))),
            None => errors.push(FormError::general("Choose when the token expires.")),
        },
    }
    out
}

/// `2026-12-07` → `2026-12-07T23:59:59Z`.
fn end_of_day(text: &str) -> Option<Timestamp> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    end_of(time::Date::parse(text, &format).ok()?)
}

/// `2026-12-07`.
pub fn show_date(ts: Timestamp) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::OffsetDateTime::from_unix_timestamp(ts.unix())
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// Whether the form's scopes differ from the token's in what they grant
/// (scopes of resources this deployment no longer offers grant nothing).
pub fn scopes_change(current: Option<&Scopes>, next: Option<&Scopes>, catalog: &ScopeCatalog) -> bool {
    let offered = |s: &Scopes| -> BTreeSet<String> {
        coverage(s)
            .into_iter()
            .filter(|n| match n.split_once(':') {
                Some((r, _)) => catalog.resources().any(|(name, _)| name == r),
                None => true,
            })
            .collect()
    };
    current.map(offered) != next.map(offered)
}

/// One resource's row of the checklist.
#[derive(Debug)]
pub struct ResourceRow {
    pub name: String,
    pub description: String,
    pub read: bool,
    pub write: bool,
}

/// One choice of a select.
#[derive(Debug)]
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// The restriction fields as a form shows them.
#[derive(Debug)]
pub struct RestrictionsView {
    pub restricted: bool,
    pub read_all: bool,
    pub write_all: bool,
    pub resources: Vec<ResourceRow>,
    pub anyone: bool,
    pub users: Vec<Choice>,
    pub expiry: Vec<Choice>,
    /// Whether "On a date" is one of the choices (then the date field is shown).
    pub offers_date: bool,
    pub expires_on: String,
    /// The earliest and latest dates "On a date" may take, `YYYY-MM-DD`.
    pub date_min: String,
    pub date_max: Option<String>,
    /// Edit only: the token's expiry now ("Never", or a time).
    pub current_expiry: Option<String>,
    /// Edit only: why the expiry cannot change (the token has expired).
    pub expiry_fixed: Option<String>,
    /// **Allowed IPs** as entered, and why it was refused.
    pub allowed_ips: String,
    pub allowed_ips_error: Option<String>,
    /// **Rate limit** as entered, and why it was refused.
    pub rate_requests: String,
    pub rate_per_seconds: String,
    pub rate_limit_error: Option<String>,
}

/// Which form the fields are on.
#[derive(Debug, Clone, Copy)]
pub enum Mode<'a> {
    New,
    Edit(&'a ApiToken),
}

/// A user as the select names them: `Jane Doe (jane@example.com)`, with
/// why they cannot use a token now, if they cannot.
fn user_label(u: &User) -> String {
    let mut label = format!("{} ({})", u.name, u.email.as_str());
    if u.deleted {
        label.push_str(" \u{2014} deleted user");
    } else if u.suspended {
        label.push_str(" \u{2014} suspended");
    } else if !u.verified {
        label.push_str(" \u{2014} not verified");
    }
    label
}

/// Every undeleted user of the account, by name.
pub async fn account_users(app: &App, access: &AdminAccess) -> Result<Vec<User>, PageError> {
    let mut users = Vec::new();
    let mut after = None;
    loop {
        let (page, more) = app
            .users_page(
                access,
                Page {
                    after,
                    before: None,
                    size: USER_PAGE,
                },
            )
            .await?;
        after = page.last().map(|u| u.id);
        users.extend(page);
        if !more || after.is_none() {
            break;
        }
    }
    users.sort_by(|a, b| {
        a.name
            .to_lowercase()
            .cmp(&b.name.to_lowercase())
            .then_with(|| a.email.as_str().cmp(b.email.as_str()))
    });
    Ok(users)
}

/// The users that `tokens` are assigned to, by id: the account's users, and
/// any deleted one still named by a token. Reads nothing when no token is
/// assigned.
pub async fn assignees<'a>(
    app: &App,
    access: &AdminAccess,
    tokens: impl IntoIterator<Item = &'a ApiToken>,
) -> Result<HashMap<UserId, User>, PageError> {
    let wanted: BTreeSet<UserId> = tokens.into_iter().filter_map(|t| t.assigned_user_id).collect();
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    // A few are looked up one by one; more, with the account's users.
    let mut found: HashMap<UserId, User> = if wanted.len() <= 4 {
        HashMap::new()
    } else {
        account_users(app, access)
            .await?
            .into_iter()
            .filter(|u| wanted.contains(&u.id))
            .map(|u| (u.id, u))
            .collect()
    };
    for id in wanted {
        if let std::collections::hash_map::Entry::Vacant(slot) = found.entry(id) {
            if let Some(u) = app.user_including_deleted(access, id).await? {
                slot.insert(u);
            }
        }
    }
    Ok(found)
}

/// How the list and the details page name an assigned user: by email
/// (what authenticates with the token), and in full with the name.
pub fn assignee_name(id: UserId, users: &HashMap<UserId, User>) -> (String, String) {
    match users.get(&id) {
        Some(u) if u.deleted => (
            format!("{} (deleted user)", u.email.as_str()),
            format!("{} ({}, deleted user)", u.name, u.email.as_str()),
        ),
        Some(u) => (
            u.email.as_str().to_owned(),
            format!("{} ({})", u.name, u.email.as_str()),
        ),
        None => (format!("User {id}"), format!("User {id}")),
    }
}

impl RestrictionsView {
    /// The fields for `mode`, showing `entered` and the `errors` about
    /// them. `users` are the account's undeleted users; on Edit, a deleted
    /// user the token is assigned to is looked up so that it can stay
    /// selected.
    pub async fn build(
        app: &App,
        access: &AdminAccess,
        mode: Mode<'_>,
        entered: &Entered,
        errors: &[FormError],
        now: Timestamp,
    ) -> Result<RestrictionsView, PageError> {
        let mut users = account_users(app, access).await?;
        if let Mode::Edit(t) = mode {
            if let Some(id) = t.assigned_user_id {
                if !users.iter().any(|u| u.id == id) {
                    if let Some(u) = app.user_including_deleted(access, id).await? {
                        users.push(u);
                    }
                }
            }
        }
        let catalog = app.scope_catalog();
        let ticked = |n: &str| entered.ticked.contains(n);
        let resources = catalog
            .resources()
            .map(|(name, description)| ResourceRow {
                name: name.to_owned(),
                description: description.to_owned(),
                read: ticked(&format!("{name}:read")),
                write: ticked(&format!("{name}:write")),
            })
            .collect();
        let users: Vec<Choice> = users
            .iter()
            .map(|u| Choice {
                value: u.id.to_string(),
                label: user_label(u),
                selected: u.id.to_string() == entered.assigned,
            })
            .collect();
        let anyone = !users.iter().any(|c| c.selected);
        let expiry = expiry_choices(mode, entered, now);
        Ok(RestrictionsView {
            restricted: entered.restricted,
            read_all: ticked("read"),
            write_all: ticked("write"),
            resources,
            anyone,
            users,
            offers_date: expiry.choices.iter().any(|c| c.value == "date"),
            expiry: expiry.choices,
            expires_on: entered.expires_on.clone(),
            date_min: show_date(now),
            date_max: expiry.date_max,
            current_expiry: expiry.current,
            expiry_fixed: expiry.fixed,
            allowed_ips: entered.allowed_ips.clone(),
            allowed_ips_error: FormError::find(errors, "allowed_ips").map(str::to_owned),
            rate_requests: entered.rate_requests.clone(),
            rate_per_seconds: entered.rate_per_seconds.clone(),
            rate_limit_error: FormError::find(errors, "rate_limit").map(str::to_owned),
        })
    }
}

/// The **Expires** part of a form.
#[derive(Debug)]
struct ExpiryView {
    choices: Vec<Choice>,
    date_max: Option<String>,
    current: Option<String>,
    fixed: Option<String>,
}

/// The last day whose end (23:59:59 UTC) is not after `at`.
fn last_whole_day(at: Timestamp) -> Option<time::Date> {
    let day = time::OffsetDateTime::from_unix_timestamp(at.unix()).ok()?.date();
    if end_of(day)? <= at {
        Some(day)
    } else {
        day.previous_day()
    }
}

fn end_of(day: time::Date) -> Option<Timestamp> {
    let at = day.with_hms(23, 59, 59).ok()?.assume_utc();
    Some(Timestamp::from_unix(at.unix_timestamp()))
}

/// The **Expires** choices. Add: never, the presets, a date. Edit: keep,
/// and only the choices that move the expiry earlier (an expired token's
/// expiry cannot change at all).
fn expiry_choices(mode: Mode<'_>, entered: &Entered, now: Timestamp) -> ExpiryView {
    let choice = |value: &str, label: String| Choice {
        selected: entered.expires == value,
        value: value.to_owned(),
        label,
    };
    let presets = |before: Option<Timestamp>| {
        PRESET_DAYS
            .iter()
            // Strictly earlier: a token made "in 7 days" and edited within
            // the same second must not be offered the same 7 days again.
            .filter(move |d| before.is_none_or(|at| now.plus_secs(*d * DAY) < at))
            .map(|d| choice(&d.to_string(), format!("{d} days")))
            .collect::<Vec<_>>()
    };
    let on_a_date = || choice("date", "On a date".to_owned());
    match mode {
        Mode::New => {
            let mut choices = vec![choice("never", "Never".to_owned())];
            choices.extend(presets(None));
            choices.push(on_a_date());
            ExpiryView {
                choices,
                date_max: None,
                current: None,
                fixed: None,
            }
        }
        Mode::Edit(t) => {
            let mut choices = vec![choice("keep", "Keep as it is".to_owned())];
            match t.expires_at {
                None => {
                    choices.extend(presets(None));
                    choices.push(on_a_date());
                    ExpiryView {
                        choices,
                        date_max: None,
                        current: Some("Never".to_owned()),
                        fixed: None,
                    }
                }
                Some(at) if at <= now => ExpiryView {
                    choices,
                    date_max: None,
                    current: Some(format!("Expired {}", show_time(at))),
                    fixed: Some("This token has expired. Its expiry can no longer change.".to_owned()),
                },
                Some(at) => {
                    choices.extend(presets(Some(at)));
                    let last = last_whole_day(at).filter(|d| end_of(*d).is_some_and(|end| end > now));
                    if last.is_some() {
                        choices.push(on_a_date());
                    }
                    ExpiryView {
                        choices,
                        date_max: last.map(|d| d.to_string()),
                        current: Some(show_time(at)),
                        fixed: None,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        Fields(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    const NOW: Timestamp = Timestamp::from_unix(1_795_000_000); // 2026-11-18 11:06:40 UTC

    fn parsed(pairs: &[(&str, &str)]) -> (Parsed, Vec<FormError>) {
        let mut errors = Vec::new();
        let p = parse(&fields(pairs), &ScopeCatalog::builtin(), NOW, &mut errors);
        (p, errors)
    }

    #[test]
    fn a_date_means_the_end_of_that_day_utc() {
        assert_eq!(
            end_of_day("2026-12-07").map(Timestamp::rfc3339).as_deref(),
            Some("2026-12-07T23:59:59Z")
        );
        for bad in ["2026-13-01", "07/12/2026", "2026-12-7x", ""] {
            assert_eq!(end_of_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_checklist_turns_into_scopes() {
        let (p, errors) = parsed(&[
            ("access", "restricted"),
            ("scope", "users:read"),
            ("scope", "tickets:write"),
        ]);
        assert_eq!(p.scopes, None);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].message.contains("\"tickets:write\" is not a scope"),
            "{errors:?}"
        );

        let (p, errors) = parsed(&[("access", "restricted"), ("scope", "read"), ("scope", "users:write")]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            p.scopes.flatten().map(|s| s.to_stored()).as_deref(),
            Some("read users:write")
        );

        let (_, errors) = parsed(&[("access", "restricted")]);
        assert!(errors[0].message.contains("needs at least one scope"), "{errors:?}");
        let (_, errors) = parsed(&[("access", "full"), ("scope", "read")]);
        assert!(errors[0].message.contains("chose Full access"), "{errors:?}");
        let (p, errors) = parsed(&[("access", "full")]);
        assert!(errors.is_empty());
        assert_eq!(p.scopes, Some(None));
        let (p, _) = parsed(&[]);
        assert_eq!((p.scopes, p.assigned_user_id, p.expires_at), (None, None, None));
    }

    #[test]
    fn the_assigned_user_is_an_id_or_anyone() {
        assert_eq!(parsed(&[("assigned_user_id", "")]).0.assigned_user_id, Some(None));
        assert_eq!(
            parsed(&[("assigned_user_id", "12")]).0.assigned_user_id,
            Some(Some(UserId::new(12)))
        );
        for bad in ["0", "-3", "x", "1.5"] {
            assert_eq!(parsed(&[("assigned_user_id", bad)]).1.len(), 1, "{bad}");
        }
    }

    #[test]
    fn the_expiry_choices() {
        assert_eq!(parsed(&[("expires", "never")]).0.expires_at, Some(None));
        assert_eq!(parsed(&[("expires", "keep")]).0.expires_at, None);
        assert_eq!(
            parsed(&[("expires", "7")]).0.expires_at,
            Some(Some(NOW.plus_secs(7 * DAY)))
        );
        assert_eq!(
            parsed(&[("expires", "date"), ("expires_on", "2026-12-07")])
                .0
                .expires_at,
            Some(Some(Timestamp::parse_rfc3339("2026-12-07T23:59:59Z").expect("time")))
        );
        for bad in [
            vec![("expires", "8")],
            vec![("expires", "date")],
            vec![("expires", "date"), ("expires_on", "soon")],
            vec![("expires", "never"), ("expires_on", "2026-12-07")],
        ] {
            let (p, errors) = parsed(&bad);
            assert_eq!((p.expires_at, errors.len()), (None, 1), "{bad:?}");
        }
    }

    #[test]
    fn allowed_ips_are_one_a_line_or_comma_separated() {
        let (p, errors) = parsed(&[("allowed_ips", "10.20.0.0/16\r\n 192.0.2.7, 2001:db8:42::/48,\n")]);
        assert!(errors.is_empty(), "{errors:?}");
        let names: Vec<String> = p.allowed_ips.flatten().expect("a list").names().collect();
        assert_eq!(names, ["10.20.0.0/16", "192.0.2.7/32", "2001:db8:42::/48"]);
        assert_eq!(parsed(&[("allowed_ips", " \n ")]).0.allowed_ips, Some(None));
        assert_eq!(parsed(&[]).0.allowed_ips, None);
        let (p, errors) = parsed(&[("allowed_ips", "10.0.0.0/8\n10.0.0.300")]);
        assert_eq!(p.allowed_ips, None);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "allowed_ips");
        assert!(
            errors[0].message.contains("\"10.0.0.300\" is not an IPv4"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_rate_limit_is_two_whole_numbers_or_none() {
        let rate = |r: &str, s: &str| parsed(&[("rate_limit_requests", r), ("rate_limit_per_seconds", s)]);
        assert_eq!(rate("100", "60").0.rate_limit, Some(RateLimit::new(100, 60).ok()));
        assert_eq!(rate(" ", "").0.rate_limit, Some(None));
        assert_eq!(parsed(&[]).0.rate_limit, None);
        for (r, s) in [
            ("100", ""),
            ("", "60"),
            ("x", "60"),
            ("1.5", "60"),
            ("0", "60"),
            ("10", "86401"),
        ] {
            let (p, errors) = rate(r, s);
            assert_eq!(p.rate_limit, None, "{r} {s}");
            assert_eq!(errors.len(), 1, "{r} {s}");
            assert_eq!(errors[0].field, "rate_limit", "{r} {s}");
        }
        assert!(rate("0", "60").1[0]
            .message
            .starts_with("Rate limit: requests must be between 1 and"));
    }

    #[test]
    fn equal_coverage_is_no_change() {
        let c = ScopeCatalog::builtin();
        let s = |names: &[&str]| Some(c.parse_scopes(names).expect("scopes"));
        assert!(!scopes_change(
            s(&["users"]).as_ref(),
            s(&["users:write", "users:read"]).as_ref(),
            &c
        ));
        assert!(scopes_change(s(&["users"]).as_ref(), s(&["users:read"]).as_ref(), &c));
        assert!(scopes_change(None, s(&["read", "write"]).as_ref(), &c));
        assert!(!scopes_change(None, None, &c));
        let stored = Scopes::from_stored("gone:read users:read");
        assert!(!scopes_change(stored.as_ref(), s(&["users:read"]).as_ref(), &c));
    }

    fn token(expires_at: Option<Timestamp>) -> ApiToken {
        ApiToken {
            id: latchkey_core::id::TokenId::new(1),
            account_id: latchkey_core::id::AccountId::new(1),
            description: None,
            active: true,
            visible_token: String::new(),
            user_id: None,
            assigned_user_id: None,
            scopes: None,
            expires_at,
            created_at: Timestamp::EPOCH,
            updated_at: Timestamp::EPOCH,
            last_used: None,
            previous_visible_token: None,
            previous_expires_at: None,
            previous_last_used: None,
            deactivated_at: None,
            legacy: false,
            allowed_ips: None,
            rate_limit: None,
            leaked_at: None,
        }
    }

    fn values(choices: &[Choice]) -> Vec<&str> {
        choices.iter().map(|c| c.value.as_str()).collect()
    }

    #[test]
    fn edit_offers_only_earlier_expiries() {
        let keep = Entered {
            expires: "keep".to_owned(),
            ..Entered::default()
        };
        let never = token(None);
        let e = expiry_choices(Mode::Edit(&never), &keep, NOW);
        assert_eq!(values(&e.choices), ["keep", "7", "30", "90", "date"]);
        assert_eq!((e.date_max, e.current.as_deref(), e.fixed), (None, Some("Never"), None));
        assert!(e.choices[0].selected);

        let in_7_days = token(Some(NOW.plus_secs(7 * DAY)));
        let e = expiry_choices(Mode::Edit(&in_7_days), &keep, NOW);
        assert_eq!(
            values(&e.choices),
            ["keep", "date"],
            "the same expiry is not an earlier one"
        );

        let in_40_days = token(Some(NOW.plus_secs(40 * DAY)));
        let e = expiry_choices(Mode::Edit(&in_40_days), &keep, NOW);
        assert_eq!(values(&e.choices), ["keep", "7", "30", "date"]);
        // 2026-12-28 11:06:40: the end of the 27th is the last earlier end of a day.
        assert_eq!(e.date_max.as_deref(), Some("2026-12-27"));

        let end_of_a_day = token(end_of_day("2026-12-01"));
        assert_eq!(
            expiry_choices(Mode::Edit(&end_of_a_day), &keep, NOW)
                .date_max
                .as_deref(),
            Some("2026-12-01")
        );

        let within_the_hour = token(Some(NOW.plus_secs(3600)));
        let e = expiry_choices(Mode::Edit(&within_the_hour), &keep, NOW);
        assert_eq!((values(&e.choices), e.date_max), (vec!["keep"], None));

        let expired = token(Some(NOW.minus_secs(1)));
        let e = expiry_choices(Mode::Edit(&expired), &keep, NOW);
        assert_eq!(values(&e.choices), ["keep"]);
        assert!(e.current.is_some_and(|c| c.starts_with("Expired")));
        assert!(e.fixed.is_some());

        let e = expiry_choices(Mode::New, &Entered::new_token(), NOW);
        assert_eq!(values(&e.choices), ["never", "7", "30", "90", "date"]);
        assert!(e.choices[0].selected);
    }
}
