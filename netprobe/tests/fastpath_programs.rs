//! The fast path's programs run with BPF_PROG_TEST_RUN on crafted frames.
//! Ingress (XDP and TC): a valid VXLAN frame for a known pod is redirected
//! with exactly the inner frame the kernel's path would deliver. Egress: a
//! valid frame from a pod to a pod behind a known VTEP is redirected
//! encapsulated exactly as the reference says. Breaking any one rule, or
//! cutting the frame at any byte, passes it unchanged and counts why. Each
//! frame is a named case.

mod support;

use netprobe::fastpath::FastpathHook;
use netprobe_common::fastpath::{Counter, EgressCounter, OUTER_LEN};
use rstest::rstest;
use support::{
    encap::{
        EgressWorld, GATEWAY, INHERITING_POD, LOCAL_POD, MAX_INNER, OTHER_POD_MAC, OUTSIDE,
        PodFrame, REMOTE_POD, TC_ACT_REDIRECT, TC_PASS, UNRESOLVED_POD, inheriting_route, outer_id,
        remote_route, run_egress, src_port,
    },
    frames::{
        Frame, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, internet_checksum, skb_runner_refuses,
    },
    vxlan::{
        BRIDGE_MAC, CLIENT, GONE_POD, Inner, NIC_MAC, NODE, POD, POD_MAC, POD_MTU, REMOTE,
        VxlanFrame, World, check_against_reference, run, verdicts,
    },
};

#[rstest]
fn a_valid_frame_is_redirected_as_the_bridge_would_deliver_it(
    #[values(FastpathHook::Xdp, FastpathHook::Tc)] hook: FastpathHook,
) {
    let world = World::new();
    let mut fastpath = world.load();
    let frame = VxlanFrame::valid().build();
    let run = run(&mut fastpath, hook, &frame.bytes).expect("test run");
    let (_, redirect) = verdicts(hook);
    assert_eq!(run.return_value, redirect);
    assert_eq!(run.counter, Counter::Fastpathed);
    let out = &run.output;
    let inner = &frame.bytes[OUTER_LEN..];
    assert_eq!(out.len(), inner.len(), "the outer 50 bytes stripped");
    assert_eq!(out[..6], POD_MAC, "to the pod");
    assert_eq!(out[6..12], BRIDGE_MAC, "from the bridge");
    assert_eq!(out[12..14], inner[12..14], "EtherType");
    assert_eq!(out[22], inner[22] - 1, "TTL decremented");
    assert_eq!(internet_checksum(&out[14..34]), 0, "IPv4 checksum");
    // Everything else of the inner packet is as it was.
    let unchanged = |bytes: &[u8]| {
        let mut bytes = bytes.to_vec();
        bytes[..12].fill(0);
        bytes[22] = 0;
        bytes[24..26].fill(0);
        bytes
    };
    assert_eq!(unchanged(out), unchanged(inner));
    check_against_reference(&world, hook, &frame.bytes, &run);
}

fn ingress_with(change: fn(&mut VxlanFrame)) -> Vec<u8> {
    let mut frame = VxlanFrame::valid();
    change(&mut frame);
    frame.build().bytes
}

fn ingress_flipped(at: usize, bits: u8) -> Vec<u8> {
    let mut bytes = VxlanFrame::valid().build().bytes;
    bytes[at] ^= bits;
    bytes
}

fn outer_vlan() -> Vec<u8> {
    let mut frame = Frame::default()
        .ethernet(NIC_MAC, [2, 0, 0, 0, 0, 1], 0x8100)
        .vlan(10, 0x0800)
        .build()
        .bytes;
    frame.extend_from_slice(&VxlanFrame::valid().build().bytes[14..]);
    frame
}

fn outer_ipv6() -> Vec<u8> {
    let mut bytes = VxlanFrame::valid().build().bytes;
    bytes[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    bytes
}

fn with_trailing_byte(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.push(0);
    bytes
}

#[rstest]
#[case::wrong_port(ingress_with(|f| f.port = 4789), Counter::NotVxlan)]
#[case::wrong_vni(ingress_with(|f| f.vni = 2), Counter::OtherVni)]
#[case::i_flag_clear(ingress_with(|f| f.i_flag = false), Counter::VxlanFlags)]
#[case::vxlan_reserved_bits(ingress_flipped(43, 1), Counter::VxlanFlags)]
#[case::unknown_outer_source(
    ingress_with(|f| f.outer.src = "10.77.0.9".parse().unwrap()),
    Counter::UnknownRemote
)]
#[case::outer_destination_not_local(
    ingress_with(|f| f.outer.dst = "10.77.0.3".parse().unwrap()),
    Counter::NotLocal
)]
#[case::outer_destination_mac_not_the_nics(
    ingress_with(|f| f.outer_dst_mac = [0xff; 6]),
    Counter::NotLocal
)]
#[case::unknown_inner_destination(
    ingress_with(|f| f.inner.dst = "10.78.2.9".parse().unwrap()),
    Counter::UnknownPod
)]
#[case::pods_veth_gone(ingress_with(|f| f.inner.dst = GONE_POD), Counter::PodGone)]
#[case::outer_ipv4_options(ingress_with(|f| f.outer.options = vec![1, 1, 1, 0]), Counter::IpOptions)]
#[case::inner_ipv4_options(ingress_with(|f| f.inner.options = vec![1, 1, 1, 0]), Counter::IpOptions)]
#[case::outer_more_fragments(ingress_with(|f| f.outer.frag = 0x2000), Counter::Fragment)]
#[case::outer_fragment_offset(ingress_with(|f| f.outer.frag = 0x0010), Counter::Fragment)]
#[case::inner_fragment(ingress_with(|f| f.inner.frag = 0x2001), Counter::Fragment)]
#[case::inner_ipv6(ingress_with(|f| f.inner_kind = Inner::Ipv6), Counter::InnerOther)]
#[case::inner_arp_broadcast(ingress_with(|f| f.inner_kind = Inner::Arp), Counter::InnerOther)]
#[case::inner_destination_mac_not_the_vteps(
    ingress_with(|f| f.inner_dst_mac = [0xff; 6]),
    Counter::InnerOther
)]
#[case::inner_ttl_1(ingress_with(|f| f.inner.ttl = 1), Counter::TtlExpired)]
#[case::larger_than_the_pods_mtu(
    ingress_with(|f| f.payload = vec![7; usize::from(POD_MTU)]),
    Counter::TooBig
)]
#[case::outer_vlan_tag(outer_vlan(), Counter::NotVxlan)]
#[case::outer_ipv6(outer_ipv6(), Counter::NotVxlan)]
#[case::not_udp(ingress_with(|f| f.outer.protocol = 6), Counter::NotVxlan)]
#[case::outer_header_checksum_wrong(ingress_flipped(14 + 10, 0xff), Counter::Malformed)]
#[case::inner_header_checksum_wrong(ingress_flipped(OUTER_LEN + 14 + 10, 0xff), Counter::Malformed)]
#[case::bytes_after_the_packet(
    with_trailing_byte(VxlanFrame::valid().build().bytes),
    Counter::Malformed
)]
fn an_ingress_frame_breaking_a_rule_passes_unchanged(
    #[values(FastpathHook::Xdp, FastpathHook::Tc)] hook: FastpathHook,
    #[case] frame: Vec<u8>,
    #[case] counter: Counter,
) {
    let world = World::new();
    let mut fastpath = world.load();
    let run = run(&mut fastpath, hook, &frame).expect("test run");
    assert_eq!(run.return_value, verdicts(hook).0, "pass");
    assert_eq!(run.output, frame, "unchanged");
    assert_eq!(run.counter, counter, "counted as");
    check_against_reference(&world, hook, &frame, &run);
}

#[rstest]
fn an_ingress_frame_cut_at_any_byte_passes_unchanged(
    #[values(FastpathHook::Xdp, FastpathHook::Tc)] hook: FastpathHook,
) {
    let world = World::new();
    let mut fastpath = world.load();
    let frame = VxlanFrame::valid().build().bytes;
    for cut in 0..frame.len() {
        let cut_frame = &frame[..cut];
        match run(&mut fastpath, hook, cut_frame) {
            Ok(run) => {
                assert_eq!(run.return_value, verdicts(hook).0, "cut at {cut}");
                assert_eq!(run.output, cut_frame, "cut at {cut}");
                check_against_reference(&world, hook, cut_frame, &run);
            }
            // The runners refuse what no hook ever sees: less than an
            // Ethernet header, and for TC (after the stack's checks) less
            // than the network header.
            Err(error) => assert!(
                cut < 14 || (hook == FastpathHook::Tc && skb_runner_refuses(cut_frame)),
                "cut at {cut} refused: {error}"
            ),
        }
    }
}

#[test]
fn the_test_node_is_what_the_frames_assume() {
    // Guards the constants above against drifting apart.
    let frame = VxlanFrame::valid().build().bytes;
    assert_eq!(frame[..6], NIC_MAC);
    assert_eq!(frame[26..30], REMOTE.octets());
    assert_eq!(frame[30..34], NODE.octets());
    assert_eq!(frame[OUTER_LEN + 26..OUTER_LEN + 30], CLIENT.octets());
    assert_eq!(frame[OUTER_LEN + 30..OUTER_LEN + 34], POD.octets());
    let pod_frame = PodFrame::tcp().build();
    assert_eq!(pod_frame[..6], BRIDGE_MAC);
    assert_eq!(pod_frame[26..30], POD.octets());
}

/// Runs `frame` through the egress program and checks it against the
/// reference; returns the encapsulated frame, if it was.
fn egress(world: &EgressWorld, frame: &[u8], expected: Result<(), EgressCounter>) -> Vec<u8> {
    let mut fastpath = world.load();
    let (return_value, output, counter) = run_egress(&mut fastpath, frame).expect("test run");
    match expected {
        Ok(()) => {
            assert_eq!(return_value, TC_ACT_REDIRECT, "redirected");
            assert_eq!(counter, EgressCounter::Encapsulated);
            // The first packet of a fresh load takes identification 0.
            assert_eq!(outer_id(&output), 0);
            let port = src_port(&output);
            let reference = world
                .reference(frame, 0, port)
                .expect("the reference encapsulates it too");
            assert_eq!(output, reference, "encapsulated frame");
        }
        Err(reason) => {
            assert_eq!(return_value, TC_PASS, "passed");
            assert_eq!(output, frame, "unchanged");
            assert_eq!(counter, reason, "counted as");
            assert_eq!(
                world.reference(frame, 0, 0),
                Err(reason),
                "the reference agrees"
            );
        }
    }
    output
}

fn pod_with(change: fn(&mut PodFrame)) -> Vec<u8> {
    let mut frame = PodFrame::tcp();
    change(&mut frame);
    frame.build()
}

#[rstest]
#[case::tcp_with_udp_checksums(PodFrame::tcp().build())]
#[case::udp(PodFrame::to(REMOTE_POD, IPPROTO_UDP).build())]
#[case::icmp(PodFrame::to(REMOTE_POD, IPPROTO_ICMP).build())]
#[case::ecn_congestion_mark(pod_with(|f| f.tos = 0x03))]
#[case::largest_inner_packet(pod_with(|f| f.payload = vec![9; usize::from(MAX_INNER) - 40]))]
#[case::inheriting_device_tcp(PodFrame::to(INHERITING_POD, IPPROTO_TCP).build())]
#[case::inheriting_device_tos_and_ecn(pod_with(|f| {
    f.ip.dst = INHERITING_POD;
    f.tos = 0xb9;
}))]
#[case::inheriting_device_without_df(pod_with(|f| {
    f.ip.dst = INHERITING_POD;
    f.ip.frag = 0;
}))]
#[case::inheriting_device_udp_without_checksum(pod_with(|f| {
    f.ip.dst = INHERITING_POD;
    f.ip.protocol = IPPROTO_UDP;
}))]
#[case::inheriting_device_other_protocol(pod_with(|f| {
    f.ip.dst = INHERITING_POD;
    f.ip.protocol = 47;
}))]
fn a_pods_frame_to_a_remote_pod_is_encapsulated_as_the_device_would(#[case] frame: Vec<u8>) {
    let world = EgressWorld::new();
    let out = egress(&world, &frame, Ok(()));
    let route = if frame[30..34] == INHERITING_POD.octets() {
        inheriting_route()
    } else {
        remote_route()
    };
    let port = src_port(&out);
    assert!(
        (route.port_min..route.port_min + route.port_span).contains(&port),
        "source port {port} in the device's range"
    );
    assert_eq!(internet_checksum(&out[14..34]), 0, "outer IPv4 checksum");
    assert_eq!(internet_checksum(&out[64..84]), 0, "inner IPv4 checksum");
}

fn zero_udp_checksum(mut frame: Vec<u8>) -> Vec<u8> {
    frame[40..42].fill(0);
    frame
}

fn flipped(mut frame: Vec<u8>, at: usize, bits: u8) -> Vec<u8> {
    frame[at] ^= bits;
    frame
}

fn arp() -> Vec<u8> {
    Frame::default()
        .ethernet(BRIDGE_MAC, POD_MAC, 0x0806)
        .payload(&[0; 28])
        .build()
        .bytes
}

#[rstest]
#[case::broadcast_mac(pod_with(|f| f.dst_mac = [0xff; 6]), EgressCounter::Broadcast)]
#[case::multicast_mac(pod_with(|f| f.dst_mac = [0x01, 0, 0x5e, 0, 0, 1]), EgressCounter::Broadcast)]
#[case::multicast_address(pod_with(|f| f.ip.dst = "224.0.0.251".parse().unwrap()), EgressCounter::Broadcast)]
#[case::limited_broadcast(pod_with(|f| f.ip.dst = "255.255.255.255".parse().unwrap()), EgressCounter::Broadcast)]
#[case::pod_on_the_same_bridge(pod_with(|f| {
    f.dst_mac = OTHER_POD_MAC;
    f.ip.dst = LOCAL_POD;
}), EgressCounter::Bridged)]
#[case::arp(arp(), EgressCounter::NotIpv4)]
#[case::ipv6(pod_with(|f| f.ether_type = 0x86dd), EgressCounter::NotIpv4)]
#[case::ipv4_options(pod_with(|f| f.ip.options = vec![1, 1, 1, 0]), EgressCounter::IpOptions)]
#[case::more_fragments(pod_with(|f| f.ip.frag = 0x2000), EgressCounter::Fragment)]
#[case::fragment_offset(pod_with(|f| f.ip.frag = 0x0010), EgressCounter::Fragment)]
#[case::ttl_1(pod_with(|f| f.ip.ttl = 1), EgressCounter::TtlExpired)]
#[case::ttl_0(pod_with(|f| f.ip.ttl = 0), EgressCounter::TtlExpired)]
#[case::foreign_source(pod_with(|f| f.ip.src = "10.78.2.9".parse().unwrap()), EgressCounter::ForeignSource)]
#[case::to_the_gateway(pod_with(|f| f.ip.dst = GATEWAY), EgressCounter::ToNode)]
#[case::to_the_node(pod_with(|f| f.ip.dst = NODE), EgressCounter::ToNode)]
#[case::to_a_pod_on_this_node(pod_with(|f| f.ip.dst = LOCAL_POD), EgressCounter::LocalPod)]
#[case::routed_elsewhere(pod_with(|f| f.ip.dst = OUTSIDE), EgressCounter::NotOverlay)]
#[case::vtep_not_known_yet(pod_with(|f| f.ip.dst = UNRESOLVED_POD), EgressCounter::UnknownRemote)]
#[case::one_byte_too_big(pod_with(|f| f.payload = vec![9; usize::from(MAX_INNER) - 39]), EgressCounter::TooBig)]
#[case::udp_without_checksum(
    zero_udp_checksum(PodFrame::to(REMOTE_POD, IPPROTO_UDP).build()),
    EgressCounter::ChecksumUnsupported
)]
#[case::other_protocol(pod_with(|f| f.ip.protocol = 47), EgressCounter::ChecksumUnsupported)]
#[case::ipv4_version_6(flipped(PodFrame::tcp().build(), 14, 0x20), EgressCounter::Malformed)]
#[case::header_length_4(flipped(PodFrame::tcp().build(), 14, 0x01), EgressCounter::Malformed)]
#[case::header_checksum_wrong(flipped(PodFrame::tcp().build(), 24, 0xff), EgressCounter::Malformed)]
#[case::bytes_after_the_packet(with_trailing_byte(PodFrame::tcp().build()), EgressCounter::Malformed)]
fn a_pods_frame_breaking_a_rule_passes_unchanged(
    #[case] frame: Vec<u8>,
    #[case] counter: EgressCounter,
) {
    egress(&EgressWorld::new(), &frame, Err(counter));
}

#[test]
fn a_veth_that_is_no_served_pods_passes_everything() {
    let world = EgressWorld {
        ports: Vec::new(),
        ..EgressWorld::new()
    };
    egress(
        &world,
        &PodFrame::tcp().build(),
        Err(EgressCounter::UnknownPort),
    );
}

#[rstest]
#[case::tcp(PodFrame::tcp().build())]
#[case::udp(PodFrame::to(REMOTE_POD, IPPROTO_UDP).build())]
fn a_pods_frame_cut_at_any_byte_passes_unchanged(#[case] frame: Vec<u8>) {
    let world = EgressWorld::new();
    let mut fastpath = world.load();
    for cut in 0..frame.len() {
        let cut_frame = &frame[..cut];
        match run_egress(&mut fastpath, cut_frame) {
            Ok((return_value, output, counter)) => {
                assert_eq!(return_value, TC_PASS, "cut at {cut}");
                assert_eq!(output, cut_frame, "cut at {cut}");
                assert_eq!(
                    Err(counter),
                    world.reference(cut_frame, 0, 0),
                    "cut at {cut}"
                );
            }
            Err(error) => assert!(
                skb_runner_refuses(cut_frame),
                "cut at {cut} refused: {error}"
            ),
        }
    }
}

#[test]
fn identifications_count_up_packet_by_packet() {
    let world = EgressWorld::new();
    let mut fastpath = world.load();
    let frame = PodFrame::tcp().build();
    for expected in 0..3u16 {
        let (_, output, counter) = run_egress(&mut fastpath, &frame).expect("test run");
        assert_eq!(counter, EgressCounter::Encapsulated);
        assert_eq!(outer_id(&output), expected);
        assert_eq!(
            output,
            world
                .reference(&frame, expected, src_port(&output))
                .expect("encapsulated")
        );
    }
}
