//! The link between the nodes: the one stretch of a request's path that
//! neither node's probes see whole, from the sending node's NIC to the
//! receiving node's. In the lab it is one veth; in aws-vpc it is also the
//! router standing for the VPC fabric. Both nodes sample the same packets
//! (picked by a hash of their headers), so the two samples of a packet give
//! the time it took to cross.

use std::collections::HashMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::{
    path::Direction,
    probes::{Fingerprint, SampledFlight},
    report::{Latency, new_hdr},
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeLinkLatency {
    /// Client's node to server's: requests.
    pub request: Latency,
    /// Server's node to client's: responses.
    pub response: Latency,
}

impl NodeLinkLatency {
    /// Joins the two nodes' samples; `None` if no packet was sampled on both.
    pub fn join(client: &[SampledFlight], server: &[SampledFlight]) -> Option<Self> {
        let request = crossings(client, server)?;
        let response = crossings(server, client)?;
        Some(Self {
            request: Latency::from_hdr(&request),
            response: Latency::from_hdr(&response),
        })
    }

    /// Median time of a request and its response on the link together.
    pub fn round_trip_p50_ns(&self) -> u64 {
        self.request.p50_ns + self.response.p50_ns
    }
}

/// The time each packet sampled leaving `sender` took to reach `receiver`.
fn crossings(sender: &[SampledFlight], receiver: &[SampledFlight]) -> Option<Histogram<u64>> {
    let arrivals: HashMap<Fingerprint, u64> = receiver
        .iter()
        .filter(|flight| flight.direction == Direction::Ingress)
        .map(|flight| (flight.packet, flight.start_ns))
        .collect();
    let mut histogram = new_hdr();
    for flight in sender
        .iter()
        .filter(|flight| flight.direction == Direction::Egress)
    {
        if let Some(crossed) = arrivals
            .get(&flight.packet)
            .and_then(|arrived| arrived.checked_sub(flight.last_ns))
        {
            histogram.saturating_record(crossed);
        }
    }
    (!histogram.is_empty()).then_some(histogram)
}

#[cfg(test)]
mod tests {
    use netprobe_common::probe::{FlightKey, IPPROTO_TCP};

    use super::*;
    use crate::probes::test_flight;

    /// A complete flight of packet `id` seen from `start_ns`, its last hop
    /// `last_offset` later.
    fn flight(direction: Direction, id: u32, start_ns: u64, last_offset: u32) -> SampledFlight {
        let key = FlightKey {
            protocol: IPPROTO_TCP,
            ip_id: id,
            word0: 1000 + id,
            word1: 7,
            ..FlightKey::default()
        };
        test_flight(direction, key, start_ns, &[0, 0, last_offset])
    }

    #[test]
    fn times_each_packet_from_the_senders_last_hop_to_the_receivers_first() {
        let client = [
            flight(Direction::Egress, 1, 1_000, 500), // request 1 leaves at 1_500
            flight(Direction::Egress, 2, 5_000, 500), // request 2 leaves at 5_500
            flight(Direction::Ingress, 3, 9_000, 300), // response arrives at 9_000
            flight(Direction::Egress, 4, 20_000, 100), // never sampled by the server
        ];
        let server = [
            flight(Direction::Ingress, 1, 2_500, 800),  // +1_000
            flight(Direction::Ingress, 2, 8_500, 800),  // +3_000
            flight(Direction::Egress, 3, 7_000, 1_000), // leaves at 8_000: +1_000
        ];
        let link = NodeLinkLatency::join(&client, &server).expect("packets were joined");
        // HdrHistogram values are exact to 1%.
        let near = |ns: u64, expected: u64| ns.abs_diff(expected) <= expected / 100;
        assert_eq!(link.request.count, 2);
        assert!(near(link.request.min_ns, 1_000), "{link:?}");
        assert!(near(link.request.max_ns, 3_000), "{link:?}");
        assert_eq!(link.response.count, 1);
        assert!(near(link.response.p50_ns, 1_000), "{link:?}");
        assert!(near(link.round_trip_p50_ns(), 1_000 + 1_000), "{link:?}");
    }

    #[test]
    fn a_direction_without_joined_packets_gives_nothing() {
        let client = [flight(Direction::Egress, 1, 1_000, 500)];
        let server = [flight(Direction::Ingress, 1, 2_500, 800)];
        assert_eq!(NodeLinkLatency::join(&client, &server), None);
        assert_eq!(NodeLinkLatency::join(&client, &[]), None);
    }
}
