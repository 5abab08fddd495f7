//! latchkey inside a Rust service: verify latchkey API tokens in process,
//! with no network hop to a latchkey server.
//!
//! A service that links this crate opens the deployment's database (the
//! SQLite file or `postgres://…` URL its latchkey servers use), loads every
//! token into memory, and from then on authenticates each request from
//! memory, as a latchkey node does: a SHA-256 of the token and a few map
//! reads, never a database statement on the request's path. In the
//! background it follows the change log, so a token created, deactivated,
//! restricted or deleted anywhere (the Admin Center, the REST API, the CLI,
//! another node) is applied here within 100 ms; and, like a node, it writes
//! `last_used` and usage in batches and shares rate-limit counts with the
//! other nodes.
//!
//! Requests are read and answered exactly as latchkey's REST API reads and
//! answers them (docs/api.md): `Authorization: Basic
//! base64({email}/token:{token})`, the same 401 (`{"error":"Couldn't
//! authenticate you"}` with `WWW-Authenticate: Basic realm="latchkey"`),
//! 403 naming a missing scope, 429 with `Retry-After` (a token's rate
//! limit, and too many failed attempts from one client address), the four
//! rate-limit headers for a limited token, and 503 once the process has
//! been out of touch with the database for longer than the maximum
//! staleness (5 s by default), since what it remembers may then miss a
//! revocation.
//!
//! # Wiring it into axum
//!
//! ```no_run
//! use std::net::SocketAddr;
//!
//! use axum::routing::{get, post};
//! use axum::{Json, Router};
//! use latchkey_tower::{require_scope, Latchkey, Principal};
//!
//! async fn list_tickets(principal: Principal) -> String {
//!     format!("the tickets of {}", principal.subdomain())
//! }
//!
//! async fn create_ticket(principal: Principal) -> String {
//!     format!("created by user {}", principal.user_id())
//! }
//!
//! async fn me(principal: Principal) -> Json<Principal> {
//!     Json(principal)
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let latchkey = Latchkey::builder("sqlite://latchkey.db").open().await?;
//!     let api = Router::new()
//!         // Each method of a path names the scope it needs.
//!         .route("/api/v2/tickets", get(list_tickets).route_layer(require_scope("tickets:read")))
//!         .route("/api/v2/tickets", post(create_ticket).route_layer(require_scope("tickets:write")))
//!         // Any valid token: no scope named.
//!         .route("/api/v2/me", get(me))
//!         // Outermost: authenticates every request of the router.
//!         .layer(latchkey.layer());
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     // ConnectInfo gives latchkey the client's address (failed-attempt
//!     // limit, IP allowlists).
//!     axum::serve(listener, api.into_make_service_with_connect_info::<SocketAddr>())
//!         .with_graceful_shutdown(async {
//!             let _ = tokio::signal::ctrl_c().await;
//!         })
//!         .await?;
//!     latchkey.shutdown().await; // writes last_used once more
//!     Ok(())
//! }
//! ```
//!
//! The layer goes outermost (`Router::layer`), so it runs before any
//! handler and before every [`require_scope`]; routes that need no token
//! (a health check) live in a router merged without it. The client's
//! address is the connection's peer (`ConnectInfo<SocketAddr>`), or, behind
//! [`LatchkeyBuilder::trusted_proxies`], the one their forwarding headers
//! name, read by the same function as latchkey's server.
//!
//! # What comes from where
//!
//! The rules of the door (credentials, the order of checks, the answers,
//! the client address) are `latchkey-edge`'s, shared with latchkey's
//! server; the background loops are `latchkey-app`'s `upkeep`, also the
//! server's. This crate adds only the tower and axum shapes around them,
//! and never depends on the server (its pages and templates) or the store.

#![deny(missing_docs)]

mod latchkey;
mod layer;
mod principal;
mod require;

pub use ipnet::IpNet;
pub use latchkey_core::id::{AccountId, TokenId, UserId};
pub use latchkey_core::scope::{ResourceDef, Scope, ScopeCatalog, Scopes};
pub use latchkey_core::user::Role;

pub use crate::latchkey::{Latchkey, LatchkeyBuilder, OpenError, DEFAULT_FAILED_AUTH_PER_MINUTE};
pub use crate::layer::{LatchkeyLayer, LatchkeyService, ResponseFuture};
pub use crate::principal::{NotBehindTheLayer, Principal};
pub use crate::require::{require_scope, RequireScopeLayer, RequireScopeService};
