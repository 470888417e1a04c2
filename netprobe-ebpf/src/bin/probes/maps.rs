//! State shared by the probes and read by userspace.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use netprobe_common::{
    histogram::Histogram,
    probe::{
        FLIGHT_SLOT_BITS, Flight, HopStats, MAX_PODS, POD_ADDRESSES, PodSlot, SLOTS,
        SOCKET_READ_SLOT_BITS, SOCKET_WRITE_SLOT_BITS, SocketRead, SocketWrite, TRACE_RING_BYTES,
        WATCH_BITS,
    },
};

/// The watch filter: a bit per namespace whose sockets are the path's ends
/// (see `watch_bit`).
#[map]
pub static WATCHED: Array<u64> = Array::with_max_entries(1 << (WATCH_BITS - 6), 0);

/// Packets between their first and last hop, in a direct-mapped table: a
/// lookup is an array index and a key compare, with no allocation or lock on
/// the packet path. A new flight takes over its slot; the one it replaces is
/// counted as evicted or, if stale, expired.
#[map]
pub static FLIGHTS: Array<Flight> = Array::with_max_entries(1 << FLIGHT_SLOT_BITS, 0);

/// When each socket's last request was read: the application's time runs
/// from there to its next write.
#[map]
pub static SOCKET_READS: Array<SocketRead> = Array::with_max_entries(1 << SOCKET_READ_SLOT_BITS, 0);

/// Time of each TCP write, by the sequence number its first byte will carry.
#[map]
pub static SOCKET_WRITES: Array<SocketWrite> =
    Array::with_max_entries(1 << SOCKET_WRITE_SLOT_BITS, 0);

#[map]
pub static HISTOGRAMS: PerCpuArray<Histogram> = PerCpuArray::with_max_entries(SLOTS as u32, 0);

/// The pods' addresses (IPv4 mapped into IPv6) to their index, 1 up:
/// filled by userspace from discovery.
#[map]
pub static POD_ADDRS: HashMap<[u8; 16], u8> = HashMap::with_max_entries(POD_ADDRESSES, 0);

/// The histograms of segments that belong to one pod, by slot and pod.
/// Entries are allocated as pods are seen, not for every possible pod: a
/// histogram per CPU is 3.3 KB.
#[map]
pub static POD_HISTOGRAMS: PerCpuHashMap<PodSlot, Histogram> =
    PerCpuHashMap::with_max_entries((SLOTS * MAX_PODS) as u32, BPF_F_NO_PREALLOC);

/// An empty histogram, never written: what a new entry of
/// [`POD_HISTOGRAMS`] starts from (too big for the stack).
#[map]
pub static EMPTY_HISTOGRAM: Array<Histogram> = Array::with_max_entries(1, 0);

#[map]
pub static HOP_STATS: PerCpuArray<HopStats> = PerCpuArray::with_max_entries(SLOTS as u32, 0);

/// Complete flights for `--sample N`.
#[map]
pub static TRACES: RingBuf = RingBuf::with_byte_size(TRACE_RING_BYTES, 0);
