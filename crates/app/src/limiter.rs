//! [`RateLimiter`]: failures counted per key in one-minute windows of the
//! injected clock's time. One type serves every limit: failed API
//! authentications per client address, and failed sign-ins per address and
//! per account and email. Checking costs one lock-free map read; only
//! failures write. Memory stays bounded: expired windows are swept, and a
//! map that grows past [`MAX_KEYS`] is swept on the next failure.
//!
//! Written here rather than taken from `governor`: governor meters every
//! call (GCRA, each check consumes a cell), while these limits count only
//! failures and must be checked without being charged on success; and the
//! tests drive them from latchkey's own injected `Clock`, which governor's
//! clock types do not take.

use std::hash::Hash;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::Arc;

use latchkey_core::time::Timestamp;

/// Past this many keys, recording a failure first drops expired windows.
pub const MAX_KEYS: usize = 10_000;

#[derive(Debug, Default)]
struct Window {
    minute: AtomicI64,
    failures: AtomicU32,
}

/// Counts failures per key, allowing `per_minute` of them in each minute.
#[derive(Debug)]
pub struct RateLimiter<K: Hash + Eq> {
    per_minute: u32,
    windows: papaya::HashMap<K, Arc<Window>>,
}

impl<K: Hash + Eq + Clone + Send + Sync> RateLimiter<K> {
    pub fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_minute,
            windows: papaya::HashMap::new(),
        }
    }

    /// `Some(seconds to wait)` when `key` has used up this minute's failures.
    pub fn blocked(&self, key: &K, now: Timestamp) -> Option<u64> {
        let minute = now.unix().div_euclid(60);
        let windows = self.windows.pin();
        let w = windows.get(key)?;
        (w.minute.load(Ordering::Relaxed) == minute && w.failures.load(Ordering::Relaxed) >= self.per_minute)
            .then(|| (60 - now.unix().rem_euclid(60)) as u64)
    }

    pub fn record_failure(&self, key: K, now: Timestamp) {
        if self.windows.len() > MAX_KEYS {
            self.sweep(now);
        }
        let minute = now.unix().div_euclid(60);
        let windows = self.windows.pin();
        let w = windows.get_or_insert_with(key, Arc::default);
        if w.minute.swap(minute, Ordering::AcqRel) != minute {
            w.failures.store(1, Ordering::Release);
        } else {
            w.failures.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Forgets keys whose window has passed.
    pub fn sweep(&self, now: Timestamp) {
        let minute = now.unix().div_euclid(60);
        self.windows
            .pin()
            .retain(|_, w| w.minute.load(Ordering::Relaxed) >= minute);
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix(secs)
    }

    #[test]
    fn an_address_is_blocked_after_its_failures_until_the_minute_ends() {
        let l = RateLimiter::new(3);
        let ip = IpAddr::from([10, 0, 0, 1]);
        let other = IpAddr::from([10, 0, 0, 2]);
        for _ in 0..3 {
            assert_eq!(l.blocked(&ip, at(120)), None);
            l.record_failure(ip, at(120));
        }
        assert_eq!(l.blocked(&ip, at(130)), Some(50));
        assert_eq!(l.blocked(&other, at(130)), None);
        assert_eq!(l.blocked(&ip, at(180)), None);
        l.record_failure(ip, at(180));
        assert_eq!(l.blocked(&ip, at(181)), None);
        l.sweep(at(300));
        assert!(l.is_empty());
    }

    #[test]
    fn memory_stays_bounded_by_sweeping_expired_keys() {
        let l = RateLimiter::new(1);
        for n in 0..=MAX_KEYS as u32 {
            l.record_failure(n, at(0));
        }
        assert_eq!(l.len(), MAX_KEYS + 1);
        l.record_failure(u32::MAX, at(60));
        assert_eq!(l.len(), 1);
    }
}
