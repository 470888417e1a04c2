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

/// `--filter` where the probes' load-time settings hold it. Each field is
/// read from there when a check needs it: a copy of the whole filter onto
/// the stack would cost more than the checks themselves.
#[derive(Clone, Copy)]
pub struct Filter(*const FlowFilter);

impl Filter {
    /// # Safety
    ///
    /// `filter` points to a `static` that lives as long as the program.
    #[inline(always)]
    pub const unsafe fn new(filter: *const FlowFilter) -> Self {
        Self(filter)
    }

    /// Volatile, as load-time globals are read: the compiler must not fold
    /// the all-zero initial value into the code.
    #[inline(always)]
    fn protocol(&self) -> u8 {
        unsafe { (&raw const (*self.0).protocol).read_volatile() }
    }

    #[inline(always)]
    fn family(&self) -> u8 {
        unsafe { (&raw const (*self.0).family).read_volatile() }
    }

    #[inline(always)]
    fn port(&self) -> u16 {
        unsafe { (&raw const (*self.0).port).read_volatile() }
    }

    #[inline(always)]
    fn port_sides(&self) -> u8 {
        unsafe { (&raw const (*self.0).port_sides).read_volatile() }
    }

    #[inline(always)]
    fn addr_sides(&self) -> u8 {
        unsafe { (&raw const (*self.0).addr_sides).read_volatile() }
    }

    #[inline(always)]
    fn addr(&self) -> [u8; 16] {
        unsafe { (&raw const (*self.0).addr).read_volatile() }
    }
}

/// Reads a header at a byte offset of the packet, wherever the packet lives
/// (XDP buffer, skb through a helper, kernel memory).
pub trait PacketReader {
    fn read<T: Copy>(&self, offset: usize) -> Option<T>;

    /// Whether the packet has `len` bytes from `offset` on.
    fn holds(&self, offset: usize, len: usize) -> bool;

    /// The field `field` bytes into a header `H` at `offset`, if the packet
    /// holds the whole header. Reading only the fields a check needs keeps
    /// whole headers from being copied onto the stack.
    #[inline(always)]
    fn field<H, T: Copy>(&self, offset: usize, field: usize) -> Option<T> {
        if field + size_of::<T>() > size_of::<H>() || !self.holds(offset, size_of::<H>()) {
            return None;
        }
        self.read(offset + field)
    }
}

/// `$reader.field` of `$header.$field` as a `$ty`, from a `$header` at
/// `$offset`.
macro_rules! field {
    ($reader:expr, $offset:expr, $header:ident . $field:ident: $ty:ty) => {
        $reader.field::<$header, $ty>($offset, core::mem::offset_of!($header, $field))
    };
}

/// Writes a header at a byte offset of the packet.
pub trait PacketWriter {
    fn write<T: Copy>(&self, offset: usize, value: T) -> Option<()>;
}

/// A packet worth following: TCP carrying data, or UDP. Pure ACKs, SYNs and
/// FINs never reach a socket read, so following them would only leave
/// unfinished records behind.
/// Aligned to 8: the compiler may store it to the stack 8 bytes at a time,
/// and the verifier refuses a misaligned stack access.
#[derive(Clone, Copy)]
#[repr(align(8))]
pub struct Packet {
    pub key: FlightKey,
    /// Whether the (inner) flow matches the filter.
    pub selected: bool,
    /// Where the (inner) network header starts, for [`pod_address`]: the
    /// addresses are read only for the packets that need them.
    pub network: u16,
    pub ipv6: bool,
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
    filter: &Filter,
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
            network: offset as u16,
            ipv6: ether_type == ETH_P_IPV6,
        };
        let (protocol, l4, payload_len) =
            parse_ip(reader, offset, ether_type, filter, &mut packet)?;
        packet.key.protocol = protocol;
        match protocol {
            IPPROTO_TCP => {
                // The data offset is the high nibble of the byte after the
                // acknowledgement number.
                let offset_byte: u8 = field!(reader, l4, TcpHdr._bitfield_1: u8)?;
                let header_len = u16::from(offset_byte >> 4) * 4;
                // GRO and GSO packets carry data too; their IPv4 length may be 0.
                if usize::from(header_len) < size_of::<TcpHdr>() || payload_len == header_len {
                    return None;
                }
                let ports: [u8; 4] = field!(reader, l4, TcpHdr.source: [u8; 4])?;
                select_ports(filter, &mut packet, ports);
                let seq: u32 = field!(reader, l4, TcpHdr.seq: u32)?;
                let ack: u32 = field!(reader, l4, TcpHdr.ack_seq: u32)?;
                packet.key.word0 = u32::from_be(seq);
                packet.key.word1 = u32::from_be(ack);
                return Some(packet);
            }
            IPPROTO_UDP => {
                let dst_port = u16::from_be(field!(reader, l4, UdpHdr.dst: u16)?);
                if round == 0 && (dst_port == VXLAN_PORTS[0] || dst_port == VXLAN_PORTS[1]) {
                    offset = l4 + UdpHdr::LEN + VxlanHdr::LEN;
                    start = Start::Ethernet;
                    continue;
                }
                let ports: [u8; 4] = field!(reader, l4, UdpHdr.src: [u8; 4])?;
                select_ports(filter, &mut packet, ports);
                let udp_len = u16::from_be(field!(reader, l4, UdpHdr.len: u16)?);
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

/// The address of `packet` on its pod's side, as `POD_ADDRS` keys it
/// (IPv4 mapped into IPv6): the destination of a packet going to a pod, the
/// source of one leaving it.
#[inline(always)]
pub fn pod_address<R: PacketReader>(
    reader: &R,
    packet: &Packet,
    destination: bool,
) -> Option<[u8; 16]> {
    let offset = usize::from(packet.network);
    if packet.ipv6 {
        return if destination {
            field!(reader, offset, Ipv6Hdr.dst_addr: [u8; 16])
        } else {
            field!(reader, offset, Ipv6Hdr.src_addr: [u8; 16])
        };
    }
    let v4: [u8; 4] = if destination {
        field!(reader, offset, Ipv4Hdr.dst_addr: [u8; 4])?
    } else {
        field!(reader, offset, Ipv4Hdr.src_addr: [u8; 4])?
    };
    let [a, b, c, d] = v4;
    Some([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d])
}

/// Returns the EtherType after up to two VLAN tags, and the offset of the
/// network header.
#[inline(always)]
fn parse_ethernet<R: PacketReader>(reader: &R, offset: usize) -> Option<(u16, usize)> {
    let mut ether_type = u16::from_be(field!(reader, offset, EthHdr.ether_type: u16)?);
    let mut offset = offset + EthHdr::LEN;
    for _ in 0..2 {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        ether_type = u16::from_be(field!(reader, offset, VlanHdr.ether_type: u16)?);
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
    filter: &Filter,
    packet: &mut Packet,
) -> Option<(u8, usize, u16)> {
    match ether_type {
        ETH_P_IP => {
            let vihl: u8 = field!(reader, offset, Ipv4Hdr.vihl: u8)?;
            let header_len = u16::from(vihl & 0x0f) * 4;
            if vihl >> 4 != 4 || usize::from(header_len) < Ipv4Hdr::LEN {
                return None;
            }
            let frags = u16::from_be(field!(reader, offset, Ipv4Hdr.frags: u16)?);
            if frags & (IPV4_MORE_FRAGMENTS | IPV4_FRAGMENT_OFFSET) != 0 {
                return None;
            }
            packet.key.ip_id = u32::from(u16::from_be(field!(reader, offset, Ipv4Hdr.id: u16)?));
            let family = filter.family();
            if family != 0 {
                let addresses: [u32; 2] = field!(reader, offset, Ipv4Hdr.src_addr: [u32; 2])?;
                packet.selected &= family == 4 && address_selected(filter, addresses);
            }
            let total_len = u16::from_be(field!(reader, offset, Ipv4Hdr.tot_len: u16)?);
            let protocol: u8 = field!(reader, offset, Ipv4Hdr.proto: u8)?;
            let payload_len = total_len.saturating_sub(header_len);
            Some((protocol, offset + usize::from(header_len), payload_len))
        }
        ETH_P_IPV6 => {
            let version: u8 = field!(reader, offset, Ipv6Hdr.vcf: u8)?;
            if version >> 4 != 6 {
                return None;
            }
            let family = filter.family();
            if family != 0 {
                let addresses: [u32; 8] = field!(reader, offset, Ipv6Hdr.src_addr: [u32; 8])?;
                packet.selected &= family == 6 && address_selected(filter, addresses);
            }
            let payload_len = u16::from_be(field!(reader, offset, Ipv6Hdr.payload_len: u16)?);
            let protocol: u8 = field!(reader, offset, Ipv6Hdr.next_hdr: u8)?;
            Some((protocol, offset + Ipv6Hdr::LEN, payload_len))
        }
        _ => None,
    }
}

/// Whether a source or destination address (the two halves of
/// `addresses`, as 32-bit words in packet order) is the filter's, on the
/// sides it asks for.
#[inline(always)]
fn address_selected<const N: usize>(filter: &Filter, addresses: [u32; N]) -> bool {
    let words = N / 2;
    let wanted: [u32; 4] = unsafe { core::mem::transmute(filter.addr()) };
    let sides = filter.addr_sides();
    let matches = |first: usize| (0..words).all(|word| addresses[first + word] == wanted[word]);
    (sides & MATCH_SRC != 0 && matches(0)) || (sides & MATCH_DST != 0 && matches(words))
}

/// Applies the filter's protocol and port to a packet with these source
/// and destination ports (packet order).
#[inline(always)]
fn select_ports(filter: &Filter, packet: &mut Packet, ports: [u8; 4]) {
    let protocol = filter.protocol();
    if protocol != 0 && protocol != packet.key.protocol {
        packet.selected = false;
    }
    let port = filter.port();
    if port != 0 {
        let sides = filter.port_sides();
        let src = sides & MATCH_SRC != 0 && u16::from_be_bytes([ports[0], ports[1]]) == port;
        let dst = sides & MATCH_DST != 0 && u16::from_be_bytes([ports[2], ports[3]]) == port;
        packet.selected &= src || dst;
    }
}
