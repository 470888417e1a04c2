//! Following one packet from hop to hop: the record kept in [`FLIGHTS`], the
//! segment latency added to its histogram at each hop, and the accounting of
//! packets that could not be joined.

use aya_ebpf::{bindings::BPF_ANY, helpers::bpf_ktime_get_ns};
use netprobe_common::{
    probe::{
        DIRECTION_EGRESS, Flight, FlightKey, HopStats, MAX_HOPS, Point, PointKey, Trace, slot,
    },
};
use netprobe_ebpf::packet::{IPPROTO_TCP, Packet};

use crate::{
    config::config,
    maps::{FLIGHTS, HISTOGRAMS, HOP_STATS, POINTS, SAMPLE_TICKS, SOCKET_WRITES, TRACES},
};

#[inline(always)]
pub fn now() -> u64 {
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
pub fn lookup_point(key: &PointKey) -> Option<Point> {
    unsafe { POINTS.get(key).copied() }
}

/// What to do with a packet that has no record from an earlier hop.
pub enum Unjoined {
    /// Count a packet without a record as unjoined (device hops).
    Count,
    /// Ignore it: the socket read fires for every socket of the machine.
    Ignore,
}

/// Records that `packet` reached `point` at time `now`.
#[inline(always)]
pub fn observe(point: Point, packet: &Packet, now: u64, unjoined: Unjoined) {
    let Some(start_hop) = config!(start_hop).get(point.direction as usize).copied() else {
        return;
    };
    let key = FlightKey {
        direction: point.direction as u8,
        ..packet.key
    };
    if point.hop == start_hop {
        start(point, &key, packet, now);
        return;
    }
    let Some(flight) = FLIGHTS.get_ptr_mut(&key) else {
        if matches!(unjoined, Unjoined::Count) && packet.selected {
            update_stats(point, |stats| {
                stats.seen += 1;
                stats.unjoined += 1;
            });
        }
        return;
    };
    let flight = unsafe { &mut *flight };
    let last_hop = flight.last_hop;
    if last_hop >= point.hop {
        // Seen here already: a copy of the packet (e.g. a clone for a packet
        // socket). The first sighting stands.
        return;
    }
    let Some(&last_ns) = flight.hop_ns.get(last_hop as usize) else {
        return;
    };
    if last_hop + 1 == point.hop {
        record_latency(slot(point.direction, point.hop), now.saturating_sub(last_ns));
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
        *hop_ns = now;
    }
    flight.last_hop = point.hop;
    let hops = config!(hops).get(point.direction as usize).copied().unwrap_or(0);
    if point.hop + 1 == hops {
        finish(point, &key, flight, now);
    }
}

/// First sighting of a packet in its direction. On egress the socket write
/// that produced a TCP segment is joined through the segment's sequence
/// number, as hop 0.
#[inline(always)]
fn start(point: Point, key: &FlightKey, packet: &Packet, now: u64) {
    if !packet.selected {
        return;
    }
    let mut flight = Flight {
        hop_ns: [0; MAX_HOPS],
        last_hop: point.hop,
        skipped: 0,
    };
    if let Some(hop_ns) = flight.hop_ns.get_mut(point.hop as usize) {
        *hop_ns = now;
    }
    let mut joined = 0;
    if point.direction == DIRECTION_EGRESS
        && config!(socket_write) != 0
        && packet.key.protocol == IPPROTO_TCP
    {
        let seq = packet.key.word0;
        if let Some(&write_ns) = unsafe { SOCKET_WRITES.get(&seq) } {
            // Consumed: a retransmission of this segment is a new flight.
            let _ = SOCKET_WRITES.remove(&seq);
            flight.hop_ns[0] = write_ns;
            record_latency(slot(point.direction, point.hop), now.saturating_sub(write_ns));
            joined = 1;
        }
    }
    let stored = FLIGHTS.insert(key, &flight, u64::from(BPF_ANY)).is_ok();
    update_stats(point, |stats| {
        stats.seen += 1;
        stats.joined += joined;
        if !stored {
            stats.map_full += 1;
        }
    });
}

/// The packet reached the last hop of its direction: count its end-to-end
/// time, sample it, and forget it.
#[inline(always)]
fn finish(point: Point, key: &FlightKey, flight: &Flight, now: u64) {
    let first_ns = flight.hop_ns[0];
    if first_ns != 0 && flight.skipped == 0 {
        record_latency(slot(point.direction, 0), now.saturating_sub(first_ns));
    }
    maybe_sample(point, key, flight);
    let _ = FLIGHTS.remove(key);
}

#[inline(always)]
fn maybe_sample(point: Point, key: &FlightKey, flight: &Flight) {
    let every = config!(sample_every);
    if every == 0 {
        return;
    }
    let Some(ticks) = SAMPLE_TICKS.get_ptr_mut(0) else {
        return;
    };
    let ticks = unsafe { &mut *ticks };
    *ticks += 1;
    if *ticks < every {
        return;
    }
    *ticks = 0;
    // A full ring loses the sample, never the measurement.
    if let Some(mut entry) = TRACES.reserve::<Trace>(0) {
        entry.write(Trace {
            key: *key,
            direction: point.direction,
            hops: point.hop + 1,
            hop_ns: flight.hop_ns,
        });
        entry.submit(0);
    }
}

#[inline(always)]
fn record_latency(slot: u32, ns: u64) {
    if let Some(histogram) = HISTOGRAMS.get_ptr_mut(slot) {
        unsafe { (*histogram).record(ns) };
    }
}

#[inline(always)]
fn update_stats(point: Point, update: impl FnOnce(&mut HopStats)) {
    if let Some(stats) = HOP_STATS.get_ptr_mut(slot(point.direction, point.hop)) {
        update(unsafe { &mut *stats });
    }
}
