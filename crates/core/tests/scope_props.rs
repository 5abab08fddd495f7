//! Property tests of restricted tokens (README.md, "Restricted tokens"):
//! - an unrestricted token is never refused by scope, whatever the method
//!   and path (Zendesk's tokens keep working exactly as before);
//! - `..` never widens a match: a path that resolves outside a resource is
//!   never judged as inside it, so a token holding only `tickets:*` scopes
//!   is refused any path that is not, once resolved, under `/api/v2/tickets`;
//! - the global `read` scope allows every read and no write.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use latchkey_core::scope::{ResourceDef, ScopeCatalog};
use latchkey_core::time::Timestamp;
use latchkey_core::token::{Restrictions, TokenHash};
use latchkey_core::verifier::{Snapshot, TokenAuth, Verifier};
use proptest::prelude::*;

fn catalog() -> ScopeCatalog {
    ScopeCatalog::with_resources(vec![ResourceDef {
        name: "tickets".into(),
        description: "Tickets".into(),
        paths: vec!["/api/v2/tickets".into(), "/api/v2/tickets/**".into()],
    }])
    .unwrap()
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("GET".to_owned()),
        Just("HEAD".to_owned()),
        Just("OPTIONS".to_owned()),
        Just("POST".to_owned()),
        Just("DELETE".to_owned()),
        "[A-Za-z]{0,8}",
    ]
}

/// Paths built from segments an attacker would try: dot segments, encoded
/// dots and slashes, resource names, `.json`, empty segments, queries.
fn path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        Just("api".to_owned()),
        Just("v2".to_owned()),
        Just("tickets".to_owned()),
        Just("users".to_owned()),
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just("%2e%2e".to_owned()),
        Just("%2F".to_owned()),
        Just("".to_owned()),
        Just("tickets.json".to_owned()),
        Just("7?x=/api/v2/tickets".to_owned()),
        "[ -~]{0,6}",
    ];
    prop::collection::vec(segment, 0..10).prop_map(|segs| format!("/{}", segs.join("/")))
}

/// The path resolved by hand, the way RFC 3986's remove_dot_segments and a
/// percent-decoding router would: `None` when the result is not plain.
fn resolved(path: &str) -> Option<Vec<String>> {
    let path = path.split(['?', '#']).next().unwrap();
    let mut out: Vec<String> = Vec::new();
    for raw in path.split('/') {
        let seg = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .ok()?
            .into_owned();
        if seg.contains('/') || seg.contains('\\') || seg.chars().any(char::is_control) {
            return None;
        }
        match seg.as_str() {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(seg),
        }
    }
    Some(out)
}

proptest! {
    #[test]
    fn an_unrestricted_token_is_never_refused_by_scope(method in method(), path in path()) {
        let c = catalog();
        prop_assert!(c.target(&method, &path).allowed(None));
        // And through the verifier, end to end.
        let v = verifier(Restrictions::default());
        let r = v.verify_with("jane@example.com", &hash(), Timestamp::from_unix(1), latchkey_core::verifier::ANY_ADDRESS, Some(c.target(&method, &path)), |_| ());
        prop_assert!(r.is_ok(), "{r:?}");
    }

    #[test]
    fn dot_segments_never_widen_a_match(method in method(), path in path()) {
        let c = catalog();
        let scopes = c.parse_scopes(&["tickets"]).unwrap();
        let allowed = c.target(&method, &path).allowed(Some(&scopes));
        let under_tickets = resolved(&path).is_some_and(|segs| {
            let mut segs = segs;
            if let Some(last) = segs.last_mut() {
                if let Some(stem) = last.strip_suffix(".json").filter(|s| !s.is_empty()) {
                    *last = stem.to_owned();
                }
            }
            segs.len() >= 3 && segs[..3] == ["api", "v2", "tickets"]
        });
        prop_assert_eq!(allowed, under_tickets, "{}", path);
    }

    #[test]
    fn read_allows_every_read_and_no_write(method in method(), path in path()) {
        let c = catalog();
        let read = c.parse_scopes(&["read"]).unwrap();
        let reads = matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS");
        prop_assert_eq!(c.target(&method, &path).allowed(Some(&read)), reads);
    }
}

fn hash() -> TokenHash {
    TokenHash::of("lk_props")
}

fn verifier(restrictions: Restrictions) -> Verifier {
    use latchkey_core::account::{Plan, Subdomain};
    use latchkey_core::id::{AccountId, TokenId, UserId};
    use latchkey_core::user::{Email, Role, User};
    use latchkey_core::verifier::AccountEntry;
    let v = Verifier::new();
    let mut s = Snapshot::new();
    s.add_account(AccountEntry {
        id: AccountId::new(1),
        subdomain: Subdomain::parse("acme").unwrap(),
        name: "Acme".into(),
        plan: Plan::Enterprise,
        api_token_access: true,
    });
    s.add_user(User {
        id: UserId::new(1),
        account_id: AccountId::new(1),
        name: "Jane".into(),
        email: Email::parse("jane@example.com").unwrap(),
        role: Role::Agent,
        verified: true,
        suspended: false,
        deleted: false,
        created_at: Timestamp::EPOCH,
        updated_at: Timestamp::EPOCH,
    });
    s.add_token(TokenAuth {
        id: TokenId::new(1),
        account_id: AccountId::new(1),
        hash: hash(),
        active: true,
        restrictions,
        previous: None,
        legacy: false,
    });
    v.replace_all(s);
    v
}
