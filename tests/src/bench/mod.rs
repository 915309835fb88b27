//! `cargo xtask bench kernel`: what portmon's map design costs, measured against
//! baselines in the same run (issue 2, "The map design is a measured decision").
//!
//! * [`cost`]: ns per packet through BPF_PROG_TEST_RUN for a bare XDP_PASS program,
//!   `portmon_xdp` (default and capped layouts) and a naive per-CPU hash-map counter.
//! * [`contention`]: two CPUs counting the same port, then different ports.
//! * [`floods`]: a live-frames flood ([`live`]) through a veth ([`veth`]) into the attached
//!   XDP program, and the same flood counted by a user-space AF_PACKET ring ([`afpacket`]).
//! * [`memory`]: kernel memory of the maps at 2, 64 and 256 possible CPUs.
//! * [`payload`]: what payload classification adds, for packets with and without payload.
//!
//! Every figure is a median over runs; ratios are taken within one run, against the
//! baseline measured in that run, so that drift on a shared machine cancels out.
//!
//! The modules that need the benchmark-only eBPF object are behind the `bench` feature;
//! the others build (and their unit tests run) with every `cargo test`.

pub mod afpacket;
pub mod contention;
pub mod cost;
pub mod cpu;
pub mod daemon;
#[cfg(feature = "bench")]
pub mod floods;
pub mod frames;
#[cfg(feature = "bench")]
pub mod kernel;
pub mod live;
pub mod memory;
#[cfg(feature = "bench")]
pub mod payload;
#[cfg(feature = "bench")]
pub mod programs;
pub mod report;
pub mod veth;
