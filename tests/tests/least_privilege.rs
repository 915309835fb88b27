//! Least privilege: the real `portmon run` holds no capability once attached (in every
//! thread: capabilities are per thread on Linux), also while it follows link events for the
//! exactly named interface (re-attaching needs none on 6.5+; link_events.rs re-attaches so,
//! and checks that a glob keeps exactly CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON), still serves
//! /metrics and still detaches everything on SIGTERM; `portmon check` reports OK as root and names the missing
//! capabilities, exiting 1, without them. Needs root.

#![expect(clippy::expect_used, reason = "tests panic with what they expected")]

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    process::Command,
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use portmon::daemon::privileges::CapSets;
use portmon_tests::{
    daemon::{
        Daemon, parse_exposition, portmon_binary, run_command, tcx_egress_programs, thread_caps,
        xdp_programs,
    },
    netns::{Stack, Topology},
};

/// `portmon check` finishes well within this (it loads one small data plane per interface).
const LIMIT: Duration = Duration::from_mins(2);

/// Datagrams the peer sends after the drop.
const DATAGRAMS: u64 = 5;

/// Scrapes until ingress UDP/53 reaches `expected` packets (or 20 s pass); returns the
/// last value seen.
fn dns_packets_after(daemon: &Daemon, expected: u64) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    while Instant::now() < deadline {
        let response = daemon
            .scrape(None)
            .unwrap_or_else(|error| panic!("scraping /metrics after the drop: {error:#}"));
        let samples = parse_exposition(&response.body).expect("a valid exposition");
        let packets: Vec<f64> = samples
            .iter()
            .filter(|sample| {
                sample.name == "portmon_packets_total"
                    && sample.label("direction") == "ingress"
                    && sample.label("protocol") == "udp"
                    && sample.label("port") == "53"
            })
            .map(|sample| sample.value)
            .collect();
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "small counts"
        )]
        if let Some(&value) = packets.first() {
            last = Some(value as u64);
        }
        if last == Some(expected) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last
}

#[test]
fn the_daemon_holds_no_capability_once_attached_and_still_serves_and_detaches() {
    let topology = Topology::new(Stack::Ipv4).expect("creating the veth pair");
    let host = topology.host_if();
    let daemon = Daemon::start(&["--iface", host, "--interval", "100ms"])
        .unwrap_or_else(|error| panic!("starting portmon run: {error:#}"));
    assert!(
        !xdp_programs(host).expect("querying XDP").is_empty(),
        "expected portmon's XDP program on {host}"
    );
    assert!(
        !tcx_egress_programs(host).expect("querying tcx").is_empty(),
        "expected portmon's tcx egress program on {host}"
    );

    // /healthz answered, so the drop (made before serving) is done.
    let pid = daemon.pid().expect("the daemon is running");
    let threads = thread_caps(pid).expect("the daemon's threads and their capability sets");
    assert!(!threads.is_empty(), "expected at least one thread");
    for (tid, sets) in &threads {
        let expected = CapSets {
            bounding: 0,
            ..CapSets::default()
        };
        assert_eq!(
            *sets, expected,
            "thread {tid} of portmon {pid}: expected every capability set empty (the \
             bounding set too: portmon runs as root here), got {sets:x?}"
        );
    }

    // Traffic after the drop is still counted and exported.
    let target = SocketAddr::from((topology.host_v4(), 53));
    topology
        .in_peer(move || {
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("a UDP socket");
            for _ in 0..DATAGRAMS {
                socket
                    .send_to(&[0; 20], target)
                    .expect("sending a datagram");
            }
        })
        .expect("entering the peer namespace");
    let counted = dns_packets_after(&daemon, DATAGRAMS);
    assert_eq!(
        counted,
        Some(DATAGRAMS),
        "expected {DATAGRAMS} ingress UDP/53 packets in /metrics after the drop, got \
         {counted:?}; log:\n{}",
        daemon.log()
    );

    let (status, log) = daemon.stop(Signal::SIGTERM).expect("stopping portmon");
    assert!(
        status.success(),
        "expected a clean exit, got {status}; log:\n{log}"
    );
    assert!(
        log.contains("capabilities dropped after attaching: kept none"),
        "expected the drop in the log, got:\n{log}"
    );
    assert_eq!(
        xdp_programs(host).expect("querying XDP"),
        Vec::<u32>::new(),
        "expected no XDP program on {host} after SIGTERM without capabilities; log:\n{log}"
    );
    assert_eq!(
        tcx_egress_programs(host).expect("querying tcx"),
        Vec::<u32>::new(),
        "expected no tcx egress program on {host} after SIGTERM; log:\n{log}"
    );
}

/// `setpriv` arguments that run portmon as nobody with no capability in any set.
const UNPRIVILEGED: [&str; 7] = [
    "setpriv",
    "--inh-caps=-all",
    "--ambient-caps=-all",
    "--bounding-set=-all",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
];

/// (case, command prefix, expected exit code, line starts that must appear, forbidden text)
type CheckCase = (
    &'static str,
    &'static [&'static str],
    i32,
    Vec<String>,
    &'static str,
);

#[test]
fn check_reports_ok_as_root_and_names_missing_capabilities_without_them() {
    let topology = Topology::new(Stack::Ipv4).expect("creating the veth pair");
    let host = topology.host_if().to_owned();
    let binary = portmon_binary();
    let iface_line = format!("iface {host}: ");
    let cases: [CheckCase; 2] = [
        (
            "root",
            &[],
            0,
            vec![
                "OK   kernel: Linux ".to_owned(),
                "OK   btf: /sys/kernel/btf/vmlinux present".to_owned(),
                "OK   capabilities: CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON".to_owned(),
                "OK   capabilities: CAP_SYS_RESOURCE not needed".to_owned(),
                format!("OK   {iface_line}XDP hook free; native XDP supported"),
            ],
            "FAIL",
        ),
        (
            "no capabilities",
            &UNPRIVILEGED,
            1,
            vec![
                "OK   kernel: Linux ".to_owned(),
                "FAIL capabilities: missing CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON -- fix: "
                    .to_owned(),
                format!(
                    "WARN {iface_line}XDP hook free; native XDP support unknown without CAP_BPF"
                ),
            ],
            "native XDP supported",
        ),
    ];
    for (name, prefix, code, needles, forbidden) in cases {
        let mut command = match prefix.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command.args(["check", "--iface", &host]);
        let output = run_command(&mut command, LIMIT)
            .unwrap_or_else(|error| panic!("case {name}: running portmon check: {error:#}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(code),
            "case {name}: expected exit {code}, got {:?}; stdout:\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        for needle in &needles {
            assert!(
                stdout.lines().any(|line| line.starts_with(needle.as_str())),
                "case {name}: expected a line starting with {needle:?}, got:\n{stdout}"
            );
        }
        assert!(
            !stdout.contains(forbidden),
            "case {name}: expected no {forbidden:?}, got:\n{stdout}"
        );
        for line in stdout.lines() {
            let status = line.split_whitespace().next().unwrap_or_default();
            assert!(
                ["OK", "WARN", "FAIL"].contains(&status),
                "case {name}: every line starts with OK/WARN/FAIL, got {line:?}"
            );
            assert!(
                status == "OK" || line.contains(" -- fix: "),
                "case {name}: every problem line carries its fix, got {line:?}"
            );
        }
    }
    // The probe detached what it attached.
    assert_eq!(
        xdp_programs(&host).expect("querying XDP"),
        Vec::<u32>::new(),
        "expected the native probe to leave nothing on {host}"
    );
}
