//! Ctrl-C and SIGTERM during a bench: remove what the bench built (its labs,
//! with any fast path in them; the probes go with the process) and put back
//! the machine-wide tuning, then exit. A run blocks for its whole duration,
//! so this happens on a thread of its own, not between runs.

use std::{
    process,
    sync::{Arc, Mutex, MutexGuard},
    thread,
};

use anyhow::{Context as _, Result};
use signal_hook::{
    consts::{SIGINT, SIGTERM},
    iterator::Signals,
};

use super::{
    bench_prefix,
    tune::{GlobalTuning, put_back},
};
use crate::lab::{Lab, Mode};

/// Held while a lab is built or removed, so that the interrupt never tears
/// down a lab half-built (and so misses what comes after).
static LAB_CHANGE: Mutex<()> = Mutex::new(());

/// Serializes building and removing the bench's lab with the interrupt.
pub fn lab_change() -> MutexGuard<'static, ()> {
    LAB_CHANGE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Installs the handler; `tuning` is put back before exiting.
pub fn tear_down_on_interrupt(tuning: Arc<Mutex<Option<GlobalTuning>>>) -> Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("handling Ctrl-C")?;
    thread::Builder::new()
        .name("netprobe-interrupt".into())
        .spawn(move || {
            if signals.forever().next().is_none() {
                return;
            }
            eprintln!("\ninterrupted: removing the bench's labs");
            let _change = lab_change();
            for mode in Mode::ALL {
                let prefix = bench_prefix(mode);
                if let Err(error) = Lab::down(&prefix) {
                    eprintln!("error: {error:#} (netprobe lab down --prefix {prefix})");
                }
            }
            put_back(&tuning);
            process::exit(130);
        })
        .context("starting the interrupt handler")?;
    Ok(())
}
