//! What the detector watches (keys) and what it reports (events).

use monitor_common::layout::{Direction, L4};

/// One watched traffic series: a destination port of a protocol, in a direction, on an
/// interface. `Copy` and small, so observing a key never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AlertKey {
    /// Kernel interface index. The daemon maps it to the `interface` label.
    pub ifindex: u32,
    /// Ingress or egress.
    pub direction: Direction,
    /// TCP or UDP.
    pub protocol: L4,
    /// Destination port.
    pub port: u16,
}

/// Why an alert fires; the `reason` label of `portmon_plaintext_alert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertReason {
    /// The rate rose far above its learned baseline.
    Spike,
    /// Traffic on a port that must carry none.
    MustBeZero,
    /// Plaintext payloads (HTTP, a mail or login greeting, SNMP v1/v2c) on a port the
    /// policy calls secure: must-be-zero semantics on those payloads.
    Mismatch,
}

impl AlertReason {
    /// The label value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            AlertReason::Spike => "spike",
            AlertReason::MustBeZero => "must_be_zero",
            AlertReason::Mismatch => "mismatch",
        }
    }
}

/// Which rate of a key triggered an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Packets per second.
    Packets,
    /// TCP SYNs (connection attempts) per second.
    Syns,
}

impl Signal {
    /// The name used in logs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Signal::Packets => "packets",
            Signal::Syns => "syns",
        }
    }
}

/// Whether an alert starts or ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The alert starts firing.
    Started,
    /// The alert stops firing.
    Ended,
}

impl EventKind {
    /// The name used in logs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Ended => "ended",
        }
    }
}

/// A change of an alert's state, reported by [`crate::alerts::Detector::observe`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertEvent {
    /// Started or ended.
    pub kind: EventKind,
    /// The series.
    pub key: AlertKey,
    /// Why it fired.
    pub reason: AlertReason,
    /// The rate that fired it (kept for the end event).
    pub signal: Signal,
    /// That signal's rate in the interval just observed, per second.
    pub rate: f64,
    /// That signal's baseline mean, per second (0 for a must-be-zero port).
    pub baseline: f64,
}
