//! The probes' XDP and TC programs run with BPF_PROG_TEST_RUN on crafted
//! frames, one test per frame and hook: each returns pass, leaves the frame
//! byte-for-byte unchanged, and records exactly the fingerprint the frame
//! should give (or none).

mod support;

use std::net::{IpAddr, Ipv4Addr};

use aya::{
    TestRunOptions,
    programs::{BtfTracePoint, SchedClassifier, TestRun as _, Xdp},
};
use netprobe::{
    hooks::Attachment,
    path::{Direction, Hook, Pod},
    probes::LoadedProbes,
};
use netprobe_common::{
    config::ProbeConfig,
    probe::{DIRECTION_EGRESS, DIRECTION_INGRESS, FlightKey, MAX_HOPS, OneIn, PodSlot, slot},
};
use rstest::rstest;
use support::{
    frames::{
        self, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, Frame, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP,
        Ipv4, MAC_A, MAC_B, skb_runner_refuses,
    },
    loopback::{load, load_classifier, loopback_config, loopback_program, probes_on_loopback},
    require_root,
};

const XDP_PASS: u32 = 2;
/// TC_ACT_UNSPEC: tcx continues with the next program.
const TC_NEXT: u32 = u32::MAX;
/// Probes on loopback following every packet, with a flight table small
/// enough to read all of it after every run.
fn probes_starting_at(hook: Hook, filter: &str) -> LoadedProbes {
    require_root();
    probes_on_loopback(hook, filter, 4, 1)
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
    let program = loopback_program(hook);
    let (result, expected) = match hook {
        Hook::Xdp => (
            probes
                .program::<Xdp>(program)
                .expect("xdp")
                .test_run(options),
            XDP_PASS,
        ),
        _ => (
            probes
                .program::<SchedClassifier>(program)
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
const UDP_PAYLOAD: [u8; 6] = [0xde, 0xad, 0xbe, 0xef, 1, 2];

fn tcp4() -> Frame {
    frames::ipv4_tcp(0x1234, 1000, 2000, PAYLOAD)
}

fn tcp4_key() -> FlightKey {
    key(6, 0x1234, 1000, 2000)
}

fn tcp6() -> Frame {
    frames::ipv6_tcp(7, 8, PAYLOAD)
}

fn tcp6_key() -> FlightKey {
    key(6, 0, 7, 8)
}

/// A UDP datagram's key: its length and its first four payload bytes.
fn udp_key(ip_id: u32) -> FlightKey {
    key(
        IPPROTO_UDP,
        ip_id,
        14,
        u32::from_ne_bytes([0xde, 0xad, 0xbe, 0xef]),
    )
}

/// `tcp4` behind VLAN tags of these EtherTypes (outermost first).
fn tagged(tags: &[u16]) -> Frame {
    let mut frame = Frame::default();
    frame.ethernet(MAC_B, MAC_A, tags[0]);
    for (index, _) in tags.iter().enumerate() {
        let next = tags.get(index + 1).copied().unwrap_or(ETH_P_IP);
        frame.vlan(100 + index as u16, next);
    }
    frame.inner(&strip_ethernet(&tcp4())).build()
}

/// A frame the probes follow, at `hook`: whole, it gives `expected` (in the
/// hook's direction) and passes unchanged; cut at each header boundary and
/// at every byte before the end of what the fingerprint reads, it passes
/// unchanged and is not followed.
#[rstest]
#[case::ipv4_tcp(tcp4(), tcp4_key())]
#[case::ipv6_tcp(tcp6(), tcp6_key())]
#[case::ipv4_udp(frames::ipv4_udp(0x99, 53, &UDP_PAYLOAD), udp_key(0x99))]
#[case::ipv6_udp(frames::ipv6_udp(&UDP_PAYLOAD), udp_key(0))]
#[case::vlan_8021q_tcp(tagged(&[ETH_P_8021Q]), tcp4_key())]
#[case::qinq_8021ad_tcp(tagged(&[ETH_P_8021AD, ETH_P_8021Q]), tcp4_key())]
#[case::vxlan_8472(frames::vxlan(&tcp4(), 8472, 1), tcp4_key())]
#[case::vxlan_4789(frames::vxlan(&tcp4(), 4789, 1), tcp4_key())]
#[case::vxlan_ipv6_inner(frames::vxlan(&tcp6(), 8472, 1), tcp6_key())]
fn a_followed_frame_gives_its_fingerprint_and_none_cut_short(
    #[case] frame: Frame,
    #[case] expected: FlightKey,
    #[values(Hook::Xdp, Hook::TcIngress, Hook::TcEgress)] hook: Hook,
) {
    let mut probes = probes_starting_at(hook, "");
    let direction = if hook == Hook::TcEgress {
        DIRECTION_EGRESS
    } else {
        DIRECTION_INGRESS
    };
    let expected = FlightKey {
        direction: direction as u8,
        ..expected
    };
    assert_eq!(run(&mut probes, hook, &frame.bytes), vec![expected]);

    // The last boundary ends the payload. A TCP key is in the TCP header;
    // a UDP key reads the payload's first four bytes too.
    let headers_end = frame.boundaries[frame.boundaries.len() - 2];
    let key_end = headers_end
        + if expected.protocol == IPPROTO_UDP {
            4
        } else {
            0
        };
    for cut in 14..key_end {
        let truncated = &frame.bytes[..cut];
        match try_run(&mut probes, hook, truncated) {
            Ok(flights) => assert_eq!(flights, vec![], "cut at {cut}"),
            Err(_) => assert!(
                hook != Hook::Xdp && skb_runner_refuses(truncated),
                "cut at {cut} refused"
            ),
        }
    }
}

fn icmp_echo() -> Frame {
    let ip = Ipv4::new(
        "10.0.0.1".parse().unwrap(),
        "10.0.0.2".parse().unwrap(),
        IPPROTO_ICMP,
        5,
    );
    Frame::default()
        .ethernet(MAC_B, MAC_A, ETH_P_IP)
        .ipv4(&ip, 8)
        .icmp_echo(1, 1)
        .build()
}

fn ipv4_fragment() -> Frame {
    let mut ip = Ipv4::new(
        "10.0.0.1".parse().unwrap(),
        "10.0.0.2".parse().unwrap(),
        6,
        5,
    );
    ip.frag = 0x2000;
    Frame::default()
        .ethernet(MAC_B, MAC_A, ETH_P_IP)
        .ipv4(&ip, 20 + PAYLOAD.len())
        .tcp(1, 2, 3, 4)
        .payload(PAYLOAD)
        .build()
}

fn arp() -> Frame {
    Frame::default()
        .ethernet([0xff; 6], MAC_A, 0x0806)
        .payload(&[0; 28])
        .build()
}

/// A frame the probes must pass unchanged without following.
#[rstest]
#[case::icmp_echo(icmp_echo())]
#[case::pure_ack(frames::ipv4_tcp(1, 2, 3, &[]))]
#[case::ipv4_fragment(ipv4_fragment())]
#[case::arp(arp())]
fn an_ignored_frame_is_not_followed(
    #[case] frame: Frame,
    #[values(Hook::Xdp, Hook::TcIngress, Hook::TcEgress)] hook: Hook,
) {
    let mut probes = probes_starting_at(hook, "");
    assert_eq!(run(&mut probes, hook, &frame.bytes), vec![]);
}

fn strip_ethernet(frame: &Frame) -> Frame {
    Frame {
        bytes: frame.bytes[14..].to_vec(),
        boundaries: frame.boundaries[1..].iter().map(|end| end - 14).collect(),
    }
}

/// The hooks name their programs as strings; the object defines them as
/// functions. Every name a hook can ask for is a program of the right
/// kind, and the object has no program no hook asks for.
#[test]
fn every_program_a_hook_names_is_in_the_object_and_no_other() {
    let mut probes = probes_starting_at(Hook::Xdp, "");
    let mut named = Vec::new();
    for hook in Hook::ALL {
        for direction in Direction::BOTH {
            for hop in 0..MAX_HOPS {
                let name = hook.program(direction.code(), hop);
                let kind_matches = match hook.definition().attachment {
                    Attachment::Xdp => probes.program::<Xdp>(name).is_ok(),
                    Attachment::Tcx { .. } => probes.program::<SchedClassifier>(name).is_ok(),
                    Attachment::Tracepoint(_) => probes.program::<BtfTracePoint>(name).is_ok(),
                };
                assert!(kind_matches, "{hook:?} at {direction:?} hop {hop}: {name}");
                named.push(name);
            }
        }
    }
    for program in probes.program_names() {
        assert!(named.contains(&program), "no hook runs {program}");
    }
}
#[test]
fn the_kernel_follows_the_packets_the_rule_picks_and_no_others() {
    require_root();
    let one_in = 8;
    let mut probes = probes_on_loopback(Hook::TcIngress, "", 4, one_in);
    let mut followed = 0;
    for n in 0..400u32 {
        let (seq, ack) = (
            n.wrapping_mul(2_654_435_761),
            n.wrapping_mul(40_503) ^ 0x5a5a,
        );
        let frame = frames::ipv4_tcp(n as u16, seq, ack, PAYLOAD);
        let picked = key(6, n, seq, ack).picked(&OneIn::new(one_in));
        let flights = run(&mut probes, Hook::TcIngress, &frame.bytes);
        assert_eq!(
            flights.len() == 1,
            picked,
            "segment {n}: seq {seq} ack {ack}"
        );
        followed += flights.len();
    }
    // About one in eight of 400.
    assert!((30..75).contains(&followed), "{followed} followed");
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

/// A TCP segment from a client to `dst`.
fn tcp4_to(dst: Ipv4Addr, seq: u32) -> Frame {
    let ip = Ipv4::new(Ipv4Addr::new(10, 78, 1, 2), dst, IPPROTO_TCP, seq as u16);
    Frame::default()
        .ethernet(MAC_B, MAC_A, ETH_P_IP)
        .ipv4(&ip, 20 + PAYLOAD.len())
        .tcp(40000, 80, seq, 7)
        .payload(PAYLOAD)
        .build()
}

#[test]
fn packets_to_two_pods_land_in_their_own_pods_histograms() {
    require_root();
    // Hop 1 of ingress (after TC ingress) belongs to a pod: the segment
    // that ends there is counted per pod, by destination address.
    let config = ProbeConfig {
        pod_hops: [0b10, 0],
        ..loopback_config("", 4, 1)
    };
    let mut probes = load(&config);
    let ingress = Direction::Ingress.code();
    let programs = [
        Hook::TcIngress.program(ingress, 0),
        Hook::DeviceIngress.program(ingress, 1),
    ];
    for program in programs {
        load_classifier(&mut probes, program);
    }
    let pod = |index: u8, address: Ipv4Addr| Pod {
        index,
        netns: format!("pod{index}"),
        devices: Vec::new(),
        addresses: vec![IpAddr::V4(address)],
    };
    let (first, second) = (Ipv4Addr::new(10, 78, 2, 2), Ipv4Addr::new(10, 78, 2, 3));
    probes
        .add_pods(&[pod(1, first), pod(2, second)])
        .expect("pod addresses");
    let no_pod = Ipv4Addr::new(10, 78, 2, 9);
    let mut seq = 1000;
    for (address, packets) in [(first, 3), (second, 5), (no_pod, 2)] {
        for _ in 0..packets {
            seq += 100;
            let frame = tcp4_to(address, seq);
            for program in programs {
                let classifier = probes.program::<SchedClassifier>(program).expect("tc");
                let options = TestRunOptions {
                    data_in: Some(&frame.bytes),
                    ..TestRunOptions::default()
                };
                let result = classifier.test_run(options).expect("BPF_PROG_TEST_RUN");
                assert_eq!(result.return_value, TC_NEXT);
            }
        }
    }
    let snapshot = probes.snapshot().expect("snapshot");
    let segment = slot(ingress, 1);
    let count = |pod| {
        snapshot
            .pod_histograms
            .get(&PodSlot { slot: segment, pod })
            .map(|histogram| histogram.count)
    };
    assert_eq!((count(1), count(2)), (Some(3), Some(5)));
    assert_eq!(snapshot.pod_histograms.len(), 2, "only those two pods");
    // Over all pods: both pods' and the packets of no known pod.
    assert_eq!(snapshot.histograms[segment as usize].count, 10);
    // End to end stays node-wide.
    assert_eq!(snapshot.histograms[slot(ingress, 0) as usize].count, 10);
}
