//! `cargo xtask fuzz`: runs the parser's cargo-fuzz target for a bounded time.
//!
//! The target lives in `fuzz/`, its own workspace, built by cargo-fuzz with the nightly
//! toolchain (libFuzzer needs `-Zsanitizer`). cargo-fuzz is installed from crates.io when
//! missing. Findings land in `fuzz/artifacts/parser/`, the growing corpus in
//! `fuzz/corpus/parser/` (both ignored by git). The fuzzer starts from the committed seeds
//! in `fuzz/seeds/parser/`: the frames of the packet-shape table (`portmon_tests::frames`),
//! which reach the IPv6 extension-header walk and the fragment rules far sooner than
//! random bytes do.

use std::{fs, path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

use crate::command;

/// The fuzz target for `monitor_common::parse::parse`.
const TARGET: &str = "parser";
/// The toolchain cargo-fuzz needs.
const NIGHTLY: &str = "+nightly";

/// Installs cargo-fuzz if it is missing, then fuzzes the parser for `seconds` seconds.
///
/// # Errors
/// When cargo-fuzz cannot be installed, the target does not build, or the fuzzer finds
/// a crash or a broken invariant (its input is saved under `fuzz/artifacts/parser/`).
pub fn run(seconds: u64) -> anyhow::Result<()> {
    if seconds == 0 {
        bail!("fuzzing for 0 seconds would test nothing: give a positive number of seconds");
    }
    ensure_cargo_fuzz()?;
    let root = workspace_root()?;
    // libFuzzer writes new inputs into the first corpus directory and only reads the rest.
    let corpus = format!("fuzz/corpus/{TARGET}");
    let seeds = format!("fuzz/seeds/{TARGET}");
    fs::create_dir_all(root.join(&corpus)).with_context(|| format!("creating {corpus}"))?;
    println!("fuzz: running target `{TARGET}` for {seconds} s (cargo +nightly fuzz run)");
    command::run(
        Command::new("cargo")
            .current_dir(&root)
            .args([NIGHTLY, "fuzz", "run", "--fuzz-dir", "fuzz", TARGET])
            .args([&corpus, &seeds, "--"])
            .arg(format!("-max_total_time={seconds}")),
        "fuzzing the parser (a failure's input is saved under fuzz/artifacts/parser/; \
         replay it with `cargo +nightly fuzz run --fuzz-dir fuzz parser <file>`)",
    )?;
    println!("fuzz: no crash and no broken invariant in {seconds} s");
    Ok(())
}

/// Installs cargo-fuzz from crates.io unless it already runs.
fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    if command::succeeds(Command::new("cargo").args(["fuzz", "--version"])) {
        println!("fuzz: cargo-fuzz is installed");
        return Ok(());
    }
    if !command::succeeds(Command::new("cargo").args([NIGHTLY, "--version"])) {
        bail!(
            "the nightly toolchain is missing; run `cargo xtask setup` (or `rustup toolchain \
             install nightly`)"
        );
    }
    println!("fuzz: installing cargo-fuzz from crates.io (a minute or two, once)");
    command::run(
        Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]),
        "installing cargo-fuzz (needs network access to crates.io)",
    )?;
    if !command::succeeds(Command::new("cargo").args(["fuzz", "--version"])) {
        bail!("cargo-fuzz was installed but `cargo fuzz` does not run: add ~/.cargo/bin to PATH");
    }
    Ok(())
}

/// The repository root: xtask's parent directory.
fn workspace_root() -> anyhow::Result<PathBuf> {
    let xtask = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = xtask
        .parent()
        .context("xtask's manifest directory has no parent")?
        .to_path_buf();
    if !root.join("fuzz").join("Cargo.toml").is_file() {
        bail!(
            "{} has no fuzz/Cargo.toml: run from a complete portmon checkout",
            root.display()
        );
    }
    Ok(root)
}
