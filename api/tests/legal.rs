//! The legal request register over HTTP: a known set of requests (several
//! countries and quarters, one without a legal basis, one contested, one
//! corrected, exports with counts by level) and the public report's numbers
//! checked against it exactly; the register closed to all but the operator;
//! the warrant canary renewed by its job, verified with the published key,
//! and not renewed under a gag order; per-tenant reports that hide gagged
//! requests, and a tenant's report published on its own hostname.

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use support::{Enterprise, TestApp};
use tenants::store::NewLegalExport;
use tenants::{Backend, on_both_backends};
use worker::Job;

on_both_backends!(
    the_public_report_matches_the_register,
    only_the_operator_reads_or_writes_the_register,
    the_canary_verifies_with_the_published_key_and_lapses_under_a_gag,
    a_tenant_sees_its_report_and_may_publish_it_on_its_hostname,
);

fn request(
    tenant: &str,
    country: &str,
    received_on: &str,
    basis: Option<&str>,
    decision: Option<&str>,
) -> Value {
    let mut body = json!({
        "authority": "Tribunal judiciaire",
        "country": country,
        "received_on": received_on,
        "scope": {"tenant_id": tenant, "kinds": ["account_metadata", "messages"]},
        "disclosed": "",
    });
    if let Some(basis) = basis {
        body["legal_basis"] = json!(basis);
    }
    if let Some(decision) = decision {
        body["decision"] = json!(decision);
    }
    body
}

async fn record(app: &TestApp, body: Value) -> Value {
    app.post("/v1/legal-requests", &app.operator_token, body)
        .await
        .ok(201)
        .clone()
}

/// What `caliop legal export` records once the archive is written.
async fn exported(app: &TestApp, request_id: &str, accounts: i64, by_level: [i64; 4]) {
    let export = NewLegalExport {
        sha256: "0123456789abcdef".repeat(4),
        signature: STANDARD.encode([7u8; 64]),
        accounts,
        messages_by_level: by_level,
        bytes: 10_000,
    };
    app.store
        .record_legal_export("operator", request_id.parse().unwrap(), export)
        .await
        .expect("export recorded");
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

/// A row (or the totals) of a report: decisions in the order no legal basis,
/// refused, contested, complied, partially; messages by level.
fn counts(received: i64, decisions: [i64; 5], accounts: i64, by_level: [i64; 4]) -> Value {
    json!({
        "received": received,
        "refused_no_legal_basis": decisions[0],
        "refused": decisions[1],
        "contested": decisions[2],
        "complied": decisions[3],
        "partially": decisions[4],
        "accounts_affected": accounts,
        "messages_disclosed": {"standard": by_level[0], "sealed": by_level[1], "dispersed": by_level[2], "end_to_end": by_level[3]},
        "messages_ciphertext_only": by_level[1] + by_level[2] + by_level[3],
    })
}

fn row(quarter: &str, country: &str, counts: Value) -> Value {
    let mut row = counts;
    row["quarter"] = json!(quarter);
    row["country"] = json!(country);
    row
}

fn today_plus(days: u64) -> String {
    (chrono::Utc::now().date_naive() + chrono::Days::new(days)).to_string()
}

async fn public(app: &TestApp, host: Option<&str>) -> Value {
    let mut request = app.http.get(format!("{}/v1/public/transparency", app.base));
    if let Some(host) = host {
        request = request.header("host", host);
    }
    app.raw(request).await.ok(200).clone()
}

/// The known register: Acme (two users) and Globex.
struct Register {
    acme: Enterprise,
    globex: Enterprise,
    corrected_first: String,
    corrected_second: String,
}

async fn known_register(app: &TestApp) -> Register {
    let acme = app.enterprise("acme.test", 10).await;
    let globex = app.enterprise("globex.test", 10).await;
    let ann = app.user(&acme, "ann").await;
    app.user(&acme, "bob").await;

    // 2025-Q4, FR: complied, for Ann alone; exported (2 standard, 3 sealed, 1 dispersed).
    let mut for_ann = request(
        &acme.tenant_id,
        "fr",
        "2025-11-03",
        Some("RG 25/1103"),
        Some("complied"),
    );
    for_ann["scope"]["account_ids"] = json!([ann]);
    let for_ann = record(app, for_ann).await;
    assert_eq!(for_ann["country"], "FR");
    assert_eq!(for_ann["valid"], true);
    exported(app, &id(&for_ann), 1, [2, 3, 1, 0]).await;
    // 2025-Q4, FR: no legal basis: still recorded (201), as refused.
    let unfounded = record(
        app,
        request(&acme.tenant_id, "FR", "2025-12-01", None, None),
    )
    .await;
    assert_eq!(unfounded["decision"], "refused");
    assert_eq!(unfounded["valid"], false);
    assert_eq!(unfounded["legal_basis"], Value::Null);
    let complied = app
        .post(
            "/v1/legal-requests",
            &app.operator_token,
            request(&acme.tenant_id, "FR", "2025-12-02", None, Some("complied")),
        )
        .await;
    let why = complied.problem(422);
    assert!(
        why.contains("without a legal basis") && why.contains("can only be refused"),
        "{why}"
    );
    // 2026-Q1, US: contested.
    record(
        app,
        request(
            &acme.tenant_id,
            "US",
            "2026-02-10",
            Some("Warrant 26-0210"),
            Some("contested"),
        ),
    )
    .await;
    // 2026-Q1, US: Globex's, refused although founded.
    record(
        app,
        request(
            &globex.tenant_id,
            "US",
            "2026-01-20",
            Some("Subpoena 26-0120"),
            Some("refused"),
        ),
    )
    .await;
    // First recorded as received 2025-12-20 and refused; corrected: DE, 2026-03-15,
    // partially, the whole tenant, exported (2 accounts, 4 dispersed, 5 end-to-end).
    let first = record(
        app,
        request(
            &acme.tenant_id,
            "DE",
            "2025-12-20",
            Some("AG Berlin 1"),
            Some("refused"),
        ),
    )
    .await;
    let correction = request(
        &acme.tenant_id,
        "DE",
        "2026-03-15",
        Some("AG Berlin 1"),
        Some("partially"),
    );
    let second = app
        .post(
            &format!("/v1/legal-requests/{}/corrections", id(&first)),
            &app.operator_token,
            correction.clone(),
        )
        .await;
    let second = second.ok(201).clone();
    assert_eq!(second["corrects"], first["id"]);
    exported(app, &id(&second), 2, [0, 0, 4, 5]).await;
    // The first entry was corrected: correcting it again is a conflict naming the correction.
    let again = app
        .post(
            &format!("/v1/legal-requests/{}/corrections", id(&first)),
            &app.operator_token,
            correction,
        )
        .await;
    assert!(again.problem(409).contains(&id(&second)));
    Register {
        acme,
        globex,
        corrected_first: id(&first),
        corrected_second: id(&second),
    }
}

async fn the_public_report_matches_the_register(backend: Backend) {
    let app = support::spawn(backend).await;
    let register = known_register(&app).await;

    let body = public(&app, None).await;
    assert_eq!(body["tenant"], Value::Null);
    assert_eq!(body["canary"], Value::Null, "no canary issued yet");
    let report = &body["report"];
    assert_eq!(report["tenant_id"], Value::Null);
    assert_eq!(
        report["rows"],
        json!([
            row("2025-Q4", "FR", counts(2, [1, 0, 0, 1, 0], 1, [2, 3, 1, 0])),
            row("2026-Q1", "DE", counts(1, [0, 0, 0, 0, 1], 2, [0, 0, 4, 5])),
            row("2026-Q1", "US", counts(2, [0, 1, 1, 0, 0], 0, [0, 0, 0, 0])),
        ])
    );
    assert_eq!(
        report["totals"],
        counts(5, [1, 1, 1, 1, 1], 3, [2, 3, 5, 5])
    );
    assert_eq!(report["totals"]["messages_ciphertext_only"], 13);

    // Any entry's id gives the request as it stands, its chain and its exports.
    for entry in [&register.corrected_first, &register.corrected_second] {
        let read = app
            .get(&format!("/v1/legal-requests/{entry}"), &app.operator_token)
            .await;
        let read = read.ok(200);
        assert_eq!(
            read["current"]["id"].as_str(),
            Some(register.corrected_second.as_str())
        );
        assert_eq!(read["current"]["decision"], "partially");
        assert_eq!(
            read["current"]["exports"][0]["messages"],
            json!({"standard": 0, "sealed": 0, "dispersed": 4, "end_to_end": 5})
        );
        let chain: Vec<&str> = read["chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            chain,
            [
                register.corrected_first.as_str(),
                register.corrected_second.as_str()
            ]
        );
        assert_eq!(
            read["chain"][0]["corrected_by"].as_str(),
            Some(register.corrected_second.as_str())
        );
    }
    // The register lists every entry (six), a page at a time.
    let page = app
        .get("/v1/legal-requests?limit=4", &app.operator_token)
        .await;
    let page = page.ok(200);
    assert_eq!(page["items"].as_array().unwrap().len(), 4);
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let rest = app
        .get(
            &format!("/v1/legal-requests?limit=4&cursor={cursor}"),
            &app.operator_token,
        )
        .await;
    assert_eq!(rest.ok(200)["items"].as_array().unwrap().len(), 2);
    assert!(
        app.get(
            "/v1/legal-requests/00000000-0000-0000-0000-000000000000",
            &app.operator_token
        )
        .await
        .problem(404)
        .contains("legal request")
    );
    // The register's traces are the operator's: Acme's audit log shows nothing of it.
    let audit = app
        .get(
            &format!("/v1/tenants/{}/audit?limit=200", register.acme.tenant_id),
            &app.operator_token,
        )
        .await;
    assert!(
        !audit.ok(200).to_string().contains("legal_request"),
        "{audit:?}"
    );
}

async fn only_the_operator_reads_or_writes_the_register(backend: Backend) {
    let app = support::spawn(backend).await;
    let acme = app.enterprise("acme.test", 10).await;
    app.user(&acme, "ann").await;
    let user = app.login("ann@acme.test", support::PASSWORD).await;
    let (reseller, _) = app.reseller_and_child(1_000_000).await;
    let key = app
        .post(
            &format!("/v1/tenants/{reseller}/api-keys"),
            &app.operator_token,
            json!({"name": "provisioning"}),
        )
        .await;
    let reseller_token = app
        .api_key_token(key.ok(201)["secret"].as_str().expect("secret"))
        .await;
    let entry = record(
        &app,
        request(
            &acme.tenant_id,
            "FR",
            "2026-01-05",
            Some("RG 26/1"),
            Some("contested"),
        ),
    )
    .await;
    let unknown = "00000000-0000-0000-0000-000000000000";
    let body = request(
        &acme.tenant_id,
        "FR",
        "2026-01-05",
        Some("RG 26/1"),
        Some("complied"),
    );
    for token in [&acme.admin_token, &user, &reseller_token] {
        for (method, path, body) in [
            ("GET", "/v1/legal-requests".to_owned(), None),
            ("POST", "/v1/legal-requests".to_owned(), Some(body.clone())),
            ("GET", format!("/v1/legal-requests/{}", id(&entry)), None),
            // The same answer for an id that does not exist: nothing is learnt.
            ("GET", format!("/v1/legal-requests/{unknown}"), None),
            (
                "POST",
                format!("/v1/legal-requests/{}/corrections", id(&entry)),
                Some(body.clone()),
            ),
        ] {
            let reply = app.send(method, &path, Some(token), body).await;
            let why = reply.problem(403);
            assert!(!why.contains("not found"), "{method} {path}: {why}");
        }
        app.send("GET", "/v1/legal-requests", None, None)
            .await
            .problem(401);
    }
    // Nothing was recorded by them: the register holds the operator's one entry.
    let listed = app.get("/v1/legal-requests", &app.operator_token).await;
    assert_eq!(listed.ok(200)["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed.ok(200)["items"][0]["decision"], "contested");
}

async fn the_canary_verifies_with_the_published_key_and_lapses_under_a_gag(backend: Backend) {
    let app = support::spawn(backend).await;
    let acme = app.enterprise("acme.test", 10).await;
    // The job runs as the workers run it, scheduled as `caliop serve` does.
    worker::schedule_canary(&app.store).await.unwrap();
    let workers = app.start_workers(0, std::time::Duration::from_secs(1));
    let mut canary = Value::Null;
    for _ in 0..100 {
        canary = public(&app, None).await["canary"].clone();
        if !canary.is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    workers.stop().await;
    assert!(!canary.is_null(), "the canary job issued a canary");
    assert_eq!(canary["current"], true);
    let statement = canary["statement"].as_str().unwrap();
    assert!(
        statement.contains(support::MAIL_HOST),
        "names the instance: {statement}"
    );
    assert!(
        statement.contains("no order") && statement.contains("forbidden to disclose"),
        "{statement}"
    );
    let issued =
        chrono::DateTime::parse_from_rfc3339(canary["issued_at"].as_str().unwrap()).unwrap();
    let due = chrono::DateTime::parse_from_rfc3339(canary["next_due"].as_str().unwrap()).unwrap();
    assert!(
        statement.contains(&format!("Issued on {}", issued.format("%Y-%m-%d"))),
        "dated: {statement}"
    );
    assert!(
        statement.contains(&format!("due by {}", due.format("%Y-%m-%d"))),
        "gives the next date: {statement}"
    );
    assert_eq!(
        due - issued,
        chrono::Duration::hours(48),
        "renewed daily, due again within two days"
    );

    let public_key: [u8; 32] = STANDARD
        .decode(canary["public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(&public_key, app.key.public_key(), "the instance's own key");
    let signature = STANDARD
        .decode(canary["signature"].as_str().unwrap())
        .unwrap();
    assert!(
        vault::instance::verify(&public_key, statement.as_bytes(), &signature),
        "the signature verifies"
    );
    let altered = statement.replace("no order", "an order");
    assert!(
        !vault::instance::verify(&public_key, altered.as_bytes(), &signature),
        "an altered statement does not"
    );
    let stranger = vault::instance::InstanceKey::generate();
    assert!(
        !vault::instance::verify(stranger.public_key(), statement.as_bytes(), &signature),
        "nor another key"
    );
    assert_eq!(
        app.store.live_jobs(worker::CANARY_JOB).await.unwrap(),
        1,
        "the job scheduled its next run"
    );

    // A gag order recorded: the next run signs nothing, and the published canary will lapse.
    let mut body = request(
        &acme.tenant_id,
        "FR",
        "2026-01-05",
        Some("RG 26/7"),
        Some("complied"),
    );
    body["gag_until"] = json!(today_plus(30));
    record(&app, body).await;
    let context = app.worker_context(0, std::time::Duration::from_secs(1));
    worker::RenewCanary { every_hours: 24 }
        .run(&context)
        .await
        .expect("the job succeeds, issuing nothing");
    let after = public(&app, None).await["canary"].clone();
    assert_eq!(after["issued_at"], canary["issued_at"], "not renewed");
    assert_eq!(after["statement"], canary["statement"]);
    assert_eq!(
        app.store.live_jobs(worker::CANARY_JOB).await.unwrap(),
        2,
        "it still comes back tomorrow"
    );
}

async fn a_tenant_sees_its_report_and_may_publish_it_on_its_hostname(backend: Backend) {
    let app = support::spawn(backend).await;
    let register = known_register(&app).await;
    let acme = &register.acme;
    // A request under a gag order still running, for Acme: on the instance's report, not on Acme's.
    let mut gagged = request(
        &acme.tenant_id,
        "FR",
        "2025-11-20",
        Some("RG 25/1120"),
        Some("complied"),
    );
    gagged["gag_until"] = json!(today_plus(30));
    let gagged = record(&app, gagged).await;
    exported(&app, &id(&gagged), 1, [6, 0, 0, 0]).await;

    let instance = public(&app, None).await;
    assert_eq!(
        instance["report"]["totals"],
        counts(6, [1, 1, 1, 2, 1], 4, [8, 3, 5, 5])
    );
    let acme_rows = json!([
        row("2025-Q4", "FR", counts(2, [1, 0, 0, 1, 0], 1, [2, 3, 1, 0])),
        row("2026-Q1", "DE", counts(1, [0, 0, 0, 0, 1], 2, [0, 0, 4, 5])),
        row("2026-Q1", "US", counts(1, [0, 0, 1, 0, 0], 0, [0, 0, 0, 0])),
    ]);
    let own = app
        .get(
            &format!("/v1/tenants/{}/transparency", acme.tenant_id),
            &acme.admin_token,
        )
        .await;
    let own = own.ok(200).clone();
    assert_eq!(own["tenant_id"].as_str(), Some(acme.tenant_id.as_str()));
    assert_eq!(
        own["rows"], acme_rows,
        "without the gagged request, nor Globex's"
    );
    assert_eq!(own["totals"], counts(4, [1, 0, 1, 1, 1], 3, [2, 3, 5, 5]));
    // The operator sees the same tenant report; another tenant does not find it; a user may not read it.
    let by_operator = app
        .get(
            &format!("/v1/tenants/{}/transparency", acme.tenant_id),
            &app.operator_token,
        )
        .await;
    assert_eq!(by_operator.ok(200)["totals"], own["totals"]);
    app.get(
        &format!("/v1/tenants/{}/transparency", acme.tenant_id),
        &register.globex.admin_token,
    )
    .await
    .problem(404);
    app.user(acme, "cat").await;
    let user = app.login("cat@acme.test", support::PASSWORD).await;
    app.get(
        &format!("/v1/tenants/{}/transparency", acme.tenant_id),
        &user,
    )
    .await
    .problem(403);

    // Acme's verified hostname shows the instance's report until Acme opts in.
    let host = app
        .post(
            &format!("/v1/tenants/{}/hostnames", acme.tenant_id),
            &acme.admin_token,
            json!({"hostname": "report.acme.test"}),
        )
        .await;
    let host = host.ok(201).clone();
    app.dns.set_txt(
        "_caliop-hostname.report.acme.test",
        &[host["verification_record"]["value"].as_str().unwrap()],
    );
    app.post(
        &format!("/v1/hostnames/{}/verify", id(&host)),
        &acme.admin_token,
        json!({}),
    )
    .await
    .ok(200);
    let before = public(&app, Some("report.acme.test")).await;
    assert_eq!(before["tenant"], Value::Null);
    assert_eq!(before["report"], instance["report"]);
    let tenant = app
        .get(
            &format!("/v1/tenants/{}", acme.tenant_id),
            &acme.admin_token,
        )
        .await;
    assert_eq!(tenant.ok(200)["publish_transparency"], false);

    let opted = app
        .patch(
            &format!("/v1/tenants/{}", acme.tenant_id),
            &acme.admin_token,
            json!({"publish_transparency": true}),
        )
        .await;
    assert_eq!(opted.ok(200)["publish_transparency"], true);
    let published = public(&app, Some("report.acme.test:8443")).await;
    assert_eq!(
        published["tenant"],
        json!({"id": acme.tenant_id, "name": "acme.test Inc."})
    );
    assert_eq!(
        published["report"]["tenant_id"].as_str(),
        Some(acme.tenant_id.as_str())
    );
    assert_eq!(
        published["report"]["rows"], acme_rows,
        "the tenant's own report, gag orders still hidden"
    );
    // Elsewhere, the instance's report.
    for other in [None, Some("unknown.example"), Some("globex.test")] {
        let elsewhere = public(&app, other).await;
        assert_eq!(elsewhere["tenant"], Value::Null, "{other:?}");
        assert_eq!(elsewhere["report"]["totals"]["received"], 6, "{other:?}");
    }
    // Opting out again stops it.
    let out = app
        .patch(
            &format!("/v1/tenants/{}", acme.tenant_id),
            &acme.admin_token,
            json!({"publish_transparency": false}),
        )
        .await;
    assert_eq!(out.ok(200)["publish_transparency"], false);
    assert_eq!(
        public(&app, Some("report.acme.test")).await["tenant"],
        Value::Null
    );
}
