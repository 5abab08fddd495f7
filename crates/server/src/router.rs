//! The whole application as one router: the REST API ([`crate::http`]) and
//! the Admin Center ([`crate::web`]) side by side, the middleware every
//! response passes through (request ids, security headers, tracing, the
//! request metrics), the
//! `.json` suffix rewrite, and `serve`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, Uri};
use axum::response::IntoResponse;
use axum::{middleware, Router};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::http::error::ApiError;
use crate::metrics::RecordLayer;
use crate::state::AppState;

/// The whole application as a router, with every layer.
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .merge(crate::http::routes())
        .merge(crate::web::routes())
        .fallback(|req: Request| async move {
            crate::web::browser_not_found(&req).unwrap_or_else(|| ApiError::NotFound.into_response())
        })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn(crate::http::edge::json_errors))
        .layer(middleware::from_fn(crate::http::rate_headers::layer))
        .layer(middleware::map_response(security_headers))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req
                .extensions()
                .get::<RequestId>()
                .and_then(|id| id.header_value().to_str().ok())
                .unwrap_or("-")
                .to_owned();
            // The route, not the path: a path (like a query string) is client
            // text and may hold a token pasted in the wrong place.
            let route = req
                .extensions()
                .get::<axum::extract::MatchedPath>()
                .map_or("(no route)", |m| m.as_str())
                .to_owned();
            tracing::info_span!("request", method = %req.method(), route = %route, request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(request_id, Counter::default()))
        // Outermost, so that the time and status are the whole answer's.
        .layer(RecordLayer::new(state.metrics.clone(), state.app.clone()))
        .with_state(state)
}

/// Request ids: a per-process random prefix and a counter.
#[derive(Clone)]
struct Counter {
    prefix: u32,
    next: Arc<AtomicU64>,
}

impl Default for Counter {
    fn default() -> Self {
        Counter {
            prefix: rand::random(),
            next: Arc::new(AtomicU64::new(1)),
        }
    }
}

impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{:08x}-{n}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

async fn security_headers(mut res: axum::response::Response) -> impl IntoResponse {
    let h = res.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

/// Zendesk clients call `/api/v2/users/me.json`: the suffix is dropped
/// before routing, so every API path answers with or without it.
pub fn strip_json_suffix(mut req: Request) -> Request {
    let path = req.uri().path();
    if path.starts_with("/api/") {
        if let Some(stripped) = path.strip_suffix(".json") {
            let rebuilt = match req.uri().query() {
                Some(q) => format!("{stripped}?{q}"),
                None => stripped.to_owned(),
            };
            if let Ok(uri) = rebuilt.parse::<Uri>() {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish;
/// every connection is held to the configured timeouts and cap
/// ([`crate::connections`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = crate::connections::ConnectionLimits {
        header_read_timeout: state.config.header_read_timeout,
        idle_timeout: state.config.idle_timeout,
        max_connections: state.config.max_connections,
    };
    let app = tower::ServiceBuilder::new()
        .map_request(strip_json_suffix)
        .service(router(state));
    crate::connections::serve(listener, app, limits, shutdown).await
}
