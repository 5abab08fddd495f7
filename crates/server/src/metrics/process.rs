//! The process's own figures under their standard Prometheus names
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_start_time_seconds`), read from `/proc` on Linux when
//! `/metrics` is scraped, never per request. Elsewhere they are left out.
//!
//! A few lines by hand rather than a crate: `procfs` parses all of `/proc`
//! with a tree of dependencies for the four files read here, and the
//! Prometheus client crates' process collectors come with their registry.
//! The files' formats are proc(5)'s, stable for decades. CPU and start
//! times are in clock ticks of `USER_HZ`, which Linux fixes at 100 for user
//! space on every architecture latchkey builds for (asking `sysconf` would
//! take `unsafe`, which this workspace forbids); Prometheus's own Go
//! `procfs` library makes the same assumption.

use std::fmt::Write;

use super::header;

/// Clock ticks per second of `/proc`'s times (`USER_HZ`).
const TICKS_PER_SECOND: f64 = 100.0;

/// What `/metrics` shows about the process.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    /// Unix time the process started at, in seconds.
    pub start_time: f64,
}

/// Reads the figures now; `None` where `/proc` cannot be read (not Linux).
pub fn read() -> Option<Figures> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let system = std::fs::read_to_string("/proc/stat").ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    let max_fds = rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft);
    figures(&stat, &status, &system, open_fds, max_fds)
}

/// The figures from the text of `/proc/self/stat`, `/proc/self/status` and
/// `/proc/stat`.
fn figures(stat: &str, status: &str, system: &str, open_fds: u64, max_fds: Option<u64>) -> Option<Figures> {
    // The command name (field 2) is in parentheses and may itself hold
    // spaces and parentheses: the fields that follow start after the last
    // `)`, at field 3 (the state).
    let after = &stat[stat.rfind(')')? + 1..];
    let field = |n: usize| -> Option<u64> { after.split_whitespace().nth(n - 3)?.parse().ok() };
    let (utime, stime, start_ticks) = (field(14)?, field(15)?, field(22)?);
    let boot_time: u64 = system
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let kilobytes = |key: &str| -> Option<u64> {
        let rest = status.lines().find_map(|l| l.strip_prefix(key))?;
        rest.split_whitespace().next()?.parse::<u64>().ok()?.checked_mul(1024)
    };
    Some(Figures {
        cpu_seconds: (utime + stime) as f64 / TICKS_PER_SECOND,
        resident_bytes: kilobytes("VmRSS:")?,
        virtual_bytes: kilobytes("VmSize:")?,
        open_fds,
        max_fds,
        start_time: boot_time as f64 + start_ticks as f64 / TICKS_PER_SECOND,
    })
}

impl Figures {
    pub(super) fn write(&self, out: &mut String) -> std::fmt::Result {
        header(
            out,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        )?;
        writeln!(out, "process_cpu_seconds_total {}", self.cpu_seconds)?;
        header(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        )?;
        writeln!(out, "process_resident_memory_bytes {}", self.resident_bytes)?;
        header(
            out,
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
        )?;
        writeln!(out, "process_virtual_memory_bytes {}", self.virtual_bytes)?;
        header(out, "process_open_fds", "gauge", "Number of open file descriptors.")?;
        writeln!(out, "process_open_fds {}", self.open_fds)?;
        if let Some(max) = self.max_fds {
            header(
                out,
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
            )?;
            writeln!(out, "process_max_fds {max}")?;
        }
        header(
            out,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
        )?;
        writeln!(out, "process_start_time_seconds {}", self.start_time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (latch key) (x)) S 1 4242 4242 0 -1 4194560 1500 0 0 0 \
                        250 130 0 0 20 0 9 0 123400 812345344 3000 18446744073709551615 \
                        1 1 0 0 0 0 0 4096 17610 0 0 0 17 1 0 0 0 0 0";
    const STATUS: &str =
        "Name:\tlatchkey\nVmPeak:\t  800000 kB\nVmSize:\t  793306 kB\nVmRSS:\t   12000 kB\nThreads:\t9\n";
    const SYSTEM: &str = "cpu  1 2 3 4\nintr 5\nbtime 1700000000\nprocesses 10\n";

    #[test]
    fn figures_are_read_from_procs_text() {
        let f = figures(STAT, STATUS, SYSTEM, 17, Some(1024)).unwrap();
        assert_eq!(
            f,
            Figures {
                cpu_seconds: 3.8,
                resident_bytes: 12_000 * 1024,
                virtual_bytes: 793_306 * 1024,
                open_fds: 17,
                max_fds: Some(1024),
                start_time: 1_700_001_234.0,
            }
        );
        let mut out = String::new();
        f.write(&mut out).unwrap();
        for line in [
            "process_cpu_seconds_total 3.8",
            "process_resident_memory_bytes 12288000",
            "process_open_fds 17",
            "process_max_fds 1024",
            "process_start_time_seconds 1700001234",
            "# TYPE process_cpu_seconds_total counter",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
    }

    #[test]
    fn unreadable_text_gives_no_figures_and_no_panic() {
        assert_eq!(figures("", STATUS, SYSTEM, 0, None), None);
        assert_eq!(figures("1 (x) S 1 2", STATUS, SYSTEM, 0, None), None);
        assert_eq!(figures(STAT, "", SYSTEM, 0, None), None);
        assert_eq!(figures(STAT, STATUS, "", 0, None), None);
        assert_eq!(
            figures(STAT, "VmRSS: 99999999999999999999 kB\nVmSize: 1 kB", SYSTEM, 0, None),
            None
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_plausible_figures() {
        let f = read().unwrap();
        assert!(f.resident_bytes > 0 && f.virtual_bytes >= f.resident_bytes);
        assert!(f.open_fds > 0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            f.start_time <= now + 1.0 && f.start_time > now - 86_400.0,
            "{}",
            f.start_time
        );
    }
}
