//! latchkey's server: the HTTP edge of the service layer
//! ([`latchkey_app::App`]), that is the REST API ([`http`]) and the Admin
//! Center pages ([`web`]), the router that joins them ([`router`]), and the
//! background tasks that keep a process current and flush token usage, and
//! what it counts for `/metrics` ([`metrics`]).
//!
//! Who calls whom: `http` and `web` never import each other; both take
//! [`state::AppState`] and the neutral helpers in [`client`] and
//! [`metrics`], and reach the
//! data only through `App` with a capability (`UserAccess`, `AdminAccess`).

pub mod client;
pub mod config;
pub mod connections;
pub mod http;
pub mod metrics;
pub mod router;
pub mod run;
pub mod state;
pub mod tasks;
pub mod web;

pub use config::ServerConfig;
pub use http::leaks::GithubKeys;
pub use state::AppState;
