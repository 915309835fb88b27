//! Differential test: thousands of generated frames, well-formed and mutated, go through
//! the real XDP and TC egress programs (BPF_PROG_TEST_RUN) and through etherparse, a parser
//! no one here wrote. The counts must agree exactly.
//!
//! etherparse decides every header's length and validity; [`reference`] turns its answer
//! into a portmon verdict. Where portmon's documented semantics deliberately differ from
//! etherparse's, the mapping says so and why; everything else is etherparse's call.
//!
//! The frames come from a seeded RNG, so a failure reproduces exactly. The host parser is
//! compared per frame (with the frame's hex on a mismatch); the kernel in batches, and a
//! batch whose counts differ is re-run frame by frame to name the culprit.
#![expect(clippy::expect_used, reason = "tests panic with what they expected")]

use etherparse::{
    EtherType, Ethernet2Slice, IpAuthHeaderSlice, IpNumber, Ipv4HeaderSlice, Ipv4Slice,
    Ipv6ExtensionsSlice, Ipv6FragmentHeaderSlice, Ipv6HeaderSlice, Ipv6RawExtHeaderSlice,
    Ipv6Slice, SingleVlanSlice, TcpSlice, UdpHeaderSlice, UdpSlice,
    err::{Layer, ipv4, ipv6, ipv6_exts},
};
use monitor_common::{
    layout::{L4, Reason},
    parse::{MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS, Parsed, parse},
};
use portmon_tests::{
    frames::{
        ETHERTYPE_ARP, Ext, Frame, Icmp, Ipv4, Ipv6, Net, TPID_QINQ, TPID_VLAN, Tcp, Transport,
        Udp, arp_request, hex, proto,
    },
    testrun::{Delta, Hook, Runner, add_expected, describe, refusal},
};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Fixed seed: the same frames on every run.
const SEED: u64 = 0x0070_6f72_746d_6f6e; // "portmon"
/// Frames per kernel batch (one counter snapshot per batch).
const BATCH: usize = 250;
/// At least this many frames must be generated.
const MIN_FRAMES: usize = 5000;

// ---------------------------------------------------------------------------------------
// The reference: etherparse's verdict, in portmon's terms.
// ---------------------------------------------------------------------------------------

fn malformed() -> Parsed {
    Parsed::Unparsed {
        reason: Reason::Malformed,
        ip_protocol: None,
    }
}

fn unparsed(reason: Reason, ip_protocol: Option<u8>) -> Parsed {
    Parsed::Unparsed {
        reason,
        ip_protocol,
    }
}

/// Offset of `inner` (a subslice of `frame`) from the start of `frame`.
fn offset_in(frame: &[u8], inner: &[u8]) -> usize {
    inner.as_ptr() as usize - frame.as_ptr() as usize
}

/// What portmon must conclude about `frame`, according to etherparse.
fn reference(frame: &[u8]) -> Parsed {
    let Ok(eth) = Ethernet2Slice::from_slice_without_fcs(frame) else {
        return malformed();
    };
    let mut ether_type = eth.ether_type();
    let mut payload = eth.payload_slice();
    // Semantics: portmon walks at most MAX_VLAN_TAGS tags, and only 0x8100 and 0x88a8.
    // etherparse also walks a third tag, 0x9100 tags and MACsec; portmon counts all of those
    // as non_ip (parse.rs: "we do not look past two"), so the walk policy is portmon's while
    // etherparse slices each tag.
    for _ in 0..MAX_VLAN_TAGS {
        if ether_type != EtherType::VLAN_TAGGED_FRAME && ether_type != EtherType::PROVIDER_BRIDGING
        {
            break;
        }
        let Ok(vlan) = SingleVlanSlice::from_slice(payload) else {
            return malformed();
        };
        ether_type = vlan.ether_type();
        payload = vlan.payload_slice();
    }
    match ether_type {
        // Semantics: every other ethertype is non_ip, whether etherparse can parse it (ARP)
        // or not: portmon does not look inside.
        EtherType::IPV4 => reference_ipv4(frame, payload),
        EtherType::IPV6 => reference_ipv6(frame, payload),
        _ => unparsed(Reason::NonIp, None),
    }
}

fn reference_ipv4(frame: &[u8], ip: &[u8]) -> Parsed {
    let Ok(header) = Ipv4HeaderSlice::from_slice(ip) else {
        return malformed(); // Too short, version != 4, IHL < 5 or past the frame.
    };
    let sliced = Ipv4Slice::from_slice(ip);
    match &sliced {
        // Total length shorter than the header or past the frame. (An error in an AH is
        // `Exts`, or `Len` in the AH layer: see below.)
        Err(ipv4::SliceError::Len(e)) if e.layer != Layer::IpAuthHeader => return malformed(),
        Err(ipv4::SliceError::Header(_)) => return malformed(),
        _ => {}
    }
    // Semantics: a fragment with a non-zero offset is `fragment` whatever it carries.
    // etherparse still parses an AH in such a fragment; portmon does not look.
    if header.fragments_offset().value() != 0 {
        return unparsed(Reason::Fragment, None);
    }
    let protocol = header.protocol();
    match protocol {
        IpNumber::ICMP => unparsed(Reason::Icmp, Some(protocol.0)),
        // Semantics: portmon walks no IPv4 extension header; AH over IPv4 is counted as
        // IP protocol 51 (other_l4). etherparse parses it and continues to the payload.
        IpNumber::AUTHENTICATION_HEADER => unparsed(Reason::OtherL4, Some(protocol.0)),
        IpNumber::TCP | IpNumber::UDP => {
            let Ok(sliced) = sliced else {
                return malformed();
            };
            // etherparse does not slice the transport of any fragment (its
            // `is_fragmenting_payload`); portmon counts a first fragment by its ports, so
            // the transport header is sliced here, with the first-fragment rule.
            transport(
                frame,
                protocol,
                sliced.payload().payload,
                header.more_fragments(),
            )
        }
        other => unparsed(Reason::OtherL4, Some(other.0)),
    }
}

fn reference_ipv6(frame: &[u8], ip: &[u8]) -> Parsed {
    let Ok(header) = Ipv6HeaderSlice::from_slice(ip) else {
        return malformed(); // Too short or version != 6.
    };
    // Semantics: portmon does not support jumbograms: a payload length of 0 means an empty
    // payload. etherparse instead takes the rest of the slice as the payload (awaiting a
    // jumbo option), so it is shown the fixed header alone.
    let ip = if header.payload_length() == 0 {
        &ip[..header.slice().len()]
    } else {
        ip
    };
    if let Err(ipv6::SliceError::Len(e)) = Ipv6Slice::from_slice(ip)
        && e.layer == Layer::Ipv6Packet
    {
        return malformed(); // The payload length runs past the frame.
    }
    // etherparse checked the payload length against the slice just above.
    let end = header.slice().len() + usize::from(header.payload_length());
    let Some(mut rest) = ip.get(header.slice().len()..end) else {
        return malformed();
    };
    let mut next = header.next_header();
    let mut walked_count = 0;
    let mut more_fragments = false;
    loop {
        // The headers etherparse walked, the protocol after them, the bytes after them and
        // why it stopped early, if it did.
        let (exts, next_after, rest_after, error) = Ipv6ExtensionsSlice::from_slice_lax(next, rest);
        for fragment in walked(next, exts.slice()) {
            // Semantics: portmon walks at most MAX_IPV6_EXT_HEADERS extension headers and
            // counts a longer chain as ipv6_ext_limit; etherparse has no bound.
            if walked_count == MAX_IPV6_EXT_HEADERS {
                return unparsed(Reason::Ipv6ExtLimit, None);
            }
            walked_count += 1;
            if let Some(fragment) = fragment {
                // Semantics: a non-zero offset ends the walk as `fragment`, as for IPv4;
                // etherparse keeps walking (and may fail on the fragment's payload).
                if fragment.fragment_offset().value() != 0 {
                    return unparsed(Reason::Fragment, None);
                }
                more_fragments |= fragment.more_fragments();
            }
        }
        match error {
            None => {
                next = next_after;
                rest = rest_after;
                break;
            }
            // Semantics: RFC 8200 wants hop-by-hop first; portmon walks it anywhere
            // (a misplaced header is still a header, and its length is still valid).
            // Resume etherparse at the misplaced header, where it accepts one.
            Some((
                ipv6_exts::HeaderSliceError::Content(ipv6_exts::HeaderError::HopByHopNotAtStart),
                _,
            )) => {
                next = next_after;
                rest = rest_after;
            }
            Some(_) if walked_count == MAX_IPV6_EXT_HEADERS => {
                // portmon stops before reading the header etherparse failed on.
                return unparsed(Reason::Ipv6ExtLimit, None);
            }
            Some(_) => return malformed(),
        }
    }
    match next {
        IpNumber::IPV6_ICMP => unparsed(Reason::Icmp, Some(next.0)),
        IpNumber::TCP | IpNumber::UDP => transport(frame, next, rest, more_fragments),
        // Includes ICMP (1) inside IPv6: portmon's `icmp` is ICMPv4 over IPv4 and ICMPv6
        // over IPv6; etherparse parses either anywhere.
        other => unparsed(Reason::OtherL4, Some(other.0)),
    }
}

/// The extension headers in `bytes` (which etherparse validated, starting with a header of
/// kind `first`), one item per header: its fragment header, if it is one.
///
/// Not `Ipv6ExtensionsSlice::into_iter`: in etherparse 0.21 that iterator stops only at a
/// non-extension next header, so on a chain `from_slice_lax` cut short it reads past the
/// end of the slice (an out-of-bounds `get_unchecked`, caught by debug assertions).
fn walked(first: IpNumber, bytes: &[u8]) -> Vec<Option<Ipv6FragmentHeaderSlice<'_>>> {
    let mut out = Vec::new();
    let (mut kind, mut rest) = (first, bytes);
    while !rest.is_empty() {
        let (next, len, fragment) = match kind {
            IpNumber::IPV6_FRAGMENTATION_HEADER => {
                let Ok(header) = Ipv6FragmentHeaderSlice::from_slice(rest) else {
                    break;
                };
                (header.next_header(), header.slice().len(), Some(header))
            }
            IpNumber::AUTHENTICATION_HEADER => {
                let Ok(header) = IpAuthHeaderSlice::from_slice(rest) else {
                    break;
                };
                (header.next_header(), header.slice().len(), None)
            }
            _ => {
                let Ok(header) = Ipv6RawExtHeaderSlice::from_slice(rest) else {
                    break;
                };
                (header.next_header(), header.slice().len(), None)
            }
        };
        out.push(fragment);
        kind = next;
        rest = &rest[len..];
    }
    out
}

/// The TCP or UDP verdict on `l4` (the rest of the IP packet, up to its declared end).
fn transport(frame: &[u8], protocol: IpNumber, l4: &[u8], more_fragments: bool) -> Parsed {
    let port = |l4: L4, port: u16, syn: bool, payload: &[u8]| Parsed::Port {
        l4,
        port,
        syn,
        payload_offset: u16::try_from(offset_in(frame, payload)).unwrap_or(u16::MAX),
        payload_len: u16::try_from(payload.len()).unwrap_or(u16::MAX),
    };
    if protocol == IpNumber::TCP {
        return match TcpSlice::from_slice(l4) {
            Ok(tcp) => port(
                L4::Tcp,
                tcp.destination_port(),
                tcp.syn() && !tcp.ack(),
                tcp.payload(),
            ),
            Err(_) => malformed(), // Data offset < 5, or the header runs past the packet.
        };
    }
    if more_fragments {
        // Semantics (first fragment): the UDP length covers the whole datagram, not this
        // fragment, so only the header and a length of at least 8 are required.
        // etherparse does not look at fragments' transport at all.
        return match UdpHeaderSlice::from_slice(l4) {
            Ok(udp) if udp.length() >= 8 => port(L4::Udp, udp.destination_port(), false, &l4[8..]),
            _ => malformed(),
        };
    }
    match UdpSlice::from_slice(l4) {
        // Semantics: a UDP length of 0 is malformed (issue 2: "UDP length < 8"); etherparse
        // reads it as "the rest of the packet", the IPv6 jumbogram convention (RFC 2675),
        // which portmon does not support.
        Ok(udp) if udp.length() == 0 => malformed(),
        Ok(udp) => port(L4::Udp, udp.destination_port(), false, udp.payload()),
        Err(_) => malformed(), // Length < 8 or past the IP packet.
    }
}

// ---------------------------------------------------------------------------------------
// Frame generation.
// ---------------------------------------------------------------------------------------

/// One generated frame and how it was made, for failure messages.
struct Generated {
    how: &'static str,
    frame: Vec<u8>,
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.random()).collect()
}

fn random_ext(rng: &mut StdRng) -> Ext {
    match rng.random_range(0..10) {
        0..=1 => Ext::hop_by_hop(rng.random_range(0..3)),
        2..=3 => Ext::dest_opts(rng.random_range(0..3)),
        4..=5 => Ext::routing(rng.random_range(0..3)),
        6..=7 => Ext::fragment(
            if rng.random_bool(0.7) {
                0
            } else {
                rng.random_range(1..0x2000)
            },
            rng.random_bool(0.5),
        ),
        // AH: 1 is the shortest valid length; 0 is invalid (RFC 4302) and kept rare.
        _ => Ext::ah(if rng.random_bool(0.1) {
            0
        } else {
            rng.random_range(1..7)
        }),
    }
}

/// A well-formed frame of a random shape.
fn random_frame(rng: &mut StdRng) -> Frame {
    let mut frame = Frame::new();
    let tags = match rng.random_range(0..100) {
        0..=54 => 0,
        55..=79 => 1,
        80..=94 => 2,
        _ => 3,
    };
    for _ in 0..tags {
        let tpid = pick(rng, &[TPID_VLAN, TPID_VLAN, TPID_QINQ, 0x9100]);
        frame = frame.vlan(tpid, rng.random_range(0..4096));
    }
    frame = match rng.random_range(0..100) {
        0..=44 => {
            let mut ip = Ipv4::new();
            if rng.random_bool(0.2) {
                let words = rng.random_range(1..=10);
                ip = ip.options(&vec![1; words * 4]); // NOPs
            }
            match rng.random_range(0..10) {
                0 => ip = ip.fragment(0, true),
                1 => ip = ip.fragment(rng.random_range(1..0x2000), rng.random_bool(0.5)),
                _ => {}
            }
            frame.ipv4(ip)
        }
        45..=89 => {
            let mut ip = Ipv6::new();
            let exts = match rng.random_range(0..10) {
                0..=3 => 0,
                4..=7 => rng.random_range(1..4),
                _ => rng.random_range(4..=MAX_IPV6_EXT_HEADERS + 2),
            };
            for _ in 0..exts {
                ip = ip.ext(random_ext(rng));
            }
            frame.ipv6(ip)
        }
        90..=94 => frame.ethertype(ETHERTYPE_ARP).payload(&arp_request()),
        _ => frame.ethertype(rng.random()),
    };
    if !matches!(frame.net, Net::Other(_)) {
        let any_port = rng.random();
        let port = pick(rng, &[22, 53, 80, 443, 0, 65535, any_port]);
        frame = match rng.random_range(0..100) {
            0..=34 => {
                let mut tcp = Tcp::new(port).flags(rng.random());
                if rng.random_bool(0.3) {
                    tcp = tcp.options(&vec![1; rng.random_range(1..=40)]);
                }
                frame.tcp(tcp)
            }
            35..=64 => frame.udp(Udp::new(port)),
            65..=74 => {
                let quoted = Frame::new()
                    .ipv4(Ipv4::new())
                    .tcp(Tcp::new(port))
                    .ip_packet();
                let icmp = match (rng.random_bool(0.5), &frame.net) {
                    (true, Net::Ipv6(_)) => Icmp::error(1, 4, &quoted),
                    (true, _) => Icmp::error(3, 3, &quoted),
                    (false, Net::Ipv6(_)) => Icmp::echo_v6(),
                    (false, _) => Icmp::echo_v4(),
                };
                frame.icmp(icmp)
            }
            75..=94 => frame.ip_protocol(pick(
                rng,
                &[
                    proto::SCTP,
                    proto::GRE,
                    proto::ESP,
                    proto::ICMP,
                    proto::ICMPV6,
                    2,
                    41,
                    255,
                ],
            )),
            _ => frame.ip_protocol(pick(
                rng,
                &[
                    proto::HOPOPTS,
                    proto::ROUTING,
                    proto::FRAGMENT,
                    proto::AH,
                    proto::DSTOPTS,
                    proto::NO_NEXT,
                ],
            )),
        };
        let payload_len = rng.random_range(0..48);
        frame.payload = [frame.payload.clone(), random_bytes(rng, payload_len)].concat();
    }
    if rng.random_bool(0.3) {
        frame = frame.pad_to(60);
    }
    frame
}

/// Breaks one or two header fields of `frame`.
fn fuzz_fields(rng: &mut StdRng, frame: &mut Frame) {
    for _ in 0..rng.random_range(1..=2) {
        match rng.random_range(0..9) {
            0 => {
                if let Net::Ipv4(ip) = &mut frame.net {
                    ip.ihl = Some(rng.random_range(0..16));
                }
            }
            1 => {
                let len = rng.random_range(0..120);
                match &mut frame.net {
                    Net::Ipv4(ip) => ip.total_len = Some(len),
                    Net::Ipv6(ip) => ip.payload_len = Some(len),
                    Net::Other(_) => {}
                }
            }
            2 => match &mut frame.net {
                Net::Ipv4(ip) => ip.version = rng.random_range(0..16),
                Net::Ipv6(ip) => ip.version = rng.random_range(0..16),
                Net::Other(_) => {}
            },
            3 => {
                if let Net::Ipv6(ip) = &mut frame.net
                    && !ip.exts.is_empty()
                {
                    // An extension header whose length byte says anything.
                    let at = rng.random_range(0..ip.exts.len());
                    let kind = ip.exts[at].protocol();
                    let len = pick(rng, &[2, 4, 8, 12, 16, 24]);
                    let mut bytes = random_bytes(rng, len);
                    let any = rng.random();
                    bytes[1] = pick(rng, &[0, 1, 2, 3, 7, 255, any]);
                    ip.exts[at] = Ext::raw(kind, &bytes);
                }
            }
            4 => {
                if let Transport::Tcp(tcp) = &mut frame.transport {
                    tcp.data_offset = Some(rng.random_range(0..16));
                }
            }
            5 => {
                if let Transport::Udp(udp) = &mut frame.transport {
                    let any = rng.random();
                    udp.len = Some(pick(rng, &[0, 1, 7, 8, 9, 16, 40, 200, any]));
                }
            }
            6 => {
                // VLAN count and kinds.
                let tags = rng.random_range(0..=3);
                frame.eth.tags = (0..tags)
                    .map(|_| (pick(rng, &[TPID_VLAN, TPID_QINQ, 0x9100]), 7))
                    .collect();
            }
            7 => match &mut frame.net {
                Net::Ipv4(ip) => ip.protocol = Some(rng.random()),
                Net::Ipv6(ip) => ip.next_header = Some(rng.random()),
                Net::Other(_) => {}
            },
            _ => {
                if let Net::Ipv4(ip) = &mut frame.net {
                    ip.fragment_offset = rng.random_range(0..3);
                    ip.more_fragments = rng.random_bool(0.5);
                }
            }
        }
    }
}

/// Every generated frame, deterministic for [`SEED`].
fn generate() -> Vec<Generated> {
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut out = Vec::new();
    for _ in 0..1500 {
        out.push(Generated {
            how: "well-formed",
            frame: random_frame(&mut rng).build(),
        });
    }
    for _ in 0..1500 {
        let mut frame = random_frame(&mut rng);
        fuzz_fields(&mut rng, &mut frame);
        out.push(Generated {
            how: "fuzzed header fields",
            frame: frame.build(),
        });
    }
    for _ in 0..40 {
        let mut frame = random_frame(&mut rng);
        if rng.random_bool(0.3) {
            fuzz_fields(&mut rng, &mut frame);
        }
        let whole = frame.build();
        for cut in 0..whole.len() {
            out.push(Generated {
                how: "cut at every offset",
                frame: whole[..cut].to_vec(),
            });
        }
    }
    for _ in 0..1000 {
        let mut frame = random_frame(&mut rng).build();
        let headers = frame.len().min(96);
        for _ in 0..rng.random_range(1..=3) {
            if headers > 0 {
                let at = rng.random_range(0..headers);
                frame[at] = rng.random();
            }
        }
        out.push(Generated {
            how: "random bytes changed",
            frame,
        });
    }
    for _ in 0..300 {
        let len = rng.random_range(0..128);
        let mut frame = random_bytes(&mut rng, len);
        // Half of them get an IP ethertype and version, to reach the IP parsers.
        if len > 14 && rng.random_bool(0.5) {
            let v6 = rng.random_bool(0.5);
            frame[12..14].copy_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
            frame[14] = (frame[14] & 0x0f) | if v6 { 0x60 } else { 0x40 };
        }
        out.push(Generated {
            how: "random bytes",
            frame,
        });
    }
    out
}

// ---------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------

fn mismatch(generated: &Generated, reference: &Parsed, ours: &str) -> String {
    format!(
        "{} frame of {} bytes:\n  etherparse: {reference:?}\n  portmon:    {ours}\n  frame {}",
        generated.how,
        generated.frame.len(),
        hex(&generated.frame)
    )
}

fn report(failures: &[String], total: usize, what: &str) {
    assert!(
        failures.is_empty(),
        "{} of {total} frames: {what} disagree with etherparse (first 20 shown):\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_generator_reaches_every_verdict() {
    let generated = generate();
    assert!(
        generated.len() >= MIN_FRAMES,
        "expected at least {MIN_FRAMES} frames, generated {}",
        generated.len()
    );
    let verdicts: Vec<Parsed> = generated.iter().map(|g| reference(&g.frame)).collect();
    let count = |f: &dyn Fn(&Parsed) -> bool| verdicts.iter().filter(|v| f(v)).count();
    let has_reason = |reason: Reason| move |v: &Parsed| matches!(v, Parsed::Unparsed { reason: r, .. } if *r == reason);
    let shapes: [(&str, usize); 8] = [
        (
            "tcp port",
            count(&|v| matches!(v, Parsed::Port { l4: L4::Tcp, .. })),
        ),
        (
            "udp port",
            count(&|v| matches!(v, Parsed::Port { l4: L4::Udp, .. })),
        ),
        ("non_ip", count(&has_reason(Reason::NonIp))),
        ("fragment", count(&has_reason(Reason::Fragment))),
        ("icmp", count(&has_reason(Reason::Icmp))),
        ("other_l4", count(&has_reason(Reason::OtherL4))),
        ("malformed", count(&has_reason(Reason::Malformed))),
        ("ipv6_ext_limit", count(&has_reason(Reason::Ipv6ExtLimit))),
    ];
    for (shape, n) in shapes {
        assert!(
            n >= 20,
            "expected at least 20 generated frames to be {shape}, got {n}: {shapes:?}"
        );
    }
}

#[test]
fn host_parser_agrees_with_etherparse_on_every_frame() {
    let generated = generate();
    let failures: Vec<String> = generated
        .iter()
        .filter_map(|g| {
            let expected = reference(&g.frame);
            let ours = parse(g.frame.as_slice(), g.frame.len());
            (ours != expected).then(|| mismatch(g, &expected, &format!("{ours:?}")))
        })
        .collect();
    report(&failures, generated.len(), "host parser verdicts");
}

/// Runs a batch and checks its counts; when they disagree, finds the frames responsible by
/// halving the batch (a few snapshots per culprit instead of one per frame).
fn culprits(runner: &mut Runner, hook: Hook, batch: &[&Generated], failures: &mut Vec<String>) {
    let mut expected = Delta::new();
    for g in batch {
        add_expected(
            &mut expected,
            hook.direction(),
            &reference(&g.frame),
            g.frame.len(),
        );
    }
    let got = runner
        .run_batch(hook, batch.iter().map(|g| g.frame.as_slice()))
        .unwrap_or_else(|error| panic!("{hook}: a batch failed to run: {error}"));
    match batch {
        _ if got == expected => {}
        [g] => failures.push(format!(
            "{hook}: {}",
            mismatch(g, &reference(&g.frame), &describe(&got))
        )),
        _ => {
            let (left, right) = batch.split_at(batch.len() / 2);
            culprits(runner, hook, left, failures);
            culprits(runner, hook, right, failures);
        }
    }
}

#[test]
fn kernel_counts_agree_with_etherparse_on_every_frame() {
    let generated = generate();
    let mut runner = Runner::new().expect("the data plane loads (run as root)");
    let mut failures = Vec::new();
    let mut ran = 0;
    for hook in [Hook::Xdp, Hook::TcEgress] {
        let runnable: Vec<&Generated> = generated
            .iter()
            .filter(|g| refusal(hook, &g.frame).is_none())
            .collect();
        ran += runnable.len();
        for batch in runnable.chunks(BATCH) {
            culprits(&mut runner, hook, batch, &mut failures);
        }
    }
    assert!(
        ran >= MIN_FRAMES,
        "expected at least {MIN_FRAMES} kernel runs, made {ran}"
    );
    report(&failures, ran, "kernel counts");
}
