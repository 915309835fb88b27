//! Alerting end to end: the real `portmon run` on the host end of a veth pair, scraped by a
//! real Prometheus loading the shipped rules, and posting its own alerts to a real
//! Alertmanager through the webhook.
//!
//! Timeline (about a minute): normal traffic from the peer (HTTPS 443 and SSH 22
//! connections, DNS 53 datagrams, an FTP connection now and then) warms up portmon's
//! detector and the rules' baselines; then a burst of telnet (23) and FTP (21) connections;
//! then silence. Asserted through Prometheus' HTTP API: `PortmonMustBeZeroTraffic` (23) and
//! `PortmonPlaintextDetectorAlert` (23 must_be_zero, 21 spike) fire, and
//! `PortmonPlaintextRateAboveBaseline` (21, which has a `for:`) is seen pending before it
//! fires; portmon's own `portmon_plaintext_alert` is 1 for both; everything resolves after
//! the traffic stops. portmon's JSON log has a start and an end line per alert, and
//! Alertmanager's `/api/v2/alerts` holds portmon's webhook alert while it fires and resolves
//! it when portmon sends its end.
//!
//! # Shortened rules
//! The shipped rules use production windows (5m rates, a 1-week baseline taken every 5m, a
//! day-old baseline, `for: 10m`, an hour of first-seen learning). The test loads a copy in
//! which [`SHORTER`] replaces each window by a few seconds, by plain string substitution;
//! every substitution must apply at least once, so a change of the shipped windows fails
//! here loudly instead of silently testing the production windows.
//!
//! Needs root (veth, namespaces, eBPF), `prometheus` and `prometheus-alertmanager`.
#![expect(clippy::expect_used, reason = "tests panic with what they expected")]

use std::{
    collections::BTreeSet,
    fs,
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use portmon_tests::{
    daemon::Daemon,
    netns::{Stack, Topology},
    prometheus::{Alert, Alertmanager, Prometheus, ServerConfig, shipped_rules},
};

/// (production window, test window) substitutions applied to the shipped rules.
const SHORTER: &[(&str, &str)] = &[
    ("[5m]", "[10s]"),
    ("offset 5m", "offset 10s"),
    ("[1w]", "[2m]"),
    ("offset 1d", "offset 10s"),
    ("interval: 5m", "interval: 2s"),
    ("for: 10m", "for: 3s"),
    ("[1h]", "[1m]"),
    ("[1d]", "[2m]"),
    ("> 3600", "> 10"),
];

/// Normal traffic alone, before the burst: past portmon's warm-up and long enough for the
/// shortened rules' baselines.
const WARM_UP: Duration = Duration::from_secs(25);
/// How long the burst lasts at most (it stops earlier once everything was seen firing).
const BURST_LIMIT: Duration = Duration::from_secs(40);
/// How long everything may take to resolve after the traffic stops.
const RESOLVE_LIMIT: Duration = Duration::from_secs(45);
const POLL: Duration = Duration::from_millis(250);

/// The portmon config of the test: a short warm-up, small thresholds and short holds.
const PORTMON_CONFIG: &str = r#"
[alerts]
warmup = "15s"
half_life = "1m"
min_packet_rate = 5.0
min_syn_rate = 2.0
fire_after = "1s"
clear_after = "4s"
webhook_timeout = "2s"
"#;

fn shortened_rules(dir: &std::path::Path) -> PathBuf {
    let mut text = fs::read_to_string(shipped_rules()).expect("the shipped rules are readable");
    for (long, short) in SHORTER {
        assert!(
            text.contains(long),
            "expected {long:?} in the shipped rules (update SHORTER in this test)"
        );
        text = text.replace(long, short);
    }
    let path = dir.join("portmon-rules-short.yml");
    fs::write(&path, text).expect("writing the shortened rules");
    path
}

/// TCP listeners that accept and close at once, and a UDP socket that swallows datagrams,
/// on the host end's address. Best effort per port: a port another process holds on every
/// address (sshd on 22) still sees SYNs, answered by RST.
struct HostServices {
    stop: Arc<AtomicBool>,
    acceptors: Vec<JoinHandle<()>>,
    _udp: Option<UdpSocket>,
}

impl HostServices {
    fn start(address: Ipv4Addr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acceptors = [443, 22, 21, 23]
            .into_iter()
            .filter_map(|port| TcpListener::bind((address, port)).ok())
            .map(|listener| portmon_tests::daemon::accept_and_close(listener, Arc::clone(&stop)))
            .collect();
        Self {
            stop,
            acceptors,
            _udp: UdpSocket::bind((address, 53)).ok(),
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

/// Traffic from the peer: `ports` get one TCP connection each per `every`, port 53 a
/// datagram, until `stop` is set or `limit` passes (bounded in time, and so in count).
fn drive(
    topology: &Topology,
    tcp_ports: Vec<u16>,
    dns: bool,
    every: Duration,
    limit: Duration,
    stop: &Arc<AtomicBool>,
) -> JoinHandle<anyhow::Result<u64>> {
    let host = topology.host_v4();
    let peer = topology.peer_v4();
    let stop = Arc::clone(stop);
    topology
        .spawn_in_peer(move || {
            let deadline = Instant::now() + limit;
            let socket = UdpSocket::bind((peer, 0)).expect("a UDP socket in the peer");
            let mut sent = 0u64;
            while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
                for &port in &tcp_ports {
                    // Refused or accepted, the SYN crossed the link; that is what counts.
                    let _ = TcpStream::connect_timeout(
                        &SocketAddr::from((host, port)),
                        Duration::from_millis(500),
                    );
                    sent += 1;
                }
                if dns {
                    let _ = socket.send_to(&[0x55; 30], (host, 53));
                    sent += 1;
                }
                thread::sleep(every);
            }
            sent
        })
        .expect("the peer namespace can be entered")
}

fn stop_and_join(stop: &AtomicBool, handles: Vec<JoinHandle<anyhow::Result<u64>>>) {
    stop.store(true, Ordering::Release);
    for handle in handles {
        let _ = handle.join().expect("a traffic thread does not panic");
    }
}

fn label<'a>(alert: &'a Alert, name: &str) -> &'a str {
    alert.labels.get(name).map_or("", String::as_str)
}

/// (alertname, port, reason) of an alert, `reason` empty for the rules without one.
fn alert_id(alert: &Alert) -> (String, String, String) {
    (
        label(alert, "alertname").to_owned(),
        label(alert, "port").to_owned(),
        label(alert, "reason").to_owned(),
    )
}

fn id(name: &str, port: &str, reason: &str) -> (String, String, String) {
    (name.to_owned(), port.to_owned(), reason.to_owned())
}

/// The alerts the test expects to fire during the burst.
fn expected_firing() -> Vec<(String, String, String)> {
    vec![
        id("PortmonMustBeZeroTraffic", "23", ""),
        id("PortmonPlaintextDetectorAlert", "23", "must_be_zero"),
        id("PortmonPlaintextDetectorAlert", "21", "spike"),
        id("PortmonPlaintextRateAboveBaseline", "21", ""),
    ]
}

/// portmon's own alert gauge through Prometheus: the (port, reason) pairs at 1.
fn portmon_alerts_at_one(prometheus: &Prometheus) -> BTreeSet<(String, String)> {
    prometheus
        .query_vector("portmon_plaintext_alert == 1")
        .map(|samples| {
            samples
                .into_iter()
                .map(|s| {
                    (
                        s.labels.get("port").cloned().unwrap_or_default(),
                        s.labels.get("reason").cloned().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn json_log_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .collect()
}

#[test]
#[expect(clippy::too_many_lines, reason = "one story, told in order")]
fn plaintext_bursts_fire_the_shipped_rules_portmons_alert_and_the_webhook_then_resolve() {
    let started = Instant::now();
    let topology = Topology::new(Stack::Ipv4).expect("the veth topology is set up (run as root)");
    let interface = topology.host_if().to_owned();
    let _services = HostServices::start(topology.host_v4());
    let alertmanager = Alertmanager::start().unwrap_or_else(|error| {
        panic!("alertmanager starts (apt-get install prometheus-alertmanager): {error:#}")
    });
    let scratch = std::env::temp_dir().join(format!("portmon-alerting-{}", std::process::id()));
    fs::create_dir_all(&scratch).expect("creating the scratch directory");
    let config = scratch.join("portmon.toml");
    fs::write(
        &config,
        format!("{PORTMON_CONFIG}webhook_url = \"{}\"\n", alertmanager.url()),
    )
    .expect("writing the portmon config");
    let daemon = Daemon::start(&[
        "--iface",
        &interface,
        "--interval",
        "500ms",
        "--config",
        &config.to_string_lossy(),
        "--log-format",
        "json",
    ])
    .unwrap_or_else(|error| panic!("portmon run starts: {error:#}"));
    let prometheus = Prometheus::start(&ServerConfig {
        scrape_interval: Duration::from_secs(1),
        evaluation_interval: Duration::from_secs(1),
        rule_files: vec![shortened_rules(&scratch)],
        targets: vec![("portmon".into(), daemon.addr().to_string())],
    })
    .unwrap_or_else(|error| panic!("prometheus starts: {error:#}"));

    // Normal traffic: HTTPS, SSH and DNS ten times a second, FTP now and then.
    let normal_stop = Arc::new(AtomicBool::new(false));
    let limit = WARM_UP + BURST_LIMIT + Duration::from_secs(10);
    let normal = vec![
        drive(
            &topology,
            vec![443, 22],
            true,
            Duration::from_millis(100),
            limit,
            &normal_stop,
        ),
        drive(
            &topology,
            vec![21],
            false,
            Duration::from_secs(2),
            limit,
            &normal_stop,
        ),
    ];
    thread::sleep(WARM_UP);
    let before_burst = prometheus.alerts().expect("the alerts API answers");
    let early: Vec<_> = before_burst
        .iter()
        .filter(|a| expected_firing().contains(&alert_id(a)))
        .collect();
    assert!(
        early.is_empty(),
        "expected none of the burst's alerts before the burst, got {early:?}"
    );

    // The burst: telnet and FTP connections from the peer.
    let burst_stop = Arc::new(AtomicBool::new(false));
    let burst = vec![
        drive(
            &topology,
            vec![23],
            false,
            Duration::from_millis(100),
            BURST_LIMIT,
            &burst_stop,
        ),
        drive(
            &topology,
            vec![21],
            false,
            Duration::from_millis(5),
            BURST_LIMIT,
            &burst_stop,
        ),
    ];
    let mut seen: BTreeSet<(String, String, String, String)> = BTreeSet::new();
    let mut portmon_seen: BTreeSet<(String, String)> = BTreeSet::new();
    let deadline = Instant::now() + BURST_LIMIT;
    let firing_ids = |seen: &BTreeSet<(String, String, String, String)>| -> BTreeSet<_> {
        seen.iter()
            .filter(|(_, _, _, state)| state == "firing")
            .map(|(name, port, reason, _)| (name.clone(), port.clone(), reason.clone()))
            .collect()
    };
    while Instant::now() < deadline {
        if let Ok(alerts) = prometheus.alerts() {
            for alert in &alerts {
                let (name, port, reason) = alert_id(alert);
                seen.insert((name, port, reason, alert.state.clone()));
            }
        }
        portmon_seen.extend(portmon_alerts_at_one(&prometheus));
        let firing = firing_ids(&seen);
        if expected_firing().iter().all(|id| firing.contains(id))
            && portmon_seen.contains(&("23".into(), "must_be_zero".into()))
            && portmon_seen.contains(&("21".into(), "spike".into()))
        {
            break;
        }
        thread::sleep(POLL);
    }
    stop_and_join(&burst_stop, burst);
    stop_and_join(&normal_stop, normal);
    let burst_seen = Instant::now();

    let firing = firing_ids(&seen);
    let missing: Vec<_> = expected_firing()
        .into_iter()
        .filter(|id| !firing.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "expected these alerts firing during the burst: {missing:?}; states seen: {seen:?}\n\
         portmon log:\n{}\nprometheus log:\n{}",
        daemon.log(),
        prometheus.log()
    );
    assert!(
        seen.contains(&(
            "PortmonPlaintextRateAboveBaseline".into(),
            "21".into(),
            String::new(),
            "pending".into()
        )),
        "expected PortmonPlaintextRateAboveBaseline (for: 3s) pending before firing; seen {seen:?}"
    );
    assert_eq!(
        portmon_seen,
        BTreeSet::from([
            ("21".to_owned(), "spike".to_owned()),
            ("23".to_owned(), "must_be_zero".to_owned()),
        ]),
        "portmon_plaintext_alert == 1 through Prometheus: exactly telnet (must_be_zero) and \
         ftp (spike), nothing on the normal traffic"
    );
    let unhealthy: Vec<_> = prometheus
        .rule_health()
        .expect("the rules API answers")
        .into_iter()
        .filter(|rule| rule.health == "err")
        .collect();
    assert!(
        unhealthy.is_empty(),
        "rules failing to evaluate: {unhealthy:?}"
    );

    // The webhook: Alertmanager holds portmon's own alert for telnet.
    let webhook_alert = prometheus
        .wait_for(
            "portmon's webhook alert in Alertmanager",
            Duration::from_secs(10),
            POLL,
            |_| {
                Ok(alertmanager.alerts()?.into_iter().find(|alert| {
                    alert["labels"]["alertname"] == "PortmonPlaintextTraffic"
                        && alert["labels"]["port"] == "23"
                        && alert["labels"]["reason"] == "must_be_zero"
                        && alert["labels"]["interface"] == interface.as_str()
                }))
            },
        )
        .unwrap_or_else(|error| {
            panic!(
                "{error:#}\nportmon log:\n{}\nalertmanager log:\n{}",
                daemon.log(),
                alertmanager.log()
            )
        });
    assert_eq!(
        webhook_alert["labels"]["severity"], "critical",
        "a must-be-zero alert is critical: {webhook_alert}"
    );

    // Silence: everything resolves.
    let resolved = prometheus.wait_for(
        "every burst alert to resolve",
        RESOLVE_LIMIT,
        POLL,
        |server| {
            let alerts = server.alerts()?;
            let left: Vec<_> = alerts
                .iter()
                .filter(|a| expected_firing().contains(&alert_id(a)))
                .map(alert_id)
                .collect();
            let portmon_left = portmon_alerts_at_one(server);
            Ok((left.is_empty() && portmon_left.is_empty()).then_some(()))
        },
    );
    if let Err(error) = resolved {
        panic!(
            "{error:#}; alerts now: {:?}; portmon alerts now: {:?}",
            prometheus.alerts(),
            portmon_alerts_at_one(&prometheus)
        );
    }
    let resolved_after = burst_seen.elapsed();
    // The webhook's end (endsAt) resolves it in Alertmanager, which lists active alerts only.
    prometheus
        .wait_for(
            "portmon's webhook alert to be resolved in Alertmanager",
            Duration::from_secs(15),
            POLL,
            |_| {
                Ok((!alertmanager.alerts()?.iter().any(|alert| {
                    alert["labels"]["alertname"] == "PortmonPlaintextTraffic"
                        && alert["status"]["state"] == "active"
                }))
                .then_some(()))
            },
        )
        .unwrap_or_else(|error| {
            panic!("{error:#}; alertmanager holds {:?}", alertmanager.alerts())
        });

    // portmon's JSON log: a start and an end line per alert, with the fields.
    let log = daemon.log();
    let events: BTreeSet<(String, u64, String)> = json_log_lines(&log)
        .into_iter()
        .filter(|line| line["target"] == "portmon::alert")
        .map(|line| {
            assert_eq!(
                line["interface"],
                interface.as_str(),
                "alert log line {line}"
            );
            (
                line["event"].as_str().unwrap_or("").to_owned(),
                line["port"].as_u64().unwrap_or(0),
                line["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let expected_events = BTreeSet::from([
        ("started".to_owned(), 21, "spike".to_owned()),
        ("ended".to_owned(), 21, "spike".to_owned()),
        ("started".to_owned(), 23, "must_be_zero".to_owned()),
        ("ended".to_owned(), 23, "must_be_zero".to_owned()),
    ]);
    assert_eq!(
        events, expected_events,
        "alert start/end lines in portmon's JSON log:\n{log}"
    );
    let _ = fs::remove_dir_all(&scratch);
    eprintln!(
        "alerting e2e: burst alerts resolved {resolved_after:?} after the traffic stopped; \
         {:?} in all",
        started.elapsed()
    );
}
