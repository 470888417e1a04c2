//! Idle CPUs poll instead of halting while the bench runs. On a VM, waking
//! a halted vCPU costs tens of microseconds, at random: more than most
//! modes differ by. A PM QoS request for zero exit latency
//! on `/dev/cpu_dma_latency`, as cyclictest and tuned's latency-performance
//! profile hold, keeps cpuidle in its polling state. The kernel drops the
//! request when the file closes, so even a killed bench leaves nothing.

use std::{fs::File, io::Write as _};

const PM_QOS_DEVICE: &str = "/dev/cpu_dma_latency";

/// The held request; dropping it lets the CPUs halt again.
pub struct IdlePolling {
    request: Option<File>,
    /// What the bench ran with, for `results.json`.
    pub state: String,
}

impl IdlePolling {
    /// Holds the request, or says loudly why the CPUs may still halt.
    pub fn hold(allow_idle_states: bool) -> Self {
        if allow_idle_states {
            return Self::without("idle states allowed (--allow-idle-states)".to_owned());
        }
        match request_zero_latency() {
            Ok(request) => Self {
                request: Some(request),
                state: format!("polling ({PM_QOS_DEVICE} held at 0)"),
            },
            Err(error) => {
                let state = format!("idle states allowed: {PM_QOS_DEVICE}: {error}");
                log::warn!("{state}; latencies will carry the CPUs' wake-up time");
                Self::without(state)
            }
        }
    }

    /// Whether the CPUs are kept polling.
    pub fn holds(&self) -> bool {
        self.request.is_some()
    }

    fn without(state: String) -> Self {
        Self {
            request: None,
            state,
        }
    }
}

fn request_zero_latency() -> std::io::Result<File> {
    let mut request = File::options().write(true).open(PM_QOS_DEVICE)?;
    request.write_all(&0i32.to_ne_bytes())?;
    Ok(request)
}
