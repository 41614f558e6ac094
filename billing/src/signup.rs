//! What stands between a script and the free accounts: a proof-of-work
//! stamp (hashcash-style, no third-party captcha), limits per client IP and
//! per network prefix, and local parts nobody may take.
//!
//! A challenge is `v1.<expires>.<difficulty>.<nonce>.<mac>`, the MAC a keyed
//! BLAKE3 of the rest under a key derived from the instance key, so any
//! process of the instance can check it without storing it. The client
//! finds a `counter` such that SHA-256(`<challenge>:<address>:<counter>`)
//! starts with `difficulty` zero bits; the stamp is bound to the address,
//! and a challenge is spent once (the database remembers spent nonces until
//! they expire).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::Serialize;

/// Local parts reserved for the instance and for abuse handling.
pub const RESERVED: &[&str] = &[
    "abuse",
    "admin",
    "administrator",
    "billing",
    "contact",
    "daemon",
    "dmarc",
    "help",
    "hostmaster",
    "info",
    "legal",
    "mailer-daemon",
    "noc",
    "no-reply",
    "noreply",
    "postmaster",
    "privacy",
    "root",
    "sales",
    "security",
    "support",
    "sysadmin",
    "system",
    "tls-rpt",
    "webmaster",
    "www",
];

/// Why a local part cannot be signed up, if it cannot.
pub fn refused_local_part(local: &str) -> Option<String> {
    let lower = local.to_ascii_lowercase();
    let bare: String = lower
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    if RESERVED
        .iter()
        .any(|r| *r == lower || r.replace('-', "") == bare)
    {
        return Some(format!("the name `{local}` is reserved"));
    }
    if lower.len() < 3 {
        return Some(
            "addresses of the public instance have at least 3 characters before the @".into(),
        );
    }
    if lower.contains('+') {
        return Some("`+` is kept for sub-addressing and cannot be part of a new address".into());
    }
    None
}

/// A challenge as the client receives it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Challenge {
    /// Opaque; send it back in the stamp.
    pub challenge: String,
    /// Leading zero bits SHA-256(`challenge:address:counter`) must have.
    pub difficulty: u8,
    /// `sha256`.
    pub algorithm: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// The domain a signup here makes its address in (the public domain,
    /// or the tenant's self-signup domain on its hostname): the stamp is
    /// computed over `local@domain`.
    pub domain: Option<String>,
}

/// Issues and checks challenges.
pub struct Challenges {
    key: [u8; 32],
    pub difficulty: u8,
    pub ttl: chrono::Duration,
}

/// A valid stamp: the nonce to spend and until when it must stay spent.
#[derive(Debug, PartialEq, Eq)]
pub struct Stamp {
    pub nonce: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

fn leading_zero_bits(hash: &[u8]) -> u32 {
    let mut bits = 0;
    for byte in hash {
        if *byte == 0 {
            bits += 8;
        } else {
            bits += byte.leading_zeros();
            break;
        }
    }
    bits
}

fn digest(challenge: &str, address: &str, counter: u64) -> [u8; 32] {
    let mut input = Vec::with_capacity(challenge.len() + address.len() + 24);
    input.extend_from_slice(challenge.as_bytes());
    input.push(b':');
    input.extend_from_slice(address.to_ascii_lowercase().as_bytes());
    input.push(b':');
    input.extend_from_slice(counter.to_string().as_bytes());
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Finds a counter for `challenge` and `address` (what a client does).
pub fn solve(challenge: &str, address: &str, difficulty: u8) -> u64 {
    (0..)
        .find(|c| leading_zero_bits(&digest(challenge, address, *c)) >= u32::from(difficulty))
        .unwrap_or(0)
}

impl Challenges {
    /// `secret` is instance key material: the MAC key is derived from it.
    pub fn new(secret: &[u8], difficulty: u8, ttl: chrono::Duration) -> Challenges {
        Challenges {
            key: blake3::derive_key("caliop signup challenge v1", secret),
            difficulty,
            ttl,
        }
    }

    fn mac(&self, body: &str) -> String {
        URL_SAFE_NO_PAD.encode(&blake3::keyed_hash(&self.key, body.as_bytes()).as_bytes()[..16])
    }

    pub fn issue(&self, now: chrono::DateTime<chrono::Utc>) -> Challenge {
        let mut nonce = [0u8; 16];
        rand::rng().fill_bytes(&mut nonce);
        let expires_at = now + self.ttl;
        let body = format!(
            "v1.{}.{}.{}",
            expires_at.timestamp(),
            self.difficulty,
            URL_SAFE_NO_PAD.encode(nonce)
        );
        let challenge = format!("{body}.{}", self.mac(&body));
        Challenge {
            challenge,
            difficulty: self.difficulty,
            algorithm: "sha256".into(),
            expires_at,
            domain: None,
        }
    }

    /// Checks a stamp; the error says precisely what is wrong with it.
    pub fn check(
        &self,
        challenge: &str,
        address: &str,
        counter: u64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Stamp, String> {
        let parts: Vec<&str> = challenge.split('.').collect();
        let [version, expires, difficulty, nonce, mac] = parts[..] else {
            return Err("the proof-of-work challenge is not one this server issued".into());
        };
        let body = format!("{version}.{expires}.{difficulty}.{nonce}");
        let expected = self.mac(&body);
        if version != "v1"
            || aws_lc_rs::constant_time::verify_slices_are_equal(
                expected.as_bytes(),
                mac.as_bytes(),
            )
            .is_err()
        {
            return Err("the proof-of-work challenge is not one this server issued".into());
        }
        let expires: i64 = expires
            .parse()
            .map_err(|_| "the proof-of-work challenge is malformed".to_owned())?;
        let difficulty: u8 = difficulty
            .parse()
            .map_err(|_| "the proof-of-work challenge is malformed".to_owned())?;
        let expires_at = chrono::DateTime::from_timestamp(expires, 0)
            .ok_or("the proof-of-work challenge is malformed")?;
        if expires_at < now {
            return Err("the proof-of-work challenge has expired; ask for a new one".into());
        }
        let bits = leading_zero_bits(&digest(challenge, address, counter));
        if bits < u32::from(difficulty) {
            return Err(format!(
                "the proof of work does not hold: SHA-256(challenge:address:counter) has {bits} leading zero bits, {difficulty} are needed"
            ));
        }
        Ok(Stamp {
            nonce: nonce.to_owned(),
            expires_at,
        })
    }
}

/// Signups per client IP and per network prefix (/24 for IPv4, /48 for
/// IPv6) over a sliding window, counted on attempts that passed the
/// proof of work.
pub struct SignupGuard {
    window: Duration,
    per_ip: usize,
    per_prefix: usize,
    seen: Mutex<HashMap<String, VecDeque<Instant>>>,
}

fn prefix(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

impl SignupGuard {
    pub fn new(window: Duration, per_ip: usize, per_prefix: usize) -> SignupGuard {
        SignupGuard {
            window,
            per_ip,
            per_prefix,
            seen: Mutex::default(),
        }
    }

    /// Counts one signup from `ip`, or refuses it with the seconds to wait and the reason.
    pub fn admit(&self, ip: IpAddr) -> Result<(), (u64, String)> {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let keys = [
            (format!("ip:{ip}"), self.per_ip, format!("from {ip}")),
            (
                format!("net:{}", prefix(ip)),
                self.per_prefix,
                format!("from {}", prefix(ip)),
            ),
        ];
        for (key, limit, what) in &keys {
            let times = seen.entry(key.clone()).or_default();
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) >= self.window)
            {
                times.pop_front();
            }
            if times.len() >= *limit {
                let wait = self
                    .window
                    .saturating_sub(now.duration_since(times[0]))
                    .as_secs()
                    .max(1);
                return Err((
                    wait,
                    format!("too many signups {what}; try again in {wait} s"),
                ));
            }
        }
        for (key, _, _) in keys {
            seen.entry(key).or_default().push_back(now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_solved_stamp_passes_once_bound_to_its_address_and_time() {
        let challenges = Challenges::new(b"instance secret", 8, chrono::Duration::minutes(10));
        let now = chrono::Utc::now();
        let c = challenges.issue(now);
        let counter = solve(&c.challenge, "alice@free.test", c.difficulty);
        let stamp = challenges
            .check(&c.challenge, "alice@free.test", counter, now)
            .unwrap();
        assert!(!stamp.nonce.is_empty());
        // Bound to the address: (with 8 bits, another address fails 255 times in 256).
        let other = (0..4)
            .filter(|i| {
                challenges
                    .check(&c.challenge, &format!("bob{i}@free.test"), counter, now)
                    .is_ok()
            })
            .count();
        assert!(other < 4);
        let late = challenges.check(
            &c.challenge,
            "alice@free.test",
            counter,
            now + chrono::Duration::minutes(11),
        );
        assert!(late.unwrap_err().contains("expired"));
        let forged = c.challenge.replacen(".8.", ".1.", 1);
        assert!(
            challenges
                .check(&forged, "alice@free.test", 0, now)
                .unwrap_err()
                .contains("not one this server issued")
        );
        let foreign = Challenges::new(b"another instance", 8, chrono::Duration::minutes(10));
        assert!(
            foreign
                .check(&c.challenge, "alice@free.test", counter, now)
                .is_err()
        );
    }

    #[test]
    fn reserved_and_short_names_are_refused() {
        for name in [
            "postmaster",
            "Abuse",
            "no-reply",
            "noreply",
            "mailer-daemon",
            "ab",
            "x+y",
        ] {
            assert!(refused_local_part(name).is_some(), "{name}");
        }
        assert!(refused_local_part("alice").is_none());
    }

    #[test]
    fn signups_are_limited_per_ip_and_per_prefix() {
        let guard = SignupGuard::new(Duration::from_secs(3600), 2, 3);
        let ip = |d: u8| IpAddr::from([198, 51, 100, d]);
        assert!(guard.admit(ip(1)).is_ok());
        assert!(guard.admit(ip(1)).is_ok());
        assert!(
            guard
                .admit(ip(1))
                .unwrap_err()
                .1
                .contains("from 198.51.100.1")
        );
        assert!(guard.admit(ip(2)).is_ok());
        assert!(
            guard
                .admit(ip(3))
                .unwrap_err()
                .1
                .contains("198.51.100.0/24")
        );
        assert!(guard.admit(IpAddr::from([203, 0, 113, 1])).is_ok());
    }
}
