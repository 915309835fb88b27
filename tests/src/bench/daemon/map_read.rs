//! `map_read_ms`: one full read of an interface's counter map (`CounterMap::read_into`,
//! what the daemon does every interval), against two baselines over ordinary heap memory
//! of the same size, timed alternately in the same run:
//!
//! * `memsum`: the very same reduction (sum every slice into one slice-sized total) with
//!   plain loads, which the compiler may vectorize: what the read would cost if the map
//!   were ordinary memory;
//! * `memcpy`: a copy of as many bytes as the map holds: the machine's bandwidth.

use std::{hint::black_box, time::Instant};

use anyhow::Context as _;
use monitor_common::layout::{Counter, SLICE_ENTRIES};
use portmon::{
    counters::{CounterMap, Totals},
    dataplane::{DataPlane, LoadOptions},
};

use crate::bench::report::median;

/// What one run measured, medians over its reads, in ms.
#[derive(Clone, Copy, Debug)]
pub struct MapReadRun {
    /// `CounterMap::read_into`.
    pub read: f64,
    /// The same sum over heap memory.
    pub memsum: f64,
    /// A copy of the map's size.
    pub memcpy: f64,
}

/// The map under measurement and the baselines' buffers.
pub struct MapReader {
    /// Keeps the map alive; never attached.
    _data_plane: DataPlane,
    counters: CounterMap,
    totals: Totals,
    heap: Vec<u64>,
    heap_totals: Vec<u64>,
    copy: Vec<u64>,
}

impl MapReader {
    /// Loads a data plane with the daemon's default options (one interface's map) and
    /// fills the baselines' buffers (so their pages are real, not the shared zero page).
    ///
    /// # Errors
    /// When loading fails (not root).
    pub fn new() -> anyhow::Result<Self> {
        let data_plane =
            DataPlane::load(LoadOptions::default()).context("loading portmon's programs")?;
        let counters = data_plane.counters().context("mapping the counter map")?;
        let words = usize::try_from(counters.plan().map_bytes())? / size_of::<u64>();
        let slice_words = SLICE_ENTRIES as usize * (size_of::<Counter>() / size_of::<u64>());
        Ok(Self {
            _data_plane: data_plane,
            counters,
            totals: Totals::default(),
            heap: (0..words as u64).collect(),
            heap_totals: vec![1; slice_words],
            copy: vec![1; words],
        })
    }

    /// Bytes of the counter map.
    #[must_use]
    pub fn map_bytes(&self) -> u64 {
        self.counters.plan().map_bytes()
    }

    /// Slices of the counter map.
    #[must_use]
    pub fn slices(&self) -> u32 {
        self.counters.plan().slices
    }

    /// `reads` reads of each kind, alternated; the medians.
    pub fn run(&mut self, reads: usize) -> MapReadRun {
        let (mut read, mut memsum, mut memcpy) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..reads {
            let started = Instant::now();
            self.counters.read_into(black_box(&mut self.totals));
            read.push(started.elapsed().as_secs_f64() * 1e3);

            let started = Instant::now();
            sum_slices(black_box(&self.heap), black_box(&mut self.heap_totals));
            memsum.push(started.elapsed().as_secs_f64() * 1e3);

            let started = Instant::now();
            black_box(&mut self.copy).copy_from_slice(black_box(&self.heap));
            memcpy.push(started.elapsed().as_secs_f64() * 1e3);
        }
        MapReadRun {
            read: median(&read),
            memsum: median(&memsum),
            memcpy: median(&memcpy),
        }
    }
}

/// Sums every `totals.len()`-word slice of `all` into `totals`, like `read_into`.
fn sum_slices(all: &[u64], totals: &mut [u64]) {
    totals.fill(0);
    for slice in all.chunks_exact(totals.len()) {
        for (total, word) in totals.iter_mut().zip(slice) {
            *total = total.wrapping_add(*word);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_slices_adds_word_by_word() {
        let mut totals = vec![99; 3];
        sum_slices(&[1, 2, 3, 10, 20, 30], &mut totals);
        assert_eq!(totals, [11, 22, 33], "two slices of three words");
    }
}
