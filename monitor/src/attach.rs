//! Attaching the loaded programs to interfaces: XDP for ingress, TC (tcx on 6.6+,
//! netlink clsact before) for egress. Links are owned by the loaded programs and detach
//! when the [`crate::dataplane::DataPlane`] is dropped.

use aya::{
    programs::{
        LinkOrder, ProgramError, TcAttachType, XdpMode as KernelXdpMode,
        tc::{self, NlOptions, SchedClassifierLinkId, TcAttachOptions},
        xdp::XdpLinkId,
    },
    util::KernelVersion,
};

use crate::dataplane::{DataPlane, LoadError};

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
