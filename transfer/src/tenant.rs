//! A whole tenant tree in one encrypted archive, and back.
//!
//! The archive ([`vault::archive`]) holds records: a header, then every row
//! of [`tenants::store::transfer::TABLES`] (a message's stored bytes in a
//! record of their own right after its row), then a trailer with the counts.
//! Rows travel as they are stored, except what is sealed under the
//! exporting instance's own keys: the tenant data keys and the DKIM private
//! keys are opened on the way out and sealed again under the importing
//! instance's master key on the way in, inside the encrypted archive only.
//! Message bytes are never opened: `standard` mail stays AEAD ciphertext
//! under the tenant's data key (which travels), sealed mail stays OpenPGP.
//! Dispersed mail is read back from its shards and dispersed again on the
//! importing instance's sites.
//!
//! Export checkpoints after every page of rows (the file so far and a state
//! file beside it, whose copy of the archive key is sealed under the master
//! key), so `--resume` continues an interrupted export. Import reads the
//! archive twice: once to authenticate all of it and check it fits this
//! instance, writing nothing; then for real, in one database transaction,
//! removing the shards it wrote if anything fails.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use chrono::Utc;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tenants::store::NewObject;
use tenants::store::transfer::{self, Clashes, Row, TABLES, Table};
use tenants::{Jurisdiction, Policy, Redundancy, TenantId, TenantKind};
use uuid::Uuid;
use vault::archive::{ArchiveReader, ArchiveWriter, Checkpoint, FileKey, Recipient, Unlock};

use crate::{Error, Progress, Result, b64, io};

const LABEL: &str = "caliop-tenant-export";
const FORMAT: &str = "caliop-tenant-export";
const VERSION: u64 = 1;

/// Record kinds inside the archive.
const HEADER: u8 = 1;
const ROW: u8 = 2;
const BLOB: u8 = 3;
const TRAILER: u8 = 4;

/// Rows per page (message rows carry no bytes; those are read one by one).
const PAGE: u32 = 256;
/// Largest record an import accepts: well above the biggest message the
/// MX takes, and below what would break the import's memory bound.
const MAX_RECORD: u64 = 160 << 20;

/// What an export or import did.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub tenants: u64,
    pub accounts: u64,
    pub messages: u64,
    /// Bytes of stored messages carried.
    pub message_bytes: u64,
    /// Bytes of the archive file.
    pub archive_bytes: u64,
    /// API keys of the archive, which are never imported.
    pub api_keys_left_out: u64,
    /// What the importing instance could not take as it was (a plan it does
    /// not have, a domain to verify again, API keys left out).
    pub warnings: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Counts {
    rows: BTreeMap<String, u64>,
    blobs: u64,
    blob_bytes: u64,
}

/// Where an interrupted export stands; kept beside the archive as `<archive>.resume`.
#[derive(Serialize, Deserialize)]
struct ResumeState {
    tenant: Uuid,
    /// The tenants the header lists, in order (a tenant made since is not exported).
    #[serde(default)]
    tree: Vec<Uuid>,
    /// The archive's key, sealed under this instance's master key.
    sealed_key: String,
    header_digest: String,
    frames_written: u64,
    bytes_written: u64,
    /// The archive generation of the last checkpoint (0 in a state written before generations).
    #[serde(default)]
    generation: u32,
    table: usize,
    tenant_index: usize,
    after: Option<Row>,
    counts: Counts,
    done: u64,
}

/// The state file an export keeps beside `out` until it is finished.
pub fn resume_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".resume");
    PathBuf::from(name)
}

fn resume_context(tenant: Uuid) -> String {
    format!("tenant-export-key:{tenant}")
}

fn text<'a>(row: &'a Row, column: &str) -> Result<&'a str> {
    row.get(column)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Unusable(format!("a row has no text `{column}`")))
}

fn uuid(row: &Row, column: &str) -> Result<Uuid> {
    text(row, column)?
        .parse()
        .map_err(|_| Error::Unusable(format!("`{column}` is not a UUID")))
}

fn b64_decode(value: &str, what: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| Error::Unusable(format!("{what} is not base64")))
}

/// The policy stored in a `tenants` row (for dispersing its mail on import).
fn policy_of(row: &Row) -> Result<Policy> {
    let jurisdictions: Vec<String> = serde_json::from_str(text(row, "allowed_jurisdictions")?)
        .map_err(|_| Error::Unusable("a tenant's jurisdictions do not parse".into()))?;
    let redundancy = match (
        row.get("dispersal_k").and_then(Value::as_i64),
        row.get("dispersal_n").and_then(Value::as_i64),
    ) {
        (Some(k), Some(n)) => Some(Redundancy {
            k: k as u8,
            n: n as u8,
        }),
        _ => None,
    };
    Ok(Policy {
        min_level: text(row, "min_level")?
            .parse()
            .map_err(|e: tenants::Error| Error::Unusable(e.to_string()))?,
        allowed_jurisdictions: jurisdictions
            .iter()
            .map(|j| Jurisdiction::parse(j))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Unusable(e.to_string()))?,
        redundancy,
        outer_thread_headers: row
            .get("outer_thread_headers")
            .and_then(Value::as_bool)
            .unwrap_or(true),
    })
}

fn write_state(path: &Path, state: &ResumeState) -> Result<()> {
    let tmp = path.with_extension("resume.tmp");
    let bytes = serde_json::to_vec(state).map_err(|e| Error::Refused(e.to_string()))?;
    {
        let _ = std::fs::remove_file(&tmp);
        let mut file = crate::create_private(&tmp)?;
        file.write_all(&bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))
}

struct Exporter<'a> {
    inbound: &'a mail::inbound::Inbound,
    /// Domain id → name, for the DKIM keys' sealing context.
    domains: HashMap<Uuid, String>,
    plans: HashMap<Uuid, String>,
}

impl Exporter<'_> {
    /// Opens what only this instance's keys open, for the encrypted archive.
    /// `None`: the row went away while the export ran (a message expunged), and is left out.
    async fn outgoing(&mut self, table: &Table, row: &mut Row) -> Result<Option<Option<Vec<u8>>>> {
        let master = self.inbound.master();
        match table.name {
            // The tenant's OPAQUE secrets move with it, so that its users
            // sign in unchanged on the importing instance.
            "tenants" => {
                if let Some(sealed) = row.remove("opaque_setup").filter(|v| !v.is_null()) {
                    let tenant = uuid(row, "id")?;
                    let sealed = sealed.as_str().ok_or_else(|| {
                        Error::Unusable("an OPAQUE setup that is not text".into())
                    })?;
                    let raw = master.open_secret(&vault::opaque::setup_context(&tenant), sealed)?;
                    row.insert("opaque_setup_raw".into(), Value::String(b64(&raw)));
                }
            }
            "tenant_keys" => {
                let tenant = uuid(row, "tenant_id")?;
                let wrapped = b64_decode(text(row, "wrapped_key")?, "a wrapped key")?;
                let raw = master.unwrap_data_key_bytes(tenant.as_bytes(), &wrapped)?;
                row.remove("wrapped_key");
                row.insert("data_key".into(), Value::String(b64(raw.expose_secret())));
            }
            "domains" => {
                self.domains
                    .insert(uuid(row, "id")?, text(row, "name")?.to_owned());
            }
            "dkim_keys" => {
                let domain = self.domains.get(&uuid(row, "domain_id")?).ok_or_else(|| {
                    Error::Refused("a DKIM key of a domain outside the tenant".into())
                })?;
                let pem = master.open_secret(
                    &mail::outbound::dkim_key_context(domain),
                    text(row, "private_key")?,
                )?;
                row.remove("private_key");
                let pem = String::from_utf8(pem)
                    .map_err(|_| Error::Refused("a DKIM private key is not text".into()))?;
                row.insert("private_key_pem".into(), Value::String(pem));
            }
            "tenant_billing" => {
                let plan = uuid(row, "plan_id")?;
                if !self.plans.contains_key(&plan) {
                    let name = self
                        .inbound
                        .store()
                        .plan(plan)
                        .await?
                        .map(|p| p.name)
                        .unwrap_or_default();
                    self.plans.insert(plan, name);
                }
                row.insert("plan_name".into(), Value::String(self.plans[&plan].clone()));
                row.remove("plan_id");
            }
            "messages" => {
                let id = uuid(row, "id")?;
                let store = self.inbound.store();
                let bytes = if text(row, "storage")? == "dispersed" {
                    let dispersed = self.inbound.dispersed().ok_or_else(|| {
                        Error::Refused("the tenant has dispersed mail and this process has no storage sites configured".into())
                    })?;
                    match dispersed.read(id).await {
                        Ok(bytes) => bytes,
                        Err(_) if store.message(tenants::MessageId(id)).await?.is_none() => {
                            return Ok(None);
                        }
                        Err(e) => return Err(e.into()),
                    }
                } else {
                    match store.export_blob(table, row).await {
                        Ok(bytes) => bytes,
                        Err(tenants::Error::NotFound(_)) => return Ok(None),
                        Err(e) => return Err(e.into()),
                    }
                };
                return Ok(Some(Some(bytes)));
            }
            _ => {}
        }
        Ok(Some(None))
    }
}

/// Writes tenant `root` and every tenant under it to `out`, encrypted to
/// `recipient`. With `resume`, continues the export that an earlier run
/// left at its last checkpoint.
pub async fn export(
    inbound: &mail::inbound::Inbound,
    root: TenantId,
    out: &Path,
    recipient: &Recipient,
    resume: bool,
    progress: &dyn Progress,
) -> Result<Summary> {
    let store = inbound.store();
    let tenant = store
        .tenant(root)
        .await?
        .ok_or(tenants::Error::NotFound("tenant"))?;
    if tenant.kind == TenantKind::Operator {
        return Err(Error::Refused(
            "the operator tenant is the instance itself; export its customer tenants instead"
                .into(),
        ));
    }
    let mut tree = store.subtree(root).await?;
    let state_path = resume_path(out);
    let master = inbound.master();

    let (mut writer, mut state) = if resume {
        let bytes = std::fs::read(&state_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::Refused(format!("{} has no export to resume", out.display()))
            }
            _ => io(&state_path)(e),
        })?;
        let state: ResumeState = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Refused(format!("{}: {e}", state_path.display())))?;
        if state.tenant != root.0 {
            return Err(Error::Refused(format!(
                "{} is the export of another tenant ({})",
                out.display(),
                state.tenant
            )));
        }
        if !state.tree.is_empty() {
            tree = state.tree.iter().copied().map(TenantId).collect();
        }
        let key = master.open_secret(&resume_context(root.0), &state.sealed_key)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(out)
            .map_err(io(out))?;
        let len = file.metadata().map_err(io(out))?.len();
        if len < state.bytes_written {
            return Err(Error::Refused(format!(
                "{} is shorter than its last checkpoint: start the export again",
                out.display()
            )));
        }
        file.set_len(state.bytes_written).map_err(io(out))?;
        file.seek(std::io::SeekFrom::End(0)).map_err(io(out))?;
        let at = Checkpoint {
            frames_written: state.frames_written,
            bytes_written: state.bytes_written,
            header_digest: hex_decode(&state.header_digest)?,
            generation: state.generation,
        };
        let key = FileKey::from_bytes(&key)?;
        let mut writer = ArchiveWriter::resume(file, &key, &at)?;
        // This run seals under a new generation: keep it before any record,
        // so that another interruption does not resume under it again.
        let mut state = state;
        let checkpoint = writer.checkpoint()?;
        writer.get_mut().sync_data().map_err(io(out))?;
        state.frames_written = checkpoint.frames_written;
        state.bytes_written = checkpoint.bytes_written;
        state.generation = checkpoint.generation;
        write_state(&state_path, &state)?;
        (writer, state)
    } else {
        if state_path.exists() {
            return Err(Error::Refused(format!(
                "{} is an interrupted export: pass --resume to continue it, or remove it and {}",
                out.display(),
                state_path.display()
            )));
        }
        let file = crate::create_private(out)?;
        let (mut writer, key) = blocking(|| ArchiveWriter::create(file, recipient, LABEL))?;
        let header = json!({
            "format": FORMAT,
            "version": VERSION,
            "tenant_id": root.0,
            "tenant_name": tenant.name,
            "tenants": tree.iter().map(|t| t.0).collect::<Vec<_>>(),
            "exported_at": Utc::now(),
            "software": format!("caliop {}", env!("CARGO_PKG_VERSION")),
            "tables": TABLES.iter().map(|t| (t.name, t.columns.iter().map(|c| c.name).collect::<Vec<_>>())).collect::<BTreeMap<_, _>>(),
        });
        writer.write_record(HEADER, header.to_string().as_bytes())?;
        let checkpoint = writer.checkpoint()?;
        let state = ResumeState {
            tenant: root.0,
            tree: tree.iter().map(|t| t.0).collect(),
            sealed_key: master.seal_secret(&resume_context(root.0), key.to_bytes().as_slice())?,
            header_digest: crate::hex(&writer.header_digest()),
            frames_written: checkpoint.frames_written,
            bytes_written: checkpoint.bytes_written,
            generation: checkpoint.generation,
            table: 0,
            tenant_index: 0,
            after: None,
            counts: Counts::default(),
            done: 0,
        };
        writer.get_mut().sync_data().map_err(io(out))?;
        write_state(&state_path, &state)?;
        (writer, state)
    };

    let mut total = 0u64;
    for table in TABLES.iter() {
        for tenant in &tree {
            total += store.export_count(table, *tenant).await?;
        }
    }
    progress.start("exporting", total.max(state.done));
    progress.advance(state.done);
    let mut exporter = Exporter {
        inbound,
        domains: HashMap::new(),
        plans: HashMap::new(),
    };
    // On resume, what earlier pages taught the exporter (domain names);
    // a fresh run learns them as it exports the domains.
    for tenant in tree.iter().filter(|_| resume) {
        let mut after = None;
        loop {
            let page = store
                .list_domains(
                    *tenant,
                    tenants::Page {
                        after,
                        limit: tenants::Page::MAX_LIMIT,
                    },
                )
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.0);
            for domain in &page {
                exporter
                    .domains
                    .insert(domain.id.0, domain.name.to_string());
            }
        }
    }

    while state.table < TABLES.len() {
        let table = &TABLES[state.table];
        while state.tenant_index < tree.len() {
            let tenant = tree[state.tenant_index];
            loop {
                let page = store
                    .export_page(table, tenant, state.after.as_ref(), PAGE)
                    .await?;
                let Some(last) = page.last().cloned() else {
                    break;
                };
                let rows = page.len() as u64;
                let mut written = 0;
                for mut row in page {
                    let Some(blob) = exporter.outgoing(table, &mut row).await? else {
                        continue;
                    };
                    let record = json!({"t": table.name, "r": row});
                    blocking(|| writer.write_record(ROW, record.to_string().as_bytes()))?;
                    if let Some(blob) = blob {
                        blocking(|| writer.write_record(BLOB, &blob))?;
                        state.counts.blobs += 1;
                        state.counts.blob_bytes += blob.len() as u64;
                    }
                    written += 1;
                }
                *state.counts.rows.entry(table.name.to_owned()).or_default() += written;
                state.done += rows;
                // Only the key: the state file is outside the encrypted archive.
                state.after = Some(
                    table
                        .key
                        .iter()
                        .filter_map(|k| Some(((*k).to_owned(), last.get(*k)?.clone())))
                        .collect(),
                );
                let checkpoint = blocking(|| {
                    let checkpoint = writer.checkpoint()?;
                    writer.get_mut().sync_data().map_err(io(out))?;
                    Ok::<_, Error>(checkpoint)
                })?;
                state.frames_written = checkpoint.frames_written;
                state.bytes_written = checkpoint.bytes_written;
                state.generation = checkpoint.generation;
                write_state(&state_path, &state)?;
                progress.advance(rows);
            }
            state.tenant_index += 1;
            state.after = None;
        }
        state.table += 1;
        state.tenant_index = 0;
    }
    let trailer = serde_json::to_vec(&state.counts).map_err(|e| Error::Refused(e.to_string()))?;
    let file = blocking(|| {
        writer.write_record(TRAILER, &trailer)?;
        let file = writer.finish()?;
        file.sync_all().map_err(io(out))?;
        Ok::<_, Error>(file)
    })?;
    let archive_bytes = file.metadata().map_err(io(out))?.len();
    drop(file);
    std::fs::remove_file(&state_path).map_err(io(&state_path))?;
    progress.finish();
    tracing::info!(tenant = %root, archive_bytes, messages = state.counts.blobs, "tenant exported");
    Ok(Summary {
        tenants: tree.len() as u64,
        accounts: state.counts.rows.get("accounts").copied().unwrap_or(0),
        messages: state.counts.blobs,
        message_bytes: state.counts.blob_bytes,
        archive_bytes,
        api_keys_left_out: 0,
        warnings: Vec::new(),
    })
}

/// Runs CPU- or disk-bound work (Argon2, AES over a frame, fsync) without
/// holding up the other tasks of a multi-threaded runtime.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

fn hex_decode<const N: usize>(text: &str) -> Result<[u8; N]> {
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<_>>()
        .ok_or_else(|| Error::Refused("the resume state is damaged".into()))?;
    bytes
        .try_into()
        .map_err(|_| Error::Refused("the resume state is damaged".into()))
}

/// One record of the archive, parsed.
enum Item {
    Row { table: &'static Table, row: Row },
    Blob(Vec<u8>),
    Trailer(Counts),
}

struct Records<R: std::io::Read> {
    reader: ArchiveReader<R>,
    header: Value,
}

impl Records<std::fs::File> {
    fn open(path: &Path, unlock: &Unlock) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(io(path))?;
        let mut reader = ArchiveReader::open(file, unlock, MAX_RECORD)?;
        if reader.label() != LABEL {
            return Err(Error::Unusable(format!(
                "it is a `{}` archive, not a tenant export",
                reader.label()
            )));
        }
        let header = match reader.next_record()? {
            Some((HEADER, bytes)) => serde_json::from_slice::<Value>(&bytes)
                .map_err(|_| Error::Unusable("its header does not parse".into()))?,
            _ => return Err(Error::Unusable("it does not start with a header".into())),
        };
        if header["format"] != FORMAT {
            return Err(Error::Unusable("it is not a tenant export".into()));
        }
        if header["version"].as_u64() != Some(VERSION) {
            return Err(Error::Unusable(format!(
                "it is version {} of the format; this Caliop reads version {VERSION}",
                header["version"]
            )));
        }
        Ok(Records { reader, header })
    }
}

impl<R: std::io::Read> Records<R> {
    fn next(&mut self) -> Result<Option<Item>> {
        let Some((kind, bytes)) = self.reader.next_record()? else {
            return Ok(None);
        };
        Ok(Some(match kind {
            ROW => {
                #[derive(Deserialize)]
                struct Record {
                    t: String,
                    r: Row,
                }
                let record: Record = serde_json::from_slice(&bytes)
                    .map_err(|_| Error::Unusable("a row does not parse".into()))?;
                let table = transfer::table(&record.t).ok_or_else(|| {
                    Error::Unusable(format!(
                        "it has a table `{}` this Caliop does not know",
                        record.t
                    ))
                })?;
                Item::Row {
                    table,
                    row: record.r,
                }
            }
            BLOB => Item::Blob(bytes),
            TRAILER => Item::Trailer(
                serde_json::from_slice(&bytes)
                    .map_err(|_| Error::Unusable("its trailer does not parse".into()))?,
            ),
            other => {
                return Err(Error::Unusable(format!(
                    "it has a record of unknown kind {other}"
                )));
            }
        }))
    }
}

/// Whose each row of the archive is, checked row by row in the order they
/// come (parents first), the same way in both readings. The archive is
/// authenticated, but by a key its exporter chose: nothing in it may reach
/// outside its own tenants. A row that names another tenant, or an object of
/// one of its tenants under another, refuses the archive; a row whose parent
/// is not in the archive (made while the export ran, after its table was
/// read) is left out and counted.
#[derive(Default)]
struct Owners {
    root: Uuid,
    /// The tenants the header lists.
    listed: HashSet<Uuid>,
    tenants: HashSet<Uuid>,
    /// Domain and account → tenant; mailbox → account.
    domains: HashMap<Uuid, Uuid>,
    accounts: HashMap<Uuid, Uuid>,
    mailboxes: HashMap<Uuid, Uuid>,
    outbound: HashSet<Uuid>,
    left_out: BTreeMap<&'static str, u64>,
}

enum Verdict {
    Keep,
    LeaveOut,
}

impl Owners {
    fn new(root: Uuid, listed: &[TenantId]) -> Owners {
        Owners {
            root,
            listed: listed.iter().map(|t| t.0).collect(),
            ..Owners::default()
        }
    }

    fn judge(&mut self, table: &Table, row: &Row) -> Result<Verdict> {
        let hostile = |what: String| {
            Err(Error::Unusable(format!(
                "{what}: the archive reaches outside its own tenants"
            )))
        };
        let id = || uuid(row, "id");
        let opt = |column: &str| -> Result<Option<Uuid>> {
            match row.get(column) {
                None | Some(Value::Null) => Ok(None),
                Some(_) => uuid(row, column).map(Some),
            }
        };
        if table.name == "tenants" {
            let id = id()?;
            if !self.listed.contains(&id) {
                return hostile(format!("tenant {id} is not one its header lists"));
            }
            if text(row, "kind")? == "operator" {
                return hostile("it holds an operator tenant".into());
            }
            if id != self.root && !opt("parent_id")?.is_some_and(|p| self.tenants.contains(&p)) {
                return hostile(format!(
                    "tenant {id} hangs under a tenant the archive does not hold"
                ));
            }
            self.tenants.insert(id);
            return Ok(Verdict::Keep);
        }
        if table.column("tenant_id").is_some() {
            let tenant = uuid(row, "tenant_id")?;
            if !self.tenants.contains(&tenant) {
                return hostile(format!(
                    "a row of `{}` belongs to tenant {tenant}",
                    table.name
                ));
            }
        }
        // A reference to an object the archive holds must be to one of the same owner.
        let same = |known: Option<&Uuid>, owner: Uuid, what: &str| -> Result<Option<()>> {
            match known {
                Some(o) if *o == owner => Ok(Some(())),
                Some(_) => Err(Error::Unusable(format!(
                    "a row of `{}` refers to a {what} of someone else: the archive reaches outside its own tenants",
                    table.name
                ))),
                None => Ok(None),
            }
        };
        let keep = match table.name {
            "domains" => {
                self.domains.insert(id()?, uuid(row, "tenant_id")?);
                true
            }
            "dkim_keys" => self.domains.contains_key(&uuid(row, "domain_id")?),
            "accounts" => {
                let tenant = uuid(row, "tenant_id")?;
                let kept =
                    same(self.domains.get(&uuid(row, "domain_id")?), tenant, "domain")?.is_some();
                if kept {
                    self.accounts.insert(id()?, tenant);
                }
                kept
            }
            "mailboxes" => {
                let account = uuid(row, "account_id")?;
                let kept = self.accounts.contains_key(&account);
                if kept {
                    self.mailboxes.insert(id()?, account);
                }
                kept
            }
            "messages" => {
                let (tenant, account) = (uuid(row, "tenant_id")?, uuid(row, "account_id")?);
                same(self.accounts.get(&account), tenant, "account")?.is_some()
                    && same(
                        self.mailboxes.get(&uuid(row, "mailbox_id")?),
                        account,
                        "mailbox",
                    )?
                    .is_some()
            }
            "expunged" => self.mailboxes.contains_key(&uuid(row, "mailbox_id")?),
            "correspondents" => self.accounts.contains_key(&uuid(row, "account_id")?),
            "outbound" => {
                let kept = same(
                    self.accounts.get(&uuid(row, "account_id")?),
                    uuid(row, "tenant_id")?,
                    "account",
                )?
                .is_some();
                if kept {
                    self.outbound.insert(id()?);
                }
                kept
            }
            "deliveries" => self.outbound.contains(&uuid(row, "outbound_id")?),
            _ => true,
        };
        if keep {
            Ok(Verdict::Keep)
        } else {
            *self.left_out.entry(table.name).or_default() += 1;
            Ok(Verdict::LeaveOut)
        }
    }

    fn warnings(&self) -> Vec<String> {
        self.left_out
            .iter()
            .map(|(table, n)| {
                format!(
                    "{n} row(s) of `{table}` were left out: made while the export ran, under something it had already read; \
                     they are still on the old instance (suspend the tenant before exporting for a still picture)"
                )
            })
            .collect()
    }
}

/// What the first reading of an archive found.
struct Checked {
    root: TenantId,
    tenants: Vec<TenantId>,
    clashes: Clashes,
    dispersed: u64,
    counts: Counts,
    name: String,
    header: Value,
}

fn header_ids(header: &Value) -> Result<(TenantId, Vec<TenantId>)> {
    let root = TenantId(
        header["tenant_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::Unusable("its header names no tenant".into()))?,
    );
    let tenants: Vec<TenantId> = header["tenants"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str()?.parse().ok())
                .map(TenantId)
                .collect()
        })
        .unwrap_or_default();
    if !tenants.contains(&root) {
        return Err(Error::Unusable("its header is inconsistent".into()));
    }
    Ok((root, tenants))
}

/// Reads all of the archive, authenticating every frame and judging every
/// row, and writes nothing.
fn check(path: &Path, unlock: &Unlock, progress: &dyn Progress) -> Result<Checked> {
    let mut records = Records::open(path, unlock)?;
    let (root, tenants) = header_ids(&records.header)?;
    let name = records.header["tenant_name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let file_len = std::fs::metadata(path).map_err(io(path))?.len();
    progress.start("verifying", file_len);
    let mut owners = Owners::new(root.0, &tenants);
    let mut counts = Counts::default();
    let mut clashes = Clashes::default();
    let mut dispersed = 0;
    let mut trailer = None;
    let mut expect_blob = false;
    while let Some(item) = records.next()? {
        if trailer.is_some() {
            return Err(Error::Unusable("records follow its trailer".into()));
        }
        let mut seen = 0u64;
        match item {
            Item::Row { table, row } => {
                if expect_blob {
                    return Err(Error::Unusable("a message's bytes are missing".into()));
                }
                *counts.rows.entry(table.name.to_owned()).or_default() += 1;
                seen += 100;
                expect_blob = table.blob.is_some();
                if let Verdict::Keep = owners.judge(table, &row)? {
                    match table.name {
                        "tenants" => clashes.tenant_ids.push(text(&row, "id")?.to_owned()),
                        "domains" => clashes.domains.push(text(&row, "name")?.to_owned()),
                        "accounts" => clashes.addresses.push(text(&row, "address")?.to_owned()),
                        "hostnames" => clashes.hostnames.push(text(&row, "hostname")?.to_owned()),
                        "messages" => {
                            if clashes.sample_messages.len() < 16 {
                                clashes.sample_messages.push(text(&row, "id")?.to_owned());
                            }
                            if text(&row, "storage")? == "dispersed" {
                                dispersed += 1;
                            }
                        }
                        _ => {}
                    }
                }
            }
            Item::Blob(bytes) => {
                if !expect_blob {
                    return Err(Error::Unusable(
                        "it holds bytes that belong to no message".into(),
                    ));
                }
                expect_blob = false;
                counts.blobs += 1;
                counts.blob_bytes += bytes.len() as u64;
                seen += bytes.len() as u64;
            }
            Item::Trailer(t) => {
                if expect_blob {
                    return Err(Error::Unusable("a message's bytes are missing".into()));
                }
                trailer = Some(t);
            }
        }
        progress.advance(seen);
    }
    progress.finish();
    match trailer {
        Some(t) if t == counts => {}
        Some(_) => {
            return Err(Error::Unusable(
                "its trailer does not match what it holds".into(),
            ));
        }
        None => return Err(Error::Unusable("it ends without its trailer".into())),
    }
    if owners.tenants.len() != tenants.len() {
        return Err(Error::Unusable("it lacks tenants its header lists".into()));
    }
    let header = records.header;
    Ok(Checked {
        root,
        tenants,
        clashes,
        dispersed,
        counts,
        name,
        header,
    })
}

/// What the importing operator decides, rather than the archive: an
/// archive's key is the exporter's choice, so nothing in it that grants
/// trust is taken as it is.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// The tenant to hang the tree under (the operator tenant by default).
    pub parent: Option<TenantId>,
    /// Keep the archive's domain and hostname verifications, as the
    /// operator's forced verification (audited). Off: they arrive unverified
    /// and must be proven again through DNS.
    pub trust_verification: bool,
    /// The imported root tenant's limits; the archive's when absent. Either
    /// way they must fit the parent's package.
    pub max_accounts: Option<i64>,
    pub max_domains: Option<i64>,
    pub storage_quota_bytes: Option<i64>,
}

/// Recreates on this instance the tenant tree exported to `archive`, under
/// `parent` (the operator tenant by default). All of it or nothing.
pub async fn import(
    inbound: &mail::inbound::Inbound,
    archive: &Path,
    unlock: &Unlock,
    parent: Option<TenantId>,
    actor: &str,
    progress: &dyn Progress,
) -> Result<Summary> {
    let options = ImportOptions {
        parent,
        ..ImportOptions::default()
    };
    import_with(inbound, archive, unlock, &options, actor, progress).await
}

/// [`import`] with the importing operator's choices.
pub async fn import_with(
    inbound: &mail::inbound::Inbound,
    archive: &Path,
    unlock: &Unlock,
    options: &ImportOptions,
    actor: &str,
    progress: &dyn Progress,
) -> Result<Summary> {
    let parent = options.parent;
    let store = inbound.store();
    let checked = blocking(|| check(archive, unlock, progress))?;
    let clashes = store.import_clashes(&checked.clashes).await?;
    if !clashes.is_empty() {
        return Err(Error::Refused(format!(
            "this instance already has {} of the archive: {}; nothing was imported",
            if clashes.len() == 1 {
                "one part"
            } else {
                "parts"
            },
            clashes.join(", ")
        )));
    }
    if checked.dispersed > 0 && inbound.dispersed().is_none() {
        return Err(Error::Refused(format!(
            "the archive holds {} dispersed messages and this instance has no storage sites; nothing was imported",
            checked.dispersed
        )));
    }
    let parent = match parent {
        Some(p) => {
            store
                .tenant(p)
                .await?
                .ok_or(tenants::Error::NotFound("parent tenant"))?
                .id
        }
        None => store.ensure_operator().await?.id,
    };

    let mut written: Vec<(Uuid, NewObject)> = Vec::new();
    let parent_tenant = store
        .tenant(parent)
        .await?
        .ok_or(tenants::Error::NotFound("parent tenant"))?;
    let outcome = write_all(
        inbound,
        archive,
        unlock,
        &checked,
        (&parent_tenant, options),
        actor,
        progress,
        &mut written,
    )
    .await;
    match outcome {
        Ok(summary) => {
            tracing::info!(tenant = %checked.root, messages = summary.messages, "tenant imported");
            Ok(summary)
        }
        Err(e) => {
            // Nothing was committed: the shards written on the way belong to nothing.
            if let Some(dispersed) = inbound.dispersed() {
                for (id, object) in &written {
                    dispersed.discard(*id, object).await;
                }
            }
            Err(e)
        }
    }
}

/// The imported root's limits: the importing operator's when given, and
/// within the parent's package either way.
fn root_limits(row: &mut Row, parent: &tenants::Tenant, options: &ImportOptions) -> Result<()> {
    let chosen = [
        (
            "max_accounts",
            options.max_accounts,
            parent.limits.max_accounts,
        ),
        (
            "max_domains",
            options.max_domains,
            parent.limits.max_domains,
        ),
        (
            "storage_quota_bytes",
            options.storage_quota_bytes,
            parent.limits.storage_quota_bytes,
        ),
    ];
    for (column, given, parents) in chosen {
        if let Some(value) = given {
            row.insert(column.into(), Value::from(value));
        }
        let value = row
            .get(column)
            .and_then(Value::as_i64)
            .ok_or_else(|| Error::Unusable(format!("its root tenant has no `{column}`")))?;
        if parent.kind != tenants::TenantKind::Operator && value > parents {
            return Err(Error::Refused(format!(
                "the imported tenant's `{column}` ({value}) exceeds its parent's package ({parents}); \
                 choose a smaller one (--{}) or another parent; nothing was imported",
                column.replace('_', "-")
            )));
        }
    }
    Ok(())
}

/// The second reading: every row written in one transaction, which commits
/// last, so that an error anywhere leaves nothing (the caller then removes
/// the shards written on the way).
#[allow(clippy::too_many_arguments)]
async fn write_all(
    inbound: &mail::inbound::Inbound,
    archive: &Path,
    unlock: &Unlock,
    checked: &Checked,
    (parent, options): (&tenants::Tenant, &ImportOptions),
    actor: &str,
    progress: &dyn Progress,
    written: &mut Vec<(Uuid, NewObject)>,
) -> Result<Summary> {
    let store = inbound.store();
    let master = inbound.master();
    let plans: HashMap<String, Uuid> = store
        .list_plans()
        .await?
        .into_iter()
        .map(|p| (p.name, p.id))
        .collect();
    let mut records = blocking(|| Records::open(archive, unlock))?;
    if records.header != checked.header {
        return Err(Error::Unusable(
            "it changed between its two readings".into(),
        ));
    }
    let archive_bytes = std::fs::metadata(archive).map_err(io(archive))?.len();
    let mut owners = Owners::new(checked.root.0, &checked.tenants);
    let mut import = store.begin_import().await?;
    let mut domains: HashMap<Uuid, String> = HashMap::new();
    let mut policies: HashMap<Uuid, Policy> = HashMap::new();
    let mut summary = Summary {
        tenants: checked.tenants.len() as u64,
        archive_bytes,
        ..Summary::default()
    };
    let total: u64 = checked.counts.rows.values().sum();
    progress.start("importing", total);
    let mut pending: Option<(&'static Table, Row)> = None;
    loop {
        let Some(item) = blocking(|| records.next())? else {
            break;
        };
        let (table, mut row, blob) = match item {
            Item::Row { table, row } if table.blob.is_some() => {
                pending = Some((table, row));
                continue;
            }
            Item::Row { table, row } => (table, row, None),
            Item::Blob(bytes) => {
                let (table, row) = pending.take().ok_or_else(|| {
                    Error::Unusable("it holds bytes that belong to no message".into())
                })?;
                (table, row, Some(bytes))
            }
            Item::Trailer(_) => break,
        };
        progress.advance(1);
        if let Verdict::LeaveOut = owners.judge(table, &row)? {
            continue;
        }
        match table.name {
            "tenants" => {
                let id = uuid(&row, "id")?;
                if let Some(raw) = row.remove("opaque_setup_raw").filter(|v| !v.is_null()) {
                    let raw = b64_decode(
                        raw.as_str().ok_or_else(|| {
                            Error::Unusable("an OPAQUE setup that is not text".into())
                        })?,
                        "an OPAQUE setup",
                    )?;
                    let sealed = master.seal_secret(&vault::opaque::setup_context(&id), &raw)?;
                    row.insert("opaque_setup".into(), Value::String(sealed));
                }
                if id == checked.root.0 {
                    row.insert("parent_id".into(), Value::String(parent.id.0.to_string()));
                    root_limits(&mut row, parent, options)?;
                }
                policies.insert(id, policy_of(&row)?);
            }
            // Proof of a domain or a hostname is this instance's to see:
            // an archive could claim anything.
            "domains" | "hostnames" if !options.trust_verification => {
                if !row.get("verified_at").is_none_or(Value::is_null) {
                    summary.warnings.push(format!(
                        "{} `{}` arrives unverified: publish its verification record again (or import with --trust-verification)",
                        if table.name == "domains" { "domain" } else { "hostname" },
                        text(&row, if table.name == "domains" { "name" } else { "hostname" })?
                    ));
                }
                row.insert("verified_at".into(), Value::Null);
                if table.name == "domains" {
                    row.insert("verification_method".into(), Value::Null);
                    domains.insert(uuid(&row, "id")?, text(&row, "name")?.to_owned());
                }
            }
            "domains" | "hostnames" if table.name == "domains" => {
                if !row.get("verified_at").is_none_or(Value::is_null) {
                    row.insert("verification_method".into(), Value::String("forced".into()));
                }
                domains.insert(uuid(&row, "id")?, text(&row, "name")?.to_owned());
            }
            // Keys to this instance's API are this instance's to issue.
            "api_keys" => {
                summary.api_keys_left_out += 1;
                continue;
            }
            "tenant_keys" => {
                let tenant = uuid(&row, "tenant_id")?;
                let raw = b64_decode(text(&row, "data_key")?, "a tenant key")?;
                let wrapped = master.wrap_data_key_bytes(tenant.as_bytes(), &raw)?;
                row.remove("data_key");
                row.insert("wrapped_key".into(), Value::String(b64(&wrapped)));
            }
            "dkim_keys" => {
                let domain = domains
                    .get(&uuid(&row, "domain_id")?)
                    .ok_or_else(|| Error::Unusable("a DKIM key of no domain".into()))?;
                let pem = text(&row, "private_key_pem")?.to_owned();
                let sealed = master
                    .seal_secret(&mail::outbound::dkim_key_context(domain), pem.as_bytes())?;
                row.remove("private_key_pem");
                row.insert("private_key".into(), Value::String(sealed));
            }
            "accounts" => summary.accounts += 1,
            "tenant_billing" => {
                let name = text(&row, "plan_name")?.to_owned();
                row.remove("plan_name");
                match plans.get(&name) {
                    Some(id) => {
                        row.insert("plan_id".into(), Value::String(id.to_string()));
                    }
                    None => {
                        summary.warnings.push(format!(
                            "tenant {} was on plan `{name}`, which this instance does not have: it was imported without a plan",
                            text(&row, "tenant_id")?
                        ));
                        continue;
                    }
                }
            }
            _ => {}
        }
        if table.name == "messages" {
            let content = blob.unwrap_or_default();
            summary.messages += 1;
            summary.message_bytes += content.len() as u64;
            if text(&row, "storage")? == "dispersed" {
                let id = uuid(&row, "id")?;
                let tenant = uuid(&row, "tenant_id")?;
                let policy = policies.get(&tenant).cloned().unwrap_or_default();
                let dispersed = inbound
                    .dispersed()
                    .ok_or_else(|| Error::Refused("no storage sites".into()))?;
                let object = dispersed.write_for(&policy, id, &content).await?;
                written.push((id, object));
                import.insert(table, &row, Some(&[])).await?;
                import
                    .insert_object(
                        id,
                        TenantId(tenant),
                        &written.last().expect("just pushed").1,
                    )
                    .await?;
            } else {
                import.insert(table, &row, Some(&content)).await?;
            }
        } else {
            import.insert(table, &row, blob.as_deref()).await?;
        }
    }
    summary.warnings.extend(owners.warnings());
    if summary.api_keys_left_out > 0 {
        summary.warnings.push(format!(
            "{} API key(s) were not imported: an administrator makes new ones here",
            summary.api_keys_left_out
        ));
    }
    let detail = json!({
        "tenant": checked.name,
        "tenants": checked.tenants.len(),
        "messages": summary.messages,
        "left_out": owners.left_out,
        "archive_created_at": records.reader.created_at().to_string(),
    });
    import
        .finish(actor, checked.root, &checked.tenants, detail)
        .await?;
    progress.finish();
    Ok(summary)
}
