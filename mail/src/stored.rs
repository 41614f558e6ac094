//! The stored form of one copy of a message: the function every door that
//! stores mail calls (the MX and local delivery, IMAP APPEND and COPY, the
//! Sent copy), so that a message is kept the same way whichever way it came.
//!
//! Given the effective level, the account and the bytes, it returns what is
//! written: at `standard`, the trace and the message encrypted at rest (AEAD
//! under the tenant's data key, which the server holds); at `sealed`, the
//! message sealed as PGP/MIME to the account's OpenPGP key before anything
//! is written, its headers protected inside and its conversation shown
//! outside as the tenant's policy says ([`outer_thread`]); at `dispersed`,
//! sealed then cut into shards on the storage sites; at `end-to-end`, as it
//! came (already encrypted by its sender), with the trace, then cut into
//! shards. The size an owner is charged is the size of what they read back.

use tenants::store::NewObject;
use tenants::{Account, Level, MessageId, TenantId};
use vault::seal::Thread;

use crate::imap::message::Summary;
use crate::inbound::Inbound;
use crate::reply::Reply;

/// One copy to store, and the envelope around it.
pub struct Copy<'a> {
    pub id: MessageId,
    /// The effective level (see `tenants::Account::effective_level`).
    pub level: Level,
    pub account: &'a Account,
    /// Header lines put before the message (Received, Authentication-Results);
    /// at `sealed` and `dispersed`, on the sealed wrapper.
    pub trace: &'a [String],
    /// The outer envelope of a sealed copy: what stays readable.
    pub from: Option<&'a str>,
    pub to: &'a [&'a str],
    pub date: &'a str,
    /// Its Message-ID and conversation: [`outer_thread`]'s answer.
    pub thread: &'a Thread,
    pub hostname: &'a str,
}

/// What a sealed copy shows of its conversation outside the seal, as the
/// tenant's policy says (`tenants::Policy::outer_thread_headers`, `shown`):
/// the message's own Message-ID, In-Reply-To and References, so that mail
/// clients thread it unopened; or only an id of the server's own for `id`.
/// Every door that stores mail builds its [`Copy`] with this.
pub fn outer_thread(
    parsed: &mail_parser::Message<'_>,
    shown: bool,
    id: MessageId,
    hostname: &str,
) -> Thread {
    let own = format!("{id}@{hostname}");
    if shown {
        Thread::of(parsed, own)
    } else {
        Thread::own(own)
    }
}

/// What is written for a copy.
pub struct Stored {
    /// The bytes kept in the database (empty when dispersed).
    pub content: Vec<u8>,
    pub dispersed: Option<NewObject>,
    /// Bytes the owner reads back, which is what the quota counts.
    pub rfc822_size: i64,
    /// Kept in clear for listing only at `standard`.
    pub subject: Option<String>,
    pub sender: Option<String>,
    /// What IMAP FETCH answers without the message ([`Kept::summary`]).
    pub summary: Option<Vec<u8>>,
}

/// What is written of a readable form ([`Inbound::store_readable`]).
pub struct Kept {
    /// The bytes kept in the database (empty when dispersed).
    pub content: Vec<u8>,
    pub dispersed: Option<NewObject>,
    /// Its [`Summary`], encrypted at rest under the tenant's data key;
    /// `None` from `dispersed` up, where no single place keeps anything
    /// readable of a message, not even its outer header.
    pub summary: Option<Vec<u8>>,
}

/// Messages larger than this are summarized on the CPU pool, off the executor.
const SUMMARIZE_INLINE_UP_TO: usize = 256 * 1024;

impl Inbound {
    /// The stored form of `copy` of `message` (see the module doc).
    pub async fn stored_form(
        &self,
        copy: &Copy<'_>,
        message: &[u8],
        parsed: &mail_parser::Message<'_>,
    ) -> Result<Stored, Reply> {
        let account = copy.account;
        let with_trace = || {
            let mut bytes = Vec::with_capacity(message.len() + 512);
            for line in copy.trace {
                bytes.extend_from_slice(line.as_bytes());
                bytes.extend_from_slice(b"\r\n");
            }
            bytes.extend_from_slice(message);
            bytes
        };
        let (readable, subject, sender) = match copy.level {
            Level::Standard => (
                with_trace(),
                parsed.subject().map(str::to_owned),
                parsed
                    .from()
                    .and_then(|a| a.first())
                    .and_then(|a| a.address())
                    .map(str::to_owned),
            ),
            Level::EndToEnd => (with_trace(), None, None),
            Level::Sealed | Level::Dispersed => {
                let outer = vault::seal::Outer {
                    trace: copy.trace,
                    from: copy.from.filter(|f| !f.is_empty()),
                    to: copy.to,
                    date: copy.date,
                    thread: copy.thread,
                    hostname: copy.hostname,
                };
                // The OpenPGP work runs on the CPU pool, off the executor.
                let (key, plain) = (account.public_key.clone(), message.to_vec());
                let sealed = vault::cpu::run(move || {
                    vault::seal::encrypt(&key, &vault::seal::protect_headers(&plain))
                })
                .await
                .map(|armored| vault::seal::wrap(&outer, &armored))
                .map_err(|e| {
                    tracing::error!(error = %e, account = %account.id, "sealing failed");
                    Reply::new(451, "4.3.0", "local error in processing, try again later")
                })?;
                (sealed, None, None)
            }
        };
        let rfc822_size = readable.len() as i64;
        let kept = self
            .store_readable(copy.level, account.tenant_id, copy.id, readable)
            .await?;
        Ok(Stored {
            content: kept.content,
            dispersed: kept.dispersed,
            rfc822_size,
            subject,
            sender,
            summary: kept.summary,
        })
    }

    /// Writes the readable form of a message (what its owner reads back) as
    /// `level` keeps it: encrypted at rest, as it is (already sealed), or on
    /// the storage sites. IMAP COPY uses it for the copy's new id.
    pub async fn store_readable(
        &self,
        level: Level,
        tenant: TenantId,
        id: MessageId,
        readable: Vec<u8>,
    ) -> Result<Kept, Reply> {
        let summary = self.summarize(level, tenant, id, &readable).await?;
        let (content, dispersed) = match level {
            Level::Standard => (self.encrypt_standard(tenant, id, &readable).await?, None),
            Level::Sealed => (readable, None),
            Level::Dispersed | Level::EndToEnd => (
                Vec::new(),
                Some(self.disperse(tenant, id, &readable).await?),
            ),
        };
        Ok(Kept {
            content,
            dispersed,
            summary,
        })
    }

    /// The stored [`Summary`] of a readable form at `level` (see
    /// [`Kept::summary`]). IMAP also calls it for a message stored without
    /// one (before summaries were kept, or moved here from another instance).
    pub async fn summarize(
        &self,
        level: Level,
        tenant: TenantId,
        id: MessageId,
        readable: &[u8],
    ) -> Result<Option<Vec<u8>>, Reply> {
        if matches!(level, Level::Dispersed | Level::EndToEnd) {
            return Ok(None);
        }
        let summary = if readable.len() <= SUMMARIZE_INLINE_UP_TO {
            Summary::of(readable).encode()
        } else {
            let readable = readable.to_vec();
            vault::cpu::run(move || Summary::of(&readable).encode()).await
        };
        let sealed = self
            .encrypt_at_rest(tenant, &summary_context(id), &summary)
            .await?;
        Ok(Some(sealed))
    }

    /// Opens what [`Inbound::summarize`] stored; `None` when it does not
    /// open or is of another format (the message is then read instead).
    pub async fn open_summary(
        &self,
        tenant: TenantId,
        id: MessageId,
        stored: &[u8],
    ) -> Option<Summary> {
        let plain = self
            .decrypt_at_rest(tenant, &summary_context(id), stored)
            .await
            .ok()?;
        Summary::decode(&plain)
    }
}

/// What a summary's encryption is bound to: its message, and being a summary.
fn summary_context(id: MessageId) -> Vec<u8> {
    format!("caliop-summary:{id}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_decides_what_a_sealed_copy_shows_of_its_conversation() {
        let message = b"Message-ID: <reply@x.test>\r\nIn-Reply-To: <first@x.test>\r\n\
                        References: <first@x.test>\r\nSubject: s\r\n\r\nhi\r\n";
        let parsed = mail_parser::MessageParser::default()
            .parse(message.as_slice())
            .unwrap();
        let id = MessageId::new();
        let shown = outer_thread(&parsed, true, id, "mx.caliop.test");
        assert_eq!(
            shown,
            Thread {
                message_id: "reply@x.test".into(),
                in_reply_to: vec!["first@x.test".into()],
                references: vec!["first@x.test".into()],
            }
        );
        let hidden = outer_thread(&parsed, false, id, "mx.caliop.test");
        assert_eq!(hidden, Thread::own(format!("{id}@mx.caliop.test")));
    }
}
