//! Running the real `portmon` binary in tests: building it, starting `portmon run` on a
//! free loopback port, scraping it over HTTP, parsing the exposition, stopping it.
//!
//! # Which binary
//! Integration tests of this crate cannot use `CARGO_BIN_EXE_portmon` (that is only set for
//! the binary's own package). [`portmon_binary`] therefore runs
//! `cargo build -p monitor --bin portmon` once per test process, with the cargo that built
//! the tests (`env!("CARGO")`), into the target directory and profile the running test
//! executable lives in (`<target>/<profile>/deps/<test>`). Cargo has released its build
//! lock by the time tests run, and an up-to-date binary costs one no-op build. Set
//! `PORTMON_BIN` to test a binary built elsewhere.

use std::{
    collections::BTreeMap,
    fs,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};

use crate::pin::PinRoot;

/// How long a started daemon may take to answer `/healthz`.
const START_LIMIT: Duration = Duration::from_mins(1);
/// How long a daemon may take to exit after SIGTERM before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(20);
/// How long one HTTP exchange with the daemon may take.
const HTTP_LIMIT: Duration = Duration::from_secs(10);

/// The `portmon` binary, built once per test process (see the module documentation).
///
/// # Panics
/// When the build fails: every test that needs the binary would fail anyway.
pub fn portmon_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| match build_portmon() {
        Ok(path) => path,
        Err(error) => panic!("building the portmon binary: {error:#}"),
    })
}

fn build_portmon() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("PORTMON_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("locating the test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("{} is not in <target>/<profile>/deps", exe.display()))?;
    let target_dir = profile_dir
        .parent()
        .ok_or_else(|| anyhow!("{} has no target directory", profile_dir.display()))?;
    let profile = profile_dir
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| anyhow!("unnamed profile directory {}", profile_dir.display()))?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("the tests crate has no parent directory"))?;
    let mut command = Command::new(env!("CARGO"));
    command
        .current_dir(workspace)
        .env("CARGO_TARGET_DIR", target_dir)
        .args(["build", "--quiet", "-p", "monitor", "--bin", "portmon"]);
    match profile {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    let output = command.output().context("running cargo build")?;
    ensure!(
        output.status.success(),
        "cargo build -p monitor --bin portmon failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let binary = profile_dir.join("portmon");
    ensure!(binary.exists(), "{} was not built", binary.display());
    Ok(binary)
}

/// A loopback port nothing listens on right now.
///
/// # Panics
/// When no port can be bound on 127.0.0.1.
#[must_use]
pub fn free_port() -> u16 {
    match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|listener| listener.local_addr()) {
        Ok(addr) => addr.port(),
        Err(error) => panic!("binding a free loopback port: {error}"),
    }
}

/// Runs `portmon args...` to completion (bounded by `limit`) and returns its output.
///
/// # Errors
/// When it cannot start or does not finish in time (it is killed then).
pub fn run_portmon(args: &[&str], envs: &[(&str, &str)], limit: Duration) -> Result<Output> {
    run_command(
        Command::new(portmon_binary())
            .args(args)
            .envs(envs.iter().copied()),
        limit,
    )
}

/// Runs `command` with its output captured, killing it after `limit`.
///
/// # Errors
/// When it cannot start or does not finish in time.
pub fn run_command(command: &mut Command, limit: Duration) -> Result<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let deadline = Instant::now() + limit;
    while child.try_wait()?.is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output()?;
            bail!(
                "{command:?} did not finish within {limit:?}; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(child.wait_with_output()?)
}

/// A running `portmon run`, stopped (SIGTERM, then SIGKILL) on drop.
///
/// Pins: unless the arguments choose (`--pin-dir`, `--no-pin`), the daemon gets a pin root
/// of its own ([`PinRoot`]) and `--cleanup`, so it detaches at exit like an unpinned one,
/// runs in parallel with other tests and leaves nothing in bpffs, even after `kill -9`
/// (the root is removed on drop).
pub struct Daemon {
    child: Option<Child>,
    addr: SocketAddr,
    log: PathBuf,
    /// Dropped after the child is stopped.
    _pins: Option<PinRoot>,
}

impl Daemon {
    /// Starts `portmon run --listen 127.0.0.1:<free port> args...` and waits until it
    /// answers `/healthz`.
    ///
    /// # Errors
    /// When it cannot start, exits, or does not answer in time; the error carries its log.
    pub fn start(args: &[&str]) -> Result<Self> {
        Self::start_with_env(args, &[("RUST_LOG", "info")])
    }

    /// Like [`Daemon::start`], with environment variables (`RUST_LOG`, `PORTMON_*`).
    ///
    /// # Errors
    /// As [`Daemon::start`].
    pub fn start_with_env(args: &[&str], envs: &[(&str, &str)]) -> Result<Self> {
        Self::start_until(args, envs, |addr| {
            http_get(addr, "/healthz", None).is_ok_and(|response| response.status == 200)
        })
    }

    /// Like [`Daemon::start_with_env`], ready when `ready(addr)` says so (for an endpoint
    /// behind TLS or authentication, where a plain `/healthz` cannot tell).
    ///
    /// # Errors
    /// As [`Daemon::start`].
    pub fn start_until(
        args: &[&str],
        envs: &[(&str, &str)],
        ready: impl Fn(SocketAddr) -> bool,
    ) -> Result<Self> {
        let port = free_port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log =
            std::env::temp_dir().join(format!("portmon-daemon-{}-{port}.log", std::process::id()));
        let log_file =
            fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let chooses = |flag: &str| args.iter().any(|arg| arg.starts_with(flag));
        let pins = if chooses("--pin-dir") || chooses("--no-pin") {
            None
        } else {
            Some(PinRoot::new()?)
        };
        let mut pin_args = Vec::new();
        if let Some(pins) = &pins {
            pin_args.extend(["--pin-dir".to_owned(), pins.arg()]);
            if !chooses("--cleanup") {
                pin_args.push("--cleanup".to_owned());
            }
        }
        let child = Command::new(portmon_binary())
            .arg("run")
            .args(["--listen", &addr.to_string()])
            .args(&pin_args)
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("starting portmon run")?;
        let mut daemon = Self {
            child: Some(child),
            addr,
            log,
            _pins: pins,
        };
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if ready(addr) {
                return Ok(daemon);
            }
            if let Some(child) = daemon.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("portmon run exited with {status}; log:\n{}", daemon.log());
            }
            if Instant::now() >= deadline {
                bail!(
                    "portmon run did not answer within {START_LIMIT:?}; log:\n{}",
                    daemon.log()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's process id, while it runs.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The metrics endpoint's address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The daemon's log so far.
    #[must_use]
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /metrics` with an optional `Accept` header.
    ///
    /// # Errors
    /// When the request fails or the status is not 200.
    pub fn scrape(&self, accept: Option<&str>) -> Result<Response> {
        let response = http_get(self.addr, "/metrics", accept)?;
        ensure!(
            response.status == 200,
            "/metrics answered {}",
            response.status
        );
        Ok(response)
    }

    /// Sends `signal` (SIGTERM or SIGINT) and waits for the exit; returns the status and
    /// the whole log.
    ///
    /// # Errors
    /// When the daemon does not exit in time (it is killed then).
    pub fn stop(mut self, signal: nix::sys::signal::Signal) -> Result<(ExitStatus, String)> {
        let status = self.terminate(signal)?;
        Ok((status, self.log()))
    }

    fn terminate(&mut self, signal: nix::sys::signal::Signal) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("already stopped");
        };
        let pid =
            nix::unistd::Pid::from_raw(i32::try_from(child.id()).context("the pid fits in i32")?);
        let _ = nix::sys::signal::kill(pid, signal);
        let deadline = Instant::now() + STOP_LIMIT;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("portmon did not exit within {STOP_LIMIT:?} of SIGTERM; killed it");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.terminate(nix::sys::signal::Signal::SIGTERM);
        }
        let _ = fs::remove_file(&self.log);
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: BTreeMap<String, String>,
    /// Body.
    pub body: String,
}

/// `GET path` on `addr` over HTTP/1.1 with `Connection: close`.
///
/// # Errors
/// When the connection or the exchange fails, or the answer is not HTTP.
pub fn http_get(addr: SocketAddr, path: &str, accept: Option<&str>) -> Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_LIMIT)?;
    stream.set_read_timeout(Some(HTTP_LIMIT))?;
    stream.set_write_timeout(Some(HTTP_LIMIT))?;
    let accept = accept
        .map(|value| format!("Accept: {value}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8(raw).context("the response is not UTF-8")?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers in {text:?}"))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow!("no status line in {head:?}"))?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// One sample of a text exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name as written (`portmon_packets_total`).
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

impl Sample {
    /// A label's value, or "" when absent.
    #[must_use]
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// Parses the samples of a Prometheus text (0.0.4) or OpenMetrics exposition; comments are
/// skipped.
///
/// # Errors
/// On a line that is not `name{labels} value`.
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| parse_sample(line).with_context(|| format!("parsing {line:?}")))
        .collect()
}

fn parse_sample(line: &str) -> Result<Sample> {
    let name_end = line.find(['{', ' ']).ok_or_else(|| anyhow!("no value"))?;
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        let end = loop {
            let (index, c) = chars.next().ok_or_else(|| anyhow!("unclosed labels"))?;
            match c {
                '}' => break index,
                ',' | ' ' => {}
                '=' => {
                    ensure!(
                        chars.next().map(|(_, c)| c) == Some('"'),
                        "no quote after ="
                    );
                    let mut value = String::new();
                    loop {
                        let (_, c) = chars.next().ok_or_else(|| anyhow!("unclosed value"))?;
                        match c {
                            '"' => break,
                            '\\' => match chars.next().map(|(_, c)| c) {
                                Some('n') => value.push('\n'),
                                Some(c) => value.push(c),
                                None => bail!("dangling escape"),
                            },
                            c => value.push(c),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                c => key.push(c),
            }
        };
        rest = &inner[end + 1..];
    }
    let value = rest
        .split_whitespace()
        .next()
        .ok_or_else(|| anyhow!("no value"))?;
    Ok(Sample {
        name,
        labels,
        value: parse_value(value)?,
    })
}

fn parse_value(text: &str) -> Result<f64> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text.parse().with_context(|| format!("value {text:?}")),
    }
}

/// Runs `promtool check metrics` on `exposition`; returns its complaints (empty when clean).
///
/// # Errors
/// When promtool cannot run.
pub fn promtool_check(exposition: &str) -> Result<String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running promtool (Debian package prometheus)")?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("promtool has no stdin"))?
        .write_all(exposition.as_bytes())?;
    let output = child.wait_with_output()?;
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() && complaints.trim().is_empty() {
        Ok(String::new())
    } else {
        Ok(format!("exit {}: {complaints}", output.status))
    }
}

/// XDP program ids attached to `interface` now (empty when none).
///
/// # Errors
/// When the interface list cannot be read or the interface does not exist.
pub fn xdp_programs(interface: &str) -> Result<Vec<u32>> {
    let links = portmon::daemon::netlink::links()?;
    let link = links
        .iter()
        .find(|link| link.name == interface)
        .ok_or_else(|| anyhow!("no interface {interface}"))?;
    Ok(link.xdp.iter().map(|program| program.id).collect())
}

/// tcx egress program ids attached to `interface` now.
///
/// # Errors
/// When the query fails.
pub fn tcx_egress_programs(interface: &str) -> Result<Vec<u32>> {
    let (_, programs) =
        aya::programs::SchedClassifier::query_tcx(interface, aya::programs::TcAttachType::Egress)?;
    Ok(programs
        .iter()
        .map(aya::programs::ProgramInfo::id)
        .collect())
}

/// An `ifb` interface in the host namespace, deleted on drop. Nothing is ever redirected to
/// it, so no traffic crosses it, and its driver has no native XDP (no `ndo_bpf`). (The
/// `dummy` module is not available on every test machine; `ifb` is.)
pub struct ScratchLink {
    name: String,
}

impl ScratchLink {
    /// Creates `pmi<pid>-<n>`, down.
    ///
    /// # Errors
    /// When `ip link add` fails (not root).
    pub fn new() -> Result<Self> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("pmi{}-{n}", std::process::id());
        ensure!(name.len() <= 15, "interface name {name} is too long");
        let output = Command::new("ip")
            .args(["link", "add", &name, "type", "ifb"])
            .output()
            .context("running ip link add")?;
        ensure!(
            output.status.success(),
            "ip link add {name} type ifb: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(Self { name })
    }

    /// The interface name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ScratchLink {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.name])
            .output();
    }
}

/// Serves `listener` on a thread until `stop` is set: every connection is accepted (so the
/// handshake completes) and closed at once. The listener is made non-blocking so the thread
/// notices `stop` within a few milliseconds.
///
/// # Panics
/// When the listener cannot be made non-blocking.
#[must_use]
pub fn accept_and_close(listener: TcpListener, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    #[expect(clippy::expect_used, reason = "test helper: fails loudly")]
    listener
        .set_nonblocking(true)
        .expect("a listener can be non-blocking");
    thread::spawn(move || {
        while !stop.load(Ordering::Acquire) {
            match listener.accept() {
                Ok((stream, _)) => drop(stream),
                Err(_) => thread::sleep(Duration::from_millis(2)),
            }
        }
    })
}

/// Every thread of process `pid` with its capability sets, from `/proc/<pid>/task/*/status`.
///
/// # Errors
/// When the task list or a status cannot be read, or a status has no `Cap*` lines.
pub fn thread_caps(pid: u32) -> Result<Vec<(String, portmon::daemon::privileges::CapSets)>> {
    let tasks = format!("/proc/{pid}/task");
    let mut threads = Vec::new();
    for entry in std::fs::read_dir(&tasks).with_context(|| format!("listing {tasks}"))? {
        let entry = entry.with_context(|| format!("reading an entry of {tasks}"))?;
        let path = entry.path().join("status");
        let status = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let sets = portmon::daemon::privileges::CapSets::parse(&status)
            .ok_or_else(|| anyhow!("no Cap* lines in {}:\n{status}", path.display()))?;
        threads.push((entry.file_name().to_string_lossy().into_owned(), sets));
    }
    Ok(threads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_with_escaped_labels() {
        let text = "# HELP x y\n# TYPE x counter\n\
                    x_total{a=\"1\",b=\"q\\\"uote\\\\ and\\nnewline\",c=\"\"} 42\n\
                    up 1\n\
                    h_bucket{le=\"+Inf\"} 3\n";
        let samples = parse_exposition(text).unwrap_or_else(|error| panic!("parse: {error:#}"));
        assert_eq!(samples.len(), 3, "three samples in {samples:?}");
        assert_eq!(samples[0].name, "x_total");
        assert_eq!(samples[0].label("a"), "1");
        assert_eq!(samples[0].label("b"), "q\"uote\\ and\nnewline");
        assert_eq!(samples[0].label("c"), "");
        assert!((samples[0].value - 42.0).abs() < f64::EPSILON, "value 42");
        assert_eq!(samples[1].name, "up");
        assert!(samples[1].labels.is_empty(), "no labels on up");
        assert_eq!(samples[2].label("le"), "+Inf");
    }
}
