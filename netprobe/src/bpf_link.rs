//! Attaching a loaded program to a device as a bpf_link owned by the caller,
//! inside the device's namespace: XDP in the modes `--xdp-mode` allows,
//! never replacing a program that holds the device already, and tcx at a
//! chosen place in the chain.

use std::io;

use aya::programs::{
    LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode, links::FdLink,
    tc::TcAttachOptions,
};
use serde::Serialize;

use crate::netns::{NetNs, NetNsError};

/// How XDP attaches (`--xdp-mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum XdpModeChoice {
    /// Native if the driver supports it, else generic.
    #[default]
    Auto,
    Native,
    Generic,
}

impl XdpModeChoice {
    /// The modes to try, in order.
    fn modes(self) -> &'static [XdpMode] {
        match self {
            XdpModeChoice::Auto => &[XdpMode::Driver, XdpMode::Skb],
            XdpModeChoice::Native => &[XdpMode::Driver],
            XdpModeChoice::Generic => &[XdpMode::Skb],
        }
    }
}

/// `native` or `generic`.
pub fn xdp_mode_name(mode: XdpMode) -> &'static str {
    match mode {
        XdpMode::Driver => "native",
        _ => "generic",
    }
}

/// Why a program could not be attached; callers word it for their command.
#[derive(Debug)]
pub enum AttachError {
    /// Another XDP program holds the device.
    Busy,
    /// The kernel attached without a bpf_link, which would outlive us.
    NotALink,
    /// The kernel refused (the last mode tried, for XDP).
    Refused(ProgramError),
    NetNs(NetNsError),
}

impl From<NetNsError> for AttachError {
    fn from(error: NetNsError) -> Self {
        AttachError::NetNs(error)
    }
}

/// Attaches a loaded XDP program to `ifindex` in `netns`, trying the modes
/// `choice` allows in order; returns the link and the mode that took.
pub fn attach_xdp(
    xdp: &mut Xdp,
    ifindex: u32,
    netns: &NetNs,
    choice: XdpModeChoice,
) -> Result<(FdLink, XdpMode), AttachError> {
    // XDP attaches by ifindex in the calling thread's namespace.
    let _in_netns = netns.enter()?;
    let mut last_error = None;
    for &mode in choice.modes() {
        match xdp.attach_to_if_index(ifindex, mode) {
            Ok(id) => {
                let link = xdp.take_link(id).map_err(AttachError::Refused)?;
                let link = FdLink::try_from(link).map_err(|_| AttachError::NotALink)?;
                return Ok((link, mode));
            }
            Err(error) if is_busy(&error) => return Err(AttachError::Busy),
            Err(error) => last_error = Some(error),
        }
    }
    Err(AttachError::Refused(
        last_error.expect("every choice has at least one mode"),
    ))
}

/// Attaches a loaded classifier to `interface` in `netns` as a tcx link at
/// `order` in the chain.
pub fn attach_tcx(
    classifier: &mut SchedClassifier,
    interface: &str,
    attach_type: TcAttachType,
    order: LinkOrder,
    netns: &NetNs,
) -> Result<FdLink, AttachError> {
    let _in_netns = netns.enter()?;
    let id = classifier
        .attach_with_options(interface, attach_type, TcAttachOptions::TcxOrder(order))
        .map_err(AttachError::Refused)?;
    let link = classifier.take_link(id).map_err(AttachError::Refused)?;
    FdLink::try_from(link).map_err(|_| AttachError::NotALink)
}

/// EBUSY/EEXIST: another XDP program holds the device.
fn is_busy(error: &ProgramError) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<io::Error>()
            && matches!(io.raw_os_error(), Some(libc::EBUSY | libc::EEXIST))
        {
            return true;
        }
        source = error.source();
    }
    false
}

/// An error and its causes on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(error) = source {
        text.push_str(": ");
        text.push_str(&error.to_string());
        source = error.source();
    }
    text
}
