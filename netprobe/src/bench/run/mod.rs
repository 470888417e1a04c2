//! The half of the bench that runs things: it builds the labs, holds the
//! machine steady, runs the load generator with and without the probes,
//! reads the system's counters, and writes what it measured.

mod cpu_idle;
mod interrupt;
mod labs;
mod load;
mod max_rate;
mod plan;
mod progress;
mod system;
mod tune;

use std::{
    fs::{self, File},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

pub use self::{
    cpu_idle::IdlePolling,
    load::run_load,
    plan::{Modes, PlanError, Rates, Sizes},
    system::Counters,
};
use self::{
    labs::Bench,
    load::Load,
    plan::{AUTO_SHARES, Plan, mode_time, served_sizes},
    progress::Progress,
};
use super::{
    SLICES,
    analysis::{BenchResults, Settings, Summary, print_out, write_reports},
};
use crate::{
    lab::{CpuSplit, Mode},
    load::Pacing,
    privilege::require_bpf_privileges,
    probes::{FollowArg, ProbeOptions},
    record::LAB_STATE_DIR,
};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Modes to compare: "all" or a comma-separated list.
    #[arg(long, default_value = "all")]
    pub modes: Modes,
    /// Requested rates (requests/s, comma-separated), or "auto": 10, 30, 50,
    /// 70 and 90% of the highest rate host sustains with the probes attached
    /// (at the first size).
    #[arg(long, default_value = "auto")]
    pub rates: Rates,
    #[arg(
        long,
        default_value_t = Sizes::all(),
        help = format!("Response sizes, as the study names them: {}", served_sizes())
    )]
    pub sizes: Sizes,
    #[arg(
        long,
        default_value = "2s",
        value_parser = humantime::parse_duration,
        help = format!(
            "Measured time of each run; each rate and size runs twice, without and with the \
             probes, and each run in {SLICES} slices (each after a {} warm-up) for which the \
             modes take turns",
            humantime::format_duration(WARMUP)
        )
    )]
    pub duration: Duration,
    /// Keep-alive connections of the load generator.
    #[arg(long, default_value_t = crate::load::DEFAULT_CONNECTIONS)]
    pub connections: usize,
    /// How the load generator waits for each send time (see `netprobe load
    /// --pacing`). It spins by default, on the client's own CPUs, so that
    /// requests leave on time and responses are read as they arrive: on a
    /// VM a timer's wake-up comes microseconds late and holds up the
    /// responses that arrive meanwhile. With a single CPU, shared with
    /// nginx, it sleeps instead.
    #[arg(long, value_enum, default_value_t = Pacing::Spin)]
    pub pacing: Pacing,
    /// Apply the study's tuning (RPS/XPS, flow tables, NOTRACK, somaxconn,
    /// fs.file-max) and report each setting.
    #[arg(long)]
    pub tune: bool,
    /// Also find the highest rate each mode sustains, probes attached
    /// (about 20 s more per mode).
    #[arg(long)]
    pub max_rates: bool,
    /// Let idle CPUs halt. By default the bench keeps them polling (PM QoS
    /// /dev/cpu_dma_latency 0): waking a halted vCPU takes tens of
    /// microseconds, at random, and would swamp the modes' differences.
    #[arg(long)]
    pub allow_idle_states: bool,
    /// Where results.json, table.txt, attribution.txt and report.html go.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// About 1 request in 2N - 1 is followed whole across both nodes (its
    /// response picked with it): at low rates or short runs a smaller N
    /// joins more.
    #[command(flatten)]
    pub follow: FollowArg,
}

/// Before each slice of a run: the connections are new.
const WARMUP: Duration = Duration::from_millis(150);

/// Each rate and size runs twice: without probes, for the mode's own
/// latency, and with them, for its breakdown.
const RUNS_PER_POINT: usize = 2;

/// The probes on both nodes: following one packet in `follow_one_in`, with
/// every packet they follow sent whole to userspace (the same packets on
/// both: they pick by the packet's headers).
fn sampling(follow_one_in: u32) -> ProbeOptions {
    ProbeOptions {
        follow_one_in,
        sample_every: follow_one_in,
        ..ProbeOptions::default()
    }
}

/// The bench's labs are named after it: `npbench_host`, ...
pub const BENCH_PREFIX: &str = "npbench";

/// The prefix of `mode`'s lab in the bench.
pub fn bench_prefix(mode: Mode) -> String {
    format!("{BENCH_PREFIX}_{}", mode.name().replace('-', "_"))
}

pub fn run_bench(args: &BenchArgs) -> Result<()> {
    require_bpf_privileges()?;
    if args.connections == 0 {
        bail!("at least one connection is needed");
    }
    let _lock = BenchLock::take()?;
    fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;

    let idle = IdlePolling::hold(args.allow_idle_states);
    let load = Load {
        duration: args.duration,
        warmup: WARMUP,
        connections: args.connections,
        pacing: pacing_on(args.pacing, &CpuSplit::of_this_process()),
    };
    let sizes = &args.sizes.0;
    let slice_time = load.slice_time();
    let known_rates = match &args.rates {
        Rates::Fixed(rates) => rates.len(),
        Rates::Auto => AUTO_SHARES.len(),
    };
    let mut progress = Progress::new(
        args.modes.0.len() * known_rates * sizes.len() * RUNS_PER_POINT * SLICES,
        slice_time,
    );
    let (global_tuning, tuning) = if args.tune {
        let (guard, steps) = tune::GlobalTuning::apply()?;
        (Some(guard), steps)
    } else {
        (None, Vec::new())
    };
    // Dropped, it puts the machine-wide settings back: at the end, on an
    // error, or by the interrupt handler.
    let global_tuning = tune::SharedTuning::new(global_tuning);
    interrupt::tear_down_on_interrupt(global_tuning.shared())?;
    let probes = sampling(args.follow.follow_one_in);
    let mut bench = Bench::build(
        &args.modes.0,
        args.tune,
        known_rates * sizes.len() * RUNS_PER_POINT * SLICES,
        &probes,
        &mut progress,
    )?;
    let (rates, max_rate) = match &args.rates {
        Rates::Fixed(rates) => (rates.clone(), None),
        Rates::Auto => {
            let host = bench.lab(Mode::Host);
            let max = max_rate::find_max_rate(host, sizes[0], &load, &probes, &progress)?;
            let rates = AUTO_SHARES
                .iter()
                .map(|share| (share * max.rate).round())
                .collect();
            (rates, Some(max))
        }
    };
    log::info!(
        "about {} for the runs",
        humantime::format_duration(
            mode_time(
                rates.len() * RUNS_PER_POINT * SLICES,
                sizes.len(),
                slice_time
            ) * args.modes.0.len() as u32
        )
    );
    let mut results = BenchResults {
        netprobe: env!("CARGO_PKG_VERSION").to_owned(),
        kernel: kernel_release(),
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        settings: Settings {
            modes: args.modes.0.clone(),
            rates: rates.clone(),
            sizes: sizes.iter().map(|size| size.nominal_len()).collect(),
            duration_s: args.duration.as_secs_f64(),
            warmup_s: WARMUP.as_secs_f64(),
            slices: SLICES,
            connections: args.connections,
            pacing: load.pacing,
            tune: args.tune,
            cpu_idle: idle.state.clone(),
            follow_one_in: probes.follow_one_in,
        },
        max_rate,
        tuning,
        modes: Vec::new(),
    };
    let plan = Plan {
        rates: &rates,
        sizes,
        load,
        find_max: args.max_rates,
    };
    bench.run(
        &plan,
        &mut progress,
        // What is done so far survives a later failure or interruption.
        |modes| {
            results.modes = modes.to_vec();
            Ok(results.save(&args.out)?)
        },
    )?;
    results.modes = bench.down()?;
    progress.finish();
    write_reports(&results, &args.out)?;
    print_out(&format!(
        "{}\nresults in {}\n",
        Summary(&results),
        args.out.display()
    ))
}

fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_owned())
        .unwrap_or_default()
}

/// One bench at a time: the bench's labs have fixed prefixes. The lock is
/// held while the file stays open.
struct BenchLock {
    _file: File,
}

impl BenchLock {
    fn take() -> Result<Self> {
        fs::create_dir_all(LAB_STATE_DIR).with_context(|| format!("creating {LAB_STATE_DIR}"))?;
        let path = Path::new(LAB_STATE_DIR).join("bench.lock");
        let file = File::create(&path).with_context(|| format!("opening {}", path.display()))?;
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            bail!(
                "another netprobe lab bench is running (its labs {}, ... are in use)",
                bench_prefix(Mode::Host)
            );
        }
        Ok(Self { _file: file })
    }
}

/// The generator spins only on CPUs of its own: on a CPU nginx shares it
/// would take the time nginx needs to answer.
fn pacing_on(asked: Pacing, cpus: &CpuSplit) -> Pacing {
    if asked == Pacing::Spin && cpus.shared() {
        log::warn!(
            "client and server share their CPUs: the load generator sleeps between sends \
             instead of spinning, which would starve nginx"
        );
        return Pacing::Timer;
    }
    asked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_spins_only_on_cpus_of_its_own() {
        let apart = CpuSplit::of(&[0, 1]);
        let shared = CpuSplit::of(&[0]);
        assert_eq!(pacing_on(Pacing::Spin, &apart), Pacing::Spin);
        assert_eq!(pacing_on(Pacing::Spin, &shared), Pacing::Timer);
        assert_eq!(pacing_on(Pacing::Timer, &apart), Pacing::Timer);
    }
}
