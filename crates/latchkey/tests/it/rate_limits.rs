//! Per-token rate limits (README.md, "IP allowlists and rate limits"):
//! exact windows on one node (against a clock the test moves), the 429 and
//! the four headers on every response for a limited token, validation,
//! audit, the CLI, and two nodes sharing one limit within 90–120% of it.

use std::time::Duration;

use latchkey_core::time::Timestamp;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

/// A time on a minute (and hour) boundary, so that windows of 60 and 3600
/// seconds start with it.
const T0: i64 = 1_800_000_000;

async fn verify(t: &TestApp, auth: &str) -> Reply {
    let sent = t.client.get(t.url("/verify")).header("authorization", auth).send();
    Reply::from(sent.await.expect("verify")).await
}

fn headers(r: &Reply) -> [Option<&str>; 4] {
    [
        "x-rate-limit",
        "x-rate-limit-remaining",
        "ratelimit-policy",
        "ratelimit",
    ]
    .map(|h| r.header(h))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_admits_exactly_the_limit_per_window_then_429_until_it_ends() {
    let clock = TestClock::at(Timestamp::from_unix(T0));
    let t = TestApp::spawn_with_clock(clock.clone(), |_| {}).await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let (id, token) = t
        .api_create_token_with(&admin, json!({"rate_limit": {"requests": 3, "per_seconds": 60}}))
        .await;
    let auth = basic(&a.admin.email, &token);

    let r = t.get("/api/v2/users/me", &auth).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        headers(&r),
        [
            Some("3"),
            Some("2"),
            Some("\"token\";q=3;w=60"),
            Some("\"token\";r=2;t=60")
        ]
    );
    // `/verify` counts against the same limit and answers the same headers.
    let r = verify(&t, &auth).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-rate-limit-remaining"), Some("1"));
    // The last second of the window: the third request, then a refusal.
    clock.advance(59);
    let r = t.get("/api/v2/users/me", &auth).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        headers(&r),
        [
            Some("3"),
            Some("0"),
            Some("\"token\";q=3;w=60"),
            Some("\"token\";r=0;t=1")
        ]
    );
    let r = t.get("/api/v2/users/me", &auth).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json()["error"], "TooManyRequests");
    assert_eq!(
        r.json()["description"],
        "This API token's rate limit of 3 per 60 seconds is used up. Try again in 1 seconds."
    );
    assert_eq!(headers(&r)[1], Some("0"));
    let r = verify(&t, &auth).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1"));
    // The next window's first second admits again.
    clock.advance(1);
    let r = t.get("/api/v2/users/me", &auth).await;
    assert_eq!(r.status, 200);
    assert_eq!(headers(&r)[3], Some("\"token\";r=2;t=60"));

    // Refusals are counted in the token's usage, under their reason.
    t.app.flush_usage().await.expect("flush");
    let r = t.get(&format!("/api/v2/api_tokens/{id}/usage?days=1"), &admin).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let usage = r.json()["usage"].clone();
    let total = |f: &dyn Fn(&Value) -> i64| usage.as_array().expect("hours").iter().map(f).sum::<i64>();
    assert_eq!(total(&|h| h["denied"]["rate_limited"].as_i64().unwrap_or(0)), 2);
    assert_eq!(total(&|h| h["allowed"].as_i64().unwrap_or(0)), 4);

    // A token without a limit carries none of the headers.
    assert_eq!(headers(&t.get("/api/v2/users/me", &admin).await), [None; 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_refusal_of_a_limited_token_counts_and_carries_the_headers() {
    let clock = TestClock::at(Timestamp::from_unix(T0));
    let t = TestApp::spawn_with_clock(clock.clone(), |_| {}).await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let (_, token) = t
        .api_create_token_with(
            &admin,
            json!({"scopes": ["users:read"], "rate_limit": {"requests": 2, "per_seconds": 3600}}),
        )
        .await;
    let auth = basic(&a.admin.email, &token);
    let r = t.get("/api/v2/api_tokens", &auth).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-latchkey-required-scope"), Some("api_tokens:read"));
    assert_eq!(headers(&r)[..2], [Some("2"), Some("1")]);
    assert_eq!(t.get("/api/v2/users/me", &auth).await.status, 200);
    assert_eq!(t.get("/api/v2/users/me", &auth).await.status, 429);
    // A failed authentication is not the token's: it never reaches the limit.
    let r = t.get("/api/v2/users/me", &basic("nobody@example.com", &token)).await;
    assert_eq!(r.status, 401);
    assert_eq!(headers(&r), [None; 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_validated_edited_audited_and_removed() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    for bad in [
        json!({"requests": 0, "per_seconds": 60}),
        json!({"requests": 1_000_001, "per_seconds": 60}),
        json!({"requests": 10, "per_seconds": 0}),
        json!({"requests": 10, "per_seconds": 86_401}),
        json!({"requests": -1, "per_seconds": 60}),
        json!({"requests": 1.5, "per_seconds": 60}),
        json!({"requests": "10", "per_seconds": 60}),
        json!({"requests": 10}),
        json!({"requests": 10, "per_seconds": 60, "burst": 5}),
        json!([10, 60]),
        json!("10/60"),
    ] {
        let r = t
            .post("/api/v2/api_tokens", &admin, &json!({"api_token": {"rate_limit": bad}}))
            .await;
        assert_eq!(r.status, 422, "{bad}: {}", r.text());
        assert_eq!(r.json()["details"]["rate_limit"][0]["error"], "InvalidValue", "{bad}");
    }
    let listed = t.get("/api/v2/api_tokens", &admin).await.json()["count"].clone();
    assert_eq!(listed, 1, "nothing was created");

    let (id, token) = t.api_create_token(&admin, Some("sync")).await;
    let auth = basic(&a.admin.email, &token);
    assert_eq!(
        t.get(&format!("/api/v2/api_tokens/{id}"), &admin).await.json()["api_token"]["rate_limit"],
        Value::Null
    );
    let r = t
        .put(
            &format!("/api/v2/api_tokens/{id}"),
            &admin,
            &json!({"api_token": {"rate_limit": {"requests": 1, "per_seconds": 86_400}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["api_token"]["rate_limit"],
        json!({"requests": 1, "per_seconds": 86_400})
    );
    // Applies from the next request.
    assert_eq!(t.get("/api/v2/users/me", &auth).await.status, 200);
    assert_eq!(t.get("/api/v2/users/me", &auth).await.status, 429);
    let r = t
        .put(
            &format!("/api/v2/api_tokens/{id}"),
            &admin,
            &json!({"api_token": {"rate_limit": null}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = t.get("/api/v2/users/me", &auth).await;
    assert_eq!(r.status, 200);
    assert_eq!(headers(&r), [None; 4]);
    let changes: Vec<String> = t
        .audit(a.id)
        .await
        .into_iter()
        .map(|e| e.change_description)
        .filter(|c| c.contains("rate_limit"))
        .collect();
    assert_eq!(
        changes,
        [
            "rate_limit changed from none to 1 per 86400 seconds",
            "rate_limit changed from 1 per 86400 seconds to none"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_and_lists_a_limited_token() {
    let db = test_database_url().await;
    let (subdomain, _, _) = db.cli_account("enterprise").await;
    let out = db
        .cli(&["token", "create", "--account", &subdomain, "--rate-limit", "2/3600"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = db.cli(&["token", "list", "--account", &subdomain, "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let list: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(list[0]["rate_limit"], "2/3600");
    for bad in ["0/60", "2/0", "2", "two/60", "2/86401"] {
        let out = db
            .cli(&["token", "create", "--account", &subdomain, "--rate-limit", bad])
            .await;
        assert_eq!(out.code, 2, "{bad}: {out:?}");
        assert!(out.stderr.contains("--rate-limit"), "{bad}: {}", out.stderr);
    }
}

/// Sends `per_second` requests a second, at a steady pace, for `windows`
/// whole windows of `per_seconds` after one window to settle; every tenth
/// request (of `to_b` in ten) goes to node `b`. Returns the requests
/// admitted in each measured window (by the client's clock, which is the
/// servers' clock).
async fn steady_load(
    a: &TestApp,
    b: &TestApp,
    auth: &str,
    per_second: u32,
    to_b: u32,
    per_seconds: u64,
    windows: u64,
) -> Vec<u32> {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
    };
    // Start on a window boundary; the first window settles the rates.
    let start_window = now().as_secs() / per_seconds + 1;
    let wait = Duration::from_secs(start_window * per_seconds).saturating_sub(now());
    tokio::time::sleep(wait).await;
    let end = Duration::from_secs((start_window + 1 + windows) * per_seconds);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second);
    let mut admitted = vec![0u32; windows as usize];
    let mut i = 0u32;
    loop {
        tick.tick().await;
        let sent_at = now();
        if sent_at >= end {
            break;
        }
        let node = if i % 10 < to_b { b } else { a };
        i += 1;
        let status = node
            .client
            .request(Method::GET, node.url("/verify"))
            .header("authorization", auth)
            .send()
            .await
            .expect("verify")
            .status()
            .as_u16();
        assert!(status == 200 || status == 429, "{status}");
        let window = sent_at.as_secs() / per_seconds;
        if status == 200 && window > start_window {
            admitted[(window - start_window - 1) as usize] += 1;
        }
    }
    admitted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_admit_between_90_and_120_percent_of_a_shared_limit_in_any_proportion() {
    let a = TestApp::spawn().await;
    let b = a.spawn_node(|_| {}).await;
    let account = a.account().await;
    let admin = a.admin_auth(&account).await;
    // 20 per 2 seconds, offered at twice that: 20 a second.
    let limit = 20u32;
    let (_, token) = a
        .api_create_token_with(&admin, json!({"rate_limit": {"requests": limit, "per_seconds": 2}}))
        .await;
    let auth = basic(&account.admin.email, &token);
    // The second node learns of the token through the change log.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while b.me_status(&auth).await != 200 {
        assert!(tokio::time::Instant::now() < deadline, "node b never saw the token");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (name, to_b) in [("50/50", 5), ("90/10", 1)] {
        let windows = 3u64;
        // Twice the limit's pace: 20 a second against 20 per 2 seconds.
        let admitted = steady_load(&a, &b, &auth, 20, to_b, 2, windows).await;
        let total: u32 = admitted.iter().sum();
        let want = limit * windows as u32;
        eprintln!("{name}: admitted {admitted:?} per window, {total} of {want}");
        assert!(
            total * 100 >= want * 90 && total * 100 <= want * 120,
            "{name}: admitted {total} over {windows} windows of {limit} ({admitted:?})"
        );
    }
}
