//! The payload maps from user space: choosing which ports' payloads the kernel classifies
//! ([`PayloadTracker::track`]) and reading what it counted ([`PayloadTracker::read_into`]).
//!
//! Both maps are `BPF_F_MMAPABLE` arrays (layout in `monitor_common::layout`). The counts
//! are mapped read-only once, when the tracker is made, and a read is a scan of them. The
//! slot map is mapped writable only while it is scanned (when the tracker is made) or
//! written (each [`PayloadTracker::track`]): a BPF array's mapping is resident in full from
//! `mmap` on (`array_map_mmap()` calls `remap_vmalloc_range()`, kernel/bpf/arraymap.c), and
//! keeping its 2 MiB mapped would add them to the daemon's RSS for a map written a few
//! hundred times per run. Neither needs a `bpf()` call, so both keep working after the daemon
//! has dropped every capability, and on kernels before 6.5 whose `unprivileged_bpf_disabled`
//! refuses every `bpf()` command without `CAP_BPF`.
//!
//! Slots are handed out in order and never reused, so a slot's counts always belong to one
//! port. The tracker rebuilds its view from the slot map when it is made, so a daemon that
//! reuses a pinned map keeps the ports, slots and counts of the previous run.

use std::{
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, OwnedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::{
    Ebpf,
    maps::{Map, MapData},
};
use log::warn;
use monitor_common::{
    layout::{
        Direction, L4, PAYLOAD_MAP, PAYLOAD_SLICE_ENTRIES, PAYLOAD_SLOT_ENTRIES, PAYLOAD_SLOT_MAP,
        PAYLOAD_SLOTS, PORTS, SlicePlan, payload_index, port_index,
    },
    payload::PayloadKind,
};

/// `BPF_F_MMAPABLE` from `include/uapi/linux/bpf.h`.
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// Kinds with a count per slot: the signature kinds, [`PayloadKind::Tls`] to
/// [`PayloadKind::SnmpV3`].
pub const KINDS: usize = PayloadKind::SIGNATURES as usize;

/// The counts of one port, indexed by `PayloadKind as usize`.
pub type KindCounts = [u64; KINDS];

/// A tracked port: the direction it is seen in, its protocol and its number.
pub type PortKey = (Direction, L4, u16);

/// Errors while mapping or writing the payload maps.
#[derive(Debug, thiserror::Error)]
pub enum PayloadMapError {
    /// The object has no such map.
    #[error("the eBPF object has no map named {0}")]
    Missing(&'static str),
    /// The kernel would not describe the map.
    #[error("querying the payload maps: {0}")]
    Info(#[from] aya::maps::MapError),
    /// The map is not the layout this build reads.
    #[error(
        "{name} has value size {value_size}, {max_entries} entries and flags {flags:#x}; \
         this build expects 8, {expected_entries} and BPF_F_MMAPABLE"
    )]
    Layout {
        /// The map.
        name: &'static str,
        /// Found value size.
        value_size: u32,
        /// Found entries.
        max_entries: u32,
        /// Found flags.
        flags: u32,
        /// Expected entries.
        expected_entries: u32,
    },
    /// The slot map's descriptor could not be duplicated.
    #[error("keeping a descriptor of {PAYLOAD_SLOT_MAP}: {0}")]
    Dup(std::io::Error),
    /// `mmap` failed.
    #[error("mapping {name} into memory: {source}")]
    Mmap {
        /// The map.
        name: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The slot map holds a value no tracker writes (not by this build, or corrupted).
    #[error("{PAYLOAD_SLOT_MAP} holds slot {value} for {key:?}, past the last slot")]
    BadSlot {
        /// The port.
        key: PortKey,
        /// What the map holds.
        value: u64,
    },
}

/// The outcome of [`PayloadTracker::track`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracking {
    /// The port was not tracked; from now on it is, in this slot.
    New(u16),
    /// The port was already tracked, in this slot.
    Already(u16),
    /// Every slot is taken: the port is not tracked.
    Full,
}

/// A shared mapping of a whole BPF array of `u64`s, unmapped on drop.
struct Mapping {
    base: NonNull<AtomicU64>,
    words: usize,
}

// SAFETY: the mapping is only accessed through atomic loads and stores, and lives until
// drop.
unsafe impl Send for Mapping {}
// SAFETY: as above: shared access only performs atomic operations.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Checks `name`'s layout (`u64` values, `entries` of them, mmapable) and maps it.
    fn new(
        ebpf: &Ebpf,
        name: &'static str,
        entries: u32,
        writable: bool,
    ) -> Result<Self, PayloadMapError> {
        let map = array(ebpf, name)?;
        check_layout(map, name, entries)?;
        Self::map_fd(map.fd().as_fd(), name, entries as usize, writable)
    }

    fn map_fd(
        fd: BorrowedFd<'_>,
        name: &'static str,
        words: usize,
        writable: bool,
    ) -> Result<Self, PayloadMapError> {
        let protection = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh shared mapping of `words` u64s of an fd the caller checked holds
        // that many (a BPF array, or a test's memfd); the fd stays valid for the call. The memory is only accessed through atomics.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                words * size_of::<u64>(),
                protection,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(PayloadMapError::Mmap {
                name,
                source: std::io::Error::last_os_error(),
            });
        }
        let base = NonNull::new(ptr.cast::<AtomicU64>()).ok_or(PayloadMapError::Mmap {
            name,
            source: std::io::Error::other("mmap returned null"),
        })?;
        Ok(Self { base, words })
    }

    fn words(&self) -> &[AtomicU64] {
        // SAFETY: `base` maps `words` u64-aligned words for our lifetime; the kernel writes
        // them concurrently, which atomic accesses tolerate.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.words) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region `of` mapped; no reference outlives self.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.words * size_of::<u64>());
        }
    }
}

/// The array map `name` of `ebpf`.
fn array<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a MapData, PayloadMapError> {
    match ebpf.map(name) {
        Some(Map::Array(map)) => Ok(map),
        _ => Err(PayloadMapError::Missing(name)),
    }
}

/// Checks that `map` holds `entries` mmapable `u64`s.
fn check_layout(map: &MapData, name: &'static str, entries: u32) -> Result<(), PayloadMapError> {
    let info = map.info()?;
    if info.value_size() as usize != size_of::<u64>()
        || info.max_entries() != entries
        || info.map_flags() & BPF_F_MMAPABLE == 0
    {
        return Err(PayloadMapError::Layout {
            name,
            value_size: info.value_size(),
            max_entries: info.max_entries(),
            flags: info.map_flags(),
            expected_entries: entries,
        });
    }
    Ok(())
}

/// Maps the slot map writable, for one scan or one store (see the module's doc).
fn map_slots(slot_map: &OwnedFd) -> Result<Mapping, PayloadMapError> {
    Mapping::map_fd(
        slot_map.as_fd(),
        PAYLOAD_SLOT_MAP,
        PAYLOAD_SLOT_ENTRIES as usize,
        true,
    )
}

/// The port of a slot-map index: the inverse of [`port_index`].
fn key_of(index: usize) -> Option<PortKey> {
    let ports = PORTS as usize;
    let port = u16::try_from(index % ports).ok()?;
    let (direction, l4) = match index / ports {
        0 => (Direction::Ingress, L4::Tcp),
        1 => (Direction::Ingress, L4::Udp),
        2 => (Direction::Egress, L4::Tcp),
        3 => (Direction::Egress, L4::Udp),
        _ => return None,
    };
    Some((direction, l4, port))
}

/// Chooses the tracked ports and reads their payload counts.
pub struct PayloadTracker {
    /// The slot map, mapped only while scanned or written.
    slot_map: OwnedFd,
    counts: Mapping,
    plan: SlicePlan,
    /// Tracked ports sorted by key, with their slot.
    tracked: Vec<(PortKey, u16)>,
    /// The next slot to hand out; [`PAYLOAD_SLOTS`] when full.
    next: u32,
}

impl PayloadTracker {
    /// Maps the payload maps of `ebpf`, created for `plan`, and rebuilds the tracked ports
    /// from the slot map.
    ///
    /// # Errors
    /// When a map is missing, has another layout, or `mmap` fails.
    pub fn new(ebpf: &Ebpf, plan: SlicePlan) -> Result<Self, PayloadMapError> {
        let slots = array(ebpf, PAYLOAD_SLOT_MAP)?;
        check_layout(slots, PAYLOAD_SLOT_MAP, PAYLOAD_SLOT_ENTRIES)?;
        let slot_map = slots
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(PayloadMapError::Dup)?;
        let counts = Mapping::new(ebpf, PAYLOAD_MAP, plan.payload_map_entries(), false)?;
        Self::from_maps(slot_map, counts, plan)
    }

    fn from_maps(
        slot_map: OwnedFd,
        counts: Mapping,
        plan: SlicePlan,
    ) -> Result<Self, PayloadMapError> {
        let slots = map_slots(&slot_map)?;
        let mut tracked = Vec::with_capacity(PAYLOAD_SLOTS as usize);
        let mut taken = vec![false; PAYLOAD_SLOTS as usize];
        let mut next = 1;
        for (index, word) in slots.words().iter().enumerate() {
            let value = word.load(Ordering::Relaxed);
            if value == 0 {
                continue;
            }
            let slot = u16::try_from(value)
                .ok()
                .filter(|&slot| u32::from(slot) < PAYLOAD_SLOTS);
            let (Some(key), Some(slot)) = (key_of(index), slot) else {
                warn!("{PAYLOAD_SLOT_MAP}[{index}] holds {value}, past the last slot: cleared");
                word.store(0, Ordering::Relaxed);
                continue;
            };
            if std::mem::replace(&mut taken[usize::from(slot)], true) {
                // Two ports in one slot would mix their counts: keep the first.
                warn!("{PAYLOAD_SLOT_MAP}: slot {slot} given twice, cleared for {key:?}");
                word.store(0, Ordering::Relaxed);
                continue;
            }
            tracked.push((key, slot));
            next = next.max(u32::from(slot) + 1);
        }
        tracked.sort_unstable();
        drop(slots);
        Ok(Self {
            slot_map,
            counts,
            plan,
            tracked,
            next,
        })
    }

    /// Starts classifying the payloads of `port` (of `l4`, seen in `direction`), in a new
    /// slot, unless it already has one or none is left.
    ///
    /// # Errors
    /// When the slot map holds a value for this port that no tracker writes, or cannot be
    /// mapped.
    pub fn track(
        &mut self,
        direction: Direction,
        l4: L4,
        port: u16,
    ) -> Result<Tracking, PayloadMapError> {
        let key = (direction, l4, port);
        let slots = map_slots(&self.slot_map)?;
        let word = &slots.words()[port_index(direction, l4, port) as usize];
        let value = word.load(Ordering::Relaxed);
        if value != 0 {
            return match u16::try_from(value) {
                Ok(slot) if u32::from(slot) < PAYLOAD_SLOTS => Ok(Tracking::Already(slot)),
                _ => Err(PayloadMapError::BadSlot { key, value }),
            };
        }
        let Ok(slot) = u16::try_from(self.next) else {
            return Ok(Tracking::Full);
        };
        if self.next >= PAYLOAD_SLOTS {
            return Ok(Tracking::Full);
        }
        self.next += 1;
        // The kernel reads the slot with a plain load; its counts cells are zero, since no
        // port had this slot before.
        word.store(u64::from(slot), Ordering::Relaxed);
        let at = self.tracked.partition_point(|&(other, _)| other < key);
        self.tracked.insert(at, (key, slot));
        Ok(Tracking::New(slot))
    }

    /// The slot of a tracked port.
    #[must_use]
    pub fn slot(&self, direction: Direction, l4: L4, port: u16) -> Option<u16> {
        let key = (direction, l4, port);
        self.tracked
            .binary_search_by(|&(other, _)| other.cmp(&key))
            .ok()
            .map(|at| self.tracked[at].1)
    }

    /// Number of tracked ports.
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.tracked.len()
    }

    /// Number of ports that can still be tracked.
    #[must_use]
    pub fn free(&self) -> usize {
        PAYLOAD_SLOTS.saturating_sub(self.next) as usize
    }

    /// Sums every slice's counts of every tracked port into `totals`, replacing its
    /// contents. Allocates nothing once `totals` has held every slot.
    pub fn read_into(&self, totals: &mut PayloadTotals) {
        let words = self.counts.words();
        let slice_words = PAYLOAD_SLICE_ENTRIES as usize;
        totals.ports.clear();
        totals.ports.extend_from_slice(&self.tracked);
        totals.counts.fill([0; KINDS]);
        for &(_, slot) in &self.tracked {
            let sum = &mut totals.counts[usize::from(slot)];
            let start = payload_index(u32::from(slot), PayloadKind::Tls) as usize;
            for slice in 0..self.plan.slices as usize {
                let at = slice * slice_words + start;
                let Some(cells) = words.get(at..at + KINDS) else {
                    continue;
                };
                for (total, cell) in sum.iter_mut().zip(cells) {
                    *total = total.wrapping_add(cell.load(Ordering::Relaxed));
                }
            }
        }
    }

    /// A fresh read of every tracked port's counts.
    #[must_use]
    pub fn read(&self) -> PayloadTotals {
        let mut totals = PayloadTotals::default();
        self.read_into(&mut totals);
        totals
    }
}

/// The payload counts of every tracked port, summed over the slices.
#[derive(Clone, PartialEq, Eq)]
pub struct PayloadTotals {
    /// Tracked ports sorted by key, with their slot.
    ports: Vec<(PortKey, u16)>,
    /// Counts per slot.
    counts: Box<[KindCounts]>,
}

impl Default for PayloadTotals {
    fn default() -> Self {
        Self {
            ports: Vec::with_capacity(PAYLOAD_SLOTS as usize),
            counts: vec![[0; KINDS]; PAYLOAD_SLOTS as usize].into_boxed_slice(),
        }
    }
}

impl std::fmt::Debug for PayloadTotals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl PayloadTotals {
    /// The counts of a port, indexed by `PayloadKind as usize`; `None` when not tracked.
    #[must_use]
    pub fn get(&self, direction: Direction, l4: L4, port: u16) -> Option<KindCounts> {
        let key = (direction, l4, port);
        let at = self
            .ports
            .binary_search_by(|&(other, _)| other.cmp(&key))
            .ok()?;
        let slot = self.ports[at].1;
        self.counts.get(usize::from(slot)).copied()
    }

    /// Every tracked port with its counts, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (PortKey, KindCounts)> + '_ {
        self.ports.iter().map(|&(key, slot)| {
            let counts = self
                .counts
                .get(usize::from(slot))
                .copied()
                .unwrap_or_default();
            (key, counts)
        })
    }
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests panic with what they expected")]
mod tests;
