//! The REST API: its routes and handlers, the authentication extractors,
//! error bodies and `/verify`, `/healthz`, `/readyz`, `/metrics`. Handlers
//! contain no SQL and no credential checks: they parse input, call the
//! service layer ([`latchkey_app::App`]) with the capability their
//! extractor produced, and shape the response. The whole router (with the
//! pages and middleware) is [`crate::router`].

pub mod account;
pub mod audit;
pub mod auth;
pub mod edge;
pub mod error;
pub mod input;
pub mod leaks;
pub mod openapi;
pub mod ops;
pub mod paging;
pub mod rate_headers;
pub mod scopes;
pub mod tokens;
pub mod users;
pub mod verify;
pub mod views;

use axum::routing::{any, get, post};
use axum::Router;

use crate::state::AppState;

/// The REST API's routes (paths without the `.json` suffix), `/verify` and
/// the operator endpoints.
pub fn routes() -> Router<AppState> {
    Router::new()
        // `/api/v2/openapi.json`, unauthenticated: the suffix is dropped
        // before routing like on every API path.
        .route("/api/v2/openapi", get(openapi::serve))
        .route("/api/v2/users/me", get(users::me))
        .route("/api/v2/users", get(users::list).post(users::create))
        .route(
            "/api/v2/users/{id}",
            get(users::show).put(users::update).delete(users::delete),
        )
        .route("/api/v2/api_tokens", get(tokens::list).post(tokens::create))
        .route(
            "/api/v2/api_tokens/{id}",
            get(tokens::show).put(tokens::update).delete(tokens::delete),
        )
        .route("/api/v2/scopes", get(scopes::list))
        .route("/api/v2/credentials/revoke", post(leaks::revoke))
        .route("/operator/v1/secret_scanning/github", post(leaks::github))
        .route("/api/v2/api_tokens/{id}/rotate", post(tokens::rotate))
        .route("/api/v2/api_tokens/{id}/usage", get(tokens::usage))
        .route("/api/v2/account/token_policy/preview", post(account::preview_policy))
        .route("/api/v2/account", get(account::show))
        .route(
            "/api/v2/account/settings",
            get(account::settings).put(account::update_settings),
        )
        .merge(audit::routes())
        .route("/verify", any(verify::verify))
        .route("/verify/{*path}", any(verify::verify))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::public_metrics))
}
