//! Synchronisation with a real client from Debian: `mbsync` (isync)
//! mirrors a mailbox of 1,000 messages delivered over SMTP to a local
//! Maildir, byte for byte, and then pushes flag changes, deletions and a
//! new message back; a third run finds nothing left to do.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{PASSWORD, TestApp};
use tenants::{Backend, on_both_backends};

on_both_backends!(
    mbsync_mirrors_a_thousand_messages_and_back,
    mbsync_sees_no_phantoms_when_a_mailbox_is_made_again,
);

const MESSAGES: usize = 1000;

fn mbsync(config: &Path) -> std::process::Output {
    std::process::Command::new("mbsync")
        .arg("-c")
        .arg(config)
        .arg("-a")
        .output()
        .expect("mbsync is installed (the test command installs isync)")
}

async fn try_mbsync(config: &Path) -> std::process::Output {
    let config = config.to_owned();
    tokio::task::spawn_blocking(move || mbsync(&config))
        .await
        .unwrap()
}

async fn run_mbsync(config: &Path) {
    let config = config.to_owned();
    let out = tokio::task::spawn_blocking(move || mbsync(&config))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "mbsync failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every message file of a Maildir folder, by file name.
fn maildir(folder: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["cur", "new"]
        .iter()
        .flat_map(|sub| {
            std::fs::read_dir(folder.join(sub))
                .map(|d| {
                    d.filter_map(|e| e.ok().map(|e| e.path()))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect();
    files.sort();
    files
}

fn message_id(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("a Message-ID in {text}"))
}

/// An mbsync configuration in `home` mirroring `address` into `home/mail`
/// with the channel options given; returns (config file, mail folder).
fn mbsync_config(home: &Path, app: &TestApp, address: &str, channel: &str) -> (PathBuf, PathBuf) {
    let mail = home.join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    let config = home.join("mbsyncrc");
    std::fs::write(
        &config,
        format!(
            "IMAPAccount caliop\nHost 127.0.0.1\nPort {port}\nUser {address}\nPass \"{PASSWORD}\"\nSSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore remote\nAccount caliop\n\n\
             MaildirStore local\nPath {mail}/\nInbox {mail}/INBOX\nSubFolders Verbatim\n\n\
             Channel sync\nFar :remote:\nNear :local:\n{channel}\nSyncState *\n",
            port = app.imap.port(),
            mail = mail.display(),
        ),
    )
    .unwrap();
    (config, mail)
}

/// What the API serves for each message of the INBOX, by Message-ID, with its flags.
async fn served(app: &TestApp, account: &str, token: &str) -> HashMap<String, (Vec<u8>, Value)> {
    let mut out = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("folder=inbox&limit=200&cursor={c}"),
            None => "folder=inbox&limit=200".to_owned(),
        };
        let page = app
            .get(&format!("/v1/accounts/{account}/messages?{query}"), token)
            .await;
        let page = page.ok(200).clone();
        for m in page["items"].as_array().unwrap() {
            let id = m["id"].as_str().unwrap();
            let raw = app
                .http
                .get(format!("{}/v1/messages/{id}/raw", app.base))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let bytes = raw.bytes().await.unwrap().to_vec();
            out.insert(message_id(&bytes), (bytes, m["flags"].clone()));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return out,
        }
    }
}

/// mbsync keeps Maildir files with the machine's line ends (LF); IMAP's are CRLF.
fn crlf(lf: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lf.len() + lf.len() / 20);
    for &b in lf {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// mbsync writes an `X-TUID` line into the header of every message it
/// copies (its own marker to find the copy again); everything else is kept.
fn without_tuid(message: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(message);
    let end = text.find("\r\n\r\n").map_or(text.len(), |i| i + 2);
    let (header, body) = text.split_at(end);
    let header: String = header
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with("X-TUID: "))
        .collect();
    format!("{header}{body}").into_bytes()
}

fn maildir_flags(path: &Path) -> String {
    path.file_name()
        .unwrap()
        .to_string_lossy()
        .rsplit_once(":2,")
        .map(|(_, f)| f.to_owned())
        .unwrap_or_default()
}

fn with_flags(path: &Path, flags: &str) -> PathBuf {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let base = name
        .split_once(":2,")
        .map(|(b, _)| b.to_owned())
        .unwrap_or(name);
    let mut letters: Vec<char> = flags.chars().collect();
    letters.sort_unstable();
    letters.dedup();
    path.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("cur")
        .join(format!(
            "{base}:2,{}",
            letters.into_iter().collect::<String>()
        ))
}

async fn mbsync_mirrors_a_thousand_messages_and_back(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let id = app.user(&e, "bob").await;
    let address = "bob@acme.test";
    let token = app.login(address, PASSWORD).await;

    // 1,000 messages over SMTP, eight clients at a time.
    let mut originals: HashMap<String, Vec<u8>> = HashMap::new();
    let mut senders = tokio::task::JoinSet::new();
    for client in 0..8 {
        let smtp = app.smtp;
        senders.spawn(async move {
            let mut sent = Vec::new();
            for n in (client..MESSAGES).step_by(8) {
                let body = format!(
                    "Message {n}.\r\n{}",
                    "Lorem ipsum dolor sit amet.\r\n".repeat(n % 40)
                );
                let raw = support::message(
                    "alice@sender.test",
                    "bob@acme.test",
                    &format!("Number {n}"),
                    &body,
                );
                let reply = support::send_with_lettre(
                    smtp,
                    "alice@sender.test",
                    &["bob@acme.test"],
                    &raw,
                    false,
                )
                .await
                .expect("delivered");
                assert!(reply.is_positive());
                sent.push(raw);
            }
            sent
        });
    }
    while let Some(sent) = senders.join_next().await {
        for raw in sent.unwrap() {
            originals.insert(message_id(&raw), raw);
        }
    }
    assert_eq!(originals.len(), MESSAGES);

    let home = tempfile::tempdir().unwrap();
    let (config, mail) = mbsync_config(
        home.path(),
        &app,
        address,
        "Patterns INBOX\nCreate Both\nExpunge Both\nSync All",
    );

    // Down: every message, byte for byte.
    run_mbsync(&config).await;
    let inbox = mail.join("INBOX");
    let files = maildir(&inbox);
    assert_eq!(files.len(), MESSAGES, "every message is mirrored");
    let on_server = served(&app, &id, &token).await;
    assert_eq!(on_server.len(), MESSAGES);
    for file in &files {
        let local = without_tuid(&crlf(&std::fs::read(file).unwrap()));
        let key = message_id(&local);
        let (bytes, _) = &on_server[&key];
        assert_eq!(
            &local,
            bytes,
            "{} is the message the server holds",
            file.display()
        );
        // lettre ends DATA with CRLF . CRLF after the message's own last CRLF: one empty line more.
        let trim = |mut b: &[u8]| {
            while let Some(shorter) = b.strip_suffix(b"\r\n") {
                b = shorter;
            }
            b.to_vec()
        };
        assert!(
            trim(bytes).ends_with(&trim(&originals[&key])),
            "and that is what was delivered, behind the trace headers"
        );
    }

    // Back up: flags changed, ten messages deleted, one new message.
    let mut expected: HashMap<String, &str> = HashMap::new();
    for (n, file) in files.iter().enumerate() {
        let key = message_id(&std::fs::read(file).unwrap());
        let flags = match n {
            0..10 => "T",
            10..60 => "FS",
            60..200 => "S",
            200..210 => "R",
            _ => continue,
        };
        std::fs::rename(
            file,
            with_flags(file, &format!("{}{flags}", maildir_flags(file))),
        )
        .unwrap();
        expected.insert(key, flags);
    }
    let new_message = "From: <bob@acme.test>\nTo: <carol@example.test>\nSubject: Written offline\nDate: Thu, 26 Nov 2026 12:00:00 +0000\n\
                       Message-ID: <offline-1@acme.test>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\nÉcrit dans le train.\n";
    std::fs::write(
        inbox.join("new").join("1700000000.offline.local"),
        new_message,
    )
    .unwrap();
    run_mbsync(&config).await;

    let on_server = served(&app, &id, &token).await;
    assert_eq!(
        on_server.len(),
        MESSAGES - 10 + 1,
        "ten expunged, one appended"
    );
    for (key, flags) in &expected {
        let has = |name: &str| {
            on_server
                .get(key)
                .is_some_and(|(_, f)| f.as_array().unwrap().iter().any(|x| x == name))
        };
        match *flags {
            "T" => assert!(
                !on_server.contains_key(key),
                "{key} was deleted and expunged"
            ),
            "FS" => assert!(
                has("flagged") && has("seen"),
                "{key}: {:?}",
                on_server[key].1
            ),
            "S" => assert!(
                has("seen") && !has("flagged"),
                "{key}: {:?}",
                on_server[key].1
            ),
            "R" => assert!(
                has("answered") && !has("seen"),
                "{key}: {:?}",
                on_server[key].1
            ),
            _ => unreachable!(),
        }
    }
    let (appended, _) = &on_server["<offline-1@acme.test>"];
    assert_eq!(
        without_tuid(appended),
        crlf(new_message.as_bytes()),
        "the message written offline is stored as written"
    );

    // A third run: nothing to do, and the mirror still matches the server.
    run_mbsync(&config).await;
    let files = maildir(&inbox);
    assert_eq!(files.len(), MESSAGES - 10 + 1);
    for file in &files {
        let local = crlf(&std::fs::read(file).unwrap());
        let (bytes, flags) = &on_server[&message_id(&local)];
        assert_eq!(
            without_tuid(&local),
            without_tuid(bytes),
            "{}",
            file.display()
        );
        let seen = flags.as_array().unwrap().iter().any(|f| f == "seen");
        assert_eq!(
            maildir_flags(file).contains('S'),
            seen,
            "{}: {flags}",
            file.display()
        );
    }
}

/// Issue 21: a mailbox deleted and made again under the same name, within
/// the same second, used to get the same UIDVALIDITY: mbsync then took the
/// new mailbox's UID 1 for the old message it had (a phantom) and never
/// fetched the new one. Now the UIDVALIDITY differs, and the mirror
/// holds what the server holds, nothing of the old mailbox.
async fn mbsync_sees_no_phantoms_when_a_mailbox_is_made_again(backend: Backend) {
    use mail::imap_probe::ImapProbe;
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    app.user(&e, "dan").await;
    let address = "dan@acme.test";
    let (mut imap, _) = ImapProbe::connect(app.imap).await;
    imap.login(address, PASSWORD).await;
    let append = |id: &str| {
        let message = format!(
            "From: a@sender.test\r\nTo: dan@acme.test\r\nSubject: {id}\r\nMessage-ID: <{id}@sender.test>\r\n\r\nBody of {id}.\r\n"
        );
        format!("APPEND Projects {{{}+}}\r\n{message}", message.len())
    };
    let (_, done) = imap.run("CREATE Projects").await;
    assert!(done.contains(" OK"), "{done}");
    for id in ["old-1", "old-2", "old-3"] {
        let (_, done) = imap.run(&append(id)).await;
        assert!(done.contains(" OK"), "{done}");
    }

    let home = tempfile::tempdir().unwrap();
    let (config, mail) = mbsync_config(
        home.path(),
        &app,
        address,
        "Patterns Projects\nCreate Near\nExpunge Near\nSync Pull",
    );
    run_mbsync(&config).await;
    let folder = mail.join("Projects");
    let ids = |folder: &Path| {
        let mut ids: Vec<String> = maildir(folder)
            .iter()
            .map(|f| message_id(&crlf(&std::fs::read(f).unwrap())))
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(
        ids(&folder),
        [
            "<old-1@sender.test>",
            "<old-2@sender.test>",
            "<old-3@sender.test>"
        ]
    );

    // Deleted and made again at once, with one new message at UID 1.
    let (_, done) = imap.run("DELETE Projects").await;
    assert!(done.contains(" OK"), "{done}");
    let (_, done) = imap.run("CREATE Projects").await;
    assert!(done.contains(" OK"), "{done}");
    let (_, done) = imap.run(&append("new-1")).await;
    assert!(
        done.contains(" OK") && done.contains(" 1]"),
        "UID 1 again: {done}"
    );

    let out = try_mbsync(&config).await;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "mbsync after the mailbox was made again: {:?}\n{said}",
        out.status
    );
    // mbsync sees the new UIDVALIDITY and refuses to pair the new UID 1
    // with the old message (with the old one it kept old-1 as if it were
    // UID 1, dropped the others and never fetched new-1).
    assert!(
        !out.status.success() && said.contains("UIDVALIDITY genuinely changed"),
        "mbsync was not told the mailbox is another one: {said}"
    );
    assert!(
        !ids(&folder).contains(&"<new-1@sender.test>".to_owned()),
        "nothing was paired by UID across the two mailboxes"
    );
    // Its state reset, as its error asks, it mirrors the new mailbox only.
    std::fs::remove_dir_all(&folder).unwrap();
    for entry in std::fs::read_dir(&mail).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".mbsyncstate")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    run_mbsync(&config).await;
    assert_eq!(ids(&folder), ["<new-1@sender.test>"]);
}
