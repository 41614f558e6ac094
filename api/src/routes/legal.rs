//! The legal request register, which only the operator reads and writes;
//! the transparency report made from it, for the whole instance (public,
//! with the warrant canary) and for each tenant (its administrators, or
//! anyone on its hostnames if it chose to publish it).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tenants::store::{LegalRequest, NewLegalRequest, TransparencyReport};
use tenants::{Actor, Role, TenantId};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{PageQuery, Paged};
use crate::AppState;
use crate::auth::Admin;
use crate::problem::{ApiResult, Json, Path, Problem, ProblemDetails, Query};

/// What anyone but the operator is told about the register.
pub const LEGAL_REGISTER_IS_THE_OPERATORS: &str =
    "the legal request register is the operator's: only the operator may read or change it";

fn operator_only(actor: &Actor) -> ApiResult<()> {
    if actor.role == Role::Operator {
        Ok(())
    } else {
        Err(Problem::forbidden(LEGAL_REGISTER_IS_THE_OPERATORS))
    }
}

/// Record a legal request
///
/// The operator records every request received, founded or not. A request
/// without `legal_basis` (a court order reference) is recorded as
/// `refused`; asking for another decision for it is refused (422). The
/// scope's accounts must belong to the scope's tenant.
#[utoipa::path(post, path = "/v1/legal-requests", tag = "legal", operation_id = "createLegalRequest",
    request_body = NewLegalRequest,
    responses(
        (status = 201, description = "Recorded", body = LegalRequest),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the operator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn create_legal_request(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Json(body): Json<NewLegalRequest>,
) -> ApiResult<(StatusCode, Json<LegalRequest>)> {
    operator_only(&actor)?;
    let recorded = state
        .store
        .record_legal_request(&actor.audit_name(), body)
        .await?;
    Ok((StatusCode::CREATED, Json(recorded)))
}

/// List the legal request register
///
/// Every entry, corrections included, in the order they were recorded; an
/// entry with `corrected_by` has been superseded.
#[utoipa::path(get, path = "/v1/legal-requests", tag = "legal", operation_id = "listLegalRequests",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of entries", body = Paged<LegalRequest>),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the operator", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_legal_requests(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<Paged<LegalRequest>>> {
    operator_only(&actor)?;
    let page = query.page()?;
    let entries = state.store.list_legal_requests(page).await?;
    Ok(Json(Paged::new(entries, page, |r| r.id)))
}

/// A legal request as it stands, and how it came to be.
#[derive(Debug, Serialize, ToSchema)]
pub struct LegalRequestHistory {
    /// The newest entry of the request's chain, with the exports made for it.
    pub current: LegalRequest,
    /// Every entry of the chain, the first recorded first, the current one last.
    pub chain: Vec<LegalRequest>,
}

/// Read a legal request
///
/// Any entry's id gives the request as it stands (the newest entry of its
/// chain), every entry of the chain, and the exports made for it.
#[utoipa::path(get, path = "/v1/legal-requests/{request_id}", tag = "legal", operation_id = "getLegalRequest",
    params(("request_id" = Uuid, Path, description = "Id of any entry of the request")),
    responses(
        (status = 200, description = "The request as it stands and its chain", body = LegalRequestHistory),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the operator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such entry", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn get_legal_request(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(request_id): Path<Uuid>,
) -> ApiResult<Json<LegalRequestHistory>> {
    operator_only(&actor)?;
    let current = state
        .store
        .current_legal_request(request_id)
        .await?
        .ok_or_else(|| Problem::not_found("legal request"))?;
    let chain = state.store.legal_request_chain(request_id).await?;
    Ok(Json(LegalRequestHistory { current, chain }))
}

/// Correct a legal request
///
/// The register is append-only: a correction is a new entry, the full
/// corrected text of the request, pointing to the entry it corrects, which
/// must be the newest of its chain (409 otherwise, naming the newer entry).
#[utoipa::path(post, path = "/v1/legal-requests/{request_id}/corrections", tag = "legal", operation_id = "correctLegalRequest",
    params(("request_id" = Uuid, Path, description = "The entry corrected: the newest of its chain")),
    request_body = NewLegalRequest,
    responses(
        (status = 201, description = "The correction, recorded", body = LegalRequest),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the operator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such entry", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "That entry was already corrected", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn correct_legal_request(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(request_id): Path<Uuid>,
    Json(body): Json<NewLegalRequest>,
) -> ApiResult<(StatusCode, Json<LegalRequest>)> {
    operator_only(&actor)?;
    let recorded = state
        .store
        .correct_legal_request(&actor.audit_name(), request_id, body)
        .await?;
    Ok((StatusCode::CREATED, Json(recorded)))
}

/// A tenant's transparency report
///
/// The requests that concerned the tenant, per quarter and country, for its
/// administrators (and its resellers' and the operator's). Requests whose
/// gag order still runs are left out: showing them would tell the tenant.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/transparency", tag = "legal", operation_id = "getTenantTransparency",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The tenant's report", body = TransparencyReport),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn tenant_transparency(
    State(state): State<AppState>,
    _admin: Admin,
    Path(tenant_id): Path<TenantId>,
) -> ApiResult<Json<TransparencyReport>> {
    Ok(Json(state.store.transparency(Some(tenant_id)).await?))
}

/// The instance's warrant canary, with what it takes to check it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CanaryView {
    pub statement: String,
    /// Ed25519 signature of the statement's UTF-8 bytes, base64.
    pub signature: String,
    /// The instance's Ed25519 public key (32 bytes), base64.
    pub public_key: String,
    pub issued_at: DateTime<Utc>,
    pub next_due: DateTime<Utc>,
    /// Whether the next statement is not due yet. Past `next_due` with no new
    /// statement, the canary has lapsed: read that as a warning.
    pub current: bool,
}

/// Whose report a public page shows.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportTenant {
    pub id: TenantId,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PublicTransparency {
    /// The tenant whose own report this is (asked on the hostname of a tenant
    /// that publishes it); absent: the whole instance's report.
    pub tenant: Option<ReportTenant>,
    pub report: TransparencyReport,
    /// The instance's latest warrant canary; absent until the first is issued.
    pub canary: Option<CanaryView>,
}

/// The transparency report
///
/// What courts and authorities asked of this instance, per quarter and
/// country: requests received, refused for lack of a legal basis, contested,
/// complied with, accounts affected, and the messages disclosed by
/// confidentiality level, showing how many were only ciphertext. Next to it,
/// the warrant canary and the key that signs it. On the verified hostname of
/// a tenant that publishes its own report, that tenant's report instead.
#[utoipa::path(get, path = "/v1/public/transparency", tag = "public", operation_id = "getPublicTransparency",
    responses((status = 200, description = "The report for the requested Host, and the warrant canary", body = PublicTransparency)),
    security(()))]
pub async fn public_transparency(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<PublicTransparency>> {
    let host = super::branding::tenant_for_host(&state, &headers).await?;
    let tenant = if host == state.operator_tenant {
        None
    } else {
        state
            .store
            .tenant(host)
            .await?
            .filter(|t| t.publish_transparency)
    };
    let report = state
        .store
        .transparency(tenant.as_ref().map(|t| t.id))
        .await?;
    let canary = state.store.latest_canary().await?.map(|c| CanaryView {
        current: c.next_due > Utc::now(),
        statement: c.statement,
        signature: c.signature,
        public_key: STANDARD.encode(state.instance_public_key),
        issued_at: c.issued_at,
        next_due: c.next_due,
    });
    Ok(Json(PublicTransparency {
        tenant: tenant.map(|t| ReportTenant {
            id: t.id,
            name: t.name,
        }),
        report,
        canary,
    }))
}
