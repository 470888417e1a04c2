//! `skb:skb_copy_datagram_iovec`: the application copies a packet's payload
//! out of the socket. The last ingress hop.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use netprobe_common::probe::{DIRECTION_INGRESS, Point};

use crate::{
    config::config,
    flight::{Unjoined, now, observe},
    skb::SkBuff,
};

#[btf_tracepoint(function = "skb_copy_datagram_iovec")]
pub fn np_sock_read(ctx: BtfTracePointContext) -> i32 {
    let now = now();
    if config!(socket_read) == 0 {
        return 0;
    }
    let hops = config!(hops)[DIRECTION_INGRESS as usize];
    if let Some(packet) = SkBuff(ctx.arg(0)).packet_by_network_header() {
        let point = Point {
            direction: DIRECTION_INGRESS,
            hop: hops.saturating_sub(1),
        };
        observe(point, &packet, now, Unjoined::Ignore);
    }
    0
}
