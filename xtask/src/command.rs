//! Running external commands with their output streamed and failures explained.

use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// Runs `command`, streaming its output; fails with `what` when it exits non-zero.
pub fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command.status().with_context(|| {
        format!(
            "{what}: could not start {}",
            command.get_program().display()
        )
    })?;
    if !status.success() {
        bail!("{what}: {command:?} exited with {status}");
    }
    Ok(())
}

/// Whether `command` runs and exits zero (its output is discarded).
pub fn succeeds(command: &mut Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The standard output of `command`, if it runs and exits zero.
pub fn output(command: &mut Command) -> Option<String> {
    let output = command.stderr(Stdio::null()).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Fails with an actionable message unless running as root.
pub fn require_root(task: &str) -> anyhow::Result<()> {
    if !is_root() {
        bail!(
            "`cargo xtask {task}` loads eBPF programs and creates network namespaces, which needs root: \
             run it as root (for example `sudo -E cargo xtask {task}`)"
        );
    }
    Ok(())
}
