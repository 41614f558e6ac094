//! DKIM keys of hosted domains. A domain signs with its `active` keys (one
//! RSA, one Ed25519); a rotation adds `pending` keys, which take over once
//! their records are published, and the old ones are `retired` but stay in
//! the list of records to publish for a while, so that mail signed just
//! before the switch still verifies.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use sqlx::FromRow;
use uuid::Uuid;

use super::{Audit, INSERT_AUDIT, INSERT_DKIM_KEY, Pool, Store};
use crate::model::{DkimAlgorithm, DkimKeyState, DomainId, TenantId};
use crate::{Error, Result};

/// How long a retired key stays in the records a domain should publish.
pub const RETIRED_KEY_GRACE: chrono::Duration = chrono::Duration::days(7);

/// A key to add.
#[derive(Clone, Debug)]
pub struct NewDkimKey {
    pub selector: String,
    pub algorithm: DkimAlgorithm,
    /// What goes in the record's `p=`.
    pub public_key: String,
    /// Sealed under the instance master key.
    pub private_key: SecretString,
}

#[derive(Clone, Debug)]
pub struct DkimKey {
    pub id: Uuid,
    pub domain_id: DomainId,
    pub selector: String,
    pub algorithm: DkimAlgorithm,
    pub public_key: String,
    pub private_key: SecretString,
    pub state: DkimKeyState,
    pub created_at: DateTime<Utc>,
    pub activated_at: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
}

impl DkimKey {
    /// Whether the key's record should still be in DNS at `now`.
    pub fn published(&self, now: DateTime<Utc>) -> bool {
        match self.retired_at {
            Some(retired) => now < retired + RETIRED_KEY_GRACE,
            None => true,
        }
    }
}

#[derive(FromRow)]
struct DkimRow {
    id: Uuid,
    domain_id: Uuid,
    selector: String,
    algorithm: String,
    public_key: String,
    private_key: String,
    state: String,
    created_at: DateTime<Utc>,
    activated_at: Option<DateTime<Utc>>,
    retired_at: Option<DateTime<Utc>>,
}

impl TryFrom<DkimRow> for DkimKey {
    type Error = Error;
    fn try_from(r: DkimRow) -> Result<DkimKey> {
        Ok(DkimKey {
            id: r.id,
            domain_id: DomainId(r.domain_id),
            selector: r.selector,
            algorithm: r.algorithm.parse()?,
            public_key: r.public_key,
            private_key: r.private_key.into(),
            state: r.state.parse()?,
            created_at: r.created_at,
            activated_at: r.activated_at,
            retired_at: r.retired_at,
        })
    }
}

const COLUMNS: &str = "id, domain_id, selector, algorithm, public_key, private_key, state, created_at, activated_at, retired_at";

impl Store {
    /// Every key of a domain, oldest first.
    pub async fn dkim_keys(&self, domain: DomainId) -> Result<Vec<DkimKey>> {
        let sql = super::join_sql(
            "SELECT ",
            COLUMNS,
            " FROM dkim_keys WHERE domain_id = $1 ORDER BY created_at, selector",
        );
        let rows: Vec<DkimRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(domain.0).fetch_all(p).await)?;
        rows.into_iter().map(DkimKey::try_from).collect()
    }

    /// Adds pending keys for a rotation; refused while another rotation is pending.
    pub async fn add_pending_dkim_keys(
        &self,
        actor: &str,
        tenant: TenantId,
        domain: DomainId,
        keys: &[NewDkimKey],
    ) -> Result<()> {
        let pending = "SELECT COUNT(*) FROM dkim_keys WHERE domain_id = $1 AND state = 'pending'";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let (n,): (i64,) = sqlx::query_as(pending).bind(domain.0).fetch_one(&mut *tx).await?;
            if n > 0 {
                return Err(Error::Conflict(
                    "a DKIM rotation is already pending: publish its records and it completes by itself".into(),
                ));
            }
            for key in keys {
                insert_dkim_key!(tx, domain, key, DkimKeyState::Pending);
            }
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(tenant.0),
                action: "domain.dkim.rotate",
                object_type: "domain",
                object_id: domain.to_string(),
                detail: serde_json::json!({ "selectors": keys.iter().map(|k| k.selector.as_str()).collect::<Vec<_>>() }),
            });
            tx.commit().await?;
        });
        Ok(())
    }

    /// Completes a rotation: pending keys sign from now on, the old active
    /// ones retire. Returns false when nothing was pending.
    pub async fn activate_pending_dkim_keys(
        &self,
        actor: &str,
        tenant: TenantId,
        domain: DomainId,
    ) -> Result<bool> {
        let retire = "UPDATE dkim_keys SET state = 'retired', retired_at = $2 WHERE domain_id = $1 AND state = 'active'";
        let activate = "UPDATE dkim_keys SET state = 'active', activated_at = $2 WHERE domain_id = $1 AND state = 'pending'";
        let switched = on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let now = Utc::now();
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM dkim_keys WHERE domain_id = $1 AND state = 'pending'")
                .bind(domain.0).fetch_one(&mut *tx).await?;
            if n > 0 {
                sqlx::query(retire).bind(domain.0).bind(now).execute(&mut *tx).await?;
                sqlx::query(activate).bind(domain.0).bind(now).execute(&mut *tx).await?;
                write_audit!(tx, Audit {
                    actor,
                    tenant_id: Some(tenant.0),
                    action: "domain.dkim.switch",
                    object_type: "domain",
                    object_id: domain.to_string(),
                    detail: serde_json::json!({ "activated": n }),
                });
            }
            tx.commit().await?;
            n > 0
        });
        Ok(switched)
    }
}
