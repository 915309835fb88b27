//! Service names from IANA's port registry, shipped inside the binary.
//!
//! The data is `monitor/data/iana-service-names.tsv` (see its header for provenance and
//! `gen-iana-service-names.py` beside it to regenerate it), compiled in with
//! `include_str!`. The host's `/etc/services` is never read: the daemon must name ports
//! the same way on every host and in every container.
//!
//! The index is built once per process, on first use, and kept compact: one 8-byte
//! [`Name`] per line of the file, pointing into the embedded text, sorted by port so a
//! lookup is a binary search. About 6,200 lines give about 50 KB of heap.

use std::sync::OnceLock;

use monitor_common::layout::L4;

/// The embedded registry extract. Format: `port<TAB>tcp|udp|tcp+udp<TAB>name`, `#` comments.
const DATA: &str = include_str!("../../data/iana-service-names.tsv");

/// Bit of [`Name::protocols`] for TCP.
const TCP: u8 = 1;
/// Bit of [`Name::protocols`] for UDP.
const UDP: u8 = 2;

const fn protocol_bit(protocol: L4) -> u8 {
    match protocol {
        L4::Tcp => TCP,
        L4::Udp => UDP,
    }
}

/// One service name: a port, the protocols it is registered for, and where its name sits in
/// [`DATA`].
#[derive(Clone, Copy, Debug)]
struct Name {
    port: u16,
    protocols: u8,
    len: u8,
    offset: u32,
}

const _: () = assert!(core::mem::size_of::<Name>() == 8);

/// The parsed registry: every name, sorted by port.
#[derive(Debug)]
pub(crate) struct IanaNames {
    data: &'static str,
    names: Box<[Name]>,
}

impl IanaNames {
    /// The registry shipped in the binary, parsed on first use.
    pub(crate) fn shipped() -> &'static IanaNames {
        static SHIPPED: OnceLock<IanaNames> = OnceLock::new();
        SHIPPED.get_or_init(|| {
            let (names, skipped_lines) = IanaNames::parse(DATA);
            if skipped_lines > 0 {
                log::warn!(
                    "{skipped_lines} lines of the built-in IANA service names did not parse"
                );
            }
            names
        })
    }

    /// Parses `data`, returning the index and the number of lines that did not parse. Those are
    /// skipped, never fatal: the shipped file is checked by a test, and a daemon should not refuse
    /// to start over a name.
    fn parse(data: &'static str) -> (IanaNames, usize) {
        let mut names = Vec::with_capacity(data.len() / 20);
        let mut skipped_lines = 0;
        let mut offset = 0usize;
        for line in data.split_inclusive('\n') {
            let start = offset;
            offset += line.len();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_line(line, start) {
                Some(name) => names.push(name),
                None => skipped_lines += 1,
            }
        }
        // Stable: a port whose TCP and UDP names differ keeps the file's order.
        names.sort_by_key(|name| name.port);
        (
            IanaNames {
                data,
                names: names.into_boxed_slice(),
            },
            skipped_lines,
        )
    }

    /// The registered name of `port` over `protocol`, if any.
    pub(crate) fn name(&self, protocol: L4, port: u16) -> Option<&'static str> {
        let first = self.names.partition_point(|name| name.port < port);
        self.names[first..]
            .iter()
            .take_while(|name| name.port == port)
            .find(|name| name.protocols & protocol_bit(protocol) != 0)
            .map(|name| self.text(*name))
    }

    /// Every (protocol, port) registered under `service` (ASCII case-insensitive), by port.
    pub(crate) fn ports_named<'s>(
        &'s self,
        service: &'s str,
    ) -> impl Iterator<Item = (L4, u16)> + 's {
        self.names
            .iter()
            .filter(move |name| self.text(**name).eq_ignore_ascii_case(service))
            .flat_map(|name| {
                L4::ALL
                    .into_iter()
                    .filter(|protocol| name.protocols & protocol_bit(*protocol) != 0)
                    .map(|protocol| (protocol, name.port))
            })
    }

    /// Number of names (lines of the file).
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// Heap bytes held by the index (the text itself is in the binary's read-only data).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.names.len() * core::mem::size_of::<Name>()
    }

    /// Bytes of embedded text the index points into.
    pub(crate) fn data_bytes(&self) -> usize {
        self.data.len()
    }

    fn text(&self, name: Name) -> &'static str {
        let start = name.offset as usize;
        // The bounds were checked when the line was parsed; an empty name is never indexed.
        self.data
            .get(start..start + usize::from(name.len))
            .unwrap_or("unknown")
    }
}

/// Parses `port<TAB>protocols<TAB>name`; `start` is the line's offset in the data.
fn parse_line(line: &str, start: usize) -> Option<Name> {
    let mut fields = line.splitn(3, '\t');
    let port = fields.next()?.parse::<u16>().ok()?;
    let protocols = match fields.next()? {
        "tcp" => TCP,
        "udp" => UDP,
        "tcp+udp" => TCP | UDP,
        _ => return None,
    };
    let name = fields.next()?;
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        return None;
    }
    // The name is the line's tail, so its offset is the line's end minus its length.
    let offset = u32::try_from(start + line.len() - name.len()).ok()?;
    let len = u8::try_from(name.len()).ok()?;
    Some(Name {
        port,
        protocols,
        len,
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_data_parses_completely() {
        let (names, skipped_lines) = IanaNames::parse(DATA);
        assert_eq!(
            skipped_lines, 0,
            "expected every line of iana-service-names.tsv to parse"
        );
        assert!(
            names.len() > 6000,
            "expected over 6000 names, got {}",
            names.len()
        );
    }

    #[test]
    fn looks_up_names_per_protocol() {
        struct Case {
            name: &'static str,
            protocol: L4,
            port: u16,
            expected: Option<&'static str>,
        }
        let cases = [
            Case {
                name: "first line",
                protocol: L4::Tcp,
                port: 1,
                expected: Some("tcpmux"),
            },
            Case {
                name: "tcp+udp line, udp",
                protocol: L4::Udp,
                port: 23,
                expected: Some("telnet"),
            },
            Case {
                name: "ssh",
                protocol: L4::Tcp,
                port: 22,
                expected: Some("ssh"),
            },
            Case {
                name: "redis",
                protocol: L4::Tcp,
                port: 6379,
                expected: Some("redis"),
            },
            Case {
                name: "names differ per protocol, tcp",
                protocol: L4::Tcp,
                port: 631,
                expected: Some("ipps"),
            },
            Case {
                name: "names differ per protocol, udp",
                protocol: L4::Udp,
                port: 631,
                expected: Some("ipp"),
            },
            Case {
                name: "reserved port 0",
                protocol: L4::Tcp,
                port: 0,
                expected: None,
            },
            Case {
                name: "dynamic range",
                protocol: L4::Tcp,
                port: 60000,
                expected: None,
            },
            Case {
                name: "last port",
                protocol: L4::Udp,
                port: 65535,
                expected: None,
            },
        ];
        let names = IanaNames::shipped();
        for case in cases {
            let got = names.name(case.protocol, case.port);
            assert_eq!(
                got,
                case.expected,
                "{}: {}/{}",
                case.name,
                case.port,
                case.protocol.as_str()
            );
        }
    }

    #[test]
    fn finds_ports_by_name() {
        let got: Vec<_> = IanaNames::shipped().ports_named("TELNET").collect();
        assert_eq!(
            got,
            vec![(L4::Tcp, 23), (L4::Udp, 23)],
            "ports named telnet"
        );
    }

    #[test]
    fn bad_lines_are_skipped_and_counted() {
        let data = "# comment\n1\ttcp\tgood\nx\ttcp\tbad-port\n2\tsctp\tbad-proto\n3\ttcp\t\n70000\tudp\tbig\n";
        let (names, skipped_lines) = IanaNames::parse(data);
        assert_eq!(names.len(), 1, "expected only the good line to be indexed");
        assert_eq!(skipped_lines, 4, "expected four skipped lines");
        assert_eq!(
            names.name(L4::Tcp, 1),
            Some("good"),
            "name of the good line"
        );
    }
}
