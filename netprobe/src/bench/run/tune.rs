//! `--tune`: the study's tuning, where it means something inside network
//! namespaces. Each setting is reported as applied or not applicable; the
//! machine-wide ones are put back when the bench ends.

use std::{
    collections::BTreeSet,
    fs,
    process::Command,
    sync::{Arc, Mutex, PoisonError},
};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

use crate::{
    bench::analysis::TuningStep,
    lab::{Lab, Mode},
};

/// Entries of the global RPS socket flow table, as in the study.
const SOCK_FLOW_ENTRIES: u64 = 65536;
/// Per-queue flow counts: the global table over the queues of a device
/// (one here).
const QUEUE_FLOW_COUNT: u64 = 32768;
const SOMAXCONN: u64 = 65535;
const FILE_MAX: u64 = 1 << 20;

const SOCK_FLOW_SYSCTL: &str = "/proc/sys/net/core/rps_sock_flow_entries";
const FILE_MAX_SYSCTL: &str = "/proc/sys/fs/file-max";

/// Machine-wide settings, restored on drop.
pub struct GlobalTuning {
    restore: Vec<(&'static str, String)>,
}

impl GlobalTuning {
    pub fn apply() -> Result<(Self, Vec<TuningStep>)> {
        let mut tuning = Self {
            restore: Vec::new(),
        };
        let steps = vec![
            tuning.raise(SOCK_FLOW_SYSCTL, "rps_sock_flow_entries", SOCK_FLOW_ENTRIES)?,
            tuning.raise(FILE_MAX_SYSCTL, "fs.file-max", FILE_MAX)?,
        ];
        Ok((tuning, steps))
    }

    /// Sets a sysctl to `value` unless it is already at least that.
    fn raise(&mut self, path: &'static str, name: &str, value: u64) -> Result<TuningStep> {
        let current = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        let current = current.trim().to_owned();
        if current.parse::<u64>().is_ok_and(|current| current >= value) {
            return Ok(step(name, false, format!("already {current}")));
        }
        fs::write(path, value.to_string()).with_context(|| format!("writing {path}"))?;
        self.restore.push((path, current.clone()));
        Ok(step(
            name,
            true,
            format!("{current} -> {value}, restored afterwards"),
        ))
    }
}

impl Drop for GlobalTuning {
    fn drop(&mut self) {
        for (path, value) in &self.restore {
            if let Err(error) = fs::write(path, value) {
                log::warn!("restoring {path} to {value}: {error}");
            }
        }
    }
}

/// The machine-wide settings, shared with the interrupt handler. Its thread
/// lives as long as the process, so the bench's own handle puts them back
/// when it drops, however the bench ends.
pub struct SharedTuning(Arc<Mutex<Option<GlobalTuning>>>);

impl SharedTuning {
    pub fn new(tuning: Option<GlobalTuning>) -> Self {
        Self(Arc::new(Mutex::new(tuning)))
    }

    /// The settings for the interrupt handler, which puts them back too.
    pub fn shared(&self) -> Arc<Mutex<Option<GlobalTuning>>> {
        Arc::clone(&self.0)
    }
}

impl Drop for SharedTuning {
    fn drop(&mut self) {
        put_back(&self.0);
    }
}

/// Puts the machine-wide settings back, once, whoever comes first.
pub fn put_back(tuning: &Mutex<Option<GlobalTuning>>) {
    drop(tuning.lock().unwrap_or_else(PoisonError::into_inner).take());
}

/// Per-namespace settings of one lab.
pub fn tune_lab(lab: &Lab) -> Result<Vec<TuningStep>> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let mask = format!("{:x}", (1u64 << cpus.min(63)) - 1);
    let namespaces: Vec<&str> = lab
        .nodes()
        .iter()
        .flat_map(|node| {
            std::iter::once(node.netns.as_str())
                .chain(node.pods.iter().map(|pod| pod.netns.as_str()))
        })
        .collect();
    // XPS picks one of a device's transmit queues for each CPU: a device
    // with one has nothing to pick, and the kernel refuses its xps_cpus.
    let (mut steered, mut single_queue) = (BTreeSet::new(), BTreeSet::new());
    for netns in &namespaces {
        let mut script = format!(
            "for q in /sys/class/net/*/queues/rx-*; do \
             echo {mask} > $q/rps_cpus; echo {QUEUE_FLOW_COUNT} > $q/rps_flow_cnt; done"
        );
        for device in devices(netns)? {
            if device.num_tx_queues > 1 {
                script += &format!(
                    "; for q in /sys/class/net/{}/queues/tx-*; do echo {mask} > $q/xps_cpus; done",
                    device.ifname
                );
                steered.insert(device.ifname);
            } else {
                single_queue.insert(device.ifname);
            }
        }
        in_netns(netns, &script)?;
    }
    let list = |devices: &BTreeSet<String>| devices.iter().cloned().collect::<Vec<_>>().join(", ");
    let xps = if steered.is_empty() {
        step(
            "XPS",
            false,
            "no device of the lab has more than one transmit queue".into(),
        )
    } else {
        let mut detail = format!(
            "xps_cpus {mask} on every transmit queue of {}",
            list(&steered)
        );
        if !single_queue.is_empty() {
            detail += &format!(
                "; not applicable to {} (one transmit queue each)",
                list(&single_queue)
            );
        }
        step("XPS", true, detail)
    };
    let mut steps = vec![
        step(
            "RPS",
            true,
            format!("rps_cpus {mask} on every receive queue of the lab"),
        ),
        step(
            "RFS",
            true,
            format!("rps_flow_cnt {QUEUE_FLOW_COUNT} per receive queue"),
        ),
        xps,
    ];
    if lab.mode() == Mode::Bridge {
        steps.push(step(
            "NOTRACK",
            false,
            "Docker's port mapping needs connection tracking".into(),
        ));
    } else {
        for netns in &namespaces {
            in_netns(
                netns,
                "iptables -t raw -A PREROUTING -p tcp --dport 80 -j NOTRACK && \
                 iptables -t raw -A PREROUTING -p tcp --sport 80 -j NOTRACK && \
                 iptables -t raw -A OUTPUT -p tcp --dport 80 -j NOTRACK && \
                 iptables -t raw -A OUTPUT -p tcp --sport 80 -j NOTRACK",
            )?;
        }
        steps.push(step(
            "NOTRACK",
            true,
            "raw-table NOTRACK for port 80 in every lab namespace".into(),
        ));
    }
    in_netns(
        lab.server_netns(),
        &format!("sysctl -qw net.core.somaxconn={SOMAXCONN}"),
    )?;
    steps.push(step(
        "somaxconn",
        true,
        format!("{SOMAXCONN} in the server's namespace"),
    ));
    Ok(steps)
}

fn step(setting: &str, applied: bool, detail: String) -> TuningStep {
    TuningStep {
        setting: setting.to_owned(),
        applied,
        detail,
    }
}

/// A network device as `ip -details -json link` lists it.
#[derive(Deserialize)]
struct Device {
    ifname: String,
    num_tx_queues: u32,
}

/// The devices of namespace `netns`.
fn devices(netns: &str) -> Result<Vec<Device>> {
    let json = ip(
        &["-netns", netns, "-details", "-json", "link", "show"],
        &format!("listing the devices of {netns}"),
    )?;
    serde_json::from_slice(&json)
        .with_context(|| format!("reading ip's list of the devices of {netns}"))
}

/// `ip netns exec` gives the script the namespace's own /sys.
fn in_netns(netns: &str, script: &str) -> Result<()> {
    ip(
        &["netns", "exec", netns, "sh", "-c", script],
        &format!("tuning {netns}"),
    )?;
    Ok(())
}

/// Runs `ip` with `args` and returns what it printed; an error says what
/// it was `doing` and what ip said.
fn ip(args: &[&str], doing: &str) -> Result<Vec<u8>> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("{doing}: running ip"))?;
    if !output.status.success() {
        bail!(
            "{doing}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output.stdout)
}
