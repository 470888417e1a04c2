//! tcx programs on the watched devices, one for each place on each
//! direction's path: attached only to that hop's devices, a program knows
//! its hop from its name, and a device nothing watches runs none of them.
//! tcx ingress runs where `net:netif_receive_skb` fires (a device hands a
//! packet to the stack), tcx egress where `net:net_dev_queue` does (the stack
//! queues a packet on a device). They return `TC_ACT_UNSPEC`, which tcx reads
//! as "next program": a probe must not end the chain.

use aya_ebpf::{bindings::TC_ACT_UNSPEC, macros::classifier, programs::TcContext};
use netprobe_common::probe::{DIRECTION_EGRESS, DIRECTION_INGRESS, Point};
use netprobe_ebpf::{
    packet::{Start, parse},
    reader::{CopiedHeaders, DirectReader, Scratch},
};

use crate::{
    config::{filter, hooks_only},
    flight::sighting,
};

/// A program per (direction, hop), named as `HOP_PROGRAMS` in
/// `netprobe_common::probe` lists them.
macro_rules! hop_programs {
    ($($name:ident: $direction:ident $hop:literal;)+) => {
        $(
            #[classifier]
            pub fn $name(ctx: TcContext) -> i32 {
                observe_device(&ctx, Point { direction: $direction, hop: $hop });
                TC_ACT_UNSPEC
            }
        )+
    };
}

hop_programs! {
    np_in_0: DIRECTION_INGRESS 0;
    np_in_1: DIRECTION_INGRESS 1;
    np_in_2: DIRECTION_INGRESS 2;
    np_in_3: DIRECTION_INGRESS 3;
    np_in_4: DIRECTION_INGRESS 4;
    np_in_5: DIRECTION_INGRESS 5;
    np_in_6: DIRECTION_INGRESS 6;
    np_in_7: DIRECTION_INGRESS 7;
    np_out_0: DIRECTION_EGRESS 0;
    np_out_1: DIRECTION_EGRESS 1;
    np_out_2: DIRECTION_EGRESS 2;
    np_out_3: DIRECTION_EGRESS 3;
    np_out_4: DIRECTION_EGRESS 4;
    np_out_5: DIRECTION_EGRESS 5;
    np_out_6: DIRECTION_EGRESS 6;
    np_out_7: DIRECTION_EGRESS 7;
}

/// Parses the linear data; only when that fails on a packet with paged
/// data are the headers copied out with the (slower) load helper.
#[inline(always)]
fn observe_device(ctx: &TcContext, point: Point) {
    if hooks_only() {
        return;
    }
    let filter = filter();
    let linear = DirectReader::tc(ctx);
    if let Some(packet) = parse(&linear, 0, Start::Ethernet, &filter) {
        sighting(point, &packet, &linear);
        return;
    }
    if !linear.is_partial(ctx) {
        return;
    }
    if let Some(headers) = CopiedHeaders::from_skb(ctx, Scratch::Softirq)
        && let Some(packet) = parse(&headers, 0, Start::Ethernet, &filter)
    {
        sighting(point, &packet, &headers);
    }
}
