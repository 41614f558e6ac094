//! A tenant's administrators take all of its data away: an export job
//! writes the encrypted archive (`caliop tenant import` reads it on another
//! instance), and a link valid once hands it over.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use tenants::login::{Door, SignInRefused, sign_in};
use tenants::store::{ExportRecipient, NewTenantExport, TenantExport};
use tenants::{Actor, Role, Subject, TenantId};
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
    /// The signed-in administrator's own password, given again: a token
    /// alone (or an API key) does not take a whole organisation's data away.
    #[schema(format = Password)]
    pub password: Option<String>,
    /// At least 12 characters; `caliop tenant import` asks for it.
    #[schema(format = Password)]
    pub passphrase: Option<String>,
    /// An armored OpenPGP public key; the archive opens with its secret key.
    pub openpgp_public_key: Option<String>,
    /// For an administrator on device sign-in, in place of `password`: a
    /// sign-in with their password, started at
    /// `/v1/auth/opaque/login/start` and finished here.
    pub current_password_proof: Option<super::device::LoginFinishRequest>,
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
/// the passphrase or OpenPGP key given here.
///
/// **Who can read what.** Mail at `standard` is encrypted at rest under the
/// organisation's data key, which the archive carries: whoever holds the
/// archive (the organisation's administrators, and the operator, who can
/// export any tenant) can read it. Mail at `sealed` and above stays sealed
/// to each user's own key, which the archive holds only locked with the
/// user's password: neither the organisation nor the operator can read it.
///
/// Only the tenant's own administrators, signed in with their password and
/// giving it again in `password`, or the operator, may start one; API keys
/// cannot. Every administrator of the tenant is told by mail. One export
/// per tenant runs at a time, and archives waiting for their download share
/// an instance-wide disk budget.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/export", tag = "tenants", operation_id = "exportTenant",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    request_body = ExportRequest,
    responses(
        (status = 202, description = "Queued; the download link works once it is ready", body = ExportCreated),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not this tenant's own administrator or the operator, an API key, or a wrong password", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "An export of this tenant is already queued or running, or the instance's export disk budget is used up", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "No usable passphrase or key, or no password", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Too many wrong passwords", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn export_tenant(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Admin(actor): Admin,
    Path(tenant_id): Path<TenantId>,
    Json(body): Json<ExportRequest>,
) -> ApiResult<(axum::http::StatusCode, Json<ExportCreated>)> {
    if tenant_id == state.operator_tenant {
        return Err(Problem::invalid(
            "the operator tenant is the instance itself: export its customer tenants instead",
        ));
    }
    confirm_exporter(
        &state,
        peer,
        &actor,
        tenant_id,
        body.password,
        body.current_password_proof.as_ref(),
    )
    .await?;
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
            state.config.exports_max_bytes,
        )
        .await?;
    announce_export(&state, &actor, tenant_id).await;
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

/// Who may take a whole organisation's data away: its own administrators,
/// signed in with a password and giving it again, or the operator. Not a
/// reseller above it, not an API key, not a token alone.
async fn confirm_exporter(
    state: &AppState,
    peer: SocketAddr,
    actor: &Actor,
    tenant_id: TenantId,
    password: Option<String>,
    proof: Option<&super::device::LoginFinishRequest>,
) -> ApiResult<()> {
    if actor.role != Role::Operator && actor.tenant_id != tenant_id {
        return Err(Problem::forbidden(
            "only the tenant's own administrators or the operator may export it",
        ));
    }
    let account = match actor.subject {
        // The operator's token minted on the machine itself: no password to ask.
        Subject::Operator => return Ok(()),
        Subject::ApiKey(_) => {
            return Err(Problem::forbidden(
                "an API key cannot export a tenant: an administrator must, with their password",
            ));
        }
        Subject::Account(id) => state
            .store
            .account(id)
            .await?
            .ok_or_else(|| Problem::unauthorized("the signed-in account is gone"))?,
    };
    if let Some(proof) = proof {
        return super::device::verify_current_password(state, account.id, proof);
    }
    let password = password.ok_or_else(|| {
        Problem::invalid(
            "give your own password again in `password` (or, on device sign-in, \
             `current_password_proof`) to export the tenant",
        )
    })?;
    match sign_in(
        &state.store,
        &state.login_guard,
        peer.ip(),
        account.address.as_str(),
        password.into(),
        Door::Api,
    )
    .await
    {
        Ok(confirmed) if confirmed.id == account.id => Ok(()),
        Ok(_) | Err(SignInRefused::Invalid) => Err(Problem::forbidden(
            "the password given is not this administrator's",
        )),
        Err(SignInRefused::Disabled(why)) => Err(Problem::forbidden(why)),
        Err(SignInRefused::TooManyAttempts(t)) => Err(Problem::too_many_attempts(t.retry_after)),
        Err(SignInRefused::Unavailable) => Err(Problem::unavailable(
            "the password cannot be checked right now; try again later",
        )),
    }
}

/// Tells every administrator of the tenant that an export was started, and by whom.
async fn announce_export(state: &AppState, actor: &Actor, tenant_id: TenantId) {
    let admins = match state.store.tenant_admins(tenant_id).await {
        Ok(admins) => admins,
        Err(e) => {
            tracing::error!(error = %e, "the administrators to tell of an export are unknown");
            return;
        }
    };
    let who = match actor.subject {
        Subject::Account(id) => match state.store.account(id).await {
            Ok(Some(a)) if a.tenant_id == tenant_id => a.address.to_string(),
            _ => "the instance's operator".to_owned(),
        },
        Subject::Operator => "the instance's operator".to_owned(),
        Subject::ApiKey(_) => "an API key".to_owned(),
    };
    let body = format!(
        "An export of all your organisation's data was started by {who}.\n\n\
         It holds every account, folder and message as stored. Mail at the `standard` level can be\n\
         read by whoever holds the archive; mail at `sealed` and above stays sealed to each user's key.\n\n\
         If you did not expect this, tell your other administrators and your provider now."
    );
    for admin in admins {
        if let Err(e) = state
            .outbound
            .notify_local(
                &admin,
                "An export of your organisation's data was started",
                &body,
            )
            .await
        {
            tracing::warn!(error = %e, "an administrator could not be told of an export");
        }
    }
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
