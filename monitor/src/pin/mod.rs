//! Pinning each interface's state on bpffs, so that its counters survive a daemon restart,
//! a crash or `kill -9`.
//!
//! On bpffs, `<root>/<interface>/<layout>/` holds
//! * every map of [`PINNED_MAPS`] under its own name (the loader opens them instead of
//!   creating fresh ones: [`crate::dataplane::DataPlane::load_pinned`]);
//! * the `bpf_link` of every attachment the kernel offers as a link (see [`links`]): it keeps
//!   the programs attached and counting while no daemon runs, and a restarted daemon moves it
//!   to its newly loaded program with `BPF_LINK_UPDATE`, so there is no gap, no second
//!   attachment and no double counting.
//!
//! `<layout>` ([`layout_name`]) spells out everything a reader of the maps must agree on:
//! [`LAYOUT_VERSION`], the slice count and the counter size. A directory name rather than a
//! pinned metadata map because bpffs holds nothing but pins and directories (no files), a
//! name is created atomically with `mkdir` (never half-written), it is compared without
//! opening or parsing anything, and `ls` shows it. Any other layout found under the
//! interface is removed whole, with one log line, before anything is loaded: a map of
//! another layout is never opened, let alone misread. Within the right directory, every
//! pinned map's geometry is still checked against the plan before the loader opens it. Bumping [`LAYOUT_VERSION`] is all a
//! future layout change needs.
//!
//! One daemon per interface directory: [`PinDir`] holds an exclusive `flock` on it while it
//! lives, so a second daemon (or `portmon detach`) is refused with a clear message instead
//! of taking over the links of a running one.

pub mod detach;
pub mod links;

use std::{
    fs::File,
    io,
    os::{fd::AsRawFd as _, unix::fs::PermissionsExt as _},
    path::{Path, PathBuf},
};

use monitor_common::layout::{
    COUNTERS_MAP, Counter, LAYOUT_VERSION, PAYLOAD_MAP, PAYLOAD_SLOT_ENTRIES, PAYLOAD_SLOT_MAP,
    PINNED_MAPS, SLICE_ENTRIES, SlicePlan,
};

/// The default pin root (`--pin-dir`).
pub const DEFAULT_ROOT: &str = "/sys/fs/bpf/portmon";

/// `BPF_FS_MAGIC` from `include/uapi/linux/magic.h`.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// `BPF_F_MMAPABLE` from `include/uapi/linux/bpf.h`.
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// Errors while preparing or removing pins.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The pin root is not on bpffs.
    #[error(
        "{path} is not on a BPF filesystem (bpffs), so nothing can be pinned there; mount it \
         with `mount -t bpf bpf /sys/fs/bpf` (systemd mounts it at boot; in Kubernetes use \
         the bpffs hostPath volume of deploy/kubernetes), choose another --pin-dir, or run \
         with --no-pin (counters then restart from zero with the daemon)"
    )]
    NotBpffs {
        /// The first existing directory on the way to the root.
        path: PathBuf,
    },
    /// Another process (a running portmon) holds the interface's pins.
    #[error(
        "{path} is in use by another running portmon (it holds the lock); stop that one first \
         (`systemctl stop portmon`), or give this one its own --pin-dir"
    )]
    Busy {
        /// The interface's pin directory.
        path: PathBuf,
    },
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PinError + 'a {
    move |source| PinError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The layout directory's name: everything a reader of the pinned maps must agree on.
#[must_use]
pub fn layout_name(plan: SlicePlan) -> String {
    format!(
        "layout-v{LAYOUT_VERSION}-{}x{SLICE_ENTRIES}x{}B-{}",
        plan.slices,
        size_of::<Counter>(),
        if plan.shared { "shared" } else { "percpu" }
    )
}

/// Checks that `path`, or its nearest existing ancestor when it does not exist yet, is on
/// bpffs (so `mkdir` of the rest happens on bpffs too).
///
/// # Errors
/// [`PinError::NotBpffs`], or the `statfs` failure.
pub fn check_bpffs(path: &Path) -> Result<(), PinError> {
    let existing = path
        .ancestors()
        .find(|ancestor| ancestor.exists())
        .unwrap_or(Path::new("/"));
    let name = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes()).map_err(|_| {
        PinError::Io {
            action: "checking the filesystem of",
            path: existing.to_owned(),
            source: io::Error::from(io::ErrorKind::InvalidInput),
        }
    })?;
    // SAFETY: a zeroed statfs is a valid out-parameter.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is NUL-terminated and outlives the call; `stat` is writable.
    if unsafe { libc::statfs(name.as_ptr(), &raw mut stat) } != 0 {
        return Err(io_error("checking the filesystem of", existing)(
            io::Error::last_os_error(),
        ));
    }
    #[expect(
        clippy::useless_conversion,
        reason = "f_type is i64 on 64-bit targets, i32 on some 32-bit ones"
    )]
    if i64::from(stat.f_type) == BPF_FS_MAGIC {
        Ok(())
    } else {
        Err(PinError::NotBpffs {
            path: existing.to_owned(),
        })
    }
}

/// Removes `path` (a pin or a directory of pins). Unpinning a link that no process holds
/// detaches it; unpinning a map frees it once no program uses it.
fn remove_all(path: &Path) -> Result<(), PinError> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io_error("inspecting", path)(error)),
    };
    if metadata.is_dir() {
        std::fs::remove_dir_all(path).map_err(io_error("removing", path))
    } else {
        std::fs::remove_file(path).map_err(io_error("removing", path))
    }
}

/// Removes the pin root once nothing is left in it. Quietly does nothing when another
/// interface's pins are there, or when the root is a mount point (systemd bind-mounts it).
fn remove_root_if_empty(root: &Path) {
    let _ = std::fs::remove_dir(root);
}

/// Takes the exclusive lock of an interface directory, without waiting.
fn lock(path: &Path) -> Result<File, PinError> {
    let dir = File::open(path).map_err(io_error("opening", path))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let error = io::Error::last_os_error();
        return Err(if error.kind() == io::ErrorKind::WouldBlock {
            PinError::Busy {
                path: path.to_owned(),
            }
        } else {
            io_error("locking", path)(error)
        });
    }
    Ok(dir)
}

/// The pin directory of one interface for this build's layout, locked while it lives.
#[derive(Debug)]
pub struct PinDir {
    interface: String,
    interface_dir: PathBuf,
    dir: PathBuf,
    reused: bool,
    _lock: File,
}

impl PinDir {
    /// Opens the pin directory of `interface` under `root` for `plan`, creating it when
    /// missing. Another layout found there is removed first, with one log line.
    ///
    /// # Errors
    /// The root is not on bpffs, another portmon holds the directory, or a filesystem
    /// operation failed.
    pub fn open(root: &Path, interface: &str, plan: SlicePlan) -> Result<Self, PinError> {
        check_bpffs(root)?;
        let interface_dir = root.join(interface);
        std::fs::create_dir_all(&interface_dir).map_err(io_error("creating", &interface_dir))?;
        // Counters are nobody else's business (bpffs creates directories 0777 & ~umask).
        std::fs::set_permissions(&interface_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_error("restricting", &interface_dir))?;
        let lock = lock(&interface_dir)?;
        let layout = layout_name(plan);
        let entries =
            std::fs::read_dir(&interface_dir).map_err(io_error("listing", &interface_dir))?;
        for entry in entries {
            let entry = entry.map_err(io_error("listing", &interface_dir))?;
            let found = entry.file_name();
            if found.as_encoded_bytes() == layout.as_bytes() {
                continue;
            }
            remove_all(&entry.path())?;
            log::warn!(
                "{interface}: pinned state {} in {} does not match this build's {layout}: \
                 removed it (its links detached, its maps unpinned); counters start from zero \
                 in fresh maps",
                found.to_string_lossy(),
                interface_dir.display(),
            );
        }
        let dir = interface_dir.join(&layout);
        let mut reused = dir.exists();
        if reused && let Err(mismatch) = maps_match(&dir, plan) {
            remove_all(&dir)?;
            log::warn!(
                "{interface}: a pinned map in {} does not match this build's {layout} \
                 ({mismatch}): removed it (its links detached, its maps unpinned); counters \
                 start from zero in fresh maps",
                dir.display()
            );
            reused = false;
        }
        if !reused {
            std::fs::create_dir(&dir).map_err(io_error("creating", &dir))?;
        }
        Ok(Self {
            interface: interface.to_owned(),
            interface_dir,
            dir,
            reused,
            _lock: lock,
        })
    }

    /// Where map `name` is pinned.
    #[must_use]
    pub fn map_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Where the link of `hook` (`xdp_native`, `tc_egress`...) is pinned.
    #[must_use]
    pub fn link_path(&self, hook: &str) -> PathBuf {
        self.dir.join(format!("link_{hook}"))
    }

    /// Whether the directory was there already (its maps and links are reused).
    #[must_use]
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// The layout directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The interface.
    #[must_use]
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Unpins everything of this interface and removes its directory. Links that this
    /// process still holds detach when it closes them.
    ///
    /// # Errors
    /// A filesystem operation failed.
    pub fn remove(&self) -> Result<(), PinError> {
        remove_all(&self.interface_dir)?;
        if let Some(root) = self.interface_dir.parent() {
            remove_root_if_empty(root);
        }
        Ok(())
    }
}

/// The geometry a pinned map must have: (value size, entries), always `BPF_F_MMAPABLE`.
/// `None` for a map of [`PINNED_MAPS`] this module does not know: its layout is vouched
/// for by [`LAYOUT_VERSION`] alone (add it here when adding it there).
fn expected_geometry(name: &str, plan: SlicePlan) -> Option<(u32, u32)> {
    let word = u32::try_from(size_of::<u64>()).unwrap_or(u32::MAX);
    let counter = u32::try_from(size_of::<Counter>()).unwrap_or(u32::MAX);
    match name {
        COUNTERS_MAP => Some((counter, plan.map_entries())),
        PAYLOAD_SLOT_MAP => Some((word, PAYLOAD_SLOT_ENTRIES)),
        PAYLOAD_MAP => Some((word, plan.payload_map_entries())),
        _ => None,
    }
}

/// Checks every pinned map of a layout directory against `plan`, without trusting the
/// directory name alone: a map of another geometry is never opened for reading.
fn maps_match(dir: &Path, plan: SlicePlan) -> Result<(), String> {
    for &name in PINNED_MAPS {
        let path = dir.join(name);
        let Some((value_size, entries)) = expected_geometry(name, plan) else {
            continue;
        };
        if !path.exists() {
            continue; // Created by the loader.
        }
        let info = aya::maps::MapInfo::from_pin(&path).map_err(|error| error.to_string())?;
        let found = (
            info.value_size(),
            info.max_entries(),
            info.map_flags() & BPF_F_MMAPABLE != 0,
        );
        if found != (value_size, entries, true) {
            return Err(format!(
                "{name} has value size {}, {} entries, mmapable {}; expected {value_size}, \
                 {entries}, true",
                found.0, found.1, found.2
            ));
        }
    }
    Ok(())
}

/// A [`PinDir`] that removes itself on drop unless told to keep the pins: RAII for a daemon
/// start that fails half-way (what it created goes away) and for `--cleanup`.
#[derive(Debug)]
pub struct PinGuard {
    dir: PinDir,
    remove_on_drop: bool,
}

impl PinGuard {
    /// Guards `dir`: until [`PinGuard::settle`], a directory this process created is
    /// removed on drop and one it reused is kept.
    #[must_use]
    pub fn new(dir: PinDir) -> Self {
        let remove_on_drop = !dir.reused();
        Self {
            dir,
            remove_on_drop,
        }
    }

    /// Once started: keep the pins at exit, or remove them (`--cleanup`).
    pub fn settle(&mut self, cleanup: bool) {
        self.remove_on_drop = cleanup;
    }

    /// Whether the pins stay after this process.
    #[must_use]
    pub fn kept(&self) -> bool {
        !self.remove_on_drop
    }

    /// The guarded directory.
    #[must_use]
    pub fn dir(&self) -> &PinDir {
        &self.dir
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        if !self.remove_on_drop {
            return;
        }
        match self.dir.remove() {
            Ok(()) => log::info!(
                "{}: unpinned and removed {}",
                self.dir.interface,
                self.dir.interface_dir.display()
            ),
            Err(error) => log::error!(
                "{}: {error}; remove it with `portmon detach --iface {}`",
                self.dir.interface,
                self.dir.interface
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use monitor_common::layout::slice_plan;

    use super::*;

    #[test]
    fn the_layout_name_changes_with_everything_a_reader_must_agree_on() {
        let base = layout_name(slice_plan(2, 8));
        assert_eq!(
            base,
            format!("layout-v{LAYOUT_VERSION}-2x{SLICE_ENTRIES}x24B-percpu"),
            "the name spells out version, slices, entries and counter size"
        );
        // (case, plan): each must name a different layout than `base`.
        let cases = [
            ("one more slice", slice_plan(3, 8)),
            ("shared slices", slice_plan(16, 2)),
            ("a single slice", slice_plan(2, 1)),
        ];
        for (case, plan) in cases {
            assert_ne!(layout_name(plan), base, "case {case}");
        }
    }

    #[test]
    fn every_pinned_map_has_a_checked_geometry() {
        let plan = slice_plan(2, 8);
        for &name in PINNED_MAPS {
            assert!(
                expected_geometry(name, plan).is_some(),
                "{name} is pinned: give it its (value size, entries) in expected_geometry"
            );
        }
    }

    #[test]
    fn a_root_off_bpffs_is_refused_with_the_fix() {
        // (case, path): /proc exists and is procfs; the second does not exist, so its
        // nearest existing ancestor (/proc) is checked.
        for (case, path) in [
            ("existing", "/proc"),
            ("missing, under procfs", "/proc/portmon-no-such-dir/x"),
        ] {
            match check_bpffs(Path::new(path)) {
                Err(PinError::NotBpffs { path: found }) => {
                    assert_eq!(found, Path::new("/proc"), "case {case}");
                    let message = PinError::NotBpffs { path: found }.to_string();
                    assert!(
                        message.contains("mount -t bpf bpf /sys/fs/bpf")
                            && message.contains("--no-pin"),
                        "case {case}: the message names the fix: {message}"
                    );
                }
                other => panic!("case {case}: expected NotBpffs, got {other:?}"),
            }
        }
    }
}
