//! The one-time reveal of a new token's secret (after Add API token and
//! after Rotate), and the one-use nonces of the forms that make one.
//!
//! The forms post, and the answer is a redirect (post/redirect/get) to
//! `/admin/apis/api-tokens/reveal/{id}`, which shows the secret once: the
//! first GET takes it out of the store, so a reload, Back or a second tab
//! says it was already shown and creates nothing. Each form carries a
//! one-use nonce: a second submit of the same form (a double click, a
//! resubmitted POST) is sent to the first one's reveal instead of making a
//! second token; one that arrives while the first is still at work waits
//! for it.
//!
//! **Where the state lives:** an in-memory map of this server process
//! ([`Reveals`], one per router, reached as an axum `Extension`), never the
//! database: the secret is written nowhere and is wiped when the reveal is
//! taken or expires ([`PlainToken`] is a `SecretString`). Everything is
//! keyed to the session (the SHA-256 of its id): another session, even of
//! the same admin, finds nothing. Bounded: a reveal not taken within
//! [`REVEAL_TTL`] is dropped, as is a nonce unused for [`NONCE_TTL`], and
//! past [`MAX_REVEALS`] and [`MAX_NONCES`] the oldest go first (a form
//! whose nonce is gone is shown again, with what was entered, to be saved
//! once more). Nothing here is logged. Behind a load balancer with several
//! nodes, the reveal is held by the node that made the token: the Admin
//! Center needs session affinity for the reveal to be found.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use latchkey_app::session::random_secret;
use latchkey_core::id::TokenId;
use latchkey_core::token::PlainToken;

/// How long a reveal waits to be shown, and how long "already shown" is
/// remembered after.
pub const REVEAL_TTL: Duration = Duration::from_secs(10 * 60);
/// How long a form's nonce stays usable.
pub const NONCE_TTL: Duration = Duration::from_secs(2 * 60 * 60);
/// At most this many reveals (shown or not) are held.
pub const MAX_REVEALS: usize = 1_000;
/// At most this many nonces are held.
pub const MAX_NONCES: usize = 10_000;
/// A second submit waits at most this long for the first to finish.
const WAIT_FOR_FIRST: Duration = Duration::from_secs(15);

/// The nonce's form field.
pub const NONCE_FIELD: &str = "nonce";

/// A session's key: the SHA-256 of its id.
pub type SessionKey = [u8; 32];

/// What a reveal page shows.
pub struct RevealContent {
    pub heading: &'static str,
    pub token_id: TokenId,
    pub token: PlainToken,
    pub description: String,
    /// After a rotation: what became of the previous secret.
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NonceState {
    Fresh,
    /// A submit is making the token now.
    Pending,
    /// The form made a token; its reveal's id.
    Done(String),
}

struct Nonce {
    session: SessionKey,
    at: Instant,
    state: NonceState,
}

struct Reveal {
    session: SessionKey,
    at: Instant,
    token_id: TokenId,
    /// None once shown.
    content: Option<RevealContent>,
}

#[derive(Default)]
struct Inner {
    nonces: HashMap<String, Nonce>,
    reveals: HashMap<String, Reveal>,
}

/// The reveals and form nonces of this server process.
#[derive(Default)]
pub struct Reveals {
    inner: Mutex<Inner>,
}

/// What a submit's nonce allows.
pub enum Claim {
    /// The first submit: make the token, then [`Claimed::finish`].
    Fresh(Claimed),
    /// The form already made a token: its reveal's id.
    Done(String),
    /// Unknown (expired, of another session, or never issued).
    Unknown,
}

/// The right to make the one token of a form. Dropped unfinished (the
/// change was refused), the nonce can be used again.
pub struct Claimed {
    reveals: Arc<Reveals>,
    session: SessionKey,
    nonce: String,
    done: bool,
}

/// What asking for a reveal found.
pub enum Taken {
    /// The secret, shown now and never again.
    Show(RevealContent),
    /// Shown already: the token it was for.
    Shown(TokenId),
    /// Unknown or expired.
    Unknown,
}

/// Drops expired entries, then the oldest past `max`.
fn prune<V>(map: &mut HashMap<String, V>, at: impl Fn(&V) -> Instant, ttl: Duration, max: usize) {
    let now = Instant::now();
    map.retain(|_, v| now.saturating_duration_since(at(v)) < ttl);
    while map.len() > max {
        let Some(oldest) = map.iter().min_by_key(|(_, v)| at(v)).map(|(k, _)| k.clone()) else {
            break;
        };
        map.remove(&oldest);
    }
}

impl Reveals {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new nonce for a form of `session`.
    pub fn issue(&self, session: &SessionKey) -> String {
        let nonce = random_secret();
        let mut inner = self.lock();
        inner.nonces.insert(
            nonce.clone(),
            Nonce {
                session: *session,
                at: Instant::now(),
                state: NonceState::Fresh,
            },
        );
        // Nonces hold no secret: they are pruned only when there are many.
        if inner.nonces.len() > MAX_NONCES {
            prune(&mut inner.nonces, |n| n.at, NONCE_TTL, MAX_NONCES);
        }
        nonce
    }

    /// `nonce` again if it is still unused by `session`, else a new one:
    /// for a form shown again with its errors.
    pub fn keep_or_issue(&self, session: &SessionKey, nonce: &str) -> String {
        let fresh = self
            .lock()
            .nonces
            .get(nonce)
            .is_some_and(|n| n.session == *session && n.state == NonceState::Fresh && n.at.elapsed() < NONCE_TTL);
        if fresh {
            nonce.to_owned()
        } else {
            self.issue(session)
        }
    }

    /// What a submit carrying `nonce` may do. While another submit of the
    /// same form is at work, waits for it.
    pub async fn claim(self: &Arc<Self>, session: &SessionKey, nonce: &str) -> Claim {
        let start = Instant::now();
        loop {
            {
                let mut inner = self.lock();
                let Some(n) = inner
                    .nonces
                    .get_mut(nonce)
                    .filter(|n| n.session == *session && n.at.elapsed() < NONCE_TTL)
                else {
                    return Claim::Unknown;
                };
                match &n.state {
                    NonceState::Fresh => {
                        n.state = NonceState::Pending;
                        return Claim::Fresh(Claimed {
                            reveals: Arc::clone(self),
                            session: *session,
                            nonce: nonce.to_owned(),
                            done: false,
                        });
                    }
                    NonceState::Done(id) => return Claim::Done(id.clone()),
                    NonceState::Pending => {}
                }
            }
            if start.elapsed() > WAIT_FOR_FIRST {
                return Claim::Unknown;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The reveal `id` of `session`: its secret the first time, then that
    /// it was shown.
    pub fn take(&self, session: &SessionKey, id: &str) -> Taken {
        let mut inner = self.lock();
        prune(&mut inner.reveals, |r| r.at, REVEAL_TTL, MAX_REVEALS);
        match inner
            .reveals
            .get_mut(id)
            .filter(|r| r.session == *session && r.at.elapsed() < REVEAL_TTL)
        {
            None => Taken::Unknown,
            Some(r) => match r.content.take() {
                Some(content) => Taken::Show(content),
                None => Taken::Shown(r.token_id),
            },
        }
    }

    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.nonces.len(), inner.reveals.len())
    }
}

impl Claimed {
    /// Stores the reveal of the token the form made; its id.
    pub fn finish(mut self, content: RevealContent) -> String {
        let id = random_secret();
        let mut inner = self.reveals.lock();
        inner.reveals.insert(
            id.clone(),
            Reveal {
                session: self.session,
                at: Instant::now(),
                token_id: content.token_id,
                content: Some(content),
            },
        );
        prune(&mut inner.reveals, |r| r.at, REVEAL_TTL, MAX_REVEALS);
        if let Some(n) = inner.nonces.get_mut(&self.nonce) {
            n.state = NonceState::Done(id.clone());
        }
        self.done = true;
        id
    }
}

impl Drop for Claimed {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(n) = self.reveals.lock().nonces.get_mut(&self.nonce) {
            if n.state == NonceState::Pending {
                n.state = NonceState::Fresh;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::token::TokenPrefix;

    fn content() -> RevealContent {
        RevealContent {
            heading: "Add API token",
            token_id: TokenId::new(7),
            token: PlainToken::generate(&TokenPrefix::parse("lk").unwrap()),
            description: String::new(),
            note: None,
        }
    }

    #[tokio::test]
    async fn a_nonce_makes_one_reveal_shown_once_to_its_session_only() {
        let reveals = Arc::new(Reveals::default());
        let (me, other) = ([1u8; 32], [2u8; 32]);
        let nonce = reveals.issue(&me);
        assert!(matches!(reveals.claim(&other, &nonce).await, Claim::Unknown));
        assert!(matches!(reveals.claim(&me, "made up").await, Claim::Unknown));
        let Claim::Fresh(claimed) = reveals.claim(&me, &nonce).await else {
            panic!("a fresh nonce")
        };
        // A second submit while the first is at work waits for it.
        let second = {
            let reveals = Arc::clone(&reveals);
            let nonce = nonce.clone();
            tokio::spawn(async move {
                match reveals.claim(&me, &nonce).await {
                    Claim::Done(id) => Some(id),
                    _ => None,
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(120)).await;
        let id = claimed.finish(content());
        assert_eq!(second.await.unwrap().as_deref(), Some(id.as_str()));
        assert!(matches!(reveals.claim(&me, &nonce).await, Claim::Done(ref d) if *d == id));

        assert!(matches!(reveals.take(&other, &id), Taken::Unknown));
        assert!(matches!(reveals.take(&me, &id), Taken::Show(c) if c.token_id == TokenId::new(7)));
        assert!(matches!(reveals.take(&me, &id), Taken::Shown(t) if t == TokenId::new(7)));
        assert!(matches!(reveals.take(&me, "made up"), Taken::Unknown));
    }

    #[tokio::test]
    async fn a_refused_change_frees_the_nonce_for_another_try() {
        let reveals = Arc::new(Reveals::default());
        let me = [1u8; 32];
        let nonce = reveals.issue(&me);
        let Claim::Fresh(claimed) = reveals.claim(&me, &nonce).await else {
            panic!("a fresh nonce")
        };
        assert_ne!(reveals.keep_or_issue(&me, &nonce), nonce, "in use");
        drop(claimed);
        assert_eq!(reveals.keep_or_issue(&me, &nonce), nonce);
        assert!(matches!(reveals.claim(&me, &nonce).await, Claim::Fresh(_)));
    }

    #[test]
    fn the_store_is_bounded() {
        let reveals = Reveals::default();
        for _ in 0..MAX_NONCES + 5 {
            reveals.issue(&[3u8; 32]);
        }
        assert_eq!(reveals.len().0, MAX_NONCES);
    }
}
