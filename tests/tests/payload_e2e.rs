//! Payload classification end to end: the real `portmon run` on the host end of a veth pair,
//! real clients and servers across it, and every count compared with what a capture at the
//! peer saw, classified on the host by `monitor_common::payload::classify`.
//!
//! * **TLS on an unusual port:** `openssl s_server` in the peer on 40443/tcp, `openssl
//!   s_client` handshakes from the host. The port is not in the security table: the
//!   readiness probe's connection promotes it (`--promote-min-packets 1`), which tracks its
//!   payloads, and the handshakes after that are counted (egress, the client's side).
//! * **Plaintext HTTP on 443:** an HTTP/1.1 server in the peer on 443/tcp, `curl` from the
//!   host: `kind="http"`, `security="plaintext"`, a `portmon_security_mismatch_total`
//!   (expected secure, observed http) and the detector's `mismatch` alert.
//! * **SNMP:** net-snmp's `snmpd` in the peer on 161/udp, `snmpget` from the host: SNMPv3
//!   (authPriv) first, which resolves 161 to secure, then v2c and v1, which resolve it to
//!   plaintext; and `snmptrap` v3 from the peer to the host's 162/udp (ingress, through XDP),
//!   which resolves 162 to secure.
//!
//! Counts are exact: the metrics must equal the capture's classification, kind by kind, for
//! the ports under test. Only signature kinds are compared (the kernel counts no `other`).
//!
//! Needs root (veth, namespaces, eBPF), `openssl`, `curl`, and `snmp` + `snmpd` (Debian).
#![expect(clippy::expect_used, reason = "tests panic with what they expected")]

use std::{
    collections::BTreeMap,
    fs,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use monitor_common::{
    layout::{Direction, L4},
    parse::{Parsed, parse},
    payload::{PayloadKind, classify},
};
use portmon_tests::{
    daemon::{Daemon, Sample, parse_exposition, run_command},
    netns::{Captured, Crossing, Stack, Topology},
};

/// A port no table knows: TLS there is only found by looking at the payload.
const TLS_PORT: u16 = 40_443;
const READ_INTERVAL: &str = "100ms";
/// How long a client command may run.
const CLIENT_LIMIT: Duration = Duration::from_secs(30);
/// How long a server may take to answer, and the metrics to catch up (generous: the
/// tests share two CPUs with builds and other tests).
const SETTLE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);
/// The capture is over once nothing crossed for this long.
const QUIET: Duration = Duration::from_millis(500);

/// (direction, protocol, port, kind) -> packets.
type Counts = BTreeMap<(Direction, L4, u16, PayloadKind), u64>;

/// A child process (a server in the peer), killed and reaped on drop.
struct Process {
    name: &'static str,
    child: Child,
}

impl Process {
    fn spawn(name: &'static str, command: &mut Command) -> Self {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e} (is it installed?)"));
        Self { name, child }
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("the child can be polled") {
            panic!("{} exited early with {status}", self.name);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "portmon-payload-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).expect("a scratch directory can be made");
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// portmon on the host end, reading often, promoting a port after its first packet.
fn start_portmon(topo: &Topology) -> Daemon {
    Daemon::start(&[
        "--iface",
        topo.host_if(),
        "--interval",
        READ_INTERVAL,
        "--promote-min-packets",
        "1",
    ])
    .unwrap_or_else(|e| panic!("portmon starts: {e:#}"))
}

fn scrape(daemon: &Daemon) -> Vec<Sample> {
    let response = daemon
        .scrape(None)
        .unwrap_or_else(|e| panic!("/metrics answers: {e:#}\nlog:\n{}", daemon.log()));
    parse_exposition(&response.body).expect("the exposition parses")
}

fn direction(label: &str) -> Direction {
    match label {
        "ingress" => Direction::Ingress,
        "egress" => Direction::Egress,
        other => panic!("unexpected direction {other:?}"),
    }
}

fn protocol(label: &str) -> L4 {
    match label {
        "tcp" => L4::Tcp,
        "udp" => L4::Udp,
        other => panic!("unexpected protocol {other:?}"),
    }
}

fn kind(label: &str) -> PayloadKind {
    PayloadKind::ALL
        .into_iter()
        .find(|kind| kind.as_str() == label)
        .unwrap_or_else(|| panic!("unexpected kind {label:?}"))
}

/// `portmon_payload_packets_total` restricted to `ports`.
fn exported(samples: &[Sample], ports: &[(Direction, L4, u16)]) -> Counts {
    samples
        .iter()
        .filter(|s| s.name == "portmon_payload_packets_total")
        .map(|s| {
            let port: u16 = s.label("port").parse().expect("a numeric port");
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "small counts"
            )]
            let value = s.value as u64;
            (
                (
                    direction(s.label("direction")),
                    protocol(s.label("protocol")),
                    port,
                    kind(s.label("kind")),
                ),
                value,
            )
        })
        .filter(|((d, l, p, _), _)| ports.contains(&(*d, *l, *p)))
        .collect()
}

/// What the capture saw on `ports`: every data-carrying frame classified on the host.
fn captured(frames: &[Captured], ports: &[(Direction, L4, u16)]) -> Counts {
    let mut counts = Counts::new();
    for frame in frames {
        let direction = match frame.crossing {
            Crossing::PeerSent => Direction::Ingress,
            Crossing::PeerReceived => Direction::Egress,
        };
        let Parsed::Port {
            l4,
            port,
            payload_offset,
            payload_len,
            ..
        } = parse(frame.frame.as_slice(), frame.frame.len())
        else {
            continue;
        };
        if !ports.contains(&(direction, l4, port)) {
            continue;
        }
        let kind = classify(
            frame.frame.as_slice(),
            usize::from(payload_offset),
            usize::from(payload_len),
        );
        // The kernel counts the signature kinds only.
        if (kind as u32) < PayloadKind::SIGNATURES {
            *counts.entry((direction, l4, port, kind)).or_default() += 1;
        }
    }
    counts
}

/// Waits until the exported counts of `ports` equal the capture's, then asserts it.
fn assert_exact(daemon: &Daemon, frames: &[Captured], ports: &[(Direction, L4, u16)]) -> Counts {
    let expected = captured(frames, ports);
    let deadline = Instant::now() + SETTLE;
    loop {
        let got = exported(&scrape(daemon), ports);
        if got == expected {
            eprintln!("payload counts on {ports:?}, capture = portmon: {expected:?}");
            return expected;
        }
        assert!(
            Instant::now() < deadline,
            "payload counts on {ports:?}: expected (capture) {expected:?}, portmon exported \
             {got:?}\nlog:\n{}",
            daemon.log()
        );
        thread::sleep(POLL);
    }
}

/// Waits until a sample named `name` with every label of `labels` exists; returns it.
fn wait_for_sample(daemon: &Daemon, name: &str, labels: &[(&str, &str)]) -> Sample {
    let deadline = Instant::now() + SETTLE;
    loop {
        let found = scrape(daemon)
            .into_iter()
            .find(|s| s.name == name && labels.iter().all(|(key, value)| s.label(key) == *value));
        if let Some(sample) = found {
            return sample;
        }
        assert!(
            Instant::now() < deadline,
            "expected a {name} sample with {labels:?} within {SETTLE:?}\nlog:\n{}",
            daemon.log()
        );
        thread::sleep(POLL);
    }
}

fn finish(capture: portmon_tests::netns::Capture) -> Vec<Captured> {
    assert!(
        capture.wait_quiet(QUIET, SETTLE),
        "the link never went quiet"
    );
    capture.finish().expect("the capture is complete")
}

fn run_ok(what: &str, command: &mut Command) -> String {
    let output = run_command(command, CLIENT_LIMIT).unwrap_or_else(|e| panic!("{what}: {e:#}"));
    assert!(
        output.status.success(),
        "{what}: expected success, got {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Waits until something accepts TCP connections on `addr` (from the host).
fn wait_listening(addr: SocketAddr, server: &mut Process) {
    let deadline = Instant::now() + SETTLE;
    while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
        server.assert_running();
        assert!(
            Instant::now() < deadline,
            "{} did not listen on {addr} within {SETTLE:?}",
            server.name
        );
        thread::sleep(POLL);
    }
}

#[test]
fn tls_handshakes_on_an_unusual_port_are_counted_once_the_port_is_promoted() {
    let topo = Topology::new(Stack::Ipv4).expect("the topology is set up (run as root)");
    let scratch = Scratch::new();
    let (key, cert) = (
        scratch.path().join("key.pem"),
        scratch.path().join("cert.pem"),
    );
    run_ok(
        "openssl req (a self-signed certificate)",
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=portmon-test", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    let server_addr = SocketAddr::from((topo.peer_v4(), TLS_PORT));
    let daemon = start_portmon(&topo);
    let mut server = Process::spawn(
        "openssl s_server",
        Command::new("ip")
            .args(["netns", "exec", topo.ns_name(), "openssl", "s_server"])
            .args(["-quiet", "-accept", &server_addr.to_string(), "-cert"])
            .arg(&cert)
            .arg("-key")
            .arg(&key),
    );
    // The probe's SYN promotes 40443 in the egress lane, which tracks its payloads.
    wait_listening(server_addr, &mut server);
    let port = TLS_PORT.to_string();
    wait_for_sample(
        &daemon,
        "portmon_packets_total",
        &[
            ("direction", "egress"),
            ("protocol", "tcp"),
            ("port", &port),
        ],
    );

    let capture = topo.capture().expect("the peer end is captured");
    for _ in 0..3 {
        run_ok(
            "openssl s_client",
            Command::new("openssl")
                .args(["s_client", "-brief", "-connect", &server_addr.to_string()])
                .stdin(Stdio::null()),
        );
    }
    server.assert_running();
    let frames = finish(capture);
    let counts = assert_exact(&daemon, &frames, &[(Direction::Egress, L4::Tcp, TLS_PORT)]);
    let handshakes = counts
        .get(&(Direction::Egress, L4::Tcp, TLS_PORT, PayloadKind::Tls))
        .copied()
        .unwrap_or_default();
    assert!(
        handshakes >= 3,
        "expected a TLS record header per handshake (3), the capture saw {handshakes}: {counts:?}"
    );
    let samples = scrape(&daemon);
    let tls = samples
        .iter()
        .find(|s| {
            s.name == "portmon_payload_packets_total"
                && s.label("port") == port
                && s.label("kind") == "tls"
        })
        .expect("the TLS series");
    assert_eq!(
        tls.label("security"),
        "secure",
        "TLS proves the payload secure: {tls:?}"
    );
    assert!(
        !samples
            .iter()
            .any(|s| s.name == "portmon_security_mismatch_total" && s.label("port") == port),
        "an unknown port has no policy to contradict"
    );
}

/// Serves `requests` HTTP/1.1 requests on `listener` (in the peer), then returns.
fn serve_http(listener: &TcpListener, requests: usize) {
    listener
        .set_nonblocking(true)
        .expect("a listener can be non-blocking");
    let deadline = Instant::now() + CLIENT_LIMIT;
    let mut served = 0;
    while served < requests && Instant::now() < deadline {
        let Ok((mut stream, _)) = listener.accept() else {
            thread::sleep(Duration::from_millis(5));
            continue;
        };
        stream.set_nonblocking(false).expect("a stream can block");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("a read timeout");
        let mut request = Vec::new();
        let mut buffer = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buffer[..n]),
            }
        }
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n");
        served += 1;
    }
}

#[test]
fn plaintext_http_on_443_is_a_mismatch_and_fires_the_detector() {
    let topo = Topology::new(Stack::Ipv4).expect("the topology is set up (run as root)");
    let daemon = start_portmon(&topo);
    let server_addr = SocketAddr::from((topo.peer_v4(), 443));
    let listener = topo
        .in_peer(|| TcpListener::bind(server_addr))
        .expect("in the peer")
        .expect("443 is free in the peer's namespace");
    let requests = 3;
    let capture = topo.capture().expect("the peer end is captured");
    let server = thread::spawn(move || serve_http(&listener, requests));
    let url = format!("http://{server_addr}/");
    for _ in 0..requests {
        let body = run_ok(
            "curl",
            Command::new("curl").args(["-s", "--noproxy", "*", "--max-time", "20", &url]),
        );
        assert_eq!(body, "ok\n", "the server answered");
    }
    server.join().expect("the HTTP server finished");
    let frames = finish(capture);
    let https = [(Direction::Egress, L4::Tcp, 443)];
    let counts = assert_exact(&daemon, &frames, &https);
    let http = counts
        .get(&(Direction::Egress, L4::Tcp, 443, PayloadKind::Http))
        .copied()
        .unwrap_or_default();
    // At least one request line per request (a retransmitted one is counted again, by the
    // capture and by portmon alike).
    assert!(
        http >= requests as u64,
        "expected an HTTP request line per request ({requests}) in the capture: {counts:?}"
    );
    let mismatch = wait_for_sample(
        &daemon,
        "portmon_security_mismatch_total",
        &[
            ("direction", "egress"),
            ("protocol", "tcp"),
            ("port", "443"),
            ("expected", "secure"),
            ("observed", "http"),
        ],
    );
    #[expect(clippy::cast_precision_loss, reason = "small")]
    let expected = http as f64;
    assert!(
        (mismatch.value - expected).abs() < f64::EPSILON,
        "expected {http} mismatches (every HTTP request on 443), got {mismatch:?}"
    );
    let payload = wait_for_sample(
        &daemon,
        "portmon_payload_packets_total",
        &[("port", "443"), ("kind", "http")],
    );
    assert_eq!(payload.label("security"), "plaintext", "{payload:?}");
    wait_for_sample(
        &daemon,
        "portmon_plaintext_alert",
        &[
            ("direction", "egress"),
            ("protocol", "tcp"),
            ("port", "443"),
            ("reason", "mismatch"),
        ],
    );
    let log = daemon.log();
    assert!(
        log.contains("plaintext alert started: mismatch on https 443/tcp"),
        "expected the detector's start line in the log:\n{log}"
    );
}

#[test]
fn no_payload_turns_classification_off() {
    let topo = Topology::new(Stack::Ipv4).expect("the topology is set up (run as root)");
    let daemon = Daemon::start(&[
        "--iface",
        topo.host_if(),
        "--interval",
        READ_INTERVAL,
        "--no-payload",
    ])
    .unwrap_or_else(|e| panic!("portmon starts: {e:#}"));
    let server_addr = SocketAddr::from((topo.peer_v4(), 443));
    let listener = topo
        .in_peer(|| TcpListener::bind(server_addr))
        .expect("in the peer")
        .expect("443 is free in the peer's namespace");
    let server = thread::spawn(move || serve_http(&listener, 1));
    run_ok(
        "curl",
        Command::new("curl").args([
            "-s",
            "--noproxy",
            "*",
            "--max-time",
            "20",
            &format!("http://{server_addr}/"),
        ]),
    );
    server.join().expect("the HTTP server finished");
    // The packets are counted as always ...
    wait_for_sample(
        &daemon,
        "portmon_packets_total",
        &[
            ("direction", "egress"),
            ("protocol", "tcp"),
            ("port", "443"),
        ],
    );
    // ... and no payload family is exported, nor any mismatch alert.
    let samples = scrape(&daemon);
    let payload: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name.starts_with("portmon_payload")
                || s.name.starts_with("portmon_security_mismatch")
                || s.name == "portmon_port_resolved_security"
                || (s.name == "portmon_plaintext_alert" && s.label("reason") == "mismatch")
        })
        .collect();
    assert!(
        payload.is_empty(),
        "expected no payload series with --no-payload, got {payload:?}"
    );
}

const SNMP_USER: &str = "portmon";
const SNMP_AUTH: &str = "portmon-auth-pass";
const SNMP_PRIV: &str = "portmon-priv-pass";
/// sysDescr.0.
const SYS_DESCR: &str = "1.3.6.1.2.1.1.1.0";

/// `snmpget` (or `snmptrap`) of `version` with its security arguments.
fn snmp_command(program: &str, version: &str) -> Command {
    let mut command = Command::new(program);
    // No MIB files are installed: numeric OIDs only, and no complaint about missing MIBs.
    command
        .env("MIBS", "")
        .args(["-m", "", "-On", "-r", "1", "-t", "2"]);
    match version {
        "3" => command.args([
            "-v3", "-l", "authPriv", "-u", SNMP_USER, "-a", "SHA", "-A", SNMP_AUTH, "-x", "AES",
            "-X", SNMP_PRIV,
        ]),
        "1" | "2c" => command.args(["-v", version, "-c", "public"]),
        other => panic!("no SNMP version {other}"),
    };
    command
}

fn resolved_security(daemon: &Daemon, port: &str, security: &str) {
    wait_for_sample(
        daemon,
        "portmon_port_resolved_security",
        &[
            ("protocol", "udp"),
            ("port", port),
            ("policy", "ambiguous"),
            ("security", security),
        ],
    );
}

/// `snmpd` in the peer on 161/udp: v1/v2c community `public`, and an SNMPv3 authPriv user.
fn start_snmpd(topo: &Topology, scratch: &Scratch) -> Process {
    let config = scratch.path().join("snmpd.conf");
    fs::write(
        &config,
        format!(
            "rocommunity public default\n\
             createUser {SNMP_USER} SHA {SNMP_AUTH} AES {SNMP_PRIV}\n\
             rouser {SNMP_USER} priv\n"
        ),
    )
    .expect("the snmpd config is written");
    let agent = format!("udp:{}:161", topo.peer_v4());
    Process::spawn(
        "snmpd",
        Command::new("ip")
            .args(["netns", "exec", topo.ns_name(), "snmpd", "-f", "-C", "-c"])
            .arg(&config)
            .arg("-p")
            .arg(scratch.path().join("snmpd.pid"))
            .arg(&agent)
            // Its user store (createUser) goes here, not to /var/lib/snmp.
            .env("SNMP_PERSISTENT_DIR", scratch.path())
            .env("MIBS", ""),
    )
}

/// SNMPv3 GETs until `snmpd` answers one (it takes a moment to start).
fn get_v3_until_answered(target: &str, snmpd: &mut Process) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let output = run_command(
            snmp_command("snmpget", "3").args([target, SYS_DESCR]),
            CLIENT_LIMIT,
        )
        .expect("snmpget runs");
        if output.status.success() {
            return;
        }
        snmpd.assert_running();
        assert!(
            Instant::now() < deadline,
            "snmpd did not answer SNMPv3 within {SETTLE:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        thread::sleep(POLL);
    }
}

/// An SNMPv3 authPriv trap from the peer to `host` (no one listens there: the host answers
/// with an ICMP port unreachable, after XDP counted the trap).
fn trap_v3_from_peer(topo: &Topology, host: &str) {
    let output = topo
        .exec_in_peer(
            "snmptrap",
            &[
                "-m",
                "",
                "-v3",
                "-e",
                "0x8000000001020304",
                "-l",
                "authPriv",
                "-u",
                SNMP_USER,
                "-a",
                "SHA",
                "-A",
                SNMP_AUTH,
                "-x",
                "AES",
                "-X",
                SNMP_PRIV,
                host,
                "",
                "1.3.6.1.6.3.1.1.5.1",
            ],
        )
        .expect("snmptrap runs in the peer");
    assert!(
        output.status.success(),
        "snmptrap -v3: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn snmp_versions_resolve_161_and_162() {
    let topo = Topology::new(Stack::Ipv4).expect("the topology is set up (run as root)");
    let scratch = Scratch::new();
    let daemon = start_portmon(&topo);
    let capture = topo.capture().expect("the peer end is captured");
    let mut snmpd = start_snmpd(&topo, &scratch);
    let target = topo.peer_v4().to_string();
    get_v3_until_answered(&target, &mut snmpd);
    resolved_security(&daemon, "161", "secure");
    for version in ["2c", "1"] {
        run_ok(
            &format!("snmpget -v {version}"),
            snmp_command("snmpget", version).args([&target, SYS_DESCR]),
        );
    }
    resolved_security(&daemon, "161", "plaintext");
    let host = format!("{}:162", topo.host_v4());
    for _ in 0..2 {
        trap_v3_from_peer(&topo, &host);
    }
    resolved_security(&daemon, "162", "secure");
    snmpd.assert_running();
    let frames = finish(capture);
    let ports = [
        (Direction::Egress, L4::Udp, 161),
        (Direction::Ingress, L4::Udp, 162),
    ];
    let counts = assert_exact(&daemon, &frames, &ports);
    for (what, key) in [
        (
            "v3 requests to 161",
            (Direction::Egress, L4::Udp, 161, PayloadKind::SnmpV3),
        ),
        (
            "a v2c request to 161",
            (Direction::Egress, L4::Udp, 161, PayloadKind::SnmpV2c),
        ),
        (
            "a v1 request to 161",
            (Direction::Egress, L4::Udp, 161, PayloadKind::SnmpV1),
        ),
        (
            "v3 traps to 162",
            (Direction::Ingress, L4::Udp, 162, PayloadKind::SnmpV3),
        ),
    ] {
        assert!(
            counts.get(&key).copied().unwrap_or_default() > 0,
            "expected {what} in the capture: {counts:?}"
        );
    }
    let samples = scrape(&daemon);
    for (kind, security) in [
        ("snmp_v1", "plaintext"),
        ("snmp_v2c", "plaintext"),
        ("snmp_v3", "secure"),
    ] {
        let sample = samples
            .iter()
            .find(|s| {
                s.name == "portmon_payload_packets_total"
                    && s.label("port") == "161"
                    && s.label("kind") == kind
            })
            .unwrap_or_else(|| panic!("expected a {kind} series on 161"));
        assert_eq!(sample.label("security"), security, "{sample:?}");
    }
    assert!(
        !samples
            .iter()
            .any(|s| s.name == "portmon_security_mismatch_total"
                && (s.label("port") == "161" || s.label("port") == "162")),
        "an ambiguous port is resolved, never mismatched"
    );
}
