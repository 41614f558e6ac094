//! The inbound SMTP server (RFC 5321 with PIPELINING, 8BITMIME, SMTPUTF8,
//! SIZE, ENHANCEDSTATUSCODES, CHUNKING and STARTTLS). Commands are parsed by
//! `smtp-proto`; this module owns the dialogue, its limits (line length,
//! recipients, size, timeouts, connections in all and per client IP, a greeting delay
//! that catches clients who talk first) and the reply to every refusal.
//! The message itself goes to [`Inbound`]; a `250` is sent only after it has
//! committed.
//!
//! The same dialogue serves the submission port ([`SmtpServer::submission`]):
//! there a client must authenticate (AUTH PLAIN or LOGIN, offered only under
//! TLS unless the client is on loopback), may write to any address, and its
//! message goes to [`Outbound`] instead, which queues it for delivery.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use smtp_proto::{Error as ParseError, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::connections::{ADMISSION_GRACE, Connections, Full};
use crate::inbound::{Envelope, Inbound, Recipient, Session};
use crate::outbound::{Draft, Outbound};
use crate::reply::Reply;
use tenants::login::LoginGuard;

/// Whom a listener serves.
#[derive(Clone)]
enum Role {
    /// The MX: mail for hosted addresses, from anyone.
    Mx,
    /// Mail clients of hosted accounts, to anyone, after AUTH; failed
    /// attempts count in the guard the API's sign-in uses too.
    Submission(Arc<Outbound>, Arc<LoginGuard>),
}

/// Limits and names of the SMTP service.
#[derive(Clone, Debug)]
pub struct SmtpConfig {
    pub hostname: String,
    /// The instance's largest message, advertised with SIZE.
    pub max_message_size: usize,
    pub max_recipients: usize,
    /// Longest command line, CRLF included.
    pub max_line_length: usize,
    /// How long to wait for each command or data line.
    pub command_timeout: Duration,
    /// How long one connection may last in all.
    pub session_timeout: Duration,
    /// Connections the listener holds at once, from all clients.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Wait before the greeting; a client that speaks first is dropped.
    pub greeting_delay: Duration,
    /// Bad commands tolerated before the connection is closed.
    pub max_errors: usize,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            hostname: "mail.localhost".into(),
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 100,
            max_line_length: 4096,
            command_timeout: Duration::from_secs(300),
            session_timeout: Duration::from_secs(1800),
            max_connections: 1000,
            max_connections_per_ip: 20,
            greeting_delay: Duration::ZERO,
            max_errors: 10,
        }
    }
}

/// The MX: accepts connections and runs one session each.
pub struct SmtpServer {
    config: Arc<SmtpConfig>,
    role: Role,
    inbound: Arc<Inbound>,
    tls: Option<TlsAcceptor>,
    connections: Arc<Connections>,
}

impl SmtpServer {
    pub fn new(
        config: SmtpConfig,
        inbound: Arc<Inbound>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> SmtpServer {
        SmtpServer {
            connections: Connections::new(config.max_connections, config.max_connections_per_ip),
            config: Arc::new(config),
            role: Role::Mx,
            inbound,
            tls: tls.map(TlsAcceptor::from),
        }
    }

    /// The submission service for mail clients.
    pub fn submission(
        config: SmtpConfig,
        inbound: Arc<Inbound>,
        outbound: Arc<Outbound>,
        login_guard: Arc<LoginGuard>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> SmtpServer {
        SmtpServer {
            role: Role::Submission(outbound, login_guard),
            ..SmtpServer::new(config, inbound, tls)
        }
    }

    /// Accepts connections until `shutdown` resolves, then gives open
    /// sessions a few seconds to finish. A session cut short never got its
    /// `250`, so its client will retry: nothing acknowledged is lost.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let mut sessions = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(conn) => conn,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            continue;
                        }
                    };
                    let connections = self.connections.clone();
                    let (config, inbound, tls) = (self.config.clone(), self.inbound.clone(), self.tls.clone());
                    let role = self.role.clone();
                    sessions.spawn(async move {
                        let slot = match connections.admit_within(peer.ip(), ADMISSION_GRACE).await {
                            Ok(slot) => slot,
                            Err(full) => {
                                let reply = match full {
                                    Full::Instance => Reply::new(421, "4.3.2", "too many connections, try again later"),
                                    Full::Address => Reply::new(421, "4.7.0", "too many connections from your address, try later"),
                                };
                                refuse(stream, &reply).await;
                                return;
                            }
                        };
                        let limit = config.session_timeout;
                        if tokio::time::timeout(limit, session(stream, peer, config, role, inbound, tls)).await.is_err() {
                            tracing::info!(client = %peer.ip(), "session timed out");
                        }
                        drop(slot);
                    });
                }
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                () = &mut shutdown => break,
            }
        }
        let drain = async { while sessions.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .is_err()
        {
            sessions.abort_all();
        }
        Ok(())
    }
}

enum Line {
    Complete(Vec<u8>),
    TooLong,
}

enum Ending<S> {
    Closed,
    StartTls(S),
}

struct Conn<S> {
    reader: BufReader<S>,
    out: Vec<u8>,
    timeout: Duration,
}

#[derive(Debug)]
struct Gone;

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn reply(&mut self, reply: &Reply) {
        self.out.extend_from_slice(reply.to_wire().as_bytes());
    }

    fn raw(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
    }

    async fn flush(&mut self) -> Result<(), Gone> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let stream = self.reader.get_mut();
        tokio::time::timeout(self.timeout, async {
            stream.write_all(&out).await?;
            stream.flush().await
        })
        .await
        .map_err(|_| Gone)?
        .map_err(|_| Gone)
    }

    /// Flushes replies only when no pipelined command is waiting, so that a
    /// pipelining client gets its replies in one write.
    async fn flush_if_idle(&mut self) -> Result<(), Gone> {
        if self.reader.buffer().is_empty() {
            self.flush().await
        } else {
            Ok(())
        }
    }

    /// One line up to `max` bytes (LF included); longer lines are consumed
    /// to their end and reported as too long.
    async fn read_line(&mut self, max: usize) -> Result<Line, Gone> {
        match crate::lines::read_bounded_line(&mut self.reader, max, self.timeout).await {
            Some((line, true)) => Ok(Line::Complete(line)),
            Some((_, false)) => Ok(Line::TooLong),
            None => Err(Gone),
        }
    }

    /// Exactly `n` bytes for BDAT, keeping at most `keep` of them.
    async fn read_chunk(
        &mut self,
        n: usize,
        keep: usize,
        into: &mut Vec<u8>,
    ) -> Result<bool, Gone> {
        let mut left = n;
        let mut kept_all = true;
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let want = left.min(buf.len());
            let got = match tokio::time::timeout(self.timeout, self.reader.read(&mut buf[..want]))
                .await
            {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Err(Gone),
                Ok(Ok(got)) => got,
            };
            if into.len() + got <= keep {
                into.extend_from_slice(&buf[..got]);
            } else {
                kept_all = false;
            }
            left -= got;
        }
        Ok(kept_all)
    }
}

#[derive(Default)]
struct Transaction {
    from: Option<String>,
    declared_size: usize,
    recipients: Vec<Recipient>,
    /// On the MX: RCPT named the TLS report address (`tls_reports`).
    tls_report: bool,
    /// On the submission port: every address RCPT named.
    addresses: Vec<String>,
    chunks: Vec<u8>,
    chunks_too_big: bool,
}

/// Answers a connection we will not serve, then closes it without losing the
/// answer: what the client already sent is drained first, because closing a
/// socket with unread bytes resets it and throws our reply away.
async fn refuse(mut stream: TcpStream, reply: &Reply) {
    let _ = stream.write_all(reply.to_wire().as_bytes()).await;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let drain = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

async fn session(
    stream: TcpStream,
    peer: SocketAddr,
    config: Arc<SmtpConfig>,
    role: Role,
    inbound: Arc<Inbound>,
    tls: Option<TlsAcceptor>,
) {
    let _ = stream.set_nodelay(true);
    if !config.greeting_delay.is_zero() {
        let mut probe = [0u8; 1];
        if let Ok(Ok(n)) =
            tokio::time::timeout(config.greeting_delay, stream.peek(&mut probe)).await
        {
            if n > 0 {
                refuse(
                    stream,
                    &Reply::new(
                        554,
                        "5.5.1",
                        "protocol error: you spoke before the greeting",
                    ),
                )
                .await;
                tracing::info!(client = %peer.ip(), "client talked before the greeting");
            }
            return;
        }
    }
    let mut facts = Session {
        client_ip: peer.ip(),
        helo: String::new(),
        tls_version: 0,
        tls_cipher: None,
    };
    let greeting = Reply::new(220, "2.0.0", format!("{} ESMTP Caliop", config.hostname));
    let ending = dialogue(
        stream,
        &config,
        &role,
        &inbound,
        &mut facts,
        tls.is_some(),
        Some(greeting),
    )
    .await;
    let Ending::StartTls(stream) = ending else {
        return;
    };
    let Some(acceptor) = tls else { return };
    let stream = match tokio::time::timeout(config.command_timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        _ => {
            tracing::info!(client = %peer.ip(), "TLS handshake failed");
            return;
        }
    };
    let (_, connection) = stream.get_ref();
    facts.tls_version = match connection.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => 13,
        Some(rustls::ProtocolVersion::TLSv1_2) => 12,
        _ => 0,
    };
    facts.tls_cipher = connection
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()));
    facts.helo.clear();
    dialogue(stream, &config, &role, &inbound, &mut facts, false, None).await;
}

#[allow(clippy::too_many_arguments)]
async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    config: &SmtpConfig,
    role: &Role,
    inbound: &Inbound,
    facts: &mut Session,
    can_start_tls: bool,
    greeting: Option<Reply>,
) -> Ending<S> {
    let mut conn = Conn {
        reader: BufReader::new(stream),
        out: Vec::new(),
        timeout: config.command_timeout,
    };
    if let Some(greeting) = greeting {
        conn.reply(&greeting);
        if conn.flush().await.is_err() {
            return Ending::Closed;
        }
    }
    let mut tx = Transaction::default();
    let mut errors = 0usize;
    // The authenticated account, on the submission port.
    let mut user: Option<tenants::Account> = None;
    let submission = match role {
        Role::Submission(outbound, guard) => Some((outbound, guard)),
        Role::Mx => None,
    };
    // Passwords cross only encrypted connections, or never leave the machine.
    let may_auth = submission.is_some() && (facts.tls_version > 0 || facts.client_ip.is_loopback());
    loop {
        if conn.flush_if_idle().await.is_err() {
            return Ending::Closed;
        }
        if errors >= config.max_errors {
            conn.reply(&Reply::new(
                421,
                "4.7.0",
                "too many errors, closing the connection",
            ));
            let _ = conn.flush().await;
            return Ending::Closed;
        }
        let line = match conn.read_line(config.max_line_length).await {
            Ok(Line::Complete(line)) => line,
            Ok(Line::TooLong) => {
                errors += 1;
                conn.reply(&Reply::new(
                    500,
                    "5.5.2",
                    format!("line too long (limit {} bytes)", config.max_line_length),
                ));
                continue;
            }
            Err(Gone) => {
                conn.reply(&Reply::new(
                    421,
                    "4.4.2",
                    "timeout or connection lost, closing",
                ));
                let _ = conn.flush().await;
                return Ending::Closed;
            }
        };
        if bare_newline(&line) {
            // The same rule as in DATA: a command line ends with <CR><LF>,
            // and what a bare line break would split is read by no one.
            conn.reply(&Reply::new(
                521,
                "5.5.2",
                "bare <LF> or <CR> received: SMTP lines end with <CR><LF>; closing",
            ));
            let _ = conn.flush().await;
            return Ending::Closed;
        }
        let request = Request::parse(&mut line.iter()).map(Request::into_owned);
        let reply = match request {
            Ok(Request::Ehlo { host }) => {
                tx = Transaction::default();
                facts.helo = host.clone();
                let mut lines = vec![
                    format!("{} greets {}", config.hostname, host),
                    "PIPELINING".to_owned(),
                    "8BITMIME".to_owned(),
                    "SMTPUTF8".to_owned(),
                    format!("SIZE {}", config.max_message_size),
                    "ENHANCEDSTATUSCODES".to_owned(),
                    "CHUNKING".to_owned(),
                ];
                if can_start_tls {
                    lines.push("STARTTLS".to_owned());
                }
                if may_auth {
                    lines.push("AUTH PLAIN LOGIN".to_owned());
                }
                let last = lines.len() - 1;
                for (i, text) in lines.iter().enumerate() {
                    conn.raw(&format!(
                        "250{}{}\r\n",
                        if i == last { ' ' } else { '-' },
                        text
                    ));
                }
                continue;
            }
            Ok(Request::Helo { host }) => {
                tx = Transaction::default();
                facts.helo = host;
                Reply::new(250, "2.0.0", config.hostname.clone())
            }
            Ok(Request::StartTls) if can_start_tls => {
                if !conn.reader.buffer().is_empty() {
                    // Commands pipelined after STARTTLS would cross into the TLS
                    // session unprotected (CVE-2011-0411): refuse the connection.
                    conn.reply(&Reply::new(
                        554,
                        "5.5.1",
                        "nothing may follow STARTTLS before the handshake",
                    ));
                    let _ = conn.flush().await;
                    return Ending::Closed;
                }
                conn.reply(&Reply::new(220, "2.0.0", "ready to start TLS"));
                if conn.flush().await.is_err() {
                    return Ending::Closed;
                }
                return Ending::StartTls(conn.reader.into_inner());
            }
            Ok(Request::StartTls) => {
                Reply::new(503, "5.5.1", "TLS is already active or not available")
            }
            Ok(Request::Auth {
                mechanism,
                initial_response,
            }) => match submission {
                None => Reply::new(503, "5.5.1", "authentication is for the submission port"),
                Some(_) if !may_auth => Reply::new(
                    538,
                    "5.7.11",
                    "encryption required: STARTTLS first, then AUTH",
                ),
                Some(_) if user.is_some() => Reply::new(503, "5.5.1", "already authenticated"),
                Some((_, guard)) => match read_credentials(&mut conn, mechanism, initial_response)
                    .await
                {
                    Err(Gone) => return Ending::Closed,
                    Ok(None) => Reply::new(
                        501,
                        "5.5.2",
                        "malformed or cancelled authentication exchange",
                    ),
                    Ok(Some((name, password))) => {
                        match authenticate(inbound, guard, facts.client_ip, &name, password).await {
                            Ok(account) => {
                                user = Some(account);
                                Reply::new(235, "2.7.0", "authentication succeeded")
                            }
                            // A 535 counts as a bad command below; the guard counts it across connections.
                            Err(reply) => reply,
                        }
                    }
                },
            },
            Ok(Request::Mail { .. }) if submission.is_some() && user.is_none() => {
                Reply::new(530, "5.7.0", "authentication required")
            }
            Ok(Request::Mail { from }) => {
                if facts.helo.is_empty() {
                    Reply::new(503, "5.5.1", "send EHLO or HELO first")
                } else if tx.from.is_some() {
                    Reply::new(503, "5.5.1", "nested MAIL command")
                } else if from.size > config.max_message_size {
                    Reply::new(
                        552,
                        "5.3.4",
                        format!(
                            "message size exceeds the limit of {} bytes",
                            config.max_message_size
                        ),
                    )
                } else {
                    tx.declared_size = from.size;
                    tx.from = Some(from.address);
                    Reply::new(250, "2.1.0", "sender ok")
                }
            }
            Ok(Request::Rcpt { to }) if submission.is_some() => {
                if tx.from.is_none() {
                    Reply::new(503, "5.5.1", "send MAIL first")
                } else if tx.addresses.len() >= config.max_recipients {
                    Reply::new(
                        452,
                        "4.5.3",
                        format!("too many recipients (limit {})", config.max_recipients),
                    )
                } else if tenants::EmailAddress::parse(&to.address).is_err() {
                    Reply::new(501, "5.1.3", "bad recipient address syntax")
                } else {
                    if !tx.addresses.contains(&to.address) {
                        tx.addresses.push(to.address);
                    }
                    Reply::new(250, "2.1.5", "recipient ok")
                }
            }
            Ok(Request::Rcpt { to }) => {
                if tx.from.is_none() {
                    Reply::new(503, "5.5.1", "send MAIL first")
                } else if tx.recipients.len() >= config.max_recipients {
                    Reply::new(
                        452,
                        "4.5.3",
                        format!("too many recipients (limit {})", config.max_recipients),
                    )
                } else if to
                    .address
                    .eq_ignore_ascii_case(&crate::tls_reports::address(inbound.hostname()))
                {
                    tx.tls_report = true;
                    Reply::new(250, "2.1.5", "recipient ok (TLS reports)")
                } else {
                    match inbound
                        .check_recipient_sized(&to.address, tx.declared_size as i64)
                        .await
                    {
                        Ok(recipients) => {
                            // A group reaches each member once, however written.
                            for recipient in recipients {
                                if !tx
                                    .recipients
                                    .iter()
                                    .any(|r| r.account.id == recipient.account.id)
                                {
                                    tx.recipients.push(recipient);
                                }
                            }
                            Reply::new(250, "2.1.5", "recipient ok")
                        }
                        Err(reply) => reply,
                    }
                }
            }
            Ok(Request::Data) => {
                if let Some(refusal) = ready_for_data(&tx, submission.is_some()) {
                    refusal
                } else {
                    conn.reply(&Reply::new(
                        354,
                        "2.0.0",
                        "start mail input; end with <CRLF>.<CRLF>",
                    ));
                    if conn.flush().await.is_err() {
                        return Ending::Closed;
                    }
                    let (data, too_big) = match read_data(&mut conn, config.max_message_size).await
                    {
                        Ok(Data::Complete(data, too_big)) => (data, too_big),
                        Ok(Data::BareNewline) => {
                            // Nothing of this transaction is kept, and the
                            // connection ends: what followed the bare line
                            // ending is never read as commands (smuggling).
                            conn.reply(&Reply::new(
                                521,
                                "5.5.2",
                                "bare <LF> or <CR> received in the message: lines must end with <CR><LF>; nothing was stored",
                            ));
                            let _ = conn.flush().await;
                            return Ending::Closed;
                        }
                        Err(Gone) => return Ending::Closed,
                    };
                    let reply = match (submission, &user) {
                        (Some((outbound, _)), Some(account)) => {
                            submit(outbound, account, &tx, data, too_big, config).await
                        }
                        _ => finish(inbound, facts, &mut tx, &data, too_big, config).await,
                    };
                    tx = Transaction::default();
                    reply
                }
            }
            Ok(Request::Bdat {
                chunk_size,
                is_last,
            }) => {
                let refusal = ready_for_data(&tx, submission.is_some());
                let keep = if refusal.is_some() {
                    0
                } else {
                    config.max_message_size
                };
                let mut chunks = std::mem::take(&mut tx.chunks);
                let kept = match conn.read_chunk(chunk_size, keep, &mut chunks).await {
                    Ok(kept) => kept,
                    Err(Gone) => return Ending::Closed,
                };
                tx.chunks = chunks;
                tx.chunks_too_big |= !kept;
                if let Some(refusal) = refusal {
                    refusal
                } else if is_last {
                    let data = std::mem::take(&mut tx.chunks);
                    let too_big = tx.chunks_too_big;
                    let reply = match (submission, &user) {
                        (Some((outbound, _)), Some(account)) => {
                            submit(outbound, account, &tx, data, too_big, config).await
                        }
                        _ => finish(inbound, facts, &mut tx, &data, too_big, config).await,
                    };
                    tx = Transaction::default();
                    reply
                } else {
                    Reply::new(250, "2.0.0", format!("{chunk_size} octets received"))
                }
            }
            Ok(Request::Rset) => {
                tx = Transaction::default();
                Reply::new(250, "2.0.0", "reset")
            }
            Ok(Request::Noop { .. }) => Reply::new(250, "2.0.0", "ok"),
            Ok(Request::Quit) => {
                conn.reply(&Reply::new(221, "2.0.0", "bye"));
                let _ = conn.flush().await;
                return Ending::Closed;
            }
            Ok(Request::Vrfy { .. }) => Reply::new(
                252,
                "2.5.0",
                "cannot verify the address; send mail to find out",
            ),
            Ok(Request::Help { .. }) => Reply::new(214, "2.0.0", "see RFC 5321"),
            Ok(_) => Reply::new(502, "5.5.1", "command not implemented"),
            Err(ParseError::UnknownCommand) => Reply::new(500, "5.5.1", "command unrecognized"),
            Err(ParseError::InvalidSenderAddress) => {
                Reply::new(501, "5.1.7", "bad sender address syntax")
            }
            Err(ParseError::InvalidRecipientAddress) => {
                Reply::new(501, "5.1.3", "bad recipient address syntax")
            }
            Err(ParseError::SyntaxError { syntax }) => {
                Reply::new(501, "5.5.4", format!("syntax: {syntax}"))
            }
            Err(ParseError::InvalidParameter { param }) => {
                Reply::new(501, "5.5.4", format!("invalid parameter {param}"))
            }
            Err(ParseError::UnsupportedParameter { param }) => {
                Reply::new(555, "5.5.4", format!("unsupported parameter {param}"))
            }
            Err(_) => Reply::new(500, "5.5.2", "syntax error"),
        };
        if reply.code >= 500 && reply.code < 600 && !matches!(reply.code, 550..=554) {
            errors += 1;
        }
        conn.reply(&reply);
    }
}

fn ready_for_data(tx: &Transaction, submission: bool) -> Option<Reply> {
    if tx.from.is_none() {
        Some(Reply::new(503, "5.5.1", "send MAIL first"))
    } else if (submission && tx.addresses.is_empty())
        || (!submission && tx.recipients.is_empty() && !tx.tls_report)
    {
        Some(Reply::new(554, "5.5.1", "no valid recipients"))
    } else {
        None
    }
}

/// What DATA brought.
enum Data {
    /// The message up to `<CRLF>.<CRLF>`, and whether it went past the size limit.
    Complete(Vec<u8>, bool),
    /// A line ended with a bare LF, or held a bare CR.
    BareNewline,
}

/// Reads DATA to the final dot, undoing dot-stuffing; past `max` bytes it
/// keeps reading (so the dialogue stays in step) but drops the content.
///
/// Only `<CRLF>.<CRLF>` ends DATA. A bare LF or CR anywhere in it is
/// refused outright, as Postfix's `smtpd_forbid_bare_newline = yes` does:
/// MTAs disagree on what `<LF>.<LF>` means, and that disagreement is how
/// a second message with a sender of the attacker's choice is smuggled
/// through a relay (SMTP smuggling, CVE-2023-51764). BDAT chunks are
/// counted in bytes, not lines, and are exempt.
async fn read_data<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    max: usize,
) -> Result<Data, Gone> {
    let mut data = Vec::with_capacity(16 * 1024);
    let mut too_big = false;
    loop {
        let line = match conn.read_line(1024 * 1024).await? {
            Line::Complete(line) => line,
            Line::TooLong => {
                too_big = true;
                continue;
            }
        };
        if bare_newline(&line) {
            return Ok(Data::BareNewline);
        }
        if line == b".\r\n" {
            return Ok(Data::Complete(data, too_big));
        }
        let line = line.strip_prefix(b".").unwrap_or(&line);
        if data.len() + line.len() > max {
            too_big = true;
            data.clear();
        } else if !too_big {
            data.extend_from_slice(line);
        }
    }
}

/// Whether a line read off the wire (LF included) ends in a bare LF or
/// holds a CR that is not part of its final CRLF.
fn bare_newline(line: &[u8]) -> bool {
    match line.strip_suffix(b"\r\n") {
        Some(body) => body.contains(&b'\r'),
        None => true,
    }
}

async fn finish(
    inbound: &Inbound,
    facts: &Session,
    tx: &mut Transaction,
    data: &[u8],
    too_big: bool,
    config: &SmtpConfig,
) -> Reply {
    if too_big {
        return Reply::new(
            552,
            "5.3.4",
            format!(
                "message size exceeds the limit of {} bytes",
                config.max_message_size
            ),
        );
    }
    if std::mem::take(&mut tx.tls_report) {
        let taken = crate::tls_reports::take(inbound.store(), data).await;
        if tx.recipients.is_empty() {
            return match taken {
                Ok(kept) => Reply::new(
                    250,
                    "2.0.0",
                    format!("ok: TLS report read, {kept} policy results kept"),
                ),
                Err(e @ crate::tls_reports::ReportError::Store(_)) => {
                    tracing::error!(error = %e, "a TLS report could not be kept");
                    Reply::new(451, "4.3.0", "local error in processing, try again later")
                }
                Err(e) => Reply::new(550, "5.6.0", e.to_string()),
            };
        }
        if let Err(e) = taken {
            tracing::info!(error = %e, "a TLS report sent beside other recipients was not read");
        }
    }
    let envelope = Envelope {
        from: tx.from.clone().unwrap_or_default(),
        recipients: std::mem::take(&mut tx.recipients),
    };
    match inbound.accept(facts, &envelope, data).await {
        Ok(ids) => Reply::new(
            250,
            "2.0.0",
            format!(
                "ok: stored as {}",
                ids.iter()
                    .map(|id| id.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ),
        Err(reply) => reply,
    }
}

/// The name and password of an AUTH PLAIN (RFC 4616) or LOGIN exchange;
/// `None` when it is malformed or the client cancels with `*`.
async fn read_credentials<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    mechanism: u64,
    initial: String,
) -> Result<Option<(String, secrecy::SecretString)>, Gone> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    async fn ask<S: AsyncRead + AsyncWrite + Unpin>(
        conn: &mut Conn<S>,
        challenge: &str,
    ) -> Result<Option<Vec<u8>>, Gone> {
        conn.raw(&format!("334 {challenge}\r\n"));
        conn.flush().await?;
        let Line::Complete(line) = conn.read_line(4096).await? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&line).trim().to_owned();
        if text == "*" {
            return Ok(None);
        }
        Ok(base64::engine::general_purpose::STANDARD.decode(text).ok())
    }
    let decoded = |text: &str| {
        if text.is_empty() || text == "=" {
            None
        } else {
            b64.decode(text.trim()).ok()
        }
    };
    if mechanism == smtp_proto::AUTH_PLAIN {
        let data = match decoded(&initial) {
            Some(data) => data,
            None => match ask(conn, "").await? {
                Some(data) => data,
                None => return Ok(None),
            },
        };
        // authzid NUL authcid NUL password; an authzid other than the user is not supported.
        let mut parts = data.split(|&b| b == 0);
        let (Some(authz), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Ok(None);
        };
        if !authz.is_empty() && authz != user {
            return Ok(None);
        }
        let (Ok(user), Ok(password)) = (
            String::from_utf8(user.to_vec()),
            String::from_utf8(password.to_vec()),
        ) else {
            return Ok(None);
        };
        return Ok(Some((user, password.into())));
    }
    if mechanism == smtp_proto::AUTH_LOGIN {
        let user = match decoded(&initial) {
            Some(user) => user,
            None => match ask(conn, "VXNlcm5hbWU6").await? {
                Some(user) => user,
                None => return Ok(None),
            },
        };
        let Some(password) = ask(conn, "UGFzc3dvcmQ6").await? else {
            return Ok(None);
        };
        let (Ok(user), Ok(password)) = (String::from_utf8(user), String::from_utf8(password))
        else {
            return Ok(None);
        };
        return Ok(Some((user, password.into())));
    }
    Ok(None)
}

/// The active account these credentials open, checked and counted exactly
/// like the API's sign-in.
async fn authenticate(
    inbound: &Inbound,
    guard: &LoginGuard,
    ip: IpAddr,
    name: &str,
    password: secrecy::SecretString,
) -> Result<tenants::Account, Reply> {
    use tenants::login::SignInRefused;
    tenants::login::sign_in(
        inbound.store(),
        guard,
        ip,
        name,
        password,
        tenants::login::Door::Mail,
    )
    .await
    .map_err(|refused| match refused {
        SignInRefused::Invalid => {
            tracing::info!(%ip, "failed submission authentication");
            Reply::new(
                535,
                "5.7.8",
                "authentication credentials invalid; mail clients sign in with an app password, made in the account's settings",
            )
        }
        SignInRefused::Disabled(why) => {
            tracing::info!(%ip, "submission sign-in of an account that may not sign in");
            Reply::new(535, "5.7.1", why)
        }
        SignInRefused::TooManyAttempts(t) => Reply::new(
            454,
            "4.7.0",
            format!(
                "too many failed authentications; try again in {} seconds",
                t.retry_after
            ),
        ),
        SignInRefused::Unavailable => Reply::new(454, "4.7.0", "temporary authentication failure"),
    })
}

/// End of DATA on the submission port: queue the message.
async fn submit(
    outbound: &Outbound,
    account: &tenants::Account,
    tx: &Transaction,
    data: Vec<u8>,
    too_big: bool,
    config: &SmtpConfig,
) -> Reply {
    if too_big {
        return Reply::new(
            552,
            "5.3.4",
            format!(
                "message size exceeds the limit of {} bytes",
                config.max_message_size
            ),
        );
    }
    let draft = Draft {
        account: account.clone(),
        recipients: tx.addresses.clone(),
        message: data,
        require_encryption: false,
    };
    match outbound.submit(draft).await {
        Ok(submitted) => Reply::new(250, "2.0.0", format!("queued as {}", submitted.message_id)),
        Err(refusal) => refusal.smtp_reply(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use smtp_proto::Request;

    #[test]
    fn only_crlf_ends_a_line_of_data() {
        assert!(!super::bare_newline(b"hello\r\n"));
        assert!(!super::bare_newline(b".\r\n"));
        assert!(super::bare_newline(b".\n"));
        assert!(super::bare_newline(b"body\n"));
        assert!(super::bare_newline(b"a\rb\r\n"));
        assert!(super::bare_newline(b"end\r\r\n"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        /// The command parser never panics, whatever a client sends.
        #[test]
        fn command_parsing_never_panics(line in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Request::parse(&mut line.iter());
        }

        #[test]
        fn plausible_commands_never_panic(verb in "(MAIL FROM:|RCPT TO:|EHLO |BDAT |DATA|STARTTLS|AUTH )", rest in "\\PC{0,200}") {
            let line = format!("{verb}{rest}\r\n");
            let _ = Request::parse(&mut line.as_bytes().iter());
        }

        /// MIME ingestion and OpenPGP detection never panic on arbitrary bytes.
        #[test]
        fn mime_ingestion_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..4000)) {
            if let Some(message) = mail_parser::MessageParser::default().parse(&raw) {
                let _ = crate::inbound::openpgp_protection(&message);
                let _ = message.subject();
                let _ = message.from();
            }
        }

        #[test]
        fn mime_like_ingestion_never_panics(
            headers in proptest::collection::vec("(Content-Type|From|Subject|Content-Transfer-Encoding): \\PC{0,60}", 0..6),
            body in "\\PC{0,400}",
        ) {
            let raw = format!("{}\r\n\r\n{body}", headers.join("\r\n"));
            if let Some(message) = mail_parser::MessageParser::default().parse(raw.as_bytes()) {
                let _ = crate::inbound::openpgp_protection(&message);
            }
        }
    }
}
