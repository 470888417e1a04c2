//! `tcp:tcp_sendmsg_locked`: the application hands data to TCP. Remembers the
//! time by the sequence number the data will carry; the first egress hop
//! joins the segment to it (hop 0 of egress).

use aya_ebpf::{bindings::BPF_ANY, macros::raw_tracepoint, programs::RawTracePointContext};
use netprobe_ebpf::reader::read_kernel;

use crate::{
    config::config,
    flight::now,
    maps::{SOCKET_NETNS, SOCKET_WRITES},
    skb::netns_inum,
};

#[raw_tracepoint(tracepoint = "tcp_sendmsg_locked")]
pub fn np_sock_write(ctx: RawTracePointContext) -> i32 {
    let now = now();
    let _ = try_remember_write(ctx.arg(0), now);
    0
}

#[inline(always)]
fn try_remember_write(sock: *const u8, now: u64) -> Option<()> {
    let net: *const u8 = read_kernel(sock, config!(offsets.sock_common_skc_net) as usize)?;
    let netns = netns_inum(net)?;
    unsafe { SOCKET_NETNS.get(&netns) }?;
    let write_seq: u32 = read_kernel(sock, config!(offsets.tcp_sock_write_seq) as usize)?;
    // The latest write wins: an earlier one at the same sequence sent nothing.
    SOCKET_WRITES.insert(&write_seq, &now, u64::from(BPF_ANY)).ok()
}
