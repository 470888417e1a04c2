//! One mode of the bench: its lab, probes on both nodes, and the load at
//! each rate and size, with the per-hop breakdown and system metrics of
//! every run.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use super::{
    interrupt, max_rate,
    plan::bytes,
    progress::Progress,
    results::{ModeResults, Run},
    system::Counters,
    tune,
};
use crate::{
    discovery,
    lab::{LabError, LabGuard, LabSpec, Mode, ResponseSize},
    load::{self, LoadConfig, LoadReport},
    netns::NetNs,
    probes::{ProbeOptions, ProbeSession, ProgramCost, Snapshot},
    report::{Report, ReportContext},
};

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

/// The probes on one node of the lab.
pub struct NodeProbes {
    netns: String,
    session: ProbeSession,
}

impl NodeProbes {
    /// Attaches to the node's eth0; with `measure_cost`, the kernel's
    /// run-time statistics are on (they cost throughput themselves).
    pub fn attach(netns: &str, measure_cost: bool) -> Result<Self> {
        let node = NetNs::named(netns)?;
        let datapath = discovery::discover("eth0", &node)?;
        let options = ProbeOptions {
            skip_cost: !measure_cost,
            ..ProbeOptions::default()
        };
        let session = ProbeSession::start(&datapath, &node, &options)
            .with_context(|| format!("attaching probes in {netns}"))?;
        Ok(Self {
            netns: netns.to_owned(),
            session,
        })
    }

    pub fn mark(&self) -> Result<(Snapshot, Vec<ProgramCost>)> {
        Ok((self.session.snapshot()?, self.session.program_costs()?))
    }

    /// The breakdown of what happened since `mark`.
    pub fn report_since(
        &self,
        mark: &(Snapshot, Vec<ProgramCost>),
        seconds: f64,
    ) -> Result<Report> {
        let (snapshot, costs) = self.mark()?;
        let context = ReportContext {
            interface: "eth0",
            netns: Some(&self.netns),
            filter: None,
            xdp_mode: self.session.xdp_mode(),
            duration_s: seconds,
        };
        Ok(Report::new(
            &context,
            self.session.path(),
            &snapshot.since(&mark.0),
            0,
            self.session.unobserved(),
            costs_since(&mark.1, &costs),
            Vec::new(),
        ))
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
            progress.skip(mode, rates.len() * sizes.len());
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
    // Costs are measured once, by max_rate: the statistics would load the
    // CPU the rates were chosen for.
    let client = NodeProbes::attach(&lab.nodes()[0].netns, false)?;
    let server = NodeProbes::attach(&lab.nodes()[1].netns, false)?;
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
    let namespaces: Vec<&str> = lab
        .namespaces()
        .into_iter()
        .map(|(_, netns)| netns)
        .collect();
    let mut runs = Vec::new();
    for &size in sizes {
        for &rate in rates {
            progress.start_run(mode, rate, bytes(size));
            let marks = (client.mark()?, server.mark()?);
            let counters = Counters::read(&namespaces)?;
            let started = Instant::now();
            let report = run_load(lab.client_netns(), load.config(lab.server_url(size), rate))?;
            let seconds = started.elapsed().as_secs_f64();
            runs.push(Run {
                rate,
                size: bytes(size),
                system: counters.until(&Counters::read(&namespaces)?, seconds),
                client: client.report_since(&marks.0, seconds)?,
                server: server.report_since(&marks.1, seconds)?,
                load: report,
            });
        }
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

/// The load generator, from inside the client's namespace.
pub fn run_load(client_netns: &str, config: LoadConfig) -> Result<LoadReport> {
    let result = NetNs::named(client_netns)?
        .run(|| load::run(&config))?
        .with_context(|| format!("loading {} at {:.0}/s", config.url, config.rate))?;
    Ok(result.report)
}
