//! A tenant's administrators take all of its data away: an export job
//! writes the encrypted archive (`caliop tenant import` reads it on another
//! instance), and a link valid once hands it over.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tenants::TenantId;
use tenants::store::{ExportRecipient, NewTenantExport, TenantExport};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Admin;
use crate::problem::{ApiResult, Json, Path, Problem, ProblemDetails};

/// How long a written archive waits for its download.
pub const EXPORT_LINK_HOURS: i64 = 48;

/// How the archive is encrypted: to a passphrase, or to an OpenPGP public key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// At least 12 characters; `caliop tenant import` asks for it.
    #[schema(format = Password)]
    pub passphrase: Option<String>,
    /// An armored OpenPGP public key; the archive opens with its secret key.
    pub openpgp_public_key: Option<String>,
}

/// A queued export, and the link that will hand it over once it is ready.
#[derive(Serialize, ToSchema)]
pub struct ExportCreated {
    pub export: TenantExport,
    /// Shown once, works once (from when the export is `ready` until `expires_at`); no sign-in needed.
    pub download_url: String,
}

#[derive(Serialize, ToSchema)]
pub struct ExportList {
    pub items: Vec<TenantExport>,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct DownloadQuery {
    /// The token of the download link.
    pub token: String,
}

/// Export the whole tenant
///
/// Queues a job that writes everything of the tenant and of the tenants
/// under it (branding, domains with their DKIM keys, accounts with their
/// password hashes and locked OpenPGP keys, messages as stored, folders,
/// flags, the audit log, billing references) to one archive encrypted to
/// the passphrase or OpenPGP key given here. Sealed mail stays sealed.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/export", tag = "tenants", operation_id = "exportTenant",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    request_body = ExportRequest,
    responses(
        (status = 202, description = "Queued; the download link works once it is ready", body = ExportCreated),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "No usable passphrase or key", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn export_tenant(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(tenant_id): Path<TenantId>,
    Json(body): Json<ExportRequest>,
) -> ApiResult<(axum::http::StatusCode, Json<ExportCreated>)> {
    if tenant_id == state.operator_tenant {
        return Err(Problem::invalid(
            "the operator tenant is the instance itself: export its customer tenants instead",
        ));
    }
    let id = Uuid::now_v7();
    let (recipient, secret) = match (body.passphrase, body.openpgp_public_key) {
        (Some(_), Some(_)) => {
            return Err(Problem::invalid(
                "give `passphrase` or `openpgp_public_key`, not both",
            ));
        }
        (None, None) => {
            return Err(Problem::invalid(
                "give a `passphrase` or an `openpgp_public_key` to encrypt the archive to",
            ));
        }
        (Some(passphrase), None) => {
            if passphrase.chars().count() < 12 {
                return Err(Problem::invalid(
                    "`passphrase` must be at least 12 characters long",
                ));
            }
            let sealed = state
                .inbound
                .master()
                .seal_secret(
                    &worker::exports::passphrase_context(id),
                    passphrase.as_bytes(),
                )
                .map_err(Problem::internal)?;
            (ExportRecipient::Passphrase, sealed)
        }
        (None, Some(key)) => {
            vault::openpgp::AccountKey::binary_public_key(&key).map_err(|e| {
                Problem::invalid(format!(
                    "`openpgp_public_key` is not an armored OpenPGP public key: {e}"
                ))
            })?;
            (ExportRecipient::Openpgp, key)
        }
    };
    let (token, token_hash) = billing::signup_token();
    let export = state
        .store
        .create_tenant_export(
            &actor.audit_name(),
            NewTenantExport {
                id,
                tenant_id,
                recipient,
                secret,
                token_hash,
                expires_at: Utc::now() + chrono::Duration::hours(EXPORT_LINK_HOURS),
            },
        )
        .await?;
    worker::enqueue::<worker::Context, _>(&state.store, &worker::ExportTenant { export: id }, None)
        .await?;
    // Whatever becomes of it, the archive and the passphrase are gone by then.
    worker::enqueue::<worker::Context, _>(
        &state.store,
        &worker::ExpireTenantExport { export: id },
        Some(export.expires_at),
    )
    .await?;
    let download_url = format!("/v1/exports/{id}/download?token={token}");
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(ExportCreated {
            export,
            download_url,
        }),
    ))
}

/// The tenant's exports
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/exports", tag = "tenants", operation_id = "listTenantExports",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The latest exports, newest first", body = ExportList),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_exports(
    State(state): State<AppState>,
    Admin(_actor): Admin,
    Path(tenant_id): Path<TenantId>,
) -> ApiResult<Json<ExportList>> {
    Ok(Json(ExportList {
        items: state.store.list_tenant_exports(tenant_id).await?,
    }))
}

/// Download an export (once)
///
/// The link returned when the export was asked for. It works once: the
/// archive is deleted from the server as it is handed over.
#[utoipa::path(get, path = "/v1/exports/{export_id}/download", tag = "tenants", operation_id = "downloadTenantExport",
    params(("export_id" = Uuid, Path, description = "Export id"), DownloadQuery),
    responses(
        (status = 200, description = "The encrypted archive", content_type = "application/octet-stream"),
        (status = 404, description = "No such link: wrong, already used, expired, or not ready yet", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(()))]
pub async fn download_export(
    State(state): State<AppState>,
    Path(export_id): Path<Uuid>,
    Query(query): Query<DownloadQuery>,
) -> ApiResult<impl IntoResponse> {
    let gone =
        || Problem::not_found("export link (wrong, already used, expired, or not ready yet)");
    let path = worker::exports::export_path(&state.config.exports_dir, export_id);
    // Opened before the link is spent: a file this process cannot reach must not cost the link.
    let file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(gone()),
        Err(e) => return Err(Problem::internal(format!("{}: {e}", path.display()))),
    };
    let Some(export) = state
        .store
        .take_tenant_export(export_id, &billing::token_hash(&query.token))
        .await?
    else {
        return Err(gone());
    };
    // The open file stays readable; the archive leaves the server with this download.
    if let Err(e) = tokio::fs::remove_file(&path).await {
        tracing::warn!(export = %export.id, error = %e, "a downloaded export could not be deleted");
    }
    let length = export.bytes.unwrap_or_default();
    let name = format!(
        "attachment; filename=\"tenant-{}.caliop\"",
        export.tenant_id.0
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, name),
            (header::CONTENT_LENGTH, length.to_string()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 16)),
    ))
}
