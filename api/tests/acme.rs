//! Certificates by ACME against Debian's `pebble` (Let's Encrypt's test
//! CA), on both backends. Pebble validates HTTP-01 by asking our API (the
//! names resolve to loopback in the test's DNS server, which pebble uses):
//! the certificate job orders one certificate for the mail host and one
//! for a tenant's verified hostname; the operator sees them; HTTPS serves
//! the tenant's brand under its own certificate by SNI, and the mail host's
//! to a client naming nothing; `openssl s_client -starttls smtp` sees the
//! ACME certificate on STARTTLS. A forced renewal swaps the served
//! certificate (a new serial) without a restart, while a connection opened
//! before it keeps working; another process on the same database serves
//! the same certificate without asking the CA.

mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use support::{MAIL_HOST, TestApp};
use tenants::{Backend, on_both_backends};

const TENANT_HOST: &str = "mail.acme.test";
const STS_HOST: &str = "mta-sts.acme.test";

/// The serial (hexadecimal) of the certificate served at the end of a TLS
/// handshake, and the connection.
async fn tls_connect(
    port: u16,
    name: &str,
    root: &CertificateDer<'static>,
) -> (
    String,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) {
    let tls = mail::https::client_config(std::slice::from_ref(root)).unwrap();
    let mut tls = (*tls).clone();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
        .await
        .unwrap_or_else(|e| panic!("TLS with {name}: {e}"));
    let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    (serial(&leaf), stream)
}

fn serial(der: &CertificateDer<'_>) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.raw_serial_as_string().replace(':', "")
}

/// An HTTP/1.1 connection over `stream`, kept open for several requests.
async fn http1(
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

async fn get(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    host: &str,
    path: &str,
) -> (u16, Value) {
    let (status, text) = get_text(sender, host, path).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn get_text(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    host: &str,
    path: &str,
) -> (u16, String) {
    let request = hyper::Request::get(path)
        .header("host", host)
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The `id` of the `_mta-sts` record the domain's DNS records ask for.
async fn listed_sts_id(app: &TestApp, domain_id: &str, token: &str) -> String {
    let records = app
        .get(&format!("/v1/domains/{domain_id}/dns-records"), token)
        .await;
    let records = records.ok(200)["records"].as_array().unwrap().clone();
    let sts = records
        .iter()
        .find(|r| r["purpose"] == "mta_sts")
        .unwrap_or_else(|| panic!("no MTA-STS record in {records:?}"));
    sts["value"]
        .as_str()
        .unwrap()
        .strip_prefix("v=STSv1; id=")
        .unwrap()
        .to_owned()
}

/// The serial `openssl s_client -starttls {protocol}` sees on `port`.
fn starttls_serial(protocol: &str, port: u16) -> String {
    let shown = Command::new("openssl")
        .args(["s_client", "-starttls", protocol, "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout).to_string();
    let pem = text
        .find("-----BEGIN CERTIFICATE-----")
        .and_then(|start| {
            text[start..]
                .find("-----END CERTIFICATE-----")
                .map(|end| &text[start..start + end + 25])
        })
        .unwrap_or_else(|| panic!("no certificate from s_client: {text}"));
    use rustls::pki_types::pem::PemObject;
    serial(&CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
}

fn certificates(app: &TestApp) -> Arc<mail::certs::Certificates> {
    let master = vault::at_rest::MasterKey::load_or_create(app.data_dir.path()).unwrap();
    let fallback = mail::tls::self_signed_key(app.data_dir.path(), MAIL_HOST).unwrap();
    mail::certs::Certificates::new(app.store.clone(), Arc::new(master), MAIL_HOST, fallback)
}

async fn stored(app: &TestApp) -> Vec<Value> {
    let reply = app.get("/v1/certificates", &app.operator_token).await;
    reply.ok(200).as_array().unwrap().clone()
}

async fn certificates_by_acme_are_served_by_name_and_renewed_without_a_restart(backend: Backend) {
    let app = support::spawn(backend).await;
    let acme = app.enterprise("acme.test", 5).await;
    let host = app.add_hostname(&acme, TENANT_HOST).await;
    app.prove_hostname(&acme, &host).await;
    app.send(
        "PUT",
        &format!("/v1/tenants/{}/branding", acme.tenant_id),
        Some(&acme.admin_token),
        Some(json!({"product_name": "Acme Mail"})),
    )
    .await
    .ok(200);
    let loopback = [std::net::Ipv4Addr::LOCALHOST];
    // Our names resolve to us; autoconfig.acme.test points elsewhere, so no certificate is asked for it.
    for name in [MAIL_HOST, TENANT_HOST, STS_HOST] {
        app.dns.set_a(name, &loopback);
    }
    app.dns.set_a(
        "autoconfig.acme.test",
        &[std::net::Ipv4Addr::new(192, 0, 2, 7)],
    );
    let api_port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();
    let pebble = mail::pebble::Pebble::start(api_port, app.dns.addr());
    let master = vault::at_rest::MasterKey::load_or_create(app.data_dir.path()).unwrap();
    let acme_client = mail::acme::Acme::new(
        app.store.clone(),
        Arc::new(master),
        mail::acme::AcmeConfig {
            directory_url: pebble.directory.clone(),
            contact: vec!["mailto:ops@caliop.test".into()],
            extra_roots: vec![pebble.ca.root()],
            ..mail::acme::AcmeConfig::default()
        },
    )
    .unwrap();
    let mut context = app.worker_context(25, Duration::from_secs(1));
    context.acme = Some(Arc::new(acme_client));

    // The job wants the mail host's and the verified hostname's, and gets them.
    worker::renew_certificates(&context).await.unwrap();
    let listed = stored(&app).await;
    let names: Vec<&str> = listed.iter().map(|c| c["name"].as_str().unwrap()).collect();
    let mut wanted = vec![MAIL_HOST, TENANT_HOST, STS_HOST];
    wanted.sort();
    assert_eq!(names, wanted);
    for certificate in &listed {
        assert!(certificate["last_error"].is_null(), "{certificate}");
        assert!(
            certificate["issuer"].as_str().unwrap().contains("Pebble"),
            "{certificate}"
        );
        assert!(certificate["not_after"].is_string());
    }
    // Only the operator sees them.
    app.get("/v1/certificates", &acme.admin_token)
        .await
        .problem(403);
    app.send(
        "POST",
        &format!("/v1/certificates/{MAIL_HOST}/renew"),
        Some(&acme.admin_token),
        Some(json!({})),
    )
    .await
    .problem(403);

    // HTTPS: each name its own certificate, the tenant's brand on its hostname.
    let certs = certificates(&app);
    assert_eq!(certs.reload().await.unwrap(), 3);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https_port = listener.local_addr().unwrap().port();
    tokio::spawn(api::https::serve_tls(
        listener,
        app.state.clone(),
        certs.server_config(&[b"http/1.1"]).unwrap(),
        std::future::pending(),
    ));
    let root = pebble.issuing_root();
    let root_file = pebble.dir().join("issuing-root.pem");
    std::fs::write(
        &root_file,
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64_lines(root.as_ref())
        ),
    )
    .unwrap();
    let serial_of = |name: &str| {
        listed.iter().find(|c| c["name"] == name).unwrap()["serial"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (tenant_serial, stream) = tls_connect(https_port, TENANT_HOST, &root).await;
    assert_eq!(tenant_serial, serial_of(TENANT_HOST));
    let mut open = http1(stream).await;
    let (status, brand) = get(&mut open, TENANT_HOST, "/v1/public/branding").await;
    assert_eq!(status, 200);
    assert_eq!(brand["product_name"], "Acme Mail");
    // The domain's MTA-STS policy, on its own name, and the id its DNS record carries.
    let (sts_serial, stream) = tls_connect(https_port, STS_HOST, &root).await;
    assert_eq!(sts_serial, serial_of(STS_HOST));
    let mut sts = http1(stream).await;
    let (status, policy) = get_text(&mut sts, STS_HOST, "/.well-known/mta-sts.txt").await;
    assert_eq!(status, 200);
    assert_eq!(
        policy,
        format!("version: STSv1\r\nmode: testing\r\nmx: {MAIL_HOST}\r\nmax_age: 86400\r\n")
    );
    let testing_id = listed_sts_id(&app, &acme.domain_id, &acme.admin_token).await;
    assert_eq!(testing_id, tenants::dns_records::mta_sts_id(&policy));
    let chosen = app
        .send(
            "PUT",
            &format!("/v1/domains/{}/mta-sts", acme.domain_id),
            Some(&acme.admin_token),
            Some(json!({"mode": "enforce"})),
        )
        .await;
    assert_eq!(chosen.ok(200)["mode"], "enforce");
    let (_, enforced) = get_text(&mut sts, STS_HOST, "/.well-known/mta-sts.txt").await;
    assert!(enforced.contains("mode: enforce\r\n"), "{enforced}");
    let enforce_id = listed_sts_id(&app, &acme.domain_id, &acme.admin_token).await;
    assert_ne!(enforce_id, testing_id, "the id changes with the policy");
    assert_eq!(enforce_id, chosen.body["id"]);
    // An independent MTA-STS client (postfix-mta-sts-resolver) fetches it as a sender would, and accepts it.
    app.dns.set_txt(
        "_mta-sts.acme.test",
        &[&format!("v=STSv1; id={enforce_id}")],
    );
    let root_pem = root_file.clone();
    let python = std::env::var("CALIOP_TEST_PYTHON")
        .expect("CALIOP_TEST_PYTHON names the venv python with postfix-mta-sts-resolver (set by scripts/test)");
    let dns = app.dns.addr().to_string();
    let fetched = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/mta_sts/fetch.py"
            ))
            .args(["acme.test", &dns, &https_port.to_string()])
            .arg(&root_pem)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let verdict: Value = serde_json::from_slice(&fetched.stdout)
        .unwrap_or_else(|_| panic!("postfix-mta-sts-resolver said: {fetched:?}"));
    assert_eq!(verdict["result"], "VALID", "{verdict} {fetched:?}");
    assert_eq!(verdict["id"], enforce_id.as_str());
    assert_eq!(verdict["policy"]["mode"], "enforce");
    assert_eq!(verdict["policy"]["mx"], json!([MAIL_HOST]));
    // Another host has no policy here.
    let (status, _) = get_text(&mut sts, "mta-sts.unknown.test", "/.well-known/mta-sts.txt").await;
    assert_eq!(status, 404);
    let (mail_serial, _) = tls_connect(https_port, MAIL_HOST, &root).await;
    assert_eq!(mail_serial, serial_of(MAIL_HOST));
    assert_ne!(mail_serial, tenant_serial);

    // STARTTLS on an MX serving these certificates: a client naming nothing gets the mail host's.
    let smtp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let smtp_port = smtp.local_addr().unwrap().port();
    let server = mail::smtp::SmtpServer::new(
        support::smtp_config(),
        app.inbound.clone(),
        Some(certs.server_config(&[]).unwrap()),
    );
    tokio::spawn(server.serve(smtp, std::future::pending()));
    let seen = tokio::task::spawn_blocking(move || starttls_serial("smtp", smtp_port))
        .await
        .unwrap();
    assert_eq!(seen, serial_of(MAIL_HOST));
    // And IMAP's STARTTLS.
    let imap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let imap_port = imap.local_addr().unwrap().port();
    let imap_server = mail::imap::ImapServer::new(
        support::imap_config(),
        app.inbound.clone(),
        Arc::new(api::ApiConfig::default().login_guard()),
        Some(certs.server_config(&[]).unwrap()),
    );
    tokio::spawn(imap_server.serve(imap, false, std::future::pending()));
    let seen = tokio::task::spawn_blocking(move || starttls_serial("imap", imap_port))
        .await
        .unwrap();
    assert_eq!(seen, serial_of(MAIL_HOST));
    // curl, trusting only the CA's root, gets the tenant's brand by its name.
    let curl = Command::new("curl")
        .args(["-sf", "--cacert"])
        .arg(&root_file)
        .arg("--resolve")
        .arg(format!("{TENANT_HOST}:{https_port}:127.0.0.1"))
        .arg(format!(
            "https://{TENANT_HOST}:{https_port}/v1/public/branding"
        ))
        .output()
        .unwrap();
    assert!(curl.status.success(), "{curl:?}");
    let brand: Value = serde_json::from_slice(&curl.stdout).unwrap();
    assert_eq!(brand["product_name"], "Acme Mail");

    // Each domain's DNS records list the DANE record of our MX: the hash of its certificate's key.
    let before = app.store.certificates().await.unwrap();
    let mx_chain = before
        .iter()
        .find(|c| c.name == MAIL_HOST)
        .unwrap()
        .chain_pem
        .clone()
        .unwrap();
    let records = app
        .get(
            &format!("/v1/domains/{}/dns-records", acme.domain_id),
            &acme.admin_token,
        )
        .await;
    let records = records.ok(200)["records"].as_array().unwrap().clone();
    let dane = records
        .iter()
        .find(|r| r["purpose"] == "dane")
        .expect("a DANE record");
    assert_eq!(dane["type"], "TLSA");
    assert_eq!(dane["name"], format!("_25._tcp.{MAIL_HOST}"));
    assert_eq!(dane["value"], mail::acme::tlsa(&mx_chain).unwrap().as_str());
    let tenant_tlsa = mail::acme::tlsa(
        before
            .iter()
            .find(|c| c.name == TENANT_HOST)
            .unwrap()
            .chain_pem
            .as_deref()
            .unwrap(),
    )
    .unwrap();

    // A forced renewal: a new certificate, served without a restart; the open connection lives on.
    app.post(
        &format!("/v1/certificates/{TENANT_HOST}/renew"),
        &app.operator_token,
        json!({}),
    )
    .await
    .ok(202);
    app.post(
        "/v1/certificates/nowhere.test/renew",
        &app.operator_token,
        json!({}),
    )
    .await
    .problem(404);
    worker::renew_certificates(&context).await.unwrap();
    let renewed = stored(&app).await;
    let new_serial = renewed.iter().find(|c| c["name"] == TENANT_HOST).unwrap()["serial"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_serial, tenant_serial, "a new certificate was issued");
    let chain_of = |certificates: &[tenants::store::StoredCertificate], name: &str| {
        certificates
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .chain_pem
            .clone()
            .unwrap()
    };
    assert_eq!(
        mail::acme::tlsa(&chain_of(
            &app.store.certificates().await.unwrap(),
            TENANT_HOST
        ))
        .unwrap(),
        tenant_tlsa,
        "the key is kept across renewals: a DANE record of it stays true"
    );
    assert_eq!(
        renewed.iter().find(|c| c["name"] == MAIL_HOST).unwrap()["serial"],
        serial_of(MAIL_HOST).as_str(),
        "the mail host's was not due"
    );
    certs.reload().await.unwrap();
    let (served, _) = tls_connect(https_port, TENANT_HOST, &root).await;
    assert_eq!(served, new_serial, "the new certificate is served at once");
    let (status, _) = get(&mut open, TENANT_HOST, "/v1/public/branding").await;
    assert_eq!(
        status, 200,
        "a connection opened before the swap still works"
    );

    // The operator's scraper sees each certificate's time left, and no alert.
    let metrics = scrape(&app).await;
    assert!(
        metrics.contains(&format!(
            "caliop_certificate_expiry_seconds{{name=\"{TENANT_HOST}\"}} "
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("caliop_certificates_expiring_soon 0\n"),
        "{metrics}"
    );

    // Another process on the same database serves the same certificate, asking no CA.
    drop(pebble);
    let other = certificates(&app);
    other.reload().await.unwrap();
    let theirs = other.for_name(Some(TENANT_HOST));
    let ours = certs.for_name(Some(TENANT_HOST));
    assert_eq!(theirs.cert[0], ours.cert[0]);
    // A certificate whose renewals kept failing until 13 days before expiry is an alert.
    let stored = app.store.certificates().await.unwrap();
    let tenant = stored.iter().find(|c| c.name == TENANT_HOST).unwrap();
    app.store
        .certificate_issued(
            TENANT_HOST,
            tenants::store::IssuedCertificate {
                chain_pem: tenant.chain_pem.as_deref().unwrap(),
                key_sealed: tenant.key_sealed.as_deref().unwrap(),
                issuer: tenant.issuer.as_deref().unwrap(),
                serial: tenant.serial.as_deref().unwrap(),
                not_after: chrono::Utc::now() + chrono::Duration::days(13),
                renew_at: chrono::Utc::now() + chrono::Duration::hours(1),
            },
        )
        .await
        .unwrap();
    let metrics = scrape(&app).await;
    assert!(
        metrics.contains("caliop_certificates_expiring_soon 1\n"),
        "{metrics}"
    );
    // A name without a certificate never gets another tenant's: it gets the mail host's.
    assert_eq!(
        serial(&other.for_name(Some("elsewhere.test")).cert[0]),
        serial_of(MAIL_HOST)
    );
}

on_both_backends!(certificates_by_acme_are_served_by_name_and_renewed_without_a_restart);

/// PEM's body: base64 in lines of 64.
fn base64_lines(der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    text.as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the operator's scraper reads at `/metrics`.
async fn scrape(app: &TestApp) -> String {
    let response = app
        .http
        .get(format!("{}/metrics", app.metrics))
        .send()
        .await
        .unwrap();
    response.text().await.unwrap()
}
