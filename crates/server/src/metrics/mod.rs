//! What a server counts, rendered in the Prometheus text format by
//! `GET /metrics` (docs/api.md, "Operations: /healthz, /readyz, /metrics"):
//! authentications by result and their latency, 503s for staleness, HTTP
//! requests by route, method and status with their latency
//! ([`requests`]), the service layer's counts of database work
//! ([`latchkey_app::metrics`]) and the process's own ([`process`]).
//!
//! Plain atomics rather than a metrics crate: recording an authentication
//! is two relaxed `fetch_add`s into fixed arrays (the result's counter and
//! the latency bucket) plus one for the latency sum, with no lock, no label
//! lookup and no allocation; recording a request is a lock-free map read
//! and the same few `fetch_add`s ([`requests`]). `prometheus-client`'s
//! histogram takes a lock per observation and its labelled families a map
//! lookup under a lock; the `metrics` exporter needs a global recorder and
//! buffers samples. The exposition is a few lines of text written at scrape
//! time, the only time anything here allocates.

pub mod process;
pub mod requests;

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use latchkey_app::metrics::Snapshot;
use latchkey_core::verifier::Denial;
use strum::{IntoEnumIterator, VariantNames};

/// How one authentication ended (the `result` label), as every door into
/// the verifier classifies it.
pub use latchkey_edge::Outcome;
pub use requests::{DatabaseFailed, RecordLayer, Requests};

/// The outcomes that are not a verifier's denial; each denial
/// (`Denial::iter()`) is an outcome of its own after them.
const OWN_OUTCOMES: [Outcome; 6] = [
    Outcome::Ok,
    Outcome::RateLimited,
    Outcome::Missing,
    Outcome::Malformed,
    Outcome::Bearer,
    Outcome::MissingScope,
];

/// How many outcomes there are, one counter each.
const OUTCOME_COUNT: usize = OWN_OUTCOMES.len() + Denial::VARIANTS.len();

/// Every outcome, in counter order.
fn outcomes() -> impl Iterator<Item = Outcome> {
    OWN_OUTCOMES.into_iter().chain(Denial::iter().map(Outcome::Denied))
}

/// The counter of `outcome`.
fn index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Ok => 0,
        Outcome::RateLimited => 1,
        Outcome::Missing => 2,
        Outcome::Malformed => 3,
        Outcome::Bearer => 4,
        Outcome::MissingScope => 5,
        Outcome::Denied(d) => OWN_OUTCOMES.len() + d as usize,
    }
}

/// Upper bounds of the authentication latency buckets, in nanoseconds (1 µs
/// to 10 ms, then `+Inf`): an in-memory verification takes about a
/// microsecond.
const VERIFY_BUCKETS_NS: [u64; 12] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 10_000_000, INF,
];

/// The last bucket's bound: `+Inf`.
const INF: u64 = u64::MAX;

/// A latency histogram over fixed bounds (nanoseconds, the last `+Inf`):
/// per bucket, not cumulative, so that an observation is one `fetch_add`
/// (plus one for the sum); the exposition adds them up.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds: &'static [u64; N],
    buckets: [AtomicU64; N],
    sum_ns: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    /// `bounds` ascending, the last [`u64::MAX`] (`+Inf`).
    pub const fn new(bounds: &'static [u64; N]) -> Self {
        Histogram {
            bounds,
            buckets: [const { AtomicU64::new(0) }; N],
            sum_ns: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bucket = self.bounds.iter().position(|&b| ns <= b).unwrap_or(N - 1);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The `_bucket`, `_sum` and `_count` lines of `name`, each with
    /// `labels` (already written as `a="x",b="y"`, or empty) before `le`.
    fn write(&self, out: &mut String, name: &str, labels: &str) -> std::fmt::Result {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            if *bound == INF {
                writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}")?;
            } else {
                let le = *bound as f64 / 1e9;
                writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}")?;
            }
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        if labels.is_empty() {
            writeln!(out, "{name}_sum {sum}")?;
            writeln!(out, "{name}_count {cumulative}")
        } else {
            writeln!(out, "{name}_sum{{{labels}}} {sum}")?;
            writeln!(out, "{name}_count{{{labels}}} {cumulative}")
        }
    }
}

/// One metric's `# HELP` and `# TYPE` lines.
fn header(out: &mut String, name: &str, kind: &str, help: &str) -> std::fmt::Result {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} {kind}")
}

/// A label value as the text format wants it: backslash, double quote and
/// newline escaped.
fn escaped(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

/// A server's counters: authentications, staleness refusals, HTTP requests.
#[derive(Debug)]
pub struct Metrics {
    results: [AtomicU64; OUTCOME_COUNT],
    latency: Histogram<{ VERIFY_BUCKETS_NS.len() }>,
    /// Requests refused with 503 because this process was out of touch with
    /// its database for longer than `--max-staleness`.
    stale_refusals: AtomicU64,
    /// HTTP requests by route, method and status.
    pub requests: Requests,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            results: [const { AtomicU64::new(0) }; OUTCOME_COUNT],
            latency: Histogram::new(&VERIFY_BUCKETS_NS),
            stale_refusals: AtomicU64::new(0),
            requests: Requests::default(),
        }
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one authentication and how long it took.
    pub fn record(&self, outcome: Outcome, took: Duration) {
        self.results[index(outcome)].fetch_add(1, Ordering::Relaxed);
        self.latency.observe(took);
    }

    /// Records a request refused with 503 because this process is stale
    /// (no authentication was attempted, so it has no [`Outcome`]).
    pub fn record_stale(&self) {
        self.stale_refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// How many authentications ended with `outcome` so far.
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.results[index(outcome)].load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition: these counters, the service layer's
    /// `app` (read by the caller at scrape time) and the process's own,
    /// read now from `/proc/self`.
    pub fn render(&self, app: &Snapshot) -> String {
        self.render_with(app, process::read().as_ref())
    }

    /// [`Metrics::render`] with the process's figures given.
    pub fn render_with(&self, app: &Snapshot, process: Option<&process::Figures>) -> String {
        let mut out = String::with_capacity(8192);
        // Writing to a String cannot fail.
        let _ = self.write(&mut out, app, process);
        out
    }

    fn write(&self, out: &mut String, app: &Snapshot, process: Option<&process::Figures>) -> std::fmt::Result {
        header(out, "latchkey_build_info", "gauge", "The running build, as a label.")?;
        writeln!(
            out,
            "latchkey_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )?;
        header(
            out,
            "latchkey_verifications_total",
            "counter",
            "Authentications of API requests, by result.",
        )?;
        for o in outcomes() {
            writeln!(
                out,
                "latchkey_verifications_total{{result=\"{}\"}} {}",
                o.as_str(),
                self.count(o)
            )?;
        }
        let name = "latchkey_verification_duration_seconds";
        header(
            out,
            name,
            "histogram",
            "Time to authenticate a request from its headers, in memory.",
        )?;
        self.latency.write(out, name, "")?;
        header(
            out,
            "latchkey_stale_refusals_total",
            "counter",
            "Requests refused with 503 because this process was out of touch with its database for longer than --max-staleness.",
        )?;
        writeln!(
            out,
            "latchkey_stale_refusals_total {}",
            self.stale_refusals.load(Ordering::Relaxed)
        )?;
        self.requests.write(out)?;
        write_app(out, app)?;
        if let Some(figures) = process {
            figures.write(out)?;
        }
        Ok(())
    }
}

/// The service layer's counts and gauges.
fn write_app(out: &mut String, app: &Snapshot) -> std::fmt::Result {
    header(
        out,
        "latchkey_tokens_in_memory",
        "gauge",
        "API tokens held by this process's verifier.",
    )?;
    writeln!(out, "latchkey_tokens_in_memory {}", app.tokens_in_memory)?;
    header(
        out,
        "latchkey_change_log_age_seconds",
        "gauge",
        "Time since this process last read the change log: how far behind other nodes' changes its memory may be (the follower's lag).",
    )?;
    match app.change_log_age {
        Some(age) => writeln!(out, "latchkey_change_log_age_seconds {}", age.as_secs_f64())?,
        None => writeln!(out, "latchkey_change_log_age_seconds NaN")?,
    }
    header(
        out,
        "latchkey_follower_resyncs_total",
        "counter",
        "Full reloads of the verifier from the database since the first load at start.",
    )?;
    writeln!(out, "latchkey_follower_resyncs_total {}", app.follower_resyncs)?;
    header(
        out,
        "latchkey_database_errors_total",
        "counter",
        "Database errors this process has seen, by what failed.",
    )?;
    for (operation, n) in &app.database_errors {
        writeln!(
            out,
            "latchkey_database_errors_total{{operation=\"{}\"}} {n}",
            operation.as_str()
        )?;
    }
    header(
        out,
        "latchkey_last_used_flush_failures_total",
        "counter",
        "Writes of last_used and hourly usage that failed; their uses are kept for the next one.",
    )?;
    writeln!(
        out,
        "latchkey_last_used_flush_failures_total {}",
        app.last_used_flush_failures
    )?;
    header(
        out,
        "latchkey_audit_events_written_total",
        "counter",
        "Audit events this process has committed.",
    )?;
    writeln!(out, "latchkey_audit_events_written_total {}", app.audit_events_written)?;
    header(
        out,
        "latchkey_db_pool_connections",
        "gauge",
        "Open connections of the database pool requests use, by state.",
    )?;
    let pool = app.pool;
    writeln!(out, "latchkey_db_pool_connections{{state=\"idle\"}} {}", pool.idle)?;
    writeln!(
        out,
        "latchkey_db_pool_connections{{state=\"in_use\"}} {}",
        pool.open.saturating_sub(pool.idle)
    )?;
    header(
        out,
        "latchkey_db_pool_max_connections",
        "gauge",
        "The most connections that pool opens (--pool-size on PostgreSQL).",
    )?;
    writeln!(out, "latchkey_db_pool_max_connections {}", pool.max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_app::metrics::{DatabaseOperation, PoolStats};

    fn snapshot() -> Snapshot {
        Snapshot {
            database_errors: vec![(DatabaseOperation::Follow, 2), (DatabaseOperation::Request, 1)],
            last_used_flush_failures: 3,
            follower_resyncs: 4,
            audit_events_written: 5,
            pool: PoolStats {
                open: 3,
                idle: 1,
                max: 16,
            },
            tokens_in_memory: 7,
            change_log_age: Some(Duration::from_millis(250)),
        }
    }

    fn assert_lines(text: &str, lines: &[&str]) {
        for line in lines {
            assert!(text.lines().any(|l| l == *line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn every_outcome_has_its_own_counter() {
        let m = Metrics::new();
        for (i, o) in outcomes().enumerate() {
            assert_eq!(index(o), i);
            m.record(o, Duration::from_nanos(10));
        }
        assert!(outcomes().all(|o| m.count(o) == 1));
    }

    #[test]
    fn the_histogram_is_cumulative_and_counts_every_observation() {
        let m = Metrics::new();
        m.record(Outcome::Ok, Duration::from_nanos(800));
        m.record(Outcome::Ok, Duration::from_micros(3));
        m.record(Outcome::RateLimited, Duration::from_secs(1));
        let text = m.render_with(&snapshot(), None);
        assert_lines(
            &text,
            &[
                "latchkey_verifications_total{result=\"ok\"} 2",
                "latchkey_verifications_total{result=\"rate_limited\"} 1",
                "latchkey_verifications_total{result=\"unknown_token\"} 0",
                "latchkey_verification_duration_seconds_bucket{le=\"0.000001\"} 1",
                "latchkey_verification_duration_seconds_bucket{le=\"0.0000025\"} 1",
                "latchkey_verification_duration_seconds_bucket{le=\"0.000005\"} 2",
                "latchkey_verification_duration_seconds_bucket{le=\"0.01\"} 2",
                "latchkey_verification_duration_seconds_bucket{le=\"+Inf\"} 3",
                "latchkey_verification_duration_seconds_count 3",
                "latchkey_verification_duration_seconds_sum 1.0000038",
                "latchkey_tokens_in_memory 7",
                "latchkey_change_log_age_seconds 0.25",
            ],
        );
    }

    #[test]
    fn an_observation_past_the_last_bound_lands_in_inf_only() {
        static BOUNDS: [u64; 3] = [10, 100, INF];
        let h = Histogram::new(&BOUNDS);
        h.observe(Duration::from_nanos(10));
        h.observe(Duration::from_nanos(11));
        h.observe(Duration::from_micros(1));
        assert_eq!(h.count(), 3);
        let mut out = String::new();
        h.write(&mut out, "x", "route=\"/a\"").unwrap();
        assert_eq!(
            out,
            "x_bucket{route=\"/a\",le=\"0.00000001\"} 1\n\
             x_bucket{route=\"/a\",le=\"0.0000001\"} 2\n\
             x_bucket{route=\"/a\",le=\"+Inf\"} 3\n\
             x_sum{route=\"/a\"} 0.000001021\n\
             x_count{route=\"/a\"} 3\n"
        );
    }

    #[test]
    fn the_service_layers_counts_and_staleness_refusals_are_rendered() {
        let m = Metrics::new();
        m.record_stale();
        m.record_stale();
        let text = m.render_with(&snapshot(), None);
        assert_lines(
            &text,
            &[
                "# TYPE latchkey_stale_refusals_total counter",
                "latchkey_stale_refusals_total 2",
                "latchkey_follower_resyncs_total 4",
                "latchkey_database_errors_total{operation=\"follow\"} 2",
                "latchkey_database_errors_total{operation=\"request\"} 1",
                "latchkey_last_used_flush_failures_total 3",
                "latchkey_audit_events_written_total 5",
                "latchkey_db_pool_connections{state=\"idle\"} 1",
                "latchkey_db_pool_connections{state=\"in_use\"} 2",
                "latchkey_db_pool_max_connections 16",
            ],
        );
        // Every sample's metric has its HELP and TYPE.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| text.contains(&format!("# TYPE {f} histogram")))
                })
                .unwrap_or(name);
            assert!(text.contains(&format!("# TYPE {family} ")), "{line}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escaped("/a/{id}"), "/a/{id}");
        assert_eq!(escaped("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
