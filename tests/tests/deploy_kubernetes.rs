//! The Kubernetes manifests in `deploy/kubernetes/` and the Helm chart in `deploy/helm/`,
//! checked offline:
//!
//! * every built-in object passes `kubernetes-validate --strict` (unknown fields are
//!   errors) against the oldest and the newest Kubernetes the tool knows;
//! * the PodMonitor, a CRD the validator has no schema for, is checked here structurally;
//! * what portmon needs holds in every rendering: host network, exactly the capabilities
//!   `portmon run` checks for, bpffs and BTF mounts, probes on /healthz, a metrics port the
//!   Service and the PodMonitor agree on, and only flags and variables `portmon run` knows.
//!
//! Needs `kubernetes-validate` (`python3 -m pip install kubernetes-validate==1.37.0`); the
//! test fails when it is missing. The chart is rendered with `helm` when it is on PATH, else
//! with the Helm SDK from PyPI (`python3 -m pip install helm-python-sdk==0.2.2`, module
//! `helm_python`); with neither, only the chart rendering is skipped, with a printed note.

#![expect(clippy::expect_used, reason = "tests panic with what they expected")]

use std::{
    collections::BTreeSet,
    fs,
    io::ErrorKind,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use portmon::{caps::REQUIRED, config::Config};
use portmon_tests::daemon::{portmon_binary, run_command};
use serde::Deserialize as _;
use serde_norway::Value;

/// The oldest Kubernetes the manifests support (the chart's `kubeVersion`) and the
/// validator's newest; both must accept every object.
const KUBERNETES_VERSIONS: [Option<&str>; 2] = [Some("1.25.0"), None];
/// How to get the validator.
const VALIDATOR_INSTALL: &str = "python3 -m pip install kubernetes-validate==1.37.0";
/// Flags the chart may pass before `portmon run` has them: the web config file of the
/// secure-endpoint work in progress. Accepted only while `--help` lacks them.
const PENDING_FLAGS: [&str; 1] = ["--web.config.file"];
/// One external command finishes well within this.
const LIMIT: Duration = Duration::from_mins(3);
/// Where the chart is installed in the renderings.
const NAMESPACE: &str = "monitoring";

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn read(relative: &str) -> String {
    let path = repo_path(relative);
    fs::read_to_string(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every non-empty document of a multi-document YAML text.
fn documents(case: &str, yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|document| {
            Value::deserialize(document)
                .unwrap_or_else(|error| panic!("{case}: invalid YAML: {error}"))
        })
        .filter(|document| !document.is_null())
        .collect()
}

/// `value` at a path of mapping keys and sequence indices written `a.b.0.c`.
fn at<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(value, |value, step| match step.parse::<usize>() {
            Ok(index) => value.get(index),
            Err(_) => value.get(step),
        })
}

fn string_at<'a>(case: &str, value: &'a Value, path: &str) -> &'a str {
    at(value, path).and_then(Value::as_str).unwrap_or_else(|| {
        panic!(
            "{case}: expected a string at {path}, got {:?}",
            at(value, path)
        )
    })
}

fn sequence_at<'a>(case: &str, value: &'a Value, path: &str) -> &'a [Value] {
    at(value, path).and_then(Value::as_sequence).map_or_else(
        || {
            panic!(
                "{case}: expected a list at {path}, got {:?}",
                at(value, path)
            )
        },
        Vec::as_slice,
    )
}

fn kind(document: &Value) -> &str {
    at(document, "kind").and_then(Value::as_str).unwrap_or("")
}

fn name(document: &Value) -> &str {
    at(document, "metadata.name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn only<'a>(case: &str, documents: &'a [Value], wanted: &str) -> &'a Value {
    let mut found = documents.iter().filter(|document| kind(document) == wanted);
    match (found.next(), found.next()) {
        (Some(document), None) => document,
        _ => panic!(
            "{case}: expected exactly one {wanted}, got kinds {:?}",
            documents.iter().map(kind).collect::<Vec<_>>()
        ),
    }
}

/// A file under the temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(purpose: &str, contents: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "portmon-deploy-k8s-{}-{}-{purpose}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::write(&path, contents)
            .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Runs `kubernetes-validate --strict` on `documents` for one Kubernetes version.
fn run_validator(case: &str, documents: &[Value], version: Option<&str>) -> Output {
    let mut yaml = String::new();
    for document in documents {
        let body = serde_norway::to_string(document)
            .unwrap_or_else(|error| panic!("{case}: serializing a document: {error}"));
        yaml.push_str("---\n");
        yaml.push_str(&body);
    }
    let file = TempFile::new("validate.yaml", &yaml);
    let mut command = Command::new("kubernetes-validate");
    command.arg("--strict");
    if let Some(version) = version {
        command.args(["--kubernetes-version", version]);
    }
    command.arg(&file.0);
    match run_command(&mut command, LIMIT) {
        Ok(output) => output,
        Err(error) => panic!(
            "{case}: running kubernetes-validate failed: {error:#}. Install it with \
             `{VALIDATOR_INSTALL}`"
        ),
    }
}

/// Every document passes strict validation, each reported as passed, with no warning
/// (an unknown kind is only a warning to the tool, hence the check on its output).
fn validate_builtin(case: &str, documents: &[Value]) {
    assert!(!documents.is_empty(), "{case}: nothing to validate");
    for version in KUBERNETES_VERSIONS {
        let label = version.unwrap_or("the newest");
        let output = run_validator(case, documents, version);
        let report = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert!(
            output.status.success(),
            "{case}: expected kubernetes-validate --strict to pass for Kubernetes {label}, \
             got {}:\n{report}",
            output.status
        );
        assert!(
            !report.contains("WARN") && !report.contains("ERROR"),
            "{case}: expected no warning from kubernetes-validate for {label}:\n{report}"
        );
        for document in documents {
            let needle = format!(
                "passed for resource {}/{}",
                kind(document).to_lowercase(),
                name(document)
            );
            assert!(
                report.contains(&needle),
                "{case}: expected {needle:?} for Kubernetes {label} in:\n{report}"
            );
        }
    }
}

/// `portmon run --help`, which names every flag and `PORTMON_*` variable.
fn run_help() -> String {
    let output = run_command(
        Command::new(portmon_binary()).args(["run", "--help"]),
        LIMIT,
    )
    .unwrap_or_else(|error| panic!("running portmon run --help: {error:#}"));
    text(&output.stdout)
}

/// The checks every rendering must pass. `documents` hold the DaemonSet and the Service,
/// and a PodMonitor when `with_pod_monitor`.
fn check_deployment(case: &str, documents: &[Value], with_pod_monitor: bool, help: &str) {
    let daemonset = only(case, documents, "DaemonSet");
    let pod = at(daemonset, "spec.template.spec")
        .unwrap_or_else(|| panic!("{case}: the DaemonSet has no pod template"));
    let pod_labels = at(daemonset, "spec.template.metadata.labels")
        .and_then(Value::as_mapping)
        .unwrap_or_else(|| panic!("{case}: the pod template has no labels"));
    let namespace = string_at(case, daemonset, "metadata.namespace");

    for (what, path, expected) in [
        ("host network", "hostNetwork", Value::Bool(true)),
        ("cluster DNS", "dnsPolicy", "ClusterFirstWithHostNet".into()),
        (
            "no API token",
            "automountServiceAccountToken",
            Value::Bool(false),
        ),
        (
            "seccomp",
            "securityContext.seccompProfile.type",
            "RuntimeDefault".into(),
        ),
        ("runs everywhere", "tolerations.0.operator", "Exists".into()),
        (
            "bpffs from the host",
            "volumes.0.hostPath.path",
            "/sys/fs/bpf".into(),
        ),
        (
            "BTF from the host",
            "volumes.1.hostPath.path",
            "/sys/kernel/btf".into(),
        ),
    ] {
        assert_eq!(at(pod, path), Some(&expected), "{case}: {what} ({path})");
    }

    let containers = sequence_at(case, pod, "containers");
    assert_eq!(containers.len(), 1, "{case}: expected one container");
    check_privileges(case, &containers[0]);
    check_container(case, &containers[0], help);

    let service = only(case, documents, "Service");
    assert_eq!(
        string_at(case, service, "spec.ports.0.name"),
        "metrics",
        "{case}: the Service port's name"
    );
    assert_eq!(
        string_at(case, service, "spec.ports.0.targetPort"),
        "metrics",
        "{case}: the Service targets the named container port"
    );
    assert_selects(case, "Service", at(service, "spec.selector"), pod_labels);

    let monitors: Vec<&Value> = documents
        .iter()
        .filter(|document| kind(document) == "PodMonitor")
        .collect();
    if with_pod_monitor {
        assert_eq!(monitors.len(), 1, "{case}: expected one PodMonitor");
        check_pod_monitor(case, monitors[0], namespace, pod_labels);
    } else {
        assert!(monitors.is_empty(), "{case}: expected no PodMonitor");
    }
}

/// Exactly the needed capabilities, and nothing that would give more.
fn check_privileges(case: &str, container: &Value) {
    let security = at(container, "securityContext")
        .unwrap_or_else(|| panic!("{case}: the container has no securityContext"));
    for (what, path, expected) in [
        ("not privileged", "privileged", Value::Bool(false)),
        (
            "no privilege escalation",
            "allowPrivilegeEscalation",
            Value::Bool(false),
        ),
        (
            "read-only root",
            "readOnlyRootFilesystem",
            Value::Bool(true),
        ),
        (
            "drops every capability",
            "capabilities.drop.0",
            "ALL".into(),
        ),
    ] {
        assert_eq!(
            at(security, path),
            Some(&expected),
            "{case}: {what} ({path})"
        );
    }
    let mut added: Vec<String> = sequence_at(case, security, "capabilities.add")
        .iter()
        .map(|cap| format!("CAP_{}", cap.as_str().unwrap_or("?")))
        .collect();
    added.sort();
    let mut required: Vec<String> = REQUIRED.iter().map(|cap| cap.name().to_owned()).collect();
    required.sort();
    assert_eq!(
        added, required,
        "{case}: expected exactly the capabilities `portmon run` checks for"
    );
}

/// Mounts, port, probes, and only flags and variables `portmon run` knows.
fn check_container(case: &str, container: &Value, help: &str) {
    let mounts = sequence_at(case, container, "volumeMounts");
    let mount = |path: &str| {
        mounts
            .iter()
            .find(|mount| at(mount, "mountPath").and_then(Value::as_str) == Some(path))
            .unwrap_or_else(|| panic!("{case}: expected a volume mounted at {path}"))
    };
    assert_ne!(
        at(mount("/sys/fs/bpf"), "readOnly"),
        Some(&Value::Bool(true)),
        "{case}: bpffs must be writable to pin"
    );
    assert_eq!(
        at(mount("/sys/kernel/btf"), "readOnly"),
        Some(&Value::Bool(true)),
        "{case}: BTF is only read"
    );

    assert_eq!(
        string_at(case, container, "ports.0.name"),
        "metrics",
        "{case}: the container port's name"
    );
    let port = at(container, "ports.0.containerPort")
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{case}: expected a numeric containerPort"));
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            string_at(case, container, &format!("{probe}.httpGet.path")),
            "/healthz",
            "{case}: {probe}"
        );
        assert_eq!(
            string_at(case, container, &format!("{probe}.httpGet.port")),
            "metrics",
            "{case}: {probe}"
        );
    }

    let env = sequence_at(case, container, "env");
    let variable = |wanted: &str| {
        env.iter()
            .find(|entry| at(entry, "name").and_then(Value::as_str) == Some(wanted))
            .and_then(|entry| at(entry, "value"))
            .and_then(Value::as_str)
    };
    assert_eq!(
        variable("PORTMON_LISTEN"),
        Some(format!("0.0.0.0:{port}").as_str()),
        "{case}: portmon must listen beyond loopback, on the container port"
    );
    for entry in env {
        let variable = string_at(case, entry, "name");
        if variable.starts_with("PORTMON_") {
            assert!(
                help.contains(&format!("[env: {variable}=")),
                "{case}: sets {variable}, which `portmon run --help` does not list"
            );
        }
    }
    let args = sequence_at(case, container, "args");
    assert_eq!(
        args.first().and_then(Value::as_str),
        Some("run"),
        "{case}: the container runs `portmon run`"
    );
    for arg in &args[1..] {
        let arg = arg.as_str().unwrap_or_default();
        let flag = arg.split('=').next().unwrap_or_default();
        let known = help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n"));
        assert!(
            known || PENDING_FLAGS.contains(&flag),
            "{case}: passes {arg}, a flag `portmon run --help` does not list"
        );
    }
}

/// The PodMonitor (a CRD, which the validator cannot check) scrapes the pods' named port.
fn check_pod_monitor(
    case: &str,
    monitor: &Value,
    namespace: &str,
    pod_labels: &serde_norway::Mapping,
) {
    assert_eq!(
        string_at(case, monitor, "apiVersion"),
        "monitoring.coreos.com/v1",
        "{case}: the Prometheus Operator's API"
    );
    assert_selects(
        case,
        "PodMonitor",
        at(monitor, "spec.selector.matchLabels"),
        pod_labels,
    );
    assert!(
        sequence_at(case, monitor, "spec.namespaceSelector.matchNames")
            .iter()
            .any(|name| name.as_str() == Some(namespace)),
        "{case}: the PodMonitor must look in the DaemonSet's namespace {namespace}"
    );
    let endpoint = sequence_at(case, monitor, "spec.podMetricsEndpoints")
        .first()
        .unwrap_or_else(|| panic!("{case}: the PodMonitor has no endpoint"));
    assert_eq!(
        string_at(case, endpoint, "port"),
        "metrics",
        "{case}: scrapes the named port"
    );
    assert_eq!(
        string_at(case, endpoint, "path"),
        "/metrics",
        "{case}: scrape path"
    );
}

/// Every label of `selector` is on the pods.
fn assert_selects(
    case: &str,
    what: &str,
    selector: Option<&Value>,
    pod_labels: &serde_norway::Mapping,
) {
    let selector = selector
        .and_then(Value::as_mapping)
        .unwrap_or_else(|| panic!("{case}: the {what} has no selector"));
    assert!(
        !selector.is_empty(),
        "{case}: the {what} selects everything"
    );
    for (key, value) in selector {
        assert_eq!(
            pod_labels.get(key),
            Some(value),
            "{case}: the {what} selects {key:?}={value:?}, which the pods lack"
        );
    }
}

fn plain_manifests() -> (Vec<Value>, Vec<Value>) {
    let workloads = documents("daemonset.yaml", &read("deploy/kubernetes/daemonset.yaml"));
    let monitors = documents(
        "podmonitor.yaml",
        &read("deploy/kubernetes/podmonitor.yaml"),
    );
    (workloads, monitors)
}

#[test]
fn plain_manifests_pass_strict_validation() {
    let (workloads, monitors) = plain_manifests();
    let kinds: BTreeSet<&str> = workloads.iter().map(kind).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["DaemonSet", "Namespace", "Service", "ServiceAccount"]),
        "daemonset.yaml: the objects it holds"
    );
    validate_builtin("daemonset.yaml", &workloads);
    assert!(
        monitors
            .iter()
            .all(|document| kind(document) == "PodMonitor"),
        "podmonitor.yaml holds only the CRD object, which is checked structurally"
    );
}

#[test]
fn plain_manifests_hold_what_portmon_needs() {
    let (mut documents, monitors) = plain_manifests();
    documents.extend(monitors);
    check_deployment("deploy/kubernetes", &documents, true, &run_help());
}

#[test]
fn the_validator_rejects_a_misspelt_field() {
    let (mut workloads, _) = plain_manifests();
    let daemonset = workloads
        .iter_mut()
        .find(|document| kind(document) == "DaemonSet")
        .expect("daemonset.yaml holds a DaemonSet");
    let pod = daemonset
        .get_mut("spec")
        .and_then(|spec| spec.get_mut("template"))
        .and_then(|template| template.get_mut("spec"))
        .and_then(Value::as_mapping_mut)
        .expect("the DaemonSet has a pod template");
    pod.insert("hostNetwrok".into(), Value::Bool(true));
    let output = run_validator("misspelt field", &workloads, None);
    assert!(
        !output.status.success(),
        "expected kubernetes-validate --strict to reject `hostNetwrok`; it passed:\n{}",
        text(&output.stdout)
    );
}

/// How the chart gets rendered: the helm CLI, or the Helm SDK from PyPI.
enum Renderer {
    Helm,
    Python,
}

/// Renders the chart with `values` (JSON) through the Helm SDK's Python binding: prints a
/// JSON object of template path to manifest, or the render error on stderr (exit 1).
const PYTHON_RENDER: &str = r#"
import json, sys
import helm_python as helm
chart_dir, values, namespace = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
lint = helm.lint(chart_dir, values, strict=True, namespace=namespace)
problems = [m for m in lint["messages"] if m["severity"] >= 2] + lint["errors"]
if problems:
    sys.exit("helm lint --strict: " + json.dumps(problems))
chart = helm.Chart.load(chart_dir)
try:
    rendered = chart.render(values, name="portmon", namespace=namespace, is_install=True)
except Exception as error:
    sys.exit(str(error))
print(json.dumps(rendered))
"#;

fn renderer() -> Option<Renderer> {
    let works = |command: &mut Command| {
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if works(Command::new("helm").arg("version")) {
        return Some(Renderer::Helm);
    }
    if works(Command::new("python3").args(["-c", "import helm_python"])) {
        return Some(Renderer::Python);
    }
    None
}

/// The chart rendered with `values`: its YAML manifests, or the error text.
fn render(renderer: &Renderer, values: &serde_json::Value) -> Result<String, String> {
    let chart = repo_path("deploy/helm/portmon").display().to_string();
    let values_json = values.to_string();
    let run = |command: &mut Command| match run_command(command, LIMIT) {
        Ok(output) if output.status.success() => Ok(text(&output.stdout)),
        Ok(output) => Err(format!("{}{}", text(&output.stderr), text(&output.stdout))),
        Err(error) => panic!("running the chart renderer: {error:#}"),
    };
    match renderer {
        Renderer::Helm => {
            let file = TempFile::new("values.json", &values_json);
            let values_path = file.0.display().to_string();
            run(Command::new("helm").args([
                "lint",
                "--strict",
                "--namespace",
                NAMESPACE,
                "--values",
                &values_path,
                &chart,
            ]))?;
            run(Command::new("helm").args([
                "template",
                "portmon",
                &chart,
                "--namespace",
                NAMESPACE,
                "--values",
                &values_path,
            ]))
        }
        Renderer::Python => {
            let json = run(Command::new("python3").args([
                "-c",
                PYTHON_RENDER,
                &chart,
                &values_json,
                NAMESPACE,
            ]))?;
            let files: std::collections::BTreeMap<String, String> = serde_json::from_str(&json)
                .unwrap_or_else(|error| panic!("the renderer's JSON: {error}"));
            let mut yaml = String::new();
            for (path, manifest) in files {
                if Path::new(&path)
                    .extension()
                    .is_some_and(|extension| extension == "yaml")
                {
                    yaml.push_str("---\n");
                    yaml.push_str(&manifest);
                    yaml.push('\n');
                }
            }
            Ok(yaml)
        }
    }
}

#[test]
fn the_helm_chart_renders_valid_manifests_for_each_values_set() {
    let Some(renderer) = renderer() else {
        println!(
            "note: neither `helm` nor the Python module `helm_python` (PyPI helm-python-sdk) \
             is installed; the Helm chart was NOT rendered or validated"
        );
        return;
    };
    let help = run_help();
    let config = "[daemon]\ntop_k = 40\n\n[[ports]]\nport = 8080\nprotocol = \"tcp\"\n\
                  service = \"intranet-http\"\nsecurity = \"plaintext\"\n";
    let cases = [
        ("defaults", serde_json::json!({}), false),
        (
            "everything on",
            serde_json::json!({
                "interfaces": ["eth0", "eth1"],
                "xdpMode": "generic",
                "egress": false,
                "listen": {"port": 9898},
                "config": config,
                "webConfig": {"secretName": "portmon-web", "tls": true},
                "extraArgs": ["--top-k=30"],
                "extraEnv": [{"name": "PORTMON_MAX_SLICES", "value": "4"}],
                "priorityClassName": "system-node-critical",
                "podMonitor": {"enabled": true, "labels": {"release": "kube-prometheus-stack"},
                               "scheme": "https", "tlsConfig": {"insecureSkipVerify": true}},
            }),
            true,
        ),
        (
            "every interface, no service account",
            serde_json::json!({"interfaces": [], "serviceAccount": {"create": false}}),
            false,
        ),
    ];
    for (case, values, with_pod_monitor) in cases {
        let yaml = render(&renderer, &values)
            .unwrap_or_else(|error| panic!("{case}: the chart did not render:\n{error}"));
        let all = documents(case, &yaml);
        let (monitors, builtin): (Vec<Value>, Vec<Value>) = all
            .iter()
            .cloned()
            .partition(|document| kind(document) == "PodMonitor");
        validate_builtin(case, &builtin);
        check_deployment(case, &all, with_pod_monitor, &help);
        assert_eq!(
            monitors.len(),
            usize::from(with_pod_monitor),
            "{case}: PodMonitors rendered"
        );
        let configmap = only(case, &all, "ConfigMap");
        let toml = at(configmap, "data")
            .and_then(|data| data.get("portmon.toml"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{case}: the ConfigMap has no portmon.toml"));
        if let Err(error) = Config::parse(toml, "the chart's portmon.toml") {
            panic!("{case}: portmon rejects the rendered config: {error}\n{toml}");
        }
    }
}

#[test]
fn the_helm_chart_rejects_misspelt_values() {
    let Some(renderer) = renderer() else {
        println!("note: no Helm renderer installed; the values schema was NOT checked");
        return;
    };
    for (case, values) in [
        ("unknown key", serde_json::json!({"interface": ["eth0"]})),
        ("unknown XDP mode", serde_json::json!({"xdpMode": "fast"})),
        (
            "port out of range",
            serde_json::json!({"listen": {"port": 70000}}),
        ),
    ] {
        assert!(
            render(&renderer, &values).is_err(),
            "{case}: expected the values schema to refuse {values}"
        );
    }
}

#[test]
fn the_validator_is_installed() {
    match Command::new("kubernetes-validate")
        .arg("--version")
        .output()
    {
        Ok(output) => assert!(
            output.status.success(),
            "kubernetes-validate --version failed: {}",
            text(&output.stderr)
        ),
        Err(error) if error.kind() == ErrorKind::NotFound => {
            panic!("kubernetes-validate is not installed: run `{VALIDATOR_INSTALL}`")
        }
        Err(error) => panic!("running kubernetes-validate: {error}"),
    }
}
