//! The detector on synthetic series: what it must do, and how well it does it.
//!
//! `cargo test -p monitor --lib alerts::evaluation -- --nocapture --test-threads 1` prints the
//! measurements quoted in README: false positives per hour on series with no anomaly, and
//! the detection delay in intervals on series with one.

#![expect(clippy::expect_used, reason = "tests panic with what they expected")]

use std::time::{Duration, Instant};

use monitor_common::layout::L4;

use super::{
    AlertKey, AlertReason, AlertsConfig, Detector, EventKind, Signal,
    synthetic::{Anomaly, Base, KEY, Noise, Scenario, starts},
};

const SECOND: Duration = Duration::from_secs(1);
const HOUR: f64 = 3600.0;
/// Seeds per scenario in the statistical measurements.
const SEEDS: u64 = 12;

fn scenario(base: Base, anomaly: Anomaly, noise: Noise, hours: f64) -> Scenario {
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a few hours"
    )]
    let seconds = (hours * HOUR) as u64;
    Scenario {
        base,
        anomaly,
        noise,
        syn_share: 0.05,
        seconds,
        interval: SECOND,
    }
}

/// Series with no anomaly: every alert on them is a false positive.
fn quiet_cases() -> Vec<(&'static str, Scenario)> {
    let flat = |rate, noise| scenario(Base::Flat(rate), Anomaly::None, noise, 6.0);
    let diurnal =
        |low, high, noise| scenario(Base::Diurnal { low, high }, Anomaly::None, noise, 48.0);
    vec![
        ("poisson 0.5/s", flat(0.5, Noise::Poisson)),
        ("poisson 5/s", flat(5.0, Noise::Poisson)),
        ("poisson 50/s", flat(50.0, Noise::Poisson)),
        ("poisson 5000/s", flat(5000.0, Noise::Poisson)),
        ("bursty(0.5) 20/s", flat(20.0, Noise::Bursty(0.5))),
        ("bursty(0.5) 500/s", flat(500.0, Noise::Bursty(0.5))),
        ("bursty(1.0) 500/s", flat(500.0, Noise::Bursty(1.0))),
        ("diurnal 10..200/s", diurnal(10.0, 200.0, Noise::Poisson)),
        (
            "diurnal 1..1000/s bursty(0.5)",
            diurnal(1.0, 1000.0, Noise::Bursty(0.5)),
        ),
        (
            "slow ramp 50 -> 150/s over 2h",
            scenario(
                Base::Ramp {
                    from: 50.0,
                    to: 150.0,
                    at: 2.0 * HOUR,
                    length: 2.0 * HOUR,
                },
                Anomaly::None,
                Noise::Poisson,
                6.0,
            ),
        ),
    ]
}

/// Anomalies that must fire: (name, series, the largest delay accepted in intervals).
fn anomaly_cases() -> Vec<(&'static str, Scenario, u64)> {
    let at = 2.0 * HOUR;
    let step = |base, factor, add, noise| {
        scenario(
            base,
            Anomaly::Step {
                at,
                length: 600.0,
                factor,
                add,
            },
            noise,
            3.0,
        )
    };
    let fifty = Base::Flat(50.0);
    vec![
        ("step x4 on 50/s", step(fifty, 4.0, 0.0, Noise::Poisson), 3),
        (
            "step x10 on 50/s",
            step(fifty, 10.0, 0.0, Noise::Poisson),
            3,
        ),
        (
            "step x10 on bursty(0.5) 50/s",
            step(fifty, 10.0, 0.0, Noise::Bursty(0.5)),
            10,
        ),
        (
            "step 0 -> 50/s (new traffic)",
            step(Base::Flat(0.0), 1.0, 50.0, Noise::Poisson),
            3,
        ),
        (
            "ramp 50 -> 2000/s over 60s",
            scenario(
                fifty,
                Anomaly::Ramp {
                    at,
                    rise: 60.0,
                    hold: 600.0,
                    factor: 40.0,
                },
                Noise::Poisson,
                3.0,
            ),
            10,
        ),
        (
            "pulses 20s on/20s off x10 for 10m on 50/s",
            scenario(
                fifty,
                Anomaly::Pulses {
                    at,
                    length: 580.0,
                    on: 20.0,
                    period: 40.0,
                    add: 450.0,
                },
                Noise::Poisson,
                3.0,
            ),
            3,
        ),
        (
            "step x5 at 16:00 on a diurnal 10..200/s",
            scenario(
                Base::Diurnal {
                    low: 10.0,
                    high: 200.0,
                },
                Anomaly::Step {
                    at: 40.0 * HOUR,
                    length: 600.0,
                    factor: 5.0,
                    add: 0.0,
                },
                Noise::Poisson,
                41.0,
            ),
            3,
        ),
    ]
}

/// Interval (1-based) in which second `at` falls.
fn interval_of(scenario: &Scenario, at: f64) -> u64 {
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a few hours of intervals"
    )]
    let step = (at / scenario.interval.as_secs_f64()) as u64 + 1;
    step
}

/// Minimum, mean and maximum.
fn summary(values: &[u64]) -> (u64, f64, u64) {
    let min = values.iter().min().copied().unwrap_or_default();
    let max = values.iter().max().copied().unwrap_or_default();
    #[expect(clippy::cast_precision_loss, reason = "small")]
    let mean = values.iter().sum::<u64>() as f64 / values.len().max(1) as f64;
    (min, mean, max)
}

#[test]
fn false_positives_per_hour_without_anomaly() {
    let config = AlertsConfig::default();
    let (mut worst, mut total_alerts, mut total_hours) = (0.0_f64, 0, 0.0);
    println!("false positives (default config, 1 s interval, {SEEDS} seeds per row):");
    println!(
        "{:<34} {:>8} {:>8} {:>10}",
        "series", "hours", "alerts", "per hour"
    );
    for (name, scenario) in quiet_cases() {
        let mut alerts = 0_u64;
        for seed in 0..SEEDS {
            alerts += starts(&scenario.run(&config, KEY, seed)).count() as u64;
        }
        #[expect(clippy::cast_precision_loss, reason = "small")]
        let hours = (scenario.seconds * SEEDS) as f64 / HOUR;
        #[expect(clippy::cast_precision_loss, reason = "small")]
        let rate = alerts as f64 / hours;
        println!("{name:<34} {hours:>8.0} {alerts:>8} {rate:>10.4}");
        worst = worst.max(rate);
        total_alerts += alerts;
        total_hours += hours;
    }
    println!("{:<34} {total_hours:>8.0} {total_alerts:>8}", "all");
    // One false alert per 100 hours is the budget for any single series shape.
    assert!(
        worst <= 0.01,
        "expected at most 0.01 false alerts per hour on every series, worst was {worst}"
    );
}

#[test]
fn anomalies_fire_within_their_delay_and_clear_after_them() {
    let config = AlertsConfig::default();
    println!(
        "detection delay in 1 s intervals from the first anomalous one (1 = that interval), \
         and clear delay from the first normal one (default clear_after = {:?}), {SEEDS} seeds:",
        config.clear_after
    );
    println!(
        "{:<40} {:>18} {:>18}",
        "series", "fire min/mean/max", "clear min/mean/max"
    );
    for (name, scenario, max_delay) in anomaly_cases() {
        let first = interval_of(
            &scenario,
            scenario
                .anomaly
                .start()
                .expect("an anomaly case has an anomaly"),
        );
        let over = interval_of(
            &scenario,
            scenario
                .anomaly
                .end()
                .expect("an anomaly case has an anomaly"),
        );
        let (mut delays, mut clears) = (Vec::new(), Vec::new());
        for seed in 0..SEEDS {
            let events = scenario.run(&config, KEY, seed);
            let [(started, start), (ended, end)] = events.as_slice() else {
                panic!(
                    "{name}, seed {seed}: expected one alert starting and ending, got {events:#?}"
                );
            };
            assert!(
                (start.kind, end.kind) == (EventKind::Started, EventKind::Ended),
                "{name}, seed {seed}: expected start then end, got {events:#?}"
            );
            assert!(
                *started >= first,
                "{name}, seed {seed}: expected no alert before interval {first}, got one at {started}"
            );
            assert_eq!(start.reason, AlertReason::Spike, "{name}, seed {seed}");
            assert!(
                *ended >= over,
                "{name}, seed {seed}: expected the alert to last until interval {over}, it ended at {ended}"
            );
            delays.push(started - first + 1);
            clears.push(ended - over + 1);
        }
        let (min, mean, max) = summary(&delays);
        let (cmin, cmean, cmax) = summary(&clears);
        println!("{name:<40} {min:>6} {mean:>5.1} {max:>5} {cmin:>6} {cmean:>5.1} {cmax:>5}");
        assert!(
            max <= max_delay,
            "{name}: expected a delay of at most {max_delay} intervals, got {delays:?}"
        );
    }
}

/// A detector and a clock, for the hand-written series below.
struct Harness {
    detector: Detector,
    now: Instant,
    interval: Duration,
}

impl Harness {
    fn new(config: AlertsConfig) -> Self {
        Self {
            detector: Detector::new(config).expect("valid config"),
            now: Instant::now(),
            interval: SECOND,
        }
    }

    /// Feeds `count` intervals of (packets, syns) to `key`; returns the events with the
    /// 0-based index of the interval, in this call, that produced them.
    fn feed(
        &mut self,
        key: AlertKey,
        count: u64,
        packets: u64,
        syns: u64,
    ) -> Vec<(u64, EventKind, AlertReason, Signal)> {
        let mut events = Vec::new();
        for i in 0..count {
            self.now += self.interval;
            if let Some(e) = self
                .detector
                .observe(key, self.now, packets, syns, self.interval)
            {
                events.push((i, e.kind, e.reason, e.signal));
            }
        }
        events
    }
}

const TELNET: AlertKey = AlertKey { port: 23, ..KEY };

fn warmed_up(config: AlertsConfig) -> Harness {
    let mut harness = Harness::new(config);
    // Another key carries the clock past the warm-up; KEY stays silent.
    let other = AlertKey { port: 80, ..KEY };
    let warmup = harness.detector.config().warmup.as_secs();
    assert!(
        harness.feed(other, warmup + 1, 100, 5).is_empty(),
        "steady traffic must not alert"
    );
    harness
}

#[test]
fn a_single_packet_is_no_spike() {
    let cases: &[(&str, u64, u64)] = &[
        ("one packet", 1, 0),
        ("one SYN", 1, 1),
        ("a handful of packets", 19, 0),
        ("a handful of SYNs", 10, 4),
    ];
    for (name, packets, syns) in cases {
        let mut harness = warmed_up(AlertsConfig::default());
        let mut events = harness.feed(KEY, 1, *packets, *syns);
        events.extend(harness.feed(KEY, 120, 0, 0));
        assert!(
            events.is_empty(),
            "{name} on a silent port: expected no alert, got {events:?}"
        );
    }
}

#[test]
fn must_be_zero_port_fires_on_the_first_packet_and_clears_after_silence() {
    let mut harness = Harness::new(AlertsConfig::default());
    assert!(harness.feed(TELNET, 5, 0, 0).is_empty(), "silence is fine");
    // During warm-up too: a must-be-zero port needs no baseline.
    let fired = harness.feed(TELNET, 1, 1, 1);
    assert_eq!(
        fired,
        vec![(
            0,
            EventKind::Started,
            AlertReason::MustBeZero,
            Signal::Packets
        )],
        "the first packet fires"
    );
    assert_eq!(harness.detector.alerts_total(), 1);
    let clear_after = harness.detector.config().clear_after.as_secs();
    // A packet during the hold restarts it: no flapping.
    assert!(
        harness.feed(TELNET, clear_after - 1, 0, 0).is_empty(),
        "still firing before clear_after of silence"
    );
    assert!(
        harness.feed(TELNET, 1, 1, 0).is_empty(),
        "a packet keeps it firing, no new alert"
    );
    let ended = harness.feed(TELNET, clear_after, 0, 0);
    assert_eq!(
        ended,
        vec![(
            clear_after - 1,
            EventKind::Ended,
            AlertReason::MustBeZero,
            Signal::Packets
        )],
        "ends after clear_after of silence"
    );
    assert_eq!(harness.detector.alerts_total(), 1, "one alert in all");
    assert_eq!(
        harness.detector.firing().count(),
        0,
        "nothing fires any more"
    );
}

#[test]
fn a_plaintext_payload_on_a_secure_port_fires_a_mismatch_and_clears_after_silence() {
    let mut detector = Detector::new(AlertsConfig::default()).expect("valid config");
    let https = AlertKey { port: 443, ..KEY };
    let clear_after = detector.config().clear_after.as_secs();
    let feed = |detector: &mut Detector, count: u64, packets: u64| {
        let mut events = Vec::new();
        for i in 0..count {
            if let Some(e) = detector.observe_mismatch(https, packets, SECOND) {
                events.push((i, e.kind, e.reason));
            }
        }
        events
    };
    assert!(
        feed(&mut detector, 5, 0).is_empty(),
        "no plaintext, no alert"
    );
    assert_eq!(
        detector.firing().count(),
        0,
        "and no state for a silent key"
    );
    // The first plaintext payload fires at once, during warm-up too.
    assert_eq!(
        feed(&mut detector, 1, 1),
        vec![(0, EventKind::Started, AlertReason::Mismatch)]
    );
    let firing: Vec<_> = detector.firing().map(|(k, r)| (*k, r)).collect();
    assert_eq!(firing, vec![(https, AlertReason::Mismatch)]);
    assert!(
        feed(&mut detector, clear_after - 1, 0).is_empty(),
        "still firing before clear_after of silence"
    );
    assert_eq!(
        feed(&mut detector, 1, 0),
        vec![(0, EventKind::Ended, AlertReason::Mismatch)],
        "ends after clear_after without plaintext"
    );
    assert_eq!(detector.alerts_total(), 1);
    // The spike detector's state for the same key is separate: traffic on 443 is no spike.
    assert!(
        detector
            .observe(https, Instant::now(), 1, 0, SECOND)
            .is_none()
    );
    assert_eq!(detector.firing().count(), 0);
}

#[test]
fn must_be_zero_list_is_configurable() {
    let config = AlertsConfig {
        must_be_zero: vec!["69/udp".parse().expect("valid spec")],
        ..AlertsConfig::default()
    };
    let mut harness = Harness::new(config);
    let tftp = AlertKey {
        port: 69,
        protocol: L4::Udp,
        ..KEY
    };
    assert!(
        harness.feed(TELNET, 1, 1, 1).is_empty(),
        "telnet is no longer on the list"
    );
    let fired = harness.feed(tftp, 1, 1, 0);
    assert_eq!(
        fired,
        vec![(
            0,
            EventKind::Started,
            AlertReason::MustBeZero,
            Signal::Packets
        )]
    );
}

#[test]
fn syn_flood_fires_on_the_syn_rate() {
    let mut harness = Harness::new(AlertsConfig::default());
    assert!(
        harness.feed(KEY, 3600, 500, 1).is_empty(),
        "an hour of steady traffic learns the baseline"
    );
    // 50 more SYNs per second: +10% packets (no packet spike), x51 SYNs.
    let events = harness.feed(KEY, 10, 550, 51);
    assert_eq!(
        events,
        vec![(2, EventKind::Started, AlertReason::Spike, Signal::Syns)],
        "expected a SYN spike on the 3rd interval"
    );
    let firing: Vec<_> = harness.detector.firing().map(|(k, r)| (*k, r)).collect();
    assert_eq!(firing, vec![(KEY, AlertReason::Spike)]);
}

#[test]
fn pulses_make_one_alert_not_a_flapping_series() {
    let mut harness = warmed_up(AlertsConfig::default());
    harness.feed(KEY, 3600, 50, 2);
    let clear_after = harness.detector.config().clear_after.as_secs();
    let mut events = Vec::new();
    // 10 minutes of 20 s at x10, 20 s at normal.
    for _ in 0..15 {
        events.extend(harness.feed(KEY, 20, 500, 20).into_iter().map(|e| e.1));
        events.extend(harness.feed(KEY, 20, 50, 2).into_iter().map(|e| e.1));
    }
    events.extend(
        harness
            .feed(KEY, clear_after, 50, 2)
            .into_iter()
            .map(|e| e.1),
    );
    assert_eq!(
        events,
        vec![EventKind::Started, EventKind::Ended],
        "expected one alert over the whole pulsing period"
    );
}

#[test]
fn anomaly_inside_warmup_never_fires() {
    let mut harness = Harness::new(AlertsConfig::default());
    let warmup = harness.detector.config().warmup.as_secs();
    let mut events = harness.feed(KEY, warmup / 2, 50, 2);
    events.extend(harness.feed(KEY, 60, 5000, 200));
    events.extend(harness.feed(KEY, warmup, 50, 2));
    assert!(
        events.is_empty(),
        "expected nothing during warm-up nor after it, got {events:?}"
    );
}

#[test]
fn silent_keys_keep_no_state() {
    let mut harness = Harness::new(AlertsConfig::default());
    assert!(harness.feed(KEY, 10, 0, 0).is_empty());
    assert_eq!(
        harness.detector.baseline(&KEY),
        None,
        "a key with no traffic keeps no state"
    );
    harness.feed(KEY, 1, 10, 1);
    assert!(
        harness.detector.baseline(&KEY).is_some(),
        "a key with traffic has a baseline"
    );
}

#[test]
fn zero_interval_is_ignored() {
    let mut detector = Detector::new(AlertsConfig::default()).expect("valid");
    let event = detector.observe(TELNET, Instant::now(), 10, 1, Duration::ZERO);
    assert_eq!(event, None, "a zero interval has no rate");
    assert_eq!(detector.baseline(&TELNET), None, "and leaves no state");
}
