//! What the bench computes from what it measured, and how it shows it:
//! medians over slices, the noise between modes, the study's order, the
//! attribution of each mode's extra latency, the median request's
//! timeline, the text tables and the HTML page. Nothing here builds a lab,
//! runs load or touches the kernel: `netprobe report` renders saved results
//! with this alone.

mod attribution;
mod axis;
mod charts;
mod compare;
#[cfg(test)]
mod fixtures;
mod headline;
mod html;
mod median;
mod node_link;
mod noise;
mod palette;
mod percentiles;
mod ranking;
mod render;
mod request;
mod results;

use std::{fs, io::Write as _, path::Path, path::PathBuf};

use anyhow::{Context as _, Result};

pub use self::{
    attribution::{Attribution, attribute},
    node_link::NodeLinkLatency,
    percentiles::distribution,
    render::Summary,
    request::{JoinedRequests, MedianRequest, NodeSamples, RequestExemplar},
    results::{
        BenchResults, CpuUsage, DevicePackets, MaxRate, ModeResults, PointResults, Settings,
        SystemMetrics, TuningStep,
    },
};

const TABLE_FILE: &str = "table.txt";
const ATTRIBUTION_FILE: &str = "attribution.txt";
const HTML_FILE: &str = "report.html";
const COMPARE_FILE: &str = "compare.html";

/// Writes `results` and the tables and the HTML page made from them into
/// `dir`.
pub fn write_reports(results: &BenchResults, dir: &Path) -> Result<()> {
    results.save(dir)?;
    for (file, text) in [
        (
            TABLE_FILE,
            format!(
                "{}{}",
                render::LatencyTables(results),
                ranking::Ranking(results)
            ),
        ),
        (
            ATTRIBUTION_FILE,
            render::AttributionTables(results).to_string(),
        ),
        (HTML_FILE, html::Page(results).to_string()),
    ] {
        let path = dir.join(file);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// A directory `netprobe lab bench --out` wrote.
    pub dir: PathBuf,
    /// Another results directory to compare with: DIR/compare.html sets
    /// the two pages side by side, DIR2's differences highlighted.
    #[arg(long)]
    pub compare: Option<PathBuf>,
}

/// `netprobe report DIR [--compare DIR2]`.
pub fn run_report(args: &ReportArgs) -> Result<()> {
    let results = BenchResults::load(&args.dir)?;
    let other = args
        .compare
        .as_deref()
        .map(BenchResults::load)
        .transpose()?;
    write_reports(&results, &args.dir)?;
    let mut text = Summary(&results).to_string();
    if let (Some(other), Some(other_dir)) = (&other, &args.compare) {
        let page = html::ComparePage {
            base: (&args.dir.display().to_string(), &results),
            other: (&other_dir.display().to_string(), other),
        };
        let path = args.dir.join(COMPARE_FILE);
        fs::write(&path, page.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
        text.push_str(&format!(
            "\n{}\nside by side in {}\n",
            compare::changes_text(&results, other),
            path.display()
        ));
    }
    print_out(&text)
}

/// Writes `text` to stdout; a reader that stopped early (`| head`) is fine.
pub fn print_out(text: &str) -> Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(error).context("writing to stdout")
        }
        _ => Ok(()),
    }
}
