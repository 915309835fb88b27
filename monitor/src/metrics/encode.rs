//! Writing metric families in the Prometheus text format 0.0.4 or in OpenMetrics 1.0.
//!
//! The two differ only in a few places, all handled here:
//! * a counter family is named without `_total` in OpenMetrics (`# TYPE portmon_packets
//!   counter`, samples `portmon_packets_total`), with it in 0.0.4;
//! * OpenMetrics escapes `"` in HELP text and ends with `# EOF`.

use std::fmt::{Display, Write as _};

/// The exposition format asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    #[must_use]
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// Picks the format for an HTTP `Accept` header: OpenMetrics when the client lists
    /// `application/openmetrics-text` (version 1.0.0, 0.0.1 or unspecified) with a
    /// quality at least that of any text/plain it lists; 0.0.4 otherwise.
    #[must_use]
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Prometheus;
        };
        let mut openmetrics: f32 = 0.0;
        let mut text: f32 = 0.0;
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let mut quality = 1.0;
            let mut version_ok = true;
            for parameter in parts {
                let Some((name, value)) = parameter.split_once('=') else {
                    continue;
                };
                match name.trim().to_ascii_lowercase().as_str() {
                    "q" => quality = value.trim().parse().unwrap_or(0.0),
                    "version" => {
                        version_ok = matches!(value.trim(), "1.0.0" | "0.0.1" | "0.0.4");
                    }
                    _ => {}
                }
            }
            if !version_ok {
                continue;
            }
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(quality),
                "text/plain" | "text/*" | "*/*" => text = text.max(quality),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }
}

/// The type of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic; samples are named `<family>_total`.
    Counter,
    /// Any value.
    Gauge,
    /// Buckets, sum and count.
    Histogram,
}

/// Writes families and samples into a string.
pub struct Encoder<'a> {
    out: &'a mut String,
    format: Format,
    family: String,
    kind: Kind,
}

impl<'a> Encoder<'a> {
    /// Starts writing into `out`.
    pub fn new(out: &'a mut String, format: Format) -> Self {
        Self {
            out,
            format,
            family: String::new(),
            kind: Kind::Gauge,
        }
    }

    /// Starts a family. `name` is the family name; for a counter, without `_total`.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        self.family.clear();
        self.family.push_str(name);
        self.kind = kind;
        let (type_name, header_name) = match (kind, self.format) {
            (Kind::Counter, Format::Prometheus) => ("counter", format!("{name}_total")),
            (Kind::Counter, Format::OpenMetrics) => ("counter", name.to_owned()),
            (Kind::Gauge, _) => ("gauge", name.to_owned()),
            (Kind::Histogram, _) => ("histogram", name.to_owned()),
        };
        let _ = write!(self.out, "# HELP {header_name} ");
        escape_help(self.out, help, self.format);
        let _ = writeln!(self.out, "\n# TYPE {header_name} {type_name}");
    }

    /// Writes a sample of the current counter or gauge family.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Display) {
        let suffix = if self.kind == Kind::Counter {
            "_total"
        } else {
            ""
        };
        self.line(suffix, labels, None, value);
    }

    /// Writes one histogram: cumulative `buckets` as (upper bound, count), then sum and
    /// count; the `+Inf` bucket is added from `count`.
    pub fn histogram(
        &mut self,
        labels: &[(&str, &str)],
        buckets: &[(f64, u64)],
        sum: f64,
        count: u64,
    ) {
        for &(bound, cumulative) in buckets {
            self.line("_bucket", labels, Some(&float(bound)), cumulative);
        }
        self.line("_bucket", labels, Some("+Inf"), count);
        self.line("_sum", labels, None, float(sum));
        self.line("_count", labels, None, count);
    }

    fn line(
        &mut self,
        suffix: &str,
        labels: &[(&str, &str)],
        le: Option<&str>,
        value: impl Display,
    ) {
        self.out.push_str(&self.family);
        self.out.push_str(suffix);
        if !labels.is_empty() || le.is_some() {
            self.out.push('{');
            let mut first = true;
            for (name, value) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
                if !first {
                    self.out.push(',');
                }
                first = false;
                self.out.push_str(name);
                self.out.push_str("=\"");
                escape_label(self.out, value);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// Ends the exposition (`# EOF` in OpenMetrics).
    pub fn finish(self) {
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
    }
}

/// A float as both formats accept it (`0.001`, `1`, `+Inf`).
#[must_use]
pub fn float(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if value.is_nan() {
        "NaN".to_owned()
    } else {
        // `Display` for f64 never uses exponents and prints integers without a dot.
        format!("{value}")
    }
}

fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(out: &mut String, help: &str, format: Format) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if format == Format::OpenMetrics => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(format: Format) -> String {
        let mut out = String::new();
        let mut encoder = Encoder::new(&mut out, format);
        encoder.family("demo_packets", Kind::Counter, "Packets \"seen\"\\here.");
        encoder.sample(&[("port", "23"), ("service", "a\"b\\c\nd")], 5);
        encoder.family("demo_up", Kind::Gauge, "Up.");
        encoder.sample(&[], 1);
        encoder.family("demo_seconds", Kind::Histogram, "Durations.");
        encoder.histogram(
            &[("interface", "eth0")],
            &[(0.001, 1), (0.01, 3)],
            0.0125,
            4,
        );
        encoder.finish();
        out
    }

    #[test]
    fn prometheus_text_0_0_4() {
        assert_eq!(
            render(Format::Prometheus),
            "# HELP demo_packets_total Packets \"seen\"\\\\here.\n\
             # TYPE demo_packets_total counter\n\
             demo_packets_total{port=\"23\",service=\"a\\\"b\\\\c\\nd\"} 5\n\
             # HELP demo_up Up.\n\
             # TYPE demo_up gauge\n\
             demo_up 1\n\
             # HELP demo_seconds Durations.\n\
             # TYPE demo_seconds histogram\n\
             demo_seconds_bucket{interface=\"eth0\",le=\"0.001\"} 1\n\
             demo_seconds_bucket{interface=\"eth0\",le=\"0.01\"} 3\n\
             demo_seconds_bucket{interface=\"eth0\",le=\"+Inf\"} 4\n\
             demo_seconds_sum{interface=\"eth0\"} 0.0125\n\
             demo_seconds_count{interface=\"eth0\"} 4\n"
        );
    }

    #[test]
    fn openmetrics_1_0() {
        assert_eq!(
            render(Format::OpenMetrics),
            "# HELP demo_packets Packets \\\"seen\\\"\\\\here.\n\
             # TYPE demo_packets counter\n\
             demo_packets_total{port=\"23\",service=\"a\\\"b\\\\c\\nd\"} 5\n\
             # HELP demo_up Up.\n\
             # TYPE demo_up gauge\n\
             demo_up 1\n\
             # HELP demo_seconds Durations.\n\
             # TYPE demo_seconds histogram\n\
             demo_seconds_bucket{interface=\"eth0\",le=\"0.001\"} 1\n\
             demo_seconds_bucket{interface=\"eth0\",le=\"0.01\"} 3\n\
             demo_seconds_bucket{interface=\"eth0\",le=\"+Inf\"} 4\n\
             demo_seconds_sum{interface=\"eth0\"} 0.0125\n\
             demo_seconds_count{interface=\"eth0\"} 4\n\
             # EOF\n"
        );
    }

    #[test]
    fn negotiation() {
        let prometheus_default = "application/openmetrics-text;version=1.0.0,\
            application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let cases: &[(&str, Option<&str>, Format)] = &[
            ("no header", None, Format::Prometheus),
            ("curl", Some("*/*"), Format::Prometheus),
            ("plain text", Some("text/plain"), Format::Prometheus),
            (
                "prometheus scraper",
                Some(prometheus_default),
                Format::OpenMetrics,
            ),
            (
                "openmetrics alone",
                Some("application/openmetrics-text"),
                Format::OpenMetrics,
            ),
            (
                "openmetrics 0.0.1",
                Some("application/openmetrics-text; version=0.0.1"),
                Format::OpenMetrics,
            ),
            (
                "text preferred",
                Some("application/openmetrics-text;q=0.3,text/plain;q=0.9"),
                Format::Prometheus,
            ),
            (
                "refused openmetrics",
                Some("application/openmetrics-text;q=0"),
                Format::Prometheus,
            ),
            (
                "unknown version",
                Some("application/openmetrics-text;version=2.0.0"),
                Format::Prometheus,
            ),
            (
                "case and spaces",
                Some(" Application/OpenMetrics-Text ; Version=1.0.0 "),
                Format::OpenMetrics,
            ),
        ];
        for (name, accept, expected) in cases {
            assert_eq!(Format::negotiate(*accept), *expected, "case {name}");
        }
    }

    #[test]
    fn floats_are_written_plainly() {
        assert_eq!(float(0.001), "0.001");
        assert_eq!(float(1.0), "1");
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(2.5e-7), "0.00000025");
    }
}
