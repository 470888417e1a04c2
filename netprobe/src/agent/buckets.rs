//! The classic Prometheus buckets of a latency histogram, folded exactly
//! from the kernel's log-linear buckets.
//!
//! Every bound is a boundary of the kernel's buckets, so each kernel bucket
//! falls wholly below or wholly above it: a classic bucket's count is a sum
//! of kernel buckets, with no share of one guessed. Bounds run from 512 ns
//! to 1.007 s: four per octave up to 2^20 ns (1.05 ms), one per octave above,
//! and last the first kernel boundary past one second. Latencies are whole
//! nanoseconds, so the bucket `le` of `b` ns counts latencies below `b` ns.

use netprobe_common::histogram::{BUCKETS, Histogram, bucket_low, bucket_width};

/// Octaves split into four buckets: from 2^9 ns (512 ns)...
const FINE_FROM_EXPONENT: u32 = 9;
/// ...up to 2^20 ns (1.05 ms); one bucket per octave from there...
const COARSE_FROM_EXPONENT: u32 = 20;
/// ...to 2^29 ns (0.54 s).
const COARSE_TO_EXPONENT: u32 = 29;
/// The last bound, 1.007 s: 15/8 of 2^29 ns, the first kernel boundary past
/// one second. The kernel's last bucket also holds everything above 2^30 ns,
/// so no bound can lie within it.
const LAST_BOUND_NS: u64 = (15 << COARSE_TO_EXPONENT) / 8;

/// Upper bounds of the classic buckets, in ns, ascending.
pub fn bounds_ns() -> Vec<u64> {
    let fine = (FINE_FROM_EXPONENT..COARSE_FROM_EXPONENT)
        .flat_map(|exponent| (4..8).map(move |quarter| quarter << (exponent - 2)));
    let coarse = (COARSE_FROM_EXPONENT..=COARSE_TO_EXPONENT).map(|exponent| 1 << exponent);
    fine.chain(coarse).chain([LAST_BOUND_NS]).collect()
}

/// A histogram's classic buckets: for each bound of [`bounds_ns`], in
/// seconds, the count of latencies in that bucket alone (not cumulative,
/// as `prometheus-client` takes them), then the `+Inf` bucket with the
/// latencies past the last bound: without it `histogram_quantile` answers
/// NaN.
pub fn fold(histogram: &Histogram, bounds_ns: &[u64]) -> Vec<(f64, u64)> {
    let mut folded: Vec<(f64, u64)> = bounds_ns
        .iter()
        .map(|&bound| (bound as f64 / 1e9, 0))
        .chain([(f64::INFINITY, 0)])
        .collect();
    let mut bucket = 0;
    for (index, &count) in histogram.buckets.iter().enumerate().take(BUCKETS) {
        let high = bucket_low(index) + bucket_width(index);
        while bucket < bounds_ns.len() && bounds_ns[bucket] < high {
            bucket += 1;
        }
        folded[bucket].1 += u64::from(count);
    }
    folded
}

#[cfg(test)]
mod tests {
    use netprobe_common::histogram::bucket_index;

    use super::*;
    use crate::probes::empty_histogram;

    #[test]
    fn bounds_cover_1us_to_1s_with_four_per_octave_below_1ms() {
        let bounds = bounds_ns();
        assert!(bounds.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(bounds[0] <= 1_000 && *bounds.last().unwrap() >= 1_000_000_000);
        for octave in FINE_FROM_EXPONENT..COARSE_FROM_EXPONENT {
            let (low, high) = (1u64 << octave, 1u64 << (octave + 1));
            let within = bounds.iter().filter(|&&b| low <= b && b < high).count();
            assert_eq!(within, 4, "octave from {low} ns");
        }
        assert!(bounds.iter().filter(|&&b| b < 1_000_000).count() >= 4 * 10);
    }

    #[test]
    fn every_bound_is_a_kernel_bucket_boundary() {
        for bound in bounds_ns() {
            let index = bucket_index(bound);
            assert_eq!(bucket_low(index), bound, "{bound} ns splits bucket {index}");
            assert!(index < BUCKETS - 1, "{bound} ns is in the overflow bucket");
        }
    }

    /// The fold counts, below each bound, exactly the latencies recorded
    /// below it: checked on a spread of values from 1 ns to past 2 s, each
    /// bound's neighbours included.
    #[test]
    fn the_fold_counts_exactly_the_latencies_below_each_bound() {
        let bounds = bounds_ns();
        let mut values: Vec<u64> = Vec::new();
        let mut ns = 1u64;
        while ns < 2_500_000_000 {
            values.push(ns);
            ns = ns * 21 / 20 + 1;
        }
        for &bound in &bounds {
            values.extend([bound - 1, bound, bound + 1]);
        }
        let mut histogram = empty_histogram();
        for &value in &values {
            histogram.record(value);
        }
        let folded = fold(&histogram, &bounds);
        assert_eq!(folded.len(), bounds.len() + 1);
        let mut cumulative = 0;
        for ((le, count), &bound) in folded.iter().zip(&bounds) {
            cumulative += count;
            let below = values.iter().filter(|&&value| value < bound).count() as u64;
            assert_eq!(cumulative, below, "bucket le={le}");
            assert_eq!(*le, bound as f64 / 1e9);
        }
        let past = values.iter().filter(|&&v| v >= LAST_BOUND_NS).count() as u64;
        assert_eq!(
            folded.last(),
            Some(&(f64::INFINITY, past)),
            "the +Inf bucket"
        );
        assert_eq!(cumulative + past, histogram.count);
    }
}
