//! Time per run of the probes' XDP and TC programs on crafted frames, with
//! BPF_PROG_TEST_RUN repeating each a million times in the kernel: the cost
//! a packet pays at the NIC, without the noise of real traffic. Needs root.
//!
//!     cargo bench -p netprobe --bench probe_cost

#[path = "../tests/support/frames.rs"]
#[allow(dead_code, reason = "the frame builder serves the tests too")]
mod frames;
#[path = "../tests/support/loopback.rs"]
mod loopback;

use aya::{
    EbpfLoader, TestRunOptions, TestRunResult,
    programs::{SchedClassifier, TestRun, Xdp},
};
use loopback::{loopback_program, probes_on_loopback};
use netprobe::{
    path::Hook,
    privilege::require_bpf_privileges,
    probes::{DEFAULT_FOLLOW_ONE_IN, TESTING_OBJECT},
};
use netprobe_common::probe::{FLIGHT_SLOT_BITS, OneIn};

const REPEAT: u32 = 1_000_000;

fn main() {
    if let Err(error) = require_bpf_privileges() {
        panic!("probe_cost loads BPF programs: {error}");
    }
    let payload = b"GET / HTTP/1.1\r\n\r\n";
    // A segment the default follow rate leaves, and one it picks.
    let default = OneIn::new(DEFAULT_FOLLOW_ONE_IN);
    let numbers = |picked: bool| {
        (1..u32::MAX)
            .map(|n| (n, n.wrapping_mul(7)))
            .find(|&(seq, ack)| default.picks_tcp(seq, ack) == picked)
            .expect("some numbers are picked and some are not")
    };
    let tcp = |(seq, ack)| frames::ipv4_tcp(1, seq, ack, payload);
    let cases = [
        ("TCP data, followed", tcp(numbers(true))),
        ("TCP data, left", tcp(numbers(false))),
        (
            "VXLAN-encapsulated TCP, followed",
            frames::vxlan(&tcp(numbers(true)), 8472, 1),
        ),
        (
            "VXLAN-encapsulated TCP, left",
            frames::vxlan(&tcp(numbers(false)), 8472, 1),
        ),
        ("pure ACK (never followed)", frames::ipv4_tcp(1, 2, 3, &[])),
    ];
    println!(
        "first hop, following 1 in {DEFAULT_FOLLOW_ONE_IN}\n{:<12} {:<36} {:>10}",
        "program", "frame", "ns/run"
    );
    for hook in [Hook::Xdp, Hook::TcIngress] {
        let mut probes = probes_on_loopback(hook, "", FLIGHT_SLOT_BITS, DEFAULT_FOLLOW_ONE_IN);
        let program = loopback_program(hook);
        for (name, frame) in &cases {
            let ns = match hook {
                Hook::Xdp => ns_per_run(probes.program::<Xdp>(program).expect("xdp"), &frame.bytes),
                _ => ns_per_run(
                    probes.program::<SchedClassifier>(program).expect("tc"),
                    &frame.bytes,
                ),
            };
            println!("{:<12} {:<36} {:>10}", program, name, ns);
        }
    }
    println!(
        "a classifier that does nothing: {} ns/run",
        nothing_ns(&cases[0].1.bytes)
    );
    println!("bpf_ktime_get_ns: {:.1} ns per read", clock_read_ns());
}

/// BPF_PROG_TEST_RUN's own time per run of a classifier: what the times
/// above include besides the program.
fn nothing_ns(frame: &[u8]) -> u128 {
    let mut testing = EbpfLoader::new()
        .load(TESTING_OBJECT)
        .expect("testing object loads");
    let program: &mut SchedClassifier = testing
        .program_mut("np_test_nothing")
        .expect("np_test_nothing")
        .try_into()
        .expect("classifier");
    program.load().expect("np_test_nothing loads");
    ns_per_run(program, frame)
}

/// What one clock read costs in a program: a run with 16 reads against
/// one with none.
fn clock_read_ns() -> f64 {
    const READS: u32 = 16;
    let per_run = |reads: u32| {
        let mut testing = EbpfLoader::new()
            .override_global("CLOCK_READS", &reads, true)
            .load(TESTING_OBJECT)
            .expect("testing object loads");
        let program: &mut Xdp = testing
            .program_mut("np_test_clock")
            .expect("clock program")
            .try_into()
            .expect("xdp");
        program.load().expect("clock program loads");
        ns_per_run(program, &[0u8; 64]) as f64
    };
    (per_run(READS) - per_run(0)) / f64::from(READS)
}

/// BPF_PROG_TEST_RUN's time per run of `program` on `frame`, over
/// [`REPEAT`] runs.
fn ns_per_run<P>(program: &mut P, frame: &[u8]) -> u128
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    let mut out = vec![0u8; frame.len() + 256];
    let options = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        repeat: REPEAT,
        ..TestRunOptions::default()
    };
    program
        .test_run(options)
        .expect("BPF_PROG_TEST_RUN")
        .duration
        .as_nanos()
}
