//! docs/api.md, "Gateway verification" and "Operations": `/verify` for gateways (identity headers, every
//! failure exactly as in "When authentication fails", any method, 429 before any lookup), the
//! operator endpoints `/healthz`, `/readyz` and `/metrics`, and the promise
//! behind the hot path: verifying a request runs no database statement.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use latchkey_core::{token::TokenPatch, user::Role};
use reqwest::Method;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::support::*;

const TOO_MANY: &str =
    r#"{"error":"TooManyRequests","description":"Too many failed authentication attempts. Try again later."}"#;

async fn verify(t: &TestApp, method: Method, auth: Option<&str>) -> Reply {
    t.send(method, "/verify", auth, None).await
}

fn assert_spec_401(r: &Reply, case: &str) {
    assert_eq!(r.status, 401, "{case}");
    assert_eq!(r.text(), NOT_AUTHENTICATED, "{case}");
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Basic realm="latchkey""#),
        "{case}"
    );
    assert_eq!(r.header("content-type"), Some(JSON_CONTENT_TYPE), "{case}");
    // Repeated for gateways that drop a refusal's body (nginx).
    assert_eq!(r.header("x-latchkey-error-body"), Some(NOT_AUTHENTICATED), "{case}");
    for h in IDENTITY_HEADERS {
        assert!(r.header(h).is_none(), "{case}: a failure carries no {h}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_answers_200_with_the_identity_headers_and_no_body() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let agent = t.user(&a, Role::Agent, UserState::Verified).await;
    let token = t.token(&a).await;
    // The email is matched case-insensitively; the header shows it as stored.
    let r = verify(&t, Method::GET, Some(&basic(&agent.email.to_uppercase(), &token.plain))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body.is_empty(), "no body on success: {:?}", r.text());
    assert!(r.header("x-latchkey-error-body").is_none());
    let expected = [
        ("x-latchkey-account-id", a.id.to_string()),
        ("x-latchkey-account", a.subdomain.clone()),
        ("x-latchkey-user-id", agent.id.to_string()),
        ("x-latchkey-user-email", agent.email.clone()),
        ("x-latchkey-role", "agent".to_owned()),
        ("x-latchkey-token-id", token.id.to_string()),
        // Unrestricted: `*`, the user's full role (docs/api.md, "Gateway verification").
        ("x-latchkey-scopes", "*".to_owned()),
    ];
    for (name, value) in expected {
        assert_eq!(r.header(name), Some(value.as_str()), "{name}");
    }
    let admin = verify(&t, Method::GET, Some(&basic(&a.admin.email, &token.plain))).await;
    assert_eq!(admin.header("x-latchkey-role"), Some("admin"));
    assert_eq!(
        admin.header("x-latchkey-user-id"),
        Some(a.admin.id.to_string().as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_accepts_any_method() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await;
    for method in [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ] {
        let ok = verify(&t, method.clone(), Some(&auth)).await;
        assert_eq!(ok.status, 200, "{method}");
        assert_eq!(
            ok.header("x-latchkey-account-id"),
            Some(a.id.to_string().as_str()),
            "{method}"
        );
        let refused = verify(&t, method.clone(), Some(&basic(&a.admin.email, &unknown_token()))).await;
        assert_eq!(refused.status, 401, "{method}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_verify_failure_is_the_spec_401() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let token = t.token(&a).await;
    let deactivated = t.token(&a).await;
    t.app
        .update_token(
            &t.operator(&a.subdomain).await,
            deactivated.id,
            &TokenPatch {
                active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let unverified = t.user(&a, Role::Agent, UserState::Unverified).await;
    let suspended = t.user(&a, Role::Agent, UserState::Suspended).await;
    let deleted = t.user(&a, Role::Agent, UserState::Deleted).await;
    let b = t.account().await;
    let off = t.account().await;
    let off_token = t.token(&off).await;
    t.set_token_access(&off, false).await;

    let cases: Vec<(&str, Option<String>)> = vec![
        ("no credentials", None),
        ("unknown token", Some(basic(&a.admin.email, &unknown_token()))),
        (
            "bad checksum",
            Some(basic(&a.admin.email, &with_bad_checksum(&token.plain))),
        ),
        ("not a token", Some(basic(&a.admin.email, "hunter2"))),
        ("deactivated token", Some(basic(&a.admin.email, &deactivated.plain))),
        ("token access off", Some(basic(&off.admin.email, &off_token.plain))),
        ("unknown email", Some(basic("nobody@example.com", &token.plain))),
        ("another account's user", Some(basic(&b.admin.email, &token.plain))),
        ("unverified user", Some(basic(&unverified.email, &token.plain))),
        ("suspended user", Some(basic(&suspended.email, &token.plain))),
        ("deleted user", Some(basic(&deleted.email, &token.plain))),
        ("unknown scheme", Some(format!("Digest {}", token.plain))),
        ("undecodable basic", Some("Basic !!!not base64!!!".to_owned())),
    ];
    for (case, auth) in &cases {
        assert_spec_401(&verify(&t, Method::GET, auth.as_deref()).await, case);
    }

    // The syntactic hints of docs/api.md ("When authentication fails"), which depend on the request text alone.
    let r = verify(
        &t,
        Method::GET,
        Some(&basic_raw(&format!("{}:{}", a.admin.email, token.plain))),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.text(),
        r#"{"error":"Couldn't authenticate you","description":"Use {email}/token as the user name when you authenticate with an API token."}"#
    );
    let r = verify(&t, Method::GET, Some(&format!("Bearer {}", token.plain))).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some(r#"Basic realm="latchkey""#));
    assert_eq!(
        r.text(),
        r#"{"error":"invalid_token","error_description":"The access token provided is expired, revoked, malformed or invalid for other reasons.","hint":"This is an API token, not an OAuth access token. Send it with HTTP Basic authentication as {email}/token:{token}."}"#
    );
    let r = verify(&t, Method::GET, Some("Bearer abc")).await;
    assert_eq!(
        r.text(),
        r#"{"error":"invalid_token","error_description":"The access token provided is expired, revoked, malformed or invalid for other reasons."}"#
    );
    // Raw header bytes that are not UTF-8 are refused, not a 500.
    let mut request = format!("GET /verify HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic ", t.addr).into_bytes();
    request.extend_from_slice(b"\xff\xfe\r\nConnection: close\r\n\r\n");
    let raw = t.raw(&request).await;
    assert_eq!(raw.status, 401);

    // The same token still works: none of the failures changed anything.
    let ok = verify(&t, Method::GET, Some(&basic(&a.admin.email, &token.plain))).await;
    assert_eq!(ok.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_answers_429_before_any_lookup_once_an_address_has_failed_too_often() {
    let t = TestApp::spawn_with(|c| c.failed_auth_per_minute = 3).await;
    let a = t.account().await;
    let good = t.admin_auth(&a).await;
    assert_eq!(verify(&t, Method::GET, Some(&good)).await.status, 200);
    for _ in 0..3 {
        let r = verify(&t, Method::GET, Some(&basic(&a.admin.email, &unknown_token()))).await;
        assert_eq!(r.status, 401);
    }
    // Even valid credentials are refused now: the limit is checked first.
    for method in [Method::GET, Method::POST] {
        let r = verify(&t, method, Some(&good)).await;
        assert_eq!(r.status, 429);
        assert_eq!(r.text(), TOO_MANY);
        assert_eq!(r.header("x-latchkey-error-body"), Some(TOO_MANY));
        let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert!(r.header("x-latchkey-account-id").is_none());
    }
    let m = metrics(&t).await;
    assert_eq!(sample(&m, r#"latchkey_verifications_total{result="rate_limited"}"#), 2);
    assert_eq!(sample(&m, r#"latchkey_verifications_total{result="ok"}"#), 1);
    assert_eq!(sample(&m, r#"latchkey_verifications_total{result="unknown_token"}"#), 3);
}

async fn metrics(t: &TestApp) -> String {
    let r = t.send(Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.text()
}

/// The value of one sample line of a Prometheus exposition.
fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
        .parse::<f64>()
        .unwrap() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_verifications_by_result_with_their_latency() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let token = t.token(&a).await;
    let _second = t.token(&a).await;
    let before = metrics(&t).await;
    assert_eq!(sample(&before, "latchkey_verification_duration_seconds_count"), 0);
    assert!(before.contains("# TYPE latchkey_verifications_total counter"));
    assert!(before.contains("# TYPE latchkey_verification_duration_seconds histogram"));
    assert_eq!(sample(&before, "latchkey_tokens_in_memory"), 2);

    let good = basic(&a.admin.email, &token.plain);
    assert_eq!(verify(&t, Method::GET, Some(&good)).await.status, 200);
    assert_eq!(t.me_status(&good).await, 200);
    for auth in [
        Some(basic(&a.admin.email, &unknown_token())),
        Some(basic(&a.admin.email, &with_bad_checksum(&token.plain))),
        Some(format!("Bearer {}", token.plain)),
        None,
    ] {
        assert_eq!(verify(&t, Method::GET, auth.as_deref()).await.status, 401);
    }

    let after = metrics(&t).await;
    for (result, n) in [
        ("ok", 2),
        ("unknown_token", 1),
        ("malformed", 1),
        ("bearer", 1),
        ("missing", 1),
        ("token_inactive", 0),
        ("rate_limited", 0),
    ] {
        let name = format!(r#"latchkey_verifications_total{{result="{result}"}}"#);
        assert_eq!(sample(&after, &name), n, "{result}");
    }
    assert_eq!(sample(&after, "latchkey_verification_duration_seconds_count"), 6);
    assert_eq!(
        sample(&after, r#"latchkey_verification_duration_seconds_bucket{le="+Inf"}"#),
        6
    );
    // In memory, a verification takes microseconds, far under a second.
    assert_eq!(
        sample(&after, r#"latchkey_verification_duration_seconds_bucket{le="0.01"}"#),
        6
    );
    // The server follows the change log every few milliseconds.
    let age: f64 = after
        .lines()
        .find_map(|l| l.strip_prefix("latchkey_change_log_age_seconds "))
        .expect("change log age")
        .parse()
        .unwrap();
    assert!((0.0..5.0).contains(&age), "{age}");
    t.api_create_token(&good, None).await;
    assert_eq!(sample(&metrics(&t).await, "latchkey_tokens_in_memory"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_answer_without_credentials() {
    let t = TestApp::spawn().await;
    let h = t.send(Method::GET, "/healthz", None, None).await;
    assert_eq!((h.status, h.text().as_str()), (200, "ok"));
    let r = t.send(Method::GET, "/readyz", None, None).await;
    assert_eq!((r.status, r.text().as_str()), (200, "ready"));
}

// ---------------------------------------------------------------------------
// Counting database statements per request
// ---------------------------------------------------------------------------

/// sqlx logs every statement as an event of target `sqlx::query`, inside
/// the span of the request that ran it (the SQLite worker thread enters the
/// caller's span). This layer counts those events per request id, the id
/// the server's `request` span carries and the response echoes.
#[derive(Default)]
pub(crate) struct StatementCounter {
    pub(crate) by_request: Mutex<HashMap<String, usize>>,
}

struct RequestId(String);

struct FindRequestId(Option<String>);

impl Visit for FindRequestId {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "request_id" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

struct CountLayer(&'static StatementCounter);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for CountLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "request" {
            return;
        }
        let mut find = FindRequestId(None);
        attrs.record(&mut find);
        if let (Some(request_id), Some(span)) = (find.0, ctx.span(id)) {
            span.extensions_mut().insert(RequestId(request_id));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        let Some(scope) = ctx.event_scope(event) else { return };
        for span in scope {
            if let Some(RequestId(id)) = span.extensions().get::<RequestId>() {
                *self.0.by_request.lock().unwrap().entry(id.clone()).or_default() += 1;
                return;
            }
        }
    }
}

/// Installs the counting subscriber once for the whole test binary.
pub(crate) fn statement_counter() -> &'static StatementCounter {
    static COUNTER: OnceLock<&'static StatementCounter> = OnceLock::new();
    COUNTER.get_or_init(|| {
        let counter: &'static StatementCounter = Box::leak(Box::default());
        let filter = tracing_subscriber::filter::filter_fn(|meta| {
            meta.target() == "sqlx::query" || (meta.is_span() && meta.name() == "request")
        });
        let subscriber = tracing_subscriber::registry().with(CountLayer(counter).with_filter(filter));
        // If another module installed a global subscriber first, counting
        // fails and the control request below says so.
        let _ = tracing::subscriber::set_global_default(subscriber);
        counter
    })
}

pub(crate) fn request_id(r: &Reply) -> String {
    r.header("x-request-id").expect("x-request-id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_runs_no_database_statement() {
    let counter = statement_counter();
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let token = t.token(&a).await;
    let good = basic(&a.admin.email, &token.plain);

    // Control: listing tokens reads the database, so its statements must be
    // counted, or this test proves nothing.
    let control = t.get("/api/v2/api_tokens", &good).await;
    assert_eq!(control.status, 200);
    let control_id = request_id(&control);

    // A token with every restriction: scopes, an assigned user, an expiry, an allowlist, a rate limit;
    // asked about with the original request, allowed and refused.
    let (_, restricted) = t
        .api_create_token_with(
            &good,
            serde_json::json!({"scopes": ["tickets:read"], "assigned_user_id": a.admin.id,
                "expires_at": "2099-01-01T00:00:00Z", "allowed_ips": ["127.0.0.0/8", "::1"],
                "rate_limit": {"requests": 1_000_000, "per_seconds": 86_400}}),
        )
        .await;
    let bound = basic(&a.admin.email, &restricted);
    // A rate limit used up by its first request: the rest are 429s.
    let (_, limited) = t
        .api_create_token_with(
            &good,
            serde_json::json!({"rate_limit": {"requests": 1, "per_seconds": 86_400}}),
        )
        .await;
    let limited = basic(&a.admin.email, &limited);
    let mut ids = Vec::new();
    for i in 0..280 {
        let (auth, original, want) = match i % 7 {
            0 | 1 => (good.clone(), None, 200),
            2 => (basic(&a.admin.email, &unknown_token()), None, 401),
            3 => (basic("nobody@example.com", &token.plain), None, 401),
            4 => (bound.clone(), Some("GET"), 200),
            5 => (bound.clone(), Some("POST"), 403),
            _ => (limited.clone(), None, if i == 6 { 200 } else { 429 }),
        };
        let mut req = t.client.get(t.url("/verify")).header("authorization", &auth);
        if let Some(method) = original {
            req = req
                .header("x-original-method", method)
                .header("x-original-uri", "/api/v2/tickets/7.json?page=2");
        }
        let r = Reply::from(req.send().await.expect("verify")).await;
        assert_eq!(r.status, want, "case {}", i % 7);
        ids.push(request_id(&r));
    }
    let me = t.get("/api/v2/users/me", &good).await;
    assert_eq!(me.status, 200);
    ids.push(request_id(&me));

    // sqlx logs a statement when it finishes, on its worker thread.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counts = counter.by_request.lock().unwrap();
    let control_statements = counts.get(&control_id).copied().unwrap_or(0);
    assert!(
        control_statements > 0,
        "the control request's statements were not counted: is another global subscriber installed?"
    );
    let ran: Vec<(&String, usize)> = ids.iter().filter_map(|id| counts.get(id).map(|n| (id, *n))).collect();
    assert!(ran.is_empty(), "verifications ran database statements: {ran:?}");
}

/// SIGTERM behind a load balancer: `/readyz` answers 503 at once while
/// requests are still served for `--shutdown-grace`, then the server
/// drains and exits 0 (README.md, "Running several nodes").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readyz_503_for_the_grace_while_requests_are_still_served() {
    let db = test_database_url().await;
    let (_, email, token) = db.cli_account("enterprise").await;
    let auth = basic(&email, &token);
    let mut p = ServeProcess::start(&db.url, &["--shutdown-grace", "2"]).await;
    let c = client();
    let ready = |c: &reqwest::Client, url: String| {
        let req = c.get(url);
        async move {
            let r = req.send().await.expect("/readyz");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    assert_eq!(ready(&c, p.url("/readyz")).await, (200, "ready".to_owned()));
    let pid = p.child.id().expect("running").to_string();
    let signalled = std::time::Instant::now();
    let kill = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(kill.success());
    let deadline = signalled + std::time::Duration::from_secs(1);
    loop {
        let (status, body) = ready(&c, p.url("/readyz")).await;
        if status == 503 {
            assert_eq!(body, "shutting down");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz still {status} a second after SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Still serving: a request that a balancer already sent succeeds.
    let r = c
        .get(p.url("/api/v2/users/me"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(p.url("/verify"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), p.child.wait())
        .await
        .expect("exited within 30 s")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        signalled.elapsed() >= std::time::Duration::from_millis(1900),
        "served on for the grace"
    );
}

/// The log: `RUST_LOG` is honoured, `--log-format json` makes every line
/// JSON, a refused authentication is logged at info with its reason and
/// the client's address and never its token, and no colour codes are
/// written to a pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_authentication_is_logged_with_its_reason_never_its_token() {
    let db = test_database_url().await;
    let (_, email, token) = db.cli_account("enterprise").await;
    let deactivated = token.clone();
    let p = ServeProcess::start_with_env(
        &db.url,
        &["--log-format", "json"],
        &[("LATCHKEY_LOG", ""), ("RUST_LOG", "info")],
    )
    .await;
    let c = client();
    let unknown = unknown_token();
    for auth in [basic(&email, &unknown), basic(&email, &format!("{deactivated}x"))] {
        let r = c
            .get(p.url("/verify"))
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = c
        .get(p.url("/verify"))
        .header("authorization", basic(&email, &token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (code, log) = p.terminate_with_output().await;
    assert_eq!(code, 0);
    assert!(!log.contains('\u{1b}'), "no colour codes in a pipe: {log}");
    assert!(
        !log.contains(&unknown) && !log.contains(&token),
        "a token reached the log: {log}"
    );
    let mut refused = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["fields"]["message"] == "authentication refused" {
            assert_eq!(v["level"], "INFO", "{line}");
            assert_eq!(v["fields"]["client"], "127.0.0.1", "{line}");
            refused.push(v["fields"]["reason"].as_str().unwrap_or("").to_owned());
        }
    }
    assert_eq!(refused, ["unknown_token", "malformed"], "{log}");
}

/// `--metrics-listen` moves `/metrics` to an address of its own (the
/// public listener then answers 404), with the build in `latchkey_build_info`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_move_to_an_address_of_their_own() {
    let db = test_database_url().await;
    let p = ServeProcess::start(&db.url, &["--metrics-listen", "127.0.0.1:0"]).await;
    let at = p
        .banner
        .iter()
        .find_map(|l| l.strip_prefix("latchkey: metrics on "))
        .unwrap_or_else(|| panic!("no metrics line in {:?}", p.banner))
        .to_owned();
    let c = client();
    let r = c.get(&at).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let build = format!("latchkey_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    assert!(text.lines().any(|l| l == build), "{text}");
    assert!(text.contains("latchkey_verifications_total"), "{text}");
    // The serving process's own figures, read from /proc when scraped.
    if cfg!(target_os = "linux") {
        let rss = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .unwrap_or_else(|| panic!("no resident memory in\n{text}"));
        assert!(rss.parse::<f64>().unwrap() > 0.0, "{rss}");
    }
    assert!(text.contains("latchkey_db_pool_max_connections "), "{text}");
    assert_eq!(c.get(p.url("/metrics")).send().await.unwrap().status(), 404);
    assert_eq!(c.get(p.url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(p.terminate().await, 0);
}
