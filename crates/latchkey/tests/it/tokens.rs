//! docs/api.md, "The token format" and "API tokens", over HTTP: the format, what a response
//! shows, the lifecycle, the limit, status codes, URLs and content type.

use latchkey_core::id::TokenId;
use latchkey_core::token::{has_valid_checksum, NewToken, PlainToken, Restrictions, TokenPrefix};
use serde_json::{json, Value};

use crate::support::*;

fn is_rfc3339_seconds(v: &Value) -> bool {
    let s = v.as_str().unwrap_or("");
    s.len() == 20 && s.ends_with('Z') && s.as_bytes()[10] == b'T'
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_token_has_the_spec_format_and_visible_token() {
    let t = TestApp::spawn().await;
    let acct = t.account().await;
    let auth = t.admin_auth(&acct).await;
    let r = t
        .post(
            "/api/v2/api_tokens",
            &auth,
            &json!({"api_token": {"description": "  Jira sync  "}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let rec = &r.json()["api_token"];
    let token = rec["token"].as_str().unwrap();
    let random_and_checksum = token.strip_prefix("lk_").expect("default prefix lk_");
    assert_eq!(random_and_checksum.len(), 38);
    assert!(random_and_checksum.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert!(has_valid_checksum(token));
    let expected_visible = format!("lk_{}\u{2026}{}", &random_and_checksum[..4], &token[token.len() - 4..]);
    assert_eq!(rec["visible_token"], expected_visible.as_str());
    assert_eq!(rec["description"], "Jira sync", "descriptions are trimmed");
    assert_eq!(rec["active"], true);
    assert_eq!(rec["user_id"], json!(acct.admin.id));
    assert_eq!(rec["assigned_user_id"], Value::Null);
    assert_eq!(rec["last_used"], Value::Null);
    assert!(is_rfc3339_seconds(&rec["created_at"]), "{}", rec["created_at"]);
    assert!(is_rfc3339_seconds(&rec["updated_at"]));
    // The new token works at once.
    assert_eq!(t.me_status(&basic(&acct.admin.email, token)).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_carry_the_deployment_prefix() {
    let t = TestApp::spawn_with(|c| c.token_prefix = TokenPrefix::parse("acme").unwrap()).await;
    let acct = t.account().await;
    let auth = t.admin_auth(&acct).await;
    let (_, token) = t.api_create_token(&auth, None).await;
    assert!(token.starts_with("acme_"), "{token}");
    assert!(has_valid_checksum(&token));
    assert_eq!(t.me_status(&basic(&acct.admin.email, &token)).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_token_is_returned_only_by_the_response_that_creates_it() {
    let t = TestApp::spawn().await;
    let acct = t.account().await;
    let auth = t.admin_auth(&acct).await;
    let (id, token) = t.api_create_token(&auth, Some("once")).await;
    let path = format!("/api/v2/api_tokens/{id}");
    let replies = vec![
        t.get(&path, &auth).await,
        t.get("/api/v2/api_tokens", &auth).await,
        t.put(&path, &auth, &json!({"api_token": {"description": "twice"}}))
            .await,
        t.put(&path, &auth, &json!({"api_token": {"active": false}})).await,
    ];
    for r in replies {
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(!r.text().contains(&token), "the token leaked: {}", r.text());
        assert!(!r.text().contains("\"token\""), "{}", r.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_create_body_makes_a_token_without_description() {
    let t = TestApp::spawn().await;
    let acct = t.account().await;
    let auth = t.admin_auth(&acct).await;
    for body in [
        json!({}),
        json!({"api_token": {}}),
        json!({"api_token": {"description": "   "}}),
    ] {
        let r = t.post("/api/v2/api_tokens.json", &auth, &body).await;
        assert_eq!(r.status, 201, "{body}: {}", r.text());
        assert_eq!(r.json()["api_token"]["description"], Value::Null, "{body}");
    }
    // No body at all counts as {}.
    let r = t
        .send(reqwest::Method::POST, "/api/v2/api_tokens", Some(&auth), None)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_answers_201_with_an_absolute_location_and_deleting_204_without_a_body() {
    let t = TestApp::spawn().await;
    let acct = t.account().await;
    let auth = t.admin_auth(&acct).await;
    let r = t.post("/api/v2/api_tokens", &auth, &json!({})).await;
    assert_eq!(r.status, 201);
    let rec = r.json()["api_token"].clone();
    let id = rec["id"].as_i64().unwrap();
    let expected = format!("http://{}/api/v2/api_tokens/{id}.json", t.addr);
    assert_eq!(r.header("location"), Some(expected.as_str()));
    assert_eq!(rec["url"], expected.as_str());
    assert_eq!(r.header("content-type"), Some(JSON_CONTENT_TYPE));

    let path = format!("/api/v2/api_tokens/{id}");
    assert_eq!(
        t.put(&path, &auth, &json!({"api_token": {"active": false}}))
            .await
            .status,
        200
    );
    let d = t.delete(&path, &auth).await;
    assert_eq!(d.status, 204);
    assert!(d.body.is_empty(), "{:?}", d.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_are_built_from_the_host_header() {
    let t = TestApp::spawn().await;
    let acct = t.account().await;
    let auth = t.admin_auth(&acct).await;
    let r = t
        .client
        .post(t.url("/api/v2/api_tokens"))
        .header("host", "tokens.example.test:8443")
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    let r = Reply::from(r).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["api_token"]["id"].as_i64().unwrap();
    let expected = format!("http://tokens.example.test:8443/api/v2/api_tokens/{id}.json");
    assert_eq!(r.header("location"), Some(expected.as_str()));
    assert_eq!(r.json()["api_token"]["url"], expected.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_are_built_from_the_public_url_when_it_is_set() {
    let t = TestApp::spawn_with(|c| c.public_url = Some("https://tokens.example.com/".into())).await;
    let acct = t.account().await;
    let auth = t.admin_auth(&acct).await;
    let r = t.post("/api/v2/api_tokens", &auth, &json!({})).await;
    assert_eq!(r.status, 201);
    let id = r.json()["api_token"]["id"].as_i64().unwrap();
    let expected = format!("https://tokens.example.com/api/v2/api_tokens/{id}.json");
    assert_eq!(r.header("location"), Some(expected.as_str()));
    let list = t.get("/api/v2/api_tokens", &auth).await.json();
    assert!(list["api_tokens"].as_array().unwrap().iter().all(|t| t["url"]
        .as_str()
        .unwrap()
        .starts_with("https://tokens.example.com/api/v2/api_tokens/")));
    let me = t.get("/api/v2/users/me", &auth).await.json();
    assert_eq!(
        me["user"]["url"],
        format!("https://tokens.example.com/api/v2/users/{}.json", acct.admin.id).as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_host_and_proto_count_only_from_a_trusted_proxy() {
    let untrusted = TestApp::spawn().await;
    let trusted = TestApp::spawn_with(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    for (t, expected_base) in [
        (&untrusted, format!("http://{}", untrusted.addr)),
        (&trusted, "https://api.example.org".to_owned()),
    ] {
        let acct = t.account().await;
        let auth = t.admin_auth(&acct).await;
        let r = t
            .client
            .get(t.url("/api/v2/users/me"))
            .header("authorization", &auth)
            .header("x-forwarded-host", "api.example.org")
            .header("x-forwarded-proto", "https")
            .send()
            .await
            .unwrap();
        let r = Reply::from(r).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json()["user"]["url"],
            format!("{expected_base}/api/v2/users/{}.json", acct.admin.id).as_str()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_answers_with_and_without_the_json_suffix() {
    let t = TestApp::spawn().await;
    let acct = t.account().await;
    let auth = t.admin_auth(&acct).await;
    let agent = t
        .user(&acct, latchkey_core::user::Role::Agent, UserState::Verified)
        .await;
    for suffix in ["", ".json"] {
        let (id, _) = t.api_create_token(&auth, None).await;
        let tok = format!("/api/v2/api_tokens/{id}{suffix}");
        let usr = format!("/api/v2/users/{}{suffix}", agent.id);
        let checks: Vec<(Reply, u16)> = vec![
            (t.get(&format!("/api/v2/users/me{suffix}"), &auth).await, 200),
            (t.get(&format!("/api/v2/users{suffix}"), &auth).await, 200),
            (t.get(&usr, &auth).await, 200),
            (t.put(&usr, &auth, &json!({"user": {"name": format!("Agent{suffix}")}})).await, 200),
            (t.get(&format!("/api/v2/account{suffix}"), &auth).await, 200),
            (t.get(&format!("/api/v2/account/settings{suffix}"), &auth).await, 200),
            (
                t.put(
                    &format!("/api/v2/account/settings{suffix}"),
                    &auth,
                    &json!({"settings": {"api": {"api_token_access": true}}}),
                )
                .await,
                200,
            ),
            (t.get(&format!("/api/v2/api_tokens{suffix}"), &auth).await, 200),
            (t.post(&format!("/api/v2/api_tokens{suffix}"), &auth, &json!({})).await, 201),
            (t.get(&tok, &auth).await, 200),
            (t.put(&tok, &auth, &json!({"api_token": {"active": false}})).await, 200),
            (t.delete(&tok, &auth).await, 204),
            (
                t.post(
                    &format!("/api/v2/users{suffix}"),
                    &auth,
                    &json!({"user": {"name": "New", "email": format!("{}@example.com", unique("new")), "role": "agent"}}),
                )
                .await,
                201,
            ),
        ];
        for (i, (r, status)) in checks.into_iter().enumerate() {
            assert_eq!(r.status, status, "check {i} with suffix {suffix:?}: {}", r.text());
        }
    }
    let d = t.delete(&format!("/api/v2/users/{}.json", agent.id), &auth).await;
    assert_eq!(d.status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_json_in_utf8() {
    let t = TestApp::spawn().await;
    let acct = t.account().await;
    let auth = t.admin_auth(&acct).await;
    let end_user = t
        .user(&acct, latchkey_core::user::Role::EndUser, UserState::Verified)
        .await;
    let tok = t.token(&acct).await;
    let replies = vec![
        (t.get("/api/v2/users/me", &auth).await, 200),
        (t.post("/api/v2/api_tokens", &auth, &json!({})).await, 201),
        (t.get("/api/v2/users/me", "Basic eA==").await, 401),
        (
            t.get("/api/v2/api_tokens", &basic(&end_user.email, &tok.plain)).await,
            403,
        ),
        (t.get("/api/v2/api_tokens/999999", &auth).await, 404),
        (t.delete(&format!("/api/v2/api_tokens/{}", tok.id), &auth).await, 422),
        (
            t.post("/api/v2/api_tokens", &auth, &json!({"api_token": {"colour": "red"}}))
                .await,
            400,
        ),
    ];
    for (r, status) in replies {
        assert_eq!(r.status, status, "{}", r.text());
        assert_eq!(r.header("content-type"), Some(JSON_CONTENT_TYPE), "status {status}");
        let _: Value = r.json();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_is_newest_first_with_count_and_limit() {
    let t = TestApp::spawn().await;
    let acct = t.account().await;
    let auth = t.admin_auth(&acct).await;
    let (a, _) = t.api_create_token(&auth, Some("a")).await;
    let (b, _) = t.api_create_token(&auth, Some("b")).await;
    let r = t.get("/api/v2/api_tokens", &auth).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    let ids: Vec<TokenId> = v["api_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| json_id(&t["id"]))
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(&ids[..2], &[b, a]);
    assert_eq!(v["count"], 3);
    assert_eq!(v["limit"], 256);
}

/// Fills an account up to `n` tokens in one import (fast), as the operator.
pub async fn fill_tokens(t: &TestApp, acct: &TestAccount, n: usize) {
    let tokens = (0..n)
        .map(|_| {
            let p = PlainToken::generate(&TokenPrefix::default());
            NewToken {
                hash: p.hash(),
                visible_token: p.visible(),
                description: None,
                active: true,
                user_id: None,
                restrictions: Restrictions::default(),
                created_at: None,
                last_used: None,
                legacy: false,
            }
        })
        .collect();
    t.app
        .import_tokens(&t.operator(&acct.subdomain).await, tokens)
        .await
        .expect("import");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_past_the_limit_is_refused_until_a_token_is_deleted() {
    let t = TestApp::spawn().await;
    let acct = t.account().await;
    let admin = t.token(&acct).await;
    let auth = basic(&acct.admin.email, &admin.plain);
    fill_tokens(&t, &acct, 255).await;
    let r = t.post("/api/v2/api_tokens", &auth, &json!({})).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.text(),
        r#"{"error":"RecordInvalid","description":"Record validation errors","details":{"base":[{"error":"TokenLimitReached","description":"You have reached the maximum of 256 API tokens. Delete an existing token to add a new one."}]}}"#
    );
    // Deactivated tokens count too.
    let victim = t.get("/api/v2/api_tokens", &auth).await.json()["api_tokens"][0]["id"]
        .as_i64()
        .unwrap();
    let path = format!("/api/v2/api_tokens/{victim}");
    assert_eq!(
        t.put(&path, &auth, &json!({"api_token": {"active": false}}))
            .await
            .status,
        200
    );
    assert_eq!(t.post("/api/v2/api_tokens", &auth, &json!({})).await.status, 422);
    assert_eq!(t.delete(&path, &auth).await.status, 204);
    assert_eq!(t.post("/api/v2/api_tokens", &auth, &json!({})).await.status, 201);
    assert_eq!(t.post("/api/v2/api_tokens", &auth, &json!({})).await.status, 422);
    assert_eq!(
        t.app.tokens(&t.operator(&acct.subdomain).await).await.unwrap().len(),
        256
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_active_token_is_refused() {
    let t = TestApp::spawn().await;
    let acct = t.account().await;
    let auth = t.admin_auth(&acct).await;
    let (id, token) = t.api_create_token(&auth, None).await;
    let r = t.delete(&format!("/api/v2/api_tokens/{id}"), &auth).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.text(),
        r#"{"error":"RecordInvalid","description":"Record validation errors","details":{"base":[{"error":"TokenActive","description":"Deactivate the token before deleting it."}]}}"#
    );
    assert_eq!(t.me_status(&basic(&acct.admin.email, &token)).await, 200);
    assert!(t
        .app
        .token(&t.operator(&acct.subdomain).await, id)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivated_token_fails_the_next_request_and_reactivating_restores_it() {
    let t = TestApp::spawn().await;
    let acct = t.account().await;
    let auth = t.admin_auth(&acct).await;
    let (id, token) = t.api_create_token(&auth, None).await;
    let mine = basic(&acct.admin.email, &token);
    let path = format!("/api/v2/api_tokens/{id}");
    assert_eq!(t.me_status(&mine).await, 200);
    let r = t.put(&path, &auth, &json!({"api_token": {"active": false}})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["api_token"]["active"], false);
    let denied = t.get("/api/v2/users/me", &mine).await;
    assert_eq!(denied.status, 401);
    assert_eq!(denied.text(), NOT_AUTHENTICATED);
    let r = t.put(&path, &auth, &json!({"api_token": {"active": true}})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["api_token"]["active"], true);
    assert_eq!(t.me_status(&mine).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_can_deactivate_itself_and_is_refused_right_after() {
    let t = TestApp::spawn().await;
    let acct = t.account().await;
    let auth = t.admin_auth(&acct).await;
    let id = t.app.tokens(&t.operator(&acct.subdomain).await).await.unwrap()[0].id;
    let r = t
        .put(
            &format!("/api/v2/api_tokens/{id}"),
            &auth,
            &json!({"api_token": {"active": false}}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(t.me_status(&auth).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_token_is_gone_for_good() {
    let t = TestApp::spawn().await;
    let acct = t.account().await;
    let auth = t.admin_auth(&acct).await;
    let (id, token) = t.api_create_token(&auth, Some("bye")).await;
    let path = format!("/api/v2/api_tokens/{id}");
    t.put(&path, &auth, &json!({"api_token": {"active": false}})).await;
    assert_eq!(t.delete(&path, &auth).await.status, 204);
    let r = t.get(&path, &auth).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), NOT_FOUND);
    assert_eq!(t.delete(&path, &auth).await.status, 404);
    assert_eq!(
        t.put(&path, &auth, &json!({"api_token": {"active": true}}))
            .await
            .status,
        404
    );
    assert_eq!(t.me_status(&basic(&acct.admin.email, &token)).await, 401);
    let list = t.get("/api/v2/api_tokens", &auth).await.json();
    assert!(list["api_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["id"] != json!(id)));
    assert!(t.store().await.token(acct.id, id).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_changes_the_description_and_clearing_sets_it_to_null() {
    let t = TestApp::spawn().await;
    let acct = t.account().await;
    let auth = t.admin_auth(&acct).await;
    let (id, _) = t.api_create_token(&auth, Some("A")).await;
    let path = format!("/api/v2/api_tokens/{id}");
    let r = t.put(&path, &auth, &json!({"api_token": {"description": " B "}})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["api_token"]["description"], "B");
    for clear in [
        json!({"api_token": {"description": null}}),
        json!({"api_token": {"description": ""}}),
    ] {
        let r = t.put(&path, &auth, &clear).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["api_token"]["description"], Value::Null);
    }
    let max = "é".repeat(255);
    let r = t.put(&path, &auth, &json!({"api_token": {"description": max}})).await;
    assert_eq!(r.status, 200, "255 characters are allowed");
    let r = t
        .put(&path, &auth, &json!({"api_token": {"description": "x".repeat(256)}}))
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["details"]["description"][0]["error"], "TooLong");
    let r = t
        .put(&path, &auth, &json!({"api_token": {"description": "a\u{7}b"}}))
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["details"]["description"][0]["error"], "InvalidValue");
    assert_eq!(
        t.get(&path, &auth).await.json()["api_token"]["description"],
        max.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_changes_nothing_writes_no_audit_event() {
    let t = TestApp::spawn().await;
    let acct = t.account().await;
    let auth = t.admin_auth(&acct).await;
    let (id, _) = t.api_create_token(&auth, Some("same")).await;
    let path = format!("/api/v2/api_tokens/{id}");
    let before = t.audit(acct.id).await.len();
    let updated_at = t.get(&path, &auth).await.json()["api_token"]["updated_at"].clone();
    for body in [
        json!({"api_token": {"description": "same"}}),
        json!({"api_token": {"description": "  same "}}),
        json!({"api_token": {"active": true}}),
        json!({"api_token": {}}),
        json!({}),
    ] {
        let r = t.put(&path, &auth, &body).await;
        assert_eq!(r.status, 200, "{body}: {}", r.text());
        assert_eq!(r.json()["api_token"]["updated_at"], updated_at);
    }
    assert_eq!(t.audit(acct.id).await.len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generating_with_token_access_off_is_refused_everywhere() {
    let t = TestApp::spawn().await;
    let acct = t.account_with(latchkey_core::account::Plan::Enterprise, false).await;
    let err = t
        .app
        .create_token(&t.operator(&acct.subdomain).await, None, Restrictions::default())
        .await
        .expect_err("token access is off");
    assert!(
        matches!(
            err,
            latchkey_app::AppError::Domain(latchkey_core::DomainError::TokenAccessDisabled)
        ),
        "{err:?}"
    );
    assert!(t
        .app
        .tokens(&t.operator(&acct.subdomain).await)
        .await
        .unwrap()
        .is_empty());
}
