//! [`Packet`] accessors for the two hooks, so the shared parser reads packets the way
//! each hook allows.

use aya_ebpf::programs::{TcContext, XdpContext};
use monitor_common::parse::Packet;

/// XDP: direct, bounds-checked reads of the frame.
pub struct XdpPacket {
    start: usize,
    end: usize,
}

impl XdpPacket {
    #[inline(always)]
    pub fn new(ctx: &XdpContext) -> Self {
        Self {
            start: ctx.data(),
            end: ctx.data_end(),
        }
    }

    /// The frame length, loaded separately (volatile) from the bounds [`Packet::read`]
    /// checks against. Otherwise LLVM relates the parser's length checks to `data_end`,
    /// proves the pointer comparison in `read` redundant and deletes it, and the
    /// verifier, which only trusts the pointer comparison, rejects the load.
    #[inline(always)]
    pub fn opaque_len(ctx: &XdpContext) -> usize {
        // SAFETY: `ctx.ctx` is the context pointer the kernel passed; both fields are
        // readable by XDP programs.
        let (data, data_end) = unsafe {
            (
                core::ptr::read_volatile(&raw const (*ctx.ctx).data),
                core::ptr::read_volatile(&raw const (*ctx.ctx).data_end),
            )
        };
        data_end.wrapping_sub(data) as usize
    }
}

impl Packet for XdpPacket {
    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let at = self.start + offset;
        // The verifier's packet-range proof: this comparison is what lets it accept the
        // load below. Keep it next to the read and against `data_end` itself.
        if at + N > self.end {
            return None;
        }
        let bytes = at as *const u8;
        // Byte by byte rather than `read_unaligned::<[u8; N]>`: for N of 2, 4 or 8 that is
        // one unaligned integer load, which the BPF backend splits into N byte loads and
        // shifts only after the unused bytes could have been dropped; separate byte loads
        // stay separate and the ones the parser ignores are deleted.
        // SAFETY: `at..at + N` lies within `data..data_end`, checked just above, and `u8`
        // has no alignment requirement.
        Some(core::array::from_fn(|i| unsafe { bytes.add(i).read() }))
    }
}

/// TC: reads through `bpf_skb_load_bytes`, which also sees non-linear skb data.
pub struct SkbPacket<'a> {
    ctx: &'a TcContext,
}

impl<'a> SkbPacket<'a> {
    #[inline(always)]
    pub fn new(ctx: &'a TcContext) -> Self {
        Self { ctx }
    }

    /// Wire segments of a GSO packet; 0 or 1 for an ordinary one.
    #[inline(always)]
    pub fn gso_segs(&self) -> u32 {
        // SAFETY: `skb` is the context pointer the kernel passed to this program; reading
        // `gso_segs` from `__sk_buff` is allowed for TC programs (since v5.1, commit
        // d9ff286a0f59 "bpf: allow BPF programs access skb_shared_info->gso_segs field").
        unsafe { (*self.ctx.skb.skb).gso_segs }
    }
}

impl Packet for SkbPacket<'_> {
    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        // `bpf_skb_load_bytes` checks `offset + N` against the skb itself.
        self.ctx.load::<[u8; N]>(offset).ok()
    }
}
