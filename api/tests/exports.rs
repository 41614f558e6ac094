//! `POST /v1/tenants/{tenant_id}/export`: a tenant's administrator gets the
//! whole tenant as an archive encrypted to a passphrase, written by a job,
//! through a link that works once and needs no sign-in.

mod support;

use serde_json::json;
use support::{PASSWORD, spawn};
use tenants::{Backend, on_both_backends};
use vault::archive::{ArchiveReader, Unlock};

const PASSPHRASE: &str = "a passphrase for the move";

async fn the_admin_gets_the_archive_once(backend: Backend) {
    let app = spawn(backend).await;
    let acme = app.enterprise("acme.test", 5).await;
    let other = app.enterprise("other.test", 5).await;
    app.user(&acme, "alice").await;
    let alice = app.login("alice@acme.test", PASSWORD).await;
    let path = format!("/v1/tenants/{}/export", acme.tenant_id);

    assert!(
        app.post(&path, &alice, json!({"passphrase": PASSPHRASE}))
            .await
            .problem(403)
            .contains("administrator")
    );
    assert_eq!(
        app.post(&path, &other.admin_token, json!({"passphrase": PASSPHRASE}))
            .await
            .status,
        404
    );
    assert!(
        app.post(
            &path,
            &acme.admin_token,
            json!({"passphrase": "short", "password": PASSWORD})
        )
        .await
        .problem(422)
        .contains("at least 12")
    );
    assert!(
        app.post(&path, &acme.admin_token, json!({"password": PASSWORD}))
            .await
            .problem(422)
            .contains("passphrase")
    );
    assert!(
        app.post(
            &path,
            &acme.admin_token,
            json!({"openpgp_public_key": "not a key", "password": PASSWORD})
        )
        .await
        .problem(422)
        .contains("OpenPGP")
    );

    let created = app
        .post(
            &path,
            &acme.admin_token,
            json!({"passphrase": PASSPHRASE, "password": PASSWORD}),
        )
        .await;
    let body = created.ok(202).clone();
    assert_eq!(body["export"]["state"], "queued");
    let link = format!("{}{}", app.base, body["download_url"].as_str().unwrap());
    let audit = app
        .get(
            &format!("/v1/tenants/{}/audit", acme.tenant_id),
            &acme.admin_token,
        )
        .await;
    assert_eq!(audit.ok(200)["items"][0]["action"], "tenant.export");
    assert!(
        !audit.text().contains(PASSPHRASE),
        "no secret in the audit log"
    );
    let early = app.raw(app.http.get(&link)).await;
    assert_eq!(early.status, 404, "not before it is written");

    // The job writes it; no passphrase stays behind.
    let workers = worker::caliop_worker(
        app.worker_context(1, std::time::Duration::from_secs(1)),
        "test",
    );
    for _ in 0..50 {
        if !workers.run_one("test").await {
            break;
        }
    }
    let list = app
        .get(
            &format!("/v1/tenants/{}/exports", acme.tenant_id),
            &acme.admin_token,
        )
        .await;
    let export = &list.ok(200)["items"][0];
    assert_eq!(export["state"], "ready", "{export}");
    assert!(!list.text().contains(PASSPHRASE));

    let tampered = app.raw(app.http.get(format!("{link}x"))).await;
    assert_eq!(tampered.status, 404, "a wrong token");
    let download = app.http.get(&link).send().await.unwrap();
    assert_eq!(download.status().as_u16(), 200);
    let bytes = download.bytes().await.unwrap().to_vec();
    assert_eq!(Some(bytes.len() as u64), export["bytes"].as_u64());
    let mut reader = ArchiveReader::open(
        std::io::Cursor::new(&bytes),
        &Unlock::Passphrase(PASSPHRASE.to_owned().into()),
        1 << 20,
    )
    .unwrap();
    assert_eq!(reader.label(), "caliop-tenant-export");
    let (_, header) = reader.next_record().unwrap().unwrap();
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    assert_eq!(header["tenant_id"], acme.tenant_id.as_str());
    let mut addresses = Vec::new();
    while let Some((kind, record)) = reader.next_record().unwrap() {
        if kind == 2 {
            let row: serde_json::Value = serde_json::from_slice(&record).unwrap();
            if row["t"] == "accounts" {
                addresses.push(row["r"]["address"].as_str().unwrap().to_owned());
            }
        }
    }
    addresses.sort();
    assert_eq!(
        addresses,
        ["admin@acme.test", "alice@acme.test"],
        "the tenant's accounts, and no one else's"
    );

    let again = app.raw(app.http.get(&link)).await;
    assert_eq!(again.status, 404, "the link works once");
    let left: Vec<_> = std::fs::read_dir(app.data_dir.path().join("exports"))
        .unwrap()
        .flatten()
        .collect();
    assert!(
        left.is_empty(),
        "the archive left the server with its download: {left:?}"
    );
    let list = app
        .get(
            &format!("/v1/tenants/{}/exports", acme.tenant_id),
            &acme.admin_token,
        )
        .await;
    assert_eq!(list.ok(200)["items"][0]["state"], "downloaded");

    // To an OpenPGP key instead: it opens with that key's secret half only.
    let key =
        vault::openpgp::AccountKey::generate("Acme ops <ops@acme.test>", "key passphrase").unwrap();
    let created = app
        .post(
            &path,
            &acme.admin_token,
            json!({"openpgp_public_key": key.public_armored, "password": PASSWORD}),
        )
        .await;
    let link = format!(
        "{}{}",
        app.base,
        created.ok(202)["download_url"].as_str().unwrap()
    );
    for _ in 0..50 {
        if !workers.run_one("test").await {
            break;
        }
    }
    let bytes = app
        .http
        .get(&link)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let unlock = Unlock::OpenPgp {
        secret_key_armored: key.secret_armored.clone(),
        passphrase: "key passphrase".to_owned().into(),
    };
    let mut reader = ArchiveReader::open(std::io::Cursor::new(&bytes), &unlock, 1 << 20).unwrap();
    assert_eq!(reader.label(), "caliop-tenant-export");
    assert!(reader.next_record().unwrap().is_some());
    let other =
        vault::openpgp::AccountKey::generate("Someone <else@other.test>", "other passphrase")
            .unwrap();
    let wrong = Unlock::OpenPgp {
        secret_key_armored: other.secret_armored,
        passphrase: "other passphrase".to_owned().into(),
    };
    assert!(
        ArchiveReader::open(std::io::Cursor::new(&bytes), &wrong, 1 << 20).is_err(),
        "no other key opens it"
    );
}

on_both_backends!(the_admin_gets_the_archive_once);
