//! README.md, "Command line", with the real binary: each command, its output and exit code
//! (0 done, 1 refused, 2 bad arguments with a one-line message), `--help`,
//! and the first run of `serve`.

use latchkey_app::{App, AppError};
use latchkey_core::token::{has_valid_checksum, PlainToken, TokenHash, TokenPrefix};
use latchkey_core::{
    account::Account,
    token::ApiToken,
    verifier::{Denial, Refusal},
};
use latchkey_store::Store;
use serde_json::Value;

use crate::support::*;

/// The database as the CLI left it: through the service layer, and the
/// store below it for what is stored.
struct Opened {
    app: App,
    store: Store,
}

impl Opened {
    /// The account's tokens through the service layer, as the operator.
    async fn tokens(&self, acct: &Account) -> Result<Vec<ApiToken>, AppError> {
        let (access, _) = self.app.operator(acct.subdomain.as_str()).await?;
        self.app.tokens(&access).await
    }

    /// Whether `token` authenticates `email` in a freshly loaded verifier.
    fn verify(&self, email: &str, token: &str) -> Result<(), Denial> {
        self.app
            .verify_with(
                email,
                &TokenHash::of(token),
                self.app.now(),
                latchkey_core::verifier::ANY_ADDRESS,
                None,
                |_| (),
            )
            .map_err(|r| match r {
                Refusal::Unauthenticated(d) => d,
                Refusal::MissingScope { scope, .. } => panic!("no target, yet a scope refusal: {scope}"),
                Refusal::RateLimited(_) => panic!("no limit, yet limited"),
            })
    }
}

async fn open(db: &TestDatabase) -> Opened {
    Opened {
        app: App::open(&db.url, Default::default()).await.expect("open"),
        store: latchkey_store::open(&db.url).await.expect("open the store"),
    }
}

fn one_line(s: &str) -> bool {
    s.trim_end().lines().count() == 1
}

/// Creates an account with the CLI; returns (subdomain, admin email).
async fn create_account(db: &TestDatabase, token_access: bool) -> (String, String) {
    let subdomain = unique("cli");
    let email = format!("{}@example.com", unique("boss"));
    let mut args = vec![
        "account",
        "create",
        "--subdomain",
        &subdomain,
        "--name",
        "CLI Co",
        "--plan",
        "professional",
        "--admin-email",
        &email,
    ];
    if token_access {
        args.push("--api-token-access");
    }
    let out = db.cli(&args).await;
    assert_eq!(out.code, 0, "{out:?}");
    (subdomain, email)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_is_available_for_every_command() {
    let db = test_database_url().await;
    let out = db.cli(&["--help"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    for cmd in ["serve", "migrate", "account", "user", "token", "audit"] {
        assert!(out.stdout.contains(cmd), "{cmd} missing from --help");
    }
    for args in [
        &["serve", "--help"][..],
        &["migrate", "--help"],
        &["account", "create", "--help"],
        &["account", "update", "--help"],
        &["user", "create", "--help"],
        &["token", "create", "--help"],
        &["token", "list", "--help"],
        &["token", "import", "--help"],
        &["audit", "verify", "--help"],
    ] {
        let out = db.cli(args).await;
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
        assert!(out.stdout.contains("Usage:"), "{args:?}");
    }
    let out = db.cli(&["--version"]).await;
    assert_eq!(out.code, 0);
    assert!(out.stdout.starts_with("latchkey "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_exit_2_with_a_one_line_message() {
    let db = test_database_url().await;
    for args in [
        &[][..],
        &["frobnicate"],
        &["token"],
        &["token", "create"],
        &["token", "create", "--account"],
        &["token", "list", "--account", "x", "--colour"],
        &["account", "update", "--subdomain", "x", "--api-token-access", "maybe"],
        &["serve", "--listen", "not-an-address"],
        &["serve", "--flush-interval-secs", "-1"],
        &["user", "create", "--account", "x", "--email", "e@x.io", "--name", "N"],
    ] {
        let out = db.cli(args).await;
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(one_line(&out.stderr), "{args:?}: not one line: {:?}", out.stderr);
        assert!(out.stderr.starts_with("error:"), "{args:?}: {:?}", out.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_the_schema_and_can_run_again() {
    let db = test_database_url().await;
    for _ in 0..2 {
        let out = db.cli(&["migrate"]).await;
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(out.stdout.trim(), "database is up to date");
    }
    assert_eq!(open(&db).await.store.account_count().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_create_prints_a_one_time_password_and_refuses_a_taken_subdomain() {
    let db = test_database_url().await;
    let out = db
        .cli(&[
            "account",
            "create",
            "--subdomain",
            "acme",
            "--name",
            "Acme",
            "--plan",
            "growth",
            "--admin-email",
            "Owner@Acme.test",
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("created account acme"), "{}", out.stdout);
    let password = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("admin password, shown this once: "))
        .expect("a password line")
        .trim()
        .to_owned();
    let app = open(&db).await;
    let acct = app.store.account_by_subdomain("acme").await.unwrap().unwrap();
    assert_eq!(acct.plan.as_str(), "growth");
    assert!(!acct.api_token_access, "token access is off by default");
    assert_eq!(acct.token_limit, 256);
    let (user, hash) = app
        .store
        .user_credentials(acct.id, "owner@acme.test")
        .await
        .unwrap()
        .expect("the admin");
    assert_eq!(user.email.as_str(), "Owner@Acme.test", "stored as given");
    assert_eq!(user.role.as_str(), "admin");
    assert!(user.verified);
    assert!(latchkey_app::password::verify_blocking(
        &password.as_str().into(),
        &hash.expect("a password hash")
    ));

    let out = db
        .cli(&[
            "account",
            "create",
            "--subdomain",
            "acme",
            "--name",
            "Again",
            "--plan",
            "team",
            "--admin-email",
            "x@acme.test",
        ])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(one_line(&out.stderr), "{:?}", out.stderr);
    assert!(out.stderr.contains("subdomain"), "{:?}", out.stderr);
    assert_eq!(app.store.account_count().await.unwrap(), 1);

    for (subdomain, plan, email) in [
        ("Bad_Sub", "team", "a@b.io"),
        ("okay", "platinum", "a@b.io"),
        ("okay", "team", "not-an-email"),
    ] {
        let out = db
            .cli(&[
                "account",
                "create",
                "--subdomain",
                subdomain,
                "--name",
                "N",
                "--plan",
                plan,
                "--admin-email",
                email,
            ])
            .await;
        assert_ne!(out.code, 0, "{subdomain} {plan} {email}");
        assert!(one_line(&out.stderr), "{:?}", out.stderr);
    }
    assert_eq!(app.store.account_count().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_password_can_come_from_standard_input() {
    let db = test_database_url().await;
    let out = cli_with_stdin(
        &db.url,
        &[
            "account",
            "create",
            "--subdomain",
            "stdin",
            "--name",
            "S",
            "--plan",
            "team",
            "--admin-email",
            "s@stdin.test",
            "--admin-password-stdin",
        ],
        Some("correct horse battery staple\n"),
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stdout.contains("password"), "{}", out.stdout);
    let app = open(&db).await;
    let acct = app.store.account_by_subdomain("stdin").await.unwrap().unwrap();
    let (_, hash) = app
        .store
        .user_credentials(acct.id, "s@stdin.test")
        .await
        .unwrap()
        .unwrap();
    assert!(latchkey_app::password::verify_blocking(
        &"correct horse battery staple".into(),
        &hash.unwrap()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_update_changes_name_plan_and_token_access() {
    let db = test_database_url().await;
    let (subdomain, _) = create_account(&db, false).await;
    let out = db
        .cli(&[
            "account",
            "update",
            "--subdomain",
            &subdomain,
            "--name",
            "Renamed",
            "--plan",
            "enterprise_plus",
            "--api-token-access",
            "on",
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let app = open(&db).await;
    let acct = app.store.account_by_subdomain(&subdomain).await.unwrap().unwrap();
    assert_eq!(acct.name, "Renamed");
    assert_eq!(acct.plan.as_str(), "enterprise_plus");
    assert!(acct.api_token_access);
    let out = db
        .cli(&["account", "update", "--subdomain", "nosuchaccount", "--name", "X"])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(one_line(&out.stderr));
    let out = db
        .cli(&["account", "update", "--subdomain", &subdomain, "--plan", "gold"])
        .await;
    assert_ne!(out.code, 0);
    assert!(one_line(&out.stderr), "{:?}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_create_makes_users_of_each_role_and_refuses_a_taken_email() {
    let db = test_database_url().await;
    let (subdomain, admin_email) = create_account(&db, true).await;
    let token = db
        .cli(&["token", "create", "--account", &subdomain])
        .await
        .stdout
        .trim()
        .to_owned();
    let t = TestApp::spawn_on(db, |_| {}).await;
    for (role, extra) in [
        ("admin", None),
        ("agent", None),
        ("end_user", None),
        ("agent", Some("--unverified")),
    ] {
        let email = format!("{}@example.com", unique(role));
        let mut args = vec![
            "user",
            "create",
            "--account",
            &subdomain,
            "--email",
            &email,
            "--name",
            "Someone",
            "--role",
            role,
        ];
        args.extend(extra);
        let out = t.db.cli(&args).await;
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains("created user"), "{}", out.stdout);
        // The running server picks the user up.
        let expected = if extra.is_some() { 401 } else { 200 };
        let mut status = 0;
        for _ in 0..100 {
            status = t.me_status(&basic(&email, &token)).await;
            if status == expected {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(status, expected, "{role} {extra:?}");
    }
    let out =
        t.db.cli(&[
            "user",
            "create",
            "--account",
            &subdomain,
            "--email",
            &admin_email.to_uppercase(),
            "--name",
            "Dup",
            "--role",
            "agent",
        ])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        one_line(&out.stderr) && out.stderr.contains("email"),
        "{:?}",
        out.stderr
    );
    let out =
        t.db.cli(&[
            "user",
            "create",
            "--account",
            &subdomain,
            "--email",
            "r@example.com",
            "--name",
            "R",
            "--role",
            "owner",
        ])
        .await;
    assert_ne!(out.code, 0);
    assert!(one_line(&out.stderr), "{:?}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_create_prints_the_token_alone_and_refuses_when_access_is_off() {
    let db = test_database_url().await;
    let (on, email) = create_account(&db, true).await;
    let (off, _) = create_account(&db, false).await;
    let out = db
        .cli(&["token", "create", "--account", &on, "--description", "Zapier"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let token = out.stdout.trim_end_matches('\n');
    assert!(!token.contains('\n') && token == token.trim());
    assert!(token.starts_with("lk_") && has_valid_checksum(token), "{token}");
    let app = open(&db).await;
    let acct = app.store.account_by_subdomain(&on).await.unwrap().unwrap();
    let t = app.tokens(&acct).await.unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].description.as_deref(), Some("Zapier"));
    let identity = app.verify(&email, token);
    assert!(identity.is_ok(), "the printed token is the stored one");

    let out = db.cli(&["token", "create", "--account", &off]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.is_empty());
    assert!(one_line(&out.stderr), "{:?}", out.stderr);
    let out = db.cli(&["token", "create", "--account", "nosuchaccount"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let out = db
        .cli(&["token", "create", "--account", &on, "--description", &"x".repeat(256)])
        .await;
    assert_ne!(out.code, 0);
    assert!(one_line(&out.stderr), "{:?}", out.stderr);
    // A command's own arguments read no environment variable; the
    // deployment's settings (here the token prefix) do.
    let out = latchkey_command(&db.url)
        .args(["token", "create"])
        .env("LATCHKEY_ACCOUNT", &on)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = latchkey_command(&db.url)
        .args(["token", "create", "--account", &on])
        .env("LATCHKEY_TOKEN_PREFIX", "acme")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(token.starts_with("acme_") && has_valid_checksum(&token), "{token}");
}

/// README.md, "Command line": booleans, addresses, networks and URLs are
/// read one way by every command, and a variable set for one command's
/// argument never fills another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_read_the_same_way_everywhere() {
    let db = test_database_url().await;
    // `LATCHKEY_NAME` is no variable of latchkey's: it fills no --name.
    let out = latchkey_command(&db.url)
        .args([
            "user",
            "create",
            "--account",
            "x",
            "--email",
            "e@example.com",
            "--role",
            "agent",
        ])
        .env("LATCHKEY_NAME", "Leaked In")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // on/off and true/false alike, on create and on update.
    let subdomain = unique("bool");
    let email = format!("{}@example.com", unique("boss"));
    let out = db
        .cli(&[
            "account",
            "create",
            "--subdomain",
            &subdomain,
            "--name",
            "B",
            "--plan",
            "team",
            "--admin-email",
            &email,
            "--api-token-access",
            "on",
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    for (value, shown) in [("false", "off"), ("true", "on"), ("off", "off"), ("on", "on")] {
        let out = db
            .cli(&[
                "account",
                "update",
                "--subdomain",
                &subdomain,
                "--api-token-access",
                value,
            ])
            .await;
        assert_eq!(out.code, 0, "{value}: {out:?}");
        assert!(
            out.stdout.contains(&format!("api_token_access {shown}")),
            "{value}: {}",
            out.stdout
        );
    }

    // The database URL from a file (first line), never beside --database-url.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("database-url");
    std::fs::write(&file, format!("{}\n", db.url)).unwrap();
    let file = file.to_str().unwrap();
    let out = latchkey_command("sqlite:///nonexistent/dir/never.db")
        .env_remove("LATCHKEY_DATABASE_URL")
        .args(["--database-url-file", file, "token", "list", "--account", &subdomain])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = db
        .cli(&["--database-url-file", file, "--database-url", &db.url, "migrate"])
        .await;
    assert_eq!(out.code, 2, "{out:?}");

    // copy-db's databases from its own variables.
    let copy = format!("sqlite://{}", dir.path().join("copy.db").display());
    let out = latchkey_command(&db.url)
        .arg("copy-db")
        .env("LATCHKEY_COPY_DB_FROM", &db.url)
        .env("LATCHKEY_COPY_DB_TO", &copy)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = cli(&copy, &["token", "list", "--account", &subdomain]).await;
    assert_eq!(out.code, 0, "the copy holds the account: {out:?}");

    // Values serve refuses before it opens anything.
    for args in [
        &["serve", "--poll-interval-ms", "0"][..],
        &["serve", "--flush-interval-secs", "0"],
        &["serve", "--public-url", "tokens.example.com"],
        &["serve", "--public-url", "https://tokens.example.com/?x=1"],
        &["serve", "--trusted-proxy", "10.0.0.0/33"],
    ] {
        let out = db.cli(args).await;
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(one_line(&out.stderr), "{args:?}: {:?}", out.stderr);
    }

    // A host name to listen on, and a bare address as a trusted proxy.
    let mut child = latchkey_command(&db.url)
        .args(["serve", "--listen", "localhost:0", "--trusted-proxy", "127.0.0.1"])
        .args(["--public-url", "https://tokens.example.com/"])
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let listening = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(addr) = line.strip_prefix("latchkey: listening on http://") {
                return addr.to_owned();
            }
        }
        panic!("serve exited before listening");
    })
    .await
    .expect("listening within 30 s");
    let addr: std::net::SocketAddr = listening.parse().unwrap();
    assert!(addr.ip().is_loopback(), "{addr}");
    let r = client().get(format!("http://{addr}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_list_prints_a_table_or_json_without_secrets() {
    let db = test_database_url().await;
    let (subdomain, _) = create_account(&db, true).await;
    let a = db
        .cli(&["token", "create", "--account", &subdomain, "--description", "first"])
        .await
        .stdout;
    let b = db.cli(&["token", "create", "--account", &subdomain]).await.stdout;
    let out = db.cli(&["token", "list", "--account", &subdomain]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("first") && out.stdout.contains("Active"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.trim_end().ends_with("2 of 256 tokens"), "{}", out.stdout);
    let json = db.cli(&["token", "list", "--account", &subdomain, "--json"]).await;
    assert_eq!(json.code, 0);
    let list: Value = serde_json::from_str(&json.stdout).expect("JSON");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[1]["description"], "first", "newest first");
    assert_eq!(list[0]["description"], Value::Null);
    for t in list {
        for f in ["id", "active", "visible_token", "created_at", "updated_at", "last_used"] {
            assert!(t.get(f).is_some(), "{f}");
        }
    }
    for secret in [a.trim(), b.trim()] {
        assert!(!out.stdout.contains(secret) && !json.stdout.contains(secret));
    }
    let out = db.cli(&["token", "list", "--account", "nosuchaccount"]).await;
    assert_eq!(out.code, 1);
}

fn plain() -> String {
    PlainToken::generate(&TokenPrefix::default()).expose().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_import_takes_plaintext_and_sha256_lines() {
    let db = test_database_url().await;
    let (subdomain, email) = create_account(&db, true).await;
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (plain(), plain());
    let file = dir.path().join("tokens.jsonl");
    let lines = [
        serde_json::json!({"token": p1, "description": "Legacy"}).to_string(),
        String::new(),
        serde_json::json!({"token_sha256": TokenHash::of(&p2).to_hex().to_uppercase(), "visible_token": "lk_abcd…wxyz", "active": false}).to_string(),
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = db
        .cli(&[
            "token",
            "import",
            "--account",
            &subdomain,
            "--file",
            file.to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("imported 2 tokens"), "{}", out.stdout);
    assert!(!out.stdout.contains(&p1));

    let app = open(&db).await;
    let acct = app.store.account_by_subdomain(&subdomain).await.unwrap().unwrap();
    let tokens = app.tokens(&acct).await.unwrap();
    assert_eq!(tokens.len(), 2);
    assert!(app.verify(&email, &p1).is_ok());
    assert!(app.verify(&email, &p2).is_err(), "imported deactivated");
    let events = app.store.audit_chain(acct.id).await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|(e, _)| e.source_type.as_str() == "api_token" && e.action.as_str() == "create")
            .count(),
        2
    );

    // All or nothing: a file with one bad line imports nothing.
    for bad in [
        format!("{}\n{{\"token\": \"lk_nope\"}}", serde_json::json!({"token": plain()})),
        format!(
            "{}\n{}",
            serde_json::json!({"token": plain()}),
            serde_json::json!({"token": p1})
        ),
        serde_json::json!({"token_sha256": "zz", "visible_token": "x"}).to_string(),
        serde_json::json!({"token": plain(), "colour": "red"}).to_string(),
        "not json".to_owned(),
        String::new(),
    ] {
        std::fs::write(&file, &bad).unwrap();
        let out = db
            .cli(&[
                "token",
                "import",
                "--account",
                &subdomain,
                "--file",
                file.to_str().unwrap(),
            ])
            .await;
        assert_eq!(out.code, 1, "{bad}: {out:?}");
        assert!(one_line(&out.stderr), "{:?}", out.stderr);
        assert!(
            !out.stderr.contains("lk_"),
            "the message echoes a token: {:?}",
            out.stderr
        );
    }
    assert_eq!(app.store.tokens(acct.id).await.unwrap().len(), 2);
    let out = db
        .cli(&[
            "token",
            "import",
            "--account",
            &subdomain,
            "--file",
            "/nonexistent/tokens.jsonl",
        ])
        .await;
    assert_eq!(out.code, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importing_more_than_256_tokens_raises_the_limit_to_2048_for_good() {
    let db = test_database_url().await;
    let (subdomain, _) = create_account(&db, true).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("many.jsonl");
    let text: Vec<String> = (0..300)
        .map(|_| serde_json::json!({"token": plain()}).to_string())
        .collect();
    std::fs::write(&file, text.join("\n")).unwrap();
    let out = db
        .cli(&[
            "token",
            "import",
            "--account",
            &subdomain,
            "--file",
            file.to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let app = open(&db).await;
    let acct = app.store.account_by_subdomain(&subdomain).await.unwrap().unwrap();
    assert_eq!(acct.token_limit, 2048);
    assert_eq!(app.tokens(&acct).await.unwrap().len(), 300);
    let list = db.cli(&["token", "list", "--account", &subdomain]).await;
    assert!(
        list.stdout.trim_end().ends_with("300 of 2048 tokens"),
        "{}",
        list.stdout
    );
    // Creating more still works, up to the new limit.
    let out = db.cli(&["token", "create", "--account", &subdomain]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let last = app.store.audit_chain(acct.id).await.unwrap();
    assert!(last
        .iter()
        .any(|(e, _)| e.change_description == "token_limit changed from 256 to 2048"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importing_past_the_limit_is_refused() {
    let db = test_database_url().await;
    let (subdomain, _) = create_account(&db, true).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("huge.jsonl");
    let text: Vec<String> = (0..2049)
        .map(|i| {
            serde_json::json!({"token_sha256": TokenHash::of(&format!("t{i}")).to_hex(), "visible_token": format!("lk_{i}")})
                .to_string()
        })
        .collect();
    std::fs::write(&file, text.join("\n")).unwrap();
    let out = db
        .cli(&[
            "token",
            "import",
            "--account",
            &subdomain,
            "--file",
            file.to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("2048"), "{:?}", out.stderr);
    let app = open(&db).await;
    let acct = app.store.account_by_subdomain(&subdomain).await.unwrap().unwrap();
    assert!(app.tokens(&acct).await.unwrap().is_empty());
    assert_eq!(acct.token_limit, 256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_reports_an_intact_chain() {
    let db = test_database_url().await;
    let (subdomain, _) = create_account(&db, true).await;
    db.cli(&["token", "create", "--account", &subdomain]).await;
    let out = db.cli(&["audit", "verify", "--account", &subdomain]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("intact (3 events)"), "{}", out.stdout);
    let out = db.cli(&["audit", "verify", "--account", "nosuchaccount"]).await;
    assert_eq!(out.code, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_serve_on_an_empty_database_creates_an_admin_and_prints_how_to_sign_in() {
    let db = test_database_url().await;
    let server = ServeProcess::start(&db.url, &[]).await;
    let banner = server.banner.join("\n");
    assert!(banner.contains("\"default\""), "{banner}");
    assert!(banner.contains("admin@localhost"), "{banner}");
    let password = server
        .banner
        .iter()
        .find_map(|l| l.strip_prefix("latchkey: its password, shown this once: "))
        .expect("a password line")
        .trim()
        .to_owned();
    assert!(password.len() >= 16, "{password}");
    assert!(banner.contains(&format!("http://{}/", server.addr)), "{banner}");
    server.kill().await;

    let app = open(&db).await;
    let acct = app.store.account_by_subdomain("default").await.unwrap().unwrap();
    assert_eq!(acct.plan.as_str(), "enterprise");
    assert!(!acct.api_token_access, "token access stays off after the first run");
    let (user, hash) = app
        .store
        .user_credentials(acct.id, "admin@localhost")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.role.as_str(), "admin");
    assert!(latchkey_app::password::verify_blocking(
        &password.as_str().into(),
        &hash.unwrap()
    ));
    let out = db.cli(&["token", "create", "--account", "default"]).await;
    assert_eq!(out.code, 1, "no token while access is off: {out:?}");

    // A second start leaves the database alone.
    let again = ServeProcess::start(&db.url, &[]).await;
    assert!(
        again.banner.iter().all(|l| !l.contains("password")),
        "{:?}",
        again.banner
    );
    again.kill().await;
    assert_eq!(app.store.account_count().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_subdomain_and_admin_email_can_be_chosen() {
    let db = test_database_url().await;
    let server = ServeProcess::start(
        &db.url,
        &[
            "--bootstrap-subdomain",
            "acme",
            "--bootstrap-admin-email",
            "Boss@Acme.test",
        ],
    )
    .await;
    assert!(
        server.banner.join("\n").contains("Boss@Acme.test"),
        "{:?}",
        server.banner
    );
    server.kill().await;
    let app = open(&db).await;
    assert!(app.store.account_by_subdomain("default").await.unwrap().is_none());
    let acct = app.store.account_by_subdomain("acme").await.unwrap().unwrap();
    assert!(app
        .store
        .user_credentials(acct.id, "boss@acme.test")
        .await
        .unwrap()
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_already_has_an_account_is_not_bootstrapped() {
    let db = test_database_url().await;
    let (subdomain, _) = create_account(&db, false).await;
    let server = ServeProcess::start(&db.url, &[]).await;
    assert!(server.banner.is_empty(), "{:?}", server.banner);
    server.kill().await;
    let app = open(&db).await;
    assert_eq!(app.store.account_count().await.unwrap(), 1);
    assert!(app.store.account_by_subdomain(&subdomain).await.unwrap().is_some());
    assert!(app.store.account_by_subdomain("default").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_bad_bootstrap_value_and_an_unsupported_database_url() {
    let db = test_database_url().await;
    let out = db
        .cli(&["serve", "--listen", "127.0.0.1:0", "--bootstrap-subdomain", "Bad_Sub"])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .trim_end()
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("error:")),
        "{:?}",
        out.stderr
    );
    let out = cli("mysql://localhost/latchkey", &["migrate"]).await;
    assert_ne!(out.code, 0, "{out:?}");
    assert!(one_line(&out.stderr), "{:?}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_builds_urls_from_the_public_url_and_still_prints_the_bound_address() {
    let db = test_database_url().await;
    let server = ServeProcess::start(&db.url, &["--public-url", "https://tokens.example.com/"]).await;
    let banner = server.banner.join("\n");
    assert!(
        banner.contains("sign in at https://tokens.example.com/login"),
        "{banner}"
    );
    assert!(banner.contains("public URL https://tokens.example.com"), "{banner}");
    server.kill().await;
    let out = db
        .cli(&[
            "account",
            "update",
            "--subdomain",
            "default",
            "--api-token-access",
            "on",
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let token = db.cli(&["token", "create", "--account", "default"]).await.stdout;
    let server = ServeProcess::start(&db.url, &["--public-url", "https://tokens.example.com"]).await;
    let r = client()
        .post(server.url("/api/v2/api_tokens.json"))
        .header("authorization", basic("admin@localhost", token.trim()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("https://tokens.example.com/api/v2/api_tokens/"),
        "{location}"
    );
    assert!(location.ends_with(".json"), "{location}");
    server.kill().await;
}

/// `latchkey token list | head`: the reader goes away; the CLI stops as a
/// Unix tool does (status 141, as if by SIGPIPE), never with a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_the_output_without_a_panic() {
    let db = test_database_url().await;
    let (account, _) = create_account(&db, true).await;
    for _ in 0..3 {
        assert_eq!(db.cli(&["token", "create", "--account", &account]).await.code, 0);
    }
    for args in [
        &["token", "list", "--account", account.as_str()][..],
        &["token", "list", "--account", account.as_str(), "--json"],
    ] {
        let mut child = latchkey_command(&db.url).args(args).spawn().unwrap();
        // The reader is gone before the first line is written.
        drop(child.stdout.take());
        let out = child.wait_with_output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

/// deploy/systemd/latchkey.service passes `systemd-analyze verify` with this
/// build's binary in place of /usr/local/bin/latchkey.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_systemd_unit_verifies() {
    let Ok(found) = std::process::Command::new("systemd-analyze").arg("--version").output() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must have systemd-analyze"
        );
        eprintln!("the_systemd_unit_verifies: NOT RUN (no systemd-analyze on this machine)");
        return;
    };
    assert!(found.status.success());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let unit = std::fs::read_to_string(root.join("deploy/systemd/latchkey.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/latchkey serve"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latchkey.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/latchkey", BIN)).unwrap();
    let out = tokio::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
}

/// A new SQLite database, and the files SQLite adds beside it, are
/// readable by their owner only; a path that cannot be created is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_sqlite_database_is_private_and_a_bad_path_is_named() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("private.db");
    let url = format!("sqlite://{}", file.display());
    let out = cli(
        &url,
        &[
            "account",
            "create",
            "--subdomain",
            "private",
            "--name",
            "P",
            "--plan",
            "team",
            "--admin-email",
            "a@example.com",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let mut seen = 0;
    for name in ["private.db", "private.db-wal", "private.db-shm"] {
        if let Ok(meta) = std::fs::metadata(dir.path().join(name)) {
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
            seen += 1;
        }
    }
    assert!(seen >= 1);

    let out = cli("sqlite:///no/such/directory/latchkey.db", &["migrate"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(one_line(&out.stderr), "{:?}", out.stderr);
    assert!(
        out.stderr.contains("/no/such/directory/latchkey.db"),
        "names the path: {}",
        out.stderr
    );
}

/// A PostgreSQL that is not there fails at once with its cause and a hint;
/// one that never answers fails after --connect-timeout, naming the server
/// and never the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_postgresql_fails_fast_and_says_where() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = std::time::Instant::now();
    let out = cli(
        &format!("postgres://latchkey:s3cret-pw@127.0.0.1:{closed}/tokens"),
        &["migrate"],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        out.stderr.contains("Connection refused") && out.stderr.contains("hint: "),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("s3cret-pw"), "{}", out.stderr);

    // A server that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            open.push(c);
        }
    });
    let started = std::time::Instant::now();
    let url = format!("postgres://latchkey:s3cret-pw@127.0.0.1:{port}/tokens");
    let out = cli(&url, &["--connect-timeout", "0.5", "--pool-size", "4", "migrate"]).await;
    let took = started.elapsed();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    let first = out.stderr.lines().next().unwrap_or("");
    assert_eq!(
        first,
        format!("error: PostgreSQL at 127.0.0.1:{port} (database tokens) did not accept a connection within 0.5 s")
    );
    assert!(
        out.stderr.contains("hint: ") && !out.stderr.contains("s3cret-pw"),
        "{}",
        out.stderr
    );
    held.abort();
}

/// Recovering the first admin: a busy port creates nobody, the password can
/// come from a file (and is then not printed), and the operator can set a
/// new one from standard input, audited as the operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_is_created_only_once_serving_and_can_be_recovered() {
    let db = test_database_url().await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = db.cli(&["serve", "--listen", &format!("127.0.0.1:{port}")]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("password"), "{}", out.stdout);
    let app = open(&db).await;
    assert_eq!(app.store.account_count().await.unwrap(), 0, "nobody was created");
    drop(busy);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin-password");
    std::fs::write(&file, "correct horse battery staple\n").unwrap();
    let server = ServeProcess::start(&db.url, &["--bootstrap-admin-password-file", file.to_str().unwrap()]).await;
    assert!(
        server.banner.iter().all(|l| !l.contains("password")),
        "{:?}",
        server.banner
    );
    assert!(
        server.banner.iter().any(|l| l.contains("admin@localhost")),
        "{:?}",
        server.banner
    );
    server.kill().await;
    let acct = app.store.account_by_subdomain("default").await.unwrap().unwrap();
    let hash = |app: &Opened| {
        let store = app.store.clone();
        async move {
            store
                .user_credentials(acct.id, "admin@localhost")
                .await
                .unwrap()
                .unwrap()
                .1
                .unwrap()
        }
    };
    assert!(latchkey_app::password::verify_blocking(
        &"correct horse battery staple".into(),
        &hash(&app).await
    ));

    let out = cli_with_stdin(
        &db.url,
        &[
            "user",
            "set-password",
            "--account",
            "default",
            "--email",
            "admin@localhost",
            "--password-stdin",
        ],
        Some("a new one, 2026\n"),
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let now = hash(&app).await;
    assert!(latchkey_app::password::verify_blocking(&"a new one, 2026".into(), &now));
    assert!(!latchkey_app::password::verify_blocking(
        &"correct horse battery staple".into(),
        &now
    ));
    let events = app.store.audit_chain(acct.id).await.unwrap();
    let last = &events.last().unwrap().0;
    assert_eq!(last.actor_type.as_str(), "operator", "{last:?}");
    assert!(!last.change_description.contains("a new one"), "{last:?}");
    // Without --password-stdin nothing changes, and a password is never an argument.
    let out = db
        .cli(&[
            "user",
            "set-password",
            "--account",
            "default",
            "--email",
            "admin@localhost",
        ])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
}

/// An incident from the command line: deactivate, reactivate and delete a
/// token; list, suspend and delete a user; each change audited as the
/// operator and seen by a freshly loaded verifier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_responds_to_an_incident_from_the_command_line() {
    let db = test_database_url().await;
    let (subdomain, email, token) = db.cli_account("enterprise").await;
    let app = open(&db).await;
    let acct = app.store.account_by_subdomain(&subdomain).await.unwrap().unwrap();
    let id = app.tokens(&acct).await.unwrap()[0].id.to_string();
    let out = db.cli(&["account", "list", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let accounts: Value = serde_json::from_str(&out.stdout).unwrap();
    let listed = accounts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["subdomain"] == subdomain.as_str());
    assert_eq!(
        listed.map(|a| a["api_token_access"].clone()),
        Some(Value::Bool(true)),
        "{accounts}"
    );
    let out = db.cli(&["account", "list"]).await;
    assert!(out.stdout.lines().any(|l| l.contains(&subdomain)), "{}", out.stdout);

    let out = db
        .cli(&["token", "deactivate", "--account", &subdomain, "--id", &id])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("deactivated"), "{}", out.stdout);
    assert!(
        open(&db).await.verify(&email, &token).is_err(),
        "refused once deactivated"
    );
    let out = db
        .cli(&["token", "reactivate", "--account", &subdomain, "--id", &id])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(open(&db).await.verify(&email, &token).is_ok(), "accepted again");

    // A user: listed, suspended (their tokens stop), deleted.
    let out = db
        .cli(&[
            "user",
            "create",
            "--account",
            &subdomain,
            "--email",
            "jo@example.com",
            "--name",
            "Jo",
            "--role",
            "agent",
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = db.cli(&["user", "list", "--account", &subdomain, "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let users: Value = serde_json::from_str(&out.stdout).unwrap();
    let emails: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, [email.as_str(), "jo@example.com"]);
    assert!(open(&db).await.verify("jo@example.com", &token).is_ok());
    let out = db
        .cli(&[
            "user",
            "update",
            "--account",
            &subdomain,
            "--email",
            "jo@example.com",
            "--name",
            "Jo Quinn",
            "--suspended",
            "on",
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = db.cli(&["user", "list", "--account", &subdomain]).await;
    assert!(out.stdout.lines().any(|l| l.ends_with("Jo Quinn")), "{}", out.stdout);
    assert!(out.stdout.contains("suspended"), "{}", out.stdout);
    assert!(
        open(&db).await.verify("jo@example.com", &token).is_err(),
        "a suspended user's token is refused"
    );
    let out = db
        .cli(&["user", "delete", "--account", &subdomain, "--email", "jo@example.com"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = db.cli(&["user", "list", "--account", &subdomain]).await;
    assert!(!out.stdout.contains("jo@example.com"), "{}", out.stdout);

    // Deleting the token: as in the Admin Center, only once deactivated; an
    // id that is not there is one line, exit 1.
    let out = db.cli(&["token", "delete", "--account", &subdomain, "--id", &id]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stderr, "error: Deactivate the token before deleting it.\n");
    let out = db
        .cli(&["token", "deactivate", "--account", &subdomain, "--id", &id])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = db.cli(&["token", "delete", "--account", &subdomain, "--id", &id]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(app.tokens(&acct).await.unwrap().is_empty());
    let out = db.cli(&["token", "delete", "--account", &subdomain, "--id", &id]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(one_line(&out.stderr), "{:?}", out.stderr);

    // Every change is the operator's in the audit log.
    let events = app.store.audit_chain(acct.id).await.unwrap();
    let recent: Vec<_> = events
        .iter()
        .rev()
        .take(7)
        .map(|(e, _)| e.actor_type.as_str())
        .collect();
    assert!(recent.iter().all(|a| *a == "operator"), "{recent:?}");
    // Named `operator ({os user}@{host})`, after who ran the command.
    let name = &events.last().unwrap().0.actor_name;
    let who = name.strip_prefix("operator (").and_then(|r| r.strip_suffix(')'));
    assert!(
        who.and_then(|w| w.split_once('@'))
            .is_some_and(|(u, h)| !u.is_empty() && !h.is_empty() && !h.contains(' ')),
        "{name}"
    );
}

/// `audit export`: every event of the account, oldest first, in the REST
/// export's CSV or JSON-lines format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_export_writes_every_event_as_csv_or_json_lines() {
    let db = test_database_url().await;
    let (subdomain, _, _) = db.cli_account("team").await;
    for _ in 0..2 {
        assert_eq!(db.cli(&["token", "create", "--account", &subdomain]).await.code, 0);
    }
    let app = open(&db).await;
    let acct = app.store.account_by_subdomain(&subdomain).await.unwrap().unwrap();
    let stored: Vec<i64> = app
        .store
        .audit_chain(acct.id)
        .await
        .unwrap()
        .iter()
        .map(|(e, _)| e.id.get())
        .collect();
    assert!(stored.len() >= 4, "{stored:?}");

    let out = db
        .cli(&[
            "audit",
            "export",
            "--account",
            &subdomain,
            "--format",
            "jsonl",
            "--public-url",
            "https://t.example.com",
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<Value> = out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ids: Vec<i64> = lines.iter().map(|v| v["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, stored, "every event, oldest first");
    assert_eq!(
        lines[0]["url"],
        format!("https://t.example.com/api/v2/audit_logs/{}.json", ids[0])
    );

    let out = db.cli(&["audit", "export", "--account", &subdomain]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let mut rows = csv::Reader::from_reader(out.stdout.as_bytes());
    let header = rows.headers().unwrap().clone();
    assert_eq!(&header[0], "id");
    let ids: Vec<i64> = rows.records().map(|r| r.unwrap()[0].parse().unwrap()).collect();
    assert_eq!(ids, stored);

    let out = db.cli(&["audit", "export", "--account", "no-such-account"]).await;
    assert_eq!(out.code, 1, "{out:?}");
}

/// `backup`: a consistent, private copy of a SQLite database while a server
/// runs on it, which opens as a database with its audit chains intact;
/// never over an existing file; PostgreSQL is pointed at pg_dump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_copies_a_live_sqlite_database_and_points_postgresql_at_pg_dump() {
    use std::os::unix::fs::PermissionsExt as _;
    let db = test_database_url().await;
    let (subdomain, _, _) = db.cli_account("enterprise").await;
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("backup.db");
    let to_arg = to.to_str().unwrap();
    if db.url.starts_with("postgres") {
        let out = db.cli(&["backup", "--to", to_arg]).await;
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains("pg_dump"), "{}", out.stderr);
        assert!(!to.exists());
        return;
    }
    let server = ServeProcess::start(&db.url, &[]).await;
    for _ in 0..3 {
        assert_eq!(db.cli(&["token", "create", "--account", &subdomain]).await.code, 0);
    }
    let out = db.cli(&["backup", "--to", to_arg]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(std::fs::metadata(&to).unwrap().permissions().mode() & 0o777, 0o600);
    server.kill().await;
    let copy = format!("sqlite://{to_arg}");
    let out = cli(&copy, &["token", "list", "--account", &subdomain, "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let tokens: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        tokens.as_array().unwrap().len(),
        4,
        "every committed token is in the copy"
    );
    let out = cli(&copy, &["audit", "verify", "--account", &subdomain]).await;
    assert_eq!(out.code, 0, "{out:?}");

    let out = db.cli(&["backup", "--to", to_arg]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
}
