//! What both edges (REST API and pages) read off a request the same way:
//! the client's address and a record id in a path.

use std::net::IpAddr;

use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::request::Parts;
use latchkey_core::id::{AuditEventId, TokenId, UserId};
use latchkey_edge::client::{is_trusted_proxy, peer_address, resolve_client};

use crate::config::ServerConfig;

/// The client's address (README.md, "Client addresses"), the one function
/// the failed-attempt limit, the audit log's `ip_address`, sessions, leak
/// reports and IP allowlists all read: [`resolve_client`] on the
/// connection's peer.
pub fn client_ip(parts: &Parts, config: &ServerConfig) -> IpAddr {
    let peer = peer_address(&parts.extensions).unwrap_or(IpAddr::from([127, 0, 0, 1]));
    resolve_client(peer, &parts.headers, &config.trusted_proxies)
}

/// Whether the peer is one of the trusted proxies.
pub fn peer_is_trusted_proxy(parts: &Parts, config: &ServerConfig) -> bool {
    peer_address(&parts.extensions).is_some_and(|ip| is_trusted_proxy(ip, &config.trusted_proxies))
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
