//! Secrets that must not leak by accident: the PHC hash of a web sign-in
//! password, an Admin Center session id and a CSRF token. Each holds its
//! text in a [`SecretString`] (wiped from memory when dropped), has a
//! redacted `Debug`, no `Display`, no `==` and no `Clone`; the text is
//! reached only through `expose_secret`, where it is really needed (the
//! Argon2 check, the cookie, the hidden form field). Passwords themselves
//! are plain [`SecretString`]s.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// An Argon2id PHC string, as stored for a user who may sign in to the
/// web pages.
pub struct PasswordHash(SecretString);

impl PasswordHash {
    pub fn new(phc: String) -> Self {
        PasswordHash(SecretString::from(phc))
    }

    /// The PHC string, for the Argon2 check and the database.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash([REDACTED])")
    }
}

/// An Admin Center session id: the session cookie's value. Only its
/// SHA-256 ([`SessionId::hash`]) is stored, so the sessions table cannot
/// sign anyone in.
pub struct SessionId(SecretString);

impl SessionId {
    pub fn new(id: String) -> Self {
        SessionId(SecretString::from(id))
    }

    /// The id, for the cookie.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }

    /// The SHA-256 of the id, the session's key in the database.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.expose_secret().as_bytes()).into()
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId([REDACTED])")
    }
}

/// A CSRF token: every form of a session (or the sign-in form, through
/// its own cookie) must carry it back.
pub struct CsrfToken(SecretString);

impl CsrfToken {
    pub fn new(token: String) -> Self {
        CsrfToken(SecretString::from(token))
    }

    /// The token, for the hidden form field and the cookie.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }

    /// Whether a form carried this token, compared in constant time. An
    /// empty token, expected or presented, never matches.
    pub fn matches(&self, presented: &str) -> bool {
        let expected = self.0.expose_secret().as_bytes();
        let presented = presented.as_bytes();
        !expected.is_empty() && expected.len() == presented.len() && bool::from(expected.ct_eq(presented))
    }
}

impl fmt::Debug for CsrfToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfToken([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUE: &str = "s3cr3t-value-xyz";

    #[test]
    fn debug_never_shows_the_value() {
        for shown in [
            format!("{:?}", PasswordHash::new(VALUE.to_owned())),
            format!("{:?}", SessionId::new(VALUE.to_owned())),
            format!("{:?}", CsrfToken::new(VALUE.to_owned())),
            format!("{:?}", Some(PasswordHash::new(VALUE.to_owned()))),
        ] {
            assert!(!shown.contains(VALUE), "{shown}");
            assert!(shown.contains("REDACTED"), "{shown}");
        }
    }

    #[test]
    fn csrf_tokens_match_only_the_same_non_empty_value() {
        let token = CsrfToken::new("abc".to_owned());
        assert!(token.matches("abc"));
        assert!(!token.matches("abd"));
        assert!(!token.matches("ab"));
        assert!(!token.matches("abcd"));
        assert!(!token.matches(""));
        assert!(!CsrfToken::new(String::new()).matches(""));
        assert!(!CsrfToken::new(String::new()).matches("a"));
    }

    #[test]
    fn a_session_id_is_keyed_by_its_sha256() {
        let id = SessionId::new("abc".to_owned());
        assert_eq!(
            hex::encode(id.hash()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(id.expose_secret(), "abc");
    }
}
