//! TC ingress and egress on the NIC (tcx links). They return
//! `TC_ACT_UNSPEC`, which tcx reads as "next program": a probe must not end
//! the chain for programs attached after it.

use aya_ebpf::{bindings::TC_ACT_UNSPEC, macros::classifier, programs::TcContext};
use netprobe_common::{
    config::{NIC_TC_EGRESS, NIC_TC_INGRESS},
    probe::{DIRECTION_EGRESS, DIRECTION_INGRESS, Point},
};
use netprobe_ebpf::{
    packet::{Packet, Start, parse},
    reader::{DirectReader, TcReader},
};

use crate::{
    config::config,
    flight::{Unjoined, now, observe},
};

#[classifier]
pub fn np_tc_ingress(ctx: TcContext) -> i32 {
    observe_nic(&ctx, DIRECTION_INGRESS, NIC_TC_INGRESS);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn np_tc_egress(ctx: TcContext) -> i32 {
    observe_nic(&ctx, DIRECTION_EGRESS, NIC_TC_EGRESS);
    TC_ACT_UNSPEC
}

#[inline(always)]
fn observe_nic(ctx: &TcContext, direction: u32, hook: usize) {
    if unsafe { (*ctx.skb.skb).ifindex } != config!(nic_ifindex) {
        return;
    }
    if let Some(packet) = packet(ctx) {
        let Some(&hop) = config!(nic_hops).get(hook) else {
            return;
        };
        observe(Point { direction, hop }, &packet, now(), Unjoined::Count);
    }
}

/// Parses the linear data; only when that fails on a packet with paged
/// data are the headers looked for with the (slower) load helper.
#[inline(always)]
fn packet(ctx: &TcContext) -> Option<Packet> {
    let filter = config!(filter);
    let linear = DirectReader::tc(ctx);
    parse(&linear, 0, Start::Ethernet, &filter).or_else(|| {
        linear
            .is_partial(ctx)
            .then(|| parse(&TcReader(ctx), 0, Start::Ethernet, &filter))
            .flatten()
    })
}
