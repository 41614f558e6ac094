//! Tokens and the extractors that turn them into an [`Actor`].
//!
//! Tokens are JWTs signed with the instance's Ed25519 key (EdDSA only; no
//! other algorithm is accepted, `none` least of all), short-lived, carrying
//! the tenant, role and scopes. [`Principal`] verifies the token, checks the
//! subject still exists and is active, then scopes every id in the path to
//! what the actor may see: an object of another tenant answers 404 before
//! the handler runs, so no handler can forget the check. [`Admin`] adds the
//! role check (403).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::http::{Method, header};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tenants::{
    AccountId, Actor, ApiKeyId, DomainId, Ended, KeyRefusal, MessageId, Role, Scope, Subject,
    TenantId,
};
use uuid::Uuid;

use tenants::login::Door;

use crate::AppState;
use crate::problem::Problem;

const ISSUER: &str = "caliop";

/// The claims of a Caliop access token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// `operator`, `account:<uuid>` or `api_key:<uuid>`.
    pub sub: String,
    /// The tenant the token acts for.
    pub tid: Uuid,
    pub role: Role,
    pub scopes: Vec<Scope>,
    pub iat: u64,
    pub exp: u64,
    pub jti: Uuid,
    /// The account's credentials epoch at issue: a role, status or password
    /// change since then ends the token.
    #[serde(default)]
    pub epc: i64,
}

/// How many verified tokens [`Tokens`] remembers at most.
const VERIFIED_CAPACITY: usize = 10_000;

/// A token whose signature and claims verified, remembered so that the next
/// request carrying the same token skips the signature check.
struct Verified {
    actor: Actor,
    epoch: i64,
    /// The token's `exp`, checked again on every hit: a remembered token
    /// is never served past its expiry.
    exp: u64,
}

/// The key a token is remembered under: the SHA-256 of the whole token
/// string, header, claims and signature alike, so that a token differing in
/// any byte (a tampered signature or claim) never finds another's entry.
fn verified_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Signs and verifies access tokens with the instance key.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    /// Tokens already verified, by [`verified_key`], so that a client
    /// sending the same token on every request pays for one signature
    /// check, not one per request. Only tokens that verified in full are
    /// remembered, never a failure; an entry is served only until the
    /// token's `exp` (with the same leeway as [`Validation`]), after which
    /// it is dropped and the token goes through the full check again, which
    /// answers that it has expired. At most [`VERIFIED_CAPACITY`] entries.
    ///
    /// Revocation is not this cache's business: it only stands for the
    /// signature and claims check of [`Tokens::verify`]. Whether the token's
    /// subject still exists and may act (an account's role, status or
    /// password changed, an API key revoked, a tenant suspended) is checked
    /// by `check_subject` on every request after `verify`, cached or not, so
    /// a remembered token whose subject changed is still refused there.
    ///
    /// The instance key never changes under a `Tokens`; a `Tokens` with a
    /// new key starts with an empty cache.
    verified: Mutex<HashMap<[u8; 32], Verified>>,
}

impl Tokens {
    pub fn new(key: &vault::instance::InstanceKey, ttl: Duration) -> Tokens {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 5;
        Tokens {
            encoding: EncodingKey::from_ed_der(key.pkcs8_der()),
            decoding: DecodingKey::from_ed_der(key.public_key()),
            validation,
            ttl,
            verified: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A signed token for `actor` (issued under the account's credentials
    /// `epoch`; 0 for other subjects), valid for `ttl`.
    pub fn issue(&self, actor: &Actor, epoch: i64, ttl: Duration) -> Result<String, Problem> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            iss: ISSUER.into(),
            sub: actor.subject.to_token_sub(),
            tid: actor.tenant_id.0,
            role: actor.role,
            scopes: actor.scopes.clone(),
            iat: now,
            exp: now + ttl.as_secs(),
            jti: Uuid::now_v7(),
            epc: epoch,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)
            .map_err(Problem::internal)
    }

    /// The actor a token speaks for and the credentials epoch it was issued
    /// under, or a 401 that says what is wrong with it.
    ///
    /// A token verified before and not yet expired is answered from memory
    /// without checking its signature again; see the `verified` field. The
    /// caller must still check the subject (`check_subject`) every time.
    pub fn verify(&self, token: &str) -> Result<(Actor, i64), Problem> {
        let key = verified_key(token);
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(known) = self.recall(&key, now) {
            return Ok(known);
        }
        let (actor, epoch, exp) = self.decode(token)?;
        self.remember(
            key,
            Verified {
                actor: actor.clone(),
                epoch,
                exp,
            },
            now,
        );
        Ok((actor, epoch))
    }

    /// The full check: signature, algorithm, issuer, required claims and
    /// expiry. Answers the actor, the epoch and the token's `exp`.
    fn decode(&self, token: &str) -> Result<(Actor, i64, u64), Problem> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                Problem::unauthorized(match e.kind() {
                    ErrorKind::ExpiredSignature => {
                        "the access token has expired; request a new one at /v1/auth/token"
                    }
                    ErrorKind::InvalidSignature => {
                        "the access token's signature does not verify with this instance's key"
                    }
                    ErrorKind::InvalidAlgorithm => {
                        "the access token must be signed with EdDSA by this instance"
                    }
                    ErrorKind::InvalidIssuer => "the access token was not issued by Caliop",
                    ErrorKind::MissingRequiredClaim(_) => {
                        "the access token lacks a required claim (exp, iss or sub)"
                    }
                    _ => "the access token is not a well-formed EdDSA-signed JWT",
                })
            })?;
        let claims = data.claims;
        let subject = Subject::from_token_sub(&claims.sub)
            .ok_or_else(|| Problem::unauthorized("the access token's subject is not recognised"))?;
        Ok((
            Actor {
                subject,
                tenant_id: TenantId(claims.tid),
                role: claims.role,
                scopes: claims.scopes,
            },
            claims.epc,
            claims.exp,
        ))
    }

    /// Whether a token with this `exp` has expired at `now`, as
    /// [`Validation`] judges it: past `exp` by more than the leeway.
    fn expired(&self, exp: u64, now: u64) -> bool {
        exp.saturating_add(self.validation.leeway) < now
    }

    /// The cache, even if a thread panicked while holding it: it only ever
    /// holds tokens that verified in full, each inserted whole, so a panic
    /// cannot leave a half-checked entry behind.
    fn verified(&self) -> MutexGuard<'_, HashMap<[u8; 32], Verified>> {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The remembered actor and epoch of the token with this key, unless it
    /// was never verified or has expired (then it is forgotten, and the full
    /// check says why it is refused).
    fn recall(&self, key: &[u8; 32], now: u64) -> Option<(Actor, i64)> {
        let mut verified = self.verified();
        let known = verified.get(key)?;
        if self.expired(known.exp, now) {
            verified.remove(key);
            return None;
        }
        Some((known.actor.clone(), known.epoch))
    }

    /// Remembers a token that verified in full. When the cache is full it
    /// first drops the expired entries; if more than half are still live it
    /// forgets them all (they are verified again on their next use). The
    /// forgotten entries are freed after the lock is released.
    fn remember(&self, key: [u8; 32], entry: Verified, now: u64) {
        let mut forgotten = None;
        let mut verified = self.verified();
        if verified.len() >= VERIFIED_CAPACITY && !verified.contains_key(&key) {
            verified.retain(|_, v| !self.expired(v.exp, now));
            if verified.len() > VERIFIED_CAPACITY / 2 {
                forgotten = Some(std::mem::take(&mut *verified));
            }
        }
        verified.insert(key, entry);
        drop(verified);
        drop(forgotten);
    }

    /// How many verified tokens are remembered.
    #[cfg(test)]
    fn cached_len(&self) -> usize {
        self.verified().len()
    }
}

/// An authenticated actor whose path ids were all found within its reach.
pub struct Principal(pub Actor);

/// A [`Principal`] with an administrator role.
pub struct Admin(pub Actor);

fn bearer(parts: &Parts) -> Result<&str, Problem> {
    let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
        Problem::unauthorized("this endpoint needs an `Authorization: Bearer <token>` header")
    })?;
    let value = value
        .to_str()
        .map_err(|_| Problem::unauthorized("the Authorization header is not valid text"))?;
    value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Problem::unauthorized("the Authorization header must use the Bearer scheme"))
}

/// Refuses tokens whose subject changed since issue: an account's role,
/// status or password (its credentials epoch), its domain's verification or
/// its tenant's status, read in one query ([`tenants::Standing`]); an API
/// key revoked, or whose maker lost the right to make it. Both are
/// remembered for up to [`tenants::HELD_FOR`] and forgotten at once when
/// any of it changes ([`tenants::Store::standing_now`]), so a busy client
/// costs no read here.
async fn check_subject(state: &AppState, actor: &Actor, epoch: i64) -> Result<(), Problem> {
    let gone =
        || Problem::unauthorized("the access token's subject no longer exists or was revoked");
    match actor.subject {
        Subject::Operator => Ok(()),
        Subject::Account(id) => {
            let standing = state.store.standing_now(id).await?.ok_or_else(gone)?;
            if standing.account.tenant_id != actor.tenant_id {
                return Err(gone());
            }
            match standing.refusal(actor.role, epoch, Door::Api) {
                None => Ok(()),
                Some(Ended::CredentialsChanged) => Err(Problem::unauthorized(
                    "the account's role, status or password changed since this token was issued; sign in again",
                )),
                Some(Ended::DomainUnverified) => Err(Problem::unauthorized(
                    "the account's domain is not verified; it cannot act until it is",
                )),
                Some(Ended::OrganisationInactive(why)) => Err(Problem::forbidden(why)),
            }
        }
        Subject::ApiKey(id) => {
            let key = state.store.api_key_standing(id).await?.ok_or_else(gone)?;
            if key.key.tenant_id != actor.tenant_id {
                return Err(gone());
            }
            match key.refusal {
                None => Ok(()),
                Some(KeyRefusal::Revoked(why)) => Err(Problem::unauthorized(why)),
                Some(KeyRefusal::OrganisationInactive(why)) => Err(Problem::forbidden(why)),
            }
        }
    }
}

/// Finds the tenant owning each id in the path and checks the actor can see it.
async fn check_path(
    state: &AppState,
    actor: &Actor,
    params: &RawPathParams,
) -> Result<(), Problem> {
    for (name, value) in params.iter() {
        let parse = |what: &str| {
            Uuid::parse_str(value)
                .map_err(|_| Problem::bad_request(format!("`{value}` is not a valid {what} id")))
        };
        let (what, owner) = match name {
            "tenant_id" => ("tenant", Some(TenantId(parse("tenant")?))),
            "domain_id" => (
                "domain",
                state
                    .store
                    .domain(DomainId(parse("domain")?))
                    .await?
                    .map(|d| d.tenant_id),
            ),
            "account_id" => {
                let id = AccountId(parse("account")?);
                let account = state.store.account(id).await?;
                if actor.role == Role::User && !actor.is_account(id) {
                    return Err(Problem::not_found("account"));
                }
                ("account", account.map(|a| a.tenant_id))
            }
            "api_key_id" => (
                "API key",
                state
                    .store
                    .api_key(ApiKeyId(parse("API key")?))
                    .await?
                    .map(|k| k.tenant_id),
            ),
            "message_id" => {
                let message = state.store.message(MessageId(parse("message")?)).await?;
                if actor.role == Role::User
                    && !message
                        .as_ref()
                        .is_some_and(|m| actor.is_account(m.account_id))
                {
                    return Err(Problem::not_found("message"));
                }
                ("message", message.map(|m| m.tenant_id))
            }
            "mailbox_id" => {
                let mailbox = state
                    .store
                    .mailbox(tenants::MailboxId(parse("mailbox")?))
                    .await?;
                if actor.role == Role::User
                    && !mailbox
                        .as_ref()
                        .is_some_and(|m| actor.is_account(m.account_id))
                {
                    return Err(Problem::not_found("mailbox"));
                }
                let account = match mailbox {
                    Some(m) => state.store.account(m.account_id).await?,
                    None => None,
                };
                ("mailbox", account.map(|a| a.tenant_id))
            }
            "address_id" => (
                "address",
                state
                    .store
                    .address(parse("address")?)
                    .await?
                    .map(|a| a.tenant_id),
            ),
            // Names, not ids: checked by the handler (a Sieve script's name
            // is only looked up within the account of the same path).
            "template" | "language" | "name" => continue,
            // Only ever looked up within the account of the same path, whose
            // rule applies; the handler also requires its owner.
            "app_password_id" | "passkey_id" | "sender" => continue,
            "hostname_id" => (
                "hostname",
                state
                    .store
                    .hostname(parse("hostname")?)
                    .await?
                    .map(|h| h.tenant_id),
            ),
            // Plans are a price list every administrator may read (only the operator writes them).
            "plan_id" => (
                "plan",
                state
                    .store
                    .plan(parse("plan")?)
                    .await?
                    .map(|_| actor.tenant_id),
            ),
            "export_id" => (
                "export",
                state
                    .store
                    .tenant_export(parse("export")?)
                    .await?
                    .map(|e| e.tenant_id),
            ),
            // The legal request register is the operator's alone. Anyone else is
            // refused whatever the id, so that no answer says whether a request exists.
            "request_id" => {
                if actor.role != Role::Operator {
                    return Err(Problem::forbidden(
                        crate::routes::LEGAL_REGISTER_IS_THE_OPERATORS,
                    ));
                }
                (
                    "legal request",
                    state
                        .store
                        .legal_request(parse("legal request")?)
                        .await?
                        .map(|_| actor.tenant_id),
                )
            }
            // The instance's TLS certificates are the operator's alone.
            "certificate_name" => {
                if actor.role != Role::Operator {
                    return Err(Problem::forbidden(
                        "only the operator sees the instance's certificates",
                    ));
                }
                continue;
            }
            other => {
                return Err(Problem::internal(format!(
                    "path parameter `{other}` has no access rule"
                )));
            }
        };
        let owner = owner.ok_or_else(|| Problem::not_found(what))?;
        // Every role sees its own tenant, which `check_subject` has just
        // found active: no need to read the ancestry to know it.
        if owner == actor.tenant_id {
            continue;
        }
        let ancestry = state.store.ancestry(owner).await?;
        if ancestry.is_empty() || !actor.can_see(&ancestry) {
            return Err(Problem::not_found(what));
        }
    }
    Ok(())
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let (actor, epoch) = state.tokens.verify(bearer(parts)?)?;
        check_subject(state, &actor, epoch).await?;
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| Problem::bad_request(e.body_text()))?;
        check_path(state, &actor, &params).await?;
        if !matches!(parts.method, Method::GET | Method::HEAD) && !actor.may_write() {
            return Err(Problem::forbidden(
                "this token is read-only (scope `read`); changes need scope `write`",
            ));
        }
        Ok(Principal(actor))
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let Principal(actor) = Principal::from_request_parts(parts, state).await?;
        if !actor.role.is_admin() {
            return Err(Problem::forbidden(
                "this needs a tenant administrator, a reseller or the operator",
            ));
        }
        Ok(Admin(actor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_another_key_are_refused() {
        let key = vault::instance::InstanceKey::generate();
        let tokens = Tokens::new(&key, Duration::from_secs(60));
        let actor = Actor {
            subject: Subject::Operator,
            tenant_id: TenantId::new(),
            role: Role::Operator,
            scopes: vec![Scope::Read, Scope::Write],
        };
        let token = tokens.issue(&actor, 7, Duration::from_secs(60)).unwrap();
        assert_eq!(tokens.verify(&token).unwrap(), (actor, 7));

        let other = Tokens::new(
            &vault::instance::InstanceKey::generate(),
            Duration::from_secs(60),
        );
        assert_eq!(
            other.verify(&token).unwrap_err().status(),
            axum::http::StatusCode::UNAUTHORIZED
        );
    }

    fn account_actor() -> Actor {
        Actor {
            subject: Subject::Account(AccountId(Uuid::now_v7())),
            tenant_id: TenantId::new(),
            role: Role::User,
            scopes: vec![Scope::Read],
        }
    }

    /// A token signed with the instance key whose `exp` is `exp`, whatever
    /// the clock says (`issue` only signs tokens valid from now on).
    fn signed_with_exp(tokens: &Tokens, actor: &Actor, exp: u64) -> String {
        let claims = Claims {
            iss: ISSUER.into(),
            sub: actor.subject.to_token_sub(),
            tid: actor.tenant_id.0,
            role: actor.role,
            scopes: actor.scopes.clone(),
            iat: exp.saturating_sub(60),
            exp,
            jti: Uuid::now_v7(),
            epc: 3,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &tokens.encoding).unwrap()
    }

    #[test]
    fn a_verified_token_is_answered_from_the_cache() {
        let key = vault::instance::InstanceKey::generate();
        let mut tokens = Tokens::new(&key, Duration::from_secs(60));
        let actor = account_actor();
        let token = tokens.issue(&actor, 4, Duration::from_secs(60)).unwrap();
        assert_eq!(tokens.cached_len(), 0);
        assert_eq!(tokens.verify(&token).unwrap(), (actor.clone(), 4));
        assert_eq!(tokens.cached_len(), 1);

        // With a key that cannot verify the signature, only the cache can
        // still answer for the token: the second call is a hit.
        tokens.decoding =
            DecodingKey::from_ed_der(vault::instance::InstanceKey::generate().public_key());
        assert_eq!(tokens.verify(&token).unwrap(), (actor.clone(), 4));
        assert_eq!(tokens.cached_len(), 1);

        // A token not remembered goes through the full check, which now
        // fails; the failure is not remembered.
        let fresh = Tokens::new(&key, Duration::from_secs(60))
            .issue(&actor, 4, Duration::from_secs(60))
            .unwrap();
        assert!(tokens.verify(&fresh).is_err());
        assert_eq!(tokens.cached_len(), 1);
    }

    #[test]
    fn a_tampered_token_is_refused_after_the_genuine_one_was_cached() {
        let key = vault::instance::InstanceKey::generate();
        let tokens = Tokens::new(&key, Duration::from_secs(60));
        let actor = account_actor();
        let token = tokens.issue(&actor, 1, Duration::from_secs(60)).unwrap();
        assert_eq!(tokens.verify(&token).unwrap(), (actor.clone(), 1));
        assert_eq!(tokens.cached_len(), 1);

        let (signed, signature) = token.rsplit_once('.').unwrap();
        let refused = |forged: &str| {
            let problem = tokens.verify(forged).unwrap_err();
            assert_eq!(problem.status(), axum::http::StatusCode::UNAUTHORIZED);
            problem.detail().to_owned()
        };

        // One character of the signature changed.
        let first = signature.as_bytes()[0];
        let other = if first == b'A' { 'B' } else { 'A' };
        let forged = format!("{signed}.{other}{}", &signature[1..]);
        assert!(refused(&forged).contains("signature does not verify"));

        // The genuine signature under claims raised to operator.
        let (header, _) = signed.split_once('.').unwrap();
        let mut claims: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                signed.split_once('.').unwrap().1,
            )
            .unwrap(),
        )
        .unwrap();
        claims["role"] = serde_json::to_value(Role::Operator).unwrap();
        claims["sub"] = "operator".into();
        let payload = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            serde_json::to_vec(&claims).unwrap(),
        );
        let forged = format!("{header}.{payload}.{signature}");
        assert!(refused(&forged).contains("signature does not verify"));

        // Nothing forged was remembered; the genuine token still verifies.
        assert_eq!(tokens.cached_len(), 1);
        assert_eq!(tokens.verify(&token).unwrap(), (actor, 1));
    }

    #[test]
    fn an_expired_cached_token_is_not_served() {
        let key = vault::instance::InstanceKey::generate();
        let tokens = Tokens::new(&key, Duration::from_secs(60));
        let actor = account_actor();
        let now = jsonwebtoken::get_current_timestamp();

        // The leeway is the validation's: 5 s past `exp` still serves, 6 s
        // does not.
        assert!(!tokens.expired(now - 5, now));
        assert!(tokens.expired(now - 6, now));

        // A token remembered while valid, now well past its expiry.
        let token = signed_with_exp(&tokens, &actor, now - 60);
        tokens.remember(
            verified_key(&token),
            Verified {
                actor: actor.clone(),
                epoch: 3,
                exp: now - 60,
            },
            now - 120,
        );
        assert_eq!(tokens.cached_len(), 1);
        let problem = tokens.verify(&token).unwrap_err();
        assert_eq!(problem.status(), axum::http::StatusCode::UNAUTHORIZED);
        assert!(
            problem.detail().contains("has expired"),
            "{}",
            problem.detail()
        );
        assert_eq!(tokens.cached_len(), 0);

        // Within the leeway it is still served, as the full check would.
        let token = signed_with_exp(&tokens, &actor, now - 1);
        assert_eq!(tokens.verify(&token).unwrap(), (actor, 3));
        assert_eq!(tokens.cached_len(), 1);
    }

    #[test]
    fn the_cache_never_grows_past_its_bound() {
        let key = vault::instance::InstanceKey::generate();
        let tokens = Tokens::new(&key, Duration::from_secs(60));
        let actor = account_actor();
        let now = jsonwebtoken::get_current_timestamp();
        let entry = |exp| Verified {
            actor: actor.clone(),
            epoch: 0,
            exp,
        };

        // Full of expired entries: they go first, the live one stays.
        for i in 0..VERIFIED_CAPACITY {
            tokens.remember(verified_key(&format!("expired {i}")), entry(now - 60), now);
        }
        assert_eq!(tokens.cached_len(), VERIFIED_CAPACITY);
        let token = tokens.issue(&actor, 0, Duration::from_secs(60)).unwrap();
        tokens.verify(&token).unwrap();
        assert_eq!(tokens.cached_len(), 1);

        // Live entries past the bound: never more than the bound.
        for i in 0..3 * VERIFIED_CAPACITY {
            let key = verified_key(&format!("live {i}"));
            tokens.remember(key, entry(now + 60), now);
            assert!(tokens.cached_len() <= VERIFIED_CAPACITY);
            assert!(tokens.recall(&key, now).is_some());
        }
    }
}
