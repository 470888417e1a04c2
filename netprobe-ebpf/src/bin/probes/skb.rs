//! Reading the kernel's `struct sk_buff` and `struct net_device` from BTF
//! tracepoints. Fields are read with plain loads at offsets from the running
//! kernel's BTF (see `KernelOffsets`): the verifier checks each against the
//! BTF type of the tracepoint argument and turns it into a fault-safe load,
//! far cheaper than a `bpf_probe_read_kernel` call per field.

use netprobe_ebpf::{
    packet::{Packet, Start, parse},
    reader::{CopiedHeaders, Scratch},
};

use crate::config::{config, filter};

/// Loads the field at `offset` of a BTF-typed kernel object. Safe here: the
/// verifier checks the access against the kernel's BTF and the JIT makes a
/// load through a bad pointer return zero instead of faulting.
#[inline(always)]
pub fn field<T: Copy>(object: *const u8, offset: u32) -> T {
    unsafe { object.add(offset as usize).cast::<T>().read() }
}

pub struct SkBuff(pub *const u8);

impl SkBuff {
    /// The socket the skb belongs to.
    #[inline(always)]
    pub fn sock(&self) -> *const u8 {
        field(self.0, config!(offsets.sk_buff_sk))
    }

    /// The packet when `skb->data` is at the Ethernet header (transmit
    /// path), with the copy of its headers it was read from.
    #[inline(always)]
    pub fn packet_at_mac(&self) -> Option<(Packet, CopiedHeaders)> {
        let headers = CopiedHeaders::from_kernel(self.data(), Scratch::Softirq)?;
        let packet = parse(&headers, 0, Start::Ethernet, &filter())?;
        Some((packet, headers))
    }

    /// The sequence and acknowledgement numbers of a TCP segment on a TCP
    /// socket's queue, from `TCP_SKB_CB(skb)`: enough to know whether the
    /// segment is followed without copying its headers. A segment the
    /// socket coalesced into the one before it leaves the latest
    /// acknowledgement number here, as its headers do not; in a request
    /// and response both are the same.
    #[inline(always)]
    pub fn tcp_numbers(&self) -> (u32, u32) {
        let cb = config!(offsets.sk_buff_cb);
        (
            field(self.0, cb + config!(offsets.tcp_skb_cb_seq)),
            field(self.0, cb + config!(offsets.tcp_skb_cb_ack_seq)),
        )
    }

    /// The packet through `skb->network_header`, for skbs whose data pointer
    /// has moved past the headers (socket receive queue), with the copy of
    /// its headers it was read from. Runs in process context.
    #[inline(always)]
    pub fn packet_by_network_header(&self) -> Option<(Packet, CopiedHeaders)> {
        let head: *const u8 = field(self.0, config!(offsets.sk_buff_head));
        let network: u16 = field(self.0, config!(offsets.sk_buff_network_header));
        let headers =
            CopiedHeaders::from_kernel(head.wrapping_add(usize::from(network)), Scratch::Process)?;
        let packet = parse(&headers, 0, Start::Network(self.protocol()), &filter())?;
        Some((packet, headers))
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

/// Whether a `struct net_device *` is the NIC, by its (netns, ifindex)
/// identity: ifindex values repeat across namespaces.
#[inline(always)]
pub fn is_nic(dev: *const u8) -> bool {
    if dev.is_null() {
        return false;
    }
    let ifindex: u32 = field(dev, config!(offsets.net_device_ifindex));
    if ifindex != config!(nic_ifindex) {
        return false;
    }
    let net: *const u8 = field(dev, config!(offsets.net_device_nd_net));
    netns_inum(net) == config!(nic_netns)
}

/// Inode number of a `struct net *`, as `ls -i /proc/PID/ns/net` shows it.
#[inline(always)]
pub fn netns_inum(net: *const u8) -> u32 {
    field(net, config!(offsets.net_ns_inum))
}
