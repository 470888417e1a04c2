//! The egress program encapsulates byte for byte as the kernel's vxlan
//! device does. A node namespace has a pod behind a bridge and a vxlan
//! device towards a remote node (a peer namespace on its `eth0`); frames
//! the pod sends (through a packet socket) are captured as the kernel's
//! path emits them on the peer's end of the wire. The fast path enabled on
//! the node fills its maps from netlink as it does anywhere; the same frames
//! then run through the egress program with BPF_PROG_TEST_RUN over those
//! maps, and the outputs are compared byte for byte. Fields allowed to
//! differ, and why:
//!
//! - the outer IPv4 identification (bytes 18-19): the kernel's
//!   `ip_select_ident()` draws from a counter per destination hash that it
//!   moves on by a random amount; the program counts up one counter;
//! - the outer IPv4 header checksum (bytes 24-25), which covers it; both
//!   must be valid.
//!
//! The UDP source port is the kernel's `udp_flow_src_port()` over the same
//! flow hash, so it is compared. The node's `eth0` completes checksums in
//! software (tx offload off), as a physical NIC would, so that the capture
//! holds the UDP checksum on the wire rather than a partial one.

mod support;

use std::{
    mem::size_of,
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use aya::maps::lpm_trie::Key;
use netprobe::{
    ethtool::{self, Feature},
    fastpath::LoadedFastpath,
    netns::NetNs,
};
use netprobe_common::fastpath::{EgressCounter, FastpathConfig};
use support::{
    encap::{TC_ACT_REDIRECT, run_egress},
    fastpath::{assert_success, disable, enable, exec, maps, record},
    frames::{Frame, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, Ipv4, internet_checksum},
    require_root,
};

const POD: Ipv4Addr = Ipv4Addr::new(10, 78, 2, 2);
const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(10, 78, 1, 2);
const VTEP_MAC: &str = "0e:77:00:00:00:01";
/// Where the bytes of the outer IPv4 identification and checksum are.
const OUTER_ID: std::ops::Range<usize> = 18..20;
const OUTER_CHECK: std::ops::Range<usize> = 24..26;

/// The test's namespaces, removed on drop.
struct Topology {
    pod: String,
    node: String,
    peer: String,
}

impl Drop for Topology {
    fn drop(&mut self) {
        for netns in [&self.pod, &self.node, &self.peer] {
            Command::new("ip")
                .args(["netns", "del", netns])
                .output()
                .ok();
        }
    }
}

impl Topology {
    fn new() -> Self {
        require_root();
        let prefix = format!("npenc{}", std::process::id());
        let topology = Self {
            pod: format!("{prefix}-pod"),
            node: format!("{prefix}-node"),
            peer: format!("{prefix}-peer"),
        };
        for netns in [&topology.pod, &topology.node, &topology.peer] {
            let output = Command::new("ip").args(["netns", "add", netns]).output();
            assert_success(&output.expect("ip netns add"));
        }
        let (pod, node, peer) = (&topology.pod, &topology.node, &topology.peer);
        exec(
            node,
            &format!("ip link add eth0 type veth peer name eth0 netns {peer}"),
        );
        exec(
            node,
            &format!("ip link add veth1 type veth peer name eth0 netns {pod}"),
        );
        exec(node, "ip addr add 10.77.0.2/16 dev eth0");
        exec(node, "ip link set eth0 up");
        // Checksums completed before the wire, as a physical NIC does.
        NetNs::named(node)
            .expect("node")
            .run(|| {
                let name = std::ffi::CString::new("eth0").expect("name");
                let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
                ethtool::set(ifindex, Feature::TxChecksum, false).expect("tx checksum off");
            })
            .expect("enter node");
        exec(node, "ip link add cni0 type bridge");
        exec(node, "ip addr add 10.78.2.1/24 dev cni0");
        exec(node, "ip link set cni0 up");
        exec(node, "ip link set veth1 master cni0 up");
        exec(node, "sysctl -qw net.ipv4.ip_forward=1");
        exec(peer, "ip addr add 10.77.0.1/16 dev eth0");
        exec(peer, "ip link set eth0 up");
        exec(pod, "ip addr add 10.78.2.2/24 dev eth0");
        exec(pod, "ip link set eth0 up");
        exec(pod, "ip route add default via 10.78.2.1");
        // The node learns the pod (neighbour and bridge FDB), the pod its
        // gateway, the node the peer.
        exec(pod, "ping -c 1 -W 1 10.78.2.1");
        exec(node, "ping -c 1 -W 1 10.77.0.1");
        topology
    }

    /// flannel's vxlan device with `settings`, and its neighbour, FDB entry
    /// and route for the remote pod subnet.
    fn vxlan(&self, settings: &str) {
        let node = &self.node;
        exec(
            node,
            &format!(
                "ip link add flannel.1 address 0e:77:00:00:00:02 mtu 1450 type vxlan \
                 local 10.77.0.2 dev eth0 nolearning {settings}"
            ),
        );
        exec(node, "ip addr add 10.78.2.0/32 dev flannel.1");
        exec(node, "ip link set flannel.1 up");
        exec(
            node,
            &format!("ip neigh replace 10.78.1.0 lladdr {VTEP_MAC} dev flannel.1 nud permanent"),
        );
        exec(
            node,
            &format!("bridge fdb append {VTEP_MAC} dev flannel.1 dst 10.77.0.1"),
        );
        exec(
            node,
            "ip route add 10.78.1.0/24 via 10.78.1.0 dev flannel.1 onlink",
        );
    }
}

/// A raw packet socket on `device` in `netns`.
fn packet_socket(netns: &str, device: &str) -> OwnedFd {
    NetNs::named(netns)
        .expect("namespace")
        .run(|| {
            let protocol = (libc::ETH_P_ALL as u16).to_be();
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(protocol)) };
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let name = std::ffi::CString::new(device).expect("name");
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            assert!(ifindex > 0, "no {device}");
            let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            address.sll_family = libc::AF_PACKET as u16;
            address.sll_protocol = protocol;
            address.sll_ifindex = ifindex as i32;
            let bound = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&raw const address).cast(),
                    size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(bound, 0, "bind: {}", std::io::Error::last_os_error());
            let timeout = libc::timeval {
                tv_sec: 0,
                tv_usec: 100_000,
            };
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&raw const timeout).cast(),
                    size_of::<libc::timeval>() as u32,
                )
            };
            fd
        })
        .expect("enter namespace")
}

/// Sends `frame` from the pod and returns the VXLAN frame (to UDP port
/// `port`) the peer receives for it.
fn through_the_kernel(pod: &OwnedFd, peer: &OwnedFd, frame: &[u8], port: u16) -> Vec<u8> {
    let sent = unsafe { libc::send(pod.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
    assert_eq!(sent, frame.len() as isize, "send");
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buffer = vec![0u8; 4096];
    while Instant::now() < deadline {
        let received = unsafe {
            libc::recv(
                peer.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                0,
            )
        };
        if received <= 0 {
            continue;
        }
        let bytes = &buffer[..received as usize];
        let vxlan = bytes.len() > 64
            && bytes[12..14] == [0x08, 0x00]
            && bytes[23] == IPPROTO_UDP
            && bytes[36..38] == port.to_be_bytes()
            // The inner packet is this frame's (same IPv4 identification).
            && bytes[50 + 18..50 + 20] == frame[18..20];
        if vxlan {
            return bytes.to_vec();
        }
    }
    panic!("the kernel sent nothing for {frame:02x?}");
}

/// The frames the pod sends to its gateway's MAC, for the remote pod.
fn frames(gateway_mac: [u8; 6], pod_mac: [u8; 6]) -> Vec<(&'static str, Vec<u8>)> {
    let build = |protocol: u8, id: u16, tos: u8, df: bool, payload: usize| {
        let mut ip = Ipv4::new(POD, REMOTE_POD, protocol, id);
        if !df {
            ip.frag = 0;
        }
        let payload = vec![0x5a; payload];
        let mut transport = Frame::default();
        match protocol {
            IPPROTO_TCP => transport.tcp(80, 40000, 7, 9).payload(&payload),
            IPPROTO_UDP => transport.udp(5353, 53, payload.len()).payload(&payload),
            _ => transport.icmp_echo(7, id).payload(&payload),
        };
        let mut frame = Frame::default()
            .ethernet(gateway_mac, pod_mac, 0x0800)
            .ipv4(&ip, transport.bytes.len())
            .inner(&transport)
            .build()
            .bytes;
        frame[15] = tos;
        frame[24..26].fill(0);
        let check = internet_checksum(&frame[14..34]);
        frame[24..26].copy_from_slice(&check.to_be_bytes());
        support::encap::complete_inner_checksum(&mut frame[14..]);
        frame
    };
    vec![
        ("tcp", build(IPPROTO_TCP, 0x101, 0, true, 20)),
        (
            "tcp, largest inner packet",
            build(IPPROTO_TCP, 0x102, 0, true, 1450 - 40),
        ),
        ("tcp without df", build(IPPROTO_TCP, 0x103, 0, false, 100)),
        (
            "tcp, dscp and ect(0)",
            build(IPPROTO_TCP, 0x104, 0xb8 | 2, true, 10),
        ),
        (
            "tcp, congestion experienced",
            build(IPPROTO_TCP, 0x105, 0x03, true, 10),
        ),
        ("udp", build(IPPROTO_UDP, 0x106, 0, true, 33)),
        ("icmp echo", build(IPPROTO_ICMP, 0x107, 0, false, 56)),
    ]
}

fn mac_of(netns: &str, device: &str) -> [u8; 6] {
    NetNs::named(netns)
        .expect("namespace")
        .run(|| {
            netprobe::netlink::links()
                .expect("links")
                .into_iter()
                .find(|link| link.name == device)
                .expect("device")
                .mac
        })
        .expect("enter")
        .try_into()
        .expect("a MAC")
}

#[test]
fn the_egress_program_encapsulates_as_the_kernels_vxlan_device() {
    let topology = Topology::new();
    let frames = frames(
        mac_of(&topology.node, "cni0"),
        mac_of(&topology.pod, "eth0"),
    );
    let pod_socket = packet_socket(&topology.pod, "eth0");
    let peer_socket = packet_socket(&topology.peer, "eth0");
    // Device settings: the kernel's defaults (UDP checksums, TTL from the
    // route, TOS 0, DF unset, the namespace's port range); set values; and
    // values inherited from the inner packet.
    for (settings, port) in [
        ("id 1 dstport 8472", 8472),
        (
            "id 7 dstport 8472 noudpcsum ttl 9 tos 0x28 df set srcport 5000 6000",
            8472,
        ),
        (
            "id 42 dstport 4789 ttl inherit tos inherit df inherit",
            4789,
        ),
    ] {
        topology.vxlan(settings);
        let kernel: Vec<Vec<u8>> = frames
            .iter()
            .map(|(_, frame)| through_the_kernel(&pod_socket, &peer_socket, frame, port))
            .collect();

        // The maps the fast path fills from netlink, copied into a loaded
        // object of the test's: the pod's veth becomes the test runner's
        // loopback.
        let id = enable(&topology.node, &[]);
        let served = Instant::now();
        while record(&id).egress.routes.is_empty() || record(&id).egress.ports.is_empty() {
            assert!(
                served.elapsed() < Duration::from_secs(5),
                "{settings}: not served: {:?}",
                record(&id).egress
            );
            thread::sleep(Duration::from_millis(20));
        }
        let veth1 = record(&id)
            .pods
            .iter()
            .find(|pod| pod.ip == POD)
            .expect("the pod is served")
            .ifindex;
        let running = maps(&id);
        let mut fastpath = LoadedFastpath::load(&FastpathConfig::default()).expect("loads");
        let port = running.egress_ports.get(&veth1, 0).expect("the pod's port");
        fastpath.maps.egress_ports.insert(1, port, 0).expect("port");
        for entry in running.routes.iter() {
            let (key, route): (Key<u32>, _) = entry.expect("route");
            fastpath.maps.routes.insert(&key, route, 0).expect("route");
        }
        disable(&topology.node);

        for ((name, frame), kernel) in frames.iter().zip(&kernel) {
            let (verdict, program, counter) = run_egress(&mut fastpath, frame).expect("test run");
            assert_eq!(
                (verdict, counter),
                (TC_ACT_REDIRECT, EgressCounter::Encapsulated),
                "{settings}, {name}"
            );
            assert_eq!(internet_checksum(&program[14..34]), 0, "{settings}, {name}");
            assert_eq!(internet_checksum(&kernel[14..34]), 0, "{settings}, {name}");
            let comparable = |bytes: &[u8]| {
                let mut bytes = bytes.to_vec();
                bytes[OUTER_ID].fill(0);
                bytes[OUTER_CHECK].fill(0);
                bytes
            };
            assert_eq!(
                comparable(&program),
                comparable(kernel),
                "{settings}, {name}: program (left) and kernel (right)"
            );
        }
        exec(&topology.node, "ip link del flannel.1");
    }
}
