//! The load-time settings, filled in by userspace before verification.

use netprobe_common::config::ProbeConfig;

#[unsafe(no_mangle)]
pub static CONFIG: ProbeConfig = unsafe { core::mem::zeroed() };

/// Reads a field of [`CONFIG`].
macro_rules! config {
    ($($field:tt)+) => {
        netprobe_ebpf::load_time!($crate::config::CONFIG.$($field)+)
    };
}
pub(crate) use config;
