//! [`PacketReader`]s for the places a hook finds its packet, and the
//! [`PacketWriter`] for hooks that may change it.

use core::{ffi::c_void, mem::size_of};

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel, bpf_probe_read_kernel_buf, generated::bpf_skb_load_bytes},
    macros::map,
    maps::PerCpuArray,
    programs::{TcContext, XdpContext},
};

use crate::packet::{PacketReader, PacketWriter};

/// The packet buffer of an XDP program, or the linear part of an skb at
/// TC, read and written with direct packet access.
pub struct DirectReader {
    start: usize,
    end: usize,
}

impl DirectReader {
    #[inline(always)]
    pub fn xdp(ctx: &XdpContext) -> Self {
        Self {
            start: ctx.data(),
            end: ctx.data_end(),
        }
    }

    /// The skb's linear part: where the stack keeps the headers, though a
    /// driver may leave some in paged data (then
    /// [`CopiedHeaders::from_skb`] finds them).
    #[inline(always)]
    pub fn tc(ctx: &TcContext) -> Self {
        Self {
            start: ctx.data(),
            end: ctx.data_end(),
        }
    }

    /// Whether the packet has bytes beyond the linear part.
    #[inline(always)]
    pub fn is_partial(&self, ctx: &TcContext) -> bool {
        self.end - self.start < ctx.len() as usize
    }

    /// Address of a `T` at `offset`, if the packet holds it whole.
    #[inline(always)]
    fn at<T>(&self, offset: usize) -> Option<usize> {
        let at = self.start + offset;
        (at + size_of::<T>() <= self.end).then_some(at)
    }
}

impl PacketReader for DirectReader {
    #[inline(always)]
    fn read<T: Copy>(&self, offset: usize) -> Option<T> {
        let at = self.at::<T>(offset)?;
        Some(unsafe { (at as *const T).read_unaligned() })
    }

    #[inline(always)]
    fn holds(&self, offset: usize, len: usize) -> bool {
        self.start + offset + len <= self.end
    }

    /// One bounds check, on the header's address: the verifier learns the
    /// header's range from it and lets every field inside be read.
    #[inline(always)]
    fn field<H, T: Copy>(&self, offset: usize, field: usize) -> Option<T> {
        if field + size_of::<T>() > size_of::<H>() {
            return None;
        }
        let header = self.at::<H>(offset)?;
        Some(unsafe { ((header + field) as *const T).read_unaligned() })
    }
}

impl PacketWriter for DirectReader {
    #[inline(always)]
    fn write<T: Copy>(&self, offset: usize, value: T) -> Option<()> {
        let at = self.at::<T>(offset)?;
        unsafe { (at as *mut T).write_unaligned(value) };
        Some(())
    }
}

/// A packet's first bytes copied out in one go, where no program can read
/// them in place: into a per-CPU scratch buffer (a header's fields sit at
/// any byte offset, and the verifier refuses misaligned access to the
/// stack). 160 bytes hold Ethernet, IPv6, UDP and VXLAN outside and
/// Ethernet, IPv6 and TCP inside.
pub struct CopiedHeaders {
    buffer: *const [u8; HEADER_BYTES],
    /// Bytes of the packet in the buffer.
    len: usize,
}

pub const HEADER_BYTES: usize = 160;

/// Where a program copies headers to: a per-CPU buffer, one per context
/// that may interrupt another on a CPU.
#[derive(Clone, Copy)]
pub enum Scratch {
    /// Programs that run with bottom halves disabled.
    Softirq = 0,
    /// Programs in process context, which a softirq may interrupt.
    Process = 1,
}

#[map]
static HEADER_SCRATCH: PerCpuArray<[u8; HEADER_BYTES]> = PerCpuArray::with_max_entries(2, 0);

impl CopiedHeaders {
    /// Headers in kernel memory, at `from`, with one
    /// `bpf_probe_read_kernel`. An skb's head buffer ends with `struct
    /// skb_shared_info` (over 300 bytes), so the copy stays inside the
    /// allocation even for the shortest packet.
    #[expect(
        clippy::not_unsafe_ptr_arg_deref,
        reason = "bpf_probe_read_kernel is fault-safe: a bad pointer is an error, not a crash"
    )]
    #[inline(always)]
    pub fn from_kernel(from: *const u8, scratch: Scratch) -> Option<Self> {
        let buffer = HEADER_SCRATCH.get_ptr_mut(scratch as u32)?;
        unsafe { bpf_probe_read_kernel_buf(from, &mut *buffer) }.ok()?;
        Some(Self {
            buffer,
            len: HEADER_BYTES,
        })
    }

    /// The start of an skb a TC program sees, with `bpf_skb_load_bytes`,
    /// which finds headers in paged data too.
    #[inline(always)]
    pub fn from_skb(ctx: &TcContext, scratch: Scratch) -> Option<Self> {
        let buffer = HEADER_SCRATCH.get_ptr_mut(scratch as u32)?;
        let len = (ctx.len() as usize).min(HEADER_BYTES);
        if len == 0 {
            return None;
        }
        let copied = unsafe {
            bpf_skb_load_bytes(ctx.skb.skb.cast(), 0, buffer.cast::<c_void>(), len as u32)
        };
        (copied == 0).then_some(Self { buffer, len })
    }
}

impl PacketReader for CopiedHeaders {
    #[inline(always)]
    fn read<T: Copy>(&self, offset: usize) -> Option<T> {
        if !self.holds(offset, size_of::<T>()) {
            return None;
        }
        let offset = checked_offset(offset, HEADER_BYTES - size_of::<T>())?;
        Some(unsafe {
            self.buffer
                .cast::<u8>()
                .add(offset)
                .cast::<T>()
                .read_unaligned()
        })
    }

    #[inline(always)]
    fn holds(&self, offset: usize, len: usize) -> bool {
        offset + len <= self.len
    }
}

/// `offset` if it is at most `max`. The empty asm hides the bound from LLVM,
/// so the address is computed from this register after the check, which is
/// what the verifier needs to see; otherwise LLVM hoists the address above
/// the check and the verifier rejects the access.
#[inline(always)]
fn checked_offset(offset: usize, max: usize) -> Option<usize> {
    if offset > max {
        return None;
    }
    #[cfg(target_arch = "bpf")]
    let offset = {
        let mut offset = offset;
        unsafe { core::arch::asm!("{0} = {0}", inout(reg) offset, options(nomem, nostack)) };
        offset
    };
    Some(offset)
}

/// Reads a `T` at `base + offset` in kernel memory that the verifier cannot
/// type (e.g. beyond the struct a BTF argument points to).
#[inline(always)]
pub fn read_kernel<T: Copy>(base: *const u8, offset: usize) -> Option<T> {
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset).cast::<T>()).ok() }
}
