//! Header parsing shared by every hook: from the first header a hook sees to
//! the fields that identify a packet ([`FlightKey`]) and its flow ([`Flow`]).
//! VXLAN is looked through: what identifies an encapsulated packet is its inner
//! headers, which encapsulation and decapsulation leave unchanged.

use core::mem::size_of;

use netprobe_common::{config::VXLAN_PORTS, probe::FlightKey};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
    vlan::VlanHdr,
    vxlan::VxlanHdr,
};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
const IPV4_MORE_FRAGMENTS: u16 = 0x2000;
const IPV4_FRAGMENT_OFFSET: u16 = 0x1fff;

/// Reads a header at a byte offset of the packet, wherever the packet lives
/// (XDP buffer, skb through a helper, kernel memory).
pub trait PacketReader {
    fn read<T: Copy>(&self, offset: usize) -> Option<T>;
}

/// Addresses and ports of a packet, for `--filter`.
#[derive(Clone, Copy)]
pub struct Flow {
    pub family: u8,
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
}

/// A packet worth following: TCP carrying data, or UDP. Pure ACKs, SYNs and
/// FINs never reach a socket read, so following them would only leave
/// unfinished records behind.
#[derive(Clone, Copy)]
pub struct Packet {
    pub key: FlightKey,
    pub flow: Flow,
}

/// Parses from an Ethernet header at `offset`.
#[inline(always)]
pub fn parse_ethernet<R: PacketReader>(reader: &R, offset: usize) -> Option<Packet> {
    parse_frame(reader, offset, true)
}

/// Parses from an IP header at `offset` whose EtherType (host order) is known.
#[inline(always)]
pub fn parse_network<R: PacketReader>(
    reader: &R,
    offset: usize,
    ether_type: u16,
) -> Option<Packet> {
    parse_transport(reader, parse_ip(reader, offset, ether_type)?, true)
}

#[inline(always)]
fn parse_frame<R: PacketReader>(reader: &R, offset: usize, outer: bool) -> Option<Packet> {
    let eth: EthHdr = reader.read(offset)?;
    let mut ether_type = u16::from_be(eth.ether_type);
    let mut offset = offset + EthHdr::LEN;
    // Up to two VLAN tags (802.1ad outer, 802.1Q inner).
    for _ in 0..2 {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        let vlan: VlanHdr = reader.read(offset)?;
        ether_type = u16::from_be(vlan.ether_type);
        offset += VlanHdr::LEN;
    }
    parse_transport(reader, parse_ip(reader, offset, ether_type)?, outer)
}

/// What the network header tells about a packet.
#[derive(Clone, Copy)]
struct Network {
    transport_offset: usize,
    /// Bytes after the network header.
    payload_len: u16,
    /// IPv4 identification; 0 for IPv6, which has none.
    ip_id: u32,
    flow: Flow,
}

/// Fragments are not followed: only the first has ports, and reassembly
/// joins them anyway.
#[inline(always)]
fn parse_ip<R: PacketReader>(reader: &R, offset: usize, ether_type: u16) -> Option<Network> {
    let mut flow = Flow {
        family: 0,
        protocol: 0,
        src_port: 0,
        dst_port: 0,
        src_addr: [0; 16],
        dst_addr: [0; 16],
    };
    match ether_type {
        ETH_P_IP => {
            let ip: Ipv4Hdr = reader.read(offset)?;
            let header_len = u16::from(ip.vihl & 0x0f) * 4;
            if ip.vihl >> 4 != 4 || usize::from(header_len) < Ipv4Hdr::LEN {
                return None;
            }
            let frags = u16::from_be_bytes(ip.frags);
            if frags & (IPV4_MORE_FRAGMENTS | IPV4_FRAGMENT_OFFSET) != 0 {
                return None;
            }
            flow.family = 4;
            flow.protocol = ip.proto;
            flow.src_addr[..4].copy_from_slice(&ip.src_addr);
            flow.dst_addr[..4].copy_from_slice(&ip.dst_addr);
            Some(Network {
                transport_offset: offset + usize::from(header_len),
                payload_len: u16::from_be_bytes(ip.tot_len).saturating_sub(header_len),
                ip_id: u32::from(u16::from_be_bytes(ip.id)),
                flow,
            })
        }
        ETH_P_IPV6 => {
            let ip: Ipv6Hdr = reader.read(offset)?;
            if ip.vcf[0] >> 4 != 6 {
                return None;
            }
            flow.family = 6;
            flow.protocol = ip.next_hdr;
            flow.src_addr = ip.src_addr;
            flow.dst_addr = ip.dst_addr;
            Some(Network {
                transport_offset: offset + Ipv6Hdr::LEN,
                payload_len: u16::from_be_bytes(ip.payload_len),
                ip_id: 0,
                flow,
            })
        }
        _ => None,
    }
}

#[inline(always)]
fn parse_transport<R: PacketReader>(reader: &R, network: Network, outer: bool) -> Option<Packet> {
    let Network {
        transport_offset: offset,
        payload_len,
        ip_id,
        mut flow,
    } = network;
    let mut key = FlightKey {
        protocol: flow.protocol,
        ip_id,
        ..FlightKey::default()
    };
    match flow.protocol {
        IPPROTO_TCP => {
            let tcp: TcpHdr = reader.read(offset)?;
            let header_len = tcp.doff() * 4;
            // GRO and GSO packets carry data too; their IPv4 length may be 0.
            if usize::from(header_len) < size_of::<TcpHdr>() || payload_len == header_len {
                return None;
            }
            flow.src_port = u16::from_be_bytes(tcp.source);
            flow.dst_port = u16::from_be_bytes(tcp.dest);
            key.word0 = u32::from_be_bytes(tcp.seq);
            key.word1 = u32::from_be_bytes(tcp.ack_seq);
        }
        IPPROTO_UDP => {
            let udp: UdpHdr = reader.read(offset)?;
            let dst_port = u16::from_be_bytes(udp.dst);
            if outer && (dst_port == VXLAN_PORTS[0] || dst_port == VXLAN_PORTS[1]) {
                let inner = offset + UdpHdr::LEN + VxlanHdr::LEN;
                return parse_frame(reader, inner, false);
            }
            flow.src_port = u16::from_be_bytes(udp.src);
            flow.dst_port = dst_port;
            key.word0 = u32::from(u16::from_be_bytes(udp.len));
            if key.word0 as usize >= UdpHdr::LEN + size_of::<u32>() {
                key.word1 = reader.read(offset + UdpHdr::LEN)?;
            }
        }
        _ => return None,
    }
    Some(Packet { key, flow })
}
