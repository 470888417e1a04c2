//! The bench's text tables: latency in the study's shape (a row per mode, a
//! column per rate, p50/p99 in each cell) and the attribution of each mode's
//! extra latency over host to segment kinds.

use std::fmt::{self, Display, Formatter};

use super::{
    attribution::{
        ATTRIBUTED_RATES, Attribution, CLOSURE_TOLERANCE, Unattributed, attribute, unattributed,
    },
    ranking::Ranking,
    request::AROUND_MEDIAN,
    results::{BenchResults, RATE_TOLERANCE},
};
use crate::{
    bench::{GENERATOR_CHECK_CONNECTIONS, GENERATOR_CHECK_SHARE, WRK_CONNECTIONS, WRK_THREADS},
    lab::WireSize,
    path::SegmentKind,
    report::format_ns,
};

/// Everything `netprobe report` prints for one results directory.
pub struct Summary<'a>(pub &'a BenchResults);

impl Display for Summary<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        SettingsText(self.0).fmt(f)?;
        LatencyTables(self.0).fmt(f)?;
        Ranking(self.0).fmt(f)?;
        AttributionTables(self.0).fmt(f)
    }
}

/// What the bench ran with, and on what.
pub struct SettingsText<'a>(pub &'a BenchResults);

impl Display for SettingsText<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        settings(f, self.0)
    }
}

fn settings(f: &mut Formatter<'_>, results: &BenchResults) -> fmt::Result {
    let settings = &results.settings;
    writeln!(
        f,
        "netprobe {} on Linux {}, {} CPUs: {} s per run in {} slices after {} s warm-up each, {} connections, {} pacing{}",
        results.netprobe,
        results.kernel,
        results.cpus,
        settings.duration_s,
        settings.slices,
        settings.warmup_s,
        settings.connections,
        settings.pacing,
        if settings.tune { ", tuned" } else { "" }
    )?;
    writeln!(
        f,
        "probes following one packet in {}: about one request in {} joined whole",
        settings.follow_one_in,
        2 * settings.follow_one_in - 1
    )?;
    if !settings.cpu_idle.is_empty() {
        writeln!(f, "idle CPUs: {}", settings.cpu_idle)?;
    }
    if let Some(max) = &results.max_rate {
        let lost = 100.0 * (1.0 - max.rate / max.rate_without_probes.max(f64::MIN_POSITIVE));
        writeln!(
            f,
            "highest rate {} sustains ({}): {:.0}/s with probes, {:.0}/s without ({lost:.1}% lost to the probes)",
            max.mode,
            WireSize(max.size),
            max.rate,
            max.rate_without_probes
        )?;
        let requested = GENERATOR_CHECK_SHARE * max.wrk_rate;
        let held = (max.generator_at_80_percent - requested).abs() <= RATE_TOLERANCE * requested;
        let within = format!("held within {:.0}%", RATE_TOLERANCE * 100.0);
        writeln!(
            f,
            "wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} closed-loop maximum {:.0}/s; netprobe load \
             ({GENERATOR_CHECK_CONNECTIONS} connections) asked for {:.0}% ({requested:.0}/s) \
             achieved {:.0}/s ({})",
            max.wrk_rate,
            GENERATOR_CHECK_SHARE * 100.0,
            max.generator_at_80_percent,
            if held {
                within
            } else {
                format!("NOT {within}")
            }
        )?;
        write!(f, "probe cost per run:")?;
        for cost in &max.probe_cost {
            write!(f, " {} {:.0} ns", cost.program, cost.ns_per_run)?;
        }
        writeln!(f)?;
    }
    let max_rates: Vec<String> = results
        .modes
        .iter()
        .filter_map(|mode| Some(format!("{} {:.0}/s", mode.mode, mode.max_rate?)))
        .collect();
    if !max_rates.is_empty() {
        writeln!(
            f,
            "highest rate each mode sustains: {}",
            max_rates.join(", ")
        )?;
    }
    for step in &results.tuning {
        let state = if step.applied {
            "applied"
        } else {
            "not applicable"
        };
        writeln!(f, "tune {}: {state} ({})", step.setting, step.detail)?;
    }
    Ok(())
}

/// Rows: modes; columns: requested rates; cells: p50/p99 of the load
/// generator, and the achieved rate when it fell short.
pub struct LatencyTables<'a>(pub &'a BenchResults);

impl Display for LatencyTables<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let results = self.0;
        for &size in &results.settings.sizes {
            latency_table(f, results, size)?;
        }
        Ok(())
    }
}

fn latency_table(f: &mut Formatter<'_>, results: &BenchResults, size: usize) -> fmt::Result {
    writeln!(
        f,
        "\nlatency p50/p99 at each requested rate, {} responses, without probes \
         (p50: the median of the {} slices' medians)",
        WireSize(size),
        results.settings.slices
    )?;
    write!(f, "{:<16}", "mode")?;
    for rate in &results.settings.rates {
        write!(f, " {:>21}", format!("{rate:.0}/s"))?;
    }
    writeln!(f)?;
    for mode in &results.modes {
        write!(f, "{:<16}", mode.mode.to_string())?;
        if let Some(reason) = &mode.unavailable {
            writeln!(f, " {reason}")?;
            continue;
        }
        for &rate in &results.settings.rates {
            let cell = match mode.point(rate, size) {
                Some(point) => {
                    let mut cell = format!(
                        "{}/{}",
                        format_ns(point.p50_ns()),
                        format_ns(point.load.latency.p99_ns)
                    );
                    if !point.held() {
                        cell.push_str(&format!(" ({:.0}/s)", point.load.achieved_rate));
                    }
                    cell
                }
                None => "-".to_owned(),
            };
            write!(f, " {cell:>21}")?;
        }
        writeln!(f)?;
    }
    Ok(())
}

/// The kinds that differ between modes; `nic` and `qdisc` are the same
/// device in every mode and are left to the sum.
pub const ATTRIBUTED: [SegmentKind; 9] = [
    SegmentKind::Bridge,
    SegmentKind::Veth,
    SegmentKind::Macvlan,
    SegmentKind::Routing,
    SegmentKind::Link,
    SegmentKind::VxlanEncap,
    SegmentKind::VxlanDecap,
    SegmentKind::Stack,
    SegmentKind::Application,
];

/// Each mode's extra latency over host, split by segment kind, at the three
/// lowest rates of each size (unloaded, and the study's 30 and 50%).
pub struct AttributionTables<'a>(pub &'a BenchResults);

impl Display for AttributionTables<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let results = self.0;
        let attributions = attribute(results);
        for &size in &results.settings.sizes {
            for &rate in results.settings.rates.iter().take(ATTRIBUTED_RATES) {
                let rows: Vec<&Attribution> = attributions
                    .iter()
                    .filter(|row| row.is_at(rate, size))
                    .collect();
                if !rows.is_empty() {
                    attribution_table(f, &rows, rate, size)?;
                }
            }
        }
        if !attributions.is_empty() {
            let count = |test: fn(&Attribution) -> bool| {
                attributions.iter().filter(|row| test(row)).count()
            };
            writeln!(
                f,
                "\nthe parts close the p50 difference (within {:.0}%, or how far apart the \
                 averaged requests' totals lie) at {} of {} modes, rates and sizes; at {} more they miss by \
                 less than the p50 difference may be off by chance (the margin)",
                CLOSURE_TOLERANCE * 100.0,
                count(Attribution::closes),
                attributions.len(),
                count(Attribution::within_noise)
            )?;
        }
        let unattributed: Vec<String> = unattributed(results)
            .iter()
            .map(Unattributed::to_string)
            .collect();
        if !unattributed.is_empty() {
            writeln!(
                f,
                "\nnot split by segment (no request followed whole in the middle slices of its \
                 run or of host's): {}",
                unattributed.join(", ")
            )?;
        }
        Ok(())
    }
}

fn attribution_table(
    f: &mut Formatter<'_>,
    rows: &[&Attribution],
    rate: f64,
    size: usize,
) -> fmt::Result {
    writeln!(
        f,
        "\nextra latency over host at {rate:.0}/s, {}, with probes: the load generator's median \
         (and mean), and the median request split by segment kind over both nodes (requests \
         followed whole, those within {:.0}% of the median averaged); \"closes\": parts / p50, \
         \"margin\": how far apart they may be by chance (two standard errors, from how the \
         differences of every mode that held its rate moved between the slices; a mode past its \
         capacity has its own) or how far apart the averaged requests' totals lie",
        WireSize(size),
        AROUND_MEDIAN / 2.0 * 100.0
    )?;
    write!(
        f,
        "{:<16} {:>10} {:>10} {:>10} {:>7} {:>8} {:>11}",
        "mode", "p50", "mean", "parts", "closes", "margin", "client wait"
    )?;
    for kind in ATTRIBUTED {
        write!(f, " {:>11}", kind.describe())?;
    }
    writeln!(f)?;
    for row in rows {
        let closure = row.closure_text();
        write!(
            f,
            "{:<16} {:>10} {:>10} {:>10} {closure:>7} {:>8} {:>11}",
            row.mode.to_string(),
            signed_ns(row.median_ns),
            signed_ns(row.mean_ns),
            signed_ns(row.parts_ns),
            format_ns(row.margin_ns().unsigned_abs()),
            signed_ns(row.client_wait_ns)
        )?;
        for kind in ATTRIBUTED {
            let delta = row.by_kind.get(&kind).copied().unwrap_or(0);
            write!(f, " {:>11}", signed_ns(delta))?;
        }
        writeln!(f)?;
    }
    Ok(())
}

pub fn signed_ns(ns: i64) -> String {
    let sign = if ns < 0 { "-" } else { "+" };
    format!("{sign}{}", format_ns(ns.unsigned_abs()))
}

#[cfg(test)]
mod tests {
    use super::{super::fixtures::three_modes, *};

    #[test]
    fn the_latency_table_has_a_row_per_mode_and_the_rate_a_mode_fell_short_to() {
        assert_eq!(
            LatencyTables(&three_modes()).to_string(),
            "\nlatency p50/p99 at each requested rate, 352 B responses, without probes \
             (p50: the median of the 4 slices' medians)\n\
             mode                            1000/s\n\
             host                     20.0us/50.0us\n\
             flannel-vxlan            30.0us/50.0us\n\
             macvlan          21.0us/50.0us (900/s)\n"
        );
    }

    #[test]
    fn the_attribution_table_shows_each_part_and_names_what_it_could_not_split() {
        let text = AttributionTables(&three_modes()).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[2],
            "mode                    p50       mean      parts  closes   margin client wait      \
             bridge        veth     macvlan     routing   node link vxlan encap vxlan decap       \
             stack application"
        );
        assert_eq!(
            lines[3],
            "flannel-vxlan       +10.0us    +15.0us     +7.6us     76%    800ns      +100ns        \
             +0ns        +0ns        +0ns        +0ns      +500ns      +3.0us      +2.0us      \
             +2.0us        +0ns"
        );
        assert!(
            lines[5].ends_with("at 1 of 1 modes, rates and sizes; at 0 more they miss by less than the p50 difference may be off by chance (the margin)"),
            "{text}"
        );
        assert_eq!(
            lines[7],
            "not split by segment (no request followed whole in the middle slices of its run or \
             of host's): macvlan 352 B at 1000/s"
        );
    }
}
