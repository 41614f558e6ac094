//! White label against the real API, on both backends: brands and their
//! inheritance, readable colours, uploads that are what they claim and run
//! nothing, custom hostnames proven through DNS and resolved from the Host
//! header (never to another tenant's brand), and mail client
//! autoconfiguration.

mod support;

use quick_xml::events::Event;
use serde_json::{Value, json};
use support::TestApp;
use tenants::{Backend, on_both_backends};

const PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
const SAFE_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><rect width="10" height="10" fill="#0b5"/></svg>"##;

async fn upload(
    app: &TestApp,
    path: &str,
    token: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> support::Reply {
    app.raw(
        app.http
            .put(format!("{}{path}", app.base))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(bytes),
    )
    .await
}

/// Sends only the head of an upload of `length` bytes and reads the answer.
async fn announce_upload(app: &TestApp, path: &str, token: &str, length: usize) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nContent-Type: image/png\r\n\
         Content-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((headers, body)) = text.split_once("\r\n\r\n") {
            let length = headers.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap())
            });
            if length.is_some_and(|l| body.len() >= l) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

async fn on_host(app: &TestApp, path: &str, host: &str) -> support::Reply {
    app.raw(
        app.http
            .get(format!("{}{path}", app.base))
            .header("host", host),
    )
    .await
}

on_both_backends!(
    brands_inherit_and_stay_readable,
    uploads_are_what_they_claim_and_run_nothing,
    a_hostname_shows_its_tenants_brand_once_proven_and_only_its,
    mail_clients_configure_themselves_from_an_address,
);

async fn brands_inherit_and_stay_readable(backend: Backend) {
    let app = support::spawn(backend).await;
    let (reseller_id, child_id) = app.reseller_and_child(1_000_000).await;
    app.send("PUT", &format!("/v1/tenants/{reseller_id}/branding"), Some(&app.operator_token),
        Some(json!({"product_name": "HostMail", "primary_color": "#6d28d9", "default_language": "fr",
                    "support_address": "help@hostmail.example", "legal_url": "https://hostmail.example/legal"})))
        .await
        .ok(200);
    app.send(
        "PUT",
        &format!("/v1/tenants/{child_id}/branding"),
        Some(&app.operator_token),
        Some(json!({"accent_color": "#b45309"})),
    )
    .await
    .ok(200);
    let view = app
        .get(
            &format!("/v1/tenants/{child_id}/branding"),
            &app.operator_token,
        )
        .await;
    let view = view.ok(200);
    assert_eq!(view["own"]["product_name"], Value::Null);
    assert_eq!(
        view["effective"]["product_name"], "HostMail",
        "inherited from the reseller"
    );
    assert_eq!(view["effective"]["primary_color"], "#6d28d9");
    assert_eq!(view["effective"]["accent_color"], "#b45309", "its own");
    assert_eq!(view["effective"]["default_language"], "fr");
    let operator = app
        .get(
            &format!("/v1/tenants/{}/branding", app.state.operator_tenant),
            &app.operator_token,
        )
        .await;
    assert_eq!(operator.ok(200)["effective"]["product_name"], "Caliop");

    for (body, why) in [
        (json!({"primary_color": "#fde047"}), "contrast of"),
        (json!({"accent_color": "red"}), "#rrggbb"),
        (json!({"default_language": "de"}), "`default_language`"),
        (
            json!({"legal_url": "http://hostmail.example/legal"}),
            "https://",
        ),
        (
            json!({"support_address": "not an address"}),
            "`support_address`",
        ),
        (json!({"product_name": ""}), "`product_name`"),
    ] {
        let reply = app
            .send(
                "PUT",
                &format!("/v1/tenants/{child_id}/branding"),
                Some(&app.operator_token),
                Some(body.clone()),
            )
            .await;
        let detail = reply.problem(422);
        assert!(detail.contains(why), "{body}: {detail}");
    }
}

async fn uploads_are_what_they_claim_and_run_nothing(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let logo = format!("/v1/tenants/{}/branding/logo", e.tenant_id);
    // A 20 MB logo is refused from its Content-Length, before its body is read.
    let (status, answer) = announce_upload(&app, &logo, &e.admin_token, 20 * 1024 * 1024).await;
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer.contains("the logo is 20.0 MiB; the limit is 512 KiB"),
        "{answer}"
    );
    let script = upload(
        &app,
        &logo,
        &e.admin_token,
        "image/svg+xml",
        br#"<svg xmlns="http://www.w3.org/2000/svg"><script>fetch('/v1/tenants')</script></svg>"#
            .to_vec(),
    )
    .await;
    assert!(
        script.problem(422).contains("a <script> element"),
        "{script:?}"
    );
    let tracker = upload(&app, &logo, &e.admin_token, "image/svg+xml",
        br#"<svg xmlns="http://www.w3.org/2000/svg"><image href="https://tracker.example/pixel.png"/></svg>"#.to_vec()).await;
    assert!(
        tracker
            .problem(422)
            .contains("external reference href=\"https://tracker.example/pixel.png\""),
        "{tracker:?}"
    );
    let jpeg = upload(
        &app,
        &logo,
        &e.admin_token,
        "image/png",
        b"\xff\xd8\xff\xe0\0\x10JFIF\0\x01".to_vec(),
    )
    .await;
    assert!(
        jpeg.problem(422)
            .contains("declared as image/png but its bytes are image/jpeg"),
        "{jpeg:?}"
    );
    let gif = upload(&app, &logo, &e.admin_token, "image/gif", b"GIF89a".to_vec()).await;
    assert!(gif.problem(422).contains("must be sent as"));
    let favicon = format!("/v1/tenants/{}/branding/favicon", e.tenant_id);
    let (status, answer) = announce_upload(&app, &favicon, &e.admin_token, 100 * 1024).await;
    assert_eq!(status, 413);
    assert!(
        answer.contains("the favicon is 100 KiB; the limit is 64 KiB"),
        "{answer}"
    );
    let brand = app
        .get(
            &format!("/v1/tenants/{}/branding", e.tenant_id),
            &e.admin_token,
        )
        .await;
    assert!(
        brand.ok(200)["logo_url"].is_null(),
        "nothing refused was stored"
    );

    let ok = upload(
        &app,
        &logo,
        &e.admin_token,
        "image/svg+xml",
        SAFE_SVG.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(
        ok.ok(200)["logo_url"],
        format!("/v1/tenants/{}/branding/logo", e.tenant_id)
    );
    let served = app
        .raw(
            app.http
                .get(format!("{}{logo}", app.base))
                .bearer_auth(&e.admin_token),
        )
        .await;
    assert_eq!(served.status.as_u16(), 200);
    assert_eq!(served.content_type, "image/svg+xml");
    assert_eq!(served.text(), SAFE_SVG);
    let csp = served
        .headers
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("sandbox"),
        "{csp}"
    );
    upload(&app, &favicon, &e.admin_token, "image/png", PNG.to_vec())
        .await
        .ok(200);
}

async fn a_hostname_shows_its_tenants_brand_once_proven_and_only_its(backend: Backend) {
    let app = support::spawn(backend).await;
    let acme = app.enterprise("acme.test", 5).await;
    let globex = app.enterprise("globex.test", 5).await;
    for (e, name, color) in [
        (&acme, "Acme Secure Mail", "#9d174d"),
        (&globex, "Globex Post", "#166534"),
    ] {
        app.send(
            "PUT",
            &format!("/v1/tenants/{}/branding", e.tenant_id),
            Some(&e.admin_token),
            Some(json!({"product_name": name, "primary_color": color})),
        )
        .await
        .ok(200);
    }
    upload(
        &app,
        &format!("/v1/tenants/{}/branding/logo", acme.tenant_id),
        &acme.admin_token,
        "image/png",
        PNG.to_vec(),
    )
    .await
    .ok(200);
    let created = app
        .post(
            &format!("/v1/tenants/{}/hostnames", acme.tenant_id),
            &acme.admin_token,
            json!({"hostname": "Mail-Admin.Acme.test"}),
        )
        .await;
    let host = created.ok(201).clone();
    assert_eq!(host["hostname"], "mail-admin.acme.test");
    assert_eq!(host["verified"], false);
    assert_eq!(
        host["verification_record"]["name"],
        "_caliop-hostname.mail-admin.acme.test"
    );
    // Another tenant cannot claim it.
    let stolen = app
        .post(
            &format!("/v1/tenants/{}/hostnames", globex.tenant_id),
            &globex.admin_token,
            json!({"hostname": "mail-admin.acme.test"}),
        )
        .await;
    assert!(stolen.problem(409).contains("already registered"));

    // Unverified: the operator's brand, not Acme's.
    let before = on_host(&app, "/v1/public/branding", "mail-admin.acme.test").await;
    assert_eq!(before.ok(200)["product_name"], "Caliop");
    let id = host["id"].as_str().unwrap();
    let missing = app
        .post(
            &format!("/v1/hostnames/{id}/verify"),
            &acme.admin_token,
            json!({}),
        )
        .await;
    assert!(
        missing
            .problem(409)
            .contains("no TXT record at _caliop-hostname.mail-admin.acme.test")
    );
    app.dns.set_txt(
        "_caliop-hostname.mail-admin.acme.test",
        &["caliop-hostname=wrong"],
    );
    let wrong = app
        .post(
            &format!("/v1/hostnames/{id}/verify"),
            &acme.admin_token,
            json!({}),
        )
        .await;
    assert!(wrong.problem(409).contains("caliop-hostname=wrong"));
    app.dns.set_txt(
        "_caliop-hostname.mail-admin.acme.test",
        &[host["verification_record"]["value"].as_str().unwrap()],
    );
    let verified = app
        .post(
            &format!("/v1/hostnames/{id}/verify"),
            &acme.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(verified.ok(200)["verified"], true);

    // Verified: Acme's brand and logo on its host (with or without a port), the operator's anywhere else.
    for host in ["mail-admin.acme.test", "mail-admin.acme.test:8443"] {
        let brand = on_host(&app, "/v1/public/branding", host).await;
        let brand = brand.ok(200);
        assert_eq!(brand["product_name"], "Acme Secure Mail", "{host}");
        assert_eq!(brand["primary_color"], "#9d174d");
        assert!(!brand.to_string().contains("Globex") && !brand.to_string().contains("#166534"));
    }
    let logo = on_host(&app, "/v1/public/branding/logo", "mail-admin.acme.test").await;
    assert_eq!(logo.status.as_u16(), 200);
    assert_eq!(logo.content_type, "image/png");
    for unknown in ["unknown.example", "globex.test", "localhost"] {
        let brand = on_host(&app, "/v1/public/branding", unknown).await;
        assert_eq!(brand.ok(200)["product_name"], "Caliop", "{unknown}");
    }
    on_host(&app, "/v1/public/branding/logo", "unknown.example")
        .await
        .problem(404);
    // Removed: the host shows the operator's brand again.
    app.delete(&format!("/v1/hostnames/{id}"), &acme.admin_token)
        .await;
    let after = on_host(&app, "/v1/public/branding", "mail-admin.acme.test").await;
    assert_eq!(after.ok(200)["product_name"], "Caliop");
}

/// Element paths with their text, in document order.
fn elements(xml: &str) -> Vec<(String, String, Vec<(String, String)>)> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut out = Vec::new();
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) => {
                stack.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                let attributes = e
                    .attributes()
                    .map(|a| {
                        let a = a.unwrap();
                        (
                            String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                            String::from_utf8_lossy(&a.value).into_owned(),
                        )
                    })
                    .collect();
                out.push((stack.join("/"), String::new(), attributes));
            }
            Event::Text(t) => {
                if let Some(last) = out.last_mut() {
                    last.1.push_str(&String::from_utf8_lossy(t.as_ref()));
                }
            }
            // `&amp;` and its kind arrive apart from the text around them.
            Event::GeneralRef(r) => {
                let resolved = match r.as_ref() {
                    b"amp" => "&",
                    b"lt" => "<",
                    b"gt" => ">",
                    b"quot" => "\"",
                    b"apos" => "'",
                    other => panic!("unexpected entity &{};", String::from_utf8_lossy(other)),
                };
                if let Some(last) = out.last_mut() {
                    last.1.push_str(resolved);
                }
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(stack.is_empty(), "every element is closed");
    out.into_iter()
        .map(|(p, t, a)| (p, t.trim().to_owned(), a))
        .collect()
}

fn text<'a>(found: &'a [(String, String, Vec<(String, String)>)], path: &str) -> Vec<&'a str> {
    found
        .iter()
        .filter(|(p, _, _)| p == path)
        .map(|(_, t, _)| t.as_str())
        .collect()
}

async fn mail_clients_configure_themselves_from_an_address(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    app.name_brand(&e.tenant_id, &e.admin_token, "Acme & Sons Mail")
        .await;
    let by_address = app
        .raw(app.http.get(format!(
            "{}/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=alice%40acme.test",
            app.base
        )))
        .await;
    assert_eq!(by_address.status.as_u16(), 200);
    assert!(by_address.content_type.starts_with("application/xml"));
    let by_host = on_host(&app, "/mail/config-v1.1.xml", "autoconfig.acme.test").await;
    assert_eq!(
        by_host.text(),
        by_address.text(),
        "autoconfig.{{domain}} serves the same"
    );
    let found = elements(by_address.text());
    // The structure of Mozilla's config-v1.1 format.
    assert_eq!(found[0].0, "clientConfig");
    assert!(found[0].2.contains(&("version".into(), "1.1".into())));
    let provider = found
        .iter()
        .find(|(p, _, _)| p == "clientConfig/emailProvider")
        .unwrap();
    assert!(provider.2.contains(&("id".into(), "acme.test".into())));
    assert_eq!(
        text(&found, "clientConfig/emailProvider/domain"),
        ["acme.test"]
    );
    assert_eq!(
        text(&found, "clientConfig/emailProvider/displayName"),
        ["Acme & Sons Mail"],
        "escaped and read back"
    );
    let incoming = found
        .iter()
        .find(|(p, _, _)| p == "clientConfig/emailProvider/incomingServer")
        .unwrap();
    assert!(incoming.2.contains(&("type".into(), "imap".into())));
    assert_eq!(
        text(&found, "clientConfig/emailProvider/incomingServer/hostname"),
        [support::MAIL_HOST]
    );
    assert_eq!(
        text(&found, "clientConfig/emailProvider/incomingServer/port"),
        ["993"]
    );
    assert_eq!(
        text(
            &found,
            "clientConfig/emailProvider/incomingServer/socketType"
        ),
        ["SSL"]
    );
    assert_eq!(
        text(&found, "clientConfig/emailProvider/incomingServer/username"),
        ["%EMAILADDRESS%"]
    );
    let outgoing = found
        .iter()
        .find(|(p, _, _)| p == "clientConfig/emailProvider/outgoingServer")
        .unwrap();
    assert!(outgoing.2.contains(&("type".into(), "smtp".into())));
    assert_eq!(
        text(&found, "clientConfig/emailProvider/outgoingServer/hostname"),
        [support::MAIL_HOST]
    );
    assert_eq!(
        text(&found, "clientConfig/emailProvider/outgoingServer/port"),
        ["587"]
    );
    assert_eq!(
        text(
            &found,
            "clientConfig/emailProvider/outgoingServer/socketType"
        ),
        ["STARTTLS"]
    );
    assert_eq!(
        text(
            &found,
            "clientConfig/emailProvider/outgoingServer/authentication"
        ),
        ["password-cleartext"]
    );
    // Not hosted here: nothing.
    let elsewhere = app
        .raw(app.http.get(format!(
            "{}/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=bob%40gmail.example",
            app.base
        )))
        .await;
    assert_eq!(elsewhere.status.as_u16(), 404);

    // Outlook's POX autodiscover.
    let request = r#"<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>alice@acme.test</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>"#;
    let pox = app
        .raw(
            app.http
                .post(format!("{}/autodiscover/autodiscover.xml", app.base))
                .header("content-type", "text/xml")
                .body(request),
        )
        .await;
    assert_eq!(pox.status.as_u16(), 200);
    let found = elements(pox.text());
    let protocols: Vec<&str> = text(&found, "Autodiscover/Response/Account/Protocol/Type");
    assert_eq!(protocols, ["IMAP", "SMTP"]);
    assert_eq!(
        text(&found, "Autodiscover/Response/Account/Protocol/Port"),
        ["993", "587"]
    );
    assert_eq!(
        text(&found, "Autodiscover/Response/Account/Protocol/LoginName"),
        ["alice@acme.test", "alice@acme.test"]
    );
    // And the SRV records of RFC 6186 are among the domain's DNS records.
    let records = app
        .get(
            &format!("/v1/domains/{}/dns-records", e.domain_id),
            &e.admin_token,
        )
        .await;
    let names: Vec<String> = records.ok(200)["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("_submission._tcp.")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("_imaps._tcp.") || n.starts_with("_imap._tcp.")),
        "{names:?}"
    );
}

on_both_backends!(signup_on_a_tenants_hostname_makes_an_account_of_that_tenant);

async fn signup_on_a_tenants_hostname_makes_an_account_of_that_tenant(backend: Backend) {
    let app = support::spawn(backend).await;
    let acme = app.enterprise("acme.test", 5).await;
    app.claim(&acme, "acme-claim.test").await;
    let unverified = app
        .send(
            "PUT",
            &format!("/v1/tenants/{}/self-signup", acme.tenant_id),
            Some(&acme.admin_token),
            Some(json!({"domain": "acme-claim.test"})),
        )
        .await;
    assert!(unverified.problem(422).contains("not a verified domain"));
    app.send(
        "PUT",
        &format!("/v1/tenants/{}/self-signup", acme.tenant_id),
        Some(&acme.admin_token),
        Some(json!({"domain": "acme.test"})),
    )
    .await
    .ok(200);
    let host = app.add_hostname(&acme, "join.acme.test").await;
    app.prove_hostname(&acme, &host).await;

    // Anywhere else there is no signup on this instance (no public domain configured).
    let elsewhere = on_host(&app, "/v1/public/signup/challenge", "unknown.example").await;
    elsewhere.problem(503);
    let challenge = on_host(&app, "/v1/public/signup/challenge", "join.acme.test").await;
    let challenge = challenge.ok(200).clone();
    assert_eq!(
        challenge["domain"], "acme.test",
        "the tenant's self-signup domain"
    );
    let c = challenge["challenge"].as_str().unwrap();
    let counter = billing::signup::solve(
        c,
        "zoe@acme.test",
        challenge["difficulty"].as_u64().unwrap() as u8,
    );
    let signed_up = app
        .raw(app.http.post(format!("{}/v1/public/signup", app.base)).header("host", "join.acme.test")
            .json(&json!({"address": "zoe", "password": support::PASSWORD, "recovery_address": "zoe.home@elsewhere.test",
                "stamp": {"challenge": c, "counter": counter}})))
        .await;
    assert_eq!(signed_up.ok(201)["address"], "zoe@acme.test");
    let zoe = signed_up.body["account_id"].as_str().unwrap();
    let zoe_token = app.login("zoe@acme.test", support::PASSWORD).await;
    assert_eq!(
        app.get(&format!("/v1/accounts/{zoe}"), &zoe_token)
            .await
            .ok(200)["recovery_address"],
        "zoe.home@elsewhere.test",
        "the recovery address given at signup"
    );
    let accounts = app
        .get(
            &format!("/v1/tenants/{}/accounts", acme.tenant_id),
            &acme.admin_token,
        )
        .await;
    let addresses: Vec<&str> = accounts.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["address"].as_str().unwrap())
        .collect();
    assert!(
        addresses.contains(&"zoe@acme.test"),
        "an account of the tenant: {addresses:?}"
    );
    assert!(
        !app.login("zoe@acme.test", support::PASSWORD)
            .await
            .is_empty()
    );
}
