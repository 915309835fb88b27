//! `portmon ports` through the real binary: no privileges, no kernel, stable output.

use std::process::{Command, Output};

const GOLDEN_23: &str = include_str!("golden/ports-23.json");

fn portmon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portmon"))
        .args(args)
        .env_remove("PORTMON_CONFIG")
        .output()
        .unwrap_or_else(|error| panic!("running portmon {args:?}: {error}"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn ports_23_json_matches_the_golden_file() {
    let output = portmon(&["ports", "23", "--json"]);
    assert!(
        output.status.success(),
        "expected success, got {:?}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout(&output).trim_end(),
        GOLDEN_23.trim_end(),
        "portmon ports 23 --json differs from monitor/tests/golden/ports-23.json"
    );
}

#[test]
fn ports_without_arguments_prints_the_whole_security_table() {
    let output = portmon(&["ports"]);
    assert!(
        output.status.success(),
        "expected success, got {:?}",
        output.status
    );
    let text = stdout(&output);
    let policy = portmon::ports::Policy::builtin();
    let rows = text.lines().count().saturating_sub(1); // One header line.
    assert_eq!(
        rows,
        policy.security_table().count(),
        "one row per security-table entry in:\n{text}"
    );
    for needle in ["telnet", "snmp", "ambiguous", "ssh (22/tcp)"] {
        assert!(text.contains(needle), "expected {needle:?} in:\n{text}");
    }
}

#[test]
fn an_unknown_service_is_an_error_naming_it() {
    let output = portmon(&["ports", "no-such-service"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "exit code; stderr: {stderr}");
    assert!(
        stderr.contains("no-such-service"),
        "expected the query named in {stderr:?}"
    );
}

#[test]
fn a_bad_config_key_names_the_key_and_the_line() {
    let dir = std::env::temp_dir().join(format!("portmon-ports-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("creating {dir:?}: {error}"));
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[daemon]\ninterval = \"1s\"\n\n[[ports]]\nport = 23\nsevice = \"x\"\n",
    )
    .unwrap_or_else(|error| panic!("writing {path:?}: {error}"));
    let config = path.to_string_lossy().into_owned();
    let output = portmon(&["ports", "--config", &config, "23"]);
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "exit code; stderr: {stderr}");
    assert!(
        stderr.contains("line 6") && stderr.contains("sevice"),
        "expected line 6 and the key `sevice` in {stderr:?}"
    );
}
