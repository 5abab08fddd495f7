//! The configuration page (`/admin/apis/configuration`): whether the
//! account allows API token access, and its token policy (README.md,
//! "Token policy"). One form with two submit buttons: **Save**
//! (`action=save`, also a form sent without `action`) and **Preview**
//! (`action=preview`), which lists the tokens the entered policy would
//! deactivate and delete now, saving nothing.
//!
//! The policy's fields: `max_lifetime_days`, `deactivate_unused_after_days`
//! and `delete_deactivated_after_days` (whole days from 1 to 3650, empty for
//! no rule) and the checkboxes `require_expiry`, `require_assigned_user` and
//! `deactivate_legacy_tokens`.
//! A form that sends none of the day fields leaves the policy alone.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use latchkey_app::AppError;
use latchkey_core::{
    account::AccountPatch,
    id::TokenId,
    policy::{parse_days, TokenPolicy, TokenPolicyPatch},
    time::Timestamp,
    token::ApiToken,
};

use super::page::{domain_messages, render, show_time, Layout, Nav, PageError, PageResult};
use super::session::{AdminForm, AdminPage, Fields};
use crate::state::AppState;

const PAGE: &str = "/admin/apis/configuration";

/// The day fields: the form field, and its label in messages.
const MAX_LIFETIME: (&str, &str) = ("max_lifetime_days", "Maximum lifetime");
const DEACTIVATE_UNUSED: (&str, &str) = ("deactivate_unused_after_days", "Deactivate tokens unused for");
const DELETE_DEACTIVATED: (&str, &str) = ("delete_deactivated_after_days", "Delete tokens deactivated for");

/// The policy as entered (or, on a fresh page, as saved), kept as text so
/// that a refused form shows it again unchanged.
#[derive(Debug, Clone, Default)]
pub struct PolicyEntered {
    pub max_lifetime_days: String,
    pub require_expiry: bool,
    pub require_assigned_user: bool,
    pub deactivate_unused_after_days: String,
    pub delete_deactivated_after_days: String,
    pub deactivate_legacy_tokens: bool,
}

fn days_text(days: Option<i64>) -> String {
    days.map(|d| d.to_string()).unwrap_or_default()
}

impl PolicyEntered {
    fn of(p: &TokenPolicy) -> Self {
        PolicyEntered {
            max_lifetime_days: days_text(p.max_lifetime_days),
            require_expiry: p.require_expiry,
            require_assigned_user: p.require_assigned_user,
            deactivate_unused_after_days: days_text(p.deactivate_unused_after_days),
            delete_deactivated_after_days: days_text(p.delete_deactivated_after_days),
            deactivate_legacy_tokens: p.deactivate_legacy_tokens,
        }
    }

    /// The policy fields of a form, or `None` when it sent none of them.
    fn from_fields(fields: &Fields) -> Option<Self> {
        let sent = [MAX_LIFETIME, DEACTIVATE_UNUSED, DELETE_DEACTIVATED]
            .iter()
            .any(|(name, _)| fields.get(name).is_some());
        sent.then(|| PolicyEntered {
            max_lifetime_days: fields.text(MAX_LIFETIME.0).trim().to_owned(),
            require_expiry: fields.checked("require_expiry"),
            require_assigned_user: fields.checked("require_assigned_user"),
            deactivate_unused_after_days: fields.text(DEACTIVATE_UNUSED.0).trim().to_owned(),
            delete_deactivated_after_days: fields.text(DELETE_DEACTIVATED.0).trim().to_owned(),
            deactivate_legacy_tokens: fields.checked("deactivate_legacy_tokens"),
        })
    }

    /// The policy entered; each bad day count adds a message to `errors`.
    fn parse(&self, errors: &mut Vec<String>) -> TokenPolicy {
        let mut days = |(field, label): (&str, &str), text: &str| -> Option<i64> {
            if text.is_empty() {
                return None;
            }
            match text.parse::<i64>().ok().map(|d| parse_days(field, d)) {
                Some(Ok(d)) => Some(d),
                _ => {
                    errors.push(format!(
                        "{label}: enter a whole number of days from 1 to 3650, or leave it empty."
                    ));
                    None
                }
            }
        };
        TokenPolicy {
            max_lifetime_days: days(MAX_LIFETIME, &self.max_lifetime_days),
            require_expiry: self.require_expiry,
            require_assigned_user: self.require_assigned_user,
            deactivate_unused_after_days: days(DEACTIVATE_UNUSED, &self.deactivate_unused_after_days),
            delete_deactivated_after_days: days(DELETE_DEACTIVATED, &self.delete_deactivated_after_days),
            deactivate_legacy_tokens: self.deactivate_legacy_tokens,
        }
    }
}

/// A patch that makes the policy `p`, whole.
fn whole(p: &TokenPolicy) -> TokenPolicyPatch {
    TokenPolicyPatch {
        max_lifetime_days: Some(p.max_lifetime_days),
        require_expiry: Some(p.require_expiry),
        require_assigned_user: Some(p.require_assigned_user),
        deactivate_unused_after_days: Some(p.deactivate_unused_after_days),
        delete_deactivated_after_days: Some(p.delete_deactivated_after_days),
        deactivate_legacy_tokens: Some(p.deactivate_legacy_tokens),
    }
}

/// One token of the preview.
pub struct PreviewRow {
    pub id: TokenId,
    pub description: String,
    pub visible_token: String,
    pub last_used: String,
    pub since: String,
}

/// What the entered policy would do now.
pub struct Preview {
    pub deactivate: Vec<PreviewRow>,
    pub delete: Vec<PreviewRow>,
}

fn when(ts: Option<Timestamp>, none: &str) -> String {
    ts.map(show_time).unwrap_or_else(|| none.to_owned())
}

fn preview_row(t: &ApiToken) -> PreviewRow {
    PreviewRow {
        id: t.id,
        description: t.description.clone().unwrap_or_default(),
        visible_token: t.visible_token.clone(),
        last_used: when(t.last_used, "Never"),
        // What the sweep counts from, besides the last use.
        since: show_time(if t.active {
            t.created_at
        } else {
            t.deactivated_at.unwrap_or(t.updated_at)
        }),
    }
}

#[derive(Template)]
#[template(path = "configuration.html")]
struct ConfigurationTemplate<'a> {
    l: Layout,
    api_token_access: bool,
    p: PolicyEntered,
    errors: Vec<String>,
    notice: Option<&'a str>,
    preview: Option<Preview>,
}

fn page(
    admin: &AdminPage,
    api_token_access: bool,
    p: PolicyEntered,
    errors: Vec<String>,
    preview: Option<Preview>,
) -> Response {
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render(
        status,
        &ConfigurationTemplate {
            l: admin.layout(Nav::Configuration),
            api_token_access,
            p,
            errors,
            notice: None,
            preview,
        },
    )
}

/// A fixed notice for `?done=saved` (never client text).
fn notice(query: Option<&str>) -> Option<&'static str> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .any(|(k, v)| k == "done" && v == "saved")
        .then_some("Settings saved.")
}

pub async fn show(admin: AdminPage, RawQuery(query): RawQuery) -> PageResult {
    let account = admin.account();
    Ok(render(
        StatusCode::OK,
        &ConfigurationTemplate {
            l: admin.layout(Nav::Configuration),
            api_token_access: account.api_token_access,
            p: PolicyEntered::of(&account.token_policy),
            errors: Vec::new(),
            notice: notice(query.as_deref()),
            preview: None,
        },
    ))
}

pub async fn save(State(state): State<AppState>, form: AdminForm) -> PageResult {
    let AdminForm { admin, fields } = form;
    let preview = match fields.get("action") {
        None | Some("save") => false,
        Some("preview") => true,
        Some(_) => return Err(PageError::BadRequest("Send this form from its page.".to_owned())),
    };
    let api_token_access = fields.checked("api_token_access");
    let entered = PolicyEntered::from_fields(&fields);
    let mut errors = Vec::new();
    let policy = entered.as_ref().map(|p| p.parse(&mut errors));
    let shown = || {
        entered
            .clone()
            .unwrap_or_else(|| PolicyEntered::of(&admin.account().token_policy))
    };
    if !errors.is_empty() {
        return Ok(page(&admin, api_token_access, shown(), errors, None));
    }
    if preview {
        let policy = policy.unwrap_or(admin.account().token_policy);
        let effect = state.app.preview_policy(&admin.access, &policy).await?;
        let preview = Preview {
            deactivate: effect.would_deactivate.iter().map(preview_row).collect(),
            delete: effect.would_delete.iter().map(preview_row).collect(),
        };
        return Ok(page(&admin, api_token_access, shown(), errors, Some(preview)));
    }
    let patch = AccountPatch {
        api_token_access: Some(api_token_access),
        token_policy: policy.as_ref().map(whole),
        ..Default::default()
    };
    match state.app.update_account(&admin.access, &patch).await {
        Ok(_) => Ok(Redirect::to(&format!("{PAGE}?done=saved")).into_response()),
        Err(AppError::Domain(d)) => Ok(page(&admin, api_token_access, shown(), domain_messages(&d), None)),
        Err(e) => Err(e.into()),
    }
}
