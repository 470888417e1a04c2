//! Per-hop latency probes. Every program observes and never interferes: XDP
//! returns `XDP_PASS` and TC `TC_ACT_UNSPEC` (tcx: next program) on every path,
//! parse errors included.
#![no_std]
#![no_main]

mod config;
mod flight;
mod maps;
mod net_dev_queue;
mod net_dev_start_xmit;
mod netif_receive;
mod skb;
mod sock;
mod socket_read;
mod socket_write;
mod tc;
mod xdp;

netprobe_ebpf::program_object!();
