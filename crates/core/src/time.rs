//! Time as latchkey stores and shows it: whole seconds since the Unix epoch,
//! rendered as RFC 3339 UTC (`2026-11-27T09:14:57Z`). Time enters through a
//! [`Clock`] so that rules that depend on it can be tested without sleeping.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch, UTC. Its JSON is the plain number; where
/// docs/api.md shows a time as text, callers format it with
/// [`Timestamp::rfc3339`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
#[repr(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The epoch itself, `1970-01-01T00:00:00Z`.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// The time `secs` seconds after the epoch.
    pub const fn from_unix(secs: i64) -> Self {
        Timestamp(secs)
    }

    /// Seconds since the epoch.
    pub const fn unix(self) -> i64 {
        self.0
    }

    /// `secs` seconds later, saturating at the ends of `i64`.
    pub const fn plus_secs(self, secs: i64) -> Self {
        Timestamp(self.0.saturating_add(secs))
    }

    /// `secs` seconds earlier, saturating at the ends of `i64`.
    pub const fn minus_secs(self, secs: i64) -> Self {
        Timestamp(self.0.saturating_sub(secs))
    }

    /// `secs` seconds later, or `None` past the ends of `i64`.
    pub const fn checked_plus_secs(self, secs: i64) -> Option<Self> {
        match self.0.checked_add(secs) {
            Some(t) => Some(Timestamp(t)),
            None => None,
        }
    }

    /// Seconds from `earlier` to `self` (negative when `earlier` is later),
    /// saturating at the ends of `i64`.
    pub const fn secs_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// RFC 3339 UTC with seconds precision.
    pub fn rfc3339(self) -> String {
        let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
        time::OffsetDateTime::from_unix_timestamp(self.0)
            .ok()
            .and_then(|t| t.format(&format).ok())
            .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
    }

    /// Parses an RFC 3339 time (any offset).
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(|t| Timestamp(t.unix_timestamp()))
    }
}

/// Where "now" comes from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    /// Milliseconds since the epoch, for what needs finer steps than
    /// seconds (rate-limit counts shared between nodes); a clock moved by
    /// hand gives its whole seconds.
    fn now_millis(&self) -> i64 {
        self.now().unix().saturating_mul(1000)
    }
}

/// The real wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        )
    }

    fn now_millis(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// [`Timestamp::rfc3339`], for callers that format a time in passing.
pub fn rfc3339(ts: Timestamp) -> String {
    ts.rfc3339()
}

/// [`Timestamp::parse_rfc3339`].
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    Timestamp::parse_rfc3339(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_seconds_precision_in_utc() {
        let t = Timestamp::from_unix(1_795_770_897);
        assert_eq!(rfc3339(t), "2026-11-27T09:14:57Z");
        assert_eq!(t.rfc3339(), "2026-11-27T09:14:57Z");
        assert_eq!(parse_rfc3339("2026-11-27T10:14:57+01:00"), Some(t));
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(Timestamp::from_unix(i64::MAX).rfc3339(), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn timestamps_are_plain_numbers_in_json() {
        let t = Timestamp::from_unix(1_795_770_897);
        assert_eq!(serde_json::to_string(&t).expect("json"), "1795770897");
        assert_eq!(serde_json::from_str::<Timestamp>("1795770897").expect("json"), t);
        assert_eq!(serde_json::to_string(&None::<Timestamp>).expect("json"), "null");
    }

    #[test]
    fn arithmetic_is_in_seconds_and_saturates() {
        let t = Timestamp::from_unix(100);
        assert_eq!(t.plus_secs(5).unix(), 105);
        assert_eq!(t.minus_secs(5).unix(), 95);
        assert_eq!(t.plus_secs(5).secs_since(t), 5);
        assert_eq!(t.secs_since(t.plus_secs(5)), -5);
        assert_eq!(Timestamp::from_unix(i64::MAX).plus_secs(1).unix(), i64::MAX);
        assert_eq!(Timestamp::from_unix(i64::MIN).minus_secs(1).unix(), i64::MIN);
        assert_eq!(Timestamp::from_unix(i64::MAX).checked_plus_secs(1), None);
        assert!(t < t.plus_secs(1));
        assert_eq!(Timestamp::EPOCH, Timestamp::default());
    }
}
