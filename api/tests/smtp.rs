//! Mail from the Internet, end to end: real SMTP clients (lettre, Python's
//! smtplib, and a hand-driven probe for exact codes) against the MX, the
//! message read back through the API, sealed mail opened by GnuPG.

mod support;

use std::process::{Command, Stdio};

use support::gpg;

use serde_json::json;
use support::{PASSWORD, SmtpProbe, TestApp};
use tenants::{Backend, on_both_backends};

on_both_backends!(
    sealed_mail_over_starttls_decrypts_to_the_original,
    standard_mail_from_python_smtplib,
    every_refusal_has_its_code,
    quota_is_counted_and_freed,
    chunking_and_pipelining,
    end_to_end_accounts_refuse_plaintext,
    dmarc_reject_is_enforced,
    privacy_index_reflects_tls_and_authentication,
);

async fn user_token(app: &TestApp, e: &support::Enterprise, local: &str) -> (String, String) {
    let id = app.user(e, local).await;
    (
        id,
        app.login(&format!("{local}@{}", e.domain), PASSWORD).await,
    )
}

async fn only_message(app: &TestApp, account: &str, token: &str) -> serde_json::Value {
    let listed = app
        .get(&format!("/v1/accounts/{account}/messages"), token)
        .await;
    let items = listed.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "{items:?}");
    items[0].clone()
}

async fn sealed_mail_over_starttls_decrypts_to_the_original(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (id, token) = user_token(&app, &e, "bob").await;
    app.patch(
        &format!("/v1/accounts/{id}"),
        &token,
        json!({"level": "sealed"}),
    )
    .await
    .ok(200);

    let original = support::message(
        "alice@sender.test",
        "bob@acme.test",
        "Quarterly numbers",
        "Très confidentiel.\r\n.leading dot line",
    );
    let response = support::send_with_lettre(
        app.smtp,
        "alice@sender.test",
        &["bob@acme.test"],
        &original,
        true,
    )
    .await
    .expect("lettre delivers over STARTTLS");
    assert!(response.is_positive(), "{response:?}");

    let meta = only_message(&app, &id, &token).await;
    assert_eq!(meta["level"], "sealed");
    assert!(
        meta["subject"].is_null() && meta["sender"].is_null(),
        "the server does not know them: {meta}"
    );
    assert_eq!(meta["authentication"]["tls"], 13);
    let raw = app
        .raw(
            app.http
                .get(format!(
                    "{}/v1/messages/{}/raw",
                    app.base,
                    meta["id"].as_str().unwrap()
                ))
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(raw.content_type, "message/rfc822");
    let stored = raw.text().to_owned();
    assert!(
        stored.contains("multipart/encrypted") && !stored.contains("Quarterly"),
        "{stored}"
    );

    let secret = app
        .get(&format!("/v1/accounts/{id}/secret-key"), &token)
        .await;
    let home = support::gpg_home();
    let (ok, _, err) = gpg(
        home.path(),
        &["--passphrase", PASSWORD, "--import"],
        secret.text().as_bytes(),
    );
    assert!(ok, "{err}");
    let armored = &stored[stored.find("-----BEGIN PGP MESSAGE-----").unwrap()..];
    let (ok, plain, err) = gpg(
        home.path(),
        &["--passphrase", PASSWORD, "--decrypt"],
        armored.as_bytes(),
    );
    assert!(ok, "gpg --decrypt failed: {err}");
    // lettre always ends DATA with CRLF "." CRLF, so what it transmitted is the
    // original plus one CRLF: that is the message the MX received, its
    // Content-Type marked as the part whose headers a client shows.
    let transmitted = [original.as_slice(), b"\r\n"].concat();
    let protected = String::from_utf8(transmitted).unwrap().replace(
        "\r\nContent-Type: text/plain; charset=utf-8\r\n",
        "\r\nContent-Type: text/plain; charset=\"utf-8\"; protected-headers=\"v1\"\r\n",
    );
    assert_eq!(
        String::from_utf8(plain).unwrap(),
        protected,
        "byte for byte, but for that one field"
    );
}

async fn standard_mail_from_python_smtplib(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (id, token) = user_token(&app, &e, "carol").await;
    let script = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP(sys.argv[1], int(sys.argv[2]), local_hostname="client.sender.test") as s:
    s.ehlo()
    assert s.has_extn("starttls") and s.has_extn("pipelining") and s.has_extn("chunking")
    s.starttls(context=ctx)
    s.ehlo()
    s.sendmail("dave@sender.test", ["carol@acme.test"], sys.stdin.buffer.read())
print("sent")
"#;
    let original = support::message(
        "dave@sender.test",
        "carol@acme.test",
        "Lunch on Friday?",
        "Shall we?",
    );
    let mut child = Command::new("python3")
        .args([
            "-c",
            script,
            &app.smtp.ip().to_string(),
            &app.smtp.port().to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&original).unwrap();
    }
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "smtplib: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let meta = only_message(&app, &id, &token).await;
    assert_eq!(meta["level"], "standard");
    assert_eq!(meta["subject"], "Lunch on Friday?");
    assert_eq!(meta["sender"], "dave@sender.test");
    assert_eq!(meta["folder"], "inbox");
    assert_eq!(meta["uid"], 1, "the first message of the INBOX: {meta}");
    let raw = app
        .raw(
            app.http
                .get(format!(
                    "{}/v1/messages/{}/raw",
                    app.base,
                    meta["id"].as_str().unwrap()
                ))
                .bearer_auth(&token),
        )
        .await;
    let text = raw.text();
    assert!(
        text.starts_with(
            "Received: from client.sender.test ([127.0.0.1]) by mx.caliop.test with ESMTPS"
        ),
        "{text}"
    );
    assert!(
        text.contains("Authentication-Results: mx.caliop.test;"),
        "{text}"
    );
    assert!(
        text.ends_with(std::str::from_utf8(&original).unwrap()),
        "the original follows our trace headers"
    );
}

async fn every_refusal_has_its_code(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 10).await;
    let (suspended_id, _) = user_token(&app, &e, "sleepy").await;
    app.user(&e, "ok").await;
    app.patch(
        &format!("/v1/accounts/{suspended_id}"),
        &e.admin_token,
        json!({"status": "suspended"}),
    )
    .await
    .ok(200);

    let mut s = SmtpProbe::connect(app.smtp).await;
    assert_eq!(s.greeting.0, 220);
    s.expect("MAIL FROM:<x@sender.test>", 503, "5.5.1").await;
    s.expect("FROB", 500, "5.5.1").await;
    s.expect(&format!("EHLO {}", "a".repeat(5000)), 500, "5.5.2")
        .await;
    s.expect("EHLO client.sender.test", 250, "mx.caliop.test")
        .await;
    s.expect("RCPT TO:<ok@acme.test>", 503, "5.5.1").await;
    s.expect("MAIL FROM:<not an address>", 501, "5.1.7").await;
    s.expect("MAIL FROM:<x@sender.test> SIZE=999999999", 552, "5.3.4")
        .await;
    s.expect("MAIL FROM:<x@sender.test> SIZE=1000", 250, "2.1.0")
        .await;
    s.expect("MAIL FROM:<y@sender.test>", 503, "5.5.1").await;
    s.expect("RCPT TO:<nobody@acme.test>", 550, "5.1.1").await;
    s.expect("RCPT TO:<victim@elsewhere.test>", 550, "5.1.2")
        .await;
    s.expect("RCPT TO:<sleepy@acme.test>", 550, "5.2.1").await;
    s.expect("RCPT TO:<bad address>", 501, "5.1.3").await;
    for _ in 0..5 {
        s.expect("RCPT TO:<ok@acme.test>", 250, "2.1.5").await;
    }
    s.expect("RSET", 250, "2.0.0").await;
    s.expect("DATA", 503, "5.5.1").await;
    s.expect("MAIL FROM:<x@sender.test>", 250, "2.1.0").await;
    s.expect("RCPT TO:<nobody@acme.test>", 550, "5.1.1").await;
    s.expect("DATA", 554, "5.5.1").await;
    s.expect("RSET", 250, "2.0.0").await;

    // Too many distinct recipients.
    for local in ["r1", "r2", "r3"] {
        app.user(&e, local).await;
    }
    let e2 = app.enterprise("beta.test", 10).await;
    for local in ["r4", "r5", "r6"] {
        app.user(&e2, local).await;
    }
    s.expect("MAIL FROM:<x@sender.test>", 250, "2.1.0").await;
    for to in [
        "ok@acme.test",
        "r1@acme.test",
        "r2@acme.test",
        "r3@acme.test",
        "r4@beta.test",
    ] {
        s.expect(&format!("RCPT TO:<{to}>"), 250, "2.1.5").await;
    }
    s.expect("RCPT TO:<r5@beta.test>", 452, "4.5.3").await;
    s.expect("RSET", 250, "2.0.0").await;

    // A message over the instance limit, sent anyway.
    s.expect("MAIL FROM:<x@sender.test>", 250, "2.1.0").await;
    s.expect("RCPT TO:<ok@acme.test>", 250, "2.1.5").await;
    s.expect("DATA", 354, "2.0.0").await;
    let line = format!("{}\r\n", "x".repeat(998));
    for _ in 0..(3 * 1024 * 1024 / 1000) {
        s.send(line.as_bytes()).await;
    }
    s.send(b".\r\n").await;
    let (code, text) = s.read_reply().await;
    assert_eq!((code, &text[..5]), (552, "5.3.4"), "{text}");

    // Tenant suspended.
    app.patch(
        &format!("/v1/tenants/{}", e.tenant_id),
        &app.operator_token,
        json!({"status": "suspended"}),
    )
    .await
    .ok(200);
    s.expect("MAIL FROM:<x@sender.test>", 250, "2.1.0").await;
    s.expect("RCPT TO:<ok@acme.test>", 550, "5.2.1").await;
    s.expect("QUIT", 221, "2.0.0").await;

    // Nothing was stored by any of this.
    assert_eq!(
        app.store
            .storage(tenants::TenantId(e.tenant_id.parse().unwrap()))
            .await
            .unwrap()
            .0,
        0
    );
}

async fn quota_is_counted_and_freed(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (id, token) = user_token(&app, &e, "dora").await;
    app.patch(
        &format!("/v1/tenants/{}", e.tenant_id),
        &app.operator_token,
        json!({"limits": {"max_accounts": 5, "max_domains": 3, "storage_quota_bytes": 3000}}),
    )
    .await
    .ok(200);
    let raw = support::message(
        "x@sender.test",
        "dora@acme.test",
        "first",
        &"a".repeat(1500),
    );
    support::send_with_lettre(app.smtp, "x@sender.test", &["dora@acme.test"], &raw, false)
        .await
        .expect("fits");
    let tenant = app
        .get(&format!("/v1/tenants/{}", e.tenant_id), &e.admin_token)
        .await;
    let used = tenant.ok(200)["storage_used_bytes"].as_i64().unwrap();
    assert!(used > 1500 && used < 3000, "{used}");

    let mut s = SmtpProbe::connect(app.smtp).await;
    s.expect("EHLO client.sender.test", 250, "mx.caliop.test")
        .await;
    // Too big for the room left: try later (deleting mail makes room).
    s.expect("MAIL FROM:<x@sender.test> SIZE=2000", 250, "2.1.0")
        .await;
    s.expect("RCPT TO:<dora@acme.test>", 452, "4.2.2").await;
    s.expect("RSET", 250, "2.0.0").await;
    // Larger than the whole quota: it can never fit.
    s.expect("MAIL FROM:<x@sender.test> SIZE=5000", 250, "2.1.0")
        .await;
    s.expect("RCPT TO:<dora@acme.test>", 552, "5.2.2").await;
    s.expect("RSET", 250, "2.0.0").await;
    s.expect("MAIL FROM:<x@sender.test>", 250, "2.1.0").await;
    s.expect("RCPT TO:<dora@acme.test>", 250, "2.1.5").await;
    s.expect("DATA", 354, "2.0.0").await;
    s.send(&support::message(
        "x@sender.test",
        "dora@acme.test",
        "second",
        &"b".repeat(1500),
    ))
    .await;
    s.expect(".", 452, "4.2.2").await;

    let refused =
        support::send_with_lettre(app.smtp, "x@sender.test", &["dora@acme.test"], &raw, false)
            .await;
    assert!(refused.is_err(), "still over quota");

    let meta = only_message(&app, &id, &token).await;
    app.delete(
        &format!("/v1/messages/{}", meta["id"].as_str().unwrap()),
        &token,
    )
    .await
    .ok(204);
    let tenant = app
        .get(&format!("/v1/tenants/{}", e.tenant_id), &e.admin_token)
        .await;
    assert_eq!(
        tenant.ok(200)["storage_used_bytes"],
        0,
        "deleting frees the quota"
    );

    // Full mailbox (quota used up) answers 452 4.2.2 at RCPT.
    app.patch(
        &format!("/v1/tenants/{}", e.tenant_id),
        &app.operator_token,
        json!({"limits": {"max_accounts": 5, "max_domains": 3, "storage_quota_bytes": 0}}),
    )
    .await
    .ok(200);
    s.expect("RSET", 250, "2.0.0").await;
    s.expect("MAIL FROM:<x@sender.test>", 250, "2.1.0").await;
    s.expect("RCPT TO:<dora@acme.test>", 452, "4.2.2").await;
}

async fn chunking_and_pipelining(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (id, token) = user_token(&app, &e, "erin").await;
    let raw = support::message(
        "x@sender.test",
        "erin@acme.test",
        "chunked",
        "in two pieces",
    );
    let (a, b) = raw.split_at(raw.len() / 2);
    let mut s = SmtpProbe::connect(app.smtp).await;
    s.expect("EHLO client.sender.test", 250, "mx.caliop.test")
        .await;
    // Pipelined: MAIL, RCPT and two BDAT chunks in one write.
    let mut batch = b"MAIL FROM:<x@sender.test>\r\nRCPT TO:<erin@acme.test>\r\n".to_vec();
    batch.extend_from_slice(format!("BDAT {}\r\n", a.len()).as_bytes());
    batch.extend_from_slice(a);
    batch.extend_from_slice(format!("BDAT {} LAST\r\n", b.len()).as_bytes());
    batch.extend_from_slice(b);
    s.send(&batch).await;
    for expected in [250, 250, 250, 250] {
        let (code, text) = s.read_reply().await;
        assert_eq!(code, expected, "{text}");
    }
    s.expect("QUIT", 221, "2.0.0").await;
    let meta = only_message(&app, &id, &token).await;
    assert_eq!(meta["subject"], "chunked");
    let body = app
        .raw(
            app.http
                .get(format!(
                    "{}/v1/messages/{}/raw",
                    app.base,
                    meta["id"].as_str().unwrap()
                ))
                .bearer_auth(&token),
        )
        .await;
    assert!(body.text().ends_with(std::str::from_utf8(&raw).unwrap()));
}

async fn end_to_end_accounts_refuse_plaintext(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (id, token) = user_token(&app, &e, "frank").await;
    app.patch(
        &format!("/v1/accounts/{id}"),
        &token,
        json!({"level": "end-to-end"}),
    )
    .await
    .ok(200);
    let plain = support::message("x@sender.test", "frank@acme.test", "hello", "in clear");
    let refused = support::send_with_lettre(
        app.smtp,
        "x@sender.test",
        &["frank@acme.test"],
        &plain,
        false,
    )
    .await;
    let err = refused.expect_err("plaintext refused").to_string();
    assert!(
        err.contains("550") || err.contains("5.7.1") || err.contains("OpenPGP"),
        "{err}"
    );

    let mut s = SmtpProbe::connect(app.smtp).await;
    s.expect("EHLO client.sender.test", 250, "mx.caliop.test")
        .await;
    s.expect("MAIL FROM:<x@sender.test>", 250, "2.1.0").await;
    s.expect("RCPT TO:<frank@acme.test>", 250, "2.1.5").await;
    s.expect("DATA", 354, "2.0.0").await;
    s.send(&plain).await;
    let text = s.expect(".", 550, "5.7.1").await;
    assert!(text.contains("OpenPGP-encrypted"), "{text}");

    let public = app
        .get(&format!("/v1/accounts/{id}/public-key"), &token)
        .await;
    let armored = vault::seal::encrypt(
        public.text(),
        b"Subject: secret\r\n\r\nencrypted by the sender\r\n",
    )
    .unwrap();
    let encrypted = format!(
        "From: <x@sender.test>\r\nTo: <frank@acme.test>\r\nSubject: ...\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n--b\r\n\
         Content-Type: application/octet-stream\r\n\r\n{}\r\n--b--\r\n",
        armored.replace('\n', "\r\n")
    );
    support::send_with_lettre(
        app.smtp,
        "x@sender.test",
        &["frank@acme.test"],
        encrypted.as_bytes(),
        false,
    )
    .await
    .expect("encrypted mail is accepted");
    let meta = only_message(&app, &id, &token).await;
    assert_eq!(meta["level"], "end-to-end");
    assert!(
        meta["privacy"]["technic"].as_u64().unwrap() >= 30,
        "encrypted counts: {meta}"
    );

    // Finding 11: an armour line, or a multipart/encrypted header, was
    // enough. Now the packets must parse as session keys then encrypted data.
    let home = support::gpg_home();
    let (ok, _, err) = gpg(home.path(), &["--import"], public.text().as_bytes());
    assert!(ok, "{err}");
    let (ok, _, err) = gpg(
        home.path(),
        &[
            "--passphrase",
            "",
            "--quick-gen-key",
            "x@sender.test",
            "ed25519",
            "sign",
            "never",
        ],
        b"",
    );
    assert!(ok, "{err}");
    let (ok, by_gnupg, err) = gpg(
        home.path(),
        &[
            "--armor",
            "--trust-model",
            "always",
            "--recipient",
            "frank@acme.test",
            "--encrypt",
        ],
        b"Subject: secret\r\n\r\nencrypted by GnuPG\r\n",
    );
    assert!(ok, "{err}");
    let (ok, signed_only, err) = gpg(
        home.path(),
        &[
            "--armor",
            "--passphrase",
            "",
            "--local-user",
            "x@sender.test",
            "--sign",
        ],
        b"signed, not encrypted\r\n",
    );
    assert!(ok, "{err}");
    let crlf = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .replace("\r\n", "\n")
            .replace('\n', "\r\n")
    };
    let inline = |body: &str| {
        format!("From: <x@sender.test>\r\nTo: <frank@acme.test>\r\nSubject: ...\r\n\r\n{body}")
    };
    let pgp_mime = |data: &str| {
        format!(
            "From: <x@sender.test>\r\nTo: <frank@acme.test>\r\nSubject: ...\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n--b\r\n\
             Content-Type: application/octet-stream\r\n\r\n{data}\r\n--b--\r\n"
        )
    };
    let key_block = crlf(public.text().as_bytes());
    let refused = [
        (
            "an armour line over junk",
            inline(
                "-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA+not+packets\r\n-----END PGP MESSAGE-----\r\n",
            ),
        ),
        ("a signed-only message", inline(&crlf(&signed_only))),
        ("a public key block as PGP/MIME", pgp_mime(&key_block)),
        (
            "a public key block armoured as a message",
            inline(&key_block.replace("PUBLIC KEY BLOCK", "MESSAGE")),
        ),
    ];
    for (what, message) in refused {
        s.expect("MAIL FROM:<x@sender.test>", 250, "2.1.0").await;
        s.expect("RCPT TO:<frank@acme.test>", 250, "2.1.5").await;
        s.expect("DATA", 354, "2.0.0").await;
        s.send(message.as_bytes()).await;
        let text = s.expect(".", 550, "5.7.1").await;
        assert!(text.contains("OpenPGP-encrypted"), "{what}: {text}");
    }
    s.expect("MAIL FROM:<x@sender.test>", 250, "2.1.0").await;
    s.expect("RCPT TO:<frank@acme.test>", 250, "2.1.5").await;
    s.expect("DATA", 354, "2.0.0").await;
    s.send(inline(&crlf(&by_gnupg)).as_bytes()).await;
    s.expect(".", 250, "2.0.0").await;
    let listed = app
        .get(&format!("/v1/accounts/{id}/messages"), &token)
        .await;
    assert_eq!(listed.ok(200)["items"].as_array().map(Vec::len), Some(2));
}

async fn dmarc_reject_is_enforced(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    app.user(&e, "gina").await;
    app.dns
        .set_txt("strict.test", &["v=spf1 ip4:192.0.2.1 -all"]);
    app.dns
        .set_txt("_dmarc.strict.test", &["v=DMARC1; p=reject"]);
    let forged = support::message(
        "ceo@strict.test",
        "gina@acme.test",
        "wire transfer",
        "urgent",
    );
    let mut s = SmtpProbe::connect(app.smtp).await;
    s.expect("EHLO client.sender.test", 250, "mx.caliop.test")
        .await;
    s.expect("MAIL FROM:<ceo@strict.test>", 250, "2.1.0").await;
    s.expect("RCPT TO:<gina@acme.test>", 250, "2.1.5").await;
    s.expect("DATA", 354, "2.0.0").await;
    s.send(&forged).await;
    let text = s.expect(".", 550, "5.7.1").await;
    assert!(text.contains("DMARC"), "{text}");

    // The same domain with p=none is delivered, marked as failing.
    app.dns.set_txt("_dmarc.strict.test", &["v=DMARC1; p=none"]);
    s.expect("MAIL FROM:<ceo@strict.test>", 250, "2.1.0").await;
    s.expect("RCPT TO:<gina@acme.test>", 250, "2.1.5").await;
    s.expect("DATA", 354, "2.0.0").await;
    s.send(&forged).await;
    s.expect(".", 250, "2.0.0").await;
}

async fn privacy_index_reflects_tls_and_authentication(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (id, token) = user_token(&app, &e, "hank").await;
    app.dns.set_txt("good.test", &["v=spf1 ip4:127.0.0.1 -all"]);
    app.dns.set_txt("_dmarc.good.test", &["v=DMARC1; p=reject"]);
    let raw = support::message("ann@good.test", "hank@acme.test", "hi", "hello");
    support::send_with_lettre(app.smtp, "ann@good.test", &["hank@acme.test"], &raw, true)
        .await
        .expect("sent");
    support::send_with_lettre(app.smtp, "ann@good.test", &["hank@acme.test"], &raw, false)
        .await
        .expect("sent");
    let listed = app
        .get(&format!("/v1/accounts/{id}/messages"), &token)
        .await;
    let items = listed.ok(200)["items"].as_array().unwrap().clone();
    let (tls, clear) = (&items[0], &items[1]);
    assert_eq!(tls["authentication"]["spf"], "pass");
    assert_eq!(tls["authentication"]["dmarc"], "pass");
    assert_eq!(
        tls["authentication"]["dkim"], "none",
        "unsigned mail gets no DKIM credit"
    );
    // TLS 1.3 +25, SPF +10, DMARC +10.
    assert_eq!(tls["privacy"]["technic"], 45);
    assert_eq!(clear["privacy"]["technic"], 20);
    assert_eq!(tls["privacy"]["context"], 0);
    assert_eq!(
        clear["privacy"]["context"], 20,
        "the second message comes from a known sender"
    );
}

on_both_backends!(early_talkers_and_crowds_are_turned_away);

async fn early_talkers_and_crowds_are_turned_away(backend: Backend) {
    let smtp = mail::smtp::SmtpConfig {
        greeting_delay: std::time::Duration::from_millis(300),
        max_connections_per_ip: 2,
        ..support::smtp_config()
    };
    let app = support::spawn_full(
        backend,
        api::ApiConfig {
            mail_hostname: support::MAIL_HOST.into(),
            ..support::api_config()
        },
        smtp,
    )
    .await;

    // A client that speaks before the greeting is dropped with 554 5.5.1.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut eager = tokio::net::TcpStream::connect(app.smtp).await.unwrap();
        eager
            .write_all(b"EHLO spam.test\r\nMAIL FROM:<a@b.test>\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        eager.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("554 5.5.1"), "{reply}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    // A patient client is greeted; a third connection from the same address is refused.
    let first = SmtpProbe::connect(app.smtp).await;
    let second = SmtpProbe::connect(app.smtp).await;
    assert_eq!((first.greeting.0, second.greeting.0), (220, 220));
    let third = SmtpProbe::connect(app.smtp).await;
    assert_eq!(third.greeting.0, 421, "{:?}", third.greeting);
    assert!(third.greeting.1.starts_with("4.7.0"));
    drop(first);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let again = SmtpProbe::connect(app.smtp).await;
    assert_eq!(again.greeting.0, 220, "a slot is free again");
}

on_both_backends!(dkim_counts_only_when_it_verifies, sessions_time_out);

async fn dkim_counts_only_when_it_verifies(backend: Backend) {
    use mail_auth::common::crypto::{RsaKey, Sha256};
    use mail_auth::common::headers::HeaderWriter;
    use mail_auth::dkim::DkimSigner;
    use secrecy::ExposeSecret;

    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (id, token) = user_token(&app, &e, "ivy").await;
    let key = vault::dkim::DkimKey::generate().unwrap();
    app.dns.set_txt(
        "sel._domainkey.signed.test",
        &[&format!("v=DKIM1; k=rsa; p={}", key.public_key_b64)],
    );
    let raw = support::message("ann@signed.test", "ivy@acme.test", "signed", "hello there");
    use rustls::pki_types::{PrivateKeyDer, pem::PemObject};
    let der =
        PrivateKeyDer::from_pem_slice(key.private_key_pem.expose_secret().as_bytes()).unwrap();
    let signer = DkimSigner::from_key(RsaKey::<Sha256>::from_key_der(der).unwrap())
        .domain("signed.test")
        .selector("sel")
        .headers(["From", "To", "Subject"]);
    let signature = signer.sign(&raw).unwrap();
    let signed = [signature.to_header().as_bytes(), raw.as_slice()].concat();
    let tampered = String::from_utf8(signed.clone())
        .unwrap()
        .replace("hello there", "send the money")
        .into_bytes();
    support::send_with_lettre(
        app.smtp,
        "ann@signed.test",
        &["ivy@acme.test"],
        &signed,
        false,
    )
    .await
    .expect("sent");
    support::send_with_lettre(
        app.smtp,
        "ann@signed.test",
        &["ivy@acme.test"],
        &tampered,
        false,
    )
    .await
    .expect("sent");

    let listed = app
        .get(&format!("/v1/accounts/{id}/messages"), &token)
        .await;
    let items = listed.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items[0]["authentication"]["dkim"], "pass");
    assert_eq!(
        items[0]["privacy"]["technic"], 15,
        "a verified DKIM signature counts"
    );
    assert_eq!(items[1]["authentication"]["dkim"], "fail");
    assert_eq!(
        items[1]["privacy"]["technic"], 0,
        "a signature that does not verify counts for nothing"
    );
}

async fn sessions_time_out(backend: Backend) {
    let smtp = mail::smtp::SmtpConfig {
        command_timeout: std::time::Duration::from_millis(300),
        ..support::smtp_config()
    };
    let app = support::spawn_full(
        backend,
        api::ApiConfig {
            mail_hostname: support::MAIL_HOST.into(),
            ..support::api_config()
        },
        smtp,
    )
    .await;
    let mut idle = SmtpProbe::connect(app.smtp).await;
    assert_eq!(idle.cmd("EHLO idle.test").await.0, 250);
    let (code, text) = idle.read_reply().await;
    assert_eq!(code, 421, "an idle session is closed: {text}");
    assert!(text.starts_with("4.4.2"), "{text}");
}

on_both_backends!(each_recipient_gets_a_copy_sealed_to_its_own_key);

async fn each_recipient_gets_a_copy_sealed_to_its_own_key(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (jo_id, jo) = user_token(&app, &e, "jo").await;
    let (kim_id, kim) = user_token(&app, &e, "kim").await;
    for (id, token) in [(&jo_id, &jo), (&kim_id, &kim)] {
        app.patch(
            &format!("/v1/accounts/{id}"),
            token,
            json!({"level": "sealed"}),
        )
        .await
        .ok(200);
    }
    let original = support::message(
        "x@sender.test",
        "jo@acme.test",
        "for both",
        "one message, two keys",
    );
    support::send_with_lettre(
        app.smtp,
        "x@sender.test",
        &["jo@acme.test", "kim@acme.test"],
        &original,
        false,
    )
    .await
    .expect("delivered to both");

    let mut stored = Vec::new();
    for (id, token) in [(&jo_id, &jo), (&kim_id, &kim)] {
        let meta = only_message(&app, id, token).await;
        let raw = app
            .raw(
                app.http
                    .get(format!(
                        "{}/v1/messages/{}/raw",
                        app.base,
                        meta["id"].as_str().unwrap()
                    ))
                    .bearer_auth(token),
            )
            .await;
        let text = raw.text().to_owned();
        let secret = app
            .get(&format!("/v1/accounts/{id}/secret-key"), token)
            .await
            .text()
            .to_owned();
        stored.push((text, secret));
    }
    assert_ne!(stored[0].0, stored[1].0, "two copies, sealed separately");
    let armored = |text: &str| text[text.find("-----BEGIN PGP MESSAGE-----").unwrap()..].to_owned();
    for (mine, theirs) in [(0, 1), (1, 0)] {
        let home = support::gpg_home();
        let (ok, _, err) = gpg(
            home.path(),
            &["--passphrase", PASSWORD, "--import"],
            stored[mine].1.as_bytes(),
        );
        assert!(ok, "{err}");
        let (ok, plain, err) = gpg(
            home.path(),
            &["--passphrase", PASSWORD, "--decrypt"],
            armored(&stored[mine].0).as_bytes(),
        );
        assert!(ok, "{err}");
        assert!(String::from_utf8_lossy(&plain).contains("one message, two keys"));
        let (ok, _, _) = gpg(
            home.path(),
            &["--passphrase", PASSWORD, "--decrypt"],
            armored(&stored[theirs].0).as_bytes(),
        );
        assert!(!ok, "a recipient's key does not open the other's copy");
    }
}
