//! `GET /v1/certificates`: the TLS certificates ACME obtained for this
//! instance (names, issuer, expiry, the last error), for the operator;
//! `POST /v1/certificates/{certificate_name}/renew` orders one again at the next run.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use tenants::Role;
use tenants::store::CertificateView;

use crate::AppState;
use crate::auth::Admin;
use crate::problem::{ApiResult, Json, Problem, ProblemDetails};

fn operator_only(role: Role) -> ApiResult<()> {
    if role != Role::Operator {
        return Err(Problem::forbidden(
            "only the operator sees the instance's certificates",
        ));
    }
    Ok(())
}

/// The instance's certificates
#[utoipa::path(get, path = "/v1/certificates", tag = "system", operation_id = "listCertificates",
    responses(
        (status = 200, description = "Every certificate, by name", body = Vec<CertificateView>),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the operator", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_certificates(
    State(state): State<AppState>,
    Admin(actor): Admin,
) -> ApiResult<Json<Vec<CertificateView>>> {
    operator_only(actor.role)?;
    let certificates = state.store.certificates().await?;
    Ok(Json(
        certificates.iter().map(CertificateView::from).collect(),
    ))
}

/// Renew a certificate now
///
/// The certificate is ordered again at the next run of the certificate job
/// (within minutes), whatever its expiry; the one in use stays until the
/// new one is issued.
#[utoipa::path(post, path = "/v1/certificates/{certificate_name}/renew", tag = "system", operation_id = "renewCertificate",
    params(("certificate_name" = String, Path, description = "The certificate's first name")),
    responses(
        (status = 202, description = "It will be ordered again"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the operator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such certificate", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn renew_certificate(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    operator_only(actor.role)?;
    if !state
        .store
        .force_certificate_renewal(&actor.audit_name(), &name)
        .await?
    {
        return Err(Problem::not_found("certificate"));
    }
    Ok(StatusCode::ACCEPTED)
}
