//! The reference classifier: the signatures of [`super`], written as plainly as possible
//! on a byte slice, for differential tests against the kernel's classifier.
//!
//! It shares no code with the fast path: it takes the whole payload as a slice, tries each
//! kind's signatures in order of precedence with `starts_with` and
//! `eq_ignore_ascii_case`, decodes the BER length generically and finds the IMAP tag by
//! searching for the space. Only the constants that define the signatures are shared.

use super::{IMAP_MAX_TAG, PayloadKind, TLS_MAX_RECORD, WINDOW};

const HTTP_PREFIXES: [&[u8]; 11] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
    b"HTTP/1.",
    b"PRI * HTTP/2.0\r\n",
];

const GREETINGS: [&[u8]; 6] = [b"220 ", b"220-", b"+OK ", b"+OK\r", b"* OK ", b"* PREAUTH "];

const COMMANDS: [&[u8]; 8] = [
    b"EHLO ",
    b"HELO ",
    b"MAIL FROM:",
    b"RCPT TO:",
    b"AUTH ",
    b"USER ",
    b"PASS ",
    b"CAPA\r\n",
];

const IMAP_COMMANDS: [&[u8]; 4] = [b"LOGIN ", b"CAPABILITY", b"AUTHENTICATE ", b"STARTTLS"];

/// Classifies a whole L4 payload.
#[must_use]
pub fn classify(payload: &[u8]) -> PayloadKind {
    if payload.is_empty() {
        PayloadKind::Empty
    } else if is_tls(payload) {
        PayloadKind::Tls
    } else if payload.starts_with(b"SSH-1.") || payload.starts_with(b"SSH-2.") {
        PayloadKind::Ssh
    } else if HTTP_PREFIXES.iter().any(|p| payload.starts_with(p)) {
        PayloadKind::Http
    } else if let Some(kind) = snmp_version(payload) {
        kind
    } else if is_telnet(payload) || is_mail_or_login(payload) {
        PayloadKind::MailOrLogin
    } else {
        PayloadKind::Other
    }
}

fn is_tls(payload: &[u8]) -> bool {
    let [0x16, 0x03, minor, hi, lo, ..] = *payload else {
        return false;
    };
    let record_len = u16::from_be_bytes([hi, lo]);
    minor <= 0x04 && (1..=TLS_MAX_RECORD).contains(&record_len)
}

/// The SNMP version of a message that fills the whole payload.
fn snmp_version(payload: &[u8]) -> Option<PayloadKind> {
    let (&tag, rest) = payload.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (content_len, content) = ber_length(rest)?;
    if content.len() != content_len {
        return None;
    }
    match content {
        [0x02, 0x01, 0x00, 0x04, ..] => Some(PayloadKind::SnmpV1),
        [0x02, 0x01, 0x01, 0x04, ..] => Some(PayloadKind::SnmpV2c),
        [0x02, 0x01, 0x03, 0x30, ..] => Some(PayloadKind::SnmpV3),
        _ => None,
    }
}

/// A BER length (short form, or long form of one or two bytes) and what follows it.
fn ber_length(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (&first, rest) = bytes.split_first()?;
    if first < 0x80 {
        return Some((usize::from(first), rest));
    }
    let count = usize::from(first & 0x7f);
    if !(1..=2).contains(&count) || rest.len() < count {
        return None;
    }
    let (digits, rest) = rest.split_at(count);
    let len = digits
        .iter()
        .fold(0usize, |acc, &digit| acc << 8 | usize::from(digit));
    Some((len, rest))
}

fn is_telnet(payload: &[u8]) -> bool {
    const IAC: u8 = 0xff;
    let negotiation = |command: u8| (0xfb..=0xfe).contains(&command);
    match payload {
        [IAC, command, _] => negotiation(*command),
        [IAC, command, _, IAC, second, ..] => {
            negotiation(*command) && (0xfa..=0xfe).contains(second)
        }
        _ => false,
    }
}

fn is_mail_or_login(payload: &[u8]) -> bool {
    GREETINGS.iter().any(|g| payload.starts_with(g))
        || COMMANDS.iter().any(|c| starts_with_any_case(payload, c))
        || is_imap_tagged(payload)
}

fn starts_with_any_case(payload: &[u8], prefix: &[u8]) -> bool {
    payload
        .get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

fn is_imap_tagged(payload: &[u8]) -> bool {
    let window = &payload[..payload.len().min(WINDOW)];
    let Some(space) = window.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (tag, after) = (&window[..space], &window[space + 1..]);
    (1..=IMAP_MAX_TAG).contains(&tag.len())
        && tag.iter().all(u8::is_ascii_alphanumeric)
        && IMAP_COMMANDS
            .iter()
            .any(|command| starts_with_any_case(after, command))
}
