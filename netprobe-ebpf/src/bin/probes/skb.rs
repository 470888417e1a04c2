//! Reading the kernel's `struct sk_buff` from tracepoints, at offsets taken
//! from the running kernel's BTF (see `KernelOffsets`).

use netprobe_common::probe::{Point, PointKey};
use netprobe_ebpf::{
    packet::{Packet, Start, parse},
    reader::{KernelReader, read_kernel},
};

use crate::{config::config, flight::lookup_point};

pub struct SkBuff(pub *const u8);

impl SkBuff {
    /// The watched point of the skb's current device for `hook`, if any.
    #[inline(always)]
    pub fn point(&self, hook: u32) -> Option<Point> {
        let dev: *const u8 = read_kernel(self.0, config!(offsets.sk_buff_dev) as usize)?;
        device_point(dev, hook)
    }

    /// The packet when `skb->data` is at the Ethernet header (transmit path).
    #[inline(always)]
    pub fn packet_at_mac(&self) -> Option<Packet> {
        parse(&KernelReader(self.data()?), 0, Start::Ethernet, &config!(filter))
    }

    /// The packet when `skb->data` is at the network header (receive path,
    /// after `eth_type_trans`).
    #[inline(always)]
    pub fn packet_at_network(&self) -> Option<Packet> {
        let start = Start::Network(self.protocol()?);
        parse(&KernelReader(self.data()?), 0, start, &config!(filter))
    }

    /// The packet through `skb->network_header`, for skbs whose data pointer
    /// has moved past the headers (socket receive queue).
    #[inline(always)]
    pub fn packet_by_network_header(&self) -> Option<Packet> {
        let head: *const u8 = read_kernel(self.0, config!(offsets.sk_buff_head) as usize)?;
        let network: u16 = read_kernel(self.0, config!(offsets.sk_buff_network_header) as usize)?;
        let start = Start::Network(self.protocol()?);
        parse(&KernelReader(head), usize::from(network), start, &config!(filter))
    }

    #[inline(always)]
    fn data(&self) -> Option<*const u8> {
        read_kernel(self.0, config!(offsets.sk_buff_data) as usize)
    }

    /// EtherType of the packet, host order.
    #[inline(always)]
    fn protocol(&self) -> Option<u16> {
        let protocol: u16 = read_kernel(self.0, config!(offsets.sk_buff_protocol) as usize)?;
        Some(u16::from_be(protocol))
    }
}

/// Looks up a `struct net_device *` by its (netns, ifindex) identity.
#[inline(always)]
pub fn device_point(dev: *const u8, hook: u32) -> Option<Point> {
    let ifindex: u32 = read_kernel(dev, config!(offsets.net_device_ifindex) as usize)?;
    let net: *const u8 = read_kernel(dev, config!(offsets.net_device_nd_net) as usize)?;
    let netns = netns_inum(net)?;
    lookup_point(&PointKey {
        netns,
        ifindex,
        hook,
    })
}

/// Inode number of a `struct net *`, as `ls -i /proc/PID/ns/net` shows it.
#[inline(always)]
pub fn netns_inum(net: *const u8) -> Option<u32> {
    read_kernel(net, config!(offsets.net_ns_inum) as usize)
}
