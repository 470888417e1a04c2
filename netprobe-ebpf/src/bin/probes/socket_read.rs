//! `skb:skb_copy_datagram_iovec`: the application copies a packet's payload
//! out of the socket. The last ingress hop; and, for a request that came all
//! the way, the start of the application's time on that socket.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use netprobe_common::probe::{DIRECTION_INGRESS, Point, SocketRead};

use crate::{
    config::{config, hooks_only},
    flight::{Unjoined, followed, now, observe, pod_of},
    maps::SOCKET_READS,
    skb::SkBuff,
    sock::Socket,
};

#[btf_tracepoint(function = "skb_copy_datagram_iovec")]
pub fn np_sock_read(ctx: BtfTracePointContext) -> i32 {
    if hooks_only() || config!(socket_read) == 0 {
        return 0;
    }
    let skb = SkBuff(ctx.arg(0));
    // Reads in namespaces off the path are dismissed before any parsing.
    let Some(socket) = Socket::watched(skb.sock()) else {
        return 0;
    };
    // A TCP segment not followed is dismissed by its two numbers, before
    // its headers are copied.
    if socket.is_tcp() {
        let (seq, ack) = skb.tcp_numbers();
        if !config!(follow).picks_tcp(seq, ack) {
            return 0;
        }
    }
    let now = now();
    let Some((packet, headers)) = skb.packet_by_network_header() else {
        return 0;
    };
    if !followed(&packet) {
        return 0;
    }
    let hops = config!(hops)[DIRECTION_INGRESS as usize];
    let point = Point {
        direction: DIRECTION_INGRESS,
        hop: hops.saturating_sub(1),
    };
    let pod = || pod_of(&headers, &packet, DIRECTION_INGRESS);
    if observe(point, &packet, now, Unjoined::Ignore, pod) {
        let socket = socket.id();
        if let Some(read) = SOCKET_READS.get_ptr_mut(SocketRead::slot(socket)) {
            unsafe { *read = SocketRead { socket, ns: now } };
        }
    }
    0
}
