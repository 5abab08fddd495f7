//! The client's address (README.md, "Client addresses"): the one function
//! that decides who the client is, for the failed-attempt limit, the audit
//! log's `ip_address`, sessions, leak reports and IP allowlists, in
//! latchkey's server and in a service verifying in process alike.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{header, Extensions, HeaderMap, HeaderName};
use ipnet::IpNet;
use latchkey_core::allowlist::canonical_ip;

/// The TCP peer axum recorded (`ConnectInfo<SocketAddr>`, present when the
/// router is served with `into_make_service_with_connect_info`).
pub fn peer_address(extensions: &Extensions) -> Option<IpAddr> {
    extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// Whether `ip` is inside one of the `trusted` proxy ranges (an
/// IPv4-mapped IPv6 address counts as its IPv4 address).
pub fn is_trusted_proxy(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical_ip(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client behind `peer`: the peer itself unless it is a trusted proxy;
/// then the chain of addresses the proxies recorded, from the first of
/// `X-Forwarded-For` (every such header, in order), `Forwarded` (RFC 7239,
/// its `for=` parameters) and `X-Real-IP` that the request has, is walked
/// from the right, skipping trusted hops: the first untrusted address is
/// the client. Hops the proxies could not name (`unknown`, an obfuscated
/// `_id`, anything unreadable) end the walk at the last trusted address,
/// and a chain of trusted hops only gives its leftmost.
///
/// Hand-written: the walk is what makes the address safe to rate-limit
/// and allowlist on (a client can put anything at the left of the chain,
/// never at the right of a trusted proxy's entry).
pub fn resolve_client(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: IpAddr| is_trusted_proxy(ip, trusted);
    if !is_trusted(peer) {
        return peer;
    }
    let chain = forwarded_chain(headers);
    let mut client = peer;
    for hop in chain.iter().rev() {
        match hop {
            Some(ip) if is_trusted(*ip) => client = *ip,
            Some(ip) => return *ip,
            None => break,
        }
    }
    client
}

/// The recorded hops, leftmost (farthest) first; `None` for a hop that
/// names no address.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name: HeaderName| {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
    };
    let xff = values(X_FORWARDED_FOR);
    if !xff.is_empty() {
        return xff
            .iter()
            .flat_map(|v| match v {
                Some(v) => v.split(',').map(parse_hop).collect(),
                None => vec![None],
            })
            .collect();
    }
    let forwarded = values(header::FORWARDED);
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|v| match v {
                Some(v) => v.split(',').map(forwarded_for).collect(),
                None => vec![None],
            })
            .collect();
    }
    values(X_REAL_IP).iter().map(|v| v.and_then(parse_hop)).collect()
}

/// One address as proxies write it: `192.0.2.7`, `2001:db8::1`, with a
/// port (`192.0.2.7:4711`, `[2001:db8::1]:4711`) or in brackets.
fn parse_hop(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim().trim_matches('"');
    if let Ok(ip) = raw.parse() {
        return Some(ip);
    }
    if let Ok(addr) = raw.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    raw.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// The `for=` parameter of one `Forwarded` element (`for=192.0.2.7;proto=https`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim().eq_ignore_ascii_case("for").then(|| parse_hop(value))?
    })
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    /// A peer, the headers it sent, and the client latchkey takes.
    type Case = (&'static str, &'static [(&'static str, &'static str)], &'static str);

    /// The table of README.md's "Client addresses": peer, headers, trusted
    /// proxies, and the client latchkey takes.
    #[test]
    fn the_client_address_is_resolved_as_a_table_says() {
        let proxies: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().expect("net"),
            "2001:db8:ffff::/48".parse().expect("net"),
        ];
        #[rustfmt::skip]
        let cases: &[Case] = &[
            // No trusted proxy in front: the peer, whatever the headers say.
            ("198.51.100.9", &[("x-forwarded-for", "203.0.113.5")], "198.51.100.9"),
            ("198.51.100.9", &[("x-real-ip", "203.0.113.5")], "198.51.100.9"),
            // A trusted peer without headers is the client.
            ("10.0.0.2", &[], "10.0.0.2"),
            // One proxy.
            ("10.0.0.2", &[("x-forwarded-for", "203.0.113.5")], "203.0.113.5"),
            // A client-sent value at the left is skipped past: the proxy appended the real one.
            ("10.0.0.2", &[("x-forwarded-for", "1.2.3.4, 203.0.113.5")], "203.0.113.5"),
            // Two proxies: every trusted hop is skipped.
            ("10.0.0.2", &[("x-forwarded-for", "203.0.113.5, 10.1.2.3")], "203.0.113.5"),
            ("10.0.0.2", &[("x-forwarded-for", "203.0.113.5"), ("x-forwarded-for", "10.1.2.3")], "203.0.113.5"),
            // Only trusted hops: the leftmost.
            ("10.0.0.2", &[("x-forwarded-for", "10.9.9.9, 10.1.2.3")], "10.9.9.9"),
            // An unreadable hop ends the walk at the last trusted address.
            ("10.0.0.2", &[("x-forwarded-for", "203.0.113.5, unknown, 10.1.2.3")], "10.1.2.3"),
            ("10.0.0.2", &[("x-forwarded-for", "garbage")], "10.0.0.2"),
            ("10.0.0.2", &[("x-forwarded-for", "")], "10.0.0.2"),
            // Ports and brackets.
            ("10.0.0.2", &[("x-forwarded-for", "203.0.113.5:4711")], "203.0.113.5"),
            ("10.0.0.2", &[("x-forwarded-for", "[2001:db8::7]:4711")], "2001:db8::7"),
            ("10.0.0.2", &[("x-forwarded-for", "2001:db8::7")], "2001:db8::7"),
            // RFC 7239 Forwarded, when there is no X-Forwarded-For.
            ("10.0.0.2", &[("forwarded", "for=203.0.113.5;proto=https")], "203.0.113.5"),
            ("10.0.0.2", &[("forwarded", "for=1.2.3.4, For=\"[2001:db8::7]:4711\", for=10.1.2.3")], "2001:db8::7"),
            ("10.0.0.2", &[("forwarded", "for=_hidden, for=10.1.2.3")], "10.1.2.3"),
            // X-Real-IP, when there is neither.
            ("10.0.0.2", &[("x-real-ip", "203.0.113.5")], "203.0.113.5"),
            // X-Forwarded-For wins over the others.
            ("10.0.0.2", &[("x-real-ip", "1.2.3.4"), ("forwarded", "for=1.2.3.5"), ("x-forwarded-for", "203.0.113.5")], "203.0.113.5"),
            // A trusted IPv6 proxy, and an IPv4 proxy seen on a dual-stack socket.
            ("2001:db8:ffff::1", &[("x-forwarded-for", "203.0.113.5")], "203.0.113.5"),
            ("::ffff:10.0.0.2", &[("x-forwarded-for", "203.0.113.5")], "203.0.113.5"),
        ];
        for (peer, headers, want) in cases {
            let mut map = HeaderMap::new();
            for (name, value) in *headers {
                map.append(HeaderName::from_static(name), value.parse().expect("a header value"));
            }
            assert_eq!(resolve_client(ip(peer), &map, &proxies), ip(want), "{peer} {headers:?}");
        }
    }
}
