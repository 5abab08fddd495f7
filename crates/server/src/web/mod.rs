//! The Admin Center: server-rendered pages for account admins (README.md, "First run: a token from the browser").
//! Pages call the same service layer as the REST API
//! ([`latchkey_app::App`] with an [`latchkey_app::AdminAccess`]); they hold
//! no rule of their own and never import the REST API's module.
//! The session cookie, CSRF and the admin check live in extractors
//! ([`session`]), so a handler that takes [`session::AdminPage`] or
//! [`session::AdminForm`] only runs for a signed-in admin whose form carried
//! the session's CSRF token. Page actions (`deactivate`, `suspend`, ...) are
//! parsed into enums by the path extractor, so an unknown one is a 404.
//! Token rotation is one of those actions; its confirmation asks for the
//! grace period ([`tokens`]). A new token's secret is shown once, after a
//! redirect, by [`reveal`] (post/redirect/get with a one-use form nonce).

pub mod audit;
pub mod configuration;
pub mod login;
pub mod page;
pub mod people;
pub mod reveal;
pub mod session;
pub mod token_form;
pub mod tokens;
pub mod usage_chart;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Router};
use std::sync::Arc;

use crate::client::{named, PathId};
use crate::state::AppState;
use page::{ErrorPage, PageError};
use session::AdminPage;

/// Pages may load scripts, styles and images from this server only, and
/// no inline script ever runs.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLESHEET: &str = include_str!("../../static/app.css");
const SCRIPT: &str = include_str!("../../static/app.js");

/// The Admin Center's routes, to be merged into the application router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/admin") }))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", get(login::logout_form).post(login::logout))
        .route("/admin", get(admin_home))
        .route("/admin/", get(admin_home))
        .route("/admin/apis/api-tokens", get(tokens::list).post(tokens::create))
        .route("/admin/apis/api-tokens/new", get(tokens::new))
        .route("/admin/apis/api-tokens/reveal/{id}", get(tokens::revealed))
        .route("/admin/apis/api-tokens/{id}", get(tokens::show))
        .route(
            "/admin/apis/api-tokens/{id}/edit",
            get(tokens::edit).post(tokens::update),
        )
        .route(
            "/admin/apis/api-tokens/{id}/{action}",
            get(tokens::confirm).post(tokens::act),
        )
        .route(
            "/admin/apis/configuration",
            get(configuration::show).post(configuration::save),
        )
        .route("/admin/audit-log", get(audit::page))
        .route("/admin/people", get(people::list).post(people::create))
        .route("/admin/people/new", get(people::new))
        .route(
            "/admin/people/{id}/role",
            get(people::confirm_role).post(people::change_role),
        )
        .route("/admin/people/{id}/edit", get(people::edit).post(people::update))
        .route("/admin/people/{id}/{action}", get(people::confirm).post(people::act))
        .route("/admin/{*rest}", get(admin_not_found).post(admin_not_found))
        .route("/static/app.css", get(stylesheet))
        .route("/static/app.js", get(script))
        .layer(Extension(Arc::new(reveal::Reveals::default())))
        .layer(middleware::from_fn(page_layer))
}

/// Every Admin Center path, for tests that check the access rules of each.
pub const ADMIN_GET_PATHS: &[&str] = &[
    "/admin",
    "/admin/apis/api-tokens",
    "/admin/apis/api-tokens/new",
    "/admin/apis/api-tokens/reveal/x",
    "/admin/apis/api-tokens/1",
    "/admin/apis/api-tokens/1/edit",
    "/admin/apis/api-tokens/1/deactivate",
    "/admin/apis/api-tokens/1/reactivate",
    "/admin/apis/api-tokens/1/delete",
    "/admin/apis/api-tokens/1/rotate",
    "/admin/apis/configuration",
    "/admin/people",
    "/admin/people/new",
    "/admin/people/1/edit",
    "/admin/people/1/role?to=admin",
    "/admin/people/1/suspend",
    "/admin/people/1/unsuspend",
    "/admin/people/1/delete",
    "/admin/audit-log",
];

/// The `{id}` and the parsed `{action}` of a page action's path. The
/// action is an enum, so an unknown one fails to parse: a 404, like an id
/// that is not a positive integer. The extractor's rejection is taken as a
/// value so that the sign-in and CSRF checks still come first.
fn action_path<Id: PathId, A>(path: Result<Path<(Id, A)>, PathRejection>) -> Result<(Id, A), PageError> {
    path.ok()
        .and_then(|Path((id, action))| Some((named(id)?, action)))
        .ok_or(PageError::NotFound)
}

/// A record id from a path; anything but a positive integer is a 404.
fn record_id<Id: PathId>(path: Result<Path<Id>, PathRejection>) -> Result<Id, PageError> {
    crate::client::record_id(path).ok_or(PageError::NotFound)
}

async fn admin_home(_admin: AdminPage) -> Redirect {
    Redirect::to("/admin/apis/api-tokens")
}

async fn admin_not_found(_admin: AdminPage) -> PageError {
    PageError::NotFound
}

/// A path no route knows, asked for by a browser (`Accept: text/html`)
/// outside `/api/`: the HTML 404 page (with its title and `lang`) rather
/// than the API's JSON, which every other client keeps (None).
pub fn browser_not_found(req: &Request) -> Option<Response> {
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if !wants_html || req.uri().path().starts_with("/api/") {
        return None;
    }
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let page = PageError::NotFound
        .into_response()
        .extensions_mut()
        .remove::<ErrorPage>()?;
    let mut res = page.render(request_id);
    res.headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    Some(res)
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    res
}

async fn stylesheet() -> Response {
    asset(STYLESHEET, "text/css; charset=utf-8")
}

async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// Adds the pages' Content-Security-Policy, and renders error pages with
/// the request's id so that a user can quote it.
async fn page_layer(req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let mut res = next.run(req).await;
    if let Some(error) = res.extensions_mut().remove::<ErrorPage>() {
        // The rendered page keeps what else the answer carried (the
        // request metrics read `DatabaseFailed` from it).
        let extensions = std::mem::take(res.extensions_mut());
        res = error.render(&request_id);
        *res.extensions_mut() = extensions;
    }
    res.headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    res
}
