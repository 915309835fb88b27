//! What a payload's first bytes prove about a port, set against what the policy promises.
//!
//! The kernel counts, per tracked port, the payloads whose first bytes match a signature
//! ([`PayloadKind`]). A signature is *positive evidence*: a TLS record header, an HTTP
//! request line, an SNMP version field. A payload that matches nothing (`other`: a
//! mid-stream segment, an encrypted record, an unknown protocol) proves nothing and is
//! never held against a port.
//!
//! Three answers come out of it, all pure functions of the port's [`PortInfo`] and a kind:
//!
//! * [`evidence_security`]: what the kind alone says, plaintext (HTTP, mail or login, SNMP
//!   v1 and v2c: credentials travel in clear) or secure (TLS, SSH, SNMPv3);
//! * [`mismatch`]: evidence that contradicts the policy: plaintext on a port the policy
//!   calls secure (HTTP on 443, an IMAP greeting on 993, the Docker API in clear on 2376),
//!   which is what the `mismatch` alert is about, and TLS on a port the policy calls
//!   plaintext (TLS on 80), which is only informational;
//! * [`resolve`]: the security of an *ambiguous* port once evidence is in: SNMP on 161/162
//!   is plaintext when v1 or v2c was seen, secure when only v3 was. Plaintext evidence wins
//!   over secure evidence: one cleartext community string is enough to call the port
//!   plaintext. Secure and plaintext ports keep their policy (a contradiction is a
//!   [`mismatch`], not a new classification), and so do ports without evidence.
//!
//! The policy's ambiguous ports other than SNMP are resolved the same way (HTTP on an
//! Elasticsearch port without TLS is plaintext). What the signatures cannot see stays
//! unresolved: LDAP's BER messages, PostgreSQL's or MySQL's own handshakes.

use monitor_common::payload::PayloadKind;

use super::{PortInfo, Security};

/// What `kind` alone says about the traffic: `None` for kinds that prove nothing.
#[must_use]
pub const fn evidence_security(kind: PayloadKind) -> Option<Security> {
    match kind {
        PayloadKind::Http
        | PayloadKind::MailOrLogin
        | PayloadKind::SnmpV1
        | PayloadKind::SnmpV2c => Some(Security::Plaintext),
        PayloadKind::Tls | PayloadKind::Ssh | PayloadKind::SnmpV3 => Some(Security::Secure),
        PayloadKind::Other | PayloadKind::Empty => None,
    }
}

/// How serious a [`Mismatch`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    /// Plaintext on a port the policy calls secure: credentials or content in clear where
    /// everyone expects encryption. The `mismatch` alert fires on it.
    Alert,
    /// TLS on a port the policy calls plaintext: better than promised, worth knowing
    /// (an inventory that is out of date, a tunnel), never alerted on.
    Informational,
}

/// Evidence that contradicts the policy of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mismatch {
    /// What the policy promises: [`Security::Secure`] or [`Security::Plaintext`].
    pub expected: Security,
    /// What the payload showed.
    pub observed: PayloadKind,
    /// Whether it is alerted on.
    pub severity: Severity,
}

/// The contradiction between the policy of `port` and one payload of `kind`, if any.
///
/// Only positive evidence counts: `other` is never a mismatch, nor is anything on an
/// ambiguous or unknown port. SSH on a plaintext port is not reported either: the issue
/// this answers is TLS standing in for a cleartext protocol.
#[must_use]
pub fn mismatch(port: &PortInfo<'_>, kind: PayloadKind) -> Option<Mismatch> {
    let evidence = evidence_security(kind)?;
    let severity = match (port.security, evidence) {
        (Security::Secure, Security::Plaintext) => Severity::Alert,
        (Security::Plaintext, Security::Secure) if kind == PayloadKind::Tls => {
            Severity::Informational
        }
        _ => return None,
    };
    Some(Mismatch {
        expected: port.security,
        observed: kind,
        severity,
    })
}

/// The security of `port` given the payloads counted on it, as `(kind, packets)` pairs.
///
/// Ambiguous ports with evidence resolve to plaintext (any plaintext kind counted) or
/// secure (only secure kinds); every other port keeps its policy.
#[must_use]
pub fn resolve(
    port: &PortInfo<'_>,
    counted: impl IntoIterator<Item = (PayloadKind, u64)>,
) -> Security {
    if port.security != Security::Ambiguous {
        return port.security;
    }
    let mut secure = false;
    for (kind, packets) in counted {
        if packets == 0 {
            continue;
        }
        match evidence_security(kind) {
            Some(Security::Plaintext) => return Security::Plaintext,
            Some(Security::Secure) => secure = true,
            _ => {}
        }
    }
    if secure {
        Security::Secure
    } else {
        Security::Ambiguous
    }
}

/// The `security` label of a payload series of `kind` on `port`: what the kind proves when
/// it proves something, else the port's policy.
///
/// Fixed for the life of the series (it depends on the kind, not on what else was seen),
/// so splitting 161/udp's payloads by this label shows v1/v2c as plaintext and v3 as secure
/// without ever relabelling a counter.
#[must_use]
pub fn payload_security(port: &PortInfo<'_>, kind: PayloadKind) -> Security {
    evidence_security(kind).unwrap_or(port.security)
}

#[cfg(test)]
mod tests {
    use monitor_common::layout::L4;

    use super::*;
    use crate::ports::Policy;

    /// (case, port, protocol, kind, expected mismatch as (expected, severity)).
    type MismatchCase = (
        &'static str,
        u16,
        L4,
        PayloadKind,
        Option<(Security, Severity)>,
    );

    /// Checked against the builtin policy, which carries every pair of
    /// `shared/ports-and-secure-alternatives.md` (see `ports::tests`).
    #[rustfmt::skip]
    const MISMATCHES: &[MismatchCase] = &[
        // The document's secure ports carrying plaintext.
        ("HTTP on 443 (HTTPS)", 443, L4::Tcp, PayloadKind::Http, Some((Security::Secure, Severity::Alert))),
        ("IMAP greeting on 993 (IMAPS)", 993, L4::Tcp, PayloadKind::MailOrLogin, Some((Security::Secure, Severity::Alert))),
        ("SMTP on 587 (submission)", 587, L4::Tcp, PayloadKind::MailOrLogin, Some((Security::Secure, Severity::Alert))),
        ("FTP login on 22 (SSH)", 22, L4::Tcp, PayloadKind::MailOrLogin, Some((Security::Secure, Severity::Alert))),
        ("HTTP on 636 (LDAPS)", 636, L4::Tcp, PayloadKind::Http, Some((Security::Secure, Severity::Alert))),
        ("HTTP on 853 (DoT)", 853, L4::Tcp, PayloadKind::Http, Some((Security::Secure, Severity::Alert))),
        ("SNMPv2c on 636 (LDAPS)", 636, L4::Tcp, PayloadKind::SnmpV2c, Some((Security::Secure, Severity::Alert))),
        ("Docker API in clear on 2376", 2376, L4::Tcp, PayloadKind::Http, Some((Security::Secure, Severity::Alert))),
        ("SNMPv1 on SNMP over DTLS 10161/udp", 10161, L4::Udp, PayloadKind::SnmpV1, Some((Security::Secure, Severity::Alert))),
        // Secure evidence on secure ports, and no evidence at all.
        ("TLS on 443", 443, L4::Tcp, PayloadKind::Tls, None),
        ("SSH on 22", 22, L4::Tcp, PayloadKind::Ssh, None),
        ("SNMPv3 on 636", 636, L4::Tcp, PayloadKind::SnmpV3, None),
        ("mid-stream segment on 443", 443, L4::Tcp, PayloadKind::Other, None),
        ("mid-stream segment on 993", 993, L4::Tcp, PayloadKind::Other, None),
        ("no payload on 443", 443, L4::Tcp, PayloadKind::Empty, None),
        // The document's plaintext ports carrying TLS: informational.
        ("TLS on 80 (HTTP)", 80, L4::Tcp, PayloadKind::Tls, Some((Security::Plaintext, Severity::Informational))),
        ("TLS on 143 (IMAP, implicit TLS on the wrong port)", 143, L4::Tcp, PayloadKind::Tls, Some((Security::Plaintext, Severity::Informational))),
        ("TLS on 389 (LDAP)", 389, L4::Tcp, PayloadKind::Tls, Some((Security::Plaintext, Severity::Informational))),
        ("TLS on 21 (FTP)", 21, L4::Tcp, PayloadKind::Tls, Some((Security::Plaintext, Severity::Informational))),
        ("TLS on 2375 (Docker)", 2375, L4::Tcp, PayloadKind::Tls, Some((Security::Plaintext, Severity::Informational))),
        // Plaintext on plaintext ports is what the policy says already.
        ("HTTP on 80", 80, L4::Tcp, PayloadKind::Http, None),
        ("telnet on 23", 23, L4::Tcp, PayloadKind::MailOrLogin, None),
        ("SSH on 23 is not TLS", 23, L4::Tcp, PayloadKind::Ssh, None),
        ("SNMPv3 on 80 is not TLS", 80, L4::Tcp, PayloadKind::SnmpV3, None),
        // Ambiguous and unknown ports are never mismatched.
        ("SNMPv2c on 161/udp", 161, L4::Udp, PayloadKind::SnmpV2c, None),
        ("SNMPv3 on 162/udp", 162, L4::Udp, PayloadKind::SnmpV3, None),
        ("HTTP on NFS 2049", 2049, L4::Tcp, PayloadKind::Http, None),
        ("TLS on an unknown port", 40_443, L4::Tcp, PayloadKind::Tls, None),
        ("HTTP on an unknown port", 40_080, L4::Tcp, PayloadKind::Http, None),
    ];

    #[test]
    fn mismatches_against_the_port_document() {
        let policy = Policy::builtin();
        for (name, port, l4, kind, expected) in MISMATCHES {
            let info = policy.classify(*l4, *port);
            let got = mismatch(&info, *kind).map(|m| {
                assert_eq!(m.observed, *kind, "case {name}: observed kind");
                (m.expected, m.severity)
            });
            assert_eq!(got, *expected, "case {name}: policy {:?}", info.security);
        }
    }

    #[test]
    fn every_plaintext_kind_on_every_secure_port_alerts() {
        let policy = Policy::builtin();
        let secure: Vec<_> = policy
            .security_table()
            .filter(|info| info.security == Security::Secure)
            .collect();
        assert!(secure.len() > 20, "expected the table's secure ports");
        for info in &secure {
            for kind in PayloadKind::ALL {
                let got = mismatch(info, kind).map(|m| m.severity);
                let expected = kind.is_plaintext().then_some(Severity::Alert);
                assert_eq!(
                    got,
                    expected,
                    "{kind:?} on {}/{} ({})",
                    info.port,
                    info.protocol.as_str(),
                    info.service
                );
            }
        }
    }

    #[test]
    fn evidence_agrees_with_the_kinds_own_plaintext_flag() {
        for kind in PayloadKind::ALL {
            let expected = match kind {
                PayloadKind::Other | PayloadKind::Empty => None,
                kind if kind.is_plaintext() => Some(Security::Plaintext),
                _ => Some(Security::Secure),
            };
            assert_eq!(evidence_security(kind), expected, "{kind:?}");
        }
    }

    /// (case, port, protocol, counted kinds, expected resolved security).
    type ResolveCase = (
        &'static str,
        u16,
        L4,
        &'static [(PayloadKind, u64)],
        Security,
    );

    #[rustfmt::skip]
    const RESOLUTIONS: &[ResolveCase] = &[
        ("SNMP without evidence stays ambiguous", 161, L4::Udp, &[], Security::Ambiguous),
        ("SNMP with only unrecognised payloads", 161, L4::Udp, &[(PayloadKind::Other, 9)], Security::Ambiguous),
        ("SNMPv1 requests", 161, L4::Udp, &[(PayloadKind::SnmpV1, 3)], Security::Plaintext),
        ("SNMPv2c requests", 161, L4::Udp, &[(PayloadKind::SnmpV2c, 3)], Security::Plaintext),
        ("SNMPv3 requests", 161, L4::Udp, &[(PayloadKind::SnmpV3, 3)], Security::Secure),
        ("SNMPv2c traps", 162, L4::Udp, &[(PayloadKind::SnmpV2c, 1)], Security::Plaintext),
        ("SNMPv3 traps", 162, L4::Udp, &[(PayloadKind::SnmpV3, 1)], Security::Secure),
        ("v3 and one v2c: the cleartext community wins", 161, L4::Udp, &[(PayloadKind::SnmpV3, 100), (PayloadKind::SnmpV2c, 1)], Security::Plaintext),
        ("a zero count is no evidence", 161, L4::Udp, &[(PayloadKind::SnmpV2c, 0), (PayloadKind::SnmpV3, 2)], Security::Secure),
        ("SNMP over TCP", 161, L4::Tcp, &[(PayloadKind::SnmpV2c, 1)], Security::Plaintext),
        ("Elasticsearch over plain HTTP", 9200, L4::Tcp, &[(PayloadKind::Http, 5)], Security::Plaintext),
        ("etcd with TLS", 2379, L4::Tcp, &[(PayloadKind::Tls, 5)], Security::Secure),
        ("a secure port keeps its policy", 443, L4::Tcp, &[(PayloadKind::Http, 5)], Security::Secure),
        ("a plaintext port keeps its policy", 80, L4::Tcp, &[(PayloadKind::Tls, 5)], Security::Plaintext),
        ("an unknown port stays unknown", 40_000, L4::Udp, &[(PayloadKind::SnmpV2c, 5)], Security::Unknown),
    ];

    #[test]
    fn ambiguous_ports_resolve_by_evidence() {
        let policy = Policy::builtin();
        for (name, port, l4, counted, expected) in RESOLUTIONS {
            let info = policy.classify(*l4, *port);
            assert_eq!(
                resolve(&info, counted.iter().copied()),
                *expected,
                "case {name}"
            );
        }
    }

    #[test]
    fn payload_series_are_labelled_by_what_they_prove() {
        let policy = Policy::builtin();
        let snmp = policy.classify(L4::Udp, 161);
        let https = policy.classify(L4::Tcp, 443);
        let cases = [
            ("v1 on 161", &snmp, PayloadKind::SnmpV1, Security::Plaintext),
            (
                "v2c on 161",
                &snmp,
                PayloadKind::SnmpV2c,
                Security::Plaintext,
            ),
            ("v3 on 161", &snmp, PayloadKind::SnmpV3, Security::Secure),
            (
                "other on 161",
                &snmp,
                PayloadKind::Other,
                Security::Ambiguous,
            ),
            (
                "HTTP on 443",
                &https,
                PayloadKind::Http,
                Security::Plaintext,
            ),
            ("other on 443", &https, PayloadKind::Other, Security::Secure),
        ];
        for (name, info, kind, expected) in cases {
            assert_eq!(payload_security(info, kind), expected, "case {name}");
        }
    }
}
