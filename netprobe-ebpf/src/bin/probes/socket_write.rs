//! `tcp:tcp_sendmsg_locked`: the application hands data to TCP. Remembers the
//! time by the sequence number the data will carry; the first egress hop
//! joins the segment to it (hop 0 of egress).

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use netprobe_ebpf::reader::read_kernel;

use crate::{
    config::config,
    flight::{now, remember_socket_write},
    maps::SOCKET_NETNS,
    skb::{field, netns_inum},
};

#[btf_tracepoint(function = "tcp_sendmsg_locked")]
pub fn np_sock_write(ctx: BtfTracePointContext) -> i32 {
    let sock: *const u8 = ctx.arg(0);
    let net: *const u8 = field(sock, config!(offsets.sock_common_skc_net));
    if unsafe { SOCKET_NETNS.get(netns_inum(net)) }.is_some()
        // tcp_sock extends the `struct sock` the tracepoint declares: beyond
        // what the verifier lets a plain load reach.
        && let Some(write_seq) = read_kernel::<u32>(sock, config!(offsets.tcp_sock_write_seq) as usize)
    {
        remember_socket_write(write_seq, now());
    }
    0
}
