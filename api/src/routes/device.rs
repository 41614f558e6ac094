//! Sign-in without the password reaching the server (OPAQUE, RFC 9807),
//! the secret key locked on the device, and app passwords for mail clients.
//! The exact construction is in `vault::opaque`; the flow in
//! `docs/sign-in.md`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use tenants::login::{Attempt, Door};
use tenants::{AccountId, Actor, AppPassword, EmailAddress, OpaqueRegistration};
use utoipa::ToSchema;
use uuid::Uuid;
use vault::opaque::KsfParams;

use super::auth::TokenResponse;
use crate::AppState;
use crate::auth::Principal;
use crate::problem::{ApiResult, Json, Problem, ProblemDetails};

/// How long a client has between the two sign-in messages.
const LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// Sign-ins between their first and last message, in this process (a load
/// balancer keeps a client on one node for the two requests, or the
/// client starts again).
#[derive(Default)]
pub struct PendingLogins(Mutex<HashMap<Uuid, Pending>>);

struct Pending {
    account: Option<AccountId>,
    state: Vec<u8>,
    attempt: Attempt,
    started: Instant,
    /// The passkey challenge offered with it, from a page passkeys live on.
    passkey: Option<super::passkeys::Ceremony>,
}

impl PendingLogins {
    fn put(&self, id: Uuid, pending: Pending) {
        let mut all = self.0.lock().expect("pending sign-ins");
        // What was never finished counts as failed (its attempt is dropped unsettled).
        all.retain(|_, p| p.started.elapsed() < LOGIN_WINDOW);
        all.insert(id, pending);
    }

    fn take(&self, id: Uuid) -> Option<Pending> {
        let mut all = self.0.lock().expect("pending sign-ins");
        all.remove(&id)
            .filter(|p| p.started.elapsed() < LOGIN_WINDOW)
    }
}

/// Argon2id parameters the client stretches the password with.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KsfView {
    /// Passes over memory (Argon2's t), at least 1.
    pub iterations: u32,
    /// Memory in KiB (Argon2's m), at least 256.
    pub memory_kib: u32,
    /// Lanes (Argon2's p), 1 to 16.
    pub parallelism: u32,
}

impl From<KsfParams> for KsfView {
    fn from(k: KsfParams) -> Self {
        KsfView {
            iterations: k.iterations,
            memory_kib: k.memory_kib,
            parallelism: k.parallelism,
        }
    }
}

impl KsfView {
    pub(super) fn params(self) -> ApiResult<KsfParams> {
        if self.iterations == 0 || self.memory_kib < 256 || !(1..=16).contains(&self.parallelism) {
            return Err(Problem::invalid(
                "`ksf` needs iterations ≥ 1, memory_kib ≥ 256 and parallelism from 1 to 16",
            ));
        }
        Ok(KsfParams {
            iterations: self.iterations,
            memory_kib: self.memory_kib,
            parallelism: self.parallelism,
        })
    }
}

/// Tenants' OPAQUE secrets, opened once per process: they never change once
/// written, and every sign-in needs them.
#[derive(Default)]
pub struct OpaqueSetups(Mutex<HashMap<tenants::TenantId, Arc<Vec<u8>>>>);

/// The tenant's OPAQUE secrets, made and sealed the first time.
async fn setup(state: &AppState, tenant: tenants::TenantId) -> ApiResult<Arc<Vec<u8>>> {
    if let Some(known) = state.opaque_setups.0.lock().expect("setups").get(&tenant) {
        return Ok(known.clone());
    }
    let master = state.inbound.master();
    let context = vault::opaque::setup_context(&tenant);
    let sealed = state
        .store
        .opaque_setup(tenant, || {
            master
                .seal_secret(&context, &vault::opaque::new_server_setup())
                .map_err(|e| tenants::Error::Internal(e.to_string()))
        })
        .await?;
    let opened = Arc::new(master.open_secret(&context, &sealed)?);
    state
        .opaque_setups
        .0
        .lock()
        .expect("setups")
        .insert(tenant, opened.clone());
    Ok(opened)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginStartRequest {
    /// The account's address.
    pub username: String,
    /// OPAQUE `KE1` (the client's `startLoginRequest`), unpadded base64url.
    pub credential_request: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoginStartResponse {
    /// Names this sign-in in its second message (valid 60 seconds).
    pub login_id: Uuid,
    /// OPAQUE `KE2` (the server's `loginResponse`), unpadded base64url.
    pub credential_response: String,
    /// The parameters to stretch the password with before finishing.
    pub ksf: KsfView,
    /// For a page on a host passkeys live on (its `Origin`): a WebAuthn
    /// request (`PublicKeyCredentialRequestOptionsJSON`, discoverable, no
    /// credential list) to answer at `/login/finish` as `passkey` when the
    /// account asks for its second factor. The same for every address.
    #[schema(value_type = Option<Object>)]
    pub passkey: Option<serde_json::Value>,
}

/// Start a sign-in (OPAQUE)
///
/// The first of two messages; the password never leaves the device. Counted
/// like every sign-in (per address and per network) before anything is
/// checked. An unknown address gets an answer of the same shape. An account
/// created before device sign-in answers 409: sign in once with the
/// password grant, then register (its key moves to the device then).
#[utoipa::path(post, path = "/v1/auth/opaque/login/start", tag = "auth", operation_id = "startOpaqueLogin",
    request_body = LoginStartRequest,
    responses(
        (status = 200, description = "The server's answer", body = LoginStartResponse),
        (status = 409, description = "The account still signs in with the password grant, once, to move to device sign-in", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 400, description = "Malformed message", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed attempts", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(())
)]
pub async fn login_start(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(request): Json<LoginStartRequest>,
) -> ApiResult<Json<LoginStartResponse>> {
    let address = EmailAddress::parse(&request.username)
        .map_err(|_| Problem::invalid("`username` is not an address"))?;
    let attempt = state
        .login_guard
        .reserve(Some(address.as_str()), peer.ip())
        .map_err(|t| Problem::too_many_attempts(t.retry_after))?;
    let account = state.store.account_by_address(&address).await?;
    let registration = match &account {
        Some(a) => state.store.opaque_registration(a.id).await?,
        None => None,
    };
    let (tenant, credential_id, record, ksf, account) = match (account, registration) {
        (Some(a), Some(r)) => {
            let ksf: KsfParams = serde_json::from_str(&r.ksf)
                .map_err(|e| Problem::internal(format!("stored ksf: {e}")))?;
            (
                a.tenant_id,
                a.id.to_string(),
                Some(r.record),
                ksf,
                Some(a.id),
            )
        }
        (Some(a), None) if !a.password_hash.is_empty() => {
            state.login_guard.release(attempt);
            return Err(Problem::conflict(
                "this account has not moved to device sign-in yet: sign in once with the password grant, \
                 then register (POST /v1/accounts/{account_id}/opaque/register/start)",
            ));
        }
        // Unknown (or without any credential): a fake under the operator's secrets.
        _ => (
            state.operator_tenant,
            address.as_str().to_owned(),
            None,
            KsfParams::default(),
            None,
        ),
    };
    let setup = setup(&state, tenant).await?;
    let record = record.map(|r| base64_record(&r)).transpose()?;
    let (response, server_state) = vault::opaque::login_start(
        &setup,
        record.as_deref(),
        &request.credential_request,
        credential_id.as_bytes(),
    )
    .map_err(|e| Problem::bad_request(e.to_string()))?;
    let (passkey, ceremony) = match super::passkeys::relying_party(&state, &headers).await? {
        Some(party) => {
            let (options, ceremony) = super::passkeys::sign_in_challenge(party)?;
            (Some(options), Some(ceremony))
        }
        None => (None, None),
    };
    let login_id = Uuid::now_v7();
    state.pending_logins.put(
        login_id,
        Pending {
            account,
            state: server_state,
            attempt,
            started: Instant::now(),
            passkey: ceremony,
        },
    );
    Ok(Json(LoginStartResponse {
        login_id,
        credential_response: response,
        ksf: ksf.into(),
        passkey,
    }))
}

fn base64_record(record: &str) -> ApiResult<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(record)
        .map_err(|e| Problem::internal(format!("stored record: {e}")))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginFinishRequest {
    pub login_id: Uuid,
    /// OPAQUE `KE3` (the client's `finishLoginRequest`), unpadded base64url.
    pub credential_finalization: String,
    /// The authenticator's current code, for an account with a second factor.
    pub totp_code: Option<String>,
    /// A single-use recovery code, in place of `totp_code`.
    pub recovery_code: Option<String>,
    /// A passkey's answer to the `passkey` request of `/login/start`: the
    /// assertion's `toJSON()` (`AuthenticationResponseJSON`), in place of
    /// `totp_code`.
    #[schema(value_type = Option<Object>)]
    pub passkey: Option<serde_json::Value>,
}

/// Finish a sign-in (OPAQUE)
///
/// The second message: the client proves it derived the same keys, which
/// only the right password allows; answered with an access token like the
/// password grant's.
#[utoipa::path(post, path = "/v1/auth/opaque/login/finish", tag = "auth", operation_id = "finishOpaqueLogin",
    request_body = LoginFinishRequest,
    responses(
        (status = 200, description = "A signed access token", body = TokenResponse),
        (status = 401, description = "Wrong address or password, the sign-in expired, or a second-factor code is missing or wrong", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "The account, its domain or its tenant may not sign in", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 400, description = "Malformed message", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(())
)]
pub async fn login_finish(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(request): Json<LoginFinishRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let mut pending = state
        .pending_logins
        .take(request.login_id)
        .ok_or_else(|| Problem::unauthorized("this sign-in expired or is unknown; start again"))?;
    let passkey = request.passkey.map(|p| (pending.passkey.take(), p));
    let proven = vault::opaque::login_finish(&pending.state, &request.credential_finalization)
        .map_err(|e| Problem::bad_request(e.to_string()))?;
    let Some(account_id) = pending.account.filter(|_| proven) else {
        // The attempt stays counted.
        drop(pending.attempt);
        return Err(Problem::unauthorized("wrong address or password"));
    };
    state.login_guard.succeeded(pending.attempt);
    let account = state
        .store
        .account(account_id)
        .await?
        .ok_or_else(|| Problem::unauthorized("wrong address or password"))?;
    if let Some(why) = state.store.may_sign_in(&account, Door::Api).await? {
        return Err(Problem::forbidden(why));
    }
    let actor = super::auth::account_grant(
        &state,
        &account,
        peer.ip(),
        super::second_factor::Codes {
            totp_code: request.totp_code,
            recovery_code: request.recovery_code,
            passkey,
        },
    )
    .await?;
    Ok(Json(super::auth::token_response(
        &state,
        &actor,
        Some(account.id),
        account.credentials_epoch,
    )?))
}

/// Checks a proof of the current password: a device sign-in of `account`,
/// started at `/v1/auth/opaque/login/start` and finished by the caller
/// instead of at `/login/finish` (the password is given again without the
/// server seeing it).
pub fn verify_current_password(
    state: &AppState,
    account: AccountId,
    proof: &LoginFinishRequest,
) -> ApiResult<()> {
    let pending = state.pending_logins.take(proof.login_id).ok_or_else(|| {
        Problem::forbidden("the sign-in in `current_password_proof` expired or is unknown")
    })?;
    let proven = vault::opaque::login_finish(&pending.state, &proof.credential_finalization)
        .map_err(|e| Problem::bad_request(e.to_string()))?;
    if !proven || pending.account != Some(account) {
        drop(pending.attempt);
        return Err(Problem::forbidden("the current password is wrong"));
    }
    state.login_guard.succeeded(pending.attempt);
    Ok(())
}

/// Only the account itself registers its sign-in, holds app passwords and
/// second factors.
pub(super) fn own(actor: &Actor, account: AccountId, what: &str) -> ApiResult<()> {
    if actor.is_account(account) {
        Ok(())
    } else {
        Err(Problem::forbidden(format!(
            "only the account's owner can {what}"
        )))
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterStartRequest {
    /// OPAQUE's `registrationRequest`, unpadded base64url.
    pub registration_request: String,
}

#[derive(Serialize, ToSchema)]
pub struct RegisterStartResponse {
    /// OPAQUE's `registrationResponse`, unpadded base64url.
    pub registration_response: String,
    /// The parameters this instance asks new registrations to stretch with.
    pub ksf: KsfView,
}

/// Start registering device sign-in (or a new password)
///
/// For the account's owner: moving an account created before device
/// sign-in, or changing the password (the key is re-locked on the device).
#[utoipa::path(post, path = "/v1/accounts/{account_id}/opaque/register/start", tag = "auth", operation_id = "startOpaqueRegistration",
    params(("account_id" = AccountId, Path, description = "Account id")),
    request_body = RegisterStartRequest,
    responses(
        (status = 200, description = "The server's answer", body = RegisterStartResponse),
        (status = 400, description = "Malformed message or id", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn register_start(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(account_id): Path<AccountId>,
    Json(request): Json<RegisterStartRequest>,
) -> ApiResult<Json<RegisterStartResponse>> {
    own(&actor, account_id, "register its sign-in")?;
    let account = state
        .store
        .account(account_id)
        .await?
        .ok_or(Problem::not_found("account"))?;
    registration_started(&state, &account, &request).await
}

/// The server's answer to a registration's first message, for `account`
/// (its owner's, an activation link's or a reset link's).
pub(super) async fn registration_started(
    state: &AppState,
    account: &tenants::Account,
    request: &RegisterStartRequest,
) -> ApiResult<Json<RegisterStartResponse>> {
    let setup = setup(state, account.tenant_id).await?;
    let response = vault::opaque::registration_response(
        &setup,
        &request.registration_request,
        account.id.to_string().as_bytes(),
    )
    .map_err(|e| Problem::bad_request(e.to_string()))?;
    Ok(Json(RegisterStartResponse {
        registration_response: response,
        ksf: state.config.ksf.into(),
    }))
}

/// A registration's upload checked: its OPAQUE record, the stretching
/// parameters it used, and a key locked on the device.
pub(super) fn registration(
    record: &str,
    ksf: KsfView,
    locked_key: &str,
) -> ApiResult<OpaqueRegistration> {
    let ksf = ksf.params()?;
    if !vault::opaque::is_wrapped(locked_key) {
        return Err(Problem::invalid(
            "`locked_key` must be the secret key locked on the device (`caliop-key-v1:…`)",
        ));
    }
    let record = vault::opaque::registration_record(record)
        .map_err(|e| Problem::bad_request(e.to_string()))?;
    use base64::Engine;
    Ok(OpaqueRegistration {
        record: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(record),
        ksf: serde_json::to_string(&ksf).map_err(Problem::internal)?,
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterFinishRequest {
    /// OPAQUE's `registrationRecord` (the upload), unpadded base64url.
    pub registration_record: String,
    /// The parameters the client stretched with.
    pub ksf: KsfView,
    /// The account's OpenPGP secret key, locked on the device with the key
    /// derived from OPAQUE's export key (`caliop-key-v1:…`).
    pub locked_key: String,
    /// For an account that already signs in this way (a password change):
    /// a sign-in with the current password, started with
    /// `/v1/auth/opaque/login/start` and finished here instead of at
    /// `/login/finish`, so that a stolen token alone cannot replace the
    /// password and the key.
    pub current_password_proof: Option<LoginFinishRequest>,
    /// For an account moving to device sign-in: its password, once more
    /// (the server saw it at the password grant just before), so that a
    /// stolen token alone cannot move the account to a password of its own.
    #[schema(format = Password)]
    pub current_password: Option<String>,
}

/// Finish registering device sign-in (or a new password)
///
/// Stores the OPAQUE record and the secret key locked on the device; the
/// password hash and the password-locked key are deleted, and every token
/// and session of the account ends (sign in again through OPAQUE).
#[utoipa::path(post, path = "/v1/accounts/{account_id}/opaque/register/finish", tag = "auth", operation_id = "finishOpaqueRegistration",
    params(("account_id" = AccountId, Path, description = "Account id")),
    request_body = RegisterFinishRequest,
    responses(
        (status = 204, description = "Registered; sign in again"),
        (status = 403, description = "Not the account's owner, or no valid current password (or proof of it)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 400, description = "Malformed message or id", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn register_finish(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Principal(actor): Principal,
    Path(account_id): Path<AccountId>,
    Json(request): Json<RegisterFinishRequest>,
) -> ApiResult<StatusCode> {
    own(&actor, account_id, "register its sign-in")?;
    let registration = registration(
        &request.registration_record,
        request.ksf,
        &request.locked_key,
    )?;
    if state.store.opaque_registration(account_id).await?.is_some() {
        let Some(proof) = request.current_password_proof else {
            return Err(Problem::forbidden(
                "changing the password needs `current_password_proof`: a sign-in with the current password",
            ));
        };
        verify_current_password(&state, account_id, &proof)?;
    } else {
        let account = state
            .store
            .account(account_id)
            .await?
            .ok_or(Problem::not_found("account"))?;
        let Some(password) = request.current_password else {
            return Err(Problem::forbidden(
                "moving to device sign-in needs the account's `current_password`, once more",
            ));
        };
        // Counted like every sign-in.
        match tenants::login::sign_in(
            &state.store,
            &state.login_guard,
            peer.ip(),
            account.address.as_str(),
            password.into(),
            Door::Api,
        )
        .await
        {
            Ok(same) if same.id == account_id => {}
            Err(tenants::login::SignInRefused::TooManyAttempts(t)) => {
                return Err(Problem::too_many_attempts(t.retry_after));
            }
            _ => return Err(Problem::forbidden("the current password is wrong")),
        }
    }
    state
        .store
        .register_opaque(
            &actor.audit_name(),
            account_id,
            &registration,
            &request.locked_key,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAppPasswordRequest {
    /// The device or mail client it is for (e.g. "Thunderbird at home").
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct NewAppPasswordResponse {
    pub app_password: AppPassword,
    /// The password to type into the mail client; shown this once.
    pub secret: String,
}

/// Make an app password
///
/// Mail clients (IMAP, submission) sign in with app passwords, never with
/// the account's password once its key is on the device. Random, shown
/// once, stored hashed; it opens the mail doors and unlocks no key.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/app-passwords", tag = "accounts", operation_id = "createAppPassword",
    params(("account_id" = AccountId, Path, description = "Account id")),
    request_body = NewAppPasswordRequest,
    responses(
        (status = 201, description = "Made; the secret is in this answer only", body = NewAppPasswordResponse),
        (status = 400, description = "Malformed id", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or too many app passwords", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn create_app_password(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(account_id): Path<AccountId>,
    Json(request): Json<NewAppPasswordRequest>,
) -> ApiResult<(StatusCode, Json<NewAppPasswordResponse>)> {
    own(&actor, account_id, "make app passwords")?;
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Problem::invalid("`name` must have 1 to 100 characters"));
    }
    let secret = tenants::login::new_app_password();
    let made = state
        .store
        .create_app_password(
            &actor.audit_name(),
            account_id,
            name,
            &tenants::login::typed_secret_hash(&secret),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewAppPasswordResponse {
            app_password: made,
            secret,
        }),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct AppPasswordList {
    pub items: Vec<AppPassword>,
}

/// List app passwords
///
/// Their names and last use; never their secrets.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/app-passwords", tag = "accounts", operation_id = "listAppPasswords",
    params(("account_id" = AccountId, Path, description = "Account id")),
    responses(
        (status = 200, description = "The account's app passwords", body = AppPasswordList),
        (status = 400, description = "Malformed id", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_app_passwords(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(account_id): Path<AccountId>,
) -> ApiResult<Json<AppPasswordList>> {
    own(&actor, account_id, "list app passwords")?;
    Ok(Json(AppPasswordList {
        items: state.store.list_app_passwords(account_id).await?,
    }))
}

/// Revoke an app password
///
/// Mail clients signed in with it stop at once (an open IMAP session ends).
#[utoipa::path(delete, path = "/v1/accounts/{account_id}/app-passwords/{app_password_id}", tag = "accounts", operation_id = "revokeAppPassword",
    params(
        ("account_id" = AccountId, Path, description = "Account id"),
        ("app_password_id" = Uuid, Path, description = "App password id"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "Malformed id", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account or app password", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn revoke_app_password(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path((account_id, app_password_id)): Path<(AccountId, Uuid)>,
) -> ApiResult<StatusCode> {
    own(&actor, account_id, "revoke app passwords")?;
    state
        .store
        .delete_app_password(&actor.audit_name(), account_id, app_password_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
