//! [`App`], the service layer: every latchkey operation, whichever door it
//! comes in by (REST API, web pages, CLI). Each mutation goes through the
//! [`Store`] (one transaction with its audit event and change-log entry) and
//! then brings this process's verifier up to date before it returns, so the
//! caller's very next request already sees the change.
//!
//! Every read and write takes a capability from [`crate::access`] naming
//! the account it acts in; writes take an [`AdminAccess`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use latchkey_core::{
    account::{Account, AccountPatch, NewAccount, Plan, Subdomain},
    audit::{self, Actor, AuditEvent, Verdict},
    audit_query::AuditQuery,
    id::{AuditEventId, TokenId, UserId},
    policy::{SweepAction, TokenPolicy},
    scope::{ScopeCatalog, Target},
    time::{Clock, SystemClock, Timestamp},
    token::{
        has_valid_checksum, is_legacy_shaped, ApiToken, NewToken, PlainToken, Restrictions, TokenCreator, TokenHash,
        TokenPatch, TokenPrefix,
    },
    usage::HourUsage,
    user::{Email, NewUser, Role, User, UserPatch},
    verifier::{Identity, IdentityRef, Refusal, Verifier},
    DomainError,
};
use latchkey_store::{ConnectOptions, Follower, Page, Store};
use tokio::sync::OnceCell;

use crate::access::{Access, AdminAccess, UserAccess};
use crate::error::{AppError, Result};
use crate::metrics::{Counters, DatabaseOperation};
use crate::password;
use crate::sign_in::SignInLimits;

/// How many audit events retention deletes per transaction: a backlog (a
/// retention turned on for an old deployment) is pruned in many short
/// transactions, each with its own checkpoint, never one long one.
pub const AUDIT_PRUNE_BATCH: i64 = 5000;

/// The service layer. Its parts are private: callers reach the data only
/// through the operations below.
pub struct App {
    pub(crate) store: Store,
    verifier: Arc<Verifier>,
    pub(crate) follower: Arc<Follower>,
    pub(crate) clock: Arc<dyn Clock>,
    token_prefix: TokenPrefix,
    /// The scopes this deployment offers (latchkey's own resources and the
    /// configuration file's).
    scopes: Arc<ScopeCatalog>,
    pub(crate) sign_in_limits: SignInLimits,
    /// A real Argon2id hash of a random password, checked for unknown
    /// emails so that a sign-in takes as long as for a wrong password.
    pub(crate) dummy_hash: OnceCell<Arc<password::PasswordHash>>,
    /// This process's name among the nodes sharing rate-limit counts:
    /// random, so a restarted node is a new one.
    node: i64,
    /// Failed database work, for `/metrics` ([`crate::metrics`]).
    pub(crate) counters: Counters,
}

/// Syncs a rate counter stays listed for after its last request, so that
/// its final count reaches the other nodes.
const RATE_IDLE_SYNCS: u32 = 8;

/// What a proposed token policy would do now.
#[derive(Debug, Default)]
pub struct PolicyEffect {
    pub would_deactivate: Vec<ApiToken>,
    pub would_delete: Vec<ApiToken>,
}

/// The account, admin and one-time password made on first run.
#[derive(Debug)]
pub struct Bootstrapped {
    pub subdomain: String,
    pub email: String,
    pub password: password::SecretString,
}

impl App {
    /// Opens and migrates the database, and loads the verifier.
    pub async fn open(database_url: &str, token_prefix: TokenPrefix) -> Result<App> {
        Self::open_with_clock(database_url, token_prefix, Arc::new(SystemClock)).await
    }

    /// [`App::open`] with "now" taken from `clock` (tests move time by hand).
    pub async fn open_with_clock(database_url: &str, token_prefix: TokenPrefix, clock: Arc<dyn Clock>) -> Result<App> {
        Self::open_configured(database_url, token_prefix, clock, ConnectOptions::default()).await
    }

    /// [`App::open`] connecting to PostgreSQL as `connect` says (the
    /// CLI's `--connect-timeout` and `--pool-size`).
    pub async fn open_with_connect(
        database_url: &str,
        token_prefix: TokenPrefix,
        connect: ConnectOptions,
    ) -> Result<App> {
        Self::open_configured(database_url, token_prefix, Arc::new(SystemClock), connect).await
    }

    async fn open_configured(
        database_url: &str,
        token_prefix: TokenPrefix,
        clock: Arc<dyn Clock>,
        connect: ConnectOptions,
    ) -> Result<App> {
        let store = latchkey_store::open_with(database_url, connect).await?;
        let verifier = Arc::new(Verifier::new());
        let follower = Arc::new(Follower::new(store.clone(), verifier.clone()));
        follower.resync().await?;
        Ok(App {
            store,
            verifier,
            follower,
            clock,
            token_prefix,
            scopes: Arc::new(ScopeCatalog::builtin()),
            sign_in_limits: SignInLimits::default(),
            dummy_hash: OnceCell::new(),
            node: rand::random::<i64>() & i64::MAX,
            counters: Counters::default(),
        })
    }

    /// Offers the resources of `catalog` (the configuration file's
    /// `[[resources]]` beside latchkey's own) instead of latchkey's own only.
    pub fn with_scope_catalog(mut self, catalog: ScopeCatalog) -> Self {
        self.scopes = Arc::new(catalog);
        self
    }

    /// The scopes this deployment offers, and which resource claims a path.
    pub fn scope_catalog(&self) -> &ScopeCatalog {
        &self.scopes
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    // -- keeping current, and health ---------------------------------------

    /// Applies committed changes to this process's verifier. A failure here
    /// does not undo the committed change; the poller retries.
    async fn refresh(&self) {
        if let Err(e) = self.follower.catch_up().await {
            tracing::warn!(error = %e, "applying a change to memory failed; the poller will retry");
        }
    }

    /// Follows the change log until `shutdown` resolves (the background task
    /// of a running server).
    pub fn follow(
        &self,
        poll: Duration,
        max_staleness: Duration,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.follower.clone().run(poll, max_staleness, shutdown)
    }

    /// Reloads the verifier from the database in full, as the follower does
    /// when it has missed changes (ARCHITECTURE.md); requests go on meanwhile.
    pub async fn resync(&self) -> Result<()> {
        Ok(self.follower.resync().await?)
    }

    /// Out of touch with the database for longer than `max`: what memory
    /// holds may miss a revocation.
    pub fn is_stale(&self, max: Duration) -> bool {
        self.follower.is_stale(max)
    }

    /// How long ago the change log was last read successfully.
    pub fn change_log_age(&self) -> Option<Duration> {
        self.follower.age()
    }

    /// How many tokens the verifier holds.
    pub fn token_count(&self) -> usize {
        self.verifier.token_count()
    }

    /// Whether legacy tokens are held, so that a checksum-less string is
    /// worth a hash and a lookup (README.md, "Migrating from Zendesk").
    pub fn accepts_legacy(&self) -> bool {
        self.verifier.accepts_legacy()
    }

    /// Drops change-log entries written before `before`.
    pub async fn prune_change_log(&self, before: Timestamp) -> Result<u64> {
        let pruned = self.store.prune_changes(before).await;
        self.counted(DatabaseOperation::Prune, pruned.map_err(AppError::from))
    }

    /// Forgets sign-in failures whose minute has passed.
    pub fn sweep_sign_in_limits(&self, now: Timestamp) {
        self.sign_in_limits.sweep(now);
    }

    // -- authentication ------------------------------------------------------

    /// The verification hot path: lends the identity behind `email` and the
    /// token `hash` to `f`. Touches no database and makes no capability.
    /// Given the original request's `target`, the token's scopes are
    /// checked too (403 naming the missing scope).
    pub fn verify_with<R>(
        &self,
        email: &str,
        hash: &TokenHash,
        now: Timestamp,
        client: IpAddr,
        target: Option<Target<'_>>,
        f: impl FnOnce(IdentityRef<'_>) -> R,
    ) -> std::result::Result<R, Refusal> {
        self.verifier.verify_with(email, hash, now, client, target, f)
    }

    /// Authenticates an API token for a request from `ip` to `target` (a
    /// request of latchkey's own API, whose scopes are checked too): the
    /// identity and the [`UserAccess`] its handlers act with.
    pub fn authenticate(
        &self,
        email: &str,
        hash: &TokenHash,
        now: Timestamp,
        ip: IpAddr,
        target: Target<'_>,
    ) -> std::result::Result<(Identity, UserAccess), Refusal> {
        self.verifier.verify_with(email, hash, now, ip, Some(target), |id| {
            (id.to_identity(), UserAccess::new(id.user, ip))
        })
    }

    /// Every account, for the operator (`latchkey account list`): below any
    /// one account, as `create_account` is.
    pub async fn accounts(&self) -> Result<Vec<Account>> {
        Ok(self.store.accounts().await?)
    }

    /// The operator's right to change the account at `subdomain` (the CLI).
    pub async fn operator(&self, subdomain: &str) -> Result<(AdminAccess, Account)> {
        let account = self
            .store
            .account_by_subdomain(subdomain)
            .await?
            .ok_or_else(|| AppError::NoSuchAccount(subdomain.to_owned()))?;
        Ok((AdminAccess::operator(account.id), account))
    }

    // -- accounts ------------------------------------------------------------

    /// Creates an account with its first admin, as the operator.
    pub async fn create_account(&self, new: NewAccount, admin: NewUser) -> Result<(Account, User)> {
        self.create_account_as(new, admin, &crate::access::operator_actor())
            .await
    }

    async fn create_account_as(&self, new: NewAccount, admin: NewUser, actor: &Actor) -> Result<(Account, User)> {
        let out = self.store.create_account(new, admin, actor, self.now()).await?;
        self.refresh().await;
        Ok(out)
    }

    /// On an empty database, creates the first account (plan `enterprise`,
    /// token access off) and its admin with a random password. A database
    /// that has an account is left alone.
    pub async fn bootstrap(&self, subdomain: &str, admin_email: &str) -> Result<Option<Bootstrapped>> {
        self.bootstrap_with(subdomain, admin_email, None).await
    }

    /// [`App::bootstrap`] with the admin's password given (the operator's
    /// `--bootstrap-admin-password-file`) instead of a random one; it must
    /// pass the password rules.
    pub async fn bootstrap_with(
        &self,
        subdomain: &str,
        admin_email: &str,
        given: Option<password::SecretString>,
    ) -> Result<Option<Bootstrapped>> {
        if self.store.account_count().await? > 0 {
            return Ok(None);
        }
        let subdomain = Subdomain::parse(subdomain)?;
        let email = Email::parse(admin_email)?;
        let secret = given.unwrap_or_else(password::generate);
        let hash = password::hash(secret.clone()).await?;
        let account = NewAccount {
            subdomain: subdomain.clone(),
            name: subdomain.as_str().to_owned(),
            plan: Plan::Enterprise,
            api_token_access: false,
        };
        let admin = NewUser {
            name: "Admin".to_owned(),
            email: email.clone(),
            role: Role::Admin,
            verified: true,
            password_hash: Some(hash),
        };
        self.create_account_as(account, admin, &Actor::system()).await?;
        Ok(Some(Bootstrapped {
            subdomain: subdomain.as_str().to_owned(),
            email: email.as_str().to_owned(),
            password: secret,
        }))
    }

    /// The subdomain of the only account, when there is exactly one (the
    /// sign-in page pre-fills it).
    pub async fn sole_subdomain(&self) -> Result<Option<Subdomain>> {
        if self.store.account_count().await? != 1 {
            return Ok(None);
        }
        Ok(self.store.accounts().await?.into_iter().next().map(|a| a.subdomain))
    }

    /// The account `access` acts in.
    pub async fn account(&self, access: &impl Access) -> Result<Account> {
        self.store
            .account(access.account_id())
            .await?
            .ok_or(AppError::Domain(DomainError::NotFound))
    }

    pub async fn update_account(&self, access: &AdminAccess, patch: &AccountPatch) -> Result<Account> {
        let out = self
            .store
            .update_account(access.account_id(), patch, access.actor(), self.now())
            .await?;
        self.refresh().await;
        Ok(out)
    }

    /// Deletes the account with everything of it, its audit log included
    /// (`latchkey account delete`, the operator's alone); every process
    /// stops authenticating its tokens. Returns how many users and tokens
    /// went with it.
    pub async fn delete_account(&self, access: &AdminAccess) -> Result<(usize, usize)> {
        let out = self
            .store
            .delete_account(access.account_id(), access.actor(), self.now())
            .await?;
        self.refresh().await;
        Ok(out)
    }

    /// The account's audit events in id order with their stored hashes
    /// (`latchkey audit verify`).
    pub async fn audit_chain(&self, access: &AdminAccess) -> Result<Vec<(AuditEvent, [u8; 32])>> {
        Ok(self.store.audit_chain(access.account_id()).await?)
    }

    /// Checks the account's audit chain from its newest checkpoint and
    /// against its recorded head, read in one snapshot (`latchkey audit
    /// verify`; README.md, "Audit retention").
    pub async fn verify_audit(&self, access: &AdminAccess) -> Result<Verdict> {
        let (chain, head) = self.store.audit_chain_and_head(access.account_id()).await?;
        Ok(audit::verify(&chain, head.as_ref()))
    }

    /// One page of the account's audit events, and whether more follow.
    pub async fn audit_page(
        &self,
        access: &AdminAccess,
        query: &AuditQuery,
        after: Option<AuditEventId>,
        before: Option<AuditEventId>,
        size: i64,
    ) -> Result<(Vec<AuditEvent>, bool)> {
        Ok(self
            .store
            .audit_page(access.account_id(), query, after, before, size)
            .await?)
    }

    /// Deleted users who appear as actors in the account's audit log, at
    /// most `limit`, in ascending id order (the Admin Center's Actor filter
    /// names them beside the live users).
    pub async fn deleted_audit_actors(&self, access: &AdminAccess, limit: i64) -> Result<Vec<User>> {
        Ok(self.store.deleted_audit_actors(access.account_id(), limit).await?)
    }

    pub async fn audit_event(&self, access: &AdminAccess, id: AuditEventId) -> Result<Option<AuditEvent>> {
        Ok(self.store.audit_event(access.account_id(), id).await?)
    }

    /// Every matching event, in batches (constant memory).
    pub fn audit_export(
        &self,
        access: &AdminAccess,
        query: &AuditQuery,
    ) -> BoxStream<'static, Result<Vec<AuditEvent>>> {
        self.store
            .audit_export(access.account_id(), query)
            .map(|batch| batch.map_err(AppError::from))
            .boxed()
    }

    // -- users ---------------------------------------------------------------

    pub async fn create_user(&self, access: &AdminAccess, new: NewUser) -> Result<User> {
        let out = self
            .store
            .create_user(access.account_id(), new, access.actor(), self.now())
            .await?;
        self.refresh().await;
        Ok(out)
    }

    pub async fn update_user(&self, access: &AdminAccess, id: UserId, patch: &UserPatch) -> Result<User> {
        let out = self
            .store
            .update_user(access.account_id(), id, patch, access.actor(), self.now())
            .await?;
        self.refresh().await;
        Ok(out)
    }

    /// Sets or replaces a user's web sign-in password (hashed here with
    /// Argon2id), in one store transaction audited as an update that names
    /// no secret ("password changed").
    pub async fn set_password(&self, access: &AdminAccess, id: UserId, password: password::SecretString) -> Result<()> {
        let hash = password::hash(password).await?;
        self.store
            .set_password(access.account_id(), id, &hash, access.actor(), self.now())
            .await?;
        self.refresh().await;
        Ok(())
    }

    pub async fn delete_user(&self, access: &AdminAccess, id: UserId) -> Result<()> {
        self.store
            .delete_user(access.account_id(), id, access.actor(), self.now())
            .await?;
        self.refresh().await;
        Ok(())
    }

    /// A user of the account, not deleted.
    pub async fn user(&self, access: &impl Access, id: UserId) -> Result<Option<User>> {
        Ok(self.user_including_deleted(access, id).await?.filter(|u| !u.deleted))
    }

    /// A user of the account by email (case-insensitive), not deleted.
    pub async fn user_by_email(&self, access: &impl Access, email: &str) -> Result<Option<User>> {
        let normalized = latchkey_core::user::normalize_email(email);
        Ok(self
            .store
            .user_credentials(access.account_id(), &normalized)
            .await?
            .map(|(user, _)| user))
    }

    /// A user of the account, deleted or not (to name who made a token).
    pub async fn user_including_deleted(&self, access: &impl Access, id: UserId) -> Result<Option<User>> {
        // The account is filtered in the query, not here: another account's
        // id then takes as long as a missing one (docs/api.md, "Account isolation").
        Ok(self.store.account_user(access.account_id(), id).await?)
    }

    /// The account's undeleted users, one page in ascending id order, and
    /// whether more follow in the paging direction.
    pub async fn users_page(&self, access: &impl Access, page: Page) -> Result<(Vec<User>, bool)> {
        Ok(self.store.users_page_of(access.account_id(), page).await?)
    }

    // -- tokens --------------------------------------------------------------

    /// Generates a token and stores its hash; the plain token is returned
    /// for the one response that shows it.
    /// `restrictions` are checked here: an expiry in the future, an assigned
    /// user of the account (scopes are parsed against [`Self::scope_catalog`]
    /// before they get here).
    pub async fn create_token(
        &self,
        access: &AdminAccess,
        description: Option<String>,
        restrictions: Restrictions,
    ) -> Result<(ApiToken, PlainToken)> {
        let plain = PlainToken::generate(&self.token_prefix);
        let new = NewToken {
            hash: plain.hash(),
            visible_token: plain.visible(),
            description,
            active: true,
            user_id: access.actor().id,
            restrictions,
            created_at: None,
            last_used: None,
            legacy: false,
        };
        let token = self
            .store
            .create_token(access.account_id(), new, access.actor(), self.now())
            .await?;
        self.refresh().await;
        Ok((token, plain))
    }

    pub async fn update_token(&self, access: &AdminAccess, id: TokenId, patch: &TokenPatch) -> Result<ApiToken> {
        let token = self
            .store
            .update_token(access.account_id(), id, patch, access.actor(), self.now())
            .await?;
        self.refresh().await;
        Ok(self.with_usage(token))
    }

    pub async fn delete_token(&self, access: &AdminAccess, id: TokenId) -> Result<()> {
        self.store
            .delete_token(access.account_id(), id, access.actor(), self.now())
            .await?;
        self.refresh().await;
        Ok(())
    }

    pub async fn import_tokens(&self, access: &AdminAccess, tokens: Vec<NewToken>) -> Result<Vec<ApiToken>> {
        let out = self
            .store
            .import_tokens(access.account_id(), tokens, access.actor(), self.now())
            .await?;
        self.refresh().await;
        Ok(out)
    }

    pub async fn token(&self, access: &AdminAccess, id: TokenId) -> Result<Option<ApiToken>> {
        Ok(self
            .store
            .token(access.account_id(), id)
            .await?
            .map(|t| self.with_usage(t)))
    }

    /// The account's tokens with who created each, newest first, in one
    /// statement (the Admin Center's token list).
    pub async fn tokens_with_creators(&self, access: &AdminAccess) -> Result<Vec<(ApiToken, TokenCreator)>> {
        Ok(self
            .store
            .tokens_with_creators(access.account_id())
            .await?
            .into_iter()
            .map(|(t, c)| (self.with_usage(t), c))
            .collect())
    }

    /// One token with who created it.
    pub async fn token_with_creator(
        &self,
        access: &AdminAccess,
        id: TokenId,
    ) -> Result<Option<(ApiToken, TokenCreator)>> {
        Ok(self
            .store
            .token_with_creator(access.account_id(), id)
            .await?
            .map(|(t, c)| (self.with_usage(t), c)))
    }

    /// The account's tokens, newest first, with usage this process has
    /// seen but not yet flushed.
    pub async fn tokens(&self, access: &AdminAccess) -> Result<Vec<ApiToken>> {
        Ok(self
            .store
            .tokens(access.account_id())
            .await?
            .into_iter()
            .map(|t| self.with_usage(t))
            .collect())
    }

    fn with_usage(&self, mut token: ApiToken) -> ApiToken {
        if let Some(seen) = self.verifier.last_used(token.id) {
            token.last_used = Some(token.last_used.map_or(seen, |stored| stored.max(seen)));
        }
        if token.previous_visible_token.is_some() {
            if let Some(seen) = self.verifier.previous_last_used(token.id) {
                token.previous_last_used = Some(token.previous_last_used.map_or(seen, |stored| stored.max(seen)));
            }
        }
        token
    }

    /// Rotates an active token: a new secret, returned this once, while the
    /// current one keeps working for `grace_secs` (0 to 604,800) seconds.
    pub async fn rotate_token(
        &self,
        access: &AdminAccess,
        id: TokenId,
        grace_secs: i64,
    ) -> Result<(ApiToken, PlainToken)> {
        let plain = PlainToken::generate(&self.token_prefix);
        let token = self
            .store
            .rotate_token(
                access.account_id(),
                id,
                plain.hash(),
                &plain.visible(),
                grace_secs,
                access.actor(),
                self.now(),
            )
            .await?;
        self.refresh().await;
        Ok((self.with_usage(token), plain))
    }

    // -- leaked tokens ------------------------------------------------------------

    /// Strings reported as leaked (by anyone: README.md, "Leaked tokens"):
    /// each one that is a token of this deployment (looked up from memory,
    /// after the checksum, so garbage costs no lookup) is deactivated and
    /// audited by `system` as `reported leaked`, with `found_at` when given.
    /// Answers, per string, whether it matched a token.
    pub async fn report_leaked<S: AsRef<str>>(&self, strings: &[S], found_at: Option<&str>) -> Result<Vec<bool>> {
        let now = self.now();
        let mut matched = Vec::with_capacity(strings.len());
        let mut changed = false;
        for s in strings {
            let s = s.as_ref();
            let hit = if has_valid_checksum(s) || (self.accepts_legacy() && is_legacy_shaped(s)) {
                self.verifier.find_secret(&TokenHash::of(s), now)
            } else {
                None
            };
            let Some((account_id, token_id)) = hit else {
                matched.push(false);
                continue;
            };
            let done = self
                .store
                .report_leaked(account_id, token_id, found_at, &Actor::system(), now)
                .await?;
            changed |= done.is_some();
            matched.push(done.is_some());
        }
        if changed {
            self.refresh().await;
        }
        Ok(matched)
    }

    // -- the token policy and its sweeper ----------------------------------------

    /// What `policy` would deactivate and delete in the account now,
    /// changing nothing (the preview an admin sees before saving).
    pub async fn preview_policy(&self, access: &AdminAccess, policy: &TokenPolicy) -> Result<PolicyEffect> {
        let now = self.now();
        let mut effect = PolicyEffect::default();
        for t in self.tokens(access).await? {
            match policy.sweep(&t, t.last_used, now) {
                Some(SweepAction::Deactivate { .. } | SweepAction::DeactivateLegacy) => effect.would_deactivate.push(t),
                Some(SweepAction::Delete { .. }) => effect.would_delete.push(t),
                None => {}
            }
        }
        Ok(effect)
    }

    /// One sweep under each account's policy (or `account`'s alone) as of
    /// `as_of` (default now), by actor `system`; with `dry_run`, what it
    /// would do. Returns `None` when another process holds the sweep lease.
    /// With `paced` (the server's background sweeper), it rests after each
    /// account as long as that account took, so that a large sweep takes at
    /// most half of a core from verification.
    pub async fn sweep(
        &self,
        account: Option<&AdminAccess>,
        as_of: Option<Timestamp>,
        dry_run: bool,
        paced: bool,
    ) -> Result<Option<Vec<(Account, ApiToken, SweepAction)>>> {
        let swept = self.sweep_once(account, as_of, dry_run, paced).await;
        self.counted(DatabaseOperation::Sweep, swept)
    }

    async fn sweep_once(
        &self,
        account: Option<&AdminAccess>,
        as_of: Option<Timestamp>,
        dry_run: bool,
        paced: bool,
    ) -> Result<Option<Vec<(Account, ApiToken, SweepAction)>>> {
        let Some(lease) = self.store.sweep_lease().await? else {
            return Ok(None);
        };
        let now = as_of.unwrap_or_else(|| self.now());
        let ids = match account {
            Some(a) => vec![a.account_id()],
            None => self.store.sweeping_accounts().await?,
        };
        let seen = |id: TokenId| self.verifier.last_used(id);
        let mut done = Vec::new();
        for id in ids {
            let started = std::time::Instant::now();
            let swept = self
                .store
                .sweep_account(id, &seen, dry_run, &Actor::system(), now)
                .await?;
            if paced {
                tokio::time::sleep(started.elapsed().min(Duration::from_millis(200))).await;
            }
            if swept.is_empty() {
                continue;
            }
            let Some(account) = self.store.account(id).await? else {
                continue;
            };
            done.extend(swept.into_iter().map(|(t, a)| (account.clone(), t, a)));
        }
        if !dry_run && !done.is_empty() {
            self.refresh().await;
        }
        lease.release().await?;
        Ok(Some(done))
    }

    /// Writes the `last_used` times gathered since the previous flush.
    /// Uses that cannot be written now are kept for the next flush.
    /// A failure counts towards `latchkey_last_used_flush_failures_total`.
    pub async fn flush_usage(&self) -> Result<usize> {
        let flushed = self.flush_usage_once().await;
        self.counted(DatabaseOperation::FlushUsage, flushed)
    }

    async fn flush_usage_once(&self) -> Result<usize> {
        let uses = self.verifier.drain_usage();
        if let Err(e) = self.store.record_token_use(&uses).await {
            self.verifier.requeue_usage(&uses);
            return Err(e.into());
        }
        let hourly = self.verifier.drain_hourly(self.now());
        if let Err(e) = self.store.add_usage(&hourly).await {
            self.verifier.requeue_hourly(&hourly);
            return Err(e.into());
        }
        Ok(uses.len())
    }

    /// A token's requests by hour over the last `days` days (README.md,
    /// "Usage"), as stored: every node's counts arrive with its next flush
    /// (`--flush-interval-secs`).
    pub async fn token_usage(&self, access: &AdminAccess, id: TokenId, days: i64) -> Result<Vec<HourUsage>> {
        if self.store.token(access.account_id(), id).await?.is_none() {
            return Err(DomainError::NotFound.into());
        }
        let now = self.now();
        let since = Timestamp::from_unix((now.unix() - days * 86_400).div_euclid(3600) * 3600);
        Ok(self.store.usage_since(id, since).await?)
    }

    /// Shares this node's rate-limit counts with the other nodes and takes
    /// theirs (ARCHITECTURE.md, "Rate limits across nodes"): one write and
    /// one read for every token limited and used lately, none otherwise.
    /// The counts are absolute, so a failed sync loses nothing the next
    /// one does not write.
    pub async fn sync_rate_limits(&self) -> Result<usize> {
        let now_ms = self.clock.now_millis();
        let reports = self.verifier.rate_reports(now_ms, RATE_IDLE_SYNCS);
        if reports.is_empty() {
            return Ok(0);
        }
        let shared = self.store.share_rate_counts(self.node, &reports, now_ms).await;
        let peers = self.counted(DatabaseOperation::ShareRateLimits, shared.map_err(AppError::from))?;
        self.verifier.apply_rate_peers(&peers, now_ms);
        Ok(reports.len())
    }

    /// Moves the estimate of the other nodes' admissions on to now,
    /// between syncs (memory only).
    pub fn refresh_rate_limits(&self) {
        self.verifier.refresh_rates(self.clock.now_millis());
    }

    /// Forgets rate-limit counts not written since `before` (a day is
    /// longer than any window).
    pub async fn prune_rate_counts(&self, before: Timestamp) -> Result<u64> {
        let pruned = self.store.prune_rate_counts(before.unix().saturating_mul(1000)).await;
        self.counted(DatabaseOperation::Prune, pruned.map_err(AppError::from))
    }

    /// Audit retention (README.md, "Audit retention"): prunes every
    /// account's events created before the start of the UTC day
    /// `retention_days` days ago, [`AUDIT_PRUNE_BATCH`] events per
    /// transaction, each with its checkpoint event. Safe to run on every
    /// node at once (each batch re-reads the chain under the account's
    /// lock). Returns how many events it pruned.
    pub async fn prune_audit(&self, retention_days: u32) -> Result<u64> {
        let now = self.now();
        let before = audit::retention_cutoff(now, retention_days);
        let mut pruned = 0;
        for id in self.store.accounts_with_audit_before(before).await? {
            loop {
                let n = self
                    .store
                    .prune_audit(id, before, retention_days, AUDIT_PRUNE_BATCH, now)
                    .await?;
                pruned += n;
                if n < AUDIT_PRUNE_BATCH as u64 {
                    break;
                }
            }
        }
        Ok(pruned)
    }

    /// Drops hourly usage older than `before` (the 90-day retention).
    pub async fn prune_usage(&self, before: Timestamp) -> Result<u64> {
        let pruned = self.store.prune_usage(before).await;
        self.counted(DatabaseOperation::Prune, pruned.map_err(AppError::from))
    }
}
