//! A run's latency by percentile, as HdrHistogram plots it: percentiles
//! evenly spaced in "nines" (90% is one nine, 99% two, 99.9% three), so
//! the tail gets as much room as the body. `results.json` keeps these
//! points for each run; the page plots them.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Points per nine: ten, as 0%, 20.6%, 36.9%, ..., 90%, 92.1%, ...
pub const STEPS_PER_NINE: u32 = 10;

/// The latency at one percentile.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Percentile {
    /// 0 to 100.
    pub percentile: f64,
    pub ns: u64,
}

impl Percentile {
    /// Where the percentile lies on a nines axis: 0 at 0%, 1 at 90%, 2 at
    /// 99%, ...
    pub fn nines(&self) -> f64 {
        nines(self.percentile)
    }
}

/// `percentile` on a nines axis.
pub fn nines(percentile: f64) -> f64 {
    -(1.0 - percentile / 100.0).log10()
}

/// The percentile `nines` nines stand for.
pub fn percentile_of_nines(nines: f64) -> f64 {
    100.0 * (1.0 - 10f64.powf(-nines))
}

/// `histogram` at every [`STEPS_PER_NINE`]th of a nine as far as its
/// requests reach (n requests resolve log10(n) nines), ending at its
/// slowest request; empty for an empty histogram.
pub fn distribution(histogram: &Histogram<u64>) -> Vec<Percentile> {
    let count = histogram.len();
    if count == 0 {
        return Vec::new();
    }
    // The slowest of n requests stands at 1 - 1/n.
    let reach = (count as f64).log10();
    let mut points: Vec<Percentile> = (0..)
        .map(|step| f64::from(step) / f64::from(STEPS_PER_NINE))
        .take_while(|&nines| nines < reach - 1e-9)
        .map(|nines| {
            let percentile = percentile_of_nines(nines);
            Percentile {
                percentile,
                ns: histogram.value_at_quantile(percentile / 100.0),
            }
        })
        .collect();
    points.push(Percentile {
        percentile: percentile_of_nines(reach),
        ns: histogram.max(),
    });
    points
}

/// 1, 2, ..., 1000 us once each: the value at p is p% of 1000 us.
#[cfg(test)]
pub fn one_to_a_thousand_us() -> Histogram<u64> {
    let mut histogram = crate::report::new_hdr();
    for us in 1..=1000u64 {
        histogram.record(us * 1000).expect("within the bounds");
    }
    histogram
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::new_hdr;

    #[test]
    fn a_known_histogram_gives_its_percentiles_a_tenth_of_a_nine_apart() {
        let points = distribution(&one_to_a_thousand_us());
        // 1000 requests reach three nines: 0.0, 0.1, ..., 2.9 and the slowest.
        assert_eq!(points.len(), 31);
        let near = |ns: u64, expected: u64| ns.abs_diff(expected) <= expected / 100;
        assert!(near(points[0].ns, 1_000), "{:?}", points[0]);
        for (index, percentile, ns) in [(10, 90.0, 900_000), (20, 99.0, 990_000)] {
            let point = points[index];
            assert!((point.percentile - percentile).abs() < 1e-9, "{point:?}");
            assert!((point.nines() - f64::from(index as u32) / 10.0).abs() < 1e-9);
            assert!(near(point.ns, ns), "{point:?}");
        }
        let slowest = points[30];
        assert!((slowest.percentile - 99.9).abs() < 1e-9, "{slowest:?}");
        assert!(near(slowest.ns, 1_000_000), "{slowest:?}");
        assert!(points.windows(2).all(|pair| pair[0].ns <= pair[1].ns));
    }

    #[test]
    fn a_single_request_is_its_own_slowest_and_nothing_is_empty() {
        let mut histogram = new_hdr();
        histogram.record(5_000).unwrap();
        let points = distribution(&histogram);
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].percentile, 0.0);
        assert!(points[0].ns.abs_diff(5_000) <= 50);
        assert_eq!(distribution(&new_hdr()), []);
    }

    #[test]
    fn nines_and_percentiles_are_inverse() {
        for (percentile, expected) in [(0.0, 0.0), (90.0, 1.0), (99.0, 2.0), (99.9, 3.0)] {
            assert!((nines(percentile) - expected).abs() < 1e-9);
            assert!((percentile_of_nines(expected) - percentile).abs() < 1e-9);
        }
    }
}
