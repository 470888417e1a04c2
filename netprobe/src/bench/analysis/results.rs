//! `results.json`: everything a bench measured, what `netprobe report`
//! renders again.
//!
//! ```json
//! {
//!   "netprobe": "0.1.0", "kernel": "6.18.44", "cpus": 2,
//!   "settings": {"modes": ["host", ...], "rates": [12000.0, ...], "sizes": [350, 4096],
//!                "duration_s": 2.0, "warmup_s": 0.15, "slices": 4, "connections": 50,
//!                "pacing": "spin", "tune": false,
//!                "cpu_idle": "polling (/dev/cpu_dma_latency held at 0)"},
//!   "max_rate": {"mode": "host", "size": 350, "rate": 40000.0,
//!                "rate_without_probes": 41000.0, "wrk_rate": 45000.0,
//!                "generator_at_80_percent": 36000.0,
//!                "probe_cost": [{"program", "run_cnt", "run_time_ns", "ns_per_run"}]},
//!   "tuning": [{"setting": "...", "applied": true, "detail": "..."}],
//!   "modes": [{"mode": "flannel-vxlan", "unavailable": null, "tuning": [...],
//!              "max_rate": null,
//!              "runs": [{"rate": 12000.0, "size": 350,
//!                        "load": {LoadReport without probes: requested_rate,
//!                                 achieved_rate, errors, timeouts, reconnects,
//!                                 latency: {p50_ns, p90_ns, p99_ns, p999_ns, max_ns,
//!                                 mean_ns}, send_lag: {...}, ...},
//!                        "slice_p50_ns": [p50 of each slice, in the order they ran],
//!                        "percentiles": [{"percentile": 90.0, "ns"}, ...],
//!                        "probed_load": {LoadReport with the probes attached},
//!                        "probed_slice_p50_ns": [...],
//!                        "client": {Report of node1: segments, end_to_end, probe_cost ...},
//!                        "server": {Report of node2},
//!                        "link": {"request": {latency}, "response": {latency}},
//!                        "median_request": {"joined", "averaged", "total_ns", "spread_ns",
//!                                           "by_kind": {"stack": ns, "link": ns, ...},
//!                                           "client_wait_ns"},
//!                        "exemplars": [{"percentile": 99.0, "total_ns", "steps":
//!                                       [{"place": "client", "from", "to", "kind",
//!                                         "start_ns", "ns"}]}],
//!                        "system": {"cpus": [{"cpu", "user", "system", "softirq"}],
//!                                   "context_switches_per_s", "devices":
//!                                   [{"netns", "device", "rx_packets", "tx_packets"}]}}]}]
//! }
//! ```
//!
//! Latencies are integer nanoseconds, CPU shares percent. Sizes are as
//! `--sizes` names them (350 is the response of 352 B on the wire). A mode's
//! median in the table and the order check is the median of `slice_p50_ns`.

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use super::{
    median::median,
    node_link::NodeLinkLatency,
    noise::MAX_SLICES,
    percentiles::Percentile,
    request::{MedianRequest, RequestExemplar},
};
use crate::{
    lab::{Mode, WireSize},
    load::{LoadReport, Pacing},
    probes::ProgramCost,
    record::{self, RecordError},
    report::Report,
};

pub const RESULTS_FILE: &str = "results.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchResults {
    pub netprobe: String,
    pub kernel: String,
    pub cpus: usize,
    pub settings: Settings,
    pub max_rate: Option<MaxRate>,
    /// `--tune` settings of the whole machine.
    pub tuning: Vec<TuningStep>,
    pub modes: Vec<ModeResults>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub modes: Vec<Mode>,
    /// Requested rates (requests/s), the same for every mode.
    pub rates: Vec<f64>,
    /// Response sizes in bytes.
    pub sizes: Vec<usize>,
    /// Measured time of each run, all its slices together.
    pub duration_s: f64,
    /// Warm-up before each slice.
    pub warmup_s: f64,
    /// The slices each run is split into, the modes taking turns.
    pub slices: usize,
    pub connections: usize,
    /// How the load generator waited for each send time.
    pub pacing: Pacing,
    pub tune: bool,
    /// Whether idle CPUs polled or could halt (see `--allow-idle-states`).
    pub cpu_idle: String,
    /// The probes followed one packet in this many.
    pub follow_one_in: u32,
}

/// The highest rate the host mode sustains, which `--rates auto` takes
/// percentages of; also with the probes detached, which is their cost in
/// throughput.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaxRate {
    pub mode: Mode,
    pub size: usize,
    pub rate: f64,
    pub rate_without_probes: f64,
    /// wrk's closed-loop maximum on the same path, without probes: what the
    /// load generator is checked against (see
    /// [`crate::bench::WRK_CONNECTIONS`]).
    pub wrk_rate: f64,
    /// What `netprobe load` achieved when asked for
    /// [`crate::bench::GENERATOR_CHECK_SHARE`] (80%) of `wrk_rate`.
    pub generator_at_80_percent: f64,
    /// Each probe program's cost per run on the server's node, at half
    /// `rate`, from the kernel's run-time statistics.
    pub probe_cost: Vec<ProgramCost>,
}

/// One setting of `--tune`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TuningStep {
    pub setting: String,
    pub applied: bool,
    /// What was set, or why it does not apply.
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModeResults {
    pub mode: Mode,
    /// Why the mode could not run here (e.g. ipvlan without CONFIG_IPVLAN).
    pub unavailable: Option<String>,
    /// `--tune` settings of this mode's lab.
    pub tuning: Vec<TuningStep>,
    /// With `--max-rates`: the highest rate of the first size this mode
    /// sustains, probes attached.
    pub max_rate: Option<f64>,
    /// Each rate and size it ran.
    #[serde(rename = "runs")]
    pub points: Vec<PointResults>,
}

/// One rate and size (a point) in one mode: its run without the probes
/// and its run with them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointResults {
    pub rate: f64,
    pub size: usize,
    /// The load generator with no probes attached: the mode's own latency.
    pub load: LoadReport,
    /// The p50 of each of that run's slices, in the order they ran: how
    /// far the median moved from one turn to the next.
    pub slice_p50_ns: Vec<u64>,
    /// That run's latency by percentile, a tenth of a nine apart.
    pub percentiles: Vec<Percentile>,
    /// The load generator with the probes attached, in the run the
    /// breakdown comes from.
    pub probed_load: LoadReport,
    /// The p50 of each slice of the run with probes.
    pub probed_slice_p50_ns: Vec<u64>,
    /// Per-hop breakdown on the client's node and on the server's (probed
    /// run).
    pub client: Report,
    pub server: Report,
    /// The link between the nodes, from packets sampled on both.
    #[serde(rename = "link")]
    pub node_link: Option<NodeLinkLatency>,
    /// Where the time of the requests around the median went, from
    /// requests sampled whole on both nodes; `None` if no request was
    /// followed whole in the run's middle slices.
    pub median_request: Option<MedianRequest>,
    /// The probed run's median, p99 and slowest requests among those
    /// followed whole, step by step.
    pub exemplars: Vec<RequestExemplar>,
    /// CPU, context switches and packets of the run without probes.
    pub system: SystemMetrics,
}

/// A run held its rate when it kept within this share of it, every request
/// answered: the bar the load generator is held to.
pub const RATE_TOLERANCE: f64 = 0.01;

impl PointResults {
    /// The mode's median without probes: the median of its slices'
    /// medians. A few seconds in which the VM runs slow land in one slice
    /// and leave it where the other slices put it; the median of all the
    /// run's requests moves with them by the share of requests that slice
    /// holds, and falls between the two when they differ.
    pub fn p50_ns(&self) -> u64 {
        median(self.slice_p50_ns.iter().copied()).expect("a run has slices")
    }

    /// The median with the probes attached, taken as [`Self::p50_ns`].
    pub fn probed_p50_ns(&self) -> u64 {
        median(self.probed_slice_p50_ns.iter().copied()).expect("a run has slices")
    }

    /// Whether the run without probes held its rate.
    pub fn held(&self) -> bool {
        self.load.held_within(RATE_TOLERANCE)
    }

    /// Whether the run with probes held its rate.
    pub fn probed_held(&self) -> bool {
        self.probed_load.held_within(RATE_TOLERANCE)
    }
}

impl BenchResults {
    /// Writes `results.json` into `dir`, whole or not at all: the bench
    /// saves after every rate and size, and an interrupted save must not
    /// lose what the earlier ones kept.
    pub fn save(&self, dir: &Path) -> Result<(), RecordError> {
        record::save(&dir.join(RESULTS_FILE), self)
    }

    /// Reads `results.json` from `dir`, refusing one whose runs do not
    /// have the slices its settings name, or more than the noise has
    /// factors for.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(RESULTS_FILE);
        let results: Self = record::load(&path)?
            .with_context(|| format!("no {RESULTS_FILE} in {}", dir.display()))?;
        results
            .check_slices()
            .with_context(|| format!("{} is not a bench's results", path.display()))?;
        Ok(results)
    }

    fn check_slices(&self) -> Result<()> {
        let slices = self.settings.slices;
        if !(2..=MAX_SLICES).contains(&slices) {
            bail!("its runs have {slices} slices each; a bench's have 2 to {MAX_SLICES}");
        }
        for mode in &self.modes {
            for point in &mode.points {
                for (what, p50s) in [
                    ("without", &point.slice_p50_ns),
                    ("with", &point.probed_slice_p50_ns),
                ] {
                    if p50s.len() != slices {
                        bail!(
                            "{} {} at {:.0}/s {what} probes has {} slices, not {slices}",
                            mode.mode,
                            WireSize(point.size),
                            point.rate,
                            p50s.len()
                        );
                    }
                }
            }
        }
        Ok(())
    }

    pub fn mode(&self, mode: Mode) -> Option<&ModeResults> {
        self.modes.iter().find(|results| results.mode == mode)
    }
}

impl ModeResults {
    /// A mode before its runs, or one that cannot run here and why.
    pub fn new(mode: Mode, unavailable: Option<String>) -> Self {
        Self {
            mode,
            unavailable,
            tuning: Vec::new(),
            max_rate: None,
            points: Vec::new(),
        }
    }

    pub fn point(&self, rate: f64, size: usize) -> Option<&PointResults> {
        self.points
            .iter()
            .find(|point| point.size == size && (point.rate - rate).abs() < 0.5)
    }
}

/// What a run used: CPU per core, context switches, and packets per device
/// of the lab.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemMetrics {
    pub cpus: Vec<CpuUsage>,
    pub context_switches_per_s: f64,
    pub devices: Vec<DevicePackets>,
}

/// Share of one core's time, in percent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    pub cpu: usize,
    pub user: f64,
    pub system: f64,
    pub softirq: f64,
}

/// Packets through one device (during a run, once subtracted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePackets {
    pub netns: String,
    pub device: String,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

#[cfg(test)]
mod tests {
    use super::{super::fixtures::three_modes, *};

    #[test]
    fn a_points_median_is_the_median_of_its_slices() {
        let results = three_modes();
        let vxlan = results.mode(Mode::FlannelVxlan).unwrap().point(1000.0, 350);
        let vxlan = vxlan.expect("the point");
        // Probed slices 30, 32, 30 and 31 us: the middle two are 30 and 31.
        assert_eq!((vxlan.p50_ns(), vxlan.probed_p50_ns()), (30_000, 30_500));
        assert!(vxlan.held() && vxlan.probed_held());
        let macvlan = &results.mode(Mode::Macvlan).unwrap().points[0];
        // 900/s of 1000/s is short of 1%.
        assert!(!macvlan.held());
    }

    #[test]
    fn results_whose_runs_miss_slices_are_refused() {
        let mut results = three_modes();
        assert!(results.check_slices().is_ok());
        results.modes[1].points[0].probed_slice_p50_ns.pop();
        assert_eq!(
            results.check_slices().unwrap_err().to_string(),
            "flannel-vxlan 352 B at 1000/s with probes has 3 slices, not 4"
        );
        results.settings.slices = MAX_SLICES + 1;
        assert_eq!(
            results.check_slices().unwrap_err().to_string(),
            "its runs have 33 slices each; a bench's have 2 to 32"
        );
    }
}
