//! IMAP, end to end: Python's imaplib through a whole session (checked
//! against what the API then shows), sealed mail served as stored and
//! opened by GnuPG, and bad input that gets BAD or NO and never stops the
//! server, including random input on the command path.

mod support;

use std::time::Duration;

use mail::imap_probe::ImapProbe as Client;
use serde_json::{Value, json};
use support::{PASSWORD, TestApp};
use tenants::{Backend, on_both_backends};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

on_both_backends!(
    imaplib_runs_a_whole_session_and_the_api_agrees,
    sealed_mail_is_served_as_stored,
    bad_input_gets_bad_or_no_and_the_server_stays,
    random_input_on_the_command_path,
    mailboxes_per_account_are_capped_at_every_door,
    headers_and_structures_come_from_the_summary_kept_at_delivery,
);

fn python() -> String {
    std::env::var("CALIOP_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

async fn user(app: &TestApp, domain: &str, local: &str, level: &str) -> (String, String, String) {
    let e = app.enterprise(domain, 5).await;
    let id = app.user(&e, local).await;
    let address = format!("{local}@{domain}");
    let token = app.login(&address, PASSWORD).await;
    if level != "standard" {
        app.patch(
            &format!("/v1/accounts/{id}"),
            &token,
            json!({"level": level}),
        )
        .await
        .ok(200);
    }
    (id, address, token)
}

async fn messages(app: &TestApp, account: &str, token: &str, query: &str) -> Vec<Value> {
    let listed = app
        .get(&format!("/v1/accounts/{account}/messages?{query}"), token)
        .await;
    listed.ok(200)["items"].as_array().expect("items").clone()
}

async fn imaplib_runs_a_whole_session_and_the_api_agrees(backend: Backend) {
    let app = support::spawn(backend).await;
    let (id, address, token) = user(&app, "acme.test", "bob", "standard").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/imap/session.py");
    let run = {
        let (imap, smtp) = (app.imap.port().to_string(), app.smtp.port().to_string());
        let address = address.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(python())
                .args([script, "127.0.0.1", &imap, &smtp, &address, PASSWORD])
                .output()
                .expect("python runs")
        })
        .await
        .unwrap()
    };
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the imaplib session failed:\n{}\n{stdout}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out: Value = serde_json::from_str(stdout.trim()).expect("the script's summary");
    eprintln!("imaplib session: {out}");
    assert_eq!(out["inbox"], 2, "{out}");

    // The API sees the same mailboxes, messages and flags.
    let mailboxes = app
        .get(&format!("/v1/accounts/{id}/mailboxes"), &token)
        .await;
    let mailboxes = mailboxes.ok(200).as_array().unwrap().clone();
    let by_name = |name: &str| {
        mailboxes
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {mailboxes:?}"))
            .clone()
    };
    assert_eq!(by_name("INBOX")["uid_validity"], out["uidvalidity"]);
    assert_eq!(by_name("INBOX")["counts"]["messages"], 2);
    assert_eq!(by_name("Archive")["counts"]["messages"], 1);
    assert_eq!(by_name("Projects/2026")["role"], Value::Null);
    assert_eq!(by_name("Sent")["role"], "sent");

    let archived = messages(&app, &id, &token, "folder=archive").await;
    assert_eq!(archived.len(), 1);
    assert_eq!(archived[0]["subject"], out["moved_subject"]);
    let inbox = messages(&app, &id, &token, "folder=inbox").await;
    let first = inbox
        .iter()
        .find(|m| m["uid"] == out["flagged_uid"])
        .expect("the flagged message");
    let flags: Vec<&str> = first["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        flags.contains(&"flagged") && flags.contains(&"answered"),
        "{flags:?}"
    );
    assert_eq!(first["keywords"], json!(["$Work"]));
    let drafts = messages(&app, &id, &token, "folder=drafts").await;
    assert_eq!(drafts.len(), 1);
    assert_eq!(drafts[0]["uid"], out["draft_uid"]);
    assert_eq!(drafts[0]["subject"], "A draft");
    assert_eq!(drafts[0]["flags"], json!(["draft"]));

    // And what the API changes, IMAP sees: a move through the API.
    let moved = app
        .patch(
            &format!("/v1/messages/{}", first["id"].as_str().unwrap()),
            &token,
            json!({"folder": "trash"}),
        )
        .await;
    assert_eq!(moved.ok(200)["folder"], "trash");
    let (mut client, _) = Client::connect(app.imap).await;
    client.login(&address, PASSWORD).await;
    let (untagged, done) = client.run("STATUS Trash (MESSAGES UIDNEXT)").await;
    assert!(done.contains(" OK "), "{done}");
    assert!(
        untagged[0].contains("MESSAGES 1") && untagged[0].contains("UIDNEXT 2"),
        "{untagged:?}"
    );
}

async fn sealed_mail_is_served_as_stored(backend: Backend) {
    let app = support::spawn(backend).await;
    let (id, address, token) = user(&app, "acme.test", "carol", "sealed").await;
    let original = support::message(
        "alice@sender.test",
        &address,
        "Sealed for Carol",
        "Only Carol reads this.",
    );
    let reply =
        support::send_with_lettre(app.smtp, "alice@sender.test", &[&address], &original, false)
            .await
            .expect("delivered");
    assert!(reply.is_positive());
    let meta = messages(&app, &id, &token, "").await.remove(0);
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
    let stored = raw.text().to_owned();

    let (mut client, _) = Client::connect(app.imap).await;
    client.login(&address, PASSWORD).await;
    client.run("SELECT INBOX").await;
    let (untagged, done) = client
        .run("FETCH 1 (RFC822.SIZE BODYSTRUCTURE ENVELOPE BODY.PEEK[])")
        .await;
    assert!(done.contains(" OK "), "{done}");
    let response = untagged.concat();
    assert!(
        response.contains(&format!("RFC822.SIZE {}", stored.len())),
        "{response}"
    );
    assert!(
        response
            .to_ascii_uppercase()
            .contains("\"MULTIPART\" \"ENCRYPTED\"")
            || response.to_ascii_uppercase().contains("\"ENCRYPTED\""),
        "BODYSTRUCTURE describes the encrypted wrapper: {response}"
    );
    assert!(
        !response.contains("Sealed for Carol"),
        "the subject is not known to the server: {response}"
    );
    let body_at = response
        .find(&format!("BODY[] {{{}}}\r\n", stored.len()))
        .expect("the body literal");
    let served =
        &response[body_at + format!("BODY[] {{{}}}\r\n", stored.len()).len()..][..stored.len()];
    assert_eq!(served, stored, "IMAP serves exactly the stored PGP/MIME");

    // The key the user exports opens it: GnuPG gets the original back.
    let secret = app
        .get(&format!("/v1/accounts/{id}/secret-key"), &token)
        .await;
    let armored = secret.text().to_owned();
    let home = support::gpg_home();
    let (imported, _, err) = support::gpg(home.path(), &["--import"], armored.as_bytes());
    assert!(imported, "{err}");
    let part = served
        .split("-----BEGIN PGP MESSAGE-----")
        .nth(1)
        .expect("an armored part");
    let armored_message = format!(
        "-----BEGIN PGP MESSAGE-----{}",
        part.split("-----END PGP MESSAGE-----").next().unwrap()
    ) + "-----END PGP MESSAGE-----\n";
    let (decrypted, plain, err) = support::gpg(
        home.path(),
        &["--passphrase", PASSWORD, "--decrypt"],
        armored_message.as_bytes(),
    );
    assert!(decrypted, "{err}");
    let plain = String::from_utf8_lossy(&plain);
    assert!(plain.contains("Only Carol reads this."), "{plain}");

    // A draft her client APPENDs in clear is sealed before it is written.
    let draft = support::message(
        &address,
        "dan@elsewhere.test",
        "Draft about the merger",
        "Not yet.",
    );
    client
        .send_raw(format!("t50 APPEND Drafts (\\Draft) {{{}+}}\r\n", draft.len()).as_bytes())
        .await;
    client.send_raw(&draft).await;
    client.send_raw(b"\r\n").await;
    let (_, done) = client.until("t50").await;
    assert!(done.contains(" OK [APPENDUID "), "{done}");
    let drafts = messages(&app, &id, &token, "folder=drafts").await;
    assert_eq!(drafts[0]["level"], "sealed");
    assert!(drafts[0]["subject"].is_null(), "{:?}", drafts[0]);
    let raw = app
        .raw(
            app.http
                .get(format!(
                    "{}/v1/messages/{}/raw",
                    app.base,
                    drafts[0]["id"].as_str().unwrap()
                ))
                .bearer_auth(&token),
        )
        .await;
    let stored = raw.text();
    assert!(
        stored.contains("multipart/encrypted") && !stored.contains("merger"),
        "{stored}"
    );
}

async fn bad_input_gets_bad_or_no_and_the_server_stays(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    app.user(&e, "dave").await;
    let address = "dave@acme.test".to_owned();
    let (mut c, greeting) = Client::connect(app.imap).await;
    assert!(
        greeting.starts_with("* OK [CAPABILITY IMAP4rev1"),
        "{greeting}"
    );

    let (_, done) = c.run("FETCH 1 (FLAGS)").await;
    assert!(
        done.contains(" BAD ") && done.contains("sign in first"),
        "wrong state: {done}"
    );
    let (_, done) = c.run("FROBNICATE now").await;
    assert!(
        done.contains(" BAD ") && done.contains("FROBNICATE"),
        "unknown command: {done}"
    );
    let (_, done) = c.run("LOGIN onlyone").await;
    assert!(
        done.contains(" BAD ") && done.contains("LOGIN"),
        "missing argument: {done}"
    );
    c.send_raw(format!("t90 NOOP {}\r\n", "x".repeat(70 * 1024)).as_bytes())
        .await;
    let (_, done) = c.until("t90").await;
    assert!(done.contains(" BAD [TOOBIG]"), "overlong line: {done}");
    c.send_raw(b"t91 LOGIN {9000}\r\n").await;
    let (_, done) = c.until("t91").await;
    assert!(
        done.contains(" NO [TOOBIG]") && done.contains("at most 8192"),
        "no big literal before sign-in: {done}"
    );
    let (_, done) = c.run("LOGIN nobody@acme.test wrong").await;
    assert!(done.contains(" NO [AUTHENTICATIONFAILED]"), "{done}");

    c.login(&address, PASSWORD).await;
    let (_, done) = c.run("FETCH 1 (FLAGS)").await;
    assert!(
        done.contains(" BAD ") && done.contains("select a mailbox first"),
        "{done}"
    );
    c.send_raw(b"t93 APPEND INBOX {5000000}\r\n").await;
    let (_, done) = c.until("t93").await;
    assert!(
        done.contains(" NO [TOOBIG]") && done.contains("5000000"),
        "literal over the limit: {done}"
    );
    let (_, done) = c
        .run("LIST \"\" \"*****************************************x\"")
        .await;
    assert!(done.contains(" OK "), "wildcards cost little: {done}");
    let (_, done) = c.run("SELECT Nowhere").await;
    assert!(done.contains(" NO [NONEXISTENT]"), "{done}");
    let (_, done) = c.run("CREATE \"a*b\"").await;
    assert!(
        done.contains(" NO [CANNOT]") && done.contains("wildcards"),
        "{done}"
    );
    let (_, done) = c.run("DELETE INBOX").await;
    assert!(done.contains(" NO [CANNOT]"), "{done}");
    assert!(c.run("CREATE Clients/Dupont").await.1.contains(" OK "));
    let (_, done) = c.run("DELETE Clients").await;
    assert!(
        done.contains(" NO [CANNOT]") && done.contains("under it"),
        "{done}"
    );
    let (_, done) = c.run("RENAME Clients Customers").await;
    assert!(done.contains(" OK "), "{done}");
    let (listed, _) = c.run("LIST \"\" Customers*").await;
    assert_eq!(listed.len(), 2, "the child follows its parent: {listed:?}");
    assert!(
        listed.iter().any(|l| l.contains("\"Customers/Dupont\"")),
        "{listed:?}"
    );
    assert!(c.run("DELETE Customers/Dupont").await.1.contains(" OK "));
    assert!(c.run("DELETE Customers").await.1.contains(" OK "));
    c.run("SELECT INBOX").await;
    // BINARY is read (issue 21) even where nothing is there to fetch.
    let (_, done) = c.run("FETCH 1:* (BINARY[1])").await;
    assert!(done.contains(" OK "), "{done}");
    let (_, done) = c.run("UID FETCH 1:* (FLAGS)").await;
    assert!(
        done.contains(" OK "),
        "an empty mailbox fetches nothing: {done}"
    );
    let (_, done) = c.run("NOOP").await;
    assert!(done.contains(" OK "), "the session goes on: {done}");

    // A literal within the limit is taken; the continuation comes first.
    let message = support::message("dave@acme.test", "dave@acme.test", "Appended", "Hi.");
    c.send_raw(format!("t92 APPEND INBOX (\\Seen) {{{}}}\r\n", message.len()).as_bytes())
        .await;
    assert!(c.line().await.starts_with("+ "), "a continuation request");
    c.send_raw(&message).await;
    c.send_raw(b"\r\n").await;
    let (untagged, done) = c.until("t92").await;
    assert!(
        done.contains(" OK [APPENDUID ") && done.contains(" 1]"),
        "{done}"
    );
    assert!(
        untagged.iter().any(|l| l.trim() == "* 1 EXISTS"),
        "the selected mailbox grew: {untagged:?}"
    );
    let (_, done) = c.run("STORE 1 +FLAGS (\\Recent)").await;
    assert!(
        done.contains(" BAD ") && done.contains("\\Recent"),
        "{done}"
    );
    let (untagged, done) = c.run("FETCH 1 (FLAGS)").await;
    assert!(
        // Appended into the selected mailbox: \Recent to this session.
        done.contains(" OK ") && untagged[0].contains("FLAGS (\\Recent \\Seen)"),
        "{untagged:?} {done}"
    );

    // Another client is served as if nothing happened.
    let (mut other, _) = Client::connect(app.imap).await;
    other.login(&address, PASSWORD).await;
    let (untagged, done) = other.run("SELECT INBOX").await;
    assert!(done.contains(" OK [READ-WRITE]"), "{done}");
    assert!(
        untagged.iter().any(|l| l.trim() == "* 1 EXISTS"),
        "{untagged:?}"
    );

    // Suspended by an administrator: open sessions end, new ones are refused.
    let accounts = app
        .get(
            &format!("/v1/tenants/{}/accounts", e.tenant_id),
            &e.admin_token,
        )
        .await;
    let dave = accounts.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["address"] == address.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.patch(
        &format!("/v1/accounts/{dave}"),
        &e.admin_token,
        json!({"status": "suspended"}),
    )
    .await
    .ok(200);
    other.send_raw(b"t94 NOOP\r\n").await;
    assert!(
        other.line().await.starts_with("* BYE "),
        "the open session is ended"
    );
    let (mut late, _) = Client::connect(app.imap).await;
    let (_, done) = late
        .run(&format!("LOGIN \"{address}\" \"{PASSWORD}\""))
        .await;
    // The right password of a suspended account: said so, not "wrong password".
    assert!(
        done.contains(" NO [AUTHORIZATIONFAILED] the account is suspended"),
        "{done}"
    );

    // A suspended organisation: its users are told so, not that their password is wrong.
    app.patch(
        &format!("/v1/accounts/{dave}"),
        &e.admin_token,
        json!({"status": "active"}),
    )
    .await
    .ok(200);
    app.patch(
        &format!("/v1/tenants/{}", e.tenant_id),
        &app.operator_token,
        json!({"status": "suspended"}),
    )
    .await
    .ok(200);
    let (_, done) = late
        .run(&format!("LOGIN \"{address}\" \"{PASSWORD}\""))
        .await;
    assert!(
        done.contains(" NO [CONTACTADMIN]") && done.contains("suspended"),
        "{done}"
    );
}

/// Commands made of IMAP words, numbers, literals and random bytes, fed to
/// a session before and after sign-in: every line the server writes is a
/// well-formed response (untagged, continuation, or tagged with OK, NO or
/// BAD), and a NOOP afterwards is still answered unless the server hung up
/// on purpose (BYE) or waits for literal bytes the input promised.
async fn random_input_on_the_command_path(backend: Backend) {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};

    let app = support::spawn(backend).await;
    let (_, address, _) = user(&app, "acme.test", "erin", "standard").await;
    let words = prop::sample::select(vec![
        "a",
        "LOGIN",
        "SELECT",
        "INBOX",
        "FETCH",
        "UID",
        "STORE",
        "1:*",
        "*",
        "(",
        ")",
        "[",
        "]",
        "BODY[]",
        "+FLAGS",
        "\\Seen",
        "{3}",
        "{5+}",
        "\"",
        "\"x\"",
        "NIL",
        "SEARCH",
        "OR",
        "APPEND",
        "IDLE",
        "DONE",
        "LIST",
        "\"\"",
        "%",
        "1",
        "0",
        "4294967296",
        "MOVE",
        "COPY",
        "EXPUNGE",
        "AUTHENTICATE",
        "PLAIN",
        "=",
        "<0.5>",
        "ENVELOPE",
        "CREATE",
        "RENAME",
    ]);
    let token = prop_oneof![
        words.prop_map(|w| w.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..12)
    ];
    let line = prop::collection::vec(token, 0..10).prop_map(|tokens| {
        let mut line = tokens.join(&b' ');
        line.retain(|b| *b != b'\n');
        line.extend_from_slice(b"\r\n");
        line
    });
    let input = prop::collection::vec(line, 1..6);
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    let mut cases = Vec::new();
    for _ in 0..48 {
        cases.push(input.new_tree(&mut runner).expect("a case").current());
    }
    for (n, lines) in cases.into_iter().enumerate() {
        let signed_in = n % 2 == 1;
        let (client, server) = tokio::io::duplex(1 << 20);
        let imap = app.imap_server.clone();
        let peer: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let session = tokio::spawn(async move { imap.session_over(server, peer).await });
        let (read, mut write) = tokio::io::split(client);
        let mut read = BufReader::new(read);
        let mut prefix = Vec::new();
        if signed_in {
            prefix.extend_from_slice(
                format!("p1 LOGIN \"{address}\" \"{PASSWORD}\"\r\np2 SELECT INBOX\r\n").as_bytes(),
            );
        }
        let mut input = prefix;
        for line in &lines {
            input.extend_from_slice(line);
        }
        input.extend_from_slice(b"zz NOOP\r\n");
        write.write_all(&input).await.unwrap();
        let mut answered = false;
        let mut said_bye = false;
        loop {
            let mut line = Vec::new();
            match tokio::time::timeout(Duration::from_secs(3), read.read_until(b'\n', &mut line))
                .await
            {
                Ok(Ok(0)) | Err(_) => break,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("reading the session: {e}"),
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            let well_formed = text.starts_with("* ")
                || text.starts_with("+ ")
                || text.split_once(' ').is_some_and(|(_, rest)| {
                    rest.starts_with("OK") || rest.starts_with("NO ") || rest.starts_with("BAD ")
                })
                || !text.ends_with("\r\n");
            assert!(
                well_formed,
                "case {n}: `{text}` answers {:?}",
                String::from_utf8_lossy(&input)
            );
            said_bye |= text.starts_with("* BYE");
            if text.starts_with("zz OK") {
                answered = true;
                break;
            }
        }
        let promised_literal = input.windows(2).any(|w| w == b"}\r");
        let idle = String::from_utf8_lossy(&input)
            .to_ascii_uppercase()
            .contains("IDLE");
        assert!(
            answered || said_bye || promised_literal || idle,
            "case {n}: no answer to NOOP after {:?}",
            String::from_utf8_lossy(&input)
        );
        drop(write);
        drop(read);
        let _ = tokio::time::timeout(Duration::from_secs(5), session).await;
    }
}

/// Finding 11: nothing capped the mailboxes of an account. The cap (9 here,
/// 1,000 in production) holds through the API and IMAP CREATE alike, counts
/// the levels a nested name adds, and holds under concurrent creations.
async fn mailboxes_per_account_are_capped_at_every_door(backend: Backend) {
    const CAP: usize = 9;
    let store = tenants::testing::fresh_store(backend)
        .await
        .with_max_mailboxes(CAP);
    let app = support::spawn_on(
        store,
        support::api_config(),
        support::smtp_config(),
        billing::BillingConfig::default(),
    )
    .await;
    let (id, address, token) = user(&app, "acme.test", "mia", "standard").await;
    let list = format!("/v1/accounts/{id}/mailboxes");
    let count = |body: &Value| body.as_array().map_or(0, Vec::len);
    let special = count(app.get(&list, &token).await.ok(200));
    assert!(special < CAP - 2, "{special} special-use mailboxes");
    for i in special..CAP - 1 {
        app.post(&list, &token, json!({"name": format!("Folder {i}")}))
            .await
            .ok(201);
    }

    let (mut client, _) = Client::connect(app.imap).await;
    client.login(&address, PASSWORD).await;
    let (_, done) = client.run("CREATE Last").await;
    assert!(done.contains(" OK "), "{done}");
    let (_, done) = client.run("CREATE \"One too many\"").await;
    assert!(done.contains(" NO [LIMIT]"), "{done}");
    assert!(done.contains("at most 9 mailboxes"), "{done}");
    let refused = app
        .post(&list, &token, json!({"name": "Another"}))
        .await
        .problem(409);
    assert!(refused.contains("at most 9 mailboxes"), "{refused}");
    let listed = app.get(&list, &token).await;
    assert_eq!(count(listed.ok(200)), CAP);

    // One freed: a name with a new level above it needs two, and makes neither.
    let (_, done) = client.run("DELETE Last").await;
    assert!(done.contains(" OK "), "{done}");
    let (_, done) = client.run("CREATE Clients/Acme").await;
    assert!(done.contains(" NO [LIMIT]"), "{done}");
    assert_eq!(count(app.get(&list, &token).await.ok(200)), CAP - 1);

    // Three freed, ten concurrent creations: exactly three are made.
    let (_, done) = client.run("DELETE \"Folder 7\"").await;
    assert!(done.contains(" OK "), "{done}");
    let (_, done) = client.run("DELETE \"Folder 6\"").await;
    assert!(done.contains(" OK "), "{done}");
    let account = tenants::AccountId(id.parse().unwrap());
    let mut racing = tokio::task::JoinSet::new();
    for i in 0..10 {
        let store = app.store.clone();
        racing.spawn(async move {
            store
                .create_mailbox("test", account, &format!("Race {i}"), false)
                .await
        });
    }
    let made = racing.join_all().await;
    let refused = made
        .iter()
        .filter(|r| matches!(r, Err(tenants::Error::LimitExceeded(_))))
        .count();
    assert_eq!(made.len() - refused, 3, "{made:?}");
    assert_eq!(count(app.get(&list, &token).await.ok(200)), CAP);
}

/// The untagged responses of a command that must succeed, as one string.
async fn fetch(client: &mut Client, command: String) -> String {
    let (untagged, done) = client.run(&command).await;
    assert!(done.contains(" OK "), "{command}: {done}");
    untagged.concat()
}

/// FETCH answers headers, envelopes and structures from the summary kept
/// when the message was stored, exactly as the message itself would; a
/// message stored without one (before summaries were kept, or moved from
/// another instance) answers the same from its bytes and gets its summary
/// then; COPY keeps one for the copy.
async fn headers_and_structures_come_from_the_summary_kept_at_delivery(backend: Backend) {
    let app = support::spawn(backend).await;
    let (id, address, _) = user(&app, "acme.test", "dora", "standard").await;
    let account = app
        .store
        .account(tenants::AccountId(id.parse().unwrap()))
        .await
        .unwrap()
        .unwrap();
    let raw = format!(
        "From: \"Ann Example\" <ann@sender.test>\r\nTo: {address}\r\n\
         Cc: friends: a@b.test, c@d.test;\r\nSubject: =?utf-8?q?caf=C3=A9?= and\r\n summary\r\n\
         Date: Mon, 7 Dec 2026 09:00:00 +0000\r\nMessage-ID: <s1@sender.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n--b1\r\n\
         Content-Type: application/pdf; name=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"a.pdf\"\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n"
    );
    // 1: through the MX, which keeps its summary.
    support::send_with_lettre(
        app.smtp,
        "ann@sender.test",
        &[&address],
        raw.as_bytes(),
        false,
    )
    .await
    .expect("delivered");
    // 2: the same bytes stored without one.
    let bare = tenants::MessageId::new();
    let content = app
        .inbound
        .encrypt_standard(account.tenant_id, bare, raw.as_bytes())
        .await
        .unwrap();
    app.store
        .deliver(vec![tenants::NewMessage {
            id: bare,
            tenant_id: account.tenant_id,
            account_id: account.id,
            level: tenants::Level::Standard,
            envelope_from: "ann@sender.test".into(),
            envelope_to: address.clone(),
            subject: None,
            sender: None,
            privacy: tenants::privacy::PrivacyIndex::compute(&tenants::privacy::Facts::default()),
            authentication: json!({}),
            arrived_encrypted: false,
            content,
            dispersed: None,
            summary: None,
            rfc822_size: raw.len() as i64,
            flags: Vec::new(),
            keywords: Vec::new(),
            received_at: None,
            verdict: None,
            mailbox: None,
        }])
        .await
        .unwrap();
    let summarized = |ids: Vec<tenants::MessageId>| {
        let store = app.store.clone();
        async move { store.message_summaries(&ids).await.unwrap() }
    };
    assert!(summarized(vec![bare]).await.is_empty());

    let items = "UID ENVELOPE BODY BODYSTRUCTURE RFC822.HEADER BODY.PEEK[HEADER] \
                 BODY.PEEK[HEADER.FIELDS (From Subject X-None)] BODY.PEEK[HEADER.FIELDS.NOT (Received)]<0.40>";
    let (mut client, _) = Client::connect(app.imap).await;
    client.login(&address, PASSWORD).await;
    client.run("SELECT INBOX").await;
    // From the bytes (and the summary kept then), then from the summary.
    let first = fetch(&mut client, format!("FETCH 2 ({items})")).await;
    assert!(
        summarized(vec![bare]).await.contains_key(&bare),
        "the FETCH kept the summary of a message stored without one"
    );
    let again = fetch(&mut client, format!("FETCH 2 ({items})")).await;
    assert_eq!(again, first, "the summary answers as the message did");
    for expected in [
        "ENVELOPE (\"Mon, 7 Dec 2026 09:00:00 +0000\" \"=?utf-8?q?caf=C3=A9?= and summary\"",
        "(NIL NIL \"friends\" NIL)(NIL NIL \"a\" \"b.test\")",
        "\"APPLICATION\" \"PDF\"",
        "\"MIXED\"",
        "Subject: =?utf-8?q?caf=C3=A9?= and\r\n summary\r\n",
        "BODY[HEADER.FIELDS.NOT (Received)]<0> {40}",
    ] {
        assert!(
            first
                .to_ascii_uppercase()
                .contains(&expected.to_ascii_uppercase()),
            "{expected} in {first}"
        );
    }
    // SEARCH by header reads the summaries; by body, the messages.
    for (search, expected) in [
        ("SEARCH FROM \"ann example\"", "* SEARCH 1 2"),
        (
            "SEARCH HEADER Message-ID s1@sender.test SUBJECT \"and summary\"",
            "* SEARCH 1 2",
        ),
        ("SEARCH SENTON 7-Dec-2026 TO dora", "* SEARCH 1 2"),
        ("SEARCH FROM hello", "* SEARCH"),
        ("SEARCH BODY hello", "* SEARCH 1 2"),
        ("SEARCH NOT TEXT hello", "* SEARCH"),
    ] {
        let answer = fetch(&mut client, search.to_owned()).await;
        assert_eq!(answer.trim_end(), expected, "{search}");
    }
    // The MX's copy: from its summary, and as its bytes say.
    let summary = fetch(&mut client, format!("FETCH 1 ({items})")).await;
    let whole = fetch(&mut client, format!("FETCH 1 ({items} BODY.PEEK[])")).await;
    let answered = summary.strip_suffix(")\r\n").expect("one response");
    assert!(
        whole.starts_with(answered) && whole.contains("BODY[] {"),
        "the summary answers as the bytes do:\n{summary}\n{whole}"
    );
    // COPY keeps one for the copy.
    client.run("CREATE Kept").await;
    let (_, done) = client.run("COPY 1:2 Kept").await;
    assert!(done.contains(" OK "), "{done}");
    let all: Vec<tenants::MessageId> =
        messages(&app, &id, &app.login(&address, PASSWORD).await, "")
            .await
            .iter()
            .map(|m| tenants::MessageId(m["id"].as_str().unwrap().parse().unwrap()))
            .collect();
    assert_eq!(all.len(), 4);
    assert_eq!(summarized(all).await.len(), 4, "every copy has its summary");
}
