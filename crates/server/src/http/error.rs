//! `ApiError`: every failure the REST API can answer with, mapped to the
//! status codes and exact bodies of docs/api.md ("When authentication
//! fails", "Errors"). 5xx bodies are
//! opaque; the cause goes to the log under the request's id.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use indexmap::IndexMap;
use latchkey_app::AppError;
use latchkey_core::rate_limit::RateStatus;
use latchkey_core::{DomainError, Invalid};
use serde::Serialize;
use utoipa::ToSchema;

/// The scope a refused request needed, on its 403.
pub const REQUIRED_SCOPE: axum::http::HeaderName = axum::http::HeaderName::from_static("x-latchkey-required-scope");
pub const NOT_AUTHENTICATED: &str = r#"{"error":"Couldn't authenticate you"}"#;
pub const WWW_AUTHENTICATE: &str = r#"Basic realm="latchkey""#;
const FORBIDDEN: &str =
    "You do not have access to this page. Please contact the account owner of this help desk for further help.";
const SLASH_TOKEN_HINT: &str = "Use {email}/token as the user name when you authenticate with an API token.";
const BEARER_DESCRIPTION: &str =
    "The access token provided is expired, revoked, malformed or invalid for other reasons.";
const BEARER_HINT: &str =
    "This is an API token, not an OAuth access token. Send it with HTTP Basic authentication as {email}/token:{token}.";

#[derive(Debug)]
pub enum ApiError {
    /// 401 for any failed authentication; `token_hint` only for the
    /// `/token` user-name mistake (it depends on the request text alone).
    NotAuthenticated {
        token_hint: bool,
    },
    /// 401 for a Bearer credential; `api_token` when it has a valid checksum.
    InvalidBearer {
        api_token: bool,
    },
    Forbidden,
    /// 403: the token lacks this scope (`tickets:write`); the answer names
    /// it in `X-Latchkey-Required-Scope` and in the description.
    MissingScope(String),
    TokenAccessDisabled,
    AuditLogUnavailable,
    BadRequest(String),
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    Invalid(Vec<Invalid>),
    TooManyRequests {
        retry_after: u64,
    },
    /// 429: the token's own rate limit is used up for this window.
    RateLimited(RateStatus),
    /// 429 for the leak revocation endpoint's hourly limit per address.
    TooManyReports {
        retry_after: u64,
    },
    /// 503: this node has been out of touch with its database for longer
    /// than `--max-staleness`, so it will not vouch for what it remembers.
    Stale,
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The body of every error but 401 `invalid_token` and 422 (docs/api.md,
/// "Errors").
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": "RecordNotFound", "description": "Not found"}))]
pub struct ErrorBody {
    /// The error's code: branch on it and on the status.
    pub error: &'static str,
    /// A human-readable explanation; absent on the plain 401.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The 401 answer to a `Bearer` credential.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": "invalid_token", "error_description": "The access token provided is expired, revoked, malformed or invalid for other reasons."}))]
pub struct BearerErrorBody {
    /// Always `invalid_token`.
    pub error: &'static str,
    pub error_description: &'static str,
    /// Present when the credential is a well-formed latchkey token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<&'static str>,
}

/// One failed check of a field.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": "Blank", "description": "name can't be blank"}))]
pub struct FieldError {
    /// `TokenLimitReached`, `TokenActive`, `ReadOnly`, `InvalidValue`,
    /// `TooLong`, `Blank` or `Taken`.
    pub error: &'static str,
    pub description: String,
}

/// 422 `RecordInvalid`: `details` maps a field name (or `base`, the record
/// as a whole) to its failed checks.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "error": "RecordInvalid", "description": "Record validation errors",
    "details": {
        "name": [{"error": "Blank", "description": "name can't be blank"}],
        "role": [{"error": "InvalidValue", "description": "role must be one of admin, agent, end_user"}]
    }
}))]
pub struct InvalidBody {
    /// Always `RecordInvalid`.
    pub error: &'static str,
    /// Always `Record validation errors`.
    pub description: &'static str,
    #[schema(value_type = std::collections::HashMap<String, Vec<FieldError>>)]
    pub details: IndexMap<String, Vec<FieldError>>,
}

/// A JSON response with the content type docs/api.md gives.
pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_string(body) {
        Ok(text) => raw_json(status, text),
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}

/// 201 Created with the record's absolute URL in `Location`.
pub fn created<T: Serialize>(location: &str, body: &T) -> Response {
    let mut res = json_response(StatusCode::CREATED, body);
    if let Ok(loc) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    res
}

pub fn raw_json(status: StatusCode, body: String) -> Response {
    let mut res = (status, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    res
}

fn error_body(error: &'static str, description: &str) -> String {
    to_json(&ErrorBody {
        error,
        description: Some(description.to_owned()),
    })
}

fn to_json<T: Serialize>(body: &T) -> String {
    // These bodies are strings, booleans and maps of strings: serialising
    // them cannot fail.
    serde_json::to_string(body).unwrap_or_default()
}

impl ApiError {
    pub fn bad_request(description: impl Into<String>) -> Self {
        ApiError::BadRequest(description.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotAuthenticated { .. } | ApiError::InvalidBearer { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden
            | ApiError::MissingScope(_)
            | ApiError::TokenAccessDisabled
            | ApiError::AuditLogUnavailable => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } | ApiError::TooManyReports { .. } | ApiError::RateLimited(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Stale => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn body(&self) -> String {
        match self {
            ApiError::NotAuthenticated { token_hint: false } => NOT_AUTHENTICATED.to_owned(),
            ApiError::NotAuthenticated { token_hint: true } => {
                error_body("Couldn't authenticate you", SLASH_TOKEN_HINT)
            }
            ApiError::InvalidBearer { api_token } => to_json(&BearerErrorBody {
                error: "invalid_token",
                error_description: BEARER_DESCRIPTION,
                hint: api_token.then_some(BEARER_HINT),
            }),
            ApiError::Forbidden => error_body("Forbidden", FORBIDDEN),
            ApiError::MissingScope(scope) => {
                error_body("Forbidden", &format!("This API token lacks the scope {scope}."))
            }
            ApiError::TokenAccessDisabled => error_body(
                "TokenAccessDisabled",
                "API token access is turned off for this account.",
            ),
            ApiError::AuditLogUnavailable => error_body("Forbidden", "The audit log is available on Enterprise plans."),
            ApiError::BadRequest(d) => error_body("BadRequest", d),
            ApiError::NotFound => error_body("RecordNotFound", "Not found"),
            ApiError::MethodNotAllowed => error_body("MethodNotAllowed", "This method is not allowed on this path."),
            ApiError::PayloadTooLarge => error_body("PayloadTooLarge", "The request body is larger than 64 KiB."),
            ApiError::Invalid(list) => {
                let mut details: IndexMap<String, Vec<FieldError>> = IndexMap::new();
                for i in list {
                    details.entry(i.field.clone()).or_default().push(FieldError {
                        error: i.code.as_str(),
                        description: i.description.clone(),
                    });
                }
                to_json(&InvalidBody {
                    error: "RecordInvalid",
                    description: "Record validation errors",
                    details,
                })
            }
            ApiError::TooManyRequests { .. } => error_body(
                "TooManyRequests",
                "Too many failed authentication attempts. Try again later.",
            ),
            ApiError::RateLimited(status) => error_body(
                "TooManyRequests",
                &format!(
                    "This API token's rate limit of {} is used up. Try again in {} seconds.",
                    status.limit.describe(),
                    status.reset_secs
                ),
            ),
            ApiError::TooManyReports { .. } => error_body(
                "TooManyRequests",
                "Too many revocation requests from this address. Try again later.",
            ),
            ApiError::Stale => error_body(
                "ServiceUnavailable",
                "This server has lost contact with its database and cannot verify credentials. Try again shortly.",
            ),
            ApiError::Internal(_) => error_body("InternalError", "Something went wrong on our side."),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(cause = %cause, "internal error");
        }
        let mut res = raw_json(self.status(), self.body());
        let headers = res.headers_mut();
        match &self {
            ApiError::NotAuthenticated { .. } | ApiError::InvalidBearer { .. } => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(WWW_AUTHENTICATE));
            }
            ApiError::TooManyRequests { retry_after } | ApiError::TooManyReports { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            ApiError::Stale => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(1u64));
            }
            ApiError::RateLimited(status) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(status.reset_secs));
                super::rate_headers::insert(headers, status);
            }
            ApiError::MissingScope(scope) => {
                // Scope names are `[a-z0-9_:]`: always a valid header value.
                if let Ok(v) = HeaderValue::from_str(scope) {
                    headers.insert(REQUIRED_SCOPE, v);
                }
            }
            _ => {}
        }
        res
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid(list) => ApiError::Invalid(list),
            DomainError::TokenAccessDisabled => ApiError::TokenAccessDisabled,
            DomainError::NotFound => ApiError::NotFound,
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(i: Invalid) -> Self {
        ApiError::Invalid(vec![i])
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Domain(d) => d.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::ErrorCode;

    #[test]
    fn each_error_maps_to_the_spec_status_and_body() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (
                ApiError::NotAuthenticated { token_hint: false },
                401,
                r#"{"error":"Couldn't authenticate you"}"#,
            ),
            (
                ApiError::InvalidBearer { api_token: false },
                401,
                r#"{"error":"invalid_token","error_description":"The access token provided is expired, revoked, malformed or invalid for other reasons."}"#,
            ),
            (
                ApiError::Forbidden,
                403,
                r#"{"error":"Forbidden","description":"You do not have access to this page. Please contact the account owner of this help desk for further help."}"#,
            ),
            (
                ApiError::TokenAccessDisabled,
                403,
                r#"{"error":"TokenAccessDisabled","description":"API token access is turned off for this account."}"#,
            ),
            (
                ApiError::AuditLogUnavailable,
                403,
                r#"{"error":"Forbidden","description":"The audit log is available on Enterprise plans."}"#,
            ),
            (
                ApiError::NotFound,
                404,
                r#"{"error":"RecordNotFound","description":"Not found"}"#,
            ),
            (
                ApiError::Invalid(vec![Invalid::new(
                    "base",
                    ErrorCode::TokenActive,
                    "Deactivate the token before deleting it.",
                )]),
                422,
                r#"{"error":"RecordInvalid","description":"Record validation errors","details":{"base":[{"error":"TokenActive","description":"Deactivate the token before deleting it."}]}}"#,
            ),
            (
                ApiError::Stale,
                503,
                r#"{"error":"ServiceUnavailable","description":"This server has lost contact with its database and cannot verify credentials. Try again shortly."}"#,
            ),
        ];
        for (err, status, body) in cases {
            assert_eq!(err.status().as_u16(), status);
            assert_eq!(err.body(), body);
        }
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let e = ApiError::Internal("secret detail".into());
        assert!(!e.body().contains("secret"));
    }
}
