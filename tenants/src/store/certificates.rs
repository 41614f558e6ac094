//! TLS certificates obtained by ACME, shared by every process through the
//! database: what is wanted, what was issued (the key sealed under the
//! master key by the caller), the ACME account per directory, and the
//! HTTP-01 answers any API node gives while an order is pending.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{Audit, INSERT_AUDIT, Pool, Store};
use crate::Result;

/// One certificate as stored.
#[derive(Clone, Debug)]
pub struct StoredCertificate {
    /// Its first name, which names it.
    pub name: String,
    pub names: Vec<String>,
    pub chain_pem: Option<String>,
    pub key_sealed: Option<String>,
    pub issuer: Option<String>,
    pub serial: Option<String>,
    pub not_after: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub force_renewal: bool,
    pub updated_at: DateTime<Utc>,
}

/// What an operator sees of a certificate (never its key).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CertificateView {
    pub name: String,
    pub names: Vec<String>,
    /// The issuing authority's name, once issued.
    pub issuer: Option<String>,
    /// Hexadecimal.
    pub serial: Option<String>,
    pub not_after: Option<DateTime<Utc>>,
    /// Why the last order failed, until one succeeds.
    pub last_error: Option<String>,
    /// Failed orders in a row.
    pub attempts: i64,
    /// When it is ordered next (renewal or retry).
    pub next_attempt_at: DateTime<Utc>,
}

impl From<&StoredCertificate> for CertificateView {
    fn from(c: &StoredCertificate) -> Self {
        CertificateView {
            name: c.name.clone(),
            names: c.names.clone(),
            issuer: c.issuer.clone(),
            serial: c.serial.clone(),
            not_after: c.not_after,
            last_error: c.last_error.clone(),
            attempts: c.attempts,
            next_attempt_at: c.next_attempt_at,
        }
    }
}

/// What an order that succeeded gives.
pub struct IssuedCertificate<'a> {
    pub chain_pem: &'a str,
    pub key_sealed: &'a str,
    pub issuer: &'a str,
    pub serial: &'a str,
    pub not_after: DateTime<Utc>,
    /// When to renew it.
    pub renew_at: DateTime<Utc>,
}

type Row = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<String>,
    i64,
    DateTime<Utc>,
    bool,
    DateTime<Utc>,
);

const COLUMNS: &str = "name, names, chain_pem, key_sealed, issuer, serial, not_after, last_error, attempts, next_attempt_at, force_renewal, updated_at";

fn certificate(row: Row) -> StoredCertificate {
    let (
        name,
        names,
        chain_pem,
        key_sealed,
        issuer,
        serial,
        not_after,
        last_error,
        attempts,
        next_attempt_at,
        force_renewal,
        updated_at,
    ) = row;
    StoredCertificate {
        name,
        names: names.split_whitespace().map(str::to_owned).collect(),
        chain_pem,
        key_sealed,
        issuer,
        serial,
        not_after,
        last_error,
        attempts,
        next_attempt_at,
        force_renewal,
        updated_at,
    }
}

impl Store {
    /// Wants a certificate for `names` (the first names it): a new one is
    /// due at once; one whose names changed is ordered again at once.
    pub async fn want_certificate(&self, names: &[String]) -> Result<()> {
        let Some(name) = names.first() else {
            return Ok(());
        };
        let joined = names.join(" ");
        let now = Utc::now();
        let sql = "INSERT INTO certificates (name, names, next_attempt_at, updated_at, created_at) VALUES ($1, $2, $3, $3, $3) \
             ON CONFLICT (name) DO UPDATE SET names = excluded.names, next_attempt_at = excluded.next_attempt_at, attempts = 0 \
             WHERE certificates.names <> excluded.names";
        on_pool!(&self.pool, p => sqlx::query(sql).bind(name).bind(&joined).bind(now).execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// Every certificate, by name.
    pub async fn certificates(&self) -> Result<Vec<StoredCertificate>> {
        let sql = format!("SELECT {COLUMNS} FROM certificates ORDER BY name");
        let rows: Vec<Row> = on_pool!(&self.pool, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).fetch_all(p).await)?;
        Ok(rows.into_iter().map(certificate).collect())
    }

    /// The newest change to any certificate: a process reloads its
    /// certificates when this moves.
    pub async fn certificates_changed_at(&self) -> Result<Option<DateTime<Utc>>> {
        let sql = "SELECT MAX(updated_at) FROM certificates";
        let (at,): (Option<DateTime<Utc>>,) =
            on_pool!(&self.pool, p => sqlx::query_as(sql).fetch_one(p).await)?;
        Ok(at)
    }

    /// Certificates to order now: never issued, due for renewal, or forced.
    pub async fn certificates_due(&self, now: DateTime<Utc>) -> Result<Vec<StoredCertificate>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM certificates WHERE next_attempt_at <= $1 OR force_renewal = TRUE ORDER BY name"
        );
        let rows: Vec<Row> = on_pool!(&self.pool, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(now).fetch_all(p).await)?;
        Ok(rows.into_iter().map(certificate).collect())
    }

    pub async fn certificate_issued(
        &self,
        name: &str,
        issued: IssuedCertificate<'_>,
    ) -> Result<()> {
        let sql = "UPDATE certificates SET chain_pem = $2, key_sealed = $3, issuer = $4, serial = $5, not_after = $6, \
             next_attempt_at = $7, last_error = NULL, attempts = 0, force_renewal = FALSE, updated_at = $8 WHERE name = $1";
        on_pool!(&self.pool, p => sqlx::query(sql).bind(name).bind(issued.chain_pem).bind(issued.key_sealed).bind(issued.issuer)
            .bind(issued.serial).bind(issued.not_after).bind(issued.renew_at).bind(Utc::now()).execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// An order failed: said, and tried again at `retry_at`. The certificate
    /// in use (if any) stays.
    pub async fn certificate_failed(
        &self,
        name: &str,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "UPDATE certificates SET last_error = $2, attempts = attempts + 1, next_attempt_at = $3, force_renewal = FALSE \
             WHERE name = $1";
        on_pool!(&self.pool, p => sqlx::query(sql).bind(name).bind(error).bind(retry_at).execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// Orders this certificate again at the next run, whatever its expiry
    /// (audited as `actor`'s). False: no such certificate.
    pub async fn force_certificate_renewal(&self, actor: &str, name: &str) -> Result<bool> {
        let sql = "UPDATE certificates SET force_renewal = TRUE WHERE name = $1";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let done = sqlx::query(sql).bind(name).execute(&mut *tx).await?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
            write_audit!(tx, Audit { actor, tenant_id: None, action: "certificate.renew", object_type: "certificate", object_id: name.to_owned(), detail: serde_json::json!({}) });
            tx.commit().await?;
        });
        Ok(true)
    }

    /// The ACME account of a directory (sealed credentials).
    pub async fn acme_account(&self, directory_url: &str) -> Result<Option<String>> {
        let sql = "SELECT credentials FROM acme_accounts WHERE directory_url = $1";
        let row: Option<(String,)> = on_pool!(&self.pool, p => sqlx::query_as(sql).bind(directory_url).fetch_optional(p).await)?;
        Ok(row.map(|(c,)| c))
    }

    pub async fn put_acme_account(&self, directory_url: &str, credentials: &str) -> Result<()> {
        let sql = "INSERT INTO acme_accounts (directory_url, credentials, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (directory_url) DO UPDATE SET credentials = excluded.credentials";
        on_pool!(&self.pool, p => sqlx::query(sql).bind(directory_url).bind(credentials).bind(Utc::now()).execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// Keeps an HTTP-01 answer until `expires_at` (expired ones go).
    pub async fn put_acme_challenge(
        &self,
        token: &str,
        key_authorization: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let purge = "DELETE FROM acme_challenges WHERE expires_at < $1";
        let sql = "INSERT INTO acme_challenges (token, key_authorization, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (token) DO UPDATE SET key_authorization = excluded.key_authorization, expires_at = excluded.expires_at";
        on_pool!(&self.pool, p => {
            sqlx::query(purge).bind(Utc::now()).execute(p).await?;
            sqlx::query(sql).bind(token).bind(key_authorization).bind(expires_at).execute(p).await?;
        });
        Ok(())
    }

    /// The answer to an HTTP-01 challenge, while it is pending.
    pub async fn acme_challenge(&self, token: &str) -> Result<Option<String>> {
        let sql =
            "SELECT key_authorization FROM acme_challenges WHERE token = $1 AND expires_at > $2";
        let row: Option<(String,)> = on_pool!(&self.pool, p => sqlx::query_as(sql).bind(token).bind(Utc::now()).fetch_optional(p).await)?;
        Ok(row.map(|(k,)| k))
    }

    /// Every verified domain's name.
    pub async fn verified_domain_names(&self) -> Result<Vec<String>> {
        let sql = "SELECT name FROM domains WHERE verified_at IS NOT NULL ORDER BY name";
        let rows: Vec<(String,)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).fetch_all(p).await)?;
        Ok(rows.into_iter().map(|(n,)| n).collect())
    }

    /// Every verified hostname of every tenant.
    pub async fn verified_hostnames(&self) -> Result<Vec<String>> {
        let sql = "SELECT hostname FROM hostnames WHERE verified_at IS NOT NULL ORDER BY hostname";
        let rows: Vec<(String,)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).fetch_all(p).await)?;
        Ok(rows.into_iter().map(|(h,)| h).collect())
    }

    /// The MTA-STS mode a domain's tenant chose (`testing` if none).
    pub async fn mta_sts_mode(
        &self,
        domain: crate::model::DomainId,
    ) -> Result<crate::dns_records::MtaStsMode> {
        let sql = "SELECT mode FROM domain_mta_sts WHERE domain_id = $1";
        let row: Option<(String,)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(domain.0).fetch_optional(p).await)?;
        Ok(row
            .and_then(|(m,)| crate::dns_records::MtaStsMode::parse(&m))
            .unwrap_or_default())
    }

    pub async fn set_mta_sts_mode(
        &self,
        actor: &str,
        tenant: crate::model::TenantId,
        domain: crate::model::DomainId,
        mode: crate::dns_records::MtaStsMode,
    ) -> Result<()> {
        let sql = "INSERT INTO domain_mta_sts (domain_id, mode, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (domain_id) DO UPDATE SET mode = excluded.mode, updated_at = excluded.updated_at";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(sql).bind(domain.0).bind(mode.as_str()).bind(Utc::now()).execute(&mut *tx).await?;
            write_audit!(tx, Audit { actor, tenant_id: Some(tenant.0), action: "domain.mta_sts", object_type: "domain", object_id: domain.to_string(), detail: serde_json::json!({ "mode": mode.as_str() }) });
            tx.commit().await?;
        });
        Ok(())
    }

    /// Keeps one reported policy of a TLS report about a verified hosted
    /// domain; false when the domain is not one, or the same report was
    /// kept already.
    pub async fn keep_tls_report(&self, report: &NewTlsReport<'_>) -> Result<bool> {
        let domain = "SELECT id FROM domains WHERE name = $1 AND verified_at IS NOT NULL";
        let insert = "INSERT INTO tls_reports (id, domain_id, organization, report_id, starts_at, ends_at, policy_type, \
             successes, failures, failure_details, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (domain_id, organization, report_id, policy_type) DO NOTHING";
        on_pool!(&self.pool, p => {
            let found: Option<(uuid::Uuid,)> = sqlx::query_as(domain).bind(report.domain).fetch_optional(p).await?;
            let Some((domain_id,)) = found else { return Ok(false) };
            let done = sqlx::query(insert).bind(uuid::Uuid::now_v7()).bind(domain_id).bind(report.organization)
                .bind(report.report_id).bind(report.starts_at).bind(report.ends_at).bind(report.policy_type)
                .bind(report.successes).bind(report.failures).bind(report.failure_details).bind(Utc::now())
                .execute(p).await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// The newest TLS reports about a domain.
    pub async fn tls_reports(
        &self,
        domain: crate::model::DomainId,
        limit: i64,
    ) -> Result<Vec<TlsReport>> {
        let sql = "SELECT organization, report_id, starts_at, ends_at, policy_type, successes, failures, failure_details, received_at \
             FROM tls_reports WHERE domain_id = $1 ORDER BY received_at DESC, id DESC LIMIT $2";
        type Row = (
            String,
            String,
            DateTime<Utc>,
            DateTime<Utc>,
            String,
            i64,
            i64,
            String,
            DateTime<Utc>,
        );
        let rows: Vec<Row> = on_pool!(&self.pool, p => sqlx::query_as(sql).bind(domain.0).bind(limit).fetch_all(p).await)?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    organization,
                    report_id,
                    starts_at,
                    ends_at,
                    policy_type,
                    successes,
                    failures,
                    details,
                    received_at,
                )| TlsReport {
                    organization,
                    report_id,
                    starts_at,
                    ends_at,
                    policy_type,
                    successes,
                    failures,
                    failure_details: serde_json::from_str(&details).unwrap_or_default(),
                    received_at,
                },
            )
            .collect())
    }
}

/// One reported policy of a TLS report, to keep.
pub struct NewTlsReport<'a> {
    /// The policy's domain, as reported.
    pub domain: &'a str,
    pub organization: &'a str,
    pub report_id: &'a str,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub policy_type: &'a str,
    pub successes: i64,
    pub failures: i64,
    pub failure_details: &'a str,
}

/// What a sender reported about TLS to one of our domains (RFC 8460).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TlsReport {
    /// Who sent the report.
    pub organization: String,
    pub report_id: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// `sts`, `tlsa` or `no-policy-found`.
    pub policy_type: String,
    /// Sessions that negotiated TLS as the policy asks.
    pub successes: i64,
    pub failures: i64,
    /// The report's `failure-details`, as sent.
    #[schema(value_type = Vec<Object>)]
    pub failure_details: Vec<serde_json::Value>,
    pub received_at: DateTime<Utc>,
}
