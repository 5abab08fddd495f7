//! `latchkey copy-db`: moving a deployment to another database keeps every
//! id, token hash, password hash, setting and audit event (with its hash),
//! so tokens keep working and the audit chain verifies on the new database.
//! The target is the suite's selected database (SQLite, or PostgreSQL on the
//! PostgreSQL pass), and a copy back to SQLite covers the other direction.

use latchkey_core::id::UserId;
use latchkey_core::token::TokenPatch;
use latchkey_store::Store;

use crate::support::*;

/// Everything a deployment holds that a copy must keep, read back through
/// the store so that both databases are compared the same way.
async fn contents(url: &str) -> Vec<String> {
    let store: Store = latchkey_store::open(url).await.expect("open");
    let mut out = Vec::new();
    for account in store.accounts().await.unwrap() {
        out.push(format!("{account:?}"));
        let mut id = 1;
        let max_user = 64;
        while id <= max_user {
            if let Some(u) = store
                .user(UserId::new(id))
                .await
                .unwrap()
                .filter(|u| u.account_id == account.id)
            {
                let secret = store
                    .user_credentials(account.id, &u.email.normalized())
                    .await
                    .unwrap()
                    .map(|(_, hash)| hash.is_some());
                out.push(format!("{u:?} password={secret:?}"));
            }
            id += 1;
        }
        for t in store.tokens(account.id).await.unwrap() {
            let auth = store.token_auth(t.id).await.unwrap();
            out.push(format!("{t:?} {auth:?}"));
        }
        for (event, hash) in store.audit_chain(account.id).await.unwrap() {
            out.push(format!("{event:?} {}", hex(&hash)));
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_deployment_keeps_ids_hashes_settings_and_its_audit_chain() {
    // The source: a SQLite deployment with a bit of everything.
    let mut source = TestApp::spawn_on(sqlite_database(), |_| {}).await;
    let on = source.account().await;
    let off = source.account_with(latchkey_core::account::Plan::Team, true).await;
    let agent = source
        .user(&on, latchkey_core::user::Role::Agent, UserState::Verified)
        .await;
    source
        .user(&on, latchkey_core::user::Role::Agent, UserState::Suspended)
        .await;
    source
        .user(&on, latchkey_core::user::Role::EndUser, UserState::Deleted)
        .await;
    let args = [
        "user",
        "create",
        "--account",
        &on.subdomain,
        "--email",
        "pat@example.com",
        "--name",
        "Pat",
        "--role",
        "admin",
        "--password-stdin",
    ];
    let out = cli_with_stdin(&source.db.url, &args, Some("correct horse battery staple\n")).await;
    assert_eq!(out.code, 0, "{out:?}");
    let used = source.token_described(&on, Some("Jira sync")).await;
    let deactivated = source.token(&on).await;
    let deleted = source.token(&on).await;
    let access = source.operator(&on.subdomain).await;
    let deactivate = TokenPatch {
        active: Some(false),
        ..TokenPatch::default()
    };
    for id in [deactivated.id, deleted.id] {
        source.app.update_token(&access, id, &deactivate).await.unwrap();
    }
    source.app.delete_token(&access, deleted.id).await.unwrap();
    let off_token = source.token(&off).await;
    source.set_token_access(&off, false).await;
    assert_eq!(source.me_status(&basic(&on.admin.email, &used.plain)).await, 200);
    assert_eq!(source.me_status(&basic(&agent.email, &used.plain)).await, 200);
    source.stop().await; // flushes last_used
    let before = contents(&source.db.url).await;

    // Copy into the selected database.
    let target = test_database_url().await;
    let out = cli(
        &source.db.url,
        &["copy-db", "--from", &source.db.url, "--to", &target.url],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("rows of api_tokens"), "{out:?}");
    assert_eq!(contents(&target.url).await, before, "the copy differs from its source");
    for subdomain in [&on.subdomain, &off.subdomain] {
        let out = target.cli(&["audit", "verify", "--account", subdomain]).await;
        assert_eq!(out.code, 0, "{out:?}");
    }

    // Servers on the copy authenticate exactly as before, and go on from
    // the copied ids.
    let copy = TestApp::spawn_on(target, |_| {}).await;
    assert_eq!(copy.me_status(&basic(&on.admin.email, &used.plain)).await, 200);
    assert_eq!(copy.me_status(&basic(&agent.email, &used.plain)).await, 200);
    assert_eq!(copy.me_status(&basic(&on.admin.email, &deactivated.plain)).await, 401);
    assert_eq!(copy.me_status(&basic(&off.admin.email, &off_token.plain)).await, 401);
    let admin = basic(&on.admin.email, &used.plain);
    let (new_id, _) = copy.api_create_token(&admin, Some("after the move")).await;
    assert!(
        new_id > off_token.id.max(deleted.id),
        "new id {new_id} reuses a copied one"
    );
    let third = copy.account().await;
    assert!(third.id > off.id);
    assert!(copy.audit_chain_intact(on.id).await);

    // And back again, to a SQLite file: the other direction.
    let back = sqlite_database();
    let out = cli(&copy.db.url, &["copy-db", "--from", &copy.db.url, "--to", &back.url]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(contents(&back.url).await, contents(&copy.db.url).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_db_refuses_a_target_that_already_holds_data() {
    let source = TestApp::spawn_on(sqlite_database(), |_| {}).await;
    source.account().await;
    let target = TestApp::spawn().await;
    let kept = target.account().await;
    let out = cli(
        &source.db.url,
        &["copy-db", "--from", &source.db.url, "--to", &target.db.url],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("already holds data"), "{out:?}");
    let accounts = target.store().await.accounts().await.unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].subdomain.as_str(), kept.subdomain);

    let out = cli(
        &source.db.url,
        &["copy-db", "--from", &source.db.url, "--to", "mysql://localhost/x"],
    )
    .await;
    assert_ne!(out.code, 0, "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_db_refuses_a_missing_or_empty_source() {
    let target = test_database_url().await;
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("sqlite://{}", dir.path().join("typo.db").display());
    let out = cli(&target.url, &["copy-db", "--from", &missing, "--to", &target.url]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(!dir.path().join("typo.db").exists(), "a missing source was created");
    let empty = sqlite_database();
    assert_eq!(cli(&empty.url, &["migrate"]).await.code, 0);
    let out = cli(&target.url, &["copy-db", "--from", &empty.url, "--to", &target.url]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("holds no accounts"), "{out:?}");
}
