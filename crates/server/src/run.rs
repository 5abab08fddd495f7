//! Starting and stopping a whole server: bind, first-run bootstrap, serve,
//! background tasks, and a shutdown that drains requests and flushes
//! `last_used`. The CLI's `serve` and the integration tests both use this.

use std::net::SocketAddr;
use std::sync::Arc;

use latchkey_core::{
    account::{NewAccount, Plan, Subdomain},
    audit::Actor,
    user::{Email, NewUser, Role},
};
use latchkey_store::StoreError;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::http::{self, AppState};
use crate::{password, tasks, App, ServerConfig};

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
    let server = tokio::spawn(http::serve(listener, state.clone(), async move {
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

/// The account, admin and one-time password made on first run.
#[derive(Debug)]
pub struct Bootstrapped {
    pub subdomain: String,
    pub email: String,
    pub password: String,
}

/// On an empty database, creates the first account (plan `enterprise`, token
/// access off) and its admin with a random password. A database that has an
/// account is left alone.
pub async fn bootstrap(app: &App, subdomain: &str, admin_email: &str) -> Result<Option<Bootstrapped>, StoreError> {
    if app.store.account_count().await? > 0 {
        return Ok(None);
    }
    let subdomain = Subdomain::parse(subdomain).map_err(latchkey_core::DomainError::from)?;
    let email = Email::parse(admin_email).map_err(latchkey_core::DomainError::from)?;
    let secret = password::generate();
    let hash = password::hash(secret.clone())
        .await
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let account = NewAccount {
        subdomain: subdomain.clone(),
        name: subdomain.as_str().to_owned(),
        plan: Plan::Enterprise,
        api_token_access: false,
    };
    let admin = NewUser {
        name: "Admin".to_owned(),
        email: email.clone(),
        role: Role::Admin,
        verified: true,
        password_hash: Some(hash),
    };
    app.create_account(account, admin, &Actor::system()).await?;
    Ok(Some(Bootstrapped {
        subdomain: subdomain.as_str().to_owned(),
        email: email.as_str().to_owned(),
        password: secret,
    }))
}
