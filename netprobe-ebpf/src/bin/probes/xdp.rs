//! XDP on the NIC: the earliest point a received packet can be seen, before
//! the kernel allocates an skb for it. Always the first ingress hop.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use netprobe_common::probe::{DIRECTION_INGRESS, Point};
use netprobe_ebpf::{
    packet::{Start, parse},
    reader::DirectReader,
};

use crate::{
    config::{filter, hooks_only},
    flight::sighting,
};

#[xdp]
pub fn np_xdp(ctx: XdpContext) -> u32 {
    if hooks_only() {
        return xdp_action::XDP_PASS;
    }
    let reader = DirectReader::xdp(&ctx);
    if let Some(packet) = parse(&reader, 0, Start::Ethernet, &filter()) {
        let point = Point {
            direction: DIRECTION_INGRESS,
            hop: 0,
        };
        sighting(point, &packet, &reader);
    }
    xdp_action::XDP_PASS
}
