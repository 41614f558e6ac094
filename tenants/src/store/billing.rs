//! Plans, each tenant's subscription, Stripe's events, invoices, the funding
//! pool's ledger and the public waiting line.
//!
//! Every Stripe event is applied in one transaction that starts by recording
//! its id: a replay (or a concurrent second delivery, which waits on the
//! first's row) finds it and changes nothing. Events may arrive in any
//! order, so nothing here trusts arrival order: a subscription's state is
//! replaced only by news at least as recent (the event's `created` time,
//! then a rank: created < updated < deleted), a paid invoice stays paid, and
//! whether a tenant is past due is derived from its invoices, not from the
//! last event seen.
//!
//! The pool's ledger counts thousandths of a free-account-month. A credit
//! per paid invoice (unique by invoice), a debit per active free account per
//! month (unique by account and month), a reversal per refund (unique by
//! invoice and refunded amount); the database refuses updates and deletes.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    ACCOUNT_COLUMNS, Audit, INSERT_AUDIT, Pool, Store, WriteLock, join_sql, unique_violation,
};
use crate::model::{AccountId, DomainId, EmailAddress, Level, Limits, TenantId};
use crate::{Error, Result};

/// Thousandths of a free-account-month in one month of one account.
pub const MILLI: i64 = 1000;

/// A price list entry the operator offers.
#[derive(Clone, Debug, Serialize, ToSchema, FromRow)]
pub struct Plan {
    pub id: Uuid,
    pub name: String,
    /// ISO 4217, lower case (`eur`).
    #[schema(example = "eur")]
    pub currency: String,
    /// Price of one seat for one month, in the currency's smallest unit.
    pub seat_price_cents: i64,
    /// Storage each seat adds to the tenant's shared quota.
    pub storage_per_seat_bytes: i64,
    pub max_domains: i64,
    pub max_accounts: i64,
    pub account_messages_per_hour: i64,
    pub account_recipients_per_day: i64,
    /// Percentage of every paid invoice that funds free accounts.
    pub solidarity_percent: i32,
    /// The Stripe Price billed per seat (required to check out through Stripe).
    pub stripe_price_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A plan to create, or (every field optional) a change to one.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanInput {
    pub name: Option<String>,
    pub currency: Option<String>,
    pub seat_price_cents: Option<i64>,
    pub storage_per_seat_bytes: Option<i64>,
    pub max_domains: Option<i64>,
    pub max_accounts: Option<i64>,
    pub account_messages_per_hour: Option<i64>,
    pub account_recipients_per_day: Option<i64>,
    pub solidarity_percent: Option<i32>,
    pub stripe_price_id: Option<String>,
}

const PLAN_COLUMNS: &str = "id, name, currency, seat_price_cents, storage_per_seat_bytes, max_domains, max_accounts, \
     account_messages_per_hour, account_recipients_per_day, solidarity_percent, stripe_price_id, created_at, updated_at";

impl PlanInput {
    /// Fills a new plan, refusing what is missing or out of range.
    fn complete(self, id: Uuid, now: DateTime<Utc>, base: Option<&Plan>) -> Result<Plan> {
        let need = |what: &str| Error::Invalid(format!("`{what}` is required"));
        let plan = Plan {
            id,
            name: self
                .name
                .or_else(|| base.map(|b| b.name.clone()))
                .ok_or_else(|| need("name"))?,
            currency: self
                .currency
                .or_else(|| base.map(|b| b.currency.clone()))
                .ok_or_else(|| need("currency"))?,
            seat_price_cents: self
                .seat_price_cents
                .or(base.map(|b| b.seat_price_cents))
                .ok_or_else(|| need("seat_price_cents"))?,
            storage_per_seat_bytes: self
                .storage_per_seat_bytes
                .or(base.map(|b| b.storage_per_seat_bytes))
                .ok_or_else(|| need("storage_per_seat_bytes"))?,
            max_domains: self
                .max_domains
                .or(base.map(|b| b.max_domains))
                .unwrap_or(10),
            max_accounts: self
                .max_accounts
                .or(base.map(|b| b.max_accounts))
                .unwrap_or(1000),
            account_messages_per_hour: self
                .account_messages_per_hour
                .or(base.map(|b| b.account_messages_per_hour))
                .unwrap_or(500),
            account_recipients_per_day: self
                .account_recipients_per_day
                .or(base.map(|b| b.account_recipients_per_day))
                .unwrap_or(5000),
            solidarity_percent: self
                .solidarity_percent
                .or(base.map(|b| b.solidarity_percent))
                .unwrap_or(0),
            stripe_price_id: self
                .stripe_price_id
                .or_else(|| base.and_then(|b| b.stripe_price_id.clone())),
            created_at: base.map(|b| b.created_at).unwrap_or(now),
            updated_at: now,
        };
        let name = plan.name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(Error::Invalid("`name` must be 1 to 100 characters".into()));
        }
        if plan.currency.len() != 3 || !plan.currency.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(Error::Invalid(format!(
                "`currency` {:?} is not an ISO 4217 code in lower case, such as `eur`",
                plan.currency
            )));
        }
        if plan.seat_price_cents < 0 {
            return Err(Error::Invalid(
                "`seat_price_cents` cannot be negative".into(),
            ));
        }
        if plan.storage_per_seat_bytes <= 0 {
            return Err(Error::Invalid(
                "`storage_per_seat_bytes` must be positive".into(),
            ));
        }
        for (what, v) in [
            ("max_domains", plan.max_domains),
            ("max_accounts", plan.max_accounts),
            ("account_messages_per_hour", plan.account_messages_per_hour),
            (
                "account_recipients_per_day",
                plan.account_recipients_per_day,
            ),
        ] {
            if v < 0 {
                return Err(Error::Invalid(format!("`{what}` cannot be negative")));
            }
        }
        if !(0..=100).contains(&plan.solidarity_percent) {
            return Err(Error::Invalid(
                "`solidarity_percent` must be between 0 and 100".into(),
            ));
        }
        if let Some(price) = &plan.stripe_price_id
            && !price.starts_with("price_")
        {
            return Err(Error::Invalid(format!(
                "`stripe_price_id` {price:?} is not a Stripe Price id (price_…)"
            )));
        }
        Ok(plan)
    }
}

/// Who pays for a tenant's seats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaidBy {
    /// Retail: its own subscription.
    #[serde(rename = "self")]
    Itself,
    /// Wholesale: its seats are on its reseller's subscription.
    Parent,
}

impl PaidBy {
    fn as_str(self) -> &'static str {
        match self {
            PaidBy::Itself => "self",
            PaidBy::Parent => "parent",
        }
    }
}

/// A tenant's plan and subscription, as this instance knows them.
#[derive(Clone, Debug)]
pub struct TenantBilling {
    pub tenant_id: TenantId,
    pub plan_id: Uuid,
    pub committed_seats: i64,
    pub paid_by: PaidBy,
    pub stripe_customer_id: Option<String>,
    pub stripe_subscription_id: Option<String>,
    pub stripe_item_id: Option<String>,
    pub subscription_status: Option<String>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub seats_billed: Option<i64>,
    pub public_funder: bool,
    /// The oldest unpaid invoice whose payment failed.
    pub past_due_since: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct BillingRow {
    tenant_id: Uuid,
    plan_id: Uuid,
    committed_seats: i64,
    paid_by: String,
    stripe_customer_id: Option<String>,
    stripe_subscription_id: Option<String>,
    stripe_item_id: Option<String>,
    subscription_status: Option<String>,
    current_period_end: Option<DateTime<Utc>>,
    seats_billed: Option<i64>,
    public_funder: bool,
    updated_at: DateTime<Utc>,
}

const BILLING_COLUMNS: &str = "tenant_id, plan_id, committed_seats, paid_by, stripe_customer_id, stripe_subscription_id, \
     stripe_item_id, subscription_status, current_period_end, seats_billed, public_funder, updated_at";

/// An invoice, as Stripe's events described it.
#[derive(Clone, Debug, Serialize, ToSchema, FromRow)]
pub struct Invoice {
    pub id: String,
    pub number: Option<String>,
    /// `open`, `paid`, `void` or `uncollectible`.
    pub status: String,
    pub currency: String,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub amount_refunded: i64,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub hosted_url: Option<String>,
    pub failed_at: Option<DateTime<Utc>>,
    pub paid_at: Option<DateTime<Utc>>,
}

/// An invoice as an event carries it.
#[derive(Clone, Debug)]
pub struct InvoiceEvent {
    pub id: String,
    pub customer: String,
    pub number: Option<String>,
    pub currency: String,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub hosted_url: Option<String>,
}

/// What a verified Stripe event means for us.
#[derive(Clone, Debug)]
pub enum BillingEvent {
    CheckoutCompleted {
        tenant: Option<TenantId>,
        customer: String,
        subscription: Option<String>,
    },
    Subscription {
        id: String,
        customer: String,
        status: String,
        item_id: Option<String>,
        quantity: Option<i64>,
        current_period_end: Option<DateTime<Utc>>,
        /// created 0, updated 1, deleted 2: breaks ties between events of one second.
        rank: i32,
    },
    InvoicePaid(InvoiceEvent),
    InvoiceFailed(InvoiceEvent),
    /// A charge of `invoice` refunded, `amount_refunded` in all so far.
    Refunded {
        customer: String,
        invoice: String,
        amount_refunded: i64,
    },
    /// A type we do not act on (recorded, so a replay is still a replay).
    Ignored,
}

/// A verified event.
#[derive(Clone, Debug)]
pub struct StripeEvent {
    pub id: String,
    pub kind: String,
    pub created: i64,
    pub event: BillingEvent,
}

/// What applying an event did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The event had been applied before: nothing changed.
    pub replayed: bool,
    pub tenant: Option<TenantId>,
    /// Thousandths of free-account-months this event added to the pool (negative on refund).
    pub pool_milli_months: i64,
    /// Older news than what is recorded: not applied.
    pub stale: bool,
}

/// How money becomes free-account-months.
#[derive(Clone, Debug, Default)]
pub struct PoolRates {
    /// Monthly cost of one free account, in the smallest unit, per currency.
    pub free_account_month_cents: HashMap<String, i64>,
}

/// The pool as anyone may see it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PoolSummary {
    /// Free-account-months the ledger holds (credits minus debits and reversals).
    pub funded_account_months: f64,
    /// Free accounts the pool funds over the horizon (including those already open).
    pub funded_capacity: i64,
    /// Months of funding each free place must have before it opens.
    pub horizon_months: i64,
    pub active_free_accounts: i64,
    /// People waiting for a funded place.
    pub waiting: i64,
    /// Tenants whose paid invoices funded the pool.
    pub funding_tenants: i64,
    /// Names of the funders who chose to be named.
    pub named_funders: Vec<String>,
}

/// One calendar month of the pool, in free-account-months.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct PoolMonth {
    /// `YYYY-MM`.
    #[schema(example = "2026-03")]
    pub month: String,
    /// Paid in by invoices this month, less the refunds reversed this month.
    pub credited: f64,
    /// Spent on free accounts this month.
    pub debited: f64,
    /// What the pool held at the end of the month, everything before included.
    pub balance: f64,
    /// Free accounts that balance funds over the horizon.
    pub capacity: i64,
    /// Distinct free accounts debited this month.
    pub free_accounts: i64,
}

/// The pool month by month.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PoolHistory {
    /// Months of funding each free place must have (what `capacity` divides by).
    pub horizon_months: i64,
    /// Oldest first, months without entries included.
    pub months: Vec<PoolMonth>,
}

/// The ledger's entries per month: credits (net of reversals), debits, and
/// the accounts debited (a debit's reference is `<account id>:<YYYY-MM>`).
const POOL_MONTHS: &str = "SELECT MONTH_OF_AT AS period, \
       CAST(COALESCE(SUM(CASE WHEN kind = 'debit' THEN 0 ELSE milli_months END), 0) AS BIGINT), \
       CAST(COALESCE(SUM(CASE WHEN kind = 'debit' THEN -milli_months ELSE 0 END), 0) AS BIGINT), \
       COUNT(DISTINCT CASE WHEN kind = 'debit' THEN substr(reference, 1, 36) END) \
     FROM pool_ledger WHERE at >= $1 AND at < $2 GROUP BY period";

/// A signup ready to become an account: password hashed, key pair made and locked.
#[derive(Clone)]
pub struct NewSignup {
    pub token_hash: String,
    pub address: EmailAddress,
    pub password_hash: String,
    pub fingerprint: String,
    pub public_key: String,
    pub secret_key: String,
    /// Where a forgotten password is reset, set on the account when it opens.
    pub recovery_address: Option<EmailAddress>,
}

/// Where a signup stands.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SignupStatus {
    pub address: String,
    /// `waiting` or `admitted`.
    pub status: String,
    /// Place in line (1 is next); absent once admitted.
    pub position: Option<i64>,
    pub account_id: Option<Uuid>,
    pub joined_at: DateTime<Utc>,
    pub admitted_at: Option<DateTime<Utc>>,
}

/// Where public signups land.
#[derive(Clone, Copy, Debug)]
pub struct PublicInstance {
    pub tenant: TenantId,
    pub domain: DomainId,
    /// Storage each free account gets (and adds to the public tenant's quota).
    pub free_quota_bytes: i64,
    pub level: Level,
    pub horizon_months: i64,
}

/// One month of a tenant's usage.
#[derive(Clone, Debug, Serialize, ToSchema, FromRow)]
pub struct UsageMonth {
    pub tenant_id: Uuid,
    /// `YYYY-MM`.
    pub month: String,
    /// Bytes stored by the tenant's subtree (its own accounts and every
    /// descendant tenant's), as counted against its package.
    pub storage_bytes: i64,
    pub storage_peak_bytes: i64,
    pub messages_received: i64,
    pub messages_sent: i64,
    pub active_accounts: i64,
}

/// Seats of a tenant: its active accounts or its commitment, whichever is higher.
const OWN_SEATS: &str = "SELECT COUNT(*) FROM accounts WHERE tenant_id = $1 AND status = 'active'";

/// The `YYYY-MM` of a time.
pub fn month_of(at: DateTime<Utc>) -> String {
    at.format("%Y-%m").to_string()
}

/// Records a month's usage counters inside the caller's transaction.
pub(super) const COUNT_USAGE: &str = "INSERT INTO usage_monthly (tenant_id, month, storage_bytes, storage_peak_bytes, \
     messages_received, messages_sent, active_accounts) \
     SELECT id, $2, storage_used_bytes, storage_used_bytes, $3, $4, 0 FROM tenants WHERE id = $1 \
     ON CONFLICT (tenant_id, month) DO UPDATE SET storage_bytes = excluded.storage_bytes, \
       storage_peak_bytes = CASE WHEN excluded.storage_bytes > usage_monthly.storage_peak_bytes \
         THEN excluded.storage_bytes ELSE usage_monthly.storage_peak_bytes END, \
       messages_received = usage_monthly.messages_received + excluded.messages_received, \
       messages_sent = usage_monthly.messages_sent + excluded.messages_sent";

/// Queues a quota warning (deduplicated while one is waiting) inside the caller's transaction.
pub(super) const QUEUE_QUOTA_WARNING: &str = "INSERT INTO jobs (id, kind, payload, dedup_key, state, attempts, \
     max_attempts, run_at, created_at, updated_at) VALUES ($1, 'billing.quota_warning', $2, $3, 'queued', 0, 10, $4, $4, $4) \
     ON CONFLICT DO NOTHING";

/// The warning threshold `used` crossed going up from `before`, if any (95 beats 80).
pub fn quota_threshold_crossed(before: i64, used: i64, quota: i64) -> Option<u8> {
    if quota <= 0 {
        return None;
    }
    [95u8, 80].into_iter().find(|&p| {
        let line = quota as i128 * i128::from(p);
        (before as i128) * 100 < line && (used as i128) * 100 >= line
    })
}

impl TryFrom<BillingRow> for TenantBilling {
    type Error = Error;
    fn try_from(r: BillingRow) -> Result<TenantBilling> {
        Ok(TenantBilling {
            tenant_id: TenantId(r.tenant_id),
            plan_id: r.plan_id,
            committed_seats: r.committed_seats,
            paid_by: if r.paid_by == "parent" {
                PaidBy::Parent
            } else {
                PaidBy::Itself
            },
            stripe_customer_id: r.stripe_customer_id,
            stripe_subscription_id: r.stripe_subscription_id,
            stripe_item_id: r.stripe_item_id,
            subscription_status: r.subscription_status,
            current_period_end: r.current_period_end,
            seats_billed: r.seats_billed,
            public_funder: r.public_funder,
            past_due_since: None,
            updated_at: r.updated_at,
        })
    }
}

/// The packages above a tenant, nearest first: who each is and its limits.
const ANCESTOR_PACKAGES: &str = "WITH RECURSIVE chain(id, parent_id, depth) AS ( \
       SELECT id, parent_id, 0 FROM tenants WHERE id = $1 \
       UNION ALL SELECT t.id, t.parent_id, c.depth + 1 FROM tenants t JOIN chain c ON t.id = c.parent_id) \
     SELECT t.name, t.max_accounts, t.max_domains, t.storage_quota_bytes \
     FROM chain c JOIN tenants t ON t.id = c.id WHERE c.depth > 0 ORDER BY c.depth";

/// What a plan's limits do when they exceed a package above the tenant.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OverPackage {
    /// An administrator chose them (a plan or a commitment): refuse.
    Refuse,
    /// They follow from something else (accounts counted, a plan edited):
    /// lower them to the package, so that they never exceed it either.
    Cap,
}

/// Checks (or caps) limits a plan gives against every package above the
/// tenant; `ancestors` are `(name, package)`, nearest first.
fn within_packages(
    limits: Limits,
    ancestors: &[(String, Limits)],
    over: OverPackage,
) -> Result<Limits> {
    match over {
        OverPackage::Refuse => {
            let named: Vec<(String, &Limits)> = ancestors
                .iter()
                .map(|(name, package)| (format!("the tenant `{name}`"), package))
                .collect();
            limits.fits_packages(named.iter().map(|(who, package)| (who.as_str(), *package)))?;
            Ok(limits)
        }
        OverPackage::Cap => Ok(limits.capped_by(ancestors.iter().map(|(_, package)| package))),
    }
}

/// Reads a tenant's plan and own seats inside a transaction, and sets its
/// limits from them: quota = seats × storage per seat (a self-paying
/// reseller's seats include its wholesale children's), within every
/// package above it (`$over` says how).
macro_rules! apply_plan_limits {
    ($tx:expr, $tenant:expr, $over:expr) => {{
        let tenant: Uuid = $tenant;
        let plan: Option<(i64, i64, i64, i64, String)> = sqlx::query_as(
            "SELECT p.storage_per_seat_bytes, p.max_domains, p.max_accounts, b.committed_seats, b.paid_by \
             FROM tenant_billing b JOIN plans p ON p.id = b.plan_id WHERE b.tenant_id = $1",
        )
        .bind(tenant)
        .fetch_optional(&mut *$tx)
        .await?;
        if let Some((per_seat, max_domains, max_accounts, committed, paid_by)) = plan {
            let (own,): (i64,) = sqlx::query_as(OWN_SEATS).bind(tenant).fetch_one(&mut *$tx).await?;
            let mut seats = own.max(committed);
            if paid_by == "self" {
                let children: Vec<(Uuid, i64)> = sqlx::query_as(
                    "SELECT b.tenant_id, b.committed_seats FROM tenant_billing b JOIN tenants t ON t.id = b.tenant_id \
                     WHERE t.parent_id = $1 AND b.paid_by = 'parent' AND t.status <> 'closed'",
                )
                .bind(tenant)
                .fetch_all(&mut *$tx)
                .await?;
                for (child, committed) in children {
                    let (n,): (i64,) = sqlx::query_as(OWN_SEATS).bind(child).fetch_one(&mut *$tx).await?;
                    seats += n.max(committed);
                }
            }
            let wanted = Limits {
                max_accounts,
                max_domains,
                storage_quota_bytes: seats.max(1).saturating_mul(per_seat),
            };
            let ancestors: Vec<(String, i64, i64, i64)> =
                sqlx::query_as(ANCESTOR_PACKAGES).bind(tenant).fetch_all(&mut *$tx).await?;
            let ancestors: Vec<(String, Limits)> = ancestors
                .into_iter()
                .map(|(name, max_accounts, max_domains, storage_quota_bytes)| {
                    (name, Limits { max_accounts, max_domains, storage_quota_bytes })
                })
                .collect();
            let limits = within_packages(wanted, &ancestors, $over)?;
            sqlx::query(
                "UPDATE tenants SET storage_quota_bytes = $2, max_domains = $3, max_accounts = $4, updated_at = $5 WHERE id = $1",
            )
            .bind(tenant)
            .bind(limits.storage_quota_bytes)
            .bind(limits.max_domains)
            .bind(limits.max_accounts)
            .bind(Utc::now())
            .execute(&mut *$tx)
            .await?;
            Some(seats)
        } else {
            None
        }
    }};
}

fn plan_conflict(e: sqlx::Error, name: &str) -> Error {
    if unique_violation(&e) {
        Error::Conflict(format!("a plan named `{name}` exists"))
    } else {
        e.into()
    }
}

impl Store {
    pub async fn list_plans(&self) -> Result<Vec<Plan>> {
        let sql = join_sql("SELECT ", PLAN_COLUMNS, " FROM plans ORDER BY name");
        Ok(on_pool!(&self.pool, p => sqlx::query_as(sql).fetch_all(p).await)?)
    }

    pub async fn plan(&self, id: Uuid) -> Result<Option<Plan>> {
        let sql = join_sql("SELECT ", PLAN_COLUMNS, " FROM plans WHERE id = $1");
        Ok(on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id).fetch_optional(p).await)?)
    }

    /// Creates a plan (`base` none) or changes one; a change reapplies the
    /// limits of every tenant on the plan.
    pub async fn save_plan(&self, actor: &str, id: Option<Uuid>, input: PlanInput) -> Result<Plan> {
        let now = Utc::now();
        let base = match id {
            Some(id) => Some(self.plan(id).await?.ok_or(Error::NotFound("plan"))?),
            None => None,
        };
        let plan = input.complete(id.unwrap_or_else(Uuid::now_v7), now, base.as_ref())?;
        let upsert = join_sql(
            "INSERT INTO plans (",
            PLAN_COLUMNS,
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, currency = excluded.currency, \
             seat_price_cents = excluded.seat_price_cents, storage_per_seat_bytes = excluded.storage_per_seat_bytes, \
             max_domains = excluded.max_domains, max_accounts = excluded.max_accounts, \
             account_messages_per_hour = excluded.account_messages_per_hour, \
             account_recipients_per_day = excluded.account_recipients_per_day, \
             solidarity_percent = excluded.solidarity_percent, stripe_price_id = excluded.stripe_price_id, \
             updated_at = excluded.updated_at",
        );
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(upsert)
                .bind(plan.id).bind(&plan.name).bind(&plan.currency).bind(plan.seat_price_cents)
                .bind(plan.storage_per_seat_bytes).bind(plan.max_domains).bind(plan.max_accounts)
                .bind(plan.account_messages_per_hour).bind(plan.account_recipients_per_day)
                .bind(plan.solidarity_percent).bind(&plan.stripe_price_id).bind(plan.created_at).bind(plan.updated_at)
                .execute(&mut *tx).await.map_err(|e| plan_conflict(e, &plan.name))?;
            let tenants: Vec<(Uuid,)> = sqlx::query_as("SELECT tenant_id FROM tenant_billing WHERE plan_id = $1")
                .bind(plan.id).fetch_all(&mut *tx).await?;
            for (tenant,) in tenants {
                apply_plan_limits!(tx, tenant, OverPackage::Cap);
            }
            write_audit!(tx, Audit { actor, tenant_id: None, action: if base.is_some() { "plan.update" } else { "plan.create" }, object_type: "plan", object_id: plan.id.to_string(), detail: serde_json::json!({ "name": plan.name, "seat_price_cents": plan.seat_price_cents,
                    "currency": plan.currency, "solidarity_percent": plan.solidarity_percent }) });
            tx.commit().await?;
        });
        Ok(plan)
    }

    /// Deletes a plan no tenant is on.
    pub async fn delete_plan(&self, actor: &str, id: Uuid) -> Result<()> {
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let (users,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM tenant_billing WHERE plan_id = $1")
                .bind(id).fetch_one(&mut *tx).await?;
            if users > 0 {
                return Err(Error::Conflict(format!("{users} tenants are on this plan; move them to another first")));
            }
            let done = sqlx::query("DELETE FROM plans WHERE id = $1").bind(id).execute(&mut *tx).await?;
            if done.rows_affected() == 0 {
                return Err(Error::NotFound("plan"));
            }
            write_audit!(tx, Audit { actor, tenant_id: None, action: "plan.delete", object_type: "plan", object_id: id.to_string(), detail: serde_json::json!({}) });
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn tenant_billing(&self, tenant: TenantId) -> Result<Option<TenantBilling>> {
        let sql = join_sql(
            "SELECT ",
            BILLING_COLUMNS,
            " FROM tenant_billing WHERE tenant_id = $1",
        );
        let row: Option<BillingRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(tenant.0).fetch_optional(p).await)?;
        let Some(mut billing) = row.map(TenantBilling::try_from).transpose()? else {
            return Ok(None);
        };
        let overdue = "SELECT MIN(failed_at) FROM invoices WHERE tenant_id = $1 AND status = 'open' AND failed_at IS NOT NULL";
        let (since,): (Option<DateTime<Utc>>,) =
            on_pool!(&self.pool, p => sqlx::query_as(overdue).bind(tenant.0).fetch_one(p).await)?;
        billing.past_due_since = since;
        Ok(Some(billing))
    }

    /// Puts a tenant on a plan (or changes its commitment and who pays), and
    /// sets its limits from the plan; returns its seats.
    pub async fn assign_plan(
        &self,
        actor: &str,
        tenant: TenantId,
        plan: Uuid,
        committed_seats: i64,
        paid_by: PaidBy,
        public_funder: bool,
    ) -> Result<i64> {
        if committed_seats < 0 {
            return Err(Error::Invalid(
                "`committed_seats` cannot be negative".into(),
            ));
        }
        let chain = self.chain(tenant).await?;
        let root = chain
            .last()
            .map(|t| t.id)
            .ok_or(Error::NotFound("tenant"))?;
        if paid_by == PaidBy::Parent
            && chain
                .get(1)
                .is_none_or(|p| p.kind != crate::model::TenantKind::Reseller)
        {
            return Err(Error::Invalid(
                "only a reseller's child can be paid for by its parent (`paid_by: parent`)".into(),
            ));
        }
        self.plan(plan)
            .await?
            .ok_or_else(|| Error::Invalid(format!("no plan {plan}")))?;
        let upsert = "INSERT INTO tenant_billing (tenant_id, plan_id, committed_seats, paid_by, public_funder, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id) DO UPDATE SET plan_id = excluded.plan_id, \
             committed_seats = excluded.committed_seats, paid_by = excluded.paid_by, \
             public_funder = excluded.public_funder, updated_at = excluded.updated_at";
        let parent = chain.get(1).map(|t| t.id.0);
        let seats = on_pool!(&self.pool, p => {
            let mut tx = p.begin_locked(root.0).await?;
            sqlx::query(upsert).bind(tenant.0).bind(plan).bind(committed_seats).bind(paid_by.as_str())
                .bind(public_funder).bind(Utc::now()).execute(&mut *tx).await?;
            // The reseller's own limits first (its seats may include this
            // child's), then the child's within them.
            if let Some(parent) = parent {
                apply_plan_limits!(tx, parent, OverPackage::Cap);
            }
            let seats = apply_plan_limits!(tx, tenant.0, OverPackage::Refuse).unwrap_or(0);
            write_audit!(tx, Audit { actor, tenant_id: Some(tenant.0), action: "billing.plan", object_type: "tenant", object_id: tenant.to_string(), detail: serde_json::json!({ "plan": plan, "committed_seats": committed_seats, "paid_by": paid_by }) });
            tx.commit().await?;
            seats
        });
        Ok(seats)
    }

    /// Recomputes a tenant's seats and limits after its accounts changed
    /// (and its reseller's, for a wholesale child); returns the tenant whose
    /// subscription carries the seats and its seat count, if it has a plan.
    pub async fn refresh_seats(&self, tenant: TenantId) -> Result<Option<(TenantId, i64)>> {
        let Some(billing) = self.tenant_billing(tenant).await? else {
            return Ok(None);
        };
        let chain = self.chain(tenant).await?;
        let root = chain
            .last()
            .map(|t| t.id)
            .ok_or(Error::NotFound("tenant"))?;
        let payer = match billing.paid_by {
            PaidBy::Parent => chain.get(1).map(|t| t.id).unwrap_or(tenant),
            PaidBy::Itself => tenant,
        };
        let seats = on_pool!(&self.pool, p => {
            let mut tx = p.begin_locked(root.0).await?;
            let payer_seats = if payer == tenant { None } else { apply_plan_limits!(tx, payer.0, OverPackage::Cap) };
            let own = apply_plan_limits!(tx, tenant.0, OverPackage::Cap);
            let payer_seats = if payer == tenant { own } else { payer_seats };
            tx.commit().await?;
            payer_seats
        });
        Ok(seats.map(|s| (payer, s)))
    }

    /// The plan a tenant is on, if any.
    pub async fn tenant_plan(&self, tenant: TenantId) -> Result<Option<Plan>> {
        let sql = format!(
            "SELECT {} FROM plans p JOIN tenant_billing b ON b.plan_id = p.id WHERE b.tenant_id = $1",
            PLAN_COLUMNS
                .split(", ")
                .map(|c| format!("p.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(
            on_pool!(&self.pool, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(tenant.0).fetch_optional(p).await)?,
        )
    }

    /// Active accounts of a tenant (its own, not its children's).
    pub async fn own_seats(&self, tenant: TenantId) -> Result<i64> {
        let (n,): (i64,) =
            on_pool!(&self.pool, p => sqlx::query_as(OWN_SEATS).bind(tenant.0).fetch_one(p).await)?;
        Ok(n)
    }

    /// Remembers the Stripe customer made for a tenant.
    pub async fn set_stripe_customer(&self, tenant: TenantId, customer: &str) -> Result<()> {
        let sql = "UPDATE tenant_billing SET stripe_customer_id = $2, updated_at = $3 WHERE tenant_id = $1";
        on_pool!(&self.pool, p => sqlx::query(sql).bind(tenant.0).bind(customer).bind(Utc::now()).execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// Records the quantity Stripe now bills.
    pub async fn set_seats_billed(&self, tenant: TenantId, seats: i64) -> Result<()> {
        let sql =
            "UPDATE tenant_billing SET seats_billed = $2, updated_at = $3 WHERE tenant_id = $1";
        on_pool!(&self.pool, p => sqlx::query(sql).bind(tenant.0).bind(seats).bind(Utc::now()).execute(p).await.map(|_| ()))?;
        Ok(())
    }

    pub async fn invoices(&self, tenant: TenantId, limit: i64) -> Result<Vec<Invoice>> {
        let sql = "SELECT id, number, status, currency, amount_due, amount_paid, amount_refunded, period_start, period_end, \
             hosted_url, failed_at, paid_at FROM invoices WHERE tenant_id = $1 ORDER BY created DESC, id DESC LIMIT $2";
        Ok(
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(tenant.0).bind(limit).fetch_all(p).await)?,
        )
    }

    /// Whether a tenant's sending is suspended for non-payment: past due
    /// (itself, or the reseller that pays for it) for longer than `grace`.
    pub async fn sending_suspended(
        &self,
        tenant: TenantId,
        grace: chrono::Duration,
    ) -> Result<Option<DateTime<Utc>>> {
        let Some(billing) = self.tenant_billing(tenant).await? else {
            return Ok(None);
        };
        let mut since = billing.past_due_since;
        if billing.paid_by == PaidBy::Parent
            && let Some(parent) = self.tenant(tenant).await?.and_then(|t| t.parent_id)
            && let Some(parent_billing) = self.tenant_billing(parent).await?
        {
            since = match (since, parent_billing.past_due_since) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(since.filter(|s| *s + grace <= Utc::now()))
    }

    /// Applies one verified Stripe event, once.
    pub async fn apply_stripe_event(
        &self,
        event: &StripeEvent,
        rates: &PoolRates,
    ) -> Result<Applied> {
        let record = "INSERT INTO stripe_events (id, type, created, tenant_id, received_at) VALUES ($1, $2, $3, NULL, $4) \
             ON CONFLICT (id) DO NOTHING";
        let by_customer = "SELECT tenant_id FROM tenant_billing WHERE stripe_customer_id = $1";
        let now = Utc::now();
        let created_at = DateTime::from_timestamp(event.created, 0).unwrap_or(now);
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let fresh = sqlx::query(record).bind(&event.id).bind(&event.kind).bind(event.created).bind(now)
                .execute(&mut *tx).await?;
            if fresh.rows_affected() == 0 {
                return Ok(Applied { replayed: true, ..Applied::default() });
            }
            let mut applied = Applied::default();
            let customer = match &event.event {
                BillingEvent::CheckoutCompleted { customer, .. }
                | BillingEvent::Subscription { customer, .. }
                | BillingEvent::Refunded { customer, .. } => Some(customer.clone()),
                BillingEvent::InvoicePaid(i) | BillingEvent::InvoiceFailed(i) => Some(i.customer.clone()),
                BillingEvent::Ignored => None,
            };
            let mut tenant: Option<Uuid> = match &customer {
                Some(c) => sqlx::query_as::<_, (Uuid,)>(by_customer).bind(c).fetch_optional(&mut *tx).await?.map(|(t,)| t),
                None => None,
            };
            match &event.event {
                BillingEvent::Ignored => {}
                BillingEvent::CheckoutCompleted { tenant: named, customer, subscription } => {
                    tenant = tenant.or(named.map(|t| t.0));
                    if let Some(t) = tenant {
                        sqlx::query("UPDATE tenant_billing SET stripe_customer_id = $2, \
                             stripe_subscription_id = COALESCE(stripe_subscription_id, $3), updated_at = $4 WHERE tenant_id = $1")
                            .bind(t).bind(customer).bind(subscription).bind(now).execute(&mut *tx).await?;
                    }
                }
                BillingEvent::Subscription { id, status, item_id, quantity, current_period_end, rank, .. } => {
                    if let Some(t) = tenant {
                        let update = "UPDATE tenant_billing SET stripe_subscription_id = $2, subscription_status = $3, \
                             stripe_item_id = COALESCE($4, stripe_item_id), seats_billed = COALESCE($5, seats_billed), \
                             current_period_end = $6, subscription_at = $7, subscription_rank = $8, updated_at = $9 \
                             WHERE tenant_id = $1 AND (subscription_at < $7 OR (subscription_at = $7 AND subscription_rank <= $8))";
                        let done = sqlx::query(update).bind(t).bind(id).bind(status).bind(item_id).bind(quantity)
                            .bind(current_period_end).bind(event.created).bind(*rank).bind(now).execute(&mut *tx).await?;
                        applied.stale = done.rows_affected() == 0;
                    }
                }
                BillingEvent::InvoicePaid(invoice) | BillingEvent::InvoiceFailed(invoice) => {
                    if let Some(t) = tenant {
                        let paid = matches!(event.event, BillingEvent::InvoicePaid(_));
                        let insert = "INSERT INTO invoices (id, tenant_id, number, status, currency, amount_due, amount_paid, \
                             period_start, period_end, hosted_url, failed_at, paid_at, created) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                             ON CONFLICT (id) DO UPDATE SET \
                               status = CASE WHEN invoices.status = 'paid' THEN 'paid' ELSE excluded.status END, \
                               amount_paid = CASE WHEN excluded.amount_paid > invoices.amount_paid \
                                 THEN excluded.amount_paid ELSE invoices.amount_paid END, \
                               failed_at = COALESCE(invoices.failed_at, excluded.failed_at), \
                               paid_at = COALESCE(invoices.paid_at, excluded.paid_at), \
                               number = COALESCE(excluded.number, invoices.number), \
                               hosted_url = COALESCE(excluded.hosted_url, invoices.hosted_url)";
                        sqlx::query(insert).bind(&invoice.id).bind(t).bind(&invoice.number)
                            .bind(if paid { "paid" } else { "open" }).bind(&invoice.currency).bind(invoice.amount_due)
                            .bind(if paid { invoice.amount_paid } else { 0 }).bind(invoice.period_start).bind(invoice.period_end)
                            .bind(&invoice.hosted_url).bind((!paid).then_some(created_at)).bind(paid.then_some(created_at))
                            .bind(event.created).execute(&mut *tx).await?;
                        if paid && invoice.amount_paid > 0 {
                            let share: Option<(i32,)> = sqlx::query_as(
                                "SELECT p.solidarity_percent FROM tenant_billing b JOIN plans p ON p.id = b.plan_id WHERE b.tenant_id = $1")
                                .bind(t).fetch_optional(&mut *tx).await?;
                            let percent = share.map(|(s,)| i64::from(s)).unwrap_or(0);
                            let cents = invoice.amount_paid * percent / 100;
                            let milli = match rates.free_account_month_cents.get(&invoice.currency) {
                                Some(cost) if *cost > 0 => cents * MILLI / cost,
                                _ => {
                                    tracing::warn!(currency = %invoice.currency, "no free-account cost in this currency: the solidarity share is not counted");
                                    0
                                }
                            };
                            if milli > 0 {
                                let credit = "INSERT INTO pool_ledger (at, kind, reference, tenant_id, milli_months, amount_cents, currency) \
                                     VALUES ($1, 'credit', $2, $3, $4, $5, $6) ON CONFLICT (kind, reference) DO NOTHING";
                                let done = sqlx::query(credit).bind(now).bind(&invoice.id).bind(t).bind(milli).bind(cents)
                                    .bind(&invoice.currency).execute(&mut *tx).await?;
                                if done.rows_affected() == 1 {
                                    applied.pool_milli_months = milli;
                                }
                            }
                        }
                    }
                }
                BillingEvent::Refunded { invoice, amount_refunded, .. } => {
                    sqlx::query("UPDATE invoices SET amount_refunded = $2 WHERE id = $1 AND amount_refunded < $2")
                        .bind(invoice).bind(*amount_refunded).execute(&mut *tx).await?;
                    let paid: Option<(i64,)> = sqlx::query_as("SELECT amount_paid FROM invoices WHERE id = $1")
                        .bind(invoice).fetch_optional(&mut *tx).await?;
                    let credited: Option<(i64,)> = sqlx::query_as(
                        "SELECT milli_months FROM pool_ledger WHERE kind = 'credit' AND reference = $1")
                        .bind(invoice).fetch_optional(&mut *tx).await?;
                    let (reversed,): (Option<i64>,) = sqlx::query_as(
                        "SELECT CAST(SUM(milli_months) AS BIGINT) FROM pool_ledger WHERE kind = 'reversal' AND reference LIKE $1")
                        .bind(format!("{invoice}:%")).fetch_one(&mut *tx).await?;
                    if let (Some((paid,)), Some((credited,))) = (paid, credited)
                        && paid > 0
                    {
                        let refunded = (*amount_refunded).min(paid);
                        let target = -(credited * refunded / paid);
                        let delta = target - reversed.unwrap_or(0);
                        if delta < 0 {
                            let reversal = "INSERT INTO pool_ledger (at, kind, reference, tenant_id, milli_months, amount_cents, currency) \
                                 VALUES ($1, 'reversal', $2, $3, $4, $5, NULL) ON CONFLICT (kind, reference) DO NOTHING";
                            sqlx::query(reversal).bind(now).bind(format!("{invoice}:{amount_refunded}")).bind(tenant)
                                .bind(delta).bind(refunded).execute(&mut *tx).await?;
                            applied.pool_milli_months = delta;
                        }
                    }
                }
            }
            sqlx::query("UPDATE stripe_events SET tenant_id = $2 WHERE id = $1").bind(&event.id).bind(tenant)
                .execute(&mut *tx).await?;
            if let Some(t) = tenant {
                write_audit!(tx, Audit { actor: "stripe", tenant_id: Some(t), action: "billing.event", object_type: "stripe_event", object_id: event.id.clone(), detail: serde_json::json!({ "type": event.kind, "stale": applied.stale }) });
            }
            tx.commit().await?;
            applied.tenant = tenant.map(TenantId);
            Ok(applied)
        })
    }

    /// The pool: balance, capacity over `horizon_months`, use and waiting line.
    pub async fn pool_summary(&self, horizon_months: i64) -> Result<PoolSummary> {
        let balance = "SELECT CAST(COALESCE(SUM(milli_months), 0) AS BIGINT) FROM pool_ledger";
        let active = "SELECT COUNT(*) FROM accounts WHERE free = TRUE AND status = 'active'";
        let waiting = "SELECT COUNT(*) FROM waiting_line WHERE admitted_at IS NULL";
        let funders = "SELECT COUNT(DISTINCT tenant_id) FROM pool_ledger WHERE kind = 'credit'";
        let named = "SELECT t.name FROM tenants t JOIN tenant_billing b ON b.tenant_id = t.id \
             WHERE b.public_funder = TRUE AND t.id IN (SELECT tenant_id FROM pool_ledger WHERE kind = 'credit') ORDER BY t.name";
        let (balance, active, waiting, funders, named) = on_pool!(&self.pool, p => {
            let (b,): (i64,) = sqlx::query_as(balance).fetch_one(p).await?;
            let (a,): (i64,) = sqlx::query_as(active).fetch_one(p).await?;
            let (w,): (i64,) = sqlx::query_as(waiting).fetch_one(p).await?;
            let (f,): (i64,) = sqlx::query_as(funders).fetch_one(p).await?;
            let n: Vec<(String,)> = sqlx::query_as(named).fetch_all(p).await?;
            (b, a, w, f, n)
        });
        let horizon = horizon_months.max(1);
        Ok(PoolSummary {
            funded_account_months: balance as f64 / MILLI as f64,
            funded_capacity: (balance / (MILLI * horizon)).max(0),
            horizon_months: horizon,
            active_free_accounts: active,
            waiting,
            funding_tenants: funders,
            named_funders: named.into_iter().map(|(n,)| n).collect(),
        })
    }

    /// The pool per calendar month for the `months` months that end with
    /// the one of `today`, oldest first: what came in and went out, the
    /// balance at each month's end and the capacity it gave over `horizon_months`.
    pub async fn pool_history(
        &self,
        horizon_months: i64,
        today: NaiveDate,
        months: u32,
    ) -> Result<PoolHistory> {
        let months = months.max(1);
        let this_month = NaiveDate::from_ymd_opt(today.year(), today.month(), 1)
            .ok_or_else(|| Error::Internal(format!("no first day in the month of {today}")))?;
        let first = this_month
            .checked_sub_months(Months::new(months - 1))
            .ok_or_else(|| {
                Error::Invalid(format!("{months} months before {today} is out of range"))
            })?;
        let next = this_month
            .checked_add_months(Months::new(1))
            .ok_or_else(|| Error::Invalid(format!("the month after {today} is out of range")))?;
        let from = first.and_time(NaiveTime::MIN).and_utc();
        let until = next.and_time(NaiveTime::MIN).and_utc();
        let opening =
            "SELECT CAST(COALESCE(SUM(milli_months), 0) AS BIGINT) FROM pool_ledger WHERE at < $1";
        // Timestamps are RFC 3339 text in UTC on SQLite, TIMESTAMPTZ on PostgreSQL.
        let sql = |month: &str| sqlx::AssertSqlSafe(POOL_MONTHS.replace("MONTH_OF_AT", month));
        let (opening, rows): (i64, Vec<(String, i64, i64, i64)>) = match &self.pool {
            Pool::Sqlite(p) => {
                let (o,): (i64,) = sqlx::query_as(opening).bind(from).fetch_one(p).await?;
                (
                    o,
                    sqlx::query_as(sql("substr(at, 1, 7)"))
                        .bind(from)
                        .bind(until)
                        .fetch_all(p)
                        .await?,
                )
            }
            Pool::Postgres(p) => {
                let (o,): (i64,) = sqlx::query_as(opening).bind(from).fetch_one(p).await?;
                let month = "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM')";
                (
                    o,
                    sqlx::query_as(sql(month))
                        .bind(from)
                        .bind(until)
                        .fetch_all(p)
                        .await?,
                )
            }
        };
        let mut by_month: HashMap<String, (i64, i64, i64)> = rows
            .into_iter()
            .map(|(month, credited, debited, accounts)| (month, (credited, debited, accounts)))
            .collect();
        let horizon = horizon_months.max(1);
        let mut balance = opening;
        let mut out = Vec::with_capacity(months as usize);
        for i in 0..months {
            let month = first
                .checked_add_months(Months::new(i))
                .ok_or_else(|| Error::Internal("a month inside the window is out of range".into()))?
                .format("%Y-%m")
                .to_string();
            let (credited, debited, free_accounts) = by_month.remove(&month).unwrap_or_default();
            balance += credited - debited;
            out.push(PoolMonth {
                month,
                credited: credited as f64 / MILLI as f64,
                debited: debited as f64 / MILLI as f64,
                balance: balance as f64 / MILLI as f64,
                capacity: (balance / (MILLI * horizon)).max(0),
                free_accounts,
            });
        }
        Ok(PoolHistory {
            horizon_months: horizon,
            months: out,
        })
    }

    /// Debits the pool one month per active free account for `month`
    /// (`YYYY-MM`); idempotent. Returns the number of new debits.
    pub async fn debit_pool(&self, month: &str) -> Result<u64> {
        let accounts = "SELECT id, tenant_id FROM accounts WHERE free = TRUE AND status = 'active'";
        let debit = "INSERT INTO pool_ledger (at, kind, reference, tenant_id, milli_months, amount_cents, currency) \
             VALUES ($1, 'debit', $2, $3, $4, 0, NULL) ON CONFLICT (kind, reference) DO NOTHING";
        let now = Utc::now();
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(accounts).fetch_all(&mut *tx).await?;
            let mut n = 0;
            for (account, tenant) in rows {
                n += sqlx::query(debit).bind(now).bind(format!("{account}:{month}")).bind(tenant).bind(-MILLI)
                    .execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            Ok(n)
        })
    }

    /// Records every open tenant's storage and active accounts for `month`
    /// (peaks kept), so past months keep what they were. Run daily.
    pub async fn snapshot_usage(&self, month: &str) -> Result<u64> {
        let sql = "INSERT INTO usage_monthly (tenant_id, month, storage_bytes, storage_peak_bytes, messages_received, \
             messages_sent, active_accounts) \
             SELECT t.id, $1, t.storage_used_bytes, t.storage_used_bytes, 0, 0, \
               (SELECT COUNT(*) FROM accounts a WHERE a.tenant_id = t.id AND a.status = 'active') \
             FROM tenants t WHERE t.status <> 'closed' \
             ON CONFLICT (tenant_id, month) DO UPDATE SET storage_bytes = excluded.storage_bytes, \
               storage_peak_bytes = CASE WHEN excluded.storage_bytes > usage_monthly.storage_peak_bytes \
                 THEN excluded.storage_bytes ELSE usage_monthly.storage_peak_bytes END, \
               active_accounts = CASE WHEN excluded.active_accounts > usage_monthly.active_accounts \
                 THEN excluded.active_accounts ELSE usage_monthly.active_accounts END";
        let done = on_pool!(&self.pool, p => sqlx::query(sql).bind(month).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done)
    }

    /// Records a challenge as spent; false if it already was.
    pub async fn spend_challenge(&self, nonce: &str, expires_at: DateTime<Utc>) -> Result<bool> {
        let purge = "DELETE FROM spent_challenges WHERE expires_at < $1";
        let insert = "INSERT INTO spent_challenges (nonce, expires_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING";
        on_pool!(&self.pool, p => {
            sqlx::query(purge).bind(Utc::now()).execute(p).await?;
            let done = sqlx::query(insert).bind(nonce).bind(expires_at).execute(p).await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Puts a prepared signup at the end of the waiting line.
    pub async fn join_waiting_line(&self, signup: &NewSignup) -> Result<Uuid> {
        let id = Uuid::now_v7();
        let taken = "SELECT COUNT(*) FROM accounts WHERE address = $1";
        let insert = "INSERT INTO waiting_line (id, token_hash, address, password_hash, fingerprint, public_key, secret_key, created_at, recovery_address) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        on_pool!(&self.pool, p => {
            let (n,): (i64,) = sqlx::query_as(taken).bind(signup.address.to_string()).fetch_one(p).await?;
            if n > 0 {
                return Err(Error::Conflict(format!("the address `{}` is taken", signup.address)));
            }
            sqlx::query(insert).bind(id).bind(&signup.token_hash).bind(signup.address.to_string()).bind(&signup.password_hash)
                .bind(&signup.fingerprint).bind(&signup.public_key).bind(&signup.secret_key).bind(Utc::now())
                .bind(signup.recovery_address.as_ref().map(EmailAddress::to_string))
                .execute(p).await.map_err(|e| if unique_violation(&e) {
                    Error::Conflict(format!("the address `{}` is taken", signup.address))
                } else { e.into() })?;
        });
        Ok(id)
    }

    /// Where the signup with this token stands.
    pub async fn signup_status(&self, token_hash: &str) -> Result<Option<SignupStatus>> {
        let row = "SELECT id, address, created_at, admitted_at, account_id FROM waiting_line WHERE token_hash = $1";
        let ahead = "SELECT COUNT(*) FROM waiting_line WHERE admitted_at IS NULL AND (created_at < $1 OR (created_at = $1 AND id <= $2))";
        on_pool!(&self.pool, p => {
            let found: Option<(Uuid, String, DateTime<Utc>, Option<DateTime<Utc>>, Option<Uuid>)> =
                sqlx::query_as(row).bind(token_hash).fetch_optional(p).await?;
            let Some((id, address, joined_at, admitted_at, account_id)) = found else { return Ok(None) };
            let position = if admitted_at.is_none() {
                let (n,): (i64,) = sqlx::query_as(ahead).bind(joined_at).bind(id).fetch_one(p).await?;
                Some(n)
            } else {
                None
            };
            Ok(Some(SignupStatus {
                address,
                status: if admitted_at.is_some() { "admitted" } else { "waiting" }.into(),
                position,
                account_id,
                joined_at,
                admitted_at,
            }))
        })
    }

    /// Opens accounts for the waiting line, in order, while the pool funds
    /// places; returns (waiting line id, account) for each admission. Free
    /// accounts already open are never closed for lack of funds.
    pub async fn admit_waiting(&self, public: &PublicInstance) -> Result<Vec<(Uuid, AccountId)>> {
        let chain = self.chain(public.tenant).await?;
        let root = chain
            .last()
            .map(|t| t.id)
            .ok_or(Error::NotFound("tenant"))?;
        let balance = "SELECT CAST(COALESCE(SUM(milli_months), 0) AS BIGINT) FROM pool_ledger";
        let active = "SELECT COUNT(*) FROM accounts WHERE free = TRUE AND status = 'active'";
        let next = "SELECT id, address, password_hash, fingerprint, public_key, secret_key, token_hash, recovery_address FROM waiting_line \
             WHERE admitted_at IS NULL ORDER BY created_at, id LIMIT $1";
        // A signup without a password opens with its activation link, from now.
        let activation = "INSERT INTO activations (account_id, token_hash, expires_at, created_at) VALUES ($1, $2, $3, $4)";
        let insert = format!(
            "INSERT INTO accounts ({ACCOUNT_COLUMNS}, storage_quota_bytes, free) \
             VALUES ($1, $2, $3, $4, '', 'user', 'active', $5, $6, $7, $8, $9, $10, $10, $11, TRUE)"
        );
        let admitted = "UPDATE waiting_line SET admitted_at = $2, account_id = $3 WHERE id = $1";
        let recovery = "UPDATE accounts SET recovery_address = $2 WHERE id = $1";
        let grow =
            "UPDATE tenants SET storage_quota_bytes = storage_quota_bytes + $2 WHERE id = $1";
        let horizon = public.horizon_months.max(1);
        on_pool!(&self.pool, p => {
            let mut tx = p.begin_locked(root.0).await?;
            let (b,): (i64,) = sqlx::query_as(balance).fetch_one(&mut *tx).await?;
            let (a,): (i64,) = sqlx::query_as(active).fetch_one(&mut *tx).await?;
            let room = (b / (MILLI * horizon)).max(0) - a;
            let mut out = Vec::new();
            if room > 0 {
                let rows: Vec<(Uuid, String, String, String, String, String, String, Option<String>)> =
                    sqlx::query_as(next).bind(room).fetch_all(&mut *tx).await?;
                let now = Utc::now();
                for (waiting, address, hash, fingerprint, public_key, secret_key, token_hash, recovery_address) in rows {
                    let account = AccountId::new();
                    sqlx::query(sqlx::AssertSqlSafe(insert.clone())).bind(account.0).bind(public.tenant.0).bind(public.domain.0).bind(&address)
                        .bind(public.level.as_str()).bind(&hash).bind(&fingerprint).bind(&public_key).bind(&secret_key)
                        .bind(now).bind(public.free_quota_bytes).execute(&mut *tx).await?;
                    sqlx::query(admitted).bind(waiting).bind(now).bind(account.0).execute(&mut *tx).await?;
                    if let Some(recovery_address) = recovery_address {
                        sqlx::query(recovery).bind(account.0).bind(recovery_address).execute(&mut *tx).await?;
                    }
                    if hash.is_empty() {
                        sqlx::query(activation).bind(account.0).bind(&token_hash)
                            .bind(now + chrono::Duration::days(super::ACTIVATION_DAYS)).bind(now)
                            .execute(&mut *tx).await?;
                    }
                    sqlx::query(grow).bind(public.tenant.0).bind(public.free_quota_bytes).execute(&mut *tx).await?;
                    write_audit!(tx, Audit { actor: "pool", tenant_id: Some(public.tenant.0), action: "account.create", object_type: "account", object_id: account.to_string(), detail: serde_json::json!({ "address": address, "free": true, "waited_since": waiting }) });
                    out.push((waiting, account));
                }
            }
            tx.commit().await?;
            Ok(out)
        })
    }

    /// Monthly usage of one tenant, newest first.
    pub async fn usage_history(&self, tenant: TenantId, months: i64) -> Result<Vec<UsageMonth>> {
        let sql = "SELECT tenant_id, month, storage_bytes, storage_peak_bytes, messages_received, messages_sent, active_accounts \
             FROM usage_monthly WHERE tenant_id = $1 ORDER BY month DESC LIMIT $2";
        let mut rows: Vec<UsageMonth> = on_pool!(&self.pool, p => sqlx::query_as(sql).bind(tenant.0).bind(months).fetch_all(p).await)?;
        // The current month's active accounts and storage are read live.
        let month = month_of(Utc::now());
        let (active,): (i64,) =
            on_pool!(&self.pool, p => sqlx::query_as(OWN_SEATS).bind(tenant.0).fetch_one(p).await)?;
        let (used, _) = self.storage(tenant).await?;
        match rows.first_mut() {
            Some(row) if row.month == month => {
                row.active_accounts = active;
                row.storage_bytes = used;
            }
            _ => rows.insert(
                0,
                UsageMonth {
                    tenant_id: tenant.0,
                    month,
                    storage_bytes: used,
                    storage_peak_bytes: used,
                    messages_received: 0,
                    messages_sent: 0,
                    active_accounts: active,
                },
            ),
        }
        Ok(rows)
    }

    /// Sets (or with `None` removes) an account's own storage cap.
    pub async fn set_account_quota(
        &self,
        actor: &str,
        account: AccountId,
        cap: Option<i64>,
    ) -> Result<()> {
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let done = sqlx::query("UPDATE accounts SET storage_quota_bytes = $2 WHERE id = $1").bind(account.0).bind(cap)
                .execute(&mut *tx).await?;
            if done.rows_affected() == 0 {
                return Err(Error::NotFound("account"));
            }
            let (tenant,): (Uuid,) = sqlx::query_as("SELECT tenant_id FROM accounts WHERE id = $1").bind(account.0)
                .fetch_one(&mut *tx).await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(tenant),
                action: "account.quota",
                object_type: "account",
                object_id: account.to_string(),
                detail: serde_json::json!({ "storage_quota_bytes": cap }),
            });
            tx.commit().await?;
        });
        Ok(())
    }

    /// Bytes an account stores and its own cap, if any.
    pub async fn account_storage(&self, account: AccountId) -> Result<(i64, Option<i64>)> {
        let sql = "SELECT storage_used_bytes, storage_quota_bytes FROM accounts WHERE id = $1";
        let row: Option<(i64, Option<i64>)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(account.0).fetch_optional(p).await)?;
        row.ok_or(Error::NotFound("account"))
    }

    /// Active accounts with the admin role in a tenant: who gets its warnings.
    pub async fn tenant_admins(&self, tenant: TenantId) -> Result<Vec<String>> {
        let sql = "SELECT address FROM accounts WHERE tenant_id = $1 AND role = 'admin' AND status = 'active' ORDER BY address";
        let rows: Vec<(String,)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(tenant.0).fetch_all(p).await)?;
        Ok(rows.into_iter().map(|(a,)| a).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::quota_threshold_crossed;

    #[test]
    fn thresholds_fire_once_going_up() {
        assert_eq!(quota_threshold_crossed(0, 79, 100), None);
        assert_eq!(quota_threshold_crossed(79, 80, 100), Some(80));
        assert_eq!(
            quota_threshold_crossed(80, 90, 100),
            None,
            "already past 80"
        );
        assert_eq!(quota_threshold_crossed(90, 95, 100), Some(95));
        assert_eq!(
            quota_threshold_crossed(10, 99, 100),
            Some(95),
            "the highest line crossed"
        );
        assert_eq!(quota_threshold_crossed(96, 99, 100), None);
        assert_eq!(quota_threshold_crossed(0, 10, 0), None);
    }
}
