//! The fast paths: the common cases (TCP and UDP in IPv4 without options, untagged or under
//! one VLAN tag, and in untagged IPv6 right after its header, each from one read, or after
//! one or two options headers). Every
//! other frame goes to [`parse_general`], which starts where the fast path stopped.

use super::{
    ETH_HEADER_LEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_QINQ, ETHERTYPE_VLAN,
    IPPROTO_DSTOPTS, IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_TCP, IPPROTO_UDP,
    IPV4_MIN_HEADER_LEN, IPV6_HEADER_LEN, L4, Packet, Parsed, TCP_FLAG_ACK, TCP_FLAG_SYN,
    TCP_MIN_HEADER_LEN, UDP_HEADER_LEN, VLAN_TAG_LEN, Window, length, udp_payload_len, wire16,
};
#[cfg(doc)]
use super::{parse, parse_general, parse_l4};

/// Bytes the fast path reads in one go: Ethernet, a 20-byte IPv4 header and the first
/// 14 bytes of TCP (up to its flags), which also covers the 8-byte UDP header.
const FAST_PATH_LEN: usize = ETH_HEADER_LEN + IPV4_MIN_HEADER_LEN + 14;

/// Where [`parse_general`] starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkStart {
    /// At the Ethernet header.
    Frame,
    /// After the Ethernet header, whose ethertype the fast path has read.
    Ethertype(u16),
    /// At the IPv6 header of an untagged frame (the fast path has read the ethertype).
    Ipv6,
    /// Nowhere: the fast path found an ethertype that is neither IP nor a VLAN tag.
    NonIp,
}

/// [`parse`]'s verdict on the common cases, TCP and UDP in IPv4 without options,
/// untagged or under one VLAN tag, and right after the header of untagged IPv6, each from
/// one read (one bounds check in XDP instead of
/// one per header). Every other frame, including any malformed one, is left to
/// [`parse_general`], with where to start it. Always [`Parsed::Port`] when `Ok`.
///
/// Public so that a caller can give the common case code of its own: XDP counts it
/// without first storing the verdict where the general walk's verdicts meet.
///
/// # Errors
/// Not an error: [`WalkStart`] says where [`parse_general`] takes the frame over.
#[inline(always)]
pub fn parse_fast<P: Packet + ?Sized>(packet: &P, frame_len: usize) -> Result<Parsed, WalkStart> {
    let Some(head) = packet.read::<FAST_PATH_LEN>(0) else {
        return Err(WalkStart::Frame);
    };
    // Compared unswapped: a byte swap fewer for every frame.
    let ethertype = head.ne16::<12>();
    let fast = if ethertype == wire16(ETHERTYPE_IPV4) {
        parse_ipv4_fast(&head, frame_len, 0)
    } else if ethertype == wire16(ETHERTYPE_VLAN) || ethertype == wire16(ETHERTYPE_QINQ) {
        // Seen from 4 bytes further on, a frame with one tag has the layout of an
        // untagged one: its inner ethertype where the ethertype would be, then IPv4.
        packet
            .read::<FAST_PATH_LEN>(VLAN_TAG_LEN)
            .and_then(|tagged| parse_ipv4_fast(&tagged, frame_len, VLAN_TAG_LEN))
    } else if ethertype == wire16(ETHERTYPE_IPV6) {
        // TCP or UDP right after the IPv6 header, from a second, longer read. The next
        // header is within the first read, so a chain of extension headers costs one
        // test before the walk.
        let next_header = head.byte::<{ ETH_HEADER_LEN + 6 }>();
        let fast = if next_header == IPPROTO_TCP || next_header == IPPROTO_UDP {
            packet
                .read::<IPV6_FAST_PATH_LEN>(0)
                .and_then(|head| parse_ipv6_fast(&head, frame_len))
        } else if is_options_header(next_header) {
            parse_ipv6_options_fast(packet, &head, frame_len)
        } else {
            None
        };
        return fast.ok_or(WalkStart::Ipv6);
    } else {
        // Neither IP nor a tag: nothing left for the walk to look at.
        return Err(WalkStart::NonIp);
    };
    fast.ok_or(WalkStart::Ethertype(u16::from_be(ethertype)))
}

/// Bytes the IPv6 fast path reads: Ethernet, the IPv6 header and the first 14 bytes of TCP
/// (8 of UDP).
const IPV6_FAST_PATH_LEN: usize = ETH_HEADER_LEN + IPV6_HEADER_LEN + 14;

/// [`parse_general`] specialised to a well-formed TCP or UDP packet right after the IPv6
/// header of an untagged frame, given the frame's first [`IPV6_FAST_PATH_LEN`] bytes; `None`
/// for any other frame (another version, another next header, lengths that do not add up),
/// which the general walk then parses. Only [`Parsed::Port`] comes out, as from
/// [`parse_ipv4_fast`], and every branch mirrors the general walk's (checked by the
/// `fast_path_agrees_with_the_general_walk` test).
#[inline(always)]
fn parse_ipv6_fast<W: Window<IPV6_FAST_PATH_LEN>>(head: &W, frame_len: usize) -> Option<Parsed> {
    let end = ipv6_end(head, frame_len)?;
    fast_l4_verdict(
        &Ipv6Fields(head),
        head.byte::<{ ETH_HEADER_LEN + 6 }>(),
        IPV6_FAST_L4,
        end,
        0,
        false,
    )
}

/// Where the IPv6 packet of an untagged frame ends (in frame offsets), given a window of
/// the frame's first `N` bytes; `None` if the version is not 6 or the packet does not end
/// within the frame. A payload length of 0 (a jumbogram) passes here and fails the L4
/// tests after, as in the general walk.
#[inline(always)]
fn ipv6_end<const N: usize, W: Window<N>>(head: &W, frame_len: usize) -> Option<usize> {
    const IP: usize = ETH_HEADER_LEN;
    if head.byte::<IP>() >> 4 != 6 {
        return None;
    }
    let end = IPV6_FAST_L4 + usize::from(head.be16::<{ IP + 4 }>());
    if end > frame_len {
        return None;
    }
    Some(end)
}

/// Options headers the IPv6 fast path walks before TCP or UDP; a longer chain takes the
/// general walk.
const FAST_OPTIONS_HEADERS: usize = 2;

/// Hop-by-hop, routing and destination options: the extension headers whose length is
/// counted the same way (RFC 8200) and that say nothing about the packet's verdict.
#[inline(always)]
fn is_options_header(next_header: u8) -> bool {
    next_header == IPPROTO_HOPOPTS
        || next_header == IPPROTO_DSTOPTS
        || next_header == IPPROTO_ROUTING
}

/// [`parse_general`] specialised to TCP or UDP after up to [`FAST_OPTIONS_HEADERS`] options
/// headers (hop-by-hop, routing, destination options) in untagged IPv6, given the frame's
/// first [`FAST_PATH_LEN`] bytes (which hold the IPv6 fields read here); `None` for any
/// other frame. Each header costs one 2-byte read and one length test, where the general
/// walk also tests which of six kinds it is and counts the chain against its bound. Mirrors
/// the general walk branch by branch (checked by the `fast_path_agrees_with_the_general_walk`
/// test).
#[inline(always)]
fn parse_ipv6_options_fast<P: Packet + ?Sized, W: Window<FAST_PATH_LEN>>(
    packet: &P,
    head: &W,
    frame_len: usize,
) -> Option<Parsed> {
    let end = ipv6_end(head, frame_len)?;
    let mut next_header = head.byte::<{ ETH_HEADER_LEN + 6 }>();
    let mut cursor = IPV6_FAST_L4;
    for _ in 0..FAST_OPTIONS_HEADERS {
        if !is_options_header(next_header) {
            break;
        }
        (next_header, cursor) = skip_options_header(packet, cursor, end)?;
    }
    // Any next header but TCP and UDP (a third options header among them) gets `None`
    // from the verdict.
    let l4 = packet.read::<L4_WINDOW_LEN>(cursor)?;
    fast_l4_verdict(&L4Fields(&l4), next_header, cursor, end, 0, false)
}

/// The next header after the options header at `cursor`, and where it starts; `None` when
/// the header does not end by `end`, the end of the IP packet.
#[inline(always)]
fn skip_options_header<P: Packet + ?Sized>(
    packet: &P,
    cursor: usize,
    end: usize,
) -> Option<(u8, usize)> {
    // As in the general walk: the header is at least 8 bytes, all of them tested against
    // `end` below.
    let ext = packet.read::<2>(cursor)?;
    let next = cursor + (usize::from(ext.byte::<1>()) + 1) * 8;
    if next > end {
        return None;
    }
    Some((ext.byte::<0>(), next))
}

/// [`parse_general`] specialised to a well-formed TCP or UDP packet in IPv4 whose header
/// has no options, given [`FAST_PATH_LEN`] bytes from `shift` bytes into the frame laid
/// out as an untagged frame's first bytes (IPv4 ethertype at 12, the IP header at 14); `None`
/// for any other frame, which the general walk then parses.
///
/// Only [`Parsed::Port`] comes out of here: every field of it is set, whereas an
/// `Unparsed` verdict leaves bytes undefined that LLVM may then store from an
/// uninitialised register on the merged path, which the verifier rejects.
///
/// Every branch mirrors the general walk's for the same bytes, so both give the same
/// verdict (checked by the `fast_path_agrees_with_the_general_walk` test).
#[inline(always)]
fn parse_ipv4_fast<W: Window<FAST_PATH_LEN>>(
    head: &W,
    frame_len: usize,
    shift: usize,
) -> Option<Parsed> {
    const IP: usize = ETH_HEADER_LEN;
    const L4_AT: usize = IPV4_FAST_L4;
    if head.ne16::<12>() != wire16(ETHERTYPE_IPV4) || head.byte::<IP>() != 0x45 {
        return None;
    }
    // A total length under 20 needs no test of its own: it fails the L4 tests below.
    let total_len = usize::from(head.be16::<{ IP + 2 }>());
    if shift + IP + total_len > frame_len {
        return None;
    }
    // Masked unswapped, like the ethertype.
    let flags_and_offset = head.ne16::<{ IP + 6 }>();
    if flags_and_offset & wire16(0x1fff) != 0 {
        return None;
    }
    fast_l4_verdict(
        &Ipv4Fields(head),
        head.byte::<{ IP + 9 }>(),
        L4_AT,
        IP + total_len,
        shift,
        flags_and_offset & wire16(0x2000) != 0,
    )
}

/// The L4 fields the fast paths read, each where its window has it. Read only when the
/// verdict needs them (a TCP verdict never loads the UDP length).
trait FastFields {
    fn port(&self) -> u16;
    fn tcp_data_offset(&self) -> u8;
    fn tcp_flags(&self) -> u8;
    fn udp_len(&self) -> u16;
}

/// Defines `$name`, the L4 fields of a `$len`-byte window whose L4 header starts at `$l4`.
/// A macro because the offsets are const generics: a type generic over `$l4` would need
/// `generic_const_exprs` to add to it. The field offsets (RFC 9293, RFC 768) are here once.
macro_rules! fast_fields {
    ($(#[$doc:meta])* $name:ident, $len:expr, $l4:expr) => {
        $(#[$doc])*
        struct $name<'a, W>(&'a W);

        impl<W: Window<{ $len }>> FastFields for $name<'_, W> {
            #[inline(always)]
            fn port(&self) -> u16 {
                self.0.be16::<{ $l4 + 2 }>()
            }
            #[inline(always)]
            fn tcp_data_offset(&self) -> u8 {
                self.0.byte::<{ $l4 + 12 }>()
            }
            #[inline(always)]
            fn tcp_flags(&self) -> u8 {
                self.0.byte::<{ $l4 + 13 }>()
            }
            #[inline(always)]
            fn udp_len(&self) -> u16 {
                self.0.be16::<{ $l4 + 4 }>()
            }
        }
    };
}

fast_fields!(
    /// L4 after a 20-byte IPv4 header, in [`parse_ipv4_fast`]'s window.
    Ipv4Fields,
    FAST_PATH_LEN,
    IPV4_FAST_L4
);
fast_fields!(
    /// L4 right after the IPv6 header, in [`parse_ipv6_fast`]'s window.
    Ipv6Fields,
    IPV6_FAST_PATH_LEN,
    IPV6_FAST_L4
);
fast_fields!(
    /// An L4 header read on its own, at a variable offset, in [`parse_ipv6_options_fast`].
    L4Fields,
    L4_WINDOW_LEN,
    0
);

/// Bytes of an L4 header the fast paths read: TCP up to its flags, which also covers UDP's.
const L4_WINDOW_LEN: usize = 14;

/// Where the fast paths' windows have the L4 header.
const IPV4_FAST_L4: usize = ETH_HEADER_LEN + IPV4_MIN_HEADER_LEN;
const IPV6_FAST_L4: usize = ETH_HEADER_LEN + IPV6_HEADER_LEN;

/// The fast paths' verdict on a `protocol` header at `l4_at` in a window taken `shift`
/// bytes into the frame, in an IP packet that ends at `end` (in the window's offsets);
/// `more_fragments` marks a first fragment. Mirrors [`parse_l4`]; `None` for anything but
/// a well-formed TCP or UDP header.
#[inline(always)]
fn fast_l4_verdict<F: FastFields>(
    fields: &F,
    protocol: u8,
    l4_at: usize,
    end: usize,
    shift: usize,
    more_fragments: bool,
) -> Option<Parsed> {
    let parsed = match protocol {
        IPPROTO_TCP => {
            // A header of at least 20 bytes that ends by `end` also holds the 14 read.
            let header_len = usize::from(fields.tcp_data_offset() >> 4) * 4;
            if header_len < TCP_MIN_HEADER_LEN || l4_at + header_len > end {
                return None;
            }
            Parsed::Port {
                l4: L4::Tcp,
                port: fields.port(),
                syn: fields.tcp_flags() & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN,
                #[expect(
                    clippy::cast_possible_truncation,
                    reason = "headers end by the IP packet's end, as in the general walk"
                )]
                payload_offset: (shift + l4_at + header_len) as u16,
                payload_len: length(end - (l4_at + header_len)),
            }
        }
        IPPROTO_UDP => {
            let udp_len = usize::from(fields.udp_len());
            if l4_at + UDP_HEADER_LEN > end
                || udp_len < UDP_HEADER_LEN
                || (!more_fragments && l4_at + udp_len > end)
            {
                return None;
            }
            Parsed::Port {
                l4: L4::Udp,
                port: fields.port(),
                syn: false,
                #[expect(
                    clippy::cast_possible_truncation,
                    reason = "headers end by the IP packet's end, as in the general walk"
                )]
                payload_offset: (shift + l4_at + UDP_HEADER_LEN) as u16,
                payload_len: udp_payload_len(udp_len, end - l4_at, more_fragments),
            }
        }
        _ => return None,
    };
    Some(parsed)
}
