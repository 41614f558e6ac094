//! The disclosure export: for a valid legal request, a tar archive of
//! exactly what the server holds within the request's scope (the accounts,
//! the time range, the kinds of data), signed with the instance key, its
//! SHA-256 and signature recorded in the register.
//!
//! Messages are disclosed as stored. At `standard` the server holds them
//! under its own at-rest key, so it can and does hand over the plaintext;
//! at `sealed` and above it holds OpenPGP ciphertext only, and that is what
//! the archive holds, the manifest saying so message by message. Credentials
//! (password hashes, the locked secret keys) are not account metadata and
//! are never disclosed.
//!
//! Layout: `README.txt`, `manifest.json` (the request, the scope, every
//! file with its SHA-256 and, per message, its level and whether it is
//! readable), `accounts.json`, `delivery-log.json`, and
//! `messages/<address>/<id>.eml`. Beside the archive, `<archive>.sig` holds
//! the signed statement.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::Utc;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tenants::store::{LegalRequest, NewLegalExport};
use tenants::{Account, DataKind, Decision, Level, MessageId, Page};
use uuid::Uuid;
use vault::instance::InstanceKey;

use crate::{Error, Result, b64, hex, io};

/// What a disclosure export produced.
#[derive(Debug, Serialize)]
pub struct Disclosure {
    pub request_id: Uuid,
    pub archive: PathBuf,
    pub signature_file: PathBuf,
    pub sha256: String,
    /// Base64 Ed25519 signature of [`statement`] by the instance key.
    pub signature: String,
    pub accounts: i64,
    /// Messages by level: standard, sealed, dispersed, end-to-end.
    pub messages_by_level: [i64; 4],
    pub bytes: u64,
}

/// The text the instance signs for an archive.
pub fn statement(request_id: Uuid, sha256: &str) -> String {
    format!("caliop-disclosure-v1\nrequest {request_id}\nsha256 {sha256}\n")
}

/// Hashes what goes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn append(
    tar: &mut tar::Builder<Hashing<std::io::BufWriter<std::fs::File>>>,
    path: &str,
    bytes: &[u8],
    out: &Path,
) -> Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(Utc::now().timestamp().max(0) as u64);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, bytes).map_err(io(out))
}

fn level_index(level: Level) -> usize {
    Level::ALL.iter().position(|l| *l == level).unwrap_or(0)
}

/// Writes the disclosure archive for request `request_id` to `out`, signs
/// it and records it in the register. Refused unless the request (its
/// newest version) has a legal basis and was complied with, wholly or partly.
/// If anything fails, no archive is left behind.
pub async fn export(
    inbound: &mail::inbound::Inbound,
    key: &InstanceKey,
    instance: &str,
    request_id: Uuid,
    out: &Path,
    actor: &str,
) -> Result<Disclosure> {
    let outcome = write(inbound, key, instance, request_id, out, actor).await;
    if outcome.is_err() && out.exists() {
        // A part of a disclosure holds readable mail: it does not stay around.
        let _ = std::fs::remove_file(out);
        let mut sig = out.as_os_str().to_owned();
        sig.push(".sig");
        let _ = std::fs::remove_file(PathBuf::from(sig));
    }
    outcome
}

async fn write(
    inbound: &mail::inbound::Inbound,
    key: &InstanceKey,
    instance: &str,
    request_id: Uuid,
    out: &Path,
    actor: &str,
) -> Result<Disclosure> {
    let store = inbound.store();
    let request: LegalRequest = store
        .current_legal_request(request_id)
        .await?
        .ok_or(tenants::Error::NotFound("legal request"))?;
    if request.id != request_id {
        return Err(Error::Refused(format!(
            "request {request_id} was corrected by {}: export that one",
            request.id
        )));
    }
    if !request.valid {
        return Err(Error::Refused(
            "the request has no legal basis (no court order reference): nothing is disclosed"
                .into(),
        ));
    }
    if !matches!(request.decision, Decision::Complied | Decision::Partially) {
        return Err(Error::Refused(format!(
            "the request's decision is `{}`: only a request complied with, wholly or partly, is exported",
            request.decision.as_str()
        )));
    }
    let scope = &request.scope;
    // The time range as disclosed: an open end stops at the end of the day
    // the request was received, never at the day of the export.
    let from = scope.from;
    let until = Some(scope.until.unwrap_or_else(|| {
        (request.received_on + chrono::Days::new(1))
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
    }));
    let mut accounts: Vec<Account> = Vec::new();
    if scope.account_ids.is_empty() {
        let mut after = None;
        loop {
            let page = store
                .list_accounts(
                    scope.tenant_id,
                    Page {
                        after,
                        limit: Page::MAX_LIMIT,
                    },
                )
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.0);
            accounts.extend(page);
        }
    } else {
        for id in &scope.account_ids {
            let account = store
                .account(*id)
                .await?
                .ok_or(tenants::Error::NotFound("account"))?;
            if account.tenant_id != scope.tenant_id {
                return Err(Error::Refused(format!(
                    "account {id} is not in the request's tenant"
                )));
            }
            accounts.push(account);
        }
    }

    let file = crate::create_private(out)?;
    let mut tar = tar::Builder::new(Hashing {
        inner: std::io::BufWriter::new(file),
        hash: Sha256::new(),
        bytes: 0,
    });
    tar.mode(tar::HeaderMode::Deterministic);
    let wants = |kind: DataKind| scope.kinds.contains(&kind);
    let mut files: Vec<Value> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    let mut counts = [0i64; 4];
    let readme = format!(
        "Disclosure by {instance} for legal request {request_id}.\n\n\
         manifest.json lists every file of this archive with its SHA-256. Messages are as the server stores them:\n\
         `standard` messages are readable (the server holds them under its own key and opened them);\n\
         `sealed`, `dispersed` and `end-to-end` messages are OpenPGP ciphertext that only the recipient's key opens;\n\
         the server cannot read them and did not. Password hashes and locked secret keys are not disclosed.\n\
         The archive's SHA-256 is signed with the instance's Ed25519 key: see the .sig file beside it.\n"
    );
    append(&mut tar, "README.txt", readme.as_bytes(), out)?;

    if wants(DataKind::AccountMetadata) {
        let metadata: Vec<Value> = accounts
            .iter()
            .map(|a| {
                json!({
                    "id": a.id, "address": a.address, "display_name": a.display_name, "role": a.role, "status": a.status,
                    "level": a.level, "created_at": a.created_at, "updated_at": a.updated_at,
                    "openpgp_fingerprint": a.fingerprint, "openpgp_public_key": a.public_key,
                })
            })
            .collect();
        let bytes =
            serde_json::to_vec_pretty(&metadata).map_err(|e| Error::Refused(e.to_string()))?;
        files.push(json!({"path": "accounts.json", "sha256": hex(&Sha256::digest(&bytes)), "bytes": bytes.len()}));
        append(&mut tar, "accounts.json", &bytes, out)?;
    }

    let mut inbound_log: Vec<Value> = Vec::new();
    let mut outbound_log: Vec<Value> = Vec::new();
    for account in &accounts {
        if wants(DataKind::DeliveryLogs) {
            for entry in store.delivery_log(account.id, from, until).await? {
                outbound_log.push(json!({"account_id": account.id, "delivery": entry}));
            }
        }
        if !wants(DataKind::Messages) && !wants(DataKind::DeliveryLogs) {
            continue;
        }
        let mut after = None;
        loop {
            let page = store
                .messages_between(account.id, from, until, after, 64)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.0);
            for meta in page {
                if wants(DataKind::DeliveryLogs) {
                    inbound_log.push(json!({
                        "account_id": account.id, "message_id": meta.id, "received_at": meta.received_at,
                        "envelope_from": meta.envelope_from, "envelope_to": meta.envelope_to,
                        "authentication": meta.authentication,
                    }));
                }
                if !wants(DataKind::Messages) {
                    continue;
                }
                let stored = message_bytes(inbound, &meta).await?;
                let readable = meta.level == Level::Standard;
                let path = format!("messages/{}/{}.eml", account.address, meta.id.0);
                append(&mut tar, &path, &stored, out)?;
                counts[level_index(meta.level)] += 1;
                messages.push(json!({
                    "id": meta.id, "account_id": account.id, "path": path, "received_at": meta.received_at,
                    "level": meta.level, "folder": meta.folder, "bytes": stored.len(), "sha256": hex(&Sha256::digest(&stored)),
                    "content": if readable { "plaintext" } else { "ciphertext" },
                    "note": if readable {
                        "stored under the server's own at-rest key, which the server opened for this disclosure"
                    } else {
                        "OpenPGP-encrypted to the recipient's key before it was stored; the server cannot read it"
                    },
                }));
            }
        }
    }
    if wants(DataKind::DeliveryLogs) {
        let bytes =
            serde_json::to_vec_pretty(&json!({"received": inbound_log, "sent": outbound_log}))
                .map_err(|e| Error::Refused(e.to_string()))?;
        files.push(json!({"path": "delivery-log.json", "sha256": hex(&Sha256::digest(&bytes)), "bytes": bytes.len()}));
        append(&mut tar, "delivery-log.json", &bytes, out)?;
    }

    let manifest = json!({
        "format": "caliop-disclosure",
        "version": 1,
        "instance": instance,
        "instance_public_key": b64(key.public_key()),
        "created_at": Utc::now(),
        "request": {
            "id": request.id, "authority": request.authority, "country": request.country, "legal_basis": request.legal_basis,
            "received_on": request.received_on, "decision": request.decision, "scope": request.scope,
        },
        "disclosed_range": {"from": from, "until": until},
        "accounts": accounts.iter().map(|a| a.id).collect::<Vec<_>>(),
        "files": files,
        "messages": messages,
        "messages_by_level": {
            "standard": counts[0], "sealed": counts[1], "dispersed": counts[2], "end_to_end": counts[3],
        },
    });
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Refused(e.to_string()))?;
    append(&mut tar, "manifest.json", &bytes, out)?;
    let hashing = tar.into_inner().map_err(io(out))?;
    let Hashing { inner, hash, bytes } = hashing;
    let file = inner.into_inner().map_err(|e| io(out)(e.into_error()))?;
    file.sync_all().map_err(io(out))?;
    let sha256 = hex(&hash.finalize());

    let signed = statement(request_id, &sha256);
    let signature = b64(&key.sign(signed.as_bytes()));
    let mut signature_file = out.as_os_str().to_owned();
    signature_file.push(".sig");
    let signature_file = PathBuf::from(signature_file);
    let sig = json!({
        "request_id": request_id, "sha256": sha256, "statement": signed, "signature": signature,
        "public_key": b64(key.public_key()), "algorithm": "ed25519",
    });
    std::fs::write(
        &signature_file,
        serde_json::to_vec_pretty(&sig).map_err(|e| Error::Refused(e.to_string()))?,
    )
    .map_err(io(&signature_file))?;

    // Recorded under the entry it was made for: a correction made meanwhile voids it.
    let current = store.current_legal_request(request_id).await?.map(|r| r.id);
    if current != Some(request.id) {
        return Err(Error::Refused(format!(
            "request {request_id} was corrected while the archive was written: export the correction instead"
        )));
    }
    store
        .record_legal_export(
            actor,
            request_id,
            NewLegalExport {
                sha256: sha256.clone(),
                signature: signature.clone(),
                accounts: accounts.len() as i64,
                messages_by_level: counts,
                bytes: bytes as i64,
            },
        )
        .await?;
    tracing::info!(request = %request_id, accounts = accounts.len(), messages = counts.iter().sum::<i64>(), "disclosure exported");
    Ok(Disclosure {
        request_id,
        archive: out.to_owned(),
        signature_file,
        sha256,
        signature,
        accounts: accounts.len() as i64,
        messages_by_level: counts,
        bytes,
    })
}

/// A message as the server holds it: opened at `standard` (the server's own
/// key), untouched above.
async fn message_bytes(
    inbound: &mail::inbound::Inbound,
    meta: &tenants::MessageMeta,
) -> Result<Vec<u8>> {
    let content = inbound
        .store()
        .message_content(MessageId(meta.id.0))
        .await?
        .ok_or(tenants::Error::NotFound("message"))?;
    let stored = match content {
        tenants::store::StoredContent::Inline(bytes) => bytes,
        tenants::store::StoredContent::Dispersed => inbound
            .read_dispersed(meta.id)
            .await
            .map_err(crate::reply)?,
    };
    if meta.level == Level::Standard {
        inbound
            .decrypt_standard(meta.tenant_id, meta.id, &stored)
            .await
            .map_err(crate::reply)
    } else {
        Ok(stored)
    }
}
