//! HTTPS (`api.tls_listen`): the same routes as plain HTTP, under the
//! certificate the client names (SNI) among those ACME obtained. TLS
//! handshakes run apart from the accept loop, so that a slow or silent
//! client delays nobody else. And what is served on any listener for
//! TLS: the HTTP-01 answers of pending ACME orders, which every API node
//! gives from the database, and each verified domain's MTA-STS policy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use crate::AppState;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/.well-known/acme-challenge/{token}", get(acme_challenge))
        .route("/.well-known/mta-sts.txt", get(mta_sts_policy))
}

/// The MTA-STS policy (RFC 8461 §3.2) of the verified domain whose
/// `mta-sts.` host was asked for; any other host: 404.
async fn mta_sts_policy(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| {
            h.rsplit_once(':')
                .map_or(h, |(name, _)| name)
                .to_ascii_lowercase()
        });
    let Some(domain) = host
        .as_deref()
        .and_then(|h| h.strip_prefix("mta-sts."))
        .and_then(|d| tenants::DomainName::parse(d).ok())
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let found = match state.store.domain_by_name(&domain).await {
        Ok(found) => found.filter(|d| d.verified_at.is_some()),
        Err(e) => {
            tracing::warn!(error = %e, "an MTA-STS policy could not be read");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let Some(domain) = found else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match state.store.mta_sts_mode(domain.id).await {
        Ok(mode) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            tenants::dns_records::mta_sts_policy(mode, &state.config.mail_hostname),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "an MTA-STS policy could not be read");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// The key authorization of a pending HTTP-01 challenge (RFC 8555 §8.3).
async fn acme_challenge(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match state.store.acme_challenge(&token).await {
        Ok(Some(answer)) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], answer).into_response()
        }
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "an ACME challenge could not be read");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// On plain HTTP beside an HTTPS listener: a client beyond loopback is
/// sent to the same page over HTTPS (308 keeps the method and body), but
/// ACME's HTTP-01 challenges are answered here, as RFC 8555 requires.
pub async fn redirect_to_https(
    https_port: u16,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    if peer.ip().is_loopback() || path.starts_with("/.well-known/acme-challenge/") {
        return next.run(request).await;
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name).to_owned())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        });
    let Some(host) = host else {
        return (StatusCode::BAD_REQUEST, "a Host header is needed").into_response();
    };
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let target = format!(
        "https://{host}{port}{}",
        request.uri().path_and_query().map_or("/", |p| p.as_str())
    );
    (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, target)]).into_response()
}

/// Serves the API over TLS on `listener` until `shutdown`: each
/// connection's handshake and requests run on their own task, its peer's
/// address given to the routes as plain HTTP gives it (`ConnectInfo`).
pub async fn serve_tls(
    listener: TcpListener,
    state: AppState,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let app = crate::router(state);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!(error = %e, "an HTTPS connection could not be accepted");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "a TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "a TLS handshake timed out"),
            };
            serve_connection(stream, peer, app).await;
        });
    }
}

async fn serve_connection(stream: TlsStream<TcpStream>, peer: SocketAddr, app: axum::Router) {
    let app = app.layer(axum::Extension(axum::extract::ConnectInfo(peer)));
    let service = hyper_util::service::TowerToHyperService::new(app);
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .with_upgrades()
        .await
    {
        tracing::debug!(%peer, error = %e, "an HTTPS connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use axum::extract::connect_info::MockConnectInfo;

    use super::*;

    /// A plain listener beside HTTPS on 8443, seen from `peer`.
    async fn plain(peer: SocketAddr) -> String {
        let app = axum::Router::new()
            .route("/v1/page", get(|| async { "plain" }))
            .route(
                "/.well-known/acme-challenge/{token}",
                get(|| async { "answer" }),
            )
            .layer(axum::middleware::from_fn(move |peer, request, next| {
                redirect_to_https(8443, peer, request, next)
            }))
            .layer(MockConnectInfo(peer));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app.into_make_service()).await });
        base
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn plain_http_sends_the_world_to_https_but_answers_acme_and_loopback() {
        let outside = plain(SocketAddr::from(([203, 0, 113, 9], 40000))).await;
        let moved = client()
            .post(format!("{outside}/v1/page?x=1"))
            .header("host", "mail.acme.test")
            .send()
            .await
            .unwrap();
        assert_eq!(moved.status(), 308);
        assert_eq!(
            moved.headers()["location"],
            "https://mail.acme.test:8443/v1/page?x=1"
        );
        let challenge = client()
            .get(format!("{outside}/.well-known/acme-challenge/abc"))
            .send()
            .await
            .unwrap();
        assert_eq!(challenge.text().await.unwrap(), "answer");
        // A Host that is not a name is not echoed into a Location.
        let odd = client()
            .get(format!("{outside}/v1/page"))
            .header("host", "evil.test/\"><x")
            .send()
            .await
            .unwrap();
        assert_eq!(odd.status(), 400);
        let inside = plain(SocketAddr::from(([127, 0, 0, 1], 40000))).await;
        let served = client()
            .get(format!("{inside}/v1/page"))
            .send()
            .await
            .unwrap();
        assert_eq!(served.text().await.unwrap(), "plain");
    }
}
