//! The rate-limit headers on every response for a token with a rate limit
//! (the four of [`latchkey_edge::rate_headers`], written there once).
//!
//! Authentication runs inside a handler's extractor, which cannot touch the
//! response; it notes what the verifier said in a task-local slot that
//! [`layer`] opens around each request and reads when the response passes
//! back. No allocation per request, and nothing for tokens without a limit.

use std::cell::Cell;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use latchkey_core::rate_limit::RateStatus;
pub use latchkey_edge::rate_headers::insert;

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
