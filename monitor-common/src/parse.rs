//! The one packet parser, shared by the XDP program, the TC program and the host.
//!
//! It is generic over [`Packet`], a "read N bytes at offset" accessor, so the same header
//! walk runs on bounds-checked packet pointers (XDP), on `bpf_skb_load_bytes` (TC) and on
//! a byte slice (unit tests, fuzzing, the differential test against etherparse).
//!
//! Every read is bounds-checked twice: by the accessor against the buffer, and here
//! against the end the IP header declares, so trailing Ethernet padding is never parsed
//! as a header and a header that runs past its IP packet is `malformed`.

use crate::layout::{L4, Reason};

/// VLAN tags walked before the ethertype: 802.1Q (0x8100) and 802.1ad (0x88a8).
pub const MAX_VLAN_TAGS: usize = 2;
/// IPv6 extension headers walked before giving up with [`Reason::Ipv6ExtLimit`].
///
/// RFC 8200 section 4.1 recommends at most one of each kind (a destination-options
/// header may appear twice): hop-by-hop, destination, routing, fragment, AH, destination
/// gives six. Eight leaves room for a tunnel's own headers while keeping the verifier's
/// walk short.
pub const MAX_IPV6_EXT_HEADERS: usize = 8;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;

const ETH_HEADER_LEN: usize = 14;
const VLAN_TAG_LEN: usize = 4;
const IPV4_MIN_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const TCP_MIN_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_DSTOPTS: u8 = 60;

const TCP_FLAG_SYN: u8 = 0x02;
const TCP_FLAG_ACK: u8 = 0x10;

/// Read access to a packet, from its first byte (the Ethernet header).
pub trait Packet {
    /// What a successful [`Packet::read`] gives: `N` bytes known to be in the packet.
    type Bytes<const N: usize>: Window<N>;

    /// The `N` bytes at `offset`, or `None` when the packet is shorter than `offset + N`.
    fn read<const N: usize>(&self, offset: usize) -> Option<Self::Bytes<N>>;
}

/// `N` bytes that [`Packet::read`] found in the packet. Offsets into them are const
/// generics checked at compile time, so a field read past the window does not build, and
/// each host reads a field the cheapest way it has (XDP: one 16-bit load for a 16-bit
/// field instead of two byte loads and a shift).
pub trait Window<const N: usize> {
    /// The byte at `AT`.
    fn byte<const AT: usize>(&self) -> u8;
    /// The big-endian (network order) 16-bit field at `AT`.
    fn be16<const AT: usize>(&self) -> u16;
    /// The 16 bits at `AT` as a host-order load sees them, without the byte swap that
    /// [`Window::be16`] costs: for tests against constants converted with [`wire16`]
    /// at compile time.
    fn ne16<const AT: usize>(&self) -> u16;
    /// All `N` bytes.
    fn array(&self) -> [u8; N];
}

/// What [`Window::ne16`] reads where the packet holds `value` in network order: the
/// constant to compare or mask an unswapped field with.
#[must_use]
pub const fn wire16(value: u16) -> u16 {
    u16::from_ne_bytes(value.to_be_bytes())
}

impl<const N: usize> Window<N> for [u8; N] {
    #[inline(always)]
    fn byte<const AT: usize>(&self) -> u8 {
        const { assert!(AT < N, "a byte past the window") };
        self[AT]
    }

    #[inline(always)]
    fn be16<const AT: usize>(&self) -> u16 {
        const { assert!(AT + 2 <= N, "a 16-bit field past the window") };
        u16::from_be_bytes([self[AT], self[AT + 1]])
    }

    #[inline(always)]
    fn ne16<const AT: usize>(&self) -> u16 {
        const { assert!(AT + 2 <= N, "a 16-bit field past the window") };
        u16::from_ne_bytes([self[AT], self[AT + 1]])
    }

    #[inline(always)]
    fn array(&self) -> [u8; N] {
        *self
    }
}

impl Packet for [u8] {
    type Bytes<const N: usize> = [u8; N];

    #[inline]
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let end = offset.checked_add(N)?;
        let bytes = self.get(offset..end)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Some(out)
    }
}

/// What the parser concluded about one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A TCP or UDP packet, counted under its destination port.
    Port {
        /// TCP or UDP.
        l4: L4,
        /// Destination port.
        port: u16,
        /// TCP SYN set and ACK clear.
        syn: bool,
        /// Offset of the L4 payload from the start of the frame (all headers' length).
        payload_offset: u16,
        /// Bytes of L4 payload, never past the frame: TCP, up to the end of the IP packet;
        /// UDP, up to the end of the UDP length (or of the IP packet, if shorter); a first
        /// fragment (IPv4 MF, or an IPv6 fragment header with M), up to the end of the IP
        /// packet, since its UDP length covers the whole datagram. Ethernet padding is
        /// never payload.
        payload_len: u16,
    },
    /// Not counted under a port.
    Unparsed {
        /// Why.
        reason: Reason,
        /// The IP protocol, for [`Reason::Icmp`] and [`Reason::OtherL4`].
        ip_protocol: Option<u8>,
    },
}

impl Parsed {
    const fn reason(reason: Reason) -> Parsed {
        Parsed::Unparsed {
            reason,
            ip_protocol: None,
        }
    }

    const MALFORMED: Parsed = Parsed::reason(Reason::Malformed);
}

/// Parses one frame of `frame_len` bytes, starting at its Ethernet header.
#[inline(always)]
pub fn parse<P: Packet + ?Sized>(packet: &P, frame_len: usize) -> Parsed {
    match parse_fast(packet, frame_len) {
        Ok(parsed) => parsed,
        Err(start) => parse_general(packet, frame_len, start),
    }
}

/// The full header walk: VLAN tags, IPv4 with options, IPv6 with extension headers.
/// Gives [`parse`]'s verdict on every frame.
#[inline(always)]
pub fn parse_general<P: Packet + ?Sized>(packet: &P, frame_len: usize, start: WalkStart) -> Parsed {
    let mut ethertype = match start {
        WalkStart::Ipv6 => return parse_ipv6(packet, ETH_HEADER_LEN, frame_len),
        WalkStart::NonIp => return Parsed::reason(Reason::NonIp),
        WalkStart::Ethertype(ethertype) => ethertype,
        WalkStart::Frame => match packet.read::<ETH_HEADER_LEN>(0) {
            Some(eth) => eth.be16::<12>(),
            None => return Parsed::MALFORMED,
        },
    };
    let mut offset = ETH_HEADER_LEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        // The tag: TCI (2 bytes), then the inner ethertype.
        let Some(tag) = packet.read::<VLAN_TAG_LEN>(offset) else {
            return Parsed::MALFORMED;
        };
        ethertype = tag.be16::<2>();
        offset += VLAN_TAG_LEN;
    }
    match ethertype {
        ETHERTYPE_IPV4 => parse_ipv4(packet, offset, frame_len),
        ETHERTYPE_IPV6 => parse_ipv6(packet, offset, frame_len),
        // Includes a third VLAN tag: we do not look past two.
        _ => Parsed::reason(Reason::NonIp),
    }
}

#[inline(always)]
fn parse_ipv4<P: Packet + ?Sized>(packet: &P, offset: usize, frame_len: usize) -> Parsed {
    let Some(ip) = packet.read::<IPV4_MIN_HEADER_LEN>(offset) else {
        return Parsed::MALFORMED;
    };
    if ip.byte::<0>() >> 4 != 4 {
        return Parsed::MALFORMED;
    }
    let header_len = usize::from(ip.byte::<0>() & 0x0f) * 4;
    let total_len = usize::from(ip.be16::<2>());
    if header_len < IPV4_MIN_HEADER_LEN || total_len < header_len || offset + total_len > frame_len
    {
        return Parsed::MALFORMED;
    }
    let flags_and_offset = ip.be16::<6>();
    if flags_and_offset & 0x1fff != 0 {
        return Parsed::reason(Reason::Fragment);
    }
    let more_fragments = flags_and_offset & 0x2000 != 0;
    let protocol = ip.byte::<9>();
    if protocol == IPPROTO_ICMP {
        return icmp(protocol);
    }
    parse_l4(
        packet,
        protocol,
        offset + header_len,
        offset + total_len,
        more_fragments,
    )
}

#[inline(always)]
fn parse_ipv6<P: Packet + ?Sized>(packet: &P, offset: usize, frame_len: usize) -> Parsed {
    // Version, payload length and next header sit in the first 8 bytes; the addresses
    // are not needed, only their presence (checked through `end`).
    let Some(ip) = packet.read::<8>(offset) else {
        return Parsed::MALFORMED;
    };
    if ip.byte::<0>() >> 4 != 6 {
        return Parsed::MALFORMED;
    }
    let end = offset + IPV6_HEADER_LEN + usize::from(ip.be16::<4>());
    if end > frame_len {
        return Parsed::MALFORMED;
    }
    let mut next_header = ip.byte::<6>();
    let mut cursor = offset + IPV6_HEADER_LEN;
    let mut more_fragments = false;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        let header_len = match next_header {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                // RFC 8200: Hdr Ext Len in 8-octet units, not counting the first 8.
                // Read without testing against `end`: the header is at least 8 bytes,
                // and the test of all of it against `end` below covers these two.
                let Some(ext) = packet.read::<2>(cursor) else {
                    return Parsed::MALFORMED;
                };
                next_header = ext.byte::<0>();
                (usize::from(ext.byte::<1>()) + 1) * 8
            }
            IPPROTO_AH => {
                // RFC 4302: Payload Len in 4-octet units, minus 2. Its fixed fields (next
                // header, length, reserved, SPI, sequence number) take 12 bytes, so a
                // Payload Len of 0 (8 bytes) is inconsistent: walking it would read the
                // sequence number as the next header. (At least 12 bytes, tested against
                // `end` below, as above.)
                let Some(ext) = packet.read::<2>(cursor) else {
                    return Parsed::MALFORMED;
                };
                if ext.byte::<1>() == 0 {
                    return Parsed::MALFORMED;
                }
                next_header = ext.byte::<0>();
                (usize::from(ext.byte::<1>()) + 2) * 4
            }
            IPPROTO_FRAGMENT => {
                let Some(ext) = read_within::<P, 8>(packet, cursor, end) else {
                    return Parsed::MALFORMED;
                };
                let offset_and_flags = ext.be16::<2>();
                if offset_and_flags >> 3 != 0 {
                    return Parsed::reason(Reason::Fragment);
                }
                // Any fragment header with M set makes this a first fragment, whatever
                // order a (malformed) chain of several puts them in.
                more_fragments |= offset_and_flags & 1 != 0;
                next_header = ext.byte::<0>();
                8
            }
            IPPROTO_ICMPV6 => return icmp(next_header),
            _ => return parse_l4(packet, next_header, cursor, end, more_fragments),
        };
        cursor += header_len;
        if cursor > end {
            return Parsed::MALFORMED;
        }
    }
    match next_header {
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT => {
            Parsed::reason(Reason::Ipv6ExtLimit)
        }
        IPPROTO_ICMPV6 => icmp(next_header),
        _ => parse_l4(packet, next_header, cursor, end, more_fragments),
    }
}

#[inline(always)]
fn icmp(ip_protocol: u8) -> Parsed {
    Parsed::Unparsed {
        reason: Reason::Icmp,
        ip_protocol: Some(ip_protocol),
    }
}

/// Parses the L4 header at `offset`, which must end by `end` (the end of the IP packet).
///
/// `more_fragments` marks a first fragment: its UDP length covers the whole datagram,
/// not just this fragment, so it is not checked against `end`.
#[inline(always)]
fn parse_l4<P: Packet + ?Sized>(
    packet: &P,
    protocol: u8,
    offset: usize,
    end: usize,
    more_fragments: bool,
) -> Parsed {
    match protocol {
        IPPROTO_TCP => {
            let Some(tcp) = read_within::<P, 14>(packet, offset, end) else {
                return Parsed::MALFORMED;
            };
            let header_len = usize::from(tcp.byte::<12>() >> 4) * 4;
            if header_len < TCP_MIN_HEADER_LEN || offset + header_len > end {
                return Parsed::MALFORMED;
            }
            let flags = tcp.byte::<13>();
            Parsed::Port {
                l4: L4::Tcp,
                port: tcp.be16::<2>(),
                syn: flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN,
                // Headers end before the IP packet does, which ends within 64 KiB + headers.
                #[expect(clippy::cast_possible_truncation, reason = "bounded by the IP length")]
                payload_offset: (offset + header_len) as u16,
                payload_len: length(end - (offset + header_len)),
            }
        }
        IPPROTO_UDP => {
            let Some(udp) = read_within::<P, UDP_HEADER_LEN>(packet, offset, end) else {
                return Parsed::MALFORMED;
            };
            let udp_len = usize::from(udp.be16::<4>());
            if udp_len < UDP_HEADER_LEN || (!more_fragments && offset + udp_len > end) {
                return Parsed::MALFORMED;
            }
            Parsed::Port {
                l4: L4::Udp,
                port: udp.be16::<2>(),
                syn: false,
                #[expect(clippy::cast_possible_truncation, reason = "bounded by the IP length")]
                payload_offset: (offset + UDP_HEADER_LEN) as u16,
                payload_len: udp_payload_len(udp_len, end - offset, more_fragments),
            }
        }
        _ => Parsed::Unparsed {
            reason: Reason::OtherL4,
            ip_protocol: Some(protocol),
        },
    }
}

/// A payload length that the IP length fields bound: an IPv4 total length, or an IPv6
/// payload length, is at most 65535, and the payload lies inside it.
#[inline(always)]
fn length(len: usize) -> u16 {
    #[expect(
        clippy::cast_possible_truncation,
        reason = "at most 65535, bounded by the IP length field"
    )]
    let len = len as u16;
    len
}

/// The payload of a UDP datagram whose header starts `room` bytes before the end of the IP
/// packet and declares `udp_len` bytes (header included; checked to be at least 8, and to
/// fit in `room` unless `more_fragments`).
///
/// A first fragment's UDP length covers the whole datagram, so its payload ends with the
/// IP packet. Otherwise the payload ends where the UDP length says, which may be before the
/// IP packet does (the rest is not UDP's).
#[inline(always)]
fn udp_payload_len(udp_len: usize, room: usize, more_fragments: bool) -> u16 {
    let end = if more_fragments {
        room
    } else {
        udp_len.min(room)
    };
    length(end.saturating_sub(UDP_HEADER_LEN))
}

/// Reads `N` bytes at `offset` only if they end by `end`, the end of the enclosing IP packet.
#[inline(always)]
fn read_within<P: Packet + ?Sized, const N: usize>(
    packet: &P,
    offset: usize,
    end: usize,
) -> Option<P::Bytes<N>> {
    if offset + N > end {
        return None;
    }
    packet.read::<N>(offset)
}

mod fast;

pub use fast::{WalkStart, parse_fast};

#[cfg(test)]
mod tests;
