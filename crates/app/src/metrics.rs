//! What a process that verifies tokens counts about its work with the
//! database, wherever it runs (a latchkey server, or a Rust service with
//! `latchkey-tower`): database errors by what failed, `last_used` flushes
//! that failed, the follower's full reloads, audit events written, the
//! connection pool, and how current memory is. A server renders
//! [`App::metrics`]'s [`Snapshot`] in `GET /metrics` (docs/api.md,
//! "Operations: /healthz, /readyz, /metrics").
//!
//! The counts are kept where each thing happens, once: the follower counts
//! its own failed reads and resyncs (`latchkey_store::Follower`), the store
//! the audit events it commits, and [`App`] the failures of the background
//! work it does for its callers (flushing usage, sharing rate-limit counts,
//! sweeping, pruning). A request that failed on the database is counted by
//! the edge that answered it, through [`App::record_database_error`].
//! Plain relaxed atomics: nothing here is on the verification path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use latchkey_store::PoolStats;

use crate::App;

/// What failed on the database (the `operation` label of
/// `latchkey_database_errors_total`): a small fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter, strum::IntoStaticStr, strum::EnumCount)]
#[strum(serialize_all = "snake_case")]
pub enum DatabaseOperation {
    /// Following the change log: catching up, resynchronising, listening.
    Follow,
    /// Writing `last_used` and hourly usage.
    FlushUsage,
    /// Sharing rate-limit counts with the other nodes.
    ShareRateLimits,
    /// The token policy's sweep.
    Sweep,
    /// Pruning the change log, usage and rate-limit counts.
    Prune,
    /// A request (REST API or page) answered 500 because of the database.
    Request,
}

impl DatabaseOperation {
    /// The `operation` label.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// [`App`]'s own counts of failed database work.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Per [`DatabaseOperation`], by its position; `Follow` stays 0 here
    /// (the follower counts its own).
    errors: [AtomicU64; <DatabaseOperation as strum::EnumCount>::COUNT],
}

impl Counters {
    pub(crate) fn add(&self, operation: DatabaseOperation) {
        self.errors[operation as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, operation: DatabaseOperation) -> u64 {
        self.errors[operation as usize].load(Ordering::Relaxed)
    }
}

/// What [`App::metrics`] reads at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Database errors by what failed, every operation listed.
    pub database_errors: Vec<(DatabaseOperation, u64)>,
    /// Flushes of `last_used` and hourly usage that failed (their uses are
    /// kept for the next flush). The same count as the `flush_usage`
    /// database errors: every failed flush is one.
    pub last_used_flush_failures: u64,
    /// Full reloads of the verifier since the first load at start.
    pub follower_resyncs: u64,
    /// Audit events this process has committed.
    pub audit_events_written: u64,
    /// The request pool's connections.
    pub pool: PoolStats,
    /// Tokens in the verifier.
    pub tokens_in_memory: usize,
    /// How long ago the last successful read of the change log started:
    /// every change committed before then is in memory. `None` before the
    /// first read.
    pub change_log_age: Option<Duration>,
}

impl App {
    /// This process's counts and gauges, read now: atomics and the pool's
    /// own counts, no statement.
    pub fn metrics(&self) -> Snapshot {
        use strum::IntoEnumIterator;
        let follow_failures = self.follower.failures();
        Snapshot {
            database_errors: DatabaseOperation::iter()
                .map(|op| match op {
                    DatabaseOperation::Follow => (op, follow_failures),
                    _ => (op, self.counters.get(op)),
                })
                .collect(),
            last_used_flush_failures: self.counters.get(DatabaseOperation::FlushUsage),
            follower_resyncs: self.follower.resyncs(),
            audit_events_written: self.store.audit_events_written(),
            pool: self.store.pool_stats(),
            tokens_in_memory: self.token_count(),
            change_log_age: self.change_log_age(),
        }
    }

    /// Counts a database error that surfaced outside the service layer's
    /// own background work: a request answered 500 because of it
    /// ([`DatabaseOperation::Request`]).
    pub fn record_database_error(&self, operation: DatabaseOperation) {
        self.counters.add(operation);
    }

    /// Counts `result`'s database error, if it has one, under `operation`,
    /// and hands it on.
    pub(crate) fn counted<T>(
        &self,
        operation: DatabaseOperation,
        result: crate::error::Result<T>,
    ) -> crate::error::Result<T> {
        if let Err(crate::AppError::Storage(_)) = &result {
            self.counters.add(operation);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    #[test]
    fn each_operation_has_its_own_counter_and_label() {
        let c = Counters::default();
        for (i, op) in DatabaseOperation::iter().enumerate() {
            assert_eq!(op as usize, i);
            for _ in 0..=i {
                c.add(op);
            }
        }
        for (i, op) in DatabaseOperation::iter().enumerate() {
            assert_eq!(c.get(op), i as u64 + 1, "{}", op.as_str());
        }
        let labels: Vec<_> = DatabaseOperation::iter().map(DatabaseOperation::as_str).collect();
        assert_eq!(
            labels,
            [
                "follow",
                "flush_usage",
                "share_rate_limits",
                "sweep",
                "prune",
                "request"
            ]
        );
    }
}
