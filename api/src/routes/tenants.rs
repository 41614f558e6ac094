//! Tenants: the operator's and resellers' view of who is hosted, with what
//! package, under which policy; one-step onboarding; and the operator's
//! first administrators, made from the command line.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tenants::{
    Account, Actor, Limits, NewTenant, Policy, Role, Scope, Subject, Tenant, TenantFilter,
    TenantId, TenantKind, TenantStatus, TenantUpdate,
};
use utoipa::{IntoParams, ToSchema};

use super::accounts::{self, AccountView, NewAccountRequest};
use super::domains::{self, DomainView};
use super::{PageQuery, Paged};
use crate::AppState;
use crate::auth::Admin;
use crate::problem::{ApiResult, Json, Path, Problem, ProblemDetails, Query};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub name: String,
    /// `reseller`, `enterprise` or `public` (operator only).
    pub kind: TenantKind,
    /// The reseller this tenant belongs to. A reseller's own tenant by default
    /// when a reseller creates it; none (top level) when the operator does.
    pub parent_id: Option<TenantId>,
    pub limits: Limits,
    pub policy: Option<Policy>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    pub name: Option<String>,
    /// `active` or `suspended`; set by the parent reseller or the operator.
    pub status: Option<TenantStatus>,
    /// Set by the parent reseller or the operator, within the parent's package.
    pub limits: Option<Limits>,
    pub policy: Option<Policy>,
    /// Show the tenant's own transparency report at `/v1/public/transparency`
    /// on its verified hostnames (instead of the instance's).
    pub publish_transparency: Option<bool>,
    /// Scan the tenant's accounts' submissions for spam before they are
    /// queued, as the public tenant's always are (refusals count towards
    /// `filter.outbound_strikes`).
    pub scan_outbound: Option<bool>,
    /// Let the tenant's accounts forward their mail outside the service
    /// (`PUT /v1/accounts/{id}/forwarding`); off by default.
    pub external_forwarding: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TenantListQuery {
    pub parent_id: Option<TenantId>,
    pub kind: Option<TenantKind>,
    pub status: Option<TenantStatus>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OnboardRequest {
    /// The domain to host, e.g. `example.com`.
    pub domain: String,
    /// The first administrator; its address must be in `domain`.
    pub admin: NewAccountRequest,
}

#[derive(Serialize, ToSchema)]
pub struct Onboarded {
    pub domain: DomainView,
    pub admin: AccountView,
    /// The records to publish, starting with the ownership proof.
    pub dns_records: Vec<tenants::dns_records::ExpectedRecord>,
}

fn tenant_name(name: &str) -> Result<String, Problem> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(Problem::invalid(
            "the tenant name must be 1 to 200 characters long",
        ));
    }
    Ok(name.to_owned())
}

async fn ancestry(state: &AppState, id: TenantId) -> ApiResult<Vec<TenantId>> {
    Ok(state.store.ancestry(id).await?)
}

/// Create a tenant
///
/// The operator creates tenants of any kind; a reseller creates enterprise
/// tenants and sub-resellers under itself, within its own package.
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", operation_id = "createTenant",
    request_body = CreateTenant,
    responses(
        (status = 201, description = "Created", body = Tenant),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not allowed to create tenants", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such parent", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Package exceeded", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn create_tenant(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Json(body): Json<CreateTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    let parent_id = match actor.role {
        Role::Operator => body.parent_id,
        Role::ResellerAdmin => {
            let parent = body.parent_id.unwrap_or(actor.tenant_id);
            if !actor.can_see(&ancestry(&state, parent).await?) {
                return Err(Problem::not_found("parent tenant"));
            }
            if !matches!(body.kind, TenantKind::Enterprise | TenantKind::Reseller) {
                return Err(Problem::forbidden(
                    "resellers create enterprise tenants and sub-resellers only",
                ));
            }
            Some(parent)
        }
        Role::TenantAdmin | Role::User => {
            return Err(Problem::forbidden(
                "only the operator and resellers create tenants",
            ));
        }
    };
    if let Some(policy) = &body.policy {
        check_redundancy(&state, policy)?;
    }
    let tenant = state
        .store
        .create_tenant(
            &actor.audit_name(),
            NewTenant {
                name: tenant_name(&body.name)?,
                kind: body.kind,
                parent_id,
                limits: body.limits,
                policy: body.policy.unwrap_or_default(),
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(tenant)))
}

/// List tenants
///
/// The operator sees every tenant; a reseller its own tree; a tenant admin its tenant.
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", operation_id = "listTenants",
    params(TenantListQuery),
    responses(
        (status = 200, description = "A page of tenants", body = Paged<Tenant>),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_tenants(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Query(query): Query<TenantListQuery>,
) -> ApiResult<Json<Paged<Tenant>>> {
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    }
    .page()?;
    let filter = TenantFilter {
        within: (actor.role != Role::Operator).then_some(actor.tenant_id),
        parent_id: query.parent_id,
        kind: query.kind,
        status: query.status,
    };
    let tenants = state.store.list_tenants(&filter, page).await?;
    Ok(Json(Paged::new(tenants, page, |t| t.id.0)))
}

/// Get a tenant
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}", tag = "tenants", operation_id = "getTenant",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The tenant", body = Tenant),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn get_tenant(
    State(state): State<AppState>,
    _admin: Admin,
    Path(tenant_id): Path<TenantId>,
) -> ApiResult<Json<Tenant>> {
    Ok(Json(
        state
            .store
            .tenant(tenant_id)
            .await?
            .ok_or(Problem::not_found("tenant"))?,
    ))
}

fn require_above(actor: &Actor, ancestry: &[TenantId], what: &str) -> ApiResult<()> {
    if actor.is_above(ancestry) {
        Ok(())
    } else {
        Err(Problem::forbidden(format!(
            "only the parent reseller or the operator can change a tenant's {what}"
        )))
    }
}

/// Update a tenant
#[utoipa::path(patch, path = "/v1/tenants/{tenant_id}", tag = "tenants", operation_id = "updateTenant",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    request_body = UpdateTenant,
    responses(
        (status = 200, description = "The updated tenant", body = Tenant),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not allowed to change this", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Package exceeded or state conflict", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn update_tenant(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(tenant_id): Path<TenantId>,
    Json(body): Json<UpdateTenant>,
) -> ApiResult<Json<Tenant>> {
    let ancestry = ancestry(&state, tenant_id).await?;
    if body.status.is_some() {
        require_above(&actor, &ancestry, "status")?;
    }
    if body.limits.is_some() {
        require_above(&actor, &ancestry, "package")?;
    }
    match body.status {
        Some(TenantStatus::Closed) => {
            return Err(Problem::invalid(
                "close a tenant with DELETE /v1/tenants/{tenant_id}",
            ));
        }
        Some(_) if tenant_id == state.operator_tenant => {
            return Err(Problem::conflict("the operator tenant cannot be suspended"));
        }
        _ => {}
    }
    if let Some(policy) = &body.policy {
        check_redundancy(&state, policy)?;
    }
    let update = TenantUpdate {
        name: body.name.as_deref().map(tenant_name).transpose()?,
        status: body.status,
        limits: body.limits,
        policy: body.policy,
        publish_transparency: body.publish_transparency,
        scan_outbound: body.scan_outbound,
        external_forwarding: body.external_forwarding,
    };
    Ok(Json(
        state
            .store
            .update_tenant(&actor.audit_name(), tenant_id, update)
            .await?,
    ))
}

/// Close a tenant
///
/// Closing stops sign-in and frees the tenant's seats in its parent's
/// package; mail and records are kept. A reseller with open children cannot be closed.
#[utoipa::path(delete, path = "/v1/tenants/{tenant_id}", tag = "tenants", operation_id = "closeTenant",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    responses(
        (status = 204, description = "Closed"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not allowed", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The tenant still has open children", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn close_tenant(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(tenant_id): Path<TenantId>,
) -> ApiResult<StatusCode> {
    require_above(&actor, &ancestry(&state, tenant_id).await?, "status")?;
    if tenant_id == state.operator_tenant {
        return Err(Problem::conflict("the operator tenant cannot be closed"));
    }
    let children = state.store.open_children(tenant_id).await?;
    if children > 0 {
        return Err(Problem::conflict(format!(
            "the tenant still has {children} open child tenant(s); close them first"
        )));
    }
    let update = TenantUpdate {
        status: Some(TenantStatus::Closed),
        ..Default::default()
    };
    state
        .store
        .update_tenant(&actor.audit_name(), tenant_id, update)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Onboard a domain and its first administrator in one step
///
/// Creates the domain and an admin account in it, and returns the DNS
/// records to publish. Either both are created or neither.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/onboard", tag = "tenants", operation_id = "onboardTenant",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    request_body = OnboardRequest,
    responses(
        (status = 201, description = "Domain and administrator created", body = Onboarded),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Taken, or package exceeded", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn onboard(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(tenant_id): Path<TenantId>,
    Json(body): Json<OnboardRequest>,
) -> ApiResult<(StatusCode, Json<Onboarded>)> {
    let name = tenants::DomainName::parse(&body.domain)?;
    let admin = NewAccountRequest {
        role: Some(tenants::AccountRole::Admin),
        ..body.admin
    };
    let address = tenants::EmailAddress::parse(&admin.address)?;
    if address.domain() != name {
        return Err(Problem::invalid(format!(
            "the administrator's address must be in `{name}`"
        )));
    }
    if let Some(password) = &admin.password {
        tenants::password::check_strength(password)?;
    }
    let domain = domains::create(&state, &actor, tenant_id, name).await?;
    let (account, activation) = match accounts::create(&state, &actor, tenant_id, admin).await {
        Ok(made) => made,
        Err(problem) => {
            if let Err(e) = state
                .store
                .delete_domain(&actor.audit_name(), &domain)
                .await
            {
                tracing::error!(error = %e, domain = %domain.name, "could not roll back an onboarding");
            }
            return Err(problem);
        }
    };
    let keys = state.store.dkim_keys(domain.id).await?;
    let dns_records = tenants::dns_records::expected_records(
        &domain,
        &keys,
        &state.config.mail_hostname,
        state.store.mta_sts_mode(domain.id).await?,
        state.config.client_ports,
        super::domains::mx_tlsa(&state).await?.as_deref(),
    );
    Ok((
        StatusCode::CREATED,
        Json(Onboarded {
            domain: DomainView::from(&domain),
            admin: AccountView {
                activation,
                ..AccountView::from(&account)
            },
            dns_records,
        }),
    ))
}

/// Creates an administrator of the operator tenant at `address` (which
/// then signs in with the operator's role), hosting its domain in the
/// operator tenant first if no tenant does: the same checks, keys and audit
/// as through the API. An address already taken, or a domain another tenant
/// hosts, is refused and nothing is left behind.
pub async fn create_operator_admin(
    state: &AppState,
    address: &str,
    display_name: Option<String>,
    password: String,
) -> ApiResult<Account> {
    let actor = Actor {
        subject: Subject::Operator,
        tenant_id: state.operator_tenant,
        role: Role::Operator,
        scopes: vec![Scope::Read, Scope::Write],
    };
    let parsed = tenants::EmailAddress::parse(address)?;
    tenants::password::check_strength(&password)?;
    if state.store.account_by_address(&parsed).await?.is_some() {
        return Err(Problem::conflict(format!(
            "the address `{parsed}` is taken"
        )));
    }
    let created = match state.store.domain_by_name(&parsed.domain()).await? {
        Some(domain) if domain.tenant_id == state.operator_tenant => None,
        Some(_) => {
            return Err(Problem::conflict(format!(
                "the domain `{}` is hosted by another tenant; an operator's address must be in a domain of the operator tenant",
                parsed.domain()
            )));
        }
        None => Some(domains::create(state, &actor, state.operator_tenant, parsed.domain()).await?),
    };
    let request = NewAccountRequest {
        address: parsed.to_string(),
        display_name,
        password: Some(password),
        role: Some(tenants::AccountRole::Admin),
        level: None,
        recovery_address: None,
    };
    match accounts::create(state, &actor, state.operator_tenant, request).await {
        Ok((account, _)) => {
            // The operator's own domain: whoever runs the command runs the
            // instance, so it vouches for it (forced, audited) as it could
            // through the API; only a verified domain is hosted.
            if let Some(domain) = state.store.domain(account.domain_id).await?
                && domain.verified_at.is_none()
            {
                state
                    .store
                    .mark_domain_verified(&actor.audit_name(), &domain, "forced")
                    .await?;
            }
            Ok(account)
        }
        Err(problem) => {
            if let Some(domain) = created
                && let Err(e) = state
                    .store
                    .delete_domain(&actor.audit_name(), &domain)
                    .await
            {
                tracing::error!(error = %e, domain = %domain.name, "could not remove the domain of a failed operator account");
            }
            Err(problem)
        }
    }
}

/// A tenant's own redundancy must fit the operator's bounds and the sites.
fn check_redundancy(state: &AppState, policy: &Policy) -> ApiResult<()> {
    let Some(redundancy) = policy.redundancy else {
        return Ok(());
    };
    redundancy.validate()?;
    if let Some(dispersed) = state.inbound.dispersed() {
        dispersed
            .check_redundancy(redundancy)
            .map_err(Problem::invalid)?;
    }
    Ok(())
}
