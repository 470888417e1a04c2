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
}
