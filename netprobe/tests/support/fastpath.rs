//! `netprobe fastpath` as users run it, on a lab's node, and what tests
//! check around it: its counters and record, the device settings it
//! changes, and that nothing of it is left.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddrV4, TcpListener, TcpStream},
    process::Output,
    thread,
    time::Duration,
};

use aya::programs::{SchedClassifier, TcAttachType};
use netprobe::{
    ethtool::{self, Feature},
    fastpath::{FastpathId, FastpathMaps, FastpathState, state},
    netlink,
    netns::NetNs,
};
use netprobe_common::fastpath::{COUNTERS, Counter, EGRESS_COUNTERS, EgressCounter};

use super::session::netprobe;

/// The fast path on `interface` of the node namespace `node`.
pub fn id(node: &str, interface: &str) -> FastpathId {
    FastpathId {
        interface: interface.to_owned(),
        netns: Some(node.to_owned()),
        netns_inode: NetNs::named(node).expect("node namespace").inode(),
    }
}

/// `netprobe fastpath enable eth0 --netns NODE ARGS`, which must succeed.
pub fn enable(node: &str, args: &[&str]) -> FastpathId {
    let output = netprobe(&[&["fastpath", "enable", "eth0", "--netns", node][..], args].concat());
    assert_success(&output);
    id(node, "eth0")
}

/// `netprobe fastpath disable eth0 --netns NODE`, which must succeed.
pub fn disable(node: &str) {
    assert_success(&netprobe(&["fastpath", "disable", "eth0", "--netns", node]));
}

/// Runs `command` (split at spaces) in the namespace `netns`, which must
/// succeed.
pub fn exec(netns: &str, command: &str) {
    let output = std::process::Command::new("ip")
        .args(["netns", "exec", netns])
        .args(command.split_whitespace())
        .output()
        .expect("ip netns exec");
    assert_success(&output);
}

pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The maps of the fast path `id`, opened by the ids its record keeps.
pub fn maps(id: &FastpathId) -> FastpathMaps {
    FastpathMaps::from_ids(&record(id).maps).expect("maps")
}

pub fn counters(id: &FastpathId) -> [u64; COUNTERS as usize] {
    maps(id).counters().expect("counters")
}

pub fn fastpathed(id: &FastpathId) -> u64 {
    counters(id)[Counter::Fastpathed as usize]
}

pub fn egress_counters(id: &FastpathId) -> [u64; EGRESS_COUNTERS as usize] {
    maps(id).egress_counters().expect("egress counters")
}

pub fn encapsulated(id: &FastpathId) -> u64 {
    egress_counters(id)[EgressCounter::Encapsulated as usize]
}

pub fn record(id: &FastpathId) -> FastpathState {
    state::load(id).expect("record").expect("enabled")
}

/// Whether `feature` is on for `device` in namespace `netns`.
pub fn feature(netns: &str, device: &str, feature: Feature) -> bool {
    NetNs::named(netns)
        .expect("namespace")
        .run(|| {
            let links = netlink::links().expect("links");
            let index = links
                .iter()
                .find(|link| link.name == device)
                .expect("device")
                .index;
            ethtool::get(index, feature).expect("ethtool")
        })
        .expect("enter namespace")
}

/// Nothing of a fast path on `interface` of `node`: no record (and so no
/// sync process), no program on the interface's XDP or tcx ingress hook,
/// none on any veth's tcx ingress.
pub fn assert_no_fastpath(node: &str, interface: &str) {
    let id = id(node, interface);
    assert!(!id.state_dir().exists(), "record left for {id}");
    let netns = NetNs::named(node).expect("node");
    let (xdp, tcx) = netns
        .run(|| {
            let links = netlink::links().expect("links");
            let xdp = links
                .iter()
                .find(|link| link.name == interface)
                .expect("interface")
                .xdp_prog_id;
            let mut tcx = Vec::new();
            for link in links
                .iter()
                .filter(|link| link.name == interface || link.kind == "veth")
            {
                let (_, programs) = SchedClassifier::query_tcx(&link.name, TcAttachType::Ingress)
                    .expect("query tcx");
                tcx.extend(programs);
            }
            (xdp, tcx)
        })
        .expect("enter node");
    let fastpath_program = |id: u32| {
        aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .any(|program| {
                program.id() == id
                    && program
                        .name_as_str()
                        .is_some_and(|n| n.starts_with("np_fp"))
            })
    };
    assert!(
        !xdp.is_some_and(fastpath_program),
        "fast path XDP left on {id}"
    );
    assert!(
        !tcx.iter().any(|program| program
            .name_as_str()
            .is_some_and(|n| n.starts_with("np_fp"))),
        "fast path tcx program left in {node}"
    );
}

/// Sends `len` bytes of a deterministic stream from `client` to a listener
/// in `server` at `addr`; the receiver checks every byte. Returns the bytes
/// received intact.
pub fn transfer(client: &str, server: &str, addr: SocketAddrV4, len: usize) -> usize {
    let listener = NetNs::named(server)
        .expect("server namespace")
        .run(|| TcpListener::bind(addr).expect("listen"))
        .expect("enter server");
    let receiver = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut expected = Stream::default();
        let mut chunk = vec![0u8; 1 << 16];
        let mut received = 0;
        loop {
            let read = stream.read(&mut chunk).expect("receive");
            if read == 0 {
                return received;
            }
            for (offset, byte) in chunk[..read].iter().enumerate() {
                assert_eq!(
                    *byte,
                    expected.next(),
                    "byte {} corrupted",
                    received + offset
                );
            }
            received += read;
        }
    });
    NetNs::named(client)
        .expect("client namespace")
        .run(|| {
            let mut stream = TcpStream::connect(addr).expect("connect");
            let mut source = Stream::default();
            let mut chunk = vec![0u8; 1 << 16];
            let mut sent = 0;
            while sent < len {
                let size = chunk.len().min(len - sent);
                for byte in &mut chunk[..size] {
                    *byte = source.next();
                }
                stream.write_all(&chunk[..size]).expect("send");
                sent += size;
            }
        })
        .expect("enter client");
    receiver.join().expect("receiver")
}

/// A byte stream both ends can generate (xorshift).
struct Stream(u64);

impl Default for Stream {
    fn default() -> Self {
        Self(0x2545_f491_4f6c_dd1d)
    }
}

impl Stream {
    fn next(&mut self) -> u8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 24) as u8
    }
}
