//! Sieve (RFC 5228) on arrival, before a message is sealed: the language is
//! the `sieve-rs` crate's; this module says which extensions a script may
//! use, what it may cost, and turns what it did into delivery decisions
//! (file into folders with flags, discard, reject, redirect, vacation
//! replies). The plaintext it reads exists for that moment only, in memory.
//!
//! The tenant-wide script runs first; then the account's active one.

use std::sync::Arc;

use sieve::compiler::grammar::Capability;
use sieve::{Compiler, Event, Input, Recipient, Runtime};
use tenants::Store;
use uuid::Uuid;

/// The extensions a script may `require`, as the ManageSieve greeting
/// lists them. Those that rewrite the message (editheader, replace,
/// enclose) are left out: what is stored is what the sender wrote.
pub const EXTENSIONS: &[&str] = &[
    "fileinto",
    "envelope",
    "encoded-character",
    "comparator-i;ascii-numeric",
    "comparator-i;ascii-casemap",
    "comparator-i;octet",
    "body",
    "copy",
    "relational",
    "date",
    "index",
    "duplicate",
    "variables",
    "reject",
    "ereject",
    "subaddress",
    "vacation",
    "vacation-seconds",
    "mailbox",
    "imap4flags",
    "regex",
];

/// Resource limits of one run.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Instructions one script may execute.
    pub cpu: usize,
    /// Redirects one message may cause.
    pub redirects: usize,
    /// Messages (vacation replies) one run may send.
    pub replies: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu: 10_000,
            redirects: 3,
            replies: 1,
        }
    }
}

/// A script that does not compile, where and why.
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// Filing one copy of the message.
#[derive(Clone, Debug, PartialEq)]
pub struct Filing {
    /// `None`: the Inbox (or Junk, as the verdict says).
    pub folder: Option<String>,
    pub flags: Vec<String>,
    pub create: bool,
}

/// What the scripts decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// Copies to store (none: discarded, or redirected only).
    pub filings: Vec<Filing>,
    /// Refuse the message, with this reason.
    pub reject: Option<String>,
    /// Addresses to forward a copy to.
    pub redirects: Vec<String>,
    /// Replies to send (vacation): recipient and the whole message.
    pub replies: Vec<(String, Vec<u8>)>,
    /// The script failed (a limit, an error): it acted as an implicit keep.
    pub failed: Option<String>,
}

impl Outcome {
    pub fn keep() -> Outcome {
        Outcome {
            filings: vec![Filing {
                folder: None,
                flags: Vec::new(),
                create: false,
            }],
            ..Outcome::default()
        }
    }
}

/// What a run knows about the message's arrival.
pub struct Arrival<'a> {
    pub account: Uuid,
    /// The address the message reached (an alias or group for vacation's `:from`).
    pub via: &'a str,
    pub display_name: &'a str,
    pub envelope_from: &'a str,
    /// The recipient address as written (with its `+tag`), for `envelope` and `subaddress`.
    pub envelope_to: &'a str,
}

/// Compiles and runs scripts under the limits.
pub struct Engine {
    compiler: Compiler,
    runtime: Runtime,
    limits: Limits,
    /// Compiled scripts by the SHA-1 of their text: a script is compiled
    /// once, not for every message (emptied when it reaches its bound).
    compiled: std::sync::Mutex<std::collections::HashMap<[u8; 20], Arc<sieve::Sieve>>>,
}

/// Compiled scripts kept at most.
const COMPILED_CACHE: usize = 4096;

impl Engine {
    pub fn new(hostname: &str, limits: Limits) -> Engine {
        let allowed: Vec<Capability> = EXTENSIONS.iter().map(|e| Capability::parse(e)).collect();
        let mut runtime = Runtime::new()
            .with_cpu_limit(limits.cpu)
            .with_max_redirects(limits.redirects)
            .with_max_out_messages(limits.replies)
            .with_local_hostname(hostname.to_owned())
            .with_vacation_default_subject("Automatic reply")
            .with_vacation_subject_prefix("Auto: ");
        for c in Capability::all() {
            if !allowed.contains(c) {
                runtime.unset_capability(c.clone());
            }
        }
        Engine {
            compiler: Compiler::new().with_max_script_size(tenants::store::MAX_SIEVE_SCRIPT_BYTES),
            runtime,
            limits,
            compiled: std::sync::Mutex::default(),
        }
    }

    /// [`Engine::check`], once per distinct script text.
    fn compiled(&self, script: &str) -> Result<Arc<sieve::Sieve>, ScriptError> {
        use sha1::Digest;
        let key: [u8; 20] = sha1::Sha1::digest(script.as_bytes()).into();
        let cache = || self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = cache().get(&key) {
            return Ok(found.clone());
        }
        let compiled = self.check(script)?;
        let mut cache = cache();
        if cache.len() >= COMPILED_CACHE {
            cache.clear();
        }
        cache.insert(key, compiled.clone());
        Ok(compiled)
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The `SIEVE` capability string of ManageSieve.
    pub fn extensions() -> String {
        EXTENSIONS.join(" ")
    }

    /// Compiles a script and tries it on an empty message, so that an
    /// extension this server does not allow is refused when the script is
    /// stored rather than when mail arrives.
    pub fn check(&self, script: &str) -> Result<Arc<sieve::Sieve>, ScriptError> {
        let compiled = self
            .compiler
            .compile(script.as_bytes())
            .map_err(|e| ScriptError {
                line: e.line_num(),
                column: e.line_pos(),
                message: e.to_string(),
            })?;
        let compiled = Arc::new(compiled);
        let mut ctx = self.runtime.filter(b"Subject: check\r\n\r\n");
        let mut input = Input::script("check", compiled.clone());
        while let Some(event) = ctx.run(input) {
            input = Input::False;
            match event {
                Err(sieve::runtime::RuntimeError::CapabilityNotAllowed(c)) => {
                    return Err(ScriptError {
                        line: 1,
                        column: 1,
                        message: format!("the extension `{c}` is not available here"),
                    });
                }
                Err(sieve::runtime::RuntimeError::CapabilityNotSupported(c)) => {
                    return Err(ScriptError {
                        line: 1,
                        column: 1,
                        message: format!("the extension `{c}` is not supported"),
                    });
                }
                Err(_) => break,
                Ok(_) => {}
            }
        }
        Ok(compiled)
    }

    /// Runs `scripts` (the tenant's, then the account's) on a message.
    /// A script that fails at run time acts as an implicit keep, as RFC
    /// 5228 §2.10.6 asks, and the failure is reported in the outcome.
    pub async fn run(
        &self,
        store: &Store,
        scripts: &[(String, String)],
        arrival: &Arrival<'_>,
        message: &[u8],
    ) -> Outcome {
        let mut outcome = Outcome::keep();
        for (i, (name, text)) in scripts.iter().enumerate() {
            let compiled = match self.compiled(text) {
                Ok(c) => c,
                Err(e) => {
                    outcome.failed = Some(format!("script `{name}` does not compile: {e}"));
                    continue;
                }
            };
            let this = self.run_one(store, name, compiled, arrival, message).await;
            if i == 0 || scripts.len() == 1 {
                outcome = this;
            } else {
                // The account's script decides where the message goes, unless
                // the tenant's already refused or discarded it; both may send.
                let ended = outcome.reject.is_some() || outcome.filings.is_empty();
                if !ended {
                    // The tenant's flags on its keep (a "mark as read") go
                    // with wherever the account's script files the message.
                    let tenant_flags: Vec<String> = outcome
                        .filings
                        .iter()
                        .filter(|f| f.folder.is_none())
                        .flat_map(|f| f.flags.clone())
                        .collect();
                    let tenant_filed: Vec<Filing> = outcome
                        .filings
                        .iter()
                        .filter(|f| f.folder.is_some())
                        .cloned()
                        .collect();
                    outcome.filings = tenant_filed;
                    for mut filing in this.filings {
                        for flag in &tenant_flags {
                            if !filing.flags.contains(flag) {
                                filing.flags.push(flag.clone());
                            }
                        }
                        outcome.filings.push(filing);
                    }
                    outcome.reject = this.reject;
                    outcome.failed = outcome.failed.or(this.failed);
                }
                outcome.redirects.extend(this.redirects);
                outcome.replies.extend(this.replies);
            }
            if outcome.reject.is_some() {
                break;
            }
        }
        outcome.filings.dedup();
        outcome
    }

    async fn run_one(
        &self,
        store: &Store,
        name: &str,
        compiled: Arc<sieve::Sieve>,
        arrival: &Arrival<'_>,
        message: &[u8],
    ) -> Outcome {
        let mut ctx = self
            .runtime
            .filter(message)
            .with_user_address(arrival.via.to_owned())
            .with_user_full_name(arrival.display_name);
        if !arrival.envelope_from.is_empty() {
            ctx.set_envelope(sieve::Envelope::From, arrival.envelope_from.to_owned());
        }
        ctx.set_envelope(sieve::Envelope::To, arrival.envelope_to.to_owned());
        let mut out = Outcome::default();
        let mut created: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut input = Input::script(name.to_owned(), compiled);
        while let Some(event) = ctx.run(input) {
            input = Input::True;
            match event {
                Ok(Event::Keep { flags, .. }) => {
                    out.filings.push(Filing {
                        folder: None,
                        flags,
                        create: false,
                    });
                }
                Ok(Event::FileInto {
                    folder,
                    flags,
                    create,
                    ..
                }) => out.filings.push(Filing {
                    folder: Some(folder),
                    flags,
                    create,
                }),
                Ok(Event::Discard) => {}
                Ok(Event::Reject { reason, .. }) => out.reject = Some(reason),
                Ok(Event::CreatedMessage {
                    message_id,
                    message,
                }) => created.push((message_id, message)),
                Ok(Event::SendMessage {
                    recipient,
                    message_id,
                    ..
                }) => {
                    let to = match recipient {
                        Recipient::Address(a) => vec![a],
                        Recipient::Group(g) => g,
                        Recipient::List(_) => Vec::new(),
                    };
                    // Message 0 is the one that arrived: a redirect. Others
                    // were written by the script (vacation).
                    if message_id == 0 {
                        out.redirects.extend(to);
                    } else if let Some((_, bytes)) =
                        created.iter().find(|(id, _)| *id == message_id)
                    {
                        for to in to {
                            out.replies.push((to, bytes.clone()));
                        }
                    }
                }
                Ok(Event::DuplicateId { id, expiry, .. }) => {
                    let until = chrono::Utc::now()
                        + chrono::Duration::seconds(expiry.min(365 * 86_400) as i64);
                    let key = memory_key(&id);
                    let remembered = store.sieve_remember(arrival.account, &key, until).await;
                    tracing::debug!(first = ?remembered.as_ref().ok(), "Sieve duplicate check");
                    input = match remembered {
                        // Newly remembered: not a duplicate.
                        Ok(true) => Input::False,
                        Ok(false) => Input::True,
                        Err(e) => {
                            tracing::warn!(error = %e, "Sieve memory unavailable; treating as already done");
                            Input::True
                        }
                    };
                }
                Ok(Event::MailboxExists { mailboxes, .. }) => {
                    let mut all = true;
                    for m in mailboxes {
                        let name = match m {
                            sieve::Mailbox::Name(n) => n,
                            sieve::Mailbox::Id(_) => {
                                all = false;
                                break;
                            }
                        };
                        match store
                            .mailbox_named(tenants::AccountId(arrival.account), &name)
                            .await
                        {
                            Ok(Some(_)) => {}
                            _ => {
                                all = false;
                                break;
                            }
                        }
                    }
                    input = if all { Input::True } else { Input::False };
                }
                Ok(Event::IncludeScript { .. })
                | Ok(Event::ListContains { .. })
                | Ok(Event::Function { .. }) => input = Input::False,
                Ok(Event::SetEnvelope { .. }) | Ok(Event::Notify { .. }) => {}
                Err(e) => {
                    tracing::info!(script = name, error = ?e, "a Sieve script stopped with an error; the message is kept");
                    return Outcome {
                        failed: Some(format!("script `{name}` failed: {e:?}")),
                        ..Outcome::keep()
                    };
                }
            }
        }
        out
    }
}

/// A short, fixed-size key for what a script remembers (the ids can hold
/// addresses: they are not stored as written).
fn memory_key(id: &str) -> String {
    use sha1::Digest;
    sha1::Sha1::digest(id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_error_names_its_line_and_column() {
        let engine = Engine::new("mail.test", Limits::default());
        let err = engine
            .check("require \"fileinto\";\nif header :contains \"subject\" {\n")
            .unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert!(err.column > 0, "{err}");
    }

    #[test]
    fn extensions_that_rewrite_the_message_are_refused() {
        let engine = Engine::new("mail.test", Limits::default());
        let err = engine
            .check("require \"editheader\";\naddheader \"X-A\" \"b\";\n")
            .unwrap_err();
        assert!(err.message.contains("editheader"), "{err}");
        engine
            .check("require [\"fileinto\", \"body\", \"vacation\", \"imap4flags\", \"copy\", \"variables\", \"relational\", \"subaddress\", \"date\", \"envelope\", \"reject\", \"ereject\"];\nkeep;\n")
            .expect("every extension the issue lists compiles");
    }
}
