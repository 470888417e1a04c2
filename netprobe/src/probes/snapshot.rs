//! The kernel's counters read back: histograms and join counts by slot,
//! and the histograms of segments counted per pod.

use std::collections::BTreeMap;

use netprobe_common::{
    histogram::{Histogram, bucket_low, bucket_width},
    probe::{HopStats, PodSlot, SLOTS, slot},
};

use crate::path::{Direction, Pod};

/// Kernel counters, summed over CPUs, by histogram slot.
#[derive(Clone)]
pub struct Snapshot {
    /// Over all pods: a pod's histograms are added in.
    pub histograms: Vec<Histogram>,
    pub hop_stats: Vec<HopStats>,
    /// The histograms of segments that belong to one pod, by slot and pod.
    pub pod_histograms: BTreeMap<PodSlot, Histogram>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            histograms: vec![empty_histogram(); SLOTS],
            hop_stats: vec![HopStats::default(); SLOTS],
            pod_histograms: BTreeMap::new(),
        }
    }
}

impl Snapshot {
    /// Over all pods.
    pub fn histogram(&self, direction: Direction, hop: usize) -> &Histogram {
        &self.histograms[slot(direction.code(), hop as u32) as usize]
    }

    /// `pod`'s when given (empty if it had no packet there), else over all
    /// pods.
    pub fn histogram_of(&self, direction: Direction, hop: usize, pod: Option<&Pod>) -> Histogram {
        let Some(pod) = pod else {
            return *self.histogram(direction, hop);
        };
        let key = PodSlot {
            slot: slot(direction.code(), hop as u32),
            pod: u32::from(pod.index),
        };
        self.pod_histograms
            .get(&key)
            .copied()
            .unwrap_or_else(empty_histogram)
    }

    /// Adds one pod's histogram of `key.slot`, also to the total over pods.
    pub fn add_pod_histogram(&mut self, key: PodSlot, histogram: &Histogram) {
        if let Some(total) = self.histograms.get_mut(key.slot as usize) {
            total.merge(histogram);
        }
        self.pod_histograms
            .entry(key)
            .or_insert_with(empty_histogram)
            .merge(histogram);
    }

    pub fn stats(&self, direction: Direction, hop: usize) -> &HopStats {
        &self.hop_stats[slot(direction.code(), hop as u32) as usize]
    }

    /// What was counted after `earlier`, a snapshot of the same session.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot {
            histograms: self
                .histograms
                .iter()
                .zip(&earlier.histograms)
                .map(|(now, then)| histogram_since(now, then))
                .collect(),
            hop_stats: self
                .hop_stats
                .iter()
                .zip(&earlier.hop_stats)
                .map(|(now, then)| HopStats {
                    seen: now.seen - then.seen,
                    joined: now.joined - then.joined,
                    unjoined: now.unjoined - then.unjoined,
                    skipped: now.skipped - then.skipped,
                    evicted: now.evicted - then.evicted,
                    expired: now.expired - then.expired,
                })
                .collect(),
            pod_histograms: self
                .pod_histograms
                .iter()
                .map(|(key, now)| {
                    let then = earlier.pod_histograms.get(key);
                    let since = then.map_or(*now, |then| histogram_since(now, then));
                    (*key, since)
                })
                .collect(),
        }
    }
}

/// Counts recorded between two snapshots of one histogram. Min and max of
/// the interval are known only to bucket precision: taken from the lowest
/// and highest buckets that grew.
fn histogram_since(now: &Histogram, then: &Histogram) -> Histogram {
    let mut interval = empty_histogram();
    for (index, bucket) in interval.buckets.iter_mut().enumerate() {
        *bucket = now.buckets[index] - then.buckets[index];
    }
    interval.count = now.count - then.count;
    interval.sum_ns = now.sum_ns - then.sum_ns;
    let grown = || {
        interval
            .buckets
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
    };
    if let (Some((low, _)), Some((high, _))) = (grown().next(), grown().next_back()) {
        interval.min_ns = bucket_low(low).max(now.min_ns);
        interval.max_ns = (bucket_low(high) + bucket_width(high) - 1).min(now.max_ns);
    }
    interval
}

pub fn empty_histogram() -> Histogram {
    Histogram {
        count: 0,
        sum_ns: 0,
        min_ns: 0,
        max_ns: 0,
        buckets: [0; netprobe_common::histogram::BUCKETS],
    }
}

/// Adds one CPU's (or one interval's) counts into a total.
pub trait Merge {
    fn merge(&mut self, other: &Self);
}

impl Merge for Histogram {
    fn merge(&mut self, other: &Self) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 || other.min_ns < self.min_ns {
            self.min_ns = other.min_ns;
        }
        self.max_ns = self.max_ns.max(other.max_ns);
        self.count += other.count;
        self.sum_ns += other.sum_ns;
        for (total, add) in self.buckets.iter_mut().zip(&other.buckets) {
            *total += add;
        }
    }
}

impl Merge for HopStats {
    fn merge(&mut self, other: &Self) {
        self.seen += other.seen;
        self.joined += other.joined;
        self.unjoined += other.unjoined;
        self.skipped += other.skipped;
        self.evicted += other.evicted;
        self.expired += other.expired;
    }
}
