//! Per-token rate limits for the whole deployment (README.md, "IP
//! allowlists and rate limits"; ARCHITECTURE.md, "Rate limits across
//! nodes").
//!
//! A limit is `requests` per `per_seconds`, counted in fixed windows
//! aligned to the Unix epoch (`floor(now / per_seconds)`), so every node
//! agrees on where a window starts and a client can be told when it resets.
//! On one node the count is exact: the `requests`-th request of a window is
//! admitted, the next one is refused until the window ends.
//!
//! Across nodes each node counts its own admissions and, at least once a
//! second, writes them with its measured request rate to the shared
//! database and reads everyone else's ([`RateReport`], [`PeerCount`]). A
//! node admits while its own count plus its estimate of the others' stays
//! under the limit; the estimate is each peer's last count plus its rate
//! times the time since that count, so with a steady pace the nodes stop
//! together near the limit, in any proportion. A peer silent for
//! [`PEER_FRESH_MS`] (it died, or its clients left) keeps the count it last
//! wrote for that window and is no longer extrapolated.
//!
//! Written here rather than taken from `governor` (which the failed-auth
//! limiter uses): a GCRA keeps one "theoretical arrival time" per key, and
//! two nodes' arrival times cannot be added, while window counts can.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, Invalid};
use crate::id::TokenId;
use crate::time::Timestamp;

/// The largest `requests` a limit may have.
pub const MAX_REQUESTS: u32 = 1_000_000;
/// The longest window: one day.
pub const MAX_PER_SECONDS: u32 = 86_400;
/// How long a peer's report is extrapolated; after that its count stands
/// as written.
pub const PEER_FRESH_MS: i64 = 3_000;
/// How many reports back a node measures its request rate over.
const RATE_SPAN: usize = 4;

/// At most `requests` requests per `per_seconds` seconds, deployment-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub requests: u32,
    pub per_seconds: u32,
}

fn invalid(description: String) -> Invalid {
    Invalid::new("rate_limit", ErrorCode::InvalidValue, description)
}

impl RateLimit {
    /// A limit as an admin gives it: `requests` 1 to 1,000,000 per
    /// `per_seconds` 1 to 86,400 (a day); 422 `InvalidValue` on
    /// `rate_limit` otherwise.
    pub fn new(requests: i64, per_seconds: i64) -> Result<Self, Invalid> {
        let requests = u32::try_from(requests)
            .ok()
            .filter(|r| (1..=MAX_REQUESTS).contains(r))
            .ok_or_else(|| invalid(format!("requests must be between 1 and {MAX_REQUESTS}.")))?;
        let per_seconds = u32::try_from(per_seconds)
            .ok()
            .filter(|s| (1..=MAX_PER_SECONDS).contains(s))
            .ok_or_else(|| invalid(format!("per_seconds must be between 1 and {MAX_PER_SECONDS} (a day).")))?;
        Ok(RateLimit { requests, per_seconds })
    }

    /// `100 per 60 seconds`, as the audit log and the Admin Center say it.
    pub fn describe(&self) -> String {
        let unit = if self.per_seconds == 1 { "second" } else { "seconds" };
        if self.per_seconds == 1 {
            format!("{} per {unit}", self.requests)
        } else {
            format!("{} per {} {unit}", self.requests, self.per_seconds)
        }
    }

    /// The window `now` falls in.
    pub fn window(&self, now: Timestamp) -> i64 {
        now.unix().div_euclid(i64::from(self.per_seconds))
    }
}

/// What one request learned of its token's limit: whether it was admitted,
/// and what the rate-limit headers tell the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateStatus {
    pub limit: RateLimit,
    pub admitted: bool,
    /// Requests left in this window after this one.
    pub remaining: u32,
    /// Seconds until the window ends (at least 1): `Retry-After` when
    /// refused.
    pub reset_secs: u32,
}

/// What this node writes for one token at a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateReport {
    pub token_id: TokenId,
    pub window: i64,
    pub per_seconds: u32,
    /// Requests this node admitted in `window`.
    pub admitted: u32,
    /// Requests a second this node has seen lately (admitted or not), in
    /// thousandths.
    pub rate_milli: u32,
    /// When this was counted, in milliseconds since the epoch.
    pub at_ms: i64,
}

/// Another node's report, as read back at a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCount {
    pub node: i64,
    pub report: RateReport,
}

impl PeerCount {
    /// How many requests this peer has admitted by `now_ms` in `window` of
    /// `per_seconds`-second windows, estimated from its report.
    fn estimate(&self, window: i64, per_seconds: u32, now_ms: i64) -> f64 {
        let r = &self.report;
        if r.per_seconds != per_seconds {
            return 0.0;
        }
        let fresh = now_ms - r.at_ms <= PEER_FRESH_MS;
        let rate = f64::from(r.rate_milli) / 1000.0;
        let window_start_ms = window * i64::from(per_seconds) * 1000;
        if r.window == window {
            let since = if fresh { (now_ms - r.at_ms).max(0) } else { 0 };
            f64::from(r.admitted) + rate * since as f64 / 1000.0
        } else if r.window < window && fresh {
            // It has not reported since this window began: it admits at its
            // rate from the window's start.
            rate * (now_ms - window_start_ms).max(0) as f64 / 1000.0
        } else {
            0.0
        }
    }
}

/// One token's count on this node. The check and the increment are one
/// compare-and-swap on a word holding the window and its count, so the
/// limit is exact on one node without a lock on the request path; what
/// only the sync reads and writes (the peers' reports, the rate history)
/// sits behind a mutex the requests never take.
#[derive(Debug, Default)]
pub struct RateCounter {
    /// The window (its low [`WINDOW_BITS`] bits) and this node's admissions
    /// in it (the low [`ADMITTED_BITS`] bits).
    count: AtomicU64,
    /// The other nodes' estimated admissions (low 32 bits) in a window
    /// (high 32 bits: its low 32 bits); 0 until the first estimate.
    others: AtomicU64,
    /// The token's limit as last stored ([`RateCounter::set_limit`]), for
    /// the reports and the estimate of the others.
    requests: AtomicU32,
    per_seconds: AtomicU32,
    /// Every check since this counter was made.
    attempts: AtomicU64,
    /// Checked since the last report.
    touched: AtomicBool,
    /// In the verifier's list of counters to report.
    listed: AtomicBool,
    sync: Mutex<SyncState>,
}

/// Enough for [`MAX_REQUESTS`].
const ADMITTED_BITS: u32 = 24;
const ADMITTED_MASK: u64 = (1 << ADMITTED_BITS) - 1;
const WINDOW_BITS: u32 = 64 - ADMITTED_BITS;
const WINDOW_MASK: u64 = (1 << WINDOW_BITS) - 1;

#[derive(Debug, Default)]
struct SyncState {
    /// Reports in a row with no check in between.
    idle_reports: u32,
    peers: Vec<PeerCount>,
    /// `(at_ms, attempts)` of the last reports, to measure the rate.
    history: VecDeque<(i64, u64)>,
}

/// What [`RateCounter::check`] tells the verifier besides the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub status: RateStatus,
    /// The counter needs to join the list of counters to report.
    pub newly_active: bool,
}

fn pack_others(window: i64, others: u32) -> u64 {
    (window as u64) << 32 | u64::from(others)
}

impl RateCounter {
    /// A counter for a token with `limit`.
    pub fn new(limit: RateLimit) -> Self {
        let counter = RateCounter::default();
        counter.set_limit(limit);
        counter
    }

    /// Takes the token's limit as stored (at load, and at each change of
    /// the token), for the sync; requests pass it to [`RateCounter::check`].
    pub fn set_limit(&self, limit: RateLimit) {
        self.requests.store(limit.requests, Ordering::Relaxed);
        self.per_seconds.store(limit.per_seconds, Ordering::Relaxed);
    }

    /// Counts one request at `now` against `limit`.
    pub fn check(&self, limit: RateLimit, now: Timestamp) -> Checked {
        let window = limit.window(now);
        let w = window as u64 & WINDOW_MASK;
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if !self.touched.load(Ordering::Relaxed) {
            self.touched.store(true, Ordering::Relaxed);
        }
        let others = match self.others.load(Ordering::Acquire) {
            packed if packed >> 32 == pack_others(window, 0) >> 32 && packed != 0 => packed as u32,
            _ => 0,
        };
        let mut current = self.count.load(Ordering::Acquire);
        let (admitted, count) = loop {
            let mine = if current >> ADMITTED_BITS == w {
                (current & ADMITTED_MASK) as u32
            } else {
                0
            };
            let admit = mine.saturating_add(others) < limit.requests;
            let next = w << ADMITTED_BITS | u64::from(mine + u32::from(admit));
            if next == current {
                break (false, mine);
            }
            match self
                .count
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break (admit, mine + u32::from(admit)),
                Err(actual) => current = actual,
            }
        };
        let per = i64::from(limit.per_seconds);
        let reset = ((window + 1) * per - now.unix()).clamp(1, per);
        let newly_active = !self.listed.load(Ordering::Relaxed) && !self.listed.swap(true, Ordering::AcqRel);
        Checked {
            status: RateStatus {
                limit,
                admitted,
                remaining: limit.requests.saturating_sub(count.saturating_add(others)),
                reset_secs: u32::try_from(reset).unwrap_or(1),
            },
            newly_active,
        }
    }

    fn sync_state(&self) -> std::sync::MutexGuard<'_, SyncState> {
        match self.sync.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// This node's count for the sync at `now_ms`, and whether the counter
    /// stays in the list (`false`: idle for `idle_after` reports, this is
    /// its last report until it is checked again).
    pub fn report(&self, token_id: TokenId, now_ms: i64, idle_after: u32) -> (RateReport, bool) {
        let mut s = self.sync_state();
        if self.touched.swap(false, Ordering::AcqRel) {
            s.idle_reports = 0;
        } else {
            s.idle_reports += 1;
        }
        let attempts = self.attempts.load(Ordering::Acquire);
        s.history.push_back((now_ms, attempts));
        while s.history.len() > RATE_SPAN + 1 {
            s.history.pop_front();
        }
        let rate_milli = match (s.history.front(), s.history.len()) {
            (Some(&(at, before)), n) if n > 1 && now_ms > at => {
                ((attempts - before) as f64 * 1_000_000.0 / (now_ms - at) as f64).min(f64::from(u32::MAX)) as u32
            }
            _ => 0,
        };
        let mut keep = s.idle_reports < idle_after;
        if !keep {
            self.listed.store(false, Ordering::Release);
            // A check that came in meanwhile keeps it listed.
            if self.touched.load(Ordering::Acquire) && !self.listed.swap(true, Ordering::AcqRel) {
                keep = true;
            } else {
                s.history.clear();
            }
        }
        let per_seconds = self.per_seconds.load(Ordering::Relaxed);
        let count = self.count.load(Ordering::Acquire);
        let report = RateReport {
            token_id,
            // The full window index, from the clock: the word holds only
            // its low bits.
            window: if per_seconds == 0 {
                0
            } else {
                now_ms.div_euclid(1000).div_euclid(i64::from(per_seconds))
            },
            per_seconds,
            admitted: if per_seconds != 0
                && count >> ADMITTED_BITS
                    == now_ms.div_euclid(1000).div_euclid(i64::from(per_seconds)) as u64 & WINDOW_MASK
            {
                (count & ADMITTED_MASK) as u32
            } else {
                0
            },
            rate_milli: if keep { rate_milli } else { 0 },
            at_ms: now_ms,
        };
        (report, keep)
    }

    /// Takes the other nodes' latest reports for this token.
    pub fn set_peers(&self, peers: Vec<PeerCount>, now_ms: i64) {
        let mut s = self.sync_state();
        s.peers = peers;
        self.refresh_locked(&s, now_ms);
    }

    /// Moves the estimate of the other nodes' admissions on to `now_ms`.
    pub fn refresh(&self, now_ms: i64) {
        let s = self.sync_state();
        self.refresh_locked(&s, now_ms);
    }

    fn refresh_locked(&self, s: &SyncState, now_ms: i64) {
        let per_seconds = self.per_seconds.load(Ordering::Relaxed);
        if per_seconds == 0 {
            return;
        }
        let window = now_ms.div_euclid(1000).div_euclid(i64::from(per_seconds));
        let cap = f64::from(self.requests.load(Ordering::Relaxed));
        let total: f64 = s
            .peers
            .iter()
            .map(|p| p.estimate(window, per_seconds, now_ms).min(cap))
            .sum();
        self.others
            .store(pack_others(window, total.min(cap) as u32), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(requests: u32, per_seconds: u32) -> RateLimit {
        RateLimit { requests, per_seconds }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix(secs)
    }

    #[test]
    fn bounds_are_checked() {
        assert!(RateLimit::new(1, 1).is_ok());
        assert!(RateLimit::new(1_000_000, 86_400).is_ok());
        for (r, s) in [(0, 60), (-1, 60), (1_000_001, 60), (10, 0), (10, 86_401), (10, -5)] {
            let err = RateLimit::new(r, s).expect_err("out of bounds");
            assert_eq!(err.field, "rate_limit");
        }
    }

    #[test]
    fn one_node_is_exact_at_the_window_edges() {
        let c = RateCounter::default();
        let l = limit(3, 10);
        // Window [100, 110): three admitted, the fourth refused, to the
        // last second of the window.
        let statuses: Vec<_> = [100, 101, 105].iter().map(|&t| c.check(l, at(t)).status).collect();
        assert!(statuses.iter().all(|s| s.admitted));
        assert_eq!(statuses.iter().map(|s| s.remaining).collect::<Vec<_>>(), [2, 1, 0]);
        let refused = c.check(l, at(109)).status;
        assert!(!refused.admitted);
        assert_eq!((refused.remaining, refused.reset_secs), (0, 1));
        // The first second of the next window admits again.
        let next = c.check(l, at(110)).status;
        assert!(next.admitted);
        assert_eq!((next.remaining, next.reset_secs), (2, 10));
    }

    #[test]
    fn racing_checks_admit_exactly_the_limit() {
        let c = std::sync::Arc::new(RateCounter::default());
        let l = limit(1000, 60);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..500).filter(|_| c.check(l, at(120)).status.admitted).count())
            })
            .collect();
        let admitted: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
        assert_eq!(admitted, 1000);
        assert_eq!(c.check(l, at(120)).status.remaining, 0);
    }

    #[test]
    fn a_changed_window_length_starts_afresh() {
        let c = RateCounter::default();
        assert!(c.check(limit(1, 60), at(120)).status.admitted);
        assert!(!c.check(limit(1, 60), at(121)).status.admitted);
        assert!(c.check(limit(1, 30), at(122)).status.admitted);
        // A raised limit applies at once, in the same window.
        assert!(c.check(limit(2, 30), at(123)).status.admitted);
    }

    #[test]
    fn reset_is_the_time_to_the_end_of_the_window() {
        let c = RateCounter::default();
        let s = c.check(limit(5, 60), at(61)).status;
        assert_eq!(s.reset_secs, 59);
    }

    fn peer(node: i64, window: i64, admitted: u32, rate_milli: u32, at_ms: i64) -> PeerCount {
        PeerCount {
            node,
            report: RateReport {
                token_id: TokenId::new(1),
                window,
                per_seconds: 10,
                admitted,
                rate_milli,
                at_ms,
            },
        }
    }

    #[test]
    fn peers_are_extrapolated_while_fresh() {
        let l = limit(100, 10);
        let c = RateCounter::new(l);
        c.check(l, at(100));
        // A peer admitted 40 by 105.0 s and sees 10 a second: by 106.0 s it
        // has admitted about 50, so 50 are left (minus this node's 1).
        c.set_peers(vec![peer(2, 10, 40, 10_000, 105_000)], 106_000);
        let s = c.check(l, at(106)).status;
        assert_eq!(s.remaining, 100 - 50 - 2);
        // Silent for longer than PEER_FRESH_MS: its count stands as written.
        c.refresh(105_000 + PEER_FRESH_MS + 1);
        let s = c.check(l, at(108)).status;
        assert_eq!(s.remaining, 100 - 40 - 3);
    }

    #[test]
    fn a_peer_from_the_last_window_admits_at_its_rate_from_the_window_start() {
        let l = limit(100, 10);
        let c = RateCounter::new(l);
        c.check(l, at(111));
        // Window 11 starts at 110 s; the peer last wrote in window 10.
        c.set_peers(vec![peer(2, 10, 100, 20_000, 109_900)], 111_500);
        let s = c.check(l, at(111)).status;
        assert_eq!(s.remaining, 100 - 30 - 2);
    }

    #[test]
    fn the_others_cannot_push_the_estimate_past_the_limit() {
        let l = limit(10, 10);
        let c = RateCounter::new(l);
        c.check(l, at(100));
        c.set_peers(vec![peer(2, 10, 9, 0, 100_000), peer(3, 10, 9, 0, 100_000)], 100_100);
        let s = c.check(l, at(100)).status;
        assert!(!s.admitted);
        assert_eq!(s.remaining, 0);
    }

    #[test]
    fn reports_measure_the_rate_and_go_idle() {
        let l = limit(1000, 60);
        let c = RateCounter::new(l);
        let id = TokenId::new(7);
        assert!(c.check(l, at(60)).newly_active);
        assert!(!c.check(l, at(60)).newly_active);
        let (first, keep) = c.report(id, 60_000, 3);
        assert!(keep);
        assert_eq!((first.admitted, first.rate_milli), (2, 0));
        for _ in 0..5 {
            c.check(l, at(60));
        }
        let (second, _) = c.report(id, 60_500, 3);
        // Five requests in half a second: ten a second.
        assert_eq!(second.rate_milli, 10_000);
        let mut kept = true;
        let mut reports = 0;
        while kept {
            kept = c.report(id, 61_000 + reports * 250, 3).1;
            reports += 1;
        }
        assert_eq!(reports, 3);
        assert!(c.check(l, at(61)).newly_active, "checked again, it rejoins the list");
    }
}
