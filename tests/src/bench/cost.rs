//! Cost per packet through BPF_PROG_TEST_RUN, for several programs on the same mix,
//! interleaved frame by frame so that drift on the machine hits every program alike.

use anyhow::{Context as _, bail};
use aya::{
    TestRunOptions,
    programs::{TestRun as _, Xdp},
};

use super::{cpu, frames::MixFrame, report::median};

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

/// Short rounds per frame and program: each `test_run` call repeats a frame
/// `repeat / ROUNDS` times, and the programs take turns round by round. A burst of
/// noise from the host (this is a shared VM) then hits one round of every program alike
/// instead of all of one program's repeats, and the median over rounds leaves it out.
pub const ROUNDS: u32 = 25;

/// Runs every frame of `mix` `repeat` times through every contestant, interleaved in
/// [`ROUNDS`] rounds whose program order is rotated by `rotation` and by the round, and
/// returns each contestant's cost in `contestants` order: per frame the median over
/// rounds, over the mix the mean of those.
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
    let per_call = (repeat / ROUNDS).max(1);
    // samples[frame][contestant]: (cpu ns, kernel ns) per packet of each round.
    let mut samples = vec![vec![Vec::<(f64, f64)>::new(); n]; mix.len()];
    for round in 0..ROUNDS as usize {
        for (frame, frame_samples) in mix.iter().zip(&mut samples) {
            for step in 0..n {
                let index = (step + rotation + round) % n;
                let sample = run_once(contestants[index], frame, per_call)?;
                frame_samples[index].push(sample);
            }
        }
    }
    let per_frame_costs: Vec<Vec<Cost>> = samples
        .iter()
        .map(|frame| {
            frame
                .iter()
                .map(|rounds| {
                    let cpu: Vec<f64> = rounds.iter().map(|(cpu, _)| *cpu).collect();
                    let kernel: Vec<f64> = rounds.iter().map(|(_, kernel)| *kernel).collect();
                    Cost {
                        cpu_ns: median(&cpu),
                        kernel_ns: median(&kernel),
                    }
                })
                .collect()
        })
        .collect();
    let frames = f64::from(u32::try_from(mix.len()).context("a mix of over 2^32 frames")?);
    let totals = (0..n)
        .map(|index| Cost {
            cpu_ns: per_frame_costs.iter().map(|f| f[index].cpu_ns).sum::<f64>() / frames,
            kernel_ns: per_frame_costs
                .iter()
                .map(|f| f[index].kernel_ns)
                .sum::<f64>()
                / frames,
        })
        .collect();
    let per_frame = per_frame_costs
        .iter()
        .map(|frame| frame.iter().map(|cost| cost.cpu_ns).collect())
        .collect();
    Ok(CostRun { totals, per_frame })
}

/// One `test_run` call: `repeat` runs of `frame` through `contestant`, as (CPU ns, kernel
/// ns) per packet.
fn run_once(
    contestant: Contestant<'_>,
    frame: &MixFrame,
    repeat: u32,
) -> anyhow::Result<(f64, f64)> {
    let before = cpu::thread_cpu_time();
    let result = contestant
        .program
        .test_run(TestRunOptions {
            data_in: Some(&frame.bytes),
            repeat,
            ..TestRunOptions::default()
        })
        .with_context(|| format!("BPF_PROG_TEST_RUN of {} on {}", contestant.name, frame.name))?;
    let spent = cpu::thread_cpu_time().saturating_sub(before);
    if result.return_value != XDP_PASS {
        bail!(
            "{} returned {} on {}, expected XDP_PASS",
            contestant.name,
            result.return_value,
            frame.name
        );
    }
    #[expect(clippy::cast_precision_loss, reason = "ns counts far below 2^52")]
    let kernel_ns = result.duration.as_nanos() as f64;
    Ok((spent.as_secs_f64() * 1e9 / f64::from(repeat), kernel_ns))
}
