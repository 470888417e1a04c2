//! The median request: where the time of a typical request goes, across
//! both nodes. The probes sample a TCP request and its response together
//! (the request's acknowledgement number is the response's sequence
//! number, and a sampled number samples both), so a request's four
//! flights, the request leaving the client's socket and reaching the
//! server's and the response leaving the server's socket and reaching the
//! client's, join into one timeline from the client's write to its read.
//!
//! Medians of separate segments add up to the median of the whole only
//! while every segment's time is narrowly spread. Near a mode's capacity
//! some requests wait in the server's socket for nginx and others do not,
//! and the request that waits in one segment is not the one that waits in
//! another. The requests whose whole time lies around the median do add
//! up: their mean time in each segment sums to their mean total, which lies
//! among their totals as the median does. They are taken slice by slice,
//! and the run's are those of its middle slices, as a mode's median is the
//! median of its slices'.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::median::middle;
use crate::{
    path::{Direction, ProbePath, SegmentKind},
    probes::{Fingerprint, SampledFlight},
};

/// The share of the joined requests, by rank around the median, whose
/// times are averaged.
pub const AROUND_MEDIAN: f64 = 0.2;

/// The requests around the median, on average.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MedianRequest {
    /// Requests whose four flights were all sampled whole.
    pub joined: usize,
    /// Those around the median, averaged below.
    pub averaged: usize,
    /// Their mean time from the client's socket write to its socket read.
    pub total_ns: u64,
    /// How far apart their totals lie; the median of all lies within.
    pub spread_ns: u64,
    /// Their mean time per segment kind, the link between the nodes and
    /// the server application included.
    pub by_kind: BTreeMap<SegmentKind, u64>,
    /// The load generator's median send lag: how long requests waited to
    /// be sent, before the client's write.
    pub client_wait_ns: u64,
}

/// One node's sampled flights and the hops they crossed.
pub struct NodeSamples<'a> {
    pub path: &'a ProbePath,
    pub flights: &'a [SampledFlight],
}

impl MedianRequest {
    /// Joins the client's and the server's samples into requests, in a
    /// slice in which the generator's median send lag was
    /// `client_wait_ns`; `None` if no request was sampled whole on both.
    pub fn join(client: &NodeSamples, server: &NodeSamples, client_wait_ns: u64) -> Option<Self> {
        let requests_sent = client.whole(Direction::Egress);
        let requests_received = server.whole(Direction::Ingress);
        let responses_received = client.whole(Direction::Ingress);
        // Responses by their sequence number, which is their request's
        // acknowledgement number.
        let responses_sent: HashMap<u32, (Fingerprint, &SampledFlight)> = server
            .whole(Direction::Egress)
            .into_iter()
            .filter_map(|(packet, flight)| Some((packet.tcp()?.seq, (packet, flight))))
            .collect();
        let mut requests: Vec<Timeline> = requests_sent
            .iter()
            .filter_map(|(packet, &sent)| {
                let numbers = packet.tcp()?;
                let received = *requests_received.get(packet)?;
                let (response, answered) = *responses_sent.get(&numbers.ack)?;
                let read = *responses_received.get(&response)?;
                let mut timeline = Timeline::default();
                timeline.flight(client.path, sent);
                timeline.gap(SegmentKind::Link, sent.last_ns, received.start_ns)?;
                timeline.flight(server.path, received);
                timeline.gap(
                    SegmentKind::Application,
                    received.last_ns,
                    answered.start_ns,
                )?;
                timeline.flight(server.path, answered);
                timeline.gap(SegmentKind::Link, answered.last_ns, read.start_ns)?;
                timeline.flight(client.path, read);
                Some(timeline)
            })
            .collect();
        if requests.is_empty() {
            return None;
        }
        requests.sort_by_key(Timeline::total);
        let joined = requests.len();
        let from = ((0.5 - AROUND_MEDIAN / 2.0) * joined as f64) as usize;
        let to = (((0.5 + AROUND_MEDIAN / 2.0) * joined as f64).ceil() as usize).max(from + 1);
        let around = &requests[from..to];
        let mean = |ns: u64| ns / around.len() as u64;
        let by_kind = SegmentKind::ALL
            .iter()
            .enumerate()
            .map(|(index, &kind)| (kind, around.iter().map(|request| request.ns[index]).sum()))
            .filter(|&(_, ns): &(SegmentKind, u64)| ns > 0)
            .map(|(kind, ns)| (kind, mean(ns)))
            .collect();
        Some(Self {
            joined,
            averaged: around.len(),
            total_ns: mean(around.iter().map(Timeline::total).sum()),
            spread_ns: around[around.len() - 1].total() - around[0].total(),
            by_kind,
            client_wait_ns,
        })
    }

    /// A run's median request from its slices', each with the load
    /// generator's median in that slice: the mean of the middle slices' by
    /// that median (one for an odd count, two for an even), as a mode's
    /// median is the median of its slices'. Over all slices at once, a
    /// slice in which the VM ran slow would draw the requests around the
    /// median from another slice than the generator's median. `None` unless
    /// the middle slices have one each.
    pub fn of_slices(slices: impl IntoIterator<Item = (u64, Option<Self>)>) -> Option<Self> {
        let mut slices: Vec<(u64, Option<Self>)> = slices.into_iter().collect();
        slices.sort_by_key(|(p50, _)| *p50);
        let joined = slices
            .iter()
            .flat_map(|(_, request)| request)
            .map(|request| request.joined)
            .sum();
        let middle: Vec<&Self> = middle(&slices)
            .iter()
            .map(|(_, request)| request.as_ref())
            .collect::<Option<_>>()?;
        if middle.is_empty() {
            return None;
        }
        let mean = |field: &dyn Fn(&Self) -> u64| {
            middle.iter().map(|request| field(request)).sum::<u64>() / middle.len() as u64
        };
        let kinds = middle
            .iter()
            .flat_map(|request| request.by_kind.keys().copied());
        let by_kind = kinds
            .map(|kind| {
                let time = |request: &Self| request.by_kind.get(&kind).copied().unwrap_or(0);
                (kind, mean(&time))
            })
            .collect();
        Some(Self {
            joined,
            averaged: middle.iter().map(|request| request.averaged).sum(),
            total_ns: mean(&|request| request.total_ns),
            spread_ns: mean(&|request| request.spread_ns),
            by_kind,
            client_wait_ns: mean(&|request| request.client_wait_ns),
        })
    }
}

impl NodeSamples<'_> {
    /// The flights seen at every hop of `direction`, by packet.
    fn whole(&self, direction: Direction) -> HashMap<Fingerprint, &SampledFlight> {
        let hops = self.path.hops(direction).len();
        self.flights
            .iter()
            .filter(|flight| flight.direction == direction && flight.hops == hops && flight.whole)
            .map(|flight| (flight.packet, flight))
            .collect()
    }
}

/// One request's time per segment kind, in the order of
/// [`SegmentKind::ALL`].
#[derive(Default)]
struct Timeline {
    ns: [u64; SegmentKind::ALL.len()],
}

impl Timeline {
    fn total(&self) -> u64 {
        self.ns.iter().sum()
    }

    fn add(&mut self, kind: SegmentKind, ns: u64) {
        let index = SegmentKind::ALL.iter().position(|&all| all == kind);
        self.ns[index.expect("every kind is in ALL")] += ns;
    }

    /// Each segment of a flight seen at every hop of its direction.
    fn flight(&mut self, path: &ProbePath, flight: &SampledFlight) {
        let hops = path.hops(flight.direction);
        for (hop, pair) in hops.windows(2).enumerate() {
            self.add(
                SegmentKind::between(&pair[0], &pair[1]),
                flight.segment_ns(hop),
            );
        }
    }

    /// The time between two flights; `None` if the second started first
    /// (a packet that was not this request's).
    fn gap(&mut self, kind: SegmentKind, from: u64, to: u64) -> Option<()> {
        self.add(kind, to.checked_sub(from)?);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use netprobe_common::probe::{
        DIRECTION_EGRESS, DIRECTION_INGRESS, Flight, FlightKey, IPPROTO_TCP, Trace,
    };

    use super::*;
    use crate::path::{Hook, Hop, Role};

    fn hop(role: Role, hook: Hook) -> Hop {
        Hop {
            role,
            hook,
            devices: Vec::new(),
        }
    }

    /// Socket, TC egress and the driver on the way out; TC ingress and the
    /// socket on the way in.
    fn path() -> ProbePath {
        ProbePath {
            egress: vec![
                hop(Role::Socket, Hook::SocketWrite),
                hop(Role::Nic, Hook::TcEgress),
                hop(Role::Nic, Hook::NetDevStartXmit),
            ],
            ingress: vec![
                hop(Role::Nic, Hook::TcIngress),
                hop(Role::Socket, Hook::SocketRead),
            ],
        }
    }

    /// A TCP packet's flight seen at every hop: `seq` and `ack` identify
    /// it, `hop_ns` are its times after `start_ns`.
    fn trace(direction: u32, (seq, ack): (u32, u32), start_ns: u64, hop_ns: &[u32]) -> Trace {
        let mut flight = Flight {
            key: FlightKey {
                direction: direction as u8,
                protocol: IPPROTO_TCP,
                word0: seq,
                word1: ack,
                ..FlightKey::default()
            },
            start_ns,
            last_hop: (hop_ns.len() - 1) as u8,
            ..Flight::default()
        };
        flight.hop_ns[..hop_ns.len()].copy_from_slice(hop_ns);
        Trace {
            direction,
            hops: hop_ns.len() as u32,
            flight,
        }
    }

    /// Request `n` (client sequence 100 n, server sequence 5000 n) sent at
    /// `at`, waiting `wait` ns in the server's socket: 1 us to leave the
    /// client, 2 us on the link, 3 + `wait` us into nginx, 10 us in nginx,
    /// 1 us out, 2 us on the link, 4 us to the client's socket.
    fn request(n: u32, at: u64, wait: u32) -> (Vec<Trace>, Vec<Trace>) {
        let (request, response) = ((100 * n, 5000 * n), (5000 * n, 100 * n + 80));
        let client = vec![
            trace(DIRECTION_EGRESS, request, at, &[0, 600, 1_000]),
            trace(
                DIRECTION_INGRESS,
                response,
                at + 19_000 + u64::from(wait),
                &[0, 4_000],
            ),
        ];
        let server = vec![
            trace(DIRECTION_INGRESS, request, at + 3_000, &[0, 3_000 + wait]),
            trace(
                DIRECTION_EGRESS,
                response,
                at + 16_000 + u64::from(wait),
                &[0, 400, 1_000],
            ),
        ];
        (client, server)
    }

    /// The requests' traces, decoded as the probes' ring is, joined.
    fn join(requests: &[(Vec<Trace>, Vec<Trace>)]) -> Option<MedianRequest> {
        let path = path();
        let decoded = |traces: &Vec<Trace>| -> Vec<SampledFlight> {
            traces.iter().filter_map(SampledFlight::decode).collect()
        };
        let client: Vec<SampledFlight> = requests
            .iter()
            .flat_map(|(client, _)| decoded(client))
            .collect();
        let server: Vec<SampledFlight> = requests
            .iter()
            .flat_map(|(_, server)| decoded(server))
            .collect();
        MedianRequest::join(
            &NodeSamples {
                path: &path,
                flights: &client,
            },
            &NodeSamples {
                path: &path,
                flights: &server,
            },
            400,
        )
    }

    #[test]
    fn a_request_is_joined_across_both_nodes_from_write_to_read() {
        let median = join(&[request(1, 1_000_000, 0)]).expect("one request joined");
        assert_eq!((median.joined, median.averaged), (1, 1));
        assert_eq!(median.total_ns, 23_000);
        assert_eq!(median.spread_ns, 0);
        assert_eq!(median.client_wait_ns, 400);
        assert_eq!(
            median.by_kind,
            BTreeMap::from([
                (SegmentKind::Stack, 600 + 3_000 + 400 + 4_000),
                (SegmentKind::Qdisc, 400 + 600),
                (SegmentKind::Link, 2_000 + 2_000),
                (SegmentKind::Application, 10_000),
            ])
        );
        assert_eq!(median.by_kind.values().sum::<u64>(), median.total_ns);
    }

    #[test]
    fn the_requests_around_the_median_are_averaged_whatever_waits_elsewhere() {
        // Ten requests: four wait 50 us in the server's socket, six do not.
        // The median request did not wait, and none of the 50 us is in its
        // breakdown (the mean of all would hold 20 us of it).
        let requests: Vec<_> = (1..=10)
            .map(|n| {
                request(
                    n,
                    u64::from(n) * 1_000_000,
                    if n % 5 < 2 { 50_000 } else { 0 },
                )
            })
            .collect();
        let median = join(&requests).expect("requests joined");
        assert_eq!((median.joined, median.averaged), (10, 2));
        assert_eq!(median.total_ns, 23_000);
        assert_eq!(median.by_kind[&SegmentKind::Stack], 8_000);
    }

    #[test]
    fn a_run_takes_the_median_request_of_its_middle_slices() {
        let slice = |total_ns: u64, stack: u64| MedianRequest {
            joined: 100,
            averaged: 20,
            total_ns,
            spread_ns: 200,
            client_wait_ns: stack / 20,
            by_kind: BTreeMap::from([
                (SegmentKind::Stack, stack),
                (SegmentKind::Link, total_ns - stack),
            ]),
        };
        // The generator's medians were 20, 26 (the VM ran slow), 21 and
        // 22 us: the middle two are the 21 and 22 us slices.
        let run = MedianRequest::of_slices([
            (20_000, Some(slice(18_000, 8_000))),
            (26_000, Some(slice(24_000, 14_000))),
            (21_000, Some(slice(19_000, 9_000))),
            (22_000, Some(slice(20_000, 10_000))),
        ])
        .expect("the middle slices joined requests");
        assert_eq!((run.joined, run.averaged), (400, 40));
        assert_eq!((run.total_ns, run.spread_ns), (19_500, 200));
        assert_eq!(run.client_wait_ns, 475);
        assert_eq!(
            run.by_kind,
            BTreeMap::from([(SegmentKind::Stack, 9_500), (SegmentKind::Link, 10_000)])
        );
        // Outer slices without requests do not matter; a middle one does.
        let outer_missing = [
            (20_000, None),
            (21_000, Some(slice(19_000, 9_000))),
            (22_000, Some(slice(20_000, 10_000))),
            (30_000, None),
        ];
        assert!(MedianRequest::of_slices(outer_missing).is_some());
        let middle_missing = [
            (20_000, Some(slice(18_000, 8_000))),
            (21_000, None),
            (22_000, Some(slice(20_000, 10_000))),
        ];
        assert_eq!(MedianRequest::of_slices(middle_missing), None);
        assert_eq!(MedianRequest::of_slices([]), None);
    }

    #[test]
    fn flights_that_do_not_belong_together_are_not_joined() {
        let (mut client, server) = request(1, 1_000_000, 0);
        // The response was not sampled on the client.
        assert_eq!(join(&[(vec![client[0]], server.clone())]), None);
        // A response that arrived before the request left.
        client[1].flight.start_ns = 900_000;
        assert_eq!(join(&[(client, server.clone())]), None);
        // A flight missing a hop.
        let (mut client, server) = request(2, 1_000_000, 0);
        client[0].flight.skipped = 1;
        assert_eq!(join(&[(client, server)]), None);
    }
}
