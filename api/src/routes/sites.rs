//! `GET /v1/sites`: the storage sites that hold dispersed mail, for the
//! operator: health, jurisdiction, what each holds, and how many objects
//! have how many good shards. `GET /v1/jurisdictions`: where they are, for
//! anyone choosing a tenant's policy.

use axum::extract::State;
use serde::Serialize;
use tenants::store::RedundancyCount;
use tenants::{Redundancy, Role};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{Admin, Principal};
use crate::problem::{ApiResult, Json, Problem, ProblemDetails};

#[derive(Serialize, ToSchema)]
pub struct SiteReport {
    pub name: String,
    /// ISO 3166-1 alpha-2 code of the site's jurisdiction.
    #[schema(example = "FR")]
    pub jurisdiction: String,
    /// `local` (a folder) or `s3` (an S3-compatible bucket).
    #[schema(example = "s3")]
    pub backend: String,
    /// Folder, or endpoint and bucket; never credentials.
    pub location: String,
    /// Whether a probe object could be written, read back and deleted just now.
    pub up: bool,
    pub latency_ms: u64,
    /// Why the probe failed.
    pub error: Option<String>,
    /// Shards believed good on this site.
    pub shards: i64,
    pub bytes: i64,
    /// Shards the last look found missing or corrupt (waiting for repair).
    pub unhealthy: i64,
}

#[derive(Serialize, ToSchema)]
pub struct SitesReport {
    /// Redundancy for tenants that did not choose their own.
    pub default_redundancy: Redundancy,
    /// Shards that must be stored before a write succeeds.
    pub write_quorum: usize,
    /// Bounds on a tenant's own redundancy.
    pub min_k: u8,
    pub max_n: u8,
    pub sites: Vec<SiteReport>,
    /// Live objects per count of good shards: `good − k` more sites may be
    /// lost before an object is; below `k` it is unreadable until repaired.
    pub redundancy: Vec<RedundancyCount>,
}

/// Storage sites and their health
#[utoipa::path(get, path = "/v1/sites", tag = "system", operation_id = "listSites",
    responses(
        (status = 200, description = "Every storage site, its health and what it holds", body = SitesReport),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the operator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "No storage sites are configured", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_sites(
    State(state): State<AppState>,
    Admin(actor): Admin,
) -> ApiResult<Json<SitesReport>> {
    if actor.role != Role::Operator {
        return Err(Problem::forbidden(
            "only the operator sees the storage sites",
        ));
    }
    let dispersed = state
        .inbound
        .dispersed()
        .ok_or_else(|| Problem::unavailable("no storage sites are configured on this instance"))?;
    let status = dispersed.status().await.map_err(Problem::internal)?;
    let config = dispersed.config();
    Ok(Json(SitesReport {
        default_redundancy: Redundancy {
            k: status.default.k(),
            n: status.default.n(),
        },
        write_quorum: status.write_quorum,
        min_k: config.min_k,
        max_n: config.max_n,
        sites: status
            .sites
            .into_iter()
            .map(|s| SiteReport {
                name: s.name,
                jurisdiction: s.jurisdiction,
                backend: s.backend.to_owned(),
                location: s.location,
                up: s.up,
                latency_ms: s.latency_ms,
                error: s.error,
                shards: s.usage.shards,
                bytes: s.usage.bytes,
                unhealthy: s.usage.unhealthy,
            })
            .collect(),
        redundancy: status.redundancy,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Jurisdictions {
    /// ISO 3166-1 alpha-2 codes of the storage sites, sorted, each once:
    /// what a tenant's `policy.allowed_jurisdictions` may name.
    #[schema(example = json!(["CH", "DE", "FR"]))]
    pub jurisdictions: Vec<String>,
    /// Redundancy for tenants that did not choose their own.
    pub default_redundancy: Redundancy,
}

/// Where mail may be stored
///
/// The jurisdictions of this instance's storage sites, for choosing a
/// tenant's `allowed_jurisdictions`, and the default redundancy.
#[utoipa::path(get, path = "/v1/jurisdictions", tag = "system", operation_id = "listJurisdictions",
    responses(
        (status = 200, description = "The storage sites' jurisdictions", body = Jurisdictions),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "No storage sites are configured", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_jurisdictions(
    State(state): State<AppState>,
    _principal: Principal,
) -> ApiResult<Json<Jurisdictions>> {
    let dispersed = state
        .inbound
        .dispersed()
        .ok_or_else(|| Problem::unavailable("no storage sites are configured on this instance"))?;
    let mut jurisdictions: Vec<String> = dispersed
        .sites()
        .all()
        .iter()
        .map(|s| s.jurisdiction.clone())
        .collect();
    jurisdictions.sort();
    jurisdictions.dedup();
    let default = dispersed.config().default;
    Ok(Json(Jurisdictions {
        jurisdictions,
        default_redundancy: Redundancy {
            k: default.k(),
            n: default.n(),
        },
    }))
}
