//! Setups measured in turn, round after round, and each setup's throughput
//! set against the first one's round by round. This VM's throughput swings
//! by ±15% from one run to the next and drifts over minutes: a setup
//! compared with runs minutes away would measure the drift.

use anyhow::Result;

/// Runs `measure(setup)` for each of `setups` setups, `rounds` times: in
/// order, then in reverse on the next round, and so on (ABBA), so that a
/// steady drift weighs on every setup alike. Returns each setup's runs, in
/// round order.
pub fn interleave<T>(
    rounds: usize,
    setups: usize,
    mut measure: impl FnMut(usize) -> Result<T>,
) -> Result<Vec<Vec<T>>> {
    let mut runs: Vec<Vec<T>> = (0..setups).map(|_| Vec::new()).collect();
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..setups).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for setup in order {
            runs[setup].push(measure(setup)?);
        }
    }
    Ok(runs)
}

/// A setup's throughput over its rounds, and against the first setup's.
#[derive(Clone, Debug, PartialEq)]
pub struct Throughput {
    /// Median requests per second.
    pub median: f64,
    /// The setup's rate over the first setup's in the same round: median,
    /// lowest and highest. `None` for the first setup itself.
    pub ratio: Option<Spread>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: Vec<f64>) -> Self {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Self {
            median: median(values),
            min,
            max,
        }
    }
}

/// Each setup's [`Throughput`] from its runs (requests per second, one per
/// round, as [`interleave`] returns them).
pub fn throughputs(runs: &[Vec<f64>]) -> Vec<Throughput> {
    let Some(baseline) = runs.first() else {
        return Vec::new();
    };
    runs.iter()
        .enumerate()
        .map(|(setup, rates)| Throughput {
            median: median(rates.clone()),
            ratio: (setup > 0).then(|| {
                Spread::of(
                    rates
                        .iter()
                        .zip(baseline)
                        .map(|(rate, base)| rate / base)
                        .collect(),
                )
            }),
        })
        .collect()
}

/// The middle value, or the mean of the middle two.
fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let len = values.len();
    (values[(len - 1) / 2] + values[len / 2]) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setups_take_turns_in_order_then_in_reverse() {
        let mut order = Vec::new();
        let runs = interleave(3, 3, |setup| {
            order.push(setup);
            Ok(order.len())
        })
        .unwrap();
        assert_eq!(order, [0, 1, 2, 2, 1, 0, 0, 1, 2]);
        assert_eq!(runs, [vec![1, 6, 7], vec![2, 5, 8], vec![3, 4, 9]]);
    }

    #[test]
    fn ratios_are_taken_round_by_round() {
        // The machine is twice as fast in round 2: each round's ratio is
        // still 0.9, which the medians of the rates alone would hide.
        let runs = [vec![100.0, 200.0, 100.0], vec![90.0, 180.0, 90.0]];
        let throughputs = throughputs(&runs);
        assert_eq!(throughputs[0].median, 100.0);
        assert_eq!(throughputs[0].ratio, None);
        let ratio = throughputs[1].ratio.unwrap();
        assert!((ratio.median - 0.9).abs() < 1e-9, "{ratio:?}");
        assert!((ratio.max - ratio.min).abs() < 1e-9, "{ratio:?}");
    }

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }
}
