//! The answers to a request that authentication refuses, with the status
//! codes, headers and exact bodies of docs/api.md ("When authentication
//! fails", "Scopes: 403", "Failed-attempt limit: 429", "Token rate limits:
//! 429"), and the shape of every JSON error body (`{"error", "description"}`).
//!
//! Written once, here, so that a client gets byte for byte the same answer
//! from latchkey's REST API, from `/verify` and from a Rust service that
//! verifies in process with `latchkey-tower`.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use latchkey_core::rate_limit::RateStatus;
use serde::Serialize;

use crate::rate_headers;

/// `X-Latchkey-Required-Scope`: the scope a refused request needed, on its 403.
pub const REQUIRED_SCOPE: HeaderName = HeaderName::from_static("x-latchkey-required-scope");
/// The body of every plain 401.
pub const NOT_AUTHENTICATED: &str = r#"{"error":"Couldn't authenticate you"}"#;
/// The `WWW-Authenticate` header of every 401.
pub const WWW_AUTHENTICATE: &str = r#"Basic realm="latchkey""#;
const SLASH_TOKEN_HINT: &str = "Use {email}/token as the user name when you authenticate with an API token.";
const BEARER_DESCRIPTION: &str =
    "The access token provided is expired, revoked, malformed or invalid for other reasons.";
const BEARER_HINT: &str =
    "This is an API token, not an OAuth access token. Send it with HTTP Basic authentication as {email}/token:{token}.";
/// The description of every 500.
pub const INTERNAL_DESCRIPTION: &str = "Something went wrong on our side.";

/// Why authentication refused a request, as the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// 401 for any failed authentication; `token_hint` only for the
    /// `/token` user-name mistake (it depends on the request text alone).
    NotAuthenticated {
        /// The password is a well-formed token but the user name lacks `/token`.
        token_hint: bool,
    },
    /// 401 for a Bearer credential.
    InvalidBearer {
        /// The credential is a well-formed latchkey token (the body says how to send it).
        api_token: bool,
    },
    /// 403: the token lacks this scope (`tickets:write`); the answer names
    /// it in `X-Latchkey-Required-Scope` and in the description.
    MissingScope {
        /// The scope, as `Target::required_scope` spells it.
        scope: String,
        /// The token's rate limit as this request left it, for the headers.
        rate: Option<RateStatus>,
    },
    /// 429: the token's own rate limit is used up for this window.
    RateLimited(RateStatus),
    /// 429: too many failed authentications from this client address.
    TooManyFailures {
        /// Seconds until the address's window ends.
        retry_after: u64,
    },
    /// 503: out of touch with the database for longer than the maximum
    /// staleness, so what memory holds may miss a revocation.
    Stale,
}

/// The body of every error but 401 `invalid_token` and 422 (docs/api.md,
/// "Errors").
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"error": "RecordNotFound", "description": "Not found"})))]
pub struct ErrorBody {
    /// The error's code: branch on it and on the status.
    pub error: &'static str,
    /// A human-readable explanation; absent on the plain 401.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The 401 answer to a `Bearer` credential.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"error": "invalid_token", "error_description": "The access token provided is expired, revoked, malformed or invalid for other reasons."})))]
pub struct BearerErrorBody {
    /// Always `invalid_token`.
    pub error: &'static str,
    pub error_description: &'static str,
    /// Present when the credential is a well-formed latchkey token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<&'static str>,
}

/// `{"error": error, "description": description}` as JSON.
pub fn error_body(error: &'static str, description: &str) -> String {
    to_json(&ErrorBody {
        error,
        description: Some(description.to_owned()),
    })
}

/// `body` as JSON; these bodies are strings, numbers, booleans and maps of
/// them, so serialising cannot fail.
pub fn to_json<T: Serialize>(body: &T) -> String {
    serde_json::to_string(body).unwrap_or_default()
}

/// A response with the JSON content type of docs/api.md.
pub fn raw_json(status: StatusCode, body: String) -> Response {
    let mut res = (status, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    res
}

/// The opaque 500 of docs/api.md ("Conventions"): never the cause, which
/// the caller logs.
pub fn internal_error() -> Response {
    raw_json(
        StatusCode::INTERNAL_SERVER_ERROR,
        error_body("InternalError", INTERNAL_DESCRIPTION),
    )
}

impl AuthFailure {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthFailure::NotAuthenticated { .. } | AuthFailure::InvalidBearer { .. } => StatusCode::UNAUTHORIZED,
            AuthFailure::MissingScope { .. } => StatusCode::FORBIDDEN,
            AuthFailure::RateLimited(_) | AuthFailure::TooManyFailures { .. } => StatusCode::TOO_MANY_REQUESTS,
            AuthFailure::Stale => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The exact body.
    pub fn body(&self) -> String {
        match self {
            AuthFailure::NotAuthenticated { token_hint: false } => NOT_AUTHENTICATED.to_owned(),
            AuthFailure::NotAuthenticated { token_hint: true } => {
                error_body("Couldn't authenticate you", SLASH_TOKEN_HINT)
            }
            AuthFailure::InvalidBearer { api_token } => to_json(&BearerErrorBody {
                error: "invalid_token",
                error_description: BEARER_DESCRIPTION,
                hint: api_token.then_some(BEARER_HINT),
            }),
            AuthFailure::MissingScope { scope, .. } => {
                error_body("Forbidden", &format!("This API token lacks the scope {scope}."))
            }
            AuthFailure::RateLimited(status) => error_body(
                "TooManyRequests",
                &format!(
                    "This API token's rate limit of {} is used up. Try again in {} seconds.",
                    status.limit.describe(),
                    status.reset_secs
                ),
            ),
            AuthFailure::TooManyFailures { .. } => error_body(
                "TooManyRequests",
                "Too many failed authentication attempts. Try again later.",
            ),
            AuthFailure::Stale => error_body(
                "ServiceUnavailable",
                "This server has lost contact with its database and cannot verify credentials. Try again shortly.",
            ),
        }
    }
}

impl IntoResponse for AuthFailure {
    fn into_response(self) -> Response {
        let mut res = raw_json(self.status(), self.body());
        let headers = res.headers_mut();
        match &self {
            AuthFailure::NotAuthenticated { .. } | AuthFailure::InvalidBearer { .. } => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(WWW_AUTHENTICATE));
            }
            AuthFailure::TooManyFailures { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            AuthFailure::Stale => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(1u64));
            }
            AuthFailure::RateLimited(status) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(status.reset_secs));
                rate_headers::insert(headers, status);
            }
            AuthFailure::MissingScope { scope, rate } => {
                // Scope names are `[a-z0-9_:]`: always a valid header value.
                if let Ok(v) = HeaderValue::from_str(scope) {
                    headers.insert(REQUIRED_SCOPE, v);
                }
                if let Some(status) = rate {
                    rate_headers::insert(headers, status);
                }
            }
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_maps_to_the_spec_status_and_body() {
        let cases: Vec<(AuthFailure, u16, &str)> = vec![
            (
                AuthFailure::NotAuthenticated { token_hint: false },
                401,
                r#"{"error":"Couldn't authenticate you"}"#,
            ),
            (
                AuthFailure::NotAuthenticated { token_hint: true },
                401,
                r#"{"error":"Couldn't authenticate you","description":"Use {email}/token as the user name when you authenticate with an API token."}"#,
            ),
            (
                AuthFailure::InvalidBearer { api_token: false },
                401,
                r#"{"error":"invalid_token","error_description":"The access token provided is expired, revoked, malformed or invalid for other reasons."}"#,
            ),
            (
                AuthFailure::MissingScope {
                    scope: "tickets:write".into(),
                    rate: None,
                },
                403,
                r#"{"error":"Forbidden","description":"This API token lacks the scope tickets:write."}"#,
            ),
            (
                AuthFailure::TooManyFailures { retry_after: 7 },
                429,
                r#"{"error":"TooManyRequests","description":"Too many failed authentication attempts. Try again later."}"#,
            ),
            (
                AuthFailure::Stale,
                503,
                r#"{"error":"ServiceUnavailable","description":"This server has lost contact with its database and cannot verify credentials. Try again shortly."}"#,
            ),
        ];
        for (failure, status, body) in cases {
            assert_eq!(failure.status().as_u16(), status);
            assert_eq!(failure.body(), body);
        }
    }

    #[test]
    fn every_answer_carries_the_headers_docs_api_gives() {
        let res = AuthFailure::NotAuthenticated { token_hint: false }.into_response();
        assert_eq!(res.headers()[header::WWW_AUTHENTICATE], WWW_AUTHENTICATE);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json; charset=utf-8");
        let res = AuthFailure::MissingScope {
            scope: "tickets:write".into(),
            rate: None,
        }
        .into_response();
        assert_eq!(res.headers()[REQUIRED_SCOPE], "tickets:write");
        let res = AuthFailure::TooManyFailures { retry_after: 37 }.into_response();
        assert_eq!(res.headers()[header::RETRY_AFTER], "37");
        let res = AuthFailure::Stale.into_response();
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
    }
}
