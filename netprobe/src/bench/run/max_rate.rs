//! `--rates auto`: the highest rate the host mode sustains, found by
//! doubling then bisecting; measured without and with the probes, which is
//! the throughput the probes cost.

use std::time::Duration;

use anyhow::Result;

use super::{
    bench_prefix, interrupt,
    load::{Load, run_load},
    progress::Progress,
};
use crate::{
    bench::{GENERATOR_CHECK_CONNECTIONS, GENERATOR_CHECK_SHARE, analysis::MaxRate},
    lab::{Lab, LabGuard, LabSpec, Mode, ResponseSize},
    probes::{NodeProbes, ProbeOptions, ProgramCost},
};

/// Each run of the rate search: short, enough to see a rate held or not.
const RATE_SEARCH_DURATION: Duration = Duration::from_secs(2);
const RATE_SEARCH_WARMUP: Duration = Duration::from_millis(500);
const FIRST_RATE: f64 = 4000.0;
/// How long wrk runs to find its maximum.
const WRK_DURATION: Duration = Duration::from_secs(3);
/// Halving the gap between held and not held five times: within 3%.
const BISECTIONS: usize = 5;
/// No machine here sustains this; the search stops doubling there.
const CEILING: f64 = 2_000_000.0;

/// A short run holds a rate within this share of it.
const SEARCH_TOLERANCE: f64 = 0.02;

/// Host's maximum in `lab`, the bench's own host lab; without one (host is
/// not among `--modes`) in a lab built for the search alone.
pub fn find_max_rate(
    lab: Option<&Lab>,
    size: ResponseSize,
    bench: &Load,
    probes: &ProbeOptions,
    progress: &Progress,
) -> Result<MaxRate> {
    if let Some(lab) = lab {
        return max_rate_in(lab, size, bench, probes, progress);
    }
    let lab = {
        let _change = interrupt::lab_change();
        LabGuard::up(&LabSpec::new(bench_prefix(Mode::Host), Mode::Host))?
    };
    let max = max_rate_in(&lab, size, bench, probes, progress)?;
    let _change = interrupt::lab_change();
    lab.down()?;
    Ok(max)
}

/// The search, wrk's maximum, the generator against it and the probes'
/// cost, in `lab`, a host lab.
fn max_rate_in(
    lab: &Lab,
    size: ResponseSize,
    bench: &Load,
    probes: &ProbeOptions,
    progress: &Progress,
) -> Result<MaxRate> {
    let load = rate_search_load(bench);
    progress.note("measuring wrk's closed-loop maximum and the load generator against it");
    let wrk_rate = lab.wrk_rate(size, WRK_DURATION)?;
    let check = Load {
        connections: GENERATOR_CHECK_CONNECTIONS,
        ..load.clone()
    };
    let generator = run_load(
        lab.client_netns(),
        check.config(lab.server_url(size), GENERATOR_CHECK_SHARE * wrk_rate),
    )?
    .report;
    progress.note("finding the highest rate host sustains, without probes");
    let without = search(lab, size, &load)?;
    let attached = (
        NodeProbes::attach(&lab.nodes()[0].netns, probes)?,
        NodeProbes::attach(&lab.nodes()[1].netns, probes)?,
    );
    progress.note("and with probes");
    let with = search(lab, size, &load)?;
    drop(attached);
    progress.note("measuring the probes' cost per run");
    let probe_cost = measure_cost(lab, size, &load, probes, with / 2.0)?;
    Ok(MaxRate {
        mode: Mode::Host,
        size: size.nominal_len(),
        rate: with,
        rate_without_probes: without,
        wrk_rate,
        generator_at_80_percent: generator.achieved_rate,
        probe_cost,
    })
}

/// Each probe program's time per run on the server's node, with the kernel's
/// statistics on, at `rate`.
fn measure_cost(
    lab: &Lab,
    size: ResponseSize,
    load: &Load,
    probes: &ProbeOptions,
    rate: f64,
) -> Result<Vec<ProgramCost>> {
    let mut server = NodeProbes::attach(
        &lab.nodes()[1].netns,
        &ProbeOptions {
            program_cost: true,
            ..probes.clone()
        },
    )?;
    let before = server.mark()?;
    run_load(lab.client_netns(), load.config(lab.server_url(size), rate))?;
    Ok(server.since(&before)?.costs)
}

/// The runs of the rate search: short, with the bench's connections and
/// pacing.
pub fn rate_search_load(bench: &Load) -> Load {
    Load {
        duration: RATE_SEARCH_DURATION,
        warmup: RATE_SEARCH_WARMUP,
        ..bench.clone()
    }
}

/// The highest rate of `size` responses the lab sustains.
pub fn search(lab: &Lab, size: ResponseSize, load: &Load) -> Result<f64> {
    let holds = |rate: f64| -> Result<bool> {
        let result = run_load(lab.client_netns(), load.config(lab.server_url(size), rate))?;
        Ok(result.report.held_within(SEARCH_TOLERANCE))
    };
    let (mut good, mut bad) = (0.0, FIRST_RATE);
    while bad < CEILING && holds(bad)? {
        good = bad;
        bad *= 2.0;
    }
    for _ in 0..BISECTIONS {
        let middle = (good + bad) / 2.0;
        if holds(middle)? {
            good = middle;
        } else {
            bad = middle;
        }
    }
    Ok(good)
}
