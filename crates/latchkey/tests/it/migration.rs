//! README.md, "Migrating from Zendesk", with the real binary beside a real
//! server on one database: legacy tokens imported by `latchkey token
//! import` authenticate at once, show as legacy, rotate to the latchkey
//! format and fall to the policy's `deactivate_legacy_tokens`; refused lines
//! name their line; the operator's `account update --token-limit` and
//! `account delete --confirm`.

use std::time::{Duration, Instant};

use latchkey_app::sign_in::{SignIn, SignInAttempt};
use latchkey_core::id::TokenId;
use latchkey_core::token::{has_valid_checksum, TokenHash};
use serde_json::{json, Value};

use crate::support::*;

/// Two Zendesk-shaped tokens: 40 letters and digits, no latchkey checksum.
const ZENDESK: &str = "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5hJ7k";
const ZENDESK_HASHED: &str = "Qw3rTy5uIo7pAs9dFg1hJk3lZx5cVb7nMq9wEr1t";

fn import_file(dir: &tempfile::TempDir, lines: &[Value]) -> String {
    let path = dir.path().join("zendesk.jsonl");
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&path, text.join("\n")).expect("write the import file");
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// Polls `GET /api/v2/users/me` with `auth` until it answers `status`
/// (the server follows the CLI's change within 100 ms; 5 s is the bound
/// of a loaded machine).
async fn me_becomes(app: &TestApp, auth: &str, status: u16) -> Duration {
    let started = Instant::now();
    loop {
        let got = app.me_status(auth).await;
        if got == status {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(5), "still {got}, not {status}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn token_of(list: &Value, id: TokenId) -> &Value {
    list["api_tokens"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|t| t["id"] == json!(id.get()))
        .expect("the token is listed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zendesk_tokens_keep_working_after_import_until_rotated_or_ruled_out() {
    let app = TestApp::spawn().await;
    let account = app.account().await;
    let email = account.admin.email.clone();
    let admin = app.admin_auth(&account).await;
    let legacy_auth = basic(&email, ZENDESK);
    // Before the import: refused before any lookup, like any garbage.
    assert_eq!(app.me_status(&legacy_auth).await, 401);
    assert!(!app.app.accepts_legacy());

    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = import_file(
        &dir,
        &[
            json!({"token": ZENDESK, "description": "Zendesk: Jira"}),
            json!({"token_sha256": TokenHash::of(ZENDESK_HASHED).to_hex(), "legacy": true, "description": "Zendesk: CRM"}),
        ],
    );
    let out = app
        .db
        .cli(&["token", "import", "--account", &account.subdomain, "--file", &file])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("imported 2 tokens"), "{}", out.stdout);
    assert!(!out.stdout.contains(ZENDESK) && !out.stderr.contains(ZENDESK));

    // The running server learns of them from the change log.
    me_becomes(&app, &legacy_auth, 200).await;
    assert_eq!(app.me_status(&basic(&email, ZENDESK_HASHED)).await, 200);
    // Still nothing for a checksum-less string no token holds, or the
    // right token under another account's user.
    assert_eq!(app.me_status(&basic(&email, &ZENDESK.replace('a', "x"))).await, 401);
    let other = app.account().await;
    assert_eq!(app.me_status(&basic(&other.admin.email, ZENDESK)).await, 401);
    // /verify answers the same.
    let verify = app
        .client
        .get(app.url("/verify"))
        .header("authorization", &legacy_auth)
        .send()
        .await
        .expect("GET /verify");
    assert_eq!(verify.status(), 200);

    // Listed as legacy: the plaintext one by its ends, the hashed one as imported.
    let list = app.get("/api/v2/api_tokens", &admin).await;
    assert_eq!(list.status, 200);
    let list = list.json();
    let legacy: Vec<&Value> = list["api_tokens"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|t| t["legacy"] == json!(true))
        .collect();
    assert_eq!(legacy.len(), 2, "{list}");
    let plain = legacy
        .iter()
        .find(|t| t["description"] == "Zendesk: Jira")
        .expect("the plaintext import");
    let hashed = legacy
        .iter()
        .find(|t| t["description"] == "Zendesk: CRM")
        .expect("the hashed import");
    assert_eq!(plain["visible_token"], "aB3d\u{2026}hJ7k");
    assert_eq!(hashed["visible_token"], "imported");
    let (plain_id, hashed_id): (TokenId, TokenId) = (json_id(&plain["id"]), json_id(&hashed["id"]));
    let cli_list = app.db.cli(&["token", "list", "--account", &account.subdomain]).await;
    assert!(
        cli_list.stdout.contains("aB3d\u{2026}hJ7k (legacy)"),
        "{}",
        cli_list.stdout
    );
    let cli_json = app
        .db
        .cli(&["token", "list", "--account", &account.subdomain, "--json"])
        .await;
    assert!(cli_json.stdout.contains("\"legacy\": true"), "{}", cli_json.stdout);
    // The Admin Center's list marks them too.
    let page = app
        .client
        .get(app.url("/admin/apis/api-tokens"))
        .header("cookie", app_session_cookie(&app, &account).await)
        .send()
        .await
        .expect("GET the token list");
    let html = page.text().await.expect("the page");
    assert_eq!(html.matches("badge legacy").count(), 2, "{html}");

    // Rotating turns it into a latchkey token; the old secret lasts its grace.
    let rotated = app
        .post(
            &format!("/api/v2/api_tokens/{plain_id}/rotate"),
            &admin,
            &json!({"grace_period_seconds": 3600}),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let rotated = rotated.json();
    let new_token = rotated["api_token"]["token"].as_str().expect("the new token");
    assert!(has_valid_checksum(new_token));
    assert_eq!(rotated["api_token"]["legacy"], json!(false));
    assert_eq!(rotated["api_token"]["previous_visible_token"], "aB3d\u{2026}hJ7k");
    assert_eq!(app.me_status(&basic(&email, new_token)).await, 200);
    assert_eq!(app.me_status(&legacy_auth).await, 200, "within its grace period");

    // The policy rule: the sweeper deactivates the legacy token left.
    let set = app
        .put(
            "/api/v2/account/settings",
            &admin,
            &json!({"settings": {"token_policy": {"deactivate_legacy_tokens": true}}}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text());
    assert_eq!(
        set.json()["settings"]["token_policy"]["deactivate_legacy_tokens"],
        json!(true)
    );
    let dry = app
        .db
        .cli(&["policy", "sweep", "--account", &account.subdomain, "--dry-run"])
        .await;
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(
        dry.stdout.contains("imported") && !dry.stdout.contains("lk_"),
        "{}",
        dry.stdout
    );
    let sweep = app.db.cli(&["policy", "sweep", "--account", &account.subdomain]).await;
    assert_eq!(sweep.code, 0, "{sweep:?}");
    assert!(
        sweep.stdout.contains("legacy token format (deactivate_legacy_tokens)"),
        "{}",
        sweep.stdout
    );
    me_becomes(&app, &basic(&email, ZENDESK_HASHED), 401).await;
    assert_eq!(
        app.me_status(&basic(&email, new_token)).await,
        200,
        "the rotated one stays"
    );
    let list = app.get("/api/v2/api_tokens", &admin).await.json();
    assert_eq!(token_of(&list, hashed_id)["active"], json!(false));
    assert_eq!(token_of(&list, plain_id)["active"], json!(true));
    let audit = app.audit(account.id).await;
    assert!(audit.iter().any(|e| e.action.as_str() == "deactivate"
        && e.change_description == "legacy token format (deactivate_legacy_tokens)"));
    assert!(app.audit_chain_intact(account.id).await);
}

/// A signed-in Admin Center session's cookie for the account's admin.
async fn app_session_cookie(app: &TestApp, account: &TestAccount) -> String {
    let password = "correct horse battery staple";
    let out = cli_with_stdin(
        &app.db.url,
        &[
            "user",
            "set-password",
            "--account",
            &account.subdomain,
            "--email",
            &account.admin.email,
            "--password-stdin",
        ],
        Some(password),
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let signed = app
        .app
        .sign_in(SignInAttempt {
            ip: std::net::Ipv4Addr::LOCALHOST.into(),
            subdomain: &account.subdomain,
            email: &account.admin.email,
            password: password.into(),
            previous_session: None,
        })
        .await
        .expect("sign in");
    let SignIn::Started { session_id } = signed else {
        panic!("not signed in: {signed:?}");
    };
    format!("latchkey_session={}", session_id.expose_secret())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_import_line_names_its_line_and_imports_nothing() {
    let app = TestApp::spawn().await;
    let account = app.account().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (lines, says) in [
        (
            vec![json!({"token": ZENDESK}), json!({"token": "short"})],
            "line 2: token is neither a latchkey token nor a legacy token",
        ),
        (
            vec![json!({"token": ZENDESK, "legacy": false})],
            "line 1: token has no latchkey checksum",
        ),
        (
            vec![json!({"token_sha256": "ab"})],
            "line 1: token_sha256 must be 64 hexadecimal characters",
        ),
        (vec![json!({"token": ZENDESK}), json!({"token": ZENDESK})], "line 2"),
    ] {
        let file = import_file(&dir, &lines);
        let out = app
            .db
            .cli(&["token", "import", "--account", &account.subdomain, "--file", &file])
            .await;
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains(says), "{says}: {}", out.stderr);
        assert!(!out.stderr.contains(ZENDESK), "the message echoes the token");
    }
    let access = app.operator(&account.subdomain).await;
    assert_eq!(app.app.tokens(&access).await.expect("tokens").len(), 0);
    assert!(!app.app.accepts_legacy());
}

/// `latchkey account update --token-limit {limit}` for the account.
async fn set_token_limit(app: &TestApp, account: &TestAccount, limit: &str) -> CliOutput {
    app.db
        .cli(&[
            "account",
            "update",
            "--subdomain",
            &account.subdomain,
            "--token-limit",
            limit,
        ])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_raises_a_token_limit_and_deletes_an_account_only_when_confirmed() {
    let app = TestApp::spawn().await;
    let account = app.account().await;
    let token = app.token(&account).await;
    let auth = basic(&account.admin.email, &token.plain);
    assert_eq!(app.me_status(&auth).await, 200);

    let out = set_token_limit(&app, &account, "3000").await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("token_limit 3000"), "{}", out.stdout);
    let shown = app.get("/api/v2/account", &auth).await.json();
    assert_eq!(shown["account"]["token_limit"], json!(3000));
    assert!(app
        .audit(account.id)
        .await
        .iter()
        .any(|e| e.change_description == "token_limit changed from 256 to 3000"
            && e.actor_name.starts_with("operator (")));
    // Not below what the account holds, and within 1 to 10000.
    app.token(&account).await;
    let out = set_token_limit(&app, &account, "1").await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("holds 2 tokens"), "{}", out.stderr);
    for bad in ["0", "10001", "many"] {
        let out = set_token_limit(&app, &account, bad).await;
        assert_eq!(out.code, 2, "{bad}: {out:?}");
    }

    // Deleting asks for the subdomain again.
    for confirm in [None, Some("someone-else")] {
        let mut args = vec!["account", "delete", "--subdomain", &account.subdomain];
        if let Some(c) = confirm {
            args.extend(["--confirm", c]);
        }
        let out = app.db.cli(&args).await;
        assert_eq!(out.code, 1, "{out:?}");
        assert!(
            out.stderr.contains(&format!("--confirm {}", account.subdomain)),
            "{}",
            out.stderr
        );
    }
    assert_eq!(app.me_status(&auth).await, 200, "nothing deleted unconfirmed");
    let other = app.account().await;
    let other_token = app.token(&other).await;
    let out = app
        .db
        .cli(&[
            "account",
            "delete",
            "--subdomain",
            &account.subdomain,
            "--confirm",
            &account.subdomain,
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(&format!(
            "deleted account {} with 1 users and 2 tokens",
            account.subdomain
        )),
        "{}",
        out.stdout
    );
    // The running server stops the token within moments (change log).
    me_becomes(&app, &auth, 401).await;
    let list = app.db.cli(&["account", "list"]).await;
    assert!(!list.stdout.contains(&account.subdomain), "{}", list.stdout);
    assert_eq!(
        app.me_status(&basic(&other.admin.email, &other_token.plain)).await,
        200,
        "other accounts untouched"
    );
    let store = app.store().await;
    assert!(store.audit_chain(account.id).await.expect("chain").is_empty());
    let out = app
        .db
        .cli(&[
            "account",
            "delete",
            "--subdomain",
            &account.subdomain,
            "--confirm",
            &account.subdomain,
        ])
        .await;
    assert_eq!(out.code, 1, "a second delete finds no account: {out:?}");
}
