//! Certificates by ACME across processes, against the real `caliop` binary
//! and Debian's `pebble`, on both backends: `caliop serve` with
//! `acme.enabled` obtains the mail host's certificate on its own (its
//! worker orders it, pebble checks the HTTP-01 answer on the API's port);
//! then, with the CA gone, a second process, `caliop api` on the same
//! database, serves that very certificate over HTTPS.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use tenants::{Backend, on_both_backends};

const MAIL_HOST: &str = "mx.caliop.test";

on_both_backends!(a_second_process_serves_the_certificate_the_first_obtained);

/// The serial `openssl s_client` sees at `port` when asking for `name`.
fn served_serial(port: u16, name: &str) -> String {
    let shown = Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-servername", name])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout).to_string();
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| panic!("no certificate from s_client: {text}"));
    let end = text[start..].find("-----END CERTIFICATE-----").unwrap() + start + 25;
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    x509.stdin
        .take()
        .unwrap()
        .write_all(&text.as_bytes()[start..end])
        .unwrap();
    let out = x509.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase()
        .trim_start_matches('0')
        .to_owned()
}

async fn a_second_process_serves_the_certificate_the_first_obtained(backend: Backend) {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let dns = mail::dns_server::DnsServer::start().await.unwrap();
    dns.set_a(MAIL_HOST, &[std::net::Ipv4Addr::LOCALHOST]);
    let http_port = mail::pebble::free_port();
    let pebble = mail::pebble::Pebble::start(http_port, dns.addr());
    let ca = scratch.path().join("pebble-ca.pem");
    std::fs::write(&ca, pebble.ca.root_pem()).unwrap();
    let mut env = common::environment(backend, &data, dns.addr()).await;
    env.extend([
        (
            "CALIOP_API_LISTEN".to_owned(),
            format!("127.0.0.1:{http_port}"),
        ),
        ("CALIOP_ACME_ENABLED".to_owned(), "true".to_owned()),
        (
            "CALIOP_ACME_DIRECTORY_URL".to_owned(),
            pebble.directory.clone(),
        ),
        (
            "CALIOP_ACME_EXTRA_CA_FILE".to_owned(),
            ca.display().to_string(),
        ),
    ]);
    let first = common::serve(env.clone(), scratch.path().join("first.log")).await;
    let operator = first.operator_token();

    // The first process's worker orders the mail host's certificate by itself.
    let mut issued = None;
    for _ in 0..120 {
        let (status, _, listed) = first
            .call(
                reqwest::Method::GET,
                "/v1/certificates",
                Some(&operator),
                None,
            )
            .await;
        assert_eq!(status, 200, "{listed}");
        if let Some(c) = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == MAIL_HOST && c["serial"].is_string())
        {
            issued = Some(c.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let issued = issued.unwrap_or_else(|| {
        panic!(
            "no certificate was issued; the log says:\n{}",
            std::fs::read_to_string(scratch.path().join("first.log")).unwrap_or_default()
        )
    });
    assert!(
        issued["issuer"].as_str().unwrap().contains("Pebble"),
        "{issued}"
    );
    let serial = issued["serial"]
        .as_str()
        .unwrap()
        .to_ascii_lowercase()
        .trim_start_matches('0')
        .to_owned();

    // The CA goes away; a second process on the same database serves the same certificate.
    drop(pebble);
    let mut second_env = env.clone();
    second_env.retain(|(k, _)| k != "CALIOP_API_LISTEN" && k != "CALIOP_ACME_ENABLED");
    second_env.extend([
        ("CALIOP_API_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("CALIOP_API_TLS_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
    ]);
    let log = std::fs::File::create(scratch.path().join("second.log")).unwrap();
    let mut second = Command::new(common::BIN)
        .arg("api")
        .envs(second_env)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let stdout = second.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let https: std::net::SocketAddr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("caliop api prints where it listens");
        if let Some(rest) = line.trim().strip_prefix("https listening on ") {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    let port = https.port();
    let seen = tokio::task::spawn_blocking(move || served_serial(port, MAIL_HOST))
        .await
        .unwrap();
    let _ = second.kill();
    let _ = second.wait();
    assert_eq!(
        seen, serial,
        "the second process serves the certificate the first obtained"
    );
    drop(first);
}
