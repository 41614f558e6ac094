//! A message the account itself puts into one of its mailboxes: IMAP
//! APPEND and the API's `POST /v1/mailboxes/{id}/messages` (a web app's
//! drafts). One rule for every door: stored at the account's effective
//! level through [`crate::stored`] (sealed to its key before anything is
//! written at `sealed` and above), plaintext refused at `end-to-end`, parts
//! sent as `binary` kept as base64 (RFC 3516: BODY[] stays text, BINARY[]
//! gives the bytes back), counted against the quota by the store.

use chrono::{DateTime, Utc};
use tenants::store::NewMessage;
use tenants::{Account, Flag, Level, Mailbox, MessageId};

use crate::inbound::{Inbound, openpgp_protection};

/// What to append.
pub struct Append<'a> {
    pub account: &'a Account,
    /// One of the account's mailboxes.
    pub mailbox: &'a Mailbox,
    pub message: Vec<u8>,
    pub flags: Vec<Flag>,
    pub keywords: Vec<String>,
    /// The internal date; now when `None`.
    pub received_at: Option<DateTime<Utc>>,
    /// Whether it came over TLS: the privacy index counts it.
    pub over_tls: bool,
}

/// Why a message was not appended.
#[derive(Debug, thiserror::Error)]
pub enum AppendRefused {
    #[error("the message is not RFC 5322")]
    NotAMessage,
    #[error(
        "this account is end-to-end: only OpenPGP-encrypted messages are kept (encrypt drafts on the device)"
    )]
    PlaintextAtEndToEnd,
    #[error("the organisation is gone")]
    TenantGone,
    #[error("the message could not be stored, try again later")]
    Unavailable,
    /// The store refused it (quota, a mailbox gone): its own words.
    #[error(transparent)]
    Store(tenants::Error),
}

/// What was appended.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub id: MessageId,
    pub uid: i64,
}

impl Inbound {
    /// Appends one message to one of the account's mailboxes (see the module doc).
    pub async fn append(&self, append: Append<'_>) -> Result<Appended, AppendRefused> {
        let account = append.account;
        let tenant = match self.store().tenant(account.tenant_id).await {
            Ok(Some(tenant)) => tenant,
            Ok(None) => return Err(AppendRefused::TenantGone),
            Err(e) => return Err(AppendRefused::Store(e)),
        };
        let level = account.effective_level(tenant.policy.min_level);
        let data =
            crate::imap::message::binary_parts_as_base64(&append.message).unwrap_or(append.message);
        let Some(parsed) = mail_parser::MessageParser::default().parse(&data) else {
            return Err(AppendRefused::NotAMessage);
        };
        let (encrypted, _) = openpgp_protection(&parsed);
        if level == Level::EndToEnd && !encrypted {
            return Err(AppendRefused::PlaintextAtEndToEnd);
        }
        let id = MessageId::new();
        // Sealed whatever it looks like at `sealed` and above: its headers
        // are plaintext even when its body is not.
        let sealed_date = parsed
            .date()
            .map(|d| d.to_rfc822())
            .unwrap_or_else(|| Utc::now().to_rfc2822());
        let hostname = self.hostname().to_owned();
        let thread =
            crate::stored::outer_thread(&parsed, tenant.policy.outer_thread_headers, id, &hostname);
        let copy = crate::stored::Copy {
            id,
            level,
            account,
            trace: &[],
            from: Some(account.address.as_str()),
            to: &[account.address.as_str()],
            date: &sealed_date,
            thread: &thread,
            hostname: &hostname,
        };
        let stored = self
            .stored_form(&copy, &data, &parsed)
            .await
            .map_err(|_| AppendRefused::Unavailable)?;
        let message = NewMessage {
            id,
            tenant_id: account.tenant_id,
            account_id: account.id,
            level,
            envelope_from: account.address.to_string(),
            envelope_to: account.address.to_string(),
            subject: stored.subject,
            sender: stored.sender,
            privacy: tenants::privacy::PrivacyIndex::compute(&tenants::privacy::Facts {
                tls_version: if append.over_tls { 13 } else { 0 },
                dkim_pass: false,
                spf_pass: false,
                dmarc_pass: false,
                encrypted,
                signed: false,
                written_to_sender: true,
                received_before: 0,
                received_encrypted_before: 0,
                sender_key_known: true,
            }),
            authentication: serde_json::json!({ "auth": account.address.as_str(), "appended": true }),
            arrived_encrypted: encrypted,
            content: stored.content,
            dispersed: stored.dispersed,
            summary: stored.summary,
            rfc822_size: stored.rfc822_size,
            flags: append.flags,
            keywords: append.keywords,
            received_at: append.received_at,
            verdict: None,
            mailbox: None,
        };
        match self
            .store()
            .append_messages(append.mailbox, std::slice::from_ref(&message))
            .await
        {
            Ok(uids) => Ok(Appended {
                id,
                uid: uids.first().copied().unwrap_or_default(),
            }),
            Err(e) => {
                if let Some(object) = message.dispersed.clone() {
                    self.discard(&[(id, object)]).await;
                }
                Err(AppendRefused::Store(e))
            }
        }
    }
}
