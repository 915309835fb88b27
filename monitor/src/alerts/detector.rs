//! The detector: one small state machine per watched key.

use std::{
    collections::{HashMap, hash_map::Entry},
    time::{Duration, Instant},
};

use super::{
    AlertEvent, AlertKey, AlertReason, AlertsConfig, AlertsConfigError, EventKind, Signal,
    baseline::Baseline,
};

/// Follows the packet and SYN rates of every key it is shown and reports alerts starting and
/// ending. Pure logic: the caller supplies the time and the counter deltas.
#[derive(Debug, Clone)]
pub struct Detector {
    config: AlertsConfig,
    /// Start of the first observed interval: every key is taken as silent since then.
    epoch: Option<Instant>,
    keys: HashMap<AlertKey, KeyState>,
    /// Plaintext payloads on secure ports, apart from `keys`: one port can be watched for
    /// both (a must-be-zero port that the policy calls secure).
    mismatches: HashMap<AlertKey, KeyState>,
    alerts_total: u64,
}

#[derive(Debug, Clone)]
struct KeyState {
    reason: AlertReason,
    packets: Baseline,
    syns: Baseline,
    /// How long the fire condition has held without a break.
    hot_for: Duration,
    /// While firing: how long the stay condition has been false without a break.
    quiet_for: Duration,
    /// The signal that started the alert now firing.
    firing: Option<Signal>,
}

/// One signal's rate judged against its baseline (taken before the rate is learned).
#[derive(Debug, Clone, Copy)]
struct Verdict {
    rate: f64,
    baseline: f64,
    fire: bool,
    stay: bool,
}

impl Detector {
    /// A detector with no history.
    ///
    /// # Errors
    /// When the configuration is unusable; the error names the key.
    pub fn new(config: AlertsConfig) -> Result<Self, AlertsConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            epoch: None,
            keys: HashMap::new(),
            mismatches: HashMap::new(),
            alerts_total: 0,
        })
    }

    /// The configuration in use.
    #[must_use]
    pub fn config(&self) -> &AlertsConfig {
        &self.config
    }

    /// Alerts started since the detector was created (`portmon_plaintext_alerts_total`).
    #[must_use]
    pub fn alerts_total(&self) -> u64 {
        self.alerts_total
    }

    /// The alerts firing now, in no particular order.
    pub fn firing(&self) -> impl Iterator<Item = (&AlertKey, AlertReason)> {
        self.keys
            .iter()
            .chain(&self.mismatches)
            .filter(|(_, state)| state.firing.is_some())
            .map(|(key, state)| (key, state.reason))
    }

    /// The baseline means (packets/s, SYNs/s) learned for `key`, if it ever carried traffic.
    #[must_use]
    pub fn baseline(&self, key: &AlertKey) -> Option<(f64, f64)> {
        self.keys
            .get(key)
            .map(|state| (state.packets.mean(), state.syns.mean()))
    }

    /// Feeds one interval of `key`: `packets` and `syns` counted during the `interval` that
    /// ends at `now`. Returns the alert that starts or ends, if any.
    ///
    /// Call it for every watched key at every interval, with zero deltas too: a firing alert
    /// ends only through observations of its key. A key never seen with traffic costs nothing
    /// (no state is kept for it); after the first packet, observing it does not allocate.
    pub fn observe(
        &mut self,
        key: AlertKey,
        now: Instant,
        packets: u64,
        syns: u64,
        interval: Duration,
    ) -> Option<AlertEvent> {
        if interval.is_zero() {
            return None;
        }
        let epoch = *self
            .epoch
            .get_or_insert_with(|| now.checked_sub(interval).unwrap_or(now));
        let state = match self.keys.entry(key) {
            Entry::Occupied(entry) => entry.into_mut(),
            // A silent key keeps no state: its baseline is zero, which a new state also says.
            Entry::Vacant(_) if packets == 0 && syns == 0 => return None,
            Entry::Vacant(entry) => entry.insert(KeyState::new(
                if self.config.is_must_be_zero(key.port, key.protocol) {
                    AlertReason::MustBeZero
                } else {
                    AlertReason::Spike
                },
            )),
        };
        let age = now.saturating_duration_since(epoch).max(interval);
        let event = match state.reason {
            AlertReason::MustBeZero | AlertReason::Mismatch => {
                state.step_must_be_zero(&self.config, packets, syns, interval)
            }
            AlertReason::Spike => state.step_spike(&self.config, age, packets, syns, interval),
        };
        let event = event.map(|(kind, signal, verdict)| AlertEvent {
            kind,
            key,
            reason: state.reason,
            signal,
            rate: verdict.rate,
            baseline: verdict.baseline,
        });
        if matches!(
            event,
            Some(AlertEvent {
                kind: EventKind::Started,
                ..
            })
        ) {
            self.alerts_total += 1;
        }
        event
    }
}

impl Detector {
    /// Feeds one interval of plaintext payloads seen on `key`, a port the policy calls
    /// secure: `packets` is how many payloads of a plaintext kind were counted during
    /// `interval`. Must-be-zero semantics: the first one fires (during
    /// warm-up too: no baseline is needed), `clear_after` without any ends the alert.
    ///
    /// Call it for every watched key at every interval, with zero deltas too, as
    /// [`Detector::observe`]. A key never seen with a plaintext payload keeps no state.
    pub fn observe_mismatch(
        &mut self,
        key: AlertKey,
        packets: u64,
        interval: Duration,
    ) -> Option<AlertEvent> {
        if interval.is_zero() {
            return None;
        }
        let state = match self.mismatches.entry(key) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(_) if packets == 0 => return None,
            Entry::Vacant(entry) => entry.insert(KeyState::new(AlertReason::Mismatch)),
        };
        let (kind, signal, verdict) =
            state.step_must_be_zero(&self.config, packets, 0, interval)?;
        if kind == EventKind::Started {
            self.alerts_total += 1;
        }
        Some(AlertEvent {
            kind,
            key,
            reason: AlertReason::Mismatch,
            signal,
            rate: verdict.rate,
            baseline: verdict.baseline,
        })
    }
}

impl KeyState {
    fn new(reason: AlertReason) -> Self {
        Self {
            reason,
            packets: Baseline::default(),
            syns: Baseline::default(),
            hot_for: Duration::ZERO,
            quiet_for: Duration::ZERO,
            firing: None,
        }
    }

    /// A port that must be silent: the first packet fires, `clear_after` of silence ends it.
    fn step_must_be_zero(
        &mut self,
        config: &AlertsConfig,
        packets: u64,
        syns: u64,
        interval: Duration,
    ) -> Option<(EventKind, Signal, Verdict)> {
        let secs = interval.as_secs_f64();
        let active = packets > 0 || syns > 0;
        let (signal, count) = if packets == 0 && syns > 0 {
            (Signal::Syns, syns)
        } else {
            (Signal::Packets, packets)
        };
        #[expect(
            clippy::cast_precision_loss,
            reason = "a rate needs no more than 52 bits"
        )]
        let verdict = Verdict {
            rate: count as f64 / secs,
            baseline: 0.0,
            fire: active,
            stay: active,
        };
        self.transition(config, interval, signal, verdict, true, Duration::ZERO)
    }

    /// A port judged against its learned baselines.
    fn step_spike(
        &mut self,
        config: &AlertsConfig,
        age: Duration,
        packets: u64,
        syns: u64,
        interval: Duration,
    ) -> Option<(EventKind, Signal, Verdict)> {
        let secs = interval.as_secs_f64();
        // Weight of the new sample: the half-life's, or more while the history is short, so
        // the first minutes give a plain average instead of an estimate stuck near zero.
        let alpha = (1.0 - (-secs / config.half_life.as_secs_f64()).exp2())
            .max(secs / age.as_secs_f64())
            .min(1.0);
        let packets = judge_and_learn(
            &mut self.packets,
            config,
            config.min_packet_rate,
            packets,
            secs,
            alpha,
        );
        let syns = judge_and_learn(
            &mut self.syns,
            config,
            config.min_syn_rate,
            syns,
            secs,
            alpha,
        );
        let (signal, verdict) = match self.firing {
            Some(Signal::Syns) => (Signal::Syns, syns),
            None if syns.fire && !packets.fire => (Signal::Syns, syns),
            Some(Signal::Packets) | None => (Signal::Packets, packets),
        };
        let combined = Verdict {
            fire: packets.fire || syns.fire,
            stay: packets.stay || syns.stay,
            ..verdict
        };
        self.transition(
            config,
            interval,
            signal,
            combined,
            age >= config.warmup,
            config.fire_after,
        )
    }

    /// The hysteresis shared by both reasons: fire once the fire condition held for
    /// `fire_after` (and the detector may fire), end once the stay condition failed for
    /// `clear_after`.
    fn transition(
        &mut self,
        config: &AlertsConfig,
        interval: Duration,
        signal: Signal,
        verdict: Verdict,
        may_fire: bool,
        fire_after: Duration,
    ) -> Option<(EventKind, Signal, Verdict)> {
        self.hot_for = if verdict.fire {
            self.hot_for.saturating_add(interval)
        } else {
            Duration::ZERO
        };
        match self.firing {
            None if may_fire && verdict.fire && self.hot_for >= fire_after => {
                self.firing = Some(signal);
                self.quiet_for = Duration::ZERO;
                Some((EventKind::Started, signal, verdict))
            }
            None => None,
            Some(started_by) => {
                self.quiet_for = if verdict.stay {
                    Duration::ZERO
                } else {
                    self.quiet_for.saturating_add(interval)
                };
                if self.quiet_for >= config.clear_after {
                    self.firing = None;
                    self.hot_for = Duration::ZERO;
                    Some((EventKind::Ended, started_by, verdict))
                } else {
                    None
                }
            }
        }
    }
}

/// Judges one interval's `count` against `baseline`, then lets the baseline learn it.
fn judge_and_learn(
    baseline: &mut Baseline,
    config: &AlertsConfig,
    min_rate: f64,
    count: u64,
    secs: f64,
    alpha: f64,
) -> Verdict {
    #[expect(
        clippy::cast_precision_loss,
        reason = "a rate needs no more than 52 bits"
    )]
    let rate = count as f64 / secs;
    let mean = baseline.mean();
    let z = baseline.z(rate, secs);
    let verdict = Verdict {
        rate,
        baseline: mean,
        fire: rate >= min_rate && rate >= config.fire_ratio * mean && z >= config.fire_z,
        stay: rate >= min_rate && rate >= config.clear_ratio * mean && z >= config.clear_z,
    };
    let ceiling = (mean + config.clip_z * baseline.sigma(secs)).max(min_rate);
    baseline.learn(rate, alpha, ceiling);
    verdict
}
