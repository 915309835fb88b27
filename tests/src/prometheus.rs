//! A real Prometheus server for tests: started on a free loopback port with an empty TSDB in
//! a temporary directory, stopped and removed on drop; plus its HTTP API and `promtool`.
//!
//! ```no_run
//! use std::time::Duration;
//! use portmon_tests::prometheus::{Prometheus, ServerConfig};
//!
//! let server = Prometheus::start(&ServerConfig {
//!     scrape_interval: Duration::from_secs(1),
//!     evaluation_interval: Duration::from_secs(1),
//!     rule_files: vec![portmon_tests::prometheus::shipped_rules()],
//!     targets: vec![("portmon".into(), "127.0.0.1:9797".into())],
//! })
//! .expect("prometheus starts");
//! let alerts = server.alerts().expect("alerts answer");
//! ```
//!
//! Debian's `prometheus` package (installed by `cargo xtask setup`) provides both binaries.
//!
//! Also here: [`ScrapeTarget`], a stand-in exporter serving generated metrics text, and
//! [`dashboard_queries`], every PromQL query of a Grafana dashboard with its variables
//! replaced by plausible values, ready for [`Prometheus::query`].

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use serde::Deserialize;

/// How long a started server may take to report ready. Generous: CI machines are busy.
pub const READY_TIMEOUT: Duration = Duration::from_mins(1);
/// Timeout of one API call.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The workspace root.
#[must_use]
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The rules file portmon ships.
#[must_use]
pub fn shipped_rules() -> PathBuf {
    repo_root().join("deploy/prometheus/portmon-rules.yml")
}

/// The Grafana dashboard portmon ships.
#[must_use]
pub fn shipped_dashboard() -> PathBuf {
    repo_root().join("deploy/grafana/portmon.json")
}

/// Finds `name` (`prometheus`, `promtool`) on PATH.
///
/// # Panics
/// When it is missing, with the command that installs it: tests that need it must fail, not
/// skip.
#[must_use]
pub fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed (looked on PATH): run `cargo xtask setup`, which installs \
                 Debian's prometheus package (prometheus and promtool)"
            )
        })
}

/// Runs `promtool` with `args` from `dir`; returns its output whatever the exit status.
///
/// # Panics
/// When promtool is missing or cannot be started.
#[must_use]
pub fn promtool(dir: &Path, args: &[&str]) -> Output {
    Command::new(tool("promtool"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("promtool {args:?} could not be started: {e}"))
}

/// What the server scrapes and evaluates.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Global scrape interval.
    pub scrape_interval: Duration,
    /// Global rule-evaluation interval.
    pub evaluation_interval: Duration,
    /// Rule files to load.
    pub rule_files: Vec<PathBuf>,
    /// Static scrape targets: (job name, `host:port`).
    pub targets: Vec<(String, String)>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            scrape_interval: Duration::from_secs(1),
            evaluation_interval: Duration::from_secs(1),
            rule_files: Vec::new(),
            targets: Vec::new(),
        }
    }
}

impl ServerConfig {
    /// The prometheus.yml text. Paths and names are quoted as JSON strings, which YAML reads.
    fn to_yaml(&self) -> String {
        let mut yaml = format!(
            "global:\n  scrape_interval: {}ms\n  evaluation_interval: {}ms\n",
            self.scrape_interval.as_millis(),
            self.evaluation_interval.as_millis()
        );
        if !self.rule_files.is_empty() {
            yaml.push_str("rule_files:\n");
            for file in &self.rule_files {
                let _ = writeln!(yaml, "  - {}", json_string(&file.to_string_lossy()));
            }
        }
        let mut jobs: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (job, target) in &self.targets {
            jobs.entry(job).or_default().push(target);
        }
        if !jobs.is_empty() {
            yaml.push_str("scrape_configs:\n");
            for (job, targets) in jobs {
                let _ = writeln!(yaml, "  - job_name: {}", json_string(job));
                let targets: Vec<String> = targets.iter().map(|t| json_string(t)).collect();
                let _ = writeln!(
                    yaml,
                    "    static_configs:\n      - targets: [{}]",
                    targets.join(", ")
                );
            }
        }
        yaml
    }
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// A running Prometheus server, killed and its directory removed on drop.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
    agent: ureq::Agent,
}

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels, `__name__` included when it has one.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// One alert as `/api/v1/alerts` reports it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Alert {
    /// The alert's labels, `alertname` included.
    pub labels: BTreeMap<String, String>,
    /// `pending` or `firing`.
    pub state: String,
    /// The value of the expression when it last fired, as text.
    pub value: String,
}

/// The health of one rule as `/api/v1/rules` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleHealth {
    /// Group name.
    pub group: String,
    /// Rule (record or alert) name.
    pub name: String,
    /// `ok`, `err` or `unknown` (not evaluated yet).
    pub health: String,
    /// The last evaluation error, if any.
    pub last_error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: serde_json::Value,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

static SERVERS: AtomicU32 = AtomicU32::new(0);

impl Prometheus {
    /// Starts a server for `config` and waits, at most [`READY_TIMEOUT`], until it is ready.
    ///
    /// # Errors
    /// When it cannot be started or does not become ready; the error quotes its log.
    pub fn start(config: &ServerConfig) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "portmon-prometheus-{}-{}",
            std::process::id(),
            SERVERS.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(dir.join("data"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let config_path = dir.join("prometheus.yml");
        fs::write(&config_path, config.to_yaml())
            .with_context(|| format!("writing {}", config_path.display()))?;
        // The port comes free from the kernel; a race with another process taking it between
        // here and Prometheus' bind shows up as an early exit, reported with the log.
        let addr = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .context("finding a free loopback port")?;
        let log = fs::File::create(dir.join("prometheus.log")).context("creating the log file")?;
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("sharing the log file")?)
            .stderr(log)
            .spawn()
            .context("starting prometheus")?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(HTTP_TIMEOUT))
            .build()
            .into();
        let mut server = Self {
            child,
            dir,
            addr,
            agent,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// The address the server listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of the server, without a trailing slash.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's log so far.
    #[must_use]
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("polling prometheus")? {
                bail!(
                    "prometheus exited with {status} before it was ready; its log:\n{}",
                    self.log()
                );
            }
            let ready = self
                .agent
                .get(format!("{}/-/ready", self.url()))
                .call()
                .is_ok_and(|response| response.status().is_success());
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "prometheus was not ready after {READY_TIMEOUT:?}; its log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Calls `path` of the HTTP API with `params`; returns `data` of a successful answer.
    ///
    /// # Errors
    /// A transport error, or the error Prometheus answered (`errorType: error`).
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> anyhow::Result<serde_json::Value> {
        let mut request = self.agent.get(format!("{}{path}", self.url()));
        for (key, value) in params {
            request = request.query(*key, *value);
        }
        let mut response = request.call().with_context(|| format!("calling {path}"))?;
        let answer: ApiResponse = response
            .body_mut()
            .read_json()
            .with_context(|| format!("reading the answer of {path}"))?;
        if answer.status == "success" {
            Ok(answer.data)
        } else {
            Err(anyhow!(
                "{path} answered {}: {}",
                answer.error_type.unwrap_or_default(),
                answer.error.unwrap_or_default()
            ))
        }
    }

    /// Evaluates `expr` now; returns `data` (`resultType` and `result`).
    ///
    /// # Errors
    /// When the expression does not parse or fails to evaluate: the message is Prometheus'.
    pub fn query(&self, expr: &str) -> anyhow::Result<serde_json::Value> {
        self.api("/api/v1/query", &[("query", expr)])
    }

    /// Evaluates `expr` now and returns its samples.
    ///
    /// # Errors
    /// As [`Self::query`], or when the result is not an instant vector.
    pub fn query_vector(&self, expr: &str) -> anyhow::Result<Vec<Sample>> {
        #[derive(Deserialize)]
        struct Data {
            #[serde(rename = "resultType")]
            result_type: String,
            result: Vec<VectorSample>,
        }
        #[derive(Deserialize)]
        struct VectorSample {
            metric: BTreeMap<String, String>,
            value: (f64, String),
        }
        let data: Data = serde_json::from_value(self.query(expr)?)
            .with_context(|| format!("{expr} did not return an instant vector"))?;
        if data.result_type != "vector" {
            bail!("{expr} returned a {}, not a vector", data.result_type);
        }
        data.result
            .into_iter()
            .map(|sample| {
                let value =
                    sample.value.1.parse().with_context(|| {
                        format!("{expr} returned the value {:?}", sample.value.1)
                    })?;
                Ok(Sample {
                    labels: sample.metric,
                    value,
                })
            })
            .collect()
    }

    /// The alerts pending or firing now.
    ///
    /// # Errors
    /// On a transport or API error.
    pub fn alerts(&self) -> anyhow::Result<Vec<Alert>> {
        #[derive(Deserialize)]
        struct Data {
            alerts: Vec<Alert>,
        }
        let data: Data = serde_json::from_value(self.api("/api/v1/alerts", &[])?)
            .context("reading /api/v1/alerts")?;
        Ok(data.alerts)
    }

    /// The health of every loaded rule.
    ///
    /// # Errors
    /// On a transport or API error.
    pub fn rule_health(&self) -> anyhow::Result<Vec<RuleHealth>> {
        #[derive(Deserialize)]
        struct Data {
            groups: Vec<Group>,
        }
        #[derive(Deserialize)]
        struct Group {
            name: String,
            rules: Vec<Rule>,
        }
        #[derive(Deserialize)]
        struct Rule {
            name: String,
            health: String,
            #[serde(default, rename = "lastError")]
            last_error: Option<String>,
        }
        let data: Data = serde_json::from_value(self.api("/api/v1/rules", &[])?)
            .context("reading /api/v1/rules")?;
        Ok(data
            .groups
            .into_iter()
            .flat_map(|group| {
                group.rules.into_iter().map(move |rule| RuleHealth {
                    group: group.name.clone(),
                    name: rule.name,
                    health: rule.health,
                    last_error: rule.last_error.filter(|e| !e.is_empty()),
                })
            })
            .collect())
    }

    /// Polls `check` every `every` until it returns `Some`, at most until `timeout`.
    ///
    /// # Errors
    /// On timeout; the error names `what` and quotes the last API error, if any.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        every: Duration,
        mut check: impl FnMut(&Self) -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        let mut last_error = None;
        loop {
            match check(self) {
                Ok(Some(value)) => return Ok(value),
                Ok(None) => {}
                Err(error) => last_error = Some(error),
            }
            if Instant::now() >= deadline {
                return Err(anyhow!(
                    "waited {timeout:?} for {what}; last API error: {last_error:?}"
                ));
            }
            thread::sleep(every);
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // SIGKILL: its TSDB is thrown away, there is nothing to flush.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A real Alertmanager (Debian's `prometheus-alertmanager`) on a free loopback port, with a
/// receiver that notifies nobody, clustering off, killed and its directory removed on drop.
pub struct Alertmanager {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
    agent: ureq::Agent,
}

impl Alertmanager {
    /// Starts it and waits, at most [`READY_TIMEOUT`], until it is ready.
    ///
    /// # Errors
    /// When it cannot be started or does not become ready; the error quotes its log.
    pub fn start() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "portmon-alertmanager-{}-{}",
            std::process::id(),
            SERVERS.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(dir.join("data"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let config = dir.join("alertmanager.yml");
        fs::write(
            &config,
            "route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n",
        )
        .with_context(|| format!("writing {}", config.display()))?;
        let addr = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .context("finding a free loopback port")?;
        let log =
            fs::File::create(dir.join("alertmanager.log")).context("creating the log file")?;
        let child = Command::new(tool("prometheus-alertmanager"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("sharing the log file")?)
            .stderr(log)
            .spawn()
            .context("starting prometheus-alertmanager (Debian package prometheus-alertmanager)")?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(HTTP_TIMEOUT))
            .build()
            .into();
        let mut server = Self {
            child,
            dir,
            addr,
            agent,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = server.child.try_wait().context("polling alertmanager")? {
                bail!(
                    "alertmanager exited with {status}; its log:\n{}",
                    server.log()
                );
            }
            if server
                .agent
                .get(format!("{}/-/ready", server.url()))
                .call()
                .is_ok_and(|response| response.status().is_success())
            {
                return Ok(server);
            }
            if Instant::now() >= deadline {
                bail!(
                    "alertmanager was not ready after {READY_TIMEOUT:?}; its log:\n{}",
                    server.log()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Base URL, without a trailing slash.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its log so far.
    #[must_use]
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("alertmanager.log")).unwrap_or_default()
    }

    /// `GET /api/v2/alerts`: every alert it holds, as JSON objects.
    ///
    /// # Errors
    /// On a transport error or an answer that is not a JSON array.
    pub fn alerts(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let mut response = self
            .agent
            .get(format!("{}/api/v2/alerts", self.url()))
            .call()
            .context("calling /api/v2/alerts")?;
        response
            .body_mut()
            .read_json()
            .context("reading the answer of /api/v2/alerts")
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A stand-in exporter: serves `GET /metrics` (any path, in fact) with the text `body` returns
/// at each request, on a free loopback port. Stopped on drop.
pub struct ScrapeTarget {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ScrapeTarget {
    /// Starts serving.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub fn serve(body: impl Fn() -> String + Send + 'static) -> anyhow::Result<Self> {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a loopback port")?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(stream) = stream {
                    // A scraper that misbehaves only loses its own answer.
                    let _ = answer(stream, &body());
                }
            }
        });
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The `host:port` to scrape.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Reads one request's head (bounded in size and time) and answers it with `body`.
fn answer(mut stream: TcpStream, body: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

impl Drop for ScrapeTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One PromQL query of a Grafana dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardQuery {
    /// Where it comes from: `panel "Title" target A` or `variable interface`.
    pub origin: String,
    /// The query as written in the dashboard.
    pub raw: String,
    /// The query with Grafana's variables replaced by [`GRAFANA_VARIABLES`] values and
    /// `label_values(...)` turned into the PromQL it stands for.
    pub promql: String,
}

/// Plausible values for the dashboard's variables, as Grafana would interpolate them: the
/// multi-value variables as regex alternatives, the built-in intervals as durations.
/// Longer names first, so `$__range_s` is not read as `$__range` followed by `_s`.
pub const GRAFANA_VARIABLES: &[(&str, &str)] = &[
    ("__rate_interval", "1m"),
    ("__interval_ms", "15000"),
    ("__interval", "15s"),
    ("__range_ms", "3600000"),
    ("__range_s", "3600"),
    ("__range", "1h"),
    ("interface", "(eth0|veth.+)"),
    ("instance", ".*"),
];

/// Replaces `$name` and `${name}` of every [`GRAFANA_VARIABLES`] entry in `expr`.
#[must_use]
pub fn substitute_grafana_variables(expr: &str) -> String {
    let mut out = expr.to_owned();
    for (name, value) in GRAFANA_VARIABLES {
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    out
}

/// Grafana's `label_values(selector, label)` as PromQL: `group by (label) (selector)`.
fn label_values_to_promql(query: &str) -> Option<String> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    Some(match inner.rsplit_once(',') {
        Some((selector, label)) => format!("group by ({}) ({})", label.trim(), selector.trim()),
        None => format!("group by ({0}) ({{{0}!=\"\"}})", inner.trim()),
    })
}

/// Every PromQL query of `dashboard` (panel targets, also inside collapsed rows, and query
/// variables), in the order they appear.
#[must_use]
pub fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<DashboardQuery> {
    fn panels<'a>(list: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            panels(&panel["panels"], out);
        }
    }
    let mut all = Vec::new();
    panels(&dashboard["panels"], &mut all);
    let mut queries = Vec::new();
    for panel in all {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                queries.push(DashboardQuery {
                    origin: format!("panel {} target {}", panel["title"], target["refId"]),
                    raw: expr.to_owned(),
                    promql: substitute_grafana_variables(expr),
                });
            }
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        let raw = variable["query"]["query"]
            .as_str()
            .or_else(|| variable["query"].as_str())
            .unwrap_or_default();
        let promql = label_values_to_promql(raw).unwrap_or_else(|| raw.to_owned());
        queries.push(DashboardQuery {
            origin: format!("variable {}", variable["name"]),
            raw: raw.to_owned(),
            promql: substitute_grafana_variables(&promql),
        });
    }
    queries
}
