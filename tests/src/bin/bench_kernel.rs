//! `bench-kernel`: the kernel benchmark of issue 2. Run through `cargo xtask bench kernel`
//! (root, release build); prints the figures with PASS/MISS per target and writes them
//! as JSON. A missed target is reported, not an error: the exit status says whether the
//! measurements could be made.

use std::{path::PathBuf, process::ExitCode, time::Instant};

use anyhow::{Context as _, bail};
use portmon_tests::bench::{
    kernel::{self, Settings},
    report,
};

const USAGE: &str =
    "usage: bench-kernel [--out PATH] [--runs N] [--quick] [--skip-live] [--per-frame]
  --out PATH   where to write the JSON figures (default target/bench/kernel.json)
  --runs N     runs to take medians over (default 5, at least 5 for the issue's figures)
  --quick      a tenth of the repeats and frames, for trying the benchmark out
  --skip-live  no veth floods (live and AF_PACKET figures)
  --per-frame  also print each program's cost per frame of the mix
  --alt-object PATH
               also measure another build of portmon's kernel object (for example a
               copy of target/release/build/monitor-*/out/portmon from an older commit)
               in the same runs, as contestant `alt`";

struct Args {
    out: PathBuf,
    settings: Settings,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut out = PathBuf::from("target/bench/kernel.json");
    let mut settings = Settings::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = args.next().context("--out needs a path")?.into(),
            "--runs" => {
                settings.runs = args
                    .next()
                    .context("--runs needs a number")?
                    .parse()
                    .context("--runs needs a number")?;
            }
            "--quick" => {
                settings.cost_repeat /= 10;
                settings.contention_repeat /= 10;
                settings.live_frames /= 10;
            }
            "--skip-live" => settings.skip_live = true,
            "--per-frame" => settings.per_frame = true,
            "--alt-object" => {
                settings.alt_object = Some(
                    args.next()
                        .context("--alt-object needs the path of a kernel object")?
                        .into(),
                );
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(Args { out, settings })
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-kernel: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = parse_args()?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the kernel benchmark loads eBPF programs and creates namespaces: run it as root");
    }
    let started = Instant::now();
    let figures = kernel::run(&args.settings)?;
    println!("{}", report::table(&figures));
    report::write_json(&args.out, &figures)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let missed = figures.iter().filter(|f| f.status() == "MISS").count();
    println!(
        "kernel benchmark: {} figures, {missed} target(s) missed, {:.0} s; written to {}",
        figures.len(),
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}
