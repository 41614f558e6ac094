//! A tenant leaves one instance for another: exported from a `caliop serve`
//! on SQLite, imported into a `caliop serve` on PostgreSQL, with the real
//! binary and real SMTP. Its users sign in with the same passwords and read
//! the same bytes; sealed mail is still sealed and opens with GnuPG and the
//! user's key only; a tampered archive or a wrong passphrase imports nothing.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{BIN, Caliop, PASSWORD, field, gpg, gpg_home, raw};
use mail::probe::SmtpProbe;
use serde_json::{Value, json};
use tenants::Backend;

const PASSPHRASE: &str = "correct horse battery staple, moving house";

fn cli(env: &[(String, String)], args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn send(caliop: &Caliop, to: &str, message: &str) {
    let mut probe = SmtpProbe::connect(caliop.smtp).await;
    assert_eq!(probe.cmd("EHLO sender.test").await.0, 250);
    assert_eq!(probe.cmd("MAIL FROM:<sender@elsewhere.test>").await.0, 250);
    assert_eq!(probe.cmd(&format!("RCPT TO:<{to}>")).await.0, 250);
    assert_eq!(probe.cmd("DATA").await.0, 354);
    probe.send(format!("{message}\r\n.\r\n").as_bytes()).await;
    let reply = probe.read_reply().await;
    assert_eq!(reply.0, 250, "{reply:?}");
    probe.cmd("QUIT").await;
}

fn plain(to: &str, subject: &str, marker: &str) -> String {
    format!(
        "From: <sender@elsewhere.test>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@elsewhere.test>\r\n\
         Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\n{marker} in {subject}\r\n"
    )
}

async fn token(caliop: &Caliop, address: &str, password: &str) -> (u16, Value) {
    let (status, _, body) = caliop
        .post(
            "/v1/auth/token",
            None,
            json!({"grant_type": "password", "username": address, "password": password}),
        )
        .await;
    (status, body)
}

/// What a user sees: per message, its mailbox name, flags, level and bytes.
async fn mail_of(
    caliop: &Caliop,
    address: &str,
    account: &str,
) -> Vec<(String, Value, String, Vec<u8>)> {
    let (status, body) = token(caliop, address, PASSWORD).await;
    assert_eq!(status, 200, "{address} signs in: {body}");
    let token = field(&body, "access_token");
    let (_, _, mailboxes) = caliop
        .get(&format!("/v1/accounts/{account}/mailboxes"), &token)
        .await;
    let names: std::collections::HashMap<String, String> = mailboxes
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (field(m, "id"), field(m, "name")))
        .collect();
    let (status, _, list) = caliop
        .get(&format!("/v1/accounts/{account}/messages"), &token)
        .await;
    assert_eq!(status, 200, "{list}");
    let mut out = Vec::new();
    for m in list["items"].as_array().unwrap() {
        let bytes = raw(caliop, &token, &field(m, "id")).await;
        out.push((
            names[&field(m, "mailbox_id")].clone(),
            m["flags"].clone(),
            field(m, "level"),
            bytes,
        ));
    }
    out.sort_by(|a, b| a.3.cmp(&b.3));
    out
}

fn armored(message: &[u8]) -> &[u8] {
    let text = std::str::from_utf8(message).unwrap();
    let start = text.find("-----BEGIN PGP MESSAGE-----").expect("PGP/MIME");
    let end = text.find("-----END PGP MESSAGE-----").unwrap() + "-----END PGP MESSAGE-----".len();
    &message[start..end]
}

async fn tenant_count(caliop: &Caliop) -> usize {
    let (_, _, list) = caliop
        .get("/v1/tenants?limit=200", &caliop.operator_token())
        .await;
    list["items"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_moves_from_sqlite_to_postgres_and_reads_the_same_mail() {
    let dns = mail::dns_server::DnsServer::start().await.unwrap();
    let from_dir = tempfile::tempdir().unwrap();
    let to_dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let from_env = common::environment(Backend::Sqlite, from_dir.path(), dns.addr()).await;
    let from = common::serve(from_env.clone(), from_dir.path().join("caliop.log")).await;

    // A tenant with mail at every level, a folder of the user's own and flags.
    let user = common::mailbox(&from, "standard").await;
    let operator = from.operator_token();
    let (_, _, tenants) = from.get("/v1/tenants", &operator).await;
    let tenant = tenants["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Acme")
        .unwrap()
        .clone();
    let tenant_id = field(&tenant, "id");
    let mut accounts = vec![("user@acme.test".to_owned(), user.clone(), "standard")];
    for level in ["sealed", "dispersed", "end-to-end"] {
        let address = format!("{level}@acme.test");
        let (status, _, account) = from
            .post(
                &format!("/v1/tenants/{tenant_id}/accounts"),
                Some(&operator),
                json!({"address": address, "password": PASSWORD, "level": level}),
            )
            .await;
        assert_eq!(status, 201, "{account}");
        accounts.push((address, field(&account, "id"), level));
    }
    let marker = format!("MOVING-MARKER-{}", uuid::Uuid::now_v7().simple());
    for (address, id, level) in &accounts {
        if *level == "end-to-end" {
            let (status, _, key) = from
                .get(&format!("/v1/accounts/{id}/public-key"), &operator)
                .await;
            assert_eq!(status, 200);
            let key = key.as_str().unwrap().to_owned();
            let encrypted =
                vault::seal::encrypt(&key, plain(address, "e2e", &marker).as_bytes()).unwrap();
            let headers = vec![
                format!("From: <sender@elsewhere.test>"),
                format!("To: <{address}>"),
                "Subject: ...".to_owned(),
                "Message-ID: <e2e@elsewhere.test>".to_owned(),
            ];
            let message = String::from_utf8(vault::seal::pgp_mime(&headers, &encrypted)).unwrap();
            send(&from, address, message.trim_end()).await;
        } else {
            send(
                &from,
                address,
                &plain(address, &format!("first-{level}"), &marker),
            )
            .await;
            send(
                &from,
                address,
                &plain(address, &format!("second-{level}"), &marker),
            )
            .await;
        }
    }
    let (_, body) = token(&from, "user@acme.test", PASSWORD).await;
    let user_token = field(&body, "access_token");
    let (status, _, folder) = from
        .post(
            &format!("/v1/accounts/{user}/mailboxes"),
            Some(&user_token),
            json!({"name": "Projects/2026"}),
        )
        .await;
    assert_eq!(status, 201, "{folder}");
    let (_, _, list) = from
        .get(&format!("/v1/accounts/{user}/messages"), &user_token)
        .await;
    let first = field(&list["items"][0], "id");
    let (status, _, moved) = from
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/messages/{first}"),
            Some(&user_token),
            Some(json!({"mailbox_id": field(&folder, "id"), "flags": ["seen", "flagged"]})),
        )
        .await;
    assert_eq!(status, 200, "{moved}");

    let mut before = Vec::new();
    for (address, id, _) in &accounts {
        before.push(mail_of(&from, address, id).await);
    }
    assert_eq!(before.iter().map(Vec::len).sum::<usize>(), 7);
    assert!(
        before[0]
            .iter()
            .any(|(mailbox, flags, ..)| mailbox == "Projects/2026"
                && flags.to_string().contains("flagged"))
    );

    // An account that moved to device sign-in, with an app password: its
    // OPAQUE record, its key locked on the device, the tenant's OPAQUE
    // secrets and the app password move with the tenant.
    let (status, _, mover) = from
        .post(
            &format!("/v1/tenants/{tenant_id}/accounts"),
            Some(&operator),
            json!({"address": "mover@acme.test", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 201, "{mover}");
    let user_cli = |caliop: &Caliop, args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .args(["--api", &caliop.base])
            .env("CALIOP_PASSWORD", PASSWORD)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let mover_token = user_cli(&from, &["login", "mover@acme.test"]);
    let (status, _, app_password) = from
        .post(
            &format!("/v1/accounts/{}/app-passwords", field(&mover, "id")),
            Some(mover_token.trim()),
            json!({"name": "phone"}),
        )
        .await;
    assert_eq!(status, 201, "{app_password}");
    let app_secret = field(&app_password, "secret");
    let mover_key = user_cli(&from, &["key", "unlock", "mover@acme.test"]);

    // Exported while the first instance runs.
    let archive = work.path().join("acme.caliop");
    let passphrase_file = work.path().join("passphrase");
    std::fs::write(&passphrase_file, format!("{PASSPHRASE}\n")).unwrap();
    let (ok, out, err) = cli(
        &from_env,
        &[
            "tenant",
            "export",
            &tenant_id,
            archive.to_str().unwrap(),
            "--passphrase-file",
            passphrase_file.to_str().unwrap(),
        ],
    );
    assert!(ok, "export: {err}");
    assert!(out.contains("7 message(s)"), "{out}");
    let bytes = std::fs::read(&archive).unwrap();
    for needle in [
        marker.as_bytes(),
        b"user@acme.test".as_slice(),
        b"Acme".as_slice(),
    ] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "the archive is encrypted"
        );
    }
    // Before it leaves: a court's request for the sealed account's mail,
    // answered with `caliop legal export`, counted in the public report.
    let (status, _, request) = from
        .post(
            "/v1/legal-requests",
            Some(&operator),
            json!({"authority": "Tribunal judiciaire de Paris", "country": "FR", "legal_basis": "RG 26/04242",
                   "received_on": chrono::Utc::now().date_naive().to_string(), "decision": "complied",
                   "scope": {"tenant_id": tenant_id, "account_ids": [accounts[1].1], "kinds": ["messages", "account_metadata"]}}),
        )
        .await;
    assert_eq!(status, 201, "{request}");
    let disclosure = work.path().join("disclosure.tar");
    let (ok, out, err) = cli(
        &from_env,
        &[
            "legal",
            "export",
            &field(&request, "id"),
            "--out",
            disclosure.to_str().unwrap(),
        ],
    );
    assert!(ok, "legal export: {err}");
    assert!(out.contains("2 sealed"), "{out}");
    let listing = Command::new("tar")
        .arg("-tf")
        .arg(&disclosure)
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    let mails: Vec<&str> = listing
        .lines()
        .filter(|l| l.starts_with("messages/"))
        .collect();
    assert_eq!(mails.len(), 2, "{listing}");
    assert!(
        mails
            .iter()
            .all(|m| m.starts_with("messages/sealed@acme.test/")),
        "{listing}"
    );
    let tarred = std::fs::read(&disclosure).unwrap();
    assert!(
        !tarred.windows(marker.len()).any(|w| w == marker.as_bytes()),
        "sealed mail is disclosed as ciphertext"
    );
    let report = reqwest::get(format!("{}/v1/public/transparency", from.base))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        report["report"]["totals"]["messages_disclosed"]["sealed"], 2,
        "{report}"
    );
    assert_eq!(
        report["report"]["totals"]["messages_ciphertext_only"], 2,
        "{report}"
    );
    drop(from);

    let to_env = common::environment(Backend::Postgres, to_dir.path(), dns.addr()).await;
    let to = common::serve(to_env.clone(), to_dir.path().join("caliop.log")).await;
    let tenants_before = tenant_count(&to).await;

    // A wrong passphrase, then a tampered archive: refused, nothing imported.
    let wrong = work.path().join("wrong");
    std::fs::write(&wrong, "not the passphrase\n").unwrap();
    let (ok, _, err) = cli(
        &to_env,
        &[
            "tenant",
            "import",
            archive.to_str().unwrap(),
            "--passphrase-file",
            wrong.to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert!(err.contains("wrong passphrase"), "{err}");
    let tampered = work.path().join("tampered.caliop");
    let mut altered = bytes.clone();
    let at = altered.len() - 1000;
    altered[at] ^= 0x20;
    std::fs::write(&tampered, &altered).unwrap();
    let (ok, _, err) = cli(
        &to_env,
        &[
            "tenant",
            "import",
            tampered.to_str().unwrap(),
            "--passphrase-file",
            passphrase_file.to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert!(err.contains("modified"), "{err}");
    assert_eq!(
        tenant_count(&to).await,
        tenants_before,
        "nothing half-imported"
    );
    assert_eq!(
        token(&to, "user@acme.test", PASSWORD).await.0,
        401,
        "no such user yet"
    );

    let (ok, out, err) = cli(
        &to_env,
        &[
            "tenant",
            "import",
            archive.to_str().unwrap(),
            "--passphrase-file",
            passphrase_file.to_str().unwrap(),
            // The operator vouches for the domain the archive says was
            // verified (forced, audited); without it, it must be proven again.
            "--trust-verification",
        ],
    );
    assert!(ok, "import: {err}");
    assert!(out.contains("7 message(s)"), "{out}");
    assert_eq!(tenant_count(&to).await, tenants_before + 1);

    // The moved account signs in unchanged, through OPAQUE, and unlocks
    // the same key; its mail client's app password still opens IMAP.
    assert_eq!(
        user_cli(&to, &["key", "unlock", "mover@acme.test"]),
        mover_key
    );
    let (mut imap, _) = mail::imap_probe::ImapProbe::connect(to.imap).await;
    imap.login("mover@acme.test", &app_secret).await;

    // Same passwords, same folders, flags and bytes.
    for ((address, id, _), expected) in accounts.iter().zip(&before) {
        assert_eq!(
            &mail_of(&to, address, id).await,
            expected,
            "{address} reads the same mail"
        );
    }
    // Sealed mail is still sealed, and opens with the user's key only.
    let sealed_mail = &before[1];
    let (_, body) = token(&to, "sealed@acme.test", PASSWORD).await;
    let sealed_token = field(&body, "access_token");
    let (status, _, secret) = to
        .get(
            &format!("/v1/accounts/{}/secret-key", accounts[1].1),
            &sealed_token,
        )
        .await;
    assert_eq!(status, 200);
    let home = gpg_home();
    let (ok, _, err) = gpg(
        home.path(),
        &["--passphrase", PASSWORD, "--import"],
        secret.as_str().unwrap().as_bytes(),
    );
    assert!(ok, "{err}");
    for (_, _, level, bytes) in sealed_mail {
        assert_eq!(level, "sealed");
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "stored sealed"
        );
        let (ok, clear, err) = gpg(
            home.path(),
            &["--passphrase", PASSWORD, "--decrypt"],
            armored(bytes),
        );
        assert!(ok, "gpg opens it with the user's key: {err}");
        assert!(String::from_utf8_lossy(&clear).contains(&marker));
    }
    let stranger = gpg_home();
    let (ok, _, _) = gpg(stranger.path(), &["--decrypt"], armored(&sealed_mail[0].3));
    assert!(!ok, "no other key opens it");

    // The dispersed mail was dispersed again on the new instance's sites.
    let shards = walk(&to_dir.path().join("sites"));
    assert!(
        shards >= 6,
        "two dispersed and one end-to-end message, on three sites: {shards} shard files"
    );

    // The domain works on its new home: mail is delivered there.
    send(
        &to,
        "sealed@acme.test",
        &plain("sealed@acme.test", "after-the-move", &marker),
    )
    .await;
    assert_eq!(
        mail_of(&to, "sealed@acme.test", &accounts[1].1).await.len(),
        3
    );

    // Importing the same archive again clashes, and says with what.
    let (ok, _, err) = cli(
        &to_env,
        &[
            "tenant",
            "import",
            archive.to_str().unwrap(),
            "--passphrase-file",
            passphrase_file.to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("already has") && err.contains("acme.test"),
        "{err}"
    );
}

fn walk(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                walk(&e.path())
            } else {
                1
            }
        })
        .sum()
}
