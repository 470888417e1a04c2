//! What a run measured, as JSON for the bench and as text for people.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Pacing;
use crate::report::{Latency, format_ns};

/// The summary of one run. All times are nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    pub url: String,
    pub connections: usize,
    pub threads: usize,
    /// How the generator waited for each send time.
    pub pacing: Pacing,
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
    pub latency: Latency,
    /// From the scheduled send time to the actual one: the part of the
    /// latency spent before sending, waiting for the previous response on
    /// the connection or for this generator to wake up.
    pub send_lag: Latency,
}

impl LoadReport {
    /// Whether the run kept to the requested rate within `tolerance` (a
    /// share of it), every request answered in time and without error.
    pub fn held_within(&self, tolerance: f64) -> bool {
        self.achieved_rate >= (1.0 - tolerance) * self.requested_rate
            && self.errors == 0
            && self.timeouts == 0
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} on {} ({} pacing) for {} after {} of warm-up",
            self.url,
            Count(self.connections, "connection"),
            Count(self.threads, "thread"),
            self.pacing,
            format_ns(self.duration_ns),
            format_ns(self.warmup_ns)
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

/// A number of things, with the noun in the plural unless there is one.
struct Count(usize, &'static str);

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self(count, noun) = *self;
        write!(f, "{count} {noun}{}", if count == 1 { "" } else { "s" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_counts_readably() {
        assert_eq!(Count(1, "thread").to_string(), "1 thread");
        assert_eq!(Count(2, "thread").to_string(), "2 threads");
    }

    #[test]
    fn a_rate_is_held_within_the_tolerance_with_every_request_answered() {
        let run = |achieved_rate, timeouts| LoadReport {
            requested_rate: 10_000.0,
            achieved_rate,
            timeouts,
            ..LoadReport::default()
        };
        assert!(run(9_950.0, 0).held_within(0.01));
        assert!(!run(9_850.0, 0).held_within(0.01));
        assert!(run(9_850.0, 0).held_within(0.02));
        assert!(!run(10_000.0, 1).held_within(0.01));
    }
}
