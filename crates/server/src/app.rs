//! The service layer: every latchkey operation, whichever door it comes in
//! by (REST API, web pages, CLI). Each mutation goes through the [`Store`]
//! (one transaction with its audit event and change-log entry) and then
//! brings this process's verifier up to date before it returns, so the
//! caller's very next request already sees the change.
//!
//! Mutations of an account take an [`AdminAccess`], which only a successful
//! admin check (HTTP) or the operator's own command line (CLI) can produce.

use std::sync::Arc;

use latchkey_core::{
    account::{Account, AccountPatch, NewAccount},
    audit::Actor,
    time::{Clock, SystemClock, Timestamp},
    token::{ApiToken, NewToken, PlainToken, TokenPatch, TokenPrefix},
    user::{NewUser, User, UserPatch},
    verifier::Verifier,
};
use latchkey_store::{Follower, Store, StoreError};

/// The right to change one account, and who is using it.
#[derive(Debug, Clone)]
pub struct AdminAccess {
    account_id: i64,
    actor: Actor,
}

impl AdminAccess {
    /// Only the HTTP layer's admin check calls this.
    pub(crate) fn for_admin(account_id: i64, actor: Actor) -> Self {
        AdminAccess { account_id, actor }
    }

    /// A signed-in admin of the Admin Center, acting from `ip`; only the
    /// pages' admin check calls this.
    pub(crate) fn for_user(user: &User, ip: std::net::IpAddr) -> Self {
        Self::for_admin(user.account_id, Actor::user(user.id, &user.name, Some(ip.to_string())))
    }

    /// Whoever runs the CLI on the database acts as the operator.
    pub fn operator(account_id: i64) -> Self {
        AdminAccess {
            account_id,
            actor: Actor::operator(),
        }
    }

    pub fn account_id(&self) -> i64 {
        self.account_id
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }
}

pub struct App {
    pub store: Store,
    pub verifier: Arc<Verifier>,
    pub follower: Arc<Follower>,
    pub clock: Arc<dyn Clock>,
    pub token_prefix: TokenPrefix,
}

type Result<T> = std::result::Result<T, StoreError>;

impl App {
    /// Opens and migrates the database, and loads the verifier.
    pub async fn open(database_url: &str, token_prefix: TokenPrefix) -> Result<App> {
        let store = latchkey_store::open(database_url).await?;
        let verifier = Arc::new(Verifier::new());
        let follower = Arc::new(Follower::new(store.clone(), verifier.clone()));
        follower.resync().await?;
        Ok(App {
            store,
            verifier,
            follower,
            clock: Arc::new(SystemClock),
            token_prefix,
        })
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Applies committed changes to this process's verifier. A failure here
    /// does not undo the committed change; the poller retries.
    async fn refresh(&self) {
        if let Err(e) = self.follower.catch_up().await {
            tracing::warn!(error = %e, "applying a change to memory failed; the poller will retry");
        }
    }

    pub async fn create_account(&self, new: NewAccount, admin: NewUser, actor: &Actor) -> Result<(Account, User)> {
        let out = self.store.create_account(new, admin, actor, self.now()).await?;
        self.refresh().await;
        Ok(out)
    }

    pub async fn update_account(&self, access: &AdminAccess, patch: &AccountPatch) -> Result<Account> {
        let out = self
            .store
            .update_account(access.account_id, patch, &access.actor, self.now())
            .await?;
        self.refresh().await;
        Ok(out)
    }

    pub async fn create_user(&self, access: &AdminAccess, new: NewUser) -> Result<User> {
        let out = self
            .store
            .create_user(access.account_id, new, &access.actor, self.now())
            .await?;
        self.refresh().await;
        Ok(out)
    }

    pub async fn update_user(&self, access: &AdminAccess, id: i64, patch: &UserPatch) -> Result<User> {
        let out = self
            .store
            .update_user(access.account_id, id, patch, &access.actor, self.now())
            .await?;
        self.refresh().await;
        Ok(out)
    }

    pub async fn delete_user(&self, access: &AdminAccess, id: i64) -> Result<()> {
        self.store
            .delete_user(access.account_id, id, &access.actor, self.now())
            .await?;
        self.refresh().await;
        Ok(())
    }

    /// A user of the account, not deleted.
    pub async fn user(&self, account_id: i64, id: i64) -> Result<Option<User>> {
        Ok(self
            .store
            .user(id)
            .await?
            .filter(|u| u.account_id == account_id && !u.deleted))
    }

    /// Generates a token and stores its hash; the plain token is returned
    /// for the one response that shows it.
    pub async fn create_token(
        &self,
        access: &AdminAccess,
        description: Option<String>,
    ) -> Result<(ApiToken, PlainToken)> {
        let plain = PlainToken::generate(&self.token_prefix);
        let new = NewToken {
            hash: plain.hash(),
            visible_token: plain.visible(),
            description,
            active: true,
            user_id: access.actor.id,
        };
        let token = self
            .store
            .create_token(access.account_id, new, &access.actor, self.now())
            .await?;
        self.refresh().await;
        Ok((token, plain))
    }

    pub async fn update_token(&self, access: &AdminAccess, id: i64, patch: &TokenPatch) -> Result<ApiToken> {
        let token = self
            .store
            .update_token(access.account_id, id, patch, &access.actor, self.now())
            .await?;
        self.refresh().await;
        Ok(self.with_usage(token))
    }

    pub async fn delete_token(&self, access: &AdminAccess, id: i64) -> Result<()> {
        self.store
            .delete_token(access.account_id, id, &access.actor, self.now())
            .await?;
        self.refresh().await;
        Ok(())
    }

    pub async fn import_tokens(&self, access: &AdminAccess, tokens: Vec<NewToken>) -> Result<Vec<ApiToken>> {
        let out = self
            .store
            .import_tokens(access.account_id, tokens, &access.actor, self.now())
            .await?;
        self.refresh().await;
        Ok(out)
    }

    pub async fn token(&self, account_id: i64, id: i64) -> Result<Option<ApiToken>> {
        Ok(self.store.token(account_id, id).await?.map(|t| self.with_usage(t)))
    }

    /// An account's tokens, newest first, with usage this process has seen
    /// but not yet flushed.
    pub async fn tokens(&self, account_id: i64) -> Result<Vec<ApiToken>> {
        Ok(self
            .store
            .tokens(account_id)
            .await?
            .into_iter()
            .map(|t| self.with_usage(t))
            .collect())
    }

    fn with_usage(&self, mut token: ApiToken) -> ApiToken {
        if let Some(seen) = self.verifier.last_used(token.id) {
            token.last_used = Some(token.last_used.map_or(seen, |stored| stored.max(seen)));
        }
        token
    }

    /// Writes the `last_used` times gathered since the previous flush.
    /// Uses that cannot be written now are kept for the next flush.
    pub async fn flush_usage(&self) -> Result<usize> {
        let uses = self.verifier.drain_usage();
        if let Err(e) = self.store.record_token_use(&uses).await {
            self.verifier.requeue_usage(&uses);
            return Err(e);
        }
        Ok(uses.len())
    }
}
