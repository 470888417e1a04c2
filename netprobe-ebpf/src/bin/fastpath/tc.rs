//! TC ingress (tcx) on the node's interface: `bpf_skb_adjust_room` removes
//! the outer IPv4, UDP and VXLAN headers with the inner Ethernet header (the
//! outer one takes its place), and `bpf_redirect_peer` hands the skb to the
//! pod's end of the veth, in the pod's namespace. Passed packets get
//! `TC_ACT_UNSPEC`, so later tcx programs still see them.

use aya_ebpf::{
    bindings::{BPF_F_ADJ_ROOM_FIXED_GSO, TC_ACT_UNSPEC, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC},
    helpers::generated::bpf_redirect_peer,
    macros::classifier,
    programs::TcContext,
};
use netprobe_common::fastpath::{Counter, HEADERS_LEN, OUTER_LEN};
use netprobe_ebpf::reader::TcReader;

use crate::{
    maps::{FP_PORTS, count},
    rules,
};

#[classifier]
pub fn np_fp_tc(ctx: TcContext) -> i32 {
    match fast_path(&ctx) {
        Ok(action) => {
            count(Counter::Fastpathed);
            action
        }
        Err(counter) => {
            count(counter);
            TC_ACT_UNSPEC
        }
    }
}

#[inline(always)]
fn fast_path(ctx: &TcContext) -> Result<i32, Counter> {
    // A GSO packet is one skb for many segments; the pod's stack takes it
    // whole, as the kernel's own path would hand it over.
    let segmented = unsafe { (*ctx.skb.skb).gso_size } != 0;
    let target = rules::check(&TcReader(ctx), ctx.len() as usize, segmented)?;
    // bpf_redirect_peer drops what it cannot deliver: the veth must still
    // exist (its DEVMAP entry goes away with it).
    FP_PORTS
        .get_ifindex(target.pod.ifindex)
        .ok_or(Counter::PodGone)?;
    // Linear, writable headers first: after that nothing below can fail
    // half way through the rewrite.
    ctx.pull_data(HEADERS_LEN as u32)
        .map_err(|_| Counter::RewriteFailed)?;
    ctx.adjust_room(
        -(OUTER_LEN as i32),
        BPF_ADJ_ROOM_MAC,
        u64::from(BPF_F_ADJ_ROOM_FIXED_GSO),
    )
    .map_err(|_| Counter::RewriteFailed)?;
    rules::rewrite(&TcReader(ctx), &target).ok_or(Counter::RewriteFailed)?;
    Ok(unsafe { bpf_redirect_peer(target.pod.ifindex, 0) } as i32)
}
