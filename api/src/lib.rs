//! The REST API: axum handlers over the domain core, with the OpenAPI
//! document built from the same route list as the router (utoipa-axum), so
//! the two cannot drift. Handlers are thin: extract (auth, scope, validated
//! input), call `tenants`, map the error through [`problem`]. The admin
//! app's built files are served beside the API, outside its document.

mod apps;
pub mod auth;
mod autoconfig;
mod brand_assets;
pub mod https;
pub mod metrics;
pub mod problem;
mod rejections;
mod routes;
mod wkd;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tenants::{Store, TenantId};
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

pub use auth::Tokens;
pub use problem::{Problem, ProblemDetails};
pub use routes::tenants::create_operator_admin;
pub use tenants::login::LoginGuard;

/// What the API needs to know beyond the store.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Lifetime of access tokens issued by `/v1/auth/token`.
    pub token_ttl: Duration,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// The host name of this instance's MX and submission server, as published in DNS records.
    pub mail_hostname: String,
    /// Failed sign-ins allowed per address and per client IP within `login_window`.
    pub login_failures_per_address: usize,
    pub login_failures_per_ip: usize,
    pub login_window: Duration,
    /// Where mail clients are told to connect (autoconfig, SRV records):
    /// what really listens, with the TLS it speaks.
    pub client_ports: tenants::dns_records::ClientPorts,
    /// The admin app's build (`index.html` and `assets/`), served at `/admin/`.
    pub admin_assets_dir: PathBuf,
    /// The users' app's build, served at `/` (and any page outside the
    /// server's own paths).
    pub mail_assets_dir: PathBuf,
    /// Where the export jobs write tenant archives (`data_dir/exports`).
    pub exports_dir: PathBuf,
    /// Bytes that archives waiting for their download may use, instance-wide;
    /// past it, new exports wait.
    pub exports_max_bytes: i64,
    /// The Argon2id parameters new device sign-ins are asked to stretch
    /// passwords with (each account keeps those it registered with).
    pub ksf: vault::opaque::KsfParams,
    /// Days an operator or reseller administrator may sign in without a
    /// second factor, from their first sign-in since second factors exist.
    pub second_factor_grace_days: i64,
    /// Whether mail doors (IMAP, submission) still take an account's own
    /// password, for accounts not yet on device sign-in. Off: app passwords
    /// only, as mail clients should sign in.
    pub mail_account_passwords: bool,
    /// The HTTPS port (`api.tls_listen`'s), when there is one: plain HTTP
    /// then redirects clients beyond loopback there, ACME's challenges
    /// excepted.
    pub https_port: Option<u16>,
}

impl ApiConfig {
    /// The sign-in limits these settings describe.
    pub fn login_guard(&self) -> LoginGuard {
        LoginGuard::new(
            self.login_window,
            self.login_failures_per_address,
            self.login_failures_per_ip,
        )
        .allowing_account_passwords_on_mail(self.mail_account_passwords)
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            token_ttl: Duration::from_secs(15 * 60),
            max_body_bytes: 1024 * 1024,
            mail_hostname: "mail.localhost".into(),
            login_failures_per_address: 5,
            login_failures_per_ip: 20,
            login_window: Duration::from_secs(15 * 60),
            client_ports: tenants::dns_records::ClientPorts::default(),
            admin_assets_dir: PathBuf::from("web-admin/dist"),
            mail_assets_dir: PathBuf::from("web-admin/dist-mail"),
            exports_dir: PathBuf::from("data/exports"),
            exports_max_bytes: 20 * 1024 * 1024 * 1024,
            ksf: vault::opaque::KsfParams::default(),
            second_factor_grace_days: 7,
            mail_account_passwords: false,
            https_port: None,
        }
    }
}

pub struct Inner {
    pub store: Store,
    /// Opens `standard` messages (tenant data keys) for the message API.
    pub inbound: Arc<mail::inbound::Inbound>,
    /// Queues submitted mail.
    pub outbound: Arc<mail::outbound::Outbound>,
    pub tokens: Tokens,
    pub dns: mail::dns::Dns,
    pub config: ApiConfig,
    /// Shared with the submission port: failures count across both.
    pub login_guard: Arc<LoginGuard>,
    pub metrics: metrics::Metrics,
    pub operator_tenant: TenantId,
    /// The instance's Ed25519 public key, published beside what it signs (the warrant canary).
    pub instance_public_key: [u8; 32],
    /// Plans, Stripe, the funding pool and public signup.
    billing: Arc<billing::Billing>,
    /// Password reset requests per address and per client IP.
    pub reset_guard: LoginGuard,
    /// Device sign-ins between their two messages.
    pub pending_logins: routes::PendingLogins,
    /// Tenants' OPAQUE secrets, opened once.
    pub opaque_setups: routes::OpaqueSetups,
    /// Passkey registrations between their two messages.
    pub pending_passkeys: routes::PendingPasskeys,
}

/// Shared by every request. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Prepares the state: makes sure the operator tenant exists.
    pub async fn new(
        store: Store,
        instance_key: &vault::instance::InstanceKey,
        inbound: Arc<mail::inbound::Inbound>,
        outbound: Arc<mail::outbound::Outbound>,
        dns: mail::dns::Dns,
        login_guard: Arc<LoginGuard>,
        config: ApiConfig,
    ) -> Result<AppState, tenants::Error> {
        let operator = store.ensure_operator().await?;
        let billing = billing::Billing::new(
            store.clone(),
            billing::BillingConfig::default(),
            instance_key.pkcs8_der(),
        )
        .map_err(tenants::Error::Config)?;
        Ok(AppState(Arc::new(Inner {
            billing,
            reset_guard: LoginGuard::new(Duration::from_secs(3600), 3, 20),
            pending_logins: routes::PendingLogins::default(),
            opaque_setups: routes::OpaqueSetups::default(),
            pending_passkeys: routes::PendingPasskeys::default(),
            tokens: Tokens::new(instance_key, config.token_ttl),
            instance_public_key: *instance_key.public_key(),
            login_guard,
            metrics: metrics::Metrics::default(),
            operator_tenant: operator.id,
            inbound,
            outbound,
            store,
            dns,
            config,
        })))
    }
}

impl AppState {
    /// Uses `billing` (its configuration, its Stripe account) instead of the default (no provider).
    pub fn with_billing(mut self, billing: Arc<billing::Billing>) -> AppState {
        match Arc::get_mut(&mut self.0) {
            Some(inner) => inner.billing = billing,
            None => tracing::error!("with_billing called on a shared AppState; billing unchanged"),
        }
        self
    }

    pub fn billing(&self) -> &billing::Billing {
        &self.billing
    }

    /// Queues the welcome mail of a new account to its recovery address, if
    /// it has one (from the tenant's domain, in its brand).
    pub async fn queue_welcome(&self, account: &tenants::Account, recovery: Option<&str>) {
        let signin_host = match self.store.tenant_hostname(account.tenant_id).await {
            Ok(Some(host)) => host,
            _ => self.config.mail_hostname.clone(),
        };
        let values = std::collections::BTreeMap::from([
            ("display_name".to_owned(), account.display_name.clone()),
            ("address".to_owned(), account.address.to_string()),
            ("signin_url".to_owned(), format!("https://{signin_host}/")),
        ]);
        if let Some(to) = recovery {
            let mail = worker::SystemMail {
                tenant: account.tenant_id,
                template: "welcome".into(),
                to: to.to_owned(),
                language: None,
                values: values.clone(),
            };
            if let Err(e) = worker::enqueue::<worker::Context, _>(&self.store, &mail, None).await {
                tracing::error!(error = %e, "could not queue a welcome mail");
            }
        }
    }

    /// Queues a recount of a tenant's seats (and its Stripe quantity), if it is on a plan.
    pub async fn queue_seat_sync(&self, tenant: TenantId) {
        match self.store.tenant_billing(tenant).await {
            Ok(Some(_)) => {
                let job = tenants::store::NewJob {
                    kind: billing::SEATS_JOB,
                    payload: serde_json::json!({ "tenant": tenant }).to_string(),
                    dedup_key: Some(tenant.to_string()),
                    run_at: chrono::Utc::now(),
                    max_attempts: 20,
                };
                if let Err(e) = self.store.enqueue(job).await {
                    tracing::error!(error = %e, "could not queue a seat recount");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "could not read a tenant's billing"),
        }
    }
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Caliop API",
        description = "Multi-tenant secure mail: tenants, resellers, domains, accounts and their keys.\n\n\
            Authenticate with `POST /v1/auth/token`, then send `Authorization: Bearer <token>`. \
            Errors are RFC 9457 `application/problem+json`. Lists are paged with an opaque `cursor`.",
        license(name = "AGPL-3.0-or-later")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Access tokens"),
        (name = "tenants", description = "Operators, resellers and their tenants"),
        (name = "domains", description = "Hosted domains and their DNS records"),
        (name = "accounts", description = "Mail accounts and their OpenPGP keys"),
        (name = "addresses", description = "Aliases and groups: addresses that are not an account's own"),
        (name = "sieve", description = "Sieve filters (RFC 5228), run on arrival before sealing"),
        (name = "messages", description = "Received mail, stored at its confidentiality level"),
        (name = "api-keys", description = "Keys for scripts and resellers"),
        (name = "audit", description = "Who changed what"),
        (name = "billing", description = "Plans, subscriptions, invoices and usage"),
        (name = "branding", description = "White label: each tenant's brand, logo and custom hostnames"),
        (name = "legal", description = "The legal request register (the operator's) and transparency reports"),
        (name = "public", description = "What anyone may see or do without an account: the funding pool and signup"),
        (name = "system", description = "Health and metrics"),
    )
)]
struct ApiDoc;

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(routes::routes())
}

/// The API's routes and their OpenAPI document, refusals included.
fn api_parts() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (api, mut spec) = api_router().split_for_parts();
    rejections::document(&mut spec);
    (api, spec)
}

/// The OpenAPI document of this version of the code.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_parts().1
}

/// The OpenAPI document as committed in `openapi/openapi.json`.
pub fn openapi_json() -> String {
    let mut json = openapi().to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let (api, spec) = api_parts();
    api.merge(SwaggerUi::new("/docs").url("/openapi.json", spec))
        .merge(wkd::routes())
        .merge(autoconfig::routes())
        .merge(https::routes())
        .merge(apps::routes())
        .fallback(apps::fallback)
        .method_not_allowed_fallback(|| async {
            Problem::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this method is not allowed on this route",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        // Spans name the route, not the URI: links carry tokens (password
        // resets, export downloads) that must not reach a log.
        .layer(TraceLayer::new_for_http().make_span_with(
            |request: &axum::http::Request<axum::body::Body>| {
                let route = request
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map_or("(no route)", |p| p.as_str());
                tracing::debug_span!("request", method = %request.method(), route = %route)
            },
        ))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let https_port = state.config.https_port;
    let mut app = router(state);
    if let Some(port) = https_port {
        app = app.layer(axum::middleware::from_fn(move |peer, request, next| {
            https::redirect_to_https(port, peer, request, next)
        }));
    }
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
