//! The legal request register, the disclosure exports recorded for its
//! requests, the transparency report made from them, and the warrant canary.
//!
//! The register is append-only (the database refuses updates and deletes):
//! a correction is a new entry naming the one it corrects, every entry knows
//! the first entry of its chain, and the newest entry of a chain is the
//! request as it stands. The register's audit rows go to the operator's
//! tenant, never to the tenant concerned: its administrators read their own
//! audit log, and a gag order may forbid telling them.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    Audit, INSERT_AUDIT, Page, Pool, Store, WriteLock, join_sql, stored, unique_violation,
};
use crate::model::{AccountId, DataKind, Decision, Jurisdiction, TenantId};
use crate::{Error, Result};

/// Whose data a legal request asks for, over which time, of which kinds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LegalScope {
    /// The tenant concerned.
    pub tenant_id: TenantId,
    /// Accounts of that tenant; empty: the whole tenant.
    #[serde(default)]
    pub account_ids: Vec<AccountId>,
    /// From this instant (included); absent: from the beginning.
    pub from: Option<DateTime<Utc>>,
    /// Until this instant (excluded); absent: up to the request.
    pub until: Option<DateTime<Utc>>,
    /// The kinds of data asked for (at least one).
    pub kinds: Vec<DataKind>,
}

/// One entry of the register.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LegalRequest {
    pub id: Uuid,
    /// The entry this one corrects.
    pub corrects: Option<Uuid>,
    /// The entry that corrects this one; absent: this entry is the request as it stands.
    pub corrected_by: Option<Uuid>,
    /// Who asked: a court, a police service, an agency.
    pub authority: String,
    /// Where the authority acts (ISO 3166-1 alpha-2).
    pub country: Jurisdiction,
    /// The court order's reference; absent: the request has none, and was refused.
    pub legal_basis: Option<String>,
    /// Whether the request has a legal basis (a court order reference).
    pub valid: bool,
    pub received_on: NaiveDate,
    pub scope: LegalScope,
    pub decision: Decision,
    /// What was disclosed, in words.
    pub disclosed: String,
    /// Whether the tenant concerned was told.
    pub tenant_notified: bool,
    /// A gag order forbids telling the tenant until this day (included).
    pub gag_until: Option<NaiveDate>,
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
    /// The disclosure exports of this request (made under any of its versions), oldest first.
    pub exports: Vec<LegalExport>,
}

/// A request to record, or the full corrected text of one.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLegalRequest {
    pub authority: String,
    /// ISO 3166-1 alpha-2, e.g. `FR`.
    pub country: Jurisdiction,
    /// The court order's reference. Without one the request is recorded, and refused.
    pub legal_basis: Option<String>,
    pub received_on: NaiveDate,
    pub scope: LegalScope,
    /// Required with a legal basis; without one, only `refused` (the default) is accepted.
    pub decision: Option<Decision>,
    /// What was disclosed, in words (empty: nothing).
    #[serde(default)]
    pub disclosed: String,
    #[serde(default)]
    pub tenant_notified: bool,
    /// The last day (included) a gag order forbids telling the tenant.
    pub gag_until: Option<NaiveDate>,
}

/// Messages counted by confidentiality level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct MessagesByLevel {
    pub standard: i64,
    pub sealed: i64,
    pub dispersed: i64,
    pub end_to_end: i64,
}

impl MessagesByLevel {
    /// From counts in the order of [`crate::Level::ALL`].
    pub fn from_counts([standard, sealed, dispersed, end_to_end]: [i64; 4]) -> MessagesByLevel {
        MessagesByLevel {
            standard,
            sealed,
            dispersed,
            end_to_end,
        }
    }

    /// Messages the server could only hand over as ciphertext: every level above `standard`.
    pub fn ciphertext_only(&self) -> i64 {
        self.sealed + self.dispersed + self.end_to_end
    }

    fn add(&mut self, other: &MessagesByLevel) {
        self.standard += other.standard;
        self.sealed += other.sealed;
        self.dispersed += other.dispersed;
        self.end_to_end += other.end_to_end;
    }
}

/// A signed archive handed over for a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct LegalExport {
    pub id: Uuid,
    /// The entry (the version of the request) it was made under.
    pub request_id: Uuid,
    pub created_at: DateTime<Utc>,
    /// SHA-256 of the archive, lower-case hex.
    pub sha256: String,
    /// Ed25519 signature of the archive by the instance key, base64.
    pub signature: String,
    /// Accounts whose data the archive holds.
    pub accounts: i64,
    /// Messages in the archive, by confidentiality level.
    pub messages: MessagesByLevel,
    pub bytes: i64,
}

/// What an export held, to record.
#[derive(Clone, Debug)]
pub struct NewLegalExport {
    /// SHA-256 of the archive, lower-case hex.
    pub sha256: String,
    /// Ed25519 signature by the instance key, base64 (88 characters).
    pub signature: String,
    pub accounts: i64,
    /// Messages in the order of [`crate::Level::ALL`]: standard, sealed, dispersed, end-to-end.
    pub messages_by_level: [i64; 4],
    pub bytes: i64,
}

/// The numbers of a transparency report, for one quarter and country or in total.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct TransparencyCounts {
    /// Requests received, each counted once, as last corrected.
    pub received: i64,
    /// Refused because they had no legal basis (no court order).
    pub refused_no_legal_basis: i64,
    /// Refused although they had a legal basis.
    pub refused: i64,
    pub contested: i64,
    pub complied: i64,
    pub partially: i64,
    /// Accounts in the scope of requests that led to an export (for a
    /// whole-tenant scope, the accounts its exports held). An account in the
    /// scope of two requests counts twice.
    pub accounts_affected: i64,
    /// Messages handed over, by the level they were stored at.
    pub messages_disclosed: MessagesByLevel,
    /// How many of those were only ciphertext (`sealed` and above).
    pub messages_ciphertext_only: i64,
}

/// The numbers of one quarter in one country.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct TransparencyRow {
    /// The quarter the requests were received in, e.g. `2026-Q4`.
    pub quarter: String,
    pub country: Jurisdiction,
    #[serde(flatten)]
    pub counts: TransparencyCounts,
}

/// The register, aggregated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct TransparencyReport {
    /// The tenant this report is about; absent: the whole instance.
    pub tenant_id: Option<TenantId>,
    /// Oldest quarter first, then by country.
    pub rows: Vec<TransparencyRow>,
    pub totals: TransparencyCounts,
}

/// A signed, dated statement that the instance has received no order it may not disclose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarrantCanary {
    pub id: Uuid,
    pub issued_at: DateTime<Utc>,
    /// When the next statement is due; past it, this one no longer holds.
    pub next_due: DateTime<Utc>,
    pub statement: String,
    /// Ed25519 signature of the statement's UTF-8 bytes by the instance key, base64.
    pub signature: String,
}

/// A canary to publish, already signed.
#[derive(Clone, Debug)]
pub struct NewCanary {
    pub issued_at: DateTime<Utc>,
    pub next_due: DateTime<Utc>,
    pub statement: String,
    pub signature: String,
}

/// `2026-Q4` for a day of October to December 2026.
pub fn quarter_of(day: NaiveDate) -> String {
    format!("{}-Q{}", day.year(), day.month0() / 3 + 1)
}

#[derive(FromRow)]
struct RequestRow {
    id: Uuid,
    chain_id: Uuid,
    corrects_id: Option<Uuid>,
    corrected_by: Option<Uuid>,
    authority: String,
    country: String,
    legal_basis: Option<String>,
    received_on: NaiveDate,
    tenant_id: Uuid,
    account_ids: String,
    scope_from: Option<DateTime<Utc>>,
    scope_until: Option<DateTime<Utc>>,
    data_kinds: String,
    decision: String,
    disclosed: String,
    tenant_notified: bool,
    gag_until: Option<NaiveDate>,
    recorded_by: String,
    recorded_at: DateTime<Utc>,
}

impl RequestRow {
    fn into_request(self, exports: Vec<LegalExport>) -> Result<LegalRequest> {
        let json =
            |what: &str, e: serde_json::Error| Error::Internal(format!("stored {what}: {e}"));
        let accounts: Vec<Uuid> =
            serde_json::from_str(&self.account_ids).map_err(|e| json("scope accounts", e))?;
        let kinds: Vec<String> =
            serde_json::from_str(&self.data_kinds).map_err(|e| json("data kinds", e))?;
        Ok(LegalRequest {
            id: self.id,
            corrects: self.corrects_id,
            corrected_by: self.corrected_by,
            authority: self.authority,
            country: Jurisdiction::parse(&self.country).map_err(stored)?,
            valid: self.legal_basis.is_some(),
            legal_basis: self.legal_basis,
            received_on: self.received_on,
            scope: LegalScope {
                tenant_id: TenantId(self.tenant_id),
                account_ids: accounts.into_iter().map(AccountId).collect(),
                from: self.scope_from,
                until: self.scope_until,
                kinds: kinds
                    .iter()
                    .map(|k| k.parse())
                    .collect::<Result<_>>()
                    .map_err(stored)?,
            },
            decision: self.decision.parse().map_err(stored)?,
            disclosed: self.disclosed,
            tenant_notified: self.tenant_notified,
            gag_until: self.gag_until,
            recorded_by: self.recorded_by,
            recorded_at: self.recorded_at,
            exports,
        })
    }
}

#[derive(FromRow)]
struct ExportRow {
    id: Uuid,
    request_id: Uuid,
    chain_id: Uuid,
    created_at: DateTime<Utc>,
    sha256: String,
    signature: String,
    accounts: i64,
    messages_standard: i64,
    messages_sealed: i64,
    messages_dispersed: i64,
    messages_end_to_end: i64,
    bytes: i64,
}

impl From<ExportRow> for LegalExport {
    fn from(r: ExportRow) -> LegalExport {
        LegalExport {
            id: r.id,
            request_id: r.request_id,
            created_at: r.created_at,
            sha256: r.sha256,
            signature: r.signature,
            accounts: r.accounts,
            messages: MessagesByLevel::from_counts([
                r.messages_standard,
                r.messages_sealed,
                r.messages_dispersed,
                r.messages_end_to_end,
            ]),
            bytes: r.bytes,
        }
    }
}

#[derive(FromRow)]
struct CanaryRow {
    id: Uuid,
    issued_at: DateTime<Utc>,
    next_due: DateTime<Utc>,
    statement: String,
    signature: String,
}

impl From<CanaryRow> for WarrantCanary {
    fn from(r: CanaryRow) -> WarrantCanary {
        WarrantCanary {
            id: r.id,
            issued_at: r.issued_at,
            next_due: r.next_due,
            statement: r.statement,
            signature: r.signature,
        }
    }
}

const REQUEST_COLUMNS: &str = "r.id, r.chain_id, r.corrects_id, \
     (SELECT c.id FROM legal_requests c WHERE c.corrects_id = r.id) AS corrected_by, \
     r.authority, r.country, r.legal_basis, r.received_on, r.tenant_id, r.account_ids, r.scope_from, r.scope_until, \
     r.data_kinds, r.decision, r.disclosed, r.tenant_notified, r.gag_until, r.recorded_by, r.recorded_at";
const EXPORT_COLUMNS: &str = "e.id, e.request_id, r.chain_id, e.created_at, e.sha256, e.signature, e.accounts, \
     e.messages_standard, e.messages_sealed, e.messages_dispersed, e.messages_end_to_end, e.bytes";
/// Entries no other entry corrects: each request as it stands.
const CURRENT: &str = "NOT EXISTS (SELECT 1 FROM legal_requests c WHERE c.corrects_id = r.id)";
/// Current entries whose gag order still runs on day `$1`.
const RUNNING_GAGS: &str = "SELECT COUNT(*) FROM legal_requests r WHERE r.gag_until IS NOT NULL AND r.gag_until >= $1 \
     AND NOT EXISTS (SELECT 1 FROM legal_requests c WHERE c.corrects_id = r.id)";

/// A base64 Ed25519 signature: 64 bytes, 88 characters with their padding.
fn check_signature(signature: &str) -> Result<()> {
    let alphabet = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    let bytes = signature.as_bytes();
    if bytes.len() != 88 || !signature.ends_with("==") || !bytes[..86].iter().all(|&b| alphabet(b))
    {
        return Err(Error::Invalid(
            "the signature must be a base64 Ed25519 signature (64 bytes, 88 characters)".into(),
        ));
    }
    Ok(())
}

/// Checks a new entry and settles its decision; what it returns is what is stored.
fn checked(mut new: NewLegalRequest, today: NaiveDate) -> Result<NewLegalRequest> {
    let authority = new.authority.trim();
    if authority.is_empty()
        || authority.chars().count() > 200
        || authority.chars().any(char::is_control)
    {
        return Err(Error::Invalid(
            "`authority` must be 1 to 200 printable characters".into(),
        ));
    }
    new.authority = authority.to_owned();
    new.legal_basis = match new.legal_basis.as_deref().map(str::trim) {
        None => None,
        Some("") => {
            return Err(Error::Invalid(
                "`legal_basis` is empty: leave it out when the request has no court order reference".into(),
            ));
        }
        Some(basis) if basis.chars().count() > 500 => {
            return Err(Error::Invalid(
                "`legal_basis` is longer than 500 characters".into(),
            ));
        }
        Some(basis) => Some(basis.to_owned()),
    };
    new.decision = Some(match (&new.legal_basis, new.decision) {
        (None, None | Some(Decision::Refused)) => Decision::Refused,
        (None, Some(asked)) => {
            return Err(Error::Invalid(format!(
                "a request without a legal basis (a court order reference) can only be refused; it cannot be recorded as `{asked}`"
            )));
        }
        (Some(_), None) => {
            return Err(Error::Invalid(
                "`decision` is required for a request with a legal basis".into(),
            ));
        }
        (Some(_), Some(decision)) => decision,
    });
    // A day of slack: where the operator is, it may already be tomorrow (time zones reach UTC+14).
    if new.received_on > today + chrono::Days::new(1) {
        return Err(Error::Invalid(format!(
            "`received_on` {} is in the future",
            new.received_on
        )));
    }
    if new.disclosed.chars().count() > 10_000 {
        return Err(Error::Invalid(
            "`disclosed` is longer than 10,000 characters".into(),
        ));
    }
    let scope = &mut new.scope;
    if scope.kinds.is_empty() {
        return Err(Error::Invalid(
            "the scope must name at least one kind of data: account_metadata, delivery_logs or messages".into(),
        ));
    }
    scope.kinds.sort();
    scope.kinds.dedup();
    scope.account_ids.sort();
    scope.account_ids.dedup();
    if let (Some(from), Some(until)) = (scope.from, scope.until)
        && from >= until
    {
        return Err(Error::Invalid(format!(
            "the scope's `from` ({from}) must be before its `until` ({until})"
        )));
    }
    if let Some(gag) = new.gag_until {
        if gag < new.received_on {
            return Err(Error::Invalid(format!(
                "`gag_until` {gag} is before the request was received ({})",
                new.received_on
            )));
        }
        if new.tenant_notified && gag >= today {
            return Err(Error::Invalid(format!(
                "the tenant cannot have been notified while a gag order forbids it (until {gag}); \
                 if the order was lifted, record the day it ended as `gag_until`"
            )));
        }
    }
    Ok(new)
}

impl Store {
    /// The operator tenant, to which the register's audit rows belong.
    async fn operator_tenant_id(&self) -> Result<Option<Uuid>> {
        let sql = "SELECT id FROM tenants WHERE kind = 'operator'";
        let row: Option<(Uuid,)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).fetch_optional(p).await)?;
        Ok(row.map(|(id,)| id))
    }

    /// Records a request. One without a legal basis is recorded as refused.
    pub async fn record_legal_request(
        &self,
        actor: &str,
        new: NewLegalRequest,
    ) -> Result<LegalRequest> {
        self.insert_legal_request(actor, None, new).await
    }

    /// Records `new` as the correction of entry `corrects`, which must be
    /// the newest entry of its chain.
    pub async fn correct_legal_request(
        &self,
        actor: &str,
        corrects: Uuid,
        new: NewLegalRequest,
    ) -> Result<LegalRequest> {
        self.insert_legal_request(actor, Some(corrects), new).await
    }

    async fn insert_legal_request(
        &self,
        actor: &str,
        corrects: Option<Uuid>,
        new: NewLegalRequest,
    ) -> Result<LegalRequest> {
        let new = checked(new, Utc::now().date_naive())?;
        let decision = new.decision.unwrap_or(Decision::Refused);
        let scope = &new.scope;
        let tenant = self.tenant(scope.tenant_id).await?.ok_or_else(|| {
            Error::Invalid(format!(
                "the scope's tenant {} does not exist",
                scope.tenant_id
            ))
        })?;
        for id in &scope.account_ids {
            match self.account(*id).await? {
                Some(account) if account.tenant_id == tenant.id => {}
                Some(account) => {
                    return Err(Error::Invalid(format!(
                        "the account {id} ({}) does not belong to the scope's tenant `{}`",
                        account.address, tenant.name
                    )));
                }
                None => {
                    return Err(Error::Invalid(format!(
                        "the scope's account {id} does not exist"
                    )));
                }
            }
        }
        let operator = self.operator_tenant_id().await?;
        let id = Uuid::now_v7();
        let target = "SELECT r.chain_id, (SELECT c.id FROM legal_requests c WHERE c.corrects_id = r.id) \
             FROM legal_requests r WHERE r.id = $1";
        let newest = join_sql(
            "SELECT r.id FROM legal_requests r WHERE r.chain_id = $1 AND ",
            CURRENT,
            "",
        );
        let insert = "INSERT INTO legal_requests (id, chain_id, corrects_id, authority, country, legal_basis, received_on, \
             tenant_id, account_ids, scope_from, scope_until, data_kinds, decision, disclosed, tenant_notified, gag_until, \
             recorded_by, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)";
        let account_ids = serde_json::Value::from(
            scope
                .account_ids
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>(),
        )
        .to_string();
        let kinds =
            serde_json::Value::from(scope.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>())
                .to_string();
        let result: Result<()> = on_pool!(&self.pool, p => async {
            let mut tx = p.begin_locked(operator.unwrap_or(Uuid::nil())).await?;
            let chain_id = match corrects {
                None => id,
                Some(target_id) => {
                    let found: Option<(Uuid, Option<Uuid>)> =
                        sqlx::query_as(target).bind(target_id).fetch_optional(&mut *tx).await?;
                    match found {
                        None => return Err(Error::NotFound("legal request")),
                        Some((chain, Some(newer))) => {
                            let (current,): (Uuid,) = sqlx::query_as(newest).bind(chain).fetch_one(&mut *tx).await?;
                            return Err(Error::Conflict(format!(
                                "the legal request entry {target_id} was already corrected by {newer}; \
                                 a correction must point to the newest entry of its chain, {current}"
                            )));
                        }
                        Some((chain, None)) => chain,
                    }
                }
            };
            sqlx::query(insert)
                .bind(id)
                .bind(chain_id)
                .bind(corrects)
                .bind(&new.authority)
                .bind(new.country.as_str())
                .bind(&new.legal_basis)
                .bind(new.received_on)
                .bind(scope.tenant_id.0)
                .bind(&account_ids)
                .bind(scope.from)
                .bind(scope.until)
                .bind(&kinds)
                .bind(decision.as_str())
                .bind(&new.disclosed)
                .bind(new.tenant_notified)
                .bind(new.gag_until)
                .bind(actor)
                .bind(Utc::now())
                .execute(&mut *tx)
                .await
                .map_err(|e| if unique_violation(&e) {
                    Error::Conflict(format!(
                        "the legal request entry {} was corrected meanwhile; correct the newest entry of its chain",
                        corrects.unwrap_or_default()
                    ))
                } else { e.into() })?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: operator,
                action: if corrects.is_some() { "legal_request.correct" } else { "legal_request.record" },
                object_type: "legal_request",
                object_id: id.to_string(),
                detail: serde_json::json!({
                    "corrects": corrects, "authority": new.authority, "country": new.country,
                    "valid": new.legal_basis.is_some(), "decision": decision, "tenant_id": scope.tenant_id,
                }),
            });
            tx.commit().await?;
            Ok(())
        }.await);
        result?;
        self.legal_request(id)
            .await?
            .ok_or(Error::NotFound("legal request"))
    }

    /// The exports of the chains `chains`, oldest first, by chain. Exports
    /// are rare (each is a disclosure to a court): for several chains, one
    /// read of them all.
    async fn chain_exports(&self, chains: &[Uuid]) -> Result<HashMap<Uuid, Vec<LegalExport>>> {
        let rows: Vec<ExportRow> = match chains {
            [] => Vec::new(),
            [chain] => {
                let sql = join_sql(
                    "SELECT ",
                    EXPORT_COLUMNS,
                    " FROM legal_exports e JOIN legal_requests r ON r.id = e.request_id \
                     WHERE r.chain_id = $1 ORDER BY e.id",
                );
                on_pool!(&self.pool, p => sqlx::query_as(sql).bind(*chain).fetch_all(p).await)?
            }
            _ => {
                let sql = join_sql(
                    "SELECT ",
                    EXPORT_COLUMNS,
                    " FROM legal_exports e JOIN legal_requests r ON r.id = e.request_id \
                     ORDER BY e.id",
                );
                on_pool!(&self.pool, p => sqlx::query_as(sql).fetch_all(p).await)?
            }
        };
        let wanted: HashSet<Uuid> = chains.iter().copied().collect();
        let mut by_chain: HashMap<Uuid, Vec<LegalExport>> = HashMap::new();
        for row in rows {
            if wanted.contains(&row.chain_id) {
                by_chain.entry(row.chain_id).or_default().push(row.into());
            }
        }
        Ok(by_chain)
    }

    async fn requests(&self, rows: Vec<RequestRow>) -> Result<Vec<LegalRequest>> {
        let chains: Vec<Uuid> = rows.iter().map(|r| r.chain_id).collect();
        let exports = self.chain_exports(&chains).await?;
        rows.into_iter()
            .map(|row| {
                let mine = exports.get(&row.chain_id).cloned().unwrap_or_default();
                row.into_request(mine)
            })
            .collect()
    }

    /// One entry of the register, as recorded (it may have been corrected since).
    pub async fn legal_request(&self, id: Uuid) -> Result<Option<LegalRequest>> {
        let sql = join_sql(
            "SELECT ",
            REQUEST_COLUMNS,
            " FROM legal_requests r WHERE r.id = $1",
        );
        let row: Option<RequestRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id).fetch_optional(p).await)?;
        Ok(self.requests(row.into_iter().collect()).await?.pop())
    }

    /// The newest entry of the chain `id` belongs to: the request as it stands.
    pub async fn current_legal_request(&self, id: Uuid) -> Result<Option<LegalRequest>> {
        let sql = join_sql(
            "SELECT ",
            REQUEST_COLUMNS,
            " FROM legal_requests r WHERE r.chain_id = (SELECT chain_id FROM legal_requests WHERE id = $1) \
             AND NOT EXISTS (SELECT 1 FROM legal_requests c WHERE c.corrects_id = r.id)",
        );
        let row: Option<RequestRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id).fetch_optional(p).await)?;
        Ok(self.requests(row.into_iter().collect()).await?.pop())
    }

    /// Every entry of the chain `id` belongs to, the first first; empty if unknown.
    pub async fn legal_request_chain(&self, id: Uuid) -> Result<Vec<LegalRequest>> {
        let sql = join_sql(
            "SELECT ",
            REQUEST_COLUMNS,
            " FROM legal_requests r WHERE r.chain_id = (SELECT chain_id FROM legal_requests WHERE id = $1) ORDER BY r.id",
        );
        let rows: Vec<RequestRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id).fetch_all(p).await)?;
        let mut chain = self.requests(rows).await?;
        // Ids follow time, but a chain's order is its links: start at the first entry, follow the corrections.
        let mut ordered = Vec::with_capacity(chain.len());
        let mut next = chain.iter().position(|r| r.corrects.is_none());
        while let Some(i) = next {
            let entry = chain.swap_remove(i);
            next = entry
                .corrected_by
                .and_then(|c| chain.iter().position(|r| r.id == c));
            ordered.push(entry);
        }
        Ok(ordered)
    }

    /// The register's entries (corrections included), in the order they were recorded.
    pub async fn list_legal_requests(&self, page: Page) -> Result<Vec<LegalRequest>> {
        let sql = join_sql(
            "SELECT ",
            REQUEST_COLUMNS,
            " FROM legal_requests r WHERE r.id > $1 ORDER BY r.id LIMIT $2",
        );
        let rows: Vec<RequestRow> = on_pool!(&self.pool, p => sqlx::query_as(sql).bind(page.after()).bind(page.fetch()).fetch_all(p).await)?;
        self.requests(rows).await
    }

    /// Records the archive handed over for a request. Only a request with a
    /// legal basis, as it stands complied with (fully or partially), may
    /// have one; the export is recorded under the request's current entry.
    pub async fn record_legal_export(
        &self,
        actor: &str,
        request_id: Uuid,
        new: NewLegalExport,
    ) -> Result<LegalExport> {
        if new.sha256.len() != 64
            || !new
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(Error::Invalid(
                "`sha256` must be 64 lower-case hexadecimal digits".into(),
            ));
        }
        check_signature(&new.signature)?;
        if new.accounts < 0 || new.bytes < 0 || new.messages_by_level.iter().any(|n| *n < 0) {
            return Err(Error::Invalid(
                "an export's counts cannot be negative".into(),
            ));
        }
        let current = self
            .current_legal_request(request_id)
            .await?
            .ok_or(Error::NotFound("legal request"))?;
        if !current.valid {
            return Err(Error::Conflict(format!(
                "the legal request {} has no legal basis (no court order reference): nothing may be disclosed for it",
                current.id
            )));
        }
        if !matches!(current.decision, Decision::Complied | Decision::Partially) {
            return Err(Error::Conflict(format!(
                "the legal request {} stands as `{}`: only a request complied with (fully or partially) may have an export",
                current.id, current.decision
            )));
        }
        let operator = self.operator_tenant_id().await?;
        let id = Uuid::now_v7();
        let [standard, sealed, dispersed, end_to_end] = new.messages_by_level;
        let insert = "INSERT INTO legal_exports (id, request_id, created_at, sha256, signature, accounts, messages_standard, \
             messages_sealed, messages_dispersed, messages_end_to_end, bytes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(insert)
                .bind(id).bind(current.id).bind(Utc::now()).bind(&new.sha256).bind(&new.signature).bind(new.accounts)
                .bind(standard).bind(sealed).bind(dispersed).bind(end_to_end).bind(new.bytes)
                .execute(&mut *tx).await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: operator,
                action: "legal_request.export",
                object_type: "legal_export",
                object_id: id.to_string(),
                detail: serde_json::json!({
                    "request_id": current.id, "sha256": new.sha256, "accounts": new.accounts,
                    "messages": new.messages_by_level, "bytes": new.bytes,
                }),
            });
            tx.commit().await?;
        });
        let sql = join_sql(
            "SELECT ",
            EXPORT_COLUMNS,
            " FROM legal_exports e JOIN legal_requests r ON r.id = e.request_id WHERE e.id = $1",
        );
        let row: ExportRow =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id).fetch_one(p).await)?;
        Ok(row.into())
    }

    /// The register aggregated per quarter and country: the whole instance
    /// (`None`), or one tenant's requests without those a gag order still hides.
    pub async fn transparency(&self, tenant: Option<TenantId>) -> Result<TransparencyReport> {
        self.transparency_on(tenant, Utc::now().date_naive()).await
    }

    /// [`Store::transparency`] as of day `today` (which decides whether a gag order still runs).
    pub async fn transparency_on(
        &self,
        tenant: Option<TenantId>,
        today: NaiveDate,
    ) -> Result<TransparencyReport> {
        let sql = join_sql(
            "SELECT ",
            REQUEST_COLUMNS,
            " FROM legal_requests r WHERE ($1 IS NULL OR r.tenant_id = $1) \
             AND NOT EXISTS (SELECT 1 FROM legal_requests c WHERE c.corrects_id = r.id) ORDER BY r.id",
        );
        let rows: Vec<RequestRow> = on_pool!(&self.pool, p => sqlx::query_as(sql).bind(tenant.map(|t| t.0)).fetch_all(p).await)?;
        let requests = self.requests(rows).await?;
        let mut rows: BTreeMap<(String, String), TransparencyCounts> = BTreeMap::new();
        let mut totals = TransparencyCounts::default();
        for request in &requests {
            // Showing a tenant a request it may not yet be told of would tell it.
            let gagged = request.gag_until.is_some_and(|g| g >= today) && !request.tenant_notified;
            if tenant.is_some() && gagged {
                continue;
            }
            let key = (
                quarter_of(request.received_on),
                request.country.as_str().to_owned(),
            );
            for counts in [rows.entry(key).or_default(), &mut totals] {
                count(counts, request);
            }
        }
        Ok(TransparencyReport {
            tenant_id: tenant,
            rows: rows
                .into_iter()
                .map(|((quarter, country), counts)| {
                    Ok(TransparencyRow {
                        quarter,
                        country: Jurisdiction::parse(&country).map_err(stored)?,
                        counts,
                    })
                })
                .collect::<Result<_>>()?,
            totals,
        })
    }

    /// Whether a request, as it stands, has a gag order that still runs on `day`.
    pub async fn gag_order_running(&self, day: NaiveDate) -> Result<bool> {
        let (n,): (i64,) =
            on_pool!(&self.pool, p => sqlx::query_as(RUNNING_GAGS).bind(day).fetch_one(p).await)?;
        Ok(n > 0)
    }

    /// Publishes a signed canary. Refused while any request, as it stands,
    /// has a gag order running on the day it is issued: the canary must then lapse.
    pub async fn issue_canary(&self, actor: &str, new: NewCanary) -> Result<WarrantCanary> {
        if new.statement.trim().is_empty() {
            return Err(Error::Invalid("the canary's statement is empty".into()));
        }
        if new.next_due <= new.issued_at {
            return Err(Error::Invalid(
                "the next canary must be due after this one is issued".into(),
            ));
        }
        check_signature(&new.signature)?;
        let operator = self.operator_tenant_id().await?;
        let id = Uuid::now_v7();
        let day = new.issued_at.date_naive();
        let insert = "INSERT INTO warrant_canaries (id, issued_at, next_due, statement, signature) VALUES ($1, $2, $3, $4, $5)";
        let result: Result<()> = on_pool!(&self.pool, p => async {
            // The same lock as recording a request: a gag order recorded meanwhile is seen.
            let mut tx = p.begin_locked(operator.unwrap_or(Uuid::nil())).await?;
            let (gags,): (i64,) = sqlx::query_as(RUNNING_GAGS).bind(day).fetch_one(&mut *tx).await?;
            if gags > 0 {
                return Err(Error::Conflict(
                    "a gag order runs: the warrant canary cannot be renewed, and lapses at its due date".into(),
                ));
            }
            sqlx::query(insert).bind(id).bind(new.issued_at).bind(new.next_due).bind(&new.statement).bind(&new.signature)
                .execute(&mut *tx).await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: operator,
                action: "canary.issue",
                object_type: "warrant_canary",
                object_id: id.to_string(),
                detail: serde_json::json!({ "issued_at": new.issued_at, "next_due": new.next_due }),
            });
            tx.commit().await?;
            Ok(())
        }.await);
        result?;
        self.latest_canary()
            .await?
            .ok_or_else(|| Error::Internal("the canary just issued is gone".into()))
    }

    /// The canary issued last.
    pub async fn latest_canary(&self) -> Result<Option<WarrantCanary>> {
        let sql = "SELECT id, issued_at, next_due, statement, signature FROM warrant_canaries ORDER BY id DESC LIMIT 1";
        let row: Option<CanaryRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).fetch_optional(p).await)?;
        Ok(row.map(WarrantCanary::from))
    }
}

/// Adds one request, as it stands, to `counts`.
fn count(counts: &mut TransparencyCounts, request: &LegalRequest) {
    counts.received += 1;
    match (request.valid, request.decision) {
        (false, _) => counts.refused_no_legal_basis += 1,
        (true, Decision::Refused) => counts.refused += 1,
        (true, Decision::Contested) => counts.contested += 1,
        (true, Decision::Complied) => counts.complied += 1,
        (true, Decision::Partially) => counts.partially += 1,
    }
    if request.exports.is_empty() {
        return;
    }
    counts.accounts_affected += if request.scope.account_ids.is_empty() {
        // Exports of the same request hold the same accounts: the largest is how many.
        request
            .exports
            .iter()
            .map(|e| e.accounts)
            .max()
            .unwrap_or(0)
    } else {
        request.scope.account_ids.len() as i64
    };
    for export in &request.exports {
        counts.messages_disclosed.add(&export.messages);
        counts.messages_ciphertext_only += export.messages.ciphertext_only();
    }
}

#[cfg(test)]
#[path = "legal_tests.rs"]
mod tests;
