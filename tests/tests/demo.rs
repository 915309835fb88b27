//! `cargo xtask demo` end to end, non-interactively (`--no-top`): the built xtask binary runs
//! the demo with the test's portmon binary; the last scrape it writes must show the traffic
//! mix counted (HTTPS, SSH, DNS, HTTP, telnet, the scan) and the telnet alert firing, and
//! afterwards nothing it created may remain: namespace, veth, processes, work directory, pins.
//! The same cleanup is checked after Ctrl-C (SIGINT) mid-run and after an error.

#![expect(clippy::expect_used, reason = "tests panic with what they expected")]

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{OnceLock, mpsc},
    thread,
    time::{Duration, Instant},
};

use portmon_tests::daemon::{Sample, free_port, parse_exposition, portmon_binary, run_command};

/// How long a 30 s demo may take, setup checks and teardown included.
const SHORT_RUN_LIMIT: Duration = Duration::from_mins(4);
/// How long the demo may take to start its traffic, and to clean up after SIGINT.
const START_LIMIT: Duration = Duration::from_mins(3);
const STOP_LIMIT: Duration = Duration::from_mins(1);

/// The xtask binary, built once into this test's target directory and profile.
fn xtask_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test executable has a path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test executable is in <target>/<profile>/deps");
        let target_dir = profile_dir
            .parent()
            .expect("the profile directory is in the target directory");
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the tests crate is in the workspace");
        let mut command = Command::new(env!("CARGO"));
        command
            .current_dir(workspace)
            .env("CARGO_TARGET_DIR", target_dir)
            .args(["build", "--quiet", "-p", "xtask"]);
        if profile_dir
            .file_name()
            .is_some_and(|name| name == "release")
        {
            command.arg("--release");
        }
        let output = command.output().expect("cargo build -p xtask runs");
        assert!(
            output.status.success(),
            "expected cargo build -p xtask to succeed, got: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        profile_dir.join("xtask")
    })
}

/// The demo's command line: `xtask demo --no-top --portmon <test binary> --listen <free> ...`.
fn demo(extra: &[&str]) -> Command {
    let mut command = Command::new(xtask_binary());
    command
        .arg("demo")
        .arg("--no-top")
        .arg("--portmon")
        .arg(portmon_binary())
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(extra);
    command
}

/// What the demo says it created, read from its `demo: sandbox:` line.
#[derive(Debug)]
struct Created {
    ns: String,
    host_if: String,
    host_addr: String,
    workdir: String,
}

impl Created {
    fn from_output(stdout: &str) -> Self {
        let line = stdout
            .lines()
            .find(|line| line.starts_with("demo: sandbox: "))
            .unwrap_or_else(|| panic!("expected a `demo: sandbox:` line, got:\n{stdout}"));
        let between = |start: &str, end: &str| -> String {
            let rest = &line[line
                .find(start)
                .unwrap_or_else(|| panic!("no {start:?} in {line}"))
                + start.len()..];
            rest[..rest.find(end).unwrap_or(rest.len())].to_owned()
        };
        Self {
            ns: between("namespace ", ","),
            host_if: between("veth ", " "),
            host_addr: between("(host, ", "/30"),
            workdir: between("workdir ", "\n"),
        }
    }

    /// Panics with what is left, if anything.
    fn assert_removed(&self) {
        let netns = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip netns list runs");
        let netns = String::from_utf8_lossy(&netns.stdout);
        assert!(
            !netns
                .lines()
                .any(|line| line.split_whitespace().next() == Some(&self.ns)),
            "expected namespace {} removed, got: {netns}",
            self.ns
        );
        let link = Command::new("ip")
            .args(["link", "show", "dev", &self.host_if])
            .output()
            .expect("ip link show runs");
        assert!(
            !link.status.success(),
            "expected veth {} removed, got: {}",
            self.host_if,
            String::from_utf8_lossy(&link.stdout)
        );
        assert!(
            !Path::new(&self.workdir).exists(),
            "expected work directory {} removed",
            self.workdir
        );
        let pins = Path::new("/sys/fs/bpf/portmon").join(&self.host_if);
        assert!(
            !pins.exists(),
            "expected nothing pinned for {} in bpffs, got {}",
            self.host_if,
            pins.display()
        );
        let marks = [&self.host_if, &self.host_addr, &self.workdir];
        let left: Vec<String> = fs::read_dir("/proc")
            .expect("/proc is readable")
            .filter_map(Result::ok)
            .filter_map(|entry| fs::read(entry.path().join("cmdline")).ok())
            .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
            .filter(|cmdline| marks.iter().any(|mark| cmdline.contains(mark.as_str())))
            .collect();
        assert!(
            left.is_empty(),
            "expected no process of the demo left (portmon, openssl, nmap), got: {left:?}"
        );
    }
}

fn ingress_sum(
    samples: &[Sample],
    name: &str,
    host_if: &str,
    keep: impl Fn(&Sample) -> bool,
) -> f64 {
    samples
        .iter()
        .filter(|sample| {
            sample.name == name
                && sample.label("interface") == host_if
                && sample.label("direction") == "ingress"
                && keep(sample)
        })
        .fold(0.0, |sum, sample| sum + sample.value)
}

#[test]
fn a_short_demo_counts_the_mix_alerts_on_telnet_and_leaves_nothing() {
    let out = std::env::temp_dir().join(format!("portmon-demo-test-{}.prom", std::process::id()));
    let output = run_command(
        demo(&["--duration", "30s", "--metrics-out"]).arg(&out),
        SHORT_RUN_LIMIT,
    )
    .expect("the demo finishes in time");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "expected the demo to succeed, got {}:\n{stdout}\n{stderr}",
        output.status
    );
    let created = Created::from_output(&stdout);
    created.assert_removed();
    let text = fs::read_to_string(&out).expect("the demo wrote its last scrape");
    let _ = fs::remove_file(&out);
    let samples = parse_exposition(&text).expect("the last scrape is a valid exposition");

    // Each service's port, counted at ingress with the security class portmon gives it.
    let cases = [
        ("https", "tcp", "443", "secure"),
        ("ssh", "tcp", "22", "secure"),
        ("dns", "udp", "53", "plaintext"),
        ("http", "tcp", "80", "plaintext"),
        ("telnet", "tcp", "23", "plaintext"),
    ];
    for (name, protocol, port, security) in cases {
        let packets = ingress_sum(
            &samples,
            "portmon_packets_total",
            &created.host_if,
            |sample| {
                sample.label("protocol") == protocol
                    && sample.label("port") == port
                    && sample.label("security") == security
            },
        );
        assert!(
            packets >= 10.0,
            "{name}: expected at least 10 ingress packets on {port}/{protocol} labelled \
             security={security}, got {packets}; stdout:\n{stdout}"
        );
    }
    let telnet_alert = samples.iter().find(|sample| {
        sample.name == "portmon_plaintext_alert"
            && sample.label("interface") == created.host_if
            && sample.label("port") == "23"
    });
    assert!(
        telnet_alert.is_some_and(|alert| alert.label("reason") == "must_be_zero"
            && (alert.value - 1.0).abs() < f64::EPSILON),
        "expected portmon_plaintext_alert{{port=\"23\",reason=\"must_be_zero\"}} 1, got {telnet_alert:?}"
    );
    // nmap sends at least one SYN to each of ports 1-1024.
    let syns = ingress_sum(&samples, "portmon_tcp_syn_total", &created.host_if, |_| {
        true
    });
    assert!(
        syns >= 1024.0,
        "expected the scan's 1024 SYNs and more at ingress, got {syns}; stdout:\n{stdout}"
    );
    for summary in ["demo: highlights from the last scrape", "demo: cleaned up"] {
        assert!(
            stdout.contains(summary),
            "expected {summary:?} in:\n{stdout}"
        );
    }
}

#[test]
fn ctrl_c_mid_run_removes_everything() {
    let mut child = demo(&["--duration", "10m"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the demo starts");
    let stdout = child.stdout.take().expect("the demo's stdout is piped");
    let (lines, received) = mpsc::channel();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    // Wait for the first summary line: portmon runs and the traffic flows.
    let mut seen = String::new();
    let deadline = Instant::now() + START_LIMIT;
    while !seen.lines().any(|line| line.starts_with("[   5s]")) {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Ok(line) = received.recv_timeout(left.min(Duration::from_secs(1))) {
            seen.push_str(&line);
            seen.push('\n');
        } else if Instant::now() >= deadline
            || child.try_wait().is_ok_and(|status| status.is_some())
        {
            let _ = child.kill();
            let output = child.wait_with_output().expect("the demo is reaped");
            panic!(
                "expected the demo to print a summary within {START_LIMIT:?}, got:\n{seen}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid fits in i32"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT is delivered");
    let deadline = Instant::now() + STOP_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the demo") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("expected the demo to exit within {STOP_LIMIT:?} of SIGINT; output:\n{seen}");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let _ = reader.join();
    seen.extend(received.try_iter().map(|line| line + "\n"));
    assert!(
        status.success() && seen.contains("demo: stopped by a signal"),
        "expected a clean exit saying it was stopped by a signal, got {status}:\n{seen}"
    );
    Created::from_output(&seen).assert_removed();
}

#[test]
fn an_error_after_the_sandbox_is_made_removes_it() {
    let output = run_command(
        Command::new(xtask_binary()).args([
            "demo",
            "--no-top",
            "--duration",
            "30s",
            "--portmon",
            "/nonexistent/portmon",
        ]),
        START_LIMIT,
    )
    .expect("the demo finishes in time");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("starting portmon run"),
        "expected the demo to fail starting portmon, got {}:\n{stdout}\n{stderr}",
        output.status
    );
    Created::from_output(&stdout).assert_removed();
}

/// A tmux session, killed on drop.
struct Tmux {
    session: String,
}

impl Tmux {
    fn capture(&self) -> String {
        let output = Command::new("tmux")
            .args([
                "capture-pane",
                "-p",
                "-J",
                "-S",
                "-2000",
                "-t",
                &self.session,
            ])
            .output()
            .expect("tmux capture-pane runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until the pane shows `text`; panics with the pane after `limit`.
    fn wait_for(&self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let pane = self.capture();
            if pane.contains(text) {
                return pane;
            }
            assert!(
                Instant::now() < deadline,
                "expected {text:?} on the terminal within {limit:?}, got:\n{pane}"
            );
            thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .output();
    }
}

/// On a terminal, without `--no-top`, the demo hands the terminal to `portmon top --url` (here
/// a stand-in that enters the alternate screen and raw mode and leaves both on when `q` is
/// pressed), holds its own messages back meanwhile, and when the view quits resets the
/// terminal, prints what it held, and cleans up.
#[test]
fn on_a_terminal_the_live_view_gets_the_url_and_quitting_it_ends_the_demo() {
    let dir = std::env::temp_dir().join(format!("portmon-demo-top-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("creating the stand-in's directory");
    let wrapper = dir.join("portmon");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n\
             if [ \"$1\" = top ]; then\n\
             \x20 [ \"$2\" = --help ] && exit 0\n\
             \x20 printf '\\033[?1049hstand-in top %s\\n' \"$*\"\n\
             \x20 stty raw -echo\n\
             \x20 while [ \"$(dd bs=1 count=1 2>/dev/null)\" != q ]; do :; done\n\
             \x20 exit 0\n\
             fi\n\
             exec {} \"$@\"\n",
            portmon_binary().display()
        ),
    )
    .expect("writing the stand-in");
    let chmod = Command::new("chmod")
        .arg("755")
        .arg(&wrapper)
        .status()
        .expect("chmod runs");
    assert!(chmod.success(), "expected chmod 755 to succeed");
    let listen = format!("127.0.0.1:{}", free_port());
    let tmux = Tmux {
        session: format!("pmdemo-test-{}", std::process::id()),
    };
    let script = format!(
        "{} demo --duration 5m --portmon {} --listen {listen}; echo DEMO-EXIT=$?; sleep 600",
        xtask_binary().display(),
        wrapper.display()
    );
    let started = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-x",
            "250",
            "-y",
            "60",
            "-s",
            &tmux.session,
            &script,
        ])
        .status()
        .expect("tmux runs (Debian package tmux)");
    assert!(started.success(), "expected tmux new-session to succeed");

    tmux.wait_for(
        &format!("stand-in top top --url http://{listen}"),
        START_LIMIT,
    );
    // Past the telnet burst (8 s in), whose message must wait for the view to close.
    thread::sleep(Duration::from_secs(12));
    let keys = Command::new("tmux")
        .args(["send-keys", "-t", &tmux.session, "q"])
        .status()
        .expect("tmux send-keys runs");
    assert!(keys.success(), "expected tmux send-keys to succeed");
    let pane = tmux.wait_for("DEMO-EXIT=", STOP_LIMIT);
    let _ = fs::remove_dir_all(&dir);
    for expected in [
        "DEMO-EXIT=0",
        "demo: telnet burst",
        "demo: portmon top exited",
        "demo: highlights from the last scrape",
        "demo: cleaned up",
    ] {
        assert!(
            pane.contains(expected),
            "expected {expected:?} on the terminal, got:\n{pane}"
        );
    }
    Created::from_output(&pane).assert_removed();
    let stty = Command::new("tmux")
        .args([
            "display-message",
            "-p",
            "-t",
            &tmux.session,
            "#{alternate_on}",
        ])
        .output()
        .expect("tmux display-message runs");
    assert_eq!(
        String::from_utf8_lossy(&stty.stdout).trim(),
        "0",
        "expected the terminal back on its main screen"
    );
}
