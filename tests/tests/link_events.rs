//! Interfaces that come and go, and living next to another XDP program, with the real
//! `portmon run` and real traffic from a peer namespace:
//!
//! * a veth deleted and recreated under a running portmon is re-attached (with no
//!   capability left) and its counters continue exactly; down and up keeps counting;
//! * `--iface '<glob>'` picks up a veth created after start;
//! * with a foreign XDP program attached first, `--hook auto` counts on TC ingress, says
//!   so in the log and in `portmon_attached`, and leaves the foreign program in place;
//!   `--hook xdp` refuses with the fix.
//!
//! Needs root.

#![expect(clippy::expect_used, reason = "tests panic with what they expected")]

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use portmon::{
    attach::{self, XdpMode},
    caps::Capability,
    dataplane::{DataPlane, LoadOptions},
};
use portmon_tests::{
    daemon::{Daemon, Sample, free_port, parse_exposition, run_portmon, thread_caps, xdp_programs},
    netns::{Stack, Topology},
};

/// How long the daemon may take to notice a link event, attach, and export a count.
const SETTLE: Duration = Duration::from_secs(20);

/// Sends `count` UDP datagrams from the peer to the host end's `port`.
fn send_udp(topology: &Topology, port: u16, count: u64) {
    let target = SocketAddr::from((topology.host_v4(), port));
    topology
        .in_peer(move || {
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("a UDP socket");
            for _ in 0..count {
                socket
                    .send_to(&[0; 20], target)
                    .expect("sending a datagram");
            }
        })
        .expect("entering the peer namespace");
}

fn samples(daemon: &Daemon) -> Vec<Sample> {
    let response = daemon
        .scrape(None)
        .unwrap_or_else(|error| panic!("scraping /metrics: {error:#}"));
    parse_exposition(&response.body).expect("a valid exposition")
}

#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "small counts"
)]
fn ingress_udp(samples: &[Sample], interface: &str, port: u16) -> Option<u64> {
    samples
        .iter()
        .find(|sample| {
            sample.name == "portmon_packets_total"
                && sample.label("interface") == interface
                && sample.label("direction") == "ingress"
                && sample.label("protocol") == "udp"
                && sample.label("port") == port.to_string()
        })
        .map(|sample| sample.value as u64)
}

/// `portmon_attached` of `interface`: (hook, mode, value), sorted.
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "0 or 1"
)]
fn attached(samples: &[Sample], interface: &str) -> Vec<(String, String, u64)> {
    let mut attached: Vec<(String, String, u64)> = samples
        .iter()
        .filter(|sample| {
            sample.name == "portmon_attached" && sample.label("interface") == interface
        })
        .map(|sample| {
            (
                sample.label("hook").to_owned(),
                sample.label("mode").to_owned(),
                sample.value as u64,
            )
        })
        .collect();
    attached.sort();
    attached
}

/// Scrapes until `done` holds for the samples and the log (or [`SETTLE`] passes); returns
/// whether it held.
fn wait_until(daemon: &Daemon, mut done: impl FnMut(&[Sample], &str) -> bool) -> bool {
    let deadline = Instant::now() + SETTLE;
    while Instant::now() < deadline {
        if done(&samples(daemon), &daemon.log()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Waits for ingress UDP `port` on `interface` to reach `expected`, panicking with what
/// was seen otherwise.
fn expect_count(daemon: &Daemon, interface: &str, port: u16, expected: u64, when: &str) {
    let mut last = None;
    let reached = wait_until(daemon, |samples, _| {
        last = ingress_udp(samples, interface, port);
        last == Some(expected)
    });
    assert!(
        reached,
        "{when}: expected {expected} ingress UDP/{port} packets on {interface}, got {last:?}; \
         log:\n{}",
        daemon.log()
    );
}

fn assert_effective(daemon: &Daemon, expected: u64, why: &str) {
    let pid = daemon.pid().expect("the daemon is running");
    for (tid, sets) in thread_caps(pid).expect("the daemon's threads and their capability sets") {
        assert_eq!(
            (sets.effective, sets.permitted),
            (expected, expected),
            "thread {tid} of portmon {pid}: expected effective and permitted {expected:#x} \
             ({why}), got {sets:x?}"
        );
    }
}

/// DNS: in the port table, so it has its own series from the first packet.
const PORT: u16 = 53;

#[test]
fn a_recreated_link_is_reattached_with_no_capability_and_counts_continue_across_down_and_up() {
    let mut topology = Topology::new(Stack::Ipv4).expect("creating the veth pair");
    let host = topology.host_if().to_owned();
    let daemon = Daemon::start(&["--iface", &host, "--interval", "100ms"])
        .unwrap_or_else(|error| panic!("starting portmon run: {error:#}"));
    // Exact names only on 6.18: re-attaching needs no capability (privileges.rs).
    assert_effective(&daemon, 0, "exact names: nothing kept on a 6.5+ kernel");

    send_udp(&topology, PORT, 5);
    expect_count(&daemon, &host, PORT, 5, "before the deletion");
    let before = attached(&samples(&daemon), &host);
    assert!(
        before.iter().all(|(_, _, value)| *value == 1) && before.len() == 2,
        "expected two hooks attached (ingress and tc_egress), got {before:?}"
    );
    let old_index = topology.host_ifindex();

    topology
        .recreate()
        .expect("deleting and recreating the veth pair");
    assert_ne!(
        topology.host_ifindex(),
        old_index,
        "the recreated link has a new ifindex"
    );
    let mut seen = Vec::new();
    assert!(
        wait_until(&daemon, |samples, log| {
            seen = attached(samples, &host);
            seen == before && log.contains(&format!("{host} is back (ifindex"))
        }),
        "expected {host} re-attached with the same hooks {before:?}, got {seen:?}; log:\n{}",
        daemon.log()
    );
    assert_eq!(
        xdp_programs(&host).expect("querying XDP").len(),
        usize::from(before.iter().any(|(hook, _, _)| hook == "xdp")),
        "expected portmon's XDP program once on the recreated {host}"
    );
    send_udp(&topology, PORT, 7);
    expect_count(&daemon, &host, PORT, 5 + 7, "after the re-creation");

    topology
        .set_host_up(false)
        .expect("setting the host end down");
    assert!(
        wait_until(&daemon, |_, log| log.contains(&format!("{host} is down"))),
        "expected the down transition in the log:\n{}",
        daemon.log()
    );
    topology.set_host_up(true).expect("setting the host end up");
    assert!(
        wait_until(&daemon, |_, log| log.contains(&format!("{host} is up"))),
        "expected the up transition in the log:\n{}",
        daemon.log()
    );
    send_udp(&topology, PORT, 4);
    expect_count(&daemon, &host, PORT, 5 + 7 + 4, "after down and up");
    assert_effective(&daemon, 0, "still nothing after re-attaching");

    let (status, log) = daemon.stop(Signal::SIGTERM).expect("stopping portmon");
    assert!(
        status.success(),
        "expected a clean exit, got {status}; log:\n{log}"
    );
    assert_eq!(
        log.matches(&format!("{host} was deleted")).count(),
        1,
        "expected the deletion logged once:\n{log}"
    );
    assert_eq!(
        xdp_programs(&host).expect("querying XDP"),
        Vec::<u32>::new(),
        "expected nothing left on {host} after SIGTERM; log:\n{log}"
    );
}

#[test]
fn a_glob_picks_up_a_link_created_after_start() {
    let prefix = format!("pmg{}x", std::process::id());
    let pattern = format!("{prefix}*");
    let daemon =
        Daemon::start(&["--iface", &pattern, "--interval", "100ms"]).unwrap_or_else(|error| {
            panic!("starting portmon run with nothing matching yet: {error:#}")
        });
    assert!(
        daemon
            .log()
            .contains(&format!("no interface matches --iface {pattern} yet")),
        "expected the wait logged:\n{}",
        daemon.log()
    );
    // A glob may need a fresh load later: exactly the three load capabilities stay.
    let load = [Capability::Bpf, Capability::NetAdmin, Capability::Perfmon]
        .iter()
        .fold(0, |mask, cap| mask | (1u64 << cap.number()));
    assert_effective(&daemon, load, "a glob keeps what loading needs");

    let name = format!("{prefix}0");
    let topology =
        Topology::with_host_name(Stack::Ipv4, &name).expect("creating the matching veth pair");
    let mut seen = Vec::new();
    assert!(
        wait_until(&daemon, |samples, _| {
            seen = attached(samples, &name);
            !seen.is_empty() && seen.iter().all(|(_, _, value)| *value == 1)
        }),
        "expected {name} attached after it appeared, got {seen:?}; log:\n{}",
        daemon.log()
    );
    assert!(
        daemon.log().contains(&format!(
            "{name} (ifindex {}) appeared",
            topology.host_ifindex()
        )),
        "expected the attach logged:\n{}",
        daemon.log()
    );
    send_udp(&topology, PORT, 6);
    expect_count(&daemon, &name, PORT, 6, "on the link that appeared");
    let (status, log) = daemon.stop(Signal::SIGTERM).expect("stopping portmon");
    assert!(
        status.success(),
        "expected a clean exit, got {status}; log:\n{log}"
    );
    assert_eq!(
        xdp_programs(&name).expect("querying XDP"),
        Vec::<u32>::new(),
        "expected nothing left on {name}; log:\n{log}"
    );
}

#[test]
fn auto_counts_on_tc_ingress_next_to_a_foreign_xdp_program_and_xdp_refuses() {
    let topology = Topology::new(Stack::Ipv4).expect("creating the veth pair");
    let host = topology.host_if().to_owned();
    // Another program holds the XDP hook: a second portmon data plane, attached by aya.
    let mut foreign = DataPlane::load(LoadOptions {
        max_slices: 1,
        ..LoadOptions::default()
    })
    .expect("the foreign programs load");
    attach::attach_xdp(&mut foreign, &host, XdpMode::Generic).expect("the foreign XDP attaches");
    let id = foreign
        .xdp_mut()
        .expect("the XDP program exists")
        .info()
        .expect("the program describes itself")
        .id();

    // `--hook xdp` refuses, naming the program and the fix.
    let address = format!("127.0.0.1:{}", free_port());
    let output = run_portmon(
        &[
            "run", "--listen", &address, "--iface", &host, "--hook", "xdp",
        ],
        &[],
        Duration::from_mins(2),
    )
    .unwrap_or_else(|error| panic!("running portmon --hook xdp: {error:#}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "--hook xdp exits 1; stderr:\n{stderr}"
    );
    for needle in [
        &format!("XDP program id {id}"),
        "never replaces",
        "--hook auto",
    ] {
        assert!(stderr.contains(needle), "expected {needle:?} in:\n{stderr}");
    }

    // The default, `--hook auto`, counts on TC ingress.
    let daemon = Daemon::start(&["--iface", &host, "--interval", "100ms"])
        .unwrap_or_else(|error| panic!("starting portmon run: {error:#}"));
    let log = daemon.log();
    assert!(
        log.contains(&format!(
            "{host}: XDP program id {id} (generic mode) holds the XDP hook"
        )) && log.contains("counting ingress on TC ingress instead"),
        "expected the fallback explained in the log:\n{log}"
    );
    assert_eq!(
        attached(&samples(&daemon), &host),
        vec![
            ("tc_egress".to_owned(), "tcx".to_owned(), 1),
            ("tc_ingress".to_owned(), "tcx".to_owned(), 1),
        ],
        "expected TC ingress and egress through tcx, no XDP"
    );
    send_udp(&topology, PORT, 9);
    expect_count(&daemon, &host, PORT, 9, "on TC ingress");
    assert_eq!(
        xdp_programs(&host).expect("querying XDP"),
        vec![id],
        "the foreign program is still the one attached while portmon runs"
    );
    let (status, log) = daemon.stop(Signal::SIGTERM).expect("stopping portmon");
    assert!(
        status.success(),
        "expected a clean exit, got {status}; log:\n{log}"
    );
    assert_eq!(
        xdp_programs(&host).expect("querying XDP"),
        vec![id],
        "the foreign program is still attached after portmon stopped"
    );
}
