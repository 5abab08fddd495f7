//! Admin Center sessions as the service layer keeps them: a random id
//! (the cookie's value, which the web edge sets and reads) stored
//! server-side only as its SHA-256, so every node sharing the database
//! accepts it and the table cannot sign anyone in; idle and absolute
//! expiry; and the per-session CSRF token.

use std::net::IpAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use latchkey_core::secret::{CsrfToken, SessionId};
use latchkey_core::{account::Account, user::User};
use latchkey_store::backend::SessionRecord;
use rand::RngCore;

use crate::access::UserAccess;
use crate::app::App;
use crate::error::Result;

/// A session ends after this long without a request.
pub const IDLE_TIMEOUT: i64 = 30 * 60;
/// A session ends this long after sign-in, however busy.
pub const ABSOLUTE_TIMEOUT: i64 = 12 * 60 * 60;
/// `last_seen_at` is written at most this often per session.
const TOUCH_EVERY: i64 = 60;

/// 32 bytes from the OS CSPRNG, base64url (session ids, CSRF tokens).
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new CSRF token, 32 random bytes.
pub fn new_csrf_token() -> CsrfToken {
    CsrfToken::new(random_secret())
}

/// A live session: who is signed in, and the right they act with.
#[derive(Debug)]
pub struct Session {
    id_hash: [u8; 32],
    csrf_token: CsrfToken,
    pub user: User,
    pub account: Account,
    pub access: UserAccess,
}

impl Session {
    /// The token every form of this session must carry.
    pub fn csrf_token(&self) -> &CsrfToken {
        &self.csrf_token
    }

    /// Whether a form carried this session's CSRF token.
    pub fn csrf_matches(&self, given: &str) -> bool {
        self.csrf_token.matches(given)
    }
}

impl App {
    /// Starts a session for `user`, ending the browser's `previous` one (the
    /// id is renewed on every sign-in) and pruning expired ones. Returns the
    /// new session id, for the cookie.
    pub(crate) async fn start_session(&self, user: &User, previous: Option<&SessionId>) -> Result<SessionId> {
        let now = self.now();
        if let Some(old) = previous {
            self.store.delete_session(&old.hash()).await?;
        }
        self.store
            .prune_sessions(now.minus_secs(IDLE_TIMEOUT), now.minus_secs(ABSOLUTE_TIMEOUT))
            .await?;
        let id = SessionId::new(random_secret());
        let record = SessionRecord {
            id_hash: id.hash(),
            account_id: user.account_id,
            user_id: user.id,
            csrf_token: new_csrf_token(),
            created_at: now,
            last_seen_at: now,
        };
        self.store.insert_session(&record).await?;
        Ok(id)
    }

    /// The live session with id `id` (unexpired, its user still able to
    /// sign in), for a request from `ip`. An expired or orphaned session is
    /// deleted.
    pub async fn session(&self, id: &SessionId, ip: IpAddr) -> Result<Option<Session>> {
        let hash = id.hash();
        let Some(record) = self.store.session(&hash).await? else {
            return Ok(None);
        };
        let now = self.now();
        let expired =
            now.secs_since(record.last_seen_at) > IDLE_TIMEOUT || now.secs_since(record.created_at) > ABSOLUTE_TIMEOUT;
        let user = self
            .store
            .user(record.user_id)
            .await?
            .filter(|u| u.account_id == record.account_id && u.can_authenticate());
        let account = self.store.account(record.account_id).await?;
        let (Some(user), Some(account), false) = (user, account, expired) else {
            self.store.delete_session(&hash).await?;
            return Ok(None);
        };
        if now.secs_since(record.last_seen_at) >= TOUCH_EVERY {
            self.store.touch_session(&hash, now).await?;
        }
        Ok(Some(Session {
            id_hash: hash,
            csrf_token: record.csrf_token,
            access: UserAccess::new(&user, ip),
            user,
            account,
        }))
    }

    /// Ends a session (sign-out).
    pub async fn end_session(&self, session: Session) -> Result<()> {
        Ok(self.store.delete_session(&session.id_hash).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_compare_whole() {
        let token = new_csrf_token();
        let same = token.expose_secret().to_owned();
        assert!(token.matches(&same));
        assert!(!token.matches(&same[1..]));
        assert!(!token.matches(""));
        assert!(!format!("{token:?}").contains(&same));
    }

    #[test]
    fn secrets_are_43_base64url_characters() {
        let s = random_secret();
        assert_eq!(s.len(), 43);
        assert_ne!(s, random_secret());
    }
}
