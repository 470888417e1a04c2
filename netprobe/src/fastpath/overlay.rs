//! What the fast path's maps should hold, worked out from the node's
//! netlink view the way the kernel's own path decides:
//!
//! - local addresses: the interface's IPv4 addresses and the vxlan device's
//!   `local`;
//! - remote nodes: the unicast destinations of the vxlan device's FDB;
//! - pods: an IPv4 neighbour on a bridge (what routing resolves the pod's
//!   address to), whose MAC the bridge's FDB has learned on one of its veth
//!   ports (where the bridge forwards it), with the bridge's MAC as source;
//! - the egress: see [`super::egress`].
//!
//! When the interface or the vxlan device is gone, down, or not what it was
//! at enable, nothing is fast-pathed.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs, io,
    net::{IpAddr, Ipv4Addr},
};

use netlink_packet_route::neighbour::NeighbourState;
use netprobe_common::fastpath::PodEntry;
use thiserror::Error;

use super::{
    egress::{self, Devices, Egress},
    state::{FastpathState, SkippedPod},
};
use crate::netlink::{self, Link, Neighbour, NetlinkError, Route, Rule};

#[derive(Debug, Error)]
pub enum ViewError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("reading {path}: {source}")]
    Sysctl { path: String, source: io::Error },
}

/// The node as rtnetlink and its sysctls show it.
pub struct NodeView {
    pub links: Vec<Link>,
    pub addresses: Vec<(u32, Ipv4Addr)>,
    pub neighbours: Vec<Neighbour>,
    pub fdb: Vec<Neighbour>,
    pub routes: Vec<Route>,
    pub rules: Vec<Rule>,
    /// The route to each remote VTEP of the vxlan device, by VTEP and the
    /// outgoing device its FDB entry names, as the device looks it up.
    pub outer_routes: BTreeMap<(Ipv4Addr, Option<u32>), Route>,
    pub sysctls: Sysctls,
}

/// The namespace's settings the kernel's path reads.
pub struct Sysctls {
    /// `net.ipv4.ip_default_ttl`: the outer TTL of `ttl auto`.
    pub default_ttl: u8,
    /// `net.ipv4.ip_local_port_range`: source ports of `srcport 0 0`.
    pub local_ports: (u16, u16),
    /// `net.ipv4.conf.BRIDGE.forwarding`, by bridge name.
    pub forwarding: BTreeMap<String, bool>,
}

impl NodeView {
    /// Reads the calling thread's namespace, with the outer routes of the
    /// vxlan device `vxlan` (ifindex).
    pub fn read(vxlan: u32) -> Result<Self, ViewError> {
        let links = netlink::links()?;
        let fdb = netlink::fdb()?;
        let local = links
            .iter()
            .find(|link| link.index == vxlan)
            .and_then(|link| link.vxlan.as_ref())
            .and_then(|settings| settings.local);
        let mut outer_routes = BTreeMap::new();
        for entry in fdb.iter().filter(|entry| entry.ifindex == vxlan) {
            if let Some(IpAddr::V4(vtep)) = entry.destination
                && !vtep.is_unspecified()
                && !vtep.is_multicast()
            {
                // No route is no entry: the packets go to the kernel.
                if let Ok(route) = netlink::ipv4_route_get(vtep, local, entry.via) {
                    outer_routes.insert((vtep, entry.via), route);
                }
            }
        }
        let sysctls = Sysctls::read(&links)?;
        Ok(Self {
            addresses: netlink::ipv4_addresses()?,
            neighbours: netlink::ipv4_neighbours()?,
            routes: netlink::ipv4_routes()?,
            rules: netlink::ipv4_rules()?,
            links,
            fdb,
            outer_routes,
            sysctls,
        })
    }

    fn link(&self, index: u32) -> Option<&Link> {
        self.links.iter().find(|link| link.index == index)
    }
}

impl Sysctls {
    /// The calling thread's namespace's (`/proc/sys/net` follows it).
    fn read(links: &[Link]) -> Result<Self, ViewError> {
        let read = |name: &str| {
            let path = format!("/proc/sys/net/ipv4/{name}");
            fs::read_to_string(&path).map_err(|source| ViewError::Sysctl { path, source })
        };
        let numbers = |name: &str| -> Result<Vec<u32>, ViewError> {
            Ok(read(name)?
                .split_whitespace()
                .filter_map(|word| word.parse().ok())
                .collect())
        };
        let default_ttl = numbers("ip_default_ttl")?.first().copied().unwrap_or(64);
        let ports = numbers("ip_local_port_range")?;
        let mut forwarding = BTreeMap::new();
        for bridge in links.iter().filter(|link| link.kind == "bridge") {
            let on = numbers(&format!("conf/{}/forwarding", bridge.name))?.first() == Some(&1);
            forwarding.insert(bridge.name.clone(), on);
        }
        Ok(Self {
            default_ttl: u8::try_from(default_ttl).unwrap_or(64),
            local_ports: match ports.as_slice() {
                [low, high] => (
                    u16::try_from(*low).unwrap_or(32768),
                    u16::try_from(*high).unwrap_or(60999),
                ),
                _ => (32768, 60999),
            },
            forwarding,
        })
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
    /// The bridge its veth is a port of.
    pub bridge: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overlay {
    pub locals: BTreeSet<Ipv4Addr>,
    pub remotes: BTreeSet<Ipv4Addr>,
    pub pods: BTreeMap<Ipv4Addr, Pod>,
    pub skipped: Vec<SkippedPod>,
    /// Why nothing is fast-pathed, if so.
    pub idle: Option<String>,
    pub egress: Egress,
}

impl Overlay {
    fn idle(reason: String) -> Self {
        Self {
            egress: Egress {
                idle: Some(reason.clone()),
                ..Egress::default()
            },
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
    if let Some(settings) = settings {
        let devices = Devices {
            nic,
            vxlan,
            settings,
        };
        overlay.egress = egress::plan(view, &devices, &overlay.pods);
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
        bridge: bridge.index,
    })
}
