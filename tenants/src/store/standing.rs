//! Who may act now: the one check behind every token and every open session
//! (API requests, IMAP sessions, submission). The account, its tenant and
//! its domain are read in one query; [`Standing::refusal`] decides, without a
//! database, whether a token or session issued for `(role, epoch)` still holds.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::FromRow;

use super::{Account, AccountRow, ApiKey, Pool, Store, stored};
use crate::Result;
use crate::access::Role;
use crate::login::Door;
use crate::model::{AccountId, AccountStatus, ApiKeyId, TenantKind, TenantStatus};

/// An account as it stands now, with what acting needs of its tenant.
#[derive(Debug)]
pub struct Standing {
    pub account: Account,
    pub tenant_status: TenantStatus,
    pub tenant_kind: TenantKind,
    pub tenant_name: String,
    pub domain_verified: bool,
}

/// Where an API key stands now: the key, and why it may not act, if it may not.
#[derive(Clone, Debug)]
pub struct KeyStanding {
    pub key: ApiKey,
    pub refusal: Option<KeyRefusal>,
}

/// Why an API key may not act.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRefusal {
    /// Revoked, or its maker lost the right to make it (see [`Store::api_key_refusal`]).
    Revoked(String),
    /// Its organisation is suspended or closed.
    OrganisationInactive(String),
}

/// How long a remembered standing is used without news of a change. Every
/// change of who may act made through this process (and, on PostgreSQL,
/// heard from the others) forgets all of them at once; this bounds only what
/// a process that is not heard (an operator's command on a SQLite file the
/// server also has open) can leave unseen.
pub const HELD_FOR: Duration = Duration::from_secs(1);

/// The most standings of each kind remembered; past it they are all forgotten.
const HELD_CAPACITY: usize = 10_000;

/// Standings read recently, so that a request need not read the account,
/// its tenant and its domain again for every call. Shared by every clone of
/// a store.
///
/// An entry is used only while no change of who may act was announced since
/// the read that made it began: [`Held::forget`] is called after the
/// change's transaction committed, so a read that could have seen the state
/// before it started before it, and its entry is never used.
#[derive(Debug, Default)]
pub(super) struct Held {
    generation: AtomicU64,
    accounts: Mutex<HashMap<AccountId, Entry<Arc<Standing>>>>,
    keys: Mutex<HashMap<ApiKeyId, Entry<KeyStanding>>>,
}

#[derive(Debug)]
struct Entry<T> {
    value: T,
    generation: u64,
    read_at: Instant,
}

impl Held {
    /// Forgets every remembered standing (an access change was committed).
    pub(super) fn forget(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The generation a read that starts now belongs to.
    fn now(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// What a read no older than `held_for` found, unless a change was announced since.
    fn recall<K: Eq + Hash, T: Clone>(
        &self,
        map: &Mutex<HashMap<K, Entry<T>>>,
        key: &K,
        held_for: Duration,
    ) -> Option<T> {
        let generation = self.now();
        let map = map.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.get(key)?;
        (entry.generation == generation && entry.read_at.elapsed() < held_for)
            .then(|| entry.value.clone())
    }

    /// Remembers what a read begun in `generation` found, unless a change was
    /// announced since (then the read may predate it).
    fn remember<K: Eq + Hash, T>(
        &self,
        map: &Mutex<HashMap<K, Entry<T>>>,
        key: K,
        value: T,
        generation: u64,
        read_at: Instant,
    ) {
        let mut forgotten = None;
        let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
        if generation != self.now() {
            return;
        }
        if map.len() >= HELD_CAPACITY {
            forgotten = Some(std::mem::take(&mut *map));
        }
        map.insert(
            key,
            Entry {
                value,
                generation,
                read_at,
            },
        );
        drop(map);
        drop(forgotten);
    }
}

/// Why a token or a session no longer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The account's role, status or password changed, or it was deleted, since issue.
    CredentialsChanged,
    /// The account's domain is not (or no longer) verified.
    DomainUnverified,
    /// The organisation is suspended or closed.
    OrganisationInactive(String),
}

impl Standing {
    /// The role this account acts with now.
    pub fn role(&self) -> Role {
        Role::of(self.tenant_kind, self.account.role)
    }

    /// Whether a token or session issued under `epoch` for `role`, through
    /// `door`, still holds; `None` when it does.
    pub fn refusal(&self, role: Role, epoch: i64, door: Door) -> Option<Ended> {
        if self.account.status != AccountStatus::Active
            || self.account.credentials_epoch != epoch
            || self.role() != role
        {
            return Some(Ended::CredentialsChanged);
        }
        if crate::login::claim_refusal(self.domain_verified, &self.account, door).is_some() {
            return Some(Ended::DomainUnverified);
        }
        inactive_tenant(&self.tenant_name, self.tenant_status).map(Ended::OrganisationInactive)
    }
}

/// The one rule for a tenant that may not act (suspended or closed): why,
/// in words every door can show; `None` for an active tenant.
pub fn inactive_tenant(name: &str, status: TenantStatus) -> Option<String> {
    (status != TenantStatus::Active).then(|| format!("the tenant `{name}` is {status}"))
}

#[derive(FromRow)]
struct StandingRow {
    #[sqlx(flatten)]
    account: AccountRow,
    tenant_status: String,
    tenant_kind: String,
    tenant_name: String,
    domain_verified: bool,
}

impl Store {
    /// The same store, using remembered standings for `held_for` instead of
    /// [`HELD_FOR`] (tests use it to tell remembering from expiry).
    #[cfg(any(test, feature = "testing"))]
    pub fn holding_standings_for(mut self, held_for: Duration) -> Store {
        self.held_for = held_for;
        self
    }

    /// The tenant if it may act, else why not (see [`inactive_tenant`]).
    pub async fn active_tenant(
        &self,
        id: crate::TenantId,
    ) -> Result<std::result::Result<super::Tenant, String>> {
        let tenant = self
            .tenant(id)
            .await?
            .ok_or(crate::Error::NotFound("tenant"))?;
        Ok(match inactive_tenant(&tenant.name, tenant.status) {
            Some(why) => Err(why),
            None => Ok(tenant),
        })
    }

    /// [`Store::standing`], read at most [`HELD_FOR`] ago (see
    /// [`Store::holding_standings_for`]) and with no change
    /// of who may act announced since (see [`Held`]). For deciding whether
    /// a token or a session holds: the account's other columns (storage
    /// used, say) may be that old.
    pub async fn standing_now(&self, id: AccountId) -> Result<Option<Arc<Standing>>> {
        if let Some(held) = self.held.recall(&self.held.accounts, &id, self.held_for) {
            return Ok(Some(held));
        }
        let (generation, read_at) = (self.held.now(), Instant::now());
        let Some(standing) = self.standing(id).await? else {
            return Ok(None);
        };
        let standing = Arc::new(standing);
        self.held.remember(
            &self.held.accounts,
            id,
            standing.clone(),
            generation,
            read_at,
        );
        Ok(Some(standing))
    }

    /// The API key with whether it may act now (revoked, its maker's right
    /// gone, its organisation inactive), remembered as [`Store::standing_now`] is.
    pub async fn api_key_standing(&self, id: ApiKeyId) -> Result<Option<KeyStanding>> {
        if let Some(held) = self.held.recall(&self.held.keys, &id, self.held_for) {
            return Ok(Some(held));
        }
        let (generation, read_at) = (self.held.now(), Instant::now());
        let Some(key) = self.api_key(id).await? else {
            return Ok(None);
        };
        let refusal = match self.api_key_refusal(&key).await? {
            Some(why) => Some(KeyRefusal::Revoked(why)),
            None => self
                .active_tenant(key.tenant_id)
                .await?
                .err()
                .map(KeyRefusal::OrganisationInactive),
        };
        let standing = KeyStanding { key, refusal };
        self.held
            .remember(&self.held.keys, id, standing.clone(), generation, read_at);
        Ok(Some(standing))
    }

    /// The account with its tenant's status and kind and whether its domain
    /// is verified, in one query.
    pub async fn standing(&self, id: AccountId) -> Result<Option<Standing>> {
        let sql = "SELECT a.id, a.tenant_id, a.domain_id, a.address, a.display_name, a.role, a.status, a.level, \
               a.password_hash, a.fingerprint, a.public_key, a.secret_key, a.created_at, a.updated_at, \
               a.storage_used_bytes, a.storage_quota_bytes, a.credentials_epoch, \
               t.status AS tenant_status, t.kind AS tenant_kind, t.name AS tenant_name, \
               (d.verified_at IS NOT NULL) AS domain_verified \
             FROM accounts a JOIN tenants t ON t.id = a.tenant_id JOIN domains d ON d.id = a.domain_id \
             WHERE a.id = $1";
        let row: Option<StandingRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id.0).fetch_optional(p).await)?;
        row.map(|r| {
            Ok(Standing {
                account: r.account.try_into()?,
                tenant_status: r.tenant_status.parse().map_err(stored)?,
                tenant_kind: r.tenant_kind.parse().map_err(stored)?,
                tenant_name: r.tenant_name,
                domain_verified: r.domain_verified,
            })
        })
        .transpose()
    }
}

impl Store {
    /// Whether an API key still speaks for its tenant: not revoked, and the
    /// one who made it still may (an administrator who has lost the role, or
    /// a key since revoked, takes the keys it made along). `None` when it holds.
    pub async fn api_key_refusal(&self, key: &super::ApiKey) -> Result<Option<String>> {
        let mut key = key.clone();
        // Keys made by keys: follow the chain a few steps, no further.
        for _ in 0..8 {
            if key.revoked_at.is_some() {
                return Ok(Some(
                    "the API key (or the key that made it) was revoked".into(),
                ));
            }
            match crate::access::Subject::from_token_sub(&key.created_by) {
                Some(crate::access::Subject::Operator) => return Ok(None),
                Some(crate::access::Subject::Account(id)) => {
                    let holds = self.standing(id).await?.is_some_and(|s| {
                        s.account.status == AccountStatus::Active
                            && s.role().is_admin()
                            && s.tenant_status == TenantStatus::Active
                    });
                    return Ok((!holds).then(|| {
                        "the administrator who made this API key no longer is one; an operator may issue a new key"
                            .into()
                    }));
                }
                Some(crate::access::Subject::ApiKey(parent)) => match self.api_key(parent).await? {
                    Some(parent) => key = parent,
                    None => return Ok(Some("the key that made this API key is gone".into())),
                },
                None => return Ok(Some("the API key's maker is not recognised".into())),
            }
        }
        Ok(Some(
            "the API key was made by too long a chain of keys".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_begun_before_a_change_is_not_remembered() {
        let held = Held::default();
        let id = AccountId::new();
        let long = Duration::from_secs(3600);
        // Read, then remembered: recalled.
        let begun = held.now();
        held.remember(
            &held.keys,
            ApiKeyId::new(),
            key_standing(),
            begun,
            Instant::now(),
        );
        // A read begins, a change commits and is announced, the read ends:
        // what it found may predate the change and must not be used.
        let (begun, at) = (held.now(), Instant::now());
        held.forget();
        held.remember(
            &held.accounts,
            id,
            Arc::new(standing(1, AccountStatus::Active, true)),
            begun,
            at,
        );
        assert!(held.recall(&held.accounts, &id, long).is_none());
        // A read begun after the change is remembered, until the next one.
        let begun = held.now();
        held.remember(
            &held.accounts,
            id,
            Arc::new(standing(2, AccountStatus::Active, true)),
            begun,
            Instant::now(),
        );
        let recalled = held.recall(&held.accounts, &id, long).unwrap();
        assert_eq!(recalled.account.credentials_epoch, 2);
        assert!(
            held.recall(&held.accounts, &id, Duration::ZERO).is_none(),
            "too old"
        );
        held.forget();
        assert!(held.recall(&held.accounts, &id, long).is_none());
    }

    #[test]
    fn remembered_standings_never_pass_their_bound() {
        let held = Held::default();
        for epoch in 0..(HELD_CAPACITY as i64 + 10) {
            let s = Arc::new(standing(epoch, AccountStatus::Active, true));
            held.remember(&held.accounts, s.account.id, s, held.now(), Instant::now());
            assert!(held.accounts.lock().unwrap().len() <= HELD_CAPACITY);
        }
    }

    fn key_standing() -> KeyStanding {
        KeyStanding {
            key: ApiKey {
                id: ApiKeyId::new(),
                tenant_id: crate::TenantId::new(),
                name: "k".into(),
                prefix: "ck_".into(),
                scopes: Vec::new(),
                created_by: "operator".into(),
                created_at: chrono::Utc::now(),
                last_used_at: None,
                revoked_at: None,
            },
            refusal: None,
        }
    }

    fn standing(epoch: i64, status: AccountStatus, verified: bool) -> Standing {
        let now = chrono::Utc::now();
        Standing {
            account: Account {
                id: AccountId::new(),
                tenant_id: crate::TenantId::new(),
                domain_id: crate::DomainId::new(),
                address: crate::EmailAddress::parse("a@x.test").unwrap(),
                display_name: String::new(),
                role: crate::AccountRole::Admin,
                status,
                level: crate::Level::Standard,
                password_hash: String::new(),
                fingerprint: String::new(),
                public_key: String::new(),
                secret_key: String::new(),
                created_at: now,
                updated_at: now,
                storage_used_bytes: 0,
                storage_quota_bytes: None,
                credentials_epoch: epoch,
            },
            tenant_status: TenantStatus::Active,
            tenant_kind: TenantKind::Enterprise,
            tenant_name: "x".into(),
            domain_verified: verified,
        }
    }

    #[test]
    fn a_token_holds_only_for_the_epoch_and_role_it_was_issued_under() {
        let s = standing(3, AccountStatus::Active, true);
        let api = Door::Api;
        assert_eq!(s.refusal(Role::TenantAdmin, 3, api), None);
        assert_eq!(
            s.refusal(Role::TenantAdmin, 2, api),
            Some(Ended::CredentialsChanged)
        );
        assert_eq!(
            s.refusal(Role::User, 3, api),
            Some(Ended::CredentialsChanged)
        );
        let suspended = standing(3, AccountStatus::Suspended, true);
        assert_eq!(
            suspended.refusal(Role::TenantAdmin, 3, api),
            Some(Ended::CredentialsChanged)
        );
        // A claim's administrator keeps the API (to prove the claim), not the mail doors.
        let claim = standing(3, AccountStatus::Active, false);
        assert_eq!(claim.refusal(Role::TenantAdmin, 3, api), None);
        assert_eq!(
            claim.refusal(Role::TenantAdmin, 3, Door::Mail),
            Some(Ended::DomainUnverified)
        );
    }
}
