//! Authentication at the HTTP edge: the extractors that turn a request's
//! `Authorization` header into an identity (or the SPEC's 401/403/429), the
//! per-address limit on failed attempts, and the client address itself.
//!
//! Handlers never check credentials themselves: a handler that takes
//! [`ApiUser`] only runs for an authenticated request, and one that takes
//! [`Admin`] only for an admin of the account.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::{header, request::Parts};
use latchkey_core::audit::Actor;
use latchkey_core::time::Timestamp;
use latchkey_core::user::Role;
use latchkey_core::verifier::{Identity, IdentityRef};

use super::credentials::{self, Credentials};
use super::error::ApiError;
use super::metrics::Outcome;
use super::AppState;
use crate::app::AdminAccess;
use crate::config::ServerConfig;

/// A request authenticated with an API token.
#[derive(Debug, Clone)]
pub struct ApiUser {
    pub identity: Identity,
    pub ip: IpAddr,
}

impl ApiUser {
    pub fn account_id(&self) -> i64 {
        self.identity.account.id
    }

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

/// The client's address: the peer, or the last `X-Forwarded-For` hop when
/// the peer is a trusted proxy.
pub fn client_ip(parts: &Parts, config: &ServerConfig) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    if !config.trusted_proxies.iter().any(|net| net.contains(&peer)) {
        return peer;
    }
    parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|ip| ip.trim().parse().ok())
        .unwrap_or(peer)
}

/// Checks a request's credentials against the in-memory verifier, and
/// counts the outcome and its latency for `/metrics`.
pub fn authenticate(state: &AppState, parts: &Parts) -> Result<ApiUser, ApiError> {
    authenticate_with(state, parts, |identity, ip| ApiUser {
        identity: identity.to_identity(),
        ip,
    })
}

/// [`authenticate`] lending the identity instead of returning it: on
/// success, returns what `f` makes of the identity (borrowed from the
/// verifier, valid only inside `f`) and the client's address. Staleness,
/// the failure limit, credential parsing and metrics are the same for
/// every caller.
pub fn authenticate_with<R>(
    state: &AppState,
    parts: &Parts,
    f: impl FnOnce(IdentityRef<'_>, IpAddr) -> R,
) -> Result<R, ApiError> {
    let started = Instant::now();
    // Out of touch with the database for too long: what memory holds may
    // miss a revocation, so refuse rather than trust it (SPEC §10.3).
    if state.app.follower.is_stale(state.config.max_staleness) {
        return Err(ApiError::Stale);
    }
    let ip = client_ip(parts, &state.config);
    let now = state.app.now();
    if let Some(retry_after) = state.limiter.blocked(ip, now) {
        state.metrics.record(Outcome::RateLimited, started.elapsed());
        return Err(ApiError::TooManyRequests { retry_after });
    }
    let header = parts.headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let outcome: Result<R, (ApiError, Outcome)> = match credentials::parse(header) {
        Credentials::ApiToken { email, hash } => state
            .app
            .verifier
            .verify_with(&email, &hash, now, |identity| f(identity, ip))
            .map_err(|d| (ApiError::NotAuthenticated { token_hint: false }, Outcome::Denied(d))),
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
        let u = &user.identity.user;
        let actor = Actor::user(u.id, &u.name, Some(user.ip.to_string()));
        let access = AdminAccess::for_admin(user.account_id(), actor);
        Ok(Admin { user, access })
    }
}

#[derive(Debug, Default)]
struct Window {
    minute: AtomicI64,
    failures: AtomicU32,
}

/// Counts failed authentications per client address in one-minute windows.
/// Checking costs one lock-free map read; only failures write.
#[derive(Debug)]
pub struct FailureLimiter {
    per_minute: u32,
    windows: papaya::HashMap<IpAddr, Arc<Window>>,
}

impl FailureLimiter {
    pub fn new(per_minute: u32) -> Self {
        FailureLimiter {
            per_minute,
            windows: papaya::HashMap::new(),
        }
    }

    /// `Some(seconds to wait)` when `ip` has used up this minute's failures.
    pub fn blocked(&self, ip: IpAddr, now: Timestamp) -> Option<u64> {
        let minute = now.div_euclid(60);
        let windows = self.windows.pin();
        let w = windows.get(&ip)?;
        (w.minute.load(Ordering::Relaxed) == minute && w.failures.load(Ordering::Relaxed) >= self.per_minute)
            .then(|| (60 - now.rem_euclid(60)) as u64)
    }

    pub fn record_failure(&self, ip: IpAddr, now: Timestamp) {
        let minute = now.div_euclid(60);
        let windows = self.windows.pin();
        let w = windows.get_or_insert_with(ip, Arc::default);
        if w.minute.swap(minute, Ordering::AcqRel) != minute {
            w.failures.store(1, Ordering::Release);
        } else {
            w.failures.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Forgets addresses whose window has passed.
    pub fn sweep(&self, now: Timestamp) {
        let minute = now.div_euclid(60);
        self.windows
            .pin()
            .retain(|_, w| w.minute.load(Ordering::Relaxed) >= minute);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_after_its_failures_until_the_minute_ends() {
        let l = FailureLimiter::new(3);
        let ip = IpAddr::from([10, 0, 0, 1]);
        let other = IpAddr::from([10, 0, 0, 2]);
        for _ in 0..3 {
            assert_eq!(l.blocked(ip, 120), None);
            l.record_failure(ip, 120);
        }
        assert_eq!(l.blocked(ip, 130), Some(50));
        assert_eq!(l.blocked(other, 130), None);
        assert_eq!(l.blocked(ip, 180), None);
        l.record_failure(ip, 180);
        assert_eq!(l.blocked(ip, 181), None);
        l.sweep(300);
        assert!(l.windows.is_empty());
    }
}
