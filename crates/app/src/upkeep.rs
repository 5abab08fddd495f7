//! The background work that keeps a process's [`App`] current and its
//! counts shared, wherever that process verifies tokens: a latchkey server
//! (`latchkey-server`'s tasks) or a Rust service verifying in process
//! (`latchkey-tower`). Both must behave the same towards the database and
//! the other nodes, so the loops are written once, here:
//!
//! - following the change log (other processes' changes reach this one's
//!   verifier within the poll interval; past `max_staleness` out of touch,
//!   [`App::is_stale`] says so and requests get 503);
//! - flushing `last_used` and hourly usage in batches, and once more when
//!   the loops stop;
//! - sharing rate-limit counts with the other nodes (every 250 ms, the
//!   estimate of theirs moved on every 50 ms; ARCHITECTURE.md, "Rate limits
//!   across nodes");
//! - forgetting expired windows of the per-address failure limiters.
//!
//! What only a server does (the token policy's sweeper, pruning the change
//! log, usage and rate counts) stays in the server, which uses [`interval`]
//! and [`next_tick`] for its own loops.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{App, RateLimiter};

/// How a process keeps current. The defaults are a server's
/// (`latchkey serve --poll-interval-ms 25 --max-staleness 5
/// --flush-interval-secs 10`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upkeep {
    /// How often the change log is read (on PostgreSQL, notifications wake
    /// the follower sooner and the log is read every `max_staleness / 4`).
    pub poll_interval: Duration,
    /// How long the process may be out of touch with the database before
    /// [`App::is_stale`] turns true and it refuses to vouch for what it
    /// remembers (503).
    pub max_staleness: Duration,
    /// How often `last_used` and hourly usage are written.
    pub flush_interval: Duration,
}

impl Default for Upkeep {
    fn default() -> Self {
        Upkeep {
            poll_interval: Duration::from_millis(25),
            max_staleness: Duration::from_secs(5),
            flush_interval: Duration::from_secs(10),
        }
    }
}

/// Starts the loops; they stop when `stop` turns true (or its sender is
/// dropped), and the flusher writes what it holds before it returns.
/// `limiters` are the per-address limiters whose expired windows are
/// forgotten every minute.
pub fn spawn(
    app: Arc<App>,
    upkeep: &Upkeep,
    limiters: Vec<Arc<RateLimiter<IpAddr>>>,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(app.follow(upkeep.poll_interval, upkeep.max_staleness, stopped(stop.clone()))),
        tokio::spawn(flush_usage(app.clone(), upkeep.flush_interval, stop.clone())),
        tokio::spawn(share_rate_limits(app.clone(), stop.clone())),
        tokio::spawn(forget_expired_windows(app, limiters, stop)),
    ]
}

/// Resolves once `stop` turns true, or its sender is gone.
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// A tick every `period`, the first one `period` from now; a late tick
/// delays the next rather than bunching up.
pub fn interval(period: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Waits for the next tick; false once `stop` has turned true (or its
/// sender is gone).
pub async fn next_tick(tick: &mut tokio::time::Interval, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = stop.wait_for(|s| *s) => false,
        _ = tick.tick() => true,
    }
}

async fn flush_usage(app: Arc<App>, period: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = interval(period);
    loop {
        let go_on = next_tick(&mut tick, &mut stop).await;
        if let Err(e) = app.flush_usage().await {
            tracing::warn!(error = %e, "writing last_used failed");
        }
        if !go_on {
            return;
        }
    }
}

/// How often rate-limit counts are shared with the other nodes, and how
/// often the estimate of theirs moves on in between (ARCHITECTURE.md,
/// "Rate limits across nodes").
const RATE_SYNC: Duration = Duration::from_millis(250);
const RATE_REFRESH: Duration = Duration::from_millis(50);

async fn share_rate_limits(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut tick = interval(RATE_REFRESH);
    let every = (RATE_SYNC.as_millis() / RATE_REFRESH.as_millis()).max(1) as u32;
    let mut ticks = 0u32;
    loop {
        let go_on = next_tick(&mut tick, &mut stop).await;
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(every) || !go_on {
            if let Err(e) = app.sync_rate_limits().await {
                tracing::warn!(error = %e, "sharing rate-limit counts failed; the next sync retries");
            }
        } else {
            app.refresh_rate_limits();
        }
        if !go_on {
            return;
        }
    }
}

/// Every minute: forgets the limiters' expired windows, so that their
/// memory stays bounded by the addresses seen lately.
async fn forget_expired_windows(
    app: Arc<App>,
    limiters: Vec<Arc<RateLimiter<IpAddr>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = interval(Duration::from_secs(60));
    while next_tick(&mut tick, &mut stop).await {
        let now = app.now();
        for limiter in &limiters {
            limiter.sweep(now);
        }
    }
}
