//! Header parsing shared by every hook: from the first header a hook sees to
//! the fields that identify a packet ([`FlightKey`]), and whether its flow
//! matches `--filter`. VXLAN is looked through: what identifies an
//! encapsulated packet is its inner headers, which encapsulation and
//! decapsulation leave unchanged.

use core::mem::size_of;

pub use netprobe_common::probe::IPPROTO_TCP;
use netprobe_common::{
    config::{FlowFilter, MATCH_DST, MATCH_SRC, VXLAN_PORTS},
    probe::FlightKey,
};
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
pub const IPPROTO_UDP: u8 = 17;
pub const IPV4_MORE_FRAGMENTS: u16 = 0x2000;
pub const IPV4_FRAGMENT_OFFSET: u16 = 0x1fff;

/// Reads a header at a byte offset of the packet, wherever the packet lives
/// (XDP buffer, skb through a helper, kernel memory).
pub trait PacketReader {
    fn read<T: Copy>(&self, offset: usize) -> Option<T>;
}

/// Writes a header at a byte offset of the packet.
pub trait PacketWriter {
    fn write<T: Copy>(&self, offset: usize, value: T) -> Option<()>;
}

/// A packet worth following: TCP carrying data, or UDP. Pure ACKs, SYNs and
/// FINs never reach a socket read, so following them would only leave
/// unfinished records behind.
#[derive(Clone, Copy)]
pub struct Packet {
    pub key: FlightKey,
    /// Whether the (inner) flow matches the filter.
    pub selected: bool,
}

/// Where parsing starts.
#[derive(Clone, Copy)]
pub enum Start {
    /// At an Ethernet header.
    Ethernet,
    /// At an IP header with this EtherType (host order).
    Network(u16),
}

/// Parses the packet at `offset`, looking through one VXLAN encapsulation.
#[inline(always)]
pub fn parse<R: PacketReader>(
    reader: &R,
    mut offset: usize,
    mut start: Start,
    filter: &FlowFilter,
) -> Option<Packet> {
    // Two rounds at most: the outer packet, then the inner one of a VXLAN
    // packet. A loop rather than recursion, which BPF does not allow.
    for round in 0..2 {
        let ether_type = match start {
            Start::Ethernet => {
                let (ether_type, l3) = parse_ethernet(reader, offset)?;
                offset = l3;
                ether_type
            }
            Start::Network(ether_type) => ether_type,
        };
        let mut packet = Packet {
            key: FlightKey::default(),
            selected: true,
        };
        let (protocol, l4, payload_len) =
            parse_ip(reader, offset, ether_type, filter, &mut packet)?;
        packet.key.protocol = protocol;
        match protocol {
            IPPROTO_TCP => {
                let tcp: TcpHdr = reader.read(l4)?;
                let header_len = tcp.doff() * 4;
                // GRO and GSO packets carry data too; their IPv4 length may be 0.
                if usize::from(header_len) < size_of::<TcpHdr>() || payload_len == header_len {
                    return None;
                }
                select_ports(filter, &mut packet, tcp.source, tcp.dest);
                packet.key.word0 = u32::from_be_bytes(tcp.seq);
                packet.key.word1 = u32::from_be_bytes(tcp.ack_seq);
                return Some(packet);
            }
            IPPROTO_UDP => {
                let udp: UdpHdr = reader.read(l4)?;
                let dst_port = u16::from_be_bytes(udp.dst);
                if round == 0 && (dst_port == VXLAN_PORTS[0] || dst_port == VXLAN_PORTS[1]) {
                    offset = l4 + UdpHdr::LEN + VxlanHdr::LEN;
                    start = Start::Ethernet;
                    continue;
                }
                select_ports(filter, &mut packet, udp.src, udp.dst);
                let udp_len = u16::from_be_bytes(udp.len);
                packet.key.word0 = u32::from(udp_len);
                if usize::from(udp_len) >= UdpHdr::LEN + size_of::<u32>() {
                    packet.key.word1 = reader.read(l4 + UdpHdr::LEN)?;
                }
                return Some(packet);
            }
            _ => return None,
        }
    }
    None
}

/// Returns the EtherType after up to two VLAN tags, and the offset of the
/// network header.
#[inline(always)]
fn parse_ethernet<R: PacketReader>(reader: &R, offset: usize) -> Option<(u16, usize)> {
    let eth: EthHdr = reader.read(offset)?;
    let mut ether_type = u16::from_be(eth.ether_type);
    let mut offset = offset + EthHdr::LEN;
    for _ in 0..2 {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        let vlan: VlanHdr = reader.read(offset)?;
        ether_type = u16::from_be(vlan.ether_type);
        offset += VlanHdr::LEN;
    }
    Some((ether_type, offset))
}

/// Returns the protocol, the transport header offset and the bytes after
/// the network header; fills the IPv4 identification and applies the
/// address filter. Fragments are not followed: only the first has ports,
/// and reassembly joins them anyway.
#[inline(always)]
fn parse_ip<R: PacketReader>(
    reader: &R,
    offset: usize,
    ether_type: u16,
    filter: &FlowFilter,
    packet: &mut Packet,
) -> Option<(u8, usize, u16)> {
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
            packet.key.ip_id = u32::from(u16::from_be_bytes(ip.id));
            if filter.family != 0 {
                packet.selected &=
                    filter.family == 4 && address_selected(filter, &ip.src_addr, &ip.dst_addr);
            }
            let payload_len = u16::from_be_bytes(ip.tot_len).saturating_sub(header_len);
            Some((ip.proto, offset + usize::from(header_len), payload_len))
        }
        ETH_P_IPV6 => {
            let ip: Ipv6Hdr = reader.read(offset)?;
            if ip.vcf[0] >> 4 != 6 {
                return None;
            }
            if filter.family != 0 {
                packet.selected &=
                    filter.family == 6 && address_selected(filter, &ip.src_addr, &ip.dst_addr);
            }
            let payload_len = u16::from_be_bytes(ip.payload_len);
            Some((ip.next_hdr, offset + Ipv6Hdr::LEN, payload_len))
        }
        _ => None,
    }
}

#[inline(always)]
fn address_selected<const N: usize>(filter: &FlowFilter, src: &[u8; N], dst: &[u8; N]) -> bool {
    let wanted = &filter.addr[..N];
    (filter.addr_sides & MATCH_SRC != 0 && src[..] == *wanted)
        || (filter.addr_sides & MATCH_DST != 0 && dst[..] == *wanted)
}

#[inline(always)]
fn select_ports(filter: &FlowFilter, packet: &mut Packet, src: [u8; 2], dst: [u8; 2]) {
    if filter.protocol != 0 && filter.protocol != packet.key.protocol {
        packet.selected = false;
    }
    if filter.port != 0 {
        let src = filter.port_sides & MATCH_SRC != 0 && u16::from_be_bytes(src) == filter.port;
        let dst = filter.port_sides & MATCH_DST != 0 && u16::from_be_bytes(dst) == filter.port;
        packet.selected &= src || dst;
    }
}
