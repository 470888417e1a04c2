//! Code shared by netprobe's eBPF programs.
#![no_std]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

pub mod packet;
pub mod reader;

/// Reads a load-time global: a `static` that userspace fills in with
/// `EbpfLoader::override_global` before verification. The volatile read keeps
/// the compiler from folding the all-zero initial value into the code.
#[macro_export]
macro_rules! load_time {
    ($($place:tt)+) => {
        unsafe { core::ptr::read_volatile(&raw const $($place)+) }
    };
}
