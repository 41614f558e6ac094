//! What happens to a message between the end of DATA and the `250`:
//! recipients are checked against the hosted domains and accounts, the
//! sender is authenticated (SPF, DKIM, DMARC), the privacy index is
//! computed, and each recipient's copy is stored at its level through the
//! one stored form of [`crate::stored`] (encrypted at rest at `standard`,
//! sealed to the recipient's OpenPGP key above). Only then does the
//! transaction commit, for every recipient at once.
//!
//! Nothing here logs a header or a body: only ids, sizes and levels.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, MessageAuthenticator,
    SpfResult,
};
use mail_parser::{MessageParser, MimeHeaders};
use tenants::privacy::{Facts, PrivacyIndex};
use tenants::store::NewObject;
use tenants::store::{Poster, Resolution};
use tenants::{
    Account, AccountStatus, EmailAddress, Level, MessageId, NewMessage, Store, TenantId,
    TenantStatus,
};
use vault::at_rest::{DataKey, MasterKey};

use crate::dispersed::Dispersed;
use crate::filter::{Filter, OnError, Scan};
use crate::reply::Reply;

/// A recipient that passed RCPT TO.
#[derive(Clone)]
pub struct Recipient {
    pub account: Account,
    /// The effective level: the higher of the tenant's floor and the account's.
    pub level: Level,
    /// The tenant's `outer_thread_headers`: what a sealed copy shows of its conversation.
    pub outer_thread_headers: bool,
    /// Bytes left in the tenant's quota when the recipient was accepted.
    pub room: i64,
    /// The tenant's whole quota: a message larger than this can never be taken.
    pub quota: i64,
    /// The address that reached the account (its own, an alias, a group),
    /// without a `+tag`: vacation replies come from it.
    pub via: String,
    /// The recipient address as the sender wrote it.
    pub envelope_to: String,
    /// The `+tag` of a plus-address.
    pub tag: Option<String>,
}

/// Whether `mailbox` takes a message of `size` bytes now: its effective
/// level and the room left, or the refusal.
fn admit(mailbox: &tenants::RecipientAccount, size: i64) -> Result<(Level, i64), Reply> {
    if mailbox.account.status == AccountStatus::Suspended {
        return Err(Reply::new(550, "5.2.1", "mailbox disabled"));
    }
    if mailbox.tenant_status != TenantStatus::Active {
        return Err(Reply::new(
            550,
            "5.2.1",
            "mailbox disabled: the organisation is suspended",
        ));
    }
    let room = mailbox.storage_quota_bytes - mailbox.storage_used_bytes;
    if room <= 0 || size > room {
        return Err(over_quota(size, mailbox.storage_quota_bytes));
    }
    Ok((
        mailbox.account.effective_level(mailbox.tenant_min_level),
        room,
    ))
}

/// The refusal for a message of `size` bytes that does not fit in `room`:
/// temporary while deleting mail could make room, permanent when the
/// message is larger than the whole quota.
pub fn over_quota(size: i64, quota: i64) -> Reply {
    if size > quota {
        Reply::new(
            552,
            "5.2.2",
            "the message is larger than the mailbox's whole quota",
        )
    } else {
        Reply::new(
            452,
            "4.2.2",
            "mailbox full: the organisation's storage quota has no room for this message, try again later",
        )
    }
}

/// What the SMTP session knows about the client.
#[derive(Clone, Debug)]
pub struct Session {
    pub client_ip: IpAddr,
    pub helo: String,
    /// 12 for TLS 1.2, 13 for TLS 1.3, 0 in clear.
    pub tls_version: u8,
    pub tls_cipher: Option<String>,
}

/// One SMTP transaction, ready to be stored.
pub struct Envelope {
    /// Empty for the null sender (bounces).
    pub from: String,
    pub recipients: Vec<Recipient>,
}

/// The delivery side of the MX, shared by every session.
pub struct Inbound {
    store: Store,
    master: Arc<MasterKey>,
    authenticator: Option<MessageAuthenticator>,
    hostname: String,
    data_keys: Mutex<HashMap<TenantId, Arc<DataKey>>>,
    /// Where `dispersed` and `end-to-end` messages go; without it they are refused (451).
    dispersed: Option<Arc<Dispersed>>,
    /// The spam and virus filter; `None` only where none is wanted (benchmarks).
    filter: Option<Arc<Filter>>,
    /// Sieve, run on arrival before sealing.
    scripts: Arc<crate::scripts::Engine>,
    /// For Web Key Directory lookups (a forwarding destination's key);
    /// the outbound side hands its client over.
    https: std::sync::OnceLock<crate::https::Https>,
}

impl Inbound {
    /// `authenticator` is `None` only where no DNS is wanted (benchmarks);
    /// then SPF, DKIM and DMARC are recorded as `none`.
    pub fn new(
        store: Store,
        master: MasterKey,
        authenticator: Option<MessageAuthenticator>,
        hostname: String,
    ) -> Inbound {
        Inbound {
            store,
            master: Arc::new(master),
            authenticator,
            data_keys: Mutex::default(),
            dispersed: None,
            filter: None,
            scripts: Arc::new(crate::scripts::Engine::new(
                &hostname,
                crate::scripts::Limits::default(),
            )),
            hostname,
            https: std::sync::OnceLock::new(),
        }
    }

    /// Lets arrival look up keys in Web Key Directories with this client.
    pub fn use_https(&self, https: crate::https::Https) {
        let _ = self.https.set(https);
    }

    pub(crate) fn https(&self) -> Option<&crate::https::Https> {
        self.https.get()
    }

    /// The Sieve engine (ManageSieve and the API check scripts with it).
    pub fn scripts(&self) -> &Arc<crate::scripts::Engine> {
        &self.scripts
    }

    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    pub(crate) fn authenticator(&self) -> Option<&MessageAuthenticator> {
        self.authenticator.as_ref()
    }

    /// Takes a verdict on every message before it is stored (see [`crate::filter`]).
    pub fn with_filter(mut self, filter: Arc<Filter>) -> Inbound {
        self.filter = Some(filter);
        self
    }

    pub fn filter(&self) -> Option<&Arc<Filter>> {
        self.filter.as_ref()
    }

    /// Stores `dispersed` and `end-to-end` messages as shards on these sites.
    pub fn with_dispersed(mut self, dispersed: Arc<Dispersed>) -> Inbound {
        self.dispersed = Some(dispersed);
        self
    }

    pub fn dispersed(&self) -> Option<&Arc<Dispersed>> {
        self.dispersed.as_ref()
    }

    /// Cuts the stored form of a message into shards on the sites, under the
    /// tenant's policy. Refused with 451 4.3.0 (the sender retries) when the
    /// policy cannot be met: a message is never stored below its level.
    pub async fn disperse(
        &self,
        tenant: TenantId,
        id: MessageId,
        stored: &[u8],
    ) -> Result<NewObject, Reply> {
        let Some(dispersed) = &self.dispersed else {
            tracing::error!(message = %id, "a message needs dispersed storage and no storage sites are configured");
            return Err(Reply::new(
                451,
                "4.3.0",
                "storage for this recipient's confidentiality level is unavailable, try again later",
            ));
        };
        dispersed.write(tenant, id.0, stored).await.map_err(|e| {
            tracing::warn!(message = %id, error = %e, "dispersal refused");
            match e {
                vault::VaultError::Placement(_) => Reply::new(
                    451,
                    "4.3.0",
                    "the recipient's storage policy cannot be met right now, try again later",
                ),
                _ => Reply::new(451, "4.3.0", "storage sites unavailable, try again later"),
            }
        })
    }

    /// Reads back a message whose bytes are dispersed, as it was stored.
    pub async fn read_dispersed(&self, id: MessageId) -> Result<Vec<u8>, Reply> {
        let Some(dispersed) = &self.dispersed else {
            return Err(Reply::new(451, "4.3.0", "no storage sites are configured"));
        };
        dispersed.read(id.0).await.map_err(|e| {
            tracing::error!(message = %id, error = %e, "a dispersed message could not be read");
            Reply::new(
                451,
                "4.3.0",
                "too few storage sites answered; try again later",
            )
        })
    }

    /// Deletes the shards of messages whose storing failed after dispersal.
    pub async fn discard(&self, written: &[(MessageId, NewObject)]) {
        let Some(dispersed) = &self.dispersed else {
            return;
        };
        for (id, object) in written {
            dispersed.discard(id.0, object).await;
        }
    }

    fn written(messages: &[NewMessage]) -> Vec<(MessageId, NewObject)> {
        messages
            .iter()
            .filter_map(|m| Some((m.id, m.dispersed.clone()?)))
            .collect()
    }

    /// Stores messages, and takes their shards back if the store refuses.
    async fn commit(&self, messages: Vec<NewMessage>) -> Result<Vec<MessageId>, tenants::Error> {
        let written = Self::written(&messages);
        let outcome = self.store.deliver(messages).await;
        if outcome.is_err() {
            // Nothing was committed: the shards written for it go too.
            self.discard(&written).await;
        }
        outcome
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The instance master key, for other secrets kept at rest (DKIM keys).
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// RCPT TO from outside: who an address we host reaches (see
    /// [`tenants::Store::resolve`]), each a live account with room.
    pub async fn check_recipient(&self, address: &str) -> Result<Vec<Recipient>, Reply> {
        self.check_recipient_from(address, 0, Poster::Outside).await
    }

    /// [`Inbound::check_recipient`] for a message announced at `size` bytes
    /// (`SIZE=`): refused at once if it cannot fit (see [`over_quota`]).
    pub async fn check_recipient_sized(
        &self,
        address: &str,
        size: i64,
    ) -> Result<Vec<Recipient>, Reply> {
        self.check_recipient_from(address, size, Poster::Outside)
            .await
    }

    /// The recipients `address` reaches for mail from `poster`: one account,
    /// or a group's members (those that cannot take it are left out; the
    /// address is refused only when none can). A group that does not let
    /// this sender post answers `550 5.7.1` with why.
    pub async fn check_recipient_from(
        &self,
        address: &str,
        size: i64,
        poster: Poster<'_>,
    ) -> Result<Vec<Recipient>, Reply> {
        let parsed = EmailAddress::parse(address)
            .map_err(|_| Reply::new(501, "5.1.3", "bad recipient address syntax"))?;
        let internal = |e: tenants::Error| {
            tracing::error!(error = %e, "recipient lookup failed");
            Reply::new(451, "4.3.0", "local error in processing, try again later")
        };
        let reached = match self
            .store
            .resolve(&parsed, poster)
            .await
            .map_err(internal)?
        {
            Resolution::NotHosted => {
                return Err(Reply::new(
                    550,
                    "5.1.2",
                    "relay not permitted: this domain is not hosted here",
                ));
            }
            Resolution::Unknown => return Err(Reply::new(550, "5.1.1", "no such mailbox here")),
            Resolution::Refused(why) => return Err(Reply::new(550, "5.7.1", why)),
            Resolution::Reach(reached) => reached,
        };
        let single = reached.len() == 1;
        let mut out = Vec::with_capacity(reached.len());
        let mut refused = None;
        for r in reached {
            match admit(&r.recipient, size) {
                Ok((level, room)) => out.push(Recipient {
                    level,
                    outer_thread_headers: r.recipient.tenant_outer_thread_headers,
                    room,
                    quota: r.recipient.storage_quota_bytes,
                    account: r.recipient.account,
                    via: r.via,
                    envelope_to: parsed.to_string(),
                    tag: r.tag,
                }),
                Err(reply) if single => return Err(reply),
                Err(reply) => {
                    tracing::info!(account = %r.recipient.account.id, "a group member cannot take this message");
                    refused.get_or_insert(reply);
                }
            }
        }
        if out.is_empty() {
            return Err(refused.unwrap_or_else(|| Reply::new(550, "5.1.1", "no such mailbox here")));
        }
        Ok(out)
    }

    async fn data_key(&self, tenant: TenantId) -> Result<Arc<DataKey>, Reply> {
        if let Some(key) = self
            .data_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&tenant)
        {
            return Ok(key.clone());
        }
        let failed = |e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "tenant data key unavailable");
            Reply::new(451, "4.3.0", "local error in processing, try again later")
        };
        let owner = tenant.0.as_bytes().to_vec();
        let wrapped = match self
            .store
            .tenant_key(tenant)
            .await
            .map_err(|e| failed(&e))?
        {
            Some(wrapped) => wrapped,
            None => {
                let (_, wrapped) = self.master.new_data_key(&owner).map_err(|e| failed(&e))?;
                self.store
                    .put_tenant_key(tenant, &wrapped)
                    .await
                    .map_err(|e| failed(&e))?
            }
        };
        let key = Arc::new(
            self.master
                .unwrap_data_key(&owner, &wrapped)
                .map_err(|e| failed(&e))?,
        );
        self.data_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant, key.clone());
        Ok(key)
    }

    /// Opens a `standard` message for the API.
    pub async fn decrypt_standard(
        &self,
        tenant: TenantId,
        id: MessageId,
        stored: &[u8],
    ) -> Result<Vec<u8>, Reply> {
        self.decrypt_at_rest(tenant, &context(id), stored).await
    }

    /// End of DATA: authenticate, judge, seal and store. `Ok` means committed.
    pub async fn accept(
        &self,
        session: &Session,
        envelope: &Envelope,
        data: &[u8],
    ) -> Result<Vec<MessageId>, Reply> {
        let auth = self.authenticate(session, &envelope.from, data).await;
        self.store_copies(session, envelope, data, auth).await
    }

    /// Delivery from this instance to itself: mail a hosted user submitted
    /// (already authenticated by password, signed with our own key) or a
    /// report we generate. It takes the same path as mail from outside,
    /// levels and privacy index included, without the DNS checks that would
    /// only ask ourselves. `submitted_by` is the authenticated account, or
    /// `None` for mail the server itself writes (bounces).
    pub async fn accept_local(
        &self,
        envelope: &Envelope,
        data: &[u8],
        submitted_by: Option<&str>,
    ) -> Result<Vec<MessageId>, Reply> {
        let session = Session {
            client_ip: IpAddr::from([127, 0, 0, 1]),
            helo: self.hostname.clone(),
            // Never on a network: as private as TLS 1.3.
            tls_version: 13,
            tls_cipher: Some("local".into()),
        };
        let auth = AuthOutcome::local(&self.hostname, submitted_by);
        self.store_copies(&session, envelope, data, auth).await
    }

    /// Encrypts bytes at rest under the tenant's data key, bound to `context`.
    pub async fn encrypt_at_rest(
        &self,
        tenant: TenantId,
        context: &[u8],
        plain: &[u8],
    ) -> Result<Vec<u8>, Reply> {
        let key = self.data_key(tenant).await?;
        key.seal(context, plain).map_err(|e| {
            tracing::error!(error = %e, "encryption at rest failed");
            Reply::new(451, "4.3.0", "local error in processing, try again later")
        })
    }

    /// Opens what [`Inbound::encrypt_at_rest`] sealed.
    pub async fn decrypt_at_rest(
        &self,
        tenant: TenantId,
        context: &[u8],
        stored: &[u8],
    ) -> Result<Vec<u8>, Reply> {
        let key = self.data_key(tenant).await?;
        key.open(context, stored).map_err(|e| {
            tracing::error!(error = %e, "stored bytes do not open");
            Reply::new(451, "4.3.0", "stored data unreadable")
        })
    }

    /// The sealed form of a `standard` message, as the store keeps it.
    pub async fn encrypt_standard(
        &self,
        tenant: TenantId,
        id: MessageId,
        plain: &[u8],
    ) -> Result<Vec<u8>, Reply> {
        self.encrypt_at_rest(tenant, &context(id), plain).await
    }

    async fn store_copies(
        &self,
        session: &Session,
        envelope: &Envelope,
        data: &[u8],
        auth: AuthOutcome,
    ) -> Result<Vec<MessageId>, Reply> {
        let parsed = MessageParser::default().parse(data).ok_or_else(|| {
            Reply::new(554, "5.6.0", "the message could not be parsed as RFC 5322")
        })?;
        let (encrypted, signed) = openpgp_protection(&parsed);
        if auth.dmarc_reject {
            return Err(Reply::new(
                550,
                "5.7.1",
                "rejected by the sender domain's DMARC policy (p=reject)",
            ));
        }
        if !encrypted
            && envelope
                .recipients
                .iter()
                .any(|r| r.level == Level::EndToEnd)
        {
            return Err(Reply::new(
                550,
                "5.7.1",
                "a recipient accepts only OpenPGP-encrypted mail (end-to-end level); encrypt to their key and resend",
            ));
        }
        // Quick refusal from what RCPT saw; the store enforces the quota atomically anyway.
        if let Some(r) = envelope
            .recipients
            .iter()
            .find(|r| (data.len() as i64) > r.room)
        {
            return Err(over_quota(data.len() as i64, r.quota));
        }

        let verdict = self.verdict(session, envelope, data, &auth).await?;

        let received_at = chrono::Utc::now();
        let date = received_at.to_rfc2822();
        // A hosted sender's key is one we hold.
        let sender_key_known = match EmailAddress::parse(&envelope.from) {
            Ok(from) => self
                .store
                .hosted_account(&from)
                .await
                .ok()
                .flatten()
                .is_some(),
            Err(_) => false,
        };
        let mut messages = Vec::with_capacity(envelope.recipients.len());
        let mut automatic = Vec::new();
        let mut rejected: Option<String> = None;
        for recipient in &envelope.recipients {
            let id = MessageId::new();
            let account = &recipient.account;
            let history = self.correspondent(account, &envelope.from).await?;
            let privacy = PrivacyIndex::compute(&Facts {
                tls_version: session.tls_version,
                dkim_pass: auth.dkim_pass,
                spf_pass: auth.spf_pass,
                dmarc_pass: auth.dmarc_pass,
                encrypted,
                signed,
                written_to_sender: history.sent > 0,
                received_before: history.received,
                received_encrypted_before: history.received_encrypted,
                sender_key_known,
            });
            // The account's own rule about this sender weighs in.
            let verdict = match &verdict {
                Some(v) => Some(tenants::Verdict {
                    sender_rule: self
                        .store
                        .sender_rule(account.id, &envelope.from)
                        .await
                        .map_err(|e| {
                            tracing::error!(error = %e, "sender rule lookup failed");
                            Reply::new(451, "4.3.0", "local error in processing, try again later")
                        })?,
                    ..v.clone()
                }),
                None => None,
            };
            let mut trace = vec![
                format!(
                    "Received: from {} ([{}]) by {} with {} id {}; {}",
                    sanitize(&session.helo),
                    session.client_ip,
                    self.hostname,
                    if session.tls_version > 0 {
                        "ESMTPS"
                    } else {
                        "ESMTP"
                    },
                    id,
                    date
                ),
                auth.header.clone(),
            ];
            // Readable headers only where the server reads the message anyway;
            // above `standard` the verdict is metadata only, and what is
            // sealed stays what the sender wrote.
            if recipient.level == Level::Standard
                && let Some(verdict) = &verdict
            {
                trace.extend(spam_headers(verdict));
            }
            let thread = crate::stored::outer_thread(
                &parsed,
                recipient.outer_thread_headers,
                id,
                &self.hostname,
            );
            // Sieve and forwarding, on the plaintext that exists for this
            // moment only (in memory), before the copy is sealed.
            let decided = self
                .decide(session, envelope, recipient, id, data, auth.generated)
                .await?;
            automatic.extend(decided.automatic);
            if let Some(reason) = decided.reject {
                rejected.get_or_insert(reason);
                continue;
            }
            for (n, filing) in decided.filings.into_iter().enumerate() {
                // The first copy keeps the id the trace names; others get their own.
                let id = if n == 0 { id } else { MessageId::new() };
                let copy = crate::stored::Copy {
                    id,
                    level: recipient.level,
                    account,
                    trace: &trace,
                    from: Some(envelope.from.as_str()),
                    to: &[account.address.as_str()],
                    date: &date,
                    thread: &thread,
                    hostname: &self.hostname,
                };
                let stored = match self.stored_form(&copy, data, &parsed).await {
                    Ok(stored) => stored,
                    Err(reply) => {
                        self.discard(&Self::written(&messages)).await;
                        return Err(reply);
                    }
                };
                let (flags, keywords) = filing_flags(&filing.flags);
                messages.push(NewMessage {
                    id,
                    tenant_id: account.tenant_id,
                    account_id: account.id,
                    level: recipient.level,
                    envelope_from: envelope.from.to_ascii_lowercase(),
                    envelope_to: account.address.to_string(),
                    subject: stored.subject,
                    sender: stored.sender,
                    privacy,
                    authentication: auth.json.clone(),
                    arrived_encrypted: encrypted,
                    content: stored.content,
                    dispersed: stored.dispersed,
                    summary: stored.summary,
                    rfc822_size: stored.rfc822_size,
                    flags,
                    keywords,
                    received_at: None,
                    verdict: verdict.clone(),
                    mailbox: filing.mailbox,
                });
            }
        }
        if messages.is_empty()
            && let Some(reason) = rejected
        {
            // Every recipient's script refused it: the sender hears why.
            return Err(Reply::new(
                550,
                "5.7.1",
                format!("rejected by the recipient's filter: {}", one_line(&reason)),
            ));
        }
        let sizes: i64 = messages.iter().map(NewMessage::size).sum();
        let outcome = if messages.is_empty() {
            // Discarded or forwarded away by every recipient's rules.
            Ok(Vec::new())
        } else {
            self.commit(messages).await
        };
        match outcome {
            Ok(ids) => {
                tracing::debug!(recipients = ids.len(), bytes = sizes, "message stored");
                // Only once the message is safely stored: what it causes to be sent.
                for auto in automatic {
                    self.send_automatic(auto).await;
                }
                Ok(ids)
            }
            // Another message took the room since RCPT: the sender may retry.
            Err(tenants::Error::LimitExceeded(_)) => Err(Reply::new(
                452,
                "4.2.2",
                "mailbox full: the organisation's storage quota has no room for this message, try again later",
            )),
            Err(e) => {
                tracing::error!(error = %e, "storing a message failed");
                Err(Reply::new(
                    451,
                    "4.3.0",
                    "local error in processing, try again later",
                ))
            }
        }
    }

    /// The filter's verdict on a message about to be stored, or the refusal
    /// it makes of it: a virus `554 5.7.1`, spam beyond doubt `550 5.7.1`,
    /// a soft reject `451 4.7.1`; a filter that fails tempfails (`451
    /// 4.7.1`) or lets the message in unscanned, as `filter.on_error` says.
    /// Mail the server writes itself (bounces, reports) is not scanned.
    async fn verdict(
        &self,
        session: &Session,
        envelope: &Envelope,
        data: &[u8],
        auth: &AuthOutcome,
    ) -> Result<Option<tenants::Verdict>, Reply> {
        let Some(filter) = &self.filter else {
            return Ok(None);
        };
        if auth.generated {
            return Ok(None);
        }
        let fact = |name: &str| auth.json[name].as_str().unwrap_or("none").to_owned();
        let (spf, dkim, dmarc, dmarc_policy) = (
            fact("spf"),
            fact("dkim"),
            fact("dmarc"),
            fact("dmarc_policy"),
        );
        let tenant = envelope.recipients.first().map(|r| r.account.tenant_id);
        let class = tenant
            .filter(|t| {
                envelope
                    .recipients
                    .iter()
                    .all(|r| r.account.tenant_id == *t)
            })
            .map(|t| t.to_string());
        let scan = Scan {
            client_ip: session.client_ip,
            helo: &session.helo,
            from: &envelope.from,
            recipients: envelope
                .recipients
                .iter()
                .map(|r| r.account.address.as_str())
                .collect(),
            tls_version: session.tls_version,
            tls_cipher: session.tls_cipher.as_deref(),
            user: auth.user.as_deref(),
            class: class.as_deref(),
            spf: &spf,
            dkim: &dkim,
            dmarc: &dmarc,
            dmarc_policy: &dmarc_policy,
            data,
        };
        match filter.scan(&scan).await {
            Ok(verdict) => refusal(&verdict).map_or(Ok(Some(verdict)), Err),
            Err(_) => match filter.config().on_error {
                OnError::Tempfail => Err(Reply::new(
                    451,
                    "4.7.1",
                    "the content filter is unavailable, try again later",
                )),
                OnError::Accept => {
                    let verdict = tenants::Verdict::unscanned();
                    filter.count(&verdict);
                    Ok(Some(verdict))
                }
            },
        }
    }

    /// An account moved or copied `messages` into Junk (`spam`) or out of
    /// it (see [`tenants::judgement`]): each sender goes on the account's
    /// block or allow list at once, which the next verdict uses, and Rspamd
    /// learns from the `standard` ones (their plaintext is the server's to
    /// read; nothing above `standard` is opened). Learning runs in the
    /// background; a failure is logged, never the mover's problem.
    pub async fn judged(&self, messages: &[tenants::MessageMeta], spam: bool) {
        let rule = if spam {
            tenants::SenderRule::Block
        } else {
            tenants::SenderRule::Allow
        };
        for m in messages {
            if m.envelope_from.is_empty() {
                continue;
            }
            if let Err(e) = self
                .store
                .set_sender_rule(m.account_id, &m.envelope_from, rule)
                .await
            {
                tracing::warn!(message = %m.id, error = %e, "a judgement's sender rule was not kept");
            }
        }
        let Some(filter) = self.filter.clone() else {
            return;
        };
        if filter.config().rspamd_url.is_none() {
            return;
        }
        // A bulk move teaches no more than this many messages.
        const MAX_LEARNED: usize = 50;
        let mut lessons = Vec::new();
        for m in messages
            .iter()
            .filter(|m| m.level == Level::Standard)
            .take(MAX_LEARNED)
        {
            let stored = match self.store.message_content(m.id).await {
                Ok(Some(tenants::store::StoredContent::Inline(bytes))) => bytes,
                Ok(Some(tenants::store::StoredContent::Dispersed)) => {
                    match self.read_dispersed(m.id).await {
                        Ok(bytes) => bytes,
                        Err(_) => continue,
                    }
                }
                _ => continue,
            };
            if let Ok(plain) = self.decrypt_standard(m.tenant_id, m.id, &stored).await {
                lessons.push((m.id, m.tenant_id, plain));
            }
        }
        if lessons.is_empty() {
            return;
        }
        tokio::spawn(async move {
            for (id, tenant, plain) in lessons {
                match filter.learn(spam, &plain, &tenant.to_string()).await {
                    Ok(_) => tracing::info!(message = %id, spam, "Rspamd learned a judgement"),
                    Err(e) => {
                        tracing::warn!(message = %id, error = %e, "Rspamd did not learn a judgement")
                    }
                }
            }
        });
    }

    async fn correspondent(
        &self,
        account: &Account,
        from: &str,
    ) -> Result<tenants::Correspondent, Reply> {
        if from.is_empty() {
            return Ok(tenants::Correspondent::default());
        }
        self.store
            .correspondent(account.id, from)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "correspondent lookup failed");
                Reply::new(451, "4.3.0", "local error in processing, try again later")
            })
    }

    async fn authenticate(&self, session: &Session, from: &str, data: &[u8]) -> AuthOutcome {
        let Some(authenticator) = &self.authenticator else {
            return AuthOutcome::none(&self.hostname);
        };
        let Some(message) = AuthenticatedMessage::parse(data) else {
            return AuthOutcome::none(&self.hostname);
        };
        let dkim = authenticator.verify_dkim(&message).await;
        let mail_from = if from.is_empty() {
            format!("postmaster@{}", session.helo)
        } else {
            from.to_owned()
        };
        let mail_from_domain = mail_from
            .rsplit_once('@')
            .map(|(_, d)| d.to_owned())
            .unwrap_or_default();
        let spf = authenticator
            .verify_spf(SpfParameters::verify_mail_from(
                session.client_ip,
                &session.helo,
                &self.hostname,
                &mail_from,
            ))
            .await;
        let dmarc = authenticator
            .verify_dmarc(DmarcParameters::new(
                &message,
                &dkim,
                &mail_from_domain,
                &spf,
            ))
            .await;
        let header_from = message.from().to_owned();
        let header = AuthenticationResults::new(&self.hostname)
            .with_dkim_results(&dkim, &header_from)
            .with_spf_mailfrom_result(&spf, session.client_ip, &mail_from, &session.helo)
            .with_dmarc_result(&dmarc)
            .to_string();
        let dkim_pass = dkim.iter().any(|d| d.result() == &DkimResult::Pass);
        let spf_pass = spf.result() == SpfResult::Pass;
        let dmarc_pass = dmarc.result() == DmarcResult::Pass;
        let dmarc_failed = matches!(dmarc.result(), DmarcResult::Fail(_));
        let dmarc_reject = dmarc_failed && dmarc.policy() == mail_auth::dmarc::Policy::Reject;
        AuthOutcome {
            user: None,
            generated: false,
            header: format!("Authentication-Results: {header}"),
            json: serde_json::json!({
                "spf": format!("{:?}", spf.result()).to_lowercase(),
                "dkim": if dkim_pass { "pass" } else if dkim.is_empty() { "none" } else { "fail" },
                "dmarc": if dmarc_pass { "pass" } else if dmarc_failed { "fail" } else { "none" },
                "dmarc_policy": format!("{:?}", dmarc.policy()).to_lowercase(),
                "tls": session.tls_version,
                "tls_cipher": session.tls_cipher,
            }),
            dkim_pass,
            spf_pass,
            dmarc_pass,
            dmarc_reject,
        }
    }
}

struct AuthOutcome {
    /// The account that submitted it, for mail of our own users.
    user: Option<String>,
    /// Written by this server (bounces, reports): not scanned.
    generated: bool,
    header: String,
    json: serde_json::Value,
    dkim_pass: bool,
    spf_pass: bool,
    dmarc_pass: bool,
    dmarc_reject: bool,
}

impl AuthOutcome {
    /// Mail that never left this instance: the sender authenticated to us.
    fn local(hostname: &str, submitted_by: Option<&str>) -> AuthOutcome {
        let (header, who) = match submitted_by {
            Some(who) => (
                format!("Authentication-Results: {hostname}; auth=pass smtp.auth={who}"),
                who,
            ),
            None => (
                format!("Authentication-Results: {hostname}; none (generated by this server)"),
                "",
            ),
        };
        AuthOutcome {
            user: submitted_by.map(str::to_owned),
            generated: submitted_by.is_none(),
            header,
            json: serde_json::json!({"spf": "local", "dkim": "local", "dmarc": "local", "auth": who, "tls": 13}),
            dkim_pass: submitted_by.is_some(),
            spf_pass: submitted_by.is_some(),
            dmarc_pass: submitted_by.is_some(),
            dmarc_reject: false,
        }
    }

    fn none(hostname: &str) -> AuthOutcome {
        AuthOutcome {
            user: None,
            generated: false,
            header: format!("Authentication-Results: {hostname}; none"),
            json: serde_json::json!({"spf": "none", "dkim": "none", "dmarc": "none"}),
            dkim_pass: false,
            spf_pass: false,
            dmarc_pass: false,
            dmarc_reject: false,
        }
    }
}

/// What a verdict refuses, as the SMTP client is told: nothing that names
/// the filter's internals (its rules or scores), but the virus's name.
pub fn refusal(verdict: &tenants::Verdict) -> Option<Reply> {
    match verdict.disposition() {
        tenants::Disposition::RefuseVirus => Some(Reply::new(
            554,
            "5.7.1",
            format!(
                "refused: the message carries a virus ({})",
                sanitize(verdict.virus.as_deref().unwrap_or("unnamed"))
            ),
        )),
        tenants::Disposition::RefuseSpam => Some(Reply::new(
            550,
            "5.7.1",
            "refused: this server's content filter judged the message to be spam",
        )),
        tenants::Disposition::Defer => Some(Reply::new(
            451,
            "4.7.1",
            "deferred by this server's content filter, try again later",
        )),
        tenants::Disposition::Inbox | tenants::Disposition::Junk => None,
    }
}

/// The `X-Spam-*` lines of a `standard` copy.
fn spam_headers(verdict: &tenants::Verdict) -> Vec<String> {
    let spam = verdict.is_spam();
    let mut status = format!(
        "X-Spam-Status: {}, score={:.2} action={} filter={}",
        if spam { "Yes" } else { "No" },
        verdict.score,
        verdict.action,
        verdict.filter
    );
    if let Some(rule) = verdict.sender_rule {
        status.push_str(&format!(" sender-rule={rule}"));
    }
    let mut lines = vec![
        format!("X-Spam-Flag: {}", if spam { "YES" } else { "NO" }),
        status,
    ];
    if !verdict.symbols.is_empty() {
        let symbols: Vec<String> = verdict
            .symbols
            .iter()
            .take(30)
            .map(|s| sanitize(s))
            .collect();
        lines.push(format!("X-Spam-Symbols: {}", symbols.join(", ")));
    }
    lines
}

/// The associated data that binds a stored `standard` message to its id.
fn context(id: MessageId) -> Vec<u8> {
    format!("caliop-message:{id}").into_bytes()
}

/// HELO names go into a header: keep them to printable ASCII without spaces.
fn sanitize(helo: &str) -> String {
    helo.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect()
}

/// Whether the message is OpenPGP-encrypted and/or signed, as PGP/MIME
/// (RFC 3156) or inline armor. Encrypted means that its OpenPGP packets
/// parse as an encrypted message ([`vault::seal::is_encrypted_message`]),
/// not that an armour line or a content type says so.
pub fn openpgp_protection(message: &mail_parser::Message<'_>) -> (bool, bool) {
    let mut encrypted = false;
    let mut signed = false;
    if let Some(ct) = message.root_part().content_type() {
        let protocol = ct
            .attribute("protocol")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let subtype = ct.subtype().unwrap_or_default().to_ascii_lowercase();
        if subtype == "encrypted" && protocol == "application/pgp-encrypted" {
            encrypted |= pgp_mime_is_encrypted(message);
        }
        signed |= subtype == "signed" && protocol == "application/pgp-signature";
    }
    if let Some(text) = message.body_text(0) {
        let text = text.trim_start();
        if text.starts_with("-----BEGIN PGP MESSAGE-----") {
            encrypted |= vault::seal::is_encrypted_message(text.as_bytes());
        }
        signed |= text.starts_with("-----BEGIN PGP SIGNED MESSAGE-----");
    }
    (encrypted, signed)
}

/// RFC 3156 §4: a `multipart/encrypted` holds exactly a control part
/// (`application/pgp-encrypted`) and then the armoured encrypted message
/// (`application/octet-stream`), whose packets must parse as one.
fn pgp_mime_is_encrypted(message: &mail_parser::Message<'_>) -> bool {
    let Some(&[control, data]) = message.root_part().sub_parts() else {
        return false;
    };
    let typed = |id: u32, subtype: &str| {
        message
            .part(id)
            .and_then(|part| part.content_type())
            .is_some_and(|ct| {
                ct.ctype().eq_ignore_ascii_case("application")
                    && ct
                        .subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case(subtype))
            })
    };
    typed(control, "pgp-encrypted")
        && typed(data, "octet-stream")
        && message
            .part(data)
            .is_some_and(|part| vault::seal::is_encrypted_message(part.contents()))
}

/// What a recipient's rules made of a message.
struct Decided {
    filings: Vec<Filed>,
    reject: Option<String>,
    automatic: Vec<crate::automatic::Automatic>,
}

/// One copy to store: where, and with which flags.
struct Filed {
    mailbox: Option<tenants::MailboxId>,
    flags: Vec<String>,
}

/// Sieve's flags as stored: system flags (`\Seen`) and keywords (`$label`).
fn filing_flags(flags: &[String]) -> (Vec<tenants::Flag>, Vec<String>) {
    let mut system = Vec::new();
    let mut keywords = Vec::new();
    for flag in flags.iter().flat_map(|f| f.split_whitespace()) {
        match flag.strip_prefix('\\') {
            Some(name) => {
                if let Ok(f) = name.to_ascii_lowercase().parse::<tenants::Flag>() {
                    system.push(f);
                }
            }
            None => {
                let valid = !flag.is_empty()
                    && flag.len() <= 64
                    && flag
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b));
                if valid
                    && !keywords
                        .iter()
                        .any(|k: &String| k.eq_ignore_ascii_case(flag))
                {
                    keywords.push(flag.to_owned());
                }
            }
        }
    }
    (system, keywords)
}

/// A reason on one line, for an SMTP reply.
fn one_line(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    line.trim().to_owned()
}

/// How many `Received` lines a message carries: past a bound it is looping
/// and causes no more automatic mail.
fn hops(data: &[u8]) -> usize {
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(data.len());
    data[..end]
        .split(|&b| b == b'\n')
        .filter(|l| l.len() >= 9 && l[..9].eq_ignore_ascii_case(b"received:"))
        .count()
}

/// Whether a message is itself automatic or bulk (RFC 3834 §2): then no
/// vacation reply goes to it, whatever the script says. (sieve-rs checks
/// this too, but misses `Auto-Submitted` with the mail-parser it builds on.)
fn automatic_or_bulk(data: &[u8]) -> bool {
    header_lines(
        data,
        &[
            "auto-submitted",
            "precedence",
            "list-id",
            "list-unsubscribe",
            "x-auto-response-suppress",
        ],
    )
    .iter()
    .any(|line| {
        let (name, value) = line.split_once(':').unwrap_or_default();
        let value = value.trim().to_ascii_lowercase();
        match name.trim().to_ascii_lowercase().as_str() {
            "auto-submitted" => value != "no",
            "precedence" => matches!(value.as_str(), "bulk" | "list" | "junk"),
            "x-auto-response-suppress" => {
                value.split(',').any(|v| matches!(v.trim(), "all" | "oof"))
            }
            _ => true,
        }
    })
}

/// Past this many `Received` lines a message sends nothing automatically.
const MAX_HOPS: usize = 25;

impl Inbound {
    /// What `recipient`'s rules (the tenant's Sieve script, the account's,
    /// its forwarding) make of a message, before any copy is sealed.
    async fn decide(
        &self,
        session: &Session,
        envelope: &Envelope,
        recipient: &Recipient,
        id: MessageId,
        data: &[u8],
        generated: bool,
    ) -> Result<Decided, Reply> {
        let account = &recipient.account;
        let rules = self
            .store
            .delivery_rules(account.id.0, account.tenant_id)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "delivery rules lookup failed");
                Reply::new(451, "4.3.0", "local error in processing, try again later")
            })?;
        let outcome = if rules.scripts.is_empty() {
            crate::scripts::Outcome::keep()
        } else {
            let arrival = crate::scripts::Arrival {
                account: account.id.0,
                via: &recipient.via,
                display_name: &account.display_name,
                envelope_from: &envelope.from,
                envelope_to: &recipient.envelope_to,
            };
            self.scripts
                .run(&self.store, &rules.scripts, &arrival, data)
                .await
        };
        if let Some(failed) = &outcome.failed {
            tracing::info!(account = %account.id, failure = %failed, "a Sieve script did not run to its end");
        }
        if let Some(reason) = outcome.reject {
            return Ok(Decided {
                filings: Vec::new(),
                reject: Some(reason),
                automatic: Vec::new(),
            });
        }
        let looping = hops(data) > MAX_HOPS;
        let mut automatic = Vec::new();
        // Forwarding and Sieve redirects: never for mail the server wrote.
        let mut forwarded = false;
        if !generated && !looping {
            let mut destinations: Vec<String> = outcome.redirects.clone();
            destinations.extend(rules.forward_to.clone());
            destinations.dedup();
            destinations.retain(|to| !to.eq_ignore_ascii_case(&envelope.from));
            // Outside the service only where the tenant allows it now (a
            // Sieve `redirect` is forwarding too).
            // Past the hour's bound nothing automatic leaves, and the
            // message stays (it is never dropped for a forward not made).
            if !destinations.is_empty()
                && !self.store.automatic_room(account.id).await.unwrap_or(false)
            {
                tracing::warn!(account = %account.id, "automatic messages over the hour's bound: not forwarded");
                destinations.clear();
            }
            let external_allowed = if destinations.is_empty() {
                false
            } else {
                self.store
                    .tenant(account.tenant_id)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|t| t.external_forwarding)
            };
            let mut allowed = Vec::with_capacity(destinations.len());
            for to in destinations {
                let hosted = match EmailAddress::parse(&to) {
                    Ok(a) => self
                        .store
                        .hosted_domain(&a.domain())
                        .await
                        .ok()
                        .flatten()
                        .is_some(),
                    Err(_) => continue,
                };
                if hosted || external_allowed {
                    allowed.push(to);
                } else {
                    tracing::info!(account = %account.id, "a forward outside the service was not made: the organisation does not allow it");
                }
            }
            for to in &allowed {
                if let Some(auto) = self
                    .forwarded(
                        id,
                        account,
                        recipient.level,
                        to,
                        &envelope.from,
                        Some((session.client_ip, session.helo.as_str())),
                        data,
                    )
                    .await
                {
                    if rules.forward_to.as_deref() == Some(to.as_str()) {
                        forwarded = true;
                    }
                    automatic.push(auto);
                }
            }
        }
        // Vacation replies (RFC 5230; sieve-rs already skipped lists, bulk,
        // auto-submitted mail and the null sender).
        if !looping && !envelope.from.is_empty() && !automatic_or_bulk(data) {
            for (to, reply) in outcome.replies {
                automatic.push(self.vacation_reply(id, recipient, to, reply).await);
            }
        }
        let mut filings = Vec::with_capacity(outcome.filings.len());
        for filing in outcome.filings {
            // Forwarded away without a copy kept: the implicit keep goes.
            if filing.folder.is_none() && forwarded && !rules.forward_keep {
                continue;
            }
            let mailbox = match (&filing.folder, &recipient.tag) {
                (Some(folder), _) => self.filing_mailbox(account, folder).await,
                (None, Some(tag)) => self
                    .store
                    .mailbox_named(account.id, tag)
                    .await
                    .ok()
                    .flatten()
                    .map(|m| m.id),
                (None, None) => None,
            };
            filings.push(Filed {
                mailbox,
                flags: filing.flags,
            });
        }
        Ok(Decided {
            filings,
            reject: None,
            automatic,
        })
    }

    /// The mailbox a `fileinto` names, made if it does not exist (as
    /// Dovecot's `lda_mailbox_autocreate`); `None` (the Inbox) when it
    /// cannot be.
    async fn filing_mailbox(&self, account: &Account, folder: &str) -> Option<tenants::MailboxId> {
        if folder.eq_ignore_ascii_case("inbox") {
            return None;
        }
        match self.store.mailbox_named(account.id, folder).await {
            Ok(Some(m)) => return Some(m.id),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "mailbox lookup for a fileinto failed");
                return None;
            }
        }
        match self
            .store
            .create_mailbox("sieve", account.id, folder, true)
            .await
        {
            Ok(m) => Some(m.id),
            Err(tenants::Error::Conflict(_)) => self
                .store
                .mailbox_named(account.id, folder)
                .await
                .ok()
                .flatten()
                .map(|m| m.id),
            Err(e) => {
                tracing::info!(account = %account.id, error = %e, "a fileinto's mailbox could not be made; filed in the Inbox");
                None
            }
        }
    }

    /// A vacation reply as it may leave: from an address of the account
    /// (a script's `:from` naming any other is replaced by the address the
    /// message reached: the reply is DKIM-signed for its From domain); at
    /// `sealed` and above naming nothing of the message it answers (its
    /// subject is replaced), and encrypted when the correspondent is a
    /// hosted account.
    async fn vacation_reply(
        &self,
        stems_from: MessageId,
        recipient: &Recipient,
        to: String,
        reply: Vec<u8>,
    ) -> crate::automatic::Automatic {
        let (account, level) = (&recipient.account, recipient.level);
        let mut message = reply;
        let own = self
            .store
            .sending_addresses(account)
            .await
            .unwrap_or_else(|_| vec![account.address.to_string()]);
        let from = header_lines(&message, &["from"])
            .first()
            .and_then(|line| {
                let value = line.split_once(':')?.1;
                let start = value.rfind('<').map(|i| i + 1).unwrap_or(0);
                let end = value.rfind('>').unwrap_or(value.len());
                value.get(start..end).map(|a| a.trim().to_owned())
            })
            .unwrap_or_default();
        if !tenants::may_send_as(&own, &from) {
            message = replace_header(&message, "From", &format!("<{}>", recipient.via));
        }
        if level >= Level::Sealed {
            message = replace_header(&message, "Subject", "Automatic reply");
            let key = match EmailAddress::parse(&to) {
                Ok(address) => match self.store.hosted_account(&address).await {
                    Ok(Some(a)) if a.status == AccountStatus::Active => Some(a.public_key),
                    _ => None,
                },
                Err(_) => None,
            };
            if let Some(key) = key
                && let Ok(armored) = vault::seal::encrypt_to_all(
                    &[key.as_str()],
                    &vault::seal::protect_headers(&message),
                )
            {
                let kept = [
                    "from",
                    "to",
                    "date",
                    "message-id",
                    "in-reply-to",
                    "references",
                    "auto-submitted",
                ];
                let mut headers = header_lines(&message, &kept);
                headers.push("Subject: ...".to_owned());
                message = vault::seal::pgp_mime(&headers, &armored);
            }
        }
        crate::automatic::Automatic {
            stems_from,
            account: account.clone(),
            // RFC 5230 §5.1: replies go out with the null sender.
            envelope_from: String::new(),
            recipients: vec![to],
            message,
        }
    }
}

/// The header lines (unfolded) of the given names, as `Name: value`.
fn header_lines(message: &[u8], names: &[&str]) -> Vec<String> {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(message.len());
    let head = String::from_utf8_lossy(&message[..end])
        .replace("\r\n ", " ")
        .replace("\r\n\t", " ");
    head.split("\r\n")
        .filter(|line| {
            line.split_once(':')
                .is_some_and(|(n, _)| names.iter().any(|k| n.trim().eq_ignore_ascii_case(k)))
        })
        .map(str::to_owned)
        .collect()
}

/// The message with the header `name` replaced by `value` (added when absent).
fn replace_header(message: &[u8], name: &str, value: &str) -> Vec<u8> {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 2)
        .unwrap_or(message.len());
    let (head, body) = message.split_at(end);
    let mut out = Vec::with_capacity(message.len());
    let mut dropping = false;
    let mut replaced = false;
    for line in head.split_inclusive(|&b| b == b'\n') {
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation {
            let prefix = format!("{name}:");
            dropping = line.len() >= prefix.len()
                && line[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes());
            if dropping && !replaced {
                out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
                replaced = true;
            }
        }
        if !dropping {
            out.extend_from_slice(line);
        }
    }
    if !replaced {
        let mut with = format!("{name}: {value}\r\n").into_bytes();
        with.extend_from_slice(&out);
        out = with;
    }
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protection(raw: &str) -> (bool, bool) {
        openpgp_protection(&MessageParser::default().parse(raw.as_bytes()).unwrap())
    }

    #[test]
    fn recognises_pgp_mime_and_inline_armor_whose_packets_are_encrypted() {
        let key = vault::openpgp::AccountKey::generate("Bob <bob@example.com>", "pw").unwrap();
        let armored = vault::seal::encrypt(&key.public_armored, b"Subject: x\r\n\r\nhi\r\n")
            .unwrap()
            .replace('\n', "\r\n");
        let pgp_mime = |data: &str| {
            format!(
                "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b\r\n\r\n\
                 --b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n\
                 --b\r\nContent-Type: application/octet-stream\r\n\r\n{data}\r\n--b--\r\n"
            )
        };
        assert_eq!(protection(&pgp_mime(&armored)), (true, false));
        let inline = format!("Subject: x\r\n\r\n{armored}");
        assert_eq!(protection(&inline), (true, false));

        let junk = "-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA\r\n-----END PGP MESSAGE-----\r\n";
        assert_eq!(
            protection(&format!("Subject: x\r\n\r\n{junk}")),
            (false, false)
        );
        assert_eq!(protection(&pgp_mime(junk)), (false, false));
        let control_only = "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b\r\n\r\n--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--b--\r\n";
        assert_eq!(protection(control_only), (false, false));
        let key_block = key.public_armored.replace('\n', "\r\n");
        assert_eq!(protection(&pgp_mime(&key_block)), (false, false));
        let signed = "Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; micalg=pgp-sha256; boundary=b\r\n\r\n--b\r\n\r\nhi\r\n--b--\r\n";
        assert_eq!(protection(signed), (false, true));
        assert_eq!(
            protection("Subject: hi\r\n\r\nplain words\r\n"),
            (false, false)
        );
    }
}
