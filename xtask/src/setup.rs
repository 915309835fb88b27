//! `cargo xtask setup`: installs what a fresh machine lacks, idempotently, saying what it
//! does. Every other task calls [`ensure`] first, which only installs what is missing.

use std::{fs, path::Path, process::Command};

use anyhow::{Context as _, bail};

use crate::command;

/// Debian packages needed to build the kernel programs (bpf-linker links against LLVM 22).
const BUILD_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "build-essential",
    "musl-tools", // x86_64-linux-musl-gcc: ring's C and assembly for the static `dist` binary
];

/// Debian packages the tests and benchmarks drive: `ip` for namespaces and veths, `setpriv`
/// to drop capabilities, a real Prometheus (and promtool) and Alertmanager, `systemd-analyze`
/// for the unit's security score and `systemd-nspawn` to boot the unit in a container;
/// `openssl` (TLS server and client) and `nmap` (the port scan) for `cargo xtask demo`, and
/// `tmux` to give the demo's test a terminal.
const TEST_PACKAGES: &[&str] = &[
    "iproute2",
    "util-linux",
    "prometheus",
    "prometheus-alertmanager",
    "systemd",
    "systemd-container",
    "openssl",
    "nmap",
    "tmux",
    "curl", // certificates and TLS clients of the web_security test
    // payload_e2e: net-snmp's client and agent.
    "snmp",
    "snmpd",
];

/// How to tell a pip-installed tool is present.
enum PipCheck {
    /// A console script that answers `--version`.
    Command(&'static str),
    /// A Python module that imports.
    Module(&'static str),
}

/// Python tools the tests drive, installed with pip: kubernetes-validate checks the manifests,
/// helm-python-sdk (Helm as a library; there is no helm in Debian or PyPI) renders the chart.
const PIP_TOOLS: &[(PipCheck, &str)] = &[
    (
        PipCheck::Command("kubernetes-validate"),
        "kubernetes-validate==1.37.0",
    ),
    (PipCheck::Module("helm_python"), "helm-python-sdk==0.2.2"),
];

/// The bpf-linker release known to work with LLVM 22 and these toolchains.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Where Debian puts LLVM 22's tools (llvm-config), which bpf-linker's build needs on PATH.
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";
/// The nightly toolchain aya-build compiles the kernel programs with.
const NIGHTLY: &str = "nightly";
/// Where portmon pins its maps.
const BPFFS: &str = "/sys/fs/bpf";

/// `cargo xtask setup`: checks everything and installs what is missing.
pub fn run() -> anyhow::Result<()> {
    command::require_root("setup")?;
    ensure_with(Report::Verbose)
}

/// Installs whatever is missing, quietly when nothing is.
pub fn ensure() -> anyhow::Result<()> {
    ensure_with(Report::OnlyChanges)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Report {
    Verbose,
    OnlyChanges,
}

fn ensure_with(report: Report) -> anyhow::Result<()> {
    let say = |message: &str| {
        if report == Report::Verbose {
            println!("setup: {message}");
        }
    };
    ensure_packages(say)?;
    ensure_pip_tools(say)?;
    ensure_rust_src(say)?;
    ensure_bpf_linker(say)?;
    ensure_bpffs(say)?;
    say("everything is in place");
    Ok(())
}

fn ensure_packages(say: impl Fn(&str)) -> anyhow::Result<()> {
    let missing: Vec<&str> = BUILD_PACKAGES
        .iter()
        .chain(TEST_PACKAGES)
        .copied()
        .filter(|package| !package_installed(package))
        .collect();
    if missing.is_empty() {
        say("Debian packages: all installed");
        return Ok(());
    }
    command::require_root("setup")?;
    println!("setup: installing Debian packages: {}", missing.join(" "));
    command::run(
        Command::new("apt-get").args(["update", "-q"]),
        "refreshing the apt package lists (is the network to the Debian mirror up?)",
    )?;
    command::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing),
        "installing Debian packages",
    )
}

fn ensure_pip_tools(say: impl Fn(&str)) -> anyhow::Result<()> {
    for (check, requirement) in PIP_TOOLS {
        if pip_tool_present(check) {
            say(&format!("{requirement}: installed"));
            continue;
        }
        println!("setup: installing {requirement} with pip (the Kubernetes manifest tests use it)");
        command::run(
            Command::new("python3").args(["-m", "pip", "install", "--quiet", requirement]),
            "installing a Python test tool with pip (is python3-pip installed?)",
        )?;
        // Under pyenv a new console script needs its shim made; elsewhere this is a no-op.
        let _ = command::succeeds(Command::new("pyenv").arg("rehash"));
        if !pip_tool_present(check) {
            bail!(
                "{requirement} was installed by pip but is not usable: is pip's bin directory on PATH?"
            );
        }
    }
    Ok(())
}

fn pip_tool_present(check: &PipCheck) -> bool {
    match check {
        PipCheck::Command(tool) => command::succeeds(Command::new(tool).arg("--version")),
        PipCheck::Module(module) => {
            command::succeeds(Command::new("python3").args(["-c", &format!("import {module}")]))
        }
    }
}

fn package_installed(package: &str) -> bool {
    command::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| status.contains("install ok installed"))
}

fn ensure_rust_src(say: impl Fn(&str)) -> anyhow::Result<()> {
    let installed = command::output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        NIGHTLY,
    ]));
    if installed.is_some_and(|list| list.lines().any(|line| line.starts_with("rust-src"))) {
        say("nightly toolchain with rust-src: installed");
        return Ok(());
    }
    println!(
        "setup: installing the nightly toolchain's rust-src (the BPF target builds core from source)"
    );
    command::run(
        Command::new("rustup").args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]),
        "installing nightly rust-src with rustup",
    )
}

fn ensure_bpf_linker(say: impl Fn(&str)) -> anyhow::Result<()> {
    if command::succeeds(Command::new("bpf-linker").arg("--version")) {
        say("bpf-linker: installed");
        return Ok(());
    }
    println!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against Debian's LLVM 22 (about a minute)"
    );
    let path = std::env::var("PATH").unwrap_or_default();
    command::run(
        Command::new("cargo")
            .env("PATH", format!("{LLVM_BIN}:{path}"))
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
                "--features",
                "llvm-22",
            ]),
        "installing bpf-linker (needs llvm-22-dev and libpolly-22-dev)",
    )?;
    if !command::succeeds(Command::new("bpf-linker").arg("--version")) {
        bail!("bpf-linker was installed but is not on PATH: add ~/.cargo/bin to PATH");
    }
    Ok(())
}

fn ensure_bpffs(say: impl Fn(&str)) -> anyhow::Result<()> {
    if bpffs_mounted()? {
        say(&format!("bpffs: mounted at {BPFFS}"));
        return Ok(());
    }
    command::require_root("setup")?;
    println!("setup: mounting bpffs at {BPFFS} (portmon pins its maps there)");
    fs::create_dir_all(BPFFS).with_context(|| format!("creating {BPFFS}"))?;
    command::run(
        Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]),
        "mounting bpffs",
    )
}

fn bpffs_mounted() -> anyhow::Result<bool> {
    let mounts = fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    Ok(mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_, mount_point, fs_type) = (fields.next(), fields.next(), fields.next());
        mount_point.is_some_and(|point| Path::new(point) == Path::new(BPFFS))
            && fs_type == Some("bpf")
    }))
}
