//! `cargo xtask bench daemon`: what the real `portmon run` costs (issue 3, "Benchmark").
//!
//! The release binary runs on the host end of a veth pair whose peer sits in a namespace
//! of its own, listening on a free loopback port, at its defaults (1 s interval, K=20).
//!
//! * [`map_read`]: one full read of a counter map in this process, against the same sum
//!   over heap memory and a memcpy of the same size, alternated in each run.
//! * the scrape: once [`traffic::realistic_state`] has filled every lane (a sweep of every
//!   port both ways, busy ports promoted), sequential `/metrics` GETs from a loopback
//!   client, each paired with a `/healthz` GET (the baseline: the same HTTP path with
//!   nothing to render).
//! * CPU ([`procfs`]): per run, a window with the link idle and one under a paced flood from
//!   the peer, the daemon's CPU time over each.
//! * memory: the daemon's resident set at the end, broken down by what holds it.
//!
//! Every figure is a median over runs (of per-run medians or quantiles); ratios are taken
//! within a run.

mod map_read;
mod process;
mod procfs;
mod scrape;
mod traffic;

use std::{
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use monitor_common::layout::{DEFAULT_MAX_SLICES, Direction, SLICE_BYTES};

use self::{
    process::Portmon,
    procfs::{CpuSample, Memory},
    scrape::{Client, quantile},
    traffic::{BUSY_PORTS, FloodReport, Senders},
};
use super::report::{Figure, Target, median};
use crate::{
    daemon::{Sample, parse_exposition},
    netns::{Stack, Topology},
};

/// The daemon's read interval under test (its default).
const INTERVAL: Duration = Duration::from_secs(1);
/// Bound on waiting for the daemon to promote the busy ports.
const PROMOTION_LIMIT: Duration = Duration::from_secs(15);
/// MiB.
const MIB: f64 = 1024.0 * 1024.0;
/// The daemon's default top-K, and its lanes (direction x protocol).
const DEFAULT_TOP_K: usize = 20;
const LANES: usize = 4;

/// How much to measure.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The `portmon` binary (release).
    pub portmon: PathBuf,
    /// Runs; every figure is the median over them.
    pub runs: usize,
    /// Map reads (and as many of each baseline) per run.
    pub map_reads: usize,
    /// `/metrics` GETs (and as many `/healthz`) per run.
    pub scrapes: usize,
    /// Length of each CPU window (one idle and one flooded per run).
    pub cpu_window: Duration,
    /// Frames per second of the flood.
    pub flood_rate: u64,
}

impl Settings {
    /// The defaults for `portmon`.
    #[must_use]
    pub fn new(portmon: PathBuf) -> Self {
        Self {
            portmon,
            runs: 5,
            map_reads: 200,
            scrapes: 300,
            cpu_window: Duration::from_secs(6),
            flood_rate: 50_000,
        }
    }
}

/// Runs the benchmark and returns its figures, in table order.
///
/// # Errors
/// When a measurement cannot be made (loading, the network setup, the daemon failing).
pub fn run(settings: &Settings) -> anyhow::Result<Vec<Figure>> {
    if settings.runs == 0 {
        bail!("at least one run is needed");
    }
    let (mut figures, slices) = map_read_figures(settings)?;

    // Drop order: the daemon (declared last) stops before the link goes.
    let topology = Topology::new(Stack::Ipv4).context("creating the veth topology")?;
    let senders = Senders::new(&topology)?;
    let mut portmon = Portmon::start(
        &settings.portmon,
        topology.host_if(),
        "1s",
        // The daemon logs each scrape's own timing at debug level.
        "info,portmon::daemon=debug",
    )?;
    eprintln!(
        "bench: portmon (pid {}) on {}, metrics on {}",
        portmon.pid(),
        topology.host_if(),
        portmon.addr()
    );
    let fresh = measure_fresh_idle(&portmon, settings)?;
    let memory_started = procfs::memory(portmon.pid())?;

    let state = traffic::realistic_state(&topology, &senders)?;
    eprintln!(
        "bench: state: {} frames ({} refused) in {:.1} s",
        state.sent,
        state.refused,
        state.elapsed.as_secs_f64()
    );
    let promoted = wait_for_promotions(&portmon)?;
    portmon.check_running()?;

    let scrapes = measure_scrapes(&portmon, settings)?;
    figures.extend(scrape_figures(&scrapes, promoted));
    portmon.check_running()?;

    let phase = measure_idle_and_flood(&portmon, &senders, &topology, settings)?;
    figures.extend(cpu_figures(&fresh, &phase, settings));
    portmon.check_running()?;

    let memory = procfs::memory(portmon.pid())?;
    figures.extend(memory_figures(&memory_started, &memory, slices));

    let mut client = Client::new(portmon.addr());
    client.timed_get("/metrics")?;
    let samples = parse_exposition(client.last_body()).context("parsing the last scrape")?;
    figures.push(Figure::info(
        "daemon_map_read_mean_ms",
        daemon_read_mean_ms(&samples),
        "ms",
        "the daemon's own map reads: histogram sum / count",
    ));
    figures.extend(server_scrape_figures(&portmon.log()));
    Ok(figures)
}

/// The map-read figures, and the number of slices of a counter map on this host.
fn map_read_figures(settings: &Settings) -> anyhow::Result<(Vec<Figure>, u32)> {
    let mut reader = map_read::MapReader::new()?;
    let runs: Vec<map_read::MapReadRun> = (0..settings.runs)
        .map(|_| reader.run(settings.map_reads))
        .collect();
    let of = |value: fn(&map_read::MapReadRun) -> f64| {
        median(&runs.iter().map(value).collect::<Vec<_>>())
    };
    #[expect(clippy::cast_precision_loss, reason = "a map size far below 2^52")]
    let map_mib = reader.map_bytes() as f64 / MIB;
    let slices = reader.slices();
    let figures = vec![
        Figure::checked(
            "map_read_ms",
            of(|r| r.read),
            "ms",
            Target::AtMost(2.0),
            &format!("CounterMap::read_into, {slices} slice(s), {map_mib:.1} MiB"),
        ),
        Figure::info(
            "memsum_ms",
            of(|r| r.memsum),
            "ms",
            "baseline: the same sum over heap memory",
        ),
        Figure::info(
            "map_read_vs_memsum_ratio",
            of(|r| r.read / r.memsum),
            "ratio",
            "map read / heap sum, same run",
        ),
        Figure::info(
            "memcpy_ms",
            of(|r| r.memcpy),
            "ms",
            "bandwidth: a copy of the map's size",
        ),
        Figure::info("map_mib", map_mib, "MiB", "one interface's counter map"),
    ];
    Ok((figures, slices))
}

/// Waits until every lane shows its top-K promoted busy ports; returns how many busy
/// ports have their own series.
fn wait_for_promotions(portmon: &Portmon) -> anyhow::Result<usize> {
    let expected = LANES * DEFAULT_TOP_K;
    let started = Instant::now();
    let mut client = Client::new(portmon.addr());
    loop {
        client.timed_get("/metrics")?;
        let samples = parse_exposition(client.last_body()).context("parsing a scrape")?;
        let promoted = samples
            .iter()
            .filter(|s| s.name == "portmon_packets_total")
            .filter(|s| {
                s.label("port")
                    .parse::<u16>()
                    .is_ok_and(|port| (30_000..30_000 + BUSY_PORTS).contains(&port))
            })
            .count();
        if promoted >= expected || started.elapsed() > PROMOTION_LIMIT {
            if promoted < expected {
                eprintln!(
                    "bench: warning: {promoted} busy ports have their own series, expected \
                     {expected} (4 lanes x K=20): the scrape is lighter than intended"
                );
            }
            return Ok(promoted);
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// One scrape run: quantiles in ms, and what the body held.
#[derive(Clone, Copy, Debug, Default)]
struct ScrapeRun {
    metrics_p99: f64,
    metrics_p50: f64,
    healthz_p99: f64,
    healthz_p50: f64,
    /// The daemon's CPU time per /metrics + /healthz pair, ms.
    cpu_per_pair: f64,
    bytes: usize,
    series: f64,
    budget: f64,
}

fn measure_scrapes(portmon: &Portmon, settings: &Settings) -> anyhow::Result<Vec<ScrapeRun>> {
    let mut client = Client::new(portmon.addr());
    // Warm the connection path and the daemon's allocator.
    for _ in 0..10 {
        client.timed_get("/metrics")?;
        client.timed_get("/healthz")?;
    }
    let mut runs = Vec::with_capacity(settings.runs);
    for run in 0..settings.runs {
        let (mut metrics, mut healthz) = (Vec::new(), Vec::new());
        let mut bytes = 0;
        let cpu_before = procfs::cpu(portmon.pid())?;
        for i in 0..settings.scrapes {
            // Alternate which goes first, so neither always follows the other.
            let metrics_first = (i + run) % 2 == 0;
            for is_metrics in [metrics_first, !metrics_first] {
                if is_metrics {
                    let (time, length) = client.timed_get("/metrics")?;
                    metrics.push(time.as_secs_f64() * 1e3);
                    bytes = length;
                } else {
                    healthz.push(client.timed_get("/healthz")?.0.as_secs_f64() * 1e3);
                }
            }
        }
        let cpu_after = procfs::cpu(portmon.pid())?;
        #[expect(clippy::cast_precision_loss, reason = "small counts")]
        let cpu_per_pair = cpu_after.exec_ns.saturating_sub(cpu_before.exec_ns) as f64
            / 1e6
            / settings.scrapes.max(1) as f64;
        client.timed_get("/metrics")?;
        let samples = parse_exposition(client.last_body()).context("parsing a scrape")?;
        runs.push(ScrapeRun {
            cpu_per_pair,
            metrics_p99: quantile(&metrics, 0.99),
            metrics_p50: quantile(&metrics, 0.5),
            healthz_p99: quantile(&healthz, 0.99),
            healthz_p50: quantile(&healthz, 0.5),
            bytes,
            series: gauge(&samples, "portmon_series"),
            budget: gauge(&samples, "portmon_series_budget"),
        });
    }
    Ok(runs)
}

fn gauge(samples: &[Sample], name: &str) -> f64 {
    samples
        .iter()
        .find(|s| s.name == name)
        .map_or(f64::NAN, |s| s.value)
}

#[expect(clippy::cast_precision_loss, reason = "small counts")]
fn scrape_figures(runs: &[ScrapeRun], promoted: usize) -> Vec<Figure> {
    let of = |value: fn(&ScrapeRun) -> f64| median(&runs.iter().map(value).collect::<Vec<_>>());
    vec![
        Figure::checked(
            "scrape_p99_ms",
            of(|r| r.metrics_p99),
            "ms",
            Target::AtMost(10.0),
            "GET /metrics from loopback, full budget (K=20) in use",
        ),
        Figure::info(
            "scrape_p50_ms",
            of(|r| r.metrics_p50),
            "ms",
            "median scrape",
        ),
        Figure::info(
            "healthz_p99_ms",
            of(|r| r.healthz_p99),
            "ms",
            "baseline: GET /healthz, interleaved",
        ),
        Figure::info("healthz_p50_ms", of(|r| r.healthz_p50), "ms", ""),
        Figure::info(
            "scrape_vs_healthz_p99_ratio",
            of(|r| r.metrics_p99 / r.healthz_p99),
            "ratio",
            "p99 /metrics / p99 /healthz, same run",
        ),
        Figure::info(
            "scrape_cpu_ms",
            of(|r| r.cpu_per_pair),
            "ms",
            "daemon CPU per /metrics + /healthz pair: blind to preemption",
        ),
        Figure::info(
            "scrape_bytes",
            of(|r| r.bytes as f64),
            "bytes",
            "response size",
        ),
        Figure::info(
            "scrape_series",
            of(|r| r.series),
            "series",
            "portmon_series (per-port series exported)",
        ),
        Figure::info(
            "series_budget",
            of(|r| r.budget),
            "series",
            "portmon_series_budget",
        ),
        Figure::info(
            "promoted_busy_series",
            promoted as f64,
            "series",
            "busy ports with their own series (4 lanes x K)",
        ),
    ]
}

/// CPU used over a window: from its first sample to its last.
type Window = (CpuSample, CpuSample);

/// `% of one core` over `window` by schedstat.
fn window_pct(window: &Window) -> f64 {
    procfs::cpu_pct(&window.0, &window.1).0
}

/// Sleeps `length` between two samples of `pid`'s CPU time.
fn cpu_window(pid: u32, length: Duration) -> anyhow::Result<Window> {
    let start = procfs::cpu(pid)?;
    thread::sleep(length);
    Ok((start, procfs::cpu(pid)?))
}

/// How long to wait before a window for the previous phase's work (a scrape, the last
/// frames of a flood) to be read and done with: one tick and a half.
fn settle() -> Duration {
    INTERVAL + INTERVAL / 2
}

/// `runs` idle windows on a daemon that has seen no traffic: every lane has free top-K
/// slots, so each tick also scans the lanes for ports to promote.
fn measure_fresh_idle(portmon: &Portmon, settings: &Settings) -> anyhow::Result<Vec<Window>> {
    thread::sleep(settle());
    (0..settings.runs)
        .map(|_| cpu_window(portmon.pid(), settings.cpu_window))
        .collect()
}

/// One run of the second CPU phase: an idle window and a flooded one.
#[derive(Clone, Copy, Debug)]
struct CpuRun {
    idle: Window,
    flood: Window,
    flood_report: FloodReport,
}

/// What the second CPU phase measured, with utime+stime and schedstat over its whole span
/// as a cross-check of the two sources.
struct CpuPhase {
    runs: Vec<CpuRun>,
    whole: Window,
}

fn measure_idle_and_flood(
    portmon: &Portmon,
    senders: &Senders,
    topology: &Topology,
    settings: &Settings,
) -> anyhow::Result<CpuPhase> {
    let pid = portmon.pid();
    let frames = traffic::flood_frames(topology);
    thread::sleep(settle());
    let phase_start = procfs::cpu(pid)?;
    let mut runs = Vec::with_capacity(settings.runs);
    for _ in 0..settings.runs {
        let idle = cpu_window(pid, settings.cpu_window)?;
        let stop = AtomicBool::new(false);
        let bound = settle() + settings.cpu_window + Duration::from_secs(5);
        let max_frames = settings.flood_rate * bound.as_secs();
        let (flood, flood_report) = thread::scope(|scope| {
            let flooder = scope.spawn(|| {
                traffic::flood(
                    senders.toward(Direction::Ingress),
                    &frames,
                    settings.flood_rate,
                    max_frames,
                    bound,
                    &stop,
                )
            });
            thread::sleep(settle());
            let window = cpu_window(pid, settings.cpu_window);
            stop.store(true, Ordering::Release);
            (window, flooder.join())
        });
        let flood_report =
            flood_report.map_err(|_| anyhow::anyhow!("the flood thread panicked"))?;
        runs.push(CpuRun {
            idle,
            flood: flood?,
            flood_report,
        });
        thread::sleep(settle());
    }
    Ok(CpuPhase {
        runs,
        whole: (phase_start, procfs::cpu(pid)?),
    })
}

fn cpu_figures(fresh: &[Window], phase: &CpuPhase, settings: &Settings) -> Vec<Figure> {
    let of = |windows: &mut dyn Iterator<Item = &Window>| {
        median(&windows.map(window_pct).collect::<Vec<_>>())
    };
    let fresh_pct = of(&mut fresh.iter());
    let (whole_sched, whole_stat) = procfs::cpu_pct(&phase.whole.0, &phase.whole.1);
    let window = settings.cpu_window.as_secs_f64();
    vec![
        Figure::checked(
            "idle_cpu_pct",
            fresh_pct,
            "%",
            Target::AtMost(0.5),
            &format!(
                "% of a core, 1 s interval, idle link, no traffic yet ({window:.0} s windows)"
            ),
        ),
        Figure::checked(
            "flood_cpu_pct",
            of(&mut phase.runs.iter().map(|r| &r.flood)),
            "%",
            Target::AtMost(0.5),
            "% of a core under the veth flood, every lane's top-K full",
        ),
        Figure::info(
            "idle_full_cpu_pct",
            of(&mut phase.runs.iter().map(|r| &r.idle)),
            "%",
            "idle link after the sweep, every lane's top-K full",
        ),
        Figure::info(
            "idle_cpu_ms_per_tick",
            fresh_pct / 100.0 * INTERVAL.as_secs_f64() * 1e3,
            "ms",
            "CPU per tick, idle: compare map_read_ms",
        ),
        Figure::info(
            "cpu_pct_stat_check",
            whole_stat,
            "%",
            "utime+stime (/proc/pid/stat) over the idle+flood phase",
        ),
        Figure::info(
            "cpu_pct_schedstat_check",
            whole_sched,
            "%",
            "schedstat over the same span (10 ms vs 1 ns resolution)",
        ),
        Figure::info(
            "flood_pps",
            median(
                &phase
                    .runs
                    .iter()
                    .map(|r| r.flood_report.pps())
                    .collect::<Vec<_>>(),
            ),
            "pps",
            &format!(
                "AF_PACKET frames from the peer (asked {} pps)",
                settings.flood_rate
            ),
        ),
    ]
}

#[expect(clippy::cast_precision_loss, reason = "memory sizes far below 2^52")]
fn memory_figures(started: &Memory, end: &Memory, slices: u32) -> Vec<Figure> {
    let mib = |bytes: u64| bytes as f64 / MIB;
    // The map's pages are the kernel's (vmalloc), mapped in: RSS counts them, but they are
    // not the process's own memory. Each slice more (one per possible CPU, up to the cap
    // of DEFAULT_MAX_SLICES) maps SLICE_BYTES more.
    let per_more_slices = u64::from(DEFAULT_MAX_SLICES.saturating_sub(slices)) * SLICE_BYTES;
    vec![
        Figure::checked(
            "rss_mib",
            mib(end.rss),
            "MiB",
            Target::AtMost(30.0),
            &format!("VmRSS after scrapes and floods, one interface, {slices} slice(s)"),
        ),
        Figure::info(
            "rss_start_mib",
            mib(started.rss),
            "MiB",
            "VmRSS after the idle windows, before any traffic",
        ),
        Figure::info("rss_peak_mib", mib(end.hwm), "MiB", "VmHWM"),
        Figure::info(
            "rss_bpf_maps_mib",
            mib(end.bpf_maps),
            "MiB",
            "mmaps of BPF maps (anon_inode:bpf-map): kernel pages",
        ),
        Figure::info(
            "rss_private_mib",
            mib(end.rss.saturating_sub(end.bpf_maps)),
            "MiB",
            "VmRSS without the mapped BPF maps",
        ),
        Figure::info(
            "rss_anon_mib",
            mib(end.anon),
            "MiB",
            &format!(
                "RssAnon: heap, stacks; {:.1} MiB of it the Totals buffer",
                mib(SLICE_BYTES)
            ),
        ),
        Figure::info(
            "rss_file_mib",
            mib(end.file),
            "MiB",
            "RssFile: the binary's pages and the BPF maps",
        ),
        Figure::info(
            "rss_executable_mib",
            mib(end.executable),
            "MiB",
            "of which the portmon binary's mappings",
        ),
        Figure::info("rss_shmem_mib", mib(end.shmem), "MiB", "RssShmem"),
        Figure::info(
            "rss_at_max_slices_mib",
            mib(end.rss + per_more_slices),
            "MiB",
            &format!(
                "estimate with {DEFAULT_MAX_SLICES} slices (>= {DEFAULT_MAX_SLICES} possible CPUs)"
            ),
        ),
    ]
}

/// Mean of the daemon's own map reads, from its histogram; NaN when absent.
fn daemon_read_mean_ms(samples: &[Sample]) -> f64 {
    let sum = gauge(samples, "portmon_map_read_duration_seconds_sum");
    let count = gauge(samples, "portmon_map_read_duration_seconds_count");
    1e3 * sum / count
}

/// The daemon's own timing of each scrape, from its debug log lines
/// `scrape: state gathered in <d>, <n> bytes in <d> in all`; empty when it logs none.
fn server_scrape_figures(log: &str) -> Vec<Figure> {
    let mut gathered = Vec::new();
    let mut total = Vec::new();
    for line in log.lines() {
        let Some(rest) = line
            .split_once("scrape: state gathered in ")
            .map(|(_, r)| r)
        else {
            continue;
        };
        let Some((gather, rest)) = rest.split_once(", ") else {
            continue;
        };
        let Some(all) = rest
            .split_once(" bytes in ")
            .and_then(|(_, r)| r.strip_suffix(" in all"))
        else {
            continue;
        };
        if let (Some(gather), Some(all)) = (parse_debug_duration(gather), parse_debug_duration(all))
        {
            gathered.push(gather.as_secs_f64() * 1e3);
            total.push(all.as_secs_f64() * 1e3);
        }
    }
    if total.is_empty() {
        return Vec::new();
    }
    vec![
        Figure::info(
            "server_scrape_p99_ms",
            quantile(&total, 0.99),
            "ms",
            "the daemon's render time, all scrapes (its debug log)",
        ),
        Figure::info("server_scrape_p50_ms", quantile(&total, 0.5), "ms", ""),
        Figure::info(
            "server_gather_p50_ms",
            quantile(&gathered, 0.5),
            "ms",
            "of which gathering the state (budget, labels)",
        ),
    ]
}

/// Parses a `Duration`'s `Debug` text (`12ns`, `3.5µs`, `1.25ms`, `2s`).
fn parse_debug_duration(text: &str) -> Option<Duration> {
    let units = [
        ("ns", 1e-9),
        ("µs", 1e-6),
        ("us", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
    ];
    units.iter().find_map(|&(unit, scale)| {
        let number: f64 = text.strip_suffix(unit)?.parse().ok()?;
        Some(Duration::from_secs_f64(number * scale))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_durations_parse() {
        let cases = [
            ("ns", "850ns", Some(Duration::from_nanos(850))),
            ("micro sign", "3.5µs", Some(Duration::from_nanos(3500))),
            ("ms", "1.25ms", Some(Duration::from_micros(1250))),
            ("s", "2s", Some(Duration::from_secs(2))),
            ("garbage", "fast", None),
        ];
        for (name, text, expected) in cases {
            assert_eq!(parse_debug_duration(text), expected, "{name}: {text:?}");
        }
    }

    #[test]
    fn server_scrape_lines_are_found() {
        let log = "[2025 DEBUG portmon::daemon] scrape: state gathered in 1.5ms, 4096 bytes in 2ms in all\n\
                   [2025 INFO portmon] something else\n";
        let figures = server_scrape_figures(log);
        assert_eq!(figures.len(), 3, "three figures from one line: {figures:?}");
        assert!(
            (figures[0].value - 2.0).abs() < 1e-9,
            "p99 of one 2 ms scrape, got {}",
            figures[0].value
        );
        assert!(server_scrape_figures("no such lines").is_empty());
    }
}
