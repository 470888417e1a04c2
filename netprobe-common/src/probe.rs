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

/// Where an observation point sits on the path.
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
    /// The pod the packet goes to or comes from (its index in `POD_ADDRS`),
    /// once a pod-owned hop found it; 0 for none.
    pub pod: u8,
    pub _pad: [u8; 4],
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

    /// Whether the packet is one of those `one_in` picks. It depends on the
    /// packet alone, not on the direction it is seen in or the hop, so every
    /// hop on every node picks the same packets.
    #[inline(always)]
    pub fn picked(&self, one_in: &OneIn) -> bool {
        if self.protocol == IPPROTO_TCP {
            return one_in.picks_tcp(self.word0, self.word1);
        }
        // The hash's top bits are its best mixed.
        (self.mix(0) >> 32) < one_in.other
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

/// The rule that picks one packet in N by a hash of its fingerprint, as
/// thresholds worked out once, when the probes load: the packet path only
/// compares. A TCP segment is picked by either of its sequence and
/// acknowledgement numbers alone: a request's acknowledgement number is its
/// response's sequence number, so a request and its response are picked
/// together, and a socket hook that knows only those two numbers picks the
/// same segments as the device hooks.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OneIn {
    /// Each of a TCP segment's two numbers is picked when its hash is below
    /// this: 1 in 2N - 1, about 1 in N for either.
    pub tcp: u64,
    /// Any other packet is picked when the hash of its fingerprint is below
    /// this.
    pub other: u64,
}
shared_type!(OneIn, 16);

impl OneIn {
    /// One packet in `n`; `n` 0 picks none, 1 every packet.
    pub const fn new(n: u32) -> Self {
        if n == 0 {
            return Self { tcp: 0, other: 0 };
        }
        let n = n as u64;
        Self {
            tcp: (1 << 32) / (2 * n - 1),
            other: (1 << 32) / n,
        }
    }

    /// Whether a TCP segment with these sequence and acknowledgement
    /// numbers is picked.
    #[inline(always)]
    pub fn picks_tcp(&self, seq: u32, ack: u32) -> bool {
        hash32(seq) < self.tcp || hash32(ack) < self.tcp
    }
}

/// A 32-bit number's hash, in the top bits of a Fibonacci product.
#[inline(always)]
fn hash32(word: u32) -> u64 {
    u64::from(word).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32
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

/// A per-pod histogram's key: the slot of its segment and the pod.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodSlot {
    pub slot: u32,
    pub pod: u32,
}
shared_type!(PodSlot, 8);

/// Pods one probe session tells apart: indices 1 to 255 (0 is none).
pub const MAX_PODS: usize = u8::MAX as usize;
/// Addresses of pods the probes can look up at once.
pub const POD_ADDRESSES: u32 = 4096;

/// A pod's address as `POD_ADDRS` keys it: IPv6, IPv4 mapped
/// (`::ffff:a.b.c.d`).
pub fn pod_address_key(address: core::net::IpAddr) -> [u8; 16] {
    match address {
        core::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        core::net::IpAddr::V6(v6) => v6.octets(),
    }
}

/// Whether the segment that ends at `hop` belongs to one pod, given the
/// pod-owned hops of its direction (`ProbeConfig::pod_hops`): either of its
/// ends is one.
#[inline(always)]
pub const fn pod_segment(pod_hops: u32, hop: u32) -> bool {
    hop > 0 && (pod_hops >> (hop - 1)) & 0b11 != 0
}

/// Histogram slot of the segment that ends at `hop`.
#[inline(always)]
pub const fn slot(direction: u32, hop: u32) -> u32 {
    direction * MAX_HOPS as u32 + hop
}

/// log2 of the bits of the watch filter: a bitmap over network namespaces
/// that lets the socket hooks, which fire for every socket of the machine,
/// dismiss a socket of another namespace with one array read.
pub const WATCH_BITS: u32 = 16;

/// Bit of a namespace (its inode number) in the watch filter.
#[inline(always)]
pub fn watch_bit(netns: u32) -> u32 {
    netns.wrapping_mul(0x9e37_79b1) >> (32 - WATCH_BITS)
}
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

    const ONE_IN_32: OneIn = OneIn::new(32);

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
            assert_eq!(
                egress.picked(&ONE_IN_32),
                ingress.picked(&ONE_IN_32),
                "packet {n}"
            );
            sampled += u32::from(egress.picked(&ONE_IN_32));
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
            if request.picked(&ONE_IN_32) && response.picked(&ONE_IN_32) {
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
        let picked = (0..64_000).filter(|&n| udp(n).picked(&ONE_IN_32)).count();
        assert!((1_800..2_200).contains(&picked), "{picked} sampled");
    }

    #[test]
    fn one_in_zero_picks_none_and_one_in_one_picks_all() {
        for n in 0..1_000 {
            for protocol in [6, 17] {
                let key = FlightKey {
                    protocol,
                    ..key(DIRECTION_INGRESS, n)
                };
                assert!(!key.picked(&OneIn::new(0)));
                assert!(key.picked(&OneIn::new(1)));
            }
        }
    }

    #[test]
    fn a_larger_n_picks_a_subset() {
        let (few, many) = (OneIn::new(64), OneIn::new(8));
        for n in 0..64_000 {
            let key = key(DIRECTION_INGRESS, n);
            assert!(!key.picked(&few) || key.picked(&many), "packet {n}");
        }
    }

    #[test]
    fn a_tcp_segment_is_picked_by_its_two_numbers_alone() {
        for n in 0..64_000 {
            let key = key(DIRECTION_EGRESS, n);
            assert_eq!(
                key.picked(&ONE_IN_32),
                ONE_IN_32.picks_tcp(key.word0, key.word1)
            );
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
