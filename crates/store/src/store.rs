//! [`Store`]: each latchkey change as one transaction, written once for
//! every backend. The steps are always the same: lock the account, read what
//! the rule needs, let `latchkey-core` decide, write the rows, the audit
//! events and the change-log entries, commit. A refused change writes
//! nothing; a no-op change writes nothing and records no event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use latchkey_core::secret::PasswordHash;
use latchkey_core::{
    account::{Account, AccountPatch, NewAccount},
    audit::{Action, Actor, AuditEvent, Checkpoint, Head, Source, GENESIS},
    id::{AccountId, AuditEventId, TokenId, UserId},
    policy::SweepAction,
    time::Timestamp,
    token::{self, ApiToken, NewToken, Restrictions, TokenCreator, TokenHash, TokenPatch},
    user::{NewUser, User, UserPatch},
    DomainError, ErrorCode, Invalid,
};

use latchkey_core::audit_query::{AuditFilter, Seek};
use latchkey_core::rate_limit::{PeerCount, RateReport};
use latchkey_core::usage::HourUsage;
use latchkey_core::verifier::{Reload, TokenAuth, TokenUse};

use crate::backend::{Backend, ChangeListener, SessionRecord, Tx};
use crate::Change;
use crate::{Entity, Result, StoreError};

/// A page request for keyset pagination of users by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub after: Option<UserId>,
    pub before: Option<UserId>,
    pub size: i64,
}

/// The storage facade that every caller uses. Cheap to clone. It does not
/// hand out its [`Backend`]: each read a caller may make is a method below.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    /// Audit events committed through this store and its clones (a
    /// server's `latchkey_audit_events_written_total`).
    audit_written: Arc<AtomicU64>,
}

fn taken(field: &str) -> StoreError {
    DomainError::invalid(field, ErrorCode::Taken, format!("{field} has already been taken")).into()
}

fn not_found() -> StoreError {
    DomainError::NotFound.into()
}

/// Maps a unique-constraint violation to a 422 `Taken` on `field`; both
/// backends report it through sqlx's portable `is_unique_violation`.
fn on_unique(field: &'static str) -> impl Fn(StoreError) -> StoreError {
    move |e| match &e {
        StoreError::Database(sqlx::Error::Database(db)) if db.is_unique_violation() => taken(field),
        _ => e,
    }
}

/// An id the change log records: the kind of entity it names, and its row
/// id (the change log's `entity_id` column holds ids of every kind).
trait Logged: Copy {
    const ENTITY: Entity;
    fn row_id(self) -> i64;
}

impl Logged for AccountId {
    const ENTITY: Entity = Entity::Account;
    fn row_id(self) -> i64 {
        self.get()
    }
}

impl Logged for UserId {
    const ENTITY: Entity = Entity::User;
    fn row_id(self) -> i64 {
        self.get()
    }
}

impl Logged for TokenId {
    const ENTITY: Entity = Entity::Token;
    fn row_id(self) -> i64 {
        self.get()
    }
}

/// One write transaction on behalf of one actor at one instant: the
/// transaction, and the audit events and change-log entries it appends.
struct Work<'a> {
    tx: Box<dyn Tx>,
    actor: &'a Actor,
    now: Timestamp,
    /// Audit events appended so far, counted into `written` on commit.
    events: u64,
    written: &'a AtomicU64,
}

impl<'a> Work<'a> {
    async fn begin(store: &'a Store, actor: &'a Actor, now: Timestamp) -> Result<Self> {
        Ok(Work {
            tx: store.backend.begin().await?,
            actor,
            now,
            events: 0,
            written: &store.audit_written,
        })
    }

    /// Locks an account for the rest of the transaction and reads it.
    async fn lock(&mut self, account_id: AccountId) -> Result<Account> {
        self.tx.lock_account(account_id).await?.ok_or_else(not_found)
    }

    async fn live_user(&mut self, account_id: AccountId, id: UserId) -> Result<User> {
        match self.tx.user(account_id, id).await? {
            Some(u) if !u.deleted => Ok(u),
            _ => Err(not_found()),
        }
    }

    async fn token(&mut self, account_id: AccountId, id: TokenId) -> Result<ApiToken> {
        self.tx.token(account_id, id).await?.ok_or_else(not_found)
    }

    /// The user a token is to be assigned to: a user of the same account,
    /// not deleted (422 `InvalidValue` on `assigned_user_id` otherwise).
    async fn assignee(&mut self, account_id: AccountId, id: UserId) -> Result<User> {
        self.live_user(account_id, id).await.map_err(|e| match e {
            StoreError::Domain(DomainError::NotFound) => DomainError::invalid(
                "assigned_user_id",
                ErrorCode::InvalidValue,
                "No such user in this account.",
            )
            .into(),
            e => e,
        })
    }

    /// Appends an audit event to its account's hash chain and records it
    /// as the chain's head (README.md, "Audit retention").
    ///
    /// The event chains onto the recorded head, not merely onto the newest
    /// row: when the newest events were deleted behind latchkey's back, the
    /// next event still follows the missing one, so `audit verify` keeps
    /// naming the gap; and after retention pruned every event, the chain
    /// goes on from the last pruned hash. Only a newer row than the head
    /// (written by a node of the release before heads were recorded) is
    /// chained onto instead.
    async fn event(
        &mut self,
        account_id: AccountId,
        action: Action,
        source: Source,
        change: impl Into<String>,
    ) -> Result<()> {
        let event = AuditEvent::new(account_id, self.actor, action, source, change.into(), self.now);
        let head = self.tx.audit_head(account_id).await?;
        let newest = self.tx.last_audit_event(account_id).await?;
        let previous = match (head, newest) {
            (Some(head), Some((id, hash))) if id > head.event_id => hash,
            (Some(head), _) => head.hash,
            (None, Some((_, hash))) => hash,
            (None, None) => GENESIS,
        };
        let hash = event.chain_hash(&previous);
        let id = self.tx.insert_audit(&event, &hash).await?;
        self.tx.set_audit_head(account_id, id, &hash).await?;
        self.events += 1;
        Ok(())
    }

    /// Tells every process to re-read this entity.
    async fn changed<I: Logged>(&mut self, id: I) -> Result<()> {
        self.tx.append_change(I::ENTITY, id.row_id(), self.now).await
    }

    async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        self.written.fetch_add(self.events, Ordering::Relaxed);
        Ok(())
    }
}

impl Store {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Store {
            backend,
            audit_written: Arc::default(),
        }
    }

    async fn work<'a>(&'a self, actor: &'a Actor, now: Timestamp) -> Result<Work<'a>> {
        Work::begin(self, actor, now).await
    }

    /// How many audit events this store (and its clones) has committed.
    pub fn audit_events_written(&self) -> u64 {
        self.audit_written.load(Ordering::Relaxed)
    }

    /// The request pool's connections now; runs no statement.
    pub fn pool_stats(&self) -> crate::PoolStats {
        self.backend.pool_stats()
    }

    /// Creates an account with its first admin.
    pub async fn create_account(
        &self,
        new: NewAccount,
        admin: NewUser,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(Account, User)> {
        let mut w = self.work(actor, now).await?;
        if w.tx.subdomain_taken(new.subdomain.as_str()).await? {
            return Err(taken("subdomain"));
        }
        let account = w.tx.insert_account(&new, now).await.map_err(on_unique("subdomain"))?;
        let user =
            w.tx.insert_user(account.id, &admin, now)
                .await
                .map_err(on_unique("email"))?;
        w.event(account.id, Action::Create, Source::account(&account), "")
            .await?;
        w.event(account.id, Action::Create, Source::user(&user), "").await?;
        w.changed(account.id).await?;
        w.changed(user.id).await?;
        w.commit().await?;
        Ok((account, user))
    }

    /// Changes an account's name, plan or settings. The account's own fields
    /// are audited as `account`, settings as `account_setting`.
    pub async fn update_account(
        &self,
        account_id: AccountId,
        patch: &AccountPatch,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<Account> {
        let mut w = self.work(actor, now).await?;
        let current = w.lock(account_id).await?;
        if let Some(limit) = patch.token_limit {
            let held = w.tx.count_tokens(account_id).await?;
            if limit < held {
                return Err(DomainError::invalid(
                    "token_limit",
                    ErrorCode::InvalidValue,
                    format!("The account holds {held} tokens; the limit cannot be lower."),
                )
                .into());
            }
        }
        let (mut next, changes) = patch.apply(&current);
        if changes.fields.is_empty() && changes.settings.is_empty() {
            return Ok(current);
        }
        next.updated_at = now;
        w.tx.save_account(&next).await?;
        if !changes.fields.is_empty() {
            w.event(
                account_id,
                Action::Update,
                Source::account(&next),
                changes.fields.join("; "),
            )
            .await?;
        }
        if !changes.settings.is_empty() {
            w.event(
                account_id,
                Action::Update,
                Source::settings(account_id),
                changes.settings.join("; "),
            )
            .await?;
        }
        w.changed(account_id).await?;
        w.commit().await?;
        Ok(next)
    }

    /// Deletes an account with its users, tokens, sessions, usage and audit
    /// log, in one transaction (`latchkey account delete`); every process
    /// drops them from memory through the change log. Returns how many
    /// users and tokens went with it.
    pub async fn delete_account(&self, account_id: AccountId, actor: &Actor, now: Timestamp) -> Result<(usize, usize)> {
        let mut w = self.work(actor, now).await?;
        w.lock(account_id).await?;
        let (users, tokens) = w.tx.delete_account(account_id).await?;
        for id in &tokens {
            w.changed(*id).await?;
        }
        for id in &users {
            w.changed(*id).await?;
        }
        w.changed(account_id).await?;
        w.commit().await?;
        Ok((users.len(), tokens.len()))
    }

    pub async fn create_user(
        &self,
        account_id: AccountId,
        new: NewUser,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<User> {
        let mut w = self.work(actor, now).await?;
        w.lock(account_id).await?;
        if w.tx.email_taken(account_id, &new.email.normalized()).await? {
            return Err(taken("email"));
        }
        let user =
            w.tx.insert_user(account_id, &new, now)
                .await
                .map_err(on_unique("email"))?;
        w.event(account_id, Action::Create, Source::user(&user), "").await?;
        w.changed(user.id).await?;
        w.commit().await?;
        Ok(user)
    }

    pub async fn update_user(
        &self,
        account_id: AccountId,
        id: UserId,
        patch: &UserPatch,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<User> {
        let mut w = self.work(actor, now).await?;
        w.lock(account_id).await?;
        let current = w.live_user(account_id, id).await?;
        let (mut next, clauses) = patch.apply(&current);
        if clauses.is_empty() {
            return Ok(current);
        }
        // A new address must be free among the account's live users. The
        // check runs under the account lock, in this transaction; the unique
        // index on the lower-cased email is the backstop if anything slips
        // past it (both become the same 422 `Taken`). A change of case alone
        // keeps the user's own address.
        let new_email = next.email.normalized();
        if new_email != current.email.normalized() && w.tx.email_taken(account_id, &new_email).await? {
            return Err(taken("email"));
        }
        next.updated_at = now;
        w.tx.save_user(&next, now).await.map_err(on_unique("email"))?;
        w.event(account_id, Action::Update, Source::user(&next), clauses.join("; "))
            .await?;
        w.changed(id).await?;
        w.commit().await?;
        Ok(next)
    }

    /// Soft-deletes a user: it can no longer authenticate; tokens it created
    /// keep working.
    pub async fn delete_user(&self, account_id: AccountId, id: UserId, actor: &Actor, now: Timestamp) -> Result<()> {
        let mut w = self.work(actor, now).await?;
        w.lock(account_id).await?;
        let mut user = w.live_user(account_id, id).await?;
        user.deleted = true;
        user.updated_at = now;
        w.tx.save_user(&user, now).await?;
        w.event(account_id, Action::Destroy, Source::user(&user), "").await?;
        w.changed(id).await?;
        w.commit().await
    }

    /// Sets or replaces a user's web sign-in password (an Argon2id PHC
    /// string), audited as an update without the secret.
    pub async fn set_password(
        &self,
        account_id: AccountId,
        id: UserId,
        password_hash: &PasswordHash,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<()> {
        let mut w = self.work(actor, now).await?;
        w.lock(account_id).await?;
        let user = w.live_user(account_id, id).await?;
        w.tx.set_password(id, password_hash).await?;
        w.event(account_id, Action::Update, Source::user(&user), "password changed")
            .await?;
        w.commit().await
    }

    /// Stores a new token, refusing it when token access is off or the
    /// account is at its limit. The limit is exact under concurrency: the
    /// count and the insert happen under the account lock.
    pub async fn create_token(
        &self,
        account_id: AccountId,
        new: NewToken,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<ApiToken> {
        let mut w = self.work(actor, now).await?;
        let account = w.lock(account_id).await?;
        if !account.api_token_access {
            return Err(DomainError::TokenAccessDisabled.into());
        }
        new.restrictions.check_new(now).map_err(DomainError::from)?;
        account
            .token_policy
            .check(&new.restrictions, now)
            .map_err(DomainError::from)?;
        if let Some(assigned) = new.restrictions.assigned_user_id {
            w.assignee(account_id, assigned).await?;
        }
        let count = w.tx.count_tokens(account_id).await?;
        token::check_room(count, 1, account.token_limit).map_err(DomainError::from)?;
        let t =
            w.tx.insert_token(account_id, &new, now)
                .await
                .map_err(on_unique("token"))?;
        w.event(account_id, Action::Create, Source::token(&t), "").await?;
        w.changed(t.id).await?;
        w.commit().await?;
        Ok(t)
    }

    /// Edits a token: its description, and `active` to deactivate or
    /// reactivate it. Each kind of change is its own audit event.
    pub async fn update_token(
        &self,
        account_id: AccountId,
        id: TokenId,
        patch: &TokenPatch,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<ApiToken> {
        let mut w = self.work(actor, now).await?;
        let account = w.lock(account_id).await?;
        let current = w.token(account_id, id).await?;
        // The users an assignment change names, for the audit log's wording.
        let mut names = Vec::new();
        if let Some(assigned) = patch.assigned_user_id {
            if assigned != current.assigned_user_id {
                if let Some(new) = assigned {
                    let user = w.assignee(account_id, new).await?;
                    names.push((user.id, user.email.as_str().to_owned()));
                }
                if let Some(old) = current.assigned_user_id {
                    if let Some(user) = w.tx.user(account_id, old).await? {
                        names.push((user.id, user.email.as_str().to_owned()));
                    }
                }
            }
        }
        let who = |id: UserId| {
            names
                .iter()
                .find(|(u, _)| *u == id)
                .map_or_else(|| format!("user {}", id.get()), |(_, email)| email.clone())
        };
        let (mut next, changes) = patch.apply(&current, now, &who).map_err(DomainError::from)?;
        if changes.is_empty() {
            return Ok(current);
        }
        // A restriction that changes must keep to the policy (editing only
        // the description of a token made before the policy is allowed).
        let restricting = patch.scopes.is_some()
            || patch.assigned_user_id.is_some()
            || patch.expires_at.is_some()
            || patch.allowed_ips.is_some()
            || patch.rate_limit.is_some();
        if restricting {
            let restrictions = Restrictions {
                scopes: next.scopes.clone(),
                assigned_user_id: next.assigned_user_id,
                expires_at: next.expires_at,
                allowed_ips: next.allowed_ips.clone(),
                rate_limit: next.rate_limit,
            };
            account
                .token_policy
                .check(&restrictions, next.created_at)
                .map_err(DomainError::from)?;
        }
        next.updated_at = now;
        w.tx.save_token(&next).await?;
        if !changes.update.is_empty() {
            w.event(
                account_id,
                Action::Update,
                Source::token(&next),
                changes.update.join("; "),
            )
            .await?;
        }
        if let Some(active) = changes.status {
            let action = if active { Action::Reactivate } else { Action::Deactivate };
            w.event(account_id, action, Source::token(&next), "").await?;
        }
        w.changed(id).await?;
        w.commit().await?;
        Ok(next)
    }

    /// Rotates an active token: `hash` becomes its secret, and the current
    /// secret keeps authenticating for `grace_secs` more seconds (ending any
    /// earlier grace at once). Audited as `rotate`, `grace period {n} s`.
    #[allow(clippy::too_many_arguments)]
    pub async fn rotate_token(
        &self,
        account_id: AccountId,
        id: TokenId,
        hash: TokenHash,
        visible_token: &str,
        grace_secs: i64,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<ApiToken> {
        let mut w = self.work(actor, now).await?;
        w.lock(account_id).await?;
        let current = w.token(account_id, id).await?;
        token::check_rotatable(current.active).map_err(DomainError::from)?;
        w.tx.rotate_token(id, &hash, visible_token, now.plus_secs(grace_secs), now)
            .await
            .map_err(on_unique("token"))?;
        let next = w.token(account_id, id).await?;
        w.event(
            account_id,
            Action::Rotate,
            Source::token(&next),
            format!("grace period {grace_secs} s"),
        )
        .await?;
        w.changed(id).await?;
        w.commit().await?;
        Ok(next)
    }

    /// One sweep of an account under its token policy (or `policy`, for a
    /// dry run of a proposed one) as of `now`: each token the policy says
    /// to deactivate or delete, in one transaction under the account lock,
    /// each with one audit event by `actor`. The rules are judged again
    /// inside the transaction, so two sweepers racing (two nodes, a node
    /// and the CLI) change each token once; a sweep killed midway committed
    /// nothing of its account. `seen` gives the latest use this process
    /// knows of a token (newer than the stored one until the next flush).
    pub async fn sweep_account(
        &self,
        account_id: AccountId,
        seen: &(dyn Fn(TokenId) -> Option<Timestamp> + Sync),
        dry_run: bool,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<Vec<(ApiToken, SweepAction)>> {
        let mut w = self.work(actor, now).await?;
        let account = w.lock(account_id).await?;
        let policy = account.token_policy;
        let mut done = Vec::new();
        if !policy.sweeps() {
            return Ok(done);
        }
        for t in w.tx.tokens(account_id).await? {
            let Some(action) = policy.sweep(&t, seen(t.id), now) else {
                continue;
            };
            if !dry_run {
                match action {
                    SweepAction::Deactivate { .. } | SweepAction::DeactivateLegacy => {
                        let mut next = t.clone();
                        next.active = false;
                        next.deactivated_at = Some(now);
                        next.updated_at = now;
                        w.tx.save_token(&next).await?;
                        w.event(account_id, Action::Deactivate, Source::token(&next), action.describe())
                            .await?;
                    }
                    SweepAction::Delete { .. } => {
                        w.tx.delete_token(t.id).await?;
                        w.event(account_id, Action::Destroy, Source::token(&t), action.describe())
                            .await?;
                    }
                }
                w.changed(t.id).await?;
            }
            done.push((t, action));
        }
        if !dry_run && !done.is_empty() {
            w.commit().await?;
        }
        Ok(done)
    }

    /// The right to sweep now (see [`Backend::sweep_lease`]); `None` while
    /// another process sweeps.
    pub async fn sweep_lease(&self) -> Result<Option<crate::backend::SweepLease>> {
        self.backend.sweep_lease().await
    }

    /// The accounts whose token policy gives the sweeper something to do.
    pub async fn sweeping_accounts(&self) -> Result<Vec<AccountId>> {
        self.backend.sweeping_accounts().await
    }

    /// A token reported leaked: deactivated if active, and audited either
    /// way by `actor` (the system) as `reported leaked` and where it was
    /// found. `None` when the token is gone (nothing to do).
    pub async fn report_leaked(
        &self,
        account_id: AccountId,
        id: TokenId,
        found_at: Option<&str>,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<Option<ApiToken>> {
        let mut w = self.work(actor, now).await?;
        w.lock(account_id).await?;
        let Some(current) = w.tx.token(account_id, id).await? else {
            return Ok(None);
        };
        let note = match found_at {
            Some(url) => format!("reported leaked (found at {url})"),
            None => "reported leaked".to_owned(),
        };
        let mut next = current.clone();
        next.leaked_at = Some(now);
        if current.active {
            next.active = false;
            next.deactivated_at = Some(now);
            next.updated_at = now;
            w.tx.save_token(&next).await?;
            w.event(account_id, Action::Deactivate, Source::token(&next), note)
                .await?;
            w.changed(id).await?;
        } else {
            w.tx.save_token(&next).await?;
            w.event(account_id, Action::Update, Source::token(&next), note).await?;
        }
        w.commit().await?;
        Ok(Some(next))
    }

    /// Deletes a deactivated token for good.
    pub async fn delete_token(&self, account_id: AccountId, id: TokenId, actor: &Actor, now: Timestamp) -> Result<()> {
        let mut w = self.work(actor, now).await?;
        w.lock(account_id).await?;
        let t = w.token(account_id, id).await?;
        token::check_deletable(t.active).map_err(DomainError::from)?;
        w.tx.delete_token(id).await?;
        w.event(account_id, Action::Destroy, Source::token(&t), "").await?;
        w.changed(id).await?;
        w.commit().await
    }

    /// Imports tokens all or nothing. An account left with more than 256
    /// tokens gets the 2048 limit for good (README.md, `token import`).
    pub async fn import_tokens(
        &self,
        account_id: AccountId,
        tokens: Vec<NewToken>,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<Vec<ApiToken>> {
        let mut w = self.work(actor, now).await?;
        let mut account = w.lock(account_id).await?;
        let count = w.tx.count_tokens(account_id).await?;
        let adding = tokens.len() as i64;
        let limit = token::limit_after_import(account.token_limit, count + adding);
        token::check_room(count, adding, limit).map_err(DomainError::from)?;
        let mut seen = std::collections::HashSet::new();
        for (line, new) in tokens.iter().enumerate() {
            if !seen.insert(new.hash) || w.tx.token_hash_taken(&new.hash.0).await? {
                let e = Invalid::new(
                    format!("line {}", line + 1),
                    ErrorCode::Taken,
                    format!("line {}: this token is already stored", line + 1),
                );
                return Err(DomainError::from(e).into());
            }
        }
        let mut created = Vec::with_capacity(tokens.len());
        for new in &tokens {
            let t =
                w.tx.insert_token(account_id, new, now)
                    .await
                    .map_err(on_unique("token"))?;
            w.event(account_id, Action::Create, Source::token(&t), "").await?;
            w.changed(t.id).await?;
            created.push(t);
        }
        if limit != account.token_limit {
            let from = account.token_limit;
            account.token_limit = limit;
            account.updated_at = now;
            w.tx.save_account(&account).await?;
            let change = format!("token_limit changed from {from} to {limit}");
            w.event(account_id, Action::Update, Source::account(&account), change)
                .await?;
            w.changed(account_id).await?;
        }
        w.commit().await?;
        Ok(created)
    }

    /// One step of audit retention for one account (README.md, "Audit
    /// retention"), in one transaction under the account lock: deletes the
    /// account's oldest events created before `before`, at most `batch` of
    /// them and only a prefix of the chain (an old event after a newer one
    /// waits for it), and appends a checkpoint event by `system` that
    /// records the hash the remaining chain continues from. Returns how
    /// many events it pruned; 0 writes nothing. Two processes pruning at
    /// once take turns on the lock, and the second finds the prefix the
    /// first left.
    pub async fn prune_audit(
        &self,
        account_id: AccountId,
        before: Timestamp,
        retention_days: u32,
        batch: i64,
        now: Timestamp,
    ) -> Result<u64> {
        let actor = Actor::system();
        let mut w = self.work(&actor, now).await?;
        if w.tx.lock_account(account_id).await?.is_none() {
            return Ok(0);
        }
        let prefix = w.tx.audit_prefix(account_id, batch).await?;
        let Some(&(last, _, from_hash)) = prefix.iter().take_while(|(_, at, _)| *at < before).last() else {
            return Ok(0);
        };
        let pruned = w.tx.delete_audit_through(account_id, last).await?;
        let count = i64::try_from(pruned).unwrap_or(i64::MAX);
        let before_total = w.tx.audit_head(account_id).await?.map_or(0, |h: Head| h.pruned);
        let checkpoint = Checkpoint {
            pruned: count,
            before,
            retention_days,
            pruned_total: before_total.saturating_add(count),
            after_event: last,
            from_hash,
        };
        w.event(
            account_id,
            Action::Prune,
            Checkpoint::source(account_id),
            checkpoint.describe(),
        )
        .await?;
        w.tx.count_pruned(account_id, count).await?;
        w.commit().await?;
        Ok(pruned)
    }

    /// Accounts whose oldest audit event was created before `before`.
    pub async fn accounts_with_audit_before(&self, before: Timestamp) -> Result<Vec<AccountId>> {
        self.backend.accounts_with_audit_before(before).await
    }

    // -- reads, each delegated to the backend ------------------------------

    /// Change notifications pushed by the database, if it can push them.
    pub async fn change_listener(&self) -> Result<Option<Box<dyn ChangeListener>>> {
        self.backend.change_listener().await
    }

    /// Everything the verifier holds, read into `reload` from one
    /// consistent view of the database (the caller finishes the reload).
    pub async fn load_into(&self, reload: &mut Reload) -> Result<()> {
        self.backend.load_into(reload).await
    }

    /// The newest change-log sequence number (0 when the log is empty).
    pub async fn latest_change(&self) -> Result<i64> {
        self.backend.latest_change().await
    }

    /// The oldest change-log sequence number still kept.
    pub async fn oldest_change(&self) -> Result<Option<i64>> {
        self.backend.oldest_change().await
    }

    pub async fn changes_since(&self, seq: i64, limit: i64) -> Result<Vec<Change>> {
        self.backend.changes_since(seq, limit).await
    }

    /// Deletes change-log entries written before `before`.
    pub async fn add_usage(&self, rows: &[HourUsage]) -> Result<()> {
        self.backend.add_usage(rows).await
    }

    pub async fn usage_since(&self, token_id: TokenId, since: Timestamp) -> Result<Vec<HourUsage>> {
        self.backend.usage_since(token_id, since).await
    }

    pub async fn prune_usage(&self, before: Timestamp) -> Result<u64> {
        self.backend.prune_usage(before).await
    }

    /// Writes this node's rate-limit counts and reads the other nodes' of
    /// the same tokens, for [`latchkey_core::verifier::Verifier::apply_rate_peers`].
    pub async fn share_rate_counts(&self, node: i64, reports: &[RateReport], now_ms: i64) -> Result<Vec<PeerCount>> {
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        self.backend.share_rate_counts(node, reports, now_ms).await
    }

    pub async fn prune_rate_counts(&self, before_ms: i64) -> Result<u64> {
        self.backend.prune_rate_counts(before_ms).await
    }

    pub async fn prune_changes(&self, before: Timestamp) -> Result<u64> {
        self.backend.prune_changes(before).await
    }

    pub async fn account_count(&self) -> Result<i64> {
        self.backend.account_count().await
    }

    pub async fn accounts(&self) -> Result<Vec<Account>> {
        self.backend.accounts().await
    }

    pub async fn account(&self, id: AccountId) -> Result<Option<Account>> {
        self.backend.account(id).await
    }

    pub async fn account_by_subdomain(&self, subdomain: &str) -> Result<Option<Account>> {
        self.backend.account_by_subdomain(subdomain).await
    }

    /// A user by id in any account, deleted or not.
    pub async fn user(&self, id: UserId) -> Result<Option<User>> {
        self.backend.user(id).await
    }

    /// A user of one account by id, deleted or not. Another account's id
    /// answers exactly as a missing one, by the same query (docs/api.md,
    /// "Account isolation").
    pub async fn account_user(&self, account_id: AccountId, id: UserId) -> Result<Option<User>> {
        self.backend.account_user(account_id, id).await
    }

    /// An undeleted user by email, with the password hash for sign-in.
    pub async fn user_credentials(
        &self,
        account_id: AccountId,
        email_normalized: &str,
    ) -> Result<Option<(User, Option<PasswordHash>)>> {
        self.backend.user_credentials(account_id, email_normalized).await
    }

    pub async fn token(&self, account_id: AccountId, id: TokenId) -> Result<Option<ApiToken>> {
        self.backend.token(account_id, id).await
    }

    pub async fn token_auth(&self, id: TokenId) -> Result<Option<TokenAuth>> {
        self.backend.token_auth(id).await
    }

    /// An account's tokens, newest first.
    pub async fn tokens(&self, account_id: AccountId) -> Result<Vec<ApiToken>> {
        self.backend.tokens(account_id).await
    }

    /// An account's tokens with their creators, newest first (one statement).
    pub async fn tokens_with_creators(&self, account_id: AccountId) -> Result<Vec<(ApiToken, TokenCreator)>> {
        self.backend.tokens_with_creators(account_id).await
    }

    /// One token of an account with its creator.
    pub async fn token_with_creator(
        &self,
        account_id: AccountId,
        id: TokenId,
    ) -> Result<Option<(ApiToken, TokenCreator)>> {
        self.backend.token_with_creator(account_id, id).await
    }

    /// An account's audit events in id order, with their stored hashes.
    pub async fn audit_chain(&self, account_id: AccountId) -> Result<Vec<(AuditEvent, [u8; 32])>> {
        self.backend.audit_chain(account_id).await
    }

    /// An account's audit chain and its recorded head, from one snapshot
    /// (`latchkey audit verify`).
    pub async fn audit_chain_and_head(
        &self,
        account_id: AccountId,
    ) -> Result<(Vec<(AuditEvent, [u8; 32])>, Option<Head>)> {
        self.backend.audit_chain_and_head(account_id).await
    }

    /// An account's events matching `filter` within `seek`'s id range.
    pub async fn audit_events(
        &self,
        account_id: AccountId,
        filter: &AuditFilter,
        seek: &Seek,
    ) -> Result<Vec<AuditEvent>> {
        self.backend.audit_events(account_id, filter, seek).await
    }

    /// One event of an account.
    pub async fn audit_event(&self, account_id: AccountId, id: AuditEventId) -> Result<Option<AuditEvent>> {
        self.backend.audit_event(account_id, id).await
    }

    /// Writes `last_used` for a batch of tokens, never moving it backwards.
    pub async fn record_token_use(&self, uses: &[TokenUse]) -> Result<()> {
        self.backend.record_token_use(uses).await
    }

    pub async fn insert_session(&self, session: &SessionRecord) -> Result<()> {
        self.backend.insert_session(session).await
    }

    pub async fn session(&self, id_hash: &[u8; 32]) -> Result<Option<SessionRecord>> {
        self.backend.session(id_hash).await
    }

    pub async fn touch_session(&self, id_hash: &[u8; 32], at: Timestamp) -> Result<()> {
        self.backend.touch_session(id_hash, at).await
    }

    pub async fn delete_session(&self, id_hash: &[u8; 32]) -> Result<()> {
        self.backend.delete_session(id_hash).await
    }

    /// Deletes sessions idle since before `idle_before` or created before
    /// `created_before`.
    pub async fn prune_sessions(&self, idle_before: Timestamp, created_before: Timestamp) -> Result<u64> {
        self.backend.prune_sessions(idle_before, created_before).await
    }

    /// Deleted users of an account who appear as actors in its audit log,
    /// at most `limit`, in ascending id order.
    pub async fn deleted_audit_actors(&self, account_id: AccountId, limit: i64) -> Result<Vec<User>> {
        self.backend.deleted_audit_actors(account_id, limit).await
    }

    /// An account's undeleted users, one page in ascending id order, and
    /// whether more follow in the paging direction.
    pub async fn users_page_of(&self, account_id: AccountId, page: Page) -> Result<(Vec<User>, bool)> {
        let mut users = self
            .backend
            .users_page(account_id, page.after, page.before, page.size + 1)
            .await?;
        let has_more = users.len() as i64 > page.size;
        if has_more {
            if page.before.is_some() {
                users.remove(0);
            } else {
                users.pop();
            }
        }
        Ok((users, has_more))
    }
}
