//! `report.html`: one self-contained page (inline SVG and CSS, nothing
//! fetched, no script) with, per response size, a headline, latency
//! against rate, latency by percentile, the median request's time per
//! segment kind, the tables, and the waterfalls of followed requests;
//! and `compare.html`, two results' pages section by section side by
//! side on shared axes (the waterfalls one above the other), the second's
//! differences from the first highlighted.

use std::fmt::{self, Display, Formatter, Write as _};

use super::{
    attribution::{ATTRIBUTED_RATES, Attribution, attribute},
    charts::{self, SizeAxes, Statistic, bars_height, waterfall_height, waterfalls_width},
    compare::{Change, changes},
    headline::headline,
    palette::{css, kind_color, mode_color},
    ranking::Ranking,
    render::{ATTRIBUTED, SettingsText, signed_ns},
    results::{BenchResults, ModeResults},
};
use crate::{
    lab::{Mode, WireSize},
    path::SegmentKind,
    report::format_ns,
};

const STYLE: &str = "\
body{font-family:sans-serif;margin:1.5em auto;max-width:1260px;padding:0 1em;color:#222;line-height:1.4}\
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}\
h3{margin:1.2em 0 .3em;font-size:1.05em}h4{margin:.8em 0 .2em}\
.headline{font-size:1.1em;background:#f4f7fb;border-left:4px solid #4e79a7;padding:.6em 1em}\
.note{color:#555;font-size:.9em;margin:.2em 0}\
svg{max-width:100%;height:auto;display:block}\
.charts{display:flex;flex-wrap:wrap;gap:1em}\
.legend{list-style:none;padding:0;margin:.3em 0;display:flex;flex-wrap:wrap;gap:.3em 1.2em;font-size:.9em}\
.legend span{display:inline-block;width:.9em;height:.9em;margin-right:.35em;vertical-align:-.1em;border-radius:2px}\
table{border-collapse:collapse;font-size:.85em;margin:.4em 0}\
th,td{border:1px solid #ddd;padding:.25em .45em;text-align:right;white-space:nowrap}th{white-space:normal}\
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}\
.scroll{overflow-x:auto;max-width:100%}\
td.short{color:#b00}td.slower{background:#fde0dd}td.faster{background:#ddf1da}\
pre{white-space:pre-wrap;background:#f6f6f6;padding:.8em;font-size:.85em}\
.compare{display:grid;grid-template-columns:1fr 1fr;gap:1.5em}\
.compare>div{min-width:0}\
.run{font-weight:bold;background:#f4f4f4;padding:.2em .5em;margin:1em 0 .3em}";

/// `report.html` of `results`.
pub struct Page<'a>(pub &'a BenchResults);

impl Display for Page<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        open(f, "netprobe lab bench")?;
        for section in sections(self.0, None, &[self.0])? {
            section.fmt(f)?;
        }
        close(f)
    }
}

/// `compare.html`: `base` and `other` side by side, their charts on
/// shared axes, `other`'s differences from `base` highlighted.
pub struct ComparePage<'a> {
    pub base: (&'a str, &'a BenchResults),
    pub other: (&'a str, &'a BenchResults),
}

impl Display for ComparePage<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let ((base_name, base), (other_name, other)) = (self.base, self.other);
        open(f, "netprobe lab bench: comparison")?;
        writeln!(
            f,
            "<p class=\"note\">Left: <b>{}</b>. Right: <b>{}</b>. A cell of the right's \
             latency table is red where its p50 is slower than the left's by more than \
             either run's slices moved, green where faster. Charts side by side share their \
             axes; the followed requests, too wide to halve, come one above the other.</p>",
            escape(base_name),
            escape(other_name)
        )?;
        changes_table(f, base, other)?;
        let left = sections(base, None, &[base, other])?;
        let right = sections(other, Some(base), &[base, other])?;
        let mut ids: Vec<&str> = left.iter().map(|section| section.id.as_str()).collect();
        for section in &right {
            if !ids.contains(&section.id.as_str()) {
                ids.push(&section.id);
            }
        }
        for id in ids {
            let section = left.iter().chain(&right).find(|section| section.id == id);
            let section = section.expect("an id of either side");
            writeln!(f, "{}", section.heading())?;
            let stacked = section.stacked();
            writeln!(
                f,
                "<div class=\"{}\">",
                if stacked { "stacked" } else { "compare" }
            )?;
            for (side, name, sections) in
                [("Left", base_name, &left), ("Right", other_name, &right)]
            {
                if stacked {
                    writeln!(f, "<p class=\"run\">{side}: {}</p>", escape(name))?;
                }
                writeln!(
                    f,
                    "<div>{}</div>",
                    body_of(sections, id).unwrap_or("<p class=\"note\">not in this run</p>")
                )?;
            }
            writeln!(f, "</div>")?;
        }
        close(f)
    }
}

fn open(f: &mut Formatter<'_>, title: &str) -> fmt::Result {
    writeln!(
        f,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title>\
         <style>{STYLE}</style></head><body>\n<h1>{title}</h1>"
    )
}

fn close(f: &mut Formatter<'_>) -> fmt::Result {
    writeln!(f, "</body></html>")
}

/// The body of the section `id` of `sections`.
fn body_of<'a>(sections: &'a [Section], id: &str) -> Option<&'a str> {
    sections
        .iter()
        .find(|section| section.id == id)
        .map(|section| section.body.as_str())
}

/// One part of the page: a heading and what is under it.
struct Section {
    id: String,
    level: u8,
    title: String,
    body: String,
}

impl Section {
    /// Whether a comparison sets the two runs' bodies one above the
    /// other, at the page's full width: the waterfalls, too wide to halve.
    fn stacked(&self) -> bool {
        self.id.starts_with("waterfalls-")
    }

    fn heading(&self) -> String {
        format!(
            "<h{level} id=\"{}\">{}</h{level}>",
            self.id,
            escape(&self.title),
            level = self.level
        )
    }
}

impl Display for Section {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}\n{}", self.heading(), self.body)
    }
}

/// The page's sections for `results`, its charts on axes spanning all of
/// `runs`; with `baseline`, its latency table's cells are marked where
/// they differ from the baseline's.
fn sections(
    results: &BenchResults,
    baseline: Option<&BenchResults>,
    runs: &[&BenchResults],
) -> Result<Vec<Section>, fmt::Error> {
    let mut sections = Vec::new();
    let mut add = |id: String, level: u8, title: String, body: String| {
        sections.push(Section {
            id,
            level,
            title,
            body,
        })
    };
    let mut summary = String::new();
    for &size in &results.settings.sizes {
        if let Some(text) = headline(results, size) {
            writeln!(summary, "<p class=\"headline\">{}</p>", escape(&text))?;
        }
    }
    writeln!(
        summary,
        "<pre>{}</pre>",
        escape(&SettingsText(results).to_string())
    )?;
    add("summary".to_owned(), 2, "Summary".to_owned(), summary);
    for &size in &results.settings.sizes {
        let id = |part: &str| format!("{part}-{size}");
        add(
            id("size"),
            2,
            format!("{} responses", WireSize(size)),
            String::new(),
        );
        let axes = SizeAxes::over(runs, size);
        let mut body = mode_legend(results);
        writeln!(
            body,
            "<p class=\"note\">Without probes; a hollow point: the run fell short of its rate. \
             p50 is the median of the run's slices' medians.</p><div class=\"charts\">"
        )?;
        for statistic in [Statistic::P50, Statistic::P99] {
            body.push_str(&draw((600, 340), |area| {
                charts::latency_against_rate(area, results, statistic, &axes)
            })?);
        }
        body.push_str("</div>");
        add(id("rate"), 3, "Latency against rate".to_owned(), body);
        let Some(rate) = axes.rate(results) else {
            continue;
        };
        let at = format!("at {}", rate_text(rate));
        let mut body = mode_legend(results);
        writeln!(
            body,
            "<p class=\"note\">Without probes, every request of the run.</p>"
        )?;
        body.push_str(&draw((900, 380), |area| {
            charts::latency_by_percentile(area, results, rate, &axes)
        })?);
        add(
            id("percentiles"),
            3,
            format!("Latency by percentile {at}"),
            body,
        );

        let bars: Vec<(Mode, Vec<(SegmentKind, u64)>)> = results
            .modes
            .iter()
            .filter_map(|mode| {
                let request = mode.point(rate, size)?.median_request.as_ref()?;
                Some((mode.mode, request.by_kind.clone().into_iter().collect()))
            })
            .collect();
        if !bars.is_empty() {
            let mut body = kind_legend(
                bars.iter()
                    .flat_map(|(_, kinds)| kinds.iter().map(|(kind, _)| *kind)),
            );
            writeln!(
                body,
                "<p class=\"note\">Requests followed whole across both nodes with the probes \
                 attached; those around the median, segment by segment.</p>"
            )?;
            body.push_str(&draw((900, bars_height(bars.len())), |area| {
                charts::segment_bars(area, &bars)
            })?);
            add(
                id("segments"),
                3,
                format!("Where the median request's time goes {at}"),
                body,
            );
        }
        add(
            id("latency-table"),
            3,
            "Latency p50 / p99 without probes".to_owned(),
            latency_table(results, size, baseline)?,
        );
        let attributions = attribute(results);
        for &rate in results.settings.rates.iter().take(ATTRIBUTED_RATES) {
            let rows: Vec<&Attribution> = attributions
                .iter()
                .filter(|row| row.is_at(rate, size))
                .collect();
            if !rows.is_empty() {
                add(
                    format!("attribution-{size}-{rate:.0}"),
                    3,
                    format!(
                        "Extra latency over host at {}, with probes",
                        rate_text(rate)
                    ),
                    attribution_table(&rows)?,
                );
            }
        }
        let followed: Vec<&ModeResults> = results
            .modes
            .iter()
            .filter(|mode| {
                mode.point(rate, size)
                    .is_some_and(|point| !point.exemplars.is_empty())
            })
            .collect();
        let mut body = kind_legend(followed.iter().flat_map(|mode| {
            let exemplars = &mode.point(rate, size).expect("filtered").exemplars;
            exemplars
                .iter()
                .flat_map(|exemplar| exemplar.steps.iter().map(|step| step.kind))
        }));
        writeln!(
            body,
            "<p class=\"note\">For each mode, its median, p99 and slowest request among those \
             followed whole, one bar per step from the client's write to its read, each on its \
             own time axis.</p>"
        )?;
        for mode in followed {
            let exemplars = &mode.point(rate, size).expect("filtered").exemplars;
            let steps = exemplars
                .iter()
                .map(|exemplar| exemplar.steps.len())
                .max()
                .unwrap_or(0);
            writeln!(
                body,
                "<section class=\"waterfall\" id=\"waterfall-{}-{size}\"><h4>{}</h4>",
                mode.mode, mode.mode
            )?;
            body.push_str(&draw(
                (waterfalls_width(exemplars), waterfall_height(steps)),
                |area| charts::waterfalls(area, exemplars),
            )?);
            body.push_str("</section>");
        }
        add(id("waterfalls"), 3, format!("Followed requests {at}"), body);
    }
    add(
        "order".to_owned(),
        2,
        "The study's order".to_owned(),
        format!("<pre>{}</pre>", escape(Ranking(results).to_string().trim())),
    );
    Ok(sections)
}

/// Draws an SVG of `size`.
fn draw(
    size: (u32, u32),
    chart: impl FnOnce(
        &plotters::drawing::DrawingArea<plotters::prelude::SVGBackend, plotters::coord::Shift>,
    ) -> charts::Drawn,
) -> Result<String, fmt::Error> {
    charts::svg(size, chart).map_err(|_| fmt::Error)
}

fn mode_legend(results: &BenchResults) -> String {
    legend(
        results
            .modes
            .iter()
            .filter(|mode| mode.unavailable.is_none())
            .map(|mode| (css(mode_color(mode.mode)), mode.mode.to_string())),
    )
}

fn kind_legend(kinds: impl Iterator<Item = SegmentKind>) -> String {
    let kinds: Vec<SegmentKind> = kinds.collect();
    legend(
        SegmentKind::ALL
            .into_iter()
            .filter(|kind| kinds.contains(kind))
            .map(|kind| (css(kind_color(kind)), kind.describe().to_owned())),
    )
}

fn legend(entries: impl Iterator<Item = (String, String)>) -> String {
    let mut html = String::from("<ul class=\"legend\">");
    for (color, name) in entries {
        html.push_str(&format!(
            "<li><span style=\"background:{color}\"></span>{}</li>",
            escape(&name)
        ));
    }
    html.push_str("</ul>");
    html
}

/// Rows: modes; columns: rates; cells: p50 / p99, and the achieved rate
/// where it fell short. With `baseline`, cells marked by [`Change`].
fn latency_table(
    results: &BenchResults,
    size: usize,
    baseline: Option<&BenchResults>,
) -> Result<String, fmt::Error> {
    let mut html = String::from("<div class=\"scroll\"><table><tr><th>mode</th>");
    for &rate in &results.settings.rates {
        write!(html, "<th>{}</th>", rate_text(rate))?;
    }
    html.push_str("</tr>");
    for mode in &results.modes {
        write!(html, "<tr><td>{}</td>", mode.mode)?;
        if let Some(reason) = &mode.unavailable {
            write!(
                html,
                "<td colspan=\"{}\">{}</td></tr>",
                results.settings.rates.len(),
                escape(reason)
            )?;
            continue;
        }
        for &rate in &results.settings.rates {
            let Some(point) = mode.point(rate, size) else {
                html.push_str("<td>-</td>");
                continue;
            };
            let change = baseline
                .and_then(|base| base.mode(mode.mode)?.point(rate, size))
                .map(|base| Change::between(base, point));
            let mut classes = Vec::new();
            if !point.held() {
                classes.push("short");
            }
            if let Some(class) = change.as_ref().and_then(Change::class) {
                classes.push(class);
            }
            write!(
                html,
                "<td class=\"{}\">{} / {}",
                classes.join(" "),
                time_cell(point.p50_ns()),
                time_cell(point.load.latency.p99_ns)
            )?;
            if !point.held() {
                write!(html, " ({:.0}/s)", point.load.achieved_rate)?;
            }
            if let Some(change) = change {
                write!(html, "<br>{}", change_cell(&change))?;
            }
            html.push_str("</td>");
        }
        html.push_str("</tr>");
    }
    html.push_str("</table></div>");
    if results
        .modes
        .iter()
        .any(|mode| mode.points.iter().any(|point| !point.held()))
    {
        html.push_str(
            "<p class=\"note\">In red: the run fell short of its rate (achieved rate in \
             brackets).</p>",
        );
    }
    Ok(html)
}

/// One row per mode: its extra latency over host and the parts.
fn attribution_table(rows: &[&Attribution]) -> Result<String, fmt::Error> {
    let kinds: Vec<SegmentKind> = ATTRIBUTED
        .into_iter()
        .filter(|kind| {
            rows.iter()
                .any(|row| row.by_kind.get(kind).is_some_and(|&ns| ns != 0))
        })
        .collect();
    let mut html = String::from(
        "<div class=\"scroll\"><table><tr><th>mode</th><th>p50</th><th>mean</th>\
         <th>parts</th><th>closes</th><th>margin</th><th>client wait</th>",
    );
    for kind in &kinds {
        write!(
            html,
            "<th><span style=\"color:{}\">■</span> {}</th>",
            css(kind_color(*kind)),
            kind.describe()
        )?;
    }
    html.push_str("</tr>");
    for row in rows {
        let closure = row.closure_text();
        write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{closure}</td><td>{}</td><td>{}</td>",
            row.mode,
            signed_cell(row.median_ns),
            signed_cell(row.mean_ns),
            signed_cell(row.parts_ns),
            time_cell(row.margin_ns().unsigned_abs()),
            signed_cell(row.client_wait_ns)
        )?;
        for kind in &kinds {
            write!(
                html,
                "<td>{}</td>",
                signed_cell(row.by_kind.get(kind).copied().unwrap_or(0))
            )?;
        }
        html.push_str("</tr>");
    }
    html.push_str(
        "</table></div><p class=\"note\">The load generator's median and mean over host's, \
         and the median request's time by segment kind over both nodes; closes: parts / p50; \
         margin: how far apart the two may be by chance (see attribution.txt).</p>",
    );
    Ok(html)
}

/// Every mode, rate and size both runs have: p50 before and after.
fn changes_table(f: &mut Formatter<'_>, base: &BenchResults, other: &BenchResults) -> fmt::Result {
    writeln!(
        f,
        "<h2 id=\"changes\">Changes in p50</h2><div class=\"scroll\"><table><tr><th>mode</th>\
         <th>size</th><th>rate</th><th>left</th><th>right</th><th>change</th></tr>"
    )?;
    for (mode, point, change) in changes(base, other) {
        writeln!(
            f,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            mode,
            WireSize(point.size),
            rate_text(point.rate),
            time_cell(change.before_ns),
            time_cell(change.after_ns),
            change.class().unwrap_or(""),
            change_cell(&change)
        )?;
    }
    writeln!(f, "</table></div>")
}

/// A time in a table: "30.7 µs".
fn time_cell(ns: u64) -> String {
    format_ns(ns).replace("us", "µs")
}

fn signed_cell(ns: i64) -> String {
    signed_ns(ns).replace("us", "µs")
}

fn change_cell(change: &Change) -> String {
    change.to_string().replace("us", "µs")
}

/// "17.7k/s".
fn rate_text(rate: f64) -> String {
    super::axis::rate_label(rate)
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

#[cfg(test)]
mod tests {
    use super::{super::fixtures::three_modes, *};

    #[test]
    fn the_page_is_self_contained_with_html_tables_and_a_chart_per_section() {
        let page = Page(&three_modes()).to_string();
        for fetch in ["src=", "href=", "<link", "@import", "url(", "<script"] {
            assert!(!page.contains(fetch), "{fetch} in the page");
        }
        assert!(page.contains("<p class=\"headline\">At 1k req/s"), "{page}");
        assert!(
            page.contains("<td>flannel-vxlan</td><td>+10.0µs</td>"),
            "{page}"
        );
        assert!(
            page.contains("<td class=\"short\">21.0µs / 50.0µs (900/s)</td>"),
            "{page}"
        );
        // Two latency charts and the percentile chart; bars for the two
        // modes that followed requests.
        assert_eq!(page.matches("<svg").count(), 4, "{page}");
    }

    #[test]
    fn a_comparison_marks_what_moved_beyond_both_runs_slices() {
        let base = three_modes();
        let mut other = three_modes();
        // flannel-vxlan's slices 5 us slower; host's unchanged.
        for slice in &mut other.modes[1].points[0].slice_p50_ns {
            *slice += 5_000;
        }
        let page = ComparePage {
            base: ("before", &base),
            other: ("after", &other),
        }
        .to_string();
        assert!(
            page.contains("<td class=\"slower\">+5.0µs (+16.7%)</td>"),
            "{page}"
        );
        assert!(page.contains("<td class=\"\">+0ns (+0.0%)</td>"), "{page}");
        // Every section side by side but the waterfalls, one above the
        // other, each titled with its run.
        assert_eq!(page.matches("<div class=\"stacked\">").count(), 1);
        assert_eq!(
            page.matches("<div class=\"compare\">").count(),
            page.matches("<h3").count() + 2
        );
        assert!(page.contains("<p class=\"run\">Right: after</p>"), "{page}");
    }

    #[test]
    fn charts_side_by_side_have_the_same_ticks() {
        // The right's host: p99 2 ms where the left's p99s are all 50 us.
        let base = three_modes();
        let mut other = three_modes();
        other.modes[0].points[0].load.latency.p99_ns = 2_000_000;
        let page = ComparePage {
            base: ("before", &base),
            other: ("after", &other),
        }
        .to_string();
        let section = &page[page.find("id=\"rate-350\"").expect("rate-350")..];
        let section = &section[..section.find("<h3").expect("a next section")];
        let texts: Vec<Vec<&str>> = section.split("<svg").skip(1).map(svg_texts).collect();
        // Left p50, left p99, right p50, right p99; all reach 2 ms.
        assert_eq!(texts.len(), 4, "{section}");
        assert_eq!(texts[0], texts[2]);
        assert_eq!(texts[1], texts[3]);
        assert!(texts[0].contains(&"1 ms"), "{:?}", texts[0]);
    }

    /// The texts of an SVG, in order.
    fn svg_texts(svg: &str) -> Vec<&str> {
        svg.split("<text")
            .skip(1)
            .filter_map(|text| {
                let start = text.find('>')? + 1;
                Some(text[start..start + text[start..].find("</text>")?].trim())
            })
            .collect()
    }
}
