//! Password reset without support staff, against the real API and a real
//! SMTP sink: the link goes to the recovery address (nowhere else, and the
//! answer does not tell whether an address exists), works once, re-locks
//! the key when the old password is known and makes a new one otherwise.
//! The link exists only in the mail: no row of the job queue holds it. An
//! account on device sign-in sets its new password on the device, never
//! sending it.

mod support;

use std::time::Duration;

use mail::sink::Sink;
use serde_json::json;
use support::{PASSWORD, TestApp, device_sign_in, register_at};
use tenants::{Backend, on_both_backends};

/// The token in the newest reset mail the sink holds.
fn token_in(received: &[serde_json::Value], skip: usize) -> String {
    let resets: Vec<&serde_json::Value> = received
        .iter()
        .filter(|m| {
            m["data"]
                .as_str()
                .unwrap()
                .contains("Subject: Reset your Caliop password")
        })
        .collect();
    let mail = resets
        .get(skip)
        .unwrap_or_else(|| panic!("reset mail #{skip} in {received:?}"));
    let data = mail["data"].as_str().unwrap();
    let parsed = mail_parser::MessageParser::default()
        .parse(data.as_bytes())
        .unwrap();
    let text = parsed.body_text(0).unwrap().into_owned();
    let start = text.find("/reset#").expect("a reset link") + "/reset#".len();
    text[start..].split_whitespace().next().unwrap().to_owned()
}

async fn ask(app: &TestApp, address: &str) -> support::Reply {
    app.send(
        "POST",
        "/v1/public/password-reset",
        None,
        Some(json!({"address": address})),
    )
    .await
}

on_both_backends!(a_reset_link_works_once_and_says_what_happens_to_the_key);

async fn a_reset_link_works_once_and_says_what_happens_to_the_key(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    app.dns.set_mx("remote.test", &[(10, "mx.remote.test")]);
    app.dns
        .set_a("mx.remote.test", &[std::net::Ipv4Addr::LOCALHOST]);
    let sink = Sink::start(&[]);
    let created = app
        .post(&format!("/v1/tenants/{}/accounts", e.tenant_id), &e.admin_token,
            json!({"address": "nora@acme.test", "password": PASSWORD, "recovery_address": "nora@remote.test"}))
        .await;
    let fingerprint = created.ok(201)["fingerprint"].as_str().unwrap().to_owned();

    let known = ask(&app, "nora@acme.test").await;
    let unknown = ask(&app, "nobody@acme.test").await;
    assert_eq!(
        known.ok(202),
        unknown.ok(202),
        "the answer does not tell which addresses exist"
    );
    // While the mail waits in the queue, no row holds its link.
    let queued = app.store.job_rows().await.unwrap();
    for (kind, state, payload, _) in &queued {
        assert!(
            !payload.contains("/reset#"),
            "a {state} {kind} job holds the reset link: {payload}"
        );
    }
    assert!(
        queued.iter().any(|(kind, _, _, _)| kind.contains("reset")),
        "the reset mail is queued: {queued:?}"
    );
    let workers = app.start_workers(sink.port, Duration::from_millis(200));
    let received = sink.wait_for(2, Duration::from_secs(20)).await;
    assert!(
        received
            .iter()
            .all(|m| m["rcpt_tos"] == json!(["nora@remote.test"])),
        "only the recovery address gets mail"
    );
    let token = token_in(&received, 0);

    // Nobody reading the database finds the link: no job row holds the
    // token or the reset URL, and finished jobs keep no payload at all.
    let mut rows = app.store.job_rows().await.unwrap();
    for _ in 0..100 {
        if rows.iter().all(|(_, state, _, _)| state == "done") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        rows = app.store.job_rows().await.unwrap();
    }
    assert!(!rows.is_empty());
    for (kind, state, payload, error) in &rows {
        let row = format!("{kind} {state} {payload} {error:?}");
        assert!(
            !row.contains(&token) && !row.contains("/reset#"),
            "a job row holds the reset link: {row}"
        );
        if state == "done" {
            assert_eq!(payload, "{}", "a finished job keeps no payload: {row}");
        }
    }

    // Export first: the current key, still locked with the old password.
    let export = app
        .send(
            "GET",
            &format!("/v1/public/password-reset/{token}"),
            None,
            None,
        )
        .await;
    let export = export.ok(200).clone();
    assert_eq!(export["fingerprint"], fingerprint.as_str());
    assert!(
        export["secret_key"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----")
    );

    let path = format!("/v1/public/password-reset/{token}");
    let weak = app
        .send("POST", &path, None, Some(json!({"password": "short"})))
        .await;
    weak.problem(422);
    let wrong = app.send("POST", &path, None, Some(json!({"password": "a brand new passphrase", "current_password": "not the old one"}))).await;
    assert!(wrong.problem(403).contains("does not unlock the key"));
    let kept = app
        .send(
            "POST",
            &path,
            None,
            Some(json!({"password": "a brand new passphrase", "current_password": PASSWORD})),
        )
        .await;
    let kept = kept.ok(200).clone();
    assert_eq!(kept["key"], "kept");
    assert_eq!(
        kept["fingerprint"],
        fingerprint.as_str(),
        "re-locked, the same key"
    );
    assert!(
        !app.login("nora@acme.test", "a brand new passphrase")
            .await
            .is_empty()
    );
    let old = app.send("POST", "/v1/auth/token", None,
        Some(json!({"grant_type": "password", "username": "nora@acme.test", "password": PASSWORD}))).await;
    old.problem(401);
    let again = app
        .send(
            "POST",
            &path,
            None,
            Some(json!({"password": "yet another passphrase"})),
        )
        .await;
    assert!(
        again.problem(404).contains("used or expired"),
        "a link works once"
    );

    // Without the old password: a new key, and the answer says what that means.
    ask(&app, "nora@acme.test").await.ok(202);
    let received = sink.wait_for(3, Duration::from_secs(20)).await;
    let second = token_in(&received, 1);
    assert_ne!(second, token);
    let replaced = app
        .send(
            "POST",
            &format!("/v1/public/password-reset/{second}"),
            None,
            Some(json!({"password": "yet another passphrase"})),
        )
        .await;
    let replaced = replaced.ok(200).clone();
    assert_eq!(replaced["key"], "replaced");
    assert_ne!(replaced["fingerprint"], fingerprint.as_str());
    assert!(
        replaced["detail"]
            .as_str()
            .unwrap()
            .contains("readable only with the previous key")
    );
    let token = app.login("nora@acme.test", "yet another passphrase").await;
    let me = app
        .get(
            &format!("/v1/accounts/{}", created.body["id"].as_str().unwrap()),
            &token,
        )
        .await;
    assert_eq!(me.ok(200)["fingerprint"], replaced["fingerprint"]);

    // Three requests an hour per address.
    ask(&app, "nora@acme.test").await.ok(202);
    let limited = ask(&app, "nora@acme.test").await;
    assert!(
        limited.problem(429).contains("too many reset requests"),
        "{limited:?}"
    );
    workers.stop().await;
}

on_both_backends!(a_device_account_sets_its_new_password_on_the_device);

async fn a_device_account_sets_its_new_password_on_the_device(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    app.dns.set_mx("remote.test", &[(10, "mx.remote.test")]);
    app.dns
        .set_a("mx.remote.test", &[std::net::Ipv4Addr::LOCALHOST]);
    let sink = Sink::start(&[]);
    // Made with an activation link, opened on the device.
    let created = app
        .post(
            &format!("/v1/tenants/{}/accounts", e.tenant_id),
            &e.admin_token,
            json!({"address": "dana@acme.test", "display_name": "Dana", "recovery_address": "dana@remote.test"}),
        )
        .await;
    let created = created.ok(201).clone();
    let account = created["id"].as_str().unwrap().to_owned();
    let link = created["activation"]["url"].as_str().unwrap();
    let activation = vault::opaque::Activation::parse(link.rsplit_once('#').unwrap().1).unwrap();
    let base = format!("/v1/public/activations/{}", activation.token());
    let opened = app.send("GET", &base, None, None).await;
    let first_key = activation
        .unlock(opened.ok(200)["locked_key"].as_str().unwrap())
        .unwrap();
    register_at(
        &app,
        &base,
        "dana's first passphrase",
        &first_key,
        json!({}),
    )
    .await
    .ok(204);
    device_sign_in(&app, "dana@acme.test", "dana's first passphrase").await;

    // The reset link comes by mail, as for any account.
    ask(&app, "dana@acme.test").await.ok(202);
    let workers = app.start_workers(sink.port, Duration::from_millis(200));
    let received = sink.wait_for(2, Duration::from_secs(20)).await;
    let token = token_in(&received, 0);
    let path = format!("/v1/public/password-reset/{token}");
    let export_before = app.send("GET", &path, None, None).await;
    let export_before = export_before.ok(200).clone();
    assert_eq!(export_before["on_device"], true);
    let blob_before = export_before["secret_key"].as_str().unwrap().to_owned();
    assert!(blob_before.starts_with("caliop-key-v1:"));

    // The new password never goes to the server, not even here.
    let sent = app
        .send(
            "POST",
            &path,
            None,
            Some(json!({"password": "a password sent in clear"})),
        )
        .await;
    assert!(sent.problem(409).contains("/start and /finish"), "{sent:?}");

    // A key pair made on the device, for another address: refused.
    let stranger =
        vault::openpgp::AccountKey::generate_unprotected("Eve <eve@elsewhere.test>").unwrap();
    let refused = register_at(
        &app,
        &path,
        "dana's second passphrase",
        &stranger.secret_armored,
        json!({"public_key": stranger.public_armored}),
    )
    .await;
    assert!(refused.problem(422).contains("`public_key`"), "{refused:?}");

    // A key pair of her own, made on the device: the password and key change.
    let mine = vault::openpgp::AccountKey::generate_unprotected("Dana <dana@acme.test>").unwrap();
    let done = register_at(
        &app,
        &path,
        "dana's second passphrase",
        &mine.secret_armored,
        json!({"public_key": mine.public_armored}),
    )
    .await;
    let done = done.ok(200).clone();
    assert_eq!(done["key"], "replaced");
    assert_eq!(done["fingerprint"], mine.fingerprint.as_str());
    // Once.
    let again = register_at(
        &app,
        &path,
        "a third passphrase",
        &mine.secret_armored,
        json!({}),
    )
    .await;
    assert!(again.problem(404).contains("used or expired"));

    // The new password signs in; the key it unlocks is the device's; the
    // key before stays for its owner, locked as it was; mail is sealed to
    // the new key from now on.
    let (token, export) = device_sign_in(&app, "dana@acme.test", "dana's second passphrase").await;
    let locked = app
        .get(&format!("/v1/accounts/{account}/secret-key"), &token)
        .await;
    assert_eq!(
        export.unwrap(locked.body.as_str().unwrap()).unwrap(),
        mine.secret_armored
    );
    let previous = app
        .get(
            &format!("/v1/accounts/{account}/previous-secret-key"),
            &token,
        )
        .await;
    assert_eq!(previous.body.as_str(), Some(blob_before.as_str()));
    let me = app.get(&format!("/v1/accounts/{account}"), &token).await;
    assert_eq!(me.ok(200)["fingerprint"], mine.fingerprint.as_str());
    workers.stop().await;
}
