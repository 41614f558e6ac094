//! Business mail: a tenant's aliases and groups, how its domains route
//! what is not an account (domain aliases, catch-alls), an account's
//! forwarding, and Sieve scripts (the account's own and the tenant-wide
//! one that runs first). Tenant administrators manage addresses, routing
//! and the tenant script; an account's forwarding and scripts are its
//! owner's alone (an administrator cannot send someone's mail elsewhere).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tenants::store::{
    Address, AddressKind, DomainRouting, Forwarding, NewAddress, Posting, SieveOwner, SieveScript,
};
use tenants::{AccountId, DomainId, EmailAddress, TenantId};
use utoipa::ToSchema;
use uuid::Uuid;

use super::device::own;
use crate::AppState;
use crate::auth::{Admin, Principal};
use crate::problem::{ApiResult, Json, Problem, ProblemDetails};

#[derive(Serialize, ToSchema)]
pub struct AddressList {
    pub items: Vec<Address>,
}

/// An alias or a group to create or change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressRequest {
    #[schema(example = "sales@example.com")]
    pub address: String,
    pub kind: AddressKind,
    /// An alias's account.
    pub account_id: Option<AccountId>,
    /// A group's members (accounts of the tenant).
    #[serde(default)]
    pub members: Vec<AccountId>,
    /// Who may write to a group.
    #[serde(default)]
    pub posting: Posting,
    #[serde(default)]
    pub name: String,
}

fn new_address(tenant: TenantId, body: AddressRequest) -> ApiResult<NewAddress> {
    let address = EmailAddress::parse(body.address.trim())
        .map_err(|e| Problem::invalid(format!("`address`: {e}")))?;
    if body.name.chars().count() > 200 {
        return Err(Problem::invalid("`name` is at most 200 characters"));
    }
    Ok(NewAddress {
        tenant_id: tenant,
        address,
        kind: body.kind,
        account_id: body.account_id,
        posting: body.posting,
        name: body.name,
        members: body.members,
    })
}

/// List the tenant's aliases and groups
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/addresses", tag = "addresses", operation_id = "listAddresses",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "Aliases and groups, by address", body = AddressList),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_addresses(
    State(state): State<AppState>,
    _admin: Admin,
    Path(tenant_id): Path<TenantId>,
) -> ApiResult<Json<AddressList>> {
    Ok(Json(AddressList {
        items: state.store.list_addresses(tenant_id).await?,
    }))
}

/// Create an alias or a group
///
/// An alias is another address of one account: mail to it arrives there,
/// and the account may send as it (API and submission port). A group
/// delivers a copy to each member, sealed to each one's own key at their
/// level. The address must be in a verified domain of the tenant (not a
/// domain alias) and free across the instance: an address is exactly one
/// account, alias or group (409 otherwise). A tenant has as many aliases
/// and groups as its package allows accounts.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/addresses", tag = "addresses", operation_id = "createAddress",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    request_body = AddressRequest,
    responses(
        (status = 201, description = "The alias or group", body = Address),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The address is taken, or the package allows no more aliases and groups", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Not a verified domain of the tenant, or accounts not its own", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn create_address(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(tenant_id): Path<TenantId>,
    Json(body): Json<AddressRequest>,
) -> ApiResult<(StatusCode, Json<Address>)> {
    let new = new_address(tenant_id, body)?;
    let created = state.store.create_address(&actor.audit_name(), new).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn load_address(state: &AppState, id: Uuid) -> ApiResult<Address> {
    state
        .store
        .address(id)
        .await?
        .ok_or_else(|| Problem::not_found("address"))
}

/// Get an alias or group
#[utoipa::path(get, path = "/v1/addresses/{address_id}", tag = "addresses", operation_id = "getAddress",
    params(("address_id" = Uuid, Path, description = "Alias or group id")),
    responses(
        (status = 200, description = "The alias or group", body = Address),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such alias or group", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn get_address(
    State(state): State<AppState>,
    _admin: Admin,
    Path(address_id): Path<Uuid>,
) -> ApiResult<Json<Address>> {
    Ok(Json(load_address(&state, address_id).await?))
}

/// Change an alias or group
///
/// A group's name, posting policy and members, or an alias's account. The
/// address and the kind stay (delete and create for another).
#[utoipa::path(put, path = "/v1/addresses/{address_id}", tag = "addresses", operation_id = "updateAddress",
    params(("address_id" = Uuid, Path, description = "Alias or group id")),
    request_body = AddressRequest,
    responses(
        (status = 200, description = "The alias or group", body = Address),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such alias or group", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Another address or kind, or accounts not the tenant's", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn update_address(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(address_id): Path<Uuid>,
    Json(body): Json<AddressRequest>,
) -> ApiResult<Json<Address>> {
    let current = load_address(&state, address_id).await?;
    let new = new_address(current.tenant_id, body)?;
    if !new.address.as_str().eq_ignore_ascii_case(&current.address) {
        return Err(Problem::invalid(
            "the address of an alias or group does not change: delete it and create another",
        ));
    }
    Ok(Json(
        state
            .store
            .update_address(&actor.audit_name(), address_id, new)
            .await?,
    ))
}

/// Delete an alias or group
///
/// A catch-all that pointed to it is turned off.
#[utoipa::path(delete, path = "/v1/addresses/{address_id}", tag = "addresses", operation_id = "deleteAddress",
    params(("address_id" = Uuid, Path, description = "Alias or group id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such alias or group", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn delete_address(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(address_id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    load_address(&state, address_id).await?;
    state
        .store
        .delete_address(&actor.audit_name(), address_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How a domain routes what is not an account
#[utoipa::path(get, path = "/v1/domains/{domain_id}/routing", tag = "domains", operation_id = "getDomainRouting",
    params(("domain_id" = DomainId, Path, description = "Domain id")),
    responses(
        (status = 200, description = "The domain's alias target and catch-all", body = DomainRouting),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such domain", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn get_domain_routing(
    State(state): State<AppState>,
    _admin: Admin,
    Path(domain_id): Path<DomainId>,
) -> ApiResult<Json<DomainRouting>> {
    Ok(Json(state.store.domain_routing(domain_id).await?))
}

/// Set a domain's alias target and catch-all
///
/// `alias_of` makes this domain deliver as another of the tenant's
/// (`info@example.fr` reaches `info@example.com`); it then holds no
/// accounts, aliases or groups of its own. Each is delivered only once
/// both are verified. `catch_all` names an account or group of the domain
/// that gets mail for unknown local parts; off (`null`) by default.
#[utoipa::path(put, path = "/v1/domains/{domain_id}/routing", tag = "domains", operation_id = "setDomainRouting",
    params(("domain_id" = DomainId, Path, description = "Domain id")),
    request_body = DomainRouting,
    responses(
        (status = 200, description = "The routing as kept", body = DomainRouting),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such domain", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The domain holds addresses, or is the target of aliases", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "A target or catch-all not of this tenant's domain", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn set_domain_routing(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(domain_id): Path<DomainId>,
    Json(body): Json<DomainRouting>,
) -> ApiResult<Json<DomainRouting>> {
    Ok(Json(
        state
            .store
            .set_domain_routing(&actor.audit_name(), domain_id, body)
            .await?,
    ))
}

/// The account's forwarding
#[utoipa::path(get, path = "/v1/accounts/{account_id}/forwarding", tag = "accounts", operation_id = "getForwarding",
    params(("account_id" = AccountId, Path, description = "Account id")),
    responses(
        (status = 200, description = "Where the account's mail is forwarded", body = Forwarding),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn get_forwarding(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(account_id): Path<AccountId>,
) -> ApiResult<Json<Forwarding>> {
    own(&actor, account_id, "see its forwarding")?;
    Ok(Json(state.store.forwarding(account_id).await?))
}

/// Forward the account's mail
///
/// Outside the service only where the tenant allows it
/// (`external_forwarding`). At `standard` a forwarded copy keeps the
/// message, with an SRS envelope sender and an ARC set; at `sealed` and
/// above it leaves only encrypted to the destination's key, and without
/// one it stays in the Inbox and the account is told once.
#[utoipa::path(put, path = "/v1/accounts/{account_id}/forwarding", tag = "accounts", operation_id = "setForwarding",
    params(("account_id" = AccountId, Path, description = "Account id")),
    request_body = Forwarding,
    responses(
        (status = 200, description = "The forwarding as kept", body = Forwarding),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the owner, or the tenant does not allow external forwarding", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Not an address, or the account's own", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn set_forwarding(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(account_id): Path<AccountId>,
    Json(body): Json<Forwarding>,
) -> ApiResult<Json<Forwarding>> {
    own(&actor, account_id, "forward its mail")?;
    let account = state
        .store
        .account(account_id)
        .await?
        .ok_or_else(|| Problem::not_found("account"))?;
    Ok(Json(
        state
            .store
            .set_forwarding(&actor.audit_name(), &account, body)
            .await?,
    ))
}

#[derive(Serialize, ToSchema)]
pub struct SieveScriptList {
    pub items: Vec<SieveScript>,
    /// The extensions a script may `require`.
    #[schema(example = json!(["fileinto", "vacation"]))]
    pub extensions: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSieveScript {
    /// The script (RFC 5228).
    pub content: String,
    /// Make it the script that runs (`true`), or none (`false`); unchanged when absent.
    pub active: Option<bool>,
}

fn check_script(state: &AppState, content: &str) -> ApiResult<()> {
    if content.len() > tenants::store::MAX_SIEVE_SCRIPT_BYTES {
        return Err(Problem::invalid(format!(
            "a script is at most {} bytes",
            tenants::store::MAX_SIEVE_SCRIPT_BYTES
        )));
    }
    state
        .inbound
        .scripts()
        .check(content)
        .map(|_| ())
        .map_err(|e| Problem::invalid(format!("the script does not compile: {e}")))
}

fn account_owner(account: &tenants::Account) -> SieveOwner {
    SieveOwner::Account(account.id.0, account.tenant_id)
}

async fn owned_account(
    state: &AppState,
    actor: &tenants::Actor,
    account_id: AccountId,
) -> ApiResult<tenants::Account> {
    own(actor, account_id, "manage its Sieve scripts")?;
    state
        .store
        .account(account_id)
        .await?
        .ok_or_else(|| Problem::not_found("account"))
}

/// List the account's Sieve scripts
#[utoipa::path(get, path = "/v1/accounts/{account_id}/sieve", tag = "sieve", operation_id = "listSieveScripts",
    params(("account_id" = AccountId, Path, description = "Account id")),
    responses(
        (status = 200, description = "The scripts, one of them active at most", body = SieveScriptList),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_sieve_scripts(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(account_id): Path<AccountId>,
) -> ApiResult<Json<SieveScriptList>> {
    let account = owned_account(&state, &actor, account_id).await?;
    Ok(Json(SieveScriptList {
        items: state.store.sieve_scripts(account_owner(&account)).await?,
        extensions: mail::scripts::EXTENSIONS
            .iter()
            .map(|e| (*e).to_owned())
            .collect(),
    }))
}

/// Get one of the account's Sieve scripts
#[utoipa::path(get, path = "/v1/accounts/{account_id}/sieve/{name}", tag = "sieve", operation_id = "getSieveScript",
    params(("account_id" = AccountId, Path, description = "Account id"), ("name" = String, Path, description = "Script name")),
    responses(
        (status = 200, description = "The script", body = SieveScript),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account or script", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn get_sieve_script(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path((account_id, name)): Path<(AccountId, String)>,
) -> ApiResult<Json<SieveScript>> {
    let account = owned_account(&state, &actor, account_id).await?;
    state
        .store
        .sieve_script(account_owner(&account), &name)
        .await?
        .map(Json)
        .ok_or_else(|| Problem::not_found("script"))
}

/// Store a Sieve script
///
/// The script is compiled first: a script that does not compile, or that
/// requires an extension this server does not offer, is refused (422)
/// with the line and column. `active: true` makes it the one that runs on
/// arrival, before the message is sealed.
#[utoipa::path(put, path = "/v1/accounts/{account_id}/sieve/{name}", tag = "sieve", operation_id = "putSieveScript",
    params(("account_id" = AccountId, Path, description = "Account id"), ("name" = String, Path, description = "Script name")),
    request_body = PutSieveScript,
    responses(
        (status = 200, description = "The script as kept", body = SieveScript),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Too many scripts", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "The script does not compile (line and column in `detail`), or a bad name", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn put_sieve_script(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path((account_id, name)): Path<(AccountId, String)>,
    Json(body): Json<PutSieveScript>,
) -> ApiResult<Json<SieveScript>> {
    let account = owned_account(&state, &actor, account_id).await?;
    tenants::store::check_script_name(&name)?;
    check_script(&state, &body.content)?;
    let owner = account_owner(&account);
    let audit = actor.audit_name();
    state
        .store
        .put_sieve_script(&audit, owner, &name, &body.content)
        .await?;
    match body.active {
        Some(true) => {
            state
                .store
                .activate_sieve(&audit, owner, Some(&name))
                .await?
        }
        Some(false) => {
            let active = state.store.active_sieve(owner).await?;
            if active.is_some_and(|s| s.name == name) {
                state.store.activate_sieve(&audit, owner, None).await?;
            }
        }
        None => {}
    }
    state
        .store
        .sieve_script(owner, &name)
        .await?
        .map(Json)
        .ok_or_else(|| Problem::not_found("script"))
}

/// Delete a Sieve script
#[utoipa::path(delete, path = "/v1/accounts/{account_id}/sieve/{name}", tag = "sieve", operation_id = "deleteSieveScript",
    params(("account_id" = AccountId, Path, description = "Account id"), ("name" = String, Path, description = "Script name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account or script", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The script is active", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn delete_sieve_script(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path((account_id, name)): Path<(AccountId, String)>,
) -> ApiResult<StatusCode> {
    let account = owned_account(&state, &actor, account_id).await?;
    state
        .store
        .delete_sieve_script(&actor.audit_name(), account_owner(&account), &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The name the tenant-wide script is kept under.
const TENANT_SCRIPT: &str = "tenant";

/// The tenant-wide Sieve script
///
/// It runs on arrival for every account of the tenant, before the
/// account's own script.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/sieve", tag = "sieve", operation_id = "getTenantSieve",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The tenant's script", body = SieveScript),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant, or no script", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn get_tenant_sieve(
    State(state): State<AppState>,
    _admin: Admin,
    Path(tenant_id): Path<TenantId>,
) -> ApiResult<Json<SieveScript>> {
    state
        .store
        .sieve_script(SieveOwner::Tenant(tenant_id), TENANT_SCRIPT)
        .await?
        .map(Json)
        .ok_or_else(|| Problem::not_found("script"))
}

/// Set the tenant-wide Sieve script
///
/// Checked like an account's (422 with line and column), and active at once.
#[utoipa::path(put, path = "/v1/tenants/{tenant_id}/sieve", tag = "sieve", operation_id = "putTenantSieve",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    request_body = PutSieveScript,
    responses(
        (status = 200, description = "The script as kept", body = SieveScript),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "The script does not compile", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn put_tenant_sieve(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(tenant_id): Path<TenantId>,
    Json(body): Json<PutSieveScript>,
) -> ApiResult<Json<SieveScript>> {
    check_script(&state, &body.content)?;
    let owner = SieveOwner::Tenant(tenant_id);
    let audit = actor.audit_name();
    state
        .store
        .put_sieve_script(&audit, owner, TENANT_SCRIPT, &body.content)
        .await?;
    let active = body.active.unwrap_or(true);
    state
        .store
        .activate_sieve(&audit, owner, active.then_some(TENANT_SCRIPT))
        .await?;
    state
        .store
        .sieve_script(owner, TENANT_SCRIPT)
        .await?
        .map(Json)
        .ok_or_else(|| Problem::not_found("script"))
}

/// Remove the tenant-wide Sieve script
#[utoipa::path(delete, path = "/v1/tenants/{tenant_id}/sieve", tag = "sieve", operation_id = "deleteTenantSieve",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant, or no script", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn delete_tenant_sieve(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(tenant_id): Path<TenantId>,
) -> ApiResult<StatusCode> {
    let owner = SieveOwner::Tenant(tenant_id);
    let audit = actor.audit_name();
    state.store.activate_sieve(&audit, owner, None).await?;
    state
        .store
        .delete_sieve_script(&audit, owner, TENANT_SCRIPT)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
