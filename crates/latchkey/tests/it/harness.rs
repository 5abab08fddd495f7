//! Checks of the harness itself, so a broken helper fails loudly in one
//! place instead of confusing every other module.

use crate::support::*;
use latchkey_core::{account::Plan, user::Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_serves_an_account_whose_admin_token_authenticates() {
    let t = TestApp::spawn().await;
    let acct = t.account_with(Plan::Team, true).await;
    let agent = t.user(&acct, Role::Agent, UserState::Verified).await;
    let token = t.token(&acct).await;
    assert!(token.plain.starts_with("lk_"));
    assert_eq!(t.me_status(&basic(&acct.admin.email, &token.plain)).await, 200);
    assert_eq!(t.me_status(&basic(&agent.email, &token.plain)).await, 200);
    let r = t.get("/api/v2/users/me", &basic(&agent.email, "nope")).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.text(), NOT_AUTHENTICATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_runs_the_real_binary_on_the_test_database() {
    let db = test_database_url().await;
    let out = db.cli(&["migrate"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let t = TestApp::spawn().await;
    let raw = t
        .raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(raw.status, 200);
}
