//! The kernel hooks netprobe observes packets at, each defined once: where
//! its program attaches, which program runs there, and which boundary of a
//! packet's way it marks. The path (`path.rs`) places hooks on devices; the
//! probe session loads and attaches whatever the path uses from these
//! definitions alone.

use serde::Serialize;

/// A kernel hook netprobe observes packets at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// XDP on the NIC: the driver hands over a received frame.
    Xdp,
    /// tcx ingress on the NIC, first in the chain.
    TcIngress,
    /// tcx egress on the NIC, first in the chain.
    TcEgress,
    /// tcx ingress on a device further along, first in the chain: where
    /// `net:netif_receive_skb` fires, a device handing a packet to the stack.
    DeviceIngress,
    /// tcx egress on a device further along, last in the chain: where
    /// `net:net_dev_queue` fires, the stack queueing a packet on a device
    /// once the device's own egress programs are done with it.
    DeviceEgress,
    /// `net:net_dev_start_xmit` on the NIC: the driver takes the packet.
    /// No device hook is there, and the tracepoint fires for every packet
    /// every device of the machine sends (ten a request in the lab's
    /// flannel-vxlan, against one on the NIC): about 1.3% of its throughput
    /// for the dismissals alone, at any follow rate. Observed only when
    /// asked for (`attach --qdisc`).
    NetDevStartXmit,
    /// `skb:skb_copy_datagram_iovec`: the application reads the payload.
    SocketRead,
    /// `tcp:tcp_sendmsg_locked`: the application hands data to TCP.
    SocketWrite,
}

/// Where a hook's program attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attachment {
    /// The NIC's XDP hook.
    Xdp,
    /// tcx on every device of the hop, at one end of the device's chain.
    Tcx { side: TcxSide, end: ChainEnd },
    /// A kernel tracepoint, through BTF. It fires for every device or
    /// socket of the machine; the program dismisses the others.
    Tracepoint(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcxSide {
    Ingress,
    Egress,
}

/// Which end of a device's tcx chain a probe takes: the end that puts the
/// sighting where the hook's boundary is. A probe always lets the chain go
/// on, so its place never changes what the other programs do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainEnd {
    First,
    Last,
}

/// The program that implements a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// The same program wherever the hook is on the path.
    Named(&'static str),
    /// The device program of the hop's place on the path ([`HOP_PROGRAMS`]).
    OfHop,
}

/// Everything about a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookDefinition {
    pub attachment: Attachment,
    pub program: Program,
    /// The hook as reports and the path listing name it.
    pub name: &'static str,
    /// Observed only when asked for (`attach --qdisc`): what it costs,
    /// whatever the follow rate, is more than it usually tells.
    pub on_request: bool,
}

/// The device programs of the probes object, one per direction and place
/// on the path: `HOP_PROGRAMS[direction][hop]`. Attached only to that hop's
/// devices, each knows its hop from its name, with no lookup.
pub const HOP_PROGRAMS: [[&str; netprobe_common::probe::MAX_HOPS]; 2] = [
    [
        "np_in_0", "np_in_1", "np_in_2", "np_in_3", "np_in_4", "np_in_5", "np_in_6", "np_in_7",
    ],
    [
        "np_out_0", "np_out_1", "np_out_2", "np_out_3", "np_out_4", "np_out_5", "np_out_6",
        "np_out_7",
    ],
];

impl Hook {
    pub const ALL: [Hook; 8] = [
        Hook::Xdp,
        Hook::TcIngress,
        Hook::TcEgress,
        Hook::DeviceIngress,
        Hook::DeviceEgress,
        Hook::NetDevStartXmit,
        Hook::SocketRead,
        Hook::SocketWrite,
    ];

    /// The one definition of the hook.
    pub const fn definition(self) -> HookDefinition {
        use Attachment::Tracepoint;
        let (attachment, program, name) = match self {
            Hook::Xdp => (Attachment::Xdp, Program::Named("np_xdp"), "XDP"),
            Hook::TcIngress => (
                tcx(TcxSide::Ingress, ChainEnd::First),
                Program::OfHop,
                "TC ingress",
            ),
            Hook::TcEgress => (
                tcx(TcxSide::Egress, ChainEnd::First),
                Program::OfHop,
                "TC egress",
            ),
            Hook::DeviceIngress => (
                tcx(TcxSide::Ingress, ChainEnd::First),
                Program::OfHop,
                "tcx ingress",
            ),
            Hook::DeviceEgress => (
                tcx(TcxSide::Egress, ChainEnd::Last),
                Program::OfHop,
                "tcx egress",
            ),
            Hook::NetDevStartXmit => (
                Tracepoint("net_dev_start_xmit"),
                Program::Named("np_dev_xmit"),
                "net_dev_start_xmit",
            ),
            Hook::SocketRead => (
                Tracepoint("skb_copy_datagram_iovec"),
                Program::Named("np_sock_read"),
                "skb_copy_datagram_iovec",
            ),
            Hook::SocketWrite => (
                Tracepoint("tcp_sendmsg_locked"),
                Program::Named("np_sock_write"),
                "tcp_sendmsg_locked",
            ),
        };
        HookDefinition {
            attachment,
            program,
            name,
            on_request: matches!(self, Hook::NetDevStartXmit),
        }
    }

    pub fn describe(self) -> &'static str {
        self.definition().name
    }

    /// The program that observes this hook at `hop` of the direction
    /// whose code is `direction` (`DIRECTION_INGRESS`, `DIRECTION_EGRESS`).
    pub fn program(self, direction: u32, hop: usize) -> &'static str {
        match self.definition().program {
            Program::Named(name) => name,
            Program::OfHop => HOP_PROGRAMS[direction as usize][hop],
        }
    }

    /// The kernel tracepoint the hook attaches to, if it is one.
    pub fn tracepoint(self) -> Option<&'static str> {
        match self.definition().attachment {
            Attachment::Tracepoint(name) => Some(name),
            _ => None,
        }
    }
}

const fn tcx(side: TcxSide, end: ChainEnd) -> Attachment {
    Attachment::Tcx { side, end }
}
