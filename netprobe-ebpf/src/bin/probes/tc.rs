//! TC ingress and egress on the NIC (tcx links). They return
//! `TC_ACT_UNSPEC`, which tcx reads as "next program": a probe must not end
//! the chain for programs attached after it.

use aya_ebpf::{bindings::TC_ACT_UNSPEC, macros::classifier, programs::TcContext};
use netprobe_common::probe::{HOOK_TC_EGRESS, HOOK_TC_INGRESS, PointKey};
use netprobe_ebpf::{
    packet::{Start, parse},
    reader::TcReader,
};

use crate::{
    config::config,
    flight::{Unjoined, lookup_point, now, observe},
};

#[classifier]
pub fn np_tc_ingress(ctx: TcContext) -> i32 {
    observe_tc(&ctx, HOOK_TC_INGRESS);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn np_tc_egress(ctx: TcContext) -> i32 {
    observe_tc(&ctx, HOOK_TC_EGRESS);
    TC_ACT_UNSPEC
}

#[inline(always)]
fn observe_tc(ctx: &TcContext, hook: u32) {
    let now = now();
    let key = PointKey {
        netns: config!(node_netns),
        ifindex: unsafe { (*ctx.skb.skb).ifindex },
        hook,
    };
    if let Some(point) = lookup_point(&key)
        && let Some(packet) = parse(&TcReader(ctx), 0, Start::Ethernet, &config!(filter))
    {
        observe(point, &packet, now, Unjoined::Count);
    }
}
