//! Claims that lapse: a domain added but never verified within
//! `domains.claim_days` is released (with the inert accounts made in it),
//! so that a name squatted by one tenant returns to whoever can prove it.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tenants::Store;

use crate::{Context, Job, enqueue};

pub const LAPSE_CLAIMS_JOB: &str = "domains.lapse_claims";

/// How often lapsed claims are looked for.
pub const LAPSE_EVERY_HOURS: u64 = 6;

/// Releases every claim older than `claim_days`, then schedules itself again.
#[derive(Debug, Serialize, Deserialize)]
pub struct LapseClaims {
    pub claim_days: u32,
}

impl Job<Context> for LapseClaims {
    const NAME: &'static str = LAPSE_CLAIMS_JOB;

    async fn run(&self, context: &Context) -> Result<(), String> {
        let released = lapse_claims(&context.store, self.claim_days)
            .await
            .map_err(|e| e.to_string())?;
        if released > 0 {
            tracing::info!(released, "unverified domain claims lapsed");
        }
        let next = Utc::now() + chrono::Duration::hours(LAPSE_EVERY_HOURS as i64);
        enqueue::<Context, _>(&context.store, self, Some(next))
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Releases the claims older than `claim_days`; returns how many went. A
/// claim the store refuses to release (it holds mail from before the rule)
/// is left for the operator and logged.
pub async fn lapse_claims(store: &Store, claim_days: u32) -> Result<usize, tenants::Error> {
    let before = Utc::now() - chrono::Duration::days(i64::from(claim_days));
    let mut released = 0;
    for claim in store.lapsed_claims(before).await? {
        match store.release_claim("worker", &claim).await {
            Ok(_) => released += 1,
            Err(tenants::Error::Conflict(why)) => {
                tracing::warn!(domain = %claim.id, %why, "a lapsed claim was kept")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(released)
}

/// Schedules the lapse of claims, now, unless it is on the queue.
pub async fn schedule_claim_lapse(store: &Store, claim_days: u32) -> Result<(), tenants::Error> {
    if store.live_jobs(LAPSE_CLAIMS_JOB).await? > 0 {
        return Ok(());
    }
    enqueue::<Context, _>(store, &LapseClaims { claim_days }, None)
        .await
        .map(|_| ())
}
