//! The shipped Grafana dashboard (deploy/grafana/portmon.json): its structure, and every PromQL
//! query in it run against a real Prometheus that scrapes a stand-in portmon (generated metrics
//! text with portmon's families and labels) and evaluates the shipped rules.
//!
//! Needs `prometheus` (Debian's prometheus package, `cargo xtask setup`); fails without it.
#![expect(clippy::expect_used, reason = "tests panic with what they expected")]

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    fs,
    time::{Duration, Instant},
};

use portmon_tests::prometheus::{
    DashboardQuery, Prometheus, ScrapeTarget, ServerConfig, dashboard_queries, shipped_dashboard,
    shipped_rules,
};
use serde_json::Value;

fn dashboard() -> Value {
    let text =
        fs::read_to_string(shipped_dashboard()).expect("deploy/grafana/portmon.json is readable");
    serde_json::from_str(&text).expect("deploy/grafana/portmon.json is valid JSON")
}

/// Panels, rows included, with the panels nested in collapsed rows.
fn all_panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().expect("panels is an array") {
            out.push(panel);
            if let Some(nested) = panel.get("panels") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn grid(panel: &Value) -> (u64, u64, u64, u64) {
    let field = |name| {
        panel["gridPos"][name].as_u64().unwrap_or_else(|| {
            panic!(
                "panel {}: expected an integer gridPos.{name}",
                panel["title"]
            )
        })
    };
    (field("x"), field("y"), field("w"), field("h"))
}

#[test]
fn dashboard_has_the_variables_it_uses() {
    let dashboard = dashboard();
    assert!(
        dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()),
        "expected a uid"
    );
    assert!(
        dashboard["title"].as_str().is_some_and(|t| !t.is_empty()),
        "expected a title"
    );
    assert!(
        dashboard["schemaVersion"].as_u64().is_some(),
        "expected a schemaVersion"
    );
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let by_name = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("expected a variable named {name}"))
    };
    let datasource = by_name("datasource");
    assert_eq!(
        (datasource["type"].as_str(), datasource["query"].as_str()),
        (Some("datasource"), Some("prometheus")),
        "the datasource variable must pick among Prometheus data sources"
    );
    let interface = by_name("interface");
    assert_eq!(interface["type"], "query", "interface is a query variable");
    let query = interface["query"]["query"]
        .as_str()
        .expect("interface has a query");
    assert!(
        query.starts_with("label_values(portmon_attached") && query.ends_with(", interface)"),
        "expected the interfaces portmon is attached to, got {query}"
    );
    // Every variable a query uses is defined (or is one of Grafana's built-ins).
    let defined: BTreeSet<&str> = variables
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for query in dashboard_queries(&dashboard) {
        for (i, _) in query.raw.match_indices('$') {
            let name: String = query.raw[i + 1..]
                .trim_start_matches('{')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                name.starts_with("__") || defined.contains(name.as_str()),
                "{}: uses ${name}, which the dashboard does not define",
                query.origin
            );
        }
        assert!(
            !query.promql.contains('$'),
            "{}: a variable was left in {:?}",
            query.origin,
            query.promql
        );
    }
    for variable in variables.iter().filter(|v| v["type"] == "query") {
        assert_eq!(
            variable["datasource"]["uid"], "${datasource}",
            "variable {} must query the data source the user picked",
            variable["name"]
        );
    }
}

#[test]
fn every_panel_is_well_formed() {
    let dashboard = dashboard();
    let panels = all_panels(&dashboard);
    let mut ids = BTreeSet::new();
    let mut cells: BTreeSet<(u64, u64)> = BTreeSet::new();
    for panel in &panels {
        let title = panel["title"]
            .as_str()
            .filter(|t| !t.is_empty())
            .expect("every panel has a title");
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {title}: expected an integer id"));
        assert!(ids.insert(id), "panel {title}: id {id} is used twice");
        let (x, y, w, h) = grid(panel);
        assert!(
            w > 0 && h > 0 && x + w <= 24,
            "panel {title}: gridPos {x},{y} {w}x{h} must fit 24 columns"
        );
        // No two panels cover the same grid cell.
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(
                    cells.insert((cx, cy)),
                    "panel {title} overlaps another panel at ({cx}, {cy})"
                );
            }
        }
        if panel["type"] == "row" {
            assert!(panel.get("targets").is_none(), "row {title} must not query");
            continue;
        }
        assert!(
            panel["type"].as_str().is_some_and(|t| !t.is_empty()),
            "panel {title}: expected a type"
        );
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panel {title} must use the datasource variable"
        );
        assert_eq!(
            panel["datasource"]["type"], "prometheus",
            "panel {title}: datasource type"
        );
        let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
        let targets = targets.unwrap_or_else(|| panic!("panel {title}: expected targets"));
        let mut refs = BTreeSet::new();
        for target in targets {
            let ref_id = target["refId"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title}: a target without refId"));
            assert!(
                refs.insert(ref_id),
                "panel {title}: refId {ref_id} is used twice"
            );
            assert!(
                target["expr"]
                    .as_str()
                    .is_some_and(|e| !e.trim().is_empty()),
                "panel {title} target {ref_id}: expected an expr"
            );
            assert_eq!(
                target["datasource"]["uid"], "${datasource}",
                "panel {title} target {ref_id} must use the datasource variable"
            );
        }
    }
    assert!(
        panels.len() >= 10,
        "expected the dashboard's panels, found {}",
        panels.len()
    );
}

#[test]
fn dashboard_has_the_panels_users_need() {
    let dashboard = dashboard();
    let titles: Vec<String> = all_panels(&dashboard)
        .iter()
        .filter_map(|p| p["title"].as_str())
        .map(str::to_lowercase)
        .collect();
    // (what the issue asks for, a phrase its panel title contains)
    let wanted = [
        (
            "the plaintext vs secure share of traffic",
            "plaintext vs secure share",
        ),
        ("the top plaintext ports", "top plaintext ports"),
        ("traffic by port range", "traffic by port range"),
        ("alerts firing", "alerts firing"),
        ("the secure-adoption ratios", "secure adoption ratios"),
        ("portmon's attach mode", "attach mode"),
        ("portmon's read errors", "read errors"),
        ("portmon's series budget", "series budget"),
        (
            "plaintext payloads on secure ports",
            "plaintext on secure ports",
        ),
        ("the SNMP version's resolved security", "resolved security"),
    ];
    for (what, phrase) in wanted {
        assert!(
            titles.iter().any(|t| t.contains(phrase)),
            "expected a panel for {what} (a title with {phrase:?}), got {titles:?}"
        );
    }
    let adoption = dashboard_queries(&dashboard)
        .into_iter()
        .filter(|q| q.origin.contains("Secure adoption ratios"))
        .map(|q| q.raw)
        .collect::<Vec<_>>()
        .join("\n");
    for (secure, plain) in [
        ("993", "143"),
        ("636", "389"),
        ("2376", "2375"),
        ("853", "53"),
        ("443", "80"),
    ] {
        assert!(
            adoption.contains(&format!("port=~\"{secure}|{plain}\"")),
            "expected the adoption panel to compare {secure} with {plain}, its queries are:\n{adoption}"
        );
    }
}

/// One per-port series of the stand-in portmon: labels and packets per second.
struct Series {
    interface: &'static str,
    direction: &'static str,
    protocol: &'static str,
    port: &'static str,
    service: &'static str,
    range: &'static str,
    security: &'static str,
    pps: f64,
}

const PORTS: &[Series] = &[
    Series {
        interface: "eth0",
        direction: "ingress",
        protocol: "tcp",
        port: "443",
        service: "https",
        range: "well_known",
        security: "secure",
        pps: 900.0,
    },
    Series {
        interface: "eth0",
        direction: "ingress",
        protocol: "tcp",
        port: "80",
        service: "http",
        range: "well_known",
        security: "plaintext",
        pps: 100.0,
    },
    Series {
        interface: "eth0",
        direction: "egress",
        protocol: "udp",
        port: "53",
        service: "domain",
        range: "well_known",
        security: "plaintext",
        pps: 40.0,
    },
    Series {
        interface: "eth0",
        direction: "egress",
        protocol: "tcp",
        port: "853",
        service: "domain-s",
        range: "well_known",
        security: "secure",
        pps: 10.0,
    },
    Series {
        interface: "eth0",
        direction: "ingress",
        protocol: "tcp",
        port: "993",
        service: "imaps",
        range: "well_known",
        security: "secure",
        pps: 30.0,
    },
    Series {
        interface: "eth0",
        direction: "ingress",
        protocol: "tcp",
        port: "143",
        service: "imap",
        range: "well_known",
        security: "plaintext",
        pps: 3.0,
    },
    Series {
        interface: "veth-pm0",
        direction: "ingress",
        protocol: "tcp",
        port: "636",
        service: "ldaps",
        range: "well_known",
        security: "secure",
        pps: 5.0,
    },
    Series {
        interface: "veth-pm0",
        direction: "ingress",
        protocol: "tcp",
        port: "389",
        service: "ldap",
        range: "well_known",
        security: "plaintext",
        pps: 5.0,
    },
    Series {
        interface: "veth-pm0",
        direction: "ingress",
        protocol: "tcp",
        port: "2376",
        service: "docker-s",
        range: "registered",
        security: "secure",
        pps: 2.0,
    },
    Series {
        interface: "veth-pm0",
        direction: "ingress",
        protocol: "tcp",
        port: "2375",
        service: "docker",
        range: "registered",
        security: "plaintext",
        pps: 1.0,
    },
    Series {
        interface: "veth-pm0",
        direction: "ingress",
        protocol: "tcp",
        port: "23",
        service: "telnet",
        range: "well_known",
        security: "plaintext",
        pps: 4.0,
    },
    Series {
        interface: "veth-pm0",
        direction: "ingress",
        protocol: "udp",
        port: "161",
        service: "snmp",
        range: "well_known",
        security: "ambiguous",
        pps: 2.0,
    },
    Series {
        interface: "eth0",
        direction: "ingress",
        protocol: "udp",
        port: "other",
        service: "other",
        range: "dynamic",
        security: "unknown",
        pps: 50.0,
    },
];

/// The stand-in portmon's metrics after `secs` seconds: portmon's families and labels (see
/// monitor/src/metrics/render.rs), counters growing at fixed rates.
fn metrics(secs: f64) -> String {
    let mut text = String::new();
    let families = [
        ("portmon_packets_total", 1.0),
        ("portmon_bytes_total", 600.0),
    ];
    for (family, per_packet) in families {
        let _ = writeln!(text, "# TYPE {family} counter");
        for p in PORTS {
            let _ = writeln!(
                text,
                "{family}{{interface=\"{}\",direction=\"{}\",protocol=\"{}\",port=\"{}\",service=\"{}\",range=\"{}\",security=\"{}\"}} {}",
                p.interface,
                p.direction,
                p.protocol,
                p.port,
                p.service,
                p.range,
                p.security,
                (p.pps * per_packet * secs).floor()
            );
        }
    }
    text.push_str("# TYPE portmon_tcp_syn_total counter\n");
    for p in PORTS.iter().filter(|p| p.protocol == "tcp") {
        let _ = writeln!(
            text,
            "portmon_tcp_syn_total{{interface=\"{}\",direction=\"{}\",port=\"{}\",service=\"{}\",range=\"{}\",security=\"{}\"}} {}",
            p.interface,
            p.direction,
            p.port,
            p.service,
            p.range,
            p.security,
            (p.pps * 0.1 * secs).floor()
        );
    }
    let _ = write!(
        text,
        "# TYPE portmon_series gauge\nportmon_series {}\n\
         # TYPE portmon_series_budget gauge\nportmon_series_budget 400\n\
         # TYPE portmon_unparsed_packets_total counter\n\
         portmon_unparsed_packets_total{{interface=\"eth0\",direction=\"ingress\",reason=\"icmp\"}} {}\n\
         portmon_unparsed_packets_total{{interface=\"eth0\",direction=\"ingress\",reason=\"non_ip\"}} {}\n\
         # TYPE portmon_port_info gauge\n\
         portmon_port_info{{port=\"23\",protocol=\"tcp\",service=\"telnet\",range=\"well_known\",security=\"plaintext\",secure_alternative=\"ssh\"}} 1\n\
         # TYPE portmon_build_info gauge\nportmon_build_info{{version=\"0.1.0\",layout_version=\"1\"}} 1\n\
         # TYPE portmon_attached gauge\n\
         portmon_attached{{interface=\"eth0\",hook=\"xdp\",mode=\"native\"}} 1\n\
         portmon_attached{{interface=\"eth0\",hook=\"tc_egress\",mode=\"tcx\"}} 1\n\
         portmon_attached{{interface=\"veth-pm0\",hook=\"xdp\",mode=\"generic\"}} 1\n\
         # TYPE portmon_map_read_duration_seconds histogram\n\
         portmon_map_read_duration_seconds_bucket{{interface=\"eth0\",le=\"0.0005\"}} {}\n\
         portmon_map_read_duration_seconds_bucket{{interface=\"eth0\",le=\"0.001\"}} {}\n\
         portmon_map_read_duration_seconds_bucket{{interface=\"eth0\",le=\"+Inf\"}} {}\n\
         portmon_map_read_duration_seconds_sum{{interface=\"eth0\"}} {}\n\
         portmon_map_read_duration_seconds_count{{interface=\"eth0\"}} {}\n\
         # TYPE portmon_map_read_errors_total counter\n\
         portmon_map_read_errors_total{{interface=\"eth0\"}} 0\n\
         portmon_map_read_errors_total{{interface=\"veth-pm0\"}} {}\n\
         # TYPE portmon_plaintext_alert gauge\n\
         portmon_plaintext_alert{{interface=\"veth-pm0\",direction=\"ingress\",protocol=\"tcp\",port=\"23\",service=\"telnet\",reason=\"must_be_zero\"}} 1\n\
         # TYPE portmon_plaintext_alerts_total counter\nportmon_plaintext_alerts_total 1\n",
        PORTS.len() + PORTS.iter().filter(|p| p.protocol == "tcp").count(),
        (5.0 * secs).floor(),
        (0.5 * secs).floor(),
        (0.9 * secs).floor(),
        (0.99 * secs).floor(),
        secs.floor(),
        0.0004 * secs,
        secs.floor(),
        (secs / 2.0).floor(),
    );
    payload_metrics(&mut text, secs);
    text
}

/// The payload families of the stand-in portmon (see monitor/src/metrics/payload.rs): HTTP
/// and TLS on 443, TLS on 80, SNMP v2c and v3 on 161.
fn payload_metrics(text: &mut String, secs: f64) {
    // (interface, direction, protocol, port, service, kind, security, per second)
    let payloads = [
        (
            "eth0", "ingress", "tcp", "443", "https", "tls", "secure", 50.0,
        ),
        (
            "eth0",
            "ingress",
            "tcp",
            "443",
            "https",
            "http",
            "plaintext",
            1.0,
        ),
        (
            "eth0",
            "ingress",
            "tcp",
            "80",
            "http",
            "http",
            "plaintext",
            20.0,
        ),
        ("eth0", "ingress", "tcp", "80", "http", "tls", "secure", 0.5),
        (
            "veth-pm0",
            "ingress",
            "udp",
            "161",
            "snmp",
            "snmp_v2c",
            "plaintext",
            2.0,
        ),
        (
            "veth-pm0", "ingress", "udp", "161", "snmp", "snmp_v3", "secure", 1.0,
        ),
    ];
    text.push_str("# TYPE portmon_payload_packets_total counter\n");
    for (interface, direction, protocol, port, service, kind, security, pps) in payloads {
        let _ = writeln!(
            text,
            "portmon_payload_packets_total{{interface=\"{interface}\",direction=\"{direction}\",protocol=\"{protocol}\",port=\"{port}\",service=\"{service}\",kind=\"{kind}\",security=\"{security}\"}} {}",
            (pps * secs).floor()
        );
    }
    text.push_str("# TYPE portmon_security_mismatch_total counter\n");
    for (port, service, expected, observed, pps) in [
        ("443", "https", "secure", "http", 1.0),
        ("80", "http", "plaintext", "tls", 0.5),
    ] {
        let _ = writeln!(
            text,
            "portmon_security_mismatch_total{{interface=\"eth0\",direction=\"ingress\",protocol=\"tcp\",port=\"{port}\",service=\"{service}\",expected=\"{expected}\",observed=\"{observed}\"}} {}",
            (pps * secs).floor()
        );
    }
    text.push_str(
        "# TYPE portmon_port_resolved_security gauge\n\
         portmon_port_resolved_security{interface=\"veth-pm0\",protocol=\"udp\",port=\"161\",service=\"snmp\",policy=\"ambiguous\",security=\"plaintext\"} 1\n",
    );
}

#[test]
fn every_query_runs_and_returns_data_on_a_live_prometheus() {
    let started = Instant::now();
    let target = ScrapeTarget::serve(move || metrics(started.elapsed().as_secs_f64() + 1.0))
        .expect("the stand-in portmon serves");
    let server = Prometheus::start(&ServerConfig {
        scrape_interval: Duration::from_secs(1),
        evaluation_interval: Duration::from_secs(1),
        rule_files: vec![shipped_rules()],
        targets: vec![("portmon".to_owned(), target.addr().to_string())],
    })
    .expect("prometheus starts");
    // Rates need a few scrapes, ALERTS a rule evaluation after them.
    server
        .wait_for(
            "four scrapes and a firing alert",
            Duration::from_mins(1),
            Duration::from_millis(250),
            |s| {
                let scrapes = s.query_vector("count_over_time(portmon_build_info[1m])")?;
                let firing = s.query_vector("ALERTS{alertstate=\"firing\"}")?;
                Ok(
                    (scrapes.first().is_some_and(|x| x.value >= 4.0) && !firing.is_empty())
                        .then_some(()),
                )
            },
        )
        .unwrap_or_else(|e| panic!("{e:#}\nprometheus log:\n{}", server.log()));
    let queries: Vec<DashboardQuery> = dashboard_queries(&dashboard());
    assert!(
        queries.len() >= 15,
        "expected every panel's queries, got {}",
        queries.len()
    );
    let mut failures = Vec::new();
    for query in &queries {
        match server.query(&query.promql) {
            Err(error) => failures.push(format!(
                "{}: {error:#}\n  query: {}",
                query.origin, query.promql
            )),
            Ok(data) if data["result"].as_array().is_none_or(Vec::is_empty) => {
                failures.push(format!(
                    "{}: returned no data\n  query: {}",
                    query.origin, query.promql
                ));
            }
            Ok(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "expected every dashboard query to evaluate and return data; {} of {} did not:\n{}",
        failures.len(),
        queries.len(),
        failures.join("\n")
    );
}
