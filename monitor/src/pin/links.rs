//! Attaching through pinned links: a link a previous daemon pinned is moved to the newly
//! loaded program (`BPF_LINK_UPDATE`, atomic: the hook never runs without a program and
//! never runs two), otherwise the program is attached and its new link pinned.
//!
//! Only `bpf_link`s can be pinned: XDP links (Linux 5.9+, which portmon requires) and tcx
//! links (6.6+). A clsact filter (TC before 6.6) is not a link: it detaches with the process
//! and is attached afresh at the next start, so TC egress counting has a gap across a
//! restart there (the pinned maps still carry the totals).
//!
//! The XDP mode is part of the pin name (`link_xdp_native`, `link_xdp_generic`) because the
//! kernel's link info does not report it.

use std::{io, path::Path};

use aya::programs::{
    ProgramError, TcAttachType,
    links::{FdLink, Link as _, LinkError, PinnedLink},
    tc::SchedClassifierLink,
    xdp::XdpLink,
};

use super::PinDir;
use crate::{
    attach::{self, AttachError, TcMechanism, XdpMode, XdpModeInUse},
    dataplane::{DataPlane, LoadError},
};

/// Whether an attachment continues a pinned link or is new.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A pinned link now runs the newly loaded program.
    Reused,
    /// Attached now (and pinned when it is a link).
    Attached,
}

/// Errors while attaching through pins.
#[derive(Debug, thiserror::Error)]
pub enum LinkPinError {
    /// The attachment itself failed.
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// The program is missing.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The new link could not be pinned.
    #[error("pinning the {hook} link of {interface} at {path}: {source}")]
    Pin {
        /// The hook.
        hook: String,
        /// The interface.
        interface: String,
        /// The pin path.
        path: String,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Why a pinned link could not be reused.
#[derive(Debug, thiserror::Error)]
enum ReuseError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// The pin name's hook part of an XDP link in `mode` (`xdp_native`).
#[must_use]
pub fn xdp_hook(mode: XdpModeInUse) -> String {
    format!("xdp_{}", mode.as_str())
}

/// The pin name's hook part of a TC link (`tc_ingress`, `tc_egress`).
#[must_use]
pub fn tc_hook(attach_type: TcAttachType) -> &'static str {
    match attach_type {
        TcAttachType::Ingress => "tc_ingress",
        TcAttachType::Egress => "tc_egress",
        TcAttachType::Custom(_) => "tc_custom",
    }
}

fn unpin(interface: &str, path: &Path) {
    if let Err(error) = std::fs::remove_file(path)
        && error.kind() != io::ErrorKind::NotFound
    {
        log::error!("{interface}: unpinning {}: {error}", path.display());
    }
}

fn pin_error(
    hook: &str,
    interface: &str,
    path: &Path,
) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> LinkPinError {
    let (hook, interface, path) = (hook.to_owned(), interface.to_owned(), path.display());
    let path = path.to_string();
    move |source| LinkPinError::Pin {
        hook,
        interface,
        path,
        source,
    }
}

/// Attaches the XDP program to `interface`, reusing the pinned link when there is one.
///
/// # Errors
/// The attachment or the pinning of a new link failed.
pub fn attach_xdp(
    data_plane: &mut DataPlane,
    interface: &str,
    mode: XdpMode,
    pins: &PinDir,
) -> Result<(XdpModeInUse, Origin), LinkPinError> {
    for in_use in [XdpModeInUse::Native, XdpModeInUse::Generic] {
        let path = pins.link_path(&xdp_hook(in_use));
        if std::fs::symlink_metadata(&path).is_err() {
            continue;
        }
        let wanted = match mode {
            XdpMode::Auto => true,
            XdpMode::Native => in_use == XdpModeInUse::Native,
            XdpMode::Generic => in_use == XdpModeInUse::Generic,
        };
        if !wanted {
            log::warn!(
                "{interface}: the pinned XDP link is in {} mode, not the mode asked for: \
                 detaching it to attach anew",
                in_use.as_str()
            );
            unpin(interface, &path);
            continue;
        }
        match reuse_xdp(data_plane, &path) {
            Ok(()) => return Ok((in_use, Origin::Reused)),
            Err(error) => {
                // ENOLINK: the interface the link was made for is gone.
                log::warn!(
                    "{interface}: cannot reuse the pinned XDP link {}: {error}; detaching it \
                     to attach anew",
                    path.display()
                );
                unpin(interface, &path);
            }
        }
    }
    let (in_use, id) = attach::attach_xdp_link(data_plane, interface, mode)?;
    let hook = xdp_hook(in_use);
    let path = pins.link_path(&hook);
    let link = data_plane
        .xdp_mut()?
        .take_link(id)
        .map_err(|error| pin_error(&hook, interface, &path)(error.into()))?;
    // Dropping `link` on an error below detaches it, as an error must.
    let fd_link =
        FdLink::try_from(link).map_err(|error| pin_error(&hook, interface, &path)(error.into()))?;
    let pinned = fd_link
        .pin(&path)
        .map_err(|error| pin_error(&hook, interface, &path)(error.into()))?;
    data_plane.hold_link(pinned.into());
    Ok((in_use, Origin::Attached))
}

fn reuse_xdp(data_plane: &mut DataPlane, path: &Path) -> Result<(), ReuseError> {
    let link = XdpLink::try_from(FdLink::from(PinnedLink::from_pin(path)?))?;
    let xdp = data_plane.xdp_mut()?;
    let id = xdp.attach_to_link(link)?;
    // Held like a new pinned link, so that the interface's hooks can be detached alone
    // (daemon/hooks.rs: unpin, then `DataPlane::release_links`).
    let link = FdLink::try_from(xdp.take_link(id)?)?;
    data_plane.hold_link(link);
    Ok(())
}

fn reuse_tc(
    data_plane: &mut DataPlane,
    program: &'static str,
    path: &Path,
) -> Result<(), ReuseError> {
    let link = SchedClassifierLink::try_from(FdLink::from(PinnedLink::from_pin(path)?))?;
    let classifier = data_plane.classifier_mut(program)?;
    let id = classifier.attach_to_link(link)?;
    let link = FdLink::try_from(classifier.take_link(id)?)?;
    data_plane.hold_link(link);
    Ok(())
}

/// Attaches the TC program `program` to `interface` on `attach_type`, reusing the pinned
/// tcx link when there is one.
///
/// # Errors
/// The attachment or the pinning of a new link failed.
pub fn attach_tc(
    data_plane: &mut DataPlane,
    interface: &str,
    program: &'static str,
    attach_type: TcAttachType,
    pins: &PinDir,
) -> Result<(TcMechanism, Origin), LinkPinError> {
    let hook = tc_hook(attach_type);
    let path = pins.link_path(hook);
    if std::fs::symlink_metadata(&path).is_ok() {
        match reuse_tc(data_plane, program, &path) {
            Ok(()) => return Ok((TcMechanism::Tcx, Origin::Reused)),
            Err(error) => {
                log::warn!(
                    "{interface}: cannot reuse the pinned {hook} link {}: {error}; detaching it \
                     to attach anew",
                    path.display()
                );
                unpin(interface, &path);
            }
        }
    }
    let (mechanism, id) = attach::attach_tc_link(data_plane, interface, program, attach_type)?;
    if mechanism == TcMechanism::Clsact {
        log::info!(
            "{interface}: {hook} attached through clsact, which cannot be pinned: it detaches \
             with this process"
        );
        return Ok((mechanism, Origin::Attached));
    }
    let link = data_plane
        .classifier_mut(program)?
        .take_link(id)
        .map_err(|error| pin_error(hook, interface, &path)(error.into()))?;
    let fd_link =
        FdLink::try_from(link).map_err(|error| pin_error(hook, interface, &path)(error.into()))?;
    let pinned = fd_link
        .pin(&path)
        .map_err(|error| pin_error(hook, interface, &path)(error.into()))?;
    data_plane.hold_link(pinned.into());
    Ok((mechanism, Origin::Attached))
}

/// Ids of the programs that portmon's pinned XDP links under `<root>/<interface>/` run
/// (any layout): the XDP hook is "taken" by them only in appearance, since a restarted
/// daemon takes them over.
#[must_use]
pub fn pinned_xdp_programs(root: &Path, interface: &str) -> Vec<u32> {
    let Ok(layouts) = std::fs::read_dir(root.join(interface)) else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    for layout in layouts.flatten() {
        for mode in [XdpModeInUse::Native, XdpModeInUse::Generic] {
            let path = layout.path().join(format!("link_{}", xdp_hook(mode)));
            let Ok(pinned) = PinnedLink::from_pin(&path) else {
                continue;
            };
            let link = FdLink::from(pinned);
            if let Ok(info) = link.info() {
                ids.push(info.program_id());
            }
            // Closing our descriptor leaves the pinned link attached.
            let _ = link.detach();
        }
    }
    ids
}
