//! The in-memory verifier: everything authentication needs (token hash →
//! token, accounts and their settings, users by account and lower-cased
//! email), so that verifying a request costs no database round trip and no
//! write.
//!
//! Tokens, accounts and users share one concurrent map (`papaya`, lock-free
//! reads), so a verification takes one epoch guard for its three lookups.
//! A token's entry lives in the map itself, with what is counted per
//! request (its last use and its allowed requests this hour) inline, and
//! the rare restrictions behind one pointer: about 180 bytes a token with a
//! second map from token id to hash.
//! [`Verifier::verify_with`] lends the identity to a closure inside that
//! guard and clones nothing; [`Verifier::verify`] clones the two `Arc`s an
//! owned [`Identity`] carries. The locked instructions are then the floor of
//! a concurrent read, and they are few. A full
//! resynchronisation applies a fresh load in place and then drops what the
//! load no longer has, the way the change-log follower applies single
//! changes. `last_used` is kept here too: a request stores the time in an
//! atomic, and the first use of a token in a flush interval queues its id;
//! the server flushes the queue in one batch. An update replaces a token's
//! entry; what a request records in the old entry while the update lands
//! (the microseconds between reading it and swapping it) may be lost.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use papaya::Equivalent;
use strum::{Display, EnumIter, IntoStaticStr, VariantNames};

use crate::account::{Account, Plan, Subdomain};
use crate::id::{AccountId, TokenId, UserId};
use crate::rate_limit::{PeerCount, RateCounter, RateReport, RateStatus};
use crate::scope::{Scopes, Target};
use crate::time::Timestamp;
use crate::token::{Restrictions, TokenHash};
use crate::usage::{AllowedThisHour, HourUsage, HourlyUsage, UsageKind};
use crate::user::{normalize_email, User};

/// What the verifier keeps of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountEntry {
    pub id: AccountId,
    pub subdomain: Subdomain,
    pub name: String,
    pub plan: Plan,
    pub api_token_access: bool,
}

impl From<&Account> for AccountEntry {
    fn from(a: &Account) -> Self {
        AccountEntry {
            id: a.id,
            subdomain: a.subdomain.clone(),
            name: a.name.clone(),
            plan: a.plan,
            api_token_access: a.api_token_access,
        }
    }
}

/// What the verifier is given of a token: what authentication checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAuth {
    pub id: TokenId,
    pub account_id: AccountId,
    pub hash: TokenHash,
    pub active: bool,
    pub restrictions: Restrictions,
    /// After a rotation, the previous secret while its grace period runs.
    pub previous: Option<PreviousSecret>,
    /// The current or the previous secret is in another system's format,
    /// without a latchkey checksum (README.md, "Migrating from Zendesk").
    pub legacy: bool,
}

/// A rotated token's previous secret: it authenticates until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviousSecret {
    pub hash: TokenHash,
    pub until: Timestamp,
}

/// What the verifier keeps of one secret of a token (its current one, or
/// the previous one during a rotation's grace period), under the secret's
/// hash. Most tokens have no restriction and no previous secret, so those
/// sit behind one pointer that is null for them.
#[derive(Debug)]
struct TokenEntry {
    id: TokenId,
    account_id: AccountId,
    active: bool,
    /// Queued for the next flush of `last_used`.
    queued: AtomicBool,
    /// This secret's latest use seen by this process (unix seconds; 0:
    /// none). A token's `last_used` is the later of its two secrets'.
    last_used: AtomicI64,
    allowed: AllowedThisHour,
    rare: Option<Box<Rare>>,
}

/// The parts of a token entry that most tokens do not have.
#[derive(Debug, Default)]
struct Rare {
    restrictions: Restrictions,
    /// With a rate limit: this node's count, kept across edits of the token
    /// and shared by its current and previous secrets.
    rate: Option<Arc<RateCounter>>,
    /// On a current secret: the previous secret's hash, also in the lookup
    /// map until the next change of this token.
    previous_hash: Option<TokenHash>,
    /// On a previous secret's entry: the end of its grace period.
    grace_until: Option<Timestamp>,
}

impl Rare {
    fn is_empty(&self) -> bool {
        self.restrictions == Restrictions::default() && self.previous_hash.is_none() && self.grace_until.is_none()
    }
}

impl TokenEntry {
    /// The entry of the current secret, and of the previous one if any.
    /// `rate` is the token's counter so far, if it had one.
    fn new(auth: TokenAuth, rate: Option<Arc<RateCounter>>) -> (Self, Option<Self>) {
        let rate = auth.restrictions.rate_limit.map(|limit| match rate {
            Some(counter) => {
                counter.set_limit(limit);
                counter
            }
            None => Arc::new(RateCounter::new(limit)),
        });
        let entry = |rare: Option<Box<Rare>>| TokenEntry {
            id: auth.id,
            account_id: auth.account_id,
            active: auth.active,
            queued: AtomicBool::new(false),
            last_used: AtomicI64::new(0),
            allowed: AllowedThisHour::default(),
            rare,
        };
        let previous = auth.previous.map(|p| {
            entry(Some(Box::new(Rare {
                restrictions: auth.restrictions.clone(),
                rate: rate.clone(),
                previous_hash: None,
                grace_until: Some(p.until),
            })))
        });
        let rare = Rare {
            restrictions: auth.restrictions,
            rate,
            previous_hash: auth.previous.map(|p| p.hash),
            grace_until: None,
        };
        let current = entry((!rare.is_empty()).then(|| Box::new(rare)));
        (current, previous)
    }

    fn previous_hash(&self) -> Option<&TokenHash> {
        self.rare.as_ref()?.previous_hash.as_ref()
    }

    fn rate_counter(&self) -> Option<&Arc<RateCounter>> {
        self.rare.as_ref()?.rate.as_ref()
    }
}

/// A key of the lookup map. Hashing is written out (a tag byte, then the
/// fields) so that the borrowed query types below hash identically and a
/// lookup builds no key: no allocation per request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Token(TokenHash),
    Account(AccountId),
    /// Account id and lower-cased email.
    User(AccountId, Box<str>),
}

fn hash_token<H: Hasher>(hash: &TokenHash, h: &mut H) {
    h.write_u8(0);
    h.write(&hash.0);
}

fn hash_account<H: Hasher>(id: AccountId, h: &mut H) {
    h.write_u8(1);
    h.write_i64(id.get());
}

fn hash_user<H: Hasher>(account_id: AccountId, email: &str, h: &mut H) {
    h.write_u8(2);
    h.write_i64(account_id.get());
    h.write(email.as_bytes());
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        match self {
            Key::Token(t) => hash_token(t, h),
            Key::Account(id) => hash_account(*id, h),
            Key::User(account_id, email) => hash_user(*account_id, email, h),
        }
    }
}

struct TokenQ<'a>(&'a TokenHash);
struct AccountQ(AccountId);
/// Account id and an already lower-cased email.
struct UserQ<'a>(AccountId, &'a str);

impl Hash for TokenQ<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        hash_token(self.0, h)
    }
}

impl Equivalent<Key> for TokenQ<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        matches!(key, Key::Token(t) if t == self.0)
    }
}

impl Hash for AccountQ {
    fn hash<H: Hasher>(&self, h: &mut H) {
        hash_account(self.0, h)
    }
}

impl Equivalent<Key> for AccountQ {
    fn equivalent(&self, key: &Key) -> bool {
        matches!(key, Key::Account(id) if *id == self.0)
    }
}

impl Hash for UserQ<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        hash_user(self.0, self.1, h)
    }
}

impl Equivalent<Key> for UserQ<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        matches!(key, Key::User(id, email) if *id == self.0 && **email == *self.1)
    }
}

#[derive(Debug)]
enum Entry {
    Token(TokenEntry),
    Account(Arc<AccountEntry>),
    User(Arc<User>),
}

type LookupRef<'m, G> = papaya::HashMapRef<'m, Key, Entry, foldhash::fast::RandomState, G>;
type HashesRef<'m, G> = papaya::HashMapRef<'m, TokenId, TokenHash, foldhash::fast::RandomState, G>;

/// The entry under `hash`, if it is a token's.
fn token_in<'g, G: papaya::Guard>(lookup: &'g LookupRef<'_, G>, hash: &TokenHash) -> Option<&'g TokenEntry> {
    match lookup.get(&TokenQ(hash)) {
        Some(Entry::Token(token)) => Some(token),
        _ => None,
    }
}

/// The entries of the token whose current secret hashes to `hash`: its
/// current secret's and, during a rotation's grace, its previous one's.
fn secrets_of_hash<'g, G: papaya::Guard>(
    lookup: &'g LookupRef<'_, G>,
    hash: &TokenHash,
) -> Option<(&'g TokenEntry, Option<&'g TokenEntry>)> {
    let current = token_in(lookup, hash)?;
    Some((current, current.previous_hash().and_then(|h| token_in(lookup, h))))
}

/// [`secrets_of_hash`] by token id.
fn secrets_of<'g, G: papaya::Guard>(
    lookup: &'g LookupRef<'_, G>,
    hashes: &HashesRef<'_, G>,
    id: TokenId,
) -> Option<(&'g TokenEntry, Option<&'g TokenEntry>)> {
    secrets_of_hash(lookup, hashes.get(&id)?)
}

/// foldhash, seeded per process, instead of SipHash: hashing a key is most
/// of a lookup with SipHash, and the random seed still keeps colliding keys
/// out of reach of anyone who cannot read this process's memory (an
/// imported token hash is chosen by an admin, so every byte is hashed).
type Map<K, V> = papaya::HashMap<K, V, foldhash::fast::RandomState>;

/// The client address [`Verifier::verify`] checks with, for callers that
/// authenticate without a request: the unspecified IPv6 address `::`, which
/// only an allowlist holding `::/0` lets through.
pub const ANY_ADDRESS: IpAddr = IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);

/// A token's uses since the last flush: its latest use, and the latest use
/// of its previous secret if that was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenUse {
    pub id: TokenId,
    pub last_used: Timestamp,
    pub previous_last_used: Option<Timestamp>,
}

/// Who a verified request runs as.
#[derive(Debug, Clone)]
pub struct Identity {
    pub account: Arc<AccountEntry>,
    pub user: Arc<User>,
    pub token_id: TokenId,
    /// The token's rate limit as this request left it; `None`: no limit.
    pub rate: Option<RateStatus>,
}

/// Who a verified request runs as, borrowed from the verifier: valid only
/// inside the closure given to [`Verifier::verify_with`], and free to read
/// (no reference count is touched).
#[derive(Debug, Clone, Copy)]
pub struct IdentityRef<'a> {
    pub account: &'a AccountEntry,
    pub user: &'a User,
    pub token_id: TokenId,
    /// `None`: the token is unrestricted (the user's full access).
    pub scopes: Option<&'a Scopes>,
    /// The token's rate limit as this request left it; `None`: no limit.
    pub rate: Option<RateStatus>,
    /// The entries themselves, for [`IdentityRef::to_identity`].
    shared: (&'a Arc<AccountEntry>, &'a Arc<User>),
}

impl IdentityRef<'_> {
    /// The owned [`Identity`], for use after the verification: clones the
    /// two `Arc`s, not what they hold.
    pub fn to_identity(self) -> Identity {
        Identity {
            account: self.shared.0.clone(),
            user: self.shared.1.clone(),
            token_id: self.token_id,
            rate: self.rate,
        }
    }
}

/// Why a verification failed. Never shown to the caller (every reason gets
/// the same 401); kept for metrics, whose `result` label spells it in
/// snake case (`unknown_token`; `VARIANTS` lists them all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, IntoStaticStr, VariantNames, EnumIter, Display)]
#[strum(serialize_all = "snake_case")]
pub enum Denial {
    UnknownToken,
    TokenInactive,
    TokenExpired,
    AccessDisabled,
    UnknownUser,
    UserCannotAuthenticate,
    /// The token is assigned to another user.
    NotAssignedUser,
    /// A rotated token's previous secret, after its grace period.
    RotatedOut,
    /// The client's address is outside the token's allowlist.
    IpNotAllowed,
    /// Over the token's rate limit: authenticated, but refused with 429,
    /// not 401 (only [`Verifier::verify`] reports it as a denial).
    RateLimited,
}

impl Denial {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Why a request was refused: not authenticated (the identical 401,
/// whatever the reason), or authenticated with a token that lacks the
/// scope the request needs (403 naming it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Unauthenticated(Denial),
    /// The scope the request needs, as `Target::required_scope` spells it,
    /// and the token's rate limit if it has one.
    MissingScope {
        scope: String,
        rate: Option<RateStatus>,
    },
    /// Over the token's rate limit (429 with `Retry-After`).
    RateLimited(RateStatus),
}

impl From<Denial> for Refusal {
    fn from(d: Denial) -> Self {
        Refusal::Unauthenticated(d)
    }
}

/// The verifier. Cheap to share behind an `Arc`.
#[derive(Default)]
pub struct Verifier {
    /// Tokens by hash, accounts by id, users by account and email: all that
    /// a verification reads.
    lookup: Map<Key, Entry>,
    /// Each token's current secret: the way from a token id to its entry.
    hashes: Map<TokenId, TokenHash>,
    users_by_id: Map<UserId, Arc<User>>,
    usage_queue: Mutex<Vec<TokenId>>,
    /// Requests per token and hour, allowed and refused by reason.
    hourly: HourlyUsage,
    /// Rate counters checked lately, reported to the other nodes at each
    /// sync until they go idle.
    rate_active: Mutex<Vec<(TokenId, Arc<RateCounter>)>>,
    /// The legacy tokens held, and whether there is any: only then is a
    /// string without a latchkey checksum worth a hash and a lookup.
    legacy: Mutex<HashSet<TokenId>>,
    accepts_legacy: AtomicBool,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("tokens", &self.token_count()).finish()
    }
}

/// Calls `f` with `normalize_email(email)`, on the stack when the email is
/// ASCII (lower-casing ASCII is all Unicode lower-casing does to it), so a
/// request costs no allocation.
fn with_normalized<R>(email: &str, f: impl FnOnce(&str) -> R) -> R {
    const MAX: usize = 256;
    let bytes = email.as_bytes();
    // One pass: already lower-case ASCII (the common case) needs no copy.
    if bytes.len() <= MAX && bytes.iter().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        return f(email);
    }
    if email.is_ascii() && bytes.len() <= MAX {
        let mut buf = [0u8; MAX];
        let lower = &mut buf[..bytes.len()];
        lower.copy_from_slice(bytes);
        lower.make_ascii_lowercase();
        if let Ok(lower) = std::str::from_utf8(lower) {
            return f(lower);
        }
    }
    f(&normalize_email(email))
}

fn user_key(user: &User) -> Key {
    Key::User(user.account_id, user.email.normalized().into_boxed_str())
}

impl Verifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks `{email}/token:{token}` credentials, given the token's hash
    /// (the Basic form docs/api.md describes; README.md's walk-through uses
    /// it). On success, records the use for `last_used`.
    /// Authentication alone, no request to check scopes against.
    pub fn verify(&self, email: &str, hash: &TokenHash, now: Timestamp) -> Result<Identity, Denial> {
        self.verify_with(email, hash, now, ANY_ADDRESS, None, |id| id.to_identity())
            .map_err(|r| match r {
                Refusal::Unauthenticated(d) => d,
                // No target, no scope check.
                Refusal::MissingScope { .. } => Denial::UnknownToken,
                Refusal::RateLimited(_) => Denial::RateLimited,
            })
    }

    /// Checks the credentials and, given the request's `target`, the
    /// token's scopes; on success calls `f` with the identity borrowed from
    /// the verifier and returns what `f` returns. `f` runs inside the map's
    /// read guard, so it should be short (build a response's headers, read
    /// a role); it clones no `Arc`.
    ///
    /// Every check runs here, from memory: the token exists and is active,
    /// has not expired (to the second), its account has token access on, the
    /// email names a user who may authenticate and, for an assigned token,
    /// is that user; then the scopes cover the target.
    pub fn verify_with<R>(
        &self,
        email: &str,
        hash: &TokenHash,
        now: Timestamp,
        client: IpAddr,
        target: Option<Target<'_>>,
        f: impl FnOnce(IdentityRef<'_>) -> R,
    ) -> Result<R, Refusal> {
        let lookup = self.lookup.pin();
        let Some(Entry::Token(token)) = lookup.get(&TokenQ(hash)) else {
            return Err(Denial::UnknownToken.into());
        };
        let refuse = |kind: UsageKind, denial: Denial| {
            self.hourly.count(token.id, now, kind);
            Err(Refusal::Unauthenticated(denial))
        };
        if !token.active {
            return refuse(UsageKind::Inactive, Denial::TokenInactive);
        }
        let rare = token.rare.as_deref();
        if let Some(rare) = rare {
            if rare.grace_until.is_some_and(|until| until <= now) {
                return refuse(UsageKind::Expired, Denial::RotatedOut);
            }
            if rare.restrictions.expires_at.is_some_and(|at| at <= now) {
                return refuse(UsageKind::Expired, Denial::TokenExpired);
            }
            if rare
                .restrictions
                .allowed_ips
                .as_ref()
                .is_some_and(|a| !a.allows(client))
            {
                return refuse(UsageKind::IpNotAllowed, Denial::IpNotAllowed);
            }
        }
        let restrictions = rare.map(|r| &r.restrictions);
        let Some(Entry::Account(account)) = lookup.get(&AccountQ(token.account_id)) else {
            return Err(Denial::UnknownToken.into());
        };
        if !account.api_token_access {
            return Err(Denial::AccessDisabled.into());
        }
        let user = with_normalized(email, |email| match lookup.get(&UserQ(account.id, email)) {
            Some(Entry::User(user)) => Some(user),
            _ => None,
        })
        .ok_or(Denial::UnknownUser)?;
        if !user.can_authenticate() {
            return Err(Denial::UserCannotAuthenticate.into());
        }
        if let Some(Restrictions {
            assigned_user_id: Some(assigned),
            ..
        }) = restrictions
        {
            if *assigned != user.id {
                return Err(Denial::NotAssignedUser.into());
            }
        }
        // Every authenticated request counts against the limit, whatever
        // its scopes make of it (README.md, "IP allowlists and rate limits"),
        // and as a use of the token.
        let rate = match (token.rate_counter(), restrictions.and_then(|r| r.rate_limit)) {
            (Some(counter), Some(limit)) => {
                let checked = counter.check(limit, now);
                if checked.newly_active {
                    if let Ok(mut active) = self.rate_active.lock() {
                        active.push((token.id, counter.clone()));
                    }
                }
                if !checked.status.admitted {
                    self.hourly.count(token.id, now, UsageKind::RateLimited);
                    self.record_use(token, now);
                    return Err(Refusal::RateLimited(checked.status));
                }
                Some(checked.status)
            }
            _ => None,
        };
        let scopes = restrictions.and_then(|r| r.scopes.as_ref());
        if let Some(target) = target {
            if !target.allowed(scopes) {
                self.hourly.count(token.id, now, UsageKind::Scope);
                self.record_use(token, now);
                return Err(Refusal::MissingScope {
                    scope: target.required_scope(),
                    rate,
                });
            }
        }
        // Counted before the use is recorded: recording queues the token,
        // and the flush that takes the queue takes this count too.
        if let Some((hour, n)) = token.allowed.count(now) {
            self.hourly.add(token.id, hour, UsageKind::Allowed, n);
        }
        self.record_use(token, now);
        Ok(f(IdentityRef {
            account,
            user,
            token_id: token.id,
            scopes,
            rate,
            shared: (account, user),
        }))
    }

    fn record_use(&self, token: &TokenEntry, now: Timestamp) {
        let now = now.unix();
        if token.last_used.load(Ordering::Relaxed) < now {
            token.last_used.fetch_max(now, Ordering::AcqRel);
        }
        if !token.queued.load(Ordering::Relaxed) && !token.queued.swap(true, Ordering::AcqRel) {
            if let Ok(mut queue) = self.usage_queue.lock() {
                queue.push(token.id);
            }
        }
    }

    /// Moves an entry's allowed count into the hourly map.
    fn hand_out_allowed(&self, token: &TokenEntry) {
        if let Some((hour, n)) = token.allowed.take() {
            self.hourly.add(token.id, hour, UsageKind::Allowed, n);
        }
    }

    /// Takes the tokens used since the last call with their latest use, for
    /// one batched write; their allowed requests move to the counts that
    /// [`Verifier::drain_hourly`] hands out, so call that one after.
    pub fn drain_usage(&self) -> Vec<TokenUse> {
        let mut ids = match self.usage_queue.lock() {
            Ok(mut q) => std::mem::take(&mut *q),
            Err(_) => return Vec::new(),
        };
        ids.sort_unstable();
        ids.dedup();
        let lookup = self.lookup.pin();
        let hashes = self.hashes.pin();
        ids.into_iter()
            .filter_map(|id| {
                let (current, previous) = secrets_of(&lookup, &hashes, id)?;
                let mut last_used = [0; 2];
                for (slot, entry) in last_used.iter_mut().zip([Some(current), previous]) {
                    if let Some(entry) = entry {
                        entry.queued.store(false, Ordering::Release);
                        self.hand_out_allowed(entry);
                        *slot = entry.last_used.load(Ordering::Acquire);
                    }
                }
                Some(TokenUse {
                    id,
                    last_used: Timestamp::from_unix(last_used[0].max(last_used[1])),
                    previous_last_used: (last_used[1] > 0).then_some(Timestamp::from_unix(last_used[1])),
                })
            })
            .collect()
    }

    /// Takes the hourly counts gathered since the last call, for one batched
    /// write beside `last_used`; hours before `now`'s leave memory.
    pub fn drain_hourly(&self, now: Timestamp) -> Vec<HourUsage> {
        self.hourly.drain(now)
    }

    /// This node's rate counts for the sync at `now_ms` (milliseconds
    /// since the epoch), one per counter checked lately; a counter idle for
    /// `idle_after` syncs gives its last report and leaves the list.
    pub fn rate_reports(&self, now_ms: i64, idle_after: u32) -> Vec<RateReport> {
        let Ok(mut active) = self.rate_active.lock() else {
            return Vec::new();
        };
        let mut reports = Vec::with_capacity(active.len());
        active.retain(|(id, counter)| {
            let (report, keep) = counter.report(*id, now_ms, idle_after);
            reports.push(report);
            keep
        });
        reports
    }

    /// Hands each listed counter the other nodes' latest reports for its
    /// token (`peers`: every other node's row for the reported tokens).
    pub fn apply_rate_peers(&self, peers: &[PeerCount], now_ms: i64) {
        let counters: Vec<(TokenId, Arc<RateCounter>)> = match self.rate_active.lock() {
            Ok(active) => active.clone(),
            Err(_) => return,
        };
        let mut by_token: std::collections::HashMap<TokenId, Vec<PeerCount>> = std::collections::HashMap::new();
        for p in peers {
            by_token.entry(p.report.token_id).or_default().push(*p);
        }
        for (id, counter) in counters {
            counter.set_peers(by_token.remove(&id).unwrap_or_default(), now_ms);
        }
    }

    /// Moves every listed counter's estimate of the other nodes on to
    /// `now_ms`, between syncs.
    pub fn refresh_rates(&self, now_ms: i64) {
        let counters: Vec<Arc<RateCounter>> = match self.rate_active.lock() {
            Ok(active) => active.iter().map(|(_, c)| c.clone()).collect(),
            Err(_) => return,
        };
        for counter in counters {
            counter.refresh(now_ms);
        }
    }

    /// Puts back hourly counts that could not be written.
    pub fn requeue_hourly(&self, rows: &[HourUsage]) {
        self.hourly.requeue(rows);
    }

    /// Puts back uses that [`Verifier::drain_usage`] handed out but could not
    /// be written, so the next flush writes them.
    pub fn requeue_usage(&self, uses: &[TokenUse]) {
        let lookup = self.lookup.pin();
        let hashes = self.hashes.pin();
        for TokenUse {
            id,
            last_used: at,
            previous_last_used,
        } in uses
        {
            let Some((current, previous)) = secrets_of(&lookup, &hashes, *id) else {
                continue;
            };
            current.last_used.fetch_max(at.unix(), Ordering::AcqRel);
            if let (Some(entry), Some(at)) = (previous, previous_last_used) {
                entry.last_used.fetch_max(at.unix(), Ordering::AcqRel);
            }
            if !current.queued.swap(true, Ordering::AcqRel) {
                if let Ok(mut queue) = self.usage_queue.lock() {
                    queue.push(*id);
                }
            }
        }
    }

    /// A token's secrets' latest uses this process has seen: the current
    /// one's and the previous one's, 0 for none.
    fn uses_of(&self, token_id: TokenId) -> Option<(i64, i64)> {
        let lookup = self.lookup.pin();
        let hashes = self.hashes.pin();
        let (current, previous) = secrets_of(&lookup, &hashes, token_id)?;
        let previous = previous.map_or(0, |e| e.last_used.load(Ordering::Acquire));
        Some((current.last_used.load(Ordering::Acquire), previous))
    }

    /// The last use of a rotated token's previous secret this process has
    /// seen since the rotation.
    pub fn previous_last_used(&self, token_id: TokenId) -> Option<Timestamp> {
        let (_, previous) = self.uses_of(token_id)?;
        (previous > 0).then_some(Timestamp::from_unix(previous))
    }

    /// The last use this process has seen of a token (either secret), which
    /// may be newer than the stored one until the next flush.
    pub fn last_used(&self, token_id: TokenId) -> Option<Timestamp> {
        let (current, previous) = self.uses_of(token_id)?;
        let t = current.max(previous);
        (t > 0).then_some(Timestamp::from_unix(t))
    }

    /// The token whose secret hashes to `hash` (its current secret, or a
    /// previous one still in its grace at `now`), with its account: what a
    /// leak report matches, from memory.
    pub fn find_secret(&self, hash: &TokenHash, now: Timestamp) -> Option<(AccountId, TokenId)> {
        let lookup = self.lookup.pin();
        let Some(Entry::Token(token)) = lookup.get(&TokenQ(hash)) else {
            return None;
        };
        let over = token
            .rare
            .as_ref()
            .and_then(|r| r.grace_until)
            .is_some_and(|until| until <= now);
        (!over).then_some((token.account_id, token.id))
    }

    pub fn account(&self, id: AccountId) -> Option<Arc<AccountEntry>> {
        match self.lookup.pin().get(&AccountQ(id)) {
            Some(Entry::Account(a)) => Some(a.clone()),
            _ => None,
        }
    }

    pub fn user(&self, id: UserId) -> Option<Arc<User>> {
        self.users_by_id.pin().get(&id).cloned()
    }

    pub fn token_count(&self) -> usize {
        self.hashes.len()
    }

    /// Whether any legacy token is held (README.md, "Migrating from
    /// Zendesk"): while none is, a string without a latchkey checksum is
    /// refused before it is hashed.
    pub fn accepts_legacy(&self) -> bool {
        self.accepts_legacy.load(Ordering::Relaxed)
    }

    /// Keeps the set of legacy tokens in step with a batch of upserts
    /// (`true`: legacy) or removals (`false`). Deployments without
    /// legacy tokens never take the lock.
    fn track_legacy(&self, changes: impl IntoIterator<Item = (TokenId, bool)> + Clone) {
        if !self.accepts_legacy() && !changes.clone().into_iter().any(|(_, legacy)| legacy) {
            return;
        }
        let Ok(mut set) = self.legacy.lock() else {
            return;
        };
        for (id, legacy) in changes {
            if legacy {
                set.insert(id);
            } else {
                set.remove(&id);
            }
        }
        self.accepts_legacy.store(!set.is_empty(), Ordering::Relaxed);
    }

    pub fn upsert_account(&self, account: AccountEntry) {
        self.lookup
            .pin()
            .insert(Key::Account(account.id), Entry::Account(Arc::new(account)));
    }

    pub fn remove_account(&self, id: AccountId) {
        self.lookup.pin().remove(&AccountQ(id));
    }

    /// Adds or replaces a user; a deleted user is removed. The new entry
    /// replaces the old one in a single step, so a verification running
    /// meanwhile finds one or the other, never neither; only an email change
    /// leaves an old key to drop, and it is dropped after the new one is in.
    pub fn upsert_user(&self, user: User) {
        if user.deleted {
            self.remove_user(user.id);
            return;
        }
        let user = Arc::new(user);
        let key = user_key(&user);
        let lookup = self.lookup.pin();
        lookup.insert(key.clone(), Entry::User(user.clone()));
        let by_id = self.users_by_id.pin();
        if let Some(old) = by_id.insert(user.id, user.clone()) {
            let old_key = user_key(old);
            if old_key != key {
                // Only the entry of this user: the address may since have
                // gone to someone else.
                let _ = lookup.remove_if(&old_key, |_, e| matches!(e, Entry::User(u) if u.id == user.id));
            }
        }
    }

    pub fn remove_user(&self, id: UserId) {
        let removed = self.users_by_id.pin().remove(&id).cloned();
        if let Some(old) = removed {
            let _ = self
                .lookup
                .pin()
                .remove_if(&user_key(&old), |_, e| matches!(e, Entry::User(u) if u.id == id));
        }
    }

    /// Adds or replaces a token, keeping what this process knows of its use.
    pub fn upsert_token(&self, auth: TokenAuth) {
        self.upsert_tokens([auth]);
    }

    /// [`Self::upsert_token`] for many, under one pair of guards per batch.
    /// Takes the tokens by value, so a load's batches are moved in, not
    /// copied.
    fn upsert_tokens(&self, batch: impl IntoIterator<Item = TokenAuth>) {
        let lookup = self.lookup.pin();
        let hashes = self.hashes.pin();
        let mut legacy = Vec::new();
        for auth in batch {
            legacy.push((auth.id, auth.legacy));
            self.upsert_token_in(&lookup, &hashes, auth);
        }
        self.track_legacy(legacy);
    }

    fn upsert_token_in<G: papaya::Guard>(&self, lookup: &LookupRef<'_, G>, hashes: &HashesRef<'_, G>, auth: TokenAuth) {
        let old_hash = hashes.get(&auth.id).copied();
        let old = old_hash.and_then(|h| secrets_of_hash(lookup, &h));
        let old_previous_hash = old.and_then(|(current, _)| current.previous_hash().copied());
        let rate = old.and_then(|(current, _)| current.rate_counter().cloned());
        let (id, hash, previous_hash) = (auth.id, auth.hash, auth.previous.map(|p| p.hash));
        let (current, previous) = TokenEntry::new(auth, rate);
        // Uses so far carry over: the token's latest use to its current
        // secret, and a previous secret's own uses while it stays the
        // previous one (a new rotation starts them again).
        if let Some((old_current, old_previous)) = old {
            let old_previous_used = old_previous.map_or(0, |e| e.last_used.load(Ordering::Acquire));
            let used = old_current.last_used.load(Ordering::Acquire).max(old_previous_used);
            current.last_used.store(used, Ordering::Relaxed);
            if let Some(previous) = &previous {
                if previous_hash == old_previous_hash {
                    previous.last_used.store(old_previous_used, Ordering::Relaxed);
                }
            }
        }
        // New keys first, then the old ones that are gone: a request finds
        // one entry or the other, never neither. Each replaced entry hands
        // its allowed count on.
        let mut replaced = Vec::with_capacity(2);
        replaced.extend(lookup.insert(Key::Token(hash), Entry::Token(current)));
        if let (Some(previous_hash), Some(previous)) = (previous_hash, previous) {
            replaced.extend(lookup.insert(Key::Token(previous_hash), Entry::Token(previous)));
        }
        hashes.insert(id, hash);
        for old_key in [old_hash, old_previous_hash].into_iter().flatten() {
            if old_key != hash && Some(old_key) != previous_hash {
                replaced.extend(lookup.remove(&TokenQ(&old_key)));
            }
        }
        for entry in replaced {
            if let Entry::Token(token) = entry {
                self.hand_out_allowed(token);
            }
        }
    }

    pub fn remove_token(&self, id: TokenId) {
        self.track_legacy([(id, false)]);
        let hashes = self.hashes.pin();
        let Some(hash) = hashes.remove(&id).copied() else {
            return;
        };
        let lookup = self.lookup.pin();
        let Some(Entry::Token(current)) = lookup.remove(&TokenQ(&hash)) else {
            return;
        };
        self.hand_out_allowed(current);
        if let Some(Entry::Token(previous)) = current.previous_hash().and_then(|h| lookup.remove(&TokenQ(h))) {
            self.hand_out_allowed(previous);
        }
    }

    /// Brings everything in line with a freshly loaded snapshot, keeping
    /// usage not yet flushed: each record is applied as a single change
    /// would be, then whatever the snapshot no longer holds is removed.
    /// Requests go on meanwhile and see each record either as it was or as
    /// it is, never a record half applied.
    pub fn replace_all(&self, snapshot: Snapshot) {
        let first_load = self.lookup.is_empty();
        let kept = (!first_load).then(|| Kept {
            accounts: snapshot.accounts.iter().map(|a| a.id).collect(),
            users: snapshot.users.iter().filter(|u| !u.deleted).map(|u| u.id).collect(),
            tokens: snapshot.tokens.iter().map(|t| t.id).collect(),
        });
        if first_load {
            self.reserve(snapshot.accounts.len(), snapshot.users.len(), snapshot.tokens.len());
        }
        for account in snapshot.accounts {
            self.upsert_account(account);
        }
        for user in snapshot.users {
            self.upsert_user(user);
        }
        self.load_tokens(&snapshot.tokens);
        if let Some(kept) = kept {
            self.retain_only(&kept);
        }
    }

    /// Makes room for a first load at once, rather than growing the maps
    /// (and copying them) step by step.
    fn reserve(&self, accounts: usize, users: usize, tokens: usize) {
        self.lookup.pin().reserve(accounts + users + tokens);
        self.hashes.pin().reserve(tokens);
        self.users_by_id.pin().reserve(users);
    }

    /// Drops every token, user and account that a full load did not hold.
    fn retain_only(&self, kept: &Kept) {
        let token_ids = self.hashes.pin().keys().copied().collect();
        for id in gone(token_ids, &kept.tokens) {
            self.remove_token(id);
        }
        let user_ids = self.users_by_id.pin().keys().copied().collect();
        for id in gone(user_ids, &kept.users) {
            self.remove_user(id);
        }
        let account_ids = self
            .lookup
            .pin()
            .keys()
            .filter_map(|k| match k {
                Key::Account(id) => Some(*id),
                _ => None,
            })
            .collect();
        for id in gone(account_ids, &kept.accounts) {
            self.remove_account(id);
        }
    }
}

/// The ids a full load held.
#[derive(Debug, Default)]
struct Kept {
    accounts: HashSet<AccountId>,
    users: HashSet<UserId>,
    tokens: HashSet<TokenId>,
}

/// A full load applied while it is read, so that a large deployment's
/// start-up overlaps reading rows with filling the maps, and never holds
/// every row at once. Each record goes in as a single change would
/// (requests meanwhile see it as it was or as it is); tokens go in batches
/// that the caller may apply on other threads ([`TokenBatch::apply`]); once
/// every batch is applied, [`Reload::finish`] drops whatever the load did
/// not hold. A first load (into an empty verifier) has nothing to drop and
/// remembers no ids.
pub struct Reload {
    verifier: Arc<Verifier>,
    kept: Option<Kept>,
}

impl Reload {
    pub fn new(verifier: Arc<Verifier>) -> Self {
        let kept = (!verifier.lookup.is_empty()).then(Kept::default);
        Reload { verifier, kept }
    }

    /// On a first load, makes room for this many records at once.
    pub fn reserve(&self, accounts: usize, users: usize, tokens: usize) {
        if self.kept.is_none() {
            self.verifier.reserve(accounts, users, tokens);
        }
    }

    pub fn account(&mut self, account: AccountEntry) {
        if let Some(kept) = &mut self.kept {
            kept.accounts.insert(account.id);
        }
        self.verifier.upsert_account(account);
    }

    /// A live user (a deleted one is skipped, as [`Snapshot::add_user`] does).
    pub fn user(&mut self, user: User) {
        if user.deleted {
            return;
        }
        if let Some(kept) = &mut self.kept {
            kept.users.insert(user.id);
        }
        self.verifier.upsert_user(user);
    }

    /// Takes a batch of tokens into the load; the batch still has to be
    /// applied, on whichever thread the caller likes.
    pub fn tokens(&mut self, tokens: Vec<TokenAuth>) -> TokenBatch {
        if let Some(kept) = &mut self.kept {
            kept.tokens.extend(tokens.iter().map(|t| t.id));
        }
        TokenBatch {
            verifier: self.verifier.clone(),
            tokens,
        }
    }

    /// Ends the load: drops what it did not hold. Call it once every
    /// [`TokenBatch`] has been applied.
    pub fn finish(self) {
        if let Some(kept) = self.kept {
            self.verifier.retain_only(&kept);
        }
    }
}

/// Tokens a [`Reload`] read, to be put in the verifier.
#[must_use = "a batch does nothing until it is applied"]
pub struct TokenBatch {
    verifier: Arc<Verifier>,
    tokens: Vec<TokenAuth>,
}

impl TokenBatch {
    pub fn apply(self) {
        self.verifier.upsert_tokens(self.tokens);
    }
}

/// The ids of `ids` that `keep` does not hold.
fn gone<Id: Eq + Hash>(ids: Vec<Id>, keep: &HashSet<Id>) -> Vec<Id> {
    ids.into_iter().filter(|id| !keep.contains(id)).collect()
}

impl Verifier {
    /// Applies a large set of tokens on every core: the maps take concurrent
    /// writers, and a million tokens then load in a fraction of the time.
    /// Guards are renewed every batch so replaced entries can be freed.
    fn load_tokens(&self, tokens: &[TokenAuth]) {
        const BATCH: usize = 4096;
        const PARALLEL_FROM: usize = 50_000;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
        if threads == 1 || tokens.len() < PARALLEL_FROM {
            tokens
                .chunks(BATCH)
                .for_each(|batch| self.upsert_tokens(batch.iter().cloned()));
            return;
        }
        std::thread::scope(|scope| {
            for part in tokens.chunks(tokens.len().div_ceil(threads)) {
                scope.spawn(move || {
                    part.chunks(BATCH)
                        .for_each(|batch| self.upsert_tokens(batch.iter().cloned()))
                });
            }
        });
    }
}

/// A full load of what the verifier needs, built row by row.
#[derive(Debug, Default)]
pub struct Snapshot {
    accounts: Vec<AccountEntry>,
    users: Vec<User>,
    tokens: Vec<TokenAuth>,
}

impl Snapshot {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_account(&mut self, account: AccountEntry) {
        self.accounts.push(account);
    }

    pub fn add_user(&mut self, user: User) {
        if !user.deleted {
            self.users.push(user);
        }
    }

    pub fn add_token(&mut self, token: TokenAuth) {
        self.tokens.push(token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::{Email, Role};
    use strum::IntoEnumIterator;

    const ACME: AccountId = AccountId::new(1);
    const JANE: UserId = UserId::new(10);
    const TOKEN: TokenId = TokenId::new(5);

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix(secs)
    }

    fn account(id: AccountId, subdomain: &str, name: &str, plan: Plan, api_token_access: bool) -> AccountEntry {
        AccountEntry {
            id,
            subdomain: Subdomain::parse(subdomain).expect("valid"),
            name: name.into(),
            plan,
            api_token_access,
        }
    }

    fn token(id: TokenId, hash: TokenHash, active: bool) -> TokenAuth {
        TokenAuth {
            id,
            account_id: ACME,
            hash,
            active,
            restrictions: Restrictions::default(),
            previous: None,
            legacy: false,
        }
    }

    #[test]
    fn only_a_held_legacy_token_makes_checksum_less_strings_worth_a_lookup() {
        let v = Verifier::new();
        let latchkey = TokenHash::of("lk_a");
        let legacy = TokenHash::of("aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5hJ7k");
        v.upsert_token(token(TokenId::new(1), latchkey, true));
        assert!(!v.accepts_legacy());
        v.upsert_token(TokenAuth {
            legacy: true,
            ..token(TokenId::new(2), legacy, true)
        });
        assert!(v.accepts_legacy());
        // Rotated to the latchkey format: no legacy secret left.
        v.upsert_token(token(TokenId::new(2), TokenHash::of("lk_b"), true));
        assert!(!v.accepts_legacy());
        v.upsert_token(TokenAuth {
            legacy: true,
            ..token(TokenId::new(3), legacy, true)
        });
        v.remove_token(TokenId::new(3));
        assert!(!v.accepts_legacy());
        let mut s = Snapshot::new();
        s.add_token(TokenAuth {
            legacy: true,
            ..token(TokenId::new(4), legacy, true)
        });
        v.replace_all(s);
        assert!(v.accepts_legacy());
        v.replace_all(Snapshot::new());
        assert!(!v.accepts_legacy(), "a resync that no longer holds it drops it");
    }

    #[test]
    fn denials_are_spelled_once_in_snake_case() {
        let spelled: Vec<&str> = Denial::iter().map(Denial::as_str).collect();
        assert_eq!(spelled, Denial::VARIANTS);
        assert_eq!(
            Denial::VARIANTS,
            [
                "unknown_token",
                "token_inactive",
                "token_expired",
                "access_disabled",
                "unknown_user",
                "user_cannot_authenticate",
                "not_assigned_user",
                "rotated_out",
                "ip_not_allowed",
                "rate_limited"
            ]
        );
        assert!(Denial::iter().all(|d| d.to_string() == d.as_str()));
    }

    fn setup(access: bool) -> (Verifier, TokenHash) {
        let v = Verifier::new();
        let mut s = Snapshot::new();
        s.add_account(account(ACME, "acme", "Acme", Plan::Enterprise, access));
        s.add_user(User {
            id: JANE,
            account_id: ACME,
            name: "Jane".into(),
            email: Email::parse("Jane@Example.com").expect("valid"),
            role: Role::Agent,
            verified: true,
            suspended: false,
            deleted: false,
            created_at: Timestamp::EPOCH,
            updated_at: Timestamp::EPOCH,
        });
        let hash = TokenHash::of("lk_secret");
        s.add_token(token(TOKEN, hash, true));
        v.replace_all(s);
        (v, hash)
    }

    #[test]
    fn a_valid_token_and_email_verify_case_insensitively() {
        let (v, hash) = setup(true);
        let id = v.verify("jane@example.COM", &hash, at(100)).expect("verifies");
        assert_eq!((id.account.id, id.user.id, id.token_id), (ACME, JANE, TOKEN));
    }

    #[test]
    fn each_failed_condition_is_denied() {
        let (v, hash) = setup(true);
        assert_eq!(
            v.verify("jane@example.com", &TokenHash::of("x"), at(1)).err(),
            Some(Denial::UnknownToken)
        );
        assert_eq!(
            v.verify("bob@example.com", &hash, at(1)).err(),
            Some(Denial::UnknownUser)
        );
        let (off, hash_off) = setup(false);
        assert_eq!(
            off.verify("jane@example.com", &hash_off, at(1)).err(),
            Some(Denial::AccessDisabled)
        );
        v.upsert_token(token(TOKEN, hash, false));
        assert_eq!(
            v.verify("jane@example.com", &hash, at(1)).err(),
            Some(Denial::TokenInactive)
        );
    }

    #[test]
    fn suspended_and_deleted_users_are_refused() {
        let (v, hash) = setup(true);
        let mut u = (*v.user(JANE).expect("user")).clone();
        u.suspended = true;
        v.upsert_user(u.clone());
        assert_eq!(
            v.verify("jane@example.com", &hash, at(1)).err(),
            Some(Denial::UserCannotAuthenticate)
        );
        u.deleted = true;
        v.upsert_user(u);
        assert_eq!(
            v.verify("jane@example.com", &hash, at(1)).err(),
            Some(Denial::UnknownUser)
        );
    }

    #[test]
    fn usage_is_queued_once_per_flush_and_survives_updates() {
        let (v, hash) = setup(true);
        for now in [100, 101, 105] {
            v.verify("jane@example.com", &hash, at(now)).expect("ok");
        }
        v.upsert_token(token(TOKEN, hash, true));
        assert_eq!(v.last_used(TOKEN), Some(at(105)));
        assert_eq!(v.drain_usage(), vec![used(TOKEN, at(105))]);
        assert_eq!(v.drain_usage(), vec![]);
        v.verify("jane@example.com", &hash, at(200)).expect("ok");
        assert_eq!(v.drain_usage(), vec![used(TOKEN, at(200))]);
    }

    #[test]
    fn emails_are_looked_up_as_normalize_email_lowers_them() {
        for email in [
            "jane@example.com",
            "Jane@Example.COM",
            "ÉLODIE@Exemple.fr",
            "straße@x.de",
            "",
        ] {
            assert_eq!(with_normalized(email, str::to_owned), normalize_email(email), "{email}");
        }
        let (v, hash) = setup(true);
        let mut u = (*v.user(JANE).expect("user")).clone();
        u.email = Email::parse("Élodie@Example.com").expect("valid");
        v.upsert_user(u);
        assert!(v.verify("élodie@example.COM", &hash, at(1)).is_ok());
        assert_eq!(
            v.verify("jane@example.com", &hash, at(1)).err(),
            Some(Denial::UnknownUser)
        );
    }

    #[test]
    fn a_resync_drops_what_is_gone_and_keeps_unflushed_usage() {
        let (v, hash) = setup(true);
        v.verify("jane@example.com", &hash, at(100)).expect("ok");
        let other = TokenHash::of("lk_other");
        v.upsert_token(token(TokenId::new(6), other, true));
        v.upsert_account(account(AccountId::new(2), "gone", "Gone", Plan::Team, true));
        // The fresh load has account 1, Jane and token 5 only.
        let mut s = Snapshot::new();
        s.add_account(account(ACME, "acme", "Acme", Plan::Enterprise, true));
        s.add_user((*v.user(JANE).expect("user")).clone());
        s.add_token(token(TOKEN, hash, true));
        v.replace_all(s);
        assert_eq!(v.token_count(), 1);
        assert!(v.account(AccountId::new(2)).is_none());
        assert_eq!(
            v.verify("jane@example.com", &other, at(1)).err(),
            Some(Denial::UnknownToken)
        );
        assert_eq!(v.last_used(TOKEN), Some(at(100)));
        assert_eq!(v.drain_usage(), vec![used(TOKEN, at(100))]);
    }

    #[test]
    fn a_reload_applied_while_read_drops_what_is_gone_once_finished() {
        let (v, hash) = setup(true);
        let v = Arc::new(v);
        let other = TokenHash::of("lk_other");
        v.upsert_token(token(TokenId::new(6), other, true));
        let mut reload = Reload::new(v.clone());
        reload.account(account(ACME, "acme", "Acme", Plan::Enterprise, true));
        reload.user((*v.user(JANE).expect("user")).clone());
        let batch = reload.tokens(vec![token(TOKEN, hash, true)]);
        // Applied on another thread, as the store does.
        std::thread::spawn(move || batch.apply()).join().expect("applied");
        // Nothing is dropped before the load is finished.
        assert_eq!(v.token_count(), 2);
        reload.finish();
        assert_eq!(v.token_count(), 1);
        assert!(v.verify("jane@example.com", &hash, at(1)).is_ok());
        assert_eq!(
            v.verify("jane@example.com", &other, at(1)).err(),
            Some(Denial::UnknownToken)
        );
        // A first load remembers nothing and drops nothing.
        let fresh = Arc::new(Verifier::new());
        let mut reload = Reload::new(fresh.clone());
        reload.reserve(1, 0, 1);
        reload.account(account(ACME, "acme", "Acme", Plan::Enterprise, true));
        reload.tokens(vec![token(TOKEN, hash, true)]).apply();
        reload.finish();
        assert_eq!(fresh.token_count(), 1);
    }

    #[test]
    fn a_large_load_runs_in_parallel_and_misses_no_token() {
        let (v, hash) = setup(true);
        let mut s = Snapshot::new();
        s.add_account(account(ACME, "acme", "Acme", Plan::Enterprise, true));
        s.add_user((*v.user(JANE).expect("user")).clone());
        let n = 60_000;
        for id in 0..n {
            s.add_token(token(
                TokenId::new(id),
                if id == 5 {
                    hash
                } else {
                    TokenHash::of(&format!("t{id}"))
                },
                true,
            ));
        }
        v.replace_all(s);
        assert_eq!(v.token_count(), n as usize);
        for id in [0, 1, 29_999, 30_000, n - 1] {
            let id_of = v.verify("jane@example.com", &TokenHash::of(&format!("t{id}")), at(1));
            assert_eq!(id_of.map(|i| i.token_id).ok(), Some(TokenId::new(id)));
        }
        assert!(v.verify("jane@example.com", &hash, at(1)).is_ok());
    }

    type Seen = (AccountId, Subdomain, UserId, Email, Role, TokenId);

    /// What a verification yields, as plain values both paths can give.
    fn seen(a: &AccountEntry, u: &User, token_id: TokenId) -> Seen {
        (a.id, a.subdomain.clone(), u.id, u.email.clone(), u.role, token_id)
    }

    fn seen_ref(i: IdentityRef<'_>) -> Seen {
        seen(i.account, i.user, i.token_id)
    }

    #[test]
    fn the_borrowing_path_gives_the_same_answers_as_verify() {
        let (valid, hash) = setup(true);
        let (disabled, _) = setup(false);
        let (inactive, _) = setup(true);
        inactive.upsert_token(token(TOKEN, hash, false));
        let (suspended, _) = setup(true);
        let mut u = (*suspended.user(JANE).expect("user")).clone();
        u.suspended = true;
        suspended.upsert_user(u);
        let unknown = TokenHash::of("lk_unknown");
        let mut denials = HashSet::new();
        for v in [&valid, &disabled, &inactive, &suspended] {
            for email in ["jane@example.com", "JANE@Example.COM", "bob@example.com", ""] {
                for h in [&hash, &unknown] {
                    let owned = v.verify(email, h, at(1)).map(|i| seen(&i.account, &i.user, i.token_id));
                    let borrowed = v
                        .verify_with(email, h, at(1), ANY_ADDRESS, None, seen_ref)
                        .map_err(|r| match r {
                            Refusal::Unauthenticated(d) => d,
                            Refusal::MissingScope { .. } | Refusal::RateLimited(_) => {
                                unreachable!("no target, no limit")
                            }
                        });
                    assert_eq!(owned, borrowed, "{email}");
                    denials.insert(borrowed.err().map(Denial::as_str));
                }
            }
        }
        // Every outcome was compared, the success and each denial.
        assert_eq!(denials.len(), 6, "{denials:?}");
        let ok = valid.verify_with("jane@example.com", &hash, at(1), ANY_ADDRESS, None, seen_ref);
        assert_eq!(
            ok,
            Ok((
                ACME,
                Subdomain::parse("acme").expect("valid"),
                JANE,
                Email::parse("Jane@Example.com").expect("valid"),
                Role::Agent,
                TOKEN
            ))
        );
    }

    #[test]
    fn the_borrowing_path_records_use_and_an_owned_identity_shares_the_entries() {
        let (v, hash) = setup(true);
        assert_eq!(
            v.verify_with("jane@example.com", &hash, at(300), ANY_ADDRESS, None, |i| i.token_id),
            Ok(TOKEN)
        );
        assert_eq!(v.drain_usage(), vec![used(TOKEN, at(300))]);
        let id = v
            .verify_with("jane@example.com", &hash, at(301), ANY_ADDRESS, None, |i| {
                i.to_identity()
            })
            .expect("ok");
        assert!(Arc::ptr_eq(&id.account, &v.account(ACME).expect("account")));
        assert!(Arc::ptr_eq(&id.user, &v.user(JANE).expect("user")));
        assert_eq!(v.last_used(TOKEN), Some(at(301)));
    }

    #[test]
    fn uses_that_could_not_be_written_are_flushed_next_time() {
        let (v, hash) = setup(true);
        v.verify("jane@example.com", &hash, at(100)).expect("ok");
        let drained = v.drain_usage();
        assert_eq!(drained, vec![used(TOKEN, at(100))]);
        v.requeue_usage(&drained);
        assert_eq!(v.drain_usage(), vec![used(TOKEN, at(100))]);
        assert_eq!(v.drain_usage(), vec![]);
    }

    /// Verifications on other threads while a user is replaced over and
    /// over (renamed, and moved between two emails), while the account is
    /// replaced, and while the whole verifier is reloaded: a verification
    /// always finds the user, as it was or as it is.
    #[test]
    fn updates_and_reloads_never_hide_a_valid_user() {
        use std::sync::atomic::AtomicU64;
        let (v, hash) = setup(true);
        let jane = (*v.user(JANE).expect("user")).clone();
        let stop = AtomicBool::new(false);
        let refused = AtomicU64::new(0);
        let checked = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        if v.verify("jane@example.com", &hash, at(1)).is_err() {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        checked.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            for i in 0..20_000 {
                let mut u = jane.clone();
                u.name = format!("Jane {i}");
                v.upsert_user(u);
                v.upsert_account(account(ACME, "acme", &format!("Acme {i}"), Plan::Enterprise, true));
                if i % 100 == 0 {
                    let mut s = Snapshot::new();
                    s.add_account(account(ACME, "acme", "Acme", Plan::Enterprise, true));
                    s.add_user(jane.clone());
                    s.add_token(token(TOKEN, hash, true));
                    v.replace_all(s);
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
        let refused = refused.load(Ordering::Relaxed);
        assert_eq!(refused, 0, "{refused} of {} refused", checked.load(Ordering::Relaxed));
    }

    #[test]
    fn an_email_change_moves_the_user_and_never_drops_another() {
        let (v, hash) = setup(true);
        let mut u = (*v.user(JANE).expect("user")).clone();
        u.email = Email::parse("jane.doe@example.com").expect("valid");
        v.upsert_user(u);
        assert!(v.verify("jane.doe@example.com", &hash, at(1)).is_ok());
        assert_eq!(
            v.verify("jane@example.com", &hash, at(1)).err(),
            Some(Denial::UnknownUser)
        );
        // Bob takes Jane's old address; removing Jane then leaves Bob.
        let mut bob = (*v.user(JANE).expect("user")).clone();
        bob.id = UserId::new(11);
        bob.email = Email::parse("jane@example.com").expect("valid");
        v.upsert_user(bob);
        v.remove_user(JANE);
        assert!(v.verify("jane@example.com", &hash, at(1)).is_ok());
        assert_eq!(
            v.verify("jane.doe@example.com", &hash, at(1)).err(),
            Some(Denial::UnknownUser)
        );
    }

    fn used(id: TokenId, last_used: Timestamp) -> TokenUse {
        TokenUse {
            id,
            last_used,
            previous_last_used: None,
        }
    }

    #[test]
    fn a_rotated_token_takes_both_secrets_until_the_grace_ends_and_a_second_rotation_ends_it() {
        let (v, old) = setup(true);
        let new = TokenHash::of("lk_new");
        let rotated = |hash: TokenHash, previous: Option<(TokenHash, i64)>| TokenAuth {
            previous: previous.map(|(hash, until)| PreviousSecret { hash, until: at(until) }),
            ..token(TOKEN, hash, true)
        };
        v.upsert_token(rotated(new, Some((old, 1_000))));
        assert!(v.verify("jane@example.com", &new, at(999)).is_ok());
        assert!(v.verify("jane@example.com", &old, at(999)).is_ok());
        assert_eq!(
            v.verify("jane@example.com", &old, at(1_000)).err(),
            Some(Denial::RotatedOut)
        );
        assert!(v.verify("jane@example.com", &new, at(1_000)).is_ok());
        // The old secret's use is counted apart.
        assert_eq!(
            v.drain_usage(),
            vec![TokenUse {
                id: TOKEN,
                last_used: at(1_000),
                previous_last_used: Some(at(999)),
            }]
        );
        assert_eq!(v.previous_last_used(TOKEN), Some(at(999)));
        // A second rotation: the first secret is gone at once.
        let third = TokenHash::of("lk_third");
        v.upsert_token(rotated(third, Some((new, 5_000))));
        assert_eq!(
            v.verify("jane@example.com", &old, at(10)).err(),
            Some(Denial::UnknownToken)
        );
        assert!(v.verify("jane@example.com", &new, at(10)).is_ok());
        assert!(v.verify("jane@example.com", &third, at(10)).is_ok());
        assert_eq!(v.previous_last_used(TOKEN), Some(at(10)));
        // Deactivation stops both; removal drops both.
        v.upsert_token(TokenAuth {
            active: false,
            ..rotated(third, Some((new, 5_000)))
        });
        assert_eq!(
            v.verify("jane@example.com", &new, at(11)).err(),
            Some(Denial::TokenInactive)
        );
        v.remove_token(TOKEN);
        assert_eq!(
            v.verify("jane@example.com", &new, at(11)).err(),
            Some(Denial::UnknownToken)
        );
        assert_eq!(
            v.verify("jane@example.com", &third, at(11)).err(),
            Some(Denial::UnknownToken)
        );
    }

    #[test]
    fn an_allowlisted_token_authenticates_only_from_inside_it() {
        let (v, hash) = setup(true);
        v.upsert_token(restricted(
            hash,
            Restrictions {
                allowed_ips: Some(crate::allowlist::IpAllowlist::parse(&["192.0.2.0/24"]).expect("valid")),
                ..Restrictions::default()
            },
        ));
        let from = |ip: &str| v.verify_with("jane@example.com", &hash, at(1), ip.parse().expect("ip"), None, |_| ());
        assert_eq!(from("192.0.2.10"), Ok(()));
        assert_eq!(from("::ffff:192.0.2.10"), Ok(()));
        assert_eq!(
            from("198.51.100.1"),
            Err(Refusal::Unauthenticated(Denial::IpNotAllowed))
        );
        assert_eq!(
            v.verify("jane@example.com", &hash, at(1)).err(),
            Some(Denial::IpNotAllowed)
        );
    }

    #[test]
    fn a_rate_limit_counts_across_edits_and_refusals_are_counted_in_usage() {
        let (v, hash) = setup(true);
        let limited = |requests| Restrictions {
            rate_limit: Some(crate::rate_limit::RateLimit::new(requests, 60).expect("valid")),
            ..Restrictions::default()
        };
        v.upsert_token(restricted(hash, limited(2)));
        let ask = |t| v.verify_with("jane@example.com", &hash, at(t), ANY_ADDRESS, None, |id| id.rate);
        let first = ask(60).expect("admitted").expect("a limited token has a status");
        assert_eq!((first.remaining, first.reset_secs), (1, 60));
        // An edit of the token (here a raised limit) keeps this window's count.
        v.upsert_token(restricted(hash, limited(3)));
        assert_eq!(ask(61).expect("admitted").map(|s| s.remaining), Some(1));
        assert!(ask(62).is_ok());
        match ask(63) {
            Err(Refusal::RateLimited(s)) => assert_eq!((s.remaining, s.reset_secs), (0, 57)),
            other => panic!("expected a rate-limit refusal, got {other:?}"),
        }
        assert_eq!(
            v.verify("jane@example.com", &hash, at(63)).err(),
            Some(Denial::RateLimited)
        );
        assert!(ask(120).is_ok(), "the next window");
        // Without a limit: no status, no counting.
        v.upsert_token(restricted(hash, Restrictions::default()));
        assert_eq!(ask(121), Ok(None));
        let hourly = v.drain_hourly(at(10_000));
        let limited_count: u64 = hourly.iter().map(|h| h.counts[UsageKind::RateLimited as usize]).sum();
        assert_eq!(limited_count, 2);
        // Reported while used, once more after a sync without use, then
        // no longer.
        let reports = v.rate_reports(121_000, 1);
        assert_eq!(reports.len(), 1);
        assert_eq!((reports[0].token_id, reports[0].admitted), (TOKEN, 1));
        assert_eq!(v.rate_reports(122_000, 1).len(), 1);
        assert!(v.rate_reports(123_000, 1).is_empty());
    }

    fn restricted(hash: TokenHash, restrictions: Restrictions) -> TokenAuth {
        TokenAuth {
            restrictions,
            ..token(TOKEN, hash, true)
        }
    }

    #[test]
    fn an_expiring_token_works_until_the_second_it_expires() {
        let (v, hash) = setup(true);
        v.upsert_token(restricted(
            hash,
            Restrictions {
                expires_at: Some(at(1_000)),
                ..Restrictions::default()
            },
        ));
        assert!(v.verify("jane@example.com", &hash, at(999)).is_ok());
        assert_eq!(
            v.verify("jane@example.com", &hash, at(1_000)).err(),
            Some(Denial::TokenExpired)
        );
        assert_eq!(
            v.verify("jane@example.com", &hash, at(5_000)).err(),
            Some(Denial::TokenExpired)
        );
    }

    #[test]
    fn an_assigned_token_authenticates_only_its_user_while_that_user_may() {
        let (v, hash) = setup(true);
        let mut bob = (*v.user(JANE).expect("user")).clone();
        bob.id = UserId::new(11);
        bob.email = Email::parse("bob@example.com").expect("valid");
        v.upsert_user(bob);
        v.upsert_token(restricted(
            hash,
            Restrictions {
                assigned_user_id: Some(JANE),
                ..Restrictions::default()
            },
        ));
        assert!(v.verify("jane@example.com", &hash, at(1)).is_ok());
        assert_eq!(
            v.verify("bob@example.com", &hash, at(1)).err(),
            Some(Denial::NotAssignedUser)
        );
        let mut jane = (*v.user(JANE).expect("user")).clone();
        jane.verified = false;
        v.upsert_user(jane.clone());
        assert_eq!(
            v.verify("jane@example.com", &hash, at(1)).err(),
            Some(Denial::UserCannotAuthenticate)
        );
        jane.verified = true;
        v.upsert_user(jane);
        assert!(v.verify("jane@example.com", &hash, at(1)).is_ok());
    }

    #[test]
    fn scopes_are_checked_after_authentication_and_only_with_a_target() {
        let (v, hash) = setup(true);
        let catalog = crate::scope::ScopeCatalog::builtin();
        let scopes = catalog.parse_scopes(&["users:read"]).expect("valid");
        v.upsert_token(restricted(
            hash,
            Restrictions {
                scopes: Some(scopes),
                ..Restrictions::default()
            },
        ));
        let check = |method: &str, path: &str| {
            v.verify_with(
                "jane@example.com",
                &hash,
                at(1),
                ANY_ADDRESS,
                Some(catalog.target(method, path)),
                |i| i.scopes.map(|s| s.to_stored()),
            )
        };
        assert_eq!(check("GET", "/api/v2/users/me"), Ok(Some("users:read".to_owned())));
        assert_eq!(
            check("PUT", "/api/v2/users/3"),
            Err(Refusal::MissingScope {
                scope: "users:write".into(),
                rate: None
            })
        );
        assert_eq!(
            check("GET", "/api/v2/api_tokens"),
            Err(Refusal::MissingScope {
                scope: "api_tokens:read".into(),
                rate: None
            })
        );
        // A bad credential is a 401 before any scope is looked at.
        assert_eq!(
            v.verify_with(
                "bob@example.com",
                &hash,
                at(1),
                ANY_ADDRESS,
                Some(catalog.target("PUT", "/x")),
                |_| ()
            ),
            Err(Refusal::Unauthenticated(Denial::UnknownUser))
        );
        // Without a target, authentication alone.
        assert!(v.verify("jane@example.com", &hash, at(1)).is_ok());
    }

    #[test]
    fn allowed_requests_are_counted_per_hour_through_edits_and_removal() {
        let (v, hash) = setup(true);
        let allowed = |v: &Verifier| {
            v.drain_usage();
            let mut rows: Vec<(i64, u64)> = v
                .drain_hourly(at(20_000))
                .into_iter()
                .map(|r| (r.hour.unix(), r.counts[UsageKind::Allowed as usize]))
                .collect();
            rows.sort_unstable();
            rows
        };
        let ok = |t: i64| v.verify("jane@example.com", &hash, at(t)).is_ok();
        assert!(ok(7_200) && ok(7_300));
        // An edit replaces the entry; its count goes on with the new one.
        v.upsert_token(token(TOKEN, hash, true));
        assert!(ok(7_400));
        // A request in the next hour hands the last hour's count on.
        assert!(ok(10_800));
        assert_eq!(allowed(&v), vec![(7_200, 3), (10_800, 1)]);
        assert_eq!(allowed(&v), vec![]);
        // A token removed between flushes keeps the requests it was allowed.
        assert!(ok(18_000));
        v.remove_token(TOKEN);
        assert_eq!(allowed(&v), vec![(18_000, 1)]);
    }

    #[test]
    fn a_token_entry_stays_small() {
        // The map's allocation per token is its key and this entry: 88
        // bytes, which the allocator serves from a 96-byte chunk.
        assert!(std::mem::size_of::<Key>() + std::mem::size_of::<Entry>() <= 88);
    }

    #[test]
    fn removing_a_token_stops_it() {
        let (v, hash) = setup(true);
        v.remove_token(TOKEN);
        assert_eq!(
            v.verify("jane@example.com", &hash, at(1)).err(),
            Some(Denial::UnknownToken)
        );
        assert_eq!(v.token_count(), 0);
    }
}
