//! The VXLAN-decapsulation fast path (`netprobe fastpath`): on the node's
//! interface, XDP or TC (tcx) ingress takes VXLAN packets for a pod on this
//! node straight to the pod's veth, rewritten as the kernel's vxlan device,
//! routing and bridge would have delivered them. Everything else goes to the
//! kernel unchanged: the programs never drop.
#![no_std]
#![no_main]

mod config;
mod maps;
mod rules;
mod tc;
mod xdp;

netprobe_ebpf::program_object!();
