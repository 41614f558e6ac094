//! Password reset without support staff. A single-use link, valid 30
//! minutes and kept only as a hash, goes to the account's recovery address.
//! The OpenPGP secret key is locked with the password, so a reset either
//! re-locks it (the owner still knows the old password: nothing is lost) or
//! makes a new key pair, and says plainly that mail sealed before stays
//! readable only with the old key, which the link lets the owner download
//! first (still locked with the old password).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tenants::store::{AccountUpdate, Credentials};
use tenants::{AccountStatus, EmailAddress};
use utoipa::ToSchema;
use vault::openpgp::AccountKey;

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
    /// The current secret key, ASCII-armored and still locked with the old
    /// password: keep it to read earlier sealed mail should the old password come back.
    pub secret_key: String,
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
        (status = 422, description = "Weak password", body = ProblemDetails, content_type = "application/problem+json"),
    ), security(()))]
pub async fn reset_password(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Json(body): Json<ResetPassword>,
) -> ApiResult<Json<ResetDone>> {
    let account = live(&state, &token).await?;
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
    let (hash, key) = tokio::task::spawn_blocking(move || {
        let key = match &current {
            Some(current) => AccountKey::relock(&secret, current, &new_password)?,
            None => AccountKey::generate(&uid, &new_password)?,
        };
        Ok::<_, Problem>((tenants::password::hash(&new_password)?, key))
    })
    .await
    .map_err(Problem::internal)??;
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
