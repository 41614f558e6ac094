//! Prometheus metrics: requests by route template and status, and their
//! latency, served at `/metrics` on a listener of their own (`api.metrics_listen`,
//! loopback by default), never on the public API. Every label comes from a
//! bounded set, whatever a client sends: the method from a fixed list (else
//! `other`), the matched route template (else `unmatched`), a standard status code.

use std::future::Future;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("caliop");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests",
            latency.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
        }
    }
}

impl Metrics {
    /// The registry in the Prometheus/OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The method as a label: one of the methods the API answers, else `other`,
/// so that made-up methods (`FOO`, `X1234`) cannot add series.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: &[Method] = &[
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];
    KNOWN
        .iter()
        .find(|m| *m == method)
        .map_or("other", Method::as_str)
}

/// The status as a label: a registered code, else 0 (none is expected;
/// the bound holds even if a handler invents one).
fn status_label(status: StatusCode) -> u16 {
    if status.canonical_reason().is_some() {
        status.as_u16()
    } else {
        0
    }
}

/// Middleware counting every request under its route template.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = status_label(response.status());
    state
        .metrics
        .latency
        .get_or_create(&RouteLabels {
            method,
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status,
        })
        .inc();
    response
}

/// Prometheus metrics: the request counters and the job queue's depth.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state.metrics.render();
    match state.store.queue_depth().await {
        Ok(depth) => {
            let mut jobs = String::from(
                "# HELP caliop_jobs Jobs in the queue by kind and state.\n# TYPE caliop_jobs gauge\n",
            );
            for d in depth {
                jobs.push_str(&format!(
                    "caliop_jobs{{kind=\"{}\",state=\"{}\"}} {}\n",
                    d.kind, d.state, d.jobs
                ));
            }
            let end = text.rfind("# EOF").unwrap_or(text.len());
            text.insert_str(end, &jobs);
        }
        Err(e) => tracing::warn!(error = %e, "queue depth unavailable for /metrics"),
    }
    if let Some(filter) = state.inbound.filter() {
        let end = text.rfind("# EOF").unwrap_or(text.len());
        text.insert_str(end, &filter.metrics());
    }
    match state.store.certificates().await {
        Ok(certificates) => {
            let end = text.rfind("# EOF").unwrap_or(text.len());
            text.insert_str(end, &certificate_metrics(&certificates, chrono::Utc::now()));
        }
        Err(e) => tracing::warn!(error = %e, "certificates unavailable for /metrics"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

/// Days before expiry from which a certificate not yet renewed is an alert.
pub const EXPIRY_ALERT_DAYS: i64 = 14;

/// The certificates' series: each one's time left and failed orders, and
/// how many expire within [`EXPIRY_ALERT_DAYS`] (renewal starts 30 days
/// before, so one there means renewals have been failing: alert on > 0).
fn certificate_metrics(
    certificates: &[tenants::store::StoredCertificate],
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let mut out = String::from(
        "# HELP caliop_certificate_expiry_seconds Seconds until an issued TLS certificate expires.\n\
         # TYPE caliop_certificate_expiry_seconds gauge\n",
    );
    for c in certificates {
        if let Some(not_after) = c.not_after {
            out.push_str(&format!(
                "caliop_certificate_expiry_seconds{{name=\"{}\"}} {}\n",
                c.name,
                (not_after - now).num_seconds()
            ));
        }
    }
    out.push_str(
        "# HELP caliop_certificate_failed_orders Orders of a certificate that failed in a row.\n\
         # TYPE caliop_certificate_failed_orders gauge\n",
    );
    for c in certificates {
        out.push_str(&format!(
            "caliop_certificate_failed_orders{{name=\"{}\"}} {}\n",
            c.name, c.attempts
        ));
    }
    let soon = certificates
        .iter()
        .filter(|c| {
            c.not_after
                .is_some_and(|t| t - now < chrono::Duration::days(EXPIRY_ALERT_DAYS))
        })
        .count();
    out.push_str(&format!(
        "# HELP caliop_certificates_expiring_soon Certificates expiring within {EXPIRY_ALERT_DAYS} days (renewal failing): alert when above 0.\n\
         # TYPE caliop_certificates_expiring_soon gauge\n\
         caliop_certificates_expiring_soon {soon}\n"
    ));
    out
}

/// The metrics listener's application: `GET /metrics` and nothing else.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .with_state(state)
}

/// Serves `/metrics` on `listener` (the operator's, `api.metrics_listen`)
/// until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
