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

use crate::parse::Packet;

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
        Some(window) => classify_window(window, payload_len),
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
        return packet.read::<WINDOW>(offset).map(u128::from_be_bytes);
    }
    let (hi, lo) = if len >= 8 {
        let head = u64::from_be_bytes(packet.read::<8>(offset)?);
        // Payload bytes 8..len: the last 8 bytes, with the ones the head already holds
        // shifted out. `len == 8` has none (and a shift by 64 would overflow).
        let tail = if len > 8 {
            u64::from_be_bytes(packet.read::<8>(tail_offset(offset, len, 8))?)
                << (8 * (WINDOW - len))
        } else {
            0
        };
        (head, tail)
    } else if len >= 4 {
        let head = u64::from(u32::from_be_bytes(packet.read::<4>(offset)?)) << 32;
        let tail = u64::from(u32::from_be_bytes(
            packet.read::<4>(tail_offset(offset, len, 4))?,
        ));
        (head | tail << (8 * (8 - len)), 0)
    } else if len >= 2 {
        let head = u64::from(u16::from_be_bytes(packet.read::<2>(offset)?)) << 48;
        let tail = u64::from(u16::from_be_bytes(
            packet.read::<2>(tail_offset(offset, len, 2))?,
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

/// A byte pattern compared against the start of a window in one masked compare.
#[derive(Clone, Copy)]
struct Signature {
    /// The pattern, left-aligned, letters in lower case when `fold` is set for them.
    value: u128,
    /// `0xff` over the pattern's bytes.
    mask: u128,
    /// `0x20` over the letters compared without case: `b | 0x20` is the lower case of an
    /// ASCII letter, and only an upper or lower case letter maps to a given lower case one.
    fold: u128,
    /// The pattern's length.
    len: usize,
}

impl Signature {
    const fn new(pattern: &[u8], ignore_case: bool) -> Signature {
        assert!(!pattern.is_empty() && pattern.len() <= WINDOW);
        let mut signature = Signature {
            value: 0,
            mask: 0,
            fold: 0,
            len: pattern.len(),
        };
        let mut i = 0;
        while i < pattern.len() {
            let shift = 120 - 8 * i;
            let byte = pattern[i];
            if ignore_case && byte.is_ascii_alphabetic() {
                signature.fold |= 0x20 << shift;
                signature.value |= (byte.to_ascii_lowercase() as u128) << shift;
            } else {
                signature.value |= (byte as u128) << shift;
            }
            signature.mask |= 0xff << shift;
            i += 1;
        }
        signature
    }

    const fn exact(pattern: &[u8]) -> Signature {
        Signature::new(pattern, false)
    }

    const fn any_case(pattern: &[u8]) -> Signature {
        Signature::new(pattern, true)
    }

    /// Whether the window, whose payload has `len` bytes, starts with this pattern.
    #[inline(always)]
    fn matches(&self, window: u128, len: usize) -> bool {
        len >= self.len && (window | self.fold) & self.mask == self.value
    }
}

/// Byte `i` of the window.
#[inline(always)]
fn byte(window: u128, i: usize) -> u8 {
    window.to_be_bytes()[i]
}

#[inline(always)]
fn be16(window: u128, i: usize) -> u16 {
    u16::from_be_bytes([byte(window, i), byte(window, i + 1)])
}

#[inline(always)]
fn classify_window(window: u128, len: usize) -> PayloadKind {
    match byte(window, 0) {
        0x16 => tls(window, len),
        0x30 => match snmp(window, len) {
            PayloadKind::Other => imap_tagged(window, len),
            kind => kind,
        },
        0xff => telnet(window, len),
        b'+' => any_of(
            window,
            len,
            &[POP3_OK_SPACE, POP3_OK_CR],
            PayloadKind::MailOrLogin,
        ),
        b'*' => any_of(
            window,
            len,
            &[IMAP_OK, IMAP_PREAUTH],
            PayloadKind::MailOrLogin,
        ),
        first if first.is_ascii_alphanumeric() => text(window, len, first),
        _ => PayloadKind::Other,
    }
}

#[inline(always)]
fn any_of(window: u128, len: usize, signatures: &[Signature], kind: PayloadKind) -> PayloadKind {
    // `signatures` is a constant array: the loop is unrolled into compares.
    for signature in signatures {
        if signature.matches(window, len) {
            return kind;
        }
    }
    PayloadKind::Other
}

#[inline(always)]
fn tls(window: u128, len: usize) -> PayloadKind {
    // Type 0x16 is checked by the caller.
    let record_len = be16(window, 3);
    if len >= 5
        && byte(window, 1) == 0x03
        && byte(window, 2) <= 0x04
        && record_len != 0
        && record_len <= TLS_MAX_RECORD
    {
        PayloadKind::Tls
    } else {
        PayloadKind::Other
    }
}

const IAC: u8 = 0xff;
const TELNET_SB: u8 = 0xfa;
const TELNET_WILL: u8 = 0xfb;
const TELNET_DONT: u8 = 0xfe;

#[inline(always)]
fn telnet(window: u128, len: usize) -> PayloadKind {
    // IAC (the caller checked) then WILL, WONT, DO or DONT (0xfb..=0xfe), any option.
    let negotiation = len >= 3 && (TELNET_WILL..=TELNET_DONT).contains(&byte(window, 1));
    let second =
        len >= 5 && byte(window, 3) == IAC && (TELNET_SB..=TELNET_DONT).contains(&byte(window, 4));
    if negotiation && (len == 3 || second) {
        PayloadKind::MailOrLogin
    } else {
        PayloadKind::Other
    }
}

#[inline(always)]
fn snmp(window: u128, len: usize) -> PayloadKind {
    // SEQUENCE (the caller checked 0x30), then its length in one of three forms. Each form
    // is its own instance so that every byte index below is a constant.
    let first_length_byte = byte(window, 1);
    if first_length_byte < 0x80 {
        snmp_after_header::<2>(window, len, usize::from(first_length_byte))
    } else if first_length_byte == 0x81 {
        snmp_after_header::<3>(window, len, usize::from(byte(window, 2)))
    } else if first_length_byte == 0x82 {
        snmp_after_header::<4>(window, len, usize::from(be16(window, 2)))
    } else {
        PayloadKind::Other
    }
}

/// The SNMP message after a `SEQUENCE` header of `HEADER` bytes declaring `content` bytes.
#[inline(always)]
fn snmp_after_header<const HEADER: usize>(window: u128, len: usize, content: usize) -> PayloadKind {
    // INTEGER, length 1, version; then the tag of the next field.
    if HEADER + content != len || len < HEADER + 4 {
        return PayloadKind::Other;
    }
    if byte(window, HEADER) != 0x02 || byte(window, HEADER + 1) != 0x01 {
        return PayloadKind::Other;
    }
    match (byte(window, HEADER + 2), byte(window, HEADER + 3)) {
        (0, 0x04) => PayloadKind::SnmpV1,
        (1, 0x04) => PayloadKind::SnmpV2c,
        (3, 0x30) => PayloadKind::SnmpV3,
        _ => PayloadKind::Other,
    }
}

const SSH_1: Signature = Signature::exact(b"SSH-1.");
const SSH_2: Signature = Signature::exact(b"SSH-2.");

const HTTP_GET: Signature = Signature::exact(b"GET ");
const HTTP_POST: Signature = Signature::exact(b"POST ");
const HTTP_PUT: Signature = Signature::exact(b"PUT ");
const HTTP_PATCH: Signature = Signature::exact(b"PATCH ");
const HTTP_H2_PREFACE: Signature = Signature::exact(b"PRI * HTTP/2.0\r\n");
const HTTP_HEAD: Signature = Signature::exact(b"HEAD ");
const HTTP_RESPONSE: Signature = Signature::exact(b"HTTP/1.");
const HTTP_DELETE: Signature = Signature::exact(b"DELETE ");
const HTTP_OPTIONS: Signature = Signature::exact(b"OPTIONS ");
const HTTP_CONNECT: Signature = Signature::exact(b"CONNECT ");
const HTTP_TRACE: Signature = Signature::exact(b"TRACE ");

const GREETING_220_SPACE: Signature = Signature::exact(b"220 ");
const GREETING_220_DASH: Signature = Signature::exact(b"220-");
const POP3_OK_SPACE: Signature = Signature::exact(b"+OK ");
const POP3_OK_CR: Signature = Signature::exact(b"+OK\r");
const IMAP_OK: Signature = Signature::exact(b"* OK ");
const IMAP_PREAUTH: Signature = Signature::exact(b"* PREAUTH ");

/// Untagged line commands, grouped by their lower-cased first letter.
const CMD_EHLO: Signature = Signature::any_case(b"EHLO ");
const CMD_HELO: Signature = Signature::any_case(b"HELO ");
const CMD_MAIL: Signature = Signature::any_case(b"MAIL FROM:");
const CMD_RCPT: Signature = Signature::any_case(b"RCPT TO:");
const CMD_AUTH: Signature = Signature::any_case(b"AUTH ");
const CMD_USER: Signature = Signature::any_case(b"USER ");
const CMD_PASS: Signature = Signature::any_case(b"PASS ");
const CMD_CAPA: Signature = Signature::any_case(b"CAPA\r\n");

/// IMAP commands a client opens with, after its tag and a space.
const IMAP_COMMANDS: [Signature; 4] = [
    Signature::any_case(b"LOGIN "),
    Signature::any_case(b"CAPABILITY"),
    Signature::any_case(b"AUTHENTICATE "),
    Signature::any_case(b"STARTTLS"),
];

/// A payload starting with an ASCII letter or digit: HTTP, SSH, greetings, commands.
#[inline(always)]
fn text(window: u128, len: usize, first: u8) -> PayloadKind {
    let http = match first {
        b'G' => HTTP_GET.matches(window, len),
        b'P' => {
            HTTP_POST.matches(window, len)
                || HTTP_PUT.matches(window, len)
                || HTTP_PATCH.matches(window, len)
                || HTTP_H2_PREFACE.matches(window, len)
        }
        b'H' => HTTP_HEAD.matches(window, len) || HTTP_RESPONSE.matches(window, len),
        b'D' => HTTP_DELETE.matches(window, len),
        b'O' => HTTP_OPTIONS.matches(window, len),
        b'C' => HTTP_CONNECT.matches(window, len),
        b'T' => HTTP_TRACE.matches(window, len),
        b'S' => {
            if SSH_1.matches(window, len) || SSH_2.matches(window, len) {
                return PayloadKind::Ssh;
            }
            false
        }
        _ => false,
    };
    if http {
        return PayloadKind::Http;
    }
    let line = match first | 0x20 {
        b'2' => GREETING_220_SPACE.matches(window, len) || GREETING_220_DASH.matches(window, len),
        b'e' => CMD_EHLO.matches(window, len),
        b'h' => CMD_HELO.matches(window, len),
        b'm' => CMD_MAIL.matches(window, len),
        b'r' => CMD_RCPT.matches(window, len),
        b'a' => CMD_AUTH.matches(window, len),
        b'u' => CMD_USER.matches(window, len),
        b'p' => CMD_PASS.matches(window, len),
        b'c' => CMD_CAPA.matches(window, len),
        _ => false,
    };
    if line {
        return PayloadKind::MailOrLogin;
    }
    imap_tagged(window, len)
}

/// `tag SP command`: the tag is 1 to [`IMAP_MAX_TAG`] alphanumerics, so the space that
/// ends it is at one of a few positions. The command is brought to the front with a shift
/// chosen among constants: the BPF backend has no 128-bit shift by a variable amount (LLVM
/// would call `__ashlti3`, which bpf-linker rejects).
#[inline(always)]
fn imap_tagged(window: u128, len: usize) -> PayloadKind {
    let Some(tag_len) = imap_tag_len(window) else {
        return PayloadKind::Other;
    };
    let command = match tag_len {
        1 => window << 16,
        2 => window << 24,
        3 => window << 32,
        4 => window << 40,
        5 => window << 48,
        _ => window << 56,
    };
    // The tag's bytes are in the payload: `len > tag_len` since the space is not past it.
    let rest = len.saturating_sub(tag_len + 1);
    for signature in &IMAP_COMMANDS {
        if tag_len + 1 + signature.len <= WINDOW && signature.matches(command, rest) {
            return PayloadKind::MailOrLogin;
        }
    }
    PayloadKind::Other
}

const _: () = assert!(
    IMAP_MAX_TAG == 6,
    "imap_tag_len and its shifts handle tags of 1 to 6"
);

/// The length of the IMAP tag the window starts with: alphanumerics up to the first space,
/// 1 to [`IMAP_MAX_TAG`] of them. Bytes past the payload are zero, so they end no tag.
#[inline(always)]
fn imap_tag_len(window: u128) -> Option<usize> {
    let bytes = window.to_be_bytes();
    if !bytes[0].is_ascii_alphanumeric() {
        return None;
    }
    // Constant indices: one compare per candidate position.
    for (position, &b) in bytes.iter().enumerate().take(IMAP_MAX_TAG + 1).skip(1) {
        if b == b' ' {
            return Some(position);
        }
        if !b.is_ascii_alphanumeric() {
            return None;
        }
    }
    None
}

#[cfg(any(test, feature = "user"))]
pub mod reference;

#[cfg(test)]
mod tests;
