//! The page's axes: where a log axis of latency puts its labelled ticks,
//! how a tick of nanoseconds reads, and the ticks of a nines axis.

use super::percentiles::nines;

/// A log axis: its range, widened to ticks at both ends, its labelled
/// ticks and the light gridlines between them.
#[derive(Clone, Debug, PartialEq)]
pub struct LogAxis {
    pub low: f64,
    pub high: f64,
    pub ticks: Vec<f64>,
    pub gridlines: Vec<f64>,
}

/// Fewer labelled ticks than this and the next finer step is taken.
const MIN_TICKS: usize = 3;
/// More than this and only every other decade is labelled.
const MAX_TICKS: usize = 8;
/// Ticks that widen the range (in decades) by more than this factor are
/// too coarse for it.
const MAX_WIDENING: f64 = 1.6;

/// Multiples of a power of ten a tick may stand at, coarsest first.
const STEPS: [&[f64]; 3] = [
    &[1.0],
    &[1.0, 2.0, 5.0],
    &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
];

impl LogAxis {
    /// The axis over `low..=high` (both positive): ticks at powers of ten,
    /// else at 1, 2 and 5 times them, else at every multiple: the first
    /// that gives at least three ticks without widening the range to the
    /// ticks around its ends by more than [`MAX_WIDENING`].
    pub fn new(low: f64, high: f64) -> Self {
        let (low, high) = (low.max(f64::MIN_POSITIVE), high.max(low));
        let finest = STEPS[STEPS.len() - 1];
        let axis = STEPS
            .iter()
            .map(|steps| Self::with_steps(low, high, steps))
            .find(|axis| {
                let widening = (axis.high / axis.low).log10() / (high / low).log10();
                axis.ticks.len() >= MIN_TICKS && widening <= MAX_WIDENING
            })
            .unwrap_or_else(|| Self::with_steps(low, high, finest));
        if axis.ticks.len() <= MAX_TICKS {
            return axis;
        }
        // Decades only, every other one, the range still to a labelled tick.
        let mut ticks: Vec<f64> = axis.ticks.iter().copied().step_by(2).collect();
        let high = *axis.ticks.last().expect("more than MAX_TICKS");
        if ticks.last() != Some(&high) {
            ticks.push(high * 10.0);
        }
        Self {
            high: *ticks.last().expect("ticks"),
            ticks,
            ..axis
        }
    }

    fn with_steps(low: f64, high: f64, steps: &[f64]) -> Self {
        let values = |from: f64, to: f64| {
            let first = from.log10().floor() as i32 - 1;
            let last = to.log10().ceil() as i32 + 1;
            (first..=last).flat_map(move |exponent| {
                steps
                    .iter()
                    .map(move |step| round(step * 10f64.powi(exponent)))
            })
        };
        let below = values(low, high).filter(|&value| value <= low * (1.0 + 1e-9));
        let low = below.fold(f64::MIN_POSITIVE, f64::max);
        let high = values(low, high)
            .find(|&value| value >= high * (1.0 - 1e-9))
            .expect("a step above");
        let ticks: Vec<f64> = values(low, high)
            .filter(|&value| value >= low && value <= high)
            .collect();
        let gridlines = every_multiple(low, high)
            .filter(|value| !ticks.contains(value))
            .collect();
        Self {
            low,
            high,
            ticks,
            gridlines,
        }
    }
}

/// 1, 2, ..., 9 times every power of ten within `low..=high`.
fn every_multiple(low: f64, high: f64) -> impl Iterator<Item = f64> {
    let first = low.log10().floor() as i32;
    let last = high.log10().ceil() as i32;
    (first..=last)
        .flat_map(|exponent| (1..10).map(move |step| round(f64::from(step) * 10f64.powi(exponent))))
        .filter(move |&value| value >= low && value <= high)
}

/// Rounds away the float error of `step * 10^n`.
fn round(value: f64) -> f64 {
    let scale = 10f64.powi(12 - value.log10().floor() as i32);
    (value * scale).round() / scale
}

/// A latency in ns as an axis reads it: "500 ns", "20 µs", "1.5 ms".
pub fn time_label(ns: f64) -> String {
    let (value, unit) = match ns {
        ns if ns < 1e3 => (ns, "ns"),
        ns if ns < 1e6 => (ns / 1e3, "µs"),
        ns if ns < 1e9 => (ns / 1e6, "ms"),
        ns => (ns / 1e9, "s"),
    };
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {unit}")
}

/// A rate in requests/s as an axis reads it: "800/s", "12k/s".
pub fn rate_label(rate: f64) -> String {
    format!("{}/s", rate_number(rate))
}

/// A rate in requests/s: "800", "12k", "17.7k".
pub fn rate_number(rate: f64) -> String {
    if rate < 1e3 {
        return format!("{rate:.0}");
    }
    let thousands = format!("{:.1}", rate / 1e3);
    let thousands = thousands.strip_suffix(".0").unwrap_or(&thousands);
    format!("{thousands}k")
}

/// The ticks of a nines axis reaching `reach` nines: 0%, the median, then
/// 90%, 99%, ... as far as it reaches, each with its label.
pub fn nines_ticks(reach: f64) -> Vec<(f64, String)> {
    let start = [(0.0, "0%".to_owned()), (nines(50.0), "50%".to_owned())];
    let whole = (1..=reach.floor().max(0.0) as u32).map(|nine| {
        let percentile = 100.0 - 100.0 / 10f64.powi(nine as i32);
        (f64::from(nine), format!("{percentile}%"))
    });
    start.into_iter().chain(whole).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticks(low: f64, high: f64) -> (f64, f64, Vec<f64>) {
        let axis = LogAxis::new(low, high);
        (axis.low, axis.high, axis.ticks)
    }

    #[test]
    fn a_log_axis_over_decades_ticks_at_powers_of_ten() {
        // 18 us to 3 ms: 10 us, 100 us, 1 ms, 10 ms (3 decades for 2.2).
        assert_eq!(
            ticks(18_000.0, 3_000_000.0),
            (10_000.0, 1e7, vec![1e4, 1e5, 1e6, 1e7])
        );
    }

    #[test]
    fn a_log_axis_within_a_decade_or_two_ticks_at_one_two_and_five() {
        // 21 to 95 us: 20, 50, 100 us (10 us to 100 us would be two ticks).
        assert_eq!(
            ticks(21_000.0, 95_000.0),
            (20_000.0, 100_000.0, vec![20_000.0, 50_000.0, 100_000.0])
        );
        // 21 to 140 us: 20, 50, 100, 200 us (10 us to 1 ms would widen the
        // 0.8 decades to 2).
        assert_eq!(ticks(21_000.0, 140_000.0).2, [2e4, 5e4, 1e5, 2e5]);
    }

    #[test]
    fn a_narrow_log_axis_ticks_at_every_multiple() {
        // 21 to 38 us: 20, 30, 40 us.
        assert_eq!(
            ticks(21_000.0, 38_000.0),
            (20_000.0, 40_000.0, vec![20_000.0, 30_000.0, 40_000.0])
        );
        // A single value still gets the ticks around it.
        assert_eq!(ticks(25_000.0, 25_000.0).2, [20_000.0, 30_000.0]);
    }

    #[test]
    fn a_log_axis_over_many_decades_labels_every_other() {
        // 1 ns to 100 s: eleven decades, every other labelled.
        let (low, high, ticks) = ticks(1.0, 1e11);
        assert_eq!((low, high), (1.0, 1e12));
        assert_eq!(ticks, [1.0, 1e2, 1e4, 1e6, 1e8, 1e10, 1e12]);
    }

    #[test]
    fn gridlines_fall_between_the_ticks() {
        let axis = LogAxis::new(12_000.0, 900_000.0);
        assert_eq!(axis.ticks, [1e4, 1e5, 1e6]);
        assert!(axis.gridlines.contains(&20_000.0) && axis.gridlines.contains(&900_000.0));
        assert!(!axis.gridlines.contains(&100_000.0));
    }

    #[test]
    fn ticks_read_with_their_unit() {
        assert_eq!(time_label(500.0), "500 ns");
        assert_eq!(time_label(20_000.0), "20 µs");
        assert_eq!(time_label(1_500_000.0), "1.5 ms");
        assert_eq!(time_label(2e9), "2 s");
        assert_eq!(rate_label(800.0), "800/s");
        assert_eq!(rate_label(12_000.0), "12k/s");
        assert_eq!(rate_label(17_700.0), "17.7k/s");
    }

    #[test]
    fn a_nines_axis_labels_the_median_and_each_nine_it_reaches() {
        let labels: Vec<String> = nines_ticks(3.6)
            .into_iter()
            .map(|(_, label)| label)
            .collect();
        assert_eq!(labels, ["0%", "50%", "90%", "99%", "99.9%"]);
        // 50% is log10(2) of a nine.
        assert!((nines_ticks(1.0)[1].0 - std::f64::consts::LOG10_2).abs() < 1e-9);
    }
}
