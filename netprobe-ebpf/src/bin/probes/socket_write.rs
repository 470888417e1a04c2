//! `tcp:tcp_sendmsg_locked`: the application hands data to TCP. Remembers the
//! time by the sequence number the data will carry; the first egress hop
//! joins the segment to it (hop 0 of egress).

use aya_ebpf::{bindings::BPF_ANY, macros::btf_tracepoint, programs::BtfTracePointContext};
use netprobe_ebpf::reader::read_kernel;

use crate::{
    config::config,
    flight::now,
    maps::{SOCKET_NETNS, SOCKET_WRITES},
    skb::{field, netns_inum},
};

#[btf_tracepoint(function = "tcp_sendmsg_locked")]
pub fn np_sock_write(ctx: BtfTracePointContext) -> i32 {
    let now = now();
    let _ = try_remember_write(ctx.arg(0), now);
    0
}

#[inline(always)]
fn try_remember_write(sock: *const u8, now: u64) -> Option<()> {
    let net: *const u8 = field(sock, config!(offsets.sock_common_skc_net));
    unsafe { SOCKET_NETNS.get(&netns_inum(net)) }?;
    // tcp_sock extends the `struct sock` the tracepoint declares: beyond
    // what the verifier lets a plain load reach.
    let write_seq: u32 = read_kernel(sock, config!(offsets.tcp_sock_write_seq) as usize)?;
    // The latest write wins: an earlier one at the same sequence sent nothing.
    SOCKET_WRITES.insert(&write_seq, &now, u64::from(BPF_ANY)).ok()
}
