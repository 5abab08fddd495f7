//! Authentication at the HTTP edge: the extractors that turn a request's
//! `Authorization` header into an identity and a capability of the service
//! layer (`UserAccess`, `AdminAccess`), or the 401/403/429 of docs/api.md; and the
//! per-address limit on failed attempts (the state's `RateLimiter`).
//!
//! Handlers never check credentials themselves: a handler that takes
//! [`ApiUser`] only runs for an authenticated request, and one that takes
//! [`Admin`] only for an admin of the account.

use std::net::IpAddr;
use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use latchkey_app::{AdminAccess, App, UserAccess};
use latchkey_core::time::Timestamp;
use latchkey_core::token::TokenHash;
use latchkey_core::user::Role;
use latchkey_core::verifier::{Identity, Refusal};

use super::credentials::{self, Credentials};
use super::error::ApiError;
use super::metrics::Outcome;
use super::rate_headers;
use crate::client::client_ip;
use crate::state::AppState;

/// A request authenticated with an API token.
#[derive(Debug, Clone)]
pub struct ApiUser {
    pub identity: Identity,
    pub ip: IpAddr,
    /// What the handler acts with in the service layer.
    pub access: UserAccess,
}

impl ApiUser {
    pub fn role(&self) -> Role {
        self.identity.user.role
    }

    /// 403 unless the user has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role()) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// A request by an admin of the account, with the right to change it.
#[derive(Debug, Clone)]
pub struct Admin {
    pub user: ApiUser,
    pub access: AdminAccess,
}

/// Checks a request's credentials against the in-memory verifier, and
/// counts the outcome and its latency for `/metrics`.
/// The request's own method and path are what the token's scopes must
/// cover (README.md, "Restricted tokens"): `/api/v2/users/me` needs
/// `users:read`, `PUT /api/v2/api_tokens/7` needs `api_tokens:write`.
pub fn authenticate(state: &AppState, parts: &Parts) -> Result<ApiUser, ApiError> {
    let target = state
        .app
        .scope_catalog()
        .target(parts.method.as_str(), parts.uri.path());
    authenticate_with(state, parts, |app, email, hash, now, ip| {
        app.authenticate(email, hash, now, ip, target)
            .map(|(identity, access)| {
                rate_headers::note(identity.rate);
                ApiUser { identity, ip, access }
            })
    })
}

/// [`authenticate`] with the service layer's check chosen by the caller:
/// `check` gets the App, the credentials, "now" and the client's address,
/// and returns what it makes of a verified identity ([`App::authenticate`]
/// for a capability, [`App::verify_with`] to borrow the identity without
/// one). Staleness, the failure limit, credential parsing and metrics are
/// the same for every caller.
pub fn authenticate_with<R>(
    state: &AppState,
    parts: &Parts,
    check: impl FnOnce(&App, &str, &TokenHash, Timestamp, IpAddr) -> Result<R, Refusal>,
) -> Result<R, ApiError> {
    let started = Instant::now();
    // Out of touch with the database for too long: what memory holds may
    // miss a revocation, so refuse rather than trust it (README.md, "Running several nodes").
    if state.app.is_stale(state.config.max_staleness) {
        return Err(ApiError::Stale);
    }
    let ip = client_ip(parts, &state.config);
    let now = state.app.now();
    if let Some(retry_after) = state.limiter.blocked(&ip, now) {
        state.metrics.record(Outcome::RateLimited, started.elapsed());
        return Err(ApiError::TooManyRequests { retry_after });
    }
    // More than one `Authorization` header is ambiguous: refused as
    // malformed whatever each holds (docs/api.md, "When authentication fails").
    let mut headers = parts.headers.get_all(header::AUTHORIZATION).iter();
    let parsed = match (headers.next(), headers.next()) {
        (first, None) => credentials::parse(first.map(|v| v.as_bytes())),
        (_, Some(_)) => Credentials::BadBasic { token_hint: false },
    };
    let outcome: Result<R, (ApiError, Outcome)> = match parsed {
        Credentials::ApiToken { email, hash } => match check(&state.app, &email, &hash, now, ip) {
            Ok(made) => Ok(made),
            Err(Refusal::Unauthenticated(d)) => {
                Err((ApiError::NotAuthenticated { token_hint: false }, Outcome::Denied(d)))
            }
            // Authenticated: not a failed attempt, so not counted against the address.
            Err(Refusal::MissingScope { scope, rate }) => {
                rate_headers::note(rate);
                state.metrics.record(Outcome::MissingScope, started.elapsed());
                return Err(ApiError::MissingScope(scope));
            }
            // Over the token's own limit: authenticated too, so not counted.
            Err(Refusal::RateLimited(status)) => {
                rate_headers::note(Some(status));
                state.metrics.record(Outcome::RateLimited, started.elapsed());
                return Err(ApiError::RateLimited(status));
            }
        },
        Credentials::BadBasic { token_hint } => Err((ApiError::NotAuthenticated { token_hint }, Outcome::Malformed)),
        Credentials::Bearer { api_token } => Err((ApiError::InvalidBearer { api_token }, Outcome::Bearer)),
        Credentials::Missing => Err((ApiError::NotAuthenticated { token_hint: false }, Outcome::Missing)),
    };
    match outcome {
        Ok(made) => {
            state.metrics.record(Outcome::Ok, started.elapsed());
            Ok(made)
        }
        Err((err, reason)) => {
            state.limiter.record_failure(ip, now);
            state.metrics.record(reason, started.elapsed());
            tracing::debug!(reason = reason.as_str(), %ip, "authentication failed");
            Err(err)
        }
    }
}

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        authenticate(state, parts)
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let user = authenticate(state, parts)?;
        user.require(&[Role::Admin])?;
        let access = user.access.admin().ok_or(ApiError::Forbidden)?;
        Ok(Admin { user, access })
    }
}
