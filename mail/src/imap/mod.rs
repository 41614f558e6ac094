//! The IMAP server (IMAP4rev2, RFC 9051, with IMAP4rev1 clients welcome):
//! commands are parsed by `imap-codec`; this module owns the listener, the
//! limits (line and literal sizes, timeouts, connections in all and per
//! client IP) and hands each connection to a [`session`]. Messages are
//! served exactly as stored: plaintext for `standard`, the PGP/MIME form the
//! recipient's key opens above, so the server never needs that key.

mod extended;
pub mod message;
pub mod search;
mod session;
mod utf7;
mod view;
mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::connections::Connections;
use crate::inbound::Inbound;
use tenants::login::LoginGuard;

/// Limits and names of the IMAP service.
#[derive(Clone, Debug)]
pub struct ImapConfig {
    pub hostname: String,
    /// Largest literal (an APPENDed message).
    pub max_literal: usize,
    /// Longest command, literals excluded.
    pub max_line: usize,
    /// How long a client may take to sign in.
    pub login_timeout: Duration,
    /// How long a signed-in client may stay silent (IDLE included; RFC 9051
    /// asks for at least 30 minutes).
    pub autologout: Duration,
    /// Connections the listener holds at once, from all clients.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// How often a selected mailbox is checked for changes that other
    /// processes made (those of this process are seen at once).
    pub poll_interval: Duration,
    /// Bad commands tolerated in a row before the connection is closed.
    pub max_errors: usize,
    /// How often a signed-in session checks that its account and
    /// organisation are still active and its password unchanged.
    pub recheck: Duration,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            hostname: "mail.localhost".into(),
            max_literal: 50 * 1024 * 1024,
            max_line: 64 * 1024,
            login_timeout: Duration::from_secs(60),
            autologout: Duration::from_secs(30 * 60),
            max_connections: 1000,
            max_connections_per_ip: 20,
            poll_interval: Duration::from_secs(1),
            max_errors: 20,
            recheck: Duration::from_secs(5),
        }
    }
}

/// Accepts IMAP connections and runs one session each.
#[derive(Clone)]
pub struct ImapServer {
    shared: Arc<Shared>,
}

struct Shared {
    config: ImapConfig,
    inbound: Arc<Inbound>,
    guard: Arc<LoginGuard>,
    tls: Option<TlsAcceptor>,
    connections: Arc<Connections>,
}

impl ImapServer {
    pub fn new(
        config: ImapConfig,
        inbound: Arc<Inbound>,
        guard: Arc<LoginGuard>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> ImapServer {
        ImapServer {
            shared: Arc::new(Shared {
                connections: Connections::new(
                    config.max_connections,
                    config.max_connections_per_ip,
                ),
                config,
                inbound,
                guard,
                tls: tls.map(TlsAcceptor::from),
            }),
        }
    }

    /// Serves `listener` until `shutdown` resolves: in clear with STARTTLS,
    /// or with TLS from the first byte (`implicit_tls`, port 993's way).
    /// Open sessions are told BYE and given a few seconds.
    pub async fn serve(
        self,
        listener: TcpListener,
        implicit_tls: bool,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        if implicit_tls && self.shared.tls.is_none() {
            return Err(std::io::Error::other("implicit TLS needs a certificate"));
        }
        let (stop, _) = tokio::sync::watch::channel(false);
        let mut sessions = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (mut stream, peer) = match accepted {
                        Ok(conn) => conn,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            continue;
                        }
                    };
                    let shared = self.shared.clone();
                    let stopping = stop.subscribe();
                    sessions.spawn(async move {
                        let instance = b"* BYE [UNAVAILABLE] too many connections, try again later\r\n";
                        let address = b"* BYE [UNAVAILABLE] too many connections from your address, try later\r\n";
                        let Some(slot) = shared.connections.admit_or_tell(&mut stream, peer.ip(), instance, address).await else {
                            return;
                        };
                        let _ = stream.set_nodelay(true);
                        session::run(stream, peer, &shared.config, &shared.inbound, &shared.guard, shared.tls.clone(), implicit_tls, stopping).await;
                        drop(slot);
                    });
                }
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                () = &mut shutdown => break,
            }
        }
        let _ = stop.send(true);
        let drain = async { while sessions.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .is_err()
        {
            sessions.abort_all();
        }
        Ok(())
    }

    /// Runs one session over any byte stream, as if a client on `peer` had
    /// connected in clear (tests drive the command path with it).
    pub async fn session_over<S>(&self, stream: S, peer: std::net::SocketAddr)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    {
        let (_stop, stopping) = tokio::sync::watch::channel(false);
        let s = &self.shared;
        let transport = session::Transport {
            secure: false,
            can_starttls: false,
            greet: true,
        };
        session::dialogue(
            stream, peer, &s.config, &s.inbound, &s.guard, transport, stopping,
        )
        .await;
    }
}
