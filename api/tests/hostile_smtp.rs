//! The mail doors against a hostile client, as bytes on a socket: SMTP
//! smuggling through bare line breaks (finding 10 of issue 17), a submitted
//! message that names a second author (finding 7), and a flood of
//! connections past the listener's cap (finding 11).

mod support;

use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use support::{PASSWORD, TestApp};
use tenants::{Backend, on_both_backends};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

on_both_backends!(
    smuggled_commands_after_a_bare_newline_store_nothing,
    bdat_chunks_are_taken_by_length_not_by_lines,
    a_second_author_is_refused_on_the_api,
    a_second_author_is_refused_on_the_submission_port,
    smtp_listeners_refuse_connections_past_their_cap,
    imap_refuses_connections_past_its_cap,
);

/// Sends `bytes` after the greeting, then reads every reply until the
/// server closes (a QUIT ends the bytes) and returns them as text.
async fn converse(server: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(server).await.expect("connect");
    let mut reader = BufReader::new(&mut stream);
    let mut greeting = String::new();
    reader.read_line(&mut greeting).await.expect("greeting");
    assert!(greeting.starts_with("220 "), "{greeting}");
    stream.write_all(bytes).await.expect("write");
    let mut replies = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut replies))
        .await
        .expect("the server answers and closes")
        .expect("read");
    String::from_utf8_lossy(&replies).into_owned()
}

/// Subjects and senders of what `account` holds.
async fn mailbox(app: &TestApp, account: &str, token: &str) -> Vec<Value> {
    let listed = app
        .get(&format!("/v1/accounts/{account}/messages"), token)
        .await;
    listed.ok(200)["items"].as_array().expect("items").clone()
}

async fn smuggled_commands_after_a_bare_newline_store_nothing(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let bob = app.user(&e, "bob").await;
    let token = app.login("bob@acme.test", PASSWORD).await;

    // What a relay that passes bare line breaks forwards as one message: to
    // it, only the last <CRLF>.<CRLF> ends DATA; a reader that also ends it
    // at the first dot finds a second transaction from a sender of the
    // attacker's choice.
    for end_of_data in ["\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r\n"] {
        let mut bytes = b"EHLO relay.sender.test\r\nMAIL FROM:<alice@sender.test>\r\n\
              RCPT TO:<bob@acme.test>\r\nDATA\r\n\
              From: <alice@sender.test>\r\nTo: <bob@acme.test>\r\nSubject: hello\r\n\r\nbody"
            .to_vec();
        bytes.extend_from_slice(end_of_data.as_bytes());
        bytes.extend_from_slice(
            b"MAIL FROM:<evil@ext.test>\r\nRCPT TO:<bob@acme.test>\r\nDATA\r\n\
              From: <ceo@acme.test>\r\nTo: <bob@acme.test>\r\nSubject: injected\r\n\r\n\
              Wire the money.\r\n.\r\nQUIT\r\n",
        );
        let replies = converse(app.smtp, &bytes).await;
        let stored = replies.matches("stored as").count();
        assert!(
            stored <= 1,
            "{end_of_data:?}: two messages from one DATA: {replies}"
        );
        assert!(
            replies.contains("521 5.5.2 bare <"),
            "{end_of_data:?}: the bare line break is refused: {replies}"
        );
        assert_eq!(stored, 0, "{end_of_data:?}: {replies}");
    }
    let held = mailbox(&app, &bob, &token).await;
    assert!(
        held.iter()
            .all(|m| m["subject"] != "injected" && m["sender"] != "ceo@acme.test"),
        "nothing from the injected transaction: {held:?}"
    );
    assert!(held.is_empty(), "{held:?}");

    // A bare LF in a command line is refused the same way.
    let replies = converse(
        app.smtp,
        b"EHLO relay.sender.test\r\nNOOP\nMAIL FROM:<evil@ext.test>\r\nQUIT\r\n",
    )
    .await;
    assert!(replies.contains("521 5.5.2 bare <LF>"), "{replies}");
    assert!(!replies.contains("2.1.0"), "{replies}");

    // Clean CRLF mail still arrives, once.
    let replies = converse(
        app.smtp,
        b"EHLO relay.sender.test\r\nMAIL FROM:<alice@sender.test>\r\nRCPT TO:<bob@acme.test>\r\n\
          DATA\r\nFrom: <alice@sender.test>\r\nTo: <bob@acme.test>\r\nSubject: clean\r\n\r\n\
          a line\r\n..a stuffed dot\r\n.\r\nQUIT\r\n",
    )
    .await;
    assert_eq!(replies.matches("stored as").count(), 1, "{replies}");
    let held = mailbox(&app, &bob, &token).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["subject"], "clean");
}

/// BDAT's length ends a chunk, so what looks like lines inside it is
/// content: bare line breaks and dots there are exempt and smuggle nothing.
async fn bdat_chunks_are_taken_by_length_not_by_lines(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let bob = app.user(&e, "bob").await;
    let token = app.login("bob@acme.test", PASSWORD).await;
    let chunk = b"From: <alice@sender.test>\r\nTo: <bob@acme.test>\r\nSubject: chunked\r\n\r\n\
                  body\n.\nMAIL FROM:<evil@ext.test>\r\nRCPT TO:<bob@acme.test>\r\nDATA\r\n";
    let mut bytes = b"EHLO relay.sender.test\r\nMAIL FROM:<alice@sender.test>\r\n\
                      RCPT TO:<bob@acme.test>\r\n"
        .to_vec();
    bytes.extend_from_slice(format!("BDAT {} LAST\r\n", chunk.len()).as_bytes());
    bytes.extend_from_slice(chunk);
    bytes.extend_from_slice(b"QUIT\r\n");
    let replies = converse(app.smtp, &bytes).await;
    assert_eq!(replies.matches("stored as").count(), 1, "{replies}");
    assert!(replies.contains("221 2.0.0"), "{replies}");
    let held = mailbox(&app, &bob, &token).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["subject"], "chunked");
}

/// Messages whose author is not the account alone, each with the reason the
/// refusal must give.
fn forged_authors() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "From: alice@acme.test\r\nFrom: CEO <admin@acme.test>\r\n",
            "the message has 2 From headers",
        ),
        (
            "From: CEO <admin@acme.test>\r\nFrom: alice@acme.test\r\n",
            "the message has 2 From headers",
        ),
        (
            "From: alice@acme.test, CEO <admin@acme.test>\r\n",
            "the From header holds 2 addresses",
        ),
        (
            "From: alice@acme.test\r\nSender: admin@acme.test\r\n",
            "the Sender header must hold exactly one address of this account",
        ),
    ]
}

fn message_with(headers: &str) -> Vec<u8> {
    format!("{headers}To: bob@remote.test\r\nSubject: Wire the money\r\n\r\nNow.\r\n").into_bytes()
}

async fn deliver_jobs(app: &TestApp) -> i64 {
    let depth = app.store.queue_depth().await.expect("queue depth");
    depth
        .iter()
        .filter(|d| d.kind == "mail.deliver")
        .map(|d| d.jobs)
        .sum()
}

async fn a_second_author_is_refused_on_the_api(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let alice = app.user(&e, "alice").await;
    let token = app.login("alice@acme.test", PASSWORD).await;
    let send = format!("{}/v1/accounts/{alice}/messages", app.base);
    for (headers, why) in forged_authors() {
        let refused = app
            .raw(
                app.http
                    .post(&send)
                    .bearer_auth(&token)
                    .header("content-type", "message/rfc822")
                    .body(message_with(headers)),
            )
            .await;
        assert!(
            refused.problem(403).contains(why),
            "{headers:?}: {refused:?}"
        );
    }
    assert_eq!(deliver_jobs(&app).await, 0, "nothing was queued");

    // Her own address, as author and as sender, still goes.
    let own = app
        .raw(
            app.http
                .post(&send)
                .bearer_auth(&token)
                .header("content-type", "message/rfc822")
                .body(message_with(
                    "From: Alice <alice@acme.test>\r\nSender: alice@acme.test\r\n",
                )),
        )
        .await;
    own.ok(202);
}

async fn a_second_author_is_refused_on_the_submission_port(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    app.user(&e, "alice").await;
    let login =
        base64::engine::general_purpose::STANDARD.encode(format!("\0alice@acme.test\0{PASSWORD}"));
    for (headers, why) in forged_authors() {
        let mut bytes = format!(
            "EHLO client.test\r\nAUTH PLAIN {login}\r\nMAIL FROM:<alice@acme.test>\r\n\
             RCPT TO:<bob@remote.test>\r\nDATA\r\n"
        )
        .into_bytes();
        bytes.extend_from_slice(&message_with(headers));
        bytes.extend_from_slice(b".\r\nQUIT\r\n");
        let replies = converse(app.submission, &bytes).await;
        assert!(replies.contains("235 2.7.0"), "{replies}");
        let refusal = replies
            .lines()
            .find(|l| l.starts_with("550 "))
            .unwrap_or_else(|| panic!("{headers:?}: no 550: {replies}"));
        assert!(
            refusal.starts_with("550 5.7.1 ") && refusal.contains(why),
            "{headers:?}: {refusal}"
        );
        assert!(!replies.contains("queued as"), "{replies}");
    }
    assert_eq!(deliver_jobs(&app).await, 0, "nothing was queued");
}

/// The first line a new connection to `server` reads.
async fn first_line(server: std::net::SocketAddr) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(server).await.expect("connect");
    let mut line = String::new();
    let mut reader = BufReader::new(&mut stream);
    tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
        .await
        .expect("an answer")
        .expect("read");
    (stream, line)
}

/// Two connections are served, the third is refused with `refusal`, and a
/// place freed by a closed connection serves the next.
async fn third_connection_is_refused(server: std::net::SocketAddr, welcome: &str, refusal: &str) {
    let (first, line) = first_line(server).await;
    assert!(line.starts_with(welcome), "{line}");
    let (_second, line) = first_line(server).await;
    assert!(line.starts_with(welcome), "{line}");
    let (mut third, line) = first_line(server).await;
    assert_eq!(line, refusal);
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "closed after the refusal: {rest:?}");

    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_next, line) = first_line(server).await;
        if line.starts_with(welcome) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{line}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn smtp_listeners_refuse_connections_past_their_cap(backend: Backend) {
    let smtp = mail::smtp::SmtpConfig {
        max_connections: 2,
        ..support::smtp_config()
    };
    let app = support::spawn_full(backend, support::api_config(), smtp).await;
    for server in [app.smtp, app.submission] {
        third_connection_is_refused(
            server,
            "220 ",
            "421 4.3.2 too many connections, try again later\r\n",
        )
        .await;
    }
}

async fn imap_refuses_connections_past_its_cap(backend: Backend) {
    let app = support::spawn(backend).await;
    let config = mail::imap::ImapConfig {
        max_connections: 2,
        ..support::imap_config()
    };
    let imap = mail::imap::ImapServer::new(
        config,
        app.inbound.clone(),
        std::sync::Arc::new(support::api_config().login_guard()),
        None,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let server = listener.local_addr().expect("local addr");
    tokio::spawn(imap.serve(listener, false, std::future::pending()));
    third_connection_is_refused(
        server,
        "* OK",
        "* BYE [UNAVAILABLE] too many connections, try again later\r\n",
    )
    .await;
}
