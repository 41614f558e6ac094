//! Who may act now: the one check behind every token and every open session
//! (API requests, IMAP sessions, submission). The account, its tenant and
//! its domain are read in one query; [`Standing::refusal`] decides, without a
//! database, whether a token or session issued for `(role, epoch)` still holds.

use sqlx::FromRow;

use super::{Account, AccountRow, Pool, Store, stored};
use crate::Result;
use crate::access::Role;
use crate::login::Door;
use crate::model::{AccountId, AccountStatus, TenantKind, TenantStatus};

/// An account as it stands now, with what acting needs of its tenant.
#[derive(Debug)]
pub struct Standing {
    pub account: Account,
    pub tenant_status: TenantStatus,
    pub tenant_kind: TenantKind,
    pub tenant_name: String,
    pub domain_verified: bool,
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
