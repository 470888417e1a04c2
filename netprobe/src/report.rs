//! The per-hop latency breakdown: segments in path order with percentiles,
//! share of the end-to-end median and join coverage, as a text table and as
//! JSON (`--json`).

use std::fmt;

use netprobe_common::histogram::{BUCKETS, Histogram, bucket_low, bucket_width};
use netprobe_common::probe::APPLICATION_SLOT;
use serde::{Deserialize, Serialize};

use crate::{
    path::{Direction, ProbePath, SegmentKind},
    probes::{Mark, NodeProbes, ProgramCost, SampledFlight, Snapshot, Unobserved},
};

/// Latency percentiles of one histogram, in ns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub min_ns: u64,
    pub mean_ns: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
}

impl Latency {
    /// Summarizes one of the kernel's histograms, whose exact min, max and
    /// sum bound what the buckets say.
    pub fn from_histogram(histogram: &Histogram) -> Self {
        let buckets = Self::from_hdr(&to_hdr(histogram));
        let exact = |ns: u64| ns.clamp(histogram.min_ns, histogram.max_ns);
        Self {
            count: histogram.count,
            min_ns: histogram.min_ns,
            mean_ns: histogram.sum_ns.checked_div(histogram.count).unwrap_or(0),
            p50_ns: exact(buckets.p50_ns),
            p90_ns: exact(buckets.p90_ns),
            p99_ns: exact(buckets.p99_ns),
            p999_ns: exact(buckets.p999_ns),
            max_ns: histogram.max_ns,
        }
    }

    /// Summarizes an HdrHistogram of nanoseconds, e.g. several runs' merged.
    pub fn from_hdr(hdr: &hdrhistogram::Histogram<u64>) -> Self {
        Self {
            count: hdr.len(),
            min_ns: hdr.min(),
            mean_ns: hdr.mean().round() as u64,
            p50_ns: hdr.value_at_quantile(0.50),
            p90_ns: hdr.value_at_quantile(0.90),
            p99_ns: hdr.value_at_quantile(0.99),
            p999_ns: hdr.value_at_quantile(0.999),
            max_ns: hdr.max(),
        }
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mean {}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            format_ns(self.mean_ns),
            format_ns(self.p50_ns),
            format_ns(self.p90_ns),
            format_ns(self.p99_ns),
            format_ns(self.p999_ns),
            format_ns(self.max_ns)
        )
    }
}

/// Largest latency an [`HdrHistogram`](hdrhistogram::Histogram) of netprobe
/// tracks; larger values are counted as this.
pub const HDR_MAX_NS: u64 = 1 << 36;

/// An empty HdrHistogram for latencies: 1 ns to [`HDR_MAX_NS`], two
/// significant digits (the kernel's buckets are 1.6% wide anyway).
pub fn new_hdr() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, HDR_MAX_NS, 2).expect("valid bounds")
}

/// The kernel's log-linear buckets as an HdrHistogram, each bucket's count
/// at its midpoint: what merges across runs and answers percentiles.
pub fn to_hdr(histogram: &Histogram) -> hdrhistogram::Histogram<u64> {
    let mut hdr = new_hdr();
    for (index, &count) in histogram.buckets.iter().enumerate().take(BUCKETS) {
        if count > 0 {
            let value = if index + 1 == BUCKETS {
                histogram.max_ns
            } else {
                bucket_low(index) + bucket_width(index) / 2
            };
            hdr.saturating_record_n(value, u64::from(count));
        }
    }
    hdr
}

/// Time between two consecutive observation points.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub direction: Direction,
    pub from: String,
    pub to: String,
    pub kind: SegmentKind,
    #[serde(flatten)]
    pub latency: Latency,
    /// This segment's median over the direction's end-to-end median.
    pub share: Option<f64>,
    /// Packets joined here over packets seen at the previous point (on the
    /// first egress segment, over packets seen here: not every socket write
    /// starts a segment).
    pub coverage: Option<f64>,
    /// Packets seen here with no record from the previous point.
    pub unjoined: u64,
    /// Packets seen here whose previous sighting was further back.
    pub skipped: u64,
    /// The pod (its network namespace) the segment belongs to, with
    /// `--by-pod`; absent for a segment over all pods. Join counts are kept
    /// per point, not per pod: a pod's row has no coverage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

/// End-to-end latency of one direction: first to last point, for packets
/// seen at every point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndToEnd {
    pub direction: Direction,
    pub from: String,
    pub to: String,
    #[serde(flatten)]
    pub latency: Latency,
}

/// The labels of the observation points on each direction, in order: a
/// [`ProbePath`] as the report shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathLabels {
    pub ingress: Vec<String>,
    pub egress: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub interface: String,
    pub netns: Option<String>,
    pub duration_s: f64,
    /// One packet in this many was followed: the counts are of followed
    /// packets.
    pub follow_one_in: u32,
    pub filter: Option<String>,
    pub xdp_mode: Option<String>,
    pub path: PathLabels,
    pub segments: Vec<Segment>,
    pub end_to_end: Vec<EndToEnd>,
    /// The application's time on a socket, from reading a request that came
    /// through the probes to its next write: what the server spends on a
    /// request.
    pub application: Option<Latency>,
    /// Packets that could not be joined to an earlier point.
    pub unmatched: u64,
    /// Unfinished packets whose flight-table slot a new packet took within
    /// 1 s of their last sighting: lost to a full (or colliding) table, or
    /// stopped on the way.
    pub evicted: u64,
    /// Unfinished packets not seen for 1 s: stopped on the way (dropped, or
    /// consumed where no probe looks).
    pub expired: u64,
    pub unobserved: Vec<UnobservedHook>,
    pub probe_cost: Vec<ProgramCost>,
    pub samples: Vec<Sample>,
    /// With `--sample`: each direction's median, p99 and slowest packet
    /// among those sampled whole.
    pub exemplars: Vec<FlightExemplar>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnobservedHook {
    pub hook: String,
    pub reason: String,
}

impl From<&Unobserved> for UnobservedHook {
    fn from(unobserved: &Unobserved) -> Self {
        Self {
            hook: unobserved.hook.describe().to_owned(),
            reason: unobserved.reason.clone(),
        }
    }
}

/// One sampled packet (`--sample N`): its time at each point, from the first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub direction: Direction,
    pub hops: Vec<SampleHop>,
}

impl Sample {
    /// `flight`'s time at each hop of its direction on `path`.
    pub fn of(flight: &SampledFlight, path: &ProbePath) -> Self {
        Self {
            direction: flight.direction,
            hops: path
                .hops(flight.direction)
                .iter()
                .enumerate()
                .map(|(hop, point)| SampleHop {
                    point: point.label(),
                    offset_ns: flight.offset_ns(hop),
                })
                .collect(),
        }
    }
}

/// A sampled packet at a rank among those sampled whole in its direction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlightExemplar {
    /// 50 for the median, 99, 100 for the slowest.
    pub percentile: f64,
    /// From its first hop to its last.
    pub total_ns: u64,
    /// Monotonic time (ns) at its first hop; each hop's offset is after it.
    pub start_ns: u64,
    #[serde(flatten)]
    pub sample: Sample,
}

/// "median", "p99" or "slowest".
pub fn rank_name(percentile: f64) -> String {
    match percentile {
        50.0 => "median".to_owned(),
        100.0 => "slowest".to_owned(),
        percentile => format!("p{percentile}"),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleHop {
    pub point: String,
    /// Since the first point; `None` where the packet was not seen.
    pub offset_ns: Option<u64>,
}

/// Where the report's header information comes from.
pub struct ReportContext<'a> {
    pub interface: &'a str,
    pub netns: Option<&'a str>,
    pub filter: Option<&'a str>,
    pub xdp_mode: Option<&'a str>,
    pub duration_s: f64,
    pub follow_one_in: u32,
}

impl Report {
    pub fn new(
        context: &ReportContext<'_>,
        path: &ProbePath,
        snapshot: &Snapshot,
        stale: u64,
        unobserved: &[Unobserved],
        probe_cost: Vec<ProgramCost>,
        samples: Vec<Sample>,
    ) -> Self {
        let mut segments = Vec::new();
        let mut end_to_end = Vec::new();
        let mut unmatched = 0;
        let mut evicted = 0;
        let mut expired = stale;
        for direction in Direction::BOTH {
            let hops = path.hops(direction);
            let total = Latency::from_histogram(snapshot.histogram(direction, 0));
            for hop in 0..hops.len() {
                let stats = snapshot.stats(direction, hop);
                evicted += stats.evicted;
                expired += stats.expired;
                unmatched += stats.unjoined + stats.skipped;
            }
            for row in path.segment_rows(direction) {
                let hop = row.hop;
                let stats = snapshot.stats(direction, hop);
                let latency =
                    Latency::from_histogram(&snapshot.histogram_of(direction, hop, row.pod));
                let previous_seen = snapshot.stats(direction, hop - 1).seen;
                // Hop 0 of egress is the socket write: a write is not a packet.
                let base = if direction == Direction::Egress && hop == 1 {
                    stats.seen
                } else {
                    previous_seen
                };
                let over_all_pods = row.pod.is_none();
                segments.push(Segment {
                    direction,
                    kind: SegmentKind::between(&hops[hop - 1], &hops[hop]),
                    from: row.from,
                    to: row.to,
                    share: (total.p50_ns > 0).then(|| latency.p50_ns as f64 / total.p50_ns as f64),
                    coverage: (base > 0 && over_all_pods)
                        .then(|| (stats.joined as f64 / base as f64).min(1.0)),
                    unjoined: if over_all_pods { stats.unjoined } else { 0 },
                    skipped: if over_all_pods { stats.skipped } else { 0 },
                    pod: row.pod.map(|pod| pod.netns.clone()),
                    latency,
                });
            }
            if let (Some(first), Some(last)) = (hops.first(), hops.last())
                && hops.len() > 1
            {
                end_to_end.push(EndToEnd {
                    direction,
                    from: first.label(),
                    to: last.label(),
                    latency: total,
                });
            }
        }
        let application = &snapshot.histograms[APPLICATION_SLOT as usize];
        Self {
            application: (application.count > 0).then(|| Latency::from_histogram(application)),
            interface: context.interface.to_owned(),
            netns: context.netns.map(str::to_owned),
            duration_s: context.duration_s,
            follow_one_in: context.follow_one_in,
            filter: context.filter.map(str::to_owned),
            xdp_mode: context.xdp_mode.map(str::to_owned),
            path: PathLabels {
                ingress: path.ingress.iter().map(|hop| hop.label()).collect(),
                egress: path.egress.iter().map(|hop| hop.label()).collect(),
            },
            segments,
            end_to_end,
            unmatched,
            evicted,
            expired,
            unobserved: unobserved.iter().map(UnobservedHook::from).collect(),
            probe_cost,
            samples,
            exemplars: Vec::new(),
        }
    }

    /// The breakdown of what `node`'s probes (behind its eth0) saw since
    /// `mark`, `seconds` ago.
    pub fn of_node(node: &NodeProbes, mark: &Mark, seconds: f64) -> anyhow::Result<Self> {
        let counted = node.since(mark)?;
        let session = node.session();
        let context = ReportContext {
            interface: "eth0",
            netns: Some(node.netns()),
            filter: None,
            xdp_mode: session.xdp_mode(),
            duration_s: seconds,
            follow_one_in: session.follow_one_in(),
        };
        Ok(Report::new(
            &context,
            session.path(),
            &counted.snapshot,
            0,
            session.unobserved(),
            counted.costs,
            Vec::new(),
        ))
    }

    pub fn segments(&self, direction: Direction) -> impl Iterator<Item = &Segment> {
        self.segments
            .iter()
            .filter(move |segment| segment.direction == direction)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let netns = self
            .netns
            .as_deref()
            .map(|netns| format!(" in {netns}"))
            .unwrap_or_default();
        write!(
            f,
            "netprobe on {}{netns}: {:.1} s",
            self.interface, self.duration_s
        )?;
        if let Some(filter) = &self.filter {
            write!(f, ", filter \"{filter}\"")?;
        }
        if self.follow_one_in > 1 {
            write!(
                f,
                ", following one packet in {} (counts are of followed packets)",
                self.follow_one_in
            )?;
        }
        writeln!(f)?;
        for direction in Direction::BOTH {
            writeln!(f, "\n{}", direction.describe())?;
            writeln!(
                f,
                "  {:<42} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6} {:>8}",
                "segment", "count", "min", "p50", "p90", "p99", "p99.9", "max", "share", "coverage"
            )?;
            for segment in self.segments(direction) {
                let name = format!("{} -> {}", segment.from, segment.to);
                write_latency_row(f, &name, &segment.latency)?;
                write!(
                    f,
                    " {:>6} {:>8}",
                    percent(segment.share),
                    percent(segment.coverage)
                )?;
                match &segment.pod {
                    Some(pod) => writeln!(f, "  pod {pod}")?,
                    None => writeln!(f)?,
                }
            }
            for total in self
                .end_to_end
                .iter()
                .filter(|total| total.direction == direction)
            {
                write_latency_row(f, "end to end", &total.latency)?;
                writeln!(f)?;
            }
            if let (Direction::Ingress, Some(application)) = (direction, &self.application) {
                write_latency_row(f, "application: socket read -> write", application)?;
                writeln!(f)?;
            }
        }
        writeln!(
            f,
            "\nunmatched {}  evicted (unfinished, slot reused within 1 s) {}  \
             expired (unfinished, not seen for 1 s) {}",
            self.unmatched, self.evicted, self.expired
        )?;
        for unobserved in &self.unobserved {
            writeln!(
                f,
                "not observed: {} ({})",
                unobserved.hook, unobserved.reason
            )?;
        }
        if !self.probe_cost.is_empty() {
            write!(f, "probe cost per run:")?;
            for cost in &self.probe_cost {
                write!(
                    f,
                    " {} {:.0} ns x {}",
                    cost.program, cost.ns_per_run, cost.run_cnt
                )?;
            }
            writeln!(f)?;
        }
        for sample in &self.samples {
            write!(f, "sample {:?}:", sample.direction)?;
            write_hops(f, sample)?;
        }
        for exemplar in &self.exemplars {
            write!(
                f,
                "{} {} packet, {} at {} ns:",
                rank_name(exemplar.percentile),
                exemplar.sample.direction.name(),
                format_ns(exemplar.total_ns),
                exemplar.start_ns
            )?;
            write_hops(f, &exemplar.sample)?;
        }
        Ok(())
    }
}

/// Each hop of `sample` with its time after the first, then a newline.
fn write_hops(f: &mut fmt::Formatter<'_>, sample: &Sample) -> fmt::Result {
    for hop in &sample.hops {
        let offset = hop.offset_ns.map_or_else(|| "-".to_owned(), format_ns);
        write!(f, " {} +{offset}", hop.point)?;
    }
    writeln!(f)
}

fn write_latency_row(f: &mut fmt::Formatter<'_>, name: &str, latency: &Latency) -> fmt::Result {
    write!(
        f,
        "  {:<42} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        name,
        latency.count,
        format_ns(latency.min_ns),
        format_ns(latency.p50_ns),
        format_ns(latency.p90_ns),
        format_ns(latency.p99_ns),
        format_ns(latency.p999_ns),
        format_ns(latency.max_ns),
    )
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| format!("{:.0}%", value * 100.0))
}

/// 950ns, 12.3us, 4.56ms, 1.20s.
pub fn format_ns(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{:.1}us", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2}ms", ns as f64 / 1e6),
        _ => format!("{:.2}s", ns as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::empty_histogram;

    #[test]
    fn percentiles_come_from_the_buckets() {
        let mut histogram = empty_histogram();
        for ns in 1..=1000u64 {
            histogram.record(ns * 1000);
        }
        let latency = Latency::from_histogram(&histogram);
        assert_eq!(latency.count, 1000);
        assert_eq!((latency.min_ns, latency.max_ns), (1000, 1_000_000));
        for (value, expected) in [(latency.p50_ns, 500_000.0), (latency.p99_ns, 990_000.0)] {
            let error = (value as f64 - expected).abs() / expected;
            assert!(error < 0.02, "{value} vs {expected}");
        }
    }

    #[test]
    fn formats_durations() {
        assert_eq!(format_ns(950), "950ns");
        assert_eq!(format_ns(12_345), "12.3us");
        assert_eq!(format_ns(4_560_000), "4.56ms");
        assert_eq!(format_ns(1_200_000_000), "1.20s");
    }
}
