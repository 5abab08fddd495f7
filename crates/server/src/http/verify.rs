//! `/verify` and `/verify/{path}`: the gateway's per-request question "may
//! this request through?" (README.md, "Gateway verification"; docs/api.md,
//! "Gateway verification"), for nginx `auth_request`, Traefik
//! `forwardAuth` and Envoy `ext_authz`.
//!
//! Any method is accepted. The original request, whose method and path the
//! token's scopes must cover, is read from the first of:
//! `X-Original-Method` + `X-Original-URI` (nginx), `X-Forwarded-Method` +
//! `X-Forwarded-Uri` (Traefik), or the path after `/verify` with this
//! request's own method (Envoy's `path_prefix: /verify`). A pair whose
//! method header is missing takes this request's method. Without any,
//! only authentication is checked, and the upstream enforces scopes from
//! `X-Latchkey-Scopes`. The gateway must set these headers itself,
//! overwriting what a client sent: they decide which scope is needed.
//!
//! The answer comes from the in-memory verifier through the same
//! authentication as the REST API's [`ApiUser`](super::auth::ApiUser)
//! extractor ([`authenticate_with`]), so failures are exactly those of
//! docs/api.md (401 with `WWW-Authenticate`, 403 with
//! `X-Latchkey-Required-Scope`, 429 with `Retry-After` before any lookup)
//! and no database statement runs. The headers are built from the identity
//! as the verifier lends it, so a request clones no `Arc`. Success is 200
//! with no body and the identity in headers:
//!
//! | header | value |
//! |---|---|
//! | `X-Latchkey-Account-Id` | the account's id |
//! | `X-Latchkey-Account` | the account's subdomain |
//! | `X-Latchkey-User-Id` | the user's id |
//! | `X-Latchkey-User-Email` | the user's email, as stored |
//! | `X-Latchkey-Role` | `admin`, `agent` or `end_user` |
//! | `X-Latchkey-Token-Id` | the token's id |
//! | `X-Latchkey-Scopes` | `*` for an unrestricted token (the user's full role); else its scopes, separated by spaces |
//!
//! For a token with a rate limit, every answer (429 included) also carries
//! the rate-limit headers of [`super::rate_headers`], for the gateway to
//! pass on to the client.
//!
//! A refusal also carries its JSON body in `X-Latchkey-Error-Body`. nginx's
//! `auth_request` throws the subrequest's body away (and turns a 429 or 503
//! into its own 500), so the shipped nginx configuration
//! (`deploy/nginx/latchkey.conf`) answers the client with this header's
//! value, status and headers: what the client would have got from latchkey
//! directly. Gateways that pass the body on (Traefik, Envoy) ignore it.

use axum::extract::FromRequestParts;
use axum::http::{request::Parts, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use latchkey_core::verifier::IdentityRef;

use super::auth::authenticate_with;
use super::error::ApiError;
use super::rate_headers;
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
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let target = original_request(parts).map(|(method, uri)| state.app.scope_catalog().target(method, uri));
        authenticate_with(state, parts, |app, email, hash, now, ip| {
            app.verify_with(email, hash, now, ip, target, |id| IdentityHeaders(identity_headers(id)))
        })
        .map_err(Refused)
    }
}

pub const ERROR_BODY: HeaderName = HeaderName::from_static("x-latchkey-error-body");

/// `/verify`'s refusal: the REST API's answer, with its body repeated in
/// `X-Latchkey-Error-Body` for gateways that drop bodies (module docs).
pub struct Refused(ApiError);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        // The body is JSON written by latchkey (ASCII, or UTF-8 from an
        // email), so it is a valid header value; one that is not is left out.
        let copy = HeaderValue::from_str(&self.0.body()).ok();
        let mut res = self.0.into_response();
        if let Some(v) = copy {
            res.headers_mut().insert(ERROR_BODY, v);
        }
        res
    }
}

const ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
const FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

/// The method and URI of the request the gateway asks about, if it says.
/// A header that is not text reads as an empty URI, which no resource
/// claims (the most restrictive answer: only `read` / `write` cover it).
fn original_request(parts: &Parts) -> Option<(&str, &str)> {
    fn text(v: &HeaderValue) -> &str {
        v.to_str().unwrap_or("")
    }
    let own = parts.method.as_str();
    for (method, uri) in [(ORIGINAL_METHOD, ORIGINAL_URI), (FORWARDED_METHOD, FORWARDED_URI)] {
        if let Some(u) = parts.headers.get(&uri) {
            return Some((parts.headers.get(&method).map_or(own, text), text(u)));
        }
    }
    // Envoy: `/verify/api/v2/tickets?x=1` asks about `/api/v2/tickets?x=1`.
    let path_and_query = parts.uri.path_and_query().map_or("", |p| p.as_str());
    path_and_query
        .strip_prefix("/verify")
        .filter(|rest| rest.starts_with('/'))
        .map(|rest| (own, rest))
}

fn identity_headers(id: IdentityRef<'_>) -> HeaderMap {
    rate_headers::note(id.rate);
    let mut headers = HeaderMap::with_capacity(8);
    // The ids are the plain numbers, as in JSON.
    headers.insert(ACCOUNT_ID, HeaderValue::from(id.account.id.get()));
    headers.insert(USER_ID, HeaderValue::from(id.user.id.get()));
    headers.insert(TOKEN_ID, HeaderValue::from(id.token_id.get()));
    headers.insert(ROLE, HeaderValue::from_static(id.user.role.as_str()));
    // Scope names are `[a-z0-9_:]`, so the joined list is a valid value.
    let scopes = match id.scopes {
        None => HeaderValue::from_static("*"),
        Some(s) => HeaderValue::from_str(&s.to_stored()).unwrap_or(HeaderValue::from_static("")),
    };
    headers.insert(SCOPES, scopes);
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

/// `/verify` and `/verify/{path}` (any method): 200 with the identity
/// headers, else the extractor's 401/403/429/503.
pub async fn verify(IdentityHeaders(headers): IdentityHeaders) -> Response {
    (StatusCode::OK, headers).into_response()
}
