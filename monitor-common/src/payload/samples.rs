//! Sample payloads: the table of every signature with its near misses, real-looking
//! messages of every kind, and a seeded mutator. Shared by the host tests here and by the
//! kernel tests in `portmon-tests`, which run the same table through the real programs.
#![expect(
    clippy::expect_used,
    reason = "test support: a sample that cannot be built is a bug in the table"
)]
#![expect(
    clippy::missing_panics_doc,
    reason = "test support: only a malformed table panics"
)]

extern crate alloc;
use alloc::{vec, vec::Vec};

use super::PayloadKind;

/// A BER SEQUENCE around `content`, with its length in the given number of long-form
/// length bytes (0 = short form).
#[must_use]
pub fn ber_sequence(content: &[u8], long_form_bytes: usize) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![0x30];
    match long_form_bytes {
        0 => out.push(u8::try_from(len).expect("short-form length below 128")),
        1 => out.extend_from_slice(&[0x81, u8::try_from(len).expect("one-byte length")]),
        _ => {
            out.push(0x82);
            out.extend_from_slice(&u16::try_from(len).expect("two-byte length").to_be_bytes());
        }
    }
    out.extend_from_slice(content);
    out
}

/// An SNMP v1 or v2c GetRequest for sysDescr.0 with community `public`.
#[must_use]
pub fn snmp_community(version: u8, long_form_bytes: usize) -> Vec<u8> {
    let mut content = vec![0x02, 0x01, version, 0x04, 0x06];
    content.extend_from_slice(b"public");
    // GetRequest-PDU: request-id, error-status, error-index, one varbind with a NULL value.
    content.extend_from_slice(&[
        0xa0, 0x1c, 0x02, 0x04, 0x12, 0x34, 0x56, 0x78, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30,
        0x0e, 0x30, 0x0c, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x01, 0x01, 0x00, 0x05, 0x00,
    ]);
    ber_sequence(&content, long_form_bytes)
}

/// An SNMPv3 discovery message (msgGlobalData, empty security parameters, a scoped PDU).
#[must_use]
pub fn snmp_v3(long_form_bytes: usize) -> Vec<u8> {
    let mut content = vec![0x02, 0x01, 0x03];
    content.extend_from_slice(&[
        0x30, 0x11, 0x02, 0x04, 0x01, 0x02, 0x03, 0x04, 0x02, 0x03, 0x00, 0xff, 0xe3, 0x04, 0x01,
        0x04, 0x02, 0x01, 0x03, 0x04, 0x10, 0x30, 0x0e, 0x04, 0x00, 0x02, 0x01, 0x00, 0x02, 0x01,
        0x00, 0x04, 0x00, 0x04, 0x00, 0x04, 0x00, 0x30, 0x12, 0x04, 0x00, 0x04, 0x00, 0xa0, 0x0c,
        0x02, 0x02, 0x37, 0xf0, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x00,
    ]);
    ber_sequence(&content, long_form_bytes)
}

/// `bytes` with byte `at` set to `value`.
#[must_use]
pub fn with(mut bytes: Vec<u8>, at: usize, value: u8) -> Vec<u8> {
    bytes[at] = value;
    bytes
}

/// `bytes` cut to `len`.
#[must_use]
pub fn cut(mut bytes: Vec<u8>, len: usize) -> Vec<u8> {
    bytes.truncate(len);
    bytes
}

/// The start of a TLS 1.0-record ClientHello.
#[must_use]
pub fn tls_client_hello() -> Vec<u8> {
    let mut bytes = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    bytes.extend_from_slice(&[0x5a; 32]);
    bytes
}

/// A TLS handshake record header of the given version and length, then a ServerHello's
/// first bytes.
#[must_use]
pub fn tls_record(version_minor: u8, record_len: u16) -> Vec<u8> {
    let len = record_len.to_be_bytes();
    vec![
        0x16,
        0x03,
        version_minor,
        len[0],
        len[1],
        0x02,
        0x00,
        0x00,
        0x4d,
        0x03,
        0x03,
    ]
}

/// One named case: a payload and what it must be classified as.
pub struct Case {
    /// What the row shows.
    pub name: &'static str,
    /// The whole L4 payload.
    pub payload: Vec<u8>,
    /// What it must be classified as.
    pub expected: PayloadKind,
}

/// A row of the table.
pub fn case(name: &'static str, payload: impl Into<Vec<u8>>, expected: PayloadKind) -> Case {
    Case {
        name,
        payload: payload.into(),
        expected,
    }
}

#[expect(clippy::too_many_lines, reason = "one table, one row per case")]
/// Every signature with its near misses.
#[must_use]
pub fn table() -> Vec<Case> {
    use PayloadKind::{Empty, Http, MailOrLogin, Other, SnmpV1, SnmpV2c, SnmpV3, Ssh, Tls};
    vec![
        case("empty", b"", Empty),
        case("one byte", b"G", Other),
        case("binary noise", b"\x8f\x03\xd1\x00\x7e", Other),
        // TLS
        case("tls client hello 1.0 record", tls_client_hello(), Tls),
        case("tls server hello 1.2 record", tls_record(0x03, 0x7a), Tls),
        case("tls ssl3 record", tls_record(0x00, 0x30), Tls),
        case("tls version 0x0304", tls_record(0x04, 0x30), Tls),
        case("tls header alone", cut(tls_record(0x01, 0x200), 5), Tls),
        case("tls largest record", tls_record(0x03, 18432), Tls),
        case(
            "tls header cut to 4",
            cut(tls_record(0x01, 0x200), 4),
            Other,
        ),
        case(
            "tls application data type",
            with(tls_client_hello(), 0, 0x17),
            Other,
        ),
        case("tls alert type", with(tls_client_hello(), 0, 0x15), Other),
        case(
            "tls major version 2",
            with(tls_client_hello(), 1, 0x02),
            Other,
        ),
        case("tls minor version 5", tls_record(0x05, 0x30), Other),
        case("tls empty record", tls_record(0x03, 0), Other),
        case(
            "tls record one past the largest",
            tls_record(0x03, 18433),
            Other,
        ),
        case(
            "dtls record",
            [0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x30],
            Other,
        ),
        // SSH
        case(
            "ssh 2.0 banner",
            *b"SSH-2.0-OpenSSH_9.6p1 Debian-3\r\n",
            Ssh,
        ),
        case("ssh 1.99 banner", *b"SSH-1.99-Cisco-1.25\r\n", Ssh),
        case("ssh banner cut to 6", *b"SSH-2.", Ssh),
        case("ssh banner cut to 5", *b"SSH-2", Other),
        case("ssh banner cut to 4", *b"SSH-", Other),
        case("ssh version 3", *b"SSH-3.0-x\r\n", Other),
        case("ssh underscore", *b"SSH_2.0-x\r\n", Other),
        case("ssh lower case", *b"ssh-2.0-x\r\n", Other),
        // HTTP
        case("http get", *b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Http),
        case("http post", *b"POST /api HTTP/1.1\r\n", Http),
        case("http put", *b"PUT /x HTTP/1.1\r\n", Http),
        case("http head", *b"HEAD / HTTP/1.0\r\n", Http),
        case("http delete", *b"DELETE /x HTTP/1.1\r\n", Http),
        case("http options", *b"OPTIONS * HTTP/1.1\r\n", Http),
        case("http patch", *b"PATCH /x HTTP/1.1\r\n", Http),
        case("http connect", *b"CONNECT a:443 HTTP/1.1\r\n", Http),
        case("http trace", *b"TRACE / HTTP/1.1\r\n", Http),
        case("http get cut to the space", *b"GET ", Http),
        case("http response", *b"HTTP/1.1 200 OK\r\n", Http),
        case("http 1.0 response cut to 7", *b"HTTP/1.", Http),
        case(
            "http2 cleartext preface",
            *b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            Http,
        ),
        case("http2 preface cut to 15", *b"PRI * HTTP/2.0\r", Other),
        case("http get without space", *b"GET/ HTTP/1.1\r\n", Other),
        case("http get cut to 3", *b"GET", Other),
        case("http lower-case get", *b"get / HTTP/1.1\r\n", Other),
        case("http gets", *b"GETS / HTTP/1.1\r\n", Other),
        case("http post without space", *b"POST", Other),
        case("http delete cut to 6", *b"DELETE", Other),
        case(
            "http options one byte off",
            *b"OPTIONZ / HTTP/1.1\r\n",
            Other,
        ),
        case("http trace one byte off", *b"TRACE\t/ HTTP/1.1\r\n", Other),
        case("http/2 response", *b"HTTP/2 200\r\n", Other),
        case("http response cut to 6", *b"HTTP/1", Other),
        case("http wins over an imap tag", *b"GET LOGIN a b\r\n", Http),
        // Mail and login
        case(
            "smtp greeting",
            *b"220 mail.example.org ESMTP Postfix\r\n",
            MailOrLogin,
        ),
        case(
            "ftp multi-line greeting",
            *b"220-ProFTPD 1.3.8\r\n",
            MailOrLogin,
        ),
        case("greeting cut to 3", *b"220", Other),
        case("greeting 221", *b"221 bye\r\n", Other),
        case("greeting 2200", *b"2200 x\r\n", Other),
        case("pop3 greeting", *b"+OK POP3 ready\r\n", MailOrLogin),
        case("pop3 bare ok", *b"+OK\r\n", MailOrLogin),
        case("pop3 ok cut to 3", *b"+OK", Other),
        case("pop3 okay", *b"+OKAY\r\n", Other),
        case("pop3 error", *b"-ERR no\r\n", Other),
        case(
            "imap greeting",
            *b"* OK [CAPABILITY IMAP4rev1] Dovecot ready.\r\n",
            MailOrLogin,
        ),
        case(
            "imap preauth",
            *b"* PREAUTH IMAP4rev1 ready\r\n",
            MailOrLogin,
        ),
        case("imap greeting cut to 4", *b"* OK", Other),
        case("imap bye", *b"* BYE shutting down\r\n", Other),
        case("smtp ehlo", *b"EHLO client.example.org\r\n", MailOrLogin),
        case("smtp helo lower case", *b"helo x\r\n", MailOrLogin),
        case("smtp ehlo cut to 4", *b"EHLO", Other),
        case("smtp ehlo with a zero", *b"EHL0 x\r\n", Other),
        case(
            "smtp mail from",
            *b"MAIL FROM:<a@example.org>\r\n",
            MailOrLogin,
        ),
        case(
            "smtp mail from mixed case",
            *b"Mail From:<>\r\n",
            MailOrLogin,
        ),
        case("smtp mail without colon", *b"MAIL FROM <a@b>\r\n", Other),
        case("smtp rcpt to", *b"RCPT TO:<b@example.org>\r\n", MailOrLogin),
        case(
            "smtp auth",
            *b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
            MailOrLogin,
        ),
        case("ftp user", *b"USER anonymous\r\n", MailOrLogin),
        case("ftp pass", *b"PASS secret\r\n", MailOrLogin),
        case("pop3 user lower case", *b"user alice\r\n", MailOrLogin),
        case("ftp user cut to 4", *b"USER", Other),
        case("ftp user with tab", *b"USER\talice\r\n", Other),
        case("pop3 capa", *b"CAPA\r\n", MailOrLogin),
        case("pop3 capa cut to 5", *b"CAPA\r", Other),
        case("imap login", *b"a001 LOGIN alice secret\r\n", MailOrLogin),
        case(
            "imap thunderbird capability",
            *b"1 capability\r\n",
            MailOrLogin,
        ),
        case(
            "imap authenticate",
            *b"A1 AUTHENTICATE PLAIN\r\n",
            MailOrLogin,
        ),
        case("imap starttls", *b"a002 STARTTLS\r\n", MailOrLogin),
        case(
            "imap capability filling 16 bytes",
            *b"a0001 CAPABILITY\r\n",
            MailOrLogin,
        ),
        case(
            "imap capability past 16 bytes",
            *b"a00001 CAPABILITY\r\n",
            Other,
        ),
        case(
            "imap authenticate past 16 bytes",
            *b"abc AUTHENTICATE PLAIN\r\n",
            Other,
        ),
        case("imap login without its space", *b"a001 LOGIN", Other),
        case("imap logout", *b"a001 LOGOUT\r\n", Other),
        case("imap tag of 6", *b"aaaaaa LOGIN a b\r\n", MailOrLogin),
        case("imap tag of 7", *b"aaaaaaa LOGIN a b\r\n", Other),
        case("imap tag with a dash", *b"a-1 LOGIN a b\r\n", Other),
        case("imap empty tag", *b" LOGIN a b\r\n", Other),
        case(
            "imap digit tag starting with 0",
            *b"0 LOGIN a b\r\n",
            MailOrLogin,
        ),
        case(
            "telnet negotiation",
            [0xff, 0xfd, 0x18, 0xff, 0xfd, 0x20, 0xff, 0xfd, 0x23],
            MailOrLogin,
        ),
        case("telnet single negotiation", [0xff, 0xfb, 0x01], MailOrLogin),
        case(
            "telnet negotiation then subnegotiation",
            [0xff, 0xfd, 0x18, 0xff, 0xfa],
            MailOrLogin,
        ),
        case(
            "telnet negotiation cut to 4",
            [0xff, 0xfd, 0x18, 0xff],
            Other,
        ),
        case("telnet negotiation cut to 2", [0xff, 0xfd], Other),
        case(
            "telnet subnegotiation first",
            [0xff, 0xfa, 0x18, 0xff, 0xfd],
            Other,
        ),
        case("telnet escaped 0xff", [0xff, 0xff, 0x01], Other),
        case(
            "telnet second is not a command",
            [0xff, 0xfc, 0x01, 0xff, 0x00],
            Other,
        ),
        case(
            "telnet one negotiation then data",
            [0xff, 0xfd, 0x18, 0x41, 0x42],
            Other,
        ),
        case("telnet without iac", [0xfe, 0xfd, 0x18], Other),
        // SNMP
        case("snmp v1 get", snmp_community(0, 0), SnmpV1),
        case("snmp v2c get", snmp_community(1, 0), SnmpV2c),
        case(
            "snmp v2c get, one-byte long form",
            snmp_community(1, 1),
            SnmpV2c,
        ),
        case(
            "snmp v2c get, two-byte long form",
            snmp_community(1, 2),
            SnmpV2c,
        ),
        case("snmp v3 discovery", snmp_v3(0), SnmpV3),
        case("snmp v3 discovery, two-byte long form", snmp_v3(2), SnmpV3),
        case("snmp version 2", with(snmp_community(1, 0), 4, 2), Other),
        case(
            "snmp v2c cut by one",
            {
                let m = snmp_community(1, 0);
                cut(m.clone(), m.len() - 1)
            },
            Other,
        ),
        case(
            "snmp v2c with a trailing byte",
            {
                let mut m = snmp_community(1, 0);
                m.push(0);
                m
            },
            Other,
        ),
        case(
            "snmp v2c length one short",
            {
                let m = snmp_community(1, 0);
                with(m.clone(), 1, m[1] - 1)
            },
            Other,
        ),
        case(
            "snmp three-byte long form",
            [0x30, 0x83, 0, 0, 5, 2, 1, 1, 4, 0],
            Other,
        ),
        case(
            "snmp indefinite length",
            [0x30, 0x80, 2, 1, 1, 4, 0, 0, 0],
            Other,
        ),
        case(
            "snmp two-byte version integer",
            [0x30, 0x06, 0x02, 0x02, 0x00, 0x01, 0x04, 0x00],
            Other,
        ),
        case(
            "snmp v2c community not a string",
            with(snmp_community(1, 0), 5, 0x05),
            Other,
        ),
        case(
            "snmp v3 followed by a string",
            [0x30, 0x05, 2, 1, 3, 4, 0],
            Other,
        ),
        case(
            "snmp v1 followed by a sequence",
            [0x30, 0x05, 2, 1, 0, 0x30, 0],
            Other,
        ),
        case(
            "snmp header without the next tag",
            [0x30, 0x03, 2, 1, 1],
            Other,
        ),
        case(
            "snmp set instead of sequence",
            with(snmp_community(1, 0), 0, 0x31),
            Other,
        ),
    ]
}

/// SplitMix64: a small seeded generator, so that a failure reproduces.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (`bound > 0`).
    pub fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next_u64() % bound as u64).expect("below a usize bound")
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64().to_le_bytes()[0]
    }
}

/// Real-looking payloads of every kind: the seeds the mutations start from.
#[must_use]
pub fn corpus() -> Vec<Vec<u8>> {
    let mut corpus: Vec<Vec<u8>> = table()
        .into_iter()
        .filter(|case| case.expected != PayloadKind::Other)
        .map(|case| case.payload)
        .collect();
    corpus.push(snmp_community(0, 1));
    corpus.push(snmp_community(0, 2));
    corpus.push(snmp_v3(1));
    corpus
}

/// One random change to `payload`.
pub fn mutate(rng: &mut Rng, payload: &mut Vec<u8>) {
    let len = payload.len();
    // Most of the signature lives in the first bytes: aim there.
    let at = |rng: &mut Rng| rng.below(len.clamp(1, 20));
    match rng.below(6) {
        0 if len > 0 => {
            let i = at(rng);
            payload[i] = rng.byte();
        }
        1 if len > 0 => {
            let i = at(rng);
            payload[i] = if rng.below(2) == 0 {
                payload[i].wrapping_add(1)
            } else {
                payload[i].wrapping_sub(1)
            };
        }
        2 if len > 0 => {
            let i = at(rng);
            payload[i] ^= 0x20;
        }
        3 => {
            let i = rng.below(len.min(20) + 1);
            payload.insert(i, rng.byte());
        }
        4 if len > 0 => {
            let i = at(rng);
            payload.remove(i);
        }
        _ => payload.truncate(rng.below(len + 1)),
    }
}
