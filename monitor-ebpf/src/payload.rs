//! Classifying the first bytes of a tracked port's payload and counting the result in this
//! CPU's slice of the payload map (layout in `monitor_common::layout`, signatures in
//! `monitor_common::payload`).

use aya_ebpf::{EbpfContext, bindings::BPF_F_MMAPABLE, macros::map, maps::Array};
use monitor_common::{
    layout::{
        Direction, PAYLOAD_SLICE_ENTRIES, PAYLOAD_SLOT_ENTRIES, PAYLOAD_SLOTS, payload_index,
        port_index,
    },
    parse::{Packet, Parsed},
    payload::{PayloadKind, classify},
};

use crate::count::{Slice, atomic_add, global, internal_error};

/// Which ports are tracked: the slot of each (direction, l4, port), 0 when untracked.
/// Written by user space only.
#[map(name = "PORTMON_PAYLOAD_SLOT")]
static PORTMON_PAYLOAD_SLOT: Array<u64> =
    Array::with_max_entries(PAYLOAD_SLOT_ENTRIES, BPF_F_MMAPABLE);

/// The counts: `slice_count` slices of `[slot][kind]`. The loader sets the real size.
#[map(name = "PORTMON_PAYLOAD")]
static PORTMON_PAYLOAD: Array<u64> = Array::with_max_entries(PAYLOAD_SLICE_ENTRIES, BPF_F_MMAPABLE);

/// Load-time global: zero turns payload classification off. The verifier sees the frozen
/// value and removes the whole path.
#[unsafe(no_mangle)]
static PORTMON_PAYLOAD_ENABLED: u32 = 1;

/// Payloads starting this far into the frame or further are not classified.
///
/// The verifier accepts `data + offset` for a read of `n` bytes only when the offset's
/// largest possible value plus `n` stays within `MAX_PACKET_OFF` (0xffff,
/// `find_good_pkt_pointers()` in kernel/bpf/verifier.c); a `u16` offset plus a 16-byte read
/// does not. 16 KiB of headers is far more than any real packet has (the largest parsed
/// chain: two VLAN tags, IPv6 and eight extension headers of at most 2 KiB each is
/// rarely over a few hundred bytes), and more than an XDP frame's linear part holds.
const MAX_PAYLOAD_OFFSET: u16 = 1 << 14;

/// `offset` (below [`MAX_PAYLOAD_OFFSET`]) masked to that bound in a way LLVM cannot
/// drop: its compare against the bound may sit on another copy of the value than the one
/// the reads use, and the verifier only bounds the copy that was compared.
#[inline(always)]
fn bounded_offset(offset: u16) -> usize {
    // SAFETY: reads a live, aligned local.
    let offset = unsafe { core::ptr::read_volatile(&raw const offset) };
    usize::from(offset & (MAX_PAYLOAD_OFFSET - 1))
}

/// Classifies the payload of `parsed` if its port is tracked, and counts the kind.
///
/// Called once per packet the program sees: for a GSO super-packet in TC that is once,
/// and its first bytes are its first segment's, the only one that can start a message.
/// A packet without payload costs the `payload_len` test only; an untracked one, one array
/// lookup more. Nothing is counted for [`PayloadKind::Other`]: only signatures have cells.
#[inline(always)]
pub fn count<const SHARED: bool, C: EbpfContext, P: Packet + ?Sized>(
    ctx: &C,
    packet: &P,
    direction: Direction,
    parsed: &Parsed,
) {
    let Parsed::Port {
        l4,
        port,
        payload_offset,
        payload_len,
        ..
    } = *parsed
    else {
        return;
    };
    // The packet's own test first: most packets (handshakes, ACKs) carry no payload and
    // then cost one test instead of a load of the switch as well.
    if payload_len == 0 {
        return;
    }
    if global(&PORTMON_PAYLOAD_ENABLED) == 0 {
        return;
    }
    if payload_offset >= MAX_PAYLOAD_OFFSET {
        return;
    }
    // Always inside the map: `port_index` of any port is below PAYLOAD_SLOT_ENTRIES.
    let Some(&slot) = PORTMON_PAYLOAD_SLOT.get(port_index(direction, l4, port)) else {
        return;
    };
    // 0: untracked. Past the last slot: user space wrote garbage; count nothing rather
    // than index another slot's cells.
    if slot == 0 || slot >= u64::from(PAYLOAD_SLOTS) {
        return;
    }
    let kind = classify(
        packet,
        bounded_offset(payload_offset),
        usize::from(payload_len),
    );
    if kind as u32 >= PayloadKind::SIGNATURES {
        return;
    }
    #[expect(
        clippy::cast_possible_truncation,
        reason = "below PAYLOAD_SLOTS, checked"
    )]
    let slot = slot as u32;
    // Looked up again rather than kept from the counting: few packets get this far, and
    // a value kept across the classification cost every packet a spill. The same slice:
    // a program never changes CPU while it runs (the kernel runs BPF programs
    // with migration disabled: `cant_migrate()` in `__bpf_prog_run()`,
    // include/linux/filter.h).
    let slice = Slice::this_cpu::<SHARED>();
    let index = slice
        .index
        .wrapping_mul(PAYLOAD_SLICE_ENTRIES)
        .wrapping_add(payload_index(slot, kind));
    let Some(cell) = PORTMON_PAYLOAD.get_ptr_mut(index) else {
        internal_error(ctx, direction, index);
        return;
    };
    if slice.shared {
        // SAFETY: `cell` points into the map value the lookup returned, valid and 8-byte
        // aligned for the program's run; other CPUs write it too, hence the atomic add.
        unsafe { atomic_add(cell, 1) };
    } else {
        // SAFETY: as above; only this CPU writes this slice, and programs do not nest on
        // one CPU, so a plain read-modify-write cannot lose an update.
        unsafe { *cell += 1 };
    }
}
