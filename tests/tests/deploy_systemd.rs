//! The hardened systemd unit in `deploy/systemd/`: `systemd-analyze verify` accepts it
//! without a single diagnostic, `systemd-analyze security --offline=true` rates it no worse
//! than [`MAX_EXPOSURE`] (a regression guard: lower it when the unit improves), and the
//! settings that make portmon work and least-privileged are the ones it holds.
//!
//! [`booted`] then boots the unit, unchanged, under a real systemd in `systemd-nspawn`.
//!
//! Needs `systemd-analyze` (Debian: `apt-get install -y systemd`; systemd need not be
//! running) and, for [`booted`], root and `systemd-nspawn` (`apt-get install -y
//! systemd-container`). The tests fail, rather than skip, when a tool is missing.

#![expect(clippy::expect_used, reason = "tests panic with what they expected")]

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

/// The unit, unchanged, started by a real systemd: `systemd-nspawn` boots a minimal
/// container (the host's /usr, a hand-made /etc holding the units) that shares the host's
/// network, with a private bpffs instance mounted mode 0700 as systemd mounts it. portmon
/// must attach as the `portmon` user with exactly its three capabilities, pin nowhere but
/// its own directory, and come back after `kill -9`.
///
/// Needs root and `systemd-nspawn` (Debian: `apt-get install -y systemd-container`).
mod booted {
    use std::{
        fs,
        net::{Ipv4Addr, SocketAddr},
        os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink},
        path::{Path, PathBuf},
        process::{Child, Command, Stdio},
        thread,
        time::{Duration, Instant},
    };

    use nix::{
        mount::{MntFlags, MsFlags, mount, umount2},
        sys::signal::{Signal, kill},
        unistd::Pid,
    };
    use portmon::caps::REQUIRED;
    use portmon_tests::{
        daemon::{free_port, http_get, portmon_binary},
        netns::{Stack, Topology},
    };

    use super::{read, tempdir};

    /// The portmon user's id inside the container (no user namespace: also on the host).
    const UID: u32 = 961;
    /// The boot, the attach and a restart each finish well within this.
    const LIMIT: Duration = Duration::from_secs(90);
    const TARGET: &str = "[Unit]\nDescription=portmon boot test\nRequires=portmon.service\n\
                          After=portmon.service\nAllowIsolate=yes\n";

    /// A bpffs instance of our own, mode 0700 like systemd's, unmounted on drop.
    struct Bpffs(tempdir::Dir);

    impl Bpffs {
        fn new() -> Self {
            let dir = tempdir::Dir::new("bpffs");
            mount(
                Some("bpf"),
                dir.path(),
                Some("bpf"),
                MsFlags::empty(),
                Some("mode=0700"),
            )
            .unwrap_or_else(|error| panic!("mounting a bpffs (run as root): {error}"));
            Self(dir)
        }
    }

    impl Drop for Bpffs {
        fn drop(&mut self) {
            if let Err(error) = umount2(self.0.path(), MntFlags::MNT_DETACH) {
                eprintln!("unmounting the test bpffs: {error}");
            }
        }
    }

    /// The container's root: the host's /usr (bound by nspawn), symlinks, and an /etc with
    /// the two units, a test target, the environment file and the portmon user.
    fn container_root(interface: &str, listen: SocketAddr) -> tempdir::Dir {
        let root = tempdir::Dir::new("root");
        let path = root.path();
        for dir in [
            "usr/lib",
            "usr/local/bin",
            "etc/systemd/system",
            "etc/default",
            "var/log/journal",
            "tmp",
            "run",
            "proc",
            "sys",
            "dev",
            "root",
            "bin-portmon",
        ] {
            fs::create_dir_all(path.join(dir)).expect("creating the container's folders");
        }
        for dir in ["bin", "sbin", "lib", "lib64"] {
            symlink(format!("usr/{dir}"), path.join(dir)).expect("linking into /usr");
        }
        let os_release = fs::read("/usr/lib/os-release").expect("reading /usr/lib/os-release");
        let files: [(&str, Vec<u8>); 9] = [
            ("usr/lib/os-release", os_release.clone()),
            ("etc/os-release", os_release),
            // Empty: systemd makes up a transient id that differs from the host's.
            ("etc/machine-id", Vec::new()),
            (
                "etc/passwd",
                format!("root:x:0:0::/root:/bin/sh\nportmon:x:{UID}:{UID}::/:/usr/sbin/nologin\n")
                    .into_bytes(),
            ),
            (
                "etc/group",
                format!("root:x:0:\nportmon:x:{UID}:\n").into_bytes(),
            ),
            (
                "etc/systemd/system/portmon.service",
                read("portmon.service").into_bytes(),
            ),
            (
                "etc/systemd/system/portmon-bpffs.service",
                read("portmon-bpffs.service").into_bytes(),
            ),
            (
                "etc/systemd/system/portmon-test.target",
                TARGET.as_bytes().to_vec(),
            ),
            (
                "etc/default/portmon",
                format!("PORTMON_IFACE={interface}\nPORTMON_LISTEN={listen}\n").into_bytes(),
            ),
        ];
        for (name, contents) in files {
            fs::write(path.join(name), contents).expect("writing a container file");
        }
        let binary = path.join("bin-portmon/portmon");
        fs::copy(portmon_binary(), &binary).expect("copying the portmon binary");
        fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).expect("chmod portmon");
        root
    }

    /// A booted container; powered off (then killed if need be) on drop.
    struct Container {
        nspawn: Child,
        log: PathBuf,
        journal: PathBuf,
    }

    impl Container {
        fn boot(root: &Path, bpffs: &Path, name: &str) -> Self {
            let log = root.join("nspawn.log");
            let output = fs::File::create(&log).expect("creating the container log");
            let errors = output.try_clone().expect("cloning the log handle");
            let nspawn = Command::new("systemd-nspawn")
                .arg("--directory")
                .arg(root)
                .args(["--boot", "--register=no", "--keep-unit", "--quiet"])
                .args(["--machine", name, "--console=pipe"])
                // nspawn's own filter and bounding set would refuse bpf() and the three caps.
                .args(["--capability=CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN"])
                .args(["--system-call-filter=bpf"])
                .arg("--bind-ro=/usr")
                .arg(format!(
                    "--bind-ro={}:/usr/local/bin",
                    root.join("bin-portmon").display()
                ))
                .arg(format!("--bind={}:/sys/fs/bpf", bpffs.display()))
                .args(["--", "systemd.unit=portmon-test.target"])
                .stdin(Stdio::null())
                .stdout(output)
                .stderr(errors)
                .spawn()
                .unwrap_or_else(|error| {
                    panic!(
                        "starting systemd-nspawn failed: {error}. Install it with \
                         `apt-get install -y systemd-container`"
                    )
                });
            Self {
                nspawn,
                log,
                journal: root.join("var/log/journal"),
            }
        }

        /// What the container and portmon said, for a failure message.
        fn diagnostics(&self) -> String {
            let console = fs::read_to_string(&self.log).unwrap_or_default();
            let journal = Command::new("journalctl")
                .arg("--directory")
                .arg(&self.journal)
                .args(["--no-pager", "-o", "cat", "-n", "60"])
                .output()
                .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
                .unwrap_or_default();
            format!("nspawn:\n{console}\njournal:\n{journal}")
        }

        /// Host pids of the container's processes named `comm`.
        fn processes(&self, comm: &str) -> Vec<u32> {
            let mut found = Vec::new();
            let mut queue = vec![self.nspawn.id()];
            while let Some(pid) = queue.pop() {
                let name = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if name.trim() == comm {
                    found.push(pid);
                }
                let tasks = fs::read_dir(format!("/proc/{pid}/task"))
                    .into_iter()
                    .flatten();
                for task in tasks.flatten() {
                    let children =
                        fs::read_to_string(task.path().join("children")).unwrap_or_default();
                    queue.extend(
                        children
                            .split_whitespace()
                            .filter_map(|child| child.parse::<u32>().ok()),
                    );
                }
            }
            found
        }
    }

    impl Drop for Container {
        fn drop(&mut self) {
            let pid = Pid::from_raw(i32::try_from(self.nspawn.id()).unwrap_or(i32::MAX));
            // nspawn turns SIGTERM into an orderly poweroff of the container.
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if matches!(self.nspawn.try_wait(), Ok(Some(_))) {
                    return;
                }
                thread::sleep(Duration::from_millis(100));
            }
            for init in self.processes("systemd") {
                let _ = kill(
                    Pid::from_raw(i32::try_from(init).unwrap_or(i32::MAX)),
                    Signal::SIGKILL,
                );
            }
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
        }
    }

    fn status_field(pid: u32, field: &str) -> String {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .map(|value| value.trim().to_owned())
            .unwrap_or_default()
    }

    /// Waits until portmon answers with `interface` attached, and returns its host pid,
    /// which must differ from `not`.
    fn wait_attached(
        container: &Container,
        listen: SocketAddr,
        interface: &str,
        not: Option<u32>,
    ) -> u32 {
        let needle = format!("portmon_attached{{interface=\"{interface}\",hook=\"xdp\"");
        let deadline = Instant::now() + LIMIT;
        while Instant::now() < deadline {
            let pids: Vec<u32> = container
                .processes("portmon")
                .into_iter()
                .filter(|&pid| Some(pid) != not)
                .collect();
            let attached = http_get(listen, "/metrics", None)
                .is_ok_and(|response| response.body.contains(&needle));
            if let ([pid], true) = (pids.as_slice(), attached) {
                return *pid;
            }
            thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "expected portmon to attach to {interface} and serve {listen} within {LIMIT:?}\n{}",
            container.diagnostics()
        );
    }

    #[test]
    fn the_unit_runs_portmon_in_a_booted_systemd() {
        let topology = Topology::new(Stack::Ipv4).expect("the veth topology (run as root)");
        let interface = topology.host_if().to_owned();
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let bpffs = Bpffs::new();
        let root = container_root(&interface, listen);
        let name = format!("portmon-test-{}", std::process::id());
        let container = Container::boot(root.path(), bpffs.0.path(), &name);

        let pid = wait_attached(&container, listen, &interface, None);
        let required = REQUIRED
            .iter()
            .fold(0_u64, |mask, cap| mask | 1 << cap.number());
        let diagnostics = || container.diagnostics();
        assert_eq!(
            status_field(pid, "Uid:"),
            format!("{UID}\t{UID}\t{UID}\t{UID}"),
            "portmon runs as the portmon user\n{}",
            diagnostics()
        );
        assert_eq!(
            status_field(pid, "NoNewPrivs:"),
            "1",
            "no new privileges\n{}",
            diagnostics()
        );
        assert_eq!(
            status_field(pid, "CapBnd:"),
            format!("{required:016x}"),
            "the bounding set is the three capabilities\n{}",
            diagnostics()
        );
        // portmon may drop capabilities once attached; it never holds any other.
        for field in ["CapEff:", "CapPrm:", "CapAmb:"] {
            let held = u64::from_str_radix(&status_field(pid, field), 16)
                .unwrap_or_else(|error| panic!("parsing {field} of portmon: {error}"));
            assert_eq!(
                held & !required,
                0,
                "{field} {held:016x} holds more than {required:016x}\n{}",
                diagnostics()
            );
        }
        let pins = bpffs.0.path().join("portmon");
        let metadata = fs::metadata(&pins)
            .unwrap_or_else(|error| panic!("expected {} to exist: {error}", pins.display()));
        assert_eq!(
            (metadata.uid(), metadata.mode() & 0o7777),
            (UID, 0o700),
            "the pin directory's owner and mode"
        );

        kill(
            Pid::from_raw(i32::try_from(pid).expect("a pid")),
            Signal::SIGKILL,
        )
        .expect("killing portmon");
        let restarted = wait_attached(&container, listen, &interface, Some(pid));
        assert_ne!(restarted, pid, "systemd restarted portmon after kill -9");
        drop(container);
        drop(root);
    }
}
