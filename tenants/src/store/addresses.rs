//! Business addresses: aliases of an account, groups that deliver to
//! several accounts, domain aliases and catch-alls, external forwarding —
//! and the one rule every door asks about an address, [`Store::resolve`]:
//! who gets mail written to it, and whether this sender may write to it.
//!
//! An address is exactly one thing across the instance (an account, an
//! alias or a group): the store refuses the second claim with a conflict.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Account, Audit, INSERT_AUDIT, Pool, RecipientAccount, Store, WriteLock, check_room};
use crate::model::{AccountId, AccountStatus, DomainId, EmailAddress, TenantId};
use crate::{Error, Result};

/// The most members one group has.
pub const MAX_GROUP_MEMBERS: usize = 1_000;

/// What an address other than an account's own is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AddressKind {
    /// Another address of one account: mail to it arrives in the account,
    /// and the account may send as it.
    Alias,
    /// A distribution list: each member gets a copy at their own level.
    Group,
}

impl AddressKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressKind::Alias => "alias",
            AddressKind::Group => "group",
        }
    }
}

/// Who may write to a group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Posting {
    /// Anyone, from anywhere.
    #[default]
    Anyone,
    /// Only the tenant's own accounts, signed in to send (not mail from
    /// outside that merely claims one of their addresses).
    Tenant,
    /// Only the group's members, signed in to send.
    Members,
}

impl Posting {
    pub fn as_str(self) -> &'static str {
        match self {
            Posting::Anyone => "anyone",
            Posting::Tenant => "tenant",
            Posting::Members => "members",
        }
    }

    fn parse(s: &str) -> Result<Posting> {
        match s {
            "anyone" => Ok(Posting::Anyone),
            "tenant" => Ok(Posting::Tenant),
            "members" => Ok(Posting::Members),
            other => Err(Error::Internal(format!("unknown posting policy {other}"))),
        }
    }
}

/// An alias or a group.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Address {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub domain_id: DomainId,
    #[schema(example = "sales@example.com")]
    pub address: String,
    pub kind: AddressKind,
    /// The account an alias belongs to.
    pub account_id: Option<AccountId>,
    /// Who may write to a group (always `anyone` for an alias).
    pub posting: Posting,
    /// A name for people (a group's display name).
    pub name: String,
    /// A group's members.
    pub members: Vec<AccountId>,
    pub created_at: DateTime<Utc>,
}

/// What creating or changing an alias or group asks for.
#[derive(Clone, Debug)]
pub struct NewAddress {
    pub tenant_id: TenantId,
    pub address: EmailAddress,
    pub kind: AddressKind,
    pub account_id: Option<AccountId>,
    pub posting: Posting,
    pub name: String,
    pub members: Vec<AccountId>,
}

/// How a domain routes what is not an account, alias or group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DomainRouting {
    /// This domain delivers as that one (`info@example.fr` is
    /// `info@example.com`). Both must be the tenant's and verified.
    pub alias_of: Option<DomainId>,
    /// The account or group address that receives mail for unknown local
    /// parts of the domain. Off (`null`) by default.
    #[schema(example = "postmaster@example.com")]
    pub catch_all: Option<String>,
}

/// An account's external forwarding.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Forwarding {
    /// Where each message that arrives is forwarded; `null` turns it off.
    #[schema(example = "me@elsewhere.example")]
    pub to: Option<String>,
    /// Whether a copy stays in the account too. A message that may not be
    /// forwarded (see the README) always stays.
    #[serde(default = "yes")]
    pub keep: bool,
}

fn yes() -> bool {
    true
}

/// Who is writing, as far as a group's posting policy is concerned.
#[derive(Clone, Copy, Debug)]
pub enum Poster<'a> {
    /// Mail from outside (the MX), or written by the server itself.
    Outside,
    /// An account of this instance, signed in to send.
    Account(&'a Account),
}

/// One account a message to an address reaches.
#[derive(Clone, Debug)]
pub struct Reached {
    pub recipient: RecipientAccount,
    /// The address as it was reached (an alias, or the account's own; a
    /// group member's own), without a `+tag`: vacation replies come from it.
    pub via: String,
    /// The `+tag` of a plus-address (`user+tag@`), for Sieve's `subaddress`
    /// and for filing into the folder of that name.
    pub tag: Option<String>,
}

/// Where mail written to an address goes.
#[derive(Clone, Debug)]
pub enum Resolution {
    /// These accounts (one, or a group's members), each with its own copy.
    Reach(Vec<Reached>),
    /// A group this sender may not write to, and why, in words for them.
    Refused(String),
    /// A hosted domain, but nobody of that address.
    Unknown,
    /// Not a domain of ours.
    NotHosted,
}

#[derive(FromRow)]
struct AddressRow {
    id: Uuid,
    tenant_id: Uuid,
    domain_id: Uuid,
    address: String,
    kind: String,
    account_id: Option<Uuid>,
    posting: String,
    name: String,
    created_at: DateTime<Utc>,
}

impl AddressRow {
    fn into_address(self, members: Vec<AccountId>) -> Result<Address> {
        Ok(Address {
            id: self.id,
            tenant_id: TenantId(self.tenant_id),
            domain_id: DomainId(self.domain_id),
            address: self.address,
            kind: if self.kind == "group" {
                AddressKind::Group
            } else {
                AddressKind::Alias
            },
            account_id: self.account_id.map(AccountId),
            posting: Posting::parse(&self.posting)?,
            name: self.name,
            members,
            created_at: self.created_at,
        })
    }
}

const ADDRESS_COLUMNS: &str =
    "id, tenant_id, domain_id, address, kind, account_id, posting, name, created_at";

/// The local part without its `+tag`, and the tag.
pub fn split_tag(local: &str) -> (&str, Option<&str>) {
    match local.split_once('+') {
        Some((base, tag)) if !base.is_empty() => (base, Some(tag)),
        _ => (local, None),
    }
}

/// The one rule for who may write to a group, kept apart so that a table
/// test can hold it.
pub fn may_post(
    posting: Posting,
    tenant: TenantId,
    members: &[AccountId],
    poster: Poster<'_>,
) -> bool {
    match (posting, poster) {
        (Posting::Anyone, _) => true,
        (_, Poster::Outside) => false,
        (Posting::Tenant, Poster::Account(a)) => a.tenant_id == tenant,
        (Posting::Members, Poster::Account(a)) => members.contains(&a.id),
    }
}

impl Store {
    /// Who gets mail written to `address`, and whether `poster` may write
    /// there: the one rule the MX, local delivery and the API ask. In
    /// order: the account of that address (a hosted domain's), an alias, a
    /// group, then the same without a `+tag`, then the domain's catch-all;
    /// a domain alias is read as the domain it stands for.
    pub async fn resolve(&self, address: &EmailAddress, poster: Poster<'_>) -> Result<Resolution> {
        // The common case first, in one query: an account of exactly that
        // address (`recipient` answers only for a hosted domain's).
        if let Some(recipient) = self.recipient(address).await?
            && recipient.account.status != AccountStatus::Deleted
        {
            return Ok(Resolution::Reach(vec![Reached {
                via: recipient.account.address.to_string(),
                recipient,
                tag: None,
            }]));
        }
        let domain_name = address.domain();
        let Some(domain) = self.hosted_domain(&domain_name).await? else {
            return Ok(Resolution::NotHosted);
        };
        let routing = self.domain_routing(domain.id).await?;
        // A domain alias delivers as the domain it stands for.
        let target_domain = match routing.alias_of {
            Some(target) => match self.domain(target).await? {
                Some(d) if d.verified_at.is_some() && d.tenant_id == domain.tenant_id => d,
                _ => return Ok(Resolution::Unknown),
            },
            None => domain.clone(),
        };
        let local = address.local().to_ascii_lowercase();
        let (base, tag) = split_tag(&local);
        let mut candidates = vec![(local.clone(), None)];
        if let Some(tag) = tag {
            candidates.push((base.to_owned(), Some(tag.to_owned())));
        }
        for (local, tag) in candidates {
            let Ok(candidate) = EmailAddress::parse(&format!("{local}@{}", target_domain.name))
            else {
                continue;
            };
            match self.resolve_exact(&candidate, poster, tag).await? {
                Resolution::Unknown => continue,
                found => return Ok(found),
            }
        }
        // The catch-all of the domain written to (or of the one it aliases).
        let catch_all = match routing.catch_all {
            Some(c) => Some(c),
            None if routing.alias_of.is_some() => {
                self.domain_routing(target_domain.id).await?.catch_all
            }
            None => None,
        };
        if let Some(catch_all) = catch_all.and_then(|c| EmailAddress::parse(&c).ok()) {
            return self.resolve_exact(&catch_all, poster, None).await;
        }
        Ok(Resolution::Unknown)
    }

    async fn resolve_exact(
        &self,
        address: &EmailAddress,
        poster: Poster<'_>,
        tag: Option<String>,
    ) -> Result<Resolution> {
        if let Some(recipient) = self.recipient(address).await? {
            if recipient.account.status == AccountStatus::Deleted {
                return Ok(Resolution::Unknown);
            }
            return Ok(Resolution::Reach(vec![Reached {
                via: recipient.account.address.to_string(),
                recipient,
                tag,
            }]));
        }
        let Some(entry) = self.address_by_name(&address.to_string()).await? else {
            return Ok(Resolution::Unknown);
        };
        let via = entry.address.clone();
        match entry.kind {
            AddressKind::Alias => {
                let Some(account) = entry.account_id else {
                    return Ok(Resolution::Unknown);
                };
                match self.recipient_by_id(account).await? {
                    Some(recipient) if recipient.account.status != AccountStatus::Deleted => {
                        Ok(Resolution::Reach(vec![Reached {
                            recipient,
                            via,
                            tag,
                        }]))
                    }
                    _ => Ok(Resolution::Unknown),
                }
            }
            AddressKind::Group => {
                if !may_post(entry.posting, entry.tenant_id, &entry.members, poster) {
                    return Ok(Resolution::Refused(match entry.posting {
                        Posting::Members => format!("only members of {via} may write to it"),
                        _ => format!("only the organisation's own accounts may write to {via}"),
                    }));
                }
                let mut reached = Vec::with_capacity(entry.members.len());
                for member in &entry.members {
                    if let Some(recipient) = self.recipient_by_id(*member).await?
                        && recipient.account.status == AccountStatus::Active
                    {
                        // A member answers (vacation) from its own address,
                        // not the group's.
                        reached.push(Reached {
                            via: recipient.account.address.to_string(),
                            recipient,
                            tag: tag.clone(),
                        });
                    }
                }
                if reached.is_empty() {
                    return Ok(Resolution::Unknown);
                }
                Ok(Resolution::Reach(reached))
            }
        }
    }

    /// The addresses `account` may send as: its own, then its aliases.
    pub async fn sending_addresses(&self, account: &Account) -> Result<Vec<String>> {
        let sql = "SELECT address FROM addresses WHERE account_id = $1 AND kind = 'alias' ORDER BY address";
        let rows: Vec<(String,)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(account.id.0).fetch_all(p).await)?;
        let mut out = vec![account.address.to_string()];
        out.extend(rows.into_iter().map(|(a,)| a));
        Ok(out)
    }

    async fn address_by_name(&self, address: &str) -> Result<Option<Address>> {
        let sql = super::join_sql(
            "SELECT ",
            ADDRESS_COLUMNS,
            " FROM addresses WHERE address = $1",
        );
        let row: Option<AddressRow> = on_pool!(&self.pool, p =>
            sqlx::query_as(sql).bind(address.to_ascii_lowercase()).fetch_optional(p).await)?;
        match row {
            Some(row) => {
                let members = self.members(row.id).await?;
                Ok(Some(row.into_address(members)?))
            }
            None => Ok(None),
        }
    }

    async fn members(&self, address: Uuid) -> Result<Vec<AccountId>> {
        let sql = "SELECT account_id FROM group_members WHERE address_id = $1 ORDER BY account_id";
        let rows: Vec<(Uuid,)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(address).fetch_all(p).await)?;
        Ok(rows.into_iter().map(|(id,)| AccountId(id)).collect())
    }

    /// One alias or group.
    pub async fn address(&self, id: Uuid) -> Result<Option<Address>> {
        let sql = super::join_sql("SELECT ", ADDRESS_COLUMNS, " FROM addresses WHERE id = $1");
        let row: Option<AddressRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id).fetch_optional(p).await)?;
        match row {
            Some(row) => {
                let members = self.members(row.id).await?;
                Ok(Some(row.into_address(members)?))
            }
            None => Ok(None),
        }
    }

    /// The tenant's aliases and groups, by address.
    pub async fn list_addresses(&self, tenant: TenantId) -> Result<Vec<Address>> {
        let sql = super::join_sql(
            "SELECT ",
            ADDRESS_COLUMNS,
            " FROM addresses WHERE tenant_id = $1 ORDER BY address LIMIT 5000",
        );
        let rows: Vec<AddressRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(tenant.0).fetch_all(p).await)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let members = self.members(row.id).await?;
            out.push(row.into_address(members)?);
        }
        Ok(out)
    }

    /// Checks what an alias or group would point to: the domain a verified
    /// one of the tenant's (and not a domain alias), the accounts its own.
    async fn check_address(&self, new: &NewAddress) -> Result<DomainId> {
        let domain = self
            .hosted_domain(&new.address.domain())
            .await?
            .filter(|d| d.tenant_id == new.tenant_id)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "`{}` is not in a verified domain of this tenant",
                    new.address
                ))
            })?;
        if self.domain_routing(domain.id).await?.alias_of.is_some() {
            return Err(Error::Invalid(format!(
                "`{}` is a domain alias: its addresses are those of the domain it stands for",
                domain.name
            )));
        }
        let mut accounts: Vec<AccountId> = new.members.clone();
        match new.kind {
            AddressKind::Alias => {
                let account = new.account_id.ok_or_else(|| {
                    Error::Invalid("an alias needs `account_id`, the account it belongs to".into())
                })?;
                if !new.members.is_empty() {
                    return Err(Error::Invalid(
                        "an alias has no members; make a group".into(),
                    ));
                }
                accounts.push(account);
            }
            AddressKind::Group => {
                if new.account_id.is_some() {
                    return Err(Error::Invalid(
                        "a group has members, not `account_id`".into(),
                    ));
                }
                if new.members.len() > MAX_GROUP_MEMBERS {
                    return Err(Error::Invalid(format!(
                        "a group has at most {MAX_GROUP_MEMBERS} members"
                    )));
                }
            }
        }
        for id in accounts {
            match self.account(id).await? {
                Some(a) if a.tenant_id == new.tenant_id && a.status != AccountStatus::Deleted => {}
                _ => {
                    return Err(Error::Invalid(format!(
                        "account `{id}` is not an account of this tenant"
                    )));
                }
            }
        }
        Ok(domain.id)
    }

    /// Creates an alias or a group. The address must be free across the
    /// instance (409 otherwise), and within the package: a tenant may have
    /// as many aliases and groups as its package allows accounts.
    pub async fn create_address(&self, actor: &str, new: NewAddress) -> Result<Address> {
        let domain_id = self.check_address(&new).await?;
        let chain = self.chain(new.tenant_id).await?;
        let root = chain
            .last()
            .map(|t| t.id)
            .ok_or(Error::NotFound("tenant"))?;
        let id = Uuid::now_v7();
        let address = new.address.to_string().to_ascii_lowercase();
        let posting = match new.kind {
            AddressKind::Alias => Posting::Anyone,
            AddressKind::Group => new.posting,
        };
        let taken = "SELECT (SELECT COUNT(*) FROM accounts WHERE address = $1) + (SELECT COUNT(*) FROM addresses WHERE address = $1)";
        let insert = "INSERT INTO addresses (id, tenant_id, domain_id, address, kind, account_id, posting, name, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        let member = "INSERT INTO group_members (address_id, account_id) VALUES ($1, $2) ON CONFLICT DO NOTHING";
        let result: Result<()> = on_pool!(&self.pool, p => async {
            let mut tx = p.begin_locked(root.0).await?;
            let (n,): (i64,) = sqlx::query_as(taken).bind(&address).fetch_one(&mut *tx).await?;
            if n > 0 {
                return Err(Error::Conflict(format!("the address `{address}` is taken")));
            }
            let mut used = Vec::new();
            for tenant in &chain {
                let (n,): (i64,) = sqlx::query_as(SUBTREE_ADDRESSES).bind(tenant.id.0).fetch_one(&mut *tx).await?;
                used.push((tenant.clone(), n));
            }
            check_room("alias and group", &used, |l| l.max_accounts)?;
            sqlx::query(insert)
                .bind(id)
                .bind(new.tenant_id.0)
                .bind(domain_id.0)
                .bind(&address)
                .bind(new.kind.as_str())
                .bind(new.account_id.map(|a| a.0))
                .bind(posting.as_str())
                .bind(&new.name)
                .bind(Utc::now())
                .execute(&mut *tx)
                .await
                .map_err(|e| if super::unique_violation(&e) {
                    Error::Conflict(format!("the address `{address}` is taken"))
                } else { e.into() })?;
            for m in &new.members {
                sqlx::query(member).bind(id).bind(m.0).execute(&mut *tx).await?;
            }
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(new.tenant_id.0),
                action: "address.create",
                object_type: new.kind.as_str(),
                object_id: id.to_string(),
                detail: serde_json::json!({ "address": address, "members": new.members.len() }),
            });
            tx.commit().await?;
            Ok(())
        }.await);
        result?;
        self.address(id).await?.ok_or(Error::NotFound("address"))
    }

    /// Changes a group's name, posting policy and members, or the account
    /// an alias belongs to. The address itself does not change (delete and
    /// create instead).
    pub async fn update_address(&self, actor: &str, id: Uuid, new: NewAddress) -> Result<Address> {
        let current = self.address(id).await?.ok_or(Error::NotFound("address"))?;
        if current.kind != new.kind {
            return Err(Error::Invalid(format!(
                "this address is {} {}; its kind does not change",
                if current.kind == AddressKind::Alias {
                    "an"
                } else {
                    "a"
                },
                current.kind.as_str()
            )));
        }
        self.check_address(&new).await?;
        let update = "UPDATE addresses SET account_id = $2, posting = $3, name = $4 WHERE id = $1";
        let clear = "DELETE FROM group_members WHERE address_id = $1";
        let member = "INSERT INTO group_members (address_id, account_id) VALUES ($1, $2) ON CONFLICT DO NOTHING";
        let posting = match new.kind {
            AddressKind::Alias => Posting::Anyone,
            AddressKind::Group => new.posting,
        };
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(update).bind(id).bind(new.account_id.map(|a| a.0)).bind(posting.as_str()).bind(&new.name)
                .execute(&mut *tx).await?;
            sqlx::query(clear).bind(id).execute(&mut *tx).await?;
            for m in &new.members {
                sqlx::query(member).bind(id).bind(m.0).execute(&mut *tx).await?;
            }
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(current.tenant_id.0),
                action: "address.update",
                object_type: current.kind.as_str(),
                object_id: id.to_string(),
                detail: serde_json::json!({ "address": current.address, "members": new.members.len() }),
            });
            tx.commit().await?;
        });
        self.address(id).await?.ok_or(Error::NotFound("address"))
    }

    pub async fn delete_address(&self, actor: &str, id: Uuid) -> Result<()> {
        let current = self.address(id).await?.ok_or(Error::NotFound("address"))?;
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query("DELETE FROM group_members WHERE address_id = $1").bind(id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM addresses WHERE id = $1").bind(id).execute(&mut *tx).await?;
            // A catch-all that pointed here points nowhere now.
            sqlx::query("UPDATE domains SET catch_all = NULL WHERE catch_all = $1").bind(&current.address).execute(&mut *tx).await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(current.tenant_id.0),
                action: "address.delete",
                object_type: current.kind.as_str(),
                object_id: id.to_string(),
                detail: serde_json::json!({ "address": current.address }),
            });
            tx.commit().await?;
        });
        Ok(())
    }

    /// Whether `address` is an alias or group (for the account side of uniqueness).
    pub async fn address_taken_by_alias(&self, address: &EmailAddress) -> Result<bool> {
        Ok(self.address_by_name(&address.to_string()).await?.is_some())
    }

    pub async fn domain_routing(&self, domain: DomainId) -> Result<DomainRouting> {
        let sql = "SELECT alias_of, catch_all FROM domains WHERE id = $1";
        let row: Option<(Option<Uuid>, Option<String>)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(domain.0).fetch_optional(p).await)?;
        let (alias_of, catch_all) = row.ok_or(Error::NotFound("domain"))?;
        Ok(DomainRouting {
            alias_of: alias_of.map(DomainId),
            catch_all,
        })
    }

    /// Sets a domain's alias target and catch-all. A domain alias holds no
    /// accounts, aliases or groups of its own, and points at a domain of the
    /// same tenant that is not itself an alias; a catch-all is an account or
    /// group address of the tenant, in this domain or the one it aliases.
    pub async fn set_domain_routing(
        &self,
        actor: &str,
        domain: DomainId,
        routing: DomainRouting,
    ) -> Result<DomainRouting> {
        let current = self
            .domain(domain)
            .await?
            .ok_or(Error::NotFound("domain"))?;
        if let Some(target) = routing.alias_of {
            if target == domain {
                return Err(Error::Invalid(
                    "a domain cannot be an alias of itself".into(),
                ));
            }
            let target = self
                .domain(target)
                .await?
                .filter(|t| t.tenant_id == current.tenant_id)
                .ok_or_else(|| {
                    Error::Invalid("`alias_of` is not a domain of this tenant".into())
                })?;
            if self.domain_routing(target.id).await?.alias_of.is_some() {
                return Err(Error::Invalid(format!(
                    "`{}` is itself a domain alias; point at the domain it stands for",
                    target.name
                )));
            }
            let held = "SELECT (SELECT COUNT(*) FROM accounts WHERE domain_id = $1 AND status <> 'deleted') \
                        + (SELECT COUNT(*) FROM addresses WHERE domain_id = $1)";
            let (n,): (i64,) =
                on_pool!(&self.pool, p => sqlx::query_as(held).bind(domain.0).fetch_one(p).await)?;
            if n > 0 {
                return Err(Error::Conflict(format!(
                    "`{}` holds {n} accounts, aliases or groups: a domain alias holds none",
                    current.name
                )));
            }
            let aliased = "SELECT COUNT(*) FROM domains WHERE alias_of = $1";
            let (n,): (i64,) = on_pool!(&self.pool, p => sqlx::query_as(aliased).bind(domain.0).fetch_one(p).await)?;
            if n > 0 {
                return Err(Error::Conflict(format!(
                    "other domains are aliases of `{}`; it cannot be an alias itself",
                    current.name
                )));
            }
        }
        let catch_all = match &routing.catch_all {
            Some(c) => {
                let address = EmailAddress::parse(c.trim())?;
                let home = match routing.alias_of {
                    Some(t) => t,
                    None => domain,
                };
                let owner = match self.account_by_address(&address).await? {
                    Some(a) if a.status != AccountStatus::Deleted => {
                        Some((a.tenant_id, a.domain_id))
                    }
                    _ => self
                        .address_by_name(&address.to_string())
                        .await?
                        .map(|a| (a.tenant_id, a.domain_id)),
                };
                match owner {
                    Some((tenant, d)) if tenant == current.tenant_id && d == home => {}
                    _ => {
                        return Err(Error::Invalid(format!(
                            "the catch-all `{address}` is not an account or group of this domain"
                        )));
                    }
                }
                Some(address.to_string().to_ascii_lowercase())
            }
            None => None,
        };
        let sql = "UPDATE domains SET alias_of = $2, catch_all = $3 WHERE id = $1";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(sql).bind(domain.0).bind(routing.alias_of.map(|d| d.0)).bind(&catch_all).execute(&mut *tx).await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(current.tenant_id.0),
                action: "domain.routing",
                object_type: "domain",
                object_id: domain.to_string(),
                detail: serde_json::json!({ "alias_of": routing.alias_of, "catch_all": catch_all }),
            });
            tx.commit().await?;
        });
        Ok(DomainRouting {
            alias_of: routing.alias_of,
            catch_all,
        })
    }

    pub async fn forwarding(&self, account: AccountId) -> Result<Forwarding> {
        let sql = "SELECT forward_to, forward_keep FROM accounts WHERE id = $1";
        let row: Option<(Option<String>, bool)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(account.0).fetch_optional(p).await)?;
        let (to, keep) = row.ok_or(Error::NotFound("account"))?;
        Ok(Forwarding { to, keep })
    }

    /// Sets an account's forwarding, where its tenant allows external
    /// forwarding (a hosted destination is always allowed).
    pub async fn set_forwarding(
        &self,
        actor: &str,
        account: &Account,
        forwarding: Forwarding,
    ) -> Result<Forwarding> {
        let to = match &forwarding.to {
            Some(to) => {
                let to = EmailAddress::parse(to.trim())?
                    .to_string()
                    .to_ascii_lowercase();
                if to.eq_ignore_ascii_case(account.address.as_str()) {
                    return Err(Error::Invalid(
                        "an account does not forward to itself".into(),
                    ));
                }
                let hosted = self
                    .hosted_domain(&EmailAddress::parse(&to)?.domain())
                    .await?
                    .is_some();
                let tenant = self
                    .tenant(account.tenant_id)
                    .await?
                    .ok_or(Error::NotFound("tenant"))?;
                if !hosted && !tenant.external_forwarding {
                    return Err(Error::Forbidden(
                        "this organisation does not allow forwarding outside the service".into(),
                    ));
                }
                Some(to)
            }
            None => None,
        };
        let sql = "UPDATE accounts SET forward_to = $2, forward_keep = $3, forward_refused_notice = NULL WHERE id = $1";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(sql).bind(account.id.0).bind(&to).bind(forwarding.keep).execute(&mut *tx).await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(account.tenant_id.0),
                action: "account.forwarding",
                object_type: "account",
                object_id: account.id.to_string(),
                detail: serde_json::json!({ "to": to, "keep": forwarding.keep }),
            });
            tx.commit().await?;
        });
        Ok(Forwarding {
            to,
            keep: forwarding.keep,
        })
    }

    /// Records that the account was told mail to `destination` could not be
    /// forwarded; true the first time for that destination (tell once).
    pub async fn forward_refusal_first_told(
        &self,
        account: AccountId,
        destination: &str,
    ) -> Result<bool> {
        let sql = "UPDATE accounts SET forward_refused_notice = $2 WHERE id = $1 \
                   AND (forward_refused_notice IS NULL OR forward_refused_notice <> $2)";
        let n = on_pool!(&self.pool, p => sqlx::query(sql).bind(account.0).bind(destination).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }
}

const SUBTREE_ADDRESSES: &str = "WITH RECURSIVE subtree(id) AS ( \
       SELECT id FROM tenants WHERE id = $1 \
       UNION ALL SELECT t.id FROM tenants t JOIN subtree s ON t.parent_id = s.id WHERE t.status <> 'closed') \
     SELECT COUNT(*) FROM addresses WHERE tenant_id IN (SELECT id FROM subtree)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_tags_split_once_and_never_leave_an_empty_base() {
        assert_eq!(split_tag("ana+invoices"), ("ana", Some("invoices")));
        assert_eq!(split_tag("ana+a+b"), ("ana", Some("a+b")));
        assert_eq!(split_tag("ana"), ("ana", None));
        assert_eq!(split_tag("+ana"), ("+ana", None));
    }
}
