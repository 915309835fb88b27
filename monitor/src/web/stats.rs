//! The endpoint's own counters: requests in flight (and the cap on them), rejected
//! requests by reason, failed connections by stage. Appended to every `/metrics` answer.

use std::sync::{
    Arc,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};

use crate::metrics::encode::{Encoder, Format, Kind};

/// Why a request was answered without being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// 503: `--web.max-requests` were already in flight.
    MaxRequests,
    /// 401: no or wrong credentials.
    Unauthorized,
    /// 408 or 413: the request body was too slow or too large.
    BadBody,
}

impl Rejection {
    const ALL: [Rejection; 3] = [
        Rejection::MaxRequests,
        Rejection::Unauthorized,
        Rejection::BadBody,
    ];

    const fn label(self) -> &'static str {
        match self {
            Rejection::MaxRequests => "max_requests",
            Rejection::Unauthorized => "unauthorized",
            Rejection::BadBody => "bad_body",
        }
    }
}

/// Where a connection failed before or while speaking HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionFailure {
    /// The TLS handshake failed (wrong version, no or bad client certificate, garbage).
    TlsHandshake,
    /// The TLS handshake did not finish in time.
    TlsTimeout,
    /// Malformed HTTP, headers too slow, or a reset.
    Http,
}

impl ConnectionFailure {
    const ALL: [ConnectionFailure; 3] = [
        ConnectionFailure::TlsHandshake,
        ConnectionFailure::TlsTimeout,
        ConnectionFailure::Http,
    ];

    const fn label(self) -> &'static str {
        match self {
            ConnectionFailure::TlsHandshake => "tls_handshake",
            ConnectionFailure::TlsTimeout => "tls_timeout",
            ConnectionFailure::Http => "http",
        }
    }
}

/// Shared by every connection task.
#[derive(Debug, Default)]
pub struct Stats {
    in_flight: AtomicUsize,
    open_connections: AtomicUsize,
    rejected: [AtomicU64; Rejection::ALL.len()],
    failed: [AtomicU64; ConnectionFailure::ALL.len()],
}

/// A request counted in flight until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Stats>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection counted open until dropped.
#[derive(Debug)]
pub struct Open(Arc<Stats>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Stats {
    /// Admits a request unless `max` are already in flight (0: no cap); a refusal is
    /// counted as [`Rejection::MaxRequests`].
    pub fn admit(self: &Arc<Self>, max: usize) -> Option<InFlight> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(Arc::clone(self));
        if max != 0 && before >= max {
            drop(guard);
            self.reject(Rejection::MaxRequests);
            return None;
        }
        Some(guard)
    }

    /// Counts an open connection until the guard drops.
    pub fn open(self: &Arc<Self>) -> Open {
        self.open_connections.fetch_add(1, Ordering::AcqRel);
        Open(Arc::clone(self))
    }

    /// Counts a rejected request.
    pub fn reject(&self, reason: Rejection) {
        self.rejected[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed connection.
    pub fn fail(&self, stage: ConnectionFailure) {
        self.failed[stage as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Rejected requests so far.
    #[must_use]
    pub fn rejected(&self, reason: Rejection) -> u64 {
        self.rejected[reason as usize].load(Ordering::Relaxed)
    }

    /// Appends the endpoint's families to a finished exposition in `format`.
    pub fn append(&self, exposition: &mut String, format: Format) {
        if format == Format::OpenMetrics
            && let Some(stripped) = exposition.strip_suffix("# EOF\n")
        {
            exposition.truncate(stripped.len());
        }
        let mut encoder = Encoder::new(exposition, format);
        encoder.family(
            "portmon_http_requests_in_flight",
            Kind::Gauge,
            "Requests to the metrics endpoint being served, this one included.",
        );
        encoder.sample(&[], self.in_flight.load(Ordering::Acquire));
        encoder.family(
            "portmon_http_connections_open",
            Kind::Gauge,
            "Open connections to the metrics endpoint.",
        );
        encoder.sample(&[], self.open_connections.load(Ordering::Acquire));
        encoder.family(
            "portmon_http_requests_rejected",
            Kind::Counter,
            "Requests answered without being served: max_requests (503, --web.max-requests \
             in flight), unauthorized (401), bad_body (408/413).",
        );
        for reason in Rejection::ALL {
            encoder.sample(&[("reason", reason.label())], self.rejected(reason));
        }
        encoder.family(
            "portmon_http_connection_failures",
            Kind::Counter,
            "Connections to the metrics endpoint that failed: tls_handshake, tls_timeout, \
             http (malformed or too slow).",
        );
        for stage in ConnectionFailure::ALL {
            encoder.sample(
                &[("stage", stage.label())],
                self.failed[stage as usize].load(Ordering::Relaxed),
            );
        }
        encoder.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_admits_max_then_rejects_and_frees_on_drop() {
        let stats = Arc::new(Stats::default());
        let held: Vec<InFlight> = (0..3).filter_map(|_| stats.admit(3)).collect();
        assert_eq!(held.len(), 3, "three admitted under a cap of 3");
        assert!(stats.admit(3).is_none(), "the fourth is refused");
        assert_eq!(stats.rejected(Rejection::MaxRequests), 1, "and counted");
        drop(held);
        assert!(
            stats.admit(3).is_some(),
            "admitted again once the others finished"
        );
        let unlimited: Vec<InFlight> = (0..100).filter_map(|_| stats.admit(0)).collect();
        assert_eq!(unlimited.len(), 100, "0 means no cap");
    }

    #[test]
    fn families_go_before_the_openmetrics_eof() {
        let stats = Arc::new(Stats::default());
        stats.reject(Rejection::Unauthorized);
        let mut text = "# EOF\n".to_owned();
        stats.append(&mut text, Format::OpenMetrics);
        assert!(text.ends_with("# EOF\n"), "one EOF at the end: {text}");
        assert_eq!(text.matches("# EOF").count(), 1, "only one EOF: {text}");
        assert!(
            text.contains("portmon_http_requests_rejected_total{reason=\"unauthorized\"} 1\n"),
            "the 401 is counted: {text}"
        );
        let mut text = String::new();
        stats.append(&mut text, Format::Prometheus);
        assert!(
            text.contains("# TYPE portmon_http_requests_rejected_total counter\n"),
            "0.0.4 names counters with _total: {text}"
        );
    }
}
