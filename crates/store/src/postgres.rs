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
use futures_util::TryStreamExt;
use latchkey_core::{
    account::{Account, NewAccount},
    audit::AuditEvent,
    audit_query::{AuditFilter, Seek},
    time::Timestamp,
    token::{ApiToken, NewToken},
    user::{NewUser, User},
    verifier::{AccountEntry, Snapshot, TokenAuth},
};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use crate::audit_log;
use crate::backend::{ChangeListener, SessionRecord, Tx, Wake};
use crate::rows::*;
use crate::sql;
use crate::{Change, Entity, Result};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel every commit that appended to the change log notifies.
pub const CHANGE_CHANNEL: &str = "latchkey_changes";

/// The advisory-lock key that serialises appends to the change log
/// ("lkchange" in ASCII).
pub const CHANGE_LOG_LOCK: i64 = 0x6c6b_6368_616e_6765;

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
    /// Connects to and migrates the database at `url`.
    pub async fn open(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?.application_name("latchkey");
        let pool = PgPoolOptions::new()
            .max_connections(16)
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
            .connect_with(options)
            .await?;
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

crate::common::impl_backend!(PgBackend {
    async fn begin(&self) -> Result<Box<dyn Tx>> {
        let tx = self.pool.begin().await?;
        Ok(Box::new(PgTx { tx, appending: false }))
    }

    async fn change_listener(&self) -> Result<Option<Box<dyn ChangeListener>>> {
        let mut listener = PgListener::connect_with(&self.follow).await?;
        listener.eager_reconnect(true);
        listener.listen(CHANGE_CHANNEL).await?;
        Ok(Some(Box::new(PgChangeListener { listener })))
    }

    async fn load_snapshot(&self) -> Result<Snapshot> {
        let mut snap = Snapshot::new();
        // One snapshot for the three tables, so that they agree.
        let mut conn = self.follow.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *conn)
            .await?;
        let accounts: Vec<AccountRow> = sqlx::query_as(sql::ALL_ACCOUNTS).fetch_all(&mut *conn).await?;
        for row in accounts {
            snap.add_account(AccountEntry::from(&Account::try_from(row)?));
        }
        {
            let mut users = sqlx::query_as::<_, UserRow>(sql::LIVE_USERS).fetch(&mut *conn);
            while let Some(row) = users.try_next().await? {
                snap.add_user(User::try_from(row)?);
            }
        }
        {
            let mut tokens = sqlx::query_as::<_, TokenAuthRow>(sql::ALL_TOKEN_AUTH).fetch(&mut *conn);
            while let Some(row) = tokens.try_next().await? {
                snap.add_token(TokenAuth::try_from(row)?);
            }
        }
        conn.commit().await?;
        Ok(snap)
    }




    async fn prune_changes(&self, before: Timestamp) -> Result<u64> {
        let done = sqlx::query(sql::PRUNE_CHANGES).bind(before).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }


    async fn record_token_use(&self, uses: &[(i64, Timestamp)]) -> Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        // Every node flushes its own batch: rows are locked in id order so
        // that two nodes' flushes never deadlock on each other.
        let mut sorted = uses.to_vec();
        sorted.sort_unstable();
        let mut tx = self.pool.begin().await?;
        for (id, at) in &sorted {
            sqlx::query(sql::RECORD_TOKEN_USE)
                .bind(at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn insert_session(&self, s: &SessionRecord) -> Result<()> {
        sqlx::query(sql::INSERT_SESSION)
            .bind(&s.id_hash[..])
            .bind(s.account_id)
            .bind(s.user_id)
            .bind(&s.csrf_token)
            .bind(s.created_at)
            .bind(s.last_seen_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn touch_session(&self, id_hash: &[u8; 32], at: Timestamp) -> Result<()> {
        sqlx::query(sql::TOUCH_SESSION)
            .bind(at)
            .bind(&id_hash[..])
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_session(&self, id_hash: &[u8; 32]) -> Result<()> {
        sqlx::query(sql::DELETE_SESSION)
            .bind(&id_hash[..])
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn prune_sessions(&self, idle_before: Timestamp, created_before: Timestamp) -> Result<u64> {
        let done = sqlx::query(sql::PRUNE_SESSIONS)
            .bind(idle_before)
            .bind(created_before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
});

crate::common::impl_tx!(PgTx {
    async fn lock_account(&mut self, id: i64) -> Result<Option<Account>> {
        let row: Option<AccountRow> = sqlx::query_as(LOCK_ACCOUNT_BY_ID)
            .bind(id)
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
        // A concurrent insert of the same subdomain is caught by the unique
        // index (accounts_subdomain_key) and reported as taken.
        let row: Option<AccountRow> = sqlx::query_as(sql::ACCOUNT_BY_SUBDOMAIN)
            .bind(subdomain)
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(row.is_some())
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
        sqlx::query(sql::APPEND_CHANGE)
            .bind(entity.as_str())
            .bind(id)
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
});
