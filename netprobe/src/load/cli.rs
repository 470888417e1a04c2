//! The `netprobe load` command line.

use std::path::PathBuf;

use anyhow::Context as _;

use super::{
    DEFAULT_CONNECTIONS, DEFAULT_DURATION, DEFAULT_TIMEOUT, DEFAULT_WARMUP, LoadConfig, Pacing, run,
};
use crate::record;

/// Send HTTP GETs at a constant rate and report the latency of the responses,
/// timed from when each request was due.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// URL to GET: http://HOST:PORT/PATH, port and path optional
    pub url: String,
    /// Requests per second, over all connections
    #[arg(short, long, allow_negative_numbers = true)]
    pub rate: f64,
    /// Keep-alive connections, each with one request in flight
    #[arg(short, long, default_value_t = DEFAULT_CONNECTIONS)]
    pub connections: usize,
    /// Length of the measured window, e.g. 10s or 1m30s
    #[arg(short, long, default_value_t = DEFAULT_DURATION.into())]
    pub duration: humantime::Duration,
    /// Load sent before the measured window and left out of the report
    #[arg(long, default_value_t = DEFAULT_WARMUP.into())]
    pub warmup: humantime::Duration,
    /// Time a request may wait for its whole response
    #[arg(long, default_value_t = DEFAULT_TIMEOUT.into())]
    pub timeout: humantime::Duration,
    /// Worker threads [default: half the CPUs]
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// How to wait for each send time: sleep on a timer, or spin (keeps a
    /// CPU busy per thread, and sends on time where a timer wakes late: on
    /// a VM each timer costs a trip through the hypervisor)
    #[arg(long, value_enum, default_value_t = Pacing::Timer)]
    pub pacing: Pacing,
    /// Also write the report to FILE as JSON
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Runs `netprobe load` and prints its report.
pub fn main(args: LoadArgs) -> anyhow::Result<()> {
    let config = LoadConfig {
        url: args.url,
        rate: args.rate,
        connections: args.connections,
        duration: args.duration.into(),
        warmup: args.warmup.into(),
        timeout: args.timeout.into(),
        threads: args.threads,
        pacing: args.pacing,
    };
    let result = run(&config).with_context(|| format!("load on {}", config.url))?;
    println!("{}", result.report);
    if let Some(path) = args.json {
        record::save(&path, &result.report)?;
    }
    Ok(())
}
