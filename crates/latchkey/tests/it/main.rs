//! latchkey's integration tests: one binary, so the crate and the server are
//! built once. Each module tests one area through real parts (the server on
//! a loopback port, a real database file, the real `latchkey` binary);
//! `support` holds the harness they share.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;
mod support;
mod tokens;
mod auth;
mod bad_input;
mod audit_events;
mod concurrency;
mod durability;
mod cli;
mod audit;
mod nodes;
mod users;
mod account;
mod web;
mod secrets;
mod verify;
