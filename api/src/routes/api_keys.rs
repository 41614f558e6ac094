//! API keys: how resellers and scripts authenticate. The secret is shown
//! once at creation and stored only as a hash.

use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tenants::{ApiKey, ApiKeyId, NewApiKey, Scope, TenantId};
use utoipa::ToSchema;

use super::auth::api_key_hash;
use super::{PageQuery, Paged};
use crate::AppState;
use crate::auth::Admin;
use crate::problem::{ApiResult, Json, Path, Problem, ProblemDetails, Query};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// What the key is for, e.g. `billing sync`.
    pub name: String,
    /// `read` and `write` by default.
    pub scopes: Option<Vec<Scope>>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub key: ApiKey,
    /// The secret, shown this once. Exchange it at `/v1/auth/token` with `grant_type=api_key`.
    pub secret: String,
}

/// Create an API key
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/api-keys", tag = "api-keys", operation_id = "createApiKey",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    request_body = CreateApiKey,
    responses(
        (status = 201, description = "Created; the secret is in this response only", body = CreatedApiKey),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn create_api_key(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(tenant_id): Path<TenantId>,
    Json(body): Json<CreateApiKey>,
) -> ApiResult<(StatusCode, Json<CreatedApiKey>)> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(Problem::invalid(
            "the key name must be 1 to 200 characters long",
        ));
    }
    let mut scopes = body
        .scopes
        .unwrap_or_else(|| vec![Scope::Read, Scope::Write]);
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(Problem::invalid("an API key needs at least one scope"));
    }
    if scopes.iter().any(|s| !actor.scopes.contains(s)) {
        return Err(Problem::forbidden(
            "an API key cannot have scopes its creator lacks",
        ));
    }
    let secret = format!(
        "cal_{}",
        URL_SAFE_NO_PAD.encode(rand::rng().random::<[u8; 32]>())
    );
    let new = NewApiKey {
        tenant_id,
        name: name.to_owned(),
        prefix: secret[..12].to_owned(),
        secret_hash: api_key_hash(&secret),
        scopes,
    };
    let key = state.store.create_api_key(&actor.audit_name(), new).await?;
    Ok((StatusCode::CREATED, Json(CreatedApiKey { key, secret })))
}

/// List a tenant's API keys
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/api-keys", tag = "api-keys", operation_id = "listApiKeys",
    params(("tenant_id" = TenantId, Path, description = "Tenant id"), PageQuery),
    responses(
        (status = 200, description = "A page of keys, without secrets", body = Paged<ApiKey>),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_api_keys(
    State(state): State<AppState>,
    _admin: Admin,
    Path(tenant_id): Path<TenantId>,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<Paged<ApiKey>>> {
    let page = query.page()?;
    let keys = state.store.list_api_keys(tenant_id, page).await?;
    Ok(Json(Paged::new(keys, page, |k| k.id.0)))
}

/// Revoke an API key
///
/// Tokens already issued for the key stop working at once.
#[utoipa::path(delete, path = "/v1/api-keys/{api_key_id}", tag = "api-keys", operation_id = "revokeApiKey",
    params(("api_key_id" = ApiKeyId, Path, description = "API key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such key", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(api_key_id): Path<ApiKeyId>,
) -> ApiResult<StatusCode> {
    let key = state
        .store
        .api_key(api_key_id)
        .await?
        .ok_or(Problem::not_found("API key"))?;
    if key.revoked_at.is_none() {
        state
            .store
            .revoke_api_key(&actor.audit_name(), &key)
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
