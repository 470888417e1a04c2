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

/// The most slices a run may have: the factors below are tabulated up to
/// this many.
pub const MAX_SLICES: usize = 32;

const _: () = assert!(SLICES >= 2 && SLICES <= MAX_SLICES);

/// For n = 2 to [`MAX_SLICES`] values drawn from one normal distribution,
/// in its standard deviations: the standard error of their median (the
/// middle value, or the mean of the middle two), and the median of their
/// sample standard deviation. Worked out exactly with mpmath and rounded to
/// three digits:
/// - the median's error is the square root of E[M²] over n standard normal
///   values: for n = 2m + 1, ∫ x² n!/(m!)² Φ(x)^m (1 - Φ(x))^m φ(x) dx; for
///   n = 2m, (E[X₍ₘ₎²] + E[X₍ₘ₎X₍ₘ₊₁₎]) / 2 over the densities of the middle
///   order statistic and of the middle two;
/// - the sample deviation's median is √(median of χ² with n - 1 degrees /
///   (n - 1)).
///
/// The mean of n values would have 1/√n for the first (0.5 for four).
const FACTORS: [(f64, f64); MAX_SLICES - 1] = [
    (0.707, 0.674),
    (0.670, 0.833),
    (0.546, 0.888),
    (0.536, 0.916),
    (0.463, 0.933),
    (0.459, 0.944),
    (0.410, 0.952),
    (0.408, 0.958),
    (0.372, 0.963),
    (0.370, 0.967),
    (0.343, 0.970),
    (0.342, 0.972),
    (0.320, 0.974),
    (0.319, 0.976),
    (0.301, 0.978),
    (0.300, 0.979),
    (0.285, 0.980),
    (0.284, 0.981),
    (0.271, 0.982),
    (0.271, 0.983),
    (0.259, 0.984),
    (0.259, 0.985),
    (0.249, 0.985),
    (0.248, 0.986),
    (0.239, 0.987),
    (0.239, 0.987),
    (0.231, 0.988),
    (0.231, 0.988),
    (0.224, 0.988),
    (0.224, 0.989),
    (0.217, 0.989),
];

/// How the noise of `n` slices' medians scales.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Factors {
    /// The standard error of the median of `n` slices, in the slices' own
    /// standard deviation.
    median_error_per_sd: f64,
    /// A typical (the median) sample standard deviation of `n` slices, in
    /// their true one.
    typical_sample_sd_per_sd: f64,
}

impl Factors {
    /// `None` for fewer than two slices, which have no spread, or more than
    /// [`MAX_SLICES`].
    fn of(n: usize) -> Option<Self> {
        let &(median_error_per_sd, typical_sample_sd_per_sd) = FACTORS.get(n.checked_sub(2)?)?;
        Some(Self {
            median_error_per_sd,
            typical_sample_sd_per_sd,
        })
    }
}

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
        let spreads: Vec<Spread> = pairs
            .into_iter()
            .filter(|pair| pair.held)
            .filter_map(|pair| slice_spread(pair.ours, pair.theirs))
            .collect();
        // Every pair of a run has the run's slice count, and so the same
        // factors.
        let typical = median(spreads.iter().map(|spread| spread.sd));
        let margin = typical
            .zip(spreads.first())
            .map_or(0.0, |(typical, spread)| {
                let factors = spread.factors;
                2.0 * factors.median_error_per_sd * typical as f64
                    / factors.typical_sample_sd_per_sd
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
        let own = slice_spread(pair.ours, pair.theirs).map_or(0.0, |spread| {
            2.0 * spread.factors.median_error_per_sd * spread.sd as f64
        });
        (own.round() as u64).max(pooled)
    }
}

/// How much the difference between two modes' medians moved from one
/// slice to the next, with the factors of their slice count.
struct Spread {
    /// The difference's sample standard deviation over the slices.
    sd: u64,
    factors: Factors,
}

/// The spread of `theirs[i] - ours[i]`, two runs' slices in the order they
/// ran; `None` with fewer than two slices.
fn slice_spread(ours: &[u64], theirs: &[u64]) -> Option<Spread> {
    debug_assert_eq!(
        ours.len(),
        theirs.len(),
        "the runs of a bench have its slices"
    );
    let n = ours.len();
    let factors = Factors::of(n)?;
    let differences: Vec<f64> = ours
        .iter()
        .zip(theirs)
        .map(|(&ours, &theirs)| theirs as f64 - ours as f64)
        .collect();
    let mean = differences.iter().sum::<f64>() / n as f64;
    let squares: f64 = differences.iter().map(|d| (d - mean).powi(2)).sum();
    Some(Spread {
        sd: (squares / (n - 1) as f64).sqrt().round() as u64,
        factors,
    })
}

#[cfg(test)]
mod tests {
    use std::f64::consts::TAU;

    use super::{super::median::middle, *};

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

    fn sd(ours: &[u64], theirs: &[u64]) -> Option<u64> {
        slice_spread(ours, theirs).map(|spread| spread.sd)
    }

    #[test]
    fn a_spread_is_the_standard_deviation_of_the_paired_differences() {
        // The difference was +1.0 us three times and +3.0 us once.
        assert_eq!(
            sd(&OURS, &theirs([1_000, 1_000, 1_000, 3_000])),
            Some(1_000)
        );
        // Both modes slower in the second and fourth slices by the same:
        // no spread.
        assert_eq!(
            sd(
                &[20_000, 24_000, 20_000, 24_000],
                &[21_000, 25_000, 21_000, 25_000]
            ),
            Some(0)
        );
        // +1 and +2 us: 0.71 us. One slice has no spread.
        assert_eq!(sd(&[20_000, 21_000], &[21_000, 23_000]), Some(707));
        assert_eq!(sd(&[20_000], &[21_000]), None);
    }

    #[test]
    fn each_slice_count_has_its_own_factors() {
        // Three slices, +1, +1 and +4 us: a spread of √3 us, 1732 ns; two
        // standard errors of a median of three are 2 × 0.670 × 1732 =
        // 2321 ns, and as the run's typical spread 2321 / 0.833 = 2786 ns.
        let (ours, theirs) = ([20_000; 3], [21_000, 21_000, 24_000]);
        let three = Pair {
            ours: &ours,
            theirs: &theirs,
            held: true,
        };
        assert_eq!(Noise::default().of(&three), 2_321);
        assert_eq!(Noise::pooled([three]), Noise { margin: 2_786 });
        // Eight slices, one 8 us off: a spread of √8 us, 2828 ns; two
        // standard errors of a median of eight, 2 × 0.410 × 2828 = 2319 ns.
        let (ours, mut theirs) = ([20_000; 8], [20_000; 8]);
        theirs[7] = 28_000;
        let eight = Pair {
            ours: &ours,
            theirs: &theirs,
            held: false,
        };
        assert_eq!(Noise::default().of(&eight), 2_319);
        // Past the table: no factors.
        let many = [20_000; MAX_SLICES + 1];
        assert_eq!(sd(&many, &many), None);
    }

    /// Standard normal values from a fixed seed (a 64-bit linear
    /// congruential generator and the Box-Muller transform): the simulation
    /// below draws the same values on every run.
    struct Normals {
        state: u64,
        spare: Option<f64>,
    }

    impl Normals {
        /// Uniform in (0, 1).
        fn uniform(&mut self) -> f64 {
            self.state = self
                .state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }

        fn next(&mut self) -> f64 {
            if let Some(value) = self.spare.take() {
                return value;
            }
            let radius = (-2.0 * self.uniform().ln()).sqrt();
            let angle = TAU * self.uniform();
            self.spare = Some(radius * angle.sin());
            radius * angle.cos()
        }
    }

    /// The mean of the middle one or two of `values`.
    fn middle_of(values: &mut [f64]) -> f64 {
        values.sort_by(f64::total_cmp);
        let middle = middle(values);
        middle.iter().sum::<f64>() / middle.len() as f64
    }

    #[test]
    fn the_factors_match_a_simulation_of_every_slice_count() {
        // 20,000 draws of n values estimate each factor to within 0.3 to
        // 0.8% (one standard error); with this seed every one lands within
        // 0.9% of the table.
        const DRAWS: usize = 20_000;
        const TOLERANCE: f64 = 0.02;
        let mut normals = Normals {
            state: 0x006e_706e_6f69_7365,
            spare: None,
        };
        for n in 2..=MAX_SLICES {
            let factors = Factors::of(n).expect("tabulated");
            let mut squared_medians = 0.0;
            let mut sample_sds = Vec::with_capacity(DRAWS);
            for _ in 0..DRAWS {
                let mut values: Vec<f64> = (0..n).map(|_| normals.next()).collect();
                let mean = values.iter().sum::<f64>() / n as f64;
                let squares: f64 = values.iter().map(|value| (value - mean).powi(2)).sum();
                sample_sds.push((squares / (n - 1) as f64).sqrt());
                squared_medians += middle_of(&mut values).powi(2);
            }
            // The median's true mean is 0.
            let median_error = (squared_medians / DRAWS as f64).sqrt();
            let typical_sd = middle_of(&mut sample_sds);
            for (simulated, tabulated) in [
                (median_error, factors.median_error_per_sd),
                (typical_sd, factors.typical_sample_sd_per_sd),
            ] {
                assert!(
                    (simulated / tabulated - 1.0).abs() < TOLERANCE,
                    "{n} slices: simulated {simulated:.4}, tabulated {tabulated}"
                );
            }
        }
    }

    #[test]
    fn the_factors_have_the_known_values_and_order() {
        // Two values: their median is their mean (error 1/√2), and their
        // sample deviation |a - b|/√2 is half-normal (median Φ⁻¹(3/4)).
        assert_eq!(
            Factors::of(2),
            Some(Factors {
                median_error_per_sd: 0.707,
                typical_sample_sd_per_sd: 0.674
            })
        );
        assert_eq!(Factors::of(1), None);
        assert_eq!(Factors::of(MAX_SLICES + 1), None);
        // More slices: a median closer to the truth (no worse for an even
        // count than for the odd one before it), a typical deviation closer
        // to the true one.
        for pair in FACTORS.windows(2) {
            let ((error, sd), (next_error, next_sd)) = (pair[0], pair[1]);
            assert!(next_error <= error && next_sd >= sd, "{pair:?}");
        }
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
