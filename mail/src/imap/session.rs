//! One IMAP connection: the states of RFC 3501 §3 (not authenticated,
//! authenticated, selected, logout), each command's handling, and the
//! untagged responses that keep the client's picture of the selected
//! mailbox true while other sessions, the API and the MX change it.
//!
//! Error policy: a command the parser refuses gets `BAD` with what was
//! wrong; a command that is understood but cannot be done gets `NO` with a
//! response code (RFC 5530) and a sentence; a store failure is logged and
//! answered `NO [UNAVAILABLE]`. Only a client that keeps sending garbage,
//! stays silent past the timeouts or goes away ends its session.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use chrono::Utc;
use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_types::auth::AuthMechanism;
use imap_types::command::{Command, CommandBody, FetchModifier, SelectParameter, StoreModifier};
use imap_types::fetch::{
    Macro, MacroOrMessageDataItemNames, MessageDataItemName, Part, Section as WireSection,
};
use imap_types::flag::{Flag as WireFlag, StoreResponse, StoreType};
use imap_types::mailbox::{ListMailbox, Mailbox as WireMailbox};
use imap_types::search::SearchKey;
use imap_types::sequence::SequenceSet;
use imap_types::status::StatusDataItemName;
use secrecy::SecretString;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::extended::{self, ListExtended, SearchReturn};
use super::message::{self, Section, SectionText};
use super::search::{self, Bounds, Candidate};
use super::view::{View, flag_list, uid_set};
use super::wire::{Conn, Frame, Gone, name_of, tag_of};
use super::{ImapConfig, utf7};
use crate::append::AppendRefused;
use crate::inbound::Inbound;
use tenants::login::{LoginGuard, SignInRefused};
use tenants::store::{FlagChange, FlagOp, NewMessage, StoredContent, ViewEntry};
use tenants::{Account, Flag, Folder, Level, Mailbox, MailboxId, MessageId, Store};

/// Messages read from the store in one query by FETCH and SEARCH.
const PREFETCH: usize = 100;

/// Largest literal before sign-in.
const PRE_AUTH_LITERAL: usize = 8 * 1024;

/// How the connection is protected, and whether the greeting is due.
#[derive(Clone, Copy)]
pub struct Transport {
    pub secure: bool,
    pub can_starttls: bool,
    pub greet: bool,
}

pub enum Ending<S> {
    Closed,
    StartTls(S),
}

/// A TCP connection from accept to close, with STARTTLS or implicit TLS.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    config: &ImapConfig,
    inbound: &Inbound,
    guard: &LoginGuard,
    tls: Option<TlsAcceptor>,
    implicit_tls: bool,
    stopping: tokio::sync::watch::Receiver<bool>,
) {
    let handshake = |acceptor: TlsAcceptor, stream: TcpStream| async move {
        match tokio::time::timeout(config.login_timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => Some(stream),
            _ => {
                tracing::info!(client = %peer.ip(), "IMAP TLS handshake failed");
                None
            }
        }
    };
    let secure = Transport {
        secure: true,
        can_starttls: false,
        greet: true,
    };
    if implicit_tls {
        let Some(acceptor) = tls else { return };
        if let Some(stream) = handshake(acceptor, stream).await {
            dialogue(stream, peer, config, inbound, guard, secure, stopping).await;
        }
        return;
    }
    let clear = Transport {
        secure: false,
        can_starttls: tls.is_some(),
        greet: true,
    };
    let Ending::StartTls(stream) = dialogue(
        stream,
        peer,
        config,
        inbound,
        guard,
        clear,
        stopping.clone(),
    )
    .await
    else {
        return;
    };
    let Some(acceptor) = tls else { return };
    if let Some(stream) = handshake(acceptor, stream).await {
        dialogue(
            stream,
            peer,
            config,
            inbound,
            guard,
            Transport {
                greet: false,
                ..secure
            },
            stopping,
        )
        .await;
    }
}

/// How a command ended.
enum Done {
    Ok(String),
    No(String),
    Bad(String),
    /// The command wrote its own tagged answer.
    Sent,
}

enum Flow {
    Continue,
    Logout,
    StartTls,
}

struct Session<'a, S> {
    conn: Conn<S>,
    peer: SocketAddr,
    config: &'a ImapConfig,
    inbound: &'a Inbound,
    store: &'a Store,
    guard: &'a LoginGuard,
    transport: Transport,
    account: Option<Account>,
    view: Option<View>,
    feed: tokio::sync::broadcast::Receiver<MailboxId>,
    /// Changes of who may act: a session whose account lost the right ends
    /// at once, even while it waits for the client.
    access: tokio::sync::broadcast::Receiver<tenants::AccessChange>,
    /// The app password the session signed in with, if it did with one:
    /// revoking it ends the session.
    app_password: Option<uuid::Uuid>,
    stopping: tokio::sync::watch::Receiver<bool>,
    /// The last message read, for clients that fetch its parts one by one.
    cached: Option<(MessageId, Arc<Vec<u8>>)>,
    /// Stored bytes read ahead, a batch at a time, by FETCH and SEARCH.
    prefetched: std::collections::HashMap<MessageId, StoredContent>,
    /// Stored summaries read ahead by a FETCH that they answer.
    summaries: std::collections::HashMap<MessageId, Vec<u8>>,
    errors: usize,
    /// When the account was last found still allowed in.
    checked_at: std::time::Instant,
    /// UIDs of the selected mailbox that are \Recent to this session.
    recent: std::collections::HashSet<i64>,
    /// Extensions the client turned on.
    enabled: Enabled,
    /// The result options of the SEARCH being run (ESEARCH, RFC 4731).
    search_return: Option<SearchReturn>,
    /// The saved search result `$` (SEARCHRES, RFC 5182), by UID: a
    /// message expunged since is left out where `$` is used.
    saved: Vec<i64>,
}

/// What ENABLE (or a command that implies it) turned on for the session.
#[derive(Clone, Copy, Default)]
struct Enabled {
    /// RFC 7162: MODSEQ in flag changes, HIGHESTMODSEQ.
    condstore: bool,
    /// RFC 7162: VANISHED instead of EXPUNGE, SELECT (QRESYNC ...).
    qresync: bool,
    /// RFC 9051: no \Recent, ESEARCH for every SEARCH, mailbox names
    /// in UTF-8, a LIST response in SELECT.
    rev2: bool,
}

/// Runs the dialogue on `stream` until LOGOUT, STARTTLS, an error or shutdown.
pub async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    config: &ImapConfig,
    inbound: &Inbound,
    guard: &LoginGuard,
    transport: Transport,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Ending<S> {
    let store = inbound.store();
    let mut s = Session {
        conn: Conn::new(stream),
        peer,
        config,
        inbound,
        store,
        guard,
        transport,
        account: None,
        view: None,
        feed: store.mailbox_changes_feed(),
        access: store.access_changes(),
        app_password: None,
        stopping,
        cached: None,
        prefetched: std::collections::HashMap::new(),
        summaries: std::collections::HashMap::new(),
        errors: 0,
        checked_at: std::time::Instant::now(),
        recent: std::collections::HashSet::new(),
        enabled: Enabled::default(),
        search_return: None,
        saved: Vec::new(),
    };
    if transport.greet {
        let greeting = format!(
            "* OK [CAPABILITY {}] {} Caliop IMAP ready",
            s.capabilities(),
            config.hostname
        );
        s.conn.line(&greeting);
        if s.conn.flush().await.is_err() {
            return Ending::Closed;
        }
    }
    match s.serve().await {
        Ok(Flow::StartTls) => Ending::StartTls(s.conn.into_inner()),
        _ => Ending::Closed,
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
    fn may_login(&self) -> bool {
        self.transport.secure || self.peer.ip().is_loopback()
    }

    /// IMAP4rev2 needs LITERAL-; LITERAL+ is its superset, and RFC 7888
    /// §4 forbids advertising both.
    fn capabilities(&self) -> String {
        let mut caps = String::from(
            "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ENABLE IDLE ID NAMESPACE UIDPLUS MOVE UNSELECT SPECIAL-USE CHILDREN QUOTA QUOTA=RES-STORAGE CONDSTORE QRESYNC STATUS=SIZE ESEARCH SEARCHRES LIST-EXTENDED LIST-STATUS BINARY",
        );
        if self.account.is_none() {
            if self.transport.can_starttls {
                caps.push_str(" STARTTLS");
            }
            if self.may_login() {
                caps.push_str(" AUTH=PLAIN AUTH=LOGIN");
            } else {
                caps.push_str(" LOGINDISABLED");
            }
        }
        caps
    }

    async fn serve(&mut self) -> Result<Flow, Gone> {
        loop {
            let timeout = if self.account.is_some() {
                self.config.autologout
            } else {
                self.config.login_timeout
            };
            // Before sign-in, literals carry names and passwords, not messages.
            let max_literal = if self.account.is_some() {
                self.config.max_literal
            } else {
                PRE_AUTH_LITERAL
            };
            let mut stopping = self.stopping.clone();
            let woken = {
                let read = self
                    .conn
                    .read_command(self.config.max_line, max_literal, timeout);
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
                Woken::Frame(frame) => frame,
                Woken::Stopping => {
                    self.conn
                        .line("* BYE the server is shutting down, reconnect in a moment");
                    let _ = self.conn.flush().await;
                    return Ok(Flow::Logout);
                }
                Woken::Revoked => {
                    self.revoked();
                    let _ = self.conn.flush().await;
                    return Ok(Flow::Logout);
                }
            };
            let frame = match frame {
                Ok(frame) => frame,
                Err(Gone) => {
                    if self.account.is_some() {
                        self.conn.line("* BYE autologout: idle for too long");
                        let _ = self.conn.flush().await;
                    }
                    return Err(Gone);
                }
            };
            let flow = match frame {
                Frame::TooLong(head) => {
                    let tag = tag_of(&head).unwrap_or_else(|| "*".into());
                    self.bad(
                        &tag,
                        &format!(
                            "[TOOBIG] command line longer than {} bytes",
                            self.config.max_line
                        ),
                    );
                    Flow::Continue
                }
                Frame::LiteralTooLarge { head, length } => {
                    let tag = tag_of(&head).unwrap_or_else(|| "*".into());
                    let text = format!(
                        "[TOOBIG] literal of {length} bytes; at most {max_literal} are accepted in all"
                    );
                    self.conn.line(&format!("{tag} NO {text}"));
                    Flow::Continue
                }
                Frame::Command(bytes) => self.command(&bytes).await?,
            };
            if self.errors >= self.config.max_errors {
                self.conn.line("* BYE too many bad commands");
                let _ = self.conn.flush().await;
                return Ok(Flow::Logout);
            }
            self.conn.flush().await?;
            match flow {
                Flow::Continue => {}
                other => return Ok(other),
            }
        }
    }

    fn bad(&mut self, tag: &str, text: &str) {
        self.errors += 1;
        self.conn.line(&format!("{tag} BAD {text}"));
    }

    async fn command(&mut self, bytes: &[u8]) -> Result<Flow, Gone> {
        // What the codec does not read yet: LIST-EXTENDED and SEARCH RETURN.
        self.search_return = None;
        let cut;
        let with_saved;
        let mut bytes = bytes;
        if self.account.is_some() {
            if let Some(parsed) = extended::list_extended(bytes) {
                let tag = tag_of(bytes).unwrap_or_else(|| "*".into());
                if !self.still_allowed().await {
                    return Ok(Flow::Logout);
                }
                let done = match parsed {
                    Ok(list) => self.list_extended(&list).await,
                    Err(text) => Done::Bad(text),
                };
                self.refresh(true).await?;
                self.finish(&tag, "LIST", done);
                return Ok(Flow::Continue);
            }
            match extended::search_return(bytes) {
                Some(Ok((options, rest))) => {
                    self.search_return = Some(options);
                    cut = rest;
                    bytes = &cut;
                }
                Some(Err(text)) => {
                    let tag = tag_of(bytes).unwrap_or_else(|| "*".into());
                    self.bad(&tag, &text);
                    return Ok(Flow::Continue);
                }
                None => {}
            }
            if self.view.is_some()
                && let Some(references) = extended::saved_result_references(bytes)
            {
                with_saved = self.with_saved_result(bytes, &references);
                bytes = &with_saved;
            }
        }
        let command = match CommandCodec::default().decode(bytes) {
            Ok((_, command)) => command,
            Err(_) => {
                // A SEARCH that fails empties `$` (RFC 5182 §2.1).
                if self.search_return.is_some_and(|r| r.save) {
                    self.saved.clear();
                }
                let tag = tag_of(bytes).unwrap_or_else(|| "*".into());
                let name = name_of(bytes);
                let text = if name.is_empty() {
                    "empty or unreadable command".to_owned()
                } else {
                    format!("syntax error in {name}: see RFC 3501 for its arguments")
                };
                self.bad(&tag, &text);
                return Ok(Flow::Continue);
            }
        };
        let tag = command.tag.inner().to_owned();
        let name = command.name();
        if !self.still_allowed().await {
            return Ok(Flow::Logout);
        }
        // EXPUNGE responses may not be sent while sequence numbers are in use (RFC 3501 §7.4.1).
        let may_expunge = !matches!(
            command.body,
            CommandBody::Fetch { uid: false, .. }
                | CommandBody::Store { uid: false, .. }
                | CommandBody::Search { uid: false, .. }
        );
        let (done, flow) = self.dispatch(&tag, command).await?;
        if self.search_return.is_some_and(|r| r.save) && !matches!(done, Done::Ok(_)) {
            self.saved.clear();
        }
        // Nothing untagged after LOGOUT's BYE (RFC 9051 §7.1.5).
        if !matches!(flow, Flow::Logout) {
            self.refresh(may_expunge).await?;
        }
        self.finish(&tag, name, done);
        Ok(flow)
    }

    /// The tagged answer of a command.
    fn finish(&mut self, tag: &str, name: &str, done: Done) {
        match done {
            Done::Ok(text) => {
                self.errors = 0;
                self.conn.line(&format!(
                    "{tag} OK {}",
                    if text.is_empty() {
                        format!("{name} completed")
                    } else {
                        text
                    }
                ));
            }
            Done::No(text) => self.conn.line(&format!("{tag} NO {text}")),
            Done::Bad(text) => self.bad(tag, &text),
            Done::Sent => {}
        }
    }

    async fn dispatch(&mut self, tag: &str, command: Command<'_>) -> Result<(Done, Flow), Gone> {
        let authenticated = self.account.is_some();
        let selected = self.view.is_some();
        let done = match command.body {
            CommandBody::Capability => {
                let caps = self.capabilities();
                self.conn.line(&format!("* CAPABILITY {caps}"));
                Done::Ok(String::new())
            }
            CommandBody::Noop => Done::Ok(String::new()),
            CommandBody::Logout => {
                self.conn.line("* BYE logging out");
                return Ok((Done::Ok(String::new()), Flow::Logout));
            }
            CommandBody::Id { .. } => {
                self.conn.line(&format!(
                    "* ID (\"name\" \"Caliop\" \"version\" \"{}\")",
                    env!("CARGO_PKG_VERSION")
                ));
                Done::Ok(String::new())
            }
            CommandBody::StartTLS if !authenticated => {
                if !self.transport.can_starttls {
                    Done::Bad(if self.transport.secure {
                        "TLS is already on".into()
                    } else {
                        "STARTTLS is not offered here".into()
                    })
                } else {
                    self.conn
                        .line(&format!("{tag} OK begin TLS negotiation now"));
                    self.conn.flush().await?;
                    return Ok((Done::Sent, Flow::StartTls));
                }
            }
            CommandBody::Login { username, password } if !authenticated => {
                let name = String::from_utf8_lossy(username.as_ref()).into_owned();
                let password = SecretString::from(
                    String::from_utf8_lossy(password.declassify().as_ref()).into_owned(),
                );
                self.sign_in(&name, password).await
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } if !authenticated => {
                let initial = initial_response.map(|r| r.declassify().to_vec());
                self.authenticate(&mechanism, initial).await?
            }
            CommandBody::StartTLS
            | CommandBody::Login { .. }
            | CommandBody::Authenticate { .. } => Done::Bad("already authenticated".into()),
            _ if !authenticated => Done::Bad("sign in first: LOGIN or AUTHENTICATE".into()),

            CommandBody::Enable { capabilities } => {
                let mut turned_on = Vec::new();
                for capability in capabilities.as_ref() {
                    let name = capability.to_string().to_ascii_uppercase();
                    match name.as_str() {
                        "CONDSTORE" if !self.enabled.condstore => {
                            self.enable_condstore();
                            turned_on.push("CONDSTORE");
                        }
                        "QRESYNC" if !self.enabled.qresync => {
                            if !self.enabled.condstore {
                                self.enable_condstore();
                            }
                            self.enabled.qresync = true;
                            if let Some(view) = &mut self.view {
                                view.qresync = true;
                            }
                            turned_on.push("QRESYNC");
                        }
                        "IMAP4REV2" if !self.enabled.rev2 => {
                            self.enabled.rev2 = true;
                            self.recent.clear();
                            turned_on.push("IMAP4rev2");
                        }
                        _ => {}
                    }
                }
                let mut line = String::from("* ENABLED");
                for name in turned_on {
                    line.push(' ');
                    line.push_str(name);
                }
                self.conn.line(&line);
                Done::Ok(String::new())
            }
            CommandBody::Namespace => {
                self.conn.line("* NAMESPACE ((\"\" \"/\")) NIL NIL");
                Done::Ok(String::new())
            }
            CommandBody::Select {
                mailbox,
                parameters,
            } => self.select(&mailbox, false, &parameters).await,
            CommandBody::Examine {
                mailbox,
                parameters,
            } => self.select(&mailbox, true, &parameters).await,
            CommandBody::Create { mailbox } => self.create(&mailbox).await,
            CommandBody::Delete { mailbox } => self.delete(&mailbox).await,
            CommandBody::Rename { from, to } => self.rename(&from, &to).await,
            CommandBody::Subscribe { mailbox } => self.subscribe(&mailbox, true).await,
            CommandBody::Unsubscribe { mailbox } => self.subscribe(&mailbox, false).await,
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => self.list(&reference, &mailbox_wildcard, false).await,
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => self.list(&reference, &mailbox_wildcard, true).await,
            CommandBody::Status {
                mailbox,
                item_names,
            } => self.status(&mailbox, &item_names).await,
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => {
                let data = match &message {
                    imap_types::extensions::binary::LiteralOrLiteral8::Literal(l) => {
                        l.as_ref().to_vec()
                    }
                    imap_types::extensions::binary::LiteralOrLiteral8::Literal8(l) => {
                        l.data.to_vec()
                    }
                };
                let date = date.map(|d| d.as_ref().with_timezone(&Utc));
                self.append(&mailbox, &flags, date, data).await
            }
            CommandBody::GetQuotaRoot { mailbox } => self.quota(Some(&mailbox)).await,
            CommandBody::GetQuota { root } => {
                if root.as_ref().is_empty() {
                    self.quota(None).await
                } else {
                    Done::No("[NONEXISTENT] the only quota root is \"\"".into())
                }
            }
            CommandBody::SetQuota { .. } => {
                Done::No("[NOPERM] quotas are set by the organisation's administrators".into())
            }
            CommandBody::Idle => return self.idle(tag).await.map(|flow| (Done::Sent, flow)),

            _ if !selected => Done::Bad("select a mailbox first".into()),

            CommandBody::Check => Done::Ok(String::new()),
            CommandBody::Close => {
                if let Some(view) = &self.view
                    && !view.read_only
                {
                    let id = view.mailbox.id;
                    if let Err(done) = self.expunge_in(id, None).await {
                        return Ok((done, Flow::Continue));
                    }
                }
                self.view = None;
                self.saved.clear();
                Done::Ok(String::new())
            }
            CommandBody::Unselect => {
                self.view = None;
                self.saved.clear();
                Done::Ok(String::new())
            }
            CommandBody::Expunge => self.expunge(None).await,
            CommandBody::ExpungeUid { sequence_set } => self.expunge(Some(&sequence_set)).await,
            CommandBody::Search { criteria, uid, .. } => {
                self.search(tag, criteria.as_ref(), uid).await?
            }
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } => {
                self.fetch(&sequence_set, macro_or_item_names, uid, &modifiers)
                    .await?
            }
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => {
                let unchanged_since = modifiers
                    .iter()
                    .map(|StoreModifier::UnchangedSince(n)| *n)
                    .next();
                self.store_flags(&sequence_set, kind, response, &flags, uid, unchanged_since)
                    .await
            }
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(&sequence_set, &mailbox, uid).await,
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => self.move_to(&sequence_set, &mailbox, uid).await,
            _ => Done::Bad("this server does not implement that command".into()),
        };
        Ok((done, Flow::Continue))
    }

    // -----------------------------------------------------------------
    // Signing in

    async fn sign_in(&mut self, name: &str, password: SecretString) -> Done {
        if !self.may_login() {
            return Done::No(
                "[PRIVACYREQUIRED] STARTTLS first: passwords are not sent in clear".into(),
            );
        }
        match tenants::login::sign_in_with(
            self.store,
            self.guard,
            self.peer.ip(),
            name,
            password,
            tenants::login::Door::Mail,
        )
        .await
        {
            Ok((account, _)) if !self.organisation_active(&account).await => Done::No(
                "[CONTACTADMIN] the organisation is suspended; its administrators can say more"
                    .into(),
            ),
            Ok((account, app_password)) => {
                tracing::info!(account = %account.id, client = %self.peer.ip(), "IMAP sign-in");
                self.account = Some(account);
                self.app_password = app_password;
                Done::Ok(format!("[CAPABILITY {}] signed in", self.capabilities()))
            }
            Err(SignInRefused::Invalid) => {
                tracing::info!(client = %self.peer.ip(), "failed IMAP sign-in");
                Done::No(
                    "[AUTHENTICATIONFAILED] invalid address or password; mail clients sign in \
                     with an app password, made in the account's settings"
                        .into(),
                )
            }
            Err(SignInRefused::Disabled(why)) => {
                tracing::info!(client = %self.peer.ip(), "IMAP sign-in of an account that may not sign in");
                Done::No(format!("[AUTHORIZATIONFAILED] {why}"))
            }
            Err(SignInRefused::TooManyAttempts(t)) => Done::No(format!(
                "[UNAVAILABLE] too many failed sign-ins; try again in {} seconds",
                t.retry_after
            )),
            Err(SignInRefused::Unavailable) => {
                Done::No("[UNAVAILABLE] sign-in is unavailable, try again later".into())
            }
        }
    }

    async fn challenge(&mut self, prompt: &str) -> Result<Option<Vec<u8>>, Gone> {
        self.conn.line(&format!("+ {prompt}"));
        self.conn.flush().await?;
        let Some(line) = self
            .conn
            .read_line(self.config.max_line, self.config.login_timeout)
            .await?
        else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text == "*" {
            return Ok(None);
        }
        Ok(base64::engine::general_purpose::STANDARD.decode(text).ok())
    }

    async fn authenticate(
        &mut self,
        mechanism: &AuthMechanism<'_>,
        initial: Option<Vec<u8>>,
    ) -> Result<Done, Gone> {
        if !self.may_login() {
            return Ok(Done::No(
                "[PRIVACYREQUIRED] STARTTLS first: passwords are not sent in clear".into(),
            ));
        }
        let cancelled = || Done::Bad("authentication cancelled or not base64".into());
        match mechanism {
            AuthMechanism::Plain => {
                let data = match initial {
                    Some(data) => data,
                    None => match self.challenge("").await? {
                        Some(data) => data,
                        None => return Ok(cancelled()),
                    },
                };
                let mut parts = data.split(|&b| b == 0);
                let (Some(authz), Some(user), Some(password), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Ok(Done::Bad(
                        "PLAIN expects authzid NUL authcid NUL password".into(),
                    ));
                };
                if !authz.is_empty() && authz != user {
                    return Ok(Done::No(
                        "[AUTHORIZATIONFAILED] signing in as another user is not supported".into(),
                    ));
                }
                let user = String::from_utf8_lossy(user).into_owned();
                let password = SecretString::from(String::from_utf8_lossy(password).into_owned());
                Ok(self.sign_in(&user, password).await)
            }
            AuthMechanism::Login => {
                let Some(user) = self.challenge("VXNlcm5hbWU6").await? else {
                    return Ok(cancelled());
                };
                let Some(password) = self.challenge("UGFzc3dvcmQ6").await? else {
                    return Ok(cancelled());
                };
                let user = String::from_utf8_lossy(&user).into_owned();
                let password = SecretString::from(String::from_utf8_lossy(&password).into_owned());
                Ok(self.sign_in(&user, password).await)
            }
            other => Ok(Done::No(format!(
                "[CANNOT] {other} is not offered: use PLAIN or LOGIN"
            ))),
        }
    }

    /// Whether the signed-in account may go on (checked every `recheck`): a
    /// suspended account or organisation, or a new password, ends the session.
    async fn still_allowed(&mut self) -> bool {
        let Some(account) = &self.account else {
            return true;
        };
        if self.checked_at.elapsed() < self.config.recheck {
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
            tracing::info!(account = %account.id, "IMAP session ended: the account may no longer sign in");
        }
        self.conn
            .line("* BYE the account's access changed (role, status, password or app password): sign in again");
        self.view = None;
    }

    /// Like the API, IMAP serves nobody of a suspended or closed organisation.
    async fn organisation_active(&self, account: &Account) -> bool {
        matches!(self.store.active_tenant(account.tenant_id).await, Ok(Ok(_)))
    }

    fn account(&self) -> &Account {
        self.account
            .as_ref()
            .expect("commands past sign-in have an account")
    }

    // -----------------------------------------------------------------
    // Mailboxes

    /// The UTF-8 name a client means: IMAP4rev1 clients write modified
    /// UTF-7, IMAP4rev2 ones UTF-8 (RFC 9051 §5.1).
    fn name_of(&self, mailbox: &WireMailbox<'_>) -> String {
        match mailbox {
            WireMailbox::Inbox => "INBOX".into(),
            WireMailbox::Other(other) => self.pattern_of(other.as_ref()),
        }
    }

    /// A name or pattern as the client wrote it, in UTF-8.
    fn pattern_of(&self, raw: &[u8]) -> String {
        let raw = String::from_utf8_lossy(raw).into_owned();
        if self.enabled.rev2 {
            return raw;
        }
        utf7::decode(&raw).unwrap_or(raw)
    }

    /// A mailbox name as the client reads it: modified UTF-7, or UTF-8
    /// once IMAP4rev2 is on.
    fn wire_name(&self, name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        if self.enabled.rev2 {
            message::string(&mut out, name.as_bytes());
        } else {
            message::string(&mut out, utf7::encode(name).as_bytes());
        }
        out
    }

    async fn find(&self, mailbox: &WireMailbox<'_>) -> Result<Mailbox, Done> {
        let name = self.name_of(mailbox);
        match self.store.mailbox_named(self.account().id, &name).await {
            Ok(Some(found)) => Ok(found),
            Ok(None) => Err(Done::No(format!("[NONEXISTENT] no mailbox named `{name}`"))),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn find_target(&self, mailbox: &WireMailbox<'_>) -> Result<Mailbox, Done> {
        self.find(mailbox).await.map_err(|done| match done {
            Done::No(text) if text.starts_with("[NONEXISTENT]") => {
                Done::No(text.replacen("[NONEXISTENT]", "[TRYCREATE]", 1))
            }
            other => other,
        })
    }

    /// Turns CONDSTORE on; a selected mailbox's HIGHESTMODSEQ is told at
    /// once (RFC 7162 §3.1).
    fn enable_condstore(&mut self) {
        if self.enabled.condstore {
            return;
        }
        self.enabled.condstore = true;
        if let Some(view) = &mut self.view {
            view.condstore = true;
            let line = format!("* OK [HIGHESTMODSEQ {}] modseqs on", view.modseq);
            self.conn.line(&line);
        }
    }

    async fn select(
        &mut self,
        mailbox: &WireMailbox<'_>,
        read_only: bool,
        parameters: &[SelectParameter],
    ) -> Done {
        // The open mailbox closes first (RFC 7162 §3.2.11, RFC 9051 §7.1).
        if self.view.take().is_some() {
            self.conn
                .line("* OK [CLOSED] the previous mailbox is closed");
        }
        self.recent.clear();
        self.saved.clear();
        let mut resync = None;
        for parameter in parameters {
            match parameter {
                SelectParameter::CondStore => self.enable_condstore(),
                SelectParameter::QResync {
                    uid_validity,
                    mod_sequence_value,
                    known_uids,
                    ..
                } => {
                    if !self.enabled.qresync {
                        return Done::Bad(
                            "QRESYNC is off: ENABLE QRESYNC first (RFC 7162 §3.2.5)".into(),
                        );
                    }
                    resync = Some((
                        i64::from(uid_validity.get()),
                        mod_sequence_value.get(),
                        known_uids.clone(),
                    ));
                }
            }
        }
        let found = match self.find(mailbox).await {
            Ok(found) => found,
            Err(done) => return done,
        };
        let (mailbox, entries) = match self.store.mailbox_view(found.id).await {
            Ok(Some(view)) => view,
            Ok(None) => return Done::No("[NONEXISTENT] the mailbox was just deleted".into()),
            Err(e) => return unavailable(e),
        };
        while self.feed.try_recv().is_ok() {}
        let mut view = View::new(mailbox, entries, read_only);
        view.condstore = self.enabled.condstore;
        view.qresync = self.enabled.qresync;
        // EXAMINE looks at what is recent without taking it (RFC 3501 §6.3.2);
        // IMAP4rev2 has no \Recent, and leaves it to IMAP4rev1 sessions.
        let max = i64::from(view.max_uid());
        let above = if self.enabled.rev2 {
            Ok(i64::MAX)
        } else if read_only {
            self.store
                .recent_since(view.mailbox.id)
                .await
                .map(|(r, _)| r)
        } else {
            self.store.claim_recent(view.mailbox.id, max).await
        };
        let above = match above {
            Ok(above) => above,
            Err(e) => return unavailable(e),
        };
        self.recent = view
            .entries
            .iter()
            .filter(|e| e.uid > above)
            .map(|e| e.uid)
            .collect();
        self.conn.line(&view.flags_line());
        self.conn.line(&view.permanent_line());
        self.conn.line(&format!("* {} EXISTS", view.exists()));
        if self.enabled.rev2 {
            // RFC 9051 §6.3.2: the mailbox's LIST response, its name as stored.
            let line = match self.list_line(&view.mailbox).await {
                Ok(line) => line,
                Err(done) => return done,
            };
            self.conn.write(&line);
        } else {
            self.conn.line(&format!("* {} RECENT", self.recent.len()));
            if let Some(i) = view
                .entries
                .iter()
                .position(|e| !e.flags.contains(&Flag::Seen))
            {
                self.conn
                    .line(&format!("* OK [UNSEEN {}] first unseen", i + 1));
            }
        }
        self.conn.line(&format!(
            "* OK [UIDVALIDITY {}] UIDs valid",
            view.mailbox.uid_validity
        ));
        self.conn.line(&format!(
            "* OK [UIDNEXT {}] predicted next UID",
            view.mailbox.uid_next
        ));
        // Every mailbox keeps modseqs: told whether CONDSTORE is on or not (RFC 7162 §3.1.2.1).
        self.conn.line(&format!(
            "* OK [HIGHESTMODSEQ {}] modseq of the last change",
            view.modseq
        ));
        self.view = Some(view);
        if let Some((validity, since, known)) = resync
            && validity == self.view().mailbox.uid_validity
            && let Err(done) = self.resync(since, known.as_ref()).await
        {
            self.view = None;
            return done;
        }
        Done::Ok(if read_only {
            "[READ-ONLY] EXAMINE completed".into()
        } else {
            "[READ-WRITE] SELECT completed".into()
        })
    }

    /// QRESYNC (RFC 7162 §3.2.5): what a client that last saw modseq
    /// `since` must learn, in one go: the UIDs it knows that are gone
    /// (VANISHED (EARLIER)), then the flags of every message changed since.
    async fn resync(&mut self, since: u64, known: Option<&SequenceSet>) -> Result<(), Done> {
        let view = self.view();
        let top = view.mailbox.uid_next - 1;
        let known = match known {
            Some(set) => uid_ranges(set, top),
            None => vec![(1, top)],
        };
        if let Some(vanished) = self.vanished(since, &known).await? {
            self.conn.line(&format!("* VANISHED (EARLIER) {vanished}"));
        }
        let since = i64::try_from(since).unwrap_or(i64::MAX);
        let view = self.view();
        let lines: Vec<String> = (0..view.entries.len())
            .filter(|&i| view.entries[i].modseq > since)
            .map(|i| view.flags_fetch(i, self.recent.contains(&view.entries[i].uid)))
            .collect();
        for line in lines {
            self.conn.line(&line);
        }
        Ok(())
    }

    /// The UIDs among `within` that left the selected mailbox after modseq
    /// `since`, as a UID set; when tombstones that old were pruned, every
    /// UID of `within` that is not in the mailbox (RFC 7162 §3.2.5.1 allows
    /// it). `None` when there are none.
    async fn vanished(&self, since: u64, within: &[(i64, i64)]) -> Result<Option<String>, Done> {
        let view = self.view();
        let since = i64::try_from(since).unwrap_or(i64::MAX);
        let inside = |uid: i64| within.iter().any(|&(a, b)| a <= uid && uid <= b);
        let set = match self.store.expunged_since(view.mailbox.id, since).await {
            // Those still in the view are told by a live VANISHED later.
            Ok(Some(uids)) => {
                let uids: Vec<i64> = uids
                    .into_iter()
                    .filter(|&u| inside(u) && view.index_of(u).is_none())
                    .collect();
                uid_set(&uids)
            }
            Ok(None) => gaps(within, &view.entries),
            Err(e) => return Err(unavailable(e)),
        };
        Ok((!set.is_empty()).then_some(set))
    }

    async fn create(&mut self, mailbox: &WireMailbox<'_>) -> Done {
        let name = self.name_of(mailbox);
        let name = name.trim_end_matches('/');
        match self
            .store
            .create_mailbox(
                &self.account().address.to_string(),
                self.account().id,
                name,
                false,
            )
            .await
        {
            Ok(_) => Done::Ok(String::new()),
            // The mailbox cap is an implementation limit, not a quota (RFC 5530).
            Err(tenants::Error::LimitExceeded(text)) => Done::No(format!("[LIMIT] {text}")),
            Err(e) => refusal(e),
        }
    }

    async fn delete(&mut self, mailbox: &WireMailbox<'_>) -> Done {
        let found = match self.find(mailbox).await {
            Ok(found) => found,
            Err(done) => return done,
        };
        if self.view.as_ref().is_some_and(|v| v.mailbox.id == found.id) {
            self.view = None;
        }
        match self
            .store
            .delete_mailbox(&self.account().address.to_string(), &found)
            .await
        {
            Ok(dispersed) => {
                self.shred(dispersed).await;
                Done::Ok(String::new())
            }
            Err(e) => refusal(e),
        }
    }

    async fn rename(&mut self, from: &WireMailbox<'_>, to: &WireMailbox<'_>) -> Done {
        let found = match self.find(from).await {
            Ok(found) => found,
            Err(done) => return done,
        };
        let to = self.name_of(to);
        match self
            .store
            .rename_mailbox(&self.account().address.to_string(), &found, &to)
            .await
        {
            Ok(_) => Done::Ok(String::new()),
            Err(e) => refusal(e),
        }
    }

    async fn subscribe(&mut self, mailbox: &WireMailbox<'_>, subscribed: bool) -> Done {
        let found = match self.find(mailbox).await {
            Ok(found) => found,
            // No mailbox: the name may still be subscribed (RFC 9051 §6.3.8).
            Err(Done::No(_)) if !subscribed => {
                let name = self.name_of(mailbox);
                return match self.store.unsubscribe_lost(self.account().id, &name).await {
                    Ok(()) => Done::Ok(String::new()),
                    Err(e) => unavailable(e),
                };
            }
            Err(done) => return done,
        };
        match self.store.subscribe_mailbox(found.id, subscribed).await {
            Ok(()) => Done::Ok(String::new()),
            Err(e) => unavailable(e),
        }
    }

    async fn list(
        &mut self,
        reference: &WireMailbox<'_>,
        pattern: &ListMailbox<'_>,
        lsub: bool,
    ) -> Done {
        let verb = if lsub { "LSUB" } else { "LIST" };
        let pattern = match pattern {
            ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
            ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
        };
        let reference = match reference {
            WireMailbox::Inbox => "INBOX".to_owned(),
            WireMailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
        };
        if pattern.is_empty() {
            self.conn.line(&format!("* {verb} (\\Noselect) \"/\" \"\""));
            return Done::Ok(String::new());
        }
        let full = self.pattern_of(format!("{reference}{pattern}").as_bytes());
        let mailboxes = match self.store.mailboxes(self.account().id).await {
            Ok(m) => m,
            Err(e) => return unavailable(e),
        };
        let keys: Vec<String> = mailboxes.iter().map(|m| m.name.to_lowercase()).collect();
        let wanted = full.to_lowercase();
        if lsub {
            let lost = match self.store.lost_subscriptions(self.account().id).await {
                Ok(lost) => lost,
                Err(e) => return unavailable(e),
            };
            self.lsub(&mailboxes, &keys, &wanted, &lost);
            return Done::Ok(String::new());
        }
        for (m, key) in mailboxes.iter().zip(&keys) {
            if !wildcard(wanted.as_bytes(), key.as_bytes()) {
                continue;
            }
            let attributes = attributes(m, key, &keys);
            let mut line = format!("* {verb} ({}) \"/\" ", attributes.join(" ")).into_bytes();
            line.extend_from_slice(&self.wire_name(&m.name));
            line.extend_from_slice(b"\r\n");
            self.conn.write(&line);
        }
        Done::Ok(String::new())
    }

    /// The LIST response of one mailbox, as SELECT tells it under IMAP4rev2.
    async fn list_line(&self, mailbox: &Mailbox) -> Result<Vec<u8>, Done> {
        let mailboxes = self
            .store
            .mailboxes(self.account().id)
            .await
            .map_err(unavailable)?;
        let keys: Vec<String> = mailboxes.iter().map(|m| m.name.to_lowercase()).collect();
        let attributes = attributes(mailbox, &mailbox.name.to_lowercase(), &keys);
        let mut line = format!("* LIST ({}) \"/\" ", attributes.join(" ")).into_bytes();
        line.extend_from_slice(&self.wire_name(&mailbox.name));
        line.extend_from_slice(b"\r\n");
        Ok(line)
    }

    /// LSUB (RFC 3501 §6.3.9): the subscribed names the pattern matches,
    /// and where `%` stops at a level whose name is not subscribed but
    /// has a subscribed name under it, that level as `\Noselect`.
    fn lsub(&mut self, mailboxes: &[Mailbox], keys: &[String], wanted: &str, lost: &[String]) {
        let mut listed: Vec<(String, bool)> = lost
            .iter()
            .filter(|name| wildcard(wanted.as_bytes(), name.to_lowercase().as_bytes()))
            .map(|name| (name.clone(), true))
            .collect();
        for (m, key) in mailboxes.iter().zip(keys) {
            if !m.subscribed {
                continue;
            }
            if wildcard(wanted.as_bytes(), key.as_bytes()) {
                if !listed.iter().any(|(n, _)| n.to_lowercase() == *key) {
                    listed.push((m.name.clone(), true));
                }
                continue;
            }
            // A level above it that `%` matches, not subscribed itself.
            let levels: Vec<&str> = m.name.split('/').collect();
            for depth in 1..levels.len() {
                let parent = levels[..depth].join("/");
                let parent_key = parent.to_lowercase();
                if !wildcard(wanted.as_bytes(), parent_key.as_bytes()) {
                    continue;
                }
                let subscribed = mailboxes
                    .iter()
                    .any(|o| o.subscribed && o.name.to_lowercase() == parent_key);
                if !subscribed && !listed.iter().any(|(n, _)| n.to_lowercase() == parent_key) {
                    listed.push((parent, false));
                }
            }
        }
        for (name, selectable) in listed {
            let attributes = if selectable { "" } else { "\\Noselect" };
            let mut line = format!("* LSUB ({attributes}) \"/\" ").into_bytes();
            line.extend_from_slice(&self.wire_name(&name));
            line.extend_from_slice(b"\r\n");
            self.conn.write(&line);
        }
    }

    async fn status(&mut self, mailbox: &WireMailbox<'_>, items: &[StatusDataItemName]) -> Done {
        let found = match self.find(mailbox).await {
            Ok(found) => found,
            Err(done) => return done,
        };
        match self.status_of(&found, items).await {
            Ok(()) => Done::Ok(String::new()),
            Err(done) => done,
        }
    }

    /// Writes the STATUS response of a mailbox.
    async fn status_of(
        &mut self,
        found: &Mailbox,
        items: &[StatusDataItemName],
    ) -> Result<(), Done> {
        let counts = self
            .store
            .mailbox_counts(found.id)
            .await
            .map_err(unavailable)?;
        let recent = if items.contains(&StatusDataItemName::Recent) {
            self.store
                .recent_since(found.id)
                .await
                .map_err(unavailable)?
                .1
        } else {
            0
        };
        if items.contains(&StatusDataItemName::HighestModSeq) {
            self.enable_condstore();
        }
        let mut parts = Vec::new();
        for item in items {
            parts.push(match item {
                StatusDataItemName::Messages => format!("MESSAGES {}", counts.messages),
                StatusDataItemName::Recent => format!("RECENT {recent}"),
                StatusDataItemName::Size => format!("SIZE {}", counts.size),
                StatusDataItemName::HighestModSeq => {
                    format!("HIGHESTMODSEQ {}", found.highest_modseq)
                }
                StatusDataItemName::UidNext => format!("UIDNEXT {}", found.uid_next),
                StatusDataItemName::UidValidity => format!("UIDVALIDITY {}", found.uid_validity),
                StatusDataItemName::Unseen => format!("UNSEEN {}", counts.unseen),
                StatusDataItemName::Deleted => format!("DELETED {}", counts.deleted),
                StatusDataItemName::DeletedStorage => "DELETED-STORAGE 0".into(),
            });
        }
        let mut line = b"* STATUS ".to_vec();
        line.extend_from_slice(&self.wire_name(&found.name));
        line.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
        self.conn.write(&line);
        Ok(())
    }

    /// LIST with LIST-EXTENDED's selection and return options and several
    /// patterns (RFC 5258), and a STATUS after each mailbox (RFC 5819).
    async fn list_extended(&mut self, list: &ListExtended) -> Done {
        let mailboxes = match self.store.mailboxes(self.account().id).await {
            Ok(m) => m,
            Err(e) => return unavailable(e),
        };
        let keys: Vec<String> = mailboxes.iter().map(|m| m.name.to_lowercase()).collect();
        let wanted: Vec<String> = list
            .patterns
            .iter()
            .map(|p| {
                let full = format!("{}{p}", list.reference);
                self.pattern_of(full.as_bytes()).to_lowercase()
            })
            .collect();
        let matches = |key: &str| {
            wanted
                .iter()
                .any(|w| wildcard(w.as_bytes(), key.as_bytes()))
        };
        for (m, key) in mailboxes.iter().zip(&keys) {
            if !matches(key) {
                continue;
            }
            let prefix = format!("{key}/");
            // RECURSIVEMATCH tells of a parent whose subscribed descendant
            // is not itself listed (RFC 5258 §3.5).
            let subscribed_child = mailboxes
                .iter()
                .zip(&keys)
                .any(|(c, k)| c.subscribed && k.starts_with(&prefix) && !matches(k));
            let kept = !list.subscribed || m.subscribed;
            if !(kept || list.recursive_match && subscribed_child) {
                continue;
            }
            let mut attributes = attributes(m, key, &keys);
            if m.subscribed && (list.subscribed || list.return_subscribed) {
                attributes.push("\\Subscribed");
            }
            let mut line = format!("* LIST ({}) \"/\" ", attributes.join(" ")).into_bytes();
            line.extend_from_slice(&self.wire_name(&m.name));
            if list.recursive_match && subscribed_child {
                line.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
            line.extend_from_slice(b"\r\n");
            self.conn.write(&line);
            // Each mailbox's STATUS right after its LIST (RFC 5819 §2).
            if kept
                && !list.status.is_empty()
                && let Err(done) = self.status_of(m, &list.status).await
            {
                return done;
            }
        }
        if list.subscribed || list.return_subscribed {
            // Subscribed names whose mailbox is gone.
            let lost = match self.store.lost_subscriptions(self.account().id).await {
                Ok(lost) => lost,
                Err(e) => return unavailable(e),
            };
            for name in lost.iter().filter(|n| matches(&n.to_lowercase())) {
                let mut line = b"* LIST (\\Subscribed \\NonExistent) \"/\" ".to_vec();
                line.extend_from_slice(&self.wire_name(name));
                line.extend_from_slice(b"\r\n");
                self.conn.write(&line);
            }
        }
        Done::Ok(String::new())
    }

    async fn quota(&mut self, mailbox: Option<&WireMailbox<'_>>) -> Done {
        if let Some(mailbox) = mailbox {
            let found = match self.find(mailbox).await {
                Ok(found) => found,
                Err(done) => return done,
            };
            let mut line = b"* QUOTAROOT ".to_vec();
            line.extend_from_slice(&self.wire_name(&found.name));
            line.extend_from_slice(b" \"\"\r\n");
            self.conn.write(&line);
        }
        let own = match self.store.account(self.account().id).await {
            Ok(Some(account)) => account
                .storage_quota_bytes
                .map(|quota| (account.storage_used_bytes, quota)),
            Ok(None) => None,
            Err(e) => return unavailable(e),
        };
        let storage = match own {
            // An account with a cap of its own (a free account, a capped one) sees that one.
            Some(own) => Ok(own),
            None => self.store.storage(self.account().tenant_id).await,
        };
        match storage {
            Ok((used, quota)) => {
                // RFC 9208 counts STORAGE in units of 1024 octets.
                self.conn.line(&format!(
                    "* QUOTA \"\" (STORAGE {} {})",
                    (used + 1023) / 1024,
                    quota / 1024
                ));
                Done::Ok(String::new())
            }
            Err(e) => unavailable(e),
        }
    }

    // -----------------------------------------------------------------
    // The selected mailbox

    /// Tells the client what changed in the selected mailbox.
    async fn refresh(&mut self, may_expunge: bool) -> Result<(), Gone> {
        let Some(view) = &mut self.view else {
            return Ok(());
        };
        match self
            .store
            .mailbox_changes(view.mailbox.id, view.modseq)
            .await
        {
            Ok(Some(changes)) => {
                let mut out = Vec::new();
                let before = view.max_uid();
                let recent = &self.recent;
                view.apply(changes, may_expunge, &|uid| recent.contains(&uid), &mut out);
                let after = view.max_uid();
                let (id, read_only) = (view.mailbox.id, view.read_only);
                for line in out {
                    self.conn.line(&line);
                }
                if after > before {
                    self.arrived(id, read_only, before, after).await;
                }
            }
            Ok(None) => {
                self.view = None;
                self.conn.line("* BYE the selected mailbox was deleted");
                self.conn.flush().await?;
                return Err(Gone);
            }
            Err(e) => tracing::warn!(error = %e, "mailbox changes unavailable"),
        }
        Ok(())
    }

    /// New messages came (UIDs `before` < uid <= `after`): those no other
    /// session took are \Recent to this one, which says how many are now.
    async fn arrived(&mut self, id: MailboxId, read_only: bool, before: u32, after: u32) {
        if self.enabled.rev2 {
            return;
        }
        let above = if read_only {
            self.store.recent_since(id).await.map(|(r, _)| r)
        } else {
            self.store.claim_recent(id, i64::from(after)).await
        };
        let above = match above {
            Ok(above) => above.max(i64::from(before)),
            Err(e) => {
                tracing::warn!(error = %e, "recent messages unavailable");
                i64::from(after)
            }
        };
        let view = self.view.as_ref().expect("selected");
        self.recent.extend(
            view.entries
                .iter()
                .rev()
                .take_while(|e| e.uid > above)
                .map(|e| e.uid),
        );
        let count = view
            .entries
            .iter()
            .filter(|e| self.recent.contains(&e.uid))
            .count();
        self.conn.line(&format!("* {count} RECENT"));
    }

    fn view(&self) -> &View {
        self.view
            .as_ref()
            .expect("selected-state commands have a view")
    }

    /// Indices into the view of the messages a set names, ascending: each
    /// range of the set is found by binary search, not by testing every message.
    fn resolve(&self, set: &SequenceSet, uid: bool) -> Vec<usize> {
        use imap_types::sequence::{SeqOrUid, Sequence};
        let view = self.view();
        let largest = if uid { view.max_uid() } else { view.exists() };
        if largest == 0 {
            return Vec::new();
        }
        let value = |s: &SeqOrUid| match s {
            SeqOrUid::Value(n) => n.get(),
            SeqOrUid::Asterisk => largest,
        };
        let mut indices = Vec::new();
        for sequence in set.0.as_ref() {
            let (a, b) = match sequence {
                Sequence::Single(s) => (value(s), value(s)),
                Sequence::Range(x, y) => (value(x), value(y)),
            };
            let (low, high) = (a.min(b), a.max(b));
            if uid {
                let start = view.entries.partition_point(|e| e.uid < i64::from(low));
                let end = view.entries.partition_point(|e| e.uid <= i64::from(high));
                indices.extend(start..end);
            } else {
                let end = (high as usize).min(view.entries.len());
                indices.extend((low as usize).saturating_sub(1)..end);
            }
        }
        indices.sort_unstable();
        indices.dedup();
        indices
    }

    /// The command with each `$` replaced by the saved search result, as
    /// UIDs or as the sequence numbers those messages have now; an empty
    /// result becomes a number no message has, which matches nothing
    /// (RFC 5182 §2.1).
    fn with_saved_result(&self, bytes: &[u8], references: &[(usize, bool)]) -> Vec<u8> {
        let view = self.view();
        let kept: Vec<(i64, i64)> = self
            .saved
            .iter()
            .filter_map(|&uid| view.index_of(uid).map(|i| (uid, i as i64 + 1)))
            .collect();
        let render = |numbers: Vec<i64>| {
            if numbers.is_empty() {
                u32::MAX.to_string()
            } else {
                uid_set(&numbers)
            }
        };
        let uids = render(kept.iter().map(|k| k.0).collect());
        let seqs = render(kept.iter().map(|k| k.1).collect());
        let mut out = Vec::with_capacity(bytes.len() + uids.len());
        let mut from = 0;
        for &(at, by_uid) in references {
            out.extend_from_slice(&bytes[from..at]);
            out.extend_from_slice(if by_uid {
                uids.as_bytes()
            } else {
                seqs.as_bytes()
            });
            from = at + 1;
        }
        out.extend_from_slice(&bytes[from..]);
        out
    }

    /// UID ranges covering these view indices, for the store's queries.
    fn ranges(&self, indices: &[usize]) -> Vec<(i64, i64)> {
        // Consecutive positions make one range: the UIDs between them are not in the mailbox.
        let view = self.view();
        let mut ranges: Vec<(i64, i64)> = Vec::new();
        let mut previous: Option<usize> = None;
        for &i in indices {
            let uid = view.entries[i].uid;
            match ranges.last_mut() {
                Some((_, high)) if previous.is_some_and(|p| p + 1 == i) => *high = uid,
                _ => ranges.push((uid, uid)),
            }
            previous = Some(i);
        }
        ranges
    }

    async fn expunge_in(
        &mut self,
        mailbox: MailboxId,
        uids: Option<&[(i64, i64)]>,
    ) -> Result<Vec<i64>, Done> {
        match self.store.expunge(mailbox, uids).await {
            Ok(removed) => {
                let dispersed: Vec<MessageId> =
                    removed.iter().filter(|r| r.2).map(|r| r.1).collect();
                self.shred(dispersed).await;
                Ok(removed.into_iter().map(|r| r.0).collect())
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn expunge(&mut self, set: Option<&SequenceSet>) -> Done {
        if self.view().read_only {
            return Done::No("[READ-ONLY] the mailbox was opened with EXAMINE".into());
        }
        let ranges = set.map(|set| {
            let indices = self.resolve(set, true);
            self.ranges(&indices)
        });
        if ranges.as_ref().is_some_and(Vec::is_empty) {
            return Done::Ok(String::new());
        }
        let id = self.view().mailbox.id;
        match self.expunge_in(id, ranges.as_deref()).await {
            // The untagged EXPUNGEs follow from the refresh after the command.
            Ok(_) => Done::Ok(String::new()),
            Err(done) => done,
        }
    }

    async fn shred(&self, dispersed: Vec<MessageId>) {
        if let Some(sites) = self.inbound.dispersed() {
            for id in dispersed {
                if let Err(e) = sites.shred(id.0).await {
                    tracing::warn!(message = %id, error = %e, "shards not deleted yet");
                }
            }
        }
    }

    /// The message's bytes as IMAP serves them; `None` once it is expunged
    /// (by another session, while this one may not be told yet).
    async fn content(&mut self, entry: &ViewEntry) -> Result<Option<Arc<Vec<u8>>>, Done> {
        if let Some((id, bytes)) = &self.cached
            && *id == entry.id
        {
            return Ok(Some(bytes.clone()));
        }
        let tenant = self.account().tenant_id;
        let stored = match self.prefetched.remove(&entry.id) {
            Some(stored) => stored,
            None => match self.store.message_content(entry.id).await {
                Ok(Some(stored)) => stored,
                Ok(None) => return Ok(None),
                Err(e) => return Err(unavailable(e)),
            },
        };
        let bytes = match stored {
            StoredContent::Inline(bytes) => bytes,
            StoredContent::Dispersed => {
                self.inbound.read_dispersed(entry.id).await.map_err(|_| {
                    Done::No("[UNAVAILABLE] too few storage sites answered; try again later".into())
                })?
            }
        };
        let bytes = match entry.level {
            Level::Standard => self
                .inbound
                .decrypt_standard(tenant, entry.id, &bytes)
                .await
                .map_err(|_| Done::No("[SERVERBUG] a stored message does not open".into()))?,
            _ => bytes,
        };
        let bytes = Arc::new(bytes);
        self.cached = Some((entry.id, bytes.clone()));
        Ok(Some(bytes))
    }

    /// Reads the stored bytes of the messages at these positions ahead, in one query.
    async fn prefetch(&mut self, indices: &[usize]) {
        let ids: Vec<MessageId> = indices.iter().map(|&i| self.view().entries[i].id).collect();
        match self.store.message_contents(&ids).await {
            Ok(found) => self.prefetched = found,
            // Each message is then read on its own, and a real failure reported there.
            Err(e) => tracing::warn!(error = %e, "reading messages ahead failed"),
        }
    }

    /// Reads the stored summaries of the messages at these positions ahead,
    /// in one query, and the bytes of those that have none in another.
    async fn prefetch_summaries(&mut self, indices: &[usize]) {
        let ids: Vec<MessageId> = indices.iter().map(|&i| self.view().entries[i].id).collect();
        match self.store.message_summaries(&ids).await {
            Ok(found) => self.summaries = found,
            // The messages are then read instead.
            Err(e) => tracing::warn!(error = %e, "reading summaries ahead failed"),
        }
        let without: Vec<usize> = indices
            .iter()
            .copied()
            .filter(|&i| !self.summaries.contains_key(&self.view().entries[i].id))
            .collect();
        if !without.is_empty() {
            self.prefetch(&without).await;
        }
    }

    async fn fetch(
        &mut self,
        set: &SequenceSet,
        items: MacroOrMessageDataItemNames<'_>,
        uid: bool,
        modifiers: &[FetchModifier],
    ) -> Result<Done, Gone> {
        let mut items = match items {
            MacroOrMessageDataItemNames::Macro(m) => expand(m),
            MacroOrMessageDataItemNames::MessageDataItemNames(items) => items,
        };
        if uid && !items.contains(&MessageDataItemName::Uid) {
            items.insert(0, MessageDataItemName::Uid);
        }
        let changed_since = modifiers.iter().find_map(|m| match m {
            FetchModifier::ChangedSince(n) => Some(n.get()),
            FetchModifier::Vanished => None,
        });
        let vanished = modifiers.contains(&FetchModifier::Vanished);
        if vanished && !(uid && changed_since.is_some() && self.enabled.qresync) {
            return Ok(Done::Bad(
                "VANISHED goes with UID FETCH, CHANGEDSINCE and QRESYNC enabled (RFC 7162 §3.2.6)"
                    .into(),
            ));
        }
        if changed_since.is_some() && !items.contains(&MessageDataItemName::ModSeq) {
            items.push(MessageDataItemName::ModSeq);
        }
        if items.contains(&MessageDataItemName::ModSeq) {
            self.enable_condstore();
        }

        let needs_content = items.iter().any(|i| {
            !matches!(
                i,
                MessageDataItemName::Uid
                    | MessageDataItemName::Flags
                    | MessageDataItemName::InternalDate
                    | MessageDataItemName::Rfc822Size
                    | MessageDataItemName::ModSeq
            )
        });
        let read_only = self.view().read_only;
        let sets_seen = !read_only
            && items.iter().any(|i| {
                matches!(
                    i,
                    MessageDataItemName::BodyExt { peek: false, .. }
                        | MessageDataItemName::Binary { peek: false, .. }
                        | MessageDataItemName::Rfc822
                        | MessageDataItemName::Rfc822Text
                )
            });
        let mut indices = self.resolve(set, uid);
        if let Some(since) = changed_since {
            let since = i64::try_from(since).unwrap_or(i64::MAX);
            indices.retain(|&i| self.view().entries[i].modseq > since);
            if vanished {
                let top = (self.view().mailbox.uid_next - 1).max(i64::from(self.view().max_uid()));
                let within = uid_ranges(set, top);
                match self.vanished(since as u64, &within).await {
                    Ok(Some(gone)) => self.conn.line(&format!("* VANISHED (EARLIER) {gone}")),
                    Ok(None) => {}
                    Err(done) => return Ok(done),
                }
            }
        }
        // Reading a message marks it seen (RFC 3501 §6.4.5), before it is shown.
        let mut newly_seen: std::collections::HashSet<i64> = std::collections::HashSet::new();
        if sets_seen {
            let unseen: Vec<usize> = indices
                .iter()
                .copied()
                .filter(|&i| !self.view().entries[i].flags.contains(&Flag::Seen))
                .collect();
            if !unseen.is_empty() {
                let ranges = self.ranges(&unseen);
                let change = FlagChange {
                    op: FlagOp::Add,
                    flags: vec![Flag::Seen],
                    keywords: Vec::new(),
                };
                match self
                    .store
                    .store_flags(self.view().mailbox.id, &ranges, &change, None)
                    .await
                {
                    Ok((changed, _)) => {
                        let view = self.view.as_mut().expect("selected");
                        for entry in changed {
                            if let Some(i) = view.index_of(entry.uid) {
                                newly_seen.insert(entry.uid);
                                view.entries[i].flags = entry.flags;
                                view.entries[i].modseq = entry.modseq;
                            }
                        }
                    }
                    Err(e) => return Ok(unavailable(e)),
                }
            }
        }
        let with_flags = items.contains(&MessageDataItemName::Flags);
        let with_modseq = items.contains(&MessageDataItemName::ModSeq);
        // Headers, envelopes and structures come from the summaries kept at
        // delivery; a message without one is read, and its summary kept.
        let from_summaries = needs_content && items.iter().all(answered_by_summary);
        let mut summarized: Vec<(MessageId, Vec<u8>)> = Vec::new();
        for (n, &i) in indices.iter().enumerate() {
            if needs_content && n % PREFETCH == 0 {
                let batch = &indices[n..(n + PREFETCH).min(indices.len())];
                if from_summaries {
                    self.prefetch_summaries(batch).await;
                } else {
                    self.prefetch(batch).await;
                }
            }
            let entry = self.view().entries[i].clone();
            let summary = match self.summaries.remove(&entry.id) {
                Some(stored) => {
                    self.inbound
                        .open_summary(self.account().tenant_id, entry.id, &stored)
                        .await
                }
                None => None,
            };
            let content = if needs_content && summary.is_none() {
                match self.content(&entry).await {
                    Ok(Some(c)) => Some(c),
                    Ok(None) => continue,
                    Err(done) => return Ok(done),
                }
            } else {
                None
            };
            if from_summaries
                && let Some(content) = &content
                && let Ok(Some(kept)) = self
                    .inbound
                    .summarize(entry.level, self.account().tenant_id, entry.id, content)
                    .await
            {
                summarized.push((entry.id, kept));
            }
            let source = match (&summary, &content) {
                (Some(summary), _) => Source::Summary(summary),
                (None, Some(content)) => Source::Whole(content),
                (None, None) => Source::Entry,
            };
            // BINARY of a part in an encoding this server cannot undo.
            if let Some(content) = &content
                && let Some(encoding) = unknown_encoding(&items, content)
            {
                return Ok(Done::No(format!(
                    "[UNKNOWN-CTE] a part is in {encoding}, which this server cannot decode; fetch it with BODY[]"
                )));
            }
            let mut out = format!("* {} FETCH (", i + 1).into_bytes();
            let mut first = true;
            for item in &items {
                if !first {
                    out.push(b' ');
                }
                first = false;
                render(
                    &mut out,
                    item,
                    &entry,
                    self.recent.contains(&entry.uid),
                    source,
                );
            }
            if newly_seen.contains(&entry.uid) {
                if !with_flags {
                    let recent = self.recent.contains(&entry.uid);
                    out.extend_from_slice(b" ");
                    render(
                        &mut out,
                        &MessageDataItemName::Flags,
                        &entry,
                        recent,
                        Source::Entry,
                    );
                }
                if self.enabled.condstore && !with_modseq {
                    out.extend_from_slice(format!(" MODSEQ ({})", entry.modseq).as_bytes());
                }
            }
            out.extend_from_slice(b")\r\n");
            self.conn.write(&out);
            if self.conn.pending() > 1 << 20 {
                self.conn.flush().await?;
            }
        }
        self.prefetched.clear();
        self.summaries.clear();
        if !summarized.is_empty()
            && let Err(e) = self.store.keep_message_summaries(&summarized).await
        {
            // The next FETCH reads those messages again and retries.
            tracing::warn!(error = %e, "keeping the summaries of messages stored without one failed");
        }
        Ok(Done::Ok(String::new()))
    }

    async fn store_flags(
        &mut self,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[WireFlag<'_>],
        uid: bool,
        unchanged_since: Option<u64>,
    ) -> Done {
        if self.view().read_only {
            return Done::No("[READ-ONLY] the mailbox was opened with EXAMINE".into());
        }
        if unchanged_since.is_some() {
            self.enable_condstore();
        }
        let (flags, keywords) = match split_flags(flags) {
            Ok(split) => split,
            Err(text) => return Done::Bad(text),
        };
        let op = match kind {
            StoreType::Add => FlagOp::Add,
            StoreType::Remove => FlagOp::Remove,
            StoreType::Replace => FlagOp::Replace,
        };
        let indices = self.resolve(set, uid);
        if indices.is_empty() {
            return Done::Ok(String::new());
        }
        let ranges = self.ranges(&indices);
        let change = FlagChange {
            op,
            flags,
            keywords,
        };
        let (changed, modified) = match self
            .store
            .store_flags(self.view().mailbox.id, &ranges, &change, unchanged_since)
            .await
        {
            Ok(changed) => changed,
            Err(tenants::Error::Invalid(text)) => return Done::Bad(text),
            Err(e) => return unavailable(e),
        };
        let view = self.view.as_mut().expect("selected");
        let mut out = Vec::new();
        let mut touched = std::collections::HashSet::new();
        // Changed by others too since this session last looked: told in
        // full even under .SILENT (RFC 3501 §6.4.6).
        let mut surprising = std::collections::HashSet::new();
        for entry in changed {
            view.announce(&entry.keywords, &mut out);
            if let Some(i) = view.index_of(entry.uid) {
                let known = &view.entries[i];
                let (flags, keywords) = change.apply(&known.flags, &known.keywords);
                let same = flags.len() == entry.flags.len()
                    && flags.iter().all(|f| entry.flags.contains(f))
                    && keywords.len() == entry.keywords.len()
                    && keywords
                        .iter()
                        .all(|k| entry.keywords.iter().any(|e| e.eq_ignore_ascii_case(k)));
                if !same {
                    surprising.insert(i);
                }
                touched.insert(i);
                view.entries[i] = entry;
            }
        }
        let condstore = self.enabled.condstore;
        let modified_set: std::collections::HashSet<i64> = modified.iter().copied().collect();
        for i in indices {
            let uid = view.entries[i].uid;
            if modified_set.contains(&uid) {
                continue;
            }
            if response == StoreResponse::Answer || surprising.contains(&i) {
                out.push(view.flags_fetch(i, self.recent.contains(&uid)));
            } else if condstore && touched.contains(&i) {
                // .SILENT still tells the new modseq (RFC 7162 §3.1.3).
                out.push(format!(
                    "* {} FETCH (UID {uid} MODSEQ ({}))",
                    i + 1,
                    view.entries[i].modseq
                ));
            }
        }
        for line in out {
            self.conn.line(&line);
        }
        if modified.is_empty() {
            return Done::Ok(String::new());
        }
        let named: Vec<i64> = if uid {
            modified
        } else {
            modified
                .iter()
                .filter_map(|&u| self.view().index_of(u).map(|i| i as i64 + 1))
                .collect()
        };
        Done::Ok(format!(
            "[MODIFIED {}] conditional STORE failed for these",
            uid_set(&named)
        ))
    }

    async fn move_to(&mut self, set: &SequenceSet, mailbox: &WireMailbox<'_>, uid: bool) -> Done {
        if self.view().read_only {
            return Done::No("[READ-ONLY] the mailbox was opened with EXAMINE".into());
        }
        let target = match self.find_target(mailbox).await {
            Ok(target) => target,
            Err(done) => return done,
        };
        let indices = self.resolve(set, uid);
        if indices.is_empty() {
            return Done::Ok("no messages to move".into());
        }
        let ranges = self.ranges(&indices);
        // Into the mailbox they are in, they move like anywhere else: new
        // UIDs at the end (as Dovecot does, and imaptest expects).
        let from = self.view().mailbox.clone();
        let judgement = tenants::judgement(from.role, target.role);
        let ids: Vec<MessageId> = match judgement {
            Some(_) => indices.iter().map(|&i| self.view().entries[i].id).collect(),
            None => Vec::new(),
        };
        let moved = match self.store.move_messages(&from, &ranges, &target).await {
            Ok(moved) => moved,
            Err(e) => return unavailable(e),
        };
        if moved.is_empty() {
            return Done::Ok("no messages to move".into());
        }
        if let Some(spam) = judgement {
            let mut judged = Vec::with_capacity(ids.len());
            for id in ids {
                if let Ok(Some(meta)) = self.store.message(id).await {
                    judged.push(meta);
                }
            }
            self.inbound.judged(&judged, spam).await;
        }
        let (old, new): (Vec<i64>, Vec<i64>) = moved.iter().copied().unzip();
        self.conn.line(&format!(
            "* OK [COPYUID {} {} {}] moved",
            target.uid_validity,
            uid_set(&old),
            uid_set(&new)
        ));
        // Told now rather than by the next refresh, as RFC 6851 wants.
        let mut out = Vec::new();
        self.view.as_mut().expect("selected").remove(&old, &mut out);
        for line in out {
            self.conn.line(&line);
        }
        Done::Ok(String::new())
    }

    async fn copy(&mut self, set: &SequenceSet, mailbox: &WireMailbox<'_>, uid: bool) -> Done {
        let target = match self.find_target(mailbox).await {
            Ok(target) => target,
            Err(done) => return done,
        };
        let indices = self.resolve(set, uid);
        let judgement = tenants::judgement(self.view().mailbox.role, target.role);
        let mut judged = Vec::new();
        let mut copies = Vec::with_capacity(indices.len());
        let mut old = Vec::with_capacity(indices.len());
        for i in indices {
            let entry = self.view().entries[i].clone();
            let meta = match self.store.message(entry.id).await {
                Ok(Some(meta)) => meta,
                Ok(None) => continue,
                Err(e) => {
                    self.discard(&copies).await;
                    return unavailable(e);
                }
            };
            let content = match self.content(&entry).await {
                Ok(Some(c)) => c,
                Ok(None) => continue,
                Err(done) => {
                    self.discard(&copies).await;
                    return done;
                }
            };
            let id = MessageId::new();
            let kept = match self.stored_form(entry.level, id, &content).await {
                Ok(form) => form,
                Err(done) => {
                    self.discard(&copies).await;
                    return done;
                }
            };
            if judgement.is_some() {
                judged.push(meta.clone());
            }
            copies.push(NewMessage {
                id,
                tenant_id: meta.tenant_id,
                account_id: meta.account_id,
                level: meta.level,
                envelope_from: meta.envelope_from,
                envelope_to: meta.envelope_to,
                subject: meta.subject,
                sender: meta.sender,
                privacy: meta.privacy,
                authentication: meta.authentication,
                arrived_encrypted: false,
                content: kept.content,
                dispersed: kept.dispersed,
                summary: kept.summary,
                rfc822_size: entry.rfc822_size,
                flags: entry.flags.clone(),
                keywords: entry.keywords.clone(),
                received_at: Some(entry.received_at),
                verdict: None,
                mailbox: None,
            });
            old.push(entry.uid);
        }
        if copies.is_empty() {
            return Done::Ok("no messages to copy".into());
        }
        match self.store.append_messages(&target, &copies).await {
            Ok(new) => {
                if let Some(spam) = judgement {
                    self.inbound.judged(&judged, spam).await;
                }
                Done::Ok(format!(
                    "[COPYUID {} {} {}] COPY completed",
                    target.uid_validity,
                    uid_set(&old),
                    uid_set(&new)
                ))
            }
            Err(e) => {
                self.discard(&copies).await;
                refusal(e)
            }
        }
    }

    async fn discard(&self, messages: &[NewMessage]) {
        let written: Vec<_> = messages
            .iter()
            .filter_map(|m| m.dispersed.clone().map(|o| (m.id, o)))
            .collect();
        self.inbound.discard(&written).await;
    }

    /// How a message of `level` is kept: AEAD under the tenant's key at
    /// `standard`, the bytes as they are above (already PGP/MIME), and on
    /// the storage sites from `dispersed` up.
    async fn stored_form(
        &self,
        level: Level,
        id: MessageId,
        readable: &[u8],
    ) -> Result<crate::stored::Kept, Done> {
        self.inbound
            .store_readable(level, self.account().tenant_id, id, readable.to_vec())
            .await
            .map_err(|_| {
                Done::No("[UNAVAILABLE] the message could not be stored, try again later".into())
            })
    }

    async fn append(
        &mut self,
        mailbox: &WireMailbox<'_>,
        flags: &[WireFlag<'_>],
        date: Option<chrono::DateTime<Utc>>,
        data: Vec<u8>,
    ) -> Done {
        let target = match self.find_target(mailbox).await {
            Ok(target) => target,
            Err(done) => return done,
        };
        let (flags, keywords) = match split_flags(flags) {
            Ok(split) => split,
            Err(text) => return Done::Bad(text),
        };
        let account = self.account().clone();
        let appended = self
            .inbound
            .append(crate::append::Append {
                account: &account,
                mailbox: &target,
                message: data,
                flags,
                keywords,
                received_at: date,
                over_tls: self.transport.secure,
            })
            .await;
        match appended {
            Ok(appended) => Done::Ok(format!(
                "[APPENDUID {} {}] APPEND completed",
                target.uid_validity, appended.uid
            )),
            Err(AppendRefused::Store(e)) => refusal(e),
            Err(AppendRefused::Unavailable | AppendRefused::TenantGone) => {
                Done::No(format!("[UNAVAILABLE] {}", AppendRefused::Unavailable))
            }
            Err(refused @ AppendRefused::PlaintextAtEndToEnd) => Done::No(format!(
                "[CANNOT] {refused}; with IMAP, turn on the mail client's draft encryption"
            )),
            Err(refused @ AppendRefused::NotAMessage) => Done::No(format!("[CANNOT] {refused}")),
        }
    }

    async fn search(&mut self, tag: &str, keys: &[SearchKey<'_>], uid: bool) -> Result<Done, Gone> {
        let needs_content = search::needs_content(keys);
        let with_modseq = search::uses_modseq(keys);
        if with_modseq {
            self.enable_condstore();
        }
        let mut highest = 0;
        let bounds = Bounds {
            max_seq: self.view().exists(),
            max_uid: self.view().max_uid(),
        };
        // Header keys are answered by the header each summary holds.
        let header_only = needs_content && !search::needs_body(keys);
        let mut found = Vec::new();
        for i in 0..self.view().entries.len() {
            if needs_content && i % PREFETCH == 0 {
                let batch: Vec<usize> = (i..(i + PREFETCH).min(self.view().entries.len()))
                    .filter(|&j| self.view().entries[j].level == Level::Standard)
                    .collect();
                if header_only {
                    self.prefetch_summaries(&batch).await;
                } else {
                    self.prefetch(&batch).await;
                }
            }
            let entry = self.view().entries[i].clone();
            let summary = match self.summaries.remove(&entry.id) {
                Some(stored) => self
                    .inbound
                    .open_summary(self.account().tenant_id, entry.id, &stored)
                    .await
                    .map(|summary| Arc::new(summary.header)),
                None => None,
            };
            let content = if summary.is_some() {
                summary
            } else if needs_content && entry.level == Level::Standard {
                match self.content(&entry).await {
                    Ok(Some(c)) => Some(c),
                    Ok(None) => continue,
                    Err(done) => return Ok(done),
                }
            } else {
                None
            };
            let has = |f: Flag| entry.flags.contains(&f);
            let candidate = Candidate {
                seq: i as u32 + 1,
                uid: entry.uid as u32,
                seen: has(Flag::Seen),
                answered: has(Flag::Answered),
                flagged: has(Flag::Flagged),
                deleted: has(Flag::Deleted),
                draft: has(Flag::Draft),
                keywords: &entry.keywords,
                internal_date: entry.received_at,
                size: entry.rfc822_size as u64,
                recent: self.recent.contains(&entry.uid),
                modseq: entry.modseq as u64,
                content: content.as_deref().map(Vec::as_slice),
            };
            if search::matches(keys, &candidate, bounds) {
                found.push(if uid { entry.uid as u32 } else { i as u32 + 1 });
                highest = highest.max(entry.modseq);
            }
        }
        self.prefetched.clear();
        self.summaries.clear();
        // IMAP4rev2 answers every SEARCH with ESEARCH, ALL by default (RFC 9051 §6.4.4).
        let options = self.search_return.or_else(|| {
            self.enabled.rev2.then_some(SearchReturn {
                all: true,
                ..SearchReturn::default()
            })
        });
        if let Some(options) = options
            && options.save
        {
            let kept: Vec<u32> = if options.saves_extremes() && !found.is_empty() {
                let mut kept = Vec::new();
                if options.min {
                    kept.push(found[0]);
                }
                if options.max && (!options.min || found.len() > 1) {
                    kept.push(found[found.len() - 1]);
                }
                kept
            } else {
                found.clone()
            };
            let view = self.view();
            self.saved = kept
                .into_iter()
                .map(|n| {
                    if uid {
                        i64::from(n)
                    } else {
                        view.entries[n as usize - 1].uid
                    }
                })
                .collect();
        }
        if let Some(options) = options {
            if !options.answers() {
                return Ok(Done::Ok(String::new()));
            }
            // ESEARCH (RFC 4731): what was asked of the result, by tag.
            let mut line = format!("* ESEARCH (TAG \"{tag}\")");
            if uid {
                line.push_str(" UID");
            }
            if !found.is_empty() {
                if options.min {
                    line.push_str(&format!(" MIN {}", found[0]));
                }
                if options.max {
                    line.push_str(&format!(" MAX {}", found[found.len() - 1]));
                }
            }
            if options.count {
                line.push_str(&format!(" COUNT {}", found.len()));
            }
            if options.all && !found.is_empty() {
                let all: Vec<i64> = found.iter().map(|&n| i64::from(n)).collect();
                line.push_str(&format!(" ALL {}", uid_set(&all)));
            }
            if with_modseq && !found.is_empty() {
                // Of all matches with ALL or COUNT; else of those returned (RFC 7162 §3.1.5).
                let modseq = if options.all || options.count {
                    highest
                } else {
                    let of = |n: u32| {
                        let i = if uid {
                            self.view().index_of(i64::from(n))
                        } else {
                            Some(n as usize - 1)
                        };
                        i.map_or(0, |i| self.view().entries[i].modseq)
                    };
                    let mut m = 0;
                    if options.min {
                        m = m.max(of(found[0]));
                    }
                    if options.max {
                        m = m.max(of(found[found.len() - 1]));
                    }
                    m
                };
                line.push_str(&format!(" MODSEQ {modseq}"));
            }
            self.conn.line(&line);
            return Ok(Done::Ok(String::new()));
        }
        let mut line = String::from("* SEARCH");
        let any = !found.is_empty();
        for n in found {
            line.push(' ');
            line.push_str(&n.to_string());
        }
        // The highest modseq of what matched, when asked by MODSEQ (RFC 7162 §3.1.5).
        if with_modseq && any {
            line.push_str(&format!(" (MODSEQ {highest})"));
        }
        self.conn.line(&line);
        Ok(Done::Ok(String::new()))
    }

    async fn idle(&mut self, tag: &str) -> Result<Flow, Gone> {
        while self.feed.try_recv().is_ok() {}
        self.conn.line("+ idling");
        self.conn.flush().await?;
        let mine = self.view.as_ref().map(|v| v.mailbox.id);
        let mut poll = tokio::time::interval(self.config.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let deadline = tokio::time::sleep(self.config.autologout);
        tokio::pin!(deadline);
        let mut stopping = self.stopping.clone();
        loop {
            tokio::select! {
                ready = self.conn.readable() => {
                    ready?;
                    let line = self.conn.read_line(self.config.max_line, self.config.login_timeout).await?;
                    let done = line.as_deref().map(|l| String::from_utf8_lossy(l).trim().eq_ignore_ascii_case("DONE"));
                    if done == Some(true) {
                        self.refresh(true).await?;
                        self.conn.line(&format!("{tag} OK IDLE terminated"));
                    } else {
                        self.bad(tag, "IDLE ends with DONE");
                    }
                    return Ok(Flow::Continue);
                }
                changed = self.feed.recv() => {
                    let ours = match changed {
                        Ok(id) => Some(id) == mine,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => false,
                    };
                    if ours {
                        self.refresh(true).await?;
                        self.conn.flush().await?;
                    }
                }
                change = self.access.recv() => {
                    let account = self.account();
                    if tenants::login::session_concerned(account, self.app_password, change)
                        && !self.store.mail_session_may_go_on(account, self.app_password).await
                    {
                        self.revoked();
                        self.conn.flush().await?;
                        return Ok(Flow::Logout);
                    }
                }
                _ = poll.tick() => {
                    if !self.still_allowed().await {
                        self.conn.flush().await?;
                        return Ok(Flow::Logout);
                    }
                    self.refresh(true).await?;
                    self.conn.flush().await?;
                }
                () = &mut deadline => {
                    self.conn.line("* BYE autologout: idle for too long");
                    self.conn.flush().await?;
                    return Ok(Flow::Logout);
                }
                () = stopped(&mut stopping) => {
                    self.conn.line("* BYE the server is shutting down, reconnect in a moment");
                    self.conn.flush().await?;
                    return Ok(Flow::Logout);
                }
            }
        }
    }
}

/// What ended the wait for the next command.
enum Woken {
    Frame(Result<Frame, Gone>),
    Stopping,
    Revoked,
}

async fn stopped(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

fn expand(m: Macro) -> Vec<MessageDataItemName<'static>> {
    use MessageDataItemName as N;
    match m {
        Macro::Fast => vec![N::Flags, N::InternalDate, N::Rfc822Size],
        Macro::All => vec![N::Flags, N::InternalDate, N::Rfc822Size, N::Envelope],
        Macro::Full => vec![
            N::Flags,
            N::InternalDate,
            N::Rfc822Size,
            N::Envelope,
            N::Body,
        ],
        _ => vec![N::Flags, N::InternalDate, N::Rfc822Size],
    }
}

/// What a FETCH response is rendered from.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// Only what the view knows of the message (flags, sizes, dates).
    Entry,
    /// The message as it is served.
    Whole(&'a [u8]),
    /// Its summary, for the items [`answered_by_summary`].
    Summary(&'a message::Summary),
}

/// Whether a FETCH item is answered by the message's summary (or by the
/// view) without its bytes.
fn answered_by_summary(item: &MessageDataItemName<'_>) -> bool {
    use MessageDataItemName as N;
    match item {
        N::Uid
        | N::Flags
        | N::InternalDate
        | N::Rfc822Size
        | N::ModSeq
        | N::Envelope
        | N::Body
        | N::BodyStructure
        | N::Rfc822Header => true,
        N::BodyExt { section, .. } => message::Summary::answers(&section_of(section.as_ref()).1),
        _ => false,
    }
}

/// Writes one FETCH data item.
fn render(
    out: &mut Vec<u8>,
    item: &MessageDataItemName<'_>,
    entry: &ViewEntry,
    recent: bool,
    source: Source<'_>,
) {
    use MessageDataItemName as N;
    let content = match source {
        Source::Whole(content) => content,
        Source::Entry | Source::Summary(_) => &[],
    };
    let summary = match source {
        Source::Summary(summary) => Some(summary),
        Source::Entry | Source::Whole(_) => None,
    };
    let literal = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
        out.extend_from_slice(bytes);
    };
    match item {
        N::Uid => out.extend_from_slice(format!("UID {}", entry.uid).as_bytes()),
        N::Flags => {
            let flags = flag_list(&entry.flags, &entry.keywords);
            let flags = match (recent, flags.is_empty()) {
                (false, _) => flags,
                (true, true) => "\\Recent".to_owned(),
                (true, false) => format!("\\Recent {flags}"),
            };
            out.extend_from_slice(format!("FLAGS ({flags})").as_bytes())
        }
        N::ModSeq => out.extend_from_slice(format!("MODSEQ ({})", entry.modseq).as_bytes()),
        N::InternalDate => out.extend_from_slice(
            format!(
                "INTERNALDATE \"{}\"",
                entry.received_at.format("%d-%b-%Y %H:%M:%S +0000")
            )
            .as_bytes(),
        ),
        N::Rfc822Size => {
            out.extend_from_slice(format!("RFC822.SIZE {}", entry.rfc822_size).as_bytes())
        }
        N::Envelope => {
            out.extend_from_slice(b"ENVELOPE ");
            match summary {
                Some(summary) => out.extend_from_slice(&summary.envelope),
                None => out.extend_from_slice(&message::envelope(content)),
            }
        }
        N::BodyStructure => {
            out.extend_from_slice(b"BODYSTRUCTURE ");
            match summary {
                Some(summary) => out.extend_from_slice(&summary.body_structure),
                None => out.extend_from_slice(&message::body_structure(content, true)),
            }
        }
        N::Body => {
            out.extend_from_slice(b"BODY ");
            match summary {
                Some(summary) => out.extend_from_slice(&summary.body),
                None => out.extend_from_slice(&message::body_structure(content, false)),
            }
        }
        N::Rfc822 => {
            out.extend_from_slice(b"RFC822 ");
            literal(out, content);
        }
        N::Rfc822Header => {
            out.extend_from_slice(b"RFC822.HEADER ");
            let header = match summary {
                Some(summary) => summary.header.clone(),
                None => message::section(
                    content,
                    &Section {
                        part: vec![],
                        text: SectionText::Header,
                    },
                )
                .unwrap_or_default(),
            };
            literal(out, &header);
        }
        N::Rfc822Text => {
            out.extend_from_slice(b"RFC822.TEXT ");
            let text = message::section(
                content,
                &Section {
                    part: vec![],
                    text: SectionText::Text,
                },
            )
            .unwrap_or_default();
            literal(out, &text);
        }
        N::BodyExt {
            section, partial, ..
        } => {
            let (spec, wanted) = section_of(section.as_ref());
            out.extend_from_slice(b"BODY[");
            out.extend_from_slice(spec.as_bytes());
            out.push(b']');
            let bytes = match summary {
                Some(summary) => summary.section(&wanted),
                None => message::section(content, &wanted),
            };
            let Some(bytes) = bytes else {
                out.extend_from_slice(b" NIL");
                return;
            };
            match partial {
                Some((origin, length)) => {
                    out.extend_from_slice(format!("<{origin}> ").as_bytes());
                    let start = (*origin as usize).min(bytes.len());
                    let end = start.saturating_add(length.get() as usize).min(bytes.len());
                    literal(out, &bytes[start..end]);
                }
                None => {
                    out.push(b' ');
                    literal(out, &bytes);
                }
            }
        }
        N::Binary {
            section, partial, ..
        } => {
            let (part, spec) = binary_part(section);
            out.extend_from_slice(format!("BINARY[{spec}]").as_bytes());
            let Some(Ok(bytes)) = message::binary(content, &part) else {
                out.extend_from_slice(b" NIL");
                return;
            };
            let (start, end) = match partial {
                Some((origin, length)) => {
                    let start = (*origin as usize).min(bytes.len());
                    out.extend_from_slice(format!("<{origin}>").as_bytes());
                    (
                        start,
                        start.saturating_add(length.get() as usize).min(bytes.len()),
                    )
                }
                None => (0, bytes.len()),
            };
            let bytes = &bytes[start..end];
            // literal8 when the bytes hold a NUL (RFC 3516 §4.2).
            if bytes.contains(&0) {
                out.extend_from_slice(format!(" ~{{{}}}\r\n", bytes.len()).as_bytes());
                out.extend_from_slice(bytes);
            } else {
                out.push(b' ');
                literal(out, bytes);
            }
        }
        N::BinarySize { section } => {
            let (part, spec) = binary_part(section);
            let size = match message::binary(content, &part) {
                Some(Ok(bytes)) => bytes.len().to_string(),
                _ => "NIL".to_owned(),
            };
            out.extend_from_slice(format!("BINARY.SIZE[{spec}] {size}").as_bytes());
        }
    }
}

/// The part numbers of a BINARY section, and the section as the response names it.
fn binary_part(section: &[std::num::NonZeroU32]) -> (Vec<u32>, String) {
    let part: Vec<u32> = section.iter().map(|n| n.get()).collect();
    let spec = part
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".");
    (part, spec)
}

/// The encoding of a part a BINARY item asks for, when it is not one this
/// server decodes.
fn unknown_encoding(items: &[MessageDataItemName<'_>], content: &[u8]) -> Option<String> {
    items.iter().find_map(|item| {
        let section = match item {
            MessageDataItemName::Binary { section, .. }
            | MessageDataItemName::BinarySize { section } => section,
            _ => return None,
        };
        let (part, _) = binary_part(section);
        match message::binary(content, &part) {
            Some(Err(encoding)) => Some(encoding),
            _ => None,
        }
    })
}

/// The section as the response names it, and as [`message::section`] takes it.
fn section_of(section: Option<&WireSection<'_>>) -> (String, Section) {
    let numbers = |part: &Part| {
        part.0
            .as_ref()
            .iter()
            .map(|n| n.get())
            .collect::<Vec<u32>>()
    };
    let dotted = |part: &[u32]| {
        part.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(".")
    };
    let fields = |names: &imap_types::core::Vec1<imap_types::core::AString<'_>>| {
        names
            .as_ref()
            .iter()
            .map(|n| String::from_utf8_lossy(n.as_ref()).into_owned())
            .collect::<Vec<String>>()
    };
    let with = |part: Vec<u32>, suffix: &str, text: SectionText| {
        let spec = if part.is_empty() {
            suffix.to_owned()
        } else if suffix.is_empty() {
            dotted(&part)
        } else {
            format!("{}.{suffix}", dotted(&part))
        };
        (spec, Section { part, text })
    };
    match section {
        None => with(vec![], "", SectionText::Full),
        Some(WireSection::Part(p)) => with(numbers(p), "", SectionText::Full),
        Some(WireSection::Header(p)) => with(
            p.as_ref().map(numbers).unwrap_or_default(),
            "HEADER",
            SectionText::Header,
        ),
        Some(WireSection::HeaderFields(p, names)) => {
            let names = fields(names);
            let suffix = format!("HEADER.FIELDS ({})", names.join(" "));
            with(
                p.as_ref().map(numbers).unwrap_or_default(),
                &suffix,
                SectionText::HeaderFields(names),
            )
        }
        Some(WireSection::HeaderFieldsNot(p, names)) => {
            let names = fields(names);
            let suffix = format!("HEADER.FIELDS.NOT ({})", names.join(" "));
            with(
                p.as_ref().map(numbers).unwrap_or_default(),
                &suffix,
                SectionText::HeaderFieldsNot(names),
            )
        }
        Some(WireSection::Text(p)) => with(
            p.as_ref().map(numbers).unwrap_or_default(),
            "TEXT",
            SectionText::Text,
        ),
        Some(WireSection::Mime(p)) => with(numbers(p), "MIME", SectionText::Mime),
    }
}

/// System flags and keywords of a STORE or APPEND.
fn split_flags(flags: &[WireFlag<'_>]) -> Result<(Vec<Flag>, Vec<String>), String> {
    let mut system = Vec::new();
    let mut keywords = Vec::new();
    for flag in flags {
        match flag {
            WireFlag::Seen => system.push(Flag::Seen),
            WireFlag::Answered => system.push(Flag::Answered),
            WireFlag::Flagged => system.push(Flag::Flagged),
            WireFlag::Deleted => system.push(Flag::Deleted),
            WireFlag::Draft => system.push(Flag::Draft),
            WireFlag::Keyword(atom) => keywords.push(atom.as_ref().to_owned()),
            WireFlag::Extension(_) => {
                return Err(format!(
                    "{flag} cannot be set: \\Recent belongs to the server and others do not exist"
                ));
            }
        }
    }
    system.sort_by_key(|f| f.as_str());
    system.dedup();
    Ok((system, keywords))
}

/// The UID ranges a set names, `*` being `top` (each range low to high).
fn uid_ranges(set: &SequenceSet, top: i64) -> Vec<(i64, i64)> {
    use imap_types::sequence::{SeqOrUid, Sequence};
    let value = |s: &SeqOrUid| match s {
        SeqOrUid::Value(n) => i64::from(n.get()),
        SeqOrUid::Asterisk => top,
    };
    set.0
        .as_ref()
        .iter()
        .map(|sequence| {
            let (a, b) = match sequence {
                Sequence::Single(s) => (value(s), value(s)),
                Sequence::Range(x, y) => (value(x), value(y)),
            };
            (a.min(b), a.max(b))
        })
        .collect()
}

/// The UIDs of `within` that no entry has, as a UID set (entries by UID).
fn gaps(within: &[(i64, i64)], entries: &[ViewEntry]) -> String {
    let mut parts = Vec::new();
    let mut push = |a: i64, b: i64| {
        if a == b {
            parts.push(a.to_string());
        } else if a < b {
            parts.push(format!("{a}:{b}"));
        }
    };
    let mut within = within.to_vec();
    within.sort_unstable();
    for (low, high) in within {
        if low > high || high < 1 {
            continue;
        }
        let mut next = low.max(1);
        let start = entries.partition_point(|e| e.uid < next);
        for entry in entries[start..].iter().take_while(|e| e.uid <= high) {
            if entry.uid > next {
                push(next, entry.uid - 1);
            }
            next = entry.uid + 1;
        }
        if next <= high {
            push(next, high);
        }
    }
    parts.join(",")
}

/// A mailbox's LIST attributes: children (CHILDREN) and special use
/// (SPECIAL-USE); `key` is its lowercased name, `keys` all of them.
fn attributes(m: &Mailbox, key: &str, keys: &[String]) -> Vec<&'static str> {
    let prefix = format!("{key}/");
    let children = keys.iter().any(|k| k.starts_with(&prefix));
    let mut attributes = vec![if children {
        "\\HasChildren"
    } else {
        "\\HasNoChildren"
    }];
    if let Some(special) = m.role.and_then(Folder::special_use) {
        attributes.push(special);
    }
    attributes
}

/// Whether a LIST pattern (`*` anything, `%` anything but `/`) matches a
/// name; in time proportional to their product, whatever the wildcards.
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    // matches[j]: the pattern read so far matches name[..j].
    let mut matches = vec![false; name.len() + 1];
    matches[0] = true;
    for &p in pattern {
        let mut next = vec![false; name.len() + 1];
        match p {
            b'*' => {
                let mut any = false;
                for j in 0..=name.len() {
                    any |= matches[j];
                    next[j] = any;
                }
            }
            b'%' => {
                let mut any = false;
                for j in 0..=name.len() {
                    if j > 0 && name[j - 1] == b'/' {
                        any = false;
                    }
                    any |= matches[j];
                    next[j] = any;
                }
            }
            c => {
                for j in 1..=name.len() {
                    next[j] = matches[j - 1] && name[j - 1] == c;
                }
            }
        }
        matches = next;
    }
    matches[name.len()]
}

fn unavailable(e: tenants::Error) -> Done {
    tracing::error!(error = %e, "IMAP store failure");
    Done::No("[UNAVAILABLE] the server could not do that now, try again later".into())
}

/// A refusal of the domain core, in IMAP's words.
fn refusal(e: tenants::Error) -> Done {
    match e {
        tenants::Error::Conflict(text) if text.contains("exists already") => {
            Done::No(format!("[ALREADYEXISTS] {text}"))
        }
        tenants::Error::Conflict(text) | tenants::Error::Invalid(text) => {
            Done::No(format!("[CANNOT] {text}"))
        }
        tenants::Error::LimitExceeded(text) => Done::No(format!("[OVERQUOTA] {text}")),
        tenants::Error::NotFound(what) => Done::No(format!("[NONEXISTENT] {what} not found")),
        other => unavailable(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    #[test]
    fn list_wildcards() {
        assert!(
            wildcard(&[b'*'; 64], b"inbox"),
            "many stars cost no more than one"
        );
        assert!(!wildcard(
            &[b'*'; 4000]
                .iter()
                .chain(b"y")
                .copied()
                .collect::<Vec<u8>>(),
            b"inbox"
        ));
        assert!(wildcard(b"%/%", b"a/b") && !wildcard(b"%/%", b"a/b/c"));
        assert!(wildcard(b"*", b"projects/2026"));
        assert!(wildcard(b"%", b"inbox"));
        assert!(!wildcard(b"%", b"projects/2026"));
        assert!(wildcard(b"projects/%", b"projects/2026"));
        assert!(!wildcard(b"projects/%", b"projects"));
        assert!(wildcard(b"p*6", b"projects/2026"));
    }

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[4]), "4");
    }

    #[test]
    fn sections_are_named_back_as_asked() {
        let (spec, section) = section_of(None);
        assert_eq!((spec.as_str(), section.text), ("", SectionText::Full));
        let part = Part(
            imap_types::core::Vec1::try_from(vec![
                NonZeroU32::new(1).unwrap(),
                NonZeroU32::new(2).unwrap(),
            ])
            .unwrap(),
        );
        let (spec, section) = section_of(Some(&WireSection::Mime(part)));
        assert_eq!(spec, "1.2.MIME");
        assert_eq!(section.part, vec![1, 2]);
    }
}
