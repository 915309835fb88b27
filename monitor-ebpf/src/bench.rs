//! Baselines for `cargo xtask bench kernel`, kept out of the production object.
//!
//! * `bench_pass`: a bare XDP_PASS program, the floor every figure is measured against.
//! * `bench_parse`: the shared parser alone, counting nothing, to split portmon's cost
//!   into parsing and counting.
//! * `bench_hashmap`: the naive alternative to portmon's map design. Same accessor, same
//!   shared parser, same counters, but counted into a per-CPU hash map keyed by
//!   (direction, kind, value), so the difference from `portmon_xdp` is the map alone.
//! * `bench_tx`: returns XDP_TX; run with BPF_F_TEST_XDP_LIVE_FRAMES it turns one frame
//!   into a flood sent out of a veth, for the live-throughput figures.
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]

#[path = "access.rs"]
#[expect(
    dead_code,
    reason = "only the XDP accessor is benchmarked; TC shares the file"
)]
mod access;

use aya_ebpf::{
    bindings::{
        BPF_NOEXIST,
        xdp_action::{XDP_PASS, XDP_TX},
    },
    macros::{map, xdp},
    maps::PerCpuHashMap,
    programs::XdpContext,
};
use monitor_common::{
    layout::{Counter, Direction, port_index, reason_index},
    parse::{Parsed, parse},
};

use crate::access::XdpPacket;

/// What a hash key counts: a port of TCP or UDP, an IP protocol, or an unparsed reason.
const KIND_TCP: u32 = 0;
const KIND_UDP: u32 = 1;
const KIND_IP_PROTOCOL: u32 = 2;
const KIND_REASON: u32 = 3;

/// The naive layout's key: (direction, kind, port / protocol / reason).
#[repr(C)]
struct HashKey {
    direction: u32,
    kind: u32,
    value: u32,
}

/// Room for every key portmon's array has: both directions, TCP and UDP, every port,
/// plus IP protocols and reasons.
const HASH_ENTRIES: u32 = 2 * 2 * 65536 + 2 * 256 + 2 * 16;

#[map(name = "BENCH_HASH_COUNTERS")]
static BENCH_HASH_COUNTERS: PerCpuHashMap<HashKey, Counter> =
    PerCpuHashMap::with_max_entries(HASH_ENTRIES, 0);

/// The floor: no work at all.
#[xdp]
pub fn bench_pass(_ctx: XdpContext) -> u32 {
    XDP_PASS
}

/// The live-frames generator: every frame goes back out of the interface it was run on.
#[xdp]
pub fn bench_tx(_ctx: XdpContext) -> u32 {
    XDP_TX
}

/// Parses like `portmon_xdp` and counts nothing: the parser's share of the cost.
#[xdp]
pub fn bench_parse(ctx: XdpContext) -> u32 {
    let packet = XdpPacket::new(&ctx);
    let frame_len = packet.opaque_len();
    // Reduced to what counting needs (an index) and kept alive, so that the parse is not
    // optimized away. The whole enum cannot be: its unused bytes are uninitialized, which
    // the verifier refuses to let the program store.
    let index = match parse(&packet, frame_len) {
        Parsed::Port { l4, port, syn, .. } => {
            port_index(Direction::Ingress, l4, port) | (u32::from(syn) << 31)
        }
        Parsed::Unparsed {
            reason,
            ip_protocol,
        } => {
            reason_index(Direction::Ingress, reason)
                | ip_protocol.map_or(0, |protocol| u32::from(protocol) << 24)
        }
    };
    core::hint::black_box(index);
    XDP_PASS
}

/// Parses like `portmon_xdp` and counts into a per-CPU hash map.
#[xdp]
pub fn bench_hashmap(ctx: XdpContext) -> u32 {
    let packet = XdpPacket::new(&ctx);
    let frame_len = packet.opaque_len();
    let parsed = parse(&packet, frame_len);
    let direction = Direction::Ingress as u32;
    let bytes = frame_len as u64;
    match parsed {
        Parsed::Port { l4, port, syn, .. } => {
            let kind = match l4 {
                monitor_common::layout::L4::Tcp => KIND_TCP,
                monitor_common::layout::L4::Udp => KIND_UDP,
            };
            add(direction, kind, u32::from(port), bytes, u64::from(syn));
        }
        Parsed::Unparsed {
            reason,
            ip_protocol,
        } => {
            add(direction, KIND_REASON, reason as u32, bytes, 0);
            if let Some(ip_protocol) = ip_protocol {
                add(
                    direction,
                    KIND_IP_PROTOCOL,
                    u32::from(ip_protocol),
                    bytes,
                    0,
                );
            }
        }
    }
    XDP_PASS
}

#[inline(always)]
fn add(direction: u32, kind: u32, value: u32, bytes: u64, syns: u64) {
    let key = HashKey {
        direction,
        kind,
        value,
    };
    let counter = match BENCH_HASH_COUNTERS.get_ptr_mut(&key) {
        Some(counter) => counter,
        None => {
            // First packet of this key on this CPU: create it, then look it up again.
            let _ = BENCH_HASH_COUNTERS.insert(&key, Counter::default(), u64::from(BPF_NOEXIST));
            let Some(counter) = BENCH_HASH_COUNTERS.get_ptr_mut(&key) else {
                return;
            };
            counter
        }
    };
    // SAFETY: a per-CPU value returned by the lookup, valid for this run; only this CPU
    // writes it and programs do not nest on one CPU.
    unsafe {
        (*counter).packets += 1;
        (*counter).bytes += bytes;
        (*counter).syns += syns;
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
