//! The two invariants of inbound mail, against the real binary:
//! - a `250` means committed: `caliop serve` killed with SIGKILL mid-stream
//!   loses no acknowledged message and stores none twice;
//! - the plaintext of a sealed message reaches neither the data directory
//!   nor the logs.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{field, mailbox, user_token};
use mail::probe::SmtpProbe;
use tenants::{Backend, on_both_backends};

fn message(subject: &str, body: &str) -> String {
    format!(
        "From: <sender@elsewhere.test>\r\nTo: <user@acme.test>\r\nSubject: {subject}\r\n\
         Date: Thu, 26 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{subject}@elsewhere.test>\r\n\r\n{body}\r\n"
    )
}

/// Sends one message on an open session; true when the server answered 250.
async fn send(probe: &mut SmtpProbe, raw: &str) -> bool {
    let mut batch =
        "MAIL FROM:<sender@elsewhere.test>\r\nRCPT TO:<user@acme.test>\r\nDATA\r\n".to_owned();
    batch.push_str(raw);
    batch.push_str(".\r\n");
    probe.send(batch.as_bytes()).await;
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(probe.read_reply().await.0);
    }
    codes == [250, 250, 354, 250]
}

on_both_backends!(
    acknowledged_mail_survives_sigkill,
    sealed_plaintext_never_reaches_disk_or_logs
);

async fn acknowledged_mail_survives_sigkill(backend: Backend) {
    let data = tempfile::tempdir().unwrap();
    let dns = mail::dns_server::DnsServer::start().await.unwrap();
    let env = common::environment(backend, data.path(), dns.addr()).await;
    let caliop = common::serve(env.clone(), data.path().join("caliop.log")).await;
    let account = mailbox(&caliop, "standard").await;

    // Four senders stream messages; each records the subjects that got a 250.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut senders = Vec::new();
    for sender in 0..4 {
        let (smtp, acknowledged) = (caliop.smtp, acknowledged.clone());
        senders.push(tokio::spawn(async move {
            let mut probe = SmtpProbe::connect(smtp).await;
            if probe.cmd("EHLO crash.test").await.0 != 250 {
                return;
            }
            for n in 0.. {
                let subject = format!("crash-{sender}-{n}");
                let ok = tokio::time::timeout(
                    Duration::from_secs(5),
                    send(&mut probe, &message(&subject, "x")),
                )
                .await
                .unwrap_or(false);
                if !ok {
                    return;
                }
                acknowledged.lock().unwrap().push(subject);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut caliop = caliop;
    caliop.child.kill().expect("SIGKILL");
    caliop.child.wait().unwrap();
    for sender in senders {
        let _ = sender.await;
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 8,
        "the stream was too short to mean anything: {}",
        acknowledged.len()
    );
    drop(caliop);

    let caliop = common::serve(env, data.path().join("caliop.log")).await;
    let token = user_token(&caliop).await;
    let mut stored: HashMap<String, usize> = HashMap::new();
    let mut cursor = String::new();
    loop {
        let (status, _, page) = caliop
            .get(
                &format!("/v1/accounts/{account}/messages?limit=200{cursor}"),
                &token,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        for m in page["items"].as_array().unwrap() {
            *stored.entry(field(m, "subject")).or_default() += 1;
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    for subject in &acknowledged {
        assert_eq!(
            stored.get(subject),
            Some(&1),
            "acknowledged message {subject} is missing or stored twice"
        );
    }
    for (subject, count) in &stored {
        assert_eq!(*count, 1, "{subject} stored {count} times");
    }
    assert!(
        stored.len() <= acknowledged.len() + 4,
        "at most one unacknowledged message per sender"
    );
    assert!(caliop.terminate().await.success());
}

async fn sealed_plaintext_never_reaches_disk_or_logs(backend: Backend) {
    let data = tempfile::tempdir().unwrap();
    let dns = mail::dns_server::DnsServer::start().await.unwrap();
    let mut env = common::environment(backend, data.path(), dns.addr()).await;
    env.push(("CALIOP_LOG_FILTER".to_owned(), "debug".to_owned()));
    let log = data.path().join("caliop.log");
    let caliop = common::serve(env, log.clone()).await;
    let account = mailbox(&caliop, "sealed").await;

    let marker = format!("SECRET-MARKER-{}", uuid::Uuid::now_v7().simple());
    let mut probe = SmtpProbe::connect(caliop.smtp).await;
    assert_eq!(probe.cmd("EHLO secrecy.test").await.0, 250);
    for n in 0..3 {
        let raw = message(
            &format!("{marker} subject {n}"),
            &format!("the body says {marker}"),
        );
        assert!(send(&mut probe, &raw).await, "delivered");
    }
    probe.cmd("QUIT").await;
    let token = user_token(&caliop).await;
    let (status, _, page) = caliop
        .get(&format!("/v1/accounts/{account}/messages"), &token)
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    assert!(caliop.terminate().await.success());

    let mut files = 0;
    let mut stack = vec![data.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            files += 1;
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
                "the plaintext marker was written to {}",
                path.display()
            );
        }
    }
    assert!(
        files >= 3,
        "the data directory holds the database, keys and log"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("message stored"),
        "the log is really there and at debug level"
    );
}
