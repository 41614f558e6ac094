//! Keys the server can never open (issue 18), against the real binary: an
//! account made before device sign-in moves on its first `caliop login`
//! (its password hash and password-locked key leave the database), `caliop
//! key unlock` gives GnuPG a key that opens mail sealed on arrival, and
//! mail clients sign in with app passwords only, which stop at once when
//! revoked.

mod common;

use std::process::Command;

use common::{BIN, Caliop, PASSWORD, field, gpg, gpg_home, mailbox};
use mail::imap_probe::ImapProbe;
use mail::probe::{SmtpProbe, auth_plain};
use serde_json::json;
use tenants::{AccountId, Backend, on_both_backends};

on_both_backends!(an_old_account_moves_its_key_to_the_device);

/// Runs `caliop ARGS` as a user would, the password on its environment.
fn client(caliop: &Caliop, args: &[&str], password: &str) -> (bool, String, String) {
    client_with(caliop, args, &[("CALIOP_PASSWORD", password)])
}

fn client_with(caliop: &Caliop, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .args(["--api", &caliop.base])
        .envs(env.iter().copied())
        .env_remove("CALIOP_NEW_PASSWORD")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `caliop key unlock` into `out`, signed in with `password`; its stderr on failure.
fn unlock_key(caliop: &Caliop, password: &str, out: &std::path::Path) -> Result<(), String> {
    let args = [
        "key",
        "unlock",
        "user@acme.test",
        "--out",
        out.to_str().unwrap(),
    ];
    match client(caliop, &args, password) {
        (true, _, _) => Ok(()),
        (false, _, err) => Err(err),
    }
}

fn armored(message: &[u8]) -> &[u8] {
    let text = std::str::from_utf8(message).unwrap();
    let start = text.find("-----BEGIN PGP MESSAGE-----").expect("PGP/MIME");
    let end = text.find("-----END PGP MESSAGE-----").unwrap() + "-----END PGP MESSAGE-----".len();
    &message[start..end]
}

/// A registration of `password` with `token` alone (no current password, no
/// proof of it), as a thief holding only a token would try: the answer.
async fn thief_registers(
    caliop: &Caliop,
    token: &str,
    account: &str,
    password: &str,
) -> (u16, serde_json::Value) {
    let (state, request) = vault::opaque::client_register_start(password).unwrap();
    let (status, _, started) = caliop
        .post(
            &format!("/v1/accounts/{account}/opaque/register/start"),
            Some(token),
            json!({"registration_request": request}),
        )
        .await;
    assert_eq!(status, 200, "{started}");
    let ksf = vault::opaque::KsfParams::default();
    let (record, export) = vault::opaque::client_register_finish(
        state,
        password,
        started["registration_response"].as_str().unwrap(),
        &ksf,
    )
    .unwrap();
    let (status, _, answer) = caliop
        .post(
            &format!("/v1/accounts/{account}/opaque/register/finish"),
            Some(token),
            json!({"registration_record": record, "ksf": ksf,
                   "locked_key": export.wrap("not the key").unwrap()}),
        )
        .await;
    (status, answer)
}

async fn an_old_account_moves_its_key_to_the_device(backend: Backend) {
    let data = tempfile::tempdir().unwrap();
    let dns = mail::dns_server::DnsServer::start().await.unwrap();
    let mut env = common::environment(backend, data.path(), dns.addr()).await;
    // The story makes several failed sign-ins on purpose.
    env.push(("CALIOP_API_LOGIN_FAILURES_PER_ADDRESS".into(), "20".into()));
    // The default the other stories turn off: mail doors take app passwords only.
    env.push(("CALIOP_API_MAIL_ACCOUNT_PASSWORDS".into(), "false".into()));
    let caliop = common::serve(env.clone(), data.path().join("caliop.log")).await;
    let account = mailbox(&caliop, "sealed").await;

    // Mail sealed on arrival, before anything moves.
    let marker = "the-board-meets-on-thursday";
    let mut mx = SmtpProbe::connect(caliop.smtp).await;
    mx.cmd("EHLO sender.test").await;
    mx.expect("MAIL FROM:<a@sender.test>", 250, "2.1.0").await;
    mx.expect("RCPT TO:<user@acme.test>", 250, "2.1.5").await;
    mx.expect("DATA", 354, "").await;
    mx.send(
        format!("From: <a@sender.test>\r\nTo: <user@acme.test>\r\nSubject: board\r\n\r\n{marker}\r\n.\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(mx.read_reply().await.0, 250);

    // Mail clients sign in with app passwords only: the account's password
    // opens no mail door, even before the account moves to device sign-in.
    let (mut imap, _) = ImapProbe::connect(caliop.imap).await;
    let (_, done) = imap
        .run(&format!("LOGIN user@acme.test \"{PASSWORD}\""))
        .await;
    assert!(done.contains("NO [AUTHENTICATIONFAILED]"), "{done}");
    assert!(done.contains("app password"), "{done}");

    // A wrong password is found out on the device and moves nothing.
    let (ok, _, err) = client(&caliop, &["login", "user@acme.test"], "not the password");
    assert!(!ok && err.contains("wrong address or password"), "{err}");

    // A token alone (stolen, say) cannot move the account to a password of
    // its own: the move needs the account's password once more.
    let (status, _, legacy) = caliop
        .post(
            "/v1/auth/token",
            None,
            json!({"grant_type": "password", "username": "user@acme.test", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{legacy}");
    let legacy = field(&legacy, "access_token");
    let (status, refused) = thief_registers(&caliop, &legacy, &account, "the thief's").await;
    assert_eq!(status, 403, "{refused}");
    assert!(
        field(&refused, "detail").contains("current_password"),
        "{refused}"
    );

    // The first sign-in through the client moves the key to the device.
    let (ok, token, err) = client(&caliop, &["login", "user@acme.test"], PASSWORD);
    assert!(ok, "{err}");
    assert!(
        err.contains("moving user@acme.test to device sign-in"),
        "{err}"
    );
    let token = token.trim().to_owned();
    let (status, _, me) = caliop.get(&format!("/v1/accounts/{account}"), &token).await;
    assert_eq!(status, 200, "{me}");

    // What the server holds now: no password hash, no password-locked key,
    // the key locked with what only the device derives.
    let url = env
        .iter()
        .find(|(k, _)| k == "CALIOP_DATABASE_URL")
        .unwrap()
        .1
        .clone();
    let store = tenants::Store::connect(&url, 2).await.unwrap();
    let id = AccountId(account.parse().unwrap());
    let held = store.account(id).await.unwrap().unwrap();
    assert_eq!(held.password_hash, "", "the password hash is gone");
    assert!(
        held.secret_key.starts_with("caliop-key-v1:"),
        "{}",
        &held.secret_key[..40]
    );
    assert!(!held.secret_key.contains("PGP PRIVATE KEY"));
    assert!(store.opaque_registration(id).await.unwrap().is_some());
    store.close().await;

    // The password itself now opens no door of the server's checking: not
    // the password grant, not IMAP, not submission.
    let (status, _, _) = caliop
        .post(
            "/v1/auth/token",
            None,
            json!({"grant_type": "password", "username": "user@acme.test", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 401);
    let (mut imap, _) = ImapProbe::connect(caliop.imap).await;
    let (_, done) = imap
        .run(&format!("LOGIN user@acme.test \"{PASSWORD}\""))
        .await;
    assert!(
        done.contains("NO [AUTHENTICATIONFAILED]") && done.contains("app password"),
        "{done}"
    );
    let mut submission = SmtpProbe::connect(caliop.submission).await;
    submission.cmd("EHLO client.test").await;
    let refused = submission
        .expect(
            &format!("AUTH PLAIN {}", auth_plain("user@acme.test", PASSWORD)),
            535,
            "5.7.8",
        )
        .await;
    assert!(refused.contains("app password"), "{refused}");

    // The key, unlocked on this machine, opens the sealed mail in GnuPG.
    let key_file = data.path().join("user.asc");
    unlock_key(&caliop, PASSWORD, &key_file).unwrap();
    let home = gpg_home();
    let (ok, _, err) = gpg(
        home.path(),
        &["--import"],
        &std::fs::read(&key_file).unwrap(),
    );
    assert!(ok, "{err}");
    let (status, _, listed) = caliop
        .get(&format!("/v1/accounts/{account}/messages"), &token)
        .await;
    assert_eq!(status, 200, "{listed}");
    let message = field(&listed["items"][0], "id");
    let raw = common::raw(&caliop, &token, &message).await;
    assert!(
        !String::from_utf8_lossy(&raw).contains(marker),
        "stored sealed"
    );
    let (ok, clear, err) = gpg(home.path(), &["--decrypt"], armored(&raw));
    assert!(
        ok,
        "gpg opens it with the key unlocked on the device: {err}"
    );
    assert!(String::from_utf8_lossy(&clear).contains(marker));

    // Mail clients: an app password, shown once.
    let (status, _, made) = caliop
        .post(
            &format!("/v1/accounts/{account}/app-passwords"),
            Some(&token),
            json!({"name": "Thunderbird at home"}),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let secret = field(&made, "secret");
    let app_id = field(&made["app_password"], "id");
    let (mut imap, _) = ImapProbe::connect(caliop.imap).await;
    imap.login("user@acme.test", &secret).await;
    let mut submission = SmtpProbe::connect(caliop.submission).await;
    submission.cmd("EHLO client.test").await;
    submission
        .expect(
            &format!("AUTH PLAIN {}", auth_plain("user@acme.test", &secret)),
            235,
            "2.7.0",
        )
        .await;
    // Real clients: Python's imaplib and smtplib, and mbsync (isync).
    let python = std::env::var("CALIOP_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = "import imaplib, smtplib, sys\n\
        host, imap_port, smtp_port, user, password = sys.argv[1:]\n\
        i = imaplib.IMAP4(host, int(imap_port)); i.login(user, password); i.select('INBOX'); i.logout()\n\
        s = smtplib.SMTP(host, int(smtp_port)); s.ehlo('client.test'); s.login(user, password)\n\
        s.sendmail(user, [user], b'From: <' + user.encode() + b'>\\r\\nTo: <' + user.encode() + b'>\\r\\nSubject: from smtplib\\r\\n\\r\\nhello\\r\\n'); s.quit()\n";
    let run = |password: &str| {
        Command::new(&python)
            .args(["-c", script, "127.0.0.1"])
            .arg(caliop.imap.port().to_string())
            .arg(caliop.submission.port().to_string())
            .args(["user@acme.test", password])
            .output()
            .unwrap()
    };
    let out = run(&secret);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(PASSWORD);
    assert!(
        !out.status.success(),
        "the account password opens no mail door"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("app password"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mail_home = tempfile::tempdir().unwrap();
    let config = mail_home.path().join("mbsyncrc");
    std::fs::create_dir_all(mail_home.path().join("Mail")).unwrap();
    std::fs::write(
        &config,
        format!(
            "IMAPAccount caliop\nHost 127.0.0.1\nPort {}\nUser user@acme.test\nPass \"{secret}\"\nSSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore remote\nAccount caliop\n\n\
             MaildirStore local\nPath {}/Mail/\nInbox {}/Mail/INBOX\nSubFolders Verbatim\n\n\
             Channel all\nFar :remote:\nNear :local:\nPatterns INBOX\nCreate Near\nSync Pull\nSyncState *\n",
            caliop.imap.port(),
            mail_home.path().display(),
            mail_home.path().display()
        ),
    )
    .unwrap();
    let out = Command::new("mbsync")
        .args(["-c", config.to_str().unwrap(), "-a"])
        .env("HOME", mail_home.path())
        .output()
        .expect("mbsync is installed (the test command installs isync)");
    assert!(
        out.status.success(),
        "mbsync with the app password: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pulled = std::fs::read_dir(mail_home.path().join("Mail/INBOX/cur"))
        .unwrap()
        .count()
        + std::fs::read_dir(mail_home.path().join("Mail/INBOX/new"))
            .unwrap()
            .count();
    assert!(pulled >= 1, "mbsync pulled the mailbox");

    let (status, _, listed) = caliop
        .get(&format!("/v1/accounts/{account}/app-passwords"), &token)
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["items"][0]["name"], "Thunderbird at home");
    assert!(listed["items"][0]["last_used_at"].is_string(), "{listed}");
    assert!(!listed.to_string().contains(&secret), "never listed again");

    // Revoked: the open IMAP session ends at once, and it opens nothing more.
    let (status, _, revoked) = caliop
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/accounts/{account}/app-passwords/{app_id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 204, "{revoked}");
    let rest = imap.until_closed().await;
    assert!(rest.contains("* BYE"), "{rest}");
    let (mut imap, _) = ImapProbe::connect(caliop.imap).await;
    let (_, done) = imap
        .run(&format!("LOGIN user@acme.test \"{secret}\""))
        .await;
    assert!(done.contains("NO [AUTHENTICATIONFAILED]"), "{done}");

    // A password change: a stolen token alone cannot make one (it needs a
    // sign-in with the current password), the client can.
    let (ok, token, err) = client(&caliop, &["login", "user@acme.test"], PASSWORD);
    assert!(ok, "{err}");
    let token = token.trim().to_owned();
    let (status, refused) = thief_registers(&caliop, &token, &account, "stolen token").await;
    assert_eq!(status, 403, "{refused}");
    assert!(field(&refused, "detail").contains("current_password_proof"));
    let new_password = "a new and longer passphrase";
    let (ok, _, err) = client_with(
        &caliop,
        &["password", "change", "user@acme.test"],
        &[
            ("CALIOP_PASSWORD", PASSWORD),
            ("CALIOP_NEW_PASSWORD", new_password),
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = client(&caliop, &["login", "user@acme.test"], PASSWORD);
    assert!(!ok && err.contains("wrong address or password"), "{err}");
    let again = data.path().join("again.asc");
    unlock_key(&caliop, new_password, &again).unwrap();
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(&key_file).unwrap(),
        "the same key, locked with the new password"
    );

    // The password and the key-encryption secret reached neither the
    // database nor the logs.
    drop(caliop);
    let log = std::fs::read_to_string(data.path().join("caliop.log")).unwrap();
    assert!(!log.contains(PASSWORD));
    assert!(!log.contains(new_password));
    assert!(!log.contains(&secret));
    if backend == Backend::Sqlite {
        for entry in std::fs::read_dir(data.path()).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("caliop.db")
            {
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    !bytes
                        .windows(PASSWORD.len())
                        .any(|w| w == PASSWORD.as_bytes()),
                    "{}",
                    path.display()
                );
            }
        }
    }
}
