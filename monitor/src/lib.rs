//! portmon: per-port traffic counters from XDP (ingress) and TC (egress), read from an
//! mmap'ed BPF array and exported to Prometheus.

pub mod alerts;
pub mod attach;
pub mod cli;
pub mod counters;
pub mod dataplane;
pub mod ports;
