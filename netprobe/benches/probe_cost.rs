//! Time per run of the probes' XDP and TC programs on crafted frames, with
//! BPF_PROG_TEST_RUN repeating each a million times in the kernel: the cost
//! a packet pays at the NIC, without the noise of real traffic. Needs root.
//!
//!     cargo bench -p netprobe --bench probe_cost

#[path = "../tests/support/frames.rs"]
#[allow(dead_code, reason = "the frame builder serves the tests too")]
mod frames;

use aya::{
    Btf, TestRunOptions,
    programs::{SchedClassifier, TestRun as _, Xdp},
};
use netprobe::{
    kernel_btf::kernel_offsets, netns::NetNs, path::Hook, privilege::require_bpf_privileges,
    probes::LoadedProbes,
};
use netprobe_common::{config::ProbeConfig, probe::FLIGHT_SLOT_BITS};

const REPEAT: u32 = 1_000_000;
/// BPF_PROG_TEST_RUN runs on the namespace's loopback device.
const LOOPBACK: u32 = 1;

fn main() {
    if let Err(error) = require_bpf_privileges() {
        panic!("probe_cost loads BPF programs: {error}");
    }
    let payload = b"GET / HTTP/1.1\r\n\r\n";
    let tcp = frames::ipv4_tcp(1, 2, 3, payload);
    let cases = [
        ("TCP data, first hop", tcp.clone()),
        (
            "VXLAN-encapsulated TCP, first hop",
            frames::vxlan(&tcp, 8472, 1),
        ),
        ("pure ACK (not followed)", frames::ipv4_tcp(1, 2, 3, &[])),
    ];
    println!("{:<12} {:<36} {:>10}", "program", "frame", "ns/run");
    for hook in [Hook::Xdp, Hook::TcIngress] {
        let mut probes = probes_at(hook);
        for (name, frame) in &cases {
            let mut out = vec![0u8; frame.bytes.len() + 256];
            let options = TestRunOptions {
                data_in: Some(&frame.bytes),
                data_out: Some(&mut out),
                repeat: REPEAT,
                ..TestRunOptions::default()
            };
            let result = match hook {
                Hook::Xdp => probes.program::<Xdp>(hook).expect("xdp").test_run(options),
                _ => probes
                    .program::<SchedClassifier>(hook)
                    .expect("tc")
                    .test_run(options),
            }
            .expect("BPF_PROG_TEST_RUN");
            println!(
                "{:<12} {:<36} {:>10}",
                hook.program(),
                name,
                result.duration.as_nanos()
            );
        }
    }
}

/// Probes with the loopback device as the NIC (XDP and TC ingress start
/// ingress flights) and the flight table of a real session.
fn probes_at(hook: Hook) -> LoadedProbes {
    let node = NetNs::current().expect("current namespace");
    let config = ProbeConfig {
        offsets: kernel_offsets().expect("kernel BTF"),
        node_netns: node.inode(),
        nic_ifindex: LOOPBACK,
        nic_hops: [0, 0, 1],
        hops: [2, 2],
        start_hop: [0, 1],
        flight_slot_bits: FLIGHT_SLOT_BITS,
        ..ProbeConfig::default()
    };
    let btf = Btf::from_sys_fs().expect("kernel BTF");
    let mut probes = LoadedProbes::load(&config, &btf).expect("probes load");
    match hook {
        Hook::Xdp => probes
            .program::<Xdp>(hook)
            .expect("xdp")
            .load()
            .expect("loads"),
        _ => probes
            .program::<SchedClassifier>(hook)
            .expect("tc")
            .load()
            .expect("loads"),
    }
    probes
}
