//! How a run's median moved from one results directory to another, and
//! whether by more than chance: further than either run's slices' medians
//! spread.

use std::fmt::{self, Display, Formatter};

use super::{
    render::signed_ns,
    results::{BenchResults, PointResults},
};
use crate::{
    lab::{Mode, WireSize},
    report::format_ns,
};

/// `--compare`: two runs' medians side by side, as text.
pub fn changes_text(base: &BenchResults, other: &BenchResults) -> String {
    let mut text = String::from("p50 of the load generator: base -> other (change)\n");
    for (mode, point, change) in changes(base, other) {
        text.push_str(&format!(
            "{:<16} {:>8.0}/s {:>7}  {:>9} -> {:>9} {change}{}\n",
            mode.to_string(),
            point.rate,
            WireSize(point.size),
            format_ns(change.before_ns),
            format_ns(change.after_ns),
            match change.class() {
                Some(class) => format!(", {class}"),
                None => String::new(),
            }
        ));
    }
    text
}

/// Every mode, rate and size both runs have: `base`'s point and the change
/// to `other`'s, in `base`'s order.
pub fn changes<'a>(
    base: &'a BenchResults,
    other: &'a BenchResults,
) -> impl Iterator<Item = (Mode, &'a PointResults, Change)> {
    base.modes.iter().flat_map(move |mode| {
        let theirs = other.mode(mode.mode);
        mode.points.iter().filter_map(move |point| {
            let their_point = theirs?.point(point.rate, point.size)?;
            Some((mode.mode, point, Change::between(point, their_point)))
        })
    })
}

/// One mode's p50 at a rate and size in two runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub before_ns: u64,
    pub after_ns: u64,
    /// The wider spread (slowest less fastest slice median) of the two.
    pub margin_ns: u64,
}

impl Change {
    pub fn between(before: &PointResults, after: &PointResults) -> Self {
        let spread = |point: &PointResults| {
            let slices = &point.slice_p50_ns;
            let (low, high) = slices.iter().fold((u64::MAX, 0), |(low, high), &ns| {
                (low.min(ns), high.max(ns))
            });
            high.saturating_sub(low)
        };
        Self {
            before_ns: before.p50_ns(),
            after_ns: after.p50_ns(),
            margin_ns: spread(before).max(spread(after)),
        }
    }

    pub fn delta_ns(&self) -> i64 {
        self.after_ns as i64 - self.before_ns as i64
    }

    /// "slower" or "faster" beyond the margin; `None` within it.
    pub fn class(&self) -> Option<&'static str> {
        let delta = self.delta_ns();
        (delta.unsigned_abs() > self.margin_ns).then_some(if delta > 0 {
            "slower"
        } else {
            "faster"
        })
    }
}

impl Display for Change {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let share = 100.0 * self.delta_ns() as f64 / self.before_ns.max(1) as f64;
        write!(f, "{} ({share:+.1}%)", signed_ns(self.delta_ns()))
    }
}

#[cfg(test)]
mod tests {
    use super::{super::fixtures::three_modes, *};

    #[test]
    fn a_change_counts_beyond_the_wider_spread_of_the_two_runs_slices() {
        let results = three_modes();
        let before = results.modes[1].points[0].clone();
        let mut after = before.clone();
        after.slice_p50_ns = vec![31_000, 33_000, 31_500, 32_000];
        // Medians 30 and 31.75 us; the second run's slices spread 2 us.
        let change = Change::between(&before, &after);
        assert_eq!(
            change,
            Change {
                before_ns: 30_000,
                after_ns: 31_750,
                margin_ns: 2_000
            }
        );
        assert_eq!(change.class(), None);
        assert_eq!(change.to_string(), "+1.8us (+5.8%)");
        after.slice_p50_ns = vec![27_000; 4];
        let change = Change::between(&before, &after);
        assert_eq!(
            (change.class(), change.to_string().as_str()),
            (Some("faster"), "-3.0us (-10.0%)")
        );
    }
}
