//! [`PacketReader`]s for the places a hook finds its packet.

use core::mem::size_of;

use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    programs::{TcContext, XdpContext},
};

use crate::packet::PacketReader;

/// The packet buffer of an XDP program, read with direct packet access.
pub struct XdpReader {
    start: usize,
    end: usize,
}

impl XdpReader {
    #[inline(always)]
    pub fn new(ctx: &XdpContext) -> Self {
        Self {
            start: ctx.data(),
            end: ctx.data_end(),
        }
    }
}

impl PacketReader for XdpReader {
    #[inline(always)]
    fn read<T: Copy>(&self, offset: usize) -> Option<T> {
        let at = self.start + offset;
        if at + size_of::<T>() > self.end {
            return None;
        }
        Some(unsafe { (at as *const T).read_unaligned() })
    }
}

/// An skb seen by a TC program, read with `bpf_skb_load_bytes` so headers in
/// paged data are found too.
pub struct TcReader<'a>(pub &'a TcContext);

impl PacketReader for TcReader<'_> {
    #[inline(always)]
    fn read<T: Copy>(&self, offset: usize) -> Option<T> {
        self.0.load(offset).ok()
    }
}

/// Packet bytes in kernel memory, as tracepoints see them through an skb.
pub struct KernelReader(pub *const u8);

impl PacketReader for KernelReader {
    #[inline(always)]
    fn read<T: Copy>(&self, offset: usize) -> Option<T> {
        read_kernel(self.0, offset)
    }
}

/// Reads a `T` at `base + offset` in kernel memory.
#[inline(always)]
pub fn read_kernel<T: Copy>(base: *const u8, offset: usize) -> Option<T> {
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset).cast::<T>()).ok() }
}
