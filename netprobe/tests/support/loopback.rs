//! The probes loaded for BPF_PROG_TEST_RUN, which runs programs on the
//! namespace's loopback device: loopback stands for the NIC.

use aya::{
    Btf,
    programs::{SchedClassifier, Xdp},
};
use netprobe::{
    filter::Filter, kernel_btf::kernel_offsets, netns::NetNs, path::Hook, probes::LoadedProbes,
};
use netprobe_common::config::ProbeConfig;

/// The loopback device's ifindex.
pub const LOOPBACK: u32 = 1;

/// Probes with loopback as the NIC: XDP and TC ingress are the first
/// ingress hop, TC egress the first device hop of egress. `hook`'s program
/// is loaded; the flight table has `1 << flight_slot_bits` slots.
pub fn probes_on_loopback(hook: Hook, filter: &str, flight_slot_bits: u32) -> LoadedProbes {
    let node = NetNs::current().expect("current namespace");
    let config = ProbeConfig {
        offsets: kernel_offsets().expect("kernel BTF"),
        filter: filter.parse::<Filter>().expect("valid filter").flow,
        node_netns: node.inode(),
        nic_ifindex: LOOPBACK,
        nic_hops: [0, 0, 1],
        hops: [2, 2],
        start_hop: [0, 1],
        flight_slot_bits,
        ..ProbeConfig::default()
    };
    let btf = Btf::from_sys_fs().expect("kernel BTF");
    let mut probes = LoadedProbes::load(&config, &btf).expect("probes load");
    match hook {
        Hook::Xdp => probes.program::<Xdp>(hook).expect("xdp").load(),
        _ => probes.program::<SchedClassifier>(hook).expect("tc").load(),
    }
    .expect("program loads");
    probes
}
