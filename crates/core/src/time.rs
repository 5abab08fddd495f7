//! Time as latchkey stores and shows it: whole seconds since the Unix epoch,
//! rendered as RFC 3339 UTC (`2026-11-27T09:14:57Z`). Time enters through a
//! [`Clock`] so that rules that depend on it can be tested without sleeping.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, UTC.
pub type Timestamp = i64;

/// Where "now" comes from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The real wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

/// Formats a timestamp as RFC 3339 UTC with seconds precision.
pub fn rfc3339(ts: Timestamp) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// Parses an RFC 3339 timestamp (any offset) into seconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_seconds_precision_in_utc() {
        assert_eq!(rfc3339(1_795_770_897), "2026-11-27T09:14:57Z");
        assert_eq!(parse_rfc3339("2026-11-27T10:14:57+01:00"), Some(1_795_770_897));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
