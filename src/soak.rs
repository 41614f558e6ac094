//! `caliop bench soak`: a bounded load-and-soak run on loopback. It starts
//! `caliop serve` as a process of its own on a throw-away data directory
//! (or the database given) and, for `--minutes`, loads every door at once
//! at fixed rates: mail in on the MX (to a `standard` and a `sealed`
//! account, reconnecting every few messages), mail out on the submission
//! port (AUTH, delivered by the workers to a sink on loopback), IMAP
//! sessions waiting in IDLE and fetching what arrives, and API reads.
//! Every `--report-seconds` it prints throughput and p99 per door and the
//! server's resident memory. At the end it waits for the outbound queue to
//! drain and counts: every message the MX acknowledged must be stored, and
//! every submission acknowledged must have reached the sink. It exits
//! non-zero when one is missing.

use std::collections::HashSet;
use std::io::{BufRead, BufReader as StdBufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tenants::{Folder, Level};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::bench::{Arrivals, Fixture, ImapClient, fixture, percentile, sink};

#[derive(clap::Args, Debug)]
pub struct SoakBench {
    /// How long the load runs.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Seconds between two report lines.
    #[arg(long, default_value_t = 30)]
    report_seconds: u64,
    /// Messages per second offered to the MX (half to each account).
    #[arg(long, default_value_t = 40.0)]
    smtp_rate: f64,
    /// Messages per second submitted for delivery.
    #[arg(long, default_value_t = 10.0)]
    submit_rate: f64,
    /// API reads per second.
    #[arg(long, default_value_t = 100.0)]
    api_rate: f64,
    /// IMAP sessions, each in IDLE, fetching what arrives.
    #[arg(long, default_value_t = 4)]
    imap_sessions: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 10 * 1024)]
    size: usize,
    /// A database URL instead of a throw-away SQLite file.
    #[arg(long)]
    database_url: Option<String>,
}

/// What one door did since the last report, and in all.
#[derive(Default)]
struct Door {
    window: std::sync::Mutex<Vec<Duration>>,
    done: AtomicUsize,
    errors: AtomicUsize,
}

impl Door {
    fn record(&self, took: Duration) {
        self.done.fetch_add(1, Ordering::Relaxed);
        self.window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(took);
    }

    fn error(&self, door: &str, e: &anyhow::Error) {
        if self.errors.fetch_add(1, Ordering::Relaxed) < 5 {
            eprintln!("soak: {door}: {e:#}");
        }
    }

    /// Rate and p99 over the window, which starts afresh.
    fn take(&self, seconds: f64) -> (f64, f64) {
        let mut window =
            std::mem::take(&mut *self.window.lock().unwrap_or_else(|p| p.into_inner()));
        window.sort();
        (
            window.len() as f64 / seconds.max(f64::EPSILON),
            percentile(&window, 0.99),
        )
    }
}

/// The acknowledged mail, by door, for the count at the end.
#[derive(Default)]
struct Acknowledged {
    inbound: std::sync::Mutex<std::collections::HashMap<Level, usize>>,
    submitted: std::sync::Mutex<HashSet<String>>,
}

/// A `caliop` process started on a data directory, killed when dropped.
pub(crate) struct Process {
    child: std::process::Child,
    /// Where each door listens, as its banner line says (`api`, `smtp`,
    /// `submission`, `imap`, …).
    doors: std::collections::HashMap<String, String>,
}

impl Process {
    pub(crate) fn door(&self, name: &str) -> anyhow::Result<std::net::SocketAddr> {
        self.doors
            .get(name)
            .with_context(|| format!("the process has no {name} listener"))?
            .parse()
            .with_context(|| format!("the {name} address"))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of `pid` in MiB, from `/proc`.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// `caliop serve` on the fixture's data directory, every listener on a port
/// of its own, mail for other domains relayed to `relay`.
fn start_server(
    dir: &std::path::Path,
    url: &str,
    relay: std::net::SocketAddr,
) -> anyhow::Result<Process> {
    let config = dir.join("soak.toml");
    let unlimited = "account_messages_per_hour = 1000000000\naccount_recipients_per_day = 1000000000\n\
                     tenant_messages_per_hour = 1000000000\ntenant_recipients_per_day = 1000000000\n";
    std::fs::write(
        &config,
        format!("[send_limits.paid]\n{unlimited}\n[send_limits.public]\n{unlimited}"),
    )?;
    let server = start_process(
        dir,
        url,
        "serve",
        &[
            ("CALIOP_CONFIG", config.display().to_string()),
            ("CALIOP_DELIVERY_RELAY", relay.to_string()),
        ],
    )?;
    for door in ["api", "smtp", "submission", "imap"] {
        anyhow::ensure!(
            server.doors.contains_key(door),
            "serve opened no {door} door"
        );
    }
    Ok(server)
}

/// `caliop <command>` (`serve`, `smtp`, `imap`, …) on `dir` and the database
/// at `url`, every listener on a port of its own, no lookup leaving
/// loopback; `env` adds to (or overrides) its environment. Returns once
/// it has said where it listens.
pub(crate) fn start_process(
    dir: &std::path::Path,
    url: &str,
    command: &str,
    env: &[(&str, String)],
) -> anyhow::Result<Process> {
    let exe = std::env::current_exe()?;
    let defaults: Vec<(&str, String)> = vec![
        ("CALIOP_DATA_DIR", dir.display().to_string()),
        ("CALIOP_DATABASE_URL", url.to_owned()),
        ("CALIOP_API_LISTEN", "127.0.0.1:0".into()),
        ("CALIOP_API_METRICS_LISTEN", "127.0.0.1:0".into()),
        ("CALIOP_SMTP_LISTEN", "127.0.0.1:0".into()),
        ("CALIOP_SUBMISSION_LISTEN", "127.0.0.1:0".into()),
        ("CALIOP_IMAP_LISTEN", "127.0.0.1:0".into()),
        ("CALIOP_MANAGESIEVE_LISTEN", "127.0.0.1:0".into()),
        // Nothing answers there: no lookup leaves loopback.
        ("CALIOP_DNS_RESOLVER", "127.0.0.1:9".into()),
        ("CALIOP_DNS_TIMEOUT_MS", "200".into()),
        ("CALIOP_MAIL_HOSTNAME", "soak.caliop.test".into()),
        ("CALIOP_API_MAIL_ACCOUNT_PASSWORDS", "true".into()),
        ("CALIOP_SMTP_MAX_CONNECTIONS_PER_IP", "1000".into()),
        ("CALIOP_IMAP_MAX_CONNECTIONS_PER_IP", "1000".into()),
    ];
    let log = std::fs::File::create(
        dir.join(format!("{command}-{}.log", uuid::Uuid::now_v7().simple())),
    )?;
    let mut child = Command::new(exe)
        .arg(command)
        .envs(defaults)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("starting caliop {command}"))?;
    let stdout = child.stdout.take().context("the process's stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in StdBufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The banner names each door, `  <door> listening on <address> (…)`,
    // and ends with how to get an operator token.
    let mut doors = std::collections::HashMap::new();
    loop {
        let line = rx.recv_timeout(Duration::from_secs(60)).with_context(|| {
            format!(
                "caliop {command} did not say where it listens (see its log in {})",
                dir.display()
            )
        })?;
        let line = line.trim();
        if line.starts_with("Get an operator token") {
            break;
        }
        if let Some((door, rest)) = line.split_once(" listening on ")
            && let Some(address) = rest.split_whitespace().next()
        {
            doors.insert(
                door.to_owned(),
                address.trim_start_matches("http://").to_owned(),
            );
        }
    }
    Ok(Process { child, doors })
}

/// Reads one SMTP reply (its last line's code).
async fn reply(reader: &mut BufReader<tokio::net::TcpStream>) -> anyhow::Result<u16> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            anyhow::bail!("connection closed");
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0));
        }
    }
}

async fn expect(
    reader: &mut BufReader<tokio::net::TcpStream>,
    code: u16,
    what: &str,
) -> anyhow::Result<()> {
    let got = reply(reader).await?;
    anyhow::ensure!(got == code, "{what}: {got}, {code} expected");
    Ok(())
}

/// Runs `session` again and again until `stop`. A session that fails is
/// counted as an error of `door` (named `name`), and the next one starts
/// after a pause.
async fn sessions(
    door: Arc<Door>,
    name: &str,
    stop: Arc<AtomicBool>,
    mut session: impl AsyncFnMut() -> anyhow::Result<()>,
) {
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = session().await {
            door.error(name, &e);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Paces a loop at `rate` per second from `started`, `i` being its count.
async fn pace(started: Instant, i: usize, rate: f64) {
    let due = started + Duration::from_secs_f64(i as f64 / rate.max(0.001));
    tokio::time::sleep_until(due.into()).await;
}

fn message(from: &str, to: &str, id: &str, size: usize) -> String {
    let line = "The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    let mut raw = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: soak {id}\r\nMessage-ID: <{id}>\r\n\
         Date: Sun, 06 Dec 2026 12:00:00 +0000\r\n\r\n"
    );
    while raw.len() + line.len() <= size {
        raw.push_str(line);
    }
    raw
}

pub async fn soak(args: SoakBench) -> anyhow::Result<()> {
    let levels = [Level::Standard, Level::Sealed];
    let fixture = fixture(args.database_url.as_deref(), &levels).await?;
    let mut accounts = Vec::with_capacity(levels.len());
    for level in levels {
        accounts.push(fixture.account(level).await?);
    }
    let Fixture {
        dir,
        url,
        store,
        master,
        domain_name,
    } = fixture;
    drop(master);
    let arrivals = Arc::new(std::sync::Mutex::new(Arrivals::default()));
    let (arrived_tx, mut arrived) = tokio::sync::watch::channel(0usize);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink_addr = listener.local_addr()?;
    let sink_task = tokio::spawn(sink(listener, arrivals.clone(), arrived_tx));
    let server = start_server(&dir, &url, sink_addr)?;
    let pid = server.child.id();
    let token = {
        let out = Command::new(std::env::current_exe()?)
            .args(["admin", "operator-token"])
            .env("CALIOP_DATA_DIR", &dir)
            .env("CALIOP_DATABASE_URL", &url)
            .output()?;
        anyhow::ensure!(out.status.success(), "caliop admin operator-token failed");
        String::from_utf8(out.stdout)?.trim().to_owned()
    };
    let standard = accounts[0].address.clone();
    let tenant = accounts[0].tenant_id;
    println!(
        "caliop bench soak — {:.1} min, MX {} msg/s of {} B, submission {} msg/s, API {} reads/s, {} IMAP sessions in IDLE; database {}",
        args.minutes,
        args.smtp_rate,
        args.size,
        args.submit_rate,
        args.api_rate,
        args.imap_sessions,
        if url.starts_with("sqlite") {
            "SQLite"
        } else {
            "PostgreSQL"
        }
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (mx, submission, imap, api) = (
        Arc::new(Door::default()),
        Arc::new(Door::default()),
        Arc::new(Door::default()),
        Arc::new(Door::default()),
    );
    let idle_wakeups = Arc::new(AtomicUsize::new(0));
    let acknowledged = Arc::new(Acknowledged::default());
    let started = Instant::now();
    let mut load = tokio::task::JoinSet::new();

    // Mail in: 4 senders, each sending 10 messages a session.
    let senders = 4;
    for s in 0..senders {
        let (door, stop, ack) = (mx.clone(), stop.clone(), acknowledged.clone());
        let (addr, domain, size) = (server.door("smtp")?, domain_name.to_string(), args.size);
        let rate = args.smtp_rate / senders as f64;
        let mut i = 0;
        load.spawn(sessions(
            door.clone(),
            "MX",
            stop.clone(),
            async move || {
                let stream = tokio::net::TcpStream::connect(addr).await?;
                let mut reader = BufReader::new(stream);
                expect(&mut reader, 220, "greeting").await?;
                reader.get_mut().write_all(b"EHLO sender.soak.test\r\n").await?;
                expect(&mut reader, 250, "EHLO").await?;
                for _ in 0..10 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    pace(started, i, rate).await;
                    let level = levels[i % 2];
                    let to = format!("{level}@{domain}");
                    let id = format!("in-{s}-{i}@sender.soak.test");
                    let raw = message("someone@sender.soak.test", &to, &id, size);
                    let at = Instant::now();
                    reader
                        .get_mut()
                        .write_all(
                            format!(
                                "MAIL FROM:<someone@sender.soak.test>\r\nRCPT TO:<{to}>\r\nDATA\r\n{raw}.\r\n"
                            )
                            .as_bytes(),
                        )
                        .await?;
                    expect(&mut reader, 250, "MAIL").await?;
                    expect(&mut reader, 250, "RCPT").await?;
                    expect(&mut reader, 354, "DATA").await?;
                    expect(&mut reader, 250, "end of data").await?;
                    door.record(at.elapsed());
                    *ack.inbound
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(level)
                        .or_default() += 1;
                    i += 1;
                }
                reader.get_mut().write_all(b"QUIT\r\n").await?;
                Ok(())
            },
        ));
    }

    // Mail out: 2 submitters on the submission port, AUTH PLAIN.
    let submitters = 2;
    for s in 0..submitters {
        let (door, stop, ack) = (submission.clone(), stop.clone(), acknowledged.clone());
        let (addr, from, size) = (server.door("submission")?, standard.to_string(), args.size);
        let rate = args.submit_rate / submitters as f64;
        use base64::Engine;
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{from}\0bench passphrase"));
        let mut i = 0;
        load.spawn(sessions(
            door.clone(),
            "submission",
            stop.clone(),
            async move || {
                let stream = tokio::net::TcpStream::connect(addr).await?;
                let mut reader = BufReader::new(stream);
                expect(&mut reader, 220, "greeting").await?;
                reader
                    .get_mut()
                    .write_all(b"EHLO client.soak.test\r\n")
                    .await?;
                expect(&mut reader, 250, "EHLO").await?;
                reader
                    .get_mut()
                    .write_all(format!("AUTH PLAIN {auth}\r\n").as_bytes())
                    .await?;
                expect(&mut reader, 235, "AUTH").await?;
                for _ in 0..20 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    pace(started, i, rate).await;
                    let to = format!("friend{s}-{i}@remote.soak.test");
                    let id = format!("out-{s}-{i}@{}", from.split('@').nth(1).unwrap_or("x"));
                    let raw = message(&from, &to, &id, size);
                    let at = Instant::now();
                    reader
                        .get_mut()
                        .write_all(
                            format!("MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n").as_bytes(),
                        )
                        .await?;
                    expect(&mut reader, 250, "MAIL").await?;
                    expect(&mut reader, 250, "RCPT").await?;
                    expect(&mut reader, 354, "DATA").await?;
                    reader
                        .get_mut()
                        .write_all(format!("{raw}.\r\n").as_bytes())
                        .await?;
                    expect(&mut reader, 250, "end of data").await?;
                    door.record(at.elapsed());
                    ack.submitted
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(format!("<{id}>"));
                    i += 1;
                }
                reader.get_mut().write_all(b"QUIT\r\n").await?;
                Ok(())
            },
        ));
    }

    // IMAP: sessions in IDLE; each wake-up fetches the newest messages.
    for _ in 0..args.imap_sessions {
        let (door, stop, wakeups) = (imap.clone(), stop.clone(), idle_wakeups.clone());
        let (addr, user) = (server.door("imap")?, standard.to_string());
        load.spawn(sessions(
            door.clone(),
            "IMAP",
            stop.clone(),
            async move || {
                let mut client = ImapClient::connect(addr).await?;
                let at = Instant::now();
                client
                    .run(&format!("LOGIN \"{user}\" \"bench passphrase\""))
                    .await?;
                client.run("SELECT INBOX").await?;
                door.record(at.elapsed());
                // A session lives for 20 wake-ups, then signs in again.
                for _ in 0..20 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if idle(&mut client, Duration::from_secs(10)).await? {
                        wakeups.fetch_add(1, Ordering::Relaxed);
                    }
                    let at = Instant::now();
                    client
                        .run("FETCH *:* (UID FLAGS RFC822.SIZE ENVELOPE)")
                        .await?;
                    door.record(at.elapsed());
                }
                client.run("LOGOUT").await.ok();
                Ok(())
            },
        ));
    }

    // API: authenticated reads of the tenant, 4 clients.
    let http = reqwest::Client::new();
    let readers = 4;
    for _ in 0..readers {
        let (door, stop, http) = (api.clone(), stop.clone(), http.clone());
        let url = format!("http://{}/v1/tenants/{}", server.door("api")?, tenant.0);
        let (token, rate) = (token.clone(), args.api_rate / readers as f64);
        load.spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                pace(started, i, rate).await;
                i += 1;
                let at = Instant::now();
                let got = http.get(&url).bearer_auth(&token).send().await;
                match got {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        door.record(at.elapsed());
                    }
                    Ok(r) => door.error("API", &anyhow::anyhow!("{}", r.status())),
                    Err(e) => door.error("API", &e.into()),
                }
            }
        });
    }

    // Reports until the end.
    let total = Duration::from_secs_f64(args.minutes * 60.0);
    let every = Duration::from_secs(args.report_seconds.max(1));
    println!(
        "{:>6} {:>8} {:>8} {:>9} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "t s",
        "MX/s",
        "MX p99",
        "sub/s",
        "sub p99",
        "delivered",
        "IMAP/s",
        "IMAP p99",
        "API/s",
        "API p99",
        "errors",
        "RSS MiB"
    );
    let mut peak_rss: f64 = 0.0;
    let mut window_start = Instant::now();
    while started.elapsed() < total {
        tokio::time::sleep(every.min(total.saturating_sub(started.elapsed()))).await;
        let seconds = window_start.elapsed().as_secs_f64();
        window_start = Instant::now();
        let rss = rss_mib(pid);
        peak_rss = peak_rss.max(rss);
        let (mx_rate, mx_p99) = mx.take(seconds);
        let (sub_rate, sub_p99) = submission.take(seconds);
        let (imap_rate, imap_p99) = imap.take(seconds);
        let (api_rate, api_p99) = api.take(seconds);
        let errors: usize = [&mx, &submission, &imap, &api]
            .iter()
            .map(|d| d.errors.load(Ordering::Relaxed))
            .sum();
        println!(
            "{:>6.0} {:>8.1} {:>6.1}ms {:>9.1} {:>6.1}ms {:>9} {:>8.1} {:>6.1}ms {:>8.1} {:>6.1}ms {:>8} {:>7.1}",
            started.elapsed().as_secs_f64(),
            mx_rate,
            mx_p99,
            sub_rate,
            sub_p99,
            *arrived.borrow(),
            imap_rate,
            imap_p99,
            api_rate,
            api_p99,
            errors,
            rss
        );
    }
    stop.store(true, Ordering::Relaxed);
    let drain = async { while load.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(30), drain)
        .await
        .is_err()
    {
        load.abort_all();
    }

    // The count: every acknowledged message is somewhere it should be.
    let submitted = acknowledged
        .submitted
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let expected = submitted.len();
    let drained = tokio::time::timeout(
        Duration::from_secs(120),
        arrived.wait_for(|n| *n >= expected),
    )
    .await
    .is_ok();
    let undelivered = {
        let seen = arrivals.lock().unwrap_or_else(|p| p.into_inner());
        submitted
            .iter()
            .filter(|id| !seen.at.contains_key(*id))
            .count()
    };
    let inbound = acknowledged
        .inbound
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut missing_in = 0;
    let mut stored_in = 0;
    for (level, account) in levels.into_iter().zip(&accounts) {
        let mut stored = 0;
        for folder in [Folder::Inbox, Folder::Junk] {
            let mailbox = store.mailbox_of_role(account.id, folder).await?;
            stored += store.mailbox_counts(mailbox.id).await?.messages as usize;
        }
        let acked = inbound.get(&level).copied().unwrap_or(0);
        stored_in += stored;
        missing_in += acked.saturating_sub(stored);
    }
    let acked_in: usize = inbound.values().sum();
    let errors: Vec<String> = [
        ("MX", &mx),
        ("submission", &submission),
        ("IMAP", &imap),
        ("API", &api),
    ]
    .iter()
    .map(|(name, d)| format!("{name} {}", d.errors.load(Ordering::Relaxed)))
    .collect();
    println!(
        "summary: {:.1} min; MX {acked_in} acknowledged, {stored_in} stored, {missing_in} missing; \
         submission {expected} acknowledged, {} delivered to the sink, {undelivered} missing{}; \
         IMAP {} commands, {} IDLE wake-ups; API {} reads; errors: {}; server RSS peak {peak_rss:.1} MiB, last {:.1} MiB",
        started.elapsed().as_secs_f64() / 60.0,
        expected - undelivered,
        if drained {
            ""
        } else {
            " (the queue had not drained after 120 s)"
        },
        imap.done.load(Ordering::Relaxed),
        idle_wakeups.load(Ordering::Relaxed),
        api.done.load(Ordering::Relaxed),
        errors.join(", "),
        rss_mib(pid),
    );
    drop(server);
    sink_task.abort();
    store.close().await;
    if args.database_url.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    anyhow::ensure!(
        missing_in == 0 && undelivered == 0,
        "acknowledged mail is missing: {missing_in} in, {undelivered} out"
    );
    Ok(())
}

/// IDLE until the server reports a change or `wait` passes; whether it did.
async fn idle(client: &mut ImapClient, wait: Duration) -> anyhow::Result<bool> {
    client.reader.get_mut().write_all(b"i IDLE\r\n").await?;
    let mut line = String::new();
    client.reader.read_line(&mut line).await?;
    anyhow::ensure!(line.starts_with('+'), "IDLE: {line}");
    let woke = tokio::time::timeout(wait, async {
        loop {
            line.clear();
            if client.reader.read_line(&mut line).await? == 0 {
                anyhow::bail!("the server closed the connection in IDLE");
            }
            if line.contains("EXISTS") {
                return Ok::<(), anyhow::Error>(());
            }
        }
    })
    .await;
    let woke = match woke {
        Ok(result) => {
            result?;
            true
        }
        Err(_) => false,
    };
    client.reader.get_mut().write_all(b"DONE\r\n").await?;
    loop {
        line.clear();
        if client.reader.read_line(&mut line).await? == 0 {
            anyhow::bail!("the server closed the connection after IDLE");
        }
        if line.starts_with("i ") {
            anyhow::ensure!(line.starts_with("i OK"), "IDLE: {line}");
            return Ok(woke);
        }
    }
}
