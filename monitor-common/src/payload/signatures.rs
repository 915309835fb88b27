//! The signatures of [`super`]'s table, checked on the 16-byte window with masked
//! compares and constant shifts only.

use super::{IMAP_MAX_TAG, PayloadKind, TLS_MAX_RECORD, WINDOW};

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

/// Classifies a window (see [`super::read_window`]) of a payload of `len` bytes.
#[inline(always)]
pub(super) fn classify_window(window: u128, len: usize) -> PayloadKind {
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
