//! The shipped Prometheus rules (deploy/prometheus/portmon-rules.yml): promtool's checks, its
//! unit tests (deploy/prometheus/tests/*.yml), and loading into a real server.
//!
//! Needs `promtool` and `prometheus` (Debian's prometheus package, `cargo xtask setup`); fails
//! without them. No root needed.
#![expect(clippy::expect_used, reason = "tests panic with what they expected")]

use std::{collections::BTreeSet, fs, path::PathBuf, process::Output};

use monitor_common::layout::L4;
use portmon::alerts::AlertsConfig;
use portmon_tests::prometheus::{Prometheus, ServerConfig, promtool, repo_root, shipped_rules};

fn rules_dir() -> PathBuf {
    repo_root().join("deploy/prometheus")
}

fn rules_text() -> String {
    fs::read_to_string(shipped_rules()).expect("deploy/prometheus/portmon-rules.yml is readable")
}

/// The unit-test files, sorted.
fn test_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(rules_dir().join("tests"))
        .expect("deploy/prometheus/tests exists")
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "expected promtool unit tests in deploy/prometheus/tests/*.yml, found none"
    );
    files
}

fn describe(output: &Output) -> String {
    format!(
        "exit status {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Names following `key` at the start of a (trimmed) YAML line, e.g. `- alert: Name`.
fn names_after(text: &str, key: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.trim_start().strip_prefix(key))
        .map(|name| name.trim().to_owned())
        .collect()
}

#[test]
fn rules_pass_promtool_check_with_every_lint() {
    let output = promtool(
        &rules_dir(),
        &[
            "check",
            "rules",
            "--lint=all",
            "--lint-fatal",
            "portmon-rules.yml",
        ],
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.contains("SUCCESS"),
        "expected `promtool check rules` to succeed, got {}",
        describe(&output)
    );
}

#[test]
fn rules_pass_their_promtool_unit_tests() {
    let files = test_files();
    let mut args = vec!["test".to_owned(), "rules".to_owned()];
    args.extend(files.iter().map(|f| f.to_string_lossy().into_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = promtool(&rules_dir().join("tests"), &args);
    let text = String::from_utf8_lossy(&output.stdout);
    let successes = text.matches("SUCCESS").count();
    assert!(
        output.status.success() && successes == files.len(),
        "expected `promtool test rules` to pass all {} files ({files:?}), {successes} did: {}",
        files.len(),
        describe(&output)
    );
}

#[test]
fn every_alert_has_a_unit_test() {
    let alerts = names_after(&rules_text(), "- alert:");
    assert!(
        alerts.len() >= 8,
        "expected the shipped alerts, found only {alerts:?}"
    );
    let mut tested = BTreeSet::new();
    for file in test_files() {
        let text = fs::read_to_string(&file).expect("a readable test file");
        tested.extend(names_after(&text, "alertname:"));
    }
    let untested: Vec<&String> = alerts.difference(&tested).collect();
    assert!(
        untested.is_empty(),
        "expected a promtool test for every alert; untested: {untested:?}"
    );
    let unknown: Vec<&String> = tested.difference(&alerts).collect();
    assert!(
        unknown.is_empty(),
        "tests name alerts the rules do not have: {unknown:?}"
    );
}

#[test]
fn must_be_zero_ports_match_the_detector_defaults() {
    // The rule selects `protocol="tcp", port=~"23|514|2375"`; the detector's default list must
    // be the same ports, all TCP, so both sides of portmon alert on the same traffic.
    let text = rules_text();
    let start = text
        .find("- alert: PortmonMustBeZeroTraffic")
        .expect("the must-be-zero alert");
    let rule = &text[start..];
    let selector = "protocol=\"tcp\", port=~\"";
    let ports_at = rule.find(selector).expect("the must-be-zero selector") + selector.len();
    let ports =
        &rule[ports_at..ports_at + rule[ports_at..].find('"').expect("the end of the regex")];
    let in_rules: BTreeSet<u16> = ports
        .split('|')
        .map(|p| p.parse().expect("a port number"))
        .collect();
    let defaults = AlertsConfig::default().must_be_zero;
    assert!(
        defaults.iter().all(|spec| spec.protocol == L4::Tcp),
        "expected only TCP defaults, got {defaults:?}"
    );
    let in_detector: BTreeSet<u16> = defaults.iter().map(|spec| spec.port).collect();
    assert_eq!(
        in_rules, in_detector,
        "must-be-zero ports: rules (left) vs detector defaults (right)"
    );
}

#[test]
fn rules_load_into_a_real_server() {
    let server = Prometheus::start(&ServerConfig {
        rule_files: vec![shipped_rules()],
        ..ServerConfig::default()
    })
    .expect("prometheus starts with the shipped rules");
    let loaded: BTreeSet<String> = server
        .rule_health()
        .expect("/api/v1/rules answers")
        .into_iter()
        .map(|rule| rule.name)
        .collect();
    let text = rules_text();
    let mut shipped = names_after(&text, "- alert:");
    shipped.extend(names_after(&text, "- record:"));
    assert_eq!(
        loaded, shipped,
        "rules loaded by the server (left) vs rules in the file (right)"
    );
}
