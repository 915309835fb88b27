//! Synthetic rate series for the detector's tests: seeded, reproducible, dependency-free.

#![expect(clippy::expect_used, reason = "tests panic with what they expected")]

use std::{
    f64::consts::TAU,
    time::{Duration, Instant},
};

use monitor_common::layout::{Direction, L4};

use super::{AlertEvent, AlertKey, AlertsConfig, Detector, EventKind};

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast and good enough to draw test noise.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        #[expect(
            clippy::cast_precision_loss,
            reason = "53 random bits are what f64 holds"
        )]
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        u.max(f64::MIN_POSITIVE)
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        (-2.0 * self.uniform().ln()).sqrt() * (TAU * self.uniform()).cos()
    }

    /// A Poisson draw of mean `lambda`: exact (Knuth) below 30, normal approximation above,
    /// where the two are indistinguishable for judging a detector.
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda <= 0.0 {
            return 0;
        }
        if lambda < 30.0 {
            let limit = (-lambda).exp();
            let mut product = self.uniform();
            let mut count = 0;
            while product > limit {
                product *= self.uniform();
                count += 1;
            }
            return count;
        }
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "clamped at 0, far below u64::MAX"
        )]
        let draw = (lambda + lambda.sqrt() * self.normal()).round().max(0.0) as u64;
        draw
    }
}

/// The normal traffic of a series, in packets per second at second `t`.
#[derive(Debug, Clone, Copy)]
pub enum Base {
    /// Constant.
    Flat(f64),
    /// A daily cycle between `low` (at 04:00) and `high` (at 16:00).
    Diurnal { low: f64, high: f64 },
    /// `from` until `at`, then a linear change to `to` over `length` seconds, then `to`.
    Ramp {
        from: f64,
        to: f64,
        at: f64,
        length: f64,
    },
}

impl Base {
    fn rate(self, t: f64) -> f64 {
        match self {
            Base::Flat(rate) => rate,
            Base::Diurnal { low, high } => {
                let phase = TAU * (t / 86_400.0 - 16.0 / 24.0);
                low + (high - low) * 0.5 * (1.0 + phase.cos())
            }
            Base::Ramp {
                from,
                to,
                at,
                length,
            } => from + (to - from) * ((t - at) / length).clamp(0.0, 1.0),
        }
    }
}

/// An anomaly laid over the base traffic, from second `at` on.
#[derive(Debug, Clone, Copy)]
pub enum Anomaly {
    /// Nothing: every alert is a false positive.
    None,
    /// For `length` seconds the rate is `base * factor + add`.
    Step {
        at: f64,
        length: f64,
        factor: f64,
        add: f64,
    },
    /// The rate rises linearly to `base * factor` over `rise` seconds, holds for `hold`.
    Ramp {
        at: f64,
        rise: f64,
        hold: f64,
        factor: f64,
    },
    /// `add` packets/s during the first `on` seconds of every `period`, for `length` seconds.
    Pulses {
        at: f64,
        length: f64,
        on: f64,
        period: f64,
        add: f64,
    },
}

impl Anomaly {
    fn apply(self, base: f64, t: f64) -> f64 {
        match self {
            Anomaly::None => base,
            Anomaly::Step {
                at,
                length,
                factor,
                add,
            } => {
                if (at..at + length).contains(&t) {
                    base * factor + add
                } else {
                    base
                }
            }
            Anomaly::Ramp {
                at,
                rise,
                hold,
                factor,
            } => {
                if t < at || t >= at + rise + hold {
                    base
                } else {
                    base * (1.0 + (factor - 1.0) * ((t - at) / rise).min(1.0))
                }
            }
            Anomaly::Pulses {
                at,
                length,
                on,
                period,
                add,
            } => {
                if (at..at + length).contains(&t) && (t - at) % period < on {
                    base + add
                } else {
                    base
                }
            }
        }
    }

    /// Second at which the anomaly starts, if any.
    pub fn start(self) -> Option<f64> {
        match self {
            Anomaly::None => None,
            Anomaly::Step { at, .. } | Anomaly::Ramp { at, .. } | Anomaly::Pulses { at, .. } => {
                Some(at)
            }
        }
    }

    /// Second at which the anomaly is over, if any.
    pub fn end(self) -> Option<f64> {
        match self {
            Anomaly::None => None,
            Anomaly::Step { at, length, .. } | Anomaly::Pulses { at, length, .. } => {
                Some(at + length)
            }
            Anomaly::Ramp { at, rise, hold, .. } => Some(at + rise + hold),
        }
    }
}

/// How counts scatter around the shape.
#[derive(Debug, Clone, Copy)]
pub enum Noise {
    /// Poisson counts: independent packets.
    Poisson,
    /// Poisson counts of a rate itself scaled by a log-normal factor of this sigma every
    /// interval: bursty traffic, far more variable than Poisson.
    Bursty(f64),
}

/// A synthetic series on one key, run through a detector.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub base: Base,
    pub anomaly: Anomaly,
    pub noise: Noise,
    /// SYNs per packet (0 for UDP-like traffic).
    pub syn_share: f64,
    pub seconds: u64,
    pub interval: Duration,
}

/// The key every scenario uses: an FTP control port, plaintext and not must-be-zero.
pub const KEY: AlertKey = AlertKey {
    ifindex: 2,
    direction: Direction::Ingress,
    protocol: L4::Tcp,
    port: 21,
};

/// An event and the interval (1-based) in which it came.
pub type Timed = (u64, AlertEvent);

impl Scenario {
    /// Runs the series through a fresh detector; returns every event with its interval number.
    pub fn run(&self, config: &AlertsConfig, key: AlertKey, seed: u64) -> Vec<Timed> {
        let mut detector = Detector::new(config.clone()).expect("the scenario's config is valid");
        let mut rng = Rng::new(seed);
        let start = Instant::now();
        let secs = self.interval.as_secs_f64();
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "test lengths are small"
        )]
        let steps = (self.seconds as f64 / secs) as u64;
        let mut events = Vec::new();
        for step in 1..=steps {
            #[expect(clippy::cast_precision_loss, reason = "step counts are small")]
            let t = (step - 1) as f64 * secs;
            let mut lambda = self.anomaly.apply(self.base.rate(t), t) * secs;
            if let Noise::Bursty(sigma) = self.noise {
                lambda *= (sigma * rng.normal() - sigma * sigma / 2.0).exp();
            }
            let packets = rng.poisson(lambda);
            let syns = rng.poisson(lambda * self.syn_share).min(packets);
            let now = start + self.interval * u32::try_from(step).expect("test lengths fit u32");
            if let Some(event) = detector.observe(key, now, packets, syns, self.interval) {
                events.push((step, event));
            }
        }
        events
    }
}

/// Alerts started in `events`.
pub fn starts(events: &[Timed]) -> impl Iterator<Item = &Timed> {
    events.iter().filter(|(_, e)| e.kind == EventKind::Started)
}
