//! Spam and virus verdicts against real filters: a real Rspamd (Debian's
//! package, a minimal configuration on loopback ports, the machine's Redis
//! for its statistics) and a real clamd with a signature database the test
//! writes (the EICAR test file's hash: no signatures can be downloaded
//! here), around the real `caliop` binary. The loopback DNS server lists one
//! loopback client address in a DNS blocklist that both Caliop's built-in
//! filter and Rspamd ask.
//!
//! Stories, each on SQLite and PostgreSQL:
//! - the built-in filter and Rspamd: a clean message in the Inbox, a listed
//!   client's in Junk (still sealed at `sealed`, gpg opens it), EICAR
//!   refused with 554 5.7.1, GTUBE refused with 550 5.7.1 by Rspamd (filed
//!   in Junk by the built-in filter, which never refuses on its own score);
//! - moving a message into Junk blocks its sender, out of it allows it, and
//!   Rspamd learns from `standard` mail (its statistics change);
//! - Rspamd down: tempfailed and nothing lost, or stored unscanned and
//!   counted with `on_error = "accept"`;
//! - a free account that submits GTUBE three times is refused each time,
//!   then loses sending and is listed in `GET /v1/abuse`.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Caliop, PASSWORD, field, gpg, gpg_home, raw, token};
use mail::probe::SmtpProbe;
use serde_json::{Value, json};
use tenants::{Backend, on_both_backends};

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// MD5 of the 68 bytes of [`EICAR`], as ClamAV's `.hdb` format wants it.
const EICAR_MD5: &str = "44d88612fea8a8f36de82e1278abb02f";
/// The DNS blocklist zone both filters ask.
const BLOCKLIST: &str = "bl.caliop.test";
/// The client address the blocklist lists; clean mail comes from 127.0.0.1.
const LISTED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for_port(port: u16, what: &str, log: &Path) {
    for _ in 0..240 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!(
        "{what} did not listen on {port}: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    /// SIGTERM, so that Rspamd's main process stops its workers too (they
    /// would outlive a SIGKILL of their parent, still listening).
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..100 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// clamd on a loopback port, with a database that knows EICAR only.
struct Clamd {
    address: SocketAddr,
    _process: Process,
    _dir: tempfile::TempDir,
}

async fn clamd() -> Clamd {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    std::fs::create_dir(&db).unwrap();
    std::fs::write(
        db.join("caliop-test.hdb"),
        format!("{EICAR_MD5}:68:Eicar-Test-Signature\n"),
    )
    .unwrap();
    let port = free_port();
    let log = dir.path().join("clamd.log");
    let conf = dir.path().join("clamd.conf");
    std::fs::write(
        &conf,
        format!(
            "Foreground yes\nDatabaseDirectory {}\nTCPSocket {port}\nTCPAddr 127.0.0.1\nLogFile {}\nPidFile {}\n",
            db.display(),
            log.display(),
            dir.path().join("clamd.pid").display()
        ),
    )
    .unwrap();
    let child = Command::new("clamd")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("clamd (Debian's clamav-daemon) is installed");
    let process = Process(child);
    wait_for_port(port, "clamd", &log).await;
    Clamd {
        address: SocketAddr::from(([127, 0, 0, 1], port)),
        _process: process,
        _dir: dir,
    }
}

/// Rspamd on loopback ports: Debian's configuration with a local directory
/// of our own on top, asking the test's DNS server and clamd.
struct Rspamd {
    url: String,
    process: Option<Process>,
    _dir: tempfile::TempDir,
}

async fn rspamd(dns: SocketAddr, clamd: SocketAddr) -> Rspamd {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local.d");
    for sub in ["local.d", "db", "run"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
    }
    let (normal, controller, proxy) = (free_port(), free_port(), free_port());
    let log = dir.path().join("rspamd.log");
    let files = [
        (
            "worker-normal.inc",
            format!("bind_socket = \"127.0.0.1:{normal}\";\ncount = 1;\n"),
        ),
        (
            "worker-controller.inc",
            format!(
                "bind_socket = \"127.0.0.1:{controller}\";\ncount = 1;\nsecure_ip = \"127.0.0.1\";\n"
            ),
        ),
        (
            "worker-proxy.inc",
            format!("bind_socket = \"127.0.0.1:{proxy}\";\ncount = 1;\n"),
        ),
        ("worker-fuzzy.inc", "count = 0;\n".to_owned()),
        (
            "logging.inc",
            format!(
                "type = \"file\";\nfilename = \"{}\";\nlevel = \"info\";\n",
                log.display()
            ),
        ),
        (
            "options.inc",
            format!("dns {{ nameserver = [\"{dns}\"]; timeout = 1s; retransmits = 1; }}\n"),
        ),
        // Its statistics (Bayes) live in the machine's Redis.
        (
            "redis.conf",
            "servers = \"127.0.0.1:6379\";\ndb = \"5\";\n".to_owned(),
        ),
        // Caliop takes its verdict at the end of DATA.
        ("greylist.conf", "enabled = false;\n".to_owned()),
        // Loopback clients and test host names would score on their own.
        ("hfilter.conf", "enabled = false;\n".to_owned()),
        ("fuzzy_check.conf", "enabled = false;\n".to_owned()),
        (
            "actions.conf",
            "reject = 15;\nadd_header = 6;\ngreylist = null;\n".to_owned(),
        ),
        (
            "rbl.conf",
            format!(
                "rbls {{\n  caliop_test {{\n    symbol = \"CALIOP_TEST_DNSBL\";\n    rbl = \"{BLOCKLIST}\";\n    \
                 ipv4 = true;\n    ipv6 = false;\n    received = false;\n    from = true;\n    \
                 exclude_local = false;\n    exclude_private_ips = false;\n  }}\n}}\n"
            ),
        ),
        (
            "rbl_group.conf",
            "symbols = {\n  \"CALIOP_TEST_DNSBL\" { weight = 7.0; description = \"Listed by the test's DNS blocklist\"; }\n}\n"
                .to_owned(),
        ),
        (
            "antivirus.conf",
            format!(
                "clamav {{\n  type = \"clamav\";\n  servers = \"{clamd}\";\n  symbol = \"CLAM_VIRUS\";\n  \
                 action = \"reject\";\n  scan_mime_parts = true;\n  scan_text_mime = false;\n  \
                 scan_image_mime = false;\n  log_clean = false;\n}}\n"
            ),
        ),
    ];
    for (name, text) in files {
        std::fs::write(local.join(name), text).unwrap();
    }
    let var = |name: &str, path: &Path| format!("--var={name}={}", path.display());
    let child = Command::new("rspamd")
        .args(["-f", "-i", "-c", "/etc/rspamd/rspamd.conf"])
        .arg(var("LOCAL_CONFDIR", dir.path()))
        .arg(var("DBDIR", &dir.path().join("db")))
        .arg(var("RUNDIR", &dir.path().join("run")))
        .arg(var("LOGDIR", dir.path()))
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("stderr")).unwrap(),
        ))
        .spawn()
        .expect("rspamd (Debian's rspamd) is installed");
    let process = Process(child);
    wait_for_port(controller, "rspamd", &log).await;
    Rspamd {
        url: format!("http://127.0.0.1:{controller}"),
        process: Some(process),
        _dir: dir,
    }
}

impl Rspamd {
    /// Messages its statistics learned so far.
    async fn learned(&self) -> u64 {
        let stat: Value = reqwest::get(format!("{}/stat", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stat["learned"].as_u64().unwrap_or(0)
    }

    /// Stops it, workers included, and waits until nothing answers.
    async fn stop(&mut self) {
        self.process.take();
        let address = self.url.trim_start_matches("http://").to_owned();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(&address).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("Rspamd still answers at {address} after SIGTERM");
    }
}

/// Which filter a story runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Builtin,
    Rspamd,
}

struct World {
    caliop: Caliop,
    dns: mail::dns_server::DnsServer,
    rspamd: Option<Rspamd>,
    _clamd: Clamd,
    _data: tempfile::TempDir,
    operator: String,
    tenant: String,
    /// (address, account id, token) at `standard` and at `sealed`.
    standard: (String, String, String),
    sealed: (String, String, String),
}

async fn world(backend: Backend, kind: Kind, extra: &[(&str, &str)]) -> World {
    let dns = mail::dns_server::DnsServer::start().await.unwrap();
    let [a, b, c, d] = LISTED.octets();
    dns.set_a(
        &format!("{d}.{c}.{b}.{a}.{BLOCKLIST}"),
        &[Ipv4Addr::new(127, 0, 0, 2)],
    );
    let clamd = clamd().await;
    let rspamd = match kind {
        Kind::Rspamd => Some(rspamd(dns.addr(), clamd.address).await),
        Kind::Builtin => None,
    };
    let data = tempfile::tempdir().unwrap();
    let mut env = common::environment(backend, data.path(), dns.addr()).await;
    let blocklist = format!("[{BLOCKLIST}]");
    let clamd_address = clamd.address.to_string();
    let mut settings: Vec<(&str, &str)> = match &rspamd {
        Some(r) => vec![("CALIOP_FILTER_RSPAMD_URL", r.url.as_str())],
        None => vec![
            ("CALIOP_FILTER_DNSBL", blocklist.as_str()),
            ("CALIOP_FILTER_DNSWL", "[]"),
            ("CALIOP_FILTER_DOMAIN_BLOCKLISTS", "[]"),
            ("CALIOP_FILTER_CLAMD", clamd_address.as_str()),
        ],
    };
    settings.extend_from_slice(extra);
    env.extend(
        settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let caliop = common::serve(env, data.path().join("caliop.log")).await;
    let operator = caliop.operator_token();
    let (status, _, tenant) = caliop
        .post(
            "/v1/tenants",
            Some(&operator),
            json!({"name": "Acme", "kind": "enterprise",
                   "limits": {"max_accounts": 5, "max_domains": 1, "storage_quota_bytes": 1_000_000_000}}),
        )
        .await;
    assert_eq!(status, 201, "{tenant}");
    let tenant = field(&tenant, "id");
    let (status, _, onboarded) = caliop
        .post(
            &format!("/v1/tenants/{tenant}/onboard"),
            Some(&operator),
            json!({"domain": "acme.test", "admin": {"address": "standard@acme.test", "password": PASSWORD, "level": "standard"}}),
        )
        .await;
    assert_eq!(status, 201, "{onboarded}");
    let (status, _, verified) = caliop
        .post(
            &format!("/v1/domains/{}/verify", field(&onboarded["domain"], "id")),
            Some(&operator),
            json!({"force": true}),
        )
        .await;
    assert_eq!(status, 200, "{verified}");
    let (status, _, sealed) = caliop
        .post(
            &format!("/v1/tenants/{tenant}/accounts"),
            Some(&operator),
            json!({"address": "sealed@acme.test", "password": PASSWORD, "level": "sealed"}),
        )
        .await;
    assert_eq!(status, 201, "{sealed}");
    let standard = (
        "standard@acme.test".to_owned(),
        field(&onboarded["admin"], "id"),
        token(&caliop, "standard@acme.test").await,
    );
    let sealed = (
        "sealed@acme.test".to_owned(),
        field(&sealed, "id"),
        token(&caliop, "sealed@acme.test").await,
    );
    World {
        caliop,
        dns,
        rspamd,
        _clamd: clamd,
        _data: data,
        operator,
        tenant,
        standard,
        sealed,
    }
}

fn message(from: &str, to: &str, subject: &str, body: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nDate: {}\r\n\
         Message-ID: <{}@sender.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        chrono::Utc::now().to_rfc2822(),
        uuid::Uuid::now_v7()
    )
}

const CLEAN_BODY: &str = "Hello, here are the notes from our meeting about the quarterly budget and the \
    roadmap for next year. Please review them before Friday and send your comments to the whole team, \
    so that we can decide quickly and book the rooms for the workshop in January.";

fn eicar_message(from: &str, to: &str) -> String {
    use base64::Engine;
    let attachment = base64::engine::general_purpose::STANDARD.encode(EICAR);
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: the file you asked for\r\nDate: {}\r\n\
         Message-ID: <{}@sender.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the attachment.\r\n\
         --b1\r\nContent-Type: application/octet-stream; name=\"eicar.com\"\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"eicar.com\"\r\n\r\n{attachment}\r\n--b1--\r\n",
        chrono::Utc::now().to_rfc2822(),
        uuid::Uuid::now_v7()
    )
}

/// One SMTP transaction from `client`: the reply to the end of DATA.
async fn smtp(caliop: &Caliop, client: IpAddr, from: &str, to: &str, data: &str) -> (u16, String) {
    let mut probe = SmtpProbe::connect_from(caliop.smtp, client).await;
    assert_eq!(probe.cmd("EHLO sender.test").await.0, 250);
    assert_eq!(probe.cmd(&format!("MAIL FROM:<{from}>")).await.0, 250);
    assert_eq!(probe.cmd(&format!("RCPT TO:<{to}>")).await.0, 250);
    assert_eq!(probe.cmd("DATA").await.0, 354);
    let mut body = data.replace("\r\n.", "\r\n..");
    body.push_str(".\r\n");
    probe.send(body.as_bytes()).await;
    probe.read_reply().await
}

/// The messages of an account, newest first.
async fn messages(caliop: &Caliop, account: &str, token: &str) -> Vec<Value> {
    let (status, _, list) = caliop
        .get(&format!("/v1/accounts/{account}/messages?limit=100"), token)
        .await;
    assert_eq!(status, 200, "{list}");
    let mut items = list["items"].as_array().unwrap().clone();
    items.sort_by_key(|m| std::cmp::Reverse(m["received_at"].as_str().unwrap().to_owned()));
    items
}

const CLEAN: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

on_both_backends!(
    builtin_filter_verdicts,
    rspamd_verdicts_and_learning,
    a_filter_that_fails_loses_nothing,
    free_accounts_that_send_spam_lose_sending
);

async fn builtin_filter_verdicts(backend: Backend) {
    verdicts(backend, Kind::Builtin).await;
}

async fn rspamd_verdicts_and_learning(backend: Backend) {
    let mut world = verdicts(backend, Kind::Rspamd).await;

    // Rspamd stopped: mail is tempfailed, nothing is stored.
    let (address, account, token) = world.standard.clone();
    let before = messages(&world.caliop, &account, &token).await.len();
    world.rspamd.as_mut().unwrap().stop().await;
    let reply = smtp(
        &world.caliop,
        CLEAN,
        "friend@sender.test",
        &address,
        &message("friend@sender.test", &address, "while down", CLEAN_BODY),
    )
    .await;
    assert_eq!(reply.0, 451, "{reply:?}");
    assert!(reply.1.starts_with("4.7.1"), "{reply:?}");
    assert_eq!(
        messages(&world.caliop, &account, &token).await.len(),
        before
    );
}

/// The verdict stories both filters share; learning and judgements too.
async fn verdicts(backend: Backend, kind: Kind) -> World {
    let world = world(backend, kind, &[]).await;
    let caliop = &world.caliop;
    for (address, account, token) in [&world.standard, &world.sealed] {
        let sealed = address.starts_with("sealed");
        // A clean message from an unlisted client: the Inbox.
        let reply = smtp(
            caliop,
            CLEAN,
            "friend@sender.test",
            address,
            &message("friend@sender.test", address, "meeting notes", CLEAN_BODY),
        )
        .await;
        assert_eq!(reply.0, 250, "{kind:?} {address}: {reply:?}");
        let clean = messages(caliop, account, token).await[0].clone();
        assert_eq!(clean["folder"], "inbox", "{kind:?} {address}: {clean}");
        let expected_filter = if kind == Kind::Rspamd {
            "rspamd"
        } else {
            "builtin"
        };
        assert_eq!(clean["verdict"]["filter"], expected_filter, "{clean}");
        assert_eq!(clean["verdict"]["action"], "no-action", "{clean}");

        // The same from a client the DNS blocklist lists: Junk.
        let reply = smtp(
            caliop,
            IpAddr::V4(LISTED),
            "friend@sender.test",
            address,
            &message(
                "friend@sender.test",
                address,
                "from a listed client",
                CLEAN_BODY,
            ),
        )
        .await;
        assert_eq!(reply.0, 250, "{kind:?} {address}: {reply:?}");
        let junk = messages(caliop, account, token).await[0].clone();
        assert_eq!(junk["folder"], "junk", "{kind:?} {address}: {junk}");
        assert_eq!(junk["verdict"]["action"], "add-header", "{junk}");
        let symbols = junk["verdict"]["symbols"].to_string();
        assert!(
            symbols.contains(BLOCKLIST) || symbols.contains("CALIOP_TEST_DNSBL"),
            "{kind:?}: the listing is named: {symbols}"
        );
        let stored = raw(caliop, token, &field(&junk, "id")).await;
        let text = String::from_utf8_lossy(&stored).into_owned();
        if sealed {
            // Metadata only: the sealed form is what the sender wrote, wrapped.
            assert!(!text.contains("X-Spam"), "{text}");
            assert!(!text.contains("meeting about the quarterly budget"));
            let home = gpg_home();
            let (status, _, secret) = caliop
                .get(&format!("/v1/accounts/{account}/secret-key"), token)
                .await;
            assert_eq!(status, 200);
            let (ok, _, err) = gpg(
                home.path(),
                &["--passphrase", PASSWORD, "--import"],
                secret.as_str().unwrap().as_bytes(),
            );
            assert!(ok, "{err}");
            let start = text.find("-----BEGIN PGP MESSAGE-----").expect("PGP/MIME");
            let end = text.find("-----END PGP MESSAGE-----").unwrap() + 25;
            let (ok, clear, err) = gpg(
                home.path(),
                &["--passphrase", PASSWORD, "--decrypt"],
                &text.as_bytes()[start..end],
            );
            assert!(ok, "gpg opens the sealed message in Junk: {err}");
            let clear = String::from_utf8_lossy(&clear);
            assert!(
                clear.contains("meeting about the quarterly budget"),
                "{clear}"
            );
            assert!(
                !clear.contains("X-Spam"),
                "nothing added inside the seal: {clear}"
            );
        } else {
            assert!(text.contains("X-Spam-Flag: YES"), "{text}");
            assert!(text.contains("X-Spam-Status: Yes"), "{text}");
        }

        // EICAR as an attachment: refused, whatever the client.
        let reply = smtp(
            caliop,
            CLEAN,
            "friend@sender.test",
            address,
            &eicar_message("friend@sender.test", address),
        )
        .await;
        assert_eq!(reply.0, 554, "{kind:?} {address}: {reply:?}");
        assert!(reply.1.starts_with("5.7.1"), "{reply:?}");
        assert!(reply.1.contains("virus"), "{reply:?}");

        // GTUBE: Rspamd refuses it; the built-in filter files it in Junk.
        let before = messages(caliop, account, token).await.len();
        let reply = smtp(
            caliop,
            CLEAN,
            "friend@sender.test",
            address,
            &message(
                "friend@sender.test",
                address,
                "test pattern",
                &format!("{CLEAN_BODY}\r\n{GTUBE}"),
            ),
        )
        .await;
        match kind {
            Kind::Rspamd => {
                assert_eq!(reply.0, 550, "{address}: {reply:?}");
                assert!(reply.1.starts_with("5.7.1"), "{reply:?}");
                assert!(
                    !reply.1.contains("GTUBE"),
                    "the reply names no internals: {reply:?}"
                );
                assert_eq!(messages(caliop, account, token).await.len(), before);
            }
            Kind::Builtin => {
                assert_eq!(reply.0, 250, "{address}: {reply:?}");
                let gtube = messages(caliop, account, token).await[0].clone();
                assert_eq!(gtube["folder"], "junk", "{gtube}");
                assert_eq!(gtube["verdict"]["symbols"][0], "GTUBE", "{gtube}");
            }
        }
    }

    // Judgements: moving into Junk blocks the sender; out of it allows it.
    let (address, account, token) = world.standard.clone();
    let learned_before = match &world.rspamd {
        Some(r) => r.learned().await,
        None => 0,
    };
    let inbox = messages(caliop, &account, &token).await;
    let clean = inbox
        .iter()
        .find(|m| m["folder"] == "inbox")
        .expect("the clean message")
        .clone();
    let (status, _, moved) = caliop
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/messages/{}", field(&clean, "id")),
            Some(&token),
            Some(json!({"folder": "junk"})),
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    let (status, _, rules) = caliop
        .get(&format!("/v1/accounts/{account}/sender-rules"), &token)
        .await;
    assert_eq!(status, 200, "{rules}");
    assert_eq!(rules["items"][0]["sender"], "friend@sender.test", "{rules}");
    assert_eq!(rules["items"][0]["rule"], "block", "{rules}");
    let reply = smtp(
        caliop,
        CLEAN,
        "friend@sender.test",
        &address,
        &message(
            "friend@sender.test",
            &address,
            "after the block",
            CLEAN_BODY,
        ),
    )
    .await;
    assert_eq!(reply.0, 250, "{reply:?}");
    let blocked = messages(caliop, &account, &token).await[0].clone();
    assert_eq!(blocked["folder"], "junk", "{blocked}");
    assert_eq!(blocked["verdict"]["sender_rule"], "block", "{blocked}");
    if let Some(rspamd) = &world.rspamd {
        // Learning runs beside the move: wait for Rspamd's statistics.
        let mut learned = learned_before;
        for _ in 0..100 {
            learned = rspamd.learned().await;
            if learned > learned_before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            learned > learned_before,
            "Rspamd learned the judgement ({learned_before} → {learned})"
        );
    }

    // Out of Junk: allowed, and the next one reaches the Inbox.
    let (status, _, moved) = caliop
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/messages/{}", field(&blocked, "id")),
            Some(&token),
            Some(json!({"folder": "inbox"})),
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    let reply = smtp(
        caliop,
        CLEAN,
        "friend@sender.test",
        &address,
        &message(
            "friend@sender.test",
            &address,
            "after the allow",
            CLEAN_BODY,
        ),
    )
    .await;
    assert_eq!(reply.0, 250, "{reply:?}");
    let allowed = messages(caliop, &account, &token).await[0].clone();
    assert_eq!(allowed["folder"], "inbox", "{allowed}");
    assert_eq!(allowed["verdict"]["sender_rule"], "allow", "{allowed}");

    // The same judgements through IMAP, on sealed mail: MOVE into Junk
    // blocks, COPY out of it allows; nothing sealed is opened for it.
    let (address, account, token) = world.sealed.clone();
    let sender = "other@sender.test";
    let arrive = async |subject: &str| {
        let reply = smtp(
            caliop,
            CLEAN,
            sender,
            &address,
            &message(sender, &address, subject, CLEAN_BODY),
        )
        .await;
        assert_eq!(reply.0, 250, "{reply:?}");
        messages(caliop, &account, &token).await[0].clone()
    };
    let first = arrive("before the move").await;
    assert_eq!(first["folder"], "inbox", "{first}");
    let (mut imap, _) = mail::imap_probe::ImapProbe::connect(caliop.imap).await;
    imap.login(&address, PASSWORD).await;
    let (_, done) = imap.run("SELECT INBOX").await;
    assert!(done.contains(" OK "), "{done}");
    let (_, done) = imap.run(&format!("UID MOVE {} Junk", first["uid"])).await;
    assert!(done.contains(" OK "), "{done}");
    let rule = async || {
        let (status, _, rules) = caliop
            .get(&format!("/v1/accounts/{account}/sender-rules"), &token)
            .await;
        assert_eq!(status, 200, "{rules}");
        rules["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["sender"] == sender)
            .map(|r| r["rule"].as_str().unwrap().to_owned())
    };
    assert_eq!(rule().await.as_deref(), Some("block"));
    let second = arrive("after the IMAP move").await;
    assert_eq!(second["folder"], "junk", "{second}");
    assert_eq!(second["verdict"]["sender_rule"], "block", "{second}");
    let (_, done) = imap.run("SELECT Junk").await;
    assert!(done.contains(" OK "), "{done}");
    let (_, done) = imap.run(&format!("UID COPY {} INBOX", second["uid"])).await;
    assert!(done.contains(" OK "), "{done}");
    assert_eq!(rule().await.as_deref(), Some("allow"));
    imap.run("LOGOUT").await;

    // The operator sees the verdicts counted.
    let metrics = metrics(caliop).await;
    let junked = metric(
        &metrics,
        "caliop_filter_verdicts_total{action=\"add-header\"}",
    );
    assert!(junked >= 2, "{metrics}");
    let viruses = metric(&metrics, "caliop_filter_verdicts_total{action=\"virus\"}");
    assert!(viruses >= 2, "{metrics}");
    // And the tenant's spam per day, next to mail in and out.
    let (status, _, traffic) = caliop
        .get(
            &format!("/v1/tenants/{}/traffic?days=1", world.tenant),
            &world.operator,
        )
        .await;
    assert_eq!(status, 200, "{traffic}");
    assert!(
        traffic["days"][0]["spam"].as_i64().unwrap() >= 3,
        "{traffic}"
    );
    world
}

async fn metrics(caliop: &Caliop) -> String {
    reqwest::get(format!("{}/metrics", caliop.metrics))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn a_filter_that_fails_loses_nothing(backend: Backend) {
    // Nothing listens there: what a stopped Rspamd looks like.
    let down = format!("http://127.0.0.1:{}", free_port());
    for (on_error, expected) in [("tempfail", 451), ("accept", 250)] {
        let world = world(
            backend,
            Kind::Builtin,
            &[
                ("CALIOP_FILTER_RSPAMD_URL", down.as_str()),
                ("CALIOP_FILTER_ON_ERROR", on_error),
                ("CALIOP_FILTER_TIMEOUT_MS", "2000"),
            ],
        )
        .await;
        let caliop = &world.caliop;
        for (address, account, token) in [&world.standard, &world.sealed] {
            let reply = smtp(
                caliop,
                CLEAN,
                "friend@sender.test",
                address,
                &message(
                    "friend@sender.test",
                    address,
                    "while the filter is down",
                    CLEAN_BODY,
                ),
            )
            .await;
            assert_eq!(reply.0, expected, "{on_error} {address}: {reply:?}");
            let stored = messages(caliop, account, token).await;
            if expected == 451 {
                assert!(reply.1.starts_with("4.7.1"), "{reply:?}");
                assert!(stored.is_empty(), "nothing stored when tempfailed");
            } else {
                assert_eq!(stored.len(), 1);
                assert_eq!(stored[0]["folder"], "inbox");
                assert_eq!(stored[0]["verdict"]["filter"], "unscanned", "{}", stored[0]);
            }
        }
        let metrics = metrics(caliop).await;
        assert_eq!(
            metric(&metrics, "caliop_filter_errors_total"),
            2,
            "{metrics}"
        );
        assert_eq!(
            metric(
                &metrics,
                "caliop_filter_verdicts_total{action=\"unscanned\"}"
            ),
            if expected == 250 { 2 } else { 0 },
            "{metrics}"
        );
        drop(world.dns);
    }
}

async fn free_accounts_that_send_spam_lose_sending(backend: Backend) {
    let world = world(
        backend,
        Kind::Builtin,
        &[("CALIOP_FILTER_OUTBOUND_STRIKES", "3")],
    )
    .await;
    let caliop = &world.caliop;
    let operator = &world.operator;
    // The public instance, and one free account on it.
    let (status, _, public) = caliop
        .post(
            "/v1/tenants",
            Some(operator),
            json!({"name": "Caliop Free", "kind": "public",
                   "limits": {"max_accounts": 100, "max_domains": 1, "storage_quota_bytes": 100_000_000}}),
        )
        .await;
    assert_eq!(status, 201, "{public}");
    let public = field(&public, "id");
    let (status, _, domain) = caliop
        .post(
            &format!("/v1/tenants/{public}/domains"),
            Some(operator),
            json!({"name": "free.test"}),
        )
        .await;
    assert_eq!(status, 201, "{domain}");
    let (status, _, _) = caliop
        .post(
            &format!("/v1/domains/{}/verify", field(&domain, "id")),
            Some(operator),
            json!({"force": true}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, free) = caliop
        .post(
            &format!("/v1/tenants/{public}/accounts"),
            Some(operator),
            json!({"address": "free@free.test", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 201, "{free}");
    let free_id = field(&free, "id");
    let free_token = token(caliop, "free@free.test").await;
    let send = |text: String| {
        let (free_token, free_id) = (free_token.clone(), free_id.clone());
        async move {
            caliop
                .post(
                    &format!("/v1/accounts/{free_id}/messages"),
                    Some(&free_token),
                    json!({"to": ["standard@acme.test"], "subject": "hello", "text": text}),
                )
                .await
        }
    };
    // An enterprise's account is not scanned unless its tenant asks.
    let (status, _, sent) = caliop
        .post(
            &format!("/v1/accounts/{}/messages", world.standard.1),
            Some(&world.standard.2),
            json!({"to": ["sealed@acme.test"], "subject": "test", "text": GTUBE}),
        )
        .await;
    assert_eq!(status, 202, "{sent}");

    // Three refusals: two through the API, one through the submission port.
    for attempt in 1..=2 {
        let (status, _, refused) = send(format!("{CLEAN_BODY}\n{GTUBE}")).await;
        assert_eq!(status, 422, "{refused}");
        assert_eq!(
            refused["type"].as_str().unwrap().rsplit('/').next(),
            Some("refused-as-spam"),
            "{refused}"
        );
        let detail = refused["detail"].as_str().unwrap();
        assert!(
            detail.contains("GTUBE"),
            "our own user is told why: {detail}"
        );
        assert!(detail.contains(&format!("{attempt} of 3")), "{detail}");
    }
    let mut probe = SmtpProbe::connect(caliop.submission).await;
    probe.cmd("EHLO client.test").await;
    let (code, _) = probe
        .cmd(&format!(
            "AUTH PLAIN {}",
            mail::probe::auth_plain("free@free.test", PASSWORD)
        ))
        .await;
    assert_eq!(code, 235);
    probe
        .expect("MAIL FROM:<free@free.test>", 250, "2.1.0")
        .await;
    probe
        .expect("RCPT TO:<standard@acme.test>", 250, "2.1.5")
        .await;
    assert_eq!(probe.cmd("DATA").await.0, 354);
    probe
        .send(
            format!(
                "{}.\r\n",
                message("free@free.test", "standard@acme.test", "again", GTUBE)
            )
            .as_bytes(),
        )
        .await;
    let (code, text) = probe.read_reply().await;
    assert_eq!(code, 550, "{text}");
    assert!(text.starts_with("5.7.1"), "{text}");
    assert!(
        text.contains("stopped"),
        "the third refusal stops sending: {text}"
    );

    // Sending is gone, even for a clean message, until the operator looks.
    let (status, _, refused) = send(CLEAN_BODY.to_owned()).await;
    assert_eq!(status, 403, "{refused}");
    let (status, _, abuse) = caliop.get("/v1/abuse", operator).await;
    assert_eq!(status, 200, "{abuse}");
    let entry = abuse["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["account_id"] == free_id.as_str())
        .unwrap_or_else(|| panic!("the free account is listed: {abuse}"))
        .clone();
    assert!(entry["sending_blocked_at"].is_string(), "{entry}");
    assert_eq!(entry["strikes_last_day"], 3, "{entry}");
    assert!(
        entry["strikes"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("GTUBE"),
        "{entry}"
    );
    // Only the operator sees it, or gives sending back.
    let (status, _, _) = caliop.get("/v1/abuse", &world.standard.2).await;
    assert_eq!(status, 403);
    let (status, _, _) = caliop
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/abuse/{free_id}"),
            Some(&world.standard.2),
            None,
        )
        .await;
    assert!(status == 403 || status == 404, "{status}");
    let (status, _, cleared) = caliop
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/abuse/{free_id}"),
            Some(operator),
            None,
        )
        .await;
    assert_eq!(status, 204, "{cleared}");
    let (status, _, sent) = send(CLEAN_BODY.to_owned()).await;
    assert_eq!(status, 202, "{sent}");
}
