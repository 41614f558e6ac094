//! `GET /v1/tenants/{tenant_id}/audit`: the append-only record of changes.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use tenants::{AuditEntry, TenantId};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Admin;
use crate::problem::{ApiResult, Json, Path, ProblemDetails, Query};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// How many entries to return (1 to 200, default 50).
    pub limit: Option<u32>,
    /// Return entries older than this entry id (the `next_before` of the previous page).
    pub before: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub items: Vec<AuditEntry>,
    /// Pass as `before` to get older entries; absent on the last page.
    pub next_before: Option<i64>,
}

/// Read a tenant's audit log
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/audit", tag = "audit", operation_id = "getTenantAudit",
    params(("tenant_id" = TenantId, Path, description = "Tenant id"), AuditQuery),
    responses(
        (status = 200, description = "Audit entries, newest first", body = AuditPage),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn tenant_audit(
    State(state): State<AppState>,
    _admin: Admin,
    Path(tenant_id): Path<TenantId>,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    let limit = query.limit.unwrap_or(50).clamp(1, 200);
    let items = state
        .store
        .audit_log(Some(tenant_id), query.before, limit)
        .await?;
    let next_before = (items.len() as u32 >= limit)
        .then(|| items.last().map(|e| e.id))
        .flatten();
    Ok(Json(AuditPage { items, next_before }))
}
