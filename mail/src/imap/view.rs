//! The selected mailbox as one session sees it: its messages by UID (the
//! sequence number is the position), the keywords it told the client of,
//! and what it last knew of the store. [`View::apply`] turns the store's
//! changes into the untagged responses that tell the client (EXPUNGE or
//! VANISHED, EXISTS, FLAGS, FETCH FLAGS).

use tenants::store::{MailboxChanges, ViewEntry};
use tenants::{Flag, Mailbox};

/// Keywords every mailbox offers, announced in FLAGS whether used or not.
pub const DEFAULT_KEYWORDS: [&str; 4] = ["$Forwarded", "$MDNSent", "$Junk", "$NotJunk"];

pub struct View {
    pub mailbox: Mailbox,
    pub read_only: bool,
    /// By UID, ascending; sequence number = index + 1.
    pub entries: Vec<ViewEntry>,
    /// The store's change counter this view reflects.
    pub modseq: i64,
    /// Keywords the client was told of in FLAGS: a FETCH never shows one
    /// that is not among them (RFC 9051 §7.3.5).
    keywords: Vec<String>,
    /// CONDSTORE is on: flag changes carry their MODSEQ.
    pub condstore: bool,
    /// QRESYNC is on: expunges are told as VANISHED, by UID.
    pub qresync: bool,
}

impl View {
    pub fn new(mailbox: Mailbox, entries: Vec<ViewEntry>, read_only: bool) -> View {
        let mut keywords: Vec<String> = DEFAULT_KEYWORDS.iter().map(|k| (*k).to_owned()).collect();
        for entry in &entries {
            for keyword in &entry.keywords {
                if !keywords.iter().any(|k| k.eq_ignore_ascii_case(keyword)) {
                    keywords.push(keyword.clone());
                }
            }
        }
        View {
            modseq: mailbox.highest_modseq,
            mailbox,
            read_only,
            entries,
            keywords,
            condstore: false,
            qresync: false,
        }
    }

    /// The untagged FLAGS response: system flags and every keyword known.
    pub fn flags_line(&self) -> String {
        format!(
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft {})",
            self.keywords.join(" ")
        )
    }

    /// The untagged PERMANENTFLAGS response: the flags and keywords that
    /// stay, and `\*` (any keyword may be made); none when read-only.
    pub fn permanent_line(&self) -> String {
        if self.read_only {
            return "* OK [PERMANENTFLAGS ()] the mailbox is read-only".into();
        }
        format!(
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft {} \\*)] flags that stay",
            self.keywords.join(" ")
        )
    }

    /// Tells the client of keywords it has not been told of yet, before a
    /// response that shows them.
    pub fn announce(&mut self, keywords: &[String], out: &mut Vec<String>) {
        let mut new = false;
        for keyword in keywords {
            if !self
                .keywords
                .iter()
                .any(|k| k.eq_ignore_ascii_case(keyword))
            {
                self.keywords.push(keyword.clone());
                new = true;
            }
        }
        if new {
            out.push(self.flags_line());
            if !self.read_only {
                out.push(self.permanent_line());
            }
        }
    }

    /// `* n FETCH (UID u FLAGS (...))`, with `MODSEQ` under CONDSTORE and
    /// `\Recent` when `recent`.
    pub fn flags_fetch(&self, i: usize, recent: bool) -> String {
        let entry = &self.entries[i];
        let mut flags = flag_list(&entry.flags, &entry.keywords);
        if recent {
            flags = if flags.is_empty() {
                "\\Recent".into()
            } else {
                format!("\\Recent {flags}")
            };
        }
        if self.condstore {
            format!(
                "* {} FETCH (UID {} FLAGS ({flags}) MODSEQ ({}))",
                i + 1,
                entry.uid,
                entry.modseq
            )
        } else {
            format!("* {} FETCH (UID {} FLAGS ({flags}))", i + 1, entry.uid)
        }
    }

    pub fn exists(&self) -> u32 {
        self.entries.len() as u32
    }

    pub fn max_uid(&self) -> u32 {
        self.entries.last().map_or(0, |e| e.uid as u32)
    }

    pub fn index_of(&self, uid: i64) -> Option<usize> {
        self.entries.binary_search_by_key(&uid, |e| e.uid).ok()
    }

    /// Takes these UIDs out of the view, telling the client: one VANISHED
    /// under QRESYNC, else EXPUNGE responses from the highest number down
    /// (each renumbers only those after it); one pass over the view,
    /// however many go.
    pub fn remove(&mut self, uids: &[i64], out: &mut Vec<String>) {
        let gone: std::collections::HashSet<i64> = uids.iter().copied().collect();
        let mut positions: Vec<usize> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| gone.contains(&e.uid))
            .map(|(i, _)| i)
            .collect();
        if self.qresync {
            if !positions.is_empty() {
                let uids: Vec<i64> = positions.iter().map(|&i| self.entries[i].uid).collect();
                out.push(format!("* VANISHED {}", uid_set(&uids)));
            }
        } else {
            positions.reverse();
            out.extend(positions.iter().map(|i| format!("* {} EXPUNGE", i + 1)));
        }
        self.entries.retain(|e| !gone.contains(&e.uid));
    }

    /// Applies what changed; writes the untagged responses into `out`.
    /// With `may_expunge` false (sequence numbers in use, during FETCH,
    /// STORE and SEARCH by number) changes that hold an expunge are not
    /// applied at all and the view's modseq stays, so that the store gives
    /// them again later: a MODSEQ told beyond a held expunge would let a
    /// QRESYNC client skip it (RFC 7162 §3.2.10). Returns whether they were
    /// applied. `recent` says whether a UID is \Recent to the session.
    pub fn apply(
        &mut self,
        changes: MailboxChanges,
        may_expunge: bool,
        recent: &dyn Fn(i64) -> bool,
        out: &mut Vec<String>,
    ) -> bool {
        if !changes.expunged.is_empty() {
            if !may_expunge {
                return false;
            }
            self.remove(&changes.expunged, out);
        }
        let before = self.entries.len();
        let max = self.entries.last().map_or(0, |e| e.uid);
        for entry in changes.changed {
            self.announce(&entry.keywords, out);
            if entry.uid > max {
                if self.entries.last().is_none_or(|last| last.uid < entry.uid) {
                    self.entries.push(entry);
                }
                continue;
            }
            if let Some(i) = self.index_of(entry.uid) {
                let known = &self.entries[i];
                let differ =
                    !same_flags(&known.flags, &entry.flags) || known.keywords != entry.keywords;
                let uid = entry.uid;
                self.entries[i] = entry;
                if differ {
                    out.push(self.flags_fetch(i, recent(uid)));
                }
            }
        }
        if self.entries.len() != before {
            out.push(format!("* {} EXISTS", self.entries.len()));
        }
        self.modseq = self.modseq.max(changes.highest_modseq);
        true
    }
}

/// A UID set in its shortest form: `3:5,9` (the UIDs ascending).
pub fn uid_set(uids: &[i64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
        i += 1;
    }
    parts.join(",")
}

fn same_flags(a: &[Flag], b: &[Flag]) -> bool {
    a.len() == b.len() && a.iter().all(|f| b.contains(f))
}

/// Flags and keywords as IMAP writes them, space-separated.
pub fn flag_list(flags: &[Flag], keywords: &[String]) -> String {
    let mut out: Vec<&str> = Vec::with_capacity(flags.len() + keywords.len());
    for flag in [
        Flag::Seen,
        Flag::Answered,
        Flag::Flagged,
        Flag::Deleted,
        Flag::Draft,
    ] {
        if flags.contains(&flag) {
            out.push(system_flag(flag));
        }
    }
    out.extend(keywords.iter().map(String::as_str));
    out.join(" ")
}

pub fn system_flag(flag: Flag) -> &'static str {
    match flag {
        Flag::Seen => "\\Seen",
        Flag::Answered => "\\Answered",
        Flag::Flagged => "\\Flagged",
        Flag::Deleted => "\\Deleted",
        Flag::Draft => "\\Draft",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use tenants::{AccountId, Level, MailboxId, MessageId};

    fn entry(uid: i64, flags: Vec<Flag>) -> ViewEntry {
        ViewEntry {
            uid,
            modseq: 1,
            flags,
            keywords: Vec::new(),
            rfc822_size: 10,
            received_at: Utc::now(),
            level: Level::Standard,
            id: MessageId::new(),
        }
    }

    fn mailbox() -> Mailbox {
        Mailbox {
            id: MailboxId::new(),
            account_id: AccountId::new(),
            name: "INBOX".into(),
            role: None,
            uid_validity: 7,
            uid_next: 10,
            highest_modseq: 5,
            subscribed: true,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn expunges_renumber_from_the_top_and_new_mail_counts_once() {
        let mut view = View::new(
            mailbox(),
            (1..=5).map(|u| entry(u, vec![])).collect(),
            false,
        );
        let mut out = Vec::new();
        let changes = MailboxChanges {
            highest_modseq: 9,
            changed: vec![entry(3, vec![Flag::Seen]), entry(8, vec![])],
            expunged: vec![2, 4],
        };
        view.apply(changes, true, &|_| false, &mut out);
        assert_eq!(
            out,
            vec![
                "* 4 EXPUNGE",
                "* 2 EXPUNGE",
                "* 2 FETCH (UID 3 FLAGS (\\Seen))",
                "* 4 EXISTS"
            ]
        );
        assert_eq!(
            view.entries.iter().map(|e| e.uid).collect::<Vec<_>>(),
            vec![1, 3, 5, 8]
        );
        assert_eq!(view.modseq, 9);
    }

    #[test]
    fn expunges_wait_when_the_client_may_not_be_told() {
        let mut view = View::new(
            mailbox(),
            (1..=3).map(|u| entry(u, vec![])).collect(),
            false,
        );
        let changes = || MailboxChanges {
            highest_modseq: 6,
            changed: vec![entry(2, vec![Flag::Seen])],
            expunged: vec![1],
        };
        let mut out = Vec::new();
        // Held whole: no EXPUNGE, and no flag change or modseq beyond it.
        assert!(!view.apply(changes(), false, &|_| false, &mut out));
        assert!(out.is_empty());
        assert_eq!(view.exists(), 3);
        assert_eq!(view.modseq, 5);
        // The store gives the same changes again; now they are told.
        assert!(view.apply(changes(), true, &|_| false, &mut out));
        assert_eq!(out, vec!["* 1 EXPUNGE", "* 1 FETCH (UID 2 FLAGS (\\Seen))"]);
        assert_eq!(view.exists(), 2);
        assert_eq!(view.modseq, 6);
    }
}
