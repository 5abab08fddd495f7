//! The SQLite backend: one database file in WAL mode, shared by any number
//! of processes (servers and the CLI).
//!
//! Every write transaction starts with `BEGIN IMMEDIATE`, so it holds the
//! database's write lock from its first statement: counts and checks read
//! inside it cannot be overtaken by another writer, in this process or
//! another. Within one process, writers also queue on a mutex so that they
//! wait their turn instead of spinning in SQLite's busy handler.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use latchkey_core::secret::PasswordHash;
use latchkey_core::{
    account::{Account, NewAccount},
    audit::{AuditEvent, Head},
    audit_query::{AuditFilter, Seek},
    id::{AccountId, AuditEventId, TokenId, UserId},
    rate_limit::{PeerCount, RateReport},
    time::Timestamp,
    token::{ApiToken, NewToken, TokenCreator, TokenHash},
    usage::HourUsage,
    user::{NewUser, User},
    verifier::{Reload, TokenAuth, TokenUse},
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::backend::{Backend, SessionRecord, SweepLease, Tx};
use crate::common::Statements;
use crate::sql;
use crate::{Change, Entity, Result};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteBackend {
    pool: SqlitePool,
    /// What the change-log follower reads through: on SQLite, the same pool
    /// (PostgreSQL gives its follower a pool of its own).
    follow: SqlitePool,
    writer: Arc<Mutex<()>>,
}

impl SqliteBackend {
    /// Opens (creating if missing) and migrates the database at `url`.
    pub async fn open(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?;
        create_private(options.get_filename())?;
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before it is acknowledged.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteBackend {
            follow: pool.clone(),
            pool,
            writer: Arc::new(Mutex::new(())),
        })
    }
}

/// Creates a missing database file readable and writable by its owner only
/// (0600): it holds token hashes, password hashes and sessions. SQLite
/// gives the `-wal` and `-shm` files it adds the database file's mode. An
/// existing file keeps the mode its operator gave it.
pub(crate) fn create_private(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if path.as_os_str().is_empty() || path == std::path::Path::new(":memory:") {
        return Ok(());
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(cause) => Err(crate::StoreError::CannotCreate {
            path: path.display().to_string(),
            cause,
        }),
    }
}

struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
    _writer: OwnedMutexGuard<()>,
}

type Shared = Statements<Sqlite>;

#[async_trait]
impl Backend for SqliteBackend {
    async fn begin(&self) -> Result<Box<dyn Tx>> {
        let writer = self.writer.clone().lock_owned().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(Box::new(SqliteTx { tx, _writer: writer }))
    }

    fn pool_stats(&self) -> crate::PoolStats {
        crate::PoolStats::of(&self.pool)
    }

    async fn load_into(&self, reload: &mut Reload) -> Result<()> {
        // One read transaction, so that the three tables agree.
        Shared::load_into(self.pool.begin().await?, reload).await
    }

    async fn record_token_use(&self, uses: &[TokenUse]) -> Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let _writer = self.writer.lock().await;
        Shared::record_token_use(self.pool.begin_with("BEGIN IMMEDIATE").await?, uses).await
    }

    // Writes outside a transaction queue on the writer mutex too.
    async fn prune_changes(&self, before: Timestamp) -> Result<u64> {
        let _writer = self.writer.lock().await;
        Shared::prune_changes(&self.pool, before).await
    }
    async fn add_usage(&self, rows: &[HourUsage]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let _writer = self.writer.lock().await;
        Shared::add_usage(self.pool.begin_with("BEGIN IMMEDIATE").await?, rows).await
    }
    async fn usage_since(&self, token_id: TokenId, since: Timestamp) -> Result<Vec<HourUsage>> {
        Shared::usage_since(&self.pool, token_id, since).await
    }
    async fn prune_usage(&self, before: Timestamp) -> Result<u64> {
        let _writer = self.writer.lock().await;
        Shared::prune_usage(&self.pool, before).await
    }
    async fn share_rate_counts(&self, node: i64, reports: &[RateReport], now_ms: i64) -> Result<Vec<PeerCount>> {
        let _writer = self.writer.lock().await;
        let sql = (sql::SHARE_RATE_COUNTS_SQLITE, sql::PEER_RATE_COUNTS_SQLITE);
        Shared::share_rate_counts(&self.pool, sql, node, reports, now_ms).await
    }
    async fn prune_rate_counts(&self, before_ms: i64) -> Result<u64> {
        let _writer = self.writer.lock().await;
        Shared::prune_rate_counts(&self.pool, before_ms).await
    }
    async fn insert_session(&self, s: &SessionRecord) -> Result<()> {
        let _writer = self.writer.lock().await;
        Shared::insert_session(&self.pool, s).await
    }
    async fn touch_session(&self, id_hash: &[u8; 32], at: Timestamp) -> Result<()> {
        let _writer = self.writer.lock().await;
        Shared::touch_session(&self.pool, id_hash, at).await
    }
    async fn delete_session(&self, id_hash: &[u8; 32]) -> Result<()> {
        let _writer = self.writer.lock().await;
        Shared::delete_session(&self.pool, id_hash).await
    }
    async fn prune_sessions(&self, idle_before: Timestamp, created_before: Timestamp) -> Result<u64> {
        let _writer = self.writer.lock().await;
        Shared::prune_sessions(&self.pool, idle_before, created_before).await
    }

    // The follower's reads; on SQLite `follow` is the main pool.
    async fn latest_change(&self) -> Result<i64> {
        Shared::latest_change(&self.follow).await
    }
    async fn oldest_change(&self) -> Result<Option<i64>> {
        Shared::oldest_change(&self.follow).await
    }
    async fn changes_since(&self, seq: i64, limit: i64) -> Result<Vec<Change>> {
        Shared::changes_since(&self.follow, seq, limit).await
    }
    async fn token_auth(&self, id: TokenId) -> Result<Option<TokenAuth>> {
        Shared::token_auth(&self.follow, id).await
    }

    async fn account_count(&self) -> Result<i64> {
        Shared::account_count(&self.pool).await
    }
    async fn sweep_lease(&self) -> Result<Option<SweepLease>> {
        Ok(Some(SweepLease { _held: None }))
    }
    async fn sweeping_accounts(&self) -> Result<Vec<AccountId>> {
        Shared::sweeping_accounts(&self.pool).await
    }
    async fn accounts(&self) -> Result<Vec<Account>> {
        Shared::accounts(&self.pool).await
    }
    async fn account(&self, id: AccountId) -> Result<Option<Account>> {
        Shared::account(&self.pool, id).await
    }
    async fn account_by_subdomain(&self, subdomain: &str) -> Result<Option<Account>> {
        Shared::account_by_subdomain(&self.pool, subdomain).await
    }
    async fn user(&self, id: UserId) -> Result<Option<User>> {
        Shared::user(&self.pool, id).await
    }
    async fn account_user(&self, account_id: AccountId, id: UserId) -> Result<Option<User>> {
        Shared::account_user(&self.pool, account_id, id).await
    }
    async fn user_credentials(
        &self,
        account_id: AccountId,
        email: &str,
    ) -> Result<Option<(User, Option<PasswordHash>)>> {
        Shared::user_credentials(&self.pool, account_id, email).await
    }
    async fn users_page(
        &self,
        account_id: AccountId,
        after: Option<UserId>,
        before: Option<UserId>,
        limit: i64,
    ) -> Result<Vec<User>> {
        Shared::users_page(&self.pool, account_id, after, before, limit).await
    }
    async fn deleted_audit_actors(&self, account_id: AccountId, limit: i64) -> Result<Vec<User>> {
        Shared::deleted_audit_actors(&self.pool, account_id, limit).await
    }
    async fn token(&self, account_id: AccountId, id: TokenId) -> Result<Option<ApiToken>> {
        Shared::token(&self.pool, account_id, id).await
    }
    async fn tokens(&self, account_id: AccountId) -> Result<Vec<ApiToken>> {
        Shared::tokens(&self.pool, account_id).await
    }
    async fn tokens_with_creators(&self, account_id: AccountId) -> Result<Vec<(ApiToken, TokenCreator)>> {
        Shared::tokens_with_creators(&self.pool, account_id).await
    }
    async fn token_with_creator(&self, account_id: AccountId, id: TokenId) -> Result<Option<(ApiToken, TokenCreator)>> {
        Shared::token_with_creator(&self.pool, account_id, id).await
    }
    async fn audit_chain(&self, account_id: AccountId) -> Result<Vec<(AuditEvent, [u8; 32])>> {
        Shared::audit_chain(&self.pool, account_id).await
    }
    async fn audit_chain_and_head(&self, account_id: AccountId) -> Result<(Vec<(AuditEvent, [u8; 32])>, Option<Head>)> {
        // A read transaction: in WAL mode its first read fixes the
        // snapshot that every later read of it sees.
        Shared::audit_chain_and_head(self.pool.begin().await?, account_id).await
    }
    async fn accounts_with_audit_before(&self, before: Timestamp) -> Result<Vec<AccountId>> {
        Shared::accounts_with_audit_before(&self.pool, before).await
    }
    async fn session(&self, id_hash: &[u8; 32]) -> Result<Option<SessionRecord>> {
        Shared::session(&self.pool, id_hash).await
    }
    async fn audit_events(&self, account_id: AccountId, filter: &AuditFilter, seek: &Seek) -> Result<Vec<AuditEvent>> {
        Shared::audit_events(&self.pool, account_id, filter, seek).await
    }
    async fn audit_event(&self, account_id: AccountId, id: AuditEventId) -> Result<Option<AuditEvent>> {
        Shared::audit_event(&self.pool, account_id, id).await
    }
}

#[async_trait]
impl Tx for SqliteTx {
    // BEGIN IMMEDIATE already holds the database's write lock: "locking" an
    // account is reading it.
    async fn lock_account(&mut self, id: AccountId) -> Result<Option<Account>> {
        Shared::account(&mut *self.tx, id).await
    }
    async fn lock_account_by_subdomain(&mut self, subdomain: &str) -> Result<Option<Account>> {
        Shared::account_by_subdomain(&mut *self.tx, subdomain).await
    }
    async fn subdomain_taken(&mut self, subdomain: &str) -> Result<bool> {
        Ok(self.lock_account_by_subdomain(subdomain).await?.is_some())
    }
    async fn append_change(&mut self, entity: Entity, id: i64, now: Timestamp) -> Result<()> {
        Shared::append_change(&mut *self.tx, entity, id, now).await
    }

    async fn insert_account(&mut self, new: &NewAccount, now: Timestamp) -> Result<Account> {
        Shared::insert_account(&mut *self.tx, new, now).await
    }
    async fn save_account(&mut self, account: &Account) -> Result<()> {
        Shared::save_account(&mut *self.tx, account).await
    }
    async fn user(&mut self, account_id: AccountId, id: UserId) -> Result<Option<User>> {
        Shared::account_user(&mut *self.tx, account_id, id).await
    }
    async fn email_taken(&mut self, account_id: AccountId, email_normalized: &str) -> Result<bool> {
        Shared::email_taken(&mut *self.tx, account_id, email_normalized).await
    }
    async fn insert_user(&mut self, account_id: AccountId, new: &NewUser, now: Timestamp) -> Result<User> {
        Shared::insert_user(&mut *self.tx, account_id, new, now).await
    }
    async fn save_user(&mut self, user: &User, now: Timestamp) -> Result<()> {
        Shared::save_user(&mut *self.tx, user, now).await
    }
    async fn set_password(&mut self, user_id: UserId, password_hash: &PasswordHash) -> Result<()> {
        Shared::set_password(&mut *self.tx, user_id, password_hash).await
    }
    async fn count_tokens(&mut self, account_id: AccountId) -> Result<i64> {
        Shared::count_tokens(&mut *self.tx, account_id).await
    }
    async fn delete_account(&mut self, account_id: AccountId) -> Result<(Vec<UserId>, Vec<TokenId>)> {
        let members = Shared::account_members(&mut *self.tx, account_id).await?;
        for statement in sql::DELETE_ACCOUNT {
            Shared::delete_account_part(&mut *self.tx, statement, account_id).await?;
        }
        Ok(members)
    }
    async fn token(&mut self, account_id: AccountId, id: TokenId) -> Result<Option<ApiToken>> {
        Shared::token(&mut *self.tx, account_id, id).await
    }
    async fn token_hash_taken(&mut self, hash: &[u8]) -> Result<bool> {
        Shared::token_hash_taken(&mut *self.tx, hash).await
    }
    async fn insert_token(&mut self, account_id: AccountId, new: &NewToken, now: Timestamp) -> Result<ApiToken> {
        Shared::insert_token(&mut *self.tx, account_id, new, now).await
    }
    async fn save_token(&mut self, token: &ApiToken) -> Result<()> {
        Shared::save_token(&mut *self.tx, token).await
    }
    async fn delete_token(&mut self, id: TokenId) -> Result<()> {
        Shared::delete_token(&mut *self.tx, id).await
    }
    async fn rotate_token(
        &mut self,
        id: TokenId,
        hash: &TokenHash,
        visible_token: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<()> {
        Shared::rotate_token(&mut *self.tx, id, hash, visible_token, until, now).await
    }
    async fn tokens(&mut self, account_id: AccountId) -> Result<Vec<ApiToken>> {
        Shared::tokens_in(&mut *self.tx, account_id).await
    }
    async fn last_audit_event(&mut self, account_id: AccountId) -> Result<Option<(AuditEventId, [u8; 32])>> {
        Shared::last_audit_event(&mut *self.tx, account_id).await
    }
    async fn audit_head(&mut self, account_id: AccountId) -> Result<Option<Head>> {
        Shared::audit_head(&mut *self.tx, account_id).await
    }
    async fn set_audit_head(&mut self, account_id: AccountId, event_id: AuditEventId, hash: &[u8; 32]) -> Result<()> {
        Shared::set_audit_head(&mut *self.tx, account_id, event_id, hash).await
    }
    async fn count_pruned(&mut self, account_id: AccountId, pruned: i64) -> Result<()> {
        Shared::count_pruned(&mut *self.tx, account_id, pruned).await
    }
    async fn audit_prefix(
        &mut self,
        account_id: AccountId,
        limit: i64,
    ) -> Result<Vec<(AuditEventId, Timestamp, [u8; 32])>> {
        Shared::audit_prefix(&mut *self.tx, account_id, limit).await
    }
    async fn delete_audit_through(&mut self, account_id: AccountId, through: AuditEventId) -> Result<u64> {
        Shared::delete_audit_through(&mut *self.tx, account_id, through).await
    }
    async fn insert_audit(&mut self, event: &AuditEvent, hash: &[u8; 32]) -> Result<AuditEventId> {
        Shared::insert_audit(&mut *self.tx, event, hash).await
    }
    async fn commit(self: Box<Self>) -> Result<()> {
        Ok(self.tx.commit().await?)
    }
}
