//! Counters for the verification hot path, rendered in the Prometheus text
//! format by `GET /metrics` (docs/api.md, "Operations").
//!
//! Plain atomics rather than a metrics crate: recording is two relaxed
//! `fetch_add`s into fixed arrays (the result's counter and the latency
//! bucket) plus one for the latency sum, with no lock, no label lookup and
//! no allocation. `prometheus-client`'s histogram takes a lock per
//! observation and its labelled families a map lookup; the `metrics`
//! exporter needs a global recorder and buffers samples. The exposition is a
//! few lines of text written at scrape time.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use latchkey_core::verifier::Denial;
use strum::{IntoEnumIterator, VariantNames};

/// How one authentication ended (the `result` label), as every door into
/// the verifier classifies it.
pub use latchkey_edge::Outcome;

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

/// Upper bounds of the latency buckets, in nanoseconds (1 µs to 10 ms):
/// an in-memory verification takes about a microsecond.
const BUCKETS_NS: [u64; 11] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 10_000_000,
];

/// Verification counts and latencies of one server.
#[derive(Debug, Default)]
pub struct Metrics {
    results: [AtomicU64; OUTCOME_COUNT],
    /// Per bucket, not cumulative; the last slot is `+Inf`.
    buckets: [AtomicU64; BUCKETS_NS.len() + 1],
    sum_ns: AtomicU64,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one authentication and how long it took.
    pub fn record(&self, outcome: Outcome, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_NS.iter().position(|&b| ns <= b).unwrap_or(BUCKETS_NS.len());
        self.results[index(outcome)].fetch_add(1, Ordering::Relaxed);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// How many authentications ended with `outcome` so far.
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.results[index(outcome)].load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition, with the gauges the caller reads at
    /// scrape time: the tokens in memory, and how long ago this process
    /// last read the change log (`None`: never yet).
    pub fn render(&self, tokens_in_memory: usize, change_log_age: Option<Duration>) -> String {
        let mut out = String::with_capacity(2048);
        // Writing to a String cannot fail.
        let _ = self.write(&mut out, tokens_in_memory, change_log_age);
        out
    }

    fn write(&self, out: &mut String, tokens_in_memory: usize, change_log_age: Option<Duration>) -> std::fmt::Result {
        writeln!(out, "# HELP latchkey_build_info The running build, as a label.")?;
        writeln!(out, "# TYPE latchkey_build_info gauge")?;
        writeln!(
            out,
            "latchkey_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )?;
        writeln!(
            out,
            "# HELP latchkey_verifications_total Authentications of API requests, by result."
        )?;
        writeln!(out, "# TYPE latchkey_verifications_total counter")?;
        for o in outcomes() {
            writeln!(
                out,
                "latchkey_verifications_total{{result=\"{}\"}} {}",
                o.as_str(),
                self.count(o)
            )?;
        }
        let name = "latchkey_verification_duration_seconds";
        writeln!(
            out,
            "# HELP {name} Time to authenticate a request from its headers, in memory."
        )?;
        writeln!(out, "# TYPE {name} histogram")?;
        let mut cumulative = 0;
        for (i, bound) in BUCKETS_NS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", *bound as f64 / 1e9)?;
        }
        cumulative += self.buckets[BUCKETS_NS.len()].load(Ordering::Relaxed);
        writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}")?;
        writeln!(out, "{name}_sum {}", self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9)?;
        writeln!(out, "{name}_count {cumulative}")?;
        writeln!(
            out,
            "# HELP latchkey_tokens_in_memory API tokens held by this process's verifier."
        )?;
        writeln!(out, "# TYPE latchkey_tokens_in_memory gauge")?;
        writeln!(out, "latchkey_tokens_in_memory {tokens_in_memory}")?;
        writeln!(
            out,
            "# HELP latchkey_change_log_age_seconds Time since this process last read the change log: how far behind other nodes' changes its memory may be."
        )?;
        writeln!(out, "# TYPE latchkey_change_log_age_seconds gauge")?;
        match change_log_age {
            Some(age) => writeln!(out, "latchkey_change_log_age_seconds {}", age.as_secs_f64())?,
            None => writeln!(out, "latchkey_change_log_age_seconds NaN")?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let text = m.render(7, Some(Duration::from_millis(250)));
        for line in [
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
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
