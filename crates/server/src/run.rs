//! Starting and stopping a whole server: the open-file limit raised, bind,
//! serve, background tasks, and a shutdown that drains requests and flushes
//! `last_used`. The CLI's `serve` and the integration tests both use this;
//! first-run bootstrap is the service layer's own (`App::bootstrap`).

use std::net::SocketAddr;
use std::sync::Arc;

use latchkey_app::App;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::state::AppState;
use crate::{router, tasks, ServerConfig};

/// A server accepting requests on `addr`.
pub struct Running {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, when `--metrics-listen` moved it.
    pub metrics_addr: Option<SocketAddr>,
    pub state: AppState,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    tasks: Vec<JoinHandle<()>>,
}

/// File descriptors kept free of connections: the database's, the log's,
/// and those of the moment between an accept and its refusal.
const RESERVED_FILES: u64 = 128;

/// Raises this process's open-file soft limit to its hard limit (every
/// connection takes a file descriptor); the soft limit then in force.
pub fn raise_open_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft)
        }
    }
}

/// Binds `config.listen` and starts serving and the background tasks. The
/// connection cap is lowered, with a warning, to what the open-file limit
/// leaves room for.
pub async fn start(app: Arc<App>, config: ServerConfig) -> std::io::Result<Running> {
    let listener = bind(&config).await?;
    start_on(listener, app, config).await
}

/// Binds `config.listen`: the first step of a start, taken before anything
/// is written (the CLI binds before it creates the first admin, so that a
/// busy port leaves the database untouched).
pub async fn bind(config: &ServerConfig) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(config.listen).await
}

/// [`start`] on a listener [`bind`] made.
pub async fn start_on(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    mut config: ServerConfig,
) -> std::io::Result<Running> {
    if let Some(files) = raise_open_file_limit() {
        let room = usize::try_from(files.saturating_sub(RESERVED_FILES).max(1)).unwrap_or(usize::MAX);
        if config.max_connections > room {
            tracing::warn!(
                max_connections = config.max_connections,
                open_file_limit = files,
                "the open-file limit leaves room for {room} connections: capping them there"
            );
            config.max_connections = room;
        }
    }
    let addr = listener.local_addr()?;
    let metrics_listener = match config.metrics_listen {
        Some(at) => Some(tokio::net::TcpListener::bind(at).await?),
        None => None,
    };
    let (stop, stop_rx) = watch::channel(false);
    let state = AppState::new(app.clone(), config.clone());
    let mut metrics_addr = None;
    if let Some(listener) = metrics_listener {
        metrics_addr = Some(listener.local_addr()?);
        let router = axum::Router::new()
            .route("/metrics", axum::routing::get(crate::http::ops::metrics))
            .with_state(state.clone());
        let mut metrics_stop = stop_rx.clone();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = metrics_stop.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stopped).await {
                tracing::warn!(error = %e, "the metrics listener failed");
            }
        });
    }
    let limiters = vec![state.limiter.clone(), state.revoke_limiter.clone()];
    let tasks = tasks::spawn(app, limiters, &config, stop_rx.clone());
    let mut server_stop = stop_rx;
    let server = tokio::spawn(router::serve(listener, state.clone(), async move {
        let _ = server_stop.wait_for(|s| *s).await;
    }));
    Ok(Running {
        addr,
        metrics_addr,
        state,
        stop,
        server,
        tasks,
    })
}

impl Running {
    /// A graceful shutdown behind a load balancer: `/readyz` turns 503 at
    /// once while every request is still served, for `config.shutdown_grace`
    /// (or until `skip` resolves: a second signal), then [`Running::stop`].
    pub async fn drain_then_stop(self, skip: impl std::future::Future<Output = ()>) -> std::io::Result<()> {
        self.state.draining.store(true, std::sync::atomic::Ordering::Release);
        let grace = self.state.config.shutdown_grace;
        if !grace.is_zero() {
            tracing::info!(
                grace_secs = grace.as_secs_f64(),
                "shutting down: /readyz answers 503; still serving"
            );
            tokio::select! {
                _ = tokio::time::sleep(grace) => {}
                _ = skip => {}
            }
        }
        self.stop().await
    }

    /// Stops accepting, lets in-flight requests finish, stops the tasks and
    /// flushes `last_used`.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        let served = self.server.await.unwrap_or(Ok(()));
        for t in self.tasks {
            let _ = t.await;
        }
        served
    }
}
