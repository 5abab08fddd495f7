//! `GET /api/v2/scopes`: the scopes this deployment offers, with
//! descriptions (README.md, "Restricted tokens"): `read`, `write`, and per
//! resource (latchkey's own, then the configuration file's) `{resource}`,
//! `{resource}:read` and `{resource}:write`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::ApiUser;
use super::error::{json_response, ApiResult};
use crate::state::AppState;

/// One scope a token may be restricted to.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"name": "tickets:read", "description": "Tickets and their comments: read"}))]
pub struct ScopeView {
    pub name: String,
    pub description: String,
}

/// `{"scopes": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScopeList {
    pub scopes: Vec<ScopeView>,
}

/// Every scope this deployment offers. Any authenticated user; a restricted
/// token needs `read` (no resource claims this path).
#[utoipa::path(get, path = "/api/v2/scopes", operation_id = "listScopes", tag = "Scopes",
    responses((status = 200, description = "The scopes on offer", body = ScopeList), super::openapi::Auth,
        super::openapi::MissingScope))]
pub async fn list(State(state): State<AppState>, _user: ApiUser) -> ApiResult<Response> {
    let scopes = state
        .app
        .scope_catalog()
        .scopes()
        .into_iter()
        .map(|s| ScopeView {
            name: s.name,
            description: s.description,
        })
        .collect();
    Ok(json_response(StatusCode::OK, &ScopeList { scopes }))
}
