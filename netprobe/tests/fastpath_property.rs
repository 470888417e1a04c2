//! Property tests of the fast path's programs. Ingress: 100,000 random
//! frames, and valid VXLAN ones mutated byte-wise, re-checksummed or not,
//! truncated or grown, each run once through XDP and once through TC with
//! BPF_PROG_TEST_RUN. Egress: as many frames from a pod, run through the
//! egress program. A frame is redirected exactly when the reference of the
//! rules (`support::vxlan`, `support::encap`) says so, with exactly its
//! bytes (the outer UDP source port, which comes from the kernel's flow
//! hash, in the device's range and the same for every packet of a flow);
//! every other frame is passed unchanged, counted under the reference's
//! reason.

mod support;

use std::{collections::BTreeMap, net::Ipv4Addr, time::Instant};

use netprobe::fastpath::{FastpathHook, LoadedFastpath};
use netprobe_common::fastpath::{Counter, EgressCounter, OUTER_LEN};
use support::{
    encap::{
        EgressWorld, GATEWAY, INHERITING_POD, LOCAL_POD, OTHER_POD_MAC, OUTSIDE, PodFrame,
        REMOTE_POD, TC_ACT_REDIRECT, TC_PASS, UNRESOLVED_POD, inheriting_route, remote_route,
        run_egress, src_port,
    },
    frames::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, internet_checksum, skb_runner_refuses},
    vxlan::{GONE_POD, Inner, POD, PORT, REMOTE, VNI, VxlanFrame, World, test_run, verdicts},
};

const FRAMES: usize = 100_000;

/// splitmix64: small, fast and deterministic, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True `percent` times in a hundred.
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[self.below(choices.len())]
    }

    fn address(&mut self) -> Ipv4Addr {
        Ipv4Addr::from(self.next() as u32)
    }
}

/// A well-formed VXLAN frame, most fields right, some wrong.
fn structured(rng: &mut Rng) -> Vec<u8> {
    let mut frame = VxlanFrame::valid();
    let payload = match rng.below(4) {
        0 => rng.below(40),
        1 => 1400 + rng.below(100),
        _ => rng.below(1400),
    };
    frame.payload = (0..payload).map(|_| rng.byte()).collect();
    if rng.chance(20) {
        frame.inner.dst = if rng.chance(50) {
            GONE_POD
        } else {
            rng.address()
        };
    }
    if rng.chance(10) {
        frame.outer.src = rng.address();
    }
    if rng.chance(10) {
        frame.outer.dst = if rng.chance(50) {
            rng.address()
        } else {
            rng.pick(&[POD, REMOTE])
        };
    }
    if rng.chance(10) {
        frame.port = rng.pick(&[4789, 0, PORT + 1, 53]);
    }
    if rng.chance(10) {
        frame.vni = rng.pick(&[0, 2, VNI + 0x100, 0xff_ffff]);
    }
    frame.i_flag = !rng.chance(5);
    if rng.chance(10) {
        frame.inner_kind = rng.pick(&[Inner::Ipv6, Inner::Arp]);
    }
    if rng.chance(10) {
        frame.inner.ttl = rng.pick(&[0, 1, 2, 255]);
    }
    for ip in [&mut frame.outer, &mut frame.inner] {
        if rng.chance(5) {
            ip.frag = rng.pick(&[0, 0x2000, 0x0001, 0x3fff, 0x8000]);
        }
        if rng.chance(5) {
            ip.options = (0..4 * (1 + rng.below(3))).map(|_| rng.byte()).collect();
        }
    }
    frame.build().bytes
}

/// Byte-wise mutations of a frame, mostly in the headers, with the IPv4
/// checksums then made right or not, and the length changed or not.
fn mutated(rng: &mut Rng) -> Vec<u8> {
    let bytes = structured(rng);
    mutate(rng, bytes, OUTER_LEN + 34, &[14, OUTER_LEN + 14])
}

/// Flips or replaces one to four bytes of `bytes`, four in five times
/// within the first `headers`; recomputes the IPv4 checksums at `ipv4`
/// (or not); and cuts or grows the frame (or not).
fn mutate(rng: &mut Rng, mut bytes: Vec<u8>, headers: usize, ipv4: &[usize]) -> Vec<u8> {
    for _ in 0..1 + rng.below(4) {
        let position = if rng.chance(80) {
            rng.below(bytes.len().min(headers))
        } else {
            rng.below(bytes.len())
        };
        if rng.chance(50) {
            bytes[position] ^= 1 << rng.below(8);
        } else {
            bytes[position] = rng.byte();
        }
    }
    if rng.chance(60) {
        for at in ipv4 {
            fix_checksum(&mut bytes, *at);
        }
    }
    match rng.below(10) {
        0 => bytes.truncate(rng.below(bytes.len() + 1)),
        1 => bytes.extend((0..1 + rng.below(8)).map(|_| rng.byte())),
        _ => {}
    }
    bytes
}

/// Recomputes the checksum of the 20-byte IPv4 header at `at`, if the
/// frame holds one there.
fn fix_checksum(bytes: &mut [u8], at: usize) {
    if bytes.len() < at + 20 || bytes[at] & 0x0f != 5 {
        return;
    }
    bytes[at + 10..at + 12].fill(0);
    let checksum = internet_checksum(&bytes[at..at + 20]);
    bytes[at + 10..at + 12].copy_from_slice(&checksum.to_be_bytes());
}

/// Random bytes, often with an IPv4 Ethernet header to get further in.
fn random(rng: &mut Rng) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..rng.below(160)).map(|_| rng.byte()).collect();
    if bytes.len() >= 15 && rng.chance(50) {
        bytes[12..15].copy_from_slice(&[0x08, 0x00, 0x45]);
    }
    bytes
}

/// Outcomes of a hook over the whole run.
#[derive(Default)]
struct Tally {
    runs: usize,
    refused: usize,
    by_counter: BTreeMap<&'static str, usize>,
}

fn check(
    world: &World,
    fastpath: &mut LoadedFastpath,
    hook: FastpathHook,
    frame: &[u8],
    tally: &mut Tally,
) {
    let expected = world.reference(frame);
    let counter = *expected.as_ref().err().unwrap_or(&Counter::Fastpathed);
    let before = fastpath.maps.counter(counter).expect("counter");
    let (return_value, output) = match test_run(fastpath, hook, frame) {
        Ok(run) => run,
        Err(error) => {
            // The runners refuse frames no hook sees: shorter than an
            // Ethernet header, or (TC) than the stack's network header.
            assert!(
                frame.len() < 14 || (hook == FastpathHook::Tc && skb_runner_refuses(frame)),
                "{hook:?} refused {frame:02x?}: {error}"
            );
            tally.refused += 1;
            return;
        }
    };
    let after = fastpath.maps.counter(counter).expect("counter");
    let (pass, redirect) = verdicts(hook);
    match &expected {
        Ok(inner) => {
            assert_eq!(
                return_value, redirect,
                "{hook:?} must redirect {frame:02x?}"
            );
            assert_eq!(&output, inner, "{hook:?} rewrote {frame:02x?}");
        }
        Err(_) => {
            assert_eq!(return_value, pass, "{hook:?} must pass {frame:02x?}");
            assert_eq!(output, frame, "{hook:?} changed a passed frame");
        }
    }
    assert_eq!(
        after,
        before + 1,
        "{hook:?}: counted as {counter:?}: {frame:02x?}"
    );
    tally.runs += 1;
    *tally.by_counter.entry(counter.name()).or_default() += 1;
}

#[test]
fn random_and_mutated_frames_follow_the_reference() {
    let world = World::new();
    let mut fastpaths = [world.load(), world.load()];
    let hooks = [FastpathHook::Xdp, FastpathHook::Tc];
    let mut tallies = [Tally::default(), Tally::default()];
    let mut rng = Rng(0x6e70_6661_7374);
    let started = Instant::now();
    for _ in 0..FRAMES {
        let frame = match rng.below(10) {
            0..3 => structured(&mut rng),
            3..9 => mutated(&mut rng),
            _ => random(&mut rng),
        };
        for ((hook, fastpath), tally) in hooks.iter().zip(&mut fastpaths).zip(&mut tallies) {
            check(&world, fastpath, *hook, &frame, tally);
        }
    }
    for (hook, tally) in hooks.iter().zip(&tallies) {
        println!(
            "{hook:?}: {} frames run, {} refused by the test runner: {:?}",
            tally.runs, tally.refused, tally.by_counter
        );
        // The frames reach every rule: each counter but the helper
        // failure (which no frame should cause) is hit.
        for counter in Counter::ALL {
            if counter != Counter::HelperFailed {
                assert!(
                    tally.by_counter.get(counter.name()).copied().unwrap_or(0) > 20,
                    "{hook:?}: too few frames for {}",
                    counter.name()
                );
            }
        }
    }
    println!(
        "{} frames through both hooks in {:?}",
        FRAMES,
        started.elapsed()
    );
}

/// A pod's frame, most fields right, some wrong.
fn pod_frame(rng: &mut Rng) -> Vec<u8> {
    let destinations = [
        REMOTE_POD,
        REMOTE_POD,
        INHERITING_POD,
        INHERITING_POD,
        LOCAL_POD,
        GATEWAY,
        UNRESOLVED_POD,
        OUTSIDE,
    ];
    let protocols = [IPPROTO_TCP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, 47];
    let mut frame = PodFrame::to(rng.pick(&destinations), rng.pick(&protocols));
    let payload = match rng.below(4) {
        0 => rng.below(40),
        1 => 1380 + rng.below(80),
        _ => rng.below(1380),
    };
    frame.payload = (0..payload).map(|_| rng.byte()).collect();
    if rng.chance(10) {
        frame.ip.dst = rng.address();
    }
    if rng.chance(5) {
        frame.ip.src = rng.address();
    }
    if rng.chance(5) {
        frame.dst_mac = rng.pick(&[[0xff; 6], OTHER_POD_MAC, [0x01, 0, 0x5e, 0, 0, 1]]);
    }
    if rng.chance(5) {
        frame.ether_type = rng.pick(&[0x86dd, 0x0806, 0x8100]);
    }
    if rng.chance(20) {
        frame.tos = rng.byte();
    }
    if rng.chance(10) {
        frame.ip.ttl = rng.pick(&[0, 1, 2, 255]);
    }
    if rng.chance(10) {
        frame.ip.frag = rng.pick(&[0, 0x2000, 0x0001, 0x3fff, 0x8000]);
    }
    if rng.chance(5) {
        frame.ip.options = (0..4 * (1 + rng.below(3))).map(|_| rng.byte()).collect();
    }
    frame.build()
}

/// Byte-wise mutations of a pod's frame (see [`mutate`]).
fn mutated_pod_frame(rng: &mut Rng) -> Vec<u8> {
    let bytes = pod_frame(rng);
    mutate(rng, bytes, 54, &[14])
}

/// What identifies a flow to the kernel's flow hash, or less: addresses,
/// protocol and the transport header's first bytes.
fn flow(frame: &[u8]) -> Vec<u8> {
    let mut flow = frame[26..34].to_vec();
    flow.push(frame[23]);
    flow.extend_from_slice(&frame[34..frame.len().min(42)]);
    flow
}

#[test]
fn random_and_mutated_frames_from_a_pod_follow_the_reference() {
    let world = EgressWorld::new();
    let mut fastpath = world.load();
    let mut rng = Rng(0x6e70_6567_7273);
    let mut tally = Tally::default();
    let mut encapsulated: u16 = 0;
    let mut ports: BTreeMap<Vec<u8>, u16> = BTreeMap::new();
    let started = Instant::now();
    for _ in 0..FRAMES {
        let frame = match rng.below(10) {
            0..4 => pod_frame(&mut rng),
            4..9 => mutated_pod_frame(&mut rng),
            _ => random(&mut rng),
        };
        let (return_value, output, counter) = match run_egress(&mut fastpath, &frame) {
            Ok(run) => run,
            Err(error) => {
                assert!(skb_runner_refuses(&frame), "refused {frame:02x?}: {error}");
                tally.refused += 1;
                continue;
            }
        };
        match world.reference(&frame, encapsulated, 0) {
            Ok(_) => {
                assert_eq!(
                    return_value, TC_ACT_REDIRECT,
                    "must encapsulate {frame:02x?}"
                );
                assert_eq!(counter, EgressCounter::Encapsulated);
                let route = if frame[30..33] == [10, 78, 3] {
                    inheriting_route()
                } else {
                    remote_route()
                };
                let port = src_port(&output);
                assert!(
                    (route.port_min..route.port_min + route.port_span).contains(&port),
                    "source port {port} out of range"
                );
                assert_eq!(
                    *ports.entry(flow(&frame)).or_insert(port),
                    port,
                    "the flow of {frame:02x?} changed its source port"
                );
                let expected = world
                    .reference(&frame, encapsulated, port)
                    .expect("encapsulated");
                assert_eq!(output, expected, "encapsulated {frame:02x?}");
                encapsulated = encapsulated.wrapping_add(1);
            }
            Err(reason) => {
                assert_eq!(return_value, TC_PASS, "must pass {frame:02x?}");
                assert_eq!(output, frame, "changed a passed frame");
                assert_eq!(counter, reason, "counted as {counter:?}: {frame:02x?}");
            }
        }
        tally.runs += 1;
        *tally.by_counter.entry(counter.name()).or_default() += 1;
    }
    println!(
        "egress: {} frames run, {} refused by the test runner, {:?}, in {:?}",
        tally.runs,
        tally.refused,
        tally.by_counter,
        started.elapsed()
    );
    // Every rule is reached, but those no test-run skb can (a GSO packet,
    // a failing helper), a veth with no entry (a world of its own) and
    // frames cut inside the headers (the runner refuses those shorter than
    // the IPv4 header; the programs test cuts every byte).
    for counter in EgressCounter::ALL {
        if !matches!(
            counter,
            EgressCounter::GsoUnsupported
                | EgressCounter::UnknownPort
                | EgressCounter::HelperFailed
                | EgressCounter::Truncated
        ) {
            assert!(
                tally.by_counter.get(counter.name()).copied().unwrap_or(0) > 20,
                "too few frames for {}",
                counter.name()
            );
        }
    }
}
