//! docs/api.md, "Audit log": reading the audit log over the API (records, every
//! filter, cursor pages that stay stable while events are written, plan and
//! role gating, 400s for bad queries), exporting it as CSV and JSON Lines in
//! constant memory, and `latchkey audit verify` catching a row edited or
//! deleted behind latchkey's back.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use latchkey_core::account::Plan;
use latchkey_core::audit::{Action, AuditEvent, SourceType};
use latchkey_core::id::{AccountId, AuditEventId, UserId};
use latchkey_core::time::{rfc3339, Timestamp};
use latchkey_core::token::TokenPatch;
use latchkey_core::user::Role;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

const UNAVAILABLE: &str = r#"{"error":"Forbidden","description":"The audit log is available on Enterprise plans."}"#;
const RECORD_FIELDS: [&str; 13] = [
    "id",
    "url",
    "action",
    "action_label",
    "actor_id",
    "actor_type",
    "actor_name",
    "source_id",
    "source_type",
    "source_label",
    "change_description",
    "ip_address",
    "created_at",
];
/// 2026-11-27T00:00:00Z: seeded events are one minute apart from here.
const SEED_EPOCH: Timestamp = Timestamp::from_unix(1_795_737_600);

/// The SQL for a line break and for 32 zero bytes, which the backends
/// spell differently.
fn line_break(db: &Direct) -> &'static str {
    if db.is_postgres() {
        "chr(10)"
    } else {
        "char(10)"
    }
}

fn zero_hash(db: &Direct) -> &'static str {
    if db.is_postgres() {
        "decode(repeat('00', 32), 'hex')"
    } else {
        "zeroblob(32)"
    }
}

fn ints(args: &[i64]) -> Vec<DirectArg> {
    args.iter().map(|a| DirectArg::Int(*a)).collect()
}

/// Inserts `n` events into an account in one statement. Row `i` (from 1)
/// varies every filtered field with `i`, is created at
/// `SEED_EPOCH + 60 i`, and has a description with a comma and quotes (and a
/// line break when `line_breaks`). Their hashes are not a chain.
async fn seed(db: &Direct, account_id: AccountId, n: i64, line_breaks: bool) {
    let newline = if line_breaks { line_break(db) } else { "' '" };
    let zero = zero_hash(db);
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT CAST(1 AS BIGINT) UNION ALL SELECT i + 1 FROM n WHERE i < $2) \
         INSERT INTO audit_events (account_id, action, actor_type, actor_id, actor_name, source_type, source_id, \
           source_label, change_description, ip_address, created_at, hash) \
         SELECT $1, \
           CASE i % 6 WHEN 0 THEN 'create' WHEN 1 THEN 'update' WHEN 2 THEN 'deactivate' \
             WHEN 3 THEN 'reactivate' WHEN 4 THEN 'rotate' ELSE 'destroy' END, \
           CASE WHEN i % 3 = 0 THEN 'operator' ELSE 'user' END, \
           CASE WHEN i % 3 = 0 THEN NULL ELSE 1000 + i % 3 END, \
           CASE WHEN i % 3 = 0 THEN 'Operator' ELSE 'Seeded, \"user\"' END, \
           CASE i % 4 WHEN 0 THEN 'api_token' WHEN 1 THEN 'user' WHEN 2 THEN 'account_setting' ELSE 'account' END, \
           1000 + i % 5, \
           'API token: a, \"b\"', \
           'event ' || i || ', \"quoted\"' || {newline} || 'then more', \
           CASE i % 3 WHEN 0 THEN NULL WHEN 1 THEN '10.0.0.1' ELSE '2001:db8::1' END, \
           $3 + 60 * i, \
           {zero} \
         FROM n"
    );
    assert_eq!(
        db.execute(&sql, &ints(&[account_id.get(), n, SEED_EPOCH.unix()])).await,
        n as u64
    );
}

/// Follows `links.next` from `first` to the end; every page's events' ids
/// in the order they were served.
async fn walk(t: &TestApp, auth: &str, first: &str) -> Vec<AuditEventId> {
    let mut ids = Vec::new();
    let mut url = Some(t.url(first));
    while let Some(u) = url {
        let r = get_url(t, &u, auth).await;
        assert_eq!(r.status, 200, "{u}: {}", r.text());
        let v = r.json();
        ids.extend(page_ids(&v));
        url = v["links"]["next"].as_str().map(str::to_owned);
    }
    ids
}

fn page_ids(v: &Value) -> Vec<AuditEventId> {
    v["audit_logs"]
        .as_array()
        .expect("audit_logs")
        .iter()
        .map(|e| AuditEventId::new(e["id"].as_i64().expect("id")))
        .collect()
}

async fn get_url(t: &TestApp, url: &str, auth: &str) -> Reply {
    let r = t
        .client
        .get(url)
        .header("authorization", auth)
        .send()
        .await
        .expect("request");
    Reply::from(r).await
}

fn ids_where(events: &[AuditEvent], keep: impl Fn(&AuditEvent) -> bool, newest_first: bool) -> Vec<AuditEventId> {
    let mut ids: Vec<AuditEventId> = events.iter().filter(|e| keep(e)).map(|e| e.id).collect();
    if newest_first {
        ids.reverse();
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokens_events_are_listed_newest_first_with_the_spec_record() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await;
    let (id, _) = t.api_create_token(&auth, Some("Jira sync")).await;
    let path = format!("/api/v2/api_tokens/{id}");
    for active in [false, true] {
        let r = t.put(&path, &auth, &json!({"api_token": {"active": active}})).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }

    let r = t
        .get(
            &format!("/api/v2/audit_logs.json?filter[source_type]=api_token&filter[source_id]={id}"),
            &auth,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some(JSON_CONTENT_TYPE));
    let v = r.json();
    let list = v["audit_logs"].as_array().unwrap();
    let actions: Vec<&str> = list.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["reactivate", "deactivate", "create"]);
    let stored = t.audit(a.id).await;
    for rec in list {
        let keys: Vec<&str> = rec.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, RECORD_FIELDS);
        let e = stored.iter().find(|e| Some(e.id.get()) == rec["id"].as_i64()).unwrap();
        assert_eq!(
            rec,
            &json!({
                "id": e.id,
                "url": t.url(&format!("/api/v2/audit_logs/{}.json", e.id)),
                "action": e.action.as_str(),
                "action_label": e.action.label(),
                "actor_id": a.admin.id,
                "actor_type": "user",
                "actor_name": a.admin.name,
                "source_id": id,
                "source_type": "api_token",
                "source_label": "API token: Jira sync",
                "change_description": "",
                "ip_address": "127.0.0.1",
                "created_at": rfc3339(e.created_at),
            })
        );
    }
    let labels: Vec<&str> = list.iter().map(|e| e["action_label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["Reactivated", "Deactivated", "Created"]);
    assert_eq!(v["meta"]["has_more"], false);
    assert_eq!(v["links"], json!({"next": null, "prev": null}));

    // Its url reads the same record.
    let url = list[0]["url"].as_str().unwrap();
    let one = get_url(&t, url, &auth).await;
    assert_eq!(one.status, 200, "{}", one.text());
    assert_eq!(one.json(), json!({"audit_log": list[0]}));
    let bare = t.get(&format!("/api/v2/audit_logs/{}", list[0]["id"]), &auth).await;
    assert_eq!(bare.json(), one.json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_and_combination_returns_exactly_the_matching_events() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await;
    let raw = t.db.direct().await;
    seed(&raw, a.id, 300, true).await;
    let other = t.account().await;
    seed(&raw, other.id, 50, true).await;
    let all = t.audit(a.id).await;
    assert!(all.len() > 300);

    let at = |i: i64| rfc3339(SEED_EPOCH.plus_secs(60 * i));
    type Keep = Box<dyn Fn(&AuditEvent) -> bool>;
    let cases: Vec<(String, Keep)> = vec![
        ("".into(), Box::new(|_| true)),
        (
            "filter[source_type]=api_token".into(),
            Box::new(|e| e.source_type == SourceType::ApiToken),
        ),
        (
            "filter%5Bsource_type%5D=apitoken".into(),
            Box::new(|e| e.source_type == SourceType::ApiToken),
        ),
        (
            "filter[source_type]=account_setting".into(),
            Box::new(|e| e.source_type == SourceType::AccountSetting),
        ),
        (
            "filter[source_type]=user&filter[source_id]=1003".into(),
            Box::new(|e| e.source_type == SourceType::User && e.source_id == 1003),
        ),
        (
            "filter[actor_id]=1002".into(),
            Box::new(|e| e.actor_id == Some(UserId::new(1002))),
        ),
        (
            "filter[ip_address]=10.0.0.1".into(),
            Box::new(|e| e.ip_address.as_deref() == Some("10.0.0.1")),
        ),
        (
            // A non-canonical spelling of the same address.
            "filter[ip_address]=2001:0DB8:0:0:0:0:0:1".into(),
            Box::new(|e| e.ip_address.as_deref() == Some("2001:db8::1")),
        ),
        ("filter[action]=rotate".into(), Box::new(|e| e.action == Action::Rotate)),
        (
            format!("filter[created_at][]={}&filter[created_at][]={}", at(10), at(20)),
            Box::new(|e| (SEED_EPOCH.plus_secs(600)..=SEED_EPOCH.plus_secs(1200)).contains(&e.created_at)),
        ),
        (
            format!(
                "filter[source_type]=api_token&filter[action]=update&filter[ip_address]=2001:db8::1\
                 &filter[created_at][]={}&filter[created_at][]={}",
                at(1),
                at(250)
            ),
            Box::new(|e| {
                e.source_type == SourceType::ApiToken
                    && e.action == Action::Update
                    && e.ip_address.as_deref() == Some("2001:db8::1")
                    && (SEED_EPOCH.plus_secs(60)..=SEED_EPOCH.plus_secs(15_000)).contains(&e.created_at)
            }),
        ),
        (
            "filter[actor_id]=1001&filter[action]=destroy".into(),
            Box::new(|e| e.actor_id == Some(UserId::new(1001)) && e.action == Action::Destroy),
        ),
        (
            "filter[action]=create&filter[actor_id]=999999".into(),
            Box::new(|_| false),
        ),
    ];
    for (query, keep) in &cases {
        for (sort, newest_first) in [("", true), ("&sort=-created_at", true), ("&sort=created_at", false)] {
            let first = format!("/api/v2/audit_logs?page[size]=17&{query}{sort}");
            let got = walk(&t, &auth, &first).await;
            let want = ids_where(&all, keep, newest_first);
            assert_eq!(got, want, "{first}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_pages_walk_forwards_and_back_in_both_orders() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await;
    seed(&t.db.direct().await, a.id, 23, false).await;
    let all: Vec<AuditEventId> = t.audit(a.id).await.iter().map(|e| e.id).collect();

    for (sort, newest_first) in [("-created_at", true), ("created_at", false)] {
        let mut want = all.clone();
        if newest_first {
            want.reverse();
        }
        let mut pages: Vec<Vec<AuditEventId>> = Vec::new();
        let mut url = Some(t.url(&format!("/api/v2/audit_logs?sort={sort}&page[size]=5")));
        let mut first = true;
        while let Some(u) = url {
            let v = get_url(&t, &u, &auth).await.json();
            let ids = page_ids(&v);
            assert_eq!(v["meta"]["before_cursor"].is_null(), ids.is_empty());
            assert_eq!(v["links"]["prev"].is_null(), first, "{u}");
            // Links carry the sort, unless it is the default.
            if !first {
                assert_eq!(u.contains("sort=created_at"), sort == "created_at", "{u}");
            }
            pages.push(ids);
            first = false;
            url = v["links"]["next"].as_str().map(str::to_owned);
            assert_eq!(v["meta"]["has_more"], url.is_some());
        }
        assert_eq!(pages.concat(), want, "{sort}");
        assert!(pages.iter().all(|p| p.len() <= 5) && pages.len() == want.len().div_ceil(5));

        // Back from the last page with links.prev: the same pages, reversed.
        let last = t
            .get(
                &format!(
                    "/api/v2/audit_logs?sort={sort}&page[size]=5&page[after]={}",
                    cursor(pages[pages.len() - 2].last().copied().unwrap())
                ),
                &auth,
            )
            .await
            .json();
        assert_eq!(page_ids(&last), pages[pages.len() - 1]);
        let mut back = vec![page_ids(&last)];
        let mut url = last["links"]["prev"].as_str().map(str::to_owned);
        while let Some(u) = url {
            let v = get_url(&t, &u, &auth).await.json();
            back.push(page_ids(&v));
            url = v["links"]["prev"].as_str().map(str::to_owned);
            if url.is_none() {
                assert_eq!(v["meta"]["has_more"], false);
                assert!(v["links"]["next"].is_string());
            }
        }
        back.reverse();
        assert_eq!(back, pages, "{sort}");
    }
}

/// The opaque cursor of an id, as the API hands them out.
fn cursor(id: AuditEventId) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("id:{id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_sees_every_event_that_existed_at_its_start_exactly_once_while_1000_are_written() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await;
    seed(&t.db.direct().await, a.id, 1000, false).await;
    let token_id = t.token_described(&a, Some("busy")).await.id;

    for sort in ["-created_at", "created_at"] {
        let existing: Vec<AuditEventId> = t.audit(a.id).await.iter().map(|e| e.id).collect();
        // The walk begins with its first page; only then does the writer start.
        let first = t
            .get(&format!("/api/v2/audit_logs?sort={sort}&page[size]=13"), &auth)
            .await
            .json();
        let mut seen = page_ids(&first);
        let mut url = first["links"]["next"].as_str().map(str::to_owned);
        let written = Arc::new(AtomicUsize::new(0));
        let writer = {
            let (app, written, access) = (t.app.clone(), written.clone(), t.operator(&a.subdomain).await);
            tokio::spawn(async move {
                for i in 0..1000 {
                    let patch = TokenPatch {
                        description: Some(Some(format!("busy {sort} {i}"))),
                        ..TokenPatch::default()
                    };
                    app.update_token(&access, token_id, &patch).await.expect("update token");
                    written.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        // Before each further page, wait for the writer to write a few more
        // events, so that writes land between every two pages.
        let mut pages = 1;
        while let Some(u) = url {
            let want = (pages * 9).min(1000);
            tokio::time::timeout(Duration::from_secs(60), async {
                while written.load(Ordering::SeqCst) < want {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await
            .expect("the writer keeps writing");
            let v = get_url(&t, &u, &auth).await.json();
            seen.extend(page_ids(&v));
            url = v["links"]["next"].as_str().map(str::to_owned);
            pages += 1;
        }
        let during = written.load(Ordering::SeqCst);
        writer.await.unwrap();
        assert!(
            during >= 500,
            "the walk overlapped the writes ({during} written during it)"
        );
        let unique: HashSet<AuditEventId> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "{sort}: an event was served twice");
        let old: Vec<AuditEventId> = seen.iter().copied().filter(|id| existing.contains(id)).collect();
        let mut want = existing.clone();
        if sort == "-created_at" {
            want.reverse();
            assert_eq!(seen, want, "newest first, nothing written during the walk shows up");
        } else {
            assert_eq!(old, want, "oldest first: every existing event once, in order");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_is_for_admins_on_enterprise_plans_only() {
    let t = TestApp::spawn().await;
    let paths = |id: AuditEventId| {
        vec![
            "/api/v2/audit_logs".to_owned(),
            format!("/api/v2/audit_logs/{id}.json"),
            "/api/v2/audit_logs/export?format=csv".to_owned(),
            "/api/v2/audit_logs/export.json?format=jsonl".to_owned(),
        ]
    };
    for plan in [Plan::Team, Plan::Growth, Plan::Professional] {
        let a = t.account_with(plan, true).await;
        let auth = t.admin_auth(&a).await;
        let id = t.audit(a.id).await[0].id;
        for p in paths(id) {
            let r = t.get(&p, &auth).await;
            assert_eq!((r.status, r.text()), (403, UNAVAILABLE.to_owned()), "{plan:?} {p}");
        }
    }
    for plan in [Plan::Enterprise, Plan::EnterprisePlus] {
        let a = t.account_with(plan, true).await;
        let auth = t.admin_auth(&a).await;
        let id = t.audit(a.id).await[0].id;
        for p in paths(id) {
            assert_eq!(t.get(&p, &auth).await.status, 200, "{plan:?} {p}");
        }
        let token = t.token(&a).await;
        for role in [Role::Agent, Role::EndUser] {
            let u = t.user(&a, role, UserState::Verified).await;
            for p in paths(id) {
                let r = t.get(&p, &basic(&u.email, &token.plain)).await;
                assert_eq!((r.status, r.text()), (403, FORBIDDEN.to_owned()), "{role:?} {p}");
            }
        }
        for p in paths(id) {
            let r = t.send(Method::GET, &p, None, None).await;
            assert_eq!((r.status, r.text()), (401, NOT_AUTHENTICATED.to_owned()), "{p}");
        }
        // Append-only: nothing changes or deletes a record.
        let one = format!("/api/v2/audit_logs/{id}");
        for m in [Method::PUT, Method::DELETE, Method::POST, Method::PATCH] {
            let r = t.send(m.clone(), &one, Some(&auth), Some(&json!({}))).await;
            assert_eq!(r.status, 405, "{m} {one}");
        }
        assert_eq!(
            t.send(Method::POST, "/api/v2/audit_logs", Some(&auth), Some(&json!({})))
                .await
                .status,
            405
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_accounts_events_and_unknown_ids_are_not_found() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let b = t.account().await;
    let auth = t.admin_auth(&a).await;
    let theirs = t.audit(b.id).await[0].id;
    for p in [
        format!("/api/v2/audit_logs/{theirs}"),
        "/api/v2/audit_logs/999999999".to_owned(),
        "/api/v2/audit_logs/0".to_owned(),
        "/api/v2/audit_logs/-1".to_owned(),
        "/api/v2/audit_logs/abc".to_owned(),
        "/api/v2/audit_logs/99999999999999999999999".to_owned(),
    ] {
        let r = t.get(&p, &auth).await;
        assert_eq!((r.status, r.text()), (404, NOT_FOUND.to_owned()), "{p}");
    }
    // Nor do they show up in a listing, even asked for by id.
    let ids = walk(
        &t,
        &auth,
        &format!(
            "/api/v2/audit_logs?filter[source_type]=account&filter[source_id]={}",
            b.id
        ),
    )
    .await;
    assert!(ids.is_empty());
    let mine: Vec<AuditEventId> = t.audit(a.id).await.iter().rev().map(|e| e.id).collect();
    assert_eq!(walk(&t, &auth, "/api/v2/audit_logs").await, mine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_filters_cursors_and_dates_answer_400_with_the_spec_body() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await;
    let d1 = "2026-11-27T00:00:00Z";
    let d2 = "2026-11-28T00:00:00Z";
    let bad = [
        "filter[source_type]=token".to_owned(),
        "filter[source_type]=".to_owned(),
        "filter[source_id]=7".to_owned(),
        "filter[source_type]=api_token&filter[source_id]=abc".to_owned(),
        "filter[source_type]=api_token&filter[source_id]=0".to_owned(),
        "filter[source_type]=api_token&filter[source_id]=99999999999999999999".to_owned(),
        "filter[actor_id]=-1".to_owned(),
        "filter[actor_id]=1.5".to_owned(),
        "filter[ip_address]=localhost".to_owned(),
        "filter[ip_address]=10.0.0.1/8".to_owned(),
        "filter[action]=delete".to_owned(),
        "filter[action]=create&filter[action]=update".to_owned(),
        format!("filter[created_at][]={d1}"),
        format!("filter[created_at][]={d1}&filter[created_at][]={d2}&filter[created_at][]={d2}"),
        format!("filter[created_at][]={d2}&filter[created_at][]={d1}"),
        format!("filter[created_at][]=2026-11-27&filter[created_at][]={d2}"),
        format!("filter[created_at][]={d1}&filter[created_at][]=tomorrow"),
        format!("filter[created_at][]={d1}&filter[created_at][]=2026-13-01T00:00:00Z"),
        format!("filter[created_at]={d1}&filter[created_at]={d2}"),
        "filter[created_at][]=%FF%FE&filter[created_at][]=x".to_owned(),
        "filter[colour]=red".to_owned(),
        "filter[]=x".to_owned(),
        "filter[sort]=created_at".to_owned(),
        "sort=id".to_owned(),
        "sort=".to_owned(),
        "sort=created_at&sort=-created_at".to_owned(),
        "page[size]=0".to_owned(),
        "page[size]=101".to_owned(),
        "page[size]=-5".to_owned(),
        "page[size]=ten".to_owned(),
        "page[after]=garbage".to_owned(),
        "page[after]=".to_owned(),
        "page[before]=aWQ6LTE".to_owned(),
        format!(
            "page[after]={}&page[before]={}",
            cursor(AuditEventId::new(5)),
            cursor(AuditEventId::new(9))
        ),
        format!("page[after]={}", "A".repeat(5000)),
    ];
    for q in &bad {
        let r = t.get(&format!("/api/v2/audit_logs?{q}"), &auth).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        let v = r.json();
        assert_eq!(v["error"], "BadRequest", "{q}");
        let description = v["description"].as_str().unwrap();
        assert!(!description.is_empty() && !description.contains("red") && !description.contains("tomorrow"));
        assert_eq!(v.as_object().unwrap().len(), 2);
    }
    // The export takes the same filters, and a format.
    for q in [
        "",
        "format=xml",
        "format=csv&format=jsonl",
        "format=csv&filter[source_id]=1",
        "format=jsonl&sort=up",
    ] {
        let r = t.get(&format!("/api/v2/audit_logs/export?{q}"), &auth).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        assert_eq!(r.json()["error"], "BadRequest");
    }
    // A cursor past either end is simply an empty page.
    for q in [
        format!("page[before]={}", cursor(AuditEventId::new(0))),
        format!("page[after]={}", cursor(AuditEventId::new(i64::MAX))),
    ] {
        let v = t
            .get(&format!("/api/v2/audit_logs?sort=created_at&{q}"), &auth)
            .await
            .json();
        assert_eq!(v["audit_logs"], json!([]), "{q}");
        assert_eq!(
            v["meta"],
            json!({"has_more": false, "after_cursor": null, "before_cursor": null})
        );
    }
}

/// Parses a CSV export into header and rows with a real CSV reader.
fn parse_csv(body: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::ReaderBuilder::new().has_headers(true).from_reader(body);
    let header = r.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_hold_every_matching_record_in_csv_and_json_lines() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await;
    // Real events whose texts need quoting, then 2,500 seeded ones (more
    // than two of the export's batches) with commas, quotes and newlines.
    let (id, _) = t.api_create_token(&auth, Some(r#"Jira, "prod""#)).await;
    let r = t
        .put(
            &format!("/api/v2/api_tokens/{id}"),
            &auth,
            &json!({"api_token": {"description": "a,b \"c\""}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    seed(&t.db.direct().await, a.id, 2500, true).await;
    let all = t.audit(a.id).await;

    // JSON Lines: each line is the listing's record.
    let r = t.get("/api/v2/audit_logs/export?format=jsonl", &auth).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/jsonl; charset=utf-8"));
    assert_eq!(
        r.header("content-disposition").map(str::to_owned),
        Some(format!("attachment; filename=\"audit-log-{}.jsonl\"", a.subdomain))
    );
    let text = r.text();
    assert!(text.ends_with('\n'));
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ids: Vec<AuditEventId> = lines
        .iter()
        .map(|l| AuditEventId::new(l["id"].as_i64().unwrap()))
        .collect();
    assert_eq!(ids, ids_where(&all, |_| true, true));
    let listed = t.get("/api/v2/audit_logs?page[size]=3", &auth).await.json();
    assert_eq!(listed["audit_logs"].as_array().unwrap()[..], lines[..3]);

    // CSV: the same records, quoted so that a CSV reader gets them back.
    let r = t
        .get("/api/v2/audit_logs/export.json?format=csv&sort=created_at", &auth)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    let (header, rows) = parse_csv(&r.body);
    assert_eq!(header, RECORD_FIELDS);
    assert_eq!(rows.len(), all.len());
    for (row, e) in rows.iter().zip(&all) {
        assert_eq!(row[0], e.id.to_string());
        assert_eq!(row[1], t.url(&format!("/api/v2/audit_logs/{}.json", e.id)));
        assert_eq!(row[2], e.action.as_str());
        assert_eq!(row[3], e.action.label());
        assert_eq!(row[4], e.actor_id.map(|n| n.to_string()).unwrap_or_default());
        assert_eq!(row[6], e.actor_name);
        assert_eq!(row[9], e.source_label);
        assert_eq!(row[10], e.change_description);
        assert_eq!(row[11], e.ip_address.clone().unwrap_or_default());
        assert_eq!(row[12], rfc3339(e.created_at));
    }
    assert!(rows
        .iter()
        .any(|r| r[10].contains('\n') && r[10].contains("\"quoted\"") && r[10].contains(',')));
    assert!(rows.iter().any(|r| r[9] == r#"API token: Jira, "prod""#));
    assert!(rows
        .iter()
        .any(|r| r[10] == r#"description changed from "Jira, "prod"" to "a,b "c"""#));

    // Filters apply to the export too.
    let r = t
        .get(
            &format!("/api/v2/audit_logs/export?format=csv&filter[source_type]=apitoken&filter[source_id]={id}"),
            &auth,
        )
        .await;
    let (_, rows) = parse_csv(&r.body);
    let actions: Vec<&str> = rows.iter().map(|r| r[2].as_str()).collect();
    assert_eq!(actions, ["update", "create"]);
    // No match: the header alone.
    let r = t
        .get("/api/v2/audit_logs/export?format=csv&filter[actor_id]=424242", &auth)
        .await;
    assert_eq!(r.text(), format!("{}\n", RECORD_FIELDS.join(",")));
    let r = t
        .get("/api/v2/audit_logs/export?format=jsonl&filter[actor_id]=424242", &auth)
        .await;
    assert_eq!((r.status, r.text()), (200, String::new()));
}

/// VmHWM (peak resident set) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Reads a response to the end without keeping it; (bytes, newlines).
async fn drain(mut r: reqwest::Response) -> (u64, u64) {
    let (mut bytes, mut lines) = (0u64, 0u64);
    while let Some(chunk) = r.chunk().await.expect("body") {
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
    }
    (bytes, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporting_200000_events_keeps_the_server_memory_flat() {
    const EVENTS: i64 = 200_000;
    let db = sqlite_database();
    let server = ServeProcess::start(&db.url, &[]).await;
    let pid = server.child.id().expect("running");
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
    let out = db.cli(&["token", "create", "--account", "default"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let auth = basic("admin@localhost", out.stdout.trim());
    let raw = db.direct().await;
    let Direct::Sqlite(pool) = &raw else {
        unreachable!("this test runs the binary on a SQLite file")
    };
    let account: i64 = sqlx::query_scalar("SELECT id FROM accounts WHERE subdomain = 'default'")
        .fetch_one(pool)
        .await
        .unwrap();
    seed(&raw, AccountId::new(account), EVENTS, false).await;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE account_id = $1")
        .bind(account)
        .fetch_one(pool)
        .await
        .unwrap();
    let c = client();
    let ready = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if get_status(&c, &server.url("/api/v2/audit_logs?page[size]=1"), &auth).await == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(ready.is_ok(), "the server picked up the token");

    let before = peak_rss_kib(pid);
    let mut report = Vec::new();
    for format in ["csv", "jsonl"] {
        let started = std::time::Instant::now();
        let r = c
            .get(server.url(&format!("/api/v2/audit_logs/export?format={format}")))
            .header("authorization", &auth)
            .timeout(Duration::from_secs(600))
            .send()
            .await
            .expect("export");
        assert_eq!(r.status(), 200);
        let (bytes, lines) = drain(r).await;
        let header = u64::from(format == "csv");
        assert_eq!(lines, total as u64 + header, "{format}: every event, one line each");
        report.push(format!(
            "{format}: {lines} lines, {} MiB in {:.1} s",
            bytes / (1 << 20),
            started.elapsed().as_secs_f64()
        ));
    }
    let after = peak_rss_kib(pid);
    eprintln!(
        "audit export of {total} events: server peak RSS (VmHWM) {before} KiB before, {after} KiB after ({})",
        report.join("; ")
    );
    // Holding the export in memory would take well over 100 MiB (about
    // 65 MiB of CSV and as much again as records).
    assert!(
        after.saturating_sub(before) < 48 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB"
    );
    assert_eq!(server.terminate().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_passes_an_intact_chain_and_names_an_edited_event() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await;
    let (id, _) = t.api_create_token(&auth, Some("watched")).await;
    let r = t
        .put(
            &format!("/api/v2/api_tokens/{id}"),
            &auth,
            &json!({"api_token": {"active": false}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let out = t.db.cli(&["token", "create", "--account", &a.subdomain]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let events = t.audit(a.id).await;
    assert!(events.len() >= 5);

    let out = t.db.cli(&["audit", "verify", "--account", &a.subdomain]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("intact"), "{out:?}");

    // Rewrite history: the deactivation becomes an update.
    let victim = events.iter().find(|e| e.action == Action::Deactivate).unwrap().id;
    let raw = t.db.direct().await;
    let sql = "UPDATE audit_events SET action = 'update', change_description = 'nothing to see' WHERE id = $1";
    assert_eq!(raw.execute(sql, &ints(&[victim.get()])).await, 1);
    let out = t.db.cli(&["audit", "verify", "--account", &a.subdomain]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains(&format!("event {victim} ")), "{out:?}");

    // Other accounts' chains are not affected.
    let b = t.account().await;
    let out = t.db.cli(&["audit", "verify", "--account", &b.subdomain]).await;
    assert_eq!(out.code, 0, "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_the_event_after_a_deleted_one() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    for d in ["one", "two", "three"] {
        t.token_described(&a, Some(d)).await;
    }
    let events = t.audit(a.id).await;
    let (deleted, next) = (events[2].id, events[3].id);
    let raw = t.db.direct().await;
    assert_eq!(
        raw.execute("DELETE FROM audit_events WHERE id = $1", &ints(&[deleted.get()]))
            .await,
        1
    );
    let out = t.db.cli(&["audit", "verify", "--account", &a.subdomain]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains(&format!("event {next} ")), "{out:?}");

    // Moving an event to another account breaks both chains.
    let b = t.account().await;
    let moved = events[1].id;
    let sql = "UPDATE audit_events SET account_id = $1 WHERE id = $2";
    assert_eq!(raw.execute(sql, &ints(&[b.id.get(), moved.get()])).await, 1);
    let out = t.db.cli(&["audit", "verify", "--account", &a.subdomain]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains(&format!("event {next} ")), "{out:?}");
    let out = t.db.cli(&["audit", "verify", "--account", &b.subdomain]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains(&format!("event {moved} ")), "{out:?}");
}
