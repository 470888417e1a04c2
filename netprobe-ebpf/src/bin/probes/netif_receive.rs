//! `net:netif_receive_skb`: a device hands a received packet to the stack.
//! Marks a packet arriving out of a vxlan device (decapsulated), a bridge
//! (passed up to the node), a veth (from the pod) or a pod's interface.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use netprobe_common::probe::HOOK_NETIF_RECEIVE;

use crate::{
    flight::{Unjoined, now, observe},
    skb::SkBuff,
};

#[btf_tracepoint(function = "netif_receive_skb")]
pub fn np_netif_rx(ctx: BtfTracePointContext) -> i32 {
    let skb = SkBuff(ctx.arg(0));
    let Some(point) = skb.point(HOOK_NETIF_RECEIVE) else {
        return 0;
    };
    let now = now();
    if let Some(packet) = skb.packet_at_network() {
        observe(point, &packet, now, Unjoined::Count);
    }
    0
}
