//! For tests: a private certificate authority, and an HTTPS server on
//! loopback that serves fixed documents per host and path (MTA-STS
//! policies, WKD keys) with certificates from that authority. Caliop is
//! told to trust the authority, and reaches the server through the
//! loopback DNS server's A records, like it would a real site.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::Bytes;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority that issues certificates for any name.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM and as rustls wants them.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Caliop test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        TestCa { issuer }
    }

    /// The authority's certificate, to trust.
    pub fn root(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    pub fn root_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names`, signed by the authority.
    pub fn issue(&self, names: &[&str]) -> Issued {
        let key = KeyPair::generate().expect("leaf key");
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("leaf parameters");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

type Documents = Arc<Mutex<HashMap<(String, String), Vec<u8>>>>;

/// Serves documents over HTTPS on loopback; every host it serves shares one
/// certificate naming them all.
pub struct HttpsServer {
    addr: SocketAddr,
    documents: Documents,
    task: tokio::task::JoinHandle<()>,
}

impl HttpsServer {
    pub async fn start(ca: &TestCa, hosts: &[&str]) -> std::io::Result<HttpsServer> {
        let issued = ca.issue(hosts);
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .and_then(|b| {
            b.with_no_client_auth()
                .with_single_cert(issued.chain, issued.key)
        })
        .map_err(std::io::Error::other)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let documents: Documents = Arc::default();
        let served = documents.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, documents) = (acceptor.clone(), served.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let documents = documents.clone();
                            async move {
                                let host = request
                                    .headers()
                                    .get(hyper::header::HOST)
                                    .and_then(|h| h.to_str().ok())
                                    .unwrap_or_default()
                                    .to_ascii_lowercase();
                                let path = request
                                    .uri()
                                    .path_and_query()
                                    .map(|p| p.as_str())
                                    .unwrap_or("/")
                                    .to_owned();
                                let found = documents
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .get(&(host, path))
                                    .cloned();
                                let response = match found {
                                    Some(body) => {
                                        hyper::Response::new(Full::new(Bytes::from(body)))
                                    }
                                    None => {
                                        let mut missing = hyper::Response::new(Full::new(
                                            Bytes::from_static(b"not found"),
                                        ));
                                        *missing.status_mut() = hyper::StatusCode::NOT_FOUND;
                                        missing
                                    }
                                };
                                Ok::<_, std::convert::Infallible>(response)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(HttpsServer {
            addr,
            documents,
            task,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Serves `body` at `https://{host}{path_and_query}`.
    pub fn put(&self, host: &str, path_and_query: &str, body: impl Into<Vec<u8>>) {
        let mut documents = self.documents.lock().unwrap_or_else(|p| p.into_inner());
        documents.insert(
            (host.to_ascii_lowercase(), path_and_query.to_owned()),
            body.into(),
        );
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
