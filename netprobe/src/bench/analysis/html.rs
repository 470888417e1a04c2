//! `report.html`: one self-contained page (inline SVG and CSS, nothing
//! fetched) with latency against rate per mode, and per mode the median
//! time of each segment kind, stacked.

use std::fmt::{self, Display, Formatter};

use super::{render::Summary, results::BenchResults};
use crate::{lab::WireSize, path::SegmentKind, report::format_ns};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 320.0;
const MARGIN: f64 = 60.0;
const COLORS: [&str; 10] = [
    "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",
    "#1f78b4", "#b15928",
];

pub struct Page<'a>(pub &'a BenchResults);

impl Display for Page<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let results = self.0;
        writeln!(
            f,
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>netprobe lab bench</title>\n\
             <style>body{{font-family:sans-serif;margin:2em;max-width:80em}}\
             pre{{background:#f6f6f6;padding:1em;overflow-x:auto}}\
             svg{{background:#fff;border:1px solid #ddd;margin:0.5em 0}}\
             text{{font-size:12px}}</style></head><body>\n\
             <h1>netprobe lab bench</h1>"
        )?;
        for &size in &results.settings.sizes {
            writeln!(f, "<h2>{} responses</h2>", WireSize(size))?;
            writeln!(f, "<h3>Latency against rate (p50 solid, p99 dashed)</h3>")?;
            latency_chart(f, results, size)?;
            if let Some(&rate) = results.settings.rates.first() {
                writeln!(
                    f,
                    "<h3>Mean time per segment kind at {rate:.0}/s (both nodes, both directions)</h3>"
                )?;
                segment_chart(f, results, size, rate)?;
            }
        }
        writeln!(
            f,
            "<h2>Tables</h2><pre>{}</pre>",
            escape(&Summary(results).to_string())
        )?;
        writeln!(f, "</body></html>")
    }
}

/// A line per mode: p50 (solid) and p99 (dashed) of the load generator.
fn latency_chart(f: &mut Formatter<'_>, results: &BenchResults, size: usize) -> fmt::Result {
    let rates = &results.settings.rates;
    let points = |mode: &super::results::ModeResults| -> Vec<(f64, u64, u64)> {
        mode.points
            .iter()
            .filter(|point| point.size == size)
            .map(|point| (point.rate, point.p50_ns(), point.load.latency.p99_ns))
            .collect()
    };
    let max_rate = rates.iter().copied().fold(1.0, f64::max);
    let max_ns = results
        .modes
        .iter()
        .flat_map(|mode| points(mode).into_iter().map(|(_, _, p99)| p99))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let x = |rate: f64| MARGIN + (WIDTH - 2.0 * MARGIN) * rate / max_rate;
    let y = |ns: f64| HEIGHT - MARGIN + -(HEIGHT - 2.0 * MARGIN) * ns / max_ns;
    open_svg(f)?;
    axes(
        f,
        &format!("requested rate (max {max_rate:.0}/s)"),
        &format!("latency (max {})", format_ns(max_ns as u64)),
    )?;
    for (index, mode) in results.modes.iter().enumerate() {
        let points = points(mode);
        if points.is_empty() {
            continue;
        }
        let color = COLORS[index % COLORS.len()];
        for (dash, pick) in [("", 1usize), ("stroke-dasharray=\"4 3\"", 2)] {
            let path: String = points
                .iter()
                .map(|point| {
                    let ns = if pick == 1 { point.1 } else { point.2 };
                    format!("{:.1},{:.1} ", x(point.0), y(ns as f64))
                })
                .collect();
            writeln!(
                f,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" {dash} points=\"{path}\"/>"
            )?;
        }
        legend(f, index, color, &mode.mode.to_string())?;
    }
    writeln!(f, "</svg>")
}

/// A bar per mode that followed requests whole, the median request's time
/// in each segment kind stacked.
fn segment_chart(
    f: &mut Formatter<'_>,
    results: &BenchResults,
    size: usize,
    rate: f64,
) -> fmt::Result {
    let bars: Vec<(String, Vec<(SegmentKind, u64)>)> = results
        .modes
        .iter()
        .filter_map(|mode| {
            let request = mode.point(rate, size)?.median_request.as_ref()?;
            Some((
                mode.mode.to_string(),
                request.by_kind.clone().into_iter().collect(),
            ))
        })
        .collect();
    let max_ns = bars
        .iter()
        .map(|(_, kinds)| kinds.iter().map(|(_, ns)| ns).sum::<u64>())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let bar_height = 22.0;
    let height = MARGIN + bars.len() as f64 * (bar_height + 8.0) + 40.0;
    writeln!(
        f,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height:.0}\">"
    )?;
    let scale = (WIDTH - 2.0 * MARGIN - 60.0) / max_ns;
    for (row, (mode, kinds)) in bars.iter().enumerate() {
        let top = 20.0 + row as f64 * (bar_height + 8.0);
        writeln!(
            f,
            "<text x=\"4\" y=\"{:.0}\">{}</text>",
            top + 15.0,
            escape(mode)
        )?;
        let mut left = MARGIN + 50.0;
        for (kind, ns) in kinds {
            let width = *ns as f64 * scale;
            let color = COLORS[kind_index(*kind) % COLORS.len()];
            writeln!(
                f,
                "<rect x=\"{left:.1}\" y=\"{top:.1}\" width=\"{width:.1}\" height=\"{bar_height}\" fill=\"{color}\"><title>{} {}</title></rect>",
                kind.describe(),
                format_ns(*ns)
            )?;
            left += width;
        }
        let total: u64 = kinds.iter().map(|(_, ns)| ns).sum();
        writeln!(
            f,
            "<text x=\"{:.1}\" y=\"{:.0}\">{}</text>",
            left + 4.0,
            top + 15.0,
            format_ns(total)
        )?;
    }
    let mut legend_x = 4.0;
    let legend_y = height - 12.0;
    for kind in SegmentKind::ALL {
        let color = COLORS[kind_index(kind) % COLORS.len()];
        writeln!(
            f,
            "<rect x=\"{legend_x:.0}\" y=\"{:.0}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{:.0}\" y=\"{legend_y:.0}\">{}</text>",
            legend_y - 9.0,
            legend_x + 13.0,
            kind.describe()
        )?;
        legend_x += 78.0;
    }
    writeln!(f, "</svg>")
}

fn kind_index(kind: SegmentKind) -> usize {
    SegmentKind::ALL
        .iter()
        .position(|each| *each == kind)
        .unwrap_or(0)
}

fn open_svg(f: &mut Formatter<'_>) -> fmt::Result {
    writeln!(
        f,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\">"
    )
}

fn axes(f: &mut Formatter<'_>, x_label: &str, y_label: &str) -> fmt::Result {
    let (left, bottom, right, top) = (MARGIN, HEIGHT - MARGIN, WIDTH - MARGIN, MARGIN);
    writeln!(
        f,
        "<line x1=\"{left}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\" stroke=\"#000\"/>\
         <line x1=\"{left}\" y1=\"{bottom}\" x2=\"{left}\" y2=\"{top}\" stroke=\"#000\"/>\
         <text x=\"{left}\" y=\"{:.0}\">{}</text><text x=\"4\" y=\"{:.0}\">{}</text>",
        bottom + 30.0,
        escape(x_label),
        top - 10.0,
        escape(y_label)
    )
}

fn legend(f: &mut Formatter<'_>, index: usize, color: &str, name: &str) -> fmt::Result {
    let x = WIDTH - MARGIN + 4.0 - 120.0 * (1 - index % 2) as f64;
    let y = MARGIN + 14.0 * (index / 2) as f64;
    writeln!(
        f,
        "<rect x=\"{x:.0}\" y=\"{:.0}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{:.0}\" y=\"{y:.0}\">{}</text>",
        y - 9.0,
        x + 13.0,
        escape(name)
    )
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            '"' => escaped.push_str("&quot;"),
            c => escaped.push(c),
        }
    }
    escaped
}
