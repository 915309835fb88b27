//! `portmon run` refuses clearly: every error case exits non-zero with a message that names
//! the problem and the fix, and leaves nothing attached to any interface.

#![expect(clippy::expect_used, reason = "tests panic with what they expected")]

use std::{net::TcpListener, process::Output, time::Duration};

use portmon::{
    attach::{self, XdpMode},
    dataplane::{DataPlane, LoadOptions},
};
use portmon_tests::{
    daemon::{
        ScratchLink, free_port, portmon_binary, run_command, run_portmon, tcx_egress_programs,
        xdp_programs,
    },
    netns::{Stack, Topology},
};

/// A refused `portmon run` exits well within this.
const LIMIT: Duration = Duration::from_mins(2);

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `portmon run --listen <free> args...` and expects a refusal with exit code 1
/// whose message contains every needle.
fn expect_refusal(case: &str, args: &[&str], needles: &[&str]) -> String {
    let address = format!("127.0.0.1:{}", free_port());
    let command_line: Vec<&str> = ["run", "--listen", &address]
        .iter()
        .chain(args)
        .copied()
        .collect();
    let output =
        run_portmon(&command_line, &[], LIMIT).unwrap_or_else(|error| panic!("{case}: {error:#}"));
    let message = stderr(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{case}: exit code; stderr:\n{message}"
    );
    for needle in needles {
        assert!(
            message.contains(needle),
            "{case}: expected {needle:?} in:\n{message}"
        );
    }
    message
}

fn assert_nothing_attached(case: &str, interface: &str) {
    assert_eq!(
        xdp_programs(interface).expect("the interface is listed"),
        Vec::<u32>::new(),
        "{case}: XDP programs left on {interface}"
    );
    assert_eq!(
        tcx_egress_programs(interface).expect("tcx can be queried"),
        Vec::<u32>::new(),
        "{case}: tcx egress programs left on {interface}"
    );
}

#[test]
fn an_unknown_interface_is_named_with_the_available_ones() {
    let topology = Topology::new(Stack::Ipv4).expect("the veth topology is set up (run as root)");
    let host = topology.host_if();
    let missing = format!("pmnone{}", std::process::id());
    expect_refusal(
        "unknown interface",
        &["--iface", host, "--iface", &missing],
        &[
            &format!("unknown interface \"{missing}\""),
            "the interfaces here are:",
            "lo",
            host,
            "--iface",
        ],
    );
    assert_nothing_attached("unknown interface", host);
}

#[test]
fn missing_privileges_name_the_capabilities_and_how_to_grant_them() {
    let topology = Topology::new(Stack::Ipv4).expect("the veth topology is set up (run as root)");
    let host = topology.host_if();
    let listen = format!("127.0.0.1:{}", free_port());
    let binary = portmon_binary().to_string_lossy().into_owned();
    // (case, setpriv capability arguments, capabilities reported missing)
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "no capabilities",
            &[
                "--inh-caps=-all",
                "--ambient-caps=-all",
                "--bounding-set=-all",
            ],
            "lacks CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON",
        ),
        (
            "CAP_NET_ADMIN only",
            &[
                "--inh-caps=-all,+net_admin",
                "--ambient-caps=-all,+net_admin",
            ],
            "lacks CAP_BPF, CAP_PERFMON",
        ),
        (
            "no CAP_PERFMON",
            &[
                "--inh-caps=-all,+net_admin,+bpf",
                "--ambient-caps=-all,+net_admin,+bpf",
            ],
            "lacks CAP_PERFMON",
        ),
    ];
    for (case, caps, lacks) in cases {
        let output = run_command(
            std::process::Command::new("setpriv")
                .args(*caps)
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .args([&binary, "run", "--listen", &listen, "--iface", host]),
            LIMIT,
        )
        .unwrap_or_else(|error| panic!("{case}: setpriv (util-linux) runs portmon: {error:#}"));
        let message = stderr(&output);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{case}: exit code; stderr:\n{message}"
        );
        for needle in [
            "missing privileges",
            lacks,
            "CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON",
            "as root",
            "setcap cap_bpf,cap_net_admin,cap_perfmon+ep",
            "AmbientCapabilities=",
        ] {
            assert!(
                message.contains(needle),
                "{case}: expected {needle:?} in:\n{message}"
            );
        }
        assert_nothing_attached(case, host);
    }
}

#[test]
fn an_xdp_program_already_attached_is_refused_by_id_and_kept() {
    let topology = Topology::new(Stack::Ipv4).expect("the veth topology is set up (run as root)");
    let host = topology.host_if();
    // Another program holds the hook: a second portmon data plane, attached through aya.
    let mut foreign = DataPlane::load(LoadOptions {
        max_slices: 1,
        ..LoadOptions::default()
    })
    .expect("the kernel programs load");
    attach::attach_xdp(&mut foreign, host, XdpMode::Generic).expect("the foreign XDP attaches");
    let id = foreign
        .xdp_mut()
        .expect("the XDP program exists")
        .info()
        .expect("the program describes itself")
        .id();
    // `--hook xdp` refuses; the default, `auto`, counts on TC ingress (tests/tests/link_events.rs).
    expect_refusal(
        "xdp taken",
        &["--iface", host, "--hook", "xdp"],
        &[
            &format!("{host} already has XDP program id {id} attached (generic mode)"),
            "never replaces",
            "--hook auto",
            &format!("bpftool prog show id {id}"),
        ],
    );
    assert_eq!(
        xdp_programs(host).expect("the interface is listed"),
        vec![id],
        "the foreign program is still the one attached"
    );
    assert_eq!(
        tcx_egress_programs(host).expect("tcx can be queried"),
        Vec::<u32>::new(),
        "portmon attached nothing on egress either"
    );
    drop(foreign);
    assert_nothing_attached("after the foreign program went", host);
}

/// A temporary directory removed on drop, also when the test panics.
struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("portmon-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|error| panic!("creating {}: {error}", path.display()));
        Self(path)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn bad_config_keys_and_values_name_the_key_and_the_line() {
    let topology = Topology::new(Stack::Ipv4).expect("the veth topology is set up (run as root)");
    let host = topology.host_if();
    let scratch = ScratchDir::new("cli-errors");
    let dir = scratch.path();
    // (case, file, needles)
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "unknown key",
            "[daemon]\ninterval = \"1s\"\nintervall = \"2s\"\n",
            &[
                "line 3",
                "key `daemon.intervall`",
                "unknown field `intervall`",
            ],
        ),
        (
            "bad duration",
            "# comment\n[daemon]\n\ninterval = \"soon\"\n",
            &[
                "line 4",
                "key `daemon.interval`",
                "invalid duration `soon`",
                "200ms",
            ],
        ),
        (
            "bad xdp mode",
            "[daemon]\nxdp_mode = \"turbo\"\n",
            &["line 2", "key `daemon.xdp_mode`", "turbo"],
        ),
        (
            "unknown section",
            "[daemon]\n[deamon]\n",
            &["line 2", "unknown field `deamon`"],
        ),
        (
            "invalid port override",
            "[[ports]]\nport = 21\nservice = \"ftp\"\n\n[[ports]]\nport = 23\nsecurity = \"unknown\"\n",
            &[
                "line 5",
                "entry #2",
                "security = \"unknown\"` is not allowed",
            ],
        ),
    ];
    for (index, (case, text, needles)) in cases.iter().enumerate() {
        let path = dir.join(format!("case-{index}.toml"));
        std::fs::write(&path, text).unwrap_or_else(|error| panic!("writing {path:?}: {error}"));
        let path_text = path.to_string_lossy().into_owned();
        let mut all = vec![path_text.as_str()];
        all.extend_from_slice(needles);
        expect_refusal(case, &["--iface", host, "--config", &path_text], &all);
        assert_nothing_attached(case, host);
    }
}

#[test]
fn a_taken_listen_address_is_refused_before_attaching() {
    let topology = Topology::new(Stack::Ipv4).expect("the veth topology is set up (run as root)");
    let host = topology.host_if();
    let taken = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let address = taken.local_addr().expect("its address").to_string();
    let output = run_portmon(&["run", "--iface", host, "--listen", &address], &[], LIMIT)
        .unwrap_or_else(|error| panic!("{error:#}"));
    let message = stderr(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "exit code; stderr:\n{message}"
    );
    assert!(
        message.contains(&format!("listening on {address}")) && message.contains("--listen"),
        "expected the address and the flag in:\n{message}"
    );
    assert_nothing_attached("taken address", host);
}

#[test]
fn a_failed_attach_detaches_what_was_already_attached() {
    let topology = Topology::new(Stack::Ipv4).expect("the veth topology is set up (run as root)");
    let host = topology.host_if();
    // An ifb interface has no native XDP: the second attach fails after the first worked.
    let dummy = ScratchLink::new().expect("an ifb interface (run as root)");
    expect_refusal(
        "native XDP unsupported on the second interface",
        &[
            "--iface",
            host,
            "--iface",
            dummy.name(),
            "--xdp-mode",
            "native",
        ],
        &[
            // The first interface was attached before the second failed...
            &format!("attached to {host}: xdp (native), tc_egress (tcx)"),
            &format!("attaching XDP to {} in native mode", dummy.name()),
            "--xdp-mode generic",
        ],
    );
    // ...and is detached again.
    assert_nothing_attached("after the failed attach", host);
    assert_nothing_attached("after the failed attach", dummy.name());
}

#[test]
fn usage_errors_exit_with_2_and_name_the_flag() {
    let cases: &[(&str, &[&str], &str)] = &[
        ("bad interval", &["run", "--interval", "fast"], "--interval"),
        ("bad mode", &["run", "--xdp-mode", "turbo"], "--xdp-mode"),
        ("bad address", &["run", "--listen", "nowhere"], "--listen"),
    ];
    for (case, args, flag) in cases {
        let output =
            run_portmon(args, &[], LIMIT).unwrap_or_else(|error| panic!("{case}: {error:#}"));
        let message = stderr(&output);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{case}: exit code; stderr:\n{message}"
        );
        assert!(
            message.contains(flag),
            "{case}: expected {flag:?} in:\n{message}"
        );
    }
}

#[test]
fn help_lists_every_flag_with_its_environment_variable_and_examples() {
    let output =
        run_portmon(&["run", "--help"], &[], LIMIT).unwrap_or_else(|error| panic!("{error:#}"));
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "--help succeeds");
    for needle in [
        "--iface",
        "PORTMON_IFACE",
        "--xdp-mode",
        "PORTMON_XDP_MODE",
        "--no-egress",
        "PORTMON_NO_EGRESS",
        "--listen",
        "PORTMON_LISTEN",
        "--config",
        "PORTMON_CONFIG",
        "--interval",
        "PORTMON_INTERVAL",
        "--top-k",
        "--max-slices",
        "--debug-kernel",
        "Examples:",
    ] {
        assert!(help.contains(needle), "expected {needle:?} in:\n{help}");
    }
}
