//! Mail the server sends on an account's behalf when another arrives: its
//! external forwarding, a Sieve `redirect`, a vacation reply. Each is
//! spooled like a submission (encrypted at rest, retried, rate-counted)
//! and delivered by the ordinary delivery job.
//!
//! What may leave follows the account's level:
//! - at `standard`, a forwarded copy keeps the original bytes, its envelope
//!   sender rewritten with SRS (so SPF holds at the destination) and an
//!   ARC set added (so DKIM and DMARC results survive the hop), both by the
//!   forwarding account's domain;
//! - at `sealed` and above, a copy leaves only encrypted to the destination's
//!   key (a hosted account's, or its domain's WKD); without one nothing leaves, the message
//!   stays in the Inbox and the account is told, once per destination;
//! - a vacation reply carries no text of the message it answers above
//!   `standard` (the original subject stays out of it).

use std::net::IpAddr;

use chrono::Utc;
use mail_auth::arc::ArcSealer;
use mail_auth::common::crypto::{RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults};
use secrecy::ExposeSecret;
use tenants::{Account, DkimAlgorithm, DkimKeyState, Level, MessageId};
use uuid::Uuid;

use crate::inbound::Inbound;
use crate::outbound::{DELIVER_JOB, DELIVERY_MAX_ATTEMPTS, DeliverJob};

/// How long an automatic message is retried.
const LIFETIME_DAYS: i64 = 5;

/// One message to send on an account's behalf.
pub struct Automatic {
    /// The delivered message it stems from.
    pub stems_from: MessageId,
    pub account: Account,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    pub message: Vec<u8>,
}

/// The SRS0 form (draft-mengwong-sender-rewrite) of `original`, in
/// `domain`: `SRS0=hash=tt=orig-domain=orig-local@domain`. The hash is an
/// HMAC-SHA1 under `secret`, so that the address cannot be forged to
/// make this server a reflector; bounces to it are not relayed back (see
/// the README).
pub fn srs0(original: &str, domain: &str, secret: &[u8], days_since_epoch: i64) -> Option<String> {
    let (local, orig_domain) = original.rsplit_once('@')?;
    const B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let t = days_since_epoch.rem_euclid(1024) as usize;
    let tt: String = [B32[t >> 5] as char, B32[t & 31] as char].iter().collect();
    let mac = hmac_sha1(
        secret,
        format!("{tt}{orig_domain}{local}")
            .to_ascii_lowercase()
            .as_bytes(),
    );
    use base64::Engine;
    let hash = base64::engine::general_purpose::STANDARD.encode(mac);
    Some(format!(
        "SRS0={}={tt}={orig_domain}={local}@{domain}",
        &hash[..4]
    ))
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    use sha1::{Digest, Sha1};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..20].copy_from_slice(&Sha1::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha1::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(data);
    let inner = inner.finalize();
    let mut outer = Sha1::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

impl Inbound {
    /// Spools `auto` for delivery. Failures are logged: the message it stems
    /// from is stored already, and nothing about it may be lost for this.
    pub(crate) async fn send_automatic(&self, auto: Automatic) {
        let id = Uuid::now_v7();
        let header_message_id = header_value(&auto.message, "message-id")
            .unwrap_or_else(|| format!("<{id}@{}>", self.hostname()));
        let content = match self
            .encrypt_at_rest(
                auto.account.tenant_id,
                crate::outbound::spool_context(id).as_bytes(),
                &auto.message,
            )
            .await
        {
            Ok(c) => c,
            Err(_) => return,
        };
        let payload = match serde_json::to_string(&DeliverJob { outbound_id: id }) {
            Ok(p) => p,
            Err(_) => return,
        };
        let job = tenants::store::NewJob {
            kind: DELIVER_JOB,
            payload,
            dedup_key: Some(id.to_string()),
            run_at: Utc::now(),
            max_attempts: DELIVERY_MAX_ATTEMPTS,
        };
        match self
            .store()
            .queue_automatic(
                auto.stems_from,
                auto.account.tenant_id,
                auto.account.id,
                &auto.envelope_from,
                &header_message_id,
                id,
                &content,
                &auto.recipients,
                &job,
                Utc::now() + chrono::Duration::days(LIFETIME_DAYS),
            )
            .await
        {
            Ok(()) => {
                tracing::info!(outbound = %id, account = %auto.account.id, recipients = auto.recipients.len(), "automatic message queued")
            }
            Err(e) => {
                tracing::error!(account = %auto.account.id, error = %e, "an automatic message could not be queued")
            }
        }
    }

    /// The forwarded copy of `data` for `to`, as the account's level allows,
    /// or `None` when nothing may leave (then the account is told).
    pub(crate) async fn forwarded(
        &self,
        stems_from: MessageId,
        account: &Account,
        level: Level,
        to: &str,
        envelope_from: &str,
        session: Option<(IpAddr, &str)>,
        data: &[u8],
    ) -> Option<Automatic> {
        let domain = account.address.domain().to_string();
        if level >= Level::Sealed {
            // The destination's key: a hosted account's, or its domain's WKD.
            let key = crate::wkd::recipient_key(self.store(), self.https(), to).await;
            let Some(key) = key else {
                self.tell_not_forwarded(account, level, to).await;
                return None;
            };
            let protected = vault::seal::protect_headers(data);
            let sealed = match vault::seal::encrypt_to_all(&[key.as_str()], &protected) {
                Ok(armored) => armored,
                Err(e) => {
                    tracing::warn!(account = %account.id, error = %e, "sealing a forwarded copy failed");
                    return None;
                }
            };
            // Nothing of the original is readable outside the encryption.
            let headers = vec![
                format!("From: <{}>", account.address),
                format!("To: <{to}>"),
                "Subject: ...".to_owned(),
                format!("Date: {}", Utc::now().to_rfc2822()),
                format!(
                    "Message-ID: <{}@{}>",
                    Uuid::now_v7().simple(),
                    self.hostname()
                ),
            ];
            let message = vault::seal::pgp_mime(&headers, &sealed);
            return Some(Automatic {
                stems_from,
                account: account.clone(),
                envelope_from: account.address.to_string(),
                recipients: vec![to.to_owned()],
                message,
            });
        }
        let key = self.rsa_signing_key(&domain).await;
        let srs_secret = key
            .as_ref()
            .map(|(_, pem)| pem.as_bytes().to_vec())
            .unwrap_or_default();
        let days = Utc::now().timestamp() / 86_400;
        let envelope = if envelope_from.is_empty() {
            String::new()
        } else {
            srs0(envelope_from, &domain, &srs_secret, days)
                .unwrap_or_else(|| account.address.to_string())
        };
        let mut message = Vec::with_capacity(data.len() + 2048);
        if let Some((selector, pem)) = key
            && let Some(arc) = self
                .arc_seal(&domain, &selector, &pem, session, envelope_from, data)
                .await
        {
            message.extend_from_slice(arc.as_bytes());
        }
        message.extend_from_slice(data);
        Some(Automatic {
            stems_from,
            account: account.clone(),
            envelope_from: envelope,
            recipients: vec![to.to_owned()],
            message,
        })
    }

    async fn tell_not_forwarded(&self, account: &Account, level: Level, to: &str) {
        match self
            .store()
            .forward_refusal_first_told(account.id, to)
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "forwarding notice state unavailable");
                return;
            }
        }
        tracing::info!(account = %account.id, "a message was not forwarded: no key for the destination");
        let body = format!(
            "Your account is at the `{}` confidentiality level: mail is forwarded only encrypted to the \
             destination's OpenPGP key, and no key is known for {to}.\r\n\r\nThe message stays in your Inbox, \
             and so will the next ones until the destination has a key (this notice is sent once).\r\n",
            level.as_str()
        );
        let now = Utc::now();
        let message = format!(
            "From: {host} <postmaster@{host}>\r\nTo: <{addr}>\r\nSubject: Mail not forwarded to {to}\r\nDate: {}\r\n\
             Message-ID: <{}@{host}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Auto-Submitted: auto-generated\r\n\r\n{body}",
            now.to_rfc2822(),
            Uuid::now_v7().simple(),
            host = self.hostname(),
            addr = account.address,
        );
        if let Ok(recipients) = self.check_recipient(account.address.as_str()).await {
            let envelope = crate::inbound::Envelope {
                from: String::new(),
                recipients,
            };
            if let Err(r) = Box::pin(self.accept_local(&envelope, message.as_bytes(), None)).await {
                tracing::warn!(reply = %r.text, "the forwarding notice was not stored");
            }
        }
    }

    /// The active RSA DKIM key of a hosted domain (ARC asks for RSA-SHA256):
    /// its selector and PEM.
    async fn rsa_signing_key(&self, domain: &str) -> Option<(String, String)> {
        let name = tenants::DomainName::parse(domain).ok()?;
        let domain = self.store().hosted_domain(&name).await.ok()??;
        let keys = self.store().dkim_keys(domain.id).await.ok()?;
        let key = keys
            .into_iter()
            .find(|k| k.state == DkimKeyState::Active && k.algorithm == DkimAlgorithm::Rsa)?;
        let pem = self
            .master()
            .open_secret(
                &crate::outbound::dkim_key_context(domain.name.as_str()),
                key.private_key.expose_secret(),
            )
            .ok()?;
        Some((key.selector, String::from_utf8(pem).ok()?))
    }

    /// An ARC set (RFC 8617) for the hop this forward makes: the results
    /// of authenticating the message again here, sealed by `domain`.
    async fn arc_seal(
        &self,
        domain: &str,
        selector: &str,
        pem: &str,
        session: Option<(IpAddr, &str)>,
        envelope_from: &str,
        data: &[u8],
    ) -> Option<String> {
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::PrivateKeyDer::from_pem_slice(pem.as_bytes()).ok()?;
        let key = RsaKey::<Sha256>::from_key_der(der).ok()?;
        let message = AuthenticatedMessage::parse(data)?;
        let hostname = self.hostname().to_owned();
        let (results, arc) = match (self.authenticator(), session) {
            (Some(authenticator), Some((ip, helo))) => {
                let dkim = authenticator.verify_dkim(&message).await;
                let arc = authenticator.verify_arc(&message).await;
                let mail_from = if envelope_from.is_empty() {
                    format!("postmaster@{helo}")
                } else {
                    envelope_from.to_owned()
                };
                let spf = authenticator
                    .verify_spf(SpfParameters::verify_mail_from(
                        ip, helo, &hostname, &mail_from,
                    ))
                    .await;
                let from_domain = mail_from
                    .rsplit_once('@')
                    .map(|(_, d)| d.to_owned())
                    .unwrap_or_default();
                let dmarc = authenticator
                    .verify_dmarc(DmarcParameters::new(&message, &dkim, &from_domain, &spf))
                    .await;
                let results = AuthenticationResults::new(&hostname)
                    .with_dkim_results(&dkim, message.from())
                    .with_spf_mailfrom_result(&spf, ip, &mail_from, helo)
                    .with_dmarc_result(&dmarc)
                    .with_arc_result(&arc, ip);
                (results, arc)
            }
            _ => (AuthenticationResults::new(&hostname), ArcOutput::default()),
        };
        if !arc.can_be_sealed() {
            return None;
        }
        let set = ArcSealer::from_key(key)
            .domain(domain)
            .selector(selector)
            // Not DKIM-Signature: the forward is DKIM-signed after this seal.
            .headers([
                "From",
                "To",
                "Cc",
                "Subject",
                "Date",
                "Message-ID",
                "MIME-Version",
                "Content-Type",
            ])
            .seal(&message, &results, &arc);
        match set {
            Ok(set) => Some(set.to_header()),
            Err(e) => {
                tracing::warn!(error = %e, "ARC sealing failed");
                None
            }
        }
    }
}

/// The value of the first header `name` (lower case) of a message.
fn header_value(message: &[u8], name: &str) -> Option<String> {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(message.len());
    let head = String::from_utf8_lossy(&message[..end]);
    head.split("\r\n").find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srs0_addresses_carry_the_original_and_a_keyed_hash() {
        let a = srs0(
            "alice@origin.example",
            "forwarder.example",
            b"secret",
            20_000,
        )
        .unwrap();
        assert!(a.starts_with("SRS0="), "{a}");
        assert!(
            a.ends_with("=origin.example=alice@forwarder.example"),
            "{a}"
        );
        let b = srs0(
            "alice@origin.example",
            "forwarder.example",
            b"other",
            20_000,
        )
        .unwrap();
        assert_ne!(a, b, "the hash depends on the secret");
    }

    #[test]
    fn hmac_sha1_matches_rfc_2202() {
        // RFC 2202 test case 2.
        let mac = hmac_sha1(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }
}
