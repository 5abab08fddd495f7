//! `/api/v2/api_tokens`: list, create, show, edit (describe, deactivate,
//! reactivate) and delete an account's tokens. Admins only.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use latchkey_core::id::TokenId;
use latchkey_core::token::{parse_description, TokenPatch};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::auth::Admin;
use super::error::{created, json_response, ApiError, ApiResult};
use super::input::{opt_bool, opt_string, record, record_id, BaseUrl, Errors, FromJsonObject, JsonBody, JsonObject};
use super::views::{self, CreatedTokenResponse, CreatedTokenView, TokenList, TokenResponse};
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

/// The body of `POST /api/v2/api_tokens`; `{}`, an empty body,
/// `{"api_token": {}}` and `{"api_token": null}` all create a token without
/// a description.
#[derive(Debug, ToSchema)]
#[schema(example = json!({"api_token": {"description": "Jira sync"}}))]
pub struct CreateTokenRequest {
    #[schema(required = false)]
    pub api_token: Option<CreateToken>,
}

/// A new token. Every other field of the token record is read-only (422
/// `ReadOnly`), `active` included: a new token is always active.
#[derive(Debug, ToSchema)]
pub struct CreateToken {
    /// Trimmed, at most 255 characters, no control characters; empty means
    /// none.
    #[schema(max_length = 255)]
    pub description: Option<String>,
}

impl FromJsonObject for CreateTokenRequest {
    fn from_object(body: Map<String, Value>) -> Result<Self, ApiError> {
        let mut read_only = READ_ONLY.to_vec();
        read_only.push("active");
        let rec = record(body, "api_token", &["description"], &read_only)?;
        let description = opt_string(&rec, "description")?.flatten();
        let description = match description {
            Some(d) => parse_description(&d)?,
            None => None,
        };
        Ok(CreateTokenRequest {
            api_token: Some(CreateToken { description }),
        })
    }
}

/// The body of `PUT /api/v2/api_tokens/{id}`: a partial record.
#[derive(Debug, ToSchema)]
#[schema(example = json!({"api_token": {"active": false}}))]
pub struct UpdateTokenRequest {
    pub api_token: UpdateToken,
}

/// The fields a token's update may set; the other fields of the record are
/// read-only (422 `ReadOnly`).
#[derive(Debug, ToSchema)]
pub struct UpdateToken {
    /// A string (`""` clears it) or `null`.
    #[schema(value_type = Option<String>, required = false, max_length = 255)]
    pub description: Option<Option<String>>,
    /// `false` deactivates, `true` reactivates.
    #[schema(value_type = bool, required = false)]
    pub active: Option<bool>,
}

impl FromJsonObject for UpdateTokenRequest {
    fn from_object(body: Map<String, Value>) -> Result<Self, ApiError> {
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
        Ok(UpdateTokenRequest {
            api_token: UpdateToken { description, active },
        })
    }
}

/// Every token of the account, newest first (not paged: an account holds
/// at most 2048). Admins.
#[utoipa::path(get, path = "/api/v2/api_tokens", operation_id = "listApiTokens", tag = "API tokens",
    responses((status = 200, description = "The account's tokens", body = TokenList), super::openapi::Auth,
        super::openapi::Forbidden))]
pub async fn list(State(state): State<AppState>, admin: Admin, base: BaseUrl) -> ApiResult<Response> {
    let tokens = state.app.tokens(&admin.access).await?;
    let account = state.app.account(&admin.access).await?;
    let api_tokens = tokens.iter().map(|t| views::token(&base, t)).collect();
    Ok(json_response(
        StatusCode::OK,
        &TokenList {
            api_tokens,
            count: tokens.len(),
            limit: account.token_limit,
        },
    ))
}

/// Creates a token; the response holds the full token, this once. Admins.
#[utoipa::path(post, path = "/api/v2/api_tokens", operation_id = "createApiToken", tag = "API tokens",
    request_body(content = CreateTokenRequest, description = "May be empty", content_type = "application/json"),
    responses((status = 201, description = "The new token, with the full `token`; `Location` is its URL",
        body = CreatedTokenResponse,
        headers(("Location" = String, description = "The new token's absolute URL"))),
        super::openapi::Auth, super::openapi::ForbiddenOrDisabled, super::openapi::BadBody,
        super::openapi::Invalid))]
pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    base: BaseUrl,
    JsonBody(input): JsonBody<CreateTokenRequest>,
) -> ApiResult<Response> {
    let description = input.api_token.and_then(|t| t.description);
    let (token, plain) = state.app.create_token(&admin.access, description).await?;
    let body = CreatedTokenResponse {
        api_token: CreatedTokenView {
            record: views::token(&base, &token),
            token: plain.expose().to_owned(),
        },
    };
    let mut res = created(&views::token_url(&base, token.id), &body);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// One token of the account. Admins.
#[utoipa::path(get, path = "/api/v2/api_tokens/{id}", operation_id = "getApiToken", tag = "API tokens", params(super::openapi::IdParam),
    responses((status = 200, description = "The token", body = TokenResponse), super::openapi::Auth,
        super::openapi::Forbidden, super::openapi::NotFound))]
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
        &TokenResponse {
            api_token: views::token(&base, &token),
        },
    ))
}

/// Describes, deactivates or reactivates a token. Admins.
#[utoipa::path(put, path = "/api/v2/api_tokens/{id}", operation_id = "updateApiToken", tag = "API tokens", params(super::openapi::IdParam),
    request_body = UpdateTokenRequest,
    responses((status = 200, description = "The token as changed", body = TokenResponse), super::openapi::Auth,
        super::openapi::Forbidden, super::openapi::NotFound, super::openapi::BadBody, super::openapi::Invalid))]
pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    base: BaseUrl,
    id: Result<Path<TokenId>, PathRejection>,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    // The id is looked at before the body (docs/api.md, "Endpoints").
    let id = record_id(id)?;
    let UpdateTokenRequest {
        api_token: UpdateToken { description, active },
    } = UpdateTokenRequest::from_object(body)?;
    let patch = TokenPatch { description, active };
    let token = state.app.update_token(&admin.access, id, &patch).await?;
    Ok(json_response(
        StatusCode::OK,
        &TokenResponse {
            api_token: views::token(&base, &token),
        },
    ))
}

/// Deletes a deactivated token for good; an active one is 422
/// `TokenActive`. Admins.
#[utoipa::path(delete, path = "/api/v2/api_tokens/{id}", operation_id = "deleteApiToken", tag = "API tokens", params(super::openapi::IdParam),
    responses((status = 204, description = "Deleted"), super::openapi::Auth, super::openapi::Forbidden,
        super::openapi::NotFound, super::openapi::Invalid))]
pub async fn delete(
    State(state): State<AppState>,
    admin: Admin,
    id: Result<Path<TokenId>, PathRejection>,
) -> ApiResult<Response> {
    let id = record_id(id)?;
    state.app.delete_token(&admin.access, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
