//! The HTTP endpoint: `GET /metrics` (format negotiated from `Accept`), `GET /healthz` and
//! `GET /api/v1/snapshot` (the JSON the live view reads).
//!
//! Only routing and transport live here; what a scrape returns comes from a
//! [`MetricsSource`]. TLS and authentication would wrap the accepted stream and the
//! request check in this module without touching the daemon.

use std::{convert::Infallible, future::Future, sync::Arc};

use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{ACCEPT, ALLOW, CONTENT_TYPE},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::encode::Format;

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

/// Serves until `shutdown` completes. Connections are served one task each; a failed
/// connection is logged and does not affect the others.
pub async fn serve<S: MetricsSource>(
    listener: TcpListener,
    source: Arc<S>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // EMFILE and friends: keep serving the connections we have.
                log::warn!("accepting a metrics connection: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let source = Arc::clone(&source);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let source = Arc::clone(&source);
                async move { Ok::<_, Infallible>(respond(&request, &*source)) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                log::debug!("metrics connection: {error}");
            }
        });
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
    request: &Request<Incoming>,
    source: &S,
) -> Response<Full<Bytes>> {
    let head = request.method() == Method::HEAD;
    if request.method() != Method::GET && !head {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        response
            .headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match request.uri().path() {
        "/metrics" => {
            let accept = request
                .headers()
                .get(ACCEPT)
                .and_then(|value| value.to_str().ok());
            let format = Format::negotiate(accept);
            let body = if head {
                String::new()
            } else {
                source.render(format)
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
