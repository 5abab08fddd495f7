//! The API token pages (`/admin/apis/api-tokens`): list, add (with the
//! one-time reveal), details, edit, deactivate/reactivate/delete behind a
//! confirmation, and rotate (a confirmation with the grace period, then the
//! same one-time reveal of the new secret). Add and Rotate answer with a
//! redirect to the reveal, and carry a one-use nonce ([`super::reveal`]).
//! Every change goes through the service layer with the admin's access.
//! The restriction fields of Add and Edit (access, assigned user, expiry,
//! allowed IPs, rate limit) are [`super::token_form`]'s; the details page's
//! usage chart is [`super::usage_chart`]'s; the configuration page is
//! [`super::configuration`]'s.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use latchkey_app::AppError;
use latchkey_core::{
    account::Account,
    id::{TokenId, UserId},
    time::Timestamp,
    token::{
        check_room, check_rotatable, parse_description, ApiToken, Restrictions, TokenCreator, TokenPatch, TokenStatus,
    },
    user::User,
    DomainError,
};
use serde::Deserialize;

use super::page::{domain_messages, render, show_time, Confirm, Layout, Nav, PageError, PageResult};
use super::reveal::{Claim, RevealContent, Reveals, Taken, NONCE_FIELD};
use super::session::{AdminForm, AdminPage};
use super::token_form::{self, assignee_name, assignees, show_date, Entered, FormError, Mode, RestrictionsView};
use super::usage_chart::{UsageChart, DAYS};
use super::{action_path, record_id};
use crate::state::AppState;

const LIST: &str = "/admin/apis/api-tokens";

/// One token as the pages show it.
pub struct TokenView {
    pub id: TokenId,
    pub description: String,
    pub visible_token: String,
    pub active: bool,
    /// `Active`, `Deactivated` or `Expired`, and the badge's class.
    pub status: &'static str,
    pub status_class: &'static str,
    /// "Full access", or the scopes' short form (`users: read, tickets`).
    pub access: String,
    pub restricted: bool,
    /// The one user whose email the token works with (None: anyone): the
    /// email, and the name with the email.
    pub assigned: Option<String>,
    pub assigned_full: Option<String>,
    /// When the token expires (or expired): the full time, and its date.
    pub expires: Option<String>,
    pub expires_date: Option<String>,
    pub expires_rfc3339: Option<String>,
    pub created: String,
    /// RFC 3339, for `<time datetime>` (the script shows it in the
    /// browser's time zone).
    pub created_iso: String,
    pub created_by: String,
    pub last_used: String,
    pub last_used_iso: Option<String>,
    pub updated: String,
    /// The networks the token works from (empty: any address).
    pub allowed_ips: Vec<String>,
    /// `100 per 60 seconds`.
    pub rate_limit: Option<String>,
    /// When a leak report matched the token (README.md, "Leaked tokens"):
    /// the time, and RFC 3339.
    pub leaked: Option<String>,
    /// Imported in another system's format (README.md, "Migrating from Zendesk").
    pub legacy: bool,
    pub leaked_iso: Option<String>,
    /// Whether Rotate is offered: active and not expired.
    pub rotatable: bool,
    /// After a rotation, the previous secret.
    pub previous: Option<PreviousView>,
}

/// A rotated token's previous secret, as the details page shows it.
pub struct PreviousView {
    pub visible_token: String,
    /// Whether it still authenticates (its grace period is running).
    pub works: bool,
    /// When it stops, or stopped, authenticating.
    pub until: String,
    /// Its last use since the rotation.
    pub last_used: String,
}

impl TokenView {
    /// How a confirmation names the token: its description and truncated token.
    pub fn subject(&self) -> String {
        if self.description.is_empty() {
            self.visible_token.clone()
        } else {
            format!("{} ({})", self.description, self.visible_token)
        }
    }
}

/// How the list names a token's creator: a deleted creator is shown as
/// such, and a token made on the command line as the operator's.
fn creator_name(creator: &TokenCreator) -> String {
    match creator {
        TokenCreator::Operator => "Operator".to_owned(),
        TokenCreator::User { name, deleted: false } => name.clone(),
        TokenCreator::User { name, deleted: true } => format!("{name} (deleted user)"),
        TokenCreator::Unknown => "Deleted user".to_owned(),
    }
}

fn view(t: &ApiToken, creator: &TokenCreator, now: Timestamp, users: &HashMap<UserId, User>) -> TokenView {
    let (status, status_class) = match t.status(now) {
        TokenStatus::Active => ("Active", "on"),
        TokenStatus::Deactivated => ("Deactivated", "off"),
        TokenStatus::Expired => ("Expired", "expired"),
    };
    let assigned = t.assigned_user_id.map(|id| assignee_name(id, users));
    TokenView {
        id: t.id,
        description: t.description.clone().unwrap_or_default(),
        visible_token: t.visible_token.clone(),
        active: t.active,
        status,
        status_class,
        access: t
            .scopes
            .as_ref()
            .map_or_else(|| "Full access".to_owned(), |s| s.short_form()),
        restricted: t.scopes.is_some(),
        assigned: assigned.as_ref().map(|(short, _)| short.clone()),
        assigned_full: assigned.map(|(_, full)| full),
        expires: t.expires_at.map(show_time),
        expires_date: t.expires_at.map(show_date),
        expires_rfc3339: t.expires_at.map(Timestamp::rfc3339),
        created: list_time(t.created_at),
        created_iso: t.created_at.rfc3339(),
        created_by: creator_name(creator),
        last_used: t.last_used.map(list_time).unwrap_or_else(|| "Never".to_owned()),
        last_used_iso: t.last_used.map(Timestamp::rfc3339),
        updated: show_time(t.updated_at),
        allowed_ips: t.allowed_ips.as_ref().map(|l| l.names().collect()).unwrap_or_default(),
        rate_limit: t.rate_limit.map(|r| r.describe()),
        leaked: t.leaked_at.map(show_time),
        legacy: t.legacy,
        leaked_iso: t.leaked_at.map(Timestamp::rfc3339),
        rotatable: t.status(now) == TokenStatus::Active,
        previous: t.previous_visible_token.as_ref().map(|visible| {
            let until = t.previous_expires_at.unwrap_or(t.updated_at);
            PreviousView {
                visible_token: visible.clone(),
                works: until > now,
                until: show_time(until),
                last_used: t
                    .previous_last_used
                    .map(show_time)
                    .unwrap_or_else(|| "Not used since the rotation".to_owned()),
            }
        }),
    }
}

/// A time in a list column: `2026-11-27 09:14 UTC` that wraps, if the
/// table needs the room, after the date only (a no-break space before UTC).
fn list_time(ts: Timestamp) -> String {
    show_time(ts).replace(" UTC", "\u{a0}UTC")
}

/// Why a token cannot be added now, if it cannot: the domain's own words.
fn add_blocked(account: &Account, count: usize) -> Option<String> {
    if !account.api_token_access {
        return domain_messages(&DomainError::TokenAccessDisabled).into_iter().next();
    }
    check_room(count as i64, 1, account.token_limit)
        .err()
        .map(|i| i.description)
}

/// The notice for `?done=…` after a change, naming the token of `?id=…`
/// as the account holds it; a deleted token is named by `?token=…`, its
/// truncated token, shown only if it has that shape. No other client text.
async fn notice(state: &AppState, admin: &AdminPage, query: Option<&str>) -> Result<Option<String>, PageError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let what = match get("done") {
        Some("updated") => "updated",
        Some("deactivated") => "deactivated",
        Some("reactivated") => "reactivated",
        Some("deleted") => "deleted",
        _ => return Ok(None),
    };
    let id = get("id")
        .and_then(|v| v.parse::<TokenId>().ok())
        .filter(|id| *id > TokenId::new(0));
    let token = match id {
        Some(id) => state.app.token(&admin.access, id).await?,
        None => None,
    };
    let name = match token {
        Some(t) => Some(view(&t, &TokenCreator::Operator, state.app.now(), &HashMap::new()).subject()),
        None => get("token").filter(|v| is_visible_token(v)).map(str::to_owned),
    };
    Ok(Some(match name {
        Some(name) => format!("API token {name} {what}."),
        None => format!("API token {what}."),
    }))
}

/// Whether `v` looks like a truncated token (`lk_abcd…wxyz`).
fn is_visible_token(v: &str) -> bool {
    v.chars().count() <= 24
        && v.contains('\u{2026}')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '\u{2026}')
}

/// The redirect to the list after a change to `token`.
fn done(what: &str, token: &ApiToken) -> Redirect {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("done", what)
        .append_pair("id", &token.id.to_string())
        .append_pair("token", &token.visible_token)
        .finish();
    Redirect::to(&format!("{LIST}?{query}"))
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct ListTemplate<'a> {
    l: Layout,
    tokens: Vec<TokenView>,
    count: usize,
    limit: i64,
    blocked: Option<String>,
    access_off: bool,
    notice: Option<&'a str>,
    confirms: TokenConfirms,
    /// Whether a token was made on the command line (the list explains
    /// "Operator").
    by_operator: bool,
}

pub async fn list(State(state): State<AppState>, admin: AdminPage, RawQuery(query): RawQuery) -> PageResult {
    let tokens = state.app.tokens_with_creators(&admin.access).await?;
    let users = assignees(&state.app, &admin.access, tokens.iter().map(|(t, _)| t)).await?;
    let now = state.app.now();
    let account = admin.account();
    let notice = notice(&state, &admin, query.as_deref()).await?;
    let t = ListTemplate {
        l: admin.layout(Nav::Tokens),
        count: tokens.len(),
        limit: account.token_limit,
        blocked: add_blocked(account, tokens.len()),
        access_off: !account.api_token_access,
        by_operator: tokens.iter().any(|(_, c)| matches!(c, TokenCreator::Operator)),
        tokens: tokens.iter().map(|(t, c)| view(t, c, now, &users)).collect(),
        notice: notice.as_deref(),
        confirms: token_confirms(),
    };
    Ok(render(StatusCode::OK, &t))
}

#[derive(Template)]
#[template(path = "token_new.html")]
struct NewTemplate<'a> {
    l: Layout,
    nonce: String,
    description: &'a str,
    r: RestrictionsView,
    errors: Vec<FormError>,
    blocked: Option<String>,
}

async fn new_page(
    state: &AppState,
    admin: &AdminPage,
    nonce: String,
    description: &str,
    entered: &Entered,
    errors: Vec<FormError>,
) -> PageResult {
    let count = state.app.tokens(&admin.access).await?.len();
    let r = RestrictionsView::build(&state.app, &admin.access, Mode::New, entered, &errors, state.app.now()).await?;
    let t = NewTemplate {
        l: admin.layout(Nav::Tokens),
        nonce,
        description,
        r,
        blocked: add_blocked(admin.account(), count),
        errors,
    };
    let status = if t.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok(render(status, &t))
}

pub async fn new(
    State(state): State<AppState>,
    Extension(reveals): Extension<Arc<Reveals>>,
    admin: AdminPage,
) -> PageResult {
    let nonce = reveals.issue(&admin.session_key);
    new_page(&state, &admin, nonce, "", &Entered::new_token(), Vec::new()).await
}

/// Shown when a form's nonce is unknown: it was open too long, or the
/// server restarted meanwhile.
const EXPIRED_FORM: &str = "This form was open too long to be saved. Check it and save it again.";

/// The one-time reveal of a token's secret, after Add and after Rotate;
/// without `token`, the page that says it was shown already.
#[derive(Template)]
#[template(path = "token_reveal.html")]
struct RevealTemplate<'a> {
    l: Layout,
    heading: &'a str,
    token: Option<&'a str>,
    token_id: Option<TokenId>,
    description: &'a str,
    /// After a rotation: what became of the previous secret.
    note: Option<&'a str>,
}

/// The URL of reveal `id`.
fn reveal_url(id: &str) -> String {
    format!("{LIST}/reveal/{id}")
}

/// `/admin/apis/api-tokens/reveal/{id}`: the new secret, this once (never
/// cached); after that, or for an unknown id, that it was shown already
/// (410) and nothing new was made.
pub async fn revealed(
    Extension(reveals): Extension<Arc<Reveals>>,
    admin: AdminPage,
    Path(id): Path<String>,
) -> Response {
    let (status, content, token_id) = match reveals.take(&admin.session_key, &id) {
        Taken::Show(c) => (StatusCode::OK, Some(c), None),
        Taken::Shown(token_id) => (StatusCode::GONE, None, Some(token_id)),
        Taken::Unknown => (StatusCode::GONE, None, None),
    };
    let t = match &content {
        Some(c) => RevealTemplate {
            l: admin.layout(Nav::Tokens),
            heading: c.heading,
            token: Some(c.token.expose()),
            token_id: Some(c.token_id),
            description: &c.description,
            note: c.note.as_deref(),
        },
        None => RevealTemplate {
            l: admin.layout(Nav::Tokens),
            heading: "Token already shown",
            token: None,
            token_id,
            description: "",
            note: None,
        },
    };
    let mut res = render(status, &t);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Add API token: makes the token once per form (its nonce), and
/// redirects to its reveal.
pub async fn create(
    State(state): State<AppState>,
    Extension(reveals): Extension<Arc<Reveals>>,
    form: AdminForm,
) -> PageResult {
    let AdminForm { admin, fields } = form;
    let key = admin.session_key;
    let nonce = fields.text(NONCE_FIELD);
    let raw = fields.text("description");
    let entered = Entered::from_fields(&fields);
    let mut errors = Vec::new();
    let description = parse_description(raw).unwrap_or_else(|i| {
        errors.push(FormError::of(&i));
        None
    });
    let parsed = token_form::parse(&fields, state.app.scope_catalog(), state.app.now(), &mut errors);
    if !errors.is_empty() {
        let nonce = reveals.keep_or_issue(&key, nonce);
        return new_page(&state, &admin, nonce, raw, &entered, errors).await;
    }
    let claimed = match reveals.claim(&key, nonce).await {
        Claim::Fresh(claimed) => claimed,
        Claim::Done(id) => return Ok(Redirect::to(&reveal_url(&id)).into_response()),
        Claim::Unknown => {
            let nonce = reveals.issue(&key);
            return new_page(
                &state,
                &admin,
                nonce,
                raw,
                &entered,
                vec![FormError::general(EXPIRED_FORM)],
            )
            .await;
        }
    };
    let restrictions = Restrictions {
        scopes: parsed.scopes.flatten(),
        assigned_user_id: parsed.assigned_user_id.flatten(),
        expires_at: parsed.expires_at.flatten(),
        allowed_ips: parsed.allowed_ips.flatten(),
        rate_limit: parsed.rate_limit.flatten(),
    };
    let (token, plain) = match state.app.create_token(&admin.access, description, restrictions).await {
        Ok(created) => created,
        Err(AppError::Domain(d)) => {
            drop(claimed);
            let nonce = reveals.keep_or_issue(&key, nonce);
            return new_page(&state, &admin, nonce, raw, &entered, form_errors(&d)).await;
        }
        Err(e) => return Err(e.into()),
    };
    let id = claimed.finish(RevealContent {
        heading: "Add API token",
        token_id: token.id,
        token: plain,
        description: token.description.unwrap_or_default(),
        note: None,
    });
    Ok(Redirect::to(&reveal_url(&id)).into_response())
}

/// A refused Add form's messages, each tied to its field where the form
/// has one.
fn form_errors(d: &DomainError) -> Vec<FormError> {
    match d {
        DomainError::Invalid(list) => list.iter().map(FormError::of).collect(),
        other => domain_messages(other).into_iter().map(FormError::general).collect(),
    }
}

async fn token(state: &AppState, admin: &AdminPage, id: TokenId) -> Result<ApiToken, PageError> {
    state.app.token(&admin.access, id).await?.ok_or(PageError::NotFound)
}

#[derive(Template)]
#[template(path = "token_show.html")]
struct ShowTemplate {
    l: Layout,
    t: TokenView,
    confirms: TokenConfirms,
    usage: UsageChart,
    /// The chart as inline SVG (made by [`UsageChart::svg`], no client text).
    usage_svg: String,
    /// How often each node adds its counts (`--flush-interval-secs`):
    /// "every 10 seconds".
    flush_every: String,
}

pub async fn show(
    State(state): State<AppState>,
    admin: AdminPage,
    id: Result<Path<TokenId>, PathRejection>,
) -> PageResult {
    let (token, creator) = state
        .app
        .token_with_creator(&admin.access, record_id(id)?)
        .await?
        .ok_or(PageError::NotFound)?;
    let users = assignees(&state.app, &admin.access, [&token]).await?;
    let rows = state.app.token_usage(&admin.access, token.id, DAYS).await?;
    let now = state.app.now();
    let usage = UsageChart::new(&rows, now);
    Ok(render(
        StatusCode::OK,
        &ShowTemplate {
            l: admin.layout(Nav::Tokens),
            t: view(&token, &creator, now, &users),
            confirms: token_confirms(),
            usage_svg: usage.svg(),
            usage,
            flush_every: match state.config.flush_interval.as_secs() {
                0 | 1 => "every second".to_owned(),
                n => format!("every {n} seconds"),
            },
        },
    ))
}

#[derive(Template)]
#[template(path = "token_edit.html")]
struct EditTemplate<'a> {
    l: Layout,
    id: TokenId,
    visible_token: &'a str,
    description: &'a str,
    r: RestrictionsView,
    errors: Vec<FormError>,
}

/// The Edit form of `token` showing `description` and `entered`.
async fn edit_page(
    state: &AppState,
    admin: &AdminPage,
    token: &ApiToken,
    description: &str,
    entered: &Entered,
    errors: Vec<FormError>,
) -> PageResult {
    let r = RestrictionsView::build(
        &state.app,
        &admin.access,
        Mode::Edit(token),
        entered,
        &errors,
        state.app.now(),
    )
    .await?;
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok(render(
        status,
        &EditTemplate {
            l: admin.layout(Nav::Tokens),
            id: token.id,
            visible_token: &token.visible_token,
            description,
            r,
            errors,
        },
    ))
}

pub async fn edit(
    State(state): State<AppState>,
    admin: AdminPage,
    id: Result<Path<TokenId>, PathRejection>,
) -> PageResult {
    let token = token(&state, &admin, record_id(id)?).await?;
    let description = token.description.as_deref().unwrap_or("");
    edit_page(
        &state,
        &admin,
        &token,
        description,
        &Entered::of_token(&token),
        Vec::new(),
    )
    .await
}

pub async fn update(
    State(state): State<AppState>,
    id: Result<Path<TokenId>, PathRejection>,
    form: AdminForm,
) -> PageResult {
    let AdminForm { admin, fields } = form;
    let token = token(&state, &admin, record_id(id)?).await?;
    let raw = fields.text("description");
    let entered = Entered::from_fields(&fields);
    let mut errors = Vec::new();
    let description = parse_description(raw).unwrap_or_else(|i| {
        errors.push(FormError::of(&i));
        None
    });
    let catalog = state.app.scope_catalog();
    let parsed = token_form::parse(&fields, catalog, state.app.now(), &mut errors);
    if !errors.is_empty() {
        return edit_page(&state, &admin, &token, raw, &entered, errors).await;
    }
    // Boxes that grant what the token's scopes grant leave them as stored.
    let scopes = parsed
        .scopes
        .filter(|next| token_form::scopes_change(token.scopes.as_ref(), next.as_ref(), catalog));
    let patch = TokenPatch {
        description: Some(description),
        scopes,
        assigned_user_id: parsed.assigned_user_id,
        expires_at: parsed.expires_at,
        allowed_ips: parsed.allowed_ips,
        rate_limit: parsed.rate_limit,
        ..TokenPatch::default()
    };
    match state.app.update_token(&admin.access, token.id, &patch).await {
        Ok(updated) => Ok(done("updated", &updated).into_response()),
        Err(AppError::Domain(DomainError::Invalid(list))) => {
            let errors = list.iter().map(FormError::of).collect();
            edit_page(&state, &admin, &token, raw, &entered, errors).await
        }
        Err(e) => Err(e.into()),
    }
}

/// A token change that needs confirming: the last path segment of
/// `/admin/apis/api-tokens/{id}/{action}`, parsed by the path extractor
/// (any other segment is a 404).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Deactivate,
    Reactivate,
    Delete,
    /// A new secret; its confirmation asks for the grace period.
    Rotate,
}

impl Action {
    /// The path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deactivate => "deactivate",
            Action::Reactivate => "reactivate",
            Action::Delete => "delete",
            Action::Rotate => "rotate",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Action::Deactivate => "Deactivate",
            Action::Reactivate => "Reactivate",
            Action::Delete => "Delete",
            Action::Rotate => "Rotate",
        }
    }
}

/// The confirmation page shared by tokens and people.
#[derive(Template)]
#[template(path = "confirm.html")]
pub struct ConfirmTemplate<'a> {
    pub l: Layout,
    pub c: Confirm,
    pub subject: &'a str,
    pub action_url: String,
    pub cancel_url: &'a str,
    /// Hidden fields the form sends with the CSRF token.
    pub fields: Vec<(&'static str, String)>,
}

/// The words of a token action's confirmation; the options menu carries
/// the same words for the dialog.
pub fn token_confirmation(a: Action) -> Confirm {
    let (title, message) = match a {
        Action::Deactivate => (
            "Deactivate API token?",
            "Requests that use this token will fail until you reactivate it.",
        ),
        Action::Reactivate => ("Reactivate API token?", "Requests that use this token will work again."),
        Action::Delete => (
            "Delete API token?",
            "Deleting a token is permanent. It cannot be reactivated.",
        ),
        Action::Rotate => (
            "Rotate API token?",
            "The token gets a new secret, shown to you once. Apps that use the current secret must switch to \
             the new one before the grace period ends.",
        ),
    };
    Confirm {
        title,
        message,
        button: a.word(),
        danger: !matches!(a, Action::Reactivate | Action::Rotate),
    }
}

/// The three confirmations the token list's menus carry.
pub struct TokenConfirms {
    pub deactivate: Confirm,
    pub reactivate: Confirm,
    pub delete: Confirm,
}

fn token_confirms() -> TokenConfirms {
    TokenConfirms {
        deactivate: token_confirmation(Action::Deactivate),
        reactivate: token_confirmation(Action::Reactivate),
        delete: token_confirmation(Action::Delete),
    }
}

pub async fn confirm(
    State(state): State<AppState>,
    Extension(reveals): Extension<Arc<Reveals>>,
    admin: AdminPage,
    path: Result<Path<(TokenId, Action)>, PathRejection>,
) -> PageResult {
    let (id, action) = action_path(path)?;
    let c = token_confirmation(action);
    let token = token(&state, &admin, id).await?;
    if action == Action::Rotate {
        let nonce = reveals.issue(&admin.session_key);
        return rotate_page(&state, &admin, &token, nonce, GRACE[0].0, Vec::new());
    }
    let subject = view(&token, &TokenCreator::Operator, state.app.now(), &HashMap::new()).subject();
    Ok(render(
        StatusCode::OK,
        &ConfirmTemplate {
            l: admin.layout(Nav::Tokens),
            c,
            subject: &subject,
            action_url: format!("{LIST}/{}/{}", token.id, action.as_str()),
            cancel_url: LIST,
            fields: Vec::new(),
        },
    ))
}

pub async fn act(
    State(state): State<AppState>,
    Extension(reveals): Extension<Arc<Reveals>>,
    path: Result<Path<(TokenId, Action)>, PathRejection>,
    form: AdminForm,
) -> PageResult {
    let (id, action) = action_path(path)?;
    let AdminForm { admin, fields } = form;
    let token = token(&state, &admin, id).await?;
    let active = |active| TokenPatch {
        active: Some(active),
        ..TokenPatch::default()
    };
    let what = match action {
        Action::Deactivate => {
            state.app.update_token(&admin.access, token.id, &active(false)).await?;
            "deactivated"
        }
        Action::Reactivate => {
            state.app.update_token(&admin.access, token.id, &active(true)).await?;
            "reactivated"
        }
        Action::Delete => {
            state.app.delete_token(&admin.access, token.id).await?;
            "deleted"
        }
        Action::Rotate => return rotate(&state, &admin, &reveals, &token, &fields).await,
    };
    Ok(done(what, &token).into_response())
}

/// The grace periods Rotate offers: seconds, and the label.
const GRACE: [(i64, &str); 4] = [
    (0, "None: the current secret stops working at once"),
    (3_600, "1 hour"),
    (86_400, "24 hours"),
    (604_800, "7 days"),
];

/// One grace period choice of the Rotate page.
pub struct GraceChoice {
    pub value: i64,
    pub label: &'static str,
    pub selected: bool,
}

/// The Rotate confirmation: the grace period to choose.
#[derive(Template)]
#[template(path = "token_rotate.html")]
struct RotateTemplate<'a> {
    l: Layout,
    nonce: String,
    c: Confirm,
    subject: &'a str,
    action_url: String,
    graces: Vec<GraceChoice>,
    /// A previous secret whose grace is still running, and until when.
    pending: Option<(String, String)>,
    /// Why this token cannot be rotated, if it cannot.
    blocked: Option<String>,
    errors: Vec<String>,
}

/// The Rotate page of `token`, with the grace period `grace` chosen (a
/// value not offered chooses none).
fn rotate_page(
    state: &AppState,
    admin: &AdminPage,
    token: &ApiToken,
    nonce: String,
    grace: i64,
    errors: Vec<String>,
) -> PageResult {
    let now = state.app.now();
    let subject = view(token, &TokenCreator::Operator, now, &HashMap::new()).subject();
    let pending = match (&token.previous_visible_token, token.previous_expires_at) {
        (Some(visible), Some(until)) if until > now => Some((visible.clone(), show_time(until))),
        _ => None,
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok(render(
        status,
        &RotateTemplate {
            l: admin.layout(Nav::Tokens),
            nonce,
            c: token_confirmation(Action::Rotate),
            subject: &subject,
            action_url: format!("{LIST}/{}/{}", token.id, Action::Rotate.as_str()),
            graces: GRACE
                .iter()
                .map(|&(value, label)| GraceChoice {
                    value,
                    label,
                    selected: value == grace,
                })
                .collect(),
            pending,
            blocked: check_rotatable(token.active).err().map(|i| i.description),
            errors,
        },
    ))
}

/// Rotates `token` with the grace period of the field `grace` (one of the
/// offered values), once per form (its nonce), then redirects to the
/// reveal of the new secret.
async fn rotate(
    state: &AppState,
    admin: &AdminPage,
    reveals: &Arc<Reveals>,
    token: &ApiToken,
    fields: &super::session::Fields,
) -> PageResult {
    let key = admin.session_key;
    let nonce = fields.text(NONCE_FIELD);
    let Some(grace) = fields
        .get("grace")
        .and_then(|g| g.parse::<i64>().ok())
        .filter(|g| GRACE.iter().any(|(value, _)| value == g))
    else {
        let message = "Choose a grace period from the list.".to_owned();
        return rotate_page(
            state,
            admin,
            token,
            reveals.keep_or_issue(&key, nonce),
            -1,
            vec![message],
        );
    };
    let claimed = match reveals.claim(&key, nonce).await {
        Claim::Fresh(claimed) => claimed,
        Claim::Done(id) => return Ok(Redirect::to(&reveal_url(&id)).into_response()),
        Claim::Unknown => {
            let nonce = reveals.issue(&key);
            return rotate_page(state, admin, token, nonce, grace, vec![EXPIRED_FORM.to_owned()]);
        }
    };
    let (rotated, plain) = match state.app.rotate_token(&admin.access, token.id, grace).await {
        Ok(done) => done,
        Err(AppError::Domain(DomainError::NotFound)) => return Err(PageError::NotFound),
        Err(AppError::Domain(d)) => {
            drop(claimed);
            let nonce = reveals.keep_or_issue(&key, nonce);
            return rotate_page(state, admin, token, nonce, grace, domain_messages(&d));
        }
        Err(e) => return Err(e.into()),
    };
    let note = rotated.previous_visible_token.as_ref().map(|visible| {
        match rotated.previous_expires_at.filter(|&until| until > state.app.now()) {
            Some(until) => format!(
                "The previous secret {visible} keeps working until {}.",
                show_time(until)
            ),
            None => format!("The previous secret {visible} no longer works."),
        }
    });
    let id = claimed.finish(RevealContent {
        heading: "Rotate API token",
        token_id: rotated.id,
        token: plain,
        description: rotated.description.unwrap_or_default(),
        note,
    });
    Ok(Redirect::to(&reveal_url(&id)).into_response())
}
