//! Signing in with an address and a password, the same way on every door
//! (the API's token endpoint, the submission port, IMAP next): one password
//! check that costs the same whether or not the address exists, and one
//! [`LoginGuard`] per process that counts failures per address and per
//! client IP across all of them, so that a guesser cannot switch doors.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};

use crate::model::EmailAddress;
use crate::store::{Account, Store};
use crate::{Error, Result};

/// Too many failures lately; try again in `retry_after` seconds.
#[derive(Debug, PartialEq, Eq)]
pub struct TooManyAttempts {
    pub retry_after: u64,
}

/// Counts failed sign-ins per address and per client IP over a sliding
/// window, and refuses further attempts past the limit until it slides.
pub struct LoginGuard {
    window: Duration,
    per_address: usize,
    per_ip: usize,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginGuard {
    pub fn new(window: Duration, per_address: usize, per_ip: usize) -> LoginGuard {
        LoginGuard {
            window,
            per_address,
            per_ip,
            failures: Mutex::default(),
        }
    }

    fn keys(address: Option<&str>, ip: IpAddr) -> impl Iterator<Item = (String, bool)> {
        address
            .map(|a| (format!("addr:{a}"), true))
            .into_iter()
            .chain([(format!("ip:{ip}"), false)])
    }

    /// Refuses when the address or the IP has used up its attempts; the
    /// error says how many seconds until the next attempt is allowed.
    pub fn check(&self, address: Option<&str>, ip: IpAddr) -> Result<(), TooManyAttempts> {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for (key, is_address) in Self::keys(address, ip) {
            let limit = if is_address {
                self.per_address
            } else {
                self.per_ip
            };
            if let Some(times) = failures.get_mut(&key) {
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    times.pop_front();
                }
                if times.len() >= limit {
                    let oldest = times.front().copied().unwrap_or(now);
                    let wait = self
                        .window
                        .saturating_sub(now.duration_since(oldest))
                        .as_secs()
                        .max(1);
                    return Err(TooManyAttempts { retry_after: wait });
                }
            }
        }
        Ok(())
    }

    pub fn record_failure(&self, address: Option<&str>, ip: IpAddr) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() > 100_000 {
            failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < self.window)
            });
        }
        for (key, _) in Self::keys(address, ip) {
            failures.entry(key).or_default().push_back(now);
        }
    }

    pub fn record_success(&self, address: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(&format!("addr:{address}"));
    }
}

/// Why a mail client's sign-in failed.
#[derive(Debug, PartialEq, Eq)]
pub enum SignInRefused {
    /// Wrong address or password, or an account that may not sign in.
    Invalid,
    TooManyAttempts(TooManyAttempts),
    /// The store failed; the client may try again.
    Unavailable,
}

/// A mail client's sign-in (submission, IMAP): the active account these
/// credentials open, checked and counted exactly like the API's. What a
/// suspended organisation's users may still do is the caller's to say.
pub async fn sign_in(
    store: &Store,
    guard: &LoginGuard,
    ip: IpAddr,
    name: &str,
    password: SecretString,
) -> Result<Account, SignInRefused> {
    let Ok(address) = EmailAddress::parse(name) else {
        guard.record_failure(None, ip);
        return Err(SignInRefused::Invalid);
    };
    guard
        .check(Some(address.as_str()), ip)
        .map_err(SignInRefused::TooManyAttempts)?;
    let account = store
        .verify_password(&address, password)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "password check failed");
            SignInRefused::Unavailable
        })?;
    match account {
        Some(account) if account.status == crate::AccountStatus::Active => {
            guard.record_success(address.as_str());
            Ok(account)
        }
        _ => {
            guard.record_failure(Some(address.as_str()), ip);
            Err(SignInRefused::Invalid)
        }
    }
}

impl Store {
    /// The account at `address` if `password` is its password, whatever its
    /// status (callers decide what a suspended account may do). Hashing runs
    /// off the async threads, and a dummy hash is checked for unknown
    /// addresses, so the answer takes as long either way.
    pub async fn verify_password(
        &self,
        address: &EmailAddress,
        password: SecretString,
    ) -> Result<Option<Account>> {
        let account = self.account_by_address(address).await?;
        let hash = account.as_ref().map(|a| a.password_hash.clone());
        let verified = tokio::task::spawn_blocking(move || match hash {
            Some(hash) => crate::password::verify(password.expose_secret(), &hash),
            None => {
                crate::password::verify_dummy(password.expose_secret());
                false
            }
        })
        .await
        .map_err(|e| Error::Internal(format!("password check failed: {e}")))?;
        Ok(account.filter(|_| verified))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_refuses_after_the_limit_and_forgets_on_success() {
        let guard = LoginGuard::new(Duration::from_secs(60), 2, 3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        guard.check(Some("a@x.test"), ip).unwrap();
        guard.record_failure(Some("a@x.test"), ip);
        guard.record_failure(Some("a@x.test"), ip);
        let refused = guard.check(Some("a@x.test"), ip).unwrap_err();
        assert!((1..=60).contains(&refused.retry_after), "{refused:?}");
        guard.check(Some("b@x.test"), ip).unwrap();
        guard.record_failure(Some("b@x.test"), ip);
        assert!(
            guard.check(Some("c@x.test"), ip).is_err(),
            "the IP has used its 3 attempts"
        );
        guard.record_success("a@x.test");
        assert!(
            guard
                .check(Some("a@x.test"), "192.0.2.2".parse().unwrap())
                .is_ok()
        );
    }
}
