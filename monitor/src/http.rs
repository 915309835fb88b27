//! The HTTP endpoint: `GET /metrics` (format negotiated from `Accept`), `GET /healthz` and
//! `GET /api/v1/snapshot` (the JSON the live view reads).
//!
//! Routing and transport live here; what a scrape returns comes from a [`MetricsSource`],
//! and what the endpoint enforces (TLS, basic auth, headers) from [`Security`]. Every
//! stage is bounded so that a slow or malformed client costs one failed request and
//! nothing else:
//! * at most [`Limits::max_connections`] connections are open; more wait in the kernel's
//!   accept queue instead of taking file descriptors;
//! * a TLS handshake must finish within [`TLS_HANDSHAKE_TIMEOUT`];
//! * a request's headers, and on a kept-alive connection the next request's, must arrive
//!   within [`HEADER_READ_TIMEOUT`] (hyper closes the connection otherwise, so idle
//!   connections are bounded too);
//! * a request body must be at most [`MAX_BODY`] bytes and arrive within [`BODY_TIMEOUT`];
//! * more than [`Limits::max_requests`] requests in flight get 503 at once, before any
//!   bcrypt or rendering work.

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{ACCEPT, ALLOW, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE},
    http::request::Parts,
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};

use crate::{
    metrics::encode::Format,
    web::{
        DEFAULT_MAX_REQUESTS, Security, auth,
        stats::{ConnectionFailure, Rejection, Stats},
    },
};

/// How long a client may take to send a request's headers (or, kept alive, the next one's).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TLS handshake may take.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request body may take to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request body read (scrapes have none).
pub const MAX_BODY: usize = 16 * 1024;

/// Produces the body of a scrape.
pub trait MetricsSource: Send + Sync + 'static {
    /// The exposition in `format`.
    fn render(&self, format: Format) -> String;

    /// The JSON document served at `/api/v1/snapshot`, or `None` when this source has
    /// none (the endpoint then answers 404).
    fn snapshot(&self) -> Option<String> {
        None
    }
}

/// Caps on the endpoint's resources.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests in flight before 503 (`--web.max-requests`); 0 is no cap.
    pub max_requests: usize,
    /// Connections open at once; further ones wait to be accepted.
    pub max_connections: usize,
}

/// The connection cap when the open-file limit allows it.
pub const MAX_CONNECTIONS: usize = 4096;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_requests: DEFAULT_MAX_REQUESTS,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

impl Limits {
    /// [`MAX_CONNECTIONS`], or fewer when the open-file limit `nofile` would not leave
    /// room for them and a reserve of 256 for maps, netlink and the rest.
    #[must_use]
    pub fn connections_for(nofile: u64) -> usize {
        let room = usize::try_from(nofile.saturating_sub(256)).unwrap_or(usize::MAX);
        room.clamp(16, MAX_CONNECTIONS)
    }
}

/// Serves plain HTTP with the default limits until `shutdown` completes.
pub async fn serve<S: MetricsSource>(
    listener: TcpListener,
    source: Arc<S>,
    shutdown: impl Future<Output = ()>,
) {
    serve_secured(
        listener,
        source,
        Security::default(),
        Limits::default(),
        shutdown,
    )
    .await;
}

/// What every connection task shares.
struct Shared<S> {
    source: Arc<S>,
    security: Security,
    stats: Arc<Stats>,
    max_requests: usize,
}

/// Serves until `shutdown` completes. Connections are served one task each; a failed
/// connection is counted and logged and does not affect the others.
pub async fn serve_secured<S: MetricsSource>(
    listener: TcpListener,
    source: Arc<S>,
    security: Security,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let shared = Arc::new(Shared {
        source,
        security,
        stats: Arc::new(Stats::default()),
        max_requests: limits.max_requests,
    });
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => return,
            permit = Arc::clone(&connections).acquire_owned() => permit,
        };
        // The semaphore is never closed.
        let Ok(permit) = permit else { return };
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // EMFILE and friends: keep serving the connections we have.
                log::warn!("accepting a metrics connection: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _permit = permit;
            let _open = shared.stats.open();
            match shared.security.tls.clone() {
                None => serve_connection(TokioIo::new(stream), &shared).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => serve_connection(TokioIo::new(tls), &shared).await,
                        Ok(Err(error)) => {
                            shared.stats.fail(ConnectionFailure::TlsHandshake);
                            log::debug!("metrics connection: TLS handshake: {error}");
                        }
                        Err(_) => {
                            shared.stats.fail(ConnectionFailure::TlsTimeout);
                            log::debug!(
                                "metrics connection: no TLS handshake within {TLS_HANDSHAKE_TIMEOUT:?}"
                            );
                        }
                    }
                }
            }
        });
    }
}

async fn serve_connection<S, I>(io: I, shared: &Arc<Shared<S>>)
where
    S: MetricsSource,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service_shared = Arc::clone(shared);
    let service = service_fn(move |request| {
        let shared = Arc::clone(&service_shared);
        async move { Ok::<_, Infallible>(shared.handle(request).await) }
    });
    if let Err(error) = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(io, service)
        .await
    {
        shared.stats.fail(ConnectionFailure::Http);
        log::debug!("metrics connection: {error}");
    }
}

impl<S: MetricsSource> Shared<S> {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let mut response = match self.stats.admit(self.max_requests) {
            None => {
                let mut response = text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many requests in flight (--web.max-requests); retry later\n",
                );
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, hyper::header::HeaderValue::from_static("1"));
                response
            }
            Some(_in_flight) => self.admitted(request).await,
        };
        for (name, value) in &self.security.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        response
    }

    async fn admitted(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if let Some(auth) = &self.security.auth
            && !auth.allows(request.headers().get(AUTHORIZATION)).await
        {
            self.stats.reject(Rejection::Unauthorized);
            let mut response = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static(auth::CHALLENGE),
            );
            return response;
        }
        let (parts, body) = request.into_parts();
        match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect()).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => {
                self.stats.reject(Rejection::BadBody);
                return text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
            }
            Err(_) => {
                self.stats.reject(Rejection::BadBody);
                return text(StatusCode::REQUEST_TIMEOUT, "request body too slow\n");
            }
        }
        respond(&parts, &*self.source, &self.stats)
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Answers one request.
fn respond<S: MetricsSource + ?Sized>(
    request: &Parts,
    source: &S,
    stats: &Stats,
) -> Response<Full<Bytes>> {
    let head = request.method == Method::HEAD;
    if request.method != Method::GET && !head {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        response
            .headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match request.uri.path() {
        "/metrics" => {
            let accept = request
                .headers
                .get(ACCEPT)
                .and_then(|value| value.to_str().ok());
            let format = Format::negotiate(accept);
            let body = if head {
                String::new()
            } else {
                let mut body = source.render(format);
                stats.append(&mut body, format);
                body
            };
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(format.content_type()),
            );
            response
        }
        "/api/v1/snapshot" => match source.snapshot() {
            Some(json) => {
                let body = if head { String::new() } else { json };
                let mut response = Response::new(Full::new(Bytes::from(body)));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("application/json"),
                );
                response
            }
            None => text(StatusCode::NOT_FOUND, "no snapshot from this source\n"),
        },
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/" => text(
            StatusCode::OK,
            "portmon: metrics at /metrics, health at /healthz\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found: try /metrics\n"),
    }
}
