//! The rules a packet must meet to take the fast path, and the rewrite of
//! the decapsulated frame; shared by both hooks. A packet is taken only when
//! the kernel would deliver it, unchanged but for the rewrite, to a pod on
//! this node: whatever the rules do not positively recognise is left to the
//! kernel, and the first rule broken names the counter.

use netprobe_common::fastpath::{Counter, OUTER_LEN, PodEntry};
use netprobe_ebpf::packet::{ETH_P_IP, IPPROTO_UDP, PacketReader, PacketWriter};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, udp::UdpHdr, vxlan::VxlanHdr};

use crate::{
    config::config,
    ipv4::{self, Fault},
    maps::{FP_LOCALS, FP_PODS, FP_REMOTES},
};

/// The first VXLAN word with only the I flag (VNI present): the kernel drops
/// packets with any other flag or reserved bit set.
const VXLAN_I_FLAG_ONLY: [u8; 4] = [0x08, 0, 0, 0];
/// Where the TTL, protocol and header checksum of the inner IPv4 header are
/// in the decapsulated frame.
const INNER_TTL: usize = EthHdr::LEN + 8;

/// The VXLAN header and the inner Ethernet and IPv4 headers, read at once.
#[repr(C)]
#[derive(Clone, Copy)]
struct Encapsulated {
    vxlan: VxlanHdr,
    eth: EthHdr,
    ip: Ipv4Hdr,
}

/// A packet the fast path takes.
pub struct Target {
    pub pod: PodEntry,
    /// Its inner TTL, protocol and checksum bytes once forwarded.
    forwarded: [u8; 4],
}

/// Checks every rule on a frame of `len` bytes. `segmented` packets (GSO)
/// are exempt from the MTU rule: the pod's stack takes them whole.
#[inline(always)]
pub fn check<R: PacketReader>(packet: &R, len: usize, segmented: bool) -> Result<Target, Counter> {
    let eth: EthHdr = packet.read(0).ok_or(Counter::Truncated)?;
    if u16::from_be(eth.ether_type) != ETH_P_IP {
        return Err(Counter::NotVxlan);
    }
    let ip: Ipv4Hdr = packet.read(EthHdr::LEN).ok_or(Counter::Truncated)?;
    if ip.vihl >> 4 != 4 {
        return Err(Counter::Malformed);
    }
    if ip.proto != IPPROTO_UDP {
        return Err(Counter::NotVxlan);
    }
    check_ipv4_header(&ip)?;
    let udp: UdpHdr = packet
        .read(EthHdr::LEN + Ipv4Hdr::LEN)
        .ok_or(Counter::Truncated)?;
    if u16::from_be_bytes(udp.dst) != config!(port) {
        return Err(Counter::NotVxlan);
    }
    if eth.dst_addr != config!(nic_mac)
        || !FP_LOCALS
            .get(0)
            .is_some_and(|locals| locals.contains(address(ip.dst_addr)))
    {
        return Err(Counter::NotLocal);
    }
    if FP_REMOTES.get_ptr(address(ip.src_addr)).is_none() {
        return Err(Counter::UnknownRemote);
    }
    let ip_len = usize::from(u16::from_be_bytes(ip.tot_len));
    let udp_len = usize::from(u16::from_be_bytes(udp.len));
    if ip_len + EthHdr::LEN != len || udp_len + Ipv4Hdr::LEN != ip_len {
        return Err(Counter::Malformed);
    }

    let inner: Encapsulated = packet
        .read(EthHdr::LEN + Ipv4Hdr::LEN + UdpHdr::LEN)
        .ok_or(Counter::Truncated)?;
    let vxlan = inner.vxlan;
    if [
        vxlan.flags,
        vxlan._reserved1[0],
        vxlan._reserved1[1],
        vxlan._reserved1[2],
    ] != VXLAN_I_FLAG_ONLY
        || vxlan._reserved2 != 0
    {
        return Err(Counter::VxlanFlags);
    }
    let vni = u32::from_be_bytes([0, vxlan.vni[0], vxlan.vni[1], vxlan.vni[2]]);
    if vni != config!(vni) {
        return Err(Counter::OtherVni);
    }
    if inner.eth.dst_addr != config!(vtep_mac) || u16::from_be(inner.eth.ether_type) != ETH_P_IP {
        return Err(Counter::InnerOther);
    }
    if inner.ip.vihl >> 4 != 4 {
        return Err(Counter::Malformed);
    }
    check_ipv4_header(&inner.ip)?;
    if usize::from(u16::from_be_bytes(inner.ip.tot_len)) + OUTER_LEN + EthHdr::LEN != len {
        return Err(Counter::Malformed);
    }
    if inner.ip.ttl <= 1 {
        return Err(Counter::TtlExpired);
    }
    let pod = *unsafe { FP_PODS.get(address(inner.ip.dst_addr)) }.ok_or(Counter::UnknownPod)?;
    if !segmented && len - OUTER_LEN > usize::from(pod.mtu) + EthHdr::LEN {
        return Err(Counter::TooBig);
    }
    Ok(Target {
        pod,
        forwarded: ipv4::forwarded(&inner.ip),
    })
}

/// Header length, checksum and fragmentation, for the outer and the inner
/// header alike: the kernel drops a header whose checksum is wrong.
#[inline(always)]
fn check_ipv4_header(ip: &Ipv4Hdr) -> Result<(), Counter> {
    match ipv4::header_fault(ip) {
        None => Ok(()),
        Some(Fault::Malformed) => Err(Counter::Malformed),
        Some(Fault::Options) => Err(Counter::IpOptions),
        Some(Fault::Fragment) => Err(Counter::Fragment),
    }
}

#[inline(always)]
pub fn address(octets: [u8; 4]) -> u32 {
    u32::from_ne_bytes(octets)
}

/// Gives the decapsulated frame at the start of `packet` what the kernel's
/// path would: the bridge's Ethernet header towards the pod, and the TTL
/// decrement of forwarding.
#[inline(always)]
pub fn rewrite<W: PacketWriter>(packet: &W, target: &Target) -> Option<()> {
    let mut macs = [0u8; 12];
    macs[..6].copy_from_slice(&target.pod.pod_mac);
    macs[6..].copy_from_slice(&target.pod.bridge_mac);
    packet.write(0, macs)?;
    packet.write(INNER_TTL, target.forwarded)
}
