//! `tcp:tcp_sendmsg_locked`: the application hands data to TCP. Remembers the
//! time of a write whose segment is followed, by the sequence number the
//! data will carry; the first egress hop joins the segment to it (hop 0 of
//! egress). A followed write after a read on the same socket ends the
//! application's time (a request answered): a response is followed when
//! the request was picked by its acknowledgement number, which is the
//! response's sequence number.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use netprobe_common::probe::{APPLICATION_SLOT, SocketRead};

use crate::{
    config::config,
    flight::{now, record_latency, remember_socket_write},
    maps::SOCKET_READS,
    sock::Socket,
};

#[btf_tracepoint(function = "tcp_sendmsg_locked")]
pub fn np_sock_write(ctx: BtfTracePointContext) -> i32 {
    // A socket of another namespace, now and then let through by the watch
    // filter, only leaves a timestamp no packet asks for.
    let Some(socket) = Socket::watched(ctx.arg(0)) else {
        return 0;
    };
    let Some((seq, ack)) = socket.tcp_numbers() else {
        return 0;
    };
    if !config!(follow).picks_tcp(seq, ack) {
        return 0;
    }
    let now = now();
    let id = socket.id();
    if let Some(read) = SOCKET_READS.get_ptr_mut(SocketRead::slot(id)) {
        let read = unsafe { &mut *read };
        if read.socket == id {
            // Only the first write answers the read.
            read.socket = 0;
            record_latency(APPLICATION_SLOT, now.saturating_sub(read.ns));
        }
    }
    remember_socket_write(seq, now);
    0
}
