//! Business mail against the real binary: groups sealed to each member's
//! own key, send-as aliases DKIM-signed for the alias's domain, catch-all,
//! domain aliases and plus-addressing, address conflicts, Sieve uploaded
//! with Debian's `sieve-connect` over ManageSieve (a client nobody here
//! wrote) filing sealed mail on its body, vacation replies under RFC 3834,
//! and forwarding: SRS and an ARC set at `standard` (verified by dkimpy in
//! the sink), nothing at `sealed` without a key. Every story runs on SQLite
//! and PostgreSQL.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Caliop, PASSWORD, field, gpg, gpg_home, raw, token};
use mail::probe::SmtpProbe;
use serde_json::{Value, json};
use tenants::{Backend, on_both_backends};

on_both_backends!(business_addresses_sieve_vacation_and_forwarding);

struct World {
    caliop: Caliop,
    dns: mail::dns_server::DnsServer,
    sink: mail::sink::Sink,
    _data: tempfile::TempDir,
    operator: String,
    tenant: String,
    domain: String,
    admin: String,
}

async fn world(backend: Backend) -> World {
    let data = tempfile::tempdir().unwrap();
    let dns = mail::dns_server::DnsServer::start().await.unwrap();
    dns.set_mx("remote.test", &[(10, "mx.remote.test")]);
    dns.set_a("mx.remote.test", &[std::net::Ipv4Addr::LOCALHOST]);
    let dns_addr = dns.addr().to_string();
    let sink = mail::sink::Sink::start(&["--dns", &dns_addr]);
    let mut env = common::environment(backend, data.path(), dns.addr()).await;
    env.push(("CALIOP_DELIVERY_PORT".to_owned(), sink.port.to_string()));
    let caliop = common::serve(env, data.path().join("caliop.log")).await;
    let operator = caliop.operator_token();
    let (status, _, tenant) = caliop
        .post(
            "/v1/tenants",
            Some(&operator),
            json!({"name": "Acme", "kind": "enterprise",
                   "limits": {"max_accounts": 10, "max_domains": 3, "storage_quota_bytes": 1_000_000_000}}),
        )
        .await;
    assert_eq!(status, 201, "{tenant}");
    let tenant = field(&tenant, "id");
    let (status, _, onboarded) = caliop
        .post(
            &format!("/v1/tenants/{tenant}/onboard"),
            Some(&operator),
            json!({"domain": "acme.test", "admin": {"address": "admin@acme.test", "password": PASSWORD, "level": "standard"}}),
        )
        .await;
    assert_eq!(status, 201, "{onboarded}");
    let domain = field(&onboarded["domain"], "id");
    verify(&caliop, &operator, &dns, &domain).await;
    let admin = token(&caliop, "admin@acme.test").await;
    World {
        caliop,
        dns,
        sink,
        _data: data,
        operator,
        tenant,
        domain,
        admin,
    }
}

/// Vouches for a domain and publishes its DKIM keys in the test DNS.
async fn verify(caliop: &Caliop, operator: &str, dns: &mail::dns_server::DnsServer, domain: &str) {
    let (status, _, verified) = caliop
        .post(
            &format!("/v1/domains/{domain}/verify"),
            Some(operator),
            json!({"force": true}),
        )
        .await;
    assert_eq!(status, 200, "{verified}");
    let (status, _, keys) = caliop
        .get(&format!("/v1/domains/{domain}/dkim"), operator)
        .await;
    assert_eq!(status, 200, "{keys}");
    for key in keys["keys"].as_array().unwrap() {
        dns.set_txt(
            key["record"]["name"].as_str().unwrap(),
            &[key["record"]["value"].as_str().unwrap()],
        );
    }
}

async fn account(w: &World, local: &str, level: &str) -> (String, String) {
    let (status, _, created) = w
        .caliop
        .post(
            &format!("/v1/tenants/{}/accounts", w.tenant),
            Some(&w.operator),
            json!({"address": format!("{local}@acme.test"), "password": PASSWORD, "level": level}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    (
        field(&created, "id"),
        token(&w.caliop, &format!("{local}@acme.test")).await,
    )
}

fn message(from: &str, to: &str, subject: &str, body: &str, extra: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nDate: {}\r\n\
         Message-ID: <{}@sender.test>\r\n{extra}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        chrono::Utc::now().to_rfc2822(),
        uuid::Uuid::now_v7()
    )
}

/// One SMTP transaction from outside: the replies to RCPT and to DATA.
async fn smtp(caliop: &Caliop, from: &str, to: &str, data: &str) -> ((u16, String), (u16, String)) {
    let mut probe = SmtpProbe::connect(caliop.smtp).await;
    assert_eq!(probe.cmd("EHLO sender.test").await.0, 250);
    assert_eq!(probe.cmd(&format!("MAIL FROM:<{from}>")).await.0, 250);
    let rcpt = probe.cmd(&format!("RCPT TO:<{to}>")).await;
    if rcpt.0 != 250 {
        return (rcpt, (0, String::new()));
    }
    assert_eq!(probe.cmd("DATA").await.0, 354);
    let mut body = data.replace("\r\n.", "\r\n..");
    body.push_str(".\r\n");
    probe.send(body.as_bytes()).await;
    (rcpt, probe.read_reply().await)
}

async fn delivered(caliop: &Caliop, from: &str, to: &str, subject: &str, body: &str) {
    let (rcpt, data) = smtp(caliop, from, to, &message(from, to, subject, body, "")).await;
    assert_eq!(rcpt.0, 250, "RCPT {to}: {rcpt:?}");
    assert_eq!(data.0, 250, "DATA to {to}: {data:?}");
}

async fn messages(caliop: &Caliop, account: &str, token: &str, query: &str) -> Vec<Value> {
    let (status, _, list) = caliop
        .get(
            &format!("/v1/accounts/{account}/messages?limit=100{query}"),
            token,
        )
        .await;
    assert_eq!(status, 200, "{list}");
    list["items"].as_array().unwrap().clone()
}

async fn mailbox_id(caliop: &Caliop, account: &str, token: &str, name: &str) -> Option<String> {
    let (status, _, list) = caliop
        .get(&format!("/v1/accounts/{account}/mailboxes"), token)
        .await;
    assert_eq!(status, 200, "{list}");
    let items = list["items"]
        .as_array()
        .or(list.as_array())
        .cloned()
        .unwrap_or_default();
    items
        .iter()
        .find(|m| {
            m["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .map(|m| field(m, "id"))
}

/// Whether the account's secret key (imported into a fresh GnuPG home)
/// opens a stored sealed message.
async fn opens(caliop: &Caliop, account: &str, token: &str, stored: &[u8]) -> Option<String> {
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
    let text = String::from_utf8_lossy(stored);
    let start = text.find("-----BEGIN PGP MESSAGE-----").expect("PGP/MIME");
    let end = text.find("-----END PGP MESSAGE-----").unwrap() + 25;
    let (ok, clear, _) = gpg(
        home.path(),
        &["--passphrase", PASSWORD, "--decrypt"],
        &stored[start..end],
    );
    ok.then(|| String::from_utf8_lossy(&clear).into_owned())
}

async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    for _ in 0..150 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn business_addresses_sieve_vacation_and_forwarding(backend: Backend) {
    let w = world(backend).await;
    let c = &w.caliop;
    let (ana, ana_token) = account(&w, "ana", "sealed").await;
    let (bob, bob_token) = account(&w, "bob", "sealed").await;
    let (carl, carl_token) = account(&w, "carl", "standard").await;

    // --- A group of two sealed accounts: each copy sealed to its own key.
    let (status, _, team) = c
        .post(
            &format!("/v1/tenants/{}/addresses", w.tenant),
            Some(&w.admin),
            json!({"address": "team@acme.test", "kind": "group", "members": [ana, bob], "name": "Team"}),
        )
        .await;
    assert_eq!(status, 201, "{team}");
    delivered(
        c,
        "client@remote.test",
        "team@acme.test",
        "For the team",
        "the team's agenda",
    )
    .await;
    let ana_copy = messages(c, &ana, &ana_token, "").await;
    let bob_copy = messages(c, &bob, &bob_token, "").await;
    assert_eq!(ana_copy.len(), 1, "{ana_copy:?}");
    assert_eq!(bob_copy.len(), 1, "{bob_copy:?}");
    let ana_raw = raw(c, &ana_token, &field(&ana_copy[0], "id")).await;
    let bob_raw = raw(c, &bob_token, &field(&bob_copy[0], "id")).await;
    assert!(!String::from_utf8_lossy(&ana_raw).contains("the team's agenda"));
    let clear = opens(c, &ana, &ana_token, &ana_raw)
        .await
        .expect("ana opens her copy");
    assert!(clear.contains("the team's agenda"), "{clear}");
    assert!(
        opens(c, &ana, &ana_token, &bob_raw).await.is_none(),
        "ana's key does not open bob's copy"
    );
    assert!(opens(c, &bob, &bob_token, &bob_raw).await.is_some());

    // Members-only: refused from outside, with why.
    let (status, _, staff) = c
        .post(
            &format!("/v1/tenants/{}/addresses", w.tenant),
            Some(&w.admin),
            json!({"address": "staff@acme.test", "kind": "group", "members": [ana], "posting": "members"}),
        )
        .await;
    assert_eq!(status, 201, "{staff}");
    let (rcpt, _) = smtp(
        c,
        "x@remote.test",
        "staff@acme.test",
        &message("x@remote.test", "staff@acme.test", "hi", "hi", ""),
    )
    .await;
    assert_eq!(rcpt.0, 550, "{rcpt:?}");
    assert!(
        rcpt.1.starts_with("5.7.1") && rcpt.1.contains("members"),
        "{rcpt:?}"
    );

    // --- An address is one thing: 409 both ways.
    let (status, _, conflict) = c
        .post(
            &format!("/v1/tenants/{}/addresses", w.tenant),
            Some(&w.admin),
            json!({"address": "ana@acme.test", "kind": "alias", "account_id": carl}),
        )
        .await;
    assert_eq!(status, 409, "{conflict}");
    let (status, _, conflict) = c
        .post(
            &format!("/v1/tenants/{}/accounts", w.tenant),
            Some(&w.operator),
            json!({"address": "team@acme.test", "password": PASSWORD, "level": "standard"}),
        )
        .await;
    assert_eq!(status, 409, "{conflict}");

    // --- Send-as: an alias in a second domain, DKIM-signed for it.
    let (status, _, second) = c
        .post(
            &format!("/v1/tenants/{}/domains", w.tenant),
            Some(&w.admin),
            json!({"name": "acme.example"}),
        )
        .await;
    assert_eq!(status, 201, "{second}");
    verify(c, &w.operator, &w.dns, &field(&second, "id")).await;
    let (status, _, alias) = c
        .post(
            &format!("/v1/tenants/{}/addresses", w.tenant),
            Some(&w.admin),
            json!({"address": "sales@acme.example", "kind": "alias", "account_id": carl}),
        )
        .await;
    assert_eq!(status, 201, "{alias}");
    let mut probe = SmtpProbe::connect(c.submission).await;
    probe.cmd("EHLO client.test").await;
    let (code, _) = probe
        .cmd(&format!(
            "AUTH PLAIN {}",
            mail::probe::auth_plain("carl@acme.test", PASSWORD)
        ))
        .await;
    assert_eq!(code, 235);
    probe
        .expect("MAIL FROM:<sales@acme.example>", 250, "2.1.0")
        .await;
    probe
        .expect("RCPT TO:<buyer@remote.test>", 250, "2.1.5")
        .await;
    assert_eq!(probe.cmd("DATA").await.0, 354);
    let offer = message(
        "sales@acme.example",
        "buyer@remote.test",
        "Our offer",
        "the price list",
        "",
    );
    probe.send(format!("{offer}.\r\n").as_bytes()).await;
    let (code, text) = probe.read_reply().await;
    assert_eq!(code, 250, "send-as an alias: {text}");
    probe
        .expect("MAIL FROM:<carl@acme.test>", 250, "2.1.0")
        .await;
    probe
        .expect("RCPT TO:<buyer@remote.test>", 250, "2.1.5")
        .await;
    assert_eq!(probe.cmd("DATA").await.0, 354);
    let forged = message("ana@acme.test", "buyer@remote.test", "Not mine", "no", "");
    probe.send(format!("{forged}.\r\n").as_bytes()).await;
    let (code, text) = probe.read_reply().await;
    assert_eq!(code, 550, "another account's address is refused: {text}");
    assert!(text.starts_with("5.7.1"), "{text}");
    let sent = w.sink.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["mail_from"], "sales@acme.example");
    let signatures = sent[0]["dkim"].as_array().unwrap();
    assert!(
        signatures
            .iter()
            .any(|s| s["domain"] == "acme.example" && s["verified"] == true),
        "DKIM-signed for the alias's domain: {signatures:?}"
    );

    // --- Catch-all, domain alias, plus-addressing.
    let (status, _, routing) = c
        .call(
            reqwest::Method::PUT,
            &format!("/v1/domains/{}/routing", w.domain),
            Some(&w.admin),
            Some(json!({"catch_all": "carl@acme.test"})),
        )
        .await;
    assert_eq!(status, 200, "{routing}");
    delivered(
        c,
        "x@remote.test",
        "nobody@acme.test",
        "To whom",
        "anyone there",
    )
    .await;
    let (status, _, fr) = c
        .post(
            &format!("/v1/tenants/{}/domains", w.tenant),
            Some(&w.admin),
            json!({"name": "acme.fr"}),
        )
        .await;
    assert_eq!(status, 201, "{fr}");
    verify(c, &w.operator, &w.dns, &field(&fr, "id")).await;
    let (status, _, routing) = c
        .call(
            reqwest::Method::PUT,
            &format!("/v1/domains/{}/routing", field(&fr, "id")),
            Some(&w.admin),
            Some(json!({"alias_of": w.domain})),
        )
        .await;
    assert_eq!(status, 200, "{routing}");
    delivered(
        c,
        "x@remote.test",
        "carl@acme.fr",
        "Bonjour",
        "par le domaine alias",
    )
    .await;
    let (status, _, news) = c
        .post(
            &format!("/v1/accounts/{carl}/mailboxes"),
            Some(&carl_token),
            json!({"name": "news"}),
        )
        .await;
    assert_eq!(status, 201, "{news}");
    delivered(
        c,
        "x@remote.test",
        "carl+news@acme.test",
        "Issue 1",
        "plus addressed",
    )
    .await;
    let inbox = messages(c, &carl, &carl_token, "&folder=inbox").await;
    let subjects: Vec<&str> = inbox.iter().filter_map(|m| m["subject"].as_str()).collect();
    assert!(subjects.contains(&"To whom"), "catch-all: {subjects:?}");
    assert!(subjects.contains(&"Bonjour"), "domain alias: {subjects:?}");
    let news = messages(
        c,
        &carl,
        &carl_token,
        &format!("&mailbox_id={}", field(&news, "id")),
    )
    .await;
    assert_eq!(news.len(), 1, "plus-addressed into its folder: {news:?}");
    assert_eq!(news[0]["subject"], "Issue 1");

    // --- Sieve over ManageSieve with sieve-connect, at `sealed`.
    let script = "require [\"fileinto\", \"body\"];\r\n\
                  if header :contains \"subject\" \"invoice\" { fileinto \"Invoices\"; stop; }\r\n\
                  if body :contains \"quarterly statement\" { fileinto \"Invoices\"; }\r\n";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.sieve");
    std::fs::write(&file, script).unwrap();
    let port = c
        .managesieve
        .expect("ManageSieve listens")
        .port()
        .to_string();
    for action in [
        vec![
            "--upload",
            "--localsieve",
            file.to_str().unwrap(),
            "--remotesieve",
            "rules",
        ],
        vec!["--activate", "--remotesieve", "rules"],
    ] {
        let mut child = Command::new("sieve-connect")
            .args([
                "--server",
                "127.0.0.1",
                "--port",
                &port,
                "--user",
                "ana@acme.test",
                "--passwordfd",
                "0",
                "--notlsverify",
                "--authmech",
                "PLAIN",
            ])
            .args(&action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sieve-connect (Debian's package) is installed");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(PASSWORD.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "sieve-connect {action:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (status, _, listed) = c
        .get(&format!("/v1/accounts/{ana}/sieve"), &ana_token)
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["items"][0]["name"], "rules");
    assert_eq!(listed["items"][0]["active"], true, "{listed}");
    delivered(
        c,
        "billing@remote.test",
        "ana@acme.test",
        "Your invoice 42",
        "pay soon",
    )
    .await;
    delivered(
        c,
        "bank@remote.test",
        "ana@acme.test",
        "News",
        "your quarterly statement is ready",
    )
    .await;
    delivered(c, "friend@remote.test", "ana@acme.test", "Lunch", "at noon").await;
    let invoices = mailbox_id(c, &ana, &ana_token, "Invoices")
        .await
        .expect("fileinto made Invoices");
    let filed = messages(c, &ana, &ana_token, &format!("&mailbox_id={invoices}")).await;
    assert_eq!(
        filed.len(),
        2,
        "header and body tests both filed: {filed:?}"
    );
    for m in &filed {
        let stored = raw(c, &ana_token, &field(m, "id")).await;
        let text = String::from_utf8_lossy(&stored);
        assert!(
            !text.contains("quarterly statement"),
            "filed and sealed: {text}"
        );
        assert!(!text.contains("pay soon"), "filed and sealed");
        assert!(opens(c, &ana, &ana_token, &stored).await.is_some());
    }
    let inbox = messages(c, &ana, &ana_token, "&folder=inbox").await;
    assert_eq!(
        inbox.len(),
        2,
        "the group mail and lunch stay in the Inbox: {inbox:?}"
    );
    // A script that does not compile is refused with its line and column.
    let (status, _, bad) = c
        .call(
            reqwest::Method::PUT,
            &format!("/v1/accounts/{ana}/sieve/broken"),
            Some(&ana_token),
            Some(json!({"content": "require \"fileinto\";\nif header :is {\n"})),
        )
        .await;
    assert_eq!(status, 422, "{bad}");
    assert!(field(&bad, "detail").contains("line 2"), "{bad}");

    // --- Vacation: one reply per sender within :days; none to lists or auto-replies.
    let (status, _, away) = c
        .call(
            reqwest::Method::PUT,
            &format!("/v1/accounts/{carl}/sieve/away"),
            Some(&carl_token),
            Some(json!({"content": "require \"vacation\";\r\nvacation :days 7 :subject \"Away\" \"I am away until Monday.\";\r\n", "active": true})),
        )
        .await;
    assert_eq!(status, 200, "{away}");
    let before = w.sink.messages().len();
    delivered(c, "peer@remote.test", "carl@acme.test", "Question", "one").await;
    delivered(
        c,
        "peer@remote.test",
        "carl@acme.test",
        "Question again",
        "two",
    )
    .await;
    for (from, extra) in [
        ("robot@remote.test", "Auto-Submitted: auto-replied\r\n"),
        ("list@remote.test", "List-Id: <news.remote.test>\r\n"),
    ] {
        let (rcpt, data) = smtp(
            c,
            from,
            "carl@acme.test",
            &message(from, "carl@acme.test", "Automatic", "x", extra),
        )
        .await;
        assert_eq!((rcpt.0, data.0), (250, 250), "{data:?}");
    }
    w.sink.wait_for(before + 1, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let replies: Vec<Value> = w.sink.messages()[before..].to_vec();
    assert_eq!(
        replies.len(),
        1,
        "one reply in all: {replies:?}\n{}",
        std::fs::read_to_string(&c.log).unwrap_or_default()
    );
    let reply = &replies[0];
    assert_eq!(reply["rcpt_tos"], json!(["peer@remote.test"]));
    assert!(
        reply["mail_from"] == "<>" || reply["mail_from"] == "",
        "RFC 5230: the null sender: {reply}"
    );
    let data = field(reply, "data");
    assert!(data.contains("I am away until Monday."), "{data}");
    assert!(
        data.to_ascii_lowercase()
            .contains("auto-submitted: auto-replied"),
        "{data}"
    );
    assert!(
        reply["dkim"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["verified"] == true),
        "the reply is DKIM-signed: {reply}"
    );

    // --- Forwarding: SRS and ARC at standard; nothing at sealed without a key.
    let (status, _, refused) = c
        .call(
            reqwest::Method::PUT,
            &format!("/v1/accounts/{carl}/forwarding"),
            Some(&carl_token),
            Some(json!({"to": "far@remote.test"})),
        )
        .await;
    assert_eq!(
        status, 403,
        "external forwarding is off by default: {refused}"
    );
    let (status, _, _) = c
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/tenants/{}", w.tenant),
            Some(&w.operator),
            Some(json!({"external_forwarding": true})),
        )
        .await;
    assert_eq!(status, 200);
    // Carl's vacation would answer too: turn it off first.
    let (status, _, _) = c
        .call(
            reqwest::Method::PUT,
            &format!("/v1/accounts/{carl}/sieve/away"),
            Some(&carl_token),
            Some(json!({"content": "keep;", "active": false})),
        )
        .await;
    assert_eq!(status, 200);
    for (who, token) in [(&carl, &carl_token), (&ana, &ana_token)] {
        let (status, _, set) = c
            .call(
                reqwest::Method::PUT,
                &format!("/v1/accounts/{who}/forwarding"),
                Some(token),
                Some(json!({"to": "far@remote.test", "keep": true})),
            )
            .await;
        assert_eq!(status, 200, "{set}");
    }
    let before = w.sink.messages().len();
    delivered(
        c,
        "origin@remote.test",
        "carl@acme.test",
        "Forward me",
        "to far away",
    )
    .await;
    let forwarded = w.sink.wait_for(before + 1, Duration::from_secs(30)).await;
    let copy = &forwarded[before];
    let envelope = field(copy, "mail_from");
    assert!(
        envelope.starts_with("SRS0=") && envelope.ends_with("=remote.test=origin@acme.test"),
        "{envelope}"
    );
    assert_eq!(
        copy["arc"]["cv"], "pass",
        "dkimpy verifies the ARC set: {copy}"
    );
    assert!(field(copy, "data").contains("to far away"));
    // Sealed, and the destination has no key: nothing leaves, ana is told.
    let inbox_before = messages(c, &ana, &ana_token, "&folder=inbox").await.len();
    delivered(
        c,
        "origin@remote.test",
        "ana@acme.test",
        "Private",
        "stays here",
    )
    .await;
    wait_for("the notice", || async {
        messages(c, &ana, &ana_token, "&folder=inbox").await.len() >= inbox_before + 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(w.sink.messages().len(), before + 1, "nothing of ana's left");
    let inbox = messages(c, &ana, &ana_token, "&folder=inbox").await;
    assert_eq!(
        inbox.len(),
        inbox_before + 2,
        "the message stays, with one notice: {inbox:?}"
    );
    delivered(
        c,
        "origin@remote.test",
        "ana@acme.test",
        "Private 2",
        "stays too",
    )
    .await;
    let inbox = messages(c, &ana, &ana_token, "&folder=inbox").await;
    assert_eq!(
        inbox.len(),
        inbox_before + 3,
        "the notice is sent once: {inbox:?}"
    );
}
