//! [`RateLimiter`]: attempts counted per key in fixed windows (a minute
//! unless given another length) of the injected clock's time. One type
//! serves every limit: failed API authentications per client address,
//! sign-ins per address and per account and email, and leak reports per
//! address per hour. A window is one atomic word (its minute and its
//! count), so "is there room?" and "count this one" are a single
//! compare-and-swap: [`RateLimiter::try_reserve`] takes a slot before the
//! expensive check, and concurrent attempts cannot all pass a check that
//! none of them has recorded yet. Checking costs one lock-free map read.
//! Memory stays bounded: expired windows are swept, and a map that grows
//! past [`MAX_KEYS`] is swept on the next write.
//!
//! Written here rather than taken from `governor`: governor meters every
//! call (GCRA, each check consumes a cell), while these limits must refund
//! a successful sign-in and count only failed authentications; and the
//! tests drive them from latchkey's own injected `Clock`, which governor's
//! clock types do not take.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use latchkey_core::time::Timestamp;

/// Past this many keys, recording a failure first drops expired windows.
pub const MAX_KEYS: usize = 10_000;

/// One key's window: the minute (high 32 bits) and the attempts counted in
/// it (low 32 bits), changed together.
#[derive(Debug, Default)]
struct Window(AtomicU64);

/// The window `now` falls in, as stored (windows of `secs` since the
/// epoch, modulo 2^32).
fn window_of(now: Timestamp, secs: i64) -> u32 {
    now.unix().div_euclid(secs) as u32
}

fn pack(minute: u32, count: u32) -> u64 {
    (u64::from(minute) << 32) | u64::from(count)
}

fn unpack(word: u64) -> (u32, u32) {
    ((word >> 32) as u32, word as u32)
}

/// Seconds until the window of `now` ends.
fn until_next_window(now: Timestamp, secs: i64) -> u64 {
    (secs - now.unix().rem_euclid(secs)) as u64
}

impl Window {
    fn count_in(&self, minute: u32) -> u32 {
        match unpack(self.0.load(Ordering::Acquire)) {
            (m, count) if m == minute => count,
            _ => 0,
        }
    }

    /// Counts one more attempt in `minute`, unless `limit` are counted
    /// already; whether it was counted.
    fn add(&self, minute: u32, limit: Option<u32>) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| match unpack(word) {
                (m, count) if m == minute => match limit {
                    Some(limit) if count >= limit => None,
                    _ => Some(pack(minute, count.saturating_add(1))),
                },
                _ => (limit != Some(0)).then(|| pack(minute, 1)),
            })
            .is_ok()
    }

    /// Takes back one attempt counted in `minute` (a later minute has
    /// started afresh and is left alone).
    fn remove(&self, minute: u32) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| match unpack(word) {
                (m, count) if m == minute && count > 0 => Some(pack(minute, count - 1)),
                _ => None,
            });
    }
}

/// An attempt counted by [`RateLimiter::try_reserve`]: kept, it stays a
/// failure of its minute; handed to [`RateLimiter::release`], it is taken
/// back.
#[derive(Debug)]
#[must_use = "a reservation is kept as a failure unless released"]
pub struct Reservation {
    minute: u32,
}

/// Counts attempts per key, allowing `per_minute` of them in each window
/// (a minute, unless made with [`RateLimiter::per_window`]).
#[derive(Debug)]
pub struct RateLimiter<K: Hash + Eq> {
    per_minute: u32,
    window_secs: i64,
    windows: papaya::HashMap<K, Arc<Window>>,
}

impl<K: Hash + Eq + Clone + Send + Sync> RateLimiter<K> {
    pub fn new(per_minute: u32) -> Self {
        Self::per_window(per_minute, 60)
    }

    /// `limit` attempts per window of `window_secs` seconds (at least 1).
    pub fn per_window(limit: u32, window_secs: i64) -> Self {
        RateLimiter {
            per_minute: limit,
            window_secs: window_secs.max(1),
            windows: papaya::HashMap::new(),
        }
    }

    fn minute_of(&self, now: Timestamp) -> u32 {
        window_of(now, self.window_secs)
    }

    fn until_next_minute(&self, now: Timestamp) -> u64 {
        until_next_window(now, self.window_secs)
    }

    /// `Some(seconds to wait)` when `key` has used up this minute's failures.
    pub fn blocked(&self, key: &K, now: Timestamp) -> Option<u64> {
        let windows = self.windows.pin();
        let w = windows.get(key)?;
        (w.count_in(self.minute_of(now)) >= self.per_minute).then(|| self.until_next_minute(now))
    }

    pub fn record_failure(&self, key: K, now: Timestamp) {
        self.window(key, now).add(self.minute_of(now), None);
    }

    /// Counts an attempt for `key` before it is checked, in the same atomic
    /// step as the check for room: `Err(seconds to wait)` when this minute's
    /// attempts are used up. The attempt stays counted unless it is
    /// [released](RateLimiter::release), so of any number of concurrent
    /// attempts at most `per_minute` get through.
    pub fn try_reserve(&self, key: &K, now: Timestamp) -> Result<Reservation, u64> {
        let minute = self.minute_of(now);
        let counted = {
            let windows = self.windows.pin();
            match windows.get(key) {
                Some(w) => w.add(minute, Some(self.per_minute)),
                None => {
                    drop(windows);
                    self.window(key.clone(), now).add(minute, Some(self.per_minute))
                }
            }
        };
        if counted {
            Ok(Reservation { minute })
        } else {
            Err(self.until_next_minute(now))
        }
    }

    /// Takes back an attempt counted by [`RateLimiter::try_reserve`] (one
    /// that turned out not to be a failure).
    pub fn release(&self, key: &K, reservation: Reservation) {
        if let Some(w) = self.windows.pin().get(key) {
            w.remove(reservation.minute);
        }
    }

    /// The window of `key`, made if missing (sweeping first past [`MAX_KEYS`]).
    fn window(&self, key: K, now: Timestamp) -> Arc<Window> {
        if self.windows.len() > MAX_KEYS {
            self.sweep(now);
        }
        self.windows.pin().get_or_insert_with(key, Arc::default).clone()
    }

    /// Forgets keys whose window has passed.
    pub fn sweep(&self, now: Timestamp) {
        let minute = self.minute_of(now);
        self.windows
            .pin()
            .retain(|_, w| unpack(w.0.load(Ordering::Relaxed)).0 >= minute);
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

    #[test]
    fn a_reservation_counts_at_once_and_a_release_takes_it_back() {
        let l = RateLimiter::new(2);
        let ip = IpAddr::from([10, 0, 0, 1]);
        let first = l.try_reserve(&ip, at(120)).expect("room for the first");
        let _second = l.try_reserve(&ip, at(121)).expect("room for the second");
        assert_eq!(l.try_reserve(&ip, at(122)).map(|_| ()), Err(58));
        assert_eq!(l.blocked(&ip, at(122)), Some(58));
        l.release(&ip, first);
        assert_eq!(l.blocked(&ip, at(123)), None);
        let third = l.try_reserve(&ip, at(123)).expect("room again after a release");
        assert!(l.try_reserve(&ip, at(124)).is_err());
        // A release from a past minute leaves the new minute's count alone.
        let _new = l.try_reserve(&ip, at(180)).expect("a new minute");
        l.release(&ip, third);
        let _ = l.try_reserve(&ip, at(181)).expect("one more");
        assert!(l.try_reserve(&ip, at(182)).is_err());
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_limit() {
        let l = Arc::new(RateLimiter::new(5));
        let granted = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..1_000 {
                        if l.try_reserve(&"key", at(60)).is_ok() {
                            granted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(granted.load(Ordering::Relaxed), 5);
    }
}
