//! The store: tenants, domains, accounts, API keys and the audit log on
//! SQLite (the embedded default) or PostgreSQL, picked from the URL scheme.
//!
//! Both backends run the same SQL (`$n` placeholders, recursive CTEs); each
//! method is written once and dispatched to the typed pool of the backend
//! with [`on_pool!`], so the dialects differ only where a `match` says so
//! (write locks). Every change writes its audit row in the same transaction,
//! so nothing changes without a trace and no trace lies.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{FromRow, Transaction};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::model::*;
use crate::{Error, Result};

/// Which database a [`Store`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Picks the backend from a database URL's scheme.
    pub fn from_url(url: &str) -> Result<Backend> {
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or("");
        match scheme {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            _ => Err(Error::Config(format!(
                "unsupported database URL scheme `{scheme}`: use sqlite://PATH or postgres://USER@HOST/DB"
            ))),
        }
    }
}

#[derive(Clone, Debug)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the concrete pool of whichever backend is in use.
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

/// What the store commits in groups (deliveries, submissions): many
/// waiting at once go to the database in one transaction, one fsync, and
/// each gets its own outcome.
trait GroupCommit: Sized + Send + 'static {
    type Outcome: Send + 'static;
    /// Most committed by one transaction.
    const MAX: usize;
    /// What it is called in errors.
    const WHAT: &'static str;
    fn commit(
        store: &Store,
        batch: Vec<Self>,
    ) -> impl Future<Output = Result<Vec<Result<Self::Outcome>>>> + Send;
}

/// One item waiting for its group commit, and where its outcome goes.
struct Waiting<T: GroupCommit> {
    item: T,
    reply: tokio::sync::oneshot::Sender<Result<T::Outcome>>,
}

/// Hands `item` to the group commit behind `queue` and waits for its outcome.
async fn through_group_commit<T: GroupCommit>(
    queue: &tokio::sync::mpsc::Sender<Waiting<T>>,
    item: T,
) -> Result<T::Outcome> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    queue
        .send(Waiting { item, reply })
        .await
        .map_err(|_| Error::Internal(format!("the {} committer has stopped", T::WHAT)))?;
    answer
        .await
        .map_err(|_| Error::Internal(format!("the {} committer dropped one", T::WHAT)))?
}

/// Runs until every `Store` clone is gone: takes whatever is waiting (at
/// most `T::MAX`), commits it in one transaction, answers each.
async fn group_committer<T: GroupCommit>(
    store: Store,
    mut queue: tokio::sync::mpsc::Receiver<Waiting<T>>,
) {
    while let Some(first) = queue.recv().await {
        let mut waiting = vec![first];
        while waiting.len() < T::MAX {
            match queue.try_recv() {
                Ok(next) => waiting.push(next),
                Err(_) => break,
            }
        }
        let (batch, replies): (Vec<_>, Vec<_>) =
            waiting.into_iter().map(|w| (w.item, w.reply)).unzip();
        match T::commit(&store, batch).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, what = T::WHAT, "group commit failed");
                for reply in replies {
                    let _ = reply.send(Err(Error::Internal(format!(
                        "the {} transaction failed: {e}",
                        T::WHAT
                    ))));
                }
            }
        }
    }
}

/// Opens a write transaction that serialises every change within one tenant
/// tree, so that two concurrent creations cannot both pass a package limit.
trait WriteLock {
    type Db: sqlx::Database;
    fn begin_locked(
        &self,
        root: Uuid,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Db>>> + Send;
    /// Takes the same lock on another tree within a transaction begun
    /// locked (a batch over several tenants: take them in one order).
    fn lock_also(
        &self,
        tx: &mut Transaction<'static, Self::Db>,
        root: Uuid,
    ) -> impl Future<Output = Result<()>> + Send;
}

impl WriteLock for SqlitePool {
    type Db = sqlx::Sqlite;
    async fn begin_locked(&self, _root: Uuid) -> Result<Transaction<'static, sqlx::Sqlite>> {
        // SQLite has one writer; taking the write lock up front avoids the
        // deadlock of two readers upgrading at once.
        Ok(self.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn lock_also(&self, _: &mut Transaction<'static, sqlx::Sqlite>, _: Uuid) -> Result<()> {
        // The transaction holds the one write lock already.
        Ok(())
    }
}

impl WriteLock for PgPool {
    type Db = sqlx::Postgres;
    async fn begin_locked(&self, root: Uuid) -> Result<Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.begin().await?;
        self.lock_also(&mut tx, root).await?;
        Ok(tx)
    }

    async fn lock_also(
        &self,
        tx: &mut Transaction<'static, sqlx::Postgres>,
        root: Uuid,
    ) -> Result<()> {
        sqlx::query("SELECT id FROM tenants WHERE id = $1 FOR UPDATE")
            .bind(root)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// Opens a transaction that writes after it reads: on SQLite it takes the
/// write lock up front (a deferred transaction that reads first fails when
/// another writer commits in between); PostgreSQL locks rows as it goes.
trait WriteFirst {
    type Db: sqlx::Database;
    fn begin_write(&self) -> impl Future<Output = Result<Transaction<'static, Self::Db>>> + Send;
}

impl WriteFirst for SqlitePool {
    type Db = sqlx::Sqlite;
    async fn begin_write(&self) -> Result<Transaction<'static, sqlx::Sqlite>> {
        Ok(self.begin_with("BEGIN IMMEDIATE").await?)
    }
}

impl WriteFirst for PgPool {
    type Db = sqlx::Postgres;
    async fn begin_write(&self) -> Result<Transaction<'static, sqlx::Postgres>> {
        Ok(self.begin().await?)
    }
}

/// Opens a write transaction that serialises the changes to one account's
/// mailboxes, so that two concurrent creations cannot both pass its cap.
trait AccountLock {
    type Db: sqlx::Database;
    fn begin_account_locked(
        &self,
        account: Uuid,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Db>>> + Send;
}

impl AccountLock for SqlitePool {
    type Db = sqlx::Sqlite;
    async fn begin_account_locked(
        &self,
        _account: Uuid,
    ) -> Result<Transaction<'static, sqlx::Sqlite>> {
        Ok(self.begin_with("BEGIN IMMEDIATE").await?)
    }
}

impl AccountLock for PgPool {
    type Db = sqlx::Postgres;
    async fn begin_account_locked(
        &self,
        account: Uuid,
    ) -> Result<Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT id FROM accounts WHERE id = $1 FOR UPDATE")
            .bind(account)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

/// Days an activation link opens its account: from its making, or, for
/// a signup that waited in line, from its admission.
pub const ACTIVATION_DAYS: i64 = 7;

/// Keyset pagination: items after `after`, at most `limit` of them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Page {
    pub after: Option<Uuid>,
    pub limit: u32,
}

impl Page {
    pub const DEFAULT_LIMIT: u32 = 50;
    pub const MAX_LIMIT: u32 = 200;

    fn after(&self) -> Uuid {
        self.after.unwrap_or(Uuid::nil())
    }

    fn fetch(&self) -> i64 {
        i64::from(self.limit.clamp(1, Self::MAX_LIMIT))
    }
}

// ---------------------------------------------------------------------------
// Records

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub kind: TenantKind,
    pub parent_id: Option<TenantId>,
    pub status: TenantStatus,
    pub limits: Limits,
    pub policy: Policy,
    /// Bytes of stored mail of the tenant's subtree: its own accounts' and
    /// every descendant tenant's, counted against its package.
    pub storage_used_bytes: i64,
    /// Whether the tenant's own transparency report is public on its verified hostnames.
    pub publish_transparency: bool,
    /// Whether its accounts' submissions are scanned for spam before they
    /// are queued (always, for the public tenant).
    pub scan_outbound: bool,
    /// Whether its accounts may forward their mail outside the service.
    pub external_forwarding: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct TenantRow {
    id: Uuid,
    name: String,
    kind: String,
    parent_id: Option<Uuid>,
    status: String,
    max_accounts: i64,
    max_domains: i64,
    storage_quota_bytes: i64,
    min_level: String,
    allowed_jurisdictions: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    storage_used_bytes: i64,
    dispersal_k: Option<i32>,
    dispersal_n: Option<i32>,
    publish_transparency: bool,
    scan_outbound: bool,
    external_forwarding: bool,
    outer_thread_headers: bool,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = Error;
    fn try_from(r: TenantRow) -> Result<Tenant> {
        let jurisdictions: Vec<String> = serde_json::from_str(&r.allowed_jurisdictions)
            .map_err(|e| Error::Internal(format!("stored jurisdictions: {e}")))?;
        Ok(Tenant {
            id: TenantId(r.id),
            name: r.name,
            kind: r.kind.parse().map_err(stored)?,
            parent_id: r.parent_id.map(TenantId),
            status: r.status.parse().map_err(stored)?,
            limits: Limits {
                max_accounts: r.max_accounts,
                max_domains: r.max_domains,
                storage_quota_bytes: r.storage_quota_bytes,
            },
            policy: Policy {
                min_level: r.min_level.parse().map_err(stored)?,
                allowed_jurisdictions: jurisdictions
                    .iter()
                    .map(|j| Jurisdiction::parse(j))
                    .collect::<Result<_>>()
                    .map_err(stored)?,
                redundancy: match (r.dispersal_k, r.dispersal_n) {
                    (Some(k), Some(n)) => Some(Redundancy {
                        k: k as u8,
                        n: n as u8,
                    }),
                    _ => None,
                },
                outer_thread_headers: r.outer_thread_headers,
            },
            storage_used_bytes: r.storage_used_bytes,
            publish_transparency: r.publish_transparency,
            scan_outbound: r.scan_outbound,
            external_forwarding: r.external_forwarding,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// A value read back from the database that no longer parses is our bug, not the caller's.
fn stored(e: Error) -> Error {
    Error::Internal(format!("stored value does not parse: {e}"))
}

#[derive(Clone, Debug)]
pub struct NewTenant {
    pub name: String,
    pub kind: TenantKind,
    pub parent_id: Option<TenantId>,
    pub limits: Limits,
    pub policy: Policy,
}

#[derive(Clone, Debug, Default)]
pub struct TenantUpdate {
    pub name: Option<String>,
    pub status: Option<TenantStatus>,
    pub limits: Option<Limits>,
    pub policy: Option<Policy>,
    pub publish_transparency: Option<bool>,
    pub scan_outbound: Option<bool>,
    pub external_forwarding: Option<bool>,
}

/// Which tenants a listing returns.
#[derive(Clone, Debug, Default)]
pub struct TenantFilter {
    /// Only this tenant and its descendants (`None`: every tenant).
    pub within: Option<TenantId>,
    pub parent_id: Option<TenantId>,
    pub kind: Option<TenantKind>,
    pub status: Option<TenantStatus>,
}

#[derive(Clone, Debug)]
pub struct Domain {
    pub id: DomainId,
    pub tenant_id: TenantId,
    pub name: DomainName,
    pub verification_token: String,
    pub verified_at: Option<DateTime<Utc>>,
    pub verification_method: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct DomainRow {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    verification_token: String,
    verified_at: Option<DateTime<Utc>>,
    verification_method: Option<String>,
    created_at: DateTime<Utc>,
}

impl TryFrom<DomainRow> for Domain {
    type Error = Error;
    fn try_from(r: DomainRow) -> Result<Domain> {
        Ok(Domain {
            id: DomainId(r.id),
            tenant_id: TenantId(r.tenant_id),
            name: DomainName::parse(&r.name).map_err(stored)?,
            verification_token: r.verification_token,
            verified_at: r.verified_at,
            verification_method: r.verification_method,
            created_at: r.created_at,
        })
    }
}

#[derive(Clone, Debug)]
pub struct NewDomain {
    pub tenant_id: TenantId,
    pub name: DomainName,
    pub verification_token: String,
    /// The domain's first signing keys, active at once.
    pub dkim_keys: Vec<NewDkimKey>,
}

#[derive(Clone)]
pub struct Account {
    pub id: AccountId,
    pub tenant_id: TenantId,
    pub domain_id: DomainId,
    pub address: EmailAddress,
    pub display_name: String,
    pub role: AccountRole,
    pub status: AccountStatus,
    pub level: Level,
    pub password_hash: String,
    pub fingerprint: String,
    pub public_key: String,
    pub secret_key: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Bytes of mail this account stores (counted in its tenant's quota too).
    pub storage_used_bytes: i64,
    /// The account's own cap inside its tenant's shared quota, if it has one.
    pub storage_quota_bytes: Option<i64>,
    /// Raised whenever what lets the account act changes (role, status,
    /// password, reset, deletion); tokens and sessions of an older value end.
    pub credentials_epoch: i64,
}

impl Account {
    /// The level the account's mail is kept at: its own, or the tenant's
    /// floor when that is higher. The one place the two meet.
    pub fn effective_level(&self, floor: Level) -> Level {
        self.level.max(floor)
    }
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("address", &self.address)
            .field("role", &self.role)
            .field("status", &self.status)
            .field("level", &self.level)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

#[derive(FromRow)]
struct AccountRow {
    id: Uuid,
    tenant_id: Uuid,
    domain_id: Uuid,
    address: String,
    display_name: String,
    role: String,
    status: String,
    level: String,
    password_hash: String,
    fingerprint: String,
    public_key: String,
    secret_key: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    storage_used_bytes: i64,
    storage_quota_bytes: Option<i64>,
    credentials_epoch: i64,
}

impl TryFrom<AccountRow> for Account {
    type Error = Error;
    fn try_from(r: AccountRow) -> Result<Account> {
        Ok(Account {
            id: AccountId(r.id),
            tenant_id: TenantId(r.tenant_id),
            domain_id: DomainId(r.domain_id),
            address: EmailAddress::parse(&r.address).map_err(stored)?,
            display_name: r.display_name,
            role: r.role.parse().map_err(stored)?,
            status: r.status.parse().map_err(stored)?,
            level: r.level.parse().map_err(stored)?,
            password_hash: r.password_hash,
            fingerprint: r.fingerprint,
            public_key: r.public_key,
            secret_key: r.secret_key,
            created_at: r.created_at,
            updated_at: r.updated_at,
            storage_used_bytes: r.storage_used_bytes,
            storage_quota_bytes: r.storage_quota_bytes,
            credentials_epoch: r.credentials_epoch,
        })
    }
}

/// An account and the parts of its tenant that mail delivery checks.
#[derive(Clone, Debug)]
pub struct RecipientAccount {
    pub account: Account,
    pub tenant_status: TenantStatus,
    pub tenant_min_level: Level,
    /// The tenant's `outer_thread_headers` (see [`crate::Policy`]).
    pub tenant_outer_thread_headers: bool,
    /// Storage as the tightest package above the account sees it (its
    /// tenant's or an ancestor's, each counting its subtree):
    /// `storage_quota_bytes - storage_used_bytes` is the room left for mail.
    pub storage_used_bytes: i64,
    /// The smallest package on the way up: a message larger never fits.
    pub storage_quota_bytes: i64,
}

#[derive(FromRow)]
struct RecipientAccountRow {
    #[sqlx(flatten)]
    account: AccountRow,
    tenant_status: String,
    tenant_min_level: String,
    tenant_outer_thread_headers: bool,
    #[sqlx(rename = "tenant_storage_used_bytes")]
    storage_used_bytes: i64,
    #[sqlx(rename = "tenant_storage_quota_bytes")]
    storage_quota_bytes: i64,
}

impl TryFrom<RecipientAccountRow> for RecipientAccount {
    type Error = Error;
    fn try_from(r: RecipientAccountRow) -> Result<RecipientAccount> {
        Ok(RecipientAccount {
            account: r.account.try_into()?,
            tenant_status: r.tenant_status.parse().map_err(stored)?,
            tenant_min_level: r.tenant_min_level.parse().map_err(stored)?,
            tenant_outer_thread_headers: r.tenant_outer_thread_headers,
            storage_used_bytes: r.storage_used_bytes,
            storage_quota_bytes: r.storage_quota_bytes,
        })
    }
}

/// Carries secrets (hash, locked key): deliberately not `Debug`.
#[derive(Clone)]
pub struct NewAccount {
    pub tenant_id: TenantId,
    pub domain_id: DomainId,
    pub address: EmailAddress,
    pub display_name: String,
    pub role: AccountRole,
    pub level: Level,
    pub password_hash: String,
    pub fingerprint: String,
    pub public_key: String,
    pub secret_key: String,
}

/// A change to an account. Key fields travel together: a new password always
/// comes with the secret key re-locked (or regenerated) for it.
#[derive(Clone, Default)]
pub struct AccountUpdate {
    pub display_name: Option<String>,
    pub role: Option<AccountRole>,
    pub status: Option<AccountStatus>,
    pub level: Option<Level>,
    pub credentials: Option<Credentials>,
}

/// Carries secrets (hash, locked key): deliberately not `Debug`.
#[derive(Clone)]
pub struct Credentials {
    pub password_hash: String,
    pub fingerprint: String,
    pub public_key: String,
    pub secret_key: String,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    pub name: String,
    /// The first characters of the secret, to recognise a key without revealing it.
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(FromRow)]
struct ApiKeyRow {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    prefix: String,
    scopes: String,
    created_by: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = Error;
    fn try_from(r: ApiKeyRow) -> Result<ApiKey> {
        Ok(ApiKey {
            id: ApiKeyId(r.id),
            tenant_id: TenantId(r.tenant_id),
            name: r.name,
            prefix: r.prefix,
            scopes: r
                .scopes
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(Scope::from_str)
                .collect::<Result<_>>()
                .map_err(stored)?,
            created_by: r.created_by,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
        })
    }
}

#[derive(Clone, Debug)]
pub struct NewApiKey {
    pub tenant_id: TenantId,
    pub name: String,
    pub prefix: String,
    pub secret_hash: String,
    pub scopes: Vec<Scope>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `operator`, `account:<id>` or `api_key:<id>`.
    pub actor: String,
    pub tenant_id: Option<TenantId>,
    /// What happened, e.g. `tenant.create`, `domain.verify`.
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub detail: serde_json::Value,
}

#[derive(FromRow)]
struct AuditRow {
    id: i64,
    at: DateTime<Utc>,
    actor: String,
    tenant_id: Option<Uuid>,
    action: String,
    object_type: String,
    object_id: String,
    detail: String,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> AuditEntry {
        AuditEntry {
            id: r.id,
            at: r.at,
            actor: r.actor,
            tenant_id: r.tenant_id.map(TenantId),
            action: r.action,
            object_type: r.object_type,
            object_id: r.object_id,
            detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// One audit row to write along with a change.
struct Audit<'a> {
    actor: &'a str,
    tenant_id: Option<Uuid>,
    action: &'static str,
    object_type: &'static str,
    object_id: String,
    detail: serde_json::Value,
}

const INSERT_AUDIT: &str = "INSERT INTO audit_log (at, actor, tenant_id, action, object_type, object_id, detail) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

macro_rules! write_audit {
    ($tx:expr, $audit:expr) => {{
        let a = $audit;
        sqlx::query(INSERT_AUDIT)
            .bind(Utc::now())
            .bind(a.actor)
            .bind(a.tenant_id)
            .bind(a.action)
            .bind(a.object_type)
            .bind(a.object_id)
            .bind(a.detail.to_string())
            .execute(&mut *$tx)
            .await?;
    }};
}

const INSERT_DKIM_KEY: &str = "INSERT INTO dkim_keys (id, domain_id, selector, algorithm, public_key, private_key, state, \
     created_at, activated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// Adds a DKIM key to a domain inside the caller's transaction.
macro_rules! insert_dkim_key {
    ($tx:expr, $domain:expr, $key:expr, $state:expr) => {{
        let (key, state): (&NewDkimKey, DkimKeyState) = ($key, $state);
        let now = Utc::now();
        sqlx::query(INSERT_DKIM_KEY)
            .bind(Uuid::now_v7())
            .bind($domain.0)
            .bind(&key.selector)
            .bind(key.algorithm.as_str())
            .bind(&key.public_key)
            .bind(key.private_key.expose_secret())
            .bind(state.as_str())
            .bind(now)
            .bind((state == DkimKeyState::Active).then_some(now))
            .execute(&mut *$tx)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(db) if db.is_unique_violation() => Error::Conflict(format!(
                    "the DKIM selector `{}` is already used by this domain",
                    key.selector
                )),
                _ => Error::from(e),
            })?;
    }};
}

/// The operator's "no limit": the largest integer a JSON client reads exactly.
const UNLIMITED: i64 = (1 << 53) - 1;

// ---------------------------------------------------------------------------
// SQL shared by both backends

const TENANT_COLUMNS: &str = "id, name, kind, parent_id, status, max_accounts, max_domains, storage_quota_bytes, \
     min_level, allowed_jurisdictions, created_at, updated_at, storage_used_bytes, dispersal_k, dispersal_n, \
     publish_transparency, scan_outbound, external_forwarding, outer_thread_headers";
const ANCESTRY: &str = "WITH RECURSIVE chain(id, parent_id, depth) AS ( \
       SELECT id, parent_id, 0 FROM tenants WHERE id = $1 \
       UNION ALL SELECT t.id, t.parent_id, c.depth + 1 FROM tenants t JOIN chain c ON t.id = c.parent_id) \
     SELECT id FROM chain ORDER BY depth";
const SUBTREE_ACCOUNTS: &str = "WITH RECURSIVE subtree(id) AS ( \
       SELECT id FROM tenants WHERE id = $1 \
       UNION ALL SELECT t.id FROM tenants t JOIN subtree s ON t.parent_id = s.id WHERE t.status <> 'closed') \
     SELECT COUNT(*) FROM accounts WHERE status <> 'deleted' AND tenant_id IN (SELECT id FROM subtree)";
const SUBTREE_DOMAINS: &str = "WITH RECURSIVE subtree(id) AS ( \
       SELECT id FROM tenants WHERE id = $1 \
       UNION ALL SELECT t.id FROM tenants t JOIN subtree s ON t.parent_id = s.id WHERE t.status <> 'closed') \
     SELECT COUNT(*) FROM domains WHERE tenant_id IN (SELECT id FROM subtree)";
const DOMAIN_COLUMNS: &str =
    "id, tenant_id, name, verification_token, verified_at, verification_method, created_at";
/// The columns an account is created with.
macro_rules! account_columns {
    () => {
        "id, tenant_id, domain_id, address, display_name, role, status, level, password_hash, \
         fingerprint, public_key, secret_key, created_at, updated_at"
    };
}
const ACCOUNT_COLUMNS: &str = account_columns!();
/// What an account is read with: its columns and the storage the store keeps count of.
const ACCOUNT_READ_COLUMNS: &str = concat!(
    account_columns!(),
    ", storage_used_bytes, storage_quota_bytes, credentials_epoch"
);
const API_KEY_COLUMNS: &str =
    "id, tenant_id, name, prefix, scopes, created_by, created_at, last_used_at, revoked_at";

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn scopes_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn jurisdictions_text(policy: &Policy) -> String {
    serde_json::Value::from(
        policy
            .allowed_jurisdictions
            .iter()
            .map(|j| j.as_str().to_owned())
            .collect::<Vec<_>>(),
    )
    .to_string()
}

/// The package check for a new object under `chain` (the tenant first, then
/// its ancestors): every tenant on the way up must still have room.
const RECIPIENT_SQL: &str = "WITH RECURSIVE chain(id, parent_id) AS ( \
               SELECT t.id, t.parent_id FROM tenants t JOIN accounts a ON a.tenant_id = t.id WHERE a.address = $1 \
               UNION ALL SELECT t.id, t.parent_id FROM tenants t JOIN chain c ON t.id = c.parent_id), \
             packages(room, quota) AS ( \
               SELECT MIN(t.storage_quota_bytes - t.storage_used_bytes), MIN(t.storage_quota_bytes) \
               FROM tenants t WHERE t.id IN (SELECT id FROM chain)) \
             SELECT a.id, a.tenant_id, a.domain_id, a.address, a.display_name, a.role, a.status, a.level, \
               a.password_hash, a.fingerprint, a.public_key, a.secret_key, a.created_at, a.updated_at, \
               a.storage_used_bytes, a.storage_quota_bytes, a.credentials_epoch, \
               t.status AS tenant_status, t.min_level AS tenant_min_level, \
               t.outer_thread_headers AS tenant_outer_thread_headers, \
               p.quota - p.room AS tenant_storage_used_bytes, p.quota AS tenant_storage_quota_bytes \
             FROM accounts a JOIN tenants t ON t.id = a.tenant_id CROSS JOIN packages p \
             JOIN domains d ON d.id = a.domain_id AND d.verified_at IS NOT NULL WHERE a.address = $1";

fn check_room(what: &str, chain: &[(Tenant, i64)], limit: impl Fn(&Limits) -> i64) -> Result<()> {
    for (tenant, used) in chain {
        if tenant.kind == TenantKind::Operator {
            continue;
        }
        let max = limit(&tenant.limits);
        if *used >= max {
            let whose = if chain
                .first()
                .is_some_and(|(first, _)| first.id == tenant.id)
            {
                "this tenant's".to_owned()
            } else {
                format!("the parent tenant `{}`'s", tenant.name)
            };
            return Err(Error::LimitExceeded(format!(
                "{what} limit reached: {whose} package allows {max} and {used} exist"
            )));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------

/// The database behind the domain core. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
    /// Where message deliveries queue for the group commit.
    committer: Option<tokio::sync::mpsc::Sender<Waiting<Vec<NewMessage>>>>,
    /// Where submissions queue for theirs.
    submitter: Option<tokio::sync::mpsc::Sender<Waiting<Submission>>>,
    /// Mailboxes that changed in this process, for IMAP sessions to look.
    changes: tokio::sync::broadcast::Sender<MailboxId>,
    /// Accounts and tenants whose right to act changed in this process, so
    /// that open sessions end at once instead of at their next re-check.
    access: tokio::sync::broadcast::Sender<AccessChange>,
    /// The most mailboxes one account may have ([`MAX_MAILBOXES_PER_ACCOUNT`]).
    max_mailboxes: usize,
    /// Woken when a job is queued, here or (when heard) in another process.
    jobs_added: std::sync::Arc<tokio::sync::Notify>,
    /// News for other processes, once [`Store::hear_other_processes`] started it.
    signals: std::sync::Arc<std::sync::OnceLock<signals::Signals>>,
    /// Standings read recently ([`Store::standing_now`]), forgotten at every [`AccessChange`].
    held: std::sync::Arc<standing::Held>,
    /// How long a remembered standing is used ([`HELD_FOR`]).
    held_for: std::time::Duration,
}

/// Something that may end open sessions: an account's role, status or
/// password changed, or a tenant's status (which reaches its whole subtree).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessChange {
    Account(AccountId),
    Tenant(TenantId),
    /// An app password was revoked: the sessions it opened end.
    AppPassword(AccountId, Uuid),
    /// A domain's verification changed: what its accounts may do through the mail doors.
    Domain(DomainId),
    /// An API key was revoked.
    ApiKey(ApiKeyId),
}

impl Store {
    /// Announces a committed change of who may act: remembered standings are
    /// forgotten, then the sessions of this process hear of it, and, on
    /// PostgreSQL once [`Store::hear_other_processes`] started, other
    /// processes do the same (otherwise they find it at their periodic
    /// re-check, and their remembered standings expire within
    /// [`standing::HELD_FOR`]). Call it after the commit.
    pub fn access_changed(&self, change: AccessChange) {
        self.held.forget();
        let _ = self.access.send(change);
        if let Some(signals) = self.signals.get() {
            signals.tell(signals::News::Access(change));
        }
    }

    /// Changes of who may act, for sessions that outlive a request.
    pub fn access_changes(&self) -> tokio::sync::broadcast::Receiver<AccessChange> {
        self.access.subscribe()
    }
}

/// The most mailboxes (folders, with the special-use ones) an account may
/// have. A person filing by hand stays in the hundreds; every client lists
/// and syncs them all, so a cap keeps LIST fast and stops one account from
/// filling the table with millions of rows through IMAP CREATE or the API.
pub const MAX_MAILBOXES_PER_ACCOUNT: usize = 1000;

/// How a SQLite connection waits for the one writer: it looks again every
/// millisecond, for ten seconds. SQLite's own handler (`busy_timeout`)
/// backs off to 100 ms naps, so under a steady stream of short write
/// transactions a napping waiter keeps losing to fresh ones and waits
/// seconds (imaptest's stress run logged one-second "slow statements"
/// that were only this); looking often makes each release go to one of
/// the waiters at random, whoever came first or last.
unsafe extern "C" fn wait_for_the_writer(
    _: *mut std::ffi::c_void,
    count: std::ffi::c_int,
) -> std::ffi::c_int {
    if count >= 10_000 {
        return 0;
    }
    std::thread::sleep(Duration::from_millis(1));
    1
}

/// A pooled PostgreSQL connection idle this long is pinged before use.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

impl Store {
    /// Connects to `url` (`sqlite://…` or `postgres://…`). SQLite files are
    /// created if missing, in WAL mode, with foreign keys enforced.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        let pool = match Backend::from_url(url)? {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)
                    .map_err(|e| Error::Config(format!("invalid SQLite URL: {e}")))?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10));
                Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(max_connections)
                        // sqlx pings every connection it hands out; a SQLite
                        // connection lives in this process and cannot drop,
                        // and the ping is a round trip to its thread that
                        // doubled the cost of every one-row read.
                        .test_before_acquire(false)
                        .after_connect(|conn, _| {
                            Box::pin(async move {
                                let mut handle = conn.lock_handle().await?;
                                let db = handle.as_raw_handle();
                                // SAFETY: `db` is this connection's open handle, held
                                // locked; the handler is a plain function with no state.
                                unsafe {
                                    libsqlite3_sys::sqlite3_busy_handler(
                                        db.as_ptr(),
                                        Some(wait_for_the_writer),
                                        std::ptr::null_mut(),
                                    );
                                }
                                Ok(())
                            })
                        })
                        .connect_with(options)
                        .await?,
                )
            }
            Backend::Postgres => {
                let options = PgConnectOptions::from_str(url)
                    .map_err(|e| Error::Config(format!("invalid PostgreSQL URL: {e}")))?;
                Pool::Postgres(
                    PgPoolOptions::new()
                        .max_connections(max_connections)
                        // sqlx pings every connection it hands out: one more
                        // round trip per statement. Only a connection idle for
                        // a while (a server restarted, a network that dropped
                        // it) is checked; one in use a moment ago is trusted.
                        .test_before_acquire(false)
                        .before_acquire(|conn, meta| {
                            Box::pin(async move {
                                if meta.idle_for >= PING_WHEN_IDLE_FOR {
                                    sqlx::Connection::ping(conn).await?;
                                }
                                Ok(true)
                            })
                        })
                        .after_connect(|conn, _| {
                            Box::pin(async move {
                                if !nodelay::set(conn).await? {
                                    tracing::debug!("TCP_NODELAY not set on a PostgreSQL connection (Unix socket, or its socket not found)");
                                }
                                Ok(())
                            })
                        })
                        .connect_with(options)
                        .await?,
                )
            }
        };
        let (queue, deliveries) = tokio::sync::mpsc::channel(1024);
        let (changes, _) = tokio::sync::broadcast::channel(1024);
        let (access, _) = tokio::sync::broadcast::channel(256);
        let jobs_added = std::sync::Arc::new(tokio::sync::Notify::new());
        let signals = std::sync::Arc::new(std::sync::OnceLock::new());
        let held = std::sync::Arc::new(standing::Held::default());
        let alone = Store {
            pool: pool.clone(),
            committer: None,
            submitter: None,
            changes: changes.clone(),
            access: access.clone(),
            max_mailboxes: MAX_MAILBOXES_PER_ACCOUNT,
            jobs_added: jobs_added.clone(),
            signals: signals.clone(),
            held: held.clone(),
            held_for: HELD_FOR,
        };
        tokio::spawn(group_committer(alone.clone(), deliveries));
        let (submissions, submitted) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(group_committer(alone, submitted));
        Ok(Store {
            pool,
            committer: Some(queue),
            submitter: Some(submissions),
            changes,
            access,
            max_mailboxes: MAX_MAILBOXES_PER_ACCOUNT,
            jobs_added,
            signals,
            held,
            held_for: HELD_FOR,
        })
    }

    /// On PostgreSQL, tells other processes of the mailboxes and jobs this
    /// one changes, and hears theirs (`LISTEN`/`NOTIFY`, see
    /// [`signals`]); it holds one connection of the pool. Returns whether
    /// other processes are heard: never on SQLite, where they poll.
    pub async fn hear_other_processes(&self) -> Result<bool> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(false);
        };
        if self.signals.get().is_none() {
            let started = signals::start(
                pool,
                signals::Hearers {
                    changes: self.changes.clone(),
                    jobs: self.jobs_added.clone(),
                    access: self.access.clone(),
                    held: self.held.clone(),
                },
            )
            .await?;
            let _ = self.signals.set(started);
        }
        Ok(true)
    }

    /// Whether changes of other processes reach this one as they happen.
    pub fn hears_other_processes(&self) -> bool {
        self.signals.get().is_some()
    }

    /// Woken when a job is queued (in this process, or in another one that
    /// is heard): workers wait on it between their polls.
    pub fn jobs_added(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.jobs_added.clone()
    }

    /// Wakes the workers of this process and tells the others.
    pub(crate) fn job_queued(&self) {
        self.jobs_added.notify_waiters();
        if let Some(signals) = self.signals.get() {
            signals.tell(signals::News::Jobs);
        }
    }

    /// The same store with another cap on mailboxes per account (tests use
    /// a small one); set it before handing out clones.
    pub fn with_max_mailboxes(mut self, max: usize) -> Store {
        self.max_mailboxes = max;
        self
    }

    /// Applies the backend's migrations (`migrations/sqlite` or `migrations/postgres`).
    pub async fn migrate(&self) -> Result<()> {
        match &self.pool {
            Pool::Sqlite(p) => sqlx::migrate!("../migrations/sqlite").run(p).await?,
            Pool::Postgres(p) => sqlx::migrate!("../migrations/postgres").run(p).await?,
        }
        Ok(())
    }

    /// Answers when the database does.
    pub async fn ping(&self) -> Result<()> {
        on_pool!(&self.pool, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// Creates an empty database next to this one (PostgreSQL; used to give
    /// each test its own database).
    pub async fn create_database(&self, name: &str) -> Result<()> {
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(Error::Invalid(format!(
                "`{name}` is not a plain database name"
            )));
        }
        match &self.pool {
            Pool::Postgres(p) => {
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(p)
                    .await?;
                Ok(())
            }
            Pool::Sqlite(_) => Err(Error::Config(
                "SQLite databases are files; open a new URL instead".into(),
            )),
        }
    }

    pub async fn close(&self) {
        on_pool!(&self.pool, p => p.close().await)
    }

    // -- tenants -------------------------------------------------------------

    /// The operator tenant, created on first start.
    pub async fn ensure_operator(&self) -> Result<Tenant> {
        let sql = || {
            join_sql(
                "SELECT ",
                TENANT_COLUMNS,
                " FROM tenants WHERE kind = 'operator'",
            )
        };
        let found: Option<TenantRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql()).fetch_optional(p).await)?;
        if let Some(row) = found {
            return row.try_into();
        }
        let now = Utc::now();
        let id = TenantId::new();
        let insert = "INSERT INTO tenants (id, name, kind, parent_id, status, max_accounts, max_domains, \
             storage_quota_bytes, min_level, allowed_jurisdictions, created_at, updated_at) \
             VALUES ($1, 'Operator', 'operator', NULL, 'active', $2, $2, $2, 'standard', '[]', $3, $3) \
             ON CONFLICT DO NOTHING";
        on_pool!(&self.pool, p => sqlx::query(insert).bind(id.0).bind(UNLIMITED).bind(now).execute(p).await.map(|_| ()))?;
        let row: TenantRow = on_pool!(&self.pool, p => sqlx::query_as(sql()).fetch_one(p).await)?;
        row.try_into()
    }

    pub async fn tenant(&self, id: TenantId) -> Result<Option<Tenant>> {
        let sql = join_sql("SELECT ", TENANT_COLUMNS, " FROM tenants WHERE id = $1");
        let row: Option<TenantRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id.0).fetch_optional(p).await)?;
        row.map(Tenant::try_from).transpose()
    }

    /// The tenant followed by its ancestors up to the root; empty if unknown.
    pub async fn ancestry(&self, id: TenantId) -> Result<Vec<TenantId>> {
        let ids: Vec<(Uuid,)> =
            on_pool!(&self.pool, p => sqlx::query_as(ANCESTRY).bind(id.0).fetch_all(p).await)?;
        Ok(ids.into_iter().map(|(id,)| TenantId(id)).collect())
    }

    async fn chain(&self, id: TenantId) -> Result<Vec<Tenant>> {
        let mut chain = Vec::new();
        for id in self.ancestry(id).await? {
            chain.push(self.tenant(id).await?.ok_or(Error::NotFound("tenant"))?);
        }
        Ok(chain)
    }

    pub async fn list_tenants(&self, filter: &TenantFilter, page: Page) -> Result<Vec<Tenant>> {
        let sql = "WITH RECURSIVE subtree(id) AS ( \
               SELECT id FROM tenants WHERE ($1 IS NULL AND parent_id IS NULL) OR id = $1 \
               UNION ALL SELECT t.id FROM tenants t JOIN subtree s ON t.parent_id = s.id) \
             SELECT t.id, t.name, t.kind, t.parent_id, t.status, t.max_accounts, t.max_domains, \
               t.storage_quota_bytes, t.min_level, t.allowed_jurisdictions, t.created_at, t.updated_at, t.storage_used_bytes, \
               t.dispersal_k, t.dispersal_n, t.publish_transparency, t.scan_outbound, t.external_forwarding, \
               t.outer_thread_headers \
             FROM tenants t \
             WHERE ($1 IS NULL OR t.id IN (SELECT id FROM subtree)) \
               AND ($2 IS NULL OR t.parent_id = $2) AND ($3 IS NULL OR t.kind = $3) \
               AND ($4 IS NULL OR t.status = $4) AND t.id > $5 \
             ORDER BY t.id LIMIT $6";
        let rows: Vec<TenantRow> = on_pool!(&self.pool, p => sqlx::query_as(sql)
            .bind(filter.within.map(|t| t.0))
            .bind(filter.parent_id.map(|t| t.0))
            .bind(filter.kind.map(|k| k.as_str()))
            .bind(filter.status.map(|s| s.as_str()))
            .bind(page.after())
            .bind(page.fetch())
            .fetch_all(p)
            .await)?;
        rows.into_iter().map(Tenant::try_from).collect()
    }

    /// Creates a tenant. A child's package must fit within its parent's.
    pub async fn create_tenant(&self, actor: &str, new: NewTenant) -> Result<Tenant> {
        new.limits.validate()?;
        new.policy
            .redundancy
            .map(Redundancy::validate)
            .transpose()?;
        let (root, parent) = match new.parent_id {
            Some(parent_id) => {
                let chain = self.chain(parent_id).await?;
                let parent = chain
                    .first()
                    .cloned()
                    .ok_or(Error::NotFound("parent tenant"))?;
                if parent.kind != TenantKind::Reseller {
                    return Err(Error::Invalid(format!(
                        "tenant `{}` is not a reseller and cannot have child tenants",
                        parent.name
                    )));
                }
                if parent.status != TenantStatus::Active {
                    return Err(Error::Conflict(format!(
                        "parent tenant `{}` is {}",
                        parent.name, parent.status
                    )));
                }
                new.limits.fits_within(&parent.limits)?;
                (
                    chain.last().map(|t| t.id).unwrap_or(parent_id),
                    Some(parent),
                )
            }
            None => (TenantId::new(), None),
        };
        if new.kind == TenantKind::Operator {
            return Err(Error::Invalid(
                "there is exactly one operator tenant, created at install".into(),
            ));
        }
        let now = Utc::now();
        let id = TenantId::new();
        let insert = "INSERT INTO tenants (id, name, kind, parent_id, status, max_accounts, max_domains, \
             storage_quota_bytes, min_level, allowed_jurisdictions, created_at, updated_at, dispersal_k, dispersal_n, \
             outer_thread_headers) \
             VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8, $9, $10, $10, $11, $12, $13)";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin_locked(root.0).await?;
            sqlx::query(insert)
                .bind(id.0)
                .bind(&new.name)
                .bind(new.kind.as_str())
                .bind(new.parent_id.map(|t| t.0))
                .bind(new.limits.max_accounts)
                .bind(new.limits.max_domains)
                .bind(new.limits.storage_quota_bytes)
                .bind(new.policy.min_level.as_str())
                .bind(jurisdictions_text(&new.policy))
                .bind(now)
                .bind(new.policy.redundancy.map(|r| i32::from(r.k)))
                .bind(new.policy.redundancy.map(|r| i32::from(r.n)))
                .bind(new.policy.outer_thread_headers)
                .execute(&mut *tx)
                .await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(id.0),
                action: "tenant.create",
                object_type: "tenant",
                object_id: id.to_string(),
                detail: serde_json::json!({
                    "name": new.name, "kind": new.kind, "parent_id": parent.as_ref().map(|t| t.id),
                    "limits": new.limits, "policy": new.policy,
                }),
            });
            tx.commit().await?;
        });
        self.tenant(id).await?.ok_or(Error::NotFound("tenant"))
    }

    pub async fn update_tenant(
        &self,
        actor: &str,
        id: TenantId,
        update: TenantUpdate,
    ) -> Result<Tenant> {
        let chain = self.chain(id).await?;
        let current = chain.first().cloned().ok_or(Error::NotFound("tenant"))?;
        if let Some(policy) = &update.policy {
            policy.redundancy.map(Redundancy::validate).transpose()?;
        }
        if let Some(limits) = &update.limits {
            limits.validate()?;
            let names: Vec<String> = chain[1..]
                .iter()
                .map(|t| format!("the tenant `{}`", t.name))
                .collect();
            limits.fits_packages(
                names
                    .iter()
                    .zip(&chain[1..])
                    .map(|(who, t)| (who.as_str(), &t.limits)),
            )?;
        }
        let root = chain.last().map(|t| t.id).unwrap_or(id);
        let name = update.name.clone().unwrap_or(current.name.clone());
        let status = update.status.unwrap_or(current.status);
        let limits = update.limits.unwrap_or(current.limits);
        let policy = update.policy.clone().unwrap_or(current.policy.clone());
        let publish_transparency = update
            .publish_transparency
            .unwrap_or(current.publish_transparency);
        let scan_outbound = update.scan_outbound.unwrap_or(current.scan_outbound);
        let external_forwarding = update
            .external_forwarding
            .unwrap_or(current.external_forwarding);
        let sql = "UPDATE tenants SET name = $2, status = $3, max_accounts = $4, max_domains = $5, \
             storage_quota_bytes = $6, min_level = $7, allowed_jurisdictions = $8, updated_at = $9, \
             dispersal_k = $10, dispersal_n = $11, publish_transparency = $12, scan_outbound = $13, \
             external_forwarding = $14, outer_thread_headers = $15 WHERE id = $1";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin_locked(root.0).await?;
            sqlx::query(sql)
                .bind(id.0)
                .bind(&name)
                .bind(status.as_str())
                .bind(limits.max_accounts)
                .bind(limits.max_domains)
                .bind(limits.storage_quota_bytes)
                .bind(policy.min_level.as_str())
                .bind(jurisdictions_text(&policy))
                .bind(Utc::now())
                .bind(policy.redundancy.map(|r| i32::from(r.k)))
                .bind(policy.redundancy.map(|r| i32::from(r.n)))
                .bind(publish_transparency)
                .bind(scan_outbound)
                .bind(external_forwarding)
                .bind(policy.outer_thread_headers)
                .execute(&mut *tx)
                .await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(id.0),
                action: if status == TenantStatus::Closed { "tenant.close" } else { "tenant.update" },
                object_type: "tenant",
                object_id: id.to_string(),
                detail: serde_json::json!({
                    "name": update.name, "status": update.status, "limits": update.limits, "policy": update.policy,
                    "publish_transparency": update.publish_transparency,
                    "scan_outbound": update.scan_outbound,
                    "external_forwarding": update.external_forwarding,
                }),
            });
            tx.commit().await?;
        });
        if status != current.status {
            self.access_changed(AccessChange::Tenant(id));
        }
        self.tenant(id).await?.ok_or(Error::NotFound("tenant"))
    }

    /// Children of `id` that are not closed.
    pub async fn open_children(&self, id: TenantId) -> Result<i64> {
        let sql = "SELECT COUNT(*) FROM tenants WHERE parent_id = $1 AND status <> 'closed'";
        let (n,): (i64,) =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id.0).fetch_one(p).await)?;
        Ok(n)
    }

    // -- domains -------------------------------------------------------------

    pub async fn domain(&self, id: DomainId) -> Result<Option<Domain>> {
        let sql = join_sql("SELECT ", DOMAIN_COLUMNS, " FROM domains WHERE id = $1");
        let row: Option<DomainRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id.0).fetch_optional(p).await)?;
        row.map(Domain::try_from).transpose()
    }

    pub async fn domain_by_name(&self, name: &DomainName) -> Result<Option<Domain>> {
        let sql = join_sql("SELECT ", DOMAIN_COLUMNS, " FROM domains WHERE name = $1");
        let row: Option<DomainRow> = on_pool!(&self.pool, p => sqlx::query_as(sql).bind(name.as_str()).fetch_optional(p).await)?;
        row.map(Domain::try_from).transpose()
    }

    pub async fn list_domains(&self, tenant: TenantId, page: Page) -> Result<Vec<Domain>> {
        let sql = join_sql(
            "SELECT ",
            DOMAIN_COLUMNS,
            " FROM domains WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        );
        let rows: Vec<DomainRow> = on_pool!(&self.pool, p => sqlx::query_as(sql)
            .bind(tenant.0).bind(page.after()).bind(page.fetch()).fetch_all(p).await)?;
        rows.into_iter().map(Domain::try_from).collect()
    }

    /// Adds a domain to a tenant, within the package of the tenant and of every ancestor.
    pub async fn create_domain(&self, actor: &str, new: NewDomain) -> Result<Domain> {
        let chain = self.chain(new.tenant_id).await?;
        let root = chain
            .last()
            .map(|t| t.id)
            .ok_or(Error::NotFound("tenant"))?;
        let id = DomainId::new();
        let insert = join_sql(
            "INSERT INTO domains (",
            DOMAIN_COLUMNS,
            ") VALUES ($1, $2, $3, $4, NULL, NULL, $5)",
        );
        let result: Result<()> = on_pool!(&self.pool, p => async {
            let mut tx = p.begin_locked(root.0).await?;
            let mut used = Vec::new();
            for tenant in &chain {
                let (n,): (i64,) = sqlx::query_as(SUBTREE_DOMAINS).bind(tenant.id.0).fetch_one(&mut *tx).await?;
                used.push((tenant.clone(), n));
            }
            check_room("domain", &used, |l| l.max_domains)?;
            sqlx::query(insert)
                .bind(id.0)
                .bind(new.tenant_id.0)
                .bind(new.name.as_str())
                .bind(&new.verification_token)
                .bind(Utc::now())
                .execute(&mut *tx)
                .await
                .map_err(|e| if unique_violation(&e) {
                    Error::Conflict(format!("the domain `{}` is already hosted on this instance", new.name))
                } else { e.into() })?;
            for key in &new.dkim_keys {
                insert_dkim_key!(tx, id, key, DkimKeyState::Active);
            }
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(new.tenant_id.0),
                action: "domain.create",
                object_type: "domain",
                object_id: id.to_string(),
                detail: serde_json::json!({ "name": new.name }),
            });
            tx.commit().await?;
            Ok(())
        }.await);
        result?;
        self.domain(id).await?.ok_or(Error::NotFound("domain"))
    }

    pub async fn mark_domain_verified(
        &self,
        actor: &str,
        domain: &Domain,
        method: &'static str,
    ) -> Result<Domain> {
        let sql = "UPDATE domains SET verified_at = $2, verification_method = $3 WHERE id = $1";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(sql).bind(domain.id.0).bind(Utc::now()).bind(method).execute(&mut *tx).await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(domain.tenant_id.0),
                action: if method == "forced" { "domain.verify.forced" } else { "domain.verify" },
                object_type: "domain",
                object_id: domain.id.to_string(),
                detail: serde_json::json!({ "name": domain.name, "method": method }),
            });
            tx.commit().await?;
        });
        self.access_changed(AccessChange::Domain(domain.id));
        self.domain(domain.id)
            .await?
            .ok_or(Error::NotFound("domain"))
    }

    /// Removes a domain that no account uses any more (deleted accounts
    /// included: their addresses stay reserved while the domain is ours).
    pub async fn delete_domain(&self, actor: &str, domain: &Domain) -> Result<()> {
        let count = "SELECT COUNT(*) FROM accounts WHERE domain_id = $1";
        let delete = "DELETE FROM domains WHERE id = $1";
        let result: Result<()> = on_pool!(&self.pool, p => async {
            let mut tx = p.begin().await?;
            let (n,): (i64,) = sqlx::query_as(count).bind(domain.id.0).fetch_one(&mut *tx).await?;
            if n > 0 {
                return Err(Error::Conflict(format!(
                    "the domain `{}` still has {n} account(s); delete or move them first", domain.name
                )));
            }
            let held = "SELECT (SELECT COUNT(*) FROM addresses WHERE domain_id = $1) \
                        + (SELECT COUNT(*) FROM domains WHERE alias_of = $1)";
            let (n,): (i64,) = sqlx::query_as(held).bind(domain.id.0).fetch_one(&mut *tx).await?;
            if n > 0 {
                return Err(Error::Conflict(format!(
                    "the domain `{}` still has {n} alias(es), group(s) or domain alias(es) pointing to it; remove them first",
                    domain.name
                )));
            }
            sqlx::query("DELETE FROM dkim_keys WHERE domain_id = $1").bind(domain.id.0).execute(&mut *tx).await?;
            // A catch-all elsewhere naming an address of this domain points nowhere now.
            sqlx::query("UPDATE domains SET catch_all = NULL WHERE catch_all LIKE $1")
                .bind(format!("%@{}", domain.name)).execute(&mut *tx).await?;
            sqlx::query(delete).bind(domain.id.0).execute(&mut *tx).await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(domain.tenant_id.0),
                action: "domain.delete",
                object_type: "domain",
                object_id: domain.id.to_string(),
                detail: serde_json::json!({ "name": domain.name }),
            });
            tx.commit().await?;
            Ok(())
        }.await);
        result
    }

    // -- accounts ------------------------------------------------------------

    pub async fn account(&self, id: AccountId) -> Result<Option<Account>> {
        let sql = join_sql(
            "SELECT ",
            ACCOUNT_READ_COLUMNS,
            " FROM accounts WHERE id = $1",
        );
        let row: Option<AccountRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id.0).fetch_optional(p).await)?;
        row.map(Account::try_from).transpose()
    }

    pub async fn account_by_address(&self, address: &EmailAddress) -> Result<Option<Account>> {
        let sql = join_sql(
            "SELECT ",
            ACCOUNT_READ_COLUMNS,
            " FROM accounts WHERE address = $1",
        );
        let row: Option<AccountRow> = on_pool!(&self.pool, p =>
            sqlx::query_as(sql).bind(address.to_string()).fetch_optional(p).await)?;
        row.map(Account::try_from).transpose()
    }

    /// An account with what delivering to it needs of its tenant, in one
    /// query: the hot path of every RCPT TO. Only an account of a hosted
    /// (verified) domain is a recipient: see `hosting`.
    pub async fn recipient(&self, address: &EmailAddress) -> Result<Option<RecipientAccount>> {
        let sql = RECIPIENT_SQL;
        let row: Option<RecipientAccountRow> = on_pool!(&self.pool, p =>
            sqlx::query_as(sql).bind(address.as_str()).fetch_optional(p).await)?;
        row.map(RecipientAccount::try_from).transpose()
    }

    /// [`Store::recipient`] by account id (an alias's or a group member's).
    pub async fn recipient_by_id(&self, id: AccountId) -> Result<Option<RecipientAccount>> {
        static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let sql = SQL.get_or_init(|| RECIPIENT_SQL.replace("a.address = $1", "a.id = $1"));
        let row: Option<RecipientAccountRow> = on_pool!(&self.pool, p =>
            sqlx::query_as(sql.as_str()).bind(id.0).fetch_optional(p).await)?;
        row.map(RecipientAccount::try_from).transpose()
    }

    pub async fn list_accounts(&self, tenant: TenantId, page: Page) -> Result<Vec<Account>> {
        let sql = join_sql(
            "SELECT ",
            ACCOUNT_READ_COLUMNS,
            " FROM accounts WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        );
        let rows: Vec<AccountRow> = on_pool!(&self.pool, p => sqlx::query_as(sql)
            .bind(tenant.0).bind(page.after()).bind(page.fetch()).fetch_all(p).await)?;
        rows.into_iter().map(Account::try_from).collect()
    }

    /// Creates an account, within the package of its tenant and of every ancestor.
    pub async fn create_account(&self, actor: &str, new: NewAccount) -> Result<Account> {
        let chain = self.chain(new.tenant_id).await?;
        let root = chain
            .last()
            .map(|t| t.id)
            .ok_or(Error::NotFound("tenant"))?;
        let id = AccountId::new();
        let insert = join_sql(
            "INSERT INTO accounts (",
            ACCOUNT_COLUMNS,
            ") \
             VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $9, $10, $11, $12, $12)",
        );
        let result: Result<()> = on_pool!(&self.pool, p => async {
            let mut tx = p.begin_locked(root.0).await?;
            let mut used = Vec::new();
            for tenant in &chain {
                let (n,): (i64,) = sqlx::query_as(SUBTREE_ACCOUNTS).bind(tenant.id.0).fetch_one(&mut *tx).await?;
                used.push((tenant.clone(), n));
            }
            check_room("account", &used, |l| l.max_accounts)?;
            // An address is one thing: not an account's if it is an alias or
            // group, and no account lives in a domain alias.
            let (taken,): (i64,) = sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM addresses WHERE address = $1) \
                 + (SELECT COUNT(*) FROM domains WHERE id = $2 AND alias_of IS NOT NULL)")
                .bind(new.address.to_string().to_ascii_lowercase()).bind(new.domain_id.0).fetch_one(&mut *tx).await?;
            if taken > 0 {
                return Err(Error::Conflict(format!(
                    "the address `{}` is taken (an alias, a group, or a domain alias's)", new.address)));
            }
            sqlx::query(insert)
                .bind(id.0)
                .bind(new.tenant_id.0)
                .bind(new.domain_id.0)
                .bind(new.address.to_string())
                .bind(&new.display_name)
                .bind(new.role.as_str())
                .bind(new.level.as_str())
                .bind(&new.password_hash)
                .bind(&new.fingerprint)
                .bind(&new.public_key)
                .bind(&new.secret_key)
                .bind(Utc::now())
                .execute(&mut *tx)
                .await
                .map_err(|e| if unique_violation(&e) {
                    Error::Conflict(format!("the address `{}` is taken", new.address))
                } else { e.into() })?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(new.tenant_id.0),
                action: "account.create",
                object_type: "account",
                object_id: id.to_string(),
                detail: serde_json::json!({ "address": new.address, "role": new.role, "level": new.level }),
            });
            tx.commit().await?;
            Ok(())
        }.await);
        result?;
        self.account(id).await?.ok_or(Error::NotFound("account"))
    }

    pub async fn update_account(
        &self,
        actor: &str,
        id: AccountId,
        update: AccountUpdate,
    ) -> Result<Account> {
        let current = self.account(id).await?.ok_or(Error::NotFound("account"))?;
        let credentials = update.credentials.clone().unwrap_or(Credentials {
            password_hash: current.password_hash.clone(),
            fingerprint: current.fingerprint.clone(),
            public_key: current.public_key.clone(),
            secret_key: current.secret_key.clone(),
        });
        let sql = "UPDATE accounts SET display_name = $2, role = $3, status = $4, level = $5, password_hash = $6, \
             fingerprint = $7, public_key = $8, secret_key = $9, updated_at = $10, \
             credentials_epoch = credentials_epoch + $11, \
             opaque_record = CASE WHEN $12 THEN NULL ELSE opaque_record END, \
             ksf_params = CASE WHEN $12 THEN NULL ELSE ksf_params END WHERE id = $1";
        let status = update.status.unwrap_or(current.status);
        let role = update.role.unwrap_or(current.role);
        // What lets the account act changed: every token and session it holds ends.
        let ends_sessions = role != current.role
            || status != current.status
            || credentials.password_hash != current.password_hash;
        let action = match (current.status, status) {
            (s, AccountStatus::Deleted) if s != AccountStatus::Deleted => "account.delete",
            _ if update.credentials.is_some() => "account.credentials",
            _ => "account.update",
        };
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(sql)
                .bind(id.0)
                .bind(update.display_name.as_ref().unwrap_or(&current.display_name))
                .bind(role.as_str())
                .bind(status.as_str())
                .bind(update.level.unwrap_or(current.level).as_str())
                .bind(&credentials.password_hash)
                .bind(&credentials.fingerprint)
                .bind(&credentials.public_key)
                .bind(&credentials.secret_key)
                .bind(Utc::now())
                .bind(i64::from(ends_sessions))
                // New credentials set here (an administrator's reset) come
                // with a password: device sign-in is registered again after.
                .bind(update.credentials.is_some())
                .execute(&mut *tx)
                .await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(current.tenant_id.0),
                action,
                object_type: "account",
                object_id: id.to_string(),
                detail: serde_json::json!({
                    "display_name": update.display_name, "role": update.role, "status": update.status,
                    "level": update.level,
                    "new_fingerprint": update.credentials.as_ref().map(|c| &c.fingerprint),
                }),
            });
            tx.commit().await?;
        });
        if ends_sessions {
            self.access_changed(AccessChange::Account(id));
        }
        self.account(id).await?.ok_or(Error::NotFound("account"))
    }

    // -- API keys ------------------------------------------------------------

    pub async fn create_api_key(&self, actor: &str, new: NewApiKey) -> Result<ApiKey> {
        let id = ApiKeyId::new();
        let sql = "INSERT INTO api_keys (id, tenant_id, name, prefix, secret_hash, scopes, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(sql)
                .bind(id.0)
                .bind(new.tenant_id.0)
                .bind(&new.name)
                .bind(&new.prefix)
                .bind(&new.secret_hash)
                .bind(scopes_text(&new.scopes))
                .bind(actor)
                .bind(Utc::now())
                .execute(&mut *tx)
                .await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(new.tenant_id.0),
                action: "api_key.create",
                object_type: "api_key",
                object_id: id.to_string(),
                detail: serde_json::json!({ "name": new.name, "prefix": new.prefix, "scopes": new.scopes }),
            });
            tx.commit().await?;
        });
        self.api_key(id).await?.ok_or(Error::NotFound("API key"))
    }

    pub async fn api_key(&self, id: ApiKeyId) -> Result<Option<ApiKey>> {
        let sql = join_sql("SELECT ", API_KEY_COLUMNS, " FROM api_keys WHERE id = $1");
        let row: Option<ApiKeyRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id.0).fetch_optional(p).await)?;
        row.map(ApiKey::try_from).transpose()
    }

    /// The live (unrevoked) key whose secret hashes to `secret_hash`, marked as used.
    pub async fn use_api_key(&self, secret_hash: &str) -> Result<Option<ApiKey>> {
        let sql = join_sql(
            "SELECT ",
            API_KEY_COLUMNS,
            " FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL",
        );
        let touch = "UPDATE api_keys SET last_used_at = $2 WHERE id = $1";
        let row: Option<ApiKeyRow> = on_pool!(&self.pool, p => sqlx::query_as(sql).bind(secret_hash).fetch_optional(p).await)?;
        let Some(key) = row.map(ApiKey::try_from).transpose()? else {
            return Ok(None);
        };
        on_pool!(&self.pool, p => sqlx::query(touch).bind(key.id.0).bind(Utc::now()).execute(p).await.map(|_| ()))?;
        Ok(Some(key))
    }

    pub async fn list_api_keys(&self, tenant: TenantId, page: Page) -> Result<Vec<ApiKey>> {
        let sql = join_sql(
            "SELECT ",
            API_KEY_COLUMNS,
            " FROM api_keys WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        );
        let rows: Vec<ApiKeyRow> = on_pool!(&self.pool, p => sqlx::query_as(sql)
            .bind(tenant.0).bind(page.after()).bind(page.fetch()).fetch_all(p).await)?;
        rows.into_iter().map(ApiKey::try_from).collect()
    }

    pub async fn revoke_api_key(&self, actor: &str, key: &ApiKey) -> Result<ApiKey> {
        let sql = "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(sql).bind(key.id.0).bind(Utc::now()).execute(&mut *tx).await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(key.tenant_id.0),
                action: "api_key.revoke",
                object_type: "api_key",
                object_id: key.id.to_string(),
                detail: serde_json::json!({ "name": key.name, "prefix": key.prefix }),
            });
            tx.commit().await?;
        });
        self.access_changed(AccessChange::ApiKey(key.id));
        self.api_key(key.id)
            .await?
            .ok_or(Error::NotFound("API key"))
    }

    // -- audit ---------------------------------------------------------------

    /// Audit entries, newest first; `before` pages backwards by id.
    pub async fn audit_log(
        &self,
        tenant: Option<TenantId>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let sql = "SELECT id, at, actor, tenant_id, action, object_type, object_id, detail FROM audit_log \
             WHERE ($1 IS NULL OR tenant_id = $1) AND id < $2 ORDER BY id DESC LIMIT $3";
        let rows: Vec<AuditRow> = on_pool!(&self.pool, p => sqlx::query_as(sql)
            .bind(tenant.map(|t| t.0))
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit.clamp(1, Page::MAX_LIMIT)))
            .fetch_all(p)
            .await)?;
        Ok(rows.into_iter().map(AuditEntry::from).collect())
    }
}

/// Joins static SQL fragments (a shared column list between two clauses).
fn join_sql(a: &'static str, b: &'static str, c: &'static str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!("{a}{b}{c}"))
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;

mod device_keys;
pub use device_keys::{
    ActivationKey, AppPassword, DeviceReset, Link, MAX_APP_PASSWORDS, OpaqueRegistration,
    SecondFactor,
};
mod passkeys;
pub use passkeys::{MAX_PASSKEYS, NewPasskey, Passkey, PasskeyCredential};
mod addresses;
mod dkim;
pub use addresses::{
    Address, AddressKind, DomainRouting, Forwarding, MAX_GROUP_MEMBERS, NewAddress, Poster,
    Posting, Reached, Resolution, may_post, split_tag,
};
mod sieve;
pub use sieve::{
    DeliveryRules, MAX_SIEVE_SCRIPT_BYTES, MAX_SIEVE_SCRIPTS, SieveOwner, SieveScript,
    check_script_name,
};
mod filtering;
pub use filtering::{AbuseEntry, MAX_SENDER_RULES, SenderRuleEntry, Strike, sender_key};
mod jobs;
mod nodelay;
mod signals;
#[macro_use]
mod objects;
#[macro_use]
mod mailboxes;
#[macro_use]
mod messages;
mod billing;
mod branding;
mod certificates;
pub use certificates::{
    CertificateView, IssuedCertificate, NewTlsReport, StoredCertificate, TlsReport,
};
mod exports;
mod hosting;
mod legal;
mod outbound;
mod standing;
pub mod transfer;
pub use billing::{
    Applied, BillingEvent, Invoice, InvoiceEvent, MILLI, NewSignup, PaidBy, Plan, PlanInput,
    PoolHistory, PoolMonth, PoolRates, PoolSummary, PublicInstance, SignupStatus, StripeEvent,
    TenantBilling, UsageMonth, month_of, quota_threshold_crossed,
};
pub use branding::{BrandAsset, BrandFields, Hostname, TemplateOverride};
pub use dkim::{DkimKey, NewDkimKey};
pub use exports::{ExportRecipient, ExportState, NewTenantExport, TenantExport};
pub use hosting::may_send_as;
pub use jobs::{DeadJob, JobRow, NewJob, QueueDepth};
pub use legal::{
    LegalExport, LegalRequest, LegalScope, MessagesByLevel, NewCanary, NewLegalExport,
    NewLegalRequest, TransparencyCounts, TransparencyReport, TransparencyRow, WarrantCanary,
    quarter_of,
};
pub use mailboxes::{
    FlagChange, FlagOp, Mailbox, MailboxChanges, MailboxCounts, ViewEntry, mailbox_name,
};
pub use messages::{Correspondent, MessageMeta, NewMessage, StoredContent, TrafficDay};
pub use objects::{
    NewObject, NewShard, ObjectCount, RedundancyCount, ShardRecord, SiteUsage, StoredObject,
};
pub use outbound::{
    DeliveryUpdate, NewOutbound, OutboundRow, RecipientDelivery, SendRates, Submission,
};
pub use standing::{Ended, HELD_FOR, KeyRefusal, KeyStanding, Standing, inactive_tenant};
