//! The capabilities `portmon run` needs, checked before anything is loaded so that a
//! missing one is reported by name instead of as a verifier or `EPERM` error halfway
//! through attaching.
//!
//! * `CAP_BPF` (5.8+): create maps and load programs.
//! * `CAP_PERFMON` (5.8+): the XDP program's packet-pointer arithmetic and the
//!   pointer-leaking helpers are only allowed to "perfmon-capable" loaders
//!   (`bpf_capable()`/`perfmon_capable()` in kernel/bpf/verifier.c, commit
//!   2c78ee898d8f "bpf: Implement CAP_BPF").
//! * `CAP_NET_ADMIN`: attach XDP and TC programs.
//!
//! `CAP_SYS_ADMIN` still implies `CAP_BPF` and `CAP_PERFMON` for compatibility.

use std::fmt;

/// A Linux capability portmon cares about, with its number from `linux/capability.h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    /// `CAP_NET_ADMIN` (12).
    NetAdmin,
    /// `CAP_SYS_ADMIN` (21).
    SysAdmin,
    /// `CAP_SYS_RESOURCE` (24): raise the memlock rlimit, which limits BPF memory on
    /// kernels before 5.11 (memcg accounting replaced it in commit 3ac1f01b43b6 "bpf:
    /// Eliminate rlimit-based memory accounting for bpf progs", 5.11).
    SysResource,
    /// `CAP_PERFMON` (38).
    Perfmon,
    /// `CAP_BPF` (39).
    Bpf,
}

impl Capability {
    /// The capability's bit number.
    #[must_use]
    pub const fn number(self) -> u32 {
        match self {
            Capability::NetAdmin => 12,
            Capability::SysAdmin => 21,
            Capability::SysResource => 24,
            Capability::Perfmon => 38,
            Capability::Bpf => 39,
        }
    }

    /// The name as in `capabilities(7)`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Capability::NetAdmin => "CAP_NET_ADMIN",
            Capability::SysAdmin => "CAP_SYS_ADMIN",
            Capability::SysResource => "CAP_SYS_RESOURCE",
            Capability::Perfmon => "CAP_PERFMON",
            Capability::Bpf => "CAP_BPF",
        }
    }

    /// Whether the capability set `effective` holds this capability.
    #[must_use]
    pub const fn held(self, effective: u64) -> bool {
        effective & (1 << self.number()) != 0
    }
}

/// The capabilities `portmon run` needs, in the order they are reported.
pub const REQUIRED: [Capability; 3] = [Capability::Bpf, Capability::NetAdmin, Capability::Perfmon];

/// Required capabilities absent from the effective set `effective`.
#[must_use]
pub fn missing(effective: u64) -> Vec<Capability> {
    let sys_admin = Capability::SysAdmin.held(effective);
    REQUIRED
        .into_iter()
        .filter(|&cap| {
            let implied = sys_admin && matches!(cap, Capability::Bpf | Capability::Perfmon);
            !cap.held(effective) && !implied
        })
        .collect()
}

/// Reads the `CapEff:` line of a `/proc/<pid>/status` text.
#[must_use]
pub fn parse_effective(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// The capabilities are missing; the message says which and how to grant them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct MissingCapabilities {
    /// What is missing.
    pub missing: Vec<Capability>,
}

impl fmt::Display for MissingCapabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.missing.iter().map(|cap| cap.name()).collect();
        let all: Vec<&str> = REQUIRED.iter().map(|cap| cap.name()).collect();
        let lower: Vec<String> = all.iter().map(|name| name.to_lowercase()).collect();
        write!(
            f,
            "missing privileges: portmon run needs {} and lacks {}. Run it as root, or grant \
             the capabilities to the binary (`sudo setcap {}+ep $(command -v portmon)`) or to \
             its service (systemd: `AmbientCapabilities={}` and `CapabilityBoundingSet={}`)",
            all.join(", "),
            names.join(", "),
            lower.join(","),
            all.join(" "),
            all.join(" "),
        )
    }
}

/// Checks this process's effective capabilities.
///
/// # Errors
/// When one is missing. An unreadable `/proc/self/status` is not an error: the kernel
/// will then say no itself.
pub fn check() -> Result<(), MissingCapabilities> {
    let Some(effective) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(parse_effective)
    else {
        log::warn!("could not read the effective capabilities; trying anyway");
        return Ok(());
    };
    let missing = missing(effective);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(MissingCapabilities { missing })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn bits(caps: &[Capability]) -> u64 {
        let mut mask = 0;
        let mut i = 0;
        while i < caps.len() {
            mask |= 1 << caps[i].number();
            i += 1;
        }
        mask
    }

    #[test]
    fn missing_capabilities_per_effective_set() {
        use Capability::{Bpf, NetAdmin, Perfmon, SysAdmin};
        let cases: &[(&str, u64, &[Capability])] = &[
            ("root", 0x3f_ffff_ffff, &[]),
            ("none", 0, &[Bpf, NetAdmin, Perfmon]),
            ("exactly the three", bits(&[Bpf, NetAdmin, Perfmon]), &[]),
            (
                "sys_admin implies bpf and perfmon",
                bits(&[SysAdmin, NetAdmin]),
                &[],
            ),
            ("sys_admin alone", bits(&[SysAdmin]), &[NetAdmin]),
            ("no perfmon", bits(&[Bpf, NetAdmin]), &[Perfmon]),
            ("net_admin only", bits(&[NetAdmin]), &[Bpf, Perfmon]),
        ];
        for (name, effective, expected) in cases {
            assert_eq!(missing(*effective), *expected, "case {name}");
        }
    }

    #[test]
    fn reads_cap_eff_from_proc_status() {
        let status = "Name:\tportmon\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
                      CapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n";
        assert_eq!(parse_effective(status), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_effective("Name:\tx\n"), None);
        assert_eq!(parse_effective("CapEff:\tzz\n"), None);
    }

    #[test]
    fn the_message_names_every_capability_and_how_to_grant_it() {
        let text = MissingCapabilities {
            missing: vec![Capability::Perfmon],
        }
        .to_string();
        for needle in [
            "CAP_BPF",
            "CAP_NET_ADMIN",
            "lacks CAP_PERFMON",
            "as root",
            "setcap cap_bpf,cap_net_admin,cap_perfmon+ep",
            "AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON",
        ] {
            assert!(text.contains(needle), "expected {needle:?} in {text:?}");
        }
    }
}
