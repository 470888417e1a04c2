//! `netprobe fastpath`: a VXLAN fast path on a node. On the node's
//! interface, XDP (or TC ingress) takes VXLAN packets for pods on this node
//! straight to the pod's veth, instead of through the vxlan device, routing
//! and the bridge, rewritten as that path would have delivered them; on
//! each served pod's veth, TC ingress takes the pod's packets for pods on
//! other nodes straight to the interface, encapsulated as routing and the
//! vxlan device would have sent them. Everything else goes to the kernel
//! unchanged.
//!
//! `enable` checks the node and records the fast path (see [`state`]), then
//! starts a sync process (`sync`) that loads and attaches the programs,
//! holds them, and keeps the maps and the pods' attachments in step with
//! netlink; `disable` stops it, which detaches everything, and puts back
//! the device settings the XDP path needed ([`devices`]).

pub mod cli;
pub mod devices;
pub mod egress;
mod hook;
mod lifecycle;
mod overlay;
mod pods;
pub mod programs;
pub mod state;
mod sync;
mod view;

use std::{io, path::PathBuf};

use aya::{EbpfError, maps::MapError, programs::ProgramError};
use thiserror::Error;

use self::{devices::DeviceError, state::StateError};
pub use self::{
    hook::HookChoice,
    lifecycle::{EnableOptions, disable, disable_all, disable_in, enable},
    programs::{FastpathMaps, LoadedFastpath},
    state::{FastpathId, FastpathState},
    view::ViewError,
};
pub use crate::path::FastpathHook;
use crate::{bpf_link::error_chain, netlink::NetlinkError, netns::NetNsError};

#[derive(Debug, Error)]
pub enum FastpathError {
    #[error("no interface {interface} in {netns}")]
    UnknownInterface { interface: String, netns: String },
    #[error("no vxlan device sends through {0}")]
    NoVxlan(String),
    #[error("no vxlan device {0}")]
    NoSuchVxlan(String),
    #[error("{device} does not send through {interface}")]
    VxlanElsewhere { device: String, interface: String },
    #[error("no vxlan device on {interface} has {wanted} (found: {found})")]
    NoMatchingVxlan {
        interface: String,
        wanted: String,
        found: String,
    },
    #[error("several vxlan devices on {interface} ({found}): choose one with --vxlan-dev")]
    AmbiguousVxlan { interface: String, found: String },
    #[error("{0} has no Ethernet address")]
    NoMac(String),
    #[error(
        "{interface} already has an XDP program (id {prog_id}); netprobe never replaces it \
         (--hook tc runs the fast path without XDP)"
    )]
    ForeignXdp { interface: String, prog_id: u32 },
    #[error("this kernel lacks {helper}, which {user} needs")]
    MissingHelper {
        helper: &'static str,
        /// `--hook xdp`, `--hook tc` or `the fast path` (its egress).
        user: String,
    },
    #[error("probing the kernel for {helper}: {}", error_chain(cause))]
    HelperProbe {
        helper: &'static str,
        cause: ProgramError,
    },
    #[error("the fast path is already enabled on {0} (netprobe fastpath disable first)")]
    AlreadyEnabled(String),
    #[error("no fast path on {0}")]
    NotEnabled(String),
    #[error(
        "the XDP fast path on veth {interface} needs its peer to send complete checksums, \
         but the peer is in a namespace netprobe cannot enter (not in /run/netns); \
         use --hook tc or --xdp-mode generic"
    )]
    PeerUnreachable { interface: String },
    #[error("loading the fast path: {}", error_chain(.0))]
    Load(EbpfError),
    #[error("the fast path object has no program {0}")]
    MissingProgram(&'static str),
    #[error("the fast path object has no map {0}")]
    MissingMap(&'static str),
    #[error("{} program: {}", hook.name(), error_chain(cause))]
    Program {
        hook: FastpathHook,
        cause: ProgramError,
    },
    #[error("attaching {} to {interface}: {reason}", hook.name())]
    Attach {
        hook: FastpathHook,
        interface: String,
        reason: String,
    },
    #[error("fast path map {name}: {}", error_chain(cause))]
    Map { name: &'static str, cause: MapError },
    #[error("opening map id {id}: {}", error_chain(cause))]
    OpenMap { id: u32, cause: MapError },
    #[error("{action} {}: {cause}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    /// The sync process's own error, as it logged it.
    #[error("{0}")]
    SyncStart(String),
    #[error("the sync process [{0}] did not stop")]
    SyncStop(libc::pid_t),
    #[error(
        "{0} was enabled in another network namespace: run disable there or name it with --netns"
    )]
    OtherNamespace(String),
    #[error("fast path on {id} not fully removed: {}", failures.join("; "))]
    Teardown { id: String, failures: Vec<String> },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    NetNs(#[from] NetNsError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    View(#[from] ViewError),
}

#[cfg(test)]
mod tests {
    use aya::sys::SyscallError;

    use super::*;

    #[test]
    fn an_io_error_is_named_once() {
        let error = FastpathError::Io {
            action: "reading",
            path: PathBuf::from("/run/netprobe/fastpath/x"),
            cause: io::Error::from_raw_os_error(libc::EACCES),
        };
        assert_eq!(
            error_chain(&error),
            "reading /run/netprobe/fastpath/x: Permission denied (os error 13)"
        );
    }

    /// aya's errors keep their own causes (a syscall's errno) in their
    /// source(): the message writes them out, each once.
    #[test]
    fn a_map_error_names_each_of_its_causes_once() {
        let error = FastpathError::Map {
            name: "FP_PODS",
            cause: MapError::SyscallError(SyscallError {
                call: "bpf_map_update_elem",
                io_error: io::Error::from_raw_os_error(libc::E2BIG),
            }),
        };
        assert_eq!(
            error_chain(&error),
            "fast path map FP_PODS: `bpf_map_update_elem` failed: \
             Argument list too long (os error 7)"
        );
    }
}
