//! Passkeys as a hostile tenant would try them: a passkey belongs to the
//! host of the page that made it, and only this instance's host or the
//! account's own tenant's verified hostnames will do; the sign-in's passkey
//! request is the same for every address and says nothing of the account.
//! (The ceremonies themselves run in Chromium: web-admin/e2e/device.test.ts.)

mod support;

use serde_json::{Value, json};
use support::TestApp;
use tenants::{Backend, on_both_backends};

on_both_backends!(a_passkey_is_made_only_on_the_accounts_own_hosts);

/// A tenant's verified hostname, proven through the loopback DNS server.
async fn verified_hostname(app: &TestApp, tenant: &str, token: &str, name: &str) {
    let created = app
        .post(
            &format!("/v1/tenants/{tenant}/hostnames"),
            token,
            json!({"hostname": name}),
        )
        .await;
    let host = created.ok(201).clone();
    app.dns.set_txt(
        &format!("_caliop-hostname.{name}"),
        &[host["verification_record"]["value"].as_str().unwrap()],
    );
    app.post(
        &format!("/v1/hostnames/{}/verify", host["id"].as_str().unwrap()),
        token,
        json!({}),
    )
    .await
    .ok(200);
}

async fn start_from(app: &TestApp, account: &str, token: &str, origin: &str) -> support::Reply {
    app.raw(
        app.http
            .post(format!(
                "{}/v1/accounts/{account}/passkeys/register/start",
                app.base
            ))
            .header("Origin", origin)
            .bearer_auth(token),
    )
    .await
}

async fn login_start_from(app: &TestApp, address: &str, origin: &str) -> Value {
    let (_, request) = vault::opaque::client_login_start("any password").unwrap();
    let reply = app
        .raw(
            app.http
                .post(format!("{}/v1/auth/opaque/login/start", app.base))
                .header("Origin", origin)
                .json(&json!({"username": address, "credential_request": request})),
        )
        .await;
    reply.ok(200).clone()
}

async fn a_passkey_is_made_only_on_the_accounts_own_hosts(backend: Backend) {
    let app = support::spawn(backend).await;
    let acme = app.enterprise("acme.test", 5).await;
    let globex = app.enterprise("globex.test", 5).await;
    verified_hostname(&app, &acme.tenant_id, &acme.admin_token, "mail.acme.test").await;
    verified_hostname(
        &app,
        &globex.tenant_id,
        &globex.admin_token,
        "mail.globex.test",
    )
    .await;
    let account = app.user(&acme, "user").await;
    let user = app.login("user@acme.test", support::PASSWORD).await;

    // Its own tenant's hostname: the ceremony starts, for that host, with
    // the account's id (not its address) as the user handle.
    let options = start_from(&app, &account, &user, "https://mail.acme.test").await;
    let options = options.ok(200)["options"].clone();
    assert_eq!(options["rp"]["id"], "mail.acme.test");
    assert_eq!(options["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(
        options["authenticatorSelection"]["userVerification"],
        "required"
    );
    use base64::Engine;
    let handle = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(options["user"]["id"].as_str().unwrap())
        .unwrap();
    assert_eq!(handle, uuid::Uuid::parse_str(&account).unwrap().as_bytes());

    // Another tenant's hostname (which it may point at a page of its own),
    // plain HTTP, an unknown host, or no page at all: refused, and said why.
    let other = start_from(&app, &account, &user, "https://mail.globex.test").await;
    assert!(
        other
            .problem(422)
            .contains("another organisation's hostname"),
        "{other:?}"
    );
    for origin in ["http://mail.acme.test", "https://evil.example", "null"] {
        let refused = start_from(&app, &account, &user, origin).await;
        assert!(
            refused.problem(422).contains("`Origin`"),
            "{origin}: {refused:?}"
        );
    }
    let bare = app
        .post(
            &format!("/v1/accounts/{account}/passkeys/register/start"),
            &user,
            json!({}),
        )
        .await;
    bare.problem(422);
    // Nor for someone else's account, whatever the page: to a user, it is not there.
    let foreign = start_from(&app, &acme.admin_id, &user, "https://mail.acme.test").await;
    foreign.problem(404);

    // The sign-in's passkey request: only on a page passkeys may live on,
    // and the same for an account, an unknown address and another tenant's.
    // (An account made for an activation link answers at once; one still on
    // its password asks to move first.)
    app.post(
        &format!("/v1/tenants/{}/accounts", acme.tenant_id),
        &acme.admin_token,
        json!({"address": "pending@acme.test"}),
    )
    .await
    .ok(201);
    let known = login_start_from(&app, "pending@acme.test", "https://mail.acme.test").await;
    let unknown = login_start_from(&app, "nobody@acme.test", "https://mail.acme.test").await;
    for started in [&known, &unknown] {
        let request = &started["passkey"];
        assert_eq!(request["rpId"], "mail.acme.test", "{started}");
        assert_eq!(request["allowCredentials"], json!([]), "{started}");
        assert_eq!(request["userVerification"], "required", "{started}");
    }
    assert_ne!(
        known["passkey"]["challenge"],
        unknown["passkey"]["challenge"]
    );
    let elsewhere = login_start_from(&app, "pending@acme.test", "https://evil.example").await;
    assert!(elsewhere["passkey"].is_null(), "{elsewhere}");
}
