//! The probes' XDP and TC programs run with BPF_PROG_TEST_RUN on crafted
//! frames: each returns pass, leaves the frame byte-for-byte unchanged, and
//! records exactly the fingerprint the frame should give (or none).

mod support;

use aya::{
    TestRunOptions,
    programs::{SchedClassifier, TestRun as _, Xdp},
};
use netprobe::{path::Hook, probes::LoadedProbes};
use netprobe_common::probe::{DIRECTION_EGRESS, DIRECTION_INGRESS, FlightKey};
use support::{
    frames::{
        self, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, Frame, IPPROTO_ICMP, Ipv4, MAC_A, MAC_B,
        skb_runner_refuses,
    },
    loopback::probes_on_loopback,
    require_root,
};

const XDP_PASS: u32 = 2;
/// TC_ACT_UNSPEC: tcx continues with the next program.
const TC_NEXT: u32 = u32::MAX;
/// Probes on loopback, with a flight table small enough to read all of it
/// after every run.
fn probes_starting_at(hook: Hook, filter: &str) -> LoadedProbes {
    require_root();
    probes_on_loopback(hook, filter, 4)
}

/// Runs the hook's program on `frame`; checks it passes the frame unchanged
/// and returns the flights it recorded.
fn run(probes: &mut LoadedProbes, hook: Hook, frame: &[u8]) -> Vec<FlightKey> {
    try_run(probes, hook, frame)
        .unwrap_or_else(|error| panic!("BPF_PROG_TEST_RUN of {} bytes: {error}", frame.len()))
}

/// [`run`], returning the test runner's refusal of a frame instead of
/// failing on it.
fn try_run(
    probes: &mut LoadedProbes,
    hook: Hook,
    frame: &[u8],
) -> Result<Vec<FlightKey>, aya::programs::ProgramError> {
    let mut out = vec![0u8; frame.len() + 256];
    let options = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ..TestRunOptions::default()
    };
    let (result, expected) = match hook {
        Hook::Xdp => (
            probes.program::<Xdp>(hook).expect("xdp").test_run(options),
            XDP_PASS,
        ),
        _ => (
            probes
                .program::<SchedClassifier>(hook)
                .expect("tc")
                .test_run(options),
            TC_NEXT,
        ),
    };
    let result = result?;
    assert_eq!(
        result.return_value, expected,
        "{hook:?} must pass every frame"
    );
    assert_eq!(
        &out[..result.data_size_out as usize],
        frame,
        "{hook:?} must leave the frame unchanged"
    );
    let keys = probes
        .flights()
        .expect("flights")
        .iter()
        .map(|flight| flight.key)
        .collect();
    probes.clear_flights().expect("clear flights");
    Ok(keys)
}

fn key(protocol: u8, ip_id: u32, word0: u32, word1: u32) -> FlightKey {
    FlightKey {
        direction: DIRECTION_INGRESS as u8,
        protocol,
        ip_id,
        word0,
        word1,
        ..FlightKey::default()
    }
}

const PAYLOAD: &[u8] = b"GET / HTTP/1.1\r\n\r\n";

/// Frames the probes follow, with the fingerprint each must give.
fn followed_frames() -> Vec<(&'static str, Frame, FlightKey)> {
    let tcp4 = frames::ipv4_tcp(0x1234, 1000, 2000, PAYLOAD);
    let tcp_key = key(6, 0x1234, 1000, 2000);
    let vlan = Frame::default()
        .ethernet(MAC_B, MAC_A, ETH_P_8021Q)
        .vlan(100, ETH_P_IP)
        .inner(&strip_ethernet(&tcp4))
        .build();
    let qinq = Frame::default()
        .ethernet(MAC_B, MAC_A, ETH_P_8021AD)
        .vlan(200, ETH_P_8021Q)
        .vlan(100, ETH_P_IP)
        .inner(&strip_ethernet(&tcp4))
        .build();
    let udp_payload = [0xde, 0xad, 0xbe, 0xef, 1, 2];
    vec![
        ("IPv4 TCP", tcp4.clone(), tcp_key),
        ("IPv6 TCP", frames::ipv6_tcp(7, 8, PAYLOAD), key(6, 0, 7, 8)),
        (
            "IPv4 UDP",
            frames::ipv4_udp(0x99, 53, &udp_payload),
            key(17, 0x99, 14, u32::from_ne_bytes([0xde, 0xad, 0xbe, 0xef])),
        ),
        (
            "IPv6 UDP",
            frames::ipv6_udp(&udp_payload),
            key(17, 0, 14, u32::from_ne_bytes([0xde, 0xad, 0xbe, 0xef])),
        ),
        ("802.1Q TCP", vlan, tcp_key),
        ("802.1ad TCP", qinq, tcp_key),
        ("VXLAN 8472", frames::vxlan(&tcp4, 8472, 1), tcp_key),
        ("VXLAN 4789", frames::vxlan(&tcp4, 4789, 1), tcp_key),
        (
            "VXLAN IPv6 inner",
            frames::vxlan(&frames::ipv6_tcp(7, 8, PAYLOAD), 8472, 1),
            key(6, 0, 7, 8),
        ),
    ]
}

/// Frames the probes must pass without following.
fn ignored_frames() -> Vec<(&'static str, Frame)> {
    let icmp_ip = Ipv4::new(
        "10.0.0.1".parse().unwrap(),
        "10.0.0.2".parse().unwrap(),
        IPPROTO_ICMP,
        5,
    );
    let icmp = Frame::default()
        .ethernet(MAC_B, MAC_A, ETH_P_IP)
        .ipv4(&icmp_ip, 8)
        .icmp_echo(1, 1)
        .build();
    let mut fragment = Ipv4::new(
        "10.0.0.1".parse().unwrap(),
        "10.0.0.2".parse().unwrap(),
        6,
        5,
    );
    fragment.frag = 0x2000;
    let fragment = Frame::default()
        .ethernet(MAC_B, MAC_A, ETH_P_IP)
        .ipv4(&fragment, 20 + PAYLOAD.len())
        .tcp(1, 2, 3, 4)
        .payload(PAYLOAD)
        .build();
    let arp = Frame::default()
        .ethernet([0xff; 6], MAC_A, 0x0806)
        .payload(&[0; 28])
        .build();
    vec![
        ("ICMP echo", icmp),
        ("pure ACK", frames::ipv4_tcp(1, 2, 3, &[])),
        ("IPv4 fragment", fragment),
        ("ARP", arp),
    ]
}

fn strip_ethernet(frame: &Frame) -> Frame {
    Frame {
        bytes: frame.bytes[14..].to_vec(),
        boundaries: frame.boundaries[1..].iter().map(|end| end - 14).collect(),
    }
}

fn check_followed_and_ignored(hook: Hook) {
    let mut probes = probes_starting_at(hook, "");
    let direction = if hook == Hook::TcEgress {
        DIRECTION_EGRESS
    } else {
        DIRECTION_INGRESS
    };
    for (name, frame, expected) in followed_frames() {
        let flights = run(&mut probes, hook, &frame.bytes);
        let expected = FlightKey {
            direction: direction as u8,
            ..expected
        };
        assert_eq!(flights, vec![expected], "{hook:?}, {name}");
    }
    for (name, frame) in ignored_frames() {
        assert_eq!(
            run(&mut probes, hook, &frame.bytes),
            vec![],
            "{hook:?}, {name}"
        );
    }
}

/// Cuts every frame at each header boundary and at every byte inside its
/// headers: the program passes it unchanged and follows nothing, since a
/// header is missing.
fn check_truncations(hook: Hook) {
    let mut probes = probes_starting_at(hook, "");
    for (name, frame, _) in followed_frames() {
        let headers_end = frame.boundaries[frame.boundaries.len() - 2];
        for cut in 14..headers_end {
            match try_run(&mut probes, hook, &frame.bytes[..cut]) {
                Ok(flights) => assert_eq!(flights, vec![], "{hook:?}, {name} cut at {cut}"),
                Err(_) => assert!(
                    hook != Hook::Xdp && skb_runner_refuses(&frame.bytes[..cut]),
                    "{hook:?}, {name} cut at {cut} refused"
                ),
            }
        }
    }
}

#[test]
fn xdp_fingerprints_every_followed_frame_and_ignores_the_rest() {
    check_followed_and_ignored(Hook::Xdp);
}

#[test]
fn tc_fingerprints_every_followed_frame_and_ignores_the_rest() {
    check_followed_and_ignored(Hook::TcIngress);
    check_followed_and_ignored(Hook::TcEgress);
}

#[test]
fn xdp_passes_frames_truncated_anywhere_in_the_headers() {
    check_truncations(Hook::Xdp);
}

#[test]
fn tc_passes_frames_truncated_anywhere_in_the_headers() {
    check_truncations(Hook::TcIngress);
}

#[test]
fn filter_selects_flows_in_the_kernel() {
    let tcp = frames::ipv4_tcp(1, 10, 20, PAYLOAD);
    let udp = frames::ipv4_udp(2, 53, b"abcdef");
    for (filter, tcp_followed, udp_followed) in [
        ("tcp", true, false),
        ("udp", false, true),
        ("port 80", true, false),
        ("dst port 53", false, true),
        ("src port 80", false, false),
        ("host 10.78.2.2", true, true),
        ("src host 10.78.2.2", false, false),
        ("tcp and dst host 10.78.2.2 and port 80", true, false),
    ] {
        let mut probes = probes_starting_at(Hook::Xdp, filter);
        assert_eq!(
            run(&mut probes, Hook::Xdp, &tcp.bytes).len() == 1,
            tcp_followed,
            "{filter}: tcp"
        );
        assert_eq!(
            run(&mut probes, Hook::Xdp, &udp.bytes).len() == 1,
            udp_followed,
            "{filter}: udp"
        );
        // Through VXLAN the filter sees the inner flow.
        let encapsulated = frames::vxlan(&tcp, 8472, 1);
        assert_eq!(
            run(&mut probes, Hook::Xdp, &encapsulated.bytes).len() == 1,
            tcp_followed,
            "{filter}: vxlan"
        );
    }
}
