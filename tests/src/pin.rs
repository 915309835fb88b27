//! A pin root of a test's own on bpffs: `/sys/fs/bpf/portmon-test-<pid>-<n>`, so that tests
//! pinning in parallel never meet, removed with everything under it on drop (unpinning the
//! links detaches whatever no process still holds), also when a test panics.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, Result};

/// Where bpffs is mounted.
pub const BPFFS: &str = "/sys/fs/bpf";

/// A unique pin root, removed on drop.
#[derive(Debug)]
pub struct PinRoot {
    path: PathBuf,
}

/// Mounts bpffs at [`BPFFS`] unless it is mounted already (tests pin, so they need it).
///
/// # Errors
/// When the mount fails (not root).
pub fn ensure_bpffs() -> Result<()> {
    if portmon::pin::check_bpffs(Path::new(BPFFS)).is_ok() {
        return Ok(());
    }
    nix::mount::mount(
        Some("bpf"),
        BPFFS,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("mounting bpffs at {BPFFS} (run as root)"))
}

impl PinRoot {
    /// Makes sure bpffs is mounted and picks a fresh root (not created: portmon makes it).
    ///
    /// # Errors
    /// When bpffs cannot be mounted.
    pub fn new() -> Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        ensure_bpffs()?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = Path::new(BPFFS).join(format!("portmon-test-{}-{n}", std::process::id()));
        // A leftover of a crashed run with a recycled pid would be reused: start clean.
        let _ = std::fs::remove_dir_all(&path);
        Ok(Self { path })
    }

    /// The root, for `--pin-dir`.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root as text, for command lines.
    #[must_use]
    pub fn arg(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Every pin under the root (links and maps), sorted, relative to it.
    #[must_use]
    pub fn pins(&self) -> Vec<String> {
        let mut found = Vec::new();
        let mut pending = vec![self.path.clone()];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else if let Ok(relative) = path.strip_prefix(&self.path) {
                    found.push(relative.to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        found
    }
}

impl Drop for PinRoot {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!(
                "removing the test pin root {}: {error}",
                self.path.display()
            );
        }
    }
}
