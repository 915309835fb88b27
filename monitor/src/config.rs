//! The TOML configuration file: daemon settings (the same as the `portmon run` flags,
//! which override them) and per-port overrides of the port knowledge.
//!
//! ```toml
//! [daemon]
//! iface = ["eth0"]
//! interval = "1s"
//!
//! [[ports]]
//! port = 8080
//! protocol = "tcp"
//! service = "intranet-http"
//! security = "plaintext"
//!
//! [alerts]
//! warmup = "10m"
//! webhook_url = "http://127.0.0.1:9093"
//! ```
//!
//! Every struct denies unknown keys, so a typo is an error naming the key and its line.
//! `[alerts]` is the spike detector's section, documented in [`crate::alerts`].

pub mod duration;

use std::{fmt::Write as _, net::SocketAddr, ops::Range, path::Path, time::Duration};

use serde::{Deserialize, Deserializer};

use crate::{
    alerts::AlertsConfig,
    attach::XdpMode,
    dataplane::MAX_SLICES_LIMIT,
    ports::{Policy, PortOverride},
};

/// The shortest `interval` accepted: below it the reads would cost more than they tell.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// The whole configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[daemon]`: settings of `portmon run`.
    pub daemon: DaemonConfig,
    /// `[[ports]]`: overrides and extensions of the port knowledge, in file order.
    pub ports: Vec<toml::Spanned<PortOverride>>,
    /// `[alerts]`: the spike detector, its log lines and webhook.
    pub alerts: AlertsConfig,
}

/// A configuration ready for use: the daemon settings and the port knowledge with the
/// file's overrides applied.
#[derive(Debug)]
pub struct Loaded {
    /// `[daemon]`.
    pub daemon: DaemonConfig,
    /// The built-in port knowledge with `[[ports]]` applied.
    pub policy: Policy,
    /// `[alerts]`, validated.
    pub alerts: AlertsConfig,
}

impl Default for Loaded {
    fn default() -> Self {
        Self {
            daemon: DaemonConfig::default(),
            policy: Policy::builtin(),
            alerts: AlertsConfig::default(),
        }
    }
}

/// `[daemon]`: every `portmon run` flag, under the same name with `_` for `-`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "one field per on/off switch of `portmon run`, as the flags name them"
)]
pub struct DaemonConfig {
    /// Interfaces to attach to, names or globs; empty means every up, non-loopback one.
    pub iface: Vec<String>,
    /// Where ingress is counted: `auto` (XDP where free, else TC ingress), `xdp`, `tc`.
    pub hook: crate::attach::Hook,
    /// Follow link events: re-attach interfaces that come back, attach new glob matches.
    pub reattach: bool,
    /// How the XDP program attaches.
    pub xdp_mode: XdpModeSetting,
    /// Whether the TC egress program is attached.
    pub egress: bool,
    /// Address of the metrics endpoint.
    pub listen: SocketAddr,
    /// How often the counter maps are read.
    #[serde(deserialize_with = "deserialize_interval")]
    pub interval: Duration,
    /// Non-table ports per (interface, direction, protocol) that may earn their own series.
    pub top_k: u32,
    /// Packets a non-table port must have counted before it can be promoted.
    pub promote_min_packets: u64,
    /// Cap on counter-map slices per interface (memory: slices x ~6 MiB).
    #[serde(deserialize_with = "deserialize_max_slices")]
    pub max_slices: u32,
    /// Per-packet debug logging in the kernel programs.
    pub debug_kernel: bool,
    /// Payload classification of the tracked ports (`--no-payload` is `payload = false`).
    pub payload: bool,
    /// Log lines as human-readable text or one JSON object per line.
    pub log_format: LogFormat,
    /// bpffs directory of the pins (`--pin-dir`); unset is `/sys/fs/bpf/portmon`.
    pub pin_dir: Option<std::path::PathBuf>,
    /// Exporter-toolkit web config (TLS, basic auth, headers) for the endpoint.
    pub web_config_file: Option<std::path::PathBuf>,
    /// Requests in flight before the endpoint answers 503; 0 is no cap.
    pub web_max_requests: usize,
}

/// `--log-format` / `log_format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `[timestamp LEVEL target] message key=value...`.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, message and the fields.
    Json,
}

/// Defaults shared by the config file and the flags.
pub mod defaults {
    use std::{
        net::{Ipv4Addr, SocketAddr},
        time::Duration,
    };

    /// `--listen`.
    pub const LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9797);
    /// `--interval`.
    pub const INTERVAL: Duration = Duration::from_secs(1);
    /// `--top-k`.
    pub const TOP_K: u32 = 20;
    /// `--promote-min-packets`.
    pub const PROMOTE_MIN_PACKETS: u64 = 100;
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            iface: Vec::new(),
            hook: crate::attach::Hook::Auto,
            reattach: true,
            xdp_mode: XdpModeSetting::Auto,
            egress: true,
            listen: defaults::LISTEN,
            interval: defaults::INTERVAL,
            top_k: defaults::TOP_K,
            promote_min_packets: defaults::PROMOTE_MIN_PACKETS,
            max_slices: monitor_common::layout::DEFAULT_MAX_SLICES,
            debug_kernel: false,
            payload: true,
            log_format: LogFormat::Text,
            pin_dir: None,
            web_config_file: None,
            web_max_requests: crate::web::DEFAULT_MAX_REQUESTS,
        }
    }
}

/// `--xdp-mode` / `xdp_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeSetting {
    /// Native, falling back to generic with a warning.
    Auto,
    /// Driver mode only.
    Native,
    /// Generic (skb) mode only.
    Generic,
}

impl From<XdpModeSetting> for XdpMode {
    fn from(setting: XdpModeSetting) -> Self {
        match setting {
            XdpModeSetting::Auto => XdpMode::Auto,
            XdpModeSetting::Native => XdpMode::Native,
            XdpModeSetting::Generic => XdpMode::Generic,
        }
    }
}

fn deserialize_interval<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_interval(&text).map_err(serde::de::Error::custom)
}

/// Parses an `--interval`/`interval` value: a duration of at least [`MIN_INTERVAL`].
///
/// # Errors
/// When the text is not a duration or is too short.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = duration::parse(text).map_err(|error| error.to_string())?;
    if interval < MIN_INTERVAL {
        return Err(format!(
            "interval `{text}` is too short: the minimum is {}",
            duration::format(MIN_INTERVAL)
        ));
    }
    Ok(interval)
}

fn deserialize_max_slices<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let slices = u32::deserialize(deserializer)?;
    check_max_slices(slices).map_err(serde::de::Error::custom)
}

/// Checks a `--max-slices` value.
///
/// # Errors
/// When it is outside `1..=MAX_SLICES_LIMIT`.
pub fn check_max_slices(slices: u32) -> Result<u32, String> {
    if (1..=MAX_SLICES_LIMIT).contains(&slices) {
        Ok(slices)
    } else {
        Err(format!(
            "max_slices must be between 1 and {MAX_SLICES_LIMIT}, got {slices}"
        ))
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading the config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A key or value is wrong; the message names the key and its line.
    #[error("{origin}: line {line}, column {column}{}: {message}", key_text(.key.as_deref()))]
    Invalid {
        /// The file.
        origin: String,
        /// 1-based line of the offending key or value.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The dotted key, when it can be told from the text.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
}

fn key_text(key: Option<&str>) -> String {
    key.map(|key| format!(", key `{key}`")).unwrap_or_default()
}

impl Config {
    /// Reads and parses the file at `path`, and applies its port overrides.
    ///
    /// # Errors
    /// See [`ConfigError`].
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        let origin = path.display().to_string();
        let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: origin.clone(),
            source,
        })?;
        Self::parse(&source, &origin)
    }

    /// Parses `source` and applies its port overrides; `origin` names it in errors.
    ///
    /// # Errors
    /// See [`ConfigError`].
    pub fn parse(source: &str, origin: &str) -> Result<Loaded, ConfigError> {
        let config: Self = toml::from_str(source).map_err(|error| {
            invalid(
                source,
                origin,
                error.span().unwrap_or(0..0),
                error.message().trim(),
            )
        })?;
        let policy = config.policy(source, origin)?;
        if let Err(error) = config.alerts.validate() {
            let start = source.find("[alerts]").unwrap_or(0);
            return Err(invalid(source, origin, start..start, &error.to_string()));
        }
        Ok(Loaded {
            daemon: config.daemon,
            policy,
            alerts: config.alerts,
        })
    }

    /// The port knowledge with this file's overrides applied.
    ///
    /// # Errors
    /// When an override is invalid: the error points at the `[[ports]]` entry the policy
    /// names (the later one of a duplicate pair).
    pub fn policy(&self, source: &str, origin: &str) -> Result<Policy, ConfigError> {
        let overrides: Vec<PortOverride> = self
            .ports
            .iter()
            .map(|entry| entry.get_ref().clone())
            .collect();
        Policy::with_overrides(&overrides).map_err(|error| {
            let span = error
                .entry_number()
                .and_then(|number| self.ports.get(number.checked_sub(1)?))
                .map_or(0..0, toml::Spanned::span);
            invalid(source, origin, span, &error.to_string())
        })
    }
}

fn invalid(source: &str, origin: &str, span: Range<usize>, message: &str) -> ConfigError {
    let location = locate(source, span.start);
    ConfigError::Invalid {
        origin: origin.to_owned(),
        line: location.line,
        column: location.column,
        key: location.key,
        message: message.to_owned(),
    }
}

/// Where a byte offset of a TOML text is, in human terms.
#[derive(Debug, PartialEq, Eq)]
struct Location {
    line: usize,
    column: usize,
    key: Option<String>,
}

/// Finds the line, column and dotted key (section plus key) of byte `offset`.
fn locate(source: &str, offset: usize) -> Location {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let line = before.matches('\n').count() + 1;
    let column = before
        .get(line_start..)
        .map_or(0, |text| text.chars().count())
        + 1;
    let lines: Vec<&str> = source.lines().collect();
    let mut key = None;
    let mut section = None;
    // Walk back from the offending line: its own `key =`, or the one of a value that
    // spans several lines, then the enclosing `[section]`.
    for text in lines.iter().take(line).rev() {
        let text = text.trim();
        if let Some(header) = text.strip_prefix('[') {
            section = Some(
                header
                    .trim_matches(|c| c == '[' || c == ']')
                    .trim()
                    .to_owned(),
            );
            break;
        }
        if key.is_none()
            && let Some((name, _)) = text.split_once('=')
            && !text.starts_with('#')
        {
            key = Some(name.trim().to_owned());
        }
    }
    let key = match (section, key) {
        (Some(section), Some(key)) => Some(format!("{section}.{key}")),
        (section, key) => key.or(section),
    };
    Location { line, column, key }
}

/// A sample configuration with every daemon key at its default, for documentation.
#[must_use]
pub fn sample() -> String {
    let defaults = DaemonConfig::default();
    let mut text = String::from("[daemon]\n");
    let _ = writeln!(
        text,
        "iface = []  # every up, non-loopback interface; names or globs (\"veth*\")"
    );
    let _ = writeln!(text, "hook = \"auto\"  # or \"xdp\", \"tc\"");
    let _ = writeln!(text, "reattach = {}", defaults.reattach);
    let _ = writeln!(text, "xdp_mode = \"auto\"");
    let _ = writeln!(text, "egress = {}", defaults.egress);
    let _ = writeln!(text, "listen = \"{}\"", defaults.listen);
    let _ = writeln!(
        text,
        "interval = \"{}\"",
        duration::format(defaults.interval)
    );
    let _ = writeln!(text, "top_k = {}", defaults.top_k);
    let _ = writeln!(
        text,
        "promote_min_packets = {}",
        defaults.promote_min_packets
    );
    let _ = writeln!(text, "max_slices = {}", defaults.max_slices);
    let _ = writeln!(text, "debug_kernel = {}", defaults.debug_kernel);
    let _ = writeln!(text, "payload = {}", defaults.payload);
    let _ = writeln!(text, "log_format = \"text\"  # or \"json\"");
    let _ = writeln!(
        text,
        "# web_config_file = \"/etc/portmon/web.yml\"  # TLS, basic auth (exporter-toolkit format)"
    );
    let _ = writeln!(text, "web_max_requests = {}", defaults.web_max_requests);
    text
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests panic with what they expected")]
mod tests {
    use super::*;

    fn parse(source: &str) -> Result<Loaded, ConfigError> {
        Config::parse(source, "test.toml")
    }

    /// Each case `(name, source, line, words)` must be refused as invalid at `line`, with a
    /// message containing `words`.
    fn assert_invalid(cases: &[(&str, &str, usize, &str)]) {
        for (name, source, line, words) in cases {
            match parse(source) {
                Err(ConfigError::Invalid {
                    line: got_line,
                    message,
                    ..
                }) => {
                    assert_eq!(got_line, *line, "case {name}: line (message {message:?})");
                    assert!(
                        message.contains(words),
                        "case {name}: expected {words:?} in {message:?}"
                    );
                }
                Err(other) => panic!("case {name}: expected an invalid-config error, got {other}"),
                Ok(_) => panic!("case {name}: expected an error, the file was accepted"),
            }
        }
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let config = parse("").expect("an empty file is valid");
        assert_eq!(config.daemon, DaemonConfig::default());
    }

    #[test]
    fn the_sample_parses_to_the_defaults() {
        let config = parse(&sample()).expect("the sample is valid");
        assert_eq!(config.daemon, DaemonConfig::default());
    }

    #[test]
    fn every_daemon_key_is_read() {
        let config = parse(
            "[daemon]\n\
             iface = [\"eth0\", \"eth1\"]\n\
             hook = \"tc\"\n\
             reattach = false\n\
             xdp_mode = \"generic\"\n\
             egress = false\n\
             listen = \"0.0.0.0:9100\"\n\
             interval = \"250ms\"\n\
             top_k = 5\n\
             promote_min_packets = 7\n\
             max_slices = 4\n\
             debug_kernel = true\n\
             payload = false\n\
             log_format = \"json\"\n\
             pin_dir = \"/sys/fs/bpf/elsewhere\"\n\
             web_config_file = \"/etc/portmon/web.yml\"\n\
             web_max_requests = 0\n",
        )
        .expect("a valid file");
        assert_eq!(
            config.daemon,
            DaemonConfig {
                iface: vec!["eth0".into(), "eth1".into()],
                hook: crate::attach::Hook::Tc,
                reattach: false,
                xdp_mode: XdpModeSetting::Generic,
                egress: false,
                listen: "0.0.0.0:9100".parse().expect("an address"),
                interval: Duration::from_millis(250),
                top_k: 5,
                promote_min_packets: 7,
                max_slices: 4,
                debug_kernel: true,
                payload: false,
                log_format: LogFormat::Json,
                pin_dir: Some("/sys/fs/bpf/elsewhere".into()),
                web_config_file: Some("/etc/portmon/web.yml".into()),
                web_max_requests: 0,
            }
        );
    }

    #[test]
    fn errors_name_the_key_and_the_line() {
        // (case, file, line, key, words the message must contain)
        let cases: &[(&str, &str, usize, &str, &str)] = &[
            (
                "unknown key",
                "[daemon]\ninterval = \"1s\"\nintervall = \"2s\"\n",
                3,
                "daemon.intervall",
                "unknown field `intervall`",
            ),
            (
                "bad duration",
                "[daemon]\n\ninterval = \"1x\"\n",
                3,
                "daemon.interval",
                "invalid duration `1x`",
            ),
            (
                "too short interval",
                "[daemon]\ninterval = \"1ms\"\n",
                2,
                "daemon.interval",
                "too short",
            ),
            (
                "bad xdp mode",
                "[daemon]\nxdp_mode = \"fast\"\n",
                2,
                "daemon.xdp_mode",
                "fast",
            ),
            (
                "bad address",
                "[daemon]\nlisten = \"localhost\"\n",
                2,
                "daemon.listen",
                "address",
            ),
            (
                "negative top_k",
                "[daemon]\ntop_k = -1\n",
                2,
                "daemon.top_k",
                "-1",
            ),
            (
                "slices out of range",
                "[daemon]\nmax_slices = 0\n",
                2,
                "daemon.max_slices",
                "between 1 and",
            ),
            (
                "wrong type",
                "[daemon]\negress = \"yes\"\n",
                2,
                "daemon.egress",
                "bool",
            ),
            (
                "unknown section",
                "[daemon]\ntop_k = 1\n[deamon]\ntop_k = 2\n",
                3,
                "deamon",
                "unknown field `deamon`",
            ),
            (
                "value on a continuation line",
                "[daemon]\niface = [\n  \"eth0\",\n  3,\n]\n",
                4,
                "daemon.iface",
                "string",
            ),
        ];
        for (name, source, line, key, words) in cases {
            match parse(source) {
                Err(ConfigError::Invalid {
                    line: got_line,
                    key: got_key,
                    message,
                    ..
                }) => {
                    assert_eq!(got_line, *line, "case {name}: line (message {message:?})");
                    assert_eq!(got_key.as_deref(), Some(*key), "case {name}: key");
                    assert!(
                        message.contains(words),
                        "case {name}: expected {words:?} in {message:?}"
                    );
                }
                Err(other) => panic!("case {name}: expected an invalid-config error, got {other}"),
                Ok(_) => panic!("case {name}: expected an error, the file was accepted"),
            }
        }
    }

    #[test]
    fn port_overrides_apply_and_a_bad_one_is_located() {
        let config = parse(
            "[[ports]]\nport = 8080\nprotocol = \"tcp\"\nservice = \"intranet\"\nsecurity = \"plaintext\"\n",
        )
        .expect("a valid override");
        let info = config
            .policy
            .classify(monitor_common::layout::L4::Tcp, 8080);
        assert_eq!(
            (info.service, info.in_security_table),
            ("intranet", true),
            "the override is applied"
        );
        let cases: &[(&str, &str, usize, &str)] = &[
            (
                "unknown key in an entry",
                "[[ports]]\nport = 23\nsecurty = \"secure\"\n",
                3,
                "unknown field `securty`",
            ),
            (
                "second entry invalid",
                "[[ports]]\nport = 23\nservice = \"t\"\n\n[[ports]]\nport = 40000\nprotocol = \"udp\"\n",
                5,
                "entry #2",
            ),
            (
                "duplicate",
                "[[ports]]\nport = 23\nprotocol = \"tcp\"\nservice = \"a\"\n[[ports]]\nport = 23\nprotocol = \"tcp\"\nservice = \"b\"\n",
                5,
                "both set 23/tcp",
            ),
        ];
        assert_invalid(cases);
    }

    #[test]
    fn the_alerts_section_is_read_and_checked() {
        let config = parse(
            "[daemon]\ninterval = \"1s\"\n\n[alerts]\nwarmup = \"20s\"\nmin_packet_rate = 2.0\n\
             must_be_zero = [\"23/tcp\", \"69/udp\"]\nwebhook_url = \"http://127.0.0.1:9093\"\n",
        )
        .expect("a valid [alerts] section");
        assert_eq!(
            config.alerts,
            AlertsConfig {
                warmup: Duration::from_secs(20),
                min_packet_rate: 2.0,
                must_be_zero: vec![
                    crate::alerts::PortSpec::new(23, monitor_common::layout::L4::Tcp),
                    crate::alerts::PortSpec::new(69, monitor_common::layout::L4::Udp),
                ],
                webhook_url: Some("http://127.0.0.1:9093".to_owned()),
                ..AlertsConfig::default()
            }
        );
        assert_eq!(
            parse("").expect("an empty file").alerts,
            AlertsConfig::default(),
            "no [alerts] section: the defaults"
        );
        // (case, file, line, words the message must contain)
        let cases: &[(&str, &str, usize, &str)] = &[
            (
                "unknown key",
                "[alerts]\nwarmpu = \"1m\"\n",
                2,
                "unknown field `warmpu`",
            ),
            (
                "bad port spec",
                "[alerts]\nmust_be_zero = [\"23\"]\n",
                2,
                "PORT/PROTOCOL",
            ),
            (
                "clear above fire",
                "[daemon]\ntop_k = 1\n[alerts]\nclear_ratio = 9.0\n",
                3,
                "alerts.clear_ratio",
            ),
            (
                "bad duration",
                "[alerts]\nclear_after = \"soon\"\n",
                2,
                "not a duration",
            ),
        ];
        assert_invalid(cases);
    }

    #[test]
    fn the_error_message_reads_as_one_line_with_file_line_and_key() {
        let error = parse("[daemon]\nintervall = \"2s\"\n").expect_err("a typo is an error");
        let text = error.to_string();
        assert!(
            text.starts_with("test.toml: line 2, column 1, key `daemon.intervall`: unknown field"),
            "got {text:?}"
        );
    }

    #[test]
    fn locate_counts_lines_and_columns_from_one() {
        let source = "[a]\nx = 1\n  y = 2\n";
        let offset = source.find('2').expect("the value is in the text");
        assert_eq!(
            locate(source, offset),
            Location {
                line: 3,
                column: 7,
                key: Some("a.y".into())
            }
        );
        assert_eq!(
            locate("", 0),
            Location {
                line: 1,
                column: 1,
                key: None
            }
        );
    }
}
