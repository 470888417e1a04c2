//! `netprobe lab bench`: the seed study rerun on one host. It builds every
//! mode's lab, starts nginx in each, runs the load at each rate and size
//! alone (latency, system metrics) and again with the probes on both nodes
//! (the per-hop breakdown), the modes taking turns so that the machine's
//! drift weighs on all alike, and takes the labs down; then it writes
//! `results.json`, the study-shaped latency table with the check of the
//! study's order, the attribution of each mode's extra latency to segments,
//! and a self-contained `report.html`. `netprobe report DIR` renders saved
//! results again.
//!
//! Two halves, the second never using the first:
//! - [`run`]: what runs things: the labs, the load generator, the probes,
//!   the system's counters; it ends in a `results.json`.
//! - [`analysis`]: what is computed from what was measured: medians, noise,
//!   the order check, the attribution, the median request's timeline, the
//!   tables and the page. `netprobe report` uses it alone. It reads what was
//!   measured in the types of the modules that measure it (`lab::Mode`,
//!   `load::LoadReport`, `probes::SampledFlight`, `probes::ProgramCost`) and
//!   calls none of their code that runs things.

mod analysis;
mod run;

pub use self::{
    analysis::{
        Attribution, BenchResults, MaxRate, MedianRequest, ModeResults, PointResults, ReportArgs,
        Settings, TuningStep, attribute, run_report,
    },
    run::{
        BENCH_PREFIX, BenchArgs, Counters, IdlePolling, Modes, PlanError, Rates, Sizes,
        bench_prefix, run_bench, run_load,
    },
};
use crate::lab::Mode;

/// Each run is split into this many slices, the modes taking turns between
/// them.
pub const SLICES: usize = 4;

/// `--rates auto` checks the load generator against wrk's closed-loop
/// maximum (`Lab::wrk_rate`, with wrk on `WRK_THREADS` threads and
/// `WRK_CONNECTIONS` connections),
pub use crate::lab::{WRK_CONNECTIONS, WRK_THREADS};
/// asking the generator for this share of wrk's rate
pub const GENERATOR_CHECK_SHARE: f64 = 0.8;
/// over this many connections: over wrk's, each would have barely an
/// interval's time per request at that share, and the check would measure
/// that rather than the generator.
pub const GENERATOR_CHECK_CONNECTIONS: usize = 100;

/// The study's order of the modes by latency, fastest first; the last step
/// is strict. The order check compares neighbours in it, and the modes take
/// their turns in it so that those neighbours run next to each other.
pub const STUDY_ORDER: [Mode; 5] = [
    Mode::Host,
    Mode::Macvlan,
    Mode::FlannelHostgw,
    Mode::AwsVpc,
    Mode::FlannelVxlan,
];
