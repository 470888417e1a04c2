//! The files of `deploy/`, read for the tests that check them.

use std::{
    fs,
    path::{Path, PathBuf},
};

use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

/// A file of deploy/.
pub fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

pub fn read(file: &str) -> String {
    fs::read_to_string(deploy(file)).unwrap_or_else(|error| panic!("deploy/{file}: {error}"))
}

/// The Grafana dashboard.
pub fn dashboard() -> Json {
    serde_json::from_str(&read("grafana/netprobe.json")).expect("the dashboard parses")
}

/// Every query of the dashboard, its variables given values: every node,
/// `direction`.
pub fn dashboard_queries(direction: &str) -> Vec<String> {
    let dashboard = dashboard();
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut queries = Vec::new();
    for panel in panels.iter().filter(|panel| panel["type"] != "row") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            queries.push(expr.replace("$node", ".+").replace("$direction", direction));
        }
    }
    queries
}

/// The recording rules of deploy/prometheus/rules.yml: (record, expr).
pub fn recording_rules() -> Vec<(String, String)> {
    let rules: Yaml = serde_yaml_ng::from_str(&read("prometheus/rules.yml")).expect("rules.yml");
    rules["groups"][0]["rules"]
        .as_sequence()
        .expect("rules")
        .iter()
        .map(|rule| {
            (
                rule["record"].as_str().expect("record").to_owned(),
                rule["expr"].as_str().expect("expr").to_owned(),
            )
        })
        .collect()
}
