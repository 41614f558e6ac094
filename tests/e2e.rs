//! The whole story against the real `caliop` binary on port 0, on SQLite and
//! on PostgreSQL: operator token → reseller → the reseller's API key → an
//! enterprise child → onboarding → the admin signs in → users up to the
//! package limit, and the next one refused. Then SIGTERM stops it cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tenants::{Backend, on_both_backends};

const BIN: &str = env!("CARGO_BIN_EXE_caliop");

struct Caliop {
    child: Child,
    base: String,
    env: Vec<(String, String)>,
    _data: tempfile::TempDir,
}

impl Drop for Caliop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn database_url(backend: Backend, data: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", data.join("caliop.db").display()),
        Backend::Postgres => {
            let fresh = tenants::testing::fresh_database(Backend::Postgres).await;
            fresh.store.close().await;
            fresh.url
        }
    }
}

async fn start(backend: Backend) -> Caliop {
    let data = tempfile::tempdir().unwrap();
    let env = vec![
        ("CALIOP_DATA_DIR".to_owned(), data.path().display().to_string()),
        ("CALIOP_DATABASE_URL".to_owned(), database_url(backend, data.path()).await),
        ("CALIOP_API_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("CALIOP_LOG_FORMAT".to_owned(), "json".to_owned()),
    ];
    let migrate = Command::new(BIN).arg("migrate").envs(env.clone()).output().unwrap();
    assert!(migrate.status.success(), "caliop migrate: {}", String::from_utf8_lossy(&migrate.stderr));
    let mut child = Command::new(BIN)
        .arg("serve")
        .envs(env.clone())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read stdout to its end on a thread of its own, so the process never
    // writes into a closed pipe; the listening address comes back first.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.trim().strip_prefix("api listening on ") {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
    });
    let base = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("caliop serve prints where it listens");
    Caliop { child, base, env, _data: data }
}

impl Caliop {
    fn operator_token(&self) -> String {
        let out = Command::new(BIN).args(["admin", "operator-token"]).envs(self.env.clone()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    async fn call(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, String, Value) {
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
        (status, content_type, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, String, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body)).await
    }
}

fn field(v: &Value, name: &str) -> String {
    v[name].as_str().unwrap_or_else(|| panic!("no `{name}` in {v}")).to_owned()
}

on_both_backends!(reseller_story_end_to_end);

async fn reseller_story_end_to_end(backend: Backend) {
    let caliop = start(backend).await;
    let (status, _, health) = caliop.call(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let operator = caliop.operator_token();

    let (status, _, reseller) = caliop
        .post(
            "/v1/tenants",
            Some(&operator),
            json!({"name": "Hosting Co", "kind": "reseller",
                   "limits": {"max_accounts": 100, "max_domains": 10, "storage_quota_bytes": 10_000_000_000i64}}),
        )
        .await;
    assert_eq!(status, 201, "{reseller}");
    let reseller_id = field(&reseller, "id");

    let (status, _, key) =
        caliop.post(&format!("/v1/tenants/{reseller_id}/api-keys"), Some(&operator), json!({"name": "provisioning"})).await;
    assert_eq!(status, 201, "{key}");
    let (status, _, token) =
        caliop.post("/v1/auth/token", None, json!({"grant_type": "api_key", "api_key": field(&key, "secret")})).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["role"], "reseller_admin");
    let reseller_token = field(&token, "access_token");

    let (status, _, child) = caliop
        .post(
            "/v1/tenants",
            Some(&reseller_token),
            json!({"name": "Acme Corp", "kind": "enterprise",
                   "limits": {"max_accounts": 3, "max_domains": 2, "storage_quota_bytes": 1_000_000_000},
                   "policy": {"min_level": "sealed", "allowed_jurisdictions": ["FR", "CH"]}}),
        )
        .await;
    assert_eq!(status, 201, "{child}");
    assert_eq!(child["parent_id"], reseller_id.as_str());
    let child_id = field(&child, "id");

    let password = "a long admin passphrase";
    let (status, _, onboarded) = caliop
        .post(
            &format!("/v1/tenants/{child_id}/onboard"),
            Some(&reseller_token),
            json!({"domain": "acme.example", "admin": {"address": "root@acme.example", "display_name": "Root", "password": password}}),
        )
        .await;
    assert_eq!(status, 201, "{onboarded}");
    assert_eq!(onboarded["admin"]["level"], "sealed", "accounts start at the tenant's floor");
    assert_eq!(onboarded["dns_records"][0]["name"], "_caliop-verification.acme.example");

    let (status, _, login) = caliop
        .post("/v1/auth/token", None, json!({"grant_type": "password", "username": "Root@Acme.Example", "password": password}))
        .await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(login["role"], "tenant_admin");
    let admin = field(&login, "access_token");

    let accounts = format!("/v1/tenants/{child_id}/accounts");
    for user in ["alice", "bob"] {
        let (status, _, created) = caliop
            .post(&accounts, Some(&admin), json!({"address": format!("{user}@acme.example"), "password": "user passphrase 123"}))
            .await;
        assert_eq!(status, 201, "{created}");
    }
    let (status, content_type, refused) = caliop
        .post(&accounts, Some(&admin), json!({"address": "carol@acme.example", "password": "user passphrase 123"}))
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(refused["type"], "/problems/limit-exceeded");
    assert!(field(&refused, "detail").contains("allows 3"), "{refused}");

    let (status, _, listed) = caliop.call(reqwest::Method::GET, &accounts, Some(&admin), None).await;
    assert_eq!(status, 200);
    assert_eq!(listed["items"].as_array().unwrap().len(), 3);

    // SIGTERM drains and exits cleanly.
    let pid = caliop.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut caliop = caliop;
    let exit = tokio::time::timeout(Duration::from_secs(20), tokio::task::spawn_blocking(move || {
        let status = caliop.child.wait();
        (status, caliop)
    }))
    .await
    .expect("caliop stops within 20 s of SIGTERM")
    .unwrap();
    assert!(exit.0.unwrap().success(), "caliop exits with status 0 after SIGTERM");
}
