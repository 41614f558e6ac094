//! IMAP against the real binary: `caliop serve` listens for IMAP, and the
//! UIDs a client has seen (with their UIDVALIDITY and UIDNEXT) are the same
//! after a restart, expunged ones gone for good.

mod common;

use common::{PASSWORD, mailbox};
use mail::imap_probe::ImapProbe;
use mail::probe::SmtpProbe;
use tenants::{Backend, on_both_backends};

on_both_backends!(uids_survive_a_restart);

async fn deliver(smtp: std::net::SocketAddr, subject: &str) {
    let mut probe = SmtpProbe::connect(smtp).await;
    assert_eq!(probe.cmd("EHLO restart.test").await.0, 250);
    let raw = format!(
        "MAIL FROM:<sender@elsewhere.test>\r\nRCPT TO:<user@acme.test>\r\nDATA\r\n\
         From: <sender@elsewhere.test>\r\nTo: <user@acme.test>\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@elsewhere.test>\r\n\r\nHello.\r\n.\r\n"
    );
    probe.send(raw.as_bytes()).await;
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(probe.read_reply().await.0);
    }
    assert_eq!(codes, [250, 250, 354, 250]);
}

/// (UIDVALIDITY, UIDNEXT, every UID) of the INBOX.
async fn inbox(imap: std::net::SocketAddr) -> (String, String, Vec<String>) {
    let (mut c, _) = ImapProbe::connect(imap).await;
    c.login("user@acme.test", PASSWORD).await;
    let (untagged, done) = c.run("SELECT INBOX").await;
    assert!(done.contains(" OK "), "{done}");
    let code = |name: &str| {
        untagged
            .iter()
            .find_map(|l| {
                l.split_once(&format!("[{name} "))
                    .map(|(_, rest)| rest.split(']').next().unwrap().to_owned())
            })
            .unwrap_or_else(|| panic!("{name} in {untagged:?}"))
    };
    let (validity, next) = (code("UIDVALIDITY"), code("UIDNEXT"));
    let (fetched, _) = c.run("FETCH 1:* (UID)").await;
    let uids = fetched
        .iter()
        .filter_map(|l| {
            l.split("UID ")
                .nth(1)
                .map(|u| u.trim_end_matches([')', '\r', '\n']).to_owned())
        })
        .collect();
    c.run("LOGOUT").await;
    (validity, next, uids)
}

async fn uids_survive_a_restart(backend: Backend) {
    let data = tempfile::tempdir().unwrap();
    let dns = mail::dns_server::DnsServer::start().await.unwrap();
    let env = common::environment(backend, data.path(), dns.addr()).await;
    let caliop = common::serve(env.clone(), data.path().join("caliop.log")).await;
    mailbox(&caliop, "standard").await;
    for subject in ["first", "second", "third", "fourth"] {
        deliver(caliop.smtp, subject).await;
    }
    // The second goes: its UID must not come back after the restart.
    let (mut c, _) = ImapProbe::connect(caliop.imap).await;
    c.login("user@acme.test", PASSWORD).await;
    c.run("SELECT INBOX").await;
    let (_, done) = c.run("STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    assert!(done.contains(" OK "), "{done}");
    let (untagged, _) = c.run("EXPUNGE").await;
    assert_eq!(untagged, ["* 2 EXPUNGE\r\n"]);
    let before = inbox(caliop.imap).await;
    assert_eq!(before.1, "5", "UIDNEXT after four deliveries");
    assert_eq!(before.2, ["1", "3", "4"]);

    assert!(caliop.terminate().await.success());
    let caliop = common::serve(env, data.path().join("caliop.log")).await;
    let after = inbox(caliop.imap).await;
    assert_eq!(
        after, before,
        "UIDVALIDITY, UIDNEXT and UIDs are the same after a restart"
    );
    deliver(caliop.smtp, "fifth").await;
    let (_, next, uids) = inbox(caliop.imap).await;
    assert_eq!(
        (next.as_str(), uids),
        (
            "6",
            vec!["1".to_owned(), "3".into(), "4".into(), "5".into()]
        ),
        "no UID is reused"
    );
}
