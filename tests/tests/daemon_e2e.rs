//! End to end: the real `portmon run` binary on the host end of a veth pair whose peer sits
//! in a namespace of its own. The peer completes TCP handshakes to 23, 80 and 443, sends UDP
//! to 53 and 161, pushes a non-table port past the promotion threshold, and sweeps every TCP
//! port 1-65535; the test scrapes /metrics all along and checks exact values (against known
//! counts and against a capture of every frame on the link), every label, that no counter
//! ever decreases, that the series stay within the budget, and that promtool is content.

#![expect(clippy::expect_used, reason = "tests panic with what they expected")]

use std::{
    collections::{BTreeMap, HashMap},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use portmon::ports::Policy;
use portmon_tests::{
    daemon::{
        Daemon, Sample, ScratchLink, parse_exposition, promtool_check, tcx_egress_programs,
        xdp_programs,
    },
    netns::{Capture, Captured, Crossing, Stack, Topology},
};

/// Read interval of the daemon under test: short, so the test does not wait long.
const INTERVAL: &str = "100ms";
/// UDP payload sizes; frames are 14 + 20 + 8 + payload bytes.
const DNS_PAYLOAD: usize = 30;
const SNMP_PAYLOAD: usize = 40;
const PROMOTED_PAYLOAD: usize = 10;
/// A non-table port the test pushes past the default promotion threshold (100 packets).
const PROMOTED_PORT: u16 = 40_000;
const BEFORE_PROMOTION: u64 = 150;
const AFTER_PROMOTION: u64 = 7;
const DNS_DATAGRAMS: u64 = 5;
const SNMP_DATAGRAMS: u64 = 3;
/// Ports listening on the host end.
const OPEN_TCP: [u16; 3] = [23, 80, 443];

/// TCP listeners that accept and close at once, and UDP sockets that swallow datagrams (so
/// the host answers nothing but the TCP handshakes), on the host end's address.
struct HostServices {
    stop: Arc<AtomicBool>,
    acceptors: Vec<JoinHandle<()>>,
    _udp: Vec<UdpSocket>,
}

impl HostServices {
    fn start(address: Ipv4Addr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acceptors = OPEN_TCP
            .iter()
            .map(|&port| {
                let listener = TcpListener::bind((address, port))
                    .unwrap_or_else(|error| panic!("binding {address}:{port}: {error}"));
                portmon_tests::daemon::accept_and_close(listener, Arc::clone(&stop))
            })
            .collect();
        let udp = [53, 161, PROMOTED_PORT]
            .iter()
            .map(|&port| {
                UdpSocket::bind((address, port))
                    .unwrap_or_else(|error| panic!("binding udp {address}:{port}: {error}"))
            })
            .collect();
        Self {
            stop,
            acceptors,
            _udp: udp,
        }
    }
}

impl Drop for HostServices {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for acceptor in self.acceptors.drain(..) {
            let _ = acceptor.join();
        }
    }
}

fn send_udp(topology: &Topology, port: u16, payload: usize, count: u64) {
    let (peer, host) = (topology.peer_v4(), topology.host_v4());
    topology
        .in_peer(move || {
            let socket = UdpSocket::bind((peer, 0)).expect("a UDP socket in the peer");
            for _ in 0..count {
                socket
                    .send_to(&vec![0x55; payload], (host, port))
                    .expect("the datagram is sent");
            }
        })
        .expect("entering the peer namespace");
}

/// A sample value as the integer count it is.
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "exported counters are non-negative integers far below 2^53"
)]
fn count(value: f64) -> u64 {
    value as u64
}

/// Key of one exported series: metric name and labels.
fn key(sample: &Sample) -> String {
    format!("{}{:?}", sample.name, sample.labels)
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == *v))
        .map(|s| count(s.value))
}

/// What a scraper running during the traffic saw.
#[derive(Default)]
struct ScrapeLog {
    scrapes: usize,
    max_series: u64,
    budget: u64,
    violations: Vec<String>,
    promtool: Vec<String>,
}

/// Scrapes every 100 ms until stopped, checking monotonic counters and the budget.
fn scraper(daemon: &Daemon, stop: &AtomicBool) -> ScrapeLog {
    let mut log = ScrapeLog::default();
    let mut last: HashMap<String, f64> = HashMap::new();
    // Bounded: at most 10 minutes of scraping.
    let deadline = Instant::now() + Duration::from_mins(10);
    while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
        let body = match daemon.scrape(None) {
            Ok(response) => response.body,
            Err(error) => {
                log.violations.push(format!("scrape failed: {error:#}"));
                break;
            }
        };
        log.scrapes += 1;
        if log.scrapes % 10 == 3 {
            let complaints = promtool_check(&body).expect("promtool runs");
            if !complaints.is_empty() {
                log.promtool.push(complaints);
            }
        }
        let samples = parse_exposition(&body).expect("the exposition parses");
        let series = value(&samples, "portmon_series", &[]).unwrap_or(u64::MAX);
        log.budget = value(&samples, "portmon_series_budget", &[]).unwrap_or(0);
        log.max_series = log.max_series.max(series);
        if series > log.budget {
            log.violations
                .push(format!("{series} series over the budget {}", log.budget));
        }
        for sample in &samples {
            let monotonic = sample.name.ends_with("_total")
                || sample.name.ends_with("_bucket")
                || sample.name.ends_with("_count");
            if !monotonic {
                continue;
            }
            if let Some(before) = last.insert(key(sample), sample.value)
                && sample.value < before
            {
                log.violations.push(format!(
                    "{} went down from {before} to {}",
                    key(sample),
                    sample.value
                ));
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    log
}

/// Counts per (direction, protocol, destination port) and per unparsed kind, from the
/// frames captured on the peer end.
#[derive(Default)]
struct Reference {
    /// (direction, protocol, port) -> (packets, bytes, syns).
    ports: BTreeMap<(&'static str, &'static str, u16), (u64, u64, u64)>,
    /// (direction, kind) -> packets for frames not counted under a port.
    other: BTreeMap<(&'static str, &'static str), u64>,
}

fn reference(frames: &[Captured]) -> Reference {
    let mut reference = Reference::default();
    for captured in frames {
        assert!(
            captured.gso.is_none(),
            "a GSO super-packet crossed the link; this test sends none: {captured:?}"
        );
        let direction = match captured.crossing {
            Crossing::PeerSent => "ingress",
            Crossing::PeerReceived => "egress",
        };
        let frame = &captured.frame;
        let kind = classify_frame(frame);
        match kind {
            Ok((protocol, port, syn)) => {
                let entry = reference
                    .ports
                    .entry((direction, protocol, port))
                    .or_default();
                entry.0 += 1;
                entry.1 += frame.len() as u64;
                entry.2 += u64::from(syn);
            }
            Err(kind) => *reference.other.entry((direction, kind)).or_default() += 1,
        }
    }
    reference
}

/// (protocol, destination port, SYN without ACK) of an untagged IPv4 TCP/UDP frame, else
/// the unparsed reason portmon gives it.
fn classify_frame(frame: &[u8]) -> Result<(&'static str, u16, bool), &'static str> {
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    if ethertype != 0x0800 {
        return Err(if ethertype == 0x86dd {
            "ipv6"
        } else {
            "non_ip"
        });
    }
    let ip = &frame[14..];
    let header = usize::from(ip[0] & 0x0f) * 4;
    let l4 = &ip[header..];
    let port = u16::from_be_bytes([l4[2], l4[3]]);
    match ip[9] {
        6 => Ok(("tcp", port, l4[13] & 0x12 == 0x02)),
        17 => Ok(("udp", port, false)),
        1 => Err("icmp"),
        _ => Err("other_l4"),
    }
}

fn check_labels(samples: &[Sample], interface: &str, policy: &Policy) {
    let port_labels = [
        "interface",
        "direction",
        "protocol",
        "port",
        "service",
        "range",
        "security",
    ];
    for sample in samples {
        let expected: &[&str] = match sample.name.as_str() {
            "portmon_packets_total" | "portmon_bytes_total" => &port_labels,
            "portmon_tcp_syn_total" => &[
                "interface",
                "direction",
                "port",
                "service",
                "range",
                "security",
            ],
            _ => continue,
        };
        let keys: Vec<&str> = sample.labels.keys().map(String::as_str).collect();
        let mut sorted = expected.to_vec();
        sorted.sort_unstable();
        assert_eq!(keys, sorted, "labels of {sample:?}");
        assert_eq!(sample.label("interface"), interface, "{sample:?}");
        assert!(
            ["ingress", "egress"].contains(&sample.label("direction")),
            "direction of {sample:?}"
        );
        let protocol = if sample.name == "portmon_tcp_syn_total" {
            "tcp"
        } else {
            sample.label("protocol")
        };
        let l4 = match protocol {
            "tcp" => monitor_common::layout::L4::Tcp,
            "udp" => monitor_common::layout::L4::Udp,
            other => panic!("protocol {other:?} in {sample:?}"),
        };
        if sample.label("port") == "other" {
            assert_eq!(sample.label("service"), "other", "{sample:?}");
            assert!(
                ["well_known", "registered", "dynamic"].contains(&sample.label("range")),
                "range of {sample:?}"
            );
            assert!(
                ["plaintext", "secure", "ambiguous", "unknown"].contains(&sample.label("security")),
                "security of {sample:?}"
            );
        } else {
            let port: u16 = sample
                .label("port")
                .parse()
                .unwrap_or_else(|_| panic!("port of {sample:?}"));
            let info = policy.classify(l4, port);
            assert_eq!(
                (
                    sample.label("service"),
                    sample.label("range"),
                    sample.label("security")
                ),
                (info.service, info.range.as_str(), info.security.as_str()),
                "service, range and security of {sample:?}"
            );
        }
    }
}

/// Sums an exported per-port family over the series of one direction and protocol.
fn family_sum(samples: &[Sample], name: &str, direction: &str, protocol: Option<&str>) -> u64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && s.label("direction") == direction
                && protocol.is_none_or(|p| s.label("protocol") == p)
        })
        .map(|s| count(s.value))
        .sum()
}

fn wait_for_series(daemon: &Daemon, labels: &[(&str, &str)]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(response) = daemon.scrape(None)
            && let Ok(samples) = parse_exposition(&response.body)
            && value(&samples, "portmon_packets_total", labels).is_some()
        {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Handshakes to telnet and the web ports, then UDP to DNS and SNMP.
fn handshakes_and_udp(topology: &Topology) {
    let host = topology.host_v4();
    topology
        .in_peer(move || {
            for port in OPEN_TCP {
                let stream = TcpStream::connect_timeout(
                    &SocketAddr::from((host, port)),
                    Duration::from_secs(5),
                )
                .unwrap_or_else(|error| panic!("handshake to {port}: {error}"));
                drop(stream);
            }
        })
        .expect("entering the peer namespace");
    send_udp(topology, 53, DNS_PAYLOAD, DNS_DATAGRAMS);
    send_udp(topology, 161, SNMP_PAYLOAD, SNMP_DATAGRAMS);
}

/// Pushes a non-table port past the promotion threshold, waits for its series, then sends
/// the packets that the series must count exactly.
fn promote_a_port(topology: &Topology, daemon: &Daemon) {
    // A non-table port earns its own series; what it counts after that is exact.
    send_udp(topology, PROMOTED_PORT, PROMOTED_PAYLOAD, BEFORE_PROMOTION);
    let promoted = [
        ("direction", "ingress"),
        ("protocol", "udp"),
        ("port", "40000"),
    ];
    assert!(
        wait_for_series(daemon, &promoted),
        "port {PROMOTED_PORT} was not promoted after {BEFORE_PROMOTION} packets; log:\n{}",
        daemon.log()
    );
    send_udp(topology, PROMOTED_PORT, PROMOTED_PAYLOAD, AFTER_PROMOTION);
}

/// Sweeps every TCP port from the peer while a scraper checks every scrape; returns what
/// the scraper saw once the link is quiet and the last packets are read.
fn sweep_while_scraping(topology: &Topology, daemon: &Daemon, capture: &Capture) -> ScrapeLog {
    let host = topology.host_v4();
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let scrape_log = thread::scope(|scope| {
        let watcher = scope.spawn(|| scraper(daemon, &stop));
        let accepted = topology
            .in_peer(move || {
                let mut accepted = 0u32;
                for port in 1..=u16::MAX {
                    // Closed ports answer RST at once; nothing waits for the timeout.
                    if let Ok(stream) = TcpStream::connect_timeout(
                        &SocketAddr::from((host, port)),
                        Duration::from_secs(2),
                    ) {
                        accepted += 1;
                        drop(stream);
                    }
                }
                accepted
            })
            .expect("entering the peer namespace");
        assert!(
            accepted >= 3,
            "the sweep reached the listeners on {OPEN_TCP:?}: {accepted} accepted"
        );
        assert!(
            capture.wait_quiet(Duration::from_millis(500), Duration::from_secs(30)),
            "the link did not go quiet"
        );
        // Two read intervals, so the last packets are read.
        thread::sleep(Duration::from_millis(400));
        stop.store(true, Ordering::Release);
        watcher.join().expect("the scraper does not panic")
    });
    eprintln!(
        "sweep and settle: {:?}, {} scrapes during it, at most {} series (budget {})",
        started.elapsed(),
        scrape_log.scrapes,
        scrape_log.max_series,
        scrape_log.budget
    );
    assert!(scrape_log.scrapes >= 3, "expected scrapes during the sweep");
    assert!(
        scrape_log.violations.is_empty(),
        "during the sweep: {:#?}",
        scrape_log.violations
    );
    assert!(
        scrape_log.promtool.is_empty(),
        "promtool: {:#?}",
        scrape_log.promtool
    );
    scrape_log
}

/// Values the test knows without looking at the capture.
fn check_known_counts(samples: &[Sample]) {
    let syn = |port: &str| {
        value(
            samples,
            "portmon_tcp_syn_total",
            &[("direction", "ingress"), ("port", port)],
        )
    };
    for port in OPEN_TCP {
        assert_eq!(
            syn(&port.to_string()),
            Some(2),
            "SYNs to {port}: one handshake and one from the sweep"
        );
    }
    let ingress_syns = family_sum(samples, "portmon_tcp_syn_total", "ingress", None);
    assert_eq!(
        ingress_syns,
        65_535 + 3,
        "one SYN per port swept plus the handshakes"
    );
    let udp = |port: &str, name: &str| {
        value(
            samples,
            name,
            &[
                ("direction", "ingress"),
                ("protocol", "udp"),
                ("port", port),
            ],
        )
    };
    let frame = |payload: usize| (14 + 20 + 8 + payload) as u64;
    assert_eq!(udp("53", "portmon_packets_total"), Some(DNS_DATAGRAMS));
    assert_eq!(
        udp("53", "portmon_bytes_total"),
        Some(DNS_DATAGRAMS * frame(DNS_PAYLOAD))
    );
    assert_eq!(udp("161", "portmon_packets_total"), Some(SNMP_DATAGRAMS));
    assert_eq!(
        udp("161", "portmon_bytes_total"),
        Some(SNMP_DATAGRAMS * frame(SNMP_PAYLOAD))
    );
    // The port is promoted by the first read that sees it past the threshold. That read
    // may land while the first burst is still arriving (a loaded machine spreads the
    // burst over a read interval), so the split between `other` and the port is known only
    // up to that read; the sum is exact, and the port holds at least the second burst.
    let promoted =
        udp("40000", "portmon_packets_total").expect("the promoted port has its own series");
    let before = udp("other", "portmon_packets_total")
        .expect("the traffic before the promotion stays in other (registered, unknown)");
    assert_eq!(
        promoted + before,
        BEFORE_PROMOTION + AFTER_PROMOTION,
        "every datagram to the promoted port is counted once: {promoted} in its series, \
         {before} in other"
    );
    assert!(
        (AFTER_PROMOTION..=BEFORE_PROMOTION + AFTER_PROMOTION).contains(&promoted),
        "the promoted port counts from its promotion, so at least the {AFTER_PROMOTION} \
         datagrams sent after it: got {promoted}"
    );
    assert_eq!(
        udp("40000", "portmon_bytes_total"),
        Some(promoted * frame(PROMOTED_PAYLOAD))
    );
}

/// Every table port exactly, and every direction and protocol in sum, against the capture.
fn check_against_capture(samples: &[Sample], reference: &Reference, policy: &Policy) {
    for (&(direction, protocol, port), &(packets, bytes, syns)) in &reference.ports {
        let l4 = if protocol == "tcp" {
            monitor_common::layout::L4::Tcp
        } else {
            monitor_common::layout::L4::Udp
        };
        if !policy.classify(l4, port).in_security_table {
            continue;
        }
        let labels = [
            ("direction", direction),
            ("protocol", protocol),
            ("port", &port.to_string()),
        ];
        assert_eq!(
            (
                value(samples, "portmon_packets_total", &labels),
                value(samples, "portmon_bytes_total", &labels),
            ),
            (Some(packets), Some(bytes)),
            "{direction} {protocol} {port}: packets and bytes against the capture"
        );
        if protocol == "tcp" {
            assert_eq!(
                value(
                    samples,
                    "portmon_tcp_syn_total",
                    &[("direction", direction), ("port", &port.to_string())]
                ),
                Some(syns),
                "{direction} {port}: SYNs against the capture"
            );
        }
    }
    for direction in ["ingress", "egress"] {
        for protocol in ["tcp", "udp"] {
            let captured = reference
                .ports
                .iter()
                .filter(|((d, p, _), _)| *d == direction && *p == protocol)
                .fold((0, 0), |(packets, bytes), (_, c)| {
                    (packets + c.0, bytes + c.1)
                });
            let exported = (
                family_sum(samples, "portmon_packets_total", direction, Some(protocol)),
                family_sum(samples, "portmon_bytes_total", direction, Some(protocol)),
            );
            assert_eq!(
                exported, captured,
                "{direction} {protocol}: (packets, bytes) over every series against the capture"
            );
        }
        for reason in ["non_ip", "icmp", "other_l4"] {
            let captured = reference
                .other
                .get(&(direction, reason))
                .copied()
                .unwrap_or(0);
            assert_eq!(
                value(
                    samples,
                    "portmon_unparsed_packets_total",
                    &[("direction", direction), ("reason", reason)]
                ),
                Some(captured),
                "{direction} {reason} against the capture"
            );
        }
    }
}

fn check_self_metrics(samples: &[Sample], interface: &str, budget: u64, policy: &Policy) {
    let series = samples
        .iter()
        .filter(|s| s.name == "portmon_packets_total")
        .count() as u64;
    assert_eq!(value(samples, "portmon_series", &[]), Some(series));
    assert!(series <= budget, "{series} series within {budget}");
    assert_eq!(
        value(samples, "portmon_attached", &[("hook", "xdp")]),
        Some(1),
        "xdp attached"
    );
    let modes: Vec<(&str, &str)> = samples
        .iter()
        .filter(|s| s.name == "portmon_attached")
        .map(|s| (s.label("hook"), s.label("mode")))
        .collect();
    assert_eq!(
        modes,
        vec![("xdp", "native"), ("tc_egress", "tcx")],
        "veth does native XDP"
    );
    assert_eq!(
        value(
            samples,
            "portmon_map_read_errors_total",
            &[("interface", interface)]
        ),
        Some(0)
    );
    assert!(
        value(samples, "portmon_map_read_duration_seconds_count", &[]).unwrap_or(0) > 10,
        "reads are timed"
    );
    assert_eq!(
        samples
            .iter()
            .filter(|s| s.name == "portmon_port_info")
            .count(),
        policy.security_table().count(),
        "one portmon_port_info per security-table entry"
    );
    assert!(
        samples
            .iter()
            .any(|s| s.name == "portmon_build_info" && !s.label("version").is_empty()),
        "build info"
    );
}

/// OpenMetrics on request, with the same values as the text format.
fn check_openmetrics(daemon: &Daemon, samples: &[Sample]) {
    let openmetrics = daemon
        .scrape(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        ))
        .expect("the OpenMetrics scrape");
    assert_eq!(
        openmetrics.headers.get("content-type").map(String::as_str),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(
        openmetrics.body.ends_with("# EOF\n"),
        "OpenMetrics ends with # EOF"
    );
    assert!(
        openmetrics
            .body
            .contains("\n# TYPE portmon_packets counter\n"),
        "counter families are named without _total"
    );
    let om_samples = parse_exposition(&openmetrics.body).expect("OpenMetrics parses");
    let per_port = |samples: &[Sample]| -> Vec<(String, u64)> {
        samples
            .iter()
            .filter(|s| s.name == "portmon_packets_total")
            .map(|s| (key(s), count(s.value)))
            .collect()
    };
    assert_eq!(
        per_port(&om_samples),
        per_port(samples),
        "same series either way"
    );
}

#[test]
fn handshakes_udp_promotion_and_a_full_sweep_are_exported_exactly() {
    let topology = Topology::new(Stack::Ipv4).expect("the veth topology is set up (run as root)");
    let interface = topology.host_if().to_owned();
    let policy = Policy::builtin();
    let _services = HostServices::start(topology.host_v4());
    let daemon = Daemon::start(&["--iface", &interface, "--interval", INTERVAL])
        .unwrap_or_else(|error| panic!("portmon run starts: {error:#}"));
    let capture = topology.capture().expect("capturing on the peer end");

    handshakes_and_udp(&topology);
    promote_a_port(&topology, &daemon);
    let scrape_log = sweep_while_scraping(&topology, &daemon, &capture);

    let reference = reference(&capture.finish().expect("the capture lost nothing"));
    let text = daemon.scrape(None).expect("the final scrape");
    assert_eq!(
        text.headers.get("content-type").map(String::as_str),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(
        promtool_check(&text.body).expect("promtool runs"),
        "",
        "promtool on the final scrape"
    );
    let samples = parse_exposition(&text.body).expect("the exposition parses");
    check_labels(&samples, &interface, &policy);
    check_known_counts(&samples);
    check_against_capture(&samples, &reference, &policy);
    check_self_metrics(&samples, &interface, scrape_log.budget, &policy);
    check_openmetrics(&daemon, &samples);

    // SIGTERM detaches everything.
    let (status, log) = daemon.stop(Signal::SIGTERM).expect("portmon stops");
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert!(
        log.contains("SIGTERM"),
        "the log says why it stopped:\n{log}"
    );
    assert_eq!(
        xdp_programs(&interface).expect("the interface is listed"),
        Vec::<u32>::new()
    );
    assert_eq!(
        tcx_egress_programs(&interface).expect("tcx query"),
        Vec::<u32>::new()
    );
}
#[test]
fn generic_xdp_without_egress_counts_ingress_and_detaches_on_sigint() {
    let topology = Topology::new(Stack::Ipv4).expect("the veth topology is set up (run as root)");
    let interface = topology.host_if().to_owned();
    let _services = HostServices::start(topology.host_v4());
    let daemon = Daemon::start(&[
        "--iface",
        &interface,
        "--interval",
        INTERVAL,
        "--xdp-mode",
        "generic",
        "--no-egress",
    ])
    .unwrap_or_else(|error| panic!("portmon run starts: {error:#}"));
    send_udp(&topology, 53, DNS_PAYLOAD, 4);
    let dns = [
        ("direction", "ingress"),
        ("protocol", "udp"),
        ("port", "53"),
    ];
    assert!(
        wait_for_series(&daemon, &dns),
        "port 53 appears; log:\n{}",
        daemon.log()
    );
    thread::sleep(Duration::from_millis(300));
    let samples = parse_exposition(&daemon.scrape(None).expect("a scrape").body)
        .expect("the exposition parses");
    assert_eq!(value(&samples, "portmon_packets_total", &dns), Some(4));
    let modes: Vec<(&str, &str)> = samples
        .iter()
        .filter(|s| s.name == "portmon_attached")
        .map(|s| (s.label("hook"), s.label("mode")))
        .collect();
    assert_eq!(
        modes,
        vec![("xdp", "generic")],
        "generic XDP and no TC hook"
    );
    assert_eq!(
        family_sum(&samples, "portmon_packets_total", "egress", None),
        0,
        "nothing is counted on egress"
    );
    let (status, log) = daemon.stop(Signal::SIGINT).expect("portmon stops");
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert!(
        log.contains("SIGINT"),
        "the log says why it stopped:\n{log}"
    );
    assert_eq!(
        xdp_programs(&interface).expect("the interface is listed"),
        Vec::<u32>::new()
    );
}

#[test]
fn auto_mode_falls_back_to_generic_with_a_warning_and_says_so_in_a_metric() {
    // An ifb interface has no native XDP support.
    let link = ScratchLink::new().expect("an ifb interface (run as root)");
    let daemon = Daemon::start(&["--iface", link.name(), "--xdp-mode", "auto"])
        .unwrap_or_else(|error| panic!("portmon run starts: {error:#}"));
    let samples = parse_exposition(&daemon.scrape(None).expect("a scrape").body)
        .expect("the exposition parses");
    let modes: Vec<(&str, &str)> = samples
        .iter()
        .filter(|s| s.name == "portmon_attached")
        .map(|s| (s.label("hook"), s.label("mode")))
        .collect();
    assert_eq!(modes, vec![("xdp", "generic"), ("tc_egress", "tcx")]);
    let (status, log) = daemon.stop(Signal::SIGTERM).expect("portmon stops");
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert!(
        log.contains("WARN") && log.contains("falling back to generic XDP"),
        "expected a warning about the fallback in:\n{log}"
    );
    assert_eq!(
        xdp_programs(link.name()).expect("the interface is listed"),
        Vec::<u32>::new()
    );
}

#[test]
fn kernel_debug_records_reach_the_daemon_log_only_with_debug_kernel() {
    let topology = Topology::new(Stack::Ipv4).expect("the veth topology is set up (run as root)");
    let interface = topology.host_if().to_owned();
    let _services = HostServices::start(topology.host_v4());
    let needle = "portmon: ingress udp port 53";
    for (debug_kernel, expected) in [(true, true), (false, false)] {
        let mut args = vec!["--iface", interface.as_str(), "--interval", INTERVAL];
        if debug_kernel {
            args.push("--debug-kernel");
        }
        let daemon = Daemon::start_with_env(&args, &[("RUST_LOG", "debug")])
            .unwrap_or_else(|error| panic!("portmon run starts: {error:#}"));
        send_udp(&topology, 53, DNS_PAYLOAD, 2);
        let dns = [
            ("direction", "ingress"),
            ("protocol", "udp"),
            ("port", "53"),
        ];
        assert!(
            wait_for_series(&daemon, &dns),
            "port 53 appears; log:\n{}",
            daemon.log()
        );
        // The records travel through the ring buffer asynchronously; give them a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while expected && !daemon.log().contains(needle) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        let (status, log) = daemon.stop(Signal::SIGTERM).expect("portmon stops");
        assert!(status.success(), "exit status {status}; log:\n{log}");
        assert_eq!(
            log.contains(needle),
            expected,
            "--debug-kernel {debug_kernel}: kernel record {needle:?} in the log:\n{log}"
        );
    }
}
