//! Payload classification in the real kernel programs (BPF_PROG_TEST_RUN): one table of
//! frames, every program, and the payload map checked exactly after each run.
//!
//! The table is monitor-common's signature table (every signature with its near misses:
//! truncated records, one byte off, wrong case, wrong lengths), each payload carried in
//! IPv4 TCP and in IPv4 UDP to a tracked port, then rows for what the carrier changes:
//! IPv6 with extension headers, VLAN and QinQ tags, IPv4 options, first fragments, a
//! message split across segments, zero-length payloads, bytes past the IP or UDP length,
//! untracked ports and packets that are not counted under a port at all.
#![expect(clippy::expect_used, reason = "tests panic with what they expected")]

use aya::programs::ProgramError;
use monitor_common::{
    layout::{Direction, L4, PAYLOAD_SLOTS},
    parse::{Parsed, parse},
    payload::{
        PayloadKind, reference,
        samples::{self, snmp_community, snmp_v3, tls_client_hello},
    },
};
use portmon::{dataplane::LoadOptions, payload_map::Tracking};
use portmon_tests::{
    frames::{
        Ext, Frame, Icmp, Ipv4, Ipv6, TCP_ACK, TCP_PSH, TCP_SYN, TPID_QINQ, TPID_VLAN, Tcp, Udp,
        hex, proto,
    },
    testrun::{Hook, PayloadDelta, Runner, describe, describe_payload, expected_delta, refusal},
};

/// Tracked in both directions.
const TRACKED_TCP: u16 = 4443;
const TRACKED_UDP: u16 = 1161;
/// Never tracked.
const UNTRACKED_TCP: u16 = 8081;
const UNTRACKED_UDP: u16 = 162;

/// One row: a frame and the kind its payload must be counted as (`None`: nothing counted).
struct Row {
    name: String,
    frame: Vec<u8>,
    expected: Option<PayloadKind>,
}

fn row(name: impl Into<String>, frame: &Frame, expected: Option<PayloadKind>) -> Row {
    Row {
        name: name.into(),
        frame: frame.build(),
        expected,
    }
}

/// What the kernel counts for a payload of kind `kind`: signature kinds only.
fn counted(kind: PayloadKind) -> Option<PayloadKind> {
    ((kind as u32) < PayloadKind::SIGNATURES).then_some(kind)
}

fn v4_tcp(port: u16) -> Frame {
    Frame::new()
        .ipv4(Ipv4::new())
        .tcp(Tcp::new(port).flags(TCP_ACK | TCP_PSH))
}

fn v4_udp(port: u16) -> Frame {
    Frame::new().ipv4(Ipv4::new()).udp(Udp::new(port))
}

const HTTP_GET: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n";

#[expect(clippy::too_many_lines, reason = "one table, one row per case")]
fn table() -> Vec<Row> {
    use PayloadKind::{Http, MailOrLogin, SnmpV1, SnmpV2c, SnmpV3, Ssh, Tls};
    let mut rows = Vec::new();
    // ---- Every signature and near miss, in TCP and in UDP ------------------------------
    for case in samples::table() {
        let expected = counted(case.expected);
        rows.push(row(
            format!("tcp: {}", case.name),
            &v4_tcp(TRACKED_TCP).payload(&case.payload),
            expected,
        ));
        rows.push(row(
            format!("udp: {}", case.name),
            &v4_udp(TRACKED_UDP).payload(&case.payload),
            expected,
        ));
    }
    let snmp_v2c = snmp_community(1, 0);
    let fragment_of = |bytes: &[u8], len: usize| bytes[..len].to_vec();
    rows.extend([
        // ---- Carriers ----------------------------------------------------------------
        row(
            "ipv6 tcp http",
            &Frame::new()
                .ipv6(Ipv6::new())
                .tcp(Tcp::new(TRACKED_TCP).flags(TCP_ACK))
                .payload(HTTP_GET),
            Some(Http),
        ),
        row(
            "ipv6 hop-by-hop and destination options, tcp tls",
            &Frame::new()
                .ipv6(Ipv6::new().ext(Ext::hop_by_hop(1)).ext(Ext::dest_opts(0)))
                .tcp(Tcp::new(TRACKED_TCP).flags(TCP_ACK))
                .payload(&tls_client_hello()),
            Some(Tls),
        ),
        row(
            "ipv6 udp snmp v3",
            &Frame::new()
                .ipv6(Ipv6::new())
                .udp(Udp::new(TRACKED_UDP))
                .payload(&snmp_v3(1)),
            Some(SnmpV3),
        ),
        row(
            "802.1q udp snmp v2c",
            &v4_udp(TRACKED_UDP).vlan(TPID_VLAN, 10).payload(&snmp_v2c),
            Some(SnmpV2c),
        ),
        row(
            "qinq ipv6 tcp ssh",
            &Frame::new()
                .ipv6(Ipv6::new())
                .tcp(Tcp::new(TRACKED_TCP).flags(TCP_ACK))
                .vlan(TPID_QINQ, 100)
                .vlan(TPID_VLAN, 200)
                .payload(b"SSH-2.0-OpenSSH_9.6\r\n"),
            Some(Ssh),
        ),
        row(
            "qinq ipv4 udp snmp v1",
            &v4_udp(TRACKED_UDP)
                .vlan(TPID_QINQ, 1)
                .vlan(TPID_VLAN, 2)
                .payload(&snmp_community(0, 2)),
            Some(SnmpV1),
        ),
        row(
            "ipv4 options, tcp smtp greeting",
            &Frame::new()
                .ipv4(Ipv4::new().options(&[1, 1, 1, 0]))
                .tcp(Tcp::new(TRACKED_TCP).flags(TCP_ACK))
                .payload(b"220 mail.example ESMTP\r\n"),
            Some(MailOrLogin),
        ),
        row(
            "tcp with options (timestamps), imap login",
            &Frame::new()
                .ipv4(Ipv4::new())
                .tcp(
                    Tcp::new(TRACKED_TCP)
                        .flags(TCP_ACK)
                        .options(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]),
                )
                .payload(b"a1 LOGIN user secret\r\n"),
            Some(MailOrLogin),
        ),
        // ---- Fragments ---------------------------------------------------------------
        row(
            "ipv4 first fragment, tcp http",
            &Frame::new()
                .ipv4(Ipv4::new().fragment(0, true))
                .tcp(Tcp::new(TRACKED_TCP).flags(TCP_ACK))
                .payload(HTTP_GET),
            Some(Http),
        ),
        row(
            "ipv4 first fragment, udp snmp whose length spans the later fragments",
            &Frame::new()
                .ipv4(Ipv4::new().fragment(0, true))
                .udp(Udp::new(TRACKED_UDP).len(u16::try_from(8 + snmp_v2c.len()).expect("short")))
                .payload(&fragment_of(&snmp_v2c, 24)),
            None,
        ),
        row(
            "ipv6 first fragment, udp carrying a whole snmp v2c message",
            &Frame::new()
                .ipv6(Ipv6::new().ext(Ext::fragment(0, true)))
                .udp(Udp::new(TRACKED_UDP).len(1400))
                .payload(&snmp_v2c),
            Some(SnmpV2c),
        ),
        row(
            "ipv4 later fragment starting with an http request is not a port",
            &Frame::new()
                .ipv4(Ipv4::new().fragment(185, false).protocol(proto::TCP))
                .payload(HTTP_GET),
            None,
        ),
        // ---- A message split across segments -----------------------------------------
        row(
            "http split: first segment holds the method",
            &v4_tcp(TRACKED_TCP).payload(&HTTP_GET[..9]),
            Some(Http),
        ),
        row(
            "http split: second segment starts mid-message",
            &v4_tcp(TRACKED_TCP).payload(&HTTP_GET[9..]),
            None,
        ),
        row(
            "http split inside the method: first segment",
            &v4_tcp(TRACKED_TCP).payload(&HTTP_GET[..2]),
            None,
        ),
        row(
            "http split inside the method: second segment",
            &v4_tcp(TRACKED_TCP).payload(&HTTP_GET[2..]),
            None,
        ),
        row(
            "tls record header split: first segment",
            &v4_tcp(TRACKED_TCP).payload(&tls_client_hello()[..3]),
            None,
        ),
        row(
            "tls record header split: second segment",
            &v4_tcp(TRACKED_TCP).payload(&tls_client_hello()[3..]),
            None,
        ),
        row(
            "tls handshake continued in a second record-less segment",
            &v4_tcp(TRACKED_TCP).payload(&[0x5a; 1200]),
            None,
        ),
        // ---- Where the payload ends --------------------------------------------------
        row(
            "zero-length payload: tcp syn",
            &Frame::new()
                .ipv4(Ipv4::new())
                .tcp(Tcp::new(TRACKED_TCP).flags(TCP_SYN)),
            None,
        ),
        row("zero-length payload: udp", &v4_udp(TRACKED_UDP), None),
        row(
            "zero-length payload padded to 60 bytes",
            &v4_tcp(TRACKED_TCP).pad_to(60),
            None,
        ),
        row(
            "bytes past the ip total length are not payload",
            &Frame::new()
                .ipv4(Ipv4::new().total_len(20 + 20 + 3))
                .tcp(Tcp::new(TRACKED_TCP).flags(TCP_ACK))
                .payload(b"GET / HTTP/1.1\r\n"),
            None,
        ),
        row(
            "bytes past the udp length are not payload",
            &v4_udp(TRACKED_UDP)
                .payload(b"GET / HTTP/1.1\r\n")
                .udp(Udp::new(TRACKED_UDP).len(8 + 3)),
            None,
        ),
        row(
            "udp length shorter than the ip packet, the message inside it",
            &v4_udp(TRACKED_UDP)
                .udp(Udp::new(TRACKED_UDP).len(u16::try_from(8 + snmp_v2c.len()).expect("short")))
                .payload(&[snmp_v2c.as_slice(), &[0; 10]].concat()),
            Some(SnmpV2c),
        ),
        row(
            "a one-byte payload",
            &v4_tcp(TRACKED_TCP).payload(b"G"),
            None,
        ),
        row(
            "a large http response",
            &v4_tcp(TRACKED_TCP)
                .payload(&[b"HTTP/1.1 200 OK\r\n".as_slice(), &[b'x'; 1400]].concat()),
            Some(Http),
        ),
        // ---- Not tracked or not a port -----------------------------------------------
        row(
            "untracked tcp port, http",
            &v4_tcp(UNTRACKED_TCP).payload(HTTP_GET),
            None,
        ),
        row(
            "untracked udp port, snmp",
            &v4_udp(UNTRACKED_UDP).payload(&snmp_v2c),
            None,
        ),
        row(
            "tracked number, other protocol: udp to the tracked tcp port",
            &v4_udp(TRACKED_TCP).payload(HTTP_GET),
            None,
        ),
        row(
            "icmp echo is not a port",
            &Frame::new().ipv4(Ipv4::new()).icmp(Icmp::echo_v4()),
            None,
        ),
    ]);
    rows
}

/// The payload bytes the parser finds in `frame`, if it is counted under a port.
fn parsed_payload(frame: &[u8]) -> Option<(L4, u16, &[u8])> {
    match parse(frame, frame.len()) {
        Parsed::Port {
            l4,
            port,
            payload_offset,
            payload_len,
            ..
        } => {
            let start = usize::from(payload_offset);
            Some((l4, port, &frame[start..start + usize::from(payload_len)]))
        }
        Parsed::Unparsed { .. } => None,
    }
}

fn tracked_runner(options: LoadOptions) -> Runner {
    let mut runner = Runner::with_options(options).expect("the data plane loads (run as root)");
    for direction in Direction::ALL {
        for (l4, port) in [(L4::Tcp, TRACKED_TCP), (L4::Udp, TRACKED_UDP)] {
            let tracking = runner.track(direction, l4, port).expect("tracking works");
            assert!(
                matches!(tracking, Tracking::New(_)),
                "{direction:?} {l4:?} {port}: expected a new slot, got {tracking:?}"
            );
        }
    }
    runner
}

#[test]
fn every_row_is_classified_exactly_by_every_program() {
    let mut runner = tracked_runner(LoadOptions::default());
    let rows = table();
    let mut failures = Vec::new();
    let mut runs = 0;
    for row in &rows {
        // The table's expectations against the host reference on the bytes the parser
        // calls payload: a wrong row fails here, not as a kernel mismatch.
        let tracked = parsed_payload(&row.frame).filter(|&(l4, port, _)| {
            (l4, port) == (L4::Tcp, TRACKED_TCP) || (l4, port) == (L4::Udp, TRACKED_UDP)
        });
        let by_reference =
            tracked.and_then(|(_, _, payload)| counted(reference::classify(payload)));
        if by_reference != row.expected {
            failures.push(format!(
                "{}: the reference says {by_reference:?}, the row {:?}",
                row.name, row.expected
            ));
            continue;
        }
        for hook in Hook::ALL {
            if refusal(hook, &row.frame).is_some() {
                continue;
            }
            runs += 1;
            let direction = hook.direction();
            let counters = runner.run(hook, &row.frame);
            let payload = runner.payload_delta();
            let expected_counters = expected_delta(
                direction,
                &parse(row.frame.as_slice(), row.frame.len()),
                row.frame.len(),
            );
            match counters {
                Ok(got) if got == expected_counters => {}
                Ok(got) => failures.push(format!(
                    "{} / {hook}: port counters: expected {}, got {}",
                    row.name,
                    describe(&expected_counters),
                    describe(&got)
                )),
                Err(error) => failures.push(format!("{} / {hook}: {error}", row.name)),
            }
            let expected_payload: PayloadDelta = match (row.expected, tracked) {
                (Some(kind), Some((l4, port, _))) => {
                    PayloadDelta::from([(((direction, l4, port), kind), 1)])
                }
                _ => PayloadDelta::new(),
            };
            if payload != expected_payload {
                failures.push(format!(
                    "{} / {hook}:\n  expected {}\n  got      {}\n  frame {}",
                    row.name,
                    describe_payload(&expected_payload),
                    describe_payload(&payload),
                    hex(&row.frame)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    for kind in PayloadKind::ALL
        .iter()
        .filter(|kind| counted(**kind).is_some())
    {
        assert!(
            rows.iter().any(|row| row.expected == Some(*kind)),
            "expected a row counted as {kind:?}"
        );
    }
    assert!(
        runs > 3 * rows.len() - 10,
        "nearly every row runs through the three programs, {runs} runs"
    );
}

/// With classification off at load time, a tracked port's payloads count nothing, and the
/// port counters are unchanged.
#[test]
fn classification_off_counts_no_payload() {
    let mut runner = tracked_runner(LoadOptions {
        payload: false,
        ..LoadOptions::default()
    });
    let frame = v4_tcp(TRACKED_TCP).payload(HTTP_GET).build();
    for hook in Hook::ALL {
        let counters = runner.run(hook, &frame).expect("the frame runs");
        assert_eq!(
            counters.len(),
            1,
            "{hook}: expected the port counter alone, got {}",
            describe(&counters)
        );
        let payload = runner.payload_delta();
        assert!(
            payload.is_empty(),
            "{hook}: expected no payload counted, got {}",
            describe_payload(&payload)
        );
    }
}

/// Tracking is per direction: a port tracked for ingress counts nothing on egress.
#[test]
fn tracking_is_per_direction() {
    let mut runner = Runner::new().expect("the data plane loads (run as root)");
    let tracking = runner
        .track(Direction::Ingress, L4::Tcp, 8443)
        .expect("tracking works");
    assert_eq!(tracking, Tracking::New(1));
    let frame = v4_tcp(8443).payload(&tls_client_hello()).build();
    for hook in Hook::ALL {
        runner.run(hook, &frame).expect("the frame runs");
        let got = runner.payload_delta();
        let expected = match hook.direction() {
            Direction::Ingress => {
                PayloadDelta::from([(((Direction::Ingress, L4::Tcp, 8443), PayloadKind::Tls), 1)])
            }
            Direction::Egress => PayloadDelta::new(),
        };
        assert_eq!(
            got,
            expected,
            "{hook}: expected {}, got {}",
            describe_payload(&expected),
            describe_payload(&got)
        );
    }
}

/// Every slot up to the last one counts, and a full map tracks no more.
#[test]
fn the_last_slot_counts_and_a_full_map_refuses() {
    let mut runner = Runner::new().expect("the data plane loads (run as root)");
    let mut last = None;
    for port in 1..PAYLOAD_SLOTS {
        let port = u16::try_from(port).expect("below 1024");
        last = Some(port);
        let tracking = runner
            .track(Direction::Ingress, L4::Udp, port)
            .expect("tracking works");
        assert!(
            matches!(tracking, Tracking::New(_)),
            "port {port}: got {tracking:?}"
        );
    }
    let last = last.expect("at least one slot");
    assert_eq!(
        runner
            .track(Direction::Ingress, L4::Udp, 2000)
            .expect("no error"),
        Tracking::Full
    );
    for (port, expected) in [(last, Some(PayloadKind::SnmpV2c)), (2000, None)] {
        let frame = v4_udp(port).payload(&snmp_community(1, 0)).build();
        runner.run(Hook::Xdp, &frame).expect("the frame runs");
        let got = runner.payload_delta();
        let expected: PayloadDelta = expected
            .map(|kind| (((Direction::Ingress, L4::Udp, port), kind), 1))
            .into_iter()
            .collect();
        assert_eq!(
            got,
            expected,
            "port {port}: expected {}, got {}",
            describe_payload(&expected),
            describe_payload(&got)
        );
    }
}

/// `capset(2)` on the calling thread only: every capability set emptied.
fn drop_this_threads_capabilities() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: a version-3 header and its two data words, live for the call; capset only
    // reads them and changes the calling thread's capabilities.
    let result = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    assert_eq!(result, 0, "capset: {}", std::io::Error::last_os_error());
}

/// The daemon tracks ports after dropping every capability: the slot map is written
/// through the mapping made at load, which needs none.
#[test]
fn tracking_works_without_any_capability() {
    let mut runner = Runner::new().expect("the data plane loads (run as root)");
    let tracker = runner.payload_tracker();
    let tracking = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                drop_this_threads_capabilities();
                // Proof that the thread lost them: a packet socket needs CAP_NET_RAW.
                // SAFETY: plain socket(2); the descriptor is closed if it was opened.
                let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
                let error = std::io::Error::last_os_error();
                if fd >= 0 {
                    // SAFETY: closing the descriptor just opened.
                    unsafe { libc::close(fd) };
                }
                assert!(
                    fd < 0 && error.raw_os_error() == Some(libc::EPERM),
                    "expected EPERM for a packet socket without capabilities, got fd {fd} ({error})"
                );
                tracker.track(Direction::Ingress, L4::Tcp, 993)
            })
            .join()
            .expect("the capability-less thread finishes")
    })
    .expect("tracking works without capabilities");
    assert_eq!(tracking, Tracking::New(1));
    let frame = v4_tcp(993).payload(b"* OK IMAP4rev1 ready\r\n").build();
    runner.run(Hook::Xdp, &frame).expect("the frame runs");
    let expected = PayloadDelta::from([(
        ((Direction::Ingress, L4::Tcp, 993), PayloadKind::MailOrLogin),
        1,
    )]);
    assert_eq!(
        runner.payload_delta(),
        expected,
        "the port tracked without capabilities counts"
    );
}

/// A refused run (a frame shorter than the IP header through TC) counts no payload.
#[test]
fn refused_frames_count_nothing() {
    let mut runner = tracked_runner(LoadOptions::default());
    let frame = v4_tcp(TRACKED_TCP).payload(HTTP_GET).build();
    let short = &frame[..30];
    match runner.run_unchecked(Hook::TcEgress, short, None) {
        Err(ProgramError::SyscallError(error))
            if error.io_error.raw_os_error() == Some(libc::EINVAL) => {}
        other => panic!("expected EINVAL for a 30-byte IPv4 frame through TC, got {other:?}"),
    }
    let payload = runner.payload_delta();
    assert!(
        payload.is_empty(),
        "expected nothing, got {}",
        describe_payload(&payload)
    );
}
