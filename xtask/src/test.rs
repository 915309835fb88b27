//! `cargo xtask test`: every test, as root, after making sure the machine is set up.
//!
//! `cargo test` on the default members runs the unit tests, the BPF_PROG_TEST_RUN tables,
//! the differential test and the network-namespace integration tests (crate `portmon-tests`).

use std::process::Command;

use crate::{command, setup};

/// Runs every test; `cargo_args` are passed on to `cargo test` (e.g. a name filter).
pub fn run(cargo_args: &[String]) -> anyhow::Result<()> {
    command::require_root("test")?;
    setup::ensure()?;
    command::run(
        Command::new(env!("CARGO"))
            .args(["test", "--no-fail-fast"])
            .args(cargo_args),
        "tests failed (see the output above)",
    )
}
