//! What a run measured, as JSON for the bench and as text for people.

use std::fmt;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The summary of one run. All times are nanoseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    pub url: String,
    pub connections: usize,
    pub threads: usize,
    /// Requests per second asked for.
    pub requested_rate: f64,
    /// Responses per second of the measured window: `requests / duration`.
    pub achieved_rate: f64,
    /// The measured window, after the warm-up.
    pub duration_ns: u64,
    pub warmup_ns: u64,
    /// Responses received, whatever their status, to requests due in the window.
    pub requests: u64,
    /// `status_errors + protocol_errors + io_errors`.
    pub errors: u64,
    /// Responses with a status outside 2xx.
    pub status_errors: u64,
    /// Responses that could not be parsed.
    pub protocol_errors: u64,
    /// Requests lost to failed connects, resets and closes mid-response.
    pub io_errors: u64,
    /// Requests without a whole response within the timeout.
    pub timeouts: u64,
    /// Attempts to open a connection again after the server closed it or it
    /// failed; attempts that fail are also `io_errors`.
    pub reconnects: u64,
    /// From the scheduled send time to the end of the response.
    pub latency: LatencySummary,
    /// From the scheduled send time to the actual one: the part of the
    /// latency spent before sending, waiting for the previous response on
    /// the connection or for this generator to wake up.
    pub send_lag: LatencySummary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub mean_ns: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
}

impl LatencySummary {
    /// Summarizes a histogram of nanoseconds, e.g. several runs' merged.
    pub fn from_histogram(latency: &Histogram<u64>) -> Self {
        Self {
            mean_ns: latency.mean().round() as u64,
            p50_ns: latency.value_at_quantile(0.5),
            p90_ns: latency.value_at_quantile(0.9),
            p99_ns: latency.value_at_quantile(0.99),
            p999_ns: latency.value_at_quantile(0.999),
            max_ns: latency.max(),
        }
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} on {} for {} after {} of warm-up",
            self.url,
            Count(self.connections, "connection"),
            Count(self.threads, "thread"),
            Nanos(self.duration_ns),
            Nanos(self.warmup_ns)
        )?;
        writeln!(
            f,
            "  rate      {:.1} req/s achieved of {:.1} requested ({:+.2}%), {} responses",
            self.achieved_rate,
            self.requested_rate,
            (self.achieved_rate / self.requested_rate - 1.0) * 100.0,
            self.requests
        )?;
        writeln!(
            f,
            "  errors    {} (status {}, protocol {}, I/O {}), {} timeouts, {} reconnects",
            self.errors,
            self.status_errors,
            self.protocol_errors,
            self.io_errors,
            self.timeouts,
            self.reconnects
        )?;
        writeln!(f, "  latency   {}", self.latency)?;
        write!(f, "  send lag  {}", self.send_lag)
    }
}

impl fmt::Display for LatencySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mean {}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            Nanos(self.mean_ns),
            Nanos(self.p50_ns),
            Nanos(self.p90_ns),
            Nanos(self.p99_ns),
            Nanos(self.p999_ns),
            Nanos(self.max_ns)
        )
    }
}

/// A number of things, with the noun in the plural unless there is one.
struct Count(usize, &'static str);

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self(count, noun) = *self;
        write!(f, "{count} {noun}{}", if count == 1 { "" } else { "s" })
    }
}

/// Nanoseconds in the unit that keeps three or four digits.
struct Nanos(u64);

impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0 as f64;
        match self.0 {
            0..1_000 => write!(f, "{}ns", self.0),
            1_000..1_000_000 => write!(f, "{:.1}us", ns / 1e3),
            1_000_000..1_000_000_000 => write!(f, "{:.2}ms", ns / 1e6),
            _ => write!(f, "{:.2}s", ns / 1e9),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarizes_a_histogram() {
        let mut latency = Histogram::<u64>::new(3).unwrap();
        for us in 1..=1000 {
            latency.record(us * 1000).unwrap();
        }
        let summary = LatencySummary::from_histogram(&latency);
        let within = |value: u64, expected: u64| value.abs_diff(expected) <= expected / 500;
        assert!(within(summary.p50_ns, 500_000), "{summary:?}");
        assert!(within(summary.p90_ns, 900_000), "{summary:?}");
        assert!(within(summary.p99_ns, 990_000), "{summary:?}");
        assert!(within(summary.p999_ns, 999_000), "{summary:?}");
        assert!(within(summary.max_ns, 1_000_000), "{summary:?}");
        assert!(within(summary.mean_ns, 500_500), "{summary:?}");
    }

    #[test]
    fn prints_times_and_counts_readably() {
        let shown: Vec<_> = [999, 1_500, 2_345_678, 3_000_000_000]
            .map(|ns| Nanos(ns).to_string())
            .into();
        assert_eq!(shown, ["999ns", "1.5us", "2.35ms", "3.00s"]);
        assert_eq!(Count(1, "thread").to_string(), "1 thread");
        assert_eq!(Count(2, "thread").to_string(), "2 threads");
    }
}
