//! The ManageSieve server (RFC 5804): how mail clients (Thunderbird's and
//! Roundcube's filter editors, `sieve-connect`) list, upload, check,
//! activate, rename and delete an account's Sieve scripts. The scripts are
//! the store's ([`tenants::store::SieveOwner::Account`]); whether one
//! compiles, and with which extensions, is [`crate::scripts::Engine`]'s.
//!
//! The dialogue: the server greets with its capabilities and `OK`; each
//! command is a line of an atom (its name, any case) and arguments, each a
//! string or a number. A string is quoted (`"..."`, with `\"` and `\\` as
//! the only escapes) or a literal, `{N+}` CRLF and N bytes; a client's
//! `{N}` is taken the same way, without a continuation (ManageSieve has
//! none). Answers end with `OK`, `NO` or `BYE`, an optional response code
//! in parentheses and a human-readable string; a string the server sends
//! is quoted when it can be and a literal (`{N}` CRLF and N bytes) when it
//! cannot (line breaks, more than 1024 bytes).
//!
//! Signing in is SASL PLAIN only, through [`tenants::login`] like IMAP's
//! (app passwords, counted failures), and only over TLS, or in clear from
//! loopback. `STARTTLS` (no implicit TLS) throws away whatever the client
//! sent in clear after the command, and the capabilities are sent again
//! over TLS (RFC 5804 §2.2).
//!
//! Limits: a command line (literals excluded) is at most 8 KiB, and a
//! connection that sends a longer one is closed, since it can no longer be
//! read in step. Literals are at most a script and 1 KiB in all (8 KiB
//! before sign-in); a larger one is skipped, up to 1 MiB, and refused with
//! `NO (QUOTA/MAXSIZE)`, and past that the connection is closed. A client
//! has 60 seconds (`login_timeout`) from connecting to sign in, then may
//! stay silent 30 minutes (`idle_timeout`) between commands; 20 bad
//! commands in a row end the connection. Connections are capped in all
//! and per client address. A signed-in session ends as soon as its
//! account, organisation or app password loses the right to sign in.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use secrecy::SecretString;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::connections::Connections;
use crate::inbound::Inbound;
use crate::scripts;
use tenants::login::{LoginGuard, SignInRefused};
use tenants::store::{MAX_SIEVE_SCRIPT_BYTES, MAX_SIEVE_SCRIPTS, SieveOwner, check_script_name};
use tenants::{Account, Store};

/// Longest command line, literals excluded.
const MAX_LINE: usize = 8 * 1024;
/// Largest literals of one command, in all, once signed in: a whole script
/// and its command's other strings.
const MAX_LITERAL: usize = MAX_SIEVE_SCRIPT_BYTES + 1024;
/// Largest literals of one command before sign-in (a SASL response).
const PRE_AUTH_LITERAL: usize = 8 * 1024;
/// Bytes of too-large literals read and dropped to stay in step with the
/// client; past this the connection is closed instead.
const MAX_SKIPPED: u64 = 1024 * 1024;
/// Longest string sent quoted (RFC 5804 §4); longer ones go as literals.
const MAX_QUOTED: usize = 1024;
/// Bad commands in a row before the connection is closed.
const MAX_ERRORS: usize = 20;
/// How often a signed-in session checks that its account may go on.
const RECHECK: Duration = Duration::from_secs(5);
/// How long writing one answer may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(120);

/// Names and limits of the ManageSieve service.
#[derive(Clone, Debug)]
pub struct ManageSieveConfig {
    /// The name the greeting gives.
    pub hostname: String,
    /// How long a client has, from connecting, to sign in.
    pub login_timeout: Duration,
    /// How long a signed-in client may stay silent between commands.
    pub idle_timeout: Duration,
    /// Connections the listener holds at once, from all clients.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

impl Default for ManageSieveConfig {
    fn default() -> Self {
        ManageSieveConfig {
            hostname: "mail.localhost".into(),
            login_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30 * 60),
            max_connections: 200,
            max_connections_per_ip: 10,
        }
    }
}

/// Accepts ManageSieve connections and runs one session each.
#[derive(Clone)]
pub struct ManageSieveServer {
    shared: Arc<Shared>,
}

struct Shared {
    config: ManageSieveConfig,
    inbound: Arc<Inbound>,
    guard: Arc<LoginGuard>,
    engine: Arc<scripts::Engine>,
    tls: Option<TlsAcceptor>,
    connections: Arc<Connections>,
}

impl ManageSieveServer {
    /// A server whose STARTTLS uses `tls`; without it, only loopback
    /// clients may sign in (in clear).
    pub fn new(
        config: ManageSieveConfig,
        inbound: Arc<Inbound>,
        guard: Arc<LoginGuard>,
        engine: Arc<scripts::Engine>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> ManageSieveServer {
        ManageSieveServer {
            shared: Arc::new(Shared {
                connections: Connections::new(
                    config.max_connections,
                    config.max_connections_per_ip,
                ),
                config,
                inbound,
                guard,
                engine,
                tls: tls.map(TlsAcceptor::from),
            }),
        }
    }

    /// Serves `listener` until `shutdown` resolves. Open sessions are told
    /// BYE and given a few seconds.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let (stop, _) = watch::channel(false);
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
                        let instance = b"BYE (TRYLATER) \"too many connections, try again later\"\r\n";
                        let address = b"BYE (TRYLATER) \"too many connections from your address, try later\"\r\n";
                        let Some(slot) = shared.connections.admit_or_tell(&mut stream, peer.ip(), instance, address).await else {
                            return;
                        };
                        let _ = stream.set_nodelay(true);
                        run(stream, peer, &shared, stopping).await;
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
    /// connected in clear without STARTTLS on offer (tests drive the
    /// command path with it).
    pub async fn session_over<S>(&self, stream: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let (_stop, stopping) = watch::channel(false);
        let transport = Transport {
            secure: false,
            can_starttls: false,
        };
        let deadline = Instant::now() + self.shared.config.login_timeout;
        dialogue(stream, peer, &self.shared, transport, deadline, stopping).await;
    }
}

/// A TCP connection from accept to close, through STARTTLS if asked.
async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    stopping: watch::Receiver<bool>,
) {
    let login_deadline = Instant::now() + shared.config.login_timeout;
    let clear = Transport {
        secure: false,
        can_starttls: shared.tls.is_some(),
    };
    let Ending::StartTls(stream) = dialogue(
        stream,
        peer,
        shared,
        clear,
        login_deadline,
        stopping.clone(),
    )
    .await
    else {
        return;
    };
    let Some(acceptor) = shared.tls.clone() else {
        return;
    };
    match tokio::time::timeout_at(login_deadline, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let secure = Transport {
                secure: true,
                can_starttls: false,
            };
            dialogue(stream, peer, shared, secure, login_deadline, stopping).await;
        }
        _ => tracing::info!(client = %peer.ip(), "ManageSieve TLS handshake failed"),
    }
}

/// How the connection is protected.
#[derive(Clone, Copy)]
struct Transport {
    secure: bool,
    can_starttls: bool,
}

/// How a dialogue ended.
enum Ending<S> {
    Closed,
    /// The client asked for TLS: the bare stream, to run the handshake on.
    StartTls(S),
}

/// The client went away, or was silent too long.
#[derive(Debug)]
struct Gone;

// ---------------------------------------------------------------------
// The wire

/// What one read of a command gave.
#[derive(Debug)]
enum Frame {
    /// A whole command, its final line break included, literals inlined
    /// after the line that announced them.
    Command(Vec<u8>),
    /// A line longer than [`MAX_LINE`]: the dialogue is out of step.
    TooLong,
    /// Literals past the limit, read and dropped; `length` is the first
    /// one too many.
    LiteralTooLarge { length: u64 },
    /// Literals too large even to skip.
    Flood,
}

/// A connection's reading side and the answers waiting to be written.
struct Conn<S> {
    reader: BufReader<S>,
    out: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(stream: S) -> Conn<S> {
        Conn {
            reader: BufReader::new(stream),
            out: Vec::with_capacity(4096),
        }
    }

    /// The bare stream; bytes read ahead and not used are dropped (after
    /// STARTTLS, nothing the client sent in clear may count).
    fn into_inner(self) -> S {
        self.reader.into_inner()
    }

    fn write(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    async fn flush(&mut self) -> Result<(), Gone> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let stream = self.reader.get_mut();
        let written = tokio::time::timeout(WRITE_TIMEOUT, async {
            stream.write_all(&out).await?;
            stream.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            _ => Err(Gone),
        }
    }

    /// A whole command (its lines and the literals between them), all of
    /// it read before `deadline`.
    async fn read_command(&mut self, max_literal: usize, deadline: Instant) -> Result<Frame, Gone> {
        let read = async {
            let mut command = Vec::new();
            let mut line_bytes = 0usize;
            let mut literal_bytes = 0u64;
            let mut skipped = 0u64;
            let mut too_large = None;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let max = MAX_LINE.saturating_sub(line_bytes).max(1);
                let (line, complete) = crate::lines::read_bounded_line(&mut self.reader, max, left)
                    .await
                    .ok_or(Gone)?;
                if !complete {
                    return Ok(Frame::TooLong);
                }
                line_bytes += line.len();
                let literal = literal_at_end(&line);
                if too_large.is_none() {
                    command.extend_from_slice(&line);
                }
                let Some(length) = literal else {
                    return Ok(match too_large {
                        Some(length) => Frame::LiteralTooLarge { length },
                        None => Frame::Command(command),
                    });
                };
                literal_bytes = literal_bytes.saturating_add(length);
                if too_large.is_none() && literal_bytes > max_literal as u64 {
                    too_large = Some(length);
                    command = Vec::new();
                }
                if too_large.is_some() {
                    // Read and dropped, so that the next command is read in step.
                    skipped = skipped.saturating_add(length);
                    if skipped > MAX_SKIPPED {
                        return Ok(Frame::Flood);
                    }
                    let mut sink = tokio::io::sink();
                    let n = tokio::io::copy(&mut (&mut self.reader).take(length), &mut sink)
                        .await
                        .map_err(|_| Gone)?;
                    if n != length {
                        return Err(Gone);
                    }
                } else {
                    // Grown as the bytes come, not reserved on the client's word.
                    let n = (&mut self.reader)
                        .take(length)
                        .read_to_end(&mut command)
                        .await
                        .map_err(|_| Gone)?;
                    if n as u64 != length {
                        return Err(Gone);
                    }
                }
            }
        };
        tokio::time::timeout_at(deadline, read)
            .await
            .unwrap_or(Err(Gone))
    }
}

/// The length of the literal announced at the end of a line, `{N+}` or
/// `{N}`, if the line ends with one.
fn literal_at_end(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let spec = &inner[open + 1..];
    let digits = spec.strip_suffix(b"+").unwrap_or(spec);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// One element of a command.
#[derive(Debug, PartialEq, Eq)]
enum Token {
    /// A bare word: a command name, a number, `ACTIVE`.
    Atom(String),
    /// A quoted string or a literal, unescaped.
    Str(Vec<u8>),
}

/// Splits a command (as [`Conn::read_command`] gives it: literals inlined,
/// the last line break included) into its elements.
fn tokenize(command: &[u8]) -> Result<Vec<Token>, String> {
    let body = command
        .strip_suffix(b"\r\n")
        .or_else(|| command.strip_suffix(b"\n"))
        .ok_or("a command ends with CRLF")?;
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < body.len() {
        if body[i] == b' ' {
            i += 1;
            continue;
        }
        if !tokens.is_empty() && body[i - 1] != b' ' {
            return Err("arguments are separated by spaces".into());
        }
        match body[i] {
            b'"' => {
                let mut s = Vec::new();
                i += 1;
                loop {
                    match body.get(i) {
                        None => return Err("a quoted string is not closed".into()),
                        Some(b'"') => break,
                        Some(b'\\') => match body.get(i + 1) {
                            Some(&c @ (b'"' | b'\\')) => {
                                s.push(c);
                                i += 1;
                            }
                            _ => {
                                return Err(
                                    "in a quoted string, `\\` may only escape `\"` or `\\`".into(),
                                );
                            }
                        },
                        Some(b'\r' | b'\n' | 0) => {
                            return Err(
                                "a quoted string may not hold line breaks or NUL: send a literal"
                                    .into(),
                            );
                        }
                        Some(&c) => s.push(c),
                    }
                    i += 1;
                }
                i += 1;
                tokens.push(Token::Str(s));
            }
            b'{' => {
                let close = body[i..]
                    .iter()
                    .position(|&b| b == b'}')
                    .map(|p| i + p)
                    .ok_or("a literal is `{N+}` and a line break")?;
                let spec = &body[i + 1..close];
                let digits = spec.strip_suffix(b"+").unwrap_or(spec);
                let length: usize = std::str::from_utf8(digits)
                    .ok()
                    .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|d| d.parse().ok())
                    .ok_or("a literal's length is a number")?;
                let rest = &body[close + 1..];
                let start = if rest.starts_with(b"\r\n") {
                    close + 3
                } else if rest.starts_with(b"\n") {
                    close + 2
                } else {
                    return Err("a literal's length is followed by a line break".into());
                };
                let end = start
                    .checked_add(length)
                    .filter(|&end| end <= body.len())
                    .ok_or("a literal is shorter than announced")?;
                tokens.push(Token::Str(body[start..end].to_vec()));
                i = end;
            }
            _ => {
                let end = body[i..]
                    .iter()
                    .position(|&b| b == b' ')
                    .map_or(body.len(), |p| i + p);
                let word = &body[i..end];
                if !word
                    .iter()
                    .all(|&b| b.is_ascii_graphic() && !b"\"{}\\".contains(&b))
                {
                    return Err("unexpected characters: strings are quoted".into());
                }
                tokens.push(Token::Atom(String::from_utf8_lossy(word).into_owned()));
                i = end;
            }
        }
    }
    Ok(tokens)
}

/// A command, its arguments checked.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Authenticate {
        mechanism: String,
        /// The initial response, still in base64.
        initial: Option<Vec<u8>>,
    },
    StartTls,
    Logout,
    Capability,
    /// With the tag to echo, if any.
    Noop(Option<Vec<u8>>),
    HaveSpace {
        name: String,
        size: u64,
    },
    PutScript {
        name: String,
        script: Vec<u8>,
    },
    CheckScript(Vec<u8>),
    ListScripts,
    /// An empty name deactivates.
    SetActive(String),
    GetScript(String),
    DeleteScript(String),
    RenameScript {
        from: String,
        to: String,
    },
}

impl Command {
    fn parse(command: &[u8]) -> Result<Command, String> {
        let mut tokens = tokenize(command)?.into_iter();
        let Some(Token::Atom(name)) = tokens.next() else {
            return Err("a command starts with its name".into());
        };
        let name = name.to_ascii_uppercase();
        let args: Vec<Token> = tokens.collect();
        let arity = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "{name} takes {n} argument{}",
                    if n == 1 { "" } else { "s" }
                ))
            }
        };
        let string = |i: usize| match &args[i] {
            Token::Str(s) => Ok(s.clone()),
            Token::Atom(_) => Err(format!("{name}'s arguments are quoted strings or literals")),
        };
        let text = |i: usize| {
            String::from_utf8(string(i)?).map_err(|_| "script names are UTF-8".to_owned())
        };
        Ok(match name.as_str() {
            "AUTHENTICATE" => {
                if args.is_empty() || args.len() > 2 {
                    return Err("AUTHENTICATE takes a mechanism and an optional response".into());
                }
                // Written quoted by the RFC, but some clients send it bare.
                let mechanism = match &args[0] {
                    Token::Atom(a) => a.clone(),
                    Token::Str(s) => String::from_utf8_lossy(s).into_owned(),
                };
                let initial = if args.len() == 2 {
                    Some(string(1)?)
                } else {
                    None
                };
                Command::Authenticate { mechanism, initial }
            }
            "STARTTLS" => arity(0).map(|()| Command::StartTls)?,
            "LOGOUT" => arity(0).map(|()| Command::Logout)?,
            "CAPABILITY" => arity(0).map(|()| Command::Capability)?,
            "NOOP" => match args.len() {
                0 => Command::Noop(None),
                1 => Command::Noop(Some(string(0)?)),
                _ => return Err("NOOP takes an optional tag".into()),
            },
            "HAVESPACE" => {
                arity(2)?;
                let size = match &args[1] {
                    Token::Atom(n) if n.bytes().all(|b| b.is_ascii_digit()) => n
                        .parse::<u32>()
                        .map_err(|_| "a size is a number below 2^32".to_owned())?,
                    _ => return Err("HAVESPACE takes a script name and a size in bytes".into()),
                };
                Command::HaveSpace {
                    name: text(0)?,
                    size: u64::from(size),
                }
            }
            "PUTSCRIPT" => {
                arity(2)?;
                Command::PutScript {
                    name: text(0)?,
                    script: string(1)?,
                }
            }
            "CHECKSCRIPT" => arity(1)
                .and_then(|()| string(0))
                .map(Command::CheckScript)?,
            "LISTSCRIPTS" => arity(0).map(|()| Command::ListScripts)?,
            "SETACTIVE" => arity(1).and_then(|()| text(0)).map(Command::SetActive)?,
            "GETSCRIPT" => arity(1).and_then(|()| text(0)).map(Command::GetScript)?,
            "DELETESCRIPT" => arity(1).and_then(|()| text(0)).map(Command::DeleteScript)?,
            "RENAMESCRIPT" => {
                arity(2)?;
                Command::RenameScript {
                    from: text(0)?,
                    to: text(1)?,
                }
            }
            _ => {
                let shown: String = name
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .take(32)
                    .collect();
                return Err(format!("unknown command `{shown}`"));
            }
        })
    }
}

/// Appends `s` as a string: quoted when it can be, else a literal.
fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    let quotable = s.len() <= MAX_QUOTED
        && !s.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0))
        && std::str::from_utf8(s).is_ok();
    if quotable {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        put_literal(out, s);
    }
}

/// Appends `s` as a literal, `{N}` CRLF and the bytes.
fn put_literal(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// One response line: `OK`, `NO` or `BYE`, a response code in parentheses
/// (already rendered, none when empty) and a human-readable string.
fn render(status: &str, code: &[u8], text: &str) -> Vec<u8> {
    let mut out = status.as_bytes().to_vec();
    if !code.is_empty() {
        out.extend_from_slice(b" (");
        out.extend_from_slice(code);
        out.push(b')');
    }
    if !text.is_empty() {
        out.push(b' ');
        put_string(&mut out, text.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The identity and password of a SASL PLAIN response (RFC 4616), still in
/// base64: `authzid NUL authcid NUL password`, where the authorisation
/// identity is empty or the same as the authentication one.
fn plain_credentials(encoded: &[u8]) -> Result<(String, SecretString), &'static str> {
    let message = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| "the PLAIN response is not base64")?;
    let mut parts = message.split(|&b| b == 0);
    let (Some(authz), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("PLAIN expects authzid NUL authcid NUL password");
    };
    if user.is_empty() || password.is_empty() {
        return Err("PLAIN expects authzid NUL authcid NUL password");
    }
    let user = std::str::from_utf8(user).map_err(|_| "the PLAIN identity is not UTF-8")?;
    if !authz.is_empty() && authz != user.as_bytes() {
        return Err("signing in as another user is not supported");
    }
    let password = std::str::from_utf8(password).map_err(|_| "the PLAIN password is not UTF-8")?;
    Ok((user.to_owned(), SecretString::from(password.to_owned())))
}

// ---------------------------------------------------------------------
// The session

/// How a command ended.
enum Done {
    /// A response code (rendered, possibly empty) and a sentence.
    Ok(Vec<u8>, String),
    /// Understood but not done: a response code (possibly empty) and why.
    No(&'static str, String),
    /// Not understood, or not now: counted towards [`MAX_ERRORS`].
    Bad(String),
    /// The command wrote its own answer.
    Sent,
}

impl Done {
    fn ok(text: &str) -> Done {
        Done::Ok(Vec::new(), text.to_owned())
    }
}

enum Flow {
    Continue,
    Logout,
    StartTls,
}

/// What ended the wait for the next command.
enum Woken {
    Frame(Result<Frame, Gone>),
    Stopping,
    Revoked,
}

struct Session<'a, S> {
    conn: Conn<S>,
    peer: SocketAddr,
    shared: &'a Shared,
    store: &'a Store,
    transport: Transport,
    /// When a client that has not signed in is sent away.
    login_deadline: Instant,
    account: Option<Account>,
    /// The app password the session signed in with, if it did with one:
    /// revoking it ends the session.
    app_password: Option<uuid::Uuid>,
    /// Changes of who may act: a session whose account lost the right ends
    /// at once, even while it waits for the client.
    access: broadcast::Receiver<tenants::AccessChange>,
    stopping: watch::Receiver<bool>,
    errors: usize,
    /// When the account was last found still allowed in.
    checked_at: std::time::Instant,
}

/// Runs the dialogue on `stream`, greeting first, until LOGOUT, STARTTLS,
/// an error or shutdown.
async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    shared: &Shared,
    transport: Transport,
    login_deadline: Instant,
    stopping: watch::Receiver<bool>,
) -> Ending<S> {
    let store = shared.inbound.store();
    let mut s = Session {
        conn: Conn::new(stream),
        peer,
        shared,
        store,
        transport,
        login_deadline,
        account: None,
        app_password: None,
        access: store.access_changes(),
        stopping,
        errors: 0,
        checked_at: std::time::Instant::now(),
    };
    s.capabilities();
    let greeting = format!("{} Caliop ManageSieve ready", shared.config.hostname);
    s.conn.write(&render("OK", b"", &greeting));
    if s.conn.flush().await.is_err() {
        return Ending::Closed;
    }
    match s.serve().await {
        Ok(Flow::StartTls) => Ending::StartTls(s.conn.into_inner()),
        _ => Ending::Closed,
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
    /// As IMAP has it: passwords only over TLS, or in clear from loopback.
    fn may_login(&self) -> bool {
        self.transport.secure || self.peer.ip().is_loopback()
    }

    /// Writes the capability lines (RFC 5804 §1.7), without the final OK.
    fn capabilities(&mut self) {
        let sasl = if self.may_login() { "PLAIN" } else { "" };
        let redirects = self.shared.engine.limits().redirects.to_string();
        let mut caps: Vec<(&str, String)> = vec![
            ("IMPLEMENTATION", "Caliop".into()),
            ("SASL", sasl.into()),
            ("SIEVE", scripts::Engine::extensions()),
        ];
        if self.account.is_none() && self.transport.can_starttls {
            caps.push(("STARTTLS", String::new()));
        }
        caps.push(("MAXREDIRECTS", redirects));
        if let Some(account) = &self.account {
            caps.push(("OWNER", account.address.to_string()));
        }
        caps.push(("VERSION", "1.0".into()));
        let mut out = Vec::new();
        for (name, value) in caps {
            put_string(&mut out, name.as_bytes());
            if name != "STARTTLS" {
                out.push(b' ');
                put_string(&mut out, value.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
        self.conn.write(&out);
    }

    async fn serve(&mut self) -> Result<Flow, Gone> {
        loop {
            let (deadline, max_literal) = if self.account.is_some() {
                (
                    Instant::now() + self.shared.config.idle_timeout,
                    MAX_LITERAL,
                )
            } else {
                (self.login_deadline, PRE_AUTH_LITERAL)
            };
            let mut stopping = self.stopping.clone();
            let woken = {
                let read = self.conn.read_command(max_literal, deadline);
                tokio::pin!(read);
                loop {
                    tokio::select! {
                        frame = &mut read => break Woken::Frame(frame),
                        () = stopped(&mut stopping) => break Woken::Stopping,
                        change = self.access.recv(), if self.account.is_some() => {
                            let account = self.account.as_ref().expect("signed in");
                            if tenants::login::session_concerned(account, self.app_password, change)
                                && !self.store.mail_session_may_go_on(account, self.app_password).await
                            {
                                break Woken::Revoked;
                            }
                        }
                    }
                }
            };
            let frame = match woken {
                Woken::Frame(Ok(frame)) => frame,
                Woken::Frame(Err(Gone)) => {
                    let why = if self.account.is_some() {
                        "idle for too long"
                    } else {
                        "signing in took too long"
                    };
                    self.bye("", why).await;
                    return Err(Gone);
                }
                Woken::Stopping => {
                    self.bye(
                        "TRYLATER",
                        "the server is shutting down, reconnect in a moment",
                    )
                    .await;
                    return Ok(Flow::Logout);
                }
                Woken::Revoked => {
                    self.revoked();
                    let _ = self.conn.flush().await;
                    return Ok(Flow::Logout);
                }
            };
            let flow = match frame {
                Frame::Command(bytes) => self.command(&bytes).await?,
                Frame::TooLong => {
                    let why = format!("command line longer than {MAX_LINE} bytes");
                    self.bye("", &why).await;
                    return Ok(Flow::Logout);
                }
                Frame::Flood => {
                    self.bye("QUOTA/MAXSIZE", "literals far larger than allowed")
                        .await;
                    return Ok(Flow::Logout);
                }
                Frame::LiteralTooLarge { length } => {
                    let text = if self.account.is_some() {
                        format!(
                            "a literal of {length} bytes: a script is at most {MAX_SIEVE_SCRIPT_BYTES} bytes"
                        )
                    } else {
                        format!("a literal of {length} bytes: sign in first")
                    };
                    self.conn.write(&render("NO", b"QUOTA/MAXSIZE", &text));
                    Flow::Continue
                }
            };
            if self.errors >= MAX_ERRORS {
                self.bye("", "too many bad commands").await;
                return Ok(Flow::Logout);
            }
            self.conn.flush().await?;
            match flow {
                Flow::Continue => {}
                other => return Ok(other),
            }
        }
    }

    /// Says BYE and why; the connection closes after.
    async fn bye(&mut self, code: &str, text: &str) {
        self.conn.write(&render("BYE", code.as_bytes(), text));
        let _ = self.conn.flush().await;
    }

    async fn command(&mut self, bytes: &[u8]) -> Result<Flow, Gone> {
        let command = match Command::parse(bytes) {
            Ok(command) => command,
            Err(why) => {
                self.answer(Done::Bad(why));
                return Ok(Flow::Continue);
            }
        };
        if !self.still_allowed().await {
            return Ok(Flow::Logout);
        }
        let (done, flow) = self.dispatch(command).await?;
        self.answer(done);
        Ok(flow)
    }

    fn answer(&mut self, done: Done) {
        let line = match done {
            Done::Ok(code, text) => {
                self.errors = 0;
                render("OK", &code, &text)
            }
            Done::No(code, text) => render("NO", code.as_bytes(), &text),
            Done::Bad(text) => {
                self.errors += 1;
                render("NO", b"", &text)
            }
            Done::Sent => return,
        };
        self.conn.write(&line);
    }

    async fn dispatch(&mut self, command: Command) -> Result<(Done, Flow), Gone> {
        let authenticated = self.account.is_some();
        let done = match command {
            Command::Capability => {
                self.capabilities();
                Done::ok("")
            }
            Command::Noop(None) => Done::ok("done"),
            Command::Noop(Some(tag)) => {
                let mut code = b"TAG ".to_vec();
                put_string(&mut code, &tag);
                Done::Ok(code, "done".into())
            }
            Command::Logout => return Ok((Done::ok("logging out"), Flow::Logout)),
            Command::StartTls if !authenticated => {
                if !self.transport.can_starttls {
                    Done::Bad(if self.transport.secure {
                        "TLS is already on".into()
                    } else {
                        "STARTTLS is not offered here".into()
                    })
                } else {
                    self.conn
                        .write(&render("OK", b"", "begin TLS negotiation now"));
                    self.conn.flush().await?;
                    self.errors = 0;
                    return Ok((Done::Sent, Flow::StartTls));
                }
            }
            Command::Authenticate { mechanism, initial } if !authenticated => {
                self.authenticate(&mechanism, initial).await?
            }
            Command::StartTls | Command::Authenticate { .. } => {
                Done::Bad("already authenticated".into())
            }
            _ if !authenticated => Done::Bad("sign in first: AUTHENTICATE".into()),

            Command::HaveSpace { name, size } => self.have_space(&name, size).await,
            Command::PutScript { name, script } => self.put_script(&name, &script).await,
            Command::CheckScript(script) => match self.compile(&script) {
                Ok(_) => Done::ok("the script is valid"),
                Err(done) => done,
            },
            Command::ListScripts => self.list_scripts().await,
            Command::SetActive(name) => self.set_active(&name).await,
            Command::GetScript(name) => self.get_script(&name).await,
            Command::DeleteScript(name) => self.delete_script(&name).await,
            Command::RenameScript { from, to } => self.rename_script(&from, &to).await,
        };
        Ok((done, Flow::Continue))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
    // -----------------------------------------------------------------
    // Signing in

    async fn authenticate(
        &mut self,
        mechanism: &str,
        initial: Option<Vec<u8>>,
    ) -> Result<Done, Gone> {
        if !self.may_login() {
            return Ok(Done::No(
                "ENCRYPT-NEEDED",
                "STARTTLS first: passwords are not sent in clear".into(),
            ));
        }
        if !mechanism.eq_ignore_ascii_case("PLAIN") {
            return Ok(Done::No("", "only the PLAIN mechanism is offered".into()));
        }
        let encoded = match initial {
            Some(encoded) => encoded,
            None => match self.sasl_response().await? {
                Some(encoded) => encoded,
                None => return Ok(Done::No("", "authentication cancelled".into())),
            },
        };
        match plain_credentials(&encoded) {
            Ok((user, password)) => Ok(self.sign_in(&user, password).await),
            Err(why) => Ok(Done::No("", why.into())),
        }
    }

    /// Sends the empty challenge of PLAIN and reads the client's response,
    /// a string; `None` when the client cancels (`"*"`) or sends anything
    /// else.
    async fn sasl_response(&mut self) -> Result<Option<Vec<u8>>, Gone> {
        self.conn.write(b"\"\"\r\n");
        self.conn.flush().await?;
        let frame = self
            .conn
            .read_command(PRE_AUTH_LITERAL, self.login_deadline)
            .await?;
        let bytes = match frame {
            Frame::Command(bytes) => bytes,
            Frame::LiteralTooLarge { .. } => return Ok(None),
            Frame::TooLong | Frame::Flood => {
                self.bye("", "the SASL response is far too long").await;
                return Err(Gone);
            }
        };
        Ok(match tokenize(&bytes) {
            Ok(tokens) => match <[Token; 1]>::try_from(tokens) {
                Ok([Token::Str(s)]) if s != b"*" => Some(s),
                _ => None,
            },
            Err(_) => None,
        })
    }

    async fn sign_in(&mut self, name: &str, password: SecretString) -> Done {
        let ip = self.peer.ip();
        match tenants::login::sign_in_with(
            self.store,
            &self.shared.guard,
            ip,
            name,
            password,
            tenants::login::Door::Mail,
        )
        .await
        {
            Ok((account, _)) if !self.organisation_active(&account).await => Done::No(
                "",
                "the organisation is suspended; its administrators can say more".into(),
            ),
            Ok((account, app_password)) => {
                tracing::info!(account = %account.id, client = %ip, "ManageSieve sign-in");
                self.account = Some(account);
                self.app_password = app_password;
                self.checked_at = std::time::Instant::now();
                Done::ok("signed in")
            }
            Err(SignInRefused::Invalid) => {
                tracing::info!(client = %ip, "failed ManageSieve sign-in");
                Done::No(
                    "",
                    "invalid address or password; mail clients sign in with an app password, \
                     made in the account's settings"
                        .into(),
                )
            }
            Err(SignInRefused::Disabled(why)) => {
                tracing::info!(client = %ip, "ManageSieve sign-in of an account that may not sign in");
                Done::No("", why)
            }
            Err(SignInRefused::TooManyAttempts(t)) => Done::No(
                "TRYLATER",
                format!(
                    "too many failed sign-ins; try again in {} seconds",
                    t.retry_after
                ),
            ),
            Err(SignInRefused::Unavailable) => {
                Done::No("TRYLATER", "sign-in is unavailable, try again later".into())
            }
        }
    }

    /// Like the API and IMAP, ManageSieve serves nobody of a suspended or
    /// closed organisation.
    async fn organisation_active(&self, account: &Account) -> bool {
        matches!(self.store.active_tenant(account.tenant_id).await, Ok(Ok(_)))
    }

    /// Whether the signed-in account may go on (checked every [`RECHECK`]):
    /// a suspended account or organisation, or a new password, ends the
    /// session.
    async fn still_allowed(&mut self) -> bool {
        let Some(account) = &self.account else {
            return true;
        };
        if self.checked_at.elapsed() < RECHECK {
            return true;
        }
        let allowed = self
            .store
            .mail_session_may_go_on(account, self.app_password)
            .await;
        if allowed {
            self.checked_at = std::time::Instant::now();
        } else {
            self.revoked();
        }
        allowed
    }

    /// Ends the signed-in part of the session, saying why.
    fn revoked(&mut self) {
        if let Some(account) = self.account.take() {
            tracing::info!(account = %account.id, "ManageSieve session ended: the account may no longer sign in");
        }
        self.conn.write(&render(
            "BYE",
            b"",
            "the account's access changed (role, status, password or app password): sign in again",
        ));
    }

    // -----------------------------------------------------------------
    // Scripts

    fn account(&self) -> &Account {
        self.account
            .as_ref()
            .expect("commands past sign-in have an account")
    }

    fn owner(&self) -> SieveOwner {
        let account = self.account();
        SieveOwner::Account(account.id.0, account.tenant_id)
    }

    /// Who the audit log says acted: the account, as the API writes it.
    fn actor(&self) -> String {
        tenants::Subject::Account(self.account().id).to_token_sub()
    }

    /// The script's text if it compiles with the extensions allowed here.
    fn compile(&self, script: &[u8]) -> Result<String, Done> {
        if script.len() > MAX_SIEVE_SCRIPT_BYTES {
            return Err(too_big());
        }
        let text = std::str::from_utf8(script)
            .map_err(|_| Done::No("", "a script is UTF-8 text".into()))?;
        self.shared
            .engine
            .check(text)
            .map_err(|e| Done::No("", e.to_string()))?;
        Ok(text.to_owned())
    }

    async fn have_space(&mut self, name: &str, size: u64) -> Done {
        if let Err(e) = check_script_name(name) {
            return Done::No("", e.to_string());
        }
        if size > MAX_SIEVE_SCRIPT_BYTES as u64 {
            return too_big();
        }
        let scripts = match self.store.sieve_scripts(self.owner()).await {
            Ok(scripts) => scripts,
            Err(e) => return refusal(e, ""),
        };
        if !scripts.iter().any(|s| s.name == name) && scripts.len() as i64 >= MAX_SIEVE_SCRIPTS {
            return too_many();
        }
        Done::ok("there is room for it")
    }

    async fn put_script(&mut self, name: &str, script: &[u8]) -> Done {
        if let Err(e) = check_script_name(name) {
            return Done::No("", e.to_string());
        }
        let text = match self.compile(script) {
            Ok(text) => text,
            Err(done) => return done,
        };
        let (actor, owner) = (self.actor(), self.owner());
        match self
            .store
            .put_sieve_script(&actor, owner, name, &text)
            .await
        {
            Ok(_) => Done::ok("stored"),
            // The size was checked above: the limit left is the count.
            Err(tenants::Error::LimitExceeded(_)) => too_many(),
            Err(e) => refusal(e, ""),
        }
    }

    async fn list_scripts(&mut self) -> Done {
        let scripts = match self.store.sieve_scripts(self.owner()).await {
            Ok(scripts) => scripts,
            Err(e) => return refusal(e, ""),
        };
        let mut out = Vec::new();
        for script in &scripts {
            put_string(&mut out, script.name.as_bytes());
            if script.active {
                out.extend_from_slice(b" ACTIVE");
            }
            out.extend_from_slice(b"\r\n");
        }
        self.conn.write(&out);
        Done::ok("")
    }

    async fn set_active(&mut self, name: &str) -> Done {
        let (actor, owner) = (self.actor(), self.owner());
        let name = (!name.is_empty()).then_some(name);
        match self.store.activate_sieve(&actor, owner, name).await {
            Ok(()) if name.is_some() => Done::ok("the script is active"),
            Ok(()) => Done::ok("no script is active"),
            Err(e) => refusal(e, ""),
        }
    }

    async fn get_script(&mut self, name: &str) -> Done {
        match self.store.sieve_script(self.owner(), name).await {
            Ok(Some(script)) => {
                let mut out = Vec::with_capacity(script.content.len() + 16);
                put_literal(&mut out, script.content.as_bytes());
                out.extend_from_slice(b"\r\n");
                self.conn.write(&out);
                Done::ok("")
            }
            Ok(None) => no_such_script(),
            Err(e) => refusal(e, ""),
        }
    }

    async fn delete_script(&mut self, name: &str) -> Done {
        let (actor, owner) = (self.actor(), self.owner());
        match self.store.delete_sieve_script(&actor, owner, name).await {
            Ok(()) => Done::ok("deleted"),
            Err(e) => refusal(e, "ACTIVE"),
        }
    }

    async fn rename_script(&mut self, from: &str, to: &str) -> Done {
        let (actor, owner) = (self.actor(), self.owner());
        match self
            .store
            .rename_sieve_script(&actor, owner, from, to)
            .await
        {
            Ok(()) => Done::ok("renamed"),
            Err(e) => refusal(e, "ALREADYEXISTS"),
        }
    }
}

fn too_big() -> Done {
    Done::No(
        "QUOTA/MAXSIZE",
        format!("a script is at most {MAX_SIEVE_SCRIPT_BYTES} bytes"),
    )
}

fn too_many() -> Done {
    Done::No(
        "QUOTA/MAXSCRIPTS",
        format!("at most {MAX_SIEVE_SCRIPTS} scripts are kept; delete one first"),
    )
}

fn no_such_script() -> Done {
    Done::No("NONEXISTENT", "there is no script by that name".into())
}

/// The answer to a store error; `conflict` is the response code of a
/// clash (an active script, a taken name). Failures of the store itself
/// are logged and answered TRYLATER.
fn refusal(e: tenants::Error, conflict: &'static str) -> Done {
    match e {
        tenants::Error::NotFound(_) => no_such_script(),
        tenants::Error::Conflict(why) => Done::No(conflict, why),
        tenants::Error::LimitExceeded(why) => Done::No("QUOTA", why),
        tenants::Error::Invalid(why) => Done::No("", why),
        e => {
            tracing::warn!(error = %e, "ManageSieve: the store failed");
            Done::No(
                "TRYLATER",
                "the scripts cannot be reached now, try again later".into(),
            )
        }
    }
}

async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use secrecy::ExposeSecret;

    fn s(text: &str) -> Token {
        Token::Str(text.as_bytes().to_vec())
    }

    fn atom(text: &str) -> Token {
        Token::Atom(text.into())
    }

    #[test]
    fn quoted_strings_unescape_only_quotes_and_backslashes() {
        let tokens = tokenize(b"PUTSCRIPT \"a \\\"b\\\" \\\\c\" \"\"\r\n").unwrap();
        assert_eq!(tokens, vec![atom("PUTSCRIPT"), s("a \"b\" \\c"), s("")]);
        assert!(
            tokenize(b"GETSCRIPT \"a\\nb\"\r\n").is_err(),
            "\\n is no escape"
        );
        assert!(tokenize(b"GETSCRIPT \"open\r\n").is_err());
        assert!(
            tokenize(b"GETSCRIPT \"a\"\"b\"\r\n").is_err(),
            "no space between"
        );
        assert!(tokenize(b"GETSCRIPT \"a\"").is_err(), "no line break");
    }

    #[test]
    fn literals_take_exactly_their_length_line_breaks_included() {
        let command = b"PUTSCRIPT {3+}\r\nabc {7+}\r\nkeep;\r\n\r\n";
        assert_eq!(
            tokenize(command).unwrap(),
            vec![atom("PUTSCRIPT"), s("abc"), s("keep;\r\n")]
        );
        // A synchronising literal from a client is read the same way.
        assert_eq!(
            tokenize(b"CHECKSCRIPT {2}\r\nhi\r\n").unwrap(),
            vec![atom("CHECKSCRIPT"), s("hi")]
        );
        assert!(tokenize(b"CHECKSCRIPT {9+}\r\nshort\r\n").is_err());
        assert!(tokenize(b"CHECKSCRIPT {x+}\r\nshort\r\n").is_err());
        assert!(tokenize(b"CHECKSCRIPT {2+}hi\r\n").is_err());
    }

    #[test]
    fn literals_are_announced_at_the_end_of_lines_only() {
        assert_eq!(literal_at_end(b"PUTSCRIPT \"a\" {310+}\r\n"), Some(310));
        assert_eq!(literal_at_end(b"CHECKSCRIPT {5}\r\n"), Some(5));
        assert_eq!(literal_at_end(b"GETSCRIPT \"{5}\"\r\n"), None);
        assert_eq!(literal_at_end(b"NOOP\r\n"), None);
        assert_eq!(literal_at_end(b"X {99999999999}\r\n"), Some(99_999_999_999));
        assert_eq!(literal_at_end(b"X {99999999999999999999}\r\n"), None);
    }

    #[test]
    fn commands_are_case_insensitive_and_checked() {
        assert_eq!(Command::parse(b"listScripts\r\n"), Ok(Command::ListScripts));
        assert_eq!(
            Command::parse(b"havespace \"v\" 1024\r\n"),
            Ok(Command::HaveSpace {
                name: "v".into(),
                size: 1024
            })
        );
        assert_eq!(
            Command::parse(b"SETACTIVE \"\"\r\n"),
            Ok(Command::SetActive(String::new()))
        );
        assert_eq!(
            Command::parse(b"AUTHENTICATE \"PLAIN\" \"AGEAYg==\"\r\n"),
            Ok(Command::Authenticate {
                mechanism: "PLAIN".into(),
                initial: Some(b"AGEAYg==".to_vec())
            })
        );
        assert_eq!(
            Command::parse(b"NOOP \"STARTTLS-SYNC-42\"\r\n"),
            Ok(Command::Noop(Some(b"STARTTLS-SYNC-42".to_vec())))
        );
        assert_eq!(
            Command::parse(b"RENAMESCRIPT \"a\" {1+}\r\nb\r\n"),
            Ok(Command::RenameScript {
                from: "a".into(),
                to: "b".into()
            })
        );
        assert!(
            Command::parse(b"GETSCRIPT vacation\r\n").is_err(),
            "names are strings"
        );
        assert!(Command::parse(b"HAVESPACE \"v\" \"10\"\r\n").is_err());
        assert!(Command::parse(b"HAVESPACE \"v\" 99999999999\r\n").is_err());
        assert!(Command::parse(b"LISTSCRIPTS \"extra\"\r\n").is_err());
        assert!(
            Command::parse(b"GETSCRIPT \"\xff\"\r\n").is_err(),
            "names are UTF-8"
        );
        let unknown = Command::parse(b"UNAUTHENTICATE\r\n").unwrap_err();
        assert!(unknown.contains("UNAUTHENTICATE"), "{unknown}");
        assert!(Command::parse(b"\"PUTSCRIPT\"\r\n").is_err());
        assert!(Command::parse(b"\r\n").is_err());
    }

    #[test]
    fn plain_gives_the_identity_and_password() {
        let encode = |raw: &[u8]| base64::engine::general_purpose::STANDARD.encode(raw);
        let (user, password) =
            plain_credentials(encode(b"\0ann@example.com\0s3cret pass").as_bytes()).unwrap();
        assert_eq!(user, "ann@example.com");
        assert_eq!(password.expose_secret(), "s3cret pass");
        let (user, _) =
            plain_credentials(encode(b"ann@example.com\0ann@example.com\0pw").as_bytes()).unwrap();
        assert_eq!(user, "ann@example.com");
        assert_eq!(
            plain_credentials(encode(b"bob@example.com\0ann@example.com\0pw").as_bytes()).err(),
            Some("signing in as another user is not supported")
        );
        for bad in [
            &b"ann@example.com\0pw"[..],
            b"\0ann@example.com\0pw\0more",
            b"\0\0pw",
            b"\0ann@example.com\0",
            b"",
        ] {
            assert!(
                plain_credentials(encode(bad).as_bytes()).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            plain_credentials(b"not base64!").err(),
            Some("the PLAIN response is not base64")
        );
    }

    #[test]
    fn strings_go_out_quoted_or_as_literals() {
        let out = |text: &[u8]| {
            let mut out = Vec::new();
            put_string(&mut out, text);
            String::from_utf8_lossy(&out).into_owned()
        };
        assert_eq!(out(b"vacation"), "\"vacation\"");
        assert_eq!(out(b"say \"hi\" \\o/"), "\"say \\\"hi\\\" \\\\o/\"");
        assert_eq!(out(b"two\r\nlines"), "{10}\r\ntwo\r\nlines");
        let long = "x".repeat(MAX_QUOTED + 1);
        assert_eq!(
            out(long.as_bytes()),
            format!("{{{}}}\r\n{long}", long.len())
        );
        assert_eq!(
            String::from_utf8(render(
                "NO",
                b"NONEXISTENT",
                "there is no script by that name"
            ))
            .unwrap(),
            "NO (NONEXISTENT) \"there is no script by that name\"\r\n"
        );
        assert_eq!(
            String::from_utf8(render("NO", b"", "line 2, column 1: bad\r\nthing")).unwrap(),
            "NO {28}\r\nline 2, column 1: bad\r\nthing\r\n"
        );
        assert_eq!(String::from_utf8(render("OK", b"", "")).unwrap(), "OK\r\n");
    }

    proptest! {
        #[test]
        fn any_string_sent_reads_back_the_same(bytes in prop::collection::vec(any::<u8>(), 0..1100)) {
            let mut command = b"CHECKSCRIPT ".to_vec();
            put_string(&mut command, &bytes);
            command.extend_from_slice(b"\r\n");
            prop_assert_eq!(tokenize(&command).unwrap(), vec![atom("CHECKSCRIPT"), Token::Str(bytes)]);
        }
    }

    // -----------------------------------------------------------------
    // Whole dialogues, on a fresh SQLite store

    use tenants::store::NewDomain;
    use tenants::{AccountRole, DomainName, EmailAddress, Level, Limits, NewAccount, NewTenant};
    use tokio::io::{AsyncBufReadExt, DuplexStream, ReadHalf, WriteHalf};

    const ADDRESS: &str = "ann@sieve.test";
    const PASSWORD: &str = "correct horse battery";

    /// A server on a fresh store holding one account that may sign in.
    async fn server(dir: &std::path::Path) -> ManageSieveServer {
        let url = format!("sqlite://{}", dir.join("store.db").display());
        let store = Store::connect(&url, 4).await.unwrap();
        store.migrate().await.unwrap();
        let tenant = store
            .create_tenant(
                "operator",
                NewTenant {
                    name: "Sieve test".into(),
                    kind: tenants::TenantKind::Enterprise,
                    parent_id: None,
                    limits: Limits {
                        max_accounts: 10,
                        max_domains: 10,
                        storage_quota_bytes: 1 << 30,
                    },
                    policy: tenants::Policy::default(),
                },
            )
            .await
            .unwrap();
        let domain = store
            .create_domain(
                "operator",
                NewDomain {
                    tenant_id: tenant.id,
                    name: DomainName::parse("sieve.test").unwrap(),
                    verification_token: "token".into(),
                    dkim_keys: Vec::new(),
                },
            )
            .await
            .unwrap();
        let domain = store
            .mark_domain_verified("operator", &domain, "dns")
            .await
            .unwrap();
        store
            .create_account(
                "operator",
                NewAccount {
                    tenant_id: tenant.id,
                    domain_id: domain.id,
                    address: EmailAddress::parse(ADDRESS).unwrap(),
                    display_name: "Ann".into(),
                    role: AccountRole::User,
                    level: Level::Standard,
                    password_hash: tenants::password::hash(PASSWORD).unwrap(),
                    fingerprint: "fp".into(),
                    public_key: "public".into(),
                    secret_key: "secret".into(),
                },
            )
            .await
            .unwrap();
        let inbound = Inbound::new(
            store,
            vault::at_rest::MasterKey::ephemeral().unwrap(),
            None,
            "mail.test".into(),
        );
        let guard = LoginGuard::new(Duration::from_secs(60), 20, 100)
            .allowing_account_passwords_on_mail(true);
        ManageSieveServer::new(
            ManageSieveConfig::default(),
            Arc::new(inbound),
            Arc::new(guard),
            Arc::new(scripts::Engine::new(
                "mail.test",
                scripts::Limits::default(),
            )),
            None,
        )
    }

    /// The client's end of a session.
    struct Client {
        reader: BufReader<ReadHalf<DuplexStream>>,
        writer: WriteHalf<DuplexStream>,
    }

    impl Client {
        fn start(server: &ManageSieveServer, peer: &str) -> Client {
            let (client, end) = tokio::io::duplex(1 << 20);
            let server = server.clone();
            let peer: SocketAddr = peer.parse().unwrap();
            tokio::spawn(async move { server.session_over(end, peer).await });
            let (reader, writer) = tokio::io::split(client);
            Client {
                reader: BufReader::new(reader),
                writer,
            }
        }

        async fn send(&mut self, bytes: &str) {
            self.writer.write_all(bytes.as_bytes()).await.unwrap();
        }

        /// Lines up to and including the one that starts with OK, NO or
        /// BYE, literals read whole.
        async fn response(&mut self) -> String {
            let mut all = Vec::new();
            loop {
                let mut logical = Vec::new();
                loop {
                    let mut line = Vec::new();
                    let n = self.reader.read_until(b'\n', &mut line).await.unwrap();
                    assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&all));
                    logical.extend_from_slice(&line);
                    let Some(length) = literal_at_end(&line) else {
                        break;
                    };
                    let mut literal = vec![0; length as usize];
                    self.reader.read_exact(&mut literal).await.unwrap();
                    logical.extend_from_slice(&literal);
                }
                all.extend_from_slice(&logical);
                if [&b"OK"[..], b"NO", b"BYE"].iter().any(|s| {
                    logical.starts_with(s)
                        && matches!(logical.get(s.len()), Some(b' ' | b'\r' | b'\n'))
                }) {
                    return String::from_utf8(all).unwrap();
                }
            }
        }

        async fn command(&mut self, command: &str) -> String {
            self.send(command).await;
            self.response().await
        }

        async fn closed(&mut self) -> bool {
            let mut rest = Vec::new();
            matches!(
                tokio::time::timeout(Duration::from_secs(5), self.reader.read_to_end(&mut rest))
                    .await,
                Ok(Ok(0))
            )
        }
    }

    fn plain(user: &str, password: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
    }

    fn literal(text: &str) -> String {
        format!("{{{}+}}\r\n{text}", text.len())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_clear_from_afar_no_password_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let server = server(dir.path()).await;
        let mut c = Client::start(&server, "192.0.2.7:50000");
        let greeting = c.response().await;
        assert!(
            greeting.starts_with("\"IMPLEMENTATION\" \"Caliop\"\r\n"),
            "{greeting}"
        );
        assert!(greeting.contains("\r\n\"SASL\" \"\"\r\n"), "{greeting}");
        assert!(greeting.contains("\r\n\"SIEVE\" \"fileinto "), "{greeting}");
        assert!(
            greeting.contains("\r\n\"MAXREDIRECTS\" \"3\"\r\n"),
            "{greeting}"
        );
        assert!(
            greeting.contains("\r\n\"VERSION\" \"1.0\"\r\nOK "),
            "{greeting}"
        );
        assert!(!greeting.contains("STARTTLS") && !greeting.contains("OWNER"));
        let refused = c
            .command(&format!(
                "AUTHENTICATE \"PLAIN\" \"{}\"\r\n",
                plain(ADDRESS, PASSWORD)
            ))
            .await;
        assert!(refused.starts_with("NO (ENCRYPT-NEEDED) "), "{refused}");
        assert!(
            c.command("LISTSCRIPTS\r\n")
                .await
                .starts_with("NO \"sign in first")
        );
        assert!(c.command("STARTTLS\r\n").await.starts_with("NO "));
        assert_eq!(
            c.command("noop \"sync-1\"\r\n").await,
            "OK (TAG \"sync-1\") \"done\"\r\n"
        );
        assert!(c.command("LOGOUT\r\n").await.starts_with("OK "));
        assert!(c.closed().await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scripts_are_managed_after_signing_in() {
        let dir = tempfile::tempdir().unwrap();
        let server = server(dir.path()).await;
        let mut c = Client::start(&server, "127.0.0.1:50000");
        assert!(c.response().await.contains("\"SASL\" \"PLAIN\""));

        let wrong = c
            .command(&format!(
                "AUTHENTICATE \"PLAIN\" \"{}\"\r\n",
                plain(ADDRESS, "nope")
            ))
            .await;
        assert!(
            wrong.starts_with("NO \"invalid address or password"),
            "{wrong}"
        );
        // The continuation form: an empty challenge, a literal back.
        c.send("Authenticate \"PLAIN\"\r\n").await;
        let mut challenge = String::new();
        c.reader.read_line(&mut challenge).await.unwrap();
        assert_eq!(challenge, "\"\"\r\n");
        let signed_in = c
            .command(&format!("{}\r\n", literal(&plain(ADDRESS, PASSWORD))))
            .await;
        assert!(signed_in.starts_with("OK "), "{signed_in}");
        let caps = c.command("CAPABILITY\r\n").await;
        assert!(
            caps.contains(&format!("\"OWNER\" \"{ADDRESS}\"\r\n")),
            "{caps}"
        );
        assert!(
            c.command("AUTHENTICATE \"PLAIN\"\r\n")
                .await
                .starts_with("NO \"already")
        );

        assert!(
            c.command("HAVESPACE \"filters\" 4000\r\n")
                .await
                .starts_with("OK")
        );
        let big = c.command("HAVESPACE \"filters\" 70000\r\n").await;
        assert!(big.starts_with("NO (QUOTA/MAXSIZE) "), "{big}");

        let broken = "require \"fileinto\";\r\nif header :contains \"subject\" {\r\n";
        let no = c
            .command(&format!("PUTSCRIPT \"filters\" {}\r\n", literal(broken)))
            .await;
        assert!(no.starts_with("NO ") && no.contains("line "), "{no}");
        let no = c
            .command(&format!("CHECKSCRIPT {}\r\n", literal(broken)))
            .await;
        assert!(no.starts_with("NO ") && no.contains("line "), "{no}");
        let foreign = c
            .command(&format!(
                "CHECKSCRIPT {}\r\n",
                literal("require \"editheader\";\r\n")
            ))
            .await;
        assert!(foreign.starts_with("NO "), "{foreign}");

        let script = "require \"fileinto\";\r\nif header :contains \"subject\" \"invoice\" {\r\n  fileinto \"Invoices\";\r\n}\r\n";
        assert!(
            c.command(&format!("CHECKSCRIPT {}\r\n", literal(script)))
                .await
                .starts_with("OK")
        );
        let put = c
            .command(&format!("PUTSCRIPT \"filters\" {}\r\n", literal(script)))
            .await;
        assert!(put.starts_with("OK"), "{put}");
        assert_eq!(c.command("LISTSCRIPTS\r\n").await, "\"filters\"\r\nOK\r\n");
        assert!(
            c.command("SETACTIVE \"filters\"\r\n")
                .await
                .starts_with("OK")
        );
        assert_eq!(
            c.command("LISTSCRIPTS\r\n").await,
            "\"filters\" ACTIVE\r\nOK\r\n"
        );
        assert_eq!(
            c.command("GETSCRIPT \"filters\"\r\n").await,
            format!("{{{}}}\r\n{script}\r\nOK\r\n", script.len())
        );
        let none = c.command("GETSCRIPT \"nope\"\r\n").await;
        assert!(none.starts_with("NO (NONEXISTENT) "), "{none}");
        let active = c.command("DELETESCRIPT \"filters\"\r\n").await;
        assert!(active.starts_with("NO (ACTIVE) "), "{active}");
        assert!(
            c.command(&format!("PUTSCRIPT \"spare\" {}\r\n", literal("keep;\r\n")))
                .await
                .starts_with("OK")
        );
        let taken = c.command("RENAMESCRIPT \"spare\" \"filters\"\r\n").await;
        assert!(taken.starts_with("NO (ALREADYEXISTS) "), "{taken}");
        assert!(
            c.command("RENAMESCRIPT \"spare\" \"other\"\r\n")
                .await
                .starts_with("OK")
        );
        assert!(
            c.command("RENAMESCRIPT \"spare\" \"again\"\r\n")
                .await
                .starts_with("NO (NONEXISTENT) ")
        );
        assert!(c.command("SETACTIVE \"\"\r\n").await.starts_with("OK"));
        assert!(
            c.command("DELETESCRIPT \"filters\"\r\n")
                .await
                .starts_with("OK")
        );
        assert_eq!(c.command("LISTSCRIPTS\r\n").await, "\"other\"\r\nOK\r\n");

        // A script past the limit is refused, and the dialogue stays in step.
        let huge = "#".repeat(MAX_LITERAL + 1);
        let too_big = c
            .command(&format!("PUTSCRIPT \"huge\" {}\r\n", literal(&huge)))
            .await;
        assert!(too_big.starts_with("NO (QUOTA/MAXSIZE) "), "{too_big}");
        assert!(c.command("NOOP\r\n").await.starts_with("OK"));

        for _ in 0..MAX_ERRORS - 1 {
            assert!(
                c.command("FROB\r\n")
                    .await
                    .starts_with("NO \"unknown command")
            );
        }
        let last = c.command("FROB\r\n").await;
        assert!(last.starts_with("NO "), "{last}");
        assert_eq!(c.response().await, "BYE \"too many bad commands\"\r\n");
        assert!(c.closed().await);
    }
}
