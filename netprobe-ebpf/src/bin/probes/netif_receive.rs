//! `net:netif_receive_skb`: a device hands a received packet to the stack.
//! Marks a packet arriving out of a vxlan device (decapsulated), a bridge
//! (passed up to the node), a veth (from the pod) or a pod's interface.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use netprobe_common::probe::HOOK_NETIF_RECEIVE;

use crate::{
    flight::{Unjoined, now, observe},
    skb::SkBuff,
};

#[raw_tracepoint(tracepoint = "netif_receive_skb")]
pub fn np_netif_rx(ctx: RawTracePointContext) -> i32 {
    let now = now();
    let skb = SkBuff(ctx.arg(0));
    if let Some(point) = skb.point(HOOK_NETIF_RECEIVE)
        && let Some(packet) = skb.packet_at_network()
    {
        observe(point, &packet, now, Unjoined::Count);
    }
    0
}
