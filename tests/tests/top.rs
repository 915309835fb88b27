//! `/api/v1/snapshot` and `portmon top` against the real `portmon run` on a veth whose peer
//! sits in a namespace of its own. The peer sends crafted frames addressed to a MAC nobody
//! has: XDP counts them and the host stack drops them unanswered, so the totals are known
//! exactly in both directions.

#![expect(clippy::expect_used, reason = "tests panic with what they expected")]

use std::{
    process::Output,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use portmon::snapshot::{PortTotals, Snapshot, VERSION};
use portmon_tests::{
    daemon::{Daemon, free_port, http_get, run_portmon, tcx_egress_programs, xdp_programs},
    frames::{Frame, Ipv4, TCP_SYN, Tcp, Udp},
    netns::{Stack, Topology},
};

/// Read interval of the daemon under test.
const INTERVAL_MS: u64 = 100;
/// How long the counted traffic may take to show in a snapshot.
const SETTLE: Duration = Duration::from_secs(30);
/// How long one `portmon top --once` may take (it loads the programs in local mode).
const TOP_LIMIT: Duration = Duration::from_mins(1);
/// Telnet SYNs sent while `portmon top` samples: at most this many, one every 20 ms.
const BACKGROUND_FRAMES: u32 = 1_000;

/// (case, protocol, port, frames sent, SYN flag, service, range, security).
type Traffic = (
    &'static str,
    &'static str,
    u16,
    u64,
    bool,
    &'static str,
    &'static str,
    &'static str,
);

/// The traffic the peer sends, one row per port.
const TRAFFIC: [Traffic; 4] = [
    (
        "telnet SYNs",
        "tcp",
        23,
        7,
        true,
        "telnet",
        "well_known",
        "plaintext",
    ),
    (
        "https SYNs",
        "tcp",
        443,
        5,
        true,
        "https",
        "well_known",
        "secure",
    ),
    ("dns", "udp", 53, 4, false, "dns", "well_known", "plaintext"),
    (
        "unknown registered port, folded into other",
        "udp",
        41_234,
        3,
        false,
        "other",
        "registered",
        "unknown",
    ),
];

fn frame(protocol: &str, port: u16, syn: bool) -> Vec<u8> {
    let frame = Frame::new().ipv4(Ipv4::new());
    match protocol {
        "tcp" => frame.tcp(Tcp::new(port).flags(if syn { TCP_SYN } else { 0 })),
        _ => frame.udp(Udp::new(port)),
    }
    .build()
}

/// Sends every row of [`TRAFFIC`] from the peer; returns the bytes per row.
fn send_traffic(topology: &Topology) -> Vec<u64> {
    TRAFFIC
        .iter()
        .map(|&(name, protocol, port, count, syn, ..)| {
            let frame = frame(protocol, port, syn);
            for _ in 0..count {
                topology
                    .send_raw(&frame)
                    .unwrap_or_else(|error| panic!("case {name}: sending a frame: {error:#}"));
            }
            count * frame.len() as u64
        })
        .collect()
}

fn snapshot(daemon: &Daemon) -> Snapshot {
    let response =
        http_get(daemon.addr(), "/api/v1/snapshot", None).expect("the snapshot endpoint answers");
    assert_eq!(
        response.status, 200,
        "GET /api/v1/snapshot: expected 200, got {}: {}",
        response.status, response.body
    );
    assert_eq!(
        response.headers.get("content-type").map(String::as_str),
        Some("application/json"),
        "content type"
    );
    serde_json::from_str(&response.body)
        .unwrap_or_else(|error| panic!("the snapshot parses ({error}): {}", response.body))
}

/// The ingress series of a [`TRAFFIC`] row: its own, or the `other` bucket of its range.
fn ingress_series<'a>(snapshot: &'a Snapshot, row: &Traffic) -> Option<&'a PortTotals> {
    let &(_, protocol, port, _, _, service, range, _) = row;
    let port = (service != "other").then_some(port);
    snapshot.interfaces.first()?.ports.iter().find(|p| {
        p.direction == "ingress" && p.protocol == protocol && p.port == port && p.range == range
    })
}

/// Polls the snapshot until every row's packets have been counted (bounded by [`SETTLE`]).
fn settled(daemon: &Daemon) -> Snapshot {
    let deadline = Instant::now() + SETTLE;
    loop {
        let snapshot = snapshot(daemon);
        let counted = TRAFFIC
            .iter()
            .all(|row| ingress_series(&snapshot, row).is_some_and(|p| p.packets >= row.3));
        // Telnet is a must-be-zero port: its first packet fires an alert at the same read.
        let done = counted && !snapshot.alerts.firing.is_empty();
        if done || Instant::now() >= deadline {
            return snapshot;
        }
        thread::sleep(Duration::from_millis(INTERVAL_MS));
    }
}

/// Every row of [`TRAFFIC`] counted exactly and labelled as `/metrics` labels it.
fn check_ports(got: &Snapshot, bytes: &[u64]) {
    let interface = &got.interfaces[0];
    for (row, bytes) in TRAFFIC.iter().zip(bytes.iter().copied()) {
        let &(name, _, _, count, syn, service, range, security) = row;
        let series = ingress_series(got, row)
            .unwrap_or_else(|| panic!("case {name}: no ingress series in {interface:?}"));
        assert_eq!(
            (
                series.packets,
                series.bytes,
                series.syns,
                series.service.as_str(),
                series.range.as_str(),
                series.security.as_str()
            ),
            (
                count,
                bytes,
                if syn { count } else { 0 },
                service,
                range,
                security
            ),
            "case {name}: (packets, bytes, syns, service, range, security)"
        );
    }
    // Nothing answers frames sent to a foreign MAC: egress has no per-port traffic.
    let egress: Vec<&PortTotals> = interface
        .ports
        .iter()
        .filter(|p| p.direction == "egress")
        .collect();
    assert!(
        egress.is_empty(),
        "expected no egress series, got {egress:?}"
    );
}

/// The range totals sum every series of a direction.
fn check_ranges(got: &Snapshot) {
    let interface = &got.interfaces[0];
    let range = |direction: &str, range: &str| {
        interface
            .ranges
            .iter()
            .find(|r| r.direction == direction && r.range == range)
            .map_or_else(
                || panic!("no {direction} {range} range in {interface:?}"),
                |r| (r.packets, r.syns),
            )
    };
    for (name, direction, name_of_range, expected) in [
        ("well-known ingress", "ingress", "well_known", (16, 12)),
        ("registered ingress", "ingress", "registered", (3, 0)),
        ("dynamic ingress", "ingress", "dynamic", (0, 0)),
        ("well-known egress", "egress", "well_known", (0, 0)),
    ] {
        assert_eq!(
            range(direction, name_of_range),
            expected,
            "case {name}: (packets, syns)"
        );
    }
}

#[test]
fn the_snapshot_has_exact_totals_labels_ranges_and_attachments() {
    let topology = Topology::new(Stack::Ipv4).expect("a veth pair in a namespace (run as root)");
    let daemon = Daemon::start(&[
        "--iface",
        topology.host_if(),
        "--interval",
        &format!("{INTERVAL_MS}ms"),
        "--xdp-mode",
        "generic",
    ])
    .expect("portmon run starts");
    let before = snapshot(&daemon);
    let bytes = send_traffic(&topology);
    let got = settled(&daemon);

    assert_eq!(got.version, VERSION, "schema version");
    assert_eq!(got.interval_ms, INTERVAL_MS, "read interval");
    assert!(
        got.time_unix_ms >= before.time_unix_ms,
        "time goes forward: {} then {}",
        before.time_unix_ms,
        got.time_unix_ms
    );
    assert_eq!(got.interfaces.len(), 1, "one interface: {got:?}");
    let interface = &got.interfaces[0];
    assert_eq!(interface.name, topology.host_if());
    let hooks: Vec<(&str, &str)> = interface
        .attachments
        .iter()
        .map(|a| (a.hook.as_str(), a.mode.as_str()))
        .collect();
    assert_eq!(hooks[0], ("xdp", "generic"), "attachments: {hooks:?}");
    assert!(
        hooks.iter().any(|&(hook, _)| hook == "tc_egress"),
        "tc egress attached by default: {hooks:?}"
    );

    check_ports(&got, &bytes);
    check_ranges(&got);
    assert!(
        got.alerts.enabled,
        "the detector runs by default: {:?}",
        got.alerts
    );
    let firing: Vec<(&str, &str, &str, u16, &str, &str)> = got
        .alerts
        .firing
        .iter()
        .map(|a| {
            (
                a.interface.as_str(),
                a.direction.as_str(),
                a.protocol.as_str(),
                a.port,
                a.service.as_str(),
                a.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        firing,
        vec![(
            topology.host_if(),
            "ingress",
            "tcp",
            23,
            "telnet",
            "must_be_zero"
        )],
        "alerts firing"
    );
    let since = got.alerts.firing[0]
        .since_unix_ms
        .expect("the start is known");
    assert!(
        (before.time_unix_ms..=got.time_unix_ms).contains(&since),
        "the alert started between the snapshots: {} <= {since} <= {}",
        before.time_unix_ms,
        got.time_unix_ms
    );
}

/// Runs `portmon top args...` while the peer sends telnet SYNs every 20 ms (bounded by
/// [`BACKGROUND_FRAMES`]), so that the two samples see a non-zero rate.
fn top_with_traffic(topology: &Topology, args: &[&str]) -> Output {
    let done = AtomicBool::new(false);
    let frame = frame("tcp", 23, true);
    thread::scope(|scope| {
        scope.spawn(|| {
            for _ in 0..BACKGROUND_FRAMES {
                if done.load(Ordering::Acquire) {
                    break;
                }
                topology.send_raw(&frame).expect("a telnet SYN is sent");
                thread::sleep(Duration::from_millis(20));
            }
        });
        let output = run_portmon(&[&["top", "--once"][..], args].concat(), &[], TOP_LIMIT)
            .expect("portmon top --once runs");
        done.store(true, Ordering::Release);
        output
    })
}

/// The line of `text` containing every word of `words`, if any.
fn find_line<'a>(text: &'a str, words: &[&str]) -> Option<&'a str> {
    text.lines().find(|line| {
        words
            .iter()
            .all(|word| line.split_whitespace().any(|w| w == *word))
    })
}

/// The line of `text` containing every word of `words`.
fn line_with<'a>(text: &'a str, words: &[&str]) -> &'a str {
    find_line(text, words).unwrap_or_else(|| panic!("expected a line with {words:?} in:\n{text}"))
}

/// The packets per second of a port row (the third column from the end).
fn packets_per_second(line: &str) -> f64 {
    let columns: Vec<&str> = line.split_whitespace().collect();
    columns
        .len()
        .checked_sub(4)
        .and_then(|at| columns.get(at))
        .and_then(|rate| rate.parse().ok())
        .unwrap_or_else(|| panic!("expected a pkt/s column in {line:?}"))
}

/// Checks a `portmon top --once` frame: it succeeded, shows `source` in its header and the
/// telnet row with a rate, the rows of the earlier traffic, the ranges and the alerts.
fn check_frame(output: &Output, source: &str, host_if: &str, alert: bool) {
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "portmon top --once: expected success, got {}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let header = line_with(&text, &["portmon", "top"]);
    assert!(header.contains(source), "expected {source:?} in {header:?}");
    let telnet = line_with(
        &text,
        &[host_if, "ingress", "tcp", "23", "telnet", "plaintext"],
    );
    assert!(
        packets_per_second(telnet) > 0.0,
        "telnet SYNs flowed while sampling: {telnet:?}"
    );
    for (name, words) in [
        ("https", &["443", "https", "secure"][..]),
        ("dns", &["53", "dns", "plaintext"]),
        ("other", &["other", "registered", "unknown"]),
        ("range", &[host_if, "ingress", "well_known"]),
    ] {
        let words = [&[host_if][..], words].concat();
        assert!(
            find_line(&text, &words).is_some(),
            "case {name}: expected a line with {words:?} in:\n{text}"
        );
    }
    if alert {
        line_with(
            &text,
            &[host_if, "ingress", "23/tcp", "telnet", "must_be_zero"],
        );
    } else {
        line_with(&text, &["none", "firing"]);
    }
}

#[test]
fn top_once_shows_the_daemon_s_port_rows_with_rates() {
    let topology = Topology::new(Stack::Ipv4).expect("a veth pair in a namespace (run as root)");
    let daemon = Daemon::start(&[
        "--iface",
        topology.host_if(),
        "--interval",
        &format!("{INTERVAL_MS}ms"),
        "--xdp-mode",
        "generic",
    ])
    .expect("portmon run starts");
    send_traffic(&topology);
    settled(&daemon);
    let url = format!("http://{}", daemon.addr());
    let output = top_with_traffic(&topology, &["--url", &url, "--interval", "500ms"]);
    check_frame(&output, &url, topology.host_if(), true);
}

#[test]
fn without_a_daemon_top_attaches_itself_and_detaches_on_exit() {
    let topology = Topology::new(Stack::Ipv4).expect("a veth pair in a namespace (run as root)");
    let url = format!("http://127.0.0.1:{}", free_port());

    let output = run_portmon(&["top", "--once", "--url", &url], &[], TOP_LIMIT)
        .expect("portmon top --once runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "no daemon, no --iface: expected exit 1, got {}; stderr: {stderr}",
        output.status
    );
    for needle in [
        "no portmon answers at",
        "portmon run --iface",
        "pass --iface",
    ] {
        assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    }

    // The earlier traffic is sent after attaching, within the first sample's interval.
    let host_if = topology.host_if();
    let output = thread::scope(|scope| {
        let sender = scope.spawn(|| {
            // Wait for the XDP program before sending what must be counted.
            let deadline = Instant::now() + TOP_LIMIT;
            while xdp_programs(host_if).is_ok_and(|ids| ids.is_empty()) && Instant::now() < deadline
            {
                thread::sleep(Duration::from_millis(20));
            }
            send_traffic(&topology);
        });
        let output = top_with_traffic(
            &topology,
            &["--url", &url, "--iface", host_if, "--interval", "2s"],
        );
        sender.join().expect("the sender thread ends");
        output
    });
    check_frame(
        &output,
        &format!("attached by portmon top to {host_if}"),
        host_if,
        false,
    );
    assert_eq!(
        xdp_programs(host_if).expect("the interface is listed"),
        Vec::<u32>::new(),
        "no XDP program left attached after portmon top exits"
    );
    assert_eq!(
        tcx_egress_programs(host_if).expect("tcx query"),
        Vec::<u32>::new(),
        "no TC egress program left attached after portmon top exits"
    );
}
