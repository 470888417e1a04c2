//! Code shared by netprobe's eBPF programs.
#![no_std]

pub mod packet;
pub mod reader;
