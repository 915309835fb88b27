//! Dropping capabilities once everything is attached.
//!
//! After the programs are attached and the counter maps mmap'ed, `portmon run` only reads
//! memory it has mapped, reads program statistics through file descriptors it owns
//! (`BPF_OBJ_GET_INFO_BY_FD` checks no capability for `run_time_ns`/`run_cnt`), and
//! serves HTTP on a socket it has bound. Detaching at shutdown closes `bpf_link` file
//! descriptors (XDP links since 5.9, tcx links since 6.6), which needs no capability
//! either. The one exception is TC through a clsact qdisc (kernels before 6.6): removing
//! that netlink filter needs `CAP_NET_ADMIN`, so it is kept there.
//!
//! Following link events ([`super::link_watch`]) may need more, see [`keep`]:
//!
//! * Re-attaching the programs already loaded to a link that came back is one
//!   `BPF_LINK_CREATE` with the program's fd. On Linux 6.5 and later no capability is
//!   checked there: `link_create()` (kernel/bpf/syscall.c) dispatches to
//!   `bpf_xdp_link_attach()` (net/core/dev.c) and `tcx_link_attach()` (kernel/bpf/tcx.c),
//!   none of which calls `capable()`; holding the program fd is the privilege, and the
//!   capability checks sit in `BPF_PROG_LOAD` (`bpf_capable()`, and CAP_NET_ADMIN for
//!   `is_net_admin_prog_type()`) and `BPF_MAP_CREATE`. Before 6.5, `__sys_bpf()` refused
//!   every command without `CAP_BPF` while `kernel.unprivileged_bpf_disabled` is set
//!   (the default on most distributions), so `CAP_BPF` is kept there. Verified on 6.18 by
//!   tests/tests/link_events.rs, which re-attaches with no capability left.
//! * Attaching to an interface that appears later and matches a glob loads a fresh data
//!   plane: `CAP_BPF`, `CAP_PERFMON` and `CAP_NET_ADMIN`, as at startup.
//! * clsact (TC before 6.6) is netlink: `CAP_NET_ADMIN`, to re-attach and to detach.
//!
//! Capabilities are per thread on Linux (`capset(2)` changes the calling thread only), and
//! a new thread copies its creator's. The daemon drops on its runtime thread before any
//! other thread exists (the runtime is single-threaded; blocking-pool threads start
//! lazily, from this thread, after the drop); [`drop_all_but`] then checks every thread
//! of the process through `/proc/self/task` and fails if one still holds a capability.

use std::{fs, io};

use aya::util::KernelVersion;

use super::preflight::MIN_TCX;
use crate::{attach::Hook, caps::Capability};

/// Before this, every `bpf()` command needs `CAP_BPF` while
/// `kernel.unprivileged_bpf_disabled` is set; see the module documentation.
pub const MIN_FD_ONLY_LINK_CREATE: KernelVersion = KernelVersion::new(6, 5, 0);

/// What the daemon still does after attaching, which decides what it keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needs {
    /// TC egress is attached.
    pub egress: bool,
    /// Where ingress is counted (TC ingress for `tc`, and possibly for `auto`).
    pub hook: Hook,
    /// Links that come back are re-attached (link events are followed).
    pub reattach: bool,
    /// Interfaces that appear later get a fresh data plane (a glob and link events).
    pub load: bool,
}

/// The capabilities to keep for `needs` on `kernel` (`None`: unknown, assume old), each
/// with why.
#[must_use]
pub fn keep(needs: &Needs, kernel: Option<KernelVersion>) -> Vec<(Capability, &'static str)> {
    let older = |version| kernel.is_none_or(|kernel| kernel < version);
    let clsact = older(MIN_TCX) && (needs.egress || needs.hook != Hook::Xdp);
    let mut keep: Vec<(Capability, &'static str)> = Vec::new();
    if needs.load {
        keep.push((
            Capability::Bpf,
            "to load programs for interfaces that appear later",
        ));
        keep.push((
            Capability::NetAdmin,
            "to load and attach programs for interfaces that appear later",
        ));
        keep.push((
            Capability::Perfmon,
            "to load programs for interfaces that appear later",
        ));
    } else {
        if needs.reattach && older(MIN_FD_ONLY_LINK_CREATE) {
            keep.push((
                Capability::Bpf,
                "to re-attach interfaces that come back: bpf() needs it before Linux 6.5",
            ));
        }
        if clsact {
            keep.push((
                Capability::NetAdmin,
                "to remove the clsact filters at exit and re-attach them",
            ));
        }
    }
    keep
}

/// `_LINUX_CAPABILITY_VERSION_3` from `linux/capability.h`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The capability sets of one thread as `/proc/<pid>/task/<tid>/status` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapSets {
    /// `CapInh`.
    pub inheritable: u64,
    /// `CapPrm`.
    pub permitted: u64,
    /// `CapEff`.
    pub effective: u64,
    /// `CapBnd`.
    pub bounding: u64,
    /// `CapAmb`.
    pub ambient: u64,
}

impl CapSets {
    /// Reads the `Cap*:` lines of a status text; `None` when one is missing or malformed.
    #[must_use]
    pub fn parse(status: &str) -> Option<Self> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        };
        Some(Self {
            inheritable: field("CapInh:")?,
            permitted: field("CapPrm:")?,
            effective: field("CapEff:")?,
            bounding: field("CapBnd:")?,
            ambient: field("CapAmb:")?,
        })
    }
}

/// Why dropping failed.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// A system call failed.
    #[error("{call}: {source}")]
    Syscall {
        /// The call.
        call: &'static str,
        /// The kernel's answer.
        source: io::Error,
    },
    /// A thread kept capabilities it should have lost.
    #[error(
        "thread {tid} still holds capabilities after the drop (effective {effective:#x}, \
         permitted {permitted:#x}); capabilities are per thread and it was started before \
         the drop"
    )]
    ThreadKept {
        /// The thread id.
        tid: String,
        /// Its `CapEff`.
        effective: u64,
        /// Its `CapPrm`.
        permitted: u64,
    },
    /// `/proc/self/task` could not be read to verify the drop.
    #[error("verifying the drop through /proc/self/task: {0}")]
    Proc(io::Error),
}

/// What [`drop_all_but`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// The capability mask kept in the permitted and effective sets.
    pub kept: u64,
    /// Whether the bounding set was emptied too (needs `CAP_SETPCAP`, which a
    /// capabilities-only service may not have; systemd's `CapabilityBoundingSet=` and
    /// `NoNewPrivileges=` cover that case).
    pub bounding_dropped: bool,
}

fn mask(keep: &[Capability]) -> u64 {
    keep.iter().fold(0, |mask, cap| mask | (1 << cap.number()))
}

fn last_cap() -> u32 {
    fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(63)
}

fn prctl(
    call: &'static str,
    option: libc::c_int,
    arg2: libc::c_ulong,
    arg3: libc::c_ulong,
) -> Result<(), PrivilegeError> {
    // SAFETY: prctl with integer arguments only; no memory is passed to the kernel.
    let result = unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    if result == 0 {
        Ok(())
    } else {
        Err(PrivilegeError::Syscall {
            call,
            source: io::Error::last_os_error(),
        })
    }
}

/// Empties the bounding set except `kept`; `false` when not allowed (no `CAP_SETPCAP`).
fn drop_bounding(kept: u64) -> Result<bool, PrivilegeError> {
    for cap in 0..=last_cap().min(63) {
        if kept & (1 << cap) != 0 {
            continue;
        }
        match prctl(
            "prctl(PR_CAPBSET_DROP)",
            libc::PR_CAPBSET_DROP,
            cap.into(),
            0,
        ) {
            Ok(()) => {}
            Err(PrivilegeError::Syscall { source, .. })
                if source.raw_os_error() == Some(libc::EPERM) =>
            {
                return Ok(false);
            }
            // EINVAL: a capability this kernel does not know; nothing to drop.
            Err(PrivilegeError::Syscall { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(true)
}

/// Sets this thread's permitted and effective sets to `kept`, the inheritable set to none.
fn capset(kept: u64) -> Result<(), PrivilegeError> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    #[expect(
        clippy::cast_possible_truncation,
        reason = "splitting 64 bits into two words"
    )]
    let word = |shift: u32| (kept >> shift) as u32;
    let data = [
        Data {
            effective: word(0),
            permitted: word(0),
            inheritable: 0,
        },
        Data {
            effective: word(32),
            permitted: word(32),
            inheritable: 0,
        },
    ];
    // SAFETY: `header` and `data` are the version-3 layouts of `linux/capability.h`
    // (one header, two data words), live for the call, and capset only reads `data`.
    let result = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    if result == 0 {
        Ok(())
    } else {
        Err(PrivilegeError::Syscall {
            call: "capset",
            source: io::Error::last_os_error(),
        })
    }
}

/// The capability sets of every thread of this process, by thread id.
///
/// # Errors
/// When `/proc/self/task` cannot be read.
pub fn threads() -> io::Result<Vec<(String, CapSets)>> {
    let mut threads = Vec::new();
    for entry in fs::read_dir("/proc/self/task")? {
        let entry = entry?;
        let tid = entry.file_name().to_string_lossy().into_owned();
        // A thread that exited in between has no status any more: skip it.
        let Ok(status) = fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        if let Some(sets) = CapSets::parse(&status) {
            threads.push((tid, sets));
        }
    }
    Ok(threads)
}

/// Drops every capability but `keep` from the bounding (when allowed), ambient,
/// inheritable, permitted and effective sets, then checks every thread of the process.
///
/// # Errors
/// A refused system call, or a thread that still holds more than `keep`.
pub fn drop_all_but(keep: &[Capability]) -> Result<Dropped, PrivilegeError> {
    let kept = mask(keep);
    // The bounding set first: dropping from it needs CAP_SETPCAP, gone after capset.
    let bounding_dropped = drop_bounding(kept)?;
    prctl(
        "prctl(PR_CAP_AMBIENT_CLEAR_ALL)",
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL
            .try_into()
            .unwrap_or_default(),
        0,
    )?;
    capset(kept)?;
    for (tid, sets) in threads().map_err(PrivilegeError::Proc)? {
        if sets.effective & !kept != 0 || sets.permitted & !kept != 0 || sets.ambient != 0 {
            return Err(PrivilegeError::ThreadKept {
                tid,
                effective: sets.effective,
                permitted: sets.permitted,
            });
        }
    }
    Ok(Dropped {
        kept,
        bounding_dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_set_from_proc_status() {
        let status = "Name:\tportmon\nCapInh:\t0000000000000000\nCapPrm:\t0000000000001000\n\
                      CapEff:\t0000000000001000\nCapBnd:\t000001ffffffffff\n\
                      CapAmb:\t0000000000000000\n";
        assert_eq!(
            CapSets::parse(status),
            Some(CapSets {
                inheritable: 0,
                permitted: 0x1000,
                effective: 0x1000,
                bounding: 0x1ff_ffff_ffff,
                ambient: 0,
            })
        );
        assert_eq!(
            CapSets::parse("CapEff:\t0\n"),
            None,
            "incomplete status is not guessed"
        );
    }

    #[test]
    fn what_is_kept_per_need_and_kernel() {
        use Capability::{Bpf, NetAdmin, Perfmon};
        let needs = |egress, hook, reattach, load| Needs {
            egress,
            hook,
            reattach,
            load,
        };
        let new = Some(KernelVersion::new(6, 18, 0));
        let k6_1 = Some(KernelVersion::new(6, 1, 0));
        let k6_5 = Some(KernelVersion::new(6, 5, 0));
        // (case, needs, kernel, expected)
        let cases: &[(&str, Needs, Option<KernelVersion>, &[Capability])] = &[
            (
                "fixed names, no re-attach",
                needs(true, Hook::Auto, false, false),
                new,
                &[],
            ),
            (
                "fixed names, re-attach on 6.18",
                needs(true, Hook::Auto, true, false),
                new,
                &[],
            ),
            (
                "re-attach on 6.5 (tcx missing)",
                needs(false, Hook::Xdp, true, false),
                k6_5,
                &[],
            ),
            (
                "re-attach on 6.1 with egress",
                needs(true, Hook::Xdp, true, false),
                k6_1,
                &[Bpf, NetAdmin],
            ),
            (
                "no re-attach on 6.1, xdp only",
                needs(false, Hook::Xdp, false, false),
                k6_1,
                &[],
            ),
            (
                "no re-attach on 6.1, auto may use TC",
                needs(false, Hook::Auto, false, false),
                k6_1,
                &[NetAdmin],
            ),
            (
                "glob on 6.18",
                needs(true, Hook::Auto, true, true),
                new,
                &[Bpf, NetAdmin, Perfmon],
            ),
            (
                "unknown kernel re-attach",
                needs(false, Hook::Xdp, true, false),
                None,
                &[Bpf],
            ),
        ];
        for (case, needs, kernel, expected) in cases {
            let kept: Vec<Capability> = keep(needs, *kernel)
                .into_iter()
                .map(|(cap, _)| cap)
                .collect();
            assert_eq!(kept, *expected, "case {case}");
        }
    }

    #[test]
    fn the_mask_has_one_bit_per_kept_capability() {
        assert_eq!(mask(&[]), 0);
        assert_eq!(mask(&[Capability::NetAdmin]), 1 << 12);
        assert_eq!(
            mask(&[Capability::Bpf, Capability::Perfmon]),
            (1 << 39) | (1 << 38)
        );
    }
}
