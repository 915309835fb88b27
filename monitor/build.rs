//! Builds the kernel programs (`monitor-ebpf`) for the BPF target, in release: debug
//! builds of eBPF code do not pass the verifier. The object is embedded by `src/ebpf.rs`.

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("reading the workspace metadata")?;
    let ebpf = packages
        .into_iter()
        .find(|package| package.name.as_str() == "monitor-ebpf")
        .ok_or_else(|| anyhow!("the monitor-ebpf package is missing from the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    let package = aya_build::Package {
        name: ebpf.name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default()).context(
        "building the eBPF programs failed; `cargo xtask setup` installs bpf-linker and nightly rust-src",
    )
}
