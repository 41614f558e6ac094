//! HTTPS GETs to mail domains, for what the mail world publishes over the
//! web: MTA-STS policies (RFC 8461) and Web Key Directory keys. Host names
//! resolve through Caliop's own DNS resolver (like every other mail
//! lookup), certificates are checked against the web PKI (plus any extra
//! trust anchors configured, for private PKIs and tests), and answers are
//! size-limited. HTTP/1.1 by hyper over tokio-rustls.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::dns::{Dns, Kind};

/// Fetches small documents over HTTPS.
#[derive(Clone)]
pub struct Https {
    dns: Dns,
    /// 443, except in tests.
    port: u16,
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
    /// See [`crate::egress`].
    allow_private_networks: bool,
}

impl std::fmt::Debug for Https {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Https").field("port", &self.port).finish()
    }
}

impl Https {
    /// The web PKI's roots plus `extra_roots`.
    pub fn new(
        dns: Dns,
        port: u16,
        extra_roots: &[CertificateDer<'static>],
        timeout: Duration,
    ) -> Result<Https, String> {
        Ok(Https {
            dns,
            port,
            tls: tokio_rustls::TlsConnector::from(client_config(extra_roots)?),
            timeout,
            allow_private_networks: false,
        })
    }

    /// Lets fetches reach loopback and private addresses (tests, private deployments).
    pub fn allowing_private_networks(mut self, allow: bool) -> Https {
        self.allow_private_networks = allow;
        self
    }

    /// `https://{host}{path}`: the body of a 200, `None` for any other
    /// status, `Err` when the host cannot be reached or its certificate is
    /// not valid for it.
    pub async fn get(
        &self,
        host: &str,
        path_and_query: &str,
        max_bytes: usize,
    ) -> Result<Option<Vec<u8>>, String> {
        tokio::time::timeout(self.timeout, self.fetch(host, path_and_query, max_bytes))
            .await
            .map_err(|_| {
                format!(
                    "https://{host}{path_and_query} did not answer within {} s",
                    self.timeout.as_secs()
                )
            })?
    }

    async fn fetch(
        &self,
        host: &str,
        path_and_query: &str,
        max_bytes: usize,
    ) -> Result<Option<Vec<u8>>, String> {
        let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("`{host}`: {e}"))?;
        let mut addresses = Vec::new();
        for kind in [Kind::A, Kind::Aaaa] {
            let found = self
                .dns
                .lookup(host, kind)
                .await
                .map_err(|e| e.to_string())?;
            addresses.extend(
                found
                    .iter()
                    .filter_map(|a| a.parse::<std::net::IpAddr>().ok()),
            );
        }
        if addresses.is_empty() {
            return Err(format!("{host} has no address"));
        }
        // Only public addresses, checked on the address connected to.
        let Some(ip) = addresses
            .iter()
            .find(|ip| crate::egress::may_connect(**ip, self.allow_private_networks))
        else {
            return Err(format!(
                "{host} resolves only to private or loopback addresses, which Caliop does not connect to"
            ));
        };
        let tcp = tokio::net::TcpStream::connect((*ip, self.port))
            .await
            .map_err(|e| format!("{host}: {e}"))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| format!("HTTP with {host}: {e}"))?;
        tokio::spawn(connection);
        let request = hyper::Request::get(path_and_query)
            .header(hyper::header::HOST, host)
            .header(hyper::header::USER_AGENT, "Caliop")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP with {host}: {e}"))?;
        if response.status() != hyper::StatusCode::OK {
            return Ok(None);
        }
        let body = Limited::new(response.into_body(), max_bytes)
            .collect()
            .await
            .map_err(|e| format!("https://{host}{path_and_query}: {e}"))?;
        Ok(Some(body.to_bytes().to_vec()))
    }
}

/// A TLS client configuration trusting the web PKI and `extra_roots`.
pub fn client_config(
    extra_roots: &[CertificateDer<'static>],
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for root in extra_roots {
        roots
            .add(root.clone())
            .map_err(|e| format!("an extra trust anchor is unusable: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Reads PEM certificates (extra trust anchors) from a file.
pub fn load_roots(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))
}
