//! What both edges (REST API and pages) read off a request the same way:
//! the client's address and a record id in a path.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path};
use axum::http::request::Parts;
use latchkey_core::id::{AuditEventId, TokenId, UserId};

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

/// A record id that a path can name.
pub trait PathId: Copy {
    /// The row id, which is positive for every stored record.
    fn row_id(self) -> i64;
}

impl PathId for UserId {
    fn row_id(self) -> i64 {
        self.get()
    }
}

impl PathId for TokenId {
    fn row_id(self) -> i64 {
        self.get()
    }
}

impl PathId for AuditEventId {
    fn row_id(self) -> i64 {
        self.get()
    }
}

/// Whether a path's id can name a record: only a positive one can.
pub fn named<Id: PathId>(id: Id) -> Option<Id> {
    (id.row_id() > 0).then_some(id)
}

/// A record id from a path, as the path extractor parsed it into its type:
/// anything but a positive integer (the extractor's rejection, zero, a
/// negative number) names no record (a 404 like any unknown id). The
/// rejection is taken as a value so that the edge's own checks (sign-in,
/// role, CSRF) keep their place before it.
pub fn record_id<Id: PathId>(path: Result<Path<Id>, PathRejection>) -> Option<Id> {
    path.ok().and_then(|Path(id)| named(id))
}
