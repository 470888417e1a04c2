//! `netprobe fastpath enable|disable|status`, and the hidden `sync` that
//! `enable` starts in the background.

use std::fmt::Write as _;

use anyhow::{Context as _, Result, anyhow};
use aya::programs::loaded_programs;
use clap::{Args, Subcommand};
use netprobe_common::fastpath::{Counter, EgressCounter};

use super::{
    EnableOptions, HookChoice, disable, enable,
    programs::FastpathMaps,
    state::{self, FastpathId, FastpathState},
    sync::{self, SyncOptions},
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
    /// to the pods' veths, and the pods' packets for other nodes' pods from
    /// their veths straight to the interface, encapsulated.
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
    Sync {
        key: String,
        #[arg(long, value_enum)]
        hook: HookChoice,
        #[arg(long, value_enum)]
        xdp_mode: XdpModeChoice,
    },
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
    /// Where ingress runs: auto picks TC on a veth (measured faster) and
    /// native XDP on a physical NIC (not measured here).
    #[arg(long, value_enum, default_value_t = HookChoice::Auto)]
    hook: HookChoice,
    /// XDP's mode; naming one asks for XDP.
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
            let sync_options = SyncOptions {
                hook: options.hook,
                xdp_mode: options.xdp_mode,
            };
            let id = enable(&options)?;
            if foreground {
                sync::run(&id, sync_options, || {
                    println!("fast path enabled on {id}; Ctrl-C disables it");
                })?;
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
        FastpathCommand::Sync {
            key,
            hook,
            xdp_mode,
        } => {
            let state =
                state::load_key(&key)?.ok_or_else(|| anyhow!("no fast path recorded as {key}"))?;
            sync::run(&state.id, SyncOptions { hook, xdp_mode }, || {})?;
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
    writeln!(text, "  hook: {}", state.hook_reason)?;
    for (direction, program, id) in [
        ("ingress", state.hook.program(), state.program_id),
        (
            "egress",
            super::programs::EGRESS_PROGRAM,
            state.egress_program_id,
        ),
    ] {
        let cost = program_cost(id).map_or(String::new(), |cost| format!(", {cost}"));
        writeln!(text, "  {direction} program {program} id {id}{cost}")?;
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
    let egress = &state.egress;
    match &egress.idle {
        Some(idle) => writeln!(text, "  egress IDLE, nothing is encapsulated: {idle}")?,
        None => writeln!(
            text,
            "  egress from: {}",
            if egress.ports.is_empty() {
                "no pod yet".to_owned()
            } else {
                egress.ports.join(", ")
            }
        )?,
    }
    for route in &egress.routes {
        writeln!(
            text,
            "  egress to {} via VTEP {} (next hop {})",
            route.prefix, route.vtep, route.next_hop
        )?;
    }
    for route in &egress.skipped {
        writeln!(
            text,
            "  egress to {} left to the kernel: {}",
            route.prefix, route.reason
        )?;
    }
    for pod in &egress.skipped_pods {
        writeln!(
            text,
            "  egress from pod {} left to the kernel: {}",
            pod.ip, pod.reason
        )?;
    }
    // The maps live as long as the sync process: once it is gone, the
    // record still shows what it changed.
    match FastpathMaps::from_ids(&state.maps)
        .and_then(|maps| Ok((maps.counters()?, maps.egress_counters()?)))
    {
        Ok((ingress, egress)) => {
            let passed = |names: Vec<(&str, u64)>| {
                let total: u64 = names.iter().map(|(_, count)| count).sum();
                let named: Vec<String> = names
                    .iter()
                    .filter(|(_, count)| *count > 0)
                    .map(|(name, count)| format!("{name} {count}"))
                    .collect();
                format!(
                    "{total} packets{}{}",
                    if named.is_empty() { "" } else { ": " },
                    named.join(", ")
                )
            };
            writeln!(
                text,
                "  fast-pathed: {} packets in, {} out",
                ingress[Counter::Fastpathed as usize],
                egress[EgressCounter::Encapsulated as usize]
            )?;
            writeln!(
                text,
                "  passed to the kernel in: {}",
                passed(
                    Counter::ALL[1..]
                        .iter()
                        .map(|counter| (counter.name(), ingress[*counter as usize]))
                        .collect()
                )
            )?;
            writeln!(
                text,
                "  passed to the kernel out: {}",
                passed(
                    EgressCounter::ALL[1..]
                        .iter()
                        .map(|counter| (counter.name(), egress[*counter as usize]))
                        .collect()
                )
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
    if id == 0 {
        return None;
    }
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
