//! The selected mailbox as one session sees it: its messages by UID (the
//! sequence number is the position), and what it last knew of the store.
//! [`View::apply`] turns the store's changes into the untagged responses
//! that tell the client (EXPUNGE, EXISTS, FETCH FLAGS).

use tenants::store::{MailboxChanges, ViewEntry};
use tenants::{Flag, Mailbox};

pub struct View {
    pub mailbox: Mailbox,
    pub read_only: bool,
    /// By UID, ascending; sequence number = index + 1.
    pub entries: Vec<ViewEntry>,
    /// The store's change counter this view reflects.
    pub modseq: i64,
    /// Expunges seen while the client may not be told (during FETCH,
    /// STORE and SEARCH by sequence number).
    pending_expunges: Vec<i64>,
}

impl View {
    pub fn new(mailbox: Mailbox, entries: Vec<ViewEntry>, read_only: bool) -> View {
        View {
            modseq: mailbox.highest_modseq,
            mailbox,
            read_only,
            entries,
            pending_expunges: Vec::new(),
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

    /// Takes these UIDs out of the view, telling the client with EXPUNGE
    /// responses from the highest number down (each renumbers only those
    /// after it); one pass over the view, however many go.
    pub fn remove(&mut self, uids: &[i64], out: &mut Vec<String>) {
        let gone: std::collections::HashSet<i64> = uids.iter().copied().collect();
        let mut positions: Vec<usize> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| gone.contains(&e.uid))
            .map(|(i, _)| i)
            .collect();
        positions.reverse();
        out.extend(positions.iter().map(|i| format!("* {} EXPUNGE", i + 1)));
        self.entries.retain(|e| !gone.contains(&e.uid));
    }

    /// Applies what changed; writes the untagged responses into `out`.
    /// With `may_expunge` false, expunges wait for a later call.
    pub fn apply(&mut self, changes: MailboxChanges, may_expunge: bool, out: &mut Vec<String>) {
        self.pending_expunges.extend(changes.expunged);
        if may_expunge && !self.pending_expunges.is_empty() {
            let pending = std::mem::take(&mut self.pending_expunges);
            self.remove(&pending, out);
        }
        let before = self.entries.len();
        let max = self.entries.last().map_or(0, |e| e.uid);
        for entry in changes.changed {
            if entry.uid > max {
                if self.entries.last().is_none_or(|last| last.uid < entry.uid) {
                    self.entries.push(entry);
                }
                continue;
            }
            if let Some(i) = self.index_of(entry.uid) {
                let known = &mut self.entries[i];
                let differ =
                    !same_flags(&known.flags, &entry.flags) || known.keywords != entry.keywords;
                if differ {
                    out.push(format!(
                        "* {} FETCH (UID {} FLAGS ({}))",
                        i + 1,
                        entry.uid,
                        flag_list(&entry.flags, &entry.keywords)
                    ));
                }
                *known = entry;
            }
        }
        if self.entries.len() != before {
            out.push(format!("* {} EXISTS", self.entries.len()));
        }
        self.modseq = self.modseq.max(changes.highest_modseq);
    }
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
        view.apply(changes, true, &mut out);
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
        let mut out = Vec::new();
        view.apply(
            MailboxChanges {
                highest_modseq: 6,
                changed: vec![],
                expunged: vec![1],
            },
            false,
            &mut out,
        );
        assert!(out.is_empty());
        assert_eq!(view.exists(), 3);
        view.apply(
            MailboxChanges {
                highest_modseq: 6,
                ..MailboxChanges::default()
            },
            true,
            &mut out,
        );
        assert_eq!(out, vec!["* 1 EXPUNGE"]);
        assert_eq!(view.exists(), 2);
    }
}
