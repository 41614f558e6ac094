//! The outbound spool. A submission is one transaction: the sender's Sent
//! copy, the bytes to send (already encrypted at rest by the caller), one
//! delivery row per recipient and the delivery jobs all commit together, or
//! nothing does; the sending rates are checked inside that transaction, so
//! parallel submissions cannot overshoot them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::messages::{
    COUNT_ACCOUNT_STORAGE, COUNT_STORAGE, INSERT_MESSAGE, MAX_TREE_DEPTH, UNCOUNT_STORAGE,
};
use super::{NewJob, NewMessage, Pool, Store, WriteLock};
use crate::model::{AccountId, DeliveryStatus, Folder, MailboxId, MessageId, TenantId};
use crate::{Error, Result};

/// One version of a message to send, with the recipients who get it.
pub struct NewOutbound {
    pub id: Uuid,
    /// AEAD ciphertext under the tenant's data key.
    pub content: Vec<u8>,
    pub recipients: Vec<String>,
}

/// Sending rates a submission must stay within (0 means no sending at all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SendRates {
    pub account_messages_per_hour: i64,
    pub account_recipients_per_day: i64,
    pub tenant_messages_per_hour: i64,
    pub tenant_recipients_per_day: i64,
}

/// Everything a submission stores at once.
pub struct Submission {
    pub tenant_id: TenantId,
    pub account_id: AccountId,
    pub envelope_from: String,
    /// The `Message-ID` header of what is sent.
    pub header_message_id: String,
    /// The sender's copy, stored in Sent; its id names the submission.
    pub sent_copy: NewMessage,
    pub outbound: Vec<NewOutbound>,
    pub expires_at: DateTime<Utc>,
    /// Delivery jobs, one per outbound version.
    pub jobs: Vec<NewJob<'static>>,
    pub limits: SendRates,
}

/// A spooled version of a message.
#[derive(Clone, Debug, FromRow)]
pub struct OutboundRow {
    pub id: Uuid,
    pub message_id: Uuid,
    pub tenant_id: Uuid,
    pub account_id: Uuid,
    pub envelope_from: String,
    pub header_message_id: String,
    /// `None` once every recipient has a final status.
    pub content: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Where one recipient stands.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RecipientDelivery {
    pub recipient: String,
    pub status: DeliveryStatus,
    /// Delivery attempts made so far.
    pub attempts: i32,
    /// The host that answered last.
    pub remote_host: Option<String>,
    /// The last reply of the remote server (or why it could not be reached).
    pub remote_reply: Option<String>,
    pub updated_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct DeliveryRow {
    recipient: String,
    status: String,
    attempts: i32,
    remote_host: Option<String>,
    remote_reply: Option<String>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<DeliveryRow> for RecipientDelivery {
    type Error = Error;
    fn try_from(r: DeliveryRow) -> Result<RecipientDelivery> {
        Ok(RecipientDelivery {
            recipient: r.recipient,
            status: r.status.parse()?,
            attempts: r.attempts,
            remote_host: r.remote_host,
            remote_reply: r.remote_reply,
            updated_at: r.updated_at,
        })
    }
}

const INSERT_OUTBOUND: &str = "INSERT INTO outbound (id, message_id, tenant_id, account_id, envelope_from, \
     header_message_id, content, recipients, created_at, expires_at) VALUES ";
const OUTBOUND_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const INSERT_DELIVERY: &str =
    "INSERT INTO deliveries (outbound_id, recipient, status, attempts, updated_at) VALUES ";
const DELIVERY_ROW: &str = "(?, ?, 'queued', 0, ?)";
const INSERT_JOB: &str = "INSERT INTO jobs (id, kind, payload, dedup_key, state, attempts, max_attempts, run_at, created_at, updated_at) VALUES ";
const JOB_ROW: &str = "(?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?)";
const REMEMBER_RECIPIENT: &str =
    "INSERT INTO correspondents (account_id, address, received, received_encrypted, sent) VALUES ";
const RECIPIENT_ROW: &str = "(?, ?, 0, 0, ?)";
const REMEMBER_RECIPIENT_CONFLICT: &str =
    " ON CONFLICT (account_id, address) DO UPDATE SET sent = correspondents.sent + excluded.sent";
/// Rows per multi-row insert: well under either database's limit of bound
/// parameters (SQLite's 32,766) at ten a row.
const ROWS_PER_INSERT: usize = 256;

/// `head` and `count` copies of `row`, comma-separated, whose `?`s become
/// `$1`, `$2`, … in order (one statement for many rows; with an empty
/// `head` and `row` `?`, the list of an `IN (…)`).
pub(super) fn rows(head: &str, row: &str, count: usize) -> String {
    let mut sql = String::with_capacity(head.len() + count * (row.len() + 24));
    sql.push_str(head);
    let mut n = 0;
    for i in 0..count {
        if i > 0 {
            sql.push_str(", ");
        }
        for c in row.chars() {
            if c == '?' {
                n += 1;
                sql.push('$');
                sql.push_str(&n.to_string());
            } else {
                sql.push(c);
            }
        }
    }
    sql
}

/// Inserts `$items` in `$tx`, [`ROWS_PER_INSERT`] a statement: `$head`,
/// one `$row` per item (see [`rows`]), then `$tail`; `$bind` gives the
/// query `$q` with one item's values bound.
macro_rules! insert_rows {
    ($tx:expr, $head:expr, $row:expr, $tail:expr, $items:expr, |$q:ident, $item:pat_param| $bind:expr) => {{
        for chunk in $items.chunks(ROWS_PER_INSERT) {
            let mut sql = rows($head, $row, chunk.len());
            sql.push_str($tail);
            let mut $q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for $item in chunk {
                $q = $bind;
            }
            $q.execute(&mut *$tx).await?;
        }
    }};
}

/// `$q` with the values of [`JOB_ROW`] for `$job`, queued at `$now`.
macro_rules! bind_job {
    ($q:expr, $job:expr, $now:expr) => {
        $q.bind(Uuid::now_v7())
            .bind($job.kind)
            .bind(&$job.payload)
            .bind(&$job.dedup_key)
            .bind($job.max_attempts)
            .bind($job.run_at)
            .bind($now)
            .bind($now)
    };
}

/// Messages in the last hour and recipients in the last day, for one sender column.
const COUNTS_ACCOUNT: &str = "SELECT \
       (SELECT COUNT(DISTINCT message_id) FROM outbound WHERE account_id = $1 AND created_at > $2), \
       (SELECT COALESCE(SUM(recipients), 0) FROM outbound WHERE account_id = $1 AND created_at > $3)";
/// The same for the account ($1) and its tenant ($4), in one round trip.
const COUNTS_BOTH: &str = "SELECT \
       (SELECT COUNT(DISTINCT message_id) FROM outbound WHERE account_id = $1 AND created_at > $2), \
       (SELECT COALESCE(SUM(recipients), 0) FROM outbound WHERE account_id = $1 AND created_at > $3), \
       (SELECT COUNT(DISTINCT message_id) FROM outbound WHERE tenant_id = $4 AND created_at > $2), \
       (SELECT COALESCE(SUM(recipients), 0) FROM outbound WHERE tenant_id = $4 AND created_at > $3)";

/// Messages in an hour past which an account's automatic messages (forwards,
/// redirects, vacation replies) are no longer queued.
pub const MAX_AUTOMATIC_PER_HOUR: i64 = 500;

fn over(used: i64, adding: i64, limit: i64, what: &str, per: &str) -> Result<()> {
    if used + adding > limit {
        return Err(Error::RateLimited(format!(
            "the {what} sending limit is {limit} {per}; {used} used, this message needs {adding} more"
        )));
    }
    Ok(())
}

impl Store {
    /// Stores a submission (Sent copy, spool, deliveries, jobs) in one
    /// transaction, within the sending rates and the storage quota.
    /// Concurrent submissions are committed together (one fsync for many,
    /// see `GroupCommit`); each keeps its own outcome.
    pub async fn submit(&self, s: Submission) -> Result<MessageId> {
        let Some(submitter) = &self.submitter else {
            let mut outcomes = self.submit_batch(vec![s]).await?;
            return outcomes
                .pop()
                .unwrap_or_else(|| Err(Error::Internal("empty batch".into())));
        };
        super::through_group_commit(submitter, s).await
    }

    /// One transaction for many submissions, each keeping its own outcome.
    /// The batch is first tried without savepoints; only when one
    /// submission is refused (over its rate or the quota) is it run again
    /// with a savepoint each, so that one alone is refused. Tenants are
    /// locked in the order of their ids (so that two batches, in this
    /// process or another, never wait on each other in a circle).
    pub(super) async fn submit_batch(
        &self,
        batch: Vec<Submission>,
    ) -> Result<Vec<Result<MessageId>>> {
        let (outcomes, changed) = match self.submit_batch_with(&batch, false).await? {
            Some(done) => done,
            None => self
                .submit_batch_with(&batch, true)
                .await?
                .ok_or_else(|| Error::Internal("an isolated batch gave up".into()))?,
        };
        for mailbox in changed.iter().copied() {
            self.changed(mailbox);
        }
        if !changed.is_empty() {
            self.job_queued();
        }
        Ok(outcomes)
    }

    /// [`Store::submit_batch`], each submission in a savepoint when
    /// `isolate`; `None` when, without, one was refused. Each submission's
    /// rates count the earlier ones of the batch: the sender's and the
    /// tenant's counts are read once and added to in memory, and the spool,
    /// deliveries, correspondents, jobs and usage of the whole batch are
    /// written at the end, a few statements for all.
    async fn submit_batch_with(
        &self,
        batch: &[Submission],
        isolate: bool,
    ) -> Result<Option<(Vec<Result<MessageId>>, Vec<MailboxId>)>> {
        let now = Utc::now();
        let hour_ago = now - chrono::Duration::hours(1);
        let day_ago = now - chrono::Duration::days(1);
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_key(|&i| batch[i].tenant_id.0);
        let mut outcomes: Vec<Result<MessageId>> = batch
            .iter()
            .map(|_| Err(Error::Internal("not stored".into())))
            .collect();
        let mut changed = Vec::new();
        // (messages in the hour, recipients in the day) by account and by tenant.
        let mut accounts: HashMap<Uuid, (i64, i64)> = HashMap::new();
        let mut tenants: HashMap<Uuid, (i64, i64)> = HashMap::new();
        let mut sent: HashMap<Uuid, i64> = HashMap::new();
        let mut correspondents: HashMap<(Uuid, String), i64> = HashMap::new();
        let mut spooled: Vec<&Submission> = Vec::new();
        on_pool!(&self.pool, p => {
            let Some(&first) = order.first() else {
                return Ok(Some((outcomes, changed)));
            };
            let mut tx = p.begin_locked(batch[first].tenant_id.0).await?;
            let mut locked = batch[first].tenant_id;
            for &i in &order {
                let s = &batch[i];
                if s.tenant_id != locked {
                    p.lock_also(&mut tx, s.tenant_id.0).await?;
                    locked = s.tenant_id;
                }
                if isolate {
                    sqlx::query("SAVEPOINT submission").execute(&mut *tx).await?;
                }
                let recipients: i64 = s.outbound.iter().map(|o| o.recipients.len() as i64).sum();
                let stored: Result<MailboxId> = async {
                    if let std::collections::hash_map::Entry::Vacant(account) = accounts.entry(s.account_id.0) {
                        let (account_messages, account_recipients, tenant_messages, tenant_recipients): (i64, i64, i64, i64) =
                            sqlx::query_as(COUNTS_BOTH)
                                .bind(s.account_id.0).bind(hour_ago).bind(day_ago).bind(s.tenant_id.0)
                                .fetch_one(&mut *tx).await?;
                        account.insert((account_messages, account_recipients));
                        // Nothing of the batch is in the spool yet: a tenant
                        // met before keeps its count and what was added to it.
                        tenants.entry(s.tenant_id.0).or_insert((tenant_messages, tenant_recipients));
                    }
                    let (account_messages, account_recipients) = accounts[&s.account_id.0];
                    let (tenant_messages, tenant_recipients) = tenants[&s.tenant_id.0];
                    over(account_messages, 1, s.limits.account_messages_per_hour, "account's", "messages per hour")?;
                    over(account_recipients, recipients, s.limits.account_recipients_per_day, "account's", "recipients per day")?;
                    over(tenant_messages, 1, s.limits.tenant_messages_per_hour, "organisation's", "messages per hour")?;
                    over(tenant_recipients, recipients, s.limits.tenant_recipients_per_day, "organisation's", "recipients per day")?;
                    let Some((sent_mailbox, _)) = store_message!(tx, &s.sent_copy, super::mailboxes::Target::Role(Folder::Sent), now) else {
                        return Err(Error::LimitExceeded(
                            "the organisation's storage quota is exhausted: the Sent copy does not fit".into(),
                        ));
                    };
                    Ok(sent_mailbox)
                }
                .await;
                match stored {
                    Ok(mailbox) => {
                        if isolate {
                            sqlx::query("RELEASE SAVEPOINT submission").execute(&mut *tx).await?;
                        }
                        for counts in [
                            accounts.get_mut(&s.account_id.0),
                            tenants.get_mut(&s.tenant_id.0),
                        ]
                        .into_iter()
                        .flatten()
                        {
                            counts.0 += 1;
                            counts.1 += recipients;
                        }
                        *sent.entry(s.tenant_id.0).or_default() += 1;
                        for recipient in s.outbound.iter().flat_map(|o| &o.recipients) {
                            *correspondents
                                .entry((s.account_id.0, recipient.to_ascii_lowercase()))
                                .or_default() += 1;
                        }
                        spooled.push(s);
                        changed.push(mailbox);
                        outcomes[i] = Ok(s.sent_copy.id);
                    }
                    Err(e) if !isolate => {
                        tracing::debug!(error = %e, "a submission of the batch was refused: the batch runs again with savepoints");
                        tx.rollback().await?;
                        return Ok(None);
                    }
                    Err(e) => {
                        sqlx::query("ROLLBACK TO SAVEPOINT submission").execute(&mut *tx).await?;
                        sqlx::query("RELEASE SAVEPOINT submission").execute(&mut *tx).await?;
                        outcomes[i] = Err(e);
                    }
                }
            }
            keep_summaries!(tx, spooled.iter().map(|s| &s.sent_copy));
            for (tenant, count) in &sent {
                count_usage!(tx, *tenant, now, 0, *count);
            }
            let versions: Vec<(&Submission, &NewOutbound)> =
                spooled.iter().flat_map(|s| s.outbound.iter().map(move |o| (*s, o))).collect();
            // One statement per version: each carries a message's bytes, and
            // one insert of all of them would be one Bind message of them all
            // (before `nodelay`, such a message waited 40 ms a time).
            for (s, o) in &versions {
                sqlx::query(sqlx::AssertSqlSafe(rows(INSERT_OUTBOUND, OUTBOUND_ROW, 1)))
                    .bind(o.id)
                    .bind(s.sent_copy.id.0)
                    .bind(s.tenant_id.0)
                    .bind(s.account_id.0)
                    .bind(&s.envelope_from)
                    .bind(&s.header_message_id)
                    .bind(&o.content)
                    .bind(o.recipients.len() as i64)
                    .bind(now)
                    .bind(s.expires_at)
                    .execute(&mut *tx)
                    .await?;
            }
            let deliveries: Vec<(Uuid, &String)> = versions
                .iter()
                .flat_map(|(_, o)| o.recipients.iter().map(|r| (o.id, r)))
                .collect();
            insert_rows!(tx, INSERT_DELIVERY, DELIVERY_ROW, "", deliveries, |insert, (outbound, recipient)| {
                insert.bind(*outbound).bind(*recipient).bind(now)
            });
            let correspondents: Vec<_> = correspondents.into_iter().collect();
            insert_rows!(tx, REMEMBER_RECIPIENT, RECIPIENT_ROW, REMEMBER_RECIPIENT_CONFLICT, correspondents, |insert, ((account, address), count)| {
                insert.bind(*account).bind(address).bind(*count)
            });
            let jobs: Vec<&NewJob<'static>> = spooled.iter().flat_map(|s| &s.jobs).collect();
            insert_rows!(tx, INSERT_JOB, JOB_ROW, "", jobs, |insert, job| bind_job!(insert, job, now));
            tx.commit().await?;
        });
        Ok(Some((outcomes, changed)))
    }

    /// Whether the account may still send automatic messages this hour
    /// (see [`MAX_AUTOMATIC_PER_HOUR`]).
    pub async fn automatic_room(&self, account: AccountId) -> Result<bool> {
        let now = Utc::now();
        let (sent, _): (i64, i64) = on_pool!(&self.pool, p => sqlx::query_as(COUNTS_ACCOUNT)
            .bind(account.0).bind(now - chrono::Duration::hours(1)).bind(now).fetch_one(p).await)?;
        Ok(sent < MAX_AUTOMATIC_PER_HOUR)
    }

    /// Queues mail the server sends on an account's behalf on arrival of
    /// another (a forward, a Sieve redirect, a vacation reply): spooled and
    /// delivered like a submission, counted in the account's sending rates,
    /// without a Sent copy. `message_id` is the delivered message it stems from.
    pub async fn queue_automatic(
        &self,
        message_id: MessageId,
        tenant: TenantId,
        account: AccountId,
        envelope_from: &str,
        header_message_id: &str,
        outbound_id: Uuid,
        content: &[u8],
        recipients: &[String],
        job: &super::NewJob<'_>,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let now = Utc::now();
        // Mail arriving cannot make an account send without bound: past this
        // many messages in the hour, automatic ones are dropped (and logged).
        let (sent, _): (i64, i64) = on_pool!(&self.pool, p => sqlx::query_as(COUNTS_ACCOUNT)
            .bind(account.0).bind(now - chrono::Duration::hours(1)).bind(now).fetch_one(p).await)?;
        if sent >= MAX_AUTOMATIC_PER_HOUR {
            return Err(Error::RateLimited(format!(
                "the account sent {sent} messages in the last hour; automatic messages wait"
            )));
        }
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(sqlx::AssertSqlSafe(rows(INSERT_OUTBOUND, OUTBOUND_ROW, 1)))
                .bind(outbound_id).bind(message_id.0).bind(tenant.0).bind(account.0)
                .bind(envelope_from).bind(header_message_id).bind(content)
                .bind(recipients.len() as i64).bind(now).bind(expires_at)
                .execute(&mut *tx).await?;
            insert_rows!(tx, INSERT_DELIVERY, DELIVERY_ROW, "", recipients, |insert, recipient| {
                insert.bind(outbound_id).bind(recipient).bind(now)
            });
            insert_rows!(tx, INSERT_JOB, JOB_ROW, "", [job], |insert, job| bind_job!(insert, job, now));
            tx.commit().await?;
        });
        self.job_queued();
        Ok(())
    }

    /// A spooled version, with its bytes while it has recipients left.
    pub async fn outbound(&self, id: Uuid) -> Result<Option<OutboundRow>> {
        let sql = "SELECT id, message_id, tenant_id, account_id, envelope_from, header_message_id, content, created_at, \
             expires_at FROM outbound WHERE id = $1";
        let row: Option<OutboundRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id).fetch_optional(p).await)?;
        Ok(row)
    }

    /// The recipients of one version, in the order they were given.
    pub async fn outbound_deliveries(&self, outbound: Uuid) -> Result<Vec<RecipientDelivery>> {
        let sql = "SELECT recipient, status, attempts, remote_host, remote_reply, updated_at FROM deliveries \
             WHERE outbound_id = $1 ORDER BY recipient";
        let rows: Vec<DeliveryRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(outbound).fetch_all(p).await)?;
        rows.into_iter().map(RecipientDelivery::try_from).collect()
    }

    /// Every recipient of a submitted message, by the id of its Sent copy.
    pub async fn message_deliveries(&self, message: MessageId) -> Result<Vec<RecipientDelivery>> {
        let sql = "SELECT d.recipient, d.status, d.attempts, d.remote_host, d.remote_reply, d.updated_at \
             FROM deliveries d JOIN outbound o ON o.id = d.outbound_id WHERE o.message_id = $1 ORDER BY d.recipient";
        let rows: Vec<DeliveryRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(message.0).fetch_all(p).await)?;
        rows.into_iter().map(RecipientDelivery::try_from).collect()
    }

    /// Records one attempt's outcome for some recipients, and drops the
    /// spooled bytes once no recipient is left waiting, in one transaction.
    /// A final status (`delivered`, `bounced`) is never overwritten. Returns
    /// whether the version is finished.
    pub async fn record_deliveries(
        &self,
        outbound: Uuid,
        updates: &[DeliveryUpdate<'_>],
    ) -> Result<bool> {
        let record = "UPDATE deliveries SET status = $3, attempts = attempts + 1, remote_host = $4, remote_reply = $5, \
             updated_at = $6 WHERE outbound_id = $1 AND recipient = $2 AND status IN ('queued', 'deferred')";
        let finish = "UPDATE outbound SET content = NULL, finished_at = $2 WHERE id = $1 AND finished_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM deliveries WHERE outbound_id = $1 AND status IN ('queued', 'deferred'))";
        let now = Utc::now();
        let finished = on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            for u in updates {
                sqlx::query(record)
                    .bind(outbound)
                    .bind(u.recipient)
                    .bind(u.status.as_str())
                    .bind(u.remote_host)
                    .bind(u.remote_reply)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            let done = sqlx::query(finish).bind(outbound).bind(now).execute(&mut *tx).await?;
            tx.commit().await?;
            done.rows_affected() == 1
        });
        Ok(finished)
    }
}

/// One recipient's outcome of a delivery attempt.
pub struct DeliveryUpdate<'a> {
    pub recipient: &'a str,
    pub status: DeliveryStatus,
    pub remote_host: Option<&'a str>,
    /// The remote reply, or why there was none.
    pub remote_reply: &'a str,
}

/// What one submission is for the group commit: answered by its Sent copy's id.
impl super::GroupCommit for Submission {
    type Outcome = MessageId;
    const MAX: usize = 64;
    const WHAT: &'static str = "submission";

    async fn commit(store: &Store, batch: Vec<Self>) -> Result<Vec<Result<Self::Outcome>>> {
        store.submit_batch(batch).await
    }
}
