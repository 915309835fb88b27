//! Two CPUs counting at once: the same port, then different ports.
//!
//! A layout where CPUs share counters pays for it when they hit the same one (the cache
//! line bounces between them, and atomic adds serialize); a layout with one slice per CPU
//! must not care. The figure is the throughput with the same port over the throughput with
//! different ports, measured back to back.

use std::sync::Barrier;

use anyhow::{Context as _, anyhow, bail};
use aya::{
    TestRunOptions,
    programs::{TestRun as _, Xdp},
};

use super::{cpu, frames::udp_frame};

/// The port both CPUs hit in the "same" case, and the two ports of the "distinct" case:
/// far apart, so that they do not share a cache line even where CPUs share a slice.
const SAME_PORT: u16 = 5353;
const OTHER_PORT: u16 = 8080;

/// Throughput of the two CPUs together, in packets per CPU-nanosecond, with each thread
/// running `frames[i]` `repeat` times on CPU `i`.
fn throughput(program: &Xdp, frames: [&[u8]; 2], repeat: u32) -> anyhow::Result<f64> {
    if cpu::usable_cpus() < 2 {
        bail!("the contention figure needs two CPUs, this process may use one");
    }
    let barrier = Barrier::new(2);
    let per_thread: Vec<anyhow::Result<f64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = frames
            .iter()
            .enumerate()
            .map(|(cpu_index, frame)| {
                let barrier = &barrier;
                scope.spawn(move || -> anyhow::Result<f64> {
                    cpu::pin_to(cpu_index)
                        .with_context(|| format!("pinning a thread to CPU {cpu_index}"))?;
                    barrier.wait();
                    let before = cpu::thread_cpu_time();
                    program
                        .test_run(TestRunOptions {
                            data_in: Some(frame),
                            repeat,
                            ..TestRunOptions::default()
                        })
                        .with_context(|| format!("BPF_PROG_TEST_RUN on CPU {cpu_index}"))?;
                    let spent = cpu::thread_cpu_time().saturating_sub(before);
                    Ok(spent.as_secs_f64() * 1e9 / f64::from(repeat))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(anyhow!("a contention thread panicked")))
            })
            .collect()
    });
    let mut total = 0.0;
    for ns in per_thread {
        total += 1.0 / ns?;
    }
    Ok(total)
}

/// One measurement of throughput(same port) / throughput(different ports); `flip` swaps
/// which case runs first, so that alternating runs cancel any order effect.
///
/// # Errors
/// When a thread cannot be pinned or a run fails.
pub fn same_vs_distinct(program: &Xdp, repeat: u32, flip: bool) -> anyhow::Result<f64> {
    let same = udp_frame(SAME_PORT);
    let other = udp_frame(OTHER_PORT);
    let same_case = [same.as_slice(), same.as_slice()];
    let distinct_case = [same.as_slice(), other.as_slice()];
    let (same_tp, distinct_tp) = if flip {
        let distinct_tp = throughput(program, distinct_case, repeat)?;
        (throughput(program, same_case, repeat)?, distinct_tp)
    } else {
        let same_tp = throughput(program, same_case, repeat)?;
        (same_tp, throughput(program, distinct_case, repeat)?)
    };
    Ok(same_tp / distinct_tp)
}
