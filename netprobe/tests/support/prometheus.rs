//! A real Prometheus (Debian's), started as a plain process with its data
//! in a temporary directory, scraping agents every second with the
//! project's recording rules, asked through its HTTP API, and stopped by
//! its PID.

use std::{
    collections::BTreeMap,
    fs,
    net::TcpListener,
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use serde_json::Value;
use tempfile::TempDir;

use super::{agent::get, deploy::deploy, session::signal};

/// How often Prometheus scrapes and evaluates rules.
pub const SCRAPE_EVERY: Duration = Duration::from_secs(1);
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Which histograms Prometheus asks the agents for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Histograms {
    /// Classic buckets, in OpenMetrics text: Prometheus's default.
    Classic,
    /// Native histograms, in the protobuf format
    /// (`--enable-feature=native-histograms`).
    Native,
}

pub struct Prometheus {
    child: Option<Child>,
    address: String,
    _dir: TempDir,
}

/// One series of a query's answer: its labels and its values.
#[derive(Debug)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    /// (unix time, value); one for an instant query.
    pub values: Vec<(f64, f64)>,
}

impl Series {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }

    pub fn value(&self) -> f64 {
        self.values.last().expect("a value").1
    }
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (node label, `ADDR:PORT`) every
    /// [`SCRAPE_EVERY`], asking for `histograms`, and returns once all are
    /// up.
    pub fn start(targets: &[(&str, &str)], histograms: Histograms) -> Prometheus {
        let dir = tempfile::tempdir().expect("temporary directory");
        let static_configs: String = targets
            .iter()
            .map(|(node, address)| {
                format!("      - targets: [\"{address}\"]\n        labels: {{node: \"{node}\"}}\n")
            })
            .collect();
        let config = format!(
            "global:\n  scrape_interval: {every}s\n  scrape_timeout: {every}s\n  evaluation_interval: {every}s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: netprobe\n    static_configs:\n{static_configs}",
            every = SCRAPE_EVERY.as_secs(),
            rules = deploy("prometheus/rules.yml").display(),
        );
        let config_file = dir.path().join("prometheus.yml");
        fs::write(&config_file, config).expect("write the configuration");
        let address = format!("127.0.0.1:{}", free_port());
        let mut prometheus = Command::new("prometheus");
        if histograms == Histograms::Native {
            prometheus.arg("--enable-feature=native-histograms");
        }
        let child = prometheus
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts (cargo xtask test installs it)");
        let prometheus = Prometheus {
            child: Some(child),
            address,
            _dir: dir,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let up = prometheus.query("up == 1");
            if up.len() == targets.len() {
                return prometheus;
            }
            assert!(Instant::now() < deadline, "targets up: {up:?}");
            sleep(Duration::from_millis(200));
        }
    }

    fn api(&self, path: &str, query: &[(&str, &str)]) -> Option<Value> {
        let mut curl = Command::new("curl");
        curl.args(["-sS", "--max-time", "10", "-G"])
            .arg(format!("http://{}{path}", self.address));
        for (name, value) in query {
            curl.arg("--data-urlencode").arg(format!("{name}={value}"));
        }
        let output = curl.output().expect("curl runs");
        if !output.status.success() {
            return None;
        }
        let answer: Value = serde_json::from_slice(&output.stdout).ok()?;
        assert_eq!(answer["status"], "success", "{path} {query:?}: {answer}");
        Some(answer["data"].clone())
    }

    /// An instant query, now (empty while Prometheus is not up yet).
    pub fn query(&self, expr: &str) -> Vec<Series> {
        self.api("/api/v1/query", &[("query", expr)])
            .map(|data| series(&data))
            .unwrap_or_default()
    }

    /// A range query over the last `range`, a point every `step`.
    pub fn query_range(&self, expr: &str, range: Duration, step: Duration) -> Vec<Series> {
        let end = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        let (start, end, step) = (
            format!("{:.3}", end - range.as_secs_f64()),
            format!("{end:.3}"),
            format!("{}", step.as_secs_f64()),
        );
        let data = self
            .api(
                "/api/v1/query_range",
                &[
                    ("query", expr),
                    ("start", &start),
                    ("end", &end),
                    ("step", &step),
                ],
            )
            .expect("Prometheus answers");
        series(&data)
    }

    /// Whether Prometheus's own scrapes of every target succeeded.
    pub fn targets_healthy(&self) -> bool {
        let targets = get(&format!("http://{}/api/v1/targets", self.address), &[]);
        let targets: Value = serde_json::from_str(&targets.body).expect("targets parse");
        targets["data"]["activeTargets"]
            .as_array()
            .is_some_and(|all| all.iter().all(|target| target["health"] == "up"))
    }
}

fn series(data: &Value) -> Vec<Series> {
    data["result"]
        .as_array()
        .expect("a vector or matrix")
        .iter()
        .map(|item| {
            let labels = item["metric"]
                .as_object()
                .expect("labels")
                .iter()
                .map(|(name, value)| (name.clone(), value.as_str().unwrap_or("").to_owned()))
                .collect();
            let points: Vec<&Value> = match item["values"].as_array() {
                Some(values) => values.iter().collect(),
                None => vec![&item["value"]],
            };
            let values = points
                .into_iter()
                .map(|point| {
                    let time = point[0].as_f64().expect("time");
                    let value = point[1].as_str().expect("value").parse().expect("number");
                    (time, value)
                })
                .collect();
            Series { labels, values }
        })
        .collect()
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGTERM);
            child.wait().ok();
        }
    }
}
