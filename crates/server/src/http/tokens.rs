//! `/api/v2/api_tokens`: list, create, show, edit (describe, deactivate,
//! reactivate, restrict) and delete an account's tokens. Admins only.
//! Restrictions (scopes, an assigned user, an expiry) are README.md's
//! "Restricted tokens".

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use latchkey_core::allowlist::IpAllowlist;
use latchkey_core::id::{TokenId, UserId};
use latchkey_core::rate_limit::RateLimit;
use latchkey_core::scope::Scopes;
use latchkey_core::time::Timestamp;
use latchkey_core::token::{parse_description, ApiToken, PlainToken, Restrictions, TokenPatch};
use latchkey_core::{ErrorCode, Invalid};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::auth::Admin;
use super::error::{created, json_response, ApiError, ApiResult};
use super::input::{
    opt_bool, opt_id, opt_string, opt_string_list, opt_time, record, record_id, BaseUrl, Errors, FromJsonObject,
    JsonBody, JsonObject,
};
use super::views::{self, CreatedTokenResponse, CreatedTokenView, TokenList, TokenResponse};
use crate::state::AppState;

/// Fields of a token record that exist but cannot be set through the API.
const READ_ONLY: &[&str] = &[
    "id",
    "url",
    "token",
    "visible_token",
    "user_id",
    "status",
    "created_at",
    "updated_at",
    "last_used",
    "leaked_at",
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
#[schema(example = json!({"description": "Jira sync", "scopes": ["tickets:read", "users:read"],
    "assigned_user_id": 12, "expires_at": "2027-03-01T00:00:00Z"}))]
pub struct CreateToken {
    /// Trimmed, at most 255 characters, no control characters; empty means
    /// none.
    #[schema(max_length = 255)]
    pub description: Option<String>,
    /// `null` or absent: the user's full access. Otherwise a non-empty list
    /// of the scopes `GET /api/v2/scopes` lists (`read`, `write`,
    /// `tickets`, `tickets:read`, …); an unknown one is 422 `InvalidValue`.
    #[schema(required = false, max_items = 100)]
    pub scopes: Option<Vec<String>>,
    /// Only this user's email authenticates with the token (a user of the
    /// account); `null`: any verified user.
    #[schema(required = false, value_type = Option<i64>, minimum = 1)]
    pub assigned_user_id: Option<UserId>,
    /// RFC 3339, in the future; from this instant the token fails.
    #[schema(required = false, value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    /// IPv4 and IPv6 networks (`10.0.0.0/8`, `2001:db8::/32`) or single
    /// addresses; only requests from inside them authenticate. `null`: any.
    #[schema(required = false, value_type = Option<Vec<String>>, max_items = 100)]
    pub allowed_ips: Option<IpAllowlist>,
    /// At most `requests` per `per_seconds` for the whole deployment;
    /// `null`: no limit.
    #[schema(required = false, value_type = Option<views::RateLimitView>)]
    pub rate_limit: Option<RateLimit>,
}

/// The restriction fields every token body may carry.
const RESTRICTIONS: [&str; 5] = ["scopes", "assigned_user_id", "expires_at", "allowed_ips", "rate_limit"];

/// `rate_limit` of a body: absent, null, or `{"requests": n, "per_seconds": s}`
/// (both integers, nothing else) within the bounds of [`RateLimit::new`].
fn opt_rate_limit(rec: &Map<String, Value>) -> Result<Option<Option<RateLimit>>, Invalid> {
    let shape = || {
        Invalid::new(
            "rate_limit",
            ErrorCode::InvalidValue,
            "rate_limit must be null or {\"requests\": n, \"per_seconds\": s} with whole numbers",
        )
    };
    match rec.get("rate_limit") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Object(o)) => {
            if o.len() != 2 {
                return Err(shape());
            }
            let number = |key: &str| o.get(key).and_then(Value::as_i64).ok_or_else(shape);
            RateLimit::new(number("requests")?, number("per_seconds")?).map(|l| Some(Some(l)))
        }
        Some(_) => Err(shape()),
    }
}

/// `allowed_ips` of a body: absent, null, or parsed networks.
fn opt_allowlist(rec: &Map<String, Value>) -> Result<Option<Option<IpAllowlist>>, Invalid> {
    match opt_string_list(rec, "allowed_ips")? {
        None => Ok(None),
        Some(None) => Ok(Some(None)),
        Some(Some(entries)) => IpAllowlist::parse(&entries).map(|a| Some(Some(a))),
    }
}

impl FromJsonObject for CreateTokenRequest {
    fn from_object(body: Map<String, Value>) -> Result<Self, ApiError> {
        let mut read_only = READ_ONLY.to_vec();
        read_only.push("active");
        let mut settable = vec!["description"];
        settable.extend(RESTRICTIONS);
        let rec = record(body, "api_token", &settable, &read_only)?;
        let mut errors = Errors::default();
        let description = errors.check(opt_string(&rec, "description")).flatten().flatten();
        let description = match description {
            Some(d) => errors.check(parse_description(&d)).flatten(),
            None => None,
        };
        let scopes = errors.check(opt_string_list(&rec, "scopes")).flatten().flatten();
        let assigned_user_id = errors.check(opt_id(&rec, "assigned_user_id")).flatten().flatten();
        let expires_at = errors.check(opt_time(&rec, "expires_at")).flatten().flatten();
        let allowed_ips = errors.check(opt_allowlist(&rec)).flatten().flatten();
        let rate_limit = errors.check(opt_rate_limit(&rec)).flatten().flatten();
        errors.finish()?;
        Ok(CreateTokenRequest {
            api_token: Some(CreateToken {
                description,
                scopes,
                assigned_user_id: assigned_user_id.map(UserId::new),
                expires_at,
                allowed_ips,
                rate_limit,
            }),
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
/// read-only (422 `ReadOnly`). A field left out stays as it is.
#[derive(Debug, ToSchema)]
pub struct UpdateToken {
    /// A string (`""` clears it) or `null`.
    #[schema(value_type = Option<String>, required = false, max_length = 255)]
    pub description: Option<Option<String>>,
    /// `false` deactivates, `true` reactivates.
    #[schema(value_type = bool, required = false)]
    pub active: Option<bool>,
    /// A non-empty list of offered scopes, or `null` for full access.
    /// Narrowing takes effect as a deactivation does.
    #[schema(value_type = Option<Vec<String>>, required = false, max_items = 100)]
    pub scopes: Option<Option<Vec<String>>>,
    /// A user of the account, or `null` for any verified user.
    #[schema(value_type = Option<i64>, required = false, minimum = 1)]
    pub assigned_user_id: Option<Option<UserId>>,
    /// May only move earlier, and stay in the future; `null` (never
    /// expiring) is refused once an expiry is set (422 `InvalidValue`).
    #[schema(value_type = Option<String>, required = false, format = DateTime)]
    pub expires_at: Option<Option<Timestamp>>,
    /// Networks or addresses, or `null` for any address.
    #[schema(value_type = Option<Vec<String>>, required = false, max_items = 100)]
    pub allowed_ips: Option<Option<IpAllowlist>>,
    /// A new limit (it applies from the next request, counting this
    /// window's requests so far), or `null` for none.
    #[schema(value_type = Option<views::RateLimitView>, required = false)]
    pub rate_limit: Option<Option<RateLimit>>,
}

impl FromJsonObject for UpdateTokenRequest {
    fn from_object(body: Map<String, Value>) -> Result<Self, ApiError> {
        let mut settable = vec!["description", "active"];
        settable.extend(RESTRICTIONS);
        let rec = record(body, "api_token", &settable, READ_ONLY)?;
        let mut errors = Errors::default();
        let description = errors.check(opt_string(&rec, "description")).flatten();
        let active = errors.check(opt_bool(&rec, "active")).flatten();
        let description = match description {
            Some(Some(d)) => errors.check(parse_description(&d)),
            Some(None) => Some(None),
            None => None,
        };
        let scopes = errors.check(opt_string_list(&rec, "scopes")).flatten();
        let assigned_user_id = errors
            .check(opt_id(&rec, "assigned_user_id"))
            .flatten()
            .map(|id| id.map(UserId::new));
        let expires_at = errors.check(opt_time(&rec, "expires_at")).flatten();
        let allowed_ips = errors.check(opt_allowlist(&rec)).flatten();
        let rate_limit = errors.check(opt_rate_limit(&rec)).flatten();
        errors.finish()?;
        Ok(UpdateTokenRequest {
            api_token: UpdateToken {
                description,
                active,
                scopes,
                assigned_user_id,
                expires_at,
                allowed_ips,
                rate_limit,
            },
        })
    }
}

/// The scopes of a body, checked against what this deployment offers.
fn scopes(state: &AppState, names: Option<Vec<String>>) -> Result<Option<Scopes>, ApiError> {
    Ok(names
        .map(|names| state.app.scope_catalog().parse_scopes(&names))
        .transpose()?)
}

/// Every token of the account, newest first (not paged: an account holds
/// at most 2048). Admins.
#[utoipa::path(get, path = "/api/v2/api_tokens", operation_id = "listApiTokens", tag = "API tokens",
    responses((status = 200, description = "The account's tokens", body = TokenList), super::openapi::Auth,
        super::openapi::Forbidden))]
pub async fn list(State(state): State<AppState>, admin: Admin, base: BaseUrl) -> ApiResult<Response> {
    let tokens = state.app.tokens(&admin.access).await?;
    let account = state.app.account(&admin.access).await?;
    let api_tokens = tokens.iter().map(|t| views::token(&base, t, state.app.now())).collect();
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
    let CreateToken {
        description,
        scopes: names,
        assigned_user_id,
        expires_at,
        allowed_ips,
        rate_limit,
    } = input.api_token.unwrap_or(CreateToken {
        description: None,
        scopes: None,
        assigned_user_id: None,
        expires_at: None,
        allowed_ips: None,
        rate_limit: None,
    });
    let restrictions = Restrictions {
        scopes: scopes(&state, names)?,
        assigned_user_id,
        expires_at,
        allowed_ips,
        rate_limit,
    };
    let (token, plain) = state.app.create_token(&admin.access, description, restrictions).await?;
    let body = with_secret(&state, &base, &token, &plain);
    Ok(no_store(created(&views::token_url(&base, token.id), &body)))
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
            api_token: views::token(&base, &token, state.app.now()),
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
        api_token:
            UpdateToken {
                description,
                active,
                scopes: names,
                assigned_user_id,
                expires_at,
                allowed_ips,
                rate_limit,
            },
    } = UpdateTokenRequest::from_object(body)?;
    let patch = TokenPatch {
        description,
        active,
        scopes: names.map(|n| scopes(&state, n)).transpose()?,
        assigned_user_id,
        expires_at,
        allowed_ips,
        rate_limit,
    };
    let token = state.app.update_token(&admin.access, id, &patch).await?;
    Ok(json_response(
        StatusCode::OK,
        &TokenResponse {
            api_token: views::token(&base, &token, state.app.now()),
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

/// The most a previous secret may live on after a rotation: 7 days.
pub const MAX_GRACE_SECS: i64 = 604_800;

/// The body of `POST /api/v2/api_tokens/{id}/rotate`; empty or `{}` is a
/// rotation without grace.
#[derive(Debug, ToSchema)]
#[schema(example = json!({"grace_period_seconds": 86400}))]
pub struct RotateTokenRequest {
    /// 0 to 604800 (7 days); how long the current secret keeps working.
    #[schema(required = false, minimum = 0, maximum = 604800)]
    pub grace_period_seconds: Option<i64>,
}

impl FromJsonObject for RotateTokenRequest {
    fn from_object(body: Map<String, Value>) -> Result<Self, ApiError> {
        if body.keys().any(|k| k != "grace_period_seconds") {
            return Err(ApiError::bad_request(
                "Unknown field; the body is {\"grace_period_seconds\": n}.",
            ));
        }
        let grace = match body.get("grace_period_seconds") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_i64() {
                Some(n) if (0..=MAX_GRACE_SECS).contains(&n) => Some(n),
                _ => {
                    return Err(Invalid::new(
                        "grace_period_seconds",
                        ErrorCode::InvalidValue,
                        "grace_period_seconds must be a whole number of seconds from 0 to 604800 (7 days)",
                    )
                    .into())
                }
            },
        };
        Ok(RotateTokenRequest {
            grace_period_seconds: grace,
        })
    }
}

/// Replaces a token's secret; the response holds the new one, this once.
/// The previous secret keeps working for the grace period, and a second
/// rotation ends any earlier grace at once. Only an active token rotates
/// (422 `TokenInactive`). Admins.
#[utoipa::path(post, path = "/api/v2/api_tokens/{id}/rotate", operation_id = "rotateApiToken", tag = "API tokens",
    params(super::openapi::IdParam),
    request_body(content = RotateTokenRequest, description = "May be empty", content_type = "application/json"),
    responses((status = 200, description = "The token with its new secret in `token`", body = CreatedTokenResponse),
        super::openapi::Auth, super::openapi::Forbidden, super::openapi::NotFound, super::openapi::BadBody,
        super::openapi::Invalid))]
pub async fn rotate(
    State(state): State<AppState>,
    admin: Admin,
    base: BaseUrl,
    id: Result<Path<TokenId>, PathRejection>,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let id = record_id(id)?;
    let input = RotateTokenRequest::from_object(body)?;
    let grace = input.grace_period_seconds.unwrap_or(0);
    let (token, plain) = state.app.rotate_token(&admin.access, id, grace).await?;
    let body = with_secret(&state, &base, &token, &plain);
    Ok(no_store(json_response(StatusCode::OK, &body)))
}

/// The record with its secret, for the one answer that shows it (a
/// creation or a rotation).
fn with_secret(state: &AppState, base: &BaseUrl, token: &ApiToken, plain: &PlainToken) -> CreatedTokenResponse {
    CreatedTokenResponse {
        api_token: CreatedTokenView {
            record: views::token(base, token, state.app.now()),
            token: plain.expose().to_owned(),
        },
    }
}

/// An answer that holds a secret is never stored by a cache.
fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// `?days=N` of the usage listing: 1 to 90, default 30.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// How many days back, 1 to 90 (default 30).
    #[param(minimum = 1, maximum = 90)]
    pub days: Option<String>,
}

/// Refusals of one hour, by reason.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeniedCounts {
    pub rate_limited: u64,
    pub ip_not_allowed: u64,
    pub expired: u64,
    pub inactive: u64,
    pub scope: u64,
}

/// One hour of a token's requests.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"hour": "2026-11-30T09:00:00Z", "allowed": 120,
    "denied": {"rate_limited": 0, "ip_not_allowed": 3, "expired": 0, "inactive": 0, "scope": 1}}))]
pub struct UsageHour {
    /// The hour's first second.
    #[schema(format = DateTime)]
    pub hour: String,
    pub allowed: u64,
    pub denied: DeniedCounts,
}

/// `{"usage": [...]}`: the hours with any request, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageList {
    pub usage: Vec<UsageHour>,
}

/// A token's requests per hour over the last `days` days, allowed and
/// refused by reason (hours without requests are left out). Counts reach
/// the database with each node's `last_used` flush. Admins.
#[utoipa::path(get, path = "/api/v2/api_tokens/{id}/usage", operation_id = "getApiTokenUsage", tag = "API tokens",
    params(super::openapi::IdParam, UsageQuery),
    responses((status = 200, description = "The token's usage by hour", body = UsageList), super::openapi::Auth,
        super::openapi::Forbidden, super::openapi::NotFound, super::openapi::BadQuery))]
pub async fn usage(
    State(state): State<AppState>,
    admin: Admin,
    id: Result<Path<TokenId>, PathRejection>,
    query: Result<axum::extract::Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let id = record_id(id)?;
    let bad = || ApiError::bad_request("days must be a whole number from 1 to 90.");
    let axum::extract::Query(query) = query.map_err(|_| bad())?;
    let days = match query.days.as_deref() {
        None => 30,
        Some(text) => match text.parse::<i64>() {
            Ok(d) if (1..=90).contains(&d) => d,
            _ => return Err(bad()),
        },
    };
    let rows = state.app.token_usage(&admin.access, id, days).await?;
    let usage = rows
        .into_iter()
        .map(|r| {
            let [allowed, rate_limited, ip_not_allowed, expired, inactive, scope] = r.counts;
            UsageHour {
                hour: latchkey_core::time::rfc3339(r.hour),
                allowed,
                denied: DeniedCounts {
                    rate_limited,
                    ip_not_allowed,
                    expired,
                    inactive,
                    scope,
                },
            }
        })
        .collect();
    Ok(json_response(StatusCode::OK, &UsageList { usage }))
}
