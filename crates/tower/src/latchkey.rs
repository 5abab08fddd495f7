//! [`Latchkey`], the handle of an in-process verifier, and its
//! [`LatchkeyBuilder`].
//!
//! Opening one opens the deployment's database (the same `--database-url`
//! the servers take), loads every token into memory and starts the same
//! background loops a latchkey server runs ([`latchkey_app::upkeep`]):
//! following the change log, flushing `last_used` and usage, sharing
//! rate-limit counts with the other nodes. Those loops run until
//! [`Latchkey::shutdown`], or until every clone of the handle and every
//! layer made from it are dropped.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::Request;
use ipnet::IpNet;
use latchkey_app::upkeep::{self, Upkeep};
use latchkey_app::{App, AppError, RateLimiter};
use latchkey_core::scope::{ResourceDef, ScopeCatalog};
use latchkey_core::token::TokenPrefix;
use latchkey_core::verifier::ANY_ADDRESS;
use latchkey_edge::client::{peer_address, resolve_client};
use latchkey_edge::{AuthFailure, Gate};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::layer::LatchkeyLayer;
use crate::principal::Principal;

/// Failed authentications allowed per client address per minute, as
/// `latchkey serve --failed-auth-per-minute` defaults to.
pub const DEFAULT_FAILED_AUTH_PER_MINUTE: u32 = 100;

/// An in-process verifier of latchkey API tokens: the handle that makes
/// [`LatchkeyLayer`]s and stops the background work. Cheap to clone (every
/// clone is the same verifier), so handlers may keep one in their state.
///
/// ```no_run
/// # async fn run() -> Result<(), latchkey_tower::OpenError> {
/// use std::time::Duration;
///
/// let latchkey = latchkey_tower::Latchkey::builder("sqlite://latchkey.db")
///     .max_staleness(Duration::from_secs(5))
///     .open()
///     .await?;
/// let layer = latchkey.layer();
/// // … serve a router with `.layer(layer)` …
/// latchkey.shutdown().await; // writes last_used once more
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Latchkey {
    shared: Arc<Shared>,
    /// The background loops, until [`Latchkey::shutdown`] takes them.
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Latchkey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Latchkey")
            .field("tokens", &self.shared.app.token_count())
            .field("max_staleness", &self.shared.max_staleness)
            .finish_non_exhaustive()
    }
}

/// What every layer made from one [`Latchkey`] shares.
pub(crate) struct Shared {
    app: Arc<App>,
    /// Failed authentications per client address per minute.
    failures: Arc<RateLimiter<IpAddr>>,
    max_staleness: Duration,
    trusted_proxies: Vec<IpNet>,
    /// Whether each request's method and path are checked against the
    /// token's scopes, with the app's catalog.
    scopes_by_path: bool,
    /// Whether a request without `ConnectInfo` has been logged already.
    warned_no_peer: AtomicBool,
    /// Turned true by [`Latchkey::shutdown`]; dropped with the last handle
    /// or layer, which stops the loops too.
    stop: watch::Sender<bool>,
}

impl Shared {
    /// The [`Principal`] of `req`, or latchkey's answer refusing it.
    pub(crate) fn authenticate<B>(&self, req: &Request<B>) -> Result<Principal, AuthFailure> {
        let peer = peer_address(req.extensions()).unwrap_or_else(|| self.unknown_peer());
        let client = resolve_client(peer, req.headers(), &self.trusted_proxies);
        let target = self
            .scopes_by_path
            .then(|| self.app.scope_catalog().target(req.method().as_str(), req.uri().path()));
        let gate = Gate {
            app: &self.app,
            failures: &self.failures,
            max_staleness: self.max_staleness,
        };
        gate.authenticate(req.headers(), client, |app, email, hash, now, ip| {
            app.verify_with(email, hash, now, ip, target, Principal::from_identity)
        })
        .map_err(|refused| refused.answer)
    }

    /// The client address when axum recorded no peer: `::`, which no IP
    /// allowlist but `::/0` lets through, so a restricted token fails
    /// closed. Said once in the log, since it is a wiring mistake.
    fn unknown_peer(&self) -> IpAddr {
        if !self.warned_no_peer.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "a request without ConnectInfo<SocketAddr>: serve the router with \
                 `into_make_service_with_connect_info::<SocketAddr>()` so that latchkey sees client \
                 addresses (until then every client shares one failed-attempt limit, and tokens with \
                 an IP allowlist are refused)"
            );
        }
        ANY_ADDRESS
    }
}

impl Latchkey {
    /// Starts configuring an in-process verifier on `database_url`, written
    /// as `latchkey serve --database-url` takes it: `sqlite://latchkey.db`,
    /// `postgres://user@host:5432/latchkey` (with `sslmode` as for the
    /// servers).
    pub fn builder(database_url: impl Into<String>) -> LatchkeyBuilder {
        LatchkeyBuilder {
            database_url: database_url.into(),
            upkeep: Upkeep::default(),
            failed_auth_per_minute: DEFAULT_FAILED_AUTH_PER_MINUTE,
            trusted_proxies: Vec::new(),
            scopes_by_path: None,
        }
    }

    /// The layer that authenticates requests (see [`LatchkeyLayer`]). Every
    /// layer made from one handle shares its verifier and its limits.
    pub fn layer(&self) -> LatchkeyLayer {
        LatchkeyLayer {
            shared: self.shared.clone(),
        }
    }

    /// Whether this process has been out of touch with the database for
    /// longer than the maximum staleness, so that every request gets 503:
    /// for a readiness probe.
    pub fn is_stale(&self) -> bool {
        self.shared.app.is_stale(self.shared.max_staleness)
    }

    /// How many tokens the verifier holds.
    pub fn token_count(&self) -> usize {
        self.shared.app.token_count()
    }

    /// Stops following the change log and sharing rate-limit counts, and
    /// writes `last_used` and usage one last time; returns when that is
    /// done. Call it after the HTTP server has drained its requests. Layers
    /// still in use afterwards go on verifying from memory until the
    /// maximum staleness has passed, then answer 503. A second call (from
    /// any clone) returns at once.
    pub async fn shutdown(&self) {
        let _ = self.shared.stop.send(true);
        let tasks = match self.tasks.lock() {
            Ok(mut tasks) => std::mem::take(&mut *tasks),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// Where the resources whose paths are checked against tokens' scopes come
/// from.
enum PathScopes {
    ConfigFile(PathBuf),
    Catalog(ScopeCatalog),
}

/// Configures a [`Latchkey`]; made by [`Latchkey::builder`]. Every setting
/// has a latchkey server's default.
pub struct LatchkeyBuilder {
    database_url: String,
    upkeep: Upkeep,
    failed_auth_per_minute: u32,
    trusted_proxies: Vec<IpNet>,
    scopes_by_path: Option<PathScopes>,
}

impl std::fmt::Debug for LatchkeyBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the database URL: it may hold a password.
        f.debug_struct("LatchkeyBuilder")
            .field("upkeep", &self.upkeep)
            .field("failed_auth_per_minute", &self.failed_auth_per_minute)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish_non_exhaustive()
    }
}

impl LatchkeyBuilder {
    /// How long this process may be out of touch with the database before
    /// it refuses every request with 503 rather than trust what it
    /// remembers, which may miss a revocation (default 5 s, as
    /// `latchkey serve --max-staleness`).
    pub fn max_staleness(mut self, max: Duration) -> Self {
        self.upkeep.max_staleness = max;
        self
    }

    /// How often the change log is read for changes made anywhere (default
    /// 25 ms, as `latchkey serve --poll-interval-ms`): a change reaches this
    /// process within it. On PostgreSQL, notifications bring changes sooner.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.upkeep.poll_interval = every.max(Duration::from_millis(1));
        self
    }

    /// How often `last_used` and hourly usage are written (default 10 s,
    /// as `latchkey serve --flush-interval-secs`).
    pub fn flush_interval(mut self, every: Duration) -> Self {
        self.upkeep.flush_interval = every.max(Duration::from_millis(1));
        self
    }

    /// Failed authentications allowed per client address per minute before
    /// the address is refused with 429 (default 100, as
    /// `latchkey serve --failed-auth-per-minute`).
    pub fn failed_auth_per_minute(mut self, limit: u32) -> Self {
        self.failed_auth_per_minute = limit;
        self
    }

    /// The proxies in front of the service (as `latchkey serve
    /// --trusted-proxy`): when the peer is one, the client is read from
    /// `X-Forwarded-For`, `Forwarded` or `X-Real-IP`, walked from the right
    /// past every trusted hop (README.md, "Client addresses"). Without
    /// them, the client is the connection's peer whatever the headers say.
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpNet>) -> Self {
        self.trusted_proxies = proxies.into_iter().collect();
        self
    }

    /// Also checks each request's method and path against the token's
    /// scopes, as latchkey's REST API does, with the resources
    /// (`[[resources]]`: `name`, `description`, `paths`) of a latchkey
    /// configuration file, the one `latchkey serve --config` reads; its
    /// other keys are the servers' and are not read here. A restricted
    /// token is then refused with 403 on a path its scopes do not cover (a
    /// path no resource claims needs the global `read` / `write`).
    ///
    /// Without this (the default) paths are not checked, and routes say
    /// what they need with [`crate::require_scope`].
    pub fn scopes_by_path_from_config(mut self, config_file: impl Into<PathBuf>) -> Self {
        self.scopes_by_path = Some(PathScopes::ConfigFile(config_file.into()));
        self
    }

    /// [`LatchkeyBuilder::scopes_by_path_from_config`] with a catalog built
    /// in code.
    pub fn scopes_by_path(mut self, catalog: ScopeCatalog) -> Self {
        self.scopes_by_path = Some(PathScopes::Catalog(catalog));
        self
    }

    /// Opens the database (migrating it, as a server does), loads every
    /// token into memory and starts the background loops. Needs a tokio
    /// runtime.
    pub async fn open(self) -> Result<Latchkey, OpenError> {
        let catalog = match self.scopes_by_path {
            None => None,
            Some(PathScopes::Catalog(catalog)) => Some(catalog),
            Some(PathScopes::ConfigFile(path)) => Some(read_resources(&path)?),
        };
        // The token prefix only shapes new tokens; verification reads any.
        let mut app = App::open(&self.database_url, TokenPrefix::default())
            .await
            .map_err(OpenError::Database)?;
        let scopes_by_path = catalog.is_some();
        if let Some(catalog) = catalog {
            app = app.with_scope_catalog(catalog);
        }
        let app = Arc::new(app);
        let failures = Arc::new(RateLimiter::new(self.failed_auth_per_minute));
        let (stop, stop_rx) = watch::channel(false);
        let tasks = upkeep::spawn(app.clone(), &self.upkeep, vec![failures.clone()], stop_rx);
        Ok(Latchkey {
            shared: Arc::new(Shared {
                app,
                failures,
                max_staleness: self.upkeep.max_staleness,
                trusted_proxies: self.trusted_proxies,
                scopes_by_path,
                warned_no_peer: AtomicBool::new(false),
                stop,
            }),
            tasks: Arc::new(Mutex::new(tasks)),
        })
    }
}

/// Why a [`Latchkey`] could not be opened. The messages name no secret.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The database could not be opened, migrated or read.
    #[error("latchkey's database: {0}")]
    Database(#[source] AppError),
    /// The configuration file could not be read, or its `[[resources]]`
    /// are not valid.
    #[error("config {path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },
}

/// The part of a latchkey configuration file read here; every other key
/// is a server's option.
#[derive(Deserialize)]
struct ConfigResources {
    #[serde(default)]
    resources: Vec<ResourceDef>,
}

/// The file's `[[resources]]`, as a catalog beside latchkey's own.
fn read_resources(path: &Path) -> Result<ScopeCatalog, OpenError> {
    let config = |message: String| OpenError::Config {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| config(format!("cannot read it: {e}")))?;
    // The message only, never the excerpt of the file: a line of it may
    // hold the database URL's password.
    let file: ConfigResources =
        toml::from_str(&text).map_err(|e| config(format!("TOML parse error: {}", e.message().trim())))?;
    ScopeCatalog::with_resources(file.resources).map_err(config)
}
