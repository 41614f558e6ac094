//! Configuration: defaults that run, under an optional TOML file, under
//! `CALIOP_*` environment variables (`CALIOP_API_LISTEN` sets `api.listen`,
//! `CALIOP_DATA_DIR` sets `data_dir`). Secrets are `SecretString`s, so
//! `Debug` and logs show `[REDACTED]`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Top-level keys that are sections: `CALIOP_<SECTION>_<KEY>` maps to `<section>.<key>`.
const SECTIONS: &[&str] = &[
    "acme",
    "database",
    "api",
    "smtp",
    "submission",
    "imap",
    "managesieve",
    "webmail",
    "delivery",
    "worker",
    "storage",
    "billing",
    "mail",
    "dns",
    "log",
    "admin",
    "filter",
];
/// `CALIOP_*` variables that are a command's input, not configuration
/// (`CALIOP_ADMIN_PASSWORD` is the password of `caliop admin create-operator`).
const NOT_CONFIGURATION: &[&str] = &["admin_password"];

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the SQLite database, the instance key and (later) local storage sites live.
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub api: ApiSection,
    pub smtp: SmtpSection,
    pub submission: SubmissionSection,
    pub imap: ImapSection,
    /// ManageSieve (RFC 5804), where mail clients edit Sieve filters.
    pub managesieve: ManageSieveSection,
    pub delivery: DeliverySection,
    pub worker: WorkerSection,
    /// Storage sites for dispersed mail, and how objects are cut.
    pub storage: StorageSection,
    /// Sending rates per kind of tenant (TOML only: `[send_limits.public]`, `[send_limits.paid]`).
    pub send_limits: SendLimitsSection,
    /// Plans and payments (Stripe or none), the funding pool, public signup.
    pub billing: billing::BillingConfig,
    pub mail: MailSection,
    pub dns: DnsSection,
    pub log: LogSection,
    /// The admin app served at `/admin/`.
    pub admin: AdminSection,
    /// The users' app (signup, mail, account) served at `/`.
    pub webmail: WebmailSection,
    /// Domains added but not verified (claims).
    pub domains: DomainsSection,
    /// Spam and virus filtering: Rspamd, clamd, or the built-in filter.
    pub filter: FilterSection,
    /// Certificates by ACME for the mail host and the tenants' hostnames.
    pub acme: AcmeSection,
}

/// The ports the mail listeners were bound to, once they are.
#[derive(Clone, Copy, Debug, Default)]
pub struct Listening {
    pub imap: Option<u16>,
    pub imaps: Option<u16>,
    pub submission: Option<u16>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AcmeSection {
    /// Order certificates. Off by default: a fresh `serve` reaches nothing
    /// outside loopback; turn it on where the names resolve to this host.
    pub enabled: bool,
    /// The CA's directory (Let's Encrypt production by default).
    pub directory_url: String,
    /// `mailto:` addresses the CA writes to.
    pub contact: Vec<String>,
    /// A PEM file of trust anchors for the directory's own HTTPS (a local CA).
    pub extra_ca_file: Option<PathBuf>,
    /// Days before expiry a certificate is renewed.
    pub renew_days: i64,
}

impl Default for AcmeSection {
    fn default() -> Self {
        AcmeSection {
            enabled: false,
            directory_url: mail::acme::LETS_ENCRYPT.into(),
            contact: Vec::new(),
            extra_ca_file: None,
            renew_days: 30,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DomainsSection {
    /// Days an unverified domain (a claim, which receives, sends and resets
    /// nothing) is kept before it lapses and its name is free again.
    pub claim_days: u32,
}

impl Default for DomainsSection {
    fn default() -> Self {
        DomainsSection { claim_days: 7 }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebmailSection {
    /// The users' app's build (`npm run build` in `web-admin/` makes it
    /// beside the admin app's), relative to the working directory unless
    /// absolute.
    pub assets_dir: PathBuf,
}

impl Default for WebmailSection {
    fn default() -> Self {
        WebmailSection {
            assets_dir: api::ApiConfig::default().mail_assets_dir,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    /// The admin app's build (`npm run build` in `web-admin/`), relative to
    /// the working directory unless absolute.
    pub assets_dir: PathBuf,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            assets_dir: api::ApiConfig::default().admin_assets_dir,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubmissionSection {
    /// The submission listener for mail clients (587 in production). AUTH is
    /// offered only after STARTTLS, except to clients on loopback.
    pub listen: SocketAddr,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImapSection {
    /// The IMAP listener (143 in production): STARTTLS, and sign-in only
    /// after it unless the client is on loopback.
    pub listen: SocketAddr,
    /// A second listener with TLS from the first byte (993 in production);
    /// only with `smtp.tls_certificate` configured.
    pub tls_listen: Option<SocketAddr>,
    /// Largest APPENDed message.
    pub max_message_bytes: usize,
    /// Connections each IMAP listener holds at once, from all clients.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Minutes a signed-in client may stay silent, IDLE included.
    pub autologout_minutes: u64,
    /// Days the UIDs of expunged messages are remembered for QRESYNC; a
    /// client that last synced earlier is told every UID it knows that is
    /// gone, computed from what is there.
    pub tombstone_days: u32,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManageSieveSection {
    /// The ManageSieve listener (4190 in production): STARTTLS, and
    /// sign-in only after it unless the client is on loopback. It runs
    /// where IMAP does.
    pub listen: SocketAddr,
}

impl Default for ManageSieveSection {
    fn default() -> Self {
        ManageSieveSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 4190)),
        }
    }
}

impl Default for ImapSection {
    fn default() -> Self {
        ImapSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 2143)),
            tls_listen: None,
            max_message_bytes: 52_428_800,
            max_connections: 1000,
            max_connections_per_ip: 20,
            autologout_minutes: 30,
            tombstone_days: 90,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliverySection {
    /// The port spoken to on recipients' MX hosts.
    pub port: u16,
    /// `host:port` of a relay that takes all mail for other domains
    /// instead of their MX (an outbound gateway); unset: deliver directly.
    pub relay: Option<SocketAddr>,
    /// The port of HTTPS fetches from mail domains (MTA-STS policies, WKD keys).
    pub https_port: u16,
    /// A PEM file of trust anchors beside the web PKI's, for a private PKI.
    pub extra_ca_file: Option<PathBuf>,
    /// How long a message is retried before it bounces.
    pub lifetime_seconds: u64,
    /// First delay between attempts; it doubles up to `retry_max_seconds`.
    pub retry_base_seconds: u64,
    pub retry_max_seconds: u64,
    pub connect_timeout_seconds: u64,
    /// Connect to loopback, private, link-local, ULA, CGNAT and reserved
    /// addresses when an MX, WKD or MTA-STS host resolves to one. Off: a
    /// domain cannot point the server at itself or its network. For tests
    /// and private deployments; a `relay` is trusted either way.
    pub allow_private_networks: bool,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSection {
    /// Jobs run at once per process.
    pub concurrency: usize,
    /// How long a claimed job is a worker's before another may take it over.
    pub lease_seconds: u64,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SendLimitsSection {
    /// Free accounts on the public instance.
    pub public: tenants::store::SendRates,
    /// Enterprise, reseller and operator tenants.
    pub paid: tenants::store::SendRates,
}

impl Default for SubmissionSection {
    fn default() -> Self {
        SubmissionSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 2587)),
        }
    }
}

impl Default for DeliverySection {
    fn default() -> Self {
        let d = mail::outbound::OutboundConfig::default();
        DeliverySection {
            port: d.delivery_port,
            relay: d.relay,
            https_port: d.https_port,
            extra_ca_file: None,
            lifetime_seconds: d.lifetime.as_secs(),
            retry_base_seconds: 60,
            retry_max_seconds: 3600,
            connect_timeout_seconds: d.connect_timeout.as_secs(),
            allow_private_networks: d.allow_private_networks,
        }
    }
}

impl Default for WorkerSection {
    fn default() -> Self {
        WorkerSection {
            concurrency: 4,
            lease_seconds: 300,
        }
    }
}

impl Default for SendLimitsSection {
    fn default() -> Self {
        let limits = mail::outbound::SendLimits::default();
        SendLimitsSection {
            public: limits.public,
            paid: limits.paid,
        }
    }
}

/// `[storage]`: k-of-n dispersal over storage sites. Without any
/// `[[storage.sites]]`, three local folders under the data directory stand
/// in for three sites (labelled FR, DE and CH): enough to run and try
/// dispersal, not a protection against losing the machine.
#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    /// Shards needed to read an object, for tenants without their own choice.
    pub k: u8,
    /// Shards written per object.
    pub n: u8,
    /// Shards that must be stored before a write succeeds (at least k + 1; 0 means k + 1).
    pub write_quorum: usize,
    /// Bounds on a tenant's own redundancy.
    pub min_k: u8,
    pub max_n: u8,
    /// A read asks one more site when an answer takes longer than this.
    pub hedge_after_ms: u64,
    /// One request to a site gives up after this long.
    pub request_timeout_ms: u64,
    /// Every shard is re-hashed this often (0: never on schedule).
    pub scrub_interval_hours: u64,
    /// The sites (TOML only): `name`, `jurisdiction`, and `path` or an `[storage.sites.s3]` table.
    #[serde(skip_serializing)]
    pub sites: Vec<vault::sites::SiteConfig>,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            k: 2,
            n: 3,
            write_quorum: 0,
            min_k: 2,
            max_n: 8,
            hedge_after_ms: 150,
            request_timeout_ms: 10_000,
            scrub_interval_hours: 24,
            sites: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DB`; defaults to `sqlite://<data_dir>/caliop.db`.
    #[serde(skip_serializing)]
    pub url: Option<SecretString>,
    pub max_connections: u32,
    /// On PostgreSQL, processes tell each other of new mail and jobs with
    /// `LISTEN`/`NOTIFY` (one connection each), so IMAP IDLE and the workers
    /// need not poll every second. Off: they poll.
    pub notify: bool,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    /// Plain HTTP: loopback behind a proxy, or port 80 beside `tls_listen`
    /// (it answers ACME HTTP-01 challenges either way).
    pub listen: SocketAddr,
    /// HTTPS with the certificates ACME obtained, chosen by name (SNI):
    /// the API, the apps, WKD, autoconfig, MTA-STS and every verified
    /// tenant hostname. Unset: no HTTPS listener.
    pub tls_listen: Option<SocketAddr>,
    /// Where `/metrics` is served, apart from the API (loopback by default:
    /// the series describe the instance and are for its operator's scraper).
    pub metrics_listen: SocketAddr,
    pub token_ttl_seconds: u64,
    pub max_body_bytes: usize,
    pub login_failures_per_address: usize,
    pub login_failures_per_ip: usize,
    pub login_window_seconds: u64,
    /// Bytes that tenant export archives waiting for their download may use
    /// on this instance's disk; past it, new exports wait.
    pub exports_max_bytes: i64,
    /// Days an operator or reseller administrator may sign in to the web
    /// without a second factor (TOTP), from their first sign-in.
    pub second_factor_grace_days: i64,
    /// Whether IMAP and submission still take an account's own password,
    /// for accounts not yet on device sign-in (a transition setting): off,
    /// mail clients sign in with app passwords only.
    pub mail_account_passwords: bool,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpSection {
    /// The MX listener (port 25 in production, behind a redirect or capability).
    pub listen: SocketAddr,
    /// PEM certificate chain and key for STARTTLS; a self-signed pair is
    /// generated in the data directory when they are not set.
    pub tls_certificate: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    pub max_line_length: usize,
    pub command_timeout_seconds: u64,
    pub session_timeout_seconds: u64,
    /// Connections the MX, and the submission listener apart, hold at once
    /// from all clients.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub greeting_delay_ms: u64,
}

impl Default for SmtpSection {
    fn default() -> Self {
        let smtp = mail::smtp::SmtpConfig::default();
        SmtpSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 2525)),
            tls_certificate: None,
            tls_key: None,
            max_message_bytes: smtp.max_message_size,
            max_recipients: smtp.max_recipients,
            max_line_length: smtp.max_line_length,
            command_timeout_seconds: smtp.command_timeout.as_secs(),
            session_timeout_seconds: smtp.session_timeout.as_secs(),
            max_connections: smtp.max_connections,
            max_connections_per_ip: smtp.max_connections_per_ip,
            greeting_delay_ms: 0,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailSection {
    /// The public host name of this instance's MX and submission service.
    pub hostname: String,
    /// The IMAP port mail clients are told to use (autoconfig, SRV), when it
    /// differs from the port Caliop listens on (a port mapping in front);
    /// unset: `imap.tls_listen`'s (implicit TLS) if set, else `imap.listen`'s
    /// (STARTTLS).
    pub client_imap_port: Option<u16>,
    /// Likewise for submission (STARTTLS); unset: `submission.listen`'s.
    pub client_submission_port: Option<u16>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsSection {
    /// The resolver every DNS check asks. A local validating resolver is
    /// what a mail server should use; the default stays on loopback.
    pub resolver: SocketAddr,
    pub timeout_ms: u64,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterSection {
    /// Rspamd's controller (`http://127.0.0.1:11334`): every message is
    /// checked there (`/checkv2`) and judgements are learned there. Unset:
    /// the built-in filter (DNS lists, authentication results, heuristics).
    pub rspamd_url: Option<String>,
    /// The controller's password, when Caliop is not in its `secure_ip`.
    #[serde(skip_serializing)]
    pub rspamd_password: Option<SecretString>,
    /// ClamAV's clamd (`127.0.0.1:3310`), asked directly; with Rspamd, its
    /// antivirus module usually asks clamd instead.
    pub clamd: Option<String>,
    /// `tempfail` (451, the sender retries) or `accept` (stored unscanned,
    /// counted) when the filter fails or times out.
    pub on_error: mail::filter::OnError,
    pub timeout_ms: u64,
    /// The built-in filter's DNS blocklists of client IPs, allowlists of
    /// client IPs, and blocklists of sender domains, asked through
    /// `dns.resolver` (Spamhaus refuses public resolvers: run your own).
    pub dnsbl: Vec<String>,
    pub dnswl: Vec<String>,
    pub domain_blocklists: Vec<String>,
    /// Rspamd symbols that mean a virus (refused with 554 5.7.1).
    pub virus_symbols: Vec<String>,
    /// The built-in filter's score from which mail goes to Junk.
    pub junk_score: f64,
    /// Refused submissions within 24 hours after which an account loses
    /// sending until an operator clears it (`GET /v1/abuse`); 0: never.
    pub outbound_strikes: u32,
}

impl Default for FilterSection {
    fn default() -> Self {
        let filter = mail::filter::FilterConfig::default();
        FilterSection {
            rspamd_url: filter.rspamd_url,
            rspamd_password: None,
            clamd: filter.clamd,
            on_error: filter.on_error,
            timeout_ms: filter.timeout.as_millis() as u64,
            dnsbl: filter.dnsbl,
            dnswl: filter.dnswl,
            domain_blocklists: filter.domain_blocklists,
            virus_symbols: filter.virus_symbols,
            junk_score: filter.junk_score,
            outbound_strikes: filter.outbound_strikes,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// `text` or `json`.
    pub format: String,
    /// A `tracing` filter, e.g. `info,sqlx=warn`. `RUST_LOG` overrides it.
    pub filter: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            database: DatabaseConfig::default(),
            api: ApiSection::default(),
            smtp: SmtpSection::default(),
            submission: SubmissionSection::default(),
            imap: ImapSection::default(),
            managesieve: ManageSieveSection::default(),
            delivery: DeliverySection::default(),
            worker: WorkerSection::default(),
            storage: StorageSection::default(),
            send_limits: SendLimitsSection::default(),
            billing: billing::BillingConfig::default(),
            mail: MailSection::default(),
            dns: DnsSection::default(),
            log: LogSection::default(),
            admin: AdminSection::default(),
            webmail: WebmailSection::default(),
            domains: DomainsSection::default(),
            filter: FilterSection::default(),
            acme: AcmeSection::default(),
        }
    }
}

impl Default for ApiSection {
    fn default() -> Self {
        let api = api::ApiConfig::default();
        ApiSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls_listen: None,
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            token_ttl_seconds: api.token_ttl.as_secs(),
            max_body_bytes: api.max_body_bytes,
            login_failures_per_address: api.login_failures_per_address,
            login_failures_per_ip: api.login_failures_per_ip,
            login_window_seconds: api.login_window.as_secs(),
            exports_max_bytes: api.exports_max_bytes,
            second_factor_grace_days: api.second_factor_grace_days,
            mail_account_passwords: api.mail_account_passwords,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            max_connections: 16,
            notify: true,
        }
    }
}

impl Default for MailSection {
    fn default() -> Self {
        MailSection {
            hostname: "mail.localhost".into(),
            client_imap_port: None,
            client_submission_port: None,
        }
    }
}

impl Default for DnsSection {
    fn default() -> Self {
        DnsSection {
            resolver: SocketAddr::from(([127, 0, 0, 1], 53)),
            timeout_ms: 3000,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: "text".into(),
            // The pgp crate warns whenever it writes a secret key packet
            // whose length changed since it was read, which locking a new
            // key under its passphrase always does: a notice of its own
            // internals, nothing an operator can act on.
            filter: "info,sqlx=warn,pgp::packet::packet_sum=error".into(),
        }
    }
}

impl Config {
    /// Defaults, then the TOML file if given, then `CALIOP_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Config, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        let env = Env::prefixed("CALIOP_")
            .filter(|key| {
                let key = key.as_str().to_ascii_lowercase();
                if NOT_CONFIGURATION.contains(&key.as_str()) {
                    return false;
                }
                key == "data_dir"
                    || SECTIONS
                        .iter()
                        .any(|s| key.strip_prefix(s).is_some_and(|r| r.starts_with('_')))
            })
            .map(|key| {
                let key = key.as_str().to_ascii_lowercase();
                SECTIONS
                    .iter()
                    .find_map(|s| {
                        key.strip_prefix(s)
                            .and_then(|rest| rest.strip_prefix('_'))
                            .map(|rest| format!("{s}.{rest}"))
                    })
                    .unwrap_or_else(|| key.to_owned())
                    .into()
            });
        figment.merge(env).extract().map_err(Box::new)
    }

    /// Where mail clients are told to connect: what listens (see
    /// `mail.client_imap_port`).
    pub fn client_ports(&self) -> tenants::dns_records::ClientPorts {
        self.client_ports_bound(Listening::default())
    }

    /// [`Config::client_ports`], with the ports the listeners were bound
    /// to (a configured port 0 becomes the one the system chose).
    pub fn client_ports_bound(&self, bound: Listening) -> tenants::dns_records::ClientPorts {
        let imap_tls = self.imap.tls_listen.is_some();
        let listening = match self.imap.tls_listen {
            Some(tls) => bound.imaps.unwrap_or(tls.port()),
            None => bound.imap.unwrap_or(self.imap.listen.port()),
        };
        tenants::dns_records::ClientPorts {
            imap: self.mail.client_imap_port.unwrap_or(listening),
            imap_tls,
            submission: self
                .mail
                .client_submission_port
                .unwrap_or(bound.submission.unwrap_or(self.submission.listen.port())),
        }
    }

    /// What the ACME job needs, when it is on.
    pub fn acme_config(&self) -> Result<Option<mail::acme::AcmeConfig>, String> {
        if !self.acme.enabled {
            return Ok(None);
        }
        let extra_roots = match &self.acme.extra_ca_file {
            Some(path) => mail::https::load_roots(path)?,
            None => Vec::new(),
        };
        Ok(Some(mail::acme::AcmeConfig {
            directory_url: self.acme.directory_url.clone(),
            contact: self.acme.contact.clone(),
            extra_roots,
            renew_before: chrono::Duration::days(self.acme.renew_days.max(1)),
        }))
    }

    /// The configured sites, or the three local ones of the embedded default.
    pub fn storage_sites(&self) -> Vec<vault::sites::SiteConfig> {
        if !self.storage.sites.is_empty() {
            return self.storage.sites.clone();
        }
        [("local-fr", "FR"), ("local-de", "DE"), ("local-ch", "CH")]
            .into_iter()
            .map(|(name, jurisdiction)| vault::sites::SiteConfig {
                name: name.into(),
                jurisdiction: jurisdiction.into(),
                path: Some(self.data_dir.join("sites").join(name)),
                s3: None,
            })
            .collect()
    }

    /// Opens the storage sites and the dispersal service over them.
    pub fn dispersed(
        &self,
        store: &tenants::Store,
    ) -> Result<mail::dispersed::Dispersed, vault::VaultError> {
        let sites = vault::sites::Sites::open(
            &self.storage_sites(),
            vault::sites::SiteOptions {
                hedge_after: Duration::from_millis(self.storage.hedge_after_ms),
                request_timeout: Duration::from_millis(self.storage.request_timeout_ms.max(100)),
            },
        )?;
        let default = vault::dispersal::Params::new(self.storage.k, self.storage.n)?;
        mail::dispersed::Dispersed::new(
            store.clone(),
            sites,
            mail::dispersed::DispersalConfig {
                default,
                write_quorum: self.storage.write_quorum,
                min_k: self.storage.min_k.max(2),
                max_n: self.storage.max_n,
            },
        )
    }

    /// The spam and virus filter's settings.
    pub fn filter_config(&self) -> mail::filter::FilterConfig {
        let f = &self.filter;
        mail::filter::FilterConfig {
            rspamd_url: f.rspamd_url.clone().filter(|u| !u.is_empty()),
            rspamd_password: f
                .rspamd_password
                .as_ref()
                .map(|p| p.expose_secret().to_owned()),
            clamd: f.clamd.clone().filter(|c| !c.is_empty()),
            on_error: f.on_error,
            timeout: Duration::from_millis(f.timeout_ms.max(100)),
            dnsbl: f.dnsbl.clone(),
            dnswl: f.dnswl.clone(),
            domain_blocklists: f.domain_blocklists.clone(),
            virus_symbols: f.virus_symbols.clone(),
            junk_score: f.junk_score,
            outbound_strikes: f.outbound_strikes,
        }
    }

    /// How submitted mail is sent.
    pub fn outbound_config(&self) -> Result<mail::outbound::OutboundConfig, String> {
        let extra_roots = match &self.delivery.extra_ca_file {
            Some(path) => mail::https::load_roots(path)?,
            None => Vec::new(),
        };
        Ok(mail::outbound::OutboundConfig {
            hostname: self.mail.hostname.clone(),
            delivery_port: self.delivery.port,
            relay: self.delivery.relay,
            https_port: self.delivery.https_port,
            extra_roots,
            lifetime: Duration::from_secs(self.delivery.lifetime_seconds),
            connect_timeout: Duration::from_secs(self.delivery.connect_timeout_seconds),
            max_recipients: self.smtp.max_recipients,
            limits: mail::outbound::SendLimits {
                public: self.send_limits.public,
                paid: self.send_limits.paid,
            },
            payment_grace: chrono::Duration::days(self.billing.grace_days.max(0)),
            allow_private_networks: self.delivery.allow_private_networks,
        })
    }

    /// Delays between delivery attempts.
    pub fn delivery_retry(&self) -> worker::RetryPolicy {
        worker::RetryPolicy {
            max_attempts: mail::outbound::DELIVERY_MAX_ATTEMPTS,
            base: Duration::from_secs(self.delivery.retry_base_seconds.max(1)),
            max: Duration::from_secs(
                self.delivery
                    .retry_max_seconds
                    .max(self.delivery.retry_base_seconds)
                    .max(1),
            ),
            jitter: 0.2,
        }
    }

    /// The database URL, defaulting to a SQLite file in the data directory.
    pub fn database_url(&self) -> SecretString {
        match &self.database.url {
            Some(url) => url.clone(),
            None => SecretString::from(format!(
                "sqlite://{}",
                self.data_dir.join("caliop.db").display()
            )),
        }
    }

    /// The database URL with any password masked, for messages.
    pub fn database_url_for_display(&self) -> String {
        let url = self.database_url();
        let url = url.expose_secret();
        match (url.find("://"), url.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                let credentials = &url[scheme_end + 3..at];
                match credentials.split_once(':') {
                    Some((user, _)) => {
                        format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..])
                    }
                    None => url.to_owned(),
                }
            }
            _ => url.to_owned(),
        }
    }

    pub fn smtp_config(&self) -> mail::smtp::SmtpConfig {
        mail::smtp::SmtpConfig {
            hostname: self.mail.hostname.clone(),
            max_message_size: self.smtp.max_message_bytes,
            max_recipients: self.smtp.max_recipients,
            max_line_length: self.smtp.max_line_length,
            command_timeout: Duration::from_secs(self.smtp.command_timeout_seconds),
            session_timeout: Duration::from_secs(self.smtp.session_timeout_seconds),
            max_connections: self.smtp.max_connections,
            max_connections_per_ip: self.smtp.max_connections_per_ip,
            greeting_delay: Duration::from_millis(self.smtp.greeting_delay_ms),
            max_errors: 10,
        }
    }

    pub fn imap_config(&self) -> mail::imap::ImapConfig {
        mail::imap::ImapConfig {
            hostname: self.mail.hostname.clone(),
            max_literal: self.imap.max_message_bytes,
            max_connections: self.imap.max_connections,
            max_connections_per_ip: self.imap.max_connections_per_ip,
            autologout: Duration::from_secs(self.imap.autologout_minutes.max(30) * 60),
            ..mail::imap::ImapConfig::default()
        }
    }

    pub fn api_config(&self) -> api::ApiConfig {
        api::ApiConfig {
            token_ttl: Duration::from_secs(self.api.token_ttl_seconds),
            max_body_bytes: self.api.max_body_bytes,
            mail_hostname: self.mail.hostname.clone(),
            login_failures_per_address: self.api.login_failures_per_address,
            login_failures_per_ip: self.api.login_failures_per_ip,
            login_window: Duration::from_secs(self.api.login_window_seconds),
            client_ports: self.client_ports(),
            admin_assets_dir: self.admin.assets_dir.clone(),
            mail_assets_dir: self.webmail.assets_dir.clone(),
            exports_dir: self.data_dir.join("exports"),
            exports_max_bytes: self.api.exports_max_bytes,
            ksf: vault::opaque::KsfParams::default(),
            second_factor_grace_days: self.api.second_factor_grace_days,
            mail_account_passwords: self.api.mail_account_passwords,
            https_port: self.api.tls_listen.map(|a| a.port()),
        }
    }
}

#[cfg(test)]
// `figment::Jail`'s closures return `figment::Error`, whose size is figment's choice.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        let mut config = Config::default();
        config.database.url = Some(SecretString::from(
            "postgres://caliop:hunter2@db/caliop".to_owned(),
        ));
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(
            config.database_url_for_display(),
            "postgres://caliop:***@db/caliop"
        );
    }

    #[test]
    fn mail_clients_are_told_the_ports_that_listen() {
        use tenants::dns_records::ClientPorts;
        let mut config = Config::default();
        // Out of the box: IMAP with STARTTLS on its listener, not a 993 nothing listens on.
        assert_eq!(
            config.client_ports(),
            ClientPorts {
                imap: 2143,
                imap_tls: false,
                submission: 2587
            }
        );
        config.imap.tls_listen = Some(SocketAddr::from(([0, 0, 0, 0], 993)));
        assert_eq!(
            config.client_ports(),
            ClientPorts {
                imap: 993,
                imap_tls: true,
                submission: 2587
            }
        );
        // Behind a port mapping, the public ports are said.
        config.mail.client_imap_port = Some(10993);
        config.mail.client_submission_port = Some(587);
        assert_eq!(
            config.client_ports(),
            ClientPorts {
                imap: 10993,
                imap_tls: true,
                submission: 587
            }
        );
    }

    #[test]
    fn environment_overrides_file_and_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "caliop.toml",
                "data_dir = \"/srv/caliop\"\n[api]\nlisten = \"0.0.0.0:9000\"\n",
            )?;
            jail.set_env("CALIOP_API_LISTEN", "127.0.0.1:9100");
            jail.set_env("CALIOP_DATABASE_URL", "postgres://u@h/db");
            let config = Config::load(Some(Path::new("caliop.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.api.listen, SocketAddr::from(([127, 0, 0, 1], 9100)));
            assert_eq!(config.data_dir, PathBuf::from("/srv/caliop"));
            assert_eq!(config.database_url().expose_secret(), "postgres://u@h/db");
            assert_eq!(config.dns.resolver, SocketAddr::from(([127, 0, 0, 1], 53)));
            Ok(())
        });
    }

    #[test]
    fn the_admin_app_folder_comes_from_the_environment_and_a_password_is_no_setting() {
        figment::Jail::expect_with(|jail| {
            assert_eq!(
                Config::load(None)
                    .map_err(|e| e.to_string())?
                    .admin
                    .assets_dir,
                PathBuf::from("web-admin/dist")
            );
            jail.set_env("CALIOP_ADMIN_ASSETS_DIR", "/srv/caliop/admin");
            jail.set_env("CALIOP_WEBMAIL_ASSETS_DIR", "/srv/caliop/mail");
            jail.set_env("CALIOP_ADMIN_PASSWORD", "not a setting");
            let config = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(
                config.api_config().admin_assets_dir,
                PathBuf::from("/srv/caliop/admin")
            );
            assert_eq!(
                config.api_config().mail_assets_dir,
                PathBuf::from("/srv/caliop/mail")
            );
            // (A typo goes in the file: a bad variable would reach the tests that run beside this one.)
            jail.create_file("caliop.toml", "[admin]\nasset_dir = \"/typo\"\n")?;
            let err = Config::load(Some(Path::new("caliop.toml"))).unwrap_err();
            assert!(err.to_string().contains("asset_dir"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn typos_in_the_file_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("caliop.toml", "[api]\nlisten_on = \"0.0.0.0:9000\"\n")?;
            let err = Config::load(Some(Path::new("caliop.toml"))).unwrap_err();
            assert!(err.to_string().contains("listen_on"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn the_compose_configuration_loads() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/caliop.toml");
        let config = Config::load(Some(&file)).unwrap();
        let sites = config.storage_sites();
        assert_eq!(sites.len(), 3);
        let mut jurisdictions: Vec<_> = sites.iter().map(|s| s.jurisdiction.clone()).collect();
        jurisdictions.dedup();
        assert_eq!(jurisdictions.len(), 3, "one site per jurisdiction");
        assert!(sites.iter().all(|s| {
            s.s3.as_ref()
                .is_some_and(|s3| s3.endpoint.starts_with("https://"))
        }));
        assert!(
            !format!("{config:?}").contains("change-me"),
            "site secrets never show"
        );
    }

    #[test]
    fn billing_comes_from_the_file_and_the_environment_and_its_secrets_never_show() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "caliop.toml",
                "[billing]\nprovider = \"stripe\"\nstripe_webhook_secrets = [\"whsec_filesecret\"]\n\
                 [billing.free_account_month_cents]\neur = 150\n",
            )?;
            jail.set_env("CALIOP_BILLING_STRIPE_SECRET_KEY", "sk_test_envsecret");
            jail.set_env("CALIOP_BILLING_GRACE_DAYS", "3");
            let config = Config::load(Some(Path::new("caliop.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.billing.provider, billing::Provider::Stripe);
            assert_eq!(config.billing.grace_days, 3);
            assert_eq!(
                config.billing.free_account_month_cents.get("eur"),
                Some(&150)
            );
            assert_eq!(config.billing.stripe_webhook_secrets.len(), 1);
            let shown = format!("{config:?}");
            assert!(
                !shown.contains("whsec_filesecret") && !shown.contains("sk_test_envsecret"),
                "{shown}"
            );
            Ok(())
        });
    }
}
