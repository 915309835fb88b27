//! Project tasks cargo cannot do alone. Each subcommand lives in its own module.

mod command;
mod fuzz;
mod run;
mod setup;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// portmon's project tasks.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what this machine lacks (apt packages, bpf-linker, nightly rust-src, bpffs).
    Setup,
    /// Set up, build in release and run `portmon` with the given arguments (as root).
    Run {
        /// Arguments for `portmon`, e.g. `run --iface eth0`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run(),
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
