//! What `latchkey-tower`'s layer costs a request, against the SHA-256 of
//! the token (the floor every verification pays) in the same run.
//!
//! The verifier is loaded from a real SQLite file (a temporary directory)
//! holding 1,000 tokens of one account, through `Latchkey::open` as a
//! service opens it, with its background loops running. Each case sends a
//! request (built afresh, with its `Authorization` header and the peer's
//! `ConnectInfo`) with `tower::ServiceExt::oneshot` to a trivial handler
//! that answers an empty 200:
//!
//! - the handler alone, without the layer (what a request costs before
//!   latchkey is involved);
//! - through the layer with a valid token (decoding the header, the
//!   checksum, the SHA-256, the lookups, the `Principal` in the request's
//!   extensions);
//! - through the layer and `require_scope` with a valid restricted token;
//! - through the layer with an unknown token (the 401 answer made).
//!
//! After criterion's own report, a table gives each case's time and its
//! ratio to the floor, from batches of the cases taken in turns (robust to
//! a busy machine), and the layer's own cost: the valid case less the
//! handler alone.
//!
//! CI runs it quickly: `cargo bench -p latchkey-tower --bench layer -- --quick`.

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, Response, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use criterion::Criterion;
use latchkey_app::App;
use latchkey_core::account::{NewAccount, Plan, Subdomain};
use latchkey_core::scope::Scopes;
use latchkey_core::token::{NewToken, PlainToken, Restrictions, TokenHash, TokenPrefix};
use latchkey_core::user::{Email, NewUser, Role};
use latchkey_tower::{require_scope, Latchkey};
use tower::{Layer, ServiceExt};

const TOKENS: usize = 1_000;
const EMAIL: &str = "admin@bench.test";
const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10)), 40_000);

/// The database: one account with token access on, its admin, a valid
/// unrestricted token, a valid `tickets:read` token and 998 others.
async fn seed(url: &str) -> (PlainToken, PlainToken) {
    let app = App::open(url, TokenPrefix::default()).await.expect("open the database");
    app.create_account(
        NewAccount {
            subdomain: Subdomain::parse("bench").expect("a subdomain"),
            name: "Bench".into(),
            plan: Plan::Enterprise,
            api_token_access: true,
        },
        NewUser {
            name: "Admin".into(),
            email: Email::parse(EMAIL).expect("an email"),
            role: Role::Admin,
            verified: true,
            password_hash: None,
        },
    )
    .await
    .expect("create the account");
    let (access, _) = app.operator("bench").await.expect("operator access");
    let (_, valid) = app
        .create_token(&access, None, Restrictions::default())
        .await
        .expect("a token");
    let restricted = Restrictions {
        scopes: Some(Scopes::from_stored("tickets:read").expect("a scope")),
        ..Restrictions::default()
    };
    let (_, reader) = app.create_token(&access, None, restricted).await.expect("a token");
    let others = (2..TOKENS)
        .map(|_| {
            let plain = PlainToken::generate(&TokenPrefix::default());
            NewToken {
                hash: plain.hash(),
                visible_token: plain.visible(),
                description: None,
                active: true,
                user_id: None,
                restrictions: Restrictions::default(),
                created_at: None,
                last_used: None,
                legacy: false,
            }
        })
        .collect();
    app.import_tokens(&access, others)
        .await
        .expect("import the other tokens");
    (valid, reader)
}

fn basic(token: &PlainToken) -> String {
    format!("Basic {}", STANDARD.encode(format!("{EMAIL}/token:{}", token.expose())))
}

/// A request as a server hands it to the router: its header and its peer.
fn request(authorization: &str) -> Request<Body> {
    let mut req = Request::builder()
        .uri("/api/v2/tickets")
        .header(header::AUTHORIZATION, authorization)
        .body(Body::empty())
        .expect("a request");
    req.extensions_mut().insert(ConnectInfo(PEER));
    req
}

/// The trivial handler: an empty 200.
async fn handler(_req: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Body::empty()))
}

type Case<'a> = (&'static str, Box<dyn Fn() + 'a>);

/// The table's figures: the cases take turns in short batches, many rounds
/// over, and each keeps its median batch, so a burst of load from other
/// processes hits every case alike instead of skewing one.
fn paired(cases: &[Case<'_>]) -> Vec<f64> {
    const ROUNDS: usize = 51;
    const BATCH: u32 = 1_000;
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

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("latchkey.db").display());
    let (valid, reader) = rt.block_on(seed(&url));
    let latchkey = rt.block_on(async {
        Latchkey::builder(&url)
            // Every unknown-token request is a failed attempt from one address.
            .failed_auth_per_minute(u32::MAX)
            .open()
            .await
            .expect("open the verifier")
    });
    assert_eq!(latchkey.token_count(), TOKENS);

    let bare = tower::service_fn(handler);
    let layered = latchkey.layer().layer(tower::service_fn(handler));
    let scoped = latchkey
        .layer()
        .layer(require_scope("tickets:read").layer(tower::service_fn(handler)));
    let valid_auth = basic(&valid);
    let reader_auth = basic(&reader);
    let unknown_auth = basic(&PlainToken::generate(&TokenPrefix::default()));
    // The futures complete on their first poll: a current-thread block_on
    // adds the same small cost to every HTTP case.
    let local = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let send = |svc: &tower::util::BoxCloneService<Request<Body>, Response<Body>, Infallible>, auth: &str| {
        local
            .block_on(svc.clone().oneshot(request(auth)))
            .map(|r| r.status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    };
    let bare = tower::util::BoxCloneService::new(bare);
    let layered = tower::util::BoxCloneService::new(layered);
    let scoped = tower::util::BoxCloneService::new(scoped);
    assert_eq!(send(&bare, &valid_auth), StatusCode::OK);
    assert_eq!(send(&layered, &valid_auth), StatusCode::OK);
    assert_eq!(send(&scoped, &reader_auth), StatusCode::OK);
    assert_eq!(send(&layered, &unknown_auth), StatusCode::UNAUTHORIZED);

    let cases: Vec<Case<'_>> = vec![
        (
            "floor: SHA-256 of the token",
            Box::new(|| {
                black_box(TokenHash::of(black_box(valid.expose())));
            }),
        ),
        (
            "handler alone, no layer",
            Box::new(|| {
                black_box(send(&bare, black_box(&valid_auth)));
            }),
        ),
        (
            "layer, valid token",
            Box::new(|| {
                black_box(send(&layered, black_box(&valid_auth)));
            }),
        ),
        (
            "layer + require_scope, restricted",
            Box::new(|| {
                black_box(send(&scoped, black_box(&reader_auth)));
            }),
        ),
        (
            "layer, unknown token (401)",
            Box::new(|| {
                black_box(send(&layered, black_box(&unknown_auth)));
            }),
        ),
    ];
    let mut c = Criterion::default().configure_from_args();
    for (name, f) in &cases {
        c.bench_function(&format!("layer/{name}"), |b| b.iter(f));
    }
    c.final_summary();
    let medians = paired(&cases);
    println!("\nmedians of interleaved batches, same run ({TOKENS} tokens in SQLite):");
    println!("{:<36} {:>9}  {:>8}", "case", "ns/op", "x floor");
    for ((name, _), ns) in cases.iter().zip(&medians) {
        println!("{name:<36} {ns:>9.1}  {:>8.2}", ns / medians[0]);
    }
    let own = medians[2] - medians[1];
    println!(
        "{:<36} {own:>9.1}  {:>8.2}",
        "the layer's own cost (valid − alone)",
        own / medians[0]
    );
    rt.block_on(latchkey.shutdown());
}
