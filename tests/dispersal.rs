//! Dispersed storage against the real binary, on the embedded default (three
//! local sites in the data directory, FR/DE/CH, 2-of-3):
//! - mail at the `dispersed` level lands as one shard per site, none of which
//!   holds the plaintext, and the shard files alone (no key, no database)
//!   decode to exactly what the API serves;
//! - a site lost while Caliop is down loses nothing: the message still reads,
//!   the worker rebuilds the missing shard on its own, and `caliop sites
//!   status` says so.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{BIN, Caliop, field, raw};
use mail::probe::SmtpProbe;
use tenants::{Backend, on_both_backends};

const SITES: [&str; 3] = ["local-fr", "local-de", "local-ch"];

/// Every shard file under one site folder.
fn shard_files(site: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![site.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// Runs `caliop ARGS` next to the server, on the same data; returns its output.
fn caliop_cli(caliop: &Caliop, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .envs(caliop.env.clone())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "caliop {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

on_both_backends!(a_lost_site_loses_no_mail);

async fn a_lost_site_loses_no_mail(backend: Backend) {
    let data = tempfile::tempdir().unwrap();
    let dns = mail::dns_server::DnsServer::start().await.unwrap();
    let env = common::environment(backend, data.path(), dns.addr()).await;
    let caliop = common::serve(env.clone(), data.path().join("caliop.log")).await;
    let account = common::mailbox(&caliop, "dispersed").await;
    let token = common::user_token(&caliop).await;

    let marker = format!("DISPERSED-MARKER-{}", uuid::Uuid::now_v7().simple());
    let mut probe = SmtpProbe::connect(caliop.smtp).await;
    assert_eq!(probe.cmd("EHLO sender.test").await.0, 250);
    assert_eq!(probe.cmd("MAIL FROM:<sender@elsewhere.test>").await.0, 250);
    assert_eq!(probe.cmd("RCPT TO:<user@acme.test>").await.0, 250);
    assert_eq!(probe.cmd("DATA").await.0, 354);
    let body = format!("{marker} ").repeat(2000);
    let message = format!(
        "From: <sender@elsewhere.test>\r\nTo: <user@acme.test>\r\nSubject: pieces\r\n\
         Message-ID: <pieces@elsewhere.test>\r\n\r\n{body}\r\n.\r\n"
    );
    probe.send(message.as_bytes()).await;
    assert_eq!(
        probe.read_reply().await.0,
        250,
        "a 250 once the shards are on the sites"
    );
    probe.cmd("QUIT").await;

    let (status, _, page) = caliop
        .get(&format!("/v1/accounts/{account}/messages"), &token)
        .await;
    assert_eq!(status, 200, "{page}");
    let id = field(&page["items"][0], "id");
    let served = raw(&caliop, &token, &id).await;
    assert!(
        served
            .windows(27)
            .any(|w| w == b"-----BEGIN PGP MESSAGE-----"),
        "the stored message is PGP/MIME"
    );
    assert!(
        !served.windows(marker.len()).any(|w| w == marker.as_bytes()),
        "a dispersed message is sealed before it is cut"
    );

    // One shard per site, in three jurisdictions; none holds the plaintext,
    // and any two of them decode, with no key, to what the API serves.
    let site_dir = |name: &str| data.path().join("sites").join(name);
    let mut shards = Vec::new();
    for site in SITES {
        let files = shard_files(&site_dir(site));
        assert_eq!(files.len(), 1, "site {site} holds one shard: {files:?}");
        let shard = std::fs::read(&files[0]).unwrap();
        assert!(
            !shard.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "plaintext on site {site}"
        );
        shards.push(shard);
    }
    let header = vault::dispersal::Header::parse(&shards[0]).unwrap();
    assert_eq!((header.params.k(), header.params.n()), (2, 3));
    for pair in [[0, 1], [0, 2], [1, 2]] {
        let decoded =
            vault::dispersal::decode(header.object_id, &[&shards[pair[0]], &shards[pair[1]]])
                .unwrap();
        assert_eq!(
            decoded, served,
            "shards {pair:?} decode to the stored message"
        );
    }
    let decoded = vault::dispersal::decode(header.object_id, &[&shards[2]]);
    assert!(decoded.is_err(), "one shard is not enough");
    assert!(caliop.terminate().await.success());

    // The German site is lost while Caliop is down.
    std::fs::rename(site_dir("local-de"), data.path().join("lost-de")).unwrap();
    let caliop = common::serve(env, data.path().join("caliop.log")).await;
    assert_eq!(
        raw(&caliop, &token, &id).await,
        served,
        "read from the two sites left"
    );

    // If the lost shard was a data shard, the read noticed and the worker in
    // `serve` may have rebuilt it already; if it was parity, reads never ask
    // for it and the scrub finds it. Either way the repair puts back, byte
    // for byte, the shard that was lost.
    let lost = shard_files(&data.path().join("lost-de"));
    let expected = std::fs::read(&lost[0]).unwrap();
    let scrub = caliop_cli(&caliop, &["sites", "scrub", "--restart"]);
    assert!(scrub.contains("1 objects: 3 shards checked"), "{scrub}");
    assert!(
        scrub.contains("1 missing, 0 corrupt") || !shard_files(&site_dir("local-de")).is_empty(),
        "the scrub finds the shard that is still missing: {scrub}"
    );
    caliop_cli(&caliop, &["sites", "repair"]);
    let rebuilt: Vec<Vec<u8>> = shard_files(&site_dir("local-de"))
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .collect();
    assert_eq!(rebuilt.len(), 1, "one shard rebuilt on the lost site");
    assert!(
        rebuilt[0] == expected,
        "the rebuilt shard is, byte for byte, the one that was lost"
    );

    let status = caliop_cli(&caliop, &["sites", "status"]);
    assert!(status.contains("2-of-3 with 3 good"), "{status}");
    assert!(status.contains("survives 1 more site loss"), "{status}");
    for site in SITES {
        assert!(
            status
                .lines()
                .any(|l| l.starts_with(site) && l.contains("yes")),
            "{site} is up: {status}"
        );
    }
    assert!(caliop.terminate().await.success());
}
