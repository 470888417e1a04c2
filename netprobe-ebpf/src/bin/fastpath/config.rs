//! What the fast path matches, filled in by userspace before verification.

use netprobe_common::fastpath::FastpathConfig;

#[unsafe(no_mangle)]
pub static CONFIG: FastpathConfig = unsafe { core::mem::zeroed() };

/// Reads a field of [`CONFIG`].
macro_rules! config {
    ($($field:tt)+) => {
        netprobe_ebpf::load_time!($crate::config::CONFIG.$($field)+)
    };
}
pub(crate) use config;
