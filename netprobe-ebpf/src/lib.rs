//! Code shared by netprobe's eBPF programs.
#![no_std]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

pub mod packet;
pub mod reader;
