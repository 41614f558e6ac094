//! Mail accounts: creation with an OpenPGP key pair locked by the account's
//! password, self-service changes, administration, and the keys.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenants::store::Credentials;
use tenants::{
    Account, AccountId, AccountRole, AccountStatus, AccountUpdate, Actor, DomainId, EmailAddress,
    Level, NewAccount, TenantId, TenantStatus,
};
use utoipa::ToSchema;
use vault::openpgp::AccountKey;

use super::{PageQuery, Paged};
use crate::AppState;
use crate::auth::{Admin, Principal};
use crate::problem::{ApiResult, Json, Path, Problem, ProblemDetails, Query};

#[derive(Serialize, ToSchema)]
pub struct AccountView {
    pub id: AccountId,
    pub tenant_id: TenantId,
    pub domain_id: DomainId,
    pub address: EmailAddress,
    pub display_name: String,
    pub role: AccountRole,
    pub status: AccountStatus,
    /// The level this account's mail is stored at (never below the tenant's floor).
    pub level: Level,
    /// Fingerprint of the account's OpenPGP key.
    pub fingerprint: String,
    /// Bytes of mail this account stores (they count in its tenant's shared quota too).
    pub storage_used_bytes: i64,
    /// The account's own storage cap inside its tenant's quota; `null` when it has none.
    pub storage_quota_bytes: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Only in the answer that created the account without a password:
    /// the link its owner opens to set one (shown this once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation: Option<super::activation::ActivationLink>,
    /// The lowest level its tenant allows (the account's `level` is never
    /// below it); in the answers about one account, not in lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level_floor: Option<Level>,
    /// Where password resets and the welcome mail go, when set; in the
    /// answers about one account, not in lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_address: Option<String>,
}

impl From<&Account> for AccountView {
    fn from(a: &Account) -> AccountView {
        AccountView {
            id: a.id,
            tenant_id: a.tenant_id,
            domain_id: a.domain_id,
            address: a.address.clone(),
            display_name: a.display_name.clone(),
            role: a.role,
            status: a.status,
            level: a.level,
            fingerprint: a.fingerprint.clone(),
            storage_used_bytes: a.storage_used_bytes,
            storage_quota_bytes: a.storage_quota_bytes,
            created_at: a.created_at,
            updated_at: a.updated_at,
            activation: None,
            level_floor: None,
            recovery_address: None,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccountRequest {
    /// `local@domain`, in one of the tenant's domains.
    pub address: String,
    pub display_name: Option<String>,
    /// Leave it out (the way to make accounts): the answer holds an
    /// activation link with which the account's owner sets a password on
    /// their own device; the server never knows it. Given (at least 10
    /// characters), the account starts with this password and the key
    /// locked by it, and moves to device sign-in at its first sign-in.
    #[schema(format = Password)]
    pub password: Option<String>,
    /// `user` by default.
    pub role: Option<AccountRole>,
    /// The tenant's floor by default; never below it.
    pub level: Option<Level>,
    /// An address elsewhere where the owner gets the welcome mail and password resets.
    pub recovery_address: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccount {
    pub display_name: Option<String>,
    /// A new password. With `current_password` (the owner), the OpenPGP key
    /// is re-locked; without it (an administrator's reset) a new key pair is
    /// generated and mail sealed to the old key stays readable only with it.
    #[schema(format = Password)]
    pub password: Option<String>,
    #[schema(format = Password)]
    pub current_password: Option<String>,
    /// Administrators only.
    pub role: Option<AccountRole>,
    /// Administrators only: `active` or `suspended`.
    pub status: Option<AccountStatus>,
    pub level: Option<Level>,
    /// Administrators only: this account's own storage cap in bytes, inside
    /// the tenant's shared quota; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub storage_quota_bytes: Option<Option<i64>>,
    /// Where password resets go: another address of the owner's; `""`
    /// removes it.
    pub recovery_address: Option<String>,
}

/// `Some(None)` for an explicit `null`, `None` for an absent field.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

fn display_name(name: Option<&str>, address: &EmailAddress) -> ApiResult<String> {
    let name = name.map(str::trim).unwrap_or(address.local());
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(Problem::invalid(
            "the display name must be 1 to 200 printable characters",
        ));
    }
    Ok(name.to_owned())
}

fn level_within_policy(level: Level, floor: Level) -> ApiResult<Level> {
    if level < floor {
        return Err(Problem::invalid(format!(
            "the level `{level}` is below the tenant's floor `{floor}`"
        )));
    }
    Ok(level)
}

pub(super) fn user_id(name: &str, address: &EmailAddress) -> String {
    format!("{} <{address}>", name.replace(['<', '>'], ""))
}

/// Creates an account in `tenant_id` with a fresh key pair: locked for an
/// activation link (answered with it) or, given a password, by it.
pub async fn create(
    state: &AppState,
    actor: &Actor,
    tenant_id: TenantId,
    body: NewAccountRequest,
) -> ApiResult<(Account, Option<super::activation::ActivationLink>)> {
    let address = EmailAddress::parse(&body.address)?;
    let address_for_checks = address.clone();
    let name = display_name(body.display_name.as_deref(), &address)?;
    if let Some(password) = &body.password {
        tenants::password::check_strength(password)?;
    }
    let tenant = state
        .store
        .tenant(tenant_id)
        .await?
        .ok_or(Problem::not_found("tenant"))?;
    if tenant.status != TenantStatus::Active {
        return Err(Problem::conflict(format!(
            "the tenant `{}` is {}",
            tenant.name, tenant.status
        )));
    }
    let domain = state
        .store
        .domain_by_name(&address.domain())
        .await?
        .filter(|d| d.tenant_id == tenant_id)
        .ok_or_else(|| {
            Problem::invalid(format!(
                "the domain `{}` is not hosted by this tenant",
                address.domain()
            ))
        })?;
    let level = level_within_policy(
        body.level.unwrap_or(tenant.policy.min_level),
        tenant.policy.min_level,
    )?;
    if state.store.account_by_address(&address).await?.is_some() {
        return Err(Problem::conflict(format!(
            "the address `{address}` is taken"
        )));
    }
    let uid = user_id(&name, &address);
    let password = body.password;
    // The key locked by the password, or for an activation link.
    let (credentials, activation) = vault::cpu::run(move || match password {
        Some(password) => {
            let key = AccountKey::generate(&uid, &password)?;
            let credentials = Credentials {
                password_hash: tenants::password::hash(&password)?,
                fingerprint: key.fingerprint,
                public_key: key.public_armored,
                secret_key: key.secret_armored,
            };
            Ok::<_, Problem>((credentials, None))
        }
        None => {
            let (key, activation) = super::activation::new_key(&uid)?;
            let credentials = Credentials {
                password_hash: String::new(),
                fingerprint: key.fingerprint.clone(),
                public_key: key.public_key.clone(),
                secret_key: key.locked_secret_key.clone(),
            };
            Ok((credentials, Some((key, activation))))
        }
    })
    .await?;
    let new = NewAccount {
        tenant_id,
        domain_id: domain.id,
        address,
        display_name: name,
        role: body.role.unwrap_or(AccountRole::User),
        level,
        password_hash: credentials.password_hash,
        fingerprint: credentials.fingerprint,
        public_key: credentials.public_key,
        secret_key: credentials.secret_key,
    };
    let recovery = body
        .recovery_address
        .as_deref()
        .map(|r| recovery_address(r, &address_for_checks))
        .transpose()?;
    let account = state.store.create_account(&actor.audit_name(), new).await?;
    let link = match activation {
        Some((key, activation)) => {
            state
                .store
                .create_activation(account.id, &key.token_hash, key.expires_at)
                .await?;
            Some(super::activation::link(state, tenant_id, &activation, key.expires_at).await?)
        }
        None => None,
    };
    if let Some(recovery) = &recovery {
        state
            .store
            .set_recovery_address(account.id, Some(recovery.as_str()))
            .await?;
    }
    state.queue_seat_sync(tenant_id).await;
    state
        .queue_welcome(&account, recovery.as_ref().map(|r| r.as_str()))
        .await;
    Ok((account, link))
}

async fn load(state: &AppState, id: AccountId) -> ApiResult<Account> {
    state
        .store
        .account(id)
        .await?
        .ok_or(Problem::not_found("account"))
}

/// Create an account
///
/// Generates the account's OpenPGP key pair (Ed25519 + X25519). Without a
/// password, its secret half is locked for the activation link the answer
/// holds, and the plain key forgotten: the owner opens the link and sets a
/// password on their device. With one, it is locked with the password.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/accounts", tag = "accounts", operation_id = "createAccount",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    request_body = NewAccountRequest,
    responses(
        (status = 201, description = "Created", body = AccountView),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Address taken, or package exceeded", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn create_account(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(tenant_id): Path<TenantId>,
    Json(body): Json<NewAccountRequest>,
) -> ApiResult<(StatusCode, Json<AccountView>)> {
    let (account, activation) = create(&state, &actor, tenant_id, body).await?;
    Ok((
        StatusCode::CREATED,
        Json(AccountView {
            activation,
            ..AccountView::from(&account)
        }),
    ))
}

/// List a tenant's accounts
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/accounts", tag = "accounts", operation_id = "listAccounts",
    params(("tenant_id" = TenantId, Path, description = "Tenant id"), PageQuery),
    responses(
        (status = 200, description = "A page of accounts", body = Paged<AccountView>),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_accounts(
    State(state): State<AppState>,
    _admin: Admin,
    Path(tenant_id): Path<TenantId>,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<Paged<AccountView>>> {
    let page = query.page()?;
    let accounts = state.store.list_accounts(tenant_id, page).await?;
    Ok(Json(Paged::new(
        accounts.iter().map(AccountView::from).collect(),
        page,
        |a| a.id.0,
    )))
}

/// Get an account
///
/// Users may read their own account; administrators any account of their tenants.
#[utoipa::path(get, path = "/v1/accounts/{account_id}", tag = "accounts", operation_id = "getAccount",
    params(("account_id" = AccountId, Path, description = "Account id")),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn get_account(
    State(state): State<AppState>,
    _principal: Principal,
    Path(account_id): Path<AccountId>,
) -> ApiResult<Json<AccountView>> {
    let account = load(&state, account_id).await?;
    Ok(Json(full_view(&state, &account).await?))
}

/// The view of one account, with its tenant's floor and its recovery address.
async fn full_view(state: &AppState, account: &Account) -> ApiResult<AccountView> {
    let tenant = state
        .store
        .tenant(account.tenant_id)
        .await?
        .ok_or(Problem::not_found("tenant"))?;
    Ok(AccountView {
        level_floor: Some(tenant.policy.min_level),
        recovery_address: state.store.recovery_address(account.id).await?,
        ..AccountView::from(account)
    })
}

/// A recovery address as given: another address than the account's own.
pub(crate) fn recovery_address(given: &str, own: &EmailAddress) -> ApiResult<EmailAddress> {
    let recovery = EmailAddress::parse(given.trim()).map_err(|_| {
        Problem::invalid(format!(
            "`recovery_address` {given:?} is not an email address"
        ))
    })?;
    if recovery.as_str().eq_ignore_ascii_case(own.as_str()) {
        return Err(Problem::invalid(
            "`recovery_address` must be another address than the account's own",
        ));
    }
    Ok(recovery)
}

/// Update an account
///
/// The owner may change its display name, level (upwards of the floor) and
/// password; administrators may also change role and status, and reset the password.
#[utoipa::path(patch, path = "/v1/accounts/{account_id}", tag = "accounts", operation_id = "updateAccount",
    params(("account_id" = AccountId, Path, description = "Account id")),
    request_body = UpdateAccount,
    responses(
        (status = 200, description = "The updated account", body = AccountView),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not allowed to change this, or wrong current password", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn update_account(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(account_id): Path<AccountId>,
    Json(body): Json<UpdateAccount>,
) -> ApiResult<Json<AccountView>> {
    let account = load(&state, account_id).await?;
    if !actor.role.is_admin()
        && (body.role.is_some() || body.status.is_some() || body.storage_quota_bytes.is_some())
    {
        return Err(Problem::forbidden(
            "only an administrator can change an account's role, status or storage cap",
        ));
    }
    if let Some(Some(cap)) = body.storage_quota_bytes
        && cap < 0
    {
        return Err(Problem::invalid("`storage_quota_bytes` cannot be negative"));
    }
    if account.status == AccountStatus::Deleted {
        return Err(Problem::conflict("the account is deleted"));
    }
    if body.status == Some(AccountStatus::Deleted) {
        return Err(Problem::invalid(
            "delete an account with DELETE /v1/accounts/{account_id}",
        ));
    }
    let tenant = state
        .store
        .tenant(account.tenant_id)
        .await?
        .ok_or(Problem::not_found("tenant"))?;
    let level = body
        .level
        .map(|l| level_within_policy(l, tenant.policy.min_level))
        .transpose()?;
    let name = body
        .display_name
        .as_deref()
        .map(|n| display_name(Some(n), &account.address))
        .transpose()?;
    let credentials = match (body.password, body.current_password) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(Problem::invalid(
                "`current_password` goes with a new `password`",
            ));
        }
        (Some(new), current) => {
            tenants::password::check_strength(&new)?;
            if current.is_none() && actor.is_account(account_id) {
                return Err(Problem::invalid(
                    "changing your own password needs `current_password`",
                ));
            }
            if current.is_none() && !actor.role.is_admin() {
                return Err(Problem::forbidden(
                    "only an administrator can reset a password",
                ));
            }
            if current.is_some() && account.password_hash.is_empty() {
                return Err(Problem::conflict(
                    "this account's password changes on its device, where its key is unlocked: \
                     POST /v1/accounts/{account_id}/opaque/register/start",
                ));
            }
            let (secret, hash, uid) = (
                account.secret_key.clone(),
                account.password_hash.clone(),
                user_id(&account.display_name, &account.address),
            );
            let credentials = vault::cpu::run(move || {
                let key = match current {
                    Some(current) => {
                        if !tenants::password::verify(&current, &hash) {
                            return Err(Problem::forbidden("the current password is wrong"));
                        }
                        AccountKey::relock(&secret, &current, &new)?
                    }
                    None => AccountKey::generate(&uid, &new)?,
                };
                Ok(Credentials {
                    password_hash: tenants::password::hash(&new)?,
                    fingerprint: key.fingerprint,
                    public_key: key.public_armored,
                    secret_key: key.secret_armored,
                })
            })
            .await?;
            Some(credentials)
        }
    };
    let update = AccountUpdate {
        display_name: name,
        role: body.role,
        status: body.status,
        level,
        credentials,
    };
    let status_changed = update.status.is_some();
    // Checked before anything changes: `""` clears it.
    let recovery = match body.recovery_address.as_deref().map(str::trim) {
        None => None,
        Some("") => Some(None),
        Some(given) => Some(Some(recovery_address(given, &account.address)?)),
    };
    if let Some(cap) = body.storage_quota_bytes {
        state
            .store
            .set_account_quota(&actor.audit_name(), account_id, cap)
            .await?;
    }
    let account = state
        .store
        .update_account(&actor.audit_name(), account_id, update)
        .await?;
    if status_changed {
        state.queue_seat_sync(account.tenant_id).await;
    }
    if let Some(recovery) = recovery {
        state
            .store
            .set_recovery_address(account.id, recovery.as_ref().map(EmailAddress::as_str))
            .await?;
    }
    Ok(Json(full_view(&state, &account).await?))
}

/// Delete an account
///
/// The account can no longer sign in and stops counting against the
/// package; its address stays reserved so it never reaches someone else.
#[utoipa::path(delete, path = "/v1/accounts/{account_id}", tag = "accounts", operation_id = "deleteAccount",
    params(("account_id" = AccountId, Path, description = "Account id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn delete_account(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(account_id): Path<AccountId>,
) -> ApiResult<StatusCode> {
    let account = load(&state, account_id).await?;
    if account.status != AccountStatus::Deleted {
        let update = AccountUpdate {
            status: Some(AccountStatus::Deleted),
            ..Default::default()
        };
        state
            .store
            .update_account(&actor.audit_name(), account_id, update)
            .await?;
        state.queue_seat_sync(account.tenant_id).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The account's OpenPGP public key, ASCII-armored
#[utoipa::path(get, path = "/v1/accounts/{account_id}/public-key", tag = "accounts", operation_id = "getPublicKey",
    params(("account_id" = AccountId, Path, description = "Account id")),
    responses(
        (status = 200, description = "ASCII-armored OpenPGP public key", body = String, content_type = "application/pgp-keys"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn public_key(
    State(state): State<AppState>,
    _principal: Principal,
    Path(account_id): Path<AccountId>,
) -> ApiResult<impl IntoResponse> {
    let account = load(&state, account_id).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/pgp-keys")],
        account.public_key,
    ))
}

/// Sign out everywhere else
///
/// Ends every other session of the account: access tokens issued before
/// stop working at once (and mail sessions signed in with the account's
/// password end); app passwords stay, they are removed one by one. The
/// answer is a fresh token for this session.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/sessions/end-others", tag = "accounts", operation_id = "endOtherSessions",
    params(("account_id" = AccountId, Path, description = "Account id")),
    responses(
        (status = 200, description = "Other sessions ended; this session's new token", body = crate::routes::auth::TokenResponse),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn end_other_sessions(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(account_id): Path<AccountId>,
) -> ApiResult<Json<crate::routes::auth::TokenResponse>> {
    if !actor.is_account(account_id) {
        return Err(Problem::forbidden(
            "only the account's owner can end its sessions",
        ));
    }
    let epoch = state
        .store
        .end_sessions(&actor.audit_name(), account_id)
        .await?;
    Ok(Json(crate::routes::auth::token_response(
        &state,
        &actor,
        Some(account_id),
        epoch,
    )?))
}

/// The account's OpenPGP secret key, locked with its password
///
/// Only the account itself may fetch it; import it into an OpenPGP mail
/// client and unlock it there with the account's password.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/secret-key", tag = "accounts", operation_id = "getSecretKey",
    params(("account_id" = AccountId, Path, description = "Account id")),
    responses(
        (status = 200, description = "ASCII-armored OpenPGP secret key, passphrase-locked", body = String, content_type = "application/pgp-keys"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn secret_key(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(account_id): Path<AccountId>,
) -> ApiResult<impl IntoResponse> {
    if !actor.is_account(account_id) {
        return Err(Problem::forbidden(
            "only the account's owner can fetch its secret key",
        ));
    }
    let account = load(&state, account_id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/pgp-keys"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        account.secret_key,
    ))
}
