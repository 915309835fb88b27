//! One monitored interface: its own loaded programs and counter map (the map has no
//! interface dimension), the last read of the counters and the budget's promotions.
//!
//! Dropping an [`Interface`] drops its [`DataPlane`], whose aya links detach the programs,
//! unless they are pinned ([`crate::pin`]): then they stay attached and counting after this
//! process, for the next daemon to take over, unless the [`PinGuard`] removes the pins
//! first (`--cleanup`, or a start that failed on a directory it had just created).
//!
//! Accumulation: the kernel's counters are monotonic from map creation and a process never
//! replaces its map while it runs (a link that is deleted and comes back gets the same
//! programs and map, see [`Interface::reattach`]), so the last full read *is* the
//! accumulated total (one 6 MiB buffer per interface instead of three for
//! previous/current/sum). A pinned map outlives the process: a restarted daemon exports the
//! same totals, continuing exactly. A map is only ever replaced at startup (no pins yet,
//! `--no-pin`, or pins of another layout, logged), and the process restart is then a
//! counter reset, which Prometheus handles.

use std::{
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use anyhow::Context as _;
use monitor_common::layout::{Counter, Direction, L4, Reason};

pub use super::hooks::AttachOptions;
use super::{hooks::Hooks, netlink::Link, payload::Payload};
use crate::{
    counters::{CounterMap, Totals},
    dataplane::{DataPlane, KernelLogger, TC_EGRESS_PROGRAM, TC_INGRESS_PROGRAM},
    metrics::{
        InterfaceView, ProgramStats,
        budget::{BudgetSettings, InterfaceBudget, LANE_KEYS, PortClasses},
        histogram::Histogram,
    },
    pin::{PinDir, PinGuard},
    ports::Policy,
};

/// What the reader updates and the scrape reads.
struct State {
    totals: Totals,
    budget: InterfaceBudget,
    read_duration: Histogram,
    /// Payload classification; `None` with `--no-payload`.
    payload: Option<Payload>,
}

/// A monitored interface: attached, or detached while its link is gone (its counters
/// stay exported and continue when the link comes back, see [`Interface::reattach`]).
pub struct Interface {
    name: String,
    /// The ifindex at the first attach: a stable key for per-interface state (alerts),
    /// also after the link was recreated under a new index.
    ifindex: u32,
    /// Locked after `data_plane` when both are needed.
    hooks: Mutex<Hooks>,
    counters: CounterMap,
    state: Mutex<State>,
    read_errors: AtomicU64,
    /// The pins, removed on drop with `--cleanup`; `None` with `--no-pin`.
    pins: Option<PinGuard>,
    /// Last field: dropped last, so the programs detach after the reader's view is gone.
    data_plane: Mutex<DataPlane>,
}

fn lock<T>(mutex: &Mutex<T>) -> (MutexGuard<'_, T>, bool) {
    match mutex.lock() {
        Ok(guard) => (guard, false),
        Err(poisoned) => (PoisonError::into_inner(poisoned), true),
    }
}

impl Interface {
    /// Loads a data plane for `link` and attaches it. On error, whatever was attached is
    /// detached again (the data plane is dropped).
    ///
    /// # Errors
    /// Loading or attaching failed; the message names the interface and a fix.
    pub fn attach(
        link: &Link,
        options: AttachOptions,
        policy: &Policy,
    ) -> anyhow::Result<(Self, Option<KernelLogger>)> {
        let name = link.name.as_str();
        let pins = match options.pin_root {
            Some(root) => {
                let plan = options.load.plan().context("sizing the counter map")?;
                let dir = PinDir::open(root, name, plan)
                    .with_context(|| format!("preparing the pin directory of {name}"))?;
                Some(PinGuard::new(dir))
            }
            None => None,
        };
        let loaded = match &pins {
            Some(pins) => DataPlane::load_pinned(options.load, pins.dir()),
            None => DataPlane::load(options.load),
        };
        let mut data_plane = loaded.context(
            "loading the eBPF programs (see the kernel's verifier message above; \
             --debug-kernel needs a kernel with BTF)",
        )?;
        let logger = data_plane.take_logger();
        let hooks = Hooks::attach(
            &mut data_plane,
            link,
            options,
            pins.as_ref().map(PinGuard::dir),
        )?;
        let counters = data_plane
            .counters()
            .with_context(|| format!("mapping the counter map of {name}"))?;
        log::info!("attached to {name}: {}", hooks.describe());
        Ok((
            Self {
                name: name.to_owned(),
                ifindex: link.index,
                hooks: Mutex::new(hooks),
                counters,
                state: Mutex::new(State {
                    totals: Totals::default(),
                    budget: InterfaceBudget::default(),
                    read_duration: Histogram::default(),
                    payload: Payload::open(name, &data_plane, policy, options.load.payload)?,
                }),
                read_errors: AtomicU64::new(0),
                pins,
                data_plane: Mutex::new(data_plane),
            },
            logger,
        ))
    }

    /// Attaches the same loaded programs, hence the same counter map, to `link` (this
    /// interface's name under a new ifindex, or back after a failed attempt): its
    /// counters continue where they stopped. Whatever is still attached is detached
    /// first. Returns the hooks now in place, described.
    ///
    /// # Errors
    /// A refused attachment; the interface is then left detached.
    pub fn reattach(&self, link: &Link, options: AttachOptions) -> anyhow::Result<String> {
        let (mut data_plane, _) = lock(&self.data_plane);
        let (mut hooks, _) = lock(&self.hooks);
        hooks.detach(&mut data_plane);
        let pins = self.pins.as_ref().map(PinGuard::dir);
        let fresh = Hooks::attach(&mut data_plane, link, options, pins)?;
        let described = fresh.describe();
        *hooks = fresh;
        Ok(described)
    }

    /// The link is gone: closes its (now inert) links and marks the interface detached.
    /// The counters stay exported.
    pub fn detach_gone(&self) {
        let (mut data_plane, _) = lock(&self.data_plane);
        let (mut hooks, _) = lock(&self.hooks);
        hooks.detach(&mut data_plane);
    }

    /// Once the daemon runs: keep the pins at exit (the default), or remove them
    /// (`cleanup`). Until then a failed start removes pins it created.
    pub fn settle_pins(&mut self, cleanup: bool) {
        if let Some(pins) = &mut self.pins {
            pins.settle(cleanup);
        }
    }

    /// The ifindex the programs are attached to; `None` while detached.
    #[must_use]
    pub fn attached_ifindex(&self) -> Option<u32> {
        lock(&self.hooks).0.ifindex()
    }

    /// Reads every counter and runs the budget's promotions. A failure is counted and
    /// logged; the last good values stay exported.
    pub fn read(&self, classes: &PortClasses, settings: BudgetSettings) {
        let (mut state, poisoned) = lock(&self.state);
        if poisoned {
            // A panic while the state was held: the totals may be half-written, but the next
            // full read overwrites them. Count it like a failed read.
            self.read_errors.fetch_add(1, Ordering::Relaxed);
            log::error!(
                "{}: the counter state was poisoned by a panic; re-reading",
                self.name
            );
        }
        let started = Instant::now();
        self.counters.read_into(&mut state.totals);
        let elapsed = started.elapsed();
        state.read_duration.observe(elapsed);
        let State {
            totals,
            budget,
            payload,
            ..
        } = &mut *state;
        let promoted = budget.promote(totals, classes, settings);
        if promoted > 0 {
            log::info!(
                "{}: {promoted} port(s) promoted to their own series (top-{} busiest)",
                self.name,
                settings.top_k
            );
            if let Some(payload) = payload.as_mut() {
                for (direction, l4) in LANE_KEYS {
                    payload.track_promoted(
                        &self.name,
                        direction,
                        l4,
                        &budget.promoted(direction, l4),
                    );
                }
            }
        }
        if let Some(payload) = payload.as_mut() {
            payload.read();
        }
    }

    /// The interface name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kernel interface index at the first attach: a stable key for this interface
    /// (see [`Interface::attached_ifindex`] for the current one).
    #[must_use]
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Appends the last read's totals of `watched` ports, ingress then egress, to `out`.
    pub fn watched_counters(&self, watched: &[(L4, u16)], out: &mut Vec<Counter>) {
        let (state, _) = lock(&self.state);
        for direction in Direction::ALL {
            out.extend(
                watched
                    .iter()
                    .map(|&(l4, port)| state.totals.port(direction, l4, port)),
            );
        }
    }

    /// Appends the plaintext payloads counted so far on `watched` ports (0 for a port
    /// without a payload slot, or without classification), ingress then egress, to `out`.
    pub fn watched_plaintext(&self, watched: &[(L4, u16)], out: &mut Vec<u64>) {
        let (state, _) = lock(&self.state);
        for direction in Direction::ALL {
            out.extend(watched.iter().map(|&(l4, port)| {
                state
                    .payload
                    .as_ref()
                    .map_or(0, |payload| payload.plaintext(direction, l4, port))
            }));
        }
    }

    /// The exported state of this interface; `with_program_stats` adds the kernel's run
    /// statistics of the attached programs.
    #[must_use]
    pub fn view(&self, classes: &PortClasses, with_program_stats: bool) -> InterfaceView {
        let (attachments, detached) = {
            let (hooks, _) = lock(&self.hooks);
            match hooks.ifindex() {
                Some(_) => (hooks.attachments(), false),
                None => (hooks.last().to_vec(), true),
            }
        };
        let mut view = InterfaceView {
            name: self.name.clone(),
            attachments,
            detached,
            read_errors: self.read_errors.load(Ordering::Relaxed),
            ..InterfaceView::default()
        };
        {
            let (state, _) = lock(&self.state);
            state
                .budget
                .samples(&state.totals, classes, &mut view.ports);
            for direction in Direction::ALL {
                for reason in Reason::ALL {
                    view.unparsed.push((
                        direction,
                        reason,
                        state.totals.reason(direction, reason).packets,
                    ));
                }
                for protocol in 0..=u8::MAX {
                    if matches!(protocol, 6 | 17) {
                        continue; // Counted per port.
                    }
                    let counter = state.totals.ip_protocol(direction, protocol);
                    if counter != Counter::default() {
                        view.ip_protocols.push((direction, protocol, counter));
                    }
                }
            }
            view.read_duration = state.read_duration.clone();
            if let Some(payload) = &state.payload {
                view.payload = payload.view();
            }
        }
        if with_program_stats {
            view.programs = self.program_stats();
        }
        view
    }

    fn program_stats(&self) -> Vec<ProgramStats> {
        // Hooks first, released before the data plane is locked (the lock order is
        // data plane, then hooks).
        let attachments = lock(&self.hooks).0.attachments();
        let (mut data_plane, _) = lock(&self.data_plane);
        let mut stats = Vec::new();
        for attachment in &attachments {
            let info = match attachment.hook {
                "xdp" => data_plane.xdp_mut().ok().and_then(|xdp| xdp.info().ok()),
                hook => data_plane
                    .classifier_mut(if hook == "tc_ingress" {
                        TC_INGRESS_PROGRAM
                    } else {
                        TC_EGRESS_PROGRAM
                    })
                    .ok()
                    .and_then(|tc| tc.info().ok()),
            };
            match info {
                Some(info) => stats.push(ProgramStats {
                    hook: attachment.hook,
                    run_time: info.run_time(),
                    run_count: info.run_count(),
                }),
                None => log::debug!("{}: no program info for {}", self.name, attachment.hook),
            }
        }
        stats
    }
}

impl Drop for Interface {
    fn drop(&mut self) {
        match &self.pins {
            Some(pins) if pins.kept() => log::info!(
                "leaving {} attached and counting: pinned in {} for the next start \
                 (`portmon detach --iface {}` removes it)",
                self.name,
                pins.dir().dir().display(),
                self.name
            ),
            _ => log::info!("detaching from {}", self.name),
        }
    }
}
