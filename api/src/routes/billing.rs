//! Plans, tenants' billing, Stripe's webhook, usage and daily traffic, the
//! funding pool's history, and the public side of the pool: its figures and
//! the signup that spends it.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use billing::{Challenge, SignupOutcome};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenants::store::{
    Invoice, NewSignup, PaidBy, Plan, PlanInput, PoolHistory, PoolSummary, SignupStatus,
    TenantFilter, TrafficDay, UsageMonth,
};
use tenants::{Page, Role, TenantId};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Admin;
use crate::problem::{ApiResult, Json, Path, Problem, ProblemDetails, Query};

fn operator_only(actor: &tenants::Actor, what: &str) -> ApiResult<()> {
    if actor.role == Role::Operator {
        Ok(())
    } else {
        Err(Problem::forbidden(format!("only the operator {what}")))
    }
}

/// List plans
///
/// The price list, readable by every administrator.
#[utoipa::path(get, path = "/v1/plans", tag = "billing", operation_id = "listPlans",
    responses(
        (status = 200, description = "Every plan", body = Vec<Plan>),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_plans(
    State(state): State<AppState>,
    _admin: Admin,
) -> ApiResult<Json<Vec<Plan>>> {
    Ok(Json(state.store.list_plans().await?))
}

/// Create a plan
#[utoipa::path(post, path = "/v1/plans", tag = "billing", operation_id = "createPlan",
    request_body = PlanInput,
    responses(
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 201, description = "Created", body = Plan),
        (status = 403, description = "Not the operator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "A plan with this name exists", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn create_plan(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Json(body): Json<PlanInput>,
) -> ApiResult<(StatusCode, Json<Plan>)> {
    operator_only(&actor, "manages plans")?;
    Ok((
        StatusCode::CREATED,
        Json(
            state
                .store
                .save_plan(&actor.audit_name(), None, body)
                .await?,
        ),
    ))
}

/// Get a plan
#[utoipa::path(get, path = "/v1/plans/{plan_id}", tag = "billing", operation_id = "getPlan",
    params(("plan_id" = Uuid, Path, description = "Plan id")),
    responses(
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 200, description = "The plan", body = Plan),
        (status = 404, description = "No such plan", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn get_plan(
    State(state): State<AppState>,
    _admin: Admin,
    Path(plan_id): Path<Uuid>,
) -> ApiResult<Json<Plan>> {
    Ok(Json(
        state
            .store
            .plan(plan_id)
            .await?
            .ok_or(Problem::not_found("plan"))?,
    ))
}

/// Change a plan
///
/// Tenants on the plan get its new limits at once; prices apply from the next invoice.
#[utoipa::path(patch, path = "/v1/plans/{plan_id}", tag = "billing", operation_id = "updatePlan",
    params(("plan_id" = Uuid, Path, description = "Plan id")),
    request_body = PlanInput,
    responses(
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 200, description = "The plan", body = Plan),
        (status = 403, description = "Not the operator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such plan", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn update_plan(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(plan_id): Path<Uuid>,
    Json(body): Json<PlanInput>,
) -> ApiResult<Json<Plan>> {
    operator_only(&actor, "manages plans")?;
    Ok(Json(
        state
            .store
            .save_plan(&actor.audit_name(), Some(plan_id), body)
            .await?,
    ))
}

/// Delete a plan
#[utoipa::path(delete, path = "/v1/plans/{plan_id}", tag = "billing", operation_id = "deletePlan",
    params(("plan_id" = Uuid, Path, description = "Plan id")),
    responses(
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not the operator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such plan", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Tenants are on it", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn delete_plan(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(plan_id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    operator_only(&actor, "manages plans")?;
    state
        .store
        .delete_plan(&actor.audit_name(), plan_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A tenant's plan, commitment and who pays.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignPlan {
    pub plan_id: Uuid,
    /// Seats billed at least, whatever the number of accounts (default 0).
    pub committed_seats: Option<i64>,
    /// `self` (retail, default) or `parent` (wholesale: on the reseller's subscription).
    pub paid_by: Option<PaidBy>,
    /// Named among the pool's funders on the public page (default false).
    pub public_funder: Option<bool>,
}

/// What a tenant will pay next.
#[derive(Debug, Serialize, ToSchema)]
pub struct NextInvoice {
    /// End of the current period, when Stripe told us.
    pub date: Option<DateTime<Utc>>,
    pub seats: i64,
    pub amount_cents: i64,
    pub currency: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BillingView {
    pub tenant_id: TenantId,
    pub plan: Option<Plan>,
    /// `none`, `incomplete`, `active`, `past_due`, `suspended` (past due beyond the grace period: sending stops) or `canceled`.
    pub status: String,
    /// Active accounts or the commitment, whichever is higher.
    pub seats: i64,
    pub committed_seats: i64,
    /// The quantity on the Stripe subscription.
    pub seats_billed: Option<i64>,
    pub paid_by: Option<PaidBy>,
    /// `none` or `stripe`.
    pub provider: String,
    pub subscription_status: Option<String>,
    pub past_due_since: Option<DateTime<Utc>>,
    pub sending_suspended: bool,
    pub public_funder: bool,
    pub next_invoice: Option<NextInvoice>,
    /// Newest first (at most 24).
    pub invoices: Vec<Invoice>,
}

async fn billing_view(state: &AppState, tenant_id: TenantId) -> ApiResult<BillingView> {
    let billing = state.billing();
    let record = state.store.tenant_billing(tenant_id).await?;
    let provider = match billing.config.provider {
        billing::Provider::None => "none",
        billing::Provider::Stripe => "stripe",
    };
    let Some(record) = record else {
        return Ok(BillingView {
            tenant_id,
            plan: None,
            status: "none".into(),
            seats: state.store.own_seats(tenant_id).await?,
            committed_seats: 0,
            seats_billed: None,
            paid_by: None,
            provider: provider.into(),
            subscription_status: None,
            past_due_since: None,
            sending_suspended: false,
            public_funder: false,
            next_invoice: None,
            invoices: Vec::new(),
        });
    };
    let plan = state.store.plan(record.plan_id).await?;
    let seats = state
        .store
        .own_seats(tenant_id)
        .await?
        .max(record.committed_seats);
    let status = billing::status_word(&record, billing.grace());
    let next_invoice = plan
        .as_ref()
        .filter(|_| record.paid_by == PaidBy::Itself && status != "canceled")
        .map(|p| {
            let seats = record.seats_billed.unwrap_or(seats);
            NextInvoice {
                date: record.current_period_end,
                seats,
                amount_cents: seats * p.seat_price_cents,
                currency: p.currency.clone(),
            }
        });
    Ok(BillingView {
        tenant_id,
        status: status.into(),
        seats,
        committed_seats: record.committed_seats,
        seats_billed: record.seats_billed,
        paid_by: Some(record.paid_by),
        provider: provider.into(),
        subscription_status: record.subscription_status.clone(),
        past_due_since: record.past_due_since,
        sending_suspended: state
            .store
            .sending_suspended(tenant_id, billing.grace())
            .await?
            .is_some(),
        public_funder: record.public_funder,
        next_invoice,
        invoices: state.store.invoices(tenant_id, 24).await?,
        plan,
    })
}

/// Put a tenant on a plan
///
/// The operator, or the tenant's reseller, chooses its plan, its committed
/// seats and whether it pays itself or through the reseller. The tenant's
/// limits follow the plan: storage quota = seats × storage per seat, and
/// must fit the package of every tenant above it.
#[utoipa::path(put, path = "/v1/tenants/{tenant_id}/plan", tag = "billing", operation_id = "assignPlan",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    request_body = AssignPlan,
    responses(
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 200, description = "The tenant's billing", body = BillingView),
        (status = 403, description = "Neither the operator nor the tenant's reseller", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The plan's limits exceed the package of a tenant above (named, with the excess)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn assign_plan(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(tenant_id): Path<TenantId>,
    Json(body): Json<AssignPlan>,
) -> ApiResult<Json<BillingView>> {
    let ancestry = state.store.ancestry(tenant_id).await?;
    if !actor.is_above(&ancestry) {
        return Err(Problem::forbidden(
            "only the operator or the tenant's reseller chooses its plan",
        ));
    }
    if state.store.plan(body.plan_id).await?.is_none() {
        return Err(Problem::invalid(format!(
            "`plan_id`: no plan {}",
            body.plan_id
        )));
    }
    state
        .store
        .assign_plan(
            &actor.audit_name(),
            tenant_id,
            body.plan_id,
            body.committed_seats.unwrap_or(0),
            body.paid_by.unwrap_or(PaidBy::Itself),
            body.public_funder.unwrap_or(false),
        )
        .await?;
    state.queue_seat_sync(tenant_id).await;
    Ok(Json(billing_view(&state, tenant_id).await?))
}

/// A tenant's billing
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/billing", tag = "billing", operation_id = "getBilling",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    responses(
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 200, description = "Plan, seats, status, next invoice and past invoices", body = BillingView),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn get_billing(
    State(state): State<AppState>,
    _admin: Admin,
    Path(tenant_id): Path<TenantId>,
) -> ApiResult<Json<BillingView>> {
    Ok(Json(billing_view(&state, tenant_id).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckoutView {
    /// Stripe Checkout's page: send the administrator there.
    pub url: String,
}

/// Start a subscription
///
/// Creates the tenant's Stripe customer (once) and a Checkout Session for
/// its plan and seats; the subscription starts when Stripe's webhook says
/// the checkout completed.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/billing/checkout", tag = "billing", operation_id = "startCheckout",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    responses(
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 201, description = "The Checkout Session's URL", body = CheckoutView),
        (status = 403, description = "Not an administrator of the tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "No plan, paid by the reseller, or already subscribed", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 502, description = "Stripe refused", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "This instance takes no payments", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn checkout(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(tenant_id): Path<TenantId>,
) -> ApiResult<(StatusCode, Json<CheckoutView>)> {
    let email = match actor.subject {
        tenants::Subject::Account(id) => state
            .store
            .account(id)
            .await?
            .map(|a| a.address.to_string()),
        _ => None,
    };
    let url = state
        .billing()
        .checkout(tenant_id, email.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(CheckoutView { url })))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAnswer {
    /// Applied before: nothing changed.
    pub replayed: bool,
    /// Older than what is recorded: not applied.
    pub stale: bool,
}

/// Stripe's webhook
///
/// Verifies `Stripe-Signature` (HMAC-SHA256 with the endpoint secret, within
/// the timestamp tolerance, any `v1` of several) and applies the event once.
/// A forged, unsigned or stale call gets 400 and nothing is recorded.
#[utoipa::path(post, path = "/v1/billing/stripe/webhook", tag = "billing", operation_id = "stripeWebhook",
    request_body(content = String, content_type = "application/json", description = "A Stripe event, exactly as Stripe sent it"),
    params(("Stripe-Signature" = String, Header, description = "t=…,v1=…")),
    responses(
        (status = 200, description = "Applied, or recognised as a replay", body = WebhookAnswer),
        (status = 400, description = "Unsigned, forged, stale or unreadable", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "No webhook secret is configured", body = ProblemDetails, content_type = "application/problem+json"),
    ), security(()))]
pub async fn stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<WebhookAnswer>> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    match state.billing().webhook(&body, signature).await {
        Ok(applied) => Ok(Json(WebhookAnswer {
            replayed: applied.replayed,
            stale: applied.stale,
        })),
        Err(billing::BillingError::Invalid(detail)) => Err(Problem::bad_request(detail)),
        Err(e) => Err(e.into()),
    }
}

/// The funding pool
///
/// How many free accounts paying tenants fund, how many are open, how many
/// people wait. Funders are counted, and named only if they opted in.
#[utoipa::path(get, path = "/v1/public/pool", tag = "public", operation_id = "getPool",
    responses((status = 200, description = "The pool", body = PoolSummary)), security(()))]
pub async fn pool(State(state): State<AppState>) -> ApiResult<Json<PoolSummary>> {
    let billing = state.billing();
    Ok(Json(
        state
            .store
            .pool_summary(billing.config.pool_horizon_months)
            .await?,
    ))
}

/// A proof-of-work challenge for signing up
///
/// Find `counter` such that SHA-256(`{challenge}:{address}:{counter}`)
/// (address in lower case, counter in decimal) starts with `difficulty`
/// zero bits, and send both with the signup.
#[utoipa::path(get, path = "/v1/public/signup/challenge", tag = "public", operation_id = "getSignupChallenge",
    responses(
        (status = 200, description = "A challenge, valid for 15 minutes", body = Challenge),
        (status = 503, description = "Public signup is not open", body = ProblemDetails, content_type = "application/problem+json"),
    ), security(()))]
pub async fn signup_challenge(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<Challenge>> {
    let billing = state.billing();
    let domain = match self_signup_target(&state, &headers).await? {
        Some((_, domain)) => domain,
        None if billing.public_instance().await?.is_some() => {
            billing.config.public_domain.clone().unwrap_or_default()
        }
        None => {
            return Err(Problem::unavailable(
                "public signup is not open on this instance",
            ));
        }
    };
    let mut challenge = billing.challenges.issue(Utc::now());
    challenge.domain = Some(domain);
    Ok(Json(challenge))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Stamp {
    pub challenge: String,
    pub counter: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    /// The whole address on the public domain, or only the part before the `@`.
    pub address: String,
    /// Leave it out (the way a web app signs up): the answer holds an
    /// activation link with which the person sets the password on their
    /// device once admitted, and the server never knows it. Given, the
    /// account starts with this password and moves to device sign-in at
    /// its first sign-in.
    #[schema(format = Password)]
    pub password: Option<String>,
    /// Where a forgotten password can be reset (another address than the
    /// new one); set on the account when it opens.
    #[serde(default)]
    pub recovery_address: Option<String>,
    pub stamp: Stamp,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignupView {
    /// `admitted` (the account is open: sign in) or `waiting`.
    pub status: String,
    pub address: String,
    pub account_id: Option<Uuid>,
    /// Place in the waiting line (1 is next).
    pub position: Option<i64>,
    /// Keep it: `GET /v1/public/signup/{token}` tells where the signup stands.
    pub token: String,
    /// Without a password only, shown this once: the link that sets the
    /// password on the person's device once the account is open (its
    /// secret is after `#`; the token above derives from it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation_url: Option<String>,
}

/// The key pair of a new signup and what the answer carries: locked with
/// the password when one is given; else locked for an activation link
/// (`activation::new_key`), whose derived token is also the signup's.
struct SignupKey {
    password_hash: String,
    fingerprint: String,
    public_key: String,
    secret_key: String,
    /// The token the signer keeps, and its hash.
    token: String,
    token_hash: String,
    /// The link's secret, without a password.
    activation: Option<vault::opaque::Activation>,
}

async fn signup_key(uid: String, password: Option<String>) -> ApiResult<SignupKey> {
    vault::cpu::run(move || match password {
        // Its strength was checked with the rest of the signup (`admissible`).
        Some(password) => {
            let key = vault::openpgp::AccountKey::generate(&uid, &password)?;
            let (token, token_hash) = billing::signup_token();
            Ok(SignupKey {
                password_hash: tenants::password::hash(&password)?,
                fingerprint: key.fingerprint,
                public_key: key.public_armored,
                secret_key: key.secret_armored,
                token,
                token_hash,
                activation: None,
            })
        }
        None => {
            let (key, activation) = super::activation::new_key(&uid)?;
            Ok(SignupKey {
                password_hash: String::new(),
                fingerprint: key.fingerprint,
                public_key: key.public_key,
                secret_key: key.locked_secret_key,
                token: activation.token(),
                token_hash: key.token_hash,
                activation: Some(activation),
            })
        }
    })
    .await
}

/// The link that opens a passwordless signup, in the users' app of the
/// tenant's own host (or this instance's).
async fn activation_url(
    state: &AppState,
    tenant: TenantId,
    activation: &vault::opaque::Activation,
) -> ApiResult<String> {
    let host = state
        .store
        .tenant_hostname(tenant)
        .await?
        .unwrap_or_else(|| state.config.mail_hostname.clone());
    Ok(format!(
        "https://{host}/activate#{}",
        activation.link_secret()
    ))
}

/// Sign up for a free account
///
/// Admitted at once while the pool funds places; otherwise the signup waits
/// in line (the account is prepared and opens, in order, when funding grows).
#[utoipa::path(post, path = "/v1/public/signup", tag = "public", operation_id = "signUp",
    request_body = SignupRequest,
    responses(
        (status = 201, description = "The account is open", body = SignupView),
        (status = 202, description = "Waiting for a funded place", body = SignupView),
        (status = 409, description = "The address is taken", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Bad stamp, reserved name, weak password", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Too many signups from this network", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "Public signup is not open", body = ProblemDetails, content_type = "application/problem+json"),
    ), security(()))]
pub async fn sign_up(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<SignupRequest>,
) -> ApiResult<Response> {
    if let Some((tenant, domain)) = self_signup_target(&state, &headers).await? {
        return tenant_sign_up(&state, peer, tenant, &domain, body).await;
    }
    let billing = state.billing();
    if billing.public_instance().await?.is_none() {
        return Err(Problem::unavailable(
            "public signup is not open on this instance",
        ));
    }
    let domain = billing.config.public_domain.clone().unwrap_or_default();
    let local = match body.address.rsplit_once('@') {
        Some((local, host)) if host.eq_ignore_ascii_case(&domain) => local.to_owned(),
        Some((_, host)) => {
            return Err(Problem::invalid(format!(
                "`address`: free accounts are on `{domain}`, not `{host}`"
            )));
        }
        None => body.address.clone(),
    };
    if let Some(why) = billing::signup::refused_local_part(&local) {
        return Err(Problem::invalid(format!("`address`: {why}")));
    }
    let address = billing.public_address(&local)?;
    let recovery_address = admissible(&state, peer, &address, &body).await?;
    let key = signup_key(format!("{local} <{address}>"), body.password).await?;
    let activation_url = match &key.activation {
        Some(activation) => {
            let public = billing.public_instance().await?.ok_or_else(|| {
                Problem::unavailable("public signup is not open on this instance")
            })?;
            Some(activation_url(&state, public.tenant, activation).await?)
        }
        None => None,
    };
    let prepared = NewSignup {
        token_hash: key.token_hash,
        address: address.clone(),
        password_hash: key.password_hash,
        fingerprint: key.fingerprint,
        public_key: key.public_key,
        secret_key: key.secret_key,
        recovery_address,
    };
    let outcome = billing.sign_up(prepared, key.token).await?;
    let (status, view) = match outcome {
        SignupOutcome::Admitted { account, token } => (
            StatusCode::CREATED,
            SignupView {
                status: "admitted".into(),
                address: address.to_string(),
                account_id: Some(account.0),
                position: None,
                token,
                activation_url,
            },
        ),
        SignupOutcome::Waiting { position, token } => (
            StatusCode::ACCEPTED,
            SignupView {
                status: "waiting".into(),
                address: address.to_string(),
                account_id: None,
                position: Some(position),
                token,
                activation_url,
            },
        ),
    };
    Ok((status, Json(view)).into_response())
}

/// What every signup must pass, in this order: a valid stamp for this
/// address, a strong password, a usable recovery address, a free address,
/// the rate limits, and a challenge not spent before (spent now). Answers
/// the recovery address.
async fn admissible(
    state: &AppState,
    peer: SocketAddr,
    address: &tenants::EmailAddress,
    body: &SignupRequest,
) -> ApiResult<Option<tenants::EmailAddress>> {
    let billing = state.billing();
    let stamp = billing
        .challenges
        .check(
            &body.stamp.challenge,
            address.as_str(),
            body.stamp.counter,
            Utc::now(),
        )
        .map_err(|why| Problem::invalid(format!("`stamp`: {why}")))?;
    if let Some(password) = &body.password {
        tenants::password::check_strength(password)?;
    }
    let recovery = match body.recovery_address.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(given) => Some(super::accounts::recovery_address(given, address)?),
    };
    if state.store.account_by_address(address).await?.is_some() {
        return Err(Problem::conflict(format!(
            "the address `{address}` is taken"
        )));
    }
    billing
        .count_signup(peer.ip())
        .map_err(|(wait, why)| Problem::rate_limited(wait, why))?;
    if !state
        .store
        .spend_challenge(&stamp.nonce, stamp.expires_at)
        .await?
    {
        return Err(Problem::invalid(
            "`stamp`: this challenge was already used; ask for a new one",
        ));
    }
    Ok(recovery)
}

/// The tenant (and domain) a signup on this Host goes to, when the Host is
/// a verified hostname of a tenant that allows self-signup.
async fn self_signup_target(
    state: &AppState,
    headers: &HeaderMap,
) -> ApiResult<Option<(TenantId, String)>> {
    let tenant = super::branding::tenant_for_host(state, headers).await?;
    if tenant == state.operator_tenant {
        return Ok(None);
    }
    Ok(state
        .store
        .self_signup_domain(tenant)
        .await?
        .map(|d| (tenant, d)))
}

/// A signup on a tenant's own hostname: an account of that tenant, paid by
/// it like any other (its limits apply), no pool involved.
async fn tenant_sign_up(
    state: &AppState,
    peer: SocketAddr,
    tenant: TenantId,
    domain: &str,
    body: SignupRequest,
) -> ApiResult<Response> {
    let local = match body.address.rsplit_once('@') {
        Some((local, host)) if host.eq_ignore_ascii_case(domain) => local.to_owned(),
        Some((_, host)) => {
            return Err(Problem::invalid(format!(
                "`address`: accounts here are on `{domain}`, not `{host}`"
            )));
        }
        None => body.address.clone(),
    };
    if let Some(why) = billing::signup::refused_local_part(&local) {
        return Err(Problem::invalid(format!("`address`: {why}")));
    }
    let address = tenants::EmailAddress::parse(&format!("{local}@{domain}"))
        .map_err(|e| Problem::invalid(format!("`address`: {e}")))?;
    let recovery_address = admissible(state, peer, &address, &body).await?;
    let t = state
        .store
        .tenant(tenant)
        .await?
        .ok_or_else(|| Problem::not_found("tenant"))?;
    let domain_row = state
        .store
        .domain_by_name(&address.domain())
        .await?
        .filter(|d| d.tenant_id == tenant)
        .ok_or_else(|| {
            Problem::unavailable("self-signup is misconfigured: its domain is not the tenant's")
        })?;
    let key = signup_key(format!("{local} <{address}>"), body.password).await?;
    let new = tenants::store::NewAccount {
        tenant_id: tenant,
        domain_id: domain_row.id,
        address: address.clone(),
        display_name: local.clone(),
        role: tenants::AccountRole::User,
        level: t.policy.min_level,
        password_hash: key.password_hash,
        fingerprint: key.fingerprint,
        public_key: key.public_key,
        secret_key: key.secret_key,
    };
    let account = state.store.create_account("self-signup", new).await?;
    if let Some(recovery) = &recovery_address {
        state
            .store
            .set_recovery_address(account.id, Some(recovery.as_str()))
            .await?;
    }
    let activation_url = match &key.activation {
        Some(activation) => {
            state
                .store
                .create_activation(
                    account.id,
                    &key.token_hash,
                    Utc::now() + chrono::Duration::days(tenants::store::ACTIVATION_DAYS),
                )
                .await?;
            Some(activation_url(state, tenant, activation).await?)
        }
        None => None,
    };
    state.queue_seat_sync(tenant).await;
    let view = SignupView {
        status: "admitted".into(),
        address: address.to_string(),
        account_id: Some(account.id.0),
        position: None,
        token: if key.activation.is_some() {
            key.token
        } else {
            String::new()
        },
        activation_url,
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SelfSignup {
    /// One of the tenant's verified domains; `null` stops self-signup.
    pub domain: Option<String>,
}

/// Allow self-signup on the tenant's hostnames
///
/// People who sign up on one of the tenant's verified hostnames get an
/// account of the tenant in `domain` (its limits and seats apply).
#[utoipa::path(put, path = "/v1/tenants/{tenant_id}/self-signup", tag = "branding", operation_id = "setSelfSignup",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    request_body = SelfSignup,
    responses(
        (status = 200, description = "Saved", body = SelfSignup),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Not one of the tenant's verified domains", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn set_self_signup(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(tenant_id): Path<TenantId>,
    Json(body): Json<SelfSignup>,
) -> ApiResult<Json<serde_json::Value>> {
    if let Some(domain) = &body.domain {
        let name = tenants::DomainName::parse(domain)
            .map_err(|e| Problem::invalid(format!("`domain`: {e}")))?;
        let found = state
            .store
            .domain_by_name(&name)
            .await?
            .filter(|d| d.tenant_id == tenant_id);
        if found.is_none_or(|d| d.verified_at.is_none()) {
            return Err(Problem::invalid(format!(
                "`domain`: `{name}` is not a verified domain of this tenant"
            )));
        }
    }
    state
        .store
        .set_self_signup_domain(&actor.audit_name(), tenant_id, body.domain.as_deref())
        .await?;
    Ok(Json(serde_json::json!({ "domain": body.domain })))
}

/// Where a signup stands
#[utoipa::path(get, path = "/v1/public/signup/{token}", tag = "public", operation_id = "getSignup",
    params(("token" = String, Path, description = "The token the signup returned")),
    responses(
        (status = 200, description = "Waiting (with its place) or admitted", body = SignupStatus),
        (status = 404, description = "No signup has this token", body = ProblemDetails, content_type = "application/problem+json"),
    ), security(()))]
pub async fn signup_status(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> ApiResult<Json<SignupStatus>> {
    let status = state
        .store
        .signup_status(&billing::token_hash(&token))
        .await?;
    Ok(Json(status.ok_or(Problem::not_found("signup"))?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Also each direct child tenant (a reseller's roll-up).
    pub children: Option<bool>,
    /// Months of history (1 to 36, default 12).
    pub months: Option<i64>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantUsage {
    pub tenant_id: TenantId,
    pub name: String,
    /// Bytes stored by the tenant's subtree (its own accounts and every
    /// descendant tenant's), counted against its package.
    pub storage_used_bytes: i64,
    pub storage_quota_bytes: i64,
    /// Newest first; the current month is live.
    pub months: Vec<UsageMonth>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    #[serde(flatten)]
    pub tenant: TenantUsage,
    /// With `children=true`: each direct child.
    pub children: Vec<TenantUsage>,
    /// Bytes stored by this tenant's whole subtree (its own
    /// `storage_used_bytes`, which already includes every child's).
    pub total_storage_used_bytes: i64,
    /// This tenant and the children listed, this month.
    pub total_active_accounts: i64,
}

async fn usage_of(
    state: &AppState,
    tenant: &tenants::Tenant,
    months: i64,
) -> ApiResult<TenantUsage> {
    Ok(TenantUsage {
        tenant_id: tenant.id,
        name: tenant.name.clone(),
        storage_used_bytes: tenant.storage_used_bytes,
        storage_quota_bytes: tenant.limits.storage_quota_bytes,
        months: state.store.usage_history(tenant.id, months).await?,
    })
}

/// One CSV field: quoted when it must be, and a leading `= + - @` (or tab,
/// carriage return) defused with a `'`, so that a tenant's name cannot
/// become a formula in whoever's spreadsheet opens the export.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("Acme"), "Acme");
        assert_eq!(csv_field("Acme, Inc."), "\"Acme, Inc.\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(
            csv_field("=HYPERLINK(\"http://evil\")"),
            "\"'=HYPERLINK(\"\"http://evil\"\")\""
        );
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("-1"), "'-1");
    }
}

/// A tenant's usage
///
/// Storage (current and monthly peak), mail received and sent and active
/// accounts per month; with `children=true`, each direct child too (a
/// reseller's roll-up), as JSON or CSV.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/usage", tag = "billing", operation_id = "getUsage",
    params(("tenant_id" = TenantId, Path, description = "Tenant id"), UsageQuery),
    responses(
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 200, description = "Usage (JSON, or text/csv with format=csv)", body = UsageReport),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Bad query", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn usage(
    State(state): State<AppState>,
    _admin: Admin,
    Path(tenant_id): Path<TenantId>,
    Query(query): Query<UsageQuery>,
) -> ApiResult<Response> {
    let months = query.months.unwrap_or(12);
    if !(1..=36).contains(&months) {
        return Err(Problem::invalid("`months` must be between 1 and 36"));
    }
    let csv = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(Problem::invalid(format!(
                "`format` {other:?} is not `json` or `csv`"
            )));
        }
    };
    let tenant = state
        .store
        .tenant(tenant_id)
        .await?
        .ok_or(Problem::not_found("tenant"))?;
    let mut children = Vec::new();
    if query.children.unwrap_or(false) {
        let filter = TenantFilter {
            within: None,
            parent_id: Some(tenant_id),
            kind: None,
            status: None,
        };
        let mut after = None;
        loop {
            let page = state
                .store
                .list_tenants(
                    &filter,
                    Page {
                        after,
                        limit: Page::MAX_LIMIT,
                    },
                )
                .await?;
            let last = page.last().map(|t| t.id.0);
            for child in &page {
                children.push(usage_of(&state, child, months).await?);
            }
            if page.len() < Page::MAX_LIMIT as usize {
                break;
            }
            after = last;
        }
    }
    let own = usage_of(&state, &tenant, months).await?;
    let all: Vec<&TenantUsage> = std::iter::once(&own).chain(children.iter()).collect();
    if csv {
        let mut out = String::from(
            "tenant_id,tenant,month,storage_bytes,storage_peak_bytes,messages_received,messages_sent,active_accounts\r\n",
        );
        for t in &all {
            for m in &t.months {
                out.push_str(&format!(
                    "{},{},{},{},{},{},{},{}\r\n",
                    t.tenant_id,
                    csv_field(&t.name),
                    m.month,
                    m.storage_bytes,
                    m.storage_peak_bytes,
                    m.messages_received,
                    m.messages_sent,
                    m.active_accounts
                ));
            }
        }
        let disposition = format!("attachment; filename=\"usage-{tenant_id}.csv\"");
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            out,
        )
            .into_response());
    }
    // Usage is counted up the tree: summing the children would count them twice.
    let total_storage_used_bytes = own.storage_used_bytes;
    let total_active_accounts = all
        .iter()
        .map(|t| t.months.first().map(|m| m.active_accounts).unwrap_or(0))
        .sum();
    Ok(Json(UsageReport {
        tenant: own,
        children,
        total_storage_used_bytes,
        total_active_accounts,
    })
    .into_response())
}

/// A count in a query string: absent means `default`; anything but a whole
/// number within `range` is refused with the parameter's name.
fn count_param(
    name: &str,
    value: Option<&str>,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> ApiResult<u32> {
    let Some(value) = value else {
        return Ok(default);
    };
    value
        .parse::<u32>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            Problem::bad_request(format!(
                "`{name}` must be a whole number from {} to {}; got {value:?}",
                range.start(),
                range.end()
            ))
        })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TrafficQuery {
    /// Days to report, ending today (1 to 366, default 30).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 366)]
    pub days: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrafficReport {
    pub tenant_id: TenantId,
    /// One entry per UTC day, oldest first, ending today; days without mail are zeros.
    pub days: Vec<TrafficDay>,
}

/// A tenant's mail per day
///
/// Messages received and sent, and their bytes, per UTC day, by the
/// tenant's accounts and those of every tenant below it (a reseller sees
/// its whole tree). A message is sent when it is the Sent copy of a
/// submission; everything else was received. Messages deleted since are
/// not counted (the monthly usage keeps them).
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/traffic", tag = "billing", operation_id = "getTraffic",
    params(("tenant_id" = TenantId, Path, description = "Tenant id"), TrafficQuery),
    responses(
        (status = 200, description = "Mail per day", body = TrafficReport),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn traffic(
    State(state): State<AppState>,
    _admin: Admin,
    Path(tenant_id): Path<TenantId>,
    Query(query): Query<TrafficQuery>,
) -> ApiResult<Json<TrafficReport>> {
    let days = count_param("days", query.days.as_deref(), 30, 1..=366)?;
    let days = state
        .store
        .traffic(tenant_id, Utc::now().date_naive(), days)
        .await?;
    Ok(Json(TrafficReport { tenant_id, days }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PoolHistoryQuery {
    /// Calendar months to report, ending with this one (1 to 120, default 12).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 120)]
    pub months: Option<String>,
}

/// The funding pool month by month
///
/// From the pool's ledger, per calendar month (UTC): free-account-months
/// credited (paid invoices, less refunds reversed) and debited (free
/// accounts), the balance at the month's end (everything before included),
/// the free accounts that balance funds over the horizon, and the free
/// accounts debited. For the operator.
#[utoipa::path(get, path = "/v1/pool/history", tag = "billing", operation_id = "getPoolHistory",
    params(PoolHistoryQuery),
    responses(
        (status = 200, description = "The pool per month, oldest first", body = PoolHistory),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the operator", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn pool_history(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Query(query): Query<PoolHistoryQuery>,
) -> ApiResult<Json<PoolHistory>> {
    operator_only(&actor, "sees the pool's history")?;
    let months = count_param("months", query.months.as_deref(), 12, 1..=120)?;
    let horizon = state.billing().config.pool_horizon_months;
    Ok(Json(
        state
            .store
            .pool_history(horizon, Utc::now().date_naive(), months)
            .await?,
    ))
}
