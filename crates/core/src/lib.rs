//! latchkey's domain: the types and rules of accounts, users, API tokens and
//! audit events, the token format, and the in-memory verifier that answers
//! "who is this request?" without I/O.
//!
//! Nothing here talks to a database, a socket or a clock it was not handed:
//! storage and HTTP live in other crates and call these rules, so every
//! backend and every entry point (REST API, web pages, CLI) applies the same
//! ones.
//!
//! Values say what they are: record ids are [`id::AccountId`],
//! [`id::UserId`], [`id::TokenId`] and [`id::AuditEventId`] (one cannot be
//! passed for another), times are [`time::Timestamp`], and validated text
//! is held as its type ([`account::Subdomain`], [`user::Email`]). Each is
//! a newtype with the JSON of the plain number or string it wraps.
//!
//! Every enum that has a wire spelling (`Plan`, `Role`, `Action`,
//! `SourceType`, `ActorType`, `ErrorCode`, `AuditSort`, ...) writes it once,
//! as a case rule (or a per-variant name) on the enum: strum derives
//! `as_str`, `parse`, `Display` and `VARIANTS` from it, serde's matching
//! attribute gives JSON the same text, and a test per enum checks the two
//! agree on every variant. Messages that list the accepted values build the
//! list from `VARIANTS`, and other crates can do the same.

pub mod account;
pub mod allowlist;
pub mod audit;
pub mod audit_query;
pub mod change;
pub mod error;
pub mod id;
pub mod policy;
pub mod rate_limit;
pub mod scope;
pub mod secret;
pub mod time;
pub mod token;
pub mod usage;
pub mod user;
pub mod verifier;
#[cfg(test)]
mod wire;

pub use error::{DomainError, ErrorCode, Invalid};

/// The modules' imports form no cycle: `change` holds the audit wording so
/// that `account`, `token` and `user` need not import `audit`, which
/// imports them. This test reads every `crate::` path in the sources.
#[cfg(test)]
mod module_graph {
    const MODULES: [(&str, &str); 17] = [
        ("account", include_str!("account.rs")),
        ("allowlist", include_str!("allowlist.rs")),
        ("audit", include_str!("audit.rs")),
        ("audit_query", include_str!("audit_query.rs")),
        ("change", include_str!("change.rs")),
        ("error", include_str!("error.rs")),
        ("id", include_str!("id.rs")),
        ("policy", include_str!("policy.rs")),
        ("rate_limit", include_str!("rate_limit.rs")),
        ("scope", include_str!("scope.rs")),
        ("secret", include_str!("secret.rs")),
        ("time", include_str!("time.rs")),
        ("token", include_str!("token.rs")),
        ("usage", include_str!("usage.rs")),
        ("user", include_str!("user.rs")),
        ("verifier", include_str!("verifier.rs")),
        ("wire", include_str!("wire.rs")),
    ];

    /// The modules `source` names through `crate::`.
    fn imports(source: &str) -> Vec<&str> {
        let mut out: Vec<&str> = source
            .split("crate::")
            .skip(1)
            .map(|rest| {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    #[test]
    fn every_crate_path_names_one_module() {
        for (name, source) in MODULES {
            assert!(!source.contains("crate::{"), "{name} groups crate imports");
            for m in imports(source) {
                assert!(
                    MODULES.iter().any(|(n, _)| *n == m) || m.chars().next().is_some_and(char::is_uppercase),
                    "{name} imports an unknown module {m}"
                );
            }
        }
    }

    #[test]
    fn modules_import_each_other_without_cycles() {
        // Repeatedly remove the modules whose imports are all removed; a
        // cycle is what remains.
        let mut left: Vec<(&str, Vec<&str>)> = MODULES
            .iter()
            .map(|(n, s)| (*n, imports(s).into_iter().filter(|m| m != n).collect()))
            .collect();
        while !left.is_empty() {
            let names: Vec<&str> = left.iter().map(|(n, _)| *n).collect();
            let before = left.len();
            left.retain(|(_, deps)| deps.iter().any(|d| names.contains(d)));
            assert!(left.len() < before, "import cycle among {left:?}");
        }
    }
}
