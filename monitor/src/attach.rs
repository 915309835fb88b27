//! Attaching the loaded programs to interfaces: XDP for ingress (or TC ingress where the
//! XDP hook belongs to another program, see [`Hook`]), TC (tcx on 6.6+, netlink clsact
//! before) for egress. Links are owned by the loaded programs and detach when the
//! [`crate::dataplane::DataPlane`] is dropped, or one by one through [`detach`]; with a
//! pin directory they are pinned there instead ([`crate::pin::links`]).

use std::path::PathBuf;

use aya::{
    programs::{
        LinkOrder, ProgramError, TcAttachType, XdpMode as KernelXdpMode,
        tc::{self, NlOptions, SchedClassifierLinkId, TcAttachOptions},
        xdp::XdpLinkId,
    },
    util::KernelVersion,
};
use serde::Deserialize;

use crate::{
    daemon::netlink::XdpProgram,
    dataplane::{DataPlane, LoadError, TC_EGRESS_PROGRAM, TC_INGRESS_PROGRAM},
    pin::{
        PinDir,
        links::{self as pinned, LinkPinError, Origin},
    },
};

/// Where ingress traffic is counted (`--hook`).
///
/// `auto` is the default: portmon never replaces another XDP program, and a monitor that
/// refuses to start on a host where a load balancer or firewall owns XDP helps nobody.
/// It counts on XDP where the hook is free (earliest, cheapest) and on TC ingress
/// otherwise, and says which in the log and in `portmon_attached`. `xdp` is for those who
/// would rather fail than count later in the stack (after the other program's verdict).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// XDP where the hook is free, else TC ingress (tcx ordered first).
    #[default]
    Auto,
    /// XDP only; an interface whose XDP hook is taken is refused.
    Xdp,
    /// TC ingress only (tcx ordered first, clsact before 6.6).
    Tc,
}

/// One program attached to one interface, with what it takes to detach it.
#[derive(Debug)]
pub struct Attached {
    /// `xdp`, `tc_ingress`, `tc_egress` (the `hook` label of `portmon_attached`).
    pub hook: &'static str,
    /// `native`, `generic`, `tcx`, `clsact` (the `mode` label).
    pub mode: &'static str,
    /// A link pinned by an earlier run now runs this process's program.
    pub reused: bool,
    link: LinkHandle,
}

#[derive(Debug)]
enum LinkHandle {
    Xdp(XdpLinkId),
    Tc(&'static str, SchedClassifierLinkId),
    /// Pinned at this path and held by the data plane (see [`DataPlane::release_links`]).
    Pinned(PathBuf),
    /// A clsact filter attached while pinning (not a link, so not pinned): it detaches
    /// with the process.
    Clsact,
}

/// How the XDP program is asked to attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// Native (driver) mode, falling back to generic with a warning.
    Auto,
    /// Driver mode only.
    Native,
    /// Generic (skb) mode only.
    Generic,
}

/// The XDP mode actually in use on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpModeInUse {
    /// Driver mode.
    Native,
    /// Generic (skb) mode.
    Generic,
}

impl XdpModeInUse {
    /// The label used in metrics and logs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            XdpModeInUse::Native => "native",
            XdpModeInUse::Generic => "generic",
        }
    }
}

/// The TC mechanism a classifier was attached with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcMechanism {
    /// A tcx link (kernel 6.6+): owned by portmon, gone when portmon is.
    Tcx,
    /// A netlink filter on the clsact qdisc (older kernels).
    Clsact,
}

impl TcMechanism {
    /// The label used in metrics and logs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            TcMechanism::Tcx => "tcx",
            TcMechanism::Clsact => "clsact",
        }
    }
}

/// Errors while attaching.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The program could not be found or loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// `--hook xdp` on an interface whose XDP hook another program holds.
    #[error(
        "interface {interface} already has XDP program id {id} attached ({mode} mode); \
         portmon never replaces another program. Count on TC ingress instead with \
         --hook auto (or tc), or detach it first (see it with `bpftool prog show id {id}`)"
    )]
    XdpTaken {
        /// The interface.
        interface: String,
        /// The other program.
        id: u32,
        /// Its mode.
        mode: &'static str,
    },
    /// Attaching through the pin directory failed.
    #[error(transparent)]
    Pinned(Box<LinkPinError>),
    /// A pinned link could not be unpinned.
    #[error("unpinning {}: {source}", path.display())]
    Unpin {
        /// The pin.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The kernel refused to detach.
    #[error("detaching {hook}: {source}")]
    Detach {
        /// `xdp`, `tc_ingress`, `tc_egress`.
        hook: &'static str,
        /// Why.
        source: Box<ProgramError>,
    },
    /// The kernel refused the attachment.
    #[error("attaching {hook} to {interface}: {source}")]
    Attach {
        /// `xdp native`, `xdp generic`, `tc egress`...
        hook: String,
        /// The interface.
        interface: String,
        /// Why (boxed: aya's error is large and this travels through `Result`s).
        source: Box<ProgramError>,
    },
}

/// Attaches the XDP ingress program to `interface` and reports the mode in use.
///
/// # Errors
/// When no requested mode can attach; with [`XdpMode::Auto`] the native error is logged
/// and the generic one returned.
pub fn attach_xdp(
    data_plane: &mut DataPlane,
    interface: &str,
    mode: XdpMode,
) -> Result<XdpModeInUse, AttachError> {
    attach_xdp_link(data_plane, interface, mode).map(|(in_use, _)| in_use)
}

/// [`attach_xdp`], also returning the link (for pinning, [`crate::pin::links`]).
///
/// # Errors
/// As [`attach_xdp`].
pub fn attach_xdp_link(
    data_plane: &mut DataPlane,
    interface: &str,
    mode: XdpMode,
) -> Result<(XdpModeInUse, XdpLinkId), AttachError> {
    let xdp = data_plane.xdp_mut()?;
    let attempt = |xdp: &mut aya::programs::Xdp, in_use: XdpModeInUse| {
        let flags = match in_use {
            XdpModeInUse::Native => KernelXdpMode::Driver,
            XdpModeInUse::Generic => KernelXdpMode::Skb,
        };
        xdp.attach(interface, flags)
            .map(|link| (in_use, link))
            .map_err(|source| AttachError::Attach {
                hook: format!("xdp {}", in_use.as_str()),
                interface: interface.to_owned(),
                source: Box::new(source),
            })
    };
    match mode {
        XdpMode::Native => attempt(xdp, XdpModeInUse::Native),
        XdpMode::Generic => attempt(xdp, XdpModeInUse::Generic),
        XdpMode::Auto => attempt(xdp, XdpModeInUse::Native).or_else(|native_error| {
            log::warn!("{native_error}; falling back to generic XDP on {interface}");
            attempt(xdp, XdpModeInUse::Generic)
        }),
    }
}

/// Attaches the TC program `program` to `interface` on `attach_type` (egress or
/// ingress): as a tcx link on kernels 6.6 and later, through a clsact qdisc before.
///
/// # Errors
/// When the kernel refuses the attachment.
pub fn attach_tc(
    data_plane: &mut DataPlane,
    interface: &str,
    program: &'static str,
    attach_type: TcAttachType,
) -> Result<TcMechanism, AttachError> {
    attach_tc_link(data_plane, interface, program, attach_type).map(|(mechanism, _)| mechanism)
}

/// [`attach_tc`], also returning the link (for pinning, [`crate::pin::links`]).
///
/// # Errors
/// As [`attach_tc`].
pub fn attach_tc_link(
    data_plane: &mut DataPlane,
    interface: &str,
    program: &'static str,
    attach_type: TcAttachType,
) -> Result<(TcMechanism, SchedClassifierLinkId), AttachError> {
    let classifier = data_plane.classifier_mut(program)?;
    let hook = || format!("tc {attach_type:?}").to_lowercase();
    let tcx = KernelVersion::current().is_ok_and(|kernel| kernel >= KernelVersion::new(6, 6, 0));
    let (options, mechanism) = if tcx {
        // Ordered first so that no other tcx program can hide a packet from us.
        (
            TcAttachOptions::TcxOrder(LinkOrder::first()),
            TcMechanism::Tcx,
        )
    } else {
        if let Err(error) = tc::qdisc_add_clsact(interface) {
            // EEXIST: the qdisc is already there, which is what we need.
            log::debug!("adding clsact to {interface}: {error} (an existing qdisc is fine)");
        }
        (
            TcAttachOptions::Netlink(NlOptions::default()),
            TcMechanism::Clsact,
        )
    };
    let link = classifier
        .attach_with_options(interface, attach_type, options)
        .map_err(|source| AttachError::Attach {
            hook: hook(),
            interface: interface.to_owned(),
            source: Box::new(source),
        })?;
    Ok((mechanism, link))
}

/// Attaches the program counting ingress on `interface` as `hook` asks; `taken` is the
/// XDP program another party holds there, if any (from the netlink dump). With
/// [`Hook::Auto`] a taken hook falls back to TC ingress, and so does an XDP attach the
/// kernel refuses in both modes (with [`XdpMode::Auto`]; an explicit mode is a request
/// for XDP, whose failure is returned); the log says why.
///
/// # Errors
/// [`AttachError::XdpTaken`] for [`Hook::Xdp`] on a taken hook; the kernel's refusal
/// otherwise (with `auto`, of TC ingress after XDP failed).
pub fn attach_ingress(
    data_plane: &mut DataPlane,
    interface: &str,
    taken: Option<XdpProgram>,
    hook: Hook,
    xdp_mode: XdpMode,
    pins: Option<&PinDir>,
) -> Result<Attached, AttachError> {
    let xdp = |data_plane: &mut DataPlane| {
        let attached = match pins {
            Some(pins) => pinned::attach_xdp(data_plane, interface, xdp_mode, pins)
                .map_err(|error| AttachError::Pinned(Box::new(error)))
                .map(|(mode, origin)| Attached {
                    hook: "xdp",
                    mode: mode.as_str(),
                    reused: origin == Origin::Reused,
                    link: LinkHandle::Pinned(pins.link_path(&pinned::xdp_hook(mode))),
                })?,
            None => {
                attach_xdp_link(data_plane, interface, xdp_mode).map(|(mode, link)| Attached {
                    hook: "xdp",
                    mode: mode.as_str(),
                    reused: false,
                    link: LinkHandle::Xdp(link),
                })?
            }
        };
        // Never two programs counting ingress: a TC ingress link pinned by an earlier run
        // (the XDP hook was taken then) goes.
        unpin_stale(pins, interface, &[pinned::tc_hook(TcAttachType::Ingress)]);
        Ok(attached)
    };
    let tc = |data_plane: &mut DataPlane| {
        let attached = attach_tc_any(data_plane, interface, TcAttachType::Ingress, pins)?;
        let stale = [XdpModeInUse::Native, XdpModeInUse::Generic].map(pinned::xdp_hook);
        unpin_stale(pins, interface, &[&stale[0], &stale[1]]);
        Ok(attached)
    };
    match (hook, taken) {
        (Hook::Tc, _) => tc(data_plane),
        (Hook::Xdp, Some(XdpProgram { id, mode })) => Err(AttachError::XdpTaken {
            interface: interface.to_owned(),
            id,
            mode,
        }),
        (Hook::Xdp, None) => xdp(data_plane),
        (Hook::Auto, Some(XdpProgram { id, mode })) => {
            log::info!(
                "{interface}: XDP program id {id} ({mode} mode) holds the XDP hook and portmon \
                 never replaces it: counting ingress on TC ingress instead (--hook auto)"
            );
            tc(data_plane)
        }
        // An explicit --xdp-mode is a request for XDP: its failure is the answer.
        (Hook::Auto, None) if xdp_mode != XdpMode::Auto => xdp(data_plane),
        (Hook::Auto, None) => xdp(data_plane).or_else(|error| {
            log::warn!(
                "{interface}: {error}; counting ingress on TC ingress instead (--hook auto)"
            );
            tc(data_plane)
        }),
    }
}

/// Removes the pins of `hooks` left by an earlier run (their links detach with the pin).
fn unpin_stale(pins: Option<&PinDir>, interface: &str, hooks: &[&str]) {
    let Some(pins) = pins else {
        return;
    };
    for hook in hooks {
        let path = pins.link_path(hook);
        match std::fs::remove_file(&path) {
            Ok(()) => log::info!(
                "{interface}: removed the {hook} link an earlier run pinned ({}): ingress is \
                 counted once, on the hook chosen now",
                path.display()
            ),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => log::error!("{interface}: unpinning {}: {error}", path.display()),
        }
    }
}

/// Attaches the TC program of `attach_type`, through the pin directory when there is one.
fn attach_tc_any(
    data_plane: &mut DataPlane,
    interface: &str,
    attach_type: TcAttachType,
    pins: Option<&PinDir>,
) -> Result<Attached, AttachError> {
    let (hook, program) = match attach_type {
        TcAttachType::Ingress => ("tc_ingress", TC_INGRESS_PROGRAM),
        _ => ("tc_egress", TC_EGRESS_PROGRAM),
    };
    match pins {
        Some(pins) => pinned::attach_tc(data_plane, interface, program, attach_type, pins)
            .map_err(|error| AttachError::Pinned(Box::new(error)))
            .map(|(mechanism, origin)| Attached {
                hook,
                mode: mechanism.as_str(),
                reused: origin == Origin::Reused,
                link: match mechanism {
                    TcMechanism::Tcx => {
                        LinkHandle::Pinned(pins.link_path(pinned::tc_hook(attach_type)))
                    }
                    TcMechanism::Clsact => LinkHandle::Clsact,
                },
            }),
        None => {
            attach_tc_link(data_plane, interface, program, attach_type).map(|(mechanism, link)| {
                Attached {
                    hook,
                    mode: mechanism.as_str(),
                    reused: false,
                    link: LinkHandle::Tc(program, link),
                }
            })
        }
    }
}

/// Attaches the TC egress program to `interface`, through the pin directory when there is
/// one.
///
/// # Errors
/// When the kernel refuses.
pub fn attach_egress(
    data_plane: &mut DataPlane,
    interface: &str,
    pins: Option<&PinDir>,
) -> Result<Attached, AttachError> {
    attach_tc_any(data_plane, interface, TcAttachType::Egress, pins)
}

/// Detaches one attachment, keeping the loaded programs and maps for the next attach.
/// A link whose interface is gone is already inert (the kernel cleared its device in
/// `dev_xdp_uninstall()`/`tcx_uninstall()`): closing it is all that is left.
///
/// # Errors
/// When the program is missing (a build problem) or the kernel refuses the detach.
pub fn detach(data_plane: &mut DataPlane, attached: Attached) -> Result<(), AttachError> {
    let hook = attached.hook;
    let result = match attached.link {
        LinkHandle::Xdp(link) => data_plane.xdp_mut()?.detach(link),
        LinkHandle::Tc(program, link) => data_plane.classifier_mut(program)?.detach(link),
        // Unpinned here; the data plane closes its descriptor (`release_links`).
        LinkHandle::Pinned(path) => {
            return match std::fs::remove_file(&path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    Err(AttachError::Unpin {
                        path,
                        source: error,
                    })
                }
                _ => Ok(()),
            };
        }
        LinkHandle::Clsact => return Ok(()),
    };
    result.map_err(|source| AttachError::Detach {
        hook,
        source: Box::new(source),
    })
}
