//! `cargo xtask bench <target>`: the benchmarks, in release, as root, each writing its
//! figures to `target/bench/<target>.json` (under `CARGO_TARGET_DIR` when it is set).
//!
//! One function per target; `All` runs them in turn and fails if any failed. A missed
//! performance target is reported in the benchmark's table, not as a failure here: only
//! a measurement that could not be made fails.

use std::{path::PathBuf, process::Command, time::Instant};

use anyhow::bail;

use crate::{command, setup};

/// Which benchmark to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchTarget {
    /// The kernel data plane: cost per packet, contention, live floods, map memory.
    Kernel,
    /// The daemon: map read, scrape latency, CPU idle and under a flood, memory.
    Daemon,
    /// Every benchmark.
    All,
}

/// Runs `target`.
///
/// # Errors
/// When not root, when setup fails, or when a benchmark could not measure.
pub fn run(target: BenchTarget) -> anyhow::Result<()> {
    command::require_root("bench")?;
    setup::ensure()?;
    match target {
        BenchTarget::Kernel => kernel(),
        BenchTarget::Daemon => daemon(),
        BenchTarget::All => {
            let results = [("kernel", kernel()), ("daemon", daemon())];
            let failed: Vec<String> = results
                .into_iter()
                .filter_map(|(name, result)| result.err().map(|e| format!("{name}: {e:#}")))
                .collect();
            if !failed.is_empty() {
                bail!("benchmarks failed:\n  {}", failed.join("\n  "));
            }
            Ok(())
        }
    }
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, else `<workspace>/target`.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .map_or_else(|| PathBuf::from("target"), |root| root.join("target"))
        },
        PathBuf::from,
    )
}

/// Where a benchmark's JSON goes: `<target dir>/bench/<name>.json`.
fn output_path(name: &str) -> PathBuf {
    target_dir().join("bench").join(format!("{name}.json"))
}

/// `cargo xtask bench kernel`: builds and runs `bench-kernel` (crate `portmon-tests`,
/// feature `bench`, which brings the benchmark-only eBPF object).
fn kernel() -> anyhow::Result<()> {
    let out = output_path("kernel");
    let started = Instant::now();
    command::run(
        Command::new(env!("CARGO"))
            .args([
                "run",
                "--quiet",
                "--release",
                "--package",
                "portmon-tests",
                "--features",
                "bench",
                "--bin",
                "bench-kernel",
                "--",
                "--out",
            ])
            .arg(&out),
        "the kernel benchmark could not measure (its message is above)",
    )?;
    println!(
        "xtask: kernel benchmark done in {:.0} s (build included): {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

/// `cargo xtask bench daemon`: builds the release `portmon` binary and runs
/// `bench-daemon` (crate `portmon-tests`) against it: the real daemon on a veth pair.
fn daemon() -> anyhow::Result<()> {
    let out = output_path("daemon");
    let started = Instant::now();
    command::run(
        Command::new(env!("CARGO")).args([
            "build",
            "--quiet",
            "--release",
            "--package",
            "monitor",
            "--bin",
            "portmon",
        ]),
        "building the release portmon binary failed (its message is above)",
    )?;
    let portmon = target_dir().join("release").join("portmon");
    command::run(
        Command::new(env!("CARGO"))
            .args([
                "run",
                "--quiet",
                "--release",
                "--package",
                "portmon-tests",
                "--bin",
                "bench-daemon",
                "--",
                "--portmon",
            ])
            .arg(&portmon)
            .arg("--out")
            .arg(&out),
        "the daemon benchmark could not measure (its message is above)",
    )?;
    println!(
        "xtask: daemon benchmark done in {:.0} s (build included): {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}
