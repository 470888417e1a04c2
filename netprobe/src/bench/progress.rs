//! Which mode and rate are running and about how long is left, on stderr;
//! and the cancellation point for Ctrl-C and SIGTERM.

use std::{
    io::{IsTerminal as _, Write as _},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use crate::lab::Mode;

pub struct Progress {
    total: usize,
    done: usize,
    per_run: Duration,
    started: Instant,
    terminal: bool,
    cancelled: Arc<AtomicBool>,
}

impl Progress {
    /// `total` runs of `per_run` each; `cancelled` is set by the signal
    /// handlers.
    pub fn new(total: usize, per_run: Duration, cancelled: Arc<AtomicBool>) -> Self {
        Self {
            total,
            done: 0,
            per_run,
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
            cancelled,
        }
    }

    pub fn start_run(&mut self, mode: Mode, rate: f64, size: usize) -> Result<()> {
        self.check_cancelled()?;
        self.done += 1;
        let left = self.per_run * (self.total + 1 - self.done) as u32;
        self.show(&format!(
            "[{}/{}] {mode} {size} B at {rate:.0}/s, {} elapsed, about {} left",
            self.done,
            self.total,
            humantime::format_duration(round(self.started.elapsed())),
            humantime::format_duration(round(left)),
        ));
        Ok(())
    }

    /// A mode that could not run: its runs are done.
    pub fn skip(&mut self, mode: Mode, runs: usize) {
        self.done += runs;
        self.show(&format!("{mode}: unavailable here, skipped"));
    }

    pub fn note(&mut self, text: &str) -> Result<()> {
        self.check_cancelled()?;
        self.show(text);
        Ok(())
    }

    pub fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }

    fn check_cancelled(&self) -> Result<()> {
        if self.cancelled.load(Ordering::Relaxed) {
            bail!("interrupted: the bench's lab and probes were removed");
        }
        Ok(())
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
