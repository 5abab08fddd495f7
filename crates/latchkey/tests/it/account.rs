//! docs/api.md, "Account and settings", over HTTP: its record for any user,
//! and the settings for admins.

use std::collections::HashSet;

use latchkey_core::{account::Plan, user::Role};
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_user_reads_the_account_record() {
    let t = TestApp::spawn().await;
    let a = t.account_with(Plan::Professional, true).await;
    let tok = t.token(&a).await;
    let end_user = t.user(&a, Role::EndUser, UserState::Verified).await;
    let r = t.get("/api/v2/account.json", &basic(&end_user.email, &tok.plain)).await;
    assert_eq!(r.status, 200);
    let acct = &r.json()["account"];
    let keys: HashSet<&str> = acct.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        HashSet::from(["id", "subdomain", "name", "plan", "token_limit", "created_at"])
    );
    assert_eq!(acct["id"], json!(a.id));
    assert_eq!(acct["subdomain"], a.subdomain.as_str());
    assert_eq!(acct["plan"], "professional");
    assert_eq!(acct["token_limit"], 256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_read_and_change_the_settings_partially() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await;
    let r = t.get("/api/v2/account/settings", &auth).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["settings"]["api"]["api_token_access"], true);
    assert!(v["settings"]["token_policy"].is_object());
    let before = t.audit(a.id).await.len();
    for body in [
        json!({}),
        json!({"settings": {}}),
        json!({"settings": {"api": {}}}),
        json!({"settings": {"api": {"api_token_access": true}}}),
    ] {
        let r = t.put("/api/v2/account/settings", &auth, &body).await;
        assert_eq!(r.status, 200, "{body}: {}", r.text());
        assert_eq!(r.json()["settings"]["api"]["api_token_access"], true);
    }
    assert_eq!(t.audit(a.id).await.len(), before, "no-ops write no event");
}
