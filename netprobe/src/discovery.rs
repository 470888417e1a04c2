//! Finding the datapath behind an interface through rtnetlink: the vxlan
//! devices that send through it, the bridges and their veth ports, and the
//! pods' interfaces at the far end of those veths (or macvlan/ipvlan devices
//! stacked on the interface), in whatever named namespace they live.

use std::net::IpAddr;

use thiserror::Error;

use crate::{
    fastpath::{self, state::StateError},
    netlink::{self, Link, NetlinkError},
    netns::{self, NetNs, NetNsError},
    path::{Datapath, Device, PodEnd},
};

#[derive(Debug, Error)]
pub enum DiscoveryError {
    #[error("no interface {name} in {netns}")]
    UnknownInterface { name: String, netns: String },
    #[error(transparent)]
    NetNs(#[from] NetNsError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    FastpathState(#[from] StateError),
    #[error("listing network namespaces: {0}")]
    ListNamespaces(std::io::Error),
    #[error(
        "cannot tell what {0} is on the path: it is not a vxlan device, bridge, bridge port or pod interface"
    )]
    UnknownRole(String),
}

/// `--with DEV[@NETNS]` and `--without DEV[@NETNS]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSelector {
    pub name: String,
    pub netns: Option<String>,
}

impl std::str::FromStr for DeviceSelector {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, netns) = match text.split_once('@') {
            Some((name, netns)) => (name, Some(netns.to_owned())),
            None => (text, None),
        };
        if name.is_empty() || netns.as_deref() == Some("") {
            return Err(format!("{text:?} is not DEV or DEV@NETNS"));
        }
        Ok(Self {
            name: name.to_owned(),
            netns,
        })
    }
}

impl DeviceSelector {
    fn matches(&self, device: &Device) -> bool {
        self.name == device.name && self.netns == device.netns_name
    }
}

/// Discovers the datapath behind `nic_name` in the namespace `node`.
pub fn discover(nic_name: &str, node: &NetNs) -> Result<Datapath, DiscoveryError> {
    let node_links = node.run(netlink::links)??;
    let device = |link: &Link| Device {
        name: link.name.clone(),
        ifindex: link.index,
        netns_inode: node.inode(),
        netns_name: None,
        kind: link.kind.clone(),
    };
    let nic = node_links
        .iter()
        .find(|link| link.name == nic_name)
        .ok_or_else(|| DiscoveryError::UnknownInterface {
            name: nic_name.to_owned(),
            netns: node.name().to_owned(),
        })?;
    let vxlan = node_links
        .iter()
        .filter(|link| {
            link.vxlan
                .as_ref()
                .is_some_and(|vxlan| vxlan.lower.is_none_or(|lower| lower == nic.index))
        })
        .map(device)
        .collect();
    let bridges: Vec<&Link> = node_links
        .iter()
        .filter(|link| link.kind == "bridge")
        .filter(|bridge| {
            node_links
                .iter()
                .any(|port| port.master == Some(bridge.index))
        })
        .collect();
    let ports: Vec<&Link> = node_links
        .iter()
        .filter(|link| link.kind == "veth")
        .filter(|link| {
            bridges
                .iter()
                .any(|bridge| link.master == Some(bridge.index))
        })
        .collect();
    let (pods, pod_ends) = pod_devices(node, nic, &ports)?;
    let fastpath = fastpath::state::load_key(&format!("{}-{}", node.inode(), nic.name))?
        .map(|state| state.hook);
    Ok(Datapath {
        fastpath,
        nic: device(nic),
        nic_xdp_prog_id: nic.xdp_prog_id,
        vxlan,
        bridges: bridges.into_iter().map(device).collect(),
        bridge_ports: ports.into_iter().map(device).collect(),
        pods,
        pod_ends,
    })
}

/// Interfaces in other named namespaces whose lower end is in the node: the
/// peers of the bridge's veth ports, and macvlan/ipvlan devices on the NIC;
/// and what tells each of those namespaces apart (its bridge port and the
/// addresses of those interfaces).
fn pod_devices(
    node: &NetNs,
    nic: &Link,
    ports: &[&Link],
) -> Result<(Vec<Device>, Vec<PodEnd>), DiscoveryError> {
    let mut pods = Vec::new();
    let mut ends = Vec::new();
    for name in netns::named_namespaces().map_err(DiscoveryError::ListNamespaces)? {
        let Ok(pod_ns) = NetNs::named(&name) else {
            // Removed while we looked.
            continue;
        };
        if pod_ns.inode() == node.inode() {
            continue;
        }
        let listed = pod_ns.run(|| -> Result<_, NetlinkError> {
            // Listing first: it makes the kernel assign the ids links use.
            let links = netlink::links()?;
            let node_id = netlink::netns_id(node)?;
            Ok((links, node_id, netlink::ipv4_addresses()?))
        });
        let (links, node_id, addresses) = match listed {
            Ok(listed) => listed?,
            // Being deleted while we looked: nothing to follow there.
            Err(NetNsError::Enter { .. }) => {
                log::debug!("skipping network namespace {name}: it cannot be entered");
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        let Some(node_id) = node_id else { continue };
        let mut end = PodEnd {
            netns: name.clone(),
            port: None,
            addresses: Vec::new(),
        };
        for link in links {
            if link.peer_netnsid != Some(node_id) {
                continue;
            }
            let peer = link.peer.unwrap_or(0);
            let is_pod = match link.kind.as_str() {
                "veth" => ports.iter().any(|port| port.index == peer),
                "macvlan" | "ipvlan" => peer == nic.index,
                _ => false,
            };
            if is_pod {
                if link.kind == "veth" {
                    end.port = Some(peer);
                }
                end.addresses.extend(
                    addresses
                        .iter()
                        .filter(|(index, _)| *index == link.index)
                        .map(|(_, address)| IpAddr::V4(*address)),
                );
                pods.push(Device {
                    name: link.name,
                    ifindex: link.index,
                    netns_inode: pod_ns.inode(),
                    netns_name: Some(name.clone()),
                    kind: link.kind,
                });
            }
        }
        if pods
            .last()
            .is_some_and(|device| device.netns_inode == pod_ns.inode())
        {
            ends.push(end);
        }
    }
    Ok((pods, ends))
}

/// Corrections to what [`discover`] found, from the command line.
impl Datapath {
    /// Drops the devices `--without` names.
    pub fn remove(&mut self, selector: &DeviceSelector) {
        for group in [
            &mut self.vxlan,
            &mut self.bridges,
            &mut self.bridge_ports,
            &mut self.pods,
        ] {
            group.retain(|device| !selector.matches(device));
        }
    }

    /// Adds a device `--with` names, placed on the path by what it is.
    pub fn add(&mut self, selector: &DeviceSelector, node: &NetNs) -> Result<(), DiscoveryError> {
        let named;
        let netns = match &selector.netns {
            Some(name) => {
                named = NetNs::named(name)?;
                &named
            }
            None => node,
        };
        let links = netns.run(netlink::links)??;
        let link = links
            .iter()
            .find(|link| link.name == selector.name)
            .ok_or_else(|| DiscoveryError::UnknownInterface {
                name: selector.name.clone(),
                netns: selector
                    .netns
                    .clone()
                    .unwrap_or_else(|| node.name().to_owned()),
            })?;
        let device = Device {
            name: link.name.clone(),
            ifindex: link.index,
            netns_inode: netns.inode(),
            netns_name: selector.netns.clone(),
            kind: link.kind.clone(),
        };
        let in_node = netns.inode() == node.inode();
        let group = match link.kind.as_str() {
            "vxlan" if in_node => &mut self.vxlan,
            "bridge" if in_node => &mut self.bridges,
            "veth" if in_node && link.master.is_some() => &mut self.bridge_ports,
            _ if !in_node => &mut self.pods,
            _ => return Err(DiscoveryError::UnknownRole(device.to_string())),
        };
        if !group.contains(&device) {
            group.push(device);
        }
        Ok(())
    }
}
