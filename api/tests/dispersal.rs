//! Dispersed storage end to end: mail at `dispersed` arrives over SMTP, is
//! sealed, cut into 2-of-3 shards on three sites (local folders labelled
//! FR, DE and CH, or real S3 servers on loopback), and read back through
//! the API while sites are down; placement refusals; scrub, repair,
//! evacuation and crypto-shredding; the operator's view of the sites.

mod support;

use std::path::{Path, PathBuf};

use mail::dispersed::{DispersalConfig, Dispersed, Quiet};
use mail::inbound::{Envelope, Inbound};
use serde_json::json;
use support::{PASSWORD, SmtpProbe, TestApp, gpg};
use tenants::store::StoredContent;
use tenants::{Backend, MessageId, on_both_backends};
use uuid::Uuid;
use vault::dispersal::Params;
use vault::sites::{SiteConfig, SiteOptions, Sites};

on_both_backends!(
    dispersed_mail_reads_back_identical_with_a_site_down,
    a_policy_that_cannot_be_placed_is_refused_not_downgraded,
    scrub_finds_a_corrupt_shard_on_disk_and_repair_restores_it,
    evacuation_empties_a_site_and_every_object_still_reads,
    deleting_a_message_deletes_its_shards,
    tenants_choose_redundancy_within_the_operators_bounds,
    the_operator_sees_the_sites_and_no_one_else_does,
    s3_sites_keep_writing_and_reading_at_3_of_5_with_one_down,
    anyone_signed_in_reads_where_mail_may_be_stored,
);

const MARKER: &str = "DISPERSAL-PLAINTEXT-MARKER-7a1e";

async fn dispersed_user(app: &TestApp, e: &support::Enterprise, local: &str) -> (String, String) {
    let id = app.user(e, local).await;
    let token = app.login(&format!("{local}@{}", e.domain), PASSWORD).await;
    app.patch(
        &format!("/v1/accounts/{id}"),
        &token,
        json!({"level": "dispersed"}),
    )
    .await
    .ok(200);
    (id, token)
}

/// Sends one message over SMTP; returns the final reply to DATA.
async fn send(app: &TestApp, to: &str, subject: &str) -> (u16, String) {
    let mut smtp = SmtpProbe::connect(app.smtp).await;
    smtp.expect("EHLO client.sender.test", 250, "").await;
    smtp.expect("MAIL FROM:<alice@sender.test>", 250, "").await;
    smtp.expect(&format!("RCPT TO:<{to}>"), 250, "").await;
    smtp.expect("DATA", 354, "").await;
    let message = support::message(
        "alice@sender.test",
        to,
        subject,
        &format!("{MARKER}\r\nSecret plans."),
    );
    smtp.send(&message).await;
    smtp.send(b"\r\n.\r\n").await;
    smtp.read_reply().await
}

fn shard_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(shard_files(&path));
        } else if path.to_string_lossy().contains("/shards/") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn sites_dir(app: &TestApp) -> PathBuf {
    app.data_dir.path().join("sites")
}

async fn only_message_id(app: &TestApp, account: &str, token: &str) -> String {
    let listed = app
        .get(&format!("/v1/accounts/{account}/messages"), token)
        .await;
    let items = listed.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["level"], "dispersed");
    items[0]["id"].as_str().unwrap().to_owned()
}

async fn raw(app: &TestApp, message: &str, token: &str) -> support::Reply {
    app.raw(
        app.http
            .get(format!("{}/v1/messages/{message}/raw", app.base))
            .bearer_auth(token),
    )
    .await
}

async fn dispersed_mail_reads_back_identical_with_a_site_down(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (id, token) = dispersed_user(&app, &e, "bob").await;
    let (code, text) = send(&app, "bob@acme.test", "Dispersed").await;
    assert_eq!(code, 250, "{text}");
    let message = only_message_id(&app, &id, &token).await;

    // The database holds no bytes of it, only the manifest.
    let stored = app
        .store
        .message_content(MessageId(message.parse().unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(stored, StoredContent::Dispersed), "{stored:?}");
    let object = app
        .store
        .stored_object(message.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((object.k, object.n, object.good()), (2, 3, 3));
    // One shard per site, on three sites in three countries.
    let mut sites: Vec<String> = object
        .shards
        .iter()
        .map(|s| s.site.clone().unwrap())
        .collect();
    sites.sort();
    assert_eq!(sites, ["site-ch", "site-de", "site-fr"]);
    let files = shard_files(&sites_dir(&app));
    assert_eq!(files.len(), 3, "{files:?}");
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
            "plaintext in {}",
            file.display()
        );
    }

    let whole = raw(&app, &message, &token).await;
    assert_eq!(whole.status, 200);
    let sealed = whole.text().to_owned();
    assert!(
        sealed.contains("multipart/encrypted") && !sealed.contains(MARKER),
        "{sealed}"
    );

    // Any two shards are the sealed message.
    let shards: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let object_id: Uuid = message.parse().unwrap();
    for pair in [[0, 1], [0, 2], [1, 2]] {
        let refs: Vec<&[u8]> = pair.iter().map(|&i| shards[i].as_slice()).collect();
        assert_eq!(
            vault::dispersal::decode(*object_id.as_bytes(), &refs).unwrap(),
            sealed.as_bytes()
        );
    }

    // One site down (its folder gone): the same bytes come back.
    let de = sites_dir(&app).join("site-de");
    std::fs::rename(&de, sites_dir(&app).join("site-de.offline")).unwrap();
    let again = raw(&app, &message, &token).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.text(), sealed, "identical with a site down");
    // A scrub notices the missing shard and marks it for repair.
    let scrub = app.dispersed.scrub(&Quiet, false).await.unwrap();
    assert_eq!((scrub.shards_checked, scrub.missing), (3, 1), "{scrub:?}");
    let object = app.store.stored_object(object_id).await.unwrap().unwrap();
    assert_eq!(object.good(), 2, "{:?}", object.shards);

    // Two sites down: fewer than k shards, a clear 503, never wrong bytes.
    let ch = sites_dir(&app).join("site-ch");
    std::fs::rename(&ch, sites_dir(&app).join("site-ch.offline")).unwrap();
    let refused = raw(&app, &message, &token).await;
    assert!(
        refused.problem(503).contains("storage sites"),
        "{:?}",
        refused.body
    );

    // And the user's key opens what was stored.
    std::fs::rename(sites_dir(&app).join("site-ch.offline"), &ch).unwrap();
    let secret = app
        .get(&format!("/v1/accounts/{id}/secret-key"), &token)
        .await;
    let home = support::gpg_home();
    let (ok, _, err) = gpg(
        home.path(),
        &["--passphrase", PASSWORD, "--import"],
        secret.text().as_bytes(),
    );
    assert!(ok, "{err}");
    let armored = &sealed[sealed.find("-----BEGIN PGP MESSAGE-----").unwrap()..];
    let (ok, plain, err) = gpg(
        home.path(),
        &["--passphrase", PASSWORD, "--decrypt"],
        armored.as_bytes(),
    );
    assert!(ok, "gpg --decrypt failed: {err}");
    assert!(String::from_utf8_lossy(&plain).contains(MARKER));
}

async fn a_policy_that_cannot_be_placed_is_refused_not_downgraded(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (id, token) = dispersed_user(&app, &e, "bob").await;
    // FR and DE only, 2-of-3: a third shard would need a third country.
    app.patch(
        &format!("/v1/tenants/{}", e.tenant_id),
        &app.operator_token,
        json!({"policy": {"min_level": "standard", "allowed_jurisdictions": ["FR", "DE"]}}),
    )
    .await
    .ok(200);
    let (code, text) = send(&app, "bob@acme.test", "Not placeable").await;
    assert_eq!(code, 451, "the sender must retry: {text}");
    assert!(text.starts_with("4.3.0"), "{text}");
    let listed = app
        .get(&format!("/v1/accounts/{id}/messages"), &token)
        .await;
    assert_eq!(
        listed.ok(200)["items"].as_array().unwrap().len(),
        0,
        "nothing stored below the policy"
    );
    assert!(
        shard_files(&sites_dir(&app)).is_empty(),
        "no shard left behind"
    );
    assert_eq!(
        app.store
            .storage(tenants::TenantId(e.tenant_id.parse().unwrap()))
            .await
            .unwrap()
            .0,
        0
    );

    // Sending from that account keeps a Sent copy at its level: refused too, clearly.
    let sent = app
        .post(
            &format!("/v1/accounts/{id}/messages"),
            &token,
            json!({"to": ["carol@elsewhere.test"], "subject": "hi", "text": "hello"}),
        )
        .await;
    let detail = sent.problem(503);
    assert!(detail.contains("policy"), "{detail}");

    // With CH allowed again, the same message is accepted.
    app.patch(
        &format!("/v1/tenants/{}", e.tenant_id),
        &app.operator_token,
        json!({"policy": {"min_level": "standard", "allowed_jurisdictions": ["FR", "DE", "CH"]}}),
    )
    .await
    .ok(200);
    let (code, text) = send(&app, "bob@acme.test", "Placeable").await;
    assert_eq!(code, 250, "{text}");
}

async fn scrub_finds_a_corrupt_shard_on_disk_and_repair_restores_it(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (id, token) = dispersed_user(&app, &e, "bob").await;
    for n in 0..3 {
        assert_eq!(
            send(&app, "bob@acme.test", &format!("message {n}")).await.0,
            250
        );
    }
    let files = shard_files(&sites_dir(&app));
    assert_eq!(files.len(), 9);
    // Files sort by site, then object: [4] and [6] are shards of two different objects.
    let bent = &files[4];
    let original = std::fs::read(bent).unwrap();
    let mut bad = original.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x01;
    std::fs::write(bent, &bad).unwrap();
    let gone = &files[6];
    let kept = std::fs::read(gone).unwrap();
    std::fs::remove_file(gone).unwrap();

    let report = app.dispersed.scrub(&Quiet, false).await.unwrap();
    assert_eq!(
        (
            report.objects,
            report.shards_checked,
            report.corrupt,
            report.missing
        ),
        (3, 9, 1, 1),
        "{report:?}"
    );
    let (_, levels) = app.store.dispersal_status().await.unwrap();
    assert_eq!(
        levels
            .iter()
            .map(|l| (l.good, l.objects))
            .collect::<Vec<_>>(),
        [(2, 2), (3, 1)]
    );

    let report = app.dispersed.repair(&Quiet).await.unwrap();
    assert_eq!(report.rebuilt, 2, "{report:?}");
    assert!(report.skipped.is_empty(), "{report:?}");
    assert_eq!(
        std::fs::read(bent).unwrap(),
        original,
        "the corrupt shard is rebuilt byte for byte"
    );
    assert_eq!(
        std::fs::read(gone).unwrap(),
        kept,
        "the missing shard is rebuilt byte for byte"
    );
    let (_, levels) = app.store.dispersal_status().await.unwrap();
    assert_eq!(
        levels
            .iter()
            .map(|l| (l.good, l.objects))
            .collect::<Vec<_>>(),
        [(3, 3)]
    );

    // A second scrub finds nothing wrong, and every message reads.
    let clean = app.dispersed.scrub(&Quiet, true).await.unwrap();
    assert_eq!((clean.corrupt, clean.missing), (0, 0));
    let listed = app
        .get(&format!("/v1/accounts/{id}/messages"), &token)
        .await;
    for item in listed.ok(200)["items"].as_array().unwrap() {
        assert_eq!(
            raw(&app, item["id"].as_str().unwrap(), &token).await.status,
            200
        );
    }
}

/// An `Inbound` storing on `configs`, over the app's database.
fn inbound_on(
    app: &TestApp,
    configs: &[SiteConfig],
    k: u8,
    n: u8,
) -> (Inbound, std::sync::Arc<Dispersed>) {
    let sites = Sites::open(configs, SiteOptions::default()).unwrap();
    let dispersed = std::sync::Arc::new(
        Dispersed::new(
            app.store.clone(),
            sites,
            DispersalConfig {
                default: Params::new(k, n).unwrap(),
                write_quorum: 0,
                min_k: 2,
                max_n: 8,
            },
        )
        .unwrap(),
    );
    let master = vault::at_rest::MasterKey::load_or_create(app.data_dir.path()).unwrap();
    let inbound = Inbound::new(app.store.clone(), master, None, support::MAIL_HOST.into())
        .with_dispersed(dispersed.clone());
    (inbound, dispersed)
}

async fn deliver(
    inbound: &Inbound,
    to: &str,
    subject: &str,
) -> Result<MessageId, mail::reply::Reply> {
    let recipients = inbound.check_recipient(to).await?;
    let message = support::message("alice@sender.test", to, subject, MARKER);
    let ids = inbound
        .accept_local(
            &Envelope {
                from: "alice@sender.test".into(),
                recipients,
            },
            &message,
            None,
        )
        .await?;
    Ok(ids[0])
}

fn local(dir: &Path, name: &str, jurisdiction: &str) -> SiteConfig {
    SiteConfig {
        name: name.into(),
        jurisdiction: jurisdiction.into(),
        path: Some(dir.join(name)),
        s3: None,
    }
}

async fn evacuation_empties_a_site_and_every_object_still_reads(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (_, _) = dispersed_user(&app, &e, "bob").await;
    let dir = app.data_dir.path().join("four");
    let configs = [
        local(&dir, "fr", "FR"),
        local(&dir, "de", "DE"),
        local(&dir, "ch", "CH"),
        local(&dir, "is", "IS"),
    ];
    let (inbound, dispersed) = inbound_on(&app, &configs, 2, 3);
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(
            deliver(&inbound, "bob@acme.test", &format!("m{n}"))
                .await
                .unwrap(),
        );
    }
    let on_de = dispersed
        .sites()
        .get("de")
        .unwrap()
        .list_shards()
        .await
        .unwrap()
        .len();
    assert!(on_de > 0, "placement used every site");
    let before: Vec<Vec<u8>> = {
        let mut all = Vec::new();
        for id in &ids {
            all.push(dispersed.read(id.0).await.unwrap());
        }
        all
    };

    // An explicit target that would put two shards in one country is refused per object.
    let report = dispersed.evacuate("de", None, &Quiet).await.unwrap();
    assert!(report.skipped.is_empty(), "{report:?}");
    assert_eq!(report.moved as usize, on_de);
    assert!(
        dispersed
            .sites()
            .get("de")
            .unwrap()
            .list_shards()
            .await
            .unwrap()
            .is_empty(),
        "the site holds nothing"
    );
    for (id, bytes) in ids.iter().zip(&before) {
        assert_eq!(&dispersed.read(id.0).await.unwrap(), bytes);
        let object = app.store.stored_object(id.0).await.unwrap().unwrap();
        let mut countries: Vec<&str> = object
            .shards
            .iter()
            .map(|s| {
                dispersed
                    .sites()
                    .get(s.site.as_deref().unwrap())
                    .unwrap()
                    .jurisdiction
                    .as_str()
            })
            .collect();
        countries.sort_unstable();
        countries.dedup();
        assert_eq!(
            countries.len(),
            3,
            "no country holds two shards after evacuation"
        );
        assert!(
            object
                .shards
                .iter()
                .all(|s| s.site.as_deref() != Some("de"))
        );
    }
    // Nothing left on the evacuated site: evacuating it again has nothing to do.
    let again = dispersed.evacuate("de", Some("fr"), &Quiet).await.unwrap();
    assert_eq!(again.objects, 0);
    // Moving everything from FR onto IS is refused object by object where
    // IS already holds a shard: nothing is lost or doubled.
    let report = dispersed.evacuate("fr", Some("is"), &Quiet).await.unwrap();
    for (object, why) in &report.skipped {
        assert!(why.contains("already holds"), "{object}: {why}");
    }
    for (id, bytes) in ids.iter().zip(&before) {
        assert_eq!(&dispersed.read(id.0).await.unwrap(), bytes);
    }
}

async fn deleting_a_message_deletes_its_shards(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (id, token) = dispersed_user(&app, &e, "bob").await;
    assert_eq!(send(&app, "bob@acme.test", "to delete").await.0, 250);
    let message = only_message_id(&app, &id, &token).await;
    assert_eq!(shard_files(&sites_dir(&app)).len(), 3);
    let used = app
        .store
        .storage(tenants::TenantId(e.tenant_id.parse().unwrap()))
        .await
        .unwrap()
        .0;
    assert!(used > 0);

    // One site is down during the delete: its shard stays until the repair pass.
    let fr = sites_dir(&app).join("site-fr");
    let offline = sites_dir(&app).join("site-fr.offline");
    std::fs::rename(&fr, &offline).unwrap();
    std::fs::write(&fr, b"not a folder").unwrap();
    assert_eq!(
        app.delete(&format!("/v1/messages/{message}"), &token)
            .await
            .status,
        204
    );
    assert_eq!(shard_files(&sites_dir(&app).join("site-de")).len(), 0);
    assert_eq!(shard_files(&sites_dir(&app).join("site-ch")).len(), 0);
    assert_eq!(
        app.store
            .storage(tenants::TenantId(e.tenant_id.parse().unwrap()))
            .await
            .unwrap()
            .0,
        0
    );
    assert_eq!(raw(&app, &message, &token).await.status, 404);

    std::fs::remove_file(&fr).unwrap();
    std::fs::rename(&offline, &fr).unwrap();
    assert_eq!(shard_files(&fr).len(), 1, "the shard the down site kept");
    let report = app.dispersed.repair(&Quiet).await.unwrap();
    assert_eq!(report.purged, 1, "{report:?}");
    assert!(shard_files(&sites_dir(&app)).is_empty());
    assert!(
        app.store
            .stored_object(message.parse().unwrap())
            .await
            .unwrap()
            .is_none(),
        "the manifest forgets it"
    );
}

async fn tenants_choose_redundancy_within_the_operators_bounds(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let path = format!("/v1/tenants/{}", e.tenant_id);
    let policy = |k: u8, n: u8| json!({"policy": {"min_level": "standard", "allowed_jurisdictions": [], "redundancy": {"k": k, "n": n}}});
    let too_many = app
        .patch(&path, &app.operator_token, policy(3, 4))
        .await
        .problem(422);
    assert!(
        too_many.contains("needs 4 sites") && too_many.contains("has 3"),
        "{too_many}"
    );
    let one = app
        .patch(&path, &app.operator_token, policy(1, 3))
        .await
        .problem(422);
    assert!(one.contains("at least 2"), "{one}");
    let none = app
        .patch(&path, &app.operator_token, policy(3, 3))
        .await
        .problem(422);
    assert!(none.contains("n must exceed k"), "{none}");
    let tenant = app.patch(&path, &app.operator_token, policy(2, 3)).await;
    assert_eq!(
        tenant.ok(200)["policy"]["redundancy"],
        json!({"k": 2, "n": 3})
    );
    let read = app.get(&path, &app.operator_token).await;
    assert_eq!(
        read.ok(200)["policy"]["redundancy"],
        json!({"k": 2, "n": 3})
    );
    // Without it, the operator's default applies and the field is absent.
    let cleared = app
        .patch(
            &path,
            &app.operator_token,
            json!({"policy": {"min_level": "standard", "allowed_jurisdictions": []}}),
        )
        .await;
    assert!(cleared.ok(200)["policy"].get("redundancy").is_none());
}

async fn the_operator_sees_the_sites_and_no_one_else_does(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (_, _) = dispersed_user(&app, &e, "bob").await;
    assert_eq!(send(&app, "bob@acme.test", "counted").await.0, 250);
    std::fs::remove_dir_all(sites_dir(&app).join("site-ch")).unwrap();
    std::fs::write(
        sites_dir(&app).join("site-ch"),
        b"a file where a folder should be",
    )
    .unwrap();

    let report = app.get("/v1/sites", &app.operator_token).await;
    let body = report.ok(200);
    assert_eq!(body["default_redundancy"], json!({"k": 2, "n": 3}));
    assert_eq!(body["write_quorum"], 3);
    let sites = body["sites"].as_array().unwrap();
    let names: Vec<&str> = sites.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["site-ch", "site-de", "site-fr"]);
    let ch = &sites[0];
    assert_eq!(
        (ch["jurisdiction"].as_str(), ch["up"].as_bool()),
        (Some("CH"), Some(false)),
        "{ch}"
    );
    assert!(ch["error"].as_str().is_some_and(|e| !e.is_empty()), "{ch}");
    for site in &sites[1..] {
        assert_eq!(site["up"], true, "{site}");
        assert_eq!(site["backend"], "local");
        assert_eq!(site["shards"], 1);
        assert!(site["bytes"].as_i64().unwrap() > 0);
    }
    assert_eq!(
        body["redundancy"],
        json!([{"k": 2, "n": 3, "good": 3, "objects": 1}])
    );

    let admin = app.get("/v1/sites", &e.admin_token).await;
    assert!(admin.problem(403).contains("operator"));
    assert_eq!(
        app.raw(app.http.get(format!("{}/v1/sites", app.base)))
            .await
            .status,
        401
    );
}

async fn s3_sites_keep_writing_and_reading_at_3_of_5_with_one_down(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let (_, _) = dispersed_user(&app, &e, "bob").await;
    // Eight real S3 servers, one process each, in eight countries.
    let countries = ["FR", "DE", "CH", "IS", "NL", "SE", "NO", "PT"];
    let mut servers: Vec<mail::s3_site::S3Site> = std::thread::scope(|scope| {
        let starting: Vec<_> = countries
            .iter()
            .map(|c| {
                scope.spawn(move || {
                    mail::s3_site::S3Site::start(&format!("caliop-{}", c.to_lowercase()))
                })
            })
            .collect();
        starting
            .into_iter()
            .map(|s| s.join().expect("S3 site"))
            .collect()
    });
    let configs: Vec<SiteConfig> = servers
        .iter()
        .zip(countries)
        .map(|(s, c)| s.config(&format!("s3-{}", c.to_lowercase()), c))
        .collect();
    let (inbound, dispersed) = inbound_on(&app, &configs[..5], 3, 5);
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(
            deliver(&inbound, "bob@acme.test", &format!("before {n}"))
                .await
                .unwrap(),
        );
    }
    let mut before: Vec<Vec<u8>> = Vec::new();
    for id in &ids {
        let bytes = dispersed.read(id.0).await.unwrap();
        assert!(
            String::from_utf8_lossy(&bytes).contains("-----BEGIN PGP MESSAGE-----"),
            "the sealed message"
        );
        before.push(bytes);
        assert_eq!(
            app.store.stored_object(id.0).await.unwrap().unwrap().good(),
            5
        );
    }

    // One site stops: writes go on with 4 shards (the quorum), reads with any 3.
    servers[1].stop();
    for n in 0..3 {
        let id = deliver(&inbound, "bob@acme.test", &format!("after {n}"))
            .await
            .expect("write with a site down");
        let object = app.store.stored_object(id.0).await.unwrap().unwrap();
        assert_eq!(object.good(), 4, "{:?}", object.shards);
        assert_eq!(
            object.shards.iter().filter(|s| s.site.is_none()).count(),
            1,
            "one shard waits for repair"
        );
        before.push(dispersed.read(id.0).await.expect("read with a site down"));
        ids.push(id);
    }
    for (id, bytes) in ids.iter().zip(&before) {
        assert_eq!(
            &dispersed.read(id.0).await.unwrap(),
            bytes,
            "read with a site down"
        );
    }

    // A second site stops: any 3 shards still read, but a write would
    // store only 3 < 4 shards: refused, so the sender retries.
    servers[2].stop();
    for (id, bytes) in ids.iter().zip(&before) {
        assert_eq!(
            &dispersed.read(id.0).await.unwrap(),
            bytes,
            "k shards are enough"
        );
    }
    let refused = deliver(&inbound, "bob@acme.test", "refused")
        .await
        .unwrap_err();
    assert_eq!((refused.code, refused.status), (451, "4.3.0"), "{refused}");

    // The operator replaces the two dead sites: scrub notices their shards
    // are gone, repair rebuilds them on the new sites, and evacuating a
    // site afterwards leaves it empty while every object still reads.
    let replaced: Vec<SiteConfig> = [&configs[..1], &configs[3..]].concat();
    let (_, dispersed) = inbound_on(&app, &replaced, 3, 5);
    let scrub = dispersed.scrub(&Quiet, true).await.unwrap();
    // Two shards of each earlier object, one of each later one (the other never had a site).
    assert_eq!(
        (scrub.shards_checked, scrub.missing),
        (4 * 5 + 3 * 4, 4 * 2 + 3),
        "{scrub:?}"
    );
    let report = dispersed.repair(&Quiet).await.unwrap();
    assert_eq!(report.rebuilt, 4 * 2 + 3 * 2, "{report:?}");
    assert!(report.skipped.is_empty(), "{report:?}");
    for id in &ids {
        assert_eq!(
            app.store.stored_object(id.0).await.unwrap().unwrap().good(),
            5
        );
    }
    let report = dispersed.evacuate("s3-fr", None, &Quiet).await.unwrap();
    assert!(report.skipped.is_empty(), "{report:?}");
    assert_eq!(report.moved, 7);
    assert!(
        dispersed
            .sites()
            .get("s3-fr")
            .unwrap()
            .list_shards()
            .await
            .unwrap()
            .is_empty(),
        "the site holds nothing"
    );
    for (id, bytes) in ids.iter().zip(&before) {
        assert_eq!(
            &dispersed.read(id.0).await.unwrap(),
            bytes,
            "every object reads after repair and evacuation"
        );
    }
}

async fn anyone_signed_in_reads_where_mail_may_be_stored(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    app.user(&e, "user").await;
    let user = app.login("user@acme.test", support::PASSWORD).await;
    let expected =
        json!({"jurisdictions": ["CH", "DE", "FR"], "default_redundancy": {"k": 2, "n": 3}});
    for token in [&app.operator_token, &e.admin_token, &user] {
        assert_eq!(app.get("/v1/jurisdictions", token).await.ok(200), &expected);
    }
    app.send("GET", "/v1/jurisdictions", None, None)
        .await
        .problem(401);
    // What it lists is what a policy may name.
    let path = format!("/v1/tenants/{}", e.tenant_id);
    let policy = json!({"policy": {"min_level": "standard", "allowed_jurisdictions": expected["jurisdictions"]}});
    assert_eq!(
        app.patch(&path, &e.admin_token, policy).await.ok(200)["policy"]["allowed_jurisdictions"],
        expected["jurisdictions"]
    );
}
