//! Restricted tokens (README.md, "Restricted tokens"; docs/api.md,
//! "Scopes"): scopes checked on latchkey's own API and at `/verify` (with
//! the original request read the nginx, Traefik and Envoy ways), tokens
//! bound to one user, expiry to the second, how edits are refused and
//! audited, and how fast a restriction reaches another node. Every test runs
//! on SQLite and on PostgreSQL.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latchkey_core::audit::Action;
use latchkey_core::id::TokenId;
use latchkey_core::time::Timestamp;
use latchkey_core::user::Role;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

const LACKS: &str = r#"{"error":"Forbidden","description":"This API token lacks the scope "#;

async fn create(t: &TestApp, admin: &str, fields: Value) -> (TokenId, String) {
    t.api_create_token_with(admin, fields).await
}

/// Asks `/verify` (or `path`) with `headers`.
async fn ask(t: &TestApp, method: Method, path: &str, auth: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = t.client.request(method, t.url(path)).header("authorization", auth);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Reply::from(req.send().await.expect("request")).await
}

fn assert_lacks(r: &Reply, scope: &str) {
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.text(), format!("{LACKS}{scope}.\"}}"));
    assert_eq!(r.header("x-latchkey-required-scope"), Some(scope));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_token_reads_and_every_write_is_refused_naming_the_scope() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let (_, token) = create(&t, &admin, json!({"scopes": ["users:read", "api_tokens:read"]})).await;
    let auth = basic(&a.admin.email, &token);
    // Reads of the resources it holds, with and without the `.json` suffix.
    for path in [
        "/api/v2/users/me",
        "/api/v2/users/me.json",
        "/api/v2/users",
        "/api/v2/api_tokens.json",
    ] {
        assert_eq!(t.get(path, &auth).await.status, 200, "{path}");
    }
    // The role allows these; the scopes do not.
    let r = t
        .post(
            "/api/v2/users",
            &auth,
            &json!({"user": {"name": "X", "email": "x@example.com", "role": "agent"}}),
        )
        .await;
    assert_lacks(&r, "users:write");
    assert_lacks(
        &t.post("/api/v2/api_tokens", &auth, &json!({})).await,
        "api_tokens:write",
    );
    assert_lacks(&t.get("/api/v2/account", &auth).await, "account:read");
    assert_lacks(&t.get("/api/v2/account/settings.json", &auth).await, "account:read");
    assert_lacks(&t.get("/api/v2/audit_logs", &auth).await, "auditlogs:read");
    // A path no resource claims needs `read`.
    assert_lacks(&t.get("/api/v2/scopes", &auth).await, "read");
    // Nothing was written by the refused requests.
    let list = t.get("/api/v2/api_tokens", &admin).await.json();
    assert_eq!(list["count"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_role_and_the_scopes_must_both_allow_a_request() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let agent = t.user(&a, Role::Agent, UserState::Verified).await;
    let (_, token) = create(&t, &admin, json!({"scopes": ["api_tokens", "users"]})).await;
    // The admin may manage tokens with it; an agent's role may not, whatever the scopes.
    assert_eq!(
        t.get("/api/v2/api_tokens", &basic(&a.admin.email, &token)).await.status,
        200
    );
    let r = t.get("/api/v2/api_tokens", &basic(&agent.email, &token)).await;
    assert_eq!(r.status, 403);
    assert!(r.header("x-latchkey-required-scope").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrestricted_token_behaves_as_zendesks_and_verify_says_star() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let token = t.token(&a).await;
    let auth = basic(&a.admin.email, &token.plain);
    for path in ["/api/v2/account", "/api/v2/scopes", "/api/v2/audit_logs"] {
        assert_eq!(t.get(path, &auth).await.status, 200, "{path}");
    }
    let r = ask(
        &t,
        Method::POST,
        "/verify",
        &auth,
        &[("x-original-method", "DELETE"), ("x-original-uri", "/api/v2/tickets/1")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-latchkey-scopes"), Some("*"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reads_the_original_request_the_nginx_traefik_and_envoy_ways() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let (_, token) = create(&t, &admin, json!({"scopes": ["tickets:read", "users:read"]})).await;
    let auth = basic(&a.admin.email, &token);
    let nginx = |m: &'static str, u: &'static str| vec![("x-original-method", m), ("x-original-uri", u)];
    let traefik = |m: &'static str, u: &'static str| vec![("x-forwarded-method", m), ("x-forwarded-uri", u)];
    for headers in [
        nginx("GET", "/api/v2/tickets/7.json?page=2"),
        traefik("GET", "/api/v2/tickets/7"),
    ] {
        let r = ask(&t, Method::GET, "/verify", &auth, &headers).await;
        assert_eq!(r.status, 200, "{headers:?}");
        assert_eq!(r.header("x-latchkey-scopes"), Some("tickets:read users:read"));
        assert!(r.header("x-latchkey-token-id").is_some());
    }
    for headers in [nginx("POST", "/api/v2/tickets"), traefik("PUT", "/api/v2/tickets/7")] {
        let r = ask(&t, Method::GET, "/verify", &auth, &headers).await;
        assert_lacks(&r, "tickets:write");
        assert!(
            r.header("x-latchkey-user-id").is_none(),
            "a refusal carries no identity"
        );
    }
    // nginx's pair wins over Traefik's when both are sent.
    let both = [
        ("x-original-method", "GET"),
        ("x-original-uri", "/api/v2/tickets"),
        ("x-forwarded-method", "POST"),
        ("x-forwarded-uri", "/api/v2/tickets"),
    ];
    assert_eq!(ask(&t, Method::GET, "/verify", &auth, &both).await.status, 200);
    // A pair without its method takes the request's own.
    assert_lacks(
        &ask(
            &t,
            Method::POST,
            "/verify",
            &auth,
            &[("x-original-uri", "/api/v2/tickets")],
        )
        .await,
        "tickets:write",
    );
    // Envoy: the path after /verify, with the request's own method.
    assert_eq!(
        ask(&t, Method::GET, "/verify/api/v2/tickets/7?x=1", &auth, &[])
            .await
            .status,
        200
    );
    assert_lacks(
        &ask(&t, Method::DELETE, "/verify/api/v2/tickets/7", &auth, &[]).await,
        "tickets:write",
    );
    assert_lacks(
        &ask(&t, Method::GET, "/verify/api/v2/organizations", &auth, &[]).await,
        "read",
    );
    // `..` never widens: tickets/../account is the account.
    assert_lacks(
        &ask(
            &t,
            Method::GET,
            "/verify",
            &auth,
            &nginx("GET", "/api/v2/tickets/../account"),
        )
        .await,
        "account:read",
    );
    assert_lacks(
        &ask(
            &t,
            Method::GET,
            "/verify",
            &auth,
            &nginx("GET", "/api/v2/tickets/%2e%2e/account"),
        )
        .await,
        "account:read",
    );
    // Without an original request, authentication alone; the upstream reads the scopes.
    let r = ask(&t, Method::POST, "/verify", &auth, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-latchkey-scopes"), Some("tickets:read users:read"));
    // A bad credential is the identical 401 whatever the original request.
    let r = ask(
        &t,
        Method::GET,
        "/verify",
        &basic("nobody@example.com", &token),
        &nginx("POST", "/api/v2/tickets"),
    )
    .await;
    assert_eq!((r.status, r.text()), (401, NOT_AUTHENTICATED.to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_list_what_the_deployment_offers_and_unknown_ones_are_refused() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let r = t.get("/api/v2/scopes.json", &admin).await;
    assert_eq!(r.status, 200);
    let names: Vec<String> = r.json()["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .map(|s| {
            assert!(s["description"].as_str().is_some_and(|d| !d.is_empty()), "{s}");
            s["name"].as_str().expect("name").to_owned()
        })
        .collect();
    for want in [
        "read",
        "write",
        "api_tokens:read",
        "users:write",
        "account",
        "auditlogs:read",
        "tickets",
        "tickets:write",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    for (bad, code) in [
        (json!(["invoices:read"]), "InvalidValue"),
        (json!(["tickets:delete"]), "InvalidValue"),
        (json!([]), "InvalidValue"),
        (json!("tickets"), "InvalidValue"),
        (json!([1]), "InvalidValue"),
    ] {
        let r = t
            .post("/api/v2/api_tokens", &admin, &json!({"api_token": {"scopes": bad}}))
            .await;
        assert_eq!(r.status, 422, "{bad}: {}", r.text());
        assert_eq!(r.json()["details"]["scopes"][0]["error"], code, "{bad}");
    }
    assert_eq!(
        t.get("/api/v2/api_tokens", &admin).await.json()["count"],
        1,
        "nothing was created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assigned_token_authenticates_only_its_user_and_only_while_that_user_may() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let jane = t.user(&a, Role::Agent, UserState::Verified).await;
    let bob = t.user(&a, Role::Agent, UserState::Verified).await;
    let (_, token) = create(&t, &admin, json!({"assigned_user_id": jane.id})).await;
    let as_jane = basic(&jane.email, &token);
    assert_eq!(t.me_status(&as_jane).await, 200);
    let r = t.get("/api/v2/users/me", &basic(&bob.email, &token)).await;
    assert_eq!(
        (r.status, r.text()),
        (401, NOT_AUTHENTICATED.to_owned()),
        "another user's email"
    );
    let user_path = format!("/api/v2/users/{}", jane.id);
    for (change, works) in [
        (json!({"suspended": true}), false),
        (json!({"suspended": false}), true),
        (json!({"verified": false}), false),
        (json!({"verified": true}), true),
    ] {
        assert_eq!(t.put(&user_path, &admin, &json!({"user": change})).await.status, 200);
        assert_eq!(
            t.me_status(&as_jane).await,
            if works { 200 } else { 401 },
            "after {change}"
        );
    }
    assert_eq!(t.delete(&user_path, &admin).await.status, 204);
    assert_eq!(t.me_status(&as_jane).await, 401, "after deletion");
    assert_eq!(t.me_status(&basic(&bob.email, &token)).await, 401);
    // Assigning to nobody makes it Zendesk's token again.
    let (id, token2) = create(&t, &admin, json!({"assigned_user_id": bob.id})).await;
    let r = t
        .put(
            &format!("/api/v2/api_tokens/{id}"),
            &admin,
            &json!({"api_token": {"assigned_user_id": null}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(t.me_status(&basic(&a.admin.email, &token2)).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_live_user_of_the_same_account_can_be_assigned() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let other = t.account().await;
    let admin = t.admin_auth(&a).await;
    let gone = t.user(&a, Role::Agent, UserState::Deleted).await;
    for id in [other.admin.id.get(), gone.id.get(), 999_999_999] {
        let r = t
            .post(
                "/api/v2/api_tokens",
                &admin,
                &json!({"api_token": {"assigned_user_id": id}}),
            )
            .await;
        assert_eq!(r.status, 422, "{id}: {}", r.text());
        assert_eq!(r.json()["details"]["assigned_user_id"][0]["error"], "InvalidValue");
    }
    for bad in [json!(0), json!(-3), json!("1"), json!(1.5)] {
        let r = t
            .post(
                "/api/v2/api_tokens",
                &admin,
                &json!({"api_token": {"assigned_user_id": bad}}),
            )
            .await;
        assert_eq!(r.status, 422, "{bad}: {}", r.text());
    }
    assert_eq!(
        t.get("/api/v2/api_tokens", &admin).await.json()["count"],
        1,
        "nothing was created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_gets_the_identical_401_from_its_second_on() {
    let clock = TestClock::at(Timestamp::from_unix(1_900_000_000));
    let t = TestApp::spawn_with_clock(clock.clone(), |_| {}).await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let at = Timestamp::from_unix(1_900_000_100);
    let (id, token) = create(&t, &admin, json!({"expires_at": at.rfc3339()})).await;
    let auth = basic(&a.admin.email, &token);
    clock.advance(99);
    assert_eq!(t.me_status(&auth).await, 200, "one second before");
    let unknown = t
        .get("/api/v2/users/me", &basic(&a.admin.email, &unknown_token()))
        .await;
    clock.advance(1);
    let expired = t.get("/api/v2/users/me", &auth).await;
    assert_eq!(
        (expired.status, expired.text()),
        (unknown.status, unknown.text()),
        "identical to an unknown token"
    );
    assert_eq!(expired.header("www-authenticate"), unknown.header("www-authenticate"));
    let r = ask(&t, Method::GET, "/verify", &auth, &[]).await;
    assert_eq!(r.status, 401);
    // The record says so.
    let rec = t.get(&format!("/api/v2/api_tokens/{id}"), &admin).await.json();
    assert_eq!(rec["api_token"]["status"], "expired");
    assert_eq!(rec["api_token"]["active"], true);
    assert_eq!(rec["api_token"]["expires_at"], at.rfc3339());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_moves_only_earlier_and_must_be_in_the_future() {
    let clock = TestClock::at(Timestamp::from_unix(1_900_000_000));
    let t = TestApp::spawn_with_clock(clock.clone(), |_| {}).await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let at = |secs: i64| Timestamp::from_unix(1_900_000_000 + secs).rfc3339();
    let past = t
        .post(
            "/api/v2/api_tokens",
            &admin,
            &json!({"api_token": {"expires_at": at(0)}}),
        )
        .await;
    assert_eq!(past.status, 422, "{}", past.text());
    assert_eq!(past.json()["details"]["expires_at"][0]["error"], "InvalidValue");
    let bad = t
        .post(
            "/api/v2/api_tokens",
            &admin,
            &json!({"api_token": {"expires_at": "tomorrow"}}),
        )
        .await;
    assert_eq!(bad.status, 422);
    let (id, _) = create(&t, &admin, json!({"expires_at": at(1_000)})).await;
    let path = format!("/api/v2/api_tokens/{id}");
    let set = |v: Value| json!({"api_token": {"expires_at": v}});
    for later in [json!(at(1_001)), Value::Null] {
        let r = t.put(&path, &admin, &set(later.clone())).await;
        assert_eq!(r.status, 422, "{later}: {}", r.text());
        assert_eq!(r.json()["details"]["expires_at"][0]["error"], "InvalidValue");
    }
    let earlier = t.put(&path, &admin, &set(json!(at(500)))).await;
    assert_eq!(earlier.status, 200, "{}", earlier.text());
    assert_eq!(earlier.json()["api_token"]["expires_at"], at(500));
    // An RFC 3339 time with an offset means the same instant.
    let offset = t.put(&path, &admin, &set(json!("2030-03-17T19:50:00+02:00"))).await;
    assert_eq!(offset.status, 200, "{}", offset.text());
    assert_eq!(offset.json()["api_token"]["expires_at"], "2030-03-17T17:50:00Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_restriction_change_is_audited_in_words() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let jane = t.user(&a, Role::Agent, UserState::Verified).await;
    let (id, _) = create(&t, &admin, json!({"description": "sync"})).await;
    let r = t
        .put(
            &format!("/api/v2/api_tokens/{id}"),
            &admin,
            &json!({"api_token": {"scopes": ["tickets:read"], "assigned_user_id": jane.id, "expires_at": "2031-01-01T00:00:00Z"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = t
        .put(
            &format!("/api/v2/api_tokens/{id}"),
            &admin,
            &json!({"api_token": {"scopes": ["tickets:read", "users:read"]}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let updates: Vec<String> = t
        .audit(a.id)
        .await
        .into_iter()
        .filter(|e| e.action == Action::Update && e.source_id == id.get())
        .map(|e| e.change_description)
        .collect();
    assert_eq!(
        updates,
        vec![
            format!(
                "scopes changed from full access to \"tickets:read\"; assigned user changed from anyone to {}; expires_at changed from never to 2031-01-01T00:00:00Z",
                jane.email
            ),
            r#"scopes changed from "tickets:read" to "tickets:read users:read""#.to_owned(),
        ]
    );
    // The same values again change nothing and record nothing.
    let same = t
        .put(
            &format!("/api/v2/api_tokens/{id}"),
            &admin,
            &json!({"api_token": {"scopes": ["tickets:read", "users:read"], "assigned_user_id": jane.id}}),
        )
        .await;
    assert_eq!(same.status, 200);
    assert_eq!(
        t.audit(a.id)
            .await
            .iter()
            .filter(|e| e.action == Action::Update && e.source_id == id.get())
            .count(),
        2
    );
    assert!(t.audit_chain_intact(a.id).await);
}

/// A restriction made on one node reaches another node on the same
/// database as a deactivation does: the node that made it refuses the very
/// next request, the other within the follower's bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrowed_scope_stops_writes_at_once_here_and_shortly_on_another_node() {
    let t = TestApp::spawn().await;
    let other = t.spawn_node(|_| {}).await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let (id, token) = create(&t, &admin, json!({"scopes": ["tickets"]})).await;
    let auth = basic(&a.admin.email, &token);
    let write = [("x-original-method", "POST"), ("x-original-uri", "/api/v2/tickets")];
    // The other node learns of the token first.
    let started = Instant::now();
    while ask(&other, Method::GET, "/verify", &auth, &write).await.status != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the other node never learned of the token"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = t
        .put(
            &format!("/api/v2/api_tokens/{id}"),
            &admin,
            &json!({"api_token": {"scopes": ["tickets:read"]}}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_lacks(&ask(&t, Method::GET, "/verify", &auth, &write).await, "tickets:write");
    let acked = Instant::now();
    while ask(&other, Method::GET, "/verify", &auth, &write).await.status != 403 {
        assert!(
            acked.elapsed() < Duration::from_secs(2),
            "the other node still lets writes through"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    eprintln!(
        "the other node refused writes {:?} after the change was acknowledged",
        acked.elapsed()
    );
}

/// A token narrowed from `tickets` to `tickets:read` while clients write
/// with it as fast as they can: no write that starts after the change is
/// acknowledged gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn narrowing_under_load_lets_no_write_through_after_the_acknowledgement() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let (id, token) = create(&t, &admin, json!({"scopes": ["tickets"]})).await;
    let auth = basic(&a.admin.email, &token);
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Option<Instant>>> = Arc::default();
    let (before, late) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (client, url, auth) = (t.client.clone(), t.url("/verify"), auth.clone());
        let (stop, acked, before, late) = (stop.clone(), acked.clone(), before.clone(), late.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let status = client
                    .get(&url)
                    .header("authorization", &auth)
                    .header("x-original-method", "PUT")
                    .header("x-original-uri", "/api/v2/tickets/42")
                    .send()
                    .await
                    .expect("verify")
                    .status()
                    .as_u16();
                let after_ack = acked.lock().expect("lock").is_some_and(|at| sent >= at);
                match (status, after_ack) {
                    (200, false) => before.fetch_add(1, Ordering::Relaxed),
                    (200, true) => late.fetch_add(1, Ordering::Relaxed),
                    (403, _) => 0,
                    (other, _) => panic!("unexpected {other}"),
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = t
        .put(
            &format!("/api/v2/api_tokens/{id}"),
            &admin,
            &json!({"api_token": {"scopes": ["tickets:read"]}}),
        )
        .await;
    assert_eq!(r.status, 200);
    *acked.lock().expect("lock") = Some(Instant::now());
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("client");
    }
    assert!(
        before.load(Ordering::Relaxed) > 0,
        "writes went through before the change"
    );
    assert_eq!(
        late.load(Ordering::Relaxed),
        0,
        "writes went through after the change was acknowledged"
    );
}

/// The CLI creates a restricted, bound, expiring token; `token list` shows
/// the restrictions; a running server picks the token up and enforces them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_restricted_tokens_and_lists_them() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let jane = t.user(&a, Role::Agent, UserState::Verified).await;
    let out = cli(
        &t.db.url,
        &[
            "token",
            "create",
            "--account",
            &a.subdomain,
            "--description",
            "reporting",
            "--scopes",
            "users:read,account:read",
            "--assigned-user",
            &jane.email.to_uppercase(),
            "--expires-at",
            "2031-06-30T12:00:00Z",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let token = out.stdout.trim().to_owned();
    let auth = basic(&jane.email, &token);
    let started = Instant::now();
    while t.me_status(&auth).await != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the server never picked the token up"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_lacks(&t.get("/api/v2/api_tokens", &auth).await, "api_tokens:read");
    assert_eq!(t.me_status(&basic(&a.admin.email, &token)).await, 401, "bound to Jane");

    let list = cli(&t.db.url, &["token", "list", "--account", &a.subdomain, "--json"]).await;
    assert_eq!(list.code, 0, "{}", list.stderr);
    let rows: Value = serde_json::from_str(&list.stdout).expect("json");
    let row = rows
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["description"] == "reporting")
        .expect("the token");
    assert_eq!(row["scopes"], json!(["users:read", "account:read"]));
    assert_eq!(row["assigned_user_id"], json!(jane.id));
    assert_eq!(row["expires_at"], "2031-06-30T12:00:00Z");
    assert_eq!(row["status"], "active");
    let table = cli(&t.db.url, &["token", "list", "--account", &a.subdomain]).await;
    assert!(table.stdout.contains("users:read account:read"), "{}", table.stdout);
    assert!(table.stdout.contains(&jane.email), "{}", table.stdout);
    assert!(table.stdout.contains("2031-06-30T12:00:00Z"), "{}", table.stdout);

    for (args, why) in [
        (vec!["--scopes", "tickets:read"], "is not a scope"),
        (vec!["--assigned-user", "nobody@example.com"], "no user"),
        (vec!["--expires-at", "2001-01-01T00:00:00Z"], "in the future"),
    ] {
        let mut all = vec!["token", "create", "--account", a.subdomain.as_str()];
        all.extend(args);
        let out = cli(&t.db.url, &all).await;
        assert_eq!(out.code, 1, "{all:?}: {}", out.stderr);
        assert!(out.stderr.contains(why), "{all:?}: {}", out.stderr);
        assert!(out.stdout.is_empty());
    }
    let bad_time = cli(
        &t.db.url,
        &["token", "create", "--account", &a.subdomain, "--expires-at", "soon"],
    )
    .await;
    assert_eq!(bad_time.code, 2, "{}", bad_time.stderr);
}

/// IP allowlists (README.md, "IP allowlists and rate limits"): a token works only from
/// inside its networks, with the client address read as everywhere else
/// (the peer, or `X-Forwarded-For` from a trusted proxy); from elsewhere
/// the identical 401, on the REST API and at `/verify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowlisted_token_works_only_from_inside_its_networks() {
    let t = TestApp::spawn_with(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")]).await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let (id, token) = create(&t, &admin, json!({"allowed_ips": ["192.0.2.0/24", "2001:db8::/32"]})).await;
    let auth = basic(&a.admin.email, &token);
    let from = |ip: &'static str| vec![("x-forwarded-for", ip)];
    for (ip, want) in [
        ("192.0.2.7", 200),
        ("2001:db8::5", 200),
        ("::ffff:192.0.2.9", 200),
        ("198.51.100.1", 401),
        ("2001:db9::1", 401),
    ] {
        let r = ask(&t, Method::GET, "/api/v2/users/me", &auth, &from(ip)).await;
        assert_eq!(r.status, want, "{ip}: {}", r.text());
        let v = ask(&t, Method::GET, "/verify", &auth, &from(ip)).await;
        assert_eq!(v.status, want, "/verify from {ip}");
        if want == 401 {
            assert_eq!(r.text(), NOT_AUTHENTICATED, "the identical 401");
        }
    }
    // The chain is walked from the right past trusted hops: a client's
    // own entry at the left changes nothing; Forwarded and X-Real-IP are read
    // when there is no X-Forwarded-For (README.md, "Client addresses").
    for (headers, want) in [
        (vec![("x-forwarded-for", "192.0.2.7, 127.0.0.1")], 200),
        (
            vec![("x-forwarded-for", "192.0.2.7"), ("x-forwarded-for", "198.51.100.1")],
            401,
        ),
        (vec![("x-forwarded-for", "198.51.100.1, 192.0.2.7")], 200),
        (vec![("x-forwarded-for", "192.0.2.7, 198.51.100.1")], 401),
        (vec![("forwarded", "for=192.0.2.7;proto=https")], 200),
        (vec![("forwarded", "for=\"[2001:db8::5]:4711\"")], 200),
        (vec![("x-real-ip", "192.0.2.7")], 200),
        (vec![("x-real-ip", "198.51.100.1")], 401),
        (
            vec![("x-real-ip", "192.0.2.7"), ("x-forwarded-for", "198.51.100.1")],
            401,
        ),
    ] {
        let r = ask(&t, Method::GET, "/api/v2/users/me", &auth, &headers).await;
        assert_eq!(r.status, want, "{headers:?}: {}", r.text());
    }
    // The loopback peer itself is outside the list.
    assert_eq!(t.me_status(&auth).await, 401);
    let rec = t.get(&format!("/api/v2/api_tokens/{id}"), &admin).await.json();
    assert_eq!(
        rec["api_token"]["allowed_ips"],
        json!(["192.0.2.0/24", "2001:db8::/32"])
    );
    // Lifting it restores the token everywhere; the change is audited.
    let r = t
        .put(
            &format!("/api/v2/api_tokens/{id}"),
            &admin,
            &json!({"api_token": {"allowed_ips": null}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(t.me_status(&auth).await, 200);
    let change = t
        .audit(a.id)
        .await
        .into_iter()
        .rev()
        .find(|e| e.action == Action::Update && e.source_id == id.get())
        .expect("audited")
        .change_description;
    assert_eq!(
        change,
        r#"allowed_ips changed from "192.0.2.0/24 2001:db8::/32" to any address"#
    );
    for bad in [
        json!(["10.0.0.0/33"]),
        json!(["example.com"]),
        json!([]),
        json!("10.0.0.0/8"),
    ] {
        let r = t
            .post(
                "/api/v2/api_tokens",
                &admin,
                &json!({"api_token": {"allowed_ips": bad}}),
            )
            .await;
        assert_eq!(r.status, 422, "{bad}: {}", r.text());
        assert_eq!(r.json()["details"]["allowed_ips"][0]["error"], "InvalidValue", "{bad}");
    }
}
