//! Reading the kernel's `struct sock` from BTF tracepoints.

use netprobe_common::probe::socket_id;

use crate::{
    config::config,
    flight::watched,
    skb::{field, netns_inum},
};

/// The identity of a socket whose namespace the probes watch; `None` for
/// any other socket (or a null one).
#[inline(always)]
pub fn watched_socket(sock: *const u8) -> Option<u64> {
    if sock.is_null() {
        return None;
    }
    let net: *const u8 = field(sock, config!(offsets.sock_common_skc_net));
    let netns = netns_inum(net);
    if !watched(netns, 0) {
        return None;
    }
    let addresses: u64 = field(sock, config!(offsets.sock_common_skc_addrpair));
    let ports: u32 = field(sock, config!(offsets.sock_common_skc_portpair));
    Some(socket_id(addresses, ports, netns))
}
