//! Which mode and rate are running and about how long is left, on stderr.

use std::{
    io::{IsTerminal as _, Write as _},
    time::{Duration, Instant},
};

use crate::lab::{Mode, WireSize};

pub struct Progress {
    total: usize,
    done: usize,
    per_run: Duration,
    started: Instant,
    terminal: bool,
}

impl Progress {
    /// `total` runs of `per_run` each.
    pub fn new(total: usize, per_run: Duration) -> Self {
        Self {
            total,
            done: 0,
            per_run,
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    pub fn start_run(&mut self, mode: Mode, rate: f64, size: usize, probed: bool) {
        self.done += 1;
        let left = self.per_run * (self.total + 1 - self.done) as u32;
        let probes = if probed { "with" } else { "without" };
        let size = WireSize(size);
        self.show(&format!(
            "[{}/{}] {mode} {size} at {rate:.0}/s {probes} probes, {} elapsed, about {} left",
            self.done,
            self.total,
            humantime::format_duration(round(self.started.elapsed())),
            humantime::format_duration(round(left)),
        ));
    }

    /// A mode that could not run: its runs are done.
    pub fn skip(&mut self, mode: Mode, runs: usize) {
        self.done += runs;
        self.show(&format!("{mode}: unavailable here, skipped"));
    }

    pub fn note(&self, text: &str) {
        self.show(text);
    }

    pub fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }

    fn show(&self, line: &str) {
        if self.terminal {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
        std::io::stderr().flush().ok();
    }
}

fn round(duration: Duration) -> Duration {
    Duration::from_secs(duration.as_secs())
}
