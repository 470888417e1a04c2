//! Where each mode's extra latency over `host` goes: the difference of the
//! per-hop medians, summed by segment kind over both nodes and both
//! directions, set against the difference of the load generator's medians.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::results::{BenchResults, Run};
use crate::{lab::Mode, path::SegmentKind};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    pub mode: Mode,
    pub rate: f64,
    pub size: usize,
    /// Extra median time per segment kind, ns (negative: faster than host).
    pub by_kind: BTreeMap<SegmentKind, i64>,
    /// Sum of `by_kind`.
    pub segments_ns: i64,
    /// The load generator's median over host's, ns.
    pub end_to_end_ns: i64,
}

impl Attribution {
    /// How much of the end-to-end difference the segments account for.
    pub fn closure(&self) -> Option<f64> {
        (self.end_to_end_ns != 0).then(|| self.segments_ns as f64 / self.end_to_end_ns as f64)
    }
}

/// Sum of segment medians by kind, over both nodes and both directions,
/// with the server's application time. (The client's gap between reading
/// and writing is the load generator's schedule, not part of a request.)
pub fn medians_by_kind(run: &Run) -> BTreeMap<SegmentKind, u64> {
    let mut sums = BTreeMap::new();
    for segment in run.client.segments.iter().chain(&run.server.segments) {
        *sums.entry(segment.kind).or_default() += segment.latency.p50_ns;
    }
    if let Some(application) = &run.server.application {
        sums.insert(SegmentKind::Application, application.p50_ns);
    }
    sums
}

/// Every mode's runs against host's at the same rate and size.
pub fn attribute(results: &BenchResults) -> Vec<Attribution> {
    let Some(host) = results.mode(Mode::Host) else {
        return Vec::new();
    };
    let mut attributions = Vec::new();
    for mode in results.modes.iter().filter(|mode| mode.mode != Mode::Host) {
        for run in &mode.runs {
            let Some(baseline) = host.run(run.rate, run.size) else {
                continue;
            };
            let (ours, theirs) = (medians_by_kind(run), medians_by_kind(baseline));
            let by_kind: BTreeMap<SegmentKind, i64> = SegmentKind::ALL
                .into_iter()
                .filter(|kind| ours.contains_key(kind) || theirs.contains_key(kind))
                .map(|kind| {
                    let delta = ours.get(&kind).copied().unwrap_or(0) as i64
                        - theirs.get(&kind).copied().unwrap_or(0) as i64;
                    (kind, delta)
                })
                .collect();
            attributions.push(Attribution {
                mode: mode.mode,
                rate: run.rate,
                size: run.size,
                segments_ns: by_kind.values().sum(),
                by_kind,
                end_to_end_ns: run.load.latency.p50_ns as i64 - baseline.load.latency.p50_ns as i64,
            });
        }
    }
    attributions
}
