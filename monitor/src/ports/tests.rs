//! Tests of the policy: the port document's pairs, the table's invariants, ranges, resolution
//! and overrides.

#![expect(clippy::expect_used, reason = "tests panic with what they expected")]

use monitor_common::layout::L4;
use serde::Deserialize;

use super::*;

/// One pair of `shared/ports-and-secure-alternatives.md`.
struct DocPair {
    name: &'static str,
    port: u16,
    protocol: L4,
    service: &'static str,
    security: Security,
    /// The alternative the document names, as it must appear in `secure_alternative`.
    alternative: Option<(u16, L4)>,
    never_across_perimeter: bool,
}

/// Every pair of the shared port document, and the secure side of each.
#[rustfmt::skip]
const DOC_PAIRS: &[DocPair] = &[
    DocPair { name: "FTP -> SFTP", port: 21, protocol: L4::Tcp, service: "ftp", security: Security::Plaintext, alternative: Some((22, L4::Tcp)), never_across_perimeter: false },
    DocPair { name: "telnet -> SSH", port: 23, protocol: L4::Tcp, service: "telnet", security: Security::Plaintext, alternative: Some((22, L4::Tcp)), never_across_perimeter: false },
    DocPair { name: "SMTP -> submission", port: 25, protocol: L4::Tcp, service: "smtp", security: Security::Plaintext, alternative: Some((587, L4::Tcp)), never_across_perimeter: false },
    DocPair { name: "Time tcp -> NTP", port: 37, protocol: L4::Tcp, service: "time", security: Security::Plaintext, alternative: Some((123, L4::Udp)), never_across_perimeter: false },
    DocPair { name: "Time udp -> NTP", port: 37, protocol: L4::Udp, service: "time", security: Security::Plaintext, alternative: Some((123, L4::Udp)), never_across_perimeter: false },
    DocPair { name: "DNS udp -> DoT", port: 53, protocol: L4::Udp, service: "dns", security: Security::Plaintext, alternative: Some((853, L4::Tcp)), never_across_perimeter: false },
    DocPair { name: "DNS tcp -> DoT", port: 53, protocol: L4::Tcp, service: "dns", security: Security::Plaintext, alternative: Some((853, L4::Tcp)), never_across_perimeter: false },
    DocPair { name: "HTTP -> HTTPS", port: 80, protocol: L4::Tcp, service: "http", security: Security::Plaintext, alternative: Some((443, L4::Tcp)), never_across_perimeter: false },
    DocPair { name: "IMAP -> IMAPS", port: 143, protocol: L4::Tcp, service: "imap", security: Security::Plaintext, alternative: Some((993, L4::Tcp)), never_across_perimeter: false },
    DocPair { name: "SNMP udp: version decides", port: 161, protocol: L4::Udp, service: "snmp", security: Security::Ambiguous, alternative: None, never_across_perimeter: false },
    DocPair { name: "SNMP tcp: version decides", port: 161, protocol: L4::Tcp, service: "snmp", security: Security::Ambiguous, alternative: None, never_across_perimeter: false },
    DocPair { name: "SNMP trap udp: version decides", port: 162, protocol: L4::Udp, service: "snmptrap", security: Security::Ambiguous, alternative: None, never_across_perimeter: false },
    DocPair { name: "SNMP trap tcp: version decides", port: 162, protocol: L4::Tcp, service: "snmptrap", security: Security::Ambiguous, alternative: None, never_across_perimeter: false },
    DocPair { name: "SMB -> NFS, never across the perimeter", port: 445, protocol: L4::Tcp, service: "smb", security: Security::Plaintext, alternative: Some((2049, L4::Tcp)), never_across_perimeter: true },
    DocPair { name: "NFS tcp, never across the perimeter", port: 2049, protocol: L4::Tcp, service: "nfs", security: Security::Ambiguous, alternative: None, never_across_perimeter: true },
    DocPair { name: "NFS udp, never across the perimeter", port: 2049, protocol: L4::Udp, service: "nfs", security: Security::Ambiguous, alternative: None, never_across_perimeter: true },
    DocPair { name: "LDAP -> LDAPS", port: 389, protocol: L4::Tcp, service: "ldap", security: Security::Plaintext, alternative: Some((636, L4::Tcp)), never_across_perimeter: false },
    DocPair { name: "SSH itself", port: 22, protocol: L4::Tcp, service: "ssh", security: Security::Secure, alternative: None, never_across_perimeter: false },
    DocPair { name: "submission itself", port: 587, protocol: L4::Tcp, service: "submission", security: Security::Secure, alternative: None, never_across_perimeter: false },
    DocPair { name: "DoT itself", port: 853, protocol: L4::Tcp, service: "dot", security: Security::Secure, alternative: None, never_across_perimeter: false },
    DocPair { name: "HTTPS itself", port: 443, protocol: L4::Tcp, service: "https", security: Security::Secure, alternative: None, never_across_perimeter: false },
    DocPair { name: "IMAPS itself", port: 993, protocol: L4::Tcp, service: "imaps", security: Security::Secure, alternative: None, never_across_perimeter: false },
    DocPair { name: "LDAPS itself", port: 636, protocol: L4::Tcp, service: "ldaps", security: Security::Secure, alternative: None, never_across_perimeter: false },
];

/// The `(port/proto)` references in an alternative's text, e.g. `ssh (22/tcp)` gives 22/tcp.
fn referenced_ports(text: &str) -> Vec<(u16, L4)> {
    text.split(['(', ')', ' '])
        .filter_map(|token| {
            let (port, protocol) = token.split_once('/')?;
            let protocol = match protocol {
                "tcp" => L4::Tcp,
                "udp" => L4::Udp,
                _ => return None,
            };
            Some((port.parse().ok()?, protocol))
        })
        .collect()
}

#[test]
fn every_pair_of_the_port_document_is_in_the_table() {
    let policy = Policy::builtin();
    for pair in DOC_PAIRS {
        let info = policy.classify(pair.protocol, pair.port);
        let what = format!("{} ({}/{})", pair.name, pair.port, pair.protocol.as_str());
        assert!(
            info.in_security_table,
            "{what}: expected in the security table, got {info:?}"
        );
        assert_eq!(info.service, pair.service, "{what}: service");
        assert_eq!(info.security, pair.security, "{what}: security");
        assert_eq!(
            info.never_across_perimeter, pair.never_across_perimeter,
            "{what}: never_across_perimeter"
        );
        let source = info.source.unwrap_or_default();
        assert!(
            source.contains("ports-and-secure-alternatives.md"),
            "{what}: expected the document as source, got {source:?}"
        );
        if pair.security != Security::Secure {
            assert!(
                info.reason.is_some_and(|reason| !reason.is_empty()),
                "{what}: expected a one-line reason, got {info:?}"
            );
        }
        if let Some(alternative) = pair.alternative {
            let text = info.secure_alternative.unwrap_or_default();
            assert!(
                referenced_ports(text).contains(&alternative),
                "{what}: expected the alternative to name {}/{}, got {text:?}",
                alternative.0,
                alternative.1.as_str()
            );
            let target = policy.classify(alternative.1, alternative.0);
            assert!(
                target.in_security_table && target.security != Security::Plaintext,
                "{what}: expected the alternative {}/{} in the table and not plaintext, got {target:?}",
                alternative.0,
                alternative.1.as_str()
            );
        }
    }
}

#[test]
fn snmp_reason_says_the_version_decides() {
    let policy = Policy::builtin();
    for port in [161, 162] {
        let reason = policy.classify(L4::Udp, port).reason.unwrap_or_default();
        assert!(
            reason.starts_with("the version decides"),
            "{port}/udp: expected the version to decide, got {reason:?}"
        );
    }
}

#[test]
fn every_table_entry_is_complete_and_consistent() {
    let policy = Policy::builtin();
    let builtin_rows: usize = table::BUILTIN.iter().map(|row| row.entries().count()).sum();
    assert_eq!(
        policy.security_table_len(),
        builtin_rows,
        "expected no (port, protocol) twice in the builtin table"
    );
    let entries: Vec<_> = policy.security_table().collect();
    for pair in entries.windows(2) {
        assert!(
            (pair[0].port, pair[0].protocol) < (pair[1].port, pair[1].protocol),
            "expected the table sorted by port then protocol, got {}/{} before {}/{}",
            pair[0].port,
            pair[0].protocol.as_str(),
            pair[1].port,
            pair[1].protocol.as_str()
        );
    }
    for info in &entries {
        let what = format!("{}/{} {}", info.port, info.protocol.as_str(), info.service);
        assert_ne!(
            info.security,
            Security::Unknown,
            "{what}: a table entry is plaintext, secure or ambiguous"
        );
        assert!(
            !info.service.is_empty() && info.service != UNKNOWN_SERVICE,
            "{what}: expected a real service name"
        );
        assert!(
            info.service
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{what}: expected a lowercase label-friendly service name"
        );
        assert!(
            info.source.is_some_and(|source| !source.is_empty()),
            "{what}: expected a source note"
        );
        if info.security != Security::Secure {
            assert!(
                info.reason.is_some(),
                "{what}: expected a reason for a {} entry",
                info.security.as_str()
            );
        }
        for text in [info.reason, info.secure_alternative, info.source]
            .into_iter()
            .flatten()
        {
            assert!(
                !text.contains('\n') && text.len() <= 120,
                "{what}: expected one short line, got {text:?}"
            );
        }
        for (port, protocol) in referenced_ports(info.secure_alternative.unwrap_or_default()) {
            let target = policy.classify(protocol, port);
            assert!(
                target.in_security_table && target.security != Security::Plaintext,
                "{what}: its alternative {port}/{} is not a non-plaintext table entry: {target:?}",
                protocol.as_str()
            );
        }
    }
}

#[test]
fn table_covers_what_a_security_engineer_expects() {
    let policy = Policy::builtin();
    let expected: &[(u16, L4, Security)] = &[
        (110, L4::Tcp, Security::Plaintext),
        (995, L4::Tcp, Security::Secure),
        (465, L4::Tcp, Security::Secure),
        (989, L4::Tcp, Security::Secure),
        (990, L4::Tcp, Security::Secure),
        (512, L4::Tcp, Security::Plaintext),
        (513, L4::Tcp, Security::Plaintext),
        (514, L4::Tcp, Security::Plaintext),
        (514, L4::Udp, Security::Plaintext),
        (6514, L4::Tcp, Security::Secure),
        (69, L4::Udp, Security::Plaintext),
        (1883, L4::Tcp, Security::Plaintext),
        (8883, L4::Tcp, Security::Secure),
        (5985, L4::Tcp, Security::Ambiguous),
        (5986, L4::Tcp, Security::Secure),
        (2375, L4::Tcp, Security::Plaintext),
        (2376, L4::Tcp, Security::Secure),
        (8080, L4::Tcp, Security::Plaintext),
        (8443, L4::Tcp, Security::Secure),
        (5900, L4::Tcp, Security::Ambiguous),
        (6379, L4::Tcp, Security::Plaintext),
        (11211, L4::Udp, Security::Plaintext),
        (3306, L4::Tcp, Security::Ambiguous),
        (5432, L4::Tcp, Security::Ambiguous),
        (6443, L4::Tcp, Security::Secure),
    ];
    for &(port, protocol, security) in expected {
        let info = policy.classify(protocol, port);
        assert_eq!(
            info.security,
            security,
            "{port}/{}: security, got {info:?}",
            protocol.as_str()
        );
        assert!(
            info.source.is_some(),
            "{port}/{}: expected a source",
            protocol.as_str()
        );
    }
}

#[test]
fn range_boundaries() {
    struct Case {
        port: u16,
        expected: PortRange,
        label: &'static str,
    }
    let cases = [
        Case {
            port: 0,
            expected: PortRange::WellKnown,
            label: "well_known",
        },
        Case {
            port: 1023,
            expected: PortRange::WellKnown,
            label: "well_known",
        },
        Case {
            port: 1024,
            expected: PortRange::Registered,
            label: "registered",
        },
        Case {
            port: 49151,
            expected: PortRange::Registered,
            label: "registered",
        },
        Case {
            port: 49152,
            expected: PortRange::Dynamic,
            label: "dynamic",
        },
        Case {
            port: 65535,
            expected: PortRange::Dynamic,
            label: "dynamic",
        },
    ];
    let policy = Policy::builtin();
    for case in cases {
        assert_eq!(
            PortRange::of(case.port),
            case.expected,
            "range of port {}",
            case.port
        );
        assert_eq!(
            case.expected.as_str(),
            case.label,
            "label of port {}'s range",
            case.port
        );
        assert_eq!(
            policy.classify(L4::Udp, case.port).range,
            case.expected,
            "classify({}).range",
            case.port
        );
    }
}

#[test]
fn ports_outside_the_table_are_unknown_and_named_by_iana() {
    struct Case {
        name: &'static str,
        protocol: L4,
        port: u16,
        service: &'static str,
        source: Option<&'static str>,
    }
    let cases = [
        Case {
            name: "registered range, no IANA name",
            protocol: L4::Tcp,
            port: 6380,
            service: "unknown",
            source: None,
        },
        Case {
            name: "IANA name",
            protocol: L4::Tcp,
            port: 7,
            service: "echo",
            source: Some(IANA_SOURCE),
        },
        Case {
            name: "udp side of a tcp-only table entry",
            protocol: L4::Udp,
            port: 23,
            service: "telnet",
            source: Some(IANA_SOURCE),
        },
        Case {
            name: "reserved port 0",
            protocol: L4::Tcp,
            port: 0,
            service: UNKNOWN_SERVICE,
            source: None,
        },
        Case {
            name: "ephemeral port",
            protocol: L4::Udp,
            port: 55555,
            service: UNKNOWN_SERVICE,
            source: None,
        },
    ];
    let policy = Policy::builtin();
    for case in cases {
        let info = policy.classify(case.protocol, case.port);
        assert_eq!(info.security, Security::Unknown, "{}: security", case.name);
        assert!(
            !info.in_security_table,
            "{}: expected outside the table",
            case.name
        );
        assert_eq!(info.service, case.service, "{}: service", case.name);
        assert_eq!(info.source, case.source, "{}: source", case.name);
        assert_eq!(
            (info.secure_alternative, info.reason),
            (None, None),
            "{}: no alternative or reason",
            case.name
        );
    }
}

fn keys(infos: &[PortInfo<'_>]) -> Vec<(u16, &'static str)> {
    infos
        .iter()
        .map(|info| (info.port, info.protocol.as_str()))
        .collect()
}

#[test]
fn resolve_by_number_and_name() {
    struct Case {
        query: &'static str,
        expected: &'static [(u16, &'static str)],
    }
    let cases = [
        Case {
            query: "23",
            expected: &[(23, "tcp")],
        },
        Case {
            query: "53",
            expected: &[(53, "tcp"), (53, "udp")],
        },
        Case {
            query: "514",
            expected: &[(514, "tcp"), (514, "udp")],
        },
        Case {
            query: "0",
            expected: &[(0, "tcp"), (0, "udp")],
        },
        Case {
            query: "65535",
            expected: &[(65535, "tcp"), (65535, "udp")],
        },
        Case {
            query: " 22 ",
            expected: &[(22, "tcp")],
        },
        Case {
            query: "53/udp",
            expected: &[(53, "udp")],
        },
        Case {
            query: "23/UDP",
            expected: &[(23, "udp")],
        },
        Case {
            query: "telnet",
            expected: &[(23, "tcp")],
        },
        Case {
            query: "TELNET",
            expected: &[(23, "tcp")],
        },
        Case {
            query: "snmp",
            expected: &[(161, "tcp"), (161, "udp")],
        },
        Case {
            query: "https",
            expected: &[(443, "tcp"), (443, "udp")],
        },
        Case {
            query: "domain",
            expected: &[(53, "tcp"), (53, "udp")],
        },
        Case {
            query: "echo",
            expected: &[(7, "tcp"), (7, "udp")],
        },
    ];
    let policy = Policy::builtin();
    for case in cases {
        let got = policy
            .resolve(case.query)
            .unwrap_or_else(|error| panic!("{:?}: expected entries, got {error}", case.query));
        assert_eq!(keys(&got), case.expected, "resolve({:?})", case.query);
    }
    let domain = policy.resolve("domain").expect("domain resolves");
    assert!(
        domain.iter().all(|info| info.service == "dns"),
        "domain: expected the table's dns entries, got {domain:?}"
    );
}

#[test]
fn resolve_errors_name_the_query() {
    struct Case {
        query: &'static str,
        expected: &'static str,
    }
    let cases = [
        Case {
            query: "",
            expected: "empty port query",
        },
        Case {
            query: "70000",
            expected: "`70000` is not a port",
        },
        Case {
            query: "99999999999999999999",
            expected: "is not a port",
        },
        Case {
            query: "23/sctp",
            expected: "`23/sctp`: portmon counts tcp and udp only",
        },
        Case {
            query: "x/tcp",
            expected: "`x/tcp` is not a port",
        },
        Case {
            query: "no-such-service",
            expected: "no port is named `no-such-service`",
        },
        Case {
            query: "-1",
            expected: "no port is named `-1`",
        },
    ];
    let policy = Policy::builtin();
    for case in cases {
        match policy.resolve(case.query) {
            Ok(infos) => panic!("{:?}: expected an error, got {infos:?}", case.query),
            Err(error) => {
                let message = error.to_string();
                assert!(
                    message.contains(case.expected),
                    "{:?}: expected {:?} in {message:?}",
                    case.query,
                    case.expected
                );
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    ports: Vec<PortOverride>,
}

fn overrides(toml_text: &str) -> Vec<PortOverride> {
    toml::from_str::<Config>(toml_text)
        .unwrap_or_else(|error| panic!("expected valid TOML overrides, got {error}"))
        .ports
}

/// A policy with one override of each kind, for the tests below.
fn configured_policy() -> Policy {
    Policy::with_overrides(&overrides(
        r#"
        [[ports]]
        port = 8080
        security = "secure"
        secure_alternative = ""
        reason = ""

        [[ports]]
        port = 9999
        protocol = "tcp"
        service = "legacy-billing"
        security = "plaintext"
        secure_alternative = "billing-tls (9443/tcp)"
        reason = "sends card numbers in clear"

        [[ports]]
        port = 23
        reason = "telnet is banned here"

        [[ports]]
        port = 3306
        protocol = "tcp"
        security = "secure"
        never_across_perimeter = true

        [[ports]]
        port = 7
        protocol = "udp"
        security = "plaintext"
        "#,
    ))
    .expect("valid overrides apply")
}

#[test]
fn override_changes_a_listed_port() {
    let policy = configured_policy();
    let http_alt = policy.classify(L4::Tcp, 8080);
    assert_eq!(
        (
            http_alt.security,
            http_alt.secure_alternative,
            http_alt.reason,
            http_alt.service,
            http_alt.source
        ),
        (Security::Secure, None, None, "http-alt", Some("config")),
        "8080/tcp turned secure, texts cleared, service kept"
    );
    let mysql = policy.classify(L4::Tcp, 3306);
    assert_eq!(
        (mysql.security, mysql.never_across_perimeter),
        (Security::Secure, true),
        "3306/tcp"
    );
}

#[test]
fn override_adds_a_new_port() {
    let policy = configured_policy();
    let billing = policy.classify(L4::Tcp, 9999);
    assert!(
        billing.in_security_table,
        "9999/tcp: expected added to the table, got {billing:?}"
    );
    assert_eq!(
        (
            billing.service,
            billing.security,
            billing.secure_alternative,
            billing.reason
        ),
        (
            "legacy-billing",
            Security::Plaintext,
            Some("billing-tls (9443/tcp)"),
            Some("sends card numbers in clear")
        ),
        "9999/tcp as configured"
    );
    assert!(
        !policy.in_security_table(L4::Udp, 9999),
        "9999/udp: expected untouched by a tcp override"
    );

    let echo = policy.classify(L4::Udp, 7);
    assert_eq!(
        (echo.service, echo.security),
        ("echo", Security::Plaintext),
        "7/udp: new entry named by IANA"
    );

    let sorted: Vec<_> = policy
        .security_table()
        .map(|info| (info.port, info.protocol))
        .collect();
    assert!(
        sorted.is_sorted(),
        "expected the table to stay sorted after overrides"
    );
    assert_eq!(
        policy.security_table_len(),
        Policy::builtin().security_table_len() + 2,
        "two entries added"
    );
}

#[test]
fn override_keeps_what_it_does_not_set() {
    let policy = configured_policy();
    let telnet = policy.classify(L4::Tcp, 23);
    assert_eq!(
        (telnet.security, telnet.reason, telnet.secure_alternative),
        (
            Security::Plaintext,
            Some("telnet is banned here"),
            Some("ssh (22/tcp)")
        ),
        "23/tcp: only the reason changed"
    );
    assert!(
        !policy.in_security_table(L4::Udp, 23),
        "23/udp: `both` must not create an entry"
    );
    assert!(
        !policy.in_security_table(L4::Udp, 8080),
        "8080/udp: `both` must not create an entry"
    );
}

#[test]
fn naming_the_protocol_adds_the_other_transport() {
    let both = Policy::with_overrides(&overrides(
        "[[ports]]\nport = 23\nsecurity = \"plaintext\"\n",
    ))
    .expect("override applies");
    assert!(
        !both.in_security_table(L4::Udp, 23),
        "23/udp: `both` updates the listed tcp entry only"
    );
    let policy = Policy::with_overrides(&overrides(
        "[[ports]]\nport = 23\nprotocol = \"udp\"\nsecurity = \"plaintext\"\n",
    ))
    .expect("override applies");
    let udp = policy.classify(L4::Udp, 23);
    assert_eq!(
        (udp.in_security_table, udp.service, udp.security),
        (true, "telnet", Security::Plaintext),
        "23/udp"
    );
    assert_eq!(
        udp.secure_alternative, None,
        "23/udp: a new entry gets only what the override gives"
    );
}

#[test]
fn invalid_overrides_are_errors_naming_the_entry() {
    struct Case {
        name: &'static str,
        toml: &'static str,
        expected: &'static [&'static str],
    }
    let cases = [
        Case {
            name: "empty service",
            toml: "[[ports]]\nport = 21\nreason = \"x\"\n[[ports]]\nport = 23\nprotocol = \"tcp\"\nservice = \"\"\n",
            expected: &["entry #2 (port 23, protocol tcp)", "`service` is empty"],
        },
        Case {
            name: "blank service",
            toml: "[[ports]]\nport = 23\nservice = \"   \"\n",
            expected: &["entry #1 (port 23, protocol both)", "`service` is empty"],
        },
        Case {
            name: "padded service",
            toml: "[[ports]]\nport = 23\nservice = \" telnet\"\n",
            expected: &["`service` has leading or trailing spaces"],
        },
        Case {
            name: "multi-line reason",
            toml: "[[ports]]\nport = 23\nreason = \"\"\"one\ntwo\"\"\"\n",
            expected: &["entry #1", "`reason` contains a control character"],
        },
        Case {
            name: "blank alternative",
            toml: "[[ports]]\nport = 23\nsecure_alternative = \" \"\n",
            expected: &["`secure_alternative` is blank"],
        },
        Case {
            name: "security unknown",
            toml: "[[ports]]\nport = 23\nsecurity = \"unknown\"\n",
            expected: &[
                "entry #1 (port 23, protocol both)",
                "`security = \"unknown\"` is not allowed",
            ],
        },
        Case {
            name: "new port without security",
            toml: "[[ports]]\nport = 9999\nprotocol = \"tcp\"\nservice = \"x\"\n",
            expected: &[
                "entry #1 (port 9999, protocol tcp)",
                "9999/tcp is not in the security table",
                "needs `security`",
            ],
        },
        Case {
            name: "new unnamed port without service",
            toml: "[[ports]]\nport = 60000\nprotocol = \"udp\"\nsecurity = \"secure\"\n",
            expected: &[
                "60000/udp has no registered service name",
                "`service = \"...\"`",
            ],
        },
        Case {
            name: "sets nothing",
            toml: "[[ports]]\nport = 23\nprotocol = \"tcp\"\n",
            expected: &["entry #1 (port 23, protocol tcp)", "sets nothing"],
        },
        Case {
            name: "duplicate through both",
            toml: "[[ports]]\nport = 53\nreason = \"a\"\n[[ports]]\nport = 53\nprotocol = \"udp\"\nreason = \"b\"\n",
            expected: &[
                "entries #1 (port 53, protocol both) and #2 (port 53, protocol udp) both set 53/udp",
                "merge them",
            ],
        },
    ];
    for case in cases {
        match Policy::with_overrides(&overrides(case.toml)) {
            Ok(_) => panic!("{}: expected an error", case.name),
            Err(error) => {
                let message = error.to_string();
                for expected in case.expected {
                    assert!(
                        message.contains(expected),
                        "{}: expected {expected:?} in {message:?}",
                        case.name
                    );
                }
            }
        }
    }
}

#[test]
fn errors_give_the_entry_number() {
    let toml = "[[ports]]\nport = 21\nreason = \"x\"\n[[ports]]\nport = 53\nreason = \"a\"\n\
                [[ports]]\nport = 53\nprotocol = \"udp\"\nreason = \"b\"\n";
    let error =
        Policy::with_overrides(&overrides(toml)).expect_err("duplicate overrides are an error");
    assert_eq!(
        error.entry_number(),
        Some(3),
        "expected the later duplicate, got {error}"
    );
    let error = Policy::builtin()
        .resolve("70000")
        .expect_err("70000 is not a port");
    assert_eq!(
        error.entry_number(),
        None,
        "a query error is about no entry: {error}"
    );
}

#[test]
fn invalid_override_values_fail_to_parse_with_the_key() {
    struct Case {
        name: &'static str,
        toml: &'static str,
        expected: &'static [&'static str],
    }
    let cases = [
        Case {
            name: "port too big",
            toml: "[[ports]]\nport = 70000\nreason = \"x\"\n",
            expected: &["port 70000 is out of range: a port is 0-65535", "line 2"],
        },
        Case {
            name: "negative port",
            toml: "[[ports]]\nport = -1\nreason = \"x\"\n",
            expected: &["port -1 is out of range"],
        },
        Case {
            name: "security safe",
            toml: "[[ports]]\nport = 23\nsecurity = \"safe\"\n",
            expected: &["unknown variant `safe`", "plaintext", "line 3"],
        },
        Case {
            name: "protocol sctp",
            toml: "[[ports]]\nport = 23\nprotocol = \"sctp\"\n",
            expected: &["unknown variant `sctp`", "both"],
        },
        Case {
            name: "unknown key",
            toml: "[[ports]]\nport = 23\nsecurty = \"plaintext\"\n",
            expected: &["unknown field `securty`"],
        },
        Case {
            name: "missing port",
            toml: "[[ports]]\nsecurity = \"plaintext\"\n",
            expected: &["missing field `port`"],
        },
    ];
    for case in cases {
        match toml::from_str::<Config>(case.toml) {
            Ok(config) => panic!("{}: expected a parse error, got {config:?}", case.name),
            Err(error) => {
                let message = error.to_string();
                for expected in case.expected {
                    assert!(
                        message.contains(expected),
                        "{}: expected {expected:?} in {message:?}",
                        case.name
                    );
                }
            }
        }
    }
}

#[test]
fn memory_stays_small() {
    let footprint = Policy::builtin().memory_footprint();
    assert!(
        footprint.iana_names > 6000,
        "expected the IANA names indexed, got {footprint:?}"
    );
    assert!(
        footprint.shared_heap <= 64 * 1024,
        "expected the IANA index within 64 KiB, got {footprint:?}"
    );
    assert!(
        footprint.table_heap <= 64 * 1024,
        "expected the security table within 64 KiB, got {footprint:?}"
    );
    assert!(
        footprint.shipped_data <= 192 * 1024,
        "expected the embedded names within 192 KiB, got {footprint:?}"
    );
}
