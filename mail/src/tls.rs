//! TLS for STARTTLS: a certificate and key from files, or a self-signed one
//! generated once into the data directory for the embedded default.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// A certificate chain and its key from PEM files, as rustls serves them.
pub fn certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(cert, e))?;
    if certs.is_empty() {
        return Err(file_error(cert, "no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, e))?;
    certified(certs, key)
}

/// A chain and key as rustls serves them.
pub fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// A rustls server configuration from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let key = certified_key(cert, key)?;
    let config = builder()?.with_cert_resolver(Arc::new(Fixed(key)));
    Ok(Arc::new(config))
}

/// One certificate for every name.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A server configuration waiting for its certificates.
pub fn builder()
-> Result<rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth())
}

/// `dir/smtp-cert.pem` and `dir/smtp-key.pem`, self-signed for `hostname`,
/// created on first use. Good for STARTTLS between servers, which encrypt
/// opportunistically without checking the certificate; publish a real one
/// for clients.
pub fn self_signed(dir: &Path, hostname: &str) -> Result<Arc<ServerConfig>, TlsError> {
    let (cert, key) = self_signed_files(dir, hostname)?;
    server_config(&cert, &key)
}

/// The self-signed pair of [`self_signed`], as rustls serves it.
pub fn self_signed_key(dir: &Path, hostname: &str) -> Result<Arc<CertifiedKey>, TlsError> {
    let (cert, key) = self_signed_files(dir, hostname)?;
    certified_key(&cert, &key)
}

fn self_signed_files(
    dir: &Path,
    hostname: &str,
) -> Result<(std::path::PathBuf, std::path::PathBuf), TlsError> {
    let cert = dir.join("smtp-cert.pem");
    let key = dir.join("smtp-key.pem");
    if !cert.exists() || !key.exists() {
        std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
        let generated =
            rcgen::generate_simple_self_signed(vec![hostname.to_owned(), "localhost".to_owned()])
                .map_err(|e| TlsError::Config(e.to_string()))?;
        std::fs::write(&cert, generated.cert.pem()).map_err(|e| file_error(&cert, e))?;
        write_private(&key, generated.signing_key.serialize_pem().as_bytes())
            .map_err(|e| file_error(&key, e))?;
    }
    Ok((cert, key))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}
