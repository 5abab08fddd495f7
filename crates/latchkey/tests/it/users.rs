//! docs/api.md, "Users", over HTTP: creating, verifying, suspending,
//! changing roles and soft-deleting, each taking effect on the very next
//! request, and the cursor-paginated listing.

use std::collections::HashSet;

use latchkey_core::id::UserId;
use latchkey_core::user::Role;
use serde_json::{json, Value};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_a_user_who_authenticates_once_verified() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await;
    let tok = t.token(&a).await;
    let email = format!("{}@Example.com", unique("Jane"));
    let r = t
        .post(
            "/api/v2/users",
            &auth,
            &json!({"user": {"name": "Jane Doe", "email": email, "role": "agent"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let user = r.json()["user"].clone();
    let id = user["id"].as_i64().unwrap();
    let url = format!("http://{}/api/v2/users/{id}.json", t.addr);
    assert_eq!(r.header("location"), Some(url.as_str()));
    assert_eq!(user["url"], url.as_str());
    assert_eq!(user["email"], email.as_str(), "stored as given");
    assert_eq!(user["name"], "Jane Doe");
    assert_eq!(user["role"], "agent");
    assert_eq!(user["verified"], false);
    assert_eq!(user["suspended"], false);
    let keys: HashSet<&str> = user.as_object().unwrap().keys().map(String::as_str).collect();
    let expected: HashSet<&str> = [
        "id",
        "url",
        "name",
        "email",
        "role",
        "verified",
        "suspended",
        "created_at",
        "updated_at",
    ]
    .into();
    assert_eq!(keys, expected);

    let theirs = basic(&email.to_lowercase(), &tok.plain);
    assert_eq!(t.me_status(&theirs).await, 401, "unverified users cannot use tokens");
    let r = t
        .put(
            &format!("/api/v2/users/{id}"),
            &auth,
            &json!({"user": {"verified": true}}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(t.me_status(&theirs).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspending_deleting_and_demoting_take_effect_on_the_next_request() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await;
    let tok = t.token(&a).await;
    let other = t.user(&a, Role::Admin, UserState::Verified).await;
    let theirs = basic(&other.email, &tok.plain);
    let path = format!("/api/v2/users/{}", other.id);
    assert_eq!(t.get("/api/v2/api_tokens", &theirs).await.status, 200);

    let r = t.put(&path, &auth, &json!({"user": {"role": "agent"}})).await;
    assert_eq!(r.json()["user"]["role"], "agent");
    assert_eq!(t.get("/api/v2/api_tokens", &theirs).await.status, 403);
    assert_eq!(t.me_status(&theirs).await, 200);

    let r = t.put(&path, &auth, &json!({"user": {"suspended": true}})).await;
    assert_eq!(r.json()["user"]["suspended"], true);
    assert_eq!(t.me_status(&theirs).await, 401);
    t.put(&path, &auth, &json!({"user": {"suspended": false}})).await;
    assert_eq!(t.me_status(&theirs).await, 200);

    let r = t.delete(&path, &auth).await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_eq!(t.me_status(&theirs).await, 401);
    assert_eq!(t.get(&path, &auth).await.status, 404);
    assert_eq!(t.delete(&path, &auth).await.status, 404);
    assert_eq!(
        t.put(&path, &auth, &json!({"user": {"suspended": false}})).await.status,
        404
    );
    let list = t.get("/api/v2/users?page[size]=100", &auth).await.json();
    assert!(list["users"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["id"] != json!(other.id)));
    // The record is kept (soft delete).
    assert!(t.store().await.user(other.id).await.unwrap().unwrap().deleted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_list_walks_forwards_and_backwards_by_cursor() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await;
    let mut all = vec![a.admin.id];
    for _ in 0..6 {
        all.push(t.user(&a, Role::EndUser, UserState::Verified).await.id);
    }
    t.user(&a, Role::Agent, UserState::Deleted).await;
    let other = t.account().await;
    t.user(&other, Role::Agent, UserState::Verified).await;

    let mut seen: Vec<UserId> = Vec::new();
    let mut next = Some(t.url("/api/v2/users.json?page[size]=3"));
    let mut pages = Vec::new();
    while let Some(url) = next {
        let path = url.split_once(&t.addr.to_string()).unwrap().1.to_owned();
        let r = t.get(&path, &auth).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let ids: Vec<UserId> = v["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| json_id(&u["id"]))
            .collect();
        assert!(ids.len() <= 3);
        seen.extend(&ids);
        next = v["links"]["next"].as_str().map(str::to_owned);
        assert_eq!(v["meta"]["has_more"], next.is_some());
        pages.push(v);
        assert!(pages.len() < 10, "the walk does not end");
    }
    assert_eq!(seen, all, "every live user of the account once, in id order");
    // Back from the last page.
    let prev = pages.last().unwrap()["links"]["prev"]
        .as_str()
        .expect("a prev link")
        .to_owned();
    let path = prev.split_once(&t.addr.to_string()).unwrap().1.to_owned();
    let back = t.get(&path, &auth).await.json();
    let ids: Vec<Value> = back["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].clone())
        .collect();
    let expected: Vec<Value> = pages[pages.len() - 2]["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].clone())
        .collect();
    assert_eq!(ids, expected);
}
