//! The process log: env_logger with `RUST_LOG` filtering (default `info`), as human text
//! or as one JSON object per line (`--log-format json`).
//!
//! Structured fields travel as `log` key-values (`log::warn!(port = 23; "...")`): text
//! lines show them as `key=value` after the message, JSON lines as top-level members, so a
//! log shipper can filter alerts on `event`, `port` or `reason` without parsing prose.

use std::io::Write as _;

use log::kv::{Key, Value, VisitSource};

use crate::config::LogFormat;

/// Installs the global logger. Call once, before anything logs.
pub fn init(format: LogFormat) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            let timestamp = buf.timestamp_micros().to_string();
            writeln!(buf, "{}", json_line(&timestamp, record))
        });
    }
    // A second logger (in tests) is refused; the first one stays.
    let _ = builder.try_init();
}

/// One record as a JSON object: `timestamp`, `level`, `target`, `message`, then every
/// key-value of the record (numbers and booleans as JSON numbers and booleans, the rest as
/// strings). A field named like one of the four fixed members does not replace it.
#[must_use]
pub fn json_line(timestamp: &str, record: &log::Record<'_>) -> String {
    let mut object = serde_json::Map::new();
    object.insert("timestamp".into(), timestamp.into());
    object.insert("level".into(), record.level().as_str().into());
    object.insert("target".into(), record.target().into());
    object.insert("message".into(), record.args().to_string().into());
    let mut fields = Fields(&mut object);
    // Visiting a slice or a macro's key-values cannot fail.
    let _ = record.key_values().visit(&mut fields);
    serde_json::Value::Object(object).to_string()
}

struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let json = if let Some(number) = value.to_u64() {
            number.into()
        } else if let Some(number) = value.to_i64() {
            number.into()
        } else if let Some(number) = value.to_f64() {
            serde_json::Number::from_f64(number).map_or(serde_json::Value::Null, Into::into)
        } else if let Some(flag) = value.to_bool() {
            flag.into()
        } else {
            value.to_string().into()
        };
        self.0.entry(key.as_str().to_owned()).or_insert(json);
        Ok(())
    }
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests panic with what they expected")]
mod tests {
    use super::*;

    #[test]
    fn a_json_line_has_the_fixed_members_and_every_field_typed() {
        let fields: &[(&str, Value<'_>)] = &[
            ("event", Value::from("started")),
            ("port", Value::from(23u16)),
            ("rate", Value::from(12.5f64)),
            ("level", Value::from("spoofed")),
        ];
        let line = json_line(
            "2025-01-01T00:00:00.000000Z",
            &log::Record::builder()
                .level(log::Level::Warn)
                .target("portmon::alert")
                .args(format_args!("plaintext alert started: \"telnet\"\n"))
                .key_values(&fields)
                .build(),
        );
        assert!(!line.contains('\n'), "one line: {line:?}");
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("the line is JSON");
        let expected = serde_json::json!({
            "timestamp": "2025-01-01T00:00:00.000000Z",
            "level": "WARN",
            "target": "portmon::alert",
            "message": "plaintext alert started: \"telnet\"\n",
            "event": "started",
            "port": 23,
            "rate": 12.5,
        });
        assert_eq!(parsed, expected, "got the line {line}");
    }
}
