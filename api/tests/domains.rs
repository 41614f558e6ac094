//! Domain ownership and DNS records, checked against a real DNS server on
//! loopback that the test fills as a tenant would fill its zone.

mod support;

use serde_json::{Value, json};
use tenants::{Backend, on_both_backends};

on_both_backends!(
    verification_reads_the_txt_record,
    dns_records_report_live_status,
    only_the_operator_can_force,
    a_background_job_verifies_the_domain_once_published,
    dkim_rotation_switches_once_the_new_keys_are_published,
    tls_reports_mailed_to_the_rua_appear_parsed_for_the_domain_they_are_about,
);

fn record<'a>(records: &'a Value, purpose: &str) -> &'a Value {
    records["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["purpose"] == purpose)
        .unwrap()
}

async fn verification_reads_the_txt_record(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise_claiming("acme.test", 5).await;
    let verify = format!("/v1/domains/{}/verify", e.domain_id);
    let domain = app
        .get(&format!("/v1/domains/{}", e.domain_id), &e.admin_token)
        .await;
    let proof = domain.ok(200)["verification_record"].clone();
    assert_eq!(proof["name"], "_caliop-verification.acme.test");
    let value = proof["value"].as_str().unwrap().to_owned();
    assert!(value.starts_with("caliop-verification="));

    let missing = app.post(&verify, &e.admin_token, json!({})).await;
    let detail = missing.problem(422);
    assert!(
        detail.contains("no TXT record at _caliop-verification.acme.test"),
        "{detail}"
    );
    assert_eq!(missing.body["found"], json!([]));

    app.dns.set_txt(
        "_caliop-verification.acme.test",
        &["caliop-verification=someone-else"],
    );
    let wrong = app.send("POST", &verify, Some(&e.admin_token), None).await;
    let detail = wrong.problem(422);
    assert!(
        detail.contains("`caliop-verification=someone-else`"),
        "{detail}"
    );
    assert_eq!(
        wrong.body["found"],
        json!(["caliop-verification=someone-else"])
    );
    let still = app
        .get(&format!("/v1/domains/{}", e.domain_id), &e.admin_token)
        .await;
    assert_eq!(still.ok(200)["verified"], false);

    app.dns
        .set_txt("_caliop-verification.acme.test", &["v=other", &value]);
    let verified = app.post(&verify, &e.admin_token, json!({})).await;
    assert_eq!(verified.ok(200)["verified"], true);
    assert_eq!(verified.body["verification_method"], "dns");
    let audit = app
        .get(
            &format!("/v1/tenants/{}/audit", e.tenant_id),
            &e.admin_token,
        )
        .await;
    assert_eq!(audit.ok(200)["items"][0]["action"], "domain.verify");

    // The DKIM signing keys (RSA and Ed25519) are at rest only sealed under the master key.
    use secrecy::ExposeSecret;
    let keys = app
        .store
        .dkim_keys(tenants::DomainId(e.domain_id.parse().unwrap()))
        .await
        .unwrap();
    let algorithms: Vec<_> = keys.iter().map(|k| k.algorithm).collect();
    assert_eq!(
        algorithms,
        [tenants::DkimAlgorithm::Rsa, tenants::DkimAlgorithm::Ed25519]
    );
    for key in keys {
        let at_rest = key.private_key.expose_secret();
        assert!(
            at_rest.starts_with("caliop-sealed:v1:") && !at_rest.contains("PRIVATE KEY"),
            "{at_rest}"
        );
        let opened = app
            .state
            .inbound
            .master()
            .open_secret("dkim-private-key:acme.test", at_rest)
            .unwrap();
        assert!(
            String::from_utf8(opened)
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
    }
}

async fn dns_records_report_live_status(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let url = format!("/v1/domains/{}/dns-records", e.domain_id);
    let before = app.get(&url, &e.admin_token).await;
    let before = before.ok(200).clone();
    assert_eq!(before["ready"], false);
    for r in before["records"].as_array().unwrap() {
        assert_eq!(r["status"], "missing", "{r}");
    }
    let dkim: Vec<Value> = before["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["purpose"] == "dkim")
        .cloned()
        .collect();
    assert_eq!(dkim.len(), 2, "one RSA and one Ed25519 key: {dkim:?}");
    assert!(
        dkim[0]["name"]
            .as_str()
            .unwrap()
            .ends_with("-rsa._domainkey.acme.test"),
        "{dkim:?}"
    );
    assert!(
        dkim[0]["value"]
            .as_str()
            .unwrap()
            .starts_with("v=DKIM1; k=rsa; p=MII")
    );
    assert!(
        dkim[1]["name"]
            .as_str()
            .unwrap()
            .ends_with("-ed._domainkey.acme.test"),
        "{dkim:?}"
    );
    assert!(
        dkim[1]["value"]
            .as_str()
            .unwrap()
            .starts_with("v=DKIM1; k=ed25519; p=")
    );

    let publish = |purpose: &str| record(&before, purpose).clone();
    let (proof, spf, dmarc) = (publish("verification"), publish("spf"), publish("dmarc"));
    app.dns.set_txt(
        proof["name"].as_str().unwrap(),
        &[proof["value"].as_str().unwrap()],
    );
    app.dns.set_mx("acme.test", &[(10, support::MAIL_HOST)]);
    app.dns
        .set_txt("acme.test", &[spf["value"].as_str().unwrap()]);
    for key in &dkim {
        app.dns.set_txt(
            key["name"].as_str().unwrap(),
            &[key["value"].as_str().unwrap()],
        );
    }
    app.dns
        .set_txt(dmarc["name"].as_str().unwrap(), &["v=DMARC1; p=reject"]);
    app.dns
        .set_srv("_submission._tcp.acme.test", 0, 1, 587, support::MAIL_HOST);

    let after = app.get(&url, &e.admin_token).await;
    let after = after.ok(200).clone();
    for purpose in [
        "verification",
        "mx",
        "spf",
        "dkim",
        "dmarc",
        "submission_autodiscovery",
    ] {
        assert_eq!(
            record(&after, purpose)["status"],
            "verified",
            "{purpose}: {after}"
        );
    }
    assert_eq!(record(&after, "mta_sts")["status"], "missing");
    assert_eq!(after["ready"], true, "every required record is published");

    app.dns
        .set_txt("acme.test", &["v=spf1 include:_spf.elsewhere.test -all"]);
    let wrong = app.get(&url, &e.admin_token).await;
    let spf = record(wrong.ok(200), "spf").clone();
    assert_eq!(spf["status"], "wrong");
    assert_eq!(
        spf["found"],
        json!(["v=spf1 include:_spf.elsewhere.test -all"])
    );
    assert_eq!(wrong.body["ready"], false);
}

async fn only_the_operator_can_force(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise_claiming("acme.test", 5).await;
    let verify = format!("/v1/domains/{}/verify", e.domain_id);
    let refused = app
        .post(&verify, &e.admin_token, json!({"force": true}))
        .await;
    assert!(refused.problem(403).contains("only the operator"));
    let forced = app
        .post(&verify, &app.operator_token, json!({"force": true}))
        .await;
    assert_eq!(forced.ok(200)["verification_method"], "forced");
    let audit = app
        .get(
            &format!("/v1/tenants/{}/audit", e.tenant_id),
            &e.admin_token,
        )
        .await;
    let entry = audit.ok(200)["items"][0].clone();
    assert_eq!(entry["action"], "domain.verify.forced");
    assert_eq!(entry["actor"], "operator");
}

async fn a_background_job_verifies_the_domain_once_published(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise_claiming("acme.test", 5).await;
    let worker = worker::caliop_worker(
        app.worker_context(0, std::time::Duration::from_secs(60)),
        "test-worker",
    );

    // Not published yet: the check fails and is queued again for later.
    // (The home domain's own check, queued when it was added, runs too.)
    assert!(
        worker.run_one("test-worker").await,
        "the check was queued with the domain"
    );
    assert!(
        worker.run_one("test-worker").await,
        "the home domain's check"
    );
    let queue = app.get("/v1/queue", &app.operator_token).await;
    let depth = queue.ok(200)["depth"].as_array().unwrap().clone();
    assert!(
        depth
            .iter()
            .any(|d| d["kind"] == "domain.check" && d["state"] == "queued"),
        "{depth:?}"
    );
    assert!(
        !worker.run_one("test-worker").await,
        "the retry waits for its backoff"
    );
    app.get("/v1/queue", &e.admin_token).await.problem(403);

    let domain = app
        .get(&format!("/v1/domains/{}", e.domain_id), &e.admin_token)
        .await;
    let record = domain.ok(200)["verification_record"].clone();
    app.dns.set_txt(
        record["name"].as_str().unwrap(),
        &[record["value"].as_str().unwrap()],
    );
    // The retry would find it; run the job's check now instead of waiting for its backoff.
    let check = worker::DomainCheck {
        domain_id: tenants::DomainId(e.domain_id.parse().unwrap()),
    };
    let context = app.worker_context(0, std::time::Duration::from_secs(60));
    worker::Job::run(&check, &context)
        .await
        .expect("the record is found");
    let verified = app
        .get(&format!("/v1/domains/{}", e.domain_id), &e.admin_token)
        .await;
    assert_eq!(verified.ok(200)["verified"], true);
    assert_eq!(verified.body["verification_method"], "dns");
    let metrics = app
        .raw(app.http.get(format!("{}/metrics", app.metrics)))
        .await;
    assert!(
        metrics
            .text()
            .contains("caliop_jobs{kind=\"domain.check\",state=\"queued\"} 1"),
        "{}",
        metrics.text()
    );
}

async fn dkim_rotation_switches_once_the_new_keys_are_published(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let keys_url = format!("/v1/domains/{}/dkim", e.domain_id);
    let states = |body: &Value| -> Vec<(String, String)> {
        body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["selector"].as_str().unwrap().to_owned(),
                    k["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let before = app.get(&keys_url, &e.admin_token).await.ok(200).clone();
    let old: Vec<String> = states(&before)
        .into_iter()
        .map(|(s, state)| {
            assert_eq!(state, "active");
            s
        })
        .collect();
    assert_eq!(old.len(), 2);

    let rotated = app
        .post(&format!("{keys_url}/rotate"), &e.admin_token, json!({}))
        .await;
    let rotated = rotated.ok(202).clone();
    let pending: Vec<Value> = rotated["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["state"] == "pending")
        .cloned()
        .collect();
    assert_eq!(pending.len(), 2, "{rotated}");
    assert!(
        pending
            .iter()
            .all(|k| !old.contains(&k["selector"].as_str().unwrap().to_owned())),
        "fresh selectors"
    );
    let again = app
        .post(&format!("{keys_url}/rotate"), &e.admin_token, json!({}))
        .await;
    assert!(again.problem(409).contains("already pending"));

    // The switch waits for DNS.
    let context = app.worker_context(0, std::time::Duration::from_secs(60));
    let switch = worker::DkimSwitch {
        domain_id: tenants::DomainId(e.domain_id.parse().unwrap()),
    };
    let waiting = worker::Job::run(&switch, &context).await.unwrap_err();
    assert!(waiting.contains("not published"), "{waiting}");
    for key in &pending {
        app.dns.set_txt(
            key["record"]["name"].as_str().unwrap(),
            &[key["record"]["value"].as_str().unwrap()],
        );
    }
    worker::Job::run(&switch, &context)
        .await
        .expect("published: the switch happens");

    let after = app.get(&keys_url, &e.admin_token).await.ok(200).clone();
    for (selector, state) in states(&after) {
        let expected = if old.contains(&selector) {
            "retired"
        } else {
            "active"
        };
        assert_eq!(state, expected, "{selector}: {after}");
    }
    // Retired keys stay among the records to publish, no longer required.
    let records = app
        .get(
            &format!("/v1/domains/{}/dns-records", e.domain_id),
            &e.admin_token,
        )
        .await;
    let dkim: Vec<Value> = records.ok(200)["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["purpose"] == "dkim")
        .cloned()
        .collect();
    assert_eq!(dkim.len(), 4);
    for r in &dkim {
        let retired = old
            .iter()
            .any(|s| r["name"].as_str().unwrap().starts_with(&format!("{s}.")));
        assert_eq!(r["required"], !retired, "{r}");
    }
}

/// A TLS report (RFC 8460) as Google or Microsoft mail them: JSON, gzipped,
/// in an `application/tlsrpt+gzip` part of a `multipart/report`.
fn tls_report_mail(report_id: &str, domain: &str, failures: i64) -> Vec<u8> {
    use base64::Engine;
    use std::io::Write;
    let json = json!({
        "organization-name": "Company-X",
        "date-range": {"start-datetime": "2026-12-01T00:00:00Z", "end-datetime": "2026-12-01T23:59:59Z"},
        "contact-info": "sts-reporting@company-x.example",
        "report-id": report_id,
        "policies": [{
            "policy": {"policy-type": "sts", "policy-string": ["version: STSv1", "mode: enforce"],
                       "policy-domain": domain, "mx-host": [support::MAIL_HOST]},
            "summary": {"total-successful-session-count": 5326, "total-failure-session-count": failures},
            "failure-details": [{"result-type": "certificate-expired", "sending-mta-ip": "192.0.2.9",
                                 "receiving-mx-hostname": support::MAIL_HOST, "failed-session-count": failures}]
        }]
    });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(json.to_string().as_bytes()).unwrap();
    let body = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
    format!(
        "From: <reports@company-x.example>\r\nTo: <tls-reports@{host}>\r\nSubject: Report Domain: {domain} Submitter: company-x.example Report-ID: <{report_id}>\r\n\
         Date: Tue, 02 Dec 2026 00:10:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"r\"\r\n\r\n\
         --r\r\nContent-Type: text/plain\r\n\r\nThis is an aggregate TLS report.\r\n\
         --r\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Disposition: attachment; filename=\"report.json.gz\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{body}\r\n--r--\r\n",
        host = support::MAIL_HOST,
    )
    .into_bytes()
}

async fn tls_reports_mailed_to_the_rua_appear_parsed_for_the_domain_they_are_about(
    backend: Backend,
) {
    let app = support::spawn(backend).await;
    let acme = app.enterprise("acme.test", 5).await;
    let other = app.enterprise("globex.test", 5).await;
    // The domain's _smtp._tls record names the address the MX takes reports at.
    let records = app
        .get(
            &format!("/v1/domains/{}/dns-records", acme.domain_id),
            &acme.admin_token,
        )
        .await;
    let rua = format!("tls-reports@{}", support::MAIL_HOST);
    assert_eq!(
        record(records.ok(200), "tls_reporting")["value"],
        format!("v=TLSRPTv1; rua=mailto:{rua}")
    );
    let sent = support::send_with_lettre(
        app.smtp,
        "reports@company-x.example",
        &[&rua],
        &tls_report_mail("r-1", "acme.test", 303),
        true,
    )
    .await
    .expect("the MX takes the report");
    assert!(
        sent.message().any(|l| l.contains("1 policy results kept")),
        "{sent:?}"
    );
    // The same report again is not counted twice; one about a domain not hosted here is dropped.
    support::send_with_lettre(
        app.smtp,
        "reports@company-x.example",
        &[&rua],
        &tls_report_mail("r-1", "acme.test", 303),
        true,
    )
    .await
    .unwrap();
    support::send_with_lettre(
        app.smtp,
        "reports@company-x.example",
        &[&rua],
        &tls_report_mail("r-2", "elsewhere.example", 1),
        true,
    )
    .await
    .unwrap();
    let reports = app
        .get(
            &format!("/v1/domains/{}/tls-reports", acme.domain_id),
            &acme.admin_token,
        )
        .await;
    let reports = reports.ok(200).as_array().unwrap().clone();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let report = &reports[0];
    assert_eq!(report["organization"], "Company-X");
    assert_eq!(report["policy_type"], "sts");
    assert_eq!(
        (report["successes"].as_i64(), report["failures"].as_i64()),
        (Some(5326), Some(303))
    );
    assert_eq!(
        report["failure_details"][0]["result-type"],
        "certificate-expired"
    );
    // Another tenant sees neither this domain's reports nor any of its own.
    app.get(
        &format!("/v1/domains/{}/tls-reports", acme.domain_id),
        &other.admin_token,
    )
    .await
    .problem(404);
    let theirs = app
        .get(
            &format!("/v1/domains/{}/tls-reports", other.domain_id),
            &other.admin_token,
        )
        .await;
    assert_eq!(theirs.ok(200).as_array().unwrap().len(), 0);
    // What is not a report is refused, with the reason.
    let refused = support::send_with_lettre(
        app.smtp,
        "someone@company-x.example",
        &[&rua],
        &support::message("someone@company-x.example", &rua, "hello", "not a report"),
        true,
    )
    .await
    .expect_err("not a report");
    assert!(refused.to_string().contains("no TLS report"), "{refused}");
}
