//! Loading the per-hop probes and attaching them along a [`ProbePath`]. Every
//! attachment is a bpf_link owned by this process: when it exits, even by
//! `kill -9`, the kernel detaches everything.

mod cost;
mod loaded;
mod node;
mod session;
mod snapshot;
mod trace;

use aya::{EbpfError, maps::MapError, programs::ProgramError, sys::SyscallError};
use netprobe_common::config::FlowFilter;
use serde::Serialize;
use thiserror::Error;

use crate::{bpf_link::error_chain, kernel_btf::BtfError, netns::NetNsError, path::Hook};

pub use self::{
    cost::ProgramCost,
    loaded::LoadedProbes,
    node::{Counted, Mark, NodeProbes},
    session::{ProbeSession, probe_config},
    snapshot::{Merge, Snapshot, empty_histogram},
    trace::{Fingerprint, SampledFlight, TcpNumbers},
};
pub use crate::bpf_link::XdpModeChoice;

/// The probes object, built by `cargo xtask build-ebpf`.
pub static PROBES_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netprobe-probes.o"));

#[derive(Clone, Debug, Default)]
pub struct ProbeOptions {
    pub xdp_mode: XdpModeChoice,
    pub filter: FlowFilter,
    /// Send one complete flight in N to userspace; 0 for none.
    pub sample_every: u32,
    /// Measure without XDP when another program holds the NIC's XDP hook.
    pub force: bool,
    /// Leave the kernel's run-time statistics off: no per-program cost, and
    /// no cost of measuring it (two clock reads per program run, about 10%
    /// of throughput on a VM whose sched_clock is slow).
    pub skip_cost: bool,
}

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error(transparent)]
    NetNs(#[from] NetNsError),
    #[error(
        "{interface} already has an XDP program (id {prog_id}); netprobe never replaces it: \
         --force measures without the XDP hook"
    )]
    ForeignXdp { interface: String, prog_id: u32 },
    #[error("loading the probes: {}", error_chain(.0))]
    Load(EbpfError),
    #[error("loading program {program}: {}", error_chain(cause))]
    Program {
        program: &'static str,
        cause: ProgramError,
    },
    #[error("probe map {name}: {}", error_chain(cause))]
    Map { name: &'static str, cause: MapError },
    #[error("the probes object has no {0}")]
    Missing(&'static str),
    #[error("turning on bpf run-time statistics: {}", error_chain(.0))]
    Stats(SyscallError),
    #[error(
        "{interface}: {hook} attached without a bpf_link, which would outlive netprobe; refusing"
    )]
    NotALink {
        interface: String,
        hook: &'static str,
    },
    #[error("{hook}: attaching again after a pause: {reason}")]
    Resume { hook: &'static str, reason: String },
}

/// A hook that could not be attached here, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Unobserved {
    pub hook: Hook,
    pub reason: String,
}
