//! The load-time settings, filled in by userspace before verification.

use netprobe_common::config::ProbeConfig;

#[unsafe(no_mangle)]
pub static CONFIG: ProbeConfig = unsafe { core::mem::zeroed() };

/// Reads a field of [`CONFIG`]. The volatile read keeps the compiler from
/// folding the all-zero initial value into the code.
macro_rules! config {
    ($($field:tt)+) => {
        unsafe { core::ptr::read_volatile(&raw const $crate::config::CONFIG.$($field)+) }
    };
}
pub(crate) use config;
