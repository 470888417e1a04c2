//! How far apart two modes' medians can come out by chance. The modes run
//! each slice side by side, so the difference between two modes moves from
//! one slice to the next by the run's own noise, with the machine's drift,
//! which moves every mode alike, left out. One pair's two slices are a poor
//! guess of that noise: two slices that happen to agree would claim a few
//! nanoseconds. Every pair of modes that held its rate sees the same
//! machine, so the noise is taken from all of them: the median of their
//! spreads. Pairs queueing for milliseconds, past a mode's capacity, are
//! noisier by orders of magnitude and keep their own spread.

use super::runner::SLICES;

// The factor below is worked out for two slices.
const _: () = assert!(SLICES == 2);

/// Two standard errors of a difference between two-slice medians, in
/// typical spreads. With slices differing by N(0, σ²) each, half their
/// range has median 0.477 σ (|N(0, 2σ²)| / 2), so σ is the typical spread
/// over 0.477, and two standard errors of the mean of two slices are
/// 2 σ / √2.
const MARGIN_PER_TYPICAL_SPREAD: f64 = std::f64::consts::SQRT_2 / 0.477;

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
        Self {
            margin: margin(spreads),
        }
    }

    /// How far `pair`'s difference may be off by chance: the run's margin
    /// if both held their rate, or its own spread if larger (the only
    /// measure for a mode past its capacity).
    pub fn of(&self, pair: &Pair) -> u64 {
        let pooled = if pair.held { self.margin } else { 0 };
        slice_spread(pair.ours, pair.theirs)
            .unwrap_or(0)
            .max(pooled)
    }
}

/// Half the range that the difference between two modes' medians took over
/// their slices (`theirs[i] - ours[i]`): how much it moved from one turn to
/// the next. None without two slices each.
fn slice_spread(ours: &[u64], theirs: &[u64]) -> Option<u64> {
    if ours.len() != theirs.len() || ours.len() < 2 {
        return None;
    }
    let differences = ours
        .iter()
        .zip(theirs)
        .map(|(&ours, &theirs)| theirs as i64 - ours as i64);
    let (low, high) = differences.fold((i64::MAX, i64::MIN), |(low, high), difference| {
        (low.min(difference), high.max(difference))
    });
    Some((high - low).unsigned_abs() / 2)
}

/// How far two medians may differ by chance, from the slice spreads of
/// every pair compared: two standard errors. Zero without spreads (results
/// saved before slices were recorded).
fn margin(spreads: impl IntoIterator<Item = u64>) -> u64 {
    let mut spreads: Vec<u64> = spreads.into_iter().collect();
    if spreads.is_empty() {
        return 0;
    }
    spreads.sort_unstable();
    let middle = spreads.len() / 2;
    let typical = if spreads.len().is_multiple_of(2) {
        (spreads[middle - 1] + spreads[middle]) as f64 / 2.0
    } else {
        spreads[middle] as f64
    };
    (MARGIN_PER_TYPICAL_SPREAD * typical).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spread_is_half_the_range_of_the_paired_differences() {
        // The difference went from +1.0 to +2.2 us.
        assert_eq!(
            slice_spread(&[20_000, 21_000], &[21_000, 23_200]),
            Some(600)
        );
        // Both modes slower in the second slice by the same: no spread.
        assert_eq!(slice_spread(&[20_000, 24_000], &[21_000, 25_000]), Some(0));
        assert_eq!(slice_spread(&[20_000], &[21_000]), None);
        assert_eq!(slice_spread(&[20_000, 21_000], &[21_000]), None);
    }

    #[test]
    fn the_margin_is_two_standard_errors_from_the_typical_spread() {
        // Typical spread 500 ns: σ 1048 ns, two standard errors 1482 ns.
        assert_eq!(margin([100, 500, 900]), 1482);
        // Pairs queueing for milliseconds do not move it; nor do pairs
        // whose slices happened to agree.
        assert_eq!(margin([0, 500, 5_000_000]), 1482);
        assert_eq!(margin([400, 600]), 1482);
        assert_eq!(margin([]), 0);
    }

    #[test]
    fn pairs_that_held_their_rate_share_the_margin_others_keep_their_own() {
        let pair = |ours: &'static [u64], theirs: &'static [u64], held| Pair { ours, theirs, held };
        // Spreads 100, 500 and 900 ns from pairs that held; one queueing
        // pair moved by 2 ms and does not count.
        let noise = Noise::pooled([
            pair(&[20_000, 20_000], &[21_000, 21_200], true),
            pair(&[20_000, 20_000], &[21_000, 22_000], true),
            pair(&[20_000, 20_000], &[21_000, 22_800], true),
            pair(&[20_000, 20_000], &[1_000_000, 5_000_000], false),
        ]);
        assert_eq!(noise, Noise { margin: 1482 });
        assert_eq!(
            noise.of(&pair(&[20_000, 20_000], &[21_000, 21_000], true)),
            1482
        );
        assert_eq!(
            noise.of(&pair(&[20_000, 20_000], &[21_000, 25_000], true)),
            2000
        );
        assert_eq!(
            noise.of(&pair(&[20_000, 20_000], &[21_000, 21_000], false)),
            0
        );
    }
}
