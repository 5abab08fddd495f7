//! The statements every backend runs the same way, written once as generic
//! code over sqlx's database type. A backend's `impl Backend` and `impl Tx`
//! call these with its own pool or transaction and add only what truly
//! differs (locking, which pool, isolation).
//!
//! sqlx states what a database can bind and decode as bounds on each type
//! (`i64: Encode<Sqlite>`, ...). Rust does not carry a trait's where-clauses
//! to its users, so the bounds are written once, on the one `impl` block of
//! [`Statements`], instead of on every function.

use std::marker::PhantomData;

use futures_util::TryStreamExt;
use latchkey_core::secret::{CsrfToken, PasswordHash};
use latchkey_core::{
    account::{Account, NewAccount},
    allowlist::IpAllowlist,
    audit::{AuditEvent, Head},
    audit_query::{AuditFilter, Seek},
    id::{AccountId, AuditEventId, TokenId, UserId},
    rate_limit::{PeerCount, RateReport},
    scope::Scopes,
    time::Timestamp,
    token::{ApiToken, NewToken, TokenCreator, TokenHash},
    usage::HourUsage,
    user::{NewUser, User},
    verifier::{AccountEntry, Reload, TokenAuth, TokenUse},
};
use sqlx::{AssertSqlSafe, Encode, Executor, FromRow, IntoArguments, Pool, Postgres, Sqlite, Transaction, Type};

use crate::audit_log;
use crate::backend::SessionRecord;
use crate::rows::*;
use crate::sql;
use crate::{Change, Entity, Result, StoreError};

/// A database this crate runs on: sqlx's database type plus what sqlx does
/// not offer generically.
pub(crate) trait Database: sqlx::Database {
    /// How many rows a statement touched.
    fn rows_affected(done: &Self::QueryResult) -> u64;
}

impl Database for Sqlite {
    fn rows_affected(done: &Self::QueryResult) -> u64 {
        done.rows_affected()
    }
}

impl Database for Postgres {
    fn rows_affected(done: &Self::QueryResult) -> u64 {
        done.rows_affected()
    }
}

/// The shared statements, as associated functions. Each backend names its
/// instance `Shared` (`Statements<Sqlite>`, `Statements<Postgres>`) and
/// calls, say, `Shared::account(&self.pool, id)`. A function that runs one
/// statement takes any executor (a pool, or `&mut *self.tx` in a `Tx`);
/// one that runs several takes the pool or the transaction it needs.
pub(crate) struct Statements<DB>(PhantomData<DB>);

/// A stored hash as the 32 bytes it must be; anything else is a corrupt row
/// (`what` of the account names it).
fn hash32(h: &[u8], what: &str, account_id: AccountId) -> Result<[u8; 32]> {
    <[u8; 32]>::try_from(h).map_err(|_| {
        StoreError::Corrupt(format!(
            "{what} of account {account_id} has a {}-byte hash, not 32",
            h.len()
        ))
    })
}

/// A row of a session, as `SESSION_BY_HASH` returns it.
type SessionRow = (Vec<u8>, i64, i64, String, i64, i64);

impl<DB> Statements<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    // What the statements bind.
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    // What they read.
    for<'r> (i64,): FromRow<'r, DB::Row>,
    for<'r> (Option<i64>,): FromRow<'r, DB::Row>,
    for<'r> (Option<String>,): FromRow<'r, DB::Row>,
    for<'r> (Vec<u8>,): FromRow<'r, DB::Row>,
    for<'r> (i64, Vec<u8>): FromRow<'r, DB::Row>,
    for<'r> (i64, Vec<u8>, i64): FromRow<'r, DB::Row>,
    for<'r> (i64, i64, Vec<u8>): FromRow<'r, DB::Row>,
    for<'r> SessionRow: FromRow<'r, DB::Row>,
    for<'r> AccountRow: FromRow<'r, DB::Row>,
    for<'r> UserRow: FromRow<'r, DB::Row>,
    for<'r> TokenRow: FromRow<'r, DB::Row>,
    for<'r> TokenWithCreatorRow: FromRow<'r, DB::Row>,
    for<'r> TokenAuthRow: FromRow<'r, DB::Row>,
    for<'r> PlainTokenAuthRow: FromRow<'r, DB::Row>,
    for<'r> SnapshotCountsRow: FromRow<'r, DB::Row>,
    for<'r> AuditRow: FromRow<'r, DB::Row>,
    for<'r> ChangeRow: FromRow<'r, DB::Row>,
    for<'r> UsageRow: FromRow<'r, DB::Row>,
    for<'r> PeerRow: FromRow<'r, DB::Row>,
    for<'r> MemberRow: FromRow<'r, DB::Row>,
{
    // ---- The verifier's snapshot and the change log -----------------------

    /// Reads accounts, live users and token hashes in `tx` (which the
    /// backend opened with the isolation it needs, so that the three tables
    /// agree) into `reload`, and commits it. Tokens go in batches, each
    /// applied on a blocking thread while the next is read; the caller
    /// finishes the reload.
    pub(crate) async fn load_into(mut tx: Transaction<'_, DB>, reload: &mut Reload) -> Result<()> {
        let counts: SnapshotCountsRow = sqlx::query_as(sql::SNAPSHOT_COUNTS).fetch_one(&mut *tx).await?;
        let size = |n: i64| usize::try_from(n).unwrap_or(0);
        reload.reserve(size(counts.accounts), size(counts.users), size(counts.tokens));
        let accounts: Vec<AccountRow> = sqlx::query_as(sql::ALL_ACCOUNTS).fetch_all(&mut *tx).await?;
        for row in accounts {
            reload.account(AccountEntry::from(&Account::try_from(row)?));
        }
        {
            let mut users = sqlx::query_as::<_, UserRow>(sql::LIVE_USERS).fetch(&mut *tx);
            while let Some(row) = users.try_next().await? {
                reload.user(User::try_from(row)?);
            }
        }
        let mut batches = TokenBatches::default();
        {
            let mut plain = sqlx::query_as::<_, PlainTokenAuthRow>(sql::PLAIN_TOKEN_AUTH).fetch(&mut *tx);
            while let Some(row) = plain.try_next().await? {
                batches.push(reload, TokenAuth::try_from(row)?).await;
            }
        }
        {
            let mut restricted = sqlx::query_as::<_, TokenAuthRow>(sql::RESTRICTED_TOKEN_AUTH).fetch(&mut *tx);
            while let Some(row) = restricted.try_next().await? {
                batches.push(reload, TokenAuth::try_from(row)?).await;
            }
        }
        batches.finish(reload).await;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn latest_change(pool: &Pool<DB>) -> Result<i64> {
        let seq: Option<i64> = sqlx::query_scalar(sql::LATEST_CHANGE).fetch_one(pool).await?;
        Ok(seq.unwrap_or(0))
    }

    pub(crate) async fn oldest_change(pool: &Pool<DB>) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(sql::OLDEST_CHANGE).fetch_one(pool).await?)
    }

    pub(crate) async fn changes_since(pool: &Pool<DB>, seq: i64, limit: i64) -> Result<Vec<Change>> {
        let rows: Vec<ChangeRow> = sqlx::query_as(sql::CHANGES_SINCE)
            .bind(seq)
            .bind(limit)
            .fetch_all(pool)
            .await?;
        rows.into_iter().map(Change::try_from).collect()
    }

    /// Adds hourly counts to the stored rows, in token and hour order (so
    /// that two nodes' batches never deadlock on each other).
    pub(crate) async fn add_usage(mut tx: Transaction<'_, DB>, rows: &[HourUsage]) -> Result<()> {
        let mut sorted: Vec<&HourUsage> = rows.iter().collect();
        sorted.sort_unstable_by_key(|r| (r.token_id, r.hour));
        for r in sorted {
            let c = r.counts.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
            sqlx::query(sql::ADD_USAGE)
                .bind(r.token_id.get())
                .bind(r.hour.unix())
                .bind(c[0])
                .bind(c[1])
                .bind(c[2])
                .bind(c[3])
                .bind(c[4])
                .bind(c[5])
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A token's hourly rows from `since` on, oldest first.
    pub(crate) async fn usage_since(pool: &Pool<DB>, token_id: TokenId, since: Timestamp) -> Result<Vec<HourUsage>> {
        let rows: Vec<UsageRow> = sqlx::query_as(sql::USAGE_SINCE)
            .bind(token_id.get())
            .bind(since.unix())
            .fetch_all(pool)
            .await?;
        Ok(rows.into_iter().map(|r| r.into_usage(token_id)).collect())
    }

    /// Writes this node's rate-limit counts (`upsert`, one statement for
    /// all of them) and reads every other node's counts of the same tokens
    /// (`peers`): the backend gives its own spelling of the two statements.
    pub(crate) async fn share_rate_counts(
        pool: &Pool<DB>,
        (upsert, peers): (&'static str, &'static str),
        node: i64,
        reports: &[RateReport],
        now_ms: i64,
    ) -> Result<Vec<PeerCount>> {
        // One row per token: the latest report wins.
        let mut latest: Vec<&RateReport> = reports.iter().rev().collect();
        latest.sort_by_key(|r| r.token_id);
        latest.dedup_by_key(|r| r.token_id);
        let rows: Vec<String> = latest
            .iter()
            .map(|r| {
                format!(
                    "[{},{},{},{},{}]",
                    r.token_id.get(),
                    r.window,
                    r.per_seconds,
                    r.admitted,
                    r.rate_milli
                )
            })
            .collect();
        let json = format!("[{}]", rows.join(","));
        sqlx::query(upsert)
            .bind(node)
            .bind(&json)
            .bind(now_ms)
            .execute(pool)
            .await?;
        let rows: Vec<PeerRow> = sqlx::query_as(peers).bind(node).bind(&json).fetch_all(pool).await?;
        Ok(rows.into_iter().map(PeerCount::from).collect())
    }

    pub(crate) async fn prune_rate_counts(pool: &Pool<DB>, before_ms: i64) -> Result<u64> {
        let done = sqlx::query(sql::PRUNE_RATE_COUNTS)
            .bind(before_ms)
            .execute(pool)
            .await?;
        Ok(DB::rows_affected(&done))
    }

    pub(crate) async fn prune_usage(pool: &Pool<DB>, before: Timestamp) -> Result<u64> {
        let done = sqlx::query(sql::PRUNE_USAGE).bind(before.unix()).execute(pool).await?;
        Ok(DB::rows_affected(&done))
    }

    /// Deletes entries older than `before`, keeping the newest so that
    /// sequence numbers never restart.
    pub(crate) async fn prune_changes(pool: &Pool<DB>, before: Timestamp) -> Result<u64> {
        let done = sqlx::query(sql::PRUNE_CHANGES)
            .bind(before.unix())
            .execute(pool)
            .await?;
        Ok(DB::rows_affected(&done))
    }

    pub(crate) async fn append_change<'e>(
        tx: impl Executor<'e, Database = DB>,
        entity: Entity,
        id: i64,
        now: Timestamp,
    ) -> Result<()> {
        sqlx::query(sql::APPEND_CHANGE)
            .bind(entity.as_str())
            .bind(id)
            .bind(now.unix())
            .execute(tx)
            .await?;
        Ok(())
    }

    // ---- Accounts ----------------------------------------------------------

    pub(crate) async fn account_count(pool: &Pool<DB>) -> Result<i64> {
        Ok(sqlx::query_scalar(sql::ACCOUNT_COUNT).fetch_one(pool).await?)
    }

    pub(crate) async fn sweeping_accounts(pool: &Pool<DB>) -> Result<Vec<AccountId>> {
        let ids: Vec<i64> = sqlx::query_scalar(sql::SWEEPING_ACCOUNTS).fetch_all(pool).await?;
        Ok(ids.into_iter().map(AccountId::new).collect())
    }

    pub(crate) async fn accounts(pool: &Pool<DB>) -> Result<Vec<Account>> {
        let rows: Vec<AccountRow> = sqlx::query_as(sql::ALL_ACCOUNTS).fetch_all(pool).await?;
        rows.into_iter().map(Account::try_from).collect()
    }

    pub(crate) async fn account<'e>(e: impl Executor<'e, Database = DB>, id: AccountId) -> Result<Option<Account>> {
        let row: Option<AccountRow> = sqlx::query_as(sql::ACCOUNT_BY_ID)
            .bind(id.get())
            .fetch_optional(e)
            .await?;
        row.map(Account::try_from).transpose()
    }

    pub(crate) async fn account_by_subdomain<'e>(
        e: impl Executor<'e, Database = DB>,
        subdomain: &str,
    ) -> Result<Option<Account>> {
        let row: Option<AccountRow> = sqlx::query_as(sql::ACCOUNT_BY_SUBDOMAIN)
            .bind(subdomain)
            .fetch_optional(e)
            .await?;
        row.map(Account::try_from).transpose()
    }

    pub(crate) async fn insert_account<'e>(
        tx: impl Executor<'e, Database = DB>,
        new: &NewAccount,
        now: Timestamp,
    ) -> Result<Account> {
        let row: AccountRow = sqlx::query_as(sql::INSERT_ACCOUNT)
            .bind(new.subdomain.as_str())
            .bind(new.name.as_str())
            .bind(new.plan.as_str())
            .bind(new.token_limit())
            .bind(new.api_token_access)
            .bind(now.unix())
            .fetch_one(tx)
            .await?;
        Account::try_from(row)
    }

    pub(crate) async fn save_account<'e>(tx: impl Executor<'e, Database = DB>, a: &Account) -> Result<()> {
        sqlx::query(sql::SAVE_ACCOUNT)
            .bind(a.name.as_str())
            .bind(a.plan.as_str())
            .bind(a.token_limit)
            .bind(a.api_token_access)
            .bind(a.updated_at.unix())
            .bind(a.token_policy.max_lifetime_days)
            .bind(a.token_policy.require_expiry)
            .bind(a.token_policy.require_assigned_user)
            .bind(a.token_policy.deactivate_unused_after_days)
            .bind(a.token_policy.delete_deactivated_after_days)
            .bind(a.token_policy.deactivate_legacy_tokens)
            .bind(a.id.get())
            .execute(tx)
            .await?;
        Ok(())
    }

    // ---- Users -------------------------------------------------------------

    /// A user by id in any account, deleted or not.
    pub(crate) async fn user(pool: &Pool<DB>, id: UserId) -> Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(sql::USER_BY_ID)
            .bind(id.get())
            .fetch_optional(pool)
            .await?;
        row.map(User::try_from).transpose()
    }

    /// A user of one account by id, deleted or not.
    pub(crate) async fn account_user<'e>(
        e: impl Executor<'e, Database = DB>,
        account_id: AccountId,
        id: UserId,
    ) -> Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(sql::ACCOUNT_USER)
            .bind(account_id.get())
            .bind(id.get())
            .fetch_optional(e)
            .await?;
        row.map(User::try_from).transpose()
    }

    pub(crate) async fn user_credentials(
        pool: &Pool<DB>,
        account_id: AccountId,
        email_normalized: &str,
    ) -> Result<Option<(User, Option<PasswordHash>)>> {
        let Some(row) = sqlx::query_as::<_, UserRow>(sql::LIVE_USER_BY_EMAIL)
            .bind(account_id.get())
            .bind(email_normalized)
            .fetch_optional(pool)
            .await?
        else {
            return Ok(None);
        };
        let user = User::try_from(row)?;
        let hash: Option<String> = sqlx::query_scalar(sql::PASSWORD_HASH)
            .bind(user.id.get())
            .fetch_one(pool)
            .await?;
        Ok(Some((user, hash.map(PasswordHash::new))))
    }

    pub(crate) async fn deleted_audit_actors(pool: &Pool<DB>, account_id: AccountId, limit: i64) -> Result<Vec<User>> {
        let rows: Vec<UserRow> = sqlx::query_as(sql::DELETED_AUDIT_ACTORS)
            .bind(account_id.get())
            .bind(limit)
            .fetch_all(pool)
            .await?;
        rows.into_iter().map(User::try_from).collect()
    }

    pub(crate) async fn users_page(
        pool: &Pool<DB>,
        account_id: AccountId,
        after: Option<UserId>,
        before: Option<UserId>,
        limit: i64,
    ) -> Result<Vec<User>> {
        let rows: Vec<UserRow> = match before {
            Some(before) => {
                let mut rows: Vec<UserRow> = sqlx::query_as(sql::USERS_BEFORE)
                    .bind(account_id.get())
                    .bind(before.get())
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                rows.reverse();
                rows
            }
            None => {
                sqlx::query_as(sql::USERS_AFTER)
                    .bind(account_id.get())
                    .bind(after.map_or(0, UserId::get))
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
            }
        };
        rows.into_iter().map(User::try_from).collect()
    }

    pub(crate) async fn email_taken<'e>(
        tx: impl Executor<'e, Database = DB>,
        account_id: AccountId,
        email_normalized: &str,
    ) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(sql::EMAIL_TAKEN)
            .bind(account_id.get())
            .bind(email_normalized)
            .fetch_one(tx)
            .await?;
        Ok(n > 0)
    }

    pub(crate) async fn insert_user<'e>(
        tx: impl Executor<'e, Database = DB>,
        account_id: AccountId,
        new: &NewUser,
        now: Timestamp,
    ) -> Result<User> {
        let row: UserRow = sqlx::query_as(sql::INSERT_USER)
            .bind(account_id.get())
            .bind(new.name.as_str())
            .bind(new.email.as_str())
            .bind(new.email.normalized())
            .bind(new.role.as_str())
            .bind(new.verified)
            .bind(new.password_hash.as_ref().map(PasswordHash::expose_secret))
            .bind(now.unix())
            .fetch_one(tx)
            .await?;
        User::try_from(row)
    }

    pub(crate) async fn save_user<'e>(tx: impl Executor<'e, Database = DB>, u: &User, now: Timestamp) -> Result<()> {
        sqlx::query(sql::SAVE_USER)
            .bind(u.name.as_str())
            .bind(u.role.as_str())
            .bind(u.verified)
            .bind(u.suspended)
            .bind(u.deleted)
            .bind(now.unix())
            .bind(u.updated_at.unix())
            .bind(u.email.as_str())
            .bind(u.email.normalized())
            .bind(u.id.get())
            .execute(tx)
            .await?;
        Ok(())
    }

    pub(crate) async fn set_password<'e>(
        tx: impl Executor<'e, Database = DB>,
        user_id: UserId,
        password_hash: &PasswordHash,
    ) -> Result<()> {
        sqlx::query(sql::SET_PASSWORD)
            .bind(password_hash.expose_secret())
            .bind(user_id.get())
            .execute(tx)
            .await?;
        Ok(())
    }

    // ---- Tokens ------------------------------------------------------------

    pub(crate) async fn token<'e>(
        e: impl Executor<'e, Database = DB>,
        account_id: AccountId,
        id: TokenId,
    ) -> Result<Option<ApiToken>> {
        let row: Option<TokenRow> = sqlx::query_as(sql::ACCOUNT_TOKEN)
            .bind(account_id.get())
            .bind(id.get())
            .fetch_optional(e)
            .await?;
        Ok(row.map(ApiToken::from))
    }

    /// An account's tokens, newest first.
    pub(crate) async fn tokens(pool: &Pool<DB>, account_id: AccountId) -> Result<Vec<ApiToken>> {
        let rows: Vec<TokenRow> = sqlx::query_as(sql::ACCOUNT_TOKENS)
            .bind(account_id.get())
            .fetch_all(pool)
            .await?;
        Ok(rows.into_iter().map(ApiToken::from).collect())
    }

    /// An account's tokens, newest first, inside a transaction.
    pub(crate) async fn tokens_in<'e>(
        tx: impl Executor<'e, Database = DB>,
        account_id: AccountId,
    ) -> Result<Vec<ApiToken>> {
        let rows: Vec<TokenRow> = sqlx::query_as(sql::ACCOUNT_TOKENS)
            .bind(account_id.get())
            .fetch_all(tx)
            .await?;
        Ok(rows.into_iter().map(ApiToken::from).collect())
    }

    /// An account's tokens with their creators, newest first, in one statement.
    pub(crate) async fn tokens_with_creators(
        pool: &Pool<DB>,
        account_id: AccountId,
    ) -> Result<Vec<(ApiToken, TokenCreator)>> {
        let rows: Vec<TokenWithCreatorRow> = sqlx::query_as(sql::ACCOUNT_TOKENS_WITH_CREATORS)
            .bind(account_id.get())
            .fetch_all(pool)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// One token of an account with its creator.
    pub(crate) async fn token_with_creator(
        pool: &Pool<DB>,
        account_id: AccountId,
        id: TokenId,
    ) -> Result<Option<(ApiToken, TokenCreator)>> {
        let row: Option<TokenWithCreatorRow> = sqlx::query_as(sql::ACCOUNT_TOKEN_WITH_CREATOR)
            .bind(account_id.get())
            .bind(id.get())
            .fetch_optional(pool)
            .await?;
        Ok(row.map(Into::into))
    }

    pub(crate) async fn token_auth(pool: &Pool<DB>, id: TokenId) -> Result<Option<TokenAuth>> {
        let row: Option<TokenAuthRow> = sqlx::query_as(sql::TOKEN_AUTH_BY_ID)
            .bind(id.get())
            .fetch_optional(pool)
            .await?;
        row.map(TokenAuth::try_from).transpose()
    }

    /// The ids of an account's users and tokens (`sql::ACCOUNT_MEMBERS`).
    pub(crate) async fn account_members<'e>(
        tx: impl Executor<'e, Database = DB>,
        account_id: AccountId,
    ) -> Result<(Vec<UserId>, Vec<TokenId>)> {
        let rows: Vec<MemberRow> = sqlx::query_as(sql::ACCOUNT_MEMBERS)
            .bind(account_id.get())
            .fetch_all(tx)
            .await?;
        let (users, tokens): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r.is_user);
        Ok((
            users.into_iter().map(|r| UserId::new(r.id)).collect(),
            tokens.into_iter().map(|r| TokenId::new(r.id)).collect(),
        ))
    }

    /// Runs one statement of `sql::DELETE_ACCOUNT`.
    pub(crate) async fn delete_account_part<'e>(
        tx: impl Executor<'e, Database = DB>,
        statement: &'static str,
        account_id: AccountId,
    ) -> Result<()> {
        sqlx::query(statement).bind(account_id.get()).execute(tx).await?;
        Ok(())
    }

    pub(crate) async fn count_tokens<'e>(tx: impl Executor<'e, Database = DB>, account_id: AccountId) -> Result<i64> {
        Ok(sqlx::query_scalar(sql::COUNT_TOKENS)
            .bind(account_id.get())
            .fetch_one(tx)
            .await?)
    }

    pub(crate) async fn token_hash_taken<'e>(tx: impl Executor<'e, Database = DB>, hash: &[u8]) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(sql::TOKEN_HASH_TAKEN)
            .bind(hash)
            .fetch_one(tx)
            .await?;
        Ok(n > 0)
    }

    pub(crate) async fn insert_token<'e>(
        tx: impl Executor<'e, Database = DB>,
        account_id: AccountId,
        new: &NewToken,
        now: Timestamp,
    ) -> Result<ApiToken> {
        let scopes = new.restrictions.scopes.as_ref().map(Scopes::to_stored);
        let allowed_ips = new.restrictions.allowed_ips.as_ref().map(IpAllowlist::to_stored);
        let row: TokenRow = sqlx::query_as(sql::INSERT_TOKEN)
            .bind(account_id.get())
            .bind(&new.hash.0[..])
            .bind(new.visible_token.as_str())
            .bind(new.description.as_deref())
            .bind(new.active)
            .bind(new.user_id.map(UserId::get))
            .bind(new.restrictions.assigned_user_id.map(UserId::get))
            .bind(scopes.as_deref())
            .bind(new.restrictions.expires_at.map(Timestamp::unix))
            .bind(new.created_at.unwrap_or(now).unix())
            .bind(now.unix())
            .bind(new.last_used.map(Timestamp::unix))
            .bind((!new.active).then_some(now.unix()))
            .bind(allowed_ips.as_deref())
            .bind(new.restrictions.rate_limit.map(|l| i64::from(l.requests)))
            .bind(new.restrictions.rate_limit.map(|l| i64::from(l.per_seconds)))
            .bind(new.legacy)
            .fetch_one(tx)
            .await?;
        Ok(ApiToken::from(row))
    }

    pub(crate) async fn save_token<'e>(tx: impl Executor<'e, Database = DB>, t: &ApiToken) -> Result<()> {
        let scopes = t.scopes.as_ref().map(Scopes::to_stored);
        let allowed_ips = t.allowed_ips.as_ref().map(IpAllowlist::to_stored);
        sqlx::query(sql::SAVE_TOKEN)
            .bind(t.description.as_deref())
            .bind(t.active)
            .bind(t.assigned_user_id.map(UserId::get))
            .bind(scopes.as_deref())
            .bind(t.expires_at.map(Timestamp::unix))
            .bind(t.updated_at.unix())
            .bind(t.deactivated_at.map(Timestamp::unix))
            .bind(allowed_ips.as_deref())
            .bind(t.rate_limit.map(|l| i64::from(l.requests)))
            .bind(t.rate_limit.map(|l| i64::from(l.per_seconds)))
            .bind(t.leaked_at.map(Timestamp::unix))
            .bind(t.id.get())
            .execute(tx)
            .await?;
        Ok(())
    }

    /// Makes `hash` the token's secret and its current one the previous,
    /// authenticating until `until`.
    pub(crate) async fn rotate_token<'e>(
        tx: impl Executor<'e, Database = DB>,
        id: TokenId,
        hash: &TokenHash,
        visible_token: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<()> {
        sqlx::query(sql::ROTATE_TOKEN)
            .bind(until.unix())
            .bind(&hash.0[..])
            .bind(visible_token)
            .bind(now.unix())
            .bind(id.get())
            .execute(tx)
            .await?;
        Ok(())
    }

    pub(crate) async fn delete_token<'e>(tx: impl Executor<'e, Database = DB>, id: TokenId) -> Result<()> {
        sqlx::query(sql::DELETE_TOKEN).bind(id.get()).execute(tx).await?;
        Ok(())
    }

    /// Writes `last_used` for each token in the order given (never moving
    /// it backwards) in `tx`, which the backend opened, and commits it.
    pub(crate) async fn record_token_use(mut tx: Transaction<'_, DB>, uses: &[TokenUse]) -> Result<()> {
        for u in uses {
            sqlx::query(sql::RECORD_TOKEN_USE)
                .bind(u.last_used.unix())
                .bind(u.id.get())
                .execute(&mut *tx)
                .await?;
            if let Some(at) = u.previous_last_used {
                sqlx::query(sql::RECORD_PREVIOUS_USE)
                    .bind(at.unix())
                    .bind(u.id.get())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- Audit events ------------------------------------------------------

    /// The id and hash of the account's newest audit event, if any. A
    /// stored hash that is not 32 bytes long is a corrupt row: chaining
    /// onto it would hide the damage, so the write that asked fails instead.
    pub(crate) async fn last_audit_event<'e>(
        tx: impl Executor<'e, Database = DB>,
        account_id: AccountId,
    ) -> Result<Option<(AuditEventId, [u8; 32])>> {
        let row: Option<(i64, Vec<u8>)> = sqlx::query_as(sql::LAST_AUDIT_EVENT)
            .bind(account_id.get())
            .fetch_optional(tx)
            .await?;
        row.map(|(id, h)| Ok((AuditEventId::new(id), hash32(&h, "the newest audit event", account_id)?)))
            .transpose()
    }

    /// The account's recorded chain head (README.md, "Audit retention").
    pub(crate) async fn audit_head<'e>(
        e: impl Executor<'e, Database = DB>,
        account_id: AccountId,
    ) -> Result<Option<Head>> {
        let row: Option<(i64, Vec<u8>, i64)> = sqlx::query_as(sql::AUDIT_HEAD)
            .bind(account_id.get())
            .fetch_optional(e)
            .await?;
        row.map(|(id, h, pruned)| {
            Ok(Head {
                event_id: AuditEventId::new(id),
                hash: hash32(&h, "the recorded audit head", account_id)?,
                pruned,
            })
        })
        .transpose()
    }

    pub(crate) async fn set_audit_head<'e>(
        tx: impl Executor<'e, Database = DB>,
        account_id: AccountId,
        event_id: AuditEventId,
        hash: &[u8; 32],
    ) -> Result<()> {
        sqlx::query(sql::SET_AUDIT_HEAD)
            .bind(account_id.get())
            .bind(event_id.get())
            .bind(&hash[..])
            .execute(tx)
            .await?;
        Ok(())
    }

    pub(crate) async fn count_pruned<'e>(
        tx: impl Executor<'e, Database = DB>,
        account_id: AccountId,
        pruned: i64,
    ) -> Result<()> {
        sqlx::query(sql::COUNT_PRUNED)
            .bind(account_id.get())
            .bind(pruned)
            .execute(tx)
            .await?;
        Ok(())
    }

    /// The account's oldest `limit` events in chain order: id, creation
    /// time and stored hash.
    pub(crate) async fn audit_prefix<'e>(
        tx: impl Executor<'e, Database = DB>,
        account_id: AccountId,
        limit: i64,
    ) -> Result<Vec<(AuditEventId, Timestamp, [u8; 32])>> {
        let rows: Vec<(i64, i64, Vec<u8>)> = sqlx::query_as(sql::AUDIT_PREFIX)
            .bind(account_id.get())
            .bind(limit)
            .fetch_all(tx)
            .await?;
        rows.into_iter()
            .map(|(id, at, h)| {
                Ok((
                    AuditEventId::new(id),
                    Timestamp::from_unix(at),
                    hash32(&h, "an audit event", account_id)?,
                ))
            })
            .collect()
    }

    /// Deletes the account's events up to and including `through`.
    pub(crate) async fn delete_audit_through<'e>(
        tx: impl Executor<'e, Database = DB>,
        account_id: AccountId,
        through: AuditEventId,
    ) -> Result<u64> {
        let done = sqlx::query(sql::DELETE_AUDIT_THROUGH)
            .bind(account_id.get())
            .bind(through.get())
            .execute(tx)
            .await?;
        Ok(DB::rows_affected(&done))
    }

    pub(crate) async fn accounts_with_audit_before(pool: &Pool<DB>, before: Timestamp) -> Result<Vec<AccountId>> {
        let ids: Vec<i64> = sqlx::query_scalar(sql::ACCOUNTS_WITH_AUDIT_BEFORE)
            .bind(before.unix())
            .fetch_all(pool)
            .await?;
        Ok(ids.into_iter().map(AccountId::new).collect())
    }

    /// An account's chain and its recorded head, read in `tx` (which the
    /// backend opened so that both come from one snapshot), then committed.
    pub(crate) async fn audit_chain_and_head(
        mut tx: Transaction<'_, DB>,
        account_id: AccountId,
    ) -> Result<(Vec<(AuditEvent, [u8; 32])>, Option<Head>)> {
        let head = Self::audit_head(&mut *tx, account_id).await?;
        let rows: Vec<AuditRow> = sqlx::query_as(sql::AUDIT_CHAIN)
            .bind(account_id.get())
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let chain = rows
            .into_iter()
            .map(<(AuditEvent, [u8; 32])>::try_from)
            .collect::<Result<_>>()?;
        Ok((chain, head))
    }

    pub(crate) async fn insert_audit<'e>(
        tx: impl Executor<'e, Database = DB>,
        e: &AuditEvent,
        hash: &[u8; 32],
    ) -> Result<AuditEventId> {
        let id: i64 = sqlx::query_scalar(sql::INSERT_AUDIT)
            .bind(e.account_id.get())
            .bind(e.action.as_str())
            .bind(e.actor_type.as_str())
            .bind(e.actor_id.map(UserId::get))
            .bind(e.actor_name.as_str())
            .bind(e.source_type.as_str())
            .bind(e.source_id)
            .bind(e.source_label.as_str())
            .bind(e.change_description.as_str())
            .bind(e.ip_address.as_deref())
            .bind(e.created_at.unix())
            .bind(&hash[..])
            .fetch_one(tx)
            .await?;
        Ok(AuditEventId::new(id))
    }

    /// An account's audit events in id order, with their stored hashes.
    pub(crate) async fn audit_chain(pool: &Pool<DB>, account_id: AccountId) -> Result<Vec<(AuditEvent, [u8; 32])>> {
        let rows: Vec<AuditRow> = sqlx::query_as(sql::AUDIT_CHAIN)
            .bind(account_id.get())
            .fetch_all(pool)
            .await?;
        rows.into_iter().map(<(AuditEvent, [u8; 32])>::try_from).collect()
    }

    pub(crate) async fn audit_events(
        pool: &Pool<DB>,
        account_id: AccountId,
        filter: &AuditFilter,
        seek: &Seek,
    ) -> Result<Vec<AuditEvent>> {
        let (text, args) = audit_log::list_sql(account_id, filter, seek);
        let mut query = sqlx::query_as::<_, AuditRow>(AssertSqlSafe(text));
        for arg in &args {
            query = match arg {
                audit_log::Arg::Int(n) => query.bind(*n),
                audit_log::Arg::Text(s) => query.bind(s.as_str()),
            };
        }
        let rows = query.fetch_all(pool).await?;
        rows.into_iter()
            .map(|r| <(AuditEvent, [u8; 32])>::try_from(r).map(|(e, _)| e))
            .collect()
    }

    pub(crate) async fn audit_event(
        pool: &Pool<DB>,
        account_id: AccountId,
        id: AuditEventId,
    ) -> Result<Option<AuditEvent>> {
        let row: Option<AuditRow> = sqlx::query_as(AssertSqlSafe(audit_log::event_sql()))
            .bind(account_id.get())
            .bind(id.get())
            .fetch_optional(pool)
            .await?;
        row.map(|r| <(AuditEvent, [u8; 32])>::try_from(r).map(|(e, _)| e))
            .transpose()
    }

    // ---- Admin Center sessions ---------------------------------------------

    pub(crate) async fn insert_session(pool: &Pool<DB>, s: &SessionRecord) -> Result<()> {
        sqlx::query(sql::INSERT_SESSION)
            .bind(&s.id_hash[..])
            .bind(s.account_id.get())
            .bind(s.user_id.get())
            .bind(s.csrf_token.expose_secret())
            .bind(s.created_at.unix())
            .bind(s.last_seen_at.unix())
            .execute(pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn session(pool: &Pool<DB>, id_hash: &[u8; 32]) -> Result<Option<SessionRecord>> {
        let row: Option<SessionRow> = sqlx::query_as(sql::SESSION_BY_HASH)
            .bind(&id_hash[..])
            .fetch_optional(pool)
            .await?;
        Ok(row.map(
            |(_, account_id, user_id, csrf_token, created_at, last_seen_at)| SessionRecord {
                id_hash: *id_hash,
                account_id: AccountId::new(account_id),
                user_id: UserId::new(user_id),
                csrf_token: CsrfToken::new(csrf_token),
                created_at: Timestamp::from_unix(created_at),
                last_seen_at: Timestamp::from_unix(last_seen_at),
            },
        ))
    }

    pub(crate) async fn touch_session(pool: &Pool<DB>, id_hash: &[u8; 32], at: Timestamp) -> Result<()> {
        sqlx::query(sql::TOUCH_SESSION)
            .bind(at.unix())
            .bind(&id_hash[..])
            .execute(pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn delete_session(pool: &Pool<DB>, id_hash: &[u8; 32]) -> Result<()> {
        sqlx::query(sql::DELETE_SESSION)
            .bind(&id_hash[..])
            .execute(pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn prune_sessions(
        pool: &Pool<DB>,
        idle_before: Timestamp,
        created_before: Timestamp,
    ) -> Result<u64> {
        let done = sqlx::query(sql::PRUNE_SESSIONS)
            .bind(idle_before.unix())
            .bind(created_before.unix())
            .execute(pool)
            .await?;
        Ok(DB::rows_affected(&done))
    }
}

/// Token rows on their way into a [`Reload`]: gathered into batches, each
/// applied on a blocking thread while the next is read, with at most two
/// batches waiting, so that memory stays bounded however many tokens there
/// are.
#[derive(Default)]
struct TokenBatches {
    filling: Vec<TokenAuth>,
    applying: std::collections::VecDeque<tokio::task::JoinHandle<()>>,
}

impl TokenBatches {
    const SIZE: usize = 4096;
    const IN_FLIGHT: usize = 2;

    async fn push(&mut self, reload: &mut Reload, token: TokenAuth) {
        self.filling.push(token);
        if self.filling.len() == Self::SIZE {
            self.send(reload).await;
        }
    }

    async fn send(&mut self, reload: &mut Reload) {
        let batch = reload.tokens(std::mem::replace(&mut self.filling, Vec::with_capacity(Self::SIZE)));
        self.applying
            .push_back(tokio::task::spawn_blocking(move || batch.apply()));
        while self.applying.len() > Self::IN_FLIGHT {
            if let Some(oldest) = self.applying.pop_front() {
                Self::wait(oldest).await;
            }
        }
    }

    /// Applies what is left and waits for every batch.
    async fn finish(mut self, reload: &mut Reload) {
        if !self.filling.is_empty() {
            self.send(reload).await;
        }
        while let Some(handle) = self.applying.pop_front() {
            Self::wait(handle).await;
        }
    }

    async fn wait(handle: tokio::task::JoinHandle<()>) {
        if let Err(e) = handle.await {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}
