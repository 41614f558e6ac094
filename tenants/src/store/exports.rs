//! Tenant exports asked for through the API: queued, written by a job,
//! handed over once through a link whose token only its hash is kept of.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Audit, INSERT_AUDIT, Pool, Store};
use crate::model::TenantId;
use crate::{Error, Result};

/// Where an export stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportState {
    Queued,
    Running,
    /// Written; the link works once, until `expires_at`.
    Ready,
    Downloaded,
    Failed,
    /// Not downloaded in time: the archive was deleted.
    Expired,
}

impl ExportState {
    fn parse(s: &str) -> Result<ExportState> {
        Ok(match s {
            "queued" => ExportState::Queued,
            "running" => ExportState::Running,
            "ready" => ExportState::Ready,
            "downloaded" => ExportState::Downloaded,
            "failed" => ExportState::Failed,
            "expired" => ExportState::Expired,
            other => return Err(Error::Internal(format!("stored export state `{other}`"))),
        })
    }
}

/// How the archive is encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportRecipient {
    Passphrase,
    Openpgp,
}

/// A tenant export and what became of it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TenantExport {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub requested_by: String,
    pub state: ExportState,
    pub recipient: ExportRecipient,
    /// Bytes of the archive, once written.
    pub bytes: Option<i64>,
    pub messages: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The link stops working then, and the archive is deleted.
    pub expires_at: DateTime<Utc>,
    pub downloaded_at: Option<DateTime<Utc>>,
}

#[derive(FromRow)]
struct ExportRow {
    id: Uuid,
    tenant_id: Uuid,
    requested_by: String,
    state: String,
    recipient: String,
    bytes: Option<i64>,
    messages: Option<i64>,
    error: Option<String>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    expires_at: DateTime<Utc>,
    downloaded_at: Option<DateTime<Utc>>,
}

impl TryFrom<ExportRow> for TenantExport {
    type Error = Error;
    fn try_from(r: ExportRow) -> Result<TenantExport> {
        Ok(TenantExport {
            id: r.id,
            tenant_id: TenantId(r.tenant_id),
            requested_by: r.requested_by,
            state: ExportState::parse(&r.state)?,
            recipient: if r.recipient == "openpgp" {
                ExportRecipient::Openpgp
            } else {
                ExportRecipient::Passphrase
            },
            bytes: r.bytes,
            messages: r.messages,
            error: r.error,
            created_at: r.created_at,
            finished_at: r.finished_at,
            expires_at: r.expires_at,
            downloaded_at: r.downloaded_at,
        })
    }
}

const COLUMNS: &str = "id, tenant_id, requested_by, state, recipient, CAST(bytes AS BIGINT) AS bytes, \
     CAST(messages AS BIGINT) AS messages, error, created_at, finished_at, expires_at, downloaded_at";

/// An export to queue.
pub struct NewTenantExport {
    /// Chosen by the caller, because the passphrase is sealed bound to it.
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub recipient: ExportRecipient,
    /// The passphrase sealed under the master key, or the armored OpenPGP public key.
    pub secret: String,
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Queues an export: at most one per tenant at a time (a unique index
    /// keeps that under concurrency), and only while the archives waiting
    /// for their download instance-wide stay under `disk_cap` bytes.
    pub async fn create_tenant_export(
        &self,
        actor: &str,
        new: NewTenantExport,
        disk_cap: i64,
    ) -> Result<TenantExport> {
        let id = new.id;
        let now = Utc::now();
        let recipient = match new.recipient {
            ExportRecipient::Passphrase => "passphrase",
            ExportRecipient::Openpgp => "openpgp",
        };
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let (waiting,): (i64,) = sqlx::query_as(
                "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM tenant_exports WHERE state = 'ready'")
                .fetch_one(&mut *tx).await?;
            export_room(waiting, disk_cap)?;
            sqlx::query(
                "INSERT INTO tenant_exports (id, tenant_id, requested_by, state, recipient, secret, token_hash, created_at, expires_at) \
                 VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8)")
                .bind(id).bind(new.tenant_id.0).bind(actor).bind(recipient).bind(&new.secret).bind(&new.token_hash)
                .bind(now).bind(new.expires_at)
                .execute(&mut *tx).await
                .map_err(|e| if super::unique_violation(&e) {
                    Error::Conflict("an export of this tenant is already queued or running; wait for it to finish".into())
                } else { e.into() })?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(new.tenant_id.0),
                action: "tenant.export",
                object_type: "tenant_export",
                object_id: id.to_string(),
                detail: serde_json::json!({"recipient": recipient, "expires_at": new.expires_at}),
            });
            tx.commit().await?;
        });
        self.tenant_export(id)
            .await?
            .ok_or(Error::NotFound("export"))
    }

    pub async fn tenant_export(&self, id: Uuid) -> Result<Option<TenantExport>> {
        let sql = format!("SELECT {COLUMNS} FROM tenant_exports WHERE id = $1");
        let row: Option<ExportRow> = on_pool!(&self.pool, p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(p).await)?;
        row.map(TenantExport::try_from).transpose()
    }

    /// The tenant's exports, newest first.
    pub async fn list_tenant_exports(&self, tenant: TenantId) -> Result<Vec<TenantExport>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM tenant_exports WHERE tenant_id = $1 ORDER BY id DESC LIMIT 50"
        );
        let rows: Vec<ExportRow> = on_pool!(&self.pool, p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant.0).fetch_all(p).await)?;
        rows.into_iter().map(TenantExport::try_from).collect()
    }

    /// Marks the export running and hands its recipient secret to the job.
    pub async fn start_tenant_export(&self, id: Uuid) -> Result<Option<(TenantExport, String)>> {
        let secret: Option<(Option<String>,)> = on_pool!(&self.pool, p => sqlx::query_as(
            "UPDATE tenant_exports SET state = 'running' WHERE id = $1 AND state IN ('queued', 'running') RETURNING secret")
            .bind(id).fetch_optional(p).await)?;
        match secret {
            Some((Some(secret),)) => Ok(self.tenant_export(id).await?.map(|e| (e, secret))),
            _ => Ok(None),
        }
    }

    /// The archive is written: the secret is forgotten, the link works.
    pub async fn finish_tenant_export(&self, id: Uuid, bytes: i64, messages: i64) -> Result<()> {
        on_pool!(&self.pool, p => sqlx::query(
            "UPDATE tenant_exports SET state = 'ready', secret = NULL, bytes = $2, messages = $3, finished_at = $4 WHERE id = $1")
            .bind(id).bind(bytes).bind(messages).bind(Utc::now()).execute(p).await.map(|_| ()))?;
        Ok(())
    }

    pub async fn fail_tenant_export(&self, id: Uuid, error: &str) -> Result<()> {
        on_pool!(&self.pool, p => sqlx::query(
            "UPDATE tenant_exports SET state = 'failed', secret = NULL, error = $2, finished_at = $3 WHERE id = $1")
            .bind(id).bind(error).bind(Utc::now()).execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// The ready export whose link carries this token, spent by this call:
    /// a second call with the same token finds nothing.
    pub async fn take_tenant_export(
        &self,
        id: Uuid,
        token_hash: &str,
    ) -> Result<Option<TenantExport>> {
        let now = Utc::now();
        let taken: Option<(Uuid,)> = on_pool!(&self.pool, p => sqlx::query_as(
            "UPDATE tenant_exports SET state = 'downloaded', downloaded_at = $3 \
             WHERE id = $1 AND token_hash = $2 AND state = 'ready' AND expires_at > $3 RETURNING tenant_id")
            .bind(id).bind(token_hash).bind(now).fetch_optional(p).await)?;
        let Some((tenant,)) = taken else {
            return Ok(None);
        };
        on_pool!(&self.pool, p => sqlx::query(INSERT_AUDIT)
            .bind(now).bind("download link").bind(Some(tenant)).bind("tenant.export.download").bind("tenant_export")
            .bind(id.to_string()).bind("{}").execute(p).await.map(|_| ()))?;
        self.tenant_export(id).await
    }

    /// An export past its time: not downloaded (`expired`), or never
    /// finished (`failed`: a job that kept dying). Its secret is forgotten.
    pub async fn expire_tenant_export(&self, id: Uuid) -> Result<bool> {
        let done = on_pool!(&self.pool, p => sqlx::query(
            "UPDATE tenant_exports SET state = CASE WHEN state = 'ready' THEN 'expired' ELSE 'failed' END, secret = NULL, \
             error = CASE WHEN state = 'ready' THEN error ELSE 'it did not finish in time' END, finished_at = COALESCE(finished_at, $2) \
             WHERE id = $1 AND state IN ('queued', 'running', 'ready') AND expires_at <= $2")
            .bind(id).bind(Utc::now()).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;
    use crate::store::NewTenant;
    use crate::testing::fresh_store;
    use crate::{Backend, on_both_backends};

    async fn a_download_link_works_once(backend: Backend) {
        let store = fresh_store(backend).await;
        let limits = Limits {
            max_accounts: 1,
            max_domains: 1,
            storage_quota_bytes: 1,
        };
        let tenant = store
            .create_tenant(
                "operator",
                NewTenant {
                    name: "T".into(),
                    kind: TenantKind::Enterprise,
                    parent_id: None,
                    limits,
                    policy: Policy::default(),
                },
            )
            .await
            .unwrap();
        let new = |hash: &str, expires_at| NewTenantExport {
            id: Uuid::now_v7(),
            tenant_id: tenant.id,
            recipient: ExportRecipient::Passphrase,
            secret: "sealed".into(),
            token_hash: hash.into(),
            expires_at,
        };
        let export = store
            .create_tenant_export(
                "admin",
                new("h1", Utc::now() + chrono::Duration::hours(1)),
                i64::MAX,
            )
            .await
            .unwrap();
        assert_eq!(export.state, ExportState::Queued);
        assert!(
            store
                .take_tenant_export(export.id, "h1")
                .await
                .unwrap()
                .is_none(),
            "not before it is ready"
        );
        let (running, secret) = store.start_tenant_export(export.id).await.unwrap().unwrap();
        assert_eq!(
            (running.state, secret.as_str()),
            (ExportState::Running, "sealed")
        );
        store.finish_tenant_export(export.id, 100, 3).await.unwrap();
        assert!(
            store
                .start_tenant_export(export.id)
                .await
                .unwrap()
                .is_none(),
            "the secret is gone once written"
        );
        assert!(
            store
                .take_tenant_export(export.id, "wrong")
                .await
                .unwrap()
                .is_none()
        );
        let taken = store
            .take_tenant_export(export.id, "h1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (taken.state, taken.bytes),
            (ExportState::Downloaded, Some(100))
        );
        assert!(
            store
                .take_tenant_export(export.id, "h1")
                .await
                .unwrap()
                .is_none(),
            "once"
        );

        let late = store
            .create_tenant_export(
                "admin",
                new("h2", Utc::now() - chrono::Duration::seconds(1)),
                i64::MAX,
            )
            .await
            .unwrap();
        store.start_tenant_export(late.id).await.unwrap();
        store.finish_tenant_export(late.id, 1, 0).await.unwrap();
        assert!(
            store
                .take_tenant_export(late.id, "h2")
                .await
                .unwrap()
                .is_none(),
            "expired"
        );
        assert!(store.expire_tenant_export(late.id).await.unwrap());
        assert_eq!(
            store.tenant_export(late.id).await.unwrap().unwrap().state,
            ExportState::Expired
        );
        // One whose job never finished: failed, its secret forgotten.
        let stuck = store
            .create_tenant_export(
                "admin",
                new("h3", Utc::now() - chrono::Duration::seconds(1)),
                i64::MAX,
            )
            .await
            .unwrap();
        store.start_tenant_export(stuck.id).await.unwrap();
        assert!(store.expire_tenant_export(stuck.id).await.unwrap());
        let stuck = store.tenant_export(stuck.id).await.unwrap().unwrap();
        assert_eq!(
            (stuck.state, stuck.error.as_deref()),
            (ExportState::Failed, Some("it did not finish in time"))
        );
        assert!(store.start_tenant_export(stuck.id).await.unwrap().is_none());
        assert_eq!(store.list_tenant_exports(tenant.id).await.unwrap().len(), 3);
    }

    on_both_backends!(a_download_link_works_once);
}

/// Whether another archive may be written while `waiting` bytes of ready
/// archives wait for their download, under an instance-wide `cap`.
pub fn export_room(waiting: i64, cap: i64) -> Result<()> {
    if waiting >= cap {
        return Err(Error::LimitExceeded(format!(
            "exports waiting for their download already use {waiting} bytes of the instance's {cap}; \
             try again once some are downloaded or expired"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod room_tests {
    #[test]
    fn exports_stop_at_the_disk_cap() {
        assert!(super::export_room(0, 100).is_ok());
        assert!(super::export_room(99, 100).is_ok());
        assert!(super::export_room(100, 100).is_err());
    }
}
