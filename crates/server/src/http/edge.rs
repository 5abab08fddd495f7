//! Errors that arise outside the handlers: oversized request heads, and
//! the bare 4xx answers of the framework's own rejections. Every 4xx the
//! service sends carries the JSON error body of docs/api.md ("Errors"),
//! never an empty or `text/plain` body. What the HTTP parser refuses before
//! a request exists (docs/api.md, "Errors outside the API") is the one
//! exception, and it is documented there.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::{raw_json, ApiError};

/// Longest request target (path and query) served: 414 above it.
pub const MAX_URI: usize = 32 * 1024;
/// Most bytes of header names and values served: 431 above it.
pub const MAX_HEADERS: usize = 64 * 1024;

/// The `{"error", "description"}` body for statuses [`ApiError`] has no
/// variant for.
#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    description: &'static str,
}

/// The JSON error answer for a 4xx `status` made outside a handler.
pub fn error_for(status: StatusCode) -> Response {
    match status {
        StatusCode::BAD_REQUEST => ApiError::bad_request(MALFORMED).into_response(),
        StatusCode::NOT_FOUND => ApiError::NotFound.into_response(),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed.into_response(),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge.into_response(),
        _ => raw_json(status, parser_error_body(status.as_u16())),
    }
}

const MALFORMED: &str = "The request is malformed.";

/// The JSON error body for a status the HTTP layer answers itself: 414,
/// 431, and 400 (and any other status) for a request that is malformed.
/// Also what the connection writes in place of the parser's bare answer to
/// a request it cannot parse (`connections.rs`).
pub fn parser_error_body(status: u16) -> String {
    let (error, description) = match status {
        414 => ("UriTooLong", "The request path and query are longer than 32 KiB."),
        431 => (
            "RequestHeaderFieldsTooLarge",
            "The request headers are larger than 64 KiB.",
        ),
        _ => ("BadRequest", MALFORMED),
    };
    serde_json::to_string(&ErrorBody { error, description }).unwrap_or_default()
}

/// Middleware: refuses an oversized request head with a JSON 414 or 431
/// before routing, and gives any bare 4xx that comes back (no content
/// type, or `text/plain` from a framework rejection) the JSON body of its
/// status. JSON and HTML answers (the API's and the Admin Center's) pass
/// unchanged.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > MAX_URI {
        return error_for(StatusCode::URI_TOO_LONG);
    }
    let header_len: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_len > MAX_HEADERS {
        return error_for(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    let res = next.run(req).await;
    let status = res.status();
    // 5xx are left alone: `/readyz` answers 503 in plain text by design
    // (docs/api.md, "Operations: `/healthz`, `/readyz`, `/metrics`"), and
    // a handler's 500 is already JSON.
    if !status.is_client_error() {
        return res;
    }
    let bare = match res.headers().get(header::CONTENT_TYPE).map(HeaderValue::as_bytes) {
        None => true,
        Some(ct) => ct.starts_with(b"text/plain"),
    };
    if !bare {
        return res;
    }
    let mut fixed = error_for(status);
    // Keep what the original answer said beside its body (`Allow`,
    // `Retry-After`, `WWW-Authenticate`, the request id).
    for (name, value) in res.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fixed.headers_mut().entry(name).or_insert_with(|| value.clone());
        }
    }
    fixed
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    #[tokio::test]
    async fn every_error_status_gets_a_json_body() {
        for code in [400u16, 404, 405, 408, 411, 413, 414, 415, 431] {
            let status = StatusCode::from_u16(code).expect("status");
            let res = error_for(status);
            assert_eq!(res.status(), status);
            assert_eq!(
                res.headers().get(header::CONTENT_TYPE).map(HeaderValue::as_bytes),
                Some(&b"application/json; charset=utf-8"[..])
            );
            let body = to_bytes(res.into_body(), 4096).await.expect("body");
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert!(v["error"].is_string() && v["description"].is_string(), "{code}: {v}");
        }
    }
}
