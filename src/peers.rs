//! The servers a user would pick instead of Caliop, run beside it by the
//! benchmarks (`--peer`): Postfix for SMTP in and out, Dovecot for IMAP,
//! both from Debian's packages. Each runs as a throw-away instance with
//! its own configuration, queue and mail directories under a temporary
//! directory, listening on a free loopback port, and is stopped when
//! dropped. Nothing of the system's own Postfix or Dovecot is touched.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

/// Why a peer cannot run here, or `None` when it can.
pub fn missing(binaries: &[&str]) -> Option<String> {
    // Postfix's master and Dovecot's both start as root and drop privileges.
    if !is_root() {
        return Some(
            "the peers start as root (Postfix's master, Dovecot) and this is not root".into(),
        );
    }
    let absent: Vec<&str> = binaries
        .iter()
        .copied()
        .filter(|b| !Path::new(b).exists())
        .collect();
    (!absent.is_empty()).then(|| {
        format!(
            "{} not installed (Debian: apt-get install postfix dovecot-imapd)",
            absent.join(", ")
        )
    })
}

/// Whether this process's effective user is root (from `/proc`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uid = status.lines().find(|l| l.starts_with("Uid:"))?;
            // Real, effective, saved, filesystem.
            uid.split_whitespace().nth(2).map(|e| e == "0")
        })
        .unwrap_or(false)
}

pub const POSTFIX: &str = "/usr/sbin/postfix";
pub const DOVECOT: &str = "/usr/sbin/dovecot";

/// A free port on loopback (bound, then released for the peer to take).
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// Waits until something accepts connections on `addr`.
fn wait_for(addr: SocketAddr, what: &str, log: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = tail.lines().rev().take(5).collect();
    anyhow::bail!("{what} did not listen on {addr} within 20 s; its log ends: {tail:?}")
}

/// Runs a command to its end. Its output goes to a file rather than a pipe:
/// a daemon that forks (Dovecot's master) keeps inherited pipes open, and
/// reading them to their end would wait for as long as it runs.
fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = std::env::temp_dir().join(format!(
        "caliop-peer-output-{}",
        uuid::Uuid::now_v7().simple()
    ));
    let file = std::fs::File::create(&output)?;
    let status = command
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .with_context(|| format!("running {what}"));
    let said = std::fs::read_to_string(&output).unwrap_or_default();
    let _ = std::fs::remove_file(&output);
    anyhow::ensure!(status?.success(), "{what} failed: {said}");
    Ok(())
}

fn scratch(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "caliop-peer-{name}-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// What the Postfix peer does with the mail it accepts.
pub enum PostfixRole {
    /// An MX that queues every message (fsync'd, as Postfix always does)
    /// and hands it to the `discard` transport: accept-to-queue, the part
    /// of an MX that Caliop's ingest is measured against.
    Discard { domain: String },
    /// A relay for the local network, sending every message on to `relay`
    /// (`relayhost`), reusing connections as Postfix does by default.
    Relay { relay: SocketAddr },
}

/// A Postfix instance of its own (`postfix -c DIR start`).
pub struct Postfix {
    dir: PathBuf,
    pub addr: SocketAddr,
}

impl Postfix {
    /// Sets the instance up and starts it on Tokio's blocking pool: it
    /// runs processes and waits for the port to open, which would
    /// otherwise hold up the async code around it.
    pub async fn start(role: PostfixRole) -> anyhow::Result<Postfix> {
        tokio::task::spawn_blocking(move || Self::start_blocking(role))
            .await
            .context("starting Postfix")?
    }

    fn start_blocking(role: PostfixRole) -> anyhow::Result<Postfix> {
        let dir = scratch("postfix")?;
        let addr = free_port()?;
        let (conf, queue, data) = (dir.join("conf"), dir.join("queue"), dir.join("data"));
        for d in [&conf, &queue, &data] {
            std::fs::create_dir_all(d)?;
        }
        run(
            Command::new("chown").arg("postfix").arg(&data),
            "chown postfix (the data directory)",
        )?;
        let log = dir.join("maillog");
        let role = match role {
            PostfixRole::Discard { domain } => format!(
                "relay_domains = {domain}\nrelay_transport = discard:\ndefault_transport = discard:\n"
            ),
            PostfixRole::Relay { relay } => format!(
                "relayhost = [{}]:{}\ndefault_transport = smtp\nsmtp_tls_security_level = none\n",
                relay.ip(),
                relay.port()
            ),
        };
        std::fs::write(
            conf.join("main.cf"),
            format!(
                "compatibility_level = 3.6\n\
                 queue_directory = {queue}\n\
                 data_directory = {data}\n\
                 maillog_file = {log}\n\
                 maillog_file_prefixes = {dir}\n\
                 mail_owner = postfix\n\
                 setgid_group = postdrop\n\
                 inet_interfaces = 127.0.0.1\n\
                 inet_protocols = ipv4\n\
                 myhostname = peer.bench.test\n\
                 mydestination =\n\
                 mynetworks = 127.0.0.0/8\n\
                 smtpd_recipient_restrictions = permit_mynetworks, reject\n\
                 smtpd_client_connection_count_limit = 0\n\
                 smtpd_client_connection_rate_limit = 0\n\
                 default_process_limit = 200\n\
                 {role}",
                queue = queue.display(),
                data = data.display(),
                log = log.display(),
                dir = dir.display(),
            ),
        )?;
        // Debian's master.cf, with the one public service on our port.
        let services = [
            ("pickup", "unix  n - n 60 1 pickup"),
            ("cleanup", "unix n - n - 0 cleanup"),
            ("qmgr", "unix n - n 300 1 qmgr"),
            ("tlsmgr", "unix - - n 1000? 1 tlsmgr"),
            ("rewrite", "unix - - n - - trivial-rewrite"),
            ("bounce", "unix - - n - 0 bounce"),
            ("defer", "unix - - n - 0 bounce"),
            ("trace", "unix - - n - 0 bounce"),
            ("verify", "unix - - n - 1 verify"),
            ("flush", "unix n - n 1000? 0 flush"),
            ("proxymap", "unix - - n - - proxymap"),
            ("smtp", "unix - - n - - smtp"),
            ("relay", "unix - - n - - smtp"),
            ("showq", "unix n - n - - showq"),
            ("error", "unix - - n - - error"),
            ("retry", "unix - - n - - error"),
            ("discard", "unix - - n - - discard"),
            ("local", "unix - n n - - local"),
            ("anvil", "unix - - n - 1 anvil"),
            ("scache", "unix - - n - 1 scache"),
            ("postlog", "unix-dgram n - n - 1 postlogd"),
        ];
        let mut master = format!("{addr} inet n - n - - smtpd\n");
        for (name, rest) in services {
            master.push_str(&format!("{name} {rest}\n"));
        }
        std::fs::write(conf.join("master.cf"), master)?;
        run(
            Command::new(POSTFIX).arg("-c").arg(&conf).arg("start"),
            "postfix start",
        )?;
        let postfix = Postfix { dir, addr };
        wait_for(addr, "Postfix", &log)?;
        Ok(postfix)
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new(POSTFIX)
            .arg("-c")
            .arg(self.dir.join("conf"))
            .arg("stop")
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Dovecot instance of its own (`dovecot -c FILE`) serving one user's
/// Maildir over plain IMAP on loopback.
pub struct Dovecot {
    dir: PathBuf,
    pub addr: SocketAddr,
}

impl Dovecot {
    pub const USER: &'static str = "bench";
    pub const PASSWORD: &'static str = "bench passphrase";

    /// A Dovecot whose user's Maildir `fill` writes before it starts (as
    /// its LDA would have delivered them: one file per message in `cur/`).
    /// `fill` and the start run on Tokio's blocking pool, as in
    /// [`Postfix::start`].
    pub async fn start(
        fill: impl FnOnce(&Path) -> anyhow::Result<()> + Send + 'static,
    ) -> anyhow::Result<Dovecot> {
        tokio::task::spawn_blocking(move || Self::start_blocking(fill))
            .await
            .context("starting Dovecot")?
    }

    fn start_blocking(fill: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<Dovecot> {
        let dir = scratch("dovecot")?;
        let addr = free_port()?;
        let maildir = dir.join("mail").join(Self::USER).join("Maildir");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub))?;
        }
        fill(&maildir)?;
        run(
            Command::new("chown")
                .arg("-R")
                .arg("dovecot:dovecot")
                .arg(dir.join("mail")),
            "chown dovecot (the mail directory)",
        )?;
        let log = dir.join("dovecot.log");
        let users = dir.join("users");
        std::fs::write(
            &users,
            format!("{}:{{PLAIN}}{}\n", Self::USER, Self::PASSWORD),
        )?;
        let config = dir.join("dovecot.conf");
        std::fs::write(
            &config,
            format!(
                "protocols = imap\n\
                 listen = 127.0.0.1\n\
                 base_dir = {dir}/run\n\
                 state_dir = {dir}/state\n\
                 log_path = {log}\n\
                 ssl = no\n\
                 disable_plaintext_auth = no\n\
                 auth_mechanisms = plain login\n\
                 mail_location = maildir:{dir}/mail/%u/Maildir\n\
                 first_valid_uid = 1\n\
                 passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {users}\n}}\n\
                 userdb {{\n  driver = static\n  args = uid=dovecot gid=dovecot home={dir}/mail/%u\n}}\n\
                 service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  \
                 inet_listener imaps {{\n    port = 0\n  }}\n}}\n",
                dir = dir.display(),
                log = log.display(),
                users = users.display(),
                port = addr.port(),
            ),
        )?;
        run(Command::new(DOVECOT).arg("-c").arg(&config), "dovecot")?;
        let dovecot = Dovecot { dir, addr };
        wait_for(addr, "Dovecot", &log)?;
        Ok(dovecot)
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new("doveadm")
            .arg("-c")
            .arg(self.dir.join("dovecot.conf"))
            .arg("stop")
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
