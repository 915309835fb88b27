//! The hardened systemd unit in `deploy/systemd/`: `systemd-analyze verify` accepts it
//! without a single diagnostic, `systemd-analyze security --offline=true` rates it no worse
//! than [`MAX_EXPOSURE`] (a regression guard: lower it when the unit improves), and the
//! settings that make portmon work and least-privileged are the ones it holds.
//!
//! Needs `systemd-analyze` (Debian: `apt-get install -y systemd`); systemd need not be
//! running. The test fails, rather than skips, when the tool is missing.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use portmon::caps::REQUIRED;
use portmon_tests::daemon::{portmon_binary, run_command};

/// The exposure `systemd-analyze security` gave the unit when this guard was set (1.7, "OK").
/// 0.2 of it is ProtectKernelTunables=, spelled out instead (see the unit).
const MAX_EXPOSURE: f64 = 1.7;
/// Where the unit starts portmon; the release tarball installs it there.
const EXEC_START: &str = "/usr/local/bin/portmon run";
/// One `systemd-analyze` or `portmon --help` run finishes well within this.
const LIMIT: Duration = Duration::from_mins(2);

fn systemd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd")
}

fn read(name: &str) -> String {
    let path = systemd_dir().join(name);
    fs::read_to_string(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

fn systemd_analyze(args: &[&str]) -> Output {
    match run_command(Command::new("systemd-analyze").args(args), LIMIT) {
        Ok(output) => output,
        Err(error) => panic!(
            "running `systemd-analyze {}` failed: {error:#}. The unit tests need \
             systemd-analyze (Debian: `apt-get install -y systemd`; systemd need not run)",
            args.join(" ")
        ),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The unit's `[Service]`-style assignments: `(section, key)` to every value, in order.
/// A value set several times (`SystemCallFilter=`) keeps each one.
fn parse_unit(unit: &str) -> BTreeMap<(String, String), Vec<String>> {
    let mut settings: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            name.clone_into(&mut section);
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("expected KEY=VALUE in the unit, got {line:?}"));
        settings
            .entry((section.clone(), key.trim().to_owned()))
            .or_default()
            .push(value.trim().to_owned());
    }
    settings
}

fn the_unit() -> BTreeMap<(String, String), Vec<String>> {
    parse_unit(&read("portmon.service"))
}

fn values<'a>(
    unit: &'a BTreeMap<(String, String), Vec<String>>,
    section: &str,
    key: &str,
) -> &'a [String] {
    unit.get(&(section.to_owned(), key.to_owned()))
        .map_or(&[], Vec::as_slice)
}

/// The units, copied with `ExecStart=` pointing at the freshly built binary: `verify`
/// checks that the command exists, and /usr/local/bin/portmon is not installed here.
fn units_with_built_binary() -> (tempdir::Dir, Vec<PathBuf>) {
    let dir = tempdir::Dir::new("unit");
    let binary = portmon_binary().display().to_string();
    let mut paths = Vec::new();
    for name in ["portmon.service", "portmon-bpffs.service"] {
        let unit = read(name);
        let path = dir.path().join(name);
        fs::write(&path, unit.replace("/usr/local/bin/portmon", &binary))
            .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
        paths.push(path);
    }
    (dir, paths)
}

#[test]
fn systemd_analyze_verify_accepts_the_units_without_a_diagnostic() {
    assert!(
        read("portmon.service").contains(&format!("ExecStart={EXEC_START}\n")),
        "expected ExecStart={EXEC_START} in portmon.service"
    );
    let (_dir, paths) = units_with_built_binary();
    let mut args = vec!["verify".to_owned(), "--man=no".to_owned()];
    args.extend(paths.iter().map(|path| path.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = systemd_analyze(&args);
    let diagnostics = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success() && diagnostics.trim().is_empty(),
        "expected `systemd-analyze verify` to exit 0 and say nothing; got {} with:\n{diagnostics}",
        output.status
    );
}

#[test]
fn systemd_analyze_security_exposure_stays_at_or_below_the_guard() {
    let unit = systemd_dir().join("portmon.service").display().to_string();
    let output = systemd_analyze(&["security", "--offline=true", "--no-pager", &unit]);
    let report = text(&output.stdout);
    assert!(
        output.status.success(),
        "expected `systemd-analyze security --offline=true` to succeed; got {}:\n{}{report}",
        output.status,
        text(&output.stderr)
    );
    let exposure: f64 = report
        .lines()
        .find_map(|line| line.split_once("Overall exposure level for portmon.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("expected an overall exposure line in:\n{report}"));
    println!("systemd-analyze security: overall exposure {exposure}");
    assert!(
        exposure <= MAX_EXPOSURE,
        "expected an exposure of at most {MAX_EXPOSURE}, got {exposure}; what counts:\n{}",
        report
            .lines()
            .filter(|line| line.starts_with('✗'))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_unit_grants_exactly_the_capabilities_portmon_checks_for() {
    let unit = the_unit();
    let required: Vec<&str> = REQUIRED.iter().map(|cap| cap.name()).collect();
    for key in ["AmbientCapabilities", "CapabilityBoundingSet"] {
        let mut granted: Vec<&str> = values(&unit, "Service", key)
            .iter()
            .flat_map(|value| value.split_whitespace())
            .collect();
        granted.sort_unstable();
        let mut expected = required.clone();
        expected.sort_unstable();
        assert_eq!(
            granted, expected,
            "{key}: expected exactly the capabilities `portmon run` checks for"
        );
    }
}

#[test]
fn the_unit_holds_the_settings_portmon_needs_and_the_hardening() {
    let unit = the_unit();
    let sysusers = read("portmon.sysusers");
    let user = sysusers
        .lines()
        .find_map(|line| line.strip_prefix("u "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("expected a `u NAME ...` line in portmon.sysusers:\n{sysusers}"));
    let cases: &[(&str, &str, &str)] = &[
        ("starts the installed binary", "ExecStart", EXEC_START),
        (
            "reads PORTMON_* settings",
            "EnvironmentFile",
            "-/etc/default/portmon",
        ),
        ("runs as the sysusers.d user", "User", user),
        ("never gains privileges", "NoNewPrivileges", "yes"),
        ("read-only system", "ProtectSystem", "strict"),
        (
            "sees only its own bpffs directory",
            "TemporaryFileSystem",
            "/sys/fs/bpf:ro,mode=0755",
        ),
        (
            "kernel tunables read-only",
            "ReadOnlyPaths",
            "/sys /proc/sys -/proc/sysrq-trigger -/proc/irq -/proc/bus -/proc/acpi -/proc/fs",
        ),
        (
            "can pin under /sys/fs/bpf/portmon",
            "BindPaths",
            "/sys/fs/bpf/portmon",
        ),
        (
            "no memlock capability needed before 5.11",
            "LimitMEMLOCK",
            "infinity",
        ),
        ("may call bpf()", "SystemCallFilter", "@system-service bpf"),
        (
            "netlink, IP, and AF_UNIX for if_nametoindex",
            "RestrictAddressFamilies",
            "AF_UNIX AF_NETLINK AF_INET AF_INET6",
        ),
    ];
    for &(case, key, expected) in cases {
        let got = values(&unit, "Service", key);
        assert!(
            got.iter().any(|value| value == expected),
            "case {case}: expected {key}={expected}, got {got:?}"
        );
    }
    assert_ne!(user, "root", "the service must not run as root");
    assert_eq!(
        values(&unit, "Unit", "Requires"),
        ["portmon-bpffs.service"],
        "the pin directory is made before every start"
    );
    // ProtectKernelTunables=yes adds a read-only /sys/fs/bpf that replaces the private
    // one, leaving the pin directory behind bpffs's 0700 root (seen in a booted systemd).
    assert_ne!(
        values(&unit, "Service", "ProtectKernelTunables"),
        ["yes"],
        "ProtectKernelTunables=yes would hide the pin directory"
    );
    let helper = read("portmon-bpffs.service");
    assert!(
        helper.contains(&format!("-o {user} -g {user} -m 0700 /sys/fs/bpf/portmon")),
        "portmon-bpffs.service must give /sys/fs/bpf/portmon to {user}:\n{helper}"
    );
}

#[test]
fn the_environment_file_names_only_variables_portmon_reads() {
    let help = run_command(
        Command::new(portmon_binary()).args(["run", "--help"]),
        LIMIT,
    )
    .unwrap_or_else(|error| panic!("running portmon run --help: {error:#}"));
    let help = text(&help.stdout);
    let example = read("portmon.default");
    let names: Vec<&str> = example
        .lines()
        .map(|line| line.trim_start_matches('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(name, _)| name)
        .filter(|name| name.starts_with("PORTMON_"))
        .collect();
    assert!(
        names.len() >= 5,
        "expected the example to show the main variables, got {names:?}"
    );
    for name in names {
        assert!(
            help.contains(&format!("[env: {name}=")),
            "portmon.default names {name}, which `portmon run --help` does not list"
        );
    }
}

/// A temporary directory removed on drop, named after the process and a purpose.
mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(purpose: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "portmon-deploy-systemd-{purpose}-{}",
                std::process::id()
            ));
            std::fs::create_dir_all(&path)
                .unwrap_or_else(|error| panic!("creating {}: {error}", path.display()));
            Self(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
