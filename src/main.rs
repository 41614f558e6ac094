//! The `caliop` binary: one executable for every role. `serve` runs
//! everything in one process on the embedded default (SQLite in `./data`);
//! the other commands run one role each, for scale-out deployments.

mod bench;
mod client;
mod config;
mod idle_bench;
mod peers;
mod progress;
mod sites;
mod soak;
mod transfer;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use tenants::{Actor, Role, Scope, Store, Subject};
use tracing_subscriber::EnvFilter;

use config::Config;

#[derive(Parser)]
#[command(
    name = "caliop",
    version,
    about = "Caliop: white-label, multi-tenant secure mail"
)]
struct Cli {
    /// A TOML configuration file; `CALIOP_*` environment variables override it.
    #[arg(long, global = true, env = "CALIOP_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process: the API, the SMTP MX and the workers.
    Serve,
    /// Run the REST API only.
    Api,
    /// Run the inbound SMTP server (the MX) only.
    Smtp,
    /// Run the IMAP server only.
    Imap,
    /// Run the background job workers only.
    Worker,
    /// Apply database migrations and exit.
    Migrate,
    /// Administration from the command line.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Storage sites of dispersed mail: status, scrub, repair, evacuation.
    Sites {
        #[command(subcommand)]
        command: sites::SitesCommand,
    },
    /// Move a whole tenant to another instance: export it to an encrypted archive, import one.
    Tenant {
        #[command(subcommand)]
        command: transfer::TenantCommand,
    },
    /// Legal requests: the disclosure export of a valid request.
    Legal {
        #[command(subcommand)]
        command: transfer::LegalCommand,
    },
    /// Sign in as a user (the password stays on this machine) and print an access token.
    Login(client::LoginArgs),
    /// Open an activation link: set the account's password on this machine
    /// (from CALIOP_NEW_PASSWORD, or a line of stdin).
    Activate(client::ActivateArgs),
    /// The account's OpenPGP key, unlocked on this machine.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// The account's password, changed on this machine.
    Password {
        #[command(subcommand)]
        command: PasswordCommand,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Measure a service and print a table.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum PasswordCommand {
    /// Change it (current from CALIOP_PASSWORD, new from CALIOP_NEW_PASSWORD, or two lines of stdin).
    Change(client::PasswordArgs),
    /// Set a new one with a reset link (new from CALIOP_NEW_PASSWORD or stdin;
    /// with the old one in CALIOP_PASSWORD the key is kept, else a new key
    /// pair is made on this machine).
    Reset(client::ResetArgs),
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Sign in and write the secret key unlocked, for GnuPG or Thunderbird.
    Unlock(client::UnlockArgs),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Drive the SMTP MX over loopback with concurrent clients.
    Smtp(bench::SmtpBench),
    /// Submit messages and deliver them, DKIM-signed, to an SMTP sink on loopback.
    Outbound(bench::OutboundBench),
    /// Encode and decode dispersed objects (k-of-n shards) on one core, next to a memory copy.
    Vault(bench::VaultBench),
    /// SELECT a large mailbox and FETCH message headers over loopback IMAP.
    Imap(bench::ImapBench),
    /// Export a tenant of 1 GiB of mail to an encrypted archive and import it, measuring peak memory.
    Transfer(bench::TransferBench),
    /// Authenticated API reads against bare axum returning the same JSON, loaded by wrk.
    Api(bench::ApiBench),
    /// Load every door at once for minutes, report throughput, p99 and memory, and count that no acknowledged message is lost.
    Soak(soak::SoakBench),
    /// How soon IMAP IDLE in one process hears of mail stored by another
    /// (PostgreSQL; polling against LISTEN/NOTIFY).
    Idle(idle_bench::IdleBench),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Print an operator access token, to bootstrap the instance through the API.
    OperatorToken {
        /// Lifetime of the token in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Create an administrator of the operator tenant, who signs in with
    /// the operator's role; hosts the address's domain in the operator
    /// tenant if no tenant does. The password comes from `CALIOP_ADMIN_PASSWORD`,
    /// or else the first line of standard input. Prints the account id.
    CreateOperator {
        /// The administrator's address, e.g. `admin@ops.example`.
        address: String,
        #[arg(long)]
        display_name: Option<String>,
    },
}

fn on_current_thread(run: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run)
}

/// Blocks of 1 MiB and more are mapped and unmapped on their own rather
/// than kept in glibc's heaps. Each sign-in hashes with Argon2id (19 MiB,
/// on the blocking pool): with glibc's default, whose mapping threshold
/// rises to the size of the last block freed, every blocking thread's heap
/// kept three such blocks, and a soak of sign-ins, ingest and IMAP held
/// 550 MiB resident where the live data was under 100.
fn return_large_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn main() -> anyhow::Result<()> {
    return_large_blocks_to_the_system();
    let cli = Cli::parse();
    match cli.command {
        Command::Openapi => {
            print!("{}", api::openapi_json());
            return Ok(());
        }
        // The user's side needs no configuration of a server, and logs nothing.
        Command::Login(args) => return on_current_thread(client::login(args)),
        Command::Activate(args) => return on_current_thread(client::activate(args)),
        Command::Key {
            command: KeyCommand::Unlock(args),
        } => return on_current_thread(client::unlock(args)),
        Command::Password {
            command: PasswordCommand::Change(args),
        } => return on_current_thread(client::change_password(args)),
        Command::Password {
            command: PasswordCommand::Reset(args),
        } => return on_current_thread(client::reset(args)),
        _ => {}
    }
    let config = Config::load(cli.config.as_deref()).context("reading the configuration")?;
    init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve => {
                serve(
                    config,
                    Roles {
                        api: true,
                        smtp: true,
                        imap: true,
                        worker: true,
                    },
                )
                .await
            }
            Command::Api => {
                serve(
                    config,
                    Roles {
                        api: true,
                        smtp: false,
                        imap: false,
                        worker: false,
                    },
                )
                .await
            }
            Command::Smtp => {
                serve(
                    config,
                    Roles {
                        api: false,
                        smtp: true,
                        imap: false,
                        worker: false,
                    },
                )
                .await
            }
            Command::Imap => {
                serve(
                    config,
                    Roles {
                        api: false,
                        smtp: false,
                        imap: true,
                        worker: false,
                    },
                )
                .await
            }
            Command::Worker => {
                serve(
                    config,
                    Roles {
                        api: false,
                        smtp: false,
                        imap: false,
                        worker: true,
                    },
                )
                .await
            }
            Command::Migrate => {
                let store = open_store(&config).await?;
                store.close().await;
                println!(
                    "migrations applied to {}",
                    config.database_url_for_display()
                );
                Ok(())
            }
            Command::Admin {
                command: AdminCommand::OperatorToken { ttl },
            } => operator_token(&config, ttl).await,
            Command::Admin {
                command:
                    AdminCommand::CreateOperator {
                        address,
                        display_name,
                    },
            } => create_operator(&config, &address, display_name).await,
            Command::Sites { command } => {
                let store = open_store(&config).await?;
                let dispersed = config
                    .dispersed(&store)
                    .context("opening the storage sites")?;
                let outcome = sites::run(&dispersed, command).await;
                store.close().await;
                outcome
            }
            Command::Tenant { command } => transfer::tenant(&config, command).await,
            Command::Legal { command } => transfer::legal(&config, command).await,
            Command::Openapi
            | Command::Login(_)
            | Command::Activate(_)
            | Command::Key { .. }
            | Command::Password { .. } => Ok(()),
            Command::Bench {
                command: BenchCommand::Smtp(args),
            } => bench::run(args).await,
            Command::Bench {
                command: BenchCommand::Outbound(args),
            } => bench::outbound(args).await,
            Command::Bench {
                command: BenchCommand::Vault(args),
            } => bench::vault(args),
            Command::Bench {
                command: BenchCommand::Imap(args),
            } => bench::imap(args).await,
            Command::Bench {
                command: BenchCommand::Transfer(args),
            } => bench::transfer(args).await,
            Command::Bench {
                command: BenchCommand::Api(args),
            } => bench::api(args).await,
            Command::Bench {
                command: BenchCommand::Soak(args),
            } => soak::soak(args).await,
            Command::Bench {
                command: BenchCommand::Idle(args),
            } => idle_bench::idle(args).await,
        }
    })
}

fn init_logging(config: &Config) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Connects to the configured database, creating the data directory for
/// the SQLite default, and applies pending migrations.
async fn open_store(config: &Config) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    // The database, keys and certificates live here: no one else may read them.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {} to its owner", config.data_dir.display()))?;
    }
    let url = config.database_url();
    let store = Store::connect(url.expose_secret(), config.database.max_connections)
        .await
        .with_context(|| format!("connecting to {}", config.database_url_for_display()))?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

fn instance_key(config: &Config) -> anyhow::Result<vault::instance::InstanceKey> {
    vault::instance::InstanceKey::load_or_create(&config.data_dir)
        .context("loading the instance key")
}

async fn operator_token(config: &Config, ttl: u64) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let operator = store.ensure_operator().await?;
    store.close().await;
    let tokens = api::Tokens::new(&instance_key(config)?, Duration::from_secs(ttl));
    let actor = Actor {
        subject: Subject::Operator,
        tenant_id: operator.id,
        role: Role::Operator,
        scopes: vec![Scope::Read, Scope::Write],
    };
    let token = tokens
        .issue(&actor, 0, Duration::from_secs(ttl))
        .map_err(|p| anyhow::anyhow!("{p:?}"))?;
    println!("{token}");
    Ok(())
}

/// The password of a new administrator: `CALIOP_ADMIN_PASSWORD`, or else
/// the first line of standard input (without its line ending).
fn admin_password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("CALIOP_ADMIN_PASSWORD") {
        return Ok(password);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    if password.is_empty() {
        anyhow::bail!(
            "no password: set CALIOP_ADMIN_PASSWORD or give it as one line on standard input"
        );
    }
    Ok(password.to_owned())
}

async fn create_operator(
    config: &Config,
    address: &str,
    display_name: Option<String>,
) -> anyhow::Result<()> {
    let password = admin_password()?;
    let store = open_store(config).await?;
    let created = async {
        let key = instance_key(config)?;
        let master = vault::at_rest::MasterKey::load_or_create(&config.data_dir)
            .context("loading the master key")?;
        // What creating an account needs of the mail side: the master key
        // that seals the domain's DKIM keys. Nothing is received or sent here.
        let inbound = std::sync::Arc::new(mail::inbound::Inbound::new(
            store.clone(),
            master,
            None,
            config.mail.hostname.clone(),
        ));
        let outbound = std::sync::Arc::new(mail::outbound::Outbound::new(
            store.clone(),
            inbound.clone(),
            None,
            config
                .outbound_config()
                .map_err(|e| anyhow::anyhow!("delivery.extra_ca_file: {e}"))?,
        ));
        let dns = mail::dns::Dns::new(
            config.dns.resolver,
            Duration::from_millis(config.dns.timeout_ms),
        )?;
        let api_config = config.api_config();
        let login_guard = std::sync::Arc::new(api_config.login_guard());
        let state = api::AppState::new(
            store.clone(),
            &key,
            inbound,
            outbound,
            dns,
            login_guard,
            api_config,
        )
        .await?;
        api::create_operator_admin(&state, address, display_name, password)
            .await
            .map_err(|problem| anyhow::anyhow!("{}", problem.detail()))
    }
    .await;
    store.close().await;
    println!("{}", created?.id);
    Ok(())
}

/// Which services a process runs.
struct Roles {
    api: bool,
    smtp: bool,
    imap: bool,
    worker: bool,
}

/// What every TLS door serves when ACME has nothing for a name: the
/// configured certificate, else a self-signed one.
fn fallback_certificate(
    config: &Config,
) -> anyhow::Result<std::sync::Arc<rustls::sign::CertifiedKey>> {
    match (&config.smtp.tls_certificate, &config.smtp.tls_key) {
        (Some(cert), Some(key)) => Ok(mail::tls::certified_key(cert, key)?),
        (None, None) => Ok(mail::tls::self_signed_key(
            &config.data_dir,
            &config.mail.hostname,
        )?),
        _ => anyhow::bail!("smtp.tls_certificate and smtp.tls_key go together"),
    }
}

/// The certificates of this instance (ACME's, from the database, and the
/// fallback), loaded once and then watched for changes.
async fn certificates(
    config: &Config,
    store: &tenants::Store,
) -> anyhow::Result<std::sync::Arc<mail::certs::Certificates>> {
    let master = vault::at_rest::MasterKey::load_or_create(&config.data_dir)
        .context("loading the master key")?;
    let certs = mail::certs::Certificates::new(
        store.clone(),
        std::sync::Arc::new(master),
        &config.mail.hostname,
        fallback_certificate(config)?,
    );
    let served = certs
        .reload()
        .await
        .map_err(|e| anyhow::anyhow!("loading the certificates: {e}"))?;
    tracing::info!(names = served, "certificates loaded");
    Ok(certs)
}

async fn serve(config: Config, roles: Roles) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let hears_others = config.database.notify
        && store
            .hear_other_processes()
            .await
            .context("listening for other processes' changes (database.notify)")?;
    let certs = certificates(&config, &store).await?;
    let tls_config = || -> anyhow::Result<std::sync::Arc<rustls::ServerConfig>> {
        Ok(certs.server_config(&[])?)
    };
    let dns = mail::dns::Dns::new(
        config.dns.resolver,
        Duration::from_millis(config.dns.timeout_ms),
    )?;
    let master = vault::at_rest::MasterKey::load_or_create(&config.data_dir)
        .context("loading the master key")?;
    // Without a resolver every message would wait for DNS timeouts; say so
    // once, loudly, and receive mail without SPF/DKIM/DMARC until restarted.
    let mut banner = format!("Caliop {} is running.\n", env!("CARGO_PKG_VERSION"));
    let probe = mail::dns::Dns::new(
        config.dns.resolver,
        Duration::from_millis(config.dns.timeout_ms.min(1000)),
    )?;
    let authenticator = if probe.answers().await {
        Some(dns.authenticator())
    } else {
        tracing::warn!(resolver = %config.dns.resolver, "the DNS resolver does not answer: SPF, DKIM and DMARC checks are off");
        banner.push_str(&format!(
            "  warning: no DNS resolver answers at {} (dns.resolver): SPF, DKIM and DMARC checks are off\n",
            config.dns.resolver
        ));
        None
    };
    let resolver_answers = authenticator.is_some();
    let dispersed = std::sync::Arc::new(
        config
            .dispersed(&store)
            .context("opening the storage sites")?,
    );
    banner.push_str(&format!(
        "  storage: {} sites ({}), {} by default\n",
        dispersed.sites().all().len(),
        dispersed
            .sites()
            .all()
            .iter()
            .map(|s| format!("{} {}", s.name, s.jurisdiction))
            .collect::<Vec<_>>()
            .join(", "),
        dispersed.config().default,
    ));
    let inbound = std::sync::Arc::new(
        mail::inbound::Inbound::new(
            store.clone(),
            master,
            authenticator,
            config.mail.hostname.clone(),
        )
        .with_dispersed(dispersed.clone())
        .with_filter(std::sync::Arc::new(mail::filter::Filter::new(
            config.filter_config(),
            resolver_answers.then(|| dns.clone()),
        ))),
    );
    if let Some(filter) = inbound.filter() {
        banner.push_str(&format!("  filter: {}\n", filter.describe()));
        tracing::info!(filter = %filter.describe(), "spam and virus filter");
    }
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut stopping = stopping.clone();
        async move {
            let _ = stopping.wait_for(|s| *s).await;
        }
    };
    let mut services = tokio::task::JoinSet::new();
    let mut listening = config::Listening::default();
    {
        let certs = certs.clone();
        let stopping = stopped();
        services.spawn(async move {
            certs.watch(Duration::from_secs(30), stopping).await;
            Ok(())
        });
    }
    if roles.smtp {
        let listener = tokio::net::TcpListener::bind(config.smtp.listen)
            .await
            .with_context(|| format!("listening on {}", config.smtp.listen))?;
        let address = listener.local_addr()?;
        banner.push_str(&format!("  smtp listening on {address} (STARTTLS)\n"));
        let server =
            mail::smtp::SmtpServer::new(config.smtp_config(), inbound.clone(), Some(tls_config()?));
        tracing::info!(%address, "SMTP listening");
        services.spawn(server.serve(listener, stopped()));
    }
    let outbound = std::sync::Arc::new(mail::outbound::Outbound::new(
        store.clone(),
        inbound.clone(),
        resolver_answers.then(|| dns.clone()),
        config
            .outbound_config()
            .map_err(|e| anyhow::anyhow!("delivery.extra_ca_file: {e}"))?,
    ));
    // One count of failed sign-ins for the API and the submission port.
    let login_guard = std::sync::Arc::new(config.api_config().login_guard());
    if roles.smtp {
        let listener = tokio::net::TcpListener::bind(config.submission.listen)
            .await
            .with_context(|| format!("listening on {}", config.submission.listen))?;
        let address = listener.local_addr()?;
        listening.submission = Some(address.port());
        banner.push_str(&format!(
            "  submission listening on {address} (STARTTLS, AUTH PLAIN/LOGIN)\n"
        ));
        let server = mail::smtp::SmtpServer::submission(
            config.smtp_config(),
            inbound.clone(),
            outbound.clone(),
            login_guard.clone(),
            Some(tls_config()?),
        );
        tracing::info!(%address, "submission listening");
        services.spawn(server.serve(listener, stopped()));
    }
    if roles.imap {
        // Alone on SQLite, IMAP learns of new mail by asking the database;
        // beside the MX, the API and the workers, or told by the other
        // processes over LISTEN/NOTIFY, it hears at once, and asks rarely.
        let poll_interval = if hears_others || (roles.smtp && roles.api && roles.worker) {
            Duration::from_secs(30)
        } else {
            Duration::from_secs(1)
        };
        let imap_config = mail::imap::ImapConfig {
            poll_interval,
            ..config.imap_config()
        };
        let server = mail::imap::ImapServer::new(
            imap_config,
            inbound.clone(),
            login_guard.clone(),
            Some(tls_config()?),
        );
        // ManageSieve beside IMAP (announced first: the test harness reads
        // the banner up to the IMAP line).
        let sieve_listener = tokio::net::TcpListener::bind(config.managesieve.listen)
            .await
            .with_context(|| format!("listening on {}", config.managesieve.listen))?;
        let sieve_address = sieve_listener.local_addr()?;
        banner.push_str(&format!(
            "  managesieve listening on {sieve_address} (STARTTLS, AUTHENTICATE PLAIN)\n"
        ));
        tracing::info!(address = %sieve_address, "ManageSieve listening");
        let sieve_server = mail::managesieve::ManageSieveServer::new(
            mail::managesieve::ManageSieveConfig {
                hostname: config.mail.hostname.clone(),
                ..mail::managesieve::ManageSieveConfig::default()
            },
            inbound.clone(),
            login_guard.clone(),
            inbound.scripts().clone(),
            Some(tls_config()?),
        );
        services.spawn(sieve_server.serve(sieve_listener, stopped()));
        let listener = tokio::net::TcpListener::bind(config.imap.listen)
            .await
            .with_context(|| format!("listening on {}", config.imap.listen))?;
        let address = listener.local_addr()?;
        listening.imap = Some(address.port());
        banner.push_str(&format!(
            "  imap listening on {address} (STARTTLS, LOGIN / AUTHENTICATE PLAIN, LOGIN)\n"
        ));
        tracing::info!(%address, "IMAP listening");
        services.spawn(server.clone().serve(listener, false, stopped()));
        if let Some(tls_listen) = config.imap.tls_listen {
            if config.smtp.tls_certificate.is_none() && !config.acme.enabled {
                anyhow::bail!(
                    "imap.tls_listen needs a certificate: set smtp.tls_certificate and smtp.tls_key, or acme.enabled"
                );
            }
            let listener = tokio::net::TcpListener::bind(tls_listen)
                .await
                .with_context(|| format!("listening on {tls_listen}"))?;
            let address = listener.local_addr()?;
            listening.imaps = Some(address.port());
            banner.push_str(&format!("  imaps listening on {address} (TLS)\n"));
            services.spawn(server.serve(listener, true, stopped()));
        }
    }
    let billing = billing::Billing::new(
        store.clone(),
        config.billing.clone(),
        instance_key(&config)?.pkcs8_der(),
    )
    .map_err(|e| anyhow::anyhow!("billing: {e}"))?;
    banner.push_str(&format!(
        "  billing: {}; public signup {}\n",
        match config.billing.provider {
            billing::Provider::None => "no payment provider (the operator assigns plans)",
            billing::Provider::Stripe => "Stripe",
        },
        match &config.billing.public_domain {
            Some(domain) => format!("on {domain}"),
            None => "off (set billing.public_domain)".to_owned(),
        }
    ));
    if roles.worker {
        let context = worker::Context {
            store: store.clone(),
            dns: dns.clone(),
            outbound: outbound.clone(),
            delivery_retry: config.delivery_retry(),
            dispersed: Some(dispersed.clone()),
            billing: Some(billing.clone()),
            instance_key: Some(std::sync::Arc::new(instance_key(&config)?)),
            inbound: Some(inbound.clone()),
            exports_dir: Some(config.data_dir.join("exports")),
            acme: match config
                .acme_config()
                .map_err(|e| anyhow::anyhow!("acme: {e}"))?
            {
                Some(acme) => {
                    let master = vault::at_rest::MasterKey::load_or_create(&config.data_dir)
                        .context("loading the master key")?;
                    Some(std::sync::Arc::new(
                        mail::acme::Acme::new(store.clone(), std::sync::Arc::new(master), acme)
                            .map_err(|e| anyhow::anyhow!("acme: {e}"))?,
                    ))
                }
                None => None,
            },
        };
        if context.acme.is_some() {
            worker::schedule_certificates(&store).await?;
            banner.push_str(&format!(
                "  certificates by ACME from {}\n",
                config.acme.directory_url
            ));
        }
        worker::schedule_scrub(&store, config.storage.scrub_interval_hours).await?;
        worker::schedule_pool(&store).await?;
        worker::schedule_canary(&store).await?;
        worker::schedule_claim_lapse(&store, config.domains.claim_days).await?;
        worker::schedule_tombstone_pruning(&store, config.imap.tombstone_days).await?;
        let name = format!("{}-{}", config.mail.hostname, std::process::id());
        banner.push_str("  workers running (job queue)\n");
        let mut workers = worker::caliop_worker(context, name);
        workers.lease = Duration::from_secs(config.worker.lease_seconds.max(1));
        workers.concurrency = config.worker.concurrency.max(1);
        let stopping = stopped();
        services.spawn(async move {
            workers.run(stopping).await;
            Ok(())
        });
    }
    if roles.api {
        let key = instance_key(&config)?;
        // HTTPS first: plain HTTP redirects to the port it got.
        let tls_listener = match config.api.tls_listen {
            Some(tls_listen) => Some(
                tokio::net::TcpListener::bind(tls_listen)
                    .await
                    .with_context(|| format!("listening on {tls_listen}"))?,
            ),
            None => None,
        };
        let https_port = match &tls_listener {
            Some(listener) => Some(listener.local_addr()?.port()),
            None => None,
        };
        let state = api::AppState::new(
            store.clone(),
            &key,
            inbound.clone(),
            outbound.clone(),
            dns,
            login_guard.clone(),
            api::ApiConfig {
                client_ports: config.client_ports_bound(listening),
                https_port,
                ..config.api_config()
            },
        )
        .await?
        .with_billing(billing.clone());
        let listener = tokio::net::TcpListener::bind(config.api.listen)
            .await
            .with_context(|| format!("listening on {}", config.api.listen))?;
        let address = listener.local_addr()?;
        banner.push_str(&format!(
            "  api listening on http://{address} (reference: http://{address}/docs)\n"
        ));
        tracing::info!(%address, "API listening");
        let metrics_listener = tokio::net::TcpListener::bind(config.api.metrics_listen)
            .await
            .with_context(|| format!("listening on {}", config.api.metrics_listen))?;
        let metrics_address = metrics_listener.local_addr()?;
        banner.push_str(&format!(
            "  metrics listening on http://{metrics_address}/metrics\n"
        ));
        tracing::info!(address = %metrics_address, "metrics listening");
        services.spawn(api::metrics::serve(
            metrics_listener,
            state.clone(),
            stopped(),
        ));
        if let Some(listener) = tls_listener {
            let address = listener.local_addr()?;
            banner.push_str(&format!("  https listening on {address}\n"));
            tracing::info!(%address, "HTTPS listening");
            services.spawn(api::https::serve_tls(
                listener,
                state.clone(),
                certs.server_config(&[b"http/1.1"])?,
                stopped(),
            ));
        }
        services.spawn(api::serve(listener, state, stopped()));
    }
    banner.push_str(&format!(
        "  database: {}\n  data directory: {}\nGet an operator token with: caliop admin operator-token\n  \
         (from a checkout: cargo run --release -- admin operator-token)\n",
        config.database_url_for_display(),
        config.data_dir.display(),
    ));
    // The banner is for the person at the terminal; a closed stdout must not stop the server.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
    }
    tokio::select! {
        () = shutdown_signal() => {}
        Some(ended) = services.join_next() => {
            tracing::error!("a service stopped unexpectedly: {ended:?}");
        }
    }
    let _ = stop.send(true);
    while let Some(ended) = services.join_next().await {
        if let Ok(Err(e)) = ended {
            tracing::warn!(error = %e, "service ended with an error");
        }
    }
    tracing::info!("stopped");
    store.close().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM; in-flight requests then get to finish.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: draining requests");
}
