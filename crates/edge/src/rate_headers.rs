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
//! Written once, here: latchkey's server adds them to its responses, and so
//! does `latchkey-tower` to a service's.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use latchkey_core::rate_limit::RateStatus;

/// `X-Rate-Limit`: the limit's requests per window.
pub const X_RATE_LIMIT: HeaderName = HeaderName::from_static("x-rate-limit");
/// `X-Rate-Limit-Remaining`: requests left in this window.
pub const X_RATE_LIMIT_REMAINING: HeaderName = HeaderName::from_static("x-rate-limit-remaining");
/// `RateLimit-Policy`: the quota and the window's length.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`: requests left, and seconds until the window resets.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

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
