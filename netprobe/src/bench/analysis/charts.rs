//! The page's charts, drawn as SVG by plotters: latency against rate,
//! latency by percentile, the median request's time per segment kind, and
//! the waterfall of a followed request. Legends are the page's (HTML), so
//! that they wrap instead of running out of a chart.

use std::ops::Range;

use plotters::{
    coord::{
        Shift,
        combinators::{LogCoord, WithKeyPoints},
        ranged1d::{DefaultFormatting, KeyPointHint, ValueFormatter},
    },
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use super::{
    axis::{LogAxis, nines_ticks, rate_label, time_label},
    headline::focus_rate,
    palette::{kind_color, mode_color},
    percentiles::Percentile,
    request::RequestExemplar,
    results::{BenchResults, ModeResults, PointResults},
};
use crate::{lab::Mode, path::SegmentKind, report::rank_name};

/// Drawing into a string fails only on bad chart settings.
pub type Drawn = Result<(), DrawingAreaErrorKind<std::io::Error>>;

const FONT: &str = "sans-serif";
/// plotters draws text at 1/1.24 of the size asked for: 15 is 12 pixels.
const LABEL_SIZE: u32 = 15;
const GRID: RGBColor = RGBColor(0xdd, 0xdd, 0xdd);
const LIGHT_GRID: RGBColor = RGBColor(0xf0, 0xf0, 0xf0);
const TEXT: RGBColor = RGBColor(0x33, 0x33, 0x33);

/// Draws `draw` on an SVG of `size`; the SVG's text.
pub fn svg(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Drawn,
) -> Result<String, DrawingAreaErrorKind<std::io::Error>> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    Ok(text)
}

fn label_font() -> TextStyle<'static> {
    (FONT, LABEL_SIZE).into_font().color(&TEXT)
}

/// The latency of a run: its p50 (the median of its slices') or its p99.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Statistic {
    P50,
    P99,
}

impl Statistic {
    pub fn of(self, point: &PointResults) -> u64 {
        match self {
            Statistic::P50 => point.p50_ns(),
            Statistic::P99 => point.load.latency.p99_ns,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Statistic::P50 => "p50",
            Statistic::P99 => "p99",
        }
    }
}

/// Every mode's runs at `size`, by rate.
fn runs_at(mode: &ModeResults, size: usize) -> Vec<&PointResults> {
    let mut runs: Vec<&PointResults> = mode
        .points
        .iter()
        .filter(|point| point.size == size)
        .collect();
    runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    runs
}

/// The axes of one size's charts, spanning every run a page shows (one in
/// report.html, two in compare.html) so that charts side by side read
/// alike: latency against rate's x and y, and latency by percentile's
/// rate, nines and latency.
#[derive(Clone, Debug, PartialEq)]
pub struct SizeAxes {
    size: usize,
    /// The highest requested rate.
    pub max_rate: f64,
    /// Latency against rate's: from the lowest p50 to the highest p99.
    pub latency: LogAxis,
    /// The focus rate every run has points at, if any.
    shared_rate: Option<f64>,
    /// Latency by percentile's: the nines it reaches, its latency axis.
    pub reach: f64,
    pub percentile_latency: LogAxis,
}

impl SizeAxes {
    /// The axes of `size` over `runs`.
    pub fn over(runs: &[&BenchResults], size: usize) -> Self {
        let shared_rate = runs
            .iter()
            .filter_map(|results| focus_rate(results, size))
            .find(|&rate| runs.iter().all(|results| ran_at(results, rate, size)));
        let max_rate = runs
            .iter()
            .flat_map(|results| results.settings.rates.iter().copied())
            .fold(1.0, f64::max);
        let (low, high) = runs
            .iter()
            .flat_map(|results| &results.modes)
            .flat_map(|mode| runs_at(mode, size))
            .flat_map(|point| [Statistic::P50.of(point), Statistic::P99.of(point)])
            .fold((u64::MAX, 0), |(low, high), ns| (low.min(ns), high.max(ns)));
        let mut axes = Self {
            size,
            max_rate,
            latency: LogAxis::new(low.max(1) as f64, high.max(1) as f64),
            shared_rate,
            reach: 1.0,
            percentile_latency: LogAxis::new(1.0, 1.0),
        };
        let points: Vec<(f64, f64)> = runs
            .iter()
            .filter_map(|results| Some(percentile_lines(results, size, axes.rate(results)?)))
            .flatten()
            .flat_map(|(_, points)| points)
            .collect();
        axes.reach = points.iter().map(|&(nines, _)| nines).fold(1.0, f64::max);
        let low = points.iter().map(|&(_, ns)| ns).fold(f64::MAX, f64::min);
        let high = points.iter().map(|&(_, ns)| ns).fold(1.0, f64::max);
        axes.percentile_latency = LogAxis::new(low.min(high), high);
        axes
    }

    /// The rate `results`' percentile plot, median request and waterfalls
    /// are at: the focus rate every run has points at, else its own.
    pub fn rate(&self, results: &BenchResults) -> Option<f64> {
        self.shared_rate
            .filter(|&rate| ran_at(results, rate, self.size))
            .or_else(|| focus_rate(results, self.size))
    }
}

/// Whether any mode of `results` ran at `rate` and `size`.
fn ran_at(results: &BenchResults, rate: f64, size: usize) -> bool {
    results
        .modes
        .iter()
        .any(|mode| mode.point(rate, size).is_some())
}

/// A log y axis of latency over `axis`.
fn log_y(axis: &LogAxis) -> WithKeyPoints<LogCoord<f64>> {
    (axis.low..axis.high)
        .log_scale()
        .with_key_points(axis.ticks.clone())
        .with_light_points(axis.gridlines.clone())
}

/// One line per mode of `statistic` against the requested rate, on
/// `axes`; a hollow point where the run fell short of its rate.
pub fn latency_against_rate(
    area: &DrawingArea<SVGBackend, Shift>,
    results: &BenchResults,
    statistic: Statistic,
    axes: &SizeAxes,
) -> Drawn {
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .margin_right(24)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..axes.max_rate * 1.05, log_y(&axes.latency))?;
    let formatter = |ns: &f64| time_label(*ns);
    let rates = |rate: &f64| rate_label(*rate);
    chart
        .configure_mesh()
        .x_desc("requested rate")
        .y_desc(format!("{} latency", statistic.name()))
        .x_label_formatter(&rates)
        .y_label_formatter(&formatter)
        .x_labels(6)
        .label_style(label_font())
        .axis_desc_style(label_font())
        .bold_line_style(GRID)
        .light_line_style(LIGHT_GRID)
        .draw()?;
    for mode in &results.modes {
        let color = mode_color(mode.mode);
        let points: Vec<(f64, f64, bool)> = runs_at(mode, axes.size)
            .into_iter()
            .map(|point| (point.rate, statistic.of(point) as f64, point.held()))
            .collect();
        chart.draw_series(LineSeries::new(
            points.iter().map(|&(rate, ns, _)| (rate, ns)),
            color.stroke_width(2),
        ))?;
        chart.draw_series(points.iter().map(|&(rate, ns, held)| {
            let style = if held {
                color.filled()
            } else {
                color.stroke_width(2)
            };
            Circle::new((rate, ns), 4, style)
        }))?;
    }
    Ok(())
}

/// The points of a percentile plot: (nines, ns).
pub fn percentile_points(percentiles: &[Percentile]) -> Vec<(f64, f64)> {
    percentiles
        .iter()
        .map(|point| (point.nines(), point.ns as f64))
        .collect()
}

/// Each mode's percentile plot at `rate` and `size`, those with points.
fn percentile_lines(
    results: &BenchResults,
    size: usize,
    rate: f64,
) -> Vec<(Mode, Vec<(f64, f64)>)> {
    results
        .modes
        .iter()
        .filter_map(|mode| {
            let point = mode.point(rate, size)?;
            Some((mode.mode, percentile_points(&point.percentiles)))
        })
        .filter(|(_, points)| !points.is_empty())
        .collect()
}

/// Each mode's latency by percentile at `rate` on `axes`, HdrHistogram
/// style: percentile on a nines axis, latency on a log axis.
pub fn latency_by_percentile(
    area: &DrawingArea<SVGBackend, Shift>,
    results: &BenchResults,
    rate: f64,
    axes: &SizeAxes,
) -> Drawn {
    let reach = axes.reach;
    let ticks = nines_ticks(reach);
    let tick_at: Vec<f64> = ticks.iter().map(|(nines, _)| *nines).collect();
    let label = |nines: &f64| {
        ticks
            .iter()
            .find(|(at, _)| (at - nines).abs() < 1e-9)
            .map(|(_, label)| label.clone())
            .unwrap_or_default()
    };
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .margin_right(24)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(
            Ticked {
                from: 0.0,
                to: reach,
                ticks: tick_at,
                downwards: false,
            },
            log_y(&axes.percentile_latency),
        )?;
    let formatter = |ns: &f64| time_label(*ns);
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency")
        .x_label_formatter(&label)
        .y_label_formatter(&formatter)
        .label_style(label_font())
        .axis_desc_style(label_font())
        .bold_line_style(GRID)
        .light_line_style(LIGHT_GRID)
        .draw()?;
    for (mode, points) in percentile_lines(results, axes.size, rate) {
        chart.draw_series(LineSeries::new(points, mode_color(mode).stroke_width(2)))?;
    }
    Ok(())
}

/// The height of a chart with a bar for each of `rows`.
pub fn bars_height(rows: usize) -> u32 {
    60 + 28 * rows as u32
}

/// A bar per mode: the median request's time in each segment kind,
/// stacked in the order of [`SegmentKind::ALL`], its total at its end.
pub fn segment_bars(
    area: &DrawingArea<SVGBackend, Shift>,
    bars: &[(Mode, Vec<(SegmentKind, u64)>)],
) -> Drawn {
    let total = |kinds: &[(SegmentKind, u64)]| kinds.iter().map(|(_, ns)| ns).sum::<u64>();
    let longest = bars
        .iter()
        .map(|(_, kinds)| total(kinds))
        .max()
        .unwrap_or(1)
        .max(1);
    let rows = bars.len();
    let names: Vec<String> = bars.iter().map(|(mode, _)| mode.to_string()).collect();
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .margin_right(70)
        .x_label_area_size(40)
        .y_label_area_size(110)
        .build_cartesian_2d(0.0..longest as f64 * 1.02, rows_axis(rows))?;
    mesh_for_rows(&mut chart, &names, "time of the median request", 6)?;
    for (row, (_, kinds)) in bars.iter().enumerate() {
        let row = row as f64;
        let mut left = 0.0;
        for &(kind, ns) in kinds {
            let right = left + ns as f64;
            chart.draw_series([Rectangle::new(
                [(left, row - 0.35), (right, row + 0.35)],
                kind_color(kind).filled(),
            )])?;
            left = right;
        }
        chart.draw_series([Text::new(
            time_label(total(kinds) as f64),
            (left + longest as f64 * 0.01, row),
            label_font().pos(Pos::new(HPos::Left, VPos::Center)),
        )])?;
    }
    Ok(())
}

/// Rows 0, 1, ... from the top.
fn rows_axis(rows: usize) -> Ticked {
    Ticked {
        from: -0.5,
        to: rows as f64 - 0.5,
        ticks: (0..rows).map(|row| row as f64).collect(),
        downwards: true,
    }
}

/// A linear axis with ticks where they are asked for, and with
/// `downwards`, its first value at the top.
struct Ticked {
    from: f64,
    to: f64,
    ticks: Vec<f64>,
    downwards: bool,
}

impl Ranged for Ticked {
    type ValueType = f64;
    type FormatOption = DefaultFormatting;

    fn map(&self, value: &f64, (start, end): (i32, i32)) -> i32 {
        let share = (value - self.from) / (self.to - self.from);
        let share = if self.downwards { 1.0 - share } else { share };
        start + (share * f64::from(end - start)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _: Hint) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> Range<f64> {
        self.from..self.to
    }
}

/// The mesh of a chart of rows named `names`, with time along x at up to
/// `x_labels` ticks.
fn mesh_for_rows<X, Y>(
    chart: &mut ChartContext<SVGBackend, Cartesian2d<X, Y>>,
    names: &[String],
    x_desc: &str,
    x_labels: usize,
) -> Drawn
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let row_name = |row: &f64| {
        let index = row.round();
        (index >= 0.0)
            .then(|| names.get(index as usize).cloned())
            .flatten()
            .unwrap_or_default()
    };
    let formatter = |ns: &f64| time_label(*ns);
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(x_desc)
        .x_label_formatter(&formatter)
        .y_label_formatter(&row_name)
        .x_labels(x_labels)
        .label_style(label_font())
        .axis_desc_style(label_font())
        .bold_line_style(GRID)
        .light_line_style(LIGHT_GRID)
        .draw()
}

/// The height of a waterfall of `steps` rows.
pub fn waterfall_height(steps: usize) -> u32 {
    70 + 17 * steps as u32
}

/// Width of a waterfall's panel of one request.
pub const WATERFALL_PANEL: u32 = 300;
/// Time ticks a panel has room for: six "150 µs" run into each other.
const WATERFALL_TICKS: usize = 4;

/// Width of the row labels `names` of a waterfall: about 6.5 pixels a
/// character of 12 pixels (sans-serif runs 0.5 to 0.6 em).
fn waterfall_labels(names: &[String]) -> u32 {
    let longest = names
        .iter()
        .map(|name| name.chars().count())
        .max()
        .unwrap_or(0);
    (longest as u32 * 13 / 2 + 24).max(120)
}

/// The width of the waterfalls of `exemplars`.
pub fn waterfalls_width(exemplars: &[RequestExemplar]) -> u32 {
    let names = exemplars.first().map(step_names).unwrap_or_default();
    waterfall_labels(&names) + WATERFALL_PANEL * exemplars.len() as u32
}

/// The rows of a waterfall of `exemplar`: "client: eth0 TC egress →
/// eth0 net_dev_start_xmit".
fn step_names(exemplar: &RequestExemplar) -> Vec<String> {
    exemplar
        .steps
        .iter()
        .map(|step| {
            let (from, to) = (without_namespaces(&step.from), without_namespaces(&step.to));
            format!("{}: {from} → {to}", step.place.describe())
        })
        .collect()
}

/// A hop's label without the namespaces of its devices ("eth0@pod1 TC
/// ingress" is "eth0 TC ingress"): the step's place says which node.
fn without_namespaces(label: &str) -> String {
    label
        .split(' ')
        .map(|word| word.split('@').next().unwrap_or(word))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Followed requests side by side, one bar per step from the client's
/// write to its read, each on its own time axis; the steps named on the
/// left of the first.
pub fn waterfalls(area: &DrawingArea<SVGBackend, Shift>, exemplars: &[RequestExemplar]) -> Drawn {
    let Some(first) = exemplars.first() else {
        return Ok(());
    };
    let names = step_names(first);
    let labels = waterfall_labels(&names);
    let (width, _) = area.dim_in_pixel();
    let panel = (width - labels) / exemplars.len() as u32;
    let breaks: Vec<i32> = (0..exemplars.len())
        .map(|index| (labels + panel * index as u32) as i32)
        .skip(1)
        .collect();
    let panels = area.split_by_breakpoints(breaks, Vec::<i32>::new());
    for (index, (exemplar, panel)) in exemplars.iter().zip(&panels).enumerate() {
        let title = format!(
            "{}: {}",
            rank_name(exemplar.percentile),
            time_label(exemplar.total_ns as f64)
        );
        let rows = exemplar.steps.len();
        // Room between panels for the half of a tick label that stands
        // past either end of an axis.
        let mut chart = ChartBuilder::on(panel)
            .margin(8)
            .margin_left(if index == 0 { 8 } else { 24 })
            .margin_right(28)
            .caption(title, (FONT, 16).into_font().color(&TEXT))
            .x_label_area_size(40)
            .y_label_area_size(if index == 0 { labels - 8 } else { 0 })
            .build_cartesian_2d(waterfall_x(exemplar.total_ns), rows_axis(rows))?;
        mesh_for_rows(
            &mut chart,
            &names,
            "since the client's write",
            WATERFALL_TICKS,
        )?;
        chart.draw_series(exemplar.steps.iter().enumerate().map(|(row, step)| {
            let row = row as f64;
            let (start, end) = (step.start_ns as f64, (step.start_ns + step.ns) as f64);
            Rectangle::new(
                [(start, row - 0.4), (end, row + 0.4)],
                kind_color(step.kind).filled(),
            )
        }))?;
    }
    Ok(())
}

fn waterfall_x(total_ns: u64) -> Range<f64> {
    0.0..(total_ns.max(1) as f64 * 1.02)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::analysis::{
        fixtures::three_modes,
        percentiles::{distribution, one_to_a_thousand_us},
    };

    #[test]
    fn axes_side_by_side_span_both_runs() {
        // Left: p50s of 20, 30 and 21 us, p99s of 50 us, at 1k/s; host's
        // percentiles 1 us to 1 ms over three nines.
        let mut left = three_modes();
        left.modes[0].points[0].percentiles = distribution(&one_to_a_thousand_us());
        // Right: host's p50 12 us and p99 2 ms, a rate of 4k/s asked for
        // (not run), host's percentiles 100 times slower up to two nines.
        let mut right = three_modes();
        right.settings.rates.push(4000.0);
        let host = &mut right.modes[0].points[0];
        host.slice_p50_ns = vec![12_000; 4];
        host.load.latency.p99_ns = 2_000_000;
        host.percentiles = left.modes[0].points[0].percentiles[..=20]
            .iter()
            .map(|point| Percentile {
                ns: point.ns * 100,
                ..*point
            })
            .collect();

        let alone = SizeAxes::over(&[&left], 350);
        assert_eq!(alone.max_rate, 1000.0);
        assert_eq!(
            alone.latency.ticks,
            [20_000.0, 30_000.0, 40_000.0, 50_000.0]
        );
        // The histogram's slowest, 1 ms, reads a little over it.
        assert_eq!(alone.percentile_latency.ticks, [1e3, 1e4, 1e5, 1e6, 1e7]);
        assert!((alone.reach - 3.0).abs() < 1e-9, "{}", alone.reach);

        let shared = SizeAxes::over(&[&left, &right], 350);
        assert_eq!(shared, SizeAxes::over(&[&right, &left], 350));
        // 12 us to 2 ms: 10 us to 10 ms; rates to 4k/s.
        assert_eq!(shared.max_rate, 4000.0);
        assert_eq!((shared.latency.low, shared.latency.high), (1e4, 1e7));
        assert_eq!(shared.latency.ticks, [1e4, 1e5, 1e6, 1e7]);
        // 1 us (left) to 99 ms (right), over left's three nines.
        assert_eq!(
            shared.percentile_latency.ticks,
            [1e3, 1e4, 1e5, 1e6, 1e7, 1e8]
        );
        assert_eq!(shared.reach, alone.reach);
        // Both at 1k/s, the rate both ran.
        assert_eq!(shared.rate(&left), Some(1000.0));
        assert_eq!(shared.rate(&right), Some(1000.0));
    }

    #[test]
    fn the_percentile_plot_of_a_known_histogram() {
        // 1 to 1000 us: 90% at one nine and 900 us, 99% at two and 990 us,
        // the slowest at three and 1 ms.
        let points = percentile_points(&distribution(&one_to_a_thousand_us()));
        let near = |(nines, ns): (f64, f64), expected: (f64, f64)| {
            (nines - expected.0).abs() < 1e-9 && (ns - expected.1).abs() <= expected.1 / 100.0
        };
        for (index, expected) in [
            (0, (0.0, 1e3)),
            (10, (1.0, 9e5)),
            (20, (2.0, 9.9e5)),
            (30, (3.0, 1e6)),
        ] {
            assert!(near(points[index], expected), "{:?}", points[index]);
        }
        assert!(points.windows(2).all(|pair| pair[0].0 < pair[1].0));
    }
}
