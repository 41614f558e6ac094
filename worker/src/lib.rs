//! Background work: the durable job queue and the jobs that run on it.
//!
//! A job is a type with a name ([`Job::NAME`]), serialized into the `jobs`
//! table. Workers claim due jobs with a lease (PostgreSQL `SKIP LOCKED`,
//! SQLite `UPDATE … RETURNING`); a worker that dies lets its lease expire and
//! another worker takes the job again, so delivery is at-least-once. Retries,
//! exponential backoff with jitter and dead letters are the queue's business:
//! a job only says whether it succeeded. Deduplication keys keep one live job
//! per key; `run_at` schedules a job for later.
//!
//! Jobs today: [`DomainCheck`] keeps looking for a new domain's ownership
//! record and verifies the domain as soon as it is published;
//! [`mail::outbound::DeliverJob`] sends submitted mail; [`DkimSwitch`] completes a DKIM key rotation once
//! the new keys are in DNS; [`RenewCanary`] signs the warrant canary every day.

pub mod claims;
pub mod exports;
pub mod tombstones;
pub use claims::{LapseClaims, schedule_claim_lapse};
pub use exports::{ExpireTenantExport, ExportTenant};
pub use tombstones::{PruneTombstones, schedule_tombstone_pruning};

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tenants::store::NewJob;
use tenants::{DomainId, Store};

/// How often and how patiently a job is retried.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: i32,
    /// Delay before the second attempt; doubles each time.
    pub base: Duration,
    /// The longest delay between attempts.
    pub max: Duration,
    /// ± share of the delay drawn at random, so retries do not march in step.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            base: Duration::from_secs(30),
            max: Duration::from_secs(3600),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The delay after `attempt` failed attempts (1 for the first failure).
    pub fn delay(&self, attempt: i32) -> Duration {
        let exponent = attempt.saturating_sub(1).clamp(0, 30) as u32;
        let raw = self
            .base
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.max);
        let spread = rand::rng().random_range(-self.jitter..=self.jitter);
        raw.mul_f64((1.0 + spread).max(0.0))
    }
}

/// A kind of background work on context `C`.
pub trait Job<C>: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The name stored in the queue; never change it once jobs are queued.
    const NAME: &'static str;

    fn retry_policy() -> RetryPolicy {
        RetryPolicy::default()
    }

    /// Jobs with the same key are not queued twice while one is live.
    fn dedup_key(&self) -> Option<String> {
        None
    }

    /// Does the work; an error is retried by the queue's policy.
    fn run(&self, context: &C) -> impl Future<Output = Result<(), String>> + Send;
}

/// Adds jobs to the queue.
pub async fn enqueue<C, J: Job<C>>(
    store: &Store,
    job: &J,
    run_at: Option<DateTime<Utc>>,
) -> Result<uuid::Uuid, tenants::Error> {
    let payload =
        serde_json::to_string(job).map_err(|e| tenants::Error::Internal(e.to_string()))?;
    let (id, _) = store
        .enqueue(NewJob {
            kind: J::NAME,
            payload,
            dedup_key: job.dedup_key(),
            run_at: run_at.unwrap_or_else(Utc::now),
            max_attempts: J::retry_policy().max_attempts,
        })
        .await?;
    Ok(id)
}

type Handler<C> = Arc<
    dyn for<'a> Fn(&'a str, &'a C) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>
        + Send
        + Sync,
>;

/// Runs the registered jobs, several at a time.
pub struct Worker<C> {
    store: Store,
    context: Arc<C>,
    name: String,
    handlers: HashMap<&'static str, (Handler<C>, RetryPolicy)>,
    /// How long a claimed job is ours before another worker may take it.
    pub lease: Duration,
    /// How long to sleep when no job is due, unless one is queued meanwhile.
    pub idle: Duration,
    pub concurrency: usize,
}

impl<C: Send + Sync + 'static> Worker<C> {
    pub fn new(store: Store, context: C, name: impl Into<String>) -> Worker<C> {
        Worker {
            store,
            context: Arc::new(context),
            name: name.into(),
            handlers: HashMap::new(),
            lease: Duration::from_secs(300),
            idle: Duration::from_millis(500),
            concurrency: 4,
        }
    }

    pub fn register<J: Job<C>>(self) -> Self {
        self.register_with::<J>(J::retry_policy())
    }

    /// Registers a job whose retry policy comes from configuration.
    pub fn register_with<J: Job<C>>(mut self, policy: RetryPolicy) -> Self {
        let handler: Handler<C> = Arc::new(|payload: &str, context: &C| {
            Box::pin(async move {
                let job: J = serde_json::from_str(payload)
                    .map_err(|e| format!("undecodable {} job: {e}", J::NAME))?;
                job.run(context).await
            })
        });
        self.handlers.insert(J::NAME, (handler, policy));
        self
    }

    /// Claims and runs jobs until `shutdown` resolves; running jobs finish first.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let this = Arc::new(self);
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let mut loops = tokio::task::JoinSet::new();
        for slot in 0..this.concurrency.max(1) {
            let (this, mut stopping) = (this.clone(), stopping.clone());
            loops.spawn(async move {
                let name = format!("{}#{slot}", this.name);
                let added = this.store.jobs_added();
                while !*stopping.borrow() {
                    // Listening before looking: a job queued in between wakes us.
                    let woken = added.notified();
                    tokio::pin!(woken);
                    woken.as_mut().enable();
                    let ran = this.run_one(&name).await;
                    if !ran {
                        // A job queued here, or in a process heard over
                        // LISTEN/NOTIFY, wakes the loop; the sleep is for
                        // jobs due later and processes not heard.
                        tokio::select! {
                            () = tokio::time::sleep(this.idle) => {}
                            () = &mut woken => {}
                            _ = stopping.changed() => {}
                        }
                    }
                }
            });
        }
        shutdown.await;
        let _ = stop.send(true);
        while loops.join_next().await.is_some() {}
    }

    /// Claims one due job and runs it; false when none was due.
    pub async fn run_one(&self, name: &str) -> bool {
        let kinds: Vec<&str> = self.handlers.keys().copied().collect();
        let lease_until = Utc::now()
            + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::minutes(5));
        let job = match self.store.claim_job(&kinds, name, lease_until).await {
            Ok(Some(job)) => job,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(error = %e, "claiming a job failed");
                return false;
            }
        };
        let Some((handler, policy)) = self.handlers.get(job.kind.as_str()) else {
            return false;
        };
        let outcome =
            match tokio::time::timeout(self.lease, handler(&job.payload, &self.context)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!(
                    "ran longer than its {} s lease",
                    self.lease.as_secs()
                )),
            };
        let recorded = match outcome {
            Ok(()) => self.store.complete_job(job.id, name).await,
            Err(error) => {
                let retry_at = (job.attempts < job.max_attempts).then(|| {
                    Utc::now()
                        + chrono::Duration::from_std(policy.delay(job.attempts))
                            .unwrap_or(chrono::Duration::zero())
                });
                if retry_at.is_none() {
                    tracing::warn!(job = %job.id, kind = %job.kind, attempts = job.attempts, "job moved to dead letters");
                }
                self.store.fail_job(job.id, name, &error, retry_at).await
            }
        };
        if let Err(e) = recorded {
            tracing::warn!(error = %e, job = %job.id, "recording a job's outcome failed");
        }
        true
    }
}

/// What the jobs of the `caliop` processes need.
pub struct Context {
    pub store: Store,
    pub dns: mail::dns::Dns,
    pub outbound: Arc<mail::outbound::Outbound>,
    /// Delays between delivery attempts (the message's lifetime ends them).
    pub delivery_retry: RetryPolicy,
    /// The storage sites of dispersed mail, for scrub, repair and evacuation.
    pub dispersed: Option<Arc<mail::dispersed::Dispersed>>,
    /// Plans, Stripe and the pool, for seat counts and admissions.
    pub billing: Option<Arc<billing::Billing>>,
    /// The store and keys of the mail, for tenant exports.
    pub inbound: Option<Arc<mail::inbound::Inbound>>,
    /// Where tenant exports are written (`data_dir/exports`).
    pub exports_dir: Option<std::path::PathBuf>,
    /// What the instance signs with (the warrant canary).
    pub instance_key: Option<Arc<vault::instance::InstanceKey>>,
    /// Certificates by ACME, when `acme.enabled`.
    pub acme: Option<Arc<mail::acme::Acme>>,
}

impl Context {
    fn billing(&self) -> Result<&billing::Billing, String> {
        self.billing
            .as_deref()
            .ok_or_else(|| "billing is not configured in this process".to_owned())
    }

    fn dispersed(&self) -> Result<&mail::dispersed::Dispersed, String> {
        self.dispersed
            .as_deref()
            .ok_or_else(|| "no storage sites are configured in this process".to_owned())
    }

    fn instance_key(&self) -> Result<&vault::instance::InstanceKey, String> {
        self.instance_key
            .as_deref()
            .ok_or_else(|| "the instance key is not loaded in this process".to_owned())
    }
}

fn summary(report: &mail::dispersed::PassReport) -> String {
    format!(
        "{} objects, {} shards checked, {} missing, {} corrupt, {} unreachable, {} rebuilt, {} moved, {} purged, {} skipped",
        report.objects,
        report.shards_checked,
        report.missing,
        report.corrupt,
        report.unreachable,
        report.rebuilt,
        report.moved,
        report.purged,
        report.skipped.len()
    )
}

/// Rebuilds every missing or corrupt shard (most endangered objects first)
/// and purges the shards of deleted mail. Queued by writes that left a
/// shard behind, by reads and scrubs that found a bad one, and by deletions
/// that could not reach a site. Objects that could not be repaired (too few
/// sites up) make the job fail, so the queue tries again later.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
pub struct RepairSites {}

impl Job<Context> for RepairSites {
    const NAME: &'static str = mail::dispersed::REPAIR_JOB;

    fn retry_policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 20,
            base: Duration::from_secs(60),
            max: Duration::from_secs(3600),
            jitter: 0.2,
        }
    }

    fn dedup_key(&self) -> Option<String> {
        Some("all".into())
    }

    async fn run(&self, context: &Context) -> Result<(), String> {
        let report = context
            .dispersed()?
            .repair(&mail::dispersed::Quiet)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(report = %summary(&report), "shard repair pass");
        if report.skipped.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} objects could not be repaired yet",
                report.skipped.len()
            ))
        }
    }
}

/// Re-hashes every shard, then schedules the next scrub `every_hours` later.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct ScrubSites {
    pub every_hours: u64,
}

impl Job<Context> for ScrubSites {
    const NAME: &'static str = mail::dispersed::SCRUB_JOB;

    async fn run(&self, context: &Context) -> Result<(), String> {
        let report = context
            .dispersed()?
            .scrub(&mail::dispersed::Quiet, false)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(report = %summary(&report), "scrub pass");
        let at = Utc::now() + chrono::Duration::hours(self.every_hours as i64);
        enqueue::<Context, _>(&context.store, self, Some(at))
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Schedules scrubbing every `every_hours`, unless a scrub is already on the queue.
pub async fn schedule_scrub(store: &Store, every_hours: u64) -> Result<(), tenants::Error> {
    if every_hours == 0 || store.live_jobs(mail::dispersed::SCRUB_JOB).await? > 0 {
        return Ok(());
    }
    let at = Utc::now() + chrono::Duration::hours(every_hours as i64);
    enqueue::<Context, _>(store, &ScrubSites { every_hours }, Some(at))
        .await
        .map(|_| ())
}

/// Moves every shard off `from` (to `to`, or wherever placement allows).
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct EvacuateSite {
    pub from: String,
    pub to: Option<String>,
}

impl Job<Context> for EvacuateSite {
    const NAME: &'static str = mail::dispersed::EVACUATE_JOB;

    fn dedup_key(&self) -> Option<String> {
        Some(self.from.clone())
    }

    async fn run(&self, context: &Context) -> Result<(), String> {
        let report = context
            .dispersed()?
            .evacuate(&self.from, self.to.as_deref(), &mail::dispersed::Quiet)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(site = %self.from, report = %summary(&report), "evacuation pass");
        if report.skipped.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} objects are still on site {}",
                report.skipped.len(),
                self.from
            ))
        }
    }
}

/// Delivers one spooled version of a submitted message to its recipients
/// still waiting; the queue retries it while some are deferred. Queued by
/// the submission itself, in its transaction; the delays between attempts
/// come from configuration ([`Context::delivery_retry`]).
impl Job<Context> for mail::outbound::DeliverJob {
    const NAME: &'static str = mail::outbound::DELIVER_JOB;

    async fn run(&self, context: &Context) -> Result<(), String> {
        context.outbound.deliver(self.outbound_id).await.map(|_| ())
    }
}

/// Jobs that wait for a tenant to publish a DNS record: every minute at
/// first, then every half hour, for about a week.
const WAIT_FOR_DNS: RetryPolicy = RetryPolicy {
    max_attempts: 400,
    base: Duration::from_secs(60),
    max: Duration::from_secs(30 * 60),
    jitter: 0.2,
};

/// Whether DNS serves the TXT record as expected now.
async fn published(
    context: &Context,
    expected: &tenants::dns_records::ExpectedRecord,
) -> Result<bool, String> {
    let found = context
        .dns
        .lookup(&expected.name, mail::dns::Kind::Txt)
        .await
        .map_err(|e| e.to_string())?;
    Ok(tenants::dns_records::judge(expected, &found)
        == tenants::dns_records::RecordStatus::Verified)
}

/// Looks for a new domain's verification record until it appears (or the
/// attempts run out, over about a week), and verifies the domain then.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct DomainCheck {
    pub domain_id: DomainId,
}

impl Job<Context> for DomainCheck {
    const NAME: &'static str = "domain.check";

    fn retry_policy() -> RetryPolicy {
        WAIT_FOR_DNS
    }

    fn dedup_key(&self) -> Option<String> {
        Some(self.domain_id.to_string())
    }

    async fn run(&self, context: &Context) -> Result<(), String> {
        let Some(domain) = context
            .store
            .domain(self.domain_id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        if domain.verified_at.is_some() {
            return Ok(());
        }
        let expected = tenants::dns_records::verification_record(&domain);
        if !published(context, &expected).await? {
            return Err(format!(
                "no `{}` TXT record at {} yet",
                expected.value, expected.name
            ));
        }
        context
            .store
            .mark_domain_verified("worker", &domain, "dns")
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(domain = %domain.id, "domain verified by the background check");
        Ok(())
    }
}

/// Completes a DKIM rotation: once every pending key's record is published,
/// the pending keys sign and the old ones retire (still published a while).
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct DkimSwitch {
    pub domain_id: DomainId,
}

impl Job<Context> for DkimSwitch {
    const NAME: &'static str = "dkim.switch";

    fn retry_policy() -> RetryPolicy {
        WAIT_FOR_DNS
    }

    fn dedup_key(&self) -> Option<String> {
        Some(self.domain_id.to_string())
    }

    async fn run(&self, context: &Context) -> Result<(), String> {
        let Some(domain) = context
            .store
            .domain(self.domain_id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        let keys = context
            .store
            .dkim_keys(domain.id)
            .await
            .map_err(|e| e.to_string())?;
        for key in keys
            .iter()
            .filter(|k| k.state == tenants::DkimKeyState::Pending)
        {
            let expected = tenants::dns_records::dkim_record(&domain, key);
            if !published(context, &expected).await? {
                return Err(format!(
                    "the new DKIM key is not published at {} yet",
                    expected.name
                ));
            }
        }
        if context
            .store
            .activate_pending_dkim_keys("worker", domain.tenant_id, domain.id)
            .await
            .map_err(|e| e.to_string())?
        {
            tracing::info!(domain = %domain.id, "DKIM rotation completed");
        }
        Ok(())
    }
}

/// Recounts a tenant's seats (its limits follow) and sets the quantity on
/// its Stripe subscription, or its reseller's, prorated.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct SyncSeats {
    pub tenant: tenants::TenantId,
}

impl Job<Context> for SyncSeats {
    const NAME: &'static str = billing::SEATS_JOB;

    fn dedup_key(&self) -> Option<String> {
        Some(self.tenant.to_string())
    }

    async fn run(&self, context: &Context) -> Result<(), String> {
        let seats = context
            .billing()?
            .sync_seats(self.tenant)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(tenant = %self.tenant, ?seats, "seats synchronised");
        Ok(())
    }
}

/// Tells a tenant's administrators that its storage crossed `percent` of its quota.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct QuotaWarning {
    pub tenant: tenants::TenantId,
    pub percent: u8,
}

impl Job<Context> for QuotaWarning {
    const NAME: &'static str = billing::QUOTA_WARNING_JOB;

    fn dedup_key(&self) -> Option<String> {
        Some(format!("{}:{}", self.tenant, self.percent))
    }

    async fn run(&self, context: &Context) -> Result<(), String> {
        let tenant = context
            .store
            .tenant(self.tenant)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the tenant is gone")?;
        let admins = context
            .store
            .tenant_admins(self.tenant)
            .await
            .map_err(|e| e.to_string())?;
        let (used, quota) = (tenant.storage_used_bytes, tenant.limits.storage_quota_bytes);
        let mib = |b: i64| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
        let values = std::collections::BTreeMap::from([
            ("organisation".to_owned(), tenant.name.clone()),
            ("used".to_owned(), mib(used)),
            ("quota".to_owned(), mib(quota)),
            ("percent".to_owned(), self.percent.to_string()),
        ]);
        for admin in &admins {
            let mail = SystemMail {
                tenant: self.tenant,
                template: "quota_warning".into(),
                to: admin.clone(),
                language: None,
                values: values.clone(),
            };
            // A full quota may refuse the warning itself: log it, do not retry forever.
            let sent = match render_system_mail(&context.store, context.outbound.hostname(), &mail)
                .await
            {
                Ok((sender, message)) => context
                    .outbound
                    .send_system(&sender.from, admin, &message)
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = sent {
                tracing::warn!(tenant = %self.tenant, error = %e, "a quota warning could not be delivered");
            }
        }
        tracing::info!(tenant = %self.tenant, percent = self.percent, admins = admins.len(), "quota warning sent");
        Ok(())
    }
}

/// Opens free accounts for the waiting line while the pool funds places;
/// then schedules itself again.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct AdmitWaiting {
    pub every_minutes: i64,
}

// No deduplication key: the job queues its next run from inside its own
// run, while it is itself live under that key (start-up checks `live_jobs`).
impl Job<Context> for AdmitWaiting {
    const NAME: &'static str = billing::ADMIT_JOB;

    async fn run(&self, context: &Context) -> Result<(), String> {
        let admitted = context
            .billing()?
            .admit()
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(admitted = admitted.len(), "waiting line");
        let at = Utc::now() + chrono::Duration::minutes(self.every_minutes.max(1));
        enqueue::<Context, _>(
            &context.store,
            &AdmitWaiting {
                every_minutes: self.every_minutes,
            },
            Some(at),
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Debits the pool one month per active free account, once per month, and
/// records every tenant's storage and active accounts in its monthly usage;
/// runs daily (the debit of a month is recorded once, whatever the day).
#[derive(Debug, Default, Serialize, serde::Deserialize)]
pub struct DebitPool {}

// No deduplication key, as for `AdmitWaiting`.
impl Job<Context> for DebitPool {
    const NAME: &'static str = billing::DEBIT_JOB;

    async fn run(&self, context: &Context) -> Result<(), String> {
        let month = tenants::store::month_of(Utc::now());
        let debited = context
            .store
            .debit_pool(&month)
            .await
            .map_err(|e| e.to_string())?;
        let tenants = context
            .store
            .snapshot_usage(&month)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(%month, debited, tenants, "pool debit and usage snapshot");
        enqueue::<Context, _>(
            &context.store,
            &DebitPool {},
            Some(Utc::now() + chrono::Duration::days(1)),
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(())
    }
}

pub const CANARY_JOB: &str = "legal.canary";

/// How often the warrant canary is renewed.
pub const CANARY_EVERY_HOURS: u64 = 24;

/// Renews the warrant canary, then schedules itself `every_hours` later.
/// While a gag order runs it signs nothing, so that the canary published
/// last lapses at its due date: that silence is the canary's message.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct RenewCanary {
    pub every_hours: u64,
}

impl Job<Context> for RenewCanary {
    const NAME: &'static str = CANARY_JOB;

    async fn run(&self, context: &Context) -> Result<(), String> {
        let now = Utc::now();
        let every = chrono::Duration::hours(self.every_hours.max(1) as i64);
        let key = context.instance_key()?;
        match renew_canary(&context.store, key, context.outbound.hostname(), now, every)
            .await
            .map_err(|e| e.to_string())?
        {
            Some(canary) => tracing::info!(next_due = %canary.next_due, "warrant canary renewed"),
            None => {
                tracing::warn!("a gag order runs: the warrant canary is not renewed and will lapse")
            }
        }
        enqueue::<Context, _>(&context.store, self, Some(now + every))
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// The words of the canary of `hostname` issued at `issued_at`.
pub fn canary_statement(
    hostname: &str,
    issued_at: DateTime<Utc>,
    next_due: DateTime<Utc>,
) -> String {
    let day = |t: DateTime<Utc>| t.format("%Y-%m-%d").to_string();
    let instant = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    format!(
        "Warrant canary of {hostname}\n\
         \n\
         Issued on {} ({}).\n\
         \n\
         As of this date, the operator of {hostname} has received no order, from a court or any\n\
         other authority, that it is forbidden to disclose: no gag order has come with any\n\
         request for the data of its users.\n\
         \n\
         The next statement is due by {} ({}). If none has been published by then,\n\
         this one no longer holds.\n",
        day(issued_at),
        instant(issued_at),
        day(next_due),
        instant(next_due),
    )
}

/// Signs and publishes a canary issued `now`, due again two periods later
/// (one missed renewal is not yet a lapse); `None` while a gag order runs.
pub async fn renew_canary(
    store: &Store,
    key: &vault::instance::InstanceKey,
    hostname: &str,
    now: DateTime<Utc>,
    every: chrono::Duration,
) -> Result<Option<tenants::store::WarrantCanary>, tenants::Error> {
    use base64::Engine;
    if store.gag_order_running(now.date_naive()).await? {
        return Ok(None);
    }
    let next_due = now + every * 2;
    let statement = canary_statement(hostname, now, next_due);
    let signature =
        base64::engine::general_purpose::STANDARD.encode(key.sign(statement.as_bytes()));
    let new = tenants::store::NewCanary {
        issued_at: now,
        next_due,
        statement,
        signature,
    };
    match store.issue_canary("worker", new).await {
        Ok(canary) => Ok(Some(canary)),
        // A gag order recorded since the look above.
        Err(tenants::Error::Conflict(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Schedules the canary's renewal, now, unless it is on the queue.
pub async fn schedule_canary(store: &Store) -> Result<(), tenants::Error> {
    if store.live_jobs(CANARY_JOB).await? > 0 {
        return Ok(());
    }
    enqueue::<Context, _>(
        store,
        &RenewCanary {
            every_hours: CANARY_EVERY_HOURS,
        },
        None,
    )
    .await
    .map(|_| ())
}

pub const CERTIFICATES_JOB: &str = "tls.certificates";
/// How often the wanted names are looked at and due certificates ordered.
pub const CERTIFICATES_EVERY_MINUTES: i64 = 10;

/// Certificates by ACME: one for the mail host and one for each verified
/// tenant hostname, ordered when missing, renewed before expiry, retried
/// with a growing backoff. Runs every few minutes; each process serves
/// what the database holds.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct RenewCertificates;

impl Job<Context> for RenewCertificates {
    const NAME: &'static str = CERTIFICATES_JOB;

    async fn run(&self, context: &Context) -> Result<(), String> {
        let result = renew_certificates(context).await;
        let next = Utc::now() + chrono::Duration::minutes(CERTIFICATES_EVERY_MINUTES);
        enqueue::<Context, _>(&context.store, self, Some(next))
            .await
            .map_err(|e| e.to_string())?;
        result
    }
}

/// Wants the certificates this instance serves, and orders those due: the
/// mail host's; each verified tenant hostname's; and for each verified
/// domain, one covering those of its `mta-sts.`, `autoconfig.` and
/// `openpgpkey.` names that resolve to the mail host's addresses (a name
/// pointing elsewhere would fail its challenge, and count against the
/// CA's limits).
pub async fn renew_certificates(context: &Context) -> Result<(), String> {
    let Some(acme) = &context.acme else {
        return Ok(());
    };
    let mail_host = context.outbound.hostname().to_ascii_lowercase();
    let ours: std::collections::HashSet<String> = context
        .dns
        .lookup(&mail_host, mail::dns::Kind::A)
        .await
        .unwrap_or_default()
        .into_iter()
        .collect();
    let resolves_to_us = |name: String| {
        let dns = context.dns.clone();
        let ours = ours.clone();
        async move {
            let theirs = dns
                .lookup(&name, mail::dns::Kind::A)
                .await
                .unwrap_or_default();
            theirs.iter().any(|a| ours.contains(a)).then_some(name)
        }
    };
    let mut wanted = vec![vec![mail_host.clone()]];
    for hostname in context
        .store
        .verified_hostnames()
        .await
        .map_err(|e| e.to_string())?
    {
        if let Some(name) = resolves_to_us(hostname).await {
            wanted.push(vec![name]);
        }
    }
    for domain in context
        .store
        .verified_domain_names()
        .await
        .map_err(|e| e.to_string())?
    {
        let mut names = Vec::new();
        for prefix in ["mta-sts", "autoconfig", "openpgpkey"] {
            if let Some(name) = resolves_to_us(format!("{prefix}.{domain}")).await {
                names.push(name);
            }
        }
        if !names.is_empty() {
            wanted.push(names);
        }
    }
    for names in wanted {
        context
            .store
            .want_certificate(&names)
            .await
            .map_err(|e| e.to_string())?;
    }
    let run = acme.run_due().await?;
    if !run.issued.is_empty() || !run.failed.is_empty() {
        tracing::info!(
            issued = run.issued.len(),
            failed = run.failed.len(),
            "certificates ordered"
        );
    }
    Ok(())
}

/// Starts the certificate job unless it is queued already.
pub async fn schedule_certificates(store: &Store) -> Result<(), tenants::Error> {
    if store.live_jobs(CERTIFICATES_JOB).await? > 0 {
        return Ok(());
    }
    enqueue::<Context, _>(store, &RenewCertificates, None)
        .await
        .map(|_| ())
}

/// One mail the system writes to a person, from a template, in the brand
/// of `tenant` and in the recipient's language, from the tenant's own
/// domain (DKIM-signed with it). Rendered when sent, so it uses the brand
/// and wording of that moment.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct SystemMail {
    pub tenant: tenants::TenantId,
    pub template: String,
    pub to: String,
    /// `fr` or `en`; the tenant's default language when absent.
    pub language: Option<String>,
    pub values: std::collections::BTreeMap<String, String>,
}

pub const SYSTEM_MAIL_JOB: &str = billing::SYSTEM_MAIL_JOB;

impl Job<Context> for SystemMail {
    const NAME: &'static str = SYSTEM_MAIL_JOB;

    fn retry_policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 30,
            base: Duration::from_secs(60),
            max: Duration::from_secs(3600),
            jitter: 0.2,
        }
    }

    async fn run(&self, context: &Context) -> Result<(), String> {
        let (outbound, sent) =
            render_system_mail(&context.store, context.outbound.hostname(), self).await?;
        context
            .outbound
            .send_system(&outbound.from, &self.to, &sent)
            .await?;
        tracing::info!(tenant = %self.tenant, template = %self.template, "system mail sent");
        Ok(())
    }
}

/// The mail with a password-reset link, for the account's live reset.
///
/// The link's token exists only in the mail: the queue holds the account,
/// not the token. When the job runs it makes a new token, stores its hash
/// on the live reset (replacing the placeholder the request wrote) and
/// sends the link; a retry makes another, so a link that was never
/// delivered dies with its attempt. The alternative, the token encrypted
/// in the payload and the payload erased when done, would still keep a
/// decryptable link at rest while the job waits or retries.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct PasswordResetMail {
    pub account: tenants::AccountId,
    /// The reset page on the tenant's hostname, without the token
    /// (`https://host/reset`).
    pub reset_page: String,
    pub expires_minutes: i64,
}

impl Job<Context> for PasswordResetMail {
    const NAME: &'static str = "mail.password_reset";

    fn retry_policy() -> RetryPolicy {
        SystemMail::retry_policy()
    }

    async fn run(&self, context: &Context) -> Result<(), String> {
        let store = &context.store;
        let (token, hash) = billing::signup_token();
        if !store
            .rekey_password_reset(self.account, &hash)
            .await
            .map_err(|e| e.to_string())?
        {
            tracing::info!(account = %self.account, "password reset no longer live: no mail");
            return Ok(());
        }
        let account = store
            .account(self.account)
            .await
            .map_err(|e| e.to_string())?;
        let recovery = store
            .recovery_address(self.account)
            .await
            .map_err(|e| e.to_string())?;
        let (Some(account), Some(to)) = (account, recovery) else {
            tracing::info!(account = %self.account, "password reset for an account without a recovery address: no mail");
            return Ok(());
        };
        let mail = SystemMail {
            tenant: account.tenant_id,
            template: "password_reset".into(),
            to,
            language: None,
            values: std::collections::BTreeMap::from([
                ("address".to_owned(), account.address.to_string()),
                (
                    "reset_url".to_owned(),
                    format!("{}#{token}", self.reset_page),
                ),
                (
                    "expires_minutes".to_owned(),
                    self.expires_minutes.to_string(),
                ),
            ]),
        };
        mail.run(context).await
    }
}

/// Who a system mail comes from.
pub struct SystemSender {
    pub from: String,
    pub name: String,
}

/// Renders a system mail: the tenant's brand and wording (or its
/// ancestors', or the built-in ones), from `no-reply@` its sending domain.
pub async fn render_system_mail(
    store: &Store,
    hostname: &str,
    mail: &SystemMail,
) -> Result<(SystemSender, Vec<u8>), String> {
    let p = mail::templates::prepare(
        store,
        hostname,
        mail.tenant,
        &mail.template,
        mail.language.as_deref(),
        &mail.values,
    )
    .await?;
    let message = mail::templates::message(
        &p.from_name,
        &p.from,
        &mail.to,
        &p.rendered,
        &p.language,
        hostname,
    )?;
    Ok((
        SystemSender {
            from: p.from,
            name: p.from_name,
        },
        message,
    ))
}

/// Schedules the pool's recurring jobs unless they are on the queue.
pub async fn schedule_pool(store: &Store) -> Result<(), tenants::Error> {
    if store.live_jobs(billing::ADMIT_JOB).await? == 0 {
        enqueue::<Context, _>(store, &AdmitWaiting { every_minutes: 60 }, None).await?;
    }
    if store.live_jobs(billing::DEBIT_JOB).await? == 0 {
        enqueue::<Context, _>(store, &DebitPool {}, None).await?;
    }
    Ok(())
}

/// The worker of the `caliop` processes, with every job registered.
pub fn caliop_worker(context: Context, name: impl Into<String>) -> Worker<Context> {
    let store = context.store.clone();
    let retry = context.delivery_retry;
    Worker::new(store, context, name)
        .register::<DomainCheck>()
        .register::<DkimSwitch>()
        .register_with::<mail::outbound::DeliverJob>(retry)
        .register::<RepairSites>()
        .register::<ScrubSites>()
        .register::<EvacuateSite>()
        .register::<SyncSeats>()
        .register::<QuotaWarning>()
        .register::<AdmitWaiting>()
        .register::<DebitPool>()
        .register::<SystemMail>()
        .register::<PasswordResetMail>()
        .register::<RenewCanary>()
        .register::<RenewCertificates>()
        .register::<ExportTenant>()
        .register::<ExpireTenantExport>()
        .register::<LapseClaims>()
        .register::<PruneTombstones>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_bounds() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_secs(10),
            max: Duration::from_secs(60),
            jitter: 0.0,
        };
        assert_eq!(policy.delay(1), Duration::from_secs(10));
        assert_eq!(policy.delay(2), Duration::from_secs(20));
        assert_eq!(policy.delay(3), Duration::from_secs(40));
        assert_eq!(policy.delay(4), Duration::from_secs(60));
        assert_eq!(policy.delay(40), Duration::from_secs(60));
        let jittered = RetryPolicy {
            jitter: 0.2,
            ..policy
        };
        for _ in 0..100 {
            let d = jittered.delay(2).as_secs_f64();
            assert!((16.0..=24.0).contains(&d), "{d}");
        }
    }
}
