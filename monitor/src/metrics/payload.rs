//! The payload families: what the first bytes of data-carrying packets were on each tracked
//! port, where that contradicts the policy, and how ambiguous ports resolve.
//!
//! * `portmon_payload_packets_total{interface,direction,protocol,port,service,kind,security}`:
//!   data-carrying packets (a TCP segment or UDP datagram with at least one byte of payload;
//!   bare ACKs, SYNs and FINs are not counted) by the signature their first bytes matched.
//!   `security` is what the kind proves (plaintext for http, mail_or_login, snmp_v1,
//!   snmp_v2c; secure for tls, ssh, snmp_v3), else the port's policy: a fixed label per
//!   series, so 161/udp's v2c and v3 payloads are split by it without relabelling a counter.
//! * `portmon_security_mismatch_total{interface,direction,protocol,port,service,expected,observed}`:
//!   the payloads of that series that contradict the policy ([`crate::ports::evidence`]):
//!   plaintext on a secure port (`expected="secure"`), TLS on a plaintext port
//!   (`expected="plaintext"`, informational).
//! * `portmon_port_resolved_security{interface,protocol,port,service,policy,security}`: 1 for
//!   every tracked ambiguous port that carried payloads, with the security the evidence
//!   resolves it to (SNMP v1/v2c plaintext, v3 secure). A gauge, not a counter label: it may
//!   change value when new evidence arrives, which would break `rate()` on a counter.
//! * `portmon_payload_tracked_ports{interface}` and `portmon_payload_untracked_ports{interface}`:
//!   (direction, protocol, port) triples with a payload slot, and those that wanted one
//!   when the slots had run out.

use monitor_common::{
    layout::{Direction, L4},
    payload::PayloadKind,
};

use super::{
    InterfaceView, View,
    encode::{Encoder, Kind},
};
use crate::ports::{Policy, Security, evidence};

/// Kinds with a counter slot in a [`PayloadSample`] (every kind; `empty` stays 0).
pub const KINDS: usize = PayloadKind::COUNT as usize;

/// The payload counts of one tracked (direction, protocol, port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadSample {
    /// Direction.
    pub direction: Direction,
    /// Protocol.
    pub l4: L4,
    /// Destination port.
    pub port: u16,
    /// Packets by kind, indexed by `PayloadKind as usize`. Kinds the kernel does not count
    /// stay 0 and are not exported.
    pub counts: [u64; KINDS],
}

impl PayloadSample {
    /// The non-zero counts, in kind order.
    pub fn counted(&self) -> impl Iterator<Item = (PayloadKind, u64)> + '_ {
        PayloadKind::ALL
            .into_iter()
            .zip(self.counts)
            .filter(|&(kind, packets)| packets > 0 && kind != PayloadKind::Empty)
    }
}

/// The payload state of one interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PayloadView {
    /// Whether payload classification runs on this interface (`--no-payload` turns it off).
    pub enabled: bool,
    /// Tracked ports with at least one payload counted, sorted by direction, protocol, port.
    pub ports: Vec<PayloadSample>,
    /// Triples with a slot.
    pub tracked: u64,
    /// Triples that wanted a slot when none was left.
    pub untracked: u64,
}

/// Writes the payload families of every interface with classification on.
pub(super) fn render(encoder: &mut Encoder<'_>, view: &View<'_>) {
    let interfaces: Vec<_> = view
        .interfaces
        .iter()
        .filter(|interface| interface.payload.enabled)
        .collect();
    if interfaces.is_empty() {
        return;
    }
    packets(encoder, view.policy, &interfaces);
    mismatches(encoder, view.policy, &interfaces);
    resolved(encoder, view.policy, &interfaces);
    slots(encoder, &interfaces);
}

fn packets(encoder: &mut Encoder<'_>, policy: &Policy, interfaces: &[&InterfaceView]) {
    encoder.family(
        "portmon_payload_packets",
        Kind::Counter,
        "Data-carrying packets (at least one byte of TCP or UDP payload) on tracked ports, \
         by what their first bytes matched; security is what the kind proves, else the port's policy.",
    );
    for interface in interfaces {
        for sample in &interface.payload.ports {
            let info = policy.classify(sample.l4, sample.port);
            let port = sample.port.to_string();
            for (kind, packets) in sample.counted() {
                encoder.sample(
                    &[
                        ("interface", &interface.name),
                        ("direction", sample.direction.as_str()),
                        ("protocol", sample.l4.as_str()),
                        ("port", &port),
                        ("service", info.service),
                        ("kind", kind.as_str()),
                        ("security", evidence::payload_security(&info, kind).as_str()),
                    ],
                    packets,
                );
            }
        }
    }
}

fn mismatches(encoder: &mut Encoder<'_>, policy: &Policy, interfaces: &[&InterfaceView]) {
    encoder.family(
        "portmon_security_mismatch",
        Kind::Counter,
        "Payloads that contradict the port's policy: plaintext on a secure port (expected=\"secure\"), \
         TLS on a plaintext port (expected=\"plaintext\", informational).",
    );
    for interface in interfaces {
        for sample in &interface.payload.ports {
            let info = policy.classify(sample.l4, sample.port);
            let port = sample.port.to_string();
            for (kind, packets) in sample.counted() {
                let Some(mismatch) = evidence::mismatch(&info, kind) else {
                    continue;
                };
                encoder.sample(
                    &[
                        ("interface", &interface.name),
                        ("direction", sample.direction.as_str()),
                        ("protocol", sample.l4.as_str()),
                        ("port", &port),
                        ("service", info.service),
                        ("expected", mismatch.expected.as_str()),
                        ("observed", kind.as_str()),
                    ],
                    packets,
                );
            }
        }
    }
}

fn resolved(encoder: &mut Encoder<'_>, policy: &Policy, interfaces: &[&InterfaceView]) {
    encoder.family(
        "portmon_port_resolved_security",
        Kind::Gauge,
        "1 per tracked ambiguous port that carried payloads, labelled with the security the \
         evidence resolves it to (SNMP v1/v2c plaintext, v3 secure; ambiguous without evidence).",
    );
    for interface in interfaces {
        for (l4, port, resolved) in resolved_ambiguous(policy, &interface.payload.ports) {
            let info = policy.classify(l4, port);
            encoder.sample(
                &[
                    ("interface", &interface.name),
                    ("protocol", l4.as_str()),
                    ("port", &port.to_string()),
                    ("service", info.service),
                    ("policy", info.security.as_str()),
                    ("security", resolved.as_str()),
                ],
                1,
            );
        }
    }
}

fn slots(encoder: &mut Encoder<'_>, interfaces: &[&InterfaceView]) {
    for (name, help, value) in [
        (
            "portmon_payload_tracked_ports",
            "(direction, protocol, port) triples whose payloads are classified.",
            (|p: &PayloadView| p.tracked) as fn(&PayloadView) -> u64,
        ),
        (
            "portmon_payload_untracked_ports",
            "Exported (direction, protocol, port) triples left unclassified because the payload slots ran out.",
            |p: &PayloadView| p.untracked,
        ),
    ] {
        encoder.family(name, Kind::Gauge, help);
        for interface in interfaces {
            encoder.sample(&[("interface", &interface.name)], value(&interface.payload));
        }
    }
}

/// The ambiguous (protocol, port) pairs among `ports` with their resolved security, both
/// directions together, sorted by protocol then port.
#[must_use]
pub fn resolved_ambiguous(policy: &Policy, ports: &[PayloadSample]) -> Vec<(L4, u16, Security)> {
    let mut pairs: Vec<(L4, u16)> = ports
        .iter()
        .filter(|sample| sample.counted().next().is_some())
        .map(|sample| (sample.l4, sample.port))
        .filter(|&(l4, port)| policy.classify(l4, port).security == Security::Ambiguous)
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs
        .into_iter()
        .map(|(l4, port)| {
            let info = policy.classify(l4, port);
            let counted = ports
                .iter()
                .filter(|sample| sample.l4 == l4 && sample.port == port)
                .flat_map(PayloadSample::counted);
            (l4, port, evidence::resolve(&info, counted))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::encode::Format;

    fn sample(
        direction: Direction,
        l4: L4,
        port: u16,
        counts: &[(PayloadKind, u64)],
    ) -> PayloadSample {
        let mut sample = PayloadSample {
            direction,
            l4,
            port,
            counts: [0; KINDS],
        };
        for &(kind, packets) in counts {
            sample.counts[kind as usize] = packets;
        }
        sample
    }

    fn view(policy: &Policy, payload: PayloadView) -> View<'_> {
        View {
            policy,
            interfaces: vec![InterfaceView {
                name: "veth0".into(),
                payload,
                ..InterfaceView::default()
            }],
            series_budget: 0,
            alerts: None,
        }
    }

    fn render_text(policy: &Policy, payload: PayloadView) -> String {
        crate::metrics::render(&view(policy, payload), Format::Prometheus)
    }

    #[test]
    fn payload_mismatch_and_resolution_series() {
        let policy = Policy::builtin();
        let payload = PayloadView {
            enabled: true,
            ports: vec![
                sample(
                    Direction::Ingress,
                    L4::Tcp,
                    80,
                    &[(PayloadKind::Http, 4), (PayloadKind::Tls, 1)],
                ),
                sample(
                    Direction::Ingress,
                    L4::Tcp,
                    443,
                    &[
                        (PayloadKind::Tls, 7),
                        (PayloadKind::Http, 2),
                        (PayloadKind::Other, 30),
                    ],
                ),
                sample(
                    Direction::Ingress,
                    L4::Udp,
                    161,
                    &[(PayloadKind::SnmpV2c, 3), (PayloadKind::SnmpV3, 5)],
                ),
                sample(Direction::Egress, L4::Udp, 162, &[(PayloadKind::SnmpV3, 1)]),
                sample(
                    Direction::Ingress,
                    L4::Udp,
                    2049,
                    &[(PayloadKind::Other, 1)],
                ),
                sample(Direction::Ingress, L4::Tcp, 8443, &[]),
            ],
            tracked: 300,
            untracked: 2,
        };
        let text = render_text(&policy, payload);
        let lines: Vec<&str> = text.lines().collect();
        let expected = [
            r#"portmon_payload_packets_total{interface="veth0",direction="ingress",protocol="tcp",port="80",service="http",kind="tls",security="secure"} 1"#,
            r#"portmon_payload_packets_total{interface="veth0",direction="ingress",protocol="tcp",port="80",service="http",kind="http",security="plaintext"} 4"#,
            r#"portmon_payload_packets_total{interface="veth0",direction="ingress",protocol="tcp",port="443",service="https",kind="http",security="plaintext"} 2"#,
            r#"portmon_payload_packets_total{interface="veth0",direction="ingress",protocol="tcp",port="443",service="https",kind="other",security="secure"} 30"#,
            r#"portmon_payload_packets_total{interface="veth0",direction="ingress",protocol="udp",port="161",service="snmp",kind="snmp_v2c",security="plaintext"} 3"#,
            r#"portmon_payload_packets_total{interface="veth0",direction="ingress",protocol="udp",port="161",service="snmp",kind="snmp_v3",security="secure"} 5"#,
            r#"portmon_security_mismatch_total{interface="veth0",direction="ingress",protocol="tcp",port="80",service="http",expected="plaintext",observed="tls"} 1"#,
            r#"portmon_security_mismatch_total{interface="veth0",direction="ingress",protocol="tcp",port="443",service="https",expected="secure",observed="http"} 2"#,
            r#"portmon_port_resolved_security{interface="veth0",protocol="udp",port="161",service="snmp",policy="ambiguous",security="plaintext"} 1"#,
            r#"portmon_port_resolved_security{interface="veth0",protocol="udp",port="162",service="snmptrap",policy="ambiguous",security="secure"} 1"#,
            r#"portmon_port_resolved_security{interface="veth0",protocol="udp",port="2049",service="nfs",policy="ambiguous",security="ambiguous"} 1"#,
            r#"portmon_payload_tracked_ports{interface="veth0"} 300"#,
            r#"portmon_payload_untracked_ports{interface="veth0"} 2"#,
        ];
        for line in expected {
            assert!(lines.contains(&line), "expected {line:?} in:\n{text}");
        }
        let mismatches = lines
            .iter()
            .filter(|l| l.starts_with("portmon_security_mismatch_total{"))
            .count();
        assert_eq!(
            mismatches, 2,
            "only HTTP on 443 and TLS on 80 contradict the policy:\n{text}"
        );
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with("portmon_payload") && l.contains("port=\"8443\"")),
            "a tracked port without payloads has no series:\n{text}"
        );
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with("portmon_port_resolved_security{")
                    && l.contains("port=\"443\"")),
            "only ambiguous ports are resolved:\n{text}"
        );
    }

    #[test]
    fn without_classification_the_families_are_absent() {
        let policy = Policy::builtin();
        let text = render_text(&policy, PayloadView::default());
        assert!(!text.contains("portmon_payload"), "{text}");
        assert!(!text.contains("portmon_security_mismatch"), "{text}");
    }
}
