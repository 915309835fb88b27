//! The spike detector in the read loop: after every read, the raw per-port deltas of the
//! watched ports go to [`Detector::observe`]; alerts that start or end are logged, handed
//! to the webhook, and exported while they fire.
//!
//! Watched ports are computed once at startup: every (protocol, port) the policy calls
//! plaintext or ambiguous, plus the configured must-be-zero ports, a few dozen in all.
//! Iterating all 131072 port keys per interface per interval would cost more than the
//! read itself. Deltas are taken from the raw totals (before the cardinality budget folds
//! ports into `other`), so a port without its own series is still watched.
//!
//! Mismatches (reason `mismatch`): every (protocol, port) the policy calls secure is watched
//! for plaintext payloads (HTTP, mail or login, SNMP v1/v2c), from the payload counts of
//! the tracked ports; any increase fires, as on a must-be-zero port.

use std::{
    collections::HashMap,
    time::{Instant, SystemTime},
};

use monitor_common::layout::{Counter, Direction, L4};

use super::interface::Interface;
use crate::{
    alerts::{
        AlertEvent, AlertKey, AlertReason, AlertsConfig, AlertsConfigError, Detector, EventKind,
    },
    metrics::{AlertsView, FiringAlert},
    ports::{Policy, Security},
    webhook::{self, WebhookSender},
};

/// The detector and what it needs between reads.
pub struct Alerting {
    detector: Detector,
    /// (protocol, port) pairs watched on every interface and direction.
    watched: Vec<(L4, u16)>,
    /// The totals of the last read, per interface, direction and watched port.
    last: Vec<Counter>,
    /// This read's totals, same layout (kept to avoid an allocation per read).
    current: Vec<Counter>,
    /// (protocol, port) pairs the policy calls secure, watched for plaintext payloads.
    secure: Vec<(L4, u16)>,
    /// Plaintext payloads of the last read, per interface, direction and secure port.
    last_plaintext: Vec<u64>,
    /// This read's, same layout.
    current_plaintext: Vec<u64>,
    last_read: Option<Instant>,
    webhook: Option<WebhookSender>,
    /// Wall-clock start of every firing alert (the snapshot's `since`), by key and reason:
    /// a port can have a `mismatch` alert besides a `spike` or `must_be_zero` one.
    started: HashMap<(AlertKey, AlertReason), SystemTime>,
}

/// The (protocol, port) pairs the detector watches.
#[must_use]
pub fn watched_ports(policy: &Policy, config: &AlertsConfig) -> Vec<(L4, u16)> {
    L4::ALL
        .into_iter()
        .flat_map(|l4| (0..=u16::MAX).map(move |port| (l4, port)))
        .filter(|&(l4, port)| {
            matches!(
                policy.classify(l4, port).security,
                Security::Plaintext | Security::Ambiguous
            ) || config.is_must_be_zero(port, l4)
        })
        .collect()
}

/// Remembers when a firing alert started (`since` in the snapshot), forgets it when it ends.
fn record(started: &mut HashMap<(AlertKey, AlertReason), SystemTime>, event: &AlertEvent) {
    let key = (event.key, event.reason);
    match event.kind {
        EventKind::Started => {
            started.insert(key, SystemTime::now());
        }
        EventKind::Ended => {
            started.remove(&key);
        }
    }
}

impl Alerting {
    /// A detector for `config`, watching the plaintext and ambiguous ports of `policy`.
    ///
    /// # Errors
    /// When the configuration is unusable; the error names the key.
    pub fn new(
        config: AlertsConfig,
        policy: &Policy,
        webhook: Option<WebhookSender>,
    ) -> Result<Self, AlertsConfigError> {
        let watched = watched_ports(policy, &config);
        let secure = policy
            .security_table()
            .filter(|info| info.security == Security::Secure)
            .map(|info| (info.protocol, info.port))
            .collect();
        Ok(Self {
            detector: Detector::new(config)?,
            watched,
            last: Vec::new(),
            current: Vec::new(),
            secure,
            last_plaintext: Vec::new(),
            current_plaintext: Vec::new(),
            last_read: None,
            webhook,
            started: HashMap::new(),
        })
    }

    /// How many (protocol, port) pairs are watched per interface and direction.
    #[must_use]
    pub fn watched(&self) -> usize {
        self.watched.len()
    }

    /// How many secure (protocol, port) pairs are watched for plaintext payloads.
    #[must_use]
    pub fn watched_secure(&self) -> usize {
        self.secure.len()
    }

    /// Feeds the deltas since the previous call (the first call only records the totals).
    pub fn observe(&mut self, interfaces: &[Interface], policy: &Policy, now: Instant) {
        self.current.clear();
        for interface in interfaces {
            interface.watched_counters(&self.watched, &mut self.current);
        }
        let previous = self.last_read.replace(now);
        let same_shape = self.last.len() == self.current.len();
        if let Some(previous) = previous
            && same_shape
        {
            let elapsed = now.saturating_duration_since(previous);
            let per_interface = self.watched.len() * Direction::ALL.len();
            let mut index = 0;
            for interface in interfaces {
                for direction in Direction::ALL {
                    for &(protocol, port) in &self.watched {
                        let (Some(now_total), Some(before)) =
                            (self.current.get(index), self.last.get(index))
                        else {
                            break;
                        };
                        index += 1;
                        let key = AlertKey {
                            ifindex: interface.ifindex(),
                            direction,
                            protocol,
                            port,
                        };
                        let packets = now_total.packets.wrapping_sub(before.packets);
                        let syns = now_total.syns.wrapping_sub(before.syns);
                        if let Some(event) = self.detector.observe(key, now, packets, syns, elapsed)
                        {
                            record(&mut self.started, &event);
                            self.report(&event, interface.name(), policy);
                        }
                    }
                }
            }
            debug_assert_eq!(index, per_interface * interfaces.len());
        }
        std::mem::swap(&mut self.last, &mut self.current);
        self.observe_mismatches(
            interfaces,
            policy,
            previous.map(|p| now.saturating_duration_since(p)),
        );
    }

    /// Feeds the plaintext payloads on secure ports since the previous read (`elapsed`;
    /// `None` on the first read, which only records them).
    fn observe_mismatches(
        &mut self,
        interfaces: &[Interface],
        policy: &Policy,
        elapsed: Option<std::time::Duration>,
    ) {
        self.current_plaintext.clear();
        for interface in interfaces {
            interface.watched_plaintext(&self.secure, &mut self.current_plaintext);
        }
        if let Some(elapsed) = elapsed
            && self.last_plaintext.len() == self.current_plaintext.len()
        {
            let mut values = self.current_plaintext.iter().zip(&self.last_plaintext);
            for interface in interfaces {
                for direction in Direction::ALL {
                    for &(protocol, port) in &self.secure {
                        let Some((now_total, before)) = values.next() else {
                            break;
                        };
                        let key = AlertKey {
                            ifindex: interface.ifindex(),
                            direction,
                            protocol,
                            port,
                        };
                        let packets = now_total.wrapping_sub(*before);
                        if let Some(event) = self.detector.observe_mismatch(key, packets, elapsed) {
                            record(&mut self.started, &event);
                            self.report(&event, interface.name(), policy);
                        }
                    }
                }
            }
        }
        std::mem::swap(&mut self.last_plaintext, &mut self.current_plaintext);
    }

    fn report(&self, event: &AlertEvent, interface: &str, policy: &Policy) {
        let info = policy.classify(event.key.protocol, event.key.port);
        let kind = event.kind.as_str();
        log::warn!(
            target: "portmon::alert",
            event = kind,
            interface = interface,
            direction = event.key.direction.as_str(),
            protocol = event.key.protocol.as_str(),
            port = event.key.port,
            service = info.service,
            reason = event.reason.as_str(),
            signal = event.signal.as_str(),
            rate = event.rate,
            baseline = event.baseline;
            "plaintext alert {kind}: {reason} on {service} {port}/{protocol} ({interface} {direction})",
            reason = event.reason.as_str(),
            service = info.service,
            port = event.key.port,
            protocol = event.key.protocol.as_str(),
            direction = event.key.direction.as_str(),
        );
        if let Some(sender) = &self.webhook {
            sender.send(webhook::Notification::from_event(
                event,
                interface,
                info.service,
                std::time::SystemTime::now(),
            ));
        }
    }

    /// The alerts firing now and the total started, for a scrape.
    #[must_use]
    pub fn view(&self, interfaces: &[Interface], policy: &Policy) -> AlertsView {
        let mut firing: Vec<FiringAlert> = self
            .detector
            .firing()
            .map(|(key, reason)| FiringAlert {
                interface: interfaces
                    .iter()
                    .find(|interface| interface.ifindex() == key.ifindex)
                    .map_or_else(|| key.ifindex.to_string(), |i| i.name().to_owned()),
                direction: key.direction,
                protocol: key.protocol,
                port: key.port,
                service: policy.classify(key.protocol, key.port).service.to_owned(),
                reason: reason.as_str(),
                since: self.started.get(&(*key, reason)).copied(),
            })
            .collect();
        firing.sort_by(|a, b| {
            (&a.interface, a.direction as u8, a.protocol as u8, a.port).cmp(&(
                &b.interface,
                b.direction as u8,
                b.protocol as u8,
                b.port,
            ))
        });
        AlertsView {
            firing,
            total: self.detector.alerts_total(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watched_ports_are_the_plaintext_ambiguous_and_must_be_zero_ones() {
        let policy = Policy::builtin();
        let config = AlertsConfig {
            must_be_zero: vec![crate::alerts::PortSpec::new(40_000, L4::Udp)],
            ..AlertsConfig::default()
        };
        let watched = watched_ports(&policy, &config);
        for (name, pair, expected) in [
            ("telnet is plaintext", (L4::Tcp, 23), true),
            ("ftp is plaintext", (L4::Tcp, 21), true),
            ("https is secure", (L4::Tcp, 443), false),
            ("ssh is secure", (L4::Tcp, 22), false),
            ("a configured must-be-zero port", (L4::Udp, 40_000), true),
            ("an unknown port", (L4::Tcp, 40_001), false),
        ] {
            assert_eq!(
                watched.contains(&pair),
                expected,
                "case {name}: {pair:?} watched"
            );
        }
        assert!(
            watched.len() < 200,
            "expected a few dozen watched pairs, got {}",
            watched.len()
        );
    }
}
