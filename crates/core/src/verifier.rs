//! The in-memory verifier: everything authentication needs (token hash →
//! token, accounts and their settings, users by account and lower-cased
//! email), so that verifying a request costs no database round trip and no
//! write.
//!
//! The maps are concurrent (`papaya`, lock-free reads) and the whole set sits
//! behind an `ArcSwap`, so a full resynchronisation builds a fresh set and
//! swaps it in while requests go on. `last_used` is kept here too: a request
//! stores the time in an atomic, and the first use of a token in a flush
//! interval queues its id; the server flushes the queue in one batch.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::account::{Account, Plan};
use crate::time::Timestamp;
use crate::token::TokenHash;
use crate::user::{normalize_email, User};

/// What the verifier keeps of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountEntry {
    pub id: i64,
    pub subdomain: String,
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

/// What the verifier keeps of a token: what authentication checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAuth {
    pub id: i64,
    pub account_id: i64,
    pub hash: TokenHash,
    pub active: bool,
}

#[derive(Debug, Default)]
struct Usage {
    last_used: AtomicI64,
    queued: AtomicBool,
}

#[derive(Debug)]
struct TokenEntry {
    auth: TokenAuth,
    usage: Arc<Usage>,
}

/// A user's key: account id and lower-cased email.
type UserKey = (i64, String);

/// A [`UserKey`] to look up without building one: it hashes exactly as the
/// tuple does (field by field), so no `String` is allocated per request.
#[derive(Hash)]
struct UserRef<'a>(i64, &'a str);

impl papaya::Equivalent<UserKey> for UserRef<'_> {
    fn equivalent(&self, key: &UserKey) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

/// foldhash, seeded per process, instead of SipHash: the keys are integers
/// and SHA-256 outputs, hashing them is a third of a lookup with SipHash,
/// and the random seed still keeps colliding keys out of reach of anyone
/// who cannot read this process's memory (an imported token hash is
/// chosen by an admin).
type Map<K, V> = papaya::HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Default)]
struct Maps {
    tokens: Map<TokenHash, Arc<TokenEntry>>,
    tokens_by_id: Map<i64, Arc<TokenEntry>>,
    accounts: Map<i64, Arc<AccountEntry>>,
    users: Map<UserKey, Arc<User>>,
    users_by_id: Map<i64, Arc<User>>,
}

/// Who a verified request runs as.
#[derive(Debug, Clone)]
pub struct Identity {
    pub account: Arc<AccountEntry>,
    pub user: Arc<User>,
    pub token_id: i64,
}

/// Why a verification failed. Never shown to the caller (every reason gets
/// the same 401); kept for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    UnknownToken,
    TokenInactive,
    AccessDisabled,
    UnknownUser,
    UserCannotAuthenticate,
}

impl Denial {
    pub fn as_str(self) -> &'static str {
        match self {
            Denial::UnknownToken => "unknown_token",
            Denial::TokenInactive => "token_inactive",
            Denial::AccessDisabled => "access_disabled",
            Denial::UnknownUser => "unknown_user",
            Denial::UserCannotAuthenticate => "user_cannot_authenticate",
        }
    }
}

/// The verifier. Cheap to share behind an `Arc`.
#[derive(Default)]
pub struct Verifier {
    maps: ArcSwap<Maps>,
    usage_queue: Mutex<Vec<i64>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("tokens", &self.token_count()).finish()
    }
}

fn user_key(account_id: i64, email: &str) -> UserKey {
    (account_id, normalize_email(email))
}

/// Calls `f` with `normalize_email(email)`, on the stack when the email is
/// ASCII (lower-casing ASCII is all Unicode lower-casing does to it), so a
/// request costs no allocation.
fn with_normalized<R>(email: &str, f: impl FnOnce(&str) -> R) -> R {
    let mut buf = [0u8; 256];
    if email.is_ascii() && email.len() <= buf.len() {
        if !email.bytes().any(|b| b.is_ascii_uppercase()) {
            return f(email);
        }
        let lower = &mut buf[..email.len()];
        lower.copy_from_slice(email.as_bytes());
        lower.make_ascii_lowercase();
        if let Ok(lower) = std::str::from_utf8(lower) {
            return f(lower);
        }
    }
    f(&normalize_email(email))
}

impl Verifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks `{email}/token:{token}` credentials, given the token's hash
    /// (SPEC §4.1). On success, records the use for `last_used`.
    pub fn verify(&self, email: &str, hash: &TokenHash, now: Timestamp) -> Result<Identity, Denial> {
        let maps = self.maps.load();
        // Borrowed under the map's guard, not cloned: an `Arc` clone and its
        // drop are two locked instructions per request.
        let tokens = maps.tokens.pin();
        let token = tokens.get(hash).ok_or(Denial::UnknownToken)?;
        if !token.auth.active {
            return Err(Denial::TokenInactive);
        }
        let account = maps
            .accounts
            .pin()
            .get(&token.auth.account_id)
            .cloned()
            .ok_or(Denial::UnknownToken)?;
        if !account.api_token_access {
            return Err(Denial::AccessDisabled);
        }
        let user = with_normalized(email, |email| maps.users.pin().get(&UserRef(account.id, email)).cloned())
            .ok_or(Denial::UnknownUser)?;
        if !user.can_authenticate() {
            return Err(Denial::UserCannotAuthenticate);
        }
        self.record_use(token, now);
        Ok(Identity {
            account,
            user,
            token_id: token.auth.id,
        })
    }

    fn record_use(&self, token: &TokenEntry, now: Timestamp) {
        let usage = &token.usage;
        if usage.last_used.load(Ordering::Relaxed) < now {
            usage.last_used.fetch_max(now, Ordering::AcqRel);
        }
        if !usage.queued.load(Ordering::Relaxed) && !usage.queued.swap(true, Ordering::AcqRel) {
            if let Ok(mut queue) = self.usage_queue.lock() {
                queue.push(token.auth.id);
            }
        }
    }

    /// Takes the tokens used since the last call with their latest use, for
    /// one batched write.
    pub fn drain_usage(&self) -> Vec<(i64, Timestamp)> {
        let ids = match self.usage_queue.lock() {
            Ok(mut q) => std::mem::take(&mut *q),
            Err(_) => return Vec::new(),
        };
        let maps = self.maps.load();
        let by_id = maps.tokens_by_id.pin();
        ids.into_iter()
            .filter_map(|id| {
                let entry = by_id.get(&id)?;
                entry.usage.queued.store(false, Ordering::Release);
                Some((id, entry.usage.last_used.load(Ordering::Acquire)))
            })
            .collect()
    }

    /// The last use this process has seen of a token, which may be newer than
    /// the stored one until the next flush.
    pub fn last_used(&self, token_id: i64) -> Option<Timestamp> {
        let maps = self.maps.load();
        let t = maps
            .tokens_by_id
            .pin()
            .get(&token_id)?
            .usage
            .last_used
            .load(Ordering::Acquire);
        (t > 0).then_some(t)
    }

    pub fn account(&self, id: i64) -> Option<Arc<AccountEntry>> {
        self.maps.load().accounts.pin().get(&id).cloned()
    }

    pub fn user(&self, id: i64) -> Option<Arc<User>> {
        self.maps.load().users_by_id.pin().get(&id).cloned()
    }

    pub fn token_count(&self) -> usize {
        self.maps.load().tokens.len()
    }

    pub fn upsert_account(&self, account: AccountEntry) {
        self.maps.load().accounts.pin().insert(account.id, Arc::new(account));
    }

    pub fn remove_account(&self, id: i64) {
        self.maps.load().accounts.pin().remove(&id);
    }

    /// Adds or replaces a user; a deleted user is removed.
    pub fn upsert_user(&self, user: User) {
        let maps = self.maps.load();
        Self::remove_user_from(&maps, user.id);
        if user.deleted {
            return;
        }
        let user = Arc::new(user);
        maps.users
            .pin()
            .insert(user_key(user.account_id, &user.email), user.clone());
        maps.users_by_id.pin().insert(user.id, user);
    }

    pub fn remove_user(&self, id: i64) {
        Self::remove_user_from(&self.maps.load(), id);
    }

    fn remove_user_from(maps: &Maps, id: i64) {
        let removed = maps.users_by_id.pin().remove(&id).cloned();
        if let Some(old) = removed {
            maps.users.pin().remove(&user_key(old.account_id, &old.email));
        }
    }

    /// Adds or replaces a token, keeping what this process knows of its use.
    pub fn upsert_token(&self, auth: TokenAuth) {
        let maps = self.maps.load();
        let by_id = maps.tokens_by_id.pin();
        let usage = match by_id.get(&auth.id) {
            Some(old) => {
                if old.auth.hash != auth.hash {
                    maps.tokens.pin().remove(&old.auth.hash);
                }
                old.usage.clone()
            }
            None => Arc::default(),
        };
        let entry = Arc::new(TokenEntry { auth, usage });
        maps.tokens.pin().insert(entry.auth.hash, entry.clone());
        by_id.insert(entry.auth.id, entry);
    }

    pub fn remove_token(&self, id: i64) {
        let maps = self.maps.load();
        let removed = maps.tokens_by_id.pin().remove(&id).cloned();
        if let Some(old) = removed {
            maps.tokens.pin().remove(&old.auth.hash);
        }
    }

    /// Replaces everything with a freshly loaded snapshot, keeping usage not
    /// yet flushed.
    pub fn replace_all(&self, snapshot: Snapshot) {
        let old = self.maps.load();
        let old_tokens = old.tokens_by_id.pin();
        let maps = snapshot.maps;
        {
            let tokens = maps.tokens.pin();
            let by_id = maps.tokens_by_id.pin();
            for auth in snapshot.tokens {
                let usage = old_tokens.get(&auth.id).map(|e| e.usage.clone()).unwrap_or_default();
                let entry = Arc::new(TokenEntry { auth, usage });
                tokens.insert(entry.auth.hash, entry.clone());
                by_id.insert(entry.auth.id, entry);
            }
        }
        self.maps.store(Arc::new(maps));
    }
}

/// A full load of what the verifier needs, built row by row.
#[derive(Default)]
pub struct Snapshot {
    maps: Maps,
    tokens: Vec<TokenAuth>,
}

impl Snapshot {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_account(&mut self, account: AccountEntry) {
        self.maps.accounts.pin().insert(account.id, Arc::new(account));
    }

    pub fn add_user(&mut self, user: User) {
        if user.deleted {
            return;
        }
        let user = Arc::new(user);
        self.maps
            .users
            .pin()
            .insert(user_key(user.account_id, &user.email), user.clone());
        self.maps.users_by_id.pin().insert(user.id, user);
    }

    pub fn add_token(&mut self, token: TokenAuth) {
        self.tokens.push(token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::Role;

    fn setup(access: bool) -> (Verifier, TokenHash) {
        let v = Verifier::new();
        let mut s = Snapshot::new();
        s.add_account(AccountEntry {
            id: 1,
            subdomain: "acme".into(),
            name: "Acme".into(),
            plan: Plan::Enterprise,
            api_token_access: access,
        });
        s.add_user(User {
            id: 10,
            account_id: 1,
            name: "Jane".into(),
            email: "Jane@Example.com".into(),
            role: Role::Agent,
            verified: true,
            suspended: false,
            deleted: false,
            created_at: 0,
            updated_at: 0,
        });
        let hash = TokenHash::of("lk_secret");
        s.add_token(TokenAuth {
            id: 5,
            account_id: 1,
            hash,
            active: true,
        });
        v.replace_all(s);
        (v, hash)
    }

    #[test]
    fn a_valid_token_and_email_verify_case_insensitively() {
        let (v, hash) = setup(true);
        let id = v.verify("jane@example.COM", &hash, 100).expect("verifies");
        assert_eq!((id.account.id, id.user.id, id.token_id), (1, 10, 5));
    }

    #[test]
    fn each_failed_condition_is_denied() {
        let (v, hash) = setup(true);
        assert_eq!(
            v.verify("jane@example.com", &TokenHash::of("x"), 1).err(),
            Some(Denial::UnknownToken)
        );
        assert_eq!(v.verify("bob@example.com", &hash, 1).err(), Some(Denial::UnknownUser));
        let (off, hash_off) = setup(false);
        assert_eq!(
            off.verify("jane@example.com", &hash_off, 1).err(),
            Some(Denial::AccessDisabled)
        );
        v.upsert_token(TokenAuth {
            id: 5,
            account_id: 1,
            hash,
            active: false,
        });
        assert_eq!(
            v.verify("jane@example.com", &hash, 1).err(),
            Some(Denial::TokenInactive)
        );
    }

    #[test]
    fn suspended_and_deleted_users_are_refused() {
        let (v, hash) = setup(true);
        let mut u = (*v.user(10).expect("user")).clone();
        u.suspended = true;
        v.upsert_user(u.clone());
        assert_eq!(
            v.verify("jane@example.com", &hash, 1).err(),
            Some(Denial::UserCannotAuthenticate)
        );
        u.deleted = true;
        v.upsert_user(u);
        assert_eq!(v.verify("jane@example.com", &hash, 1).err(), Some(Denial::UnknownUser));
    }

    #[test]
    fn usage_is_queued_once_per_flush_and_survives_updates() {
        let (v, hash) = setup(true);
        for now in [100, 101, 105] {
            v.verify("jane@example.com", &hash, now).expect("ok");
        }
        v.upsert_token(TokenAuth {
            id: 5,
            account_id: 1,
            hash,
            active: true,
        });
        assert_eq!(v.last_used(5), Some(105));
        assert_eq!(v.drain_usage(), vec![(5, 105)]);
        assert_eq!(v.drain_usage(), vec![]);
        v.verify("jane@example.com", &hash, 200).expect("ok");
        assert_eq!(v.drain_usage(), vec![(5, 200)]);
    }

    #[test]
    fn removing_a_token_stops_it() {
        let (v, hash) = setup(true);
        v.remove_token(5);
        assert_eq!(v.verify("jane@example.com", &hash, 1).err(), Some(Denial::UnknownToken));
        assert_eq!(v.token_count(), 0);
    }
}
