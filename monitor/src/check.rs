//! `portmon check`: what this host offers portmon and what to fix, one line per finding,
//! without loading anything unless the privileges to do it are there.
//!
//! Native XDP support is established the only honest way there is: the real program is
//! attached in driver mode and detached at once (its `bpf_link` closed). A driver without
//! `ndo_bpf` refuses that attach, which is exactly what `portmon run --xdp-mode native`
//! would meet. Without `CAP_BPF`, `CAP_NET_ADMIN` and `CAP_PERFMON` this is reported as
//! unknown rather than guessed from the driver name.

use std::fmt;

use aya::util::KernelVersion;

use crate::{
    attach::{self, XdpMode},
    caps::{self, Capability},
    daemon::{
        netlink::{self, Link},
        preflight,
    },
    dataplane::{DataPlane, LoadOptions},
};

/// `CAP_SYS_RESOURCE` is needed below this kernel (memlock rlimit accounting).
const MIN_MEMCG_ACCOUNTING: KernelVersion = KernelVersion::new(5, 11, 0);
const BTF: &str = "/sys/kernel/btf/vmlinux";
const BPFFS: &str = "/sys/fs/bpf";

/// How a finding affects the exit code: only `Fail` makes it 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, with a limitation.
    Warn,
    /// `portmon run` will refuse or fail.
    Fail,
}

impl Status {
    const fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The verdict.
    pub status: Status,
    /// What was checked (`kernel`, `btf`, `iface eth0`...).
    pub topic: String,
    /// What was found.
    pub detail: String,
    /// How to fix it, for a WARN or FAIL.
    pub fix: Option<String>,
}

impl Finding {
    fn new(status: Status, topic: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            status,
            topic: topic.into(),
            detail: detail.into(),
            fix: None,
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<4} {}: {}",
            self.status.as_str(),
            self.topic,
            self.detail
        )?;
        if let Some(fix) = &self.fix {
            write!(f, " -- fix: {fix}")?;
        }
        Ok(())
    }
}

/// The kernel version and the features it gives.
#[must_use]
pub fn kernel(version: KernelVersion) -> Finding {
    match preflight::check_kernel(version) {
        Err(error) => Finding::new(Status::Fail, "kernel", error.to_string())
            .fix(format!("upgrade to Linux {} or later", error.needed)),
        Ok(features) => {
            let tc = if features.tcx {
                "TC through tcx links (6.6)".to_owned()
            } else {
                format!(
                    "TC through a clsact qdisc (tcx links need {})",
                    preflight::MIN_TCX
                )
            };
            Finding::new(
                Status::Ok,
                "kernel",
                format!(
                    "Linux {version}: mmap-able arrays ({}), XDP links ({}), {tc}",
                    preflight::MIN_MMAPABLE,
                    preflight::MIN_XDP_LINK
                ),
            )
        }
    }
}

/// BTF: needed by `--debug-kernel` (aya-log), not by the counters.
#[must_use]
pub fn btf(present: bool) -> Finding {
    if present {
        Finding::new(Status::Ok, "btf", format!("{BTF} present"))
    } else {
        Finding::new(
            Status::Warn,
            "btf",
            format!("{BTF} missing: --debug-kernel will not load"),
        )
        .fix("use a kernel built with CONFIG_DEBUG_INFO_BTF=y")
    }
}

/// bpffs: without it portmon runs unpinned (counters restart with it), so a warning.
#[must_use]
pub fn bpffs(mounts: &str) -> Finding {
    let mounted = mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_, target, kind) = (fields.next(), fields.next(), fields.next());
        target == Some(BPFFS) && kind == Some("bpf")
    });
    if mounted {
        Finding::new(Status::Ok, "bpffs", format!("mounted at {BPFFS}"))
    } else {
        Finding::new(
            Status::Warn,
            "bpffs",
            format!(
                "not mounted at {BPFFS}: portmon runs unpinned, so its counters restart from \
                 zero with it (see Restarts and upgrades in the README)"
            ),
        )
        .fix(format!("mount -t bpf bpf {BPFFS}"))
    }
}

/// Missing capabilities, from the effective set (`None`: unreadable).
#[must_use]
pub fn capabilities(effective: Option<u64>, version: KernelVersion) -> Vec<Finding> {
    let Some(effective) = effective else {
        return vec![Finding::new(
            Status::Warn,
            "capabilities",
            "could not read CapEff from /proc/self/status",
        )];
    };
    let missing = caps::missing(effective);
    let mut findings = vec![if missing.is_empty() {
        let names: Vec<&str> = caps::REQUIRED.iter().map(|cap| cap.name()).collect();
        Finding::new(Status::Ok, "capabilities", names.join(", "))
    } else {
        let names: Vec<&str> = missing.iter().map(|cap| cap.name()).collect();
        let error = caps::MissingCapabilities { missing };
        Finding::new(
            Status::Fail,
            "capabilities",
            format!("missing {}", names.join(", ")),
        )
        .fix(error.to_string())
    }];
    let resource = Capability::SysResource;
    findings.push(if version >= MIN_MEMCG_ACCOUNTING {
        Finding::new(
            Status::Ok,
            "capabilities",
            format!("{} not needed (memcg accounts BPF memory since {MIN_MEMCG_ACCOUNTING})", resource.name()),
        )
    } else if resource.held(effective) {
        Finding::new(
            Status::Ok,
            "capabilities",
            format!("{} (raises the memlock rlimit before {MIN_MEMCG_ACCOUNTING})", resource.name()),
        )
    } else {
        Finding::new(
            Status::Fail,
            "capabilities",
            format!(
                "missing {}: kernels before {MIN_MEMCG_ACCOUNTING} charge BPF maps to the memlock rlimit",
                resource.name()
            ),
        )
        .fix("grant cap_sys_resource too, or raise the limit (systemd: LimitMEMLOCK=infinity)")
    });
    findings
}

/// The XDP hook of `link`: taken (FAIL), or free with native support as probed.
#[must_use]
pub fn interface(link: &Link, native: Option<Result<(), String>>) -> Finding {
    let topic = format!("iface {}", link.name);
    if let Some(program) = link.xdp.first() {
        // Not a failure: `portmon run` (--hook auto, the default) counts on TC ingress.
        return Finding::new(
            Status::Warn,
            topic,
            format!(
                "XDP program id {} already attached ({} mode); portmon never replaces it: \
                 ingress is counted on TC ingress (--hook auto), --hook xdp refuses",
                program.id, program.mode
            ),
        )
        .fix(format!(
            "to count on XDP, see it with `bpftool prog show id {}` and detach it (`ip link set dev {} xdp off`)",
            program.id, link.name
        ));
    }
    match native {
        Some(Ok(())) => Finding::new(Status::Ok, topic, "XDP hook free; native XDP supported (attached and detached the real program)"),
        Some(Err(error)) => Finding::new(
            Status::Warn,
            topic,
            format!("XDP hook free; native XDP refused ({error}): generic XDP will be used, slower"),
        )
        .fix("use a driver with native XDP, or pass --xdp-mode generic to say so"),
        None => Finding::new(
            Status::Warn,
            topic,
            "XDP hook free; native XDP support unknown without CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON",
        )
        .fix("run `portmon check` with the capabilities of `portmon run` (or as root)"),
    }
}

/// An error with its sources (aya's errors keep the kernel's answer in the source).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Attaches the real XDP program to `name` in native mode and detaches it at once.
fn probe_native(name: &str) -> Result<(), String> {
    let mut data_plane = DataPlane::load(LoadOptions {
        max_slices: 1,
        ..LoadOptions::default()
    })
    .map_err(|error| format!("loading: {error}"))?;
    attach::attach_xdp(&mut data_plane, name, XdpMode::Native)
        .map(|_| ())
        .map_err(|error| chain(&error))
    // Dropping `data_plane` closes the XDP link: the program is detached.
}

/// Runs every check on this host; `interfaces` empty means every up, non-loopback one.
#[must_use]
pub fn run(interfaces: &[String]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let version = match KernelVersion::current() {
        Ok(version) => {
            findings.push(kernel(version));
            Some(version)
        }
        Err(error) => {
            findings.push(Finding::new(
                Status::Fail,
                "kernel",
                format!("cannot read the kernel version: {error}"),
            ));
            None
        }
    };
    findings.push(btf(std::path::Path::new(BTF).exists()));
    findings.push(bpffs(
        &std::fs::read_to_string("/proc/self/mounts").unwrap_or_default(),
    ));
    let effective = std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(caps::parse_effective);
    let privileged = effective.is_some_and(|effective| caps::missing(effective).is_empty());
    findings.extend(capabilities(
        effective,
        version.unwrap_or(KernelVersion::new(0, 0, 0)),
    ));
    let links = match netlink::links() {
        Ok(links) => links,
        Err(error) => {
            findings.push(Finding::new(
                Status::Fail,
                "interfaces",
                format!("cannot list the interfaces: {error}"),
            ));
            return findings;
        }
    };
    match preflight::select_interfaces(interfaces, &links) {
        Err(error) => findings.push(Finding::new(Status::Fail, "interfaces", error.to_string())),
        Ok(chosen) => {
            for link in chosen {
                let native = (privileged && link.xdp.is_empty()).then(|| probe_native(&link.name));
                findings.push(interface(link, native));
            }
        }
    }
    findings
}

/// The worst status of `findings` (`Ok` when empty).
#[must_use]
pub fn worst(findings: &[Finding]) -> Status {
    findings
        .iter()
        .map(|finding| finding.status)
        .max()
        .unwrap_or(Status::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::netlink::XdpProgram;

    #[test]
    fn kernel_lines() {
        let cases = [
            (
                "6.18 has tcx",
                KernelVersion::new(6, 18, 0),
                Status::Ok,
                "tcx links",
            ),
            (
                "6.1 uses clsact",
                KernelVersion::new(6, 1, 0),
                Status::Ok,
                "clsact",
            ),
            (
                "5.4 is too old",
                KernelVersion::new(5, 4, 0),
                Status::Fail,
                "upgrade to Linux 5.5.0",
            ),
        ];
        for (name, version, status, needle) in cases {
            let finding = kernel(version);
            let text = finding.to_string();
            assert_eq!(finding.status, status, "case {name}: {text}");
            assert!(
                text.contains(needle),
                "case {name}: expected {needle:?} in {text:?}"
            );
        }
    }

    #[test]
    fn bpffs_is_found_only_at_its_place_with_its_type() {
        let cases = [
            ("mounted", "bpf /sys/fs/bpf bpf rw,nosuid 0 0\n", Status::Ok),
            ("absent", "proc /proc proc rw 0 0\n", Status::Warn),
            ("elsewhere", "bpf /mnt/bpf bpf rw 0 0\n", Status::Warn),
            (
                "wrong type",
                "tmpfs /sys/fs/bpf tmpfs rw 0 0\n",
                Status::Warn,
            ),
        ];
        for (name, mounts, status) in cases {
            let finding = bpffs(mounts);
            assert_eq!(finding.status, status, "case {name}: {finding}");
        }
        assert!(
            bpffs("")
                .to_string()
                .contains("fix: mount -t bpf bpf /sys/fs/bpf"),
            "the fix is the mount command"
        );
    }

    #[test]
    fn capability_lines() {
        let new = KernelVersion::new(6, 18, 0);
        let old = KernelVersion::new(5, 10, 0);
        let three = (1 << 39) | (1 << 38) | (1 << 12);
        let cases: [(&str, u64, KernelVersion, Status, &str); 4] = [
            ("all on a new kernel", three, new, Status::Ok, "not needed"),
            (
                "none",
                0,
                new,
                Status::Fail,
                "missing CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON",
            ),
            (
                "old kernel without sys_resource",
                three,
                old,
                Status::Fail,
                "missing CAP_SYS_RESOURCE",
            ),
            (
                "old kernel with sys_resource",
                three | (1 << 24),
                old,
                Status::Ok,
                "memlock",
            ),
        ];
        for (name, effective, version, status, needle) in cases {
            let findings = capabilities(Some(effective), version);
            let text: Vec<String> = findings.iter().map(ToString::to_string).collect();
            assert_eq!(worst(&findings), status, "case {name}: {text:?}");
            assert!(
                text.iter().any(|line| line.contains(needle)),
                "case {name}: expected {needle:?} in {text:?}"
            );
        }
    }

    #[test]
    fn interface_lines() {
        let free = Link {
            index: 2,
            name: "eth0".into(),
            up: true,
            loopback: false,
            xdp: Vec::new(),
        };
        let mut taken = free.clone();
        taken.xdp.push(XdpProgram {
            id: 7,
            mode: "native",
        });
        let cases = [
            (
                "native",
                &free,
                Some(Ok(())),
                Status::Ok,
                "native XDP supported",
            ),
            (
                "refused",
                &free,
                Some(Err("EOPNOTSUPP".to_owned())),
                Status::Warn,
                "generic XDP will be used",
            ),
            (
                "unprivileged",
                &free,
                None,
                Status::Warn,
                "unknown without CAP_BPF",
            ),
            (
                "taken",
                &taken,
                None,
                Status::Warn,
                "bpftool prog show id 7",
            ),
        ];
        for (name, link, native, status, needle) in cases {
            let finding = interface(link, native);
            let text = finding.to_string();
            assert_eq!(finding.status, status, "case {name}: {text}");
            assert!(
                text.contains(needle),
                "case {name}: expected {needle:?} in {text:?}"
            );
        }
    }
}
