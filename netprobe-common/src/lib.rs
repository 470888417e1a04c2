//! Types shared by the kernel-side programs (`netprobe-ebpf`) and userspace
//! (`netprobe`). Everything here is `#[repr(C)]`, free of `bool`/`Option`/enums
//! with data, and checked for size at compile time so both sides agree on the
//! layout.
#![cfg_attr(not(test), no_std)]

pub mod config;
pub mod fastpath;
pub mod histogram;
pub mod probe;

/// Implements `aya::Pod` for userspace and asserts the type's size at compile
/// time, so a field added on one side only cannot go unnoticed.
#[macro_export]
macro_rules! shared_type {
    ($ty:ty, $size:expr) => {
        const _: () = assert!(core::mem::size_of::<$ty>() == $size);
        #[cfg(feature = "user")]
        unsafe impl aya::Pod for $ty {}
    };
}
