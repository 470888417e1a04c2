//! rtnetlink queries in the calling thread's network namespace: the network
//! devices ("links" to rtnetlink) discovery walks, the namespace ids that tie
//! a veth to its peer, and the addresses, neighbours, forwarding entries,
//! routes and routing rules the fast path follows.

use std::{
    io,
    net::{IpAddr, Ipv4Addr},
    os::fd::AsRawFd as _,
};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressMessage},
    link::{
        InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, LinkXdp,
        VxlanDf,
    },
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
    nsid::{NsidAttribute, NsidMessage},
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteMetric, RouteType},
    rule::{RuleAction, RuleAttribute, RuleMessage},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use netprobe_common::fastpath::{DF_INHERIT, DF_SET, DF_UNSET};
use thiserror::Error;

use crate::netns::NetNs;

#[derive(Debug, Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Socket(io::Error),
    #[error("netlink {request}: {cause}")]
    Kernel {
        request: &'static str,
        cause: io::Error,
    },
    #[error("cannot parse netlink reply to {request}: {reason}")]
    Parse {
        request: &'static str,
        reason: String,
    },
}

/// A network device as rtnetlink describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// Driver kind (`veth`, `bridge`, `vxlan`, `macvlan`, ...); empty for
    /// physical devices.
    pub kind: String,
    /// The bridge (or bond) this device is a port of.
    pub master: Option<u32>,
    /// The device it is tied to (rtnetlink's "link"): a veth's peer, the
    /// lower device of a macvlan or ipvlan.
    pub peer: Option<u32>,
    /// Namespace of `peer`, as an id local to this namespace; `None` when it
    /// is in this namespace.
    pub peer_netnsid: Option<i32>,
    pub mac: Vec<u8>,
    pub mtu: u32,
    /// Administratively up with carrier: the device passes traffic.
    pub up: bool,
    pub vxlan: Option<Vxlan>,
    /// Program id of an XDP program attached to the device, any mode.
    pub xdp_prog_id: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vxlan {
    pub vni: u32,
    pub port: u16,
    /// The device it sends through (`dev eth0`).
    pub lower: Option<u32>,
    pub local: Option<Ipv4Addr>,
    /// Outer TTL; 0 for the route's (`ttl auto`).
    pub ttl: u8,
    /// The outer TTL is the inner one (`ttl inherit`).
    pub ttl_inherit: bool,
    /// Outer TOS; 1 copies the inner one (`tos inherit`).
    pub tos: u8,
    /// The outer don't-fragment bit: `DF_UNSET`, `DF_SET` or `DF_INHERIT`
    /// of `netprobe_common::fastpath`.
    pub df: u8,
    /// UDP source port range; `low >= high` for the namespace's local
    /// port range (`srcport 0 0`).
    pub port_range: (u16, u16),
    /// Sends UDP checksums over IPv4 (`udpcsum`, the kernel's default).
    pub udp_csum: bool,
    /// Settings that change what the device sends beyond the above, named
    /// as `ip link` does (`external`, `gbp`, `gpe`, `remcsumtx`, `rsc`, an
    /// IPv6 underlay).
    pub extensions: Vec<&'static str>,
}

/// All network devices of the calling thread's namespace.
pub fn links() -> Result<Vec<Link>, NetlinkError> {
    const REQUEST: &str = "link dump";
    let replies = request(
        REQUEST,
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        NLM_F_DUMP,
    )?;
    Ok(replies
        .into_iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewLink(message) => Some(link_from(message)),
            _ => None,
        })
        .collect())
}

/// The id this namespace uses for `other`, assigning one if needed (as
/// `ip netns set` would). Devices whose peer is in `other` carry this id
/// as their [`Link::peer_netnsid`].
pub fn netns_id(other: &NetNs) -> Result<Option<i32>, NetlinkError> {
    const REQUEST: &str = "namespace id";
    let mut message = NsidMessage::default();
    message
        .attributes
        .push(NsidAttribute::Fd(other.as_raw_fd() as u32));
    let replies = request(REQUEST, RouteNetlinkMessage::GetNsId(message), 0)?;
    Ok(replies.into_iter().find_map(|reply| match reply {
        RouteNetlinkMessage::NewNsId(message) => {
            message
                .attributes
                .into_iter()
                .find_map(|attribute| match attribute {
                    NsidAttribute::Id(id) if id >= 0 => Some(id),
                    _ => None,
                })
        }
        _ => None,
    }))
}

/// An entry of the neighbour table (ARP) or of a forwarding database
/// (bridge and vxlan FDB).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    /// The device it belongs to: a bridge port or vxlan device for FDB entries.
    pub ifindex: u32,
    pub state: NeighbourState,
    /// The IP address (neighbour table), or the remote VTEP (vxlan FDB).
    pub destination: Option<IpAddr>,
    pub mac: Option<Vec<u8>>,
    /// The bridge of a bridge port's FDB entry.
    pub master: Option<u32>,
    /// A vxlan FDB entry's own UDP port, VNI and outgoing device, where
    /// they differ from the device's (`bridge fdb ... port P vni V via IF`).
    pub port: Option<u16>,
    pub vni: Option<u32>,
    pub via: Option<u32>,
}

/// The IPv4 neighbour table.
pub fn ipv4_neighbours() -> Result<Vec<Neighbour>, NetlinkError> {
    neighbours("neighbour dump", AddressFamily::Inet)
}

/// The forwarding databases of every bridge and vxlan device.
pub fn fdb() -> Result<Vec<Neighbour>, NetlinkError> {
    neighbours("FDB dump", AddressFamily::Bridge)
}

fn neighbours(
    request_name: &'static str,
    family: AddressFamily,
) -> Result<Vec<Neighbour>, NetlinkError> {
    let mut message = NeighbourMessage::default();
    message.header.family = family;
    let replies = request(
        request_name,
        RouteNetlinkMessage::GetNeighbour(message),
        NLM_F_DUMP,
    )?;
    Ok(replies
        .into_iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewNeighbour(message) => Some(neighbour_from(message)),
            _ => None,
        })
        .collect())
}

fn neighbour_from(message: NeighbourMessage) -> Neighbour {
    let mut neighbour = Neighbour {
        ifindex: message.header.ifindex,
        state: message.header.state,
        destination: None,
        mac: None,
        master: None,
        port: None,
        vni: None,
        via: None,
    };
    for attribute in message.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                neighbour.destination = Some(ip.into());
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => {
                neighbour.destination = Some(ip.into());
            }
            // FDB entries carry their remote's address without its family.
            NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) => {
                if let Ok(octets) = <[u8; 4]>::try_from(bytes.as_slice()) {
                    neighbour.destination = Some(Ipv4Addr::from(octets).into());
                }
            }
            NeighbourAttribute::LinkLayerAddress(mac) => neighbour.mac = Some(mac),
            NeighbourAttribute::Controller(master) => neighbour.master = Some(master),
            NeighbourAttribute::Port(port) => neighbour.port = Some(port),
            NeighbourAttribute::Vni(vni) => neighbour.vni = Some(vni),
            NeighbourAttribute::IfIndex(via) => neighbour.via = Some(via),
            _ => {}
        }
    }
    neighbour
}

/// IPv4 addresses by device: (ifindex, address).
pub fn ipv4_addresses() -> Result<Vec<(u32, Ipv4Addr)>, NetlinkError> {
    let mut message = AddressMessage::default();
    message.header.family = AddressFamily::Inet;
    let replies = request(
        "address dump",
        RouteNetlinkMessage::GetAddress(message),
        NLM_F_DUMP,
    )?;
    Ok(replies
        .into_iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewAddress(message) => {
                let index = message.header.index;
                message
                    .attributes
                    .into_iter()
                    .find_map(|attribute| match attribute {
                        AddressAttribute::Local(IpAddr::V4(ip)) => Some((index, ip)),
                        _ => None,
                    })
            }
            _ => None,
        })
        .collect())
}

/// Routing table ids.
pub const TABLE_LOCAL: u32 = 255;
pub const TABLE_MAIN: u32 = 254;
pub const TABLE_DEFAULT: u32 = 253;

/// An IPv4 route: from a table, or as `ip route get` resolves one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub table: u32,
    pub kind: RouteType,
    pub destination: Ipv4Addr,
    pub prefix_len: u8,
    /// The TOS the route is selected by (0: any).
    pub tos: u8,
    pub oif: Option<u32>,
    pub gateway: Option<Ipv4Addr>,
    pub prefsrc: Option<Ipv4Addr>,
    /// Several next hops (`nexthop ... nexthop ...`, or a nexthop object).
    pub multipath: bool,
    /// The `mtu` and `hoplimit` metrics.
    pub mtu: Option<u32>,
    pub hoplimit: Option<u32>,
}

/// Every IPv4 route of every table.
pub fn ipv4_routes() -> Result<Vec<Route>, NetlinkError> {
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet;
    let replies = request(
        "route dump",
        RouteNetlinkMessage::GetRoute(message),
        NLM_F_DUMP,
    )?;
    Ok(replies
        .into_iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewRoute(message) => Some(route_from(message)),
            _ => None,
        })
        .collect())
}

/// The route the kernel picks for a packet to `destination` from `source`
/// out of `oif` (`ip route get DST from SRC oif DEV`).
pub fn ipv4_route_get(
    destination: Ipv4Addr,
    source: Option<Ipv4Addr>,
    oif: Option<u32>,
) -> Result<Route, NetlinkError> {
    const REQUEST: &str = "route get";
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet;
    message.header.destination_prefix_length = 32;
    message
        .attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(destination)));
    if let Some(source) = source {
        message.header.source_prefix_length = 32;
        message
            .attributes
            .push(RouteAttribute::Source(RouteAddress::Inet(source)));
    }
    if let Some(oif) = oif {
        message.attributes.push(RouteAttribute::Oif(oif));
    }
    let replies = request(REQUEST, RouteNetlinkMessage::GetRoute(message), 0)?;
    replies
        .into_iter()
        .find_map(|reply| match reply {
            RouteNetlinkMessage::NewRoute(message) => Some(route_from(message)),
            _ => None,
        })
        .ok_or(NetlinkError::Parse {
            request: REQUEST,
            reason: "no route in the reply".into(),
        })
}

fn route_from(message: RouteMessage) -> Route {
    let header = &message.header;
    let mut route = Route {
        table: u32::from(header.table),
        kind: header.kind,
        destination: Ipv4Addr::UNSPECIFIED,
        prefix_len: header.destination_prefix_length,
        tos: header.tos,
        oif: None,
        gateway: None,
        prefsrc: None,
        multipath: false,
        mtu: None,
        hoplimit: None,
    };
    let v4 = |address: RouteAddress| match address {
        RouteAddress::Inet(ip) => Some(ip),
        _ => None,
    };
    for attribute in message.attributes {
        match attribute {
            RouteAttribute::Table(table) => route.table = table,
            RouteAttribute::Destination(address) => {
                route.destination = v4(address).unwrap_or(Ipv4Addr::UNSPECIFIED);
            }
            RouteAttribute::Oif(oif) => route.oif = Some(oif),
            RouteAttribute::Gateway(address) => route.gateway = v4(address),
            RouteAttribute::PrefSource(address) => route.prefsrc = v4(address),
            RouteAttribute::MultiPath(_) | RouteAttribute::NhId(_) => route.multipath = true,
            RouteAttribute::Metrics(metrics) => {
                for metric in metrics {
                    match metric {
                        RouteMetric::Mtu(mtu) => route.mtu = Some(mtu),
                        RouteMetric::Hoplimit(hoplimit) => route.hoplimit = Some(hoplimit),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    route
}

/// An IPv4 policy routing rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub priority: u32,
    pub table: u32,
    /// Looks a table up (rather than jumping, or dropping).
    pub lookup: bool,
    /// Selects by more than its priority: addresses, devices, marks, ...
    pub selective: bool,
}

/// The IPv4 routing rules.
pub fn ipv4_rules() -> Result<Vec<Rule>, NetlinkError> {
    let mut message = RuleMessage::default();
    message.header.family = AddressFamily::Inet;
    let replies = request(
        "rule dump",
        RouteNetlinkMessage::GetRule(message),
        NLM_F_DUMP,
    )?;
    Ok(replies
        .into_iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewRule(message) => Some(rule_from(message)),
            _ => None,
        })
        .collect())
}

fn rule_from(message: RuleMessage) -> Rule {
    let header = &message.header;
    let mut rule = Rule {
        priority: 0,
        table: u32::from(header.table),
        lookup: header.action == RuleAction::ToTable,
        selective: header.dst_len != 0 || header.src_len != 0 || header.tos != 0,
    };
    for attribute in message.attributes {
        match attribute {
            RuleAttribute::Priority(priority) => rule.priority = priority,
            RuleAttribute::Table(table) => rule.table = table,
            // What every rule carries, at their "none" values.
            RuleAttribute::Protocol(_)
            | RuleAttribute::SuppressPrefixLen(u32::MAX)
            | RuleAttribute::SuppressIfGroup(u32::MAX)
            | RuleAttribute::L3MDev(false) => {}
            _ => rule.selective = true,
        }
    }
    rule
}

fn link_from(message: LinkMessage) -> Link {
    let running = LinkFlags::Up | LinkFlags::LowerUp;
    let mut link = Link {
        index: message.header.index,
        up: message.header.flags.contains(running),
        ..Link::default()
    };
    for attribute in message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name,
            LinkAttribute::Controller(master) => link.master = Some(master),
            LinkAttribute::Link(peer) if peer != 0 => link.peer = Some(peer),
            LinkAttribute::LinkNetNsId(id) => link.peer_netnsid = Some(id),
            LinkAttribute::Address(mac) => link.mac = mac,
            LinkAttribute::Mtu(mtu) => link.mtu = mtu,
            LinkAttribute::Xdp(xdp) => link.xdp_prog_id = xdp_prog_id(&xdp),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(kind) => link.kind = kind_name(&kind),
                        LinkInfo::Data(InfoData::Vxlan(vxlan)) => {
                            link.vxlan = Some(vxlan_from(&vxlan))
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn kind_name(kind: &InfoKind) -> String {
    match kind {
        InfoKind::Other(name) => name.clone(),
        known => known.to_string(),
    }
}

fn vxlan_from(attributes: &[InfoVxlan]) -> Vxlan {
    let mut vxlan = Vxlan {
        // The kernel reports udpcsum only when told; on by default.
        udp_csum: true,
        ..Vxlan::default()
    };
    for attribute in attributes {
        match attribute {
            InfoVxlan::Id(vni) => vxlan.vni = *vni,
            InfoVxlan::Port(port) => vxlan.port = *port,
            InfoVxlan::Link(lower) if *lower != 0 => vxlan.lower = Some(*lower),
            InfoVxlan::Local(local) => vxlan.local = Some(*local),
            InfoVxlan::Ttl(ttl) => vxlan.ttl = *ttl,
            InfoVxlan::TtlInherit(inherit) => vxlan.ttl_inherit = *inherit != 0,
            InfoVxlan::TtlInheritFlag => vxlan.ttl_inherit = true,
            InfoVxlan::Tos(tos) => vxlan.tos = *tos,
            InfoVxlan::Df(VxlanDf::Unset) => vxlan.df = DF_UNSET,
            InfoVxlan::Df(VxlanDf::Set) => vxlan.df = DF_SET,
            InfoVxlan::Df(VxlanDf::Inherit) => vxlan.df = DF_INHERIT,
            InfoVxlan::Df(_) => vxlan.extensions.push("df"),
            InfoVxlan::PortRange(range) => vxlan.port_range = *range,
            InfoVxlan::UDPCsum(on) => vxlan.udp_csum = *on,
            InfoVxlan::CollectMetadata(true) => vxlan.extensions.push("external"),
            InfoVxlan::Gbp => vxlan.extensions.push("gbp"),
            InfoVxlan::Gpe => vxlan.extensions.push("gpe"),
            InfoVxlan::RemCsumTX(true) => vxlan.extensions.push("remcsumtx"),
            InfoVxlan::Rsc(true) => vxlan.extensions.push("rsc"),
            InfoVxlan::Local6(_) | InfoVxlan::Group6(_) => vxlan.extensions.push("IPv6"),
            _ => {}
        }
    }
    vxlan
}

fn xdp_prog_id(attributes: &[LinkXdp]) -> Option<u32> {
    attributes.iter().find_map(|attribute| match attribute {
        LinkXdp::ProgId(id) if *id != 0 => Some(*id),
        _ => None,
    })
}

/// Sends one request and collects the replies until the dump ends or the
/// kernel acknowledges.
fn request(
    name: &'static str,
    payload: RouteNetlinkMessage,
    flags: u16,
) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
    socket.bind_auto().map_err(NetlinkError::Socket)?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(NetlinkError::Socket)?;

    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    let mut message = NetlinkMessage::new(header, NetlinkPayload::from(payload));
    message.finalize();
    let mut buffer = vec![0; message.header.length as usize];
    message.serialize(&mut buffer);
    socket.send(&buffer, 0).map_err(NetlinkError::Socket)?;

    let parse_error = |reason: String| NetlinkError::Parse {
        request: name,
        reason,
    };
    let mut replies = Vec::new();
    let mut receive = vec![0u8; 1 << 16];
    loop {
        let size = socket
            .recv(&mut &mut receive[..], 0)
            .map_err(NetlinkError::Socket)?;
        let mut offset = 0;
        while offset < size {
            let reply: NetlinkMessage<RouteNetlinkMessage> =
                NetlinkMessage::deserialize(&receive[offset..size])
                    .map_err(|err| parse_error(err.to_string()))?;
            let length = reply.header.length as usize;
            match reply.payload {
                NetlinkPayload::Done(_) => return Ok(replies),
                NetlinkPayload::Error(error) => match error.code {
                    None => return Ok(replies),
                    Some(code) => {
                        return Err(NetlinkError::Kernel {
                            request: name,
                            cause: io::Error::from_raw_os_error(-code.get()),
                        });
                    }
                },
                NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                _ => {}
            }
            if length == 0 {
                return Err(parse_error("zero-length message".into()));
            }
            offset += length;
        }
    }
}
