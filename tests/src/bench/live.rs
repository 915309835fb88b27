//! Live throughput: a flood of real frames through a veth into the program under test,
//! attached in native (driver) mode on the host end.
//!
//! The flood: `bench_tx` (returns XDP_TX) is run with BPF_F_TEST_XDP_LIVE_FRAMES from a
//! thread inside the peer's namespace, with `ingress_ifindex` the peer interface. In live
//! mode the kernel turns XDP_TX into a redirect out of that interface (net/bpf/test_run.c,
//! `xdp_test_run_batch`, v5.18+, commit b530e9e1063e "bpf: Add "live packet" mode for XDP
//! in BPF_PROG_RUN"), so every frame crosses the veth (`veth_xdp_xmit`) and lands in the
//! host end's NAPI ring, where the attached XDP program runs on it natively
//! (`veth_xdp_rcv`) before XDP_PASS hands it to the host's stack. veth accepts redirected
//! frames only while its peer has an XDP program (or GRO) enabling NAPI, which every
//! variant here does.
//!
//! Batches of [`BATCH`] frames stay below veth's 256-entry ring, and the host end's NAPI
//! poll normally runs in the flooding thread's softirq at the end of each batch. When the
//! machine is busy the kernel defers that softirq to ksoftirqd, the ring fills up and veth
//! drops frames before any XDP program sees them; the host end counts those in its
//! `rx_dropped`. So a flood reports frames sent and frames dropped, and portmon's count must
//! equal the difference: the frames its program ran on.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    TestRunAttrs, TestRunOptions,
    programs::{TestRun as _, Xdp, xdp::XdpLinkId},
};

use super::{
    afpacket::{Counts, Ring, RingReport},
    cpu,
    veth::{VethPair, ifindex},
};

/// Frames per XDP live-frames batch (the kernel's default; at most 256).
pub const BATCH: u32 = 64;
/// Frames per BPF_PROG_TEST_RUN call, so the time bound is checked between calls.
const CHUNK: u32 = 1 << 16;
/// The CPU the flood (and the host end's softirq work) runs on.
const FLOOD_CPU: usize = 0;
/// The CPU the AF_PACKET reader runs on.
const READER_CPU: usize = 1;

/// `struct xdp_md` as BPF_PROG_TEST_RUN takes it in `ctx_in`.
fn xdp_md(frame_len: usize, ingress_ifindex: u32) -> [u8; 24] {
    let fields = [
        0,                                     // data
        u32::try_from(frame_len).unwrap_or(0), // data_end: must be the frame's length
        0,                                     // data_meta
        ingress_ifindex,                       // ingress_ifindex
        0,                                     // rx_queue_index
        0,                                     // egress_ifindex
    ];
    let mut out = [0; 24];
    for (chunk, field) in out.chunks_exact_mut(4).zip(fields) {
        chunk.copy_from_slice(&field.to_ne_bytes());
    }
    out
}

/// What one flood did.
#[derive(Clone, Copy, Debug)]
pub struct Flood {
    /// Frames sent.
    pub frames: u64,
    /// Frames the host end dropped before its XDP program saw them: its NAPI ring was full
    /// because the softirq that drains it was deferred (the machine was busy).
    pub dropped: u64,
    /// When it started.
    pub started: Instant,
    /// Wall time of the BPF_PROG_TEST_RUN calls, the receive side's work included.
    pub elapsed: Duration,
    /// CPU time of the flooding thread (generator, veth, XDP program and stack).
    pub cpu: Duration,
}

impl Flood {
    /// Frames that reached the program under test.
    #[must_use]
    pub fn delivered(&self) -> u64 {
        self.frames.saturating_sub(self.dropped)
    }

    /// Frames delivered per second.
    #[must_use]
    pub fn pps(&self) -> f64 {
        #[expect(clippy::cast_precision_loss, reason = "frame counts far below 2^52")]
        let frames = self.delivered() as f64;
        frames / self.elapsed.as_secs_f64()
    }
}

/// The host end's `rx_dropped`, which counts the frames `veth_xdp_xmit` could not put in
/// its ring (`peer_tq_xdp_xmit_err`, drivers/net/veth.c, `veth_get_stats64`).
fn rx_dropped(interface: &str) -> anyhow::Result<u64> {
    let path = format!("/sys/class/net/{interface}/statistics/rx_dropped");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.trim()
        .parse()
        .with_context(|| format!("{path} holds {text:?}, not a number"))
}

/// Sends `frames` copies of `frame` from the peer namespace through the veth, within
/// `time_limit`.
///
/// # Errors
/// When the namespace cannot be entered or a run fails; also when the time limit cuts the
/// flood short.
pub fn flood(
    pair: &VethPair,
    generator: &Xdp,
    frame: &[u8],
    frames: u64,
    time_limit: Duration,
) -> anyhow::Result<Flood> {
    let dropped_before = rx_dropped(&pair.host)?;
    let mut flood = std::thread::scope(|scope| {
        scope
            .spawn(|| flood_from_namespace(pair, generator, frame, frames, time_limit))
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the flood thread panicked")))
    })?;
    flood.dropped = rx_dropped(&pair.host)?.saturating_sub(dropped_before);
    Ok(flood)
}

fn flood_from_namespace(
    pair: &VethPair,
    generator: &Xdp,
    frame: &[u8],
    frames: u64,
    time_limit: Duration,
) -> anyhow::Result<Flood> {
    cpu::pin_to(FLOOD_CPU).context("pinning the flood thread")?;
    pair.enter_namespace()?;
    let peer = ifindex(&pair.peer)?;
    let context = xdp_md(frame.len(), peer);
    let started = Instant::now();
    let cpu_before = cpu::thread_cpu_time();
    let mut sent = 0;
    while sent < frames {
        if started.elapsed() > time_limit {
            bail!("the flood sent {sent} of {frames} frames in {time_limit:?}: too slow");
        }
        let repeat = u32::try_from((frames - sent).min(u64::from(CHUNK))).unwrap_or(CHUNK);
        generator
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(&context),
                repeat,
                attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                ..TestRunOptions::default()
            })
            .context("BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES")?;
        sent += u64::from(repeat);
    }
    Ok(Flood {
        frames: sent,
        dropped: 0,
        started,
        elapsed: started.elapsed(),
        cpu: cpu::thread_cpu_time().saturating_sub(cpu_before),
    })
}

/// Attaches `program` to the host end in native (driver) mode. It stays attached until
/// [`detach`] or until its object is dropped.
///
/// # Errors
/// When the kernel refuses (a veth without native XDP would be a kernel before 4.19).
pub fn attach(program: &mut Xdp, pair: &VethPair) -> anyhow::Result<XdpLinkId> {
    program
        .attach(&pair.host, aya::programs::XdpMode::Driver)
        .with_context(|| format!("attaching XDP in native mode to {}", pair.host))
}

/// Detaches what [`attach`] attached.
///
/// # Errors
/// When the kernel refuses.
pub fn detach(program: &mut Xdp, pair: &VethPair, link: XdpLinkId) -> anyhow::Result<()> {
    program
        .detach(link)
        .with_context(|| format!("detaching XDP from {}", pair.host))
}

/// A flood counted by the AF_PACKET reader.
pub struct RingFlood {
    /// The flood.
    pub flood: Flood,
    /// What user space counted.
    pub counts: Counts,
    /// How the reader fared.
    pub report: RingReport,
}

/// Floods while a TPACKET_V3 reader on its own CPU counts what arrives on the host end.
///
/// # Errors
/// When the ring cannot be set up or the flood fails.
pub fn flood_counted_by_ring(
    pair: &VethPair,
    generator: &Xdp,
    frame: &[u8],
    frames: u64,
    time_limit: Duration,
) -> anyhow::Result<RingFlood> {
    let ring = Ring::open(ifindex(&pair.host)?).context("opening the AF_PACKET ring")?;
    let flood_done = AtomicBool::new(false);
    let ready = std::sync::Barrier::new(2);
    let deadline = Instant::now() + time_limit + Duration::from_secs(2);
    let (flood_done, ready) = (&flood_done, &ready);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let pinned = cpu::pin_to(READER_CPU);
            ready.wait();
            pinned.context("pinning the AF_PACKET reader")?;
            anyhow::Ok(ring.count(frames, flood_done, deadline))
        });
        ready.wait();
        let flood = flood(pair, generator, frame, frames, time_limit);
        flood_done.store(true, Ordering::Release);
        let counted = reader
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the AF_PACKET reader panicked")));
        let flood = flood?;
        let (counts, report) = counted?;
        Ok(RingFlood {
            flood,
            counts,
            report,
        })
    })
}
