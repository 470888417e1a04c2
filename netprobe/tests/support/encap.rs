//! The fast path's egress program under BPF_PROG_TEST_RUN: a node whose
//! served pod sends frames to its gateway, routes of every kind the sync
//! process writes, and an independent reference over plain bytes of what
//! the program must do with any frame.

use std::net::Ipv4Addr;

use aya::{
    TestRunOptions,
    maps::lpm_trie::Key,
    programs::{ProgramError, TestRun as _},
};
use netprobe::fastpath::LoadedFastpath;
use netprobe_common::fastpath::{
    DF_INHERIT, DF_SET, EGRESS_COUNTERS, EgressCounter, EgressPort, EgressRoute, FastpathConfig,
    TOS_INHERIT, TTL_INHERIT,
};

use super::{
    frames::{ETH_P_IP, Frame, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, Ipv4, internet_checksum},
    require_root,
    vxlan::{
        BRIDGE_MAC, NIC_MAC, NODE, POD, POD_MAC, REMOTE, REMOTE_NIC_MAC, REMOTE_VTEP_MAC, VTEP_MAC,
        key,
    },
};

/// The pod's veth in the test: the test runner's skb is on loopback.
pub const PORT_IFINDEX: u32 = 1;
/// A pod behind the default remote node (UDP checksums, TTL 64, ...).
pub const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(10, 78, 1, 2);
/// A pod behind a remote node whose device inherits TTL, TOS and DF, has a
/// source port range and sends no UDP checksums.
pub const INHERITING_POD: Ipv4Addr = Ipv4Addr::new(10, 78, 3, 2);
pub const INHERITING_VTEP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
/// A pod on this node, another bridge port.
pub const LOCAL_POD: Ipv4Addr = Ipv4Addr::new(10, 78, 2, 3);
/// The node's own address on the bridge: the pods' gateway.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 78, 2, 1);
/// Behind the vxlan device, but its VTEP is not known yet.
pub const UNRESOLVED_POD: Ipv4Addr = Ipv4Addr::new(10, 78, 4, 2);
/// Routed elsewhere (the default route).
pub const OUTSIDE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const OTHER_POD_MAC: [u8; 6] = [0xfa, 0xba, 0x78, 0xfa, 0xe6, 0x04];
pub const MAX_INNER: u16 = 1450;

pub const TC_PASS: u32 = u32::MAX;
pub const TC_ACT_REDIRECT: u32 = 7;

/// The node's egress as the sync process would fill it.
pub struct EgressWorld {
    pub ports: Vec<(u32, EgressPort)>,
    pub routes: Vec<(Ipv4Addr, u8, EgressRoute)>,
}

/// The encapsulation towards [`REMOTE_POD`].
pub fn remote_route() -> EgressRoute {
    EgressRoute {
        pass: 0,
        nic_ifindex: 1,
        outer_src: key(NODE),
        outer_dst: key(REMOTE),
        vni: 1,
        dst_port: 8472,
        max_inner: MAX_INNER,
        port_min: 32768,
        port_span: 60999 - 32768,
        ttl: 64,
        tos: 0,
        df: 0,
        udp_csum: 1,
        outer_dst_mac: REMOTE_NIC_MAC,
        outer_src_mac: NIC_MAC,
        inner_dst_mac: REMOTE_VTEP_MAC,
        inner_src_mac: VTEP_MAC,
    }
}

/// The encapsulation towards [`INHERITING_POD`].
pub fn inheriting_route() -> EgressRoute {
    EgressRoute {
        outer_dst: key(INHERITING_VTEP),
        vni: 0x12_3456,
        dst_port: 4789,
        port_min: 1000,
        port_span: 100,
        ttl: TTL_INHERIT,
        tos: TOS_INHERIT,
        df: DF_INHERIT,
        udp_csum: 0,
        inner_dst_mac: [0x0e, 0x77, 0, 0, 0, 0x03],
        ..remote_route()
    }
}

impl EgressWorld {
    pub fn new() -> Self {
        let pass = EgressRoute::pass;
        Self {
            ports: vec![(
                PORT_IFINDEX,
                EgressPort {
                    pod: key(POD),
                    bridge_mac: BRIDGE_MAC,
                    _pad: 0,
                },
            )],
            routes: vec![
                (Ipv4Addr::UNSPECIFIED, 0, pass(EgressCounter::NotOverlay)),
                (Ipv4Addr::new(10, 78, 1, 0), 24, remote_route()),
                (Ipv4Addr::new(10, 78, 3, 0), 24, inheriting_route()),
                (
                    Ipv4Addr::new(10, 78, 2, 0),
                    24,
                    pass(EgressCounter::NotOverlay),
                ),
                (LOCAL_POD, 32, pass(EgressCounter::LocalPod)),
                (POD, 32, pass(EgressCounter::LocalPod)),
                (GATEWAY, 32, pass(EgressCounter::ToNode)),
                (NODE, 32, pass(EgressCounter::ToNode)),
                (
                    Ipv4Addr::new(10, 78, 4, 0),
                    24,
                    pass(EgressCounter::UnknownRemote),
                ),
            ],
        }
    }

    /// The fast path loaded with this node's egress maps filled in.
    pub fn load(&self) -> LoadedFastpath {
        require_root();
        let mut fastpath =
            LoadedFastpath::load(&FastpathConfig::default()).expect("fast path loads");
        let maps = &mut fastpath.maps;
        for (ifindex, port) in &self.ports {
            maps.egress_ports.insert(ifindex, port, 0).expect("port");
        }
        for (address, len, route) in &self.routes {
            maps.routes
                .insert(&Key::new(u32::from(*len), key(*address)), route, 0)
                .expect("route");
        }
        fastpath
    }

    fn route(&self, destination: Ipv4Addr) -> Option<&EgressRoute> {
        self.routes
            .iter()
            .filter(|(address, len, _)| {
                let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
                u32::from(destination) & mask == u32::from(*address) & mask
            })
            .max_by_key(|(_, len, _)| *len)
            .map(|(_, _, route)| route)
    }

    /// What the program must do with `frame`: the encapsulated frame it
    /// redirects, with outer IPv4 identification `id` and UDP source port
    /// `src_port` (neither follows from the frame), or the counter of the
    /// first rule the frame breaks.
    pub fn reference(
        &self,
        frame: &[u8],
        id: u16,
        src_port: u16,
    ) -> Result<Vec<u8>, EgressCounter> {
        let Some((_, port)) = self
            .ports
            .iter()
            .find(|(ifindex, _)| *ifindex == PORT_IFINDEX)
        else {
            return Err(EgressCounter::UnknownPort);
        };
        let len = frame.len();
        if len < 14 {
            return Err(EgressCounter::Truncated);
        }
        if frame[0] & 1 != 0 {
            return Err(EgressCounter::Broadcast);
        }
        if frame[..6] != port.bridge_mac {
            return Err(EgressCounter::Bridged);
        }
        if u16::from_be_bytes([frame[12], frame[13]]) != ETH_P_IP {
            return Err(EgressCounter::NotIpv4);
        }
        if len < 34 {
            return Err(EgressCounter::Truncated);
        }
        let ip = &frame[14..34];
        if ip[0] >> 4 != 4 {
            return Err(EgressCounter::Malformed);
        }
        match ip[0] & 0x0f {
            5 => {}
            0..5 => return Err(EgressCounter::Malformed),
            _ => return Err(EgressCounter::IpOptions),
        }
        if internet_checksum(ip) != 0 {
            return Err(EgressCounter::Malformed);
        }
        let frag = u16::from_be_bytes([ip[6], ip[7]]);
        if frag & 0x3fff != 0 {
            return Err(EgressCounter::Fragment);
        }
        let ip_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if ip_len + 14 != len {
            return Err(EgressCounter::Malformed);
        }
        if ip[8] <= 1 {
            return Err(EgressCounter::TtlExpired);
        }
        let source = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        if key(source) != port.pod {
            return Err(EgressCounter::ForeignSource);
        }
        let destination = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        if destination.is_multicast() || destination.is_broadcast() || ip[16] >= 224 {
            return Err(EgressCounter::Broadcast);
        }
        let route = self.route(destination).ok_or(EgressCounter::NotOverlay)?;
        if route.pass != 0 {
            return Err(EgressCounter::ALL[route.pass as usize]);
        }
        if ip_len > usize::from(route.max_inner) {
            return Err(EgressCounter::TooBig);
        }
        let protocol = ip[9];
        if route.udp_csum != 0 {
            match protocol {
                IPPROTO_TCP | IPPROTO_ICMP => {}
                IPPROTO_UDP => {
                    if len < 42 {
                        return Err(EgressCounter::Truncated);
                    }
                    if frame[40..42] == [0, 0] {
                        return Err(EgressCounter::ChecksumUnsupported);
                    }
                }
                _ => return Err(EgressCounter::ChecksumUnsupported),
            }
        }
        Ok(encapsulate(frame, route, id, src_port))
    }
}

/// `frame` (valid, from the pod) as the vxlan device sends it along `route`.
fn encapsulate(frame: &[u8], route: &EgressRoute, id: u16, src_port: u16) -> Vec<u8> {
    let ip = &frame[14..34];
    let ip_len = frame.len() - 14;
    // Forwarding: one hop less, the header checksum updated as the kernel's
    // ip_decrease_ttl() does (in the checksum's native byte order).
    let mut inner = frame[14..].to_vec();
    inner[8] -= 1;
    let check = u32::from(u16::from_le_bytes([inner[10], inner[11]])) + 1;
    let check = (check + u32::from(check >= 0xffff)) as u16;
    inner[10..12].copy_from_slice(&check.to_le_bytes());

    let tos = if route.tos == TOS_INHERIT {
        ip[1]
    } else {
        route.tos
    };
    let ecn = match ip[1] & 3 {
        3 => 2,
        ecn => ecn,
    };
    let tos = (tos & !3) | ecn;
    let ttl = if route.ttl == TTL_INHERIT {
        inner[8]
    } else {
        route.ttl
    };
    let df = match route.df {
        DF_SET => 0x4000,
        DF_INHERIT => u16::from_be_bytes([ip[6], ip[7]]) & 0x4000,
        _ => 0,
    };
    let mut out = Vec::with_capacity(frame.len() + 50);
    out.extend_from_slice(&route.outer_dst_mac);
    out.extend_from_slice(&route.outer_src_mac);
    out.extend_from_slice(&ETH_P_IP.to_be_bytes());
    let mut outer_ip = vec![0x45, tos];
    outer_ip.extend_from_slice(&((ip_len + 50) as u16).to_be_bytes());
    outer_ip.extend_from_slice(&id.to_be_bytes());
    outer_ip.extend_from_slice(&df.to_be_bytes());
    outer_ip.extend_from_slice(&[ttl, IPPROTO_UDP, 0, 0]);
    outer_ip.extend_from_slice(&route.outer_src.to_ne_bytes());
    outer_ip.extend_from_slice(&route.outer_dst.to_ne_bytes());
    let check = internet_checksum(&outer_ip);
    outer_ip[10..12].copy_from_slice(&check.to_be_bytes());
    out.extend_from_slice(&outer_ip);
    let udp_len = (ip_len + 30) as u16;
    let mut datagram = Vec::new();
    datagram.extend_from_slice(&src_port.to_be_bytes());
    datagram.extend_from_slice(&route.dst_port.to_be_bytes());
    datagram.extend_from_slice(&udp_len.to_be_bytes());
    datagram.extend_from_slice(&[0, 0]);
    datagram.extend_from_slice(&[0x08, 0, 0, 0]);
    datagram.extend_from_slice(&route.vni.to_be_bytes()[1..]);
    datagram.push(0);
    datagram.extend_from_slice(&route.inner_dst_mac);
    datagram.extend_from_slice(&route.inner_src_mac);
    datagram.extend_from_slice(&ETH_P_IP.to_be_bytes());
    datagram.extend_from_slice(&inner);
    if route.udp_csum != 0 {
        // Summed over the datagram as it is once its inner transport
        // checksum is right (which the program takes it to be, as the
        // kernel does with a checksum left to the NIC).
        let mut summed = datagram.clone();
        complete_inner_checksum(&mut summed[30..]);
        let mut pseudo = route.outer_src.to_ne_bytes().to_vec();
        pseudo.extend_from_slice(&route.outer_dst.to_ne_bytes());
        pseudo.extend_from_slice(&[0, IPPROTO_UDP]);
        pseudo.extend_from_slice(&udp_len.to_be_bytes());
        pseudo.extend_from_slice(&summed);
        let check = match internet_checksum(&pseudo) {
            0 => 0xffff,
            check => check,
        };
        datagram[6..8].copy_from_slice(&check.to_be_bytes());
    }
    out.extend_from_slice(&datagram);
    out
}

/// Makes the transport checksum of the IPv4 packet `packet` right, where
/// its segment holds one.
pub fn complete_inner_checksum(packet: &mut [u8]) {
    let header = usize::from(packet[0] & 0x0f) * 4;
    let protocol = packet[9];
    let offset = match protocol {
        IPPROTO_TCP => 16,
        IPPROTO_UDP => 6,
        IPPROTO_ICMP => 2,
        _ => return,
    };
    let segment_len = packet.len() - header;
    if segment_len < offset + 2 {
        return;
    }
    let mut summed = Vec::new();
    if protocol != IPPROTO_ICMP {
        summed.extend_from_slice(&packet[12..20]);
        summed.extend_from_slice(&[0, protocol]);
        summed.extend_from_slice(&(segment_len as u16).to_be_bytes());
    }
    let segment = &mut packet[header..];
    segment[offset..offset + 2].fill(0);
    summed.extend_from_slice(segment);
    let check = match internet_checksum(&summed) {
        0 if protocol == IPPROTO_UDP => 0xffff,
        check => check,
    };
    segment[offset..offset + 2].copy_from_slice(&check.to_be_bytes());
}

/// What the pod sends: an IPv4 frame to its gateway, transport checksum
/// right, every field the rules look at adjustable.
#[derive(Clone, Debug)]
pub struct PodFrame {
    pub dst_mac: [u8; 6],
    pub ether_type: u16,
    pub ip: Ipv4,
    pub tos: u8,
    pub payload: Vec<u8>,
}

impl PodFrame {
    /// A TCP segment from the pod to [`REMOTE_POD`].
    pub fn tcp() -> Self {
        Self::to(REMOTE_POD, IPPROTO_TCP)
    }

    pub fn to(destination: Ipv4Addr, protocol: u8) -> Self {
        Self {
            dst_mac: BRIDGE_MAC,
            ether_type: ETH_P_IP,
            ip: Ipv4::new(POD, destination, protocol, 0x3333),
            tos: 0,
            payload: b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
        }
    }

    pub fn build(&self) -> Vec<u8> {
        let mut transport = Frame::default();
        match self.ip.protocol {
            IPPROTO_TCP => transport.tcp(80, 40000, 7, 9).payload(&self.payload),
            IPPROTO_UDP => transport
                .udp(5353, 53, self.payload.len())
                .payload(&self.payload),
            IPPROTO_ICMP => transport.icmp_echo(7, 1).payload(&self.payload),
            _ => transport.payload(&self.payload),
        };
        let mut frame = Frame::default()
            .ethernet(self.dst_mac, POD_MAC, self.ether_type)
            .ipv4(&self.ip, transport.bytes.len())
            .inner(&transport)
            .build()
            .bytes;
        if self.tos != 0 && frame.len() >= 34 {
            frame[15] = self.tos;
            frame[24..26].fill(0);
            let check = internet_checksum(&frame[14..34]);
            frame[24..26].copy_from_slice(&check.to_be_bytes());
        }
        if frame.len() >= 34 && frame[14] == 0x45 {
            complete_inner_checksum(&mut frame[14..]);
        }
        frame
    }
}

/// One BPF_PROG_TEST_RUN of the egress program: its return value, the
/// frame it leaves, and the one counter that went up. Err: the test runner
/// refused the frame.
pub fn run_egress(
    fastpath: &mut LoadedFastpath,
    frame: &[u8],
) -> Result<(u32, Vec<u8>, EgressCounter), ProgramError> {
    let before = fastpath.maps.egress_counters().expect("counters");
    let mut out = vec![0u8; frame.len() + 256];
    let options = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ..TestRunOptions::default()
    };
    let result = fastpath.egress().expect("egress loads").test_run(options)?;
    out.truncate(result.data_size_out as usize);
    let after = fastpath.maps.egress_counters().expect("counters");
    let moved: Vec<EgressCounter> = (0..EGRESS_COUNTERS as usize)
        .filter(|index| after[*index] != before[*index])
        .map(|index| EgressCounter::ALL[index])
        .collect();
    assert_eq!(moved.len(), 1, "exactly one counter per packet: {moved:?}");
    Ok((result.return_value, out, moved[0]))
}

/// The outer UDP source port of an encapsulated frame.
pub fn src_port(encapsulated: &[u8]) -> u16 {
    u16::from_be_bytes([encapsulated[34], encapsulated[35]])
}

/// The outer IPv4 identification of an encapsulated frame.
pub fn outer_id(encapsulated: &[u8]) -> u16 {
    u16::from_be_bytes([encapsulated[18], encapsulated[19]])
}
