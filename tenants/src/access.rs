//! Who may see and change what. An [`Actor`] comes from a verified token;
//! these rules decide, from a tenant's ancestry, whether the actor can see an
//! object (else the API answers 404) and whether its role allows the action
//! (else 403). Kept free of HTTP so they are tested on their own.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{AccountId, AccountRole, ApiKeyId, Scope, TenantId, TenantKind};

/// The role an actor acts with, derived from its tenant's kind and its account role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the instance: sees and changes everything.
    Operator,
    /// Administers a reseller tenant and every tenant below it.
    ResellerAdmin,
    /// Administers one enterprise or public tenant.
    TenantAdmin,
    /// Uses one account.
    User,
}

impl Role {
    /// The role an account of `role` has in a tenant of `kind`; API keys act
    /// as their tenant's admin.
    pub fn of(kind: TenantKind, role: AccountRole) -> Role {
        match (kind, role) {
            (_, AccountRole::User) => Role::User,
            (TenantKind::Operator, AccountRole::Admin) => Role::Operator,
            (TenantKind::Reseller, AccountRole::Admin) => Role::ResellerAdmin,
            (TenantKind::Enterprise | TenantKind::Public, AccountRole::Admin) => Role::TenantAdmin,
        }
    }

    pub fn is_admin(self) -> bool {
        self != Role::User
    }
}

/// Who is behind a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Subject {
    /// A token minted by `caliop admin operator-token`.
    Operator,
    Account(AccountId),
    ApiKey(ApiKeyId),
}

impl Subject {
    /// How the subject is written in a token's `sub` and in the audit log.
    pub fn to_token_sub(self) -> String {
        match self {
            Subject::Operator => "operator".into(),
            Subject::Account(id) => format!("account:{id}"),
            Subject::ApiKey(id) => format!("api_key:{id}"),
        }
    }

    pub fn from_token_sub(sub: &str) -> Option<Subject> {
        if sub == "operator" {
            return Some(Subject::Operator);
        }
        let (kind, id) = sub.split_once(':')?;
        let id = uuid::Uuid::parse_str(id).ok()?;
        match kind {
            "account" => Some(Subject::Account(AccountId(id))),
            "api_key" => Some(Subject::ApiKey(ApiKeyId(id))),
            _ => None,
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub subject: Subject,
    pub tenant_id: TenantId,
    pub role: Role,
    pub scopes: Vec<Scope>,
}

impl Actor {
    /// Whether the actor can see objects of the tenant whose ancestry
    /// (itself first, then its parent, up to the root) is given.
    pub fn can_see(&self, ancestry: &[TenantId]) -> bool {
        match self.role {
            Role::Operator => true,
            Role::ResellerAdmin => ancestry.contains(&self.tenant_id),
            Role::TenantAdmin | Role::User => ancestry.first() == Some(&self.tenant_id),
        }
    }

    /// Whether the actor sits above the tenant of this ancestry and may
    /// therefore change its package, status or parent.
    pub fn is_above(&self, ancestry: &[TenantId]) -> bool {
        match self.role {
            Role::Operator => true,
            Role::ResellerAdmin => ancestry.iter().skip(1).any(|id| *id == self.tenant_id),
            Role::TenantAdmin | Role::User => false,
        }
    }

    /// Whether the actor is the owner of this account.
    pub fn is_account(&self, account: AccountId) -> bool {
        self.subject == Subject::Account(account)
    }

    pub fn may_write(&self) -> bool {
        self.scopes.contains(&Scope::Write)
    }

    /// How the actor is named in the audit log.
    pub fn audit_name(&self) -> String {
        self.subject.to_token_sub()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(role: Role, tenant: TenantId) -> Actor {
        Actor {
            subject: Subject::Operator,
            tenant_id: tenant,
            role,
            scopes: vec![Scope::Read],
        }
    }

    #[test]
    fn resellers_see_their_subtree_only() {
        let (reseller, child, grandchild, other) = (
            TenantId::new(),
            TenantId::new(),
            TenantId::new(),
            TenantId::new(),
        );
        let a = actor(Role::ResellerAdmin, reseller);
        assert!(a.can_see(&[reseller]));
        assert!(a.can_see(&[child, reseller]));
        assert!(a.can_see(&[grandchild, child, reseller]));
        assert!(!a.can_see(&[other]));
        assert!(
            !a.is_above(&[reseller]),
            "a reseller cannot raise its own package"
        );
        assert!(a.is_above(&[child, reseller]));
    }

    #[test]
    fn tenant_admins_and_users_see_their_tenant_only() {
        let (parent, me) = (TenantId::new(), TenantId::new());
        for role in [Role::TenantAdmin, Role::User] {
            let a = actor(role, me);
            assert!(a.can_see(&[me, parent]));
            assert!(!a.can_see(&[parent]));
            assert!(!a.is_above(&[me, parent]));
        }
    }

    #[test]
    fn subjects_round_trip_through_token_sub() {
        for s in [
            Subject::Operator,
            Subject::Account(AccountId::new()),
            Subject::ApiKey(ApiKeyId::new()),
        ] {
            assert_eq!(Subject::from_token_sub(&s.to_token_sub()), Some(s));
        }
        assert_eq!(Subject::from_token_sub("account:nope"), None);
        assert_eq!(Subject::from_token_sub("root"), None);
    }

    #[test]
    fn roles_follow_tenant_kind() {
        assert_eq!(
            Role::of(TenantKind::Reseller, AccountRole::Admin),
            Role::ResellerAdmin
        );
        assert_eq!(
            Role::of(TenantKind::Operator, AccountRole::User),
            Role::User
        );
        assert_eq!(
            Role::of(TenantKind::Enterprise, AccountRole::Admin),
            Role::TenantAdmin
        );
    }
}
