//! Programs that exist only for netprobe's own tests.
#![no_std]
#![no_main]

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{TC_ACT_UNSPEC, xdp_action},
    helpers::{bpf_ktime_get_ns, generated::bpf_loop},
    macros::{btf_tracepoint, classifier, xdp},
    programs::{BtfTracePointContext, TcContext, XdpContext},
};

/// Busy-wait per packet, to put a known latency at one device.
#[unsafe(no_mangle)]
static DELAY_NS: u64 = 0;

/// Upper bound of spins; each reads the clock, so this covers far more than
/// any delay a test asks for.
const MAX_SPINS: u32 = 1 << 22;

#[classifier]
pub fn np_test_delay(_ctx: TcContext) -> i32 {
    let delay = netprobe_ebpf::load_time!(DELAY_NS);
    let mut deadline = unsafe { bpf_ktime_get_ns() } + delay;
    unsafe {
        bpf_loop(
            MAX_SPINS,
            spin_until as *mut c_void,
            (&raw mut deadline).cast(),
            0,
        );
    }
    TC_ACT_UNSPEC
}

/// `bpf_loop` callback: stops the loop (returns 1) once the deadline passed.
extern "C" fn spin_until(_index: u64, deadline: *mut c_void) -> i64 {
    let deadline = unsafe { *deadline.cast::<u64>() };
    i64::from(unsafe { bpf_ktime_get_ns() } >= deadline)
}

/// Clock reads per run of `np_test_clock`.
#[unsafe(no_mangle)]
static CLOCK_READS: u32 = 0;

/// Reads the clock `CLOCK_READS` times: BPF_PROG_TEST_RUN of it with 0 and
/// with N reads gives what one `bpf_ktime_get_ns` costs here.
#[xdp]
pub fn np_test_clock(_ctx: XdpContext) -> u32 {
    for _ in 0..netprobe_ebpf::load_time!(CLOCK_READS).min(64) {
        // A helper call is opaque to the compiler: it stays, result unused.
        unsafe { bpf_ktime_get_ns() };
    }
    xdp_action::XDP_PASS
}

/// Does nothing, on a tcx hook: BPF_PROG_TEST_RUN's own time per run
/// (`cargo bench --bench probe_cost`), and what the kernel's call of a
/// program costs (`cargo bench --bench hook_floor`).
#[classifier]
pub fn np_test_nothing(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

/// Does nothing, on a tracepoint: with `np_test_nothing`, what the kernel's
/// call of a program costs (`cargo bench --bench hook_floor`).
#[btf_tracepoint(function = "net_dev_start_xmit")]
pub fn np_test_nothing_traced(_ctx: BtfTracePointContext) -> i32 {
    0
}

/// Someone else's XDP program, which netprobe must leave alone. Not named
/// with netprobe's `np_` prefix on purpose.
#[xdp]
pub fn foreign_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

netprobe_ebpf::program_object!();
