//! The node's view of the overlay, kept in sync by userspace from netlink,
//! and the counters it reads back. IPv4 addresses are keyed by their four
//! bytes in network order, read as a native `u32`.

use aya_ebpf::{
    macros::map,
    maps::{Array, DevMapHash, HashMap, PerCpuArray},
};
use netprobe_common::fastpath::{
    COUNTERS, Counter, LocalAddresses, MAX_PODS, MAX_REMOTES, PodEntry,
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

#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(packets) = FP_STATS.get_ptr_mut(counter as u32) {
        unsafe { *packets += 1 };
    }
}
