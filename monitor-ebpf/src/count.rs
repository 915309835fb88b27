//! Counting a parsed packet into this CPU's slice of the counter map.

use aya_ebpf::{
    EbpfContext, bindings::BPF_F_MMAPABLE, helpers::bpf_get_smp_processor_id, macros::map,
    maps::Array,
};
use aya_log_ebpf::{debug, error};
use monitor_common::{
    layout::{
        Counter, Direction, L4, Reason, SLICE_ENTRIES, ip_protocol_index, port_index, reason_index,
    },
    parse::Parsed,
};

/// The counters: `slice_count` slices of [`SLICE_ENTRIES`]. The loader sets the real size.
#[map(name = "PORTMON_COUNTERS")]
static PORTMON_COUNTERS: Array<Counter> = Array::with_max_entries(SLICE_ENTRIES, BPF_F_MMAPABLE);

// Load-time globals (read-only data). The verifier sees their frozen values and drops the
// branches they turn off, so a disabled feature costs nothing per packet.
#[unsafe(no_mangle)]
static PORTMON_SLICE_COUNT: u32 = 1;
#[unsafe(no_mangle)]
static PORTMON_DEBUG: u32 = 0;

#[inline(always)]
pub fn global(value: &'static u32) -> u32 {
    // SAFETY: a valid reference; volatile so that the compiler keeps the load the
    // loader's value is patched into instead of folding the default.
    unsafe { core::ptr::read_volatile(value) }
}

/// Bytes on the wire for a packet of `frame_len` bytes leaving as `segments` segments:
/// every segment after the first repeats the headers.
#[inline(always)]
pub fn wire_bytes(parsed: &Parsed, frame_len: u64, segments: u64) -> u64 {
    match parsed {
        Parsed::Port { payload_offset, .. } if segments > 1 => {
            frame_len + (segments - 1) * u64::from(*payload_offset)
        }
        _ => frame_len,
    }
}

/// The slice of the counter maps this CPU writes, and whether other CPUs write it too.
#[derive(Clone, Copy)]
pub struct Slice {
    /// The slice's number.
    pub index: u32,
    /// Several CPUs write this slice: atomic adds.
    pub shared: bool,
}

impl Slice {
    /// This CPU's slice, in a program built for slices that are `SHARED` or one per CPU.
    #[inline(always)]
    pub fn this_cpu<const SHARED: bool>() -> Self {
        // SAFETY: a helper with no arguments and no preconditions.
        let cpu = unsafe { bpf_get_smp_processor_id() };
        let shared = SHARED;
        // Unshared: one slice per possible CPU, so `cpu` indexes it. Shared: a power-of-two
        // number of slices, masked.
        let index = if shared {
            cpu & (global(&PORTMON_SLICE_COUNT).wrapping_sub(1))
        } else {
            cpu
        };
        Self { index, shared }
    }
}

/// Counts one packet (`packets` wire packets, `bytes` bytes) in `slice`.
#[inline(always)]
pub fn count<C: EbpfContext>(
    ctx: &C,
    slice: Slice,
    direction: Direction,
    parsed: &Parsed,
    bytes: u64,
    packets: u64,
) {
    let shared = slice.shared;
    let base = slice.index.wrapping_mul(SLICE_ENTRIES);
    match *parsed {
        Parsed::Port { l4, port, syn, .. } => {
            let syns = if syn { packets } else { 0 };
            add(
                ctx,
                direction,
                base + port_index(direction, l4, port),
                packets,
                bytes,
                syns,
                shared,
            );
        }
        Parsed::Unparsed {
            reason,
            ip_protocol,
        } => {
            add(
                ctx,
                direction,
                base + reason_index(direction, reason),
                packets,
                bytes,
                0,
                shared,
            );
            if let Some(ip_protocol) = ip_protocol {
                add(
                    ctx,
                    direction,
                    base + ip_protocol_index(direction, ip_protocol),
                    packets,
                    bytes,
                    0,
                    shared,
                );
            }
        }
    }
}

#[inline(always)]
fn add<C: EbpfContext>(
    ctx: &C,
    direction: Direction,
    index: u32,
    packets: u64,
    bytes: u64,
    syns: u64,
    shared: bool,
) {
    let Some(counter) = PORTMON_COUNTERS.get_ptr_mut(index) else {
        internal_error(ctx, direction, index);
        return;
    };
    if shared {
        // SAFETY: `counter` points into the map value the lookup returned, valid and
        // 8-byte aligned for the program's run; other CPUs write it too, hence atomics.
        unsafe {
            atomic_add(&raw mut (*counter).packets, packets);
            atomic_add(&raw mut (*counter).bytes, bytes);
            if syns != 0 {
                atomic_add(&raw mut (*counter).syns, syns);
            }
        }
    } else {
        // SAFETY: as above; only this CPU writes this slice, and programs do not nest on
        // one CPU, so plain read-modify-write cannot lose an update.
        unsafe {
            (*counter).packets += packets;
            (*counter).bytes += bytes;
            if syns != 0 {
                (*counter).syns += syns;
            }
        }
    }
}

/// # Safety
/// `target` must be valid and 8-byte aligned.
#[inline(always)]
pub unsafe fn atomic_add(target: *mut u64, value: u64) {
    // The BPF target has atomic adds but no compare-and-swap, so `AtomicU64::fetch_add` is
    // not offered; the intrinsic lowers to the BPF_ATOMIC add instruction (lock xadd).
    // SAFETY: the caller guarantees validity and alignment.
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
            target, value,
        );
    }
}

/// A lookup failed: the map is smaller than the CPU numbering, which the loader rules out.
/// Count it in slice 0 (atomically: any CPU may land here) and say so in the log.
#[inline(never)]
pub fn internal_error<C: EbpfContext>(ctx: &C, direction: Direction, index: u32) {
    error!(ctx, "portmon: counter index {} outside the map", index);
    if let Some(counter) =
        PORTMON_COUNTERS.get_ptr_mut(reason_index(direction, Reason::InternalError))
    {
        // SAFETY: a valid, aligned map value; shared across CPUs, hence atomic.
        unsafe { atomic_add(&raw mut (*counter).packets, 1) };
    }
}

/// With the debug switch on, logs the verdict on one packet. Its fields travel as scalars,
/// so the verdict may stay in registers.
#[inline(always)]
pub fn log<C: EbpfContext>(ctx: &C, direction: Direction, parsed: &Parsed, bytes: u64) {
    if global(&PORTMON_DEBUG) == 0 {
        return;
    }
    match *parsed {
        Parsed::Port { l4, port, syn, .. } => log_port(ctx, direction, l4, port, syn, bytes),
        Parsed::Unparsed { reason, .. } => log_unparsed(ctx, direction, reason, bytes),
    }
}

/// [`log`], but the verdict goes to the logging function by reference, which keeps it in
/// memory (on the stack) whether the switch is on or not. For verdicts that come from
/// many ends of the general walk: stored and reloaded, they reach the counting code as one
/// state of the verifier instead of one per end, which would take it past its
/// one-million-instruction limit; and LLVM stores them more cheaply than it keeps them
/// in registers.
#[inline(always)]
pub fn log_from_memory<C: EbpfContext>(ctx: &C, direction: Direction, parsed: &Parsed, bytes: u64) {
    if global(&PORTMON_DEBUG) != 0 {
        log_parsed(ctx, direction, parsed, bytes);
    }
}

#[inline(never)]
fn log_parsed<C: EbpfContext>(ctx: &C, direction: Direction, parsed: &Parsed, bytes: u64) {
    log(ctx, direction, parsed, bytes);
}

#[inline(never)]
fn log_port<C: EbpfContext>(
    ctx: &C,
    direction: Direction,
    l4: L4,
    port: u16,
    syn: bool,
    bytes: u64,
) {
    debug!(
        ctx,
        "portmon: {} {} port {} syn={} bytes={}",
        direction.as_str(),
        l4.as_str(),
        port,
        u32::from(syn),
        bytes
    );
}

#[inline(never)]
fn log_unparsed<C: EbpfContext>(ctx: &C, direction: Direction, reason: Reason, bytes: u64) {
    debug!(
        ctx,
        "portmon: {} unparsed {} bytes={}",
        direction.as_str(),
        reason.as_str(),
        bytes
    );
}
