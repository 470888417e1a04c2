//! System metrics around one benchmark run: CPU time per core (user,
//! system, softirq), context switches, and packets per device of the lab.

use std::{fs, io};

use serde::{Deserialize, Serialize};

use crate::netns::{NetNs, NetNsError};

/// Cumulative counters at one instant.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Per core: (user, system, softirq, total) in clock ticks.
    cpus: Vec<[u64; 4]>,
    context_switches: u64,
    devices: Vec<DevicePackets>,
}

/// What a run used, from two [`Counters`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemMetrics {
    pub cpus: Vec<CpuUsage>,
    pub context_switches_per_s: f64,
    pub devices: Vec<DevicePackets>,
}

/// Share of one core's time, in percent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    pub cpu: usize,
    pub user: f64,
    pub system: f64,
    pub softirq: f64,
}

/// Packets through one device (during a run, once subtracted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePackets {
    pub netns: String,
    pub device: String,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("reading {what}: {source}")]
    Read {
        what: &'static str,
        source: io::Error,
    },
    #[error(transparent)]
    NetNs(#[from] NetNsError),
}

impl Counters {
    /// Reads the counters now, with the devices of `namespaces`.
    pub fn read(namespaces: &[&str]) -> Result<Self, MetricsError> {
        let stat = fs::read_to_string("/proc/stat").map_err(|source| MetricsError::Read {
            what: "/proc/stat",
            source,
        })?;
        let mut counters = parse_stat(&stat);
        for name in namespaces {
            let dev =
                NetNs::named(name)?.run(|| fs::read_to_string("/proc/thread-self/net/dev"))?;
            let dev = dev.map_err(|source| MetricsError::Read {
                what: "/proc/net/dev",
                source,
            })?;
            counters.devices.extend(parse_net_dev(name, &dev));
        }
        Ok(counters)
    }

    /// What happened between `self` (earlier) and `later`, `seconds` apart.
    pub fn until(&self, later: &Counters, seconds: f64) -> SystemMetrics {
        let cpus = self
            .cpus
            .iter()
            .zip(&later.cpus)
            .enumerate()
            .map(|(cpu, (before, after))| {
                let total = after[3].saturating_sub(before[3]).max(1) as f64;
                let share = |field: usize| {
                    100.0 * after[field].saturating_sub(before[field]) as f64 / total
                };
                CpuUsage {
                    cpu,
                    user: share(0),
                    system: share(1),
                    softirq: share(2),
                }
            })
            .collect();
        let devices = later
            .devices
            .iter()
            .map(|after| {
                let before = self
                    .devices
                    .iter()
                    .find(|before| before.netns == after.netns && before.device == after.device);
                DevicePackets {
                    rx_packets: after.rx_packets - before.map_or(0, |before| before.rx_packets),
                    tx_packets: after.tx_packets - before.map_or(0, |before| before.tx_packets),
                    ..after.clone()
                }
            })
            .filter(|device| device.rx_packets + device.tx_packets > 0)
            .collect();
        SystemMetrics {
            cpus,
            context_switches_per_s: later.context_switches.saturating_sub(self.context_switches)
                as f64
                / seconds.max(f64::MIN_POSITIVE),
            devices,
        }
    }
}

/// `cpuN user nice system idle iowait irq softirq steal ...` and `ctxt N`.
fn parse_stat(stat: &str) -> Counters {
    let mut counters = Counters::default();
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some(name) if name.starts_with("cpu") && name.len() > 3 => {
                let values: Vec<u64> = fields.filter_map(|value| value.parse().ok()).collect();
                let field = |index: usize| values.get(index).copied().unwrap_or(0);
                // user + nice, system, softirq, and everything.
                counters
                    .cpus
                    .push([field(0) + field(1), field(2), field(6), values.iter().sum()]);
            }
            Some("ctxt") => {
                counters.context_switches = fields.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            }
            _ => {}
        }
    }
    counters
}

/// `  name: rx_bytes rx_packets ... tx_bytes tx_packets ...`
fn parse_net_dev(netns: &str, dev: &str) -> Vec<DevicePackets> {
    dev.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, stats) = line.split_once(':')?;
            let values: Vec<u64> = stats
                .split_whitespace()
                .filter_map(|value| value.parse().ok())
                .collect();
            Some(DevicePackets {
                netns: netns.to_owned(),
                device: name.trim().to_owned(),
                rx_packets: *values.get(1)?,
                tx_packets: *values.get(9)?,
            })
        })
        .filter(|device| device.device != "lo")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_shares_and_context_switches() {
        let before = parse_stat("cpu  9 9 9 9\ncpu0 10 0 20 70 0 0 0 0\nctxt 100\n");
        let after = parse_stat("cpu  9 9 9 9\ncpu0 30 0 30 120 0 0 20 0\nctxt 300\n");
        let metrics = before.until(&after, 2.0);
        assert_eq!(
            metrics.cpus,
            vec![CpuUsage {
                cpu: 0,
                user: 20.0,
                system: 10.0,
                softirq: 20.0
            }]
        );
        assert_eq!(metrics.context_switches_per_s, 100.0);
    }

    #[test]
    fn device_packets() {
        let dev = "Inter-|   Receive\n face |bytes\n    lo: 1 2 0 0 0 0 0 0 1 2 0 0 0 0 0 0\n  eth0: 100 7 0 0 0 0 0 0 200 9 0 0 0 0 0 0\n";
        assert_eq!(
            parse_net_dev("ns", dev),
            vec![DevicePackets {
                netns: "ns".into(),
                device: "eth0".into(),
                rx_packets: 7,
                tx_packets: 9
            }]
        );
    }
}
