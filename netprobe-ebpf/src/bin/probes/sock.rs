//! Reading the kernel's `struct sock` from BTF tracepoints.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::bpf_skc_to_tcp_sock;
use netprobe_common::probe::{IPPROTO_TCP, socket_id};

use crate::{
    config::config,
    flight::watched,
    skb::{field, netns_inum},
};

/// A socket in a namespace whose sockets the probes watch.
pub struct Socket {
    sock: *const u8,
    netns: u32,
}

impl Socket {
    /// `None` for a socket of any other namespace (or a null one): the
    /// early exit of the socket hooks, which fire for every socket of the
    /// machine.
    #[inline(always)]
    pub fn watched(sock: *const u8) -> Option<Self> {
        if sock.is_null() {
            return None;
        }
        let net: *const u8 = field(sock, config!(offsets.sock_common_skc_net));
        let netns = netns_inum(net);
        watched(netns).then_some(Self { sock, netns })
    }

    /// The socket's identity (see `socket_id`).
    #[inline(always)]
    pub fn id(&self) -> u64 {
        let addresses: u64 = field(self.sock, config!(offsets.sock_common_skc_addrpair));
        let ports: u32 = field(self.sock, config!(offsets.sock_common_skc_portpair));
        socket_id(addresses, ports, self.netns)
    }

    #[inline(always)]
    pub fn is_tcp(&self) -> bool {
        let protocol: u16 = field(self.sock, config!(offsets.sock_sk_protocol));
        protocol == u16::from(IPPROTO_TCP)
    }

    /// For a TCP socket, the sequence number its next write starts at and
    /// the acknowledgement number its segments carry now: the two numbers
    /// that pick the segment the write will go out in.
    #[inline(always)]
    pub fn tcp_numbers(&self) -> Option<(u32, u32)> {
        // tcp_sock extends the `struct sock` the tracepoint declares; the
        // helper gives a pointer the verifier lets plain loads reach it by.
        let tcp = unsafe { bpf_skc_to_tcp_sock(self.sock.cast_mut().cast::<c_void>()) };
        if tcp.is_null() {
            return None;
        }
        let tcp = tcp.cast::<u8>().cast_const();
        Some((
            field(tcp, config!(offsets.tcp_sock_write_seq)),
            field(tcp, config!(offsets.tcp_sock_rcv_nxt)),
        ))
    }
}
