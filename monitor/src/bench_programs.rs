//! Baseline programs for `cargo xtask bench kernel`, in their own object so that nothing
//! in the production object exists only for benchmarks. Built by `build.rs` with the
//! production programs (aya-build builds every binary of `monitor-ebpf`).

/// The benchmark object: `bench_pass`, `bench_parse`, `bench_hashmap` and `bench_tx`.
pub static BENCH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/portmon-bench"));

/// A bare XDP_PASS program.
pub const PASS_PROGRAM: &str = "bench_pass";
/// The shared parser alone, counting nothing.
pub const PARSE_PROGRAM: &str = "bench_parse";
/// The shared parser counting into a per-CPU hash map.
pub const HASHMAP_PROGRAM: &str = "bench_hashmap";
/// Returns XDP_TX: the live-frames flood generator.
pub const TX_PROGRAM: &str = "bench_tx";
/// The hash map `bench_hashmap` counts into.
pub const HASHMAP_MAP: &str = "BENCH_HASH_COUNTERS";
