//! Marks of the running session's counters taken every few seconds, so that
//! `/report?since=D` can report the last D alone: what was counted since
//! the newest mark at least D old. Marks keep only the buckets that hold
//! something, so a few minutes of them take little memory.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use netprobe_common::{
    histogram::Histogram,
    probe::{HopStats, PodSlot},
};

use crate::probes::{Snapshot, empty_histogram};

/// How often a mark is taken.
pub const MARK_EVERY: Duration = Duration::from_secs(5);
/// How far back `since` can reach.
pub const HISTORY: Duration = Duration::from_secs(300);

/// A histogram with its empty buckets left out.
struct SparseHistogram {
    count: u64,
    sum_ns: u64,
    min_ns: u64,
    max_ns: u64,
    buckets: Vec<(u16, u32)>,
}

impl SparseHistogram {
    fn of(histogram: &Histogram) -> Self {
        Self {
            count: histogram.count,
            sum_ns: histogram.sum_ns,
            min_ns: histogram.min_ns,
            max_ns: histogram.max_ns,
            buckets: histogram
                .buckets
                .iter()
                .enumerate()
                .filter(|(_, count)| **count > 0)
                .map(|(index, count)| (index as u16, *count))
                .collect(),
        }
    }

    fn expand(&self) -> Histogram {
        let mut histogram = Histogram {
            count: self.count,
            sum_ns: self.sum_ns,
            min_ns: self.min_ns,
            max_ns: self.max_ns,
            ..empty_histogram()
        };
        for &(index, count) in &self.buckets {
            histogram.buckets[usize::from(index)] = count;
        }
        histogram
    }
}

struct Mark {
    at: Instant,
    histograms: Vec<SparseHistogram>,
    hop_stats: Vec<HopStats>,
    pod_histograms: Vec<(PodSlot, SparseHistogram)>,
}

/// The running session's marks, oldest first.
pub struct History {
    started: Instant,
    marks: VecDeque<Mark>,
}

impl History {
    /// A session that started (counting from zero) at `started`.
    pub fn new(started: Instant) -> Self {
        Self {
            started,
            marks: VecDeque::new(),
        }
    }

    /// Takes a mark of `snapshot` if the last is [`MARK_EVERY`] old, and
    /// drops marks no window of up to [`HISTORY`] starts from.
    pub fn record(&mut self, snapshot: &Snapshot, now: Instant) {
        let last = self.marks.back().map_or(self.started, |mark| mark.at);
        if now.duration_since(last) < MARK_EVERY {
            return;
        }
        self.marks.push_back(Mark {
            at: now,
            histograms: snapshot
                .histograms
                .iter()
                .map(SparseHistogram::of)
                .collect(),
            hop_stats: snapshot.hop_stats.clone(),
            pod_histograms: snapshot
                .pod_histograms
                .iter()
                .map(|(key, histogram)| (*key, SparseHistogram::of(histogram)))
                .collect(),
        });
        // The oldest goes once the next is old enough to start any window.
        while self
            .marks
            .get(1)
            .is_some_and(|next| now.duration_since(next.at) >= HISTORY)
        {
            self.marks.pop_front();
        }
    }

    /// What `now_counts` counted over about the last `since` (all of the
    /// session when `None` or when the session is younger), and over how
    /// long: from the newest mark at least `since` old.
    pub fn window(
        &self,
        now_counts: &Snapshot,
        since: Option<Duration>,
        now: Instant,
    ) -> (Snapshot, Duration) {
        let from = since.and_then(|since| {
            self.marks
                .iter()
                .rev()
                .find(|mark| now.duration_since(mark.at) >= since)
        });
        match from {
            Some(mark) => {
                let earlier = Snapshot {
                    histograms: mark
                        .histograms
                        .iter()
                        .map(SparseHistogram::expand)
                        .collect(),
                    hop_stats: mark.hop_stats.clone(),
                    pod_histograms: mark
                        .pod_histograms
                        .iter()
                        .map(|(key, histogram)| (*key, histogram.expand()))
                        .collect(),
                };
                (now_counts.since(&earlier), now.duration_since(mark.at))
            }
            None => (now_counts.clone(), now.duration_since(self.started)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(values: &[u64]) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for &ns in values {
            snapshot.histograms[1].record(ns);
            snapshot.hop_stats[1].seen += 1;
        }
        snapshot
    }

    #[test]
    fn a_window_counts_what_came_after_its_mark() {
        let start = Instant::now();
        let mut history = History::new(start);
        let at = |seconds| start + Duration::from_secs(seconds);
        history.record(&snapshot(&[1_000]), at(5));
        history.record(&snapshot(&[1_000, 2_000]), at(10));
        // Too soon after the last mark: not kept.
        history.record(&snapshot(&[1_000, 2_000, 3_000]), at(12));
        let now = snapshot(&[1_000, 2_000, 3_000, 4_000]);
        let (window, length) = history.window(&now, Some(Duration::from_secs(8)), at(20));
        assert_eq!(length, Duration::from_secs(10));
        assert_eq!(window.histograms[1].count, 2);
        assert_eq!(window.hop_stats[1].seen, 2);
        let (whole, length) = history.window(&now, Some(Duration::from_secs(60)), at(20));
        assert_eq!(
            (whole.histograms[1].count, length),
            (4, Duration::from_secs(20))
        );
        let (whole, _) = history.window(&now, None, at(20));
        assert_eq!(whole.histograms[1].count, 4);
    }

    #[test]
    fn marks_older_than_the_history_are_dropped() {
        let start = Instant::now();
        let mut history = History::new(start);
        let mut seconds = 0;
        while seconds < 3 * HISTORY.as_secs() {
            seconds += MARK_EVERY.as_secs();
            history.record(&snapshot(&[1_000]), start + Duration::from_secs(seconds));
        }
        let kept = (HISTORY.as_secs() / MARK_EVERY.as_secs()) as usize + 1;
        assert!(history.marks.len() <= kept, "{} marks", history.marks.len());
    }
}
