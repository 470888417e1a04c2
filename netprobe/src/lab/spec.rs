//! What a lab is asked to be, and which requests are refused before
//! anything is created.

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::mode::Mode;

pub const DEFAULT_NODES: usize = 2;
pub const DEFAULT_PODS_PER_NODE: usize = 1;
pub const DEFAULT_MTU: u32 = 1500;
/// Most pods per node: pod addresses are `.2` to `.251` of a /24.
pub const MAX_PODS_PER_NODE: usize = 250;
/// Longest prefix accepted; it is only a name, not worth more.
const MAX_PREFIX_LEN: usize = 32;
/// MTU bounds for the node uplinks: IPv4's minimum datagram size (which
/// also leaves VXLAN room for its 50 bytes) up to what veth takes.
const MTU_RANGE: std::ops::RangeInclusive<u32> = 576..=65535;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabSpec {
    /// Starts the name of every namespace of the lab (`PREFIX-node1`), its
    /// state file and nginx's directory: letters, digits and `_`.
    pub prefix: String,
    pub mode: Mode,
    pub nodes: usize,
    /// Pods per node; ignored in `host` mode, which has none.
    pub pods_per_node: usize,
    /// MTU of the node uplinks (`eth0`).
    pub mtu: u32,
    /// The nginx binary: looked up in PATH unless it holds a `/`.
    pub nginx: PathBuf,
    /// The netprobe binary that runs the fast path's sync process
    /// (`vxlan-fastpath`); by default this process's own executable when it
    /// is netprobe.
    pub netprobe: PathBuf,
}

/// This executable if it is netprobe (the CLI), else netprobe from PATH.
fn default_netprobe() -> PathBuf {
    std::env::current_exe()
        .ok()
        .filter(|exe| exe.file_name().is_some_and(|name| name == "netprobe"))
        .unwrap_or_else(|| PathBuf::from("netprobe"))
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("lab prefix {0:?} must be 1 to 32 letters, digits or '_'")]
    BadPrefix(String),
    #[error("a lab needs at least 2 nodes (client on node1, server on node2), not {0}")]
    TooFewNodes(usize),
    #[error("{mode} supports at most {max} nodes, not {asked}: {reason}")]
    TooManyNodes {
        mode: Mode,
        max: usize,
        asked: usize,
        reason: &'static str,
    },
    #[error("pods per node must be 1 to {MAX_PODS_PER_NODE}, not {0}")]
    BadPodsPerNode(usize),
    #[error("MTU must be {min} to {max}, not {0}", min = MTU_RANGE.start(), max = MTU_RANGE.end())]
    BadMtu(u32),
}

impl LabSpec {
    /// Two nodes with one pod each, MTU 1500, nginx from PATH.
    pub fn new(prefix: impl Into<String>, mode: Mode) -> Self {
        Self {
            prefix: prefix.into(),
            mode,
            nodes: DEFAULT_NODES,
            pods_per_node: DEFAULT_PODS_PER_NODE,
            mtu: DEFAULT_MTU,
            nginx: PathBuf::from("nginx"),
            netprobe: default_netprobe(),
        }
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        validate_prefix(&self.prefix)?;
        if self.nodes < 2 {
            return Err(SpecError::TooFewNodes(self.nodes));
        }
        let (max, reason) = self.mode.node_limit();
        if self.nodes > max {
            return Err(SpecError::TooManyNodes {
                mode: self.mode,
                max,
                asked: self.nodes,
                reason,
            });
        }
        if self.mode.has_pods() && !(1..=MAX_PODS_PER_NODE).contains(&self.pods_per_node) {
            return Err(SpecError::BadPodsPerNode(self.pods_per_node));
        }
        if !MTU_RANGE.contains(&self.mtu) {
            return Err(SpecError::BadMtu(self.mtu));
        }
        Ok(())
    }
}

/// Letters, digits and `_` only: a `-` would make the namespace names of
/// two prefixes overlap, a `/` would leave the state directory.
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), SpecError> {
    let valid = !prefix.is_empty()
        && prefix.len() <= MAX_PREFIX_LEN
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(SpecError::BadPrefix(prefix.to_owned()))
    }
}

/// `base` plus this process's id and a counter: a prefix no other test or
/// process uses at the same time.
pub fn unique_prefix(base: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{base}{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_requests() {
        let spec = LabSpec::new("t", Mode::AwsVpc);
        assert_eq!(spec.validate(), Ok(()));
        let check = |change: fn(&mut LabSpec)| {
            let mut spec = spec.clone();
            change(&mut spec);
            spec.validate().unwrap_err().to_string()
        };
        assert_eq!(
            check(|s| s.nodes = 51),
            "aws-vpc supports at most 50 nodes, not 51: the VPC route table holds at most 50 routes"
        );
        assert!(check(|s| s.nodes = 0).contains("at least 2 nodes"));
        assert!(check(|s| s.prefix = "a-b".into()).contains("prefix"));
        assert!(check(|s| s.prefix = String::new()).contains("prefix"));
        assert!(check(|s| s.pods_per_node = 0).contains("pods per node"));
        assert!(check(|s| s.mtu = 100).contains("MTU"));
    }

    #[test]
    fn host_mode_ignores_pods_per_node() {
        let mut spec = LabSpec::new("t", Mode::Host);
        spec.pods_per_node = 0;
        assert_eq!(spec.validate(), Ok(()));
    }

    #[test]
    fn unique_prefixes_are_valid_and_differ() {
        let (a, b) = (unique_prefix("np"), unique_prefix("np"));
        assert_ne!(a, b);
        assert_eq!(LabSpec::new(a, Mode::Host).validate(), Ok(()));
    }
}
