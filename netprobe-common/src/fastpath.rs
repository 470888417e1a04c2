//! The VXLAN-decapsulation fast path (`netprobe fastpath`): its load-time
//! settings, map entries and counters.

use crate::shared_type;

/// Outer Ethernet, IPv4 (no options), UDP and VXLAN headers: what the fast
/// path strips in front of the inner Ethernet frame.
pub const OUTER_LEN: usize = 14 + 20 + 8 + 8;
/// The outer headers and the inner Ethernet and IPv4 headers: everything
/// the rules read.
pub const HEADERS_LEN: usize = OUTER_LEN + 14 + 20;

/// Pods, remote nodes and local addresses the maps hold at most.
pub const MAX_PODS: u32 = 4096;
pub const MAX_REMOTES: u32 = 1024;
pub const MAX_LOCALS: usize = 8;

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
