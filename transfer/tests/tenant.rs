//! Tenant export and import between two stores with different master keys,
//! through the library: an export interrupted at a checkpoint (with bytes
//! written after it, as a crash leaves them) resumes and yields an archive
//! that imports whole; `standard` mail opens with the carried tenant key on
//! the new instance and the DKIM keys are sealed again under its master key;
//! an archive cut short imports nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use secrecy::SecretString;
use tenants::testing::fresh_store;
use tenants::*;
use vault::archive::{Recipient, Unlock};
use vault::at_rest::MasterKey;

const PASSPHRASE: &str = "a tenant on the move";

/// Crashes the export (a panic unwinds it) at its `after`-th report of progress.
struct Tripwire {
    after: u64,
    seen: AtomicU64,
}

impl transfer::Progress for Tripwire {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {
        if self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.after {
            panic!("the exporting process dies here");
        }
    }
    fn finish(&self) {}
}

async fn a_resumed_export_imports_whole(backend: Backend) {
    let source = fresh_store(backend).await;
    let target = fresh_store(if backend == Backend::Sqlite {
        Backend::Postgres
    } else {
        Backend::Sqlite
    })
    .await;
    let source_master = MasterKey::ephemeral().unwrap();
    let limits = Limits {
        max_accounts: 10,
        max_domains: 10,
        storage_quota_bytes: 1 << 30,
    };
    let tenant = source
        .create_tenant(
            "operator",
            NewTenant {
                name: "Movers".into(),
                kind: TenantKind::Enterprise,
                parent_id: None,
                limits,
                policy: Policy::default(),
            },
        )
        .await
        .unwrap();
    let dkim_keys = mail::outbound::generate_dkim_keys(&source_master, "movers.test").unwrap();
    let domain = source
        .create_domain(
            "operator",
            NewDomain {
                tenant_id: tenant.id,
                name: DomainName::parse("movers.test").unwrap(),
                verification_token: "t".into(),
                dkim_keys,
            },
        )
        .await
        .unwrap();
    // Proven on the source, with an API key there: neither is the archive's to grant.
    source
        .mark_domain_verified("operator", &domain, "dns")
        .await
        .unwrap();
    source
        .create_api_key(
            "operator",
            NewApiKey {
                tenant_id: tenant.id,
                name: "provisioning".into(),
                prefix: "cal_test".into(),
                secret_hash: "0".repeat(64),
                scopes: vec![Scope::Read, Scope::Write],
            },
        )
        .await
        .unwrap();
    let account = source
        .create_account(
            "operator",
            NewAccount {
                tenant_id: tenant.id,
                domain_id: domain.id,
                address: EmailAddress::parse("ann@movers.test").unwrap(),
                display_name: "Ann".into(),
                role: AccountRole::Admin,
                level: Level::Standard,
                password_hash: "hash".into(),
                fingerprint: "fp".into(),
                public_key: "public".into(),
                secret_key: "secret".into(),
            },
        )
        .await
        .unwrap();
    let from = Arc::new(mail::inbound::Inbound::new(
        source.clone(),
        source_master,
        None,
        "old.test".into(),
    ));
    let inbox = source
        .mailbox_of_role(account.id, Folder::Inbox)
        .await
        .unwrap();
    let mut originals = Vec::new();
    for batch in 0..6 {
        let mut messages = Vec::new();
        for n in 0..100 {
            let id = MessageId::new();
            let clear = format!("Subject: {batch}-{n}\r\n\r\nbody {batch}-{n}\r\n").into_bytes();
            let content = from.encrypt_standard(tenant.id, id, &clear).await.unwrap();
            originals.push((id, clear));
            messages.push(NewMessage {
                id,
                tenant_id: tenant.id,
                account_id: account.id,
                level: Level::Standard,
                envelope_from: "x@elsewhere.test".into(),
                envelope_to: "ann@movers.test".into(),
                subject: None,
                sender: None,
                privacy: tenants::privacy::PrivacyIndex::compute(
                    &tenants::privacy::Facts::default(),
                ),
                authentication: serde_json::json!({}),
                arrived_encrypted: false,
                rfc822_size: content.len() as i64,
                content,
                dispersed: None,
                summary: None,
                flags: vec![],
                keywords: vec![],
                received_at: None,
                verdict: None,
                mailbox: None,
            });
        }
        source.append_messages(&inbox, &messages).await.unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("movers.caliop");
    let recipient = Recipient::Passphrase {
        passphrase: SecretString::from(PASSPHRASE),
        kdf: vault::archive::KdfParams::new(1024, 1, 1).unwrap(),
    };
    let unlock = Unlock::Passphrase(SecretString::from(PASSPHRASE));

    // Interrupted at the checkpoint after the first page of messages (the
    // eighth report: one at the start, one per page), with bytes written
    // after it that never made it into a checkpoint, as a crash leaves them.
    let tripwire = Arc::new(Tripwire {
        after: 8,
        seen: AtomicU64::new(0),
    });
    let run = {
        let (from, archive, tripwire) = (from.clone(), archive.clone(), tripwire.clone());
        let recipient = Recipient::Passphrase {
            passphrase: SecretString::from(PASSPHRASE),
            kdf: vault::archive::KdfParams::new(1024, 1, 1).unwrap(),
        };
        tokio::spawn(async move {
            transfer::tenant::export(&from, tenant.id, &archive, &recipient, false, &*tripwire)
                .await
                .map(|_| ())
        })
    };
    assert!(run.await.unwrap_err().is_panic());
    let resume_file = transfer::tenant::resume_path(&archive);
    assert!(resume_file.exists(), "the checkpoint is kept");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&resume_file).unwrap()).unwrap();
    assert_eq!(
        state["counts"]["rows"]["messages"], 256,
        "stopped halfway through the messages: {state}"
    );
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&archive)
            .unwrap();
        file.write_all(&[0x5a; 5000]).unwrap();
    }

    let to = mail::inbound::Inbound::new(
        target.clone(),
        MasterKey::ephemeral().unwrap(),
        None,
        "new.test".into(),
    );
    let err = transfer::tenant::import(&to, &archive, &unlock, None, "operator", &transfer::Quiet)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            transfer::Error::Archive(vault::archive::ArchiveError::Tampered { .. })
        ),
        "the bytes after the checkpoint are no frame: {err}"
    );
    assert!(
        target.tenant(tenant.id).await.unwrap().is_none(),
        "an unfinished archive imports nothing"
    );

    let again = transfer::tenant::export(
        &from,
        tenant.id,
        &archive,
        &recipient,
        false,
        &transfer::Quiet,
    )
    .await
    .unwrap_err();
    assert!(again.to_string().contains("--resume"), "{again}");
    let summary = transfer::tenant::export(
        &from,
        tenant.id,
        &archive,
        &recipient,
        true,
        &transfer::Quiet,
    )
    .await
    .unwrap();
    assert_eq!(summary.messages, 600);
    assert!(!resume_file.exists(), "done: the checkpoint is gone");

    let imported =
        transfer::tenant::import(&to, &archive, &unlock, None, "operator", &transfer::Quiet)
            .await
            .unwrap();
    assert_eq!(
        (imported.tenants, imported.accounts, imported.messages),
        (1, 1, 600)
    );
    // Nothing that grants trust came across: the domain must be proven
    // again, and API keys are this instance's to issue.
    let moved_domain = target.domain(domain.id).await.unwrap().unwrap();
    assert_eq!(
        moved_domain.verified_at, None,
        "verified again here, not by the archive"
    );
    assert_eq!(imported.api_keys_left_out, 1);
    assert!(
        target
            .list_api_keys(
                tenant.id,
                Page {
                    after: None,
                    limit: 10
                }
            )
            .await
            .unwrap()
            .is_empty()
    );
    let warnings = imported.warnings.join("\n");
    assert!(
        warnings.contains("`movers.test` arrives unverified"),
        "{warnings}"
    );
    assert!(
        warnings.contains("1 API key(s) were not imported"),
        "{warnings}"
    );
    let moved = target
        .list_messages(
            account.id,
            None,
            None,
            Page {
                after: None,
                limit: Page::MAX_LIMIT,
            },
        )
        .await
        .unwrap();
    assert_eq!(moved.len(), 200, "a page of them");
    for (id, clear) in originals.iter().step_by(37) {
        let Some(tenants::store::StoredContent::Inline(stored)) =
            target.message_content(*id).await.unwrap()
        else {
            panic!("inline")
        };
        assert_eq!(
            &to.decrypt_standard(tenant.id, *id, &stored).await.unwrap(),
            clear,
            "opens under the carried tenant key"
        );
    }
    let moved_tenant = target.tenant(tenant.id).await.unwrap().unwrap();
    assert_eq!(
        moved_tenant.storage_used_bytes,
        source
            .tenant(tenant.id)
            .await
            .unwrap()
            .unwrap()
            .storage_used_bytes
    );
    let keys = target.dkim_keys(domain.id).await.unwrap();
    assert!(!keys.is_empty());
    for key in keys {
        use secrecy::ExposeSecret;
        to.master()
            .open_secret(
                &mail::outbound::dkim_key_context("movers.test"),
                key.private_key.expose_secret(),
            )
            .expect("the DKIM key is sealed under the new master key");
        assert!(
            from.master()
                .open_secret(
                    &mail::outbound::dkim_key_context("movers.test"),
                    key.private_key.expose_secret()
                )
                .is_err()
        );
    }
    // A wrong passphrase is told as such.
    let wrong = transfer::tenant::import(
        &to,
        &archive,
        &Unlock::Passphrase(SecretString::from("nope")),
        None,
        "operator",
        &transfer::Quiet,
    )
    .await
    .unwrap_err();
    assert!(wrong.to_string().contains("wrong passphrase"), "{wrong}");
}

on_both_backends!(a_resumed_export_imports_whole);

/// An archive is authenticated by a key its exporter chose, so a tenant
/// admin can forge one: a row that names a tenant outside the archive
/// refuses the whole of it.
async fn a_forged_archive_cannot_reach_other_tenants(backend: Backend) {
    let source = fresh_store(backend).await;
    let target = fresh_store(backend).await;
    let limits = Limits {
        max_accounts: 10,
        max_domains: 10,
        storage_quota_bytes: 1 << 30,
    };
    let new_tenant = |name: &str| NewTenant {
        name: name.into(),
        kind: TenantKind::Enterprise,
        parent_id: None,
        limits,
        policy: Policy::default(),
    };
    let leaving = source
        .create_tenant("operator", new_tenant("Leaving"))
        .await
        .unwrap();
    let victim = target
        .create_tenant("operator", new_tenant("Victim"))
        .await
        .unwrap();
    let from = mail::inbound::Inbound::new(
        source.clone(),
        MasterKey::ephemeral().unwrap(),
        None,
        "old.test".into(),
    );
    let to = mail::inbound::Inbound::new(
        target.clone(),
        MasterKey::ephemeral().unwrap(),
        None,
        "new.test".into(),
    );
    let dir = tempfile::tempdir().unwrap();
    let honest = dir.path().join("honest.caliop");
    let kdf = || vault::archive::KdfParams::new(1024, 1, 1).unwrap();
    let recipient = Recipient::Passphrase {
        passphrase: SecretString::from(PASSPHRASE),
        kdf: kdf(),
    };
    transfer::tenant::export(
        &from,
        leaving.id,
        &honest,
        &recipient,
        false,
        &transfer::Quiet,
    )
    .await
    .unwrap();

    // Re-written by its exporter with an API key for the victim tenant.
    let unlock = Unlock::Passphrase(SecretString::from(PASSPHRASE));
    let mut reader = vault::archive::ArchiveReader::open(
        std::fs::File::open(&honest).unwrap(),
        &unlock,
        1 << 20,
    )
    .unwrap();
    let forged = dir.path().join("forged.caliop");
    let (mut writer, _) = vault::archive::ArchiveWriter::create(
        std::fs::File::create(&forged).unwrap(),
        &recipient,
        reader.label(),
    )
    .unwrap();
    let mut injected = false;
    while let Some((kind, bytes)) = reader.next_record().unwrap() {
        let mut bytes = bytes;
        if kind == 4 && !injected {
            let key = serde_json::json!({"t": "api_keys", "r": {
                "id": uuid::Uuid::now_v7().to_string(), "tenant_id": victim.id.0.to_string(), "name": "backdoor",
                "prefix": "cal_x", "secret_hash": "known", "scopes": "read write", "created_by": "forger",
                "created_at": "2026-01-01T00:00:00Z", "last_used_at": null, "revoked_at": null}});
            writer.write_record(2, key.to_string().as_bytes()).unwrap();
            let mut trailer: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let n = trailer["rows"]["api_keys"].as_u64().unwrap_or(0);
            trailer["rows"]["api_keys"] = (n + 1).into();
            bytes = trailer.to_string().into_bytes();
            injected = true;
        }
        writer.write_record(kind, &bytes).unwrap();
    }
    writer.finish().unwrap();
    assert!(injected);

    let err = transfer::tenant::import(&to, &forged, &unlock, None, "operator", &transfer::Quiet)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("reaches outside its own tenants"),
        "{err}"
    );
    assert!(
        target.tenant(leaving.id).await.unwrap().is_none(),
        "nothing imported"
    );
    assert!(
        target
            .list_api_keys(
                victim.id,
                Page {
                    after: None,
                    limit: 10
                }
            )
            .await
            .unwrap()
            .is_empty()
    );
    // The honest archive imports.
    transfer::tenant::import(&to, &honest, &unlock, None, "operator", &transfer::Quiet)
        .await
        .unwrap();
    assert!(target.tenant(leaving.id).await.unwrap().is_some());
}

on_both_backends!(a_forged_archive_cannot_reach_other_tenants);
