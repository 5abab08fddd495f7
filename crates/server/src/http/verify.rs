//! `/verify`: the gateway's per-request question "may this request
//! through?" (docs/api.md, "Gateway verification"), for nginx `auth_request` and Traefik `forwardAuth`.
//!
//! Any method is accepted. The answer comes from the in-memory verifier
//! through the same authentication as the REST API's
//! [`ApiUser`](super::auth::ApiUser) extractor ([`authenticate_with`]), so
//! failures are exactly those of docs/api.md, "When authentication fails" (401 with `WWW-Authenticate`, 429 with
//! `Retry-After` before any lookup) and no database statement runs. The
//! headers are built from the identity as the verifier lends it, so a
//! request clones no `Arc`. Success is 200 with no body and the identity in
//! headers:
//!
//! | header | value |
//! |---|---|
//! | `X-Latchkey-Account-Id` | the account's id |
//! | `X-Latchkey-Account` | the account's subdomain |
//! | `X-Latchkey-User-Id` | the user's id |
//! | `X-Latchkey-User-Email` | the user's email, as stored |
//! | `X-Latchkey-Role` | `admin`, `agent` or `end_user` |
//! | `X-Latchkey-Token-Id` | the token's id |
//! | `X-Latchkey-Scopes` | empty: the token is unrestricted and carries the user's full role (scopes null; docs/api.md, "Gateway verification"); a restricted token will list its scope names here, separated by spaces |

use axum::extract::FromRequestParts;
use axum::http::{request::Parts, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use latchkey_core::verifier::IdentityRef;

use super::auth::authenticate_with;
use super::error::ApiError;
use crate::state::AppState;

pub const ACCOUNT_ID: HeaderName = HeaderName::from_static("x-latchkey-account-id");
pub const ACCOUNT: HeaderName = HeaderName::from_static("x-latchkey-account");
pub const USER_ID: HeaderName = HeaderName::from_static("x-latchkey-user-id");
pub const USER_EMAIL: HeaderName = HeaderName::from_static("x-latchkey-user-email");
pub const ROLE: HeaderName = HeaderName::from_static("x-latchkey-role");
pub const TOKEN_ID: HeaderName = HeaderName::from_static("x-latchkey-token-id");
pub const SCOPES: HeaderName = HeaderName::from_static("x-latchkey-scopes");

/// An authenticated request's identity headers; the extractor fails with
/// the same 401/429/503 as [`ApiUser`](super::auth::ApiUser).
pub struct IdentityHeaders(HeaderMap);

impl FromRequestParts<AppState> for IdentityHeaders {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        authenticate_with(state, parts, |app, email, hash, now, _ip| {
            app.verify_with(email, hash, now, |id| IdentityHeaders(identity_headers(id)))
        })
    }
}

fn identity_headers(id: IdentityRef<'_>) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(8);
    // The ids are the plain numbers, as in JSON.
    headers.insert(ACCOUNT_ID, HeaderValue::from(id.account.id.get()));
    headers.insert(USER_ID, HeaderValue::from(id.user.id.get()));
    headers.insert(TOKEN_ID, HeaderValue::from(id.token_id.get()));
    headers.insert(ROLE, HeaderValue::from_static(id.user.role.as_str()));
    headers.insert(SCOPES, HeaderValue::from_static(""));
    // Subdomains are `[a-z0-9-]` and stored emails are validated (UTF-8
    // bytes are allowed header bytes), so both are valid header values; one
    // that somehow is not is left out rather than failing a good request.
    if let Ok(v) = HeaderValue::from_bytes(id.account.subdomain.as_str().as_bytes()) {
        headers.insert(ACCOUNT, v);
    }
    if let Ok(v) = HeaderValue::from_bytes(id.user.email.as_str().as_bytes()) {
        headers.insert(USER_EMAIL, v);
    }
    headers
}

/// `GET /verify` (any method): 200 with the identity headers, else the
/// extractor's 401/429/503.
pub async fn verify(IdentityHeaders(headers): IdentityHeaders) -> Response {
    (StatusCode::OK, headers).into_response()
}
