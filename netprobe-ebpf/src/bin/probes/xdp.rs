//! XDP on the NIC: the earliest point a received packet can be seen, before
//! the kernel allocates an skb for it.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use netprobe_common::{
    config::NIC_XDP,
    probe::{DIRECTION_INGRESS, Point},
};
use netprobe_ebpf::{
    packet::{Start, parse},
    reader::DirectReader,
};

use crate::{
    config::config,
    flight::{Unjoined, now, observe},
};

#[xdp]
pub fn np_xdp(ctx: XdpContext) -> u32 {
    if ctx.ingress_ifindex() as u32 == config!(nic_ifindex)
        && let Some(packet) = parse(
            &DirectReader::xdp(&ctx),
            0,
            Start::Ethernet,
            &config!(filter),
        )
    {
        let point = Point {
            direction: DIRECTION_INGRESS,
            hop: config!(nic_hops)[NIC_XDP],
        };
        observe(point, &packet, now(), Unjoined::Count);
    }
    xdp_action::XDP_PASS
}
