//! Passwords for the web pages: generated from the OS CSPRNG, stored as
//! Argon2id PHC strings, hashed and checked off the async runtime. A hash
//! that cannot be made is an error, never an empty or placeholder hash.

use std::sync::Arc;

use argon2::password_hash::{rand_core::OsRng, PasswordHash as Phc, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
pub use latchkey_core::secret::PasswordHash;
use rand::{distributions::Alphanumeric, Rng};
pub use secrecy::{ExposeSecret, SecretString};

use crate::error::{AppError, Result};

/// A random password of 20 base62 characters (~119 bits).
pub fn generate() -> SecretString {
    SecretString::from(
        rand::rngs::OsRng
            .sample_iter(&Alphanumeric)
            .take(20)
            .map(char::from)
            .collect::<String>(),
    )
}

/// Hashes a password with Argon2id (the crate's default parameters).
pub fn hash_blocking(password: &SecretString) -> Result<PasswordHash> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .map(|h| PasswordHash::new(h.to_string()))
        .map_err(|e| AppError::Password(e.to_string()))
}

/// Hashes on a blocking thread.
pub async fn hash(password: SecretString) -> Result<PasswordHash> {
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|e| AppError::Password(e.to_string()))?
}

/// Checks a password against a PHC string; a malformed hash never matches.
pub fn verify_blocking(password: &SecretString, phc: &PasswordHash) -> bool {
    Phc::new(phc.expose_secret())
        .map(|h| {
            Argon2::default()
                .verify_password(password.expose_secret().as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Checks on a blocking thread.
pub async fn verify(password: SecretString, phc: Arc<PasswordHash>) -> Result<bool> {
    tokio::task::spawn_blocking(move || verify_blocking(&password, &phc))
        .await
        .map_err(|e| AppError::Internal(format!("checking a password: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash_blocking(&SecretString::from("correct horse")).expect("hash");
        assert!(h.expose_secret().starts_with("$argon2id$"));
        assert!(verify_blocking(&SecretString::from("correct horse"), &h));
        assert!(!verify_blocking(&SecretString::from("wrong"), &h));
        assert!(!verify_blocking(
            &SecretString::from("x"),
            &PasswordHash::new("not a phc string".to_owned())
        ));
    }

    #[test]
    fn debug_shows_neither_a_password_nor_its_hash() {
        let password = SecretString::from("correct horse");
        let h = hash_blocking(&password).expect("hash");
        let shown = format!("{password:?} {h:?}");
        assert!(!shown.contains("correct horse") && !shown.contains("argon2"), "{shown}");
    }

    #[test]
    fn generated_passwords_are_long_and_distinct() {
        let (a, b) = (generate(), generate());
        assert_eq!(a.expose_secret().len(), 20);
        assert_ne!(a.expose_secret(), b.expose_secret());
    }
}
