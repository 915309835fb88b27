//! Following interfaces that come and go (link events, see [`super::link_events`]).
//!
//! * A link that appears with a selected name (exact, or matching a glob) and is not
//!   monitored yet gets its own data plane, loaded and attached.
//! * A deleted link keeps its [`Interface`]: counters and series stay; `portmon_attached`
//!   says 0. When a link of that name appears again (a new ifindex), the *same* loaded
//!   programs and counter map are attached to it, so its counters continue.
//! * Down and up: the kernel keeps XDP and tcx links on a device that is down (only
//!   unregistering it runs `dev_xdp_uninstall()`/`tcx_uninstall()`, net/core/dev.c), so
//!   nothing is re-attached; the transition is logged and counting resumes by itself.
//! * A monitored link renamed to another name: its programs are detached (its counters
//!   stay under the old name); the new name is then treated like any appearing link.
//! * A failed attach is logged, not fatal, and retried on later events (logged again only
//!   when the error changes).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, PoisonError},
};

use super::{
    Daemon,
    interface::{AttachOptions, Interface},
    kernel_log,
    link_events::{Batch, LinkEvent, LinkEvents},
    netlink::{self, Link},
    selection::Selection,
};
use crate::attach::Hook;

/// What the watcher knows of one monitored interface.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Tracked {
    name: String,
    /// `None` while its link is gone.
    attached_ifindex: Option<u32>,
}

/// What to do about one event.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    /// The monitored link `old` now carries another name: detach it.
    Renamed { old: String, new: String },
    /// The link of a monitored name is back (or new): attach the same programs to it.
    Reattach(Link),
    /// A selected name not monitored yet: load and attach.
    Attach(Link),
    /// A monitored link went up or down (nothing to re-attach).
    UpDown { name: String, up: bool },
    /// The monitored link is gone.
    Gone(String),
}

/// Decides what `event` asks for. `up` holds the last known up state per monitored name.
fn decide(
    event: &LinkEvent,
    tracked: &[Tracked],
    up: &HashMap<String, bool>,
    selection: &Selection,
) -> Vec<Action> {
    let mut actions = Vec::new();
    match event {
        LinkEvent::Changed(link) => {
            if let Some(renamed) = tracked
                .iter()
                .find(|t| t.attached_ifindex == Some(link.index) && t.name != link.name)
            {
                actions.push(Action::Renamed {
                    old: renamed.name.clone(),
                    new: link.name.clone(),
                });
            }
            match tracked.iter().find(|t| t.name == link.name) {
                Some(known)
                    if known.attached_ifindex == Some(link.index)
                        && up.get(&link.name).copied() != Some(link.up) =>
                {
                    actions.push(Action::UpDown {
                        name: link.name.clone(),
                        up: link.up,
                    });
                }
                // Another attribute changed: nothing to do.
                Some(known) if known.attached_ifindex == Some(link.index) => {}
                Some(_) => actions.push(Action::Reattach(link.clone())),
                None if selection.matches(&link.name) => actions.push(Action::Attach(link.clone())),
                None => {}
            }
        }
        LinkEvent::Deleted(link) => {
            if let Some(gone) = tracked
                .iter()
                .find(|t| t.attached_ifindex == Some(link.index))
            {
                actions.push(Action::Gone(gone.name.clone()));
            }
        }
    }
    actions
}

/// The watcher's state between events.
pub struct Watcher {
    selection: Selection,
    options: AttachOptions,
    /// `--cleanup`: pins of interfaces attached later are removed at exit too.
    cleanup: bool,
    up: HashMap<String, bool>,
    /// Names whose attach failed, with the last error (logged once per distinct error).
    pending: BTreeMap<String, String>,
}

impl Watcher {
    /// A watcher for `selection`; `attached` are the links attached at startup,
    /// `failed` the selected ones that could not be attached then (with why).
    #[must_use]
    pub fn new(
        selection: Selection,
        options: AttachOptions,
        cleanup: bool,
        attached: &[Link],
        failed: BTreeMap<String, String>,
    ) -> Self {
        Self {
            selection,
            options,
            cleanup,
            up: attached
                .iter()
                .map(|link| (link.name.clone(), link.up))
                .collect(),
            pending: failed,
        }
    }

    fn tracked(daemon: &Daemon) -> Vec<Tracked> {
        daemon
            .interfaces
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|interface| Tracked {
                name: interface.name().to_owned(),
                attached_ifindex: interface.attached_ifindex(),
            })
            .collect()
    }

    /// Handles one event.
    fn handle(&mut self, daemon: &Daemon, event: &LinkEvent) {
        let tracked = Self::tracked(daemon);
        for action in decide(event, &tracked, &self.up, &self.selection) {
            self.apply(daemon, action);
        }
        if let LinkEvent::Changed(link) = event
            && self.up.contains_key(&link.name)
        {
            self.up.insert(link.name.clone(), link.up);
        }
    }

    fn with_interface(daemon: &Daemon, name: &str, f: impl FnOnce(&Interface)) {
        let interfaces = daemon
            .interfaces
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(interface) = interfaces.iter().find(|i| i.name() == name) {
            f(interface);
        }
    }

    fn apply(&mut self, daemon: &Daemon, action: Action) {
        match action {
            Action::Renamed { old, new } => {
                Self::with_interface(daemon, &old, Interface::detach_gone);
                log::warn!(
                    "{old} was renamed to {new}: detached from it; the counters of {old} stay \
                     exported and continue if a link named {old} appears again"
                );
            }
            Action::Gone(name) => {
                Self::with_interface(daemon, &name, Interface::detach_gone);
                log::warn!(
                    "{name} was deleted: its counters stay exported (portmon_attached 0) and \
                     continue when a link named {name} appears again"
                );
            }
            Action::UpDown { name, up } => {
                self.up.insert(name.clone(), up);
                if up {
                    log::info!("{name} is up: counting resumes on the same hooks");
                } else {
                    log::info!(
                        "{name} is down: its hooks stay attached (the kernel keeps XDP and tcx \
                         links on a link that is down); nothing to count until it is up"
                    );
                }
            }
            Action::Reattach(link) => {
                if self.refused_early(&link) {
                    return;
                }
                let options = self.options;
                let mut result = Ok(String::new());
                Self::with_interface(daemon, &link.name, |interface| {
                    result = interface.reattach(&link, options);
                });
                match result {
                    Ok(described) => {
                        self.pending.remove(&link.name);
                        self.up.insert(link.name.clone(), link.up);
                        log::info!(
                            "{} is back (ifindex {}): re-attached the same programs and \
                             counters: {described}",
                            link.name,
                            link.index
                        );
                    }
                    Err(error) => self.failed(&link.name, &format!("{error:#}")),
                }
            }
            Action::Attach(link) => {
                if self.refused_early(&link) {
                    return;
                }
                match Interface::attach(&link, self.options, &daemon.policy) {
                    Ok((mut interface, logger)) => {
                        interface.settle_pins(self.cleanup);
                        self.pending.remove(&link.name);
                        self.up.insert(link.name.clone(), link.up);
                        log::info!(
                            "{} (ifindex {}) appeared and matches --iface: attached",
                            link.name,
                            link.index
                        );
                        daemon
                            .interfaces
                            .write()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(interface);
                        if let Some(logger) = logger {
                            // Ends with the runtime, like the loggers started with the daemon.
                            drop(kernel_log::spawn(link.name.clone(), logger));
                        }
                    }
                    Err(error) => self.failed(&link.name, &format!("{error:#}")),
                }
            }
        }
    }

    /// `--hook xdp` on a taken hook fails without loading anything (a load costs a
    /// verifier run and a counter map).
    fn refused_early(&mut self, link: &Link) -> bool {
        if self.options.hook != Hook::Xdp {
            return false;
        }
        let Some(program) = link.xdp.first() else {
            return false;
        };
        self.failed(
            &link.name,
            &format!(
                "XDP program id {} ({} mode) holds the XDP hook and portmon never replaces \
                 it; --hook auto would count on TC ingress",
                program.id, program.mode
            ),
        );
        true
    }

    fn failed(&mut self, name: &str, error: &str) {
        if self.pending.get(name).map(String::as_str) != Some(error) {
            log::error!("{name}: not attached: {error}; retrying on the next link event");
        }
        self.pending.insert(name.to_owned(), error.to_owned());
    }

    /// Retries the pending names that this batch did not mention.
    fn retry(&mut self, daemon: &Daemon, mentioned: &BTreeSet<String>) {
        if self.pending.keys().all(|name| mentioned.contains(name)) {
            return;
        }
        let Ok(links) = netlink::links() else {
            return;
        };
        let names: Vec<String> = self.pending.keys().cloned().collect();
        for name in names.iter().filter(|name| !mentioned.contains(*name)) {
            match links.iter().find(|link| &link.name == name) {
                Some(link) => self.handle(daemon, &LinkEvent::Changed(link.clone())),
                // Gone meanwhile: nothing to retry until it comes back (its event will).
                None => {
                    self.pending.remove(name);
                }
            }
        }
    }

    /// After an overrun: every link now, and a deletion for each monitored link missing.
    fn resync(daemon: &Daemon) -> Vec<LinkEvent> {
        let links = match netlink::links() {
            Ok(links) => links,
            Err(error) => {
                log::error!("re-reading the links after lost link events: {error}");
                return Vec::new();
            }
        };
        let mut events: Vec<LinkEvent> = Self::tracked(daemon)
            .into_iter()
            .filter_map(|t| {
                let index = t.attached_ifindex?;
                (!links
                    .iter()
                    .any(|link| link.index == index && link.name == t.name))
                .then(|| {
                    LinkEvent::Deleted(Link {
                        index,
                        name: t.name,
                        up: false,
                        loopback: false,
                        xdp: Vec::new(),
                    })
                })
            })
            .collect();
        events.extend(links.into_iter().map(LinkEvent::Changed));
        events
    }

    /// Follows link events until the runtime stops (or the socket fails, which is logged).
    pub async fn run(mut self, mut events: LinkEvents, daemon: Arc<Daemon>) {
        // Whatever changed between the startup dump and the subscription.
        for event in Self::resync(&daemon) {
            self.handle(&daemon, &event);
        }
        loop {
            let batch = match events.next().await {
                Ok(batch) => batch,
                Err(error) => {
                    log::error!(
                        "link events: {error}; interfaces that come and go are no longer \
                         followed (restart portmon)"
                    );
                    return;
                }
            };
            let events = match batch {
                Batch::Events(events) => events,
                Batch::Overrun => {
                    log::warn!("link events were lost (socket overrun): re-reading every link");
                    Self::resync(&daemon)
                }
            };
            let mut mentioned = BTreeSet::new();
            for event in &events {
                let (LinkEvent::Changed(link) | LinkEvent::Deleted(link)) = event;
                mentioned.insert(link.name.clone());
                self.handle(&daemon, event);
            }
            self.retry(&daemon, &mentioned);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::netlink::XdpProgram;

    fn link(index: u32, name: &str, up: bool) -> Link {
        Link {
            index,
            name: name.into(),
            up,
            loopback: false,
            xdp: Vec::new(),
        }
    }

    fn tracked(name: &str, ifindex: Option<u32>) -> Tracked {
        Tracked {
            name: name.into(),
            attached_ifindex: ifindex,
        }
    }

    #[test]
    fn decisions_per_event() {
        let selection = Selection::parse(&["eth0".into(), "pmg*".into()])
            .unwrap_or_else(|error| panic!("the selection parses: {error}"));
        let monitored = vec![
            tracked("eth0", Some(2)),
            tracked("pmg1", None),
            tracked("pmg2", Some(9)),
        ];
        let up: HashMap<String, bool> = [("eth0".to_owned(), true), ("pmg2".to_owned(), true)]
            .into_iter()
            .collect();
        let mut foreign = link(12, "pmg3", true);
        foreign.xdp.push(XdpProgram {
            id: 5,
            mode: "generic",
        });
        // (case, event, expected actions)
        let cases: Vec<(&str, LinkEvent, Vec<Action>)> = vec![
            (
                "attribute change of a monitored link",
                LinkEvent::Changed(link(2, "eth0", true)),
                vec![],
            ),
            (
                "monitored link goes down",
                LinkEvent::Changed(link(2, "eth0", false)),
                vec![Action::UpDown {
                    name: "eth0".into(),
                    up: false,
                }],
            ),
            (
                "monitored link deleted",
                LinkEvent::Deleted(link(2, "eth0", false)),
                vec![Action::Gone("eth0".into())],
            ),
            (
                "deleted link comes back under a new index",
                LinkEvent::Changed(link(11, "pmg1", true)),
                vec![Action::Reattach(link(11, "pmg1", true))],
            ),
            (
                "monitored name on a new index without a deletion seen",
                LinkEvent::Changed(link(13, "eth0", true)),
                vec![Action::Reattach(link(13, "eth0", true))],
            ),
            (
                "new link matching the glob",
                LinkEvent::Changed(link(10, "pmg7", true)),
                vec![Action::Attach(link(10, "pmg7", true))],
            ),
            (
                "new link matching the glob with a foreign XDP program",
                LinkEvent::Changed(foreign.clone()),
                vec![Action::Attach(foreign)],
            ),
            (
                "new link not selected",
                LinkEvent::Changed(link(10, "eth1", true)),
                vec![],
            ),
            (
                "deletion of a link not monitored",
                LinkEvent::Deleted(link(10, "eth1", false)),
                vec![],
            ),
            (
                "deletion of a monitored name already gone",
                LinkEvent::Deleted(link(4, "pmg1", false)),
                vec![],
            ),
            (
                "monitored link renamed out of the selection",
                LinkEvent::Changed(link(9, "other", true)),
                vec![Action::Renamed {
                    old: "pmg2".into(),
                    new: "other".into(),
                }],
            ),
            (
                "monitored link renamed to another selected name",
                LinkEvent::Changed(link(9, "pmg8", true)),
                vec![
                    Action::Renamed {
                        old: "pmg2".into(),
                        new: "pmg8".into(),
                    },
                    Action::Attach(link(9, "pmg8", true)),
                ],
            ),
        ];
        for (case, event, expected) in cases {
            assert_eq!(
                decide(&event, &monitored, &up, &selection),
                expected,
                "case {case}"
            );
        }
    }
}
