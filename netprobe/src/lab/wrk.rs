//! wrk, a closed-loop load generator, from the lab's client: as many
//! requests per second as the lab serves, which is what the probes' cost in
//! throughput is measured by.

use std::{io, os::unix::process::CommandExt as _, process::Command, time::Duration};

use thiserror::Error;

use super::{CpuSplit, Lab, ResponseSize, pin_current_thread};

/// wrk's threads and connections: one thread, as the load generator's
/// share of the CPUs runs, and as many connections as it keeps by default.
pub const WRK_THREADS: usize = 1;
pub const WRK_CONNECTIONS: usize = 50;

#[derive(Debug, Error)]
pub enum WrkError {
    #[error("running wrk (apt-get install wrk): {0}")]
    Spawn(#[source] io::Error),
    #[error("wrk failed: {0}")]
    Failed(String),
    #[error("no Requests/sec in wrk's output: {0}")]
    NoRate(String),
}

impl Lab {
    /// wrk for `duration` (whole seconds) from the client's namespace, on
    /// the client's side of the CPUs as the load generator runs: the
    /// requests per second it got answered.
    pub fn wrk_rate(&self, size: ResponseSize, duration: Duration) -> Result<f64, WrkError> {
        let cpus = CpuSplit::of_this_process().client;
        let mut wrk = Command::new("ip");
        wrk.args(["netns", "exec", self.client_netns(), "wrk"])
            .arg(format!("-t{WRK_THREADS}"))
            .arg(format!("-c{WRK_CONNECTIONS}"))
            .arg(format!("-d{}s", duration.as_secs().max(1)))
            .arg(self.server_url(size));
        // SAFETY: between fork and exec the child only makes the one
        // sched_setaffinity call, which allocates nothing.
        unsafe { wrk.pre_exec(move || pin_current_thread(&cpus)) };
        let output = wrk.output().map_err(WrkError::Spawn)?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(WrkError::Failed(
                String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            ));
        }
        stdout
            .lines()
            .find_map(|line| line.strip_prefix("Requests/sec:"))
            .and_then(|rate| rate.trim().parse().ok())
            .ok_or_else(|| WrkError::NoRate(stdout.into_owned()))
    }
}
