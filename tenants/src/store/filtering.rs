//! What spam filtering remembers: each account's own rules about senders
//! (written when it moves a message into or out of Junk, or through the
//! API), and outbound abuse: the submissions the filter refused, and the
//! accounts that lost sending for it until an operator looks.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::FromRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Audit, INSERT_AUDIT, Pool, Store};
use crate::model::{AccountId, EmailAddress, SenderRule, TenantId};
use crate::{Error, Result};

/// The most sender rules one account keeps.
pub const MAX_SENDER_RULES: i64 = 5_000;

/// One of an account's rules about a sender.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct SenderRuleEntry {
    /// An address (`someone@example.com`) or a whole domain (`example.com`).
    #[schema(example = "newsletter@shop.example")]
    pub sender: String,
    pub rule: SenderRule,
    pub created_at: DateTime<Utc>,
}

/// An account the outbound filter refused lately, or that lost sending.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AbuseEntry {
    pub account_id: AccountId,
    pub tenant_id: TenantId,
    pub address: String,
    /// Set when the account reached the day's limit of refusals: it sends
    /// nothing until an operator clears it.
    pub sending_blocked_at: Option<DateTime<Utc>>,
    /// Refusals in the last 24 hours.
    pub strikes_last_day: i64,
    /// The latest refusals, newest first (at most ten).
    pub strikes: Vec<Strike>,
}

/// One submission the outbound filter refused.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Strike {
    pub at: DateTime<Utc>,
    /// Why, in the filter's words (its action and the rules that matched).
    pub reason: String,
    pub score: f64,
}

/// The normal form of a sender rule's key: an address or a domain, lower
/// case, without the `@` a domain may be written with.
pub fn sender_key(sender: &str) -> Result<String> {
    let sender = sender.trim().trim_start_matches('@');
    if sender.contains('@') {
        Ok(EmailAddress::parse(sender)?
            .to_string()
            .to_ascii_lowercase())
    } else {
        Ok(crate::model::DomainName::parse(sender)?.to_string())
    }
}

#[derive(FromRow)]
struct RuleRow {
    sender: String,
    rule: String,
    created_at: DateTime<Utc>,
}

impl Store {
    /// The account's rule that applies to mail from `envelope_from`: one for
    /// the address wins over one for its domain.
    pub async fn sender_rule(
        &self,
        account: AccountId,
        envelope_from: &str,
    ) -> Result<Option<SenderRule>> {
        let Ok(address) = EmailAddress::parse(envelope_from) else {
            return Ok(None);
        };
        let address = address.to_string().to_ascii_lowercase();
        let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        let sql = "SELECT rule FROM sender_rules WHERE account_id = $1 AND sender IN ($2, $3) \
             ORDER BY LENGTH(sender) DESC LIMIT 1";
        let rule: Option<(String,)> = on_pool!(&self.pool, p => sqlx::query_as(sql)
            .bind(account.0).bind(&address).bind(domain).fetch_optional(p).await)?;
        rule.map(|(r,)| r.parse()).transpose()
    }

    pub async fn sender_rules(&self, account: AccountId) -> Result<Vec<SenderRuleEntry>> {
        let sql = "SELECT sender, rule, created_at FROM sender_rules WHERE account_id = $1 ORDER BY sender";
        let rows: Vec<RuleRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(account.0).fetch_all(p).await)?;
        rows.into_iter()
            .map(|r| {
                Ok(SenderRuleEntry {
                    sender: r.sender,
                    rule: r.rule.parse()?,
                    created_at: r.created_at,
                })
            })
            .collect()
    }

    /// Sets (or replaces) the account's rule for `sender` (an address or a
    /// domain, see [`sender_key`]).
    pub async fn set_sender_rule(
        &self,
        account: AccountId,
        sender: &str,
        rule: SenderRule,
    ) -> Result<SenderRuleEntry> {
        let sender = sender_key(sender)?;
        let count = "SELECT COUNT(*) FROM sender_rules WHERE account_id = $1 AND sender <> $2";
        let (n,): (i64,) = on_pool!(&self.pool, p => sqlx::query_as(count)
            .bind(account.0).bind(&sender).fetch_one(p).await)?;
        if n >= MAX_SENDER_RULES {
            return Err(Error::LimitExceeded(format!(
                "an account keeps at most {MAX_SENDER_RULES} sender rules; remove some first"
            )));
        }
        let now = Utc::now();
        let upsert = "INSERT INTO sender_rules (account_id, sender, rule, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (account_id, sender) DO UPDATE SET rule = excluded.rule, created_at = excluded.created_at";
        on_pool!(&self.pool, p => sqlx::query(upsert)
            .bind(account.0).bind(&sender).bind(rule.as_str()).bind(now).execute(p).await.map(|_| ()))?;
        Ok(SenderRuleEntry {
            sender,
            rule,
            created_at: now,
        })
    }

    /// Removes the account's rule for `sender`; false when it had none.
    pub async fn delete_sender_rule(&self, account: AccountId, sender: &str) -> Result<bool> {
        let sender = sender_key(sender)?;
        let sql = "DELETE FROM sender_rules WHERE account_id = $1 AND sender = $2";
        let deleted = on_pool!(&self.pool, p => sqlx::query(sql).bind(account.0).bind(&sender).execute(p).await
            .map(|done| done.rows_affected() > 0))?;
        Ok(deleted)
    }

    /// Records a submission the outbound filter refused; when the account
    /// reaches `limit` refusals within 24 hours it loses sending. Returns
    /// the refusals in the last 24 hours and whether sending is now blocked.
    pub async fn record_strike(
        &self,
        tenant: TenantId,
        account: AccountId,
        reason: &str,
        score: f64,
        limit: u32,
    ) -> Result<(i64, bool)> {
        let now = Utc::now();
        let insert = "INSERT INTO abuse_strikes (id, tenant_id, account_id, reason, score, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)";
        let count = "SELECT COUNT(*) FROM abuse_strikes WHERE account_id = $1 AND created_at > $2";
        let block = "UPDATE accounts SET sending_blocked_at = $2 WHERE id = $1 AND sending_blocked_at IS NULL";
        let since = now - Duration::hours(24);
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(insert).bind(Uuid::now_v7()).bind(tenant.0).bind(account.0)
                .bind(reason).bind(score).bind(now).execute(&mut *tx).await?;
            let (strikes,): (i64,) = sqlx::query_as(count).bind(account.0).bind(since).fetch_one(&mut *tx).await?;
            let blocked = limit > 0 && strikes >= i64::from(limit);
            if blocked {
                let newly = sqlx::query(block).bind(account.0).bind(now).execute(&mut *tx).await?.rows_affected() > 0;
                if newly {
                    write_audit!(tx, Audit {
                        actor: "filter",
                        tenant_id: Some(tenant.0),
                        action: "account.sending_blocked",
                        object_type: "account",
                        object_id: account.to_string(),
                        detail: serde_json::json!({"strikes_last_day": strikes}),
                    });
                }
            }
            tx.commit().await?;
            Ok((strikes, blocked))
        })
    }

    /// Since when the account may not send for abuse, if it may not.
    pub async fn sending_blocked(&self, account: AccountId) -> Result<Option<DateTime<Utc>>> {
        let sql = "SELECT sending_blocked_at FROM accounts WHERE id = $1";
        let row: Option<(Option<DateTime<Utc>>,)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(account.0).fetch_optional(p).await)?;
        Ok(row.and_then(|(at,)| at))
    }

    /// Accounts refused in the last `days` days or blocked, most refused first.
    pub async fn abuse(&self, days: i64) -> Result<Vec<AbuseEntry>> {
        let now = Utc::now();
        let since = now - Duration::days(days.max(1));
        let day = now - Duration::hours(24);
        let accounts = "SELECT a.id, a.tenant_id, a.address, a.sending_blocked_at, \
               CAST((SELECT COUNT(*) FROM abuse_strikes s WHERE s.account_id = a.id AND s.created_at > $2) AS BIGINT) \
             FROM accounts a \
             WHERE a.sending_blocked_at IS NOT NULL \
                OR EXISTS (SELECT 1 FROM abuse_strikes s WHERE s.account_id = a.id AND s.created_at > $1) \
             ORDER BY a.sending_blocked_at IS NULL, 5 DESC, a.address LIMIT 500";
        let strikes = "SELECT created_at, reason, score FROM abuse_strikes WHERE account_id = $1 \
             ORDER BY created_at DESC LIMIT 10";
        type Row = (Uuid, Uuid, String, Option<DateTime<Utc>>, i64);
        let rows: Vec<Row> = on_pool!(&self.pool, p => sqlx::query_as(accounts)
            .bind(since).bind(day).fetch_all(p).await)?;
        let mut entries = Vec::with_capacity(rows.len());
        for (account, tenant, address, blocked, last_day) in rows {
            let recent: Vec<(DateTime<Utc>, String, f64)> = on_pool!(&self.pool, p => sqlx::query_as(strikes)
                .bind(account).fetch_all(p).await)?;
            entries.push(AbuseEntry {
                account_id: AccountId(account),
                tenant_id: TenantId(tenant),
                address,
                sending_blocked_at: blocked,
                strikes_last_day: last_day,
                strikes: recent
                    .into_iter()
                    .map(|(at, reason, score)| Strike { at, reason, score })
                    .collect(),
            });
        }
        Ok(entries)
    }

    /// An operator gives sending back; the refusals so far no longer count.
    /// False when the account was not blocked.
    pub async fn clear_abuse(&self, actor: &str, account: AccountId) -> Result<bool> {
        let current = self
            .account(account)
            .await?
            .ok_or(Error::NotFound("account"))?;
        let clear = "UPDATE accounts SET sending_blocked_at = NULL WHERE id = $1 AND sending_blocked_at IS NOT NULL";
        let forget = "DELETE FROM abuse_strikes WHERE account_id = $1";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let cleared = sqlx::query(clear).bind(account.0).execute(&mut *tx).await?.rows_affected() > 0;
            sqlx::query(forget).bind(account.0).execute(&mut *tx).await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(current.tenant_id.0),
                action: "account.sending_restored",
                object_type: "account",
                object_id: account.to_string(),
                detail: serde_json::json!({"was_blocked": cleared}),
            });
            tx.commit().await?;
            Ok(cleared)
        })
    }
}
