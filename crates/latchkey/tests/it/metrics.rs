//! `/metrics` beyond authentications (docs/api.md, "Operations: /healthz,
//! /readyz, /metrics"): HTTP requests by route template, method and status
//! with bounded labels under a flood of hostile paths and methods; the
//! database's failures as the server meets them (a table renamed behind its
//! back), 503s for staleness, `last_used` flush failures, resyncs, audit
//! events written, the pool; and the process's own figures. Through a real
//! server on a real database (SQLite, or PostgreSQL when
//! `LATCHKEY_TEST_DATABASE=postgres`).

use std::time::{Duration, Instant};

use latchkey_store::testing::Direct;
use reqwest::Method;

use crate::support::*;

async fn scrape(t: &TestApp) -> String {
    let r = t.send(Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status, 200);
    r.text()
}

/// The value of the sample `name` (with its labels), if present.
fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

fn sample(text: &str, name: &str) -> f64 {
    value(text, name).unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
}

fn database_errors(text: &str, operation: &str) -> f64 {
    sample(
        text,
        &format!(r#"latchkey_database_errors_total{{operation="{operation}"}}"#),
    )
}

/// Scrapes until `done` holds of the text, for at most ten seconds.
async fn scrape_until(t: &TestApp, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(t).await;
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "never: {what}\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_are_counted_by_route_template_method_and_status_never_by_path() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await;
    let one = t.token(&a).await;
    let two = t.token(&a).await;
    assert_eq!(
        t.get(&format!("/api/v2/api_tokens/{}", one.id), &auth).await.status,
        200
    );
    // The `.json` suffix is dropped before routing: the same route.
    assert_eq!(
        t.get(&format!("/api/v2/api_tokens/{}.json", two.id), &auth)
            .await
            .status,
        200
    );
    assert_eq!(t.get("/api/v2/api_tokens/987654321", &auth).await.status, 404);
    let good = basic(&a.admin.email, &one.plain);
    assert_eq!(t.send(Method::GET, "/verify", Some(&good), None).await.status, 200);
    assert_eq!(
        t.send(Method::GET, "/verify/tickets/7", Some(&good), None).await.status,
        200
    );

    // A flood of paths no route knows, some carrying what looks like a
    // secret, and methods nobody defined.
    let marker = unique("flood");
    for i in 0..1000 {
        let path = format!("/{marker}/{i}?token={}", one.plain);
        assert_eq!(t.send(Method::GET, &path, None, None).await.status, 404);
    }
    for (i, name) in ["BREW", "PROPFIND", "X-ANYTHING"].iter().enumerate() {
        let method = Method::from_bytes(name.as_bytes()).unwrap();
        let path = format!("/{marker}/m{i}");
        assert_eq!(t.send(method.clone(), &path, None, None).await.status, 404);
        let r = t
            .send(method, &format!("/api/v2/api_tokens/{}", one.id), Some(&auth), None)
            .await;
        assert_eq!(r.status, 405, "{name}");
    }

    let m = scrape(&t).await;
    let route = |route: &str, method: &str, status: u16| {
        format!(r#"latchkey_http_requests_total{{route="{route}",method="{method}",status="{status}"}}"#)
    };
    assert_eq!(sample(&m, &route("/api/v2/api_tokens/{id}", "GET", 200)), 2.0);
    assert_eq!(sample(&m, &route("/api/v2/api_tokens/{id}", "GET", 404)), 1.0);
    assert_eq!(sample(&m, &route("/api/v2/api_tokens/{id}", "other", 405)), 3.0);
    assert_eq!(sample(&m, &route("/verify", "GET", 200)), 1.0);
    assert_eq!(sample(&m, &route("/verify/{*path}", "GET", 200)), 1.0);
    assert_eq!(sample(&m, &route("unmatched", "GET", 404)), 1000.0);
    assert_eq!(sample(&m, &route("unmatched", "other", 404)), 3.0);
    // The flood made two series, not a thousand, and no path or secret
    // reached a label.
    let unmatched: Vec<_> = m
        .lines()
        .filter(|l| l.starts_with(r#"latchkey_http_requests_total{route="unmatched""#))
        .collect();
    assert_eq!(unmatched.len(), 2, "{unmatched:?}");
    assert!(!m.contains(&marker) && !m.contains(&one.plain), "{m}");
    assert!(!m.contains("BREW") && !m.contains(&format!("/{}", one.id)), "{m}");
    let series = m
        .lines()
        .filter(|l| l.starts_with("latchkey_http_requests_total{"))
        .count();
    assert!(series < 20, "{series} series:\n{m}");

    // The latency histogram, by route and method.
    let hist = r#"latchkey_http_request_duration_seconds"#;
    let labels = r#"route="/api/v2/api_tokens/{id}",method="GET""#;
    assert_eq!(sample(&m, &format!("{hist}_count{{{labels}}}")), 3.0);
    assert_eq!(sample(&m, &format!("{hist}_bucket{{{labels},le=\"+Inf\"}}")), 3.0);
    assert!(sample(&m, &format!("{hist}_sum{{{labels}}}")) > 0.0);
    assert_eq!(
        sample(&m, &format!("{hist}_count{{route=\"unmatched\",method=\"GET\"}}")),
        1000.0
    );
    assert!(m.contains("# TYPE latchkey_http_request_duration_seconds histogram"));
    assert!(m.contains("# TYPE latchkey_http_requests_total counter"));

    // The scrapes count too, under their own route.
    let again = scrape(&t).await;
    assert!(sample(&again, &route("/metrics", "GET", 200)) >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_failures_staleness_flushes_resyncs_and_audit_writes_are_counted() {
    let t = TestApp::spawn_with(|c| {
        c.flush_interval = Duration::from_millis(100);
        c.max_staleness = Duration::from_secs(1);
    })
    .await;
    let db: Direct = t.db.direct().await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await;
    let token = t.token(&a).await;
    let good = basic(&a.admin.email, &token.plain);

    let m = scrape(&t).await;
    for operation in [
        "follow",
        "flush_usage",
        "share_rate_limits",
        "sweep",
        "prune",
        "request",
    ] {
        assert_eq!(database_errors(&m, operation), 0.0, "{operation}");
    }
    for name in [
        "latchkey_stale_refusals_total",
        "latchkey_last_used_flush_failures_total",
        // The first load at start is not a resync.
        "latchkey_follower_resyncs_total",
    ] {
        assert_eq!(sample(&m, name), 0.0, "{name}");
    }
    // Every audit event in this fresh database was written by this process.
    let (_, _) = t.api_create_token(&auth, Some("counted")).await;
    let m = scrape(&t).await;
    let stored = db.scalar("SELECT COUNT(*) FROM audit_events", &[]).await;
    assert!(stored >= 4, "{stored}");
    assert_eq!(sample(&m, "latchkey_audit_events_written_total"), stored as f64);
    // The pool: at least the one connection it keeps open, at most its size.
    let idle = sample(&m, r#"latchkey_db_pool_connections{state="idle"}"#);
    let in_use = sample(&m, r#"latchkey_db_pool_connections{state="in_use"}"#);
    let max = sample(&m, "latchkey_db_pool_max_connections");
    assert_eq!(max, if db.is_postgres() { 16.0 } else { 8.0 });
    assert!(
        idle + in_use >= 1.0 && idle + in_use <= max,
        "{idle} + {in_use} of {max}"
    );

    // Hourly usage can no longer be written: each flush fails (and keeps
    // the uses), and a request that reads usage answers 500.
    db.execute("ALTER TABLE token_usage RENAME TO token_usage_gone", &[])
        .await;
    assert_eq!(t.send(Method::GET, "/verify", Some(&good), None).await.status, 200);
    let m = scrape_until(&t, "a failed flush", |m| {
        sample(m, "latchkey_last_used_flush_failures_total") >= 1.0
    })
    .await;
    assert!(database_errors(&m, "flush_usage") >= sample(&m, "latchkey_last_used_flush_failures_total"));
    let r = t.get(&format!("/api/v2/api_tokens/{}/usage", token.id), &auth).await;
    assert_eq!(r.status, 500, "{}", r.text());
    let m = scrape(&t).await;
    assert_eq!(database_errors(&m, "request"), 1.0);
    let failed = r#"latchkey_http_requests_total{route="/api/v2/api_tokens/{id}/usage",method="GET",status="500"}"#;
    assert_eq!(sample(&m, failed), 1.0);
    db.execute("ALTER TABLE token_usage_gone RENAME TO token_usage", &[])
        .await;

    // The change log can no longer be read: the follower's reads fail, and
    // past --max-staleness every authentication is refused with 503.
    db.execute("ALTER TABLE changes RENAME TO changes_gone", &[]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = t.send(Method::GET, "/verify", Some(&good), None).await;
        if r.status == 503 {
            break;
        }
        assert_eq!(r.status, 200);
        assert!(Instant::now() < deadline, "the node never went stale");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ok = r#"latchkey_verifications_total{result="ok"}"#;
    let verified = sample(&scrape(&t).await, ok);
    assert_eq!(t.get("/api/v2/users/me", &auth).await.status, 503);
    let m = scrape(&t).await;
    assert_eq!(sample(&m, "latchkey_stale_refusals_total"), 2.0);
    // A refusal for staleness is no authentication's result.
    assert_eq!(sample(&m, ok), verified);
    assert!(database_errors(&m, "follow") >= 1.0);
    assert!(sample(&m, "latchkey_change_log_age_seconds") > 1.0);
    assert_eq!(
        sample(
            &m,
            r#"latchkey_http_requests_total{route="/verify",method="GET",status="503"}"#
        ),
        1.0
    );

    db.execute("ALTER TABLE changes_gone RENAME TO changes", &[]).await;
    scrape_until(&t, "back in touch", |m| {
        sample(m, "latchkey_change_log_age_seconds") < 1.0
    })
    .await;
    assert_eq!(t.send(Method::GET, "/verify", Some(&good), None).await.status, 200);

    // A full reload counts as a resync.
    t.app.resync().await.unwrap();
    assert_eq!(sample(&scrape(&t).await, "latchkey_follower_resyncs_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_figures_are_plausible() {
    let t = TestApp::spawn().await;
    let m = scrape(&t).await;
    if !cfg!(target_os = "linux") {
        assert!(!m.contains("process_"), "{m}");
        return;
    }
    assert!(sample(&m, "process_resident_memory_bytes") > 1_000_000.0);
    assert!(sample(&m, "process_virtual_memory_bytes") >= sample(&m, "process_resident_memory_bytes"));
    // The listener and the database at least.
    assert!(sample(&m, "process_open_fds") >= 2.0);
    assert!(sample(&m, "process_max_fds") >= sample(&m, "process_open_fds"));
    assert!(sample(&m, "process_cpu_seconds_total") >= 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = sample(&m, "process_start_time_seconds");
    // The test binary started before this test, within the run.
    assert!(started <= now + 1.0 && started > now - 3600.0, "{started} vs {now}");
    assert!(m.contains("# TYPE process_cpu_seconds_total counter"));
}
