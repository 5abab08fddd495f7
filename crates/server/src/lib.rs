//! latchkey's server: the service layer that every entry point calls (REST
//! API, web pages, CLI), the HTTP edge, and the background tasks that keep a
//! process current and flush token usage.

pub mod app;
pub mod config;
pub mod http;
pub mod password;
pub mod run;
pub mod tasks;
pub mod web;

pub use app::{AdminAccess, App};
pub use config::ServerConfig;
