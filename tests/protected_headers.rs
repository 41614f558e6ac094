//! Sealed mail as a mail client reads it, against the real binary: the MX
//! seals a message with its headers protected (GnuPG, which nobody here
//! wrote, decrypts it to a part marked `protected-headers="v1"` that holds
//! the original Subject), a reply is stored with the original's Message-ID
//! in its clear In-Reply-To and References so that it threads unopened
//! (read over IMAP), and a tenant whose policy keeps the conversation
//! sealed shows neither. Every story runs on SQLite and PostgreSQL.

mod common;

use common::{Caliop, PASSWORD, field, gpg, gpg_home, raw};
use mail::imap_probe::ImapProbe;
use mail::probe::SmtpProbe;
use serde_json::json;
use tenants::{Backend, on_both_backends};

on_both_backends!(sealed_mail_keeps_its_subject_inside_and_its_thread_outside);

/// An enterprise whose one user, user@acme.test, is at `sealed`: (tenant, account).
async fn sealed_user(caliop: &Caliop, operator: &str) -> (String, String) {
    let (status, _, tenant) = caliop
        .post(
            "/v1/tenants",
            Some(operator),
            json!({"name": "Acme", "kind": "enterprise",
                   "limits": {"max_accounts": 5, "max_domains": 1, "storage_quota_bytes": 1_000_000_000}}),
        )
        .await;
    assert_eq!(status, 201, "{tenant}");
    let tenant = field(&tenant, "id");
    let (status, _, onboarded) = caliop
        .post(
            &format!("/v1/tenants/{tenant}/onboard"),
            Some(operator),
            json!({"domain": "acme.test", "admin": {"address": "user@acme.test", "password": PASSWORD, "level": "sealed"}}),
        )
        .await;
    assert_eq!(status, 201, "{onboarded}");
    let (status, _, verified) = caliop
        .post(
            &format!("/v1/domains/{}/verify", field(&onboarded["domain"], "id")),
            Some(operator),
            json!({"force": true}),
        )
        .await;
    assert_eq!(status, 200, "{verified}");
    (tenant, field(&onboarded["admin"], "id"))
}

/// A message from alice@sender.test, delivered over SMTP to user@acme.test.
async fn deliver(caliop: &Caliop, subject: &str, message_id: &str, thread: &str) {
    let message = format!(
        "From: Alice <alice@sender.test>\r\nTo: <user@acme.test>\r\nSubject: {subject}\r\n\
         Date: Thu, 26 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{message_id}>\r\n{thread}\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nAbout {subject}.\r\n"
    );
    let mut probe = SmtpProbe::connect(caliop.smtp).await;
    assert_eq!(probe.cmd("EHLO sender.test").await.0, 250);
    assert_eq!(probe.cmd("MAIL FROM:<alice@sender.test>").await.0, 250);
    assert_eq!(probe.cmd("RCPT TO:<user@acme.test>").await.0, 250);
    assert_eq!(probe.cmd("DATA").await.0, 354);
    probe.send(format!("{message}.\r\n").as_bytes()).await;
    let stored = probe.read_reply().await;
    assert_eq!(stored.0, 250, "{stored:?}");
}

/// The ids of the account's messages, oldest first.
async fn messages(caliop: &Caliop, account: &str, token: &str) -> Vec<String> {
    let (status, _, list) = caliop
        .get(&format!("/v1/accounts/{account}/messages"), token)
        .await;
    assert_eq!(status, 200, "{list}");
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| field(m, "id"))
        .collect()
}

/// What GnuPG, with the account's own key, decrypts a stored message to.
fn decrypted(secret_key: &str, stored: &[u8]) -> String {
    let home = gpg_home();
    let (ok, _, err) = gpg(
        home.path(),
        &["--passphrase", PASSWORD, "--import"],
        secret_key.as_bytes(),
    );
    assert!(ok, "{err}");
    let text = String::from_utf8_lossy(stored);
    let start = text.find("-----BEGIN PGP MESSAGE-----").expect("PGP/MIME");
    let end = text.find("-----END PGP MESSAGE-----").unwrap() + 25;
    let (ok, clear, err) = gpg(
        home.path(),
        &["--passphrase", PASSWORD, "--decrypt"],
        &stored[start..end],
    );
    assert!(ok, "gpg --decrypt: {err}");
    String::from_utf8(clear).unwrap()
}

/// The header section of a message, unfolded, one field a line.
fn header_fields(message: &str) -> Vec<String> {
    let head = message
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .replace("\r\n ", " ")
        .replace("\r\n\t", " ");
    head.split("\r\n").map(str::to_owned).collect()
}

/// The value of the field `name` in `fields`, if there is one.
fn value<'a>(fields: &'a [String], name: &str) -> Option<&'a str> {
    fields.iter().find_map(|f| {
        let (n, v) = f.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Each message's header section as a client fetches it over IMAP,
/// without the key (`BODY.PEEK[HEADER]`), in sequence order.
async fn imap_headers(caliop: &Caliop) -> Vec<Vec<String>> {
    let (mut client, _) = ImapProbe::connect(caliop.imap).await;
    client.login("user@acme.test", PASSWORD).await;
    let (_, done) = client.run("SELECT INBOX").await;
    assert!(done.contains(" OK "), "{done}");
    let (fetched, done) = client.run("FETCH 1:* (BODY.PEEK[HEADER])").await;
    assert!(done.contains(" OK "), "{done}");
    client.run("LOGOUT").await;
    fetched
        .iter()
        .filter(|l| l.contains(" FETCH "))
        .map(|response| {
            let literal = &response[response.find("}\r\n").expect("a literal") + 3..];
            header_fields(literal)
        })
        .collect()
}

async fn sealed_mail_keeps_its_subject_inside_and_its_thread_outside(backend: Backend) {
    let (caliop, _data, _dns) = common::start(backend, &[]).await;
    let operator = caliop.operator_token();
    let (tenant, account) = sealed_user(&caliop, &operator).await;
    let token = common::user_token(&caliop).await;
    let (status, _, read) = caliop
        .get(&format!("/v1/tenants/{tenant}"), &operator)
        .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(
        read["policy"]["outer_thread_headers"], true,
        "threads are shown by default: {read}"
    );

    deliver(&caliop, "Quarterly plans", "plans-1@sender.test", "").await;
    let replies_to_plans =
        "In-Reply-To: <plans-1@sender.test>\r\nReferences: <plans-1@sender.test>\r\n";
    deliver(
        &caliop,
        "Re: Quarterly plans",
        "reply-2@sender.test",
        replies_to_plans,
    )
    .await;
    let ids = messages(&caliop, &account, &token).await;
    assert_eq!(ids.len(), 2);

    // Inside the seal: the original header fields, in a part marked protected.
    let (status, _, secret) = caliop
        .get(&format!("/v1/accounts/{account}/secret-key"), &token)
        .await;
    assert_eq!(status, 200);
    let secret = secret.as_str().unwrap().to_owned();
    let stored = raw(&caliop, &token, &ids[0]).await;
    assert!(
        !String::from_utf8_lossy(&stored).contains("Quarterly"),
        "the Subject is sealed"
    );
    let inner = header_fields(&decrypted(&secret, &stored));
    let content_type = value(&inner, "Content-Type").expect("a Content-Type inside");
    assert!(
        content_type.starts_with("text/plain;")
            && content_type.contains("protected-headers=\"v1\""),
        "{inner:?}"
    );
    assert_eq!(
        value(&inner, "Subject"),
        Some("Quarterly plans"),
        "{inner:?}"
    );
    assert_eq!(
        value(&inner, "From"),
        Some("Alice <alice@sender.test>"),
        "{inner:?}"
    );
    assert_eq!(
        value(&inner, "Message-ID"),
        Some("<plans-1@sender.test>"),
        "{inner:?}"
    );
    let reply_inner = header_fields(&decrypted(&secret, &raw(&caliop, &token, &ids[1]).await));
    assert_eq!(value(&reply_inner, "Subject"), Some("Re: Quarterly plans"));
    assert_eq!(
        value(&reply_inner, "In-Reply-To"),
        Some("<plans-1@sender.test>")
    );

    // Outside, as a client reads it without the key: the reply threads under the original.
    let outer = imap_headers(&caliop).await;
    assert_eq!(outer.len(), 2);
    for fields in &outer {
        assert_eq!(value(fields, "Subject"), Some("..."), "{fields:?}");
        assert!(
            value(fields, "Content-Type").is_some_and(|t| t.starts_with("multipart/encrypted")),
            "{fields:?}"
        );
    }
    assert_eq!(
        value(&outer[0], "Message-ID"),
        Some("<plans-1@sender.test>"),
        "{:?}",
        outer[0]
    );
    assert_eq!(
        value(&outer[1], "Message-ID"),
        Some("<reply-2@sender.test>")
    );
    assert_eq!(
        value(&outer[1], "In-Reply-To"),
        Some("<plans-1@sender.test>"),
        "{:?}",
        outer[1]
    );
    assert_eq!(
        value(&outer[1], "References"),
        Some("<plans-1@sender.test>")
    );

    // A tenant that keeps conversations sealed: the server's own id, nothing more.
    let (status, _, updated) = caliop
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/tenants/{tenant}"),
            Some(&operator),
            Some(
                json!({"policy": {"min_level": "standard", "allowed_jurisdictions": [],
                                   "outer_thread_headers": false}}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["policy"]["outer_thread_headers"], false);
    deliver(
        &caliop,
        "Re: Quarterly plans, again",
        "reply-3@sender.test",
        replies_to_plans,
    )
    .await;
    let outer = imap_headers(&caliop).await;
    assert_eq!(outer.len(), 3);
    let hidden = &outer[2];
    let own = value(hidden, "Message-ID").unwrap_or_default();
    assert!(
        own.ends_with("@mx.caliop.test>") && !own.contains("reply-3"),
        "{hidden:?}"
    );
    assert_eq!(value(hidden, "In-Reply-To"), None, "{hidden:?}");
    assert_eq!(value(hidden, "References"), None, "{hidden:?}");
    assert_eq!(value(hidden, "Subject"), Some("..."));
    // The conversation is still inside, for the key holder.
    let ids = messages(&caliop, &account, &token).await;
    let inner = header_fields(&decrypted(&secret, &raw(&caliop, &token, &ids[2]).await));
    assert_eq!(value(&inner, "Message-ID"), Some("<reply-3@sender.test>"));
    assert_eq!(value(&inner, "In-Reply-To"), Some("<plans-1@sender.test>"));
}
