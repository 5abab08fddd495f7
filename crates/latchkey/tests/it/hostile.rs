//! Defects found by attacking a running server, one test each: spreadsheet
//! formulas in the CSV export, invisible characters in names and
//! descriptions, errors produced outside the handlers, two `Authorization`
//! headers, and another account's ids (docs/api.md, "Errors", "Account
//! isolation", "Audit log").

use latchkey_core::account::Plan;
use latchkey_core::user::Role;
use serde_json::{json, Value};

use crate::support::*;

const FORMULA: &str = r#"=HYPERLINK("http://x.test","y")"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_formula_in_a_name_is_neutralised_in_the_csv_export_and_kept_in_json_lines() {
    let t = TestApp::spawn().await;
    let a = t.account_with(Plan::Enterprise, true).await;
    let auth = t.admin_auth(&a).await;
    let mallory = t.user(&a, Role::Admin, UserState::Verified).await;
    let r = t
        .put(
            &format!("/api/v2/users/{}", mallory.id),
            &auth,
            &json!({"user": {"name": FORMULA}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Mallory acts: the audit event names her as its actor.
    let tok = t.token(&a).await;
    t.api_create_token(&basic(&mallory.email, &tok.plain), Some("mallory's"))
        .await;

    let csv = t.get("/api/v2/audit_logs/export?format=csv", &auth).await;
    assert_eq!(csv.status, 200);
    let text = csv.text();
    let quoted_formula = FORMULA.replace('"', "\"\"");
    assert!(
        text.contains(&format!("\"'{quoted_formula}\"")),
        "the formula is not neutralised:\n{text}"
    );
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    for row in reader.records() {
        for cell in row.unwrap().iter() {
            let first = cell.chars().next();
            assert!(
                !matches!(first, Some('=' | '+' | '-' | '@' | '\t' | '\r')),
                "a cell a spreadsheet would run: {cell:?}"
            );
        }
    }

    let jsonl = t.get("/api/v2/audit_logs/export?format=jsonl", &auth).await;
    assert_eq!(jsonl.status, 200);
    let names: Vec<String> = jsonl
        .text()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["actor_name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        names.iter().any(|n| n == FORMULA),
        "JSON Lines keeps the name: {names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invisible_and_bidirectional_characters_are_refused_in_names_and_descriptions() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await;
    let agent = t.user(&a, Role::Agent, UserState::Verified).await;
    let (token_id, _) = t.api_create_token(&auth, Some("plain")).await;
    let before = t.audit(a.id).await.len();
    for bad in [
        "evil\u{202E}gnp.exe",
        "zero\u{200B}width",
        "\u{FEFF}bom",
        "line\u{2028}separator",
        "para\u{2029}graph",
        "soft\u{00AD}hyphen",
        "nul\u{0000}",
    ] {
        let cases = [
            (
                "POST",
                "/api/v2/api_tokens".to_owned(),
                json!({"api_token": {"description": bad}}),
                "description",
            ),
            (
                "PUT",
                format!("/api/v2/api_tokens/{token_id}"),
                json!({"api_token": {"description": bad}}),
                "description",
            ),
            (
                "PUT",
                format!("/api/v2/users/{}", agent.id),
                json!({"user": {"name": bad}}),
                "name",
            ),
            (
                "POST",
                "/api/v2/users".to_owned(),
                json!({"user": {"name": bad, "email": format!("{}@example.com", unique("inv")), "role": "agent"}}),
                "name",
            ),
        ];
        for (method, path, body, field) in cases {
            let r = t.send(method.parse().unwrap(), &path, Some(&auth), Some(&body)).await;
            assert_eq!(r.status, 422, "{method} {path} {bad:?}: {}", r.text());
            let v = r.json();
            assert_eq!(v["error"], "RecordInvalid");
            assert_eq!(v["details"][field][0]["error"], "InvalidValue", "{v}");
        }
    }
    assert_eq!(t.audit(a.id).await.len(), before, "nothing was written");
    // Ordinary non-ASCII text is still welcome.
    let r = t
        .put(
            &format!("/api/v2/users/{}", agent.id),
            &auth,
            &json!({"user": {"name": "Élodie 李 مرحبا"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

fn request(t: &TestApp, head: &str, extra: &[u8]) -> Vec<u8> {
    let mut out = format!("{head}\r\nhost: {}\r\n", t.addr).into_bytes();
    out.extend_from_slice(extra);
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out
}

/// The JSON error body with `error` = `code`, and a JSON content type.
fn assert_json_error(name: &str, r: &RawReply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{name}: {} {}", r.head, r.text());
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("content-type: application/json; charset=utf-8"),
        "{name}: {}",
        r.head
    );
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("{name}: not JSON: {:?}", r.text()));
    assert_eq!(v["error"], code, "{name}: {v}");
    assert!(v["description"].is_string(), "{name}: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_made_outside_the_handlers_carry_the_json_error_body() {
    let t = TestApp::spawn().await;
    let a = t.account_with(Plan::Enterprise, true).await;
    let auth = t.admin_auth(&a).await;
    let auth_line = format!("authorization: {auth}\r\n").into_bytes();
    let big_header = format!("x-filler: {}\r\n", "a".repeat(80 * 1024)).into_bytes();
    let many_headers: Vec<u8> = (0..90)
        .flat_map(|i| format!("x-filler-{i}: {}\r\n", "b".repeat(800)).into_bytes())
        .collect();
    let long_query = format!("GET /api/v2/users?x={} HTTP/1.1", "q".repeat(40 * 1024));
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "an unknown route",
            request(&t, "GET /nowhere HTTP/1.1", &auth_line),
            404,
            "RecordNotFound",
        ),
        (
            "an unknown API route",
            request(&t, "GET /api/v2/nothing.json HTTP/1.1", &auth_line),
            404,
            "RecordNotFound",
        ),
        (
            "a method the path does not take",
            request(&t, "PATCH /api/v2/users HTTP/1.1", &auth_line),
            405,
            "MethodNotAllowed",
        ),
        (
            "%FF as a user id",
            request(&t, "GET /api/v2/users/%FF HTTP/1.1", &auth_line),
            404,
            "RecordNotFound",
        ),
        (
            "%FF as a token id",
            request(&t, "GET /api/v2/api_tokens/%FF.json HTTP/1.1", &auth_line),
            404,
            "RecordNotFound",
        ),
        (
            "%FF as an audit id",
            request(&t, "GET /api/v2/audit_logs/%ff HTTP/1.1", &auth_line),
            404,
            "RecordNotFound",
        ),
        (
            "%FF in a deletion",
            request(&t, "DELETE /api/v2/users/%FF%FE HTTP/1.1", &auth_line),
            404,
            "RecordNotFound",
        ),
        (
            "an 80 KiB header",
            request(
                &t,
                "GET /api/v2/users/me HTTP/1.1",
                &[auth_line.clone(), big_header].concat(),
            ),
            431,
            "RequestHeaderFieldsTooLarge",
        ),
        (
            "70 KiB of headers",
            request(&t, "GET /verify HTTP/1.1", &[auth_line.clone(), many_headers].concat()),
            431,
            "RequestHeaderFieldsTooLarge",
        ),
        (
            "a 40 KiB query",
            request(&t, &long_query, &auth_line),
            414,
            "UriTooLong",
        ),
    ];
    for (name, bytes, status, code) in &cases {
        let r = t.raw(bytes).await;
        assert_json_error(name, &r, *status, code);
    }
    // A NUL in a header, or more headers than the HTTP parser takes, never
    // becomes a request: the parser refuses it and closes the connection,
    // and its answer still carries the JSON error body.
    let r = t
        .raw(&request(
            &t,
            "GET /api/v2/users/me HTTP/1.1",
            &[&auth_line[..], b"x-nul: a\0b\r\n"].concat(),
        ))
        .await;
    assert_json_error("a NUL in a header", &r, 400, "BadRequest");
    let many: Vec<u8> = (0..150).flat_map(|i| format!("x-h{i}: v\r\n").into_bytes()).collect();
    let r = t
        .raw(&request(
            &t,
            "GET /api/v2/users/me HTTP/1.1",
            &[&auth_line[..], &many].concat(),
        ))
        .await;
    assert_json_error("150 headers", &r, 431, "RequestHeaderFieldsTooLarge");
    // The server is still serving.
    assert_eq!(t.me_status(&auth).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_authorization_headers_are_refused_as_unauthenticated() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await;
    let other = t.account().await;
    let other_auth = t.admin_auth(&other).await;
    for path in ["/api/v2/users/me", "/verify"] {
        let alone = t
            .raw(&request(
                &t,
                &format!("GET {path} HTTP/1.1"),
                format!("authorization: {auth}\r\n").as_bytes(),
            ))
            .await;
        assert_eq!(alone.status, 200, "{path}: {}", alone.text());
        for (first, second) in [
            (auth.as_str(), auth.as_str()),
            (auth.as_str(), other_auth.as_str()),
            (auth.as_str(), "Basic Og=="),
            ("Bearer x", auth.as_str()),
        ] {
            let extra = format!("authorization: {first}\r\nauthorization: {second}\r\n");
            let r = t
                .raw(&request(&t, &format!("GET {path} HTTP/1.1"), extra.as_bytes()))
                .await;
            assert_eq!(r.status, 401, "{path}: {}", r.text());
            assert_eq!(r.text(), NOT_AUTHENTICATED, "{path}");
            assert!(
                r.head
                    .to_ascii_lowercase()
                    .contains("www-authenticate: basic realm=\"latchkey\""),
                "{}",
                r.head
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_accounts_ids_answer_exactly_like_missing_ones() {
    let t = TestApp::spawn().await;
    let mine = t.account_with(Plan::Enterprise, true).await;
    let auth = t.admin_auth(&mine).await;
    let theirs = t.account_with(Plan::Enterprise, true).await;
    let their_auth = t.admin_auth(&theirs).await;
    let their_user = t.user(&theirs, Role::Agent, UserState::Verified).await;
    let their_deleted = t.user(&theirs, Role::Agent, UserState::Deleted).await;
    let (their_token, _) = t.api_create_token(&their_auth, Some("theirs")).await;
    let their_event = t.audit(theirs.id).await.last().unwrap().id;
    let missing = 9_000_000_000i64;
    let pairs = [
        (
            format!("/api/v2/users/{}", their_user.id),
            format!("/api/v2/users/{missing}"),
        ),
        (
            format!("/api/v2/users/{}", their_deleted.id),
            format!("/api/v2/users/{missing}"),
        ),
        (
            format!("/api/v2/api_tokens/{their_token}"),
            format!("/api/v2/api_tokens/{missing}"),
        ),
        (
            format!("/api/v2/audit_logs/{their_event}"),
            format!("/api/v2/audit_logs/{missing}"),
        ),
    ];
    for (theirs_path, missing_path) in &pairs {
        for method in ["GET", "PUT", "DELETE"] {
            if method != "GET" && theirs_path.contains("audit_logs") {
                continue;
            }
            let body = (method == "PUT").then(|| json!({}));
            let other = t
                .send(method.parse().unwrap(), theirs_path, Some(&auth), body.as_ref())
                .await;
            let absent = t
                .send(method.parse().unwrap(), missing_path, Some(&auth), body.as_ref())
                .await;
            assert_eq!(other.status, 404, "{method} {theirs_path}: {}", other.text());
            assert_eq!(other.body, absent.body, "{method} {theirs_path}");
            assert_eq!(other.text(), r#"{"error":"RecordNotFound","description":"Not found"}"#);
        }
    }
    // Nothing of theirs changed.
    assert_eq!(t.get(&pairs[0].0, &their_auth).await.status, 200);
}
