//! How the bench runs the load generator: its settings for each run, and
//! the generator started inside the client's namespace on the client's
//! CPUs.

use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::{
    bench::SLICES,
    lab::{CpuSplit, pin_current_thread},
    load::{self, LoadConfig, LoadResult, Pacing},
    netns::NetNs,
};

/// How each run loads the server.
#[derive(Clone, Debug)]
pub struct Load {
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: usize,
    pub pacing: Pacing,
}

impl Load {
    pub fn config(&self, url: String, rate: f64) -> LoadConfig {
        LoadConfig {
            connections: self.connections,
            warmup: self.warmup,
            pacing: self.pacing,
            ..LoadConfig::new(url, rate, self.duration)
        }
    }

    /// One of a run's [`SLICES`]: its share of the measured time, after a
    /// warm-up of its own.
    pub fn slice_config(&self, url: String, rate: f64) -> LoadConfig {
        LoadConfig {
            duration: self.duration / SLICES as u32,
            ..self.config(url, rate)
        }
    }

    /// How long one slice takes, its warm-up included.
    pub fn slice_time(&self) -> Duration {
        self.duration / SLICES as u32 + self.warmup
    }
}

/// The load generator, from inside the client's namespace and on the
/// client's side of the CPUs.
pub fn run_load(client_netns: &str, config: LoadConfig) -> Result<LoadResult> {
    let cpus = CpuSplit::of_this_process().client;
    NetNs::named(client_netns)?
        .run(|| {
            pin_current_thread(&cpus).context("pinning the load generator")?;
            load::run(&config).map_err(anyhow::Error::from)
        })?
        .with_context(|| format!("loading {} at {:.0}/s", config.url, config.rate))
}
