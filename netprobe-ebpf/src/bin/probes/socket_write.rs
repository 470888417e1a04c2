//! `tcp:tcp_sendmsg_locked`: the application hands data to TCP. Remembers the
//! time by the sequence number the data will carry; the first egress hop
//! joins the segment to it (hop 0 of egress). A write after a read on the
//! same socket ends the application's time (a request answered).

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use netprobe_common::probe::{APPLICATION_SLOT, SocketRead};
use netprobe_ebpf::reader::read_kernel;

use crate::{
    config::config,
    flight::{now, record_latency, remember_socket_write},
    maps::SOCKET_READS,
    sock::watched_socket,
};

#[btf_tracepoint(function = "tcp_sendmsg_locked")]
pub fn np_sock_write(ctx: BtfTracePointContext) -> i32 {
    let sock: *const u8 = ctx.arg(0);
    // A socket of another namespace, now and then let through by the watch
    // filter, only leaves a timestamp no packet asks for.
    let Some(socket) = watched_socket(sock) else {
        return 0;
    };
    let now = now();
    if let Some(read) = SOCKET_READS.get_ptr_mut(SocketRead::slot(socket)) {
        let read = unsafe { &mut *read };
        if read.socket == socket {
            // Only the first write answers the read.
            read.socket = 0;
            record_latency(APPLICATION_SLOT, now.saturating_sub(read.ns));
        }
    }
    // tcp_sock extends the `struct sock` the tracepoint declares: beyond what
    // the verifier lets a plain load reach.
    if let Some(write_seq) = read_kernel::<u32>(sock, config!(offsets.tcp_sock_write_seq) as usize)
    {
        remember_socket_write(write_seq, now);
    }
    0
}
