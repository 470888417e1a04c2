//! IPv4 header checks and checksum arithmetic both directions share: what
//! the kernel drops or treats apart, and the forwarding TTL decrement.

use netprobe_ebpf::packet::{IPV4_FRAGMENT_OFFSET, IPV4_MORE_FRAGMENTS};
use network_types::ip::Ipv4Hdr;

/// Why a 20-byte IPv4 header is not one the fast path takes.
pub enum Fault {
    /// Header length under 20 bytes, or a wrong checksum (the kernel drops
    /// both).
    Malformed,
    /// Options follow the header.
    Options,
    /// A fragment.
    Fragment,
}

/// Header length, checksum and fragmentation of a header whose version is
/// 4.
#[inline(always)]
pub fn header_fault(ip: &Ipv4Hdr) -> Option<Fault> {
    match ip.vihl & 0x0f {
        5 => {}
        0..5 => return Some(Fault::Malformed),
        _ => return Some(Fault::Options),
    }
    if fold(sum(ip)) != 0xffff {
        return Some(Fault::Malformed);
    }
    if u16::from_be_bytes(ip.frags) & (IPV4_MORE_FRAGMENTS | IPV4_FRAGMENT_OFFSET) != 0 {
        return Some(Fault::Fragment);
    }
    None
}

/// The 16-bit words of `bytes` (an even number of them) added up, read in
/// network order.
#[inline(always)]
pub fn sum<T: Copy>(bytes: &T) -> u32 {
    let bytes = bytes as *const T as *const [u8; 2];
    let mut sum = 0u32;
    for index in 0..core::mem::size_of::<T>() / 2 {
        sum += u32::from(u16::from_be_bytes(unsafe {
            bytes.add(index).read_unaligned()
        }));
    }
    sum
}

/// A sum of 16-bit words folded into 16 bits, carries wrapped around: the
/// one's complement sum.
#[inline(always)]
pub fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The TTL, protocol and checksum bytes of a forwarded header, exactly as
/// `ip_decrease_ttl()` computes them: the TTL is the high byte of its
/// 16-bit word, so the checksum grows by htons(0x0100), carry wrapped
/// around (a sum reaching 0xffff wraps to 0, as the kernel's does).
#[inline(always)]
pub fn forwarded(ip: &Ipv4Hdr) -> [u8; 4] {
    let check = u32::from(u16::from_ne_bytes(ip.check)) + u32::from(0x0100u16.to_be());
    let check = ((check + u32::from(check >= 0xffff)) as u16).to_ne_bytes();
    [ip.ttl - 1, ip.proto, check[0], check[1]]
}
