//! `caliop bench smtp`: drives the MX over loopback with concurrent clients
//! sending messages of a given size to hosted accounts at each level, and
//! prints throughput and latency. It runs the real server on a throw-away
//! SQLite data directory (or the database given), in this process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tenants::{
    Account, AccountRole, DomainName, EmailAddress, Level, Limits, NewAccount, NewDomain,
    NewTenant, Policy, Store, TenantKind,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(clap::Args, Debug)]
pub struct SmtpBench {
    /// Concurrent SMTP clients (an MX serves many senders at once).
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Messages per level.
    #[arg(long, default_value_t = 4000)]
    messages: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 10 * 1024)]
    size: usize,
    /// Levels to measure, comma-separated.
    #[arg(long, default_value = "standard,sealed")]
    levels: String,
    /// A database URL instead of a throw-away SQLite file.
    #[arg(long)]
    database_url: Option<String>,
    /// Spam filters to run each level with, comma-separated: `none`,
    /// `builtin` (its heuristics; no DNS lists, there is no resolver here),
    /// `rspamd` (needs `--rspamd-url`).
    #[arg(long, default_value = "none,builtin")]
    filters: String,
    /// Rspamd's controller, e.g. `http://127.0.0.1:11334`, for `--filters rspamd`.
    #[arg(long)]
    rspamd_url: Option<String>,
    /// Sieve on arrival, comma-separated: `none`, or `body` (an active
    /// script with a `body :contains` test and a header test, run before
    /// sealing, on every account).
    #[arg(long, default_value = "none")]
    sieve: String,
    /// Runs Postfix (Debian's package, as root) beside each measurement:
    /// an MX that queues each message and discards it, driven by the same
    /// clients with the same messages, right after Caliop's run.
    #[arg(long)]
    peer: bool,
}

struct Outcome {
    filter: String,
    level: Level,
    sent: usize,
    failed: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// Postfix's messages/s under the same load, measured right after.
    peer: Option<f64>,
}

/// `messages` transactions spread over `clients` connections to `smtp`.
struct Load {
    latencies: Vec<Duration>,
    failed: usize,
    elapsed: Duration,
}

async fn drive(
    smtp: std::net::SocketAddr,
    to: &str,
    raw: &Arc<String>,
    messages: usize,
    clients: usize,
) -> anyhow::Result<Load> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let per_client = messages.div_ceil(clients);
    for c in 0..clients {
        let count = per_client.min(messages.saturating_sub(c * per_client));
        let (raw, to) = (raw.clone(), to.to_owned());
        tasks.spawn(async move { client(smtp, &to, &raw, count).await });
    }
    let mut latencies = Vec::with_capacity(messages);
    let mut failed = 0;
    while let Some(done) = tasks.join_next().await {
        match done? {
            Ok((lat, fails)) => {
                latencies.extend(lat);
                failed += fails;
            }
            Err(e) => {
                eprintln!("bench: a client failed: {e:#}");
                failed += per_client;
            }
        }
    }
    Ok(Load {
        latencies,
        failed,
        elapsed: started.elapsed(),
    })
}

pub async fn run(args: SmtpBench) -> anyhow::Result<()> {
    let levels: Vec<Level> = args
        .levels
        .split(',')
        .map(|l| l.trim().parse())
        .collect::<Result<_, _>>()?;
    let fixture = fixture(args.database_url.as_deref(), &levels).await?;
    let mut accounts = Vec::with_capacity(levels.len());
    for level in &levels {
        accounts.push(fixture.account(*level).await?);
    }
    let Fixture {
        dir,
        url,
        store,
        master,
        domain_name,
    } = fixture;
    drop(master);
    // Mail at `dispersed` and above is cut into shards on the three local
    // sites of the embedded default, under the throw-away directory.
    let dispersed = if levels.iter().any(|l| *l >= Level::Dispersed) {
        let config = crate::config::Config {
            data_dir: dir.clone(),
            ..crate::config::Config::default()
        };
        Some(Arc::new(config.dispersed(&store)?))
    } else {
        None
    };
    let postfix = if args.peer {
        match crate::peers::missing(&[crate::peers::POSTFIX]) {
            Some(why) => {
                eprintln!("bench: no Postfix column: {why}");
                None
            }
            None => Some(
                crate::peers::Postfix::start(crate::peers::PostfixRole::Discard {
                    domain: domain_name.to_string(),
                })
                .await?,
            ),
        }
    } else {
        None
    };
    let mut filters = Vec::new();
    for name in args.filters.split(',').map(str::trim) {
        let config = match name {
            "none" => None,
            "builtin" => Some(mail::filter::FilterConfig::default()),
            "rspamd" => Some(mail::filter::FilterConfig {
                rspamd_url: Some(
                    args.rspamd_url
                        .clone()
                        .context("--filters rspamd needs --rspamd-url")?,
                ),
                ..mail::filter::FilterConfig::default()
            }),
            other => anyhow::bail!("unknown filter `{other}`: none, builtin or rspamd"),
        };
        filters.push((
            name.to_owned(),
            config.map(|c| Arc::new(mail::filter::Filter::new(c, None))),
        ));
    }
    let body_line = "The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    let mut combos = Vec::new();
    for sieve in args.sieve.split(',').map(str::trim) {
        if !matches!(sieve, "none" | "body") {
            anyhow::bail!("unknown --sieve `{sieve}`: none or body");
        }
        for (name, filter) in &filters {
            combos.push((name.clone(), filter.clone(), sieve == "body"));
        }
    }
    let mut outcomes = Vec::new();
    for (filter_name, filter, sieve) in &combos {
        let filter_name = if *sieve {
            format!("{filter_name} + Sieve")
        } else {
            filter_name.clone()
        };
        set_sieve(&store, &accounts, *sieve).await?;
        let mut inbound = mail::inbound::Inbound::new(
            store.clone(),
            vault::at_rest::MasterKey::load_or_create(&dir)?,
            None,
            "bench.caliop.test".into(),
        );
        if let Some(filter) = filter {
            inbound = inbound.with_filter(filter.clone());
        }
        if let Some(dispersed) = &dispersed {
            inbound = inbound.with_dispersed(dispersed.clone());
        }
        let inbound = Arc::new(inbound);
        let config = mail::smtp::SmtpConfig {
            hostname: "bench.caliop.test".into(),
            max_connections: args.clients + 1,
            max_connections_per_ip: args.clients + 1,
            ..mail::smtp::SmtpConfig::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let smtp = listener.local_addr()?;
        let server = mail::smtp::SmtpServer::new(config, inbound, None);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(server.serve(listener, async move {
            let _ = stopped.await;
        }));

        for level in &levels {
            let to = format!("{level}@{domain_name}");
            let mut raw = format!(
                "From: <bench@sender.test>\r\nTo: <{to}>\r\nSubject: benchmark\r\nDate: Thu, 26 Nov 2026 12:00:00 +0000\r\n\r\n"
            );
            while raw.len() + body_line.len() <= args.size {
                raw.push_str(body_line);
            }
            let raw = Arc::new(raw);
            eprintln!(
                "bench: {} × {} B to a {level} account with {} clients…",
                args.messages,
                raw.len(),
                args.clients
            );
            let Load {
                latencies,
                failed,
                elapsed,
            } = drive(smtp, &to, &raw, args.messages, args.clients).await?;
            eprintln!(
                "bench: {level} with filter {filter_name} done in {:.2} s",
                elapsed.as_secs_f64()
            );
            let peer = match &postfix {
                Some(postfix) => {
                    let load = drive(postfix.addr, &to, &raw, args.messages, args.clients).await?;
                    anyhow::ensure!(load.failed == 0, "Postfix refused {} messages", load.failed);
                    let rate =
                        load.latencies.len() as f64 / load.elapsed.as_secs_f64().max(f64::EPSILON);
                    eprintln!("bench: Postfix, same load: {rate:.0} msg/s");
                    Some(rate)
                }
                None => None,
            };
            outcomes.push(Outcome {
                filter: filter_name.clone(),
                level: *level,
                sent: latencies.len(),
                failed,
                elapsed,
                latencies,
                peer,
            });
        }
        let _ = stop.send(());
        let _ = server.await;
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    drop(postfix);

    print_table(&args, &url, &outcomes);
    let sample = format!(
        "From: <bench@sender.test>\r\nTo: <sealed@bench.test>\r\nSubject: benchmark\r\n\r\n{}",
        body_line.repeat(args.size / body_line.len())
    );
    print_limits(sample.as_bytes())?;
    Ok(())
}

/// What one core allows, beside what ingest reaches: sealing one message
/// to one key, parsing one, and GnuPG sealing one per process when it is
/// installed. Single-threaded, in memory, no I/O.
fn print_limits(message: &[u8]) -> anyhow::Result<()> {
    let key = vault::openpgp::AccountKey::generate_unprotected("Bench <sealed@bench.test>")?;
    let per_second = |runs: usize, mut f: Box<dyn FnMut() -> anyhow::Result<()> + '_>| {
        let started = Instant::now();
        for _ in 0..runs {
            f()?;
        }
        Ok::<f64, anyhow::Error>(runs as f64 / started.elapsed().as_secs_f64().max(f64::EPSILON))
    };
    let seal = per_second(
        500,
        Box::new(|| {
            vault::seal::encrypt(&key.public_armored, message)?;
            Ok(())
        }),
    )?;
    let parse = per_second(
        5000,
        Box::new(|| {
            let parsed = mail_parser::MessageParser::default().parse(message);
            anyhow::ensure!(parsed.is_some(), "the sample did not parse");
            Ok(())
        }),
    )?;
    println!(
        "limits of one core, {} B message: OpenPGP seal to one key {seal:.0} msg/s, MIME parse {parse:.0} msg/s",
        message.len()
    );
    match gpg_encrypt_rate(&key.public_armored, &key.fingerprint, message, 100) {
        Ok(rate) => println!("GnuPG, one `gpg --encrypt` process per message: {rate:.0} msg/s"),
        Err(e) => println!("GnuPG line skipped: {e:#}"),
    }
    Ok(())
}

/// `gpg --encrypt` to `fingerprint`, one process per message, `runs` times.
fn gpg_encrypt_rate(
    public_armored: &str,
    fingerprint: &str,
    message: &[u8],
    runs: usize,
) -> anyhow::Result<f64> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let home = std::env::temp_dir().join(format!(
        "caliop-bench-gpg-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&home)?;
    let gpg = || {
        let mut c = Command::new("gpg");
        c.arg("--homedir")
            .arg(&home)
            .args(["--batch", "--quiet", "--no-tty"]);
        c
    };
    let result = (|| {
        let mut import = gpg()
            .arg("--import")
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        import
            .stdin
            .take()
            .context("gpg's stdin")?
            .write_all(public_armored.as_bytes())?;
        anyhow::ensure!(import.wait()?.success(), "gpg --import failed");
        let started = Instant::now();
        for _ in 0..runs {
            let mut child = gpg()
                .args([
                    "--trust-model",
                    "always",
                    "--armor",
                    "--encrypt",
                    "--recipient",
                    fingerprint,
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            child
                .stdin
                .take()
                .context("gpg's stdin")?
                .write_all(message)?;
            anyhow::ensure!(child.wait()?.success(), "gpg --encrypt failed");
        }
        Ok(runs as f64 / started.elapsed().as_secs_f64().max(f64::EPSILON))
    })();
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(&home)
        .args(["--kill", "all"])
        .output();
    let _ = std::fs::remove_dir_all(&home);
    result
}

/// Turns the benchmark's Sieve script on or off for each of `accounts`.
async fn set_sieve(store: &Store, accounts: &[Account], on: bool) -> anyhow::Result<()> {
    const SCRIPT: &str = "require [\"fileinto\", \"body\"];\r\n\
        if body :contains \"needle that never appears\" { fileinto \"Found\"; stop; }\r\n\
        if header :contains \"subject\" \"invoice\" { fileinto \"Invoices\"; }\r\n";
    for account in accounts {
        let owner = tenants::store::SieveOwner::Account(account.id.0, account.tenant_id);
        if on {
            store
                .put_sieve_script("bench", owner, "bench", SCRIPT)
                .await?;
            store.activate_sieve("bench", owner, Some("bench")).await?;
        } else {
            store.activate_sieve("bench", owner, None).await?;
        }
    }
    Ok(())
}

/// A throw-away database (or the one given) with one tenant, one domain
/// (with DKIM keys) and one account per level, named `{level}@{domain}`.
pub(crate) struct Fixture {
    pub(crate) dir: std::path::PathBuf,
    pub(crate) url: String,
    pub(crate) store: Store,
    pub(crate) master: vault::at_rest::MasterKey,
    pub(crate) domain_name: DomainName,
}

impl Fixture {
    /// The account made for `level`, `{level}@{domain}`.
    pub(crate) async fn account(&self, level: Level) -> anyhow::Result<Account> {
        let address = EmailAddress::parse(&format!("{level}@{}", self.domain_name))?;
        self.store
            .account_by_address(&address)
            .await?
            .with_context(|| format!("the bench account {address} is missing"))
    }
}

pub(crate) async fn fixture(
    database_url: Option<&str>,
    levels: &[Level],
) -> anyhow::Result<Fixture> {
    let dir = std::env::temp_dir().join(format!("caliop-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    let url = database_url
        .map(str::to_owned)
        .unwrap_or_else(|| format!("sqlite://{}", dir.join("caliop.db").display()));
    let store = Store::connect(&url, 16)
        .await
        .context("connecting to the benchmark database")?;
    store.migrate().await?;
    let tenant = store
        .create_tenant(
            "bench",
            NewTenant {
                name: format!("bench {}", uuid::Uuid::now_v7().simple()),
                kind: TenantKind::Enterprise,
                parent_id: None,
                limits: Limits {
                    max_accounts: 100,
                    max_domains: 10,
                    storage_quota_bytes: 1 << 50,
                },
                policy: Policy::default(),
            },
        )
        .await?;
    let domain_name = DomainName::parse(&format!("bench-{}.test", uuid::Uuid::now_v7().simple()))?;
    // Kept in the directory, so that a `caliop` process run on it (the transfer bench) opens what is sealed.
    let master = vault::at_rest::MasterKey::load_or_create(&dir)?;
    let dkim_keys = mail::outbound::generate_dkim_keys(&master, domain_name.as_str())?;
    let domain = store
        .create_domain(
            "bench",
            NewDomain {
                tenant_id: tenant.id,
                name: domain_name.clone(),
                verification_token: "bench".into(),
                dkim_keys,
            },
        )
        .await?;
    // Only a verified domain is hosted: the bench vouches for its own.
    let domain = store
        .mark_domain_verified("bench", &domain, "forced")
        .await?;
    for level in levels {
        let address = EmailAddress::parse(&format!("{level}@{domain_name}"))?;
        let key = vault::openpgp::AccountKey::generate(
            &format!("Bench <{address}>"),
            "bench passphrase",
        )?;
        store
            .create_account(
                "bench",
                NewAccount {
                    tenant_id: tenant.id,
                    domain_id: domain.id,
                    address,
                    display_name: level.to_string(),
                    role: AccountRole::User,
                    level: *level,
                    password_hash: tenants::password::hash("bench passphrase")?,
                    fingerprint: key.fingerprint,
                    public_key: key.public_armored,
                    secret_key: key.secret_armored,
                },
            )
            .await?;
    }

    Ok(Fixture {
        dir,
        url,
        store,
        master,
        domain_name,
    })
}

/// One client on one connection, pipelining each transaction.
pub(crate) async fn client(
    smtp: std::net::SocketAddr,
    to: &str,
    raw: &str,
    count: usize,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let transaction =
        format!("MAIL FROM:<bench@sender.test>\r\nRCPT TO:<{to}>\r\nDATA\r\n{raw}.\r\n");
    client_with(smtp, count, |_| transaction.clone()).await
}

/// [`client`] with transaction `i` (MAIL, RCPT, DATA and the message) made by `transaction(i)`.
async fn client_with(
    smtp: std::net::SocketAddr,
    count: usize,
    transaction: impl Fn(usize) -> String,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let stream = tokio::net::TcpStream::connect(smtp).await?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let reply = async |reader: &mut BufReader<tokio::net::TcpStream>,
                       line: &mut String|
           -> anyhow::Result<u16> {
        loop {
            line.clear();
            if reader.read_line(line).await? == 0 {
                anyhow::bail!("connection closed");
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0));
            }
        }
    };
    reply(&mut reader, &mut line).await?;
    reader.get_mut().write_all(b"EHLO bench.client\r\n").await?;
    reply(&mut reader, &mut line).await?;
    let mut latencies = Vec::with_capacity(count);
    let mut failed = 0;
    for i in 0..count {
        let transaction = transaction(i);
        let started = Instant::now();
        reader.get_mut().write_all(transaction.as_bytes()).await?;
        let codes = [
            reply(&mut reader, &mut line).await?,
            reply(&mut reader, &mut line).await?,
            reply(&mut reader, &mut line).await?,
            reply(&mut reader, &mut line).await?,
        ];
        if codes == [250, 250, 354, 250] {
            latencies.push(started.elapsed());
        } else {
            failed += 1;
        }
    }
    reader.get_mut().write_all(b"QUIT\r\n").await?;
    Ok((latencies, failed))
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn print_table(args: &SmtpBench, url: &str, outcomes: &[Outcome]) {
    let cpu = cpu_name();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let backend = if url.starts_with("sqlite") {
        "SQLite (WAL, synchronous=FULL)"
    } else {
        "PostgreSQL"
    };
    println!("caliop bench smtp — {cores} cores, {cpu}");
    println!(
        "settings: {} clients, {} messages/level, {} B messages, database {backend}, SPF/DKIM/DMARC off (no DNS), plain SMTP, client in-process",
        args.clients, args.messages, args.size
    );
    let peer = outcomes.iter().any(|o| o.peer.is_some());
    print!(
        "{:<12} {:<18} {:>8} {:>7} {:>10} {:>8} {:>9} {:>9} {:>9}",
        "level", "filter", "sent", "failed", "msg/s", "MB/s", "p50 ms", "p95 ms", "p99 ms"
    );
    if peer {
        print!(" {:>13} {:>8}", "Postfix msg/s", "ratio");
    }
    println!();
    for o in outcomes {
        let mut sorted = o.latencies.clone();
        sorted.sort();
        let secs = o.elapsed.as_secs_f64().max(f64::EPSILON);
        let rate = o.sent as f64 / secs;
        print!(
            "{:<12} {:<18} {:>8} {:>7} {:>10.0} {:>8.2} {:>9.2} {:>9.2} {:>9.2}",
            o.level.as_str(),
            o.filter,
            o.sent,
            o.failed,
            rate,
            (o.sent * args.size) as f64 / secs / 1e6,
            percentile(&sorted, 0.50),
            percentile(&sorted, 0.95),
            percentile(&sorted, 0.99),
        );
        if let Some(p) = o.peer {
            print!(" {:>13.0} {:>7.2}×", p, rate / p.max(f64::EPSILON));
        }
        println!();
    }
    if peer {
        println!(
            "Postfix: Debian's package, its own instance on loopback, queue on the same disk (fsync'd), discard transport, run right after each Caliop row with the same clients and messages"
        );
    }
}

/// `caliop bench outbound`: messages submitted as a user would (the same
/// path as the API and the submission port), delivered by the workers,
/// DKIM-signed, to an SMTP sink on loopback reached as a relay.
#[derive(clap::Args, Debug)]
pub struct OutboundBench {
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 10 * 1024)]
    size: usize,
    /// Concurrent submitters.
    #[arg(long, default_value_t = 8)]
    submitters: usize,
    /// Jobs the workers run at once.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// A database URL instead of a throw-away SQLite file.
    #[arg(long)]
    database_url: Option<String>,
    /// Runs Postfix (Debian's package, as root) after Caliop: a relay for
    /// the local network given the same messages over SMTP by as many
    /// clients as there are submitters, sending them on to a fresh sink.
    #[arg(long)]
    peer: bool,
}

/// What the sink saw: arrival time per Message-ID, and how many carried DKIM signatures.
#[derive(Default)]
pub(crate) struct Arrivals {
    pub(crate) at: std::collections::HashMap<String, Instant>,
    signed: usize,
}

pub async fn outbound(args: OutboundBench) -> anyhow::Result<()> {
    let fixture = fixture(args.database_url.as_deref(), &[Level::Standard]).await?;
    let sender = fixture.account(Level::Standard).await?;
    let Fixture {
        dir,
        url,
        store,
        master,
        ..
    } = fixture;
    let arrivals = Arc::new(std::sync::Mutex::new(Arrivals::default()));
    let (all_arrived, arrived) = tokio::sync::watch::channel(0usize);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink_addr = listener.local_addr()?;
    let sink = tokio::spawn(sink(listener, arrivals.clone(), all_arrived));

    let unlimited = tenants::store::SendRates {
        account_messages_per_hour: i64::MAX / 4,
        account_recipients_per_day: i64::MAX / 4,
        tenant_messages_per_hour: i64::MAX / 4,
        tenant_recipients_per_day: i64::MAX / 4,
    };
    let inbound = Arc::new(mail::inbound::Inbound::new(
        store.clone(),
        master,
        None,
        "bench.caliop.test".into(),
    ));
    let outbound = Arc::new(mail::outbound::Outbound::new(
        store.clone(),
        inbound,
        None,
        mail::outbound::OutboundConfig {
            hostname: "bench.caliop.test".into(),
            relay: Some(sink_addr),
            limits: mail::outbound::SendLimits {
                public: unlimited,
                paid: unlimited,
            },
            ..mail::outbound::OutboundConfig::default()
        },
    ));
    let context = worker::Context {
        store: store.clone(),
        // Never asked: every message goes through the relay.
        dns: mail::dns::Dns::new(
            std::net::SocketAddr::from(([127, 0, 0, 1], 53)),
            Duration::from_secs(1),
        )?,
        outbound: outbound.clone(),
        dispersed: None,
        billing: None,
        instance_key: None,
        acme: None,
        inbound: None,
        exports_dir: None,
        delivery_retry: worker::RetryPolicy {
            max_attempts: mail::outbound::DELIVERY_MAX_ATTEMPTS,
            base: Duration::from_millis(200),
            max: Duration::from_secs(1),
            jitter: 0.0,
        },
    };
    let mut workers = worker::caliop_worker(context, "bench-worker");
    workers.concurrency = args.workers.max(1);
    workers.idle = Duration::from_millis(10);
    let (stop_workers, workers_stopped) = tokio::sync::oneshot::channel::<()>();
    let workers = tokio::spawn(workers.run(async move {
        let _ = workers_stopped.await;
    }));

    let body_line = "The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    let mut text = String::new();
    while text.len() + body_line.len() + 200 <= args.size {
        text.push_str(body_line);
    }
    let text = Arc::new(text);
    eprintln!(
        "bench: {} × ~{} B submitted by {} tasks, delivered by {} workers through a loopback sink…",
        args.messages, args.size, args.submitters, args.workers
    );
    let started = Instant::now();
    let mut submitters = tokio::task::JoinSet::new();
    let per_task = args.messages.div_ceil(args.submitters.max(1));
    for t in 0..args.submitters.max(1) {
        let count = per_task.min(args.messages.saturating_sub(t * per_task));
        let (outbound, sender, text, from) = (
            outbound.clone(),
            sender.clone(),
            text.clone(),
            sender.address.to_string(),
        );
        submitters.spawn(async move {
            let mut submitted = Vec::with_capacity(count);
            for i in 0..count {
                let message = format!("From: <{from}>\r\nTo: <bench{t}-{i}@remote.test>\r\nSubject: bench\r\n\r\n{text}");
                let at = Instant::now();
                let draft = mail::outbound::Draft {
                    account: sender.clone(),
                    recipients: vec![format!("bench{t}-{i}@remote.test")],
                    message: message.into_bytes(),
                    require_encryption: false,
                };
                match outbound.submit(draft).await {
                    Ok(done) => submitted.push((done.header_message_id, at, at.elapsed())),
                    Err(e) => eprintln!("bench: a submission was refused: {e}"),
                }
            }
            submitted
        });
    }
    let mut submitted = Vec::with_capacity(args.messages);
    while let Some(done) = submitters.join_next().await {
        submitted.extend(done?);
    }
    let submit_elapsed = started.elapsed();
    let expected = submitted.len();
    let mut arrived = arrived;
    let waited = tokio::time::timeout(
        Duration::from_secs(600),
        arrived.wait_for(|n| *n >= expected),
    )
    .await;
    let elapsed = started.elapsed();
    let _ = stop_workers.send(());
    let _ = workers.await;
    sink.abort();
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    let peer = if args.peer {
        match crate::peers::missing(&[crate::peers::POSTFIX]) {
            Some(why) => {
                eprintln!("bench: no Postfix line: {why}");
                None
            }
            None => Some(postfix_relay(&args, &text).await?),
        }
    } else {
        None
    };

    let arrivals = arrivals.lock().unwrap_or_else(|p| p.into_inner());
    let mut submit_latency: Vec<Duration> = submitted.iter().map(|(_, _, took)| *took).collect();
    let mut queue_latency: Vec<Duration> = submitted
        .iter()
        .filter_map(|(id, at, _)| {
            arrivals
                .at
                .get(id)
                .map(|arrived| arrived.duration_since(*at))
        })
        .collect();
    submit_latency.sort();
    queue_latency.sort();
    if waited.is_err() {
        eprintln!("bench: gave up waiting after 600 s");
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let backend = if url.starts_with("sqlite") {
        "SQLite (WAL, synchronous=FULL)"
    } else {
        "PostgreSQL"
    };
    println!("caliop bench outbound — {cores} cores, database {backend}");
    println!(
        "settings: {} messages of ~{} B, {} submitters, {} workers, one recipient each, RSA-2048 + Ed25519 DKIM, plain SMTP to a loopback relay",
        args.messages, args.size, args.submitters, args.workers
    );
    println!(
        "{:>9} {:>9} {:>7} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "submitted",
        "delivered",
        "signed",
        "submit msg/s",
        "e2e msg/s",
        "submit p50",
        "submit p99",
        "queue p50",
        "queue p99"
    );
    println!(
        "{:>9} {:>9} {:>7} {:>12.0} {:>10.0} {:>8.1}ms {:>8.1}ms {:>8.1}ms {:>8.1}ms",
        expected,
        queue_latency.len(),
        arrivals.signed,
        expected as f64 / submit_elapsed.as_secs_f64().max(f64::EPSILON),
        queue_latency.len() as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
        percentile(&submit_latency, 0.50),
        percentile(&submit_latency, 0.99),
        percentile(&queue_latency, 0.50),
        percentile(&queue_latency, 0.99),
    );
    println!(
        "queue latency: from the start of the submission to the sink's 250 (p90 {:.1} ms)",
        percentile(&queue_latency, 0.90)
    );
    if let Some((delivered, rate)) = peer {
        let ours = queue_latency.len() as f64 / elapsed.as_secs_f64().max(f64::EPSILON);
        println!(
            "Postfix relay, same messages over SMTP from {} clients to the same kind of sink (no DKIM signing): {delivered} delivered, {rate:.0} msg/s end to end; Caliop / Postfix = {:.2}×",
            args.submitters,
            ours / rate.max(f64::EPSILON)
        );
    }
    Ok(())
}

/// Postfix relaying `args.messages` messages to a sink: how many arrived
/// and the end-to-end rate (first submission to last arrival).
async fn postfix_relay(args: &OutboundBench, text: &str) -> anyhow::Result<(usize, f64)> {
    let arrivals = Arc::new(std::sync::Mutex::new(Arrivals::default()));
    let (all_arrived, mut arrived) = tokio::sync::watch::channel(0usize);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink_addr = listener.local_addr()?;
    let sink = tokio::spawn(sink(listener, arrivals.clone(), all_arrived));
    let postfix =
        crate::peers::Postfix::start(crate::peers::PostfixRole::Relay { relay: sink_addr }).await?;
    eprintln!(
        "bench: the same {} messages through Postfix…",
        args.messages
    );
    let started = Instant::now();
    let clients = args.submitters.max(1);
    let per_client = args.messages.div_ceil(clients);
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..clients {
        let count = per_client.min(args.messages.saturating_sub(t * per_client));
        let (addr, text) = (postfix.addr, text.to_owned());
        tasks.spawn(async move {
            client_with(addr, count, |i| {
                format!(
                    "MAIL FROM:<standard@bench.test>\r\nRCPT TO:<bench{t}-{i}@remote.test>\r\nDATA\r\n\
                     From: <standard@bench.test>\r\nTo: <bench{t}-{i}@remote.test>\r\nSubject: bench\r\n\
                     Message-ID: <{t}-{i}@peer.bench.test>\r\n\r\n{text}.\r\n"
                )
            })
            .await
        });
    }
    let mut accepted = 0;
    while let Some(done) = tasks.join_next().await {
        let (latencies, failed) = done??;
        anyhow::ensure!(failed == 0, "Postfix refused {failed} messages");
        accepted += latencies.len();
    }
    let waited = tokio::time::timeout(
        Duration::from_secs(600),
        arrived.wait_for(|n| *n >= accepted),
    )
    .await;
    let elapsed = started.elapsed();
    sink.abort();
    drop(postfix);
    if waited.is_err() {
        eprintln!("bench: gave up waiting for Postfix after 600 s");
    }
    let delivered = arrivals.lock().unwrap_or_else(|p| p.into_inner()).at.len();
    Ok((
        delivered,
        delivered as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
    ))
}

/// A minimal SMTP sink: answers every command, records each message's
/// arrival by Message-ID and whether it was DKIM-signed.
pub(crate) async fn sink(
    listener: tokio::net::TcpListener,
    arrivals: Arc<std::sync::Mutex<Arrivals>>,
    count: tokio::sync::watch::Sender<usize>,
) {
    let count = Arc::new(count);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (arrivals, count) = (arrivals.clone(), count.clone());
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream);
            let _ = reader.get_mut().write_all(b"220 sink ESMTP\r\n").await;
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                let reply: &[u8] = match verb.as_str() {
                    "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
                    "DATA" => {
                        let _ = reader.get_mut().write_all(b"354 go ahead\r\n").await;
                        let (mut message_id, mut signed) = (None, false);
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == ".\r\n" {
                                break;
                            }
                            let lower = line.to_ascii_lowercase();
                            signed |= lower.starts_with("dkim-signature:");
                            if message_id.is_none() && lower.starts_with("message-id:") {
                                message_id = Some(line[11..].trim().to_owned());
                            }
                        }
                        let mut a = arrivals.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(id) = message_id {
                            a.at.insert(id, Instant::now());
                        }
                        a.signed += usize::from(signed);
                        count.send_replace(a.at.len());
                        b"250 ok\r\n"
                    }
                    "QUIT" => {
                        let _ = reader.get_mut().write_all(b"221 bye\r\n").await;
                        return;
                    }
                    _ => b"250 ok\r\n",
                };
                let _ = reader.get_mut().write_all(reply).await;
            }
        });
    }
}

/// `caliop bench vault`: the dispersal codec alone, on one core.
#[derive(clap::Args, Debug)]
pub struct VaultBench {
    /// MiB of objects to encode and decode per row.
    #[arg(long, default_value_t = 256)]
    mib: usize,
    /// Object sizes in bytes, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "4096,65536,1048576,16777216"
    )]
    sizes: Vec<usize>,
    /// Skip the degraded decode (for profiling the rest).
    #[arg(long)]
    no_degraded: bool,
}

/// Runs `f` `times` times; bytes per second over `bytes` each.
fn throughput(times: usize, bytes: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up: first-touch page faults and lazy setup out of the timing
    let started = Instant::now();
    for _ in 0..times {
        f();
    }
    (times * bytes) as f64 / started.elapsed().as_secs_f64()
}

/// Encode and decode throughput per core for mail-sized to large objects,
/// next to a plain memory copy of the same bytes measured in the same run.
pub fn vault(args: VaultBench) -> anyhow::Result<()> {
    use std::hint::black_box;
    use vault::dispersal::{Params, check, decode_checked, encode_hashed};
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "caliop bench vault — one core (of {cores}), {} MiB per row, {}",
        args.mib,
        cpu_name()
    );
    println!(
        "encode: AES-256-GCM, Reed–Solomon, BLAKE3 of every shard (the manifest hash, which also gives the all-or-nothing key block)"
    );
    println!(
        "decode: BLAKE3 check of k shards against the manifest, unmask the key, AES-256-GCM open; degraded: one data shard missing (parity used)"
    );
    println!(
        "{:<8} {:<7} {:>12} {:>12} {:>14} {:>12} {:>9} {:>9}",
        "object",
        "scheme",
        "encode MB/s",
        "decode MB/s",
        "degraded MB/s",
        "memcpy MB/s",
        "enc/copy",
        "dec/copy"
    );
    let id = [7u8; 16];
    for size in args.sizes.iter().copied().filter(|&s| s > 0) {
        let object: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let times = ((args.mib << 20) / size).max(4);
        for (k, n) in [(2u8, 3u8), (3, 5)] {
            let params = Params::new(k, n)?;
            let encode_rate = throughput(times, size, || {
                black_box(encode_hashed(id, params, black_box(&object)).expect("encode"));
            });
            let shards = encode_hashed(id, params, &object)?;
            // As a read does: check each shard against the manifest (one
            // BLAKE3 pass, which also gives the body hash), then decode.
            let read = |chosen: &[(Vec<u8>, [u8; 32])]| {
                let checked: Vec<(&[u8], [u8; 32])> = chosen
                    .iter()
                    .map(|(s, h)| (s.as_slice(), check(s, h).expect("hash")))
                    .collect();
                black_box(decode_checked(id, black_box(&checked)).expect("decode"));
            };
            let decode_rate = throughput(times, size, || read(&shards[..usize::from(k)]));
            let degraded_rate = if args.no_degraded {
                f64::NAN
            } else {
                throughput(times, size, || read(&shards[1..=usize::from(k)]))
            };
            let mut copy = vec![0u8; size];
            let copy_rate = throughput(times, size, || {
                copy.copy_from_slice(black_box(&object));
                black_box(&copy);
            });
            let mb = |rate: f64| rate / 1e6;
            println!(
                "{:<8} {:<7} {:>12.0} {:>12.0} {:>14.0} {:>12.0} {:>9.3} {:>9.3}",
                human(size),
                params.to_string(),
                mb(encode_rate),
                mb(decode_rate),
                mb(degraded_rate),
                mb(copy_rate),
                encode_rate / copy_rate,
                decode_rate / copy_rate
            );
        }
    }
    Ok(())
}

fn human(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

/// `caliop bench imap`: a mailbox of many messages (put there directly,
/// encrypted at `standard` as the MX would), then timed over loopback:
/// SELECT of the whole mailbox, FETCH of a thousand messages' headers and
/// envelopes, and a flag search over everything.
#[derive(clap::Args, Debug)]
pub struct ImapBench {
    /// Messages in the mailbox that is selected.
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// Messages whose headers are fetched.
    #[arg(long, default_value_t = 1000)]
    headers: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Times each operation is run.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// A database URL instead of a throw-away SQLite file.
    #[arg(long)]
    database_url: Option<String>,
    /// Runs Dovecot (Debian's `dovecot-imapd`, as root) with the same
    /// messages in a Maildir, and times the same commands on it, each run
    /// right after Caliop's.
    #[arg(long)]
    peer: bool,
}

/// Message `n` of the IMAP benchmark's mailbox, `size` bytes or a little more.
fn imap_message(n: usize, to: &str, size: usize) -> String {
    let filler = "The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    let mut raw = format!(
        "From: Sender {n} <sender{n}@elsewhere.test>\r\nTo: <{to}>\r\nSubject: Message number {n}\r\n\
         Date: Thu, 26 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{n}@elsewhere.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n"
    );
    while raw.len() < size {
        raw.push_str(filler);
    }
    raw
}

pub async fn imap(args: ImapBench) -> anyhow::Result<()> {
    let fixture = fixture(args.database_url.as_deref(), &[Level::Standard]).await?;
    let account = fixture.account(Level::Standard).await?;
    let address = account.address.clone();
    let Fixture {
        dir,
        url,
        store,
        master,
        ..
    } = fixture;
    let inbound = Arc::new(mail::inbound::Inbound::new(
        store.clone(),
        master,
        None,
        "bench.caliop.test".into(),
    ));
    let inbox = store
        .mailbox_of_role(account.id, tenants::Folder::Inbox)
        .await?;

    let progress =
        indicatif::ProgressBar::new(args.messages as u64).with_message("filling the mailbox");
    progress.set_style(indicatif::ProgressStyle::with_template(
        "{msg} {bar:40} {pos}/{len} ({per_sec})",
    )?);
    let started = Instant::now();
    let mut n = 0;
    while n < args.messages {
        let mut batch = Vec::with_capacity(1000);
        for _ in 0..(args.messages - n).min(1000) {
            let raw = imap_message(n, address.as_str(), args.size);
            let id = tenants::MessageId::new();
            // Kept as the MX keeps it: encrypted, with its summary.
            let kept = inbound
                .store_readable(
                    Level::Standard,
                    account.tenant_id,
                    id,
                    raw.as_bytes().to_vec(),
                )
                .await
                .map_err(|r| anyhow::anyhow!(r.text))?;
            batch.push(tenants::NewMessage {
                id,
                tenant_id: account.tenant_id,
                account_id: account.id,
                level: Level::Standard,
                envelope_from: format!("sender{n}@elsewhere.test"),
                envelope_to: address.to_string(),
                subject: Some(format!("Message number {n}")),
                sender: Some(format!("sender{n}@elsewhere.test")),
                privacy: tenants::privacy::PrivacyIndex::compute(
                    &tenants::privacy::Facts::default(),
                ),
                authentication: serde_json::json!({}),
                arrived_encrypted: false,
                content: kept.content,
                dispersed: None,
                summary: kept.summary,
                rfc822_size: raw.len() as i64,
                flags: if n % 3 == 0 {
                    vec![tenants::Flag::Seen]
                } else {
                    Vec::new()
                },
                keywords: Vec::new(),
                received_at: None,
                verdict: None,
                mailbox: None,
            });
            n += 1;
        }
        store.append_messages(&inbox, &batch).await?;
        progress.set_position(n as u64);
    }
    progress.finish_and_clear();
    let fill = started.elapsed();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let imap = listener.local_addr()?;
    // The bench signs in with the account's password, as before app passwords.
    let guard = Arc::new(
        tenants::login::LoginGuard::new(Duration::from_secs(60), 1000, 1000)
            .allowing_account_passwords_on_mail(true),
    );
    let server =
        mail::imap::ImapServer::new(mail::imap::ImapConfig::default(), inbound, guard, None);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server.serve(listener, false, async move {
        let _ = stopped.await;
    }));
    let mut client = ImapClient::connect(imap).await?;
    client
        .run(&format!("LOGIN \"{address}\" \"bench passphrase\""))
        .await?;
    let dovecot = if args.peer {
        match crate::peers::missing(&[crate::peers::DOVECOT]) {
            Some(why) => {
                eprintln!("bench: no Dovecot column: {why}");
                None
            }
            None => {
                eprintln!(
                    "bench: writing the same {} messages into Dovecot's Maildir…",
                    args.messages
                );
                let dovecot = crate::peers::Dovecot::start(move |maildir| {
                    for n in 0..args.messages {
                        let raw = imap_message(n, address.as_str(), args.size);
                        let flags = if n % 3 == 0 { "S" } else { "" };
                        std::fs::write(
                            maildir.join("cur").join(format!(
                                "{}.M{n}P1.bench,S={}:2,{flags}",
                                1_700_000_000 + n,
                                raw.len()
                            )),
                            raw,
                        )?;
                    }
                    Ok(())
                })
                .await?;
                let mut peer = ImapClient::connect(dovecot.addr).await?;
                peer.run(&format!(
                    "LOGIN \"{}\" \"{}\"",
                    crate::peers::Dovecot::USER,
                    crate::peers::Dovecot::PASSWORD
                ))
                .await?;
                // Its index, which delivery through its LDA would have built.
                let indexing = Instant::now();
                peer.run("SELECT INBOX").await?;
                eprintln!(
                    "bench: Dovecot indexed the Maildir in {:.1} s (first SELECT, not timed)",
                    indexing.elapsed().as_secs_f64()
                );
                Some((dovecot, peer))
            }
        }
    } else {
        None
    };
    let mut dovecot = dovecot;

    let headers = args.headers.min(args.messages).max(1);
    let operations: Vec<(String, String)> = vec![
        (
            format!("SELECT INBOX ({} messages)", args.messages),
            "SELECT INBOX".into(),
        ),
        (
            format!("FETCH {headers} headers"),
            format!("FETCH 1:{headers} (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER])"),
        ),
        (
            format!("FETCH {headers} envelopes"),
            format!("FETCH 1:{headers} (UID ENVELOPE)"),
        ),
        (
            format!("UID SEARCH UNSEEN ({} messages)", args.messages),
            "UID SEARCH UNSEEN".into(),
        ),
    ];
    let mut rows = Vec::new();
    for (name, command) in &operations {
        let mut times = Vec::with_capacity(args.runs);
        let mut peer_times = Vec::with_capacity(args.runs);
        let mut bytes = 0;
        for _ in 0..args.runs.max(1) {
            let started = Instant::now();
            bytes = client.run(command).await?;
            times.push(started.elapsed());
            if let Some((_, peer)) = &mut dovecot {
                let started = Instant::now();
                peer.run(command).await?;
                peer_times.push(started.elapsed());
            }
        }
        times.sort();
        peer_times.sort();
        rows.push((name.clone(), times, bytes, peer_times));
    }
    let _ = stop.send(());
    let _ = server.await;
    drop(dovecot);

    let cpu = cpu_name();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let backend = if url.starts_with("sqlite") {
        "SQLite (WAL, synchronous=FULL)"
    } else {
        "PostgreSQL"
    };
    println!("caliop bench imap — {cores} cores, {cpu}");
    println!(
        "settings: {} messages of {} B at standard, database {backend}, plain IMAP on loopback, client in-process; \
         filled in {:.1} s ({:.0} messages/s)",
        args.messages,
        args.size,
        fill.as_secs_f64(),
        args.messages as f64 / fill.as_secs_f64().max(f64::EPSILON)
    );
    let peer = rows.iter().any(|r| !r.3.is_empty());
    print!(
        "{:<36} {:>6} {:>10} {:>10} {:>12}",
        "operation", "runs", "best ms", "median ms", "response"
    );
    if peer {
        print!(
            " {:>17} {:>19} {:>8}",
            "Dovecot best ms", "Dovecot median ms", "ratio"
        );
    }
    println!();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for (name, times, bytes, peer_times) in rows {
        let median = times[times.len() / 2];
        print!(
            "{:<36} {:>6} {:>10.1} {:>10.1} {:>12}",
            name,
            times.len(),
            ms(times[0]),
            ms(median),
            human(bytes)
        );
        if let (Some(best), Some(peer_median)) =
            (peer_times.first(), peer_times.get(peer_times.len() / 2))
        {
            // Time taken relative to Dovecot's: below 1 is faster.
            print!(
                " {:>17.1} {:>19.1} {:>7.2}×",
                ms(*best),
                ms(*peer_median),
                ms(median) / ms(*peer_median).max(f64::EPSILON)
            );
        }
        println!();
    }
    if peer {
        println!(
            "Dovecot: Debian's dovecot-imapd 2.3, its own instance on loopback, the same messages and flags in a Maildir, indexed by one SELECT before timing; ratio = Caliop's median time / Dovecot's (below 1 is faster)"
        );
    }
    store.close().await;
    if args.database_url.is_none() {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

/// Just enough of an IMAP client to time commands: sends one, reads to its
/// tagged answer (literals included) and says how many bytes came back.
pub(crate) struct ImapClient {
    pub(crate) reader: BufReader<tokio::net::TcpStream>,
    next: u32,
}

impl ImapClient {
    pub(crate) async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<ImapClient> {
        let mut client = ImapClient {
            reader: BufReader::new(tokio::net::TcpStream::connect(addr).await?),
            next: 0,
        };
        let mut greeting = Vec::new();
        client.reader.read_until(b'\n', &mut greeting).await?;
        Ok(client)
    }

    pub(crate) async fn run(&mut self, command: &str) -> anyhow::Result<usize> {
        use tokio::io::AsyncReadExt;
        self.next += 1;
        let tag = format!("b{}", self.next);
        self.reader
            .get_mut()
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .await?;
        let mut bytes = 0;
        loop {
            let mut line = Vec::new();
            if self.reader.read_until(b'\n', &mut line).await? == 0 {
                anyhow::bail!("the server closed the connection");
            }
            bytes += line.len();
            if line.starts_with(tag.as_bytes()) {
                anyhow::ensure!(
                    line[tag.len()..].starts_with(b" OK"),
                    "{command}: {}",
                    String::from_utf8_lossy(&line)
                );
                return Ok(bytes);
            }
            if let Some(n) = literal_length(&line) {
                let mut data = vec![0u8; n];
                self.reader.read_exact(&mut data).await?;
                bytes += n;
            }
        }
    }
}

fn literal_length(line: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(line).ok()?.trim_end();
    let inner = text.strip_suffix('}')?;
    inner[inner.rfind('{')? + 1..].parse().ok()
}

/// Export of a tenant of `size_mb` megabytes of mail to an encrypted
/// archive, and its import into an empty instance, each by a `caliop`
/// process of its own whose peak memory (max RSS) is measured.
#[derive(clap::Args, Debug)]
pub struct TransferBench {
    /// Megabytes of stored mail in the tenant.
    #[arg(long, default_value_t = 1024)]
    size_mb: u64,
    /// Bytes per message.
    #[arg(long, default_value_t = 100_000)]
    message_size: usize,
    /// A database URL for the importing instance instead of a throw-away SQLite file.
    #[arg(long)]
    import_database_url: Option<String>,
}

/// Runs `caliop ARGS` with `env`; its wall time and peak resident memory.
fn measured(args: &[&str], env: &[(&str, String)]) -> anyhow::Result<(Duration, u64, String)> {
    let started = Instant::now();
    let child = std::process::Command::new(std::env::current_exe()?)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("CALIOP_LOG_FILTER", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.expect("piped");
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut printed)?;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for the child we spawned.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    anyhow::ensure!(waited == pid, "waiting for caliop {args:?} failed");
    anyhow::ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "caliop {args:?} failed"
    );
    Ok((started.elapsed(), usage.ru_maxrss as u64 * 1024, printed))
}

pub async fn transfer(args: TransferBench) -> anyhow::Result<()> {
    let fixture = fixture(None, &[Level::Standard, Level::Sealed]).await?;
    let mut accounts = Vec::new();
    for level in [Level::Standard, Level::Sealed] {
        let account = fixture.account(level).await?;
        let inbox = fixture
            .store
            .mailbox_of_role(account.id, tenants::Folder::Inbox)
            .await?;
        accounts.push((level, account, inbox));
    }
    let Fixture {
        dir,
        url,
        store,
        master,
        ..
    } = fixture;
    let inbound =
        mail::inbound::Inbound::new(store.clone(), master, None, "bench.caliop.test".into());
    let tenant = accounts[0].1.tenant_id;
    let total = (args.size_mb << 20) / args.message_size as u64;
    let progress = indicatif::ProgressBar::new(total).with_message("filling the tenant");
    progress.set_style(indicatif::ProgressStyle::with_template(
        "{msg} {bar:40} {pos}/{len} ({per_sec})",
    )?);
    let filler = "The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    let started = Instant::now();
    let mut n = 0u64;
    while n < total {
        let (level, account, inbox) = &accounts[(n / 64 % 2) as usize];
        let mut batch = Vec::with_capacity(64);
        for _ in 0..(total - n).min(64) {
            let mut raw = format!(
                "From: <sender{n}@elsewhere.test>\r\nTo: <{}>\r\nSubject: Message {n}\r\n\r\n",
                account.address
            );
            while raw.len() < args.message_size {
                raw.push_str(filler);
            }
            raw.truncate(args.message_size);
            let id = tenants::MessageId::new();
            // Sealed mail stands in as opaque bytes of the same size: export never opens it.
            let content = match level {
                Level::Standard => inbound
                    .encrypt_standard(account.tenant_id, id, raw.as_bytes())
                    .await
                    .map_err(|r| anyhow::anyhow!(r.text))?,
                _ => raw.into_bytes(),
            };
            batch.push(tenants::NewMessage {
                id,
                tenant_id: account.tenant_id,
                account_id: account.id,
                level: *level,
                envelope_from: format!("sender{n}@elsewhere.test"),
                envelope_to: account.address.to_string(),
                subject: None,
                sender: None,
                privacy: tenants::privacy::PrivacyIndex::compute(
                    &tenants::privacy::Facts::default(),
                ),
                authentication: serde_json::json!({}),
                arrived_encrypted: false,
                rfc822_size: content.len() as i64,
                content,
                dispersed: None,
                summary: None,
                flags: Vec::new(),
                keywords: Vec::new(),
                received_at: None,
                verdict: None,
                mailbox: None,
            });
            n += 1;
        }
        store.append_messages(inbox, &batch).await?;
        progress.set_position(n);
    }
    progress.finish_and_clear();
    let fill = started.elapsed();
    store.close().await;

    let passphrase = dir.join("passphrase");
    std::fs::write(&passphrase, "bench archive passphrase\n")?;
    let archive = dir.join("tenant.caliop");
    let from_env = [
        ("CALIOP_DATA_DIR", dir.display().to_string()),
        ("CALIOP_DATABASE_URL", url.clone()),
    ];
    eprintln!("exporting {total} messages ({} MiB)…", args.size_mb);
    let tenant_id = tenant.0.to_string();
    let (export_time, export_rss, _) = measured(
        &[
            "tenant",
            "export",
            &tenant_id,
            archive.to_str().unwrap_or_default(),
            "--passphrase-file",
            passphrase.to_str().unwrap_or_default(),
        ],
        &from_env,
    )?;
    let archive_bytes = std::fs::metadata(&archive)?.len();
    let to_dir = dir.join("importing");
    std::fs::create_dir_all(&to_dir)?;
    // A new instance, as `serve` would have started it: its own master key.
    vault::at_rest::MasterKey::load_or_create(&to_dir)?;
    let to_url = args
        .import_database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", to_dir.join("caliop.db").display()));
    let to_env = [
        ("CALIOP_DATA_DIR", to_dir.display().to_string()),
        ("CALIOP_DATABASE_URL", to_url),
    ];
    eprintln!("importing…");
    let (import_time, import_rss, _) = measured(
        &[
            "tenant",
            "import",
            archive.to_str().unwrap_or_default(),
            "--passphrase-file",
            passphrase.to_str().unwrap_or_default(),
        ],
        &to_env,
    )?;

    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    let stored = total * args.message_size as u64;
    println!(
        "tenant transfer: {total} messages of {} bytes ({:.0} MiB of mail), filled in {:.1} s",
        args.message_size,
        mib(stored),
        fill.as_secs_f64()
    );
    println!(
        "{:<8} {:>10} {:>12} {:>14} {:>16}",
        "step", "seconds", "MiB/s", "archive MiB", "peak RSS MiB"
    );
    for (step, time, rss) in [
        ("export", export_time, export_rss),
        ("import", import_time, import_rss),
    ] {
        println!(
            "{:<8} {:>10.1} {:>12.1} {:>14.1} {:>16.1}",
            step,
            time.as_secs_f64(),
            mib(stored) / time.as_secs_f64(),
            mib(archive_bytes),
            mib(rss)
        );
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// `caliop bench api`: authenticated reads of the API against bare axum
/// returning the same JSON, both on loopback in this process, loaded by
/// `wrk` (Debian's package) in the same run, alternating; then the p99 at
/// half the load Caliop sustained, paced from threads of this process
/// outside its runtime.
#[derive(clap::Args, Debug)]
pub struct ApiBench {
    /// Connections wrk keeps open.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Runs of each side, alternating.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// A database URL instead of a throw-away SQLite file.
    #[arg(long)]
    database_url: Option<String>,
    /// SMTP clients sending `sealed` mail to the MX of the same process
    /// during a second paced run (0: no such run).
    #[arg(long, default_value_t = 16)]
    ingest_clients: usize,
    /// API requests per second during that run (the CPU is the MX's too).
    #[arg(long, default_value_t = 500.0)]
    ingest_rate: f64,
}

/// What one `wrk` run measured.
struct WrkRun {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

/// Runs `wrk` against `url` and reads its summary (`--latency`).
async fn wrk(url: &str, token: &str, connections: usize, seconds: u64) -> anyhow::Result<WrkRun> {
    let out = tokio::process::Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-H",
            &format!("Authorization: Bearer {token}"),
            url,
        ])
        .output()
        .await
        .context("running wrk (Debian: apt-get install wrk)")?;
    anyhow::ensure!(
        out.status.success(),
        "wrk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_owned()))
    };
    let millis = |v: String| -> f64 {
        let v = v.trim();
        if let Some(us) = v.strip_suffix("us") {
            us.parse::<f64>().unwrap_or(f64::NAN) / 1000.0
        } else if let Some(ms) = v.strip_suffix("ms") {
            ms.parse().unwrap_or(f64::NAN)
        } else if let Some(s) = v.strip_suffix('s') {
            s.parse::<f64>().unwrap_or(f64::NAN) * 1000.0
        } else {
            f64::NAN
        }
    };
    let non_2xx = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(WrkRun {
        rps: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .context("wrk printed no Requests/sec")?,
        p50_ms: field("50%").map(millis).unwrap_or(f64::NAN),
        p99_ms: field("99%").map(millis).unwrap_or(f64::NAN),
        errors: non_2xx,
    })
}

pub async fn api(args: ApiBench) -> anyhow::Result<()> {
    let fixture = fixture(
        args.database_url.as_deref(),
        &[Level::Standard, Level::Sealed],
    )
    .await?;
    let member = fixture.account(Level::Standard).await?;
    let Fixture {
        dir,
        url,
        store,
        master,
        domain_name,
    } = fixture;
    let address = EmailAddress::parse(&format!("admin@{domain_name}"))?;
    let key =
        vault::openpgp::AccountKey::generate(&format!("Admin <{address}>"), "bench passphrase")?;
    let admin = store
        .create_account(
            "bench",
            NewAccount {
                tenant_id: member.tenant_id,
                domain_id: member.domain_id,
                address,
                display_name: "Admin".into(),
                role: AccountRole::Admin,
                level: Level::Standard,
                password_hash: tenants::password::hash("bench passphrase")?,
                fingerprint: key.fingerprint,
                public_key: key.public_armored,
                secret_key: key.secret_armored,
            },
        )
        .await?;
    let inbound = Arc::new(mail::inbound::Inbound::new(
        store.clone(),
        master,
        None,
        "bench.caliop.test".into(),
    ));
    let outbound = Arc::new(mail::outbound::Outbound::new(
        store.clone(),
        inbound.clone(),
        None,
        mail::outbound::OutboundConfig::default(),
    ));
    let instance_key = vault::instance::InstanceKey::load_or_create(&dir)?;
    let state = api::AppState::new(
        store.clone(),
        &instance_key,
        inbound.clone(),
        outbound,
        mail::dns::Dns::new(
            std::net::SocketAddr::from(([127, 0, 0, 1], 53)),
            Duration::from_secs(1),
        )?,
        Arc::new(tenants::login::LoginGuard::new(
            Duration::from_secs(60),
            1000,
            1000,
        )),
        api::ApiConfig::default(),
    )
    .await?;
    let token = api::Tokens::new(&instance_key, Duration::from_secs(3600))
        .issue(
            &tenants::Actor {
                subject: tenants::Subject::Account(admin.id),
                tenant_id: admin.tenant_id,
                role: tenants::Role::TenantAdmin,
                scopes: vec![tenants::Scope::Read],
            },
            admin.credentials_epoch,
            Duration::from_secs(3600),
        )
        .map_err(|p| anyhow::anyhow!("issuing the bench token: {p:?}"))?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let caliop = format!(
        "http://{}/v1/tenants/{}",
        listener.local_addr()?,
        admin.tenant_id.0
    );
    let server = tokio::spawn(api::serve(listener, state, until_stopped(stopped.clone())));
    let body = reqwest::Client::new()
        .get(&caliop)
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let bare_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bare = format!(
        "http://{}/v1/tenants/{}",
        bare_listener.local_addr()?,
        admin.tenant_id.0
    );
    let bare_body = body.clone();
    let bare_app = axum::Router::new().route(
        "/v1/tenants/{id}",
        axum::routing::get(move || {
            let body = bare_body.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }
        }),
    );
    let bare_server = tokio::spawn(
        axum::serve(bare_listener, bare_app)
            .with_graceful_shutdown(until_stopped(stopped.clone()))
            .into_future(),
    );

    eprintln!(
        "bench: GET /v1/tenants/{{id}} as a tenant administrator ({} B of JSON), wrk -t1 -c{} -d{}s, {} rounds…",
        body.len(),
        args.connections,
        args.seconds,
        args.rounds
    );
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds.max(1) {
        theirs.push(wrk(&bare, &token, args.connections, args.seconds).await?);
        ours.push(wrk(&caliop, &token, args.connections, args.seconds).await?);
    }
    // The p99 at half of what Caliop sustained, paced from here.
    let best = ours.iter().map(|r| r.rps).fold(0.0, f64::max);
    let rate = best / 2.0;
    let half = paced(&caliop, &token, rate, Duration::from_secs(args.seconds)).await?;
    // A modest pace while the MX of this process seals mail at full speed:
    // what CPU work on the executor would do to everyone else's I/O.
    let during_ingest = if args.ingest_clients > 0 {
        let raw = format!(
            "From: <bench@sender.test>\r\nTo: <sealed@{domain_name}>\r\nSubject: ingest\r\n\r\n{}",
            "The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
                .repeat(140)
        );
        let to = format!("sealed@{domain_name}");
        Some(
            while_ingesting(inbound.clone(), &to, &raw, args.ingest_clients, async {
                paced(
                    &caliop,
                    &token,
                    args.ingest_rate,
                    Duration::from_secs(args.seconds),
                )
                .await
            })
            .await?,
        )
    } else {
        None
    };
    let _ = stop.send(true);
    let _ = server.await;
    let _ = bare_server.await;
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);

    let backend = if url.starts_with("sqlite") {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    println!(
        "caliop bench api — {} cores, {}, database {backend}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu_name()
    );
    println!(
        "GET /v1/tenants/{{id}} with a tenant administrator's token (verify, standing, path scope, handler) against bare axum returning the same {} B; wrk -t1 -c{} -d{}s on the same cores",
        body.len(),
        args.connections,
        args.seconds
    );
    println!(
        "{:<8} {:>14} {:>9} {:>9} {:>14} {:>9} {:>9} {:>8}",
        "round", "Caliop req/s", "p50 ms", "p99 ms", "axum req/s", "p50 ms", "p99 ms", "ratio"
    );
    for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
        anyhow::ensure!(
            o.errors == 0 && t.errors == 0,
            "non-2xx answers under load: Caliop {}, axum {}",
            o.errors,
            t.errors
        );
        println!(
            "{:<8} {:>14.0} {:>9.2} {:>9.2} {:>14.0} {:>9.2} {:>9.2} {:>7.1}%",
            i + 1,
            o.rps,
            o.p50_ms,
            o.p99_ms,
            t.rps,
            t.p50_ms,
            t.p99_ms,
            100.0 * o.rps / t.rps.max(f64::EPSILON)
        );
    }
    println!(
        "at half of Caliop's best ({rate:.0} req/s, paced over 8 connections, each a thread of its own with a blocking socket, latency from when each request was due): {} requests, p50 {:.2} ms, p99 {:.2} ms",
        half.len(),
        percentile(&half, 0.50),
        percentile(&half, 0.99)
    );
    if let Some((during, ingested)) = during_ingest {
        println!(
            "{:.0} req/s while {} SMTP clients send sealed 10 KB mail to this process's MX ({ingested:.0} msg/s sealed and stored): {} requests, p50 {:.2} ms, p99 {:.2} ms",
            args.ingest_rate,
            args.ingest_clients,
            during.len(),
            percentile(&during, 0.50),
            percentile(&during, 0.99)
        );
    }
    Ok(())
}

/// Runs `measured` while `clients` connections send `raw` to `to` through
/// an MX on `inbound`, in this process; returns its result and the
/// messages per second the MX stored meanwhile.
async fn while_ingesting<T>(
    inbound: Arc<mail::inbound::Inbound>,
    to: &str,
    raw: &str,
    clients: usize,
    measured: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, f64)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let smtp = listener.local_addr()?;
    let config = mail::smtp::SmtpConfig {
        hostname: "bench.caliop.test".into(),
        max_connections: clients + 1,
        max_connections_per_ip: clients + 1,
        ..mail::smtp::SmtpConfig::default()
    };
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mail::smtp::SmtpServer::new(config, inbound, None).serve(
        listener,
        async move {
            let _ = server_stopped.await;
        },
    ));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (stop, to, raw) = (stop.clone(), to.to_owned(), raw.to_owned());
        senders.spawn(async move {
            let (mut stored, mut refused, mut broken) = (0, 0, None);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match client(smtp, &to, &raw, 10).await {
                    Ok((sent, failed)) => {
                        stored += sent.len();
                        refused += failed;
                    }
                    Err(e) => {
                        broken.get_or_insert(e);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            (stored, refused, broken)
        });
    }
    // The senders reach full speed before the measure starts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let result = measured.await;
    let elapsed = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut stored, mut refused) = (0, 0);
    while let Some(done) = senders.join_next().await {
        let (sent, failed, broken) = done?;
        stored += sent;
        refused += failed;
        if let Some(e) = broken {
            eprintln!("bench: an ingest session failed: {e:#}");
        }
    }
    anyhow::ensure!(
        refused == 0,
        "the MX refused {refused} messages during the ingest run"
    );
    let _ = stop_server.send(());
    let _ = server.await;
    // Counted over the senders' whole run, a second longer than the measure.
    let rate = stored as f64 / (elapsed.as_secs_f64() + 1.0);
    Ok((result?, rate))
}

/// Requests at `rate` per second for `time` over 8 keep-alive
/// connections, each latency measured from when it was due (so a stall
/// counts for every request it delays). Each connection is a thread of its
/// own with a blocking socket, speaking bare HTTP/1.1, so that the pacer
/// neither queues behind the server's tasks on the server's executor nor
/// wakes late by a timer wheel's millisecond, nor spends what a full client
/// does per request: what it measures is the server's time.
async fn paced(url: &str, token: &str, rate: f64, time: Duration) -> anyhow::Result<Vec<Duration>> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("the pacer speaks plain HTTP: {url}"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: std::net::SocketAddr = host.parse()?;
    let request = Arc::new(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n")
            .into_bytes(),
    );
    let connections = 8;
    let every = Duration::from_secs_f64(connections as f64 / rate.max(1.0));
    let started = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let request = request.clone();
            let first = started + every.mul_f64(c as f64 / connections as f64);
            std::thread::spawn(move || pace(addr, &request, first, every, started + time))
        })
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut all = Vec::new();
        for thread in threads {
            let latencies = thread
                .join()
                .map_err(|_| anyhow::anyhow!("a pacing thread panicked"))??;
            all.extend(latencies);
        }
        all.sort();
        Ok(all)
    })
    .await?
}

/// Reads what the server sent next into `free`, the rest of the pacer's buffer.
fn read_more(stream: &mut std::net::TcpStream, free: &mut [u8]) -> anyhow::Result<usize> {
    use std::io::Read;
    anyhow::ensure!(
        !free.is_empty(),
        "a response larger than the pacer's buffer"
    );
    let n = stream.read(free)?;
    anyhow::ensure!(n > 0, "the server closed the connection");
    Ok(n)
}

/// One connection of [`paced`]: a request at `first`, then every `every`, until `end`.
fn pace(
    addr: std::net::SocketAddr,
    request: &[u8],
    first: Instant,
    every: Duration,
    end: Instant,
) -> anyhow::Result<Vec<Duration>> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut latencies = Vec::new();
    let mut due = first;
    while due < end {
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        stream.write_all(request)?;
        // The head, then as much body as Content-Length says.
        let mut filled = 0;
        let (head_end, length) = loop {
            filled += read_more(&mut stream, &mut buffer[filled..])?;
            let Some(at) = buffer[..filled].windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&buffer[..at]).to_ascii_lowercase();
            anyhow::ensure!(
                head.starts_with("http/1.1 200"),
                "{}",
                head.lines().next().unwrap_or_default()
            );
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| anyhow::anyhow!("no Content-Length in {head}"))?;
            break (at + 4, length);
        };
        while filled < head_end + length {
            filled += read_more(&mut stream, &mut buffer[filled..])?;
        }
        latencies.push(due.elapsed());
        due += every;
    }
    Ok(latencies)
}
