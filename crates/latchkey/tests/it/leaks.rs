//! Leaked tokens (README.md, "Leaked tokens"): the unauthenticated
//! revocation endpoint, GitHub's signed secret-scanning reports (with a key
//! pair made in the test) and `latchkey token revoke-leaked`. Every match
//! is deactivated and audited by `system` as `reported leaked`; garbage is
//! ignored. Both databases.

use base64::Engine as _;
use latchkey_core::audit::{Action, ActorType};
use latchkey_core::id::TokenId;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::{json, Value};

use crate::support::*;

const KEY_ID: &str = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a";

fn key_pair() -> (SigningKey, String) {
    let signing = SigningKey::random(&mut rand::rngs::OsRng);
    let pem = signing.verifying_key().to_public_key_pem(LineEnding::LF).expect("PEM");
    (signing, pem)
}

fn sign(key: &SigningKey, body: &[u8]) -> String {
    let signature: Signature = key.sign(body);
    base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
}

async fn report(t: &TestApp, key_id: &str, signature: &str, body: &[u8]) -> Reply {
    let r = t
        .client
        .post(t.url("/operator/v1/secret_scanning/github"))
        .header("content-type", "application/json")
        .header("github-public-key-identifier", key_id)
        .header("github-public-key-signature", signature)
        .body(body.to_vec())
        .send()
        .await
        .expect("report");
    Reply::from(r).await
}

async fn leak_events(t: &TestApp, account: &TestAccount, id: TokenId) -> Vec<(Action, String)> {
    t.audit(account.id)
        .await
        .into_iter()
        .filter(|e| e.source_id == id.get() && e.actor_type == ActorType::System)
        .map(|e| (e.action, e.change_description))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anyone_can_revoke_a_found_token_and_learns_nothing() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let (active, active_plain) = t.api_create_token_with(&admin, json!({"description": "leaky"})).await;
    let (inactive, inactive_plain) = t.api_create_token_with(&admin, json!({})).await;
    let (other, _) = t.api_create_token_with(&admin, json!({})).await;
    let r = t
        .put(
            &format!("/api/v2/api_tokens/{inactive}"),
            &admin,
            &json!({"api_token": {"active": false}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let body = json!({"credentials": [active_plain, inactive_plain, "not a token", unknown_token(), ""]});
    let r = t
        .send(reqwest::Method::POST, "/api/v2/credentials/revoke", None, Some(&body))
        .await;
    assert_eq!((r.status, r.text()), (202, "{}".to_owned()));
    // Garbage alone gets the very same answer.
    let r = t
        .send(
            reqwest::Method::POST,
            "/api/v2/credentials/revoke",
            None,
            Some(&json!({"credentials": ["x"]})),
        )
        .await;
    assert_eq!((r.status, r.text()), (202, "{}".to_owned()));
    assert_eq!(
        t.me_status(&basic(&a.admin.email, &active_plain)).await,
        401,
        "dead before anyone uses it"
    );
    assert_eq!(
        leak_events(&t, &a, active).await,
        vec![(Action::Deactivate, "reported leaked".to_owned())]
    );
    assert_eq!(
        leak_events(&t, &a, inactive).await,
        vec![(Action::Update, "reported leaked".to_owned())]
    );
    // Both records say when they were reported; a token never reported says null.
    for (id, reported) in [(active, true), (inactive, true), (other, false)] {
        let rec = t.get(&format!("/api/v2/api_tokens/{id}"), &admin).await.json()["api_token"].clone();
        assert_eq!(rec["leaked_at"].is_string(), reported, "{rec}");
    }
    for bad in [json!({"credentials": "lk_x"}), json!({"credentials": [1]}), json!({})] {
        let r = t
            .send(reqwest::Method::POST, "/api/v2/credentials/revoke", None, Some(&bad))
            .await;
        assert_eq!(r.status, 422, "{bad}: {}", r.text());
    }
    let many: Vec<String> = (0..1001).map(|i| format!("x{i}")).collect();
    let r = t
        .send(
            reqwest::Method::POST,
            "/api/v2/credentials/revoke",
            None,
            Some(&json!({ "credentials": many })),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(t.audit_chain_intact(a.id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_is_limited_to_sixty_requests_an_hour_per_address() {
    let t = TestApp::spawn().await;
    let body = json!({"credentials": ["x"]});
    for i in 0..60 {
        let r = t
            .send(reqwest::Method::POST, "/api/v2/credentials/revoke", None, Some(&body))
            .await;
        assert_eq!(r.status, 202, "request {i}");
    }
    let r = t
        .send(reqwest::Method::POST, "/api/v2/credentials/revoke", None, Some(&body))
        .await;
    assert_eq!(r.status, 429);
    let wait: u64 = r.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=3600).contains(&wait), "{wait}");
    assert_eq!(r.json()["error"], "TooManyRequests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_reports_are_taken_only_with_a_valid_signature_by_a_configured_key() {
    let (key, pem) = key_pair();
    let keys = latchkey_server::GithubKeys::parse(&[(KEY_ID.to_owned(), pem)]).expect("a valid key");
    let t = TestApp::spawn_with(move |c| c.github_keys = keys).await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let (id, plain) = t.api_create_token_with(&admin, json!({})).await;
    let body = serde_json::to_vec(&json!([
        {"token": plain, "type": "latchkey_api_token", "url": "https://github.com/acme/app/blob/abc/config.yml", "source": "content"},
        {"token": "lk_nothing_here", "type": "latchkey_api_token", "url": "https://example.com", "source": "content"},
        {"token": unknown_token(), "type": "latchkey_api_token", "url": "https://example.com/2", "source": "commit"}
    ]))
    .expect("json");
    // Refused: no signature, a bad one, an unknown key, a tampered body.
    let (other, _) = key_pair();
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    for (key_id, signature, sent) in [
        (KEY_ID, String::new(), &body),
        (KEY_ID, sign(&other, &body), &body),
        ("another-key", sign(&key, &body), &body),
        (KEY_ID, sign(&key, &body), &tampered),
        (KEY_ID, "not base64!".to_owned(), &body),
    ] {
        let r = report(&t, key_id, &signature, sent).await;
        assert_eq!(r.status, 401, "{key_id} / {signature}");
    }
    assert_eq!(
        t.me_status(&basic(&a.admin.email, &plain)).await,
        200,
        "refused reports changed nothing"
    );
    // Accepted: GitHub's feedback per token, and the real one is dead.
    let r = report(&t, KEY_ID, &sign(&key, &body), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let labels: Vec<Value> = r
        .json()
        .as_array()
        .expect("feedback")
        .iter()
        .map(|f| f["label"].clone())
        .collect();
    assert_eq!(
        labels,
        vec![json!("true_positive"), json!("false_positive"), json!("false_positive")]
    );
    assert_eq!(r.json()[0]["token_raw"], json!(plain));
    assert_eq!(r.json()[0]["token_type"], "latchkey_api_token");
    assert_eq!(t.me_status(&basic(&a.admin.email, &plain)).await, 401);
    assert_eq!(
        leak_events(&t, &a, id).await,
        vec![(
            Action::Deactivate,
            "reported leaked (found at https://github.com/acme/app/blob/abc/config.yml)".to_owned()
        )]
    );
    // Without configured keys every report is refused.
    let bare = TestApp::spawn().await;
    assert_eq!(report(&bare, KEY_ID, &sign(&key, &body), &body).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_revokes_leaked_tokens_from_a_file_and_serve_reads_github_keys_from_its_config() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let (_, first) = t.api_create_token_with(&admin, json!({})).await;
    let (_, second) = t.api_create_token_with(&admin, json!({})).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("leaked.txt");
    std::fs::write(&file, format!("{first}\n\ngarbage\n{}\n", unknown_token())).expect("write");
    let out = cli(
        &t.db.url,
        &["token", "revoke-leaked", "--file", file.to_str().expect("path")],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("1 of 3 lines matched"), "{}", out.stdout);
    let started = std::time::Instant::now();
    while t.me_status(&basic(&a.admin.email, &first)).await != 401 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "the server never saw it"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // A real `serve` with the key in its configuration file.
    let (key, pem) = key_pair();
    let config = dir.path().join("latchkey.toml");
    std::fs::write(
        &config,
        format!("[[secret_scanning.github.public_keys]]\nkey_identifier = \"{KEY_ID}\"\nkey = \"\"\"\n{pem}\"\"\"\n"),
    )
    .expect("write");
    let node = ServeProcess::start(&t.db.url, &["--config", config.to_str().expect("path")]).await;
    let body = serde_json::to_vec(
        &json!([{"token": second, "type": "latchkey_api_token", "url": "https://x", "source": "content"}]),
    )
    .expect("json");
    let r = t
        .client
        .post(node.url("/operator/v1/secret_scanning/github"))
        .header("github-public-key-identifier", KEY_ID)
        .header("github-public-key-signature", sign(&key, &body))
        .body(body)
        .send()
        .await
        .expect("report");
    assert_eq!(r.status().as_u16(), 200);
    let feedback: Value = r.json().await.expect("json");
    assert_eq!(feedback[0]["label"], "true_positive");
    // A key that is not a P-256 public key stops the command at once.
    std::fs::write(
        &config,
        "[[secret_scanning.github.public_keys]]\nkey_identifier = \"k\"\nkey = \"nope\"\n",
    )
    .expect("write");
    let bad = cli(&t.db.url, &["--config", config.to_str().expect("path"), "serve"]).await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("not a PEM P-256 public key"), "{}", bad.stderr);
}
