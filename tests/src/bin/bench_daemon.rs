//! `bench-daemon`: the daemon benchmark of issue 3. Run through `cargo xtask bench daemon`
//! (root, release build); prints the figures with PASS/MISS per target and writes them
//! as JSON. A missed target is reported, not an error: the exit status says whether the
//! measurements could be made.

use std::{path::PathBuf, process::ExitCode, time::Instant};

use anyhow::{Context as _, bail};
use portmon_tests::bench::{
    daemon::{self, Settings},
    report,
};

const USAGE: &str = "usage: bench-daemon [--out PATH] [--portmon PATH] [--runs N] [--quick]
  --out PATH      where to write the JSON figures (default target/bench/daemon.json)
  --portmon PATH  the release portmon binary (default: PORTMON_BIN, else `portmon` next
                  to this executable, where `cargo build --release` puts it)
  --runs N        runs to take medians over (default 5, at least 5 for the issue's figures)
  --quick         fewer reads and scrapes and 3 s CPU windows, for trying the benchmark out";

fn default_portmon() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PORTMON_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    Ok(exe.with_file_name("portmon"))
}

fn parse_args() -> anyhow::Result<(PathBuf, Settings)> {
    let mut out = PathBuf::from("target/bench/daemon.json");
    let mut settings = Settings::new(default_portmon()?);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = args.next().context("--out needs a path")?.into(),
            "--portmon" => settings.portmon = args.next().context("--portmon needs a path")?.into(),
            "--runs" => {
                settings.runs = args
                    .next()
                    .context("--runs needs a number")?
                    .parse()
                    .context("--runs needs a number")?;
            }
            "--quick" => {
                settings.map_reads /= 10;
                settings.scrapes /= 10;
                settings.cpu_window = std::time::Duration::from_secs(3);
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if !settings.portmon.exists() {
        bail!(
            "no portmon binary at {}: build it with `cargo build --release -p monitor --bin \
             portmon` or pass --portmon",
            settings.portmon.display()
        );
    }
    Ok((out, settings))
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-daemon: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let (out, settings) = parse_args()?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the daemon benchmark attaches eBPF programs and creates namespaces: run it as root");
    }
    let started = Instant::now();
    let figures = daemon::run(&settings)?;
    println!("{}", report::table(&figures));
    report::write_json(&out, &figures).with_context(|| format!("writing {}", out.display()))?;
    let missed = figures.iter().filter(|f| f.status() == "MISS").count();
    println!(
        "daemon benchmark: {} figures, {missed} target(s) missed, {:.0} s; written to {}",
        figures.len(),
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}
