//! One monitored interface: its own loaded programs and counter map (the map has no
//! interface dimension), the last read of the counters and the budget's promotions.
//!
//! Dropping an [`Interface`] drops its [`DataPlane`], whose aya links detach the programs,
//! unless they are pinned ([`crate::pin`]): then they stay attached and counting after this
//! process, for the next daemon to take over, unless the [`PinGuard`] removes the pins
//! first (`--cleanup`, or a start that failed on a directory it had just created).
//!
//! Accumulation: the kernel's counters are monotonic from map creation and a process never
//! replaces its map while it runs, so the last full read *is* the accumulated total (one
//! 6 MiB buffer per interface instead of three for previous/current/sum). A pinned map
//! outlives the process: a restarted daemon exports the same totals, continuing exactly. A
//! map is only ever replaced at startup (no pins yet, `--no-pin`, or pins of another layout,
//! logged), and the process restart is then a counter reset, which Prometheus handles.

use std::{
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use anyhow::Context as _;
use aya::programs::TcAttachType;
use monitor_common::layout::{Counter, Direction, L4, Reason};

use crate::{
    attach::{self, XdpMode},
    counters::{CounterMap, Totals},
    dataplane::{DataPlane, KernelLogger, LoadOptions, TC_EGRESS_PROGRAM},
    metrics::{
        Attachment, InterfaceView, ProgramStats,
        budget::{BudgetSettings, InterfaceBudget, PortClasses},
        histogram::Histogram,
    },
    pin::{
        PinDir, PinGuard,
        links::{self as pinned, Origin},
    },
};

/// How to attach to an interface.
#[derive(Clone, Copy, Debug)]
pub struct AttachOptions {
    /// XDP mode asked for.
    pub xdp_mode: XdpMode,
    /// Whether to attach the TC egress program.
    pub egress: bool,
    /// Map sizing and kernel debug switch.
    pub load: LoadOptions,
    /// Pin root (`--pin-dir`); `None` with `--no-pin`.
    pub pin_root: Option<&'static std::path::Path>,
}

/// What the reader updates and the scrape reads.
struct State {
    totals: Totals,
    budget: InterfaceBudget,
    read_duration: Histogram,
}

/// An attached interface.
pub struct Interface {
    name: String,
    ifindex: u32,
    attachments: Vec<Attachment>,
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
    /// Loads a data plane for `name` and attaches it. On error, whatever was attached is
    /// detached again (the data plane is dropped).
    ///
    /// # Errors
    /// Loading or attaching failed; the message names the interface and a fix.
    pub fn attach(
        name: &str,
        options: AttachOptions,
    ) -> anyhow::Result<(Self, Option<KernelLogger>)> {
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
        let xdp_context = || match options.xdp_mode {
            XdpMode::Native => format!(
                "attaching XDP to {name} in native mode; the driver may not support it: \
                 try --xdp-mode generic or auto"
            ),
            _ => format!("attaching XDP to {name}"),
        };
        let (xdp, xdp_origin) = match &pins {
            Some(pins) => pinned::attach_xdp(&mut data_plane, name, options.xdp_mode, pins.dir())
                .with_context(xdp_context)?,
            None => (
                attach::attach_xdp(&mut data_plane, name, options.xdp_mode)
                    .with_context(xdp_context)?,
                Origin::Attached,
            ),
        };
        let mut attachments = vec![Attachment {
            hook: "xdp",
            mode: xdp.as_str(),
        }];
        let mut origins = vec![xdp_origin];
        if options.egress {
            let egress_context =
                || format!("attaching the TC egress program to {name} (or run with --no-egress)");
            let (tc, origin) = match &pins {
                Some(pins) => pinned::attach_tc(
                    &mut data_plane,
                    name,
                    TC_EGRESS_PROGRAM,
                    TcAttachType::Egress,
                    pins.dir(),
                )
                .with_context(egress_context)?,
                None => (
                    attach::attach_tc(
                        &mut data_plane,
                        name,
                        TC_EGRESS_PROGRAM,
                        TcAttachType::Egress,
                    )
                    .with_context(egress_context)?,
                    Origin::Attached,
                ),
            };
            attachments.push(Attachment {
                hook: "tc_egress",
                mode: tc.as_str(),
            });
            origins.push(origin);
        }
        let counters = data_plane
            .counters()
            .with_context(|| format!("mapping the counter map of {name}"))?;
        let described: Vec<String> = attachments
            .iter()
            .zip(&origins)
            .map(|(a, origin)| match origin {
                Origin::Reused => format!("{} ({}, pinned link taken over)", a.hook, a.mode),
                Origin::Attached => format!("{} ({})", a.hook, a.mode),
            })
            .collect();
        log::info!("attached to {name}: {}", described.join(", "));
        let ifindex = ifindex(name).with_context(|| format!("finding the index of {name}"))?;
        Ok((
            Self {
                name: name.to_owned(),
                ifindex,
                attachments,
                counters,
                state: Mutex::new(State {
                    totals: Totals::default(),
                    budget: InterfaceBudget::default(),
                    read_duration: Histogram::default(),
                }),
                read_errors: AtomicU64::new(0),
                pins,
                data_plane: Mutex::new(data_plane),
            },
            logger,
        ))
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
        let State { totals, budget, .. } = &mut *state;
        let promoted = budget.promote(totals, classes, settings);
        if promoted > 0 {
            log::info!(
                "{}: {promoted} port(s) promoted to their own series (top-{} busiest)",
                self.name,
                settings.top_k
            );
        }
    }

    /// Once the daemon runs: keep the pins at exit (the default), or remove them
    /// (`cleanup`). Until then a failed start removes pins it created.
    pub fn settle_pins(&mut self, cleanup: bool) {
        if let Some(pins) = &mut self.pins {
            pins.settle(cleanup);
        }
    }

    /// The interface name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kernel interface index.
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

    /// The exported state of this interface; `with_program_stats` adds the kernel's run
    /// statistics of the attached programs.
    #[must_use]
    pub fn view(&self, classes: &PortClasses, with_program_stats: bool) -> InterfaceView {
        let mut view = InterfaceView {
            name: self.name.clone(),
            attachments: self.attachments.clone(),
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
        }
        if with_program_stats {
            view.programs = self.program_stats();
        }
        view
    }

    fn program_stats(&self) -> Vec<ProgramStats> {
        let (mut data_plane, _) = lock(&self.data_plane);
        let mut stats = Vec::new();
        for attachment in &self.attachments {
            let info = match attachment.hook {
                "xdp" => data_plane.xdp_mut().ok().and_then(|xdp| xdp.info().ok()),
                _ => data_plane
                    .classifier_mut(TC_EGRESS_PROGRAM)
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

/// The kernel index of interface `name`.
fn ifindex(name: &str) -> std::io::Result<u32> {
    let name = std::ffi::CString::new(name)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call, which only
    // reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(index)
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
