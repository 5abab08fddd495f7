//! The HTTP edge: the router, the middleware every response passes through,
//! and `serve`. Handlers contain no SQL and no credential checks: they parse
//! input, call the service layer ([`crate::App`]) and shape the response.

pub mod account;
pub mod audit;
pub mod auth;
pub mod credentials;
pub mod error;
pub mod input;
pub mod metrics;
pub mod ops;
pub mod paging;
pub mod tokens;
pub mod users;
pub mod verify;
pub mod views;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, Uri};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::{middleware, Router};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::app::App;
use crate::config::ServerConfig;
use auth::FailureLimiter;
use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub app: Arc<App>,
    pub config: Arc<ServerConfig>,
    pub limiter: Arc<FailureLimiter>,
    pub metrics: Arc<metrics::Metrics>,
}

impl AppState {
    pub fn new(app: Arc<App>, config: ServerConfig) -> Self {
        let limiter = Arc::new(FailureLimiter::new(config.failed_auth_per_minute));
        AppState {
            app,
            config: Arc::new(config),
            limiter,
            metrics: Arc::default(),
        }
    }
}

/// The REST API's routes (paths without the `.json` suffix).
fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v2/users/me", get(users::me))
        .route("/api/v2/users", get(users::list).post(users::create))
        .route(
            "/api/v2/users/{id}",
            get(users::show).put(users::update).delete(users::delete),
        )
        .route("/api/v2/api_tokens", get(tokens::list).post(tokens::create))
        .route(
            "/api/v2/api_tokens/{id}",
            get(tokens::show).put(tokens::update).delete(tokens::delete),
        )
        .route("/api/v2/account", get(account::show))
        .route(
            "/api/v2/account/settings",
            get(account::settings).put(account::update_settings),
        )
        .merge(audit::routes())
}

/// The whole application as a router, with every layer.
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .merge(api_routes())
        .merge(crate::web::routes())
        .route("/verify", any(verify::verify))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
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

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::ServiceExt;
    let app = tower::ServiceBuilder::new()
        .map_request(strip_json_suffix)
        .service(router(state));
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}
