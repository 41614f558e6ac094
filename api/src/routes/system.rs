//! Liveness, readiness and metrics, for load balancers and Prometheus.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
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

/// Prometheus metrics
#[utoipa::path(get, path = "/metrics", tag = "system", operation_id = "metrics",
    responses((status = 200, description = "OpenMetrics text", body = String, content_type = "text/plain")), security(()))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state.metrics.render();
    match state.store.queue_depth().await {
        Ok(depth) => {
            let mut jobs = String::from(
                "# HELP caliop_jobs Jobs in the queue by kind and state.\n# TYPE caliop_jobs gauge\n",
            );
            for d in depth {
                jobs.push_str(&format!(
                    "caliop_jobs{{kind=\"{}\",state=\"{}\"}} {}\n",
                    d.kind, d.state, d.jobs
                ));
            }
            let end = text.rfind("# EOF").unwrap_or(text.len());
            text.insert_str(end, &jobs);
        }
        Err(e) => tracing::warn!(error = %e, "queue depth unavailable for /metrics"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}
