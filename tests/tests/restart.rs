//! Counters that survive: the real `portmon run` on the host end of a veth pair, real UDP
//! from the peer namespace to a port of the security table (so its series always exists),
//! and every total checked exactly against what the peer sent.
//!
//! * `kill -9` in the middle of a flood, then a restart during it: the pinned links keep
//!   counting while no daemon runs, the new daemon takes them over, and the total is exactly
//!   the flood, with one XDP program and one tcx egress program on the interface;
//! * a clean stop (SIGTERM) leaves everything attached and counting, and the next start
//!   continues exactly;
//! * `portmon detach` removes every link, pin and program, and is idempotent;
//! * a pinned layout that differs from this build's (an older `LAYOUT_VERSION`, forged by
//!   renaming the directory, or another slice count) is replaced with one log line, and the
//!   fresh map counts from zero exactly.
//!
//! The link is silent apart from the test's traffic (see `portmon_tests::netns`), so the
//! peer's count is the reference.

#![expect(clippy::expect_used, reason = "tests panic with what they expected")]

use std::{
    net::{Ipv4Addr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use portmon_tests::{
    daemon::{Daemon, parse_exposition, run_portmon, tcx_egress_programs, xdp_programs},
    netns::{Stack, Topology},
    pin::PinRoot,
};

/// A UDP port of the security table (tftp): its series is exported from the first packet.
const PORT: u16 = 69;
/// The peer's source port.
const PEER_PORT: u16 = 40069;
/// The daemon reads this often.
const INTERVAL: &str = "100ms";
/// Every wait is bounded by this.
const DEADLINE: Duration = Duration::from_secs(30);
/// Datagrams of the flood, and how they are paced (a burst, then a pause) so that the
/// veth never drops one before the XDP hook.
const FLOOD: u64 = 40_000;
const BURST: u64 = 20;
const PAUSE: Duration = Duration::from_millis(1);

/// A topology, a UDP sink on the host (so no ICMP answers) and a socket in the peer.
struct Link {
    topology: Topology,
    _sink: UdpSocket,
    peer: Arc<UdpSocket>,
}

impl Link {
    fn new() -> Self {
        let topology = Topology::new(Stack::Ipv4).expect("the veth topology (run as root)");
        let sink = UdpSocket::bind((topology.host_v4(), PORT)).expect("binding the UDP sink");
        let peer_v4 = topology.peer_v4();
        let peer = topology
            .in_peer(|| UdpSocket::bind((peer_v4, PEER_PORT)))
            .expect("entering the peer namespace")
            .expect("binding the peer's socket");
        Self {
            topology,
            _sink: sink,
            peer: Arc::new(peer),
        }
    }

    fn host(&self) -> &str {
        self.topology.host_if()
    }

    /// Sends `count` datagrams from the peer, paced; returns how many were sent.
    fn send(&self, count: u64) -> u64 {
        send(&self.peer, self.topology.host_v4(), count, None)
    }

    /// One XDP program and one tcx egress program on the host end, or none.
    fn attached(&self) -> (usize, usize) {
        (
            xdp_programs(self.host()).expect("listing XDP").len(),
            tcx_egress_programs(self.host())
                .expect("querying tcx")
                .len(),
        )
    }
}

fn send(socket: &UdpSocket, host: Ipv4Addr, count: u64, progress: Option<&AtomicU64>) -> u64 {
    let started = Instant::now();
    let mut sent = 0;
    while sent < count {
        assert!(
            started.elapsed() < DEADLINE,
            "sending {count} datagrams took over {DEADLINE:?} ({sent} sent)"
        );
        for _ in 0..BURST.min(count - sent) {
            socket
                .send_to(&sent.to_be_bytes(), (host, PORT))
                .expect("the peer sends a datagram");
            sent += 1;
        }
        if let Some(progress) = progress {
            progress.store(sent, Ordering::Relaxed);
        }
        thread::sleep(PAUSE);
    }
    sent
}

fn start(link: &Link, pins: &PinRoot, extra: &[&str]) -> Daemon {
    let root = pins.arg();
    let mut args = vec![
        "--iface",
        link.host(),
        "--interval",
        INTERVAL,
        "--pin-dir",
        &root,
    ];
    args.extend_from_slice(extra);
    Daemon::start(&args).unwrap_or_else(|error| panic!("starting portmon: {error:#}"))
}

/// The ingress packet count of [`PORT`] in the daemon's exposition (0 when absent).
fn counted(daemon: &Daemon, interface: &str) -> u64 {
    let body = daemon.scrape(None).expect("/metrics answers").body;
    let samples = parse_exposition(&body).expect("the exposition parses");
    let port = PORT.to_string();
    samples
        .iter()
        .find(|sample| {
            sample.name == "portmon_packets_total"
                && sample.label("interface") == interface
                && sample.label("direction") == "ingress"
                && sample.label("protocol") == "udp"
                && sample.label("port") == port
        })
        .map_or(0, |sample| {
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "packet counts are exact integers far below 2^53"
            )]
            let value = sample.value as u64;
            value
        })
}

/// Waits until the daemon has read at least `expected` (or the deadline), then two more
/// reads so that an excess would show, and returns the count.
fn settled(daemon: &Daemon, interface: &str, expected: u64) -> u64 {
    let started = Instant::now();
    while counted(daemon, interface) < expected && started.elapsed() < DEADLINE {
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(300));
    counted(daemon, interface)
}

fn stop(daemon: Daemon, signal: Signal) -> String {
    let (_, log) = daemon.stop(signal).expect("portmon stops");
    log
}

#[test]
fn kill_9_during_a_flood_then_restart_counts_every_datagram_once() {
    let link = Link::new();
    let pins = PinRoot::new().expect("bpffs (run as root)");
    let daemon = start(&link, &pins, &[]);
    let progress = Arc::new(AtomicU64::new(0));
    let flood = {
        let (peer, host, progress) = (
            Arc::clone(&link.peer),
            link.topology.host_v4(),
            Arc::clone(&progress),
        );
        thread::spawn(move || send(&peer, host, FLOOD, Some(&progress)))
    };
    let started = Instant::now();
    while progress.load(Ordering::Relaxed) < FLOOD / 4 && started.elapsed() < DEADLINE {
        thread::sleep(Duration::from_millis(5));
    }
    let killed_at = progress.load(Ordering::Relaxed);
    stop(daemon, Signal::SIGKILL);
    assert_eq!(
        link.attached(),
        (1, 1),
        "(XDP, tcx egress) programs left attached by the killed daemon"
    );
    let daemon = start(&link, &pins, &[]);
    let restarted_at = progress.load(Ordering::Relaxed);
    let sent = flood.join().expect("the flood thread");
    assert_eq!(sent, FLOOD, "the peer sent the whole flood");
    assert!(
        killed_at < FLOOD && restarted_at < FLOOD,
        "the kill ({killed_at}) and the restart ({restarted_at}) must fall inside the flood of \
         {FLOOD}; slow the flood down if this machine restarts slower"
    );
    let got = settled(&daemon, link.host(), FLOOD);
    let log = daemon.log();
    assert_eq!(
        got, FLOOD,
        "expected exactly the {FLOOD} datagrams the peer sent (killed at {killed_at}, \
         restarted at {restarted_at}), got {got}; log:\n{log}"
    );
    assert!(
        log.contains("pinned link taken over"),
        "expected the restarted daemon to take the pinned links over; log:\n{log}"
    );
    assert_eq!(
        link.attached(),
        (1, 1),
        "(XDP, tcx egress) programs after the restart: one each"
    );
}

#[test]
fn a_clean_stop_leaves_it_counting_and_the_next_start_continues_exactly() {
    let link = Link::new();
    let pins = PinRoot::new().expect("bpffs (run as root)");
    let (first, while_stopped, after) = (300, 200, 100);
    let daemon = start(&link, &pins, &[]);
    link.send(first);
    let got = settled(&daemon, link.host(), first);
    assert_eq!(got, first, "the first daemon counts what the peer sent");
    let log = stop(daemon, Signal::SIGTERM);
    assert!(
        log.contains("leaving") && log.contains("attached and counting"),
        "expected the stop to say it leaves the programs attached; log:\n{log}"
    );
    assert_eq!(link.attached(), (1, 1), "(XDP, tcx egress) after SIGTERM");
    link.send(while_stopped);
    let daemon = start(&link, &pins, &[]);
    link.send(after);
    let expected = first + while_stopped + after;
    let got = settled(&daemon, link.host(), expected);
    assert_eq!(
        got,
        expected,
        "expected {first} + {while_stopped} (while stopped) + {after}; log:\n{}",
        daemon.log()
    );
    assert_eq!(
        link.attached(),
        (1, 1),
        "(XDP, tcx egress) after the restart"
    );
}

#[test]
fn detach_removes_every_link_pin_and_program_and_is_idempotent() {
    let link = Link::new();
    let pins = PinRoot::new().expect("bpffs (run as root)");
    let daemon = start(&link, &pins, &[]);
    link.send(10);
    settled(&daemon, link.host(), 10);
    // A running daemon holds its interface: detach refuses it rather than pretend.
    let root = pins.arg();
    let refused =
        run_portmon(&["detach", "--pin-dir", &root], &[], DEADLINE).expect("portmon detach runs");
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        refused.status.code() == Some(1) && message.contains("in use by another running portmon"),
        "expected detach to refuse while the daemon runs, got {:?}: {message}",
        refused.status
    );
    stop(daemon, Signal::SIGKILL);
    assert_eq!(link.attached(), (1, 1), "still attached after kill -9");

    let output = run_portmon(
        &["detach", "--pin-dir", &root, "--iface", link.host()],
        &[],
        DEADLINE,
    )
    .expect("portmon detach runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "detach: {:?}\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    for needle in [
        "XDP link",
        "tcx link",
        "PORTMON_COUNTERS (map)",
        "nothing of portmon left",
    ] {
        assert!(stdout.contains(needle), "expected {needle:?} in:\n{stdout}");
    }
    assert_eq!(link.attached(), (0, 0), "(XDP, tcx egress) after detach");
    assert_eq!(pins.pins(), Vec::<String>::new(), "pins left after detach");

    let again = run_portmon(
        &["detach", "--pin-dir", &root, "--iface", link.host()],
        &[],
        DEADLINE,
    )
    .expect("portmon detach runs");
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.status.success() && stdout.contains("nothing to detach"),
        "expected a second detach to succeed and say there is nothing, got {:?}:\n{stdout}",
        again.status
    );
}

/// How a pinned layout of another build is made.
#[derive(Clone, Copy, Debug)]
enum Forge {
    /// Rename the layout directory to an older `LAYOUT_VERSION`.
    OlderVersion,
    /// Start the second daemon with another slice count.
    OtherSlices,
}

#[test]
fn a_pinned_layout_of_another_build_is_replaced_and_counts_from_zero() {
    let cases = [
        ("an older LAYOUT_VERSION", Forge::OlderVersion),
        ("another slice count (--max-slices 1)", Forge::OtherSlices),
    ];
    for (case, forge) in cases {
        let link = Link::new();
        let pins = PinRoot::new().expect("bpffs (run as root)");
        let daemon = start(&link, &pins, &[]);
        link.send(500);
        assert_eq!(
            settled(&daemon, link.host(), 500),
            500,
            "{case}: first daemon"
        );
        stop(daemon, Signal::SIGTERM);
        let interface_dir = pins.path().join(link.host());
        let extra: &[&str] = match forge {
            Forge::OlderVersion => {
                let layout = std::fs::read_dir(&interface_dir)
                    .expect("the interface's pin directory")
                    .flatten()
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .find(|name| name.starts_with("layout-v"))
                    .expect("a layout directory");
                let version = monitor_common::layout::LAYOUT_VERSION;
                let older =
                    layout.replacen(&format!("v{version}-"), &format!("v{}-", version - 1), 1);
                assert_ne!(older, layout, "{case}: the layout name carries the version");
                std::fs::rename(interface_dir.join(&layout), interface_dir.join(older))
                    .expect("renaming on bpffs");
                &[]
            }
            Forge::OtherSlices => &["--max-slices", "1"],
        };
        let daemon = start(&link, &pins, extra);
        link.send(70);
        let got = settled(&daemon, link.host(), 70);
        let log = daemon.log();
        assert_eq!(
            got, 70,
            "{case}: expected the fresh map to count only the 70 new datagrams, got {got}; \
             log:\n{log}"
        );
        let replaced: Vec<&str> = log
            .lines()
            .filter(|line| line.contains("does not match this build's"))
            .collect();
        assert_eq!(
            replaced.len(),
            1,
            "{case}: expected one log line about the replaced layout; log:\n{log}"
        );
        assert!(
            replaced[0].contains("removed it") && replaced[0].contains("from zero"),
            "{case}: the line says what was done: {}",
            replaced[0]
        );
        assert_eq!(
            link.attached(),
            (1, 1),
            "{case}: (XDP, tcx egress) after replacement"
        );
        let layouts = std::fs::read_dir(&interface_dir)
            .expect("the interface's pin directory")
            .count();
        assert_eq!(layouts, 1, "{case}: only this build's layout is left");
        stop(daemon, Signal::SIGTERM);
    }
}

#[test]
fn cleanup_and_no_pin_leave_nothing_behind_at_exit() {
    // (case, flags, pins expected while running)
    let cases: [(&str, &[&str], bool); 2] = [
        (
            "--cleanup: pinned while running, removed at exit",
            &["--cleanup"],
            true,
        ),
        ("--no-pin: never pinned", &["--no-pin"], false),
    ];
    for (case, flags, pinned) in cases {
        let link = Link::new();
        let pins = PinRoot::new().expect("bpffs (run as root)");
        let mut args = vec!["--iface", link.host(), "--interval", INTERVAL];
        let root = pins.arg();
        if !flags.contains(&"--no-pin") {
            args.extend(["--pin-dir", &root]);
        }
        args.extend_from_slice(flags);
        let daemon =
            Daemon::start(&args).unwrap_or_else(|error| panic!("{case}: starting: {error:#}"));
        link.send(50);
        assert_eq!(settled(&daemon, link.host(), 50), 50, "{case}: counted");
        assert_eq!(
            !pins.pins().is_empty(),
            pinned,
            "{case}: pins while running: {:?}",
            pins.pins()
        );
        let log = stop(daemon, Signal::SIGTERM);
        assert_eq!(
            link.attached(),
            (0, 0),
            "{case}: (XDP, tcx egress) after SIGTERM"
        );
        assert_eq!(
            pins.pins(),
            Vec::<String>::new(),
            "{case}: pins after SIGTERM; log:\n{log}"
        );
        assert!(
            !pins.path().exists(),
            "{case}: the pin root is removed once empty"
        );
    }
}
