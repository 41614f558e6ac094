//! DANE for SMTP (RFC 7672): when the configured (validating) resolver says
//! an MX host's TLSA records are authentic (the AD bit, on an MX answer
//! that was authentic too), delivery to that host must use TLS and the
//! certificate it shows must match one of them; otherwise the message
//! waits, it is never sent in clear. It takes precedence over MTA-STS
//! (RFC 8461 §2). DANE-EE records (usage 3) are matched against the
//! server's certificate; DANE-TA (usage 2) needs the chain, which the SMTP
//! client does not expose, and counts as unusable here.

use sha2::Digest;

/// One TLSA record, parsed from its presentation form (`3 1 1 <hex>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

impl Tlsa {
    pub fn parse(text: &str) -> Option<Tlsa> {
        let mut fields = text.split_whitespace();
        let usage = fields.next()?.parse().ok()?;
        let selector = fields.next()?.parse().ok()?;
        let matching = fields.next()?.parse().ok()?;
        let hex: String = fields.collect();
        let data = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(Tlsa {
            usage,
            selector,
            matching,
            data,
        })
    }

    /// Whether this record can be checked here: DANE-EE, a known selector
    /// and matching type.
    pub fn usable(&self) -> bool {
        self.usage == 3 && self.selector <= 1 && self.matching <= 2
    }

    /// Whether the server's certificate (DER) matches this record.
    pub fn matches(&self, leaf: &[u8]) -> bool {
        if !self.usable() {
            return false;
        }
        let selected: Vec<u8> = match self.selector {
            0 => leaf.to_vec(),
            _ => match x509_parser::parse_x509_certificate(leaf) {
                Ok((_, cert)) => cert.public_key().raw.to_vec(),
                Err(_) => return false,
            },
        };
        let digest = match self.matching {
            0 => selected,
            1 => sha2::Sha256::digest(&selected).to_vec(),
            _ => sha2::Sha512::digest(&selected).to_vec(),
        };
        digest == self.data
    }
}

/// What DANE asks of delivery to one MX host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// No authentic TLSA records (or no DNSSEC): MTA-STS or opportunistic TLS.
    None,
    /// Authentic TLSA records: TLS, and a certificate matching one of them
    /// (none usable: TLS without a check, RFC 7672 §2.2).
    Tls(Vec<Tlsa>),
}

/// The TLSA records of `host`'s port 25, when both the MX answer and they
/// are authentic.
pub async fn requirement(
    dns: &crate::dns::Dns,
    mx_authentic: bool,
    host: &str,
) -> Result<Requirement, String> {
    if !mx_authentic {
        return Ok(Requirement::None);
    }
    let (records, authentic) = dns
        .lookup_validated(&format!("_25._tcp.{host}"), crate::dns::Kind::Tlsa)
        .await
        .map_err(|e| format!("DANE: the TLSA lookup for {host} failed: {e}"))?;
    if !authentic || records.is_empty() {
        return Ok(Requirement::None);
    }
    Ok(Requirement::Tls(
        records.iter().filter_map(|r| Tlsa::parse(r)).collect(),
    ))
}

/// Whether the certificate `leaf` satisfies `records` (any usable one
/// matching; with none usable, any certificate).
pub fn satisfied(records: &[Tlsa], leaf: &[u8]) -> bool {
    let usable: Vec<&Tlsa> = records.iter().filter(|r| r.usable()).collect();
    usable.is_empty() || usable.iter().any(|r| r.matches(leaf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_key_or_the_certificate_by_digest() {
        let ca = crate::https_server::TestCa::new();
        let issued = ca.issue(&["mx.remote.test"]);
        let other = ca.issue(&["mx.remote.test"]);
        let leaf = issued.chain[0].to_vec();
        let spki = Tlsa::parse(&crate::acme::tlsa(&issued.cert_pem).unwrap()).unwrap();
        assert!(spki.matches(&leaf));
        assert!(!spki.matches(&other.chain[0]));
        let full = Tlsa {
            usage: 3,
            selector: 0,
            matching: 1,
            data: sha2::Sha256::digest(&leaf).to_vec(),
        };
        assert!(full.matches(&leaf));
        // DANE-TA cannot be checked from the leaf alone: unusable, so it alone does not bind.
        let ta = Tlsa {
            usage: 2,
            ..full.clone()
        };
        assert!(!ta.usable());
        assert!(satisfied(std::slice::from_ref(&ta), &other.chain[0]));
        assert!(!satisfied(&[ta, spki.clone()], &other.chain[0]));
        assert!(satisfied(&[spki], &leaf));
        assert_eq!(Tlsa::parse("3 1 1 zz"), None);
    }
}
