//! The DNS records a hosted domain must publish, and how an answer from DNS
//! is judged against each: ownership proof, MX, SPF, DKIM, DMARC, MTA-STS,
//! TLS reporting and client autoconfiguration. Pure functions; the lookups
//! themselves happen in `api` through `mail::dns`.

use serde::Serialize;
use utoipa::ToSchema;

use crate::model::DkimKeyState;
use crate::store::{DkimKey, Domain};

/// The record types we ask tenants to publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordType {
    Txt,
    Mx,
    Cname,
    Srv,
    Tlsa,
}

/// What the record is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Verification,
    Mx,
    Spf,
    Dkim,
    Dmarc,
    MtaSts,
    MtaStsPolicyHost,
    TlsReporting,
    SubmissionAutodiscovery,
    ImapAutodiscovery,
    Autoconfig,
    /// The TLSA record of our MX (in the operator's zone, signed with
    /// DNSSEC): senders that validate DNSSEC then require our certificate.
    Dane,
}

/// One record as the tenant must publish it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct ExpectedRecord {
    pub purpose: Purpose,
    #[serde(rename = "type")]
    pub record_type: RecordType,
    /// The owner name, fully qualified, without the final dot.
    pub name: String,
    /// The value to publish: TXT text, `priority host` for MX, the target for
    /// CNAME, `priority weight port target` for SRV.
    pub value: String,
    /// Whether mail cannot flow correctly without it.
    pub required: bool,
}

/// How what DNS answered compares with what is expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordStatus {
    /// Published as expected.
    Verified,
    /// Nothing of this kind is published at that name.
    Missing,
    /// Something is published there, but not what is expected.
    Wrong,
    /// DNS could not be asked (resolver down or timed out).
    Unknown,
}

pub const VERIFICATION_LABEL: &str = "_caliop-verification";
pub const VERIFICATION_PREFIX: &str = "caliop-verification=";

/// Where the ownership proof lives, and what it says.
pub fn verification_record(domain: &Domain) -> ExpectedRecord {
    ExpectedRecord {
        purpose: Purpose::Verification,
        record_type: RecordType::Txt,
        name: format!("{VERIFICATION_LABEL}.{}", domain.name),
        value: format!("{VERIFICATION_PREFIX}{}", domain.verification_token),
        required: true,
    }
}

/// The TXT record of one DKIM key (RFC 6376 §3.6.1, RFC 8463 for Ed25519).
pub fn dkim_record(domain: &Domain, key: &DkimKey) -> ExpectedRecord {
    ExpectedRecord {
        purpose: Purpose::Dkim,
        record_type: RecordType::Txt,
        name: format!("{}._domainkey.{}", key.selector, domain.name),
        value: format!(
            "v=DKIM1; k={}; p={}",
            key.algorithm.as_str(),
            key.public_key
        ),
        // A retired key is kept published out of courtesy to mail in flight.
        required: key.state != DkimKeyState::Retired,
    }
}

/// The MTA-STS mode of a domain's policy (RFC 8461 §5): `testing` by
/// default (failures are reported, mail still flows), `enforce` when the
/// tenant chooses it, `none` to withdraw a policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MtaStsMode {
    #[default]
    Testing,
    Enforce,
    None,
}

impl MtaStsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MtaStsMode::Testing => "testing",
            MtaStsMode::Enforce => "enforce",
            MtaStsMode::None => "none",
        }
    }

    pub fn parse(text: &str) -> Option<MtaStsMode> {
        match text {
            "testing" => Some(MtaStsMode::Testing),
            "enforce" => Some(MtaStsMode::Enforce),
            "none" => Some(MtaStsMode::None),
            _ => None,
        }
    }
}

/// The policy file served at `https://mta-sts.{domain}/.well-known/mta-sts.txt`:
/// our MX, and how long senders keep it (a week when enforced, a day otherwise).
pub fn mta_sts_policy(mode: MtaStsMode, mail_host: &str) -> String {
    let max_age = match mode {
        MtaStsMode::Enforce => 604_800,
        MtaStsMode::Testing | MtaStsMode::None => 86_400,
    };
    format!(
        "version: STSv1\r\nmode: {}\r\nmx: {mail_host}\r\nmax_age: {max_age}\r\n",
        mode.as_str()
    )
}

/// The `id` of the `_mta-sts` record: a digest of the policy, so that it
/// changes whenever the policy does (and senders fetch it again).
pub fn mta_sts_id(policy: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(policy.as_bytes());
    digest.iter().take(10).map(|b| format!("{b:02x}")).collect()
}

/// Where mail clients connect, as autoconfig and the RFC 6186 SRV records
/// tell them: ports that really listen, with the TLS they really speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientPorts {
    pub imap: u16,
    /// Implicit TLS (`imaps`); otherwise STARTTLS.
    pub imap_tls: bool,
    /// Submission, with STARTTLS.
    pub submission: u16,
}

impl Default for ClientPorts {
    fn default() -> Self {
        ClientPorts {
            imap: 993,
            imap_tls: true,
            submission: 587,
        }
    }
}

/// Every record `domain` must publish for mail to flow through `mail_host`,
/// with one DKIM record per key that should be in DNS now.
pub fn expected_records(
    domain: &Domain,
    dkim_keys: &[DkimKey],
    mail_host: &str,
    mta_sts: MtaStsMode,
    client: ClientPorts,
    tlsa: Option<&str>,
) -> Vec<ExpectedRecord> {
    let d = domain.name.as_str();
    let record = |purpose, record_type, name: String, value: String, required| ExpectedRecord {
        purpose,
        record_type,
        name,
        value,
        required,
    };
    let now = chrono::Utc::now();
    let dkim = dkim_keys
        .iter()
        .filter(|k| k.published(now))
        .map(|k| dkim_record(domain, k));
    let mut records = vec![
        verification_record(domain),
        record(
            Purpose::Mx,
            RecordType::Mx,
            d.to_owned(),
            format!("10 {mail_host}"),
            true,
        ),
        record(
            Purpose::Spf,
            RecordType::Txt,
            d.to_owned(),
            format!("v=spf1 a:{mail_host} -all"),
            true,
        ),
        record(
            Purpose::Dmarc,
            RecordType::Txt,
            format!("_dmarc.{d}"),
            format!("v=DMARC1; p=quarantine; adkim=s; aspf=s; rua=mailto:dmarc-reports@{d}"),
            true,
        ),
        record(
            Purpose::MtaSts,
            RecordType::Txt,
            format!("_mta-sts.{d}"),
            format!(
                "v=STSv1; id={}",
                mta_sts_id(&mta_sts_policy(mta_sts, mail_host))
            ),
            false,
        ),
        record(
            Purpose::MtaStsPolicyHost,
            RecordType::Cname,
            format!("mta-sts.{d}"),
            mail_host.to_owned(),
            false,
        ),
        record(
            Purpose::TlsReporting,
            RecordType::Txt,
            format!("_smtp._tls.{d}"),
            format!("v=TLSRPTv1; rua=mailto:tls-reports@{mail_host}"),
            false,
        ),
        record(
            Purpose::SubmissionAutodiscovery,
            RecordType::Srv,
            format!("_submission._tcp.{d}"),
            format!("0 1 {} {mail_host}", client.submission),
            false,
        ),
        record(
            Purpose::ImapAutodiscovery,
            RecordType::Srv,
            format!(
                "_{}._tcp.{d}",
                if client.imap_tls { "imaps" } else { "imap" }
            ),
            format!("0 1 {} {mail_host}", client.imap),
            false,
        ),
        record(
            Purpose::Autoconfig,
            RecordType::Cname,
            format!("autoconfig.{d}"),
            mail_host.to_owned(),
            false,
        ),
    ];
    if let Some(tlsa) = tlsa {
        records.push(record(
            Purpose::Dane,
            RecordType::Tlsa,
            format!("_25._tcp.{mail_host}"),
            tlsa.to_owned(),
            false,
        ));
    }
    records.splice(3..3, dkim);
    records
}

/// Tag-value pairs of a DKIM or DMARC record (`k=v; k=v`).
fn tags(text: &str) -> Vec<(String, String)> {
    text.split(';')
        .filter_map(|part| part.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_ascii_lowercase(),
                v.chars().filter(|c| !c.is_whitespace()).collect(),
            )
        })
        .collect()
}

fn tag<'a>(tags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    tags.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Judges the values DNS returned at the record's name and type.
pub fn judge(expected: &ExpectedRecord, found: &[String]) -> RecordStatus {
    let same_host = |a: &str, b: &str| {
        a.trim_end_matches('.')
            .eq_ignore_ascii_case(b.trim_end_matches('.'))
    };
    let status = |ok: bool, relevant: bool| match (ok, relevant) {
        (true, _) => RecordStatus::Verified,
        (false, true) => RecordStatus::Wrong,
        (false, false) => RecordStatus::Missing,
    };
    match expected.purpose {
        Purpose::Verification => status(
            found.iter().any(|v| v.trim() == expected.value),
            !found.is_empty(),
        ),
        Purpose::Mx | Purpose::SubmissionAutodiscovery | Purpose::ImapAutodiscovery => {
            let host = expected.value.rsplit(' ').next().unwrap_or_default();
            status(
                found
                    .iter()
                    .any(|v| v.rsplit(' ').next().is_some_and(|h| same_host(h, host))),
                !found.is_empty(),
            )
        }
        Purpose::MtaStsPolicyHost | Purpose::Autoconfig => status(
            found.iter().any(|v| same_host(v, &expected.value)),
            !found.is_empty(),
        ),
        // One of the published TLSA records must match the key we serve.
        Purpose::Dane => status(
            found
                .iter()
                .any(|v| v.trim().eq_ignore_ascii_case(&expected.value)),
            !found.is_empty(),
        ),
        Purpose::Spf => {
            let spf: Vec<&String> = found
                .iter()
                .filter(|v| v.to_ascii_lowercase().starts_with("v=spf1"))
                .collect();
            let mechanism = expected
                .value
                .split(' ')
                .nth(1)
                .unwrap_or_default()
                .to_ascii_lowercase();
            // RFC 7208 §4.5: more than one SPF record is a permanent error.
            let ok = spf.len() == 1
                && spf[0]
                    .split_whitespace()
                    .any(|m| m.to_ascii_lowercase() == mechanism)
                && spf[0].trim_end().ends_with("all");
            status(ok, !spf.is_empty())
        }
        Purpose::Dkim => {
            let want = tags(&expected.value);
            let ok = found
                .iter()
                .any(|v| tag(&tags(v), "p") == tag(&want, "p") && tag(&tags(v), "p").is_some());
            status(ok, !found.is_empty())
        }
        Purpose::Dmarc | Purpose::MtaSts | Purpose::TlsReporting => {
            let version = expected
                .value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            let versioned: Vec<&String> = found
                .iter()
                .filter(|v| v.trim().to_ascii_lowercase().starts_with(&version))
                .collect();
            status(versioned.len() == 1, !versioned.is_empty())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DkimAlgorithm, DkimKeyState, DomainId, DomainName, TenantId};

    fn domain() -> Domain {
        Domain {
            id: DomainId::new(),
            tenant_id: TenantId::new(),
            name: DomainName::parse("acme.test").unwrap(),
            verification_token: "tok123".into(),
            verified_at: None,
            verification_method: None,
            created_at: chrono::Utc::now(),
        }
    }

    fn key(
        selector: &str,
        algorithm: DkimAlgorithm,
        state: DkimKeyState,
        retired_days_ago: Option<i64>,
    ) -> DkimKey {
        DkimKey {
            id: uuid::Uuid::now_v7(),
            domain_id: DomainId::new(),
            selector: selector.into(),
            algorithm,
            public_key: "MIIBIjAN".into(),
            private_key: String::new().into(),
            state,
            created_at: chrono::Utc::now(),
            activated_at: None,
            retired_at: retired_days_ago.map(|d| chrono::Utc::now() - chrono::Duration::days(d)),
        }
    }

    fn expected(purpose: Purpose) -> ExpectedRecord {
        let keys = [key(
            "caliop1",
            DkimAlgorithm::Rsa,
            DkimKeyState::Active,
            None,
        )];
        expected_records(
            &domain(),
            &keys,
            "mx.caliop.test",
            MtaStsMode::Testing,
            ClientPorts::default(),
            None,
        )
        .into_iter()
        .find(|r| r.purpose == purpose)
        .unwrap()
    }

    fn found(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn verification_needs_the_exact_token() {
        let r = expected(Purpose::Verification);
        assert_eq!(r.name, "_caliop-verification.acme.test");
        assert_eq!(
            judge(&r, &found(&["caliop-verification=tok123"])),
            RecordStatus::Verified
        );
        assert_eq!(
            judge(&r, &found(&["caliop-verification=other"])),
            RecordStatus::Wrong
        );
        assert_eq!(judge(&r, &[]), RecordStatus::Missing);
    }

    #[test]
    fn spf_must_be_single_and_name_our_host() {
        let r = expected(Purpose::Spf);
        assert_eq!(
            judge(
                &r,
                &found(&["v=spf1 a:mx.caliop.test -all", "google-site-verification=x"])
            ),
            RecordStatus::Verified
        );
        assert_eq!(
            judge(&r, &found(&["v=spf1 include:elsewhere.test -all"])),
            RecordStatus::Wrong
        );
        assert_eq!(
            judge(&r, &found(&["v=spf1 a:mx.caliop.test -all", "v=spf1 -all"])),
            RecordStatus::Wrong,
            "two SPF records are a permanent error"
        );
        assert_eq!(judge(&r, &found(&["unrelated"])), RecordStatus::Missing);
    }

    #[test]
    fn dkim_compares_the_key_not_the_spacing() {
        let r = expected(Purpose::Dkim);
        assert_eq!(r.name, "caliop1._domainkey.acme.test");
        assert_eq!(
            judge(&r, &found(&["v=DKIM1;k=rsa;  p=MIIB IjAN"])),
            RecordStatus::Verified
        );
        assert_eq!(
            judge(&r, &found(&["v=DKIM1; k=rsa; p=OTHER"])),
            RecordStatus::Wrong
        );
    }

    #[test]
    fn every_published_dkim_key_has_a_record() {
        let keys = [
            key("old", DkimAlgorithm::Rsa, DkimKeyState::Retired, Some(30)),
            key("recent", DkimAlgorithm::Rsa, DkimKeyState::Retired, Some(1)),
            key("r1", DkimAlgorithm::Rsa, DkimKeyState::Active, None),
            key("e1", DkimAlgorithm::Ed25519, DkimKeyState::Active, None),
            key("e2", DkimAlgorithm::Ed25519, DkimKeyState::Pending, None),
        ];
        let dkim: Vec<ExpectedRecord> = expected_records(
            &domain(),
            &keys,
            "mx.caliop.test",
            MtaStsMode::Testing,
            ClientPorts::default(),
            None,
        )
        .into_iter()
        .filter(|r| r.purpose == Purpose::Dkim)
        .collect();
        let names: Vec<&str> = dkim.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "recent._domainkey.acme.test",
                "r1._domainkey.acme.test",
                "e1._domainkey.acme.test",
                "e2._domainkey.acme.test"
            ]
        );
        assert!(
            !dkim[0].required,
            "a retired key is published only as a courtesy"
        );
        assert!(dkim[1..].iter().all(|r| r.required));
        assert!(dkim[2].value.starts_with("v=DKIM1; k=ed25519; p="));
    }

    #[test]
    fn mx_and_cname_compare_hosts_case_insensitively() {
        assert_eq!(
            judge(&expected(Purpose::Mx), &found(&["20 MX.Caliop.Test"])),
            RecordStatus::Verified
        );
        assert_eq!(
            judge(&expected(Purpose::Mx), &found(&["10 mx.other.test"])),
            RecordStatus::Wrong
        );
        assert_eq!(
            judge(&expected(Purpose::Autoconfig), &found(&["mx.caliop.test"])),
            RecordStatus::Verified
        );
        assert_eq!(
            judge(&expected(Purpose::Dmarc), &found(&["v=DMARC1; p=none"])),
            RecordStatus::Verified
        );
        assert_eq!(judge(&expected(Purpose::Dmarc), &[]), RecordStatus::Missing);
    }

    #[test]
    fn a_dane_record_must_match_the_key_we_serve() {
        let want = ExpectedRecord {
            purpose: Purpose::Dane,
            record_type: RecordType::Tlsa,
            name: "_25._tcp.mx.caliop.test".into(),
            value: "3 1 1 ab12".into(),
            required: false,
        };
        // The next key's record beside it (a rollover) is fine.
        assert_eq!(
            judge(&want, &found(&["3 1 1 ffff", "3 1 1 AB12"])),
            RecordStatus::Verified
        );
        assert_eq!(judge(&want, &found(&["3 1 1 ffff"])), RecordStatus::Wrong);
        assert_eq!(judge(&want, &[]), RecordStatus::Missing);
    }
}
