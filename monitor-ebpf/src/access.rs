//! [`Packet`] accessors for the two hooks, so the shared parser reads packets the way
//! each hook allows.

use aya_ebpf::programs::{TcContext, XdpContext};
use monitor_common::parse::{Packet, Window};

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

    /// The frame length, hidden from the optimiser. Otherwise LLVM relates the parser's
    /// length checks to `data_end`, proves the pointer comparison in `read` redundant and
    /// deletes it, and the verifier, which only trusts the pointer comparison, rejects
    /// the load. The subtraction is written in asm so that LLVM cannot see through it; it
    /// is the one instruction the length costs anyway.
    #[inline(always)]
    pub fn opaque_len(&self) -> usize {
        let mut len = self.end;
        // SAFETY: a register subtraction; it touches no memory. The verifier allows
        // `data_end - data` (a scalar) to programs loaded with CAP_PERFMON, as portmon's
        // are.
        unsafe {
            core::arch::asm!(
                "{len} -= {start}",
                len = inout(reg) len,
                start = in(reg) self.start,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        len
    }
}

impl Packet for XdpPacket {
    type Bytes<const N: usize> = XdpBytes<N>;

    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<XdpBytes<N>> {
        let at = self.start + offset;
        // The verifier's packet-range proof: this comparison is what lets it accept the
        // loads [`XdpBytes`] makes. Keep it next to the read and against `data_end` itself.
        if at + N > self.end {
            return None;
        }
        Some(XdpBytes {
            at: at as *const u8,
        })
    }
}

/// `N` bytes of the frame at `at`, checked against `data_end` by [`XdpPacket::read`].
///
/// Fields are loaded where the parser asks for them, so the bytes it never looks at are
/// never loaded.
#[derive(Clone, Copy)]
pub struct XdpBytes<const N: usize> {
    at: *const u8,
}

impl<const N: usize> Window<N> for XdpBytes<N> {
    #[inline(always)]
    fn byte<const AT: usize>(&self) -> u8 {
        const { assert!(AT < N, "a byte past the window") };
        // SAFETY: `at..at + N` lies within `data..data_end` (checked by `read`), `AT < N`
        // (checked at compile time), and `u8` has no alignment requirement.
        unsafe { self.at.add(AT).read() }
    }

    #[inline(always)]
    fn be16<const AT: usize>(&self) -> u16 {
        u16::from_be(self.ne16::<AT>())
    }

    #[inline(always)]
    fn ne16<const AT: usize>(&self) -> u16 {
        const { assert!(AT + 2 <= N, "a 16-bit field past the window") };
        let raw: u64;
        // One 16-bit load. Rust offers none for a pointer that may be odd (a packet's
        // fields have no guaranteed alignment) short of an unaligned read, which the BPF
        // backend splits into two byte loads, a shift and an OR. The instruction itself
        // may be unaligned: the verifier only enforces packet alignment under
        // BPF_F_STRICT_ALIGNMENT or on architectures without efficient unaligned access
        // (`check_pkt_ptr_alignment()` in kernel/bpf/verifier.c), and there it would
        // refuse the program at load time, not misread a packet.
        // SAFETY: `at + AT .. at + AT + 2` lies within `data..data_end` (checked by
        // `read`, and `AT + 2 <= N` at compile time); the asm only reads those two bytes.
        unsafe {
            core::arch::asm!(
                "{raw} = *(u16 *)({at} + {offset})",
                raw = lateout(reg) raw,
                at = in(reg) self.at,
                offset = const AT,
                options(pure, readonly, nostack, preserves_flags),
            );
        }
        // SAFETY: a 16-bit load zero-extends into the 64-bit register. Telling LLVM so
        // spares the mask it would otherwise apply before every comparison.
        unsafe { core::hint::assert_unchecked(raw <= u64::from(u16::MAX)) };
        #[expect(
            clippy::cast_possible_truncation,
            reason = "at most u16::MAX, as above"
        )]
        let raw = raw as u16;
        raw
    }

    #[inline(always)]
    fn array(&self) -> [u8; N] {
        // Byte by byte rather than `read_unaligned::<[u8; N]>`: for N of 2, 4 or 8 that is
        // one unaligned integer load, which the BPF backend splits into N byte loads and
        // shifts only after the unused bytes could have been dropped; separate byte loads
        // stay separate and the ones the caller ignores are deleted.
        // SAFETY: `at..at + N` lies within `data..data_end`, checked by `read`, and `u8`
        // has no alignment requirement.
        core::array::from_fn(|i| unsafe { self.at.add(i).read() })
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
    type Bytes<const N: usize> = [u8; N];

    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        // `bpf_skb_load_bytes` checks `offset + N` against the skb itself.
        self.ctx.load::<[u8; N]>(offset).ok()
    }
}
