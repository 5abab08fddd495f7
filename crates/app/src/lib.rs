//! latchkey's service layer: [`App`], the one way to the data for every
//! entry point (the REST API and the Admin Center pages in
//! `latchkey-server`, the `latchkey` command line). It holds the rules that
//! are not the domain's own: who may act in which account ([`access`]),
//! signing in ([`sign_in`]), sessions ([`session`]), password hashing
//! ([`password`]), rate limits ([`limiter`]), the operator's
//! whole-database commands ([`database`]), what it counts for a server's
//! `/metrics` ([`metrics`]) and the background loops that
//! keep a process current ([`upkeep`], shared by the server and
//! `latchkey-tower`). It knows nothing of HTTP: no axum, askama or tower
//! here.
//!
//! Callers never see the store: [`App`] has no public fields, every read
//! and write takes a capability ([`UserAccess`], [`AdminAccess`]), and
//! failures are [`AppError`].

pub mod access;
mod app;
pub mod database;
pub mod error;
pub mod limiter;
pub mod metrics;
pub mod password;
pub mod session;
pub mod sign_in;
pub mod upkeep;

pub use access::{Access, AdminAccess, UserAccess};
pub use app::{App, Bootstrapped, PolicyEffect, AUDIT_PRUNE_BATCH};
pub use error::AppError;
pub use latchkey_store::{ConnectOptions, Page};
pub use limiter::RateLimiter;
pub use session::Session;
pub use sign_in::{SignIn, SignInAttempt};
pub use upkeep::Upkeep;
