//! What the egress maps should hold, worked out the way the kernel's path
//! decides for a packet from a served pod to its gateway:
//!
//! - routing: the local table, then the main table (policy rules other than
//!   the three default ones leave egress to the kernel); routes through the
//!   vxlan device with a gateway, or without one for each neighbour the
//!   device has in the prefix;
//! - the vxlan device: the gateway's neighbour entry on it gives the inner
//!   destination MAC, the device's FDB entry for that MAC the remote VTEP
//!   (exactly one, else the kernel replicates), its own port, VNI and
//!   outgoing device where it has them;
//! - the outer route to the VTEP (`ip route get`), which must leave by the
//!   node's interface, and its next hop's neighbour entry;
//! - the device's TTL, TOS, DF, source port range and UDP checksums;
//! - the smaller of the inner route's MTU and the outer route's less the
//!   VXLAN overhead.
//!
//! Every destination that does not resolve so has an entry that leaves its
//! packets to the kernel, counted by why.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
};

use netlink_packet_route::{neighbour::NeighbourState, route::RouteType};
use netprobe_common::fastpath::{
    DF_INHERIT, DF_SET, DF_UNSET, EgressCounter, EgressPort, EgressRoute, OUTER_LEN, TTL_INHERIT,
};
use serde::{Deserialize, Serialize};

use super::{
    pods::{Pod, SkippedPod},
    view::NodeView,
};
use crate::netlink::{Link, Neighbour, Route, TABLE_DEFAULT, TABLE_LOCAL, TABLE_MAIN, Vxlan};

/// An IPv4 prefix, as the route map keys it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Prefix {
    pub address: Ipv4Addr,
    pub len: u8,
}

impl Prefix {
    pub fn new(address: Ipv4Addr, len: u8) -> Self {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        Self {
            address: Ipv4Addr::from(u32::from(address) & mask),
            len,
        }
    }

    fn host(address: Ipv4Addr) -> Self {
        Self::new(address, 32)
    }

    /// Whether `other` lies within this prefix.
    fn covers(&self, other: &Prefix) -> bool {
        other.len >= self.len && Prefix::new(other.address, self.len) == *self
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.len)
    }
}

/// A prefix the fast path encapsulates for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedRoute {
    pub prefix: Prefix,
    /// The remote VTEP.
    pub vtep: Ipv4Addr,
    /// The outer route's next hop on the node's interface.
    pub next_hop: Ipv4Addr,
}

/// A prefix through the vxlan device that is left to the kernel, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedRoute {
    pub prefix: Prefix,
    pub reason: String,
}

/// What the egress maps should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Egress {
    /// Served pods' veths by ifindex.
    pub ports: BTreeMap<u32, EgressPort>,
    pub routes: BTreeMap<Prefix, EgressRoute>,
    pub served: Vec<ServedRoute>,
    pub skipped: Vec<SkippedRoute>,
    /// Served pods whose packets the egress leaves to the kernel, and why.
    pub skipped_pods: Vec<SkippedPod>,
    /// Why nothing is encapsulated, if so.
    pub idle: Option<String>,
}

impl Egress {
    fn idle(reason: String) -> Self {
        Self {
            idle: Some(reason),
            ..Self::default()
        }
    }

    /// The entry for `prefix`, served or left to the kernel.
    fn add(&mut self, prefix: Prefix, resolved: Result<(EgressRoute, ServedRoute), Unresolved>) {
        match resolved {
            Ok((entry, served)) => {
                self.routes.insert(prefix, entry);
                self.served.push(ServedRoute { prefix, ..served });
            }
            Err((counter, reason)) => {
                self.routes.insert(prefix, EgressRoute::pass(counter));
                self.skipped.push(SkippedRoute { prefix, reason });
            }
        }
    }
}

/// The node's devices the encapsulation goes through.
pub struct Devices<'a> {
    pub nic: &'a Link,
    pub vxlan: &'a Link,
    pub settings: &'a Vxlan,
}

/// The egress of the node `view` shows, for packets from `pods`.
pub fn plan(view: &NodeView, devices: &Devices, pods: &BTreeMap<Ipv4Addr, Pod>) -> Egress {
    let vxlan = devices.vxlan;
    let settings = devices.settings;
    if let Some(extension) = settings.extensions.first() {
        return Egress::idle(format!(
            "{} sends with {extension}, which the fast path does not encapsulate",
            vxlan.name
        ));
    }
    if let Some(rule) = view.rules.iter().find(|rule| {
        !rule.lookup
            || rule.selective
            || ![
                (0, TABLE_LOCAL),
                (32766, TABLE_MAIN),
                (32767, TABLE_DEFAULT),
            ]
            .contains(&(rule.priority, rule.table))
    }) {
        return Egress::idle(format!(
            "policy routing rule {} is not one of the defaults",
            rule.priority
        ));
    }
    if view.routes.iter().any(|route| route.table == TABLE_DEFAULT) {
        return Egress::idle("the routing table default is not empty".to_owned());
    }
    let (port_min, port_max) = match settings.port_range {
        (low, high) if low < high => (low, high),
        _ => view.sysctls.local_ports,
    };
    let template = EgressRoute {
        vni: settings.vni,
        dst_port: settings.port,
        port_min,
        port_span: port_max - port_min,
        ttl: match (settings.ttl_inherit, settings.ttl) {
            (true, _) => TTL_INHERIT,
            (false, ttl) => ttl,
        },
        tos: settings.tos,
        df: match settings.df {
            DF_SET | DF_INHERIT => settings.df,
            _ => DF_UNSET,
        },
        udp_csum: u8::from(settings.udp_csum),
        inner_src_mac: mac(&vxlan.mac).unwrap_or_default(),
        ..EgressRoute::default()
    };

    let mut egress = Egress::default();
    for (ip, pod) in pods {
        let Some(bridge) = view.links.iter().find(|link| link.index == pod.bridge) else {
            continue;
        };
        if !view
            .sysctls
            .forwarding
            .get(&bridge.name)
            .copied()
            .unwrap_or(false)
        {
            egress.skipped_pods.push(SkippedPod {
                ip: *ip,
                reason: format!("{} does not forward IPv4", bridge.name),
            });
            continue;
        }
        egress.ports.entry(pod.entry.ifindex).or_insert(EgressPort {
            pod: u32::from_ne_bytes(ip.octets()),
            bridge_mac: pod.entry.bridge_mac,
            _pad: 0,
        });
    }

    let local: Vec<(Prefix, EgressRoute)> = view
        .routes
        .iter()
        .filter(|route| route.table == TABLE_LOCAL)
        .map(|route| {
            let counter = match route.kind {
                RouteType::Local => EgressCounter::ToNode,
                RouteType::Broadcast | RouteType::Multicast => EgressCounter::Broadcast,
                _ => EgressCounter::NotOverlay,
            };
            (prefix_of(route), EgressRoute::pass(counter))
        })
        .collect();
    let resolver = Resolver {
        view,
        devices,
        template,
    };
    for route in view.routes.iter().filter(|route| route.table == TABLE_MAIN) {
        let prefix = prefix_of(route);
        // The local table is looked up first: where it covers a main route,
        // it decides.
        if let Some((_, entry)) = local.iter().find(|(local, _)| local.covers(&prefix)) {
            egress.routes.insert(prefix, *entry);
            continue;
        }
        let through_vxlan = route.kind == RouteType::Unicast && route.oif == Some(vxlan.index);
        if !through_vxlan {
            egress
                .routes
                .insert(prefix, EgressRoute::pass(EgressCounter::NotOverlay));
            continue;
        }
        if route.multipath || route.tos != 0 {
            let reason = if route.multipath {
                "several next hops"
            } else {
                "selected by TOS"
            };
            egress
                .routes
                .insert(prefix, EgressRoute::pass(EgressCounter::NotOverlay));
            egress.skipped.push(SkippedRoute {
                prefix,
                reason: reason.to_owned(),
            });
            continue;
        }
        match route.gateway {
            Some(gateway) => egress.add(prefix, resolver.resolve(route, gateway)),
            // On-link through the device: each destination is its own
            // neighbour.
            None => {
                egress
                    .routes
                    .insert(prefix, EgressRoute::pass(EgressCounter::UnknownRemote));
                for neighbour in resolver.neighbours_in(&prefix) {
                    egress.add(Prefix::host(neighbour), resolver.resolve(route, neighbour));
                }
            }
        }
    }
    for (prefix, entry) in &local {
        egress.routes.insert(*prefix, *entry);
    }
    for ip in pods.keys() {
        egress.routes.insert(
            Prefix::host(*ip),
            EgressRoute::pass(EgressCounter::LocalPod),
        );
    }
    egress
}

fn prefix_of(route: &Route) -> Prefix {
    Prefix::new(route.destination, route.prefix_len)
}

fn mac(bytes: &[u8]) -> Option<[u8; 6]> {
    <[u8; 6]>::try_from(bytes).ok()
}

/// Neighbour states the kernel sends to without resolving first.
fn usable(state: NeighbourState) -> bool {
    !matches!(
        state,
        NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
    )
}

struct Resolver<'a> {
    view: &'a NodeView,
    devices: &'a Devices<'a>,
    template: EgressRoute,
}

type Unresolved = (EgressCounter, String);

impl Resolver<'_> {
    /// The vxlan device's IPv4 neighbours within `prefix`.
    fn neighbours_in(&self, prefix: &Prefix) -> Vec<Ipv4Addr> {
        self.view
            .neighbours
            .iter()
            .filter(|neighbour| neighbour.ifindex == self.devices.vxlan.index)
            .filter_map(|neighbour| match neighbour.destination {
                Some(IpAddr::V4(ip)) if prefix.covers(&Prefix::host(ip)) => Some(ip),
                _ => None,
            })
            .collect()
    }

    fn neighbour(&self, ifindex: u32, ip: Ipv4Addr) -> Option<&Neighbour> {
        self.view.neighbours.iter().find(|neighbour| {
            neighbour.ifindex == ifindex && neighbour.destination == Some(IpAddr::V4(ip))
        })
    }

    /// The encapsulation for packets that `route` sends to `gateway` on the
    /// vxlan device.
    fn resolve(
        &self,
        route: &Route,
        gateway: Ipv4Addr,
    ) -> Result<(EgressRoute, ServedRoute), Unresolved> {
        let Devices {
            nic,
            vxlan,
            settings,
        } = self.devices;
        let unknown = |reason: String| (EgressCounter::UnknownRemote, reason);
        let neighbour = self
            .neighbour(vxlan.index, gateway)
            .filter(|neighbour| usable(neighbour.state))
            .and_then(|neighbour| neighbour.mac.as_deref().and_then(mac))
            .ok_or_else(|| {
                unknown(format!(
                    "{gateway} has no neighbour entry on {}",
                    vxlan.name
                ))
            })?;
        let fdb = self.fdb_for(&neighbour);
        let remote = match fdb.as_slice() {
            [remote] => *remote,
            [] => {
                return Err(unknown(format!(
                    "{} has no FDB entry for {}",
                    vxlan.name,
                    mac_text(&neighbour)
                )));
            }
            many => {
                return Err((
                    EgressCounter::NotOverlay,
                    format!(
                        "{} sends {} to {} VTEPs",
                        vxlan.name,
                        mac_text(&neighbour),
                        many.len()
                    ),
                ));
            }
        };
        let Some(IpAddr::V4(vtep)) = remote.destination else {
            return Err(unknown(format!(
                "the FDB entry for {} has no IPv4 VTEP",
                mac_text(&neighbour)
            )));
        };
        if vtep.is_multicast() || vtep.is_broadcast() || vtep.is_unspecified() {
            return Err((
                EgressCounter::NotOverlay,
                format!("{} floods {} to {vtep}", vxlan.name, mac_text(&neighbour)),
            ));
        }
        let outer = self
            .view
            .outer_routes
            .get(&(vtep, remote.via))
            .ok_or_else(|| unknown(format!("no route to the VTEP {vtep}")))?;
        if outer.kind == RouteType::Local {
            return Err((
                EgressCounter::NotOverlay,
                format!("the VTEP {vtep} is this node"),
            ));
        }
        if outer.kind != RouteType::Unicast || outer.multipath {
            return Err((
                EgressCounter::NotOverlay,
                format!("the route to the VTEP {vtep} is not a plain unicast one"),
            ));
        }
        if outer.oif != Some(nic.index) {
            return Err((
                EgressCounter::NotOverlay,
                format!(
                    "the VTEP {vtep} is reached by another interface than {}",
                    nic.name
                ),
            ));
        }
        let next_hop = outer.gateway.unwrap_or(vtep);
        let next_hop_mac = self
            .neighbour(nic.index, next_hop)
            .filter(|neighbour| usable(neighbour.state))
            .and_then(|neighbour| neighbour.mac.as_deref().and_then(mac))
            .ok_or_else(|| unknown(format!("{next_hop} has no neighbour entry on {}", nic.name)))?;
        let outer_src = settings
            .local
            .or(outer.prefsrc)
            .ok_or_else(|| unknown(format!("no source address towards {vtep}")))?;
        let inner_mtu = route.mtu.unwrap_or(vxlan.mtu);
        let outer_mtu = outer.mtu.unwrap_or(nic.mtu);
        let max_inner = inner_mtu.min(outer_mtu.saturating_sub(OUTER_LEN as u32));
        let ttl = match self.template.ttl {
            0 if !settings.ttl_inherit => outer
                .hoplimit
                .map_or(self.view.sysctls.default_ttl, |hoplimit| hoplimit as u8),
            ttl => ttl,
        };
        let entry = EgressRoute {
            pass: 0,
            nic_ifindex: nic.index,
            outer_src: u32::from_ne_bytes(outer_src.octets()),
            outer_dst: u32::from_ne_bytes(vtep.octets()),
            vni: remote.vni.unwrap_or(self.template.vni),
            dst_port: remote.port.unwrap_or(self.template.dst_port),
            max_inner: u16::try_from(max_inner).unwrap_or(u16::MAX),
            ttl,
            outer_dst_mac: next_hop_mac,
            outer_src_mac: mac(&nic.mac).unwrap_or_default(),
            inner_dst_mac: neighbour,
            ..self.template
        };
        let served = ServedRoute {
            prefix: prefix_of(route),
            vtep,
            next_hop,
        };
        Ok((entry, served))
    }

    /// The vxlan device's FDB entries for `mac`, or for the all-zeros MAC
    /// when it has none (its default destinations).
    fn fdb_for(&self, mac: &[u8; 6]) -> Vec<&Neighbour> {
        let entries = |wanted: &[u8; 6]| -> Vec<&Neighbour> {
            self.view
                .fdb
                .iter()
                .filter(|entry| {
                    entry.ifindex == self.devices.vxlan.index
                        && entry.mac.as_deref() == Some(wanted.as_slice())
                })
                .collect()
        };
        let exact = entries(mac);
        if exact.is_empty() {
            entries(&[0; 6])
        } else {
            exact
        }
    }
}

fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
