//! Where each mode's extra latency over `host` goes: the median request's
//! time by segment kind over both nodes and both directions, the link
//! between the nodes and the server application's time included (see
//! `request`), with the time requests waited in the load generator to be
//! sent, set against the generator's median difference in the same
//! (probed) runs.
//!
//! The median request rather than means: this VM stalls a request for
//! milliseconds now and then, anywhere on its way; at 0.1% of the requests
//! that moves a mean by microseconds, at random, and no segment holds all
//! of it. (The generator's mean difference is kept beside them.) Results
//! saved before requests were sampled whole fall back to the segments'
//! medians, which add up while every hop's time is narrowly spread.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    noise::{Noise, Pair},
    request::MedianRequest,
    results::{BenchResults, ModeResults, Run},
};
use crate::{lab::Mode, path::SegmentKind};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    pub mode: Mode,
    pub rate: f64,
    pub size: usize,
    /// Extra median time per segment kind, ns (negative: faster than host).
    pub by_kind: BTreeMap<SegmentKind, i64>,
    /// Extra median time requests waited in the generator to be sent.
    pub client_wait_ns: i64,
    /// Sum of `by_kind` and `client_wait_ns`.
    pub parts_ns: i64,
    /// The load generator's mean over host's.
    pub mean_ns: i64,
    /// The load generator's median over host's: the median of the slices'
    /// medians, as the latency table takes it.
    pub median_ns: i64,
    /// How far apart parts and median may be by the probes' measurement
    /// alone: the totals of the requests averaged lie this far apart in the
    /// two runs together, and the median lies among them (or, from
    /// segment medians, half a histogram bucket each, 1/64 of its value).
    #[serde(default)]
    pub resolution_ns: i64,
    /// How far the median difference may be off by chance: two standard
    /// errors from how every difference between modes that held their rate
    /// moved between the slices, or this one's own move if larger (the
    /// only measure for a mode past its capacity).
    #[serde(default)]
    pub noise_ns: i64,
}

/// Parts within this share of the median difference close it.
pub const CLOSURE_TOLERANCE: f64 = 0.25;

impl Attribution {
    /// How much of the end-to-end (median) difference the parts account for.
    pub fn closure(&self) -> Option<f64> {
        (self.median_ns != 0).then(|| self.parts_ns as f64 / self.median_ns as f64)
    }

    /// Whether the parts add up to the median difference: within the
    /// tolerance, or, when the difference is that small, within what the
    /// probes resolve.
    pub fn closes(&self) -> bool {
        self.gap() <= self.tolerance().max(self.resolution_ns as f64)
    }

    /// Parts that do not close but are nearer the median difference than it
    /// may be off by chance: the run cannot tell.
    pub fn within_noise(&self) -> bool {
        !self.closes() && self.gap() <= self.noise_ns as f64
    }

    /// How far apart parts and median may be by measurement alone.
    pub fn margin_ns(&self) -> i64 {
        self.resolution_ns.max(self.noise_ns)
    }

    fn gap(&self) -> f64 {
        self.parts_ns.abs_diff(self.median_ns) as f64
    }

    fn tolerance(&self) -> f64 {
        CLOSURE_TOLERANCE * self.median_ns.unsigned_abs() as f64
    }
}

/// Time per segment kind of the run's median request, or the segments'
/// medians if no request was sampled whole (results saved before requests
/// were).
pub fn time_by_kind(run: &Run) -> BTreeMap<SegmentKind, u64> {
    match &run.median_request {
        Some(request) => request.by_kind.clone(),
        None => median_by_kind(run),
    }
}

/// Median time per segment kind, summed over both nodes and both
/// directions, with the link between them and the server's application
/// time. (The client's gap between reading and writing is the load
/// generator's schedule, not part of a request.)
fn median_by_kind(run: &Run) -> BTreeMap<SegmentKind, u64> {
    let mut sums = BTreeMap::new();
    for segment in run.client.segments.iter().chain(&run.server.segments) {
        *sums.entry(segment.kind).or_default() += segment.latency.p50_ns;
    }
    if let Some(link) = &run.link {
        sums.insert(SegmentKind::Link, link.round_trip_p50_ns());
    }
    if let Some(application) = &run.server.application {
        sums.insert(SegmentKind::Application, application.p50_ns);
    }
    sums
}

/// One run's time by segment kind and the time its requests waited to be
/// sent, and how far their sum may be from the median of the whole by
/// measurement alone.
struct Breakdown {
    by_kind: BTreeMap<SegmentKind, u64>,
    client_wait_ns: u64,
    uncertainty_ns: u64,
}

impl Breakdown {
    /// The median request's: its totals' spread, among which the median
    /// lies.
    fn of_request(request: &MedianRequest) -> Self {
        Self {
            by_kind: request.by_kind.clone(),
            client_wait_ns: request.client_wait_ns,
            uncertainty_ns: request.spread_ns,
        }
    }

    /// The segments' medians: each within half a histogram bucket, 1/64
    /// of its value.
    fn of_medians(run: &Run) -> Self {
        let by_kind = median_by_kind(run);
        Self {
            uncertainty_ns: by_kind.values().sum::<u64>() / 64,
            by_kind,
            client_wait_ns: run.probed_load.send_lag.p50_ns,
        }
    }
}

/// A mode's probed run against host's, as the noise compares them.
fn probed_pair<'a>(run: &'a Run, host: &'a Run) -> Pair<'a> {
    Pair {
        ours: &host.probed_slice_p50_ns,
        theirs: &run.probed_slice_p50_ns,
        held: run.probed_held() && host.probed_held(),
    }
}

/// Each mode's probed runs with host's at the same rate and size.
fn pairs<'a>(
    results: &'a BenchResults,
    host: &'a ModeResults,
) -> impl Iterator<Item = (&'a ModeResults, &'a Run, &'a Run)> {
    results
        .modes
        .iter()
        .filter(|mode| mode.mode != Mode::Host)
        .flat_map(move |mode| {
            mode.runs.iter().filter_map(move |run| {
                let baseline = host.run(run.rate, run.size)?;
                Some((mode, run, baseline))
            })
        })
}

/// Every mode's runs against host's at the same rate and size.
pub fn attribute(results: &BenchResults) -> Vec<Attribution> {
    let Some(host) = results.mode(Mode::Host) else {
        return Vec::new();
    };
    // How far a median difference over host may be off by chance, from
    // every mode that held its rate.
    let noise = Noise::pooled(pairs(results, host).map(|(_, run, host)| probed_pair(run, host)));
    let mut attributions = Vec::new();
    for (mode, run, baseline) in pairs(results, host) {
        // Both runs' median requests, or else both runs' segment medians.
        let (ours, theirs) = match (&run.median_request, &baseline.median_request) {
            (Some(ours), Some(theirs)) => {
                (Breakdown::of_request(ours), Breakdown::of_request(theirs))
            }
            _ => (Breakdown::of_medians(run), Breakdown::of_medians(baseline)),
        };
        let by_kind: BTreeMap<SegmentKind, i64> = SegmentKind::ALL
            .into_iter()
            .filter(|kind| ours.by_kind.contains_key(kind) || theirs.by_kind.contains_key(kind))
            .map(|kind| {
                let time =
                    |breakdown: &Breakdown| breakdown.by_kind.get(&kind).copied().unwrap_or(0);
                (kind, time(&ours) as i64 - time(&theirs) as i64)
            })
            .collect();
        let delta = |ours: u64, theirs: u64| ours as i64 - theirs as i64;
        // The generator's figures from the same runs as the breakdown's.
        let (load, host_load) = (&run.probed_load, &baseline.probed_load);
        let client_wait_ns = delta(ours.client_wait_ns, theirs.client_wait_ns);
        let resolution_ns = ours.uncertainty_ns + theirs.uncertainty_ns;
        attributions.push(Attribution {
            mode: mode.mode,
            rate: run.rate,
            size: run.size,
            parts_ns: by_kind.values().sum::<i64>() + client_wait_ns,
            by_kind,
            client_wait_ns,
            mean_ns: delta(load.latency.mean_ns, host_load.latency.mean_ns),
            median_ns: delta(run.probed_p50_ns(), baseline.probed_p50_ns()),
            resolution_ns: resolution_ns as i64,
            noise_ns: noise.of(&probed_pair(run, baseline)) as i64,
        });
    }
    attributions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(parts_ns: i64, median_ns: i64, resolution_ns: i64) -> Attribution {
        Attribution {
            mode: Mode::Bridge,
            rate: 1000.0,
            size: 350,
            by_kind: BTreeMap::new(),
            client_wait_ns: 0,
            parts_ns,
            mean_ns: median_ns,
            median_ns,
            resolution_ns,
            noise_ns: 0,
        }
    }

    #[test]
    fn parts_close_within_a_quarter_or_the_resolution() {
        assert!(row(12_000, 10_000, 500).closes());
        assert!(row(7_500, 10_000, 500).closes());
        assert!(!row(13_000, 10_000, 500).closes());
        assert!(!row(-10_000, 10_000, 500).closes());
        // +300 ns against +30 ns: both below what the histograms resolve.
        assert!(row(300, 30, 1_200).closes());
        assert!(!row(3_000, 30, 1_200).closes());
    }

    #[test]
    fn parts_off_by_less_than_chance_are_within_noise_not_closed() {
        // +4.1 us of parts against +2.8 us: off by more than a quarter, but
        // the difference may be off by ±1.5 us by chance.
        let noisy = Attribution {
            noise_ns: 1_500,
            ..row(4_100, 2_800, 800)
        };
        assert!(!noisy.closes() && noisy.within_noise());
        assert!(!row(4_100, 2_800, 800).within_noise());
        // Closing rows are not also counted as noise.
        let closed = Attribution {
            noise_ns: 1_500,
            ..row(3_000, 2_800, 800)
        };
        assert!(closed.closes() && !closed.within_noise());
    }
}
