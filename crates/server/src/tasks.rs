//! Background work of a running server: following the change log (other
//! processes' changes), flushing `last_used` in batches, sweeping tokens
//! under each account's token policy (README.md, "Token policy"), and
//! pruning.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use latchkey_app::{App, RateLimiter};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long change-log entries are kept; a process that falls further
/// behind resynchronises fully.
const CHANGE_RETENTION_SECS: i64 = 3600;

/// How long hourly token usage is kept (README.md, "Usage").
const USAGE_RETENTION_DAYS: i64 = 90;

/// Starts the background tasks; they stop when `stop` turns true, and the
/// flusher writes what it holds before it returns.
pub fn spawn(
    app: Arc<App>,
    limiters: Vec<Arc<RateLimiter<IpAddr>>>,
    config: &crate::ServerConfig,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let poll = config.poll_interval;
    let max_staleness = config.max_staleness;
    let flush = config.flush_interval;
    vec![
        tokio::spawn(app.follow(poll, max_staleness, stopped(stop.clone()))),
        tokio::spawn(flush_usage(app.clone(), flush, stop.clone())),
        tokio::spawn(share_rate_limits(app.clone(), stop.clone())),
        tokio::spawn(sweep(app.clone(), config.sweep_interval, stop.clone())),
        tokio::spawn(maintenance(app, limiters, stop)),
    ]
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn interval(period: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Waits for the next tick; false once `stop` has turned true.
async fn next_tick(tick: &mut tokio::time::Interval, stop: &mut watch::Receiver<bool>) -> bool {
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

/// Every sweep interval: deactivates and deletes what each account's token
/// policy says to. However many nodes run, one sweeps at a time (the
/// store's lease), and each change is judged again under its account's
/// lock, so it happens once, with one audit event by `system`.
async fn sweep(app: Arc<App>, period: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = interval(period);
    while next_tick(&mut tick, &mut stop).await {
        match app.sweep(None, None, false, true).await {
            Ok(Some(done)) if !done.is_empty() => tracing::info!(changes = done.len(), "token policy sweep"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "the token policy sweep failed; the next one retries"),
        }
    }
}

/// Every minute: forgets expired rate-limit windows and prunes the change log.
async fn maintenance(app: Arc<App>, limiters: Vec<Arc<RateLimiter<IpAddr>>>, mut stop: watch::Receiver<bool>) {
    let mut tick = interval(Duration::from_secs(60));
    while next_tick(&mut tick, &mut stop).await {
        let now = app.now();
        for limiter in &limiters {
            limiter.sweep(now);
        }
        app.sweep_sign_in_limits(now);
        if let Err(e) = app.prune_change_log(now.minus_secs(CHANGE_RETENTION_SECS)).await {
            tracing::warn!(error = %e, "pruning the change log failed");
        }
        if let Err(e) = app.prune_usage(now.minus_secs(USAGE_RETENTION_DAYS * 86_400)).await {
            tracing::warn!(error = %e, "pruning token usage failed");
        }
        if let Err(e) = app.prune_rate_counts(now.minus_secs(86_400)).await {
            tracing::warn!(error = %e, "pruning rate-limit counts failed");
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
