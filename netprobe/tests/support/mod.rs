//! Shared by netprobe's integration tests.
#![allow(dead_code, reason = "each test crate uses part of the support code")]

pub mod agent;
pub mod browser;
pub mod deploy;
pub mod encap;
pub mod fastpath;
pub mod foreign;
pub mod frames;
pub mod hooks;
pub mod loopback;
pub mod prometheus;
pub mod session;
pub mod traffic;
pub mod vxlan;

/// These tests load BPF programs and build namespaces: without root they
/// fail, loudly, instead of passing by skipping.
pub fn require_root() {
    if let Err(error) = netprobe::privilege::require_bpf_privileges() {
        panic!("this test needs root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN): {error}");
    }
}
