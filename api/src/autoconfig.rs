//! Mail client autoconfiguration for hosted domains, so that a user types
//! only an address and a password: Mozilla's autoconfig (Thunderbird, K-9,
//! FairEmail…) at `/.well-known/autoconfig/mail/config-v1.1.xml` and on
//! `autoconfig.{domain}` at `/mail/config-v1.1.xml`, and Microsoft's POX
//! autodiscover (Outlook) at `/autodiscover/autodiscover.xml`. The SRV
//! records of RFC 6186 are among each domain's DNS records. Protocols of
//! their own, outside the REST API; unknown domains answer a bare 404.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tenants::{DomainName, EmailAddress};

use crate::AppState;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/.well-known/autoconfig/mail/config-v1.1.xml", get(mozilla))
        .route("/mail/config-v1.1.xml", get(mozilla))
        .route(
            "/autodiscover/autodiscover.xml",
            post(microsoft).get(microsoft_get),
        )
        .route(
            "/Autodiscover/Autodiscover.xml",
            post(microsoft).get(microsoft_get),
        )
}

#[derive(Deserialize)]
pub struct Lookup {
    emailaddress: Option<String>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn xml(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/xml; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The hosted domain a lookup is about: the address's, or `autoconfig.{domain}` / `autodiscover.{domain}`'s.
async fn hosted(
    state: &AppState,
    address: Option<&str>,
    headers: &HeaderMap,
) -> Option<(DomainName, String)> {
    let domain = match address.and_then(|a| EmailAddress::parse(a).ok()) {
        Some(address) => address.domain(),
        None => {
            let host = headers.get(header::HOST)?.to_str().ok()?;
            let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
            let bare = host
                .strip_prefix("autoconfig.")
                .or_else(|| host.strip_prefix("autodiscover."))
                .unwrap_or(host);
            DomainName::parse(bare).ok()?
        }
    };
    let hosted = state.store.domain_by_name(&domain).await.ok()??;
    let brand = state
        .store
        .brand(hosted.tenant_id, &crate::routes::caliop_brand())
        .await
        .ok()?;
    Some((domain, brand.product_name.unwrap_or_else(|| "Mail".into())))
}

async fn mozilla(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(lookup): Query<Lookup>,
) -> Response {
    let Some((domain, name)) = hosted(&state, lookup.emailaddress.as_deref(), &headers).await
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let c = &state.config;
    let host = escape(&c.mail_hostname);
    let (domain, name) = (escape(domain.as_str()), escape(&name));
    xml(format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="{domain}">
    <domain>{domain}</domain>
    <displayName>{name}</displayName>
    <displayShortName>{name}</displayShortName>
    <incomingServer type="imap">
      <hostname>{host}</hostname>
      <port>{imap_port}</port>
      <socketType>{imap_socket}</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>{host}</hostname>
      <port>{submission_port}</port>
      <socketType>{submission_socket}</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </outgoingServer>
  </emailProvider>
</clientConfig>
"#,
        imap_port = c.client_ports.imap,
        imap_socket = if c.client_ports.imap_tls {
            "SSL"
        } else {
            "STARTTLS"
        },
        submission_port = c.client_ports.submission,
        submission_socket = "STARTTLS",
    ))
}

/// The address in an Outlook POX request (`<EMailAddress>`).
fn requested_address(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<EMailAddress>")? + "<EMailAddress>".len();
    let end = text[start..].find("</EMailAddress>")? + start;
    Some(text[start..end].trim().to_owned())
}

async fn microsoft_answer(
    state: &AppState,
    headers: &HeaderMap,
    address: Option<String>,
) -> Response {
    let Some(address) = address else {
        return (StatusCode::BAD_REQUEST, "the request names no EMailAddress").into_response();
    };
    if hosted(state, Some(&address), headers).await.is_none() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let c = &state.config;
    let (host, login) = (escape(&c.mail_hostname), escape(&address));
    xml(format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">
    <Account>
      <AccountType>email</AccountType>
      <Action>settings</Action>
      <Protocol>
        <Type>IMAP</Type>
        <Server>{host}</Server>
        <Port>{imap_port}</Port>
        <DomainRequired>off</DomainRequired>
        <LoginName>{login}</LoginName>
        <SPA>off</SPA>
        <Encryption>{imap_encryption}</Encryption>
        <AuthRequired>on</AuthRequired>
      </Protocol>
      <Protocol>
        <Type>SMTP</Type>
        <Server>{host}</Server>
        <Port>{submission_port}</Port>
        <DomainRequired>off</DomainRequired>
        <LoginName>{login}</LoginName>
        <SPA>off</SPA>
        <Encryption>{encryption}</Encryption>
        <AuthRequired>on</AuthRequired>
        <UsePOPAuth>off</UsePOPAuth>
        <SMTPLast>off</SMTPLast>
      </Protocol>
    </Account>
  </Response>
</Autodiscover>
"#,
        imap_port = c.client_ports.imap,
        imap_encryption = if c.client_ports.imap_tls {
            "SSL"
        } else {
            "TLS"
        },
        submission_port = c.client_ports.submission,
        encryption = "TLS",
    ))
}

async fn microsoft(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    microsoft_answer(&state, &headers, requested_address(&body)).await
}

async fn microsoft_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(lookup): Query<Lookup>,
) -> Response {
    microsoft_answer(&state, &headers, lookup.emailaddress).await
}
