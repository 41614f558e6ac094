//! A hostile tenant at the mail doors of the real binary (issue 17): each
//! story drives `caliop serve` over SMTP, submission and IMAP sockets on
//! loopback, reproduces an attack found against an earlier build exactly as
//! it was described, and asserts it is now refused with its code. The API
//! halves of these stories live in `api/tests/hostile.rs`.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Caliop, PASSWORD, field, token};
use mail::imap_probe::ImapProbe;
use mail::probe::{SmtpProbe, auth_plain};
use serde_json::{Value, json};
use tenants::{Backend, on_both_backends};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

on_both_backends!(
    an_unverified_domain_opens_no_mail_door,
    sign_ins_are_counted_before_the_password_on_the_mail_doors,
    an_open_imap_session_ends_when_credentials_change,
    a_smuggled_second_message_is_never_stored,
    a_second_author_is_refused_on_the_submission_port,
    listeners_refuse_connections_past_their_cap,
    a_sender_reconnecting_at_its_cap_is_served,
    delivery_never_connects_to_private_networks,
);

/// The sign-in failures one address may have in a window.
const LIMIT: usize = 5;

/// `caliop serve` on `backend` with the sign-in limit these stories count
/// against, and `extra` settings on top.
async fn start(
    backend: Backend,
    extra: &[(&str, &str)],
) -> (Caliop, tempfile::TempDir, mail::dns_server::DnsServer) {
    let limit = LIMIT.to_string();
    let mut settings = vec![("CALIOP_API_LOGIN_FAILURES_PER_ADDRESS", limit.as_str())];
    settings.extend_from_slice(extra);
    common::start(backend, &settings).await
}

/// An enterprise whose domain the operator has verified, with its
/// administrator `admin@{domain}`; returns (tenant id, admin token).
async fn enterprise(caliop: &Caliop, operator: &str, domain: &str) -> (String, String) {
    let (status, _, tenant) = caliop
        .post(
            "/v1/tenants",
            Some(operator),
            json!({"name": domain, "kind": "enterprise",
                   "limits": {"max_accounts": 10, "max_domains": 2, "storage_quota_bytes": 1_000_000_000}}),
        )
        .await;
    assert_eq!(status, 201, "{tenant}");
    let tenant = field(&tenant, "id");
    let admin = format!("admin@{domain}");
    let (status, _, onboarded) = caliop
        .post(
            &format!("/v1/tenants/{tenant}/onboard"),
            Some(operator),
            json!({"domain": domain, "admin": {"address": admin, "password": PASSWORD}}),
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
    (tenant, token(caliop, &admin).await)
}

/// Makes `address` in `tenant`; returns its id.
async fn account(caliop: &Caliop, admin: &str, tenant: &str, address: &str, role: &str) -> String {
    let (status, _, made) = caliop
        .post(
            &format!("/v1/tenants/{tenant}/accounts"),
            Some(admin),
            json!({"address": address, "password": PASSWORD, "role": role}),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    field(&made, "id")
}

async fn held(caliop: &Caliop, token: &str, account: &str) -> Vec<Value> {
    let (status, _, listed) = caliop
        .get(&format!("/v1/accounts/{account}/messages"), token)
        .await;
    assert_eq!(status, 200, "{listed}");
    listed["items"].as_array().unwrap().clone()
}

/// Submission on its own connection, signed in as `address`.
async fn submit_as(caliop: &Caliop, address: &str) -> SmtpProbe {
    let mut probe = SmtpProbe::connect(caliop.submission).await;
    probe.cmd("EHLO client.test").await;
    probe
        .expect(
            &format!("AUTH PLAIN {}", auth_plain(address, PASSWORD)),
            235,
            "2.7.0",
        )
        .await;
    probe
}

/// Finding 1 at the mail doors: a tenant admin claims `victim.example`,
/// which nobody here hosts, and makes `ceo@victim.example`. The MX refuses
/// mail for it, submission and IMAP refuse its accounts, and mail that
/// another tenant's user submits to it is never delivered into the claim.
async fn an_unverified_domain_opens_no_mail_door(backend: Backend) {
    let (caliop, _data, _dns) = start(backend, &[]).await;
    let operator = caliop.operator_token();
    let (attacker, attacker_admin) = enterprise(&caliop, &operator, "attacker.test").await;
    let (status, _, claim) = caliop
        .post(
            &format!("/v1/tenants/{attacker}/domains"),
            Some(&attacker_admin),
            json!({"name": "victim.example"}),
        )
        .await;
    assert_eq!(status, 201, "{claim}");
    assert_eq!(claim["verified"], false);
    let ceo = account(
        &caliop,
        &attacker_admin,
        &attacker,
        "ceo@victim.example",
        "admin",
    )
    .await;
    account(
        &caliop,
        &attacker_admin,
        &attacker,
        "intern@victim.example",
        "user",
    )
    .await;

    // The MX: the claim is not ours.
    let mut mx = SmtpProbe::connect(caliop.smtp).await;
    mx.cmd("EHLO sender.test").await;
    mx.expect("MAIL FROM:<x@sender.test>", 250, "2.1.0").await;
    mx.expect("RCPT TO:<ceo@victim.example>", 550, "5.1.2")
        .await;

    // No account of the claim signs in at a mail door.
    for address in ["ceo@victim.example", "intern@victim.example"] {
        let mut submission = SmtpProbe::connect(caliop.submission).await;
        submission.cmd("EHLO client.test").await;
        let refused = submission
            .expect(
                &format!("AUTH PLAIN {}", auth_plain(address, PASSWORD)),
                535,
                "5.7.1",
            )
            .await;
        assert!(refused.contains("not verified"), "{address}: {refused}");
        let (mut imap, _) = ImapProbe::connect(caliop.imap).await;
        let (_, done) = imap.run(&format!("LOGIN {address} \"{PASSWORD}\"")).await;
        assert!(done.contains(" NO [AUTHORIZATIONFAILED]"), "{done}");
    }

    // Another tenant's user submits to the claim: accepted for the domain's
    // real MX (there is none here), never delivered into the claimant's box.
    let (globex, globex_admin) = enterprise(&caliop, &operator, "globex.test").await;
    account(&caliop, &globex_admin, &globex, "alice@globex.test", "user").await;
    let mut alice = submit_as(&caliop, "alice@globex.test").await;
    alice
        .expect("MAIL FROM:<alice@globex.test>", 250, "2.1.0")
        .await;
    alice
        .expect("RCPT TO:<ceo@victim.example>", 250, "2.1.5")
        .await;
    alice.expect("DATA", 354, "").await;
    alice
        .send(
            b"From: <alice@globex.test>\r\nTo: <ceo@victim.example>\r\nSubject: Board\r\n\r\nConfidential.\r\n.\r\n",
        )
        .await;
    let (code, text) = alice.read_reply().await;
    assert_eq!(code, 250, "{text}");
    assert!(!text.contains("delivered locally"), "{text}");
    // The delivery worker has had its chance to route it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ceo_token = token(&caliop, "ceo@victim.example").await;
    assert!(
        held(&caliop, &ceo_token, &ceo).await.is_empty(),
        "nothing reached the claim"
    );
}

/// Counts the answers of concurrent attempts: (refused as wrong, limited).
fn tally(answers: &[String], wrong: &str, limited: &str) -> (usize, usize) {
    let w = answers.iter().filter(|a| a.starts_with(wrong)).count();
    let l = answers.iter().filter(|a| a.starts_with(limited)).count();
    assert_eq!(w + l, answers.len(), "only those two answers: {answers:?}");
    (w, l)
}

async fn smtp_sign_in(caliop: &Caliop, from: IpAddr, address: &str, password: &str) -> String {
    let mut probe = SmtpProbe::connect_from(caliop.submission, from).await;
    probe.cmd("EHLO client.test").await;
    let (code, text) = probe
        .cmd(&format!("AUTH PLAIN {}", auth_plain(address, password)))
        .await;
    format!("{code} {text}")
}

async fn imap_sign_in(caliop: &Caliop, from: IpAddr, address: &str, password: &str) -> String {
    let (mut imap, _) = ImapProbe::connect_from(caliop.imap, from).await;
    let (_, done) = imap.run(&format!("LOGIN {address} \"{password}\"")).await;
    done.split_once(' ').unwrap().1.trim_end().to_owned()
}

/// Finding 4 at the mail doors: 60 parallel wrong passwords all got a plain
/// "wrong password" against a limit of 5. Now at most 5 do, the rest are
/// told to wait; and the owner, from the network it signed in from before,
/// still gets in while an attacker elsewhere has spent the address's budget.
async fn sign_ins_are_counted_before_the_password_on_the_mail_doors(backend: Backend) {
    let (caliop, _data, _dns) = start(backend, &[]).await;
    let operator = caliop.operator_token();
    let (acme, admin) = enterprise(&caliop, &operator, "acme.test").await;
    for user in ["smtp", "imap", "owner"] {
        account(&caliop, &admin, &acme, &format!("{user}@acme.test"), "user").await;
    }

    // Submission, from 127.0.2.0/24.
    let attempts = (0..60).map(|i| {
        let from = IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1 + (i % 200) as u8));
        let caliop = &caliop;
        async move { smtp_sign_in(caliop, from, "smtp@acme.test", "not the password").await }
    });
    let answers = futures_util::future::join_all(attempts).await;
    let (wrong, limited) = tally(&answers, "535 5.7.8", "454 4.7.0");
    assert!(wrong <= LIMIT, "{wrong} answered as wrong: {answers:?}");
    assert!(limited >= 60 - LIMIT, "{answers:?}");

    // IMAP, from 127.0.3.0/24.
    let attempts = (0..60).map(|i| {
        let from = IpAddr::V4(Ipv4Addr::new(127, 0, 3, 1 + (i % 200) as u8));
        let caliop = &caliop;
        async move { imap_sign_in(caliop, from, "imap@acme.test", "not the password").await }
    });
    let answers = futures_util::future::join_all(attempts).await;
    let (wrong, limited) = tally(&answers, "NO [AUTHENTICATIONFAILED]", "NO [UNAVAILABLE]");
    assert!(wrong <= LIMIT, "{wrong} answered as wrong: {answers:?}");
    assert!(limited >= 60 - LIMIT, "{answers:?}");

    // The owner signs in from home once; then an attacker spends the
    // address's shared budget from twenty other networks.
    let home = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let answer = imap_sign_in(&caliop, home, "owner@acme.test", PASSWORD).await;
    assert!(answer.starts_with("OK"), "{answer}");
    for i in 0..20 {
        let elsewhere = IpAddr::V4(Ipv4Addr::new(127, 9, i, 1));
        smtp_sign_in(&caliop, elsewhere, "owner@acme.test", "guess").await;
    }
    let stranger = IpAddr::V4(Ipv4Addr::new(127, 8, 0, 1));
    let answer = smtp_sign_in(&caliop, stranger, "owner@acme.test", PASSWORD).await;
    assert!(
        answer.starts_with("454 4.7.0"),
        "a new network shares the spent budget: {answer}"
    );
    let answer = imap_sign_in(&caliop, stranger, "owner@acme.test", PASSWORD).await;
    assert!(answer.starts_with("NO [UNAVAILABLE]"), "{answer}");
    let answer = smtp_sign_in(&caliop, home, "owner@acme.test", PASSWORD).await;
    assert!(
        answer.starts_with("235 2.7.0"),
        "the owner's network keeps its own: {answer}"
    );
    let answer = imap_sign_in(&caliop, home, "owner@acme.test", PASSWORD).await;
    assert!(answer.starts_with("OK"), "{answer}");
}

/// Finding 3 at IMAP: an open session outlived a password change, a
/// demotion and a suspension. Each now ends it at once, while it waits for
/// the client (between commands and in IDLE), with a BYE saying why.
async fn an_open_imap_session_ends_when_credentials_change(backend: Backend) {
    let (caliop, _data, _dns) = start(backend, &[]).await;
    let operator = caliop.operator_token();
    let (acme, admin) = enterprise(&caliop, &operator, "acme.test").await;
    let changes = [
        (
            "bob",
            json!({"password": "another long passphrase", "current_password": PASSWORD}),
            true,
        ),
        (
            "carol",
            json!({"password": "reset by the administrator"}),
            false,
        ),
        ("deputy", json!({"role": "user"}), false),
        ("dave", json!({"status": "suspended"}), false),
    ];
    for (name, change, by_owner) in changes {
        let address = format!("{name}@acme.test");
        let role = if name == "deputy" { "admin" } else { "user" };
        let id = account(&caliop, &admin, &acme, &address, role).await;
        let own = token(&caliop, &address).await;
        let (mut waiting, _) = ImapProbe::connect(caliop.imap).await;
        waiting.login(&address, PASSWORD).await;
        let (mut idling, _) = ImapProbe::connect(caliop.imap).await;
        idling.login(&address, PASSWORD).await;
        let (_, selected) = idling.run("SELECT INBOX").await;
        assert!(selected.contains(" OK "), "{selected}");
        idling.send_raw(b"i IDLE\r\n").await;
        assert!(idling.line().await.starts_with("+ "));

        let by = if by_owner { &own } else { &admin };
        let (status, _, updated) = caliop
            .call(
                reqwest::Method::PATCH,
                &format!("/v1/accounts/{id}"),
                Some(by),
                Some(change),
            )
            .await;
        assert_eq!(status, 200, "{name}: {updated}");
        // No command is sent: the server ends both sessions by itself.
        for session in [&mut waiting, &mut idling] {
            let rest = session.until_closed().await;
            assert!(
                rest.contains("* BYE the account's access changed"),
                "{name}: {rest}"
            );
        }
        let (status, _, _) = caliop.get(&format!("/v1/accounts/{id}"), &own).await;
        assert_eq!(status, 401, "{name}: the old token is over too");
    }
}

/// Reads one SMTP reply, continuation lines included; empty once closed.
async fn read_reply(conn: &mut BufReader<TcpStream>) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if conn.read_line(&mut line).await.unwrap_or(0) == 0 {
            return all;
        }
        all.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return all;
        }
    }
}

/// Sends `bytes` after the greeting and reads every reply until the server
/// closes (the bytes end with QUIT, or the server gives up on them).
async fn converse(server: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut conn = BufReader::new(TcpStream::connect(server).await.unwrap());
    let greeting = read_reply(&mut conn).await;
    assert!(greeting.starts_with("220 "), "{greeting}");
    conn.get_mut().write_all(bytes).await.unwrap();
    let mut replies = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut replies))
        .await
        .expect("the server answers and closes")
        .unwrap();
    String::from_utf8_lossy(&replies).into_owned()
}

/// Finding 10, SMTP smuggling: the MX took `<LF>.<LF>` as the end of DATA,
/// so what followed was read as a second transaction with a sender of the
/// attacker's choice. The raw bytes a relay that passes bare line breaks
/// would send, in each of their forms: one message or a refusal, never two.
async fn a_smuggled_second_message_is_never_stored(backend: Backend) {
    let (caliop, _data, _dns) = start(backend, &[]).await;
    let operator = caliop.operator_token();
    let (acme, admin) = enterprise(&caliop, &operator, "acme.test").await;
    let bob = account(&caliop, &admin, &acme, "bob@acme.test", "user").await;
    let bob_token = token(&caliop, "bob@acme.test").await;
    for end_of_data in ["\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r\n"] {
        let mut bytes = b"EHLO relay.sender.test\r\nMAIL FROM:<alice@sender.test>\r\n\
              RCPT TO:<bob@acme.test>\r\nDATA\r\n\
              From: <alice@sender.test>\r\nTo: <bob@acme.test>\r\nSubject: honest\r\n\r\nbody"
            .to_vec();
        bytes.extend_from_slice(end_of_data.as_bytes());
        bytes.extend_from_slice(
            b"MAIL FROM:<evil@ext.test>\r\nRCPT TO:<bob@acme.test>\r\nDATA\r\n\
              From: <ceo@acme.test>\r\nTo: <bob@acme.test>\r\nSubject: smuggled\r\n\r\n\
              Pay this invoice.\r\n.\r\nQUIT\r\n",
        );
        let replies = converse(caliop.smtp, &bytes).await;
        assert_eq!(
            replies.matches("stored as").count(),
            0,
            "{end_of_data:?}: {replies}"
        );
        assert!(
            replies.contains("521 5.5.2 bare <"),
            "{end_of_data:?}: refused, saying why: {replies}"
        );
    }
    assert!(held(&caliop, &bob_token, &bob).await.is_empty());

    // A bare LF in a command line is refused the same way.
    let replies = converse(
        caliop.smtp,
        b"EHLO relay.sender.test\r\nNOOP\nMAIL FROM:<evil@ext.test>\r\nQUIT\r\n",
    )
    .await;
    assert!(replies.contains("521 5.5.2 bare <LF>"), "{replies}");
    assert!(!replies.contains("2.1.0"), "{replies}");

    // BDAT's length ends a chunk: line breaks and dots inside it are
    // content, and smuggle nothing.
    let chunk = b"From: <alice@sender.test>\r\nTo: <bob@acme.test>\r\nSubject: chunked\r\n\r\n\
                  body\n.\nMAIL FROM:<evil@ext.test>\r\nRCPT TO:<bob@acme.test>\r\nDATA\r\n";
    let mut bytes =
        b"EHLO relay.sender.test\r\nMAIL FROM:<alice@sender.test>\r\nRCPT TO:<bob@acme.test>\r\n"
            .to_vec();
    bytes.extend_from_slice(format!("BDAT {} LAST\r\n", chunk.len()).as_bytes());
    bytes.extend_from_slice(chunk);
    bytes.extend_from_slice(b"QUIT\r\n");
    let replies = converse(caliop.smtp, &bytes).await;
    assert_eq!(replies.matches("stored as").count(), 1, "{replies}");
    assert!(replies.contains("221 2.0.0"), "{replies}");

    // Clean CRLF mail, with a stuffed dot, still arrives once.
    let replies = converse(
        caliop.smtp,
        b"EHLO relay.sender.test\r\nMAIL FROM:<alice@sender.test>\r\nRCPT TO:<bob@acme.test>\r\n\
          DATA\r\nFrom: <alice@sender.test>\r\nTo: <bob@acme.test>\r\nSubject: clean\r\n\r\n\
          a line\r\n..a stuffed dot\r\n.\r\nQUIT\r\n",
    )
    .await;
    assert_eq!(replies.matches("stored as").count(), 1, "{replies}");
    let messages = held(&caliop, &bob_token, &bob).await;
    let mut subjects: Vec<&str> = messages
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    subjects.sort();
    assert_eq!(subjects, ["chunked", "clean"], "{messages:?}");
}

/// Finding 7 at the submission port: a second `From:` header, or a `From:`
/// with two addresses, passed the ownership check and went out with
/// `auth=pass`. Each is refused with `550 5.7.1`, saying why.
async fn a_second_author_is_refused_on_the_submission_port(backend: Backend) {
    let (caliop, _data, _dns) = start(backend, &[]).await;
    let operator = caliop.operator_token();
    let (acme, admin) = enterprise(&caliop, &operator, "acme.test").await;
    account(&caliop, &admin, &acme, "alice@acme.test", "user").await;
    let forged = mail::probe::FORGED_AUTHORS;
    for (headers, why) in forged {
        let mut probe = submit_as(&caliop, "alice@acme.test").await;
        probe
            .expect("MAIL FROM:<alice@acme.test>", 250, "2.1.0")
            .await;
        probe
            .expect("RCPT TO:<bob@remote.test>", 250, "2.1.5")
            .await;
        probe.expect("DATA", 354, "").await;
        probe
            .send(
                format!(
                    "{headers}To: <bob@remote.test>\r\nSubject: Wire transfer\r\n\r\nPlease pay today.\r\n.\r\n"
                )
                .as_bytes(),
            )
            .await;
        let (code, text) = probe.read_reply().await;
        assert_eq!(code, 550, "{why}: {text}");
        assert!(text.starts_with("5.7.1") && text.contains(why), "{text}");
    }
}

/// The first line a new connection to `server` reads.
async fn first_line(server: std::net::SocketAddr) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let mut line = String::new();
    let mut reader = BufReader::new(&mut stream);
    tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
        .await
        .expect("an answer")
        .unwrap();
    (stream, line)
}

/// Finding 11: no cap on connections. Each listener of the binary serves
/// its cap and refuses the next with a reply that says why.
async fn listeners_refuse_connections_past_their_cap(backend: Backend) {
    let (caliop, _data, _dns) = start(
        backend,
        &[
            ("CALIOP_SMTP_MAX_CONNECTIONS", "2"),
            ("CALIOP_IMAP_MAX_CONNECTIONS", "2"),
        ],
    )
    .await;
    let doors = [
        (
            caliop.smtp,
            "220 ",
            "421 4.3.2 too many connections, try again later\r\n",
        ),
        (
            caliop.submission,
            "220 ",
            "421 4.3.2 too many connections, try again later\r\n",
        ),
        (
            caliop.imap,
            "* OK",
            "* BYE [UNAVAILABLE] too many connections, try again later\r\n",
        ),
    ];
    for (server, welcome, refusal) in doors {
        let (_first, line) = first_line(server).await;
        assert!(line.starts_with(welcome), "{line}");
        let (_second, line) = first_line(server).await;
        assert!(line.starts_with(welcome), "{line}");
        let (_third, line) = first_line(server).await;
        assert_eq!(line, refusal);
    }
}

/// Found while measuring (issue 24): a sender at its per-address cap that
/// closes a session and connects again at once (smtp-source, a relay with
/// one connection per message, a mail client reopening its IMAP
/// connection) was refused, the closed session still counted until the
/// server read its end. The new connection now waits a moment for that
/// place. Twenty rounds at a cap of one, on the MX and on IMAP.
async fn a_sender_reconnecting_at_its_cap_is_served(backend: Backend) {
    let (caliop, _data, _dns) = start(
        backend,
        &[
            ("CALIOP_SMTP_MAX_CONNECTIONS_PER_IP", "1"),
            ("CALIOP_IMAP_MAX_CONNECTIONS_PER_IP", "1"),
        ],
    )
    .await;
    let doors = [
        (
            caliop.smtp,
            "220 ",
            &b"QUIT\r\n"[..],
            "421 4.7.0 too many connections from your address, try later\r\n",
        ),
        (
            caliop.imap,
            "* OK",
            &b"a LOGOUT\r\n"[..],
            "* BYE [UNAVAILABLE] too many connections from your address, try later\r\n",
        ),
    ];
    for (server, welcome, goodbye, refusal) in doors {
        for round in 0..20 {
            let (mut stream, line) = first_line(server).await;
            assert!(line.starts_with(welcome), "{server} round {round}: {line}");
            if round % 2 == 0 {
                stream.write_all(goodbye).await.unwrap();
            }
            // Closed at once, without waiting for anything more.
            drop(stream);
        }
        // Two at the same time are still one too many.
        let (_held, line) = first_line(server).await;
        assert!(line.starts_with(welcome), "{server}: {line}");
        let (_refused, line) = first_line(server).await;
        assert_eq!(line, refusal, "{server}");
    }
}

/// Finding 5, SSRF: a domain whose MX resolved to 127.0.0.1 made the server
/// speak SMTP to its own port with the attacker's content. With private
/// networks not allowed (the default), loopback, RFC 1918, IPv6 loopback
/// and ULA targets are never connected to: deferred, then bounced saying why.
async fn delivery_never_connects_to_private_networks(backend: Backend) {
    // Something listens where every MX points: it must never be reached.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = reached.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let (caliop, _data, dns) = start(
        backend,
        &[
            ("CALIOP_DELIVERY_ALLOW_PRIVATE_NETWORKS", "false"),
            ("CALIOP_DELIVERY_PORT", &port),
            ("CALIOP_DELIVERY_LIFETIME_SECONDS", "3"),
            ("CALIOP_DELIVERY_RETRY_BASE_SECONDS", "1"),
        ],
    )
    .await;
    let targets: [(&str, IpAddr); 4] = [
        ("loop.test", "127.0.0.1".parse().unwrap()),
        ("ten.test", "10.0.0.1".parse().unwrap()),
        ("six.test", "::1".parse().unwrap()),
        ("ula.test", "fd00::1".parse().unwrap()),
    ];
    for (domain, ip) in targets {
        let mx = format!("mx.{domain}");
        dns.set_mx(domain, &[(10, &mx)]);
        match ip {
            IpAddr::V4(v4) => dns.set_a(&mx, &[v4]),
            IpAddr::V6(v6) => dns.set_aaaa(&mx, &[v6]),
        }
    }
    let operator = caliop.operator_token();
    let (acme, admin) = enterprise(&caliop, &operator, "acme.test").await;
    let alice = account(&caliop, &admin, &acme, "alice@acme.test", "user").await;
    let alice_token = token(&caliop, "alice@acme.test").await;
    let to: Vec<String> = targets
        .iter()
        .map(|(d, _)| format!("postmaster@{d}"))
        .collect();
    let (status, _, sent) = caliop
        .post(
            &format!("/v1/accounts/{alice}/messages"),
            Some(&alice_token),
            json!({"to": to, "subject": "port 25", "text": "hello, port 25"}),
        )
        .await;
    assert_eq!(status, 202, "{sent}");
    let report = format!("/v1/messages/{}/delivery", field(&sent, "message_id"));
    let mut outcomes = Value::Null;
    for _ in 0..300 {
        let (status, _, delivery) = caliop.get(&report, &alice_token).await;
        assert_eq!(status, 200, "{delivery}");
        outcomes = delivery["recipients"].clone();
        let statuses: Vec<&str> = outcomes
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["status"].as_str().unwrap())
            .collect();
        assert!(
            statuses
                .iter()
                .all(|s| ["pending", "queued", "deferred", "bounced"].contains(s)),
            "{outcomes}"
        );
        if statuses.iter().all(|s| *s == "bounced") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (domain, ip) in targets {
        let outcome = outcomes
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["recipient"] == format!("postmaster@{domain}"))
            .unwrap();
        assert_eq!(outcome["status"], "bounced", "{outcome}");
        let reply = outcome["remote_reply"].as_str().unwrap_or_default();
        assert!(
            reply.contains("private") && reply.contains(&ip.to_string()),
            "{domain}: {reply}"
        );
    }
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "nothing connected to the private address"
    );
}
