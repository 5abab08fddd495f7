//! Every input is hostile: a table of malformed, oversized and unexpected
//! requests, sent as raw bytes so that nothing in a client library tidies
//! them up. None may answer 5xx, each answers docs/api.md's error body, and
//! none changes anything.

use serde_json::{json, Value};

use crate::support::*;

struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Option<Vec<u8>>,
    status: u16,
    /// The `error` code expected in the body, or for 422 the first detail's code.
    code: &'static str,
}

/// A case authenticated as the admin, with a JSON content type when it
/// has a body.
fn case(
    name: &'static str,
    method: &'static str,
    path: impl Into<String>,
    body: Option<&[u8]>,
    status: u16,
    code: &'static str,
) -> Case {
    let mut headers = Vec::new();
    if body.is_some() {
        headers.push(("content-type", b"application/json".to_vec()));
    }
    Case {
        name,
        method,
        path: path.into(),
        headers,
        body: body.map(<[u8]>::to_vec),
        status,
        code,
    }
}

fn json_case(
    name: &'static str,
    method: &'static str,
    path: impl Into<String>,
    body: Value,
    status: u16,
    code: &'static str,
) -> Case {
    let bytes = serde_json::to_vec(&body).unwrap();
    case(name, method, path, Some(&bytes), status, code)
}

impl Case {
    fn header(mut self, name: &'static str, value: impl AsRef<[u8]>) -> Case {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.as_ref().to_vec()));
        self
    }

    fn without(mut self, name: &'static str) -> Case {
        self.headers.retain(|(n, _)| *n != name);
        self
    }

    /// The request as bytes: a Host unless the case sets one, the admin's
    /// credentials unless it sets others, Content-Length (or chunks).
    fn bytes(&self, addr: std::net::SocketAddr, auth: &str) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.path).into_bytes();
        let has = |n: &str| self.headers.iter().any(|(h, _)| *h == n);
        if !has("host") {
            out.extend_from_slice(format!("host: {addr}\r\n").as_bytes());
        }
        if !has("authorization") && !has("x-no-auth") {
            out.extend_from_slice(format!("authorization: {auth}\r\n").as_bytes());
        }
        for (n, v) in &self.headers {
            if *n == "x-no-auth" {
                continue;
            }
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        let chunked = has("transfer-encoding");
        if let (Some(b), false) = (&self.body, chunked) {
            out.extend_from_slice(format!("content-length: {}\r\n", b.len()).as_bytes());
        }
        out.extend_from_slice(b"connection: close\r\n\r\n");
        if let Some(b) = &self.body {
            if chunked {
                for chunk in b.chunks(8192) {
                    out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            } else {
                out.extend_from_slice(b);
            }
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_clear_4xx_answers_and_change_nothing() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let admin = t.token(&a).await;
    let auth = basic(&a.admin.email, &admin.plain);
    let agent = t.user(&a, latchkey_core::user::Role::Agent, UserState::Verified).await;
    let tok = format!("/api/v2/api_tokens/{}", admin.id);
    let usr = format!("/api/v2/users/{}", agent.id);
    let big = format!(r#"{{"api_token":{{"description":"{}"}}}}"#, "x".repeat(70 * 1024)).into_bytes();
    let deep = format!(
        r#"{{"api_token":{{"description":{}1{}}}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    )
    .into_bytes();

    let cases = vec![
        // Bodies that are not the JSON object expected.
        case(
            "malformed JSON",
            "POST",
            "/api/v2/api_tokens",
            Some(br#"{"api_token":"#),
            400,
            "BadRequest",
        ),
        case(
            "trailing garbage",
            "POST",
            "/api/v2/api_tokens",
            Some(b"{} x"),
            400,
            "BadRequest",
        ),
        case(
            "invalid UTF-8 in the body",
            "POST",
            "/api/v2/api_tokens",
            Some(b"{\"api_token\":{\"description\":\"\xff\xfe\"}}"),
            400,
            "BadRequest",
        ),
        case(
            "a lone surrogate",
            "POST",
            "/api/v2/api_tokens",
            Some(br#"{"api_token":{"description":"\ud800"}}"#),
            400,
            "BadRequest",
        ),
        case(
            "a number out of range",
            "PUT",
            tok.clone(),
            Some(br#"{"api_token":{"active":1e400}}"#),
            400,
            "BadRequest",
        ),
        case(
            "an array as the body",
            "POST",
            "/api/v2/api_tokens",
            Some(b"[]"),
            400,
            "BadRequest",
        ),
        case(
            "a string as the body",
            "PUT",
            tok.clone(),
            Some(br#""active""#),
            400,
            "BadRequest",
        ),
        case(
            "null as the body",
            "POST",
            "/api/v2/users",
            Some(b"null"),
            400,
            "BadRequest",
        ),
        case(
            "deeply nested JSON",
            "POST",
            "/api/v2/api_tokens",
            Some(&deep),
            400,
            "BadRequest",
        ),
        json_case(
            "the record as an array",
            "POST",
            "/api/v2/api_tokens",
            json!({"api_token": []}),
            400,
            "BadRequest",
        ),
        case(
            "a body over 64 KiB",
            "POST",
            "/api/v2/api_tokens",
            Some(&big),
            413,
            "PayloadTooLarge",
        ),
        case(
            "a chunked body over 64 KiB",
            "PUT",
            tok.clone(),
            Some(&big),
            413,
            "PayloadTooLarge",
        )
        .header("transfer-encoding", "chunked"),
        case(
            "a declared length over 64 KiB",
            "POST",
            "/api/v2/users",
            Some(&big),
            413,
            "PayloadTooLarge",
        ),
        // Content types.
        case(
            "text/plain",
            "POST",
            "/api/v2/api_tokens",
            Some(b"{}"),
            400,
            "BadRequest",
        )
        .header("content-type", "text/plain"),
        case(
            "form data",
            "PUT",
            tok.clone(),
            Some(b"active=false"),
            400,
            "BadRequest",
        )
        .header("content-type", "application/x-www-form-urlencoded"),
        case(
            "no content type",
            "POST",
            "/api/v2/users",
            Some(br#"{"user":{}}"#),
            400,
            "BadRequest",
        )
        .without("content-type"),
        // Fields.
        json_case(
            "an unknown top-level field",
            "POST",
            "/api/v2/api_tokens",
            json!({"token": {"description": "x"}}),
            400,
            "BadRequest",
        ),
        json_case(
            "an unknown record field",
            "PUT",
            tok.clone(),
            json!({"api_token": {"colour": "red"}}),
            400,
            "BadRequest",
        ),
        json_case(
            "a field named like a secret",
            "POST",
            "/api/v2/api_tokens",
            json!({"api_token": {(unknown_token()): 1}}),
            400,
            "BadRequest",
        ),
        json_case(
            "a read-only id",
            "PUT",
            tok.clone(),
            json!({"api_token": {"id": 5}}),
            422,
            "ReadOnly",
        ),
        json_case(
            "a read-only visible_token",
            "POST",
            "/api/v2/api_tokens",
            json!({"api_token": {"visible_token": "lk_x"}}),
            422,
            "ReadOnly",
        ),
        json_case(
            "active on create",
            "POST",
            "/api/v2/api_tokens",
            json!({"api_token": {"active": false}}),
            422,
            "ReadOnly",
        ),
        json_case(
            "a read-only user email",
            "PUT",
            usr.clone(),
            json!({"user": {"email": "new@example.com"}}),
            422,
            "ReadOnly",
        ),
        json_case(
            "a token policy day count out of range",
            "PUT",
            "/api/v2/account/settings",
            json!({"settings": {"token_policy": {"max_lifetime_days": 99999}}}),
            422,
            "InvalidValue",
        ),
        json_case(
            "a rotation grace of more than 7 days",
            "POST",
            format!("{tok}/rotate"),
            json!({"grace_period_seconds": 604801}),
            422,
            "InvalidValue",
        ),
        json_case(
            "an unknown setting",
            "PUT",
            "/api/v2/account/settings",
            json!({"settings": {"api": {"api_token_access": true, "x": 1}}}),
            400,
            "BadRequest",
        ),
        // Values.
        json_case(
            "a number as description",
            "POST",
            "/api/v2/api_tokens",
            json!({"api_token": {"description": 7}}),
            422,
            "InvalidValue",
        ),
        json_case(
            "an object as description",
            "PUT",
            tok.clone(),
            json!({"api_token": {"description": {"a": 1}}}),
            422,
            "InvalidValue",
        ),
        json_case(
            "a string as active",
            "PUT",
            tok.clone(),
            json!({"api_token": {"active": "false"}}),
            422,
            "InvalidValue",
        ),
        json_case(
            "null as active",
            "PUT",
            tok.clone(),
            json!({"api_token": {"active": null}}),
            422,
            "InvalidValue",
        ),
        json_case(
            "a control character",
            "POST",
            "/api/v2/api_tokens",
            json!({"api_token": {"description": "a\u{1b}[31mb"}}),
            422,
            "InvalidValue",
        ),
        json_case(
            "a NUL character",
            "PUT",
            tok.clone(),
            json!({"api_token": {"description": "a\u{0}b"}}),
            422,
            "InvalidValue",
        ),
        json_case(
            "a 256-character description",
            "POST",
            "/api/v2/api_tokens",
            json!({"api_token": {"description": "é".repeat(256)}}),
            422,
            "TooLong",
        ),
        json_case(
            "a string as api_token_access",
            "PUT",
            "/api/v2/account/settings",
            json!({"settings": {"api": {"api_token_access": "on"}}}),
            422,
            "InvalidValue",
        ),
        json_case(
            "an unknown role",
            "POST",
            "/api/v2/users",
            json!({"user": {"name": "X", "email": "role@example.com", "role": "root"}}),
            422,
            "InvalidValue",
        ),
        json_case(
            "a malformed email",
            "POST",
            "/api/v2/users",
            json!({"user": {"name": "X", "email": "not an email"}}),
            422,
            "InvalidValue",
        ),
        json_case(
            "a missing email",
            "POST",
            "/api/v2/users",
            json!({"user": {"name": "X"}}),
            422,
            "Blank",
        ),
        json_case(
            "a taken email",
            "POST",
            "/api/v2/users",
            json!({"user": {"name": "X", "email": agent.email.to_uppercase()}}),
            422,
            "Taken",
        ),
        json_case(
            "an over-long user name",
            "PUT",
            usr.clone(),
            json!({"user": {"name": "n".repeat(256)}}),
            422,
            "TooLong",
        ),
        json_case(
            "a blank user name",
            "PUT",
            usr.clone(),
            json!({"user": {"name": "  "}}),
            422,
            "Blank",
        ),
        // Ids and paths.
        case(
            "a huge id",
            "GET",
            "/api/v2/api_tokens/99999999999999999999999",
            None,
            404,
            "RecordNotFound",
        ),
        case(
            "the largest id",
            "DELETE",
            format!("/api/v2/api_tokens/{}", i64::MAX),
            None,
            404,
            "RecordNotFound",
        ),
        case(
            "a negative id",
            "GET",
            "/api/v2/api_tokens/-1",
            None,
            404,
            "RecordNotFound",
        ),
        case("id zero", "PUT", "/api/v2/users/0", Some(b"{}"), 404, "RecordNotFound"),
        case(
            "a non-numeric id",
            "GET",
            "/api/v2/users/abc.json",
            None,
            404,
            "RecordNotFound",
        ),
        case(
            "a fractional id",
            "DELETE",
            "/api/v2/users/1.5",
            None,
            404,
            "RecordNotFound",
        ),
        case(
            "an encoded path",
            "GET",
            "/api/v2/api_tokens/%31%00",
            None,
            404,
            "RecordNotFound",
        ),
        case("an unknown path", "GET", "/api/v2/tickets", None, 404, "RecordNotFound"),
        case(
            "a double suffix",
            "GET",
            "/api/v2/users/me.json.json",
            None,
            404,
            "RecordNotFound",
        ),
        case(
            "an unsupported method",
            "PATCH",
            tok.clone(),
            Some(b"{}"),
            405,
            "MethodNotAllowed",
        ),
        // Queries.
        case(
            "page[size]=0",
            "GET",
            "/api/v2/users?page[size]=0",
            None,
            400,
            "BadRequest",
        ),
        case(
            "page[size]=101",
            "GET",
            "/api/v2/users?page%5Bsize%5D=101",
            None,
            400,
            "BadRequest",
        ),
        case(
            "page[size]=-5",
            "GET",
            "/api/v2/users?page[size]=-5",
            None,
            400,
            "BadRequest",
        ),
        case(
            "page[size]=abc",
            "GET",
            "/api/v2/users.json?page[size]=abc",
            None,
            400,
            "BadRequest",
        ),
        case(
            "page[size] as bytes",
            "GET",
            "/api/v2/users?page[size]=%ff%fe",
            None,
            400,
            "BadRequest",
        ),
        case(
            "a garbage cursor",
            "GET",
            "/api/v2/users?page[after]=!!!",
            None,
            400,
            "BadRequest",
        ),
        case(
            "a cursor of another shape",
            "GET",
            "/api/v2/users?page[before]=eHl6",
            None,
            400,
            "BadRequest",
        ),
        case(
            "after and before",
            "GET",
            "/api/v2/users?page[after]=aWQ6MQ&page[before]=aWQ6MQ",
            None,
            400,
            "BadRequest",
        ),
        // Headers.
        case(
            "an invalid Host",
            "POST",
            "/api/v2/api_tokens",
            Some(b"{}"),
            400,
            "BadRequest",
        )
        .header("host", "evil host/<script>"),
        case(
            "a Host with a quote",
            "GET",
            "/api/v2/users/me",
            None,
            400,
            "BadRequest",
        )
        .header("host", "a\"b"),
        case("invalid base64 credentials", "GET", "/api/v2/users/me", None, 401, "")
            .header("authorization", "Basic %%%==="),
        case("non-UTF-8 credentials", "GET", "/api/v2/users/me", None, 401, "")
            .header("authorization", basic_bytes(b"\xff\xfe@x/token:\xc3\x28")),
        case("raw non-UTF-8 header bytes", "GET", "/api/v2/users/me", None, 401, "")
            .header("authorization", b"Basic \xff\xfe\xfd"),
        case("an 8 KiB credential", "GET", "/api/v2/api_tokens", None, 401, "")
            .header("authorization", basic_raw(&"a".repeat(8 * 1024))),
        case("a scheme alone", "GET", "/api/v2/users/me", None, 401, "").header("authorization", "Basic"),
        case("no credentials", "POST", "/api/v2/api_tokens", Some(b"{}"), 401, "").header("x-no-auth", ""),
    ];
    assert!(cases.len() >= 30);

    let audit_before = t.audit(a.id).await.len();
    let tokens_before = t.app.tokens(&t.operator(&a.subdomain).await).await.unwrap().len();
    let mut failures = Vec::new();
    for c in &cases {
        let r = t.raw(&c.bytes(t.addr, &auth)).await;
        let problem = check(c, r.status, &r.body);
        if let Some(p) = problem {
            failures.push(format!("{}: {p} (got {} {})", c.name, r.status, r.text()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        t.audit(a.id).await.len(),
        audit_before,
        "a refused request wrote an audit event"
    );
    assert_eq!(
        t.app.tokens(&t.operator(&a.subdomain).await).await.unwrap().len(),
        tokens_before
    );
    assert_eq!(
        t.me_status(&basic(&agent.email, &admin.plain)).await,
        200,
        "the server is still healthy"
    );
}

/// `None` when the answer is what the case expects, in docs/api.md's shape.
fn check(c: &Case, status: u16, body: &[u8]) -> Option<String> {
    if status >= 500 {
        return Some("a 5xx".into());
    }
    if status != c.status {
        return Some(format!("expected {}", c.status));
    }
    if status == 401 {
        return (body != NOT_AUTHENTICATED.as_bytes()).then(|| "not the 401 body".into());
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Some("not JSON".into());
    };
    if !v["error"].is_string() || !v["description"].is_string() {
        return Some("no error/description".into());
    }
    if status == 422 {
        if v["error"] != "RecordInvalid" {
            return Some("422 without RecordInvalid".into());
        }
        let details = v["details"].as_object()?;
        let first = details.values().next().and_then(|d| d[0]["error"].as_str());
        if first != Some(c.code) {
            return Some(format!("expected detail {}", c.code));
        }
        let described = details
            .values()
            .flat_map(|d| d.as_array().cloned().unwrap_or_default())
            .all(|d| d["description"].is_string());
        return (!described).then(|| "a detail without description".into());
    }
    (v["error"] != c.code).then(|| format!("expected error {}", c.code))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_messages_never_echo_a_secret_from_the_request() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await;
    let secret = unknown_token();
    let bodies = [
        json!({"api_token": {(secret.clone()): true}}),
        json!({(secret.clone()): {}}),
        json!({"api_token": {"description": format!("{secret}\u{7}")}}),
        json!({"api_token": {"description": secret.repeat(10)}}),
    ];
    for b in bodies {
        let r = t.post("/api/v2/api_tokens", &auth, &b).await;
        assert!((400..500).contains(&r.status), "{}", r.text());
        assert!(!r.text().contains(&secret), "{}", r.text());
    }
}

/// A small deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_authorization_bytes_never_cause_a_server_error() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let tok = t.token(&a).await;
    let mut rng = XorShift(0x5eed_1a7c_4e11_0001);
    let pieces: Vec<Vec<u8>> = vec![
        b"Basic ".to_vec(),
        b"Bearer ".to_vec(),
        b"basic".to_vec(),
        b" ".to_vec(),
        b":".to_vec(),
        b"/token".to_vec(),
        b"=".to_vec(),
        a.admin.email.as_bytes().to_vec(),
        tok.plain.as_bytes().to_vec(),
        with_bad_checksum(&tok.plain).into_bytes(),
        vec![0xff, 0xfe],
        vec![0xc3, 0x28],
        b"\t".to_vec(),
        b"%00".to_vec(),
    ];
    for i in 0..300 {
        let mut value = Vec::new();
        match i % 3 {
            // Pieces glued at random.
            0 => {
                for _ in 0..rng.below(6) + 1 {
                    value.extend_from_slice(&pieces[rng.below(pieces.len())]);
                }
            }
            // "Basic " and the base64 of random bytes around the real parts.
            1 => {
                let mut raw = Vec::new();
                for _ in 0..rng.below(5) + 1 {
                    if rng.below(2) == 0 {
                        raw.extend_from_slice(&pieces[rng.below(pieces.len())]);
                    } else {
                        raw.extend((0..rng.below(20)).map(|_| rng.next() as u8));
                    }
                }
                value = basic_bytes(&raw).into_bytes();
            }
            // Any bytes a header value may carry (visible ASCII, space, tab, obs-text).
            _ => {
                value.extend((0..rng.below(300)).map(|_| loop {
                    let b = rng.next() as u8;
                    if b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80 {
                        break b;
                    }
                }));
            }
        }
        let mut req = b"GET /api/v2/users/me HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: ".to_vec();
        req.extend_from_slice(&value);
        req.extend_from_slice(b"\r\n\r\n");
        let r = t.raw(&req).await;
        assert!(
            r.status < 500,
            "case {i}: {} for {:?}",
            r.status,
            String::from_utf8_lossy(&value)
        );
        // Anything the server parsed is a 200 (the real credentials) or docs/api.md's 401.
        if r.status == 401 {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            assert!(
                body["error"] == "Couldn't authenticate you" || body["error"] == "invalid_token",
                "{body}"
            );
        } else {
            assert!(matches!(r.status, 200 | 400), "case {i}: {}", r.status);
        }
    }
    assert_eq!(t.me_status(&basic(&a.admin.email, &tok.plain)).await, 200);
}
