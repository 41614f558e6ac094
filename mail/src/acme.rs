//! Certificates by ACME (RFC 8555), with `instant-acme`: an account per
//! directory (its key sealed under the master key, in the database), one
//! certificate per name (the mail host, each verified tenant hostname), the
//! HTTP-01 answers kept in the database so that whichever API node the CA
//! reaches answers them, renewal 30 days before expiry, and a backoff that
//! grows with failures (longer when the CA says a rate limit was hit).
//!
//! `instant-acme` is used without its hyper-rustls client: its requests go
//! through [`Client`], a small HTTP/1.1 client on our rustls configuration
//! (the web PKI plus `delivery.extra_ca_file`, which is how tests trust
//! their local CA), so no second TLS stack and no HTTP/2 are built.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::{CertificateDer, ServerName};
use tenants::Store;
use tenants::store::IssuedCertificate;
use vault::at_rest::MasterKey;

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

#[derive(Clone, Debug)]
pub struct AcmeConfig {
    pub directory_url: String,
    /// `mailto:` addresses the CA writes to about expiry and problems.
    pub contact: Vec<String>,
    /// Trust anchors beside the web PKI (a local CA in tests).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// How long before expiry a certificate is renewed.
    pub renew_before: chrono::Duration,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        AcmeConfig {
            directory_url: LETS_ENCRYPT.into(),
            contact: Vec::new(),
            extra_roots: Vec::new(),
            renew_before: chrono::Duration::days(30),
        }
    }
}

pub struct Acme {
    store: Store,
    master: Arc<MasterKey>,
    config: AcmeConfig,
    tls: Arc<rustls::ClientConfig>,
}

/// What one run did.
#[derive(Debug, Default)]
pub struct Run {
    pub issued: Vec<String>,
    pub failed: Vec<(String, String)>,
}

const ACCOUNT_CONTEXT: &str = "acme-account";

impl Acme {
    pub fn new(store: Store, master: Arc<MasterKey>, config: AcmeConfig) -> Result<Acme, String> {
        let tls = crate::https::client_config(&config.extra_roots)?;
        Ok(Acme {
            store,
            master,
            config,
            tls,
        })
    }

    /// Orders what is due: certificates never issued, those within
    /// `renew_before` of expiry, those forced, and retries whose time came.
    pub async fn run_due(&self) -> Result<Run, String> {
        let now = Utc::now();
        let due = self
            .store
            .certificates_due(now)
            .await
            .map_err(|e| e.to_string())?;
        let mut run = Run::default();
        if due.is_empty() {
            return Ok(run);
        }
        let account = self.account().await?;
        for certificate in due {
            tracing::info!(certificate = %certificate.name, names = certificate.names.len(), "ordering a certificate");
            // The key is kept across renewals, so that a DANE record (3 1 1) stays true.
            let kept_key = match &certificate.key_sealed {
                Some(sealed) => self
                    .master
                    .open_secret(&crate::certs::key_context(&certificate.name), sealed)
                    .ok()
                    .and_then(|pem| String::from_utf8(pem).ok()),
                None => None,
            };
            match self.order(&account, &certificate.names, kept_key).await {
                Ok((chain_pem, key_pem)) => {
                    let facts = facts(&chain_pem)?;
                    let key_sealed = self
                        .master
                        .seal_secret(
                            &crate::certs::key_context(&certificate.name),
                            key_pem.as_bytes(),
                        )
                        .map_err(|e| e.to_string())?;
                    self.store
                        .certificate_issued(
                            &certificate.name,
                            IssuedCertificate {
                                chain_pem: &chain_pem,
                                key_sealed: &key_sealed,
                                issuer: &facts.issuer,
                                serial: &facts.serial,
                                not_after: facts.not_after,
                                renew_at: facts.not_after - self.config.renew_before,
                            },
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    tracing::info!(certificate = %certificate.name, serial = %facts.serial, not_after = %facts.not_after, "certificate issued");
                    run.issued.push(certificate.name);
                }
                Err(failure) => {
                    let retry_at = now + backoff(certificate.attempts, failure.rate_limited);
                    tracing::warn!(certificate = %certificate.name, error = %failure.message, %retry_at, "a certificate order failed");
                    self.store
                        .certificate_failed(&certificate.name, &failure.message, retry_at)
                        .await
                        .map_err(|e| e.to_string())?;
                    run.failed.push((certificate.name, failure.message));
                }
            }
        }
        Ok(run)
    }

    /// The account on this directory: created once, then restored.
    async fn account(&self) -> Result<Account, String> {
        let directory = &self.config.directory_url;
        if let Some(sealed) = self
            .store
            .acme_account(directory)
            .await
            .map_err(|e| e.to_string())?
        {
            let json = self
                .master
                .open_secret(ACCOUNT_CONTEXT, &sealed)
                .map_err(|e| e.to_string())?;
            let credentials: AccountCredentials =
                serde_json::from_slice(&json).map_err(|e| e.to_string())?;
            return Account::builder_with_http(Box::new(self.client()))
                .from_credentials(credentials)
                .await
                .map_err(|e| format!("the ACME account could not be restored: {e}"));
        }
        let contact: Vec<&str> = self.config.contact.iter().map(String::as_str).collect();
        let (account, credentials) = Account::builder_with_http(Box::new(self.client()))
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                directory.clone(),
                None,
            )
            .await
            .map_err(|e| format!("no ACME account on {directory}: {e}"))?;
        let json = serde_json::to_vec(&credentials).map_err(|e| e.to_string())?;
        let sealed = self
            .master
            .seal_secret(ACCOUNT_CONTEXT, &json)
            .map_err(|e| e.to_string())?;
        self.store
            .put_acme_account(directory, &sealed)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(%directory, "ACME account created");
        Ok(account)
    }

    fn client(&self) -> Client {
        Client {
            tls: self.tls.clone(),
        }
    }

    /// One order, HTTP-01: answers every authorization from the database,
    /// then finalizes with `key` (PEM), or a new key when there is none.
    /// Answers the chain and the key (PEM).
    async fn order(
        &self,
        account: &Account,
        names: &[String],
        key: Option<String>,
    ) -> Result<(String, String), Failure> {
        let identifiers: Vec<Identifier> =
            names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(Failure::plain(format!("an authorization is {other:?}"))),
            }
            let mut challenge = authorization
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| Failure::plain("the CA offers no HTTP-01 challenge".into()))?;
            let answer = challenge.key_authorization();
            self.store
                .put_acme_challenge(
                    &challenge.token,
                    answer.as_str(),
                    Utc::now() + chrono::Duration::hours(1),
                )
                .await
                .map_err(|e| Failure::plain(e.to_string()))?;
            challenge.set_ready().await?;
        }
        let retries = RetryPolicy::new().timeout(std::time::Duration::from_secs(90));
        let status = order.poll_ready(&retries).await?;
        if status != OrderStatus::Ready {
            let detail = order
                .state()
                .error
                .as_ref()
                .and_then(|p| p.detail.clone())
                .unwrap_or_default();
            return Err(Failure::plain(format!("the order is {status:?}: {detail}")));
        }
        let key_pem = match key {
            Some(pem) => {
                let kept =
                    rcgen::KeyPair::from_pem(&pem).map_err(|e| Failure::plain(e.to_string()))?;
                let mut params = rcgen::CertificateParams::new(names.to_vec())
                    .map_err(|e| Failure::plain(e.to_string()))?;
                params.distinguished_name = rcgen::DistinguishedName::new();
                let csr = params
                    .serialize_request(&kept)
                    .map_err(|e| Failure::plain(e.to_string()))?;
                order.finalize_csr(csr.der()).await?;
                pem
            }
            None => order.finalize().await?,
        };
        let chain_pem = order.poll_certificate(&retries).await?;
        Ok((chain_pem, key_pem))
    }
}

/// Why an order failed, and whether the CA said a rate limit was hit.
struct Failure {
    message: String,
    rate_limited: bool,
}

impl Failure {
    fn plain(message: String) -> Failure {
        Failure {
            message,
            rate_limited: false,
        }
    }
}

impl From<instant_acme::Error> for Failure {
    fn from(e: instant_acme::Error) -> Failure {
        let rate_limited = matches!(&e, instant_acme::Error::Api(p)
            if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:rateLimited"));
        Failure {
            message: e.to_string(),
            rate_limited,
        }
    }
}

/// The wait before retrying after `attempts` failures in a row: 5 minutes,
/// doubling up to a day; at least 3 hours after a rate limit (Let's
/// Encrypt counts failed validations per account and hostname per hour).
pub fn backoff(attempts: i64, rate_limited: bool) -> chrono::Duration {
    let minutes = 5i64.saturating_mul(1 << attempts.clamp(0, 9)).min(24 * 60);
    let wait = chrono::Duration::minutes(minutes);
    if rate_limited {
        wait.max(chrono::Duration::hours(3))
    } else {
        wait
    }
}

/// What an operator sees of a chain: its leaf's issuer, serial and expiry.
pub struct Facts {
    pub issuer: String,
    pub serial: String,
    pub not_after: DateTime<Utc>,
}

pub fn facts(chain_pem: &str) -> Result<Facts, String> {
    use rustls::pki_types::pem::PemObject;
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .ok_or("the chain holds no certificate")?
        .map_err(|e| e.to_string())?;
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).map_err(|e| e.to_string())?;
    let not_after = DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
        .ok_or("the certificate's expiry is out of range")?;
    Ok(Facts {
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string().replace(':', ""),
        not_after,
    })
}

/// The DANE record (RFC 7671, `3 1 1`: the leaf's public key, SHA-256) of
/// a chain's leaf, as TLSA's presentation format.
pub fn tlsa(chain_pem: &str) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    use sha2::Digest;
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .ok_or("the chain holds no certificate")?
        .map_err(|e| e.to_string())?;
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).map_err(|e| e.to_string())?;
    let digest = sha2::Sha256::digest(cert.public_key().raw);
    Ok(format!(
        "3 1 1 {}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ))
}

/// `instant-acme`'s HTTP client: one HTTP/1.1 connection per request, over
/// our rustls configuration.
struct Client {
    tls: Arc<rustls::ClientConfig>,
}

type Answer = Result<BytesResponse, instant_acme::Error>;

impl HttpClient for Client {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Answer> + Send>> {
        let tls = self.tls.clone();
        Box::pin(async move {
            send(tls, req)
                .await
                .map_err(|e| instant_acme::Error::Other(e.into()))
        })
    }
}

async fn send(
    tls: Arc<rustls::ClientConfig>,
    mut req: http::Request<BodyWrapper<Bytes>>,
) -> Result<BytesResponse, String> {
    let uri = req.uri().clone();
    let host = uri.host().ok_or("a URL without a host")?.to_owned();
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        other => return Err(format!("unsupported scheme {other:?}")),
    };
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| format!("{host}:{port} did not answer"))?
    .map_err(|e| format!("{host}:{port}: {e}"))?;
    // The request line carries the path only; the host goes in Host.
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    *req.uri_mut() = path
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or(host.clone());
    req.headers_mut().insert(
        http::header::HOST,
        authority
            .parse()
            .map_err(|e: http::header::InvalidHeaderValue| e.to_string())?,
    );
    let response = if https {
        let name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))?;
        exchange(stream, req).await?
    } else {
        exchange(tcp, req).await?
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(BytesResponse {
        parts,
        body: Box::new(body),
    })
}

async fn exchange<S>(
    stream: S,
    req: http::Request<BodyWrapper<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    sender.send_request(req).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_day_and_waits_longer_after_a_rate_limit() {
        assert_eq!(backoff(0, false), chrono::Duration::minutes(5));
        assert_eq!(backoff(1, false), chrono::Duration::minutes(10));
        assert_eq!(backoff(4, false), chrono::Duration::minutes(80));
        assert_eq!(backoff(30, false), chrono::Duration::hours(24));
        assert_eq!(backoff(0, true), chrono::Duration::hours(3));
        assert_eq!(backoff(9, true), chrono::Duration::hours(24));
    }

    #[test]
    fn facts_read_the_leaf() {
        let ca = crate::https_server::TestCa::new();
        let issued = ca.issue(&["mail.example.test"]);
        let facts = facts(&format!("{}{}", issued.cert_pem, ca.root_pem())).unwrap();
        assert!(facts.issuer.contains("Caliop test CA"), "{}", facts.issuer);
        assert!(!facts.serial.is_empty() && facts.serial.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(facts.not_after > Utc::now());
    }
}
