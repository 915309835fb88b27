//! A minimal blocking HTTP/1.1 client for `GET /api/v1/snapshot`: one request per
//! connection (`Connection: close`), so the live view needs no async runtime. Plain HTTP
//! only; the daemon binds to loopback by default.

use std::{
    io::{self, Read as _, Write as _},
    net::{SocketAddr, TcpStream, ToSocketAddrs as _},
    time::Duration,
};

use crate::snapshot::{self, Snapshot};

/// How long connecting and each read or write may take.
const TIMEOUT: Duration = Duration::from_secs(3);
/// The largest response accepted (a snapshot of many interfaces is a few hundred KiB).
const MAX_RESPONSE: u64 = 32 * 1024 * 1024;
/// The snapshot's path below the URL's.
const SNAPSHOT_PATH: &str = "/api/v1/snapshot";

/// Why a snapshot could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL cannot be used.
    #[error("{0}")]
    Url(String),
    /// Nothing listens there.
    #[error("no portmon answers at {url} (connection refused)")]
    Refused {
        /// The URL tried.
        url: String,
    },
    /// Connecting or the exchange failed otherwise.
    #[error("talking to {url}: {source}")]
    Io {
        /// The URL tried.
        url: String,
        /// The error.
        source: io::Error,
    },
    /// The answer is not a usable HTTP response.
    #[error("{url} answered something that is not HTTP: {detail}")]
    NotHttp {
        /// The URL tried.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// The server answered with another status than 200.
    #[error("{url}{SNAPSHOT_PATH} answered {status}: {body}")]
    Status {
        /// The URL tried.
        url: String,
        /// HTTP status.
        status: u16,
        /// The first line of the body.
        body: String,
    },
    /// The body is not a snapshot.
    #[error("{url}{SNAPSHOT_PATH} did not return a snapshot: {source}")]
    Json {
        /// The URL tried.
        url: String,
        /// The decoding error.
        source: serde_json::Error,
    },
    /// The snapshot's schema is not the one this build reads.
    #[error(
        "{url} serves snapshot version {got}, this portmon reads version {}: use a portmon \
         top of the daemon's version",
        snapshot::VERSION
    )]
    Version {
        /// The URL tried.
        url: String,
        /// The version served.
        got: u32,
    },
}

/// Where the snapshots come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL as given, without a trailing slash.
    pub url: String,
    /// `host:port`, for the `Host` header and for resolving.
    authority: String,
    /// The request target.
    path: String,
}

impl Endpoint {
    /// Parses `http://host[:port][/prefix]` (the scheme may be left out; the port defaults
    /// to 80).
    ///
    /// # Errors
    /// An `https` URL, another scheme, or no host.
    pub fn parse(url: &str) -> Result<Self, FetchError> {
        let url = url.trim();
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest.trim_end_matches('/'),
            Some(("https", _)) => {
                return Err(FetchError::Url(format!(
                    "{url}: portmon top speaks plain HTTP only; point --url at a listener \
                     without TLS (the daemon's default, on loopback)"
                )));
            }
            Some((scheme, _)) => {
                return Err(FetchError::Url(format!(
                    "{url}: unsupported scheme {scheme:?}, expected http://HOST:PORT"
                )));
            }
            None => url.trim_end_matches('/'),
        };
        let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err(FetchError::Url(format!(
                "{url:?} has no host; expected http://HOST:PORT"
            )));
        }
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(_, port)| !port.is_empty() && !port.contains(']'));
        let authority = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("/{prefix}")
        };
        Ok(Self {
            url: format!("http://{rest}"),
            authority,
            path: format!("{prefix}{SNAPSHOT_PATH}"),
        })
    }

    fn io(&self, source: io::Error) -> FetchError {
        FetchError::Io {
            url: self.url.clone(),
            source,
        }
    }

    fn connect(&self) -> Result<TcpStream, FetchError> {
        let addrs: Vec<SocketAddr> = self
            .authority
            .to_socket_addrs()
            .map_err(|error| self.io(error))?
            .collect();
        let mut refused = false;
        let mut last = None;
        for addr in &addrs {
            match TcpStream::connect_timeout(addr, TIMEOUT) {
                Ok(stream) => return Ok(stream),
                Err(error) => {
                    refused |= error.kind() == io::ErrorKind::ConnectionRefused;
                    last = Some(error);
                }
            }
        }
        match last {
            Some(_) if refused => Err(FetchError::Refused {
                url: self.url.clone(),
            }),
            Some(error) => Err(self.io(error)),
            None => Err(FetchError::Url(format!(
                "{} resolves to no address",
                self.authority
            ))),
        }
    }

    /// Fetches one snapshot.
    ///
    /// # Errors
    /// See [`FetchError`].
    pub fn fetch(&self) -> Result<Snapshot, FetchError> {
        let mut stream = self.connect()?;
        stream
            .set_read_timeout(Some(TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
            .map_err(|error| self.io(error))?;
        // One write: a server may answer and close after the first segment it reads.
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
            self.path, self.authority
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|error| self.io(error))?;
        let mut raw = Vec::new();
        stream
            .take(MAX_RESPONSE)
            .read_to_end(&mut raw)
            .map_err(|error| self.io(error))?;
        let (status, body) = parse_response(&raw).map_err(|detail| FetchError::NotHttp {
            url: self.url.clone(),
            detail,
        })?;
        if status != 200 {
            return Err(FetchError::Status {
                url: self.url.clone(),
                status,
                body: String::from_utf8_lossy(&body)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned(),
            });
        }
        let snapshot: Snapshot = match serde_json::from_slice(&body) {
            Ok(snapshot) => snapshot,
            Err(source) => {
                // A newer daemon may have changed the schema: say so rather than "missing
                // field".
                if let Some(got) = version_of(&body).filter(|&v| v != snapshot::VERSION) {
                    return Err(FetchError::Version {
                        url: self.url.clone(),
                        got,
                    });
                }
                return Err(FetchError::Json {
                    url: self.url.clone(),
                    source,
                });
            }
        };
        if snapshot.version != snapshot::VERSION {
            return Err(FetchError::Version {
                url: self.url.clone(),
                got: snapshot.version,
            });
        }
        Ok(snapshot)
    }
}

fn version_of(body: &[u8]) -> Option<u32> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    u32::try_from(value.get("version")?.as_u64()?).ok()
}

/// Splits a whole HTTP/1.1 response into its status and its body (chunked or not).
fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| "no end of headers".to_owned())?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "headers not UTF-8".to_owned())?;
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .filter(|line| line.starts_with("HTTP/1."))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status line in {head:?}"))?;
    let chunked = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

/// Decodes a chunked body.
fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|window| window == b"\r\n")
            .ok_or_else(|| "unterminated chunk size".to_owned())?;
        let size_text =
            std::str::from_utf8(&raw[..line_end]).map_err(|_| "chunk size not UTF-8".to_owned())?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = raw
            .get(..size)
            .ok_or_else(|| "truncated chunk".to_owned())?;
        body.extend_from_slice(chunk);
        raw = raw.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests panic with what they expected")]
mod tests {
    use std::{net::TcpListener, thread};

    use super::*;

    #[test]
    fn urls_parse_to_an_authority_and_a_path() {
        // (case, url, authority, path, display)
        let cases = [
            (
                "host and port",
                "http://127.0.0.1:9797",
                "127.0.0.1:9797",
                "/api/v1/snapshot",
                "http://127.0.0.1:9797",
            ),
            (
                "no scheme, trailing slash",
                "127.0.0.1:9464/",
                "127.0.0.1:9464",
                "/api/v1/snapshot",
                "http://127.0.0.1:9464",
            ),
            (
                "default port and a prefix",
                "http://portmon.local/node1",
                "portmon.local:80",
                "/node1/api/v1/snapshot",
                "http://portmon.local/node1",
            ),
            (
                "IPv6",
                "http://[::1]:9797",
                "[::1]:9797",
                "/api/v1/snapshot",
                "http://[::1]:9797",
            ),
            (
                "IPv6 without a port",
                "http://[::1]",
                "[::1]:80",
                "/api/v1/snapshot",
                "http://[::1]",
            ),
        ];
        for (name, url, authority, path, display) in cases {
            let endpoint = Endpoint::parse(url).unwrap_or_else(|e| panic!("case {name}: {e}"));
            assert_eq!(
                (
                    endpoint.authority.as_str(),
                    endpoint.path.as_str(),
                    endpoint.url.as_str()
                ),
                (authority, path, display),
                "case {name}"
            );
        }
        for (name, url, needle) in [
            ("https", "https://x:1", "plain HTTP only"),
            ("other scheme", "ftp://x", "unsupported scheme"),
            ("no host", "http://", "no host"),
        ] {
            let error = Endpoint::parse(url).expect_err(name).to_string();
            assert!(error.contains(needle), "case {name}: {error}");
        }
    }

    #[test]
    fn responses_parse_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain), Ok((200, b"{}".to_vec())));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked), Ok((200, b"abcde".to_vec())));
        let missing = b"HTTP/1.1 404 Not Found\r\n\r\nno snapshot\n";
        assert_eq!(
            parse_response(missing),
            Ok((404, b"no snapshot\n".to_vec()))
        );
        for (name, raw) in [
            ("no end of headers", &b"HTTP/1.1 200 OK\r\n"[..]),
            ("not HTTP", b"SSH-2.0-OpenSSH\r\n\r\n"),
            (
                "truncated chunk",
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nff\r\nab",
            ),
        ] {
            assert!(parse_response(raw).is_err(), "case {name}");
        }
    }

    /// Serves `response` once on a loopback port; returns the endpoint.
    fn serve_once(response: &'static str) -> (Endpoint, thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("one connection");
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(response.as_bytes());
        });
        let endpoint = Endpoint::parse(&format!("http://{addr}")).expect("a valid URL");
        (endpoint, server)
    }

    #[test]
    fn fetch_reports_refusal_status_schema_and_version() {
        // A port that was just free: nothing listens, the connection is refused.
        let free = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port");
        let error = Endpoint::parse(&format!("http://{free}"))
            .expect("a valid URL")
            .fetch()
            .expect_err("nothing listens");
        assert!(
            matches!(error, FetchError::Refused { .. }),
            "expected a refusal, got {error}"
        );
        for (name, response, expected) in [
            (
                "404",
                "HTTP/1.1 404 Not Found\r\n\r\nno snapshot from this source\n",
                "answered 404: no snapshot from this source",
            ),
            (
                "newer schema",
                "HTTP/1.1 200 OK\r\n\r\n{\"version\": 2, \"everything\": \"else\"}",
                "serves snapshot version 2",
            ),
            (
                "not a snapshot",
                "HTTP/1.1 200 OK\r\n\r\n[1, 2]",
                "did not return a snapshot",
            ),
        ] {
            let (endpoint, server) = serve_once(response);
            let error = endpoint.fetch().expect_err(name).to_string();
            server.join().expect("the server thread ends");
            assert!(error.contains(expected), "case {name}: {error}");
        }
    }
}
