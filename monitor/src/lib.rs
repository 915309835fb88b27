//! portmon: per-port traffic counters from XDP (ingress) and TC (egress), read from an
//! mmap'ed BPF array and exported to Prometheus.

pub mod alerts;
pub mod attach;
#[cfg(feature = "bench-programs")]
pub mod bench_programs;
pub mod caps;
pub mod check;
pub mod cli;
pub mod config;
pub mod counters;
pub mod daemon;
pub mod dataplane;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod payload_map;
pub mod pin;
pub mod ports;
pub mod snapshot;
pub mod top;
pub mod web;
pub mod webhook;
