//! Cost per packet through BPF_PROG_TEST_RUN, for several programs on the same mix,
//! interleaved frame by frame so that drift on the machine hits every program alike.

use std::time::Duration;

use anyhow::{Context as _, bail};
use aya::{
    TestRunOptions,
    programs::{TestRun as _, Xdp},
};

use super::{cpu, frames::MixFrame};

/// XDP_PASS, from `include/uapi/linux/bpf.h`.
const XDP_PASS: u32 = 2;

/// A program taking part in a cost run.
#[derive(Clone, Copy)]
pub struct Contestant<'a> {
    /// Its name in the figures.
    pub name: &'static str,
    /// The loaded program.
    pub program: &'a Xdp,
}

/// What one program cost in one run, per packet, averaged over the mix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cost {
    /// From the thread's CPU time around the syscalls (ns resolution; time the thread
    /// is preempted is not counted).
    pub cpu_ns: f64,
    /// From the kernel's own `duration` (whole ns per repeat, truncated by the kernel).
    pub kernel_ns: f64,
}

/// What one run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct CostRun {
    /// Each contestant's cost over the whole mix, in contestant order.
    pub totals: Vec<Cost>,
    /// `per_frame[frame][contestant]`: CPU ns per packet of each frame of the mix.
    pub per_frame: Vec<Vec<f64>>,
}

/// Runs every frame of `mix` `repeat` times through every contestant, in an order rotated
/// by `rotation`, and returns each contestant's cost in `contestants` order.
///
/// # Errors
/// When a run fails or a program does not return XDP_PASS.
pub fn run(
    contestants: &[Contestant<'_>],
    mix: &[MixFrame],
    repeat: u32,
    rotation: usize,
) -> anyhow::Result<CostRun> {
    let n = contestants.len();
    let mut cpu_time = vec![Duration::ZERO; n];
    let mut kernel_time = vec![0_f64; n];
    let mut per_frame = Vec::with_capacity(mix.len());
    for frame in mix {
        let mut frame_ns = vec![0_f64; n];
        for step in 0..n {
            let index = (step + rotation) % n;
            let contestant = contestants[index];
            let before = cpu::thread_cpu_time();
            let result = contestant
                .program
                .test_run(TestRunOptions {
                    data_in: Some(&frame.bytes),
                    repeat,
                    ..TestRunOptions::default()
                })
                .with_context(|| {
                    format!("BPF_PROG_TEST_RUN of {} on {}", contestant.name, frame.name)
                })?;
            let spent = cpu::thread_cpu_time().saturating_sub(before);
            cpu_time[index] += spent;
            frame_ns[index] = spent.as_secs_f64() * 1e9 / f64::from(repeat);
            if result.return_value != XDP_PASS {
                bail!(
                    "{} returned {} on {}, expected XDP_PASS",
                    contestant.name,
                    result.return_value,
                    frame.name
                );
            }
            #[expect(clippy::cast_precision_loss, reason = "ns counts far below 2^52")]
            {
                kernel_time[index] += result.duration.as_nanos() as f64;
            }
        }
        per_frame.push(frame_ns);
    }
    let frames = f64::from(u32::try_from(mix.len()).context("a mix of over 2^32 frames")?);
    let packets = f64::from(repeat) * frames;
    let totals = cpu_time
        .iter()
        .zip(&kernel_time)
        .map(|(cpu, kernel)| Cost {
            cpu_ns: cpu.as_secs_f64() * 1e9 / packets,
            // The kernel reports the mean per repeat, so the mean over frames is the mean.
            kernel_ns: kernel / frames,
        })
        .collect();
    Ok(CostRun { totals, per_frame })
}
