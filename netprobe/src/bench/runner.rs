//! One mode of the bench: its lab, and the load at each rate and size, once
//! alone (latency and system metrics) and once with probes on both nodes
//! (the per-hop breakdown and the link between the nodes).

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};
use netprobe_common::probe::Trace;

use super::{
    interrupt,
    link::{self, LinkLatency},
    max_rate,
    plan::bytes,
    progress::Progress,
    results::{ModeResults, Run},
    system::Counters,
    tune,
};
use crate::{
    discovery,
    lab::{CpuSplit, LabError, LabGuard, LabSpec, Mode, ResponseSize, pin_current_thread},
    load::{self, LoadConfig, LoadReport},
    netns::NetNs,
    probes::{ProbeOptions, ProbeSession, ProgramCost, Snapshot},
    report::{Report, ReportContext},
};

/// Each rate and size runs twice: without probes, for the mode's own
/// latency, and with them, for its breakdown.
pub const RUNS_PER_POINT: usize = 2;

/// The bench's lab: one at a time, under this prefix.
pub const BENCH_PREFIX: &str = "npbench";

/// How each run loads the server.
#[derive(Clone, Debug)]
pub struct Load {
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: usize,
}

impl Load {
    pub fn config(&self, url: String, rate: f64) -> LoadConfig {
        LoadConfig {
            connections: self.connections,
            warmup: self.warmup,
            ..LoadConfig::new(url, rate, self.duration)
        }
    }
}

/// The probes on one node of the lab, sampling the packets whose link
/// crossing the bench times.
pub struct NodeProbes {
    netns: String,
    session: ProbeSession,
    traces: RingBuf<MapData>,
}

/// What a node's probes had counted at the start of a run.
pub struct Mark {
    snapshot: Snapshot,
    costs: Vec<ProgramCost>,
}

impl NodeProbes {
    /// Attaches to the node's eth0; with `measure_cost`, the kernel's
    /// run-time statistics are on (they cost throughput themselves).
    pub fn attach(netns: &str, measure_cost: bool) -> Result<Self> {
        let node = NetNs::named(netns)?;
        let datapath = discovery::discover("eth0", &node)?;
        let options = ProbeOptions {
            skip_cost: !measure_cost,
            sample_every: link::SAMPLE_EVERY,
            ..ProbeOptions::default()
        };
        let mut session = ProbeSession::start(&datapath, &node, &options)
            .with_context(|| format!("attaching probes in {netns}"))?;
        let traces = session.take_traces()?;
        Ok(Self {
            netns: netns.to_owned(),
            session,
            traces,
        })
    }

    /// Marks the start of a run; samples taken before it are dropped.
    pub fn mark(&mut self) -> Result<Mark> {
        ProbeSession::drain_traces(&mut self.traces);
        Ok(Mark {
            snapshot: self.session.snapshot()?,
            costs: self.session.program_costs()?,
        })
    }

    /// The breakdown of what happened since `mark`, and the packets sampled.
    pub fn report_since(&mut self, mark: &Mark, seconds: f64) -> Result<(Report, Vec<Trace>)> {
        let traces = ProbeSession::drain_traces(&mut self.traces);
        let (snapshot, costs) = (self.session.snapshot()?, self.session.program_costs()?);
        let context = ReportContext {
            interface: "eth0",
            netns: Some(&self.netns),
            filter: None,
            xdp_mode: self.session.xdp_mode(),
            duration_s: seconds,
        };
        let report = Report::new(
            &context,
            self.session.path(),
            &snapshot.since(&mark.snapshot),
            0,
            self.session.unobserved(),
            costs_since(&mark.costs, &costs),
            Vec::new(),
        );
        Ok((report, traces))
    }
}

fn costs_since(before: &[ProgramCost], after: &[ProgramCost]) -> Vec<ProgramCost> {
    after
        .iter()
        .map(|now| {
            let then = before.iter().find(|then| then.program == now.program);
            let runs = now.run_cnt - then.map_or(0, |then| then.run_cnt);
            let time = now.run_time_ns - then.map_or(0, |then| then.run_time_ns);
            ProgramCost::new(&now.program, runs, Duration::from_nanos(time))
        })
        .collect()
}

/// Runs `mode` at every rate and size.
pub fn bench_mode(
    mode: Mode,
    rates: &[f64],
    sizes: &[ResponseSize],
    load: &Load,
    tune_lab: bool,
    find_max: bool,
    progress: &mut Progress,
) -> Result<ModeResults> {
    let built = {
        let _change = interrupt::lab_change();
        LabGuard::up(&LabSpec::new(BENCH_PREFIX, mode))
    };
    let lab = match built {
        Ok(lab) => lab,
        Err(error @ LabError::IpvlanUnavailable) => {
            progress.skip(mode, RUNS_PER_POINT * rates.len() * sizes.len());
            return Ok(ModeResults {
                mode,
                unavailable: Some(error.to_string()),
                tuning: Vec::new(),
                max_rate: None,
                runs: Vec::new(),
            });
        }
        Err(error) => return Err(error).with_context(|| format!("building the {mode} lab")),
    };
    let tuning = if tune_lab {
        tune::tune_lab(&lab)?
    } else {
        Vec::new()
    };
    let namespaces: Vec<&str> = lab
        .namespaces()
        .into_iter()
        .map(|(_, netns)| netns)
        .collect();
    let points: Vec<(ResponseSize, f64)> = sizes
        .iter()
        .flat_map(|&size| rates.iter().map(move |&rate| (size, rate)))
        .collect();
    // The mode's own latency and system load, with nothing attached: the
    // probes' cost differs between modes (more hops, more runs).
    let mut alone = Vec::new();
    for &(size, rate) in &points {
        progress.start_run(mode, rate, bytes(size), false);
        let counters = Counters::read(&namespaces)?;
        let started = Instant::now();
        let report = run_load(lab.client_netns(), load.config(lab.server_url(size), rate))?;
        let seconds = started.elapsed().as_secs_f64();
        alone.push((
            report,
            counters.until(&Counters::read(&namespaces)?, seconds),
        ));
    }
    // Costs are measured once, by max_rate: the statistics would load the
    // CPU the rates were chosen for.
    let mut client = NodeProbes::attach(&lab.nodes()[0].netns, false)?;
    let mut server = NodeProbes::attach(&lab.nodes()[1].netns, false)?;
    let max_rate = if find_max {
        progress.note(&format!("finding the highest rate {mode} sustains"));
        Some(max_rate::search(
            &lab,
            sizes[0],
            &max_rate::search_load(load.connections),
        )?)
    } else {
        None
    };
    let mut runs = Vec::new();
    for (&(size, rate), (report, system)) in points.iter().zip(alone) {
        progress.start_run(mode, rate, bytes(size), true);
        let marks = (client.mark()?, server.mark()?);
        let started = Instant::now();
        let probed = run_load(lab.client_netns(), load.config(lab.server_url(size), rate))?;
        let seconds = started.elapsed().as_secs_f64();
        let (client_report, client_samples) = client.report_since(&marks.0, seconds)?;
        let (server_report, server_samples) = server.report_since(&marks.1, seconds)?;
        runs.push(Run {
            rate,
            size: bytes(size),
            load: report,
            system,
            probed_load: probed,
            client: client_report,
            server: server_report,
            link: LinkLatency::join(&client_samples, &server_samples),
        });
    }
    drop((client, server));
    let _change = interrupt::lab_change();
    lab.down().context("removing the bench lab")?;
    Ok(ModeResults {
        mode,
        unavailable: None,
        tuning,
        max_rate,
        runs,
    })
}

/// The load generator, from inside the client's namespace and on the
/// client's side of the CPUs.
pub fn run_load(client_netns: &str, config: LoadConfig) -> Result<LoadReport> {
    let cpus = CpuSplit::of_this_process().client;
    let result = NetNs::named(client_netns)?
        .run(|| {
            pin_current_thread(&cpus).context("pinning the load generator")?;
            load::run(&config).map_err(anyhow::Error::from)
        })?
        .with_context(|| format!("loading {} at {:.0}/s", config.url, config.rate))?;
    Ok(result.report)
}
