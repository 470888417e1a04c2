//! `--tune`: the study's tuning, where it means something inside network
//! namespaces. Each setting is reported as applied or not applicable; the
//! machine-wide ones are put back when the bench ends.

use std::{fs, process::Command};

use anyhow::{Context as _, Result, bail};

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
    for netns in &namespaces {
        in_netns(
            netns,
            &format!(
                "for q in /sys/class/net/*/queues/rx-*; do \
                 echo {mask} > $q/rps_cpus; echo {QUEUE_FLOW_COUNT} > $q/rps_flow_cnt; done; \
                 for q in /sys/class/net/*/queues/tx-*; do echo {mask} > $q/xps_cpus; done"
            ),
        )?;
    }
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
        step(
            "XPS",
            true,
            format!("xps_cpus {mask} on every transmit queue of the lab"),
        ),
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

/// `ip netns exec` gives the script the namespace's own /sys.
fn in_netns(netns: &str, script: &str) -> Result<()> {
    let output = Command::new("ip")
        .args(["netns", "exec", netns, "sh", "-c", script])
        .output()
        .context("running ip netns exec")?;
    if !output.status.success() {
        bail!(
            "tuning {netns}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
