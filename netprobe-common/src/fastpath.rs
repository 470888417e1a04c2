//! The VXLAN fast path (`netprobe fastpath`): its load-time settings, map
//! entries and counters, for both directions: decapsulation on the node's
//! interface (ingress) and encapsulation on the pods' veths (egress).

use crate::shared_type;

/// Outer Ethernet, IPv4 (no options), UDP and VXLAN headers: what the fast
/// path strips in front of the inner Ethernet frame, and adds in front of a
/// pod's frame (whose Ethernet header becomes the outer one, and is added
/// again as the inner one).
pub const OUTER_LEN: usize = 14 + 20 + 8 + 8;
/// The outer headers and the inner Ethernet and IPv4 headers: everything
/// the rules read.
pub const HEADERS_LEN: usize = OUTER_LEN + 14 + 20;

/// Pods, remote nodes and local addresses the maps hold at most.
pub const MAX_PODS: u32 = 4096;
pub const MAX_REMOTES: u32 = 1024;
pub const MAX_LOCALS: usize = 8;
/// Prefixes the egress route map holds at most.
pub const MAX_ROUTES: u32 = 4096;

/// What the fast path matches, fixed when it is enabled.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastpathConfig {
    /// VXLAN network identifier.
    pub vni: u32,
    /// UDP destination port, host byte order.
    pub port: u16,
    /// The node interface's MAC: outer frames for other hosts are passed.
    pub nic_mac: [u8; 6],
    /// The vxlan device's MAC: inner frames for anything else (broadcast,
    /// another VTEP) are passed.
    pub vtep_mac: [u8; 6],
    pub _pad: u16,
}
shared_type!(FastpathConfig, 20);

/// This node's addresses, the outer destinations the fast path accepts:
/// few, so a scan of one array entry, far cheaper than a hash lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalAddresses {
    /// IPv4 addresses, their bytes in network order read as a native `u32`.
    pub addresses: [u32; MAX_LOCALS],
    /// How many of `addresses` are in use.
    pub count: u32,
}
shared_type!(LocalAddresses, 4 * MAX_LOCALS + 4);

impl LocalAddresses {
    /// The first [`MAX_LOCALS`] of `addresses`.
    pub fn new(addresses: impl IntoIterator<Item = u32>) -> Self {
        let mut locals = Self::default();
        for (slot, address) in locals.addresses.iter_mut().zip(addresses) {
            *slot = address;
            locals.count += 1;
        }
        locals
    }

    #[inline(always)]
    pub fn contains(&self, address: u32) -> bool {
        let count = self.count as usize;
        self.addresses
            .iter()
            .enumerate()
            .any(|(index, local)| index < count && *local == address)
    }
}

/// Where the inner packet for one pod address goes, and the Ethernet header
/// the kernel would give it on the bridge.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PodEntry {
    /// The pod's host-side veth, a bridge port.
    pub ifindex: u32,
    /// MTU of that veth: larger inner frames are passed to the kernel.
    pub mtu: u16,
    pub pod_mac: [u8; 6],
    pub bridge_mac: [u8; 6],
    pub _pad: u16,
}
shared_type!(PodEntry, 20);

/// Indices of the per-CPU counters: index 0 counts fast-pathed packets,
/// every other one packets passed to the kernel for that reason.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    Fastpathed = 0,
    /// Not IPv4/UDP to the VXLAN port (other traffic, VLAN tags, IPv6).
    NotVxlan,
    /// Outer destination MAC or IPv4 address not this node's.
    NotLocal,
    /// Outer source not a remote node in the vxlan device's FDB.
    UnknownRemote,
    /// VXLAN I flag clear, or other flags or reserved bits set.
    VxlanFlags,
    OtherVni,
    /// Inner frame not unicast IPv4 to the VTEP (ARP, IPv6, broadcast).
    InnerOther,
    /// IPv4 options, outer or inner.
    IpOptions,
    /// An IPv4 fragment, outer or inner.
    Fragment,
    /// Inner TTL 1 or 0: the kernel answers with ICMP time exceeded.
    TtlExpired,
    /// Inner destination not a pod on this node.
    UnknownPod,
    /// The pod's veth is gone (its DEVMAP entry went with it).
    PodGone,
    /// Inner frame larger than the pod veth's MTU allows.
    TooBig,
    /// Header fields that contradict each other or the frame length.
    Malformed,
    /// Frame ends inside the headers.
    Truncated,
    /// A helper failed (out of memory): the packet goes to the kernel.
    HelperFailed,
}

pub const COUNTERS: u32 = 16;

impl Counter {
    pub const ALL: [Counter; COUNTERS as usize] = [
        Counter::Fastpathed,
        Counter::NotVxlan,
        Counter::NotLocal,
        Counter::UnknownRemote,
        Counter::VxlanFlags,
        Counter::OtherVni,
        Counter::InnerOther,
        Counter::IpOptions,
        Counter::Fragment,
        Counter::TtlExpired,
        Counter::UnknownPod,
        Counter::PodGone,
        Counter::TooBig,
        Counter::Malformed,
        Counter::Truncated,
        Counter::HelperFailed,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Counter::Fastpathed => "fastpathed",
            Counter::NotVxlan => "not_vxlan",
            Counter::NotLocal => "not_local",
            Counter::UnknownRemote => "unknown_remote",
            Counter::VxlanFlags => "vxlan_flags",
            Counter::OtherVni => "other_vni",
            Counter::InnerOther => "inner_other",
            Counter::IpOptions => "ip_options",
            Counter::Fragment => "fragment",
            Counter::TtlExpired => "ttl_expired",
            Counter::UnknownPod => "unknown_pod",
            Counter::PodGone => "pod_gone",
            Counter::TooBig => "too_big",
            Counter::Malformed => "malformed",
            Counter::Truncated => "truncated",
            Counter::HelperFailed => "helper_failed",
        }
    }
}

const _: () = assert!(Counter::HelperFailed as u32 + 1 == COUNTERS);

/// A served pod's host-side veth, where the egress program runs: what a
/// frame from the pod must carry to be routed by this node.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EgressPort {
    /// The pod's IPv4 address (network byte order read as a native `u32`):
    /// the one source the fast path carries from this veth.
    pub pod: u32,
    /// The MAC of the bridge the veth is a port of: the pod's gateway.
    pub bridge_mac: [u8; 6],
    pub _pad: u16,
}
shared_type!(EgressPort, 12);

/// [`EgressRoute::df`]: the outer header's don't-fragment bit.
pub const DF_UNSET: u8 = 0;
pub const DF_SET: u8 = 1;
/// Copied from the inner IPv4 header.
pub const DF_INHERIT: u8 = 2;
/// [`EgressRoute::tos`] that copies the inner header's TOS.
pub const TOS_INHERIT: u8 = 1;
/// [`EgressRoute::ttl`] that copies the inner header's TTL (after the
/// forwarding decrement).
pub const TTL_INHERIT: u8 = 0;

/// What the kernel would do with an inner destination routed by this node,
/// by prefix (an LPM trie): encapsulate towards one remote VTEP with these
/// headers, or leave the packet to the kernel for the reason in `pass`.
/// Addresses are keyed and stored as their bytes in network order read as a
/// native `u32`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EgressRoute {
    /// 0 to encapsulate; otherwise the [`EgressCounter`] to count the
    /// packet under, passed to the kernel.
    pub pass: u32,
    /// The node's interface the encapsulated frame leaves by.
    pub nic_ifindex: u32,
    pub outer_src: u32,
    pub outer_dst: u32,
    /// VXLAN network identifier, host byte order.
    pub vni: u32,
    /// UDP destination port, host byte order.
    pub dst_port: u16,
    /// The longest inner IPv4 packet the kernel would send unfragmented:
    /// the inner route's MTU and the outer route's less [`OUTER_LEN`].
    pub max_inner: u16,
    /// UDP source ports: `port_min + (hash * port_span >> 32)`, the
    /// kernel's `udp_flow_src_port()` over its resolved range.
    pub port_min: u16,
    pub port_span: u16,
    /// Outer TTL, or [`TTL_INHERIT`].
    pub ttl: u8,
    /// Outer TOS before the ECN bits are copied in, or [`TOS_INHERIT`].
    pub tos: u8,
    /// [`DF_UNSET`], [`DF_SET`] or [`DF_INHERIT`].
    pub df: u8,
    /// 1 when the vxlan device sends UDP checksums (`udpcsum`).
    pub udp_csum: u8,
    /// The next hop's MAC on the node's interface, and the interface's.
    pub outer_dst_mac: [u8; 6],
    pub outer_src_mac: [u8; 6],
    /// The remote VTEP's MAC (the route's gateway as the vxlan device's
    /// neighbour), and the vxlan device's.
    pub inner_dst_mac: [u8; 6],
    pub inner_src_mac: [u8; 6],
}
shared_type!(EgressRoute, 56);

impl EgressRoute {
    /// An entry that leaves packets to the kernel, counted as `counter`.
    pub fn pass(counter: EgressCounter) -> Self {
        Self {
            pass: counter as u32,
            ..Self::default()
        }
    }
}

/// Indices of the egress program's per-CPU counters: index 0 counts
/// encapsulated packets, every other one packets passed to the kernel for
/// that reason.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EgressCounter {
    Encapsulated = 0,
    /// The veth is no served pod's (it went since the program was attached).
    UnknownPort,
    /// Ethernet or IPv4 broadcast or multicast.
    Broadcast,
    /// Ethernet destination another than the gateway: a pod on the same
    /// bridge, which the bridge delivers.
    Bridged,
    /// Not IPv4 (ARP, IPv6, VLAN tags).
    NotIpv4,
    /// IPv4 options.
    IpOptions,
    /// An IPv4 fragment.
    Fragment,
    /// TTL 1 or 0: the kernel answers with ICMP time exceeded.
    TtlExpired,
    /// Source address not the pod's own.
    ForeignSource,
    /// Destination is one of this node's addresses.
    ToNode,
    /// Destination is a pod on this node.
    LocalPod,
    /// Destination not routed through the vxlan device.
    NotOverlay,
    /// Routed through the vxlan device, but the gateway's neighbour, its
    /// FDB entry or the next hop on the node's interface is not known yet.
    UnknownRemote,
    /// Larger than the inner or the outer route allows: the kernel
    /// fragments it or answers with ICMP fragmentation needed.
    TooBig,
    /// A GSO packet the fast path cannot encapsulate so that segmentation
    /// gives what the device sends: not TCP, or with outer UDP checksums.
    GsoUnsupported,
    /// The device sends UDP checksums and the inner packet's checksum does
    /// not stand for its payload (not TCP, UDP with a checksum, or ICMP).
    ChecksumUnsupported,
    /// Header fields that contradict each other or the frame length.
    Malformed,
    /// Frame ends inside the headers.
    Truncated,
    /// A helper failed (out of memory): the packet goes to the kernel.
    HelperFailed,
}

pub const EGRESS_COUNTERS: u32 = 19;

impl EgressCounter {
    pub const ALL: [EgressCounter; EGRESS_COUNTERS as usize] = [
        EgressCounter::Encapsulated,
        EgressCounter::UnknownPort,
        EgressCounter::Broadcast,
        EgressCounter::Bridged,
        EgressCounter::NotIpv4,
        EgressCounter::IpOptions,
        EgressCounter::Fragment,
        EgressCounter::TtlExpired,
        EgressCounter::ForeignSource,
        EgressCounter::ToNode,
        EgressCounter::LocalPod,
        EgressCounter::NotOverlay,
        EgressCounter::UnknownRemote,
        EgressCounter::TooBig,
        EgressCounter::GsoUnsupported,
        EgressCounter::ChecksumUnsupported,
        EgressCounter::Malformed,
        EgressCounter::Truncated,
        EgressCounter::HelperFailed,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            EgressCounter::Encapsulated => "encapsulated",
            EgressCounter::UnknownPort => "unknown_port",
            EgressCounter::Broadcast => "broadcast",
            EgressCounter::Bridged => "bridged",
            EgressCounter::NotIpv4 => "not_ipv4",
            EgressCounter::IpOptions => "ip_options",
            EgressCounter::Fragment => "fragment",
            EgressCounter::TtlExpired => "ttl_expired",
            EgressCounter::ForeignSource => "foreign_source",
            EgressCounter::ToNode => "to_node",
            EgressCounter::LocalPod => "local_pod",
            EgressCounter::NotOverlay => "not_overlay",
            EgressCounter::UnknownRemote => "unknown_remote",
            EgressCounter::TooBig => "too_big",
            EgressCounter::GsoUnsupported => "gso_unsupported",
            EgressCounter::ChecksumUnsupported => "checksum_unsupported",
            EgressCounter::Malformed => "malformed",
            EgressCounter::Truncated => "truncated",
            EgressCounter::HelperFailed => "helper_failed",
        }
    }
}

const _: () = assert!(EgressCounter::HelperFailed as u32 + 1 == EGRESS_COUNTERS);
