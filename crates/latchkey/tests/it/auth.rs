//! docs/api.md, "Authentication": authenticating with `{email}/token:{token}`, every failure
//! answering the same 401, the hints, roles, account isolation, the token
//! access setting and the limit on failed attempts.

use latchkey_core::{account::Plan, time::Clock, user::Role};
use serde_json::json;

use crate::support::*;

/// Headers that differ between any two responses.
const VARYING: &[&str] = &["date", "x-request-id"];

fn stable_headers(r: &Reply) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(k, _)| !VARYING.contains(&k.as_str()))
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_authentication_failure_answers_the_same_401_byte_for_byte() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let token = t.token(&a).await;
    let deactivated = t.token(&a).await;
    t.app
        .update_token(
            &t.operator(&a.subdomain).await,
            deactivated.id,
            &latchkey_core::token::TokenPatch {
                active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let unverified = t.user(&a, Role::Agent, UserState::Unverified).await;
    let suspended = t.user(&a, Role::Admin, UserState::Suspended).await;
    let deleted = t.user(&a, Role::Admin, UserState::Deleted).await;
    let b = t.account().await;
    let b_token = t.token(&b).await;
    let off = t.account().await;
    let off_token = t.token(&off).await;
    t.set_token_access(&off, false).await;

    let cases: Vec<(&str, String)> = vec![
        ("wrong token", basic(&a.admin.email, &unknown_token())),
        ("bad checksum", basic(&a.admin.email, &with_bad_checksum(&token.plain))),
        ("not a token at all", basic(&a.admin.email, "hunter2")),
        ("unknown email", basic("nobody@example.com", &token.plain)),
        ("another account's email", basic(&b.admin.email, &token.plain)),
        ("another account's token", basic(&a.admin.email, &b_token.plain)),
        ("unverified user", basic(&unverified.email, &token.plain)),
        ("suspended user", basic(&suspended.email, &token.plain)),
        ("deleted user", basic(&deleted.email, &token.plain)),
        ("deactivated token", basic(&a.admin.email, &deactivated.plain)),
        ("token access off", basic(&off.admin.email, &off_token.plain)),
        ("empty user part", basic_raw(&format!("/token:{}", token.plain))),
        ("no colon", basic_raw(&a.admin.email)),
        ("invalid base64", "Basic !!!not-base64!!!".to_owned()),
        ("unknown scheme", format!("Token {}", token.plain)),
        ("empty basic", "Basic ".to_owned()),
    ];
    // The valid credentials themselves work.
    assert_eq!(t.me_status(&basic(&a.admin.email, &token.plain)).await, 200);
    assert_eq!(t.me_status(&basic(&b.admin.email, &b_token.plain)).await, 200);

    let mut reference: Option<Vec<(String, String)>> = None;
    for (name, auth) in &cases {
        let r = t.get("/api/v2/users/me", auth).await;
        assert_eq!(r.status, 401, "{name}");
        assert_eq!(r.text(), NOT_AUTHENTICATED, "{name}");
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Basic realm="latchkey""#),
            "{name}"
        );
        let headers = stable_headers(&r);
        match &reference {
            None => reference = Some(headers),
            Some(first) => assert_eq!(&headers, first, "headers of {name}"),
        }
    }
    // No credentials at all: the same answer.
    let r = t.send(reqwest::Method::GET, "/api/v2/users/me", None, None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.text(), NOT_AUTHENTICATED);
    assert_eq!(Some(stable_headers(&r)), reference);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_endpoints_refuse_requests_without_credentials() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let tok = t.token(&a).await;
    for (method, path) in [
        ("GET", "/api/v2/users/me".to_owned()),
        ("GET", "/api/v2/users".to_owned()),
        ("POST", "/api/v2/users".to_owned()),
        ("GET", format!("/api/v2/users/{}", a.admin.id)),
        ("PUT", format!("/api/v2/users/{}", a.admin.id)),
        ("DELETE", format!("/api/v2/users/{}", a.admin.id)),
        ("GET", "/api/v2/api_tokens".to_owned()),
        ("POST", "/api/v2/api_tokens".to_owned()),
        ("GET", format!("/api/v2/api_tokens/{}", tok.id)),
        ("PUT", format!("/api/v2/api_tokens/{}", tok.id)),
        ("DELETE", format!("/api/v2/api_tokens/{}", tok.id)),
        ("GET", "/api/v2/account".to_owned()),
        ("GET", "/api/v2/account/settings".to_owned()),
        ("PUT", "/api/v2/account/settings".to_owned()),
    ] {
        let r = t.send(method.parse().unwrap(), &path, None, Some(&json!({}))).await;
        assert_eq!(r.status, 401, "{method} {path}: {}", r.text());
        assert_eq!(r.text(), NOT_AUTHENTICATED, "{method} {path}");
    }
    assert!(t
        .app
        .token(&t.operator(&a.subdomain).await, tok.id)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_sent_without_slash_token_gets_the_user_name_hint() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let tok = t.token(&a).await;
    let r = t
        .get(
            "/api/v2/users/me",
            &basic_raw(&format!("{}:{}", a.admin.email, tok.plain)),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.text(),
        r#"{"error":"Couldn't authenticate you","description":"Use {email}/token as the user name when you authenticate with an API token."}"#
    );
    assert_eq!(r.header("www-authenticate"), Some(r#"Basic realm="latchkey""#));
    // The hint depends on the text alone: an unknown but well-formed token
    // gets it too, and a password that is not a token does not.
    let r = t
        .get(
            "/api/v2/users/me",
            &basic_raw(&format!("{}:{}", a.admin.email, unknown_token())),
        )
        .await;
    assert!(r.text().contains("/token as the user name"));
    let r = t
        .get(
            "/api/v2/users/me",
            &basic_raw(&format!("{}:password123", a.admin.email)),
        )
        .await;
    assert_eq!(r.text(), NOT_AUTHENTICATED);
    let r = t
        .get(
            "/api/v2/users/me",
            &basic_raw(&format!("{}:{}", a.admin.email, with_bad_checksum(&tok.plain))),
        )
        .await;
    assert_eq!(r.text(), NOT_AUTHENTICATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_credential_is_refused_with_the_oauth_body_and_a_hint_for_api_tokens() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let tok = t.token(&a).await;
    let plain_body = r#"{"error":"invalid_token","error_description":"The access token provided is expired, revoked, malformed or invalid for other reasons."}"#;
    let hint_body = r#"{"error":"invalid_token","error_description":"The access token provided is expired, revoked, malformed or invalid for other reasons.","hint":"This is an API token, not an OAuth access token. Send it with HTTP Basic authentication as {email}/token:{token}."}"#;
    for (auth, body) in [
        (format!("Bearer {}", tok.plain), hint_body),
        (format!("bearer {}", unknown_token()), hint_body),
        (format!("Bearer {}", with_bad_checksum(&tok.plain)), plain_body),
        ("Bearer abc.def.ghi".to_owned(), plain_body),
        ("Bearer".to_owned(), plain_body),
    ] {
        let r = t.get("/api/v2/users/me", &auth).await;
        assert_eq!(r.status, 401, "{auth}");
        assert_eq!(r.text(), body, "{auth}");
        assert!(r.header("www-authenticate").is_some());
        assert!(!r.text().contains(&tok.plain));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emails_are_matched_case_insensitively() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let tok = t.token(&a).await;
    let upper = a.admin.email.to_uppercase();
    let r = t.get("/api/v2/users/me", &basic(&upper, &tok.plain)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["user"]["email"], a.admin.email.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_verified_user_of_the_account_can_use_any_of_its_tokens() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let tok = t.token(&a).await;
    for role in [Role::Admin, Role::Agent, Role::EndUser] {
        let u = t.user(&a, role, UserState::Verified).await;
        let r = t.get("/api/v2/users/me.json", &basic(&u.email, &tok.plain)).await;
        assert_eq!(r.status, 200, "{role:?}");
        let me = &r.json()["user"];
        assert_eq!(me["id"], json!(u.id));
        assert_eq!(me["email"], u.email.as_str());
        assert_eq!(me["role"], role.as_str());
        assert_eq!(me["verified"], true);
        assert_eq!(me["suspended"], false);
        for field in ["url", "name", "created_at", "updated_at"] {
            assert!(me.get(field).is_some(), "{field}");
        }
        assert!(me.get("password").is_none() && me.get("password_hash").is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_created_by_an_admin_who_is_later_deleted_keeps_working() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await;
    let second = t.user(&a, Role::Admin, UserState::Verified).await;
    let second_auth = basic(&second.email, &t.token(&a).await.plain);
    let (id, token) = t.api_create_token(&second_auth, Some("made by the second admin")).await;
    let r = t.delete(&format!("/api/v2/users/{}", second.id), &auth).await;
    assert_eq!(r.status, 204);
    // The deleted admin cannot authenticate, but the token works for others.
    assert_eq!(t.me_status(&basic(&second.email, &token)).await, 401);
    assert_eq!(t.me_status(&basic(&a.admin.email, &token)).await, 200);
    let rec = t.get(&format!("/api/v2/api_tokens/{id}"), &auth).await.json();
    assert_eq!(rec["api_token"]["user_id"], json!(second.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_and_end_users_authenticate_but_are_forbidden_admin_endpoints() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let tok = t.token(&a).await;
    let agent = t.user(&a, Role::Agent, UserState::Verified).await;
    let end_user = t.user(&a, Role::EndUser, UserState::Verified).await;
    let audit_before = t.audit(a.id).await.len();
    for u in [&agent, &end_user] {
        let auth = basic(&u.email, &tok.plain);
        assert_eq!(t.me_status(&auth).await, 200);
        assert_eq!(t.get("/api/v2/account", &auth).await.status, 200);
        let admin_only: Vec<(&str, String)> = vec![
            ("GET", "/api/v2/api_tokens".into()),
            ("POST", "/api/v2/api_tokens".into()),
            ("GET", format!("/api/v2/api_tokens/{}", tok.id)),
            ("PUT", format!("/api/v2/api_tokens/{}", tok.id)),
            ("DELETE", format!("/api/v2/api_tokens/{}", tok.id)),
            ("POST", "/api/v2/users".into()),
            ("GET", format!("/api/v2/users/{}", a.admin.id)),
            ("PUT", format!("/api/v2/users/{}", a.admin.id)),
            ("DELETE", format!("/api/v2/users/{}", a.admin.id)),
            ("GET", "/api/v2/account/settings".into()),
            ("PUT", "/api/v2/account/settings".into()),
        ];
        for (method, path) in admin_only {
            let body = match method {
                "PUT" if path.contains("api_tokens") => json!({"api_token": {"active": false}}),
                "PUT" if path.contains("settings") => json!({"settings": {"api": {"api_token_access": false}}}),
                "PUT" => json!({"user": {"suspended": true}}),
                "POST" if path.contains("users") => {
                    json!({"user": {"name": "X", "email": "x@example.com", "role": "admin"}})
                }
                _ => json!({}),
            };
            let r = t.send(method.parse().unwrap(), &path, Some(&auth), Some(&body)).await;
            assert_eq!(r.status, 403, "{:?} {method} {path}: {}", u.role, r.text());
            assert_eq!(r.text(), FORBIDDEN, "{method} {path}");
        }
    }
    // Agents may list users; end users may not.
    let r = t.get("/api/v2/users", &basic(&agent.email, &tok.plain)).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["users"].as_array().unwrap().len() >= 3);
    let r = t.get("/api/v2/users", &basic(&end_user.email, &tok.plain)).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), FORBIDDEN);
    // Nothing changed.
    assert_eq!(t.audit(a.id).await.len(), audit_before);
    assert!(
        t.app
            .token(&t.operator(&a.subdomain).await, tok.id)
            .await
            .unwrap()
            .unwrap()
            .active
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_accounts_tokens_and_users_are_not_found() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await;
    let b = t.account().await;
    let b_tok = t.token(&b).await;
    let b_off = t.token(&b).await;
    t.app
        .update_token(
            &t.operator(&b.subdomain).await,
            b_off.id,
            &latchkey_core::token::TokenPatch {
                active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let b_agent = t.user(&b, Role::Agent, UserState::Verified).await;
    let b_audit = t.audit(b.id).await.len();
    for id in [b_tok.id, b_off.id] {
        let path = format!("/api/v2/api_tokens/{id}");
        for r in [
            t.get(&path, &auth).await,
            t.get(&format!("{path}.json"), &auth).await,
            t.put(&path, &auth, &json!({"api_token": {"active": false}})).await,
            t.put(&path, &auth, &json!({"api_token": {"description": "mine now"}}))
                .await,
            t.delete(&path, &auth).await,
        ] {
            assert_eq!(r.status, 404, "{path}: {}", r.text());
            assert_eq!(r.text(), NOT_FOUND);
        }
    }
    for id in [b.admin.id, b_agent.id] {
        let path = format!("/api/v2/users/{id}");
        for r in [
            t.get(&path, &auth).await,
            t.put(&path, &auth, &json!({"user": {"suspended": true}})).await,
            t.delete(&path, &auth).await,
        ] {
            assert_eq!(r.status, 404, "{path}: {}", r.text());
            assert_eq!(r.text(), NOT_FOUND);
        }
    }
    // A's listings show none of B's records.
    let users = t.get("/api/v2/users", &auth).await.json();
    assert!(users["users"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["id"] != json!(b.admin.id) && u["id"] != json!(b_agent.id)));
    let tokens = t.get("/api/v2/api_tokens", &auth).await.json();
    assert!(tokens["api_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["id"] != json!(b_tok.id) && x["id"] != json!(b_off.id)));
    // B is untouched.
    assert_eq!(t.me_status(&basic(&b_agent.email, &b_tok.plain)).await, 200);
    assert_eq!(t.audit(b.id).await.len(), b_audit);
    assert!(t
        .app
        .token(&t.operator(&b.subdomain).await, b_off.id)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_token_access_off_refuses_every_token_and_turning_it_on_restores_each_status() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let admin_auth = t.admin_auth(&a).await;
    let (active_id, active) = t.api_create_token(&admin_auth, Some("active")).await;
    let (off_id, off) = t.api_create_token(&admin_auth, Some("deactivated")).await;
    let r = t
        .put(
            &format!("/api/v2/api_tokens/{off_id}"),
            &admin_auth,
            &json!({"api_token": {"active": false}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = t
        .put(
            "/api/v2/account/settings",
            &admin_auth,
            &json!({"settings": {"api": {"api_token_access": false}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["settings"]["api"]["api_token_access"], false);
    for tok in [&active, &off] {
        let r = t.get("/api/v2/users/me", &basic(&a.admin.email, tok)).await;
        assert_eq!(r.status, 401);
        assert_eq!(r.text(), NOT_AUTHENTICATED);
    }
    assert_eq!(t.me_status(&admin_auth).await, 401);
    // The tokens' own status is kept.
    assert!(
        t.app
            .token(&t.operator(&a.subdomain).await, active_id)
            .await
            .unwrap()
            .unwrap()
            .active
    );
    assert!(
        !t.app
            .token(&t.operator(&a.subdomain).await, off_id)
            .await
            .unwrap()
            .unwrap()
            .active
    );

    t.set_token_access(&a, true).await;
    assert_eq!(t.me_status(&basic(&a.admin.email, &active)).await, 200);
    assert_eq!(t.me_status(&basic(&a.admin.email, &off)).await, 401);
    assert_eq!(t.me_status(&admin_auth).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_failed_attempts_are_refused_with_429_before_any_lookup() {
    // The window is a calendar minute: fix the time 15 s into one.
    let now = latchkey_core::time::SystemClock.now();
    let minute_start = now.minus_secs(now.unix().rem_euclid(60));
    let clock = TestClock::at(minute_start.plus_secs(15));
    let t = TestApp::spawn_with_clock(clock.clone(), |c| c.failed_auth_per_minute = 3).await;
    let a = t.account().await;
    let tok = t.token(&a).await;
    let good = basic(&a.admin.email, &tok.plain);
    // Successes do not count.
    for _ in 0..5 {
        assert_eq!(t.me_status(&good).await, 200);
    }
    for _ in 0..3 {
        assert_eq!(t.me_status(&basic(&a.admin.email, &unknown_token())).await, 401);
    }
    for auth in [good.clone(), basic(&a.admin.email, "nope"), "Bearer x".to_owned()] {
        let r = t.get("/api/v2/users/me", &auth).await;
        assert_eq!(r.status, 429, "{}", r.text());
        assert_eq!(r.header("retry-after"), Some("45"), "the rest of the minute");
        let body = r.json();
        assert_eq!(body["error"], "TooManyRequests");
        assert!(body["description"].as_str().is_some_and(|d| !d.is_empty()));
    }
    // The next minute starts afresh.
    clock.advance(45);
    assert_eq!(t.me_status(&good).await, 200);
    // Endpoints without authentication are not throttled.
    assert_eq!(
        t.client.get(t.url("/healthz")).send().await.unwrap().status().as_u16(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_without_audit_log_viewing_still_authenticates_tokens() {
    let t = TestApp::spawn().await;
    for plan in [
        Plan::Team,
        Plan::Growth,
        Plan::Professional,
        Plan::Enterprise,
        Plan::EnterprisePlus,
    ] {
        let a = t.account_with(plan, true).await;
        let tok = t.token(&a).await;
        assert_eq!(t.me_status(&basic(&a.admin.email, &tok.plain)).await, 200, "{plan:?}");
    }
}
