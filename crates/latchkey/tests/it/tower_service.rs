//! `latchkey-tower` beside a real `latchkey serve` on one database: the
//! example service (`examples/tower-service`, its very router, served on a
//! loopback port of this process with the peer's address recorded) verifies
//! the tokens the server makes, answers as the REST API does, and refuses a
//! token within 100 ms of the server acknowledging its deactivation. On
//! SQLite by default, on PostgreSQL in the suite's PostgreSQL run.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use latchkey_tower::Latchkey;
use serde_json::json;

use crate::support::*;

/// The deployment's `tickets` resource, so that the server can make
/// `tickets:*` tokens.
const CONFIG: &str = r#"
[[resources]]
name = "tickets"
description = "Tickets and their comments"
paths = ["/api/v2/tickets", "/api/v2/tickets/**"]
"#;

/// The example service on 127.0.0.1:<random port>, verifying in process.
struct ExampleService {
    addr: SocketAddr,
    latchkey: Latchkey,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ExampleService {
    async fn start(database_url: &str) -> ExampleService {
        let latchkey = Latchkey::builder(database_url).open().await.expect("open the verifier");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("an address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = latchkey_tower_example::router(latchkey.clone());
        let served = tokio::spawn(latchkey_tower_example::serve(listener, router, async {
            let _ = stopped.await;
        }));
        ExampleService {
            addr,
            latchkey,
            stop: Some(stop),
            served,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Drains the HTTP server, then writes `last_used` as a service's
    /// shutdown does.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.served.await.expect("the server task").expect("served");
        self.latchkey.shutdown().await;
    }
}

async fn send(client: &reqwest::Client, method: reqwest::Method, url: &str, auth: Option<&str>) -> Reply {
    let mut req = client.request(method, url);
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    Reply::from(req.send().await.expect("request")).await
}

async fn get(client: &reqwest::Client, url: &str, auth: Option<&str>) -> Reply {
    send(client, reqwest::Method::GET, url, auth).await
}

/// Polls `url` every 2 ms until it answers `want`; how long after `since`
/// that was, or `None` if not within 2 s.
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
async fn the_example_service_verifies_tokens_in_process_beside_a_real_server() {
    let db = test_database_url().await;
    let config = tempfile::tempdir().expect("temporary directory");
    let config_path = config.path().join("latchkey.toml");
    std::fs::write(&config_path, CONFIG).expect("write the configuration file");
    // An account and its admin's token, made by the CLI.
    let (subdomain, email, admin_token) = db.cli_account("team").await;
    let admin = basic(&email, &admin_token);
    let server = ServeProcess::start(&db.url, &["--config", config_path.to_str().expect("utf-8")]).await;
    let service = ExampleService::start(&db.url).await;
    let client = client();

    // A token restricted to reading tickets, made through the server's REST API.
    let made = client
        .post(server.url("/api/v2/api_tokens.json"))
        .header("authorization", &admin)
        .json(&json!({"api_token": {"description": "tickets reader", "scopes": ["tickets:read"]}}))
        .send()
        .await
        .expect("create a token");
    let made = Reply::from(made).await;
    assert_eq!(made.status, 201, "{}", made.text());
    let token_id = made.json()["api_token"]["id"].as_i64().expect("an id");
    let reader = basic(&email, made.json()["api_token"]["token"].as_str().expect("the token"));
    let created = Instant::now();

    // The example learns of it from the change log and accepts it: 200 with the principal.
    let me_url = service.url("/api/v2/me");
    let seen = until_status(&client, &me_url, &reader, 200, created)
        .await
        .expect("the example never accepted the server's new token");
    println!("a token made by the server was accepted by the example after {seen:?}");
    let me = get(&client, &me_url, Some(&reader)).await;
    assert_eq!(me.status, 200, "{}", me.text());
    let principal = me.json();
    assert_eq!(principal["subdomain"], subdomain.as_str());
    assert_eq!(principal["email"], email.as_str());
    assert_eq!(principal["role"], "admin");
    assert_eq!(principal["token_id"], token_id);
    assert_eq!(principal["scopes"], json!(["tickets:read"]));
    let admin_me = get(&client, &me_url, Some(&admin)).await.json();
    assert_eq!(admin_me["scopes"], serde_json::Value::Null, "an unrestricted token");
    assert_eq!(admin_me["account_id"], principal["account_id"]);

    // Scopes per route: reading is allowed, writing is the REST API's 403.
    let tickets = service.url("/api/v2/tickets");
    assert_eq!(get(&client, &tickets, Some(&reader)).await.status, 200);
    let refused = send(&client, reqwest::Method::POST, &tickets, Some(&reader)).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.header("x-latchkey-required-scope"), Some("tickets:write"));
    assert_eq!(
        refused.text(),
        r#"{"error":"Forbidden","description":"This API token lacks the scope tickets:write."}"#
    );
    let posted = send(&client, reqwest::Method::POST, &tickets, Some(&admin)).await;
    assert_eq!(posted.status, 201, "an unrestricted token writes");

    // A bad token, and no credentials at all: the REST API's 401.
    let bad = basic(&email, &unknown_token());
    for (case, auth) in [("a bad token", Some(bad.as_str())), ("no Authorization", None)] {
        let r = get(&client, &me_url, auth).await;
        assert_eq!(r.status, 401, "{case}");
        assert_eq!(r.text(), NOT_AUTHENTICATED, "{case}");
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Basic realm="latchkey""#),
            "{case}"
        );
    }

    // Deactivated through the server's REST API: the example refuses the
    // token within 100 ms of the server's acknowledgement.
    let deactivated = client
        .put(server.url(&format!("/api/v2/api_tokens/{token_id}.json")))
        .header("authorization", &admin)
        .json(&json!({"api_token": {"active": false}}))
        .send()
        .await
        .expect("deactivate the token");
    let acknowledged = Instant::now();
    assert_eq!(deactivated.status(), 200);
    let refused_after = until_status(&client, &me_url, &reader, 401, acknowledged)
        .await
        .expect("the example kept accepting a deactivated token");
    println!("the deactivation reached the example after {refused_after:?} (from the server's acknowledgement)");
    assert!(
        refused_after <= Duration::from_millis(100),
        "the example refused the deactivated token only after {refused_after:?}"
    );
    let r = get(&client, &me_url, Some(&reader)).await;
    assert_eq!((r.status, r.text()), (401, NOT_AUTHENTICATED.to_owned()));

    // The example's shutdown writes last_used, which the server then shows.
    service.stop().await;
    let shown = get(
        &client,
        &server.url(&format!("/api/v2/api_tokens/{token_id}.json")),
        Some(&admin),
    )
    .await;
    assert_eq!(shown.status, 200);
    assert!(
        shown.json()["api_token"]["last_used"].is_string(),
        "the example's uses reached the database: {}",
        shown.text()
    );
    server.kill().await;
}
