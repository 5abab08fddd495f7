//! The seam between [`crate::Store`] and a database: typed statements, one
//! method each. A backend holds no rules; the rules live in
//! `latchkey-core` and the order of the steps in `store.rs`.

use async_trait::async_trait;
use latchkey_core::secret::{CsrfToken, PasswordHash};
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

use crate::{Change, Entity, Result};

/// Reads outside a transaction, and the way into one.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Starts a transaction that holds the write lock (SQLite) or is ready
    /// to take row locks (PostgreSQL).
    async fn begin(&self) -> Result<Box<dyn Tx>>;

    /// The request pool's connections now (no statement runs).
    fn pool_stats(&self) -> crate::PoolStats;

    /// Wake-ups that the database pushes whenever any process commits a
    /// change (PostgreSQL `LISTEN`), or `None` where it cannot push them
    /// and followers poll instead (SQLite).
    async fn change_listener(&self) -> Result<Option<Box<dyn ChangeListener>>> {
        Ok(None)
    }

    /// Reads everything the verifier holds into `reload`, from one
    /// consistent view of the database.
    async fn load_into(&self, reload: &mut Reload) -> Result<()>;
    async fn latest_change(&self) -> Result<i64>;
    async fn oldest_change(&self) -> Result<Option<i64>>;
    async fn changes_since(&self, seq: i64, limit: i64) -> Result<Vec<Change>>;
    async fn prune_changes(&self, before: Timestamp) -> Result<u64>;
    /// Adds hourly usage counts to the stored rows, in one transaction.
    async fn add_usage(&self, rows: &[HourUsage]) -> Result<()>;
    async fn usage_since(&self, token_id: TokenId, since: Timestamp) -> Result<Vec<HourUsage>>;
    async fn prune_usage(&self, before: Timestamp) -> Result<u64>;
    /// Writes this node's rate-limit counts and reads the other nodes'
    /// counts of the same tokens (ARCHITECTURE.md, "Rate limits across nodes").
    async fn share_rate_counts(&self, node: i64, reports: &[RateReport], now_ms: i64) -> Result<Vec<PeerCount>>;
    /// Forgets counts last written before `before_ms`.
    async fn prune_rate_counts(&self, before_ms: i64) -> Result<u64>;

    async fn account_count(&self) -> Result<i64>;
    /// The right to sweep now, held until the lease is dropped: on
    /// PostgreSQL a session advisory lock on a connection of its own (so a
    /// node that dies gives it up with its connection), `None` while another
    /// process holds it; on SQLite always granted (the single writer and the
    /// sweep's own re-check under the account lock keep changes once).
    async fn sweep_lease(&self) -> Result<Option<SweepLease>>;
    /// Accounts whose token policy deactivates or deletes tokens.
    async fn sweeping_accounts(&self) -> Result<Vec<AccountId>>;
    async fn accounts(&self) -> Result<Vec<Account>>;
    async fn account(&self, id: AccountId) -> Result<Option<Account>>;
    async fn account_by_subdomain(&self, subdomain: &str) -> Result<Option<Account>>;
    /// A user by id in any account, deleted or not.
    async fn user(&self, id: UserId) -> Result<Option<User>>;
    /// A user of one account by id, deleted or not: the account is part of
    /// the query, so another account's id costs what a missing one does.
    async fn account_user(&self, account_id: AccountId, id: UserId) -> Result<Option<User>>;
    /// An undeleted user by email, with the password hash for sign-in.
    async fn user_credentials(
        &self,
        account_id: AccountId,
        email_normalized: &str,
    ) -> Result<Option<(User, Option<PasswordHash>)>>;
    /// Undeleted users with ids after/before a cursor, `limit` of them,
    /// in ascending id order.
    async fn users_page(
        &self,
        account_id: AccountId,
        after: Option<UserId>,
        before: Option<UserId>,
        limit: i64,
    ) -> Result<Vec<User>>;
    /// Deleted users of the account who appear as actors in its audit log,
    /// at most `limit`, in ascending id order.
    async fn deleted_audit_actors(&self, account_id: AccountId, limit: i64) -> Result<Vec<User>>;
    async fn token(&self, account_id: AccountId, id: TokenId) -> Result<Option<ApiToken>>;
    async fn token_auth(&self, id: TokenId) -> Result<Option<TokenAuth>>;
    /// An account's tokens, newest first.
    async fn tokens(&self, account_id: AccountId) -> Result<Vec<ApiToken>>;
    /// An account's tokens with their creators, newest first (one statement).
    async fn tokens_with_creators(&self, account_id: AccountId) -> Result<Vec<(ApiToken, TokenCreator)>>;
    /// One token of an account with its creator.
    async fn token_with_creator(&self, account_id: AccountId, id: TokenId) -> Result<Option<(ApiToken, TokenCreator)>>;
    /// An account's audit events in id order, with their stored hashes.
    async fn audit_chain(&self, account_id: AccountId) -> Result<Vec<(AuditEvent, [u8; 32])>>;
    /// An account's chain and its recorded head, from one snapshot (so that
    /// a write committing in between never looks like a missing head).
    async fn audit_chain_and_head(&self, account_id: AccountId) -> Result<(Vec<(AuditEvent, [u8; 32])>, Option<Head>)>;
    /// Accounts whose oldest audit event was created before `before`.
    async fn accounts_with_audit_before(&self, before: Timestamp) -> Result<Vec<AccountId>>;
    /// Writes `last_used` for a batch of tokens, never moving it backwards.
    async fn record_token_use(&self, uses: &[TokenUse]) -> Result<()>;

    /// Stores a new sign-in session.
    async fn insert_session(&self, session: &SessionRecord) -> Result<()>;
    /// The session whose id hashes to `id_hash`, if any.
    async fn session(&self, id_hash: &[u8; 32]) -> Result<Option<SessionRecord>>;
    /// Records that a session was used at `at`.
    async fn touch_session(&self, id_hash: &[u8; 32], at: Timestamp) -> Result<()>;
    /// Ends a session (sign-out, or renewal on sign-in).
    async fn delete_session(&self, id_hash: &[u8; 32]) -> Result<()>;
    /// Deletes sessions idle since before `idle_before` or created before
    /// `created_before`.
    async fn prune_sessions(&self, idle_before: Timestamp, created_before: Timestamp) -> Result<u64>;

    /// An account's events matching `filter` within `seek`'s id range, in
    /// its order, at most `seek.limit` of them (the statement is
    /// [`crate::audit_log::list_sql`]).
    async fn audit_events(&self, account_id: AccountId, filter: &AuditFilter, seek: &Seek) -> Result<Vec<AuditEvent>>;
    /// One event of an account.
    async fn audit_event(&self, account_id: AccountId, id: AuditEventId) -> Result<Option<AuditEvent>>;
}

/// One open transaction. Dropped without `commit`, it rolls back.
#[async_trait]
pub trait Tx: Send {
    /// Locks an account for the rest of the transaction (so that limits and
    /// the audit chain see no concurrent writer) and reads it.
    async fn lock_account(&mut self, id: AccountId) -> Result<Option<Account>>;
    async fn lock_account_by_subdomain(&mut self, subdomain: &str) -> Result<Option<Account>>;
    async fn subdomain_taken(&mut self, subdomain: &str) -> Result<bool>;
    async fn insert_account(&mut self, new: &NewAccount, now: Timestamp) -> Result<Account>;
    async fn save_account(&mut self, account: &Account) -> Result<()>;
    /// Deletes the account and everything of it; returns the ids of its
    /// users and tokens, for the change log.
    async fn delete_account(&mut self, account_id: AccountId) -> Result<(Vec<UserId>, Vec<TokenId>)>;

    async fn user(&mut self, account_id: AccountId, id: UserId) -> Result<Option<User>>;
    async fn email_taken(&mut self, account_id: AccountId, email_normalized: &str) -> Result<bool>;
    async fn insert_user(&mut self, account_id: AccountId, new: &NewUser, now: Timestamp) -> Result<User>;
    async fn save_user(&mut self, user: &User, now: Timestamp) -> Result<()>;
    async fn set_password(&mut self, user_id: UserId, password_hash: &PasswordHash) -> Result<()>;

    async fn count_tokens(&mut self, account_id: AccountId) -> Result<i64>;
    async fn token(&mut self, account_id: AccountId, id: TokenId) -> Result<Option<ApiToken>>;
    async fn token_hash_taken(&mut self, hash: &[u8]) -> Result<bool>;
    async fn insert_token(&mut self, account_id: AccountId, new: &NewToken, now: Timestamp) -> Result<ApiToken>;
    async fn save_token(&mut self, token: &ApiToken) -> Result<()>;
    async fn delete_token(&mut self, id: TokenId) -> Result<()>;
    async fn rotate_token(
        &mut self,
        id: TokenId,
        hash: &TokenHash,
        visible_token: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<()>;
    /// The account's tokens, newest first, in this transaction.
    async fn tokens(&mut self, account_id: AccountId) -> Result<Vec<ApiToken>>;

    /// The id and hash of the account's newest audit event, if any.
    async fn last_audit_event(&mut self, account_id: AccountId) -> Result<Option<(AuditEventId, [u8; 32])>>;
    async fn insert_audit(&mut self, event: &AuditEvent, hash: &[u8; 32]) -> Result<AuditEventId>;
    /// The account's recorded chain head, if any.
    async fn audit_head(&mut self, account_id: AccountId) -> Result<Option<Head>>;
    /// Records `event_id` (with `hash`) as the account's chain head.
    async fn set_audit_head(&mut self, account_id: AccountId, event_id: AuditEventId, hash: &[u8; 32]) -> Result<()>;
    /// Adds `pruned` to the account's count of events pruned by retention.
    async fn count_pruned(&mut self, account_id: AccountId, pruned: i64) -> Result<()>;
    /// The account's oldest `limit` events in chain order (id, creation
    /// time, stored hash).
    async fn audit_prefix(
        &mut self,
        account_id: AccountId,
        limit: i64,
    ) -> Result<Vec<(AuditEventId, Timestamp, [u8; 32])>>;
    /// Deletes the account's events up to and including `through`.
    async fn delete_audit_through(&mut self, account_id: AccountId, through: AuditEventId) -> Result<u64>;
    async fn append_change(&mut self, entity: Entity, id: i64, now: Timestamp) -> Result<()>;

    async fn commit(self: Box<Self>) -> Result<()>;
}

/// A signed-in Admin Center session. The session id itself is never stored,
/// only its SHA-256, so the table cannot be used to sign anyone in.
#[derive(Debug)]
pub struct SessionRecord {
    pub id_hash: [u8; 32],
    pub account_id: AccountId,
    pub user_id: UserId,
    /// The token every form of this session must carry.
    pub csrf_token: CsrfToken,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
}

/// What a [`ChangeListener`] woke up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Some process committed a change.
    Changed,
    /// The listening connection dropped and has been re-established:
    /// notifications sent meanwhile are lost, so the follower must resync.
    Reconnected,
}

/// A subscription to change notifications.
#[async_trait]
pub trait ChangeListener: Send {
    /// Waits for the next wake-up; an error means the subscription is gone.
    async fn next(&mut self) -> Result<Wake>;
}

/// See [`Backend::sweep_lease`]. [`SweepLease::release`] gives it back
/// before it returns; dropping it (an error, a panic) closes the PostgreSQL
/// connection that holds the lock, which the server then frees a moment
/// later.
#[derive(Debug)]
pub struct SweepLease {
    pub(crate) _held: Option<sqlx::PgConnection>,
}
