//! Mailboxes (IMAP folders) of an account, and what IMAP sessions need of
//! them: UIDs handed out by the mailbox's own counter (never reused, kept
//! across restarts), a change counter (`highest_modseq`) that every change
//! in the mailbox bumps and stamps on what it touched, and tombstones of the
//! UIDs that left it, so that a session asks "what changed since N" in two
//! indexed queries. Every account has one mailbox of each special use
//! ([`Folder`]), made the first time it is needed; names are unique per
//! account whatever their case.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::messages::{flags_text, parse_flags};
use super::{AccountLock, Audit, INSERT_AUDIT, Pool, Store, WriteFirst};
use crate::model::{AccountId, Flag, Folder, Level, MailboxId, MessageId};
use crate::{Error, Result};

/// Where a stored message goes: the account's mailbox of a special use, or
/// a mailbox by id.
pub(super) enum Target {
    Role(Folder),
    /// Where a client put it (APPEND, COPY): not counted as mail received.
    Mailbox(MailboxId),
    /// Where delivery filed it (Sieve, a `+tag`): received mail.
    Filed(MailboxId),
}

pub(super) const TAKE_BY_ROLE: &str = "UPDATE mailboxes SET uid_next = uid_next + $3, highest_modseq = highest_modseq + 1 \
     WHERE account_id = $1 AND role = $2 RETURNING id, uid_next - $3, highest_modseq";
pub(super) const TAKE_BY_ID: &str = "UPDATE mailboxes SET uid_next = uid_next + $2, highest_modseq = highest_modseq + 1 \
     WHERE id = $1 RETURNING id, uid_next - $2, highest_modseq";
pub(super) const INSERT_MAILBOX: &str = "INSERT INTO mailboxes (id, account_id, name, name_key, role, uid_validity, subscribed, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING";
/// The account's next UIDVALIDITY: the time in seconds, or one more than the
/// last one given when that is not below it.
pub(super) const TAKE_UID_VALIDITY: &str = "UPDATE accounts SET last_uid_validity = \
     CASE WHEN last_uid_validity >= $2 THEN last_uid_validity + 1 ELSE $2 END WHERE id = $1 RETURNING last_uid_validity";
const BUMP: &str = "UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = $1 RETURNING highest_modseq";
pub(super) const BURY: &str = "INSERT INTO expunged (mailbox_id, uid, modseq, expunged_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = excluded.modseq, expunged_at = excluded.expunged_at";
const MAILBOX_COLUMNS: &str =
    "id, account_id, name, role, uid_validity, uid_next, highest_modseq, subscribed, created_at";
macro_rules! view_columns {
    () => {
        "uid, modseq, flags, keywords, rfc822_size, received_at, level, id"
    };
}

/// Makes a mailbox inside the caller's transaction (nothing when the name
/// is taken), with a UIDVALIDITY no mailbox of the account ever had, alive
/// or deleted (RFC 3501 §2.3.1.1). The special-use mailboxes are
/// subscribed; the others when `$subscribed`. Evaluates to whether it was made.
macro_rules! insert_mailbox {
    ($tx:expr, $id:expr, $account:expr, $name:expr, $role:expr, $subscribed:expr) => {{
        let id: uuid::Uuid = $id;
        let account: uuid::Uuid = $account;
        let name: &str = $name;
        let role: Option<&str> = $role;
        // A subscription outlives its mailbox: made again, it is subscribed again.
        let lost =
            sqlx::query("DELETE FROM lost_subscriptions WHERE account_id = $1 AND name_key = $2")
                .bind(account)
                .bind(name.to_lowercase())
                .execute(&mut *$tx)
                .await?
                .rows_affected()
                > 0;
        let subscribed: bool = $subscribed || role.is_some() || lost;
        let (validity,): (i64,) = sqlx::query_as(super::mailboxes::TAKE_UID_VALIDITY)
            .bind(account)
            .bind(super::mailboxes::now_uid_validity())
            .fetch_one(&mut *$tx)
            .await?;
        sqlx::query(super::mailboxes::INSERT_MAILBOX)
            .bind(id)
            .bind(account)
            .bind(name)
            .bind(name.to_lowercase())
            .bind(role)
            .bind(validity)
            .bind(subscribed)
            .bind(chrono::Utc::now())
            .execute(&mut *$tx)
            .await?
            .rows_affected()
            == 1
    }};
}

/// Takes `$n` UIDs in the target mailbox inside the caller's transaction and
/// bumps its change counter; evaluates to (mailbox id, first UID, modseq).
/// A special-use mailbox the account does not have yet is made first.
macro_rules! take_uids {
    ($tx:expr, $account:expr, $target:expr, $n:expr) => {{
        let n: i64 = $n;
        let account: crate::model::AccountId = $account;
        let taken: Option<(uuid::Uuid, i64, i64)> = match $target {
            super::mailboxes::Target::Role(role) => {
                let take = || {
                    sqlx::query_as(super::mailboxes::TAKE_BY_ROLE)
                        .bind(account.0)
                        .bind(role.as_str())
                        .bind(n)
                };
                match take().fetch_optional(&mut *$tx).await? {
                    Some(taken) => Some(taken),
                    None => {
                        let _ = insert_mailbox!(
                            $tx,
                            uuid::Uuid::now_v7(),
                            account.0,
                            role.default_name(),
                            Some(role.as_str()),
                            true
                        );
                        take().fetch_optional(&mut *$tx).await?
                    }
                }
            }
            super::mailboxes::Target::Mailbox(id) | super::mailboxes::Target::Filed(id) => {
                sqlx::query_as(super::mailboxes::TAKE_BY_ID)
                    .bind(id.0)
                    .bind(n)
                    .fetch_optional(&mut *$tx)
                    .await?
            }
        };
        taken.ok_or(crate::Error::NotFound("mailbox"))?
    }};
}

/// Records inside the caller's transaction that `$uid` left `$mailbox`.
macro_rules! bury {
    ($tx:expr, $mailbox:expr, $uid:expr) => {{
        let mailbox: uuid::Uuid = $mailbox;
        let (modseq,): (i64,) = sqlx::query_as(
            "UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = $1 RETURNING highest_modseq",
        )
        .bind(mailbox)
        .fetch_one(&mut *$tx)
        .await?;
        sqlx::query(super::mailboxes::BURY).bind(mailbox).bind($uid).bind(modseq).bind(chrono::Utc::now()).execute(&mut *$tx).await?;
    }};
}

/// Removes messages of a mailbox inside the caller's transaction (those
/// flagged `\Deleted` when `$only_deleted`, among `$uids` when given),
/// giving their bytes back and leaving tombstones; evaluates to
/// (UID, message, dispersed) of each.
macro_rules! remove_messages {
    ($tx:expr, $mailbox:expr, $uids:expr, $only_deleted:expr) => {{
        let mailbox: Uuid = $mailbox;
        let uids: Option<&UidRanges> = $uids;
        let only_deleted: bool = $only_deleted;
        // Rows are locked in the order delivery and APPEND lock them (the
        // tenant and its ancestors from the bottom up, the account, then the
        // mailbox), so that an expunge and an APPEND cannot deadlock on
        // PostgreSQL. Concurrent expunges queue on the first of them, and
        // the second finds nothing left to remove.
        let owner: Option<(Uuid, Uuid)> = sqlx::query_as(
            "SELECT a.id, a.tenant_id FROM mailboxes b JOIN accounts a ON a.id = b.account_id WHERE b.id = $1",
        )
        .bind(mailbox)
        .fetch_optional(&mut *$tx)
        .await?;
        if let Some((account, tenant)) = owner {
            let mut next = Some(tenant);
            let mut depth = 0;
            while let Some(id) = next {
                depth += 1;
                if depth > super::messages::MAX_TREE_DEPTH {
                    break;
                }
                let row: Option<(Option<Uuid>,)> = sqlx::query_as(
                    "UPDATE tenants SET storage_used_bytes = storage_used_bytes WHERE id = $1 RETURNING parent_id",
                )
                .bind(id)
                .fetch_optional(&mut *$tx)
                .await?;
                next = row.and_then(|(parent,)| parent);
            }
            sqlx::query("UPDATE accounts SET storage_used_bytes = storage_used_bytes WHERE id = $1")
                .bind(account)
                .execute(&mut *$tx)
                .await?;
        }
        let (modseq,): (i64,) = sqlx::query_as(BUMP).bind(mailbox).fetch_one(&mut *$tx).await?;
        let all = [(1i64, i64::MAX)];
        let select = if only_deleted {
            "SELECT id, uid, tenant_id, account_id, size, storage FROM messages \
             WHERE mailbox_id = $1 AND uid BETWEEN $2 AND $3 AND (' ' || flags || ' ') LIKE '% deleted %' ORDER BY uid"
        } else {
            "SELECT id, uid, tenant_id, account_id, size, storage FROM messages \
             WHERE mailbox_id = $1 AND uid BETWEEN $2 AND $3 ORDER BY uid"
        };
        let mut found: Vec<(Uuid, i64, Uuid, Uuid, i64, String)> = Vec::new();
        for &(low, high) in uids.unwrap_or(&all) {
            let rows: Vec<(Uuid, i64, Uuid, Uuid, i64, String)> =
                sqlx::query_as(select).bind(mailbox).bind(low).bind(high).fetch_all(&mut *$tx).await?;
            found.extend(rows);
        }
        let mut removed = Vec::with_capacity(found.len());
        let mut freed: std::collections::BTreeMap<(Uuid, Uuid), i64> = std::collections::BTreeMap::new();
        let now = Utc::now();
        for (id, uid, tenant, account, size, storage) in found {
            let gone = sqlx::query("DELETE FROM messages WHERE id = $1 AND mailbox_id = $2")
                .bind(id).bind(mailbox).execute(&mut *$tx).await?;
            if gone.rows_affected() != 1 {
                continue;
            }
            *freed.entry((tenant, account)).or_default() += size;
            sqlx::query(super::messages::SHRED_OBJECT).bind(id).bind(now).execute(&mut *$tx).await?;
            sqlx::query(BURY).bind(mailbox).bind(uid).bind(modseq).bind(now).execute(&mut *$tx).await?;
            removed.push((uid, MessageId(id), storage == "dispersed"));
        }
        for ((tenant, account), size) in freed {
            sqlx::query(super::messages::FREE_TENANT_STORAGE).bind(tenant).bind(size).execute(&mut *$tx).await?;
            sqlx::query(super::messages::FREE_ACCOUNT_STORAGE).bind(account).bind(size).execute(&mut *$tx).await?;
        }
        removed
    }};
}

/// The least UIDVALIDITY a new mailbox gets: the time in seconds (it fits 32
/// bits until 2106); [`TAKE_UID_VALIDITY`] goes above it when a mailbox of
/// the account was made in the same second.
pub(super) fn now_uid_validity() -> i64 {
    Utc::now().timestamp().clamp(1, i64::from(u32::MAX))
}

/// One mailbox of an account.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Mailbox {
    pub id: MailboxId,
    pub account_id: AccountId,
    /// Its IMAP name, with `/` between levels (`INBOX`, `Projects/2026`).
    pub name: String,
    /// Its special use, for the mailboxes every account has.
    pub role: Option<Folder>,
    /// With `uid_next`: the IMAP UIDs of this mailbox stay valid while this does not change.
    pub uid_validity: i64,
    pub uid_next: i64,
    /// Bumped by every change in the mailbox.
    pub highest_modseq: i64,
    pub subscribed: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct MailboxRow {
    id: Uuid,
    account_id: Uuid,
    name: String,
    role: Option<String>,
    uid_validity: i64,
    uid_next: i64,
    highest_modseq: i64,
    subscribed: bool,
    created_at: DateTime<Utc>,
}

impl TryFrom<MailboxRow> for Mailbox {
    type Error = Error;
    fn try_from(r: MailboxRow) -> Result<Mailbox> {
        Ok(Mailbox {
            id: MailboxId(r.id),
            account_id: AccountId(r.account_id),
            name: r.name,
            role: r
                .role
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| Error::Internal(format!("stored mailbox: {e}")))?,
            uid_validity: r.uid_validity,
            uid_next: r.uid_next,
            highest_modseq: r.highest_modseq,
            subscribed: r.subscribed,
            created_at: r.created_at,
        })
    }
}

/// What STATUS and the API count in a mailbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, ToSchema, FromRow)]
pub struct MailboxCounts {
    pub messages: i64,
    pub unseen: i64,
    pub deleted: i64,
    /// Sum of the messages' RFC822.SIZE.
    pub size: i64,
}

/// One message as a session's view of its mailbox holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewEntry {
    pub uid: i64,
    pub modseq: i64,
    pub flags: Vec<Flag>,
    pub keywords: Vec<String>,
    pub rfc822_size: i64,
    pub received_at: DateTime<Utc>,
    pub level: Level,
    pub id: MessageId,
}

#[derive(FromRow)]
struct ViewRow {
    uid: i64,
    modseq: i64,
    flags: String,
    keywords: String,
    rfc822_size: i64,
    received_at: DateTime<Utc>,
    level: String,
    id: Uuid,
}

impl TryFrom<ViewRow> for ViewEntry {
    type Error = Error;
    fn try_from(r: ViewRow) -> Result<ViewEntry> {
        let stored = |e: Error| Error::Internal(format!("stored message does not parse: {e}"));
        Ok(ViewEntry {
            uid: r.uid,
            modseq: r.modseq,
            flags: parse_flags(&r.flags).map_err(stored)?,
            keywords: r
                .keywords
                .split(' ')
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .collect(),
            rfc822_size: r.rfc822_size,
            received_at: r.received_at,
            level: r.level.parse().map_err(stored)?,
            id: MessageId(r.id),
        })
    }
}

/// One message of SQLite's aggregated view: the view's columns, tab-separated.
fn view_line(line: &str) -> Result<ViewEntry> {
    let bad = || Error::Internal(format!("stored message does not parse: `{line}`"));
    let fields: Vec<&str> = line.split('\t').collect();
    let [uid, modseq, flags, keywords, size, received_at, level, id] = fields[..] else {
        return Err(bad());
    };
    let number = |text: &str| text.parse::<i64>().map_err(|_| bad());
    let received_at = DateTime::parse_from_rfc3339(received_at)
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(received_at, "%Y-%m-%d %H:%M:%S%.f")
                .map(|n| n.and_utc().fixed_offset())
        })
        .map_err(|_| bad())?
        .to_utc();
    let id = Uuid::try_parse(id).map_err(|_| bad())?;
    ViewEntry::try_from(ViewRow {
        uid: number(uid)?,
        modseq: number(modseq)?,
        flags: flags.to_owned(),
        keywords: keywords.to_owned(),
        rfc822_size: number(size)?,
        received_at,
        level: level.to_owned(),
        id,
    })
}

/// What changed in a mailbox since a session last looked.
#[derive(Debug, Default)]
pub struct MailboxChanges {
    /// The counter as it was before the changes below were read.
    pub highest_modseq: i64,
    /// Messages added or whose flags changed, by UID.
    pub changed: Vec<ViewEntry>,
    /// UIDs that left the mailbox.
    pub expunged: Vec<i64>,
}

/// How STORE changes flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagOp {
    Add,
    Remove,
    Replace,
}

/// A STORE: flags and keywords added, removed or set.
#[derive(Clone, Debug)]
pub struct FlagChange {
    pub op: FlagOp,
    pub flags: Vec<Flag>,
    pub keywords: Vec<String>,
}

impl FlagChange {
    /// The flags and keywords after the change; keywords compare without case.
    pub fn apply(&self, flags: &[Flag], keywords: &[String]) -> (Vec<Flag>, Vec<String>) {
        let same = |a: &String, b: &String| a.eq_ignore_ascii_case(b);
        match self.op {
            FlagOp::Replace => (self.flags.clone(), dedup_keywords(self.keywords.clone())),
            FlagOp::Add => {
                let mut f = flags.to_vec();
                f.extend(self.flags.iter().filter(|x| !flags.contains(x)));
                let mut k = keywords.to_vec();
                k.extend(
                    self.keywords
                        .iter()
                        .filter(|x| !keywords.iter().any(|y| same(x, y)))
                        .cloned(),
                );
                (f, dedup_keywords(k))
            }
            FlagOp::Remove => (
                flags
                    .iter()
                    .filter(|x| !self.flags.contains(x))
                    .copied()
                    .collect(),
                keywords
                    .iter()
                    .filter(|x| !self.keywords.iter().any(|y| same(x, y)))
                    .cloned()
                    .collect(),
            ),
        }
    }
}

fn dedup_keywords(mut keywords: Vec<String>) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    keywords.retain(|k| {
        let lower = k.to_ascii_lowercase();
        if seen.contains(&lower) {
            false
        } else {
            seen.push(lower);
            true
        }
    });
    keywords
}

/// Keywords as stored; refuses what is not an IMAP atom, or a flag name.
pub(super) fn keywords_text(keywords: &[String]) -> Result<String> {
    for k in keywords {
        let atom = !k.is_empty()
            && k.len() <= 64
            && k.bytes()
                .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b));
        if !atom {
            return Err(Error::Invalid(format!(
                "`{k}` is not a keyword: use 1 to 64 printable ASCII characters without spaces or ( ) {{ % * \" \\ ]"
            )));
        }
    }
    Ok(dedup_keywords(keywords.to_vec()).join(" "))
}

/// A mailbox name as stored, and its key: INBOX in any case is `INBOX`
/// (with its children), levels are separated by `/` and none is empty.
pub fn mailbox_name(name: &str) -> Result<(String, String)> {
    let invalid = |why: &str| {
        Err(Error::Invalid(format!(
            "`{name}` is not a usable mailbox name: {why}"
        )))
    };
    if name.is_empty() || name.len() > 255 {
        return invalid("it must have 1 to 255 bytes");
    }
    if name.chars().any(|c| c.is_control() || c == '*' || c == '%') {
        return invalid("control characters and the wildcards * and % are not allowed");
    }
    if name
        .split('/')
        .any(|level| level.is_empty() || level.trim() != level)
    {
        return invalid("no level may be empty or start or end with a space");
    }
    let name = match name.split_once('/') {
        Some((first, rest)) if first.eq_ignore_ascii_case("inbox") => format!("INBOX/{rest}"),
        None if name.eq_ignore_ascii_case("inbox") => "INBOX".to_owned(),
        _ => name.to_owned(),
    };
    let key = name.to_lowercase();
    Ok((name, key))
}

const COUNT_MAILBOXES: &str = "SELECT COUNT(*) FROM mailboxes WHERE account_id = $1";

/// Refuses a change that leaves an account with more than `max` mailboxes.
fn check_mailbox_cap(count: i64, max: usize) -> Result<()> {
    if usize::try_from(count).unwrap_or(usize::MAX) > max {
        return Err(Error::LimitExceeded(format!(
            "an account may have at most {max} mailboxes; delete some before creating more"
        )));
    }
    Ok(())
}

/// UID ranges (inclusive), as the queries below take them.
pub type UidRanges = [(i64, i64)];

impl Store {
    /// Changes made in this process, by mailbox, for sessions to look at.
    pub fn mailbox_changes_feed(&self) -> tokio::sync::broadcast::Receiver<MailboxId> {
        self.changes.subscribe()
    }

    pub(super) fn changed(&self, mailbox: MailboxId) {
        let _ = self.changes.send(mailbox);
        if let Some(signals) = self.signals.get() {
            signals.tell(super::signals::News::Mailbox(mailbox));
        }
    }

    /// Makes the special-use mailboxes the account does not have yet.
    pub async fn ensure_mailboxes(&self, account: AccountId) -> Result<()> {
        let count = "SELECT COUNT(*) FROM mailboxes WHERE account_id = $1 AND role IS NOT NULL";
        let (n,): (i64,) =
            on_pool!(&self.pool, p => sqlx::query_as(count).bind(account.0).fetch_one(p).await)?;
        if n as usize == Folder::ALL.len() {
            return Ok(());
        }
        on_pool!(&self.pool, p => {
            // Locked before the read, so that concurrent first sessions queue
            // here (a SQLite transaction that reads before it writes fails
            // when another wrote meanwhile).
            let mut tx = p.begin_account_locked(account.0).await?;
            let have: Vec<(String,)> = sqlx::query_as("SELECT role FROM mailboxes WHERE account_id = $1 AND role IS NOT NULL")
                .bind(account.0).fetch_all(&mut *tx).await?;
            for role in Folder::ALL {
                if !have.iter().any(|(r,)| r == role.as_str()) {
                    let _ = insert_mailbox!(tx, Uuid::now_v7(), account.0, role.default_name(), Some(role.as_str()), true);
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The account's mailboxes, INBOX first, then by name.
    pub async fn mailboxes(&self, account: AccountId) -> Result<Vec<Mailbox>> {
        self.ensure_mailboxes(account).await?;
        let sql = super::join_sql(
            "SELECT ",
            MAILBOX_COLUMNS,
            " FROM mailboxes WHERE account_id = $1 ORDER BY CASE WHEN name = 'INBOX' THEN 0 ELSE 1 END, name_key",
        );
        let rows: Vec<MailboxRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(account.0).fetch_all(p).await)?;
        rows.into_iter().map(Mailbox::try_from).collect()
    }

    pub async fn mailbox(&self, id: MailboxId) -> Result<Option<Mailbox>> {
        let sql = super::join_sql("SELECT ", MAILBOX_COLUMNS, " FROM mailboxes WHERE id = $1");
        let row: Option<MailboxRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id.0).fetch_optional(p).await)?;
        row.map(Mailbox::try_from).transpose()
    }

    /// The account's mailbox of that name (any case), if it has one.
    pub async fn mailbox_named(&self, account: AccountId, name: &str) -> Result<Option<Mailbox>> {
        let Ok((_, key)) = mailbox_name(name) else {
            return Ok(None);
        };
        self.ensure_mailboxes(account).await?;
        let sql = super::join_sql(
            "SELECT ",
            MAILBOX_COLUMNS,
            " FROM mailboxes WHERE account_id = $1 AND name_key = $2",
        );
        let row: Option<MailboxRow> = on_pool!(&self.pool, p => sqlx::query_as(sql).bind(account.0).bind(key).fetch_optional(p).await)?;
        row.map(Mailbox::try_from).transpose()
    }

    /// The account's mailbox of a special use.
    pub async fn mailbox_of_role(&self, account: AccountId, role: Folder) -> Result<Mailbox> {
        self.ensure_mailboxes(account).await?;
        let sql = super::join_sql(
            "SELECT ",
            MAILBOX_COLUMNS,
            " FROM mailboxes WHERE account_id = $1 AND role = $2",
        );
        let row: Option<MailboxRow> = on_pool!(&self.pool, p => sqlx::query_as(sql).bind(account.0).bind(role.as_str()).fetch_optional(p).await)?;
        row.map(Mailbox::try_from)
            .transpose()?
            .ok_or(Error::NotFound("mailbox"))
    }

    pub async fn mailbox_counts(&self, id: MailboxId) -> Result<MailboxCounts> {
        let sql = "SELECT COUNT(*) AS messages, \
               COALESCE(SUM(CASE WHEN (' ' || flags || ' ') LIKE '% seen %' THEN 0 ELSE 1 END), 0) AS unseen, \
               COALESCE(SUM(CASE WHEN (' ' || flags || ' ') LIKE '% deleted %' THEN 1 ELSE 0 END), 0) AS deleted, \
               COALESCE(SUM(rfc822_size), 0) AS size \
             FROM messages WHERE mailbox_id = $1";
        // SUM is NUMERIC on PostgreSQL: cast each back.
        let sql = match &self.pool {
            Pool::Sqlite(_) => sqlx::AssertSqlSafe(sql.to_owned()),
            Pool::Postgres(_) => sqlx::AssertSqlSafe(
                sql.replace("COALESCE(SUM(", "CAST(COALESCE(SUM(")
                    .replace("), 0) AS", "), 0) AS BIGINT) AS"),
            ),
        };
        let counts: MailboxCounts =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id.0).fetch_one(p).await)?;
        Ok(counts)
    }

    /// Makes a mailbox, and the levels above it that do not exist yet.
    /// `subscribe` adds it to the subscriptions (the API and Sieve's
    /// `:create` do; IMAP CREATE does not, RFC 9051 §6.3.4).
    pub async fn create_mailbox(
        &self,
        actor: &str,
        account: AccountId,
        name: &str,
        subscribe: bool,
    ) -> Result<Mailbox> {
        let (name, _) = mailbox_name(name)?;
        self.ensure_mailboxes(account).await?;
        let levels: Vec<&str> = name.split('/').collect();
        let id = MailboxId::new();
        let max = self.max_mailboxes;
        on_pool!(&self.pool, p => {
            let mut tx = p.begin_account_locked(account.0).await?;
            let tenant: Option<(Uuid,)> = sqlx::query_as("SELECT tenant_id FROM accounts WHERE id = $1")
                .bind(account.0).fetch_optional(&mut *tx).await?;
            let (tenant,) = tenant.ok_or(Error::NotFound("account"))?;
            for depth in 1..levels.len() {
                let parent = levels[..depth].join("/");
                let _ = insert_mailbox!(tx, Uuid::now_v7(), account.0, &parent, None, subscribe);
            }
            if !insert_mailbox!(tx, id.0, account.0, &name, None, subscribe) {
                return Err(Error::Conflict(format!("a mailbox named `{name}` exists already")));
            }
            // Counted after the inserts, under the account's lock: the levels
            // made on the way count too, and no concurrent creation slips in.
            let (count,): (i64,) = sqlx::query_as(COUNT_MAILBOXES)
                .bind(account.0).fetch_one(&mut *tx).await?;
            check_mailbox_cap(count, max)?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(tenant),
                action: "mailbox.create",
                object_type: "mailbox",
                object_id: id.to_string(),
                detail: serde_json::json!({ "account": account, "name": name }),
            });
            tx.commit().await?;
        });
        self.mailbox(id).await?.ok_or(Error::NotFound("mailbox"))
    }

    /// Renames a mailbox and the mailboxes under it. Renaming INBOX moves
    /// its messages to a new mailbox of that name and leaves INBOX empty
    /// (RFC 9051 §6.3.6).
    pub async fn rename_mailbox(
        &self,
        actor: &str,
        mailbox: &Mailbox,
        new_name: &str,
    ) -> Result<Mailbox> {
        let (new_name, new_key) = mailbox_name(new_name)?;
        if mailbox.role == Some(Folder::Inbox) {
            let target = self
                .create_mailbox(actor, mailbox.account_id, &new_name, mailbox.subscribed)
                .await?;
            self.move_messages(mailbox, &[(1, i64::MAX)], &target)
                .await?;
            return self
                .mailbox(target.id)
                .await?
                .ok_or(Error::NotFound("mailbox"));
        }
        let old_key = mailbox.name.to_lowercase();
        if new_key == old_key {
            return Ok(mailbox.clone());
        }
        if new_key.starts_with(&format!("{old_key}/")) {
            return Err(Error::Invalid(format!(
                "`{}` cannot move under itself",
                mailbox.name
            )));
        }
        let all = self.mailboxes(mailbox.account_id).await?;
        if all.iter().any(|m| m.name.to_lowercase() == new_key) {
            return Err(Error::Conflict(format!(
                "a mailbox named `{new_name}` exists already"
            )));
        }
        let prefix = format!("{old_key}/");
        let renamed: Vec<(Uuid, String)> = all
            .iter()
            .filter(|m| m.id == mailbox.id || m.name.to_lowercase().starts_with(&prefix))
            .map(|m| {
                (
                    m.id.0,
                    format!("{new_name}{}", &m.name[mailbox.name.len()..]),
                )
            })
            .collect();
        let levels: Vec<&str> = new_name.split('/').collect();
        let max = self.max_mailboxes;
        on_pool!(&self.pool, p => {
            let mut tx = p.begin_account_locked(mailbox.account_id.0).await?;
            for depth in 1..levels.len() {
                let parent = levels[..depth].join("/");
                if !all.iter().any(|m| m.name.to_lowercase() == parent.to_lowercase()) {
                    let _ = insert_mailbox!(tx, Uuid::now_v7(), mailbox.account_id.0, &parent, None, false);
                }
            }
            let (count,): (i64,) = sqlx::query_as(COUNT_MAILBOXES)
                .bind(mailbox.account_id.0).fetch_one(&mut *tx).await?;
            check_mailbox_cap(count, max)?;
            for (id, name) in &renamed {
                sqlx::query("UPDATE mailboxes SET name = $2, name_key = $3 WHERE id = $1")
                    .bind(id).bind(name).bind(name.to_lowercase()).execute(&mut *tx).await
                    .map_err(|e| if super::unique_violation(&e) {
                        Error::Conflict(format!("a mailbox named `{name}` exists already"))
                    } else { e.into() })?;
            }
            let (tenant,): (Uuid,) = sqlx::query_as("SELECT tenant_id FROM accounts WHERE id = $1")
                .bind(mailbox.account_id.0).fetch_one(&mut *tx).await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(tenant),
                action: "mailbox.rename",
                object_type: "mailbox",
                object_id: mailbox.id.to_string(),
                detail: serde_json::json!({ "from": mailbox.name, "to": new_name }),
            });
            tx.commit().await?;
        });
        self.mailbox(mailbox.id)
            .await?
            .ok_or(Error::NotFound("mailbox"))
    }

    /// Deletes a mailbox of the account's own with its messages, freeing
    /// their bytes; returns the dispersed ones, whose shards go next.
    pub async fn delete_mailbox(&self, actor: &str, mailbox: &Mailbox) -> Result<Vec<MessageId>> {
        if let Some(role) = mailbox.role {
            return Err(Error::Conflict(format!(
                "`{}` is the account's {} mailbox and cannot be deleted",
                mailbox.name,
                role.as_str()
            )));
        }
        let prefix = format!("{}/", mailbox.name.to_lowercase());
        if self
            .mailboxes(mailbox.account_id)
            .await?
            .iter()
            .any(|m| m.name.to_lowercase().starts_with(&prefix))
        {
            return Err(Error::Conflict(format!(
                "`{}` has mailboxes under it: delete or move them first",
                mailbox.name
            )));
        }
        let shredded = on_pool!(&self.pool, p => {
            let mut tx = p.begin_write().await?;
            let shredded = remove_messages!(tx, mailbox.id.0, None::<&UidRanges>, false);
            sqlx::query("DELETE FROM expunged WHERE mailbox_id = $1").bind(mailbox.id.0).execute(&mut *tx).await?;
            if mailbox.subscribed {
                sqlx::query("INSERT INTO lost_subscriptions (account_id, name_key, name) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                    .bind(mailbox.account_id.0).bind(mailbox.name.to_lowercase()).bind(&mailbox.name)
                    .execute(&mut *tx).await?;
            }
            sqlx::query("DELETE FROM mailboxes WHERE id = $1").bind(mailbox.id.0).execute(&mut *tx).await?;
            let (tenant,): (Uuid,) = sqlx::query_as("SELECT tenant_id FROM accounts WHERE id = $1")
                .bind(mailbox.account_id.0).fetch_one(&mut *tx).await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(tenant),
                action: "mailbox.delete",
                object_type: "mailbox",
                object_id: mailbox.id.to_string(),
                detail: serde_json::json!({ "name": mailbox.name, "messages": shredded.len() }),
            });
            tx.commit().await?;
            shredded
        });
        self.changed(mailbox.id);
        Ok(shredded
            .into_iter()
            .filter(|(_, _, dispersed)| *dispersed)
            .map(|(_, id, _)| id)
            .collect())
    }

    /// Names the account subscribed to whose mailbox was deleted since.
    pub async fn lost_subscriptions(&self, account: AccountId) -> Result<Vec<String>> {
        let sql = "SELECT name FROM lost_subscriptions WHERE account_id = $1 ORDER BY name_key";
        let rows: Vec<(String,)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(account.0).fetch_all(p).await)?;
        Ok(rows.into_iter().map(|(n,)| n).collect())
    }

    /// Takes a name without a mailbox out of the subscriptions.
    pub async fn unsubscribe_lost(&self, account: AccountId, name: &str) -> Result<()> {
        let sql = "DELETE FROM lost_subscriptions WHERE account_id = $1 AND name_key = $2";
        on_pool!(&self.pool, p => sqlx::query(sql).bind(account.0).bind(name.to_lowercase()).execute(p).await.map(|_| ()))?;
        Ok(())
    }

    pub async fn subscribe_mailbox(&self, id: MailboxId, subscribed: bool) -> Result<()> {
        let sql = "UPDATE mailboxes SET subscribed = $2 WHERE id = $1";
        on_pool!(&self.pool, p => sqlx::query(sql).bind(id.0).bind(subscribed).execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// The mailbox and every message in it by UID, for SELECT. The counter
    /// is read first: whatever changes meanwhile is seen again later.
    pub async fn mailbox_view(&self, id: MailboxId) -> Result<Option<(Mailbox, Vec<ViewEntry>)>> {
        let Some(mailbox) = self.mailbox(id).await? else {
            return Ok(None);
        };
        let entries = match &self.pool {
            // SQLite reads the index in 50 ms for 100,000 messages, but sqlx
            // hands rows over one by one at several microseconds each: the
            // whole view comes back as one text, 4-5 times faster.
            Pool::Sqlite(p) => {
                let sql = "SELECT group_concat(uid || char(9) || modseq || char(9) || flags || char(9) || keywords || char(9) \
                       || rfc822_size || char(9) || received_at || char(9) || level || char(9) || hex(id), char(10) ORDER BY uid) \
                     FROM messages WHERE mailbox_id = $1";
                let (all,): (Option<String>,) = sqlx::query_as(sql).bind(id.0).fetch_one(p).await?;
                all.as_deref()
                    .unwrap_or_default()
                    .split('\n')
                    .filter(|l| !l.is_empty())
                    .map(view_line)
                    .collect::<Result<_>>()?
            }
            Pool::Postgres(p) => {
                let sql = concat!(
                    "SELECT ",
                    view_columns!(),
                    " FROM messages WHERE mailbox_id = $1 ORDER BY uid"
                );
                let rows: Vec<ViewRow> = sqlx::query_as(sql).bind(id.0).fetch_all(p).await?;
                rows.into_iter()
                    .map(ViewEntry::try_from)
                    .collect::<Result<_>>()?
            }
        };
        Ok(Some((mailbox, entries)))
    }

    /// The mailbox's change counter; `None` once it is deleted.
    pub async fn highest_modseq(&self, id: MailboxId) -> Result<Option<i64>> {
        let sql = "SELECT highest_modseq FROM mailboxes WHERE id = $1";
        let row: Option<(i64,)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id.0).fetch_optional(p).await)?;
        Ok(row.map(|(m,)| m))
    }

    /// Takes the messages up to `up_to` as \Recent for the calling session
    /// (RFC 3501 §2.3.2: one session sees a message as recent, the first
    /// that selects its mailbox or sees it arrive). Returns the UID above
    /// which the messages are this session's recent ones: `up_to` when
    /// another session took them first.
    pub async fn claim_recent(&self, id: MailboxId, up_to: i64) -> Result<i64> {
        let read = "SELECT recent_uid FROM mailboxes WHERE id = $1";
        let take = "UPDATE mailboxes SET recent_uid = $2 WHERE id = $1 AND recent_uid = $3";
        // Compare and swap: of concurrent sessions, exactly one takes each UID.
        loop {
            let row: Option<(i64,)> =
                on_pool!(&self.pool, p => sqlx::query_as(read).bind(id.0).fetch_optional(p).await)?;
            let Some((recent,)) = row else {
                return Ok(up_to);
            };
            if recent >= up_to {
                return Ok(up_to);
            }
            let done = on_pool!(&self.pool, p => sqlx::query(take).bind(id.0).bind(up_to).bind(recent).execute(p).await.map(|d| d.rows_affected()))?;
            if done == 1 {
                return Ok(recent);
            }
        }
    }

    /// How many messages no session has seen as \Recent yet (STATUS RECENT,
    /// and EXAMINE, which takes none).
    pub async fn recent_since(&self, id: MailboxId) -> Result<(i64, i64)> {
        let sql = "SELECT b.recent_uid, (SELECT COUNT(*) FROM messages m WHERE m.mailbox_id = b.id AND m.uid > b.recent_uid) \
             FROM mailboxes b WHERE b.id = $1";
        let row: Option<(i64, i64)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id.0).fetch_optional(p).await)?;
        row.ok_or(Error::NotFound("mailbox"))
    }

    /// The UIDs that left the mailbox after `since` (QRESYNC's VANISHED
    /// (EARLIER)), or `None` when tombstones that old were pruned and the
    /// caller must compare what the client knows with what is there.
    pub async fn expunged_since(&self, id: MailboxId, since: i64) -> Result<Option<Vec<i64>>> {
        let gone = "SELECT uid FROM expunged WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid";
        let floor = "SELECT pruned_modseq FROM mailboxes WHERE id = $1";
        // The tombstones first, then the floor: a prune in between raises the
        // floor, and the answer falls back rather than miss what was pruned.
        let rows: Vec<(i64,)> = on_pool!(&self.pool, p => sqlx::query_as(gone).bind(id.0).bind(since).fetch_all(p).await)?;
        let row: Option<(i64,)> =
            on_pool!(&self.pool, p => sqlx::query_as(floor).bind(id.0).fetch_optional(p).await)?;
        let Some((pruned,)) = row else {
            return Err(Error::NotFound("mailbox"));
        };
        if since < pruned {
            return Ok(None);
        }
        Ok(Some(rows.into_iter().map(|(u,)| u).collect()))
    }

    /// Removes the tombstones left before `before`, remembering per mailbox
    /// the highest modseq removed; returns how many went.
    pub async fn prune_tombstones(&self, before: DateTime<Utc>) -> Result<u64> {
        let floor = "UPDATE mailboxes SET pruned_modseq = \
               (SELECT MAX(e.modseq) FROM expunged e WHERE e.mailbox_id = mailboxes.id AND e.expunged_at < $1) \
             WHERE id IN (SELECT mailbox_id FROM expunged WHERE expunged_at < $1)";
        let prune = "DELETE FROM expunged WHERE expunged_at < $1";
        let pruned = on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(floor).bind(before).execute(&mut *tx).await?;
            let done = sqlx::query(prune).bind(before).execute(&mut *tx).await?;
            tx.commit().await?;
            done.rows_affected()
        });
        Ok(pruned)
    }

    /// What changed in the mailbox after `since`; `None` once it is deleted.
    pub async fn mailbox_changes(
        &self,
        id: MailboxId,
        since: i64,
    ) -> Result<Option<MailboxChanges>> {
        let Some(highest) = self.highest_modseq(id).await? else {
            return Ok(None);
        };
        if highest <= since {
            return Ok(Some(MailboxChanges {
                highest_modseq: highest,
                ..MailboxChanges::default()
            }));
        }
        let changed = concat!(
            "SELECT ",
            view_columns!(),
            " FROM messages WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid"
        );
        let expunged =
            "SELECT uid FROM expunged WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid";
        let (rows, gone): (Vec<ViewRow>, Vec<(i64,)>) = on_pool!(&self.pool, p => (
            sqlx::query_as(changed).bind(id.0).bind(since).fetch_all(p).await?,
            sqlx::query_as(expunged).bind(id.0).bind(since).fetch_all(p).await?,
        ));
        Ok(Some(MailboxChanges {
            highest_modseq: highest,
            changed: rows
                .into_iter()
                .map(ViewEntry::try_from)
                .collect::<Result<_>>()?,
            expunged: gone.into_iter().map(|(u,)| u).collect(),
        }))
    }

    /// Changes the flags of the messages with these UIDs; returns those that
    /// changed, as they are now, and the UIDs left alone because they
    /// changed after `unchanged_since` (RFC 7162's conditional STORE).
    /// Concurrent changes in one mailbox queue on its row, so that none is
    /// lost and the condition holds when the change is made.
    pub async fn store_flags(
        &self,
        mailbox: MailboxId,
        uids: &UidRanges,
        change: &FlagChange,
        unchanged_since: Option<u64>,
    ) -> Result<(Vec<ViewEntry>, Vec<i64>)> {
        let unchanged_since = unchanged_since.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        keywords_text(&change.keywords)?;
        let select = concat!(
            "SELECT ",
            view_columns!(),
            " FROM messages WHERE mailbox_id = $1 AND uid BETWEEN $2 AND $3 ORDER BY uid"
        );
        let update = "UPDATE messages SET flags = $2, keywords = $3, modseq = $4 WHERE id = $1";
        let (changed, modified) = on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let (modseq,): (i64,) = sqlx::query_as(BUMP).bind(mailbox.0).fetch_one(&mut *tx).await?;
            let mut changed = Vec::new();
            let mut modified = Vec::new();
            for &(low, high) in uids {
                let rows: Vec<ViewRow> = sqlx::query_as(select).bind(mailbox.0).bind(low).bind(high).fetch_all(&mut *tx).await?;
                for row in rows {
                    let mut entry = ViewEntry::try_from(row)?;
                    if unchanged_since.is_some_and(|since| entry.modseq > since) {
                        modified.push(entry.uid);
                        continue;
                    }
                    let (flags, keywords) = change.apply(&entry.flags, &entry.keywords);
                    if same_set(&flags, &entry.flags) && same_keywords(&keywords, &entry.keywords) {
                        continue;
                    }
                    sqlx::query(update).bind(entry.id.0).bind(flags_text(&flags)).bind(keywords.join(" ")).bind(modseq)
                        .execute(&mut *tx).await?;
                    entry.flags = flags;
                    entry.keywords = keywords;
                    entry.modseq = modseq;
                    changed.push(entry);
                }
            }
            if changed.is_empty() {
                tx.rollback().await?;
            } else {
                tx.commit().await?;
            }
            (changed, modified)
        });
        if !changed.is_empty() {
            self.changed(mailbox);
        }
        Ok((changed, modified))
    }

    /// Moves the messages with these UIDs to another mailbox of the account
    /// (RFC 6851): new UIDs there, in the same order, tombstones here.
    /// Returns (old UID, new UID) pairs.
    pub async fn move_messages(
        &self,
        from: &Mailbox,
        uids: &UidRanges,
        to: &Mailbox,
    ) -> Result<Vec<(i64, i64)>> {
        if from.account_id != to.account_id {
            return Err(Error::Invalid(
                "messages move only between mailboxes of one account".into(),
            ));
        }
        let select = "SELECT id, uid FROM messages WHERE mailbox_id = $1 AND uid BETWEEN $2 AND $3 ORDER BY uid";
        let moved = on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            // Both rows are locked in the order of their ids, whatever the
            // direction of the move, so that two moves cannot deadlock.
            if to.id.0 < from.id.0 {
                sqlx::query(BUMP).bind(to.id.0).execute(&mut *tx).await?;
            }
            let (modseq_from,): (i64,) = sqlx::query_as(BUMP).bind(from.id.0).fetch_one(&mut *tx).await?;
            let mut found: Vec<(Uuid, i64)> = Vec::new();
            for &(low, high) in uids {
                let rows: Vec<(Uuid, i64)> = sqlx::query_as(select).bind(from.id.0).bind(low).bind(high).fetch_all(&mut *tx).await?;
                found.extend(rows);
            }
            if found.is_empty() {
                tx.rollback().await?;
                return Ok(Vec::new());
            }
            let (_, first, modseq_to) = take_uids!(tx, to.account_id, &Target::Mailbox(to.id), found.len() as i64);
            let mut moved = Vec::with_capacity(found.len());
            let now = Utc::now();
            for (i, (id, uid)) in found.into_iter().enumerate() {
                let new_uid = first + i as i64;
                sqlx::query("UPDATE messages SET mailbox_id = $2, uid = $3, modseq = $4 WHERE id = $1")
                    .bind(id).bind(to.id.0).bind(new_uid).bind(modseq_to).execute(&mut *tx).await?;
                sqlx::query(BURY).bind(from.id.0).bind(uid).bind(modseq_from).bind(now).execute(&mut *tx).await?;
                moved.push((uid, new_uid));
            }
            tx.commit().await?;
            moved
        });
        self.changed(from.id);
        self.changed(to.id);
        Ok(moved)
    }

    /// Removes the messages flagged `\Deleted` (among these UIDs, if given),
    /// freeing their bytes. Returns (UID, message, dispersed) of each.
    pub async fn expunge(
        &self,
        mailbox: MailboxId,
        uids: Option<&UidRanges>,
    ) -> Result<Vec<(i64, MessageId, bool)>> {
        let removed = on_pool!(&self.pool, p => {
            let mut tx = p.begin_write().await?;
            let removed = remove_messages!(tx, mailbox.0, uids, true);
            if removed.is_empty() {
                tx.rollback().await?;
            } else {
                tx.commit().await?;
            }
            removed
        });
        if !removed.is_empty() {
            self.changed(mailbox);
        }
        Ok(removed)
    }
}

fn same_set(a: &[Flag], b: &[Flag]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

fn same_keywords(a: &[String], b: &[String]) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|x| b.iter().any(|y| y.eq_ignore_ascii_case(x)))
}
