//! What the fast path's maps should hold, worked out from the node's
//! netlink view the way the kernel's own path decides:
//!
//! - local addresses: the interface's IPv4 addresses and the vxlan device's
//!   `local`;
//! - remote nodes: the unicast destinations of the vxlan device's FDB;
//! - pods: an IPv4 neighbour on a bridge (what routing resolves the pod's
//!   address to), whose MAC the bridge's FDB has learned on one of its veth
//!   ports (where the bridge forwards it), with the bridge's MAC as source.
//!
//! When the interface or the vxlan device is gone, down, or not what it was
//! at enable, nothing is fast-pathed.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
};

use netlink_packet_route::neighbour::NeighbourState;
use netprobe_common::fastpath::PodEntry;

use super::state::{FastpathState, SkippedPod};
use crate::netlink::{self, Link, Neighbour, NetlinkError};

/// The node as rtnetlink shows it.
pub struct NodeView {
    pub links: Vec<Link>,
    pub addresses: Vec<(u32, Ipv4Addr)>,
    pub neighbours: Vec<Neighbour>,
    pub fdb: Vec<Neighbour>,
}

impl NodeView {
    /// Reads the calling thread's namespace.
    pub fn read() -> Result<Self, NetlinkError> {
        Ok(Self {
            links: netlink::links()?,
            addresses: netlink::ipv4_addresses()?,
            neighbours: netlink::ipv4_neighbours()?,
            fdb: netlink::fdb()?,
        })
    }

    fn link(&self, index: u32) -> Option<&Link> {
        self.links.iter().find(|link| link.index == index)
    }
}

/// A pod the fast path can deliver to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    pub entry: PodEntry,
    /// Name of its host-side veth.
    pub port: String,
    /// Its end of the veth: ifindex in its namespace, and that namespace's
    /// id as the node knows it (`None`: the node's own).
    pub peer: Option<(u32, Option<i32>)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overlay {
    pub locals: BTreeSet<Ipv4Addr>,
    pub remotes: BTreeSet<Ipv4Addr>,
    pub pods: BTreeMap<Ipv4Addr, Pod>,
    pub skipped: Vec<SkippedPod>,
    /// Why nothing is fast-pathed, if so.
    pub idle: Option<String>,
}

impl Overlay {
    fn idle(reason: String) -> Self {
        Self {
            idle: Some(reason),
            ..Self::default()
        }
    }
}

/// The overlay of the fast path `state` describes, on the node `view` shows.
pub fn overlay(view: &NodeView, state: &FastpathState) -> Overlay {
    let interface = &state.id.interface;
    let vxlan_name = &state.vxlan.name;
    let Some(nic) = view
        .link(state.ifindex)
        .filter(|link| &link.name == interface)
    else {
        return Overlay::idle(format!("{interface} is gone"));
    };
    if nic.mac != state.nic_mac {
        return Overlay::idle(format!("{interface} changed its MAC since enable"));
    }
    let Some(vxlan) = view
        .link(state.vxlan.ifindex)
        .filter(|link| &link.name == vxlan_name)
    else {
        return Overlay::idle(format!("{vxlan_name} is gone"));
    };
    let settings = vxlan.vxlan.as_ref();
    if vxlan.mac != state.vxlan.mac
        || settings.is_none_or(|v| v.vni != state.vxlan.vni || v.port != state.vxlan.port)
    {
        return Overlay::idle(format!("{vxlan_name} changed since enable"));
    }
    if !vxlan.up {
        return Overlay::idle(format!("{vxlan_name} is down"));
    }

    let mut overlay = Overlay::default();
    overlay.locals.extend(
        view.addresses
            .iter()
            .filter(|(index, _)| *index == nic.index)
            .map(|(_, ip)| *ip),
    );
    overlay.locals.extend(settings.and_then(|v| v.local));
    overlay
        .remotes
        .extend(view.fdb.iter().filter_map(|entry| match entry.destination {
            Some(IpAddr::V4(ip))
                if entry.ifindex == vxlan.index
                    && !ip.is_unspecified()
                    && !ip.is_multicast()
                    && !ip.is_broadcast() =>
            {
                Some(ip)
            }
            _ => None,
        }));
    for neighbour in &view.neighbours {
        let Some(bridge) = view
            .link(neighbour.ifindex)
            .filter(|link| link.kind == "bridge" && link.up)
        else {
            continue;
        };
        let (Some(IpAddr::V4(ip)), Some(mac)) = (neighbour.destination, &neighbour.mac) else {
            continue;
        };
        // Multicast groups have neighbour entries too; no pod has them.
        if ip.is_multicast() || ip.is_broadcast() {
            continue;
        }
        if overlay.pods.contains_key(&ip) {
            continue;
        }
        match pod(view, bridge, neighbour.state, mac) {
            Ok(pod) => {
                overlay.pods.insert(ip, pod);
            }
            Err(reason) => overlay.skipped.push(SkippedPod { ip, reason }),
        }
    }
    overlay
}

/// The pod behind neighbour `mac` on `bridge`, or why there is none the
/// kernel would deliver to without resolving it first.
fn pod(view: &NodeView, bridge: &Link, state: NeighbourState, mac: &[u8]) -> Result<Pod, String> {
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
    })
}
