//! README.md, "Running several nodes", and ARCHITECTURE.md, "Invariants",
//! with the real binary: an acknowledged change survives
//! SIGKILL with its audit event, a change made by another process reaches a
//! running server within 100 ms, and `last_used` reaches the database by
//! the flusher and on a graceful stop without a write per request.

use std::time::{Duration, Instant};

use latchkey_core::audit::first_broken;
use latchkey_store::Store;
use serde_json::json;

use crate::support::*;

/// The database as it was left, read below the service layer.
async fn open(db: &TestDatabase) -> Store {
    latchkey_store::open(&db.url).await.expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_acknowledged_before_sigkill_survive_with_their_audit_events() {
    let db = test_database_url().await;
    let (subdomain, email, admin_token) = db.cli_account("team").await;
    let auth = basic(&email, &admin_token);
    let server = ServeProcess::start(&db.url, &[]).await;
    let client = client();

    // One create acknowledged for sure, then a stream of creates that the
    // kill cuts off mid-flight.
    let first = client
        .post(server.url("/api/v2/api_tokens"))
        .header("authorization", &auth)
        .json(&json!({"api_token": {"description": "acknowledged"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    let first: serde_json::Value = first.json().await.unwrap();
    let first_id = first["api_token"]["id"].as_i64().unwrap();
    let first_token = first["api_token"]["token"].as_str().unwrap().to_owned();

    let stream = {
        let (client, url, auth) = (client.clone(), server.url("/api/v2/api_tokens"), auth.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..200 {
                let Ok(r) = client
                    .post(&url)
                    .header("authorization", &auth)
                    .json(&json!({"api_token": {"description": format!("stream {i}")}}))
                    .send()
                    .await
                else {
                    break;
                };
                if r.status() != 201 {
                    break;
                }
                let Ok(v) = r.json::<serde_json::Value>().await else {
                    break;
                };
                acked.push((
                    v["api_token"]["id"].as_i64().unwrap(),
                    v["api_token"]["token"].as_str().unwrap().to_owned(),
                ));
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.kill().await;
    let acked = stream.await.unwrap();
    println!("{} creates were acknowledged before SIGKILL", acked.len());

    let restarted = ServeProcess::start(&db.url, &[]).await;
    assert!(restarted
        .banner
        .iter()
        .all(|l| !l.contains("created the first account")));
    let status = get_status(
        &client,
        &restarted.url("/api/v2/users/me"),
        &basic(&email, &first_token),
    )
    .await;
    assert_eq!(status, 200, "the acknowledged token authenticates after the restart");
    for (_, token) in &acked {
        assert_eq!(
            get_status(&client, &restarted.url("/api/v2/users/me"), &basic(&email, token)).await,
            200
        );
    }

    let app = open(&db).await;
    let account = app.account_by_subdomain(&subdomain).await.unwrap().unwrap();
    let chain = app.audit_chain(account.id).await.unwrap();
    assert!(first_broken(chain.iter().map(|(e, h)| (e, *h))).is_none());
    let created: std::collections::HashSet<i64> = chain
        .iter()
        .filter(|(e, _)| e.action.as_str() == "create" && e.source_type.as_str() == "api_token")
        .map(|(e, _)| e.source_id)
        .collect();
    assert!(created.contains(&first_id), "the acknowledged create has its event");
    for (id, _) in &acked {
        assert!(created.contains(id), "token {id} was acknowledged but has no event");
    }
    // And no change without its event: every stored token has one.
    for t in app.tokens(account.id).await.unwrap() {
        assert!(created.contains(&t.id.get()), "token {} has no create event", t.id);
    }
    let out = db.cli(&["audit", "verify", "--account", &subdomain]).await;
    assert_eq!(out.code, 0, "{out:?}");
    restarted.kill().await;
}

/// How long after `since` the server first answered `want`; `None` if not
/// within 2 s.
async fn until_status(client: &reqwest::Client, url: &str, auth: &str, want: u16, since: Instant) -> Option<Duration> {
    while since.elapsed() < Duration::from_secs(2) {
        if get_status(client, url, auth).await == want {
            return Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_created_with_the_cli_authenticates_on_a_running_server_within_100_ms() {
    let db = test_database_url().await;
    let (subdomain, email, _) = db.cli_account("team").await;
    let server = ServeProcess::start(&db.url, &[]).await;
    let client = client();
    let url = server.url("/api/v2/users/me");
    // Several rounds, judged by the median, so one slow moment on a busy
    // machine does not decide; every round must succeed within 2 s.
    let mut latencies = Vec::new();
    let mut auth = String::new();
    for _ in 0..5 {
        let out = db.cli(&["token", "create", "--account", &subdomain]).await;
        let committed = Instant::now();
        assert_eq!(out.code, 0, "{out:?}");
        auth = basic(&email, out.stdout.trim());
        let seen = until_status(&client, &url, &auth, 200, committed)
            .await
            .expect("the server never accepted the CLI's token");
        latencies.push(seen);
    }
    latencies.sort();
    println!("tokens created by the CLI authenticated on the server after {latencies:?} (from the CLI's exit)");
    assert!(latencies[2] < Duration::from_millis(100), "median {:?}", latencies[2]);

    // A setting changed by the CLI reaches the server the same way.
    let out = db
        .cli(&[
            "account",
            "update",
            "--subdomain",
            &subdomain,
            "--api-token-access",
            "off",
        ])
        .await;
    let committed = Instant::now();
    assert_eq!(out.code, 0, "{out:?}");
    let refused = until_status(&client, &url, &auth, 401, committed).await;
    let refused = refused.expect("the server kept accepting tokens after access was turned off");
    println!("turning token access off with the CLI reached the server after {refused:?}");
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivation_through_a_server_process_fails_the_very_next_request() {
    let db = test_database_url().await;
    let (_, email, admin_token) = db.cli_account("team").await;
    let server = ServeProcess::start(&db.url, &[]).await;
    let client = client();
    let admin = basic(&email, &admin_token);
    let r = client
        .post(server.url("/api/v2/api_tokens.json"))
        .header("authorization", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: serde_json::Value = r.json().await.unwrap();
    let id = v["api_token"]["id"].as_i64().unwrap();
    let auth = basic(&email, v["api_token"]["token"].as_str().unwrap());
    let me = server.url("/api/v2/users/me");
    assert_eq!(get_status(&client, &me, &auth).await, 200);
    let r = client
        .put(server.url(&format!("/api/v2/api_tokens/{id}")))
        .header("authorization", &admin)
        .json(&json!({"api_token": {"active": false}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get_status(&client, &me, &auth).await, 401);
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_used_shows_at_once_and_the_flusher_writes_it_in_the_background() {
    let t = TestApp::spawn_with(|c| c.flush_interval = Duration::from_millis(200)).await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let tok = t.token(&a).await;
    let path = format!("/api/v2/api_tokens/{}", tok.id);
    assert_eq!(
        t.get(&path, &admin).await.json()["api_token"]["last_used"],
        serde_json::Value::Null
    );
    assert_eq!(t.me_status(&basic(&a.admin.email, &tok.plain)).await, 200);
    let shown = t.get(&path, &admin).await.json()["api_token"]["last_used"].clone();
    assert!(shown.is_string(), "last_used shows at once: {shown}");
    let started = Instant::now();
    loop {
        let stored = t.store().await.token(a.id, tok.id).await.unwrap().unwrap().last_used;
        if stored.is_some() {
            println!("last_used reached the database after {:?}", started.elapsed());
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the flusher never wrote last_used"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_write_nothing_until_a_graceful_stop_flushes_last_used() {
    let mut t = TestApp::spawn_with(|c| c.flush_interval = Duration::from_secs(3600)).await;
    let a = t.account().await;
    let tok = t.token(&a).await;
    for _ in 0..20 {
        assert_eq!(t.me_status(&basic(&a.admin.email, &tok.plain)).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stored = t.store().await.token(a.id, tok.id).await.unwrap().unwrap();
    assert_eq!(stored.last_used, None, "a request wrote to the database");
    assert_eq!(stored.updated_at, stored.created_at);
    t.stop().await;
    let stored = t.store().await.token(a.id, tok.id).await.unwrap().unwrap();
    let used = stored.last_used.expect("the graceful stop flushed last_used");
    assert!(used >= stored.created_at && used <= t.app.now());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_the_binary_flushes_last_used_before_exit() {
    let db = test_database_url().await;
    let (subdomain, email, token) = db.cli_account("team").await;
    let server = ServeProcess::start(&db.url, &["--flush-interval-secs", "3600"]).await;
    let client = client();
    assert_eq!(
        get_status(&client, &server.url("/api/v2/users/me"), &basic(&email, &token)).await,
        200
    );
    assert_eq!(server.terminate().await, 0);
    let out = db.cli(&["token", "list", "--account", &subdomain, "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let list: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(list[0]["last_used"].is_string(), "{list}");
}
