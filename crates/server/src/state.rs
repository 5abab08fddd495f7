//! [`AppState`]: what every handler, REST or page, can reach. It lives
//! outside `http` and `web` so that neither has to import the other.

use std::net::IpAddr;
use std::sync::Arc;

use latchkey_app::{App, RateLimiter};

use crate::config::ServerConfig;
use crate::metrics::Metrics;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub app: Arc<App>,
    pub config: Arc<ServerConfig>,
    /// Failed API authentications per client address per minute.
    pub limiter: Arc<RateLimiter<IpAddr>>,
    /// Leak revocation requests per client address per hour.
    pub revoke_limiter: Arc<RateLimiter<IpAddr>>,
    pub metrics: Arc<Metrics>,
    /// Shutting down: `/readyz` answers 503 while requests are still served.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

impl AppState {
    pub fn new(app: Arc<App>, config: ServerConfig) -> Self {
        let limiter = Arc::new(RateLimiter::new(config.failed_auth_per_minute));
        AppState {
            app,
            config: Arc::new(config),
            limiter,
            revoke_limiter: Arc::new(RateLimiter::per_window(crate::http::leaks::REVOKES_PER_HOUR, 3600)),
            metrics: Arc::default(),
            draining: Arc::default(),
        }
    }
}
