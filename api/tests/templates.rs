//! Branded system mail against the real API, on both backends: every
//! template in both languages for two tenants of different brands shows
//! only its own brand and is HTML an independent parser (html5lib, strict)
//! accepts; overrides are checked before they are saved and inherited;
//! a welcome mail leaves from the tenant's own domain, DKIM-signed, and an
//! independent verifier (dkimpy, in the sink) accepts the signature.

mod support;

use std::time::Duration;

use mail::sink::Sink;
use serde_json::{Value, json};
use support::TestApp;
use tenants::{Backend, on_both_backends};

/// Parses `html` with html5lib in strict mode; the error if it does not parse cleanly.
fn html5_errors(html: &str) -> Option<String> {
    use std::io::Write;
    let python =
        std::env::var("CALIOP_TEST_PYTHON").expect("CALIOP_TEST_PYTHON (set by scripts/test)");
    let mut child = std::process::Command::new(python)
        .args(["-c", "import sys, html5lib\ntry:\n    html5lib.HTMLParser(strict=True).parse(sys.stdin.read())\nexcept Exception as e:\n    print(repr(e)); sys.exit(1)"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python with html5lib");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(html.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (!out.status.success()).then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn branded(
    app: &TestApp,
    domain: &str,
    name: &str,
    primary: &str,
    accent: &str,
    language: &str,
) -> support::Enterprise {
    let e = app.enterprise(domain, 5).await;
    app.post(
        &format!("/v1/domains/{}/verify", e.domain_id),
        &app.operator_token,
        json!({"force": true}),
    )
    .await
    .ok(200);
    app.send("PUT", &format!("/v1/tenants/{}/branding", e.tenant_id), Some(&e.admin_token),
        Some(json!({"product_name": name, "primary_color": primary, "accent_color": accent, "default_language": language,
                    "support_address": format!("help@{domain}"), "legal_url": format!("https://{domain}/legal")})))
        .await
        .ok(200);
    e
}

on_both_backends!(
    every_template_in_both_languages_shows_only_its_tenants_brand,
    overrides_are_checked_and_inherited,
    a_welcome_mail_leaves_from_the_tenants_domain_signed_by_it,
);

async fn every_template_in_both_languages_shows_only_its_tenants_brand(backend: Backend) {
    let app = support::spawn(backend).await;
    let acme = branded(
        &app,
        "acme.test",
        "Acme Secure Mail",
        "#9d174d",
        "#1e40af",
        "en",
    )
    .await;
    let globex = branded(
        &app,
        "globex.test",
        "Globex Post",
        "#166534",
        "#7c2d12",
        "fr",
    )
    .await;
    let list = app
        .get(
            &format!("/v1/tenants/{}/templates", acme.tenant_id),
            &acme.admin_token,
        )
        .await;
    let list = list.ok(200).as_array().unwrap().clone();
    assert_eq!(list.len(), 12, "six templates, two languages");
    let brands = [
        (
            &acme,
            ["Acme Secure Mail", "#9d174d", "#1e40af", "acme.test"],
        ),
        (
            &globex,
            ["Globex Post", "#166534", "#7c2d12", "globex.test"],
        ),
    ];
    for (i, (tenant, own)) in brands.iter().enumerate() {
        let (_, other) = &brands[1 - i];
        for t in &list {
            let (name, language) = (t["name"].as_str().unwrap(), t["language"].as_str().unwrap());
            let preview = app
                .get(
                    &format!(
                        "/v1/tenants/{}/templates/{name}/{language}/preview",
                        tenant.tenant_id
                    ),
                    &tenant.admin_token,
                )
                .await;
            let preview = preview.ok(200);
            let whole = format!(
                "{}\n{}\n{}",
                preview["subject"], preview["text"], preview["html"]
            );
            for mark in other {
                assert!(
                    !whole.contains(mark),
                    "{name}.{language} of {} shows {mark}: {whole}",
                    own[0]
                );
            }
            let html = preview["html"].as_str().unwrap();
            assert!(
                html.contains(own[0]) && html.contains(own[1]),
                "{name}.{language} carries its brand"
            );
            assert!(
                html.contains(&format!("help@{}", own[3])),
                "its support address"
            );
            assert!(html.contains(&format!("lang=\"{language}\"")));
            assert!(
                !whole.contains("{{"),
                "{name}.{language}: every placeholder filled"
            );
            if let Some(errors) = html5_errors(html) {
                panic!("{name}.{language} is not clean HTML: {errors}\n{html}");
            }
        }
    }
    // A French subject is French.
    let fr = app
        .get(
            &format!(
                "/v1/tenants/{}/templates/welcome/fr/preview",
                globex.tenant_id
            ),
            &globex.admin_token,
        )
        .await;
    assert!(
        fr.ok(200)["subject"]
            .as_str()
            .unwrap()
            .starts_with("Bienvenue sur Globex Post")
    );
    // The parser really does refuse broken HTML.
    assert!(
        html5_errors(
            "<!DOCTYPE html><html><head><title>x</title></head><body><p>a</div></body></html>"
        )
        .is_some()
    );
}

async fn overrides_are_checked_and_inherited(backend: Backend) {
    let app = support::spawn(backend).await;
    let (reseller_id, child_id) = app.reseller_and_child(1_000_000).await;
    let path = format!("/v1/tenants/{reseller_id}/templates/welcome/en");
    let unknown = app
        .send(
            "PUT",
            &path,
            Some(&app.operator_token),
            Some(json!({"subject": "Hi {{first_name}}", "text": "x", "html": "<p>x</p>"})),
        )
        .await;
    assert!(
        unknown
            .problem(422)
            .contains("unknown variable `{{first_name}}`"),
        "{unknown:?}"
    );
    let script = app
        .send(
            "PUT",
            &path,
            Some(&app.operator_token),
            Some(json!({"subject": "Hi", "text": "x", "html": "<p>x</p><script>1</script>"})),
        )
        .await;
    assert!(script.problem(422).contains("<script"));
    let saved = app
        .send("PUT", &path, Some(&app.operator_token), Some(json!({"subject": "Your {{product_name}} mailbox {{address}}",
            "text": "Hello {{display_name}}, sign in at {{signin_url}}.", "html": "<p>Hello {{display_name}}</p>"})))
        .await;
    assert_eq!(
        saved.ok(200)["subject"],
        "Your Caliop mailbox camille@example.org"
    );
    let inherited = app
        .get(
            &format!("/v1/tenants/{child_id}/templates/welcome/en/preview"),
            &app.operator_token,
        )
        .await;
    assert!(
        inherited.ok(200)["html"]
            .as_str()
            .unwrap()
            .contains("<p>Hello Camille Martin</p>"),
        "the child inherits the wording"
    );
    let list = app
        .get(
            &format!("/v1/tenants/{child_id}/templates"),
            &app.operator_token,
        )
        .await;
    let welcome = list
        .ok(200)
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "welcome" && t["language"] == "en")
        .unwrap()
        .clone();
    assert_eq!(welcome["overridden_by"], Value::String(reseller_id.clone()));
    app.delete(&path, &app.operator_token).await;
    let restored = app
        .get(
            &format!("/v1/tenants/{child_id}/templates/welcome/en/preview"),
            &app.operator_token,
        )
        .await;
    assert!(
        restored.ok(200)["subject"]
            .as_str()
            .unwrap()
            .starts_with("Welcome to Caliop")
    );
    app.get(
        &format!("/v1/tenants/{child_id}/templates/nonsense/en/preview"),
        &app.operator_token,
    )
    .await
    .problem(404);
    app.get(
        &format!("/v1/tenants/{child_id}/templates/welcome/de/preview"),
        &app.operator_token,
    )
    .await
    .problem(404);
}

async fn a_welcome_mail_leaves_from_the_tenants_domain_signed_by_it(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = branded(
        &app,
        "acme.test",
        "Acme Secure Mail",
        "#9d174d",
        "#1e40af",
        "en",
    )
    .await;
    app.publish_dkim(&e.domain_id, &e.admin_token).await;
    app.dns.set_mx("remote.test", &[(10, "mx.remote.test")]);
    app.dns
        .set_a("mx.remote.test", &[std::net::Ipv4Addr::LOCALHOST]);
    let dns = app.dns.addr().to_string();
    let sink = Sink::start(&["--dns", &dns]);
    let workers = app.start_workers(sink.port, Duration::from_secs(1));
    let created = app
        .post(&format!("/v1/tenants/{}/accounts", e.tenant_id), &e.admin_token,
            json!({"address": "newcomer@acme.test", "display_name": "Nora Newcomer", "password": support::PASSWORD,
                   "recovery_address": "nora@remote.test"}))
        .await;
    created.ok(201);
    let received = sink.wait_for(1, Duration::from_secs(20)).await;
    workers.stop().await;
    assert_eq!(received.len(), 1, "{received:?}");
    let m = &received[0];
    assert_eq!(m["mail_from"], "no-reply@acme.test");
    assert_eq!(m["rcpt_tos"], json!(["nora@remote.test"]));
    let data = m["data"].as_str().unwrap();
    assert!(
        data.contains("Subject: Welcome to Acme Secure Mail, Nora Newcomer"),
        "{data}"
    );
    assert!(data.contains("no-reply@acme.test"));
    assert!(
        !data.contains("Caliop"),
        "nothing of Caliop's brand: {data}"
    );
    let dkim = m["dkim"].as_array().unwrap();
    assert!(!dkim.is_empty(), "signed");
    for signature in dkim {
        assert_eq!(signature["domain"], "acme.test");
        assert_eq!(
            signature["verified"], true,
            "dkimpy verifies the tenant's signature: {signature}"
        );
    }
}
