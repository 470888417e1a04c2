//! A packet the probes sampled, decoded from the raw [`Trace`] they write to
//! their ring: which way it went, the fingerprint both nodes know it by, and
//! when it was at each hop. Everything that reads a sample reads this.

use std::array;

use netprobe_common::probe::{
    DIRECTION_EGRESS, DIRECTION_INGRESS, FlightKey, IPPROTO_TCP, MAX_HOPS, Trace,
};

use crate::path::Direction;

/// One sampled packet's way through the hops of its direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampledFlight {
    pub direction: Direction,
    pub packet: Fingerprint,
    /// Monotonic time (ns) at the first hop the packet was seen at.
    pub start_ns: u64,
    /// Monotonic time (ns) at the last hop it was seen at.
    pub last_ns: u64,
    /// How many hops its direction has: it was sampled at the last.
    pub hops: usize,
    /// Seen at every hop of its direction, from the first, none skipped.
    pub whole: bool,
    /// Time after `start_ns` at each hop; `None` where it was not seen.
    offsets_ns: [Option<u32>; MAX_HOPS],
}

/// What identifies a packet on either node and in either direction: its
/// flight key without the direction (see [`FlightKey`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint(FlightKey);

/// A TCP segment's numbers: a request's acknowledgement number is its
/// response's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpNumbers {
    pub seq: u32,
    pub ack: u32,
}

impl SampledFlight {
    /// `None` for a direction the probes do not write.
    pub fn decode(trace: &Trace) -> Option<Self> {
        let direction = match trace.direction {
            DIRECTION_INGRESS => Direction::Ingress,
            DIRECTION_EGRESS => Direction::Egress,
            _ => return None,
        };
        let flight = &trace.flight;
        let first = usize::from(flight.first_hop);
        Some(Self {
            direction,
            packet: Fingerprint::of(&flight.key),
            start_ns: flight.start_ns,
            last_ns: flight.last_ns(),
            hops: trace.hops as usize,
            whole: flight.first_hop == 0 && flight.skipped == 0,
            // The first hop seen is at 0; a later hop at 0 was not seen.
            offsets_ns: array::from_fn(|hop| {
                let ns = flight.hop_ns[hop];
                (hop == first || (hop > first && ns != 0)).then_some(ns)
            }),
        })
    }

    /// Time after [`Self::start_ns`] at `hop`; `None` where the packet was
    /// not seen.
    pub fn offset_ns(&self, hop: usize) -> Option<u64> {
        self.offsets_ns.get(hop).copied().flatten().map(u64::from)
    }

    /// Time from `hop` to the next one, of a flight seen at both.
    pub fn segment_ns(&self, hop: usize) -> u64 {
        let at = |hop| self.offset_ns(hop).unwrap_or(0);
        at(hop + 1).saturating_sub(at(hop))
    }
}

impl Fingerprint {
    pub fn of(key: &FlightKey) -> Self {
        Self(FlightKey {
            direction: 0,
            ..*key
        })
    }

    /// The packet's TCP numbers; `None` for another protocol.
    pub fn tcp(&self) -> Option<TcpNumbers> {
        (self.0.protocol == IPPROTO_TCP).then_some(TcpNumbers {
            seq: self.0.word0,
            ack: self.0.word1,
        })
    }
}

/// A packet's trace as the probes write it, for tests: keyed `key` (its
/// direction set), seen from the first of `hop_ns.len()` hops to the last at
/// `hop_ns` after `start_ns` (a later hop at 0: not seen).
#[cfg(test)]
pub fn test_trace(direction: Direction, key: FlightKey, start_ns: u64, hop_ns: &[u32]) -> Trace {
    let mut flight = netprobe_common::probe::Flight {
        key: FlightKey {
            direction: direction.code() as u8,
            ..key
        },
        start_ns,
        last_hop: (hop_ns.len() - 1) as u8,
        ..Default::default()
    };
    flight.hop_ns[..hop_ns.len()].copy_from_slice(hop_ns);
    Trace {
        direction: direction.code(),
        hops: hop_ns.len() as u32,
        flight,
    }
}

/// [`test_trace`]'s flight, decoded as the probes' ring is.
#[cfg(test)]
pub fn test_flight(
    direction: Direction,
    key: FlightKey,
    start_ns: u64,
    hop_ns: &[u32],
) -> SampledFlight {
    SampledFlight::decode(&test_trace(direction, key, start_ns, hop_ns)).expect("a known direction")
}

#[cfg(test)]
mod tests {
    use netprobe_common::probe::Flight;

    use super::*;

    /// A TCP segment seen from `first_hop` to `last_hop` of three hops, at
    /// the given times after `start_ns` (0: not seen).
    fn trace(direction: u32, first_hop: u8, last_hop: u8, hop_ns: [u32; 3]) -> Trace {
        let mut flight = Flight {
            key: FlightKey {
                direction: direction as u8,
                protocol: IPPROTO_TCP,
                ip_id: 7,
                word0: 1_000,
                word1: 2_000,
                ..FlightKey::default()
            },
            start_ns: 50_000,
            first_hop,
            last_hop,
            ..Flight::default()
        };
        flight.hop_ns[..3].copy_from_slice(&hop_ns);
        Trace {
            direction,
            hops: 3,
            flight,
        }
    }

    #[test]
    fn a_whole_flight_has_every_hops_time_and_its_direction() {
        let flight = SampledFlight::decode(&trace(DIRECTION_EGRESS, 0, 2, [0, 600, 1_000]))
            .expect("a known direction");
        assert_eq!(flight.direction, Direction::Egress);
        assert!(flight.whole);
        assert_eq!(flight.hops, 3);
        assert_eq!(
            (0..4).map(|hop| flight.offset_ns(hop)).collect::<Vec<_>>(),
            [Some(0), Some(600), Some(1_000), None]
        );
        assert_eq!((flight.segment_ns(0), flight.segment_ns(1)), (600, 400));
        assert_eq!((flight.start_ns, flight.last_ns), (50_000, 51_000));
        assert_eq!(
            flight.packet.tcp(),
            Some(TcpNumbers {
                seq: 1_000,
                ack: 2_000
            })
        );
    }

    #[test]
    fn a_flight_first_seen_later_or_missing_a_hop_is_not_whole() {
        // First seen at hop 1, at its start; hop 0 not seen.
        let late = SampledFlight::decode(&trace(DIRECTION_INGRESS, 1, 2, [0, 0, 700])).unwrap();
        assert_eq!(late.direction, Direction::Ingress);
        assert!(!late.whole);
        assert_eq!(late.offset_ns(0), None);
        assert_eq!(late.offset_ns(1), Some(0));
        assert_eq!(late.last_ns, 50_700);
        let mut skipped = trace(DIRECTION_INGRESS, 0, 2, [0, 0, 900]);
        skipped.flight.skipped = 1;
        let skipped = SampledFlight::decode(&skipped).unwrap();
        assert!(!skipped.whole);
        assert_eq!(skipped.offset_ns(1), None);
    }

    #[test]
    fn a_packet_has_one_fingerprint_in_both_directions() {
        let egress = SampledFlight::decode(&trace(DIRECTION_EGRESS, 0, 2, [0, 1, 2])).unwrap();
        let ingress = SampledFlight::decode(&trace(DIRECTION_INGRESS, 0, 2, [0, 1, 2])).unwrap();
        assert_eq!(egress.packet, ingress.packet);
        let mut udp = trace(DIRECTION_INGRESS, 0, 2, [0, 1, 2]);
        udp.flight.key.protocol = 17;
        assert_eq!(SampledFlight::decode(&udp).unwrap().packet.tcp(), None);
        assert_eq!(SampledFlight::decode(&trace(7, 0, 2, [0, 1, 2])), None);
    }
}
