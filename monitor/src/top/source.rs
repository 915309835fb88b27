//! Where the live view's snapshots come from: a running daemon over HTTP, or, when none
//! answers and `--iface` is given, programs `portmon top` loads and attaches itself. Both
//! give the same [`Snapshot`], built by the same builder as the daemon's endpoint.

use std::time::{Duration, SystemTime};

use anyhow::Context as _;

use super::http::{Endpoint, FetchError};
use crate::{
    attach::{Hook, XdpMode},
    config::defaults,
    daemon::{
        interface::{AttachOptions, Interface},
        netlink,
    },
    dataplane::LoadOptions,
    metrics::{
        View,
        budget::{BudgetSettings, PortClasses},
    },
    ports::Policy,
    snapshot::{self, Snapshot},
};

/// Programs attached by `portmon top` itself; detached when dropped.
pub struct Local {
    interfaces: Vec<Interface>,
    policy: Policy,
    classes: PortClasses,
    interval: Duration,
}

impl Local {
    /// Loads and attaches the programs to every interface of `names` (native XDP where
    /// the driver has it, TC egress).
    ///
    /// # Errors
    /// A failed load or attach; whatever was attached is detached again.
    pub fn attach(names: &[String], interval: Duration) -> anyhow::Result<Self> {
        let options = AttachOptions {
            hook: Hook::Auto,
            xdp_mode: XdpMode::Auto,
            egress: true,
            load: LoadOptions::default(),
            // Nothing of a viewer may outlive it: no pins, the programs go when it exits.
            pin_root: None,
        };
        let links = netlink::links().context("listing the network interfaces")?;
        let policy = Policy::builtin();
        let mut interfaces = Vec::with_capacity(names.len());
        for name in names {
            let link = links
                .iter()
                .find(|link| &link.name == name)
                .with_context(|| format!("portmon top: no interface {name}"))?;
            // The kernel log stream is only for `portmon run --debug-kernel`.
            let (interface, _logger) =
                Interface::attach(link, options, &policy).with_context(|| {
                    format!(
                        "portmon top attaching to {name} itself (no daemon answered); it needs \
                     root, or CAP_BPF and CAP_NET_ADMIN and CAP_PERFMON"
                    )
                })?;
            interfaces.push(interface);
        }
        let classes = PortClasses::new(&policy);
        Ok(Self {
            interfaces,
            policy,
            classes,
            interval,
        })
    }

    /// Reads the counters now and builds a snapshot from them.
    #[must_use]
    pub fn sample(&self) -> Snapshot {
        let budget = BudgetSettings {
            top_k: defaults::TOP_K,
            promote_min_packets: defaults::PROMOTE_MIN_PACKETS,
        };
        for interface in &self.interfaces {
            interface.read(&self.classes, budget);
        }
        let view = View {
            policy: &self.policy,
            interfaces: self
                .interfaces
                .iter()
                .map(|interface| interface.view(&self.classes, false))
                .collect(),
            series_budget: 0,
            alerts: None,
        };
        snapshot::build(&view, self.interval, SystemTime::now())
    }

    fn describe(&self) -> String {
        let names: Vec<&str> = self.interfaces.iter().map(Interface::name).collect();
        format!("attached by portmon top to {}", names.join(", "))
    }
}

/// A source of snapshots.
pub enum Source {
    /// A running daemon.
    Http(Endpoint),
    /// Programs attached by this process.
    Local(Local),
}

impl Source {
    /// The daemon at `url` if it answers; else, when `ifaces` is not empty, programs
    /// attached to them. Returns the first snapshot too.
    ///
    /// # Errors
    /// When no daemon answers and no `--iface` is given (the message says what to do), the
    /// daemon's answer is unusable, or attaching fails.
    pub fn open(
        url: &str,
        ifaces: &[String],
        interval: Duration,
    ) -> anyhow::Result<(Self, Snapshot)> {
        let endpoint = Endpoint::parse(url)?;
        match endpoint.fetch() {
            Ok(snapshot) => Ok((Source::Http(endpoint), snapshot)),
            Err(FetchError::Refused { url }) if !ifaces.is_empty() => {
                let local = Local::attach(ifaces, interval)
                    .with_context(|| format!("no daemon answers at {url}"))?;
                let snapshot = local.sample();
                Ok((Source::Local(local), snapshot))
            }
            Err(error @ FetchError::Refused { .. }) => Err(anyhow::anyhow!(
                "{error}: start the daemon (sudo portmon run --iface IFACE), point --url at \
                 its --listen address, or pass --iface IFACE to let portmon top attach itself"
            )),
            Err(error) => Err(error.into()),
        }
    }

    /// The next snapshot.
    ///
    /// # Errors
    /// When the daemon cannot be reached or answers something unusable.
    pub fn sample(&self) -> Result<Snapshot, FetchError> {
        match self {
            Source::Http(endpoint) => endpoint.fetch(),
            Source::Local(local) => Ok(local.sample()),
        }
    }

    /// What the header says about the source.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Source::Http(endpoint) => endpoint.url.clone(),
            Source::Local(local) => local.describe(),
        }
    }
}
