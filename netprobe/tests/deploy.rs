//! The files of `deploy/`, checked offline: the manifests against the
//! Kubernetes API schema (kubernetes-validate), the Containerfile with
//! hadolint and against the manifest, the Prometheus configuration and
//! recording rules with promtool, and the Grafana dashboard's queries.
//! `cargo xtask test` installs the checkers and says where they are
//! (NETPROBE_DEPLOY_TOOLS); promtool comes with Debian's prometheus.
//! What the queries find in a real Prometheus is tested in tests/agent.rs.

use std::{
    fs,
    path::PathBuf,
    process::{Command, Output},
};

use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;
use support::{
    deploy::{dashboard, dashboard_queries, deploy, read, recording_rules},
    session::netprobe,
};

mod support;

/// A checker `cargo xtask test` installed.
fn tool(name: &str) -> Command {
    let dir = std::env::var_os("NETPROBE_DEPLOY_TOOLS")
        .expect("NETPROBE_DEPLOY_TOOLS is unset: run the tests with `cargo xtask test`");
    let path = PathBuf::from(dir).join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask test`",
        path.display()
    );
    Command::new(path)
}

fn succeeds(command: &mut Command) -> Output {
    let output = command.output().expect("the checker runs");
    assert!(output.status.success(), "{command:?}: {output:?}");
    output
}

/// The documents of deploy/daemonset.yaml.
fn manifests() -> Vec<Yaml> {
    serde_yaml_ng::Deserializer::from_str(&read("daemonset.yaml"))
        .map(<Yaml as serde::Deserialize>::deserialize)
        .collect::<Result<_, _>>()
        .expect("daemonset.yaml parses")
}

fn of_kind<'a>(documents: &'a [Yaml], kind: &str) -> &'a Yaml {
    documents
        .iter()
        .find(|document| document["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in daemonset.yaml"))
}

fn strings(value: &Yaml) -> Vec<&str> {
    value
        .as_sequence()
        .map(|items| items.iter().filter_map(Yaml::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn the_manifests_validate_against_the_kubernetes_api_schema() {
    let output = succeeds(
        tool("kubernetes-validate")
            .arg("--strict")
            .arg(deploy("daemonset.yaml")),
    );
    let said = String::from_utf8_lossy(&output.stdout);
    for resource in [
        "namespace/netprobe",
        "service/netprobe-agent",
        "daemonset/netprobe-agent",
    ] {
        assert!(
            said.contains(&format!("passed for resource {resource}")),
            "{said}"
        );
    }
    // The validator catches a misspelt field: the check can fail.
    let dir = tempfile::tempdir().expect("temporary directory");
    let misspelt = dir.path().join("daemonset.yaml");
    fs::write(
        &misspelt,
        read("daemonset.yaml").replace("hostNetwork:", "hostNetwrok:"),
    )
    .expect("write");
    let output = tool("kubernetes-validate")
        .arg("--strict")
        .arg(&misspelt)
        .output()
        .expect("kubernetes-validate runs");
    assert!(!output.status.success(), "{output:?}");
}

#[test]
fn the_daemonset_runs_the_agent_on_the_host_network_with_what_it_needs() {
    let documents = manifests();
    let daemonset = of_kind(&documents, "DaemonSet");
    let pod = &daemonset["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["privileged"], false);
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    // SYS_ADMIN: tests/agent.rs shows the agent cannot enter the pods'
    // namespaces without it.
    assert_eq!(
        strings(&security["capabilities"]["add"]),
        ["BPF", "PERFMON", "NET_ADMIN", "SYS_ADMIN"]
    );
    let mounts = container["volumeMounts"].as_sequence().expect("mounts");
    let mount = |path: &str| {
        mounts
            .iter()
            .find(|mount| mount["mountPath"] == path)
            .unwrap_or_else(|| panic!("no mount at {path}"))
    };
    for path in ["/sys/kernel/btf", "/sys/fs/bpf", "/run/netns"] {
        assert_eq!(mount(path)["readOnly"], true, "{path}");
    }
    // The agent finds pods' namespaces where `ip netns` keeps them.
    assert_eq!(
        mount("/run/netns")["mountPropagation"],
        "HostToContainer",
        "pods created after the agent must appear in its /run/netns"
    );
    let volume = |name: &Yaml| {
        pod["volumes"]
            .as_sequence()
            .expect("volumes")
            .iter()
            .find(|volume| volume["name"] == *name)
            .expect("the mount's volume")
            .clone()
    };
    assert_eq!(
        volume(&mount("/run/netns")["name"])["hostPath"]["path"],
        "/var/run/netns"
    );
    assert_eq!(
        mount(netprobe::agent::INSTANCE_DIR.trim_end_matches("/agent"))["name"],
        "run"
    );
    for (kind, resource) in [
        ("requests", "cpu"),
        ("requests", "memory"),
        ("limits", "memory"),
    ] {
        assert!(
            container["resources"][kind][resource].is_string(),
            "{kind}.{resource}"
        );
    }
    let annotations = &daemonset["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
}

/// The port of the agent's default listen address.
fn default_port() -> String {
    netprobe::agent::DEFAULT_LISTEN
        .rsplit_once(':')
        .expect("ADDR:PORT")
        .1
        .to_owned()
}

#[test]
fn everything_uses_the_agents_port() {
    let port = default_port();
    let documents = manifests();
    let daemonset = of_kind(&documents, "DaemonSet");
    let template = &daemonset["spec"]["template"];
    let container = &template["spec"]["containers"][0];
    let args = strings(&container["args"]);
    let listen = args
        .iter()
        .position(|arg| *arg == "--listen")
        .map(|at| args[at + 1])
        .expect("--listen in the args");
    assert_eq!(listen.rsplit_once(':').expect("ADDR:PORT").1, port);
    assert_eq!(
        container["ports"][0]["containerPort"]
            .as_u64()
            .map(|p| p.to_string()),
        Some(port.clone())
    );
    assert_eq!(
        template["metadata"]["annotations"]["prometheus.io/port"],
        port.as_str()
    );
    let service = of_kind(&documents, "Service");
    assert_eq!(
        service["spec"]["ports"][0]["port"]
            .as_u64()
            .map(|p| p.to_string()),
        Some(port.clone())
    );
    let prometheus: Yaml =
        serde_yaml_ng::from_str(&read("prometheus/prometheus.yml")).expect("prometheus.yml");
    let discovery = &prometheus["scrape_configs"][0]["dns_sd_configs"][0];
    assert_eq!(
        discovery["port"].as_u64().map(|p| p.to_string()),
        Some(port)
    );
    let name = format!(
        "{}.{}.svc.cluster.local",
        service["metadata"]["name"].as_str().expect("name"),
        service["metadata"]["namespace"]
            .as_str()
            .expect("namespace")
    );
    assert_eq!(strings(&discovery["names"]), [name.as_str()]);
}

/// The Containerfile's instructions, `(INSTRUCTION, rest)`, comments and
/// continuation lines aside.
fn instructions() -> Vec<(String, String)> {
    read("Containerfile")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (instruction, rest) = line.split_once(' ').expect("INSTRUCTION ARGS");
            (instruction.to_uppercase(), rest.trim().to_owned())
        })
        .collect()
}

#[test]
fn the_containerfile_passes_hadolint_and_starts_what_the_daemonset_runs() {
    succeeds(tool("hadolint").arg(deploy("Containerfile")));
    let instructions = instructions();
    let find = |wanted: &str| {
        instructions
            .iter()
            .filter(|(instruction, _)| instruction == wanted)
            .map(|(_, rest)| rest.as_str())
            .collect::<Vec<_>>()
    };
    let copy = find("COPY");
    let [copy] = copy.as_slice() else {
        panic!("one COPY: {copy:?}")
    };
    let (source, target) = copy.split_once(' ').expect("COPY SOURCE TARGET");
    // The binary cargo builds (the eBPF objects are embedded in it).
    assert_eq!(source, "target/release/netprobe");
    let entrypoint: Vec<String> =
        serde_json::from_str(find("ENTRYPOINT")[0]).expect("ENTRYPOINT in exec form");
    assert_eq!(entrypoint, [target]);
    let documents = manifests();
    let container = &of_kind(&documents, "DaemonSet")["spec"]["template"]["spec"]["containers"][0];
    assert!(
        container["command"].is_null(),
        "the manifest keeps the image's entrypoint"
    );
    let args = strings(&container["args"]);
    assert_eq!(args.first(), Some(&"agent"));
    // The netprobe the image holds takes these arguments.
    let help = netprobe(&["agent", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in args.iter().filter(|arg| arg.starts_with("--")) {
        assert!(help.contains(flag), "netprobe agent has no {flag}");
    }
}

#[test]
fn the_prometheus_configuration_and_recording_rules_pass_promtool() {
    let config = deploy("prometheus/prometheus.yml");
    succeeds(
        Command::new("promtool")
            .arg("check")
            .arg("config")
            .arg(&config),
    );
    succeeds(
        Command::new("promtool")
            .args(["check", "rules"])
            .arg(deploy("prometheus/rules.yml")),
    );
}

#[test]
fn the_dashboard_draws_each_segments_p50_p99_and_share_from_valid_queries() {
    let queries = dashboard_queries("ingress");
    let recorded: Vec<String> = recording_rules()
        .into_iter()
        .map(|(record, _)| record)
        .collect();
    for wanted in [
        "netprobe:segment_latency_seconds:p50_1m",
        "netprobe:segment_latency_seconds:p99_1m",
        "netprobe:segment_latency_seconds:share_of_end_to_end_p50_1m",
    ] {
        assert!(
            recorded.iter().any(|record| record == wanted),
            "{wanted} is not recorded"
        );
        assert!(
            queries.iter().any(|query| query.starts_with(wanted)),
            "the dashboard does not draw {wanted}"
        );
    }
    // The share is stacked.
    let dashboard: Json = dashboard();
    let share = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .find(|panel| {
            panel["targets"][0]["expr"]
                .as_str()
                .is_some_and(|expr| expr.contains("share_of_end_to_end"))
        })
        .expect("the share panel");
    assert_eq!(
        share["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"],
        "normal"
    );
    // promtool parses each query, as a rule of a file of its own.
    let dir = tempfile::tempdir().expect("temporary directory");
    let rules: Vec<String> = queries
        .iter()
        .enumerate()
        .map(|(index, query)| {
            format!("      - record: dashboard:query{index}\n        expr: {query:?}\n")
        })
        .collect();
    let file = dir.path().join("dashboard.yml");
    fs::write(
        &file,
        format!(
            "groups:\n  - name: dashboard\n    rules:\n{}",
            rules.concat()
        ),
    )
    .expect("write");
    succeeds(Command::new("promtool").args(["check", "rules"]).arg(&file));
}
