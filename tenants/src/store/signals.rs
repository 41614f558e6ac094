//! Telling other processes what changed. Within a process, sessions and
//! workers hear of a new message or job at once (a broadcast, a
//! [`tokio::sync::Notify`]); across processes on PostgreSQL, the same news
//! travels by `NOTIFY` and comes back through one `LISTEN`ing connection per
//! process, so that IMAP IDLE and the job workers of another process need
//! not ask the database every second. SQLite has no such channel: there,
//! another process finds changes when it polls.
//!
//! A notification carries ids only (mailboxes, accounts and tenants whose
//! right to act changed), never content, and names
//! the process that sent it, which ignores its own. News is batched: under
//! load, one `NOTIFY` carries many mailboxes.

use std::collections::BTreeSet;
use std::sync::Arc;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{Notify, broadcast, mpsc};
use uuid::Uuid;

use super::AccessChange;
use super::standing::Held;
use crate::model::{AccountId, ApiKeyId, DomainId, MailboxId, TenantId};

/// The channel of changed mailboxes: `<origin> <mailbox> <mailbox>…`.
const MAILBOXES: &str = "caliop_mailboxes";
/// The channel of new jobs: `<origin>`.
const JOBS: &str = "caliop_jobs";
/// The channel of changes of who may act: `<origin> <kind>:<id>[:<id>]…`.
const ACCESS: &str = "caliop_access";
/// What one notification carries at most (PostgreSQL allows under 8000 bytes).
const MAX_PAYLOAD: usize = 7000;

/// What this process tells the others.
#[derive(Debug)]
pub(super) enum News {
    Mailbox(MailboxId),
    Jobs,
    Access(AccessChange),
}

/// What hears the news of other processes in this one.
pub(super) struct Hearers {
    /// IMAP sessions, of changed mailboxes.
    pub(super) changes: broadcast::Sender<MailboxId>,
    /// The workers, of new jobs.
    pub(super) jobs: Arc<Notify>,
    /// Open sessions, of changes of who may act.
    pub(super) access: broadcast::Sender<AccessChange>,
    /// Remembered standings, forgotten at such a change.
    pub(super) held: Arc<Held>,
}

/// An access change as one word of a notification.
fn access_word(change: AccessChange) -> String {
    match change {
        AccessChange::Account(id) => format!("a:{}", id.0.simple()),
        AccessChange::Tenant(id) => format!("t:{}", id.0.simple()),
        AccessChange::AppPassword(account, id) => {
            format!("p:{}:{}", account.0.simple(), id.simple())
        }
        AccessChange::Domain(id) => format!("d:{}", id.0.simple()),
        AccessChange::ApiKey(id) => format!("k:{}", id.0.simple()),
    }
}

/// The access change a word names; `None` for a word this version does not know.
fn parse_access(word: &str) -> Option<AccessChange> {
    let (kind, ids) = word.split_once(':')?;
    let mut ids = ids.split(':').map(Uuid::parse_str);
    let first = ids.next()?.ok()?;
    let change = match kind {
        "a" => AccessChange::Account(AccountId(first)),
        "t" => AccessChange::Tenant(TenantId(first)),
        "p" => AccessChange::AppPassword(AccountId(first), ids.next()?.ok()?),
        "d" => AccessChange::Domain(DomainId(first)),
        "k" => AccessChange::ApiKey(ApiKeyId(first)),
        _ => return None,
    };
    ids.next().is_none().then_some(change)
}

/// The sending half, shared by every clone of the store.
#[derive(Debug)]
pub(super) struct Signals {
    news: mpsc::UnboundedSender<News>,
}

impl Signals {
    pub(super) fn tell(&self, news: News) {
        let _ = self.news.send(news);
    }
}

/// Starts the publisher and the listener of a PostgreSQL store: what this
/// process changed goes out, what others changed comes in as if it had
/// happened here (see [`Hearers`]). Both end when the pool closes.
pub(super) async fn start(pool: &PgPool, hearers: Hearers) -> crate::Result<Signals> {
    let origin = Uuid::now_v7().simple().to_string();
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([MAILBOXES, JOBS, ACCESS]).await?;
    tokio::spawn(listen(listener, origin.clone(), hearers));
    let (news, queue) = mpsc::unbounded_channel();
    tokio::spawn(publish(pool.clone(), origin, queue));
    Ok(Signals { news })
}

/// Sends what is queued, as few notifications as it fits in.
async fn publish(pool: PgPool, origin: String, mut queue: mpsc::UnboundedReceiver<News>) {
    while let Some(first) = queue.recv().await {
        let mut mailboxes = BTreeSet::new();
        let mut access = Vec::new();
        let mut jobs = false;
        let mut next = Some(first);
        while let Some(news) = next {
            match news {
                News::Mailbox(id) => {
                    mailboxes.insert(id.0.simple().to_string());
                }
                News::Jobs => jobs = true,
                News::Access(change) => access.push(access_word(change)),
            }
            next = queue.try_recv().ok();
        }
        // Access first: a session told of new mail must not outrun the end of its right to read it.
        let mut sent = notify(&pool, ACCESS, &batched(&origin, access)).await;
        if sent.is_ok() {
            sent = notify(&pool, MAILBOXES, &batched(&origin, mailboxes)).await;
        }
        if sent.is_ok() && jobs {
            sent = notify(&pool, JOBS, std::slice::from_ref(&origin)).await;
        }
        match sent {
            Ok(()) => {}
            Err(sqlx::Error::PoolClosed) => return,
            // Others find the change when they poll.
            Err(e) => tracing::warn!(error = %e, "telling other processes of a change failed"),
        }
    }
}

/// `words` after `origin`, in as few payloads as fit.
fn batched(origin: &str, words: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut payload = origin.to_owned();
    for word in words {
        if payload.len() + 1 + word.len() > MAX_PAYLOAD {
            payloads.push(std::mem::replace(&mut payload, origin.to_owned()));
        }
        payload.push(' ');
        payload.push_str(&word);
    }
    if payload.len() > origin.len() {
        payloads.push(payload);
    }
    payloads
}

async fn notify(pool: &PgPool, channel: &str, payloads: &[String]) -> Result<(), sqlx::Error> {
    if payloads.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
        .bind(channel)
        .bind(payloads)
        .execute(pool)
        .await
        .map(|_| ())
}

/// Hands what other processes changed to this one's sessions and workers.
async fn listen(mut listener: PgListener, origin: String, hearers: Hearers) {
    let Hearers {
        changes,
        jobs,
        access,
        held,
    } = hearers;
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                let mut words = notification.payload().split(' ');
                if words.next() == Some(origin.as_str()) {
                    continue;
                }
                match notification.channel() {
                    JOBS => jobs.notify_waiters(),
                    ACCESS => {
                        held.forget();
                        for word in words {
                            // A kind this version does not know: every session looks again.
                            let change = parse_access(word)
                                .unwrap_or(AccessChange::Tenant(TenantId(Uuid::nil())));
                            let _ = access.send(change);
                        }
                    }
                    _ => {
                        for id in words.filter_map(|w| Uuid::parse_str(w).ok()) {
                            let _ = changes.send(MailboxId(id));
                        }
                    }
                }
            }
            // The connection dropped and came back: news sent meanwhile is
            // lost, so the workers look now, remembered standings are
            // forgotten (sessions look when they poll).
            Ok(None) => {
                tracing::warn!(
                    "the database connection that hears other processes was re-established"
                );
                held.forget();
                jobs.notify_waiters();
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "hearing other processes failed; trying again");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_access_change_crosses_as_one_word_and_back() {
        let account = AccountId::new();
        let changes = [
            AccessChange::Account(account),
            AccessChange::Tenant(TenantId::new()),
            AccessChange::AppPassword(account, Uuid::now_v7()),
            AccessChange::Domain(DomainId::new()),
            AccessChange::ApiKey(ApiKeyId(Uuid::now_v7())),
        ];
        for change in changes {
            let word = access_word(change);
            assert!(!word.contains(' '), "{word}");
            assert_eq!(parse_access(&word), Some(change), "{word}");
        }
        assert_eq!(parse_access("x:00000000000000000000000000000000"), None);
        assert_eq!(parse_access("a:not-an-id"), None);
        assert_eq!(
            parse_access(&format!("a:{}:{}", account.0.simple(), account.0.simple())),
            None
        );
    }

    #[test]
    fn words_are_batched_under_the_payload_limit_and_none_is_lost() {
        let words: Vec<String> = (0..1000)
            .map(|_| Uuid::now_v7().simple().to_string())
            .collect();
        let payloads = batched("origin", words.clone());
        assert!(payloads.len() > 1);
        assert!(
            payloads
                .iter()
                .all(|p| p.len() <= MAX_PAYLOAD && p.starts_with("origin "))
        );
        let back: Vec<String> = payloads
            .iter()
            .flat_map(|p| p.split(' ').skip(1).map(str::to_owned))
            .collect();
        assert_eq!(back, words);
        assert!(batched("origin", Vec::new()).is_empty());
    }
}
