//! [`Store`]: each latchkey change as one transaction, written once for
//! every backend. The steps are always the same: lock the account, read what
//! the rule needs, let `latchkey-core` decide, write the rows, the audit
//! events and the change-log entries, commit. A refused change writes
//! nothing; a no-op change writes nothing and records no event.

use std::ops::Deref;
use std::sync::Arc;

use latchkey_core::{
    account::{Account, AccountPatch, NewAccount},
    audit::{Action, Actor, AuditEvent, Source, GENESIS},
    time::Timestamp,
    token::{self, ApiToken, NewToken, TokenPatch},
    user::{NewUser, User, UserPatch},
    DomainError, ErrorCode, Invalid,
};

use crate::backend::{Backend, Tx};
use crate::{Entity, Result, StoreError};

/// A page request for keyset pagination by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub after: Option<i64>,
    pub before: Option<i64>,
    pub size: i64,
}

/// The storage facade that every caller uses. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        &*self.backend
    }
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

/// Appends one audit event to its account's hash chain.
async fn audit(tx: &mut dyn Tx, event: AuditEvent) -> Result<()> {
    let previous = tx.last_audit_hash(event.account_id).await?.unwrap_or(GENESIS);
    let hash = event.chain_hash(&previous);
    tx.insert_audit(&event, &hash).await?;
    Ok(())
}

async fn lock(tx: &mut dyn Tx, account_id: i64) -> Result<Account> {
    tx.lock_account(account_id).await?.ok_or_else(not_found)
}

async fn live_user(tx: &mut dyn Tx, account_id: i64, id: i64) -> Result<User> {
    match tx.user(account_id, id).await? {
        Some(u) if !u.deleted => Ok(u),
        _ => Err(not_found()),
    }
}

impl Store {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Store { backend }
    }

    /// Creates an account with its first admin.
    pub async fn create_account(
        &self,
        new: NewAccount,
        admin: NewUser,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(Account, User)> {
        let mut tx = self.backend.begin().await?;
        if tx.subdomain_taken(new.subdomain.as_str()).await? {
            return Err(taken("subdomain"));
        }
        let account = tx.insert_account(&new, now).await.map_err(on_unique("subdomain"))?;
        let user = tx
            .insert_user(account.id, &admin, now)
            .await
            .map_err(on_unique("email"))?;
        let id = account.id;
        audit(
            &mut *tx,
            AuditEvent::new(id, actor, Action::Create, Source::account(&account), String::new(), now),
        )
        .await?;
        audit(
            &mut *tx,
            AuditEvent::new(id, actor, Action::Create, Source::user(&user), String::new(), now),
        )
        .await?;
        tx.append_change(Entity::Account, id, now).await?;
        tx.append_change(Entity::User, user.id, now).await?;
        tx.commit().await?;
        Ok((account, user))
    }

    /// Changes an account's name, plan or settings. The account's own fields
    /// are audited as `account`, settings as `account_setting`.
    pub async fn update_account(
        &self,
        account_id: i64,
        patch: &AccountPatch,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<Account> {
        let mut tx = self.backend.begin().await?;
        let current = lock(&mut *tx, account_id).await?;
        let (mut next, changes) = patch.apply(&current);
        if changes.fields.is_empty() && changes.settings.is_empty() {
            return Ok(current);
        }
        next.updated_at = now;
        tx.save_account(&next).await?;
        if !changes.fields.is_empty() {
            let e = AuditEvent::new(
                account_id,
                actor,
                Action::Update,
                Source::account(&next),
                changes.fields.join("; "),
                now,
            );
            audit(&mut *tx, e).await?;
        }
        if !changes.settings.is_empty() {
            let e = AuditEvent::new(
                account_id,
                actor,
                Action::Update,
                Source::settings(account_id),
                changes.settings.join("; "),
                now,
            );
            audit(&mut *tx, e).await?;
        }
        tx.append_change(Entity::Account, account_id, now).await?;
        tx.commit().await?;
        Ok(next)
    }

    pub async fn create_user(&self, account_id: i64, new: NewUser, actor: &Actor, now: Timestamp) -> Result<User> {
        let mut tx = self.backend.begin().await?;
        lock(&mut *tx, account_id).await?;
        if tx.email_taken(account_id, &new.email.normalized()).await? {
            return Err(taken("email"));
        }
        let user = tx
            .insert_user(account_id, &new, now)
            .await
            .map_err(on_unique("email"))?;
        audit(
            &mut *tx,
            AuditEvent::new(
                account_id,
                actor,
                Action::Create,
                Source::user(&user),
                String::new(),
                now,
            ),
        )
        .await?;
        tx.append_change(Entity::User, user.id, now).await?;
        tx.commit().await?;
        Ok(user)
    }

    pub async fn update_user(
        &self,
        account_id: i64,
        id: i64,
        patch: &UserPatch,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<User> {
        let mut tx = self.backend.begin().await?;
        lock(&mut *tx, account_id).await?;
        let current = live_user(&mut *tx, account_id, id).await?;
        let (mut next, clauses) = patch.apply(&current);
        if clauses.is_empty() {
            return Ok(current);
        }
        next.updated_at = now;
        tx.save_user(&next, now).await?;
        audit(
            &mut *tx,
            AuditEvent::new(
                account_id,
                actor,
                Action::Update,
                Source::user(&next),
                clauses.join("; "),
                now,
            ),
        )
        .await?;
        tx.append_change(Entity::User, id, now).await?;
        tx.commit().await?;
        Ok(next)
    }

    /// Soft-deletes a user: it can no longer authenticate; tokens it created
    /// keep working.
    pub async fn delete_user(&self, account_id: i64, id: i64, actor: &Actor, now: Timestamp) -> Result<()> {
        let mut tx = self.backend.begin().await?;
        lock(&mut *tx, account_id).await?;
        let mut user = live_user(&mut *tx, account_id, id).await?;
        user.deleted = true;
        user.updated_at = now;
        tx.save_user(&user, now).await?;
        audit(
            &mut *tx,
            AuditEvent::new(
                account_id,
                actor,
                Action::Destroy,
                Source::user(&user),
                String::new(),
                now,
            ),
        )
        .await?;
        tx.append_change(Entity::User, id, now).await?;
        tx.commit().await
    }

    /// Sets or replaces a user's web sign-in password (an Argon2id PHC
    /// string), audited as an update without the secret.
    pub async fn set_password(
        &self,
        account_id: i64,
        id: i64,
        password_hash: &str,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.backend.begin().await?;
        lock(&mut *tx, account_id).await?;
        let user = live_user(&mut *tx, account_id, id).await?;
        tx.set_password(id, password_hash).await?;
        audit(
            &mut *tx,
            AuditEvent::new(
                account_id,
                actor,
                Action::Update,
                Source::user(&user),
                "password changed".to_owned(),
                now,
            ),
        )
        .await?;
        tx.commit().await
    }

    /// Stores a new token, refusing it when token access is off or the
    /// account is at its limit. The limit is exact under concurrency: the
    /// count and the insert happen under the account lock.
    pub async fn create_token(
        &self,
        account_id: i64,
        new: NewToken,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<ApiToken> {
        let mut tx = self.backend.begin().await?;
        let account = lock(&mut *tx, account_id).await?;
        if !account.api_token_access {
            return Err(DomainError::TokenAccessDisabled.into());
        }
        let count = tx.count_tokens(account_id).await?;
        token::check_room(count, 1, account.token_limit).map_err(DomainError::from)?;
        let t = tx
            .insert_token(account_id, &new, now)
            .await
            .map_err(on_unique("token"))?;
        audit(
            &mut *tx,
            AuditEvent::new(account_id, actor, Action::Create, Source::token(&t), String::new(), now),
        )
        .await?;
        tx.append_change(Entity::Token, t.id, now).await?;
        tx.commit().await?;
        Ok(t)
    }

    /// Edits a token: its description, and `active` to deactivate or
    /// reactivate it. Each kind of change is its own audit event.
    pub async fn update_token(
        &self,
        account_id: i64,
        id: i64,
        patch: &TokenPatch,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<ApiToken> {
        let mut tx = self.backend.begin().await?;
        lock(&mut *tx, account_id).await?;
        let current = tx.token(account_id, id).await?.ok_or_else(not_found)?;
        let (mut next, changes) = patch.apply(&current);
        if changes.is_empty() {
            return Ok(current);
        }
        next.updated_at = now;
        tx.save_token(&next).await?;
        if !changes.update.is_empty() {
            audit(
                &mut *tx,
                AuditEvent::new(
                    account_id,
                    actor,
                    Action::Update,
                    Source::token(&next),
                    changes.update.join("; "),
                    now,
                ),
            )
            .await?;
        }
        if let Some(active) = changes.status {
            let action = if active { Action::Reactivate } else { Action::Deactivate };
            audit(
                &mut *tx,
                AuditEvent::new(account_id, actor, action, Source::token(&next), String::new(), now),
            )
            .await?;
        }
        tx.append_change(Entity::Token, id, now).await?;
        tx.commit().await?;
        Ok(next)
    }

    /// Deletes a deactivated token for good.
    pub async fn delete_token(&self, account_id: i64, id: i64, actor: &Actor, now: Timestamp) -> Result<()> {
        let mut tx = self.backend.begin().await?;
        lock(&mut *tx, account_id).await?;
        let t = tx.token(account_id, id).await?.ok_or_else(not_found)?;
        token::check_deletable(t.active).map_err(DomainError::from)?;
        tx.delete_token(id).await?;
        audit(
            &mut *tx,
            AuditEvent::new(
                account_id,
                actor,
                Action::Destroy,
                Source::token(&t),
                String::new(),
                now,
            ),
        )
        .await?;
        tx.append_change(Entity::Token, id, now).await?;
        tx.commit().await
    }

    /// Imports tokens all or nothing. An account left with more than 256
    /// tokens gets the 2048 limit for good (§3.5).
    pub async fn import_tokens(
        &self,
        account_id: i64,
        tokens: Vec<NewToken>,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<Vec<ApiToken>> {
        let mut tx = self.backend.begin().await?;
        let mut account = lock(&mut *tx, account_id).await?;
        let count = tx.count_tokens(account_id).await?;
        let adding = tokens.len() as i64;
        let limit = token::limit_after_import(account.token_limit, count + adding);
        token::check_room(count, adding, limit).map_err(DomainError::from)?;
        let mut seen = std::collections::HashSet::new();
        for (line, new) in tokens.iter().enumerate() {
            if !seen.insert(new.hash) || tx.token_hash_taken(&new.hash.0).await? {
                let e = Invalid::new(
                    format!("line {}", line + 1),
                    ErrorCode::Taken,
                    "this token is already stored",
                );
                return Err(DomainError::from(e).into());
            }
        }
        let mut created = Vec::with_capacity(tokens.len());
        for new in &tokens {
            let t = tx
                .insert_token(account_id, new, now)
                .await
                .map_err(on_unique("token"))?;
            audit(
                &mut *tx,
                AuditEvent::new(account_id, actor, Action::Create, Source::token(&t), String::new(), now),
            )
            .await?;
            tx.append_change(Entity::Token, t.id, now).await?;
            created.push(t);
        }
        if limit != account.token_limit {
            let from = account.token_limit;
            account.token_limit = limit;
            account.updated_at = now;
            tx.save_account(&account).await?;
            let desc = format!("token_limit changed from {from} to {limit}");
            audit(
                &mut *tx,
                AuditEvent::new(account_id, actor, Action::Update, Source::account(&account), desc, now),
            )
            .await?;
            tx.append_change(Entity::Account, account_id, now).await?;
        }
        tx.commit().await?;
        Ok(created)
    }

    /// An account's undeleted users, one page in ascending id order, and
    /// whether more follow in the paging direction.
    pub async fn users_page_of(&self, account_id: i64, page: Page) -> Result<(Vec<User>, bool)> {
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
