//! Outbound mail, end to end: submission over the API and the submission
//! port, delivery by the workers to a real SMTP server on loopback (the
//! Python sink, aiosmtpd) whose DKIM verdict comes from an independent
//! verifier (dkimpy) reading our keys from the loopback DNS server;
//! deferrals, bounces with their DSN, local delivery between tenants, and
//! the refusals that queue nothing.

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Sink, TestApp};
use tenants::{Backend, on_both_backends};

on_both_backends!(
    api_and_submission_port_deliver_signed_mail,
    deferred_then_delivered_and_bounces_quote_the_remote,
    hosted_domains_deliver_locally_at_the_recipients_level,
    refused_submissions_queue_nothing,
    sealed_senders_encrypt_to_every_key_they_know,
    failed_sign_ins_count_across_the_api_and_the_submission_port,
    a_relay_takes_mail_for_every_other_domain,
    mta_sts_enforce_means_verified_tls_or_waiting,
    dane_means_the_certificate_its_tlsa_names_or_waiting,
    expired_messages_bounce_with_the_last_reply,
    remote_keys_found_by_wkd_encrypt_outgoing_mail,
    plain_text_from_the_api_says_mime_and_its_charset,
);

/// `remote.test` has its MX on loopback, where the sink listens.
fn route_remote(app: &TestApp) {
    app.dns.set_mx("remote.test", &[(10, "mx.remote.test")]);
    app.dns.set_a("mx.remote.test", &[Ipv4Addr::LOCALHOST]);
}

async fn delivery(app: &TestApp, message_id: &str, token: &str) -> Vec<Value> {
    let report = app
        .get(&format!("/v1/messages/{message_id}/delivery"), token)
        .await;
    report.ok(200)["recipients"].as_array().unwrap().clone()
}

async fn wait_status(
    app: &TestApp,
    message_id: &str,
    token: &str,
    recipient: &str,
    status: &str,
) -> Value {
    for _ in 0..150 {
        let all = delivery(app, message_id, token).await;
        if let Some(r) = all
            .iter()
            .find(|r| r["recipient"] == recipient && r["status"] == status)
        {
            return r.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{recipient} never reached {status}: {:?}",
        delivery(app, message_id, token).await
    );
}

async fn folder(app: &TestApp, account_id: &str, token: &str, folder: &str) -> Vec<Value> {
    let list = app
        .get(
            &format!("/v1/accounts/{account_id}/messages?folder={folder}"),
            token,
        )
        .await;
    list.ok(200)["items"].as_array().unwrap().clone()
}

/// The Inbox once it holds a message: the job records a recipient as
/// bounced first, then puts the DSN in the sender's Inbox.
async fn inbox_with_dsn(app: &TestApp, account_id: &str, token: &str) -> Vec<Value> {
    for _ in 0..100 {
        let inbox = folder(app, account_id, token, "inbox").await;
        if !inbox.is_empty() {
            return inbox;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    folder(app, account_id, token, "inbox").await
}

/// A new user of `e`: its account id and a token.
async fn person(app: &TestApp, e: &support::Enterprise, local: &str) -> (String, String) {
    let id = app.user(e, local).await;
    let token = app
        .login(&format!("{local}@{}", e.domain), support::PASSWORD)
        .await;
    (id, token)
}

async fn api_and_submission_port_deliver_signed_mail(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (alice_id, alice) = person(&app, &e, "alice").await;
    app.publish_dkim(&e.domain_id, &e.admin_token).await;
    route_remote(&app);
    let dns = app.dns.addr().to_string();
    let sink = Sink::start(&["--dns", &dns, "--tls"]);
    let workers = app.start_workers(sink.port, Duration::from_secs(1));

    let sent = app
        .post(
            &format!("/v1/accounts/{alice_id}/messages"),
            &alice,
            json!({"to": ["bob@remote.test"], "bcc": ["carol@remote.test"], "subject": "Quarterly figures",
                   "text": "Numbers attached.", "attachments": [{"filename": "q3.csv", "media_type": "text/csv",
                   "content_base64": "YSxiCjEsMgo="}]}),
        )
        .await;
    let sent = sent.ok(202).clone();
    assert_eq!(sent["recipients"], 2);
    let message_id = sent["message_id"].as_str().unwrap().to_owned();

    // Over the submission port, with STARTTLS and AUTH, as a mail client would.
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    let tls = lettre::transport::smtp::client::TlsParameters::builder(support::MAIL_HOST.into())
        .dangerous_accept_invalid_certs(true)
        .build_rustls()
        .unwrap();
    let client = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(app.submission.port())
        .tls(lettre::transport::smtp::client::Tls::Required(tls))
        .credentials(lettre::transport::smtp::authentication::Credentials::new(
            "alice@acme.test".into(),
            support::PASSWORD.into(),
        ))
        .build();
    let raw = support::message(
        "alice@acme.test",
        "dave@remote.test",
        "From my mail client",
        "Sent with AUTH PLAIN.",
    );
    let envelope = lettre::address::Envelope::new(
        Some("alice@acme.test".parse().unwrap()),
        vec!["dave@remote.test".parse().unwrap()],
    )
    .unwrap();
    client
        .send_raw(&envelope, &raw)
        .await
        .expect("the submission port queues the message");

    let received = sink.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(received.len(), 2, "{received:?}");
    let from_api = received
        .iter()
        .find(|m| m["message_id"] == sent["header_message_id"])
        .expect("the API message arrived");
    let mut rcpts: Vec<&str> = from_api["rcpt_tos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    rcpts.sort();
    assert_eq!(rcpts, ["bob@remote.test", "carol@remote.test"]);
    for message in &received {
        let data = message["data"].as_str().unwrap();
        assert!(
            !data.to_ascii_lowercase().contains("\nbcc:"),
            "Bcc must not leave: {data}"
        );
        assert!(data.contains("Autocrypt: addr=alice@acme.test; prefer-encrypt=mutual; keydata="));
        assert_eq!(message["mail_from"], "alice@acme.test");
        assert_eq!(message["tls"], true, "opportunistic STARTTLS was used");
        let dkim = message["dkim"].as_array().unwrap();
        let algorithms: Vec<&str> = dkim
            .iter()
            .map(|d| d["algorithm"].as_str().unwrap())
            .collect();
        assert_eq!(algorithms, ["rsa-sha256", "ed25519-sha256"], "{dkim:?}");
        for signature in dkim {
            assert_eq!(signature["domain"], "acme.test");
            assert_eq!(
                signature["verified"], true,
                "dkimpy verifies our signature: {signature}"
            );
        }
    }
    let api_data = from_api["data"].as_str().unwrap();
    assert_eq!(
        api_data.matches("multipart/mixed").count(),
        1,
        "text and attachment side by side: {api_data}"
    );
    assert!(api_data.contains("q3.csv"));
    let client_message = received
        .iter()
        .find(|m| m["rcpt_tos"] == json!(["dave@remote.test"]))
        .unwrap();
    assert!(
        client_message["data"]
            .as_str()
            .unwrap()
            .contains("Sent with AUTH PLAIN.")
    );

    for r in ["bob@remote.test", "carol@remote.test"] {
        let d = wait_status(&app, &message_id, &alice, r, "delivered").await;
        assert_eq!(d["remote_host"], "mx.remote.test");
        assert!(
            d["remote_reply"].as_str().unwrap().starts_with("250"),
            "{d}"
        );
    }
    let sent_folder = folder(&app, &alice_id, &alice, "sent").await;
    assert_eq!(sent_folder.len(), 2, "both submissions have a Sent copy");
    let copy = app
        .get(&format!("/v1/messages/{message_id}/raw"), &alice)
        .await;
    assert!(
        copy.text().contains("Bcc: carol@remote.test"),
        "the sender's copy remembers the Bcc"
    );
    workers.stop().await;
}

async fn deferred_then_delivered_and_bounces_quote_the_remote(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (alice_id, alice) = person(&app, &e, "alice").await;
    route_remote(&app);
    let sink = Sink::start(&[
        "--data-replies",
        "451",
        "--refuse-rcpt",
        "gone@remote.test=550",
    ]);
    let workers = app.start_workers(sink.port, Duration::from_secs(2));

    let sent = app
        .post(
            &format!("/v1/accounts/{alice_id}/messages"),
            &alice,
            json!({"to": ["bob@remote.test", "gone@remote.test"], "subject": "Hello", "text": "Are you there?"}),
        )
        .await;
    let message_id = sent.ok(202)["message_id"].as_str().unwrap().to_owned();

    let deferred = wait_status(&app, &message_id, &alice, "bob@remote.test", "deferred").await;
    assert!(
        deferred["remote_reply"]
            .as_str()
            .unwrap()
            .starts_with("451 4.3.0"),
        "{deferred}"
    );
    let bounced = wait_status(&app, &message_id, &alice, "gone@remote.test", "bounced").await;
    assert_eq!(
        bounced["remote_reply"],
        "550 5.1.1 <gone@remote.test>: no such user here"
    );

    let delivered = wait_status(&app, &message_id, &alice, "bob@remote.test", "delivered").await;
    assert_eq!(
        delivered["attempts"], 2,
        "one deferral, then delivery: {delivered}"
    );
    assert_eq!(
        sink.messages().len(),
        1,
        "the 451 attempt was not recorded, the retry was"
    );

    // The bounce: one DSN in the sender's Inbox, quoting the remote reply.
    let inbox = inbox_with_dsn(&app, &alice_id, &alice).await;
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert_eq!(inbox[0]["envelope_from"], "", "DSNs use the null sender");
    let dsn = app
        .get(
            &format!("/v1/messages/{}/raw", inbox[0]["id"].as_str().unwrap()),
            &alice,
        )
        .await;
    let dsn = dsn.text();
    assert!(dsn.contains("report-type=delivery-status"), "{dsn}");
    // In the sender's tenant's brand and words (its delivery_failure template).
    let parsed = mail_parser::MessageParser::default()
        .parse(dsn.as_bytes())
        .unwrap();
    let explanation = parsed.body_text(0).unwrap();
    assert!(explanation.starts_with("Hello,"), "{explanation}");
    assert!(
        explanation.contains("could not be delivered to gone@remote.test"),
        "{explanation}"
    );
    assert!(
        explanation.contains("The details, for your mail administrator"),
        "{explanation}"
    );
    assert_eq!(
        parsed.from().and_then(|f| f.first()).and_then(|a| a.name()),
        Some("Caliop")
    );
    assert!(
        dsn.contains("Final-Recipient: rfc822; gone@remote.test"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Diagnostic-Code: smtp; 550 5.1.1 <gone@remote.test>: no such user here"),
        "{dsn}"
    );
    assert!(
        !dsn.contains("Final-Recipient: rfc822; bob@remote.test"),
        "bob was delivered, not bounced"
    );
    workers.stop().await;
}

async fn hosted_domains_deliver_locally_at_the_recipients_level(backend: Backend) {
    let app = support::spawn(backend).await;
    let acme = app.enterprise("acme.test", 5).await;
    let globex = app.enterprise("globex.test", 5).await;
    let (alice_id, alice) = person(&app, &acme, "alice").await;
    let (bob_id, bob) = person(&app, &globex, "bob").await;
    let (carol_id, carol) = person(&app, &globex, "carol").await;
    let sealed = app
        .patch(
            &format!("/v1/accounts/{bob_id}"),
            &globex.admin_token,
            json!({"level": "sealed"}),
        )
        .await;
    assert_eq!(sealed.ok(200)["level"], "sealed");
    // No DNS for either domain and no sink: nothing may leave the machine.
    let workers = app.start_workers(9, Duration::from_secs(1));

    let sent = app
        .post(
            &format!("/v1/accounts/{alice_id}/messages"),
            &alice,
            json!({"to": ["bob@globex.test", "carol@globex.test"], "subject": "Merger", "text": "Let us talk."}),
        )
        .await;
    let message_id = sent.ok(202)["message_id"].as_str().unwrap().to_owned();
    for r in ["bob@globex.test", "carol@globex.test"] {
        let d = wait_status(&app, &message_id, &alice, r, "delivered").await;
        assert_eq!(d["remote_host"], support::MAIL_HOST);
    }

    let bobs = folder(&app, &bob_id, &bob, "inbox").await;
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0]["level"], "sealed");
    assert_eq!(
        bobs[0]["subject"],
        Value::Null,
        "the server does not know a sealed subject"
    );
    assert_eq!(bobs[0]["authentication"]["auth"], "alice@acme.test");
    let raw = app
        .get(
            &format!("/v1/messages/{}/raw", bobs[0]["id"].as_str().unwrap()),
            &bob,
        )
        .await;
    assert!(
        raw.text().contains("multipart/encrypted"),
        "sealed on arrival"
    );
    assert!(!raw.text().contains("Let us talk."));

    let carols = folder(&app, &carol_id, &carol, "inbox").await;
    assert_eq!(carols.len(), 1);
    assert_eq!(carols[0]["level"], "standard");
    assert_eq!(carols[0]["subject"], "Merger");
    assert!(carols[0]["privacy"]["score"].as_i64().unwrap() > 0);
    let raw = app
        .get(
            &format!("/v1/messages/{}/raw", carols[0]["id"].as_str().unwrap()),
            &carol,
        )
        .await;
    assert!(
        raw.text().contains("DKIM-Signature:"),
        "signed like any outgoing mail"
    );
    assert!(raw.text().contains("Let us talk."));
    workers.stop().await;
}

async fn refused_submissions_queue_nothing(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (alice_id, alice) = person(&app, &e, "alice").await;
    let send = format!("/v1/accounts/{alice_id}/messages");
    let deliver_jobs = || async {
        let depth = app.store.queue_depth().await.unwrap();
        depth
            .iter()
            .filter(|d| d.kind == "mail.deliver")
            .map(|d| d.jobs)
            .sum::<i64>()
    };

    // A From the account does not own.
    let forged = support::message(
        "boss@acme.test",
        "bob@remote.test",
        "Wire the money",
        "Now.",
    );
    let refused = app
        .raw(
            app.http
                .post(format!("{}{send}", app.base))
                .bearer_auth(&alice)
                .header("content-type", "message/rfc822")
                .body(forged),
        )
        .await;
    assert!(
        refused
            .problem(403)
            .contains("`boss@acme.test` is not an address of this account"),
        "{refused:?}"
    );

    // Encryption required, and the remote recipient has no key we know.
    let unknown = app
        .post(
            &send,
            &alice,
            json!({"to": ["bob@remote.test"], "text": "secret", "require_encryption": true}),
        )
        .await;
    assert!(unknown.problem(422).contains("bob@remote.test"));
    assert_eq!(unknown.body["found"], json!(["bob@remote.test"]));

    // Plaintext from an end-to-end account.
    let (erin_id, e2e) = person(&app, &e, "erin").await;
    let level = app
        .patch(
            &format!("/v1/accounts/{erin_id}"),
            &e.admin_token,
            json!({"level": "end-to-end"}),
        )
        .await;
    assert_eq!(level.ok(200)["level"], "end-to-end");
    let plain = app
        .post(
            &format!("/v1/accounts/{erin_id}/messages"),
            &e2e,
            json!({"to": ["bob@remote.test"], "text": "hi"}),
        )
        .await;
    assert!(plain.problem(422).contains("end-to-end"));
    assert_eq!(plain.body["type"], "/problems/encryption-required");

    // Someone else's account (a user does not even see it), bad input.
    app.post(
        &format!("/v1/accounts/{erin_id}/messages"),
        &alice,
        json!({"to": ["x@remote.test"], "text": "hi"}),
    )
    .await
    .problem(404);
    let bad = app
        .post(
            &send,
            &alice,
            json!({"to": ["not an address"], "text": "hi"}),
        )
        .await;
    assert!(bad.problem(422).contains("`not an address`"));
    let no_rcpt = app
        .post(&send, &alice, json!({"to": [], "text": "hi"}))
        .await;
    assert!(no_rcpt.problem(422).contains("no recipients"));
    assert_eq!(deliver_jobs().await, 0, "nothing refused was queued");
    assert!(folder(&app, &alice_id, &alice, "sent").await.is_empty());

    // The hourly rate (3 in tests): the fourth message is refused.
    for i in 0..3 {
        app.post(
            &send,
            &alice,
            json!({"to": ["bob@remote.test"], "text": format!("note {i}")}),
        )
        .await
        .ok(202);
    }
    let limited = app
        .post(
            &send,
            &alice,
            json!({"to": ["bob@remote.test"], "text": "one more"}),
        )
        .await;
    assert!(
        limited.problem(429).contains("3 messages per hour"),
        "{limited:?}"
    );
    assert_eq!(deliver_jobs().await, 3);
    assert_eq!(folder(&app, &alice_id, &alice, "sent").await.len(), 3);

    // The submission port refuses the same way, with SMTP codes.
    let mut probe = mail::probe::SmtpProbe::connect(app.submission).await;
    let (_, ehlo) = probe.cmd("EHLO client.test").await;
    assert!(
        ehlo.contains("AUTH PLAIN LOGIN"),
        "loopback clients may authenticate in clear: {ehlo}"
    );
    probe
        .expect("MAIL FROM:<alice@acme.test>", 530, "5.7.0")
        .await;
    // alice@acme.test / wrong password
    probe
        .expect(
            "AUTH PLAIN AGFsaWNlQGFjbWUudGVzdAB3cm9uZyBwYXNzd29yZA==",
            535,
            "5.7.8",
        )
        .await;
    let good = format!("\0alice@acme.test\0{}", support::PASSWORD);
    use base64::Engine;
    let good = base64::engine::general_purpose::STANDARD.encode(good);
    probe
        .expect(&format!("AUTH PLAIN {good}"), 235, "2.7.0")
        .await;
    probe
        .expect("MAIL FROM:<alice@acme.test>", 250, "2.1.0")
        .await;
    probe
        .expect("RCPT TO:<bob@remote.test>", 250, "2.1.5")
        .await;
    probe.expect("DATA", 354, "2.0.0").await;
    probe.send(b"From: alice@acme.test\r\nTo: bob@remote.test\r\nSubject: again\r\n\r\nover the limit\r\n.\r\n").await;
    let (code, text) = probe.read_reply().await;
    assert_eq!(code, 450, "{text}");
    assert!(
        text.starts_with("4.7.1") && text.contains("messages per hour"),
        "{text}"
    );
    assert_eq!(deliver_jobs().await, 3, "nothing more was queued");

    // A suspended organisation cannot send, whatever its tokens.
    let (bob_id, bob) = person(&app, &e, "bob").await;
    let suspended = app
        .patch(
            &format!("/v1/tenants/{}", e.tenant_id),
            &app.operator_token,
            json!({"status": "suspended"}),
        )
        .await;
    assert_eq!(suspended.ok(200)["status"], "suspended");
    let refused = app
        .post(
            &format!("/v1/accounts/{bob_id}/messages"),
            &bob,
            json!({"to": ["x@remote.test"], "text": "hi"}),
        )
        .await;
    assert!(refused.problem(403).contains("is suspended"), "{refused:?}");
    let mut probe = mail::probe::SmtpProbe::connect(app.submission).await;
    probe.cmd("EHLO client.test").await;
    let bob_login = base64::engine::general_purpose::STANDARD
        .encode(format!("\0bob@acme.test\0{}", support::PASSWORD));
    probe
        .expect(&format!("AUTH PLAIN {bob_login}"), 235, "2.7.0")
        .await;
    probe
        .expect("MAIL FROM:<bob@acme.test>", 250, "2.1.0")
        .await;
    probe.expect("RCPT TO:<x@remote.test>", 250, "2.1.5").await;
    probe.expect("DATA", 354, "2.0.0").await;
    probe
        .send(b"From: bob@acme.test\r\nTo: x@remote.test\r\n\r\nhi\r\n")
        .await;
    let refused = probe.expect(".", 554, "5.7.1").await;
    assert!(
        refused.contains("the organisation is suspended"),
        "{refused}"
    );
    assert_eq!(deliver_jobs().await, 3);
}

async fn sealed_senders_encrypt_to_every_key_they_know(backend: Backend) {
    let app = support::spawn(backend).await;
    let acme = app.enterprise("acme.test", 5).await;
    let globex = app.enterprise("globex.test", 5).await;
    let (alice_id, alice) = person(&app, &acme, "alice").await;
    let (bob_id, bob) = person(&app, &globex, "bob").await;
    let sealed = app
        .patch(
            &format!("/v1/accounts/{alice_id}"),
            &acme.admin_token,
            json!({"level": "sealed"}),
        )
        .await;
    assert_eq!(sealed.ok(200)["level"], "sealed");
    route_remote(&app);
    let sink = Sink::start(&[]);
    let workers = app.start_workers(sink.port, Duration::from_secs(1));

    let sent = app
        .post(
            &format!("/v1/accounts/{alice_id}/messages"),
            &alice,
            json!({"to": ["bob@globex.test", "dave@remote.test"], "subject": "Plans", "text": "Meet at noon."}),
        )
        .await;
    let sent = sent.ok(202).clone();
    assert_eq!(
        sent["encrypted_to"],
        json!(["bob@globex.test"]),
        "only bob's key is known"
    );
    let message_id = sent["message_id"].as_str().unwrap().to_owned();
    for r in ["bob@globex.test", "dave@remote.test"] {
        wait_status(&app, &message_id, &alice, r, "delivered").await;
    }

    // Dave's key is unknown: he gets the message in clear (the sender did not require encryption).
    let received = sink.wait_for(1, Duration::from_secs(10)).await;
    assert!(
        received[0]["data"]
            .as_str()
            .unwrap()
            .contains("Meet at noon.")
    );

    // Bob's copy left encrypted: only the envelope headers are outside, and his key opens it.
    let inbox = folder(&app, &bob_id, &bob, "inbox").await;
    assert_eq!(inbox.len(), 1);
    assert!(
        inbox[0]["privacy"]["technic"].as_u64().unwrap() >= 30,
        "it arrived encrypted: {}",
        inbox[0]
    );
    let raw = app
        .get(
            &format!("/v1/messages/{}/raw", inbox[0]["id"].as_str().unwrap()),
            &bob,
        )
        .await;
    let raw = raw.text();
    assert!(
        raw.contains("multipart/encrypted")
            && !raw.contains("Meet at noon.")
            && !raw.contains("Plans"),
        "{raw}"
    );
    assert!(
        raw.contains("Autocrypt: addr=alice@acme.test"),
        "the sender's key rides outside: {raw}"
    );
    let start = raw.find("-----BEGIN PGP MESSAGE-----").unwrap();
    let end = raw.find("-----END PGP MESSAGE-----").unwrap() + "-----END PGP MESSAGE-----".len();
    let secret = app
        .get(&format!("/v1/accounts/{bob_id}/secret-key"), &bob)
        .await;
    let home = support::gpg_home();
    let (ok, _, err) = support::gpg(
        home.path(),
        &["--passphrase", support::PASSWORD, "--import"],
        secret.text().as_bytes(),
    );
    assert!(ok, "{err}");
    let (ok, plain, err) = support::gpg(
        home.path(),
        &["--passphrase", support::PASSWORD, "--decrypt"],
        &raw.as_bytes()[start..end],
    );
    assert!(ok, "gpg --decrypt: {err}");
    let plain = String::from_utf8_lossy(&plain);
    assert!(
        plain.contains("Subject: Plans") && plain.contains("Meet at noon."),
        "{plain}"
    );
    assert!(
        plain.contains("Content-Type: text/plain; charset=\"utf-8\"; protected-headers=\"v1\""),
        "his client shows the Subject inside, not the envelope's: {plain}"
    );

    // Alice's Sent copy is sealed to her own key, and threads by what was sent.
    let sent_copy = app
        .get(&format!("/v1/messages/{message_id}/raw"), &alice)
        .await;
    assert!(
        sent_copy.text().contains("multipart/encrypted")
            && !sent_copy.text().contains("Meet at noon.")
    );
    let header_message_id = sent["header_message_id"].as_str().unwrap();
    assert!(
        sent_copy
            .text()
            .contains(&format!("\r\nMessage-ID: {header_message_id}\r\n")),
        "{}",
        sent_copy.text()
    );
    workers.stop().await;
}

async fn plain_text_from_the_api_says_mime_and_its_charset(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (alice_id, alice) = person(&app, &e, "alice").await;
    route_remote(&app);
    let sink = Sink::start(&[]);
    let workers = app.start_workers(sink.port, Duration::from_secs(1));

    // A reply names what it answers, so that it threads at the recipient's.
    let not_an_id = app
        .post(
            &format!("/v1/accounts/{alice_id}/messages"),
            &alice,
            json!({"to": ["bob@remote.test"], "text": "x", "in_reply_to": "no brackets@x"}),
        )
        .await;
    assert_eq!(
        not_an_id.problem(422),
        "`in_reply_to`: \"no brackets@x\" is not a Message-ID like `<id@host>`"
    );
    let sent = app
        .post(
            &format!("/v1/accounts/{alice_id}/messages"),
            &alice,
            json!({"to": ["bob@remote.test"], "subject": "Re: Lunch", "text": "Déjeuner à midi ?",
                   "in_reply_to": "<b2@remote.test>", "references": ["<a1@remote.test>", "<b2@remote.test>"]}),
        )
        .await;
    sent.ok(202);
    let received = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 1, "{received:?}");
    let data = received[0]["data"].as_str().unwrap();
    let head = data.split("\r\n\r\n").next().unwrap();
    let fields: Vec<&str> = head.lines().collect();
    assert!(fields.contains(&"MIME-Version: 1.0"), "{head}");
    assert!(
        fields.contains(&"Content-Type: text/plain; charset=utf-8"),
        "{head}"
    );
    let parsed = mail_parser::MessageParser::default()
        .parse(data.as_bytes())
        .unwrap();
    assert_eq!(
        parsed.in_reply_to().as_text(),
        Some("b2@remote.test"),
        "{head}"
    );
    let references: Vec<&str> = parsed
        .references()
        .as_text_list()
        .unwrap_or_default()
        .iter()
        .map(|r| r.as_ref())
        .collect();
    assert_eq!(references, ["a1@remote.test", "b2@remote.test"], "{head}");
    assert_eq!(
        parsed.body_text(0).as_deref().map(str::trim_end),
        Some("Déjeuner à midi ?"),
        "the accents arrive as written"
    );
    workers.stop().await;
}

async fn failed_sign_ins_count_across_the_api_and_the_submission_port(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    person(&app, &e, "alice").await;
    use base64::Engine;
    let wrong =
        base64::engine::general_purpose::STANDARD.encode("\0alice@acme.test\0not the password");
    let mut probe = mail::probe::SmtpProbe::connect(app.submission).await;
    probe.cmd("EHLO client.test").await;
    // The default allows 5 failures per address.
    for _ in 0..5 {
        probe
            .expect(&format!("AUTH PLAIN {wrong}"), 535, "5.7.8")
            .await;
    }
    let locked = probe
        .expect(&format!("AUTH PLAIN {wrong}"), 454, "4.7.0")
        .await;
    assert!(locked.contains("try again in"), "{locked}");
    // The API's sign-in is the same door for a guesser.
    let api = app
        .send(
            "POST",
            "/v1/auth/token",
            None,
            Some(json!({"grant_type": "password",
        "username": "alice@acme.test", "password": support::PASSWORD})),
        )
        .await;
    assert!(
        api.problem(429)
            .contains("too many failed sign-in attempts"),
        "{api:?}"
    );
}

async fn a_relay_takes_mail_for_every_other_domain(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (alice_id, alice) = person(&app, &e, "alice").await;
    // No MX anywhere: without the relay this would bounce as "no mail server".
    let sink = Sink::start(&[]);
    let relay = std::net::SocketAddr::from(([127, 0, 0, 1], sink.port));
    let config = mail::outbound::OutboundConfig {
        relay: Some(relay),
        ..app.outbound_config(9)
    };
    let workers = app.start_workers_with(config, Duration::from_secs(1));
    let sent = app
        .post(
            &format!("/v1/accounts/{alice_id}/messages"),
            &alice,
            json!({"to": ["zoe@nowhere.test"], "text": "via the gateway"}),
        )
        .await;
    let message_id = sent.ok(202)["message_id"].as_str().unwrap().to_owned();
    let d = wait_status(&app, &message_id, &alice, "zoe@nowhere.test", "delivered").await;
    assert_eq!(d["remote_host"], "127.0.0.1");
    let received = sink.messages();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["rcpt_tos"], json!(["zoe@nowhere.test"]));
    workers.stop().await;
}

async fn mta_sts_enforce_means_verified_tls_or_waiting(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (alice_id, alice) = person(&app, &e, "alice").await;
    route_remote(&app);
    app.dns
        .set_txt("_mta-sts.remote.test", &["v=STSv1; id=20261126"]);
    app.https.put(
        "mta-sts.remote.test",
        "/.well-known/mta-sts.txt",
        "version: STSv1\r\nmode: enforce\r\nmx: mx.remote.test\r\nmax_age: 86400\r\n",
    );

    // The MX does not offer STARTTLS: under `enforce` the message waits.
    let plain_sink = Sink::start(&[]);
    let workers = app.start_workers(plain_sink.port, Duration::from_secs(1));
    let sent = app
        .post(
            &format!("/v1/accounts/{alice_id}/messages"),
            &alice,
            json!({"to": ["bob@remote.test"], "text": "only over TLS"}),
        )
        .await;
    let message_id = sent.ok(202)["message_id"].as_str().unwrap().to_owned();
    let deferred = wait_status(&app, &message_id, &alice, "bob@remote.test", "deferred").await;
    assert!(
        deferred["remote_reply"]
            .as_str()
            .unwrap()
            .contains("MTA-STS: mx.remote.test does not offer STARTTLS"),
        "{deferred}"
    );
    workers.stop().await;
    assert!(
        plain_sink.messages().is_empty(),
        "nothing went out in clear"
    );

    // The MX now offers STARTTLS with a certificate valid for its name: delivered.
    let issued = app.ca.issue(&["mx.remote.test"]);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &issued.cert_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();
    let tls_sink = Sink::start(&[
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    let workers = app.start_workers(tls_sink.port, Duration::from_secs(1));
    wait_status(&app, &message_id, &alice, "bob@remote.test", "delivered").await;
    let received = tls_sink.messages();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["tls"], true);
    workers.stop().await;

    // A certificate for another name is not good enough.
    let wrong = app.ca.issue(&["elsewhere.test"]);
    std::fs::write(&cert, &wrong.cert_pem).unwrap();
    std::fs::write(&key, &wrong.key_pem).unwrap();
    let wrong_sink = Sink::start(&[
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    let workers = app.start_workers(wrong_sink.port, Duration::from_secs(1));
    let sent = app
        .post(
            &format!("/v1/accounts/{alice_id}/messages"),
            &alice,
            json!({"to": ["carl@remote.test"], "text": "again"}),
        )
        .await;
    let message_id = sent.ok(202)["message_id"].as_str().unwrap().to_owned();
    let deferred = wait_status(&app, &message_id, &alice, "carl@remote.test", "deferred").await;
    assert!(
        deferred["remote_reply"]
            .as_str()
            .unwrap()
            .contains("MTA-STS: TLS with mx.remote.test failed"),
        "{deferred}"
    );
    assert!(wrong_sink.messages().is_empty());
    workers.stop().await;
}

async fn remote_keys_found_by_wkd_encrypt_outgoing_mail(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (alice_id, alice) = person(&app, &e, "alice").await;
    route_remote(&app);
    // dave@remote.test publishes his key in his domain's Web Key Directory (advanced layout).
    let dave = vault::openpgp::AccountKey::generate("Dave <dave@remote.test>", "dave's passphrase")
        .unwrap();
    let binary = vault::openpgp::AccountKey::binary_public_key(&dave.public_armored).unwrap();
    let hash = mail::wkd::hash("dave");
    app.https.put(
        "openpgpkey.remote.test",
        &format!("/.well-known/openpgpkey/remote.test/hu/{hash}?l=dave"),
        binary,
    );
    // What a mail app shows before sending: each recipient's key and where
    // it was found, as sending would find it.
    let (_, bob) = person(&app, &e, "bob").await;
    let looked = app
        .post(
            &format!("/v1/accounts/{alice_id}/recipient-keys"),
            &alice,
            json!({"addresses": ["bob@acme.test", " Dave@remote.test", "erin@remote.test"]}),
        )
        .await;
    let keys = looked.ok(200)["keys"].as_array().unwrap().clone();
    let sources: Vec<(&str, &serde_json::Value)> = keys
        .iter()
        .map(|k| (k["address"].as_str().unwrap(), &k["source"]))
        .collect();
    assert_eq!(
        sources,
        [
            ("bob@acme.test", &json!("hosted")),
            ("dave@remote.test", &json!("directory")),
            ("erin@remote.test", &serde_json::Value::Null),
        ]
    );
    assert_eq!(
        vault::openpgp::AccountKey::binary_public_key(keys[1]["key"].as_str().unwrap()).unwrap(),
        vault::openpgp::AccountKey::binary_public_key(&dave.public_armored).unwrap()
    );
    assert!(
        keys[0]["key"]
            .as_str()
            .unwrap()
            .contains("BEGIN PGP PUBLIC KEY BLOCK")
    );
    assert!(keys[2]["key"].is_null());
    // Only the account itself asks (another sees no such account);
    // addresses are checked, and counted.
    let other = app
        .post(
            &format!("/v1/accounts/{alice_id}/recipient-keys"),
            &bob,
            json!({"addresses": ["dave@remote.test"]}),
        )
        .await;
    assert_eq!(other.problem(404), "account not found");
    let bad = app
        .post(
            &format!("/v1/accounts/{alice_id}/recipient-keys"),
            &alice,
            json!({"addresses": ["not an address"]}),
        )
        .await;
    assert_eq!(bad.problem(422), "`not an address` is not an email address");
    let many: Vec<String> = (0..51).map(|n| format!("r{n}@remote.test")).collect();
    let too_many = app
        .post(
            &format!("/v1/accounts/{alice_id}/recipient-keys"),
            &alice,
            json!({"addresses": many}),
        )
        .await;
    assert!(too_many.problem(422).contains("at most 50"));

    let sink = Sink::start(&[]);
    let workers = app.start_workers(sink.port, Duration::from_secs(1));

    // erin@remote.test has no key: requiring encryption to her is refused.
    let refused = app
        .post(&format!("/v1/accounts/{alice_id}/messages"), &alice,
            json!({"to": ["dave@remote.test", "erin@remote.test"], "text": "x", "require_encryption": true}))
        .await;
    assert!(refused.problem(422).contains("erin@remote.test"));
    assert_eq!(refused.body["found"], json!(["erin@remote.test"]));

    let sent = app
        .post(&format!("/v1/accounts/{alice_id}/messages"), &alice,
            json!({"to": ["dave@remote.test"], "subject": "For your eyes", "text": "The vault code is ORCHID-LANTERN-42.", "require_encryption": true}))
        .await;
    let sent = sent.ok(202).clone();
    assert_eq!(sent["encrypted_to"], json!(["dave@remote.test"]));
    let received = sink.wait_for(1, Duration::from_secs(15)).await;
    let data = received[0]["data"].as_str().unwrap();
    assert!(
        data.contains("multipart/encrypted")
            && !data.contains("ORCHID-LANTERN")
            && !data.contains("For your eyes"),
        "{data}"
    );
    // (a marker with a hyphen, which base64 and armor never contain: "1234" once appeared by chance)

    let home = support::gpg_home();
    let (ok, _, err) = support::gpg(
        home.path(),
        &["--passphrase", "dave's passphrase", "--import"],
        dave.secret_armored.as_bytes(),
    );
    assert!(ok, "{err}");
    let start = data.find("-----BEGIN PGP MESSAGE-----").unwrap();
    let end = data.find("-----END PGP MESSAGE-----").unwrap() + "-----END PGP MESSAGE-----".len();
    let (ok, plain, err) = support::gpg(
        home.path(),
        &["--passphrase", "dave's passphrase", "--decrypt"],
        &data.as_bytes()[start..end],
    );
    assert!(ok, "dave's own key opens it: {err}");
    assert!(String::from_utf8_lossy(&plain).contains("The vault code is ORCHID-LANTERN-42."));
    workers.stop().await;
}

async fn expired_messages_bounce_with_the_last_reply(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (alice_id, alice) = person(&app, &e, "alice").await;
    route_remote(&app);
    let sink = Sink::start(&["--data-replies", "451,451,451,451,451,451,451,451,451,451"]);
    // Messages from this submitter live two seconds; the workers retry every second.
    let short = mail::outbound::OutboundConfig {
        lifetime: Duration::from_secs(2),
        ..app.outbound_config(sink.port)
    };
    let submitter =
        mail::outbound::Outbound::new(app.store.clone(), app.inbound.clone(), None, short);
    let account = app
        .store
        .account(tenants::AccountId(alice_id.parse().unwrap()))
        .await
        .unwrap()
        .unwrap();
    let submitted = submitter
        .submit(mail::outbound::Draft {
            account,
            recipients: vec!["bob@remote.test".into()],
            message: support::message(
                "alice@acme.test",
                "bob@remote.test",
                "never arrives",
                "greylisted forever",
            ),
            require_encryption: false,
        })
        .await
        .expect("queued");
    let workers = app.start_workers(sink.port, Duration::from_secs(1));
    let message_id = submitted.message_id.to_string();
    let bounced = wait_status(&app, &message_id, &alice, "bob@remote.test", "bounced").await;
    let reply = bounced["remote_reply"].as_str().unwrap();
    assert!(
        reply.starts_with("delivery gave up after") && reply.contains("last: 451 4.3.0 greylisted"),
        "{reply}"
    );
    assert!(sink.messages().is_empty());

    let inbox = inbox_with_dsn(&app, &alice_id, &alice).await;
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    let dsn = app
        .get(
            &format!("/v1/messages/{}/raw", inbox[0]["id"].as_str().unwrap()),
            &alice,
        )
        .await;
    let dsn = dsn.text();
    assert!(dsn.contains("Status: 4.4.7"), "{dsn}");
    assert!(
        dsn.contains("Final-Recipient: rfc822; bob@remote.test"),
        "{dsn}"
    );
    workers.stop().await;
}

/// A sink speaking STARTTLS with a certificate for `names`, and the DANE
/// record (3 1 1) of that certificate.
fn tls_sink(app: &TestApp, dir: &std::path::Path, names: &[&str]) -> (Sink, String) {
    let issued = app.ca.issue(names);
    let (cert, key) = (
        dir.join(format!("{}.pem", names.join("-"))),
        dir.join(format!("{}.key", names.join("-"))),
    );
    std::fs::write(&cert, &issued.cert_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();
    let sink = Sink::start(&[
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    (sink, mail::acme::tlsa(&issued.cert_pem).unwrap())
}

async fn dane_means_the_certificate_its_tlsa_names_or_waiting(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (alice_id, alice) = person(&app, &e, "alice").await;
    route_remote(&app);
    let dir = tempfile::tempdir().unwrap();
    // remote.test is signed (the resolver says so with the AD bit) and its MX
    // publishes a TLSA record; the MX shows another certificate: the message waits.
    app.dns.set_authentic("remote.test", true);
    let (_, expected) = tls_sink(&app, dir.path(), &["mx.remote.test"]);
    let (impostor, _) = tls_sink(&app, dir.path(), &["mx.remote.test", "impostor"]);
    app.dns.set_tlsa("_25._tcp.mx.remote.test", &[&expected]);
    let workers = app.start_workers(impostor.port, Duration::from_secs(1));
    let sent = app
        .post(
            &format!("/v1/accounts/{alice_id}/messages"),
            &alice,
            json!({"to": ["bob@remote.test"], "text": "only to the right server"}),
        )
        .await;
    let message_id = sent.ok(202)["message_id"].as_str().unwrap().to_owned();
    let deferred = wait_status(&app, &message_id, &alice, "bob@remote.test", "deferred").await;
    assert!(
        deferred["remote_reply"]
            .as_str()
            .unwrap()
            .contains("DANE: the certificate of mx.remote.test matches none of its TLSA records"),
        "{deferred}"
    );
    workers.stop().await;
    assert!(
        impostor.messages().is_empty(),
        "nothing went to the impostor"
    );

    // No STARTTLS at all: still waiting, never in clear.
    let plain = Sink::start(&[]);
    let workers = app.start_workers(plain.port, Duration::from_secs(1));
    let sent = app
        .post(
            &format!("/v1/accounts/{alice_id}/messages"),
            &alice,
            json!({"to": ["carl@remote.test"], "text": "not in clear"}),
        )
        .await;
    let plain_id = sent.ok(202)["message_id"].as_str().unwrap().to_owned();
    let deferred = wait_status(&app, &plain_id, &alice, "carl@remote.test", "deferred").await;
    assert!(
        deferred["remote_reply"]
            .as_str()
            .unwrap()
            .contains("DANE: mx.remote.test does not offer STARTTLS"),
        "{deferred}"
    );
    workers.stop().await;
    assert!(plain.messages().is_empty(), "nothing went out in clear");

    // The MX now shows the certificate its record names (not one the web PKI
    // vouches for by name: DANE-EE binds the key): delivered, over TLS.
    let issued = app.ca.issue(&["not-even-its-name.test"]);
    let (cert, key) = (dir.path().join("right.pem"), dir.path().join("right.key"));
    std::fs::write(&cert, &issued.cert_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();
    app.dns.set_tlsa(
        "_25._tcp.mx.remote.test",
        &[&mail::acme::tlsa(&issued.cert_pem).unwrap()],
    );
    let right = Sink::start(&[
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    let workers = app.start_workers(right.port, Duration::from_secs(1));
    wait_status(&app, &message_id, &alice, "bob@remote.test", "delivered").await;
    wait_status(&app, &plain_id, &alice, "carl@remote.test", "delivered").await;
    let received = right.messages();
    assert_eq!(received.len(), 2, "both waiting messages went out");
    assert!(received.iter().all(|m| m["tls"] == true));
    workers.stop().await;

    // Without DNSSEC the same TLSA record binds nothing (anyone on the path
    // could have forged it): delivery is opportunistic again.
    app.dns.set_authentic("remote.test", false);
    let (other, _) = tls_sink(&app, dir.path(), &["mx.remote.test", "other"]);
    let workers = app.start_workers(other.port, Duration::from_secs(1));
    let sent = app
        .post(
            &format!("/v1/accounts/{alice_id}/messages"),
            &alice,
            json!({"to": ["dan@remote.test"], "text": "unsigned zone"}),
        )
        .await;
    let unsigned = sent.ok(202)["message_id"].as_str().unwrap().to_owned();
    wait_status(&app, &unsigned, &alice, "dan@remote.test", "delivered").await;
    workers.stop().await;
}
