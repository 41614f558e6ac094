//! MTA-STS (RFC 8461): a recipient domain that publishes a policy in
//! `enforce` mode gets its mail only over TLS with a certificate valid for
//! an MX host the policy names; anything less is a temporary failure, never
//! a fallback to clear text. Policies are cached for their `max_age` and
//! refreshed when the `_mta-sts` TXT record's `id` changes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::dns::{Dns, Kind};
use crate::https::Https;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// Allowed MX host patterns: `mx.example.com` or `*.example.com`.
    pub mx: Vec<String>,
    pub max_age: Duration,
}

impl Policy {
    /// Parses a policy file (§3.2); `None` when it is not a valid STSv1 policy.
    pub fn parse(text: &str) -> Option<Policy> {
        let (mut version, mut mode, mut max_age, mut mx) = (None, None, None, Vec::new());
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "version" => version = Some(value.to_owned()),
                "mode" => {
                    mode = match value {
                        "enforce" => Some(Mode::Enforce),
                        "testing" => Some(Mode::Testing),
                        "none" => Some(Mode::None),
                        _ => return None,
                    }
                }
                "max_age" => max_age = value.parse::<u64>().ok(),
                "mx" => mx.push(value.to_ascii_lowercase()),
                _ => {}
            }
        }
        if version.as_deref() != Some("STSv1") {
            return None;
        }
        let mode = mode?;
        if mode != Mode::None && mx.is_empty() {
            return None;
        }
        // At most a year (§3.2).
        Some(Policy {
            mode,
            mx,
            max_age: Duration::from_secs(max_age?.min(31_557_600)),
        })
    }

    /// Whether `host` is an MX the policy allows (§4.1: a wildcard covers one label).
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(parent) => host.split_once('.').is_some_and(|(_, rest)| rest == parent),
                None => *pattern == host,
            })
    }
}

struct Cached {
    id: String,
    policy: Policy,
    until: Instant,
}

/// Finds and caches recipient domains' policies.
pub struct Policies {
    https: Https,
    dns: Dns,
    cache: Mutex<HashMap<String, Cached>>,
}

impl Policies {
    pub fn new(dns: Dns, https: Https) -> Policies {
        Policies {
            https,
            dns,
            cache: Mutex::default(),
        }
    }

    /// The domain's policy in force, if it publishes one. A policy that
    /// cannot be fetched falls back to the cached one, else to none (§5).
    pub async fn policy(&self, domain: &str) -> Option<Policy> {
        let domain = domain.to_ascii_lowercase();
        let txt = self
            .dns
            .lookup(&format!("_mta-sts.{domain}"), Kind::Txt)
            .await
            .ok()
            .unwrap_or_default();
        let ids: Vec<String> = txt
            .iter()
            .filter(|r| r.trim_start().starts_with("v=STSv1"))
            .filter_map(|r| {
                r.split(';')
                    .find_map(|t| t.trim().strip_prefix("id=").map(str::to_owned))
            })
            .collect();
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache
                .get(&domain)
                .filter(|c| c.until > Instant::now())
                .map(|c| (c.id.clone(), c.policy.clone()))
        };
        // Exactly one record (§3.1); otherwise keep what we know.
        let [id] = ids.as_slice() else {
            return cached.map(|(_, p)| p);
        };
        if let Some((cached_id, policy)) = &cached
            && cached_id == id
        {
            return Some(policy.clone());
        }
        let fetched = self
            .https
            .get(
                &format!("mta-sts.{domain}"),
                "/.well-known/mta-sts.txt",
                64 * 1024,
            )
            .await;
        match fetched
            .ok()
            .flatten()
            .and_then(|body| Policy::parse(&String::from_utf8_lossy(&body)))
        {
            Some(policy) => {
                let until = Instant::now() + policy.max_age;
                let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                cache.insert(
                    domain,
                    Cached {
                        id: id.clone(),
                        policy: policy.clone(),
                        until,
                    },
                );
                Some(policy)
            }
            None => {
                tracing::warn!(%domain, "MTA-STS policy announced but not fetched");
                cached.map(|(_, p)| p)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_match_mx_hosts() {
        let policy = Policy::parse("version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.mail.example.com\r\nmax_age: 86400\r\n").unwrap();
        assert_eq!(policy.mode, Mode::Enforce);
        assert_eq!(policy.max_age, Duration::from_secs(86400));
        assert!(policy.allows("MX1.example.com."));
        assert!(policy.allows("a.mail.example.com"));
        assert!(
            !policy.allows("a.b.mail.example.com"),
            "a wildcard covers one label"
        );
        assert!(!policy.allows("mail.example.com"));
        assert!(!policy.allows("mx2.example.com"));
        assert!(Policy::parse("version: STSv2\nmode: enforce\nmx: a\nmax_age: 1\n").is_none());
        assert!(
            Policy::parse("version: STSv1\nmode: enforce\nmax_age: 1\n").is_none(),
            "enforce needs mx"
        );
        assert!(Policy::parse("version: STSv1\nmode: sometimes\nmx: a\nmax_age: 1\n").is_none());
        assert!(Policy::parse("version: STSv1\nmode: none\nmax_age: 1\n").is_some());
    }
}
