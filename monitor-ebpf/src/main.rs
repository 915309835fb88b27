//! portmon's kernel programs. Entry points are thin: parse with the shared parser,
//! count, and always let the packet pass. A passive monitor never drops or changes a packet.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![feature(asm_experimental_arch)]
#![expect(
    internal_features,
    reason = "atomic_xadd: the BPF target lacks CAS, so AtomicU64::fetch_add is unavailable"
)]

mod access;
mod count;
mod payload;

use aya_ebpf::{
    bindings::{TC_ACT_OK, xdp_action::XDP_PASS},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use monitor_common::{
    layout::Direction,
    parse::{Parsed, parse, parse_fast, parse_general},
};

use crate::{
    access::{SkbPacket, XdpPacket},
    count::{Slice, count},
};

// Each program comes in two builds, one per kind of counter slice, and the loader loads the
// one its slice plan needs (`monitor::dataplane`): a slice per CPU (plain adds) or slices
// shared by several CPUs (atomic adds). A load-time global would cost every packet its
// load and a register kept for it; a compile-time constant costs nothing.

/// Ingress: every frame the interface receives, before the stack sees it.
#[xdp]
pub fn portmon_xdp(ctx: XdpContext) -> u32 {
    xdp_ingress::<false>(&ctx)
}

/// [`portmon_xdp`] for slices shared by several CPUs.
#[xdp]
pub fn portmon_xdp_shared(ctx: XdpContext) -> u32 {
    xdp_ingress::<true>(&ctx)
}

#[inline(always)]
fn xdp_ingress<const SHARED: bool>(ctx: &XdpContext) -> u32 {
    let packet = XdpPacket::new(ctx);
    let frame_len = packet.opaque_len();
    // The common case gets code of its own: its verdict stays in registers, where a
    // verdict shared with the general walk's many ends is stored and reloaded.
    match parse_fast(&packet, frame_len) {
        Ok(parsed) => {
            count::log(ctx, Direction::Ingress, &parsed, frame_len as u64);
            count_xdp::<SHARED>(ctx, &packet, &parsed, frame_len);
        }
        Err(start) => {
            let parsed = parse_general(&packet, frame_len, start);
            count::log_from_memory(ctx, Direction::Ingress, &parsed, frame_len as u64);
            count_xdp::<SHARED>(ctx, &packet, &parsed, frame_len);
        }
    }
    XDP_PASS
}

#[inline(always)]
fn count_xdp<const SHARED: bool>(
    ctx: &XdpContext,
    packet: &XdpPacket,
    parsed: &Parsed,
    frame_len: usize,
) {
    // After the parse, not before: the slice is not needed until now, and a value kept
    // across the parse is a register the parse cannot use.
    let slice = Slice::this_cpu::<SHARED>();
    count(ctx, slice, Direction::Ingress, parsed, frame_len as u64, 1);
    payload::count::<SHARED, _, _>(ctx, packet, Direction::Ingress, parsed);
}

/// Egress: every packet the stack sends, before segmentation offload.
#[classifier]
pub fn portmon_tc_egress(ctx: TcContext) -> i32 {
    count_skb::<false>(&ctx, Direction::Egress);
    TC_ACT_OK
}

/// [`portmon_tc_egress`] for slices shared by several CPUs.
#[classifier]
pub fn portmon_tc_egress_shared(ctx: TcContext) -> i32 {
    count_skb::<true>(&ctx, Direction::Egress);
    TC_ACT_OK
}

/// Ingress through TC, for interfaces whose XDP hook another program already holds.
#[classifier]
pub fn portmon_tc_ingress(ctx: TcContext) -> i32 {
    count_skb::<false>(&ctx, Direction::Ingress);
    TC_ACT_OK
}

/// [`portmon_tc_ingress`] for slices shared by several CPUs.
#[classifier]
pub fn portmon_tc_ingress_shared(ctx: TcContext) -> i32 {
    count_skb::<true>(&ctx, Direction::Ingress);
    TC_ACT_OK
}

#[inline(always)]
fn count_skb<const SHARED: bool>(ctx: &TcContext, direction: Direction) {
    let packet = SkbPacket::new(ctx);
    let frame_len = ctx.len() as usize;
    let parsed = parse(&packet, frame_len);
    // A GSO super-packet leaves as `gso_segs` wire packets, each repeating the headers.
    let segments = u64::from(packet.gso_segs().max(1));
    let wire_bytes = count::wire_bytes(&parsed, frame_len as u64, segments);
    let slice = Slice::this_cpu::<SHARED>();
    count::log_from_memory(ctx, direction, &parsed, wire_bytes);
    count(ctx, slice, direction, &parsed, wire_bytes, segments);
    // Once per skb, not per segment: only the first segment starts with the payload's
    // first bytes.
    payload::count::<SHARED, _, _>(ctx, &packet, direction, &parsed);
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
