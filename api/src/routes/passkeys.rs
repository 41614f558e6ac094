//! WebAuthn passkeys, the second factor a browser holds (Level 3; the
//! relying party's checks are `webauthn_rp`'s). A passkey belongs to the
//! host it was made on (its relying party id): `mail.hostname`, one of the
//! account's own tenant's verified hostnames (never another tenant's, which
//! that tenant could point at a page of its own), or `localhost` for a
//! developer's machine; the host is the page's (`Origin`), so one account
//! may hold passkeys on several of its tenant's hosts.
//!
//! Registration: `register/start` answers `PublicKeyCredentialCreationOptionsJSON`
//! (resident key and user verification required; no attestation kept), the
//! page calls `navigator.credentials.create`, and `register/finish` takes the
//! credential's `toJSON()`. Sign-in: every `/v1/auth/opaque/login/start`
//! from a page on such a host answers a discoverable request
//! (`PublicKeyCredentialRequestOptionsJSON` with no credential list, so it
//! says nothing of the account), and `/login/finish` takes the assertion's
//! `toJSON()` as `passkey`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use tenants::{AccountId, NewPasskey, Passkey, TenantId};
use utoipa::ToSchema;
use uuid::Uuid;
use webauthn_rp::bin::{Decode, Encode};
use webauthn_rp::request::auth::AuthenticationVerificationOptions;
use webauthn_rp::request::register::{
    CredProtect, Nickname, PublicKeyCredentialUserEntity, RegistrationVerificationOptions,
    UserHandle16, Username,
};
use webauthn_rp::request::{AsciiDomain, PublicKeyCredentialDescriptor, RpId};
use webauthn_rp::response::register::{CompressedPubKey, DynamicState, StaticState};
use webauthn_rp::response::{AuthTransports, CredentialId};
use webauthn_rp::{
    AuthenticatedCredential, DiscoverableAuthentication16, DiscoverableAuthenticationServerState,
    DiscoverableCredentialRequestOptions, PublicKeyCredentialCreationOptions, Registration,
    RegistrationServerState,
};

use crate::AppState;
use crate::auth::Principal;
use crate::problem::{ApiResult, Json, Problem, ProblemDetails};

/// How long a registration may take between its two requests (the
/// browser's own timeout is five minutes).
const REGISTRATION_WINDOW: Duration = Duration::from_secs(300);

/// The host a page was served from, when passkeys may live there.
#[derive(Clone)]
pub struct RelyingParty {
    rp_id: RpId,
    /// The page's origin, as the browser writes it in client data.
    origin: String,
    host: String,
    /// The tenant whose verified hostname it is; none for this instance's
    /// own host and `localhost`, which every account may use.
    tenant: Option<TenantId>,
}

impl RelyingParty {
    /// Whether an account of `tenant` may make passkeys here: another
    /// tenant's hostname is a name that tenant may point anywhere, and a
    /// passkey made for it would sign in wherever it points.
    fn belongs_to(&self, tenant: TenantId) -> bool {
        self.tenant.is_none_or(|t| t == tenant)
    }
}

/// The relying party of a browser request: its `Origin`'s host when this
/// instance serves it (over HTTPS, or `localhost`), else none (no passkey
/// is offered or accepted).
pub async fn relying_party(
    state: &AppState,
    headers: &HeaderMap,
) -> ApiResult<Option<RelyingParty>> {
    let Some(origin) = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned)
    else {
        return Ok(None);
    };
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Ok(None);
    };
    let host = rest
        .rsplit_once(':')
        .filter(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(rest, |(h, _)| h)
        .to_ascii_lowercase();
    let tenant = if host == "localhost" {
        if !matches!(scheme, "http" | "https") {
            return Ok(None);
        }
        None
    } else if scheme != "https" {
        return Ok(None);
    } else if host == state.config.mail_hostname.to_ascii_lowercase() {
        None
    } else {
        match state.store.tenant_by_hostname(&host).await? {
            Some(tenant) => Some(tenant),
            None => return Ok(None),
        }
    };
    let Ok(domain) = AsciiDomain::try_from(host.clone()) else {
        return Ok(None);
    };
    Ok(Some(RelyingParty {
        rp_id: RpId::Domain(domain),
        origin,
        host,
        tenant,
    }))
}

/// Passkey registrations between their two requests, in this process.
#[derive(Default)]
pub struct PendingPasskeys(
    Mutex<HashMap<AccountId, (RegistrationServerState<16>, RelyingParty, Instant)>>,
);

/// A passkey sign-in's challenge, kept with the sign-in it belongs to.
pub struct Ceremony {
    state: DiscoverableAuthenticationServerState,
    party: RelyingParty,
}

/// A discoverable request for `party`: the options the page hands to
/// `navigator.credentials.get`, and what checks the answer.
pub fn sign_in_challenge(party: RelyingParty) -> ApiResult<(serde_json::Value, Ceremony)> {
    let (server, client) = DiscoverableCredentialRequestOptions::passkey(&party.rp_id)
        .start_ceremony()
        .map_err(|e| Problem::internal(format!("passkey request: {e}")))?;
    let options = serde_json::to_value(&client).map_err(Problem::internal)?;
    Ok((
        options,
        Ceremony {
            state: server,
            party,
        },
    ))
}

/// The user handle of an account: its id's 16 bytes (no name, no address).
fn user_handle(account: AccountId) -> UserHandle16 {
    match UserHandle16::decode(account.0.into_bytes()) {
        Ok(handle) => handle,
        Err(never) => match never {},
    }
}

/// Whether `response` (an assertion's `toJSON()`) proves a passkey of
/// `account` for `ceremony`'s challenge; its counter and flags are kept.
pub async fn verify_sign_in(
    state: &AppState,
    account: AccountId,
    ceremony: Ceremony,
    response: &serde_json::Value,
) -> ApiResult<bool> {
    let bytes = serde_json::to_vec(response).map_err(Problem::internal)?;
    let Ok(authentication) = DiscoverableAuthentication16::from_json_relaxed(&bytes) else {
        return Err(Problem::bad_request(
            "`passkey` is not a WebAuthn assertion (the credential's toJSON())",
        ));
    };
    let raw_id = authentication.raw_id().as_ref().to_vec();
    let Some(stored) = state.store.passkey_by_credential(&raw_id).await? else {
        return Ok(false);
    };
    if stored.account_id != account || stored.rp_id != ceremony.party.host {
        return Ok(false);
    }
    let handle = user_handle(account);
    let static_state =
        StaticState::<CompressedPubKey<[u8; 32], [u8; 32], [u8; 48], Vec<u8>>>::decode(
            stored.public_key.as_slice(),
        )
        .map_err(|e| Problem::internal(format!("stored passkey: {e}")))?;
    let dynamic: [u8; 7] = stored
        .state
        .as_slice()
        .try_into()
        .map_err(|_| Problem::internal("stored passkey state"))?;
    let dynamic_state = DynamicState::decode(dynamic)
        .map_err(|e| Problem::internal(format!("stored passkey state: {e}")))?;
    let id = CredentialId::<&[u8]>::decode(stored.credential_id.as_slice())
        .map_err(|e| Problem::internal(format!("stored passkey id: {e}")))?;
    let mut credential = AuthenticatedCredential::new(id, &handle, static_state, dynamic_state)
        .map_err(|e| Problem::internal(format!("stored passkey: {e}")))?;
    let origins = [ceremony.party.origin.as_str()];
    let options = AuthenticationVerificationOptions::<&str, &str> {
        allowed_origins: &origins,
        ..AuthenticationVerificationOptions::default()
    };
    match ceremony.state.verify(
        &ceremony.party.rp_id,
        &authentication,
        &mut credential,
        &options,
    ) {
        Ok(_) => {
            let state_bytes = credential
                .dynamic_state()
                .encode()
                .map_err(|e| Problem::internal(format!("passkey state: {e:?}")))?;
            state.store.passkey_used(stored.id, &state_bytes).await?;
            Ok(true)
        }
        Err(e) => {
            tracing::info!(account = %account, error = %e, "passkey refused");
            Ok(false)
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PasskeyCreationOptions {
    /// `PublicKeyCredentialCreationOptionsJSON`: give it to
    /// `PublicKeyCredential.parseCreationOptionsFromJSON` and then to
    /// `navigator.credentials.create({ publicKey })`. Valid five minutes.
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
}

/// Start adding a passkey
///
/// For the account's owner, from a page on this instance's host or on one
/// of the tenant's verified hostnames (its `Origin`): the passkey signs in
/// there.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/passkeys/register/start", tag = "auth", operation_id = "startPasskeyRegistration",
    params(("account_id" = AccountId, Path, description = "Account id")),
    responses(
        (status = 200, description = "What the authenticator is asked to make", body = PasskeyCreationOptions),
        (status = 400, description = "Malformed id", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Not from a page on a host the account's passkeys can belong to", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn register_start(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(account_id): Path<AccountId>,
    headers: HeaderMap,
) -> ApiResult<Json<PasskeyCreationOptions>> {
    super::device::own(&actor, account_id, "hold its passkeys")?;
    let account = state
        .store
        .account(account_id)
        .await?
        .ok_or(Problem::not_found("account"))?;
    let Some(party) = relying_party(&state, &headers).await? else {
        return Err(Problem::invalid(
            "passkeys are made from a page on this instance's host or a tenant's verified hostname, \
             over https (or on localhost): this request has no such `Origin`",
        ));
    };
    if !party.belongs_to(account.tenant_id) {
        return Err(Problem::invalid(format!(
            "`{}` is another organisation's hostname: make passkeys on this instance's host or on \
             one of your organisation's own",
            party.host
        )));
    }
    let mut exclude = Vec::new();
    for known in state
        .store
        .passkey_credentials(account_id, &party.host)
        .await?
    {
        let id = CredentialId::<Vec<u8>>::decode(known.credential_id)
            .map_err(|e| Problem::internal(format!("stored passkey id: {e}")))?;
        // Stored from the library's own encoding: it decodes.
        if let Some(transports) = u8::try_from(known.transports)
            .ok()
            .and_then(|t| AuthTransports::decode(t).ok())
        {
            exclude.push(PublicKeyCredentialDescriptor { id, transports });
        }
    }
    let handle = user_handle(account_id);
    let name = Username::try_from(account.address.as_str())
        .map_err(|e| Problem::internal(format!("passkey user name: {e}")))?;
    let display = Some(account.display_name.as_str()).filter(|d| !d.trim().is_empty());
    let user = PublicKeyCredentialUserEntity {
        name,
        id: &handle,
        display_name: display.and_then(|d| Nickname::try_from(d).ok()),
    };
    let mut creation = PublicKeyCredentialCreationOptions::passkey(&party.rp_id, user, exclude);
    // Every sign-in asks for user verification already; enforcing the
    // credProtect extension would refuse authenticators without it.
    creation.extensions.cred_protect = CredProtect::None;
    let (server, client) = creation
        .start_ceremony()
        .map_err(|e| Problem::internal(format!("passkey options: {e}")))?;
    let options = serde_json::to_value(&client).map_err(Problem::internal)?;
    let mut pending = state.pending_passkeys.0.lock().expect("pending passkeys");
    pending.retain(|_, (_, _, started)| started.elapsed() < REGISTRATION_WINDOW);
    pending.insert(account_id, (server, party, Instant::now()));
    Ok(Json(PasskeyCreationOptions { options }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyRegistration {
    /// A name to tell it by (e.g. "YubiKey", "this laptop").
    pub name: String,
    /// The new credential's `toJSON()` (`RegistrationResponseJSON`).
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct PasskeyAdded {
    pub passkey: Passkey,
    /// Ten single-use recovery codes, shown this once, when the account had
    /// none (its first second factor); otherwise empty.
    pub recovery_codes: Vec<String>,
}

/// Finish adding a passkey
///
/// Checks the authenticator's answer to the challenge of `register/start`
/// (same page origin) and keeps its public key. The account's first second
/// factor comes with recovery codes.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/passkeys/register/finish", tag = "auth", operation_id = "finishPasskeyRegistration",
    params(("account_id" = AccountId, Path, description = "Account id")),
    request_body = PasskeyRegistration,
    responses(
        (status = 201, description = "Added", body = PasskeyAdded),
        (status = 400, description = "Malformed id or credential", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "No registration started (or it expired), or this passkey is already there", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, the authenticator's answer does not hold, or too many passkeys", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn register_finish(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(account_id): Path<AccountId>,
    Json(body): Json<PasskeyRegistration>,
) -> ApiResult<(StatusCode, Json<PasskeyAdded>)> {
    super::device::own(&actor, account_id, "hold its passkeys")?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Problem::invalid("`name` must have 1 to 100 characters"));
    }
    let bytes = serde_json::to_vec(&body.credential).map_err(Problem::internal)?;
    let registration = Registration::from_json_relaxed(&bytes).map_err(|e| {
        Problem::bad_request(format!(
            "`credential` is not a WebAuthn registration (the credential's toJSON()): {e}"
        ))
    })?;
    let pending = state
        .pending_passkeys
        .0
        .lock()
        .expect("pending passkeys")
        .remove(&account_id)
        .filter(|(_, _, started)| started.elapsed() < REGISTRATION_WINDOW);
    let Some((server, party, _)) = pending else {
        return Err(Problem::conflict(
            "no passkey registration started, or it expired: POST …/passkeys/register/start first",
        ));
    };
    let origins = [party.origin.as_str()];
    let options = RegistrationVerificationOptions::<&str, &str> {
        allowed_origins: &origins,
        ..RegistrationVerificationOptions::default()
    };
    let registered = server
        .verify(&party.rp_id, &registration, &options)
        .map_err(|e| Problem::invalid(format!("the authenticator's answer does not hold: {e}")))?;
    let (id, transports, _user, static_state, dynamic_state, _metadata) = registered.into_parts();
    let public_key = static_state
        .encode()
        .map_err(|e| Problem::internal(format!("passkey key: {e:?}")))?;
    let dynamic = dynamic_state
        .encode()
        .map_err(|e| Problem::internal(format!("passkey state: {e:?}")))?;
    let transports = transports
        .encode()
        .map_err(|e| Problem::internal(format!("passkey transports: {e:?}")))?;
    let (codes, hashes) = super::second_factor::new_recovery_codes();
    let (passkey, gave) = state
        .store
        .create_passkey(
            &actor.audit_name(),
            account_id,
            NewPasskey {
                name,
                rp_id: &party.host,
                credential_id: id.as_ref(),
                public_key: &public_key,
                state: &dynamic,
                transports: i32::from(transports),
            },
            &hashes,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(PasskeyAdded {
            passkey,
            recovery_codes: if gave { codes } else { Vec::new() },
        }),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct PasskeyList {
    pub items: Vec<Passkey>,
}

/// List passkeys
#[utoipa::path(get, path = "/v1/accounts/{account_id}/passkeys", tag = "auth", operation_id = "listPasskeys",
    params(("account_id" = AccountId, Path, description = "Account id")),
    responses(
        (status = 200, description = "The account's passkeys", body = PasskeyList),
        (status = 400, description = "Malformed id", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_passkeys(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(account_id): Path<AccountId>,
) -> ApiResult<Json<PasskeyList>> {
    super::device::own(&actor, account_id, "hold its passkeys")?;
    Ok(Json(PasskeyList {
        items: state.store.list_passkeys(account_id).await?,
    }))
}

/// Remove a passkey
#[utoipa::path(delete, path = "/v1/accounts/{account_id}/passkeys/{passkey_id}", tag = "auth", operation_id = "deletePasskey",
    params(
        ("account_id" = AccountId, Path, description = "Account id"),
        ("passkey_id" = Uuid, Path, description = "Passkey id"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Malformed id", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account or passkey", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn delete_passkey(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path((account_id, passkey_id)): Path<(AccountId, Uuid)>,
) -> ApiResult<StatusCode> {
    super::device::own(&actor, account_id, "hold its passkeys")?;
    state
        .store
        .delete_passkey(&actor.audit_name(), account_id, passkey_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
