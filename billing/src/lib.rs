//! Billing and the funding pool.
//!
//! Enterprise and reseller tenants pay through Stripe (or, with the `none`
//! provider, the operator assigns plans by hand); a share of every paid
//! invoice funds free accounts on the public instance. This crate holds the
//! Stripe calls ([`stripe_api`]), the webhook check ([`webhook`]), the public
//! signup's defences ([`signup`]) and [`Billing`], which ties them to the
//! store. The rules (what an event changes, how the pool counts) live in
//! `tenants::store::billing`, next to the data.

pub mod signup;
pub mod stripe_api;
pub mod webhook;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tenants::store::{Applied, NewSignup, PoolRates, PublicInstance, TenantBilling};
use tenants::{AccountId, DomainName, EmailAddress, Level, Store, TenantId, TenantKind};

pub use signup::{Challenge, Challenges, SignupGuard};
pub use stripe_api::StripeApi;
pub use webhook::WebhookError;

/// Job names of billing's background work.
pub const SEATS_JOB: &str = "billing.seats";
pub const QUOTA_WARNING_JOB: &str = "billing.quota_warning";
pub const ADMIT_JOB: &str = "pool.admit";
pub const DEBIT_JOB: &str = "pool.debit";
/// The worker's job that sends one templated system mail.
pub const SYSTEM_MAIL_JOB: &str = "mail.system";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// No payment provider: the operator assigns plans.
    #[default]
    None,
    Stripe,
}

/// `[billing]` in the configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BillingConfig {
    pub provider: Provider,
    /// Stripe's API (a stand-in on loopback in tests).
    pub stripe_api_base: String,
    #[serde(skip_serializing)]
    pub stripe_secret_key: Option<SecretString>,
    /// Webhook endpoint secrets (`whsec_…`); two while one is being rolled.
    #[serde(skip_serializing)]
    pub stripe_webhook_secrets: Vec<SecretString>,
    /// How far a webhook's signed timestamp may be from now.
    pub webhook_tolerance_seconds: i64,
    /// Where Stripe's Checkout sends the admin back.
    pub checkout_success_url: String,
    pub checkout_cancel_url: String,
    /// Days a tenant may stay past due before its sending is suspended.
    pub grace_days: i64,
    /// Monthly cost of one free account (storage included), in the smallest unit, per currency.
    pub free_account_month_cents: HashMap<String, i64>,
    /// Months of funding a free place must have before it opens.
    pub pool_horizon_months: i64,
    /// Storage of each free account.
    pub free_quota_bytes: i64,
    /// The public instance's domain (a domain of a `public` tenant); unset: no public signup.
    pub public_domain: Option<String>,
    /// The level free accounts start at.
    pub public_level: Level,
    /// Leading zero bits of the signup proof of work.
    pub signup_difficulty: u8,
    pub signups_per_ip_per_hour: usize,
    pub signups_per_prefix_per_hour: usize,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            provider: Provider::None,
            stripe_api_base: "https://api.stripe.com/".into(),
            stripe_secret_key: None,
            stripe_webhook_secrets: Vec::new(),
            webhook_tolerance_seconds: 300,
            checkout_success_url: "http://localhost:8080/admin/billing?checkout=done".into(),
            checkout_cancel_url: "http://localhost:8080/admin/billing?checkout=cancelled".into(),
            grace_days: 14,
            free_account_month_cents: HashMap::from([
                ("eur".to_owned(), 100),
                ("usd".to_owned(), 110),
                ("chf".to_owned(), 100),
            ]),
            pool_horizon_months: 12,
            free_quota_bytes: 1 << 30,
            public_domain: None,
            public_level: Level::Sealed,
            signup_difficulty: 18,
            signups_per_ip_per_hour: 5,
            signups_per_prefix_per_hour: 20,
        }
    }
}

/// Why a billing action could not be done.
#[derive(Debug)]
pub enum BillingError {
    /// Bad input or a state that does not allow it (problem 422 / 409).
    Invalid(String),
    Conflict(String),
    /// The provider is not configured or did not answer (503 / 502).
    Unavailable(String),
    Provider(String),
    Store(tenants::Error),
}

impl From<tenants::Error> for BillingError {
    fn from(e: tenants::Error) -> Self {
        BillingError::Store(e)
    }
}

impl std::fmt::Display for BillingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BillingError::Invalid(s)
            | BillingError::Conflict(s)
            | BillingError::Unavailable(s)
            | BillingError::Provider(s) => f.write_str(s),
            BillingError::Store(e) => write!(f, "{e}"),
        }
    }
}

/// The outcome of a public signup.
#[derive(Debug)]
pub enum SignupOutcome {
    Admitted { account: AccountId, token: String },
    Waiting { position: i64, token: String },
}

/// Billing's service: what the API and the workers call.
pub struct Billing {
    pub store: Store,
    pub config: BillingConfig,
    stripe: Option<StripeApi>,
    pub challenges: Challenges,
    guard: SignupGuard,
}

impl Billing {
    /// `secret` is instance key material, for the signup challenges.
    pub fn new(store: Store, config: BillingConfig, secret: &[u8]) -> Result<Arc<Billing>, String> {
        let stripe = match config.provider {
            Provider::None => None,
            Provider::Stripe => {
                let key = config
                    .stripe_secret_key
                    .as_ref()
                    .ok_or("billing.provider is stripe but billing.stripe_secret_key is not set")?;
                if config.stripe_webhook_secrets.is_empty() {
                    return Err(
                        "billing.provider is stripe but no billing.stripe_webhook_secrets are set"
                            .into(),
                    );
                }
                Some(StripeApi::new(
                    &config.stripe_api_base,
                    key.expose_secret(),
                )?)
            }
        };
        let challenges = Challenges::new(
            secret,
            config.signup_difficulty,
            chrono::Duration::minutes(15),
        );
        let guard = SignupGuard::new(
            Duration::from_secs(3600),
            config.signups_per_ip_per_hour,
            config.signups_per_prefix_per_hour,
        );
        Ok(Arc::new(Billing {
            store,
            config,
            stripe,
            challenges,
            guard,
        }))
    }

    pub fn rates(&self) -> PoolRates {
        PoolRates {
            free_account_month_cents: self.config.free_account_month_cents.clone(),
        }
    }

    pub fn grace(&self) -> chrono::Duration {
        chrono::Duration::days(self.config.grace_days)
    }

    pub fn stripe(&self) -> Result<&StripeApi, BillingError> {
        self.stripe.as_ref().ok_or_else(|| {
            BillingError::Unavailable("this instance takes no payments (billing.provider is none); the operator assigns plans".into())
        })
    }

    /// Starts a Stripe subscription for a tenant on a plan: makes the
    /// customer (once) and a Checkout Session; returns the session's URL.
    pub async fn checkout(
        &self,
        tenant: TenantId,
        admin_email: Option<&str>,
    ) -> Result<String, BillingError> {
        let stripe = self.stripe()?;
        let billing = self.store.tenant_billing(tenant).await?.ok_or_else(|| {
            BillingError::Conflict(
                "the tenant has no plan yet; the operator or its reseller assigns one".into(),
            )
        })?;
        if billing.paid_by == tenants::store::PaidBy::Parent {
            return Err(BillingError::Conflict(
                "this tenant's seats are paid by its reseller (wholesale)".into(),
            ));
        }
        if billing
            .subscription_status
            .as_deref()
            .is_some_and(|s| s != "canceled" && s != "incomplete_expired")
        {
            return Err(BillingError::Conflict(format!(
                "the tenant already has a subscription ({})",
                billing.subscription_status.as_deref().unwrap_or_default()
            )));
        }
        let plan = self
            .store
            .plan(billing.plan_id)
            .await?
            .ok_or(tenants::Error::NotFound("plan"))?;
        let price = plan.stripe_price_id.ok_or_else(|| {
            BillingError::Conflict(format!("the plan `{}` has no stripe_price_id", plan.name))
        })?;
        let t = self
            .store
            .tenant(tenant)
            .await?
            .ok_or(tenants::Error::NotFound("tenant"))?;
        let customer = match billing.stripe_customer_id {
            Some(c) => c,
            None => {
                let c = stripe
                    .create_customer(&tenant.to_string(), &t.name, admin_email)
                    .await
                    .map_err(BillingError::Provider)?;
                self.store.set_stripe_customer(tenant, &c).await?;
                c
            }
        };
        let seats = self
            .store
            .refresh_seats(tenant)
            .await?
            .map(|(_, s)| s)
            .unwrap_or(1)
            .max(1);
        // One session per tenant, seat count and minute: a retried request gets the same session.
        let attempt = format!("{seats}-{}", Utc::now().format("%Y%m%d%H%M"));
        let (_, url) = stripe
            .create_checkout(
                &tenant.to_string(),
                &customer,
                &price,
                seats as u64,
                &self.config.checkout_success_url,
                &self.config.checkout_cancel_url,
                &attempt,
            )
            .await
            .map_err(BillingError::Provider)?;
        Ok(url)
    }

    /// Brings the quantity Stripe bills in line with the seats of the tenant
    /// paying for `tenant` (itself, or its reseller); returns the seats.
    pub async fn sync_seats(&self, tenant: TenantId) -> Result<Option<i64>, BillingError> {
        let Some((payer, seats)) = self.store.refresh_seats(tenant).await? else {
            return Ok(None);
        };
        let Some(billing) = self.store.tenant_billing(payer).await? else {
            return Ok(Some(seats));
        };
        let (Some(item), Some(stripe)) = (billing.stripe_item_id.as_deref(), self.stripe.as_ref())
        else {
            return Ok(Some(seats));
        };
        if billing.seats_billed == Some(seats)
            || billing.subscription_status.as_deref() == Some("canceled")
        {
            return Ok(Some(seats));
        }
        // The key names the change (from → to), so a retry does not bill twice.
        let key = format!(
            "caliop-seats-{payer}-{}-{seats}",
            billing.seats_billed.unwrap_or(0)
        );
        let billed = stripe
            .set_quantity(item, seats as u64, &key)
            .await
            .map_err(BillingError::Provider)?;
        self.store.set_seats_billed(payer, billed as i64).await?;
        Ok(Some(seats))
    }

    /// Checks and applies a webhook call.
    pub async fn webhook(
        &self,
        payload: &[u8],
        signature: Option<&str>,
    ) -> Result<Applied, BillingError> {
        if self.config.stripe_webhook_secrets.is_empty() {
            return Err(BillingError::Unavailable(
                "no Stripe webhook secret is configured".into(),
            ));
        }
        webhook::verify(
            payload,
            signature,
            &self.config.stripe_webhook_secrets,
            self.config.webhook_tolerance_seconds,
            Utc::now().timestamp(),
        )
        .map_err(|e| BillingError::Invalid(e.to_string()))?;
        let event = webhook::parse(payload).map_err(|e| BillingError::Invalid(e.to_string()))?;
        let applied = self.store.apply_stripe_event(&event, &self.rates()).await?;
        tracing::info!(event = %event.id, kind = %event.kind, replayed = applied.replayed, stale = applied.stale,
            pool_milli_months = applied.pool_milli_months, "stripe event");
        if let (tenants::store::BillingEvent::InvoiceFailed(invoice), false, Some(tenant)) =
            (&event.event, applied.replayed, applied.tenant)
        {
            self.tell_admins_payment_failed(tenant, invoice).await;
        }
        if applied.pool_milli_months > 0 {
            // New funding: let the waiting line in now.
            if let Err(e) = self.admit().await {
                tracing::warn!(error = %e, "admitting the waiting line after a payment");
            }
        }
        Ok(applied)
    }

    /// Queues a system mail (worker job `mail.system`) from a template.
    async fn queue_mail(
        &self,
        tenant: TenantId,
        template: &str,
        to: &str,
        values: serde_json::Value,
    ) {
        let payload = serde_json::json!({ "tenant": tenant, "template": template, "to": to, "language": null, "values": values });
        let job = tenants::store::NewJob {
            kind: SYSTEM_MAIL_JOB,
            payload: payload.to_string(),
            dedup_key: None,
            run_at: Utc::now(),
            max_attempts: 30,
        };
        if let Err(e) = self.store.enqueue(job).await {
            tracing::error!(error = %e, template, "could not queue a system mail");
        }
    }

    /// Tells a tenant's admins a payment failed, and when sending would stop.
    async fn tell_admins_payment_failed(
        &self,
        tenant: TenantId,
        invoice: &tenants::store::InvoiceEvent,
    ) {
        let Ok(Some(t)) = self.store.tenant(tenant).await else {
            return;
        };
        let admins = self.store.tenant_admins(tenant).await.unwrap_or_default();
        let amount = format!(
            "{}.{:02} {}",
            invoice.amount_due / 100,
            invoice.amount_due % 100,
            invoice.currency.to_ascii_uppercase()
        );
        let suspension = (Utc::now() + self.grace()).format("%Y-%m-%d").to_string();
        let billing_url = self
            .config
            .checkout_cancel_url
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        for admin in admins {
            let values = serde_json::json!({ "organisation": t.name, "amount": amount, "billing_url": billing_url,
                "suspension_date": suspension });
            self.queue_mail(tenant, "payment_failed", &admin, values)
                .await;
        }
    }

    /// The public instance, if configured and real.
    pub async fn public_instance(&self) -> Result<Option<PublicInstance>, BillingError> {
        let Some(name) = &self.config.public_domain else {
            return Ok(None);
        };
        let name = DomainName::parse(name).map_err(|e| BillingError::Invalid(e.to_string()))?;
        let Some(domain) = self.store.domain_by_name(&name).await? else {
            return Ok(None);
        };
        let Some(tenant) = self.store.tenant(domain.tenant_id).await? else {
            return Ok(None);
        };
        if tenant.kind != TenantKind::Public {
            tracing::warn!(domain = %name, "billing.public_domain belongs to a tenant that is not of kind public");
            return Ok(None);
        }
        Ok(Some(PublicInstance {
            tenant: tenant.id,
            domain: domain.id,
            free_quota_bytes: self.config.free_quota_bytes,
            level: self.config.public_level.max(tenant.policy.min_level),
            horizon_months: self.config.pool_horizon_months,
        }))
    }

    /// Lets the waiting line in while the pool funds places.
    pub async fn admit(&self) -> Result<Vec<AccountId>, BillingError> {
        let Some(public) = self.public_instance().await? else {
            return Ok(Vec::new());
        };
        let admitted = self.store.admit_waiting(&public).await?;
        if !admitted.is_empty() {
            tracing::info!(
                count = admitted.len(),
                "free accounts opened from the waiting line"
            );
        }
        for (_, account) in &admitted {
            if let Ok(Some(a)) = self.store.account(*account).await {
                let domain = a.address.domain();
                let values = serde_json::json!({ "address": a.address, "signin_url": format!("https://{domain}/") });
                self.queue_mail(public.tenant, "admission", a.address.as_str(), values)
                    .await;
            }
        }
        Ok(admitted.into_iter().map(|(_, a)| a).collect())
    }

    /// Rate limit for one signup from `ip` (after its proof of work held).
    pub fn count_signup(&self, ip: IpAddr) -> Result<(), (u64, String)> {
        self.guard.admit(ip)
    }

    /// A signup whose stamp, name and rate were checked: it joins the line,
    /// and is admitted at once if the pool funds a place and nobody waits.
    pub async fn sign_up(
        &self,
        prepared: NewSignup,
        token: String,
    ) -> Result<SignupOutcome, BillingError> {
        self.store
            .join_waiting_line(&prepared)
            .await
            .map_err(|e| match e {
                tenants::Error::Conflict(s) => BillingError::Conflict(s),
                e => BillingError::Store(e),
            })?;
        self.admit().await?;
        let status = self
            .store
            .signup_status(&prepared.token_hash)
            .await?
            .ok_or_else(|| BillingError::Provider("the signup vanished".into()))?;
        Ok(match (status.account_id, status.position) {
            (Some(account), _) => SignupOutcome::Admitted {
                account: AccountId(account),
                token,
            },
            (None, position) => SignupOutcome::Waiting {
                position: position.unwrap_or(0),
                token,
            },
        })
    }

    /// The public domain's address for a local part, if signup is open.
    pub fn public_address(&self, local: &str) -> Result<EmailAddress, BillingError> {
        let domain = self.config.public_domain.as_deref().ok_or_else(|| {
            BillingError::Unavailable("public signup is not open on this instance".into())
        })?;
        EmailAddress::parse(&format!("{local}@{domain}"))
            .map_err(|e| BillingError::Invalid(e.to_string()))
    }
}

/// A tenant's billing state as a word: `none`, `active`, `past_due`,
/// `suspended` (past due beyond the grace period: sending stops) or
/// `canceled`.
pub fn status_word(billing: &TenantBilling, grace: chrono::Duration) -> &'static str {
    if let Some(since) = billing.past_due_since {
        return if since + grace <= Utc::now() {
            "suspended"
        } else {
            "past_due"
        };
    }
    match billing.subscription_status.as_deref() {
        Some("active" | "trialing") => "active",
        Some("past_due" | "unpaid") => "past_due",
        Some("canceled" | "incomplete_expired") => "canceled",
        Some(_) => "incomplete",
        None => "none",
    }
}

/// The token a signup gets to follow its place in line, and its hash at rest.
pub fn signup_token() -> (String, String) {
    use base64::Engine;
    use rand::RngCore;
    let mut raw = [0u8; 24];
    rand::rng().fill_bytes(&mut raw);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    (token.clone(), token_hash(&token))
}

pub fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}
