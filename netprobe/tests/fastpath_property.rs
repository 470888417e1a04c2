//! Property test of the fast path's programs: 100,000 random frames, and
//! valid ones mutated byte-wise, re-checksummed or not, truncated or grown,
//! each run once through XDP and once through TC with BPF_PROG_TEST_RUN. A
//! frame is redirected exactly when the reference of the rules
//! (`support::vxlan`) says so, with exactly its bytes; every other frame is
//! passed unchanged, counted under the reference's reason.

mod support;

use std::{collections::BTreeMap, net::Ipv4Addr, time::Instant};

use netprobe::fastpath::{FastpathHook, LoadedFastpath};
use netprobe_common::fastpath::{Counter, OUTER_LEN};
use support::{
    frames::{internet_checksum, skb_runner_refuses},
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
    let mut bytes = structured(rng);
    for _ in 0..1 + rng.below(4) {
        let position = if rng.chance(80) {
            rng.below(bytes.len().min(OUTER_LEN + 34))
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
        fix_checksum(&mut bytes, 14);
        fix_checksum(&mut bytes, OUTER_LEN + 14);
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
