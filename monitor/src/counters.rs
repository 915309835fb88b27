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
/// Words of the totals summed at a time by [`CounterMap::read_into`]: 4 KiB, which stays
/// in L1 with room for the slices' parts streaming past (512 beat 128 and 2048 words).
const READ_BLOCK_WORDS: usize = 512;

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
    ///
    /// Block by block of the totals: each block stays in L1 while every slice's part of it
    /// is added in, so the map is read once and the totals are written once. (Clearing the
    /// totals and then adding whole slices one after the other streams the 6 MiB totals
    /// through the cache once per slice more: 1.2-1.4x slower with 2 or 8 slices.)
    pub fn read_into(&self, totals: &mut Totals) {
        let words = self.mapped_len / size_of::<u64>();
        // SAFETY: `base` maps `mapped_len` bytes of u64-aligned counters for our lifetime;
        // the kernel writes them concurrently, which atomic loads tolerate.
        let all = unsafe { std::slice::from_raw_parts(self.base.as_ptr(), words) };
        let slice_words = SLICE_ENTRIES as usize * WORDS_PER_COUNTER;
        for (index, block) in totals.words.chunks_mut(READ_BLOCK_WORDS).enumerate() {
            let (start, len) = (index * READ_BLOCK_WORDS, block.len());
            let mut parts = all
                .chunks_exact(slice_words)
                .map(|slice| slice.get(start..start + len).unwrap_or_default());
            match parts.next() {
                Some(first) => {
                    for (total, word) in block.iter_mut().zip(first) {
                        *total = word.load(Ordering::Relaxed);
                    }
                }
                None => block.fill(0),
            }
            for part in parts {
                for (total, word) in block.iter_mut().zip(part) {
                    *total = total.wrapping_add(word.load(Ordering::Relaxed));
                }
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

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests panic with what they expected")]
mod tests {
    use std::{
        fs::File,
        io::{Seek as _, SeekFrom, Write as _},
        os::fd::{AsFd as _, FromRawFd as _},
    };

    use monitor_common::layout::slice_plan;

    use super::*;

    /// A memfd laid out like a counter map of `plan`, with `words[i] = value` written.
    fn fake_map(plan: SlicePlan, words: &[(usize, u64)]) -> File {
        // SAFETY: a NUL-terminated name and no flags; the result is checked.
        let fd = unsafe { libc::memfd_create(c"portmon-counters-test".as_ptr(), 0) };
        assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
        // SAFETY: a fresh descriptor that nothing else owns.
        let mut file = unsafe { File::from_raw_fd(fd) };
        file.set_len(plan.map_bytes())
            .expect("the memfd takes the map's size");
        for &(index, value) in words {
            file.seek(SeekFrom::Start((index * size_of::<u64>()) as u64))
                .expect("seek");
            file.write_all(&value.to_ne_bytes()).expect("write");
        }
        file
    }

    #[test]
    fn read_into_sums_every_word_over_the_slices() {
        let plan = slice_plan(3, 4); // 3 slices
        let slice_words = SLICE_ENTRIES as usize * WORDS_PER_COUNTER;
        let last = slice_words - 1;
        // (name, word within a slice): both sides of block boundaries, and the last word of
        // the partial last block.
        let cases = [
            ("first word", 0),
            ("last word of the first block", READ_BLOCK_WORDS - 1),
            ("first word of the second block", READ_BLOCK_WORDS),
            ("a word in the middle", slice_words / 2 + 7),
            ("last word", last),
        ];
        let mut written = Vec::new();
        for (case, &(_, word)) in cases.iter().enumerate() {
            for slice in 0..3 {
                let value = (case as u64 + 1) * 1000 + slice as u64 + 1;
                written.push((slice * slice_words + word, value));
            }
        }
        // A wrapping sum: the counters are u64 and wrap like the kernel's.
        written.push((slice_words + 1, u64::MAX));
        written.push((1, 2));
        let file = fake_map(plan, &written);
        let map = CounterMap::map_fd(file.as_fd(), plan).expect("the memfd maps");
        let mut totals = Totals::default();
        totals.words.fill(7); // stale contents are replaced, not added to
        map.read_into(&mut totals);
        for (case, (name, word)) in cases.iter().enumerate() {
            let base = (case as u64 + 1) * 1000;
            let expected = 3 * base + 1 + 2 + 3;
            assert_eq!(totals.words[*word], expected, "{name} (word {word})");
        }
        assert_eq!(totals.words[1], 1, "u64::MAX + 2 wraps to 1");
        let nonzero = totals.words.iter().filter(|&&w| w != 0).count();
        assert_eq!(nonzero, cases.len() + 1, "every other word sums to zero");
    }
}
