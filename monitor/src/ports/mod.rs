//! Port knowledge: what a (protocol, port) is, which range it falls in, and whether the
//! traffic on it is plaintext, secure or ambiguous.
//!
//! * The **security table** ([`table`]) starts from every pair of the project's port document
//!   (`shared/ports-and-secure-alternatives.md`) and adds what a security engineer expects,
//!   each entry with a `source` note. Every entry is `plaintext`, `secure` or `ambiguous`.
//! * Every other port is `unknown` and named from IANA's registry, shipped in the binary
//!   ([`iana`]); the host's `/etc/services` is never read.
//! * The config's `[[ports]]` entries override or extend the table ([`PortOverride`]).
//!
//! [`Policy::classify`] is the hot path (per exported series): a binary search, no allocation.

pub mod evidence;
mod iana;
mod overrides;
pub mod report;
mod table;

#[cfg(test)]
mod tests;

use std::borrow::Cow;

use monitor_common::layout::L4;
pub use overrides::{PortOverride, ProtocolSelector};

use self::iana::IanaNames;

/// Service label of a port that is neither in the security table nor in IANA's registry.
pub const UNKNOWN_SERVICE: &str = "unknown";

/// Source note of a port named from IANA's registry.
const IANA_SOURCE: &str = "IANA service-name registry";

/// IANA's three port ranges (RFC 6335 section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortRange {
    /// 0-1023, "system ports".
    WellKnown,
    /// 1024-49151, "user ports".
    Registered,
    /// 49152-65535, "dynamic and/or private ports", where ephemeral source ports live.
    Dynamic,
}

impl PortRange {
    /// Every range, in port order.
    pub const ALL: [PortRange; 3] = [
        PortRange::WellKnown,
        PortRange::Registered,
        PortRange::Dynamic,
    ];

    /// The range `port` belongs to.
    #[must_use]
    pub const fn of(port: u16) -> Self {
        match port {
            0..=1023 => PortRange::WellKnown,
            1024..=49151 => PortRange::Registered,
            49152..=u16::MAX => PortRange::Dynamic,
        }
    }

    /// The label used in metrics and output.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            PortRange::WellKnown => "well_known",
            PortRange::Registered => "registered",
            PortRange::Dynamic => "dynamic",
        }
    }
}

/// Whether the traffic on a port is protected in transit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// Unencrypted: credentials and content can be read on the wire.
    Plaintext,
    /// Encrypted and authenticated by the protocol on this port.
    Secure,
    /// The port alone cannot tell: the version or an in-band negotiation (STARTTLS, ...) decides.
    Ambiguous,
    /// Not in the security table.
    Unknown,
}

impl Security {
    /// Every value, the table's three first.
    pub const ALL: [Security; 4] = [
        Security::Plaintext,
        Security::Secure,
        Security::Ambiguous,
        Security::Unknown,
    ];

    /// The label used in metrics, output and config.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Security::Plaintext => "plaintext",
            Security::Secure => "secure",
            Security::Ambiguous => "ambiguous",
            Security::Unknown => "unknown",
        }
    }
}

/// Classification of one (protocol, port), borrowed from the policy; cheap to produce (no allocation).
///
/// Serialized (JSON) with the fields in declaration order, `protocol` as `"tcp"`/`"udp"`,
/// absent options as `null`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PortInfo<'a> {
    /// The port number.
    pub port: u16,
    /// TCP or UDP.
    #[serde(serialize_with = "serialize_l4")]
    pub protocol: L4,
    /// From the security table, else IANA's registry, else [`UNKNOWN_SERVICE`].
    pub service: &'a str,
    /// IANA range of the port.
    pub range: PortRange,
    /// [`Security::Unknown`] when not in the security table.
    pub security: Security,
    /// What to use instead, e.g. `ssh (22/tcp)`.
    pub secure_alternative: Option<&'a str>,
    /// One line: why plaintext, why ambiguous, or the caveat of a secure entry.
    pub reason: Option<&'a str>,
    /// Traffic that should never cross the network perimeter (SMB 445, NFS 2049, ...).
    pub never_across_perimeter: bool,
    /// Where the entry comes from (project document, RFC, vendor doc, config).
    pub source: Option<&'a str>,
    /// Whether the entry comes from the security table (builtin or config).
    pub in_security_table: bool,
}

// serde's `serialize_with` hands the field by reference.
#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "signature imposed by serde's serialize_with"
)]
fn serialize_l4<S: serde::Serializer>(protocol: &L4, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(protocol.as_str())
}

/// One entry of the security table, owned by the [`Policy`] (builtin text is borrowed from the
/// binary, config text is owned).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    port: u16,
    protocol: L4,
    service: Cow<'static, str>,
    security: Security,
    secure_alternative: Option<Cow<'static, str>>,
    reason: Option<Cow<'static, str>>,
    never_across_perimeter: bool,
    source: Cow<'static, str>,
}

impl Entry {
    fn key(&self) -> (u16, L4) {
        (self.port, self.protocol)
    }

    fn info(&self) -> PortInfo<'_> {
        PortInfo {
            port: self.port,
            protocol: self.protocol,
            service: &self.service,
            range: PortRange::of(self.port),
            security: self.security,
            secure_alternative: self.secure_alternative.as_deref(),
            reason: self.reason.as_deref(),
            never_across_perimeter: self.never_across_perimeter,
            source: Some(&self.source),
            in_security_table: true,
        }
    }
}

/// The port policy: the security table (builtin plus config overrides) and IANA's names.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Sorted by (port, protocol), unique.
    entries: Vec<Entry>,
    iana: &'static IanaNames,
}

impl Policy {
    /// The builtin security table, with no config applied.
    #[must_use]
    pub fn builtin() -> Policy {
        let mut entries: Vec<Entry> = table::BUILTIN
            .iter()
            .flat_map(table::Builtin::entries)
            .collect();
        entries.sort_by_key(Entry::key);
        // Duplicates would make `classify` pick one silently; a unit test keeps the table unique.
        entries.dedup_by_key(|entry| entry.key());
        Policy {
            entries,
            iana: IanaNames::shipped(),
        }
    }

    /// Applies config overrides; an invalid override is an error naming the entry, never a silent default.
    ///
    /// # Errors
    /// A [`PolicyError`] naming the first invalid `[[ports]]` entry (1-based) and the fix.
    pub fn with_overrides(overrides: &[PortOverride]) -> Result<Policy, PolicyError> {
        let mut policy = Policy::builtin();
        overrides::apply(&mut policy, overrides)?;
        Ok(policy)
    }

    /// Classifies one (protocol, port): O(log n), no allocation.
    #[must_use]
    pub fn classify(&self, protocol: L4, port: u16) -> PortInfo<'_> {
        if let Some(index) = self.find(protocol, port) {
            return self.entries[index].info();
        }
        let iana = self.iana.name(protocol, port);
        PortInfo {
            port,
            protocol,
            service: iana.unwrap_or(UNKNOWN_SERVICE),
            range: PortRange::of(port),
            security: Security::Unknown,
            secure_alternative: None,
            reason: None,
            never_across_perimeter: false,
            source: iana.map(|_| IANA_SOURCE),
            in_security_table: false,
        }
    }

    /// Whether (protocol, port) is in the security table.
    #[must_use]
    pub fn in_security_table(&self, protocol: L4, port: u16) -> bool {
        self.find(protocol, port).is_some()
    }

    /// Every entry of the security table, sorted by port then protocol.
    pub fn security_table(&self) -> impl Iterator<Item = PortInfo<'_>> {
        self.entries.iter().map(Entry::info)
    }

    /// Number of entries of the security table (one per port and protocol).
    #[must_use]
    pub fn security_table_len(&self) -> usize {
        self.entries.len()
    }

    /// Resolves a CLI argument: a port number ("23") or a service name ("telnet", case-insensitive) to entries.
    ///
    /// * `PORT/PROTO` ("53/udp") gives that one classification.
    /// * `PORT` gives the port's security-table entries when it has any (23 gives 23/tcp only),
    ///   else its TCP and UDP classifications.
    /// * A name gives the security-table entries with that service name when there are any,
    ///   else the classification of every port IANA registers under it ("domain" gives 53).
    ///
    /// Results are sorted by port then protocol.
    ///
    /// # Errors
    /// [`PolicyError`] for an empty query, a port above 65535, a protocol other than tcp/udp,
    /// or a name neither the table nor IANA knows.
    pub fn resolve(&self, query: &str) -> Result<Vec<PortInfo<'_>>, PolicyError> {
        let query = query.trim();
        if query.is_empty() {
            return Err(PolicyError::EmptyQuery);
        }
        if let Some((port, protocol)) = query.split_once('/') {
            let port = parse_port(query, port)?;
            let protocol = match protocol.to_ascii_lowercase().as_str() {
                "tcp" => L4::Tcp,
                "udp" => L4::Udp,
                _ => {
                    return Err(PolicyError::UnknownProtocol {
                        query: query.to_owned(),
                    });
                }
            };
            return Ok(vec![self.classify(protocol, port)]);
        }
        if query.bytes().all(|byte| byte.is_ascii_digit()) {
            let port = parse_port(query, query)?;
            let listed: Vec<_> = self
                .security_table()
                .filter(|info| info.port == port)
                .collect();
            if !listed.is_empty() {
                return Ok(listed);
            }
            return Ok(L4::ALL
                .into_iter()
                .map(|protocol| self.classify(protocol, port))
                .collect());
        }
        let listed: Vec<_> = self
            .security_table()
            .filter(|info| info.service.eq_ignore_ascii_case(query))
            .collect();
        if !listed.is_empty() {
            return Ok(listed);
        }
        let mut registered: Vec<_> = self
            .iana
            .ports_named(query)
            .map(|(protocol, port)| self.classify(protocol, port))
            .collect();
        if registered.is_empty() {
            return Err(PolicyError::UnknownService {
                query: query.to_owned(),
            });
        }
        registered.sort_by_key(|info| (info.port, info.protocol));
        registered.dedup();
        Ok(registered)
    }

    /// Bytes this policy keeps on the heap, plus the shared IANA index (`shared_heap`) and the
    /// embedded IANA text it points into (`shipped_data`, read-only, in the binary).
    #[must_use]
    pub fn memory_footprint(&self) -> MemoryFootprint {
        let strings: usize = self
            .entries
            .iter()
            .map(|entry| {
                [
                    Some(&entry.service),
                    entry.secure_alternative.as_ref(),
                    entry.reason.as_ref(),
                    Some(&entry.source),
                ]
                .into_iter()
                .flatten()
                .map(|text| match text {
                    Cow::Owned(owned) => owned.capacity(),
                    Cow::Borrowed(_) => 0,
                })
                .sum::<usize>()
            })
            .sum();
        MemoryFootprint {
            table_heap: self.entries.capacity() * core::mem::size_of::<Entry>() + strings,
            shared_heap: self.iana.heap_bytes(),
            shipped_data: self.iana.data_bytes(),
            iana_names: self.iana.len(),
        }
    }

    fn find(&self, protocol: L4, port: u16) -> Option<usize> {
        self.entries
            .binary_search_by_key(&(port, protocol), Entry::key)
            .ok()
    }

    /// Mutable access for [`overrides`]: the entries, sorted and unique.
    fn entries_mut(&mut self) -> &mut Vec<Entry> {
        &mut self.entries
    }
}

/// What [`Policy::memory_footprint`] reports, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryFootprint {
    /// The security table's entries and the config strings they own.
    pub table_heap: usize,
    /// The IANA index, built once per process and shared by every policy.
    pub shared_heap: usize,
    /// The embedded IANA text (read-only data of the binary).
    pub shipped_data: usize,
    /// Number of IANA names indexed.
    pub iana_names: usize,
}

impl PolicyError {
    /// The 1-based `[[ports]]` entry the error is about (the later one of a duplicate pair), so
    /// the config reader can point at its line; `None` for query errors.
    #[must_use]
    pub fn entry_number(&self) -> Option<usize> {
        let (PolicyError::InvalidText { entry, .. }
        | PolicyError::UnknownSecurity { entry }
        | PolicyError::MissingSecurity { entry, .. }
        | PolicyError::MissingService { entry, .. }
        | PolicyError::Empty { entry }
        | PolicyError::Duplicate { second: entry, .. }) = self
        else {
            return None;
        };
        // `entry` is written by `overrides::entry_name`: "#N (port P, protocol X)".
        let digits = entry.strip_prefix('#')?;
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        digits[..end].parse().ok()
    }
}

fn parse_port(query: &str, digits: &str) -> Result<u16, PolicyError> {
    digits
        .trim()
        .parse::<u16>()
        .map_err(|_| PolicyError::BadPort {
            query: query.to_owned(),
        })
}

/// Why a policy could not be built or a query not resolved. Each message names the entry or
/// the query, and the fix.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// An override sets a text field to something unusable.
    #[error("[[ports]] entry {entry}: `{field}` {problem}")]
    InvalidText {
        /// Which entry ("#2 (port 23, protocol tcp)").
        entry: String,
        /// The field.
        field: &'static str,
        /// What is wrong and how to fix it.
        problem: &'static str,
    },
    /// An override sets `security = "unknown"`.
    #[error(
        "[[ports]] entry {entry}: `security = \"unknown\"` is not allowed: an entry of the security table is \
         \"plaintext\", \"secure\" or \"ambiguous\" (remove the entry to leave the port out of the table)"
    )]
    UnknownSecurity {
        /// Which entry.
        entry: String,
    },
    /// An override adds a port the table does not have, without saying how secure it is.
    #[error(
        "[[ports]] entry {entry}: {port}/{protocol} is not in the security table, so a new entry needs \
         `security` (\"plaintext\", \"secure\" or \"ambiguous\")"
    )]
    MissingSecurity {
        /// Which entry.
        entry: String,
        /// The port.
        port: u16,
        /// The protocol ("tcp"/"udp").
        protocol: &'static str,
    },
    /// An override adds a port IANA has no name for, without naming it.
    #[error(
        "[[ports]] entry {entry}: {port}/{protocol} has no registered service name, so a new entry needs \
         `service = \"...\"`"
    )]
    MissingService {
        /// Which entry.
        entry: String,
        /// The port.
        port: u16,
        /// The protocol ("tcp"/"udp").
        protocol: &'static str,
    },
    /// An override sets nothing but its port.
    #[error(
        "[[ports]] entry {entry}: sets nothing; add `service`, `security`, `secure_alternative`, `reason` or \
         `never_across_perimeter`, or remove the entry"
    )]
    Empty {
        /// Which entry.
        entry: String,
    },
    /// Two overrides target the same port and protocol.
    #[error(
        "[[ports]] entries {first} and {second} both set {port}/{protocol}; merge them into one entry"
    )]
    Duplicate {
        /// The earlier entry.
        first: String,
        /// The later entry.
        second: String,
        /// The port.
        port: u16,
        /// The protocol ("tcp"/"udp").
        protocol: &'static str,
    },
    /// A query is empty.
    #[error(
        "empty port query: give a port number (0-65535), PORT/tcp, PORT/udp or a service name such as telnet"
    )]
    EmptyQuery,
    /// A query is not a port number in 0-65535.
    #[error("`{query}` is not a port: a port number is 0-65535 (PORT, PORT/tcp or PORT/udp)")]
    BadPort {
        /// The query as given.
        query: String,
    },
    /// A `PORT/PROTO` query names a protocol other than tcp and udp.
    #[error("`{query}`: portmon counts tcp and udp only; write PORT/tcp or PORT/udp")]
    UnknownProtocol {
        /// The query as given.
        query: String,
    },
    /// A name neither the table nor IANA knows.
    #[error(
        "no port is named `{query}` in the security table or IANA's registry; give a port number (0-65535) or \
         a service name such as telnet (`portmon ports` lists the table)"
    )]
    UnknownService {
        /// The query as given.
        query: String,
    },
}
