//! Smoke tests of the parser on hand-built frames. The full table of packet shapes, run
//! both here on the host and in the kernel, lives in the `portmon-tests` crate.

use super::*;

extern crate std;
use std::vec::Vec;

fn ipv4_tcp(dst_port: u16, flags: u8) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00]);
    f.extend_from_slice(&[
        0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    let p = dst_port.to_be_bytes();
    f.extend_from_slice(&[
        0x30, 0x39, p[0], p[1], 0, 0, 0, 0, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    f
}

#[test]
fn tcp_syn_is_counted_under_its_destination_port() {
    let frame = ipv4_tcp(443, 0x02);
    assert_eq!(
        parse(frame.as_slice(), frame.len()),
        Parsed::Port {
            l4: L4::Tcp,
            port: 443,
            syn: true,
            payload_offset: 54,
            payload_len: 0,
        }
    );
}

#[test]
fn syn_ack_is_not_a_syn() {
    let frame = ipv4_tcp(443, 0x12);
    assert_eq!(
        parse(frame.as_slice(), frame.len()),
        Parsed::Port {
            l4: L4::Tcp,
            port: 443,
            syn: false,
            payload_offset: 54,
            payload_len: 0,
        }
    );
}

#[test]
fn every_truncation_of_a_valid_frame_is_malformed() {
    let frame = ipv4_tcp(80, 0x10);
    for cut in 0..frame.len() {
        let short = &frame[..cut];
        assert_eq!(
            parse(short, short.len()),
            Parsed::MALFORMED,
            "frame cut to {cut} bytes"
        );
    }
}

#[test]
fn trailing_ethernet_padding_is_ignored() {
    let mut frame = ipv4_tcp(22, 0x10);
    frame.resize(60, 0);
    assert_eq!(
        parse(frame.as_slice(), frame.len()),
        Parsed::Port {
            l4: L4::Tcp,
            port: 22,
            syn: false,
            payload_offset: 54,
            payload_len: 0,
        }
    );
}

/// An untagged IPv6 frame carrying a 20-byte TCP header to `dst_port`.
fn ipv6_tcp(dst_port: u16, flags: u8) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x86, 0xdd]);
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, 6, 64]);
    f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    let p = dst_port.to_be_bytes();
    f.extend_from_slice(&[
        0x30, 0x39, p[0], p[1], 0, 0, 0, 0, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    f
}

/// An untagged IPv6 frame whose header is followed by the 8-byte options headers
/// `options` (each naming the next), then a 20-byte TCP header to `dst_port`.
fn ipv6_options_tcp(options: &[u8], dst_port: u16) -> Vec<u8> {
    let mut frame = ipv6_tcp(dst_port, 0x10);
    let tcp = frame.split_off(54);
    let mut chain: Vec<u8> = options.to_vec();
    chain.push(6);
    frame[20] = chain[0];
    for next in &chain[1..] {
        frame.extend_from_slice(&[*next, 0, 1, 4, 0, 0, 0, 0]);
    }
    frame.extend_from_slice(&tcp);
    let payload_len = u16::try_from(frame.len() - 54).unwrap_or(u16::MAX);
    frame[18..20].copy_from_slice(&payload_len.to_be_bytes());
    frame
}

/// Rows for the IPv6 options fast path: bytes set in [`ipv6_options_tcp`]'s frame with a
/// hop-by-hop and a destination options header (next header at 20; the headers at 54 and
/// 62, their lengths at 55 and 63; TCP at 70; payload length 36 at 18).
const IPV6_OPTIONS_CASES: Cases = &[
    ("options tcp ack", &[]),
    ("options tcp syn", &[(83, 0x02)]),
    ("options tcp syn-ack", &[(83, 0x12)]),
    ("options tcp data offset 4", &[(82, 0x40)]),
    ("options tcp data offset 6", &[(82, 0x60)]),
    ("options tcp data offset 15", &[(82, 0xf0)]),
    ("routing first", &[(20, 43)]),
    ("destination options first", &[(20, 60)]),
    ("ah second", &[(54, 51)]),
    ("fragment second", &[(54, 44)]),
    ("icmpv6 second", &[(54, 58)]),
    ("tcp second", &[(54, 6)]),
    ("udp after the options", &[(62, 17), (75, 16)]),
    ("udp length 7 after the options", &[(62, 17), (75, 7)]),
    ("udp length 31 after the options", &[(62, 17), (75, 31)]),
    ("a third options header", &[(62, 0)]),
    ("first header 16 bytes", &[(55, 1)]),
    ("first header past the packet", &[(55, 255)]),
    ("second header 16 bytes", &[(63, 1)]),
    ("second header past the packet", &[(63, 4)]),
    ("options payload length 0", &[(19, 0)]),
    ("options payload length 8", &[(19, 8)]),
    ("options payload length 16", &[(19, 16)]),
    ("options payload length 35", &[(19, 35)]),
    ("options payload length 37", &[(19, 37)]),
    ("options payload length 46", &[(19, 46)]),
    ("options payload length 292", &[(18, 1)]),
    ("options version 4", &[(14, 0x40)]),
];

/// Edits of a base frame: (case, [(byte offset, value)]).
type Cases = &'static [(&'static str, &'static [(usize, u8)])];

/// Rows for the IPv6 fast path: bytes set in [`ipv6_tcp`]'s frame (IPv6 header at 14,
/// payload length at 18, next header at 20, TCP at 54).
const IPV6_CASES: Cases = &[
    ("ipv6 tcp ack", &[]),
    ("ipv6 tcp syn", &[(67, 0x02)]),
    ("ipv6 tcp syn-ack", &[(67, 0x12)]),
    ("ipv6 tcp data offset 4", &[(66, 0x40)]),
    ("ipv6 tcp data offset 6", &[(66, 0x60)]),
    ("ipv6 tcp data offset 15", &[(66, 0xf0)]),
    ("ipv6 payload length 0 (jumbogram)", &[(19, 0)]),
    ("ipv6 payload length 13", &[(19, 13)]),
    ("ipv6 payload length 14", &[(19, 14)]),
    ("ipv6 payload length 19", &[(19, 19)]),
    ("ipv6 payload length 21", &[(19, 21)]),
    ("ipv6 payload length 46", &[(19, 46)]),
    ("ipv6 payload length 47", &[(19, 47)]),
    ("ipv6 payload length 276", &[(18, 1)]),
    ("ipv6 version 4", &[(14, 0x40)]),
    ("ipv6 version 7", &[(14, 0x70)]),
    ("ipv6 udp", &[(20, 17), (59, 8)]),
    ("ipv6 udp length 7", &[(20, 17), (59, 7)]),
    ("ipv6 udp length 12", &[(20, 17), (59, 12)]),
    ("ipv6 udp length 20", &[(20, 17), (59, 20)]),
    ("ipv6 udp length 21", &[(20, 17), (59, 21)]),
    ("ipv6 hop-by-hop", &[(20, 0)]),
    ("ipv6 icmpv6", &[(20, 58)]),
    ("ipv6 gre", &[(20, 47)]),
    ("ipv4 ethertype, ipv6 bytes", &[(12, 0x08), (13, 0x00)]),
];

/// The fast paths must give the general walk's verdict on every frame they accept. Each
/// row sets bytes of a valid IPv4/TCP frame (or IPv6/TCP, [`IPV6_CASES`]), padded to 100
/// bytes so UDP and longer TCP headers fit; every row is also tried with each frame
/// length and each truncation.
#[test]
fn fast_path_agrees_with_the_general_walk() {
    let ipv4_cases: Cases = &[
        ("tcp ack", &[]),
        ("tcp syn", &[(47, 0x02)]),
        ("tcp syn-ack", &[(47, 0x12)]),
        ("tcp data offset 4", &[(46, 0x40)]),
        ("tcp data offset 6", &[(46, 0x60)]),
        ("tcp data offset 15", &[(46, 0xf0)]),
        ("ip total 33", &[(17, 33)]),
        ("ip total 34", &[(17, 34)]),
        ("ip total 19", &[(17, 19)]),
        ("ip total 20", &[(17, 20)]),
        ("ip total 66", &[(17, 66)]),
        ("ip total 67", &[(17, 67)]),
        ("ip options", &[(14, 0x46)]),
        ("ip ihl 4", &[(14, 0x44)]),
        ("ip version 6", &[(14, 0x65)]),
        ("fragment offset", &[(21, 1)]),
        ("more fragments", &[(20, 0x20)]),
        ("dont fragment", &[(20, 0x40)]),
        ("icmp", &[(23, 1)]),
        ("gre", &[(23, 47)]),
        ("udp", &[(23, 17), (39, 8)]),
        ("udp length 7", &[(23, 17), (39, 7)]),
        ("udp length 26", &[(23, 17), (39, 26)]),
        ("udp length 27", &[(23, 17), (39, 27)]),
        (
            "udp length 27 first fragment",
            &[(23, 17), (39, 27), (20, 0x20)],
        ),
        (
            "udp length 12 first fragment, ip total 66",
            &[(23, 17), (39, 12), (20, 0x20), (17, 66)],
        ),
        (
            "udp length 12, ip total 66",
            &[(23, 17), (39, 12), (17, 66)],
        ),
        ("udp ip total 27", &[(23, 17), (39, 8), (17, 27)]),
        ("udp ip total 28", &[(23, 17), (39, 8), (17, 28)]),
        ("arp", &[(12, 0x08), (13, 0x06)]),
        ("vlan", &[(12, 0x81), (13, 0x00)]),
        ("ipv6 ethertype", &[(12, 0x86), (13, 0xdd)]),
    ];
    // Each case also under one 802.1Q or 802.1ad tag (the tagged fast path), and under
    // two (the general walk only).
    let tags: &[(&str, &[[u8; 4]])] = &[
        ("untagged", &[]),
        ("802.1q", &[[0x81, 0x00, 0x00, 0x64]]),
        ("802.1ad", &[[0x88, 0xa8, 0x00, 0x64]]),
        (
            "qinq",
            &[[0x88, 0xa8, 0x00, 0x64], [0x81, 0x00, 0x00, 0x65]],
        ),
    ];
    let bases: [(Vec<u8>, Cases); 4] = [
        (ipv4_tcp(443, 0x10), ipv4_cases),
        (ipv6_tcp(443, 0x10), IPV6_CASES),
        (ipv6_options_tcp(&[0, 60], 443), IPV6_OPTIONS_CASES),
        (ipv6_options_tcp(&[0], 443), IPV6_OPTIONS_CASES),
    ];
    for (base, cases) in &bases {
        for (name, edits) in *cases {
            assert_agreement(base, name, edits, tags);
        }
    }
}

/// Asserts that `base` with `edits` gets the same verdict from [`parse`] and from the
/// general walk alone, under each tag stack in `tags`, cut at every length.
fn assert_agreement(base: &[u8], name: &str, edits: &[(usize, u8)], tags: &[(&str, &[[u8; 4]])]) {
    let mut untagged = base.to_vec();
    untagged.resize(100, 0);
    for &(at, value) in edits {
        untagged[at] = value;
    }
    for (tagging, tag_stack) in tags {
        let mut frame = untagged[..12].to_vec();
        for tag in *tag_stack {
            frame.extend_from_slice(tag);
        }
        frame.extend_from_slice(&untagged[12..]);
        for cut in 0..=frame.len() {
            let short = &frame[..cut];
            for frame_len in [cut.saturating_sub(1), cut, cut + 1, 60, 80, 84, 100, 104] {
                assert_eq!(
                    parse(short, frame_len),
                    parse_general(short, frame_len, WalkStart::Frame),
                    "case {name} ({tagging}): cut to {cut} bytes, frame_len {frame_len}: fast path (left) vs general walk (right)"
                );
            }
        }
    }
}

/// The IPv6 options fast path really takes the chains it is for (the agreement test
/// alone would also pass if it never did).
#[test]
fn fast_path_takes_tcp_after_one_or_two_options_headers() {
    for options in [&[0_u8][..], &[43], &[60], &[0, 60], &[0, 43], &[60, 60]] {
        let frame = ipv6_options_tcp(options, 8443);
        let headers = u16::try_from(54 + 8 * options.len() + 20).unwrap_or(u16::MAX);
        assert_eq!(
            parse_fast(frame.as_slice(), frame.len()),
            Ok(Parsed::Port {
                l4: L4::Tcp,
                port: 8443,
                syn: false,
                payload_offset: headers,
                payload_len: 0,
            }),
            "options headers {options:?}"
        );
    }
    let three = ipv6_options_tcp(&[0, 60, 43], 8443);
    assert_eq!(
        parse_fast(three.as_slice(), three.len()),
        Err(WalkStart::Ipv6),
        "three options headers are left to the general walk"
    );
}

/// The IPv4 (untagged and under one tag) and plain IPv6 fast paths really take TCP: the
/// agreement test alone also passes when a fast path declines every frame.
#[test]
fn fast_path_takes_tcp_in_ipv4_tagged_ipv4_and_ipv6() {
    let untagged = ipv4_tcp(443, 0x02);
    let mut tagged = untagged[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
    tagged.extend_from_slice(&untagged[12..]);
    let ipv6 = ipv6_tcp(443, 0x02);
    for (name, frame, headers) in [
        ("ipv4", untagged, 54),
        ("ipv4 under 802.1q", tagged, 58),
        ("ipv6", ipv6, 74),
    ] {
        assert_eq!(
            parse_fast(frame.as_slice(), frame.len()),
            Ok(Parsed::Port {
                l4: L4::Tcp,
                port: 443,
                syn: true,
                payload_offset: headers,
                payload_len: 0,
            }),
            "{name}"
        );
    }
}
