//! Signing in with an address and a password, the same way on every door
//! (the API's token endpoint, the submission port, IMAP): one password check
//! that costs the same whether or not the address exists, and one
//! [`LoginGuard`] per process that counts attempts across all of them, so
//! that a guesser cannot switch doors.
//!
//! An attempt is counted *before* the password is checked: [`LoginGuard::reserve`]
//! takes a slot under one lock, so sixty concurrent guesses get at most the
//! configured number of answers and then `TooManyAttempts`; a right password
//! gives its slot back. Attempts are counted per address and per client
//! network (an IPv4 /24, an IPv6 /64: one host rarely has just one address).
//!
//! Lockout without lock-in: once an address has signed in from a network,
//! that network keeps a budget of its own for the address. An attacker
//! elsewhere can use up the address's shared budget, but not the owner's.
//! The networks are remembered in memory by each process (a restart forgets
//! them, and the owner then shares the budget until the next success).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};

use crate::Result;
use crate::model::{AccountStatus, EmailAddress};
use crate::store::{Account, Store};

/// Too many attempts lately; try again in `retry_after` seconds.
#[derive(Debug, PartialEq, Eq)]
pub struct TooManyAttempts {
    pub retry_after: u64,
}

/// The network a client address belongs to, for counting: its /24 (IPv4,
/// IPv4-mapped IPv6 included) or its /64 (IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Network(IpAddr);

impl Network {
    pub fn of(ip: IpAddr) -> Network {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        Network(match ip {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                IpAddr::from([a, b, c, 0])
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
            }
        })
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(_) => write!(f, "{}/24", self.0),
            IpAddr::V6(_) => write!(f, "{}/64", self.0),
        }
    }
}

/// A slot taken by [`LoginGuard::reserve`]. Left alone it counts as a
/// failure; [`LoginGuard::succeeded`] or [`LoginGuard::release`] gives it back.
#[must_use = "an attempt is settled by succeeded() or release(), or counts as a failure"]
#[derive(Debug)]
pub struct Attempt {
    keys: Vec<String>,
    at: Instant,
    address: Option<String>,
    network: Network,
}

/// Networks remembered per address, at most this many (the latest).
const KNOWN_NETWORKS: usize = 8;
/// Beyond this many counters, expired ones are swept.
const SWEEP_AT: usize = 100_000;

#[derive(Default)]
struct Counters {
    attempts: HashMap<String, VecDeque<Instant>>,
    known: HashMap<String, VecDeque<Network>>,
}

/// Counts attempts per address and per client network over a sliding
/// window, and refuses further attempts past the limit until it slides.
pub struct LoginGuard {
    window: Duration,
    per_address: usize,
    per_network: usize,
    counters: Mutex<Counters>,
    /// Whether a mail door still takes an account's own password (for an
    /// account not yet on device sign-in); off by default: app passwords only.
    account_passwords_on_mail: bool,
}

impl LoginGuard {
    pub fn new(window: Duration, per_address: usize, per_network: usize) -> LoginGuard {
        LoginGuard {
            window,
            per_address,
            per_network,
            counters: Mutex::default(),
            account_passwords_on_mail: false,
        }
    }

    /// Lets mail doors take the account's own password too, for accounts
    /// not yet on device sign-in (a transition setting; off by default).
    pub fn allowing_account_passwords_on_mail(mut self, allow: bool) -> LoginGuard {
        self.account_passwords_on_mail = allow;
        self
    }

    /// Takes an attempt for `address` (if any) from `ip`, or says how long
    /// to wait. The check and the count are one step under one lock.
    pub fn reserve(&self, address: Option<&str>, ip: IpAddr) -> Result<Attempt, TooManyAttempts> {
        let now = Instant::now();
        let network = Network::of(ip);
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        if counters.attempts.len() > SWEEP_AT {
            let window = self.window;
            counters.attempts.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        let mut keys = vec![(format!("net:{network}"), self.per_network)];
        if let Some(address) = address {
            let own = counters
                .known
                .get(address)
                .is_some_and(|nets| nets.contains(&network));
            let key = if own {
                format!("addr:{address}@{network}")
            } else {
                format!("addr:{address}")
            };
            keys.push((key, self.per_address));
        }
        for (key, limit) in &keys {
            let Some(times) = counters.attempts.get_mut(key) else {
                continue;
            };
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) >= self.window)
            {
                times.pop_front();
            }
            if times.len() >= *limit {
                let oldest = times.front().copied().unwrap_or(now);
                let wait = self
                    .window
                    .saturating_sub(now.duration_since(oldest))
                    .as_secs()
                    .max(1);
                return Err(TooManyAttempts { retry_after: wait });
            }
        }
        for (key, _) in &keys {
            counters
                .attempts
                .entry(key.clone())
                .or_default()
                .push_back(now);
        }
        Ok(Attempt {
            keys: keys.into_iter().map(|(k, _)| k).collect(),
            at: now,
            address: address.map(str::to_owned),
            network,
        })
    }

    /// The password was right: the slot is given back, and the network is
    /// remembered as the address owner's, with a budget of its own.
    pub fn succeeded(&self, attempt: Attempt) {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        Self::give_back(&mut counters, &attempt);
        if let Some(address) = attempt.address {
            let nets = counters.known.entry(address).or_default();
            if !nets.contains(&attempt.network) {
                if nets.len() >= KNOWN_NETWORKS {
                    nets.pop_front();
                }
                nets.push_back(attempt.network);
            }
        }
    }

    /// Nothing was learnt (the store failed): the slot is given back.
    pub fn release(&self, attempt: Attempt) {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        Self::give_back(&mut counters, &attempt);
    }

    fn give_back(counters: &mut Counters, attempt: &Attempt) {
        for key in &attempt.keys {
            if let Some(times) = counters.attempts.get_mut(key)
                && let Some(i) = times.iter().rposition(|t| *t == attempt.at)
            {
                times.remove(i);
            }
        }
    }
}

/// Why a sign-in failed.
#[derive(Debug, PartialEq, Eq)]
pub enum SignInRefused {
    /// Wrong address or password (or an account that no longer exists).
    Invalid,
    /// The password is right but the account may not sign in; says why
    /// (suspended, or its domain is not verified).
    Disabled(String),
    TooManyAttempts(TooManyAttempts),
    /// The store failed; the client may try again.
    Unavailable,
}

/// Which door a sign-in comes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    /// The REST API (and the apps on it).
    Api,
    /// A mail client: submission, IMAP (and later ManageSieve).
    Mail,
}

/// Signs in on any door: the account these credentials open, if it may
/// sign in there, counted in `guard`. Whether a suspended organisation's
/// users may still do something is the caller's to say.
pub async fn sign_in(
    store: &Store,
    guard: &LoginGuard,
    ip: IpAddr,
    name: &str,
    password: SecretString,
    door: Door,
) -> Result<Account, SignInRefused> {
    sign_in_with(store, guard, ip, name, password, door)
        .await
        .map(|(account, _)| account)
}

/// [`sign_in`], also saying which app password opened a mail door (the
/// session it opens ends when that app password is revoked).
///
/// A mail client signs in with an app password. The account's own
/// password opens a mail door only where the guard allows it (a transition
/// setting, off by default) and only while the account has not moved its
/// key to the device (an account signed in through OPAQUE has no password
/// hash: the server cannot check its password, by design).
pub async fn sign_in_with(
    store: &Store,
    guard: &LoginGuard,
    ip: IpAddr,
    name: &str,
    password: SecretString,
    door: Door,
) -> Result<(Account, Option<uuid::Uuid>), SignInRefused> {
    let Ok(address) = EmailAddress::parse(name) else {
        // Counted against the network: a malformed name is a failure too.
        let _failed = guard
            .reserve(None, ip)
            .map_err(SignInRefused::TooManyAttempts)?;
        return Err(SignInRefused::Invalid);
    };
    let attempt = reserve_waiting(guard, address.as_str(), ip)
        .await
        .map_err(SignInRefused::TooManyAttempts)?;
    let checked = match door {
        Door::Mail => {
            store
                .verify_mail_password(&address, password, guard.account_passwords_on_mail)
                .await
        }
        Door::Api => store
            .verify_password(&address, password)
            .await
            .map(|a| a.map(|a| (a, None))),
    };
    let account = match checked {
        Ok(account) => account,
        Err(e) => {
            guard.release(attempt);
            tracing::error!(error = %e, "password check failed");
            return Err(SignInRefused::Unavailable);
        }
    };
    let Some((account, app_password)) = account.filter(|(a, _)| a.status != AccountStatus::Deleted)
    else {
        return Err(SignInRefused::Invalid);
    };
    guard.succeeded(attempt);
    match store.may_sign_in(&account, door).await {
        Ok(None) => Ok((account, app_password)),
        Ok(Some(why)) => Err(SignInRefused::Disabled(why)),
        Err(e) => {
            tracing::error!(error = %e, "sign-in check failed");
            Err(SignInRefused::Unavailable)
        }
    }
}

/// Takes an attempt, waiting a little when the limit is reached: slots
/// are held while passwords are checked, so a mail client that opens
/// several connections at once (Thunderbird opens five) would otherwise
/// see its own right password refused as "too many failed sign-ins" for
/// the whole window. Attempts that were right give their slot back within
/// a password check's time; refusals that stand are only answered later.
async fn reserve_waiting(
    guard: &LoginGuard,
    address: &str,
    ip: IpAddr,
) -> Result<Attempt, TooManyAttempts> {
    const TRIES: u32 = 40;
    let mut tries = 0;
    loop {
        match guard.reserve(Some(address), ip) {
            Ok(attempt) => return Ok(attempt),
            Err(refused) if tries >= TRIES => return Err(refused),
            Err(_) => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
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
        let verified = vault::cpu::run(move || match hash {
            Some(hash) => crate::password::verify(password.expose_secret(), &hash),
            None => {
                crate::password::verify_dummy(password.expose_secret());
                false
            }
        })
        .await;
        Ok(account.filter(|_| verified))
    }

    /// What opens a mail door: one of the account's app passwords (which
    /// one is returned), or, where `account_password` allows it and the
    /// account's key has not moved to the device yet, its password.
    pub async fn verify_mail_password(
        &self,
        address: &EmailAddress,
        password: SecretString,
        account_password: bool,
    ) -> Result<Option<(Account, Option<uuid::Uuid>)>> {
        let Some(account) = self.account_by_address(address).await? else {
            // As long as a real check: the dummy hash.
            vault::cpu::run(move || crate::password::verify_dummy(password.expose_secret())).await;
            return Ok(None);
        };
        let hash = typed_secret_hash(password.expose_secret());
        if let Some(id) = self.use_app_password(account.id, &hash).await? {
            return Ok(Some((account, Some(id))));
        }
        if !account_password || account.password_hash.is_empty() {
            return Ok(None);
        }
        Ok(self
            .verify_password(address, password)
            .await?
            .map(|a| (a, None)))
    }

    /// Why `account` may not sign in through `door`, if it may not: it is
    /// not active, or its domain is only a claim (not verified). One
    /// exception, so that a claim can be proven at all: an administrator of
    /// a claim signs in to the API (to publish and check its DNS records);
    /// that opens no mail door, since nothing is sent from or delivered
    /// into a claim.
    pub async fn may_sign_in(&self, account: &Account, door: Door) -> Result<Option<String>> {
        if account.status != AccountStatus::Active {
            return Ok(Some(format!("the account is {}", account.status)));
        }
        let hosted = self.is_hosted_domain_id(account.domain_id).await?;
        Ok(claim_refusal(hosted, account, door))
    }
}

/// How a secret made by [`random_code`] (an app password, a recovery code)
/// is stored: it is random (100 bits and more), so one round of SHA-256
/// suffices and lets it be looked up; spaces, dashes and case do not count.
pub fn typed_secret_hash(secret: &str) -> String {
    use sha2::Digest;
    let normalised: String = secret
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    sha2::Sha256::digest(normalised.to_ascii_lowercase().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `chars` characters of base32 (5 bits each), in groups of five joined by
/// dashes so that a person can type them.
pub fn random_code(chars: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::rng();
    let chars: Vec<char> = (0..chars)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    chars
        .chunks(5)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// A new app password: 26 characters (130 bits).
pub fn new_app_password() -> String {
    random_code(26)
}

/// The claim rule of [`Store::may_sign_in`], without a database.
pub fn claim_refusal(hosted: bool, account: &Account, door: Door) -> Option<String> {
    if hosted || (door == Door::Api && account.role == crate::AccountRole::Admin) {
        return None;
    }
    Some(format!(
        "the domain of {} is not verified yet; its administrator must verify it first",
        account.address
    ))
}

/// Whether a change of who may act can concern a mail session of `account`
/// signed in with `app_password` (a tenant's status reaches its subtree; a
/// lost notice is taken as concerning). IMAP and ManageSieve ask this.
pub fn session_concerned(
    account: &Account,
    app_password: Option<uuid::Uuid>,
    change: std::result::Result<
        crate::store::AccessChange,
        tokio::sync::broadcast::error::RecvError,
    >,
) -> bool {
    use crate::store::AccessChange;
    use tokio::sync::broadcast::error::RecvError;
    match change {
        Ok(AccessChange::Account(id)) => id == account.id,
        Ok(AccessChange::AppPassword(_, id)) => Some(id) == app_password,
        Ok(AccessChange::Domain(id)) => id == account.domain_id,
        Ok(AccessChange::ApiKey(_)) => false,
        Ok(AccessChange::Tenant(_)) | Err(RecvError::Lagged(_)) => true,
        Err(RecvError::Closed) => false,
    }
}

impl Store {
    /// Whether a signed-in mail session may go on: the same standing as
    /// every API request (a new role, status or password, an unverified
    /// domain or an inactive organisation ends it), and the app password it
    /// signed in with still exists. A failed look lets it go on.
    pub async fn mail_session_may_go_on(
        &self,
        account: &Account,
        app_password: Option<uuid::Uuid>,
    ) -> bool {
        if let Some(id) = app_password
            && matches!(self.app_password_exists(id).await, Ok(false))
        {
            return false;
        }
        match self.standing_now(account.id).await {
            Ok(Some(now)) => now
                .refusal(now.role(), account.credentials_epoch, Door::Mail)
                .is_none(),
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "mail session re-check failed");
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn attempts_are_counted_before_the_outcome_and_refused_past_the_limit() {
        let guard = LoginGuard::new(Duration::from_secs(60), 2, 100);
        let first = guard.reserve(Some("a@x.test"), ip("192.0.2.1")).unwrap();
        let _second = guard.reserve(Some("a@x.test"), ip("198.51.100.1")).unwrap();
        // Two slots taken and unsettled: the third is refused at once.
        let refused = guard
            .reserve(Some("a@x.test"), ip("203.0.113.1"))
            .unwrap_err();
        assert!((1..=60).contains(&refused.retry_after), "{refused:?}");
        guard.release(first);
        assert!(guard.reserve(Some("a@x.test"), ip("203.0.113.1")).is_ok());
        assert!(guard.reserve(Some("b@x.test"), ip("203.0.113.1")).is_ok());
    }

    #[test]
    fn a_network_is_counted_as_one_client() {
        let guard = LoginGuard::new(Duration::from_secs(60), 100, 3);
        for host in ["10.1.2.3", "10.1.2.4", "10.1.2.200"] {
            let _ = guard
                .reserve(Some(&format!("{host}@x.test")), ip(host))
                .unwrap();
        }
        assert!(
            guard.reserve(Some("z@x.test"), ip("10.1.2.9")).is_err(),
            "same /24"
        );
        assert!(guard.reserve(Some("z@x.test"), ip("10.1.3.9")).is_ok());
        for n in 1..=3 {
            let _ = guard
                .reserve(None, ip(&format!("2001:db8:1:2::{n}")))
                .unwrap();
        }
        assert!(
            guard.reserve(None, ip("2001:db8:1:2:ffff::1")).is_err(),
            "same /64"
        );
        assert!(guard.reserve(None, ip("2001:db8:1:3::1")).is_ok());
        assert_eq!(
            Network::of(ip("::ffff:10.1.2.3")),
            Network::of(ip("10.1.2.77"))
        );
    }

    #[test]
    fn the_owners_network_keeps_its_budget_while_others_use_up_theirs() {
        let guard = LoginGuard::new(Duration::from_secs(60), 3, 1000);
        let owner = ip("192.0.2.10");
        let signed_in = guard.reserve(Some("a@x.test"), owner).unwrap();
        guard.succeeded(signed_in);
        for n in 0..3 {
            let _ = guard
                .reserve(Some("a@x.test"), ip(&format!("198.51.100.{n}")))
                .unwrap();
        }
        assert!(
            guard.reserve(Some("a@x.test"), ip("203.0.113.5")).is_err(),
            "the shared budget is used up"
        );
        let own = guard.reserve(Some("a@x.test"), owner);
        assert!(own.is_ok(), "the owner's network has its own budget");
    }
}
