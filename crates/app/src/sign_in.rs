//! Signing in to the Admin Center: one answer for an unknown account, an
//! unknown email and a wrong password, with a dummy Argon2id check for
//! unknown users so that timing does not tell them apart; failed attempts
//! limited per client address and per account and email; a new session on
//! success.
//!
//! The limits hold under concurrency: an attempt reserves its place in both
//! limits before its password is hashed (one atomic step per limit, see
//! `limiter`), and gives it back only when it signs in or is not checked at
//! all. The Argon2 checks themselves pass an [`Argon2Gate`] sized to the
//! cores, so a flood of sign-ins gets 429s instead of memory growing with
//! every hash in flight.

use std::net::IpAddr;
use std::sync::Arc;

use latchkey_core::secret::SessionId;
use latchkey_core::{time::Timestamp, user::normalize_email};

use crate::app::App;
use crate::error::Result;
use crate::limiter::{RateLimiter, Reservation};
use crate::password::{self, Argon2Gate, PasswordHash, SecretString};

/// Failed sign-ins allowed per client address per minute.
pub const FAILED_SIGN_INS_PER_ADDRESS: u32 = 20;
/// Failed sign-ins allowed per account and email per minute.
pub const FAILED_SIGN_INS_PER_LOGIN: u32 = 5;

/// The two sign-in limits, and the gate the Argon2 checks pass.
#[derive(Debug)]
pub(crate) struct SignInLimits {
    per_address: RateLimiter<IpAddr>,
    /// Keyed by (subdomain, normalised email).
    per_login: RateLimiter<(String, String)>,
    argon2: Argon2Gate,
}

impl Default for SignInLimits {
    fn default() -> Self {
        SignInLimits {
            per_address: RateLimiter::new(FAILED_SIGN_INS_PER_ADDRESS),
            per_login: RateLimiter::new(FAILED_SIGN_INS_PER_LOGIN),
            argon2: Argon2Gate::sized_to_cores(),
        }
    }
}

/// An attempt's place in both limits, counted as a failure unless given back.
struct Reserved {
    address: Reservation,
    login: Reservation,
}

impl SignInLimits {
    /// Counts an attempt against both limits at once, or neither: `None`
    /// when either has no room left this minute.
    fn reserve(&self, ip: IpAddr, login: &(String, String), now: Timestamp) -> Option<Reserved> {
        let address = self.per_address.try_reserve(&ip, now).ok()?;
        match self.per_login.try_reserve(login, now) {
            Ok(login) => Some(Reserved { address, login }),
            Err(_) => {
                self.per_address.release(&ip, address);
                None
            }
        }
    }

    /// Gives back an attempt that was not a failure.
    fn release(&self, ip: IpAddr, login: &(String, String), reserved: Reserved) {
        self.per_address.release(&ip, reserved.address);
        self.per_login.release(login, reserved.login);
    }

    pub(crate) fn sweep(&self, now: Timestamp) {
        self.per_address.sweep(now);
        self.per_login.sweep(now);
    }
}

/// What a sign-in attempt comes with.
#[derive(Debug)]
pub struct SignInAttempt<'a> {
    pub ip: IpAddr,
    pub subdomain: &'a str,
    pub email: &'a str,
    pub password: SecretString,
    /// The id of the session the browser already has, ended on success.
    pub previous_session: Option<&'a SessionId>,
}

/// How a sign-in attempt ended.
#[derive(Debug)]
pub enum SignIn {
    /// Signed in: the new session's id, for the cookie.
    Started { session_id: SessionId },
    /// Too many failed attempts this minute, for the address or the login.
    TooMany,
    /// Too many sign-ins being checked at once: the password was not
    /// checked and the attempt does not count; try again in a moment.
    Busy,
    /// Unknown account or email, wrong password, or a user who cannot sign in.
    Refused,
}

/// What checking a password came to.
enum Checked {
    Accepted(latchkey_core::user::User),
    Refused,
    Busy,
}

impl App {
    /// Checks a sign-in and, when it succeeds, starts a session.
    pub async fn sign_in(&self, attempt: SignInAttempt<'_>) -> Result<SignIn> {
        let SignInAttempt {
            ip,
            subdomain,
            email,
            password,
            previous_session,
        } = attempt;
        let now = self.now();
        let email = normalize_email(email);
        let login = (subdomain.to_owned(), email.clone());
        let limits = &self.sign_in_limits;
        let Some(reserved) = limits.reserve(ip, &login, now) else {
            return Ok(SignIn::TooMany);
        };
        match self.check_password(subdomain, &email, password).await {
            Ok(Checked::Busy) => {
                limits.release(ip, &login, reserved);
                Ok(SignIn::Busy)
            }
            // The reservation stays: it is this minute's failure.
            Ok(Checked::Refused) => Ok(SignIn::Refused),
            Ok(Checked::Accepted(user)) => {
                limits.release(ip, &login, reserved);
                let session_id = self.start_session(&user, previous_session).await?;
                Ok(SignIn::Started { session_id })
            }
            Err(e) => {
                limits.release(ip, &login, reserved);
                Err(e)
            }
        }
    }

    /// The user of `email` at `subdomain`, if `password` is theirs and they
    /// may sign in (the dummy hash is checked for an unknown one).
    async fn check_password(&self, subdomain: &str, email: &str, password: SecretString) -> Result<Checked> {
        let user = match self.store.account_by_subdomain(subdomain).await? {
            Some(account) => self.store.user_credentials(account.id, email).await?,
            None => None,
        };
        let (user, phc) = match user {
            Some((user, Some(phc))) => (Some(user), Arc::new(phc)),
            _ => (None, self.dummy_hash().await?),
        };
        let Some(matches) = self.sign_in_limits.argon2.verify(password, phc).await? else {
            return Ok(Checked::Busy);
        };
        Ok(match user.filter(|u| matches && u.can_authenticate()) {
            Some(user) => Checked::Accepted(user),
            None => Checked::Refused,
        })
    }

    async fn dummy_hash(&self) -> Result<Arc<PasswordHash>> {
        self.dummy_hash
            .get_or_try_init(|| async { password::hash(password::generate()).await.map(Arc::new) })
            .await
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix(secs)
    }

    fn login(email: &str) -> (String, String) {
        ("acme".to_owned(), email.to_owned())
    }

    #[test]
    fn failed_sign_ins_block_until_the_minute_ends() {
        let limits = SignInLimits::default();
        let ip = IpAddr::from([10, 0, 0, 1]);
        for _ in 0..FAILED_SIGN_INS_PER_LOGIN {
            assert!(limits.reserve(ip, &login("a@b.c"), at(120)).is_some());
        }
        assert!(limits.reserve(ip, &login("a@b.c"), at(130)).is_none());
        assert!(limits.reserve(ip, &login("x@b.c"), at(130)).is_some());
        assert!(limits.reserve(ip, &login("a@b.c"), at(180)).is_some());
    }

    #[test]
    fn an_address_is_blocked_across_logins() {
        let limits = SignInLimits::default();
        let ip = IpAddr::from([10, 0, 0, 1]);
        for n in 0..FAILED_SIGN_INS_PER_ADDRESS {
            assert!(limits.reserve(ip, &login(&format!("{n}@b.c")), at(120)).is_some());
        }
        assert!(limits.reserve(ip, &login("new@b.c"), at(130)).is_none());
        assert!(limits
            .reserve(IpAddr::from([10, 0, 0, 2]), &login("new@b.c"), at(130))
            .is_some());
    }

    #[test]
    fn a_refused_login_takes_no_place_from_its_address_and_a_release_gives_both_back() {
        let limits = SignInLimits::default();
        let ip = IpAddr::from([10, 0, 0, 1]);
        let mut held = Vec::new();
        for _ in 0..FAILED_SIGN_INS_PER_LOGIN {
            held.push(limits.reserve(ip, &login("a@b.c"), at(120)).expect("room"));
        }
        // Refused for the login: the address keeps its room.
        for _ in 0..3 * FAILED_SIGN_INS_PER_ADDRESS {
            assert!(limits.reserve(ip, &login("a@b.c"), at(120)).is_none());
        }
        for n in FAILED_SIGN_INS_PER_LOGIN..FAILED_SIGN_INS_PER_ADDRESS {
            assert!(limits.reserve(ip, &login(&format!("{n}@b.c")), at(120)).is_some());
        }
        assert!(limits.reserve(ip, &login("z@b.c"), at(120)).is_none());
        // A sign-in that succeeded gives its place back in both.
        let first = held.pop().expect("held");
        limits.release(ip, &login("a@b.c"), first);
        assert!(limits.reserve(ip, &login("a@b.c"), at(121)).is_some());
    }
}
