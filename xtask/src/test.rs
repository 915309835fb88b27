//! `cargo xtask test`: every test, as root, after making sure the machine is set up.
//!
//! `cargo test` on the default members runs the unit tests, the BPF_PROG_TEST_RUN tables,
//! the differential test and the network-namespace integration tests (crate `portmon-tests`).
//! The output of every test binary is streamed, and one closing line totals them all.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::{command, setup};

/// Runs every test; `cargo_args` are passed on to `cargo test` (e.g. a name filter).
pub fn run(cargo_args: &[String]) -> anyhow::Result<()> {
    command::require_root("test")?;
    setup::ensure()?;
    let mut child = Command::new(env!("CARGO"))
        .args(["test", "--no-fail-fast"])
        .args(cargo_args)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    let stdout = child.stdout.take().context("cargo test has no stdout")?;
    let mut totals = Totals::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        println!("{line}");
        totals.add(&line);
    }
    let status = child.wait().context("waiting for cargo test")?;
    println!(
        "\nportmon: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if !status.success() {
        bail!("tests failed (see the output above)");
    }
    if totals.passed == 0 {
        bail!("no test ran: check the filter");
    }
    Ok(())
}

/// Sums of libtest's `test result:` lines.
#[derive(Debug, Default, PartialEq, Eq)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    /// Adds a line like `test result: ok. 7 passed; 0 failed; 1 ignored; 0 measured; ...`.
    fn add(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(label), Some(count)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            match label {
                "passed" => self.passed += count,
                "failed" => self.failed += count,
                "ignored" => self.ignored += count,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Totals;

    #[test]
    fn sums_libtest_result_lines() {
        let mut totals = Totals::default();
        totals.add("test result: ok. 7 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s");
        totals
            .add("test result: FAILED. 2 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out");
        totals.add("running 7 tests");
        assert_eq!(
            totals,
            Totals {
                passed: 9,
                failed: 3,
                ignored: 1
            }
        );
    }
}
