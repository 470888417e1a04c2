//! `netprobe lab`: build, inspect, enter and remove the lab.

use std::{ffi::OsString, os::unix::process::CommandExt as _, process::Command};

use anyhow::{Context as _, anyhow};
use clap::{Args, Subcommand};

use super::{
    Lab, LabError, LabSpec, Mode, ResponseSize,
    layout::ROUTER_IP,
    spec::{DEFAULT_MTU, DEFAULT_NODES, DEFAULT_PODS_PER_NODE},
    state::state_file,
    teardown::lab_namespaces,
};
use crate::fastpath;

/// The prefix of the lab the CLI manages, unless told otherwise.
pub const DEFAULT_PREFIX: &str = "nplab";

/// Which lab a command manages (the bench names its own labs).
#[derive(Debug, Args)]
pub struct LabOptions {
    /// Prefix of every namespace of the lab and of its state file; `down`
    /// removes only what carries it.
    #[arg(long, default_value = DEFAULT_PREFIX)]
    pub prefix: String,
}

/// The lab's own commands (`main` adds the bench beside them).
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build the lab (replacing one with the same prefix) and start nginx
    /// in the server's namespace.
    Up {
        #[arg(long, help = format!("Networking mode: {}", Mode::names()))]
        mode: String,
        /// Nodes on the segment (client on node1, server on node2).
        #[arg(long, default_value_t = DEFAULT_NODES)]
        nodes: usize,
        /// Pods per node (host mode has none).
        #[arg(long, default_value_t = DEFAULT_PODS_PER_NODE)]
        pods_per_node: usize,
        /// MTU of the node uplinks.
        #[arg(long, default_value_t = DEFAULT_MTU)]
        mtu: u32,
        #[command(flatten)]
        lab: LabOptions,
    },
    /// Stop nginx and remove the lab's namespaces, links and state.
    Down {
        /// Every lab on this machine, whatever its prefix (the bench's
        /// `npbench_*` after it was killed, say).
        #[arg(long, conflicts_with = "prefix")]
        all: bool,
        #[command(flatten)]
        lab: LabOptions,
    },
    /// Show the lab: namespaces, addresses, server URLs.
    Status {
        #[command(flatten)]
        lab: LabOptions,
    },
    /// Run a command inside one of the lab's namespaces.
    Exec {
        /// node1, node2, node1-pod1, switch, router... (see `status`)
        name: String,
        #[arg(last = true, required = true)]
        command: Vec<OsString>,
        #[command(flatten)]
        lab: LabOptions,
    },
}

pub fn run(command: LabCommand) -> anyhow::Result<()> {
    match command {
        LabCommand::Up {
            mode,
            nodes,
            pods_per_node,
            mtu,
            lab: LabOptions { prefix },
        } => {
            // Parsed here rather than by clap so that a bad mode is one
            // line, like every other refused request.
            let spec = LabSpec {
                nodes,
                pods_per_node,
                mtu,
                ..LabSpec::new(prefix, mode.parse()?)
            };
            let lab = Lab::up(&spec)?;
            print!("{}", describe(&lab));
        }
        LabCommand::Down {
            all: false,
            lab: LabOptions { prefix },
        } => {
            Lab::down(&prefix)?;
            println!("lab {prefix} removed");
        }
        LabCommand::Down { all: true, .. } => {
            let removed = Lab::down_all()?;
            if removed.is_empty() {
                println!("no labs");
            }
            for prefix in removed {
                println!("lab {prefix} removed");
            }
        }
        LabCommand::Status {
            lab: LabOptions { prefix },
        } => status(&prefix)?,
        LabCommand::Exec {
            name,
            command,
            lab: LabOptions { prefix },
        } => {
            let lab = Lab::load(&prefix)?;
            let netns = lab.netns(&name).ok_or_else(|| {
                let names: Vec<_> = lab.namespaces().into_iter().map(|(name, _)| name).collect();
                anyhow!("lab {prefix} has no {name:?} (it has {})", names.join(", "))
            })?;
            // `exec` returns only if it failed.
            let err = Command::new("ip")
                .args(["netns", "exec", netns])
                .args(&command)
                .exec();
            return Err(err).context(format!("running ip netns exec {netns}"));
        }
    }
    Ok(())
}

fn status(prefix: &str) -> anyhow::Result<()> {
    match Lab::load(prefix) {
        Ok(lab) => print!("{}", describe(&lab)),
        Err(LabError::NoLab(_)) => {
            let leftovers = lab_namespaces(prefix).context("listing network namespaces")?;
            println!("no lab {prefix}");
            if !leftovers.is_empty() {
                println!(
                    "left over from an interrupted `up`: {}; remove with `netprobe lab down`",
                    leftovers.join(", ")
                );
            }
        }
        Err(err) => return Err(err.into()),
    }
    Ok(())
}

/// One line per fast path enabled in the lab's namespaces.
fn fastpaths(lab: &Lab) -> Vec<String> {
    let states = match fastpath::state::all() {
        Ok(states) => states,
        Err(err) => return vec![format!("fast paths: {err}")],
    };
    let mut lines = Vec::new();
    for state in states {
        let Some((node, _)) = lab
            .namespaces()
            .into_iter()
            .find(|(_, netns)| state.id.netns.as_deref() == Some(*netns))
        else {
            continue;
        };
        let sync = if fastpath::state::sync_pid(&state.id).is_some() {
            "syncing"
        } else {
            "sync NOT RUNNING"
        };
        let hook = match &state.xdp_mode {
            Some(mode) => format!("{} {mode}", state.hook.name()),
            None => state.hook.name().to_owned(),
        };
        lines.push(format!(
            "fast path on {node} {}: {hook}, {} pods, {sync}",
            state.id.interface,
            state.pods.len()
        ));
    }
    lines
}

fn describe(lab: &Lab) -> String {
    let spec = lab.spec();
    let pods_per_node = if spec.mode.has_pods() {
        spec.pods_per_node
    } else {
        0
    };
    let nginx = match lab.server_pid() {
        Some(pid) => format!("running, pid {pid}"),
        None => "NOT RUNNING".to_owned(),
    };
    let name_of = |netns: &str| {
        lab.namespaces()
            .into_iter()
            .find_map(|(name, ns)| (ns == netns).then_some(name))
            .unwrap_or_default()
    };
    let mut lines = vec![
        format!(
            "lab {}: {}, nodes {}, pods per node {pods_per_node}, MTU {}",
            spec.prefix, spec.mode, spec.nodes, spec.mtu
        ),
        format!("state: {}", state_file(&spec.prefix).display()),
        format!("client: {}", name_of(lab.client_netns())),
        format!("server: {} (nginx {nginx})", name_of(lab.server_netns())),
    ];
    for size in ResponseSize::ALL {
        lines.push(format!(
            "  {} ({} B response)",
            lab.server_url(size),
            size.response_len()
        ));
    }
    lines.push(String::new());
    let row = |name: &str, netns: &str, ip: &dyn std::fmt::Display| {
        format!("{name:<14} {netns:<28} {ip}")
    };
    lines.push(row("NAME", "NAMESPACE", &"ADDRESS"));
    for node in lab.nodes() {
        lines.push(row(&node.name, &node.netns, &node.ip));
        for pod in &node.pods {
            lines.push(row(&pod.name, &pod.netns, &pod.ip));
        }
    }
    if let Some(netns) = lab.switch_netns() {
        lines.push(row("switch", netns, &"-"));
    }
    if let Some(netns) = lab.router_netns() {
        lines.push(row("router", netns, &ROUTER_IP));
    }
    lines.extend(fastpaths(lab));
    lines.push(String::new());
    lines.push("Run a command in one: netprobe lab exec NAME -- COMMAND".to_owned());
    lines.join("\n") + "\n"
}
