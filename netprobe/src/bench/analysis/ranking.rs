//! Whether the study's order of the modes shows in the bench's medians:
//! host ≤ macvlan (standing in for ipvlan) ≤ flannel-hostgw ≤ aws-vpc <
//! flannel-vxlan, at equal rate and size, from the runs without probes.

use std::fmt::{self, Display, Formatter};

use super::{
    noise::{Noise, Pair},
    results::BenchResults,
};
use crate::{
    bench::STUDY_ORDER,
    lab::{Mode, WireSize},
    report::format_ns,
};

/// The load generator's histograms tell values apart to three significant
/// digits: medians closer than this share of their value are a tie.
const RESOLUTION: f64 = 1e-3;

/// One mode's median at a rate and size, from the run without probes, the
/// medians of that run's slices, and whether it held the rate.
#[derive(Clone, Debug, PartialEq)]
pub struct Median {
    pub p50: u64,
    pub slices: Vec<u64>,
    pub held: bool,
}

/// Two neighbours in the study's order closer than the run can tell apart,
/// or the wrong way round by more than that.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub faster: Mode,
    pub faster_p50: u64,
    pub slower: Mode,
    pub slower_p50: u64,
    /// How far apart the two could be by chance: the run's margin if both
    /// held their rate, or their own slices' spread or the histograms'
    /// resolution if larger.
    pub margin: u64,
}

/// The order's steps at one rate and size: those within the margin, and
/// those reversed beyond it (the strict last step: not ahead at all).
#[derive(Debug, Default, PartialEq)]
pub struct Verdict {
    pub ties: Vec<Step>,
    pub breaks: Vec<Step>,
}

/// Neighbours in the study's order whose medians are the other way round,
/// or tied, beyond what they may differ by chance (`noise`) and the
/// histograms' resolution.
pub fn verdict(medians: &[Median; STUDY_ORDER.len()], noise: Noise) -> Verdict {
    let last = STUDY_ORDER.len() - 2;
    let mut verdict = Verdict::default();
    for i in 0..=last {
        let (faster, slower) = (&medians[i], &medians[i + 1]);
        let resolution = (RESOLUTION * slower.p50 as f64) as u64;
        let margin = noise.of(&neighbours(faster, slower)).max(resolution);
        let step = Step {
            faster: STUDY_ORDER[i],
            faster_p50: faster.p50,
            slower: STUDY_ORDER[i + 1],
            slower_p50: slower.p50,
            margin,
        };
        let lead = slower.p50 as i64 - faster.p50 as i64;
        if i == last {
            // The strict step: the medians themselves must put the slower
            // mode behind; a lead within the margin is named.
            if lead <= resolution as i64 {
                verdict.breaks.push(step);
            } else if lead.unsigned_abs() <= margin {
                verdict.ties.push(step);
            }
        } else if lead.unsigned_abs() <= margin {
            verdict.ties.push(step);
        } else if lead < 0 {
            verdict.breaks.push(step);
        }
    }
    verdict
}

impl Display for Step {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} vs {} {} (±{})",
            self.faster,
            format_ns(self.faster_p50),
            self.slower,
            format_ns(self.slower_p50),
            format_ns(self.margin)
        )
    }
}

fn list(steps: &[Step]) -> String {
    steps
        .iter()
        .map(Step::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The five modes' medians at `rate` and `size`, if all ran there.
fn medians_at(
    results: &BenchResults,
    rate: f64,
    size: usize,
) -> Option<[Median; STUDY_ORDER.len()]> {
    let medians: Option<Vec<Median>> = STUDY_ORDER
        .iter()
        .map(|&mode| {
            let point = results.mode(mode)?.point(rate, size)?;
            Some(Median {
                p50: point.p50_ns(),
                slices: point.slice_p50_ns.clone(),
                held: point.held(),
            })
        })
        .collect();
    medians?.try_into().ok()
}

/// Two neighbours in the order, as the noise compares them.
fn neighbours<'a>(faster: &'a Median, slower: &'a Median) -> Pair<'a> {
    Pair {
        ours: &faster.slices,
        theirs: &slower.slices,
        held: faster.held && slower.held,
    }
}

/// The five modes' medians at every size and rate all of them ran at.
fn medians_everywhere(results: &BenchResults) -> Vec<(usize, f64, [Median; STUDY_ORDER.len()])> {
    let sizes = results.settings.sizes.iter();
    sizes
        .flat_map(|&size| {
            let rates = results.settings.rates.iter();
            rates.filter_map(move |&rate| Some((size, rate, medians_at(results, rate, size)?)))
        })
        .collect()
}

/// How far neighbours' medians may differ by chance, from every step of the
/// order in `rows`.
fn noise_of<'a>(rows: impl Iterator<Item = &'a [Median; STUDY_ORDER.len()]>) -> Noise {
    Noise::pooled(rows.flat_map(|medians| {
        medians
            .windows(2)
            .map(|pair| neighbours(&pair[0], &pair[1]))
    }))
}

/// The check at every rate and size all five modes ran at.
pub struct Ranking<'a>(pub &'a BenchResults);

impl Display for Ranking<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let results = self.0;
        let order: Vec<String> = STUDY_ORDER.iter().map(Mode::to_string).collect();
        let order = format!(
            "{} < {}",
            order[..order.len() - 1].join(" <= "),
            order[order.len() - 1]
        );
        let points = medians_everywhere(results);
        if points.is_empty() {
            return writeln!(
                f,
                "\nthe study's order in p50 without probes ({order}) is checked at a rate and \
                 size all five modes ran at; this run has none"
            );
        }
        let noise = noise_of(points.iter().map(|(_, _, medians)| medians));
        writeln!(
            f,
            "\nthe study's order in p50 without probes ({order}); neighbours closer than \
             they may differ by chance (±) tie, which passes <= but not a missing lead for <. \
             For modes that held their rate that is ±{} (two standard errors, from how much \
             every such pair's difference moved between the slices); a mode past its \
             capacity brings its pair's own spread:",
            format_ns(noise.margin)
        )?;
        let mut held = 0;
        for (size, rate, medians) in &points {
            let verdict = verdict(medians, noise);
            write!(f, "{} at {rate:.0}/s: ", WireSize(*size))?;
            if verdict.breaks.is_empty() {
                held += 1;
                write!(f, "holds")?;
                if !verdict.ties.is_empty() {
                    write!(f, "; ties: {}", list(&verdict.ties))?;
                }
                writeln!(f)?;
            } else {
                writeln!(f, "breaks: {}", list(&verdict.breaks))?;
            }
        }
        writeln!(
            f,
            "the order holds at {held} of {} rates and sizes",
            points.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{super::fixtures::three_modes, *};

    fn noise(margin: u64) -> Noise {
        Noise { margin }
    }

    /// Medians without slices: only the histograms' resolution ties them.
    fn medians(p50s: [u64; 5]) -> [Median; 5] {
        p50s.map(|p50| Median {
            p50,
            slices: Vec::new(),
            held: true,
        })
    }

    fn broken(verdict: &Verdict) -> Vec<(Mode, Mode)> {
        verdict
            .breaks
            .iter()
            .map(|step| (step.faster, step.slower))
            .collect()
    }

    #[test]
    fn an_ordered_row_has_no_breaks_and_ties_pass_but_the_last_step() {
        assert_eq!(
            verdict(&medians([39, 45, 51, 56, 87]), noise(0)),
            Verdict::default()
        );
        let tied = verdict(&medians([40, 40, 51, 51, 87]), noise(0));
        assert_eq!(broken(&tied), []);
        assert_eq!(tied.ties.len(), 2);
        assert_eq!(
            broken(&verdict(&medians([40, 40, 51, 56, 56]), noise(0))),
            [(Mode::AwsVpc, Mode::FlannelVxlan)]
        );
    }

    #[test]
    fn medians_the_histograms_cannot_tell_apart_are_a_tie() {
        assert_eq!(
            broken(&verdict(
                &medians([40_000, 40_030, 71_640, 71_600, 87_000]),
                noise(0)
            )),
            []
        );
        assert_eq!(
            broken(&verdict(
                &medians([40_000, 40_030, 51_000, 56_000, 56_040]),
                noise(0)
            )),
            [(Mode::AwsVpc, Mode::FlannelVxlan)]
        );
    }

    #[test]
    fn each_inversion_is_named() {
        assert_eq!(
            broken(&verdict(&medians([60, 59, 60, 92, 110]), noise(0))),
            [(Mode::Host, Mode::Macvlan)]
        );
        assert_eq!(
            broken(&verdict(&medians([40, 46, 51, 90, 88]), noise(0))),
            [(Mode::AwsVpc, Mode::FlannelVxlan)]
        );
    }

    #[test]
    fn a_reversal_within_the_slices_spread_is_a_tie_and_beyond_it_a_break() {
        let median = |p50, [first, second]: [u64; 2]| Median {
            p50,
            // Slices alternating between two values, as the turns do.
            slices: vec![first, second, first, second],
            held: true,
        };
        // macvlan's lead over host went from -1.0 to +0.2 us and back
        // between the slices (standard deviation 0.69 us): -0.4 us overall
        // is within two standard errors, ±0.76 us.
        let row = |macvlan| {
            [
                median(25_900, [26_000, 25_800]),
                macvlan,
                median(33_000, [33_000, 33_000]),
                median(36_000, [36_000, 36_000]),
                median(40_000, [40_000, 40_000]),
            ]
        };
        let tied = verdict(&row(median(25_500, [25_000, 26_000])), noise(0));
        assert_eq!(broken(&tied), []);
        assert_eq!(tied.ties[0].margin, 757);
        // The same medians, slices that agree: a break, unless medians of
        // modes that held their rate differ by as much by chance.
        let agreeing = row(median(25_500, [25_600, 25_400]));
        assert_eq!(
            broken(&verdict(&agreeing, noise(0))),
            [(Mode::Host, Mode::Macvlan)]
        );
        let within_chance = verdict(&agreeing, noise(450));
        assert_eq!(broken(&within_chance), []);
        assert_eq!(within_chance.ties[0].margin, 450);
        assert_eq!(
            broken(&verdict(&agreeing, noise(350))),
            [(Mode::Host, Mode::Macvlan)]
        );
        // A mode past its capacity has only its own spread.
        let mut saturated = agreeing.clone();
        saturated[1].held = false;
        assert_eq!(
            broken(&verdict(&saturated, noise(450))),
            [(Mode::Host, Mode::Macvlan)]
        );
        // The strict step holds on the medians' own lead, named when it is
        // within the spread, and breaks without one.
        let close = |vxlan| {
            [
                median(20_000, [20_000, 20_000]),
                median(21_000, [21_000, 21_000]),
                median(30_000, [30_000, 30_000]),
                median(36_000, [35_000, 37_000]),
                median(vxlan, [37_000, 36_000]),
            ]
        };
        let ahead = verdict(&close(36_500), noise(0));
        assert_eq!(broken(&ahead), []);
        assert_eq!(ahead.ties.len(), 1);
        assert_eq!(
            broken(&verdict(&close(36_000), noise(0))),
            [(Mode::AwsVpc, Mode::FlannelVxlan)]
        );
    }

    #[test]
    fn a_run_without_every_mode_says_the_order_went_unchecked() {
        // host, flannel-vxlan and macvlan only.
        let text = Ranking(&three_modes()).to_string();
        assert_eq!(
            text,
            "\nthe study's order in p50 without probes (host <= macvlan <= flannel-hostgw <= \
             aws-vpc < flannel-vxlan) is checked at a rate and size all five modes ran at; \
             this run has none\n"
        );
    }
}
