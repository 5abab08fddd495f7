//! The in-process verifier against its floor: SHA-256 of the token alone,
//! measured in the same run. A verification here is what a request costs
//! once its `Authorization` header is decoded: the checksum check, the
//! SHA-256, and the lookups of token, account and user. A valid token is
//! measured twice: through `verify_with` reading what `/verify`'s headers
//! need (the path `/verify` takes), and through `verify`, which returns an
//! owned `Identity` (the REST API's path). A token with every restriction
//! (scopes, an assigned user, an expiry, an IP allowlist and a rate limit)
//! is measured on the `/verify` path with the
//! original request given, its path classified against a catalog with a
//! deployment resource as part of each verification. One legacy token (a
//! Zendesk-shaped string without a latchkey checksum) is held too, so the
//! last cases show what a checksum-less string costs while legacy tokens
//! exist: one SHA-256 and one lookup.
//!
//! `LATCHKEY_BENCH_TOKENS` (default `1000,1000000`) sets the verifier sizes;
//! tokens are spread over one account per 100 tokens. After criterion's own
//! report, a table gives each case's time and its ratio to the floor, from
//! batches of the cases taken in turns (robust to a busy machine).
//!
//! CI runs it quickly: `cargo bench -p latchkey-core --bench verifier -- --quick`.

use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use criterion::Criterion;
use latchkey_core::account::{Plan, Subdomain};
use latchkey_core::allowlist::IpAllowlist;
use latchkey_core::id::{AccountId, TokenId, UserId};
use latchkey_core::rate_limit::RateLimit;
use latchkey_core::scope::{ResourceDef, ScopeCatalog};
use latchkey_core::time::Timestamp;
use latchkey_core::token::{has_valid_checksum, is_legacy_shaped, PlainToken, Restrictions, TokenHash, TokenPrefix};
use latchkey_core::user::{Email, Role, User};
use latchkey_core::verifier::{AccountEntry, Snapshot, TokenAuth, Verifier};

const TOKENS_PER_ACCOUNT: usize = 100;
const EMAIL: &str = "user1@example.com";

const NOW: Timestamp = Timestamp::from_unix(1_000);
/// The client address every case verifies from (inside the allowlist).
const CLIENT: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10));

fn user(id: i64, account_id: i64) -> User {
    User {
        id: UserId::new(id),
        account_id: AccountId::new(account_id),
        name: format!("User {id}"),
        email: Email::parse(&format!("User{account_id}@Example.com")).expect("a valid email"),
        role: Role::Agent,
        verified: true,
        suspended: false,
        deleted: false,
        created_at: Timestamp::EPOCH,
        updated_at: Timestamp::EPOCH,
    }
}

struct Loaded {
    verifier: Verifier,
    valid: String,
    unknown: String,
    bad_checksum: String,
    deactivated: String,
    restricted: String,
    catalog: ScopeCatalog,
}

/// A Zendesk-shaped token (40 letters and digits), imported as legacy.
const LEGACY: &str = "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5hJ7k";
/// The same shape, held by no token.
const LEGACY_UNKNOWN: &str = "zZ3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5hJ7k";

/// A verifier holding `n` tokens over `n / 100` accounts (one user each),
/// with a valid and a deactivated token of account 1 among them.
fn load(n: usize) -> Loaded {
    let prefix = TokenPrefix::default();
    let valid = PlainToken::generate(&prefix);
    let deactivated = PlainToken::generate(&prefix);
    let unknown = PlainToken::generate(&prefix);
    let restricted = PlainToken::generate(&prefix);
    let catalog = ScopeCatalog::with_resources(vec![ResourceDef {
        name: "tickets".into(),
        description: "Tickets".into(),
        paths: vec!["/api/v2/tickets".into(), "/api/v2/tickets/**".into()],
    }])
    .expect("a valid resource");
    let mut bad_checksum = valid.expose().to_owned().into_bytes();
    let last = bad_checksum.len() - 1;
    bad_checksum[last] = if bad_checksum[last] == b'a' { b'b' } else { b'a' };
    let bad_checksum = String::from_utf8(bad_checksum).unwrap_or_default();

    let accounts = (n / TOKENS_PER_ACCOUNT).max(1);
    let mut s = Snapshot::new();
    for a in 1..=accounts as i64 {
        s.add_account(AccountEntry {
            id: AccountId::new(a),
            subdomain: Subdomain::parse(&format!("account{a}")).expect("a valid subdomain"),
            name: format!("Account {a}"),
            plan: Plan::Enterprise,
            api_token_access: true,
        });
        s.add_user(user(a, a));
    }
    let mut add = |id: usize, hash: TokenHash, active: bool, restrictions: Restrictions| {
        s.add_token(TokenAuth {
            id: TokenId::new(id as i64),
            account_id: AccountId::new((id % accounts) as i64 + 1),
            hash,
            active,
            restrictions,
            previous: None,
            legacy: hash == TokenHash::of(LEGACY),
        })
    };
    // Account 1 gets ids 0, accounts, 2 * accounts, ...
    add(0, valid.hash(), true, Restrictions::default());
    add(accounts, deactivated.hash(), false, Restrictions::default());
    let every_restriction = Restrictions {
        scopes: Some(catalog.parse_scopes(&["tickets:read", "users:read"]).expect("valid")),
        assigned_user_id: Some(UserId::new(1)),
        expires_at: Some(NOW.plus_secs(86_400)),
        allowed_ips: Some(IpAllowlist::parse(&["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32"]).expect("valid")),
        // Never reached: `request_time` moves one second on every 500,000
        // requests, so each window holds half the limit.
        rate_limit: Some(RateLimit::new(1_000_000, 1).expect("valid")),
    };
    let restricted_id = 2 * accounts;
    add(restricted_id, restricted.hash(), true, every_restriction);
    let legacy_id = 3 * accounts;
    add(legacy_id, TokenHash::of(LEGACY), true, Restrictions::default());
    for id in (1..n).filter(|&i| i != accounts && i != restricted_id && i != legacy_id) {
        add(id, TokenHash::of(&format!("bulk-{id}")), true, Restrictions::default());
    }
    let verifier = Verifier::new();
    verifier.replace_all(s);
    assert_eq!(verifier.token_count(), n.max(legacy_id + 1));
    assert!(verifier.accepts_legacy());
    Loaded {
        verifier,
        valid: valid.expose().to_owned(),
        unknown: unknown.expose().to_owned(),
        bad_checksum,
        deactivated: deactivated.expose().to_owned(),
        restricted: restricted.expose().to_owned(),
        catalog,
    }
}

/// The original request a gateway asks about, for the restricted token.
const ORIGINAL: (&str, &str) = ("GET", "/api/v2/tickets/12345.json?page=2");

/// Everything verification does with `{email}/token:{token}`, returning
/// an owned identity.
fn verify(v: &Verifier, email: &str, token: &str) -> bool {
    has_valid_checksum(token) && v.verify(email, &TokenHash::of(token), NOW).is_ok()
}

/// [`verify`] as the `Authorization` parser gates it while legacy tokens
/// exist: a checksum-less string of a legacy token's shape is hashed and
/// looked up too.
fn verify_any(v: &Verifier, email: &str, token: &str) -> bool {
    (has_valid_checksum(token) || (v.accepts_legacy() && is_legacy_shaped(token)))
        && v.verify(email, &TokenHash::of(token), NOW).is_ok()
}

/// The same through the borrowing path, reading what `/verify` puts in its
/// headers: ids, role, subdomain and email.
fn verify_borrowed(v: &Verifier, email: &str, token: &str) -> Option<(AccountId, UserId, TokenId, &'static str)> {
    if !has_valid_checksum(token) {
        return None;
    }
    v.verify_with(email, &TokenHash::of(token), NOW, CLIENT, None, |i| {
        black_box((i.account.subdomain.as_str(), i.user.email.as_str()));
        (i.account.id, i.user.id, i.token_id, i.user.role.as_str())
    })
    .ok()
}

/// The `/verify` path with the original request given: the path is
/// classified, then every check runs, and the scopes are read for the
/// `X-Latchkey-Scopes` header.
fn verify_request(l: &Loaded, email: &str, token: &str, (method, uri): (&str, &str)) -> Option<TokenId> {
    if !has_valid_checksum(token) {
        return None;
    }
    let target = l.catalog.target(method, uri);
    l.verifier
        .verify_with(
            email,
            &TokenHash::of(token),
            request_time(),
            CLIENT,
            Some(target),
            |i| {
                black_box((i.account.subdomain.as_str(), i.user.email.as_str(), i.scopes));
                i.token_id
            },
        )
        .ok()
}

/// "Now" for the rate-limited token: a second later every 500,000 requests.
fn request_time() -> Timestamp {
    static REQUESTS: AtomicI64 = AtomicI64::new(0);
    NOW.plus_secs(REQUESTS.fetch_add(1, Ordering::Relaxed) / 500_000)
}

type Case<'a> = (&'static str, Box<dyn Fn() + 'a>);

/// The table's figures: the cases take turns in short batches, many rounds
/// over, and each keeps its median batch, so a burst of load from other
/// processes hits every case alike instead of skewing one.
fn paired(cases: &[Case<'_>]) -> Vec<f64> {
    const ROUNDS: usize = 101;
    const BATCH: u32 = 2_000;
    let mut samples = vec![Vec::with_capacity(ROUNDS); cases.len()];
    for _ in 0..ROUNDS {
        for (i, (_, f)) in cases.iter().enumerate() {
            let start = Instant::now();
            for _ in 0..BATCH {
                f();
            }
            samples[i].push(start.elapsed().as_nanos() as f64 / f64::from(BATCH));
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect()
}

fn bench(c: &mut Criterion, n: usize, table: &mut Vec<(usize, &'static str, f64, f64)>) {
    let started = Instant::now();
    let l = load(n);
    eprintln!("loaded {n} tokens in {:.2?}", started.elapsed());
    assert!(verify(&l.verifier, EMAIL, &l.valid));
    assert!(!verify(&l.verifier, EMAIL, &l.unknown));
    assert!(!verify(&l.verifier, EMAIL, &l.bad_checksum));
    assert!(!verify(&l.verifier, EMAIL, &l.deactivated));
    assert_eq!(
        verify_borrowed(&l.verifier, EMAIL, &l.valid),
        Some((AccountId::new(1), UserId::new(1), TokenId::new(0), Role::Agent.as_str()))
    );
    assert_eq!(verify_borrowed(&l.verifier, EMAIL, &l.deactivated), None);
    assert!(verify_request(&l, EMAIL, &l.restricted, ORIGINAL).is_some());
    assert!(verify_request(&l, EMAIL, &l.restricted, ("POST", ORIGINAL.1)).is_none());
    assert!(verify_request(&l, EMAIL, &l.valid, ORIGINAL).is_some());
    assert!(verify_any(&l.verifier, EMAIL, LEGACY));
    assert!(!verify_any(&l.verifier, EMAIL, LEGACY_UNKNOWN));
    let v = &l.verifier;
    let cases: Vec<Case<'_>> = vec![
        (
            "floor: SHA-256 of the token",
            Box::new(|| {
                black_box(TokenHash::of(black_box(&l.valid)));
            }),
        ),
        (
            "valid token (/verify path)",
            Box::new(|| {
                black_box(verify_borrowed(v, black_box(EMAIL), black_box(&l.valid)));
            }),
        ),
        (
            "valid token, original request",
            Box::new(|| {
                black_box(verify_request(
                    &l,
                    black_box(EMAIL),
                    black_box(&l.valid),
                    black_box(ORIGINAL),
                ));
            }),
        ),
        (
            "classifying the path alone",
            Box::new(|| {
                black_box(l.catalog.target(black_box(ORIGINAL.0), black_box(ORIGINAL.1)));
            }),
        ),
        (
            "every check on (+rate limit)",
            Box::new(|| {
                black_box(verify_request(
                    &l,
                    black_box(EMAIL),
                    black_box(&l.restricted),
                    black_box(ORIGINAL),
                ));
            }),
        ),
        (
            "valid token (owned Identity)",
            Box::new(|| {
                black_box(verify(v, black_box(EMAIL), black_box(&l.valid)));
            }),
        ),
        (
            "unknown token",
            Box::new(|| {
                black_box(verify(v, black_box(EMAIL), black_box(&l.unknown)));
            }),
        ),
        (
            "bad checksum",
            Box::new(|| {
                black_box(verify(v, black_box(EMAIL), black_box(&l.bad_checksum)));
            }),
        ),
        (
            "deactivated token",
            Box::new(|| {
                black_box(verify(v, black_box(EMAIL), black_box(&l.deactivated)));
            }),
        ),
        (
            "legacy token (no checksum)",
            Box::new(|| {
                black_box(verify_any(v, black_box(EMAIL), black_box(LEGACY)));
            }),
        ),
        (
            "unknown checksum-less string",
            Box::new(|| {
                black_box(verify_any(v, black_box(EMAIL), black_box(LEGACY_UNKNOWN)));
            }),
        ),
    ];
    for (name, f) in &cases {
        c.bench_function(&format!("{n} tokens/{name}"), |b| b.iter(f));
    }
    let medians = paired(&cases);
    for ((name, _), ns) in cases.iter().zip(&medians) {
        table.push((n, name, *ns, ns / medians[0]));
    }
}

fn sizes() -> Vec<usize> {
    std::env::var("LATCHKEY_BENCH_TOKENS")
        .unwrap_or_else(|_| "1000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().replace('_', "").parse().ok())
        .filter(|&n| n >= 2)
        .collect()
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut table = Vec::new();
    for n in sizes() {
        bench(&mut c, n, &mut table);
    }
    c.final_summary();
    println!("\nmedians of interleaved batches, same run:");
    println!("{:>9}  {:<30} {:>9}  {:>8}", "tokens", "case", "ns/op", "x floor");
    for (n, case, ns, ratio) in table {
        println!("{n:>9}  {case:<30} {ns:>9.1}  {ratio:>8.2}");
    }
}
