//! What every HTTP door into latchkey's verifier shares: latchkey's own
//! server (`latchkey-server`: the REST API and `/verify`) and a Rust
//! service that verifies tokens in process (`latchkey-tower`).
//!
//! A client must get the same answer whichever door it knocks on, so each
//! rule of the door is written once, here:
//!
//! - [`credentials`]: reading `Authorization` (`{email}/token:{token}`
//!   over HTTP Basic, and the hints for Bearer and a missing `/token`);
//! - [`client`]: who the client is ([`client::resolve_client`], the one
//!   function for the peer and trusted proxies' forwarding headers);
//! - [`authenticate`]: the order of the checks ([`Gate::authenticate`]:
//!   staleness, the per-address failure limit, the credentials, the
//!   verifier) and what each refusal counts towards;
//! - [`answer`]: the refusals' status codes, headers and exact bodies
//!   ([`AuthFailure`]), and the JSON error body's shape;
//! - [`rate_headers`]: the four rate-limit headers.
//!
//! Who may depend on whom: this crate uses `latchkey-core` and the service
//! layer `latchkey-app` (its [`latchkey_app::App`] and
//! [`latchkey_app::RateLimiter`]), and axum's HTTP types; never the store,
//! the server or its pages. Both doors depend on it.

pub mod answer;
pub mod authenticate;
pub mod client;
pub mod credentials;
pub mod rate_headers;

pub use answer::AuthFailure;
pub use authenticate::{Gate, Outcome, Refused};
