//! Reading the kernel's `struct sk_buff` and `struct net_device` from BTF
//! tracepoints. Fields are read with plain loads at offsets from the running
//! kernel's BTF (see `KernelOffsets`): the verifier checks each against the
//! BTF type of the tracepoint argument and turns it into a fault-safe load,
//! far cheaper than a `bpf_probe_read_kernel` call per field.

use netprobe_common::probe::{Point, PointKey};
use netprobe_ebpf::{
    packet::{Packet, Start, parse},
    reader::{KernelHeaders, Scratch},
};

use crate::{config::config, flight::lookup_point};

/// Loads the field at `offset` of a BTF-typed kernel object. Safe here: the
/// verifier checks the access against the kernel's BTF and the JIT makes a
/// load through a bad pointer return zero instead of faulting.
#[inline(always)]
pub fn field<T: Copy>(object: *const u8, offset: u32) -> T {
    unsafe { object.add(offset as usize).cast::<T>().read() }
}

pub struct SkBuff(pub *const u8);

impl SkBuff {
    /// The watched point of the skb's current device for `hook`, if any.
    #[inline(always)]
    pub fn point(&self, hook: u32) -> Option<Point> {
        device_point(field(self.0, config!(offsets.sk_buff_dev)), hook)
    }

    /// The socket the skb belongs to.
    #[inline(always)]
    pub fn sock(&self) -> *const u8 {
        field(self.0, config!(offsets.sk_buff_sk))
    }

    /// The packet when `skb->data` is at the Ethernet header (transmit path).
    #[inline(always)]
    pub fn packet_at_mac(&self) -> Option<Packet> {
        let headers = KernelHeaders::copy(self.data(), Scratch::Softirq)?;
        parse(&headers, 0, Start::Ethernet, &config!(filter))
    }

    /// The packet when `skb->data` is at the network header (receive path,
    /// after `eth_type_trans`).
    #[inline(always)]
    pub fn packet_at_network(&self) -> Option<Packet> {
        let headers = KernelHeaders::copy(self.data(), Scratch::Softirq)?;
        parse(
            &headers,
            0,
            Start::Network(self.protocol()),
            &config!(filter),
        )
    }

    /// The packet through `skb->network_header`, for skbs whose data pointer
    /// has moved past the headers (socket receive queue). Runs in process
    /// context.
    #[inline(always)]
    pub fn packet_by_network_header(&self) -> Option<Packet> {
        let head: *const u8 = field(self.0, config!(offsets.sk_buff_head));
        let network: u16 = field(self.0, config!(offsets.sk_buff_network_header));
        let headers =
            KernelHeaders::copy(head.wrapping_add(usize::from(network)), Scratch::Process)?;
        parse(
            &headers,
            0,
            Start::Network(self.protocol()),
            &config!(filter),
        )
    }

    #[inline(always)]
    fn data(&self) -> *const u8 {
        field(self.0, config!(offsets.sk_buff_data))
    }

    /// EtherType of the packet, host order.
    #[inline(always)]
    fn protocol(&self) -> u16 {
        u16::from_be(field(self.0, config!(offsets.sk_buff_protocol)))
    }
}

/// Looks up a `struct net_device *` by its (netns, ifindex) identity.
#[inline(always)]
pub fn device_point(dev: *const u8, hook: u32) -> Option<Point> {
    if dev.is_null() {
        return None;
    }
    let ifindex: u32 = field(dev, config!(offsets.net_device_ifindex));
    let net: *const u8 = field(dev, config!(offsets.net_device_nd_net));
    lookup_point(&PointKey {
        netns: netns_inum(net),
        ifindex,
        hook,
    })
}

/// Inode number of a `struct net *`, as `ls -i /proc/PID/ns/net` shows it.
#[inline(always)]
pub fn netns_inum(net: *const u8) -> u32 {
    field(net, config!(offsets.net_ns_inum))
}
