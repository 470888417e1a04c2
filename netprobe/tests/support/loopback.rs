//! The probes loaded for BPF_PROG_TEST_RUN, which runs programs on the
//! namespace's loopback device: loopback stands for the NIC.

use aya::{
    Btf,
    programs::{SchedClassifier, Xdp},
};
use netprobe::{
    filter::Filter,
    kernel_btf::kernel_offsets,
    netns::NetNs,
    path::{Direction, Hook},
    probes::LoadedProbes,
};
use netprobe_common::{config::ProbeConfig, probe::OneIn};

/// The loopback device's ifindex.
pub const LOOPBACK: u32 = 1;

/// Probes with loopback as the NIC: XDP and TC ingress are the first
/// ingress hop, TC egress the first device hop of egress. `hook`'s program
/// ([`loopback_program`]) is loaded; the flight table has
/// `1 << flight_slot_bits` slots; one packet in `follow_one_in` is followed.
pub fn probes_on_loopback(
    hook: Hook,
    filter: &str,
    flight_slot_bits: u32,
    follow_one_in: u32,
) -> LoadedProbes {
    let mut probes = load(&loopback_config(filter, flight_slot_bits, follow_one_in));
    let program = loopback_program(hook);
    match hook {
        Hook::Xdp => probes
            .program::<Xdp>(program)
            .expect("xdp")
            .load()
            .expect("program loads"),
        _ => load_classifier(&mut probes, program),
    }
    probes
}

/// The settings of [`probes_on_loopback`]: two hops each way.
pub fn loopback_config(filter: &str, flight_slot_bits: u32, follow_one_in: u32) -> ProbeConfig {
    let node = NetNs::current().expect("current namespace");
    ProbeConfig {
        offsets: kernel_offsets().expect("kernel BTF"),
        filter: filter.parse::<Filter>().expect("valid filter").flow,
        nic_netns: node.inode(),
        nic_ifindex: LOOPBACK,
        hops: [2, 2],
        start_hop: [0, 1],
        flight_slot_bits,
        follow: OneIn::new(follow_one_in),
        ..ProbeConfig::default()
    }
}

/// The probes object loaded with `config`, no program loaded yet.
pub fn load(config: &ProbeConfig) -> LoadedProbes {
    let btf = Btf::from_sys_fs().expect("kernel BTF");
    LoadedProbes::load(config, &btf).expect("probes load")
}

/// Loads the tcx program `program` of `probes`.
pub fn load_classifier(probes: &mut LoadedProbes, program: &'static str) {
    probes
        .program::<SchedClassifier>(program)
        .expect("tc")
        .load()
        .expect("program loads");
}

/// The program of `hook` at its place on the loopback path.
pub fn loopback_program(hook: Hook) -> &'static str {
    match hook {
        Hook::TcEgress => hook.program(Direction::Egress.code(), 1),
        _ => hook.program(Direction::Ingress.code(), 0),
    }
}
