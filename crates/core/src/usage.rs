//! Per-token usage by hour (README.md, "Usage"): how many requests each
//! token made that were allowed, and how many were refused, by reason.
//!
//! Counted in memory on the hot path and handed out in batches to be added
//! to the stored hourly rows, alongside `last_used`. An allowed request (the
//! common case) is one atomic add in the token's own entry
//! ([`AllowedThisHour`]); refusals go to a map keyed by token and hour (one
//! lock-free read and one atomic add; an entry is made once per token and
//! hour), where an entry's allowed count also lands when its hour is over
//! or a flush takes it. Memory stays bounded: a drain empties the counters
//! and drops every hour that has passed, so the map holds at most the
//! tokens used in the current hour (and the last, until the next flush).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use strum::{Display, EnumCount, EnumIter, IntoStaticStr, VariantNames};

use crate::id::TokenId;
use crate::time::Timestamp;

/// What happened to one request made with a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, IntoStaticStr, VariantNames, EnumIter, EnumCount, Display)]
#[strum(serialize_all = "snake_case")]
pub enum UsageKind {
    Allowed,
    RateLimited,
    IpNotAllowed,
    Expired,
    Inactive,
    Scope,
}

impl UsageKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Counts of one token in one hour, by [`UsageKind`] (in declaration order).
pub type Counts = [u64; UsageKind::COUNT];

/// One token's counts for one hour, to add to the stored row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourUsage {
    pub token_id: TokenId,
    /// The hour's first second.
    pub hour: Timestamp,
    pub counts: Counts,
}

#[derive(Debug, Default)]
struct Counters([AtomicU64; UsageKind::COUNT]);

const HOUR: i64 = 3600;

fn hour_of(now: Timestamp) -> i64 {
    now.unix().div_euclid(HOUR) * HOUR
}

type Map = papaya::HashMap<(TokenId, i64), Arc<Counters>, foldhash::fast::RandomState>;

/// One token's allowed requests in the latest hour it was used, held in the
/// token's own verifier entry so that counting one costs an atomic add and
/// no lookup: the hour's number since the epoch in the high 32 bits, the
/// count in the low 32. When a request falls in a later hour, or a flush
/// takes the count, the count held is handed out to be added to
/// [`HourlyUsage`].
#[derive(Debug, Default)]
pub struct AllowedThisHour(AtomicU64);

impl AllowedThisHour {
    /// A count this large is handed out before it could reach the hour's bits.
    const HAND_OUT_AT: u64 = 1 << 31;

    /// Counts one allowed request at `now`. Returns the count of an earlier
    /// hour that this request's hour replaced, for [`HourlyUsage::add`].
    pub fn count(&self, now: Timestamp) -> Option<(Timestamp, u64)> {
        let hour = u64::try_from(now.unix().div_euclid(HOUR)).map_or(0, |h| h.min(u64::from(u32::MAX)));
        let word = self.0.load(Ordering::Relaxed);
        if word >> 32 == hour && word & u64::from(u32::MAX) < Self::HAND_OUT_AT {
            self.0.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        // Racing requests may each swap; each hands out what it replaced.
        unpack(self.0.swap(hour << 32 | 1, Ordering::AcqRel))
    }

    /// Takes the count held, leaving none.
    pub fn take(&self) -> Option<(Timestamp, u64)> {
        unpack(self.0.swap(0, Ordering::AcqRel))
    }
}

fn unpack(word: u64) -> Option<(Timestamp, u64)> {
    let n = word & u64::from(u32::MAX);
    let hour = i64::try_from(word >> 32).unwrap_or(0);
    (n > 0).then(|| (Timestamp::from_unix(hour * HOUR), n))
}

/// Hourly counters of every token used since the last drain.
#[derive(Debug, Default)]
pub struct HourlyUsage {
    counters: Map,
}

impl HourlyUsage {
    /// Counts one request of `token` at `now`.
    pub fn count(&self, token: TokenId, now: Timestamp, kind: UsageKind) {
        let key = (token, hour_of(now));
        let map = self.counters.pin();
        let counters = match map.get(&key) {
            Some(c) => c,
            None => map.get_or_insert_with(key, Arc::default),
        };
        counters.0[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` requests of `kind` to `token`'s counts for the hour that
    /// starts at `hour`.
    pub fn add(&self, token: TokenId, hour: Timestamp, kind: UsageKind, n: u64) {
        let map = self.counters.pin();
        let counters = map.get_or_insert_with((token, hour_of(hour)), Arc::default);
        counters.0[kind as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Takes every count gathered since the last drain, emptying the
    /// counters; hours before `now`'s are dropped from memory.
    pub fn drain(&self, now: Timestamp) -> Vec<HourUsage> {
        let current = hour_of(now);
        let map = self.counters.pin();
        let mut out = Vec::new();
        let mut past = Vec::new();
        for (&(token_id, hour), counters) in map.iter() {
            let counts: Counts = std::array::from_fn(|i| counters.0[i].swap(0, Ordering::AcqRel));
            if counts.iter().any(|&n| n > 0) {
                out.push(HourUsage {
                    token_id,
                    hour: Timestamp::from_unix(hour),
                    counts,
                });
            }
            if hour < current {
                past.push((token_id, hour));
            }
        }
        for key in past {
            // A request that counted between the swap and here is put back
            // by `requeue`-like addition below: nothing is lost.
            if let Some(counters) = map.remove(&key) {
                let late: Counts = std::array::from_fn(|i| counters.0[i].swap(0, Ordering::AcqRel));
                if late.iter().any(|&n| n > 0) {
                    out.push(HourUsage {
                        token_id: key.0,
                        hour: Timestamp::from_unix(key.1),
                        counts: late,
                    });
                }
            }
        }
        out
    }

    /// Puts back counts a drain handed out but that could not be written.
    pub fn requeue(&self, rows: &[HourUsage]) {
        let map = self.counters.pin();
        for row in rows {
            let counters = map.get_or_insert_with((row.token_id, row.hour.unix()), Arc::default);
            for (slot, n) in counters.0.iter().zip(row.counts) {
                slot.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// How many token-hours are held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: TokenId = TokenId::new(7);

    #[test]
    fn counts_are_kept_per_hour_and_drained_once() {
        let u = HourlyUsage::default();
        let at = Timestamp::from_unix;
        u.count(T, at(7_200), UsageKind::Allowed);
        u.count(T, at(7_300), UsageKind::Allowed);
        u.count(T, at(7_300), UsageKind::Scope);
        u.count(T, at(10_800), UsageKind::IpNotAllowed);
        let mut drained = u.drain(at(10_900));
        drained.sort_by_key(|r| r.hour);
        assert_eq!(drained.len(), 2);
        assert_eq!((drained[0].hour, drained[0].counts), (at(7_200), [2, 0, 0, 0, 0, 1]));
        assert_eq!((drained[1].hour, drained[1].counts), (at(10_800), [0, 0, 1, 0, 0, 0]));
        // The past hour is gone from memory; the current one stays, empty.
        assert_eq!(u.len(), 1);
        assert!(u.drain(at(10_900)).is_empty());
        u.requeue(&drained);
        assert_eq!(u.drain(at(10_900)).len(), 2, "put back, then drained again");
    }

    #[test]
    fn allowed_requests_count_in_place_until_their_hour_is_over_or_taken() {
        let a = AllowedThisHour::default();
        let at = Timestamp::from_unix;
        assert_eq!(a.take(), None);
        assert_eq!(a.count(at(7_200)), None);
        assert_eq!(a.count(at(10_799)), None);
        // The next hour hands out the last one's count and starts at one.
        assert_eq!(a.count(at(10_800)), Some((at(7_200), 2)));
        assert_eq!(a.take(), Some((at(10_800), 1)));
        assert_eq!(a.take(), None);
        // After a take the same hour counts afresh.
        assert_eq!(a.count(at(10_900)), None);
        assert_eq!(a.take(), Some((at(10_800), 1)));
        // Before the epoch counts as hour zero rather than failing.
        assert_eq!(a.count(at(-5)), None);
        assert_eq!(a.take(), Some((at(0), 1)));
    }

    #[test]
    fn spelling_is_snake_case() {
        assert_eq!(
            UsageKind::VARIANTS,
            [
                "allowed",
                "rate_limited",
                "ip_not_allowed",
                "expired",
                "inactive",
                "scope"
            ]
        );
    }
}
