//! Background work of a running server. What every process that verifies
//! tokens does (following the change log, flushing `last_used`, sharing
//! rate-limit counts, forgetting expired limiter windows) is the service
//! layer's [`latchkey_app::upkeep`], shared with `latchkey-tower`; what only
//! a server does is here: sweeping tokens under each account's token policy
//! (README.md, "Token policy"), audit retention (README.md, "Audit
//! retention"), forgetting sign-in failures, and pruning.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use latchkey_app::upkeep::{self, interval, next_tick, Upkeep};
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
    let keep_current = Upkeep {
        poll_interval: config.poll_interval,
        max_staleness: config.max_staleness,
        flush_interval: config.flush_interval,
    };
    let mut tasks = upkeep::spawn(app.clone(), &keep_current, limiters, stop.clone());
    tasks.push(tokio::spawn(sweep(app.clone(), config.sweep_interval, stop.clone())));
    if let Some(days) = config.audit_retention_days {
        tasks.push(tokio::spawn(prune_audit(
            app.clone(),
            days,
            config.sweep_interval,
            stop.clone(),
        )));
    }
    tasks.push(tokio::spawn(maintenance(app, stop)));
    tasks
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

/// Every sweep interval: audit retention. Every node runs it; each batch
/// is one transaction under its account's lock that re-reads the chain, so
/// nodes pruning at once take turns and never prune an event twice. The
/// cutoff is the start of a UTC day, so an account is pruned at most once
/// a day, however often this runs.
async fn prune_audit(app: Arc<App>, days: u32, period: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = interval(period);
    while next_tick(&mut tick, &mut stop).await {
        match app.prune_audit(days).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, retention_days = days, "audit retention"),
            Err(e) => tracing::warn!(error = %e, "audit retention failed; the next run retries"),
        }
    }
}

/// Every minute: forgets sign-in failures whose minute has passed and
/// prunes the change log, usage and rate-limit counts.
async fn maintenance(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut tick = interval(Duration::from_secs(60));
    while next_tick(&mut tick, &mut stop).await {
        let now = app.now();
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
