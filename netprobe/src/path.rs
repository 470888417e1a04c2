//! The datapath behind an interface (the devices a packet crosses, and the
//! fast path that may skip some), the observation points on each direction
//! of it, in the order a packet crosses them, and the kernel hook that
//! observes each. [`crate::discovery`] finds a datapath on a node.

use std::{fmt, net::IpAddr};

use netprobe_common::probe::{
    DIRECTION_EGRESS, DIRECTION_INGRESS, MAX_HOPS, MAX_PODS, pod_segment,
};
use serde::{Deserialize, Serialize};

pub use crate::hooks::Hook;

/// One device: ifindex values repeat across namespaces, so the namespace is
/// part of its identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub name: String,
    pub ifindex: u32,
    /// Inode of its network namespace.
    pub netns_inode: u32,
    /// Name of its namespace in /run/netns; `None` for the node's own.
    pub netns_name: Option<String>,
    pub kind: String,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.netns_name {
            Some(netns) => write!(f, "{}@{netns}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// What a packet crosses between the NIC and a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datapath {
    pub nic: Device,
    /// XDP program already on the NIC, if any (someone else's).
    pub nic_xdp_prog_id: Option<u32>,
    pub vxlan: Vec<Device>,
    pub bridges: Vec<Device>,
    pub bridge_ports: Vec<Device>,
    pub pods: Vec<Device>,
    /// Each pod namespace with a device in `pods`: what tells its packets
    /// and devices from other pods'.
    pub pod_ends: Vec<PodEnd>,
    /// netprobe's VXLAN fast path on the NIC, if enabled: packets for local
    /// pods go straight from the NIC to the pod, and the pods' packets for
    /// other nodes straight from their veths to the NIC.
    pub fastpath: Option<FastpathHook>,
}

/// What tells one pod's packets and devices apart from other pods': its
/// namespace, the bridge port its veth pairs with, and its addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodEnd {
    pub netns: String,
    /// Ifindex of its bridge port (host-side veth) in the node, if any.
    pub port: Option<u32>,
    pub addresses: Vec<IpAddr>,
}

/// A pod whose segments are counted apart from other pods' (`--by-pod`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// Its index in the probes' `POD_ADDRS`, 1 up.
    pub index: u8,
    /// Its network namespace's name.
    pub netns: String,
    /// Its devices on the path: its own and its bridge port.
    pub devices: Vec<Device>,
    pub addresses: Vec<IpAddr>,
}

impl Datapath {
    /// The pods on the path, indexed from 1 in discovery order. Past
    /// [`MAX_PODS`] a pod is counted over all pods only.
    pub fn indexed_pods(&self) -> Vec<Pod> {
        self.pod_ends
            .iter()
            .filter_map(|end| {
                let mut devices: Vec<Device> = self
                    .pods
                    .iter()
                    .filter(|device| device.netns_name.as_deref() == Some(end.netns.as_str()))
                    .cloned()
                    .collect();
                // A pod whose own device is not on the path is not measured.
                if devices.is_empty() {
                    return None;
                }
                let port = self
                    .bridge_ports
                    .iter()
                    .filter(|port| Some(port.ifindex) == end.port);
                devices.extend(port.cloned());
                Some((end, devices))
            })
            .take(MAX_PODS)
            .zip(1..=u8::MAX)
            .map(|((end, devices), index)| Pod {
                index,
                netns: end.netns.clone(),
                devices,
                addresses: end.addresses.clone(),
            })
            .collect()
    }
}

/// Where the fast path runs (`--hook`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FastpathHook {
    /// XDP on the interface: strip the headers, redirect through a DEVMAP.
    #[default]
    Xdp,
    /// TC ingress (tcx): strip the headers, `bpf_redirect_peer` into the pod.
    Tc,
}

impl FastpathHook {
    pub fn name(self) -> &'static str {
        match self {
            FastpathHook::Xdp => "xdp",
            FastpathHook::Tc => "tc",
        }
    }
}

/// Which way a packet travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the wire to the pod's socket.
    Ingress,
    /// From the pod's socket to the wire.
    Egress,
}

impl Direction {
    pub const BOTH: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    pub fn code(self) -> u32 {
        match self {
            Direction::Ingress => DIRECTION_INGRESS,
            Direction::Egress => DIRECTION_EGRESS,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress: wire to socket",
            Direction::Egress => "egress: socket to wire",
        }
    }
}

/// What a packet crosses at a hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Nic,
    Vxlan,
    Bridge,
    BridgePort,
    Pod,
    Socket,
}

impl Role {
    /// Whether a hop of this role belongs to one pod: its bridge port, its
    /// own device, its socket.
    pub fn of_pod(self) -> bool {
        matches!(self, Role::BridgePort | Role::Pod | Role::Socket)
    }
}

/// What the time between two consecutive points is spent on: what the
/// attribution of a mode's extra latency is split by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentKind {
    /// Driver to TC: skb allocation, GRO.
    Nic,
    /// The node's IP and UDP receive and VXLAN decapsulation.
    VxlanDecap,
    /// The node's IP forwarding (and NAT) between its devices.
    Routing,
    /// Bridge forwarding between the bridge and its port.
    Bridge,
    /// Crossing a veth pair between namespaces.
    Veth,
    /// Crossing a macvlan/ipvlan device, with no bridge and no routing.
    Macvlan,
    /// The endpoint's IP/TCP stack and the application's wake-up.
    Stack,
    /// VXLAN encapsulation and the node's UDP and IP output.
    VxlanEncap,
    /// The NIC's queueing discipline until the driver takes the packet.
    Qdisc,
    /// The link from one node's NIC to another's: one veth in the lab, the
    /// router too in aws-vpc. No path has it; the bench times it by joining
    /// the two nodes' samples of the same packets.
    Link,
    /// The server application, from reading a request to writing the reply.
    Application,
}

impl SegmentKind {
    /// What a segment from `from` to `to` is spent on.
    pub fn between(from: &Hop, to: &Hop) -> SegmentKind {
        use Role::*;
        match (from.role, to.role) {
            (Nic, Nic) if to.hook == Hook::NetDevStartXmit => SegmentKind::Qdisc,
            (Nic, Nic) => SegmentKind::Nic,
            (Nic, Vxlan) => SegmentKind::VxlanDecap,
            (Nic | Vxlan, Bridge) | (Bridge, Nic | Vxlan) => SegmentKind::Routing,
            (Bridge, BridgePort) | (BridgePort, Bridge) => SegmentKind::Bridge,
            (BridgePort, Pod) | (Pod, BridgePort) => SegmentKind::Veth,
            (Nic, Pod) | (Pod, Nic) => SegmentKind::Macvlan,
            (Vxlan, Nic) => SegmentKind::VxlanEncap,
            _ => SegmentKind::Stack,
        }
    }

    pub const ALL: [SegmentKind; 11] = [
        SegmentKind::Nic,
        SegmentKind::VxlanDecap,
        SegmentKind::Routing,
        SegmentKind::Bridge,
        SegmentKind::Veth,
        SegmentKind::Macvlan,
        SegmentKind::Stack,
        SegmentKind::VxlanEncap,
        SegmentKind::Qdisc,
        SegmentKind::Link,
        SegmentKind::Application,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            SegmentKind::Nic => "nic",
            SegmentKind::VxlanDecap => "vxlan decap",
            SegmentKind::Routing => "routing",
            SegmentKind::Bridge => "bridge",
            SegmentKind::Veth => "veth",
            SegmentKind::Macvlan => "macvlan",
            SegmentKind::Stack => "stack",
            SegmentKind::VxlanEncap => "vxlan encap",
            SegmentKind::Qdisc => "qdisc",
            SegmentKind::Link => "node link",
            SegmentKind::Application => "application",
        }
    }
}

/// One observation point: a hook on one or more devices of the same role
/// (every pod's veth is the same hop).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    pub role: Role,
    pub hook: Hook,
    pub devices: Vec<Device>,
}

impl Hop {
    /// Short name for reports: the device (or how many) and, on the NIC,
    /// the hook.
    pub fn label(&self) -> String {
        let devices = match self.devices.as_slice() {
            [] => "socket".to_owned(),
            [device] => device.to_string(),
            [first, ..] => match self.role {
                Role::Pod => format!("{} pods", self.devices.len()),
                _ => format!("{} +{}", first.name, self.devices.len() - 1),
            },
        };
        match (self.role, self.hook) {
            (Role::Nic, hook) => format!("{devices} {}", hook.describe()),
            (Role::Socket, Hook::SocketRead) => "socket read".to_owned(),
            (Role::Socket, _) => "socket write".to_owned(),
            (Role::Pod, _) if self.devices.len() == 1 => format!("pod {devices}"),
            _ => devices,
        }
    }
}

impl Hop {
    /// The hop as one pod's packets cross it: with that pod's devices only,
    /// if it is a pod's hop.
    pub fn of_pod(&self, pod: &Pod) -> Hop {
        let devices = if self.role.of_pod() {
            self.devices
                .iter()
                .filter(|device| pod.devices.contains(device))
                .cloned()
                .collect()
        } else {
            self.devices.clone()
        };
        Hop {
            devices,
            ..self.clone()
        }
    }
}

/// A segment as reports show it: over all pods, or one pod's.
pub struct SegmentRow<'a> {
    /// The hop the segment ends at.
    pub hop: usize,
    pub from: String,
    pub to: String,
    /// The pod it belongs to, when the path counts pods apart.
    pub pod: Option<&'a Pod>,
}

/// A hop at its place on the path.
pub struct Placed<'a> {
    pub direction: Direction,
    /// Its position on its direction's path.
    pub index: usize,
    pub hop: &'a Hop,
}

impl Placed<'_> {
    /// The program that observes this place.
    pub fn program(&self) -> &'static str {
        self.hop.hook.program(self.direction.code(), self.index)
    }
}

/// A program a path runs, and the hook it observes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathProgram {
    pub hook: Hook,
    pub name: &'static str,
}

/// The hops of both directions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbePath {
    pub ingress: Vec<Hop>,
    pub egress: Vec<Hop>,
    /// The pods whose segments are counted apart (`--by-pod`); empty when
    /// every segment is counted over all pods.
    pub pods: Vec<Pod>,
}

impl ProbePath {
    /// Lays out the hops of `datapath`. `with_xdp` is false when the NIC's
    /// XDP hook cannot be used; `on_request` adds the hooks observed only
    /// when asked for; `by_pod` counts each pod's segments apart.
    pub fn new(datapath: &Datapath, with_xdp: bool, on_request: bool, by_pod: bool) -> Self {
        let nic = || vec![datapath.nic.clone()];
        let hop = |role, hook, devices: &[Device]| Hop {
            role,
            hook,
            devices: devices.to_vec(),
        };
        // With the fast path, packets for local pods skip the vxlan device,
        // the bridge and its ports. Its XDP hook takes them before the NIC's
        // TC (and holds XDP); its TC hook hands them to the pod with
        // redirect_peer, which re-enters the receive path of the pod's
        // interface past where netif_receive_skb fires. So do macvlan and
        // ipvlan (RX_HANDLER_ANOTHER): only a veth peer receives a packet
        // anew. The pod's receive hop stays with veth peers, as that
        // boundary has it. Leaving, the pod's packets go from its veth's
        // TC ingress (after the probe, first in that chain) straight to
        // the NIC's egress.
        let kernel_path = datapath.fastpath.is_none();
        let nic_tc = datapath.fastpath != Some(FastpathHook::Xdp);
        let receiving_pods: Vec<Device> = match datapath.fastpath {
            Some(FastpathHook::Tc) => Vec::new(),
            _ => datapath
                .pods
                .iter()
                .filter(|pod| pod.kind == "veth")
                .cloned()
                .collect(),
        };
        let ingress = [
            with_xdp.then(|| hop(Role::Nic, Hook::Xdp, &nic())),
            nic_tc.then(|| hop(Role::Nic, Hook::TcIngress, &nic())),
            kernel_path.then(|| hop(Role::Vxlan, Hook::DeviceIngress, &datapath.vxlan)),
            kernel_path.then(|| hop(Role::Bridge, Hook::DeviceEgress, &datapath.bridges)),
            kernel_path.then(|| hop(Role::BridgePort, Hook::DeviceEgress, &datapath.bridge_ports)),
            Some(hop(Role::Pod, Hook::DeviceIngress, &receiving_pods)),
            Some(hop(Role::Socket, Hook::SocketRead, &[])),
        ];
        let egress = [
            Some(hop(Role::Socket, Hook::SocketWrite, &[])),
            Some(hop(Role::Pod, Hook::DeviceEgress, &datapath.pods)),
            Some(hop(
                Role::BridgePort,
                Hook::DeviceIngress,
                &datapath.bridge_ports,
            )),
            kernel_path.then(|| hop(Role::Bridge, Hook::DeviceIngress, &datapath.bridges)),
            kernel_path.then(|| hop(Role::Vxlan, Hook::DeviceEgress, &datapath.vxlan)),
            Some(hop(Role::Nic, Hook::TcEgress, &nic())),
            Some(hop(Role::Nic, Hook::NetDevStartXmit, &nic())),
        ];
        let keep = |hops: [Option<Hop>; 7]| -> Vec<Hop> {
            hops.into_iter()
                .flatten()
                .filter(|hop| hop.role == Role::Socket || !hop.devices.is_empty())
                .filter(|hop| on_request || !hop.hook.definition().on_request)
                .collect()
        };
        let path = Self {
            ingress: keep(ingress),
            egress: keep(egress),
            pods: if by_pod {
                datapath.indexed_pods()
            } else {
                Vec::new()
            },
        };
        debug_assert!(path.ingress.len() <= MAX_HOPS && path.egress.len() <= MAX_HOPS);
        path
    }

    pub fn hops(&self, direction: Direction) -> &[Hop] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    /// A bit per hop of `direction` that belongs to one pod
    /// (`ProbeConfig::pod_hops`); none when no pod is counted apart.
    pub fn pod_hops(&self, direction: Direction) -> u32 {
        if self.pods.is_empty() {
            return 0;
        }
        self.hops(direction)
            .iter()
            .enumerate()
            .filter(|(_, hop)| hop.role.of_pod())
            .fold(0, |bits, (index, _)| bits | 1 << index)
    }

    /// The segments of `direction` in path order: one over all pods where
    /// the segment is node-wide, one per pod where either end is a pod's.
    pub fn segment_rows(&self, direction: Direction) -> Vec<SegmentRow<'_>> {
        let hops = self.hops(direction);
        let pod_hops = self.pod_hops(direction);
        let mut rows = Vec::new();
        for hop in 1..hops.len() {
            let (from, to) = (&hops[hop - 1], &hops[hop]);
            if !pod_segment(pod_hops, hop as u32) {
                rows.push(SegmentRow {
                    hop,
                    from: from.label(),
                    to: to.label(),
                    pod: None,
                });
                continue;
            }
            rows.extend(self.pods.iter().map(|pod| SegmentRow {
                hop,
                from: from.of_pod(pod).label(),
                to: to.of_pod(pod).label(),
                pod: Some(pod),
            }));
        }
        rows
    }

    /// Removes every hop that uses `hook` (it is not available here).
    pub fn without_hook(&mut self, hook: Hook) {
        self.ingress.retain(|hop| hop.hook != hook);
        self.egress.retain(|hop| hop.hook != hook);
    }

    /// Every hop of both directions at its place on the path.
    pub fn placed(&self) -> impl Iterator<Item = Placed<'_>> {
        Direction::BOTH.into_iter().flat_map(move |direction| {
            self.hops(direction)
                .iter()
                .enumerate()
                .map(move |(index, hop)| Placed {
                    direction,
                    index,
                    hop,
                })
        })
    }

    /// Every program the path runs, once each, in path order.
    pub fn programs(&self) -> Vec<PathProgram> {
        let mut programs: Vec<PathProgram> = Vec::new();
        for placed in self.placed() {
            let program = PathProgram {
                hook: placed.hop.hook,
                name: placed.program(),
            };
            if !programs.contains(&program) {
                programs.push(program);
            }
        }
        programs
    }

    pub fn uses(&self, hook: Hook) -> bool {
        self.ingress
            .iter()
            .chain(&self.egress)
            .any(|hop| hop.hook == hook)
    }

    /// Namespaces whose sockets are the path's ends: the pods', or the node's
    /// when nothing runs in pods.
    pub fn socket_namespaces(&self, datapath: &Datapath) -> Vec<u32> {
        let mut namespaces: Vec<u32> = datapath.pods.iter().map(|pod| pod.netns_inode).collect();
        if namespaces.is_empty() {
            namespaces.push(datapath.nic.netns_inode);
        }
        namespaces.sort_unstable();
        namespaces.dedup();
        namespaces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(name: &str, ifindex: u32, netns: Option<&str>, kind: &str) -> Device {
        Device {
            name: name.to_owned(),
            ifindex,
            netns_inode: netns.map_or(1, |netns| netns.len() as u32 + 100),
            netns_name: netns.map(str::to_owned),
            kind: kind.to_owned(),
        }
    }

    /// A bridge with two pods' veths.
    fn datapath() -> Datapath {
        let pod = |k: u32| PodEnd {
            netns: format!("pod{k}"),
            port: Some(10 + k),
            addresses: vec![IpAddr::from([10, 0, 0, k as u8])],
        };
        Datapath {
            nic: device("eth0", 2, None, "veth"),
            nic_xdp_prog_id: None,
            vxlan: Vec::new(),
            bridges: vec![device("cni0", 3, None, "bridge")],
            bridge_ports: vec![
                device("veth1", 11, None, "veth"),
                device("veth2", 12, None, "veth"),
            ],
            pods: vec![
                device("eth0", 2, Some("pod1"), "veth"),
                device("eth0", 2, Some("pod2"), "veth"),
            ],
            pod_ends: vec![pod(1), pod(2)],
            fastpath: None,
        }
    }

    fn rows(path: &ProbePath, direction: Direction) -> Vec<(String, String, Option<u8>)> {
        path.segment_rows(direction)
            .into_iter()
            .map(|row| (row.from, row.to, row.pod.map(|pod| pod.index)))
            .collect()
    }

    fn row(from: &str, to: &str, pod: Option<u8>) -> (String, String, Option<u8>) {
        (from.to_owned(), to.to_owned(), pod)
    }

    #[test]
    fn by_pod_splits_the_segments_with_a_pods_hop_at_either_end() {
        let path = ProbePath::new(&datapath(), false, false, true);
        assert_eq!(path.pods.len(), 2);
        assert_eq!(path.pod_hops(Direction::Ingress), 0b11100);
        assert_eq!(
            rows(&path, Direction::Ingress),
            [
                row("eth0 TC ingress", "cni0", None),
                row("cni0", "veth1", Some(1)),
                row("cni0", "veth2", Some(2)),
                row("veth1", "pod eth0@pod1", Some(1)),
                row("veth2", "pod eth0@pod2", Some(2)),
                row("pod eth0@pod1", "socket read", Some(1)),
                row("pod eth0@pod2", "socket read", Some(2)),
            ]
        );
        assert_eq!(
            rows(&path, Direction::Egress)[4..],
            [
                row("veth1", "cni0", Some(1)),
                row("veth2", "cni0", Some(2)),
                row("cni0", "eth0 TC egress", None),
            ]
        );
    }

    #[test]
    fn the_nics_qdisc_is_observed_only_on_request() {
        let last_egress_hook = |on_request| {
            let path = ProbePath::new(&datapath(), false, on_request, false);
            path.egress.last().map(|hop| hop.hook)
        };
        assert_eq!(last_egress_hook(false), Some(Hook::TcEgress));
        assert_eq!(last_egress_hook(true), Some(Hook::NetDevStartXmit));
    }

    #[test]
    fn without_by_pod_every_segment_is_over_all_pods() {
        let path = ProbePath::new(&datapath(), false, false, false);
        assert_eq!(path.pod_hops(Direction::Egress), 0);
        assert_eq!(
            rows(&path, Direction::Ingress)[1..3],
            [
                row("cni0", "veth1 +1", None),
                row("veth1 +1", "2 pods", None),
            ]
        );
        // A pod whose own device is left out is none of the path's pods.
        let mut datapath = datapath();
        datapath.pods.pop();
        assert_eq!(datapath.indexed_pods().len(), 1);
    }
}
