//! What the agent has counted, by series (a segment, a direction end to
//! end, an observation point), kept across probe sessions: when the
//! datapath changes and a new session replaces the old one, the old one's
//! counts are kept, so every counter only grows. A series that is no longer
//! on the path (its pod went away) is forgotten after a set time, so the
//! number of series stays bounded.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use netprobe_common::{
    histogram::Histogram,
    probe::{APPLICATION_SLOT, HopStats},
};

use crate::{
    path::{Direction, ProbePath},
    probes::{Merge, Snapshot},
};

/// One series of the agent's metrics, by its labels.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Series {
    /// Latency between two consecutive observation points.
    Segment(Span),
    /// Latency from a direction's first point to its last.
    EndToEnd(Span),
    /// The server application's time from reading a request to writing.
    Application,
    /// Join accounting at one observation point.
    Point {
        direction: &'static str,
        point: String,
    },
}

/// From one observation point to another.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub direction: &'static str,
    pub from: String,
    pub to: String,
    /// The pod's namespace, for a segment that belongs to one pod.
    pub pod: Option<String>,
}

/// What one series counted.
#[derive(Clone)]
pub enum Count {
    Latency(Box<Histogram>),
    Point(HopStats),
}

impl Count {
    fn merge(&mut self, other: &Count) {
        match (self, other) {
            (Count::Latency(total), Count::Latency(add)) => total.merge(add),
            (Count::Point(total), Count::Point(add)) => total.merge(add),
            // A series' kind is part of its key: never mixed.
            _ => unreachable!("a series counts one kind of thing"),
        }
    }
}

/// Counts by series.
#[derive(Clone, Default)]
pub struct Counts(pub BTreeMap<Series, Count>);

/// The label of a direction.
pub fn direction_label(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

impl Counts {
    /// What a session on `path` counted, as `snapshot` has it.
    pub fn of(path: &ProbePath, snapshot: &Snapshot) -> Self {
        let mut counts = Counts::default();
        for direction in Direction::BOTH {
            let hops = path.hops(direction);
            let label = direction_label(direction);
            for (hop, point) in hops.iter().enumerate() {
                counts.add(
                    Series::Point {
                        direction: label,
                        point: point.label(),
                    },
                    Count::Point(*snapshot.stats(direction, hop)),
                );
            }
            for row in path.segment_rows(direction) {
                let span = Span {
                    direction: label,
                    from: row.from,
                    to: row.to,
                    pod: row.pod.map(|pod| pod.netns.clone()),
                };
                let histogram = snapshot.histogram_of(direction, row.hop, row.pod);
                counts.add(Series::Segment(span), latency(&histogram));
            }
            if let (Some(first), Some(last)) = (hops.first(), hops.last())
                && hops.len() > 1
            {
                let span = Span {
                    direction: label,
                    from: first.label(),
                    to: last.label(),
                    pod: None,
                };
                counts.add(
                    Series::EndToEnd(span),
                    latency(snapshot.histogram(direction, 0)),
                );
            }
        }
        counts.add(
            Series::Application,
            latency(&snapshot.histograms[APPLICATION_SLOT as usize]),
        );
        counts
    }

    fn add(&mut self, series: Series, count: Count) {
        match self.0.get_mut(&series) {
            Some(total) => total.merge(&count),
            None => {
                self.0.insert(series, count);
            }
        }
    }

    /// Adds every series of `other`.
    pub fn merge(&mut self, other: &Counts) {
        for (series, count) in &other.0 {
            self.add(series.clone(), count.clone());
        }
    }
}

fn latency(histogram: &Histogram) -> Count {
    Count::Latency(Box::new(*histogram))
}

/// Everything counted since the agent started.
pub struct Totals {
    /// Counts of the sessions that ended.
    ended: Counts,
    /// Since when a series of an ended session has not been on the path.
    gone_since: BTreeMap<Series, Instant>,
    /// How long such a series stays before it is forgotten.
    forget_after: Duration,
}

impl Totals {
    pub fn new(forget_after: Duration) -> Self {
        Self {
            ended: Counts::default(),
            gone_since: BTreeMap::new(),
            forget_after,
        }
    }

    /// A session ended having counted `last`.
    pub fn end_session(&mut self, last: &Counts) {
        self.ended.merge(last);
    }

    /// The totals at `now`, with the running session's `current` counts.
    /// Series of ended sessions that `current` lacks are kept for
    /// `forget_after`, then dropped.
    pub fn with(&mut self, current: &Counts, now: Instant) -> Counts {
        for series in self.ended.0.keys() {
            if current.0.contains_key(series) {
                self.gone_since.remove(series);
            } else {
                self.gone_since.entry(series.clone()).or_insert(now);
            }
        }
        let forget_after = self.forget_after;
        let forgotten: Vec<Series> = self
            .gone_since
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= forget_after)
            .map(|(series, _)| series.clone())
            .collect();
        for series in forgotten {
            self.gone_since.remove(&series);
            self.ended.0.remove(&series);
        }
        let mut totals = self.ended.clone();
        totals.merge(current);
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::empty_histogram;

    fn segment(to: &str) -> Series {
        Series::Segment(Span {
            direction: "ingress",
            from: "cni0".to_owned(),
            to: to.to_owned(),
            pod: None,
        })
    }

    fn counts(series: &[(&str, u64)]) -> Counts {
        let mut counts = Counts::default();
        for (to, ns) in series {
            let mut histogram = empty_histogram();
            histogram.record(*ns);
            counts.add(segment(to), latency(&histogram));
        }
        counts
    }

    fn count_of(counts: &Counts, to: &str) -> Option<u64> {
        match counts.0.get(&segment(to))? {
            Count::Latency(histogram) => Some(histogram.count),
            Count::Point(_) => None,
        }
    }

    #[test]
    fn an_ended_session_counts_on_and_a_gone_series_is_forgotten_after_its_time() {
        let start = Instant::now();
        let mut totals = Totals::new(Duration::from_secs(60));
        totals.end_session(&counts(&[("veth1", 1_000), ("veth2", 2_000)]));
        // The new session has veth1 still, veth2 gone.
        let current = counts(&[("veth1", 1_500)]);
        let now = totals.with(&current, start);
        assert_eq!(count_of(&now, "veth1"), Some(2));
        assert_eq!(count_of(&now, "veth2"), Some(1));
        let later = totals.with(&current, start + Duration::from_secs(59));
        assert_eq!(count_of(&later, "veth2"), Some(1));
        let gone = totals.with(&current, start + Duration::from_secs(60));
        assert_eq!(count_of(&gone, "veth2"), None);
        assert_eq!(count_of(&gone, "veth1"), Some(2));
    }

    #[test]
    fn a_series_back_on_the_path_is_not_forgotten() {
        let start = Instant::now();
        let mut totals = Totals::new(Duration::from_secs(60));
        totals.end_session(&counts(&[("veth2", 2_000)]));
        totals.with(&Counts::default(), start);
        let back = counts(&[("veth2", 2_000)]);
        totals.with(&back, start + Duration::from_secs(30));
        let now = totals.with(&back, start + Duration::from_secs(90));
        assert_eq!(count_of(&now, "veth2"), Some(2));
    }
}
