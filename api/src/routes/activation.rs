//! Activation links: accounts an administrator makes (without a password)
//! or resets get a key pair made here and locked at once with a one-time
//! secret only the link carries (`vault::opaque::Activation`); the plain
//! key is forgotten. The person who opens the link sets a password on their
//! device: OPAQUE registration, the key unlocked with the link and locked
//! again with the password's export key. The server never holds the
//! password, nor, after the account's creation, the key.
//!
//! The key is made on the server rather than on the device so that mail
//! arriving before the link is opened is sealed to the account's key
//! already, at every level: nothing waits in clear for an activation.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenants::{Account, AccountId, ActivationKey, TenantId};
use utoipa::ToSchema;
use vault::opaque::Activation;
use vault::openpgp::AccountKey;

use super::device::{KsfView, RegisterStartRequest, RegisterStartResponse};
use crate::AppState;
use crate::auth::{Admin, Principal};
use crate::problem::{ApiResult, Json, Path, Problem, ProblemDetails};

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ActivationLink {
    /// For the account's owner, shown this once: whoever opens it sets the
    /// account's password. The secret is after `#`, which browsers never
    /// send. (`caliop activate LINK` opens it from a terminal.)
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// A key pair for `user_id`, locked for a new activation link (blocking:
/// key generation).
pub fn new_key(user_id: &str) -> ApiResult<(ActivationKey, Activation)> {
    let activation = Activation::new();
    let key = AccountKey::generate_unprotected(user_id)?;
    let locked_secret_key = activation.lock(&key.secret_armored)?;
    Ok((
        ActivationKey {
            fingerprint: key.fingerprint,
            public_key: key.public_armored,
            locked_secret_key,
            token_hash: billing::token_hash(&activation.token()),
            expires_at: Utc::now() + chrono::Duration::days(tenants::store::ACTIVATION_DAYS),
        },
        activation,
    ))
}

/// The link a person opens: the tenant's own host (or this instance's).
pub async fn link(
    state: &AppState,
    tenant: TenantId,
    activation: &Activation,
    expires_at: DateTime<Utc>,
) -> ApiResult<ActivationLink> {
    let host = state
        .store
        .tenant_hostname(tenant)
        .await?
        .unwrap_or_else(|| state.config.mail_hostname.clone());
    Ok(ActivationLink {
        url: format!("https://{host}/admin/activate#{}", activation.link_secret()),
        expires_at,
    })
}

/// The account a live token opens, the token's hash and its expiry.
async fn live(state: &AppState, token: &str) -> ApiResult<(Account, String, DateTime<Utc>)> {
    let hash = billing::token_hash(token);
    let gone = || Problem::not_found("activation (the link is unknown, used or expired)");
    let (id, expires_at) = state.store.activation(&hash).await?.ok_or_else(gone)?;
    let account = state
        .store
        .account(id)
        .await?
        .filter(|a| a.status != tenants::AccountStatus::Deleted)
        .ok_or_else(gone)?;
    Ok((account, hash, expires_at))
}

#[derive(Serialize, ToSchema)]
pub struct ActivationView {
    pub address: String,
    pub display_name: String,
    pub fingerprint: String,
    /// The secret key, locked with the link's secret (`caliop-key-v1:…`,
    /// under the key-encryption key the link's secret derives).
    pub locked_key: String,
    pub expires_at: DateTime<Utc>,
    /// The parameters to stretch the new password with.
    pub ksf: KsfView,
}

/// Open an activation link
///
/// `token` is derived from the link's secret (docs/sign-in.md); the answer
/// holds the key locked with that secret, which only the link opens.
#[utoipa::path(get, path = "/v1/public/activations/{token}", tag = "public", operation_id = "getActivation",
    params(("token" = String, Path, description = "The token the link's secret derives")),
    responses(
        (status = 200, description = "The account to activate, and its locked key", body = ActivationView),
        (status = 404, description = "Unknown, used or expired link", body = ProblemDetails, content_type = "application/problem+json"),
    ), security(()))]
pub async fn get_activation(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> ApiResult<Json<ActivationView>> {
    let (account, _, expires_at) = live(&state, &token).await?;
    Ok(Json(ActivationView {
        address: account.address.to_string(),
        display_name: account.display_name.clone(),
        fingerprint: account.fingerprint.clone(),
        locked_key: account.secret_key.clone(),
        expires_at,
        ksf: state.config.ksf.into(),
    }))
}

/// Set the password: start
///
/// OPAQUE registration for the account the link opens, as a signed-in
/// owner's `opaque/register/start`.
#[utoipa::path(post, path = "/v1/public/activations/{token}/start", tag = "public", operation_id = "startActivation",
    params(("token" = String, Path, description = "The token the link's secret derives")),
    request_body = RegisterStartRequest,
    responses(
        (status = 200, description = "The server's answer", body = RegisterStartResponse),
        (status = 400, description = "Malformed message", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "Unknown, used or expired link", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemDetails, content_type = "application/problem+json"),
    ), security(()))]
pub async fn start_activation(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Json(body): Json<RegisterStartRequest>,
) -> ApiResult<Json<RegisterStartResponse>> {
    let (account, _, _) = live(&state, &token).await?;
    super::device::registration_started(&state, &account, &body).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivationFinish {
    /// OPAQUE's `registrationRecord`, unpadded base64url.
    pub registration_record: String,
    /// The parameters the client stretched with.
    pub ksf: KsfView,
    /// The secret key, unlocked with the link and locked again with the
    /// new password's export key (`caliop-key-v1:…`).
    pub locked_key: String,
}

/// Set the password: finish
///
/// Spends the link; the account signs in through OPAQUE from now on.
#[utoipa::path(post, path = "/v1/public/activations/{token}/finish", tag = "public", operation_id = "finishActivation",
    params(("token" = String, Path, description = "The token the link's secret derives")),
    request_body = ActivationFinish,
    responses(
        (status = 204, description = "Activated: sign in"),
        (status = 400, description = "Malformed message", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "Unknown, used or expired link", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemDetails, content_type = "application/problem+json"),
    ), security(()))]
pub async fn finish_activation(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Json(body): Json<ActivationFinish>,
) -> ApiResult<StatusCode> {
    let (account, hash, _) = live(&state, &token).await?;
    let registration =
        super::device::registration(&body.registration_record, body.ksf, &body.locked_key)?;
    state
        .store
        .open_with_link(
            account.id,
            tenants::store::Link::Activation(&hash),
            tenants::store::DeviceReset {
                registration: &registration,
                locked_key: &body.locked_key,
                new_key: None,
            },
        )
        .await
        .map_err(|e| match e {
            tenants::Error::NotFound(_) => {
                Problem::not_found("activation (the link is unknown, used or expired)")
            }
            other => other.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reset an account to a new activation link
///
/// For an administrator whose user lost their password: a new key pair,
/// locked for a new link (answered once); every sign-in, token and session
/// of the account ends. Mail sealed before opens only with the previous
/// key, which its owner can still fetch (`GET …/previous-secret-key`),
/// locked as it was.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/activation", tag = "accounts", operation_id = "resetToActivation",
    params(("account_id" = AccountId, Path, description = "Account id")),
    responses(
        (status = 201, description = "The new link, shown this once", body = ActivationLink),
        (status = 400, description = "Malformed id", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator of the account's tenant, or the administrator's own account", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The account is deleted", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn reset_to_activation(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(account_id): Path<AccountId>,
) -> ApiResult<(StatusCode, Json<ActivationLink>)> {
    if actor.is_account(account_id) {
        return Err(Problem::forbidden(
            "an administrator changes their own password from their account page, not by a reset",
        ));
    }
    let account = state
        .store
        .account(account_id)
        .await?
        .ok_or(Problem::not_found("account"))?;
    if account.status == tenants::AccountStatus::Deleted {
        return Err(Problem::conflict("the account is deleted"));
    }
    let uid = super::accounts::user_id(&account.display_name, &account.address);
    let (key, activation) = vault::cpu::run(move || new_key(&uid)).await?;
    state
        .store
        .reset_to_activation(&actor.audit_name(), account_id, &key)
        .await?;
    let link = link(&state, account.tenant_id, &activation, key.expires_at).await?;
    Ok((StatusCode::CREATED, Json(link)))
}

/// Fetch the key an administrator's reset replaced
///
/// As it was locked (with the old password's export key, or with the old
/// password for an account reset before it moved to device sign-in): the
/// owner opens it on their device to read mail sealed before the reset.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/previous-secret-key", tag = "accounts", operation_id = "getPreviousSecretKey",
    params(("account_id" = AccountId, Path, description = "Account id")),
    responses(
        (status = 200, description = "The previous key, locked as it was (`caliop-key-v1:…`, or ASCII-armored and passphrase-locked)", body = String, content_type = "text/plain"),
        (status = 400, description = "Malformed id", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account, or no reset replaced its key", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn previous_secret_key(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(account_id): Path<AccountId>,
) -> ApiResult<impl IntoResponse> {
    super::device::own(&actor, account_id, "fetch its previous key")?;
    let key = state
        .store
        .previous_secret_key(account_id)
        .await?
        .ok_or(Problem::not_found(
            "previous key (no reset replaced this account's key)",
        ))?;
    Ok(([(header::CACHE_CONTROL, "no-store")], key))
}
