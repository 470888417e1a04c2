//! The node as the fast path's sync reads it each round: rtnetlink's links,
//! addresses, neighbours, FDB, routes and rules, the outer route to each
//! remote VTEP, and the sysctls the kernel's path reads.

use std::{
    collections::BTreeMap,
    fs, io,
    net::{IpAddr, Ipv4Addr},
};

use thiserror::Error;

use crate::netlink::{self, Link, Neighbour, NetlinkError, Route, Rule};

#[derive(Debug, Error)]
pub enum ViewError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("reading {path}: {cause}")]
    Sysctl { path: String, cause: io::Error },
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

    pub fn link(&self, index: u32) -> Option<&Link> {
        self.links.iter().find(|link| link.index == index)
    }
}

impl Sysctls {
    /// The calling thread's namespace's (`/proc/sys/net` follows it).
    fn read(links: &[Link]) -> Result<Self, ViewError> {
        let read = |name: &str| {
            let path = format!("/proc/sys/net/ipv4/{name}");
            fs::read_to_string(&path).map_err(|cause| ViewError::Sysctl { path, cause })
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
