//! System metrics around one benchmark run: CPU time per core (user,
//! system, softirq), context switches, and packets per device of the lab.

use std::{
    fs, io, thread,
    time::{Duration, Instant},
};

use crate::{
    bench::analysis::{CpuUsage, DevicePackets, SystemMetrics},
    netns::{NetNs, NetNsError},
};

/// Cumulative counters at one instant.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Per core: (user, system, softirq, total) in clock ticks.
    cpus: Vec<[u64; 4]>,
    context_switches: u64,
    devices: Vec<DevicePackets>,
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("reading {what}: {cause}")]
    Read {
        what: &'static str,
        cause: io::Error,
    },
    #[error(transparent)]
    NetNs(#[from] NetNsError),
}

impl Counters {
    /// Reads the counters now, with the devices of `namespaces`.
    pub fn read(namespaces: &[&str]) -> Result<Self, MetricsError> {
        let stat = fs::read_to_string("/proc/stat").map_err(|cause| MetricsError::Read {
            what: "/proc/stat",
            cause,
        })?;
        let mut counters = parse_stat(&stat);
        for name in namespaces {
            let dev =
                NetNs::named(name)?.run(|| fs::read_to_string("/proc/thread-self/net/dev"))?;
            let dev = dev.map_err(|cause| MetricsError::Read {
                what: "/proc/net/dev",
                cause,
            })?;
            counters.devices.extend(parse_net_dev(name, &dev));
        }
        Ok(counters)
    }

    /// What was counted from `earlier` to `self`.
    pub fn since(&self, earlier: &Counters) -> Counters {
        let mut delta = self.clone();
        delta.combine(earlier, u64::saturating_sub);
        delta
    }

    /// Adds the counts of another interval (`since` of both).
    pub fn add(&mut self, other: &Counters) {
        if self.cpus.is_empty() {
            self.cpus = vec![[0; 4]; other.cpus.len()];
        }
        self.combine(other, u64::saturating_add);
    }

    /// Each counter of `self` with the same one of `other`, by `op`; devices
    /// `other` has and `self` lacks count from zero.
    fn combine(&mut self, other: &Counters, op: fn(u64, u64) -> u64) {
        for (mine, theirs) in self.cpus.iter_mut().zip(&other.cpus) {
            for (mine, theirs) in mine.iter_mut().zip(theirs) {
                *mine = op(*mine, *theirs);
            }
        }
        self.context_switches = op(self.context_switches, other.context_switches);
        for theirs in &other.devices {
            let mine = match self
                .devices
                .iter_mut()
                .find(|mine| mine.netns == theirs.netns && mine.device == theirs.device)
            {
                Some(mine) => mine,
                None => {
                    self.devices.push(DevicePackets {
                        rx_packets: 0,
                        tx_packets: 0,
                        ..theirs.clone()
                    });
                    self.devices.last_mut().expect("just pushed")
                }
            };
            mine.rx_packets = op(mine.rx_packets, theirs.rx_packets);
            mine.tx_packets = op(mine.tx_packets, theirs.tx_packets);
        }
    }

    /// CPU time spent in user, system and softirq context, over all CPUs.
    pub fn busy(&self) -> Duration {
        let ticks: u64 = self.cpus.iter().map(|cpu| cpu[0] + cpu[1] + cpu[2]).sum();
        // SAFETY: sysconf only reads a configuration value.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Duration::from_secs_f64(ticks as f64 / per_second)
    }

    /// CPU shares, rates and packets of counts taken over `seconds`.
    pub fn metrics(&self, seconds: f64) -> SystemMetrics {
        let cpus = self
            .cpus
            .iter()
            .enumerate()
            .map(|(cpu, counts)| {
                let total = counts[3].max(1) as f64;
                let share = |field: usize| 100.0 * counts[field] as f64 / total;
                CpuUsage {
                    cpu,
                    user: share(0),
                    system: share(1),
                    softirq: share(2),
                }
            })
            .collect();
        SystemMetrics {
            cpus,
            context_switches_per_s: self.context_switches as f64 / seconds.max(f64::MIN_POSITIVE),
            devices: self
                .devices
                .iter()
                .filter(|device| device.rx_packets + device.tx_packets > 0)
                .cloned()
                .collect(),
        }
    }
}

/// Waits until every CPU spent at least `idle_share` of one `window` idle
/// or `timeout` passes; whether it did. Labs just built or removed leave
/// the kernel work for a while (freeing namespaces, above all), which
/// would land in the first runs' latency.
pub fn settle(idle_share: f64, window: Duration, timeout: Duration) -> Result<bool, MetricsError> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let before = Counters::read(&[])?;
        thread::sleep(window);
        let busy = Counters::read(&[])?.since(&before);
        let quiet = busy.cpus.iter().all(|[user, system, softirq, total]| {
            (user + system + softirq) as f64 <= (1.0 - idle_share) * *total as f64
        });
        if quiet {
            return Ok(true);
        }
    }
    Ok(false)
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
        let metrics = after.since(&before).metrics(2.0);
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
    fn intervals_add_up() {
        let device = |rx_packets, tx_packets| DevicePackets {
            netns: "ns".into(),
            device: "eth0".into(),
            rx_packets,
            tx_packets,
        };
        let at = |user, total, ctxt, rx| Counters {
            cpus: vec![[user, 0, 0, total]],
            context_switches: ctxt,
            devices: vec![device(rx, rx)],
        };
        let mut total = at(10, 100, 100, 5).since(&at(0, 0, 0, 0));
        total.add(&at(50, 500, 400, 20).since(&at(40, 400, 300, 15)));
        let metrics = total.metrics(2.0);
        assert_eq!(metrics.context_switches_per_s, 100.0);
        assert_eq!(metrics.devices, vec![device(10, 10)]);
        // 20 ticks of 200, not the mean of each interval's share.
        assert_eq!(metrics.cpus[0].user, 10.0);
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
