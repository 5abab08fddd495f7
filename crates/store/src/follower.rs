//! The follower keeps one process's [`Verifier`] current with the database.
//!
//! Every mutation appends `(entity, id)` to the `changes` table in its own
//! transaction. The follower reads entries after the last sequence number it
//! applied and re-reads each named entity, so applying an entry is
//! idempotent and a missed wake-up costs latency, never correctness. It
//! resynchronises fully on start and whenever it has lost track (the log was
//! pruned past its position).
//!
//! The process that makes a change calls [`Follower::catch_up`] before it
//! answers, so its very next request sees the change; other processes pick
//! it up on their next poll.

use std::sync::Arc;
use std::time::Duration;

use latchkey_core::verifier::{AccountEntry, Verifier};
use tokio::sync::Mutex;

use crate::{Change, Entity, Result, Store};

const BATCH: i64 = 1000;

pub struct Follower {
    store: Store,
    verifier: Arc<Verifier>,
    /// The last change-log sequence number applied; held while applying so
    /// that catch-ups and resynchronisations never interleave.
    applied: Mutex<i64>,
}

impl Follower {
    pub fn new(store: Store, verifier: Arc<Verifier>) -> Self {
        Follower {
            store,
            verifier,
            applied: Mutex::new(0),
        }
    }

    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    /// Loads everything afresh, then applies what changed meanwhile.
    pub async fn resync(&self) -> Result<()> {
        let mut applied = self.applied.lock().await;
        self.resync_locked(&mut applied).await
    }

    async fn resync_locked(&self, applied: &mut i64) -> Result<()> {
        // Read the position first: whatever commits during the load is
        // applied again afterwards, which is harmless.
        let position = self.store.latest_change().await?;
        let snapshot = self.store.load_snapshot().await?;
        self.verifier.replace_all(snapshot);
        *applied = position;
        self.catch_up_locked(applied).await?;
        Ok(())
    }

    /// Applies every change after the last one applied; returns how many.
    pub async fn catch_up(&self) -> Result<usize> {
        let mut applied = self.applied.lock().await;
        self.catch_up_locked(&mut applied).await
    }

    async fn catch_up_locked(&self, applied: &mut i64) -> Result<usize> {
        let mut total = 0;
        loop {
            let changes = self.store.changes_since(*applied, BATCH).await?;
            if let Some(first) = changes.first() {
                if first.seq > *applied + 1 && *applied > 0 {
                    // Entries between were pruned or are not visible: we
                    // cannot know what they touched.
                    if self.store.oldest_change().await?.is_some_and(|o| o > *applied + 1) {
                        tracing::warn!(
                            applied = *applied,
                            next = first.seq,
                            "change log moved past this process; resynchronising"
                        );
                        return Box::pin(self.resync_locked(applied)).await.map(|_| total);
                    }
                }
            }
            let n = changes.len();
            for change in changes {
                self.apply(&change).await?;
                *applied = change.seq;
            }
            total += n;
            if (n as i64) < BATCH {
                return Ok(total);
            }
        }
    }

    async fn apply(&self, change: &Change) -> Result<()> {
        let id = change.entity_id;
        match change.entity {
            Entity::Account => match self.store.account(id).await? {
                Some(a) => self.verifier.upsert_account(AccountEntry::from(&a)),
                None => self.verifier.remove_account(id),
            },
            Entity::User => match self.store.user(id).await? {
                Some(u) => self.verifier.upsert_user(u),
                None => self.verifier.remove_user(id),
            },
            Entity::Token => match self.store.token_auth(id).await? {
                Some(t) => self.verifier.upsert_token(t),
                None => self.verifier.remove_token(id),
            },
        }
        Ok(())
    }

    /// Polls the change log until `shutdown` resolves. A failed poll is
    /// logged and retried; the next success catches up on everything.
    pub async fn run(self: Arc<Self>, every: Duration, shutdown: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {
                    if let Err(e) = self.catch_up().await {
                        tracing::warn!(error = %e, "following the change log failed; will retry");
                    }
                }
            }
        }
    }
}
