//! The VXLAN fast path (`netprobe fastpath`): on the node's interface, XDP
//! or TC (tcx) ingress takes VXLAN packets for a pod on this node straight
//! to the pod's veth, rewritten as the kernel's vxlan device, routing and
//! bridge would have delivered them; on each served pod's veth, TC ingress
//! takes its packets for pods on other nodes straight to the interface,
//! encapsulated as routing and the vxlan device would have sent them.
//! Everything else goes to the kernel unchanged: the programs never drop.
#![no_std]
#![no_main]
#![allow(
    internal_features,
    reason = "atomic_xadd: the BPF target has no AtomicU64::fetch_add"
)]
#![feature(core_intrinsics)]

mod config;
mod egress;
mod ipv4;
mod maps;
mod rules;
mod tc;
mod xdp;

netprobe_ebpf::program_object!();
