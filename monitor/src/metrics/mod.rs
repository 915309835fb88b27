//! Prometheus exposition of portmon's state.
//!
//! The daemon gathers a [`View`] of every interface under short locks on scrape (the
//! collector reads the accumulated state on demand, as tikv/rust-prometheus'
//! `process_collector` does), then [`render`] writes it in the negotiated format. A part
//! that cannot be read is left out and counted; it never fails the scrape.

pub mod budget;
pub mod encode;
pub mod histogram;
pub mod payload;
mod render;

use std::time::Duration;

use monitor_common::layout::{Counter, Direction, L4, Reason};

pub(crate) use self::render::port_labels;
pub use self::render::render;
use self::{budget::PortSample, histogram::Histogram, payload::PayloadView};

/// Everything one scrape exports.
pub struct View<'a> {
    /// The port knowledge (labels of port series, `portmon_port_info`).
    pub policy: &'a crate::ports::Policy,
    /// One entry per attached interface.
    pub interfaces: Vec<InterfaceView>,
    /// The most per-port series the budget allows, over all interfaces.
    pub series_budget: u64,
    /// The spike detector's state; `None` when `[alerts] enabled = false`.
    pub alerts: Option<AlertsView>,
}

/// The detector's exported state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertsView {
    /// Alerts firing now (`portmon_plaintext_alert` 1).
    pub firing: Vec<FiringAlert>,
    /// Alerts started since portmon started.
    pub total: u64,
}

/// One firing alert's labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FiringAlert {
    /// Interface name.
    pub interface: String,
    /// Ingress or egress.
    pub direction: Direction,
    /// TCP or UDP.
    pub protocol: L4,
    /// Destination port.
    pub port: u16,
    /// Service name of the port.
    pub service: String,
    /// `spike`, `must_be_zero` or `mismatch`.
    pub reason: &'static str,
    /// When it started (wall clock); `None` if the daemon did not see it start.
    pub since: Option<std::time::SystemTime>,
}

/// The exported state of one interface.
#[derive(Clone, Debug, Default)]
pub struct InterfaceView {
    /// Interface name.
    pub name: String,
    /// Hooks in use; while `detached`, the hooks used before the link went.
    pub attachments: Vec<Attachment>,
    /// The link is gone (deleted); its counters stay, `portmon_attached` says 0.
    pub detached: bool,
    /// Per-port series after the budget.
    pub ports: Vec<PortSample>,
    /// Packets not counted under a port, by reason.
    pub unparsed: Vec<(Direction, Reason, u64)>,
    /// Packets of IP protocols other than TCP and UDP, by protocol number.
    pub ip_protocols: Vec<(Direction, u8, Counter)>,
    /// Durations of the map reads.
    pub read_duration: Histogram,
    /// Failed map reads.
    pub read_errors: u64,
    /// Kernel run statistics of the attached programs; empty unless
    /// `kernel.bpf_stats_enabled` is 1.
    pub programs: Vec<ProgramStats>,
    /// Payload classification of the tracked ports.
    pub payload: PayloadView,
}

/// One attached hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// `xdp`, `tc_ingress` or `tc_egress`.
    pub hook: &'static str,
    /// `native`/`generic` for XDP, `tcx`/`clsact` for TC.
    pub mode: &'static str,
}

/// Run statistics of one program, from `bpf_prog_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramStats {
    /// The hook it is attached to (`xdp`, `tc_egress`).
    pub hook: &'static str,
    /// Accumulated run time while stats were enabled.
    pub run_time: Duration,
    /// Accumulated runs while stats were enabled.
    pub run_count: u64,
}
