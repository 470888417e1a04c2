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
    exemplars::at_percentiles,
    path::{Direction, Hop, ProbePath, SegmentKind},
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

/// The requests one slice's samples followed whole, fastest first.
pub struct JoinedRequests<'a> {
    requests: Vec<Timeline<'a>>,
}

impl<'a> JoinedRequests<'a> {
    /// Joins the client's and the server's samples into requests.
    pub fn join(client: &NodeSamples<'a>, server: &NodeSamples<'a>) -> Self {
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
                Timeline::new([client.path, server.path], [sent, received, answered, read])
            })
            .collect();
        requests.sort_by_key(Timeline::total);
        Self { requests }
    }

    /// The requests around the median, in a slice in which the generator's
    /// median send lag was `client_wait_ns`; `None` if no request was
    /// followed whole.
    pub fn median(&self, client_wait_ns: u64) -> Option<MedianRequest> {
        let requests = &self.requests;
        if requests.is_empty() {
            return None;
        }
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
        Some(MedianRequest {
            joined,
            averaged: around.len(),
            total_ns: mean(around.iter().map(Timeline::total).sum()),
            spread_ns: around[around.len() - 1].total() - around[0].total(),
            by_kind,
            client_wait_ns,
        })
    }
}

impl MedianRequest {
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

impl<'a> NodeSamples<'a> {
    /// The flights seen at every hop of `direction`, by packet.
    fn whole(&self, direction: Direction) -> HashMap<Fingerprint, &'a SampledFlight> {
        let hops = self.path.hops(direction).len();
        self.flights
            .iter()
            .filter(|flight| flight.direction == direction && flight.hops == hops && flight.whole)
            .map(|flight| (flight.packet, flight))
            .collect()
    }
}

/// Where a step of a request's way is spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    Client,
    /// The link between the nodes.
    Link,
    Server,
}

impl Place {
    pub fn describe(self) -> &'static str {
        match self {
            Place::Client => "client",
            Place::Link => "link",
            Place::Server => "server",
        }
    }
}

/// One step of a followed request: between two hops, on a node or
/// between them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub place: Place,
    pub from: String,
    pub to: String,
    pub kind: SegmentKind,
    /// When it started, after the client's write.
    pub start_ns: u64,
    pub ns: u64,
}

/// One followed request, from the client's write to its read: a tail
/// exemplar or the median one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestExemplar {
    /// Its rank among the run's followed requests: 50 for the median, 99,
    /// 100 for the slowest.
    pub percentile: f64,
    pub total_ns: u64,
    pub steps: Vec<Step>,
}

impl RequestExemplar {
    /// The run's median, p99 and slowest requests among those its slices
    /// followed whole; none if it followed none.
    pub fn of_run(slices: &[JoinedRequests]) -> Vec<Self> {
        let mut requests: Vec<&Timeline> =
            slices.iter().flat_map(|slice| &slice.requests).collect();
        requests.sort_by_key(|request| request.total());
        at_percentiles(&requests)
            .into_iter()
            .map(|(percentile, request)| Self {
                percentile,
                total_ns: request.total(),
                steps: request.steps().map(|step| step.to_owned()).collect(),
            })
            .collect()
    }
}

/// A step between two hops of the probes' paths.
struct HopStep<'a> {
    place: Place,
    kind: SegmentKind,
    from: &'a Hop,
    to: &'a Hop,
    start_ns: u64,
    ns: u64,
}

impl HopStep<'_> {
    fn to_owned(&self) -> Step {
        Step {
            place: self.place,
            from: self.from.label(),
            to: self.to.label(),
            kind: self.kind,
            start_ns: self.start_ns,
            ns: self.ns,
        }
    }
}

/// One request's four flights: the request leaving the client and
/// reaching the server, the response leaving the server and reaching the
/// client; with its time per segment kind, in the order of
/// [`SegmentKind::ALL`].
struct Timeline<'a> {
    /// The client's and the server's.
    paths: [&'a ProbePath; 2],
    flights: [&'a SampledFlight; 4],
    ns: [u64; SegmentKind::ALL.len()],
}

impl<'a> Timeline<'a> {
    /// `None` if a flight started before the one before it ended (a packet
    /// that was not this request's).
    fn new(paths: [&'a ProbePath; 2], flights: [&'a SampledFlight; 4]) -> Option<Self> {
        if flights
            .windows(2)
            .any(|pair| pair[1].start_ns < pair[0].last_ns)
        {
            return None;
        }
        let mut timeline = Self {
            paths,
            flights,
            ns: [0; SegmentKind::ALL.len()],
        };
        let mut ns = timeline.ns;
        for step in timeline.steps() {
            let index = SegmentKind::ALL.iter().position(|&all| all == step.kind);
            ns[index.expect("every kind is in ALL")] += step.ns;
        }
        timeline.ns = ns;
        Some(timeline)
    }

    fn total(&self) -> u64 {
        self.ns.iter().sum()
    }

    /// Every step from the client's write to its read: each flight's
    /// segments, and between them the link, the server application, the
    /// link.
    fn steps(&self) -> impl Iterator<Item = HopStep<'a>> + '_ {
        let [client, server] = self.paths;
        let places = [Place::Client, Place::Server, Place::Server, Place::Client];
        let paths = [client, server, server, client];
        let written = self.flights[0].start_ns;
        (0..4).flat_map(move |index| {
            let flight = self.flights[index];
            let hops = paths[index].hops(flight.direction);
            let within = hops.windows(2).enumerate().map(move |(hop, pair)| HopStep {
                place: places[index],
                kind: SegmentKind::between(&pair[0], &pair[1]),
                from: &pair[0],
                to: &pair[1],
                start_ns: flight.start_ns + flight.offset_ns(hop).unwrap_or(0) - written,
                ns: flight.segment_ns(hop),
            });
            // The link or the application, before the next flight.
            let next = self.flights.get(index + 1).map(|next| {
                let next_hops = paths[index + 1].hops(next.direction);
                let (place, kind) = if index == 1 {
                    (Place::Server, SegmentKind::Application)
                } else {
                    (Place::Link, SegmentKind::Link)
                };
                HopStep {
                    place,
                    kind,
                    from: hops.last().expect("a path has hops"),
                    to: next_hops.first().expect("a path has hops"),
                    start_ns: flight.last_ns - written,
                    ns: next.start_ns - flight.last_ns,
                }
            });
            within.chain(next)
        })
    }
}

#[cfg(test)]
mod tests {
    use netprobe_common::probe::{FlightKey, IPPROTO_TCP, Trace};

    use super::*;
    use crate::{
        path::{Device, Hook, Hop, Role},
        probes::test_trace,
    };

    /// A hop on the NIC, eth0, or on the socket.
    fn hop(role: Role, hook: Hook) -> Hop {
        let eth0 = Device {
            name: "eth0".to_owned(),
            ifindex: 2,
            netns_inode: 1,
            netns_name: None,
            kind: "veth".to_owned(),
        };
        Hop {
            role,
            hook,
            devices: if role == Role::Nic {
                vec![eth0]
            } else {
                Vec::new()
            },
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
            pods: Vec::new(),
        }
    }

    /// A TCP packet's flight seen at every hop: `seq` and `ack` identify
    /// it, `hop_ns` are its times after `start_ns`.
    fn trace(direction: Direction, (seq, ack): (u32, u32), start_ns: u64, hop_ns: &[u32]) -> Trace {
        let key = FlightKey {
            protocol: IPPROTO_TCP,
            word0: seq,
            word1: ack,
            ..FlightKey::default()
        };
        test_trace(direction, key, start_ns, hop_ns)
    }

    /// Request `n` (client sequence 100 n, server sequence 5000 n) sent at
    /// `at`, waiting `wait` ns in the server's socket: 1 us to leave the
    /// client, 2 us on the link, 3 + `wait` us into nginx, 10 us in nginx,
    /// 1 us out, 2 us on the link, 4 us to the client's socket.
    fn request(n: u32, at: u64, wait: u32) -> (Vec<Trace>, Vec<Trace>) {
        let (request, response) = ((100 * n, 5000 * n), (5000 * n, 100 * n + 80));
        let client = vec![
            trace(Direction::Egress, request, at, &[0, 600, 1_000]),
            trace(
                Direction::Ingress,
                response,
                at + 19_000 + u64::from(wait),
                &[0, 4_000],
            ),
        ];
        let server = vec![
            trace(Direction::Ingress, request, at + 3_000, &[0, 3_000 + wait]),
            trace(
                Direction::Egress,
                response,
                at + 16_000 + u64::from(wait),
                &[0, 400, 1_000],
            ),
        ];
        (client, server)
    }

    /// The client's and the server's flights of `requests`, decoded as
    /// the probes' ring is.
    fn flights(requests: &[(Vec<Trace>, Vec<Trace>)]) -> [Vec<SampledFlight>; 2] {
        let decoded = |traces: &Vec<Trace>| -> Vec<SampledFlight> {
            traces.iter().filter_map(SampledFlight::decode).collect()
        };
        [
            requests
                .iter()
                .flat_map(|(client, _)| decoded(client))
                .collect(),
            requests
                .iter()
                .flat_map(|(_, server)| decoded(server))
                .collect(),
        ]
    }

    /// `flights` joined on `path`.
    fn joined<'a>(
        path: &'a ProbePath,
        [client, server]: &'a [Vec<SampledFlight>; 2],
    ) -> JoinedRequests<'a> {
        JoinedRequests::join(
            &NodeSamples {
                path,
                flights: client,
            },
            &NodeSamples {
                path,
                flights: server,
            },
        )
    }

    /// `requests` joined, for `look` to look at.
    fn with_joined<T>(
        requests: &[(Vec<Trace>, Vec<Trace>)],
        look: impl FnOnce(&JoinedRequests) -> T,
    ) -> T {
        let path = path();
        look(&joined(&path, &flights(requests)))
    }

    /// The median request of `requests`, sent after a median wait of 400 ns.
    fn join(requests: &[(Vec<Trace>, Vec<Trace>)]) -> Option<MedianRequest> {
        with_joined(requests, |joined| joined.median(400))
    }

    #[test]
    fn a_followed_request_is_a_waterfall_of_steps_from_write_to_read() {
        let exemplars = with_joined(&[request(1, 1_000_000, 0)], |joined| {
            RequestExemplar::of_run(std::slice::from_ref(joined))
        });
        // One request is the median, the p99 and the slowest.
        assert_eq!(exemplars.len(), 3);
        assert!(
            exemplars
                .iter()
                .all(|exemplar| exemplar.steps == exemplars[0].steps)
        );
        let steps: Vec<(Place, &str, &str, SegmentKind, u64, u64)> = exemplars[0]
            .steps
            .iter()
            .map(|step| {
                let Step {
                    place,
                    from,
                    to,
                    kind,
                    start_ns,
                    ns,
                } = step;
                (*place, from.as_str(), to.as_str(), *kind, *start_ns, *ns)
            })
            .collect();
        use Place::{Client, Link, Server};
        use SegmentKind::{Application, Link as NodeLink, Qdisc, Stack};
        let (write, read) = ("socket write", "socket read");
        let (tc_out, xmit, tc_in) = (
            "eth0 TC egress",
            "eth0 net_dev_start_xmit",
            "eth0 TC ingress",
        );
        assert_eq!(
            steps,
            [
                (Client, write, tc_out, Stack, 0, 600),
                (Client, tc_out, xmit, Qdisc, 600, 400),
                (Link, xmit, tc_in, NodeLink, 1_000, 2_000),
                (Server, tc_in, read, Stack, 3_000, 3_000),
                (Server, read, write, Application, 6_000, 10_000),
                (Server, write, tc_out, Stack, 16_000, 400),
                (Server, tc_out, xmit, Qdisc, 16_400, 600),
                (Link, xmit, tc_in, NodeLink, 17_000, 2_000),
                (Client, tc_in, read, Stack, 19_000, 4_000),
            ]
        );
        assert_eq!(exemplars[0].total_ns, 23_000);
    }

    #[test]
    fn a_runs_exemplars_are_its_median_p99_and_slowest_over_all_slices() {
        // Request n waits 100 n ns in the server's socket: 23.1 to 33 us,
        // in two slices.
        let slice = |numbers: std::ops::RangeInclusive<u32>| -> Vec<_> {
            numbers
                .map(|n| request(n, u64::from(n) * 1_000_000, 100 * n))
                .collect()
        };
        let path = path();
        let (first, second) = (flights(&slice(1..=50)), flights(&slice(51..=100)));
        let exemplars = RequestExemplar::of_run(&[joined(&path, &first), joined(&path, &second)]);
        // Ranks 50 (of 0 to 99, rounded), 98 and 99: requests 51, 99, 100.
        let totals: Vec<(f64, u64)> = exemplars
            .iter()
            .map(|exemplar| (exemplar.percentile, exemplar.total_ns))
            .collect();
        assert_eq!(
            totals,
            [
                (50.0, 23_000 + 5_100),
                (99.0, 23_000 + 9_900),
                (100.0, 33_000)
            ]
        );
        for exemplar in &exemplars {
            let mut at = 0;
            for step in &exemplar.steps {
                assert_eq!(step.start_ns, at, "{exemplar:?}");
                at += step.ns;
            }
            assert_eq!(at, exemplar.total_ns);
        }
        assert_eq!(RequestExemplar::of_run(&[]), []);
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
