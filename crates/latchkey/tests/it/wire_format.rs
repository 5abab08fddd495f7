//! Snapshots of representative response bodies (docs/api.md, "Endpoints"),
//! so that any change to the wire format shows up as a reviewed diff of the
//! committed snapshots under tests/it/snapshots/. What differs from run to
//! run (ids, names made unique per test, tokens, times, cursors, the
//! server's port) is redacted with insta's redactions; everything else, the
//! field names, their order, their types and the fixed texts, is compared.

use insta::internals::Content;
use insta::{assert_json_snapshot, dynamic_redaction};
use latchkey_core::user::Role;
use serde_json::{json, Value};

use crate::support::*;

/// A URL with its origin, ids and cursors replaced.
fn url_shape(url: &str) -> String {
    let path = url.find("/api/").map_or(url, |i| &url[i..]);
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let path: Vec<String> = path
        .split('/')
        .map(|seg| {
            let (stem, ext) = seg.split_once('.').unwrap_or((seg, ""));
            if !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()) {
                if ext.is_empty() {
                    "[id]".to_owned()
                } else {
                    format!("[id].{ext}")
                }
            } else {
                seg.to_owned()
            }
        })
        .collect();
    let query: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.starts_with("page[after]") || k.starts_with("page[before]") => format!("{k}=[cursor]"),
            _ => p.to_owned(),
        })
        .collect();
    let mut out = format!("http://[host]{}", path.join("/"));
    if !query.is_empty() {
        out.push('?');
        out.push_str(&query.join("&"));
    }
    out
}

fn redact_url(value: Content, _path: insta::internals::ContentPath<'_>) -> Content {
    match value.as_str() {
        Some(url) => Content::from(url_shape(url)),
        None => value,
    }
}

/// Replaces a value with `label`, but keeps a `null` a `null`.
fn unless_null(label: &'static str) -> insta::internals::Redaction {
    dynamic_redaction(move |value, _path| match value {
        Content::None | Content::Unit => value,
        Content::Some(inner) if matches!(*inner, Content::None | Content::Unit) => Content::Unit,
        _ => Content::from(label),
    })
}

/// Fetches `path` as `auth` and checks its status; the JSON body.
async fn body(
    t: &TestApp,
    method: reqwest::Method,
    path: &str,
    auth: &str,
    sent: Option<&Value>,
    status: u16,
) -> Value {
    let r = t.send(method, path, Some(auth), sent).await;
    assert_eq!(r.status, status, "{path}: {}", r.text());
    r.json()
}

macro_rules! snapshot {
    ($name:expr, $value:expr) => {
        assert_json_snapshot!($name, $value, {
            ".**.id" => "[id]",
            ".**.user_id" => unless_null("[id]"),
            ".**.actor_id" => unless_null("[id]"),
            ".**.source_id" => "[id]",
            ".**.url" => dynamic_redaction(redact_url),
            ".**.next" => dynamic_redaction(redact_url),
            ".**.prev" => dynamic_redaction(redact_url),
            ".**.email" => "[email]",
            ".**.subdomain" => "[subdomain]",
            ".**.name" => "[name]",
            ".**.actor_name" => "[name]",
            ".**.source_label" => "[label]",
            ".**.change_description" => "[change]",
            ".**.token" => "[token]",
            ".**.visible_token" => "[visible token]",
            ".**.created_at" => "[time]",
            ".**.updated_at" => "[time]",
            ".**.last_used" => unless_null("[time]"),
            ".**.after_cursor" => unless_null("[cursor]"),
            ".**.before_cursor" => unless_null("[cursor]"),
            ".**.ip_address" => unless_null("[ip]"),
        });
    };
}

#[tokio::test]
async fn response_bodies_keep_their_shape() {
    use reqwest::Method;
    let t = TestApp::spawn().await;
    let acct = t.account().await;
    let auth = t.admin_auth(&acct).await;
    t.user(&acct, Role::Agent, UserState::Verified).await;

    snapshot!(
        "users_me",
        body(&t, Method::GET, "/api/v2/users/me.json", &auth, None, 200).await
    );
    let created = body(
        &t,
        Method::POST,
        "/api/v2/users",
        &auth,
        Some(&json!({"user": {"name": "Jo Doe", "email": "jo@example.com", "role": "agent"}})),
        201,
    )
    .await;
    snapshot!("users_create", created);
    snapshot!(
        "users_list",
        body(&t, Method::GET, "/api/v2/users?page[size]=2", &auth, None, 200).await
    );

    let token = body(
        &t,
        Method::POST,
        "/api/v2/api_tokens",
        &auth,
        Some(&json!({"api_token": {"description": "Jira sync"}})),
        201,
    )
    .await;
    snapshot!("api_tokens_create", &token);
    let id = token["api_token"]["id"].as_i64().expect("id");
    snapshot!(
        "api_tokens_update",
        body(
            &t,
            Method::PUT,
            &format!("/api/v2/api_tokens/{id}"),
            &auth,
            Some(&json!({"api_token": {"active": false}})),
            200,
        )
        .await
    );
    snapshot!(
        "api_tokens_list",
        body(&t, Method::GET, "/api/v2/api_tokens", &auth, None, 200).await
    );

    snapshot!(
        "account",
        body(&t, Method::GET, "/api/v2/account", &auth, None, 200).await
    );
    snapshot!(
        "account_settings_update",
        body(
            &t,
            Method::PUT,
            "/api/v2/account/settings",
            &auth,
            Some(&json!({"settings": {"api": {"api_token_access": true}}})),
            200,
        )
        .await
    );
    snapshot!(
        "audit_logs_list",
        body(
            &t,
            Method::GET,
            "/api/v2/audit_logs?page[size]=2&sort=created_at",
            &auth,
            None,
            200
        )
        .await
    );

    assert_json_snapshot!(
        "error_record_invalid",
        body(
            &t,
            Method::POST,
            "/api/v2/users",
            &auth,
            Some(&json!({"user": {"email": "a@example.com", "role": "owner"}})),
            422,
        )
        .await
    );
    assert_json_snapshot!(
        "error_bad_request",
        body(
            &t,
            Method::POST,
            "/api/v2/users",
            &auth,
            Some(&json!({"user": {"colour": 1}})),
            400
        )
        .await
    );
    assert_json_snapshot!(
        "error_not_found",
        body(&t, Method::GET, "/api/v2/users/999999999", &auth, None, 404).await
    );
    assert_json_snapshot!(
        "error_invalid_bearer",
        body(&t, Method::GET, "/api/v2/users/me", "Bearer abc", None, 401).await
    );
}
