//! Reading the demo's portmon: scraping `/metrics`, and turning the samples into the
//! periodic summary line and the closing highlights (each under the PromQL that gives it
//! in Prometheus).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use anyhow::{Context as _, bail};

use super::servers::Service;

/// How long one exchange with portmon's endpoint may take.
const HTTP_LIMIT: Duration = Duration::from_secs(5);

/// `GET path` on `addr`; the body when the status is 200.
///
/// # Errors
/// When the exchange fails or the status is not 200.
pub fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_LIMIT)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(HTTP_LIMIT))?;
    stream.set_write_timeout(Some(HTTP_LIMIT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    stream
        .take(64 * 1024 * 1024)
        .read_to_string(&mut raw)
        .with_context(|| format!("reading {path}"))?;
    let Some((head, body)) = raw.split_once("\r\n\r\n") else {
        bail!("{path}: no end of headers");
    };
    if head.split_whitespace().nth(1) != Some("200") {
        bail!("{path}: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_owned())
}

/// One sample of the text exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// The samples of a Prometheus text exposition; comments and lines it cannot read are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        let end = loop {
            let (index, c) = chars.next()?;
            match c {
                '}' => break index,
                ',' | ' ' => {}
                '=' => {
                    chars.next().filter(|(_, quote)| *quote == '"')?;
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => value.push(match chars.next()?.1 {
                                'n' => '\n',
                                other => other,
                            }),
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        };
        rest = &inner[end + 1..];
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The samples of one interface, with the sums the summary and highlights need.
pub struct View<'a> {
    samples: &'a [Sample],
    iface: &'a str,
}

impl<'a> View<'a> {
    /// The view of `iface` in `samples`.
    pub fn new(samples: &'a [Sample], iface: &'a str) -> Self {
        Self { samples, iface }
    }

    fn ingress(&self, name: &'a str) -> impl Iterator<Item = &'a Sample> + use<'a, '_> {
        self.samples.iter().filter(move |sample| {
            sample.name == name
                && sample.label("interface") == self.iface
                && sample.label("direction") == "ingress"
        })
    }

    /// Ingress packets to `service`'s port.
    fn packets(&self, service: Service) -> f64 {
        let port = service.port().to_string();
        self.ingress("portmon_packets_total")
            .filter(|sample| {
                sample.label("protocol") == service.protocol() && sample.label("port") == port
            })
            .fold(0.0, |sum, sample| sum + sample.value)
    }

    /// Alerts firing now, as `23/tcp telnet ingress (must_be_zero)`.
    fn alerts(&self) -> Vec<String> {
        self.samples
            .iter()
            .filter(|sample| {
                sample.name == "portmon_plaintext_alert"
                    && sample.label("interface") == self.iface
                    && sample.value >= 1.0
            })
            .map(|sample| {
                format!(
                    "{}/{} {} {} ({})",
                    sample.label("port"),
                    sample.label("protocol"),
                    sample.label("service"),
                    sample.label("direction"),
                    sample.label("reason")
                )
            })
            .collect()
    }

    fn ingress_syns(&self) -> f64 {
        // A fold, not `sum`: an empty f64 sum is -0, which would print as "-0".
        self.ingress("portmon_tcp_syn_total")
            .fold(0.0, |sum, sample| sum + sample.value)
    }

    /// One line: ingress packets per demo service, SYNs, and alerts firing.
    pub fn summary(&self, elapsed: Duration, services: &[Service]) -> String {
        let mut line = format!("[{:>4}s] ingress packets:", elapsed.as_secs());
        for service in services {
            let _ = write!(
                line,
                " {} {}={}",
                service.name(),
                service.port(),
                self.packets(*service)
            );
        }
        let _ = write!(line, " | SYNs {}", self.ingress_syns());
        let alerts = self.alerts();
        if alerts.is_empty() {
            line.push_str(" | no alert");
        } else {
            let _ = write!(line, " | ALERT {}", alerts.join(", "));
        }
        line
    }

    /// What to look at after the demo: each query with its value from the last scrape.
    pub fn highlights(&self) -> String {
        let iface = self.iface;
        let selector = format!("interface=\"{iface}\",direction=\"ingress\"");
        let mut text = String::new();

        let mut by_security: BTreeMap<&str, f64> = BTreeMap::new();
        for sample in self.ingress("portmon_bytes_total") {
            *by_security.entry(sample.label("security")).or_default() += sample.value;
        }
        let _ = writeln!(
            text,
            "  sum by (security) (portmon_bytes_total{{{selector}}})\n      {}",
            join(
                by_security
                    .iter()
                    .map(|(security, bytes)| format!("{security} {:.1} KiB", bytes / 1024.0))
            )
        );

        let mut by_port: BTreeMap<(&str, &str, &str), f64> = BTreeMap::new();
        for sample in self.ingress("portmon_packets_total") {
            let key = (
                sample.label("port"),
                sample.label("service"),
                sample.label("security"),
            );
            *by_port.entry(key).or_default() += sample.value;
        }
        let mut busiest: Vec<_> = by_port.into_iter().collect();
        busiest.sort_by(|a, b| b.1.total_cmp(&a.1));
        let _ = writeln!(
            text,
            "  topk(6, sum by (port, service, security) (portmon_packets_total{{{selector}}}))\n      {}",
            join(
                busiest
                    .iter()
                    .take(6)
                    .map(|((port, service, security), packets)| {
                        format!("{port} {service} ({security}) {packets}")
                    })
            )
        );

        let _ = writeln!(
            text,
            "  sum(portmon_tcp_syn_total{{{selector}}})   # connection attempts, the scan's included\n      {}",
            self.ingress_syns()
        );
        let _ = writeln!(
            text,
            "  portmon_plaintext_alert{{interface=\"{iface}\"}} == 1\n      {}",
            join(self.alerts().into_iter())
        );
        let fired = self
            .samples
            .iter()
            .filter(|sample| sample.name == "portmon_plaintext_alerts_total")
            .fold(0.0, |sum, sample| sum + sample.value);
        let _ = write!(text, "  portmon_plaintext_alerts_total\n      {fired}");
        text
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(" · ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = "\
# TYPE portmon_packets_total counter
portmon_packets_total{interface=\"pmdh1\",direction=\"ingress\",protocol=\"tcp\",port=\"23\",service=\"telnet\",range=\"well_known\",security=\"plaintext\"} 50
portmon_packets_total{interface=\"pmdh1\",direction=\"egress\",protocol=\"tcp\",port=\"23\",service=\"telnet\",range=\"well_known\",security=\"plaintext\"} 7
portmon_packets_total{interface=\"other0\",direction=\"ingress\",protocol=\"tcp\",port=\"23\",service=\"telnet\",range=\"well_known\",security=\"plaintext\"} 900
portmon_packets_total{interface=\"pmdh1\",direction=\"ingress\",protocol=\"udp\",port=\"53\",service=\"domain\",range=\"well_known\",security=\"plaintext\"} 12
portmon_tcp_syn_total{interface=\"pmdh1\",direction=\"ingress\",port=\"23\",service=\"telnet\",range=\"well_known\",security=\"plaintext\"} 10
portmon_plaintext_alert{interface=\"pmdh1\",direction=\"ingress\",protocol=\"tcp\",port=\"23\",service=\"telnet\",reason=\"must_be_zero\"} 1
portmon_plaintext_alerts_total 1
";

    #[test]
    fn summary_counts_only_the_sandbox_ingress() {
        let samples = parse(EXPOSITION);
        let view = View::new(&samples, "pmdh1");
        let cases = [
            ("telnet, ingress of pmdh1 only", Service::Telnet, 50.0),
            ("dns over udp", Service::Dns, 12.0),
            ("https, absent", Service::Https, 0.0),
        ];
        assert!(
            view.packets(Service::Https).is_sign_positive(),
            "an absent port counts +0, which prints as 0, not -0"
        );
        for (name, service, expected) in cases {
            let got = view.packets(service);
            assert!(
                (got - expected).abs() < f64::EPSILON,
                "{name}: expected {expected} packets, got {got}"
            );
        }
        let line = view.summary(Duration::from_secs(3), &[Service::Telnet]);
        assert_eq!(
            line,
            "[   3s] ingress packets: telnet 23=50 | SYNs 10 | ALERT 23/tcp telnet ingress (must_be_zero)"
        );
    }

    #[test]
    fn highlights_give_each_query_its_value() {
        let samples = parse(EXPOSITION);
        let text = View::new(&samples, "pmdh1").highlights();
        let cases = [
            ("no bytes series: every class is absent", "(none)"),
            (
                "busiest port first",
                "23 telnet (plaintext) 50 · 53 domain (plaintext) 12",
            ),
            ("SYN total of the interface", "      10\n"),
            ("the alert firing", "23/tcp telnet ingress (must_be_zero)"),
            ("alerts fired", "portmon_plaintext_alerts_total\n      1"),
        ];
        for (name, expected) in cases {
            assert!(
                text.contains(expected),
                "{name}: expected {expected:?} in:\n{text}"
            );
        }
    }

    #[test]
    fn parses_labels_with_escapes_and_skips_garbage() {
        let samples = parse("a{x=\"q\\\"\\\\\"} 2\nnot a sample\nb 3\n");
        assert_eq!(samples.len(), 2, "expected two samples, got {samples:?}");
        assert_eq!(samples[0].label("x"), "q\"\\");
        assert!((samples[1].value - 3.0).abs() < f64::EPSILON, "b is 3");
    }
}
