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
use axum::http::request::Parts;
use latchkey_app::{AdminAccess, App, UserAccess};
use latchkey_core::time::Timestamp;
use latchkey_core::token::TokenHash;
use latchkey_core::user::Role;
use latchkey_core::verifier::{Identity, Refusal};
use latchkey_edge::{Gate, Outcome, Refused};

use super::error::{ApiError, AuthFailure};
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
/// one). Staleness, the failure limit, credential parsing and the answers
/// are those of every door into the verifier ([`Gate::authenticate`]);
/// this adds the metrics and the rate-limit headers' note.
pub fn authenticate_with<R>(
    state: &AppState,
    parts: &Parts,
    check: impl FnOnce(&App, &str, &TokenHash, Timestamp, IpAddr) -> Result<R, Refusal>,
) -> Result<R, ApiError> {
    let started = Instant::now();
    let gate = Gate {
        app: &state.app,
        failures: &state.limiter,
        max_staleness: state.config.max_staleness,
    };
    let client = client_ip(parts, &state.config);
    match gate.authenticate(&parts.headers, client, check) {
        Ok(made) => {
            state.metrics.record(Outcome::Ok, started.elapsed());
            Ok(made)
        }
        Err(Refused { answer, outcome }) => {
            if answer == AuthFailure::Stale {
                state.metrics.record_stale();
            }
            if let Some(outcome) = outcome {
                state.metrics.record(outcome, started.elapsed());
                // The reason the client is never told, for the operator;
                // the credentials themselves are never logged.
                tracing::info!(reason = outcome.as_str(), %client, "authentication refused");
            }
            Err(answer.into())
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
