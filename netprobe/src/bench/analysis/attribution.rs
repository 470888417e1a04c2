//! Where each mode's extra latency over `host` goes: the median request's
//! time by segment kind over both nodes and both directions, the link
//! between the nodes and the server application's time included (see
//! `request`), with the time requests waited in the load generator to be
//! sent, set against the generator's median difference in the same
//! (probed) runs.
//!
//! The median request rather than means: a VM stalls a request for
//! milliseconds now and then, anywhere on its way; at 0.1% of the requests
//! that moves a mean by microseconds, at random, and no segment holds all
//! of it. (The generator's mean difference is kept beside them.)

use std::{
    collections::BTreeMap,
    fmt::{self, Display, Formatter},
};

use super::{
    noise::{Noise, Pair},
    request::MedianRequest,
    results::{BenchResults, ModeResults, PointResults},
};
use crate::{
    lab::{Mode, WireSize},
    path::SegmentKind,
};

#[derive(Clone, Debug, PartialEq)]
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
    /// two runs together, and the median lies among them.
    pub resolution_ns: i64,
    /// How far the median difference may be off by chance: two standard
    /// errors from how every difference between modes that held their rate
    /// moved between the slices, or this one's own move if larger (the
    /// only measure for a mode past its capacity).
    pub noise_ns: i64,
}

/// How many of the lowest rates the attribution tables cover: unloaded,
/// and the study's 30 and 50% with `--rates auto`.
pub const ATTRIBUTED_RATES: usize = 3;

/// Parts within this share of the median difference close it.
pub const CLOSURE_TOLERANCE: f64 = 0.25;

impl Attribution {
    /// Whether this row is of the run at `rate` and `size`.
    pub fn is_at(&self, rate: f64, size: usize) -> bool {
        self.size == size && (self.rate - rate).abs() < 0.5
    }

    /// How much of the end-to-end (median) difference the parts account for.
    pub fn closure(&self) -> Option<f64> {
        (self.median_ns != 0).then(|| self.parts_ns as f64 / self.median_ns as f64)
    }

    /// The closure as the tables show it: "76%", "tie" for a difference
    /// within the margin (it has no share), "-" for none.
    pub fn closure_text(&self) -> String {
        match self.closure() {
            _ if self.median_ns.unsigned_abs() <= self.margin_ns().unsigned_abs() => {
                "tie".to_owned()
            }
            Some(closure) => format!("{:.0}%", closure * 100.0),
            None => "-".to_owned(),
        }
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

/// A mode's probed run against host's, as the noise compares them.
fn probed_pair<'a>(point: &'a PointResults, host: &'a PointResults) -> Pair<'a> {
    Pair {
        ours: &host.probed_slice_p50_ns,
        theirs: &point.probed_slice_p50_ns,
        held: point.probed_held() && host.probed_held(),
    }
}

/// Each mode's probed runs with host's at the same rate and size.
fn pairs<'a>(
    results: &'a BenchResults,
    host: &'a ModeResults,
) -> impl Iterator<Item = (&'a ModeResults, &'a PointResults, &'a PointResults)> {
    results
        .modes
        .iter()
        .filter(|mode| mode.mode != Mode::Host)
        .flat_map(move |mode| {
            mode.points.iter().filter_map(move |point| {
                let baseline = host.point(point.rate, point.size)?;
                Some((mode, point, baseline))
            })
        })
}

/// Every mode's runs against host's at the same rate and size, where both
/// followed a request whole (see [`unattributed`]).
pub fn attribute(results: &BenchResults) -> Vec<Attribution> {
    let Some(host) = results.mode(Mode::Host) else {
        return Vec::new();
    };
    // How far a median difference over host may be off by chance, from
    // every mode that held its rate.
    let noise =
        Noise::pooled(pairs(results, host).map(|(_, point, host)| probed_pair(point, host)));
    let mut attributions = Vec::new();
    for (mode, point, baseline) in pairs(results, host) {
        let (Some(ours), Some(theirs)) = (&point.median_request, &baseline.median_request) else {
            continue;
        };
        let by_kind: BTreeMap<SegmentKind, i64> = SegmentKind::ALL
            .into_iter()
            .filter(|kind| ours.by_kind.contains_key(kind) || theirs.by_kind.contains_key(kind))
            .map(|kind| {
                let time =
                    |request: &MedianRequest| request.by_kind.get(&kind).copied().unwrap_or(0);
                (kind, time(ours) as i64 - time(theirs) as i64)
            })
            .collect();
        let delta = |ours: u64, theirs: u64| ours as i64 - theirs as i64;
        // The generator's figures from the same runs as the breakdown's.
        let (load, host_load) = (&point.probed_load, &baseline.probed_load);
        let client_wait_ns = delta(ours.client_wait_ns, theirs.client_wait_ns);
        // The median lies among the averaged requests' totals.
        let resolution_ns = ours.spread_ns + theirs.spread_ns;
        attributions.push(Attribution {
            mode: mode.mode,
            rate: point.rate,
            size: point.size,
            parts_ns: by_kind.values().sum::<i64>() + client_wait_ns,
            by_kind,
            client_wait_ns,
            mean_ns: delta(load.latency.mean_ns, host_load.latency.mean_ns),
            median_ns: delta(point.probed_p50_ns(), baseline.probed_p50_ns()),
            resolution_ns: resolution_ns as i64,
            noise_ns: noise.of(&probed_pair(point, baseline)) as i64,
        });
    }
    attributions
}

/// A mode's run at a rate and size that [`attribute`] leaves out: it or
/// host's run followed no request whole in its middle slices.
#[derive(Clone, Debug, PartialEq)]
pub struct Unattributed {
    pub mode: Mode,
    pub rate: f64,
    pub size: usize,
}

/// Every mode's runs without a median request to split, in its run or in
/// host's.
pub fn unattributed(results: &BenchResults) -> Vec<Unattributed> {
    let Some(host) = results.mode(Mode::Host) else {
        return Vec::new();
    };
    pairs(results, host)
        .filter(|(_, point, baseline)| {
            point.median_request.is_none() || baseline.median_request.is_none()
        })
        .map(|(mode, point, _)| Unattributed {
            mode: mode.mode,
            rate: point.rate,
            size: point.size,
        })
        .collect()
}

impl Display for Unattributed {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} at {:.0}/s",
            self.mode,
            WireSize(self.size),
            self.rate
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{super::fixtures, *};

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

    #[test]
    fn a_modes_extra_time_is_split_by_kind_against_hosts() {
        let results = fixtures::three_modes();
        // Probed medians 30.5 us against 20.5 us (the middle two slices).
        // The parts: +2 us of stack, +0.5 us of link, +3 and +2 us of
        // VXLAN, no application time, and +0.1 us of send lag: +7.6 us,
        // 76% of +10 us. The averaged requests' totals lie 0.5 and 0.3 us
        // apart. vxlan's and macvlan's differences from host both moved by
        // a standard deviation of 0.5 us between the slices: the pooled
        // margin is 2 x 0.546 x 500 / 0.888 = 615 ns, over the 546 ns of
        // vxlan's own.
        let expected = Attribution {
            mode: Mode::FlannelVxlan,
            rate: 1000.0,
            size: 350,
            by_kind: BTreeMap::from([
                (SegmentKind::Link, 500),
                (SegmentKind::VxlanEncap, 3_000),
                (SegmentKind::VxlanDecap, 2_000),
                (SegmentKind::Stack, 2_000),
                (SegmentKind::Application, 0),
            ]),
            client_wait_ns: 100,
            parts_ns: 7_600,
            mean_ns: 15_000,
            median_ns: 10_000,
            resolution_ns: 800,
            noise_ns: 615,
        };
        assert_eq!(attribute(&results), std::slice::from_ref(&expected));
        assert_eq!(expected.closure(), Some(0.76));
        assert!(expected.closes());
        assert_eq!(expected.margin_ns(), 800);
        // macvlan followed no request whole: not split, but named.
        assert_eq!(
            unattributed(&results),
            [Unattributed {
                mode: Mode::Macvlan,
                rate: 1000.0,
                size: 350
            }]
        );
        assert_eq!(
            unattributed(&results)[0].to_string(),
            "macvlan 352 B at 1000/s"
        );
    }

    #[test]
    fn without_host_nothing_is_attributed() {
        let mut results = fixtures::three_modes();
        results.modes.retain(|mode| mode.mode != Mode::Host);
        assert_eq!(attribute(&results), []);
        assert_eq!(unattributed(&results), []);
    }
}
