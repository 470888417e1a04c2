//! What the page says first, per response size: at one rate, how much the
//! slowest mode adds to host's median and in which segments (from the
//! attribution's median request), and how far every mode lies from host
//! without the probes.

use super::{
    attribution::{ATTRIBUTED_RATES, Attribution, attribute},
    axis::rate_number,
    results::BenchResults,
};
use crate::lab::{Mode, WireSize};

/// A part smaller than this share of the difference is left out of the
/// headline.
const SMALL_PART: f64 = 0.05;

/// The rate the headline and the percentile plot of `size` are at: the
/// highest of the attributed rates at which every mode held its rate with the
/// probes and without, else the lowest.
pub fn focus_rate(results: &BenchResults, size: usize) -> Option<f64> {
    let rates = &results.settings.rates;
    let held_by_all = |rate: f64| {
        results
            .modes
            .iter()
            .filter(|mode| mode.unavailable.is_none())
            .all(|mode| {
                mode.point(rate, size)
                    .is_some_and(|point| point.held() && point.probed_held())
            })
    };
    rates
        .iter()
        .take(ATTRIBUTED_RATES)
        .copied()
        .rfind(|&rate| held_by_all(rate))
        .or_else(|| rates.first().copied())
}

/// One or two sentences on `size`, or `None` without host's runs.
pub fn headline(results: &BenchResults, size: usize) -> Option<String> {
    let rate = focus_rate(results, size)?;
    let host = results.mode(Mode::Host)?.point(rate, size)?;
    let mut text = format!("At {} ({} responses)", rate_text(rate), WireSize(size));
    let attributions = attribute(results);
    let slowest = attributions
        .iter()
        .filter(|row| row.is_at(rate, size))
        .max_by_key(|row| row.median_ns);
    if let Some(row) = slowest {
        let verb = if row.median_ns >= 0 { "adds" } else { "takes" };
        text.push_str(&format!(
            ", {} {verb} {} {} host's p50 of {} with the probes attached: {}.",
            row.mode,
            us(row.median_ns.unsigned_abs()),
            if row.median_ns >= 0 { "to" } else { "off" },
            us(host.probed_p50_ns()),
            parts(row)
        ));
    } else {
        text.push('.');
    }
    let mut others: Vec<(Mode, i64)> = results
        .modes
        .iter()
        .filter(|mode| mode.mode != Mode::Host)
        .filter_map(|mode| {
            let point = mode.point(rate, size)?;
            Some((mode.mode, point.p50_ns() as i64 - host.p50_ns() as i64))
        })
        .collect();
    others.sort_by_key(|&(_, delta)| std::cmp::Reverse(delta));
    if !others.is_empty() {
        let list: Vec<String> = others
            .iter()
            .map(|(mode, delta)| format!("{mode} {}", signed_us(*delta)))
            .collect();
        text.push_str(&format!(
            " Without probes, over host's {}: {}.",
            us(host.p50_ns()),
            list.join(", ")
        ));
    }
    Some(text)
}

/// The parts of `row` worth naming, largest first, in µs.
fn parts(row: &Attribution) -> String {
    let floor = SMALL_PART * row.median_ns.unsigned_abs() as f64;
    let mut parts: Vec<(String, i64)> = row
        .by_kind
        .iter()
        .map(|(kind, &ns)| (kind.describe().to_owned(), ns))
        .chain([("client wait".to_owned(), row.client_wait_ns)])
        .filter(|(_, ns)| ns.unsigned_abs() as f64 >= floor && *ns != 0)
        .collect();
    parts.sort_by_key(|&(_, ns)| std::cmp::Reverse(ns));
    if parts.is_empty() {
        return "no segment stands out".to_owned();
    }
    let list: Vec<String> = parts
        .iter()
        .map(|(kind, ns)| format!("{kind} {:.1}", *ns as f64 / 1e3))
        .collect();
    format!("{} µs", list.join(", "))
}

/// "17.7k req/s".
fn rate_text(rate: f64) -> String {
    format!("{} req/s", rate_number(rate))
}

fn us(ns: u64) -> String {
    format!("{:.1} µs", ns as f64 / 1e3)
}

fn signed_us(ns: i64) -> String {
    format!("{:+.1} µs", ns as f64 / 1e3)
}

#[cfg(test)]
mod tests {
    use super::{super::fixtures::three_modes, *};

    #[test]
    fn the_headline_names_the_slowest_modes_parts_and_every_modes_distance() {
        let results = three_modes();
        // macvlan fell short of 1000/s: no rate all modes held; the lowest.
        assert_eq!(focus_rate(&results, 350), Some(1000.0));
        assert_eq!(
            headline(&results, 350).unwrap(),
            "At 1k req/s (352 B responses), flannel-vxlan adds 10.0 µs to host's p50 of \
             20.5 µs with the probes attached: vxlan encap 3.0, vxlan decap 2.0, stack 2.0, \
             node link 0.5 µs. Without probes, over host's 20.0 µs: flannel-vxlan +10.0 µs, \
             macvlan +1.0 µs."
        );
        assert_eq!(headline(&results, 4096), None);
    }
}
