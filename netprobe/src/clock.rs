//! The one clock netprobe times with: CLOCK_MONOTONIC in nanoseconds, the
//! clock of `bpf_ktime_get_ns`, so times taken here and in the probes
//! compare.

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Now, in nanoseconds of CLOCK_MONOTONIC.
pub fn now_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // CLOCK_MONOTONIC always exists and `now` is valid, so this cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * NANOS_PER_SEC + now.tv_nsec as u64
}
