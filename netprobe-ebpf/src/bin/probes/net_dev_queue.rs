//! `net:net_dev_queue`: the stack queues a packet on a device. Marks a packet
//! entering a bridge, a bridge port, a vxlan device (before encapsulation) or
//! leaving a pod.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use netprobe_common::probe::HOOK_NET_DEV_QUEUE;

use crate::{
    flight::{Unjoined, now, observe},
    skb::SkBuff,
};

#[btf_tracepoint(function = "net_dev_queue")]
pub fn np_dev_queue(ctx: BtfTracePointContext) -> i32 {
    let skb = SkBuff(ctx.arg(0));
    let Some(point) = skb.point(HOOK_NET_DEV_QUEUE) else {
        return 0;
    };
    let now = now();
    if let Some(packet) = skb.packet_at_mac() {
        observe(point, &packet, now, Unjoined::Count);
    }
    0
}
