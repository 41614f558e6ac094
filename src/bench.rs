//! `caliop bench smtp`: drives the MX over loopback with concurrent clients
//! sending messages of a given size to hosted accounts at each level, and
//! prints throughput and latency. It runs the real server on a throw-away
//! SQLite data directory (or the database given), in this process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tenants::{AccountRole, DomainName, EmailAddress, Level, Limits, NewAccount, NewDomain, NewTenant, Policy, Store, TenantKind};
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
}

struct Outcome {
    level: Level,
    sent: usize,
    failed: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

pub async fn run(args: SmtpBench) -> anyhow::Result<()> {
    let levels: Vec<Level> = args.levels.split(',').map(|l| l.trim().parse()).collect::<Result<_, _>>()?;
    let dir = std::env::temp_dir().join(format!("caliop-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    let url = args.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", dir.join("caliop.db").display()));
    let store = Store::connect(&url, 16).await.context("connecting to the benchmark database")?;
    store.migrate().await?;
    let tenant = store
        .create_tenant(
            "bench",
            NewTenant {
                name: format!("bench {}", uuid::Uuid::now_v7().simple()),
                kind: TenantKind::Enterprise,
                parent_id: None,
                limits: Limits { max_accounts: 100, max_domains: 10, storage_quota_bytes: 1 << 50 },
                policy: Policy::default(),
            },
        )
        .await?;
    let domain_name = DomainName::parse(&format!("bench-{}.test", uuid::Uuid::now_v7().simple()))?;
    let master = vault::at_rest::MasterKey::ephemeral()?;
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
    for level in &levels {
        let address = EmailAddress::parse(&format!("{level}@{domain_name}"))?;
        let key = vault::openpgp::AccountKey::generate(&format!("Bench <{address}>"), "bench passphrase")?;
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

    let inbound = Arc::new(mail::inbound::Inbound::new(store.clone(), master, None, "bench.caliop.test".into()));
    let config = mail::smtp::SmtpConfig {
        hostname: "bench.caliop.test".into(),
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

    let body_line = "The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    let mut outcomes = Vec::new();
    for level in &levels {
        let to = format!("{level}@{domain_name}");
        let mut raw = format!(
            "From: <bench@sender.test>\r\nTo: <{to}>\r\nSubject: benchmark\r\nDate: Thu, 26 Nov 2026 12:00:00 +0000\r\n\r\n"
        );
        while raw.len() + body_line.len() <= args.size {
            raw.push_str(body_line);
        }
        let raw = Arc::new(raw);
        eprintln!("bench: {} × {} B to a {level} account with {} clients…", args.messages, raw.len(), args.clients);
        let started = Instant::now();
        let mut clients = tokio::task::JoinSet::new();
        let per_client = args.messages.div_ceil(args.clients);
        for c in 0..args.clients {
            let count = per_client.min(args.messages.saturating_sub(c * per_client));
            let (raw, to) = (raw.clone(), to.clone());
            clients.spawn(async move { client(smtp, &to, &raw, count).await });
        }
        let mut latencies = Vec::with_capacity(args.messages);
        let mut failed = 0;
        while let Some(done) = clients.join_next().await {
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
        let elapsed = started.elapsed();
        eprintln!("bench: {level} done in {:.2} s", elapsed.as_secs_f64());
        outcomes.push(Outcome { level: *level, sent: latencies.len(), failed, elapsed, latencies });
    }
    let _ = stop.send(());
    let _ = server.await;
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);

    print_table(&args, &url, &outcomes);
    Ok(())
}

/// One client on one connection, pipelining each transaction.
async fn client(smtp: std::net::SocketAddr, to: &str, raw: &str, count: usize) -> anyhow::Result<(Vec<Duration>, usize)> {
    let stream = tokio::net::TcpStream::connect(smtp).await?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let reply = async |reader: &mut BufReader<tokio::net::TcpStream>, line: &mut String| -> anyhow::Result<u16> {
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
    let transaction = format!("MAIL FROM:<bench@sender.test>\r\nRCPT TO:<{to}>\r\nDATA\r\n{raw}.\r\n");
    let mut latencies = Vec::with_capacity(count);
    let mut failed = 0;
    for _ in 0..count {
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

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn print_table(args: &SmtpBench, url: &str, outcomes: &[Outcome]) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let backend = if url.starts_with("sqlite") { "SQLite (WAL, synchronous=FULL)" } else { "PostgreSQL" };
    println!("caliop bench smtp — {cores} cores, {cpu}");
    println!(
        "settings: {} clients, {} messages/level, {} B messages, database {backend}, SPF/DKIM/DMARC off (no DNS), plain SMTP, client in-process",
        args.clients, args.messages, args.size
    );
    println!("{:<12} {:>8} {:>7} {:>10} {:>8} {:>9} {:>9} {:>9}", "level", "sent", "failed", "msg/s", "MB/s", "p50 ms", "p95 ms", "p99 ms");
    for o in outcomes {
        let mut sorted = o.latencies.clone();
        sorted.sort();
        let secs = o.elapsed.as_secs_f64().max(f64::EPSILON);
        println!(
            "{:<12} {:>8} {:>7} {:>10.0} {:>8.2} {:>9.2} {:>9.2} {:>9.2}",
            o.level.as_str(),
            o.sent,
            o.failed,
            o.sent as f64 / secs,
            (o.sent * args.size) as f64 / secs / 1e6,
            percentile(&sorted, 0.50),
            percentile(&sorted, 0.95),
            percentile(&sorted, 0.99),
        );
    }
}
