//! Per-hop latency probes. Every program observes and never interferes: XDP
//! returns `XDP_PASS` and TC `TC_ACT_UNSPEC` (tcx: next program) on every path,
//! parse errors included. Each program knows its place on the path without a
//! lookup: the device programs are attached only to their hop's devices and
//! carry their hop in their name, the others take it from the load-time
//! settings.
#![no_std]
#![no_main]

mod config;
mod flight;
mod maps;
mod net_dev_start_xmit;
mod skb;
mod sock;
mod socket_read;
mod socket_write;
mod tcx;
mod xdp;

netprobe_ebpf::program_object!();
