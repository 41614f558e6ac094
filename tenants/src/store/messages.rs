//! Stored messages, tenant data keys, correspondents, storage quota and the
//! daily traffic of a tenant tree. A delivery to several accounts is one
//! transaction: it commits for every recipient or for none, and the quota is
//! checked by the same UPDATE that counts the bytes, so concurrent
//! deliveries cannot overshoot it.

use std::collections::HashMap;

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use serde::Serialize;
use sqlx::FromRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Audit, INSERT_AUDIT, Mailbox, Page, Pool, Store};
use crate::model::{AccountId, Flag, Folder, Level, MailboxId, MessageId, TenantId};
use crate::privacy::PrivacyIndex;
use crate::{Error, Result};

/// A message for one recipient account, in the form it will be stored.
pub struct NewMessage {
    /// Chosen by the caller, because `standard` content is encrypted bound to it.
    pub id: MessageId,
    pub tenant_id: TenantId,
    pub account_id: AccountId,
    pub level: Level,
    pub envelope_from: String,
    pub envelope_to: String,
    /// Known to the server only at `standard`.
    pub subject: Option<String>,
    pub sender: Option<String>,
    pub privacy: PrivacyIndex,
    /// SPF, DKIM, DMARC and TLS results, as JSON.
    pub authentication: serde_json::Value,
    /// Whether it arrived OpenPGP-encrypted (feeds the privacy index later).
    pub arrived_encrypted: bool,
    /// The stored bytes: AEAD ciphertext at `standard`, PGP/MIME above;
    /// empty when the bytes are dispersed.
    pub content: Vec<u8>,
    /// The shards that hold the bytes, when they are dispersed.
    pub dispersed: Option<super::NewObject>,
    /// What IMAP FETCH answers without reading the message (its header and
    /// structure), encrypted under the tenant's data key; `None` from
    /// `dispersed` up. The mail crate makes it (`Inbound::store_readable`).
    pub summary: Option<Vec<u8>>,
    /// Bytes of the message as it is served (RFC822.SIZE): the plaintext at
    /// `standard`, the stored PGP/MIME form above.
    pub rfc822_size: i64,
    /// Flags and keywords it starts with (an IMAP APPEND's), usually none.
    pub flags: Vec<Flag>,
    pub keywords: Vec<String>,
    /// The INTERNALDATE an APPEND gave; else the time it is stored.
    pub received_at: Option<DateTime<Utc>>,
    /// The spam and virus verdict taken on arrival, before sealing; `None`
    /// for what was not scanned (APPEND, COPY, Sent copies). A delivery
    /// whose verdict says Junk is filed there.
    pub verdict: Option<crate::model::Verdict>,
    /// The mailbox a Sieve `fileinto` (or a `+tag`) chose; `None`: the
    /// Inbox, or Junk as the verdict says.
    pub mailbox: Option<MailboxId>,
}

impl NewMessage {
    /// Where a delivery is filed: Junk when its verdict says spam.
    pub fn folder(&self) -> Folder {
        if self
            .verdict
            .as_ref()
            .is_some_and(crate::model::Verdict::is_spam)
        {
            Folder::Junk
        } else {
            Folder::Inbox
        }
    }

    /// Bytes counted against the quota.
    pub fn size(&self) -> i64 {
        self.dispersed
            .as_ref()
            .map_or(self.content.len() as i64, |o| o.size)
    }
}

/// Where a message's bytes are.
#[derive(Debug)]
pub enum StoredContent {
    /// In the database, exactly as stored.
    Inline(Vec<u8>),
    /// In shards on the storage sites; the object's id is the message's.
    Dispersed,
}

/// What the server knows of a stored message, without its content.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MessageMeta {
    pub id: MessageId,
    pub tenant_id: TenantId,
    pub account_id: AccountId,
    pub received_at: DateTime<Utc>,
    /// Bytes stored, counted against the tenant's quota.
    pub size: i64,
    pub level: Level,
    pub mailbox_id: MailboxId,
    /// The special use of its mailbox; none in a mailbox of the account's own.
    pub folder: Option<Folder>,
    /// Its IMAP UID in its mailbox.
    pub uid: i64,
    pub flags: Vec<Flag>,
    /// IMAP keywords (`$Forwarded`, `$Junk`, a client's own).
    pub keywords: Vec<String>,
    /// Bytes served by `/raw` and IMAP (RFC822.SIZE).
    pub rfc822_size: i64,
    pub envelope_from: String,
    pub envelope_to: String,
    /// Only for `standard` messages.
    pub subject: Option<String>,
    /// The `From` header, only for `standard` messages.
    pub sender: Option<String>,
    pub privacy: PrivacyIndex,
    pub authentication: serde_json::Value,
    /// The spam and virus verdict taken on arrival (metadata at every level).
    pub verdict: Option<crate::model::Verdict>,
}

#[derive(FromRow)]
struct MessageRow {
    id: Uuid,
    tenant_id: Uuid,
    account_id: Uuid,
    received_at: DateTime<Utc>,
    size: i64,
    level: String,
    mailbox_id: Uuid,
    role: Option<String>,
    uid: i64,
    flags: String,
    keywords: String,
    rfc822_size: i64,
    envelope_from: String,
    envelope_to: String,
    subject: Option<String>,
    sender: Option<String>,
    privacy: String,
    authentication: String,
    verdict: Option<String>,
}

impl TryFrom<MessageRow> for MessageMeta {
    type Error = Error;
    fn try_from(r: MessageRow) -> Result<MessageMeta> {
        let stored = |e: Error| Error::Internal(format!("stored message does not parse: {e}"));
        Ok(MessageMeta {
            id: MessageId(r.id),
            tenant_id: TenantId(r.tenant_id),
            account_id: AccountId(r.account_id),
            received_at: r.received_at,
            size: r.size,
            level: r.level.parse().map_err(stored)?,
            mailbox_id: MailboxId(r.mailbox_id),
            folder: r
                .role
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(stored)?,
            uid: r.uid,
            flags: parse_flags(&r.flags).map_err(stored)?,
            keywords: r
                .keywords
                .split(' ')
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .collect(),
            rfc822_size: r.rfc822_size,
            envelope_from: r.envelope_from,
            envelope_to: r.envelope_to,
            subject: r.subject,
            sender: r.sender,
            privacy: serde_json::from_str(&r.privacy)
                .map_err(|e| Error::Internal(e.to_string()))?,
            authentication: serde_json::from_str(&r.authentication)
                .unwrap_or(serde_json::Value::Null),
            verdict: r
                .verdict
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| Error::Internal(format!("stored verdict: {e}")))?,
        })
    }
}

/// What an account's history says about one correspondent.
#[derive(Clone, Copy, Debug, Default, FromRow)]
pub struct Correspondent {
    pub received: i64,
    pub received_encrypted: i64,
    pub sent: i64,
}

/// One UTC day of a tenant tree's mail.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct TrafficDay {
    /// `YYYY-MM-DD`, in UTC.
    #[schema(example = "2026-03-10")]
    pub date: String,
    /// Messages stored for the tenants' accounts that are not Sent copies.
    pub received: i64,
    /// Messages the tenants' accounts submitted (their Sent copies).
    pub sent: i64,
    pub received_bytes: i64,
    pub sent_bytes: i64,
    /// Received messages the spam filter (or the account's own rules) filed in Junk.
    pub spam: i64,
}

/// Messages per UTC day of a tenant and its descendants, by kind. A message
/// is sent when it is the Sent copy of a submission, which the spool names
/// (`outbound.message_id`) whatever folder it was moved to since.
const TRAFFIC: &str = "WITH RECURSIVE subtree(id) AS ( \
       SELECT id FROM tenants WHERE id = $1 \
       UNION ALL SELECT t.id FROM tenants t JOIN subtree s ON t.parent_id = s.id) \
     SELECT day, CAST(SUM(1 - sent) AS BIGINT), CAST(SUM(sent) AS BIGINT), \
       CAST(SUM(size * (1 - sent)) AS BIGINT), CAST(SUM(size * sent) AS BIGINT), CAST(SUM(spam) AS BIGINT) \
     FROM (SELECT DAY_OF_RECEIVED_AT AS day, m.size, CASE WHEN m.spam THEN 1 ELSE 0 END AS spam, \
         CASE WHEN EXISTS (SELECT 1 FROM outbound o WHERE o.message_id = m.id) THEN 1 ELSE 0 END AS sent \
       FROM messages m \
       WHERE m.tenant_id IN (SELECT id FROM subtree) AND m.received_at >= $2 AND m.received_at < $3) counted \
     GROUP BY day";

const META_COLUMNS: &str = "m.id, m.tenant_id, m.account_id, m.received_at, m.size, m.level, m.mailbox_id, b.role, \
     m.uid, m.flags, m.keywords, m.rfc822_size, m.envelope_from, m.envelope_to, m.subject, m.sender, m.privacy, m.authentication, m.verdict";

pub(super) const INSERT_MESSAGE: &str = "INSERT INTO messages (id, tenant_id, account_id, received_at, size, level, \
     mailbox_id, uid, modseq, flags, keywords, rfc822_size, envelope_from, envelope_to, subject, sender, privacy, \
     authentication, content, storage, verdict, spam) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)";
/// Counts the bytes against one tenant's quota, in the same statement that
/// checks it (so that concurrent deliveries cannot both pass), and names the
/// parent to charge next. A tenant's `storage_used_bytes` is its subtree's:
/// its own accounts' mail and every descendant's.
pub(super) const COUNT_STORAGE: &str = "UPDATE tenants SET storage_used_bytes = storage_used_bytes + $2 \
     WHERE id = $1 AND storage_used_bytes + $2 <= storage_quota_bytes \
     RETURNING storage_used_bytes, storage_quota_bytes, parent_id";
/// Gives back what [`COUNT_STORAGE`] took from one tenant.
pub(super) const UNCOUNT_STORAGE: &str =
    "UPDATE tenants SET storage_used_bytes = storage_used_bytes - $2 WHERE id = $1";
/// The most tenants above one another; deeper trees are refused at creation
/// long before this (a guard against a cycle, not a product limit).
pub(super) const MAX_TREE_DEPTH: usize = 32;
/// The account's own cap, when it has one, in the same way.
pub(super) const COUNT_ACCOUNT_STORAGE: &str = "UPDATE accounts SET storage_used_bytes = storage_used_bytes + $2 \
     WHERE id = $1 AND (storage_quota_bytes IS NULL OR storage_used_bytes + $2 <= storage_quota_bytes)";
/// `$3` messages from `$2` to account `$1`, `$4` of them encrypted on arrival.
const REMEMBER_SENDER: &str = "INSERT INTO correspondents (account_id, address, received, received_encrypted, sent) \
     VALUES ($1, $2, $3, $4, 0) ON CONFLICT (account_id, address) DO UPDATE \
     SET received = correspondents.received + excluded.received, \
         received_encrypted = correspondents.received_encrypted + excluded.received_encrypted";

pub(super) const DELETE_MESSAGE: &str = "DELETE FROM messages WHERE id = $1";
/// Gives freed bytes back to the tenant and every ancestor (see [`COUNT_STORAGE`]).
pub(super) const FREE_TENANT_STORAGE: &str = "WITH RECURSIVE chain(id, parent_id) AS ( \
       SELECT id, parent_id FROM tenants WHERE id = $1 \
       UNION ALL SELECT t.id, t.parent_id FROM tenants t JOIN chain c ON t.id = c.parent_id) \
     UPDATE tenants SET storage_used_bytes = storage_used_bytes - $2 WHERE id IN (SELECT id FROM chain)";
pub(super) const FREE_ACCOUNT_STORAGE: &str =
    "UPDATE accounts SET storage_used_bytes = storage_used_bytes - $2 WHERE id = $1";
/// A deleted message's dispersed object: its shards are purged afterwards.
pub(super) const SHRED_OBJECT: &str =
    "UPDATE stored_objects SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL";

/// Charges `$size` bytes to the tenant and every ancestor inside the
/// caller's transaction, each against its own package: all of them or none
/// (a refused ancestor undoes the ones below it). Evaluates to the tenant's
/// own `(used, quota)` after the charge, or `None` when some package on the
/// way up has no room. One UPDATE per level; trees are shallow.
macro_rules! count_storage_up_the_tree {
    ($tx:expr, $tenant:expr, $size:expr) => {{
        let (tenant, size): (uuid::Uuid, i64) = ($tenant, $size);
        let mut charged: Vec<uuid::Uuid> = Vec::new();
        let mut own: Option<(i64, i64)> = None;
        let mut next = Some(tenant);
        let mut room = true;
        while let Some(id) = next {
            if charged.len() >= MAX_TREE_DEPTH {
                return Err(Error::Internal(format!(
                    "tenant {tenant} is deeper than {MAX_TREE_DEPTH} levels"
                )));
            }
            let counted: Option<(i64, i64, Option<uuid::Uuid>)> = sqlx::query_as(COUNT_STORAGE)
                .bind(id)
                .bind(size)
                .fetch_optional(&mut *$tx)
                .await?;
            let Some((used, quota, parent)) = counted else {
                room = false;
                break;
            };
            own.get_or_insert((used, quota));
            charged.push(id);
            next = parent;
        }
        if room {
            own
        } else {
            for id in charged {
                sqlx::query(UNCOUNT_STORAGE)
                    .bind(id)
                    .bind(size)
                    .execute(&mut *$tx)
                    .await?;
            }
            None
        }
    }};
}

/// Records in the month's usage of `$tenant` `$received` messages received
/// and `$sent` sent, and its storage now (and peak), inside the caller's
/// transaction, after the messages are stored.
macro_rules! count_usage {
    ($tx:expr, $tenant:expr, $now:expr, $received:expr, $sent:expr) => {{
        let (received, sent): (i64, i64) = ($received, $sent);
        sqlx::query(super::billing::COUNT_USAGE)
            .bind($tenant)
            .bind(super::billing::month_of($now))
            .bind(received)
            .bind(sent)
            .execute(&mut *$tx)
            .await?;
    }};
}

/// Mail received or sent counts in the month's usage; what a client files
/// itself (APPEND, COPY) is neither: `(received, sent)` for a message stored in `target`.
pub(super) fn usage_of(target: &super::mailboxes::Target) -> (i64, i64) {
    match target {
        super::mailboxes::Target::Role(Folder::Sent) => (0, 1),
        super::mailboxes::Target::Role(_) | super::mailboxes::Target::Filed(_) => (1, 0),
        super::mailboxes::Target::Mailbox(_) => (0, 0),
    }
}

/// Stores one message in `$target` (a [`super::mailboxes::Target`]) inside
/// the caller's transaction, counting its bytes against the quota of the
/// tenant and of every ancestor (the caller then counts it in the month's
/// usage with [`count_usage!`]);
/// evaluates to the mailbox and UID it got, or `None` (and stores nothing)
/// when the quota has no room.
macro_rules! store_message {
    ($tx:expr, $m:expr, $target:expr, $now:expr) => {{
        let m: &NewMessage = $m;
        let size = m.size();
        let counted: Option<(i64, i64)> = count_storage_up_the_tree!($tx, m.tenant_id.0, size);
        let account_room = match counted {
            Some(_) => sqlx::query(COUNT_ACCOUNT_STORAGE).bind(m.account_id.0).bind(size).execute(&mut *$tx).await?.rows_affected() == 1,
            None => false,
        };
        if let (Some((used, quota)), true) = (counted, account_room) {
            let target: &super::mailboxes::Target = &$target;
            let (mailbox_id, uid, modseq) = take_uids!($tx, m.account_id, target, 1);
            let received_at = m.received_at.unwrap_or($now);
            sqlx::query(INSERT_MESSAGE)
                .bind(m.id.0)
                .bind(m.tenant_id.0)
                .bind(m.account_id.0)
                .bind(received_at)
                .bind(size)
                .bind(m.level.as_str())
                .bind(mailbox_id)
                .bind(uid)
                .bind(modseq)
                .bind(super::messages::flags_text(&m.flags))
                .bind(m.keywords.join(" "))
                .bind(m.rfc822_size)
                .bind(&m.envelope_from)
                .bind(&m.envelope_to)
                .bind(&m.subject)
                .bind(&m.sender)
                .bind(serde_json::to_string(&m.privacy).unwrap_or_default())
                .bind(m.authentication.to_string())
                .bind(&m.content)
                .bind(if m.dispersed.is_some() { "dispersed" } else { "database" })
                .bind(m.verdict.as_ref().map(|v| serde_json::to_string(v).unwrap_or_default()))
                .bind(m.verdict.as_ref().is_some_and(crate::model::Verdict::is_spam))
                .execute(&mut *$tx)
                .await?;
            if let Some(object) = &m.dispersed {
                insert_object!($tx, m.id.0, m.tenant_id.0, object, $now);
            }
            if let Some(percent) = super::billing::quota_threshold_crossed(used - size, used, quota) {
                let payload = serde_json::json!({ "tenant": m.tenant_id.0, "percent": percent }).to_string();
                sqlx::query(super::billing::QUEUE_QUOTA_WARNING)
                    .bind(uuid::Uuid::now_v7())
                    .bind(payload)
                    .bind(format!("{}:{percent}", m.tenant_id.0))
                    .bind($now)
                    .execute(&mut *$tx)
                    .await?;
            }
            Some((crate::model::MailboxId(mailbox_id), uid))
        } else {
            None
        }
    }};
}

/// Summaries per multi-row insert (two parameters each).
pub(super) const SUMMARIES_PER_INSERT: usize = 100;

/// The head of a multi-row insert of summaries, one `(?, ?)` a row.
pub(super) const KEEP_SUMMARIES: &str =
    "INSERT INTO message_summaries (message_id, summary) VALUES ";

/// Stores, inside the caller's transaction, the summaries
/// ([`NewMessage::summary`]) of messages `$messages` (an iterator of
/// `&NewMessage`) that [`store_message!`] stored in it: a few multi-row
/// inserts for a whole batch rather than one statement per message.
macro_rules! keep_summaries {
    ($tx:expr, $messages:expr) => {{
        let kept: Vec<(uuid::Uuid, &[u8])> = $messages
            .into_iter()
            .filter_map(|m: &NewMessage| m.summary.as_deref().map(|s| (m.id.0, s)))
            .collect();
        for chunk in kept.chunks(super::messages::SUMMARIES_PER_INSERT) {
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(super::outbound::rows(
                super::messages::KEEP_SUMMARIES,
                "(?, ?)",
                chunk.len(),
            )));
            for (id, summary) in chunk {
                insert = insert.bind(*id).bind(*summary);
            }
            insert.execute(&mut *$tx).await?;
        }
    }};
}

pub(super) fn parse_flags(text: &str) -> Result<Vec<Flag>> {
    text.split(' ')
        .filter(|f| !f.is_empty())
        .map(str::parse)
        .collect()
}

pub(super) fn flags_text(flags: &[Flag]) -> String {
    let mut flags: Vec<&str> = flags.iter().map(|f| f.as_str()).collect();
    flags.sort_unstable();
    flags.dedup();
    flags.join(" ")
}

impl Store {
    /// The tenant's wrapped data key, if one was made.
    pub async fn tenant_key(&self, tenant: TenantId) -> Result<Option<Vec<u8>>> {
        let sql = "SELECT wrapped_key FROM tenant_keys WHERE tenant_id = $1";
        let row: Option<(Vec<u8>,)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(tenant.0).fetch_optional(p).await)?;
        Ok(row.map(|(k,)| k))
    }

    /// Stores `wrapped` as the tenant's data key unless another process got
    /// there first; returns the key that won.
    pub async fn put_tenant_key(&self, tenant: TenantId, wrapped: &[u8]) -> Result<Vec<u8>> {
        let sql = "INSERT INTO tenant_keys (tenant_id, wrapped_key, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id) DO NOTHING";
        on_pool!(&self.pool, p => sqlx::query(sql).bind(tenant.0).bind(wrapped).bind(Utc::now()).execute(p).await.map(|_| ()))?;
        self.tenant_key(tenant)
            .await?
            .ok_or(Error::Internal("tenant key vanished".into()))
    }

    /// Bytes used and allowed for the tenant's messages.
    pub async fn storage(&self, tenant: TenantId) -> Result<(i64, i64)> {
        let sql = "SELECT storage_used_bytes, storage_quota_bytes FROM tenants WHERE id = $1";
        let row: Option<(i64, i64)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(tenant.0).fetch_optional(p).await)?;
        row.ok_or(Error::NotFound("tenant"))
    }

    pub async fn correspondent(&self, account: AccountId, address: &str) -> Result<Correspondent> {
        let sql = "SELECT received, received_encrypted, sent FROM correspondents WHERE account_id = $1 AND address = $2";
        let row: Option<Correspondent> = on_pool!(&self.pool, p =>
            sqlx::query_as(sql).bind(account.0).bind(address.to_ascii_lowercase()).fetch_optional(p).await)?;
        Ok(row.unwrap_or_default())
    }

    /// Stores one message per recipient, all or none, and returns once the
    /// transaction is durable. Concurrent deliveries are committed together
    /// (group commit: one fsync for many messages); each keeps its own
    /// outcome, so one tenant over quota does not fail another's delivery.
    pub async fn deliver(&self, messages: Vec<NewMessage>) -> Result<Vec<MessageId>> {
        let Some(committer) = &self.committer else {
            let mut outcomes = self.deliver_batch(vec![messages]).await?;
            return outcomes
                .pop()
                .unwrap_or_else(|| Err(Error::Internal("empty batch".into())));
        };
        super::through_group_commit(committer, messages).await
    }

    /// One transaction for many deliveries. Optimistically without a
    /// savepoint per delivery (two round trips each): when one delivery
    /// finds no room, the transaction is rolled back and the batch runs
    /// again with each delivery in its own savepoint, so that it alone is
    /// refused. The month's usage and the senders remembered are counted
    /// once per tenant and per sender for the whole batch, for the
    /// deliveries that were stored.
    pub(super) async fn deliver_batch(
        &self,
        batch: Vec<Vec<NewMessage>>,
    ) -> Result<Vec<Result<Vec<MessageId>>>> {
        if let Some(outcomes) = self.deliver_batch_with(&batch, false).await? {
            return Ok(outcomes);
        }
        self.deliver_batch_with(&batch, true)
            .await?
            .ok_or_else(|| Error::Internal("an isolated batch gave up".into()))
    }

    /// [`Store::deliver_batch`], each delivery in a savepoint when
    /// `isolate`; `None` when, without, one delivery found no room.
    async fn deliver_batch_with(
        &self,
        batch: &[Vec<NewMessage>],
        isolate: bool,
    ) -> Result<Option<Vec<Result<Vec<MessageId>>>>> {
        let now = Utc::now();
        /// Stores one delivery's messages in `$tx`; `None` when one found no room.
        macro_rules! store_delivery {
            ($tx:expr, $messages:expr) => {{
                let mut stored = Vec::with_capacity($messages.len());
                for m in $messages {
                    let target = match m.mailbox {
                        Some(id) => super::mailboxes::Target::Filed(id),
                        None => super::mailboxes::Target::Role(m.folder()),
                    };
                    match store_message!($tx, m, target, now) {
                        Some((mailbox, _)) => stored.push((mailbox, usage_of(&target))),
                        None => break,
                    }
                }
                (stored.len() == $messages.len()).then_some(stored)
            }};
        }
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let mut outcomes = Vec::with_capacity(batch.len());
            let mut touched = Vec::new();
            let mut kept: Vec<&NewMessage> = Vec::new();
            let mut usage: HashMap<Uuid, (i64, i64)> = HashMap::new();
            let mut senders: HashMap<(Uuid, String), (i64, i64)> = HashMap::new();
            for messages in batch {
                let stored = if isolate {
                    let mut savepoint = sqlx::Acquire::begin(&mut *tx).await?;
                    match store_delivery!(savepoint, messages) {
                        Some(stored) => {
                            savepoint.commit().await?;
                            Some(stored)
                        }
                        None => {
                            savepoint.rollback().await?;
                            None
                        }
                    }
                } else {
                    match store_delivery!(tx, messages) {
                        Some(stored) => Some(stored),
                        None => {
                            tx.rollback().await?;
                            return Ok(None);
                        }
                    }
                };
                let Some(stored) = stored else {
                    outcomes.push(Err(Error::LimitExceeded("the tenant's storage quota is exhausted".into())));
                    continue;
                };
                for (m, (mailbox, (received, sent))) in messages.iter().zip(stored) {
                    touched.push(mailbox);
                    let counted = usage.entry(m.tenant_id.0).or_default();
                    counted.0 += received;
                    counted.1 += sent;
                    if !m.envelope_from.is_empty() {
                        let seen = senders
                            .entry((m.account_id.0, m.envelope_from.to_ascii_lowercase()))
                            .or_default();
                        seen.0 += 1;
                        seen.1 += i64::from(m.arrived_encrypted);
                    }
                }
                kept.extend(messages);
                outcomes.push(Ok(messages.iter().map(|m| m.id).collect()));
            }
            keep_summaries!(tx, kept);
            for (tenant, (received, sent)) in usage {
                count_usage!(tx, tenant, now, received, sent);
            }
            for ((account, sender), (count, encrypted)) in senders {
                sqlx::query(REMEMBER_SENDER)
                    .bind(account)
                    .bind(sender)
                    .bind(count)
                    .bind(encrypted)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            for mailbox in touched {
                self.changed(mailbox);
            }
            Ok(Some(outcomes))
        })
    }

    /// A page of the account's messages, in one mailbox (by id or by
    /// special use) or in all.
    pub async fn list_messages(
        &self,
        account: AccountId,
        folder: Option<Folder>,
        mailbox: Option<MailboxId>,
        page: Page,
    ) -> Result<Vec<MessageMeta>> {
        self.list_messages_in_order(account, folder, mailbox, page, false)
            .await
    }

    /// [`Store::list_messages`], newest first when `newest_first` (the
    /// cursor then walks back: each page holds older messages).
    pub async fn list_messages_in_order(
        &self,
        account: AccountId,
        folder: Option<Folder>,
        mailbox: Option<MailboxId>,
        page: Page,
        newest_first: bool,
    ) -> Result<Vec<MessageMeta>> {
        let tail = if newest_first {
            " AND m.id < $4 ORDER BY m.id DESC LIMIT $5"
        } else {
            " AND m.id > $4 ORDER BY m.id LIMIT $5"
        };
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {META_COLUMNS} FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id WHERE m.account_id = $1 \
              AND ($2 IS NULL OR b.role = $2) AND ($3 IS NULL OR m.mailbox_id = $3){tail}"
        ));
        let after = match (newest_first, page.after) {
            (true, None) => Uuid::max(),
            _ => page.after(),
        };
        let rows: Vec<MessageRow> = on_pool!(&self.pool, p => sqlx::query_as(sql)
            .bind(account.0).bind(folder.map(Folder::as_str)).bind(mailbox.map(|m| m.0)).bind(after).bind(page.fetch())
            .fetch_all(p).await)?;
        rows.into_iter().map(MessageMeta::try_from).collect()
    }

    pub async fn message(&self, id: MessageId) -> Result<Option<MessageMeta>> {
        let sql = super::join_sql(
            "SELECT ",
            META_COLUMNS,
            " FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id WHERE m.id = $1",
        );
        let row: Option<MessageRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id.0).fetch_optional(p).await)?;
        row.map(MessageMeta::try_from).transpose()
    }

    /// The stored bytes of a message, exactly as written, or where they are.
    pub async fn message_content(&self, id: MessageId) -> Result<Option<StoredContent>> {
        let sql = "SELECT content, storage FROM messages WHERE id = $1";
        let row: Option<(Vec<u8>, String)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id.0).fetch_optional(p).await)?;
        Ok(row.map(|(content, storage)| match storage.as_str() {
            "dispersed" => StoredContent::Dispersed,
            _ => StoredContent::Inline(content),
        }))
    }

    /// The stored bytes of several messages in one query (IMAP FETCH and
    /// SEARCH read them by the hundred); absent ids are left out.
    pub async fn message_contents(
        &self,
        ids: &[MessageId],
    ) -> Result<HashMap<MessageId, StoredContent>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT id, content, storage FROM messages WHERE id IN ({})",
            super::outbound::rows("", "?", ids.len())
        );
        let rows: Vec<(Uuid, Vec<u8>, String)> = on_pool!(&self.pool, p => {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
            for id in ids {
                query = query.bind(id.0);
            }
            query.fetch_all(p).await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, content, storage)| {
                let stored = if storage == "dispersed" {
                    StoredContent::Dispersed
                } else {
                    StoredContent::Inline(content)
                };
                (MessageId(id), stored)
            })
            .collect())
    }

    /// The stored summaries ([`NewMessage::summary`]) of those of `ids`
    /// that have one, in one query.
    pub async fn message_summaries(
        &self,
        ids: &[MessageId],
    ) -> Result<HashMap<MessageId, Vec<u8>>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT message_id, summary FROM message_summaries WHERE message_id IN ({})",
            super::outbound::rows("", "?", ids.len())
        );
        let rows: Vec<(Uuid, Vec<u8>)> = on_pool!(&self.pool, p => {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
            for id in ids {
                query = query.bind(id.0);
            }
            query.fetch_all(p).await?
        });
        Ok(rows.into_iter().map(|(id, s)| (MessageId(id), s)).collect())
    }

    /// Stores summaries made after the fact, for messages stored without
    /// one (before summaries were kept, or imported from another instance);
    /// one already there, or a message gone meanwhile, is left alone.
    pub async fn keep_message_summaries(&self, summaries: &[(MessageId, Vec<u8>)]) -> Result<()> {
        if summaries.is_empty() {
            return Ok(());
        }
        let sql = "INSERT INTO message_summaries (message_id, summary) SELECT $1, $2 \
             WHERE EXISTS (SELECT 1 FROM messages WHERE id = $1) ON CONFLICT (message_id) DO NOTHING";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            for (id, summary) in summaries {
                sqlx::query(sql).bind(id.0).bind(summary.as_slice()).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Mail of `tenant` and its descendants per UTC day, for the `days` days
    /// that end with `today`: oldest first, days without mail included.
    /// Counts the messages still stored (a deleted one leaves these figures;
    /// the monthly usage counters keep it).
    pub async fn traffic(
        &self,
        tenant: TenantId,
        today: NaiveDate,
        days: u32,
    ) -> Result<Vec<TrafficDay>> {
        let first = today - Days::new(u64::from(days.max(1) - 1));
        let from = first.and_time(NaiveTime::MIN).and_utc();
        let until = (today + Days::new(1)).and_time(NaiveTime::MIN).and_utc();
        // Timestamps are RFC 3339 text in UTC on SQLite, TIMESTAMPTZ on PostgreSQL.
        let sql = |day: &str| sqlx::AssertSqlSafe(TRAFFIC.replace("DAY_OF_RECEIVED_AT", day));
        let rows: Vec<(String, i64, i64, i64, i64, i64)> = match &self.pool {
            Pool::Sqlite(p) => {
                sqlx::query_as(sql("substr(m.received_at, 1, 10)"))
                    .bind(tenant.0)
                    .bind(from)
                    .bind(until)
                    .fetch_all(p)
                    .await?
            }
            Pool::Postgres(p) => {
                sqlx::query_as(sql(
                    "to_char(m.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
                ))
                .bind(tenant.0)
                .bind(from)
                .bind(until)
                .fetch_all(p)
                .await?
            }
        };
        let mut counted: HashMap<String, TrafficDay> = rows
            .into_iter()
            .map(|(date, received, sent, received_bytes, sent_bytes, spam)| {
                (
                    date.clone(),
                    TrafficDay {
                        date,
                        received,
                        sent,
                        received_bytes,
                        sent_bytes,
                        spam,
                    },
                )
            })
            .collect();
        Ok((0..u64::from(days.max(1)))
            .map(|i| {
                let date = (first + Days::new(i)).format("%Y-%m-%d").to_string();
                counted.remove(&date).unwrap_or(TrafficDay {
                    date,
                    ..TrafficDay::default()
                })
            })
            .collect())
    }

    /// Files a message in another mailbox (a new UID there; its old one
    /// is expunged) and sets its flags and keywords, as one change.
    pub async fn update_message(
        &self,
        actor: &str,
        message: &MessageMeta,
        mailbox: MailboxId,
        flags: &[Flag],
        keywords: &[String],
    ) -> Result<MessageMeta> {
        let keywords = super::mailboxes::keywords_text(keywords)?;
        let moved = mailbox != message.mailbox_id;
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let owner: Option<(Uuid,)> = sqlx::query_as("SELECT account_id FROM mailboxes WHERE id = $1")
                .bind(mailbox.0).fetch_optional(&mut *tx).await?;
            if owner.map(|(a,)| a) != Some(message.account_id.0) {
                return Err(Error::Invalid(format!("mailbox {mailbox} is not one of this account's")));
            }
            let (_, uid, modseq) = take_uids!(tx, message.account_id, &super::mailboxes::Target::Mailbox(mailbox), i64::from(moved));
            let uid = if moved { uid } else { message.uid };
            // Only where it was read: an IMAP client may have moved or expunged it since.
            let done = sqlx::query("UPDATE messages SET mailbox_id = $2, uid = $3, modseq = $4, flags = $5, keywords = $6 \
                     WHERE id = $1 AND mailbox_id = $7 AND uid = $8")
                .bind(message.id.0).bind(mailbox.0).bind(uid).bind(modseq).bind(flags_text(flags)).bind(&keywords)
                .bind(message.mailbox_id.0).bind(message.uid)
                .execute(&mut *tx).await?;
            if done.rows_affected() != 1 {
                return Err(Error::Conflict("the message was moved or deleted meanwhile; read it again".into()));
            }
            if moved {
                bury!(tx, message.mailbox_id.0, message.uid);
            }
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(message.tenant_id.0),
                action: "message.update",
                object_type: "message",
                object_id: message.id.to_string(),
                detail: serde_json::json!({ "mailbox": mailbox, "flags": flags, "keywords": keywords }),
            });
            tx.commit().await?;
        });
        self.changed(message.mailbox_id);
        self.changed(mailbox);
        self.message(message.id)
            .await?
            .ok_or(Error::NotFound("message"))
    }

    /// Stores messages in a mailbox, all or none (APPEND, COPY); returns
    /// their UIDs. Refuses with `LimitExceeded` when the quota has no room.
    pub async fn append_messages(
        &self,
        mailbox: &Mailbox,
        messages: &[NewMessage],
    ) -> Result<Vec<i64>> {
        for m in messages {
            super::mailboxes::keywords_text(&m.keywords)?;
            if m.account_id != mailbox.account_id {
                return Err(Error::Invalid(
                    "a message goes only to a mailbox of its own account".into(),
                ));
            }
        }
        let now = Utc::now();
        let uids = on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let mut uids = Vec::with_capacity(messages.len());
            for m in messages {
                match store_message!(tx, m, super::mailboxes::Target::Mailbox(mailbox.id), now) {
                    Some((_, uid)) => {
                        count_usage!(tx, m.tenant_id.0, now, 0, 0);
                        uids.push(uid);
                    }
                    None => return Err(Error::LimitExceeded("the organisation's storage quota has no room for this message".into())),
                }
            }
            keep_summaries!(tx, messages);
            tx.commit().await?;
            uids
        });
        self.changed(mailbox.id);
        Ok(uids)
    }

    /// Deletes a message and gives its bytes back to the tenant's quota.
    /// A dispersed message's object is marked deleted in the same
    /// transaction; its shards are purged from the sites afterwards.
    pub async fn delete_message(&self, actor: &str, message: &MessageMeta) -> Result<()> {
        let (delete, free, free_account, shred) = (
            DELETE_MESSAGE,
            FREE_TENANT_STORAGE,
            FREE_ACCOUNT_STORAGE,
            SHRED_OBJECT,
        );
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let gone: Option<(Uuid, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!("{delete} RETURNING mailbox_id, uid")))
                .bind(message.id.0).fetch_optional(&mut *tx).await?;
            if let Some((mailbox, uid)) = gone {
                bury!(tx, mailbox, uid);
                sqlx::query(free).bind(message.tenant_id.0).bind(message.size).execute(&mut *tx).await?;
                sqlx::query(free_account).bind(message.account_id.0).bind(message.size).execute(&mut *tx).await?;
                sqlx::query(super::billing::COUNT_USAGE)
                    .bind(message.tenant_id.0).bind(super::billing::month_of(Utc::now())).bind(0i64).bind(0i64)
                    .execute(&mut *tx).await?;
                sqlx::query(shred).bind(message.id.0).bind(Utc::now()).execute(&mut *tx).await?;
            }
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(message.tenant_id.0),
                action: "message.delete",
                object_type: "message",
                object_id: message.id.to_string(),
                detail: serde_json::json!({ "size": message.size }),
            });
            tx.commit().await?;
        });
        self.changed(message.mailbox_id);
        Ok(())
    }
}

/// What one delivery is for the group commit: its copies, answered by their ids.
impl super::GroupCommit for Vec<NewMessage> {
    type Outcome = Vec<MessageId>;
    const MAX: usize = 256;
    const WHAT: &'static str = "delivery";

    async fn commit(store: &Store, batch: Vec<Self>) -> Result<Vec<Result<Self::Outcome>>> {
        store.deliver_batch(batch).await
    }
}
