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
