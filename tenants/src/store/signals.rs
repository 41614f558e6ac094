//! Telling other processes what changed. Within a process, sessions and
//! workers hear of a new message or job at once (a broadcast, a
//! [`tokio::sync::Notify`]); across processes on PostgreSQL, the same news
//! travels by `NOTIFY` and comes back through one `LISTEN`ing connection per
//! process, so that IMAP IDLE and the job workers of another process need
//! not ask the database every second. SQLite has no such channel: there,
//! another process finds changes when it polls.
//!
//! A notification carries ids only (mailboxes), never content, and names
//! the process that sent it, which ignores its own. News is batched: under
//! load, one `NOTIFY` carries many mailboxes.

use std::collections::BTreeSet;
use std::sync::Arc;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{Notify, broadcast, mpsc};
use uuid::Uuid;

use crate::model::MailboxId;

/// The channel of changed mailboxes: `<origin> <mailbox> <mailbox>…`.
const MAILBOXES: &str = "caliop_mailboxes";
/// The channel of new jobs: `<origin>`.
const JOBS: &str = "caliop_jobs";
/// What one notification carries at most (PostgreSQL allows under 8000 bytes).
const MAX_PAYLOAD: usize = 7000;

/// What this process tells the others.
#[derive(Debug)]
pub(super) enum News {
    Mailbox(MailboxId),
    Jobs,
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
/// happened here (`changes` for mailboxes, `jobs` for the workers). Both
/// end when the pool closes.
pub(super) async fn start(
    pool: &PgPool,
    changes: broadcast::Sender<MailboxId>,
    jobs: Arc<Notify>,
) -> crate::Result<Signals> {
    let origin = Uuid::now_v7().simple().to_string();
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([MAILBOXES, JOBS]).await?;
    tokio::spawn(listen(listener, origin.clone(), changes, jobs));
    let (news, queue) = mpsc::unbounded_channel();
    tokio::spawn(publish(pool.clone(), origin, queue));
    Ok(Signals { news })
}

/// Sends what is queued, as few notifications as it fits in.
async fn publish(pool: PgPool, origin: String, mut queue: mpsc::UnboundedReceiver<News>) {
    while let Some(first) = queue.recv().await {
        let mut mailboxes = BTreeSet::new();
        let mut jobs = false;
        let mut next = Some(first);
        while let Some(news) = next {
            match news {
                News::Mailbox(id) => {
                    mailboxes.insert(id.0);
                }
                News::Jobs => jobs = true,
            }
            next = queue.try_recv().ok();
        }
        let mut payloads = Vec::new();
        let mut payload = origin.clone();
        for id in mailboxes {
            if payload.len() + 37 > MAX_PAYLOAD {
                payloads.push(std::mem::replace(&mut payload, origin.clone()));
            }
            payload.push(' ');
            payload.push_str(&id.simple().to_string());
        }
        if payload.len() > origin.len() {
            payloads.push(payload);
        }
        let sent = notify(&pool, MAILBOXES, &payloads).await;
        let sent = match sent {
            Ok(()) if jobs => notify(&pool, JOBS, std::slice::from_ref(&origin)).await,
            other => other,
        };
        match sent {
            Ok(()) => {}
            Err(sqlx::Error::PoolClosed) => return,
            // Others find the change when they poll.
            Err(e) => tracing::warn!(error = %e, "telling other processes of a change failed"),
        }
    }
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
async fn listen(
    mut listener: PgListener,
    origin: String,
    changes: broadcast::Sender<MailboxId>,
    jobs: Arc<Notify>,
) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                let mut words = notification.payload().split(' ');
                if words.next() == Some(origin.as_str()) {
                    continue;
                }
                if notification.channel() == JOBS {
                    jobs.notify_waiters();
                    continue;
                }
                for id in words.filter_map(|w| Uuid::parse_str(w).ok()) {
                    let _ = changes.send(MailboxId(id));
                }
            }
            // The connection dropped and came back: news sent meanwhile is
            // lost, so the workers look now (sessions look when they poll).
            Ok(None) => {
                tracing::warn!(
                    "the database connection that hears other processes was re-established"
                );
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
