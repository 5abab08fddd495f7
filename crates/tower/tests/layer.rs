//! The layer, the `Principal` extractor and `require_scope` on a real
//! SQLite file: tokens are made by a second `App` on the same file, as
//! latchkey's CLI or a server would make them, and requests go through an
//! axum router with `tower::ServiceExt::oneshot`. (The same service beside
//! a real `latchkey serve` is tested in the `latchkey` crate's
//! integration tests, `tower_service`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use latchkey_app::{AdminAccess, App};
use latchkey_core::account::{NewAccount, Plan, Subdomain};
use latchkey_core::allowlist::IpAllowlist;
use latchkey_core::id::TokenId;
use latchkey_core::rate_limit::RateLimit;
use latchkey_core::scope::Scopes;
use latchkey_core::token::{PlainToken, Restrictions, TokenPatch, TokenPrefix};
use latchkey_core::user::{Email, NewUser, Role};
use latchkey_tower::{require_scope, IpNet, Latchkey, LatchkeyBuilder, Principal};
use serde_json::Value;
use tower::ServiceExt;

const EMAIL: &str = "jane@acme.test";
const NOT_AUTHENTICATED: &str = r#"{"error":"Couldn't authenticate you"}"#;

/// A fresh SQLite file with one account (token access on) and its admin,
/// and the operator's access to it, through a service layer of its own.
struct Db {
    _dir: tempfile::TempDir,
    url: String,
    app: App,
    access: AdminAccess,
}

impl Db {
    async fn new() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("latchkey.db").display());
        let app = App::open(&url, TokenPrefix::default()).await.unwrap();
        app.create_account(
            NewAccount {
                subdomain: Subdomain::parse("acme").unwrap(),
                name: "Acme".into(),
                plan: Plan::Enterprise,
                api_token_access: true,
            },
            NewUser {
                name: "Jane".into(),
                email: Email::parse(EMAIL).unwrap(),
                role: Role::Admin,
                verified: true,
                password_hash: None,
            },
        )
        .await
        .unwrap();
        let (access, _) = app.operator("acme").await.unwrap();
        Db {
            _dir: dir,
            url,
            app,
            access,
        }
    }

    /// A new token's id and its `Authorization` header for the admin.
    async fn token(&self, restrictions: Restrictions) -> (TokenId, String) {
        let (id, plain) = self.plain_token(restrictions).await;
        (id, basic(EMAIL, &plain))
    }

    async fn plain_token(&self, restrictions: Restrictions) -> (TokenId, String) {
        let (token, plain) = self.app.create_token(&self.access, None, restrictions).await.unwrap();
        (token.id, plain.expose().to_owned())
    }

    fn builder(&self) -> LatchkeyBuilder {
        Latchkey::builder(&self.url)
    }
}

fn basic(email: &str, token: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{email}/token:{token}")))
}

fn scoped(names: &str) -> Restrictions {
    Restrictions {
        scopes: Some(Scopes::from_stored(names).unwrap()),
        ..Restrictions::default()
    }
}

/// The example's shape: tickets by scope, the principal as JSON.
fn router(latchkey: &Latchkey) -> Router {
    Router::new()
        .route(
            "/api/v2/tickets",
            get(|| async { "tickets" }).route_layer(require_scope("tickets:read")),
        )
        .route(
            "/api/v2/tickets",
            post(|| async { "created" }).route_layer(require_scope("tickets:write")),
        )
        .route("/api/v2/me", get(|p: Principal| async move { Json(p) }))
        .layer(latchkey.layer())
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

async fn send(router: &Router, method: &str, path: &str, auth: Option<&str>, peer: &str) -> Reply {
    send_with(router, method, path, auth, peer, &[]).await
}

async fn send_with(
    router: &Router,
    method: &str,
    path: &str,
    auth: Option<&str>,
    peer: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(auth) = auth {
        req = req.header(header::AUTHORIZATION, auth);
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut req = req.body(Body::empty()).unwrap();
    let peer: SocketAddr = format!("{peer}:40000").parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(peer));
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    Reply {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

const PEER: &str = "192.0.2.10";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_reaches_the_handler_with_its_principal() {
    let db = Db::new().await;
    let (id, plain) = db.plain_token(Restrictions::default()).await;
    let auth = basic(EMAIL, &plain);
    let latchkey = db.builder().open().await.unwrap();
    let r = send(&router(&latchkey), "GET", "/api/v2/me", Some(&auth), PEER).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let me = r.json();
    assert_eq!(me["subdomain"], "acme");
    assert_eq!(me["email"], EMAIL);
    assert_eq!(me["role"], "admin");
    assert_eq!(me["token_id"], id.get());
    assert_eq!(me["scopes"], Value::Null, "unrestricted");
    assert!(me["account_id"].as_i64().unwrap() > 0 && me["user_id"].as_i64().unwrap() > 0);
    // The email matches without regard to case, as on the REST API.
    let shouting = basic(&EMAIL.to_uppercase(), &plain);
    assert_eq!(
        send(&router(&latchkey), "GET", "/api/v2/me", Some(&shouting), PEER)
            .await
            .status,
        200
    );
    latchkey.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_the_rest_apis_answers() {
    let db = Db::new().await;
    let (_, plain) = db.plain_token(Restrictions::default()).await;
    let latchkey = db.builder().open().await.unwrap();
    let app = router(&latchkey);
    let token = PlainToken::generate(&TokenPrefix::default());
    let unknown = basic(EMAIL, token.expose());
    let malformed = basic(EMAIL, "lk_nope");
    let stranger = basic("nobody@acme.test", &plain);
    for (case, auth) in [
        ("no Authorization", None),
        ("an unknown token", Some(unknown.as_str())),
        ("a malformed token", Some(malformed.as_str())),
        ("an email of nobody in the account", Some(stranger.as_str())),
        ("another scheme", Some("Digest abc")),
    ] {
        let r = send(&app, "GET", "/api/v2/me", auth, PEER).await;
        assert_eq!(r.status, 401, "{case}");
        assert_eq!(r.body, NOT_AUTHENTICATED, "{case}");
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Basic realm="latchkey""#),
            "{case}"
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/json; charset=utf-8"),
            "{case}"
        );
    }
    // The hints that follow from the request's own text.
    let hint = send(
        &app,
        "GET",
        "/api/v2/me",
        Some(&format!(
            "Basic {}",
            STANDARD.encode(format!("{EMAIL}:{}", token.expose()))
        )),
        PEER,
    )
    .await;
    assert_eq!(hint.status, 401);
    assert_eq!(
        hint.body,
        r#"{"error":"Couldn't authenticate you","description":"Use {email}/token as the user name when you authenticate with an API token."}"#
    );
    let bearer = send(
        &app,
        "GET",
        "/api/v2/me",
        Some(&format!("Bearer {}", token.expose())),
        PEER,
    )
    .await;
    assert_eq!(bearer.status, 401);
    assert_eq!(bearer.json()["error"], "invalid_token");
    assert!(bearer.json()["hint"].is_string());
    latchkey.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_scope_refuses_a_token_whose_scopes_do_not_cover_the_route() {
    let db = Db::new().await;
    let (_, reader) = db.token(scoped("tickets:read")).await;
    let (_, writer) = db.token(scoped("tickets")).await;
    let (_, global_read) = db.token(scoped("read")).await;
    let (_, users) = db.token(scoped("users:read")).await;
    let (_, full) = db.token(Restrictions::default()).await;
    let latchkey = db.builder().open().await.unwrap();
    let app = router(&latchkey);
    let refused = send(&app, "POST", "/api/v2/tickets", Some(&reader), PEER).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.header("x-latchkey-required-scope"), Some("tickets:write"));
    assert_eq!(
        refused.body,
        r#"{"error":"Forbidden","description":"This API token lacks the scope tickets:write."}"#
    );
    for (auth, method, want) in [
        (&reader, "GET", 200),
        (&writer, "GET", 200),
        (&writer, "POST", 200),
        (&global_read, "GET", 200),
        (&global_read, "POST", 403),
        (&users, "GET", 403),
        (&full, "GET", 200),
        (&full, "POST", 200),
    ] {
        let r = send(&app, method, "/api/v2/tickets", Some(auth), PEER).await;
        assert_eq!(r.status, want, "{method} {}", r.body);
    }
    // No scope named: any valid token, its scopes listed.
    let me = send(&app, "GET", "/api/v2/me", Some(&users), PEER).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["scopes"], serde_json::json!(["users:read"]));
    latchkey.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_by_another_process_is_applied_within_100_ms() {
    let db = Db::new().await;
    let (id, auth) = db.token(Restrictions::default()).await;
    let latchkey = db.builder().open().await.unwrap();
    let app = router(&latchkey);
    assert_eq!(send(&app, "GET", "/api/v2/me", Some(&auth), PEER).await.status, 200);
    // A token made after the verifier loaded is learnt from the change log.
    let (_, later) = db.token(Restrictions::default()).await;
    let made = Instant::now();
    while send(&app, "GET", "/api/v2/me", Some(&later), PEER).await.status != 200 {
        assert!(
            made.elapsed() < Duration::from_millis(100),
            "a new token took over 100 ms"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let patch = TokenPatch {
        active: Some(false),
        ..TokenPatch::default()
    };
    db.app.update_token(&db.access, id, &patch).await.unwrap();
    let committed = Instant::now();
    while send(&app, "GET", "/api/v2/me", Some(&auth), PEER).await.status != 401 {
        assert!(
            committed.elapsed() < Duration::from_millis(100),
            "a deactivation took over 100 ms"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    latchkey.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_touch_for_longer_than_the_max_staleness_every_request_is_503() {
    let db = Db::new().await;
    let (_, auth) = db.token(Restrictions::default()).await;
    // The change log is read every 10 s: after 50 ms, nothing vouches for memory.
    let latchkey = db
        .builder()
        .poll_interval(Duration::from_secs(10))
        .max_staleness(Duration::from_millis(50))
        .open()
        .await
        .unwrap();
    let app = router(&latchkey);
    assert!(!latchkey.is_stale());
    assert_eq!(send(&app, "GET", "/api/v2/me", Some(&auth), PEER).await.status, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(latchkey.is_stale());
    let r = send(&app, "GET", "/api/v2/me", Some(&auth), PEER).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(
        r.body,
        r#"{"error":"ServiceUnavailable","description":"This server has lost contact with its database and cannot verify credentials. Try again shortly."}"#
    );
    latchkey.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_limited_per_client_address() {
    let db = Db::new().await;
    let (_, auth) = db.token(Restrictions::default()).await;
    let latchkey = db.builder().failed_auth_per_minute(3).open().await.unwrap();
    let app = router(&latchkey);
    for _ in 0..3 {
        assert_eq!(send(&app, "GET", "/api/v2/me", None, PEER).await.status, 401);
    }
    // The address has used its minute: refused before any lookup, valid token or not.
    let r = send(&app, "GET", "/api/v2/me", Some(&auth), PEER).await;
    assert_eq!(r.status, 429);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        r.body,
        r#"{"error":"TooManyRequests","description":"Too many failed authentication attempts. Try again later."}"#
    );
    // Another client is not affected.
    assert_eq!(
        send(&app, "GET", "/api/v2/me", Some(&auth), "192.0.2.11").await.status,
        200
    );
    latchkey.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_token_gets_the_headers_and_then_429() {
    let db = Db::new().await;
    let limited = Restrictions {
        rate_limit: Some(RateLimit::new(2, 3600).unwrap()),
        ..scoped("tickets:read")
    };
    let (_, auth) = db.token(limited).await;
    let latchkey = db.builder().open().await.unwrap();
    let app = router(&latchkey);
    let first = send(&app, "GET", "/api/v2/tickets", Some(&auth), PEER).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-rate-limit"), Some("2"));
    assert_eq!(first.header("x-rate-limit-remaining"), Some("1"));
    assert_eq!(first.header("ratelimit-policy"), Some(r#""token";q=2;w=3600"#));
    assert!(first.header("ratelimit").unwrap().starts_with(r#""token";r=1;t="#));
    // A scope refusal counts and carries the headers too.
    let refused = send(&app, "POST", "/api/v2/tickets", Some(&auth), PEER).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.header("x-rate-limit-remaining"), Some("0"));
    let over = send(&app, "GET", "/api/v2/tickets", Some(&auth), PEER).await;
    assert_eq!(over.status, 429);
    assert!(over.header("retry-after").is_some());
    assert_eq!(over.header("x-rate-limit-remaining"), Some("0"));
    assert_eq!(over.json()["error"], "TooManyRequests");
    latchkey.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_client_is_read_from_its_headers() {
    let db = Db::new().await;
    let allowlisted = Restrictions {
        allowed_ips: Some(IpAllowlist::parse(&["203.0.113.5/32"]).unwrap()),
        ..Restrictions::default()
    };
    let (_, auth) = db.token(allowlisted).await;
    let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
    let latchkey = db.builder().trusted_proxies(proxies).open().await.unwrap();
    let app = router(&latchkey);
    let forwarded = [("x-forwarded-for", "1.2.3.4, 203.0.113.5")];
    let via_proxy = send_with(&app, "GET", "/api/v2/me", Some(&auth), "10.0.0.2", &forwarded).await;
    assert_eq!(via_proxy.status, 200, "{}", via_proxy.body);
    // The proxy's own address is not in the allowlist.
    assert_eq!(
        send(&app, "GET", "/api/v2/me", Some(&auth), "10.0.0.2").await.status,
        401
    );
    // A client that is no proxy cannot claim an address.
    let spoofed = send_with(&app, "GET", "/api/v2/me", Some(&auth), "198.51.100.9", &forwarded).await;
    assert_eq!(spoofed.status, 401);
    latchkey.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_by_path_check_the_configuration_files_resources() {
    let db = Db::new().await;
    let (_, users) = db.token(scoped("users:read")).await;
    let (_, reader) = db.token(scoped("tickets:read")).await;
    let config = db._dir.path().join("latchkey.toml");
    std::fs::write(
        &config,
        r#"
database_url = "sqlite://elsewhere.db"
listen = "0.0.0.0:8080"

[[resources]]
name = "tickets"
description = "Tickets and their comments"
paths = ["/api/v2/tickets", "/api/v2/tickets/**"]
"#,
    )
    .unwrap();
    let latchkey = db.builder().scopes_by_path_from_config(&config).open().await.unwrap();
    let app = Router::new()
        .route("/api/v2/tickets/{id}", get(|| async { "a ticket" }))
        .route("/api/v2/other", get(|| async { "other" }))
        .layer(latchkey.layer());
    assert_eq!(
        send(&app, "GET", "/api/v2/tickets/7", Some(&reader), PEER).await.status,
        200
    );
    let refused = send(&app, "GET", "/api/v2/tickets/7", Some(&users), PEER).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.header("x-latchkey-required-scope"), Some("tickets:read"));
    // A path no resource claims needs the global `read`.
    let unclaimed = send(&app, "GET", "/api/v2/other", Some(&reader), PEER).await;
    assert_eq!(unclaimed.header("x-latchkey-required-scope"), Some("read"));
    latchkey.shutdown().await;

    std::fs::write(
        &config,
        "[[resources]]\nname = \"Read\"\ndescription = \"x\"\npaths = [\"/x\"]\n",
    )
    .unwrap();
    let err = db
        .builder()
        .scopes_by_path_from_config(&config)
        .open()
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("config "), "{err}");
    std::fs::write(&config, "database_url = \"postgres://u:hunter2@db/x\" nonsense\n").unwrap();
    let err = db
        .builder()
        .scopes_by_path_from_config(&config)
        .open()
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_writes_last_used() {
    let db = Db::new().await;
    let (id, auth) = db.token(Restrictions::default()).await;
    let latchkey = db
        .builder()
        .flush_interval(Duration::from_secs(3600))
        .open()
        .await
        .unwrap();
    assert_eq!(
        send(&router(&latchkey), "GET", "/api/v2/me", Some(&auth), PEER)
            .await
            .status,
        200
    );
    let stored = db.app.token(&db.access, id).await.unwrap().unwrap();
    assert_eq!(stored.last_used, None, "not flushed yet");
    latchkey.shutdown().await;
    let stored = db.app.token(&db.access, id).await.unwrap().unwrap();
    assert!(stored.last_used.is_some(), "written at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_layer_the_principal_and_a_scope_are_a_500() {
    let app: Router = Router::new()
        .route("/me", get(|p: Principal| async move { Json(p) }))
        .route(
            "/scoped",
            get(|| async { "x" }).route_layer(require_scope("tickets:read")),
        );
    for path in ["/me", "/scoped"] {
        let r = send(&app, "GET", path, None, PEER).await;
        assert_eq!(r.status, 500, "{path}");
        assert_eq!(
            r.body,
            r#"{"error":"InternalError","description":"Something went wrong on our side."}"#
        );
    }
}

#[test]
#[should_panic(expected = "not a scope name")]
fn require_scope_refuses_a_malformed_name() {
    let _ = require_scope("tickets:wirte");
}
