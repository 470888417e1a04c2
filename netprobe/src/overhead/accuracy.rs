//! What following one packet in N costs in accuracy: each segment's
//! percentiles from the followed packets against those from every packet,
//! over the same traffic (both sessions attached at once, so the VM's
//! drift between runs does not enter).

use crate::report::Report;

/// One segment in both reports.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentError {
    /// `flannel.1 -> cni0`: the points tell the direction.
    pub segment: String,
    /// The followed report's coverage.
    pub coverage: Option<f64>,
    pub followed: (u64, u64),
    /// p50 and p99 from every packet.
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

/// Every segment of `followed` that `every` has too, in path order.
pub fn compare(followed: &Report, every: &Report) -> Vec<SegmentError> {
    followed
        .segments
        .iter()
        .filter_map(|segment| {
            let all = every.segments.iter().find(|other| {
                other.direction == segment.direction
                    && other.from == segment.from
                    && other.to == segment.to
            })?;
            Some(SegmentError {
                segment: format!("{} -> {}", segment.from, segment.to),
                coverage: segment.coverage,
                followed: (segment.latency.p50_ns, segment.latency.p99_ns),
                every: (all.latency.p50_ns, all.latency.p99_ns),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
