//! The Prometheus buckets of a latency histogram, folded from the kernel's
//! log-linear buckets: classic buckets, exactly, and native ones.
//!
//! Every bound is a boundary of the kernel's buckets, so each kernel bucket
//! falls wholly below or wholly above it: a classic bucket's count is a sum
//! of kernel buckets, with no share of one guessed. Bounds run from 512 ns
//! to 1.007 s: four per octave up to 2^20 ns (1.05 ms), one per octave above,
//! and last the first kernel boundary past one second. Latencies are whole
//! nanoseconds, so the bucket `le` of `b` ns counts latencies below `b` ns.

use std::collections::BTreeMap;

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

/// The native histograms' schema: 2^3 buckets per octave, each 9% wide
/// (client_golang's default bucket factor, 1.1).
pub const NATIVE_SCHEMA: i32 = 3;

/// client_golang's default: the zero bucket holds only zeros here, as no
/// latency lies between 0 and 1 ns.
pub const NATIVE_ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// A histogram's native buckets, sparse, as the protobuf exposition
/// carries them: `spans` of consecutive bucket indexes (offset from the
/// previous span's end, length) and each bucket's count as a `delta` from
/// the bucket before it.
#[derive(Debug, Default, PartialEq)]
pub struct NativeBuckets {
    pub zero_count: u64,
    pub spans: Vec<(i32, u32)>,
    pub deltas: Vec<i64>,
}

/// The native bucket holding `seconds`: bucket `i` holds the values in
/// (`native_upper_bound(i - 1)`, `native_upper_bound(i)`].
pub fn native_index(seconds: f64) -> i32 {
    (seconds.log2() * f64::from(1 << NATIVE_SCHEMA)).ceil() as i32
}

/// The upper bound of native bucket `index`, in seconds: 2^(index/8).
pub fn native_upper_bound(index: i32) -> f64 {
    (f64::from(index) / f64::from(1 << NATIVE_SCHEMA)).exp2()
}

/// A histogram's native buckets. Native bounds are powers of 2^(1/8) of a
/// second, which no kernel bucket boundary is, so each kernel bucket goes
/// whole to the native bucket holding its middle: a kernel bucket is at
/// most 1/32 of an octave wide, so a latency is counted at most 3% of its
/// value from the native bucket it lies in.
pub fn native(histogram: &Histogram) -> NativeBuckets {
    let mut zero_count = 0;
    let mut counts: BTreeMap<i32, u64> = BTreeMap::new();
    for (index, &count) in histogram.buckets.iter().enumerate().take(BUCKETS) {
        if count == 0 {
            continue;
        }
        let low = bucket_low(index);
        if low == 0 {
            zero_count += u64::from(count);
            continue;
        }
        let middle_ns = low as f64 + (bucket_width(index) - 1) as f64 / 2.0;
        *counts.entry(native_index(middle_ns / 1e9)).or_default() += u64::from(count);
    }
    let mut buckets = NativeBuckets {
        zero_count,
        ..NativeBuckets::default()
    };
    let mut previous: Option<(i32, u64)> = None;
    for (index, count) in counts {
        match (previous, buckets.spans.last_mut()) {
            (Some((previous_index, _)), Some(span)) if index == previous_index + 1 => span.1 += 1,
            (Some((previous_index, _)), _) => buckets.spans.push((index - previous_index - 1, 1)),
            (None, _) => buckets.spans.push((index, 1)),
        }
        let previous_count = previous.map_or(0, |(_, count)| count);
        buckets.deltas.push(count as i64 - previous_count as i64);
        previous = Some((index, count));
    }
    buckets
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

    /// The native buckets back as (index, count), from spans and deltas.
    fn decoded(native: &NativeBuckets) -> Vec<(i32, u64)> {
        let mut buckets = Vec::new();
        let (mut index, mut count) = (0i32, 0i64);
        let mut deltas = native.deltas.iter();
        for (span, &(offset, length)) in native.spans.iter().enumerate() {
            index = if span == 0 {
                offset
            } else {
                index + 1 + offset
            };
            for bucket in 0..length {
                if bucket > 0 {
                    index += 1;
                }
                count += deltas.next().expect("a delta per bucket");
                buckets.push((index, count as u64));
            }
        }
        assert!(deltas.next().is_none(), "more deltas than buckets");
        buckets
    }

    #[test]
    fn a_latency_lands_within_3_percent_of_its_native_bucket() {
        let mut ns = 1u64;
        while ns < 1 << 30 {
            let mut histogram = empty_histogram();
            histogram.record(ns);
            let native = native(&histogram);
            let [(index, 1)] = decoded(&native)[..] else {
                panic!("{ns} ns: {native:?}");
            };
            let (lower, upper) = (
                native_upper_bound(index - 1) * 1e9,
                native_upper_bound(index) * 1e9,
            );
            let value = ns as f64;
            assert!(
                lower < value * 1.032 && value * 0.968 <= upper,
                "{ns} ns in native bucket {index}: {lower:.1}..{upper:.1} ns"
            );
            ns = ns * 11 / 10 + 1;
        }
    }

    #[test]
    fn native_buckets_keep_every_count_and_encode_gaps_as_offsets() {
        let mut histogram = empty_histogram();
        for (ns, times) in [(0, 2), (1_000, 3), (1_100, 1), (50_000, 4), (50_000_000, 5)] {
            for _ in 0..times {
                histogram.record(ns);
            }
        }
        let native = native(&histogram);
        assert_eq!(native.zero_count, 2);
        let buckets = decoded(&native);
        assert_eq!(buckets.iter().map(|(_, count)| count).sum::<u64>(), 13);
        assert_eq!(
            native.spans.len(),
            buckets.len() - 1,
            "1000 and 1100 ns adjoin"
        );
        for (ns, count) in [(1_000, 3), (1_100, 1), (50_000, 4), (50_000_000, 5)] {
            let index = native_index(ns as f64 / 1e9);
            assert!(buckets.contains(&(index, count)), "{ns} ns: {buckets:?}");
        }
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
