//! Whether the study's order of the modes shows in the bench's medians:
//! host ≤ macvlan (standing in for ipvlan) ≤ flannel-hostgw ≤ aws-vpc <
//! flannel-vxlan, at equal rate and size, from the runs without probes.

use std::fmt::{self, Display, Formatter};

use super::results::BenchResults;
use crate::{lab::Mode, report::format_ns};

/// The study's order, fastest first; the last step is strict.
pub const STUDY_ORDER: [Mode; 5] = [
    Mode::Host,
    Mode::Macvlan,
    Mode::FlannelHostgw,
    Mode::AwsVpc,
    Mode::FlannelVxlan,
];

/// The load generator's histograms tell values apart to three significant
/// digits: medians closer than this share of their value are a tie.
const RESOLUTION: f64 = 1e-3;

/// Neighbours in the study's order whose medians are the other way round:
/// (the mode that should be faster, its p50, the next mode, its p50).
pub fn breaks(p50s: &[u64; STUDY_ORDER.len()]) -> Vec<(Mode, u64, Mode, u64)> {
    let last = STUDY_ORDER.len() - 2;
    (0..=last)
        .filter(|&i| {
            let (faster, slower) = (p50s[i], p50s[i + 1]);
            let tie = faster.abs_diff(slower) as f64 <= RESOLUTION * slower as f64;
            if i == last {
                faster >= slower || tie
            } else {
                faster > slower && !tie
            }
        })
        .map(|i| (STUDY_ORDER[i], p50s[i], STUDY_ORDER[i + 1], p50s[i + 1]))
        .collect()
}

/// The check at every rate and size all five modes ran at.
pub struct Ranking<'a>(pub &'a BenchResults);

impl Display for Ranking<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let results = self.0;
        let order: Vec<String> = STUDY_ORDER.iter().map(Mode::to_string).collect();
        writeln!(
            f,
            "\nthe study's order in p50 without probes ({} < {}):",
            order[..order.len() - 1].join(" <= "),
            order[order.len() - 1]
        )?;
        for &size in &results.settings.sizes {
            for &rate in &results.settings.rates {
                let p50s: Option<Vec<u64>> = STUDY_ORDER
                    .iter()
                    .map(|&mode| Some(results.mode(mode)?.run(rate, size)?.load.latency.p50_ns))
                    .collect();
                let Some(Ok(p50s)) = p50s.map(<[u64; STUDY_ORDER.len()]>::try_from) else {
                    continue;
                };
                let broken = breaks(&p50s);
                write!(f, "{size} B at {rate:.0}/s: ")?;
                if broken.is_empty() {
                    writeln!(f, "holds")?;
                    continue;
                }
                let why: Vec<String> = broken
                    .iter()
                    .map(|(faster, a, slower, b)| {
                        format!("{faster} {} vs {slower} {}", format_ns(*a), format_ns(*b))
                    })
                    .collect();
                writeln!(f, "breaks: {}", why.join(", "))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ordered_row_has_no_breaks_and_ties_pass_but_the_last_step() {
        assert_eq!(breaks(&[39, 45, 51, 56, 87]), []);
        assert_eq!(breaks(&[40, 40, 51, 51, 87]), []);
        assert_eq!(
            breaks(&[40, 40, 51, 56, 56]),
            [(Mode::AwsVpc, 56, Mode::FlannelVxlan, 56)]
        );
    }

    #[test]
    fn medians_the_histograms_cannot_tell_apart_are_a_tie() {
        assert_eq!(breaks(&[40_000, 40_030, 71_640, 71_600, 87_000]), []);
        assert_eq!(
            breaks(&[40_000, 40_030, 51_000, 56_000, 56_040]),
            [(Mode::AwsVpc, 56_000, Mode::FlannelVxlan, 56_040)]
        );
    }

    #[test]
    fn each_inversion_is_named() {
        assert_eq!(
            breaks(&[60, 59, 60, 92, 110]),
            [(Mode::Host, 60, Mode::Macvlan, 59)]
        );
        assert_eq!(
            breaks(&[40, 46, 51, 90, 88]),
            [(Mode::AwsVpc, 90, Mode::FlannelVxlan, 88)]
        );
    }
}
