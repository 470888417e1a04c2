//! Each probe program's time per run from the kernel's bpf statistics, and
//! what the statistics themselves add to a run: two clock reads around
//! every program, which here cost more than most of the probes' early
//! exits. That share is measured on the probes' twin, the same programs on
//! the same hooks returning at once (`ProbeOptions::hooks_only`), and taken
//! off.

use anyhow::Result;

use crate::{
    bench::Counters,
    path::PathProgram,
    probes::{NodeProbes, ProgramCost},
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
    /// Less what the statistics add to the same program returning at once
    /// on the same hook.
    pub program_ns_per_run: f64,
}

/// The statistics over one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
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

fn cost_of<'a>(costs: &'a [ProgramCost], program: &str) -> Option<&'a ProgramCost> {
    costs.iter().find(|cost| cost.program == program)
}

/// The statistics of `probes`' programs and of their `hooks_only` twin
/// (both loaded with the statistics on) over `load`, which returns how many
/// requests it sent.
pub fn calibrate(
    probes: &mut NodeProbes,
    hooks_only: &mut NodeProbes,
    load: impl FnOnce() -> Result<f64>,
) -> Result<Calibration> {
    let (mark, twin_mark) = (probes.mark()?, hooks_only.mark()?);
    let cpu_before = Counters::read(&[])?;
    let requests = load()?;
    let cpu = Counters::read(&[])?.since(&cpu_before).busy();
    let counted = probes.since(&mark)?;
    let twin = hooks_only.since(&twin_mark)?.costs;
    let programs = probes
        .session()
        .path()
        .programs()
        .into_iter()
        .filter_map(|PathProgram { hook, name }| {
            let cost = cost_of(&counted.costs, name)?;
            let stats_ns = cost_of(&twin, name).map_or(0.0, |twin| twin.ns_per_run);
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
            programs: vec![program(2.0, 10.0), program(10.0, 3.0)],
            cpu_ns_per_request: 10_000.0,
        };
        assert_eq!(calibration.ns_per_request(), 50.0);
        assert_eq!(calibration.cpu_share(), 0.005);
    }
}
