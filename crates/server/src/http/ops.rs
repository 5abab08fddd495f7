//! Operator endpoints (docs/api.md, "Operations"): `/healthz` (the process answers),
//! `/readyz` (this node can verify: in touch with its database within
//! `--max-staleness`, and not shutting down) and
//! `/metrics` (Prometheus text). None of them authenticates: they sit on
//! the listen address for the orchestrator and the scraper, and show no
//! tenant data.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Alive: the process accepts and answers requests. Touches nothing else,
/// which makes it the HTTP floor the benchmarks compare `/verify` with.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready to take traffic: this node answers verifications correctly, from
/// memory. It is ready while its last read of the change log is within
/// `--max-staleness`, even with the database gone for a moment: taking
/// every node out of the balancer at the first failed query would waste
/// the staleness window and fail them all together. It is not ready while
/// shutting down ([`crate::run::Running::drain_then_stop`]). A probe runs
/// no query and logs nothing; the follower reports database failures.
/// The verifier is loaded by then, since the server only starts after its
/// first full load ([`latchkey_app::App::open`]).
pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.draining.load(std::sync::atomic::Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    if state.app.is_stale(state.config.max_staleness) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "out of touch with the database for longer than --max-staleness",
        )
            .into_response();
    }
    (StatusCode::OK, "ready").into_response()
}

/// `/metrics` on the public listener: 404 when `--metrics-listen` serves
/// them elsewhere, so that moving them also hides them.
pub async fn public_metrics(state: State<AppState>) -> Response {
    if state.config.metrics_listen.is_some() {
        return StatusCode::NOT_FOUND.into_response();
    }
    metrics(state).await
}

/// The Prometheus text exposition of this process's counters.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.metrics.render(&state.app.metrics());
    let mut res = body.into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
    res
}
