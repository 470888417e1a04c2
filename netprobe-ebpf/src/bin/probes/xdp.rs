//! XDP on the NIC: the earliest point a received packet can be seen, before
//! the kernel allocates an skb for it.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use netprobe_common::probe::{HOOK_XDP, PointKey};
use netprobe_ebpf::{
    packet::{Start, parse},
    reader::DirectReader,
};

use crate::{
    config::config,
    flight::{Unjoined, lookup_point, now, observe},
};

#[xdp]
pub fn np_xdp(ctx: XdpContext) -> u32 {
    let now = now();
    let key = PointKey {
        netns: config!(node_netns),
        ifindex: ctx.ingress_ifindex() as u32,
        hook: HOOK_XDP,
    };
    if let Some(point) = lookup_point(&key)
        && let Some(packet) = parse(
            &DirectReader::xdp(&ctx),
            0,
            Start::Ethernet,
            &config!(filter),
        )
    {
        observe(point, &packet, now, Unjoined::Count);
    }
    xdp_action::XDP_PASS
}
