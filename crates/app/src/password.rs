//! Passwords for the web pages: generated from the OS CSPRNG, stored as
//! Argon2id PHC strings, hashed and checked off the async runtime. A hash
//! that cannot be made is an error, never an empty or placeholder hash.
//! Sign-in checks go through an [`Argon2Gate`], which bounds how many run
//! at once (each takes about 19 MiB and a core) and how many may wait, and
//! lends each its working memory from a pool: a flood of sign-ins neither
//! queues hashes without bound nor makes the allocator keep a fresh 19 MiB
//! for every thread that ever ran one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use argon2::password_hash::{rand_core::OsRng, PasswordHash as Phc, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
pub use latchkey_core::secret::PasswordHash;
use rand::{distributions::Alphanumeric, Rng};
pub use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

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
    verify_in(password, phc, &mut Vec::new())
}

/// [`verify_blocking`] with Argon2's working memory in `memory`, grown to
/// the hash's memory cost and left allocated for the next check. The
/// computed hash is compared with the stored one in constant time.
pub fn verify_in(password: &SecretString, phc: &PasswordHash, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = Phc::new(phc.expose_secret()) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(version), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        parsed.version.map(Version::try_from).transpose(),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    memory.resize(params.block_count(), Block::new());
    let mut computed = [0u8; 64];
    let Some(computed) = computed.get_mut(..expected.len()) else {
        return false;
    };
    Argon2::new(algorithm, version.unwrap_or_default(), params)
        .hash_password_into_with_memory(password.expose_secret().as_bytes(), salt, computed, &mut memory[..])
        .is_ok()
        && bool::from(expected.as_bytes().ct_eq(computed))
}

/// Bounds the Argon2 checks run for sign-ins: at most `workers` at once
/// (one per core by default) and at most `max_waiting` waiting, each for at
/// most `max_wait`. Past that a check is refused at once
/// ([`Argon2Gate::verify`] answers `None`), so a flood of sign-ins is
/// answered 429 instead of queueing hashes, and memory, without bound.
#[derive(Debug)]
pub struct Argon2Gate {
    permits: Arc<tokio::sync::Semaphore>,
    /// Working memory for the checks, one set per worker at most.
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
    waiting: AtomicUsize,
    max_waiting: usize,
    max_wait: Duration,
}

/// How long a sign-in may wait for a free Argon2 worker.
pub const MAX_ARGON2_WAIT: Duration = Duration::from_secs(2);

impl Argon2Gate {
    pub fn new(workers: usize, max_waiting: usize, max_wait: Duration) -> Argon2Gate {
        Argon2Gate {
            permits: Arc::new(tokio::sync::Semaphore::new(workers.max(1))),
            memory: Arc::default(),
            waiting: AtomicUsize::new(0),
            max_waiting,
            max_wait,
        }
    }

    /// One worker per core (`std::thread::available_parallelism`), and
    /// eight waiting per worker.
    pub fn sized_to_cores() -> Argon2Gate {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Argon2Gate::new(cores, 8 * cores, MAX_ARGON2_WAIT)
    }

    /// Checks a password on a blocking thread once a worker is free;
    /// `None` when none frees up in time or too many already wait. The
    /// worker stays taken until the check ends, even if the caller goes
    /// away first.
    pub async fn verify(&self, password: SecretString, phc: Arc<PasswordHash>) -> Result<Option<bool>> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Ok(None);
                }
                let waited = tokio::time::timeout(self.max_wait, self.permits.clone().acquire_owned()).await;
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                match waited {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(closed)) => return Err(AppError::Internal(format!("checking a password: {closed}"))),
                    Err(_) => return Ok(None),
                }
            }
        };
        let pool = self.memory.clone();
        tokio::task::spawn_blocking(move || {
            let mut memory = pool
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()
                .unwrap_or_default();
            let matches = verify_in(&password, &phc, &mut memory);
            pool.lock().unwrap_or_else(PoisonError::into_inner).push(memory);
            drop(permit);
            matches
        })
        .await
        .map(Some)
        .map_err(|e| AppError::Internal(format!("checking a password: {e}")))
    }
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
    fn checks_in_reused_memory_agree_with_argon2s_own() {
        use argon2::PasswordVerifier;
        let h = hash_blocking(&SecretString::from("correct horse")).expect("hash");
        let small = |algorithm, m, t, p, len| {
            Argon2::new(
                algorithm,
                Version::V0x13,
                Params::new(m, t, p, Some(len)).expect("params"),
            )
            .hash_password(b"pw", &SaltString::generate(&mut OsRng))
            .expect("hash")
            .to_string()
        };
        let (id, i) = (
            small(Algorithm::Argon2id, 64, 1, 1, 16),
            small(Algorithm::Argon2i, 32, 2, 2, 40),
        );
        let mut memory = Vec::new();
        for (password, phc) in [
            ("correct horse", h.expose_secret()),
            ("wrong", h.expose_secret()),
            ("", h.expose_secret()),
            // Other algorithms, parameters and output lengths.
            ("pw", id.as_str()),
            ("px", id.as_str()),
            ("pw", i.as_str()),
            ("pw", h.expose_secret()),
            // Malformed: no hash, a bad salt, not PHC at all.
            ("pw", id.rsplit_once('$').map_or("", |(head, _)| head)),
            ("pw", "$argon2id$v=19$m=64,t=1,p=1$!!!$UjqAL8TzDg6x8rj8+0Ubxg"),
            ("pw", "not a phc string"),
        ] {
            let theirs = Phc::new(phc)
                .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok());
            let ours = verify_in(
                &SecretString::from(password),
                &PasswordHash::new(phc.to_owned()),
                &mut memory,
            );
            assert_eq!(ours, theirs, "{password:?} against {phc}");
        }
        assert!(verify_in(
            &SecretString::from("pw"),
            &PasswordHash::new(id.clone()),
            &mut memory
        ));
        assert!(verify_in(&SecretString::from("pw"), &PasswordHash::new(i), &mut memory));
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

    #[tokio::test]
    async fn the_gate_refuses_checks_past_its_workers_and_waiting_room() {
        let gate = Arc::new(Argon2Gate::new(1, 1, Duration::from_secs(30)));
        let phc = Arc::new(hash_blocking(&SecretString::from("pw")).expect("hash"));
        let busy = gate.permits.clone().acquire_owned().await.expect("the only worker");
        let waiter = tokio::spawn({
            let (gate, phc) = (gate.clone(), phc.clone());
            async move { gate.verify(SecretString::from("pw"), phc).await }
        });
        while gate.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        let refused = gate
            .verify(SecretString::from("pw"), phc.clone())
            .await
            .expect("verify");
        assert_eq!(refused, None, "no room to wait");
        drop(busy);
        assert_eq!(waiter.await.expect("join").expect("verify"), Some(true));
        let short = Argon2Gate::new(1, 4, Duration::from_millis(10));
        let _busy = short.permits.clone().acquire_owned().await.expect("the only worker");
        assert_eq!(short.verify(SecretString::from("pw"), phc).await.expect("verify"), None);
    }
}
