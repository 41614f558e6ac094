//! Hosted domains: creation (with a DKIM key), the DNS records to publish
//! with their live status, and ownership verification through DNS.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tenants::dns_records::{self, ExpectedRecord, RecordStatus, RecordType};
use tenants::{
    Actor, DkimAlgorithm, DkimKeyState, Domain, DomainId, DomainName, NewDomain, Role, TenantId,
    TenantStatus,
};
use utoipa::ToSchema;

use super::{PageQuery, Paged};
use crate::AppState;
use crate::auth::Admin;
use crate::problem::{ApiResult, Json, OptionalJson, Path, Problem, ProblemDetails, Query};

#[derive(Serialize, ToSchema)]
pub struct DomainView {
    pub id: DomainId,
    pub tenant_id: TenantId,
    pub name: DomainName,
    pub verified: bool,
    pub verified_at: Option<DateTime<Utc>>,
    /// `dns` when proven by the TXT record, `forced` when an operator vouched for it.
    pub verification_method: Option<String>,
    /// The TXT record that proves ownership.
    pub verification_record: ExpectedRecord,
    pub created_at: DateTime<Utc>,
}

impl From<&Domain> for DomainView {
    fn from(d: &Domain) -> DomainView {
        DomainView {
            id: d.id,
            tenant_id: d.tenant_id,
            name: d.name.clone(),
            verified: d.verified_at.is_some(),
            verified_at: d.verified_at,
            verification_method: d.verification_method.clone(),
            verification_record: dns_records::verification_record(d),
            created_at: d.created_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDomain {
    /// The domain name, e.g. `example.com` (international names in their `xn--` form).
    pub name: String,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct VerifyDomain {
    /// Operator only: mark the domain verified without DNS (recorded in the audit log).
    #[serde(default)]
    pub force: bool,
}

#[derive(Serialize, ToSchema)]
pub struct DnsRecordStatus {
    #[serde(flatten)]
    pub record: ExpectedRecord,
    pub status: RecordStatus,
    /// What DNS returned at this name and type.
    pub found: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DnsRecords {
    pub domain: DomainName,
    /// Whether every required record is published as expected.
    pub ready: bool,
    pub records: Vec<DnsRecordStatus>,
}

/// One DKIM key of a domain, without its private half.
#[derive(Serialize, ToSchema)]
pub struct DkimKeyView {
    pub selector: String,
    pub algorithm: DkimAlgorithm,
    /// `pending` (publish its record; it signs once published), `active` (signs), `retired`.
    pub state: DkimKeyState,
    /// The TXT record to publish for it.
    pub record: ExpectedRecord,
    pub created_at: DateTime<Utc>,
    pub activated_at: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct DkimKeys {
    pub domain: DomainName,
    pub keys: Vec<DkimKeyView>,
}

async fn dkim_view(state: &AppState, domain: &Domain) -> ApiResult<DkimKeys> {
    let keys = state.store.dkim_keys(domain.id).await?;
    let now = Utc::now();
    Ok(DkimKeys {
        domain: domain.name.clone(),
        keys: keys
            .iter()
            .filter(|k| k.published(now))
            .map(|k| DkimKeyView {
                selector: k.selector.clone(),
                algorithm: k.algorithm,
                state: k.state,
                record: dns_records::dkim_record(domain, k),
                created_at: k.created_at,
                activated_at: k.activated_at,
                retired_at: k.retired_at,
            })
            .collect(),
    })
}

async fn new_dkim_keys(
    state: &AppState,
    name: &DomainName,
) -> ApiResult<Vec<tenants::store::NewDkimKey>> {
    let inbound = state.inbound.clone();
    let name = name.to_string();
    // The signing keys are kept sealed under the instance master key, bound to their domain.
    let keys = vault::cpu::run(move || mail::outbound::generate_dkim_keys(inbound.master(), &name))
        .await?;
    Ok(keys)
}

/// Creates a domain for `tenant_id`, with its verification token and DKIM key.
pub async fn create(
    state: &AppState,
    actor: &Actor,
    tenant_id: TenantId,
    name: DomainName,
) -> ApiResult<Domain> {
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
    if state.store.domain_by_name(&name).await?.is_some() {
        return Err(Problem::conflict(format!(
            "the domain `{name}` is already hosted on this instance"
        )));
    }
    let token: String = {
        let bytes: [u8; 20] = rand::rng().random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    let dkim_keys = new_dkim_keys(state, &name).await?;
    let new = NewDomain {
        tenant_id,
        name,
        verification_token: token,
        dkim_keys,
    };
    let domain = state.store.create_domain(&actor.audit_name(), new).await?;
    // Keep looking for the ownership record in the background, so the domain
    // verifies itself once the tenant has published it.
    worker::enqueue(
        &state.store,
        &worker::DomainCheck {
            domain_id: domain.id,
        },
        None,
    )
    .await?;
    Ok(domain)
}

/// Add a domain to a tenant
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/domains", tag = "domains", operation_id = "createDomain",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    request_body = CreateDomain,
    responses(
        (status = 201, description = "Created; publish its DNS records next", body = DomainView),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Already hosted, or package exceeded", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid domain name", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn create_domain(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(tenant_id): Path<TenantId>,
    Json(body): Json<CreateDomain>,
) -> ApiResult<(StatusCode, Json<DomainView>)> {
    let name = DomainName::parse(&body.name)?;
    let domain = create(&state, &actor, tenant_id, name).await?;
    Ok((StatusCode::CREATED, Json(DomainView::from(&domain))))
}

/// List a tenant's domains
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/domains", tag = "domains", operation_id = "listDomains",
    params(("tenant_id" = TenantId, Path, description = "Tenant id"), PageQuery),
    responses(
        (status = 200, description = "A page of domains", body = Paged<DomainView>),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_domains(
    State(state): State<AppState>,
    _admin: Admin,
    Path(tenant_id): Path<TenantId>,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<Paged<DomainView>>> {
    let page = query.page()?;
    let domains = state.store.list_domains(tenant_id, page).await?;
    Ok(Json(Paged::new(
        domains.iter().map(DomainView::from).collect(),
        page,
        |d| d.id.0,
    )))
}

async fn load(state: &AppState, id: DomainId) -> ApiResult<Domain> {
    state
        .store
        .domain(id)
        .await?
        .ok_or(Problem::not_found("domain"))
}

/// Get a domain
#[utoipa::path(get, path = "/v1/domains/{domain_id}", tag = "domains", operation_id = "getDomain",
    params(("domain_id" = DomainId, Path, description = "Domain id")),
    responses(
        (status = 200, description = "The domain", body = DomainView),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such domain", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn get_domain(
    State(state): State<AppState>,
    _admin: Admin,
    Path(domain_id): Path<DomainId>,
) -> ApiResult<Json<DomainView>> {
    Ok(Json(DomainView::from(&load(&state, domain_id).await?)))
}

/// Remove a domain
///
/// Only a domain without accounts can be removed (deleted accounts count:
/// their addresses stay reserved while the domain is hosted here). The
/// operator may remove an unverified domain (a claim) with the accounts
/// made in it, which never received or sent anything; claims also lapse on
/// their own after `domains.claim_days`.
#[utoipa::path(delete, path = "/v1/domains/{domain_id}", tag = "domains", operation_id = "deleteDomain",
    params(("domain_id" = DomainId, Path, description = "Domain id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such domain", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The domain still has accounts", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn delete_domain(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(domain_id): Path<DomainId>,
) -> ApiResult<StatusCode> {
    let domain = load(&state, domain_id).await?;
    if domain.verified_at.is_none() && actor.role == Role::Operator {
        // An unverified claim: the operator releases it with the inert
        // accounts made in it, freeing the name for its real owner.
        state
            .store
            .release_claim(&actor.audit_name(), &domain)
            .await?;
    } else {
        state
            .store
            .delete_domain(&actor.audit_name(), &domain)
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

fn dns_kind(t: RecordType) -> mail::dns::Kind {
    match t {
        RecordType::Txt => mail::dns::Kind::Txt,
        RecordType::Mx => mail::dns::Kind::Mx,
        RecordType::Cname => mail::dns::Kind::Cname,
        RecordType::Srv => mail::dns::Kind::Srv,
        RecordType::Tlsa => mail::dns::Kind::Tlsa,
    }
}

/// The DNS records a domain must publish, with what DNS says now
#[utoipa::path(get, path = "/v1/domains/{domain_id}/dns-records", tag = "domains", operation_id = "getDnsRecords",
    params(("domain_id" = DomainId, Path, description = "Domain id")),
    responses(
        (status = 200, description = "Each record with its live status", body = DnsRecords),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such domain", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn dns_records(
    State(state): State<AppState>,
    _admin: Admin,
    Path(domain_id): Path<DomainId>,
) -> ApiResult<Json<DnsRecords>> {
    let domain = load(&state, domain_id).await?;
    let keys = state.store.dkim_keys(domain.id).await?;
    let mode = state.store.mta_sts_mode(domain.id).await?;
    let expected = dns_records::expected_records(
        &domain,
        &keys,
        &state.config.mail_hostname,
        mode,
        state.config.client_ports,
        mx_tlsa(&state).await?.as_deref(),
    );
    let mut lookups = tokio::task::JoinSet::new();
    for (i, record) in expected.iter().enumerate() {
        let (dns, name, kind) = (
            state.dns.clone(),
            record.name.clone(),
            dns_kind(record.record_type),
        );
        lookups.spawn(async move { (i, dns.lookup(&name, kind).await) });
    }
    let mut answers: Vec<Option<_>> = (0..expected.len()).map(|_| None).collect();
    while let Some(done) = lookups.join_next().await {
        let (i, answer) = done.map_err(Problem::internal)?;
        answers[i] = Some(answer);
    }
    let records: Vec<DnsRecordStatus> = expected
        .into_iter()
        .zip(answers)
        .map(|(record, answer)| match answer {
            Some(Ok(found)) => DnsRecordStatus {
                status: dns_records::judge(&record, &found),
                record,
                found,
            },
            _ => DnsRecordStatus {
                status: RecordStatus::Unknown,
                record,
                found: Vec::new(),
            },
        })
        .collect();
    let ready = records
        .iter()
        .all(|r| !r.record.required || r.status == RecordStatus::Verified);
    Ok(Json(DnsRecords {
        domain: domain.name,
        ready,
        records,
    }))
}

/// Prove ownership of a domain through its verification TXT record
///
/// Looks the `_caliop-verification` TXT record up now. When it is missing or
/// wrong the answer is 422 and says what DNS returned. The operator may pass
/// `{"force": true}` to vouch for the domain without DNS; that is audited.
#[utoipa::path(post, path = "/v1/domains/{domain_id}/verify", tag = "domains", operation_id = "verifyDomain",
    params(("domain_id" = DomainId, Path, description = "Domain id")),
    request_body(content = Option<VerifyDomain>, description = "Optional; `{}` or no body verifies through DNS"),
    responses(
        (status = 200, description = "Verified", body = DomainView),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or `force` by a non-operator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such domain", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "The record is missing or wrong; `found` lists what DNS returned", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "DNS could not be asked", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn verify_domain(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(domain_id): Path<DomainId>,
    OptionalJson(body): OptionalJson<VerifyDomain>,
) -> ApiResult<Json<DomainView>> {
    let force = body.is_some_and(|b| b.force);
    let domain = load(&state, domain_id).await?;
    if force {
        if actor.role != Role::Operator {
            return Err(Problem::forbidden(
                "only the operator can force a domain's verification",
            ));
        }
        let domain = state
            .store
            .mark_domain_verified(&actor.audit_name(), &domain, "forced")
            .await?;
        return Ok(Json(DomainView::from(&domain)));
    }
    if domain.verified_at.is_some() {
        return Ok(Json(DomainView::from(&domain)));
    }
    let expected = dns_records::verification_record(&domain);
    let found = state
        .dns
        .lookup(&expected.name, mail::dns::Kind::Txt)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "DNS lookup failed during domain verification");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "dns-unavailable",
                e.to_string(),
            )
        })?;
    match dns_records::judge(&expected, &found) {
        RecordStatus::Verified => {
            let domain = state
                .store
                .mark_domain_verified(&actor.audit_name(), &domain, "dns")
                .await?;
            Ok(Json(DomainView::from(&domain)))
        }
        RecordStatus::Missing => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "verification-failed",
            format!(
                "no TXT record at {}; publish `{}` there",
                expected.name, expected.value
            ),
        )
        .with_found(found)),
        _ => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "verification-failed",
            format!(
                "the TXT record at {} says {}, not `{}`",
                expected.name,
                found
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                expected.value
            ),
        )
        .with_found(found)),
    }
}

/// List a domain's DKIM keys
///
/// The keys outgoing mail is signed with (one RSA-2048, one Ed25519), any
/// pending rotation, and retired keys still worth publishing, each with the
/// TXT record to publish.
#[utoipa::path(get, path = "/v1/domains/{domain_id}/dkim", tag = "domains", operation_id = "listDkimKeys",
    params(("domain_id" = DomainId, Path, description = "Domain id")),
    responses(
        (status = 200, description = "The domain's DKIM keys", body = DkimKeys),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such domain", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn dkim_keys(
    State(state): State<AppState>,
    _admin: Admin,
    Path(domain_id): Path<DomainId>,
) -> ApiResult<Json<DkimKeys>> {
    let domain = load(&state, domain_id).await?;
    Ok(Json(dkim_view(&state, &domain).await?))
}

/// Rotate a domain's DKIM keys
///
/// Creates a new RSA and Ed25519 key as `pending`. Mail stays signed with
/// the current keys until the new records are published: a background job
/// watches DNS and switches as soon as they are, then keeps the old records
/// listed for seven days so mail signed just before the switch still
/// verifies. One rotation at a time.
#[utoipa::path(post, path = "/v1/domains/{domain_id}/dkim/rotate", tag = "domains", operation_id = "rotateDkimKeys",
    params(("domain_id" = DomainId, Path, description = "Domain id")),
    responses(
        (status = 202, description = "New keys pending: publish their records", body = DkimKeys),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such domain", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "A rotation is already pending", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn rotate_dkim(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(domain_id): Path<DomainId>,
) -> ApiResult<(StatusCode, Json<DkimKeys>)> {
    let domain = load(&state, domain_id).await?;
    let keys = new_dkim_keys(&state, &domain.name).await?;
    state
        .store
        .add_pending_dkim_keys(&actor.audit_name(), domain.tenant_id, domain.id, &keys)
        .await?;
    worker::enqueue(
        &state.store,
        &worker::DkimSwitch {
            domain_id: domain.id,
        },
        None,
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(dkim_view(&state, &domain).await?),
    ))
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MtaStsSetting {
    /// `testing` (the default: failures are reported, mail still flows),
    /// `enforce` (senders that honour MTA-STS deliver only over verified
    /// TLS to our MX) or `none` (the policy is withdrawn).
    pub mode: dns_records::MtaStsMode,
}

#[derive(Serialize, ToSchema)]
pub struct MtaStsView {
    pub mode: dns_records::MtaStsMode,
    /// Served at `url`, over HTTPS, with a certificate for `mta-sts.{domain}`.
    pub policy: String,
    pub url: String,
    /// The `id` the `_mta-sts` TXT record carries; it changes with the policy.
    pub id: String,
}

fn mta_sts_view(state: &AppState, domain: &Domain, mode: dns_records::MtaStsMode) -> MtaStsView {
    let policy = dns_records::mta_sts_policy(mode, &state.config.mail_hostname);
    MtaStsView {
        mode,
        id: dns_records::mta_sts_id(&policy),
        url: format!("https://mta-sts.{}/.well-known/mta-sts.txt", domain.name),
        policy,
    }
}

/// A domain's MTA-STS policy
#[utoipa::path(get, path = "/v1/domains/{domain_id}/mta-sts", tag = "domains", operation_id = "getMtaSts",
    params(("domain_id" = DomainId, Path, description = "Domain id")),
    responses(
        (status = 200, description = "The policy we publish for the domain", body = MtaStsView),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such domain", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn get_mta_sts(
    State(state): State<AppState>,
    _admin: Admin,
    Path(domain_id): Path<DomainId>,
) -> ApiResult<Json<MtaStsView>> {
    let domain = load(&state, domain_id).await?;
    let mode = state.store.mta_sts_mode(domain.id).await?;
    Ok(Json(mta_sts_view(&state, &domain, mode)))
}

/// Choose a domain's MTA-STS mode
///
/// The policy's `id` changes with it: update the `_mta-sts` TXT record
/// (listed in the domain's DNS records) so that senders fetch it again.
#[utoipa::path(put, path = "/v1/domains/{domain_id}/mta-sts", tag = "domains", operation_id = "setMtaSts",
    params(("domain_id" = DomainId, Path, description = "Domain id")),
    request_body = MtaStsSetting,
    responses(
        (status = 200, description = "The policy now published", body = MtaStsView),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such domain", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Not a mode", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn set_mta_sts(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(domain_id): Path<DomainId>,
    Json(body): Json<MtaStsSetting>,
) -> ApiResult<Json<MtaStsView>> {
    let domain = load(&state, domain_id).await?;
    state
        .store
        .set_mta_sts_mode(&actor.audit_name(), domain.tenant_id, domain.id, body.mode)
        .await?;
    Ok(Json(mta_sts_view(&state, &domain, body.mode)))
}

/// TLS reports about a domain
///
/// What other MTAs reported (SMTP TLS Reporting, RFC 8460) about delivering
/// to this domain over TLS: per sender and day, the sessions that
/// succeeded and failed under the MTA-STS or DANE policy, and why they
/// failed. They send them to the `rua` of the domain's `_smtp._tls` record.
#[utoipa::path(get, path = "/v1/domains/{domain_id}/tls-reports", tag = "domains", operation_id = "listTlsReports",
    params(("domain_id" = DomainId, Path, description = "Domain id")),
    responses(
        (status = 200, description = "The newest reports first (at most 200)", body = Vec<tenants::store::TlsReport>),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such domain", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn tls_reports(
    State(state): State<AppState>,
    _admin: Admin,
    Path(domain_id): Path<DomainId>,
) -> ApiResult<Json<Vec<tenants::store::TlsReport>>> {
    let domain = load(&state, domain_id).await?;
    Ok(Json(state.store.tls_reports(domain.id, 200).await?))
}

/// The DANE record of our MX: the `3 1 1` hash of the mail host's ACME
/// certificate, when there is one (its key is kept across renewals, so
/// the record stays true).
pub(crate) async fn mx_tlsa(state: &AppState) -> ApiResult<Option<String>> {
    let mail_host = state.config.mail_hostname.to_ascii_lowercase();
    let certificates = state.store.certificates().await?;
    Ok(certificates
        .iter()
        .find(|c| c.name == mail_host)
        .and_then(|c| c.chain_pem.as_deref())
        .and_then(|chain| mail::acme::tlsa(chain).ok()))
}
