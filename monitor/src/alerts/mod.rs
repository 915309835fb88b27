//! Spike detection on plaintext ports: pure logic, no I/O, no clock of its own.
//!
//! The daemon shows the [`Detector`] one interval of one key at a time — an [`AlertKey`] is
//! (interface, direction, protocol, destination port) — as counter deltas: packets and TCP
//! SYNs. The detector answers with an [`AlertEvent`] when an alert starts or ends. It is
//! configured by [`AlertsConfig`], the `[alerts]` section of the configuration file.
//!
//! # Algorithm
//!
//! Each key has two signals, the packet rate and the SYN rate (new TCP connections), each
//! judged against its own learned baseline; an alert fires when either signal fires.
//!
//! **Baseline.** An exponentially weighted mean `m` and variance `v` of the rate per second
//! (Finch 2009), with a half-life `half_life` (default 1 h): long enough that a burst of
//! minutes barely moves it, short enough to follow a daily cycle (the lag on a 24 h sine wave
//! stays well below the fire ratio). While the history is shorter than the half-life, the
//! weight of a sample is `interval / age` instead, so the first minutes give a plain average.
//! The history of every key starts at the first observation of any key: a key never seen
//! with traffic has been silent all along, its baseline is zero and nothing is stored for it.
//!
//! **Robust learning.** A sample is learned clipped to `m + clip_z * sigma` (at least the
//! minimum rate): a burst does not inflate the baseline meant to catch the next burst, yet
//! a lasting change of level is learned, each clipped sample lifting the ceiling a little.
//!
//! **Deviation.** `sigma = sqrt(max(v, m / interval))`: the learned deviation, but never less
//! than the counting noise of a Poisson process of the same mean. A series that was smooth
//! while learning does not turn ordinary jitter into alerts.
//!
//! **Fire condition** for one interval's rate `r`, all three at once:
//! `r >= min_rate` (20 packets/s, 5 SYNs/s by default: 0 to 1 packet is never a spike),
//! `r >= fire_ratio * m` (3x) and `(r - m) / sigma >= fire_z` (6). The ratio makes a spike
//! mean "several times the usual" on smooth high-rate series, where 6 sigma is a small
//! change; the z-score makes it mean "far outside the usual swings" on noisy series, where
//! 3x happens by chance. The alert starts once the condition has held for `fire_after`
//! (3 s) in a row, and the detector is past its `warmup` (10 min).
//!
//! **Hysteresis.** A firing alert stays while the stay condition holds — the same test with
//! the lower `clear_ratio` (1.5x) and `clear_z` (3) — and ends once it has failed for
//! `clear_after` (60 s) in a row. Pulsing traffic makes one long alert, not a flapping one.
//!
//! **Must-be-zero ports** (`must_be_zero`, default telnet 23/tcp, Docker 2375/tcp and rsh
//! 514/tcp) need no baseline: the first packet fires, even during warm-up, and the alert ends
//! after `clear_after` of silence.
//!
//! **Cost.** One hash lookup and a few floating-point operations per key and interval; state
//! is a few dozen bytes per key that ever carried traffic. After a key's first packet,
//! observing it never allocates.
//!
//! # Measured
//!
//! `cargo test -p monitor --lib alerts::evaluation -- --nocapture` runs the detector with the
//! default configuration on seeded synthetic series at a 1 s interval and prints the false
//! positives per hour (Poisson and log-normal bursty noise at 0.5 to 5000 packets/s, a
//! 10..200/s and a 1..1000/s diurnal wave, a slow ramp) and the detection delay in intervals
//! (steps of 4x and 10x, a new flow on a silent port, a fast ramp, pulses, a step on top of
//! a diurnal wave). The tests fail if a quiet series alerts more than once per 100 hours or a
//! step fires later than its bound.

mod baseline;
mod config;
mod detector;
#[cfg(test)]
mod evaluation;
mod events;
#[cfg(test)]
mod synthetic;

pub use config::{AlertsConfig, AlertsConfigError, PortSpec, PortSpecError};
pub use detector::Detector;
pub use events::{AlertEvent, AlertKey, AlertReason, EventKind, Signal};
