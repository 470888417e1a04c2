//! Code shared by netprobe's eBPF programs.
#![no_std]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

pub mod packet;
pub mod reader;

/// What every eBPF object of netprobe declares: its license (GPL-compatible,
/// for the helpers that need it) and a panic handler, which the verifier
/// guarantees is never reached.
#[macro_export]
macro_rules! program_object {
    () => {
        #[cfg(not(test))]
        #[panic_handler]
        fn panic(_info: &core::panic::PanicInfo) -> ! {
            loop {}
        }

        #[unsafe(link_section = "license")]
        #[unsafe(no_mangle)]
        static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
    };
}

/// Reads a load-time global: a `static` that userspace fills in with
/// `EbpfLoader::override_global` before verification. The volatile read keeps
/// the compiler from folding the all-zero initial value into the code.
#[macro_export]
macro_rules! load_time {
    ($($place:tt)+) => {
        unsafe { core::ptr::read_volatile(&raw const $($place)+) }
    };
}
