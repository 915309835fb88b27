//! The JSON document of `GET /api/v1/snapshot`, read by `portmon top`.
//!
//! Built from the same [`View`] a scrape renders, with the same labels
//! ([`metrics::port_labels`]), so the snapshot and `/metrics` can never disagree. It holds
//! totals only, never rates: a client takes two snapshots and divides by the difference of
//! their `time_unix_ms`, so the endpoint keeps no per-client state.
//!
//! The schema is versioned (`version`, now [`VERSION`]): fields may be added within a
//! version, so clients ignore fields they do not know; a removed or changed field bumps it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use monitor_common::layout::{Counter, Direction, Reason};
use serde::{Deserialize, Serialize};

use crate::metrics::{self, View, budget::RANGES};

/// The schema version this build writes and reads.
pub const VERSION: u32 = 1;

/// One snapshot of every attached interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Schema version ([`VERSION`]).
    pub version: u32,
    /// When the document was built, in milliseconds since the Unix epoch.
    pub time_unix_ms: u64,
    /// How often the daemon reads the counters, in milliseconds: totals change at most
    /// this often, so sampling faster only repeats them.
    pub interval_ms: u64,
    /// One entry per attached interface.
    pub interfaces: Vec<InterfaceSnapshot>,
    /// The spike detector's state.
    pub alerts: AlertsSnapshot,
}

/// The totals of one interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceSnapshot {
    /// Interface name.
    pub name: String,
    /// Hooks in use (`portmon_attached`).
    pub attachments: Vec<AttachmentSnapshot>,
    /// Per-port totals after the cardinality budget, `port: null` for the `other` buckets.
    pub ports: Vec<PortTotals>,
    /// Per direction and port range, every port summed (`other` included).
    pub ranges: Vec<RangeTotals>,
    /// Packets not counted under a port, by reason.
    pub reasons: Vec<ReasonTotals>,
}

/// One attached hook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentSnapshot {
    /// `xdp`, `tc_egress`, ...
    pub hook: String,
    /// `native`/`generic` for XDP, `tcx`/`clsact` for TC.
    pub mode: String,
}

/// The totals of one per-port series, labelled as `portmon_packets` labels it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortTotals {
    /// `ingress` or `egress`.
    pub direction: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Destination port; `null` for an `other` bucket.
    pub port: Option<u16>,
    /// Service name (`other` for a bucket).
    pub service: String,
    /// `well_known`, `registered` or `dynamic`.
    pub range: String,
    /// `plaintext`, `secure`, `ambiguous` or `unknown`.
    pub security: String,
    /// For an ambiguous port whose payloads were classified: the security the evidence
    /// resolves it to (`portmon_port_resolved_security`), e.g. SNMP v2c `plaintext`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_security: Option<String>,
    /// Packets.
    pub packets: u64,
    /// Bytes (frame length at the hook).
    pub bytes: u64,
    /// TCP SYNs without ACK (0 for UDP).
    pub syns: u64,
}

/// The totals of one port range in one direction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeTotals {
    /// `ingress` or `egress`.
    pub direction: String,
    /// `well_known`, `registered` or `dynamic`.
    pub range: String,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// TCP SYNs without ACK.
    pub syns: u64,
}

/// Packets not counted under a port for one reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonTotals {
    /// `ingress` or `egress`.
    pub direction: String,
    /// The `reason` label of `portmon_unparsed_packets`.
    pub reason: String,
    /// Packets.
    pub packets: u64,
}

/// The detector's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertsSnapshot {
    /// `false` when `[alerts] enabled = false` (then `firing` is always empty).
    pub enabled: bool,
    /// Alerts started since portmon started.
    pub total: u64,
    /// Alerts firing now.
    pub firing: Vec<AlertSnapshot>,
}

/// One firing alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertSnapshot {
    /// Interface name.
    pub interface: String,
    /// `ingress` or `egress`.
    pub direction: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Destination port.
    pub port: u16,
    /// Service name of the port.
    pub service: String,
    /// `spike` or `must_be_zero`.
    pub reason: String,
    /// When it started, in milliseconds since the Unix epoch (`null` if unknown).
    pub since_unix_ms: Option<u64>,
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The snapshot of `view`, taken at `now` by a reader running every `interval`.
#[must_use]
pub fn build(view: &View<'_>, interval: Duration, now: SystemTime) -> Snapshot {
    Snapshot {
        version: VERSION,
        time_unix_ms: unix_ms(now),
        interval_ms: millis(interval),
        interfaces: view
            .interfaces
            .iter()
            .map(|interface| interface_snapshot(view, interface))
            .collect(),
        alerts: view
            .alerts
            .as_ref()
            .map(|alerts| AlertsSnapshot {
                enabled: true,
                total: alerts.total,
                firing: alerts
                    .firing
                    .iter()
                    .map(|alert| AlertSnapshot {
                        interface: alert.interface.clone(),
                        direction: alert.direction.as_str().to_owned(),
                        protocol: alert.protocol.as_str().to_owned(),
                        port: alert.port,
                        service: alert.service.clone(),
                        reason: alert.reason.to_owned(),
                        since_unix_ms: alert.since.map(unix_ms),
                    })
                    .collect(),
            })
            .unwrap_or_default(),
    }
}

fn interface_snapshot(view: &View<'_>, interface: &metrics::InterfaceView) -> InterfaceSnapshot {
    let mut ranges = [[Counter::default(); RANGES.len()]; 2];
    let resolved = metrics::payload::resolved_ambiguous(view.policy, &interface.payload.ports);
    let ports = interface
        .ports
        .iter()
        .map(|sample| {
            let labels = metrics::port_labels(view.policy, sample);
            if let Some(sum) = RANGES
                .iter()
                .position(|&range| range == labels.range)
                .and_then(|range| ranges[sample.direction as usize].get_mut(range))
            {
                sum.accumulate(&sample.counter);
            }
            PortTotals {
                direction: sample.direction.as_str().to_owned(),
                protocol: sample.l4.as_str().to_owned(),
                port: sample.port,
                service: labels.service,
                range: labels.range.to_owned(),
                security: labels.security.to_owned(),
                resolved_security: sample.port.and_then(|port| {
                    resolved
                        .iter()
                        .find(|&&(l4, p, _)| l4 == sample.l4 && p == port)
                        .map(|&(_, _, security)| security.as_str().to_owned())
                }),
                packets: sample.counter.packets,
                bytes: sample.counter.bytes,
                syns: sample.counter.syns,
            }
        })
        .collect();
    InterfaceSnapshot {
        name: interface.name.clone(),
        attachments: interface
            .attachments
            .iter()
            // While its link is gone, nothing is in use (`portmon_attached` says 0).
            .filter(|_| !interface.detached)
            .map(|attachment| AttachmentSnapshot {
                hook: attachment.hook.to_owned(),
                mode: attachment.mode.to_owned(),
            })
            .collect(),
        ports,
        ranges: Direction::ALL
            .into_iter()
            .flat_map(|direction| {
                RANGES
                    .iter()
                    .zip(ranges[direction as usize])
                    .map(move |(range, counter)| RangeTotals {
                        direction: direction.as_str().to_owned(),
                        range: (*range).to_owned(),
                        packets: counter.packets,
                        bytes: counter.bytes,
                        syns: counter.syns,
                    })
            })
            .collect(),
        reasons: interface
            .unparsed
            .iter()
            // As in `/metrics`: the internal-error series appears only once it counts.
            .filter(|&&(_, reason, packets)| reason != Reason::InternalError || packets > 0)
            .map(|&(direction, reason, packets)| ReasonTotals {
                direction: direction.as_str().to_owned(),
                reason: reason.as_str().to_owned(),
                packets,
            })
            .collect(),
    }
}

/// The JSON of [`build`]; `None` (logged) if it cannot be encoded, which only a bug can
/// cause.
#[must_use]
pub fn json(view: &View<'_>, interval: Duration, now: SystemTime) -> Option<String> {
    match serde_json::to_string(&build(view, interval, now)) {
        Ok(json) => Some(json),
        Err(error) => {
            log::error!("encoding the snapshot: {error}");
            None
        }
    }
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests panic with what they expected")]
mod tests {
    use monitor_common::layout::L4;

    use super::*;
    use crate::{
        metrics::{
            AlertsView, Attachment, FiringAlert, InterfaceView,
            budget::{PortSample, bucket_of},
            encode::Format,
        },
        ports::Policy,
    };

    fn counter(packets: u64) -> Counter {
        Counter {
            packets,
            bytes: packets * 100,
            syns: packets / 2,
        }
    }

    fn sample(
        direction: Direction,
        l4: L4,
        port: Option<u16>,
        bucket: u8,
        packets: u64,
    ) -> PortSample {
        PortSample {
            direction,
            l4,
            port,
            bucket,
            counter: counter(packets),
        }
    }

    fn view(policy: &Policy) -> View<'_> {
        View {
            policy,
            interfaces: vec![InterfaceView {
                name: "veth0".into(),
                attachments: vec![
                    Attachment {
                        hook: "xdp",
                        mode: "generic",
                    },
                    Attachment {
                        hook: "tc_egress",
                        mode: "tcx",
                    },
                ],
                ports: vec![
                    sample(Direction::Ingress, L4::Tcp, Some(23), 0, 10),
                    sample(Direction::Ingress, L4::Tcp, Some(443), 0, 20),
                    sample(
                        Direction::Ingress,
                        L4::Tcp,
                        None,
                        bucket_of("registered", "unknown"),
                        4,
                    ),
                    sample(Direction::Egress, L4::Udp, Some(53), 0, 6),
                ],
                unparsed: vec![
                    (Direction::Ingress, Reason::NonIp, 3),
                    (Direction::Ingress, Reason::InternalError, 0),
                ],
                ..InterfaceView::default()
            }],
            series_budget: 100,
            alerts: Some(AlertsView {
                firing: vec![FiringAlert {
                    interface: "veth0".into(),
                    direction: Direction::Ingress,
                    protocol: L4::Tcp,
                    port: 23,
                    service: "telnet".into(),
                    reason: "must_be_zero",
                    since: Some(UNIX_EPOCH + Duration::from_millis(1_500)),
                }],
                total: 2,
            }),
        }
    }

    fn port<'a>(snapshot: &'a Snapshot, direction: &str, port: Option<u16>) -> &'a PortTotals {
        snapshot.interfaces[0]
            .ports
            .iter()
            .find(|p| p.direction == direction && p.port == port)
            .unwrap_or_else(|| panic!("expected a {direction} series for port {port:?}"))
    }

    #[test]
    fn ports_carry_the_labels_and_totals_of_the_scrape() {
        let policy = Policy::builtin();
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let snapshot = build(&view(&policy), Duration::from_millis(250), now);
        assert_eq!(snapshot.version, VERSION);
        assert_eq!(snapshot.time_unix_ms, 1_700_000_000_123);
        assert_eq!(snapshot.interval_ms, 250);
        // (case, direction, port, service, range, security, packets)
        let cases = [
            (
                "telnet",
                "ingress",
                Some(23),
                "telnet",
                "well_known",
                "plaintext",
                10,
            ),
            (
                "https",
                "ingress",
                Some(443),
                "https",
                "well_known",
                "secure",
                20,
            ),
            (
                "other bucket",
                "ingress",
                None,
                "other",
                "registered",
                "unknown",
                4,
            ),
            (
                "dns egress",
                "egress",
                Some(53),
                "dns",
                "well_known",
                "plaintext",
                6,
            ),
        ];
        for (name, direction, number, service, range, security, packets) in cases {
            let got = port(&snapshot, direction, number);
            assert_eq!(
                (
                    got.service.as_str(),
                    got.range.as_str(),
                    got.security.as_str(),
                    got.packets,
                    got.bytes,
                    got.syns
                ),
                (
                    service,
                    range,
                    security,
                    packets,
                    packets * 100,
                    packets / 2
                ),
                "case {name}"
            );
        }
        // The scrape labels the same series the same way.
        let text = metrics::render(&view(&policy), Format::Prometheus);
        for got in &snapshot.interfaces[0].ports {
            let port = got
                .port
                .map_or_else(|| "other".to_owned(), |p| p.to_string());
            let series = format!(
                "portmon_packets_total{{interface=\"veth0\",direction=\"{}\",protocol=\"{}\",port=\"{port}\",service=\"{}\",range=\"{}\",security=\"{}\"}} {}",
                got.direction, got.protocol, got.service, got.range, got.security, got.packets
            );
            assert!(text.contains(&series), "expected {series} in:\n{text}");
        }
    }

    #[test]
    fn ranges_sum_every_series_per_direction_and_reasons_skip_a_zero_internal_error() {
        let policy = Policy::builtin();
        let snapshot = build(&view(&policy), Duration::from_secs(1), UNIX_EPOCH);
        let interface = &snapshot.interfaces[0];
        let ranges: Vec<(&str, &str, u64)> = interface
            .ranges
            .iter()
            .map(|r| (r.direction.as_str(), r.range.as_str(), r.packets))
            .collect();
        assert_eq!(
            ranges,
            vec![
                ("ingress", "well_known", 30),
                ("ingress", "registered", 4),
                ("ingress", "dynamic", 0),
                ("egress", "well_known", 6),
                ("egress", "registered", 0),
                ("egress", "dynamic", 0),
            ],
            "every range of both directions, in order"
        );
        assert_eq!(
            interface.reasons,
            vec![ReasonTotals {
                direction: "ingress".into(),
                reason: Reason::NonIp.as_str().into(),
                packets: 3
            }]
        );
        assert_eq!(
            interface.attachments[0],
            AttachmentSnapshot {
                hook: "xdp".into(),
                mode: "generic".into()
            }
        );
    }

    #[test]
    fn payload_evidence_resolves_an_ambiguous_port_in_the_snapshot() {
        use monitor_common::payload::PayloadKind;

        use crate::metrics::payload::{KINDS, PayloadSample};

        let policy = Policy::builtin();
        let mut view = view(&policy);
        view.interfaces[0]
            .ports
            .push(sample(Direction::Ingress, L4::Udp, Some(161), 0, 3));
        let mut counts = [0; KINDS];
        counts[PayloadKind::SnmpV2c as usize] = 3;
        view.interfaces[0].payload.ports.push(PayloadSample {
            direction: Direction::Ingress,
            l4: L4::Udp,
            port: 161,
            counts,
        });
        let snapshot = build(&view, Duration::from_secs(1), UNIX_EPOCH);
        let snmp = port(&snapshot, "ingress", Some(161));
        assert_eq!(
            (snmp.security.as_str(), snmp.resolved_security.as_deref()),
            ("ambiguous", Some("plaintext")),
            "SNMP v2c payloads resolve 161/udp to plaintext; the label stays as exported"
        );
        assert_eq!(
            port(&snapshot, "ingress", Some(23)).resolved_security,
            None,
            "no evidence, no resolution"
        );
    }

    #[test]
    fn alerts_and_json_round_trip() {
        let policy = Policy::builtin();
        let json = json(&view(&policy), Duration::from_secs(1), UNIX_EPOCH).expect("it encodes");
        let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(value["version"], 1, "in {json}");
        assert_eq!(
            value["alerts"]["firing"][0]["since_unix_ms"], 1_500,
            "in {json}"
        );
        assert_eq!(
            value["interfaces"][0]["ports"][2]["port"],
            serde_json::Value::Null
        );
        let parsed: Snapshot = serde_json::from_str(&json).expect("it decodes");
        assert_eq!(
            parsed,
            build(&view(&policy), Duration::from_secs(1), UNIX_EPOCH)
        );
        assert_eq!(parsed.alerts.total, 2);
        assert!(parsed.alerts.enabled);
        let mut disabled = view(&policy);
        disabled.alerts = None;
        let snapshot = build(&disabled, Duration::from_secs(1), UNIX_EPOCH);
        assert_eq!(snapshot.alerts, AlertsSnapshot::default(), "no detector");
    }
}
