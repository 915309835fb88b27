//! `cargo xtask dist`: the release tarball `<target>/dist/portmon-<version>-<arch>-linux.tar.gz`.
//!
//! It holds a static (musl) `bin/portmon` with the eBPF programs embedded, everything under
//! `deploy/` as it is at build time (systemd unit, Prometheus rules, Grafana dashboard,
//! Kubernetes manifests and Helm chart), README and licence files, and `SHA256SUMS`. The
//! tree mirrors the repository, so `deploy/kubernetes/Containerfile` builds the image from
//! an unpacked tarball. The binary is checked before packing: an ELF with no program
//! interpreter (static) that carries an eBPF ELF object.
//!
//! Needs the musl target (`rustup target add <arch>-unknown-linux-musl`, added here when
//! missing), `tar`, `gzip` and `sha256sum`, and `musl-gcc` (Debian musl-tools) for ring's C code,
//! the TLS crypto of the metrics endpoint.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail, ensure};

use crate::command;

/// Files at the repository root that go into the tarball when present.
const ROOT_FILES: &[&str] = &["README.md", "LICENSE", "LICENSE-MIT", "LICENSE-APACHE"];
/// The repository folder shipped whole (hidden files excepted).
const DEPLOY: &str = "deploy";
/// Files a tarball is useless without.
const REQUIRED: &[&str] = &["bin/portmon", "deploy/systemd/portmon.service"];
/// The checksum file inside the tarball.
const SUMS: &str = "SHA256SUMS";
/// ELF `e_machine` of eBPF objects (EM_BPF, `include/uapi/linux/elf-em.h`).
const EM_BPF: u16 = 247;
/// ELF program header type of the dynamic loader's path: a static binary has none.
const PT_INTERP: u32 = 3;

/// Builds the static binary, stages it with the deployment files and packs the tarball.
///
/// # Errors
/// When the build fails, the binary is not static or lacks its eBPF object, a required
/// file is missing, or `tar`/`sha256sum` fail.
pub fn run() -> anyhow::Result<()> {
    let root = workspace_root()?;
    let version = env!("CARGO_PKG_VERSION");
    let arch = std::env::consts::ARCH;
    let triple = format!("{arch}-unknown-linux-musl");
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);

    ensure_target(&triple)?;
    println!("dist: building a static portmon for {triple} (release)");
    command::run(
        Command::new(env!("CARGO"))
            .current_dir(&root)
            .args([
                "build",
                "--release",
                "--package",
                "monitor",
                "--bin",
                "portmon",
            ])
            .args(["--target", &triple])
            // Symbols only: the embedded eBPF object (with its BTF) is data, untouched.
            .args(["--config", "profile.release.strip=\"symbols\""]),
        "building the static portmon binary failed (`cargo xtask setup` installs \
         bpf-linker and nightly rust-src, which the eBPF build needs)",
    )?;
    let binary = target_dir.join(&triple).join("release").join("portmon");
    check_binary(&binary)?;

    let name = format!("portmon-{version}-{arch}-linux");
    let dist = target_dir.join("dist");
    let staging = dist.join(&name);
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("removing the old staging directory {}", staging.display()))?;
    }
    let entries = layout(&root, &binary)?;
    stage(&entries, &staging)?;
    write_sums(&staging, &entries)?;
    let tarball = dist.join(format!("{name}.tar.gz"));
    pack(&root, &dist, &name, &tarball)?;
    let size = fs::metadata(&tarball)
        .with_context(|| format!("reading {}", tarball.display()))?
        .len();
    println!(
        "dist: {} ({} files, {:.1} MiB)",
        tarball.display(),
        entries.len() + 1,
        size_mib(size)
    );
    Ok(())
}

#[expect(
    clippy::cast_precision_loss,
    reason = "a tarball's size in MiB, printed with one decimal"
)]
fn size_mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The repository root: xtask's parent directory.
fn workspace_root() -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask's manifest directory has no parent")?
        .to_path_buf();
    ensure!(
        root.join(DEPLOY).is_dir(),
        "{} has no deploy/ folder: run from a complete portmon checkout",
        root.display()
    );
    Ok(root)
}

/// Adds the rustup target unless it is installed.
fn ensure_target(triple: &str) -> anyhow::Result<()> {
    let installed = command::output(Command::new("rustup").args(["target", "list", "--installed"]))
        .context("listing rustup's installed targets: is rustup installed?")?;
    if installed.lines().any(|line| line.trim() == triple) {
        return Ok(());
    }
    println!("dist: adding the Rust target {triple}");
    command::run(
        Command::new("rustup").args(["target", "add", triple]),
        "adding the musl target",
    )
}

/// Fails unless `binary` is a static ELF that carries an eBPF object.
fn check_binary(binary: &Path) -> anyhow::Result<()> {
    let bytes = fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    ensure!(
        is_static_elf(&bytes)?,
        "{} needs a dynamic loader (it has PT_INTERP): the release binary must be static",
        binary.display()
    );
    ensure!(
        embeds_bpf_object(&bytes),
        "{} carries no eBPF object: the kernel programs were not embedded",
        binary.display()
    );
    Ok(())
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Whether a little-endian ELF64 file `bytes` has no program interpreter, i.e. runs
/// without a dynamic loader (static and static-pie binaries).
///
/// # Errors
/// When `bytes` is not a complete little-endian ELF64 file.
fn is_static_elf(bytes: &[u8]) -> anyhow::Result<bool> {
    ensure!(
        bytes.starts_with(b"\x7fELF") && bytes.get(4) == Some(&2) && bytes.get(5) == Some(&1),
        "not a little-endian 64-bit ELF file"
    );
    let header = || -> Option<(usize, usize, usize)> {
        let offset = usize::try_from(read_u64(bytes, 0x20)?).ok()?;
        Some((
            offset,
            usize::from(read_u16(bytes, 0x36)?),
            usize::from(read_u16(bytes, 0x38)?),
        ))
    };
    let Some((offset, entry_size, count)) = header() else {
        bail!("truncated ELF header");
    };
    for index in 0..count {
        let start = offset + index * entry_size;
        let Some(kind) = bytes
            .get(start..start + entry_size)
            .and_then(|header| read_u32(header, 0))
        else {
            bail!("truncated ELF program header {index}");
        };
        if kind == PT_INTERP {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether `bytes` contain, past their own header, a little-endian ELF64 object for the
/// eBPF machine: the kernel programs `monitor/src/ebpf.rs` embeds.
fn embeds_bpf_object(bytes: &[u8]) -> bool {
    bytes
        .windows(4)
        .enumerate()
        .skip(1)
        .filter(|(_, window)| *window == b"\x7fELF")
        .any(|(at, _)| {
            bytes.get(at + 4) == Some(&2)
                && bytes.get(at + 5) == Some(&1)
                && read_u16(bytes, at + 18) == Some(EM_BPF)
        })
}

/// One file of the tarball: where it comes from and its path inside the tarball.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    source: PathBuf,
    destination: PathBuf,
}

/// What goes into the tarball, sorted by destination: `binary` as `bin/portmon`, the
/// present [`ROOT_FILES`] of `root`, and every non-hidden file under `root/deploy`.
///
/// # Errors
/// When a folder cannot be read or a [`REQUIRED`] file is missing.
fn layout(root: &Path, binary: &Path) -> anyhow::Result<Vec<Entry>> {
    let mut entries = vec![Entry {
        source: binary.to_path_buf(),
        destination: PathBuf::from("bin/portmon"),
    }];
    for name in ROOT_FILES {
        let source = root.join(name);
        if source.is_file() {
            entries.push(Entry {
                source,
                destination: PathBuf::from(name),
            });
        }
    }
    collect_files(root, Path::new(DEPLOY), &mut entries)?;
    entries.sort_by(|a, b| a.destination.cmp(&b.destination));
    for required in REQUIRED {
        ensure!(
            entries
                .iter()
                .any(|entry| entry.destination == Path::new(required)),
            "{required} is missing: the tarball would be useless without it"
        );
    }
    Ok(entries)
}

/// Adds every non-hidden file under `root/relative`, recursively.
fn collect_files(root: &Path, relative: &Path, entries: &mut Vec<Entry>) -> anyhow::Result<()> {
    let folder = root.join(relative);
    let listing = fs::read_dir(&folder).with_context(|| format!("listing {}", folder.display()))?;
    for item in listing {
        let item = item.with_context(|| format!("listing {}", folder.display()))?;
        let name = item.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let destination = relative.join(&name);
        let kind = item
            .file_type()
            .with_context(|| format!("inspecting {}", item.path().display()))?;
        if kind.is_dir() {
            collect_files(root, &destination, entries)?;
        } else if kind.is_file() {
            entries.push(Entry {
                source: item.path(),
                destination,
            });
        }
    }
    Ok(())
}

/// Copies every entry into `staging`, keeping each file's mode (the binary stays executable).
fn stage(entries: &[Entry], staging: &Path) -> anyhow::Result<()> {
    for entry in entries {
        let destination = staging.join(&entry.destination);
        if let Some(parent) = destination.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::copy(&entry.source, &destination).with_context(|| {
            format!(
                "copying {} to {}",
                entry.source.display(),
                destination.display()
            )
        })?;
    }
    Ok(())
}

/// Writes `SHA256SUMS` (checkable with `sha256sum -c SHA256SUMS` inside the unpacked tree).
fn write_sums(staging: &Path, entries: &[Entry]) -> anyhow::Result<()> {
    let sums = command::output(
        Command::new("sha256sum")
            .current_dir(staging)
            .arg("--")
            .args(entries.iter().map(|entry| &entry.destination)),
    )
    .context("running sha256sum (coreutils) failed")?;
    fs::write(staging.join(SUMS), sums).context("writing SHA256SUMS")
}

/// Packs `dist/name` into `tarball`, owned by root, in name order, with the last commit's
/// time (or SOURCE_DATE_EPOCH) on every file, so that the same tree packs the same way.
fn pack(root: &Path, dist: &Path, name: &str, tarball: &Path) -> anyhow::Result<()> {
    let mut tar = Command::new("tar");
    tar.current_dir(dist)
        .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"]);
    if let Some(epoch) = source_date_epoch(root) {
        tar.arg(format!("--mtime=@{epoch}"));
    }
    tar.arg("-czf").arg(tarball).arg(name);
    command::run(&mut tar, "packing the tarball with tar")
}

fn source_date_epoch(repository: &Path) -> Option<String> {
    std::env::var("SOURCE_DATE_EPOCH").ok().or_else(|| {
        command::output(Command::new("git").current_dir(repository).args([
            "log",
            "-1",
            "--format=%ct",
        ]))
        .map(|time| time.trim().to_owned())
        .filter(|time| !time.is_empty())
    })
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests panic with what they expected")]
mod tests {
    use super::*;

    /// A scratch folder removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(purpose: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "portmon-xtask-dist-{purpose}-{}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).expect("creating the scratch folder");
            Self(path)
        }

        fn file(&self, relative: &str) {
            let path = self.0.join(relative);
            fs::create_dir_all(path.parent().expect("a parent")).expect("creating folders");
            fs::write(&path, relative).expect("writing a file");
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn destinations(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|entry| entry.destination.display().to_string())
            .collect()
    }

    #[test]
    fn layout_takes_the_binary_deploy_tree_and_root_documents_only() {
        let repo = Scratch::new("layout");
        for file in [
            "README.md",
            "LICENSE-MIT",
            "Cargo.toml",
            "monitor/src/main.rs",
            "deploy/systemd/portmon.service",
            "deploy/prometheus/portmon-rules.yml",
            "deploy/prometheus/tests/spike.yml",
            "deploy/helm/portmon/templates/daemonset.yaml",
            "deploy/.editor-backup",
            "deploy/helm/portmon/.helmignore",
            "target/x86_64-unknown-linux-musl/release/portmon",
        ] {
            repo.file(file);
        }
        let binary = repo
            .0
            .join("target/x86_64-unknown-linux-musl/release/portmon");
        let entries = layout(&repo.0, &binary).expect("a complete tree");
        assert_eq!(
            destinations(&entries),
            [
                "LICENSE-MIT",
                "README.md",
                "bin/portmon",
                "deploy/helm/portmon/templates/daemonset.yaml",
                "deploy/prometheus/portmon-rules.yml",
                "deploy/prometheus/tests/spike.yml",
                "deploy/systemd/portmon.service",
            ],
            "sorted, hidden files and the rest of the repository left out"
        );
        assert_eq!(entries[2].source, binary, "bin/portmon is the built binary");
    }

    #[test]
    fn layout_refuses_a_tree_without_the_unit() {
        let repo = Scratch::new("no-unit");
        repo.file("deploy/grafana/portmon.json");
        repo.file("portmon");
        let error = layout(&repo.0, &repo.0.join("portmon")).expect_err("the unit is missing");
        assert!(
            error.to_string().contains("deploy/systemd/portmon.service"),
            "expected the missing file named, got: {error}"
        );
    }

    /// A minimal little-endian ELF64 header with `kinds` as program header types.
    fn elf(machine: u16, kinds: &[u32]) -> Vec<u8> {
        let mut bytes = vec![0_u8; 64];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2;
        bytes[5] = 1;
        bytes[18..20].copy_from_slice(&machine.to_le_bytes());
        bytes[0x20..0x28].copy_from_slice(&64_u64.to_le_bytes());
        bytes[0x36..0x38].copy_from_slice(&56_u16.to_le_bytes());
        let count = u16::try_from(kinds.len()).expect("few headers");
        bytes[0x38..0x3a].copy_from_slice(&count.to_le_bytes());
        for kind in kinds {
            let mut header = vec![0_u8; 56];
            header[..4].copy_from_slice(&kind.to_le_bytes());
            bytes.extend(header);
        }
        bytes
    }

    #[test]
    fn static_means_no_program_interpreter() {
        const PT_LOAD: u32 = 1;
        const PT_DYNAMIC: u32 = 2;
        for (case, bytes, expected) in [
            ("static", elf(62, &[PT_LOAD, PT_LOAD]), Some(true)),
            (
                "static-pie (dynamic section, no loader)",
                elf(62, &[PT_LOAD, PT_DYNAMIC]),
                Some(true),
            ),
            (
                "dynamically linked",
                elf(62, &[PT_LOAD, PT_INTERP, PT_DYNAMIC]),
                Some(false),
            ),
            ("not ELF", b"#!/bin/sh\n".to_vec(), None),
            ("truncated", elf(62, &[PT_LOAD])[..70].to_vec(), None),
        ] {
            assert_eq!(
                is_static_elf(&bytes).ok(),
                expected,
                "case {case}: expected {expected:?}"
            );
        }
    }

    #[test]
    fn this_test_binary_is_recognised_for_what_it_is() {
        let exe = std::env::current_exe().expect("the test binary's path");
        let bytes = fs::read(&exe).expect("reading the test binary");
        let expected = cfg!(target_env = "musl");
        assert_eq!(
            is_static_elf(&bytes).expect("the test binary is ELF"),
            expected,
            "a {} test binary",
            if expected { "musl" } else { "glibc" }
        );
        assert!(!embeds_bpf_object(&bytes), "xtask carries no eBPF object");
    }

    #[test]
    fn an_embedded_bpf_object_is_found_and_other_objects_are_not() {
        let mut host = elf(62, &[1]);
        host.extend(b"padding");
        let mut with_x86 = host.clone();
        with_x86.extend(elf(62, &[]));
        let mut with_bpf = host.clone();
        with_bpf.extend(elf(EM_BPF, &[]));
        for (case, bytes, expected) in [
            ("host binary alone", &host, false),
            ("another x86-64 object inside", &with_x86, false),
            ("an eBPF object inside", &with_bpf, true),
        ] {
            assert_eq!(embeds_bpf_object(bytes), expected, "case {case}");
        }
    }
}
