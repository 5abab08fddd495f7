//! `ApiError`: every failure the REST API can answer with, mapped to the
//! status codes and exact bodies of docs/api.md ("When authentication
//! fails", "Errors"). 5xx bodies are
//! opaque; the cause goes to the log under the request's id.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use indexmap::IndexMap;
use latchkey_app::AppError;
use latchkey_core::{DomainError, Invalid};
pub use latchkey_edge::answer::{
    error_body, raw_json, to_json, AuthFailure, BearerErrorBody, ErrorBody, INTERNAL_DESCRIPTION,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::metrics::DatabaseFailed;

const FORBIDDEN: &str =
    "You do not have access to this page. Please contact the account owner of this help desk for further help.";

#[derive(Debug)]
pub enum ApiError {
    /// A refused authentication (401, 403 for a missing scope, 429, 503),
    /// answered as every door into the verifier answers it
    /// ([`latchkey_edge::answer`]).
    Auth(AuthFailure),
    Forbidden,
    TokenAccessDisabled,
    AuditLogUnavailable,
    BadRequest(String),
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    Invalid(Vec<Invalid>),
    /// 429 for the leak revocation endpoint's hourly limit per address.
    TooManyReports {
        retry_after: u64,
    },
    Internal(String),
    /// A 500 because the database failed (counted in
    /// `latchkey_database_errors_total{operation="request"}`).
    Database(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

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

impl ApiError {
    pub fn bad_request(description: impl Into<String>) -> Self {
        ApiError::BadRequest(description.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Auth(failure) => failure.status(),
            ApiError::Forbidden | ApiError::TokenAccessDisabled | ApiError::AuditLogUnavailable => {
                StatusCode::FORBIDDEN
            }
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyReports { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) | ApiError::Database(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn body(&self) -> String {
        match self {
            ApiError::Auth(failure) => failure.body(),
            ApiError::Forbidden => error_body("Forbidden", FORBIDDEN),
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
            ApiError::TooManyReports { .. } => error_body(
                "TooManyRequests",
                "Too many revocation requests from this address. Try again later.",
            ),
            ApiError::Internal(_) | ApiError::Database(_) => error_body("InternalError", INTERNAL_DESCRIPTION),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Auth(failure) = self {
            return failure.into_response();
        }
        if let ApiError::Internal(cause) | ApiError::Database(cause) = &self {
            tracing::error!(cause = %cause, "internal error");
        }
        let mut res = raw_json(self.status(), self.body());
        if let ApiError::Database(_) = &self {
            res.extensions_mut().insert(DatabaseFailed);
        }
        if let ApiError::TooManyReports { retry_after } = &self {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        res
    }
}

impl From<AuthFailure> for ApiError {
    fn from(failure: AuthFailure) -> Self {
        ApiError::Auth(failure)
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
            AppError::Storage(e) => ApiError::Database(e.to_string()),
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
                AuthFailure::NotAuthenticated { token_hint: false }.into(),
                401,
                r#"{"error":"Couldn't authenticate you"}"#,
            ),
            (
                AuthFailure::InvalidBearer { api_token: false }.into(),
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
                AuthFailure::Stale.into(),
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
