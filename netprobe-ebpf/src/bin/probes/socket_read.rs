//! `skb:skb_copy_datagram_iovec`: the application copies a packet's payload
//! out of the socket. The last ingress hop; and, for a request that came all
//! the way, the start of the application's time on that socket.

use aya_ebpf::{bindings::BPF_ANY, macros::btf_tracepoint, programs::BtfTracePointContext};
use netprobe_common::probe::{DIRECTION_INGRESS, Point};

use crate::{
    config::config,
    flight::{Unjoined, now, observe},
    maps::SOCKET_READS,
    skb::SkBuff,
};

#[btf_tracepoint(function = "skb_copy_datagram_iovec")]
pub fn np_sock_read(ctx: BtfTracePointContext) -> i32 {
    let now = now();
    if config!(socket_read) == 0 {
        return 0;
    }
    let hops = config!(hops)[DIRECTION_INGRESS as usize];
    let skb = SkBuff(ctx.arg(0));
    if let Some(packet) = skb.packet_by_network_header() {
        let point = Point {
            direction: DIRECTION_INGRESS,
            hop: hops.saturating_sub(1),
        };
        if observe(point, &packet, now, Unjoined::Ignore) {
            // A full LRU forgets the oldest socket: one application sample lost.
            let _ = SOCKET_READS.insert(skb.sock() as u64, now, u64::from(BPF_ANY));
        }
    }
    0
}
