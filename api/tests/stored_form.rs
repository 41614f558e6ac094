//! One stored form, whichever door a message comes through: the same bytes
//! sent to the MX, appended over IMAP or through the API, and submitted
//! (its Sent copy) are kept at the account's level in the same form, and
//! counted the same way.

mod support;

use serde_json::{Value, json};
use support::{PASSWORD, TestApp};
use tenants::{Backend, on_both_backends};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

on_both_backends!(
    the_mx_imap_append_and_the_sent_copy_store_alike,
    drafts_put_through_the_api_follow_the_rules_of_append,
);

/// `{level}@acme.test`, made at `level` and signed in: its address, id and token.
async fn at_level(app: &TestApp, e: &support::Enterprise, level: &str) -> (String, String, String) {
    let address = format!("{level}@acme.test");
    let created = app
        .post(
            &format!("/v1/tenants/{}/accounts", e.tenant_id),
            &e.admin_token,
            json!({"address": address, "password": PASSWORD, "level": level}),
        )
        .await;
    let account = created.ok(201)["id"].as_str().unwrap().to_owned();
    let token = app.login(&address, PASSWORD).await;
    (address, account, token)
}

/// The id of the account's mailbox named `name`.
async fn mailbox_id(app: &TestApp, token: &str, account: &str, name: &str) -> String {
    let listed = app
        .get(&format!("/v1/accounts/{account}/mailboxes"), token)
        .await;
    listed
        .ok(200)
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {listed:?}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn put_message(
    app: &TestApp,
    token: &str,
    mailbox: &str,
    query: &str,
    raw: &str,
    media_type: &str,
) -> support::Reply {
    app.raw(
        app.http
            .post(format!(
                "{}/v1/mailboxes/{mailbox}/messages{query}",
                app.base
            ))
            .bearer_auth(token)
            .header("content-type", media_type)
            .body(raw.to_owned()),
    )
    .await
}

async fn through_the_api(app: &TestApp, token: &str, account: &str, raw: &str) {
    let inbox = mailbox_id(app, token, account, "INBOX").await;
    put_message(app, token, &inbox, "", raw, "message/rfc822")
        .await
        .ok(201);
}

fn message(address: &str, marker: &str) -> String {
    format!(
        "From: <{address}>\r\nTo: <{address}>\r\nSubject: the same message\r\n\
         Date: Sat, 05 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{}@acme.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe body says {marker}.\r\n",
        uuid::Uuid::now_v7().simple()
    )
}

async fn through_the_mx(app: &TestApp, address: &str, raw: &str) {
    let mut probe = mail::probe::SmtpProbe::connect(app.smtp).await;
    probe.cmd("EHLO sender.test").await;
    probe
        .expect("MAIL FROM:<x@sender.test>", 250, "2.1.0")
        .await;
    probe
        .expect(&format!("RCPT TO:<{address}>"), 250, "2.1.5")
        .await;
    probe.expect("DATA", 354, "").await;
    probe.send(format!("{raw}.\r\n").as_bytes()).await;
    let (code, text) = probe.read_reply().await;
    assert_eq!(code, 250, "{text}");
}

async fn through_imap_append(app: &TestApp, address: &str, raw: &str) {
    let stream = tokio::net::TcpStream::connect(app.imap).await.unwrap();
    let mut conn = BufReader::new(stream);
    let mut line = String::new();
    conn.read_line(&mut line).await.unwrap();
    let tagged = async |conn: &mut BufReader<tokio::net::TcpStream>, tag: &str| loop {
        let mut line = String::new();
        conn.read_line(&mut line).await.unwrap();
        assert!(!line.is_empty(), "the server hung up");
        if line.starts_with(&format!("{tag} ")) {
            return line;
        }
    };
    conn.get_mut()
        .write_all(format!("a LOGIN {address} \"{PASSWORD}\"\r\n").as_bytes())
        .await
        .unwrap();
    assert!(tagged(&mut conn, "a").await.starts_with("a OK"));
    conn.get_mut()
        .write_all(format!("b APPEND INBOX {{{}+}}\r\n{raw}\r\n", raw.len()).as_bytes())
        .await
        .unwrap();
    let done = tagged(&mut conn, "b").await;
    assert!(done.starts_with("b OK"), "{done}");
    let mut rest = Vec::new();
    conn.get_mut().write_all(b"c LOGOUT\r\n").await.unwrap();
    let _ = conn.read_to_end(&mut rest).await;
}

async fn through_submission(app: &TestApp, address: &str, raw: &str) {
    let plain = support::auth_plain(address, PASSWORD);
    let mut probe = mail::probe::SmtpProbe::connect(app.submission).await;
    probe.cmd("EHLO client.test").await;
    probe
        .expect(&format!("AUTH PLAIN {plain}"), 235, "2.7.0")
        .await;
    probe
        .expect(&format!("MAIL FROM:<{address}>"), 250, "2.1.0")
        .await;
    probe
        .expect("RCPT TO:<someone@elsewhere.test>", 250, "2.1.5")
        .await;
    probe.expect("DATA", 354, "").await;
    probe.send(format!("{raw}.\r\n").as_bytes()).await;
    let (code, text) = probe.read_reply().await;
    assert_eq!(code, 250, "{text}");
}

async fn raw_of(app: &TestApp, token: &str, id: &str) -> Vec<u8> {
    let response = app
        .http
        .get(format!("{}/v1/messages/{id}/raw", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.bytes().await.unwrap().to_vec()
}

async fn the_mx_imap_append_and_the_sent_copy_store_alike(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 10).await;
    for level in ["standard", "sealed", "dispersed"] {
        let (address, account, token) = at_level(&app, &e, level).await;
        let marker = format!("marker-{level}-{}", uuid::Uuid::now_v7().simple());
        let raw = message(&address, &marker);
        through_the_mx(&app, &address, &raw).await;
        through_imap_append(&app, &address, &raw).await;
        through_submission(&app, &address, &raw).await;
        through_the_api(&app, &token, &account, &raw).await;

        let listed = app
            .get(&format!("/v1/accounts/{account}/messages"), &token)
            .await;
        let copies: Vec<Value> = listed.ok(200)["items"].as_array().unwrap().clone();
        assert_eq!(copies.len(), 4, "{level}: one copy per door: {copies:?}");
        // Newest first, as a mail app lists them, page after page.
        let ids = |items: &Value| -> Vec<String> {
            items["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned())
                .collect()
        };
        let first = app
            .get(
                &format!("/v1/accounts/{account}/messages?order=newest&limit=3"),
                &token,
            )
            .await;
        let first = first.ok(200).clone();
        let cursor = first["next_cursor"].as_str().unwrap();
        let second = app
            .get(
                &format!("/v1/accounts/{account}/messages?order=newest&limit=3&cursor={cursor}"),
                &token,
            )
            .await;
        let mut newest: Vec<String> = ids(&first);
        newest.extend(ids(second.ok(200)));
        let mut oldest: Vec<String> = copies
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        oldest.reverse();
        assert_eq!(newest, oldest, "{level}");
        let mut overheads = Vec::new();
        for copy in &copies {
            assert_eq!(copy["level"], level, "{copy}");
            let id = copy["id"].as_str().unwrap();
            let bytes = raw_of(&app, &token, id).await;
            let rfc822_size = copy["rfc822_size"].as_i64().unwrap();
            assert_eq!(
                rfc822_size,
                bytes.len() as i64,
                "{level}: the size counted is what the owner reads back"
            );
            overheads.push(copy["size"].as_i64().unwrap() - rfc822_size);
            let text = String::from_utf8_lossy(&bytes);
            match level {
                "standard" => assert!(text.contains(&marker), "readable by the server"),
                _ => {
                    assert!(
                        text.contains("multipart/encrypted")
                            && text.contains("-----BEGIN PGP MESSAGE-----"),
                        "{level}: PGP/MIME whichever the door"
                    );
                    assert!(!text.contains(&marker), "{level}: never in clear");
                }
            }
            let stored = app
                .store
                .message_content(tenants::MessageId(id.parse().unwrap()))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                matches!(stored, tenants::store::StoredContent::Dispersed),
                level == "dispersed",
                "{level}: dispersed copies live on the sites, the others in the database"
            );
            // What IMAP FETCH answers without the message: kept by every
            // door, encrypted, and none where nothing readable may be kept.
            let message_id = tenants::MessageId(id.parse().unwrap());
            let summary = app
                .store
                .message_summaries(&[message_id])
                .await
                .unwrap()
                .remove(&message_id);
            if level == "dispersed" {
                assert_eq!(summary, None, "dispersed: no summary in the database");
            } else {
                let summary = summary.unwrap_or_else(|| panic!("{level}: no summary kept"));
                assert!(
                    !summary.windows(b"Subject".len()).any(|w| w == b"Subject"),
                    "{level}: the summary is encrypted at rest"
                );
                let tenant = tenants::TenantId(e.tenant_id.parse().unwrap());
                let opened = app
                    .inbound
                    .open_summary(tenant, message_id, &summary)
                    .await
                    .unwrap_or_else(|| panic!("{level}: the summary opens"));
                assert_eq!(
                    opened,
                    mail::imap::message::Summary::of(&bytes),
                    "{level}: the summary is that of the message served"
                );
            }
        }
        overheads.dedup();
        assert_eq!(
            overheads.len(),
            1,
            "{level}: every door counts the quota alike"
        );
    }
}

/// A web app saves its drafts with `POST /v1/mailboxes/{id}/messages`: the
/// same rule as IMAP APPEND (one function of the core), so plaintext is
/// refused at `end-to-end` with the reason, a sealed account's draft is
/// sealed, the flags asked for are set, IMAP sees it at the UID the answer
/// gives, and nobody else may put mail in the mailbox.
async fn drafts_put_through_the_api_follow_the_rules_of_append(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 10).await;
    let mut made = Vec::new();
    for level in ["sealed", "end-to-end"] {
        made.push(at_level(&app, &e, level).await);
    }
    let (address, account, token) = &made[0];
    let drafts = mailbox_id(&app, token, account, "Drafts").await;
    let marker = format!("draft-{}", uuid::Uuid::now_v7().simple());
    let put = put_message(
        &app,
        token,
        &drafts,
        "?draft=true&seen=true",
        &message(address, &marker),
        "message/rfc822",
    )
    .await;
    let put = put.ok(201).clone();
    let id = put["message_id"].as_str().unwrap();
    let text = String::from_utf8_lossy(&raw_of(&app, token, id).await).into_owned();
    assert!(
        text.contains("-----BEGIN PGP MESSAGE-----") && !text.contains(&marker),
        "sealed: {text}"
    );
    let shown = app.get(&format!("/v1/messages/{id}"), token).await;
    let flags = shown.ok(200)["flags"].clone();
    assert!(
        flags.as_array().unwrap().contains(&json!("draft"))
            && flags.as_array().unwrap().contains(&json!("seen")),
        "{flags}"
    );
    // IMAP sees it in Drafts, at the UID the answer gave.
    let (mut imap, _) = mail::imap_probe::ImapProbe::connect(app.imap).await;
    imap.login(address, PASSWORD).await;
    imap.run("SELECT Drafts").await;
    let (fetched, _) = imap.run(&format!("UID FETCH {} (FLAGS)", put["uid"])).await;
    assert!(
        fetched
            .iter()
            .any(|l| l.contains("\\Draft") && l.contains("\\Seen")),
        "{fetched:?}"
    );

    // End-to-end: plaintext refused with the reason; an encrypted draft is kept.
    let (e2e_address, e2e_account, e2e_token) = &made[1];
    let e2e_drafts = mailbox_id(&app, e2e_token, e2e_account, "Drafts").await;
    let refused = put_message(
        &app,
        e2e_token,
        &e2e_drafts,
        "",
        &message(e2e_address, "clear"),
        "message/rfc822",
    )
    .await;
    assert!(
        refused
            .problem(422)
            .contains("only OpenPGP-encrypted messages are kept"),
        "{refused:?}"
    );
    let key = app
        .get(&format!("/v1/accounts/{e2e_account}/public-key"), e2e_token)
        .await
        .text()
        .to_owned();
    let armored = vault::seal::encrypt_to_all(
        &[key.as_str()],
        message(e2e_address, "secret draft").as_bytes(),
    )
    .unwrap();
    let encrypted = format!(
        "From: <{e2e_address}>\r\nSubject: ...\r\nMIME-Version: 1.0\r\nContent-Type: multipart/encrypted; \
         protocol=\"application/pgp-encrypted\"; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: application/pgp-encrypted\r\n\r\n\
         Version: 1\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\n{armored}\r\n--b--\r\n"
    );
    put_message(
        &app,
        e2e_token,
        &e2e_drafts,
        "?draft=true",
        &encrypted,
        "message/rfc822",
    )
    .await
    .ok(201);

    // Nobody else puts mail in it; only whole messages are taken.
    let other = put_message(
        &app,
        e2e_token,
        &drafts,
        "",
        &message(address, "x"),
        "message/rfc822",
    )
    .await;
    // Another user of the tenant does not even see the mailbox; its administrator may not write in it.
    assert_eq!(other.problem(404), "mailbox not found");
    let admin = put_message(
        &app,
        &e.admin_token,
        &drafts,
        "",
        &message(address, "x"),
        "message/rfc822",
    )
    .await;
    assert_eq!(admin.status.as_u16(), 403, "{admin:?}");
    let json_body = put_message(&app, token, &drafts, "", "{}", "application/json").await;
    assert!(
        json_body.problem(415).contains("message/rfc822"),
        "{json_body:?}"
    );
    let unknown = put_message(
        &app,
        token,
        &drafts,
        "?pinned=true",
        &message(address, "x"),
        "message/rfc822",
    )
    .await;
    assert_eq!(unknown.status.as_u16(), 400, "{unknown:?}");
}
