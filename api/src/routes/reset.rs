//! Password reset without support staff. A single-use link, valid 30
//! minutes and kept only as a hash, goes to the account's recovery address.
//! The new password is set on the owner's device (`/start` and `/finish`,
//! OPAQUE registration as at an activation): the device either re-locks the
//! current key (its owner still knows the old password: nothing is lost) or
//! makes a new key pair there and uploads its public half, and mail sealed
//! before stays readable only with the old key, which the link lets the
//! owner download first, and which the account keeps
//! (`previous-secret-key`). An account not yet on device sign-in may still
//! send the new password itself (the older form, which the server locks a
//! key with); one on device sign-in never can.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tenants::store::{AccountUpdate, Credentials};
use tenants::{AccountStatus, EmailAddress};
use utoipa::ToSchema;
use vault::openpgp::AccountKey;

use super::device::{KsfView, RegisterStartRequest, RegisterStartResponse};
use crate::AppState;
use crate::problem::{ApiResult, Json, Path, Problem, ProblemDetails};

const VALID_MINUTES: i64 = 30;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub address: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResetRequested {
    /// The same whether or not the address exists, so nobody learns which do.
    pub detail: String,
}

/// Ask for a password reset
///
/// Sends a link to the account's recovery address, if it has one. The
/// answer is the same whether or not the address exists.
#[utoipa::path(post, path = "/v1/public/password-reset", tag = "public", operation_id = "requestPasswordReset",
    request_body = ResetRequest,
    responses(
        (status = 202, description = "If the account exists and has a recovery address, a link is on its way", body = ResetRequested),
        (status = 429, description = "Too many requests for this address or from this network", body = ProblemDetails, content_type = "application/problem+json"),
    ), security(()))]
pub async fn request_reset(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<ResetRequest>,
) -> ApiResult<(StatusCode, Json<ResetRequested>)> {
    let address = body.address.trim().to_ascii_lowercase();
    // Every request counts, whatever comes of it: the slot is never given back.
    let _counted = state
        .reset_guard
        .reserve(Some(&address), peer.ip())
        .map_err(|t| {
            Problem::rate_limited(
                t.retry_after,
                format!(
                    "too many reset requests; try again in {} seconds",
                    t.retry_after
                ),
            )
        })?;
    let answer = ResetRequested {
        detail: "if this address has an account with a recovery address, a link valid for 30 minutes was sent there".into(),
    };
    let Ok(address) = EmailAddress::parse(&address) else {
        return Ok((StatusCode::ACCEPTED, Json(answer)));
    };
    let Some(account) = state
        .store
        .hosted_account(&address)
        .await?
        .filter(|a| a.status == AccountStatus::Active)
    else {
        return Ok((StatusCode::ACCEPTED, Json(answer)));
    };
    if state.store.recovery_address(account.id).await?.is_none() {
        tracing::info!(account = %account.id, "password reset asked for an account without a recovery address");
        return Ok((StatusCode::ACCEPTED, Json(answer)));
    }
    // A placeholder nobody knows: the worker that sends the mail makes the
    // link's token and stores its hash then (see `worker::PasswordResetMail`).
    let (_, placeholder) = billing::signup_token();
    let expires = chrono::Utc::now() + chrono::Duration::minutes(VALID_MINUTES);
    state
        .store
        .create_password_reset(account.id, &placeholder, expires)
        .await?;
    let host = state
        .store
        .tenant_hostname(account.tenant_id)
        .await?
        .unwrap_or_else(|| state.config.mail_hostname.clone());
    let mail = worker::PasswordResetMail {
        account: account.id,
        reset_page: format!("https://{host}/reset"),
        expires_minutes: VALID_MINUTES,
    };
    worker::enqueue::<worker::Context, _>(&state.store, &mail, None).await?;
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResetExport {
    pub address: String,
    pub fingerprint: String,
    /// The current secret key, still locked with the old password (its
    /// export key, `caliop-key-v1:…`, for an account on device sign-in; the
    /// password itself, ASCII-armored, for an older one): keep it to read
    /// earlier sealed mail should the old password come back.
    pub secret_key: String,
    /// Whether the account signs in on the device: then the new password is
    /// set only through `/start` and `/finish`.
    pub on_device: bool,
}

async fn live(state: &AppState, token: &str) -> ApiResult<tenants::Account> {
    let account = state
        .store
        .password_reset(&billing::token_hash(token))
        .await?
        .ok_or_else(|| {
            Problem::not_found("password reset (the link is unknown, used or expired)")
        })?;
    state
        .store
        .account(account)
        .await?
        .ok_or_else(|| Problem::not_found("account"))
}

/// Before resetting: export the current key
///
/// The account's secret key as it is, still locked with the old password.
#[utoipa::path(get, path = "/v1/public/password-reset/{token}", tag = "public", operation_id = "getPasswordReset",
    params(("token" = String, Path, description = "The token of the reset link")),
    responses(
        (status = 200, description = "The account and its current, locked key", body = ResetExport),
        (status = 404, description = "Unknown, used or expired link", body = ProblemDetails, content_type = "application/problem+json"),
    ), security(()))]
pub async fn export_before_reset(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> ApiResult<Json<ResetExport>> {
    let account = live(&state, &token).await?;
    Ok(Json(ResetExport {
        address: account.address.to_string(),
        fingerprint: account.fingerprint.clone(),
        on_device: account.password_hash.is_empty(),
        secret_key: account.secret_key,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPassword {
    /// The new password (at least 10 characters).
    #[schema(format = Password)]
    pub password: String,
    /// The old password, if known: the key is then re-locked and nothing is lost.
    #[schema(format = Password)]
    pub current_password: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResetDone {
    pub address: String,
    /// `kept` (re-locked with the new password) or `replaced` (a new key pair).
    pub key: String,
    pub fingerprint: String,
    pub detail: String,
}

/// Reset the password
///
/// Spends the link. With the old password, the key is re-locked; without
/// it, a new key pair is made and mail sealed before stays readable only
/// with the old key (export it first).
#[utoipa::path(post, path = "/v1/public/password-reset/{token}", tag = "public", operation_id = "resetPassword",
    params(("token" = String, Path, description = "The token of the reset link")),
    request_body = ResetPassword,
    responses(
        (status = 200, description = "Done: sign in with the new password", body = ResetDone),
        (status = 403, description = "The old password given does not unlock the key", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "Unknown, used or expired link", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The account signs in on its device: the password is set there", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Weak password", body = ProblemDetails, content_type = "application/problem+json"),
    ), security(()))]
pub async fn reset_password(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Json(body): Json<ResetPassword>,
) -> ApiResult<Json<ResetDone>> {
    let account = live(&state, &token).await?;
    if account.password_hash.is_empty() {
        return Err(Problem::conflict(
            "this account signs in on its device: set the new password there, through \
             POST /v1/public/password-reset/{token}/start and /finish (caliop password reset LINK)",
        ));
    }
    tenants::password::check_strength(&body.password)?;
    let secret = account.secret_key.clone();
    let uid = format!("{} <{}>", account.display_name, account.address);
    let (new_password, current) = (body.password, body.current_password);
    if let Some(current) = &current
        && !AccountKey::unlocks(&secret, current)
    {
        return Err(Problem::forbidden(
            "the old password given does not unlock the key; leave it out to make a new key",
        ));
    }
    let kept = current.is_some();
    let (hash, key) = vault::cpu::run(move || {
        let key = match &current {
            Some(current) => AccountKey::relock(&secret, current, &new_password)?,
            None => AccountKey::generate(&uid, &new_password)?,
        };
        Ok::<_, Problem>((tenants::password::hash(&new_password)?, key))
    })
    .await?;
    // Spent only now, so a weak password or a wrong old one leaves the link usable.
    if !state
        .store
        .spend_password_reset(&billing::token_hash(&token))
        .await?
    {
        return Err(Problem::not_found(
            "password reset (the link is unknown, used or expired)",
        ));
    }
    let credentials = Credentials {
        password_hash: hash,
        fingerprint: key.fingerprint.clone(),
        public_key: key.public_armored,
        secret_key: key.secret_armored,
    };
    let update = AccountUpdate {
        credentials: Some(credentials),
        ..AccountUpdate::default()
    };
    state
        .store
        .update_account("password-reset", account.id, update)
        .await?;
    let detail = if kept {
        "the password is changed and the key re-locked with it: all mail stays readable".to_owned()
    } else {
        "the password is changed and a new key pair was made: mail sealed before this reset stays readable only with the previous key (export it from this link's GET before using it, or from a backup) and its old password".to_owned()
    };
    Ok(Json(ResetDone {
        address: account.address.to_string(),
        key: if kept { "kept" } else { "replaced" }.into(),
        fingerprint: key.fingerprint,
        detail,
    }))
}

/// Set the new password on the device: start
///
/// OPAQUE registration for the account the link opens, as at an activation.
#[utoipa::path(post, path = "/v1/public/password-reset/{token}/start", tag = "public", operation_id = "startDeviceReset",
    params(("token" = String, Path, description = "The token of the reset link")),
    request_body = RegisterStartRequest,
    responses(
        (status = 200, description = "The server's answer", body = RegisterStartResponse),
        (status = 400, description = "Malformed message", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "Unknown, used or expired link", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemDetails, content_type = "application/problem+json"),
    ), security(()))]
pub async fn start_device_reset(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Json(body): Json<RegisterStartRequest>,
) -> ApiResult<Json<RegisterStartResponse>> {
    let account = live(&state, &token).await?;
    super::device::registration_started(&state, &account, &body).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceResetFinish {
    /// OPAQUE's `registrationRecord`, unpadded base64url.
    pub registration_record: String,
    /// The parameters the client stretched with.
    pub ksf: KsfView,
    /// The secret key (the current one unlocked with the old password, or
    /// one made on the device) locked with the new export key
    /// (`caliop-key-v1:…`).
    pub locked_key: String,
    /// For a key pair made on the device: its public half, ASCII-armored
    /// (self-signed, a user ID with the account's address, an encryption
    /// subkey). Absent when the device re-locked the current key.
    pub public_key: Option<String>,
}

/// Set the new password on the device: finish
///
/// Spends the link. The key blob it replaces stays fetchable by the owner
/// (`GET /v1/accounts/{id}/previous-secret-key`); every sign-in ends.
#[utoipa::path(post, path = "/v1/public/password-reset/{token}/finish", tag = "public", operation_id = "finishDeviceReset",
    params(("token" = String, Path, description = "The token of the reset link")),
    request_body = DeviceResetFinish,
    responses(
        (status = 200, description = "Done: sign in with the new password", body = ResetDone),
        (status = 400, description = "Malformed message", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "Unknown, used or expired link", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or a public key that is not the account's", body = ProblemDetails, content_type = "application/problem+json"),
    ), security(()))]
pub async fn finish_device_reset(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Json(body): Json<DeviceResetFinish>,
) -> ApiResult<Json<ResetDone>> {
    let account = live(&state, &token).await?;
    let registration =
        super::device::registration(&body.registration_record, body.ksf, &body.locked_key)?;
    let new_key = match &body.public_key {
        Some(armored) => Some(
            AccountKey::accept_own(armored, account.address.as_str()).map_err(|e| {
                Problem::invalid(format!("`public_key` is not a key for this account: {e}"))
            })?,
        ),
        None => None,
    };
    state
        .store
        .open_with_link(
            account.id,
            tenants::store::Link::Reset(&billing::token_hash(&token)),
            tenants::store::DeviceReset {
                registration: &registration,
                locked_key: &body.locked_key,
                new_key: new_key.as_ref().map(|(f, k)| (f.as_str(), k.as_str())),
            },
        )
        .await
        .map_err(|e| match e {
            tenants::Error::NotFound(_) => {
                Problem::not_found("password reset (the link is unknown, used or expired)")
            }
            other => other.into(),
        })?;
    let kept = new_key.is_none();
    Ok(Json(ResetDone {
        address: account.address.to_string(),
        key: if kept { "kept" } else { "replaced" }.into(),
        fingerprint: new_key.map_or(account.fingerprint, |(f, _)| f),
        detail: if kept {
            "the password is changed and the key re-locked with it on the device: all mail stays readable".to_owned()
        } else {
            "the password is changed and a new key pair was made on the device: mail sealed before this reset stays readable only with the previous key (GET /v1/accounts/{id}/previous-secret-key) and its old password".to_owned()
        },
    }))
}
