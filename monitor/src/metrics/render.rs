//! The metric families, written from a [`View`].

use monitor_common::layout::{Counter, L4, LAYOUT_VERSION, Reason};

use super::{
    AlertsView, View,
    budget::{PortSample, bucket_labels},
    encode::{Encoder, Format, Kind},
};
use crate::ports::Policy;

/// The label values of one per-port series (also the snapshot's, so the two agree).
pub(crate) struct PortLabels {
    pub(crate) port: String,
    pub(crate) service: String,
    pub(crate) range: &'static str,
    pub(crate) security: &'static str,
}

pub(crate) fn port_labels(policy: &Policy, sample: &PortSample) -> PortLabels {
    if let Some(port) = sample.port {
        let info = policy.classify(sample.l4, port);
        PortLabels {
            port: port.to_string(),
            service: info.service.to_owned(),
            range: info.range.as_str(),
            security: info.security.as_str(),
        }
    } else {
        let (range, security) = bucket_labels(sample.bucket);
        PortLabels {
            port: "other".to_owned(),
            service: "other".to_owned(),
            range,
            security,
        }
    }
}

/// Writes `view` in `format`.
#[must_use]
pub fn render(view: &View<'_>, format: Format) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let mut encoder = Encoder::new(&mut out, format);
    per_port(&mut encoder, view);
    super::payload::render(&mut encoder, view);
    unparsed(&mut encoder, view);
    port_info(&mut encoder, view.policy);
    self_metrics(&mut encoder, view);
    if let Some(alerts) = &view.alerts {
        plaintext_alerts(&mut encoder, alerts);
    }
    encoder.finish();
    out
}

/// (family name, help, the value a family takes from a counter).
type Family = (&'static str, &'static str, fn(&Counter) -> u64);

fn per_port(encoder: &mut Encoder<'_>, view: &View<'_>) {
    // Labels are computed once per series and reused by the three families.
    let labelled: Vec<(&str, &PortSample, PortLabels)> = view
        .interfaces
        .iter()
        .flat_map(|interface| {
            interface.ports.iter().map(|sample| {
                (
                    interface.name.as_str(),
                    sample,
                    port_labels(view.policy, sample),
                )
            })
        })
        .collect();
    let families: [Family; 2] = [
        (
            "portmon_packets",
            "Packets by destination port, after the cardinality budget (port=\"other\" folds the rest).",
            |c| c.packets,
        ),
        (
            "portmon_bytes",
            "Bytes (frame length at the hook) by destination port, after the cardinality budget.",
            |c| c.bytes,
        ),
    ];
    for (name, help, value) in families {
        encoder.family(name, Kind::Counter, help);
        for (interface, sample, labels) in &labelled {
            encoder.sample(
                &[
                    ("interface", interface),
                    ("direction", sample.direction.as_str()),
                    ("protocol", sample.l4.as_str()),
                    ("port", &labels.port),
                    ("service", &labels.service),
                    ("range", labels.range),
                    ("security", labels.security),
                ],
                value(&sample.counter),
            );
        }
    }
    encoder.family(
        "portmon_tcp_syn",
        Kind::Counter,
        "TCP segments with SYN set and ACK clear (connection attempts) by destination port.",
    );
    for (interface, sample, labels) in &labelled {
        if sample.l4 != L4::Tcp {
            continue;
        }
        encoder.sample(
            &[
                ("interface", interface),
                ("direction", sample.direction.as_str()),
                ("port", &labels.port),
                ("service", &labels.service),
                ("range", labels.range),
                ("security", labels.security),
            ],
            sample.counter.syns,
        );
    }
    encoder.family(
        "portmon_series",
        Kind::Gauge,
        "Per-port series exported now (port=\"other\" buckets included).",
    );
    encoder.sample(&[], labelled.len());
    encoder.family(
        "portmon_series_budget",
        Kind::Gauge,
        "The most per-port series the cardinality budget allows.",
    );
    encoder.sample(&[], view.series_budget);
}

fn unparsed(encoder: &mut Encoder<'_>, view: &View<'_>) {
    encoder.family(
        "portmon_unparsed_packets",
        Kind::Counter,
        "Packets not counted under a port, by reason.",
    );
    for interface in &view.interfaces {
        for &(direction, reason, packets) in &interface.unparsed {
            if reason == Reason::InternalError && packets == 0 {
                continue;
            }
            encoder.sample(
                &[
                    ("interface", &interface.name),
                    ("direction", direction.as_str()),
                    ("reason", reason.as_str()),
                ],
                packets,
            );
        }
    }
    encoder.family(
        "portmon_ip_protocol_packets",
        Kind::Counter,
        "Packets of IP protocols other than TCP and UDP (ICMP, SCTP, GRE, ESP, ...), by protocol number.",
    );
    for interface in &view.interfaces {
        for &(direction, protocol, counter) in &interface.ip_protocols {
            encoder.sample(
                &[
                    ("interface", &interface.name),
                    ("direction", direction.as_str()),
                    ("ip_protocol", &protocol.to_string()),
                ],
                counter.packets,
            );
        }
    }
}

fn port_info(encoder: &mut Encoder<'_>, policy: &Policy) {
    encoder.family(
        "portmon_port_info",
        Kind::Gauge,
        "1 for every port of the security table, for PromQL joins.",
    );
    for info in policy.security_table() {
        encoder.sample(
            &[
                ("port", &info.port.to_string()),
                ("protocol", info.protocol.as_str()),
                ("service", info.service),
                ("range", info.range.as_str()),
                ("security", info.security.as_str()),
                ("secure_alternative", info.secure_alternative.unwrap_or("")),
            ],
            1,
        );
    }
}

fn self_metrics(encoder: &mut Encoder<'_>, view: &View<'_>) {
    encoder.family(
        "portmon_build_info",
        Kind::Gauge,
        "1, labelled with the build.",
    );
    encoder.sample(
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("layout_version", &LAYOUT_VERSION.to_string()),
        ],
        1,
    );
    encoder.family(
        "portmon_attached",
        Kind::Gauge,
        "1 per attached hook: xdp (mode native or generic), tc_ingress where the XDP hook is \
         taken, tc_egress (mode tcx or clsact); 0 while the interface is gone.",
    );
    for interface in &view.interfaces {
        for attachment in &interface.attachments {
            encoder.sample(
                &[
                    ("interface", &interface.name),
                    ("hook", attachment.hook),
                    ("mode", attachment.mode),
                ],
                u64::from(!interface.detached),
            );
        }
    }
    encoder.family(
        "portmon_map_read_duration_seconds",
        Kind::Histogram,
        "Duration of one full read of an interface's counter map.",
    );
    for interface in &view.interfaces {
        let histogram = &interface.read_duration;
        encoder.histogram(
            &[("interface", &interface.name)],
            &histogram.cumulative(),
            histogram.sum_seconds(),
            histogram.count(),
        );
    }
    encoder.family(
        "portmon_map_read_errors",
        Kind::Counter,
        "Counter-map reads that failed (the previous values stay exported).",
    );
    for interface in &view.interfaces {
        encoder.sample(&[("interface", &interface.name)], interface.read_errors);
    }
    if view.interfaces.iter().all(|i| i.programs.is_empty()) {
        return;
    }
    encoder.family(
        "portmon_bpf_program_run_time_seconds",
        Kind::Counter,
        "Time the kernel spent in the program while kernel.bpf_stats_enabled was 1.",
    );
    for interface in &view.interfaces {
        for program in &interface.programs {
            encoder.sample(
                &[("interface", &interface.name), ("hook", program.hook)],
                super::encode::float(program.run_time.as_secs_f64()),
            );
        }
    }
    encoder.family(
        "portmon_bpf_program_runs",
        Kind::Counter,
        "Runs of the program while kernel.bpf_stats_enabled was 1.",
    );
    for interface in &view.interfaces {
        for program in &interface.programs {
            encoder.sample(
                &[("interface", &interface.name), ("hook", program.hook)],
                program.run_count,
            );
        }
    }
}

fn plaintext_alerts(encoder: &mut Encoder<'_>, alerts: &AlertsView) {
    encoder.family(
        "portmon_plaintext_alert",
        Kind::Gauge,
        "1 while portmon's detector fires on a plaintext port (reason spike or must_be_zero) or \
         on plaintext payloads on a secure port (reason mismatch); \
         the series disappears when the alert ends.",
    );
    for alert in &alerts.firing {
        encoder.sample(
            &[
                ("interface", &alert.interface),
                ("direction", alert.direction.as_str()),
                ("protocol", alert.protocol.as_str()),
                ("port", &alert.port.to_string()),
                ("service", &alert.service),
                ("reason", alert.reason),
            ],
            1,
        );
    }
    encoder.family(
        "portmon_plaintext_alerts",
        Kind::Counter,
        "Alerts started by portmon's detector since it started.",
    );
    encoder.sample(&[], alerts.total);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use monitor_common::layout::Direction;

    use super::*;
    use crate::metrics::{
        Attachment, InterfaceView, ProgramStats,
        budget::{PortSample, bucket_of},
    };

    fn counter(packets: u64) -> Counter {
        Counter {
            packets,
            bytes: packets * 100,
            syns: packets / 2,
        }
    }

    fn view(policy: &Policy) -> View<'_> {
        let mut read_duration = crate::metrics::histogram::Histogram::default();
        read_duration.observe(Duration::from_micros(800));
        View {
            policy,
            interfaces: vec![InterfaceView {
                name: "veth0".into(),
                detached: false,
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
                    PortSample {
                        direction: Direction::Ingress,
                        l4: L4::Tcp,
                        port: Some(23),
                        bucket: 0,
                        counter: counter(4),
                    },
                    PortSample {
                        direction: Direction::Ingress,
                        l4: L4::Udp,
                        port: Some(53),
                        bucket: 0,
                        counter: counter(2),
                    },
                    PortSample {
                        direction: Direction::Egress,
                        l4: L4::Tcp,
                        port: None,
                        bucket: bucket_of("dynamic", "unknown"),
                        counter: counter(10),
                    },
                ],
                unparsed: vec![
                    (Direction::Ingress, Reason::NonIp, 3),
                    (Direction::Ingress, Reason::InternalError, 0),
                ],
                ip_protocols: vec![(Direction::Ingress, 132, counter(1))],
                read_duration,
                read_errors: 0,
                programs: vec![ProgramStats {
                    hook: "xdp",
                    run_time: Duration::from_micros(1500),
                    run_count: 9,
                }],
                payload: crate::metrics::payload::PayloadView::default(),
            }],
            series_budget: 123,
            alerts: Some(AlertsView {
                firing: vec![crate::metrics::FiringAlert {
                    interface: "veth0".into(),
                    direction: Direction::Ingress,
                    protocol: L4::Tcp,
                    port: 23,
                    service: "telnet".into(),
                    reason: "must_be_zero",
                    since: None,
                }],
                total: 2,
            }),
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn per_port_series_carry_every_label() {
        let policy = Policy::builtin();
        let text = render(&view(&policy), Format::Prometheus);
        let telnet = policy.classify(L4::Tcp, 23);
        let expected = [
            format!(
                "portmon_packets_total{{interface=\"veth0\",direction=\"ingress\",protocol=\"tcp\",\
                 port=\"23\",service=\"{}\",range=\"well_known\",security=\"plaintext\"}} 4",
                telnet.service
            ),
            "portmon_bytes_total{interface=\"veth0\",direction=\"egress\",protocol=\"tcp\",\
             port=\"other\",service=\"other\",range=\"dynamic\",security=\"unknown\"} 1000"
                .to_owned(),
            format!(
                "portmon_tcp_syn_total{{interface=\"veth0\",direction=\"ingress\",port=\"23\",\
                 service=\"{}\",range=\"well_known\",security=\"plaintext\"}} 2",
                telnet.service
            ),
            "portmon_series 3".to_owned(),
            "portmon_series_budget 123".to_owned(),
            "portmon_unparsed_packets_total{interface=\"veth0\",direction=\"ingress\",reason=\"non_ip\"} 3"
                .to_owned(),
            "portmon_ip_protocol_packets_total{interface=\"veth0\",direction=\"ingress\",ip_protocol=\"132\"} 1"
                .to_owned(),
            "portmon_attached{interface=\"veth0\",hook=\"xdp\",mode=\"generic\"} 1".to_owned(),
            "portmon_attached{interface=\"veth0\",hook=\"tc_egress\",mode=\"tcx\"} 1".to_owned(),
            "portmon_map_read_duration_seconds_bucket{interface=\"veth0\",le=\"0.001\"} 1".to_owned(),
            "portmon_map_read_errors_total{interface=\"veth0\"} 0".to_owned(),
            "portmon_bpf_program_run_time_seconds_total{interface=\"veth0\",hook=\"xdp\"} 0.0015"
                .to_owned(),
            "portmon_bpf_program_runs_total{interface=\"veth0\",hook=\"xdp\"} 9".to_owned(),
            "portmon_plaintext_alert{interface=\"veth0\",direction=\"ingress\",protocol=\"tcp\",\
             port=\"23\",service=\"telnet\",reason=\"must_be_zero\"} 1"
                .to_owned(),
            "portmon_plaintext_alerts_total 2".to_owned(),
        ];
        let got = lines(&text);
        for line in &expected {
            assert!(
                got.contains(&line.as_str()),
                "expected line {line:?} in:\n{text}"
            );
        }
        assert!(
            !text.contains("internal_error"),
            "a zero internal_error is left out:\n{text}"
        );
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("portmon_tcp_syn_total") && l.contains("port=\"53\"")),
            "UDP ports have no SYN series:\n{text}"
        );
    }

    #[test]
    fn a_detached_interface_keeps_its_hooks_at_zero() {
        let policy = Policy::builtin();
        let mut view = view(&policy);
        view.interfaces[0].detached = true;
        let text = render(&view, Format::Prometheus);
        for line in [
            "portmon_attached{interface=\"veth0\",hook=\"xdp\",mode=\"generic\"} 0",
            "portmon_attached{interface=\"veth0\",hook=\"tc_egress\",mode=\"tcx\"} 0",
        ] {
            assert!(
                lines(&text).contains(&line),
                "expected {line:?} while the link is gone, in:\n{text}"
            );
        }
    }

    #[test]
    fn port_info_lists_the_security_table() {
        let policy = Policy::builtin();
        let text = render(&view(&policy), Format::Prometheus);
        let info_lines = text
            .lines()
            .filter(|line| line.starts_with("portmon_port_info{"))
            .count();
        assert_eq!(info_lines, policy.security_table().count());
        let telnet = policy.classify(L4::Tcp, 23);
        let line = format!(
            "portmon_port_info{{port=\"23\",protocol=\"tcp\",service=\"{}\",range=\"well_known\",\
             security=\"plaintext\",secure_alternative=\"{}\"}} 1",
            telnet.service,
            telnet.secure_alternative.unwrap_or("")
        );
        assert!(
            text.lines().any(|l| l == line),
            "expected {line:?} in:\n{text}"
        );
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
        let policy = Policy::builtin();
        let text = render(&view(&policy), Format::OpenMetrics);
        let got = lines(&text);
        for line in [
            "# TYPE portmon_packets counter",
            "# TYPE portmon_map_read_errors counter",
            "# TYPE portmon_build_info gauge",
            "# TYPE portmon_map_read_duration_seconds histogram",
        ] {
            assert!(got.contains(&line), "expected {line:?} in:\n{text}");
        }
        assert_eq!(got.last(), Some(&"# EOF"));
        assert!(!text.contains("# TYPE portmon_packets_total"), "{text}");
        let prometheus = render(&view(&policy), Format::Prometheus);
        assert!(prometheus.contains("# TYPE portmon_packets_total counter\n"));
        assert!(!prometheus.contains("# EOF"));
    }

    #[test]
    fn without_bpf_stats_the_run_families_are_absent() {
        let policy = Policy::builtin();
        let mut view = view(&policy);
        view.interfaces[0].programs.clear();
        let text = render(&view, Format::Prometheus);
        assert!(!text.contains("portmon_bpf_program"), "{text}");
    }

    #[test]
    fn without_the_detector_the_alert_families_are_absent() {
        let policy = Policy::builtin();
        let mut view = view(&policy);
        view.alerts = None;
        let text = render(&view, Format::Prometheus);
        assert!(!text.contains("portmon_plaintext_alert"), "{text}");
    }
}
