//! What a probe program costs per run.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Cost of one probe program.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgramCost {
    pub program: String,
    pub run_cnt: u64,
    pub run_time_ns: u64,
    pub ns_per_run: f64,
}

impl ProgramCost {
    pub fn new(program: &str, run_cnt: u64, run_time: Duration) -> Self {
        let run_time_ns = run_time.as_nanos() as u64;
        Self {
            program: program.to_owned(),
            run_cnt,
            run_time_ns,
            ns_per_run: if run_cnt == 0 {
                0.0
            } else {
                run_time_ns as f64 / run_cnt as f64
            },
        }
    }

    /// The runs and run time since `then`, a reading of the same program
    /// (none: since it was loaded).
    pub fn since(&self, then: Option<&ProgramCost>) -> ProgramCost {
        let runs = self.run_cnt - then.map_or(0, |then| then.run_cnt);
        let time = self.run_time_ns - then.map_or(0, |then| then.run_time_ns);
        ProgramCost::new(&self.program, runs, Duration::from_nanos(time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_time_are_taken_between_readings() {
        let then = ProgramCost::new("p", 1_000, Duration::from_nanos(90_000));
        let now = ProgramCost::new("p", 3_000, Duration::from_nanos(250_000));
        let since = now.since(Some(&then));
        assert_eq!((since.run_cnt, since.ns_per_run), (2_000, 80.0));
        assert_eq!(now.since(None), now);
        assert_eq!(now.since(Some(&now)).ns_per_run, 0.0);
    }
}
