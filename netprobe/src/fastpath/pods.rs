//! The pods the fast path delivers to: an IPv4 neighbour on a bridge (what
//! routing resolves the pod's address to), whose MAC the bridge's FDB has
//! learned on one of its veth ports (where the bridge forwards it), with
//! the bridge's MAC as source; and the ones it leaves to the kernel, and
//! why.

use std::net::Ipv4Addr;

use netlink_packet_route::neighbour::NeighbourState;
use netprobe_common::fastpath::PodEntry;
use serde::{Deserialize, Serialize};

use super::view::NodeView;
use crate::netlink::Link;

/// A pod the fast path can deliver to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    pub entry: PodEntry,
    /// Name of its host-side veth.
    pub port: String,
    /// Its end of the veth: ifindex in its namespace, and that namespace's
    /// id as the node knows it (`None`: the node's own).
    pub peer: Option<(u32, Option<i32>)>,
    /// The bridge its veth is a port of.
    pub bridge: u32,
}

/// A pod the fast path leaves to the kernel, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedPod {
    pub ip: Ipv4Addr,
    pub reason: String,
}

/// The pod behind neighbour `mac` on `bridge`, or why there is none the
/// kernel would deliver to without resolving it first.
pub fn pod(
    view: &NodeView,
    bridge: &Link,
    state: NeighbourState,
    mac: &[u8],
) -> Result<Pod, String> {
    if matches!(
        state,
        NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
    ) {
        return Err(format!("neighbour entry on {} is {state}", bridge.name));
    }
    let (Ok(pod_mac), Ok(bridge_mac)) = (
        <[u8; 6]>::try_from(mac),
        <[u8; 6]>::try_from(&bridge.mac[..]),
    ) else {
        return Err(format!("no Ethernet addresses on {}", bridge.name));
    };
    let port = view
        .fdb
        .iter()
        .filter(|entry| {
            entry.master == Some(bridge.index)
                && entry.mac.as_deref() == Some(mac)
                && entry.state != NeighbourState::Permanent
        })
        .find_map(|entry| view.link(entry.ifindex))
        .filter(|port| port.kind == "veth" && port.master == Some(bridge.index))
        .ok_or_else(|| format!("{} has not learned its MAC on a veth port", bridge.name))?;
    if !port.up {
        return Err(format!("its veth {} is down", port.name));
    }
    Ok(Pod {
        entry: PodEntry {
            ifindex: port.index,
            mtu: u16::try_from(port.mtu).unwrap_or(u16::MAX),
            pod_mac,
            bridge_mac,
            _pad: 0,
        },
        port: port.name.clone(),
        peer: port.peer.map(|peer| (peer, port.peer_netnsid)),
        bridge: bridge.index,
    })
}
