//! Keys the server can never open (issue 18), against the real binary: an
//! account made before device sign-in moves on its first `caliop login`
//! (its password hash and password-locked key leave the database), `caliop
//! key unlock` gives GnuPG a key that opens mail sealed on arrival, and
//! mail clients sign in with app passwords only, which stop at once when
//! revoked. An account an administrator makes (or resets) without a
//! password gets an activation link, opened by `caliop activate` on the
//! user's machine: the server never holds its key unlocked after making it.

mod common;

use std::process::Command;

use common::{BIN, Caliop, PASSWORD, field, gpg, gpg_home, mailbox};
use mail::imap_probe::ImapProbe;
use mail::probe::{SmtpProbe, auth_plain};
use serde_json::json;
use tenants::{AccountId, Backend, on_both_backends};

on_both_backends!(an_old_account_moves_its_key_to_the_device);
on_both_backends!(an_account_made_without_a_password_opens_with_its_link);
on_both_backends!(everything_the_server_holds_and_a_captured_sign_in_open_no_key);

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

/// Mail from outside to `to`, through the MX, with `marker` in its body.
async fn deliver(caliop: &Caliop, to: &str, marker: &str) {
    let mut mx = SmtpProbe::connect(caliop.smtp).await;
    mx.cmd("EHLO sender.test").await;
    mx.expect("MAIL FROM:<a@sender.test>", 250, "2.1.0").await;
    mx.expect(&format!("RCPT TO:<{to}>"), 250, "2.1.5").await;
    mx.expect("DATA", 354, "").await;
    mx.send(
        format!("From: <a@sender.test>\r\nTo: <{to}>\r\nSubject: news\r\n\r\n{marker}\r\n.\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(mx.read_reply().await.0, 250);
}

/// The store the served instance uses, opened beside it.
async fn store_of(env: &[(String, String)]) -> tenants::Store {
    let url = &env
        .iter()
        .find(|(k, _)| k == "CALIOP_DATABASE_URL")
        .unwrap()
        .1;
    tenants::Store::connect(url, 2).await.unwrap()
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
    deliver(&caliop, "user@acme.test", marker).await;

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
    let store = store_of(&env).await;
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

/// Every file under `dir`, read.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((path, bytes));
        }
    }
    found
}

async fn an_account_made_without_a_password_opens_with_its_link(backend: Backend) {
    let data = tempfile::tempdir().unwrap();
    let dns = mail::dns_server::DnsServer::start().await.unwrap();
    let env = common::environment(backend, data.path(), dns.addr()).await;
    let caliop = common::serve(env.clone(), data.path().join("caliop.log")).await;
    let admin_id = mailbox(&caliop, "sealed").await;
    let admin = common::user_token(&caliop).await;
    let (_, _, me) = caliop
        .get(&format!("/v1/accounts/{admin_id}"), &admin)
        .await;
    let tenant = field(&me, "tenant_id");

    // The administrator makes the account without a password: a link.
    let (status, _, made) = caliop
        .post(
            &format!("/v1/tenants/{tenant}/accounts"),
            Some(&admin),
            json!({"address": "new@acme.test", "display_name": "New Hire", "level": "sealed"}),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let account = field(&made, "id");
    let link = field(&made["activation"], "url");
    assert!(link.starts_with("https://"), "{link}");
    let secret = link.rsplit_once('#').unwrap().1.to_owned();
    // Listing the account again shows no link: it is given once.
    let (_, _, again) = caliop.get(&format!("/v1/accounts/{account}"), &admin).await;
    assert!(again.get("activation").is_none(), "{again}");

    // Mail arriving before the link is opened is sealed to the account's key.
    let marker = "your-first-day-starts-at-nine";
    deliver(&caliop, "new@acme.test", marker).await;

    // What the server holds: no password of any kind, the key locked for
    // the link only; nobody signs in before the link is opened.
    let store = store_of(&env).await;
    let id = AccountId(account.parse().unwrap());
    let held = store.account(id).await.unwrap().unwrap();
    assert_eq!(held.password_hash, "");
    assert!(held.secret_key.starts_with("caliop-key-v1:"));
    assert!(store.opaque_registration(id).await.unwrap().is_none());
    let (ok, _, err) = client(&caliop, &["login", "new@acme.test"], "any password at all");
    assert!(!ok && err.contains("wrong address or password"), "{err}");
    // The link's secret, and the key it opens, are written nowhere here.
    let key_encryption = vault::opaque::Activation::parse(&secret).unwrap();
    let plain_key = key_encryption.unlock(&held.secret_key).unwrap();
    let body = plain_key
        .lines()
        .filter(|l| !l.starts_with("-----") && !l.is_empty() && !l.starts_with('='))
        .nth(2)
        .unwrap()
        .to_owned();
    for (path, bytes) in files_under(data.path()) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(&secret),
            "the link's secret is in {}",
            path.display()
        );
        assert!(
            !text.contains(&body),
            "the unlocked key is in {}",
            path.display()
        );
    }

    // The link opens on the user's machine, once.
    let password = "the new hire's own passphrase";
    let activate = |link: &str| {
        client_with(
            &caliop,
            &["activate", link],
            &[("CALIOP_NEW_PASSWORD", password)],
        )
    };
    let (ok, _, err) = activate(&link);
    assert!(ok, "{err}");
    assert!(err.contains("new@acme.test is activated"), "{err}");
    let (ok, _, err) = activate(&link);
    assert!(!ok && err.contains("unknown, used or expired"), "{err}");
    let held = store.account(id).await.unwrap().unwrap();
    assert!(store.opaque_registration(id).await.unwrap().is_some());
    assert!(held.secret_key.starts_with("caliop-key-v1:"));
    assert!(
        key_encryption.unlock(&held.secret_key).is_err(),
        "the link no longer opens the key"
    );

    // The new password signs in and unlocks the key on this machine, and
    // GnuPG opens the mail sealed before the account was activated.
    let key_file = data.path().join("new.asc");
    let (ok, _, err) = client(
        &caliop,
        &[
            "key",
            "unlock",
            "new@acme.test",
            "--out",
            key_file.to_str().unwrap(),
        ],
        password,
    );
    assert!(ok, "{err}");
    let home = gpg_home();
    let (ok, _, err) = gpg(
        home.path(),
        &["--import"],
        &std::fs::read(&key_file).unwrap(),
    );
    assert!(ok, "{err}");
    let (ok, token, err) = client(&caliop, &["login", "new@acme.test"], password);
    assert!(ok, "{err}");
    let token = token.trim().to_owned();
    let (status, _, listed) = caliop
        .get(&format!("/v1/accounts/{account}/messages"), &token)
        .await;
    assert_eq!(status, 200, "{listed}");
    let raw = common::raw(&caliop, &token, &field(&listed["items"][0], "id")).await;
    assert!(
        !String::from_utf8_lossy(&raw).contains(marker),
        "stored sealed"
    );
    let (ok, clear, err) = gpg(home.path(), &["--decrypt"], armored(&raw));
    assert!(ok, "{err}");
    assert!(String::from_utf8_lossy(&clear).contains(marker));

    // The password is lost: the administrator makes a new link. A new key
    // pair; every sign-in of the account ends; the old key, locked as it
    // was, stays for its owner.
    let before = store.account(id).await.unwrap().unwrap();
    let (status, _, relinked) = caliop
        .post(
            &format!("/v1/accounts/{account}/activation"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{relinked}");
    let (status, _, _) = caliop.get(&format!("/v1/accounts/{account}"), &token).await;
    assert_eq!(status, 401, "the old token ended");
    let (ok, _, _) = client(&caliop, &["login", "new@acme.test"], password);
    assert!(!ok, "the old password signs in no more");
    // An administrator cannot reset themselves this way, nor a user anyone.
    let (status, _, _) = caliop
        .post(
            &format!("/v1/accounts/{admin_id}/activation"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(status, 403);
    let (ok, _, err) = client_with(
        &caliop,
        &["activate", &field(&relinked, "url")],
        &[("CALIOP_NEW_PASSWORD", "a passphrase after the reset")],
    );
    assert!(ok, "{err}");
    let (ok, token, err) = client(
        &caliop,
        &["login", "new@acme.test"],
        "a passphrase after the reset",
    );
    assert!(ok, "{err}");
    let after = store.account(id).await.unwrap().unwrap();
    assert_ne!(after.fingerprint, before.fingerprint, "a new key pair");
    let (status, _, previous) = caliop
        .get(
            &format!("/v1/accounts/{account}/previous-secret-key"),
            token.trim(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        previous.as_str(),
        Some(before.secret_key.as_str()),
        "the old key, locked as it was"
    );

    // A reset link (as the recovery address would receive, its token made
    // here as the mail worker would), opened with `caliop password reset`.
    let reset = async |token: &str, env: &[(&str, &str)]| {
        store
            .create_password_reset(
                id,
                &billing::token_hash(token),
                chrono::Utc::now() + chrono::Duration::minutes(30),
            )
            .await
            .unwrap();
        let link = format!("https://mail.example/reset#{token}");
        let (ok, _, err) = client_with(&caliop, &["password", "reset", &link], env);
        assert!(ok, "{err}");
        err
    };
    // With the old password the key stays.
    let said = reset(
        "a-reset-token-the-worker-would-mail",
        &[
            ("CALIOP_PASSWORD", "a passphrase after the reset"),
            ("CALIOP_NEW_PASSWORD", "a passphrase from the reset link"),
        ],
    )
    .await;
    assert!(
        said.contains("its key is locked with the new one"),
        "{said}"
    );
    let kept = store.account(id).await.unwrap().unwrap();
    assert_eq!(kept.fingerprint, after.fingerprint, "the same key");
    assert_eq!(kept.password_hash, "", "no password reached the server");
    let (ok, _, err) = client(
        &caliop,
        &["login", "new@acme.test"],
        "a passphrase from the reset link",
    );
    assert!(ok, "{err}");
    // Without the old password: a new key pair, made on this machine.
    let said = reset(
        "a-second-reset-token",
        &[("CALIOP_NEW_PASSWORD", "the passphrase after losing it all")],
    )
    .await;
    assert!(said.contains("a new key pair was made here"), "{said}");
    let replaced = store.account(id).await.unwrap().unwrap();
    assert_ne!(replaced.fingerprint, kept.fingerprint);
    let (ok, _, err) = client(
        &caliop,
        &["login", "new@acme.test"],
        "the passphrase after losing it all",
    );
    assert!(ok, "{err}");
    store.close().await;
}

/// The base64url (or plain) forms a secret might be stored in, decoded.
fn decodings(text: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    let mut out = vec![text.as_bytes().to_vec()];
    for engine in [
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
    ] {
        if let Ok(bytes) = engine.decode(text.trim().trim_end_matches('=')) {
            out.push(bytes);
        }
    }
    out
}

async fn everything_the_server_holds_and_a_captured_sign_in_open_no_key(backend: Backend) {
    let data = tempfile::tempdir().unwrap();
    let dns = mail::dns_server::DnsServer::start().await.unwrap();
    let env = common::environment(backend, data.path(), dns.addr()).await;
    let caliop = common::serve(env.clone(), data.path().join("caliop.log")).await;
    let account = mailbox(&caliop, "sealed").await;
    let (ok, _, err) = client(&caliop, &["login", "user@acme.test"], PASSWORD);
    assert!(ok, "{err}");

    // A full capture of one sign-in: every request and answer body.
    let mut captured: Vec<String> = Vec::new();
    let (state, ke1) = vault::opaque::client_login_start(PASSWORD).unwrap();
    let start = json!({"username": "user@acme.test", "credential_request": ke1});
    let (status, _, started) = caliop
        .post("/v1/auth/opaque/login/start", None, start.clone())
        .await;
    assert_eq!(status, 200, "{started}");
    let ksf: vault::opaque::KsfParams = serde_json::from_value(started["ksf"].clone()).unwrap();
    let (ke3, export) = vault::opaque::client_login_finish(
        state,
        PASSWORD,
        &field(&started, "credential_response"),
        &ksf,
    )
    .unwrap();
    let finish = json!({"login_id": started["login_id"], "credential_finalization": ke3});
    let (status, _, finished) = caliop
        .post("/v1/auth/opaque/login/finish", None, finish.clone())
        .await;
    assert_eq!(status, 200, "{finished}");
    captured.extend(
        [start, started, finish, finished]
            .iter()
            .map(|v| v.to_string()),
    );

    // Everything the server holds: its data directory (the database file
    // and the master key among it), the account's row, and the tenant's
    // OPAQUE secrets opened with that master key.
    let store = store_of(&env).await;
    let id = AccountId(account.parse().unwrap());
    let held = store.account(id).await.unwrap().unwrap();
    let registration = store.opaque_registration(id).await.unwrap().unwrap();
    let master = vault::at_rest::MasterKey::load(data.path()).unwrap();
    let sealed_setup = store
        .opaque_setup(held.tenant_id, || unreachable!("made at the first sign-in"))
        .await
        .unwrap();
    let setup = master
        .open_secret(
            &vault::opaque::setup_context(&held.tenant_id),
            &sealed_setup,
        )
        .unwrap();
    let mut candidates: Vec<Vec<u8>> = vec![setup.clone()];
    for text in captured.iter().chain([
        &registration.record,
        &registration.ksf,
        &held.secret_key,
        &sealed_setup,
    ]) {
        candidates.extend(decodings(text));
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
            for field in value.as_object().into_iter().flat_map(|o| o.values()) {
                if let Some(s) = field.as_str() {
                    candidates.extend(decodings(s));
                }
            }
        }
    }
    for (_, bytes) in files_under(data.path()) {
        candidates.push(bytes);
    }
    let locked = &held.secret_key;
    let needle = export.bytes();
    for candidate in &candidates {
        assert!(
            !candidate.windows(needle.len()).any(|w| w == needle),
            "the export key is among what the server holds"
        );
        assert!(
            !candidate
                .windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes()),
            "the password is among what the server holds"
        );
        // Taken for an export key, whole or its first 64 bytes: opens nothing.
        for key in [candidate.as_slice(), &candidate[..candidate.len().min(64)]] {
            assert!(
                vault::opaque::ExportKey::from_bytes(key)
                    .unwrap(locked)
                    .is_err()
            );
        }
    }
    // What remains is guessing: every guess runs the whole protocol against
    // the record and the opened secrets. Wrong guesses open nothing; the
    // password (the control) does.
    let guess = |password: &str| {
        let (state, ke1) = vault::opaque::client_login_start(password).unwrap();
        let record = decodings(&registration.record).pop().unwrap();
        let (ke2, _) =
            vault::opaque::login_start(&setup, Some(&record), &ke1, account.as_bytes()).unwrap();
        vault::opaque::client_login_finish(state, password, &ke2, &ksf)
            .ok()
            .and_then(|(_, export)| export.unwrap(locked).ok())
    };
    for wrong in ["password", PASSWORD.to_uppercase().as_str(), &PASSWORD[1..]] {
        assert!(guess(wrong).is_none(), "{wrong}");
    }
    assert!(guess(PASSWORD).is_some_and(|k| k.contains("PGP PRIVATE KEY BLOCK")));
    store.close().await;
}
