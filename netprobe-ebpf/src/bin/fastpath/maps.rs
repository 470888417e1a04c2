//! The node's view of the overlay, kept in sync by userspace from netlink,
//! and the counters it reads back. IPv4 addresses are keyed by their four
//! bytes in network order, read as a native `u32`.

use aya_ebpf::{
    macros::map,
    maps::{Array, DevMapHash, HashMap, LpmTrie, PerCpuArray},
};
use netprobe_common::fastpath::{
    COUNTERS, Counter, EGRESS_COUNTERS, EgressPort, EgressRoute, LocalAddresses, MAX_PODS,
    MAX_REMOTES, MAX_ROUTES, PodEntry,
};

/// This node's addresses, in entry 0: the outer destinations it accepts.
#[map]
pub static FP_LOCALS: Array<LocalAddresses> = Array::with_max_entries(1, 0);

/// Remote nodes from the vxlan device's FDB: the outer sources it accepts.
#[map]
pub static FP_REMOTES: HashMap<u32, u32> = HashMap::with_max_entries(MAX_REMOTES, 0);

/// Pods on this node by inner destination address.
#[map]
pub static FP_PODS: HashMap<u32, PodEntry> = HashMap::with_max_entries(MAX_PODS, 0);

/// The pods' host-side veths by ifindex. The kernel removes an entry when
/// its device goes away, so a stale pod never leads into a missing device.
#[map]
pub static FP_PORTS: DevMapHash = DevMapHash::with_max_entries(MAX_PODS, 0);

/// Packets fast-pathed and passed, by [`Counter`].
#[map]
pub static FP_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS, 0);

/// Served pods' host-side veths by ifindex, where the egress program runs.
#[map]
pub static FP_EGRESS_PORTS: HashMap<u32, EgressPort> = HashMap::with_max_entries(MAX_PODS, 0);

/// Where the node routes each inner destination (an LPM trie, the node's
/// routing tables flattened).
#[map]
pub static FP_ROUTES: LpmTrie<u32, EgressRoute> = LpmTrie::with_max_entries(MAX_ROUTES, 0);

/// The outer IPv4 identification, counted up across CPUs.
#[map]
pub static FP_IP_ID: Array<u64> = Array::with_max_entries(1, 0);

/// Packets encapsulated and passed, by `EgressCounter`.
#[map]
pub static FP_EGRESS_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(EGRESS_COUNTERS, 0);

#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(packets) = FP_STATS.get_ptr_mut(counter as u32) {
        unsafe { *packets += 1 };
    }
}

/// Counts one packet under the egress counter at `index`.
#[inline(always)]
pub fn count_egress(index: u32) {
    if let Some(packets) = FP_EGRESS_STATS.get_ptr_mut(index) {
        unsafe { *packets += 1 };
    }
}
