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
use netprobe_ebpf::reader::DirectReader;

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
    let len = ctx.len() as usize;
    // The rules read the headers directly, from the skb's linear part:
    // pull them in when it is shorter (the bytes stay as they are).
    let headers = len.min(HEADERS_LEN);
    if ctx.data_end() - ctx.data() < headers {
        ctx.pull_data(headers as u32)
            .map_err(|_| Counter::HelperFailed)?;
    }
    // A GSO packet is one skb for many segments; the pod's stack takes it
    // whole, as the kernel's own path would hand it over.
    let segmented = unsafe { (*ctx.skb.skb).gso_size } != 0;
    let target = rules::check(&DirectReader::tc(ctx), len, segmented)?;
    // bpf_redirect_peer drops what it cannot deliver: the veth must still
    // exist (its DEVMAP entry goes away with it).
    FP_PORTS
        .get_ifindex(target.pod.ifindex)
        .ok_or(Counter::PodGone)?;
    ctx.adjust_room(
        -(OUTER_LEN as i32),
        BPF_ADJ_ROOM_MAC,
        u64::from(BPF_F_ADJ_ROOM_FIXED_GSO),
    )
    .map_err(|_| Counter::HelperFailed)?;
    // The headers were linear and writable before (the verifier unclones
    // skbs for programs that write them), so the rewrite cannot fail.
    rules::rewrite(&DirectReader::tc(ctx), &target).ok_or(Counter::HelperFailed)?;
    Ok(unsafe { bpf_redirect_peer(target.pod.ifindex, 0) } as i32)
}
