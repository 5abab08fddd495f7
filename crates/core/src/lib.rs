//! latchkey's domain: the types and rules of accounts, users, API tokens and
//! audit events, the token format, and the in-memory verifier that answers
//! "who is this request?" without I/O.
//!
//! Nothing here talks to a database, a socket or a clock it was not handed:
//! storage and HTTP live in other crates and call these rules, so every
//! backend and every entry point (REST API, web pages, CLI) applies the same
//! ones.

pub mod account;
pub mod audit;
pub mod audit_query;
pub mod error;
pub mod time;
pub mod token;
pub mod user;
pub mod verifier;

pub use error::{DomainError, ErrorCode, Invalid};
