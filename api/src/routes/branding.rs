//! White label: a tenant's brand, its logo and favicon, its custom
//! hostnames, and the public brand of whatever host a page is asked on.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tenants::store::{BrandFields, Hostname};
use tenants::{DomainName, EmailAddress, TenantId};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Admin;
use crate::brand_assets;
use crate::problem::{ApiResult, Json, Path, Problem, ProblemDetails};

/// Caliop's own brand: what shows where no tenant set anything.
pub fn caliop_brand() -> BrandFields {
    BrandFields::caliop()
}

pub const LOGO_LIMIT: usize = 512 * 1024;
pub const FAVICON_LIMIT: usize = 64 * 1024;

#[derive(Debug, Serialize, ToSchema)]
pub struct BrandingView {
    pub tenant_id: TenantId,
    /// What this tenant set (unset fields are inherited).
    pub own: BrandFields,
    /// What its users see: its own fields, then its reseller's, then the operator's.
    pub effective: BrandFields,
    /// Where the logo and favicon in effect are served, if any.
    pub logo_url: Option<String>,
    pub favicon_url: Option<String>,
}

async fn view(state: &AppState, tenant: TenantId) -> ApiResult<BrandingView> {
    let effective = state.store.brand(tenant, &caliop_brand()).await?;
    let logo_owner = state.store.brand_asset_owner(tenant, "logo").await?;
    let favicon_owner = state.store.brand_asset_owner(tenant, "favicon").await?;
    Ok(BrandingView {
        tenant_id: tenant,
        own: state.store.own_brand(tenant).await?,
        effective,
        logo_url: logo_owner.map(|t| format!("/v1/tenants/{t}/branding/logo")),
        favicon_url: favicon_owner.map(|t| format!("/v1/tenants/{t}/branding/favicon")),
    })
}

/// A tenant's brand
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/branding", tag = "branding", operation_id = "getBranding",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "Its own brand fields and those in effect", body = BrandingView),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn get_branding(
    State(state): State<AppState>,
    _admin: Admin,
    Path(tenant_id): Path<TenantId>,
) -> ApiResult<Json<BrandingView>> {
    Ok(Json(view(&state, tenant_id).await?))
}

fn check_url(field: &str, url: &str) -> Result<(), Problem> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| Problem::invalid(format!("`{field}` must be an https:// URL")))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if DomainName::parse(host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)).is_err()
        || url.len() > 500
    {
        return Err(Problem::invalid(format!(
            "`{field}` {url:?} is not a valid https:// URL"
        )));
    }
    Ok(())
}

/// Checks every field of a brand; the detail names the field.
pub fn check_brand(fields: &BrandFields) -> Result<(), Problem> {
    if let Some(name) = &fields.product_name {
        let n = name.trim().chars().count();
        if n == 0 || n > 60 || name.chars().any(char::is_control) {
            return Err(Problem::invalid(
                "`product_name` must be 1 to 60 printable characters",
            ));
        }
    }
    for (field, color) in [
        ("primary_color", &fields.primary_color),
        ("accent_color", &fields.accent_color),
    ] {
        if let Some(color) = color {
            brand_assets::check_color(field, color).map_err(Problem::invalid)?;
        }
    }
    if let Some(address) = &fields.support_address {
        EmailAddress::parse(address).map_err(|_| {
            Problem::invalid(format!(
                "`support_address` {address:?} is not an email address"
            ))
        })?;
    }
    for (field, url) in [
        ("legal_url", &fields.legal_url),
        ("privacy_url", &fields.privacy_url),
    ] {
        if let Some(url) = url {
            check_url(field, url)?;
        }
    }
    if let Some(language) = &fields.default_language
        && !["fr", "en"].contains(&language.as_str())
    {
        return Err(Problem::invalid(format!(
            "`default_language` {language:?} is not `fr` or `en`"
        )));
    }
    Ok(())
}

/// Set a tenant's brand
///
/// Replaces the tenant's own fields; a field left out (or null) is
/// inherited from its reseller, then the operator. Colours must keep text
/// readable against white (WCAG AA contrast, 4.5:1).
#[utoipa::path(put, path = "/v1/tenants/{tenant_id}/branding", tag = "branding", operation_id = "setBranding",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    request_body = BrandFields,
    responses(
        (status = 200, description = "The brand", body = BrandingView),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid or unreadable", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn set_branding(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(tenant_id): Path<TenantId>,
    Json(body): Json<BrandFields>,
) -> ApiResult<Json<BrandingView>> {
    check_brand(&body)?;
    state
        .store
        .set_brand(&actor.audit_name(), tenant_id, &body)
        .await?;
    Ok(Json(view(&state, tenant_id).await?))
}

async fn upload(
    state: &AppState,
    actor: &tenants::Actor,
    tenant: TenantId,
    kind: &'static str,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<BrandingView> {
    let limit = if kind == "logo" {
        LOGO_LIMIT
    } else {
        FAVICON_LIMIT
    };
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        brand_assets::check_size(kind, length, limit)
            .map_err(|why| Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", why))?;
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!(
                "the {kind} is larger than the limit of {} KiB",
                limit / 1024
            ),
        )
    })?;
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let content_type =
        brand_assets::check_image(kind, declared, &bytes, limit).map_err(Problem::invalid)?;
    state
        .store
        .set_brand_asset(&actor.audit_name(), tenant, kind, content_type, &bytes)
        .await?;
    view(state, tenant).await
}

/// Upload the logo
///
/// The image itself as the body: PNG, WebP or SVG, at most 512 KiB, its
/// bytes matching its Content-Type. SVGs with scripts, event handlers or
/// external references are refused.
#[utoipa::path(put, path = "/v1/tenants/{tenant_id}/branding/logo", tag = "branding", operation_id = "setLogo",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    request_body(content = Vec<u8>, content_type = "image/png", description = "image/png, image/webp or image/svg+xml"),
    responses(
        (status = 200, description = "The brand", body = BrandingView),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Too large", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Not an accepted image, or an unsafe SVG", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn set_logo(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(tenant_id): Path<TenantId>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<BrandingView>> {
    Ok(Json(
        upload(&state, &actor, tenant_id, "logo", &headers, body).await?,
    ))
}

/// Upload the favicon
///
/// As the logo, at most 64 KiB.
#[utoipa::path(put, path = "/v1/tenants/{tenant_id}/branding/favicon", tag = "branding", operation_id = "setFavicon",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    request_body(content = Vec<u8>, content_type = "image/png", description = "image/png, image/webp or image/svg+xml"),
    responses(
        (status = 200, description = "The brand", body = BrandingView),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Too large", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Not an accepted image, or an unsafe SVG", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn set_favicon(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(tenant_id): Path<TenantId>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<BrandingView>> {
    Ok(Json(
        upload(&state, &actor, tenant_id, "favicon", &headers, body).await?,
    ))
}

fn image(asset: tenants::store::BrandAsset) -> Response {
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            // An SVG opened on its own runs nothing and fetches nothing.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; sandbox".to_owned(),
            ),
            (header::ETAG, format!("\"{}\"", asset.sha256)),
            (header::CACHE_CONTROL, "public, max-age=300".to_owned()),
        ],
        asset.bytes,
    )
        .into_response()
}

/// The hostname a request was made to, without its port.
fn request_host(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let host = host
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map(|(h, _)| h)
        .unwrap_or(host);
    DomainName::parse(host).ok().map(|d| d.to_string())
}

/// The tenant whose brand a host shows: the owner of a verified hostname, else the operator.
pub async fn tenant_for_host(state: &AppState, headers: &HeaderMap) -> ApiResult<TenantId> {
    if let Some(host) = request_host(headers)
        && let Some(tenant) = state.store.tenant_by_hostname(&host).await?
        && state
            .store
            .tenant(tenant)
            .await?
            .is_some_and(|t| t.status == tenants::TenantStatus::Active)
    {
        return Ok(tenant);
    }
    Ok(state.operator_tenant)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PublicBrand {
    #[serde(flatten)]
    pub brand: BrandFields,
    /// On this same host.
    pub logo_url: Option<String>,
    pub favicon_url: Option<String>,
}

/// The brand of this host
///
/// Public pages (sign-in, signup, the admin app) ask it on the host they
/// are served from: a tenant's verified hostname gives the tenant's brand;
/// any other host, the operator's. Never another tenant's.
#[utoipa::path(get, path = "/v1/public/branding", tag = "public", operation_id = "getPublicBranding",
    responses((status = 200, description = "The brand for the requested Host", body = PublicBrand)), security(()))]
pub async fn public_branding(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<PublicBrand>> {
    let tenant = tenant_for_host(&state, &headers).await?;
    let brand = state.store.brand(tenant, &caliop_brand()).await?;
    let logo = state.store.brand_asset_owner(tenant, "logo").await?;
    let favicon = state.store.brand_asset_owner(tenant, "favicon").await?;
    Ok(Json(PublicBrand {
        brand,
        logo_url: logo.map(|_| "/v1/public/branding/logo".to_owned()),
        favicon_url: favicon.map(|_| "/v1/public/branding/favicon".to_owned()),
    }))
}

async fn public_asset(state: &AppState, headers: &HeaderMap, kind: &str) -> ApiResult<Response> {
    let tenant = tenant_for_host(state, headers).await?;
    let owner = state
        .store
        .brand_asset_owner(tenant, kind)
        .await?
        .ok_or_else(|| Problem::not_found(if kind == "logo" { "logo" } else { "favicon" }))?;
    let asset = state
        .store
        .brand_asset(owner, kind)
        .await?
        .ok_or_else(|| Problem::not_found("logo"))?;
    Ok(image(asset))
}

/// The logo of this host's brand
#[utoipa::path(get, path = "/v1/public/branding/logo", tag = "public", operation_id = "getPublicLogo",
    responses(
        (status = 200, description = "The image", content_type = "image/png"),
        (status = 404, description = "No logo", body = ProblemDetails, content_type = "application/problem+json"),
    ), security(()))]
pub async fn public_logo(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    public_asset(&state, &headers, "logo").await
}

/// The favicon of this host's brand
#[utoipa::path(get, path = "/v1/public/branding/favicon", tag = "public", operation_id = "getPublicFavicon",
    responses(
        (status = 200, description = "The image", content_type = "image/png"),
        (status = 404, description = "No favicon", body = ProblemDetails, content_type = "application/problem+json"),
    ), security(()))]
pub async fn public_favicon(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    public_asset(&state, &headers, "favicon").await
}

/// A tenant's logo
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/branding/logo", tag = "branding", operation_id = "getLogo",
    params(("tenant_id" = TenantId, Path, description = "Tenant id (its own logo, not an inherited one)")),
    responses(
        (status = 200, description = "The image", content_type = "image/png"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No logo", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn get_logo(
    State(state): State<AppState>,
    _admin: Admin,
    Path(tenant_id): Path<TenantId>,
) -> ApiResult<Response> {
    Ok(image(
        state
            .store
            .brand_asset(tenant_id, "logo")
            .await?
            .ok_or_else(|| Problem::not_found("logo"))?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewHostname {
    /// A host name the tenant controls, e.g. `mail-admin.acme.example`.
    pub hostname: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HostnameView {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub hostname: String,
    pub verified: bool,
    pub verified_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Publish this TXT record, then ask for verification.
    pub verification_record: TxtRecord,
}

/// A DNS record to publish.
#[derive(Debug, Serialize, ToSchema)]
pub struct TxtRecord {
    /// Always `TXT`.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub value: String,
}

fn verification(host: &Hostname) -> (String, String) {
    (
        format!("_caliop-hostname.{}", host.hostname),
        format!("caliop-hostname={}", host.token),
    )
}

fn hostname_view(host: Hostname) -> HostnameView {
    let (name, value) = verification(&host);
    HostnameView {
        id: host.id,
        tenant_id: host.tenant_id,
        verified: host.verified_at.is_some(),
        verified_at: host.verified_at,
        hostname: host.hostname,
        verification_record: TxtRecord {
            kind: "TXT".into(),
            name,
            value,
        },
    }
}

/// Register a custom hostname
///
/// For the tenant's admin and signup pages. It shows the tenant's brand
/// once a TXT record proves the tenant controls it. A hostname belongs to
/// one tenant.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/hostnames", tag = "branding", operation_id = "createHostname",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    request_body = NewHostname,
    responses(
        (status = 201, description = "Registered, waiting for its TXT record", body = HostnameView),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Already registered", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Not a host name", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn create_hostname(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(tenant_id): Path<TenantId>,
    Json(body): Json<NewHostname>,
) -> ApiResult<(StatusCode, Json<HostnameView>)> {
    let name = DomainName::parse(&body.hostname)
        .map_err(|e| Problem::invalid(format!("`hostname`: {e}")))?;
    if name
        .as_str()
        .eq_ignore_ascii_case(&state.config.mail_hostname)
    {
        return Err(Problem::conflict(format!(
            "`{name}` is this instance's own host name"
        )));
    }
    let token: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let host = state
        .store
        .add_hostname(&actor.audit_name(), tenant_id, name.as_str(), &token)
        .await?;
    Ok((StatusCode::CREATED, Json(hostname_view(host))))
}

/// List a tenant's hostnames
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/hostnames", tag = "branding", operation_id = "listHostnames",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "Its hostnames", body = Vec<HostnameView>),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_hostnames(
    State(state): State<AppState>,
    _admin: Admin,
    Path(tenant_id): Path<TenantId>,
) -> ApiResult<Json<Vec<HostnameView>>> {
    Ok(Json(
        state
            .store
            .hostnames(tenant_id)
            .await?
            .into_iter()
            .map(hostname_view)
            .collect(),
    ))
}

/// Verify a hostname now
///
/// Looks up its TXT record; found, the hostname shows the tenant's brand.
#[utoipa::path(post, path = "/v1/hostnames/{hostname_id}/verify", tag = "branding", operation_id = "verifyHostname",
    params(("hostname_id" = Uuid, Path, description = "Hostname id")),
    responses(
        (status = 200, description = "Verified", body = HostnameView),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such hostname", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The record is missing or wrong", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "DNS did not answer", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn verify_hostname(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(hostname_id): Path<Uuid>,
) -> ApiResult<Json<HostnameView>> {
    let host = state
        .store
        .hostname(hostname_id)
        .await?
        .ok_or(Problem::not_found("hostname"))?;
    if host.verified_at.is_some() {
        return Ok(Json(hostname_view(host)));
    }
    let (name, value) = verification(&host);
    let found = state
        .dns
        .lookup(&name, mail::dns::Kind::Txt)
        .await
        .map_err(|e| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "dns-unavailable",
                e.to_string(),
            )
        })?;
    if !found.iter().any(|f| f.trim() == value) {
        let detail = if found.is_empty() {
            format!("no TXT record at {name}; publish `{value}` there")
        } else {
            format!("the TXT record at {name} is {:?}, not `{value}`", found)
        };
        return Err(Problem::conflict(detail).with_found(found));
    }
    Ok(Json(hostname_view(
        state
            .store
            .mark_hostname_verified(&actor.audit_name(), &host)
            .await?,
    )))
}

/// Remove a hostname
#[utoipa::path(delete, path = "/v1/hostnames/{hostname_id}", tag = "branding", operation_id = "deleteHostname",
    params(("hostname_id" = Uuid, Path, description = "Hostname id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such hostname", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn delete_hostname(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(hostname_id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let host = state
        .store
        .hostname(hostname_id)
        .await?
        .ok_or(Problem::not_found("hostname"))?;
    state
        .store
        .delete_hostname(&actor.audit_name(), &host)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateInfo {
    /// `welcome`, `password_reset`, `quota_warning`, `payment_failed`, `delivery_failure`, `admission`.
    pub name: String,
    /// `fr` or `en`.
    pub language: String,
    /// What `{{…}}` may name in it.
    pub variables: Vec<String>,
    /// The tenant whose wording is in effect (itself or an ancestor); none: the built-in one.
    pub overridden_by: Option<TenantId>,
    pub subject: String,
}

fn template_params(name: &str, language: &str) -> ApiResult<Vec<&'static str>> {
    let variables =
        mail::templates::variables(name).ok_or_else(|| Problem::not_found("template"))?;
    if !mail::templates::LANGUAGES.contains(&language) {
        return Err(Problem::not_found("template language"));
    }
    Ok(variables)
}

async fn effective_template(
    state: &AppState,
    tenant: TenantId,
    name: &str,
    language: &str,
) -> ApiResult<(Option<TenantId>, mail::templates::Template)> {
    Ok(
        match state
            .store
            .template_override(tenant, name, language)
            .await?
        {
            Some((owner, w)) => (
                Some(owner),
                mail::templates::Template {
                    subject: w.subject,
                    text: w.text,
                    html: w.html,
                },
            ),
            None => (
                None,
                mail::templates::builtin(name, language)
                    .ok_or_else(|| Problem::not_found("template"))?,
            ),
        },
    )
}

/// List the system mail templates
///
/// Every template the system writes to people, in both languages, with the
/// variables it may use and whose wording is in effect.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/templates", tag = "branding", operation_id = "listTemplates",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "Every template", body = Vec<TemplateInfo>),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_templates(
    State(state): State<AppState>,
    _admin: Admin,
    Path(tenant_id): Path<TenantId>,
) -> ApiResult<Json<Vec<TemplateInfo>>> {
    let mut out = Vec::new();
    for (name, _) in mail::templates::TEMPLATES {
        for language in mail::templates::LANGUAGES {
            let (owner, template) = effective_template(&state, tenant_id, name, language).await?;
            out.push(TemplateInfo {
                name: (*name).to_owned(),
                language: (*language).to_owned(),
                variables: template_params(name, language)?
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
                overridden_by: owner,
                subject: template.subject,
            });
        }
    }
    Ok(Json(out))
}

/// Reword a system mail
///
/// The tenant's own subject, text and HTML for one template and language
/// (its children inherit it). Refused if it names a variable the template
/// does not have, or carries scripts.
#[utoipa::path(put, path = "/v1/tenants/{tenant_id}/templates/{template}/{language}", tag = "branding", operation_id = "setTemplate",
    params(("tenant_id" = TenantId, Path, description = "Tenant id"), ("template" = String, Path, description = "Template name"),
           ("language" = String, Path, description = "`fr` or `en`")),
    request_body = mail::templates::Template,
    responses(
        (status = 200, description = "Saved; the preview with sample data", body = mail::templates::Rendered),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant or template", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Unknown variable, or unsafe HTML", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn set_template(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path((tenant_id, name, language)): Path<(TenantId, String, String)>,
    Json(body): Json<mail::templates::Template>,
) -> ApiResult<Json<mail::templates::Rendered>> {
    template_params(&name, &language)?;
    mail::templates::check(&name, &body).map_err(Problem::invalid)?;
    let wording = tenants::store::TemplateOverride {
        subject: body.subject,
        text: body.text,
        html: body.html,
    };
    state
        .store
        .set_template_override(
            &actor.audit_name(),
            tenant_id,
            &name,
            &language,
            Some(&wording),
        )
        .await?;
    Ok(Json(preview_of(&state, tenant_id, &name, &language).await?))
}

/// Restore a system mail's wording
///
/// Removes the tenant's own wording: its reseller's, or the built-in one, applies again.
#[utoipa::path(delete, path = "/v1/tenants/{tenant_id}/templates/{template}/{language}", tag = "branding", operation_id = "resetTemplate",
    params(("tenant_id" = TenantId, Path, description = "Tenant id"), ("template" = String, Path, description = "Template name"),
           ("language" = String, Path, description = "`fr` or `en`")),
    responses(
        (status = 204, description = "Restored"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant or template", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn reset_template(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path((tenant_id, name, language)): Path<(TenantId, String, String)>,
) -> ApiResult<StatusCode> {
    template_params(&name, &language)?;
    state
        .store
        .set_template_override(&actor.audit_name(), tenant_id, &name, &language, None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn preview_of(
    state: &AppState,
    tenant: TenantId,
    name: &str,
    language: &str,
) -> ApiResult<mail::templates::Rendered> {
    let values = mail::templates::sample_values(name);
    let prepared = mail::templates::prepare(
        &state.store,
        &state.config.mail_hostname,
        tenant,
        name,
        Some(language),
        &values,
    )
    .await
    .map_err(Problem::internal)?;
    Ok(prepared.rendered)
}

/// Preview a system mail
///
/// Renders the wording in effect with the tenant's brand and sample data.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/templates/{template}/{language}/preview", tag = "branding", operation_id = "previewTemplate",
    params(("tenant_id" = TenantId, Path, description = "Tenant id"), ("template" = String, Path, description = "Template name"),
           ("language" = String, Path, description = "`fr` or `en`")),
    responses(
        (status = 200, description = "Subject, text and the whole HTML document", body = mail::templates::Rendered),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant or template", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn preview_template(
    State(state): State<AppState>,
    _admin: Admin,
    Path((tenant_id, name, language)): Path<(TenantId, String, String)>,
) -> ApiResult<Json<mail::templates::Rendered>> {
    template_params(&name, &language)?;
    Ok(Json(preview_of(&state, tenant_id, &name, &language).await?))
}
