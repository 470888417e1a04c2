//! `net:net_dev_start_xmit`: the driver takes the packet. Watched on the NIC
//! only, the end of the egress path: the time since TC egress is the qdisc.
//! There is no device hook at this point, so the tracepoint fires for every
//! device of the machine; any other device leaves after three loads.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use netprobe_common::probe::{DIRECTION_EGRESS, Point};

use crate::{
    config::{config, hooks_only},
    flight::sighting,
    skb::{SkBuff, is_nic},
};

#[btf_tracepoint(function = "net_dev_start_xmit")]
pub fn np_dev_xmit(ctx: BtfTracePointContext) -> i32 {
    if hooks_only() {
        return 0;
    }
    // The device is the tracepoint's second argument: no need to read skb->dev.
    if !is_nic(ctx.arg(1)) {
        return 0;
    }
    if let Some((packet, headers)) = SkBuff(ctx.arg(0)).packet_at_mac() {
        let point = Point {
            direction: DIRECTION_EGRESS,
            hop: config!(hops)[DIRECTION_EGRESS as usize].saturating_sub(1),
        };
        sighting(point, &packet, &headers);
    }
    0
}
