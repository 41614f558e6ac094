//! Sieve scripts (RFC 5228) and what they remember. An account keeps
//! several scripts, one active (as ManageSieve, RFC 5804, has it); a tenant
//! keeps one tenant-wide script, which runs before each account's. The
//! language itself is the mail crate's (it compiles and runs scripts);
//! this module only stores them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Audit, INSERT_AUDIT, Pool, Store};
use crate::model::TenantId;
use crate::{Error, Result};

/// The most scripts one owner keeps.
pub const MAX_SIEVE_SCRIPTS: i64 = 20;
/// The largest script, in bytes.
pub const MAX_SIEVE_SCRIPT_BYTES: usize = 64 * 1024;

/// Whose a script is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SieveOwner {
    /// An account's own (the uuid is the account's).
    Account(Uuid, TenantId),
    /// The tenant-wide script.
    Tenant(TenantId),
}

impl SieveOwner {
    fn id(self) -> Uuid {
        match self {
            SieveOwner::Account(id, _) => id,
            SieveOwner::Tenant(t) => t.0,
        }
    }
    fn tenant(self) -> TenantId {
        match self {
            SieveOwner::Account(_, t) | SieveOwner::Tenant(t) => t,
        }
    }
    fn scope(self) -> &'static str {
        match self {
            SieveOwner::Account(..) => "account",
            SieveOwner::Tenant(_) => "tenant",
        }
    }
}

/// A stored script.
#[derive(Clone, Debug, Serialize, ToSchema, FromRow)]
pub struct SieveScript {
    #[schema(example = "vacation")]
    pub name: String,
    /// The script's text (RFC 5228).
    #[schema(
        example = "require \"fileinto\";\nif header :contains \"subject\" \"invoice\" { fileinto \"Invoices\"; }"
    )]
    pub content: String,
    /// Whether it is the one that runs on arrival.
    pub active: bool,
    pub updated_at: DateTime<Utc>,
}

/// A script name, as ManageSieve and the API accept it: 1 to 128
/// characters, none of them control characters or `/`.
pub fn check_script_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.chars().count() > 128
        || name.chars().any(|c| c.is_control() || c == '/')
    {
        return Err(Error::Invalid(
            "a script name is 1 to 128 characters, without control characters or `/`".into(),
        ));
    }
    Ok(())
}

/// What delivery to one account must do besides storing: the scripts that
/// run (the tenant's first), and where the account forwards its mail.
#[derive(Clone, Debug, Default)]
pub struct DeliveryRules {
    /// (name, text) of the active scripts, the tenant-wide one first.
    pub scripts: Vec<(String, String)>,
    pub forward_to: Option<String>,
    pub forward_keep: bool,
}

impl Store {
    /// The rules delivery applies to `account`, in one query (it runs for
    /// every recipient of every message).
    pub async fn delivery_rules(&self, account: Uuid, tenant: TenantId) -> Result<DeliveryRules> {
        let sql = "SELECT a.forward_to, a.forward_keep, s.scope, s.name, s.content FROM accounts a \
             LEFT JOIN sieve_scripts s ON s.owner IN (a.id, $2) AND s.active = TRUE WHERE a.id = $1";
        let rows: Vec<(
            Option<String>,
            bool,
            Option<String>,
            Option<String>,
            Option<String>,
        )> = on_pool!(&self.pool, p => sqlx::query_as(sql).bind(account).bind(tenant.0).fetch_all(p).await)?;
        let mut rules = DeliveryRules {
            forward_keep: true,
            ..DeliveryRules::default()
        };
        let mut scripts: Vec<(String, String, String)> = Vec::new();
        for (forward_to, forward_keep, scope, name, content) in rows {
            rules.forward_to = forward_to;
            rules.forward_keep = forward_keep;
            if let (Some(scope), Some(name), Some(content)) = (scope, name, content) {
                scripts.push((scope, name, content));
            }
        }
        // "tenant" sorts after "account": the tenant's goes first.
        scripts.sort_by(|a, b| b.0.cmp(&a.0));
        rules.scripts = scripts.into_iter().map(|(_, n, c)| (n, c)).collect();
        Ok(rules)
    }

    pub async fn sieve_scripts(&self, owner: SieveOwner) -> Result<Vec<SieveScript>> {
        let sql = "SELECT name, content, active, updated_at FROM sieve_scripts WHERE owner = $1 ORDER BY name";
        Ok(on_pool!(&self.pool, p => sqlx::query_as(sql).bind(owner.id()).fetch_all(p).await)?)
    }

    pub async fn sieve_script(&self, owner: SieveOwner, name: &str) -> Result<Option<SieveScript>> {
        let sql = "SELECT name, content, active, updated_at FROM sieve_scripts WHERE owner = $1 AND name = $2";
        Ok(
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(owner.id()).bind(name).fetch_optional(p).await)?,
        )
    }

    /// The script that runs on arrival, if one is active.
    pub async fn active_sieve(&self, owner: SieveOwner) -> Result<Option<SieveScript>> {
        let sql = "SELECT name, content, active, updated_at FROM sieve_scripts WHERE owner = $1 AND active = TRUE";
        Ok(on_pool!(&self.pool, p => sqlx::query_as(sql).bind(owner.id()).fetch_optional(p).await)?)
    }

    /// Stores a script (already checked by the caller's compiler), replacing
    /// one of the same name and keeping whether it was active.
    pub async fn put_sieve_script(
        &self,
        actor: &str,
        owner: SieveOwner,
        name: &str,
        content: &str,
    ) -> Result<SieveScript> {
        check_script_name(name)?;
        if content.len() > MAX_SIEVE_SCRIPT_BYTES {
            return Err(Error::LimitExceeded(format!(
                "a script is at most {MAX_SIEVE_SCRIPT_BYTES} bytes"
            )));
        }
        let count = "SELECT COUNT(*) FROM sieve_scripts WHERE owner = $1 AND name <> $2";
        let (n,): (i64,) = on_pool!(&self.pool, p => sqlx::query_as(count).bind(owner.id()).bind(name).fetch_one(p).await)?;
        if n >= MAX_SIEVE_SCRIPTS {
            return Err(Error::LimitExceeded(format!(
                "at most {MAX_SIEVE_SCRIPTS} scripts are kept; delete one first"
            )));
        }
        let now = Utc::now();
        let upsert = "INSERT INTO sieve_scripts (owner, tenant_id, scope, name, content, active, updated_at) \
             VALUES ($1, $2, $3, $4, $5, FALSE, $6) \
             ON CONFLICT (owner, name) DO UPDATE SET content = excluded.content, updated_at = excluded.updated_at";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(upsert).bind(owner.id()).bind(owner.tenant().0).bind(owner.scope()).bind(name)
                .bind(content).bind(now).execute(&mut *tx).await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(owner.tenant().0),
                action: "sieve.put",
                object_type: owner.scope(),
                object_id: owner.id().to_string(),
                detail: serde_json::json!({ "name": name, "bytes": content.len() }),
            });
            tx.commit().await?;
        });
        self.sieve_script(owner, name)
            .await?
            .ok_or(Error::NotFound("script"))
    }

    /// Makes `name` the active script (`None`: none runs).
    pub async fn activate_sieve(
        &self,
        actor: &str,
        owner: SieveOwner,
        name: Option<&str>,
    ) -> Result<()> {
        if let Some(name) = name
            && self.sieve_script(owner, name).await?.is_none()
        {
            return Err(Error::NotFound("script"));
        }
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query("UPDATE sieve_scripts SET active = (name = $2) WHERE owner = $1")
                .bind(owner.id()).bind(name.unwrap_or("")).execute(&mut *tx).await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(owner.tenant().0),
                action: "sieve.activate",
                object_type: owner.scope(),
                object_id: owner.id().to_string(),
                detail: serde_json::json!({ "name": name }),
            });
            tx.commit().await?;
        });
        Ok(())
    }

    /// Deletes a script; refused while it is active (RFC 5804 §2.10).
    pub async fn delete_sieve_script(
        &self,
        actor: &str,
        owner: SieveOwner,
        name: &str,
    ) -> Result<()> {
        let script = self
            .sieve_script(owner, name)
            .await?
            .ok_or(Error::NotFound("script"))?;
        if script.active {
            return Err(Error::Conflict(
                "the script is active: activate another one (or none) first".into(),
            ));
        }
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query("DELETE FROM sieve_scripts WHERE owner = $1 AND name = $2")
                .bind(owner.id()).bind(name).execute(&mut *tx).await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(owner.tenant().0),
                action: "sieve.delete",
                object_type: owner.scope(),
                object_id: owner.id().to_string(),
                detail: serde_json::json!({ "name": name }),
            });
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn rename_sieve_script(
        &self,
        actor: &str,
        owner: SieveOwner,
        from: &str,
        to: &str,
    ) -> Result<()> {
        check_script_name(to)?;
        if self.sieve_script(owner, from).await?.is_none() {
            return Err(Error::NotFound("script"));
        }
        if self.sieve_script(owner, to).await?.is_some() {
            return Err(Error::Conflict(format!("a script named `{to}` exists")));
        }
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query("UPDATE sieve_scripts SET name = $3 WHERE owner = $1 AND name = $2")
                .bind(owner.id()).bind(from).bind(to).execute(&mut *tx).await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(owner.tenant().0),
                action: "sieve.rename",
                object_type: owner.scope(),
                object_id: owner.id().to_string(),
                detail: serde_json::json!({ "from": from, "to": to }),
            });
            tx.commit().await?;
        });
        Ok(())
    }

    /// Remembers `key` for `account` until `expires_at` (a vacation reply
    /// sent to a correspondent, a `duplicate` id). True when it was not
    /// remembered yet (or had expired): the caller acts; false: it did already.
    pub async fn sieve_remember(
        &self,
        account: Uuid,
        key: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool> {
        let now = Utc::now();
        let sql = "INSERT INTO sieve_memory (account_id, key, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (account_id, key) DO UPDATE SET expires_at = excluded.expires_at \
             WHERE sieve_memory.expires_at <= $4";
        let n = on_pool!(&self.pool, p => sqlx::query(sql).bind(account).bind(key).bind(expires_at).bind(now)
            .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }
}
