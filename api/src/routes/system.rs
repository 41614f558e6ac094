//! Liveness and readiness, for load balancers. Metrics are served apart,
//! on their own listener (`crate::metrics`).

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::problem::{Json, Problem, ProblemDetails};

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`
    pub status: String,
}

/// Liveness: the process answers
#[utoipa::path(get, path = "/healthz", tag = "system", operation_id = "healthz",
    responses((status = 200, description = "Alive", body = Health)), security(()))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the database answers
#[utoipa::path(get, path = "/readyz", tag = "system", operation_id = "readyz",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The database does not answer", body = ProblemDetails, content_type = "application/problem+json"),
    ), security(()))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, Problem> {
    match state.store.ping().await {
        Ok(()) => Ok(Json(Health {
            status: "ok".into(),
        })),
        Err(e) => {
            tracing::warn!(error = %e, "database not ready");
            Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-ready",
                "the database does not answer",
            ))
        }
    }
}
