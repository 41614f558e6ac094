//! Runs the real `caliop` binary for tests: a fresh data directory, a
//! database on either backend, every listener on port 0, a DNS server on
//! loopback; the addresses are read from what `serve` prints.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tenants::Backend;

pub const BIN: &str = env!("CARGO_BIN_EXE_caliop");

pub struct Caliop {
    pub child: Child,
    pub base: String,
    pub smtp: std::net::SocketAddr,
    pub submission: std::net::SocketAddr,
    pub imap: std::net::SocketAddr,
    /// The ManageSieve listener (announced before IMAP's).
    pub managesieve: Option<std::net::SocketAddr>,
    /// `http://HOST:PORT` of the `/metrics` listener.
    pub metrics: String,
    pub env: Vec<(String, String)>,
    pub log: std::path::PathBuf,
}

impl Drop for Caliop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn database_url(backend: Backend, data: &Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", data.join("caliop.db").display()),
        Backend::Postgres => {
            let fresh = tenants::testing::fresh_database(Backend::Postgres).await;
            fresh.store.close().await;
            fresh.url
        }
    }
}

/// The environment for a `caliop` process on `data`, resolving through `dns`.
pub async fn environment(
    backend: Backend,
    data: &Path,
    dns: std::net::SocketAddr,
) -> Vec<(String, String)> {
    vec![
        ("CALIOP_DATA_DIR".to_owned(), data.display().to_string()),
        (
            "CALIOP_DATABASE_URL".to_owned(),
            database_url(backend, data).await,
        ),
        ("CALIOP_API_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        (
            "CALIOP_API_METRICS_LISTEN".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        ("CALIOP_SMTP_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        (
            "CALIOP_SUBMISSION_LISTEN".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        ("CALIOP_IMAP_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        (
            "CALIOP_MANAGESIEVE_LISTEN".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        ("CALIOP_DNS_RESOLVER".to_owned(), dns.to_string()),
        ("CALIOP_DNS_TIMEOUT_MS".to_owned(), "500".to_owned()),
        // The test sinks and MX hosts are on loopback.
        (
            "CALIOP_DELIVERY_ALLOW_PRIVATE_NETWORKS".to_owned(),
            "true".to_owned(),
        ),
        (
            "CALIOP_MAIL_HOSTNAME".to_owned(),
            "mx.caliop.test".to_owned(),
        ),
        ("CALIOP_LOG_FORMAT".to_owned(), "json".to_owned()),
        // The stories sign mail clients in with the accounts' passwords;
        // tests/device_keys.rs checks the default (app passwords only).
        (
            "CALIOP_API_MAIL_ACCOUNT_PASSWORDS".to_owned(),
            "true".to_owned(),
        ),
    ]
}

/// Starts `caliop serve` with `env`; its logs go to `log`.
pub async fn serve(env: Vec<(String, String)>, log: std::path::PathBuf) -> Caliop {
    let migrate = Command::new(BIN)
        .arg("migrate")
        .envs(env.clone())
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "caliop migrate: {}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let mut child = Command::new(BIN)
        .arg("serve")
        .envs(env.clone())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .spawn()
        .unwrap();
    // Read stdout to its end on a thread of its own, so the process never
    // writes into a closed pipe; the listening addresses come back first.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut base, mut smtp, mut submission, mut imap, mut metrics) =
        (None, None, None, None, None);
    let mut managesieve = None;
    while base.is_none()
        || smtp.is_none()
        || submission.is_none()
        || imap.is_none()
        || metrics.is_none()
    {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("caliop serve prints where it listens");
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("api listening on ") {
            base = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.strip_prefix("smtp listening on ") {
            smtp = rest.split_whitespace().next().and_then(|a| a.parse().ok());
        }
        if let Some(rest) = line.strip_prefix("submission listening on ") {
            submission = rest.split_whitespace().next().and_then(|a| a.parse().ok());
        }
        if let Some(rest) = line.strip_prefix("managesieve listening on ") {
            managesieve = rest.split_whitespace().next().and_then(|a| a.parse().ok());
        }
        if let Some(rest) = line.strip_prefix("imap listening on ") {
            imap = rest.split_whitespace().next().and_then(|a| a.parse().ok());
        }
        if let Some(rest) = line.strip_prefix("metrics listening on ") {
            metrics = rest
                .split_whitespace()
                .next()
                .map(|u| u.trim_end_matches("/metrics").to_owned());
        }
    }
    Caliop {
        child,
        base: base.unwrap(),
        smtp: smtp.unwrap(),
        submission: submission.unwrap(),
        imap: imap.unwrap(),
        managesieve,
        metrics: metrics.unwrap(),
        env,
        log,
    }
}

/// `caliop serve` on `backend` with the tests' environment and `extra`
/// settings on top (later ones win); the data directory and the DNS server
/// live as long as what is returned.
pub async fn start(
    backend: Backend,
    extra: &[(&str, &str)],
) -> (Caliop, tempfile::TempDir, mail::dns_server::DnsServer) {
    let data = tempfile::tempdir().unwrap();
    let dns = mail::dns_server::DnsServer::start().await.unwrap();
    let mut env = environment(backend, data.path(), dns.addr()).await;
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let caliop = serve(env, data.path().join("caliop.log")).await;
    (caliop, data, dns)
}

impl Caliop {
    pub fn operator_token(&self) -> String {
        let out = Command::new(BIN)
            .args(["admin", "operator-token"])
            .envs(self.env.clone())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, String, Value) {
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = response.text().await.unwrap();
        (
            status,
            content_type,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, String, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, String, Value) {
        self.call(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::task::spawn_blocking(move || {
                let status = self.child.wait();
                (status, self)
            }),
        )
        .await
        .expect("caliop stops within 30 s of SIGTERM")
        .unwrap();
        status.0.unwrap()
    }
}

pub fn field(v: &Value, name: &str) -> String {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("no `{name}` in {v}"))
        .to_owned()
}

pub const PASSWORD: &str = "a long user passphrase";

/// An enterprise with one domain and one user at `level`; returns the user's id.
pub async fn mailbox(caliop: &Caliop, level: &str) -> String {
    let operator = caliop.operator_token();
    let (status, _, tenant) = caliop
        .post(
            "/v1/tenants",
            Some(&operator),
            json!({"name": "Acme", "kind": "enterprise",
                   "limits": {"max_accounts": 5, "max_domains": 1, "storage_quota_bytes": 1_000_000_000}}),
        )
        .await;
    assert_eq!(status, 201, "{tenant}");
    let (status, _, onboarded) = caliop
        .post(
            &format!("/v1/tenants/{}/onboard", field(&tenant, "id")),
            Some(&operator),
            json!({"domain": "acme.test", "admin": {"address": "user@acme.test", "password": PASSWORD, "level": level}}),
        )
        .await;
    assert_eq!(status, 201, "{onboarded}");
    // Only a verified domain is hosted: the operator vouches for this one.
    let (status, _, verified) = caliop
        .post(
            &format!("/v1/domains/{}/verify", field(&onboarded["domain"], "id")),
            Some(&operator),
            json!({"force": true}),
        )
        .await;
    assert_eq!(status, 200, "{verified}");
    field(&onboarded["admin"], "id")
}

pub async fn user_token(caliop: &Caliop) -> String {
    token(caliop, "user@acme.test").await
}

/// A password grant's access token for `address` (whose password is [`PASSWORD`]).
pub async fn token(caliop: &Caliop, address: &str) -> String {
    let (status, _, token) = caliop
        .post(
            "/v1/auth/token",
            None,
            json!({"grant_type": "password", "username": address, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{address}: {token}");
    field(&token, "access_token")
}

/// The stored bytes of a message, as `/raw` serves them.
pub async fn raw(caliop: &Caliop, token: &str, message: &str) -> Vec<u8> {
    let response = reqwest::Client::new()
        .get(format!("{}/v1/messages/{message}/raw", caliop.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.bytes().await.unwrap().to_vec()
}

#[allow(unused_imports)]
pub use mail::gpg::{gpg, gpg_home};
