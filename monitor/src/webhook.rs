//! The optional alert webhook: POSTs the detector's alerts to an Alertmanager (or anything
//! that speaks its v2 API), so portmon can notify without a Prometheus in between.
//!
//! The body is what Alertmanager's `POST /api/v2/alerts` takes: a JSON array of
//! `{labels, annotations, startsAt, endsAt, generatorURL}`. A started alert is sent without
//! `endsAt`; an ended one with `endsAt` (and its original `startsAt`). Firing alerts are
//! re-sent every [`RESEND_EVERY`], because Alertmanager resolves an alert it has not heard
//! of for its `resolve_timeout` (5 minutes by default).
//!
//! The read loop never waits for the network: [`WebhookSender::send`] puts the alert on a
//! bounded channel (dropping it with a warning when full) and a task posts it, with at most
//! [`ATTEMPTS`] attempts of `webhook_timeout` each. Plain `http://` only: put a local
//! Alertmanager or a TLS proxy next to portmon for anything else.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Uri, body::Bytes, header};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::alerts::{AlertEvent, AlertReason, EventKind};

/// The `alertname` label of portmon's own alerts.
pub const ALERT_NAME: &str = "PortmonPlaintextTraffic";
/// How often firing alerts are re-sent.
pub const RESEND_EVERY: Duration = Duration::from_mins(1);
/// Attempts per POST before the batch is given up.
pub const ATTEMPTS: u32 = 3;
/// Alerts waiting to be sent; more are dropped with a warning.
const QUEUE: usize = 256;

/// A webhook URL portmon cannot use.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Not a URL, or not `http://host[:port][/path]`.
    #[error(
        "alerts.webhook_url = {url:?} is not usable: {why}; write e.g. \"http://127.0.0.1:9093\""
    )]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong.
        why: String,
    },
}

/// Where and how to POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port` to connect to.
    pub authority: String,
    /// The request path, `/api/v2/alerts` when the URL names none.
    pub path: String,
}

impl Target {
    /// Parses `url`.
    ///
    /// # Errors
    /// When it is not an `http://` URL with a host.
    pub fn parse(url: &str) -> Result<Self, WebhookError> {
        let bad = |why: &str| WebhookError::BadUrl {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// is supported"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let authority = if authority.port().is_some() {
            authority.as_str().to_owned()
        } else {
            format!("{}:80", authority.host())
        };
        let path = match uri
            .path_and_query()
            .map(hyper::http::uri::PathAndQuery::as_str)
        {
            None | Some("" | "/") => "/api/v2/alerts".to_owned(),
            Some(path) => path.to_owned(),
        };
        Ok(Self { authority, path })
    }
}

/// One alert in Alertmanager's v2 format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// Identify the alert; `alertname` is [`ALERT_NAME`].
    pub labels: BTreeMap<String, String>,
    /// `summary` and `description`.
    pub annotations: BTreeMap<String, String>,
    /// When the alert started (RFC 3339).
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    /// When it ended; absent while it fires.
    #[serde(rename = "endsAt", skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    /// Where the alert comes from.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

impl Notification {
    /// The notification of `event` on `interface` (port service `service`), at `now`.
    /// For an end, `startsAt` is `now` too; the sender replaces it with the start it sent.
    #[must_use]
    pub fn from_event(event: &AlertEvent, interface: &str, service: &str, now: SystemTime) -> Self {
        let key = &event.key;
        let reason = event.reason.as_str();
        let labels: BTreeMap<String, String> = [
            ("alertname", ALERT_NAME.to_owned()),
            ("interface", interface.to_owned()),
            ("direction", key.direction.as_str().to_owned()),
            ("protocol", key.protocol.as_str().to_owned()),
            ("port", key.port.to_string()),
            ("service", service.to_owned()),
            ("reason", reason.to_owned()),
            (
                "severity",
                match event.reason {
                    AlertReason::MustBeZero | AlertReason::Mismatch => "critical",
                    AlertReason::Spike => "warning",
                }
                .to_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let summary = format!(
            "Plaintext {service} traffic ({reason}) on {interface} {} {}/{}",
            key.direction.as_str(),
            key.port,
            key.protocol.as_str()
        );
        let description = if event.reason == AlertReason::Mismatch {
            format!(
                "portmon's detector: {:.1}/s plaintext payloads (HTTP, mail or login, SNMP v1/v2c) \
                 on a port the policy calls secure.",
                event.rate
            )
        } else {
            format!(
                "portmon's detector: {} rate {:.1}/s against a baseline of {:.1}/s.",
                event.signal.as_str(),
                event.rate,
                event.baseline
            )
        };
        let at = rfc3339(now);
        Self {
            labels,
            annotations: [("summary", summary), ("description", description)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            starts_at: at.clone(),
            ends_at: (event.kind == EventKind::Ended).then_some(at),
            generator_url: String::new(),
        }
    }
}

/// The request body for `alerts` (strings and maps of strings always serialize).
#[must_use]
pub fn payload(alerts: &[Notification]) -> String {
    serde_json::to_string(alerts).unwrap_or_else(|_| "[]".to_owned())
}

/// The read loop's handle on the sender task.
#[derive(Debug, Clone)]
pub struct WebhookSender {
    queue: mpsc::Sender<Notification>,
    dropped: Arc<AtomicU64>,
    generator_url: String,
}

impl WebhookSender {
    /// Starts the sender task on the current tokio runtime.
    ///
    /// # Errors
    /// When `url` is unusable.
    pub fn spawn(
        url: &str,
        timeout: Duration,
        generator_url: String,
    ) -> Result<Self, WebhookError> {
        let target = Target::parse(url)?;
        let (queue, received) = mpsc::channel(QUEUE);
        tokio::spawn(run(target, timeout, received));
        Ok(Self {
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
            generator_url,
        })
    }

    /// Queues `notification` without waiting; when the queue is full it is dropped and
    /// counted, with a warning.
    pub fn send(&self, mut notification: Notification) {
        notification.generator_url.clone_from(&self.generator_url);
        if self.queue.try_send(notification).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            log::warn!("webhook queue full or closed: alert dropped ({dropped} so far)");
        }
    }
}

/// The sender task: posts each notification, and re-sends the firing ones periodically.
async fn run(target: Target, timeout: Duration, mut received: mpsc::Receiver<Notification>) {
    let mut firing: BTreeMap<BTreeMap<String, String>, Notification> = BTreeMap::new();
    let mut resend = tokio::time::interval(RESEND_EVERY);
    resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resend.tick().await; // The first tick is immediate.
    loop {
        let batch = tokio::select! {
            notification = received.recv() => {
                let Some(mut notification) = notification else { return };
                if notification.ends_at.is_some() {
                    if let Some(started) = firing.remove(&notification.labels) {
                        notification.starts_at = started.starts_at;
                    }
                } else {
                    firing.insert(notification.labels.clone(), notification.clone());
                }
                vec![notification]
            }
            _ = resend.tick() => {
                if firing.is_empty() {
                    continue;
                }
                firing.values().cloned().collect()
            }
        };
        post_with_retries(&target, timeout, &payload(&batch)).await;
    }
}

async fn post_with_retries(target: &Target, timeout: Duration, body: &str) {
    for attempt in 1..=ATTEMPTS {
        match tokio::time::timeout(timeout, post(target, body)).await {
            Ok(Ok(())) => return,
            Ok(Err(error)) => log::warn!(
                "webhook http://{}{} attempt {attempt}/{ATTEMPTS}: {error}",
                target.authority,
                target.path
            ),
            Err(_) => log::warn!(
                "webhook http://{}{} attempt {attempt}/{ATTEMPTS}: no answer within {timeout:?}",
                target.authority,
                target.path
            ),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(500) * attempt).await;
        }
    }
    log::error!(
        "webhook http://{}{}: giving up on {} byte(s) of alerts after {ATTEMPTS} attempts",
        target.authority,
        target.path,
        body.len()
    );
}

/// One POST over a fresh HTTP/1.1 connection; `Ok` on a 2xx answer.
async fn post(target: &Target, body: &str) -> Result<(), String> {
    let stream = tokio::net::TcpStream::connect(&target.authority)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let driver = tokio::spawn(connection);
    let request = Request::post(target.path.as_str())
        .header(header::HOST, target.authority.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| format!("building the request: {e}"))?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("sending: {e}"))?;
        let status = response.status();
        let answer = response
            .into_body()
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!(
                "answered {status}: {}",
                String::from_utf8_lossy(&answer).trim()
            ))
        }
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests panic with what they expected")]
mod tests {
    use monitor_common::layout::{Direction, L4};

    use super::*;
    use crate::alerts::{AlertKey, Signal};

    fn event(kind: EventKind, reason: AlertReason) -> AlertEvent {
        AlertEvent {
            kind,
            key: AlertKey {
                ifindex: 7,
                direction: Direction::Ingress,
                protocol: L4::Tcp,
                port: 23,
            },
            reason,
            signal: Signal::Packets,
            rate: 12.0,
            baseline: 0.0,
        }
    }

    #[test]
    fn a_mismatch_alert_is_critical_and_says_what_was_seen() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut mismatch = event(EventKind::Started, AlertReason::Mismatch);
        mismatch.key.port = 443;
        let notification = Notification::from_event(&mismatch, "eth0", "https", at);
        assert_eq!(
            notification.labels.get("reason").map(String::as_str),
            Some("mismatch")
        );
        assert_eq!(
            notification.labels.get("severity").map(String::as_str),
            Some("critical")
        );
        assert_eq!(
            notification
                .annotations
                .get("description")
                .map(String::as_str),
            Some(
                "portmon's detector: 12.0/s plaintext payloads (HTTP, mail or login, SNMP v1/v2c) \
                 on a port the policy calls secure."
            )
        );
    }

    #[test]
    fn the_payload_is_an_alertmanager_v2_alert_array() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let started = Notification::from_event(
            &event(EventKind::Started, AlertReason::MustBeZero),
            "eth0",
            "telnet",
            at,
        );
        let mut ended = Notification::from_event(
            &event(EventKind::Ended, AlertReason::MustBeZero),
            "eth0",
            "telnet",
            at + Duration::from_secs(90),
        );
        ended.starts_at.clone_from(&started.starts_at);
        let parsed: serde_json::Value =
            serde_json::from_str(&payload(&[started, ended])).expect("the payload is JSON");
        let labels = serde_json::json!({
            "alertname": "PortmonPlaintextTraffic",
            "interface": "eth0",
            "direction": "ingress",
            "protocol": "tcp",
            "port": "23",
            "service": "telnet",
            "reason": "must_be_zero",
            "severity": "critical",
        });
        let annotations = serde_json::json!({
            "summary": "Plaintext telnet traffic (must_be_zero) on eth0 ingress 23/tcp",
            "description": "portmon's detector: packets rate 12.0/s against a baseline of 0.0/s.",
        });
        let expected = serde_json::json!([
            {
                "labels": labels,
                "annotations": annotations,
                "startsAt": "2023-11-14T22:13:20.000Z",
                "generatorURL": "",
            },
            {
                "labels": labels,
                "annotations": annotations,
                "startsAt": "2023-11-14T22:13:20.000Z",
                "endsAt": "2023-11-14T22:14:50.000Z",
                "generatorURL": "",
            },
        ]);
        assert_eq!(parsed, expected);
    }

    #[test]
    fn a_spike_is_a_warning() {
        let notification = Notification::from_event(
            &event(EventKind::Started, AlertReason::Spike),
            "eth0",
            "ftp",
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(
            notification.labels.get("severity").map(String::as_str),
            Some("warning")
        );
        assert_eq!(notification.ends_at, None, "a started alert has no end");
    }

    #[test]
    fn urls_are_checked_and_default_to_the_v2_alerts_path() {
        for (name, url, expected) in [
            (
                "host and port",
                "http://127.0.0.1:9093",
                Some(("127.0.0.1:9093", "/api/v2/alerts")),
            ),
            (
                "trailing slash",
                "http://am.local:9093/",
                Some(("am.local:9093", "/api/v2/alerts")),
            ),
            (
                "no port",
                "http://am.local",
                Some(("am.local:80", "/api/v2/alerts")),
            ),
            (
                "own path",
                "http://127.0.0.1:8080/hook?x=1",
                Some(("127.0.0.1:8080", "/hook?x=1")),
            ),
            ("https", "https://am.local:9093", None),
            ("not a url", "am local", None),
            ("no host", "http://", None),
        ] {
            let got = Target::parse(url).ok();
            let expected = expected.map(|(authority, path)| Target {
                authority: authority.to_owned(),
                path: path.to_owned(),
            });
            assert_eq!(got, expected, "case {name}: {url}");
        }
    }
}
