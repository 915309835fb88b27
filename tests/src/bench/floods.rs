//! The live figures of one run: the same flood received by a bare XDP_PASS program, by
//! portmon, and by a bare program plus an AF_PACKET ring counter, in interleaved rounds.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use monitor_common::layout::{Direction, L4};
use portmon::{
    bench_programs::{PASS_PROGRAM, TX_PROGRAM},
    counters::CounterMap,
    dataplane::DataPlane,
};

use super::{
    frames::flood_frame,
    live,
    programs::BenchObject,
    report::{Figure, Target, median},
    veth::VethPair,
};

/// The UDP port the floods are addressed to (discard; nothing listens on it).
const FLOOD_PORT: u16 = 9;
/// Rounds per run: each round floods every receiver once, in a rotating order, and
/// gives one ratio; the run's figure is the median over its rounds, so that a moment when
/// another process takes the flooding CPU spoils one round, not the figure.
const ROUNDS: u64 = 10;
/// Untimed frames before each timed flood, for warm caches and a settled NAPI ring.
const WARM_UP_FRAMES: u64 = 10_000;

#[expect(clippy::cast_precision_loss, reason = "frame counts far below 2^52")]
fn per_frame_ns(time: Duration, frames: u64) -> f64 {
    time.as_secs_f64() * 1e9 / frames.max(1) as f64
}

/// What one round measured.
#[derive(Clone, Copy, Debug, Default)]
struct Round {
    bare_pps: f64,
    bare_cpu_ns: f64,
    portmon_pps: f64,
    /// Frames counted by the ring reader per second, from the flood's start to the last
    /// counted frame.
    afpacket_pps: f64,
    afpacket_cpu_ns: f64,
    afpacket_reader_ns: f64,
    afpacket_reader_pct: f64,
}

/// What one run's floods measured.
#[derive(Clone, Debug, Default)]
pub struct LiveRun {
    rounds: Vec<Round>,
    /// |frames portmon counted - frames delivered to it|, summed over the rounds.
    portmon_count_error: u64,
    /// Frames veth dropped before the program under test (ring full), every receiver.
    veth_drops: u64,
    /// Frames sent but not counted by the ring reader, and frames the kernel dropped
    /// because the ring was full, summed over the rounds.
    afpacket_lost: u64,
    afpacket_kernel_drops: u64,
}

impl LiveRun {
    /// The median over this run's rounds of `value`.
    fn median(&self, value: impl Fn(&Round) -> f64) -> f64 {
        median(&self.rounds.iter().map(value).collect::<Vec<_>>())
    }
}

/// The receive paths a flood goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Receiver {
    Bare,
    Portmon,
    AfPacket,
}

/// Packets portmon counted on the flood port so far.
fn flood_port_packets(counters: &CounterMap) -> u64 {
    counters
        .read()
        .port(Direction::Ingress, L4::Udp, FLOOD_PORT)
        .packets
}

/// Runs `ROUNDS` rounds of floods of `frames / ROUNDS` frames each into every receiver.
///
/// # Errors
/// When attaching, a flood, or the ring fails.
pub fn measure(
    bench: &mut BenchObject,
    portmon: &mut DataPlane,
    pair: &VethPair,
    frames: u64,
    time_limit: Duration,
    rotation: usize,
) -> anyhow::Result<LiveRun> {
    let counters = portmon.counters()?;
    let frame = flood_frame(pair.peer_end, pair.host_end, FLOOD_PORT);
    let per_flood = (frames / ROUNDS).max(1);
    let order = [Receiver::Bare, Receiver::Portmon, Receiver::AfPacket];
    let mut run = LiveRun::default();
    let mut step = rotation;
    for _ in 0..ROUNDS {
        let mut round = Round::default();
        for _ in 0..order.len() {
            let receiver = order[step % order.len()];
            step += 1;
            // Bare and AF_PACKET: the bare program also enables the host end's NAPI, which
            // veth needs to accept the redirected frames.
            let link = match receiver {
                Receiver::Portmon => live::attach(portmon.xdp_mut()?, pair)?,
                Receiver::Bare | Receiver::AfPacket => {
                    live::attach(bench.xdp_mut(PASS_PROGRAM)?, pair)?
                }
            };
            let generator = bench.xdp(TX_PROGRAM)?;
            let measured = (|| -> anyhow::Result<()> {
                live::flood(pair, generator, &frame, WARM_UP_FRAMES, time_limit)
                    .context("warming up")?;
                match receiver {
                    Receiver::Bare => {
                        let flood = live::flood(pair, generator, &frame, per_flood, time_limit)?;
                        run.veth_drops += flood.dropped;
                        round.bare_pps = flood.pps();
                        round.bare_cpu_ns = per_frame_ns(flood.cpu, flood.delivered());
                    }
                    Receiver::Portmon => {
                        let before = flood_port_packets(&counters);
                        let flood = live::flood(pair, generator, &frame, per_flood, time_limit)?;
                        run.veth_drops += flood.dropped;
                        round.portmon_pps = flood.pps();
                        let delivered = flood.delivered();
                        run.portmon_count_error +=
                            settled_count(&counters, before, delivered).abs_diff(delivered);
                    }
                    Receiver::AfPacket => {
                        let ring = live::flood_counted_by_ring(
                            pair, generator, &frame, per_flood, time_limit,
                        )?;
                        run.veth_drops += ring.flood.dropped;
                        let counted = ring.counts.udp_packets(FLOOD_PORT);
                        let elapsed = ring
                            .report
                            .last_frame_at
                            .map_or(ring.flood.elapsed, |last| {
                                last.duration_since(ring.flood.started)
                            });
                        #[expect(clippy::cast_precision_loss, reason = "far below 2^52")]
                        let pps = counted as f64 / elapsed.as_secs_f64();
                        round.afpacket_pps = pps;
                        round.afpacket_cpu_ns =
                            per_frame_ns(ring.flood.cpu, ring.flood.delivered());
                        round.afpacket_reader_ns = per_frame_ns(ring.report.cpu, counted);
                        round.afpacket_reader_pct =
                            100.0 * ring.report.cpu.as_secs_f64() / elapsed.as_secs_f64();
                        run.afpacket_lost += ring.flood.delivered().saturating_sub(counted);
                        run.afpacket_kernel_drops += ring.report.kernel_drops;
                    }
                }
                Ok(())
            })();
            let detached = match receiver {
                Receiver::Portmon => live::detach(portmon.xdp_mut()?, pair, link),
                Receiver::Bare | Receiver::AfPacket => {
                    live::detach(bench.xdp_mut(PASS_PROGRAM)?, pair, link)
                }
            };
            measured.with_context(|| format!("flooding through {receiver:?}"))?;
            detached?;
        }
        run.rounds.push(round);
    }
    Ok(run)
}

/// Portmon's count since `before`, once it reaches `sent` or stops short of it.
///
/// Counting normally happens in the flood thread's softirq, so it is complete when the
/// flood returns; on a busy machine the NAPI poll is deferred to ksoftirqd, which may wait
/// behind other tasks, hence the generous bound.
fn settled_count(counters: &CounterMap, before: u64, sent: u64) -> u64 {
    let started = Instant::now();
    let mut counted = flood_port_packets(counters) - before;
    while counted < sent && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
        counted = flood_port_packets(counters) - before;
    }
    counted
}

/// The median over runs of each run's median over its rounds.
fn medians(runs: &[LiveRun], value: impl Fn(&Round) -> f64 + Copy) -> f64 {
    median(&runs.iter().map(|run| run.median(value)).collect::<Vec<_>>())
}

/// The live figures, medians over `runs`. `portmon_ns_per_packet` is portmon's cost per
/// packet over a bare program, from BPF_PROG_TEST_RUN: on a flood its share of the CPU is
/// a few ns out of microseconds per frame, below what the flood's own CPU time resolves.
#[must_use]
#[expect(clippy::cast_precision_loss, reason = "frame counts far below 2^52")]
pub fn figures(runs: &[LiveRun], portmon_ns_per_packet: f64) -> Vec<Figure> {
    if runs.is_empty() {
        return Vec::new();
    }
    let count_errors = runs.iter().map(|run| run.portmon_count_error).sum::<u64>() as f64;
    let per_run = |value: fn(&LiveRun) -> u64| {
        median(&runs.iter().map(|run| value(run) as f64).collect::<Vec<_>>())
    };
    vec![
        Figure::info(
            "bare_live_pps",
            medians(runs, |r| r.bare_pps),
            "pps",
            "veth flood into a bare XDP_PASS (native)",
        ),
        Figure::info(
            "portmon_live_pps",
            medians(runs, |r| r.portmon_pps),
            "pps",
            "veth flood into portmon_xdp (native)",
        ),
        Figure::checked(
            "live_pass_ratio",
            medians(runs, |r| r.portmon_pps / r.bare_pps),
            "ratio",
            Target::AtLeast(0.97),
            "portmon pps / bare pps, same round",
        ),
        Figure::checked(
            "live_count_errors",
            count_errors,
            "frames",
            Target::AtMost(0.0),
            "sum over all floods of |counted - delivered|",
        ),
        Figure::info(
            "live_veth_drops",
            runs.iter().map(|run| run.veth_drops).sum::<u64>() as f64,
            "frames",
            "dropped by veth before any XDP program (ring full), all runs",
        ),
        Figure::info(
            "portmon_cpu_pct",
            medians(runs, |r| portmon_ns_per_packet * r.portmon_pps / 1e7),
            "%",
            "of one CPU at portmon_live_pps: portmon_overhead_ns x pps",
        ),
        Figure::info(
            "afpacket_pps",
            medians(runs, |r| r.afpacket_pps),
            "pps",
            "frames counted by the TPACKET_V3 reader",
        ),
        Figure::info(
            "afpacket_ratio",
            medians(runs, |r| r.portmon_pps / r.afpacket_pps),
            "ratio",
            "portmon pps / AF_PACKET pps, same round",
        ),
        Figure::info(
            "afpacket_ring_cpu_ns",
            medians(runs, |r| r.afpacket_cpu_ns - r.bare_cpu_ns),
            "ns",
            "kernel side: flooding CPU per frame over bare (ring copy)",
        ),
        Figure::info(
            "afpacket_reader_cpu_ns",
            medians(runs, |r| r.afpacket_reader_ns),
            "ns",
            "user side: reader thread CPU per frame counted",
        ),
        Figure::info(
            "afpacket_cpu_pct",
            medians(runs, |r| {
                (r.afpacket_cpu_ns - r.bare_cpu_ns) * r.afpacket_pps / 1e7 + r.afpacket_reader_pct
            }),
            "%",
            "of one CPU at afpacket_pps: ring copy + reader",
        ),
        Figure::info(
            "afpacket_lost_frames",
            per_run(|run| run.afpacket_lost),
            "frames",
            "delivered but not counted by the reader, per run",
        ),
        Figure::info(
            "afpacket_kernel_drops",
            per_run(|run| run.afpacket_kernel_drops),
            "frames",
            "ring full (tp_drops), per run",
        ),
    ]
}
