//! Progress bars for the long commands (`token import`, `copy-db`), drawn
//! with `indicatif` on standard error only when it is a terminal: a script
//! or a log file sees nothing but the commands' own lines.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

fn style() -> ProgressStyle {
    ProgressStyle::with_template("{msg:>14} [{bar:30}] {pos}/{len} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// A bar of `len` steps named `msg`, or a hidden one off a terminal.
pub fn bar(msg: &str, len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len).with_style(style());
    bar.set_message(msg.to_owned());
    bar
}

/// A spinner for a step of unknown length, or a hidden one off a terminal.
pub fn spinner(msg: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let s = ProgressBar::new_spinner();
    s.set_message(msg.to_owned());
    s.enable_steady_tick(std::time::Duration::from_millis(120));
    s
}

/// One bar per table for `copy-db`, fed by its progress callback.
#[derive(Default)]
pub struct TableBars {
    current: Mutex<Option<(String, ProgressBar)>>,
}

impl TableBars {
    /// The callback: a new table finishes the previous bar and starts one.
    pub fn update(&self, table: &str, copied: u64, total: u64) {
        let Ok(mut current) = self.current.lock() else {
            return;
        };
        if current.as_ref().is_none_or(|(name, _)| name != table) {
            if let Some((_, done)) = current.take() {
                done.finish();
            }
            *current = Some((table.to_owned(), bar(table, total)));
        }
        if let Some((_, b)) = current.as_ref() {
            b.set_length(total.max(copied));
            b.set_position(copied);
        }
    }

    pub fn finish(&self) {
        if let Ok(mut current) = self.current.lock() {
            if let Some((_, done)) = current.take() {
                done.finish();
            }
        }
    }
}
