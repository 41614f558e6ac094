//! Bad input gets a 4xx problem with a precise detail, changes nothing, and
//! is never a 500: malformed JSON, unknown fields, invalid addresses and
//! domains, oversized bodies, and every kind of bad token.

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use serde_json::{Value, json};
use support::TestApp;
use tenants::{Backend, on_both_backends};

/// A JWT with any header and claims, signed with `key` (or unsigned).
fn forge(header: Value, claims: Value, key: Option<&vault::instance::InstanceKey>) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = match key {
        Some(key) => {
            let signer = ed25519_dalek::SigningKey::from_pkcs8_der(key.pkcs8_der()).unwrap();
            URL_SAFE_NO_PAD.encode(signer.sign(signing_input.as_bytes()).to_bytes())
        }
        None => String::new(),
    };
    format!("{signing_input}.{signature}")
}

fn operator_claims(app: &TestApp, exp_offset: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": "caliop", "sub": "operator", "tid": app.state.operator_tenant.0,
        "role": "operator", "scopes": ["read", "write"], "iat": now, "exp": now + exp_offset,
        "jti": uuid::Uuid::now_v7(),
    })
}

on_both_backends!(
    malformed_bodies_are_refused_precisely,
    bad_tokens_are_refused_precisely,
    made_up_methods_and_paths_add_a_bounded_number_of_metric_series
);

async fn malformed_bodies_are_refused_precisely(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let token = app.operator_token.clone();
    let audit_before = app.audit_len(&e.tenant_id).await;
    let tenants_before = app.get("/v1/tenants?limit=200", &token).await.ok(200)["items"]
        .as_array()
        .unwrap()
        .len();
    let url = |path: &str| format!("{}{path}", app.base);

    let broken = app
        .raw(
            app.http
                .post(url("/v1/tenants"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body("{\"name\":"),
        )
        .await;
    assert!(broken.problem(400).contains("EOF"), "{broken:?}");

    let not_json = app
        .raw(
            app.http
                .post(url("/v1/tenants"))
                .bearer_auth(&token)
                .body("name=x"),
        )
        .await;
    assert!(
        not_json
            .problem(415)
            .to_lowercase()
            .contains("content-type")
    );

    let unknown = app
        .post(
            "/v1/tenants",
            &token,
            json!({"name": "x", "kind": "enterprise", "limits": {"max_accounts": 1, "max_domains": 1, "storage_quota_bytes": 1}, "colour": "red"}),
        )
        .await;
    assert!(unknown.problem(422).contains("unknown field `colour`"));

    let bad_kind = app
        .post("/v1/tenants", &token, json!({"name": "x", "kind": "bank", "limits": {"max_accounts": 1, "max_domains": 1, "storage_quota_bytes": 1}}))
        .await;
    assert!(bad_kind.problem(422).contains("unknown variant `bank`"));

    let negative = app
        .post("/v1/tenants", &token, json!({"name": "x", "kind": "enterprise", "limits": {"max_accounts": -1, "max_domains": 1, "storage_quota_bytes": 1}}))
        .await;
    assert!(negative.problem(422).contains("negative"));

    let accounts = format!("/v1/tenants/{}/accounts", e.tenant_id);
    let no_at = app
        .post(
            &accounts,
            &e.admin_token,
            json!({"address": "alice", "password": support::PASSWORD}),
        )
        .await;
    assert!(
        no_at
            .problem(422)
            .contains("`alice` is not an email address")
    );
    let foreign = app
        .post(
            &accounts,
            &e.admin_token,
            json!({"address": "alice@elsewhere.test", "password": support::PASSWORD}),
        )
        .await;
    assert!(
        foreign
            .problem(422)
            .contains("`elsewhere.test` is not hosted by this tenant")
    );
    let short = app
        .post(
            &accounts,
            &e.admin_token,
            json!({"address": "alice@acme.test", "password": "short"}),
        )
        .await;
    assert!(short.problem(422).contains("at least 10 characters"));

    let domains = format!("/v1/tenants/{}/domains", e.tenant_id);
    let spaced = app
        .post(&domains, &e.admin_token, json!({"name": "exa mple.test"}))
        .await;
    assert!(spaced.problem(422).contains("not a valid domain name"));
    let single = app
        .post(&domains, &e.admin_token, json!({"name": "localhost"}))
        .await;
    assert!(single.problem(422).contains("two labels"));

    let huge = json!({"name": "x".repeat(2 * 1024 * 1024), "kind": "enterprise",
        "limits": {"max_accounts": 1, "max_domains": 1, "storage_quota_bytes": 1}});
    let oversized = app.post("/v1/tenants", &token, huge).await;
    assert!(oversized.problem(413).contains("larger than"));
    assert_eq!(
        oversized.headers["connection"], "close",
        "the unread body makes the connection unusable"
    );

    let bad_cursor = app.get("/v1/tenants?cursor=!!", &token).await;
    assert!(bad_cursor.problem(400).contains("cursor"));
    let bad_id = app.get("/v1/tenants/not-a-uuid", &token).await;
    assert!(bad_id.problem(400).contains("not a valid tenant id"));
    let unknown_query = app.get("/v1/tenants?colour=red", &token).await;
    assert!(
        unknown_query
            .problem(400)
            .contains("unknown field `colour`")
    );
    app.get("/v1/nowhere", &token).await.problem(404);

    assert_eq!(
        app.audit_len(&e.tenant_id).await,
        audit_before,
        "bad input changed nothing"
    );
    let tenants_after = app.get("/v1/tenants?limit=200", &token).await.ok(200)["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(tenants_after, tenants_before);
}

async fn bad_tokens_are_refused_precisely(backend: Backend) {
    let app = support::spawn(backend).await;
    let header = json!({"alg": "EdDSA", "typ": "JWT"});
    let valid = forge(header.clone(), operator_claims(&app, 300), Some(&app.key));
    app.get("/v1/tenants", &valid).await.ok(200);

    let cases = [
        ("garbage", "not a well-formed".to_owned()),
        (
            &*forge(header.clone(), operator_claims(&app, -600), Some(&app.key)),
            "expired".to_owned(),
        ),
        (
            &*forge(
                header.clone(),
                operator_claims(&app, 300),
                Some(&vault::instance::InstanceKey::generate()),
            ),
            "does not verify with this instance's key".to_owned(),
        ),
        (
            &*forge(
                json!({"alg": "none", "typ": "JWT"}),
                operator_claims(&app, 300),
                None,
            ),
            "well-formed".to_owned(),
        ),
        (
            &*forge(
                json!({"alg": "HS256", "typ": "JWT"}),
                operator_claims(&app, 300),
                Some(&app.key),
            ),
            "EdDSA".to_owned(),
        ),
    ];
    for (token, expected) in &cases {
        let reply = app
            .post(
                "/v1/tenants",
                token,
                json!({"name": "intruder", "kind": "reseller",
            "limits": {"max_accounts": 1, "max_domains": 1, "storage_quota_bytes": 1}}),
            )
            .await;
        let detail = reply.problem(401);
        assert!(
            detail.contains(expected.as_str()),
            "token {token}: {detail}"
        );
        assert!(reply.headers.contains_key("www-authenticate"));
    }
    let missing = app.send("GET", "/v1/tenants", None, None).await;
    assert!(missing.problem(401).contains("Authorization: Bearer"));
    let basic = app
        .raw(
            app.http
                .get(format!("{}/v1/tenants", app.base))
                .header("authorization", "Basic Zm9vOmJhcg=="),
        )
        .await;
    assert!(basic.problem(401).contains("Bearer scheme"));

    let listed = app.get("/v1/tenants", &valid).await;
    let names: Vec<&str> = listed.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"intruder"),
        "no bad token created anything"
    );
}

/// Finding 9: 300 requests with made-up methods and paths once added
/// thousands of series to `/metrics`, which anyone could read on the API.
/// Labels now come from bounded sets, and `/metrics` is only on its own listener.
async fn made_up_methods_and_paths_add_a_bounded_number_of_metric_series(backend: Backend) {
    let app = support::spawn(backend).await;
    let series = |text: &str, name: &str| {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .count()
    };
    for i in 0..300 {
        let noise = uuid::Uuid::new_v4().simple().to_string();
        let method = match i % 4 {
            0 => format!("X{}", &noise[..8]).to_uppercase(),
            1 => "GET".to_owned(),
            2 => "DELETE".to_owned(),
            _ => format!("M{i}"),
        };
        let path = match i % 3 {
            0 => format!("/{noise}"),
            1 => format!("/v1/tenants/{noise}"),
            _ => format!("/v1/{noise}/mailboxes/{i}"),
        };
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let answer = app
            .http
            .request(method, format!("{}{path}", app.base))
            .send()
            .await
            .expect("HTTP request");
        assert!(
            answer.status().is_client_error(),
            "{path}: {}",
            answer.status()
        );
    }
    let text = app.state.metrics.render();
    let requests = series(&text, "caliop_http_requests_total");
    let latencies = series(&text, "caliop_http_request_duration_seconds_count");
    // method (8 values) x route (2 reached) x status (401, 404, 405): at most 48, in fact far fewer.
    assert!(requests <= 24, "{requests} request series:\n{text}");
    assert!(latencies <= 16, "{latencies} latency series:\n{text}");
    assert!(text.contains("method=\"other\""), "{text}");
    assert!(text.contains("route=\"unmatched\""), "{text}");

    let anonymous = app.raw(app.http.get(format!("{}/metrics", app.base))).await;
    assert_eq!(anonymous.status, 404, "{}", anonymous.text());
    let scraped = app
        .raw(app.http.get(format!("{}/metrics", app.metrics)))
        .await;
    assert_eq!(scraped.status, 200);
    assert!(scraped.text().contains("caliop_http_requests_total"));
}
