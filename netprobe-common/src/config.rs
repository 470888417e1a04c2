//! Load-time settings of the probes, written into the object's `.rodata`
//! with `EbpfLoader::override_global` before the programs are verified.

use crate::{
    probe::{MAX_HOPS, OneIn},
    shared_type,
};

/// Offsets of the kernel struct fields the tracepoint programs read, resolved
/// from the running kernel's BTF (`/sys/kernel/btf/vmlinux`): the probes
/// cannot use CO-RE, and layouts change between kernel builds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub sk_buff_head: u32,
    pub sk_buff_data: u32,
    pub sk_buff_protocol: u32,
    pub sk_buff_network_header: u32,
    pub sk_buff_sk: u32,
    /// `skb->cb`, which holds `struct tcp_skb_cb` on a TCP socket's queue.
    pub sk_buff_cb: u32,
    pub tcp_skb_cb_seq: u32,
    pub tcp_skb_cb_ack_seq: u32,
    pub net_device_ifindex: u32,
    pub net_device_nd_net: u32,
    /// `struct net` to its namespace inode number (`ns.inum`).
    pub net_ns_inum: u32,
    pub sock_common_skc_net: u32,
    /// Both addresses (`skc_daddr`, `skc_rcv_saddr`) as one u64.
    pub sock_common_skc_addrpair: u32,
    /// Both ports (`skc_dport`, `skc_num`) as one u32.
    pub sock_common_skc_portpair: u32,
    pub sock_sk_protocol: u32,
    pub tcp_sock_write_seq: u32,
    pub tcp_sock_rcv_nxt: u32,
}
shared_type!(KernelOffsets, 68);

/// Flow selection of `--filter`. Zero fields match anything.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowFilter {
    /// IP protocol number, 0 for any.
    pub protocol: u8,
    /// 4 or 6 when `addr` is set, else 0.
    pub family: u8,
    /// Port in host byte order, 0 for any.
    pub port: u16,
    /// [`MATCH_SRC`] and/or [`MATCH_DST`] for the port.
    pub port_sides: u8,
    /// [`MATCH_SRC`] and/or [`MATCH_DST`] for the address.
    pub addr_sides: u8,
    pub _pad: u16,
    /// IPv4 addresses use the first four bytes.
    pub addr: [u8; 16],
}
shared_type!(FlowFilter, 24);

pub const MATCH_SRC: u8 = 1;
pub const MATCH_DST: u8 = 2;

/// VXLAN UDP ports recognised when looking for the inner packet: Linux and
/// flannel's 8472 and the IANA port 4789.
pub const VXLAN_PORTS: [u16; 2] = [8472, 4789];

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeConfig {
    pub offsets: KernelOffsets,
    pub filter: FlowFilter,
    /// The NIC, by its namespace's inode and its ifindex: the one device
    /// whose `net_dev_start_xmit` the probes watch. Every other hop's
    /// program is attached to its devices and knows its place on the path
    /// from its name.
    pub nic_netns: u32,
    pub nic_ifindex: u32,
    /// Hops on each path, socket included; the last one completes a flight.
    pub hops: [u32; 2],
    /// Hop at which a flight starts in each direction. On egress it is the
    /// first device: hop 0 is the socket write, joined through the TCP
    /// sequence number.
    pub start_hop: [u32; 2],
    /// 1 when the last ingress hop is the socket read, else 0.
    pub socket_read: u32,
    /// 1 when hop 0 of egress is the socket write, else 0.
    pub socket_write: u32,
    /// log2 of the flight table's slots; the table is created this big.
    pub flight_slot_bits: u32,
    /// The packets followed from hop to hop: every hop of every node picks
    /// the same ones by a hash of their fingerprint, and leaves any other
    /// right after reading its headers.
    pub follow: OneIn,
    /// The complete flights sent to userspace (`--sample`), among those
    /// followed.
    pub sample: OneIn,
    /// Per direction, a bit per hop that belongs to one pod (its bridge
    /// port, its own device, its socket): there a followed packet's pod is
    /// looked up by its pod-side address, and the segments with such a hop
    /// at either end are counted per pod. 0 counts everything over all pods.
    pub pod_hops: [u32; 2],
    /// 1 when every program returns at once: the hooks' own cost, without
    /// any of the probes' work (`lab overhead`).
    pub hooks_only: u32,
    pub _pad: u32,
}
shared_type!(ProbeConfig, 68 + 24 + 8 + 8 + 8 + 8 + 4 + 16 + 16 + 8 + 8);

const _: () = assert!(MAX_HOPS <= u8::MAX as usize);
