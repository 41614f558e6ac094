//! A hostile tenant, tried through every door: each story reproduces an
//! attack found against an earlier build (issue 17) exactly as it was
//! described, and asserts it is now refused with its code.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde_json::{Value, json};
use support::{PASSWORD, Sink, TestApp};
use tenants::{AccountId, Backend, Page, on_both_backends};

on_both_backends!(
    an_unverified_domain_receives_sends_and_resets_nothing,
    sign_ins_are_counted_before_the_password_on_the_api,
    the_owners_network_signs_in_during_an_attack_from_elsewhere,
    tokens_and_sessions_end_when_credentials_change,
    api_keys_die_with_their_makers_admin_role,
    a_squatted_name_returns_to_its_owner,
    exports_need_the_tenants_own_admin_and_password,
    a_second_author_never_rides_along,
);

/// How many messages the store holds for an account, whatever the folder.
async fn stored(app: &TestApp, account: &str) -> usize {
    let id = AccountId(account.parse().unwrap());
    app.store
        .list_messages(
            id,
            None,
            None,
            Page {
                after: None,
                limit: 200,
            },
        )
        .await
        .unwrap()
        .len()
}

async fn delivery(app: &TestApp, message_id: &str, token: &str, recipient: &str) -> Value {
    for _ in 0..150 {
        let report = app
            .get(&format!("/v1/messages/{message_id}/delivery"), token)
            .await;
        let found = report.ok(200)["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| {
                r["recipient"] == recipient && r["status"] != "pending" && r["status"] != "queued"
            })
            .cloned();
        if let Some(r) = found {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{recipient} was never tried");
}

/// Finding 1: a tenant admin claims `victim.example` (hosted by nobody
/// here) and makes `ceo@victim.example`. Mail other tenants send there
/// must go to the domain's real MX, nothing may be sealed to the
/// claimant's key, the claim's account may not sign in or send, and a
/// password reset whose recovery address is in the claim must not reach it.
async fn an_unverified_domain_receives_sends_and_resets_nothing(backend: Backend) {
    let app = support::spawn(backend).await;
    let attacker = app.enterprise("attacker.test", 5).await;
    let claim = app
        .post(
            &format!("/v1/tenants/{}/domains", attacker.tenant_id),
            &attacker.admin_token,
            json!({"name": "victim.example"}),
        )
        .await;
    assert_eq!(claim.ok(201)["verified"], false);
    let ceo = app
        .post(
            &format!("/v1/tenants/{}/accounts", attacker.tenant_id),
            &attacker.admin_token,
            json!({"address": "ceo@victim.example", "password": PASSWORD, "role": "admin"}),
        )
        .await;
    let ceo_id = ceo.ok(201)["id"].as_str().unwrap().to_owned();

    // victim.example's real MX is the sink on loopback.
    app.dns
        .set_mx("victim.example", &[(10, "mx.victim.example")]);
    app.dns.set_a("mx.victim.example", &[Ipv4Addr::LOCALHOST]);
    let sink = Sink::start(&[]);
    let workers = app.start_workers(sink.port, Duration::from_secs(1));

    let globex = app.enterprise("globex.test", 5).await;
    let alice_id = app.user(&globex, "alice").await;
    let alice = app.login("alice@globex.test", PASSWORD).await;

    // Sent by another tenant's user: delivered to the real MX, not locally.
    let sent = app
        .post(
            &format!("/v1/accounts/{alice_id}/messages"),
            &alice,
            json!({"to": ["ceo@victim.example"], "subject": "Board", "text": "Confidential."}),
        )
        .await;
    let message_id = sent.ok(202)["message_id"].as_str().unwrap().to_owned();
    let outcome = delivery(&app, &message_id, &alice, "ceo@victim.example").await;
    assert_eq!(outcome["status"], "delivered", "{outcome}");
    assert_eq!(outcome["remote_host"], "mx.victim.example", "{outcome}");
    assert_eq!(stored(&app, &ceo_id).await, 0, "nothing reached the claim");

    // Sealing: the claimant's key is nobody's key for victim.example.
    let sealed = app
        .post(
            &format!("/v1/accounts/{alice_id}/messages"),
            &alice,
            json!({"to": ["ceo@victim.example"], "text": "sealed?", "require_encryption": true}),
        )
        .await;
    let detail = sealed.problem(422);
    assert!(detail.contains("ceo@victim.example"), "{detail}");

    // Sending from the claim. Its administrator may sign in to the API (to
    // prove the claim through DNS), but sends nothing from it; a user of a
    // claim does not sign in at all, and no mail door opens for either.
    let ceo_token = app.login("ceo@victim.example", PASSWORD).await;
    let from_claim = app
        .post(
            &format!("/v1/accounts/{ceo_id}/messages"),
            &ceo_token,
            json!({"to": ["alice@globex.test"], "text": "Wire the money."}),
        )
        .await;
    let detail = from_claim.problem(403);
    assert!(detail.contains("not verified"), "{detail}");
    app.post(
        &format!("/v1/tenants/{}/accounts", attacker.tenant_id),
        &attacker.admin_token,
        json!({"address": "intern@victim.example", "password": PASSWORD}),
    )
    .await
    .ok(201);
    let api = app
        .send(
            "POST",
            "/v1/auth/token",
            None,
            Some(json!({"grant_type": "password", "username": "intern@victim.example", "password": PASSWORD})),
        )
        .await;
    assert!(api.problem(403).contains("not verified"), "{api:?}");
    // A reset link for an account whose recovery address is in the claim
    // goes to the real MX, never into the claimant's mailbox.
    app.post(
        &format!("/v1/tenants/{}/accounts", globex.tenant_id),
        &globex.admin_token,
        json!({"address": "cfo@globex.test", "password": PASSWORD, "recovery_address": "ceo@victim.example"}),
    )
    .await
    .ok(201);
    let reset = app
        .send(
            "POST",
            "/v1/public/password-reset",
            None,
            Some(json!({"address": "cfo@globex.test"})),
        )
        .await;
    reset.ok(202);
    let is_reset = |m: &Value| {
        m["data"]
            .as_str()
            .is_some_and(|d| d.contains("Subject: Reset your Caliop password"))
    };
    for _ in 0..100 {
        if sink.messages().iter().any(is_reset) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let received = sink.messages();
    let reset_mail = received.iter().find(|m| is_reset(m));
    assert!(
        reset_mail.is_some(),
        "the reset link went to victim.example's MX"
    );
    assert!(
        received
            .iter()
            .all(|m| m["rcpt_tos"] == json!(["ceo@victim.example"])),
        "everything for victim.example went to its MX"
    );
    assert_eq!(
        stored(&app, &ceo_id).await,
        0,
        "the reset link never reached the claim"
    );

    // WKD serves no key for a claim.
    let wkd = app
        .raw(
            app.http
                .get(format!(
                    "{}/.well-known/openpgpkey/victim.example/hu/{}",
                    app.base,
                    mail::wkd::hash("ceo")
                ))
                .header("host", "openpgpkey.victim.example"),
        )
        .await;
    assert_eq!(wkd.status, 404);
    drop(workers);
}

/// A client on `from`, speaking to the API.
fn client_from(from: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from)
        .build()
        .unwrap()
}

async fn api_sign_in(app: &TestApp, from: IpAddr, address: &str, password: &str) -> u16 {
    client_from(from)
        .post(format!("{}/v1/auth/token", app.base))
        .json(&json!({"grant_type": "password", "username": address, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Counts the answers of 60 concurrent attempts: (refused as wrong, limited).
fn tally(codes: &[&str], wrong: &str, limited: &str) -> (usize, usize) {
    let w = codes.iter().filter(|c| c.starts_with(wrong)).count();
    let l = codes.iter().filter(|c| c.starts_with(limited)).count();
    assert_eq!(w + l, codes.len(), "only those two answers: {codes:?}");
    (w, l)
}

/// Finding 4: 60 parallel wrong passwords all got 401 against a limit of
/// 5. Now at most 5 are answered as wrong and the rest are told to wait
/// (the mail doors: `tests/hostile.rs`, against the binary).
async fn sign_ins_are_counted_before_the_password_on_the_api(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    app.user(&e, "api").await;
    let limit = app.state.config.login_failures_per_address;
    assert_eq!(limit, 5);

    // The API, from 127.0.1.0/24.
    let attempts = (0..60).map(|i| {
        let from = IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1 + (i % 200) as u8));
        let app = &app;
        async move { api_sign_in(app, from, "api@acme.test", "not the password").await }
    });
    let codes: Vec<String> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(|c| c.to_string())
        .collect();
    let codes: Vec<&str> = codes.iter().map(String::as_str).collect();
    let (wrong, limited) = tally(&codes, "401", "429");
    assert!(wrong <= limit, "{wrong} answered as wrong: {codes:?}");
    assert!(limited >= 60 - limit);
}

/// Finding 4, second half: anyone could lock an address out. The owner,
/// who signed in before from its own network, still signs in while an
/// attacker elsewhere has used up the address's shared budget.
async fn the_owners_network_signs_in_during_an_attack_from_elsewhere(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    app.user(&e, "owner").await;
    let home = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    assert_eq!(
        api_sign_in(&app, home, "owner@acme.test", PASSWORD).await,
        200
    );
    for i in 0..20 {
        let elsewhere = IpAddr::V4(Ipv4Addr::new(127, 9, i, 1));
        api_sign_in(&app, elsewhere, "owner@acme.test", "guess").await;
    }
    let stranger = IpAddr::V4(Ipv4Addr::new(127, 8, 0, 1));
    assert_eq!(
        api_sign_in(&app, stranger, "owner@acme.test", PASSWORD).await,
        429,
        "a new network shares the exhausted budget"
    );
    assert_eq!(
        api_sign_in(&app, home, "owner@acme.test", PASSWORD).await,
        200,
        "the owner's network keeps its own"
    );
}

/// Finding 3: a token kept its role after a demotion, a password change or
/// a reset. Each now ends every token at once (and an open IMAP session:
/// `tests/hostile.rs`, against the binary).
async fn tokens_and_sessions_end_when_credentials_change(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let accounts = format!("/v1/tenants/{}/accounts", e.tenant_id);

    // Demotion: an administrator made a user.
    let deputy = app
        .post(
            &accounts,
            &e.admin_token,
            json!({"address": "deputy@acme.test", "password": PASSWORD, "role": "admin"}),
        )
        .await;
    let deputy_id = deputy.ok(201)["id"].as_str().unwrap().to_owned();
    let token = app.login("deputy@acme.test", PASSWORD).await;
    app.get(&accounts, &token).await.ok(200);
    app.patch(
        &format!("/v1/accounts/{deputy_id}"),
        &e.admin_token,
        json!({"role": "user"}),
    )
    .await
    .ok(200);
    let after = app.get(&accounts, &token).await;
    assert!(after.problem(401).contains("changed"), "{after:?}");

    // A password change by the owner.
    let bob_id = app.user(&e, "bob").await;
    let bob = app.login("bob@acme.test", PASSWORD).await;
    let me = format!("/v1/accounts/{bob_id}");
    app.patch(
        &me,
        &bob,
        json!({"password": "another long passphrase", "current_password": PASSWORD}),
    )
    .await
    .ok(200);
    assert_eq!(app.get(&me, &bob).await.status, 401);

    // An administrator's reset.
    let carol_id = app.user(&e, "carol").await;
    let carol = app.login("carol@acme.test", PASSWORD).await;
    app.patch(
        &format!("/v1/accounts/{carol_id}"),
        &e.admin_token,
        json!({"password": "reset by the administrator"}),
    )
    .await
    .ok(200);
    assert_eq!(
        app.get(&format!("/v1/accounts/{carol_id}"), &carol)
            .await
            .status,
        401
    );

    // A suspension.
    let dave_id = app.user(&e, "dave").await;
    let dave = app.login("dave@acme.test", PASSWORD).await;
    app.patch(
        &format!("/v1/accounts/{dave_id}"),
        &e.admin_token,
        json!({"status": "suspended"}),
    )
    .await
    .ok(200);
    assert_eq!(
        app.get(&format!("/v1/accounts/{dave_id}"), &dave)
            .await
            .status,
        401
    );
}

/// Finding 3, API keys: a key minted by an administrator outlived the
/// administrator's role. It now dies with it.
async fn api_keys_die_with_their_makers_admin_role(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let deputy = app
        .post(
            &format!("/v1/tenants/{}/accounts", e.tenant_id),
            &e.admin_token,
            json!({"address": "deputy@acme.test", "password": PASSWORD, "role": "admin"}),
        )
        .await;
    let deputy_id = deputy.ok(201)["id"].as_str().unwrap().to_owned();
    let token = app.login("deputy@acme.test", PASSWORD).await;
    let key = app
        .post(
            &format!("/v1/tenants/{}/api-keys", e.tenant_id),
            &token,
            json!({"name": "provisioning", "scopes": ["read", "write"]}),
        )
        .await;
    let secret = key.ok(201)["secret"].as_str().unwrap().to_owned();
    let key_token = app.api_key_token(&secret).await;
    let tenant = format!("/v1/tenants/{}", e.tenant_id);
    app.get(&tenant, &key_token).await.ok(200);

    app.patch(
        &format!("/v1/accounts/{deputy_id}"),
        &e.admin_token,
        json!({"role": "user"}),
    )
    .await
    .ok(200);
    let used = app.get(&tenant, &key_token).await;
    assert!(used.problem(401).contains("no longer is one"), "{used:?}");
    let grant = app
        .send(
            "POST",
            "/v1/auth/token",
            None,
            Some(json!({"grant_type": "api_key", "api_key": secret})),
        )
        .await;
    assert!(grant.problem(401).contains("no longer is one"), "{grant:?}");
}

/// Finding 1, the squatter's other gain: a claimed name blocked its real
/// owner. The operator releases a claim with its accounts, and a claim
/// left unverified lapses on its own after `domains.claim_days`.
async fn a_squatted_name_returns_to_its_owner(backend: Backend) {
    let app = support::spawn(backend).await;
    let squatter = app.enterprise("squatter.test", 5).await;
    let owner = app.enterprise("owner.test", 5).await;
    for name in ["victim.example", "other.example"] {
        app.claim(&squatter, name).await;
        app.post(
            &format!("/v1/tenants/{}/accounts", squatter.tenant_id),
            &squatter.admin_token,
            json!({"address": format!("ceo@{name}"), "password": PASSWORD}),
        )
        .await
        .ok(201);
    }
    let add = |name: &'static str| {
        let (app, owner) = (&app, &owner);
        async move {
            app.post(
                &format!("/v1/tenants/{}/domains", owner.tenant_id),
                &owner.admin_token,
                json!({"name": name}),
            )
            .await
        }
    };
    assert!(add("victim.example").await.problem(409).contains("already"));

    // The operator releases one claim: the name is free again.
    let claims = app
        .get(
            &format!("/v1/tenants/{}/domains", squatter.tenant_id),
            &app.operator_token,
        )
        .await;
    let victim = claims.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "victim.example")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = app
        .delete(&format!("/v1/domains/{victim}"), &squatter.admin_token)
        .await;
    refused.problem(409);
    app.delete(&format!("/v1/domains/{victim}"), &app.operator_token)
        .await
        .ok(204);
    add("victim.example").await.ok(201);

    // The other lapses: nothing happens before its time, then it goes.
    assert_eq!(
        worker::claims::lapse_claims(&app.store, 7).await.unwrap(),
        0
    );
    // The squatter's other claim, and the owner's new one, not verified yet either.
    assert_eq!(
        worker::claims::lapse_claims(&app.store, 0).await.unwrap(),
        2
    );
    add("other.example").await.ok(201);
    assert!(
        app.store
            .account_by_address(&tenants::EmailAddress::parse("ceo@other.example").unwrap())
            .await
            .unwrap()
            .is_none(),
        "the claim's accounts went with it"
    );
}

/// Finding 2: any administrator above a tenant, or an API key, exported a
/// whole tenant (its data key and every `standard` message with it), as
/// often as it liked, and nobody was told. Now only the tenant's own
/// administrators with their password again, or the operator, may; one
/// at a time; and every administrator of the tenant hears of it.
async fn exports_need_the_tenants_own_admin_and_password(backend: Backend) {
    let app = support::spawn(backend).await;
    let (reseller_id, child_id) = app.reseller_and_child(1_000_000_000).await;
    let onboarded = app
        .post(
            &format!("/v1/tenants/{child_id}/onboard"),
            &app.operator_token,
            json!({"domain": "child.test", "admin": {"address": "admin@child.test", "password": PASSWORD}}),
        )
        .await;
    app.verify_domain(onboarded.ok(201)["domain"]["id"].as_str().unwrap())
        .await;
    let admin = app.login("admin@child.test", PASSWORD).await;
    let second = app
        .post(
            &format!("/v1/tenants/{child_id}/accounts"),
            &admin,
            json!({"address": "second@child.test", "password": PASSWORD, "role": "admin"}),
        )
        .await;
    let second_id = second.ok(201)["id"].as_str().unwrap().to_owned();
    let reseller_admin = {
        let onboarded = app
            .post(
                &format!("/v1/tenants/{reseller_id}/onboard"),
                &app.operator_token,
                json!({"domain": "hosting.test", "admin": {"address": "ops@hosting.test", "password": PASSWORD}}),
            )
            .await;
        app.verify_domain(onboarded.ok(201)["domain"]["id"].as_str().unwrap())
            .await;
        app.login("ops@hosting.test", PASSWORD).await
    };
    let path = format!("/v1/tenants/{child_id}/export");
    let body =
        |password: &str| json!({"passphrase": "a long archive passphrase", "password": password});

    let above = app.post(&path, &reseller_admin, body(PASSWORD)).await;
    assert!(
        above.problem(403).contains("own administrators"),
        "{above:?}"
    );
    let key = app
        .post(
            &format!("/v1/tenants/{child_id}/api-keys"),
            &admin,
            json!({"name": "ci", "scopes": ["read", "write"]}),
        )
        .await;
    let key_token = app
        .api_key_token(key.ok(201)["secret"].as_str().unwrap())
        .await;
    let by_key = app.post(&path, &key_token, body(PASSWORD)).await;
    assert!(by_key.problem(403).contains("API key"), "{by_key:?}");
    let bare = app
        .post(
            &path,
            &admin,
            json!({"passphrase": "a long archive passphrase"}),
        )
        .await;
    assert!(bare.problem(422).contains("password"), "{bare:?}");
    let wrong = app.post(&path, &admin, body("not my password")).await;
    assert!(wrong.problem(403).contains("password"), "{wrong:?}");

    app.post(&path, &admin, body(PASSWORD)).await.ok(202);
    let again = app.post(&path, &admin, body(PASSWORD)).await;
    assert!(again.problem(409).contains("already"), "{again:?}");

    // Both administrators were told, in their Inbox.
    let second_token = app.login("second@child.test", PASSWORD).await;
    let inbox = app
        .get(
            &format!("/v1/accounts/{second_id}/messages?folder=inbox"),
            &second_token,
        )
        .await;
    let subjects: Vec<String> = inbox.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["subject"].as_str().map(str::to_owned))
        .collect();
    assert!(
        subjects
            .iter()
            .any(|s| s.contains("export of your organisation")),
        "{subjects:?}"
    );
}

/// Finding 7, From spoofing: a second `From:` header, or `From: alice@a.test,
/// CEO <admin@b.test>`, passed the ownership check (only one address was
/// looked at) and went out with `auth=pass`. Refused on the API, saying why
/// (the submission port: `tests/hostile.rs`, against the binary).
async fn a_second_author_never_rides_along(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let alice_id = app.user(&e, "alice").await;
    let alice = app.login("alice@acme.test", PASSWORD).await;
    let spoofs = mail::probe::FORGED_AUTHORS;
    let raw = |headers: &str| {
        format!(
            "{headers}To: <bob@remote.test>\r\nSubject: Wire transfer\r\n\
             Date: Sat, 05 Dec 2026 10:00:00 +0000\r\n\r\nPlease pay today.\r\n"
        )
    };
    for (headers, why) in spoofs {
        let api = app
            .raw(
                app.http
                    .post(format!("{}/v1/accounts/{alice_id}/messages", app.base))
                    .bearer_auth(&alice)
                    .header("content-type", "message/rfc822")
                    .body(raw(headers)),
            )
            .await;
        let detail = api.problem(403);
        assert!(detail.contains(why), "{why}: {detail}");
    }
    // The honest message still goes.
    let honest = app
        .raw(
            app.http
                .post(format!("{}/v1/accounts/{alice_id}/messages", app.base))
                .bearer_auth(&alice)
                .header("content-type", "message/rfc822")
                .body(raw(
                    "From: Alice <alice@acme.test>\r\nSender: <alice@acme.test>\r\n",
                )),
        )
        .await;
    honest.ok(202);
}
