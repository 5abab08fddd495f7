//! Per-token IP allowlists (README.md, "IP allowlists and rate limits"): a token with an
//! allowlist authenticates only from an address inside one of its CIDRs.
//!
//! Addresses are compared as what they are: an IPv4 client seen by a dual
//! stack socket as `::ffff:192.0.2.1` is the IPv4 address `192.0.2.1`, and
//! an entry written as `::ffff:192.0.2.0/120` is `192.0.2.0/24`.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::{ErrorCode, Invalid};

/// A non-empty list of networks, canonical (host bits cleared, mapped IPv4
/// as IPv4), without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpAllowlist(Vec<IpNet>);

/// The most entries one allowlist may hold.
pub const MAX_ENTRIES: usize = 100;

/// An IPv4-mapped IPv6 address as IPv4; any other address as it is.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).map_or(net, |n| n.trunc()),
            None => net.trunc(),
        },
        _ => net.trunc(),
    }
}

fn invalid(description: String) -> Invalid {
    Invalid::new("allowed_ips", ErrorCode::InvalidValue, description)
}

impl IpAllowlist {
    /// Parses CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or single addresses
    /// (`/32` or `/128`), as an admin gives them (422 `InvalidValue` on
    /// `allowed_ips` for anything else, an empty list or too many).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, Invalid> {
        if entries.is_empty() {
            return Err(invalid(
                "An allowlist needs at least one address or network; use null to allow any address.".into(),
            ));
        }
        if entries.len() > MAX_ENTRIES {
            return Err(invalid(format!("An allowlist holds at most {MAX_ENTRIES} entries.")));
        }
        let mut nets: Vec<IpNet> = Vec::with_capacity(entries.len());
        for raw in entries {
            let text = raw.as_ref().trim();
            let net = text
                .parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    let shown: String = text.chars().filter(|c| !c.is_control()).take(50).collect();
                    invalid(format!("{shown:?} is not an IPv4 or IPv6 address or CIDR network."))
                })?;
            let net = canonical_net(net);
            if !nets.contains(&net) {
                nets.push(net);
            }
        }
        Ok(IpAllowlist(nets))
    }

    /// A stored value (space-separated networks); `None` when empty.
    /// Entries that do not parse are dropped, never widened: a value whose
    /// entries all fail allows no address at all.
    pub fn from_stored(text: &str) -> Option<Self> {
        let words: Vec<&str> = text.split_ascii_whitespace().collect();
        if words.is_empty() {
            return None;
        }
        let nets: Vec<IpNet> = words
            .iter()
            .filter_map(|w| w.parse::<IpNet>().ok().map(canonical_net))
            .collect();
        Some(IpAllowlist(nets))
    }

    pub fn to_stored(&self) -> String {
        self.names().collect::<Vec<_>>().join(" ")
    }

    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(IpNet::to_string)
    }

    /// Whether `ip` is inside one of the networks.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> IpAllowlist {
        IpAllowlist::parse(entries).expect("valid")
    }

    /// The CIDR matcher as a table: (allowlist, address, allowed).
    #[test]
    fn the_cidr_matcher_table() {
        let table: &[(&[&str], &str, bool)] = &[
            (&["10.0.0.0/8"], "10.1.2.3", true),
            (&["10.0.0.0/8"], "11.0.0.1", false),
            (&["192.0.2.7"], "192.0.2.7", true),
            (&["192.0.2.7/32"], "192.0.2.8", false),
            (&["192.0.2.7/24"], "192.0.2.200", true),
            (&["0.0.0.0/0"], "203.0.113.9", true),
            (&["0.0.0.0/0"], "2001:db8::1", false),
            (&["::/0"], "2001:db8::1", true),
            (&["::/0"], "192.0.2.1", false),
            (&["2001:db8::/32"], "2001:db8:ffff::1", true),
            (&["2001:db8::/32"], "2001:db9::1", false),
            (&["2001:db8::1/128"], "2001:db8::1", true),
            (&["2001:db8::1/128"], "2001:db8::2", false),
            (&["2001:db8::1"], "2001:db8::1", true),
            // A mapped client address is its IPv4 address...
            (&["192.0.2.0/24"], "::ffff:192.0.2.9", true),
            (&["192.0.2.0/24"], "::ffff:192.0.3.9", false),
            // ...and a mapped network is its IPv4 network.
            (&["::ffff:192.0.2.0/120"], "192.0.2.9", true),
            (&["::ffff:192.0.2.0/120"], "::ffff:192.0.2.9", true),
            (&["10.0.0.0/8", "2001:db8::/32"], "2001:db8::5", true),
            (&["10.0.0.0/8", "2001:db8::/32"], "127.0.0.1", false),
            (&["127.0.0.1"], "127.0.0.1", true),
            (&["127.0.0.1"], "::1", false),
        ];
        for (entries, ip, want) in table {
            let ip: IpAddr = ip.parse().expect("an address");
            assert_eq!(list(entries).allows(ip), *want, "{entries:?} / {ip}");
        }
    }

    #[test]
    fn bad_entries_are_refused_on_allowed_ips() {
        for bad in [
            vec!["10.0.0.0/33"],
            vec!["2001:db8::/129"],
            vec!["example.com"],
            vec!["10.0.0"],
            vec![""],
            vec!["10.0.0.0/8 11.0.0.0/8"],
            vec![],
        ] {
            let err = IpAllowlist::parse(&bad).expect_err("refused");
            assert_eq!(
                (err.field.as_str(), err.code),
                ("allowed_ips", ErrorCode::InvalidValue),
                "{bad:?}"
            );
        }
        let many: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("10.0.{}.0/24", i % 256)).collect();
        assert!(IpAllowlist::parse(&many).is_err());
    }

    #[test]
    fn entries_are_canonical_and_round_trip() {
        let l = list(&["10.1.2.3/8", "10.0.0.0/8", " 2001:DB8::1 ", "::ffff:192.0.2.0/120"]);
        assert_eq!(l.to_stored(), "10.0.0.0/8 2001:db8::1/128 192.0.2.0/24");
        assert_eq!(IpAllowlist::from_stored(&l.to_stored()), Some(l));
        assert_eq!(IpAllowlist::from_stored(""), None);
        // A stored value that no longer parses allows nothing, never everything.
        let broken = IpAllowlist::from_stored("garbage").expect("not unrestricted");
        assert!(!broken.allows("10.0.0.1".parse().expect("ip")));
    }
}
