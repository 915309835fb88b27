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
//! Not implemented yet: re-attaching on interface events (an interface that appears or
//! comes back later). Whoever adds it must keep `CAP_BPF`, `CAP_NET_ADMIN` and
//! `CAP_PERFMON` (or move attaching to a privileged helper).
//!
//! Capabilities are per thread on Linux (`capset(2)` changes the calling thread only), and
//! a new thread copies its creator's. The daemon drops on its runtime thread before any
//! other thread exists (the runtime is single-threaded; blocking-pool threads start
//! lazily, from this thread, after the drop); [`drop_all_but`] then checks every thread
//! of the process through `/proc/self/task` and fails if one still holds a capability.

use std::{fs, io};

use crate::caps::Capability;

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
    fn the_mask_has_one_bit_per_kept_capability() {
        assert_eq!(mask(&[]), 0);
        assert_eq!(mask(&[Capability::NetAdmin]), 1 << 12);
        assert_eq!(
            mask(&[Capability::Bpf, Capability::Perfmon]),
            (1 << 39) | (1 << 38)
        );
    }
}
