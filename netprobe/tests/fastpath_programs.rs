//! The fast path's XDP and TC programs run with BPF_PROG_TEST_RUN on crafted
//! VXLAN frames: a valid frame for a known pod is redirected with exactly
//! the inner frame the kernel's path would deliver; breaking any one rule,
//! or cutting the frame anywhere in its headers, passes it unchanged and
//! counts why.

mod support;

use netprobe::fastpath::FastpathHook;
use netprobe_common::fastpath::{Counter, HEADERS_LEN, OUTER_LEN};
use support::{
    frames::{Frame, internet_checksum, skb_runner_refuses},
    vxlan::{
        BRIDGE_MAC, CLIENT, GONE_POD, Inner, NIC_MAC, NODE, POD, POD_MAC, POD_MTU, REMOTE,
        VxlanFrame, World, check_against_reference, run, verdicts,
    },
};

const HOOKS: [FastpathHook; 2] = [FastpathHook::Xdp, FastpathHook::Tc];

#[test]
fn a_valid_frame_is_redirected_as_the_bridge_would_deliver_it() {
    let world = World::new();
    for hook in HOOKS {
        let mut fastpath = world.load();
        let frame = VxlanFrame::valid().build();
        let run = run(&mut fastpath, hook, &frame.bytes).expect("test run");
        let (_, redirect) = verdicts(hook);
        assert_eq!(run.return_value, redirect, "{hook:?}");
        assert_eq!(run.counter, Counter::Fastpathed);
        let out = &run.output;
        let inner = &frame.bytes[OUTER_LEN..];
        assert_eq!(
            out.len(),
            inner.len(),
            "{hook:?}: the outer 50 bytes stripped"
        );
        assert_eq!(out[..6], POD_MAC, "{hook:?}: to the pod");
        assert_eq!(out[6..12], BRIDGE_MAC, "{hook:?}: from the bridge");
        assert_eq!(out[12..14], inner[12..14], "{hook:?}: EtherType");
        assert_eq!(out[22], inner[22] - 1, "{hook:?}: TTL decremented");
        assert_eq!(
            internet_checksum(&out[14..34]),
            0,
            "{hook:?}: IPv4 checksum"
        );
        // Everything else of the inner packet is as it was.
        let unchanged = |bytes: &[u8]| {
            let mut bytes = bytes.to_vec();
            bytes[..12].fill(0);
            bytes[22] = 0;
            bytes[24..26].fill(0);
            bytes
        };
        assert_eq!(unchanged(out), unchanged(inner), "{hook:?}");
        check_against_reference(&world, hook, &frame.bytes, &run);
    }
}

/// The valid frame with one rule broken, and the counter it must land in.
fn broken_frames() -> Vec<(&'static str, Vec<u8>, Counter)> {
    let valid = VxlanFrame::valid();
    let with = |change: fn(&mut VxlanFrame)| {
        let mut frame = valid.clone();
        change(&mut frame);
        frame.build().bytes
    };
    let flipped = |at: usize, bits: u8| {
        let mut bytes = valid.build().bytes;
        bytes[at] ^= bits;
        bytes
    };
    let mut outer_vlan = Frame::default()
        .ethernet(NIC_MAC, [2, 0, 0, 0, 0, 1], 0x8100)
        .vlan(10, 0x0800)
        .build()
        .bytes;
    outer_vlan.extend_from_slice(&valid.build().bytes[14..]);
    let mut outer_ipv6 = valid.build().bytes;
    outer_ipv6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let mut too_long = valid.build().bytes;
    too_long.push(0);
    vec![
        ("wrong port", with(|f| f.port = 4789), Counter::NotVxlan),
        ("wrong VNI", with(|f| f.vni = 2), Counter::OtherVni),
        (
            "I flag clear",
            with(|f| f.i_flag = false),
            Counter::VxlanFlags,
        ),
        ("VXLAN reserved bits", flipped(43, 1), Counter::VxlanFlags),
        (
            "unknown outer source",
            with(|f| f.outer.src = "10.77.0.9".parse().unwrap()),
            Counter::UnknownRemote,
        ),
        (
            "outer destination not local",
            with(|f| f.outer.dst = "10.77.0.3".parse().unwrap()),
            Counter::NotLocal,
        ),
        (
            "outer destination MAC not the NIC's",
            with(|f| f.outer_dst_mac = [0xff; 6]),
            Counter::NotLocal,
        ),
        (
            "unknown inner destination",
            with(|f| f.inner.dst = "10.78.2.9".parse().unwrap()),
            Counter::UnknownPod,
        ),
        (
            "pod's veth gone",
            with(|f| f.inner.dst = GONE_POD),
            Counter::PodGone,
        ),
        (
            "outer IPv4 options",
            with(|f| f.outer.options = vec![1, 1, 1, 0]),
            Counter::IpOptions,
        ),
        (
            "inner IPv4 options",
            with(|f| f.inner.options = vec![1, 1, 1, 0]),
            Counter::IpOptions,
        ),
        (
            "outer fragment (more fragments)",
            with(|f| f.outer.frag = 0x2000),
            Counter::Fragment,
        ),
        (
            "outer fragment (offset)",
            with(|f| f.outer.frag = 0x0010),
            Counter::Fragment,
        ),
        (
            "inner fragment",
            with(|f| f.inner.frag = 0x2001),
            Counter::Fragment,
        ),
        (
            "inner IPv6",
            with(|f| f.inner_kind = Inner::Ipv6),
            Counter::InnerOther,
        ),
        (
            "inner ARP broadcast",
            with(|f| f.inner_kind = Inner::Arp),
            Counter::InnerOther,
        ),
        (
            "inner destination MAC not the VTEP's",
            with(|f| f.inner_dst_mac = [0xff; 6]),
            Counter::InnerOther,
        ),
        (
            "inner TTL 1",
            with(|f| f.inner.ttl = 1),
            Counter::TtlExpired,
        ),
        (
            "larger than the pod's MTU",
            with(|f| f.payload = vec![7; usize::from(POD_MTU)]),
            Counter::TooBig,
        ),
        ("outer VLAN tag", outer_vlan, Counter::NotVxlan),
        ("outer IPv6", outer_ipv6, Counter::NotVxlan),
        ("not UDP", with(|f| f.outer.protocol = 6), Counter::NotVxlan),
        (
            "outer header checksum wrong",
            flipped(14 + 10, 0xff),
            Counter::Malformed,
        ),
        (
            "inner header checksum wrong",
            flipped(OUTER_LEN + 14 + 10, 0xff),
            Counter::Malformed,
        ),
        ("bytes after the packet", too_long, Counter::Malformed),
    ]
}

#[test]
fn every_broken_rule_passes_the_frame_unchanged() {
    let world = World::new();
    for hook in HOOKS {
        let mut fastpath = world.load();
        for (name, frame, counter) in broken_frames() {
            let run = run(&mut fastpath, hook, &frame).expect("test run");
            assert_eq!(run.return_value, verdicts(hook).0, "{hook:?}, {name}: pass");
            assert_eq!(run.output, frame, "{hook:?}, {name}: unchanged");
            assert_eq!(run.counter, counter, "{hook:?}, {name}: counted as");
            check_against_reference(&world, hook, &frame, &run);
        }
    }
}

#[test]
fn frames_cut_anywhere_in_the_headers_pass_unchanged() {
    let world = World::new();
    let frame = VxlanFrame::valid().build();
    // Every byte inside the headers, every header boundary, and the whole
    // frame but one byte.
    let mut cuts: Vec<usize> = (0..=HEADERS_LEN).collect();
    cuts.extend(&frame.boundaries);
    cuts.push(frame.bytes.len() - 1);
    cuts.retain(|&cut| cut < frame.bytes.len());
    for hook in HOOKS {
        let mut fastpath = world.load();
        for &cut in &cuts {
            let cut_frame = &frame.bytes[..cut];
            match run(&mut fastpath, hook, cut_frame) {
                Ok(run) => {
                    assert_eq!(run.return_value, verdicts(hook).0, "{hook:?} cut at {cut}");
                    assert_eq!(run.output, cut_frame, "{hook:?} cut at {cut}");
                    check_against_reference(&world, hook, cut_frame, &run);
                }
                // The runners refuse what no hook ever sees: less than an
                // Ethernet header, and for TC (after the stack's checks)
                // less than the network header.
                Err(error) => assert!(
                    cut < 14 || (hook == FastpathHook::Tc && skb_runner_refuses(cut_frame)),
                    "{hook:?} cut at {cut} refused: {error}"
                ),
            }
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
}
