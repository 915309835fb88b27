//! What the first bytes of a TCP or UDP payload say about the protocol on a port.
//!
//! A port number is only a promise: [`classify`] looks at the first (at most 16) bytes of
//! the L4 payload and recognises a handful of signatures, so that the daemon can tell TLS
//! on 8080 or plaintext HTTP on 443 apart from what the port table expects. It runs in the
//! XDP and TC programs through the same [`Packet`] accessor as the parser, and on the host.
//!
//! # Reads
//! At most two fixed-size reads, all inside `payload_offset..payload_offset + payload_len`:
//! one 16-byte read when the payload has 16 bytes, otherwise a head and an overlapping tail
//! read of 8, 4 or 2 bytes (a 1-byte payload, shorter than every signature, is not read).
//! They build a 16-byte *window*: the payload's first bytes, then zeros. Bytes past the
//! payload (Ethernet padding, the next header of a tunnel) are never read, so they can
//! never complete a signature. No loop depends on the payload: loops run over constant
//! arrays of signatures only. A read the accessor refuses (payload past the linear part of
//! an XDP multi-buffer frame, a failing `bpf_skb_load_bytes`) makes the payload
//! [`PayloadKind::Other`].
//!
//! # Signatures
//! All checks are on the window held as one `u128` (byte 0 most significant): a signature
//! is a masked compare of one or two machine words, and the first byte picks which few
//! signatures to try, so a payload that matches nothing usually costs one `match`. Every
//! shift of the window is by a constant (const generics where a position varies): the BPF
//! backend lowers a 128-bit shift by a variable amount to a `__ashlti3` call, which
//! bpf-linker rejects.
//!
//! | Kind | Signature | Why it is specific |
//! |------|-----------|--------------------|
//! | [`Tls`](PayloadKind::Tls) | record header: type `0x16` (handshake), version `0x03 0x00..=0x04`, record length `1..=18432` | RFC 8446 5.1 forbids empty handshake records; 2^14 + 2048 is the largest record TLS allows. 5 constrained bytes. |
//! | [`Ssh`](PayloadKind::Ssh) | `SSH-1.` or `SSH-2.` | RFC 4253 4.2 banner; the protocol version digit makes `SSH-` alone insufficient. |
//! | [`Http`](PayloadKind::Http) | `GET `, `POST `, `PUT `, `HEAD `, `DELETE `, `OPTIONS `, `PATCH `, `CONNECT `, `TRACE ` (case-sensitive, RFC 9110 9.1), `HTTP/1.` (a response), `PRI * HTTP/2.0\r\n` (the h2c preface, 16 bytes) | The trailing space or dot: `GETS`, `GET/` do not match. |
//! | [`MailOrLogin`](PayloadKind::MailOrLogin) | greetings (exact case): `220 `, `220-` (SMTP, FTP), `+OK ` / `+OK\r` (POP3), `* OK `, `* PREAUTH ` (IMAP); commands (ASCII case-insensitive, as RFC 5321 2.4, RFC 1939 and RFC 959 allow): `EHLO `, `HELO `, `MAIL FROM:`, `RCPT TO:`, `AUTH `, `USER `, `PASS `, `CAPA\r\n`; IMAP tagged commands: a tag of 1 to [`IMAP_MAX_TAG`] ASCII alphanumerics, a space, then `LOGIN `, `CAPABILITY`, `AUTHENTICATE ` or `STARTTLS` (case-insensitive: Thunderbird sends `1 capability`), all within the first 16 bytes; telnet: `IAC {WILL,WONT,DO,DONT} option`, as the whole payload (3 bytes) or followed by a second `IAC {SB,WILL,WONT,DO,DONT}` | Four or more fixed ASCII bytes each; telnet needs two IAC commands (about 5e-9 by chance) unless the payload is exactly one negotiation. |
//! | [`SnmpV1`](PayloadKind::SnmpV1), [`SnmpV2c`](PayloadKind::SnmpV2c), [`SnmpV3`](PayloadKind::SnmpV3) | BER `SEQUENCE` `0x30` whose length (short form, or long form `0x81 L` / `0x82 L L`, which net-snmp uses even for short messages) covers exactly the rest of the payload, then `INTEGER` `0x02 0x01 version` (0, 1 or 3), then `0x04` (the community `OCTET STRING`) for v1 and v2c, or `0x30` (`msgGlobalData`) for v3 | The exact length ties the header to the datagram, the next tag to the version. |
//! | [`Other`](PayloadKind::Other) | anything else, including a payload shorter than every signature it starts like | |
//! | [`Empty`](PayloadKind::Empty) | no payload | |
//!
//! The signatures are disjoint except HTTP and IMAP tagged commands (`GET LOGIN x` has a
//! method and a tag): HTTP wins. The mail and login protocols share one kind because their
//! cheap signatures overlap (`220 ` greets for both SMTP and FTP, `USER ` is both FTP and
//! POP3) and the question the kind answers, "is this plaintext?", has the same answer.
//!
//! Only a payload that starts at a message boundary can match: the first segment of a
//! request, a banner, a datagram. Classifying every payload-carrying packet therefore
//! counts messages (HTTP requests, TLS handshake records, SNMP datagrams), and a
//! mid-stream segment of an encrypted stream matches by chance at most about once in
//! 10^7 (TLS, 5 constrained bytes), a plaintext kind about once in 10^8.

use crate::parse::{Packet, Window as _};

/// The largest window [`classify`] looks at.
pub const WINDOW: usize = 16;
/// The longest IMAP tag recognised before a command.
pub const IMAP_MAX_TAG: usize = 6;
/// The largest TLS record: 2^14 bytes of plaintext plus 2048 of expansion (RFC 5246 6.2.3).
pub const TLS_MAX_RECORD: u16 = (1 << 14) + 2048;

/// What a payload's first bytes look like.
///
/// The signature kinds come first, so `kind as u32` indexes a counter array of
/// [`PayloadKind::SIGNATURES`] entries.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PayloadKind {
    /// A TLS handshake record header.
    Tls = 0,
    /// An SSH banner.
    Ssh = 1,
    /// An HTTP/1 request or response, or the HTTP/2 cleartext preface.
    Http = 2,
    /// A plaintext mail or login protocol: SMTP, POP3, IMAP, FTP, telnet.
    MailOrLogin = 3,
    /// SNMP version 1: the community string travels in clear.
    SnmpV1 = 4,
    /// SNMP version 2c: the community string travels in clear.
    SnmpV2c = 5,
    /// SNMP version 3 (user-based security).
    SnmpV3 = 6,
    /// A payload that matches no signature, or cannot be read.
    Other = 7,
    /// No payload.
    Empty = 8,
}

impl PayloadKind {
    /// Number of kinds recognised by a signature (those before [`PayloadKind::Other`]).
    pub const SIGNATURES: u32 = 7;
    /// Number of kinds.
    pub const COUNT: u32 = 9;
    /// Every kind, in index order.
    pub const ALL: [PayloadKind; 9] = [
        PayloadKind::Tls,
        PayloadKind::Ssh,
        PayloadKind::Http,
        PayloadKind::MailOrLogin,
        PayloadKind::SnmpV1,
        PayloadKind::SnmpV2c,
        PayloadKind::SnmpV3,
        PayloadKind::Other,
        PayloadKind::Empty,
    ];

    /// The label used in metrics and output.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            PayloadKind::Tls => "tls",
            PayloadKind::Ssh => "ssh",
            PayloadKind::Http => "http",
            PayloadKind::MailOrLogin => "mail_or_login",
            PayloadKind::SnmpV1 => "snmp_v1",
            PayloadKind::SnmpV2c => "snmp_v2c",
            PayloadKind::SnmpV3 => "snmp_v3",
            PayloadKind::Other => "other",
            PayloadKind::Empty => "empty",
        }
    }

    /// Whether the payload is in clear: HTTP, mail or login, and SNMP v1 and v2c.
    #[must_use]
    pub const fn is_plaintext(self) -> bool {
        matches!(
            self,
            PayloadKind::Http
                | PayloadKind::MailOrLogin
                | PayloadKind::SnmpV1
                | PayloadKind::SnmpV2c
        )
    }
}

const _: () = assert!(PayloadKind::ALL.len() == PayloadKind::COUNT as usize);
const _: () = assert!(PayloadKind::Other as u32 == PayloadKind::SIGNATURES);

/// Classifies the `payload_len` bytes of L4 payload at `payload_offset` in `packet`.
///
/// `payload_len` must end at the payload's real end (the IP or UDP length, not the frame),
/// so that Ethernet padding is never taken for payload.
#[inline(always)]
pub fn classify<P: Packet + ?Sized>(
    packet: &P,
    payload_offset: usize,
    payload_len: usize,
) -> PayloadKind {
    if payload_len == 0 {
        return PayloadKind::Empty;
    }
    match read_window(packet, payload_offset, payload_len) {
        Some(window) => signatures::classify_window(window, payload_len),
        None => PayloadKind::Other,
    }
}

/// The payload's first [`WINDOW`] bytes as a big-endian `u128`, zero past the payload.
///
/// Short payloads are read as a head and a tail that overlap: OR-ing the tail, shifted to
/// its place, onto the head writes the overlapping bytes twice with the same value.
#[inline(always)]
fn read_window<P: Packet + ?Sized>(packet: &P, offset: usize, len: usize) -> Option<u128> {
    if len >= WINDOW {
        return packet
            .read::<WINDOW>(offset)
            .map(|bytes| u128::from_be_bytes(bytes.array()));
    }
    let (hi, lo) = if len >= 8 {
        let head = u64::from_be_bytes(packet.read::<8>(offset)?.array());
        // Payload bytes 8..len: the last 8 bytes, with the ones the head already holds
        // shifted out. `len == 8` has none (and a shift by 64 would overflow).
        let tail = if len > 8 {
            u64::from_be_bytes(packet.read::<8>(tail_offset(offset, len, 8))?.array())
                << (8 * (WINDOW - len))
        } else {
            0
        };
        (head, tail)
    } else if len >= 4 {
        let head = u64::from(u32::from_be_bytes(packet.read::<4>(offset)?.array())) << 32;
        let tail = u64::from(u32::from_be_bytes(
            packet.read::<4>(tail_offset(offset, len, 4))?.array(),
        ));
        (head | tail << (8 * (8 - len)), 0)
    } else if len >= 2 {
        let head = u64::from(u16::from_be_bytes(packet.read::<2>(offset)?.array())) << 48;
        let tail = u64::from(u16::from_be_bytes(
            packet.read::<2>(tail_offset(offset, len, 2))?.array(),
        ));
        (head | tail << (8 * (8 - len)), 0)
    } else {
        // One byte: shorter than every signature, so not worth a read. (A 1-byte XDP
        // bounds check is also one LLVM rewrites as `at >= end`, from which the
        // verifier grants no readable range.)
        (0, 0)
    };
    Some(u128::from(hi) << 64 | u128::from(lo))
}

/// `offset + len - size` for `size <= len < WINDOW`, written for the XDP verifier.
///
/// Left to itself, LLVM bounds-checks `start + offset + len` against the packet end and
/// folds `- size` into the load's immediate, and the verifier rejects a load at a
/// negative offset from the pointer it checked ("invalid access to packet, off=-2").
/// The volatile load hides `len - size` from the optimiser, and the mask, a no-op since
/// `len - size < WINDOW`, gives the verifier the bound it cannot infer from the earlier
/// length compares (made on another copy of `len`).
#[inline(always)]
fn tail_offset(offset: usize, len: usize, size: usize) -> usize {
    let back = len - size;
    // SAFETY: reads a live, aligned local.
    let back = unsafe { core::ptr::read_volatile(&raw const back) };
    offset + (back & (WINDOW - 1))
}

mod signatures;

#[cfg(any(test, feature = "user"))]
pub mod reference;
#[cfg(any(test, feature = "user"))]
pub mod samples;

#[cfg(test)]
mod tests;
