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
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::audit_log;
use crate::backend::{SessionRecord, Tx};
use crate::rows::*;
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
        let options = SqliteConnectOptions::from_str(url)?
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

struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
    _writer: OwnedMutexGuard<()>,
}

crate::common::impl_backend!(SqliteBackend {
    async fn begin(&self) -> Result<Box<dyn Tx>> {
        let writer = self.writer.clone().lock_owned().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(Box::new(SqliteTx { tx, _writer: writer }))
    }

    async fn load_snapshot(&self) -> Result<Snapshot> {
        let mut snap = Snapshot::new();
        // One read transaction, so that the three tables agree.
        let mut conn = self.pool.begin().await?;
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
        let _writer = self.writer.lock().await;
        // Keep the newest entry so that sequence numbers never restart.
        let done = sqlx::query(sql::PRUNE_CHANGES).bind(before).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }


    async fn record_token_use(&self, uses: &[(i64, Timestamp)]) -> Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for (id, at) in uses {
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
        let _writer = self.writer.lock().await;
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
        let _writer = self.writer.lock().await;
        sqlx::query(sql::TOUCH_SESSION)
            .bind(at)
            .bind(&id_hash[..])
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_session(&self, id_hash: &[u8; 32]) -> Result<()> {
        let _writer = self.writer.lock().await;
        sqlx::query(sql::DELETE_SESSION)
            .bind(&id_hash[..])
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn prune_sessions(&self, idle_before: Timestamp, created_before: Timestamp) -> Result<u64> {
        let _writer = self.writer.lock().await;
        let done = sqlx::query(sql::PRUNE_SESSIONS)
            .bind(idle_before)
            .bind(created_before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
});

crate::common::impl_tx!(SqliteTx {
    async fn lock_account(&mut self, id: i64) -> Result<Option<Account>> {
        // BEGIN IMMEDIATE already holds the database's write lock.
        let row: Option<AccountRow> = sqlx::query_as(sql::ACCOUNT_BY_ID)
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(Account::try_from).transpose()
    }

    async fn lock_account_by_subdomain(&mut self, subdomain: &str) -> Result<Option<Account>> {
        let row: Option<AccountRow> = sqlx::query_as(sql::ACCOUNT_BY_SUBDOMAIN)
            .bind(subdomain)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(Account::try_from).transpose()
    }

    async fn subdomain_taken(&mut self, subdomain: &str) -> Result<bool> {
        Ok(self.lock_account_by_subdomain(subdomain).await?.is_some())
    }

    async fn append_change(&mut self, entity: Entity, id: i64, now: Timestamp) -> Result<()> {
        sqlx::query(sql::APPEND_CHANGE)
            .bind(entity.as_str())
            .bind(id)
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
});
