//! Token hygiene (README.md, "Rotating a token" and "Token policy"):
//! rotation with a grace period, the account token policy, its sweeper and
//! its preview, `latchkey policy sweep`, and imports that keep their
//! history. Every test runs on SQLite and on PostgreSQL; time-dependent
//! rules run on an injected clock (no test waits for days).

use std::time::{Duration, Instant};

use latchkey_core::audit::{Action, ActorType};
use latchkey_core::id::TokenId;
use latchkey_core::time::Timestamp;
use latchkey_core::token::{NewToken, PlainToken, Restrictions, TokenPrefix};
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

const T0: i64 = 1_900_000_000;
const DAY: i64 = 86_400;

async fn rotate(t: &TestApp, admin: &str, id: TokenId, body: Value) -> Reply {
    t.post(&format!("/api/v2/api_tokens/{id}/rotate"), admin, &body).await
}

fn rotated(r: &Reply) -> (Value, String) {
    assert_eq!(r.status, 200, "{}", r.text());
    let rec = r.json()["api_token"].clone();
    let token = rec["token"].as_str().expect("the new token").to_owned();
    (rec, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_keeps_the_old_secret_for_its_grace_then_gives_the_identical_401() {
    let clock = TestClock::at(Timestamp::from_unix(T0));
    let t = TestApp::spawn_with_clock(clock.clone(), |_| {}).await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let (id, old) = t
        .api_create_token_with(&admin, json!({"description": "CI", "scopes": ["users:read"]}))
        .await;
    let r = rotate(&t, &admin, id, json!({"grace_period_seconds": 3600})).await;
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let (rec, new) = rotated(&r);
    assert_ne!(new, old);
    assert_eq!(rec["id"], json!(id), "the same token");
    assert_eq!(rec["description"], "CI");
    assert_eq!(rec["scopes"], json!(["users:read"]), "restrictions stay");
    assert_eq!(rec["previous_expires_at"], Timestamp::from_unix(T0 + 3600).rfc3339());
    assert!(rec["previous_visible_token"]
        .as_str()
        .is_some_and(|v| old.starts_with(&v[..7])));
    assert_eq!(rec["previous_last_used"], Value::Null);
    let (as_old, as_new) = (basic(&a.admin.email, &old), basic(&a.admin.email, &new));
    assert_eq!(t.me_status(&as_new).await, 200);
    clock.advance(3599);
    assert_eq!(t.me_status(&as_old).await, 200, "one second before the grace ends");
    // The admin sees that the old secret is still in use.
    let rec = t.get(&format!("/api/v2/api_tokens/{id}"), &admin).await.json()["api_token"].clone();
    assert_eq!(rec["previous_last_used"], Timestamp::from_unix(T0 + 3599).rfc3339());
    clock.advance(1);
    let unknown = t
        .get("/api/v2/users/me", &basic(&a.admin.email, &unknown_token()))
        .await;
    let gone = t.get("/api/v2/users/me", &as_old).await;
    assert_eq!(
        (gone.status, gone.text()),
        (unknown.status, unknown.text()),
        "identical to an unknown token"
    );
    assert_eq!(t.send(Method::GET, "/verify", Some(&as_old), None).await.status, 401);
    assert_eq!(t.me_status(&as_new).await, 200);
    // Audited as rotate, with the grace.
    let events: Vec<_> = t
        .audit(a.id)
        .await
        .into_iter()
        .filter(|e| e.action == Action::Rotate)
        .collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].change_description, "grace period 3600 s");
    assert_eq!(events[0].source_id, id.get());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_rotation_ends_the_first_grace_at_once_and_only_active_tokens_rotate() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let (id, first) = t.api_create_token_with(&admin, json!({})).await;
    let (_, second) = rotated(&rotate(&t, &admin, id, json!({"grace_period_seconds": 604800})).await);
    let (_, third) = rotated(&rotate(&t, &admin, id, json!({"grace_period_seconds": 60})).await);
    assert_eq!(
        t.me_status(&basic(&a.admin.email, &first)).await,
        401,
        "the first secret is gone"
    );
    assert_eq!(
        t.me_status(&basic(&a.admin.email, &second)).await,
        200,
        "in its own grace"
    );
    assert_eq!(t.me_status(&basic(&a.admin.email, &third)).await, 200);
    // No grace: the old secret stops with the answer.
    let (_, fourth) = rotated(&rotate(&t, &admin, id, json!({})).await);
    assert_eq!(t.me_status(&basic(&a.admin.email, &third)).await, 401);
    assert_eq!(t.me_status(&basic(&a.admin.email, &second)).await, 401);
    let as_fourth = basic(&a.admin.email, &fourth);
    assert_eq!(t.me_status(&as_fourth).await, 200);
    for bad in [
        json!({"grace_period_seconds": 604801}),
        json!({"grace_period_seconds": -1}),
        json!({"grace_period_seconds": "1"}),
    ] {
        let r = rotate(&t, &admin, id, bad.clone()).await;
        assert_eq!(r.status, 422, "{bad}: {}", r.text());
        assert_eq!(r.json()["details"]["grace_period_seconds"][0]["error"], "InvalidValue");
    }
    assert_eq!(rotate(&t, &admin, id, json!({"grace": 1})).await.status, 400);
    assert_eq!(t.me_status(&as_fourth).await, 200, "refused rotations changed nothing");
    // A deactivated token does not rotate.
    let (other, _) = t.api_create_token_with(&admin, json!({})).await;
    assert_eq!(
        t.put(
            &format!("/api/v2/api_tokens/{other}"),
            &admin,
            &json!({"api_token": {"active": false}})
        )
        .await
        .status,
        200
    );
    let r = rotate(&t, &admin, other, json!({})).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["details"]["base"][0]["error"], "TokenInactive");
    assert_eq!(
        rotate(&t, &admin, TokenId::new(999_999_999), json!({})).await.status,
        404
    );
}

/// A client that keeps using the old secret through a 2-second grace sees
/// 200 until the grace ends and 401 after, never anything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_under_load_switches_the_old_secret_off_once_at_the_end_of_its_grace() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let (id, old) = t.api_create_token_with(&admin, json!({})).await;
    let as_old = basic(&a.admin.email, &old);
    let rotated_at = Instant::now();
    let (_, new) = rotated(&rotate(&t, &admin, id, json!({"grace_period_seconds": 2})).await);
    let mut seen = Vec::new();
    while rotated_at.elapsed() < Duration::from_millis(3500) {
        let sent = rotated_at.elapsed();
        let status = t.send(Method::GET, "/verify", Some(&as_old), None).await.status;
        seen.push((sent, status));
    }
    assert!(seen.iter().all(|(_, s)| *s == 200 || *s == 401), "{seen:?}");
    let first_401 = seen
        .iter()
        .position(|(_, s)| *s == 401)
        .expect("the old secret stopped");
    assert!(
        seen[first_401..].iter().all(|(_, s)| *s == 401),
        "200 after a 401: {seen:?}"
    );
    assert!(first_401 > 0, "the old secret worked during its grace");
    // The grace is whole seconds: it ends between 1 and 2 seconds after the rotation.
    let (switch, _) = seen[first_401];
    assert!(
        switch > Duration::from_millis(900) && switch < Duration::from_millis(2300),
        "{switch:?}"
    );
    assert_eq!(t.me_status(&basic(&a.admin.email, &new)).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_policy_is_read_validated_audited_and_enforced_on_creation_and_edits() {
    let clock = TestClock::at(Timestamp::from_unix(T0));
    let t = TestApp::spawn_with_clock(clock.clone(), |_| {}).await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let settings = t.get("/api/v2/account/settings", &admin).await.json();
    assert_eq!(
        settings["settings"]["token_policy"],
        json!({"max_lifetime_days": null, "require_expiry": false, "require_assigned_user": false,
               "deactivate_unused_after_days": null, "delete_deactivated_after_days": null,
               "deactivate_legacy_tokens": false})
    );
    for (bad, field) in [
        (json!({"max_lifetime_days": 0}), "token_policy.max_lifetime_days"),
        (
            json!({"deactivate_unused_after_days": 3651}),
            "token_policy.deactivate_unused_after_days",
        ),
        (
            json!({"delete_deactivated_after_days": "30"}),
            "token_policy.delete_deactivated_after_days",
        ),
        (json!({"require_expiry": "yes"}), "token_policy.require_expiry"),
        (
            json!({"deactivate_legacy_tokens": 1}),
            "token_policy.deactivate_legacy_tokens",
        ),
    ] {
        let r = t
            .put(
                "/api/v2/account/settings",
                &admin,
                &json!({"settings": {"token_policy": bad}}),
            )
            .await;
        assert_eq!(r.status, 422, "{bad}: {}", r.text());
        assert_eq!(r.json()["details"][field][0]["error"], "InvalidValue", "{bad}");
    }
    let r = t
        .put(
            "/api/v2/account/settings",
            &admin,
            &json!({"settings": {"token_policy": {"nope": 1}}}),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = t
        .put(
            "/api/v2/account/settings",
            &admin,
            &json!({"settings": {"token_policy": {"max_lifetime_days": 90, "require_assigned_user": true}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["settings"]["token_policy"]["max_lifetime_days"], 90);
    assert_eq!(
        r.json()["settings"]["api"]["api_token_access"],
        true,
        "the rest is kept"
    );
    let change = t
        .audit(a.id)
        .await
        .into_iter()
        .rev()
        .find(|e| e.action == Action::Update)
        .expect("audited")
        .change_description;
    assert_eq!(
        change,
        "token_policy.max_lifetime_days changed from not set to 90; token_policy.require_assigned_user changed from false to true"
    );
    // Creation that breaks a rule names it.
    let at = |days: i64| Timestamp::from_unix(T0 + days * DAY).rfc3339();
    let cases = [
        (
            json!({"expires_at": at(30)}),
            "assigned_user_id",
            "require_assigned_user",
        ),
        (
            json!({"assigned_user_id": a.admin.id}),
            "expires_at",
            "max_lifetime_days",
        ),
        (
            json!({"assigned_user_id": a.admin.id, "expires_at": at(91)}),
            "expires_at",
            "max_lifetime_days",
        ),
    ];
    for (fields, field, rule) in cases {
        let r = t
            .post("/api/v2/api_tokens", &admin, &json!({"api_token": fields}))
            .await;
        assert_eq!(r.status, 422, "{fields}: {}", r.text());
        let detail = &r.json()["details"][field][0];
        assert_eq!(detail["error"], "PolicyViolation", "{fields}");
        assert!(
            detail["description"].as_str().is_some_and(|d| d.contains(rule)),
            "{detail}"
        );
    }
    let (id, _) = t
        .api_create_token_with(&admin, json!({"assigned_user_id": a.admin.id, "expires_at": at(90)}))
        .await;
    // An edit that breaks it is refused; one that keeps it is not.
    let r = t
        .put(
            &format!("/api/v2/api_tokens/{id}"),
            &admin,
            &json!({"api_token": {"assigned_user_id": null}}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["details"]["assigned_user_id"][0]["error"], "PolicyViolation");
    let r = t
        .put(
            &format!("/api/v2/api_tokens/{id}"),
            &admin,
            &json!({"api_token": {"description": "ok"}}),
        )
        .await;
    assert_eq!(r.status, 200);
}

/// Imports tokens of `account` with a history: (created days ago, last used
/// days ago, active).
async fn import_history(
    t: &TestApp,
    account: &TestAccount,
    now: i64,
    history: &[(i64, Option<i64>, bool)],
) -> Vec<TokenId> {
    let tokens = history
        .iter()
        .map(|&(created, used, active)| {
            let p = PlainToken::generate(&TokenPrefix::default());
            NewToken {
                hash: p.hash(),
                visible_token: p.visible(),
                description: Some(format!("created {created} days ago")),
                active,
                user_id: None,
                restrictions: Restrictions::default(),
                created_at: Some(Timestamp::from_unix(now - created * DAY)),
                last_used: used.map(|d| Timestamp::from_unix(now - d * DAY)),
                legacy: false,
            }
        })
        .collect();
    t.app
        .import_tokens(&t.operator(&account.subdomain).await, tokens)
        .await
        .expect("import")
        .into_iter()
        .map(|t| t.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_deactivates_the_unused_and_deletes_the_long_deactivated_once_each() {
    let clock = TestClock::at(Timestamp::from_unix(T0));
    let t = TestApp::spawn_with_clock(clock.clone(), |_| {}).await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let ids = import_history(
        &t,
        &a,
        T0,
        &[
            (100, Some(31), true),
            (100, Some(29), true),
            (31, None, true),
            (5, None, false),
        ],
    )
    .await;
    let r = t
        .put(
            "/api/v2/account/settings",
            &admin,
            &json!({"settings": {"token_policy": {"deactivate_unused_after_days": 30, "delete_deactivated_after_days": 60}}}),
        )
        .await;
    assert_eq!(r.status, 200);
    // The preview says what a sweep would do, and changes nothing.
    let preview = t
        .post(
            "/api/v2/account/token_policy/preview",
            &admin,
            &json!({"token_policy": {"deactivate_unused_after_days": 20}}),
        )
        .await;
    assert_eq!(preview.status, 200, "{}", preview.text());
    let names = |v: &Value| -> Vec<i64> {
        v.as_array()
            .expect("list")
            .iter()
            .map(|r| r["id"].as_i64().expect("id"))
            .collect()
    };
    assert_eq!(
        names(&preview.json()["would_deactivate"]).len(),
        3,
        "20 days catches all three old ones"
    );
    assert!(names(&preview.json()["would_delete"]).is_empty());
    let done = t
        .app
        .sweep(None, None, false, false)
        .await
        .expect("sweep")
        .expect("the lease");
    let deactivated: Vec<TokenId> = done.iter().map(|(_, tok, _)| tok.id).collect();
    assert_eq!(deactivated.len(), 2, "{deactivated:?}");
    assert!(deactivated.contains(&ids[0]) && deactivated.contains(&ids[2]));
    // A second sweep changes nothing.
    assert!(t
        .app
        .sweep(None, None, false, false)
        .await
        .expect("sweep")
        .expect("lease")
        .is_empty());
    let events: Vec<_> = t
        .audit(a.id)
        .await
        .into_iter()
        .filter(|e| e.actor_type == ActorType::System)
        .collect();
    assert_eq!(events.len(), 2);
    assert!(events
        .iter()
        .all(|e| e.action == Action::Deactivate && e.change_description == "unused for 30 days"));
    // The swept tokens stop at once on this node.
    let rec = t.get(&format!("/api/v2/api_tokens/{}", ids[0]), &admin).await.json();
    assert_eq!(rec["api_token"]["active"], false);
    // 61 days later the deactivated ones are deleted, each once.
    clock.advance(61 * DAY);
    let done = t
        .app
        .sweep(None, None, false, false)
        .await
        .expect("sweep")
        .expect("lease");
    let deleted = done
        .iter()
        .filter(|(_, _, act)| matches!(act, latchkey_core::policy::SweepAction::Delete { .. }))
        .count();
    // The two swept then, and the one imported deactivated (it counts from the import).
    assert_eq!(deleted, 3);
    let destroyed = t
        .audit(a.id)
        .await
        .into_iter()
        .filter(|e| e.action == Action::Destroy)
        .count();
    assert_eq!(destroyed, 3);
    // The admin's own token has gone unused as long: a new one reads on.
    assert_eq!(t.me_status(&admin).await, 401);
    let admin = t.admin_auth(&a).await;
    let kept = t.get(&format!("/api/v2/api_tokens/{}", ids[1]), &admin).await;
    assert_eq!(
        kept.json()["api_token"]["active"],
        false,
        "deactivated now, deleted later"
    );
    assert_eq!(
        t.get(&format!("/api/v2/api_tokens/{}", ids[0]), &admin).await.status,
        404
    );
    assert!(t.audit_chain_intact(a.id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_sweeper_runs_every_interval() {
    let t = TestApp::spawn_with(|c| c.sweep_interval = Duration::from_millis(200)).await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let now = t.app.now().unix();
    let ids = import_history(&t, &a, now, &[(40, Some(40), true)]).await;
    let r = t
        .put(
            "/api/v2/account/settings",
            &admin,
            &json!({"settings": {"token_policy": {"deactivate_unused_after_days": 30}}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let started = Instant::now();
    loop {
        let rec = t.get(&format!("/api/v2/api_tokens/{}", ids[0]), &admin).await.json();
        if rec["api_token"]["active"] == false {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the sweeper never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_sweep_on_the_cli_previews_a_later_date_and_then_sweeps() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let now = t.app.now().unix();
    let ids = import_history(&t, &a, now, &[(20, Some(20), true), (2, Some(1), true)]).await;
    let r = t
        .put(
            "/api/v2/account/settings",
            &admin,
            &json!({"settings": {"token_policy": {"deactivate_unused_after_days": 30}}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let next_month = Timestamp::from_unix(now + 15 * DAY).rfc3339();
    let out = cli(
        &t.db.url,
        &[
            "policy",
            "sweep",
            "--account",
            &a.subdomain,
            "--as-of",
            &next_month,
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("would deactivate  (unused for 30 days)"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(&format!("{:>6}", ids[0].get())), "{}", out.stdout);
    assert!(out.stdout.contains("sweep would change 1 tokens"), "{}", out.stdout);
    let today = cli(&t.db.url, &["policy", "sweep"]).await;
    assert_eq!(today.code, 0, "{}", today.stderr);
    assert!(today.stdout.contains("sweep changed 0 tokens"), "{}", today.stdout);
    let later = cli(&t.db.url, &["policy", "sweep", "--as-of", &next_month]).await;
    assert!(later.stdout.contains("sweep changed 1 tokens"), "{}", later.stdout);
    // The running server picks the deactivation up like any other change.
    let started = Instant::now();
    while t.get(&format!("/api/v2/api_tokens/{}", ids[0]), &admin).await.json()["api_token"]["active"] != false {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the server never saw the sweep"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let bad = cli(&t.db.url, &["policy", "sweep", "--as-of", "next week"]).await;
    assert_eq!(bad.code, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_keeps_created_at_and_last_used() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tokens.jsonl");
    let hash = "ab".repeat(32);
    std::fs::write(
        &file,
        format!(
            "{{\"token_sha256\": \"{hash}\", \"visible_token\": \"zd_abcd…wxyz\", \"created_at\": \"2024-01-02T03:04:05Z\", \"last_used\": \"2025-06-07T08:09:10+02:00\"}}\n"
        ),
    )
    .expect("write");
    let out = cli(
        &t.db.url,
        &[
            "token",
            "import",
            "--account",
            &a.subdomain,
            "--file",
            file.to_str().expect("path"),
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let list = t.get("/api/v2/api_tokens", &admin).await.json();
    let rec = list["api_tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|r| r["visible_token"] == "zd_abcd…wxyz")
        .expect("imported")
        .clone();
    assert_eq!(rec["created_at"], "2024-01-02T03:04:05Z");
    assert_eq!(rec["last_used"], "2025-06-07T06:09:10Z");
    std::fs::write(
        &file,
        format!(
            "{{\"token_sha256\": \"{}\", \"visible_token\": \"x\", \"created_at\": \"2999-01-01T00:00:00Z\"}}\n",
            "cd".repeat(32)
        ),
    )
    .expect("write");
    let out = cli(
        &t.db.url,
        &[
            "token",
            "import",
            "--account",
            &a.subdomain,
            "--file",
            file.to_str().expect("path"),
        ],
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("line 1") && out.stderr.contains("future"),
        "{}",
        out.stderr
    );
}
