//! `portmon detach`: removes everything portmon pinned under a pin root, interface by
//! interface. Unpinning a link that no process holds detaches its program; unpinning the
//! maps frees them. Idempotent: nothing left is reported, not an error.

use std::{
    io,
    path::{Path, PathBuf},
};

use aya::programs::links::{FdLink, Link as _, LinkType, PinnedLink};

use super::{PinError, check_bpffs, lock, remove_all, remove_root_if_empty};

/// One removed pin, described for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The interface.
    pub interface: String,
    /// The pin.
    pub path: PathBuf,
    /// `XDP link, program 42`, `map`...
    pub what: String,
}

impl std::fmt::Display for Removed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: removed {} ({})",
            self.interface,
            self.path.display(),
            self.what
        )
    }
}

/// What `portmon detach` did.
#[derive(Debug, Default)]
pub struct Report {
    /// Every pin removed.
    pub removed: Vec<Removed>,
    /// Interface directories removed.
    pub interfaces: Vec<String>,
    /// Interfaces asked for that had nothing pinned.
    pub missing: Vec<String>,
}

/// Errors of `portmon detach`.
#[derive(Debug, thiserror::Error)]
pub enum DetachError {
    /// Preparing or removing pins failed.
    #[error(transparent)]
    Pin(#[from] PinError),
}

/// Describes a pin before removing it.
fn describe(path: &Path) -> String {
    let is_link = path
        .file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with("link_"));
    if path.is_dir() {
        return "directory".to_owned();
    }
    if !is_link {
        return "map".to_owned();
    }
    let Ok(pinned) = PinnedLink::from_pin(path) else {
        return "link".to_owned();
    };
    let link = FdLink::from(pinned);
    let text = match link.info() {
        Ok(info) => {
            let kind = match info.link_type() {
                Ok(LinkType::Xdp) => "XDP link",
                Ok(LinkType::Tcx) => "tcx link",
                _ => "link",
            };
            format!("{kind}, program id {}: detached", info.program_id())
        }
        Err(_) => "link".to_owned(),
    };
    // Only our descriptor closes; the pin is removed next.
    let _ = link.detach();
    text
}

fn interfaces_under(root: &Path) -> Result<Vec<String>, PinError> {
    let entries = std::fs::read_dir(root).map_err(|source| PinError::Io {
        action: "listing",
        path: root.to_owned(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// Removes the pins of `interfaces` (every pinned interface when empty) under `root`.
/// Nothing to remove is not an error: the report says what was not there.
///
/// # Errors
/// The root is not on bpffs, a running portmon holds an interface, or a removal failed.
pub fn detach(root: &Path, interfaces: &[String]) -> Result<Report, DetachError> {
    check_bpffs(root)?;
    let pinned = if root.exists() {
        interfaces_under(root)?
    } else {
        Vec::new()
    };
    let (chosen, missing) = if interfaces.is_empty() {
        (pinned, Vec::new())
    } else {
        interfaces
            .iter()
            .cloned()
            .partition(|interface| pinned.contains(interface))
    };
    let mut report = Report {
        missing,
        ..Report::default()
    };
    for interface in chosen {
        let dir = root.join(&interface);
        // A running daemon keeps its links attached through its own descriptors: refuse
        // rather than pretend they were detached.
        let _lock = lock(&dir)?;
        let mut pins = Vec::new();
        for layout in std::fs::read_dir(&dir)
            .map_err(|source| io_error("listing", &dir, source))?
            .flatten()
        {
            let layout = layout.path();
            match std::fs::read_dir(&layout) {
                Ok(entries) => pins.extend(entries.flatten().map(|entry| entry.path())),
                Err(_) => pins.push(layout),
            }
        }
        pins.sort();
        for path in pins {
            let what = describe(&path);
            remove_all(&path)?;
            report.removed.push(Removed {
                interface: interface.clone(),
                path,
                what,
            });
        }
        remove_all(&dir)?;
        report.interfaces.push(interface);
    }
    remove_root_if_empty(root);
    Ok(report)
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> PinError {
    PinError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}
