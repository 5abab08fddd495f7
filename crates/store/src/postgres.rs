//! The PostgreSQL backend: any number of `latchkey serve` nodes (and CLI
//! runs) share one database. It runs the same statements as SQLite
//! (`sql.rs`); what differs is how a transaction serialises its writers.
//!
//! **Per-account writes.** [`Tx::lock_account`] reads the account row with
//! `SELECT … FOR UPDATE`, so two transactions that change one account run
//! one after the other, whichever node they start on. The token count and
//! the insert that follows it, and the account's audit hash chain (read the
//! last hash, append the next), therefore see no concurrent writer: the
//! token limit is exact and the chain never forks. Under READ COMMITTED each
//! statement after the lock sees everything committed before the lock was
//! granted.
//!
//! **The change log never lets a follower skip a late commit.** A sequence
//! hands out numbers at insert time, not at commit time: transaction T9 may
//! take seq 9, T10 seq 10, and T10 commit first. A follower that read 10
//! and moved its position past 9 would never apply T9. So every append to
//! `changes` first takes one transaction-scoped advisory lock
//! (`pg_advisory_xact_lock(CHANGE_LOG_LOCK)`), held until commit or
//! rollback. Numbers are then drawn in commit order: when seq 10 becomes
//! visible, the transaction that drew 9 has already committed or rolled
//! back (a rollback leaves a harmless gap). The lock is taken at the last
//! step of a mutation, just before commit, so it serialises only the tail
//! of each write transaction; per-account locks are always taken before it,
//! so lock order is fixed and the two cannot deadlock each other.
//!
//! **Wake-ups.** The first append of a transaction also queues
//! `NOTIFY latchkey_changes`; PostgreSQL delivers it only if and when the
//! transaction commits. Followers `LISTEN` on that channel
//! ([`PgBackend`]'s [`Backend::change_listener`]); a lost notification costs
//! latency, never correctness, because the follower still reads the log.

use std::str::FromStr;
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
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPoolOptions};
use sqlx::Connection as _;
use sqlx::{PgPool, Postgres, Transaction};

use crate::backend::{Backend, ChangeListener, SessionRecord, SweepLease, Tx, Wake};
use crate::common::Statements;
use crate::rows::AccountRow;
use crate::sql;
use crate::{Change, Entity, Result};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel every commit that appended to the change log notifies.
pub const CHANGE_CHANNEL: &str = "latchkey_changes";

/// The advisory-lock key that serialises appends to the change log
/// ("lkchange" in ASCII).
pub const CHANGE_LOG_LOCK: i64 = 0x6c6b_6368_616e_6765;

/// The advisory-lock key held, for the session, by the node that sweeps.
const SWEEP_LOCK: i64 = 0x6c61_7463_6873_7770; // "latchswp"

impl SweepLease {
    /// Gives the lease back now: unlocks and closes the connection, so that
    /// the next sweep (on this node or another) finds it free at once, not
    /// only once the server has noticed a dropped connection.
    pub async fn release(mut self) -> Result<()> {
        if let Some(mut conn) = self._held.take() {
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(SWEEP_LOCK)
                .execute(&mut conn)
                .await?;
            sqlx::Connection::close(conn).await?;
        }
        Ok(())
    }
}
const APPEND_LOCK_AND_NOTIFY: &str = "SELECT pg_advisory_xact_lock($1), pg_notify($2, '')";
const LOCK_ACCOUNT_BY_ID: &str = concat!("SELECT ", account_columns!(), " FROM accounts WHERE id = $1 FOR UPDATE");
const LOCK_ACCOUNT_BY_SUBDOMAIN: &str = concat!(
    "SELECT ",
    account_columns!(),
    " FROM accounts WHERE subdomain = $1 FOR UPDATE"
);

pub struct PgBackend {
    pool: PgPool,
    /// A few connections of the follower's own (the listening connection
    /// and its reads of the change log), so that a storm of requests that
    /// holds every connection of `pool` cannot delay following the log and
    /// make the node look out of touch.
    follow: PgPool,
}

impl PgBackend {
    /// Connects to and migrates the database at `url`. One connection is
    /// made first, once and within `connect.connect_timeout`, so that a
    /// server that is down or unreachable fails at once with its cause,
    /// rather than after the pool's retries.
    pub async fn open(url: &str, connect: crate::ConnectOptions) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?.application_name("latchkey");
        match tokio::time::timeout(connect.connect_timeout, PgConnection::connect_with(&options)).await {
            Ok(first) => first?.close().await?,
            Err(_) => {
                return Err(crate::StoreError::ConnectTimeout {
                    server: format!(
                        "{}:{} (database {})",
                        options.get_host(),
                        options.get_port(),
                        options.get_database().unwrap_or("postgres")
                    ),
                    secs: connect.connect_timeout.as_secs_f64(),
                })
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(connect.pool_size)
            .min_connections(1)
            // As long as SQLite's busy timeout: requests queue for a
            // connection under load rather than fail.
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&pool).await?;
        let follow = PgPoolOptions::new()
            .max_connections(3)
            .min_connections(1)
            // A follower that has lost the database retries soon; its
            // verifications carry on from memory meanwhile (--max-staleness).
            .acquire_timeout(Duration::from_secs(2))
            // No ping before each read: a wake-up costs two round trips, not
            // four. A dead connection fails one read, which is retried.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        warn_if_plaintext(&pool, options.get_host()).await;
        Ok(PgBackend { pool, follow })
    }

    /// The connection pool, for tools that work on whole tables (copy-db).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

struct PgTx {
    tx: Transaction<'static, Postgres>,
    /// Whether this transaction already holds the change-log lock.
    appending: bool,
}

/// Wake-ups from `LISTEN latchkey_changes`.
struct PgChangeListener {
    listener: PgListener,
}

#[async_trait]
impl ChangeListener for PgChangeListener {
    async fn next(&mut self) -> Result<Wake> {
        Ok(match self.listener.try_recv().await? {
            Some(_) => Wake::Changed,
            // The connection dropped and has been re-established; whatever
            // was notified in between is lost.
            None => Wake::Reconnected,
        })
    }
}

type Shared = Statements<Postgres>;

#[async_trait]
impl Backend for PgBackend {
    async fn begin(&self) -> Result<Box<dyn Tx>> {
        let tx = self.pool.begin().await?;
        Ok(Box::new(PgTx { tx, appending: false }))
    }

    fn pool_stats(&self) -> crate::PoolStats {
        crate::PoolStats::of(&self.pool)
    }

    async fn change_listener(&self) -> Result<Option<Box<dyn ChangeListener>>> {
        let mut listener = PgListener::connect_with(&self.follow).await?;
        listener.eager_reconnect(true);
        listener.listen(CHANGE_CHANNEL).await?;
        Ok(Some(Box::new(PgChangeListener { listener })))
    }

    async fn load_into(&self, reload: &mut Reload) -> Result<()> {
        // One snapshot for the three tables, so that they agree; read
        // through the follower's own pool.
        let mut tx = self.follow.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        Shared::load_into(tx, reload).await
    }

    async fn record_token_use(&self, uses: &[TokenUse]) -> Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        // Every node flushes its own batch: rows are locked in id order so
        // that two nodes' flushes never deadlock on each other.
        let mut sorted = uses.to_vec();
        sorted.sort_unstable_by_key(|u| u.id);
        Shared::record_token_use(self.pool.begin().await?, &sorted).await
    }

    async fn prune_changes(&self, before: Timestamp) -> Result<u64> {
        Shared::prune_changes(&self.pool, before).await
    }
    async fn add_usage(&self, rows: &[HourUsage]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        Shared::add_usage(self.pool.begin().await?, rows).await
    }
    async fn usage_since(&self, token_id: TokenId, since: Timestamp) -> Result<Vec<HourUsage>> {
        Shared::usage_since(&self.pool, token_id, since).await
    }
    async fn prune_usage(&self, before: Timestamp) -> Result<u64> {
        Shared::prune_usage(&self.pool, before).await
    }
    async fn share_rate_counts(&self, node: i64, reports: &[RateReport], now_ms: i64) -> Result<Vec<PeerCount>> {
        let sql = (sql::SHARE_RATE_COUNTS_PG, sql::PEER_RATE_COUNTS_PG);
        Shared::share_rate_counts(&self.pool, sql, node, reports, now_ms).await
    }
    async fn prune_rate_counts(&self, before_ms: i64) -> Result<u64> {
        Shared::prune_rate_counts(&self.pool, before_ms).await
    }
    async fn insert_session(&self, s: &SessionRecord) -> Result<()> {
        Shared::insert_session(&self.pool, s).await
    }
    async fn touch_session(&self, id_hash: &[u8; 32], at: Timestamp) -> Result<()> {
        Shared::touch_session(&self.pool, id_hash, at).await
    }
    async fn delete_session(&self, id_hash: &[u8; 32]) -> Result<()> {
        Shared::delete_session(&self.pool, id_hash).await
    }
    async fn prune_sessions(&self, idle_before: Timestamp, created_before: Timestamp) -> Result<u64> {
        Shared::prune_sessions(&self.pool, idle_before, created_before).await
    }

    // The follower's reads, through its own pool.
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
        // Released by `SweepLease::release`, or with the connection.
        let mut conn = self.pool.acquire().await?.detach();
        let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(SWEEP_LOCK)
            .fetch_one(&mut conn)
            .await?;
        Ok(held.then_some(SweepLease { _held: Some(conn) }))
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
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        Shared::audit_chain_and_head(tx, account_id).await
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
impl Tx for PgTx {
    async fn lock_account(&mut self, id: AccountId) -> Result<Option<Account>> {
        let row: Option<AccountRow> = sqlx::query_as(LOCK_ACCOUNT_BY_ID)
            .bind(id.get())
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(Account::try_from).transpose()
    }

    async fn lock_account_by_subdomain(&mut self, subdomain: &str) -> Result<Option<Account>> {
        let row: Option<AccountRow> = sqlx::query_as(LOCK_ACCOUNT_BY_SUBDOMAIN)
            .bind(subdomain)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(Account::try_from).transpose()
    }

    async fn subdomain_taken(&mut self, subdomain: &str) -> Result<bool> {
        // A plain read, no lock: a concurrent insert of the same subdomain
        // is caught by the unique index (accounts_subdomain_key) and
        // reported as taken.
        Ok(Shared::account_by_subdomain(&mut *self.tx, subdomain).await?.is_some())
    }

    async fn append_change(&mut self, entity: Entity, id: i64, now: Timestamp) -> Result<()> {
        if !self.appending {
            // Held until commit: see the module documentation.
            sqlx::query(APPEND_LOCK_AND_NOTIFY)
                .bind(CHANGE_LOG_LOCK)
                .bind(CHANGE_CHANNEL)
                .execute(&mut *self.tx)
                .await?;
            self.appending = true;
        }
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

/// Says once, when the database is opened, that credentials and tokens'
/// hashes cross the network in the clear: a server other than this machine
/// reached without TLS (`sslmode=disable`, or `prefer` with a server that
/// offers none). README.md, "Managed PostgreSQL".
async fn warn_if_plaintext(pool: &PgPool, host: &str) {
    if plaintext_to_another_machine(pool, host).await {
        tracing::warn!(
            host,
            "the connection to PostgreSQL is not encrypted; add sslmode=require \
             (or sslmode=verify-full&sslrootcert=FILE) to the database URL"
        );
    }
}

/// `pool`'s connections reach `host`, not this machine, without TLS.
async fn plaintext_to_another_machine(pool: &PgPool, host: &str) -> bool {
    if is_local_host(host) {
        return false;
    }
    let encrypted: Option<bool> = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_optional(pool)
        .await
        .ok()
        .flatten();
    encrypted == Some(false)
}

/// A Unix socket, `localhost` or a loopback address: traffic that never
/// leaves the machine.
fn is_local_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    /// The test server is on this machine; the check is asked as if the
    /// same connection reached `db.example.com`.
    #[tokio::test]
    async fn a_plaintext_connection_to_another_machine_is_noticed() {
        let Some(server) = crate::testing::postgres_server_url() else {
            eprintln!("a_plaintext_connection_to_another_machine_is_noticed: NOT RUN (no PostgreSQL configured)");
            return;
        };
        let mode = |m: &str| format!("{server}{}sslmode={m}", if server.contains('?') { '&' } else { '?' });
        let plain = sqlx::PgPool::connect(&mode("disable"))
            .await
            .expect("connect without TLS");
        assert!(super::plaintext_to_another_machine(&plain, "db.example.com").await);
        assert!(!super::plaintext_to_another_machine(&plain, "127.0.0.1").await);
        let tls = sqlx::PgPool::connect(&mode("require")).await.expect("connect with TLS");
        assert!(!super::plaintext_to_another_machine(&tls, "db.example.com").await);
    }

    #[test]
    fn only_this_machine_counts_as_local() {
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.0.0.53",
            "::1",
            "[::1]",
            "/var/run/postgresql",
        ] {
            assert!(super::is_local_host(host), "{host}");
        }
        for host in [
            "db.example.com",
            "10.0.0.5",
            "192.168.1.2",
            "::ffff:10.0.0.1",
            "localhost.example.com",
        ] {
            assert!(!super::is_local_host(host), "{host}");
        }
    }
}
