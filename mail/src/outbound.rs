//! Mail on the way out: submission (from the API or the submission port)
//! and delivery (by the workers).
//!
//! A submission is checked (the `From` is the sender's, the tenant may send,
//! the rates allow it, the level allows plaintext), encrypted to the
//! recipients' keys when the level or the sender asks for it, and stored in
//! one transaction with the sender's Sent copy and its delivery jobs: once
//! the caller has its `202`/`250`, the message cannot be lost. The spooled
//! bytes are encrypted at rest under the tenant's data key.
//!
//! Delivery signs with the sender domain's active DKIM keys (RSA and
//! Ed25519), groups recipients per domain, hands hosted domains to the
//! inbound path without a network hop, and speaks SMTP to the MX of the
//! others (over verified TLS to the hosts an MTA-STS `enforce` policy
//! names), one status per recipient. Recipients' keys come from our own
//! accounts or from their domain's Web Key Directory. Temporary failures are retried by the
//! queue until the message's lifetime runs out; permanent failures and
//! expiry produce one DSN (RFC 3464) in the sender's Inbox.
//!
//! Nothing here logs addresses' mail content: ids, counts and remote codes only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::Utc;
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mail_parser::{Address, MessageParser};
use secrecy::{ExposeSecret, SecretSlice};
use tenants::store::{
    DeliveryUpdate, NewJob, NewMessage, NewOutbound, RecipientDelivery, SendRates, Submission,
};
use tenants::{
    Account, AccountStatus, DeliveryStatus, DkimAlgorithm, DkimKeyState, EmailAddress, Level,
    MessageId, Store, TenantKind, TenantStatus,
};
use uuid::Uuid;

use crate::dns::{Dns, Kind};
use crate::https::Https;
use crate::inbound::{Envelope, Inbound, openpgp_protection};
use crate::mta_sts::Policies;
use crate::reply::Reply;

/// The job that delivers one spooled version; its payload is [`DeliverJob`].
pub const DELIVER_JOB: &str = "mail.deliver";

/// Delivery is retried until the message's lifetime ends, not a count of
/// attempts: this bound is only a backstop.
pub const DELIVERY_MAX_ATTEMPTS: i32 = 100_000;

/// The payload of a [`DELIVER_JOB`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct DeliverJob {
    pub outbound_id: Uuid,
}

/// Sending rates per kind of tenant: free public accounts get tight ones.
#[derive(Clone, Debug)]
pub struct SendLimits {
    pub public: SendRates,
    pub paid: SendRates,
}

impl Default for SendLimits {
    fn default() -> Self {
        SendLimits {
            public: SendRates {
                account_messages_per_hour: 30,
                account_recipients_per_day: 200,
                tenant_messages_per_hour: 5_000,
                tenant_recipients_per_day: 50_000,
            },
            paid: SendRates {
                account_messages_per_hour: 500,
                account_recipients_per_day: 5_000,
                tenant_messages_per_hour: 50_000,
                tenant_recipients_per_day: 500_000,
            },
        }
    }
}

impl SendLimits {
    pub fn for_kind(&self, kind: TenantKind) -> SendRates {
        match kind {
            TenantKind::Public => self.public,
            TenantKind::Operator | TenantKind::Reseller | TenantKind::Enterprise => self.paid,
        }
    }
}

/// How mail leaves.
#[derive(Clone, Debug)]
pub struct OutboundConfig {
    /// Our name in EHLO, Message-IDs and DSNs.
    pub hostname: String,
    /// The port spoken to on remote MX hosts (25; tests use their sink's).
    pub delivery_port: u16,
    /// A relay ("smarthost") that takes all mail for other domains instead
    /// of their MX, e.g. an outbound gateway.
    pub relay: Option<std::net::SocketAddr>,
    /// The port of HTTPS fetches (MTA-STS policies, WKD keys): 443, except in tests.
    pub https_port: u16,
    /// Trust anchors beside the web PKI's, for certificates of MTA-STS
    /// policy hosts, WKD hosts and MX hosts under an `enforce` policy.
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// How long a message is retried before it bounces.
    pub lifetime: Duration,
    pub connect_timeout: Duration,
    pub max_recipients: usize,
    pub limits: SendLimits,
    /// How long a tenant may stay past due on its invoices before its sending stops.
    pub payment_grace: chrono::Duration,
    /// Connect to loopback and private addresses too (MX hosts, WKD and
    /// MTA-STS hosts); off by default: see [`crate::egress`].
    pub allow_private_networks: bool,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            hostname: "mail.localhost".into(),
            delivery_port: 25,
            relay: None,
            https_port: 443,
            extra_roots: Vec::new(),
            lifetime: Duration::from_secs(5 * 24 * 3600),
            connect_timeout: Duration::from_secs(30),
            max_recipients: 100,
            limits: SendLimits::default(),
            payment_grace: chrono::Duration::days(14),
            allow_private_networks: false,
        }
    }
}

/// A message to send, as the sender wrote it.
pub struct Draft {
    /// The authenticated sender.
    pub account: Account,
    /// Everyone it goes to, Bcc included.
    pub recipients: Vec<String>,
    /// RFC 5322, as submitted (a `Bcc` header is removed before sending).
    pub message: Vec<u8>,
    /// Refuse rather than send in clear to anyone whose key is unknown.
    pub require_encryption: bool,
}

/// What was queued.
#[derive(Clone, Debug)]
pub struct Submitted {
    /// The Sent copy; delivery status is asked for by this id.
    pub message_id: MessageId,
    pub header_message_id: String,
    /// Recipients who get an OpenPGP-encrypted version.
    pub encrypted_to: Vec<String>,
    pub recipients: usize,
}

/// Why a submission was refused; nothing was queued.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The message or the recipients are malformed.
    #[error("{0}")]
    Invalid(String),
    /// The `From` is not the sender's.
    #[error("{0}")]
    NotYourAddress(String),
    #[error("{0}")]
    Suspended(String),
    /// Past due on payment beyond the grace period.
    #[error("{0}")]
    PaymentOverdue(String),
    #[error("{0}")]
    RateLimited(String),
    /// The content filter judged it spam (or found a virus); the refusal counts
    /// towards `filter.outbound_strikes`.
    #[error("{0}")]
    Spam(String),
    /// The content filter could not judge it now; the sender retries.
    #[error("{0}")]
    FilterUnavailable(String),
    /// Sending stopped after repeated spam, until an operator clears it.
    #[error("{0}")]
    SendingBlocked(String),
    #[error("{0}")]
    OverQuota(String),
    /// The sender is at `end-to-end` and the message is not encrypted.
    #[error(
        "this account sends only OpenPGP-encrypted mail (end-to-end level): encrypt the message to its recipients before submitting it"
    )]
    PlaintextAtEndToEnd,
    /// Encryption was required and these recipients have no known key.
    #[error("encryption was required, but no OpenPGP key is known for: {}", .0.join(", "))]
    MissingKeys(Vec<String>),
    /// The Sent copy's storage policy cannot be met now (sites down, or too
    /// few sites in the allowed jurisdictions).
    #[error("{0}")]
    StorageUnavailable(String),
    #[error("the message could not be queued; try again later")]
    Internal,
}

impl Refusal {
    /// The submission port's answer.
    pub fn smtp_reply(&self) -> Reply {
        let text = self.to_string();
        match self {
            Refusal::Invalid(_) => Reply::new(554, "5.6.0", text),
            Refusal::NotYourAddress(_) => Reply::new(550, "5.7.1", text),
            Refusal::Suspended(_) | Refusal::PaymentOverdue(_) => Reply::new(554, "5.7.1", text),
            Refusal::RateLimited(_) | Refusal::FilterUnavailable(_) => {
                Reply::new(450, "4.7.1", text)
            }
            Refusal::Spam(_) => Reply::new(550, "5.7.1", text),
            Refusal::SendingBlocked(_) => Reply::new(554, "5.7.1", text),
            Refusal::OverQuota(_) => Reply::new(552, "5.2.2", text),
            Refusal::PlaintextAtEndToEnd | Refusal::MissingKeys(_) => {
                Reply::new(554, "5.7.1", text)
            }
            Refusal::Internal | Refusal::StorageUnavailable(_) => Reply::new(451, "4.3.0", text),
        }
    }
}

/// The outcome of one delivery attempt over a version's pending recipients.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Attempt {
    pub delivered: usize,
    pub deferred: usize,
    pub bounced: usize,
}

/// Submission and delivery, shared by the API, the submission port and the workers.
pub struct Outbound {
    store: Store,
    inbound: Arc<Inbound>,
    dns: Option<Dns>,
    /// WKD lookups of recipients' keys (only with a resolver).
    https: Option<Https>,
    /// Recipient domains' MTA-STS policies (only with a resolver).
    policies: Option<Policies>,
    config: OutboundConfig,
}

/// A failure of ours: logged with its cause, answered without it.
fn internal(what: &str, cause: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %cause, "{what}");
    Refusal::Internal
}

impl Outbound {
    /// `dns` is `None` where no resolver answers: remote delivery then
    /// waits (deferred) until one does; local delivery still works.
    pub fn new(
        store: Store,
        inbound: Arc<Inbound>,
        dns: Option<Dns>,
        config: OutboundConfig,
    ) -> Outbound {
        let https = dns.as_ref().and_then(|dns| {
            Https::new(dns.clone(), config.https_port, &config.extra_roots, Duration::from_secs(10))
                .map(|h| h.allowing_private_networks(config.allow_private_networks))
                .inspect_err(|e| tracing::error!(error = %e, "HTTPS client unavailable: no MTA-STS, no WKD lookups"))
                .ok()
        });
        let policies = dns
            .as_ref()
            .zip(https.clone())
            .map(|(dns, https)| Policies::new(dns.clone(), https));
        // Delivery looks up the keys of forwarding destinations the same way.
        if let Some(https) = &https {
            inbound.use_https(https.clone());
        }
        Outbound {
            store,
            inbound,
            dns,
            https,
            policies,
            config,
        }
    }

    /// Outbound abuse: an account that lost sending sends nothing; the
    /// submissions of the public tenant's accounts (and of tenants that ask,
    /// `scan_outbound`) are judged by the content filter before anything is
    /// queued. Spam or a virus is refused with the filter's reasons (the
    /// sender is ours) and counted; at `filter.outbound_strikes` refusals in
    /// 24 hours the account loses sending until an operator clears it.
    async fn screen(
        &self,
        tenant: &tenants::Tenant,
        account: &Account,
        message: &[u8],
        recipients: &[String],
    ) -> Result<(), Refusal> {
        let blocked = self
            .store
            .sending_blocked(account.id)
            .await
            .map_err(|e| internal("abuse lookup failed", e))?;
        if let Some(since) = blocked {
            return Err(Refusal::SendingBlocked(format!(
                "{} cannot send: sending was stopped on {} after repeated spam; the service's operator reviews it",
                account.address,
                since.format("%Y-%m-%d %H:%M UTC")
            )));
        }
        if tenant.kind != TenantKind::Public && !tenant.scan_outbound {
            return Ok(());
        }
        let Some(filter) = self.inbound.filter() else {
            return Ok(());
        };
        let class = tenant.id.to_string();
        let scan = crate::filter::Scan {
            client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            helo: &self.config.hostname,
            from: account.address.as_str(),
            recipients: recipients.iter().map(String::as_str).collect(),
            tls_version: 13,
            tls_cipher: None,
            user: Some(account.address.as_str()),
            class: Some(&class),
            spf: "local",
            dkim: "local",
            dmarc: "local",
            dmarc_policy: "none",
            data: message,
        };
        let verdict = match filter.scan(&scan).await {
            Ok(verdict) => verdict,
            Err(_) => {
                return match filter.config().on_error {
                    crate::filter::OnError::Accept => {
                        filter.count(&tenants::Verdict::unscanned());
                        Ok(())
                    }
                    crate::filter::OnError::Tempfail => Err(Refusal::FilterUnavailable(
                        "the content filter is unavailable; try again later".into(),
                    )),
                };
            }
        };
        let spam = verdict.virus.is_some()
            || matches!(
                verdict.action,
                tenants::SpamAction::Reject
                    | tenants::SpamAction::AddHeader
                    | tenants::SpamAction::RewriteSubject
            );
        if verdict.action == tenants::SpamAction::SoftReject {
            return Err(Refusal::FilterUnavailable(
                "the content filter deferred this message; try again later".into(),
            ));
        }
        if !spam {
            return Ok(());
        }
        let mut reason = match &verdict.virus {
            Some(virus) => format!("a virus ({virus})"),
            None => format!("spam (score {:.1})", verdict.score),
        };
        if !verdict.symbols.is_empty() {
            let rules: Vec<&str> = verdict.symbols.iter().take(8).map(String::as_str).collect();
            reason.push_str(&format!("; rules: {}", rules.join(", ")));
        }
        let limit = filter.config().outbound_strikes;
        let (strikes, blocked) = self
            .store
            .record_strike(tenant.id, account.id, &reason, verdict.score, limit)
            .await
            .map_err(|e| internal("recording an abuse strike failed", e))?;
        tracing::warn!(account = %account.id, strikes, blocked, "a submission was refused by the content filter");
        let after = if blocked {
            "; sending is now stopped for this account until the service's operator reviews it"
                .to_owned()
        } else if limit > 0 {
            format!("; {strikes} of {limit} refusals in 24 hours before sending stops")
        } else {
            String::new()
        };
        Err(Refusal::Spam(format!(
            "the content filter refused this message as {reason}{after}"
        )))
    }

    /// Checks, encrypts where it must, and queues a message.
    pub async fn submit(&self, draft: Draft) -> Result<Submitted, Refusal> {
        let account = &draft.account;
        let tenant = self
            .store
            .tenant(account.tenant_id)
            .await
            .map_err(|e| internal("sender tenant lookup failed", e))?
            .ok_or(Refusal::Internal)?;
        if tenant.status != TenantStatus::Active || account.status != AccountStatus::Active {
            return Err(Refusal::Suspended(format!(
                "{} cannot send: the {} is suspended",
                account.address,
                if account.status != AccountStatus::Active {
                    "account"
                } else {
                    "organisation"
                }
            )));
        }
        // The same rule as every sign-in: an account of a domain that is only
        // a claim (unverified) sends nothing, whatever token it still holds.
        if let Some(why) = self
            .store
            .may_sign_in(account, tenants::login::Door::Mail)
            .await
            .map_err(|e| internal("sender check failed", e))?
        {
            return Err(Refusal::Suspended(format!(
                "{} cannot send: {why}",
                account.address
            )));
        }
        let overdue = self
            .store
            .sending_suspended(tenant.id, self.config.payment_grace)
            .await
            .map_err(|e| internal("billing lookup failed", e))?;
        if let Some(since) = overdue {
            return Err(Refusal::PaymentOverdue(format!(
                "{} cannot send: the organisation's payment is overdue since {}; sending resumes once it is paid \
                 (received mail is kept)",
                account.address,
                since.format("%Y-%m-%d")
            )));
        }
        let parsed = MessageParser::default()
            .parse(&draft.message)
            .ok_or_else(|| Refusal::Invalid("the message is not RFC 5322".into()))?;
        let addresses = self
            .store
            .sending_addresses(account)
            .await
            .map_err(|e| internal("sender addresses lookup failed", e))?;
        // Sent as an alias: the envelope and DKIM are the alias's domain's.
        let from = author(&parsed, account, &addresses)?.to_ascii_lowercase();
        let recipients = self.recipients(&draft.recipients)?;
        self.screen(&tenant, account, &draft.message, &recipients)
            .await?;

        let level = account.effective_level(tenant.policy.min_level);
        let (encrypted, _) = openpgp_protection(&parsed);
        if level == Level::EndToEnd && !encrypted {
            return Err(Refusal::PlaintextAtEndToEnd);
        }
        // Keys of the recipients, when the server may (sealed and above) or
        // must (the sender asked) encrypt a plaintext submission.
        let mut keys: BTreeMap<String, String> = BTreeMap::new();
        if !encrypted && (level >= Level::Sealed || draft.require_encryption) {
            for recipient in &recipients {
                if let Some(key) = self.recipient_key(recipient).await {
                    keys.insert(recipient.clone(), key);
                }
            }
            let missing: Vec<String> = recipients
                .iter()
                .filter(|r| !keys.contains_key(*r))
                .cloned()
                .collect();
            if draft.require_encryption && !missing.is_empty() {
                return Err(Refusal::MissingKeys(missing));
            }
        }

        // What leaves: the Bcc header dropped, Message-ID and Date added if
        // missing, the sender's key offered (Autocrypt).
        let header_message_id = parsed
            .message_id()
            .map(|id| format!("<{id}>"))
            .unwrap_or_else(|| format!("<{}@{}>", Uuid::now_v7(), self.config.hostname));
        let mut added = Vec::new();
        if parsed.message_id().is_none() {
            added.push(format!("Message-ID: {header_message_id}"));
        }
        if parsed.date().is_none() {
            added.push(format!("Date: {}", Utc::now().to_rfc2822()));
        }
        if let Some(header) = autocrypt_header(account) {
            added.push(header);
        }
        let outgoing = rewrite_headers(&draft.message, &added, &["bcc"]);

        let mut versions: Vec<(Vec<u8>, Vec<String>)> = Vec::new();
        let (with_key, without_key): (Vec<String>, Vec<String>) = recipients
            .iter()
            .cloned()
            .partition(|r| keys.contains_key(r));
        if !with_key.is_empty() {
            let mut armored: Vec<String> = with_key.iter().map(|r| keys[r].clone()).collect();
            // The sender can read what they sent.
            armored.push(account.public_key.clone());
            let plain = outgoing.clone();
            let sealed = vault::cpu::run(move || {
                let keys: Vec<&str> = armored.iter().map(String::as_str).collect();
                encrypt_outgoing(&plain, &keys)
            })
            .await
            .map_err(|e| internal("encrypting a submission failed", e))?;
            versions.push((sealed, with_key.clone()));
        }
        if !without_key.is_empty() {
            versions.push((outgoing.clone(), without_key));
        }

        // The sender's copy, at the sender's level; it keeps the Bcc line.
        let sent_id = MessageId::new();
        let sent_plain = rewrite_headers(&draft.message, &added, &[]);
        let date = Utc::now().to_rfc2822();
        let to: Vec<&str> = recipients.iter().map(String::as_str).collect();
        // Read from what is kept, which has the Message-ID added above.
        let thread = crate::stored::outer_thread(
            &MessageParser::default()
                .parse_headers(&sent_plain)
                .ok_or_else(|| Refusal::Invalid("the message is not RFC 5322".into()))?,
            tenant.policy.outer_thread_headers,
            sent_id,
            &self.config.hostname,
        );
        let copy = crate::stored::Copy {
            id: sent_id,
            level,
            account,
            trace: &[],
            from: Some(account.address.as_str()),
            to: &to,
            date: &date,
            thread: &thread,
            hostname: &self.config.hostname,
        };
        let stored = self
            .inbound
            .stored_form(&copy, &sent_plain, &parsed)
            .await
            .map_err(|reply| Refusal::StorageUnavailable(reply.text))?;
        let sent_copy = NewMessage {
            id: sent_id,
            tenant_id: account.tenant_id,
            account_id: account.id,
            level,
            envelope_from: account.address.to_string(),
            envelope_to: recipients.join(", "),
            subject: stored.subject,
            sender: stored.sender,
            privacy: tenants::privacy::PrivacyIndex::compute(&tenants::privacy::Facts {
                tls_version: 13,
                dkim_pass: true,
                spf_pass: true,
                dmarc_pass: true,
                encrypted: encrypted || !keys.is_empty(),
                signed: false,
                written_to_sender: true,
                received_before: 0,
                received_encrypted_before: 0,
                sender_key_known: true,
            }),
            authentication: serde_json::json!({"auth": account.address.as_str(), "submitted": true}),
            arrived_encrypted: encrypted,
            content: stored.content,
            dispersed: stored.dispersed,
            summary: stored.summary,
            rfc822_size: stored.rfc822_size,
            // The sender has read what they wrote.
            flags: vec![tenants::Flag::Seen],
            keywords: Vec::new(),
            received_at: None,
            verdict: None,
            mailbox: None,
        };

        let mut outbound = Vec::with_capacity(versions.len());
        let mut jobs = Vec::with_capacity(versions.len());
        for (bytes, to) in versions {
            let id = Uuid::now_v7();
            let content = self
                .inbound
                .encrypt_at_rest(account.tenant_id, spool_context(id).as_bytes(), &bytes)
                .await
                .map_err(|_| Refusal::Internal)?;
            let payload = serde_json::to_string(&DeliverJob { outbound_id: id })
                .map_err(|e| internal("job encoding failed", e))?;
            jobs.push(NewJob {
                kind: DELIVER_JOB,
                payload,
                dedup_key: Some(id.to_string()),
                run_at: Utc::now(),
                max_attempts: DELIVERY_MAX_ATTEMPTS,
            });
            outbound.push(NewOutbound {
                id,
                content,
                recipients: to,
            });
        }
        let lifetime =
            chrono::Duration::from_std(self.config.lifetime).unwrap_or(chrono::Duration::days(5));
        // A tenant on a plan sends at its plan's per-account rates.
        let mut limits = self.config.limits.for_kind(tenant.kind);
        if let Some(plan) = self
            .store
            .tenant_plan(tenant.id)
            .await
            .map_err(|e| internal("plan lookup failed", e))?
        {
            limits.account_messages_per_hour = plan.account_messages_per_hour;
            limits.account_recipients_per_day = plan.account_recipients_per_day;
        }
        let submission = Submission {
            tenant_id: account.tenant_id,
            account_id: account.id,
            envelope_from: from.clone(),
            header_message_id: header_message_id.clone(),
            sent_copy,
            outbound,
            expires_at: Utc::now() + lifetime,
            jobs,
            limits,
        };
        let written: Vec<(MessageId, tenants::store::NewObject)> = submission
            .sent_copy
            .dispersed
            .clone()
            .map(|o| (sent_id, o))
            .into_iter()
            .collect();
        let stored = self.store.submit(submission).await;
        if stored.is_err() {
            self.inbound.discard(&written).await;
        }
        let message_id = match stored {
            Ok(id) => id,
            Err(tenants::Error::RateLimited(detail)) => return Err(Refusal::RateLimited(detail)),
            Err(tenants::Error::LimitExceeded(detail)) => return Err(Refusal::OverQuota(detail)),
            Err(e) => return Err(internal("storing a submission failed", e)),
        };
        tracing::info!(message = %message_id, recipients = recipients.len(), encrypted = with_key.len(), "message queued");
        Ok(Submitted {
            message_id,
            header_message_id,
            encrypted_to: with_key,
            recipients: recipients.len(),
        })
    }

    fn recipients(&self, given: &[String]) -> Result<Vec<String>, Refusal> {
        let mut out: Vec<String> = Vec::with_capacity(given.len());
        for r in given {
            let address = EmailAddress::parse(r.trim())
                .map_err(|_| Refusal::Invalid(format!("`{r}` is not a valid recipient address")))?;
            let address = address.to_string();
            if !out.contains(&address) {
                out.push(address);
            }
        }
        if out.is_empty() {
            return Err(Refusal::Invalid("the message has no recipients".into()));
        }
        if out.len() > self.config.max_recipients {
            return Err(Refusal::Invalid(format!(
                "{} recipients; at most {} per message",
                out.len(),
                self.config.max_recipients
            )));
        }
        Ok(out)
    }

    /// The recipient's OpenPGP key: ours when we host them, else what their
    /// domain's Web Key Directory serves (advanced layout first, then direct).
    async fn recipient_key(&self, recipient: &str) -> Option<String> {
        crate::wkd::recipient_key(&self.store, self.https.as_ref(), recipient).await
    }

    /// The key sending would find for `recipient`, and where it came from:
    /// what a client shows before sending ("will be encrypted").
    pub async fn find_key(&self, recipient: &str) -> Option<crate::wkd::FoundKey> {
        crate::wkd::find_key(&self.store, self.https.as_ref(), recipient).await
    }

    /// One delivery attempt for every recipient of `outbound_id` still
    /// waiting. `Err` asks the queue to retry (some were deferred, or the
    /// store failed); recipients already delivered are never sent again.
    pub async fn deliver(&self, outbound_id: Uuid) -> Result<Attempt, String> {
        let Some(row) = self
            .store
            .outbound(outbound_id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(Attempt::default());
        };
        let Some(stored) = row.content.as_deref() else {
            return Ok(Attempt::default());
        };
        let pending: Vec<RecipientDelivery> = self
            .store
            .outbound_deliveries(outbound_id)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|d| matches!(d.status, DeliveryStatus::Queued | DeliveryStatus::Deferred))
            .collect();
        let plain = self
            .inbound
            .decrypt_at_rest(
                tenants::TenantId(row.tenant_id),
                spool_context(outbound_id).as_bytes(),
                stored,
            )
            .await
            .map_err(|r| r.text.clone())?;

        let expired = Utc::now() >= row.expires_at;
        let mut outcomes = Vec::with_capacity(pending.len());
        if expired {
            let gave_up: Vec<Outcome> = pending
                .into_iter()
                .map(|d| Outcome {
                    reply: format!(
                        "delivery gave up after {} attempts; last: {}",
                        d.attempts,
                        d.remote_reply.as_deref().unwrap_or("no answer")
                    ),
                    recipient: d.recipient,
                    status: DeliveryStatus::Bounced,
                    host: d.remote_host,
                })
                .collect();
            self.record(outbound_id, &gave_up).await?;
            outcomes.extend(gave_up);
        } else {
            // A null sender (vacation replies) is signed for its From domain.
            let signer = if row.envelope_from.is_empty() {
                header_from_address(&plain).unwrap_or_default()
            } else {
                row.envelope_from.clone()
            };
            let signed = self.sign(&signer, &plain).await;
            let mut by_domain: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for d in pending {
                let domain = d
                    .recipient
                    .rsplit_once('@')
                    .map(|(_, d)| d.to_ascii_lowercase())
                    .unwrap_or_default();
                by_domain.entry(domain).or_default().push(d.recipient);
            }
            for (domain, recipients) in by_domain {
                let done = if self.is_hosted(&domain).await? {
                    self.deliver_locally(
                        &row.envelope_from,
                        &recipients,
                        &signed,
                        Some(row.account_id),
                    )
                    .await
                } else {
                    self.deliver_remotely(&domain, &row.envelope_from, &recipients, &signed)
                        .await
                };
                // Recorded as soon as each server has answered, so that a
                // worker dying later does not send these again.
                self.record(outbound_id, &done).await?;
                outcomes.extend(done);
            }
        }

        let mut attempt = Attempt::default();
        for o in &outcomes {
            match o.status {
                DeliveryStatus::Delivered => attempt.delivered += 1,
                DeliveryStatus::Bounced => attempt.bounced += 1,
                DeliveryStatus::Deferred | DeliveryStatus::Queued => attempt.deferred += 1,
            }
        }
        let bounced: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| o.status == DeliveryStatus::Bounced)
            .collect();
        self.bounce(&row, &plain, &bounced, expired).await?;
        tracing::info!(
            outbound = %outbound_id,
            delivered = attempt.delivered,
            deferred = attempt.deferred,
            bounced = attempt.bounced,
            "delivery attempt"
        );
        if attempt.deferred > 0 {
            return Err(format!("{} recipient(s) deferred", attempt.deferred));
        }
        Ok(attempt)
    }

    async fn record(&self, outbound: Uuid, outcomes: &[Outcome]) -> Result<(), String> {
        let updates: Vec<DeliveryUpdate<'_>> = outcomes
            .iter()
            .map(|o| DeliveryUpdate {
                recipient: &o.recipient,
                status: o.status,
                remote_host: o.host.as_deref(),
                remote_reply: &o.reply,
            })
            .collect();
        self.store
            .record_deliveries(outbound, &updates)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn is_hosted(&self, domain: &str) -> Result<bool, String> {
        let Ok(name) = tenants::DomainName::parse(domain) else {
            return Ok(false);
        };
        Ok(self
            .store
            .hosted_domain(&name)
            .await
            .map_err(|e| e.to_string())?
            .is_some())
    }

    /// DKIM signatures by the sender domain's active keys, prepended.
    async fn sign(&self, envelope_from: &str, message: &[u8]) -> Vec<u8> {
        let Some((_, domain)) = envelope_from.rsplit_once('@') else {
            return message.to_vec();
        };
        let Ok(name) = tenants::DomainName::parse(domain) else {
            return message.to_vec();
        };
        let Ok(Some(domain)) = self.store.hosted_domain(&name).await else {
            return message.to_vec();
        };
        let keys = match self.store.dkim_keys(domain.id).await {
            Ok(keys) => keys,
            Err(e) => {
                tracing::warn!(error = %e, "DKIM keys unavailable; sending unsigned");
                return message.to_vec();
            }
        };
        // The secrets open here; the signing, which hashes the whole
        // message and (for RSA) does the modular arithmetic, runs on the
        // CPU pool.
        let mut signers = Vec::new();
        for key in keys.iter().filter(|k| k.state == DkimKeyState::Active) {
            match self.inbound.master().open_secret(
                &dkim_key_context(domain.name.as_str()),
                key.private_key.expose_secret(),
            ) {
                Ok(pem) => {
                    signers.push((key.selector.clone(), key.algorithm, SecretSlice::from(pem)))
                }
                Err(e) => {
                    tracing::warn!(error = %e, selector = %key.selector, "DKIM key does not open")
                }
            }
        }
        let (name, unsigned) = (domain.name.to_string(), message.to_vec());
        vault::cpu::run(move || {
            let mut headers = String::new();
            for (selector, algorithm, pem) in &signers {
                match dkim_signature(&name, selector, *algorithm, pem.expose_secret(), &unsigned) {
                    Ok(header) => headers.push_str(&header),
                    Err(e) => tracing::warn!(error = %e, %selector, "DKIM signing failed"),
                }
            }
            let mut signed = headers.into_bytes();
            signed.extend_from_slice(&unsigned);
            signed
        })
        .await
    }

    /// Delivers to hosted recipients; `sender` is the account that
    /// submitted it (a group's posting policy asks), `None` for system mail.
    async fn deliver_locally(
        &self,
        envelope_from: &str,
        recipients: &[String],
        message: &[u8],
        sender: Option<Uuid>,
    ) -> Vec<Outcome> {
        let host = Some(self.config.hostname.clone());
        let poster_account = match sender {
            Some(id) => self
                .store
                .account(tenants::AccountId(id))
                .await
                .ok()
                .flatten(),
            None => None,
        };
        let poster = match &poster_account {
            Some(a) => tenants::store::Poster::Account(a),
            None => tenants::store::Poster::Outside,
        };
        let mut outcomes = Vec::with_capacity(recipients.len());
        // One copy per recipient, each at its own level, like mail from outside.
        for r in recipients {
            let accepted = match self.inbound.check_recipient_from(r, 0, poster).await {
                Ok(recipients) => {
                    let envelope = Envelope {
                        from: envelope_from.to_owned(),
                        recipients,
                    };
                    self.inbound
                        .accept_local(&envelope, message, Some(envelope_from))
                        .await
                }
                Err(reply) => Err(reply),
            };
            outcomes.push(match accepted {
                Ok(_) => Outcome::new(
                    r,
                    DeliveryStatus::Delivered,
                    host.clone(),
                    "250 2.0.0 delivered locally".into(),
                ),
                Err(reply) => Outcome::from_reply(r, host.clone(), &reply),
            });
        }
        outcomes
    }

    async fn deliver_remotely(
        &self,
        domain: &str,
        envelope_from: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Vec<Outcome> {
        let defer_all = |host: Option<String>, reply: String| {
            Outcome::all(recipients, DeliveryStatus::Deferred, host, reply)
        };
        let bounce_all =
            |reply: String| Outcome::all(recipients, DeliveryStatus::Bounced, None, reply);
        if let Some(relay) = self.config.relay {
            let host = relay.ip().to_string();
            return match self
                .smtp_transaction(
                    &host,
                    relay,
                    &TlsRule::Opportunistic,
                    envelope_from,
                    recipients,
                    message,
                )
                .await
            {
                Ok(outcomes) => outcomes,
                Err(reason) => defer_all(Some(host), reason),
            };
        }
        let Some(dns) = &self.dns else {
            return defer_all(
                None,
                "no DNS resolver answers: the recipient's mail server cannot be found yet".into(),
            );
        };
        let hosts = match mx_hosts(dns, domain).await {
            Ok(hosts) if hosts.is_empty() => {
                return bounce_all(format!(
                    "550 5.1.10 {domain} accepts no mail (null MX, RFC 7505)"
                ));
            }
            Ok(hosts) => hosts,
            Err(MxError::NoSuchDomain) => {
                return bounce_all(format!(
                    "550 5.1.2 {domain} has no mail server (no MX, no address)"
                ));
            }
            Err(MxError::Dns(reason)) => {
                return defer_all(None, format!("DNS lookup for {domain} failed: {reason}"));
            }
        };
        // MTA-STS `enforce`: only the MX hosts the policy names, only over
        // TLS with a valid certificate; otherwise wait, never send in clear.
        let policy = match &self.policies {
            Some(policies) => policies
                .policy(domain)
                .await
                .filter(|p| p.mode == crate::mta_sts::Mode::Enforce),
            None => None,
        };
        let hosts: Vec<String> = match &policy {
            Some(policy) => hosts.into_iter().filter(|h| policy.allows(h)).collect(),
            None => hosts,
        };
        if hosts.is_empty() {
            return defer_all(
                None,
                format!("MTA-STS: no MX host of {domain} matches its enforced policy"),
            );
        }
        let require_tls = policy.is_some();
        // DANE applies only when the MX answer itself was validated.
        let mx_authentic = dns
            .lookup_validated(domain, Kind::Mx)
            .await
            .map(|(_, authentic)| authentic)
            .unwrap_or(false);
        let mut last = None;
        let mut refused = Vec::new();
        for host in hosts {
            // DANE, when the host has authentic TLSA records, comes before MTA-STS.
            let rule = match crate::dane::requirement(dns, mx_authentic, &host).await {
                Ok(crate::dane::Requirement::Tls(records)) => TlsRule::Dane(records),
                Ok(crate::dane::Requirement::None) if require_tls => TlsRule::Pkix,
                Ok(crate::dane::Requirement::None) => TlsRule::Opportunistic,
                Err(reason) => {
                    last = Some((host.clone(), reason));
                    continue;
                }
            };
            let addresses = match addresses(dns, &host).await {
                Ok(a) if !a.is_empty() => a,
                Ok(_) => {
                    last = Some((host.clone(), format!("{host} has no address")));
                    continue;
                }
                Err(reason) => {
                    last = Some((host.clone(), reason));
                    continue;
                }
            };
            for ip in addresses {
                if !crate::egress::may_connect(ip, self.config.allow_private_networks) {
                    refused.push(ip);
                    continue;
                }
                let server = std::net::SocketAddr::new(ip, self.config.delivery_port);
                match self
                    .smtp_transaction(&host, server, &rule, envelope_from, recipients, message)
                    .await
                {
                    Ok(outcomes) => return outcomes,
                    Err(reason) => last = Some((host.clone(), reason)),
                }
            }
        }
        if last.is_none() && !refused.is_empty() {
            let listed: Vec<String> = refused.iter().map(|ip| ip.to_string()).collect();
            tracing::warn!(
                domain,
                "an MX resolves only to private addresses; not connected to"
            );
            last = Some((
                String::new(),
                format!(
                    "the MX of {domain} resolves only to private, loopback or reserved addresses ({}), which Caliop does not connect to",
                    listed.join(", ")
                ),
            ));
        }
        let (host, reason) =
            last.unwrap_or((String::new(), "no mail server could be reached".into()));
        defer_all(Some(host).filter(|h| !h.is_empty()), reason)
    }

    /// One SMTP transaction; `Err` when the server could not be talked to
    /// (the next host is tried), `Ok` with one outcome per recipient once it
    /// answered.
    async fn smtp_transaction(
        &self,
        host: &str,
        server: std::net::SocketAddr,
        rule: &TlsRule,
        envelope_from: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Result<Vec<Outcome>, String> {
        let hello = ClientId::Domain(self.config.hostname.clone());
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            server,
            Some(self.config.connect_timeout),
            &hello,
            None,
            None,
        )
        .await
        .map_err(|e| format!("could not connect to {host} ({server}): {e}"))?;
        if let TlsRule::Dane(records) = rule {
            // DANE: TLS, with a certificate its TLSA records name, or no delivery.
            if !conn.can_starttls() {
                conn.abort().await;
                return Err(format!("DANE: {host} does not offer STARTTLS"));
            }
            let tls = unchecked_tls(host)?;
            conn.starttls(tls, &hello)
                .await
                .map_err(|e| format!("DANE: TLS with {host} failed: {e}"))?;
            let leaf = conn
                .peer_certificate()
                .map_err(|e| format!("DANE: no certificate from {host}: {e}"))?;
            if !crate::dane::satisfied(records, &leaf) {
                conn.abort().await;
                return Err(format!(
                    "DANE: the certificate of {host} matches none of its TLSA records"
                ));
            }
        } else if matches!(rule, TlsRule::Pkix) {
            // MTA-STS: a certificate valid for this MX host, or no delivery.
            if !conn.can_starttls() {
                conn.abort().await;
                return Err(format!("MTA-STS: {host} does not offer STARTTLS"));
            }
            let mut tls = TlsParameters::builder(host.to_owned());
            for root in &self.config.extra_roots {
                tls = tls.add_root_certificate(
                    lettre::transport::smtp::client::Certificate::from_der(root.to_vec())
                        .map_err(|e| format!("TLS setup failed: {e}"))?,
                );
            }
            let tls = tls
                .build_rustls()
                .map_err(|e| format!("TLS setup failed: {e}"))?;
            conn.starttls(tls, &hello)
                .await
                .map_err(|e| format!("MTA-STS: TLS with {host} failed: {e}"))?;
        } else if conn.can_starttls() {
            // Opportunistic TLS (RFC 3207): encrypt whenever offered. Without
            // MTA-STS or DANE a certificate cannot be checked against anything,
            // so it is not; a failed handshake falls back to the next host.
            let tls = unchecked_tls(host)?;
            conn.starttls(tls, &hello)
                .await
                .map_err(|e| format!("STARTTLS with {host} failed: {e}"))?;
        }
        // The null sender (`MAIL FROM:<>`) for automatic replies.
        let from = if envelope_from.is_empty() {
            None
        } else {
            Some(
                envelope_from
                    .parse::<lettre::Address>()
                    .map_err(|e| format!("bad sender address: {e}"))?,
            )
        };
        let options = if message.is_ascii() {
            vec![]
        } else {
            vec![lettre::transport::smtp::extension::MailParameter::Body(
                lettre::transport::smtp::extension::MailBodyParameter::EightBitMime,
            )]
        };
        if let Err(e) = conn.command(Mail::new(from, options)).await {
            conn.abort().await;
            return reply_error(&e).map(|(status, reply)| {
                Outcome::all(recipients, status, Some(host.to_owned()), reply)
            });
        }
        let mut outcomes = Vec::with_capacity(recipients.len());
        let mut accepted = Vec::new();
        for r in recipients {
            let Ok(address) = r.parse::<lettre::Address>() else {
                outcomes.push(Outcome::new(
                    r,
                    DeliveryStatus::Bounced,
                    None,
                    "553 5.1.3 invalid address".into(),
                ));
                continue;
            };
            match conn.command(Rcpt::new(address, vec![])).await {
                Ok(_) => accepted.push(r.clone()),
                Err(e) => {
                    let (status, reply) = reply_error(&e)?;
                    outcomes.push(Outcome::new(r, status, Some(host.to_owned()), reply));
                }
            }
        }
        if accepted.is_empty() {
            let _ = conn.quit().await;
            return Ok(outcomes);
        }
        let data = match conn.command(Data).await {
            Ok(_) => conn.message(message).await,
            Err(e) => Err(e),
        };
        let (status, reply) = match data {
            Ok(response) => (
                DeliveryStatus::Delivered,
                format!(
                    "{} {}",
                    response.code(),
                    response.message().collect::<Vec<_>>().join(" ")
                ),
            ),
            Err(e) => reply_error(&e)?,
        };
        let _ = conn.quit().await;
        outcomes.extend(Outcome::all(
            &accepted,
            status,
            Some(host.to_owned()),
            reply,
        ));
        Ok(outcomes)
    }

    /// Sends one message the system wrote for a tenant (welcome, reset,
    /// notices) to one recipient, now: signed with the keys of
    /// `envelope_from`'s domain, delivered locally or to the recipient's MX.
    /// `Err` when it was deferred, so the calling job retries.
    pub async fn send_system(
        &self,
        envelope_from: &str,
        recipient: &str,
        message: &[u8],
    ) -> Result<DeliveryStatus, String> {
        let signed = self.sign(envelope_from, message).await;
        let domain = recipient
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        let recipients = vec![recipient.to_owned()];
        let outcomes = if self.is_hosted(&domain).await? {
            self.deliver_locally(envelope_from, &recipients, &signed, None)
                .await
        } else {
            self.deliver_remotely(&domain, envelope_from, &recipients, &signed)
                .await
        };
        match outcomes.into_iter().next() {
            Some(o)
                if o.status == DeliveryStatus::Deferred || o.status == DeliveryStatus::Queued =>
            {
                Err(o.reply)
            }
            Some(o) => {
                if o.status == DeliveryStatus::Bounced {
                    tracing::warn!(reply = %o.reply, "a system mail was refused");
                }
                Ok(o.status)
            }
            None => Err("no delivery outcome".into()),
        }
    }

    /// This instance's host name (EHLO, Message-IDs).
    pub fn hostname(&self) -> &str {
        &self.config.hostname
    }

    /// Puts a plain-text notice from this instance's postmaster in a hosted
    /// account's Inbox (quota warnings, billing notices), through the
    /// inbound path, so it is stored at the account's level.
    pub async fn notify_local(&self, to: &str, subject: &str, body: &str) -> Result<(), String> {
        let postmaster = format!("postmaster@{}", self.config.hostname);
        let now = Utc::now();
        let message = format!(
            "From: {} <{postmaster}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nDate: {}\r\n\
             Message-ID: <{}@{}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: 8bit\r\nAuto-Submitted: auto-generated\r\n\r\n{}\r\n",
            self.config.hostname,
            now.to_rfc2822(),
            uuid::Uuid::now_v7().simple(),
            self.config.hostname,
            body.replace('\n', "\r\n"),
        );
        let envelope = Envelope {
            from: String::new(),
            recipients: self
                .inbound
                .check_recipient(to)
                .await
                .map_err(|r| r.text.clone())?,
        };
        self.inbound
            .accept_local(&envelope, message.as_bytes(), None)
            .await
            .map_err(|r| r.text.clone())?;
        Ok(())
    }

    /// Puts one DSN for `failures` in the sender's Inbox, through the inbound path.
    async fn bounce(
        &self,
        row: &tenants::store::OutboundRow,
        original: &[u8],
        failures: &[&Outcome],
        expired: bool,
    ) -> Result<(), String> {
        // A forwarded copy's sender is an SRS address: its failures stay in
        // the delivery log (they are not relayed back to the original sender).
        if failures.is_empty()
            || row.envelope_from.is_empty()
            || row
                .envelope_from
                .get(..5)
                .is_some_and(|p| p.eq_ignore_ascii_case("srs0="))
        {
            return Ok(());
        }
        let headers_end = original
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 2)
            .unwrap_or(original.len());
        let postmaster = format!("postmaster@{}", self.config.hostname);
        let now = Utc::now();
        // Without an enhanced status in the reply, the DSN builder says 5.0.0 (or 4.4.7 once expired).
        let statuses: Vec<String> = failures
            .iter()
            .map(|f| enhanced_status(&f.reply).unwrap_or_default())
            .collect();
        let recipients: Vec<crate::dsn::FailedRecipient<'_>> = failures
            .iter()
            .zip(&statuses)
            .map(|(f, status)| crate::dsn::FailedRecipient {
                address: &f.recipient,
                status,
                remote_mta: f.host.as_deref(),
                diagnostic: Some(&f.reply),
                last_attempt: now,
            })
            .collect();
        // The sender's tenant's wording and brand, in the sender's language.
        let header_text = String::from_utf8_lossy(&original[..headers_end])
            .replace("\r\n ", " ")
            .replace("\r\n\t", " ");
        let original_subject = header_text
            .lines()
            .find_map(|l| {
                l.get(..8)
                    .filter(|h| h.eq_ignore_ascii_case("subject:"))
                    .map(|_| l[8..].trim().to_owned())
            })
            .unwrap_or_default();
        let values = std::collections::BTreeMap::from([
            ("original_subject".to_owned(), original_subject),
            (
                "recipients".to_owned(),
                failures
                    .iter()
                    .map(|f| f.recipient.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            (
                "reason".to_owned(),
                failures
                    .first()
                    .map(|f| f.reply.clone())
                    .unwrap_or_default(),
            ),
        ]);
        let prepared =
            crate::templates::prepare(&self.store, &self.config.hostname, tenants::TenantId(row.tenant_id), "delivery_failure", None, &values)
                .await
                .map_err(|e| tracing::warn!(error = %e, "the branded DSN wording is unavailable; using the plain one"))
                .ok();
        let notice = prepared.as_ref().map(|p| crate::dsn::Notice {
            subject: &p.rendered.subject,
            from_name: &p.from_name,
            text: &p.rendered.text,
        });
        let report = crate::dsn::build(&crate::dsn::Bounce {
            notice,
            reporting_mta: &self.config.hostname,
            postmaster: &postmaster,
            to: &row.envelope_from,
            original_envelope_id: None,
            arrival: row.created_at,
            original_headers: &original[..headers_end],
            recipients: &recipients,
            expired,
        });
        let envelope = Envelope {
            from: String::new(),
            recipients: self
                .inbound
                .check_recipient(&row.envelope_from)
                .await
                .map_err(|r| r.text.clone())?,
        };
        self.inbound
            .accept_local(&envelope, &report, None)
            .await
            .map_err(|r| r.text.clone())?;
        tracing::info!(outbound = %row.id, recipients = failures.len(), expired, "bounce delivered to the sender");
        Ok(())
    }
}

/// What a domain's DKIM private key is sealed to.
pub fn dkim_key_context(domain: &str) -> String {
    format!("dkim-private-key:{domain}")
}

/// A fresh pair of DKIM keys for `domain` (RSA-2048 and Ed25519), sealed
/// under the master key, with selectors that name the month and differ
/// from any earlier ones. Slow (RSA): call it off the async threads.
pub fn generate_dkim_keys(
    master: &vault::at_rest::MasterKey,
    domain: &str,
) -> Result<Vec<tenants::store::NewDkimKey>, vault::VaultError> {
    let random = Uuid::new_v4().simple().to_string();
    let tag = format!("{}-{}", Utc::now().format("%Y%m"), &random[..4]);
    let mut keys = Vec::with_capacity(2);
    for (algorithm, key) in [
        (DkimAlgorithm::Rsa, vault::dkim::DkimKey::generate()?),
        (
            DkimAlgorithm::Ed25519,
            vault::dkim::DkimKey::generate_ed25519()?,
        ),
    ] {
        let private = master.seal_secret(
            &dkim_key_context(domain),
            key.private_key_pem.expose_secret().as_bytes(),
        )?;
        keys.push(tenants::store::NewDkimKey {
            selector: format!(
                "caliop-{tag}-{}",
                if algorithm == DkimAlgorithm::Rsa {
                    "rsa"
                } else {
                    "ed"
                }
            ),
            algorithm,
            public_key: key.public_key_b64,
            private_key: private.into(),
        });
    }
    Ok(keys)
}

pub(crate) fn spool_context(id: Uuid) -> String {
    format!("caliop-outbound:{id}")
}

/// One DKIM-Signature header line (with CRLF) over `message`, by the key
/// in `pem` (PKCS#8) of `domain`'s `selector`. CPU work: run it on the pool.
fn dkim_signature(
    domain: &str,
    selector: &str,
    algorithm: DkimAlgorithm,
    pem: &[u8],
    message: &[u8],
) -> Result<String, String> {
    let signature = match algorithm {
        DkimAlgorithm::Rsa => {
            use rustls::pki_types::pem::PemObject;
            let der =
                rustls::pki_types::PrivateKeyDer::from_pem_slice(pem).map_err(|e| e.to_string())?;
            let key_pair = RsaKey::<Sha256>::from_key_der(der).map_err(|e| e.to_string())?;
            signer_headers(
                DkimSigner::from_key(key_pair)
                    .domain(domain)
                    .selector(selector),
            )
            .sign(message)
        }
        DkimAlgorithm::Ed25519 => {
            let pem = std::str::from_utf8(pem).map_err(|e| e.to_string())?;
            let (seed, public) = vault::dkim::ed25519_parts(pem).map_err(|e| e.to_string())?;
            let key_pair = Ed25519Key::from_seed_and_public_key(seed.expose_secret(), &public)
                .map_err(|e| e.to_string())?;
            signer_headers(
                DkimSigner::from_key(key_pair)
                    .domain(domain)
                    .selector(selector),
            )
            .sign(message)
        }
    };
    Ok(signature.map_err(|e| e.to_string())?.to_header())
}

/// The headers DKIM covers: what a forger would want to change.
fn signer_headers<T: mail_auth::common::crypto::SigningKey>(
    signer: DkimSigner<T, mail_auth::dkim::NeedHeaders>,
) -> DkimSigner<T, mail_auth::dkim::Done> {
    signer.headers([
        "From",
        "To",
        "Cc",
        "Subject",
        "Date",
        "Message-ID",
        "Reply-To",
        "In-Reply-To",
        "References",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Autocrypt",
    ])
}

/// Where one recipient stands after an attempt, and the reply that says so.
struct Outcome {
    recipient: String,
    status: DeliveryStatus,
    host: Option<String>,
    reply: String,
}

impl Outcome {
    fn new(
        recipient: &str,
        status: DeliveryStatus,
        host: Option<String>,
        reply: String,
    ) -> Outcome {
        Outcome {
            recipient: recipient.to_owned(),
            status,
            host,
            reply,
        }
    }

    /// The same outcome for every recipient of a transaction.
    fn all(
        recipients: &[String],
        status: DeliveryStatus,
        host: Option<String>,
        reply: String,
    ) -> Vec<Outcome> {
        recipients
            .iter()
            .map(|r| Outcome::new(r, status, host.clone(), reply.clone()))
            .collect()
    }

    /// Our own inbound path's answer for a hosted recipient.
    fn from_reply(recipient: &str, host: Option<String>, reply: &Reply) -> Outcome {
        let status = if reply.code >= 500 {
            DeliveryStatus::Bounced
        } else {
            DeliveryStatus::Deferred
        };
        Outcome::new(
            recipient,
            status,
            host,
            reply.to_wire().trim_end().to_owned(),
        )
    }
}

/// A negative reply as (outcome, quoted reply); `Err` for failures that
/// are not replies (the connection broke), so the next host is tried.
fn reply_error(e: &lettre::transport::smtp::Error) -> Result<(DeliveryStatus, String), String> {
    let Some(code) = e.status() else {
        return Err(e.to_string());
    };
    let text = e.to_string();
    // lettre says "permanent error (550): <reply text>"; keep the reply.
    let detail = text
        .split_once("): ")
        .map(|(_, d)| d.to_owned())
        .unwrap_or(text);
    let reply = format!("{code} {detail}");
    Ok((
        if e.is_permanent() {
            DeliveryStatus::Bounced
        } else {
            DeliveryStatus::Deferred
        },
        reply,
    ))
}

/// The enhanced status code (RFC 3463) in a reply, if it carries one.
fn enhanced_status(reply: &str) -> Option<String> {
    let word = reply.split_whitespace().nth(1)?;
    let parts: Vec<&str> = word.split('.').collect();
    (parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && matches!(parts[0], "2" | "4" | "5"))
    .then(|| word.to_owned())
}

enum MxError {
    NoSuchDomain,
    Dns(String),
}

/// TLS parameters that check no certificate: opportunistic TLS, and DANE,
/// which checks the certificate itself against the TLSA records.
fn unchecked_tls(host: &str) -> Result<TlsParameters, String> {
    TlsParameters::builder(host.to_owned())
        .dangerous_accept_invalid_certs(true)
        .dangerous_accept_invalid_hostnames(true)
        .build_rustls()
        .map_err(|e| format!("TLS setup failed: {e}"))
}

/// What TLS delivery to one MX host requires.
enum TlsRule {
    /// STARTTLS whenever offered, the certificate unchecked (RFC 3207).
    Opportunistic,
    /// MTA-STS `enforce`: a certificate valid for the host (web PKI).
    Pkix,
    /// DANE: a certificate matching the host's authentic TLSA records.
    Dane(Vec<crate::dane::Tlsa>),
}

/// MX hosts by preference; the domain itself when it has none (RFC 5321
/// §5.1); an empty list for a null MX.
async fn mx_hosts(dns: &Dns, domain: &str) -> Result<Vec<String>, MxError> {
    let records = dns
        .lookup(domain, Kind::Mx)
        .await
        .map_err(|e| MxError::Dns(e.to_string()))?;
    let mut hosts: Vec<(u16, String)> = records
        .iter()
        .filter_map(|r| {
            let (preference, host) = r.split_once(' ')?;
            Some((preference.parse().ok()?, host.to_ascii_lowercase()))
        })
        .collect();
    if hosts.len() == 1 && (hosts[0].1.is_empty() || hosts[0].1 == ".") {
        return Ok(Vec::new());
    }
    if hosts.is_empty() {
        let a = addresses(dns, domain).await.map_err(MxError::Dns)?;
        if a.is_empty() {
            return Err(MxError::NoSuchDomain);
        }
        return Ok(vec![domain.to_owned()]);
    }
    hosts.sort();
    Ok(hosts.into_iter().map(|(_, h)| h).collect())
}

async fn addresses(dns: &Dns, host: &str) -> Result<Vec<std::net::IpAddr>, String> {
    let mut out = Vec::new();
    for kind in [Kind::A, Kind::Aaaa] {
        let found = dns.lookup(host, kind).await.map_err(|e| e.to_string())?;
        out.extend(
            found
                .iter()
                .filter_map(|a| a.parse::<std::net::IpAddr>().ok()),
        );
    }
    Ok(out)
}

/// Everyone a complete message is addressed to: its To, Cc and Bcc.
pub fn header_recipients(message: &[u8]) -> Vec<String> {
    let Some(parsed) = MessageParser::default().parse(message) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for list in [parsed.to(), parsed.cc(), parsed.bcc()]
        .into_iter()
        .flatten()
    {
        for address in list.iter() {
            if let Some(a) = address.address() {
                out.push(a.to_owned());
            }
        }
    }
    out
}

/// The first address of a message's From header.
fn header_from_address(message: &[u8]) -> Option<String> {
    let parsed = MessageParser::default().parse(message)?;
    parsed
        .from()?
        .first()
        .and_then(|a| a.address())
        .map(str::to_owned)
}

/// Every address a header holds, groups included.
fn addresses_of(address: &Address<'_>) -> Vec<Option<String>> {
    match address {
        Address::List(list) => list
            .iter()
            .map(|a| a.address().map(str::to_owned))
            .collect(),
        Address::Group(groups) => groups
            .iter()
            .flat_map(|g| g.addresses.iter().map(|a| a.address().map(str::to_owned)))
            .collect(),
    }
}

/// Who a submitted message says it is from, checked: exactly one `From:`
/// header holding exactly one address the account may send as, and at
/// most one `Sender:` holding one address the account owns. Anything else
/// is how a second author rides along (a second header, or a list of
/// addresses of which only one was checked).
fn author(
    parsed: &mail_parser::Message<'_>,
    account: &Account,
    addresses: &[String],
) -> Result<String, Refusal> {
    let count = |name: &str| {
        parsed
            .headers()
            .iter()
            .filter(|h| h.name().eq_ignore_ascii_case(name))
            .count()
    };
    match count("from") {
        0 => {
            return Err(Refusal::Invalid(
                "the message is not RFC 5322: it needs a From header".into(),
            ));
        }
        1 => {}
        n => {
            return Err(Refusal::NotYourAddress(format!(
                "the message has {n} From headers; it must have exactly one"
            )));
        }
    }
    let from = parsed.from().map(addresses_of).unwrap_or_default();
    let from = match from.as_slice() {
        [Some(address)] => address.clone(),
        [None] | [] => return Err(Refusal::Invalid("the From header holds no address".into())),
        more => {
            return Err(Refusal::NotYourAddress(format!(
                "the From header holds {} addresses; it must hold exactly one, an address of this account",
                more.len()
            )));
        }
    };
    if !tenants::may_send_as(addresses, &from) {
        return Err(Refusal::NotYourAddress(format!(
            "`{from}` is not an address of this account; send as {}",
            account.address
        )));
    }
    match count("sender") {
        0 => {}
        1 => {
            let sender = parsed.sender().map(addresses_of).unwrap_or_default();
            match sender.as_slice() {
                [Some(address)] if tenants::may_send_as(addresses, address) => {}
                _ => {
                    return Err(Refusal::NotYourAddress(format!(
                        "the Sender header must hold exactly one address of this account ({})",
                        account.address
                    )));
                }
            }
        }
        n => {
            return Err(Refusal::NotYourAddress(format!(
                "the message has {n} Sender headers; it may have at most one"
            )));
        }
    }
    Ok(from)
}

/// The Autocrypt header (Level 1) offering the sender's public key.
fn autocrypt_header(account: &Account) -> Option<String> {
    let key = vault::openpgp::AccountKey::binary_public_key(&account.public_key).ok()?;
    let data = base64::engine::general_purpose::STANDARD.encode(key);
    let mut header = format!(
        "Autocrypt: addr={}; prefer-encrypt=mutual; keydata=",
        account.address
    );
    // Folded: continuation lines start with a space (RFC 5322 §2.2.3).
    for (i, chunk) in data.as_bytes().chunks(72).enumerate() {
        if i > 0 {
            header.push_str("\r\n ");
        }
        header.push_str(std::str::from_utf8(chunk).unwrap_or_default());
    }
    Some(header)
}

/// The message with `add` header lines put first and the headers named in
/// `drop` removed (with their continuation lines).
fn rewrite_headers(message: &[u8], add: &[String], drop: &[&str]) -> Vec<u8> {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 2)
        .or_else(|| message.windows(2).position(|w| w == b"\n\n").map(|i| i + 1))
        .unwrap_or(message.len());
    let (head, body) = message.split_at(end);
    let mut out = Vec::with_capacity(message.len() + 1024);
    for line in add {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut dropping = false;
    for line in head.split_inclusive(|&b| b == b'\n') {
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            dropping = drop.iter().any(|d| name.eq_ignore_ascii_case(d.as_bytes()));
        }
        if !dropping {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(body);
    out
}

/// The outgoing PGP/MIME message: the whole outgoing message (headers
/// included and marked protected, RFC 9788 style) encrypted once to every
/// key, inside an envelope that shows only what delivery and threading need.
fn encrypt_outgoing(outgoing: &[u8], keys: &[&str]) -> Result<Vec<u8>, vault::VaultError> {
    let armored = vault::seal::encrypt_to_all(keys, &vault::seal::protect_headers(outgoing))?;
    let parsed = MessageParser::default()
        .parse(outgoing)
        .ok_or_else(|| vault::VaultError::Encoding("the outgoing message does not parse".into()))?;
    let raw = parsed.raw_message();
    let mut headers: Vec<String> = [
        "From",
        "To",
        "Cc",
        "Date",
        "Message-ID",
        "Autocrypt",
        "In-Reply-To",
        "References",
    ]
    .iter()
    .filter_map(|name| {
        parsed
            .headers()
            .iter()
            .find(|h| h.name().eq_ignore_ascii_case(name))
            .map(|h| (name, h))
    })
    .map(|(name, h)| {
        let value =
            String::from_utf8_lossy(&raw[h.offset_start() as usize..h.offset_end() as usize]);
        format!("{name}: {}", value.trim())
    })
    .collect();
    headers.push("Subject: ...".to_owned());
    Ok(vault::seal::pgp_mime(&headers, &armored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcc_is_dropped_with_its_continuation_lines() {
        let message = b"From: a@x.test\r\nBcc: hidden@y.test,\r\n  other@z.test\r\nTo: b@y.test\r\n\r\nBcc: in the body stays\r\n";
        let out = rewrite_headers(message, &["Message-ID: <1@x>".into()], &["bcc"]);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "Message-ID: <1@x>\r\nFrom: a@x.test\r\nTo: b@y.test\r\n\r\nBcc: in the body stays\r\n"
        );
    }

    #[test]
    fn enhanced_status_is_read_from_replies() {
        assert_eq!(
            enhanced_status("550 5.1.1 <bob@x>: no such user").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(
            enhanced_status("451 4.3.0 try later").as_deref(),
            Some("4.3.0")
        );
        assert_eq!(enhanced_status("550 no such user"), None);
        assert_eq!(enhanced_status("550 1.2.3 odd"), None);
    }

    #[test]
    fn free_accounts_get_tighter_rates() {
        let limits = SendLimits::default();
        let free = limits.for_kind(TenantKind::Public);
        let paid = limits.for_kind(TenantKind::Enterprise);
        assert!(free.account_messages_per_hour < paid.account_messages_per_hour);
        assert!(free.account_recipients_per_day < paid.account_recipients_per_day);
    }
}
