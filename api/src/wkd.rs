//! Web Key Directory for hosted, verified domains, so that GnuPG's
//! `--locate-keys` and mail clients find our users' keys: the direct layout
//! (`https://{domain}/.well-known/openpgpkey/hu/{hash}`) and the advanced one
//! (`https://openpgpkey.{domain}/.well-known/openpgpkey/{domain}/hu/{hash}`),
//! each with its `policy` file. A protocol of its own, outside the REST API
//! and its OpenAPI document; unknown keys answer a bare 404.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tenants::{AccountStatus, DomainName, EmailAddress, LocalPart};

use crate::AppState;

#[derive(Deserialize)]
pub struct Lookup {
    /// The local part, as clients send it next to its hash.
    l: Option<String>,
}

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/.well-known/openpgpkey/policy", get(policy))
        .route("/.well-known/openpgpkey/hu/{hash}", get(direct))
        .route("/.well-known/openpgpkey/{domain}/policy", get(policy))
        .route("/.well-known/openpgpkey/{domain}/hu/{hash}", get(advanced))
}

async fn policy() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/plain"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        "",
    )
}

fn host_domain(headers: &HeaderMap) -> Option<DomainName> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    DomainName::parse(host).ok()
}

async fn direct(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(hash): Path<String>,
    Query(lookup): Query<Lookup>,
) -> Response {
    match host_domain(&headers) {
        Some(domain) => key(&state, domain, &hash, lookup.l).await,
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn advanced(
    State(state): State<AppState>,
    Path((domain, hash)): Path<(String, String)>,
    Query(lookup): Query<Lookup>,
) -> Response {
    match DomainName::parse(&domain) {
        Ok(domain) => key(&state, domain, &hash, lookup.l).await,
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn key(state: &AppState, domain: DomainName, hash: &str, local: Option<String>) -> Response {
    let not_found = || StatusCode::NOT_FOUND.into_response();
    // The hash alone cannot name an account; every client sends `l` with it.
    let Some(local) = local.filter(|l| mail::wkd::hash(l) == hash) else {
        return not_found();
    };
    let Ok(local) = LocalPart::parse(&local) else {
        return not_found();
    };
    let verified =
        matches!(state.store.domain_by_name(&domain).await, Ok(Some(d)) if d.verified_at.is_some());
    if !verified {
        return not_found();
    }
    let address = EmailAddress::new(&local, &domain);
    let account = match state.store.account_by_address(&address).await {
        Ok(Some(a)) if a.status == AccountStatus::Active => a,
        Ok(_) => return not_found(),
        Err(e) => return crate::Problem::internal(e).into_response(),
    };
    match vault::openpgp::AccountKey::binary_public_key(&account.public_key) {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => crate::Problem::internal(e).into_response(),
    }
}
