//! Operator endpoints (docs/api.md, "Operations"): `/healthz` (the process answers),
//! `/readyz` (the database answers and the verifier is loaded) and
//! `/metrics` (Prometheus text). None of them authenticates: they sit on
//! the listen address for the orchestrator and the scraper, and show no
//! tenant data.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// How long `/readyz` waits for the database before calling it unreachable.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Alive: the process accepts and answers requests. Touches nothing else,
/// which makes it the HTTP floor the benchmarks compare `/verify` with.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready to take traffic: one cheap query answers within the timeout. The
/// verifier is loaded by then, since the server only starts after its first
/// full load ([`latchkey_app::App::open`]).
pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.app.is_stale(state.config.max_staleness) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "out of touch with the database for longer than --max-staleness",
        )
            .into_response();
    }
    match tokio::time::timeout(READY_TIMEOUT, state.app.ready()).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check: the database failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
        Err(_) => {
            tracing::warn!("readiness check: the database did not answer in time");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}

/// The Prometheus text exposition of this process's counters.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let body = state
        .metrics
        .render(state.app.token_count(), state.app.change_log_age());
    let mut res = body.into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
    res
}
