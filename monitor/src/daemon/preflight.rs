//! Checks made before anything is loaded, so that each refusal is a clear message and
//! leaves nothing behind: kernel version, privileges, interfaces, XDP hooks already taken.

use aya::util::KernelVersion;

use super::{
    netlink::{Link, XdpProgram},
    selection::{PatternError, Selection, Selector},
};

/// `BPF_F_MMAPABLE` arrays (the counter map is read through `mmap`): commit fc9702273e2e
/// "bpf: Add mmap() support for BPF_MAP_TYPE_ARRAY", Linux 5.5.
pub const MIN_MMAPABLE: KernelVersion = KernelVersion::new(5, 5, 0);
/// XDP through `bpf_link` (owned by the process, detached when it exits, never replacing
/// another program): commit aa8d3a716b59 "bpf, xdp: Add bpf_link-based XDP attachment API",
/// Linux 5.9.
pub const MIN_XDP_LINK: KernelVersion = KernelVersion::new(5, 9, 0);
/// tcx links for TC (commit e420bed02507 "bpf: Add fd-based tcx multi-prog infra with
/// link support", Linux 6.6); older kernels use a clsact qdisc, which is not an error.
pub const MIN_TCX: KernelVersion = KernelVersion::new(6, 6, 0);

/// What the running kernel offers beyond the minimum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelFeatures {
    /// TC programs attach as tcx links (else through clsact).
    pub tcx: bool,
}

/// The kernel lacks something portmon cannot do without.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "kernel {found} is too old: portmon needs Linux {needed} or later for {feature}; \
     upgrade the kernel"
)]
pub struct KernelTooOld {
    /// The running kernel.
    pub found: String,
    /// The minimum for `feature`.
    pub needed: String,
    /// What needs it.
    pub feature: &'static str,
}

fn version_text(version: KernelVersion) -> String {
    version.to_string()
}

/// Checks `version` against the minimums, from the oldest requirement up.
///
/// # Errors
/// The first requirement that `version` does not meet.
pub fn check_kernel(version: KernelVersion) -> Result<KernelFeatures, KernelTooOld> {
    let requirements = [
        (
            MIN_MMAPABLE,
            "mmap-able BPF arrays (BPF_F_MMAPABLE), which hold the counters",
        ),
        (
            MIN_XDP_LINK,
            "XDP attached through bpf_link, which never replaces another program",
        ),
    ];
    for (needed, feature) in requirements {
        if version < needed {
            return Err(KernelTooOld {
                found: version_text(version),
                needed: version_text(needed),
                feature,
            });
        }
    }
    Ok(KernelFeatures {
        tcx: version >= MIN_TCX,
    })
}

/// An interface problem, with the fix in the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterfaceError {
    /// A malformed `--iface` pattern.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// A requested interface does not exist.
    #[error(
        "unknown interface {name:?}; the interfaces here are: {available}. Pass one with --iface"
    )]
    Unknown {
        /// The name asked for.
        name: String,
        /// Every interface of this namespace.
        available: String,
    },
    /// No interface was asked for and none qualifies.
    #[error(
        "no interface is up apart from loopback; the interfaces here are: {available}. \
         Bring one up or pass it with --iface"
    )]
    NoneUp {
        /// Every interface of this namespace.
        available: String,
    },
    /// An XDP program is attached already (and `--hook xdp` was asked for).
    #[error(
        "interface {interface} already has XDP program id {id} attached ({mode} mode); \
         portmon never replaces another program. Count on TC ingress instead with \
         --hook auto (or tc); or see what it is with `bpftool prog show id {id}` and detach \
         it first (for example `ip link set dev {interface} xdp off`), or leave {interface} \
         out of --iface"
    )]
    XdpTaken {
        /// The interface.
        interface: String,
        /// The attached program.
        id: u32,
        /// Its mode.
        mode: &'static str,
    },
}

fn available(links: &[Link]) -> String {
    let names: Vec<&str> = links.iter().map(|link| link.name.as_str()).collect();
    names.join(", ")
}

/// The interfaces to attach to: the requested ones, or every up, non-loopback one.
///
/// # Errors
/// A malformed pattern, an unknown name, or nothing to attach to.
pub fn select_interfaces<'a>(
    requested: &[String],
    links: &'a [Link],
) -> Result<Vec<&'a Link>, InterfaceError> {
    select(&Selection::parse(requested)?, links)
}

/// The interfaces `selection` picks now: every exact name (which must exist), then every
/// link a glob matches (possibly none: more may appear later). An empty selection takes
/// every up, non-loopback interface.
///
/// # Errors
/// An unknown exact name, or, with an empty selection, nothing up.
pub fn select<'a>(
    selection: &Selection,
    links: &'a [Link],
) -> Result<Vec<&'a Link>, InterfaceError> {
    if selection.is_empty() {
        let chosen: Vec<&Link> = links.iter().filter(|l| l.up && !l.loopback).collect();
        if chosen.is_empty() {
            return Err(InterfaceError::NoneUp {
                available: available(links),
            });
        }
        return Ok(chosen);
    }
    let mut chosen: Vec<&Link> = Vec::new();
    for selector in selection.selectors() {
        let matched: Vec<&Link> = match selector {
            Selector::Exact(name) => vec![
                links
                    .iter()
                    .find(|link| &link.name == name)
                    .ok_or_else(|| InterfaceError::Unknown {
                        name: name.clone(),
                        available: available(links),
                    })?,
            ],
            Selector::Glob(_) => links
                .iter()
                .filter(|link| selector.matches(&link.name))
                .collect(),
        };
        for link in matched {
            if !chosen.iter().any(|known| known.index == link.index) {
                chosen.push(link);
            }
        }
    }
    Ok(chosen)
}

/// Refuses interfaces whose XDP hook is taken.
///
/// # Errors
/// The first interface with an XDP program, naming the program.
pub fn check_xdp_free(links: &[&Link]) -> Result<(), InterfaceError> {
    for link in links {
        if let Some(&XdpProgram { id, mode }) = link.xdp.first() {
            return Err(InterfaceError::XdpTaken {
                interface: link.name.clone(),
                id,
                mode,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests panic with what they expected")]
mod tests {
    use super::*;

    /// (case, kernel version, `Ok(tcx)` or `Err(minimum named)`).
    type KernelCase = (&'static str, (u8, u8, u16), Result<bool, &'static str>);

    #[test]
    fn kernel_minimums() {
        let cases: &[KernelCase] = &[
            ("4.19 lacks mmap-able arrays", (4, 19, 0), Err("5.5.0")),
            ("5.4 lacks mmap-able arrays", (5, 4, 250), Err("5.5.0")),
            ("5.5 lacks XDP links", (5, 5, 0), Err("5.9.0")),
            ("5.8 lacks XDP links", (5, 8, 18), Err("5.9.0")),
            ("5.9 works through clsact", (5, 9, 0), Ok(false)),
            ("6.1 works through clsact", (6, 1, 100), Ok(false)),
            ("6.6 has tcx", (6, 6, 0), Ok(true)),
            ("6.18 has tcx", (6, 18, 0), Ok(true)),
        ];
        for (name, (major, minor, patch), expected) in cases {
            let got = check_kernel(KernelVersion::new(*major, *minor, *patch));
            match (got, expected) {
                (Ok(features), Ok(tcx)) => assert_eq!(features.tcx, *tcx, "case {name}"),
                (Err(error), Err(needed)) => {
                    assert_eq!(error.needed, *needed, "case {name}");
                    let text = error.to_string();
                    assert!(
                        text.contains("too old") && text.contains("upgrade"),
                        "case {name}: got {text:?}"
                    );
                }
                (got, expected) => panic!("case {name}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    fn link(index: u32, name: &str, up: bool, loopback: bool) -> Link {
        Link {
            index,
            name: name.into(),
            up,
            loopback,
            xdp: Vec::new(),
        }
    }

    #[test]
    fn interface_selection() {
        let links = [
            link(1, "lo", true, true),
            link(2, "eth0", true, false),
            link(3, "eth1", false, false),
            link(4, "veth0", true, false),
        ];
        let names = |chosen: Result<Vec<&Link>, InterfaceError>| {
            chosen.map(|links| links.iter().map(|l| l.name.clone()).collect::<Vec<_>>())
        };
        let strings = |names: &[&str]| names.iter().map(|&n| n.to_owned()).collect::<Vec<_>>();
        assert_eq!(
            names(select_interfaces(&[], &links)),
            Ok(strings(&["eth0", "veth0"])),
            "default: up and not loopback"
        );
        assert_eq!(
            names(select_interfaces(&strings(&["eth1", "lo", "eth1"]), &links)),
            Ok(strings(&["eth1", "lo"])),
            "named interfaces are taken as asked, once each, even down or loopback"
        );
        let unknown = select_interfaces(&strings(&["eth9"]), &links)
            .expect_err("eth9 does not exist")
            .to_string();
        assert!(
            unknown.contains("\"eth9\"") && unknown.contains("lo, eth0, eth1, veth0"),
            "expected the name and the available ones, got {unknown:?}"
        );
        let lonely = [link(1, "lo", true, true), link(3, "eth1", false, false)];
        assert!(
            matches!(
                select_interfaces(&[], &lonely),
                Err(InterfaceError::NoneUp { .. })
            ),
            "nothing up but loopback"
        );
    }

    #[test]
    fn a_taken_xdp_hook_is_refused_with_the_program_id() {
        let mut taken = link(2, "eth0", true, false);
        taken.xdp.push(XdpProgram {
            id: 99,
            mode: "generic",
        });
        let free = link(3, "eth1", true, false);
        assert_eq!(check_xdp_free(&[&free]), Ok(()));
        let text = check_xdp_free(&[&free, &taken])
            .expect_err("eth0 is taken")
            .to_string();
        assert!(
            text.contains("eth0") && text.contains("id 99") && text.contains("never replaces"),
            "got {text:?}"
        );
    }
}
