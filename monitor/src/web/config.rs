//! The web configuration file (`--web.config.file`) in Prometheus exporter-toolkit's YAML
//! format: `tls_server_config`, `http_server_config.headers` and `basic_auth_users`.
//!
//! Every key of the format is known here. The ones portmon cannot honour
//! (`client_allowed_sans`, `cipher_suites`, `curve_preferences`, `http2: true`, `rate_limit`,
//! the client-auth policies that accept unverified certificates, TLS below 1.2) are errors
//! that name the key and the fix, never silently ignored: a file written for node_exporter
//! must not quietly give less protection here. Unknown keys are errors too.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;

/// Why a web config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The file could not be read.
    #[error("reading the web config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Not YAML of the expected shape (an unknown key, a wrong type).
    #[error("web config file {}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the key and the line.
        message: String,
    },
    /// A key whose value cannot be used, with the fix.
    #[error("web config file {}: `{key}`: {problem}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// The key, dotted (`tls_server_config.min_version`).
        key: String,
        /// What is wrong and what to do.
        problem: String,
    },
}

/// A problem with one key, before the file's path is attached.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyProblem {
    /// The key, dotted.
    pub key: String,
    /// What is wrong and what to do.
    pub problem: String,
}

impl KeyProblem {
    pub(crate) fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
        }
    }

    pub(crate) fn in_file(self, path: &Path) -> WebConfigError {
        WebConfigError::Key {
            path: path.to_owned(),
            key: self.key,
            problem: self.problem,
        }
    }
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfigFile {
    /// TLS; absent means plain HTTP.
    pub tls_server_config: Option<TlsServerConfig>,
    /// Response headers (and `http2`, which must be false).
    pub http_server_config: HttpServerConfig,
    /// User name to bcrypt hash; empty means no authentication.
    pub basic_auth_users: BTreeMap<String, String>,
    /// Not supported: refused with a pointer to `--web.max-requests`.
    pub rate_limit: Option<serde_norway::Value>,
}

/// `tls_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsServerConfig {
    /// Inline PEM certificate chain (instead of `cert_file`).
    pub cert: Option<String>,
    /// Inline PEM private key (instead of `key_file`).
    pub key: Option<String>,
    /// Inline PEM client CA (instead of `client_ca_file`).
    pub client_ca: Option<String>,
    /// PEM certificate chain, the server's first.
    pub cert_file: Option<PathBuf>,
    /// PEM private key.
    pub key_file: Option<PathBuf>,
    /// Client certificate policy.
    pub client_auth_type: ClientAuthType,
    /// PEM CA certificates client certificates must chain to.
    pub client_ca_file: Option<PathBuf>,
    /// Not supported.
    pub client_allowed_sans: Option<Vec<String>>,
    /// Lowest TLS version; below TLS12 is refused.
    pub min_version: Option<TlsVersion>,
    /// Highest TLS version.
    pub max_version: Option<TlsVersion>,
    /// Not supported beyond an empty list.
    pub cipher_suites: Option<Vec<String>>,
    /// Whether the server's cipher suite order wins (default true, as in exporter-toolkit).
    pub prefer_server_cipher_suites: Option<bool>,
    /// Not supported beyond an empty list.
    pub curve_preferences: Option<Vec<String>>,
}

/// `client_auth_type`: Go's `tls.ClientAuthType` names.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ClientAuthType {
    /// No client certificate asked for.
    #[default]
    NoClientCert,
    /// Asked for, not verified: refused (rustls verifies what it accepts).
    RequestClientCert,
    /// Required, not verified: refused (rustls verifies what it accepts).
    RequireAnyClientCert,
    /// Verified against `client_ca_file` when the client sends one.
    VerifyClientCertIfGiven,
    /// Required and verified against `client_ca_file` (mTLS).
    RequireAndVerifyClientCert,
}

/// `min_version` / `max_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.0: refused.
    TLS10,
    /// TLS 1.1: refused.
    TLS11,
    /// TLS 1.2.
    TLS12,
    /// TLS 1.3.
    TLS13,
}

/// `http_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpServerConfig {
    /// portmon speaks HTTP/1.1 only, so only `false` is accepted.
    pub http2: Option<bool>,
    /// Headers added to every response.
    pub headers: BTreeMap<String, String>,
}

/// The response headers exporter-toolkit allows, with the values it accepts (`None`: any).
const HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Content-Security-Policy", None),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-XSS-Protection", None),
    ("Strict-Transport-Security", None),
];

impl WebConfigFile {
    /// Reads and parses `path`; keys are checked by [`WebConfigFile::check`].
    ///
    /// # Errors
    /// When the file cannot be read or is not the expected YAML.
    pub fn read(path: &Path) -> Result<Self, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| WebConfigError::Syntax {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses YAML text; an empty document is the default (plain HTTP, no auth).
    ///
    /// # Errors
    /// The parser's message, which names the unknown or mistyped key and its line.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_norway::from_str(text).map_err(|error| error.to_string())
    }

    /// Refuses what portmon cannot honour, naming the key and the fix.
    ///
    /// # Errors
    /// The first key refused.
    pub fn check(&self) -> Result<(), KeyProblem> {
        if self.rate_limit.is_some() {
            return Err(KeyProblem::new(
                "rate_limit",
                "not supported by portmon; remove it and cap concurrent requests with \
                 --web.max-requests instead",
            ));
        }
        if self.http_server_config.http2 == Some(true) {
            return Err(KeyProblem::new(
                "http_server_config.http2",
                "portmon serves HTTP/1.1 only; set it to false or remove it",
            ));
        }
        for (name, value) in &self.http_server_config.headers {
            check_header(name, value)?;
        }
        for (user, hash) in &self.basic_auth_users {
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(KeyProblem::new(
                    format!("basic_auth_users.{user}"),
                    "not a bcrypt hash; make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`",
                ));
            }
        }
        if let Some(tls) = &self.tls_server_config {
            tls.check()?;
        }
        Ok(())
    }
}

fn check_header(name: &str, value: &str) -> Result<(), KeyProblem> {
    let key = || format!("http_server_config.headers.{name}");
    let Some((_, allowed)) = HEADERS
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
    else {
        let names: Vec<&str> = HEADERS.iter().map(|(known, _)| *known).collect();
        return Err(KeyProblem::new(
            key(),
            format!(
                "not a header this file may set; use one of {}",
                names.join(", ")
            ),
        ));
    };
    if let Some(allowed) = allowed
        && !value.is_empty()
        && !allowed.iter().any(|ok| ok.eq_ignore_ascii_case(value))
    {
        return Err(KeyProblem::new(
            key(),
            format!(
                "{value:?} is not accepted; use one of {}",
                allowed.join(", ")
            ),
        ));
    }
    if hyper::header::HeaderValue::from_str(value).is_err() {
        return Err(KeyProblem::new(
            key(),
            "not a valid header value (control characters?)",
        ));
    }
    Ok(())
}

impl TlsServerConfig {
    fn check(&self) -> Result<(), KeyProblem> {
        const KEY: &str = "tls_server_config";
        let below = |version: Option<TlsVersion>| {
            version.is_some_and(|version| version < TlsVersion::TLS12)
        };
        if below(self.min_version) {
            return Err(KeyProblem::new(
                format!("{KEY}.min_version"),
                "TLS 1.0 and 1.1 are refused (broken, and disabled by every current client); \
                 use TLS12 or TLS13",
            ));
        }
        if below(self.max_version) {
            return Err(KeyProblem::new(
                format!("{KEY}.max_version"),
                "TLS 1.0 and 1.1 are refused; use TLS12 or TLS13",
            ));
        }
        if let (Some(min), Some(max)) = (self.min_version, self.max_version)
            && min > max
        {
            return Err(KeyProblem::new(
                format!("{KEY}.max_version"),
                "lower than min_version; raise it or lower min_version",
            ));
        }
        if self.client_allowed_sans.is_some() {
            return Err(KeyProblem::new(
                format!("{KEY}.client_allowed_sans"),
                "not supported by portmon; remove it and give each allowed client a \
                 certificate from a CA of its own in client_ca_file",
            ));
        }
        if self
            .cipher_suites
            .as_ref()
            .is_some_and(|list| !list.is_empty())
        {
            return Err(KeyProblem::new(
                format!("{KEY}.cipher_suites"),
                "not supported by portmon, which offers only rustls' safe defaults \
                 (AEAD suites with forward secrecy); remove it",
            ));
        }
        if self
            .curve_preferences
            .as_ref()
            .is_some_and(|list| !list.is_empty())
        {
            return Err(KeyProblem::new(
                format!("{KEY}.curve_preferences"),
                "not supported by portmon (rustls picks X25519, P-256 or P-384); remove it",
            ));
        }
        match self.client_auth_type {
            ClientAuthType::RequestClientCert | ClientAuthType::RequireAnyClientCert => {
                return Err(KeyProblem::new(
                    format!("{KEY}.client_auth_type"),
                    "accepting client certificates without verifying them is not supported; \
                     use RequireAndVerifyClientCert (mTLS) or VerifyClientCertIfGiven with \
                     client_ca_file",
                ));
            }
            ClientAuthType::NoClientCert => {
                if self.client_ca_file.is_some() || self.client_ca.is_some() {
                    return Err(KeyProblem::new(
                        format!("{KEY}.client_auth_type"),
                        "a client CA is configured but client_auth_type is NoClientCert; set \
                         it to RequireAndVerifyClientCert, or remove the client CA",
                    ));
                }
            }
            ClientAuthType::VerifyClientCertIfGiven
            | ClientAuthType::RequireAndVerifyClientCert => {
                if self.client_ca_file.is_none() && self.client_ca.is_none() {
                    return Err(KeyProblem::new(
                        format!("{KEY}.client_ca_file"),
                        "needed to verify client certificates; give the PEM file of the CA \
                         that signs them",
                    ));
                }
            }
        }
        one_of(KEY, "cert", self.cert.is_some(), self.cert_file.is_some())?;
        one_of(KEY, "key", self.key.is_some(), self.key_file.is_some())?;
        if self.client_ca.is_some() && self.client_ca_file.is_some() {
            return Err(KeyProblem::new(
                format!("{KEY}.client_ca"),
                "give client_ca or client_ca_file, not both",
            ));
        }
        Ok(())
    }
}

/// Exactly one of `inline` and `<inline>_file`.
fn one_of(section: &str, inline: &str, has_inline: bool, has_file: bool) -> Result<(), KeyProblem> {
    match (has_inline, has_file) {
        (true, true) => Err(KeyProblem::new(
            format!("{section}.{inline}"),
            format!("give {inline} or {inline}_file, not both"),
        )),
        (false, false) => Err(KeyProblem::new(
            format!("{section}.{inline}_file"),
            format!("missing: TLS needs the server's {inline}; give {inline}_file (PEM)"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests panic with what they expected")]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_plain_http_without_auth() {
        let config = WebConfigFile::parse("").expect("empty is valid");
        assert!(config.tls_server_config.is_none());
        assert!(config.basic_auth_users.is_empty());
        assert_eq!(config.check(), Ok(()));
    }

    #[test]
    fn the_exporter_toolkit_keys_are_read() {
        let hash = bcrypt::hash("secret", 4).expect("bcrypt hashes");
        let config = WebConfigFile::parse(&format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  \
             min_version: TLS13\n  max_version: TLS13\n  prefer_server_cipher_suites: false\n\
             http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n\
             basic_auth_users:\n  alice: \"{hash}\"\n"
        ))
        .expect("a valid file");
        assert_eq!(config.check(), Ok(()), "every key is usable");
        let tls = config.tls_server_config.as_ref().expect("TLS configured");
        assert_eq!(
            tls.client_auth_type,
            ClientAuthType::RequireAndVerifyClientCert
        );
        assert_eq!(tls.min_version, Some(TlsVersion::TLS13));
        assert_eq!(tls.cert_file.as_deref(), Some(Path::new("server.pem")));
        assert_eq!(
            config
                .http_server_config
                .headers
                .get("X-Frame-Options")
                .map(String::as_str),
            Some("deny")
        );
    }

    #[test]
    #[expect(clippy::too_many_lines, reason = "one table, one row per refusal")]
    fn refusals_name_the_key_and_the_fix() {
        const TLS: &str = "tls_server_config:\n  cert_file: s.pem\n  key_file: s.key\n";
        // (case, file, key named, words of the fix)
        let cases: &[(&str, String, &str, &str)] = &[
            (
                "TLS 1.1 minimum",
                format!("{TLS}  min_version: TLS11\n"),
                "tls_server_config.min_version",
                "use TLS12 or TLS13",
            ),
            (
                "TLS 1.0 maximum",
                format!("{TLS}  max_version: TLS10\n"),
                "tls_server_config.max_version",
                "TLS12",
            ),
            (
                "max below min",
                format!("{TLS}  min_version: TLS13\n  max_version: TLS12\n"),
                "tls_server_config.max_version",
                "lower than min_version",
            ),
            (
                "unverified client certificates",
                format!("{TLS}  client_auth_type: RequireAnyClientCert\n"),
                "tls_server_config.client_auth_type",
                "RequireAndVerifyClientCert",
            ),
            (
                "mTLS without a CA",
                format!("{TLS}  client_auth_type: RequireAndVerifyClientCert\n"),
                "tls_server_config.client_ca_file",
                "PEM file of the CA",
            ),
            (
                "a CA without a policy",
                format!("{TLS}  client_ca_file: ca.pem\n"),
                "tls_server_config.client_auth_type",
                "RequireAndVerifyClientCert",
            ),
            (
                "SAN allow-list",
                format!("{TLS}  client_allowed_sans: [a]\n"),
                "tls_server_config.client_allowed_sans",
                "remove it",
            ),
            (
                "cipher suites",
                format!("{TLS}  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"),
                "tls_server_config.cipher_suites",
                "remove it",
            ),
            (
                "curves",
                format!("{TLS}  curve_preferences: [X25519]\n"),
                "tls_server_config.curve_preferences",
                "remove it",
            ),
            (
                "no key",
                "tls_server_config:\n  cert_file: s.pem\n".to_owned(),
                "tls_server_config.key_file",
                "give key_file",
            ),
            (
                "cert twice",
                format!("{TLS}  cert: \"x\"\n"),
                "tls_server_config.cert",
                "not both",
            ),
            (
                "HTTP/2",
                "http_server_config:\n  http2: true\n".to_owned(),
                "http_server_config.http2",
                "set it to false",
            ),
            (
                "unknown header",
                "http_server_config:\n  headers:\n    X-Powered-By: me\n".to_owned(),
                "http_server_config.headers.X-Powered-By",
                "Content-Security-Policy",
            ),
            (
                "bad X-Frame-Options",
                "http_server_config:\n  headers:\n    X-Frame-Options: allow\n".to_owned(),
                "http_server_config.headers.X-Frame-Options",
                "deny, sameorigin",
            ),
            (
                "not a bcrypt hash",
                "basic_auth_users:\n  alice: secret\n".to_owned(),
                "basic_auth_users.alice",
                "htpasswd -nBC",
            ),
            (
                "rate limit",
                "rate_limit:\n  interval: 1s\n  burst: 5\n".to_owned(),
                "rate_limit",
                "--web.max-requests",
            ),
        ];
        for (case, file, key, fix) in cases {
            let config = WebConfigFile::parse(file)
                .unwrap_or_else(|error| panic!("{case}: expected to parse, got {error}"));
            let problem = config
                .check()
                .expect_err(&format!("{case}: expected a refusal"));
            assert_eq!(problem.key, *key, "{case}: the key named");
            assert!(
                problem.problem.contains(fix),
                "{case}: expected {fix:?} in {:?}",
                problem.problem
            );
        }
    }

    #[test]
    fn unknown_keys_are_syntax_errors_naming_the_key() {
        // (case, file, words the message must contain)
        let cases: &[(&str, &str, &str)] = &[
            ("top level", "basic_auth_user:\n  a: b\n", "basic_auth_user"),
            (
                "in tls_server_config",
                "tls_server_config:\n  certfile: a.pem\n",
                "certfile",
            ),
            (
                "unknown client auth type",
                "tls_server_config:\n  client_auth_type: Mutual\n",
                "Mutual",
            ),
            (
                "unknown version",
                "tls_server_config:\n  min_version: TLS14\n",
                "TLS14",
            ),
        ];
        for (case, file, needle) in cases {
            let message = WebConfigFile::parse(file)
                .map(|_| ())
                .expect_err(&format!("{case}: expected a syntax error"));
            assert!(
                message.contains(needle),
                "{case}: expected {needle:?} in {message:?}"
            );
        }
    }
}
