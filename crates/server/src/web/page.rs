//! What every page shares: the layout's context, rendering a template into
//! a response, how times are shown, and the error pages (which carry the
//! request id so that a user can quote it).

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use latchkey_app::AppError;
use latchkey_core::{account::Account, time::Timestamp, user::User, DomainError};

use crate::metrics::DatabaseFailed;

/// The navigation entries of the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Tokens,
    Configuration,
    People,
    AuditLog,
    None,
}

/// What the layout shows around every signed-in page.
#[derive(Debug, Clone)]
pub struct Layout {
    pub account_name: String,
    pub user_name: String,
    pub csrf: String,
    pub audit_log: bool,
    pub nav: Nav,
}

impl Layout {
    pub fn new(account: &Account, user: &User, csrf: &str, nav: Nav) -> Self {
        Layout {
            account_name: account.name.clone(),
            user_name: user.name.clone(),
            csrf: csrf.to_owned(),
            audit_log: account.plan.can_view_audit_log(),
            nav,
        }
    }

    /// Whether the page belongs to the navigation entry `name`.
    pub fn current(&self, name: &str) -> bool {
        let nav = match name {
            "tokens" => Nav::Tokens,
            "configuration" => Nav::Configuration,
            "people" => Nav::People,
            "audit-log" => Nav::AuditLog,
            _ => Nav::None,
        };
        self.nav == nav && nav != Nav::None
    }
}

/// The words of a confirmation, on its page and in the dialog alike.
#[derive(Debug, Clone, Copy)]
pub struct Confirm {
    pub title: &'static str,
    pub message: &'static str,
    pub button: &'static str,
    pub danger: bool,
}

/// Renders a template as an HTML response.
pub fn render<T: Template>(status: StatusCode, template: &T) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => PageError::Internal(format!("rendering a page failed: {e}")).into_response(),
    }
}

/// A time as the pages show it: `2026-11-27 09:14 UTC`.
pub fn show_time(ts: Timestamp) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(ts.unix())
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// Why a page could not be shown.
#[derive(Debug)]
pub enum PageError {
    /// Signed in, but not an admin of the account.
    Forbidden {
        csrf: Option<String>,
    },
    /// The form did not carry this session's CSRF token.
    BadCsrf,
    NotFound,
    BadRequest(String),
    /// A rule refused the change; the messages are the domain's own.
    Refused(Vec<String>),
    TooManyRequests,
    Internal(String),
    /// A 500 because the database failed (counted in
    /// `latchkey_database_errors_total{operation="request"}`).
    Database(String),
}

impl From<AppError> for PageError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Domain(DomainError::NotFound) => PageError::NotFound,
            AppError::Domain(d) => PageError::Refused(domain_messages(&d)),
            AppError::Storage(e) => PageError::Database(e.to_string()),
            other => PageError::Internal(other.to_string()),
        }
    }
}

/// A message as a sentence: its first letter capitalised (the domain's
/// messages are the API's, which start with the field's name).
pub fn capitalised(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The user-facing messages of a refused change.
pub fn domain_messages(e: &DomainError) -> Vec<String> {
    match e {
        DomainError::Invalid(list) => list.iter().map(|i| capitalised(&i.description)).collect(),
        DomainError::TokenAccessDisabled => vec!["API token access is turned off for this account.".to_owned()],
        DomainError::NotFound => vec!["Not found".to_owned()],
    }
}

/// An error page waiting for the request id; `web::page_layer` renders it.
#[derive(Debug, Clone)]
pub struct ErrorPage {
    pub status: StatusCode,
    pub title: &'static str,
    pub messages: Vec<String>,
    pub csrf: Option<String>,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorTemplate<'a> {
    title: &'a str,
    messages: &'a [String],
    request_id: &'a str,
    csrf: Option<&'a str>,
}

impl ErrorPage {
    pub fn render(&self, request_id: &str) -> Response {
        let t = ErrorTemplate {
            title: self.title,
            messages: &self.messages,
            request_id,
            csrf: self.csrf.as_deref(),
        };
        match t.render() {
            Ok(html) => (self.status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "rendering the error page failed");
                (self.status, self.title).into_response()
            }
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let database_failed = matches!(self, PageError::Database(_));
        let (status, title, messages, csrf) = match self {
            PageError::Forbidden { csrf } => (
                StatusCode::FORBIDDEN,
                "You don't have access to this page",
                vec![
                    "You do not have access to this page. Please contact the account owner of this help desk for further help."
                        .to_owned(),
                ],
                csrf,
            ),
            PageError::BadCsrf => (
                StatusCode::FORBIDDEN,
                "This form has expired",
                vec!["The form did not come from this page or has expired. Go back, reload the page and try again."
                    .to_owned()],
                None,
            ),
            PageError::NotFound => (
                StatusCode::NOT_FOUND,
                "Page not found",
                vec!["There is nothing here. It may have been deleted.".to_owned()],
                None,
            ),
            PageError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", vec![m], None),
            PageError::Refused(m) => (StatusCode::UNPROCESSABLE_ENTITY, "That change was not made", m, None),
            PageError::TooManyRequests => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                vec!["Too many attempts. Wait a minute and try again.".to_owned()],
                None,
            ),
            PageError::Internal(cause) | PageError::Database(cause) => {
                tracing::error!(cause = %cause, "internal error on a page");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    vec!["Something went wrong on our side.".to_owned()],
                    None,
                )
            }
        };
        let mut res = status.into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        res.extensions_mut().insert(ErrorPage {
            status,
            title,
            messages,
            csrf,
        });
        if database_failed {
            res.extensions_mut().insert(DatabaseFailed);
        }
        res
    }
}

pub type PageResult<T = Response> = Result<T, PageError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_show_as_utc_minutes() {
        assert_eq!(show_time(Timestamp::from_unix(1_795_000_000)), "2026-11-18 11:06 UTC");
    }
}
