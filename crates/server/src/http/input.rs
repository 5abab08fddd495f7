//! Reading request bodies, queries and paths as hostile input: every
//! malformed, oversized or unexpected input becomes the 4xx body docs/api.md gives, and
//! no error message echoes more of the input than a field name.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::{header, request::Parts};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use latchkey_core::time::Timestamp;
use latchkey_core::{ErrorCode, Invalid};
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::client::PathId;
use crate::state::AppState;

/// Largest accepted request body (docs/api.md, "Errors": 413).
pub const BODY_LIMIT: usize = 64 * 1024;

/// A request body that is a JSON object (an empty body counts as `{}`).
#[derive(Debug)]
pub struct JsonObject(pub Map<String, Value>);

impl FromRequest<AppState> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
            return Err(ApiError::PayloadTooLarge);
        }
        let bytes = read_limited(body).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonObject(Map::new()));
        }
        let is_json = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::bad_request("Content-Type must be application/json."));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(JsonObject(map)),
            Ok(_) => Err(ApiError::bad_request("The request body must be a JSON object.")),
            Err(e) => Err(ApiError::bad_request(format!(
                "The request body is not valid JSON (line {}, column {}).",
                e.line(),
                e.column()
            ))),
        }
    }
}

/// A request body type, produced from the body's raw JSON object by its
/// own parser so that every error keeps the order and text docs/api.md
/// gives (unknown fields 400, read-only fields 422 first, then each field's
/// checks together).
pub trait FromJsonObject: Sized {
    fn from_object(body: Map<String, Value>) -> Result<Self, ApiError>;
}

/// A handler's typed request body: `JsonBody<T>` reads a [`JsonObject`]
/// and makes a `T` of it.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: FromJsonObject> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let JsonObject(map) = JsonObject::from_request(req, state).await?;
        T::from_object(map).map(JsonBody)
    }
}

async fn read_limited(body: Body) -> Result<axum::body::Bytes, ApiError> {
    match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::PayloadTooLarge),
        Err(_) => Err(ApiError::bad_request("The request body could not be read.")),
    }
}

/// Names a field in a message only when it looks like a field name.
fn field_name(key: &str) -> String {
    let plain = !key.is_empty() && key.len() <= 40 && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if plain {
        format!("'{key}'")
    } else {
        "a field".to_owned()
    }
}

/// Takes the record under `wrapper` (`{"api_token": {...}}`), refusing
/// unknown fields (400) and known fields that cannot be set (422 ReadOnly).
/// A missing wrapper is an empty record.
pub fn record(
    mut body: Map<String, Value>,
    wrapper: &str,
    settable: &[&str],
    read_only: &[&str],
) -> Result<Map<String, Value>, ApiError> {
    let inner = body.remove(wrapper);
    if let Some(key) = body.keys().next() {
        return Err(ApiError::bad_request(format!("Unknown field {}.", field_name(key))));
    }
    let map = match inner {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(ApiError::bad_request(format!("'{wrapper}' must be a JSON object."))),
    };
    let mut invalid = Vec::new();
    for key in map.keys() {
        if read_only.contains(&key.as_str()) {
            invalid.push(Invalid::new(
                key.clone(),
                ErrorCode::ReadOnly,
                format!("{key} cannot be changed"),
            ));
        } else if !settable.contains(&key.as_str()) {
            return Err(ApiError::bad_request(format!(
                "Unknown field {} in '{wrapper}'.",
                field_name(key)
            )));
        }
    }
    if invalid.is_empty() {
        Ok(map)
    } else {
        Err(ApiError::Invalid(invalid))
    }
}

fn wrong_type(key: &str, what: &str) -> Invalid {
    Invalid::new(key, ErrorCode::InvalidValue, format!("{key} must be {what}"))
}

/// `None`: absent; `Some(None)`: null; `Some(Some(s))`: a string.
pub fn opt_string(map: &Map<String, Value>, key: &str) -> Result<Option<Option<String>>, Invalid> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(_) => Err(wrong_type(key, "a string")),
    }
}

/// A string that must be present.
pub fn required_string(map: &Map<String, Value>, key: &str) -> Result<String, Invalid> {
    match opt_string(map, key)? {
        Some(Some(s)) => Ok(s),
        _ => Err(Invalid::new(key, ErrorCode::Blank, format!("{key} can't be blank"))),
    }
}

pub fn opt_bool(map: &Map<String, Value>, key: &str) -> Result<Option<bool>, Invalid> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(wrong_type(key, "true or false")),
    }
}

/// `None`: absent; `Some(None)`: null; `Some(Some(list))`: an array of strings.
pub fn opt_string_list(map: &Map<String, Value>, key: &str) -> Result<Option<Option<Vec<String>>>, Invalid> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(|list| Some(Some(list)))
            .ok_or_else(|| wrong_type(key, "an array of strings or null")),
        Some(_) => Err(wrong_type(key, "an array of strings or null")),
    }
}

/// `None`: absent; `Some(None)`: null; `Some(Some(id))`: a positive integer.
pub fn opt_id(map: &Map<String, Value>, key: &str) -> Result<Option<Option<i64>>, Invalid> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => match v.as_i64() {
            Some(id) if id > 0 => Ok(Some(Some(id))),
            _ => Err(wrong_type(key, "a user id or null")),
        },
    }
}

/// `None`: absent; `Some(None)`: null; `Some(Some(t))`: an RFC 3339 time.
pub fn opt_time(map: &Map<String, Value>, key: &str) -> Result<Option<Option<Timestamp>>, Invalid> {
    match opt_string(map, key) {
        Ok(Some(Some(s))) => Timestamp::parse_rfc3339(&s)
            .map(|t| Some(Some(t)))
            .ok_or_else(|| wrong_type(key, "an RFC 3339 time such as 2026-12-31T23:59:59Z, or null")),
        Ok(other) => Ok(other.map(|_| None)),
        Err(_) => Err(wrong_type(
            key,
            "an RFC 3339 time such as 2026-12-31T23:59:59Z, or null",
        )),
    }
}

/// Collects the errors of several field parses into one 422.
#[derive(Default)]
pub struct Errors(Vec<Invalid>);

impl Errors {
    pub fn check<T>(&mut self, r: Result<T, Invalid>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid(self.0))
        }
    }
}

/// A record id from a path: anything but a positive integer names no
/// record, so it is a 404 like any unknown id.
pub fn record_id<Id: PathId>(path: Result<Path<Id>, PathRejection>) -> Result<Id, ApiError> {
    crate::client::record_id(path).ok_or(ApiError::NotFound)
}

/// The absolute base of the URLs the API returns: `--public-url`, else the
/// request's `Host` (or `X-Forwarded-Host`/`-Proto` from a trusted proxy).
#[derive(Debug, Clone)]
pub struct BaseUrl(pub String);

impl BaseUrl {
    pub fn join(&self, path: &str) -> String {
        format!("{}{}", self.0, path)
    }
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_'))
}

impl FromRequestParts<AppState> for BaseUrl {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(url) = &state.config.public_url {
            return Ok(BaseUrl(url.trim_end_matches('/').to_owned()));
        }
        let peer_trusted = {
            let peer = parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip());
            peer.is_some_and(|p| state.config.trusted_proxies.iter().any(|n| n.contains(&p)))
        };
        let header_str = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let forwarded_host = peer_trusted.then(|| header_str("x-forwarded-host")).flatten();
        let host = forwarded_host
            .or_else(|| header_str("host"))
            .or(parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or("localhost")
            .trim();
        if !valid_host(host) {
            return Err(ApiError::bad_request("The Host header is not a valid host name."));
        }
        let proto = peer_trusted
            .then(|| header_str("x-forwarded-proto"))
            .flatten()
            .filter(|p| *p == "https" || *p == "http")
            .unwrap_or("http");
        Ok(BaseUrl(format!("{proto}://{host}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::id::UserId;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn records_refuse_unknown_and_read_only_fields() {
        let ok = record(
            obj(json!({"api_token": {"description": "x"}})),
            "api_token",
            &["description"],
            &["id"],
        );
        assert!(ok.is_ok());
        let unknown = record(
            obj(json!({"api_token": {"colour": 1}})),
            "api_token",
            &["description"],
            &["id"],
        );
        assert!(matches!(unknown, Err(ApiError::BadRequest(_))));
        let ro = record(
            obj(json!({"api_token": {"id": 1}})),
            "api_token",
            &["description"],
            &["id"],
        );
        assert!(matches!(ro, Err(ApiError::Invalid(_))));
        let top = record(obj(json!({"other": {}})), "api_token", &[], &[]);
        assert!(matches!(top, Err(ApiError::BadRequest(_))));
        let empty = record(Map::new(), "api_token", &[], &[]).expect("empty is fine");
        assert!(empty.is_empty());
    }

    #[test]
    fn messages_never_echo_odd_keys() {
        let key = "lk_4fQ9aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa000000";
        let err = record(obj(json!({ key: 1 })), "api_token", &[], &[]).expect_err("unknown");
        assert!(!err.body().contains("lk_"));
    }

    /// What `record_id` makes of `/users/{raw}`: the id, or the status of
    /// its error.
    async fn path_id(raw: &str) -> Result<i64, u16> {
        use axum::routing::get;
        use tower::ServiceExt;

        async fn handler(id: Result<Path<UserId>, PathRejection>) -> String {
            match record_id(id) {
                Ok(id) => id.to_string(),
                Err(e) => format!("error {}", e.status().as_u16()),
            }
        }
        let app = axum::Router::new().route("/users/{id}", get(handler));
        let req = Request::builder()
            .uri(format!("/users/{raw}"))
            .body(Body::empty())
            .expect("request");
        let res = app.oneshot(req).await.expect("response");
        let body = res.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8(body.to_vec()).expect("utf-8");
        match text.strip_prefix("error ") {
            Some(status) => Err(status.parse().expect("status")),
            None => Ok(text.parse().expect("id")),
        }
    }

    #[tokio::test]
    async fn ids_must_be_positive_integers() {
        assert_eq!(path_id("7").await, Ok(7));
        for bad in ["0", "-1", "abc", "99999999999999999999", "7.5", "%31%00"] {
            assert_eq!(path_id(bad).await, Err(404), "{bad}");
        }
    }
}
