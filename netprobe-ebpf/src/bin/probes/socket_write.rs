//! `tcp:tcp_sendmsg_locked`: the application hands data to TCP. Remembers the
//! time by the sequence number the data will carry; the first egress hop
//! joins the segment to it (hop 0 of egress). A write after a read on the
//! same socket ends the application's time (a request answered).

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use netprobe_common::probe::APPLICATION_SLOT;
use netprobe_ebpf::reader::read_kernel;

use crate::{
    config::config,
    flight::{now, record_latency, remember_socket_write, watched},
    maps::SOCKET_READS,
    skb::{field, netns_inum},
};

#[btf_tracepoint(function = "tcp_sendmsg_locked")]
pub fn np_sock_write(ctx: BtfTracePointContext) -> i32 {
    let sock: *const u8 = ctx.arg(0);
    let net: *const u8 = field(sock, config!(offsets.sock_common_skc_net));
    // A socket of another namespace, now and then let through by the
    // filter, only leaves a timestamp no packet asks for.
    if !watched(netns_inum(net), 0) {
        return 0;
    }
    let now = now();
    let sock_key = sock as u64;
    if let Some(&read_ns) = unsafe { SOCKET_READS.get(sock_key) } {
        // Only the first write answers the read.
        let _ = SOCKET_READS.remove(sock_key);
        record_latency(APPLICATION_SLOT, now.saturating_sub(read_ns));
    }
    // tcp_sock extends the `struct sock` the tracepoint declares: beyond what
    // the verifier lets a plain load reach.
    if let Some(write_seq) = read_kernel::<u32>(sock, config!(offsets.tcp_sock_write_seq) as usize)
    {
        remember_socket_write(write_seq, now);
    }
    0
}
