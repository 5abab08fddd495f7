//! The rate-limit headers on every response for a token with a rate limit
//! (README.md, "IP allowlists and rate limits"; docs/api.md, "Rate limits"):
//!
//! | header | value |
//! |---|---|
//! | `X-Rate-Limit` | the limit's `requests` (Zendesk's header) |
//! | `X-Rate-Limit-Remaining` | requests left in this window (Zendesk's) |
//! | `RateLimit-Policy` | `"token";q=100;w=60`: the quota and window in seconds (IETF draft) |
//! | `RateLimit` | `"token";r=42;t=17`: remaining, and seconds until the window resets (IETF draft) |
//!
//! Authentication runs inside a handler's extractor, which cannot touch the
//! response; it notes what the verifier said in a task-local slot that
//! [`layer`] opens around each request and reads when the response passes
//! back. No allocation per request, and nothing for tokens without a limit.

use std::cell::Cell;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use latchkey_core::rate_limit::RateStatus;

pub const X_RATE_LIMIT: HeaderName = HeaderName::from_static("x-rate-limit");
pub const X_RATE_LIMIT_REMAINING: HeaderName = HeaderName::from_static("x-rate-limit-remaining");
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

tokio::task_local! {
    static NOTED: Cell<Option<RateStatus>>;
}

/// Remembers `status` for this request's response (outside [`layer`]: a
/// no-op).
pub fn note(status: Option<RateStatus>) {
    if status.is_some() {
        let _ = NOTED.try_with(|slot| slot.set(status));
    }
}

/// Adds the four headers for `status`.
pub fn insert(headers: &mut HeaderMap, status: &RateStatus) {
    let limit = status.limit;
    headers.insert(X_RATE_LIMIT, HeaderValue::from(limit.requests));
    headers.insert(X_RATE_LIMIT_REMAINING, HeaderValue::from(status.remaining));
    // Digits and fixed ASCII only: always valid header values.
    if let Ok(v) = HeaderValue::from_str(&format!("\"token\";q={};w={}", limit.requests, limit.per_seconds)) {
        headers.insert(RATELIMIT_POLICY, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"token\";r={};t={}", status.remaining, status.reset_secs)) {
        headers.insert(RATELIMIT, v);
    }
}

/// Opens the slot [`note`] fills, and adds the headers to the response if
/// it was filled.
pub async fn layer(req: Request, next: Next) -> Response {
    NOTED
        .scope(Cell::new(None), async move {
            let mut res = next.run(req).await;
            if let Some(status) = NOTED.with(Cell::get) {
                insert(res.headers_mut(), &status);
            }
            res
        })
        .await
}
