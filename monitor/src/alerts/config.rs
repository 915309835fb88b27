//! The `[alerts]` section of the configuration file.
//!
//! ```toml
//! [alerts]
//! warmup = "10m"
//! half_life = "1h"
//! min_packet_rate = 20.0
//! must_be_zero = ["23/tcp", "2375/tcp", "514/tcp"]
//! ```
//!
//! Every field has a default (see [`AlertsConfig::default`]); an unknown key is an error that
//! names it. Values that deserialize but make no sense together (a clear threshold above the
//! fire threshold, a zero half-life) are caught by [`AlertsConfig::validate`], which
//! [`crate::alerts::Detector::new`] calls.

use std::{fmt, str::FromStr, time::Duration};

use monitor_common::layout::L4;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Tuning of the spike detector. The module docs of [`crate::alerts`] explain each knob's role.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Turns the in-daemon detector on or off (the Prometheus rules work either way).
    pub enabled: bool,
    /// Time after the first observation during which spikes are learned but never fired.
    /// Must-be-zero ports fire during warm-up too.
    #[serde(with = "human_duration")]
    pub warmup: Duration,
    /// Half-life of the baseline's exponentially weighted mean and variance: how fast it
    /// forgets. Long enough to ignore a burst, short enough to follow a daily cycle.
    #[serde(with = "human_duration")]
    pub half_life: Duration,
    /// A rate must be at least this many times the baseline mean to start an alert.
    pub fire_ratio: f64,
    /// ... and at least this many standard deviations above it.
    pub fire_z: f64,
    /// A firing alert stays while the rate is at least this many times the baseline mean ...
    pub clear_ratio: f64,
    /// ... and at least this many standard deviations above it.
    pub clear_z: f64,
    /// Packets per second below which a packet rate is never a spike.
    pub min_packet_rate: f64,
    /// SYNs (connection attempts) per second below which a SYN rate is never a spike.
    pub min_syn_rate: f64,
    /// How long the fire condition must hold before an alert starts.
    #[serde(with = "human_duration")]
    pub fire_after: Duration,
    /// How long the stay condition must be false (for a must-be-zero port: how long the port
    /// must be silent) before an alert ends.
    #[serde(with = "human_duration")]
    pub clear_after: Duration,
    /// The baseline learns a sample no larger than `mean + clip_z * sigma` (at least the
    /// minimum rate), so a burst does not inflate the baseline that should catch the next one.
    pub clip_z: f64,
    /// Ports that must carry no traffic at all: the first packet fires.
    pub must_be_zero: Vec<PortSpec>,
    /// Where to POST alerts in the Alertmanager v2 format (`http://host:port`; the path
    /// `/api/v2/alerts` is added when the URL has none). No webhook when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// How long one webhook request may take before it is abandoned (and retried).
    #[serde(with = "human_duration")]
    pub webhook_timeout: Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            warmup: Duration::from_mins(10),
            half_life: Duration::from_hours(1),
            fire_ratio: 3.0,
            fire_z: 6.0,
            clear_ratio: 1.5,
            clear_z: 3.0,
            min_packet_rate: 20.0,
            min_syn_rate: 5.0,
            fire_after: Duration::from_secs(3),
            clear_after: Duration::from_mins(1),
            clip_z: 4.0,
            must_be_zero: vec![
                PortSpec::new(23, L4::Tcp),
                PortSpec::new(2375, L4::Tcp),
                PortSpec::new(514, L4::Tcp),
            ],
            webhook_url: None,
            webhook_timeout: Duration::from_secs(5),
        }
    }
}

/// A configuration value that is well-formed but unusable; names the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AlertsConfigError {
    /// A number that must be finite and at least some bound is not.
    #[error("alerts.{key} = {value} is invalid: it must be a finite number >= {min}")]
    TooSmall {
        /// The key under `[alerts]`.
        key: &'static str,
        /// The value given.
        value: f64,
        /// The smallest value accepted.
        min: f64,
    },
    /// A clear threshold is above its fire threshold: alerts would flap.
    #[error(
        "alerts.{clear_key} = {clear} is above alerts.{fire_key} = {fire}: an alert must clear \
         below the level that fired it, or it flaps; lower {clear_key} or raise {fire_key}"
    )]
    ClearAboveFire {
        /// The clear key.
        clear_key: &'static str,
        /// Its value.
        clear: f64,
        /// The fire key.
        fire_key: &'static str,
        /// Its value.
        fire: f64,
    },
    /// A duration that must be positive is zero.
    #[error("alerts.{key} must be longer than zero")]
    ZeroDuration {
        /// The key under `[alerts]`.
        key: &'static str,
    },
}

impl AlertsConfig {
    /// Checks the values against each other.
    ///
    /// # Errors
    /// The first unusable value, naming its key.
    pub fn validate(&self) -> Result<(), AlertsConfigError> {
        let at_least = |key, value: f64, min| {
            if value.is_finite() && value >= min {
                Ok(())
            } else {
                Err(AlertsConfigError::TooSmall { key, value, min })
            }
        };
        at_least("fire_ratio", self.fire_ratio, 1.0)?;
        at_least("clear_ratio", self.clear_ratio, 1.0)?;
        at_least("fire_z", self.fire_z, 0.0)?;
        at_least("clear_z", self.clear_z, 0.0)?;
        at_least("min_packet_rate", self.min_packet_rate, 0.0)?;
        at_least("min_syn_rate", self.min_syn_rate, 0.0)?;
        at_least("clip_z", self.clip_z, 0.0)?;
        if self.clear_ratio > self.fire_ratio {
            return Err(AlertsConfigError::ClearAboveFire {
                clear_key: "clear_ratio",
                clear: self.clear_ratio,
                fire_key: "fire_ratio",
                fire: self.fire_ratio,
            });
        }
        if self.clear_z > self.fire_z {
            return Err(AlertsConfigError::ClearAboveFire {
                clear_key: "clear_z",
                clear: self.clear_z,
                fire_key: "fire_z",
                fire: self.fire_z,
            });
        }
        if self.half_life.is_zero() {
            return Err(AlertsConfigError::ZeroDuration { key: "half_life" });
        }
        if self.webhook_timeout.is_zero() {
            return Err(AlertsConfigError::ZeroDuration {
                key: "webhook_timeout",
            });
        }
        Ok(())
    }

    /// Whether `port` of `protocol` must carry no traffic.
    #[must_use]
    pub fn is_must_be_zero(&self, port: u16, protocol: L4) -> bool {
        self.must_be_zero.contains(&PortSpec::new(port, protocol))
    }
}

/// A port and its protocol, written `"23/tcp"` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortSpec {
    /// Destination port.
    pub port: u16,
    /// L4 protocol.
    pub protocol: L4,
}

impl PortSpec {
    /// A port of a protocol.
    #[must_use]
    pub const fn new(port: u16, protocol: L4) -> Self {
        Self { port, protocol }
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol.as_str())
    }
}

/// Why a `PORT/PROTOCOL` string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{given:?} is not a port spec: write PORT/PROTOCOL with PORT in 0-65535 and PROTOCOL tcp or udp, e.g. \"23/tcp\""
)]
pub struct PortSpecError {
    given: String,
}

impl FromStr for PortSpec {
    type Err = PortSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = || PortSpecError {
            given: s.to_owned(),
        };
        let (port, protocol) = s.split_once('/').ok_or_else(error)?;
        let port = port.parse().map_err(|_| error())?;
        let protocol = match protocol {
            "tcp" => L4::Tcp,
            "udp" => L4::Udp,
            _ => return Err(error()),
        };
        Ok(Self::new(port, protocol))
    }
}

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for PortSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Durations written as humans do: `"500ms"`, `"10s"`, `"5m"`, `"1h 30m"`.
mod human_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration ({e}): write e.g. \"500ms\", \"10s\", \"5m\" or \"1h\""
            ))
        })
    }

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(*value))
    }
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests panic with what they expected")]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<AlertsConfig, String> {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            alerts: AlertsConfig,
        }
        toml::from_str::<File>(toml_text)
            .map(|f| f.alerts)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn empty_section_is_the_default() {
        let got = parse("[alerts]\n").expect("an empty [alerts] section parses");
        assert_eq!(got, AlertsConfig::default(), "expected the defaults");
        got.validate().expect("the defaults are valid");
    }

    #[test]
    fn every_key_parses() {
        let got = parse(
            r#"
[alerts]
enabled = false
warmup = "30s"
half_life = "2h"
fire_ratio = 4.0
fire_z = 8.0
clear_ratio = 2.0
clear_z = 2.0
min_packet_rate = 5.0
min_syn_rate = 1.0
fire_after = "500ms"
clear_after = "10s"
clip_z = 3.0
must_be_zero = ["21/tcp", "69/udp"]
webhook_url = "http://127.0.0.1:9093"
webhook_timeout = "2s"
"#,
        )
        .expect("a complete [alerts] section parses");
        let want = AlertsConfig {
            enabled: false,
            warmup: Duration::from_secs(30),
            half_life: Duration::from_hours(2),
            fire_ratio: 4.0,
            fire_z: 8.0,
            clear_ratio: 2.0,
            clear_z: 2.0,
            min_packet_rate: 5.0,
            min_syn_rate: 1.0,
            fire_after: Duration::from_millis(500),
            clear_after: Duration::from_secs(10),
            clip_z: 3.0,
            must_be_zero: vec![PortSpec::new(21, L4::Tcp), PortSpec::new(69, L4::Udp)],
            webhook_url: Some("http://127.0.0.1:9093".to_owned()),
            webhook_timeout: Duration::from_secs(2),
        };
        assert_eq!(got, want);
        got.validate().expect("these values are valid");
    }

    #[test]
    fn default_round_trips_through_toml() {
        let text = toml::to_string(&AlertsConfig::default()).expect("the defaults serialize");
        let back: AlertsConfig = toml::from_str(&text).expect("serialized defaults parse back");
        assert_eq!(back, AlertsConfig::default(), "round trip of:\n{text}");
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "typo in a key",
                "[alerts]\nfire_ration = 3.0\n",
                "fire_ration",
            ),
            (
                "duration without unit",
                "[alerts]\nwarmup = \"10\"\n",
                "warmup",
            ),
            ("duration as a number", "[alerts]\nwarmup = 10\n", "warmup"),
            (
                "port out of range",
                "[alerts]\nmust_be_zero = [\"70000/tcp\"]\n",
                "70000/tcp",
            ),
            (
                "unknown protocol",
                "[alerts]\nmust_be_zero = [\"23/sctp\"]\n",
                "23/sctp",
            ),
            (
                "bare port",
                "[alerts]\nmust_be_zero = [\"23\"]\n",
                "PORT/PROTOCOL",
            ),
        ];
        for (name, text, needle) in cases {
            let error = parse(text).expect_err(name);
            assert!(
                error.contains(needle),
                "{name}: expected an error naming {needle:?}, got: {error}"
            );
        }
    }

    #[test]
    fn inconsistent_values_are_refused_naming_the_key() {
        let base = AlertsConfig::default();
        let cases: Vec<(&str, AlertsConfig, &str)> = vec![
            (
                "ratio below one",
                AlertsConfig {
                    fire_ratio: 0.5,
                    ..base.clone()
                },
                "alerts.fire_ratio",
            ),
            (
                "negative z",
                AlertsConfig {
                    clear_z: -1.0,
                    ..base.clone()
                },
                "alerts.clear_z",
            ),
            (
                "NaN rate",
                AlertsConfig {
                    min_packet_rate: f64::NAN,
                    ..base.clone()
                },
                "alerts.min_packet_rate",
            ),
            (
                "clear ratio above fire",
                AlertsConfig {
                    clear_ratio: 4.0,
                    ..base.clone()
                },
                "alerts.clear_ratio = 4",
            ),
            (
                "clear z above fire",
                AlertsConfig {
                    clear_z: 7.0,
                    ..base.clone()
                },
                "alerts.clear_z = 7",
            ),
            (
                "zero half-life",
                AlertsConfig {
                    half_life: Duration::ZERO,
                    ..base.clone()
                },
                "alerts.half_life",
            ),
        ];
        for (name, config, needle) in cases {
            let error = config.validate().expect_err(name).to_string();
            assert!(
                error.contains(needle),
                "{name}: expected an error naming {needle:?}, got: {error}"
            );
        }
    }

    #[test]
    fn must_be_zero_matches_port_and_protocol() {
        let config = AlertsConfig::default();
        let cases = [
            ("telnet", 23, L4::Tcp, true),
            ("docker", 2375, L4::Tcp, true),
            ("rsh", 514, L4::Tcp, true),
            ("syslog is udp 514, not rsh", 514, L4::Udp, false),
            ("http", 80, L4::Tcp, false),
        ];
        for (name, port, protocol, want) in cases {
            assert_eq!(config.is_must_be_zero(port, protocol), want, "{name}");
        }
    }
}
