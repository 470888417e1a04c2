//! `netprobe fastpath enable|disable|status`, and the hidden `sync` that
//! `enable` starts in the background.

use std::fmt::Write as _;

use anyhow::{Context as _, Result, anyhow};
use aya::programs::loaded_programs;
use clap::{Args, Subcommand};
use netprobe_common::fastpath::Counter;

use super::{
    EnableOptions, FastpathHook, disable, enable,
    programs::FastpathMaps,
    state::{self, FastpathId, FastpathState},
    sync,
};
use crate::{bpf_link::XdpModeChoice, netns::NetNs, privilege::require_bpf_privileges};

#[derive(Debug, Args)]
pub struct FastpathArgs {
    #[command(subcommand)]
    command: FastpathCommand,
}

#[derive(Debug, Subcommand)]
enum FastpathCommand {
    /// Take VXLAN packets for this node's pods from the interface straight
    /// to the pods' veths.
    Enable(EnableArgs),
    /// Stop the fast path on the interface and undo what it changed.
    Disable {
        interface: String,
        /// Named network namespace (ip netns) the interface is in.
        #[arg(long)]
        netns: Option<String>,
    },
    /// What is enabled where: pods served, counters, device changes.
    Status,
    /// The sync process `enable` starts (internal).
    #[command(hide = true)]
    Sync { key: String },
}

#[derive(Debug, Args)]
struct EnableArgs {
    /// The node's interface to the other nodes (e.g. eth0).
    interface: String,
    /// Named network namespace (ip netns) the interface is in.
    #[arg(long)]
    netns: Option<String>,
    /// The vxlan device to stand in for (default: the only one on the
    /// interface).
    #[arg(long, value_name = "DEV")]
    vxlan_dev: Option<String>,
    /// UDP port the vxlan device must use (e.g. 8472).
    #[arg(long)]
    port: Option<u16>,
    /// VNI the vxlan device must have (e.g. 1).
    #[arg(long)]
    vni: Option<u32>,
    #[arg(long, value_enum, default_value_t = FastpathHook::Xdp)]
    hook: FastpathHook,
    #[arg(long, value_enum, default_value_t = XdpModeChoice::Auto)]
    xdp_mode: XdpModeChoice,
    /// Keep syncing in this process until Ctrl-C or SIGTERM, then disable,
    /// instead of in the background.
    #[arg(long)]
    foreground: bool,
}

pub fn run(args: FastpathArgs) -> Result<()> {
    require_bpf_privileges()?;
    match args.command {
        FastpathCommand::Enable(args) => {
            let foreground = args.foreground;
            let options = EnableOptions {
                vxlan_dev: args.vxlan_dev,
                port: args.port,
                vni: args.vni,
                hook: args.hook,
                xdp_mode: args.xdp_mode,
                sync: if foreground {
                    None
                } else {
                    Some(std::env::current_exe().context("finding the netprobe executable")?)
                },
                ..EnableOptions::new(args.interface, args.netns)
            };
            let id = enable(&options)?;
            if foreground {
                println!("fast path enabled on {id}; Ctrl-C disables it");
                sync::run(&id)?;
                println!("fast path on {id} disabled");
            } else {
                let state = state::load(&id)?.ok_or_else(|| anyhow!("{id} vanished"))?;
                print!("{}", describe(&state)?);
            }
        }
        FastpathCommand::Disable { interface, netns } => {
            let node = match &netns {
                Some(name) => NetNs::named(name)?,
                None => NetNs::current()?,
            };
            let id = FastpathId {
                interface,
                netns,
                netns_inode: node.inode(),
            };
            disable(&id)?;
            println!("fast path on {id} disabled");
        }
        FastpathCommand::Status => {
            let states = state::all()?;
            if states.is_empty() {
                println!("no fast path enabled");
            }
            for state in states {
                print!("{}", describe(&state)?);
            }
        }
        FastpathCommand::Sync { key } => {
            let state =
                state::load_key(&key)?.ok_or_else(|| anyhow!("no fast path recorded as {key}"))?;
            sync::run(&state.id)?;
        }
    }
    Ok(())
}

/// The status of one fast path, as `status` and `enable` print it.
pub fn describe(state: &FastpathState) -> Result<String> {
    let id = &state.id;
    let mut text = String::new();
    let hook = match &state.xdp_mode {
        Some(mode) => format!("{} ({mode})", state.hook.name()),
        None => state.hook.name().to_owned(),
    };
    let sync = match state::sync_pid(id) {
        Some(pid) => format!("sync netprobe[{pid}]"),
        None => "sync NOT RUNNING (netprobe fastpath disable cleans up)".to_owned(),
    };
    let vxlan = &state.vxlan;
    writeln!(
        text,
        "{id}: {hook} on {} (VNI {}, port {}), {sync}",
        vxlan.name, vxlan.vni, vxlan.port
    )?;
    writeln!(
        text,
        "  program {} id {}, pinned in {}",
        state.hook.program(),
        state.program_id,
        id.pin_dir().display()
    )?;
    if let Some(cost) = program_cost(state.program_id) {
        writeln!(text, "  cost: {cost}")?;
    }
    let list = |ips: &[std::net::Ipv4Addr]| {
        let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
        if ips.is_empty() {
            "none".to_owned()
        } else {
            ips.join(", ")
        }
    };
    writeln!(
        text,
        "  node addresses: {}; remote nodes: {}",
        list(&state.locals),
        list(&state.remotes)
    )?;
    if let Some(idle) = &state.idle {
        writeln!(text, "  IDLE, nothing is fast-pathed: {idle}")?;
    }
    for pod in &state.pods {
        writeln!(
            text,
            "  pod {} via {} (ifindex {}, {})",
            pod.ip,
            pod.port,
            pod.ifindex,
            mac(&pod.mac)
        )?;
    }
    for pod in &state.skipped {
        writeln!(text, "  pod {} left to the kernel: {}", pod.ip, pod.reason)?;
    }
    // Half taken down (pins gone), it still shows what it changed.
    match FastpathMaps::from_pins(&id.pin_dir()).and_then(|maps| maps.counters()) {
        Ok(counters) => {
            writeln!(
                text,
                "  fast-pathed: {} packets",
                counters[Counter::Fastpathed as usize]
            )?;
            let passed: Vec<String> = Counter::ALL[1..]
                .iter()
                .filter(|counter| counters[**counter as usize] > 0)
                .map(|counter| format!("{} {}", counter.name(), counters[*counter as usize]))
                .collect();
            let total: u64 = counters[1..].iter().sum();
            writeln!(
                text,
                "  passed to the kernel: {total} packets{}{}",
                if passed.is_empty() { "" } else { ": " },
                passed.join(", ")
            )?;
        }
        Err(error) => writeln!(text, "  counters unavailable: {error}")?,
    }
    if state.changes.is_empty() {
        writeln!(text, "  device changes: none")?;
    }
    for change in &state.changes {
        writeln!(text, "  device change: {change}")?;
    }
    Ok(text)
}

/// The program's run time per packet, when bpf statistics are on.
fn program_cost(id: u32) -> Option<String> {
    let info = loaded_programs()
        .filter_map(Result::ok)
        .find(|program| program.id() == id)?;
    let runs = info.run_count();
    (runs > 0).then(|| {
        format!(
            "{:.0} ns per packet over {runs} runs (bpf statistics)",
            info.run_time().as_nanos() as f64 / runs as f64
        )
    })
}

fn mac(bytes: &[u8; 6]) -> String {
    bytes
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
