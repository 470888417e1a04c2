//! What following one packet in N costs in accuracy: each segment's p50 and
//! p99 over the packets the default follow rate picks, against every
//! packet's, over the same traffic. One session follows every packet and
//! sends the picked ones whole to userspace (`--sample N` picks by the same
//! rule): the two sets of percentiles then come from the same packets' same
//! timestamps. Two sessions attached at once would not do: each one's
//! programs run inside the other's segments.

use crate::{
    path::{Direction, ProbePath},
    probes::SampledFlight,
    report::{Latency, Report, new_hdr},
};

/// One segment of the default report, against every packet's.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentError {
    /// `flannel.1 -> cni0`: the points tell the direction.
    pub segment: String,
    /// Coverage in the report at the default settings.
    pub coverage: Option<f64>,
    /// p50 and p99 over the packets the default follow rate picks.
    pub followed: (u64, u64),
    /// p50 and p99 over every packet.
    pub every: (u64, u64),
}

impl SegmentError {
    /// How far the followed packets' p50 and p99 are from every packet's,
    /// as shares of the latter.
    pub fn errors(&self) -> (f64, f64) {
        let error = |followed: u64, every: u64| {
            if every == 0 {
                return 0.0;
            }
            (followed as f64 - every as f64) / every as f64
        };
        (
            error(self.followed.0, self.every.0),
            error(self.followed.1, self.every.1),
        )
    }
}

/// Each segment of `defaults` (a report at the default settings), from the
/// full-tracking session's report `every` and the flights it sampled,
/// `picked`, on `path`.
pub fn compare(
    defaults: &Report,
    every: &Report,
    path: &ProbePath,
    picked: &[SampledFlight],
) -> Vec<SegmentError> {
    let mut errors = Vec::new();
    for direction in Direction::BOTH {
        let hops = path.hops(direction);
        for hop in 1..hops.len() {
            let (from, to) = (hops[hop - 1].label(), hops[hop].label());
            let find = |report: &Report| {
                report
                    .segments(direction)
                    .find(|segment| segment.from == from && segment.to == to)
                    .cloned()
            };
            let (Some(default), Some(all)) = (find(defaults), find(every)) else {
                continue;
            };
            let followed = percentiles(picked, direction, hop);
            errors.push(SegmentError {
                segment: format!("{from} -> {to}"),
                coverage: default.coverage,
                followed: (followed.p50_ns, followed.p99_ns),
                every: (all.latency.p50_ns, all.latency.p99_ns),
            });
        }
    }
    errors
}

/// The percentiles of the segment ending at `hop` of `direction` over the
/// flights seen at both its ends, as the kernel's histogram of `hop`
/// counts them.
fn percentiles(flights: &[SampledFlight], direction: Direction, hop: usize) -> Latency {
    let mut histogram = new_hdr();
    for flight in flights
        .iter()
        .filter(|flight| flight.direction == direction)
    {
        if let (Some(from), Some(to)) = (flight.offset_ns(hop - 1), flight.offset_ns(hop)) {
            histogram.saturating_record(to.saturating_sub(from));
        }
    }
    Latency::from_hdr(&histogram)
}

#[cfg(test)]
mod tests {
    use netprobe_common::probe::FlightKey;

    use super::*;
    use crate::probes::test_flight;

    #[test]
    fn errors_are_shares_of_every_packets_percentiles() {
        let segment = SegmentError {
            segment: "a -> b".to_owned(),
            coverage: Some(1.0),
            followed: (1_050, 1_800),
            every: (1_000, 2_000),
        };
        let (p50, p99) = segment.errors();
        assert!((p50 - 0.05).abs() < 1e-9, "{p50}");
        assert!((p99 + 0.10).abs() < 1e-9, "{p99}");
    }

    #[test]
    fn a_segments_percentiles_come_from_the_flights_seen_at_both_its_hops() {
        let flight = |first: u32, second: u32| {
            test_flight(
                Direction::Ingress,
                FlightKey::default(),
                0,
                &[0, first, second],
            )
        };
        let flights = [flight(100, 1_100), flight(200, 2_200), flight(0, 3_000)];
        let latency = percentiles(&flights, Direction::Ingress, 2);
        // The third was not seen at hop 1; HdrHistogram is exact to 1%.
        assert_eq!(latency.count, 2);
        assert!(latency.max_ns.abs_diff(2_000) <= 20, "{latency:?}");
        assert_eq!(percentiles(&flights, Direction::Egress, 2).count, 0);
    }
}
