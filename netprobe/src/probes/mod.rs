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

#[cfg(test)]
pub use self::trace::{test_flight, test_trace};
pub use self::{
    cost::ProgramCost,
    loaded::LoadedProbes,
    node::{Counted, Mark, NodeProbes},
    session::ProbeSession,
    snapshot::{Merge, Snapshot, empty_histogram},
    trace::{Fingerprint, SampledFlight, TcpNumbers},
};
pub use crate::bpf_link::XdpModeChoice;

/// The probes object, built by `cargo xtask build-ebpf`.
pub static PROBES_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netprobe-probes.o"));

/// Programs that exist for netprobe's tests and benchmarks: a known delay,
/// a foreign XDP program, programs that do nothing.
pub static TESTING_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netprobe-testing.o"));

/// One packet in this many is followed from hop to hop unless asked
/// otherwise.
pub const DEFAULT_FOLLOW_ONE_IN: u32 = 32;

#[derive(Clone, Debug)]
pub struct ProbeOptions {
    pub xdp_mode: XdpModeChoice,
    pub filter: FlowFilter,
    /// Follow one packet in N from hop to hop, the same ones at every hop of
    /// every node; 1 follows every packet (full tracking).
    pub follow_one_in: u32,
    /// Send one complete flight in N to userspace; 0 for none. Only
    /// followed packets complete a flight.
    pub sample_every: u32,
    /// Measure without XDP when another program holds the NIC's XDP hook.
    pub force: bool,
    /// Turn the kernel's bpf run-time statistics on, for each program's
    /// cost per run. They cost throughput themselves: two clock reads per
    /// program run, about 9% of the lab's throughput here.
    pub program_cost: bool,
    /// Count the segments that belong to one pod per pod (`--by-pod`).
    pub by_pod: bool,
    /// Also observe the NIC's qdisc, up to the driver (`--qdisc`).
    pub qdisc: bool,
    /// Every program returns at once: what the hooks themselves cost, with
    /// none of the probes' work (`lab overhead`).
    pub hooks_only: bool,
}

/// `--follow-one-in N`, for the commands that attach probes.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct FollowArg {
    /// Follow one packet in N through every hop: every hop of every node
    /// picks the same packets, by a hash of header fields no hop rewrites,
    /// and any other leaves each probe right after its headers are read.
    /// 1 follows every packet (full per-packet tracking, the costliest).
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_FOLLOW_ONE_IN,
        value_parser = parse_follow_one_in,
        allow_hyphen_values = true
    )]
    pub follow_one_in: u32,
}

/// A follow rate as `--follow-one-in` takes it: a whole number from 1 up.
pub fn parse_follow_one_in(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "{text:?} is not a follow rate: one packet in N, N a whole number from 1 up (1 follows every packet)"
        )),
    }
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            xdp_mode: XdpModeChoice::default(),
            filter: FlowFilter::default(),
            follow_one_in: DEFAULT_FOLLOW_ONE_IN,
            sample_every: 0,
            force: false,
            program_cost: false,
            by_pod: false,
            qdisc: false,
            hooks_only: false,
        }
    }
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
    #[error(
        "recording one packet in {sample} asks for packets that are not followed (one in {follow}): \
         sample one in {follow} or fewer, or follow more"
    )]
    SampleNotFollowed { sample: u32, follow: u32 },
    #[error("{hook}: attaching again after a pause: {reason}")]
    Resume { hook: &'static str, reason: String },
}

/// A hook that could not be attached here, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Unobserved {
    pub hook: Hook,
    pub reason: String,
}
