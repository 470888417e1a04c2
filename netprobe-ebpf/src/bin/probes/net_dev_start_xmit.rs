//! `net:net_dev_start_xmit`: the driver takes the packet. On the NIC this is
//! the end of the egress path; the time since TC egress is the qdisc.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use netprobe_common::probe::HOOK_NET_DEV_START_XMIT;

use crate::{
    flight::{Unjoined, now, observe},
    skb::{SkBuff, device_point},
};

#[btf_tracepoint(function = "net_dev_start_xmit")]
pub fn np_dev_xmit(ctx: BtfTracePointContext) -> i32 {
    // The device is the tracepoint's second argument: no need to read skb->dev.
    let Some(point) = device_point(ctx.arg(1), HOOK_NET_DEV_START_XMIT) else {
        return 0;
    };
    let now = now();
    if let Some(packet) = SkBuff(ctx.arg(0)).packet_at_mac() {
        observe(point, &packet, now, Unjoined::Count);
    }
    0
}
