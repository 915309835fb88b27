//! The metrics endpoint is safe to expose: the real `portmon run` on a veth, with an
//! exporter-toolkit web config, driven by real clients (curl, `openssl s_client`, raw
//! sockets). Basic auth (401 with the challenge, 200 with the right password), TLS 1.2 and
//! 1.3 accepted and TLS 1.1 refused by the server, mTLS, the cap on requests in flight
//! (503, counted), 1,000 concurrent scrapes with no file descriptor left behind, and
//! malformed or slow requests that fail alone while /metrics keeps answering. Config errors
//! name the key, the file and the fix.
//!
//! Certificates are made per test with the `openssl` CLI (Debian package openssl).

#![expect(clippy::expect_used, reason = "tests panic with what they expected")]

use std::{
    fs,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use portmon_tests::{
    daemon::{Daemon, free_port, http_get, parse_exposition, run_command, run_portmon},
    netns::{Stack, Topology},
};

/// Any client command finishes well within this.
const LIMIT: Duration = Duration::from_secs(30);
/// The server must close a connection it gave up on within this (its timeouts are 10 s).
const CLOSE_LIMIT: Duration = Duration::from_secs(40);

/// A directory of its own per test, removed on drop.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "portmon-web-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).expect("creating a scratch directory");
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn path_str(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn write(&self, name: &str, text: &str) -> String {
        fs::write(self.path(name), text).expect("writing a scratch file");
        self.path_str(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = run_command(Command::new("openssl").current_dir(dir).args(args), LIMIT)
        .expect("openssl runs (Debian package openssl)");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA (`<ca>.pem`, `<ca>.key`).
fn make_ca(scratch: &Scratch, ca: &str) {
    openssl(
        &scratch.dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
        ],
    );
}

/// A leaf (`<name>.pem`, `<name>.key`) signed by `ca`, for a server (SAN 127.0.0.1) or a client.
fn make_leaf(scratch: &Scratch, ca: &str, name: &str, server: bool) {
    let extensions = if server {
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
    } else {
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
    };
    let ext = scratch.write(&format!("{name}.ext"), extensions);
    openssl(
        &scratch.dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    openssl(
        &scratch.dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// ca, server (signed by ca), client (signed by ca), other-ca and stranger (signed by it).
fn make_pki(scratch: &Scratch) {
    make_ca(scratch, "ca");
    make_leaf(scratch, "ca", "server", true);
    make_leaf(scratch, "ca", "client", false);
    make_ca(scratch, "other-ca");
    make_leaf(scratch, "other-ca", "stranger", false);
}

/// What curl got: status (0 when no HTTP answer), headers, body, stderr.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
    stderr: String,
}

fn curl(args: &[&str]) -> Answer {
    let output = run_command(
        Command::new("curl")
            .args(["-sS", "-i", "--max-time", "10", "-w", "\n%{http_code}"])
            .args(args),
        LIMIT,
    )
    .expect("curl runs (Debian package curl)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (response, code) = stdout.rsplit_once('\n').unwrap_or(("", stdout.as_str()));
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    Answer {
        status: code.trim().parse().unwrap_or(0),
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Starts `portmon run` on the topology's host end with a web config and more flags;
/// ready when `probe` (curl arguments, the URL last) gets any HTTP answer.
fn start(topology: &Topology, config: &str, flags: &[&str], probe: &[String]) -> Daemon {
    let mut args = vec!["--iface", topology.host_if(), "--web.config.file", config];
    args.extend_from_slice(flags);
    let probe = probe.to_vec();
    Daemon::start_until(&args, &[("RUST_LOG", "info")], move |addr| {
        let mut probe = probe.clone();
        if let Some(url) = probe.last_mut() {
            *url = url.replace("ADDR", &addr.to_string());
        }
        let probe: Vec<&str> = probe.iter().map(String::as_str).collect();
        curl(&probe).status != 0
    })
    .expect("portmon run starts (run as root)")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|&arg| arg.to_owned()).collect()
}

fn topology() -> Topology {
    Topology::new(Stack::Ipv4).expect("the veth topology is set up (run as root)")
}

/// A sample's value in an exposition, 0 when absent.
fn value(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    parse_exposition(exposition)
        .expect("the exposition parses")
        .iter()
        .find(|sample| {
            sample.name == name
                && labels
                    .iter()
                    .all(|(key, value)| sample.label(key) == *value)
        })
        .map_or(0.0, |sample| sample.value)
}

#[test]
fn basic_auth_answers_401_with_the_challenge_and_200_with_the_password() {
    let scratch = Scratch::new("auth");
    let hash = bcrypt::hash("s3cret", 4).expect("bcrypt hashes");
    let config = scratch.write(
        "web.yml",
        &format!(
            "basic_auth_users:\n  alice: \"{hash}\"\n\
             http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
        ),
    );
    let topology = topology();
    let daemon = start(&topology, &config, &[], &strings(&["http://ADDR/healthz"]));
    let url = format!("http://{}/metrics", daemon.addr());
    // (case, curl credentials, expected status)
    let cases: &[(&str, &[&str], u16)] = &[
        ("no credentials", &[], 401),
        ("wrong password", &["-u", "alice:wrong"], 401),
        ("unknown user", &["-u", "bob:s3cret"], 401),
        ("right password", &["-u", "alice:s3cret"], 200),
        (
            "right password again (cached)",
            &["-u", "alice:s3cret"],
            200,
        ),
    ];
    let mut refused = 0;
    for (case, credentials, expected) in cases {
        let mut args = credentials.to_vec();
        args.push(&url);
        let answer = curl(&args);
        assert_eq!(answer.status, *expected, "{case}: {answer:?}");
        assert!(
            answer.head.contains("x-content-type-options: nosniff"),
            "{case}: the configured header on every answer: {}",
            answer.head
        );
        if *expected == 401 {
            refused += 1;
            assert!(
                answer
                    .head
                    .contains("www-authenticate: basic realm=\"portmon\""),
                "{case}: the challenge: {}",
                answer.head
            );
        } else {
            assert!(
                answer.body.contains("portmon_build_info"),
                "{case}: the metrics: {}",
                answer.body
            );
        }
    }
    let answer = curl(&["-u", "alice:s3cret", &url]);
    let counted = value(
        &answer.body,
        "portmon_http_requests_rejected_total",
        &[("reason", "unauthorized")],
    );
    // The readiness probes were refused too; every 401 of the table is counted.
    assert!(
        counted >= f64::from(refused),
        "expected at least {refused} unauthorized requests counted, got {counted}"
    );
    let health = curl(&[format!("http://{}/healthz", daemon.addr()).as_str()]);
    assert_eq!(health.status, 401, "every path is protected: {health:?}");
}

fn tls_config(scratch: &Scratch, extra: &str) -> String {
    scratch.write(
        "web.yml",
        &format!("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n{extra}"),
    )
}

fn s_client(addr: SocketAddr, version: &str) -> (bool, String) {
    let output = run_command(
        Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr.to_string(),
                version,
                "-cipher",
                "DEFAULT@SECLEVEL=0",
            ])
            // The system's openssl.cnf may forbid TLS 1.1 on the client side; without it
            // the client really offers TLS 1.1, so a refusal is the server's.
            .env("OPENSSL_CONF", "/dev/null"),
        LIMIT,
    )
    .expect("openssl s_client runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn tls_1_2_and_1_3_are_served_and_the_server_refuses_tls_1_1() {
    let scratch = Scratch::new("tls");
    make_pki(&scratch);
    let config = tls_config(&scratch, "");
    let ca = scratch.path_str("ca.pem");
    let topology = topology();
    let daemon = start(
        &topology,
        &config,
        &[],
        &strings(&["--cacert", &ca, "https://ADDR/healthz"]),
    );
    let url = format!("https://{}/metrics", daemon.addr());
    // (case, curl version flags)
    let cases: &[(&str, &[&str])] = &[
        ("TLS 1.2", &["--tlsv1.2", "--tls-max", "1.2"]),
        ("TLS 1.3", &["--tlsv1.3"]),
    ];
    for (case, flags) in cases {
        let mut args = flags.to_vec();
        args.extend(["--cacert", ca.as_str(), url.as_str()]);
        let answer = curl(&args);
        assert_eq!(answer.status, 200, "{case}: {answer:?}");
    }
    let plain = curl(&[format!("http://{}/metrics", daemon.addr()).as_str()]);
    assert_ne!(plain.status, 200, "plain HTTP on the TLS port: {plain:?}");

    let (ok, text) = s_client(daemon.addr(), "-tls1_2");
    assert!(
        ok && text.contains("TLSv1.2"),
        "the same client with -tls1_2 completes a TLS 1.2 handshake:\n{text}"
    );
    let (ok, text) = s_client(daemon.addr(), "-tls1_1");
    assert!(!ok, "a TLS 1.1 handshake must fail:\n{text}");
    // OpenSSL prints "SSL alert number N" for an alert it received: the server answered the
    // TLS 1.1 ClientHello with an alert (rustls sends handshake_failure, 40), and nothing else.
    assert!(
        text.contains("SSL alert number 40") || text.contains("SSL alert number 70"),
        "the refusal is the server's alert (handshake_failure or protocol_version):\n{text}"
    );
    let metrics = curl(&["--cacert", &ca, &url]);
    assert!(
        value(
            &metrics.body,
            "portmon_http_connection_failures_total",
            &[("stage", "tls_handshake")]
        ) >= 1.0,
        "the refused handshake is counted:\n{}",
        metrics.body
    );

    // Half a handshake (a record header, then nothing) costs one connection, closed by the
    // server's handshake timeout, while the endpoint keeps answering.
    let mut half = TcpStream::connect(daemon.addr()).expect("connecting");
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .expect("sending half a record header");
    for round in 0..3 {
        let answer = curl(&["--cacert", &ca, &url]);
        assert_eq!(
            answer.status, 200,
            "scrape {round} during a half handshake: {answer:?}"
        );
    }
    assert_closed_by_server(&mut half, "half TLS handshake");
    let metrics = curl(&["--cacert", &ca, &url]);
    assert!(
        value(
            &metrics.body,
            "portmon_http_connection_failures_total",
            &[("stage", "tls_timeout")]
        ) >= 1.0,
        "the stalled handshake is counted:\n{}",
        metrics.body
    );
}

/// Reads until the server closes; fails when it has not within [`CLOSE_LIMIT`].
fn assert_closed_by_server(stream: &mut TcpStream, case: &str) -> Vec<u8> {
    stream
        .set_read_timeout(Some(CLOSE_LIMIT))
        .expect("setting a read timeout");
    let mut received = Vec::new();
    match stream.read_to_end(&mut received) {
        Ok(_) => received,
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => received,
        Err(error) => panic!(
            "{case}: expected the server to close the connection within {CLOSE_LIMIT:?}, got {error}"
        ),
    }
}

#[test]
fn mtls_accepts_only_client_certificates_from_the_configured_ca() {
    let scratch = Scratch::new("mtls");
    make_pki(&scratch);
    let config = tls_config(
        &scratch,
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
    );
    let ca = scratch.path_str("ca.pem");
    let (client, client_key) = (
        scratch.path_str("client.pem"),
        scratch.path_str("client.key"),
    );
    let (stranger, stranger_key) = (
        scratch.path_str("stranger.pem"),
        scratch.path_str("stranger.key"),
    );
    let topology = topology();
    let daemon = start(
        &topology,
        &config,
        &[],
        &strings(&[
            "--cacert",
            &ca,
            "--cert",
            &client,
            "--key",
            &client_key,
            "https://ADDR/healthz",
        ]),
    );
    let url = format!("https://{}/metrics", daemon.addr());
    // (case, client certificate flags, accepted)
    let cases: &[(&str, &[&str], bool)] = &[
        ("no client certificate", &[], false),
        (
            "a certificate from another CA",
            &["--cert", &stranger, "--key", &stranger_key],
            false,
        ),
        (
            "a certificate from the configured CA",
            &["--cert", &client, "--key", &client_key],
            true,
        ),
    ];
    for version in ["--tlsv1.2", "--tlsv1.3"] {
        for (case, flags, accepted) in cases {
            let mut args = vec![version, "--cacert", &ca];
            if version == "--tlsv1.2" {
                args.extend(["--tls-max", "1.2"]);
            }
            args.extend_from_slice(flags);
            args.push(&url);
            let answer = curl(&args);
            if *accepted {
                assert_eq!(answer.status, 200, "{case} ({version}): {answer:?}");
            } else {
                assert_eq!(
                    answer.status, 0,
                    "{case} ({version}): expected the handshake refused, got status {} \
                     (curl: {})",
                    answer.status, answer.stderr
                );
            }
        }
    }
}

/// Starts a request whose body never comes: it stays in flight until the body arrives or
/// the server's body timeout (10 s) ends it.
fn held_request(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connecting");
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
    )
    .expect("sending the head of a held request");
    stream
}

#[test]
fn requests_over_the_in_flight_cap_get_503_and_are_counted() {
    const CAP: u32 = 3;
    let scratch = Scratch::new("inflight");
    let config = scratch.write("web.yml", "");
    let topology = topology();
    let cap = CAP.to_string();
    let daemon = start(
        &topology,
        &config,
        &["--web.max-requests", &cap],
        &strings(&["http://ADDR/healthz"]),
    );
    let addr = daemon.addr();
    let mut held: Vec<TcpStream> = (0..CAP - 1).map(|_| held_request(addr)).collect();
    // Wait (bounded) until the server has them in flight: a scrape sees them plus itself.
    let deadline = Instant::now() + LIMIT;
    loop {
        let response = http_get(addr, "/metrics", None).expect("scraping");
        assert_eq!(response.status, 200, "under the cap: {response:?}");
        let in_flight = value(&response.body, "portmon_http_requests_in_flight", &[]);
        if (in_flight - f64::from(CAP)).abs() < f64::EPSILON {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expected {CAP} in flight, last saw {in_flight}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    held.push(held_request(addr));
    let mut refused = 0_u32;
    let deadline = Instant::now() + LIMIT;
    loop {
        let response = http_get(addr, "/metrics", None).expect("probing");
        if response.status == 503 {
            refused += 1;
            assert!(
                response.headers.contains_key("retry-after"),
                "503 says when to retry: {response:?}"
            );
            break;
        }
        assert_eq!(response.status, 200, "only 200 or 503: {response:?}");
        assert!(
            Instant::now() < deadline,
            "no 503 with {CAP} held in flight"
        );
        thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..4 {
        let response = http_get(addr, "/healthz", None).expect("probing");
        assert_eq!(
            response.status, 503,
            "every request over the cap is refused: {response:?}"
        );
        refused += 1;
    }
    for (index, mut stream) in held.into_iter().enumerate() {
        stream.write_all(b"hello").expect("sending the body");
        let answer = assert_closed_by_server(&mut stream, "held request");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "held request {index} is served once its body came: {answer}"
        );
    }
    let response = http_get(addr, "/metrics", None).expect("scraping");
    assert_eq!(response.status, 200, "served again below the cap");
    let counted = value(
        &response.body,
        "portmon_http_requests_rejected_total",
        &[("reason", "max_requests")],
    );
    assert!(
        (counted - f64::from(refused)).abs() < f64::EPSILON,
        "expected {refused} requests counted as max_requests, got {counted}"
    );
}

fn open_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("reading the daemon's fd directory")
        .count()
}

#[test]
fn a_thousand_concurrent_scrapes_leave_no_file_descriptor_behind() {
    const SCRAPES: usize = 1_000;
    // This process holds the client ends: lift its own soft limit as the daemon does.
    portmon::web::rlimit::raise_nofile().expect("raising this test's open-file limit");
    let scratch = Scratch::new("fds");
    let config = scratch.write("web.yml", "");
    let topology = topology();
    let daemon = start(
        &topology,
        &config,
        &["--web.max-requests", "0"],
        &strings(&["http://ADDR/healthz"]),
    );
    let addr = daemon.addr();
    let pid = daemon.pid().expect("the daemon runs");
    daemon.scrape(None).expect("a first scrape");
    // The first scrape's connection may still be closing: the baseline is the lowest count
    // seen over a short while (bounded), and a leak shows as a count above it afterwards.
    let mut baseline = open_fds(pid);
    for _ in 0..20 {
        thread::sleep(Duration::from_millis(25));
        baseline = baseline.min(open_fds(pid));
    }
    // All connections first, so that the daemon holds them all at once (each waits for its
    // request within the 10 s header timeout), then every request, then every answer.
    let mut streams: Vec<TcpStream> = (0..SCRAPES)
        .map(|index| {
            TcpStream::connect_timeout(&addr, LIMIT)
                .unwrap_or_else(|error| panic!("connection {index}: {error}"))
        })
        .collect();
    let deadline = Instant::now() + LIMIT;
    let mut peak = open_fds(pid);
    while peak < baseline + SCRAPES && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
        peak = peak.max(open_fds(pid));
    }
    assert!(
        peak >= baseline + SCRAPES,
        "expected the daemon to hold all {SCRAPES} connections at once: {peak} fds, baseline {baseline}"
    );
    for (index, stream) in streams.iter_mut().enumerate() {
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap_or_else(|error| panic!("request {index}: {error}"));
    }
    for (index, stream) in streams.iter_mut().enumerate() {
        stream
            .set_read_timeout(Some(Duration::from_mins(2)))
            .expect("setting a read timeout");
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .unwrap_or_else(|error| panic!("scrape {index}: {error}"));
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "scrape {index}: {}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
        );
    }
    drop(streams);
    // The server closes its ends as it finishes each answer; wait (bounded) for the last.
    let deadline = Instant::now() + LIMIT;
    let mut now = open_fds(pid);
    while now > baseline && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        now = open_fds(pid);
    }
    println!("open fds: {baseline} before, {peak} with {SCRAPES} scrapes open, {now} after");
    assert!(
        now <= baseline,
        "expected the daemon back at {baseline} open fds after {SCRAPES} scrapes, got {now}"
    );
    daemon.scrape(None).expect("still scraping afterwards");
}

#[test]
fn malformed_and_slow_requests_fail_alone() {
    let scratch = Scratch::new("malformed");
    let config = scratch.write("web.yml", "");
    let topology = topology();
    let daemon = start(&topology, &config, &[], &strings(&["http://ADDR/healthz"]));
    let addr = daemon.addr();
    let huge = vec![b'A'; 1024 * 1024];
    // (case, bytes sent, whether the server surely answers with an HTTP error before
    // closing; for the huge line the 431 may be lost to the reset of the unread rest)
    let cases: &[(&str, &[u8], bool)] = &[
        (
            "garbage bytes",
            b"\x16\x03\x01 not http at all\r\n\r\n",
            true,
        ),
        (
            "a header never finished",
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ",
            false,
        ),
        ("a request line without end", &huge, false),
        ("nothing at all", b"", false),
    ];
    let mut streams: Vec<(&str, TcpStream, bool)> = cases
        .iter()
        .map(|(case, bytes, answers)| {
            let mut stream = TcpStream::connect(addr).expect("connecting");
            // A huge request may be cut short by the server's refusal: that is its answer.
            let _ = stream.write_all(bytes);
            (*case, stream, *answers)
        })
        .collect();
    for round in 0..3 {
        let response = daemon
            .scrape(None)
            .unwrap_or_else(|error| panic!("scrape {round} among bad clients: {error:#}"));
        assert!(
            response.body.contains("portmon_build_info"),
            "scrape {round}: the metrics"
        );
    }
    for (case, stream, answers) in &mut streams {
        let received = assert_closed_by_server(stream, case);
        let text = String::from_utf8_lossy(&received);
        if *answers {
            assert!(
                text.starts_with("HTTP/1.1 4"),
                "{case}: expected a 4xx before the close, got {text:?}"
            );
        } else {
            assert!(
                !text.contains(" 200 "),
                "{case}: nothing served, got {text:?}"
            );
        }
    }
    let response = daemon.scrape(None).expect("scraping after the bad clients");
    assert!(
        value(
            &response.body,
            "portmon_http_connection_failures_total",
            &[("stage", "http")]
        ) >= 2.0,
        "the failed connections are counted:\n{}",
        response.body
    );
}

#[test]
fn a_bad_web_config_stops_portmon_run_naming_the_key_and_the_fix() {
    let scratch = Scratch::new("config");
    // (case, web config text, words the message must contain)
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "a misspelt key",
            "tls_server_confg:\n  cert_file: server.pem\n",
            &[
                "web config file",
                "unknown field `tls_server_confg`",
                "tls_server_config",
            ],
        ),
        (
            "a missing certificate file",
            "tls_server_config:\n  cert_file: missing.pem\n  key_file: missing.key\n",
            &[
                "`tls_server_config.cert_file`",
                "missing.pem",
                "No such file",
                "--web.config.file",
            ],
        ),
        (
            "TLS 1.1 as the minimum",
            "tls_server_config:\n  cert_file: s.pem\n  key_file: s.key\n  min_version: TLS11\n",
            &["`tls_server_config.min_version`", "use TLS12 or TLS13"],
        ),
        (
            "HTTP/2 asked for",
            "http_server_config:\n  http2: true\n",
            &["`http_server_config.http2`", "HTTP/1.1 only"],
        ),
    ];
    for (index, (case, text, needles)) in cases.iter().enumerate() {
        let config = scratch.write(&format!("web-{index}.yml"), text);
        let address = format!("127.0.0.1:{}", free_port());
        let output = run_portmon(
            &["run", "--listen", &address, "--web.config.file", &config],
            &[],
            LIMIT,
        )
        .unwrap_or_else(|error| panic!("{case}: {error:#}"));
        let message = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{case}: exit code; stderr:\n{message}"
        );
        for needle in *needles {
            assert!(
                message.contains(needle),
                "{case}: expected {needle:?} in:\n{message}"
            );
        }
        assert!(
            message.contains(&config),
            "{case}: the file is named in:\n{message}"
        );
    }
}
