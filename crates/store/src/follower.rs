//! The follower keeps one process's [`Verifier`] current with the database.
//!
//! Every mutation appends `(entity, id)` to the `changes` table in its own
//! transaction. The follower reads entries after the last sequence number it
//! applied, with each token entry joined to the token as it stands (one
//! round trip for the common change), and re-reads each named account or
//! user. It applies the current state, not a diff, so applying an entry is
//! idempotent and a missed wake-up costs latency, never correctness. It
//! resynchronises fully on start and whenever it has lost track (the log was
//! pruned past its position, or the PostgreSQL listening connection dropped).
//!
//! The process that makes a change calls [`Follower::catch_up`] before it
//! answers, so its very next request sees the change. Other processes learn
//! of it from a PostgreSQL `NOTIFY` (woken at once) or, on SQLite, from a
//! short poll. On PostgreSQL a slower heartbeat reads the log as well, so a
//! lost notification is made up for within the heartbeat.
//!
//! **Freshness.** The follower remembers when it last read the log
//! successfully ([`Follower::age`]): everything committed before that moment
//! is in memory. A node that has lost its database keeps verifying from
//! memory while that age is within `--max-staleness`, then refuses
//! ([`Follower::is_stale`]) until a read succeeds again.
//!
//! **Counts.** It counts its full reloads after the first
//! ([`Follower::resyncs`]) and its failed reads of the database
//! ([`Follower::failures`]), for a server's `/metrics` (docs/api.md,
//! "Operations").

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use latchkey_core::id::{AccountId, TokenId, UserId};
use latchkey_core::verifier::{AccountEntry, Reload, Verifier};
use tokio::sync::Mutex;

use crate::backend::{ChangeListener, Wake};
use crate::{Change, Entity, Result, Store};

const BATCH: i64 = 1000;

pub struct Follower {
    store: Store,
    verifier: Arc<Verifier>,
    /// The last change-log sequence number applied; held while applying so
    /// that catch-ups and resynchronisations never interleave.
    applied: Mutex<i64>,
    /// When `fresh_at` counts from.
    epoch: Instant,
    /// Milliseconds after `epoch` at which the last successful read of the
    /// log started; `u64::MAX` before the first.
    fresh_at: AtomicU64,
    /// Full reloads started after the first successful one.
    resyncs: AtomicU64,
    /// Full loads completed, the first included.
    loads: AtomicU64,
    /// Reads of the database that failed: catch-ups, resyncs, listening.
    failures: AtomicU64,
}

/// The longest a PostgreSQL follower goes without reading the log when no
/// notification arrives.
const MAX_HEARTBEAT: Duration = Duration::from_secs(1);

impl Follower {
    pub fn new(store: Store, verifier: Arc<Verifier>) -> Self {
        Follower {
            store,
            verifier,
            applied: Mutex::new(0),
            epoch: Instant::now(),
            fresh_at: AtomicU64::new(u64::MAX),
            resyncs: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    /// How long ago the last successful read of the change log started:
    /// every change committed before then is in memory. `None` before the
    /// first successful read.
    pub fn age(&self) -> Option<Duration> {
        match self.fresh_at.load(Ordering::Acquire) {
            u64::MAX => None,
            at => Some(self.epoch.elapsed().saturating_sub(Duration::from_millis(at))),
        }
    }

    /// Whether this process has been out of touch with the database for
    /// longer than `max`, so that what it holds in memory can no longer be
    /// trusted to answer verifications.
    pub fn is_stale(&self, max: Duration) -> bool {
        self.age().is_none_or(|age| age > max)
    }

    /// How many full reloads this follower has started since its first
    /// successful load: each one means it had lost track of the change log
    /// (pruned past its position, or the listening connection dropped) or
    /// was asked to ([`Follower::resync`]).
    pub fn resyncs(&self) -> u64 {
        self.resyncs.load(Ordering::Relaxed)
    }

    /// How many full loads this follower has completed, its first included.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// How many of this follower's reads of the database have failed
    /// (catching up, resynchronising, listening for changes).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Counts a failed read and hands the result on.
    fn counted<T>(&self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// Records that a read which started at `started` (ms after `epoch`)
    /// succeeded; never moves freshness backwards.
    fn mark_fresh(&self, started: u64) {
        let _ = self
            .fresh_at
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                (current == u64::MAX || current < started).then_some(started)
            });
    }

    /// Loads everything afresh, then applies what changed meanwhile.
    pub async fn resync(&self) -> Result<()> {
        self.resync_counting(true).await
    }

    /// [`Follower::resync`]; `lost_track` says whether it counts as one in
    /// [`Follower::resyncs`] (the first load, when the PostgreSQL follower
    /// starts listening without having loaded, does not).
    async fn resync_counting(&self, lost_track: bool) -> Result<()> {
        let mut applied = self.applied.lock().await;
        if lost_track {
            self.count_resync();
        }
        let done = self.resync_locked(&mut applied).await;
        self.counted(done)
    }

    /// Counts a full reload, unless it is the first load.
    fn count_resync(&self) {
        if self.fresh_at.load(Ordering::Acquire) != u64::MAX {
            self.resyncs.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn resync_locked(&self, applied: &mut i64) -> Result<()> {
        // Read the position first: whatever commits during the load is
        // applied again afterwards, which is harmless.
        let position = self.store.latest_change().await?;
        let mut reload = Reload::new(self.verifier.clone());
        self.store.load_into(&mut reload).await?;
        reload.finish();
        self.loads.fetch_add(1, Ordering::Relaxed);
        *applied = position;
        // Fresh as of the catch-up, not of the load's start: the catch-up
        // reads everything committed since the position, so a load that
        // took longer than `--max-staleness` (millions of tokens) does not
        // leave the node stale once it is done.
        let started = self.now_ms();
        self.catch_up_locked(applied).await?;
        self.mark_fresh(started);
        Ok(())
    }

    /// Applies every change after the last one applied; returns how many.
    pub async fn catch_up(&self) -> Result<usize> {
        let mut applied = self.applied.lock().await;
        let started = self.now_ms();
        let n = self.counted(self.catch_up_locked(&mut applied).await)?;
        self.mark_fresh(started);
        Ok(n)
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
                        self.count_resync();
                        return Box::pin(self.resync_locked(applied)).await.map(|_| total);
                    }
                }
            }
            let n = changes.len();
            for change in changes {
                let seq = change.seq;
                self.apply(change).await?;
                *applied = seq;
            }
            total += n;
            if (n as i64) < BATCH {
                return Ok(total);
            }
        }
    }

    async fn apply(&self, change: Change) -> Result<()> {
        // The change log holds the row id of whichever entity changed; the
        // entity says which kind of id it is. A token's entry arrives with
        // the token itself; accounts and users (rarer) are read again.
        let id = change.entity_id;
        match change.entity {
            Entity::Account => {
                let id = AccountId::new(id);
                match self.store.account(id).await? {
                    Some(a) => self.verifier.upsert_account(AccountEntry::from(&a)),
                    None => self.verifier.remove_account(id),
                }
            }
            Entity::User => {
                let id = UserId::new(id);
                match self.store.user(id).await? {
                    Some(u) => self.verifier.upsert_user(u),
                    None => self.verifier.remove_user(id),
                }
            }
            Entity::Token => {
                let id = TokenId::new(id);
                match change.token {
                    Some(t) => self.verifier.upsert_token(t),
                    None => self.verifier.remove_token(id),
                }
            }
        }
        Ok(())
    }

    /// Follows the change log until `shutdown` resolves.
    ///
    /// Where the database pushes notifications (PostgreSQL), each one
    /// triggers a catch-up at once; the log is also read every
    /// `max_staleness / 4` (at most every second, at least every `poll`) so
    /// that freshness is kept up and a lost notification is made up for.
    /// When it first listens it catches up from its start's load (or loads,
    /// if it never has); whenever the listening connection drops, it
    /// resynchronises fully once it is back. Without notifications (SQLite) it reads the
    /// log every `poll`. A failed read is logged and retried; the next
    /// success catches up on everything.
    pub async fn run(
        self: Arc<Self>,
        poll: Duration,
        max_staleness: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let heartbeat = (max_staleness / 4).clamp(poll, MAX_HEARTBEAT.max(poll));
        tokio::pin!(shutdown);
        let mut listener: Option<Box<dyn ChangeListener>> = None;
        // Whether the database can push; false once it has said it cannot.
        let mut pushes = true;
        let mut connect = true;
        // Whether a listening connection was ever made: after the first, a
        // new one means track was lost.
        let mut listened = false;
        let mut tick = interval(poll);
        loop {
            if pushes && listener.is_none() && connect {
                connect = false;
                let attempt = tokio::select! {
                    _ = &mut shutdown => return,
                    attempt = self.store.change_listener() => attempt,
                };
                match attempt {
                    Ok(Some(l)) => {
                        listener = Some(l);
                        tick = interval(heartbeat);
                        // Whatever committed while nobody listened. The
                        // first time, the change log since the start's load
                        // holds it all; a connection that dropped may have
                        // missed more than notifications, so that reloads.
                        let reload = listened || self.loads() == 0;
                        let (lost_track, this) = (listened, &self);
                        let work = async move {
                            if reload {
                                this.resync_logged(lost_track).await
                            } else {
                                this.catch_up_logged().await
                            }
                        };
                        listened = true;
                        tokio::select! {
                            _ = &mut shutdown => return,
                            _ = work => {},
                        }
                    }
                    Ok(None) => pushes = false,
                    Err(e) => {
                        self.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "listening for changes failed; will retry");
                    }
                }
            }
            let wake = async {
                match listener.as_mut() {
                    Some(l) => Some(l.next().await),
                    None => std::future::pending().await,
                }
            };
            let woke = tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => None,
                woke = wake => woke,
            };
            let resync = match woke {
                None | Some(Ok(Wake::Changed)) => false,
                Some(Ok(Wake::Reconnected)) => {
                    tracing::info!("the listening connection dropped and is back; resynchronising");
                    true
                }
                Some(Err(e)) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "the listening connection failed; reconnecting");
                    listener = None;
                    connect = true;
                    tick = interval(poll);
                    continue;
                }
            };
            if pushes && listener.is_none() {
                // Retry listening once per tick; read the log meanwhile.
                connect = true;
            }
            let work = async {
                if resync {
                    self.resync_logged(true).await
                } else {
                    self.catch_up_logged().await
                }
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = work => {},
            }
        }
    }

    async fn catch_up_logged(&self) {
        if let Err(e) = self.catch_up().await {
            tracing::warn!(error = %e, "following the change log failed; will retry");
        }
    }

    async fn resync_logged(&self, lost_track: bool) {
        if let Err(e) = self.resync_counting(lost_track).await {
            tracing::warn!(error = %e, "resynchronising failed; will retry");
        }
    }
}

fn interval(period: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}
