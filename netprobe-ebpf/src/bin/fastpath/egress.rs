//! TC ingress (tcx) on each served pod's host-side veth: a frame from the
//! pod to its gateway, for a pod behind the vxlan device on another node,
//! leaves as the kernel's path would send it (routing with its TTL
//! decrement, the vxlan device's encapsulation) straight from the node's
//! interface: `bpf_skb_adjust_room` makes room for the outer headers (and
//! marks a GSO packet as a UDP tunnel, so that segmentation stays right) and
//! `bpf_redirect` hands it to the interface's egress. Every other frame goes
//! on to the bridge unchanged (`TC_ACT_UNSPEC`), counted by why.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    bindings::{
        BPF_ADJ_ROOM_ENCAP_L2_SHIFT, BPF_F_ADJ_ROOM_ENCAP_L2_ETH, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4,
        BPF_F_ADJ_ROOM_ENCAP_L4_UDP, BPF_F_ADJ_ROOM_FIXED_GSO, TC_ACT_UNSPEC,
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
    },
    helpers::generated::{bpf_get_hash_recalc, bpf_redirect},
    macros::classifier,
    maps::lpm_trie::Key,
    programs::TcContext,
};
use netprobe_common::fastpath::{
    DF_INHERIT, DF_SET, EgressCounter, EgressRoute, OUTER_LEN, TOS_INHERIT, TTL_INHERIT,
};
use netprobe_ebpf::{
    packet::{ETH_P_IP, IPPROTO_TCP, IPPROTO_UDP, PacketReader, PacketWriter},
    reader::DirectReader,
};
use network_types::{eth::EthHdr, ip::Ipv4Hdr};

use crate::{
    ipv4::{self, Fault},
    maps::{FP_EGRESS_PORTS, FP_IP_ID, FP_ROUTES, count_egress},
    rules::address,
};

const IPPROTO_ICMP: u8 = 1;
/// Where the inner transport header starts in the pod's frame.
const L4: usize = EthHdr::LEN + Ipv4Hdr::LEN;
/// The bytes of the transport header the rules read: TCP's data offset
/// (byte 12) and checksum (16-17), UDP's checksum (6-7).
const L4_READ: usize = 18;
/// Where the inner IPv4 header's TTL, protocol and checksum are once the
/// frame is encapsulated.
const ENCAPSULATED_TTL: usize = OUTER_LEN + EthHdr::LEN + 8;
/// `bpf_skb_adjust_room` for VXLAN over IPv4: the inner Ethernet header is
/// part of the room made, and GSO keeps its segment size (the inner MSS).
const ENCAP_FLAGS: u64 = (BPF_F_ADJ_ROOM_FIXED_GSO
    | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4
    | BPF_F_ADJ_ROOM_ENCAP_L4_UDP
    | BPF_F_ADJ_ROOM_ENCAP_L2_ETH) as u64
    | ((EthHdr::LEN as u64) << BPF_ADJ_ROOM_ENCAP_L2_SHIFT);
/// ECN codepoints: the mask, and what a congestion mark becomes outside.
const ECN_MASK: u8 = 0x03;
const ECN_CE: u8 = 0x03;
const ECN_ECT_0: u8 = 0x02;
const IP_DF: u16 = 0x4000;
const VXLAN_I_FLAG: u8 = 0x08;

#[classifier]
pub fn np_fp_egress(ctx: TcContext) -> i32 {
    match encapsulate(&ctx) {
        Ok(ifindex) => {
            count_egress(EgressCounter::Encapsulated as u32);
            (unsafe { bpf_redirect(ifindex, 0) }) as i32
        }
        Err(counter) => {
            count_egress(counter);
            TC_ACT_UNSPEC
        }
    }
}

/// What the rules found out about a frame the fast path takes.
struct Frame {
    ip: Ipv4Hdr,
    route: EgressRoute,
    /// Outer IPv4 identifications the packet takes: one per segment.
    segments: u64,
    /// What the inner transport segment adds to the outer UDP checksum.
    l4_sum: u32,
}

/// Encapsulates a frame the rules accept and returns the interface to send
/// it from; or the index of the counter of the first rule it breaks.
#[inline(always)]
fn encapsulate(ctx: &TcContext) -> Result<u32, u32> {
    let frame = check(ctx)?;
    let route = &frame.route;
    let (macs, mut headers) = outer_headers(ctx, &frame);
    let id_slot = FP_IP_ID
        .get_ptr_mut(0)
        .ok_or(EgressCounter::HelperFailed as u32)?;
    // BPF_ATOMIC fetch-add: the target has no compare-and-swap, so no
    // `AtomicU64::fetch_add`. SeqCst: for a relaxed add LLVM emits the
    // locked add without fetch, leaving the operand where the old value
    // belongs.
    let id =
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(id_slot, frame.segments) };
    headers.ip[4..6].copy_from_slice(&(id as u16).to_be_bytes());
    let check = !ipv4::fold(ipv4::sum(&headers.ip));
    headers.ip[10..12].copy_from_slice(&check.to_be_bytes());
    if route.udp_csum != 0 {
        let check = udp_checksum(&headers, route, frame.l4_sum);
        headers.udp[6..8].copy_from_slice(&check.to_be_bytes());
    }
    let forwarded = ipv4::forwarded(&frame.ip);

    ctx.adjust_room(OUTER_LEN as i32, BPF_ADJ_ROOM_MAC, ENCAP_FLAGS)
        .map_err(|_| EgressCounter::HelperFailed as u32)?;
    // The room is made behind the Ethernet header, in the skb's linear part
    // (the headers before it were pulled in), so these writes fit.
    let packet = DirectReader::tc(ctx);
    let written = packet
        .write(0, macs)
        .and_then(|()| packet.write(EthHdr::LEN, headers))
        .and_then(|()| packet.write(ENCAPSULATED_TTL, forwarded));
    if written.is_none() {
        // Not reachable, but the verifier wants the bounds checked: the
        // frame goes back as it came.
        ctx.adjust_room(-(OUTER_LEN as i32), BPF_ADJ_ROOM_MAC, 0)
            .ok();
        return Err(EgressCounter::HelperFailed as u32);
    }
    Ok(route.nic_ifindex)
}

/// Checks every rule on the pod's frame.
#[inline(always)]
fn check(ctx: &TcContext) -> Result<Frame, u32> {
    let len = ctx.len() as usize;
    // The rules read the headers directly, from the skb's linear part:
    // pull them in when it is shorter (the bytes stay as they are).
    let headers = len.min(L4 + L4_READ);
    if ctx.data_end() - ctx.data() < headers {
        ctx.pull_data(headers as u32)
            .map_err(|_| EgressCounter::HelperFailed as u32)?;
    }
    let skb = ctx.skb.skb;
    let ifindex = unsafe { (*skb).ifindex };
    let port = unsafe { FP_EGRESS_PORTS.get(ifindex) }.ok_or(EgressCounter::UnknownPort as u32)?;
    let packet = DirectReader::tc(ctx);
    let eth: EthHdr = packet.read(0).ok_or(EgressCounter::Truncated as u32)?;
    if eth.dst_addr[0] & 1 != 0 {
        return Err(EgressCounter::Broadcast as u32);
    }
    if eth.dst_addr != port.bridge_mac {
        return Err(EgressCounter::Bridged as u32);
    }
    if u16::from_be(eth.ether_type) != ETH_P_IP {
        return Err(EgressCounter::NotIpv4 as u32);
    }
    let ip: Ipv4Hdr = packet
        .read(EthHdr::LEN)
        .ok_or(EgressCounter::Truncated as u32)?;
    if ip.vihl >> 4 != 4 {
        return Err(EgressCounter::Malformed as u32);
    }
    match ipv4::header_fault(&ip) {
        None => {}
        Some(Fault::Malformed) => return Err(EgressCounter::Malformed as u32),
        Some(Fault::Options) => return Err(EgressCounter::IpOptions as u32),
        Some(Fault::Fragment) => return Err(EgressCounter::Fragment as u32),
    }
    let ip_len = usize::from(u16::from_be_bytes(ip.tot_len));
    if ip_len + EthHdr::LEN != len {
        return Err(EgressCounter::Malformed as u32);
    }
    if ip.ttl <= 1 {
        return Err(EgressCounter::TtlExpired as u32);
    }
    if address(ip.src_addr) != port.pod {
        return Err(EgressCounter::ForeignSource as u32);
    }
    // Multicast (224/4) and the limited broadcast.
    if ip.dst_addr[0] >= 224 {
        return Err(EgressCounter::Broadcast as u32);
    }
    let route = *FP_ROUTES
        .get(Key::new(32, address(ip.dst_addr)))
        .ok_or(EgressCounter::NotOverlay as u32)?;
    if route.pass != 0 {
        return Err(route.pass);
    }

    let gso_size = unsafe { (*skb).gso_size } as usize;
    let segments = if gso_size == 0 {
        if ip_len > usize::from(route.max_inner) {
            return Err(EgressCounter::TooBig as u32);
        }
        1
    } else {
        // The kernel's segmentation writes a UDP checksum only for tunnels
        // marked so, which bpf_skb_adjust_room does not mark.
        if ip.proto != IPPROTO_TCP || route.udp_csum != 0 {
            return Err(EgressCounter::GsoUnsupported as u32);
        }
        let offset: u8 = packet
            .read(L4 + 12)
            .ok_or(EgressCounter::Truncated as u32)?;
        let headers = Ipv4Hdr::LEN + usize::from(offset >> 4) * 4;
        if headers + gso_size > usize::from(route.max_inner) || headers > ip_len {
            return Err(EgressCounter::TooBig as u32);
        }
        (ip_len - headers).div_ceil(gso_size) as u64
    };
    let l4_sum = if route.udp_csum != 0 {
        l4_sum(&packet, &ip, ip_len)?
    } else {
        0
    };
    Ok(Frame {
        ip,
        route,
        segments,
        l4_sum,
    })
}

/// The inner transport segment's share of the outer UDP checksum, without
/// reading its payload: a TCP segment, or a UDP datagram with a checksum,
/// sums to the complement of its pseudo-header (the checksum is right, or
/// left to an offload that makes it so, as `lco_csum()` relies on); an ICMP
/// message sums to zero.
#[inline(always)]
fn l4_sum(packet: &DirectReader, ip: &Ipv4Hdr, ip_len: usize) -> Result<u32, u32> {
    match ip.proto {
        IPPROTO_TCP => {}
        IPPROTO_UDP => {
            let check: [u8; 2] = packet.read(L4 + 6).ok_or(EgressCounter::Truncated as u32)?;
            if check == [0, 0] {
                return Err(EgressCounter::ChecksumUnsupported as u32);
            }
        }
        IPPROTO_ICMP => return Ok(0),
        _ => return Err(EgressCounter::ChecksumUnsupported as u32),
    }
    let pseudo = ipv4::sum(&ip.src_addr)
        + ipv4::sum(&ip.dst_addr)
        + u32::from(ip.proto)
        + (ip_len - Ipv4Hdr::LEN) as u32;
    Ok(u32::from(!ipv4::fold(pseudo)))
}

/// What goes between the outer Ethernet header (the pod's, its MACs
/// rewritten, its EtherType kept) and the inner IPv4 packet.
#[repr(C)]
#[derive(Clone, Copy)]
struct Headers {
    ip: [u8; Ipv4Hdr::LEN],
    udp: [u8; 8],
    vxlan: [u8; 8],
    inner_eth: [u8; EthHdr::LEN],
}

/// The outer MACs and headers as `vxlan_xmit_one()` and `iptunnel_xmit()`
/// build them, the IPv4 identification and the checksums still zero.
#[inline(always)]
fn outer_headers(ctx: &TcContext, frame: &Frame) -> ([u8; 12], Headers) {
    let (ip, route) = (&frame.ip, &frame.route);
    let ip_len = u16::from_be_bytes(ip.tot_len);
    let mut tos = route.tos;
    if tos == TOS_INHERIT {
        tos = ip.tos;
    }
    // ip_tunnel_ecn_encap(): the inner ECN bits, a congestion mark as ECT(0).
    let ecn = match ip.tos & ECN_MASK {
        ECN_CE => ECN_ECT_0,
        ecn => ecn,
    };
    tos = (tos & !ECN_MASK) | ecn;
    let ttl = match route.ttl {
        TTL_INHERIT => ip.ttl - 1,
        ttl => ttl,
    };
    let inner_df = u16::from_be_bytes(ip.frags) & IP_DF;
    let df = match route.df {
        DF_SET => IP_DF,
        DF_INHERIT => inner_df,
        _ => 0,
    };
    // udp_flow_src_port(): the skb's flow hash, scaled into the range.
    let hash = unsafe { bpf_get_hash_recalc(ctx.skb.skb) };
    let hash = hash ^ (hash << 16);
    let src_port = route.port_min + ((u64::from(hash) * u64::from(route.port_span)) >> 32) as u16;

    let mut macs = [0u8; 12];
    macs[..6].copy_from_slice(&route.outer_dst_mac);
    macs[6..].copy_from_slice(&route.outer_src_mac);
    // Outer IPv4, UDP and VXLAN headers and the inner Ethernet header: as
    // many bytes as the outer Ethernet, IPv4, UDP and VXLAN headers.
    let outer_len = (ip_len + OUTER_LEN as u16).to_be_bytes();
    let df = df.to_be_bytes();
    let src = route.outer_src.to_ne_bytes();
    let dst = route.outer_dst.to_ne_bytes();
    let ip_header = [
        0x45,
        tos,
        outer_len[0],
        outer_len[1],
        0,
        0,
        df[0],
        df[1],
        ttl,
        IPPROTO_UDP,
        0,
        0,
        src[0],
        src[1],
        src[2],
        src[3],
        dst[0],
        dst[1],
        dst[2],
        dst[3],
    ];
    let udp_len = (ip_len + (OUTER_LEN - Ipv4Hdr::LEN) as u16).to_be_bytes();
    let src_port = src_port.to_be_bytes();
    let dst_port = route.dst_port.to_be_bytes();
    let udp = [
        src_port[0],
        src_port[1],
        dst_port[0],
        dst_port[1],
        udp_len[0],
        udp_len[1],
        0,
        0,
    ];
    let vni = route.vni.to_be_bytes();
    let vxlan = [VXLAN_I_FLAG, 0, 0, 0, vni[1], vni[2], vni[3], 0];
    let mut inner_eth = [0u8; EthHdr::LEN];
    inner_eth[..6].copy_from_slice(&route.inner_dst_mac);
    inner_eth[6..12].copy_from_slice(&route.inner_src_mac);
    inner_eth[12..].copy_from_slice(&ETH_P_IP.to_be_bytes());
    let headers = Headers {
        ip: ip_header,
        udp,
        vxlan,
        inner_eth,
    };
    (macs, headers)
}

/// The outer UDP checksum as `udp_set_csum()` leaves it on the wire: over
/// the pseudo-header, the UDP, VXLAN and inner Ethernet headers, the inner
/// IPv4 header (which, checksum included, sums to zero) and the inner
/// transport segment (`l4_sum`). Zero is sent as all ones.
#[inline(always)]
fn udp_checksum(outer: &Headers, route: &EgressRoute, l4_sum: u32) -> u16 {
    let udp_len = u16::from_be_bytes([outer.udp[4], outer.udp[5]]);
    let sum = ipv4::sum(&route.outer_src.to_ne_bytes())
        + ipv4::sum(&route.outer_dst.to_ne_bytes())
        + u32::from(IPPROTO_UDP)
        + u32::from(udp_len)
        + ipv4::sum(&outer.udp)
        + ipv4::sum(&outer.vxlan)
        + ipv4::sum(&outer.inner_eth)
        + l4_sum;
    match !ipv4::fold(sum) {
        0 => 0xffff,
        check => check,
    }
}
