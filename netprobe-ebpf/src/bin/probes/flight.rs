//! Following one packet from hop to hop: its slot in [`FLIGHTS`], the
//! segment latency added to a histogram at each hop, and the accounting of
//! packets that could not be joined.

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_ktime_get_ns};
use netprobe_common::{
    histogram::Histogram,
    probe::{
        DIRECTION_EGRESS, DIRECTION_INGRESS, FLIGHT_EXPIRY_NS, Flight, FlightKey, HopStats,
        MAX_HOPS, PodSlot, Point, SOCKET_WRITE_SLOT_BITS, SocketWrite, Trace, pod_segment, slot,
        watch_bit,
    },
};
use netprobe_ebpf::packet::{IPPROTO_TCP, Packet, PacketReader, pod_address};

use crate::{
    config::config,
    maps::{
        EMPTY_HISTOGRAM, FLIGHTS, HISTOGRAMS, HOP_STATS, POD_ADDRS, POD_HISTOGRAMS, SOCKET_WRITES,
        TRACES, WATCHED,
    },
};

/// The time of a sighting. Read only for packets that are followed: a clock
/// read costs about 30 ns here, more than the rest of a hop's early exit.
#[inline(always)]
pub fn now() -> u64 {
    unsafe { bpf_ktime_get_ns() }
}

/// Whether `packet` is one of those followed (`ProbeConfig::follow`).
#[inline(always)]
pub fn followed(packet: &Packet) -> bool {
    packet.key.picked(&config!(follow))
}

/// Records a sighting of `packet` (read by `reader`) at `point` if it is
/// followed: the common end of every device hook.
#[inline(always)]
pub fn sighting<R: PacketReader>(point: Point, packet: &Packet, reader: &R) {
    if followed(packet) {
        observe(point, packet, now(), Unjoined::Count, || {
            pod_of(reader, packet, point.direction)
        });
    }
}

/// The pod a followed packet goes to or comes from, by its address on the
/// pod's side; 0 for none known.
#[inline(always)]
pub fn pod_of<R: PacketReader>(reader: &R, packet: &Packet, direction: u32) -> u8 {
    pod_address(reader, packet, direction == DIRECTION_INGRESS)
        .and_then(|address| unsafe { POD_ADDRS.get(address) }.copied())
        .unwrap_or(0)
}

/// Whether the watch filter has the namespace: false means surely not
/// watched; true, probably.
#[inline(always)]
pub fn watched(netns: u32) -> bool {
    let bit = watch_bit(netns);
    WATCHED
        .get(bit / 64)
        .is_some_and(|word| word & (1 << (bit % 64)) != 0)
}

/// What to do with a packet that has no record from an earlier hop.
pub enum Unjoined {
    /// Count it as unjoined (device hops).
    Count,
    /// Ignore it: the socket read fires for every socket of the machine.
    Ignore,
}

/// Records that `packet` reached `point` at time `now`; `pod` finds its pod
/// where the hop belongs to one. Returns whether that completed its flight.
#[inline(always)]
pub fn observe(
    point: Point,
    packet: &Packet,
    now: u64,
    unjoined: Unjoined,
    pod: impl FnOnce() -> u8,
) -> bool {
    let Some(start_hop) = config!(start_hop).get(point.direction as usize).copied() else {
        return false;
    };
    let key = FlightKey {
        direction: point.direction as u8,
        ..packet.key
    };
    let Some(flight) = FLIGHTS.get_ptr_mut(key.slot(config!(flight_slot_bits))) else {
        return false;
    };
    let flight = unsafe { &mut *flight };
    let pod_hops = config!(pod_hops)
        .get(point.direction as usize)
        .copied()
        .unwrap_or(0);
    if point.hop == start_hop {
        return start(point, key, flight, packet, now, pod_hops, pod);
    }
    if flight.key != key {
        if matches!(unjoined, Unjoined::Count) && packet.selected {
            update_stats(point, |stats| {
                stats.seen += 1;
                stats.unjoined += 1;
            });
        }
        return false;
    }
    let last_hop = u32::from(flight.last_hop);
    if last_hop >= point.hop {
        // Seen here already: a copy of the packet (e.g. a clone for a packet
        // socket). The first sighting stands.
        return false;
    }
    if (pod_hops >> point.hop) & 1 != 0 && flight.pod == 0 {
        flight.pod = pod();
    }
    let last_ns = flight.last_ns();
    if last_hop + 1 == point.hop {
        record_latency(
            slot(point.direction, point.hop),
            segment_pod(flight, pod_hops, point.hop),
            now.saturating_sub(last_ns),
        );
        update_stats(point, |stats| {
            stats.seen += 1;
            stats.joined += 1;
        });
    } else {
        flight.skipped = 1;
        update_stats(point, |stats| {
            stats.seen += 1;
            stats.skipped += 1;
        });
    }
    if let Some(hop_ns) = flight.hop_ns.get_mut(point.hop as usize) {
        *hop_ns = now.saturating_sub(flight.start_ns) as u32;
    }
    flight.last_hop = point.hop as u8;
    finish_if_last(point, flight, now)
}

/// First sighting of a packet in its direction: it takes over its slot. On
/// egress the socket write that produced a TCP segment is joined through the
/// segment's sequence number, as hop 0. Returns whether that completed its
/// flight: a path whose only device hop is the NIC's TC egress starts and
/// ends there.
#[inline(always)]
fn start(
    point: Point,
    key: FlightKey,
    flight: &mut Flight,
    packet: &Packet,
    now: u64,
    pod_hops: u32,
    pod: impl FnOnce() -> u8,
) -> bool {
    if !packet.selected {
        return false;
    }
    if flight.key.protocol != 0 && flight.key != key {
        retire(flight, now);
    }
    flight.key = key;
    flight.start_ns = now;
    // Word by word, volatile: the compiler would merge plain stores of
    // zeros into a call to a byte-wise memset.
    let hop_ns = flight.hop_ns.as_mut_ptr().cast::<u64>();
    for word in 0..MAX_HOPS / 2 {
        unsafe { hop_ns.add(word).write_volatile(0) };
    }
    flight.first_hop = point.hop as u8;
    flight.last_hop = point.hop as u8;
    flight.skipped = 0;
    flight.pod = if (pod_hops >> point.hop) & 1 != 0 {
        pod()
    } else {
        0
    };
    let mut joined = 0;
    if point.direction == DIRECTION_EGRESS
        && config!(socket_write) != 0
        && key.protocol == IPPROTO_TCP
        && let Some(write_ns) = take_socket_write(key.word0)
    {
        // Hop 0 is the write: the flight starts there.
        let since_write = now.saturating_sub(write_ns);
        flight.start_ns = write_ns;
        flight.first_hop = 0;
        if let Some(hop_ns) = flight.hop_ns.get_mut(point.hop as usize) {
            *hop_ns = since_write as u32;
        }
        record_latency(
            slot(point.direction, point.hop),
            segment_pod(flight, pod_hops, point.hop),
            since_write,
        );
        joined = 1;
    }
    update_stats(point, |stats| {
        stats.seen += 1;
        stats.joined += joined;
    });
    joined == 1 && finish_if_last(point, flight, now)
}

/// Finishes the flight if `point` is the last hop of its direction.
#[inline(always)]
fn finish_if_last(point: Point, flight: &mut Flight, now: u64) -> bool {
    let hops = config!(hops)
        .get(point.direction as usize)
        .copied()
        .unwrap_or(0);
    let last = point.hop + 1 == hops;
    if last {
        finish(point, flight, now);
    }
    last
}

/// Counts the unfinished flight whose slot is being taken: expired at its
/// last hop if stale, else evicted by the newcomer.
#[inline(always)]
fn retire(old: &Flight, now: u64) {
    let old_point = Point {
        direction: u32::from(old.key.direction),
        hop: u32::from(old.last_hop),
    };
    if now.saturating_sub(old.last_ns()) > FLIGHT_EXPIRY_NS {
        update_stats(old_point, |stats| stats.expired += 1);
    } else {
        update_stats(old_point, |stats| stats.evicted += 1);
    }
}

/// The packet reached the last hop of its direction: count its end-to-end
/// time, sample it, and free its slot.
#[inline(always)]
fn finish(point: Point, flight: &mut Flight, now: u64) {
    if flight.first_hop == 0 && flight.skipped == 0 {
        record_latency(
            slot(point.direction, 0),
            0,
            now.saturating_sub(flight.start_ns),
        );
    }
    maybe_sample(point, flight);
    flight.key.protocol = 0;
}

/// Remembers a TCP write by the sequence number of its first byte.
#[inline(always)]
pub fn remember_socket_write(seq: u32, now: u64) {
    if let Some(write) = SOCKET_WRITES.get_ptr_mut(socket_write_slot(seq)) {
        // The latest write wins: an earlier one at the same sequence sent
        // nothing.
        unsafe {
            *write = SocketWrite {
                seq,
                _pad: 0,
                ns: now,
            }
        };
    }
}

/// When the write that starts at `seq` happened, once: a retransmission of
/// the segment is not joined to it again.
#[inline(always)]
fn take_socket_write(seq: u32) -> Option<u64> {
    let write = unsafe { &mut *SOCKET_WRITES.get_ptr_mut(socket_write_slot(seq))? };
    if write.seq != seq || write.ns == 0 {
        return None;
    }
    let ns = write.ns;
    write.ns = 0;
    Some(ns)
}

#[inline(always)]
fn socket_write_slot(seq: u32) -> u32 {
    seq.wrapping_mul(0x9e37_79b9) >> (32 - SOCKET_WRITE_SLOT_BITS)
}

#[inline(always)]
fn maybe_sample(point: Point, flight: &Flight) {
    if !flight.key.picked(&config!(sample)) {
        return;
    }
    // A full ring loses the sample, never the measurement.
    if let Some(mut entry) = TRACES.reserve::<Trace>(0) {
        entry.write(Trace {
            direction: point.direction,
            hops: point.hop + 1,
            flight: *flight,
        });
        entry.submit(0);
    }
}

/// The pod whose histogram the segment ending at `hop` goes to: the
/// flight's if the segment belongs to one pod, else 0 (node-wide).
#[inline(always)]
fn segment_pod(flight: &Flight, pod_hops: u32, hop: u32) -> u8 {
    if pod_segment(pod_hops, hop) {
        flight.pod
    } else {
        0
    }
}

/// Counts `ns` in the histogram of `slot`, or of `slot` and `pod` when
/// `pod` is not 0.
#[inline(always)]
pub fn record_latency(slot: u32, pod: u8, ns: u64) {
    let histogram = if pod == 0 {
        HISTOGRAMS.get_ptr_mut(slot)
    } else {
        pod_histogram(slot, pod).or_else(|| HISTOGRAMS.get_ptr_mut(slot))
    };
    if let Some(histogram) = histogram {
        unsafe { (*histogram).record(ns) };
    }
}

/// The histogram of `slot` for `pod`, added on the pod's first packet
/// there. `None` when the map is full: the packet then counts over all
/// pods only.
#[inline(always)]
fn pod_histogram(slot: u32, pod: u8) -> Option<*mut Histogram> {
    let key = PodSlot {
        slot,
        pod: u32::from(pod),
    };
    if let Some(histogram) = POD_HISTOGRAMS.get_ptr_mut(key) {
        return Some(histogram);
    }
    let empty = unsafe { &*EMPTY_HISTOGRAM.get_ptr(0)? };
    // The insert fails only with EEXIST (another CPU added it since) or
    // E2BIG (full): the lookup below tells the two apart.
    POD_HISTOGRAMS
        .insert(key, empty, u64::from(BPF_NOEXIST))
        .ok();
    POD_HISTOGRAMS.get_ptr_mut(key)
}

#[inline(always)]
fn update_stats(point: Point, update: impl FnOnce(&mut HopStats)) {
    if let Some(stats) = HOP_STATS.get_ptr_mut(slot(point.direction, point.hop)) {
        update(unsafe { &mut *stats });
    }
}
