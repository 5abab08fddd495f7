//! latchkey's integration tests: one binary, so the crate and the server are
//! built once. Each module tests one area through real parts (the server on
//! a loopback port, a real database file, the real `latchkey` binary);
//! `support` holds the harness they share.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod account;
mod audit;
mod audit_events;
mod audit_retention;
mod auth;
mod bad_input;
mod cli;
mod concurrency;
mod config;
mod crash;
mod durability;
mod gateways;
mod harness;
mod hostile;
mod hygiene;
mod leaks;
mod limits;
mod metrics;
mod migration;
mod nodes;
mod races;
mod rate_limits;
mod restricted;
mod secrets;
mod support;
mod tokens;
mod tower_service;
mod usage;
mod users;
mod verify;
mod web;
mod wire_format;
