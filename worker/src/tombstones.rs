//! Tombstones of expunged UIDs are what lets an IMAP client that comes
//! back resynchronise in one SELECT (QRESYNC's VANISHED (EARLIER)). They
//! are kept `imap.tombstone_days`, then pruned; a client that last synced
//! before that is told every UID it knows that is gone, computed from what
//! is there (RFC 7162 §3.2.5.1), so pruning never breaks a resync.

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::{Context, Job, enqueue};

pub const PRUNE_TOMBSTONES_JOB: &str = "imap.prune_tombstones";

/// How often old tombstones are looked for.
pub const PRUNE_EVERY_HOURS: u64 = 24;

/// Prunes the tombstones older than `keep_days`, then schedules itself again.
#[derive(Debug, Serialize, Deserialize)]
pub struct PruneTombstones {
    pub keep_days: u32,
}

impl Job<Context> for PruneTombstones {
    const NAME: &'static str = PRUNE_TOMBSTONES_JOB;

    async fn run(&self, context: &Context) -> Result<(), String> {
        let before = Utc::now() - chrono::Duration::days(i64::from(self.keep_days.max(1)));
        let pruned = context
            .store
            .prune_tombstones(before)
            .await
            .map_err(|e| e.to_string())?;
        if pruned > 0 {
            tracing::info!(pruned, keep_days = self.keep_days, "IMAP tombstones pruned");
        }
        let next = Utc::now() + chrono::Duration::hours(PRUNE_EVERY_HOURS as i64);
        enqueue::<Context, _>(&context.store, self, Some(next))
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Schedules the pruning, now, unless it is on the queue.
pub async fn schedule_tombstone_pruning(
    store: &tenants::Store,
    keep_days: u32,
) -> Result<(), tenants::Error> {
    if store.live_jobs(PRUNE_TOMBSTONES_JOB).await? > 0 {
        return Ok(());
    }
    enqueue::<Context, _>(store, &PruneTombstones { keep_days }, None)
        .await
        .map(|_| ())
}
