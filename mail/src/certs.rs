//! The certificates every TLS door serves (SMTP STARTTLS, submission, IMAP,
//! ManageSieve, HTTPS): those ACME issued, read from the database (so that
//! every `caliop` process serves the same ones), chosen by the name the
//! client asks for (SNI), and swapped in without a restart when the
//! database has newer ones. A client that names nothing (most MTAs) gets
//! the mail host's; a name without a certificate gets the configured or
//! self-signed fallback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tenants::Store;
use vault::at_rest::MasterKey;

use crate::tls::TlsError;

/// What a stored certificate's key is sealed to.
pub fn key_context(name: &str) -> String {
    format!("acme-certificate:{name}")
}

pub struct Certificates {
    store: Store,
    master: Arc<MasterKey>,
    mail_hostname: String,
    fallback: Arc<CertifiedKey>,
    by_name: RwLock<Arc<HashMap<String, Arc<CertifiedKey>>>>,
    /// The database's newest change at the last load.
    loaded: Mutex<Option<DateTime<Utc>>>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("mail_hostname", &self.mail_hostname)
            .finish_non_exhaustive()
    }
}

impl Certificates {
    pub fn new(
        store: Store,
        master: Arc<MasterKey>,
        mail_hostname: &str,
        fallback: Arc<CertifiedKey>,
    ) -> Arc<Certificates> {
        Arc::new(Certificates {
            store,
            master,
            mail_hostname: mail_hostname.to_ascii_lowercase(),
            fallback,
            by_name: RwLock::new(Arc::new(HashMap::new())),
            loaded: Mutex::new(None),
        })
    }

    /// Loads the issued certificates again when the database changed since
    /// the last load; answers how many names are served.
    pub async fn reload(&self) -> Result<usize, String> {
        let changed = self
            .store
            .certificates_changed_at()
            .await
            .map_err(|e| e.to_string())?;
        if changed.is_some() && *self.loaded.lock().expect("lock") == changed {
            return Ok(self.by_name.read().expect("lock").len());
        }
        let mut map = HashMap::new();
        for stored in self.store.certificates().await.map_err(|e| e.to_string())? {
            let (Some(chain), Some(sealed)) = (&stored.chain_pem, &stored.key_sealed) else {
                continue;
            };
            match self.certified(&stored.name, chain, sealed) {
                Ok(key) => {
                    for name in &stored.names {
                        map.insert(name.to_ascii_lowercase(), key.clone());
                    }
                }
                Err(e) => {
                    tracing::warn!(certificate = %stored.name, error = %e, "a stored certificate is unusable")
                }
            }
        }
        let served = map.len();
        *self.by_name.write().expect("lock") = Arc::new(map);
        *self.loaded.lock().expect("lock") = changed;
        Ok(served)
    }

    fn certified(
        &self,
        name: &str,
        chain: &str,
        sealed: &str,
    ) -> Result<Arc<CertifiedKey>, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let key_pem = self
            .master
            .open_secret(&key_context(name), sealed)
            .map_err(|e| e.to_string())?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| e.to_string())?;
        crate::tls::certified(chain, key).map_err(|e| e.to_string())
    }

    /// A server configuration choosing among these certificates, offering
    /// `alpn` (HTTPS: `http/1.1`; mail protocols: none).
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = crate::tls::builder()?.with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// Reloads every `every` until `stop`, so that a certificate another
    /// process obtained is served here too.
    pub async fn watch(
        self: Arc<Self>,
        every: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(every) => {
                    if let Err(e) = self.reload().await {
                        tracing::warn!(error = %e, "certificates could not be reloaded");
                    }
                }
            }
        }
    }

    /// The certificate served for `name`: its own, else the mail host's
    /// (never another name's), else the fallback.
    pub fn for_name(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let map = self.by_name.read().expect("lock").clone();
        name.map(str::to_ascii_lowercase)
            .and_then(|n| map.get(&n).cloned())
            .or_else(|| map.get(&self.mail_hostname).cloned())
            .unwrap_or_else(|| self.fallback.clone())
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.for_name(hello.server_name()))
    }
}
