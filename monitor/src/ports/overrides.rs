//! The config's `[[ports]]` entries: override or extend the security table per port and protocol.
//!
//! ```toml
//! [[ports]]            # a site's own plaintext service
//! port = 9999
//! protocol = "tcp"     # "tcp", "udp" or "both" (the default)
//! service = "legacy-billing"
//! security = "plaintext"
//! secure_alternative = "billing-tls (9443/tcp)"
//! reason = "sends card numbers in clear"
//!
//! [[ports]]            # this site's 8080 is TLS
//! port = 8080
//! security = "secure"
//! secure_alternative = ""   # an empty string clears a builtin text field
//! reason = ""
//! ```
//!
//! Rules:
//! * Fields given replace the builtin ones; fields left out keep them. `secure_alternative = ""`
//!   and `reason = ""` clear the builtin text; `service` can never be empty.
//! * `protocol = "both"` (the default) updates the entries the port has; only when it has none
//!   does it create both. Name the protocol to add the other transport of a listed port
//!   (`port = 23`, `protocol = "udp"`). A new entry needs `security`, and a `service` when IANA
//!   has no name for the port.
//! * Two overrides of the same port and protocol are an error (their order would decide silently).
//! * An overridden entry's `source` becomes `config`.

use std::borrow::Cow;

use monitor_common::layout::L4;
use serde::Deserialize;

use super::{Entry, Policy, PolicyError, Security, UNKNOWN_SERVICE};

/// Longest service name accepted (it becomes a Prometheus label value).
const MAX_SERVICE_CHARS: usize = 64;
/// Longest secure-alternative or reason text accepted.
const MAX_TEXT_CHARS: usize = 300;

/// Source note of an entry set by the config.
const CONFIG_SOURCE: &str = "config";

/// One `[[ports]]` entry of the TOML config. serde: #[serde(deny_unknown_fields)].
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortOverride {
    /// The port, 0-65535.
    #[serde(deserialize_with = "deserialize_port")]
    pub port: u16,
    /// Which protocols the entry sets; `both` when left out.
    #[serde(default)]
    pub protocol: ProtocolSelector,
    /// Service name (label value); never empty.
    pub service: Option<String>,
    /// `plaintext`, `secure` or `ambiguous`.
    pub security: Option<Security>,
    /// What to use instead, e.g. `ssh (22/tcp)`; `""` clears it.
    pub secure_alternative: Option<String>,
    /// One line: why; `""` clears it.
    pub reason: Option<String>,
    /// Flags traffic that should never cross the perimeter.
    pub never_across_perimeter: Option<bool>,
}

/// Which protocols a `[[ports]]` entry applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolSelector {
    /// TCP only.
    Tcp,
    /// UDP only.
    Udp,
    /// TCP and UDP.
    #[default]
    Both,
}

impl ProtocolSelector {
    /// The protocols selected.
    #[must_use]
    pub fn protocols(self) -> &'static [L4] {
        match self {
            ProtocolSelector::Tcp => &[L4::Tcp],
            ProtocolSelector::Udp => &[L4::Udp],
            ProtocolSelector::Both => &L4::ALL,
        }
    }

    /// The label used in messages.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ProtocolSelector::Tcp => "tcp",
            ProtocolSelector::Udp => "udp",
            ProtocolSelector::Both => "both",
        }
    }
}

/// Reads the port as a wider integer so that 70000 gets a message about ports, not about u16.
fn deserialize_port<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    let port = i64::deserialize(deserializer)?;
    u16::try_from(port).map_err(|_| {
        serde::de::Error::custom(format_args!(
            "port {port} is out of range: a port is 0-65535"
        ))
    })
}

/// Applies `overrides` to `policy`, in order, after validating each one.
pub(super) fn apply(policy: &mut Policy, overrides: &[PortOverride]) -> Result<(), PolicyError> {
    check_duplicates(overrides)?;
    for (index, over) in overrides.iter().enumerate() {
        apply_one(policy, index, over)?;
    }
    Ok(())
}

/// How an entry is named in errors: its 1-based position and its key.
fn entry_name(index: usize, over: &PortOverride) -> String {
    format!(
        "#{} (port {}, protocol {})",
        index + 1,
        over.port,
        over.protocol.as_str()
    )
}

fn check_duplicates(overrides: &[PortOverride]) -> Result<(), PolicyError> {
    for (second_index, second) in overrides.iter().enumerate() {
        for (first_index, first) in overrides[..second_index].iter().enumerate() {
            if first.port != second.port {
                continue;
            }
            let shared = first
                .protocol
                .protocols()
                .iter()
                .find(|protocol| second.protocol.protocols().contains(protocol));
            if let Some(protocol) = shared {
                return Err(PolicyError::Duplicate {
                    first: entry_name(first_index, first),
                    second: entry_name(second_index, second),
                    port: second.port,
                    protocol: protocol.as_str(),
                });
            }
        }
    }
    Ok(())
}

/// A validated text field: `None` when absent, `Some(None)` to clear, `Some(Some(text))` to set.
type TextChange = Option<Option<Cow<'static, str>>>;

fn apply_one(policy: &mut Policy, index: usize, over: &PortOverride) -> Result<(), PolicyError> {
    let entry = || entry_name(index, over);
    if over.service.is_none()
        && over.security.is_none()
        && over.secure_alternative.is_none()
        && over.reason.is_none()
        && over.never_across_perimeter.is_none()
    {
        return Err(PolicyError::Empty { entry: entry() });
    }
    if over.security == Some(Security::Unknown) {
        return Err(PolicyError::UnknownSecurity { entry: entry() });
    }
    let service = match &over.service {
        None => None,
        Some(text) => match check_text(text, MAX_SERVICE_CHARS, true) {
            Ok(text) => Some(Cow::Owned(text.to_owned())),
            Err(problem) => {
                return Err(PolicyError::InvalidText {
                    entry: entry(),
                    field: "service",
                    problem,
                });
            }
        },
    };
    let secure_alternative = optional_text(
        over.secure_alternative.as_deref(),
        "secure_alternative",
        &entry,
    )?;
    let reason = optional_text(over.reason.as_deref(), "reason", &entry)?;

    let protocols = over.protocol.protocols();
    let existing = protocols
        .iter()
        .filter(|protocol| policy.in_security_table(**protocol, over.port))
        .count();
    for &protocol in protocols {
        if let Some(position) = policy.find(protocol, over.port) {
            let target = &mut policy.entries_mut()[position];
            update(
                target,
                over,
                service.clone(),
                secure_alternative.clone(),
                reason.clone(),
            );
            continue;
        }
        if over.protocol == ProtocolSelector::Both && existing > 0 {
            // `both` on a port listed for the other protocol only: update that entry, add none.
            continue;
        }
        let Some(security) = over.security else {
            return Err(PolicyError::MissingSecurity {
                entry: entry(),
                port: over.port,
                protocol: protocol.as_str(),
            });
        };
        let service = match (&service, policy.iana.name(protocol, over.port)) {
            (Some(service), _) => service.clone(),
            (None, Some(registered)) => Cow::Borrowed(registered),
            (None, None) => {
                return Err(PolicyError::MissingService {
                    entry: entry(),
                    port: over.port,
                    protocol: protocol.as_str(),
                });
            }
        };
        debug_assert_ne!(
            service, UNKNOWN_SERVICE,
            "a new entry always gets a real name"
        );
        let new = Entry {
            port: over.port,
            protocol,
            service,
            security,
            secure_alternative: secure_alternative.clone().flatten(),
            reason: reason.clone().flatten(),
            never_across_perimeter: over.never_across_perimeter.unwrap_or(false),
            source: Cow::Borrowed(CONFIG_SOURCE),
        };
        let entries = policy.entries_mut();
        let at = entries.partition_point(|existing| existing.key() < new.key());
        entries.insert(at, new);
    }
    Ok(())
}

fn update(
    target: &mut Entry,
    over: &PortOverride,
    service: Option<Cow<'static, str>>,
    secure_alternative: TextChange,
    reason: TextChange,
) {
    if let Some(service) = service {
        target.service = service;
    }
    if let Some(security) = over.security {
        target.security = security;
    }
    if let Some(secure_alternative) = secure_alternative {
        target.secure_alternative = secure_alternative;
    }
    if let Some(reason) = reason {
        target.reason = reason;
    }
    if let Some(never) = over.never_across_perimeter {
        target.never_across_perimeter = never;
    }
    target.source = Cow::Borrowed(CONFIG_SOURCE);
}

fn optional_text(
    text: Option<&str>,
    field: &'static str,
    entry: &dyn Fn() -> String,
) -> Result<TextChange, PolicyError> {
    match text {
        None => Ok(None),
        Some("") => Ok(Some(None)),
        Some(text) => match check_text(text, MAX_TEXT_CHARS, false) {
            Ok(text) => Ok(Some(Some(Cow::Owned(text.to_owned())))),
            Err(problem) => Err(PolicyError::InvalidText {
                entry: entry(),
                field,
                problem,
            }),
        },
    }
}

/// Checks one text field; the error is the end of a sentence starting with the field name.
fn check_text(text: &str, max_chars: usize, is_label: bool) -> Result<&str, &'static str> {
    if text.trim().is_empty() {
        return Err(if is_label {
            "is empty: give the service a name, or leave the key out to keep the builtin one"
        } else {
            "is blank: write the text, or \"\" to clear it"
        });
    }
    if text.trim() != text {
        return Err("has leading or trailing spaces: remove them");
    }
    if text.chars().any(char::is_control) {
        return Err("contains a control character (a newline?): write it on one line");
    }
    if text.chars().count() > max_chars {
        return Err(if is_label {
            "is longer than 64 characters: shorten it (it becomes a metric label)"
        } else {
            "is longer than 300 characters: keep it to one short line"
        });
    }
    Ok(text)
}
