//! Device settings the native-XDP fast path depends on, which netprobe
//! changes and records so that `disable` puts them back:
//!
//! - A veth drops frames XDP redirects into it unless its peer runs NAPI,
//!   which GRO turns on: each served pod's end of its veth gets GRO.
//! - A veth NIC's peer hands packets over with CHECKSUM_PARTIAL (checksums
//!   left to an offload that never happens on a virtual wire), and an XDP
//!   redirect loses that state: the pod would find the inner checksums
//!   wrong. The peer gets tx checksum offload off, so it sends them
//!   complete, as a physical NIC would.
//!
//! TC and generic XDP keep the skb, and with it both, so they change nothing.

use std::{fmt, io};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{
    ethtool::{self, Feature},
    netlink::{self, NetlinkError},
    netns::{self, NetNs, NetNsError},
};

#[derive(Debug, Error)]
pub enum DeviceError {
    #[error("{action} {feature} on {device}: {cause}", feature = feature.name())]
    Ethtool {
        action: &'static str,
        feature: Feature,
        device: String,
        cause: io::Error,
    },
    #[error("no device with ifindex {ifindex}: {cause}")]
    NoDevice { ifindex: u32, cause: io::Error },
    #[error(transparent)]
    NetNs(#[from] NetNsError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("listing network namespaces: {0}")]
    ListNamespaces(io::Error),
}

/// A device setting netprobe changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceChange {
    /// Named namespace of the device; `None` for the node's own.
    pub netns: Option<String>,
    pub device: String,
    pub ifindex: u32,
    pub feature: Feature,
    /// What netprobe set it to; undoing sets the opposite.
    pub on: bool,
    /// For a pod's end of a veth: the node's end, whose disappearance
    /// takes the device (and the need to undo) with it.
    pub port: Option<u32>,
}

impl fmt::Display for DeviceChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.on { "on" } else { "off" };
        write!(f, "{} {state} on {}", self.feature.name(), self.device)?;
        if let Some(netns) = &self.netns {
            write!(f, "@{netns}")?;
        }
        let why = match self.feature {
            Feature::Gro => "so XDP frames redirected into its peer are received",
            Feature::TxChecksum => "so it sends complete checksums, which XDP does not carry",
        };
        write!(f, " ({why})")
    }
}

/// A device in a namespace: the node's own (`netns: None`) or a named one.
pub struct Target<'a> {
    pub node: &'a NetNs,
    pub netns: Option<&'a str>,
    pub ifindex: u32,
}

impl Target<'_> {
    fn run<T: Send>(
        &self,
        work: impl FnOnce() -> Result<T, DeviceError> + Send,
    ) -> Result<T, DeviceError> {
        match self.netns {
            Some(name) => NetNs::named(name)?.run(work)?,
            None => self.node.run(work)?,
        }
    }
}

/// Sets `feature` to `on` unless it is already; returns the change made.
pub fn ensure(
    target: &Target,
    feature: Feature,
    on: bool,
    port: Option<u32>,
) -> Result<Option<DeviceChange>, DeviceError> {
    let ifindex = target.ifindex;
    let changed = target.run(|| {
        let device = interface_name(ifindex)?;
        let ethtool_error = |action| {
            let device = device.clone();
            move |cause| DeviceError::Ethtool {
                action,
                feature,
                device,
                cause,
            }
        };
        if ethtool::get(ifindex, feature).map_err(ethtool_error("reading"))? == on {
            return Ok(None);
        }
        ethtool::set(ifindex, feature, on).map_err(ethtool_error("switching"))?;
        Ok(Some(device))
    })?;
    Ok(changed.map(|device| DeviceChange {
        netns: target.netns.map(str::to_owned),
        device,
        ifindex,
        feature,
        on,
        port,
    }))
}

/// Puts the setting back, unless its namespace or device is gone (and the
/// setting with it).
pub fn undo(change: &DeviceChange, node: &NetNs) -> Result<(), DeviceError> {
    if let Some(name) = &change.netns
        && !netns::named_namespaces()
            .map_err(DeviceError::ListNamespaces)?
            .contains(name)
    {
        return Ok(());
    }
    let target = Target {
        node,
        netns: change.netns.as_deref(),
        ifindex: change.ifindex,
    };
    target.run(|| {
        // The same ifindex with another name is another device.
        if ethtool::interface_name(change.ifindex).ok().as_ref() != Some(&change.device) {
            return Ok(());
        }
        ethtool::set(change.ifindex, change.feature, !change.on).map_err(|cause| {
            DeviceError::Ethtool {
                action: "restoring",
                feature: change.feature,
                device: change.device.clone(),
                cause,
            }
        })
    })
}

fn interface_name(ifindex: u32) -> Result<String, DeviceError> {
    ethtool::interface_name(ifindex).map_err(|cause| DeviceError::NoDevice { ifindex, cause })
}

/// The named namespace that `node` knows by `nsid` (a link's
/// `link-netnsid`), if it has a name.
pub fn named_netns_by_id(node: &NetNs, nsid: i32) -> Result<Option<String>, DeviceError> {
    for name in netns::named_namespaces().map_err(DeviceError::ListNamespaces)? {
        let Ok(candidate) = NetNs::named(&name) else {
            // Removed while we looked.
            continue;
        };
        if node.run(|| netlink::netns_id(&candidate))?? == Some(nsid) {
            return Ok(Some(name));
        }
    }
    Ok(None)
}
