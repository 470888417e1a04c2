//! Crafted Ethernet frames for BPF_PROG_TEST_RUN: the headers the probes and
//! the fast path parse, with valid checksums, and the offsets where each
//! header ends (to truncate at every boundary).

use std::net::{Ipv4Addr, Ipv6Addr};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// A frame under construction; `boundaries` records where each header ends.
#[derive(Clone, Debug, Default)]
pub struct Frame {
    pub bytes: Vec<u8>,
    pub boundaries: Vec<usize>,
}

impl Frame {
    fn push(&mut self, header: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(header);
        self.boundaries.push(self.bytes.len());
        self
    }

    pub fn ethernet(&mut self, dst: [u8; 6], src: [u8; 6], ether_type: u16) -> &mut Self {
        let mut header = Vec::with_capacity(14);
        header.extend_from_slice(&dst);
        header.extend_from_slice(&src);
        header.extend_from_slice(&ether_type.to_be_bytes());
        self.push(&header)
    }

    pub fn vlan(&mut self, id: u16, ether_type: u16) -> &mut Self {
        let mut header = id.to_be_bytes().to_vec();
        header.extend_from_slice(&ether_type.to_be_bytes());
        self.push(&header)
    }

    /// IPv4 header; `payload_len` is what follows it. `options` are
    /// appended (their length must be a multiple of 4).
    pub fn ipv4(&mut self, ip: &Ipv4, payload_len: usize) -> &mut Self {
        let header_len = 20 + ip.options.len();
        let mut header = vec![0u8; header_len];
        header[0] = 0x40 | (header_len / 4) as u8;
        header[2..4].copy_from_slice(&((header_len + payload_len) as u16).to_be_bytes());
        header[4..6].copy_from_slice(&ip.id.to_be_bytes());
        header[6..8].copy_from_slice(&ip.frag.to_be_bytes());
        header[8] = ip.ttl;
        header[9] = ip.protocol;
        header[12..16].copy_from_slice(&ip.src.octets());
        header[16..20].copy_from_slice(&ip.dst.octets());
        header[20..].copy_from_slice(&ip.options);
        let checksum = internet_checksum(&header);
        header[10..12].copy_from_slice(&checksum.to_be_bytes());
        self.push(&header)
    }

    pub fn ipv6(
        &mut self,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        next: u8,
        payload_len: usize,
    ) -> &mut Self {
        let mut header = vec![0u8; 40];
        header[0] = 0x60;
        header[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
        header[6] = next;
        header[7] = 64;
        header[8..24].copy_from_slice(&src.octets());
        header[24..40].copy_from_slice(&dst.octets());
        self.push(&header)
    }

    /// TCP header (20 bytes, no options) with ACK|PSH set.
    pub fn tcp(&mut self, src_port: u16, dst_port: u16, seq: u32, ack: u32) -> &mut Self {
        let mut header = vec![0u8; 20];
        header[0..2].copy_from_slice(&src_port.to_be_bytes());
        header[2..4].copy_from_slice(&dst_port.to_be_bytes());
        header[4..8].copy_from_slice(&seq.to_be_bytes());
        header[8..12].copy_from_slice(&ack.to_be_bytes());
        header[12] = 5 << 4;
        header[13] = 0x18;
        header[14..16].copy_from_slice(&65535u16.to_be_bytes());
        self.push(&header)
    }

    /// UDP header; `payload_len` is what follows it. Checksum left 0
    /// (allowed over IPv4).
    pub fn udp(&mut self, src_port: u16, dst_port: u16, payload_len: usize) -> &mut Self {
        let mut header = vec![0u8; 8];
        header[0..2].copy_from_slice(&src_port.to_be_bytes());
        header[2..4].copy_from_slice(&dst_port.to_be_bytes());
        header[4..6].copy_from_slice(&((8 + payload_len) as u16).to_be_bytes());
        self.push(&header)
    }

    /// VXLAN header with the I flag set (or not).
    pub fn vxlan(&mut self, vni: u32, i_flag: bool) -> &mut Self {
        let mut header = vec![0u8; 8];
        header[0] = if i_flag { 0x08 } else { 0 };
        header[4..7].copy_from_slice(&vni.to_be_bytes()[1..]);
        self.push(&header)
    }

    /// ICMP echo request header.
    pub fn icmp_echo(&mut self, id: u16, seq: u16) -> &mut Self {
        let mut header = vec![8u8, 0, 0, 0];
        header.extend_from_slice(&id.to_be_bytes());
        header.extend_from_slice(&seq.to_be_bytes());
        self.push(&header)
    }

    pub fn payload(&mut self, bytes: &[u8]) -> &mut Self {
        self.push(bytes)
    }

    /// Appends another frame (e.g. the inner frame of a VXLAN packet).
    pub fn inner(&mut self, inner: &Frame) -> &mut Self {
        let base = self.bytes.len();
        self.bytes.extend_from_slice(&inner.bytes);
        self.boundaries
            .extend(inner.boundaries.iter().map(|end| base + end));
        self
    }

    pub fn build(&self) -> Frame {
        self.clone()
    }
}

#[derive(Clone, Debug)]
pub struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub id: u16,
    pub ttl: u8,
    /// Flags and fragment offset.
    pub frag: u16,
    pub options: Vec<u8>,
}

impl Ipv4 {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, id: u16) -> Self {
        Self {
            src,
            dst,
            protocol,
            id,
            ttl: 64,
            // Don't fragment, as Linux sends TCP.
            frag: 0x4000,
            options: Vec::new(),
        }
    }
}

/// Whether the skb test runner (BPF_PROG_TEST_RUN of TC programs) refuses
/// `frame`: like the stack before TC sees a packet, it wants the Ethernet
/// header and, for IPv4 and IPv6, the whole fixed network header (1 byte
/// for anything else).
pub fn skb_runner_refuses(frame: &[u8]) -> bool {
    if frame.len() < 14 {
        return true;
    }
    let network = match u16::from_be_bytes([frame[12], frame[13]]) {
        ETH_P_IP => 20,
        ETH_P_IPV6 => 40,
        _ => 1,
    };
    frame.len() < 14 + network
}

/// RFC 1071 one's-complement sum.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb];

/// An IPv4 TCP segment carrying `payload`.
pub fn ipv4_tcp(id: u16, seq: u32, ack: u32, payload: &[u8]) -> Frame {
    let ip = Ipv4::new(
        Ipv4Addr::new(10, 78, 1, 2),
        Ipv4Addr::new(10, 78, 2, 2),
        IPPROTO_TCP,
        id,
    );
    Frame::default()
        .ethernet(MAC_B, MAC_A, ETH_P_IP)
        .ipv4(&ip, 20 + payload.len())
        .tcp(40000, 80, seq, ack)
        .payload(payload)
        .build()
}

/// An IPv6 TCP segment carrying `payload`.
pub fn ipv6_tcp(seq: u32, ack: u32, payload: &[u8]) -> Frame {
    Frame::default()
        .ethernet(MAC_B, MAC_A, ETH_P_IPV6)
        .ipv6(
            "fd00::1".parse().unwrap(),
            "fd00::2".parse().unwrap(),
            IPPROTO_TCP,
            20 + payload.len(),
        )
        .tcp(40000, 80, seq, ack)
        .payload(payload)
        .build()
}

/// An IPv4 UDP datagram carrying `payload`.
pub fn ipv4_udp(id: u16, dst_port: u16, payload: &[u8]) -> Frame {
    let ip = Ipv4::new(
        Ipv4Addr::new(10, 78, 1, 2),
        Ipv4Addr::new(10, 78, 2, 2),
        IPPROTO_UDP,
        id,
    );
    Frame::default()
        .ethernet(MAC_B, MAC_A, ETH_P_IP)
        .ipv4(&ip, 8 + payload.len())
        .udp(5353, dst_port, payload.len())
        .payload(payload)
        .build()
}

/// An IPv6 UDP datagram carrying `payload`.
pub fn ipv6_udp(payload: &[u8]) -> Frame {
    Frame::default()
        .ethernet(MAC_B, MAC_A, ETH_P_IPV6)
        .ipv6(
            "fd00::1".parse().unwrap(),
            "fd00::2".parse().unwrap(),
            IPPROTO_UDP,
            8 + payload.len(),
        )
        .udp(5353, 53, payload.len())
        .payload(payload)
        .build()
}

/// `inner` encapsulated in VXLAN between two nodes, as flannel sends it.
pub fn vxlan(inner: &Frame, port: u16, vni: u32) -> Frame {
    let outer_ip = Ipv4::new(
        Ipv4Addr::new(10, 77, 0, 1),
        Ipv4Addr::new(10, 77, 0, 2),
        IPPROTO_UDP,
        7,
    );
    let udp_payload = 8 + inner.bytes.len();
    Frame::default()
        .ethernet([0x02, 0, 0, 0, 0, 2], [0x02, 0, 0, 0, 0, 1], ETH_P_IP)
        .ipv4(&outer_ip, 8 + udp_payload)
        .udp(50000, port, udp_payload)
        .vxlan(vni, true)
        .inner(inner)
        .build()
}
