//! Signing in to the Admin Center: one answer for an unknown account, an
//! unknown email and a wrong password, with a dummy Argon2id check for
//! unknown users so that timing does not tell them apart; failed attempts
//! limited per client address and per account and email; a new session on
//! success.

use std::net::IpAddr;
use std::sync::Arc;

use latchkey_core::secret::SessionId;
use latchkey_core::{time::Timestamp, user::normalize_email};

use crate::app::App;
use crate::error::Result;
use crate::limiter::RateLimiter;
use crate::password::{self, PasswordHash, SecretString};

/// Failed sign-ins allowed per client address per minute.
pub const FAILED_SIGN_INS_PER_ADDRESS: u32 = 20;
/// Failed sign-ins allowed per account and email per minute.
pub const FAILED_SIGN_INS_PER_LOGIN: u32 = 5;

/// The two sign-in limits.
#[derive(Debug)]
pub(crate) struct SignInLimits {
    per_address: RateLimiter<IpAddr>,
    /// Keyed by (subdomain, normalised email).
    per_login: RateLimiter<(String, String)>,
}

impl Default for SignInLimits {
    fn default() -> Self {
        SignInLimits {
            per_address: RateLimiter::new(FAILED_SIGN_INS_PER_ADDRESS),
            per_login: RateLimiter::new(FAILED_SIGN_INS_PER_LOGIN),
        }
    }
}

impl SignInLimits {
    fn blocked(&self, ip: IpAddr, login: &(String, String), now: Timestamp) -> bool {
        self.per_address.blocked(&ip, now).is_some() || self.per_login.blocked(login, now).is_some()
    }

    fn record_failure(&self, ip: IpAddr, login: (String, String), now: Timestamp) {
        self.per_address.record_failure(ip, now);
        self.per_login.record_failure(login, now);
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
    /// Unknown account or email, wrong password, or a user who cannot sign in.
    Refused,
}

impl App {
    /// Checks a sign-in and, when it succeeds, starts a session.
    pub async fn sign_in(&self, attempt: SignInAttempt<'_>) -> Result<SignIn> {
        let now = self.now();
        let email = normalize_email(attempt.email);
        let login = (attempt.subdomain.to_owned(), email.clone());
        if self.sign_in_limits.blocked(attempt.ip, &login, now) {
            return Ok(SignIn::TooMany);
        }
        let user = match self.store.account_by_subdomain(attempt.subdomain).await? {
            Some(account) => self.store.user_credentials(account.id, &email).await?,
            None => None,
        };
        let (user, phc) = match user {
            Some((user, Some(phc))) => (Some(user), Arc::new(phc)),
            _ => (None, self.dummy_hash().await?),
        };
        let matches = password::verify(attempt.password, phc).await?;
        let Some(user) = user.filter(|u| matches && u.can_authenticate()) else {
            self.sign_in_limits.record_failure(attempt.ip, login, now);
            return Ok(SignIn::Refused);
        };
        let session_id = self.start_session(&user, attempt.previous_session).await?;
        Ok(SignIn::Started { session_id })
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

    #[test]
    fn failed_sign_ins_block_until_the_minute_ends() {
        let limits = SignInLimits::default();
        let ip = IpAddr::from([10, 0, 0, 1]);
        let login = ("acme".to_owned(), "a@b.c".to_owned());
        for _ in 0..FAILED_SIGN_INS_PER_LOGIN {
            assert!(!limits.blocked(ip, &login, at(120)));
            limits.record_failure(ip, login.clone(), at(120));
        }
        assert!(limits.blocked(ip, &login, at(130)));
        let other = ("acme".to_owned(), "x@b.c".to_owned());
        assert!(!limits.blocked(ip, &other, at(130)));
        assert!(!limits.blocked(ip, &login, at(180)));
    }

    #[test]
    fn an_address_is_blocked_across_logins() {
        let limits = SignInLimits::default();
        let ip = IpAddr::from([10, 0, 0, 1]);
        for n in 0..FAILED_SIGN_INS_PER_ADDRESS {
            limits.record_failure(ip, ("acme".to_owned(), format!("{n}@b.c")), at(120));
        }
        assert!(limits.blocked(ip, &("acme".to_owned(), "new@b.c".to_owned()), at(130)));
        assert!(!limits.blocked(
            IpAddr::from([10, 0, 0, 2]),
            &("acme".to_owned(), "new@b.c".to_owned()),
            at(130)
        ));
    }
}
