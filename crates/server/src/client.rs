//! What both edges (REST API and pages) read off a request the same way:
//! the client's address and a record id in a path.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;

use crate::config::ServerConfig;

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

/// Whether the peer is one of the trusted proxies.
pub fn peer_is_trusted_proxy(parts: &Parts, config: &ServerConfig) -> bool {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|c| config.trusted_proxies.iter().any(|n| n.contains(&c.0.ip())))
}

/// A record id from a path: anything but a positive integer names no
/// record (a 404 like any unknown id).
pub fn record_id(raw: &str) -> Option<i64> {
    match raw.parse::<i64>() {
        Ok(id) if id > 0 => Some(id),
        _ => None,
    }
}
