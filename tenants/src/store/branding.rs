//! Tenants' brands, their logo and favicon, and their custom hostnames.
//!
//! A brand is a set of optional fields; what a tenant leaves unset comes
//! from its parent reseller, then from the operator, then from Caliop's own
//! defaults. A hostname shows a tenant's brand only once the tenant proved
//! it controls it (a TXT record), and one hostname belongs to one tenant.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Audit, INSERT_AUDIT, Pool, Store, unique_violation};
use crate::model::TenantId;
use crate::{Error, Result};

/// The fields of a brand, each optional (unset: inherited).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, FromRow)]
pub struct BrandFields {
    /// The product's name, as users see it ("Acme Mail").
    pub product_name: Option<String>,
    /// `#rrggbb`; text on it is white, so it must contrast with white (WCAG AA, 4.5:1).
    pub primary_color: Option<String>,
    /// `#rrggbb`; links and highlights on a white background (WCAG AA, 4.5:1).
    pub accent_color: Option<String>,
    pub support_address: Option<String>,
    pub legal_url: Option<String>,
    pub privacy_url: Option<String>,
    /// `fr` or `en`.
    pub default_language: Option<String>,
}

impl BrandFields {
    /// Caliop's own brand: what shows where no tenant set anything.
    pub fn caliop() -> BrandFields {
        BrandFields {
            product_name: Some("Caliop".into()),
            primary_color: Some("#1d4ed8".into()),
            accent_color: Some("#0f766e".into()),
            support_address: None,
            legal_url: None,
            privacy_url: None,
            default_language: Some("en".into()),
        }
    }

    /// Fills what is unset from `parent`.
    pub fn inherit(self, parent: &BrandFields) -> BrandFields {
        BrandFields {
            product_name: self.product_name.or_else(|| parent.product_name.clone()),
            primary_color: self.primary_color.or_else(|| parent.primary_color.clone()),
            accent_color: self.accent_color.or_else(|| parent.accent_color.clone()),
            support_address: self
                .support_address
                .or_else(|| parent.support_address.clone()),
            legal_url: self.legal_url.or_else(|| parent.legal_url.clone()),
            privacy_url: self.privacy_url.or_else(|| parent.privacy_url.clone()),
            default_language: self
                .default_language
                .or_else(|| parent.default_language.clone()),
        }
    }
}

/// A logo or favicon.
#[derive(Clone, Debug)]
pub struct BrandAsset {
    pub tenant_id: TenantId,
    pub content_type: String,
    pub bytes: Vec<u8>,
    pub sha256: String,
    pub updated_at: DateTime<Utc>,
}

/// A hostname a tenant registered.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Hostname {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub hostname: String,
    /// The TXT value to publish at `_caliop-hostname.{hostname}`.
    pub token: String,
    pub verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct HostnameRow {
    id: Uuid,
    tenant_id: Uuid,
    hostname: String,
    token: String,
    verified_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl From<HostnameRow> for Hostname {
    fn from(r: HostnameRow) -> Hostname {
        Hostname {
            id: r.id,
            tenant_id: TenantId(r.tenant_id),
            hostname: r.hostname,
            token: r.token,
            verified_at: r.verified_at,
            created_at: r.created_at,
        }
    }
}

/// A tenant's wording of a system mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateOverride {
    pub subject: String,
    pub text: String,
    pub html: String,
}

const BRAND_COLUMNS: &str = "product_name, primary_color, accent_color, support_address, legal_url, privacy_url, default_language";
const HOSTNAME_COLUMNS: &str = "id, tenant_id, hostname, token, verified_at, created_at";

impl Store {
    /// The brand a tenant set itself (nothing inherited).
    pub async fn own_brand(&self, tenant: TenantId) -> Result<BrandFields> {
        let sql = super::join_sql(
            "SELECT ",
            BRAND_COLUMNS,
            " FROM branding WHERE tenant_id = $1",
        );
        let row: Option<BrandFields> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(tenant.0).fetch_optional(p).await)?;
        Ok(row.unwrap_or_default())
    }

    /// The brand a tenant shows: its own, then its ancestors', then `defaults`.
    pub async fn brand(&self, tenant: TenantId, defaults: &BrandFields) -> Result<BrandFields> {
        let mut brand = BrandFields::default();
        for id in self.ancestry(tenant).await? {
            brand = brand.inherit(&self.own_brand(id).await?);
        }
        Ok(brand.inherit(defaults))
    }

    /// The tenant whose logo or favicon `tenant` shows: itself or its nearest
    /// ancestor that has one (without reading the image).
    pub async fn brand_asset_owner(
        &self,
        tenant: TenantId,
        kind: &str,
    ) -> Result<Option<TenantId>> {
        let sql = "SELECT COUNT(*) FROM brand_assets WHERE tenant_id = $1 AND kind = $2";
        for id in self.ancestry(tenant).await? {
            let (n,): (i64,) = on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id.0).bind(kind).fetch_one(p).await)?;
            if n > 0 {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Replaces a tenant's own brand fields.
    pub async fn set_brand(
        &self,
        actor: &str,
        tenant: TenantId,
        fields: &BrandFields,
    ) -> Result<()> {
        let upsert = super::join_sql(
            "INSERT INTO branding (tenant_id, ",
            BRAND_COLUMNS,
            ", updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (tenant_id) DO UPDATE SET \
             product_name = excluded.product_name, primary_color = excluded.primary_color, \
             accent_color = excluded.accent_color, support_address = excluded.support_address, \
             legal_url = excluded.legal_url, privacy_url = excluded.privacy_url, \
             default_language = excluded.default_language, updated_at = excluded.updated_at",
        );
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(upsert)
                .bind(tenant.0).bind(&fields.product_name).bind(&fields.primary_color).bind(&fields.accent_color)
                .bind(&fields.support_address).bind(&fields.legal_url).bind(&fields.privacy_url)
                .bind(&fields.default_language).bind(Utc::now())
                .execute(&mut *tx).await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(tenant.0),
                action: "branding.update",
                object_type: "tenant",
                object_id: tenant.to_string(),
                detail: serde_json::to_value(fields).unwrap_or_default(),
            });
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn brand_asset(&self, tenant: TenantId, kind: &str) -> Result<Option<BrandAsset>> {
        let sql = "SELECT content_type, bytes, sha256, updated_at FROM brand_assets WHERE tenant_id = $1 AND kind = $2";
        let row: Option<(String, Vec<u8>, String, DateTime<Utc>)> = on_pool!(&self.pool, p => sqlx::query_as(sql).bind(tenant.0).bind(kind).fetch_optional(p).await)?;
        Ok(
            row.map(|(content_type, bytes, sha256, updated_at)| BrandAsset {
                tenant_id: tenant,
                content_type,
                bytes,
                sha256,
                updated_at,
            }),
        )
    }

    /// Stores a logo or favicon that was already checked.
    pub async fn set_brand_asset(
        &self,
        actor: &str,
        tenant: TenantId,
        kind: &'static str,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<String> {
        let sha256 = {
            use sha2::Digest;
            sha2::Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let upsert = "INSERT INTO brand_assets (tenant_id, kind, content_type, bytes, sha256, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, kind) DO UPDATE SET \
             content_type = excluded.content_type, bytes = excluded.bytes, sha256 = excluded.sha256, updated_at = excluded.updated_at";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(upsert).bind(tenant.0).bind(kind).bind(content_type).bind(bytes).bind(&sha256).bind(Utc::now())
                .execute(&mut *tx).await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(tenant.0),
                action: "branding.asset",
                object_type: "tenant",
                object_id: tenant.to_string(),
                detail: serde_json::json!({ "kind": kind, "content_type": content_type, "bytes": bytes.len(), "sha256": sha256 }),
            });
            tx.commit().await?;
        });
        Ok(sha256)
    }

    /// The wording of a template for a tenant: its own, else its nearest ancestor's.
    pub async fn template_override(
        &self,
        tenant: TenantId,
        name: &str,
        language: &str,
    ) -> Result<Option<(TenantId, TemplateOverride)>> {
        let sql = "SELECT subject, text_body, html_body FROM template_overrides WHERE tenant_id = $1 AND name = $2 AND language = $3";
        for id in self.ancestry(tenant).await? {
            let row: Option<(String, String, String)> = on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id.0).bind(name).bind(language).fetch_optional(p).await)?;
            if let Some((subject, text, html)) = row {
                return Ok(Some((
                    id,
                    TemplateOverride {
                        subject,
                        text,
                        html,
                    },
                )));
            }
        }
        Ok(None)
    }

    /// Saves (`Some`) or removes (`None`) a tenant's wording of a template.
    pub async fn set_template_override(
        &self,
        actor: &str,
        tenant: TenantId,
        name: &str,
        language: &str,
        wording: Option<&TemplateOverride>,
    ) -> Result<()> {
        let upsert = "INSERT INTO template_overrides (tenant_id, name, language, subject, text_body, html_body, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, name, language) DO UPDATE SET \
             subject = excluded.subject, text_body = excluded.text_body, html_body = excluded.html_body, updated_at = excluded.updated_at";
        let delete =
            "DELETE FROM template_overrides WHERE tenant_id = $1 AND name = $2 AND language = $3";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            match wording {
                Some(w) => sqlx::query(upsert).bind(tenant.0).bind(name).bind(language).bind(&w.subject).bind(&w.text)
                    .bind(&w.html).bind(Utc::now()).execute(&mut *tx).await?,
                None => sqlx::query(delete).bind(tenant.0).bind(name).bind(language).execute(&mut *tx).await?,
            };
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(tenant.0),
                action: if wording.is_some() { "template.update" } else { "template.reset" },
                object_type: "template",
                object_id: format!("{name}.{language}"),
                detail: serde_json::json!({ "subject": wording.map(|w| w.subject.clone()) }),
            });
            tx.commit().await?;
        });
        Ok(())
    }

    /// The domain a tenant's system mail comes from: its first verified domain.
    pub async fn sending_domain(&self, tenant: TenantId) -> Result<Option<String>> {
        let sql = "SELECT name FROM domains WHERE tenant_id = $1 AND verified_at IS NOT NULL ORDER BY verified_at, name LIMIT 1";
        let row: Option<(String,)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(tenant.0).fetch_optional(p).await)?;
        Ok(row.map(|(n,)| n))
    }

    /// Where the owner of an account gets welcome and password-reset mail.
    pub async fn set_recovery_address(
        &self,
        account: crate::model::AccountId,
        address: Option<&str>,
    ) -> Result<()> {
        let sql = "UPDATE accounts SET recovery_address = $2 WHERE id = $1";
        on_pool!(&self.pool, p => sqlx::query(sql).bind(account.0).bind(address).execute(p).await.map(|_| ()))?;
        Ok(())
    }

    pub async fn recovery_address(
        &self,
        account: crate::model::AccountId,
    ) -> Result<Option<String>> {
        let sql = "SELECT recovery_address FROM accounts WHERE id = $1";
        let row: Option<(Option<String>,)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(account.0).fetch_optional(p).await)?;
        Ok(row.and_then(|(a,)| a))
    }

    /// Records a password reset (its token's hash), valid until `expires_at`;
    /// earlier unused resets of the account stop working.
    pub async fn create_password_reset(
        &self,
        account: crate::model::AccountId,
        token_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let now = Utc::now();
        let retire =
            "UPDATE password_resets SET used_at = $2 WHERE account_id = $1 AND used_at IS NULL";
        let insert = "INSERT INTO password_resets (token_hash, account_id, created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, NULL)";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(retire).bind(account.0).bind(now).execute(&mut *tx).await?;
            sqlx::query(insert).bind(token_hash).bind(account.0).bind(now).bind(expires_at).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Gives the account's live reset a new token (its hash), so that the
    /// link is made by whoever sends it, at send time; false when no reset
    /// of the account is live any more (used, expired or superseded).
    pub async fn rekey_password_reset(
        &self,
        account: crate::model::AccountId,
        token_hash: &str,
    ) -> Result<bool> {
        let sql = "UPDATE password_resets SET token_hash = $2 \
             WHERE account_id = $1 AND used_at IS NULL AND expires_at > $3";
        let done = on_pool!(&self.pool, p => sqlx::query(sql).bind(account.0).bind(token_hash).bind(Utc::now())
            .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// The account a live (unused, unexpired) reset token belongs to.
    pub async fn password_reset(
        &self,
        token_hash: &str,
    ) -> Result<Option<crate::model::AccountId>> {
        let sql = "SELECT account_id FROM password_resets WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2";
        let row: Option<(Uuid,)> = on_pool!(&self.pool, p => sqlx::query_as(sql).bind(token_hash).bind(Utc::now()).fetch_optional(p).await)?;
        Ok(row.map(|(a,)| crate::model::AccountId(a)))
    }

    /// Spends a reset token: true for the one caller that used it while live.
    pub async fn spend_password_reset(&self, token_hash: &str) -> Result<bool> {
        let sql = "UPDATE password_resets SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2";
        let done = on_pool!(&self.pool, p => sqlx::query(sql).bind(token_hash).bind(Utc::now()).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// The domain self-signups on the tenant's hostnames get, if it allows them.
    pub async fn self_signup_domain(&self, tenant: TenantId) -> Result<Option<String>> {
        let sql = "SELECT self_signup_domain FROM tenants WHERE id = $1";
        let row: Option<(Option<String>,)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(tenant.0).fetch_optional(p).await)?;
        Ok(row.and_then(|(d,)| d))
    }

    /// Allows self-signup on the tenant's hostnames into `domain` (or stops it with `None`).
    pub async fn set_self_signup_domain(
        &self,
        actor: &str,
        tenant: TenantId,
        domain: Option<&str>,
    ) -> Result<()> {
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query("UPDATE tenants SET self_signup_domain = $2 WHERE id = $1").bind(tenant.0).bind(domain)
                .execute(&mut *tx).await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(tenant.0),
                action: "tenant.self_signup",
                object_type: "tenant",
                object_id: tenant.to_string(),
                detail: serde_json::json!({ "domain": domain }),
            });
            tx.commit().await?;
        });
        Ok(())
    }

    /// The first verified hostname of a tenant, for links in its mail.
    pub async fn tenant_hostname(&self, tenant: TenantId) -> Result<Option<String>> {
        let sql = "SELECT hostname FROM hostnames WHERE tenant_id = $1 AND verified_at IS NOT NULL ORDER BY verified_at LIMIT 1";
        let row: Option<(String,)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(tenant.0).fetch_optional(p).await)?;
        Ok(row.map(|(h,)| h))
    }

    /// Registers a hostname for a tenant, unverified; a hostname belongs to one tenant.
    pub async fn add_hostname(
        &self,
        actor: &str,
        tenant: TenantId,
        hostname: &str,
        token: &str,
    ) -> Result<Hostname> {
        let id = Uuid::now_v7();
        let insert = "INSERT INTO hostnames (id, tenant_id, hostname, token, verified_at, created_at) VALUES ($1, $2, $3, $4, NULL, $5)";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(insert).bind(id).bind(tenant.0).bind(hostname).bind(token).bind(Utc::now())
                .execute(&mut *tx).await
                .map_err(|e| if unique_violation(&e) {
                    Error::Conflict(format!("the hostname `{hostname}` is already registered"))
                } else { e.into() })?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(tenant.0),
                action: "hostname.create",
                object_type: "hostname",
                object_id: id.to_string(),
                detail: serde_json::json!({ "hostname": hostname }),
            });
            tx.commit().await?;
        });
        self.hostname(id).await?.ok_or(Error::NotFound("hostname"))
    }

    pub async fn hostname(&self, id: Uuid) -> Result<Option<Hostname>> {
        let sql = super::join_sql("SELECT ", HOSTNAME_COLUMNS, " FROM hostnames WHERE id = $1");
        let row: Option<HostnameRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id).fetch_optional(p).await)?;
        Ok(row.map(Hostname::from))
    }

    pub async fn hostnames(&self, tenant: TenantId) -> Result<Vec<Hostname>> {
        let sql = super::join_sql(
            "SELECT ",
            HOSTNAME_COLUMNS,
            " FROM hostnames WHERE tenant_id = $1 ORDER BY hostname",
        );
        let rows: Vec<HostnameRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(tenant.0).fetch_all(p).await)?;
        Ok(rows.into_iter().map(Hostname::from).collect())
    }

    /// The tenant a verified hostname belongs to.
    pub async fn tenant_by_hostname(&self, hostname: &str) -> Result<Option<TenantId>> {
        let sql = "SELECT tenant_id FROM hostnames WHERE hostname = $1 AND verified_at IS NOT NULL";
        let row: Option<(Uuid,)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(hostname).fetch_optional(p).await)?;
        Ok(row.map(|(t,)| TenantId(t)))
    }

    pub async fn mark_hostname_verified(&self, actor: &str, host: &Hostname) -> Result<Hostname> {
        let sql = "UPDATE hostnames SET verified_at = $2 WHERE id = $1 AND verified_at IS NULL";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(sql).bind(host.id).bind(Utc::now()).execute(&mut *tx).await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(host.tenant_id.0),
                action: "hostname.verify",
                object_type: "hostname",
                object_id: host.id.to_string(),
                detail: serde_json::json!({ "hostname": host.hostname }),
            });
            tx.commit().await?;
        });
        self.hostname(host.id)
            .await?
            .ok_or(Error::NotFound("hostname"))
    }

    pub async fn delete_hostname(&self, actor: &str, host: &Hostname) -> Result<()> {
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query("DELETE FROM hostnames WHERE id = $1").bind(host.id).execute(&mut *tx).await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(host.tenant_id.0),
                action: "hostname.delete",
                object_type: "hostname",
                object_id: host.id.to_string(),
                detail: serde_json::json!({ "hostname": host.hostname }),
            });
            tx.commit().await?;
        });
        Ok(())
    }
}
