//! `cargo xtask run -- ARGS`: the main job on a fresh machine in one command.

use std::process::Command;

use crate::{command, setup};

/// Sets up what is missing, builds portmon in release and runs it with `args`.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    command::require_root("run")?;
    setup::ensure()?;
    command::run(
        Command::new(env!("CARGO"))
            .args([
                "run",
                "--quiet",
                "--release",
                "--package",
                "monitor",
                "--bin",
                "portmon",
                "--",
            ])
            .args(args),
        "portmon exited with an error (its message is above)",
    )
}
