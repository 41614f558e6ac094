//! Spawns the real API on port 0 with a fresh database (SQLite or
//! PostgreSQL) and a real DNS server on loopback, and speaks HTTP to it.

#![allow(dead_code, unused_imports)]

pub mod spec;

use std::time::Duration;

use api::{ApiConfig, AppState};
use mail::dns_server::DnsServer;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tenants::{Actor, Backend, Role, Scope, Store, Subject};

pub struct TestApp {
    pub base: String,
    /// The metrics listener (`/metrics`), apart from the API.
    pub metrics: String,
    /// The MX, with STARTTLS on a self-signed certificate.
    pub smtp: std::net::SocketAddr,
    /// The submission port (AUTH PLAIN/LOGIN).
    pub submission: std::net::SocketAddr,
    /// IMAP, in clear with STARTTLS (loopback clients may sign in without it).
    pub imap: std::net::SocketAddr,
    pub imap_server: mail::imap::ImapServer,
    pub inbound: std::sync::Arc<mail::inbound::Inbound>,
    /// Three local storage sites (FR, DE, CH) under `data_dir/sites`, 2-of-3.
    pub dispersed: std::sync::Arc<mail::dispersed::Dispersed>,
    pub resolver: mail::dns::Dns,
    /// A private CA the instance trusts, and an HTTPS server on loopback
    /// with its certificate for `remote.test`'s web hosts (MTA-STS, WKD).
    pub ca: mail::https_server::TestCa,
    pub https: mail::https_server::HttpsServer,
    pub data_dir: tempfile::TempDir,
    pub http: reqwest::Client,
    pub store: Store,
    pub dns: DnsServer,
    pub state: AppState,
    pub operator_token: String,
    pub key: vault::instance::InstanceKey,
    /// The same key, for the workers.
    pub instance_key: std::sync::Arc<vault::instance::InstanceKey>,
    pub billing: std::sync::Arc<billing::Billing>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

pub const MAIL_HOST: &str = "mx.caliop.test";

pub async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, api_config()).await
}

/// The API settings of the tests: the test MX name, and no admin app build
/// (a test that serves one points `admin_assets_dir` at its own).
pub fn api_config() -> ApiConfig {
    ApiConfig {
        mail_hostname: MAIL_HOST.into(),
        admin_assets_dir: std::env::temp_dir().join("caliop-tests-no-admin-app"),
        mail_assets_dir: std::env::temp_dir().join("caliop-tests-no-mail-app"),
        // The suites sign mail clients in with the accounts' passwords;
        // tests/device_keys.rs checks the default (app passwords only).
        mail_account_passwords: true,
        ..ApiConfig::default()
    }
}

pub fn smtp_config() -> mail::smtp::SmtpConfig {
    mail::smtp::SmtpConfig {
        hostname: MAIL_HOST.into(),
        max_message_size: 2 * 1024 * 1024,
        max_recipients: 5,
        command_timeout: Duration::from_secs(20),
        ..mail::smtp::SmtpConfig::default()
    }
}

/// IMAP settings of the tests: small literals, so that the limit is easy to reach.
pub fn imap_config() -> mail::imap::ImapConfig {
    mail::imap::ImapConfig {
        hostname: MAIL_HOST.into(),
        max_literal: 4 * 1024 * 1024,
        recheck: Duration::ZERO,
        ..mail::imap::ImapConfig::default()
    }
}

pub async fn spawn_with(backend: Backend, config: ApiConfig) -> TestApp {
    spawn_full(backend, config, smtp_config()).await
}

pub async fn spawn_full(
    backend: Backend,
    config: ApiConfig,
    smtp: mail::smtp::SmtpConfig,
) -> TestApp {
    spawn_billing(backend, config, smtp, billing::BillingConfig::default()).await
}

/// An app whose billing (provider, pool, signup) is `billing`.
pub async fn spawn_billing(
    backend: Backend,
    config: ApiConfig,
    smtp: mail::smtp::SmtpConfig,
    billing: billing::BillingConfig,
) -> TestApp {
    let store = tenants::testing::fresh_store(backend).await;
    spawn_on(store, config, smtp, billing).await
}

/// An app on `store` (a fresh one, perhaps with other limits).
pub async fn spawn_on(
    store: Store,
    mut config: ApiConfig,
    smtp: mail::smtp::SmtpConfig,
    billing: billing::BillingConfig,
) -> TestApp {
    let dns = DnsServer::start()
        .await
        .expect("start the loopback DNS server");
    let resolver = mail::dns::Dns::new(dns.addr(), Duration::from_secs(2)).expect("resolver");
    let data_dir = tempfile::tempdir().expect("data dir");
    config.exports_dir = data_dir.path().join("exports");
    // The instance key, once for the API and once more (the same key, from its file) for the workers.
    let key = vault::instance::InstanceKey::load_or_create(data_dir.path()).expect("instance key");
    let instance_key = std::sync::Arc::new(
        vault::instance::InstanceKey::load_or_create(data_dir.path()).expect("instance key"),
    );
    let master = vault::at_rest::MasterKey::load_or_create(data_dir.path()).expect("master key");
    let dispersed = std::sync::Arc::new(local_sites(&store, data_dir.path()));
    let inbound = std::sync::Arc::new(
        mail::inbound::Inbound::new(
            store.clone(),
            master,
            Some(resolver.authenticator()),
            MAIL_HOST.into(),
        )
        .with_dispersed(dispersed.clone()),
    );
    let tls = mail::tls::self_signed(data_dir.path(), MAIL_HOST).expect("self-signed certificate");
    let smtp_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let smtp_addr = smtp_listener.local_addr().expect("local addr");
    let ca = mail::https_server::TestCa::new();
    let https = mail::https_server::HttpsServer::start(&ca, REMOTE_WEB_HOSTS)
        .await
        .expect("HTTPS server");
    for host in REMOTE_WEB_HOSTS {
        dns.set_a(host, &[std::net::Ipv4Addr::LOCALHOST]);
    }
    let outbound = std::sync::Arc::new(mail::outbound::Outbound::new(
        store.clone(),
        inbound.clone(),
        Some(resolver.clone()),
        mail::outbound::OutboundConfig {
            payment_grace: chrono::Duration::days(billing.grace_days),
            ..outbound_config(0, &https, &ca)
        },
    ));
    let submission_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let submission = submission_listener.local_addr().expect("local addr");
    let login_guard = std::sync::Arc::new(config.login_guard());
    let server = mail::smtp::SmtpServer::submission(
        smtp.clone(),
        inbound.clone(),
        outbound.clone(),
        login_guard.clone(),
        Some(tls.clone()),
    );
    tokio::spawn(server.serve(submission_listener, std::future::pending()));
    let imap_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let imap = imap_listener.local_addr().expect("local addr");
    let imap_server = mail::imap::ImapServer::new(
        imap_config(),
        inbound.clone(),
        login_guard.clone(),
        Some(tls.clone()),
    );
    tokio::spawn(
        imap_server
            .clone()
            .serve(imap_listener, false, std::future::pending()),
    );
    let server = mail::smtp::SmtpServer::new(smtp, inbound.clone(), Some(tls));
    tokio::spawn(server.serve(smtp_listener, std::future::pending()));
    let billing = billing::Billing::new(store.clone(), billing, key.pkcs8_der()).expect("billing");
    let state = AppState::new(
        store.clone(),
        &key,
        inbound.clone(),
        outbound,
        resolver.clone(),
        login_guard,
        config,
    )
    .await
    .expect("app state")
    .with_billing(billing.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let metrics = format!(
        "http://{}",
        metrics_listener.local_addr().expect("local addr")
    );
    tokio::spawn(api::metrics::serve(
        metrics_listener,
        state.clone(),
        std::future::pending(),
    ));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(api::serve(listener, state.clone(), async move {
        let _ = rx.await;
    }));
    let operator = Actor {
        subject: Subject::Operator,
        tenant_id: state.operator_tenant,
        role: Role::Operator,
        scopes: vec![Scope::Read, Scope::Write],
    };
    let operator_token = state
        .tokens
        .issue(&operator, 0, Duration::from_secs(600))
        .expect("operator token");
    TestApp {
        base,
        metrics,
        smtp: smtp_addr,
        submission,
        imap,
        imap_server,
        inbound,
        dispersed,
        resolver,
        ca,
        https,
        data_dir,
        http: reqwest::Client::new(),
        store,
        dns,
        state,
        operator_token,
        key,
        instance_key,
        billing,
        shutdown: Some(tx),
    }
}

/// The test storage sites: local folders FR, DE and CH under `dir/sites`, 2-of-3.
pub fn local_sites(store: &Store, dir: &std::path::Path) -> mail::dispersed::Dispersed {
    let configs: Vec<vault::sites::SiteConfig> =
        [("site-fr", "FR"), ("site-de", "DE"), ("site-ch", "CH")]
            .into_iter()
            .map(|(name, jurisdiction)| vault::sites::SiteConfig {
                name: name.into(),
                jurisdiction: jurisdiction.into(),
                path: Some(dir.join("sites").join(name)),
                s3: None,
            })
            .collect();
    let sites = vault::sites::Sites::open(&configs, vault::sites::SiteOptions::default())
        .expect("local sites");
    mail::dispersed::Dispersed::new(
        store.clone(),
        sites,
        mail::dispersed::DispersalConfig {
            default: vault::dispersal::Params::new(2, 3).expect("2-of-3"),
            write_quorum: 0,
            min_k: 2,
            max_n: 5,
        },
    )
    .expect("dispersal")
}

/// The web hosts of the remote test domain, served by [`TestApp::https`].
pub const REMOTE_WEB_HOSTS: &[&str] = &[
    "remote.test",
    "mta-sts.remote.test",
    "openpgpkey.remote.test",
];

/// Outbound settings for tests: deliveries go to `delivery_port` on
/// loopback, HTTPS fetches to the test server (trusting the test CA), and
/// paid accounts may send 3 messages an hour (so that a test reaches the
/// limit quickly).
fn outbound_config(
    delivery_port: u16,
    https: &mail::https_server::HttpsServer,
    ca: &mail::https_server::TestCa,
) -> mail::outbound::OutboundConfig {
    let mut limits = mail::outbound::SendLimits::default();
    limits.paid.account_messages_per_hour = 3;
    mail::outbound::OutboundConfig {
        hostname: MAIL_HOST.into(),
        delivery_port,
        https_port: https.port(),
        extra_roots: vec![ca.root()],
        connect_timeout: Duration::from_secs(5),
        max_recipients: 5,
        limits,
        // The sinks, the MX hosts and the web hosts of these tests are on loopback.
        allow_private_networks: true,
        ..mail::outbound::OutboundConfig::default()
    }
}

/// Background workers running every job, delivering to `delivery_port`.
pub struct Workers {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

impl Workers {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.done).await;
    }
}

impl TestApp {
    pub fn outbound_config(&self, delivery_port: u16) -> mail::outbound::OutboundConfig {
        outbound_config(delivery_port, &self.https, &self.ca)
    }

    pub fn start_workers(&self, delivery_port: u16, retry_after: Duration) -> Workers {
        self.start_workers_with(self.outbound_config(delivery_port), retry_after)
    }

    pub fn start_workers_with(
        &self,
        config: mail::outbound::OutboundConfig,
        retry_after: Duration,
    ) -> Workers {
        let mut workers =
            worker::caliop_worker(self.worker_context_with(config, retry_after), "test-worker");
        workers.idle = Duration::from_millis(100);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(workers.run(async move {
            let _ = stopped.await;
        }));
        Workers {
            stop: Some(stop),
            done,
        }
    }

    /// What the jobs need, delivering to `delivery_port` on loopback.
    pub fn worker_context(&self, delivery_port: u16, retry_after: Duration) -> worker::Context {
        self.worker_context_with(self.outbound_config(delivery_port), retry_after)
    }

    pub fn worker_context_with(
        &self,
        config: mail::outbound::OutboundConfig,
        retry_after: Duration,
    ) -> worker::Context {
        let outbound = std::sync::Arc::new(mail::outbound::Outbound::new(
            self.store.clone(),
            self.inbound.clone(),
            Some(self.resolver.clone()),
            config,
        ));
        worker::Context {
            store: self.store.clone(),
            dns: self.resolver.clone(),
            outbound,
            delivery_retry: worker::RetryPolicy {
                max_attempts: mail::outbound::DELIVERY_MAX_ATTEMPTS,
                base: retry_after,
                max: retry_after,
                jitter: 0.0,
            },
            dispersed: Some(self.dispersed.clone()),
            billing: Some(self.billing.clone()),
            instance_key: Some(self.instance_key.clone()),
            inbound: Some(self.inbound.clone()),
            exports_dir: Some(self.data_dir.path().join("exports")),
            acme: None,
        }
    }

    /// Publishes the domain's DKIM records in the loopback DNS.
    pub async fn publish_dkim(&self, domain_id: &str, token: &str) {
        let keys = self
            .get(&format!("/v1/domains/{domain_id}/dkim"), token)
            .await;
        for key in keys.ok(200)["keys"].as_array().unwrap() {
            self.dns.set_txt(
                key["record"]["name"].as_str().unwrap(),
                &[key["record"]["value"].as_str().unwrap()],
            );
        }
    }
}

pub use mail::sink::Sink;

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A response: status, content type and body (JSON when it parses, else a string).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub fn text(&self) -> &str {
        self.body.as_str().unwrap_or_default()
    }

    /// Asserts a problem+json answer with `status`, and returns its detail.
    pub fn problem(&self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "unexpected answer: {self:?}");
        assert_eq!(self.content_type, "application/problem+json", "{self:?}");
        assert_eq!(self.body["status"], status, "{self:?}");
        let detail = self.body["detail"].as_str().unwrap_or_default().to_owned();
        assert!(!detail.is_empty(), "a problem needs a detail: {self:?}");
        detail
    }

    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "unexpected answer: {self:?}");
        &self.body
    }
}

impl TestApp {
    /// A reseller "Hosting Co" (10 GB) and its enterprise child "Child Corp"
    /// with `child_storage` bytes of quota, made by the operator: their ids.
    pub async fn reseller_and_child(&self, child_storage: i64) -> (String, String) {
        let reseller = self
            .post("/v1/tenants", &self.operator_token, json!({"name": "Hosting Co", "kind": "reseller",
                "limits": {"max_accounts": 50, "max_domains": 10, "storage_quota_bytes": 10_000_000_000i64}}))
            .await;
        let reseller_id = reseller.ok(201)["id"].as_str().unwrap().to_owned();
        let child = self
            .post("/v1/tenants", &self.operator_token, json!({"name": "Child Corp", "kind": "enterprise", "parent_id": reseller_id,
                "limits": {"max_accounts": 5, "max_domains": 1, "storage_quota_bytes": child_storage}}))
            .await;
        let child_id = child.ok(201)["id"].as_str().unwrap().to_owned();
        (reseller_id, child_id)
    }
}

impl TestApp {
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        into_reply(request.send().await.expect("HTTP request")).await
    }

    pub async fn raw(&self, request: reqwest::RequestBuilder) -> Reply {
        into_reply(request.send().await.expect("HTTP request")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send("GET", path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send("POST", path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send("PATCH", path, Some(token), Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.send("DELETE", path, Some(token), None).await
    }

    pub async fn login(&self, address: &str, password: &str) -> String {
        let reply = self
            .send(
                "POST",
                "/v1/auth/token",
                None,
                Some(json!({"grant_type": "password", "username": address, "password": password})),
            )
            .await;
        reply.ok(200)["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    pub async fn api_key_token(&self, secret: &str) -> String {
        let reply = self
            .send(
                "POST",
                "/v1/auth/token",
                None,
                Some(json!({"grant_type": "api_key", "api_key": secret})),
            )
            .await;
        reply.ok(200)["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// An enterprise tenant (created by the operator) with one domain and an admin account.
    pub async fn enterprise(&self, domain: &str, max_accounts: i64) -> Enterprise {
        let tenant = self
            .post(
                "/v1/tenants",
                &self.operator_token,
                json!({"name": format!("{domain} Inc."), "kind": "enterprise",
                       "limits": {"max_accounts": max_accounts, "max_domains": 3, "storage_quota_bytes": 1_000_000_000}}),
            )
            .await;
        let tenant_id = tenant.ok(201)["id"].as_str().expect("tenant id").to_owned();
        let admin_address = format!("admin@{domain}");
        let onboarded = self
            .post(
                &format!("/v1/tenants/{tenant_id}/onboard"),
                &self.operator_token,
                json!({"domain": domain, "admin": {"address": admin_address, "password": PASSWORD}}),
            )
            .await;
        let body = onboarded.ok(201);
        let domain_id = body["domain"]["id"].as_str().expect("domain id").to_owned();
        // Only a verified domain is hosted: its admin could not sign in otherwise.
        self.verify_domain(&domain_id).await;
        Enterprise {
            tenant_id,
            domain_id,
            admin_id: body["admin"]["id"].as_str().expect("admin id").to_owned(),
            admin_token: self.login(&admin_address, PASSWORD).await,
            domain: domain.to_owned(),
        }
    }

    /// An enterprise whose admin signs in from a verified home domain
    /// (`home-{domain}`), and which claims `domain` without verifying it:
    /// the returned `domain` and `domain_id` are the claim's.
    pub async fn enterprise_claiming(&self, domain: &str, max_accounts: i64) -> Enterprise {
        let home = self
            .enterprise(&format!("home-{domain}"), max_accounts)
            .await;
        let domain_id = self.claim(&home, domain).await;
        Enterprise {
            domain_id,
            domain: domain.to_owned(),
            ..home
        }
    }

    /// The operator vouches for a domain (forced verification, audited).
    pub async fn verify_domain(&self, domain_id: &str) {
        self.post(
            &format!("/v1/domains/{domain_id}/verify"),
            &self.operator_token,
            json!({"force": true}),
        )
        .await
        .ok(200);
    }

    /// Names the product of `tenant`'s brand, as `token` (its administrator
    /// or the operator) may.
    pub async fn name_brand(&self, tenant: &str, token: &str, product_name: &str) {
        self.send(
            "PUT",
            &format!("/v1/tenants/{tenant}/branding"),
            Some(token),
            Some(json!({ "product_name": product_name })),
        )
        .await
        .ok(200);
    }

    /// A hostname of the enterprise's own (its admin adds it), not proven
    /// yet: the answer, with its `id` and `verification_record`.
    pub async fn add_hostname(&self, e: &Enterprise, hostname: &str) -> Value {
        self.post(
            &format!("/v1/tenants/{}/hostnames", e.tenant_id),
            &e.admin_token,
            json!({ "hostname": hostname }),
        )
        .await
        .ok(201)
        .clone()
    }

    /// Publishes the proof of a hostname `add_hostname` gave, in the test's
    /// DNS, and has it verified.
    pub async fn prove_hostname(&self, e: &Enterprise, host: &Value) {
        let name = host["hostname"].as_str().expect("a hostname");
        self.dns.set_txt(
            &format!("_caliop-hostname.{name}"),
            &[host["verification_record"]["value"].as_str().unwrap()],
        );
        self.post(
            &format!("/v1/hostnames/{}/verify", host["id"].as_str().unwrap()),
            &e.admin_token,
            json!({}),
        )
        .await
        .ok(200);
    }

    /// A second domain of the enterprise, added by its admin and left
    /// unverified (a claim); returns its id.
    pub async fn claim(&self, e: &Enterprise, name: &str) -> String {
        let reply = self
            .post(
                &format!("/v1/tenants/{}/domains", e.tenant_id),
                &e.admin_token,
                json!({"name": name}),
            )
            .await;
        reply.ok(201)["id"].as_str().expect("domain id").to_owned()
    }

    /// Creates a user in the enterprise and returns its id.
    pub async fn user(&self, e: &Enterprise, local: &str) -> String {
        let reply = self
            .post(
                &format!("/v1/tenants/{}/accounts", e.tenant_id),
                &e.admin_token,
                json!({"address": format!("{local}@{}", e.domain), "password": PASSWORD}),
            )
            .await;
        reply.ok(201)["id"].as_str().expect("account id").to_owned()
    }

    pub async fn audit_len(&self, tenant_id: &str) -> usize {
        let reply = self
            .get(
                &format!("/v1/tenants/{tenant_id}/audit?limit=200"),
                &self.operator_token,
            )
            .await;
        reply.ok(200)["items"]
            .as_array()
            .map(Vec::len)
            .unwrap_or_default()
    }
}

pub const PASSWORD: &str = "correct horse battery staple";

pub struct Enterprise {
    pub tenant_id: String,
    pub domain_id: String,
    pub admin_id: String,
    pub admin_token: String,
    pub domain: String,
}

async fn into_reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("response body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        content_type,
        body,
        headers,
    }
}

/// Sends `raw` with lettre, over STARTTLS (the test certificate is self-signed) or in clear.
pub async fn send_with_lettre(
    smtp: std::net::SocketAddr,
    from: &str,
    to: &[&str],
    raw: &[u8],
    starttls: bool,
) -> Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error> {
    use lettre::AsyncTransport;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    let tls = if starttls {
        let parameters = TlsParameters::builder(MAIL_HOST.to_owned())
            .dangerous_accept_invalid_certs(true)
            .build_rustls()
            .expect("TLS parameters");
        Tls::Required(parameters)
    } else {
        Tls::None
    };
    let transport = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(
        smtp.ip().to_string(),
    )
    .port(smtp.port())
    .tls(tls)
    .build();
    let envelope = lettre::address::Envelope::new(
        Some(from.parse().expect("sender")),
        to.iter().map(|t| t.parse().expect("recipient")).collect(),
    )
    .expect("envelope");
    transport.send_raw(&envelope, raw).await
}

pub use mail::probe::SmtpProbe;

/// A minimal RFC 5322 message.
/// The argument of `AUTH PLAIN` for `address` and `password`.
pub use mail::probe::auth_plain;

pub fn message(from: &str, to: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nDate: Thu, 26 Nov 2026 12:00:00 +0000\r\n\
         Message-ID: <{}@sender.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        uuid::Uuid::now_v7()
    )
    .into_bytes()
}

pub use mail::gpg::{GpgHome, gpg, gpg_home};

/// OPAQUE registration at `{base}/start` and `{base}/finish` (no token: an
/// activation or reset link), `armored` locked with the new export key,
/// `extra` fields added to the finish: the finish's answer (or the start's,
/// when it refused).
pub async fn register_at(
    app: &TestApp,
    base: &str,
    password: &str,
    armored: &str,
    extra: serde_json::Value,
) -> Reply {
    let (state, request) = vault::opaque::client_register_start(password).unwrap();
    let started = app
        .send(
            "POST",
            &format!("{base}/start"),
            None,
            Some(json!({"registration_request": request})),
        )
        .await;
    if started.status != 200 {
        return started;
    }
    let started = started.body;
    let ksf: vault::opaque::KsfParams = serde_json::from_value(started["ksf"].clone()).unwrap();
    let (record, export) = vault::opaque::client_register_finish(
        state,
        password,
        started["registration_response"].as_str().unwrap(),
        &ksf,
    )
    .unwrap();
    let mut body = json!({"registration_record": record, "ksf": ksf, "locked_key": export.wrap(armored).unwrap()});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    app.send("POST", &format!("{base}/finish"), None, Some(body))
        .await
}

/// A device sign-in: the token and the export key.
pub async fn device_sign_in(
    app: &TestApp,
    address: &str,
    password: &str,
) -> (String, vault::opaque::ExportKey) {
    let (state, request) = vault::opaque::client_login_start(password).unwrap();
    let started = app
        .send(
            "POST",
            "/v1/auth/opaque/login/start",
            None,
            Some(json!({"username": address, "credential_request": request})),
        )
        .await;
    let started = started.ok(200).clone();
    let ksf: vault::opaque::KsfParams = serde_json::from_value(started["ksf"].clone()).unwrap();
    let (finalization, export) = vault::opaque::client_login_finish(
        state,
        password,
        started["credential_response"].as_str().unwrap(),
        &ksf,
    )
    .unwrap();
    let done = app
        .send(
            "POST",
            "/v1/auth/opaque/login/finish",
            None,
            Some(json!({"login_id": started["login_id"], "credential_finalization": finalization})),
        )
        .await;
    let token = done.ok(200)["access_token"].as_str().unwrap().to_owned();
    (token, export)
}
