//! Exemplars: single packets or requests at a rank (the median, the p99,
//! the slowest) that show what a percentile is made of, hop by hop.
//! `attach --sample N` keeps those of the packets it sampled whole, in
//! each direction; the bench keeps those of the requests it followed.

use crate::{
    path::{Direction, ProbePath},
    probes::SampledFlight,
    report::{FlightExemplar, Sample},
};

/// The ranks exemplars are kept at: the median, p99, and 100 for the
/// slowest.
pub const EXEMPLAR_PERCENTILES: [f64; 3] = [50.0, 99.0, 100.0];

/// The items of `sorted` (fastest first) at [`EXEMPLAR_PERCENTILES`]: the
/// one whose rank, rounded, is that share of the way; none if empty.
pub fn at_percentiles<T>(sorted: &[T]) -> Vec<(f64, &T)> {
    let Some(last) = sorted.len().checked_sub(1) else {
        return Vec::new();
    };
    EXEMPLAR_PERCENTILES
        .iter()
        .map(|&percentile| {
            let rank = (percentile / 100.0 * last as f64).round() as usize;
            (percentile, &sorted[rank])
        })
        .collect()
}

/// At most this many whole flights are kept per direction, a uniform
/// sample of those seen (the slowest always): memory stays bounded however
/// long a session runs.
pub const RESERVOIR: usize = 10_000;

/// The whole flights sampled in each direction, for their exemplars.
#[derive(Default)]
pub struct FlightExemplars {
    ingress: Reservoir,
    egress: Reservoir,
}

#[derive(Default)]
struct Reservoir {
    seen: u64,
    kept: Vec<SampledFlight>,
    slowest: Option<SampledFlight>,
    random: u64,
}

impl FlightExemplars {
    /// Keeps `flight` if it was seen at every hop of its direction.
    pub fn add(&mut self, flight: &SampledFlight, path: &ProbePath) {
        if !flight.whole || flight.hops != path.hops(flight.direction).len() {
            return;
        }
        match flight.direction {
            Direction::Ingress => self.ingress.add(*flight),
            Direction::Egress => self.egress.add(*flight),
        }
    }

    /// Each direction's median, p99 and slowest flight, hop by hop.
    pub fn exemplars(&self, path: &ProbePath) -> Vec<FlightExemplar> {
        [&self.ingress, &self.egress]
            .into_iter()
            .flat_map(|reservoir| reservoir.exemplars(path))
            .collect()
    }
}

fn total_ns(flight: &SampledFlight) -> u64 {
    flight.last_ns - flight.start_ns
}

impl Reservoir {
    fn add(&mut self, flight: SampledFlight) {
        self.seen += 1;
        if self
            .slowest
            .is_none_or(|slowest| total_ns(&flight) > total_ns(&slowest))
        {
            self.slowest = Some(flight);
        }
        if self.kept.len() < RESERVOIR {
            self.kept.push(flight);
            return;
        }
        // Algorithm R: the n-th flight replaces a kept one with
        // probability RESERVOIR / n.
        let slot = self.next_random() % self.seen;
        if let Some(kept) = self.kept.get_mut(slot as usize) {
            *kept = flight;
        }
    }

    /// xorshift64: uniform enough to pick which flights to keep.
    fn next_random(&mut self) -> u64 {
        if self.random == 0 {
            self.random = 0x9e37_79b9_7f4a_7c15;
        }
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        self.random
    }

    fn exemplars(&self, path: &ProbePath) -> Vec<FlightExemplar> {
        let mut flights: Vec<&SampledFlight> = self.kept.iter().collect();
        flights.extend(&self.slowest);
        flights.sort_by_key(|flight| total_ns(flight));
        at_percentiles(&flights)
            .into_iter()
            .map(|(percentile, flight)| FlightExemplar {
                percentile,
                total_ns: total_ns(flight),
                start_ns: flight.start_ns,
                sample: Sample::of(flight, path),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use netprobe_common::probe::{FlightKey, IPPROTO_TCP};

    use super::*;
    use crate::{
        path::{Hook, Hop, Role},
        probes::test_flight,
        report::rank_name,
    };

    #[test]
    fn exemplars_stand_at_the_median_the_p99_and_the_end() {
        let values: Vec<u32> = (1..=101).collect();
        let picked: Vec<(f64, u32)> = at_percentiles(&values)
            .into_iter()
            .map(|(percentile, value)| (percentile, *value))
            .collect();
        assert_eq!(picked, [(50.0, 51), (99.0, 100), (100.0, 101)]);
        assert_eq!(at_percentiles::<u32>(&[]), []);
        let names = EXEMPLAR_PERCENTILES.map(rank_name);
        assert_eq!(names, ["median", "p99", "slowest"]);
    }

    /// Two hops in: TC ingress and the socket.
    fn path() -> ProbePath {
        let hop = |role, hook| Hop {
            role,
            hook,
            devices: Vec::new(),
        };
        ProbePath {
            ingress: vec![
                hop(Role::Nic, Hook::TcIngress),
                hop(Role::Socket, Hook::SocketRead),
            ],
            egress: vec![
                hop(Role::Socket, Hook::SocketWrite),
                hop(Role::Nic, Hook::TcEgress),
            ],
            pods: Vec::new(),
        }
    }

    /// An ingress packet `n`, seen at both hops, `ns` apart.
    fn flight(n: u32, ns: u32) -> SampledFlight {
        let key = FlightKey {
            protocol: IPPROTO_TCP,
            word0: n,
            ..FlightKey::default()
        };
        test_flight(Direction::Ingress, key, u64::from(n) * 1_000_000, &[0, ns])
    }

    #[test]
    fn a_sessions_flights_give_each_directions_exemplars_with_every_hop() {
        let path = path();
        let mut exemplars = FlightExemplars::default();
        // 30 000 flights, 1 to 30 000 ns: more than the reservoir keeps.
        for n in 1..=30_000 {
            exemplars.add(&flight(n, n), &path);
        }
        let mut skipped = flight(1, 1);
        skipped.whole = false;
        exemplars.add(&skipped, &path);
        let found = exemplars.exemplars(&path);
        assert_eq!(found.len(), 3, "ingress only: {found:?}");
        let (median, p99, slowest) = (&found[0], &found[1], &found[2]);
        // A uniform sample of 10 000: its median and p99 lie within a few
        // percent of the whole's; the slowest is exact.
        assert!(median.total_ns.abs_diff(15_000) < 750, "{median:?}");
        assert!(p99.total_ns.abs_diff(29_700) < 300, "{p99:?}");
        assert_eq!((slowest.percentile, slowest.total_ns), (100.0, 30_000));
        assert_eq!(slowest.start_ns, 30_000 * 1_000_000);
        let hops: Vec<Option<u64>> = slowest
            .sample
            .hops
            .iter()
            .map(|hop| hop.offset_ns)
            .collect();
        assert_eq!(hops, [Some(0), Some(30_000)]);
        assert_eq!(slowest.sample.direction, Direction::Ingress);
        assert_eq!(exemplars.ingress.kept.len(), RESERVOIR);
    }
}
