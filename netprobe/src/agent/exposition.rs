//! The agent's metrics in the Prometheus exposition formats, through the
//! official `prometheus-client` crate: whichever the scraper's `Accept`
//! prefers of the Prometheus protobuf format (which alone carries native
//! histograms; Prometheus asks for it with `--enable-feature=native-histograms`),
//! OpenMetrics text (Prometheus's default) and the Prometheus text format
//! 0.0.4 (anything else).

use netprobe_common::histogram::Histogram;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NativeHistogram, NativeHistogramBuckets, NoLabelSet},
    metrics::MetricType,
    registry::{Registry, Unit},
};

use super::{
    buckets,
    counts::{Count, Counts, Series, Span},
};
use crate::probes::ProgramCost;

/// Everything one scrape shows.
pub struct Exposition {
    pub counts: Counts,
    /// Occupied slots of the flight table, by direction label.
    pub open_flights: Vec<(&'static str, u64)>,
    /// Each program's runs and run time, when the agent measures them.
    pub costs: Vec<ProgramCost>,
    /// Datapath changes that replaced the probes since the agent started.
    pub datapath_changes: u64,
}

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exposition")
            .field("series", &self.counts.0.len())
            .finish_non_exhaustive()
    }
}

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Length-delimited `io.prometheus.client.MetricFamily` messages.
    Protobuf,
    OpenMetrics,
    Prometheus,
}

const PROTOBUF_MEDIA_TYPE: &str = "application/vnd.google.protobuf";
const PROTOBUF_PROTO: &str = "io.prometheus.client.MetricFamily";

impl Format {
    /// The format an `Accept` header prefers: of those it lists, the one
    /// with the highest `q` (the first listed among equals); the classic
    /// text when it lists none of the others.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let mut best = (Format::Prometheus, 0.0);
        for choice in accept.unwrap_or("").split(',') {
            let mut parts = choice.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let (mut q, mut proto, mut encoding) = (1.0, None, None);
            for parameter in parts {
                match parameter.split_once('=') {
                    Some(("q", value)) => q = value.parse().unwrap_or(0.0),
                    Some(("proto", value)) => proto = Some(value),
                    Some(("encoding", value)) => encoding = Some(value),
                    _ => {}
                }
            }
            let format = match media.as_str() {
                PROTOBUF_MEDIA_TYPE
                    if proto == Some(PROTOBUF_PROTO) && encoding == Some("delimited") =>
                {
                    Format::Protobuf
                }
                "application/openmetrics-text" => Format::OpenMetrics,
                "text/plain" | "*/*" => Format::Prometheus,
                _ => continue,
            };
            if q > best.1 {
                best = (format, q);
            }
        }
        best.0
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => {
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
            }
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

impl Exposition {
    pub fn encode(self, format: Format) -> anyhow::Result<Vec<u8>> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut text = String::new();
        match format {
            Format::Protobuf => {
                return Ok(
                    prometheus_client::encoding::prometheus_protobuf::encode_to_vec(&registry)?,
                );
            }
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, &registry)?,
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
            }
        }
        Ok(text.into_bytes())
    }
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let bounds = buckets::bounds_ns();
        let latencies = |wanted: fn(&Series) -> Option<&Span>| {
            self.counts
                .0
                .iter()
                .filter_map(move |(series, count)| match (wanted(series), count) {
                    (Some(span), Count::Latency(histogram)) => Some((span, histogram.as_ref())),
                    _ => None,
                })
        };
        histograms(
            &mut encoder,
            "netprobe_segment_latency",
            "Time between two consecutive observation points of the datapath.",
            latencies(|series| match series {
                Series::Segment(span) => Some(span),
                _ => None,
            }),
            &bounds,
        )?;
        histograms(
            &mut encoder,
            "netprobe_end_to_end_latency",
            "Time from a direction's first observation point to its last, for packets seen at every point.",
            latencies(|series| match series {
                Series::EndToEnd(span) => Some(span),
                _ => None,
            }),
            &bounds,
        )?;
        if let Some(Count::Latency(application)) = self.counts.0.get(&Series::Application) {
            let mut metric = encoder.encode_descriptor(
                "netprobe_application_latency",
                "The server application's time on a socket, from reading a request that came through the probes to its next write.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            encode_histogram(&mut metric, application, &bounds)?;
        }
        let points: Vec<(&str, &str, _)> = self
            .counts
            .0
            .iter()
            .filter_map(|(series, count)| match (series, count) {
                (Series::Point { direction, point }, Count::Point(stats)) => {
                    Some((*direction, point.as_str(), stats))
                }
                _ => None,
            })
            .collect();
        for (name, help, value) in POINT_COUNTERS {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (direction, point, stats) in &points {
                let labels = [("direction", *direction), ("point", point)];
                metric
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&value(stats), None)?;
            }
        }
        let mut open = encoder.encode_descriptor(
            "netprobe_open_flights",
            "Packets being followed right now: occupied slots of the flight table.",
            None,
            MetricType::Gauge,
        )?;
        for (direction, flights) in &self.open_flights {
            open.encode_family(&[("direction", *direction)])?
                .encode_gauge(&(*flights as i64))?;
        }
        let mut changes = encoder.encode_descriptor(
            "netprobe_datapath_changes",
            "Times the re-discovered datapath differed and the probes were replaced.",
            None,
            MetricType::Counter,
        )?;
        changes.encode_counter::<NoLabelSet, _, u64>(&self.datapath_changes, None)?;
        if !self.costs.is_empty() {
            let mut runs = encoder.encode_descriptor(
                "netprobe_program_runs",
                "Runs of each probe program, from the kernel's bpf statistics.",
                None,
                MetricType::Counter,
            )?;
            for cost in &self.costs {
                runs.encode_family(&[("program", cost.program.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&cost.run_cnt, None)?;
            }
            let mut time = encoder.encode_descriptor(
                "netprobe_program_run_time",
                "Time spent in each probe program, from the kernel's bpf statistics.",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?;
            for cost in &self.costs {
                time.encode_family(&[("program", cost.program.as_str())])?
                    .encode_counter::<NoLabelSet, _, f64>(&(cost.run_time_ns as f64 / 1e9), None)?;
            }
        }
        let mut build = encoder.encode_descriptor(
            "netprobe_build",
            "The running netprobe's version.",
            None,
            MetricType::Info,
        )?;
        build.encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;
        Ok(())
    }
}

/// The per-point counters: name, help, and the kernel counter each shows.
type PointCounter = (
    &'static str,
    &'static str,
    fn(&netprobe_common::probe::HopStats) -> u64,
);

const POINT_COUNTERS: [PointCounter; 6] = [
    (
        "netprobe_followed_packets",
        "Followed packets seen at an observation point.",
        |stats| stats.seen,
    ),
    (
        "netprobe_joined_packets",
        "Packets joined at a point to their sighting at the previous point (at the first, to the socket write that produced them).",
        |stats| stats.joined,
    ),
    (
        "netprobe_unjoined_packets",
        "Packets seen at a point with no record from any earlier point.",
        |stats| stats.unjoined,
    ),
    (
        "netprobe_skipped_packets",
        "Packets seen at a point whose last sighting was further back than the previous point.",
        |stats| stats.skipped,
    ),
    (
        "netprobe_evicted_flights",
        "Unfinished flights last seen at a point whose slot a new flight took while they were fresh (flight table full or colliding).",
        |stats| stats.evicted,
    ),
    (
        "netprobe_expired_flights",
        "Flights last seen at a point that went no further (dropped, or consumed where no probe looks), found stale when their slot was reused.",
        |stats| stats.expired,
    ),
];

fn histograms<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (&'a Span, &'a Histogram)>,
    bounds: &[u64],
) -> Result<(), std::fmt::Error> {
    let mut metric =
        encoder.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    for (span, histogram) in series {
        let mut labels = vec![
            ("direction", span.direction),
            ("from", span.from.as_str()),
            ("to", span.to.as_str()),
        ];
        // Node-wide segments have no pod label at all: `pod=""` matches them.
        labels.extend(span.pod.as_deref().map(|pod| ("pod", pod)));
        encode_histogram(&mut metric.encode_family(&labels)?, histogram, bounds)?;
    }
    Ok(())
}

fn encode_histogram(
    metric: &mut prometheus_client::encoding::MetricEncoder,
    histogram: &Histogram,
    bounds: &[u64],
) -> Result<(), std::fmt::Error> {
    let native = buckets::native(histogram);
    metric.encode_histogram_with_native::<NoLabelSet>(
        histogram.sum_ns as f64 / 1e9,
        histogram.count,
        &buckets::fold(histogram, bounds),
        None,
        NativeHistogram {
            schema: buckets::NATIVE_SCHEMA,
            zero_threshold: buckets::NATIVE_ZERO_THRESHOLD,
            zero_count: native.zero_count,
            negative: NativeHistogramBuckets {
                spans: &[],
                deltas: &[],
            },
            positive: NativeHistogramBuckets {
                spans: &native.spans,
                deltas: &native.deltas,
            },
            created: None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_with_native_histograms_asks_for_protobuf_first() {
        // Prometheus 2.42 with --enable-feature=native-histograms.
        let prometheus = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::Protobuf);
        let text_preferred = "text/plain;q=0.9,application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5";
        assert_eq!(Format::negotiate(Some(text_preferred)), Format::Prometheus);
        let other_messages =
            "application/vnd.google.protobuf;proto=other.Message;encoding=delimited";
        assert_eq!(Format::negotiate(Some(other_messages)), Format::Prometheus);
    }

    #[test]
    fn prometheus_asks_for_openmetrics_and_curl_gets_the_classic_text() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0, text/plain")),
            Format::Prometheus
        );
    }
}
