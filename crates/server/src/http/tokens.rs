//! `/api/v2/api_tokens`: list, create, show, edit (describe, deactivate,
//! reactivate) and delete an account's tokens. Admins only.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use latchkey_core::id::TokenId;
use latchkey_core::token::{parse_description, TokenPatch};
use serde_json::json;

use super::auth::Admin;
use super::error::{created, json_response, ApiError, ApiResult};
use super::input::{opt_bool, opt_string, record, record_id, BaseUrl, Errors, JsonObject};
use super::views;
use crate::state::AppState;

/// Fields of a token record that exist but cannot be set through the API.
const READ_ONLY: &[&str] = &[
    "id",
    "url",
    "token",
    "visible_token",
    "user_id",
    "assigned_user_id",
    "created_at",
    "updated_at",
    "last_used",
];

pub async fn list(State(state): State<AppState>, admin: Admin, base: BaseUrl) -> ApiResult<Response> {
    let tokens = state.app.tokens(&admin.access).await?;
    let account = state.app.account(&admin.access).await?;
    let list: Vec<_> = tokens.iter().map(|t| views::token(&base, t)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"api_tokens": list, "count": tokens.len(), "limit": account.token_limit}),
    ))
}

pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    base: BaseUrl,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let mut read_only = READ_ONLY.to_vec();
    read_only.push("active");
    let rec = record(body, "api_token", &["description"], &read_only)?;
    let description = opt_string(&rec, "description")?.flatten();
    let description = match description {
        Some(d) => parse_description(&d)?,
        None => None,
    };
    let (token, plain) = state.app.create_token(&admin.access, description).await?;
    let mut body = views::token(&base, &token);
    body["token"] = plain.expose().into();
    let mut res = created(&views::token_url(&base, token.id), &json!({ "api_token": body }));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

pub async fn show(
    State(state): State<AppState>,
    admin: Admin,
    base: BaseUrl,
    id: Result<Path<TokenId>, PathRejection>,
) -> ApiResult<Response> {
    let id = record_id(id)?;
    let token = state.app.token(&admin.access, id).await?.ok_or(ApiError::NotFound)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"api_token": views::token(&base, &token)}),
    ))
}

pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    base: BaseUrl,
    id: Result<Path<TokenId>, PathRejection>,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let id = record_id(id)?;
    let rec = record(body, "api_token", &["description", "active"], READ_ONLY)?;
    let mut errors = Errors::default();
    let description = errors.check(opt_string(&rec, "description")).flatten();
    let active = errors.check(opt_bool(&rec, "active")).flatten();
    let description = match description {
        Some(Some(d)) => errors.check(parse_description(&d)),
        Some(None) => Some(None),
        None => None,
    };
    errors.finish()?;
    let patch = TokenPatch { description, active };
    let token = state.app.update_token(&admin.access, id, &patch).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"api_token": views::token(&base, &token)}),
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    admin: Admin,
    id: Result<Path<TokenId>, PathRejection>,
) -> ApiResult<Response> {
    let id = record_id(id)?;
    state.app.delete_token(&admin.access, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
