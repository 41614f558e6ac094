//! `POST /v1/auth/token`: passwords and API keys exchanged for access tokens.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tenants::login::{Door, SignInRefused, sign_in};
use tenants::{Actor, Role, Scope, Subject};
use utoipa::ToSchema;

use crate::AppState;
use crate::problem::{ApiResult, Json, Problem, ProblemDetails};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    Password,
    ApiKey,
}

/// Either `{"grant_type":"password","username","password"}` or `{"grant_type":"api_key","api_key"}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub grant_type: GrantType,
    /// The account's address (password grant).
    pub username: Option<String>,
    #[schema(format = Password)]
    pub password: Option<String>,
    /// The secret shown once when the key was created (api_key grant).
    #[schema(format = Password)]
    pub api_key: Option<String>,
    /// The authenticator's current code, for an account with a second factor.
    pub totp_code: Option<String>,
    /// A single-use recovery code, in place of `totp_code`.
    pub recovery_code: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
    pub role: Role,
    pub tenant_id: tenants::TenantId,
    /// The account signed in, for the password grant.
    pub account_id: Option<tenants::AccountId>,
    pub scopes: Vec<Scope>,
}

/// Hash under which API keys are stored: the secret is random, so one round of SHA-256 suffices.
pub fn api_key_hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Exchange credentials for an access token
///
/// Failed attempts are limited per address and per client IP; past the
/// limit the answer is 429 with `Retry-After`.
#[utoipa::path(
    post, path = "/v1/auth/token", tag = "auth", operation_id = "issueToken",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "A signed access token", body = TokenResponse),
        (status = 401, description = "Wrong credentials", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "Sign-in is unavailable for a moment", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Right password, but the account, its domain (not verified) or its tenant may not sign in", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed attempts", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(())
)]
pub async fn issue_token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(request): Json<TokenRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let ip = peer.ip();
    let (actor, account_id, epoch) = match request.grant_type {
        GrantType::Password => {
            let (Some(username), Some(password), None) =
                (request.username, request.password, &request.api_key)
            else {
                return Err(Problem::invalid(
                    "the password grant needs `username` and `password`, and no `api_key`",
                ));
            };
            // The same sign-in as submission and IMAP: counted before the
            // password is checked, refused alike.
            let account = sign_in(
                &state.store,
                &state.login_guard,
                ip,
                &username,
                password.into(),
                Door::Api,
            )
            .await
            .map_err(|refused| match refused {
                SignInRefused::Invalid => {
                    tracing::info!(%ip, "failed sign-in");
                    Problem::unauthorized("wrong address or password")
                }
                SignInRefused::Disabled(why) => Problem::forbidden(why),
                SignInRefused::TooManyAttempts(t) => too_many(t),
                SignInRefused::Unavailable => {
                    Problem::unavailable("sign-in is unavailable; try again later")
                }
            })?;
            let actor = account_grant(
                &state,
                &account,
                ip,
                super::second_factor::Codes {
                    totp_code: request.totp_code,
                    recovery_code: request.recovery_code,
                    // Passkeys answer a challenge: the device sign-in's.
                    passkey: None,
                },
            )
            .await?;
            (actor, Some(account.id), account.credentials_epoch)
        }
        GrantType::ApiKey => {
            let (Some(secret), None, None) =
                (request.api_key, &request.username, &request.password)
            else {
                return Err(Problem::invalid(
                    "the api_key grant needs `api_key`, and no `username` or `password`",
                ));
            };
            let attempt = state.login_guard.reserve(None, ip).map_err(too_many)?;
            let Some(key) = state.store.use_api_key(&api_key_hash(&secret)).await? else {
                // The slot stays taken: a wrong key is a failed attempt.
                return Err(Problem::unauthorized("unknown or revoked API key"));
            };
            state.login_guard.release(attempt);
            if let Some(why) = state.store.api_key_refusal(&key).await? {
                return Err(Problem::unauthorized(why));
            }
            let tenant = state
                .store
                .active_tenant(key.tenant_id)
                .await?
                .map_err(Problem::forbidden)?;
            let actor = Actor {
                subject: Subject::ApiKey(key.id),
                tenant_id: tenant.id,
                role: Role::of(tenant.kind, tenants::AccountRole::Admin),
                scopes: key.scopes,
            };
            (actor, None, 0)
        }
    };
    Ok(Json(token_response(&state, &actor, account_id, epoch)?))
}

/// Who an account that proved its password acts as, once both grants'
/// common rules hold: its tenant is active, and its second factor (or, for
/// an operator or reseller administrator past the grace, having one) is
/// there. Its role in its tenant, reading and writing.
pub async fn account_grant(
    state: &AppState,
    account: &tenants::Account,
    ip: std::net::IpAddr,
    codes: super::second_factor::Codes,
) -> ApiResult<Actor> {
    let tenant = state
        .store
        .active_tenant(account.tenant_id)
        .await?
        .map_err(Problem::forbidden)?;
    let actor = Actor {
        subject: Subject::Account(account.id),
        tenant_id: tenant.id,
        role: Role::of(tenant.kind, account.role),
        scopes: vec![Scope::Read, Scope::Write],
    };
    super::second_factor::check(state, account, actor.role, ip, codes).await?;
    Ok(actor)
}

/// The access token for `actor`, as every grant answers it.
pub fn token_response(
    state: &AppState,
    actor: &Actor,
    account_id: Option<tenants::AccountId>,
    epoch: i64,
) -> ApiResult<TokenResponse> {
    let ttl = state.tokens.ttl();
    Ok(TokenResponse {
        access_token: state.tokens.issue(actor, epoch, ttl)?,
        token_type: "Bearer".into(),
        expires_in: ttl.as_secs(),
        role: actor.role,
        tenant_id: actor.tenant_id,
        account_id,
        scopes: actor.scopes.clone(),
    })
}

fn too_many(t: tenants::login::TooManyAttempts) -> Problem {
    Problem::too_many_attempts(t.retry_after)
}
