//! Reading the counter map: the whole array is mapped read-only into this process and
//! summed slice by slice, one linear scan with no syscall per key.

use std::{
    os::fd::{AsFd, AsRawFd as _, BorrowedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::MapData;
use monitor_common::layout::{
    Counter, Direction, L4, PORTS, Reason, SLICE_ENTRIES, SlicePlan, ip_protocol_index, port_index,
    reason_index,
};

/// `BPF_F_MMAPABLE` from `include/uapi/linux/bpf.h`.
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// u64 words per [`Counter`].
const WORDS_PER_COUNTER: usize = size_of::<Counter>() / size_of::<u64>();

/// Errors while mapping the counter map.
#[derive(Debug, thiserror::Error)]
pub enum CounterMapError {
    /// The object has no such map.
    #[error("the eBPF object has no map named {0}")]
    Missing(&'static str),
    /// The kernel would not describe the map.
    #[error("querying the counter map: {0}")]
    Info(#[from] aya::maps::MapError),
    /// The map is not the layout this build reads.
    #[error(
        "the counter map has value size {value_size}, {max_entries} entries and flags {flags:#x}; \
         this build expects {expected_value_size}, {expected_entries} and BPF_F_MMAPABLE"
    )]
    Layout {
        /// Found value size.
        value_size: u32,
        /// Found entries.
        max_entries: u32,
        /// Found flags.
        flags: u32,
        /// Expected value size.
        expected_value_size: usize,
        /// Expected entries.
        expected_entries: u32,
    },
    /// `mmap` failed.
    #[error("mapping the counter map into memory: {0}")]
    Mmap(std::io::Error),
}

/// A read-only mapping of the whole counter map.
pub struct CounterMap {
    base: NonNull<AtomicU64>,
    mapped_len: usize,
    plan: SlicePlan,
}

// SAFETY: the mapping is only read, through atomic loads, and lives until drop.
unsafe impl Send for CounterMap {}
// SAFETY: as above: shared access only performs atomic loads.
unsafe impl Sync for CounterMap {}

impl CounterMap {
    /// Maps `map`, which must have been created for `plan`.
    ///
    /// # Errors
    /// When the map's layout is not `plan`'s or `mmap` fails.
    pub fn new(map: &MapData, plan: SlicePlan) -> Result<Self, CounterMapError> {
        let info = map.info()?;
        let layout_matches = info.value_size() as usize == size_of::<Counter>()
            && info.max_entries() == plan.map_entries()
            && info.map_flags() & BPF_F_MMAPABLE != 0;
        if !layout_matches {
            return Err(CounterMapError::Layout {
                value_size: info.value_size(),
                max_entries: info.max_entries(),
                flags: info.map_flags(),
                expected_value_size: size_of::<Counter>(),
                expected_entries: plan.map_entries(),
            });
        }
        Self::map_fd(map.fd().as_fd(), plan)
    }

    fn map_fd(fd: BorrowedFd<'_>, plan: SlicePlan) -> Result<Self, CounterMapError> {
        let len = usize::try_from(plan.map_bytes())
            .map_err(|_| CounterMapError::Mmap(std::io::Error::other("map too large")))?;
        // SAFETY: a fresh shared read-only mapping of a BPF array fd; the kernel checks
        // the length against the map and the fd stays valid for the call. Nothing else in
        // this process aliases the returned memory mutably.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(CounterMapError::Mmap(std::io::Error::last_os_error()));
        }
        let base = NonNull::new(ptr.cast::<AtomicU64>())
            .ok_or_else(|| CounterMapError::Mmap(std::io::Error::other("mmap returned null")))?;
        Ok(Self {
            base,
            mapped_len: len,
            plan,
        })
    }

    /// The slice plan the map was created with.
    #[must_use]
    pub fn plan(&self) -> SlicePlan {
        self.plan
    }

    /// Sums every slice into `totals`, replacing its contents.
    pub fn read_into(&self, totals: &mut Totals) {
        let words = self.mapped_len / size_of::<u64>();
        // SAFETY: `base` maps `mapped_len` bytes of u64-aligned counters for our lifetime;
        // the kernel writes them concurrently, which atomic loads tolerate.
        let all = unsafe { std::slice::from_raw_parts(self.base.as_ptr(), words) };
        let slice_words = SLICE_ENTRIES as usize * WORDS_PER_COUNTER;
        totals.words.fill(0);
        for slice in all.chunks_exact(slice_words) {
            for (total, word) in totals.words.iter_mut().zip(slice) {
                *total = total.wrapping_add(word.load(Ordering::Relaxed));
            }
        }
    }

    /// A fresh read of every counter.
    #[must_use]
    pub fn read(&self) -> Totals {
        let mut totals = Totals::default();
        self.read_into(&mut totals);
        totals
    }
}

impl Drop for CounterMap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region `map_fd` mapped; no references outlive self.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.mapped_len);
        }
    }
}

/// Every counter of one slice's layout, summed over all slices.
#[derive(Clone, PartialEq, Eq)]
pub struct Totals {
    words: Box<[u64]>,
}

impl Default for Totals {
    fn default() -> Self {
        Self {
            words: vec![0; SLICE_ENTRIES as usize * WORDS_PER_COUNTER].into_boxed_slice(),
        }
    }
}

impl std::fmt::Debug for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nonzero = (0..SLICE_ENTRIES)
            .filter(|&i| self.at(i) != Counter::default())
            .count();
        write!(f, "Totals({nonzero} non-zero counters)")
    }
}

impl Totals {
    fn at(&self, index: u32) -> Counter {
        let start = index as usize * WORDS_PER_COUNTER;
        match self.words.get(start..start + WORDS_PER_COUNTER) {
            Some(&[packets, bytes, syns]) => Counter {
                packets,
                bytes,
                syns,
            },
            _ => Counter::default(),
        }
    }

    /// The counter of `port` for `l4` in `direction`.
    #[must_use]
    pub fn port(&self, direction: Direction, l4: L4, port: u16) -> Counter {
        self.at(port_index(direction, l4, port))
    }

    /// The counter of `reason` in `direction`.
    #[must_use]
    pub fn reason(&self, direction: Direction, reason: Reason) -> Counter {
        self.at(reason_index(direction, reason))
    }

    /// The counter of IP protocol `ip_protocol` (non-TCP/UDP only) in `direction`.
    #[must_use]
    pub fn ip_protocol(&self, direction: Direction, ip_protocol: u8) -> Counter {
        self.at(ip_protocol_index(direction, ip_protocol))
    }

    /// Every port of `l4` in `direction` with a non-zero packet count.
    pub fn active_ports(
        &self,
        direction: Direction,
        l4: L4,
    ) -> impl Iterator<Item = (u16, Counter)> + '_ {
        (0..PORTS).filter_map(move |port| {
            let port = u16::try_from(port).ok()?;
            let counter = self.port(direction, l4, port);
            (counter.packets != 0).then_some((port, counter))
        })
    }

    /// Packets counted in `direction`, over ports and reasons: each packet exactly once.
    #[must_use]
    pub fn packets(&self, direction: Direction) -> u64 {
        let ports: u64 = L4::ALL
            .iter()
            .flat_map(|&l4| self.active_ports(direction, l4))
            .map(|(_, counter)| counter.packets)
            .sum();
        let reasons: u64 = Reason::ALL
            .iter()
            .map(|&reason| self.reason(direction, reason).packets)
            .sum();
        ports + reasons
    }
}
