//! The rustls server configuration from `tls_server_config`: certificates and keys read
//! once at start (a bad file names the file and the problem), TLS 1.2 at least, client
//! certificates verified against the configured CA.
//!
//! The crypto provider is rustls' `ring`, not aws-lc-rs: `cargo xtask dist` builds a static
//! musl binary, and ring builds there with no C toolchain tricks.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    RootCertStore, ServerConfig, SupportedProtocolVersion,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::WebPkiClientVerifier,
};

use super::config::{ClientAuthType, KeyProblem, TlsServerConfig, TlsVersion};

const KEY: &str = "tls_server_config";

/// Builds the server configuration; relative paths are taken from `base` (the directory
/// of the web config file, as exporter-toolkit does).
///
/// # Errors
/// A file that cannot be read or holds no usable PEM, a key that does not match the
/// certificate, a CA that cannot be used; each names the key and the file.
pub fn server_config(tls: &TlsServerConfig, base: &Path) -> Result<ServerConfig, KeyProblem> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = certificates(
        &pem_source("cert", tls.cert.as_deref(), tls.cert_file.as_deref(), base)?,
        "certificate",
    )?;
    let key = private_key(&pem_source(
        "key",
        tls.key.as_deref(),
        tls.key_file.as_deref(),
        base,
    )?)?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions(tls.min_version, tls.max_version))
        .map_err(|error| KeyProblem::new(format!("{KEY}.min_version"), error.to_string()))?;
    let builder = match tls.client_auth_type {
        ClientAuthType::NoClientCert
        | ClientAuthType::RequestClientCert
        | ClientAuthType::RequireAnyClientCert => builder.with_no_client_auth(),
        ClientAuthType::VerifyClientCertIfGiven | ClientAuthType::RequireAndVerifyClientCert => {
            let source = pem_source(
                "client_ca",
                tls.client_ca.as_deref(),
                tls.client_ca_file.as_deref(),
                base,
            )?;
            let mut roots = RootCertStore::empty();
            for cert in certificates(&source, "CA certificate")? {
                roots
                    .add(cert)
                    .map_err(|error| source.problem(format!("unusable CA certificate: {error}")))?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            let verifier = if tls.client_auth_type == ClientAuthType::VerifyClientCertIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|error| {
                source.problem(format!("cannot verify clients with it: {error}"))
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let key_source = if tls.key.is_some() {
        "key (inline)".to_owned()
    } else {
        tls.key_file
            .as_deref()
            .map(|path| base.join(path).display().to_string())
            .unwrap_or_default()
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|error| {
        KeyProblem::new(
            format!("{KEY}.key_file"),
            format!(
                "{key_source}: cannot be used with the certificate ({error}); give the key \
                 the certificate was made for"
            ),
        )
    })?;
    config.ignore_client_order = tls.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The versions from `min..=max` (defaults TLS12 and TLS13); the configuration check has
/// already refused anything below TLS 1.2.
fn versions(
    min: Option<TlsVersion>,
    max: Option<TlsVersion>,
) -> &'static [&'static SupportedProtocolVersion] {
    static BOTH: [&SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    static TLS13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    static TLS12: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
    match (
        min.unwrap_or(TlsVersion::TLS12),
        max.unwrap_or(TlsVersion::TLS13),
    ) {
        (TlsVersion::TLS13, _) => &TLS13,
        (_, TlsVersion::TLS13) => &BOTH,
        _ => &TLS12,
    }
}

/// Where one PEM item comes from, and its bytes.
struct PemSource {
    key: String,
    label: String,
    bytes: Vec<u8>,
}

impl PemSource {
    fn problem(&self, problem: impl std::fmt::Display) -> KeyProblem {
        KeyProblem::new(self.key.clone(), format!("{}: {problem}", self.label))
    }
}

/// Reads `<name>_file` (relative to `base`) or takes the inline `<name>`.
fn pem_source(
    name: &str,
    inline: Option<&str>,
    file: Option<&Path>,
    base: &Path,
) -> Result<PemSource, KeyProblem> {
    if let Some(text) = inline {
        return Ok(PemSource {
            key: format!("{KEY}.{name}"),
            label: format!("{name} (inline)"),
            bytes: text.as_bytes().to_vec(),
        });
    }
    let key = format!("{KEY}.{name}_file");
    let Some(file) = file else {
        return Err(KeyProblem::new(key, "missing"));
    };
    let path: PathBuf = base.join(file);
    let bytes = std::fs::read(&path).map_err(|error| {
        KeyProblem::new(
            key.clone(),
            format!(
                "reading {}: {error}; check the path (relative paths start at the web \
                 config file's directory) and that portmon may read it",
                path.display()
            ),
        )
    })?;
    Ok(PemSource {
        key,
        label: path.display().to_string(),
        bytes,
    })
}

fn certificates(
    source: &PemSource,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, KeyProblem> {
    let certs = CertificateDer::pem_slice_iter(&source.bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| source.problem(format!("not a PEM {what}: {error}")))?;
    if certs.is_empty() {
        return Err(source.problem(format!(
            "no PEM {what} in it (expected -----BEGIN CERTIFICATE-----)"
        )));
    }
    Ok(certs)
}

fn private_key(source: &PemSource) -> Result<PrivateKeyDer<'static>, KeyProblem> {
    PrivateKeyDer::from_pem_slice(&source.bytes).map_err(|error| {
        source.problem(format!(
            "no PEM private key in it ({error}); expected PKCS#8, PKCS#1 or SEC1"
        ))
    })
}
