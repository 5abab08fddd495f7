//! The usage chart of a token's details page (README.md, "Usage"): its
//! requests per UTC day over the last 30 days, allowed and denied stacked,
//! drawn on the server as inline SVG (no script). Denied requests are
//! hatched, not only coloured, and the figure's text carries everything the
//! bars show: a summary as the image's name, the totals by reason beside
//! it and a table by day.
//!
//! The SVG's horizontal positions are percentages of its width and its
//! heights are pixels, so it fills any width without scaling its text.

use std::fmt::Write as _;

use latchkey_core::time::Timestamp;
use latchkey_core::usage::{HourUsage, UsageKind};
use strum::IntoEnumIterator;

/// How many days the chart shows: today (UTC) and the 29 before it.
pub const DAYS: i64 = 30;
const DAY: i64 = 86_400;

/// The chart's height and the plot's top and baseline, in pixels.
const HEIGHT: u32 = 176;
const PLOT_TOP: f64 = 22.0;
const BASELINE: f64 = 148.0;
/// The least height a non-zero part of a bar gets, so one request shows.
const MIN_BAR: f64 = 2.0;

const ALLOWED_FILL: &str = "#1f5fbf";
const DENIED_INK: &str = "#b42318";
const DENIED_PAPER: &str = "#fdecea";
const TEXT: &str = "#52606d";
const GRID: &str = "#cbd2d9";

/// One day's counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayCount {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub allowed: u64,
    pub denied: u64,
}

/// One reason a request was denied, and how many were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub label: &'static str,
    pub count: u64,
}

/// A token's usage over [`DAYS`] days, as the details page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageChart {
    /// Oldest first, one per day, [`DAYS`] of them.
    pub days: Vec<DayCount>,
    pub allowed: u64,
    pub denied: u64,
    /// Every reason, in the API's order, with its total.
    pub reasons: Vec<Reason>,
}

/// How the page names a reason (the API's `denied` keys).
fn reason_label(kind: UsageKind) -> &'static str {
    match kind {
        UsageKind::Allowed => "Allowed",
        UsageKind::RateLimited => "Rate limited",
        UsageKind::IpNotAllowed => "Address not allowed",
        UsageKind::Expired => "Expired",
        UsageKind::Inactive => "Deactivated",
        UsageKind::Scope => "Missing scope",
    }
}

fn show_day(unix: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

impl UsageChart {
    /// Adds up `rows` (hourly, as `App::token_usage` gives them) by UTC
    /// day, for today and the days before it; older rows are left out.
    pub fn new(rows: &[HourUsage], now: Timestamp) -> UsageChart {
        let first = now.unix().div_euclid(DAY) * DAY - (DAYS - 1) * DAY;
        let mut days: Vec<DayCount> = (0..DAYS)
            .map(|i| DayCount {
                day: show_day(first + i * DAY),
                allowed: 0,
                denied: 0,
            })
            .collect();
        let mut reasons: Vec<Reason> = UsageKind::iter()
            .filter(|k| *k != UsageKind::Allowed)
            .map(|k| Reason {
                label: reason_label(k),
                count: 0,
            })
            .collect();
        for row in rows {
            let Ok(i) = usize::try_from((row.hour.unix() - first).div_euclid(DAY)) else {
                continue;
            };
            let Some(day) = days.get_mut(i) else { continue };
            for (kind, n) in UsageKind::iter().zip(row.counts) {
                if kind == UsageKind::Allowed {
                    day.allowed += n;
                } else {
                    day.denied += n;
                    if let Some(r) = reasons.iter_mut().find(|r| r.label == reason_label(kind)) {
                        r.count += n;
                    }
                }
            }
        }
        UsageChart {
            allowed: days.iter().map(|d| d.allowed).sum(),
            denied: days.iter().map(|d| d.denied).sum(),
            days,
            reasons,
        }
    }

    /// Whether no request was counted in the whole period.
    pub fn is_empty(&self) -> bool {
        self.allowed == 0 && self.denied == 0
    }

    /// The days with requests (the table under the chart).
    pub fn active_days(&self) -> impl Iterator<Item = &DayCount> {
        self.days.iter().filter(|d| d.allowed + d.denied > 0)
    }

    pub fn first_day(&self) -> &str {
        self.days.first().map_or("", |d| d.day.as_str())
    }

    pub fn last_day(&self) -> &str {
        self.days.last().map_or("", |d| d.day.as_str())
    }

    /// What the chart shows, in a sentence: the image's accessible name.
    pub fn summary(&self) -> String {
        let busiest = self
            .days
            .iter()
            .rev()
            .max_by_key(|d| d.allowed + d.denied)
            .filter(|d| d.allowed + d.denied > 0);
        let mut s = format!(
            "Requests per day from {} to {} (UTC): {} allowed and {} denied in all",
            self.first_day(),
            self.last_day(),
            self.allowed,
            self.denied
        );
        if let Some(d) = busiest {
            let _ = write!(
                s,
                "; the busiest day was {} with {} allowed and {} denied",
                d.day, d.allowed, d.denied
            );
        }
        s.push('.');
        s
    }

    /// The chart as an inline `<svg>` element (a stacked bar a day: allowed
    /// solid, denied hatched above it), or "" when there is nothing to draw.
    pub fn svg(&self) -> String {
        if self.is_empty() {
            return String::new();
        }
        let top = nice_ceiling(self.days.iter().map(|d| d.allowed + d.denied).max().unwrap_or(1));
        let plot = BASELINE - PLOT_TOP;
        let height = |n: u64| {
            if n == 0 {
                0.0
            } else {
                (n as f64 * plot / top as f64).max(MIN_BAR)
            }
        };
        let slot = 100.0 / DAYS as f64;
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="100%" height="{HEIGHT}" role="img" aria-labelledby="usage-chart-title" focusable="false">"#
        );
        let _ = write!(s, r#"<title id="usage-chart-title">{}</title>"#, self.summary());
        let _ = write!(
            s,
            r#"<defs><pattern id="usage-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="{DENIED_PAPER}"/><rect width="3" height="6" fill="{DENIED_INK}"/></pattern></defs>"#
        );
        // The scale: a line at the top value, labelled, and the baseline.
        let _ = write!(
            s,
            r#"<text x="0" y="{}" font-size="12" fill="{TEXT}">{top} requests</text>"#,
            PLOT_TOP - 6.0
        );
        let _ = write!(
            s,
            r#"<line x1="0" x2="100%" y1="{PLOT_TOP}" y2="{PLOT_TOP}" stroke="{GRID}" stroke-dasharray="4 4"/>"#
        );
        for (i, d) in self.days.iter().enumerate() {
            if d.allowed + d.denied == 0 {
                continue;
            }
            let x = i as f64 * slot + slot * 0.15;
            let w = slot * 0.7;
            let a = height(d.allowed);
            let n = height(d.denied);
            let _ = write!(
                s,
                "<g><title>{}: {} allowed, {} denied</title>",
                d.day, d.allowed, d.denied
            );
            if a > 0.0 {
                let _ = write!(
                    s,
                    r#"<rect x="{x:.3}%" y="{:.1}" width="{w:.3}%" height="{a:.1}" fill="{ALLOWED_FILL}"/>"#,
                    BASELINE - a
                );
            }
            if n > 0.0 {
                let _ = write!(
                    s,
                    r#"<rect x="{x:.3}%" y="{:.1}" width="{w:.3}%" height="{n:.1}" fill="url(#usage-hatch)" stroke="{DENIED_INK}"/>"#,
                    BASELINE - a - n
                );
            }
            s.push_str("</g>");
        }
        let _ = write!(
            s,
            r#"<line x1="0" x2="100%" y1="{BASELINE}" y2="{BASELINE}" stroke="{TEXT}"/>"#
        );
        let label_y = f64::from(HEIGHT) - 8.0;
        let _ = write!(
            s,
            r#"<text x="0" y="{label_y}" font-size="12" fill="{TEXT}">{}</text><text x="100%" y="{label_y}" font-size="12" fill="{TEXT}" text-anchor="end">{}</text>"#,
            self.first_day(),
            self.last_day()
        );
        s.push_str("</svg>");
        s
    }
}

/// The smallest 1, 2 or 5 times a power of ten that is at least `n` (and
/// at least 1): the top of the scale.
fn nice_ceiling(n: u64) -> u64 {
    let mut power = 1u64;
    loop {
        for step in [1, 2, 5] {
            match power.checked_mul(step) {
                Some(v) if v >= n => return v,
                Some(_) => {}
                None => return n,
            }
        }
        match power.checked_mul(10) {
            Some(p) => power = p,
            None => return n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::id::TokenId;

    // 2026-11-30 10:15:00 UTC.
    const NOW: Timestamp = Timestamp::from_unix(1_796_033_700);

    fn row(hour: &str, counts: [u64; 6]) -> HourUsage {
        HourUsage {
            token_id: TokenId::new(1),
            hour: Timestamp::parse_rfc3339(hour).expect("time"),
            counts,
        }
    }

    #[test]
    fn hours_add_up_by_utc_day_with_the_reasons() {
        let chart = UsageChart::new(
            &[
                row("2026-11-30T09:00:00Z", [120, 0, 3, 0, 0, 1]),
                row("2026-11-30T00:00:00Z", [5, 2, 0, 0, 0, 0]),
                row("2026-11-29T23:00:00Z", [7, 0, 0, 0, 4, 0]),
                row("2026-11-01T00:00:00Z", [1, 0, 0, 1, 0, 0]),
                // The day before the first: left out.
                row("2026-10-31T23:00:00Z", [50, 50, 0, 0, 0, 0]),
            ],
            NOW,
        );
        assert_eq!(chart.days.len(), 30);
        assert_eq!((chart.first_day(), chart.last_day()), ("2026-11-01", "2026-11-30"));
        let last = chart.days.last().expect("today");
        assert_eq!((last.allowed, last.denied), (125, 6));
        assert_eq!((chart.days[28].allowed, chart.days[28].denied), (7, 4));
        assert_eq!((chart.days[0].allowed, chart.days[0].denied), (1, 1));
        assert_eq!((chart.allowed, chart.denied), (133, 11));
        let reasons: Vec<(&str, u64)> = chart.reasons.iter().map(|r| (r.label, r.count)).collect();
        assert_eq!(
            reasons,
            [
                ("Rate limited", 2),
                ("Address not allowed", 3),
                ("Expired", 1),
                ("Deactivated", 4),
                ("Missing scope", 1)
            ]
        );
        assert_eq!(chart.active_days().count(), 3);
        assert_eq!(
            chart.summary(),
            "Requests per day from 2026-11-01 to 2026-11-30 (UTC): 133 allowed and 11 denied in all; \
             the busiest day was 2026-11-30 with 125 allowed and 6 denied."
        );
    }

    #[test]
    fn no_requests_draw_no_chart() {
        let chart = UsageChart::new(&[], NOW);
        assert!(chart.is_empty());
        assert_eq!(chart.svg(), "");
        assert_eq!(chart.active_days().count(), 0);
        assert!(chart.summary().ends_with(": 0 allowed and 0 denied in all."));
    }

    #[test]
    fn the_scale_is_rounded_up_to_one_two_or_five() {
        let tops: Vec<u64> = [0, 1, 2, 3, 6, 10, 11, 120, 999, 1001].map(nice_ceiling).to_vec();
        assert_eq!(tops, [1, 1, 2, 5, 10, 10, 20, 200, 1000, 2000]);
        assert_eq!(nice_ceiling(u64::MAX), u64::MAX);
    }

    #[test]
    fn the_svg_stacks_hatched_denied_bars_on_allowed_ones() {
        let chart = UsageChart::new(
            &[
                row("2026-11-30T09:00:00Z", [80, 0, 20, 0, 0, 0]),
                row("2026-11-28T09:00:00Z", [0, 0, 0, 0, 0, 1]),
            ],
            NOW,
        );
        let svg = chart.svg();
        assert_eq!(
            svg,
            concat!(
                r##"<svg xmlns="http://www.w3.org/2000/svg" width="100%" height="176" role="img" aria-labelledby="usage-chart-title" focusable="false">"##,
                r##"<title id="usage-chart-title">Requests per day from 2026-11-01 to 2026-11-30 (UTC): 80 allowed and 21 denied in all; the busiest day was 2026-11-30 with 80 allowed and 20 denied.</title>"##,
                r##"<defs><pattern id="usage-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#fdecea"/><rect width="3" height="6" fill="#b42318"/></pattern></defs>"##,
                r##"<text x="0" y="16" font-size="12" fill="#52606d">100 requests</text>"##,
                r##"<line x1="0" x2="100%" y1="22" y2="22" stroke="#cbd2d9" stroke-dasharray="4 4"/>"##,
                // One denied request: the least visible height.
                r##"<g><title>2026-11-28: 0 allowed, 1 denied</title><rect x="90.500%" y="146.0" width="2.333%" height="2.0" fill="url(#usage-hatch)" stroke="#b42318"/></g>"##,
                r##"<g><title>2026-11-30: 80 allowed, 20 denied</title><rect x="97.167%" y="47.2" width="2.333%" height="100.8" fill="#1f5fbf"/>"##,
                r##"<rect x="97.167%" y="22.0" width="2.333%" height="25.2" fill="url(#usage-hatch)" stroke="#b42318"/></g>"##,
                r##"<line x1="0" x2="100%" y1="148" y2="148" stroke="#52606d"/>"##,
                r##"<text x="0" y="168" font-size="12" fill="#52606d">2026-11-01</text><text x="100%" y="168" font-size="12" fill="#52606d" text-anchor="end">2026-11-30</text>"##,
                "</svg>"
            )
        );
    }
}
