//! XDP on the node's interface: `bpf_xdp_adjust_head` strips the outer
//! headers and `bpf_redirect_map` sends the inner frame through the DEVMAP to
//! the pod's host-side veth.

use aya_ebpf::{
    bindings::xdp_action, helpers::generated::bpf_xdp_adjust_head, macros::xdp,
    programs::XdpContext,
};
use netprobe_common::fastpath::{Counter, OUTER_LEN};
use netprobe_ebpf::reader::DirectReader;

use crate::{
    maps::{FP_PORTS, count},
    rules,
};

#[xdp]
pub fn np_fp_xdp(ctx: XdpContext) -> u32 {
    match fast_path(&ctx) {
        Ok(()) => {
            count(Counter::Fastpathed);
            xdp_action::XDP_REDIRECT
        }
        Err(counter) => {
            count(counter);
            xdp_action::XDP_PASS
        }
    }
}

#[inline(always)]
fn fast_path(ctx: &XdpContext) -> Result<(), Counter> {
    let len = ctx.data_end() - ctx.data();
    let target = rules::check(&DirectReader::xdp(ctx), len, false)?;
    // Redirect before touching the frame: if the veth is gone, so is its
    // DEVMAP entry, and the frame goes to the kernel as it came.
    FP_PORTS
        .redirect(target.pod.ifindex, u64::from(xdp_action::XDP_PASS))
        .map_err(|_| Counter::PodGone)?;
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, OUTER_LEN as i32) } != 0 {
        return Err(Counter::HelperFailed);
    }
    if rules::rewrite(&DirectReader::xdp(ctx), &target).is_none() {
        // Not reachable (the frame held these headers before the move), but
        // the verifier wants the bounds checked: restore the frame as it was.
        unsafe { bpf_xdp_adjust_head(ctx.ctx, -(OUTER_LEN as i32)) };
        return Err(Counter::HelperFailed);
    }
    Ok(())
}
