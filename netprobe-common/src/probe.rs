//! The per-hop latency probes: where a packet is observed and how the same
//! packet is recognised at the next observation point.

use crate::shared_type;

/// Observation points per direction, socket included.
pub const MAX_HOPS: usize = 8;
/// Histogram slots: `direction * MAX_HOPS + hop`. Slot `hop == 0` has no
/// incoming segment, so it holds the end-to-end latency of the direction.
/// The last slot holds the application's time, from reading a request to
/// writing on the same socket.
pub const SLOTS: usize = 2 * MAX_HOPS + 1;
pub const APPLICATION_SLOT: u32 = 2 * MAX_HOPS as u32;

/// Wire (NIC) towards the pod's socket.
pub const DIRECTION_INGRESS: u32 = 0;
/// Pod's socket towards the wire.
pub const DIRECTION_EGRESS: u32 = 1;

/// Tracepoints that observe packets on any device: [`PointKey::hook`].
/// `net:netif_receive_skb`: a device hands a received packet to the stack.
pub const HOOK_NETIF_RECEIVE: u32 = 4;
/// `net:net_dev_queue`: the stack queues a packet for transmission on a device.
pub const HOOK_NET_DEV_QUEUE: u32 = 5;
/// `net:net_dev_start_xmit`: the driver starts transmitting a packet.
pub const HOOK_NET_DEV_START_XMIT: u32 = 6;

/// A watched device and tracepoint. A device is (network namespace, ifindex):
/// ifindex values repeat across namespaces.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PointKey {
    /// Inode number of the device's network namespace.
    pub netns: u32,
    pub ifindex: u32,
    pub hook: u32,
}
shared_type!(PointKey, 12);

/// Where a watched device and hook sits on the path.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    pub direction: u32,
    pub hop: u32,
}
shared_type!(Point, 8);

/// Identifies one packet at every hop. Built only from header fields that no
/// hop rewrites: never addresses or ports (NAT changes them), never lengths
/// (GRO changes them); across VXLAN, always the inner headers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlightKey {
    pub direction: u8,
    /// IP protocol of the (inner) packet.
    pub protocol: u8,
    pub _pad: u16,
    /// IPv4 identification; 0 for IPv6.
    pub ip_id: u32,
    /// TCP: sequence and acknowledgement numbers. UDP: length and the first
    /// four payload bytes.
    pub word0: u32,
    pub word1: u32,
}
shared_type!(FlightKey, 16);

/// A packet on its way through the watched hops: one slot of the flight
/// table, a direct-mapped array indexed by a hash of the key. One cache
/// line. A slot whose key has protocol 0 is free.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Flight {
    pub key: FlightKey,
    /// Monotonic time (ns) at the first hop the packet was seen at.
    pub start_ns: u64,
    /// Time (ns after `start_ns`) at each hop from `first_hop` on; 0 where
    /// it was not seen.
    pub hop_ns: [u32; MAX_HOPS],
    pub first_hop: u8,
    pub last_hop: u8,
    /// 1 once a hop was missed; the end-to-end time is then not counted.
    pub skipped: u8,
    pub _pad: [u8; 5],
}
shared_type!(Flight, 64);

impl Flight {
    /// Monotonic time (ns) at the last hop the packet was seen at.
    #[inline(always)]
    pub fn last_ns(&self) -> u64 {
        let offset = self
            .hop_ns
            .get(usize::from(self.last_hop))
            .copied()
            .unwrap_or(0);
        self.start_ns + u64::from(offset)
    }
}

impl FlightKey {
    /// Slot of this key in a table of `1 << bits` slots (Fibonacci hashing).
    #[inline(always)]
    pub fn slot(&self, bits: u32) -> u32 {
        (self.mix(u64::from(self.direction)) >> (64 - bits)) as u32
    }

    /// Whether the packet is one of the one in `every` that are sampled. It
    /// depends on the packet alone, not on the direction it is seen in, so
    /// the probes on two nodes sample the same packets. A TCP segment is
    /// picked by either of its sequence and acknowledgement numbers alone:
    /// a request's acknowledgement number is its response's sequence
    /// number, so a request and its response are sampled together.
    #[inline(always)]
    pub fn sampled(&self, every: u32) -> bool {
        if every == 0 {
            return false;
        }
        if self.protocol == IPPROTO_TCP {
            // Each number picked at 1 in 2 every - 1: about 1 in every for
            // either.
            let share = u32::MAX / every.saturating_mul(2).saturating_sub(1);
            return picked(self.word0, share) || picked(self.word1, share);
        }
        // The hash's top bits are its best mixed.
        (self.mix(0) >> 32) as u32 <= u32::MAX / every
    }

    #[inline(always)]
    fn mix(&self, direction: u64) -> u64 {
        let head = direction | u64::from(self.protocol) << 8 | u64::from(self.ip_id) << 32;
        let tail = u64::from(self.word0) | u64::from(self.word1) << 32;
        (head ^ tail.rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;

/// Whether `word` is one of the `share` in `u32::MAX` that are sampled.
#[inline(always)]
fn picked(word: u32, share: u32) -> bool {
    ((u64::from(word).wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 32) as u32 <= share
}

/// A TCP write waiting for its first segment: one slot of a direct-mapped
/// table indexed by the sequence number.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SocketWrite {
    pub seq: u32,
    pub _pad: u32,
    /// When the write started; 0 once a segment consumed it.
    pub ns: u64,
}
shared_type!(SocketWrite, 16);

/// Per-hop join accounting, one copy per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HopStats {
    /// Tracked packets observed at this hop.
    pub seen: u64,
    /// Packets joined to their observation at the previous hop.
    pub joined: u64,
    /// Packets with no record from any earlier hop.
    pub unjoined: u64,
    /// Packets whose last observation was further back than the previous hop.
    pub skipped: u64,
    /// Unfinished flights whose slot a flight started here took over while
    /// they were still fresh: lost to a full table, or stopped on the way.
    pub evicted: u64,
    /// Flights whose last sighting was here and that never went further
    /// (dropped, or consumed where no probe looks), found stale when their
    /// slot was reused.
    pub expired: u64,
}
shared_type!(HopStats, 48);

/// One packet's complete journey, sent to userspace for `--sample N`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Trace {
    pub direction: u32,
    pub hops: u32,
    pub flight: Flight,
}
shared_type!(Trace, 8 + 64);

/// Histogram slot of the segment that ends at `hop`.
#[inline(always)]
pub const fn slot(direction: u32, hop: u32) -> u32 {
    direction * MAX_HOPS as u32 + hop
}

/// log2 of the bits of the watch filter: a bitmap over (netns, ifindex)
/// that lets the tracepoints dismiss a packet on an unwatched device with an
/// array read, before the exact lookup in the point map.
pub const WATCH_BITS: u32 = 16;

/// Bit of (netns, ifindex) in the watch filter; ifindex 0 stands for the
/// namespace's sockets.
#[inline(always)]
pub fn watch_bit(netns: u32, ifindex: u32) -> u32 {
    (netns.wrapping_mul(0x9e37_79b1) ^ ifindex.wrapping_mul(0x85eb_ca6b)) >> (32 - WATCH_BITS)
}

/// Watched (device, hook) pairs.
pub const POINT_CAPACITY: u32 = 1024;
/// log2 of the flight table's slots (packets followed at once) by default;
/// `ProbeConfig::flight_slot_bits` sets it per load. A packet lives for
/// microseconds between its first and last hop, so 4096 slots hold every
/// flight of a busy node while the table (256 KB) stays in cache.
pub const FLIGHT_SLOT_BITS: u32 = 12;
/// log2 of the socket write table's slots.
pub const SOCKET_WRITE_SLOT_BITS: u32 = 12;
/// log2 of the slots of the table of socket reads (see [`SocketRead`]).
pub const SOCKET_READ_SLOT_BITS: u32 = 12;

/// The last read of a request on a socket, until the application writes on
/// it: one slot of a direct-mapped table indexed by the socket's identity.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SocketRead {
    /// The socket's identity (see [`socket_id`]); 0 when the slot is free.
    pub socket: u64,
    pub ns: u64,
}
shared_type!(SocketRead, 16);

/// A socket's identity from its addresses, ports and namespace: values the
/// verifier lets a tracing program compute with (a socket's address it
/// does not).
#[inline(always)]
pub fn socket_id(addresses: u64, ports: u32, netns: u32) -> u64 {
    let mixed = addresses ^ (u64::from(ports) << 32 | u64::from(netns)).rotate_left(17);
    mixed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
}

impl SocketRead {
    /// Slot of the socket with identity `socket`.
    #[inline(always)]
    pub fn slot(socket: u64) -> u32 {
        (socket >> (64 - SOCKET_READ_SLOT_BITS)) as u32
    }
}
/// A flight not seen for this long stopped on the way; its slot is free.
pub const FLIGHT_EXPIRY_NS: u64 = 1_000_000_000;
/// Ring buffer for sampled flights.
pub const TRACE_RING_BYTES: u32 = 4 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn key(direction: u32, n: u32) -> FlightKey {
        FlightKey {
            direction: direction as u8,
            protocol: 6,
            ip_id: n & 0xffff,
            word0: n.wrapping_mul(1448),
            word1: 0x1234_5678 + n.wrapping_mul(80),
            ..FlightKey::default()
        }
    }

    #[test]
    fn both_directions_sample_the_same_packets() {
        let mut sampled = 0;
        for n in 0..64_000 {
            let (egress, ingress) = (key(DIRECTION_EGRESS, n), key(DIRECTION_INGRESS, n));
            assert_eq!(egress.sampled(32), ingress.sampled(32), "packet {n}");
            sampled += u32::from(egress.sampled(32));
        }
        // One in 32 of 64,000 is 2,000.
        assert!((1_800..2_200).contains(&sampled), "{sampled} sampled");
    }

    #[test]
    fn a_tcp_request_and_its_response_are_sampled_together() {
        let mut sampled = 0;
        for n in 0..64_000 {
            let request = key(DIRECTION_EGRESS, n);
            let response = FlightKey {
                word0: request.word1,
                word1: request.word0 + 80,
                ip_id: 7,
                ..request
            };
            if request.sampled(32) && response.sampled(32) {
                sampled += 1;
            }
        }
        // Both when their shared number is picked, 1 in 63 of 64,000.
        assert!((900..1_150).contains(&sampled), "{sampled} sampled");
        // Other protocols: the whole packet.
        let udp = |word1| FlightKey {
            protocol: 17,
            word1,
            ..key(DIRECTION_INGRESS, 1)
        };
        let picked = (0..64_000).filter(|&n| udp(n).sampled(32)).count();
        assert!((1_800..2_200).contains(&picked), "{picked} sampled");
    }

    #[test]
    fn sampling_every_zero_takes_none_and_every_one_takes_all() {
        for n in 0..1_000 {
            assert!(!key(DIRECTION_INGRESS, n).sampled(0));
            assert!(key(DIRECTION_INGRESS, n).sampled(1));
        }
    }

    #[test]
    fn directions_of_a_packet_take_different_slots() {
        let differ = (0..1_000)
            .filter(|n| key(DIRECTION_EGRESS, *n).slot(12) != key(DIRECTION_INGRESS, *n).slot(12))
            .count();
        assert!(differ > 990, "{differ} of 1000");
    }
}
