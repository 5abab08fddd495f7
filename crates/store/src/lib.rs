//! latchkey's storage: every change as one transaction that also writes its
//! audit event and its change-log entry, and the follower that keeps a
//! process's in-memory verifier current from that log.
//!
//! [`Store`] is what callers use (in the running service, only the service
//! layer, `latchkey-app`, does). It implements each operation once, in
//! terms of a [`backend::Backend`] that supplies small, typed statements,
//! and does not hand the backend out: each read is a method of its own.
//! SQLite and PostgreSQL are the two backends; both run the same SQL text
//! (`sql.rs`) and map rows the same way (`rows.rs`).

pub mod audit_log;
pub mod backend;
pub mod backup;
pub mod copy;
pub mod follower;
#[macro_use]
mod rows;
mod common;
pub mod postgres;
mod sql;
pub mod sqlite;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use follower::Follower;
pub use store::{Page, Store};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A domain rule refused the change (404, 403 or 422 at the edge).
    #[error(transparent)]
    Domain(#[from] latchkey_core::DomainError),
    /// The database failed; the cause is for the log, never for a response.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema is newer than this build, or migrating failed.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value this build cannot read (for example an unknown plan).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// An operator command that would do harm was refused (for example
    /// copying into a database that already holds data).
    #[error("{0}")]
    Refused(String),
    /// The SQLite database file cannot be created where the URL says.
    #[error("cannot create the SQLite database {path}: {cause}")]
    CannotCreate { path: String, cause: std::io::Error },
    /// PostgreSQL did not complete a connection in time. Names the server,
    /// never the password.
    #[error("PostgreSQL at {server} did not accept a connection within {secs} s")]
    ConnectTimeout { server: String, secs: f64 },
    /// The database URL names no supported database.
    #[error("unsupported database URL (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which kind of entity a change-log entry touched; its spelling in the
/// `changes.entity` column is the snake-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum Entity {
    Account,
    User,
    Token,
}

impl Entity {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// One change-log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: i64,
    pub entity: Entity,
    pub entity_id: i64,
    /// For a token's entry, the token as it stood when the entry was read
    /// (in the same statement, so at least as new as the entry); `None`
    /// when the token is gone, or the entry is not a token's.
    pub token: Option<latchkey_core::verifier::TokenAuth>,
}

/// The connections of the pool that requests and commands use (the
/// PostgreSQL follower's own few are not counted), read at scrape time for
/// a server's `/metrics` (docs/api.md, "Operations").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Connections open now, idle or in use.
    pub open: u32,
    /// Of those, the idle ones.
    pub idle: u32,
    /// The most the pool opens (`--pool-size` on PostgreSQL, 8 on SQLite).
    pub max: u32,
}

impl PoolStats {
    pub fn of<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> Self {
        let open = pool.size();
        PoolStats {
            open,
            // The pool counts its idle connections apart from its size; a
            // moment's skew never makes more idle than open.
            idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX).min(open),
            max: pool.options().get_max_connections(),
        }
    }
}

/// How a process connects to PostgreSQL (README.md, "Command line").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectOptions {
    /// How long the first connection may take before opening fails.
    pub connect_timeout: std::time::Duration,
    /// Connections for requests and commands (the follower has 3 more).
    pub pool_size: u32,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: std::time::Duration::from_secs(5),
            pool_size: 16,
        }
    }
}

/// Opens the database a URL names, creating and migrating it if needed.
pub async fn open(url: &str) -> Result<Store> {
    open_with(url, ConnectOptions::default()).await
}

/// [`open`], connecting to PostgreSQL as `options` say.
pub async fn open_with(url: &str, options: ConnectOptions) -> Result<Store> {
    if url.starts_with("sqlite:") {
        let backend = sqlite::SqliteBackend::open(url).await?;
        Ok(Store::new(std::sync::Arc::new(backend)))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let backend = postgres::PgBackend::open(url, options).await?;
        Ok(Store::new(std::sync::Arc::new(backend)))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}
