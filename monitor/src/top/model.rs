//! What the live view shows, computed from two snapshots: rates per port and per range,
//! the alerts firing, and the viewer's choices (direction filter, sort key, pause). Pure: no
//! I/O, no clock.

use std::{cmp::Ordering, collections::HashMap};

use crate::snapshot::{AlertSnapshot, AttachmentSnapshot, PortTotals, Snapshot};

/// Per-second rates over the interval between two snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rate {
    /// Packets per second.
    pub packets: f64,
    /// Bits per second (frame bytes x 8).
    pub bits: f64,
    /// TCP SYNs per second.
    pub syns: f64,
}

/// The security class of a row, which gives its colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Unencrypted.
    Plaintext,
    /// Plaintext or encrypted, depending on how the port is used.
    Ambiguous,
    /// Encrypted.
    Secure,
    /// Not known.
    Unknown,
}

impl Class {
    /// The class of a `security` label.
    #[must_use]
    pub fn of(security: &str) -> Self {
        match security {
            "plaintext" => Class::Plaintext,
            "ambiguous" => Class::Ambiguous,
            "secure" => Class::Secure,
            _ => Class::Unknown,
        }
    }
}

/// One per-port series with its rates.
#[derive(Clone, Debug, PartialEq)]
pub struct PortRow {
    /// Interface name.
    pub interface: String,
    /// `ingress` or `egress`.
    pub direction: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Destination port; `None` for an `other` bucket.
    pub port: Option<u16>,
    /// Service name.
    pub service: String,
    /// Port range.
    pub range: String,
    /// Security label as exported, or what payload evidence resolved an ambiguous port to.
    pub security: String,
    /// Rates since the previous snapshot.
    pub rate: Rate,
}

/// One port range in one direction of one interface, with its rates.
#[derive(Clone, Debug, PartialEq)]
pub struct RangeRow {
    /// Interface name.
    pub interface: String,
    /// `ingress` or `egress`.
    pub direction: String,
    /// Port range.
    pub range: String,
    /// Rates since the previous snapshot.
    pub rate: Rate,
}

/// Everything one screen shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rates {
    /// Seconds between the two snapshots.
    pub seconds: f64,
    /// The daemon's read interval, in milliseconds.
    pub interval_ms: u64,
    /// Interfaces and their hooks.
    pub interfaces: Vec<(String, Vec<AttachmentSnapshot>)>,
    /// Per-port rows, in snapshot order.
    pub ports: Vec<PortRow>,
    /// Per-range rows, in snapshot order.
    pub ranges: Vec<RangeRow>,
    /// Alerts firing in the later snapshot.
    pub alerts: Vec<AlertSnapshot>,
}

/// (packets, bytes, syns) counted between two totals. A total that went down means the
/// counters restarted (a new daemon without pinned maps): everything since the restart
/// is the later total.
fn delta(before: (u64, u64, u64), after: (u64, u64, u64)) -> (u64, u64, u64) {
    if after.0 < before.0 || after.1 < before.1 || after.2 < before.2 {
        after
    } else {
        (after.0 - before.0, after.1 - before.1, after.2 - before.2)
    }
}

#[expect(
    clippy::cast_precision_loss,
    reason = "rates are shown with 2-3 significant digits"
)]
fn rate(counted: (u64, u64, u64), seconds: f64) -> Rate {
    if seconds <= 0.0 {
        return Rate::default();
    }
    Rate {
        packets: counted.0 as f64 / seconds,
        bits: counted.1 as f64 * 8.0 / seconds,
        syns: counted.2 as f64 / seconds,
    }
}

/// What identifies one series across snapshots: its labels, except the security of a
/// named port (payload evidence may resolve it between two snapshots).
type SeriesKey<'a> = (&'a str, &'a str, &'a str, Option<u16>, &'a str, &'a str);

fn series_key<'a>(interface: &'a str, port: &'a PortTotals) -> SeriesKey<'a> {
    let (range, security) = if port.port.is_some() {
        ("", "")
    } else {
        (port.range.as_str(), port.security.as_str())
    };
    (
        interface,
        &port.direction,
        &port.protocol,
        port.port,
        range,
        security,
    )
}

/// The rates between `before` and `after` (taken later).
#[must_use]
pub fn rates(before: &Snapshot, after: &Snapshot) -> Rates {
    #[expect(
        clippy::cast_precision_loss,
        reason = "milliseconds between two snapshots are far below 2^52"
    )]
    let seconds = after.time_unix_ms.saturating_sub(before.time_unix_ms) as f64 / 1000.0;
    let mut earlier: HashMap<SeriesKey<'_>, (u64, u64, u64)> = HashMap::new();
    let mut earlier_ranges: HashMap<(&str, &str, &str), (u64, u64, u64)> = HashMap::new();
    for interface in &before.interfaces {
        for port in &interface.ports {
            earlier.insert(
                series_key(&interface.name, port),
                (port.packets, port.bytes, port.syns),
            );
        }
        for range in &interface.ranges {
            earlier_ranges.insert(
                (&interface.name, &range.direction, &range.range),
                (range.packets, range.bytes, range.syns),
            );
        }
    }
    let mut rates = Rates {
        seconds,
        interval_ms: after.interval_ms,
        alerts: after.alerts.firing.clone(),
        ..Rates::default()
    };
    for interface in &after.interfaces {
        rates
            .interfaces
            .push((interface.name.clone(), interface.attachments.clone()));
        for port in &interface.ports {
            let then = earlier
                .get(&series_key(&interface.name, port))
                .copied()
                .unwrap_or_default();
            rates.ports.push(PortRow {
                interface: interface.name.clone(),
                direction: port.direction.clone(),
                protocol: port.protocol.clone(),
                port: port.port,
                service: port.service.clone(),
                range: port.range.clone(),
                security: port
                    .resolved_security
                    .clone()
                    .unwrap_or_else(|| port.security.clone()),
                rate: rate(delta(then, (port.packets, port.bytes, port.syns)), seconds),
            });
        }
        for range in &interface.ranges {
            let then = earlier_ranges
                .get(&(
                    interface.name.as_str(),
                    range.direction.as_str(),
                    range.range.as_str(),
                ))
                .copied()
                .unwrap_or_default();
            rates.ranges.push(RangeRow {
                interface: interface.name.clone(),
                direction: range.direction.clone(),
                range: range.range.clone(),
                rate: rate(
                    delta(then, (range.packets, range.bytes, range.syns)),
                    seconds,
                ),
            });
        }
    }
    rates
}

/// Which direction the view shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DirectionFilter {
    /// Both.
    #[default]
    All,
    /// Ingress only.
    Ingress,
    /// Egress only.
    Egress,
}

impl DirectionFilter {
    /// The next choice (the `d` key).
    #[must_use]
    pub fn next(self) -> Self {
        match self {
            DirectionFilter::All => DirectionFilter::Ingress,
            DirectionFilter::Ingress => DirectionFilter::Egress,
            DirectionFilter::Egress => DirectionFilter::All,
        }
    }

    /// Its name in the header.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DirectionFilter::All => "all",
            DirectionFilter::Ingress => "ingress",
            DirectionFilter::Egress => "egress",
        }
    }

    /// Whether a row of `direction` is shown.
    #[must_use]
    pub fn shows(self, direction: &str) -> bool {
        self == DirectionFilter::All || self.as_str() == direction
    }
}

/// What the rows are sorted by, busiest first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortKey {
    /// Bits per second.
    #[default]
    Bits,
    /// Packets per second.
    Packets,
    /// SYNs per second.
    Syns,
}

impl SortKey {
    /// The next choice (the `s` key).
    #[must_use]
    pub fn next(self) -> Self {
        match self {
            SortKey::Bits => SortKey::Packets,
            SortKey::Packets => SortKey::Syns,
            SortKey::Syns => SortKey::Bits,
        }
    }

    /// Its name in the header.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Bits => "bit/s",
            SortKey::Packets => "pkt/s",
            SortKey::Syns => "syn/s",
        }
    }

    fn value(self, rate: &Rate) -> f64 {
        match self {
            SortKey::Bits => rate.bits,
            SortKey::Packets => rate.packets,
            SortKey::Syns => rate.syns,
        }
    }
}

/// The viewer's choices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ViewState {
    /// Direction filter.
    pub direction: DirectionFilter,
    /// Sort key.
    pub sort: SortKey,
    /// Whether sampling is paused (the screen keeps the last rates).
    pub paused: bool,
}

/// The port rows `state` shows, busiest first; ties (idle rows too) in label order.
#[must_use]
pub fn visible<'a>(rates: &'a Rates, state: &ViewState) -> Vec<&'a PortRow> {
    let mut rows: Vec<&PortRow> = rates
        .ports
        .iter()
        .filter(|row| state.direction.shows(&row.direction))
        .collect();
    rows.sort_by(|a, b| {
        state
            .sort
            .value(&b.rate)
            .partial_cmp(&state.sort.value(&a.rate))
            .unwrap_or(Ordering::Equal)
            .then_with(|| {
                // `other` buckets after the named ports.
                let key = |row: &'a PortRow| {
                    (
                        &row.interface,
                        &row.direction,
                        &row.protocol,
                        row.port.is_none(),
                        row.port,
                        &row.range,
                    )
                };
                key(a).cmp(&key(b))
            })
    });
    rows
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::snapshot::{AlertsSnapshot, InterfaceSnapshot, RangeTotals, VERSION};

    /// A port total; bytes are 100 per packet, SYNs one per packet for TCP.
    pub(crate) fn port(
        direction: &str,
        protocol: &str,
        port: Option<u16>,
        service: &str,
        security: &str,
        packets: u64,
    ) -> PortTotals {
        PortTotals {
            direction: direction.into(),
            protocol: protocol.into(),
            port,
            service: service.into(),
            range: if port.is_some_and(|p| p < 1024) {
                "well_known".into()
            } else {
                "registered".into()
            },
            security: security.into(),
            resolved_security: None,
            packets,
            bytes: packets * 100,
            syns: if protocol == "tcp" { packets } else { 0 },
        }
    }

    /// A snapshot at `time_ms` of one interface `veth0` with the given totals: telnet,
    /// https, dns, ssh egress and a registered `other` bucket, each scaled by `k`.
    pub(crate) fn snapshot(time_ms: u64, k: u64) -> Snapshot {
        let ports = vec![
            port("ingress", "tcp", Some(23), "telnet", "plaintext", 10 * k),
            port("ingress", "tcp", Some(443), "https", "secure", 50 * k),
            port("ingress", "udp", Some(53), "dns", "ambiguous", 4 * k),
            port("egress", "tcp", Some(22), "ssh", "secure", 2 * k),
            port("ingress", "udp", None, "other", "unknown", k),
        ];
        let range = |direction: &str, range: &str, packets: u64| RangeTotals {
            direction: direction.into(),
            range: range.into(),
            packets,
            bytes: packets * 100,
            syns: 0,
        };
        Snapshot {
            version: VERSION,
            time_unix_ms: time_ms,
            interval_ms: 1000,
            interfaces: vec![InterfaceSnapshot {
                name: "veth0".into(),
                attachments: vec![AttachmentSnapshot {
                    hook: "xdp".into(),
                    mode: "generic".into(),
                }],
                ports,
                ranges: vec![
                    range("ingress", "well_known", 64 * k),
                    range("ingress", "registered", k),
                    range("egress", "well_known", 2 * k),
                ],
                reasons: Vec::new(),
            }],
            alerts: AlertsSnapshot {
                enabled: true,
                total: 1,
                firing: vec![AlertSnapshot {
                    interface: "veth0".into(),
                    direction: "ingress".into(),
                    protocol: "tcp".into(),
                    port: 23,
                    service: "telnet".into(),
                    reason: "must_be_zero".into(),
                    since_unix_ms: Some(time_ms.saturating_sub(5_000)),
                }],
            },
        }
    }

    fn row(rates: &Rates, port: Option<u16>) -> &PortRow {
        rates
            .ports
            .iter()
            .find(|row| row.port == port)
            .unwrap_or_else(|| panic!("expected a row for {port:?} in {rates:?}"))
    }

    #[test]
    fn rates_are_deltas_over_the_time_between_snapshots() {
        // 2 s apart, totals tripled: k=1 -> k=3, so each series counted 2k over 2 s.
        let rates = rates(&snapshot(10_000, 1), &snapshot(12_000, 3));
        assert!(
            (rates.seconds - 2.0).abs() < 1e-9,
            "seconds {}",
            rates.seconds
        );
        // (case, port, packets/s, bits/s, syns/s)
        let cases = [
            ("telnet", Some(23), 10.0, 8_000.0, 10.0),
            ("https", Some(443), 50.0, 40_000.0, 50.0),
            ("dns has no SYNs", Some(53), 4.0, 3_200.0, 0.0),
            ("other bucket", None, 1.0, 800.0, 0.0),
        ];
        for (name, port, packets, bits, syns) in cases {
            let got = row(&rates, port).rate;
            assert_eq!(
                got,
                Rate {
                    packets,
                    bits,
                    syns
                },
                "case {name}"
            );
        }
        let ranges: Vec<(&str, &str, f64)> = rates
            .ranges
            .iter()
            .map(|r| (r.direction.as_str(), r.range.as_str(), r.rate.packets))
            .collect();
        assert_eq!(
            ranges,
            vec![
                ("ingress", "well_known", 64.0),
                ("ingress", "registered", 1.0),
                ("egress", "well_known", 2.0),
            ]
        );
        assert_eq!(rates.alerts.len(), 1, "the firing alert is carried");
    }

    #[test]
    fn new_series_count_from_zero_and_restarted_counters_from_their_restart() {
        let mut before = snapshot(0, 1);
        before.interfaces[0].ports.retain(|p| p.port != Some(443));
        // Telnet went down: the counters restarted; 5 packets since.
        before.interfaces[0].ports[0].packets = 1_000;
        let mut after = snapshot(1_000, 2);
        after.interfaces[0].ports[0].packets = 5;
        let rates = rates(&before, &after);
        for (name, port, expected) in [
            ("a series new in the later snapshot", Some(443), 100.0),
            ("a restarted counter", Some(23), 5.0),
            ("an ordinary series", Some(53), 4.0),
        ] {
            assert!(
                (row(&rates, port).rate.packets - expected).abs() < 1e-9,
                "case {name}: expected {expected} pkt/s, got {:?}",
                row(&rates, port).rate
            );
        }
        assert_eq!(
            super::rates(&after, &after).ports[0].rate,
            Rate::default(),
            "no time, no rate"
        );
    }

    #[test]
    fn the_view_filters_by_direction_and_sorts_busiest_first() {
        let rates = rates(&snapshot(0, 1), &snapshot(1_000, 2));
        let ports = |state: ViewState| -> Vec<Option<u16>> {
            visible(&rates, &state).iter().map(|row| row.port).collect()
        };
        let by = |sort, direction| ViewState {
            direction,
            sort,
            paused: false,
        };
        for (name, state, expected) in [
            (
                "bits, all",
                ViewState::default(),
                vec![Some(443), Some(23), Some(53), Some(22), None],
            ),
            (
                "syns: UDP rows tie at zero and keep label order",
                by(SortKey::Syns, DirectionFilter::All),
                vec![Some(443), Some(23), Some(22), Some(53), None],
            ),
            (
                "egress only",
                by(SortKey::Packets, DirectionFilter::Egress),
                vec![Some(22)],
            ),
            (
                "ingress only",
                by(SortKey::Packets, DirectionFilter::Ingress),
                vec![Some(443), Some(23), Some(53), None],
            ),
        ] {
            assert_eq!(ports(state), expected, "case {name}");
        }
        let mut state = ViewState::default();
        for expected in [
            DirectionFilter::Ingress,
            DirectionFilter::Egress,
            DirectionFilter::All,
        ] {
            state.direction = state.direction.next();
            assert_eq!(state.direction, expected, "d cycles");
        }
        for expected in [SortKey::Packets, SortKey::Syns, SortKey::Bits] {
            state.sort = state.sort.next();
            assert_eq!(state.sort, expected, "s cycles");
        }
    }

    #[test]
    fn payload_evidence_overrides_the_ambiguous_label() {
        let mut after = snapshot(1_000, 2);
        after.interfaces[0].ports[2].resolved_security = Some("secure".into());
        let rates = rates(&snapshot(0, 1), &after);
        assert_eq!(row(&rates, Some(53)).security, "secure", "resolved");
        assert_eq!(row(&rates, Some(23)).security, "plaintext", "unresolved");
    }

    #[test]
    fn classes_come_from_the_security_label() {
        for (label, class) in [
            ("plaintext", Class::Plaintext),
            ("ambiguous", Class::Ambiguous),
            ("secure", Class::Secure),
            ("unknown", Class::Unknown),
            ("something new", Class::Unknown),
        ] {
            assert_eq!(Class::of(label), class, "case {label}");
        }
    }
}
