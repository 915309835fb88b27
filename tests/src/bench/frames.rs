//! The frames the benchmark runs: the packet mix of issue 2 and the flood frame.
//!
//! Built here rather than with the test tables' builder so that the benchmark's input is
//! fixed: a change to the tables must not silently change what the figures measure.

use monitor_common::{
    layout::{L4, Reason},
    parse::{Parsed, parse},
};

const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_ARP: u16 = 0x0806;
const TPID_VLAN: u16 = 0x8100;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_HOPOPTS: u8 = 0;
const PROTO_DSTOPTS: u8 = 60;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

/// One frame of the mix, with the verdict the shared parser must reach on it.
#[derive(Clone, Debug)]
pub struct MixFrame {
    /// What it is.
    pub name: &'static str,
    /// The bytes, from the Ethernet header.
    pub bytes: Vec<u8>,
    /// The parser's verdict, checked before any timing.
    pub expected: Parsed,
}

/// The RFC 1071 checksum of `bytes`.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    #[expect(clippy::cast_possible_truncation, reason = "folded to 16 bits above")]
    let folded = sum as u16;
    !folded
}

fn eth(dst: [u8; 6], src: [u8; 6], vlan: Option<u16>, ethertype: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&dst);
    out.extend_from_slice(&src);
    if let Some(tci) = vlan {
        out.extend_from_slice(&TPID_VLAN.to_be_bytes());
        out.extend_from_slice(&tci.to_be_bytes());
    }
    out.extend_from_slice(&ethertype.to_be_bytes());
    out
}

fn ipv4(src: [u8; 4], dst: [u8; 4], protocol: u8, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).unwrap_or(u16::MAX);
    let mut header = vec![0x45, 0];
    header.extend_from_slice(&total.to_be_bytes());
    header.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, protocol, 0, 0]);
    header.extend_from_slice(&src);
    header.extend_from_slice(&dst);
    let sum = checksum(&header);
    header[10..12].copy_from_slice(&sum.to_be_bytes());
    header.extend_from_slice(payload);
    header
}

fn tcp(port: u16, flags: u8) -> Vec<u8> {
    let mut out = vec![0xc0, 0x01];
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    out
}

fn udp(port: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).unwrap_or(u16::MAX);
    let mut out = vec![0x9c, 0x40];
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    // Checksum 0: none, allowed over IPv4.
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
    out
}

fn v4(l4: &[u8], protocol: u8, vlan: Option<u16>) -> Vec<u8> {
    let ethertype = ETHERTYPE_IPV4;
    let mut frame = eth(DST_MAC, SRC_MAC, vlan, ethertype);
    frame.extend_from_slice(&ipv4([10, 0, 0, 1], [10, 0, 0, 2], protocol, l4));
    frame
}

/// IPv6 with a hop-by-hop and a destination-options header before TCP.
fn v6_with_extensions(port: u16) -> Vec<u8> {
    let l4 = tcp(port, TCP_ACK);
    let mut payload = vec![PROTO_DSTOPTS, 0, 1, 4, 0, 0, 0, 0];
    payload.extend_from_slice(&[PROTO_TCP, 0, 1, 4, 0, 0, 0, 0]);
    payload.extend_from_slice(&l4);
    let mut frame = eth(DST_MAC, SRC_MAC, None, ETHERTYPE_IPV6);
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    frame.extend_from_slice(&u16::try_from(payload.len()).unwrap_or(0).to_be_bytes());
    frame.extend_from_slice(&[PROTO_HOPOPTS, 64]);
    frame.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    frame.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    frame.extend_from_slice(&payload);
    frame
}

fn port(l4: L4, port: u16, syn: bool, payload_offset: u16, payload_len: u16) -> Parsed {
    Parsed::Port {
        l4,
        port,
        syn,
        payload_offset,
        payload_len,
    }
}

fn reason(reason: Reason) -> Parsed {
    Parsed::Unparsed {
        reason,
        ip_protocol: None,
    }
}

/// The packet mix of issue 2: TCP SYN, TCP ACK, UDP, IPv6 with extension headers, VLAN,
/// non-IP and truncated.
#[must_use]
pub fn mix() -> Vec<MixFrame> {
    let mut arp = eth([0xff; 6], SRC_MAC, None, ETHERTYPE_ARP);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.resize(60, 0);
    let mut truncated = v4(&tcp(443, TCP_ACK), PROTO_TCP, None);
    truncated.truncate(14 + 20 + 10);
    vec![
        MixFrame {
            name: "tcp syn",
            bytes: v4(&tcp(443, TCP_SYN), PROTO_TCP, None),
            expected: port(L4::Tcp, 443, true, 54, 0),
        },
        MixFrame {
            name: "tcp ack",
            bytes: v4(&tcp(22, TCP_ACK), PROTO_TCP, None),
            expected: port(L4::Tcp, 22, false, 54, 0),
        },
        MixFrame {
            name: "udp",
            bytes: v4(&udp(53, &[0; 32]), PROTO_UDP, None),
            expected: port(L4::Udp, 53, false, 42, 32),
        },
        MixFrame {
            name: "ipv6 + extension headers",
            bytes: v6_with_extensions(8443),
            expected: port(L4::Tcp, 8443, false, 14 + 40 + 16 + 20, 0),
        },
        MixFrame {
            name: "vlan udp",
            bytes: v4(&udp(123, &[0; 48]), PROTO_UDP, Some(100)),
            expected: port(L4::Udp, 123, false, 46, 48),
        },
        MixFrame {
            name: "non-ip (arp)",
            bytes: arp,
            expected: reason(Reason::NonIp),
        },
        MixFrame {
            name: "truncated tcp",
            bytes: truncated,
            expected: reason(Reason::Malformed),
        },
    ]
}

/// A TCP segment to `port` carrying `payload`, in IPv4.
fn tcp_payload(dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut l4 = tcp(dst_port, TCP_ACK | TCP_PSH);
    l4.extend_from_slice(payload);
    v4(&l4, PROTO_TCP, None)
}

/// A TCP verdict with `payload` bytes after a 54-byte header stack.
fn tcp_verdict(dst_port: u16, payload: &[u8]) -> Parsed {
    port(
        L4::Tcp,
        dst_port,
        false,
        54,
        u16::try_from(payload.len()).unwrap_or(u16::MAX),
    )
}

/// The payload benchmark's mix: payload-carrying packets to tracked ports, one of every
/// signature and one that matches none (an encrypted segment mid-stream), with
/// [`PAYLOAD_MIX_PORTS`] tracked.
#[must_use]
pub fn payload_mix() -> Vec<MixFrame> {
    const TLS: &[u8] = &[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x5a, 0x5a, 0x5a, 0x5a,
        0x5a, 0x5a, 0x5a, 0x5a, 0x5a,
    ];
    const HTTP: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: example\r\n\r\n";
    const SSH: &[u8] = b"SSH-2.0-OpenSSH_9.6\r\n";
    const SMTP: &[u8] = b"220 mail.example ESMTP\r\n";
    const IMAP: &[u8] = b"a1 LOGIN user secret\r\n";
    // SNMP v2c GetRequest for sysDescr.0, community "public".
    const SNMP: &[u8] = &[
        0x30, 0x29, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa0, 0x1c,
        0x02, 0x04, 0x12, 0x34, 0x56, 0x78, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x0e, 0x30,
        0x0c, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x01, 0x01, 0x00, 0x05, 0x00,
    ];
    let encrypted = [0xa7u8; 512];
    vec![
        MixFrame {
            name: "tls client hello",
            bytes: tcp_payload(443, TLS),
            expected: tcp_verdict(443, TLS),
        },
        MixFrame {
            name: "http request",
            bytes: tcp_payload(80, HTTP),
            expected: tcp_verdict(80, HTTP),
        },
        MixFrame {
            name: "ssh banner",
            bytes: tcp_payload(22, SSH),
            expected: tcp_verdict(22, SSH),
        },
        MixFrame {
            name: "smtp greeting",
            bytes: tcp_payload(25, SMTP),
            expected: tcp_verdict(25, SMTP),
        },
        MixFrame {
            name: "imap tagged login",
            bytes: tcp_payload(143, IMAP),
            expected: tcp_verdict(143, IMAP),
        },
        MixFrame {
            name: "snmp v2c",
            bytes: v4(&udp(161, SNMP), PROTO_UDP, None),
            expected: port(
                L4::Udp,
                161,
                false,
                42,
                u16::try_from(SNMP.len()).unwrap_or(u16::MAX),
            ),
        },
        MixFrame {
            name: "encrypted segment (no signature)",
            bytes: tcp_payload(443, &encrypted),
            expected: tcp_verdict(443, &encrypted),
        },
    ]
}

/// The ports [`payload_mix`] sends to, tracked (ingress) in the payload benchmark.
pub const PAYLOAD_MIX_PORTS: [(L4, u16); 6] = [
    (L4::Tcp, 443),
    (L4::Tcp, 80),
    (L4::Tcp, 22),
    (L4::Tcp, 25),
    (L4::Tcp, 143),
    (L4::Udp, 161),
];

/// The no-payload mix: packets without L4 payload (and ones with no port at all), sent to
/// the tracked ports of [`PAYLOAD_MIX_PORTS`], for what the payload path costs them.
#[must_use]
pub fn no_payload_mix() -> Vec<MixFrame> {
    let mut frames: Vec<MixFrame> = mix()
        .into_iter()
        .filter(|frame| match frame.expected {
            Parsed::Port { payload_len, .. } => payload_len == 0,
            Parsed::Unparsed { .. } => true,
        })
        .collect();
    frames.push(MixFrame {
        name: "tcp ack to a tracked port",
        bytes: v4(&tcp(443, TCP_ACK), PROTO_TCP, None),
        expected: port(L4::Tcp, 443, false, 54, 0),
    });
    frames.push(MixFrame {
        name: "empty udp to a tracked port",
        bytes: v4(&udp(161, &[]), PROTO_UDP, None),
        expected: port(L4::Udp, 161, false, 42, 0),
    });
    frames
}

/// Checks every frame of the mix against the shared parser, so a figure never silently
/// measures a different path than its name says.
///
/// # Errors
/// The name of the first frame whose verdict differs.
pub fn check_mix(frames: &[MixFrame]) -> Result<(), String> {
    for frame in frames {
        let got = parse(frame.bytes.as_slice(), frame.bytes.len());
        if got != frame.expected {
            return Err(format!(
                "mix frame {:?}: expected {:?}, the parser says {got:?}",
                frame.name, frame.expected
            ));
        }
    }
    Ok(())
}

/// An IPv4 UDP frame to `port` with the default addresses, for the contention figure.
#[must_use]
pub fn udp_frame(port: u16) -> Vec<u8> {
    v4(&udp(port, &[0; 18]), PROTO_UDP, None)
}

/// Addresses of one end of a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// MAC address.
    pub mac: [u8; 6],
    /// IPv4 address.
    pub ip: [u8; 4],
}

/// A minimum-size (60-byte) UDP frame from `src` to `dst`, destination port `port`,
/// with a valid IPv4 header checksum so the receiving stack treats it as real traffic.
#[must_use]
pub fn flood_frame(src: Endpoint, dst: Endpoint, port: u16) -> Vec<u8> {
    let mut frame = eth(dst.mac, src.mac, None, ETHERTYPE_IPV4);
    frame.extend_from_slice(&ipv4(src.ip, dst.ip, PROTO_UDP, &udp(port, &[0; 18])));
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_parses_as_named() {
        let frames = mix();
        assert_eq!(frames.len(), 7, "the mix has the seven shapes of issue 2");
        if let Err(error) = check_mix(&frames) {
            panic!("{error}");
        }
    }

    #[test]
    fn the_payload_mixes_parse_as_named_and_classify_as_their_names_say() {
        use monitor_common::payload::{PayloadKind, reference};
        let payload = payload_mix();
        let no_payload = no_payload_mix();
        for (name, frames) in [("payload", &payload), ("no-payload", &no_payload)] {
            if let Err(error) = check_mix(frames) {
                panic!("{name} mix: {error}");
            }
        }
        let kinds: Vec<PayloadKind> = payload
            .iter()
            .map(|frame| match frame.expected {
                Parsed::Port {
                    payload_offset,
                    payload_len,
                    ..
                } => {
                    let start = usize::from(payload_offset);
                    reference::classify(&frame.bytes[start..start + usize::from(payload_len)])
                }
                Parsed::Unparsed { .. } => PayloadKind::Empty,
            })
            .collect();
        assert_eq!(
            kinds,
            [
                PayloadKind::Tls,
                PayloadKind::Http,
                PayloadKind::Ssh,
                PayloadKind::MailOrLogin,
                PayloadKind::MailOrLogin,
                PayloadKind::SnmpV2c,
                PayloadKind::Other,
            ],
            "the payload mix's frames, in order"
        );
        assert!(
            no_payload.len() >= 6,
            "expected at least 6 frames without payload, got {}",
            no_payload.len()
        );
    }

    #[test]
    fn the_flood_frame_is_a_valid_minimum_udp_frame() {
        let a = Endpoint {
            mac: [2, 0, 0, 0, 0, 1],
            ip: [198, 18, 0, 1],
        };
        let b = Endpoint {
            mac: [2, 0, 0, 0, 0, 2],
            ip: [198, 18, 0, 2],
        };
        let frame = flood_frame(a, b, 9);
        assert_eq!(frame.len(), 60, "a minimum Ethernet frame without FCS");
        assert_eq!(
            checksum(&frame[14..34]),
            0,
            "the IPv4 header checksum verifies"
        );
        assert_eq!(
            parse(frame.as_slice(), frame.len()),
            port(L4::Udp, 9, false, 42, 18)
        );
    }
}
