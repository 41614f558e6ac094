//! A second factor for the web sign-in: TOTP (RFC 6238: HMAC-SHA-1, six
//! digits, 30-second steps, one step of skew) with ten single-use recovery
//! codes, or WebAuthn passkeys (`passkeys`). Operators and reseller
//! administrators must have one once their grace has passed; everyone else
//! may. Mail clients answer with app passwords instead (made from a
//! signed-in session).
//!
//! [`check`] is the one rule both grants (password and OPAQUE) call,
//! through `auth::account_grant`.

use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenants::{Account, AccountId, Role};
use totp_rs::{Algorithm, Builder, Secret, Totp};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Principal;
use crate::problem::{ApiResult, Json, Problem, ProblemDetails};

fn context(account: AccountId) -> String {
    format!("totp:{account}")
}

fn totp(secret: Vec<u8>) -> ApiResult<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_skew(1)
        .with_secret(Secret::from(secret))
        .build()
        .map_err(|e| Problem::internal(format!("TOTP: {e:?}")))
}

fn now() -> u64 {
    Utc::now().timestamp().max(0) as u64
}

/// What the sign-in brings besides the password.
#[derive(Default)]
pub struct Codes {
    pub totp_code: Option<String>,
    pub recovery_code: Option<String>,
    /// A passkey's assertion, with the challenge its sign-in started with
    /// (none when the sign-in did not come from a page passkeys live on).
    pub passkey: Option<(Option<super::passkeys::Ceremony>, serde_json::Value)>,
}

/// Ten single-use recovery codes (20 characters of base32 each, 100 bits),
/// and their hashes as stored.
pub fn new_recovery_codes() -> (Vec<String>, Vec<String>) {
    let codes: Vec<String> = (0..10).map(|_| tenants::login::random_code(20)).collect();
    let hashes = codes
        .iter()
        .map(|c| tenants::login::typed_secret_hash(c))
        .collect();
    (codes, hashes)
}

/// Whether `account` may have a token now, given `codes`: its second factor
/// when it has one (a TOTP code, taken once, or an unused recovery code),
/// and for operators and reseller administrators, one at all once their
/// grace has passed. Failed codes are counted like failed passwords.
pub async fn check(
    state: &AppState,
    account: &Account,
    role: Role,
    ip: std::net::IpAddr,
    codes: Codes,
) -> ApiResult<()> {
    let factor = state.store.second_factor(account.id).await?;
    if factor.enabled_at.is_none() && !factor.passkeys {
        if matches!(role, Role::Operator | Role::ResellerAdmin) {
            let due = state
                .store
                .second_factor_due(
                    account.id,
                    chrono::Duration::days(state.config.second_factor_grace_days),
                )
                .await?;
            if due < Utc::now() {
                return Err(Problem::forbidden(format!(
                    "operators and reseller administrators need a second factor since {}: \
                     an operator can sign in with `caliop admin operator-token` to help",
                    due.format("%Y-%m-%d")
                )));
            }
        }
        return Ok(());
    }
    let Codes {
        totp_code,
        recovery_code,
        passkey,
    } = codes;
    if totp_code.is_none() && recovery_code.is_none() && passkey.is_none() {
        // The password was right: which factors it has is the owner's to know.
        let mut found = Vec::new();
        if factor.enabled_at.is_some() {
            found.push("totp_code".to_owned());
        }
        if factor.passkeys {
            found.push("passkey".to_owned());
        }
        let detail = format!(
            "this account has a second factor: give {} (or a `recovery_code`)",
            found
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        );
        found.push("recovery_code".to_owned());
        return Err(Problem::unauthorized(detail).with_found(found));
    }
    let attempt = state
        .login_guard
        .reserve(Some(account.address.as_str()), ip)
        .map_err(|t| Problem::too_many_attempts(t.retry_after))?;
    let proven = if let Some((ceremony, response)) = passkey {
        match ceremony {
            Some(ceremony) => {
                super::passkeys::verify_sign_in(state, account.id, ceremony, &response).await?
            }
            None => false,
        }
    } else if let Some(code) = totp_code {
        let Some(sealed) = factor.sealed_secret.filter(|_| factor.enabled_at.is_some()) else {
            drop(attempt);
            return Err(Problem::unauthorized(
                "this account has no authenticator app: give its `passkey` (or a `recovery_code`)",
            ));
        };
        let secret = state
            .inbound
            .master()
            .open_secret(&context(account.id), &sealed)?;
        match totp(secret)?.check(code.trim(), now()) {
            Some(step) => state.store.take_totp_step(account.id, step as i64).await?,
            None => false,
        }
    } else {
        let code = recovery_code.unwrap_or_default();
        state
            .store
            .use_recovery_code(account.id, &tenants::login::typed_secret_hash(&code))
            .await?
    };
    if !proven {
        // The attempt stays counted.
        drop(attempt);
        return Err(Problem::unauthorized(
            "wrong, expired or already used second-factor code",
        ));
    }
    state.login_guard.release(attempt);
    Ok(())
}

#[derive(Serialize, ToSchema)]
pub struct TotpEnrolment {
    /// The shared secret, base32 (RFC 4648), to type into an authenticator.
    pub secret: String,
    /// The same as an `otpauth://` URI (for a QR code).
    pub otpauth_uri: String,
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Start enrolling TOTP
///
/// Makes a new secret (not yet required at sign-in, and any earlier one
/// and its recovery codes replaced): confirm it with a first code.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/totp", tag = "auth", operation_id = "enrolTotp",
    params(("account_id" = AccountId, Path, description = "Account id")),
    responses(
        (status = 200, description = "The secret, shown once", body = TotpEnrolment),
        (status = 400, description = "Malformed id", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn enrol_totp(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(account_id): Path<AccountId>,
) -> ApiResult<Json<TotpEnrolment>> {
    super::device::own(&actor, account_id, "enrol its second factor")?;
    let account = state
        .store
        .account(account_id)
        .await?
        .ok_or(Problem::not_found("account"))?;
    let raw: [u8; 20] = rand::random();
    let sealed = state
        .inbound
        .master()
        .seal_secret(&context(account_id), &raw)?;
    state
        .store
        .enrol_totp(&actor.audit_name(), account_id, &sealed)
        .await?;
    let secret = Secret::from(raw.to_vec()).to_base32();
    let issuer = state.config.mail_hostname.clone();
    Ok(Json(TotpEnrolment {
        otpauth_uri: format!(
            "otpauth://totp/{}:{}?secret={secret}&issuer={}&algorithm=SHA1&digits=6&period=30",
            percent(&issuer),
            percent(account.address.as_str()),
            percent(&issuer)
        ),
        secret,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpConfirmation {
    /// The code the authenticator shows now.
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Ten codes, each good once in place of a TOTP code; shown this once.
    pub recovery_codes: Vec<String>,
    pub enabled_at: DateTime<Utc>,
}

/// Confirm TOTP
///
/// A first code from the authenticator turns the second factor on; the
/// answer holds ten single-use recovery codes, shown once.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/totp/confirm", tag = "auth", operation_id = "confirmTotp",
    params(("account_id" = AccountId, Path, description = "Account id")),
    request_body = TotpConfirmation,
    responses(
        (status = 200, description = "On, with its recovery codes", body = RecoveryCodes),
        (status = 400, description = "Malformed id", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "No enrolment started", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Wrong code, or invalid fields", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn confirm_totp(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(account_id): Path<AccountId>,
    Json(body): Json<TotpConfirmation>,
) -> ApiResult<Json<RecoveryCodes>> {
    super::device::own(&actor, account_id, "enrol its second factor")?;
    let factor = state.store.second_factor(account_id).await?;
    let Some(sealed) = factor.sealed_secret else {
        return Err(Problem::conflict(
            "no TOTP enrolment started: POST /v1/accounts/{account_id}/totp first",
        ));
    };
    if factor.enabled_at.is_some() {
        return Err(Problem::conflict(
            "TOTP is already on; enrol again to replace it",
        ));
    }
    let secret = state
        .inbound
        .master()
        .open_secret(&context(account_id), &sealed)?;
    let Some(step) = totp(secret)?.check(body.code.trim(), now()) else {
        return Err(Problem::invalid(
            "`code` is not the authenticator's current code",
        ));
    };
    let (codes, hashes) = new_recovery_codes();
    state
        .store
        .enable_totp(&actor.audit_name(), account_id, step as i64, &hashes)
        .await?;
    Ok(Json(RecoveryCodes {
        recovery_codes: codes,
        enabled_at: Utc::now(),
    }))
}
