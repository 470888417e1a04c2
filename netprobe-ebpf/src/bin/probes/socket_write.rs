//! `tcp:tcp_sendmsg_locked`: the application hands data to TCP. Remembers the
//! time of a write whose segment is followed, by the sequence number the
//! data will carry; the first egress hop joins the segment to it (hop 0 of
//! egress). The first write after a followed read on the same socket ends
//! the application's time (a request answered), whether or not its own
//! segment is followed: a request picked by its sequence number has a
//! response that may not be.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use netprobe_common::probe::{APPLICATION_SLOT, SocketRead};

use crate::{
    config::{config, hooks_only},
    flight::{now, record_latency, remember_socket_write},
    maps::SOCKET_READS,
    sock::Socket,
};

#[btf_tracepoint(function = "tcp_sendmsg_locked")]
pub fn np_sock_write(ctx: BtfTracePointContext) -> i32 {
    if hooks_only() {
        return 0;
    }
    // A socket of another namespace, now and then let through by the watch
    // filter, only leaves a timestamp no packet asks for.
    let Some(socket) = Socket::watched(ctx.arg(0)) else {
        return 0;
    };
    let Some((seq, ack)) = socket.tcp_numbers() else {
        return 0;
    };
    let followed = config!(follow).picks_tcp(seq, ack);
    let id = socket.id();
    let read = SOCKET_READS
        .get_ptr_mut(SocketRead::slot(id))
        .filter(|read| unsafe { (**read).socket } == id);
    if !followed && read.is_none() {
        return 0;
    }
    let now = now();
    if let Some(read) = read {
        let read = unsafe { &mut *read };
        // Only the first write answers the read.
        read.socket = 0;
        record_latency(APPLICATION_SLOT, 0, now.saturating_sub(read.ns));
    }
    if !followed {
        return 0;
    }
    remember_socket_write(seq, now);
    0
}
