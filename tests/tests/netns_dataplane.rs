//! portmon's programs on a live link: XDP (native, then generic) and TC egress on the host
//! end of a veth pair, real TCP and UDP from a peer namespace plus crafted frames sent raw,
//! and every counter checked exactly, in both directions.
//!
//! Two references, each checked against the whole counter map:
//!
//! * **what is known**: the crafted frames (by the verdict their table row states), UDP
//!   datagrams and the fragments the kernel cuts them into (by arithmetic on the MTU), and
//!   TCP (whose ACKs and retransmissions are not deterministic) as the capture saw it;
//! * **what crossed**: every frame a packet socket on the peer end saw, parsed: a frame the
//!   peer sent is one the host received (XDP), a frame the peer received is one the host
//!   sent (TC egress). A GSO super-packet the peer received counts as the wire frames it
//!   stands for.
//!
//! The counters must equal both, with nothing else moved: no frame is lost, none counted
//! twice, none counted in the wrong place.
//!
//! # Segmentation
//!
//! TC egress sees the host's TCP super-packets before segmentation and counts `gso_segs`
//! wire packets (`count_skb` in monitor-ebpf). The bulk host-to-peer transfer runs twice:
//! with TSO off on the host end, the kernel segments after the TC hook and the peer
//! captures real wire frames; with TSO on, the peer receives the super-packets themselves,
//! and the capture's `virtio_net_hdr` (gso_size) says how many wire frames each stands for.
//!
//! On ingress, XDP must see wire frames, and XDP cannot know `gso_segs`.
//!
//! * Native XDP on a veth sees wire frames: attaching a program without frags support
//!   takes the GSO features off the peer (`veth_xdp_set()` in drivers/net/veth.c), so the
//!   peer segments before sending. The native test checks that the peer sent no GSO frame.
//! * Generic XDP runs on the skb (`do_xdp_generic()` from `__netif_receive_skb_core()`,
//!   net/core/dev.c). GRO is not a problem: a device with a generic XDP program skips GRO
//!   (`netif_elide_gro()` in include/linux/netdevice.h tests `dev->xdp_prog`), and
//!   attaching one turns LRO and hardware GRO off (`generic_xdp_install()`), so from a NIC
//!   it sees wire frames. The generic test turns GRO *on* at the host end to pin that.
//!   What generic XDP cannot count is a super-packet that arrives whole: a veth (or tap)
//!   peer with TSO on hands over its unsegmented GSO skb, and XDP counts it as one packet
//!   of its full length. The generic test therefore turns TSO off on the peer, as a wire
//!   would; `generic_xdp_counts_an_unsegmented_super_packet_once` pins the behaviour.
//!   Where that matters (generic mode on a veth or tap whose peer sends GSO), the TC
//!   ingress program counts exactly: it reads `gso_segs` like TC egress does.
#![expect(clippy::expect_used, reason = "tests panic with what they expected")]

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket},
    thread,
    time::{Duration, Instant},
};

use aya::programs::TcAttachType;
use monitor_common::{
    layout::{Counter, Direction, L4, Reason},
    parse::{Parsed, parse},
};
use portmon::{
    attach::{XdpMode, XdpModeInUse, attach_tc, attach_xdp},
    dataplane::{DataPlane, LoadOptions, TC_EGRESS_PROGRAM},
};
use portmon_tests::{
    frames::{
        ETH_LEN, Ext, Frame, IPV4_LEN, IPV6_LEN, Icmp, Ipv4, Ipv6, TCP_ACK, TCP_SYN, TPID_QINQ,
        TPID_VLAN, Tcp, UDP_LEN, Udp, proto, reason, with_protocol,
    },
    netns::{Captured, Crossing, End, NOBODY_MAC, Offload, Stack, Topology},
    testrun::{CounterKey, Delta, add_expected, describe, diff},
};

/// Every wait for traffic is bounded by this.
const DEADLINE: Duration = Duration::from_secs(20);
/// The link counts as idle after this long without a frame. Longer than the 200 ms
/// delayed-ACK ceiling, so no pending ACK is still to come.
const QUIET: Duration = Duration::from_millis(500);
/// The veth MTU (the kernel's default).
const MTU: usize = 1500;
/// Bytes of each bulk TCP transfer.
const BULK: usize = 1 << 20;

// Host ports, each used by one kind of traffic so a wrong count points at its cause.
const TCP_ECHO: u16 = 8080;
const TCP_SINK: u16 = 5001;
const TCP_SOURCE: u16 = 5002;
const TCP_CLOSED: u16 = 9;
const UDP_ECHO: u16 = 6010;
const UDP_FRAGMENTED: u16 = 6020;
/// The peer's UDP port for the echo replies (host egress).
const PEER_UDP: u16 = 7001;

/// UDP datagrams from the peer: (destination port, datagrams, payload bytes), sent over
/// IPv4 and IPv6 alike.
const UDP_SINKS: &[(u16, usize, usize)] =
    &[(6001, 5, 100), (6002, 7, 1), (6003, 3, 1000), (6004, 2, 0)];
/// Datagrams through the UDP echo and their payload.
const UDP_ECHOES: (usize, usize) = (5, 64);
/// Payload of the datagram the peer's kernel fragments.
const UDP_FRAGMENTED_LEN: usize = 3000;

#[test]
fn native_xdp_and_tc_egress_count_every_frame_exactly() {
    run(XdpMode::Native);
}

#[test]
fn generic_xdp_and_tc_egress_count_every_frame_exactly() {
    run(XdpMode::Generic);
}

/// Generic XDP sees the skb the host end receives. A veth peer with TSO on sends its TCP
/// super-packets unsegmented, so generic XDP counts each as one packet of its full length,
/// not as the wire frames it stands for (which TC egress, reading `gso_segs`, would count).
/// This pins that limit: if a kernel starts segmenting first, this test says so.
#[test]
fn generic_xdp_counts_an_unsegmented_super_packet_once() {
    let Attached { topo, data_plane } = attach(XdpMode::Generic);
    topo.set_offload(End::Peer, Offload::Tso, true)
        .expect("TSO on at the peer");
    let counters = data_plane.counters().expect("the counter map is mapped");
    let capture = topo.capture().expect("the peer end is captured");
    let before = counters.read();
    bulk_to_host(&topo);
    assert!(
        capture.wait_quiet(QUIET, DEADLINE),
        "the link never went quiet for {QUIET:?} within {DEADLINE:?}"
    );
    let counted = diff(&before, &counters.read());
    let frames = capture.finish().expect("the capture is complete");

    let key = CounterKey::Port(Direction::Ingress, L4::Tcp, TCP_SINK);
    // The peer's frames to the sink, each counted once at its captured length.
    let mut as_sent = Delta::new();
    let mut super_packets = 0;
    for captured in frames.iter().filter(|c| c.crossing == Crossing::PeerSent) {
        let parsed = parse(captured.frame.as_slice(), captured.frame.len());
        if matches!(
            parsed,
            Parsed::Port {
                l4: L4::Tcp,
                port: TCP_SINK,
                ..
            }
        ) {
            add_expected(
                &mut as_sent,
                Direction::Ingress,
                &parsed,
                captured.frame.len(),
            );
            super_packets += usize::from(captured.gso.is_some());
        }
    }
    let as_sent = as_sent.get(&key).copied().unwrap_or_default();
    let on_wire = crossed(&frames).get(&key).copied().unwrap_or_default();
    assert!(
        super_packets > 0,
        "the peer sent no GSO super-packet with TSO on"
    );
    assert_eq!(
        counted.get(&key).copied().unwrap_or_default(),
        as_sent,
        "generic XDP counts each skb the peer sent once, at its length"
    );
    assert!(
        on_wire.packets > as_sent.packets,
        "the wire would carry more frames ({}) than skbs ({})",
        on_wire.packets,
        as_sent.packets
    );
}

/// A topology with portmon loaded and attached to its host end.
struct Attached {
    topo: Topology,
    data_plane: DataPlane,
}

fn attach(mode: XdpMode) -> Attached {
    let topo = Topology::new(Stack::Dual).expect("the veth topology is set up (run as root)");
    let mut data_plane =
        DataPlane::load(LoadOptions::default()).expect("the data plane loads (run as root)");
    let in_use = attach_xdp(&mut data_plane, topo.host_if(), mode).expect("XDP attaches");
    let wanted = match mode {
        XdpMode::Generic => XdpModeInUse::Generic,
        XdpMode::Native | XdpMode::Auto => XdpModeInUse::Native,
    };
    assert_eq!(in_use, wanted, "XDP mode in use on {}", topo.host_if());
    attach_tc(
        &mut data_plane,
        topo.host_if(),
        TC_EGRESS_PROGRAM,
        TcAttachType::Egress,
    )
    .expect("TC egress attaches");
    Attached { topo, data_plane }
}

fn run(mode: XdpMode) {
    let Attached { topo, data_plane } = attach(mode);
    if mode == XdpMode::Generic {
        // Wire-sized frames from the peer; GRO on, which generic XDP must elide. See the
        // module documentation.
        topo.set_offload(End::Peer, Offload::Tso, false)
            .expect("TSO off on the peer");
        topo.set_offload(End::Host, Offload::Gro, true)
            .expect("GRO on at the host end");
    }
    let counters = data_plane.counters().expect("the counter map is mapped");
    let capture = topo.capture().expect("the peer end is captured");
    let before = counters.read();

    let mut known = Delta::new();
    tcp_traffic(&topo);
    udp_traffic(&topo, &mut known);
    crafted_traffic(&topo, &mut known);

    assert!(
        capture.wait_quiet(QUIET, DEADLINE),
        "the link never went quiet for {QUIET:?} within {DEADLINE:?}"
    );
    let after = counters.read();
    let frames = capture.finish().expect("the capture is complete");
    let counted = diff(&before, &after);

    check_bulk_segmentation(&frames);
    let crossed = crossed(&frames);
    add_tcp(&mut known, &frames);

    let mut failures = Vec::new();
    if counted != crossed {
        failures.push(format!(
            "counters differ from the {} captured frames:\n  {}",
            frames.len(),
            mismatch(&crossed, &counted)
        ));
    }
    if counted != known {
        failures.push(format!(
            "counters differ from the known traffic:\n  {}",
            mismatch(&known, &counted)
        ));
    }
    assert!(
        failures.is_empty(),
        "{mode:?} XDP on {}: {}",
        topo.host_if(),
        failures.join("\n")
    );
    // Exactness with nothing counted would be no test.
    for direction in Direction::ALL {
        assert!(
            counted.keys().any(|key| key_direction(*key) == direction),
            "nothing was counted in {direction:?}: {}",
            describe(&counted)
        );
    }
}

/// One line per counter that differs: `expected -> counted`.
fn mismatch(expected: &Delta, counted: &Delta) -> String {
    let keys: std::collections::BTreeSet<_> = expected.keys().chain(counted.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let (want, got) = (
                expected.get(key).copied().unwrap_or_default(),
                counted.get(key).copied().unwrap_or_default(),
            );
            (want != got).then(|| {
                format!(
                    "{key:?}: expected {}p/{}B/{}syn, counted {}p/{}B/{}syn",
                    want.packets, want.bytes, want.syns, got.packets, got.bytes, got.syns
                )
            })
        })
        .collect::<Vec<_>>()
        .join("\n  ")
}

fn key_direction(key: CounterKey) -> Direction {
    match key {
        CounterKey::Port(direction, ..)
        | CounterKey::IpProtocol(direction, _)
        | CounterKey::Reason(direction, _) => direction,
    }
}

/// Adds `packets` packets of `bytes` bytes in total to `key`.
fn add(delta: &mut Delta, key: CounterKey, packets: u64, bytes: u64, syns: u64) {
    delta.entry(key).or_default().accumulate(&Counter {
        packets,
        bytes,
        syns,
    });
}

/// What the capture says crossed, as counter changes.
fn crossed(frames: &[Captured]) -> Delta {
    let mut delta = Delta::new();
    for captured in frames {
        add_captured(&mut delta, captured);
    }
    delta
}

fn add_captured(delta: &mut Delta, captured: &Captured) {
    let direction = match captured.crossing {
        Crossing::PeerSent => Direction::Ingress,
        Crossing::PeerReceived => Direction::Egress,
    };
    let parsed = parse(captured.frame.as_slice(), captured.frame.len());
    match (captured.gso, parsed) {
        (
            Some(gso),
            Parsed::Port {
                l4,
                port,
                syn,
                payload_offset,
                ..
            },
        ) if gso.size > 0 => {
            // A super-packet: the wire carries one frame per `gso.size` bytes of payload,
            // each with the headers again.
            let headers = u64::from(payload_offset);
            let len = captured.frame.len() as u64;
            let segments = (len - headers).div_ceil(u64::from(gso.size)).max(1);
            let bytes = len + (segments - 1) * headers;
            add(
                delta,
                CounterKey::Port(direction, l4, port),
                segments,
                bytes,
                if syn { segments } else { 0 },
            );
        }
        _ => add_expected(delta, direction, &parsed, captured.frame.len()),
    }
}

/// TCP's frames, as the capture saw them, into the known traffic.
fn add_tcp(known: &mut Delta, frames: &[Captured]) {
    for captured in frames {
        let parsed = parse(captured.frame.as_slice(), captured.frame.len());
        if let Parsed::Port { l4: L4::Tcp, .. } = parsed
            && captured.frame.get(..6) != Some(&NOBODY_MAC[..])
        {
            add_captured(known, captured);
        }
    }
}

/// The bulk transfers were really segmented: with TSO off the peer received only
/// MTU-sized frames, with TSO on at least one super-packet of several segments.
fn check_bulk_segmentation(frames: &[Captured]) {
    let received = || {
        frames
            .iter()
            .filter(|captured| captured.crossing == Crossing::PeerReceived)
    };
    let super_packets = received()
        .filter(|captured| {
            captured
                .gso
                .is_some_and(|gso| captured.frame.len() > usize::from(gso.size) + ETH_LEN + 60)
        })
        .count();
    assert!(
        super_packets > 0,
        "with TSO on, the host sent no GSO super-packet: the gso_segs path went unchecked"
    );
    let wire_sized = received()
        .filter(|captured| captured.gso.is_none() && captured.frame.len() == ETH_LEN + MTU)
        .count();
    assert!(
        wire_sized >= BULK / MTU,
        "with TSO off, expected at least {} full-sized wire frames, got {wire_sized}",
        BULK / MTU
    );
    let sent_gso = frames
        .iter()
        .filter(|captured| captured.crossing == Crossing::PeerSent && captured.gso.is_some())
        .count();
    assert_eq!(
        sent_gso, 0,
        "the peer sent GSO super-packets: XDP would see them as one packet each"
    );
}

/// Real TCP from the peer: echo connections over IPv4 and IPv6, connections refused
/// (RST), and bulk transfers both ways (host to peer twice: TSO off, then on).
fn tcp_traffic(topo: &Topology) {
    let v4 = IpAddr::V4(topo.host_v4());
    let v6 = IpAddr::V6(topo.host_v6().expect("a dual-stack topology"));
    let echo_v4 = listen(v4, TCP_ECHO);
    let echo_v6 = listen(v6, TCP_ECHO);
    let source = listen(v6, TCP_SOURCE);
    let source_v4 = listen(v4, TCP_SOURCE);

    thread::scope(|scope| {
        let echo_v4 = scope.spawn(move || serve(&echo_v4, 2, echo));
        let echo_v6 = scope.spawn(move || serve(&echo_v6, 2, echo));
        let peer = topo.in_peer(|| {
            for host in [v4, v6] {
                for request in [&b"hello"[..], &[0x5a; 900]] {
                    let reply = exchange(SocketAddr::new(host, TCP_ECHO), request);
                    assert_eq!(reply, request, "the echo server returns the request");
                }
                let refused = TcpStream::connect_timeout(&SocketAddr::new(host, TCP_CLOSED), DEADLINE);
                assert!(
                    refused
                        .as_ref()
                        .is_err_and(|error| error.kind() == ErrorKind::ConnectionRefused),
                    "connecting to closed port {TCP_CLOSED} on {host}: expected refused, got {refused:?}"
                );
            }
        });
        peer.expect("the peer namespace is entered");
        for server in [echo_v4, echo_v6] {
            server.join().expect("a TCP server thread");
        }
    });

    bulk_to_host(topo);

    // Host to peer, segmented after the TC hook (TSO off), then as super-packets (TSO on).
    // A connection takes the device's offloads when it is made, so each gets its own.
    for (listener, tso) in [(source_v4, false), (source, true)] {
        topo.set_offload(End::Host, Offload::Tso, tso)
            .expect("switching TSO on the host end");
        let address = listener.local_addr().expect("a bound listener");
        thread::scope(|scope| {
            let server = scope.spawn(move || serve(&listener, 1, fill));
            let received = topo
                .in_peer(|| exchange(address, b"send"))
                .expect("the peer namespace is entered");
            assert_eq!(received.len(), BULK, "bytes the peer received (TSO {tso})");
            server.join().expect("the source thread");
        });
    }
}

/// [`BULK`] bytes from the peer to the host's IPv4 sink.
fn bulk_to_host(topo: &Topology) {
    let sink = listen(IpAddr::V4(topo.host_v4()), TCP_SINK);
    let address = sink.local_addr().expect("a bound listener");
    thread::scope(|scope| {
        let server = scope.spawn(move || serve(&sink, 1, drain));
        let report = topo
            .in_peer(|| exchange(address, &vec![0xa5; BULK]))
            .expect("the peer namespace is entered");
        let report: [u8; 8] = report
            .try_into()
            .expect("the sink reports its byte count in 8 bytes");
        assert_eq!(
            u64::from_be_bytes(report),
            BULK as u64,
            "bytes the sink received"
        );
        server.join().expect("the sink thread");
    });
}

fn listen(ip: IpAddr, port: u16) -> TcpListener {
    let listener = TcpListener::bind((ip, port)).expect("binding a host listener");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    listener
}

/// Accepts `connections` connections (bounded by [`DEADLINE`]) and runs `handle` on each.
fn serve(listener: &TcpListener, connections: usize, handle: fn(TcpStream)) {
    let deadline = Instant::now() + DEADLINE;
    let mut served = 0;
    while served < connections {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("a blocking stream");
                stream
                    .set_read_timeout(Some(DEADLINE))
                    .expect("a read timeout");
                stream
                    .set_write_timeout(Some(DEADLINE))
                    .expect("a write timeout");
                handle(stream);
                served += 1;
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "{served} of {connections} connections came within {DEADLINE:?}"
                );
                thread::sleep(Duration::from_millis(5));
            }
            Err(error) => panic!("accept: {error}"),
        }
    }
}

fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut data = Vec::new();
    stream.read_to_end(&mut data).expect("reading to EOF");
    data
}

fn echo(mut stream: TcpStream) {
    let request = read_all(&mut stream);
    stream.write_all(&request).expect("echoing");
}

fn drain(mut stream: TcpStream) {
    let received = read_all(&mut stream).len() as u64;
    stream
        .write_all(&received.to_be_bytes())
        .expect("reporting the count");
}

fn fill(mut stream: TcpStream) {
    let _request = read_all(&mut stream);
    stream
        .write_all(&vec![0x3c; BULK])
        .expect("sending the bulk");
}

/// Connects, sends `request`, half-closes and reads the reply to EOF.
fn exchange(address: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect_timeout(&address, DEADLINE).expect("connecting");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("a read timeout");
    stream
        .set_write_timeout(Some(DEADLINE))
        .expect("a write timeout");
    stream.write_all(request).expect("sending the request");
    stream.shutdown(Shutdown::Write).expect("half-closing");
    read_all(&mut stream)
}

/// UDP from the peer: datagrams to several ports over IPv4 and IPv6, an echo (replies
/// counted on egress), and a datagram too large for the MTU, which the peer's kernel
/// fragments. The counts are known in advance and added to `known`.
fn udp_traffic(topo: &Topology, known: &mut Delta) {
    let peer_v6 = topo.peer_v6().expect("a dual-stack topology");
    let hosts = [
        (
            IpAddr::V4(topo.host_v4()),
            IpAddr::V4(topo.peer_v4()),
            IPV4_LEN,
        ),
        (
            IpAddr::V6(topo.host_v6().expect("a dual-stack topology")),
            IpAddr::V6(peer_v6),
            IPV6_LEN,
        ),
    ];
    for &(host, peer, ip_len) in &hosts {
        let sinks: Vec<UdpSocket> = UDP_SINKS
            .iter()
            .chain([&(UDP_FRAGMENTED, 1, UDP_FRAGMENTED_LEN)])
            .map(|&(port, _, _)| UdpSocket::bind((host, port)).expect("binding a UDP sink"))
            .collect();
        let echo = UdpSocket::bind((host, UDP_ECHO)).expect("binding the UDP echo");
        echo.set_read_timeout(Some(DEADLINE))
            .expect("a read timeout");
        thread::scope(|scope| {
            let echo = scope.spawn(move || {
                let mut buffer = [0u8; 2048];
                for _ in 0..UDP_ECHOES.0 {
                    let (len, from) = echo.recv_from(&mut buffer).expect("an echo request");
                    echo.send_to(&buffer[..len], from).expect("echoing");
                }
            });
            topo.in_peer(|| {
                let socket = UdpSocket::bind((peer, PEER_UDP)).expect("binding the peer's UDP");
                socket
                    .set_read_timeout(Some(DEADLINE))
                    .expect("a read timeout");
                for &(port, count, len) in UDP_SINKS {
                    for _ in 0..count {
                        socket
                            .send_to(&vec![0x11; len], (host, port))
                            .expect("sending a datagram");
                    }
                }
                let mut buffer = [0u8; 2048];
                for _ in 0..UDP_ECHOES.0 {
                    socket
                        .send_to(&[0x22; UDP_ECHOES.1], (host, UDP_ECHO))
                        .expect("sending to the echo");
                    let len = socket.recv(&mut buffer).expect("the echo's reply");
                    assert_eq!(len, UDP_ECHOES.1, "the echo's reply length");
                }
                socket
                    .send_to(&[0x33; UDP_FRAGMENTED_LEN], (host, UDP_FRAGMENTED))
                    .expect("sending the fragmented datagram");
            })
            .expect("the peer namespace is entered");
            echo.join().expect("the UDP echo thread");
        });
        // Every datagram arrived (the fragmented one reassembled).
        let mut buffer = vec![0u8; 4096];
        for (socket, &(port, count, len)) in sinks.iter().zip(UDP_SINKS.iter().chain([&(
            UDP_FRAGMENTED,
            1,
            UDP_FRAGMENTED_LEN,
        )])) {
            socket
                .set_read_timeout(Some(DEADLINE))
                .expect("a read timeout");
            for n in 0..count {
                let got = socket.recv(&mut buffer).expect("a datagram at the sink");
                assert_eq!(got, len, "datagram {n} to {host} port {port}");
            }
        }

        let frame = |payload: usize| (ETH_LEN + ip_len + UDP_LEN + payload) as u64;
        for &(port, count, len) in UDP_SINKS {
            let count = count as u64;
            add(
                known,
                CounterKey::Port(Direction::Ingress, L4::Udp, port),
                count,
                count * frame(len),
                0,
            );
        }
        let (count, len) = (UDP_ECHOES.0 as u64, UDP_ECHOES.1);
        add(
            known,
            CounterKey::Port(Direction::Ingress, L4::Udp, UDP_ECHO),
            count,
            count * frame(len),
            0,
        );
        add(
            known,
            CounterKey::Port(Direction::Egress, L4::Udp, PEER_UDP),
            count,
            count * frame(len),
            0,
        );
        add_fragments(known, ip_len);
    }
}

/// The fragments of the [`UDP_FRAGMENTED_LEN`] datagram, cut as `ip_fragment()` /
/// `ip6_fragment()` cut at the MTU: the first is counted by its port, the others as
/// `fragment`.
fn add_fragments(known: &mut Delta, ip_len: usize) {
    // IPv6 puts an 8-byte fragment header in every fragment.
    let fragment_header = if ip_len == IPV6_LEN { 8 } else { 0 };
    let per_fragment = (MTU - ip_len - fragment_header) & !7;
    let mut remaining = UDP_LEN + UDP_FRAGMENTED_LEN;
    let mut first = true;
    while remaining > 0 {
        let chunk = remaining.min(per_fragment);
        let bytes = (ETH_LEN + ip_len + fragment_header + chunk) as u64;
        let key = if first {
            CounterKey::Port(Direction::Ingress, L4::Udp, UDP_FRAGMENTED)
        } else {
            CounterKey::Reason(Direction::Ingress, Reason::Fragment)
        };
        add(known, key, 1, bytes, 0);
        remaining -= chunk;
        first = false;
    }
}

/// One crafted frame, sent `times` times.
struct Crafted {
    name: &'static str,
    frame: Vec<u8>,
    expected: Parsed,
    times: u64,
}

/// Frames no socket would send, raw from the peer to [`NOBODY_MAC`] (so the host stack
/// drops them unseen after the hooks), with the peer's and host's own addresses.
#[expect(clippy::too_many_lines, reason = "one table, one row per shape")]
fn crafted_table(topo: &Topology) -> Vec<Crafted> {
    use portmon_tests::frames::{port as port_verdict, port_payload};
    let (src4, dst4) = (topo.peer_v4().octets(), topo.host_v4().octets());
    let (src6, dst6) = (
        topo.peer_v6().expect("a dual-stack topology").octets(),
        topo.host_v6().expect("a dual-stack topology").octets(),
    );
    let base = || Frame::new().macs(topo.peer_mac(), NOBODY_MAC);
    let v4 = || base().ipv4(Ipv4::new().addrs(src4, dst4));
    let v6 = |ip: Ipv6| base().ipv6(ip.addrs(src6, dst6));
    let v4_l4 = ETH_LEN + IPV4_LEN;
    let v6_l4 = ETH_LEN + IPV6_LEN;
    let malformed = reason(Reason::Malformed);
    let row = |name, frame: Frame, expected, times| Crafted {
        name,
        frame: frame.build(),
        expected,
        times,
    };
    let nine_exts = (0..9).fold(Ipv6::new(), |ip, _| ip.ext(Ext::dest_opts(0)));
    vec![
        row(
            "802.1Q TCP SYN",
            v4().vlan(TPID_VLAN, 100).tcp(Tcp::new(1001).flags(TCP_SYN)),
            port_verdict(L4::Tcp, 1001, true, v4_l4 + 4 + 20),
            3,
        ),
        row(
            "QinQ UDP",
            v4().vlan(TPID_QINQ, 10)
                .vlan(TPID_VLAN, 20)
                .udp(Udp::new(1002))
                .payload(b"qinq"),
            port_payload(L4::Udp, 1002, false, v4_l4 + 8 + 8, 4),
            2,
        ),
        row(
            "QinQ over IPv6 TCP ACK",
            v6(Ipv6::new())
                .vlan(TPID_QINQ, 10)
                .vlan(TPID_VLAN, 20)
                .tcp(Tcp::new(1003).flags(TCP_ACK)),
            port_verdict(L4::Tcp, 1003, false, v6_l4 + 8 + 20),
            1,
        ),
        row(
            "three tags is not IP",
            v4().vlan(TPID_QINQ, 1)
                .vlan(TPID_VLAN, 2)
                .vlan(TPID_VLAN, 3)
                .udp(Udp::new(1004)),
            reason(Reason::NonIp),
            1,
        ),
        row(
            "IPv6 hop-by-hop, routing, destination options, TCP SYN",
            v6(Ipv6::new()
                .ext(Ext::hop_by_hop(0))
                .ext(Ext::routing(1))
                .ext(Ext::dest_opts(2)))
            .tcp(Tcp::new(1005).flags(TCP_SYN)),
            port_verdict(L4::Tcp, 1005, true, v6_l4 + 8 + 16 + 24 + 20),
            2,
        ),
        row(
            "IPv6 AH, UDP",
            v6(Ipv6::new().ext(Ext::ah(4))).udp(Udp::new(1006)),
            port_verdict(L4::Udp, 1006, false, v6_l4 + 24 + 8),
            1,
        ),
        row(
            "IPv6 first fragment, UDP",
            v6(Ipv6::new().ext(Ext::fragment(0, true)))
                .udp(Udp::new(1007))
                .payload(&[0; 16]),
            port_payload(L4::Udp, 1007, false, v6_l4 + 8 + 8, 16),
            1,
        ),
        row(
            "IPv6 later fragment",
            v6(Ipv6::new().ext(Ext::fragment(3, false)))
                .udp(Udp::new(1008))
                .payload(&[0; 16]),
            reason(Reason::Fragment),
            2,
        ),
        row(
            "IPv6 nine extension headers",
            v6(nine_exts).udp(Udp::new(1009)),
            reason(Reason::Ipv6ExtLimit),
            1,
        ),
        row(
            "IPv4 first fragment, UDP",
            base()
                .ipv4(Ipv4::new().addrs(src4, dst4).fragment(0, true))
                .udp(Udp::new(1010).len(200))
                .payload(&[0; 24]),
            port_payload(L4::Udp, 1010, false, v4_l4 + 8, 24),
            1,
        ),
        row(
            "IPv4 later fragment",
            base()
                .ipv4(Ipv4::new().addrs(src4, dst4).fragment(4, false))
                .udp(Udp::new(1011))
                .payload(&[0; 24]),
            reason(Reason::Fragment),
            3,
        ),
        row(
            "IPv4 options, TCP SYN",
            base()
                .ipv4(
                    Ipv4::new()
                        .addrs(src4, dst4)
                        .options(&[1, 1, 1, 1, 1, 1, 1, 0]),
                )
                .tcp(Tcp::new(1012).flags(TCP_SYN)),
            port_verdict(L4::Tcp, 1012, true, v4_l4 + 8 + 20),
            1,
        ),
        row(
            "IPv4 IHL below 5",
            base()
                .ipv4(Ipv4::new().addrs(src4, dst4).ihl(4))
                .tcp(Tcp::new(1013)),
            malformed,
            1,
        ),
        row(
            "TCP data offset below 5",
            v4().tcp(Tcp::new(1014).data_offset(4)),
            malformed,
            1,
        ),
        row(
            "UDP length below 8",
            v4().udp(Udp::new(1015).len(7)),
            malformed,
            1,
        ),
        row(
            "truncated inside the IPv4 header",
            v4().tcp(Tcp::new(1016)).truncate(ETH_LEN + 10),
            malformed,
            2,
        ),
        row(
            "truncated inside the TCP header",
            v4().tcp(Tcp::new(1017).flags(TCP_SYN)).truncate(v4_l4 + 10),
            malformed,
            1,
        ),
        row(
            "truncated inside the IPv6 header",
            v6(Ipv6::new()).udp(Udp::new(1018)).truncate(ETH_LEN + 30),
            malformed,
            1,
        ),
        row(
            "truncated inside a VLAN tag",
            v4().vlan(TPID_VLAN, 5)
                .udp(Udp::new(1019))
                .truncate(ETH_LEN + 2),
            malformed,
            1,
        ),
        row(
            "ICMP echo",
            v4().icmp(Icmp::echo_v4()),
            with_protocol(Reason::Icmp, proto::ICMP),
            2,
        ),
        row(
            "ICMPv6 echo",
            v6(Ipv6::new()).icmp(Icmp::echo_v6()),
            with_protocol(Reason::Icmp, proto::ICMPV6),
            1,
        ),
        row(
            "ICMP port unreachable quoting UDP",
            v4().icmp(Icmp::error(
                3,
                3,
                &Frame::new()
                    .ipv4(Ipv4::new().addrs(dst4, src4))
                    .udp(Udp::new(1020))
                    .ip_packet(),
            )),
            with_protocol(Reason::Icmp, proto::ICMP),
            1,
        ),
        row(
            "SCTP",
            v4().ip_protocol(proto::SCTP).payload(&[0; 12]),
            with_protocol(Reason::OtherL4, proto::SCTP),
            1,
        ),
        row(
            "GRE over IPv6",
            v6(Ipv6::new()).ip_protocol(proto::GRE).payload(&[0; 4]),
            with_protocol(Reason::OtherL4, proto::GRE),
            1,
        ),
        row(
            "a non-IP ethertype",
            base().ethertype(0x88b5).payload(&[0; 46]),
            reason(Reason::NonIp),
            2,
        ),
    ]
}

/// Sends the crafted table raw from the peer; adds what each row states to `known`.
fn crafted_traffic(topo: &Topology, known: &mut Delta) {
    for crafted in crafted_table(topo) {
        let parsed = parse(crafted.frame.as_slice(), crafted.frame.len());
        assert_eq!(
            parsed, crafted.expected,
            "row {:?}: the host parser disagrees with the row",
            crafted.name
        );
        for _ in 0..crafted.times {
            topo.send_raw(&crafted.frame)
                .unwrap_or_else(|error| panic!("sending row {:?}: {error:#}", crafted.name));
            add_expected(
                known,
                Direction::Ingress,
                &crafted.expected,
                crafted.frame.len(),
            );
        }
    }
}
