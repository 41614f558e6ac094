//! Business addresses and Sieve, tried as a hostile tenant would: nothing
//! in a body (an account, a domain, a catch-all) may name another tenant's;
//! a restricted group refuses mail from outside and from other tenants'
//! accounts, and takes its own tenant's; the package bounds aliases and
//! groups; the tenant-wide script runs before the account's, `discard`
//! stores nothing, `reject` refuses at DATA with the script's reason; a
//! script that asks for an extension we do not offer is refused.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{PASSWORD, Sink, SmtpProbe, TestApp};
use tenants::{Backend, on_both_backends};

on_both_backends!(
    nothing_in_a_body_names_another_tenants_objects,
    restricted_groups_take_only_their_own_senders,
    the_package_bounds_aliases_and_groups,
    tenant_script_first_then_the_accounts_discard_and_reject,
    sealed_mail_is_forwarded_encrypted_to_a_wkd_key,
    a_vacation_reply_never_speaks_for_another_tenants_domain
);

async fn nothing_in_a_body_names_another_tenants_objects(backend: Backend) {
    let app = support::spawn(backend).await;
    let a = app.enterprise("a.test", 10).await;
    let b = app.enterprise("b.test", 10).await;
    let alice = app.user(&a, "alice").await;
    let bob = app.user(&b, "bob").await;
    let addresses = format!("/v1/tenants/{}/addresses", b.tenant_id);
    for (body, why) in [
        (
            json!({"address": "x@a.test", "kind": "alias", "account_id": bob}),
            "an address in another tenant's domain",
        ),
        (
            json!({"address": "x@b.test", "kind": "alias", "account_id": alice}),
            "an alias of another tenant's account",
        ),
        (
            json!({"address": "y@b.test", "kind": "group", "members": [bob, alice]}),
            "another tenant's account as a member",
        ),
    ] {
        let reply = app.post(&addresses, &b.admin_token, body).await;
        let detail = reply.problem(422);
        assert!(!detail.is_empty(), "{why}");
    }
    let routing = format!("/v1/domains/{}/routing", b.domain_id);
    let reply = app
        .send(
            "PUT",
            &routing,
            Some(&b.admin_token),
            Some(json!({"catch_all": "alice@a.test"})),
        )
        .await;
    reply.problem(422);
    let reply = app
        .send(
            "PUT",
            &routing,
            Some(&b.admin_token),
            Some(json!({"alias_of": a.domain_id})),
        )
        .await;
    reply.problem(422);
    // Nothing of A's changed: mail to alice still reaches only alice.
    let routing_a = app
        .get(
            &format!("/v1/domains/{}/routing", a.domain_id),
            &a.admin_token,
        )
        .await;
    assert_eq!(
        routing_a.ok(200),
        &json!({"alias_of": null, "catch_all": null})
    );
    // B's admin cannot see or change A's aliases.
    let mine = app
        .post(
            &format!("/v1/tenants/{}/addresses", a.tenant_id),
            &a.admin_token,
            json!({"address": "sales@a.test", "kind": "alias", "account_id": alice}),
        )
        .await;
    let id = mine.ok(201)["id"].as_str().unwrap().to_owned();
    app.get(&format!("/v1/addresses/{id}"), &b.admin_token)
        .await
        .problem(404);
    app.delete(&format!("/v1/addresses/{id}"), &b.admin_token)
        .await
        .problem(404);
    // A user is not an administrator of addresses.
    let alice_token = app.login("alice@a.test", PASSWORD).await;
    app.post(
        &format!("/v1/tenants/{}/addresses", a.tenant_id),
        &alice_token,
        json!({"address": "mine@a.test", "kind": "alias", "account_id": alice}),
    )
    .await
    .problem(403);
    // And an administrator does not forward a user's mail.
    app.send(
        "PUT",
        &format!("/v1/accounts/{alice}/forwarding"),
        Some(&a.admin_token),
        Some(json!({"to": "admin@a.test"})),
    )
    .await
    .problem(403);
}

async fn smtp_rcpt(app: &TestApp, from: &str, to: &str) -> (u16, String) {
    let mut probe = SmtpProbe::connect(app.smtp).await;
    probe.cmd("EHLO sender.test").await;
    probe.cmd(&format!("MAIL FROM:<{from}>")).await;
    probe.cmd(&format!("RCPT TO:<{to}>")).await
}

async fn inbox(app: &TestApp, account: &str, token: &str) -> Vec<Value> {
    let reply = app
        .get(
            &format!("/v1/accounts/{account}/messages?folder=inbox"),
            token,
        )
        .await;
    reply.ok(200)["items"].as_array().unwrap().clone()
}

async fn restricted_groups_take_only_their_own_senders(backend: Backend) {
    let app = support::spawn(backend).await;
    let a = app.enterprise("a.test", 10).await;
    let b = app.enterprise("b.test", 10).await;
    let alice = app.user(&a, "alice").await;
    let carol = app.user(&a, "carol").await;
    let bob = app.user(&b, "bob").await;
    let group = app
        .post(
            &format!("/v1/tenants/{}/addresses", a.tenant_id),
            &a.admin_token,
            json!({"address": "staff@a.test", "kind": "group", "members": [alice], "posting": "tenant"}),
        )
        .await;
    group.ok(201);
    // From outside, even claiming a hosted address: refused at RCPT, with why.
    let (code, text) = smtp_rcpt(&app, "carol@a.test", "staff@a.test").await;
    assert_eq!(code, 550, "{text}");
    assert!(text.starts_with("5.7.1"), "{text}");
    // Signed in: carol (same tenant) reaches it; bob (another tenant) does not.
    let workers = app.start_workers(9, Duration::from_secs(1));
    let carol_token = app.login("carol@a.test", PASSWORD).await;
    let bob_token = app.login("bob@b.test", PASSWORD).await;
    for (sender, token, subject) in [
        (&carol, &carol_token, "from carol"),
        (&bob, &bob_token, "from bob"),
    ] {
        app.post(
            &format!("/v1/accounts/{sender}/messages"),
            token,
            json!({"to": ["staff@a.test"], "subject": subject, "text": "hello"}),
        )
        .await
        .ok(202);
    }
    let alice_token = app.login("alice@a.test", PASSWORD).await;
    let mut subjects = Vec::new();
    for _ in 0..100 {
        subjects = inbox(&app, &alice, &alice_token)
            .await
            .iter()
            .filter_map(|m| m["subject"].as_str().map(str::to_owned))
            .collect();
        if !subjects.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        subjects,
        ["from carol"],
        "only the tenant's own account got through"
    );
    // Bob hears why: his message bounced with the group's refusal.
    let mut bounced = false;
    for _ in 0..100 {
        let listed = inbox(&app, &bob, &bob_token).await;
        if listed.iter().any(|m| {
            m["subject"]
                .as_str()
                .is_some_and(|s| s.to_ascii_lowercase().contains("deliver"))
        }) {
            bounced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(bounced, "bob gets a bounce");
    workers.stop().await;
}

async fn the_package_bounds_aliases_and_groups(backend: Backend) {
    let app = support::spawn(backend).await;
    let a = app.enterprise("a.test", 2).await;
    let path = format!("/v1/tenants/{}/addresses", a.tenant_id);
    for n in 0..2 {
        app.post(
            &path,
            &a.admin_token,
            json!({"address": format!("alias{n}@a.test"), "kind": "alias", "account_id": a.admin_id}),
        )
        .await
        .ok(201);
    }
    let reply = app
        .post(
            &path,
            &a.admin_token,
            json!({"address": "alias2@a.test", "kind": "alias", "account_id": a.admin_id}),
        )
        .await;
    let detail = reply.problem(409);
    assert!(detail.contains("limit"), "{detail}");
    // A domain alias holds no addresses of its own.
    let second = app
        .post(
            &format!("/v1/tenants/{}/domains", a.tenant_id),
            &a.admin_token,
            json!({"name": "a.example"}),
        )
        .await;
    let second = second.ok(201)["id"].as_str().unwrap().to_owned();
    app.verify_domain(&second).await;
    app.send(
        "PUT",
        &format!("/v1/domains/{second}/routing"),
        Some(&a.admin_token),
        Some(json!({"alias_of": a.domain_id})),
    )
    .await
    .ok(200);
    app.post(
        &format!("/v1/tenants/{}/accounts", a.tenant_id),
        &app.operator_token,
        json!({"address": "someone@a.example", "password": PASSWORD}),
    )
    .await
    .problem(409);
}

async fn tenant_script_first_then_the_accounts_discard_and_reject(backend: Backend) {
    let app = support::spawn(backend).await;
    let a = app.enterprise("a.test", 10).await;
    let alice = app.user(&a, "alice").await;
    let alice_token = app.login("alice@a.test", PASSWORD).await;
    app.send(
        "PUT",
        &format!("/v1/tenants/{}/sieve", a.tenant_id),
        Some(&a.admin_token),
        Some(json!({"content": "require \"imap4flags\";\r\n\
            if header :contains \"subject\" \"[bulk]\" { discard; stop; }\r\n\
            addflag \"$reviewed\";\r\n"})),
    )
    .await
    .ok(200);
    app.send(
        "PUT",
        &format!("/v1/accounts/{alice}/sieve/mine"),
        Some(&alice_token),
        Some(json!({"active": true, "content":
            "require [\"fileinto\", \"reject\", \"imap4flags\"];\r\n\
             if header :contains \"subject\" \"unwanted\" { reject \"I do not take these\"; stop; }\r\n\
             fileinto :flags \"\\\\Flagged\" \"Later\";\r\n"})),
    )
    .await
    .ok(200);
    let deliver = |subject: &'static str| {
        let raw = support::message("x@sender.test", "alice@a.test", subject, "body");
        let smtp = app.smtp;
        async move {
            support::send_with_lettre(smtp, "x@sender.test", &["alice@a.test"], &raw, false).await
        }
    };
    deliver("[bulk] offer")
        .await
        .expect("accepted, then discarded");
    deliver("for later").await.expect("accepted");
    let refused = deliver("unwanted thing")
        .await
        .expect_err("rejected by the script");
    let text = refused.to_string();
    assert!(text.contains("I do not take these"), "{text}");
    let all = app
        .get(&format!("/v1/accounts/{alice}/messages"), &alice_token)
        .await;
    let all = all.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(
        all.len(),
        1,
        "only the message for later is stored: {all:?}"
    );
    assert_eq!(all[0]["subject"], "for later");
    assert!(
        all[0]["flags"].to_string().contains("flagged"),
        "imap4flags set the flag: {}",
        all[0]
    );
    assert!(
        all[0].to_string().contains("$reviewed"),
        "the tenant script's flag goes with the account's filing: {}",
        all[0]
    );
    let mailboxes = app
        .get(&format!("/v1/accounts/{alice}/mailboxes"), &alice_token)
        .await;
    let later = mailboxes
        .ok(200)
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "Later")
        .expect("fileinto made the mailbox")
        .clone();
    assert_eq!(all[0]["mailbox_id"], later["id"]);
    // An extension that rewrites the message is not offered.
    let reply = app
        .send(
            "PUT",
            &format!("/v1/accounts/{alice}/sieve/edit"),
            Some(&alice_token),
            Some(json!({"content": "require \"editheader\";\r\naddheader \"X-A\" \"b\";\r\n"})),
        )
        .await;
    let detail = reply.problem(422);
    assert!(detail.contains("editheader"), "{detail}");
}

async fn sealed_mail_is_forwarded_encrypted_to_a_wkd_key(backend: Backend) {
    let app = support::spawn(backend).await;
    let a = app.enterprise("a.test", 10).await;
    let reply = app
        .post(
            &format!("/v1/tenants/{}/accounts", a.tenant_id),
            &a.admin_token,
            json!({"address": "ana@a.test", "password": PASSWORD, "level": "sealed"}),
        )
        .await;
    let ana = reply.ok(201)["id"].as_str().unwrap().to_owned();
    let ana_token = app.login("ana@a.test", PASSWORD).await;
    app.patch(
        &format!("/v1/tenants/{}", a.tenant_id),
        &app.operator_token,
        json!({"external_forwarding": true}),
    )
    .await
    .ok(200);
    // dave@remote.test publishes his key in his domain's Web Key Directory.
    let dave = vault::openpgp::AccountKey::generate("Dave <dave@remote.test>", "dave's passphrase")
        .unwrap();
    let binary = vault::openpgp::AccountKey::binary_public_key(&dave.public_armored).unwrap();
    let hash = mail::wkd::hash("dave");
    app.https.put(
        "openpgpkey.remote.test",
        &format!("/.well-known/openpgpkey/remote.test/hu/{hash}?l=dave"),
        binary,
    );
    app.dns.set_mx("remote.test", &[(10, "mx.remote.test")]);
    app.dns
        .set_a("mx.remote.test", &[std::net::Ipv4Addr::LOCALHOST]);
    app.send(
        "PUT",
        &format!("/v1/accounts/{ana}/forwarding"),
        Some(&ana_token),
        Some(json!({"to": "dave@remote.test", "keep": true})),
    )
    .await
    .ok(200);
    let sink = Sink::start(&[]);
    let workers = app.start_workers(sink.port, Duration::from_secs(1));
    let raw = support::message(
        "x@sender.test",
        "ana@a.test",
        "The code",
        "ORCHID-LANTERN-42",
    );
    support::send_with_lettre(app.smtp, "x@sender.test", &["ana@a.test"], &raw, false)
        .await
        .expect("accepted");
    let received = sink.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(received.len(), 1, "forwarded");
    let data = received[0]["data"].as_str().unwrap();
    assert!(data.contains("multipart/encrypted"), "{data}");
    assert!(
        !data.contains("ORCHID-LANTERN") && !data.contains("The code"),
        "nothing readable leaves: {data}"
    );
    assert_eq!(received[0]["rcpt_tos"], json!(["dave@remote.test"]));
    // Dave's key opens it; the copy kept in the Inbox is ana's, sealed.
    let home = support::gpg_home();
    let (ok, _, err) = support::gpg(
        home.path(),
        &["--passphrase", "dave's passphrase", "--import"],
        dave.secret_armored.as_bytes(),
    );
    assert!(ok, "{err}");
    let start = data.find("-----BEGIN PGP MESSAGE-----").unwrap();
    let end = data.find("-----END PGP MESSAGE-----").unwrap() + 25;
    let (ok, clear, err) = support::gpg(
        home.path(),
        &["--passphrase", "dave's passphrase", "--decrypt"],
        &data.as_bytes()[start..end],
    );
    assert!(ok, "dave's key opens it: {err}");
    assert!(String::from_utf8_lossy(&clear).contains("ORCHID-LANTERN-42"));
    assert_eq!(inbox(&app, &ana, &ana_token).await.len(), 1, "kept");
    workers.stop().await;
}

async fn a_vacation_reply_never_speaks_for_another_tenants_domain(backend: Backend) {
    let app = support::spawn(backend).await;
    let a = app.enterprise("a.test", 10).await;
    let b = app.enterprise("b.test", 10).await;
    app.publish_dkim(&a.domain_id, &a.admin_token).await;
    app.publish_dkim(&b.domain_id, &b.admin_token).await;
    let alice = app.user(&a, "alice").await;
    let alice_token = app.login("alice@a.test", PASSWORD).await;
    app.dns.set_mx("remote.test", &[(10, "mx.remote.test")]);
    app.dns
        .set_a("mx.remote.test", &[std::net::Ipv4Addr::LOCALHOST]);
    // The script claims b.test's chief as the reply's author.
    app.send(
        "PUT",
        &format!("/v1/accounts/{alice}/sieve/away"),
        Some(&alice_token),
        Some(json!({"active": true, "content":
            "require \"vacation\";\r\nvacation :from \"ceo@b.test\" :subject \"Away\" \"Back on Monday.\";\r\n"})),
    )
    .await
    .ok(200);
    let dns = app.dns.addr().to_string();
    let sink = Sink::start(&["--dns", &dns]);
    let workers = app.start_workers(sink.port, Duration::from_secs(1));
    let raw = support::message(
        "peer@remote.test",
        "alice@a.test",
        "Hello",
        "are you there?",
    );
    support::send_with_lettre(app.smtp, "peer@remote.test", &["alice@a.test"], &raw, false)
        .await
        .expect("accepted");
    let replies = sink.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(replies.len(), 1, "one vacation reply");
    let data = replies[0]["data"].as_str().unwrap();
    let from = data
        .split("\r\n")
        .find(|l| l.to_ascii_lowercase().starts_with("from:"))
        .unwrap_or_default();
    assert!(
        from.contains("alice@a.test") && !from.contains("b.test"),
        "{from}"
    );
    let signatures = replies[0]["dkim"].as_array().unwrap();
    assert!(!signatures.is_empty());
    for signature in signatures {
        assert_eq!(signature["domain"], "a.test", "{signature}");
        assert_eq!(signature["verified"], true, "{signature}");
    }
    workers.stop().await;
}
