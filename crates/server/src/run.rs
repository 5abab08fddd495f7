//! Starting and stopping a whole server: bind, serve, background tasks, and
//! a shutdown that drains requests and flushes `last_used`. The CLI's
//! `serve` and the integration tests both use this; first-run bootstrap is
//! the service layer's own (`App::bootstrap`).

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
    pub state: AppState,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    tasks: Vec<JoinHandle<()>>,
}

/// Binds `config.listen` and starts serving and the background tasks.
pub async fn start(app: Arc<App>, config: ServerConfig) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let state = AppState::new(app.clone(), config.clone());
    let tasks = tasks::spawn(app, state.limiter.clone(), &config, stop_rx.clone());
    let mut server_stop = stop_rx;
    let server = tokio::spawn(router::serve(listener, state.clone(), async move {
        let _ = server_stop.wait_for(|s| *s).await;
    }));
    Ok(Running {
        addr,
        state,
        stop,
        server,
        tasks,
    })
}

impl Running {
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
