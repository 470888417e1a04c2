//! `net:net_dev_queue`: the stack queues a packet on a device. Marks a packet
//! entering a bridge, a bridge port, a vxlan device (before encapsulation) or
//! leaving a pod.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use netprobe_common::probe::HOOK_NET_DEV_QUEUE;

use crate::{
    flight::{Unjoined, now, observe},
    skb::SkBuff,
};

#[raw_tracepoint(tracepoint = "net_dev_queue")]
pub fn np_dev_queue(ctx: RawTracePointContext) -> i32 {
    let now = now();
    let skb = SkBuff(ctx.arg(0));
    if let Some(point) = skb.point(HOOK_NET_DEV_QUEUE)
        && let Some(packet) = skb.packet_at_mac()
    {
        observe(point, &packet, now, Unjoined::Count);
    }
    0
}
