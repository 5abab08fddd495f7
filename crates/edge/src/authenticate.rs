//! The authentication of one request, in the order docs/api.md gives: a
//! process out of touch with its database answers 503; a client address
//! that has used up its failed attempts is refused before any lookup (429);
//! then the `Authorization` header is read and the credentials are checked
//! against the in-memory verifier (401, 403 for a missing scope, 429 over
//! the token's rate limit). A failed authentication counts against the
//! client's address; an authenticated refusal (scope, rate limit) does not.
//!
//! latchkey's REST API, its `/verify` and `latchkey-tower`'s layer all
//! authenticate through [`Gate::authenticate`], so the rules and their
//! order exist once. No database statement runs here.

use std::net::IpAddr;
use std::time::Duration;

use axum::http::HeaderMap;
use latchkey_app::{App, RateLimiter};
use latchkey_core::time::Timestamp;
use latchkey_core::token::TokenHash;
use latchkey_core::verifier::{Denial, Refusal};

use crate::answer::AuthFailure;
use crate::credentials::{self, Credentials};

/// How one authentication ended, as a server's `/metrics` labels it
/// (`result="ok"`, `result="unknown_token"`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Authenticated.
    Ok,
    /// Refused with 429: the address's failed attempts (before any lookup),
    /// or the token's own rate limit.
    RateLimited,
    /// No `Authorization` header, or a scheme latchkey does not know.
    Missing,
    /// Basic credentials that are not `{email}/token:{token}` with a
    /// well-formed token (a bad checksum lands here).
    Malformed,
    /// A `Bearer` credential.
    Bearer,
    /// Well-formed credentials refused by the verifier.
    Denied(Denial),
    /// Authenticated, with a token that lacks the request's scope (403).
    MissingScope,
}

impl Outcome {
    /// The `result` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::RateLimited => "rate_limited",
            Outcome::Missing => "missing",
            Outcome::Malformed => "malformed",
            Outcome::Bearer => "bearer",
            Outcome::MissingScope => "missing_scope",
            Outcome::Denied(d) => d.as_str(),
        }
    }
}

/// A refused authentication: what the client is told, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The answer (401, 403, 429 or 503).
    pub answer: AuthFailure,
    /// How it ended; `None` when no authentication was attempted (503:
    /// the process is stale).
    pub outcome: Option<Outcome>,
}

/// What a request's credentials are checked against: the verifier (through
/// the [`App`]), the per-address limit on failed attempts, and how long the
/// process may be out of touch with its database.
#[derive(Clone, Copy)]
pub struct Gate<'a> {
    /// The service layer, whose verifier answers from memory.
    pub app: &'a App,
    /// Failed authentications per client address.
    pub failures: &'a RateLimiter<IpAddr>,
    /// Past this long out of touch with the database, every request is 503.
    pub max_staleness: Duration,
}

impl Gate<'_> {
    /// Authenticates a request with `headers` from the client address
    /// `client` (already resolved: [`crate::client::resolve_client`]).
    ///
    /// `check` is the verifier's question, chosen by the caller: it gets
    /// the [`App`], the credentials, "now" and the client's address, and
    /// returns what it makes of a verified identity
    /// ([`App::authenticate`] for a capability, [`App::verify_with`] to
    /// borrow the identity, with or without a request whose scopes to
    /// check). Staleness, the failure limit and credential parsing are the
    /// same for every caller.
    pub fn authenticate<R>(
        &self,
        headers: &HeaderMap,
        client: IpAddr,
        check: impl FnOnce(&App, &str, &TokenHash, Timestamp, IpAddr) -> Result<R, Refusal>,
    ) -> Result<R, Refused> {
        // Out of touch with the database for too long: what memory holds may
        // miss a revocation, so refuse rather than trust it (README.md,
        // "Running several nodes").
        if self.app.is_stale(self.max_staleness) {
            return Err(Refused {
                answer: AuthFailure::Stale,
                outcome: None,
            });
        }
        let now = self.app.now();
        if let Some(retry_after) = self.failures.blocked(&client, now) {
            return Err(Refused {
                answer: AuthFailure::TooManyFailures { retry_after },
                outcome: Some(Outcome::RateLimited),
            });
        }
        let failed = match credentials::from_headers(headers, self.app.accepts_legacy()) {
            Credentials::ApiToken { email, hash } => match check(self.app, &email, &hash, now, client) {
                Ok(made) => return Ok(made),
                Err(Refusal::Unauthenticated(d)) => {
                    (AuthFailure::NotAuthenticated { token_hint: false }, Outcome::Denied(d))
                }
                // Authenticated: not a failed attempt, so not counted against the address.
                Err(Refusal::MissingScope { scope, rate }) => {
                    return Err(Refused {
                        answer: AuthFailure::MissingScope { scope, rate },
                        outcome: Some(Outcome::MissingScope),
                    });
                }
                // Over the token's own limit: authenticated too, so not counted.
                Err(Refusal::RateLimited(status)) => {
                    return Err(Refused {
                        answer: AuthFailure::RateLimited(status),
                        outcome: Some(Outcome::RateLimited),
                    });
                }
            },
            Credentials::BadBasic { token_hint } => (AuthFailure::NotAuthenticated { token_hint }, Outcome::Malformed),
            Credentials::Bearer { api_token } => (AuthFailure::InvalidBearer { api_token }, Outcome::Bearer),
            Credentials::Missing => (AuthFailure::NotAuthenticated { token_hint: false }, Outcome::Missing),
        };
        let (answer, outcome) = failed;
        self.failures.record_failure(client, now);
        tracing::debug!(reason = outcome.as_str(), %client, "authentication failed");
        Err(Refused {
            answer,
            outcome: Some(outcome),
        })
    }
}
