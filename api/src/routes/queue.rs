//! `GET /v1/queue`: what the background job queue holds, for operators.

use axum::extract::State;
use serde::Serialize;
use tenants::{DeadJob, QueueDepth, Role};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Admin;
use crate::problem::{ApiResult, Json, Problem, ProblemDetails};

#[derive(Serialize, ToSchema)]
pub struct QueueReport {
    /// Jobs per kind and state (`queued`, `running`, `done`, `dead`).
    pub depth: Vec<QueueDepth>,
    /// The 50 most recent dead letters, with their last error.
    pub dead_letters: Vec<DeadJob>,
}

/// The job queue: depth and dead letters
#[utoipa::path(get, path = "/v1/queue", tag = "system", operation_id = "getQueue",
    responses(
        (status = 200, description = "Queue depth and dead letters", body = QueueReport),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the operator", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn queue(
    State(state): State<AppState>,
    Admin(actor): Admin,
) -> ApiResult<Json<QueueReport>> {
    if actor.role != Role::Operator {
        return Err(Problem::forbidden("only the operator sees the job queue"));
    }
    Ok(Json(QueueReport {
        depth: state.store.queue_depth().await?,
        dead_letters: state.store.dead_jobs(50).await?,
    }))
}
