//! Project tasks cargo cannot do alone. Each subcommand lives in its own module.

mod bench;
mod command;
mod demo;
mod dist;
mod fuzz;
mod run;
mod setup;
mod test;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};

/// portmon's project tasks.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Sandbox demo: portmon on a veth with HTTPS, SSH, DNS, HTTP, a telnet burst and a port
    /// scan, then the live view; Ctrl-C removes everything it created.
    Demo {
        /// How long it runs before cleaning up by itself: 30s, 10m, 1h.
        #[arg(long, default_value = "10m", value_parser = demo::parse_duration)]
        duration: Duration,
        /// No `portmon top`: print a summary line every few seconds (for scripts).
        #[arg(long)]
        no_top: bool,
        /// Address of portmon's metrics endpoint [default: 127.0.0.1:9797, another port if taken].
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Use this portmon binary instead of building one in release.
        #[arg(long, value_name = "PATH")]
        portmon: Option<PathBuf>,
        /// Write the last scrape of /metrics to this file before cleaning up.
        #[arg(long, value_name = "FILE")]
        metrics_out: Option<PathBuf>,
    },
    /// Install what this machine lacks (apt packages, bpf-linker, nightly rust-src, bpffs).
    Setup,
    /// Set up, build in release and run `portmon` with the given arguments (as root).
    Run {
        /// Arguments for `portmon`, e.g. `run --iface eth0`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run a benchmark (in release, as root) and write target/bench/<name>.json.
    Bench {
        /// Which benchmark.
        #[arg(value_enum, default_value_t = BenchChoice::All)]
        target: BenchChoice,
    },
    /// Build the release tarball: static binary with the eBPF object, unit, rules, dashboard, manifests.
    Dist,
    /// Fuzz the shared packet parser with cargo-fuzz (libFuzzer) for a bounded time.
    Fuzz {
        /// How long to fuzz, in seconds.
        #[arg(default_value_t = 60)]
        seconds: u64,
    },
    /// Run every test: unit, BPF_PROG_TEST_RUN and network-namespace integration tests.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cargo_args: Vec<String>,
    },
}

/// The benchmarks `cargo xtask bench` knows.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum BenchChoice {
    /// The kernel data plane: cost per packet, contention, live floods, map memory.
    Kernel,
    /// The daemon: map reads, scrapes, CPU, memory.
    Daemon,
    /// Every benchmark.
    All,
}

impl From<BenchChoice> for bench::BenchTarget {
    fn from(choice: BenchChoice) -> Self {
        match choice {
            BenchChoice::Kernel => bench::BenchTarget::Kernel,
            BenchChoice::Daemon => bench::BenchTarget::Daemon,
            BenchChoice::All => bench::BenchTarget::All,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::Bench { target } => bench::run(target.into()),
        Task::Demo {
            duration,
            no_top,
            listen,
            portmon,
            metrics_out,
        } => demo::run(&demo::Options {
            duration,
            no_top,
            listen,
            portmon,
            metrics_out,
        }),
        Task::Dist => setup::ensure().and_then(|()| dist::run()),
        Task::Fuzz { seconds } => setup::ensure().and_then(|()| fuzz::run(seconds)),
        Task::Run { args } => run::run(&args),
        Task::Test { cargo_args } => test::run(&cargo_args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}
