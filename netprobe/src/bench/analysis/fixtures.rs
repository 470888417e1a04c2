//! Hand-made results for the analysis's tests: only what the analysis
//! reads is filled in, with round numbers a reader can work through.

use std::collections::BTreeMap;

use super::{
    request::MedianRequest,
    results::{BenchResults, ModeResults, PointResults, Settings, SystemMetrics},
};
use crate::{
    lab::Mode,
    load::{LoadReport, Pacing},
    path::SegmentKind,
    report::{Latency, PathLabels, Report},
};

/// The load generator's report of a run at `rate` that achieved
/// `achieved`, with this median, p99 and mean.
pub fn load(rate: f64, achieved: f64, p50_ns: u64, p99_ns: u64, mean_ns: u64) -> LoadReport {
    LoadReport {
        requested_rate: rate,
        achieved_rate: achieved,
        latency: Latency {
            p50_ns,
            p99_ns,
            mean_ns,
            ..Latency::default()
        },
        ..LoadReport::default()
    }
}

/// A node's breakdown with nothing in it: the analysis reads the median
/// request instead.
fn report() -> Report {
    Report {
        interface: "eth0".to_owned(),
        netns: None,
        duration_s: 1.0,
        follow_one_in: 1,
        filter: None,
        xdp_mode: None,
        path: PathLabels {
            ingress: Vec::new(),
            egress: Vec::new(),
        },
        segments: Vec::new(),
        end_to_end: Vec::new(),
        application: None,
        unmatched: 0,
        evicted: 0,
        expired: 0,
        unobserved: Vec::new(),
        probe_cost: Vec::new(),
        samples: Vec::new(),
        exemplars: Vec::new(),
    }
}

/// A median request of `by_kind`, its send lag `client_wait_ns`, the
/// averaged requests' totals `spread_ns` apart.
pub fn request(
    by_kind: &[(SegmentKind, u64)],
    client_wait_ns: u64,
    spread_ns: u64,
) -> MedianRequest {
    let by_kind: BTreeMap<SegmentKind, u64> = by_kind.iter().copied().collect();
    MedianRequest {
        joined: 100,
        averaged: 20,
        total_ns: by_kind.values().sum(),
        spread_ns,
        by_kind,
        client_wait_ns,
    }
}

/// One rate and size: its run without probes (`load`, its slices' medians
/// `slices`) and with them (`probed_load`, `probed_slices`, `request`).
pub fn point(
    (rate, size): (f64, usize),
    (load, slice_p50_ns): (LoadReport, Vec<u64>),
    (probed_load, probed_slice_p50_ns): (LoadReport, Vec<u64>),
    request: Option<MedianRequest>,
) -> PointResults {
    PointResults {
        rate,
        size,
        load,
        slice_p50_ns,
        percentiles: Vec::new(),
        probed_load,
        probed_slice_p50_ns,
        client: report(),
        server: report(),
        node_link: None,
        median_request: request,
        exemplars: Vec::new(),
        system: SystemMetrics::default(),
    }
}

/// A bench of four slices per run over `modes`, each with its points.
pub fn results(rates: &[f64], modes: Vec<(Mode, Vec<PointResults>)>) -> BenchResults {
    BenchResults {
        netprobe: "0.1.0".to_owned(),
        kernel: "6.18".to_owned(),
        cpus: 2,
        settings: Settings {
            modes: modes.iter().map(|(mode, _)| *mode).collect(),
            rates: rates.to_vec(),
            sizes: vec![350],
            duration_s: 2.0,
            warmup_s: 0.15,
            slices: 4,
            connections: 50,
            pacing: Pacing::Spin,
            tune: false,
            cpu_idle: String::new(),
            follow_one_in: 32,
        },
        max_rate: None,
        tuning: Vec::new(),
        modes: modes
            .into_iter()
            .map(|(mode, points)| ModeResults {
                points,
                ..ModeResults::new(mode, None)
            })
            .collect(),
    }
}

/// At 1000/s, size 350: host; flannel-vxlan, its probed slices 10 us after
/// host's but for one 11 us; macvlan, which held only 900/s without the
/// probes and followed no request whole with them.
pub fn three_modes() -> BenchResults {
    use SegmentKind::{Application, Link, Stack, VxlanDecap, VxlanEncap};
    let at = (1000.0, 350);
    let alone = |p50| (load(1000.0, 1000.0, p50, 50_000, p50), vec![p50; 4]);
    let probed = |mean, slices: [u64; 4]| {
        let report = load(1000.0, 1000.0, 0, 60_000, mean);
        (report, slices.to_vec())
    };
    let host = point(
        at,
        alone(20_000),
        probed(25_000, [20_000, 21_000, 20_000, 21_000]),
        Some(request(
            &[(Stack, 12_000), (Link, 4_000), (Application, 3_000)],
            400,
            300,
        )),
    );
    let vxlan = point(
        at,
        alone(30_000),
        probed(40_000, [30_000, 32_000, 30_000, 31_000]),
        Some(request(
            &[
                (Stack, 14_000),
                (Link, 4_500),
                (VxlanEncap, 3_000),
                (VxlanDecap, 2_000),
                (Application, 3_000),
            ],
            500,
            500,
        )),
    );
    let macvlan = point(
        at,
        (load(1000.0, 900.0, 21_000, 50_000, 21_000), vec![21_000; 4]),
        probed(26_000, [21_000, 22_000, 21_000, 23_000]),
        None,
    );
    results(
        &[1000.0],
        vec![
            (Mode::Host, vec![host]),
            (Mode::FlannelVxlan, vec![vxlan]),
            (Mode::Macvlan, vec![macvlan]),
        ],
    )
}
