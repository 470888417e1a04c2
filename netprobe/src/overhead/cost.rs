//! Each probe program's time per run from the kernel's bpf statistics, and
//! what the statistics themselves add to a run: two clock reads around
//! every program, which here cost more than most of the probes' early
//! exits. That share is measured on programs that do nothing, attached
//! beside the probes on the same kinds of hooks, and taken off.

use anyhow::{Context as _, Result};
use aya::{
    Btf, Ebpf,
    programs::{BtfTracePoint, LinkOrder, SchedClassifier, TcAttachType, links::FdLink},
};

use crate::{
    bench::Counters,
    bpf_link::{self, AttachError},
    hooks::Attachment,
    netns::NetNs,
    path::PathProgram,
    probes::{NodeProbes, ProgramCost, TESTING_OBJECT},
};

/// A program's runs and time per run over a measured run.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgramRuns {
    pub program: &'static str,
    /// Where the program runs: `TC ingress`, `tcx egress`, a tracepoint.
    pub hook: &'static str,
    pub runs_per_request: f64,
    /// As the statistics give it.
    pub ns_per_run: f64,
    /// Less what the statistics add to a program that does nothing on the
    /// same kind of hook.
    pub program_ns_per_run: f64,
}

/// The statistics over one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    /// What the statistics add to a run on a tcx hook, and on a tracepoint.
    pub stats_tcx_ns: f64,
    pub stats_tracepoint_ns: f64,
    pub programs: Vec<ProgramRuns>,
    /// CPU time per request over the run, all CPUs together (user, system
    /// and softirq): what the programs' time is set against.
    pub cpu_ns_per_request: f64,
}

impl Calibration {
    /// The probes' program time per request, less the statistics' share.
    pub fn ns_per_request(&self) -> f64 {
        self.programs
            .iter()
            .map(|program| program.runs_per_request * program.program_ns_per_run)
            .sum()
    }

    /// [`Self::ns_per_request`] as a share of the CPU time per request: at
    /// saturation, with every CPU busy, the throughput the program bodies
    /// take (their hooks' own dispatch not counted).
    pub fn cpu_share(&self) -> f64 {
        self.ns_per_request() / self.cpu_ns_per_request.max(1.0)
    }
}

/// Programs that do nothing, on a tcx hook of a device and on
/// `net:net_dev_start_xmit`: with the statistics on, their time per run is
/// the statistics' own.
pub struct Nothing {
    // Links first: they drop before the programs they point to.
    _links: [FdLink; 2],
    ebpf: Ebpf,
}

const NOTHING_TCX: &str = "np_test_nothing";
const NOTHING_TRACEPOINT: &str = "np_test_nothing_traced";

impl Nothing {
    /// Attaches to `interface` in `netns` (tcx ingress, last in the chain)
    /// and to the tracepoint.
    pub fn attach(netns: &NetNs, interface: &str) -> Result<Self> {
        let mut ebpf = Ebpf::load(TESTING_OBJECT).context("loading the testing programs")?;
        let tcx: &mut SchedClassifier = ebpf
            .program_mut(NOTHING_TCX)
            .context("the testing object has no np_test_nothing")?
            .try_into()?;
        tcx.load()?;
        let tcx_link = bpf_link::attach_tcx(
            tcx,
            interface,
            TcAttachType::Ingress,
            LinkOrder::last(),
            netns,
        )
        .map_err(|error| match error {
            AttachError::Refused(error) => anyhow::Error::from(error),
            AttachError::NetNs(error) => error.into(),
            AttachError::Busy | AttachError::NotALink => {
                anyhow::anyhow!("attaching np_test_nothing to {interface}: not a tcx link")
            }
        })?;
        let traced: &mut BtfTracePoint = ebpf
            .program_mut(NOTHING_TRACEPOINT)
            .context("the testing object has no np_test_nothing_traced")?
            .try_into()?;
        traced.load("net_dev_start_xmit", &Btf::from_sys_fs()?)?;
        let id = traced.attach()?;
        let traced_link = traced.take_link(id)?.into();
        Ok(Self {
            _links: [tcx_link, traced_link],
            ebpf,
        })
    }

    /// Runs and run time so far: on the tcx hook, on the tracepoint.
    fn costs(&self) -> Result<[ProgramCost; 2]> {
        let cost = |name: &'static str| -> Result<ProgramCost> {
            let info = self
                .ebpf
                .program(name)
                .with_context(|| format!("no {name}"))?
                .info()?;
            Ok(ProgramCost::new(name, info.run_count(), info.run_time()))
        };
        Ok([cost(NOTHING_TCX)?, cost(NOTHING_TRACEPOINT)?])
    }
}

/// The statistics of `probes`' programs (loaded with the statistics on)
/// and of `nothing` over `load`, which returns how many requests it sent.
pub fn calibrate(
    probes: &mut NodeProbes,
    nothing: &Nothing,
    load: impl FnOnce() -> Result<f64>,
) -> Result<Calibration> {
    let (mark, nothing_before) = (probes.mark()?, nothing.costs()?);
    let cpu_before = Counters::read(&[])?;
    let requests = load()?;
    let cpu = Counters::read(&[])?.since(&cpu_before).busy();
    let (counted, nothing_after) = (probes.since(&mark)?, nothing.costs()?);
    let [stats_tcx_ns, stats_tracepoint_ns] = [0, 1].map(|index| {
        nothing_after[index]
            .since(Some(&nothing_before[index]))
            .ns_per_run
    });
    let programs = probes
        .session()
        .path()
        .programs()
        .into_iter()
        .filter_map(|PathProgram { hook, name }| {
            let cost = counted.costs.iter().find(|cost| cost.program == name)?;
            let stats_ns = match hook.definition().attachment {
                Attachment::Tracepoint(_) => stats_tracepoint_ns,
                Attachment::Xdp | Attachment::Tcx { .. } => stats_tcx_ns,
            };
            Some(ProgramRuns {
                program: name,
                hook: hook.describe(),
                runs_per_request: cost.run_cnt as f64 / requests.max(1.0),
                ns_per_run: cost.ns_per_run,
                program_ns_per_run: (cost.ns_per_run - stats_ns).max(0.0),
            })
        })
        .collect();
    Ok(Calibration {
        stats_tcx_ns,
        stats_tracepoint_ns,
        programs,
        cpu_ns_per_request: cpu.as_nanos() as f64 / requests.max(1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_per_request_adds_up_the_programs_less_the_statistics() {
        let program = |runs_per_request, program_ns_per_run| ProgramRuns {
            program: "p",
            hook: "h",
            runs_per_request,
            ns_per_run: program_ns_per_run + 60.0,
            program_ns_per_run,
        };
        let calibration = Calibration {
            stats_tcx_ns: 60.0,
            stats_tracepoint_ns: 60.0,
            programs: vec![program(2.0, 10.0), program(10.0, 3.0)],
            cpu_ns_per_request: 10_000.0,
        };
        assert_eq!(calibration.ns_per_request(), 50.0);
        assert_eq!(calibration.cpu_share(), 0.005);
    }
}
