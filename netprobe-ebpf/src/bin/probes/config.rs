//! The load-time settings, filled in by userspace before verification.

use netprobe_common::config::ProbeConfig;
use netprobe_ebpf::packet::Filter;

#[unsafe(no_mangle)]
pub static CONFIG: ProbeConfig = unsafe { core::mem::zeroed() };

/// `--filter`, read field by field where a check needs it.
#[inline(always)]
pub fn filter() -> Filter {
    // SAFETY: CONFIG is a static.
    unsafe { Filter::new(&raw const CONFIG.filter) }
}

/// Reads a field of [`CONFIG`].
macro_rules! config {
    ($($field:tt)+) => {
        netprobe_ebpf::load_time!($crate::config::CONFIG.$($field)+)
    };
}
pub(crate) use config;

/// Whether the programs return at once (`ProbeConfig::hooks_only`): the
/// verifier then drops all the rest as dead code.
#[inline(always)]
pub fn hooks_only() -> bool {
    config!(hooks_only) != 0
}
