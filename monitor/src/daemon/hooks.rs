//! The hooks of one interface: attaching its loaded programs (ingress as `--hook` asks,
//! TC egress unless `--no-egress`), detaching them, and doing it again on a new ifindex
//! when the interface is deleted and comes back, with the same programs and counter map
//! so that its counters continue.

use anyhow::Context as _;

use super::netlink::Link;
use crate::{
    attach::{self, Attached, Hook, XdpMode},
    dataplane::{DataPlane, LoadOptions},
    metrics::Attachment,
    pin::PinDir,
};

/// How to attach to an interface.
#[derive(Clone, Copy, Debug)]
pub struct AttachOptions {
    /// Where ingress is counted.
    pub hook: Hook,
    /// XDP mode asked for.
    pub xdp_mode: XdpMode,
    /// Whether to attach the TC egress program.
    pub egress: bool,
    /// Map sizing and kernel debug switch.
    pub load: LoadOptions,
    /// Pin root (`--pin-dir`); `None` with `--no-pin`.
    pub pin_root: Option<&'static std::path::Path>,
}

/// The attachments in place on one interface (none once its link is gone).
#[derive(Debug, Default)]
pub struct Hooks {
    attached: Vec<Attached>,
    /// The ifindex they are attached to; `None` while the link is gone.
    ifindex: Option<u32>,
    /// What was attached last, kept while the link is gone so that `portmon_attached`
    /// can say 0 for exactly those hooks.
    last: Vec<Attachment>,
}

impl Hooks {
    /// Attaches `data_plane`'s programs to `link`, through `pins` when pinning (a link
    /// pinned by an earlier run is taken over, a new one pinned). On error, what was
    /// attached by this call is detached again (the data plane stays loaded).
    ///
    /// # Errors
    /// A refused attachment; the message names the interface and a fix.
    pub fn attach(
        data_plane: &mut DataPlane,
        link: &Link,
        options: AttachOptions,
        pins: Option<&PinDir>,
    ) -> anyhow::Result<Self> {
        let name = link.name.as_str();
        let mut hooks = Self {
            ifindex: Some(link.index),
            ..Self::default()
        };
        let ingress = attach::attach_ingress(
            data_plane,
            name,
            link.xdp.first().copied(),
            options.hook,
            options.xdp_mode,
            pins,
        )
        .with_context(|| match (options.hook, options.xdp_mode) {
            (Hook::Xdp | Hook::Auto, XdpMode::Native) => format!(
                "attaching XDP to {name} in native mode; the driver may not support it: \
                 try --xdp-mode generic or auto"
            ),
            (Hook::Xdp, _) => format!("attaching XDP to {name}"),
            (Hook::Auto, _) => format!("attaching the ingress program to {name}"),
            (Hook::Tc, _) => format!("attaching the TC ingress program to {name}"),
        })?;
        hooks.attached.push(ingress);
        if options.egress {
            match attach::attach_egress(data_plane, name, pins) {
                Ok(egress) => hooks.attached.push(egress),
                Err(error) => {
                    hooks.detach(data_plane);
                    return Err(error).with_context(|| {
                        format!(
                            "attaching the TC egress program to {name} (or run with --no-egress)"
                        )
                    });
                }
            }
        }
        hooks.last = hooks.attachments();
        Ok(hooks)
    }

    /// Detaches everything: unpins pinned links and closes them (a failure is logged: the
    /// link is closed either way, and a link whose interface is gone is inert already).
    /// The maps stay pinned, for the next attach or the next run.
    pub fn detach(&mut self, data_plane: &mut DataPlane) {
        for attached in self.attached.drain(..) {
            let hook = attached.hook;
            if let Err(error) = attach::detach(data_plane, attached) {
                log::warn!("detaching {hook}: {error}");
            }
        }
        data_plane.release_links();
        self.ifindex = None;
    }

    /// The hooks in place now.
    #[must_use]
    pub fn attachments(&self) -> Vec<Attachment> {
        self.attached
            .iter()
            .map(|attached| Attachment {
                hook: attached.hook,
                mode: attached.mode,
            })
            .collect()
    }

    /// The hooks attached last, also while the link is gone.
    #[must_use]
    pub fn last(&self) -> &[Attachment] {
        &self.last
    }

    /// The ifindex attached to, `None` while the link is gone.
    #[must_use]
    pub fn ifindex(&self) -> Option<u32> {
        self.ifindex
    }

    /// `xdp (generic), tc_egress (tcx)`.
    #[must_use]
    pub fn describe(&self) -> String {
        let described: Vec<String> = self
            .attached
            .iter()
            .map(|a| {
                if a.reused {
                    format!("{} ({}, pinned link taken over)", a.hook, a.mode)
                } else {
                    format!("{} ({})", a.hook, a.mode)
                }
            })
            .collect();
        described.join(", ")
    }
}
