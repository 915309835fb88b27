//! Making the metrics endpoint safe to expose: the exporter-toolkit web config file
//! (`--web.config.file`: TLS, mTLS, basic auth, response headers), the cap on requests in
//! flight (`--web.max-requests`), the endpoint's own counters and the open-file limit.
//!
//! Everything is read and checked once at start; a bad file stops `portmon run` before it
//! attaches anything, with a message naming the key, the file and the fix.

pub mod auth;
pub mod config;
pub mod rlimit;
pub mod stats;
pub mod tls;

use std::{path::Path, sync::Arc};

use hyper::header::{HeaderName, HeaderValue};

use self::{
    auth::BasicAuth,
    config::{WebConfigError, WebConfigFile},
};

/// `--web.max-requests` by default: node_exporter's.
pub const DEFAULT_MAX_REQUESTS: usize = 40;

/// What the endpoint enforces beyond plain HTTP.
#[derive(Default)]
pub struct Security {
    /// TLS, when `tls_server_config` is set.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Basic auth, when `basic_auth_users` is not empty.
    pub auth: Option<Arc<BasicAuth>>,
    /// Added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Security")
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth)
            .field("headers", &self.headers)
            .finish()
    }
}

impl Security {
    /// Reads, checks and loads `path` (certificates, keys, CAs included).
    ///
    /// # Errors
    /// Any refusal, naming the file, the key and the fix.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let file = WebConfigFile::read(path)?;
        file.check().map_err(|problem| problem.in_file(path))?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        let tls = match &file.tls_server_config {
            Some(tls) => {
                let config =
                    tls::server_config(tls, base).map_err(|problem| problem.in_file(path))?;
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
            }
            None => None,
        };
        let mut headers = Vec::new();
        for (name, value) in &file.http_server_config.headers {
            if value.is_empty() {
                continue;
            }
            // Both were checked by `WebConfigFile::check`; a failure here is a bug, reported
            // as a refusal rather than a panic.
            let parsed = HeaderName::from_bytes(name.as_bytes())
                .ok()
                .zip(HeaderValue::from_str(value).ok());
            let Some(header) = parsed else {
                return Err(config::KeyProblem::new(
                    format!("http_server_config.headers.{name}"),
                    "not a valid header",
                )
                .in_file(path));
            };
            headers.push(header);
        }
        let auth = BasicAuth::new(file.basic_auth_users)
            .map_err(|error| {
                config::KeyProblem::new("basic_auth_users", error.to_string()).in_file(path)
            })?
            .map(Arc::new);
        Ok(Self { tls, auth, headers })
    }

    /// `https` or `http`, for log lines.
    #[must_use]
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// A one-line summary for the start-up log.
    #[must_use]
    pub fn describe(&self) -> String {
        format!(
            "{}; basic auth {}; {} extra response header(s)",
            if self.tls.is_some() {
                "TLS"
            } else {
                "plain HTTP"
            },
            if self.auth.is_some() { "on" } else { "off" },
            self.headers.len()
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_endpoint_binds_to_loopback_by_default() {
        assert!(
            crate::config::defaults::LISTEN.ip().is_loopback(),
            "expected a loopback default, got {}",
            crate::config::defaults::LISTEN
        );
    }
}
