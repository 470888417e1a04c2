//! How far apart two modes' medians can come out by chance. The modes run
//! each slice side by side, so the difference between two modes moves from
//! one slice to the next by the run's own noise, with the machine's drift,
//! which moves every mode alike, left out. One pair's few slices are a poor
//! guess of that noise: slices that happen to agree would claim a few
//! nanoseconds. Every pair of modes that held its rate sees the same
//! machine, so the noise is taken from all of them: the median of their
//! spreads. Pairs queueing for milliseconds, past a mode's capacity, are
//! noisier by orders of magnitude and keep their own spread.

use super::median::median;
use crate::bench::SLICES;

// The factors below are worked out for four slices.
const _: () = assert!(SLICES == 4);

/// The standard error of the median of four normal values (the mean of the
/// middle two), in their standard deviations; the mean's would be 0.5.
const MEDIAN_ERROR_PER_SD: f64 = 0.546;

/// The median of four normal values' sample standard deviation, in their
/// standard deviations: √(median of χ² with 3 degrees / 3).
const TYPICAL_SAMPLE_SD_PER_SD: f64 = 0.888;

/// Two modes compared at one rate and size: their slices' medians, and
/// whether both held the rate.
pub struct Pair<'a> {
    pub ours: &'a [u64],
    pub theirs: &'a [u64],
    pub held: bool,
}

/// How far the difference between two modes' medians may be off by chance
/// in one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Noise {
    /// Two standard errors, for pairs that held their rate.
    pub margin: u64,
}

impl Noise {
    /// From every pair the run compares; only those that held their rate
    /// count.
    pub fn pooled<'a>(pairs: impl IntoIterator<Item = Pair<'a>>) -> Self {
        let spreads = pairs
            .into_iter()
            .filter(|pair| pair.held)
            .filter_map(|pair| slice_spread(pair.ours, pair.theirs));
        let margin = median(spreads).map_or(0.0, |typical| {
            2.0 * MEDIAN_ERROR_PER_SD * typical as f64 / TYPICAL_SAMPLE_SD_PER_SD
        });
        Self {
            margin: margin.round() as u64,
        }
    }

    /// How far `pair`'s difference may be off by chance: the run's margin
    /// if both held their rate, or two standard errors from its own spread
    /// if larger (the only measure for a mode past its capacity).
    pub fn of(&self, pair: &Pair) -> u64 {
        let pooled = if pair.held { self.margin } else { 0 };
        let own = slice_spread(pair.ours, pair.theirs)
            .map_or(0.0, |spread| 2.0 * MEDIAN_ERROR_PER_SD * spread as f64);
        (own.round() as u64).max(pooled)
    }
}

/// The sample standard deviation of the difference between two modes'
/// medians over their slices (`theirs[i] - ours[i]`): how much it moved
/// from one turn to the next. None unless both have [`SLICES`] slices (the
/// factors above are for that many; results saved with other counts).
fn slice_spread(ours: &[u64], theirs: &[u64]) -> Option<u64> {
    if ours.len() != SLICES || theirs.len() != SLICES {
        return None;
    }
    let differences: Vec<f64> = ours
        .iter()
        .zip(theirs)
        .map(|(&ours, &theirs)| theirs as f64 - ours as f64)
        .collect();
    let mean = differences.iter().sum::<f64>() / SLICES as f64;
    let squares: f64 = differences.iter().map(|d| (d - mean).powi(2)).sum();
    Some((squares / (SLICES - 1) as f64).sqrt().round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: [u64; SLICES] = [20_000; SLICES];

    /// The other mode's slices, `differences` above ours.
    fn theirs(differences: [u64; SLICES]) -> Vec<u64> {
        OURS.iter()
            .zip(differences)
            .map(|(ours, d)| ours + d)
            .collect()
    }

    fn pair(theirs: &[u64], held: bool) -> Pair<'_> {
        Pair {
            ours: &OURS,
            theirs,
            held,
        }
    }

    #[test]
    fn a_spread_is_the_standard_deviation_of_the_paired_differences() {
        // The difference was +1.0 us three times and +3.0 us once.
        assert_eq!(
            slice_spread(&OURS, &theirs([1_000, 1_000, 1_000, 3_000])),
            Some(1_000)
        );
        // Both modes slower in the second and fourth slices by the same:
        // no spread.
        assert_eq!(
            slice_spread(
                &[20_000, 24_000, 20_000, 24_000],
                &[21_000, 25_000, 21_000, 25_000]
            ),
            Some(0)
        );
        // Results saved with another count of slices have none.
        assert_eq!(slice_spread(&[20_000, 21_000], &[21_000, 22_000]), None);
        assert_eq!(slice_spread(&OURS, &[21_000; 3]), None);
    }

    #[test]
    fn pairs_that_held_their_rate_share_the_margin_others_keep_their_own() {
        // Spreads 0, 500, 1000 and 1800 ns from pairs that held; one
        // queueing pair moved by 4 ms and does not count. The typical
        // spread, 750 ns, is 845 ns of standard deviation; two standard
        // errors of a median of four are 922 ns.
        let agreeing = theirs([1_000; SLICES]);
        let spreads = [2_000, 3_000, 4_600].map(|last| theirs([1_000, 1_000, 1_000, last]));
        let queueing = theirs([1_000_000, 1_000_000, 1_000_000, 9_000_000]);
        let noise = Noise::pooled(
            [pair(&agreeing, true), pair(&queueing, false)]
                .into_iter()
                .chain(spreads.iter().map(|theirs| pair(theirs, true))),
        );
        assert_eq!(noise, Noise { margin: 922 });
        assert_eq!(noise.of(&pair(&agreeing, true)), 922);
        // A spread of 2 us of its own: two standard errors are 2.18 us.
        let wide = theirs([1_000, 1_000, 1_000, 5_000]);
        assert_eq!(noise.of(&pair(&wide, true)), 2_184);
        assert_eq!(noise.of(&pair(&agreeing, false)), 0);
        assert_eq!(Noise::pooled([]), Noise { margin: 0 });
    }
}
