//! A disclosure for a request scoped to one account and one month holds
//! exactly that account's messages of that month, sealed ones as the
//! ciphertext they are stored as, and nothing of any other account; the
//! archive's SHA-256 and signature are in the register and the signature
//! verifies with the instance key. A request without legal basis yields nothing.

use std::collections::BTreeMap;
use std::io::Read;

use chrono::{DateTime, NaiveDate, Utc};
use tenants::store::{LegalScope, NewLegalRequest};
use tenants::testing::fresh_store;
use tenants::*;
use vault::at_rest::MasterKey;
use vault::instance::InstanceKey;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

async fn account(
    store: &Store,
    tenant: &Tenant,
    domain: &Domain,
    local: &str,
    level: Level,
) -> Account {
    store
        .create_account(
            "operator",
            NewAccount {
                tenant_id: tenant.id,
                domain_id: domain.id,
                address: EmailAddress::parse(&format!("{local}@{}", domain.name)).unwrap(),
                display_name: local.into(),
                role: AccountRole::User,
                level,
                password_hash: "argon2-hash-not-disclosed".into(),
                fingerprint: format!("fp-{local}"),
                public_key: format!("public-{local}"),
                secret_key: "locked-secret-not-disclosed".into(),
            },
        )
        .await
        .unwrap()
}

/// Stores one message for `account` received at `when`; returns its id and the bytes a disclosure should hold.
async fn deliver(
    inbound: &mail::inbound::Inbound,
    account: &Account,
    when: &str,
    level: Level,
    marker: &str,
) -> (MessageId, Vec<u8>) {
    let id = MessageId::new();
    let clear = format!(
        "Subject: {marker}\r\n\r\n{marker} for {}\r\n",
        account.address
    )
    .into_bytes();
    let stored = match level {
        Level::Standard => inbound.encrypt_standard(account.tenant_id, id, &clear).await.unwrap(),
        // Sealed mail is stored as the OpenPGP ciphertext it arrived as or was made into.
        _ => format!("Content-Type: multipart/encrypted\r\n\r\n-----BEGIN PGP MESSAGE-----\r\nCIPHERTEXT-{marker}\r\n-----END PGP MESSAGE-----\r\n").into_bytes(),
    };
    inbound
        .store()
        .deliver(vec![NewMessage {
            id,
            tenant_id: account.tenant_id,
            account_id: account.id,
            level,
            envelope_from: "sender@elsewhere.test".into(),
            envelope_to: account.address.to_string(),
            subject: None,
            sender: None,
            privacy: tenants::privacy::PrivacyIndex::compute(&tenants::privacy::Facts::default()),
            authentication: serde_json::json!({}),
            arrived_encrypted: false,
            rfc822_size: stored.len() as i64,
            content: stored.clone(),
            dispersed: None,
            summary: None,
            flags: vec![],
            keywords: vec![],
            received_at: Some(at(when)),
            verdict: None,
            mailbox: None,
        }])
        .await
        .unwrap();
    (
        id,
        if level == Level::Standard {
            clear
        } else {
            stored
        },
    )
}

fn entries(path: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        out.insert(name, bytes);
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn exactly_one_account_and_one_month(backend: Backend) {
    let store = fresh_store(backend).await;
    let inbound = mail::inbound::Inbound::new(
        store.clone(),
        MasterKey::ephemeral().unwrap(),
        None,
        "mx.caliop.test".into(),
    );
    let key = InstanceKey::generate();
    let limits = Limits {
        max_accounts: 10,
        max_domains: 10,
        storage_quota_bytes: 1 << 30,
    };
    let tenant = store
        .create_tenant(
            "operator",
            NewTenant {
                name: "Acme".into(),
                kind: TenantKind::Enterprise,
                parent_id: None,
                limits,
                policy: Policy::default(),
            },
        )
        .await
        .unwrap();
    let domain = store
        .create_domain(
            "operator",
            NewDomain {
                tenant_id: tenant.id,
                name: DomainName::parse("acme.test").unwrap(),
                verification_token: "t".into(),
                dkim_keys: vec![],
            },
        )
        .await
        .unwrap();
    let target = account(&store, &tenant, &domain, "target", Level::Standard).await;
    let other = account(&store, &tenant, &domain, "other", Level::Standard).await;

    let mut expected = BTreeMap::new();
    for (when, level, marker) in [
        ("2026-11-01T00:00:00Z", Level::Standard, "IN-NOV-FIRST"),
        ("2026-11-15T12:00:00Z", Level::Sealed, "IN-NOV-SEALED"),
        ("2026-11-30T23:59:59Z", Level::Standard, "IN-NOV-LAST"),
    ] {
        let (id, bytes) = deliver(&inbound, &target, when, level, marker).await;
        expected.insert(id, (level, bytes));
    }
    deliver(
        &inbound,
        &target,
        "2026-10-31T23:59:59Z",
        Level::Standard,
        "OUT-OCTOBER",
    )
    .await;
    deliver(
        &inbound,
        &target,
        "2026-12-01T00:00:00Z",
        Level::Sealed,
        "OUT-DECEMBER",
    )
    .await;
    deliver(
        &inbound,
        &other,
        "2026-11-10T00:00:00Z",
        Level::Standard,
        "OUT-OTHER-ACCOUNT",
    )
    .await;

    let scope = LegalScope {
        tenant_id: tenant.id,
        account_ids: vec![target.id],
        from: Some(at("2026-11-01T00:00:00Z")),
        until: Some(at("2026-12-01T00:00:00Z")),
        kinds: vec![
            DataKind::AccountMetadata,
            DataKind::DeliveryLogs,
            DataKind::Messages,
        ],
    };
    let request = |basis: Option<&str>, decision| NewLegalRequest {
        authority: "Tribunal judiciaire de Paris".into(),
        country: Jurisdiction::parse("FR").unwrap(),
        legal_basis: basis.map(str::to_owned),
        received_on: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
        scope: scope.clone(),
        decision,
        disclosed: String::new(),
        tenant_notified: true,
        gag_until: None,
    };

    // Without a legal basis: recorded, refused, nothing disclosed.
    let refused = store
        .record_legal_request("operator", request(None, None))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let nothing = dir.path().join("refused.tar");
    let err = transfer::legal::export(
        &inbound,
        &key,
        "mx.caliop.test",
        refused.id,
        &nothing,
        "operator",
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("no legal basis"), "{err}");
    assert!(!nothing.exists(), "no archive for a refused request");

    let valid = store
        .record_legal_request(
            "operator",
            request(Some("RG 26/01234"), Some(Decision::Complied)),
        )
        .await
        .unwrap();
    let out = dir.path().join("disclosure.tar");
    let disclosure =
        transfer::legal::export(&inbound, &key, "mx.caliop.test", valid.id, &out, "operator")
            .await
            .unwrap();
    assert_eq!(disclosure.messages_by_level, [2, 1, 0, 0]);
    assert_eq!(disclosure.accounts, 1);

    // Exactly the account's November messages, as stored.
    let files = entries(&out);
    let messages: BTreeMap<String, &Vec<u8>> = files
        .iter()
        .filter(|(name, _)| name.starts_with("messages/"))
        .map(|(n, b)| (n.clone(), b))
        .collect();
    assert_eq!(
        messages.len(),
        3,
        "{:?}",
        messages.keys().collect::<Vec<_>>()
    );
    for (id, (level, bytes)) in &expected {
        let name = format!("messages/target@acme.test/{}.eml", id.0);
        assert_eq!(
            messages.get(&name).map(|b| b.as_slice()),
            Some(bytes.as_slice()),
            "{name} ({level})"
        );
    }
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    for entry in manifest["messages"].as_array().unwrap() {
        let (level, _) = &expected[&MessageId(entry["id"].as_str().unwrap().parse().unwrap())];
        let readable = *level == Level::Standard;
        assert_eq!(
            entry["content"],
            if readable { "plaintext" } else { "ciphertext" },
            "{entry}"
        );
    }
    // Nothing of the other account, of other months, and no credentials.
    let everything: Vec<u8> = std::fs::read(&out).unwrap();
    for absent in [
        "OUT-OTHER-ACCOUNT",
        "OUT-OCTOBER",
        "OUT-DECEMBER",
        "other@acme.test",
        &other.id.0.to_string(),
        "argon2-hash-not-disclosed",
        "locked-secret-not-disclosed",
    ] {
        assert!(!contains(&everything, absent), "{absent} is not disclosed");
    }
    assert!(contains(&files["accounts.json"], "target@acme.test"));
    assert!(contains(
        &files["delivery-log.json"],
        "sender@elsewhere.test"
    ));

    // The register holds the archive's hash and signature; the signature verifies.
    use sha2::Digest;
    let sha256: String = sha2::Sha256::digest(&everything)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(disclosure.sha256, sha256);
    let recorded = store
        .current_legal_request(valid.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recorded.exports.len(), 1);
    assert_eq!(recorded.exports[0].sha256, sha256);
    assert_eq!(recorded.exports[0].signature, disclosure.signature);
    use base64::Engine;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(&disclosure.signature)
        .unwrap();
    let statement = transfer::legal::statement(valid.id, &sha256);
    assert!(vault::instance::verify(
        key.public_key(),
        statement.as_bytes(),
        &signature
    ));
    assert!(!vault::instance::verify(
        key.public_key(),
        transfer::legal::statement(valid.id, &"0".repeat(64)).as_bytes(),
        &signature
    ));
    let sig_file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&disclosure.signature_file).unwrap()).unwrap();
    assert_eq!(sig_file["sha256"], sha256.as_str());

    // A range left open ends with the day the request was received, not the day of the export.
    let open_ended = NewLegalRequest {
        scope: LegalScope {
            until: None,
            ..scope.clone()
        },
        received_on: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
        ..request(Some("RG 26/01235"), Some(Decision::Partially))
    };
    let open_ended = store
        .record_legal_request("operator", open_ended)
        .await
        .unwrap();
    let out = dir.path().join("open-ended.tar");
    let disclosure = transfer::legal::export(
        &inbound,
        &key,
        "mx.caliop.test",
        open_ended.id,
        &out,
        "operator",
    )
    .await
    .unwrap();
    assert_eq!(disclosure.messages_by_level, [2, 1, 0, 0], "November only");
    assert!(!contains(&std::fs::read(&out).unwrap(), "OUT-DECEMBER"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&entries(&out)["manifest.json"]).unwrap();
    assert_eq!(manifest["disclosed_range"]["until"], "2026-12-01T00:00:00Z");
}

on_both_backends!(exactly_one_account_and_one_month);
