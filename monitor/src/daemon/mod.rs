//! `portmon run`: check, attach one data plane per interface, read every interval,
//! serve metrics, detach on SIGINT/SIGTERM.
//!
//! Kernel memory: each interface has its own counter map of
//! `slices x SLICE_BYTES` (`SLICE_BYTES` is about 6 MiB; slices = possible CPUs capped by
//! `--max-slices`, default 8), so the total is `interfaces x slices x ~6 MiB`.
//! User memory: one `Totals` of `SLICE_BYTES` per interface.

mod alerting;
mod hooks;
pub(crate) mod interface;
mod kernel_log;
mod link_events;
mod link_watch;
pub mod netlink;
mod payload;
pub mod preflight;
pub mod privileges;
pub mod selection;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::util::KernelVersion;
use monitor_common::layout::{SLICE_BYTES, slice_plan};
use tokio::signal::unix::{SignalKind, signal};

use self::{
    alerting::Alerting,
    interface::{AttachOptions, Interface},
    link_events::LinkEvents,
    link_watch::Watcher,
    netlink::Link,
    selection::{Selection, Selector},
};
use crate::{
    alerts::AlertsConfig,
    attach::{Hook, XdpMode},
    caps,
    dataplane::LoadOptions,
    http::{self, MetricsSource},
    metrics::{
        self, View,
        budget::{BudgetSettings, PortClasses},
        encode::Format,
    },
    pin,
    ports::Policy,
    webhook::WebhookSender,
};

/// Everything `portmon run` needs, flags and config merged.
#[derive(Debug)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "one field per on/off switch of `portmon run`, as the flags name them"
)]
pub struct Settings {
    /// Interfaces asked for, names or globs; empty means every up, non-loopback one.
    pub interfaces: Vec<String>,
    /// Where ingress is counted.
    pub hook: Hook,
    /// Follow link events: re-attach interfaces that come back, attach new glob matches.
    pub reattach: bool,
    /// XDP mode asked for.
    pub xdp_mode: XdpMode,
    /// Attach the TC egress program.
    pub egress: bool,
    /// Metrics endpoint.
    pub listen: SocketAddr,
    /// Read interval.
    pub interval: Duration,
    /// Cardinality budget.
    pub budget: BudgetSettings,
    /// Cap on counter-map slices.
    pub max_slices: u32,
    /// Kernel per-packet debug log.
    pub debug_kernel: bool,
    /// Payload classification of the tracked ports (`--no-payload` turns it off).
    pub payload: bool,
    /// Port knowledge with the config's overrides.
    pub policy: Policy,
    /// The spike detector's `[alerts]` section.
    pub alerts: AlertsConfig,
    /// Pinning across restarts (`--pin-dir`, `--no-pin`, `--cleanup`).
    pub pin: PinSettings,
    /// `--web.config.file`: TLS, basic auth and headers of the endpoint.
    pub web_config_file: Option<std::path::PathBuf>,
    /// `--web.max-requests` (0: no cap).
    pub web_max_requests: usize,
}

/// Pinning across restarts (see [`crate::pin`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinSettings {
    /// The pin root; `None` is [`pin::DEFAULT_ROOT`], which falls back to no pinning with
    /// a warning when it is not on bpffs (an explicit root must be).
    pub dir: Option<std::path::PathBuf>,
    /// `--no-pin`: fully ephemeral, nothing in bpffs, everything detached at exit.
    pub disabled: bool,
    /// `--cleanup`: pin while running, but detach and unpin at exit.
    pub cleanup: bool,
}

/// The pin root to use, checked on bpffs. Leaked once: it lives as long as the process and
/// keeps [`AttachOptions`] `Copy`.
fn pin_root(settings: &PinSettings) -> anyhow::Result<Option<&'static std::path::Path>> {
    if settings.disabled {
        log::info!("--no-pin: nothing pinned; counters restart from zero with the daemon");
        return Ok(None);
    }
    let root = settings
        .dir
        .clone()
        .unwrap_or_else(|| pin::DEFAULT_ROOT.into());
    match pin::check_bpffs(&root) {
        Ok(()) => Ok(Some(Box::leak(root.into_boxed_path()))),
        Err(error @ pin::PinError::NotBpffs { .. }) if settings.dir.is_none() => {
            log::warn!("{error}. Continuing without pinning");
            Ok(None)
        }
        Err(error) => Err(error).context("checking the pin directory (--pin-dir)"),
    }
}

/// The shared state the reader updates and the scrape reads.
struct Daemon {
    /// Grows when a link matching a glob appears (see [`link_watch`]); never shrinks.
    interfaces: RwLock<Vec<Interface>>,
    policy: Policy,
    classes: PortClasses,
    budget: BudgetSettings,
    /// The series budget of one interface.
    interface_budget: u64,
    /// The spike detector; `None` when `[alerts] enabled = false`.
    alerting: Option<Mutex<Alerting>>,
    /// Read interval (the snapshot reports it).
    interval: Duration,
}

/// `/proc/sys/kernel/bpf_stats_enabled`: the kernel counts program run time only while 1.
const BPF_STATS_ENABLED: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl MetricsSource for Daemon {
    fn render(&self, format: Format) -> String {
        let started = std::time::Instant::now();
        let with_stats =
            std::fs::read_to_string(BPF_STATS_ENABLED).is_ok_and(|value| value.trim() == "1");
        let view = self.view(with_stats);
        let gathered = started.elapsed();
        let text = metrics::render(&view, format);
        log::debug!(
            "scrape: state gathered in {gathered:?}, {} bytes in {:?} in all",
            text.len(),
            started.elapsed()
        );
        text
    }

    fn snapshot(&self) -> Option<String> {
        crate::snapshot::json(
            &self.view(false),
            self.interval,
            std::time::SystemTime::now(),
        )
    }
}

impl Daemon {
    /// What a scrape or a snapshot exports, gathered under short locks.
    fn view(&self, with_stats: bool) -> View<'_> {
        let interfaces = self
            .interfaces
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        View {
            policy: &self.policy,
            interfaces: interfaces
                .iter()
                .map(|interface| interface.view(&self.classes, with_stats))
                .collect(),
            series_budget: self.interface_budget * interfaces.len() as u64,
            alerts: self.alerting.as_ref().map(|alerting| {
                alerting
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .view(&interfaces, &self.policy)
            }),
        }
    }

    fn read_all(&self) {
        let interfaces = self
            .interfaces
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        for interface in interfaces.iter() {
            interface.read(&self.classes, self.budget);
        }
        if let Some(alerting) = &self.alerting {
            alerting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .observe(&interfaces, &self.policy, Instant::now());
        }
    }
}

/// The interfaces chosen at startup.
struct Chosen {
    /// What `--iface` asks for (with no `--iface`: the names chosen now, exactly).
    selection: Selection,
    /// The links to attach now, with whether a failure is fatal (exact names) or only
    /// logged and retried on the next link event (matched by a glob only).
    links: Vec<(Link, bool)>,
    /// The pin root; `None` without pinning.
    pin_root: Option<&'static std::path::Path>,
}

/// Checks everything that can be checked before loading; returns the interfaces to use
/// and the pin root.
fn preflight(settings: &Settings) -> anyhow::Result<Chosen> {
    let kernel = KernelVersion::current().context("reading the kernel version")?;
    let features = preflight::check_kernel(kernel)?;
    if !features.tcx {
        log::info!("kernel older than 6.6: TC programs attach through a clsact qdisc");
    }
    caps::check()?;
    let links = netlink::links().context("listing the network interfaces")?;
    let requested = Selection::parse(&settings.interfaces)?;
    let chosen = preflight::select(&requested, &links)?;
    let pin_root = pin_root(&settings.pin)?;
    // Our own pinned XDP links take the hook only in appearance: they are taken over.
    let chosen: Vec<Link> = chosen
        .into_iter()
        .map(|link| {
            let mut link = link.clone();
            if let Some(root) = pin_root {
                let ours = pin::links::pinned_xdp_programs(root, &link.name);
                link.xdp.retain(|program| !ours.contains(&program.id));
            }
            link
        })
        .collect();
    let selection = if requested.is_empty() {
        Selection::exact(chosen.iter().map(|link| link.name.clone()))
    } else {
        requested
    };
    let exact = |link: &Link| {
        selection
            .selectors()
            .iter()
            .any(|selector| matches!(selector, Selector::Exact(name) if *name == link.name))
    };
    if settings.hook == Hook::Xdp {
        let fatal: Vec<&Link> = chosen.iter().filter(|link| exact(link)).collect();
        preflight::check_xdp_free(&fatal)?;
    }
    if chosen.is_empty() {
        log::info!(
            "no interface matches --iface {} yet: waiting for one to appear",
            settings.interfaces.join(",")
        );
    }
    let links = chosen
        .into_iter()
        .map(|link| {
            let fatal = exact(&link);
            (link, fatal)
        })
        .collect();
    Ok(Chosen {
        selection,
        links,
        pin_root,
    })
}

/// Drops every capability the daemon no longer needs once attached (see
/// [`privileges::keep`] for what stays and why).
fn drop_privileges(needs: privileges::Needs) -> anyhow::Result<()> {
    let keep = privileges::keep(&needs, KernelVersion::current().ok());
    let caps: Vec<caps::Capability> = keep.iter().map(|(cap, _)| *cap).collect();
    let dropped = privileges::drop_all_but(&caps)
        .context("dropping capabilities after attaching (nothing is left attached)")?;
    let kept = if keep.is_empty() {
        "none".to_owned()
    } else {
        let described: Vec<String> = keep
            .iter()
            .map(|(cap, why)| format!("{} ({why})", cap.name()))
            .collect();
        described.join(", ")
    };
    log::info!(
        "capabilities dropped after attaching: kept {kept}{}",
        if dropped.bounding_dropped {
            ""
        } else {
            "; bounding set left as is (no CAP_SETPCAP)"
        }
    );
    Ok(())
}

/// Runs the daemon until SIGINT or SIGTERM.
///
/// # Errors
/// Any refusal of the preflight checks, a failed load or attach (everything attached so
/// far is detached first), or an endpoint that cannot listen.
pub fn run(settings: Settings) -> anyhow::Result<()> {
    let security = load_web_config(&settings)?;
    let limits = endpoint_limits(settings.web_max_requests);
    let chosen = preflight(&settings)?;
    let listener = std::net::TcpListener::bind(settings.listen).with_context(|| {
        format!(
            "listening on {} for metrics; choose another address with --listen",
            settings.listen
        )
    })?;
    listener
        .set_nonblocking(true)
        .context("making the metrics socket non-blocking")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(serve(settings, chosen, listener, security, limits));
    // Dropping the runtime drops every task, and with them the last references to the
    // interfaces: their programs detach here at the latest.
    drop(runtime);
    result
}

/// The endpoint's TLS, auth and headers, read and checked before anything is attached.
fn load_web_config(settings: &Settings) -> anyhow::Result<crate::web::Security> {
    let Some(path) = &settings.web_config_file else {
        return Ok(crate::web::Security::default());
    };
    let security = crate::web::Security::load(path).with_context(|| {
        format!(
            "loading --web.config.file {}: fix the file, or leave the flag out to serve \
             plain HTTP without authentication",
            path.display()
        )
    })?;
    log::info!("metrics endpoint: {}", security.describe());
    Ok(security)
}

/// Raises the open-file limit (as Go programs do) and sizes the connection cap to it.
fn endpoint_limits(max_requests: usize) -> http::Limits {
    let nofile = match crate::web::rlimit::raise_nofile() {
        Ok(raised) => {
            if raised.after != raised.before {
                log::info!(
                    "open-file limit raised from {} to {} (the hard limit)",
                    raised.before,
                    raised.after
                );
            }
            raised.after
        }
        Err(error) => {
            log::warn!("raising the open-file limit: {error}; keeping the current one");
            1024
        }
    };
    http::Limits {
        max_requests,
        max_connections: http::Limits::connections_for(nofile),
    }
}

/// The spike detector and its webhook, unless `[alerts] enabled = false`. Must run inside
/// the runtime (the webhook's sender is a task).
fn start_alerting(settings: &Settings) -> anyhow::Result<Option<Mutex<Alerting>>> {
    if !settings.alerts.enabled {
        log::info!("spike detector disabled ([alerts] enabled = false)");
        return Ok(None);
    }
    let webhook = match &settings.alerts.webhook_url {
        Some(url) => Some(
            WebhookSender::spawn(
                url,
                settings.alerts.webhook_timeout,
                format!("http://{}/metrics", settings.listen),
            )
            .context("starting the alert webhook")?,
        ),
        None => None,
    };
    let alerting = Alerting::new(settings.alerts.clone(), &settings.policy, webhook)
        .context("configuring the spike detector (the [alerts] section)")?;
    log::info!(
        "spike detector: {} plaintext, ambiguous or must-be-zero port(s) watched per \
         interface and direction, {} secure port(s) for plaintext payloads; warm-up {}{}",
        alerting.watched(),
        alerting.watched_secure(),
        crate::config::duration::format(settings.alerts.warmup),
        settings
            .alerts
            .webhook_url
            .as_ref()
            .map(|url| format!("; alerts also POSTed to {url}"))
            .unwrap_or_default(),
    );
    Ok(Some(Mutex::new(alerting)))
}

/// What the startup attach brought.
struct Attached {
    interfaces: Vec<Interface>,
    loggers: Vec<(String, crate::dataplane::KernelLogger)>,
    /// The links attached.
    links: Vec<Link>,
    /// Links matched only by a glob that failed, with why (retried on link events).
    failed: BTreeMap<String, String>,
}

/// Attaches every chosen link. A failure on an exactly named link (or any, when link
/// events are not followed) is fatal; everything attached so far then detaches.
fn attach_chosen(
    links: Vec<(Link, bool)>,
    options: AttachOptions,
    reattach: bool,
    policy: &Policy,
) -> anyhow::Result<Attached> {
    let mut attached = Attached {
        interfaces: Vec::with_capacity(links.len()),
        loggers: Vec::new(),
        links: Vec::new(),
        failed: BTreeMap::new(),
    };
    for (link, fatal) in links {
        match Interface::attach(&link, options, policy) {
            Ok((interface, logger)) => {
                attached.interfaces.push(interface);
                if let Some(logger) = logger {
                    attached.loggers.push((link.name.clone(), logger));
                }
                attached.links.push(link);
            }
            // On error, `attached` is dropped on return: everything attached so far detaches.
            Err(error) if fatal || !reattach => return Err(error),
            Err(error) => {
                log::error!(
                    "{}: not attached: {error:#}; retrying on the next link event",
                    link.name
                );
                attached
                    .failed
                    .insert(link.name.clone(), format!("{error:#}"));
            }
        }
    }
    Ok(attached)
}

/// How every interface is attached, now and on link events.
fn attach_options(
    settings: &Settings,
    pin_root: Option<&'static std::path::Path>,
) -> AttachOptions {
    AttachOptions {
        hook: settings.hook,
        xdp_mode: settings.xdp_mode,
        egress: settings.egress,
        load: LoadOptions {
            max_slices: settings.max_slices,
            debug: settings.debug_kernel,
            possible_cpus: None,
            payload: settings.payload,
        },
        pin_root,
    }
}

/// One line on kernel memory, reading interval, series budget and the endpoint.
fn log_memory(settings: &Settings, interfaces: usize, interface_budget: u64, scheme: &str) {
    let plan = slice_plan(
        aya::util::nr_cpus().map_or(1, |cpus| u32::try_from(cpus).unwrap_or(u32::MAX)),
        settings.max_slices,
    );
    log::info!(
        "counter maps: {interfaces} interface(s) x {} slice(s) x {} KiB = {} MiB of kernel \
         memory; reading every {}; series budget {}; metrics on {scheme}://{}/metrics",
        plan.slices,
        SLICE_BYTES / 1024,
        interfaces as u64 * plan.map_bytes() / (1024 * 1024),
        crate::config::duration::format(settings.interval),
        interface_budget * interfaces as u64,
        settings.listen,
    );
}

async fn serve(
    settings: Settings,
    chosen: Chosen,
    listener: std::net::TcpListener,
    security: crate::web::Security,
    limits: http::Limits,
) -> anyhow::Result<()> {
    // Handlers first, so that a signal during the attach is not fatal and still detaches.
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let listener =
        tokio::net::TcpListener::from_std(listener).context("registering the metrics socket")?;

    // Subscribed before attaching, so that no link event after the preflight's dump is
    // missed (the watcher re-reads every link once when it starts).
    let events = settings
        .reattach
        .then(LinkEvents::subscribe)
        .transpose()
        .context("subscribing to link events (or run with --no-reattach)")?;
    let options = attach_options(&settings, chosen.pin_root);
    let Attached {
        mut interfaces,
        loggers,
        links: attached,
        failed,
    } = attach_chosen(chosen.links, options, settings.reattach, &settings.policy)?;
    let watcher = events.map(|events| {
        (
            events,
            Watcher::new(
                chosen.selection.clone(),
                options,
                settings.pin.cleanup,
                &attached,
                failed,
            ),
        )
    });
    drop_privileges(privileges::Needs {
        egress: settings.egress,
        hook: settings.hook,
        reattach: watcher.is_some(),
        load: watcher.is_some() && chosen.selection.has_globs(),
    })?;
    let alerting = start_alerting(&settings)?;
    let classes = PortClasses::new(&settings.policy);
    let interface_budget = classes.interface_budget(settings.budget);
    log_memory(
        &settings,
        interfaces.len(),
        interface_budget,
        security.scheme(),
    );
    // Started: from now on the pins stay at exit, unless --cleanup.
    for interface in &mut interfaces {
        interface.settle_pins(settings.pin.cleanup);
    }
    let daemon = Arc::new(Daemon {
        interfaces: RwLock::new(interfaces),
        policy: settings.policy,
        classes,
        budget: settings.budget,
        interface_budget,
        alerting,
        interval: settings.interval,
    });
    daemon.read_all();

    let mut tasks: Vec<tokio::task::JoinHandle<()>> = loggers
        .into_iter()
        .filter_map(|(name, logger)| kernel_log::spawn(name, logger))
        .collect();
    if let Some((events, watcher)) = watcher {
        tasks.push(tokio::spawn(watcher.run(events, Arc::clone(&daemon))));
    }
    let reader = Arc::clone(&daemon);
    let interval = settings.interval;
    tasks.push(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            reader.read_all();
        }
    }));
    let leaving = if chosen.pin_root.is_some() && !settings.pin.cleanup {
        "stopping; the pinned programs stay attached"
    } else {
        "detaching"
    };
    let shutdown = async {
        tokio::select! {
            _ = interrupt.recv() => log::info!("SIGINT: {leaving}"),
            _ = terminate.recv() => log::info!("SIGTERM: {leaving}"),
        }
    };
    http::serve_secured(listener, Arc::clone(&daemon), security, limits, shutdown).await;
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }
    drop(daemon);
    Ok(())
}
