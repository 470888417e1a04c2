//! The container networking modes of the study, and what each needs from
//! the lab. Adding a mode means a variant here and an arm in
//! `datapath::build`; the compiler points at every other place.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Most nodes any mode supports: node addresses are `10.77.0.N` (`.254` is
/// the router) and pod subnets `10.78.N.0/24`.
pub const MAX_NODES: usize = 250;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Docker `--net=host`: client and server run in the node namespaces
    /// themselves. The baseline.
    Host,
    /// Docker's default network: pods on `docker0`, the server published
    /// with a DNAT port mapping, pod egress masqueraded.
    Bridge,
    /// Flannel host-gw: pods on `cni0`, routes to the other nodes' pod
    /// subnets via their node addresses.
    FlannelHostgw,
    /// Flannel VXLAN: pods on `cni0`, other nodes' pod subnets through
    /// `flannel.1` (VNI 1, UDP 8472) with static neighbour and FDB entries.
    FlannelVxlan,
    /// Flannel VXLAN with netprobe's decapsulation fast path on every node's
    /// `eth0` (TC hook: on the lab's veth wire, native XDP rebuilds every
    /// skb and is the slower one).
    VxlanFastpath,
    /// ipvlan L2 on the node uplink; needs CONFIG_IPVLAN.
    Ipvlan,
    /// macvlan bridge mode on the node uplink.
    Macvlan,
    /// Flannel aws-vpc: pods on `cni0`, pod subnets routed by a router
    /// namespace standing for the VPC route table.
    AwsVpc,
}

/// How pods attach to their node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PodNet {
    /// No pods: containers share the node's namespace.
    HostNetwork,
    /// Behind Docker's `docker0` bridge, reached through a published port.
    Docker,
    /// Behind a CNI `cni0` bridge on a per-node subnet, routed by the node.
    Cni,
    /// A virtual device on the node uplink, on the node subnet.
    Uplink,
}

#[derive(Debug, Error)]
#[error("unknown mode {0:?} (modes: {modes})", modes = Mode::names())]
pub struct UnknownMode(String);

impl Mode {
    pub const ALL: [Mode; 8] = [
        Mode::Host,
        Mode::Bridge,
        Mode::FlannelHostgw,
        Mode::FlannelVxlan,
        Mode::VxlanFastpath,
        Mode::Ipvlan,
        Mode::Macvlan,
        Mode::AwsVpc,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Host => "host",
            Mode::Bridge => "bridge",
            Mode::FlannelHostgw => "flannel-hostgw",
            Mode::FlannelVxlan => "flannel-vxlan",
            Mode::VxlanFastpath => "vxlan-fastpath",
            Mode::Ipvlan => "ipvlan",
            Mode::Macvlan => "macvlan",
            Mode::AwsVpc => "aws-vpc",
        }
    }

    /// All mode names, comma-separated, for help and error texts.
    pub fn names() -> String {
        Mode::ALL.map(Mode::name).join(", ")
    }

    /// The most nodes the mode supports, and why.
    pub fn node_limit(self) -> (usize, &'static str) {
        match self {
            Mode::AwsVpc => (50, "the VPC route table holds at most 50 routes"),
            _ => (
                MAX_NODES,
                "node addresses 10.77.0.N and pod subnets 10.78.N.0/24 leave room for 250",
            ),
        }
    }

    pub(crate) fn pod_net(self) -> PodNet {
        match self {
            Mode::Host => PodNet::HostNetwork,
            Mode::Bridge => PodNet::Docker,
            Mode::FlannelHostgw | Mode::FlannelVxlan | Mode::VxlanFastpath | Mode::AwsVpc => {
                PodNet::Cni
            }
            Mode::Ipvlan | Mode::Macvlan => PodNet::Uplink,
        }
    }

    pub fn has_pods(self) -> bool {
        self.pod_net() != PodNet::HostNetwork
    }

    /// Whether nodes forward packets between their uplink and their pods.
    pub(crate) fn nodes_route(self) -> bool {
        matches!(self.pod_net(), PodNet::Docker | PodNet::Cni)
    }

    /// Whether the segment has a router namespace (the VPC route table).
    pub(crate) fn has_router(self) -> bool {
        self == Mode::AwsVpc
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|mode| mode.name() == name)
            .ok_or_else(|| UnknownMode(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_serialize_alike() {
        for mode in Mode::ALL {
            assert_eq!(mode.name().parse::<Mode>().unwrap(), mode);
            assert_eq!(
                serde_json::to_string(&mode).unwrap(),
                format!("\"{}\"", mode.name())
            );
        }
    }

    #[test]
    fn unknown_mode_lists_the_modes() {
        let err = "vlan".parse::<Mode>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown mode \"vlan\" (modes: host, bridge, flannel-hostgw, flannel-vxlan, \
             vxlan-fastpath, ipvlan, macvlan, aws-vpc)"
        );
    }
}
