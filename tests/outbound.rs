//! A worker killed mid-delivery: its lease expires, another worker takes
//! the job over, and the remote server receives the message exactly once.
//! Real processes (`caliop api`, two `caliop worker`s), a real SMTP server
//! on loopback (the Python sink) that holds the first DATA long enough for
//! the first worker to die waiting for its answer.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use tenants::{Backend, on_both_backends};

on_both_backends!(a_killed_worker_delivers_exactly_once);

/// Starts `caliop <role>` and returns it once it printed `ready`'s line.
// The child is handed to the caller, which kills and waits for it.
#[allow(clippy::zombie_processes)]
fn start(
    role: &str,
    env: &[(String, String)],
    log: &std::path::Path,
    ready: &str,
) -> (Child, String) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = Command::new(common::BIN)
        .arg(role)
        .envs(env.iter().cloned())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines
            .next()
            .expect("the process printed its banner")
            .unwrap();
        if let Some(rest) = line.trim().strip_prefix(ready) {
            let found = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            // Keep draining stdout so the process never blocks on it.
            std::thread::spawn(move || for _ in lines.by_ref() {});
            return (child, found);
        }
    }
}

async fn a_killed_worker_delivers_exactly_once(backend: Backend) {
    let data = tempfile::tempdir().unwrap();
    let dns = mail::dns_server::DnsServer::start().await.unwrap();
    dns.set_mx("remote.test", &[(10, "mx.remote.test")]);
    dns.set_a("mx.remote.test", &[std::net::Ipv4Addr::LOCALHOST]);
    let sink = mail::sink::Sink::start(&["--hold-first-data", "6"]);
    let mut env = common::environment(backend, data.path(), dns.addr()).await;
    env.extend([
        ("CALIOP_DELIVERY_PORT".to_owned(), sink.port.to_string()),
        ("CALIOP_WORKER_LEASE_SECONDS".to_owned(), "3".to_owned()),
        (
            "CALIOP_DELIVERY_RETRY_BASE_SECONDS".to_owned(),
            "1".to_owned(),
        ),
    ]);
    let log = data.path().join("caliop.log");
    let migrate = Command::new(common::BIN)
        .arg("migrate")
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let (mut api, base) = start("api", &env, &log, "api listening on ");
    let caliop = common::Caliop {
        child: Command::new("true").spawn().unwrap(),
        base,
        submission: "127.0.0.1:9".parse().unwrap(),
        smtp: "127.0.0.1:9".parse().unwrap(),
        imap: "127.0.0.1:9".parse().unwrap(),
        managesieve: None,
        metrics: String::new(),
        env: env.clone(),
        log: log.clone(),
    };
    let operator = caliop.operator_token();

    let (status, _, tenant) = caliop
        .post(
            "/v1/tenants",
            Some(&operator),
            json!({"name": "Acme", "kind": "enterprise",
            "limits": {"max_accounts": 5, "max_domains": 1, "storage_quota_bytes": 100_000_000}}),
        )
        .await;
    assert_eq!(status, 201, "{tenant}");
    let password = "a long admin passphrase";
    let (status, _, onboarded) = caliop
        .post(&format!("/v1/tenants/{}/onboard", tenant["id"].as_str().unwrap()), Some(&operator),
            json!({"domain": "acme.test", "admin": {"address": "root@acme.test", "display_name": "Root", "password": password}}))
        .await;
    assert_eq!(status, 201, "{onboarded}");
    // Only a verified domain is hosted: the operator vouches for this one.
    let (status, _, verified) = caliop
        .post(
            &format!(
                "/v1/domains/{}/verify",
                onboarded["domain"]["id"].as_str().unwrap()
            ),
            Some(&caliop.operator_token()),
            json!({"force": true}),
        )
        .await;
    assert_eq!(status, 200, "{verified}");
    let (_, _, login) = caliop
        .post(
            "/v1/auth/token",
            None,
            json!({"grant_type": "password", "username": "root@acme.test", "password": password}),
        )
        .await;
    let token = login["access_token"]
        .as_str()
        .expect("signed in")
        .to_owned();
    let account = onboarded["admin"]["id"].as_str().unwrap();
    let (status, _, sent) = caliop
        .post(
            &format!("/v1/accounts/{account}/messages"),
            Some(&token),
            json!({"to": ["bob@remote.test"], "subject": "once", "text": "exactly once"}),
        )
        .await;
    assert_eq!(status, 202, "{sent}");
    let header_id = sent["header_message_id"].as_str().unwrap().to_owned();

    // The first worker reaches DATA; the sink holds its answer; the worker dies.
    let (mut first, _) = start("worker", &env, &log, "workers running");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        sink.messages().is_empty(),
        "the sink is still holding the first DATA"
    );
    first.kill().unwrap();
    first.wait().unwrap();

    // Another worker takes the job once the lease has expired.
    let (mut second, _) = start("worker", &env, &log, "workers running");
    let received = sink.wait_for(1, Duration::from_secs(40)).await;
    assert_eq!(received.len(), 1, "the second worker delivered");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let received = sink.messages();
    assert_eq!(received.len(), 1, "delivered exactly once: {received:?}");
    assert_eq!(received[0]["message_id"], header_id.as_str());

    let (_, _, report) = caliop
        .get(
            &format!(
                "/v1/messages/{}/delivery",
                sent["message_id"].as_str().unwrap()
            ),
            &token,
        )
        .await;
    assert_eq!(report["recipients"][0]["status"], "delivered", "{report}");
    second.kill().unwrap();
    second.wait().unwrap();
    api.kill().unwrap();
    api.wait().unwrap();
}
