//! docs/api.md, "Audit log": every change writes its audit event, with the exact
//! action, source and description, the right actor (user with the client
//! address for the API, operator for the CLI, system for the first run),
//! no event for a no-op, and an intact hash chain.

use latchkey_app::password::ExposeSecret;
use latchkey_core::audit::{ActorType, AuditEvent, SourceType};
use latchkey_core::id::AuditEventId;
use latchkey_core::time::Timestamp;
use latchkey_core::user::Role;
use serde_json::json;

use crate::support::*;

/// `(action, action label, source type, source label, change description)`.
fn summary(e: &AuditEvent) -> (&'static str, &'static str, &'static str, String, String) {
    (
        e.action.as_str(),
        e.action.label(),
        e.source_type.as_str(),
        e.source_label.clone(),
        e.change_description.clone(),
    )
}

fn row(
    action: &'static str,
    label: &'static str,
    source: &'static str,
    source_label: &str,
    description: &str,
) -> (&'static str, &'static str, &'static str, String, String) {
    (action, label, source, source_label.to_owned(), description.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_token_change_over_the_api_writes_one_exact_event_by_the_user_and_address() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await;
    let start = t.audit(a.id).await.len();
    let (id, _) = t.api_create_token(&auth, Some("A")).await;
    let path = format!("/api/v2/api_tokens/{id}");
    let visible = t.get(&path, &auth).await.json()["api_token"]["visible_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let put = |body: serde_json::Value| {
        let (t, path, auth) = (&t, &path, &auth);
        async move {
            let r = t.put(path, auth, &body).await;
            assert_eq!(r.status, 200, "{body}: {}", r.text());
        }
    };
    put(json!({"api_token": {"description": "B"}})).await;
    put(json!({"api_token": {"description": null}})).await;
    put(json!({"api_token": {"description": "C"}})).await;
    put(json!({"api_token": {"active": false}})).await;
    put(json!({"api_token": {"active": true}})).await;
    put(json!({"api_token": {"description": "D", "active": false}})).await;
    put(json!({"api_token": {"description": "D", "active": false}})).await; // no-op
    assert_eq!(t.delete(&path, &auth).await.status, 204);

    let events: Vec<AuditEvent> = t.audit(a.id).await.split_off(start);
    let got: Vec<_> = events.iter().map(summary).collect();
    let vis_label = format!("API token: {visible}");
    assert_eq!(
        got,
        vec![
            row("create", "Created", "api_token", "API token: A", ""),
            row(
                "update",
                "Updated",
                "api_token",
                "API token: B",
                r#"description changed from "A" to "B""#
            ),
            row(
                "update",
                "Updated",
                "api_token",
                &vis_label,
                r#"description changed from "B" to not set"#
            ),
            row(
                "update",
                "Updated",
                "api_token",
                "API token: C",
                r#"description changed from not set to "C""#
            ),
            row("deactivate", "Deactivated", "api_token", "API token: C", ""),
            row("reactivate", "Reactivated", "api_token", "API token: C", ""),
            row(
                "update",
                "Updated",
                "api_token",
                "API token: D",
                r#"description changed from "C" to "D""#
            ),
            row("deactivate", "Deactivated", "api_token", "API token: D", ""),
            row("destroy", "Deleted", "api_token", "API token: D", ""),
        ]
    );
    for e in &events {
        assert_eq!(e.account_id, a.id);
        assert_eq!(e.source_id, id.get());
        assert_eq!(e.actor_type, ActorType::User);
        assert_eq!(e.actor_id, Some(a.admin.id));
        assert_eq!(e.actor_name, a.admin.name);
        assert_eq!(e.ip_address.as_deref(), Some("127.0.0.1"));
        assert!(e.id > AuditEventId::new(0) && e.created_at > Timestamp::EPOCH);
    }
    assert!(t.audit_chain_intact(a.id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setting_and_user_changes_are_audited_and_no_ops_are_not() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await;
    let start = t.audit(a.id).await.len();
    let settings = |on: bool| json!({"settings": {"api": {"api_token_access": on}}});
    assert_eq!(
        t.put("/api/v2/account/settings", &auth, &settings(true)).await.status,
        200
    ); // no-op
    let email = format!("{}@example.com", unique("audited"));
    let r = t
        .post(
            "/api/v2/users",
            &auth,
            &json!({"user": {"name": "Val", "email": email, "role": "agent", "verified": true}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let uid = r.json()["user"]["id"].as_i64().unwrap();
    let upath = format!("/api/v2/users/{uid}");
    let r = t
        .put(
            &upath,
            &auth,
            &json!({"user": {"name": "Valerie", "role": "admin", "suspended": true}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = t
        .put(
            &upath,
            &auth,
            &json!({"user": {"name": "Valerie", "role": "admin", "suspended": true}}),
        )
        .await;
    assert_eq!(r.status, 200, "a no-op update");
    assert_eq!(t.delete(&upath, &auth).await.status, 204);
    // Last, because it turns off the credentials this test uses.
    assert_eq!(
        t.put("/api/v2/account/settings", &auth, &settings(false)).await.status,
        200
    );

    let events = t.audit(a.id).await.split_off(start);
    let got: Vec<_> = events.iter().map(summary).collect();
    assert_eq!(
        got,
        vec![
            row("create", "Created", "user", "User: Val", ""),
            row(
                "update",
                "Updated",
                "user",
                "User: Valerie",
                r#"name changed from "Val" to "Valerie"; role changed from "agent" to "admin"; suspended changed from false to true"#
            ),
            row("destroy", "Deleted", "user", "User: Valerie", ""),
            row(
                "update",
                "Updated",
                "account_setting",
                "Account settings",
                "api_token_access changed from true to false"
            ),
        ]
    );
    assert!(events.iter().take(3).all(|e| e.source_id == uid));
    assert_eq!(events[3].source_id, a.id.get());
    assert!(events
        .iter()
        .all(|e| e.actor_type == ActorType::User && e.ip_address.as_deref() == Some("127.0.0.1")));
    assert!(t.audit_chain_intact(a.id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_acts_as_the_operator_without_an_address() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let start = t.audit(a.id).await.len();
    let out =
        t.db.cli(&[
            "token",
            "create",
            "--account",
            &a.subdomain,
            "--description",
            "from the CLI",
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let out =
        t.db.cli(&[
            "account",
            "update",
            "--subdomain",
            &a.subdomain,
            "--name",
            "Renamed",
            "--api-token-access",
            "off",
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let events = t.audit(a.id).await.split_off(start);
    let got: Vec<_> = events.iter().map(summary).collect();
    assert_eq!(
        got,
        vec![
            row("create", "Created", "api_token", "API token: from the CLI", ""),
            row(
                "update",
                "Updated",
                "account",
                "Account: Renamed",
                &format!(r#"name changed from "Account {}" to "Renamed""#, a.subdomain)
            ),
            row(
                "update",
                "Updated",
                "account_setting",
                "Account settings",
                "api_token_access changed from true to false"
            ),
        ]
    );
    for e in &events {
        assert_eq!(e.actor_type, ActorType::Operator);
        assert_eq!(e.actor_id, None);
        assert_eq!(e.ip_address, None);
    }
    assert!(t.audit_chain_intact(a.id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_run_is_recorded_as_the_system() {
    let t = TestApp::spawn().await;
    let made = t
        .app
        .bootstrap("default", "admin@localhost")
        .await
        .unwrap()
        .expect("an empty database is bootstrapped");
    let account = t.store().await.account_by_subdomain("default").await.unwrap().unwrap();
    let events = t.audit(account.id).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].source_type, SourceType::Account);
    assert_eq!(events[1].source_type, SourceType::User);
    for e in &events {
        assert_eq!(e.action.as_str(), "create");
        assert_eq!(e.actor_type, ActorType::System);
        assert_eq!(e.actor_id, None);
        assert_eq!(e.ip_address, None);
        assert!(!e.change_description.contains(made.password.expose_secret()));
    }
    assert!(t.audit_chain_intact(account.id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_changes_write_no_event() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await;
    let agent = t.user(&a, Role::Agent, UserState::Verified).await;
    let (id, _) = t.api_create_token(&auth, None).await;
    let before = t.audit(a.id).await.len();
    let path = format!("/api/v2/api_tokens/{id}");
    assert_eq!(t.delete(&path, &auth).await.status, 422);
    assert_eq!(
        t.put(
            &path,
            &auth,
            &json!({"api_token": {"description": "ok", "active": "no"}})
        )
        .await
        .status,
        422,
        "an edit with one bad field changes nothing"
    );
    assert_eq!(
        t.post(
            "/api/v2/users",
            &auth,
            &json!({"user": {"name": "Dup", "email": agent.email}})
        )
        .await
        .status,
        422
    );
    assert_eq!(t.audit(a.id).await.len(), before);
    let rec = t.get(&path, &auth).await.json();
    assert_eq!(rec["api_token"]["description"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_event_breaks_the_chain_where_it_was_changed() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    t.token_described(&a, Some("one")).await;
    t.token_described(&a, Some("two")).await;
    let mut chain = t.store().await.audit_chain(a.id).await.unwrap();
    assert!(latchkey_core::audit::first_broken(chain.iter().map(|(e, h)| (e, *h))).is_none());
    let victim = chain[2].0.id;
    chain[2].0.change_description = "forged".into();
    assert_eq!(
        latchkey_core::audit::first_broken(chain.iter().map(|(e, h)| (e, *h))),
        Some(victim)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_address_comes_from_x_forwarded_for_only_behind_a_trusted_proxy() {
    for (trusted, expected) in [(false, "127.0.0.1"), (true, "203.0.113.9")] {
        let t = TestApp::spawn_with(|c| {
            if trusted {
                c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
            }
        })
        .await;
        let a = t.account().await;
        let auth = t.admin_auth(&a).await;
        let r = t
            .client
            .post(t.url("/api/v2/api_tokens"))
            .header("authorization", &auth)
            .header("x-forwarded-for", "198.51.100.1, 203.0.113.9")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let last = t.audit(a.id).await.pop().unwrap();
        assert_eq!(last.ip_address.as_deref(), Some(expected), "trusted: {trusted}");
    }
}
