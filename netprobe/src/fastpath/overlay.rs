//! What the fast path's maps should hold, worked out from the node's
//! netlink view the way the kernel's own path decides:
//!
//! - local addresses: the interface's IPv4 addresses and the vxlan device's
//!   `local`;
//! - remote nodes: the unicast destinations of the vxlan device's FDB;
//! - pods: see [`super::pods`];
//! - the egress: see [`super::egress`].
//!
//! When the interface or the vxlan device is gone, down, or not what it was
//! at enable, nothing is fast-pathed.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
};

use super::{
    egress::{self, Devices, Egress},
    pods::{Pod, SkippedPod, pod},
    state::FastpathState,
    view::NodeView,
};

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
