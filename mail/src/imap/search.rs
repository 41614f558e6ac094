//! IMAP SEARCH (RFC 9051 §6.4.4, RFC 3501 §6.4.4) on one message of the
//! selected mailbox: this module owns what each search key means here; the
//! caller owns parsing the command, walking the mailbox and the response.
//!
//! What the server may read depends on the message's confidentiality level.
//! At `standard` it has the plaintext ([`Candidate::content`]); above that
//! (sealed, OpenPGP-encrypted) it knows only flags, dates, size and UID, so
//! every key that needs the content (`SUBJECT`, `FROM`, `TO`, `CC`, `BCC`,
//! `HEADER`, `BODY`, `TEXT`, `SENTBEFORE`, `SENTON`, `SENTSINCE`) does not
//! match such a message, and its negation does: `NOT SUBJECT x` matches every
//! sealed message. A client that needs more must search on its side.
//!
//! Strings match as case-insensitive substrings after RFC 2047 decoding of
//! header values and transfer/charset decoding of text parts (HTML parts are
//! reduced to their text). Case folding is Unicode lower-casing of both sides,
//! an approximation of `i;unicode-casemap` without normalisation. `\Recent`
//! is never set on this server: `RECENT` and `NEW` match nothing, `OLD`
//! matches every message.

use std::borrow::Cow;
use std::cell::OnceCell;

use chrono::{DateTime, NaiveDate, Utc};
use imap_types::core::AString;
use imap_types::search::SearchKey;
use imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use mail_parser::decoders::html::html_to_text;
use mail_parser::parsers::MessageStream;
use mail_parser::{Addr, Address, HeaderValue, Message, MessageParser, PartType};

/// What the server knows of one message in the selected mailbox.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub seq: u32,
    pub uid: u32,
    pub seen: bool,
    pub answered: bool,
    pub flagged: bool,
    pub deleted: bool,
    pub draft: bool,
    /// Keywords as stored, e.g. "$Forwarded", compared case-insensitively.
    pub keywords: &'a [String],
    /// INTERNALDATE.
    pub internal_date: DateTime<Utc>,
    /// RFC822.SIZE.
    pub size: u64,
    /// \Recent to this session.
    pub recent: bool,
    /// Its MODSEQ (RFC 7162).
    pub modseq: u64,
    /// The plaintext message, only when the server may read it (level `standard`).
    pub content: Option<&'a [u8]>,
}

/// The numbers `*` stands for in this mailbox (largest seq = message count,
/// largest UID in the mailbox; 0 when empty).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_seq: u32,
    pub max_uid: u32,
}

/// Whether a MODSEQ key is among the criteria (the answer then ends with
/// the highest modseq of what matched, RFC 7162 §3.1.5).
pub fn uses_modseq(keys: &[SearchKey<'_>]) -> bool {
    fn one(key: &SearchKey<'_>) -> bool {
        match key {
            SearchKey::ModSequence { .. } => true,
            SearchKey::And(keys) => keys.as_ref().iter().any(one),
            SearchKey::Not(key) => one(key),
            SearchKey::Or(a, b) => one(a) || one(b),
            _ => false,
        }
    }
    keys.iter().any(one)
}

/// Whether any key needs the message's content (header, body, text,
/// sent-date keys), so the caller fetches and decrypts it only then.
pub fn needs_content(keys: &[SearchKey<'_>]) -> bool {
    keys.iter().any(key_needs_content)
}

/// Whether any key looks past the header (BODY, TEXT): the others are
/// answered by the header alone, which the message's summary holds.
pub fn needs_body(keys: &[SearchKey<'_>]) -> bool {
    fn one(key: &SearchKey<'_>) -> bool {
        match key {
            SearchKey::Body(_) | SearchKey::Text(_) => true,
            SearchKey::And(keys) => keys.as_ref().iter().any(one),
            SearchKey::Not(key) => one(key),
            SearchKey::Or(a, b) => one(a) || one(b),
            _ => false,
        }
    }
    keys.iter().any(one)
}

/// Whether the message matches all the keys (the top-level list of a SEARCH
/// is an AND).
pub fn matches(keys: &[SearchKey<'_>], m: &Candidate<'_>, bounds: Bounds) -> bool {
    let readable = Readable::new(m.content);
    keys.iter()
        .all(|key| key_matches(key, m, bounds, &readable))
}

/// Whether `n` is in the set, with `*` standing for `largest` (RFC 9051:
/// `n:m` is the same as `m:n`; with `*` and an empty mailbox nothing matches).
pub fn in_set(set: &SequenceSet, n: u32, largest: u32) -> bool {
    set.0
        .as_ref()
        .iter()
        .any(|sequence| in_sequence(sequence, n, largest))
}

fn in_sequence(sequence: &Sequence, n: u32, largest: u32) -> bool {
    // `*` in an empty mailbox stands for no message at all, not for 0, so
    // `1:*` must not turn into `0:1`.
    let resolve = |bound: &SeqOrUid| match bound {
        SeqOrUid::Value(value) => Some(value.get()),
        SeqOrUid::Asterisk => (largest != 0).then_some(largest),
    };
    match sequence {
        Sequence::Single(bound) => resolve(bound) == Some(n),
        Sequence::Range(a, b) => match (resolve(a), resolve(b)) {
            (Some(a), Some(b)) => (a.min(b)..=a.max(b)).contains(&n),
            _ => false,
        },
    }
}

// Every variant is listed, so that a key added by an `imap-types` feature
// fails to compile here instead of silently not needing the content.
fn key_needs_content(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::Bcc(_)
        | SearchKey::Body(_)
        | SearchKey::Cc(_)
        | SearchKey::From(_)
        | SearchKey::Header(..)
        | SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_)
        | SearchKey::Subject(_)
        | SearchKey::Text(_)
        | SearchKey::To(_) => true,
        SearchKey::And(keys) => keys.as_ref().iter().any(key_needs_content),
        SearchKey::Not(key) => key_needs_content(key),
        SearchKey::Or(a, b) => key_needs_content(a) || key_needs_content(b),
        SearchKey::SequenceSet(_)
        | SearchKey::All
        | SearchKey::Answered
        | SearchKey::Before(_)
        | SearchKey::Deleted
        | SearchKey::Draft
        | SearchKey::Flagged
        | SearchKey::Keyword(_)
        | SearchKey::Larger(_)
        | SearchKey::New
        | SearchKey::Old
        | SearchKey::On(_)
        | SearchKey::Recent
        | SearchKey::Seen
        | SearchKey::Since(_)
        | SearchKey::Smaller(_)
        | SearchKey::Uid(_)
        | SearchKey::Unanswered
        | SearchKey::Undeleted
        | SearchKey::Undraft
        | SearchKey::Unflagged
        | SearchKey::Unkeyword(_)
        | SearchKey::Unseen
        | SearchKey::ModSequence { .. } => false,
    }
}

fn key_matches(key: &SearchKey<'_>, m: &Candidate<'_>, bounds: Bounds, r: &Readable<'_>) -> bool {
    let internal_date = || m.internal_date.date_naive();
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().all(|k| key_matches(k, m, bounds, r)),
        SearchKey::Not(key) => !key_matches(key, m, bounds, r),
        SearchKey::Or(a, b) => key_matches(a, m, bounds, r) || key_matches(b, m, bounds, r),
        SearchKey::SequenceSet(set) => in_set(set, m.seq, bounds.max_seq),
        SearchKey::Uid(set) => in_set(set, m.uid, bounds.max_uid),
        SearchKey::All => true,

        SearchKey::Answered => m.answered,
        SearchKey::Deleted => m.deleted,
        SearchKey::Draft => m.draft,
        SearchKey::Flagged => m.flagged,
        SearchKey::Seen => m.seen,
        SearchKey::Unanswered => !m.answered,
        SearchKey::Undeleted => !m.deleted,
        SearchKey::Undraft => !m.draft,
        SearchKey::Unflagged => !m.flagged,
        SearchKey::Unseen => !m.seen,
        SearchKey::Keyword(keyword) => has_keyword(m, keyword.inner()),
        SearchKey::Unkeyword(keyword) => !has_keyword(m, keyword.inner()),
        // NEW is RECENT UNSEEN, OLD is NOT RECENT.
        SearchKey::Recent => m.recent,
        SearchKey::New => m.recent && !m.seen,
        SearchKey::Old => !m.recent,
        // Per-message modseqs only: the entry name and type are not kept apart.
        SearchKey::ModSequence { modseq, .. } => m.modseq >= *modseq,

        SearchKey::Before(date) => internal_date() < *date.as_ref(),
        SearchKey::On(date) => internal_date() == *date.as_ref(),
        SearchKey::Since(date) => internal_date() >= *date.as_ref(),
        SearchKey::SentBefore(date) => r.sent_date().is_some_and(|sent| sent < *date.as_ref()),
        SearchKey::SentOn(date) => r.sent_date().is_some_and(|sent| sent == *date.as_ref()),
        SearchKey::SentSince(date) => r.sent_date().is_some_and(|sent| sent >= *date.as_ref()),

        SearchKey::Larger(n) => m.size > u64::from(*n),
        SearchKey::Smaller(n) => m.size < u64::from(*n),

        SearchKey::Bcc(s) => r.field_contains("Bcc", &needle(s)),
        SearchKey::Cc(s) => r.field_contains("Cc", &needle(s)),
        SearchKey::From(s) => r.field_contains("From", &needle(s)),
        SearchKey::To(s) => r.field_contains("To", &needle(s)),
        SearchKey::Subject(s) => r.field_contains("Subject", &needle(s)),
        SearchKey::Header(field, s) => {
            r.field_contains(&String::from_utf8_lossy(field.as_ref()), &needle(s))
        }
        SearchKey::Body(s) => r.body_contains(&needle(s)),
        SearchKey::Text(s) => {
            let needle = needle(s);
            r.header_contains(&needle) || r.body_contains(&needle)
        }
    }
}

fn has_keyword(m: &Candidate<'_>, keyword: &str) -> bool {
    m.keywords.iter().any(|k| k.eq_ignore_ascii_case(keyword))
}

/// The search string as the lower-cased text it is compared as. The caller
/// refuses charsets other than US-ASCII and UTF-8 (`BADCHARSET`), so the bytes
/// are UTF-8 here; a stray invalid byte becomes U+FFFD and simply finds nothing.
fn needle(s: &AString<'_>) -> String {
    String::from_utf8_lossy(s.as_ref()).to_lowercase()
}

/// One header field of the message, lower-cased for matching.
struct FieldText {
    name: String,
    /// The RFC 2047-decoded value, then, for address fields, each display
    /// name and address as parsed (names inside quotes are decoded there).
    values: Vec<String>,
}

/// The readable content of a candidate, parsed and lower-cased only as far
/// as the keys ask, and at most once per message.
struct Readable<'a> {
    content: Option<&'a [u8]>,
    message: OnceCell<Option<Message<'a>>>,
    fields: OnceCell<Vec<FieldText>>,
    body: OnceCell<Vec<String>>,
}

impl<'a> Readable<'a> {
    fn new(content: Option<&'a [u8]>) -> Self {
        Self {
            content,
            message: OnceCell::new(),
            fields: OnceCell::new(),
            body: OnceCell::new(),
        }
    }

    fn message(&self) -> Option<&Message<'a>> {
        self.message
            .get_or_init(|| self.content.and_then(|c| MessageParser::default().parse(c)))
            .as_ref()
    }

    fn fields(&self) -> &[FieldText] {
        self.fields
            .get_or_init(|| self.message().map(top_fields).unwrap_or_default())
    }

    fn body(&self) -> &[String] {
        self.body.get_or_init(|| {
            let mut texts = Vec::new();
            if let Some(message) = self.message() {
                collect_body(message, &mut texts);
            }
            texts
        })
    }

    /// Whether a field called `name` exists and contains `needle`; an empty
    /// needle asks only for the field to exist (RFC 9051 `HEADER`).
    fn field_contains(&self, name: &str, needle: &str) -> bool {
        self.fields().iter().any(|field| {
            field.name.eq_ignore_ascii_case(name)
                && field.values.iter().any(|value| value.contains(needle))
        })
    }

    fn header_contains(&self, needle: &str) -> bool {
        self.fields().iter().any(|field| {
            field.name.contains(needle) || field.values.iter().any(|v| v.contains(needle))
        })
    }

    fn body_contains(&self, needle: &str) -> bool {
        self.body().iter().any(|text| text.contains(needle))
    }

    /// The date of the `Date:` field in its own zone (RFC 9051: time and
    /// timezone disregarded).
    fn sent_date(&self) -> Option<NaiveDate> {
        let date = self.message()?.date()?;
        NaiveDate::from_ymd_opt(date.year.into(), date.month.into(), date.day.into())
    }
}

fn top_fields(message: &Message<'_>) -> Vec<FieldText> {
    message
        .headers()
        .iter()
        .map(|header| {
            let raw = message
                .raw_message
                .get(header.offset_start as usize..header.offset_end as usize)
                .unwrap_or_default();
            let mut values = vec![decode_unstructured(raw).to_lowercase()];
            if let HeaderValue::Address(address) = &header.value {
                push_addresses(address, &mut values);
            }
            FieldText {
                name: header.name.as_str().to_lowercase(),
                values,
            }
        })
        .collect()
}

/// The field value as text with RFC 2047 encoded words decoded.
fn decode_unstructured(raw: &[u8]) -> String {
    // The parser reads up to the line end; the last field of a message
    // without a body may lack one.
    let raw: Cow<'_, [u8]> = if raw.ends_with(b"\n") {
        Cow::Borrowed(raw)
    } else {
        let mut owned = raw.to_vec();
        owned.extend_from_slice(b"\r\n");
        Cow::Owned(owned)
    };
    match MessageStream::new(&raw).parse_unstructured() {
        HeaderValue::Text(text) => text.into_owned(),
        HeaderValue::TextList(texts) => texts.join(" "),
        _ => String::new(),
    }
}

fn push_addresses(address: &Address<'_>, values: &mut Vec<String>) {
    let mut push_addr = |addr: &Addr<'_>| {
        values.extend(addr.name.iter().map(|name| name.to_lowercase()));
        values.extend(addr.address.iter().map(|address| address.to_lowercase()));
    };
    match address {
        Address::List(list) => list.iter().for_each(&mut push_addr),
        Address::Group(groups) => {
            for group in groups {
                group.addresses.iter().for_each(&mut push_addr);
            }
            values.extend(
                groups
                    .iter()
                    .filter_map(|group| group.name.as_ref())
                    .map(|name| name.to_lowercase()),
            );
        }
    }
}

/// The lower-cased texts `BODY` looks in: every decoded text part, and of an
/// attached message its header fields too, since they are the outer body.
/// Binary parts are not text and are left out.
fn collect_body(message: &Message<'_>, texts: &mut Vec<String>) {
    for part in &message.parts {
        match &part.body {
            PartType::Text(text) => texts.push(text.to_lowercase()),
            PartType::Html(html) => texts.push(html_to_text(html).to_lowercase()),
            PartType::Message(inner) => {
                for field in top_fields(inner) {
                    texts.push(field.name);
                    texts.extend(field.values);
                }
                collect_body(inner, texts);
            }
            PartType::Binary(_) | PartType::InlineBinary(_) | PartType::Multipart(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use imap_codec::CommandCodec;
    use imap_codec::decode::Decoder;
    use imap_types::command::CommandBody;
    use proptest::prelude::*;

    /// The search keys of a real command line, parsed by `imap-codec`.
    fn keys(line: &str) -> Vec<SearchKey<'static>> {
        let input = format!("{line}\r\n");
        let (rest, command) = CommandCodec::default()
            .decode_static(input.as_bytes())
            .unwrap_or_else(|e| panic!("{line:?} does not parse: {e:?}"));
        assert!(rest.is_empty(), "{line:?} left {rest:?}");
        match command.body {
            CommandBody::Search { criteria, .. } => criteria.into_inner(),
            other => panic!("{line:?} is not a SEARCH: {other:?}"),
        }
    }

    /// The sequence set of `SEARCH <set>`.
    fn set(text: &str) -> SequenceSet {
        match keys(&format!("a SEARCH {text}")).as_slice() {
            [SearchKey::SequenceSet(set)] => set.clone(),
            other => panic!("{text:?} is not one sequence set: {other:?}"),
        }
    }

    const BOUNDS: Bounds = Bounds {
        max_seq: 3,
        max_uid: 30,
    };

    fn candidate(content: Option<&[u8]>) -> Candidate<'_> {
        Candidate {
            seq: 1,
            uid: 10,
            seen: false,
            answered: false,
            flagged: false,
            deleted: false,
            draft: false,
            keywords: &[],
            internal_date: Utc.with_ymd_and_hms(2026, 2, 1, 12, 0, 0).unwrap(),
            size: 1000,
            recent: false,
            modseq: 1,
            content,
        }
    }

    const SIMPLE: &[u8] = b"Date: Sun, 1 Feb 2026 23:30:00 -0800\r\n\
From: Alice Example <alice@example.com>\r\n\
To: =?UTF-8?Q?Bj=C3=B6rn?= <bjorn@example.org>\r\n\
Cc: carol@example.net\r\n\
Subject: =?UTF-8?Q?R=C3=A9union_caf=C3=A9?=\r\n\
X-Mailer: Caliop Test 1.0\r\n\
\r\n\
See you at the meeting, hello to all.\r\n";

    const MULTIPART: &[u8] = b"From: Bob <bob@example.com>\r\n\
To: alice@example.com\r\n\
Subject: Multipart agenda\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
--outer\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Un caf=C3=A9 demain ?\r\n\
--outer\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>Say <b>HELLO</b> to everyone</p>\r\n\
--outer\r\n\
Content-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
emVicmEgc3RyaXBlcw==\r\n\
--outer--\r\n";

    fn matches_line(line: &str, m: &Candidate<'_>) -> bool {
        matches(&keys(line), m, BOUNDS)
    }

    #[test]
    fn unseen_larger_is_strict_and_needs_no_content() {
        let k = keys("a SEARCH UNSEEN LARGER 100");
        assert!(!needs_content(&k));
        let mut m = candidate(None);
        m.size = 101;
        assert!(matches(&k, &m, BOUNDS));
        m.size = 100;
        assert!(!matches(&k, &m, BOUNDS));
        m.size = 101;
        m.seen = true;
        assert!(!matches(&k, &m, BOUNDS));

        let mut m = candidate(None);
        m.size = 100;
        assert!(!matches_line("a SEARCH SMALLER 100", &m));
        assert!(matches_line("a SEARCH SMALLER 101", &m));
    }

    #[test]
    fn uid_search_or_from_subject_not_deleted() {
        let line = "a UID SEARCH OR FROM alice SUBJECT \"hello\" NOT DELETED";
        let k = keys(line);
        assert!(needs_content(&k));
        let from_alice = candidate(Some(SIMPLE));
        assert!(matches(&k, &from_alice, BOUNDS));

        let mut deleted = candidate(Some(SIMPLE));
        deleted.deleted = true;
        assert!(!matches(&k, &deleted, BOUNDS));

        // From Bob, subject "Multipart agenda": neither side of the OR.
        assert!(!matches(&k, &candidate(Some(MULTIPART)), BOUNDS));

        let hello = b"From: Bob <bob@example.com>\r\nSubject: HELLO again\r\n\r\nhi\r\n";
        assert!(matches(&k, &candidate(Some(hello)), BOUNDS));
    }

    #[test]
    fn sequence_range_to_star_and_internal_date() {
        let k = keys("a SEARCH 2:* SINCE 1-Feb-2026");
        assert!(!needs_content(&k));
        let mut m = candidate(None);
        m.seq = 1;
        assert!(!matches(&k, &m, BOUNDS), "seq 1 is outside 2:*");
        m.seq = 3;
        assert!(matches(&k, &m, BOUNDS));
        m.internal_date = Utc.with_ymd_and_hms(2026, 1, 31, 23, 59, 59).unwrap();
        assert!(!matches(&k, &m, BOUNDS), "31 Jan is before 1 Feb");
        m.internal_date = Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap();
        assert!(matches(&k, &m, BOUNDS), "SINCE includes the day itself");
    }

    #[test]
    fn internal_date_ignores_the_time_of_day() {
        let mut m = candidate(None);
        m.internal_date = Utc.with_ymd_and_hms(2026, 2, 1, 23, 30, 0).unwrap();
        assert!(matches_line("a SEARCH ON 1-Feb-2026", &m));
        assert!(!matches_line("a SEARCH ON 2-Feb-2026", &m));
        assert!(!matches_line("a SEARCH BEFORE 1-Feb-2026", &m));
        assert!(matches_line("a SEARCH BEFORE 2-Feb-2026", &m));
        assert!(matches_line("a SEARCH SINCE \"1-Feb-2026\"", &m));
        assert!(!matches_line("a SEARCH SINCE 2-Feb-2026", &m));
    }

    #[test]
    fn sent_dates_use_the_date_field_in_its_own_zone() {
        // 23:30 -0800 on 1 Feb is 2 Feb in UTC; the RFC wants 1 Feb.
        let m = candidate(Some(SIMPLE));
        let k = keys("a SEARCH SENTON 1-Feb-2026");
        assert!(needs_content(&k));
        assert!(matches(&k, &m, BOUNDS));
        assert!(!matches_line("a SEARCH SENTON 2-Feb-2026", &m));
        assert!(matches_line("a SEARCH SENTBEFORE 2-Feb-2026", &m));
        assert!(!matches_line("a SEARCH SENTBEFORE 1-Feb-2026", &m));
        assert!(matches_line("a SEARCH SENTSINCE 1-Feb-2026", &m));
        assert!(!matches_line("a SEARCH SENTSINCE 2-Feb-2026", &m));

        // Without a Date field no sent-date key matches.
        let undated = candidate(Some(MULTIPART));
        assert!(!matches_line("a SEARCH SENTBEFORE 1-Jan-2100", &undated));
        assert!(!matches_line("a SEARCH SENTSINCE 1-Jan-1970", &undated));
    }

    #[test]
    fn header_with_empty_string_asks_for_the_field() {
        let k = keys("a SEARCH HEADER X-Mailer \"\"");
        assert!(needs_content(&k));
        assert!(matches(&k, &candidate(Some(SIMPLE)), BOUNDS));
        assert!(!matches(&k, &candidate(Some(MULTIPART)), BOUNDS));
        assert!(matches_line(
            "a SEARCH HEADER x-mailer \"caliop test\"",
            &candidate(Some(SIMPLE))
        ));
        assert!(!matches_line(
            "a SEARCH HEADER X-Mailer outlook",
            &candidate(Some(SIMPLE))
        ));
        // The field name is not part of its value.
        assert!(!matches_line(
            "a SEARCH HEADER X-Mailer mailer",
            &candidate(Some(SIMPLE))
        ));
    }

    #[test]
    fn keyword_and_unkeyword_ignore_case() {
        let stored = vec!["$forwarded".to_string(), "Work".to_string()];
        let mut m = candidate(None);
        m.keywords = &stored;
        let k = keys("a SEARCH KEYWORD $Forwarded");
        assert!(!needs_content(&k));
        assert!(matches(&k, &m, BOUNDS));
        assert!(!matches_line("a SEARCH UNKEYWORD $Forwarded", &m));
        assert!(matches_line("a SEARCH KEYWORD work", &m));
        assert!(!matches_line("a SEARCH KEYWORD $Junk", &m));
        assert!(matches_line("a SEARCH UNKEYWORD $Junk", &m));
        assert!(!matches_line(
            "a SEARCH KEYWORD $Forwarded",
            &candidate(None)
        ));
    }

    #[test]
    fn text_finds_utf8_in_decoded_header_and_body() {
        // imap-codec takes 8-bit strings only as literals, which is what
        // clients send for non-ASCII text.
        let k = keys("a SEARCH CHARSET UTF-8 TEXT {5}\r\ncafé");
        assert!(needs_content(&k));
        // In the RFC 2047 encoded Subject.
        assert!(matches(&k, &candidate(Some(SIMPLE)), BOUNDS));
        // In the quoted-printable body part.
        assert!(matches(&k, &candidate(Some(MULTIPART)), BOUNDS));
        assert!(!matches(
            &k,
            &candidate(Some(b"Subject: tea\r\n\r\ncafe\r\n")),
            BOUNDS
        ));
        assert!(!matches(&k, &candidate(None), BOUNDS));

        // TEXT looks in headers, BODY does not.
        let multipart = candidate(Some(MULTIPART));
        assert!(matches_line("a SEARCH TEXT agenda", &multipart));
        assert!(!matches_line("a SEARCH BODY agenda", &multipart));
    }

    #[test]
    fn header_keys_decode_encoded_words_and_ignore_case() {
        let m = candidate(Some(SIMPLE));
        // "RÉUNION" is 8 bytes in UTF-8.
        assert!(matches_line(
            "a SEARCH CHARSET UTF-8 SUBJECT {8}\r\nRÉUNION",
            &m
        ));
        assert!(
            !matches_line("a SEARCH SUBJECT C3", &m),
            "the encoded form is not the value"
        );
        assert!(matches_line("a SEARCH CHARSET UTF-8 TO {6}\r\nbjörn", &m));
        assert!(matches_line("a SEARCH TO bjorn@example.org", &m));
        assert!(matches_line("a SEARCH FROM \"Alice Example\"", &m));
        assert!(matches_line("a SEARCH FROM ALICE@EXAMPLE.COM", &m));
        assert!(matches_line("a SEARCH CC carol", &m));
        assert!(!matches_line("a SEARCH CC alice", &m));
        assert!(
            !matches_line("a SEARCH BCC alice", &m),
            "there is no Bcc field"
        );
        assert!(!matches_line("a SEARCH FROM bob", &m));
    }

    #[test]
    fn body_searches_every_text_part_of_a_multipart() {
        let m = candidate(Some(MULTIPART));
        let k = keys("a SEARCH BODY hello");
        assert!(needs_content(&k));
        // Only the HTML part, the second one, says it.
        assert!(matches(&k, &m, BOUNDS));
        assert!(
            !matches_line("a SEARCH BODY <b>", &m),
            "HTML is searched as text"
        );
        assert!(
            !matches_line("a SEARCH BODY zebra", &m),
            "binary parts are not text"
        );
        assert!(
            !matches_line("a SEARCH BODY =C3", &m),
            "parts are searched decoded"
        );
        assert!(matches_line(
            "a SEARCH BODY hello",
            &candidate(Some(SIMPLE))
        ));
        assert!(!matches_line(
            "a SEARCH BODY goodbye",
            &candidate(Some(SIMPLE))
        ));
    }

    #[test]
    fn body_searches_an_attached_message() {
        let message = b"From: a@example.com\r\n\
Subject: Fwd\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\
\r\n\
--b\r\n\
Content-Type: text/plain\r\n\
\r\n\
See below.\r\n\
--b\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: inner@example.com\r\n\
Subject: Quarterly numbers\r\n\
\r\n\
Revenue is up.\r\n\
--b--\r\n";
        let m = candidate(Some(message));
        assert!(matches_line("a SEARCH BODY revenue", &m));
        assert!(matches_line("a SEARCH BODY quarterly", &m));
        assert!(
            !matches_line("a SEARCH SUBJECT quarterly", &m),
            "not the outer subject"
        );
    }

    #[test]
    fn sealed_messages_match_no_content_key() {
        let mut m = candidate(None);
        m.flagged = true;
        for line in [
            "a SEARCH BODY hello",
            "a SEARCH SUBJECT x",
            "a SEARCH FROM alice",
            "a SEARCH TO alice",
            "a SEARCH CC alice",
            "a SEARCH BCC alice",
            "a SEARCH HEADER X-Mailer \"\"",
            "a SEARCH TEXT hello",
            "a SEARCH SENTON 1-Feb-2026",
            "a SEARCH SENTBEFORE 1-Jan-2100",
            "a SEARCH SENTSINCE 1-Jan-1970",
        ] {
            assert!(!matches_line(line, &m), "{line} matched a sealed message");
        }
        assert!(matches_line("a SEARCH NOT SUBJECT x", &m));
        assert!(matches_line("a SEARCH NOT BODY hello", &m));
        assert!(matches_line("a SEARCH FLAGGED NOT TEXT x", &m));
        assert!(!matches_line("a SEARCH UNFLAGGED NOT TEXT x", &m));
        // The same message readable would match.
        let mut readable = candidate(Some(SIMPLE));
        readable.flagged = true;
        assert!(matches_line("a SEARCH BODY hello", &readable));
    }

    #[test]
    fn flags_recent_new_old_and_all() {
        let mut m = candidate(None);
        m.answered = true;
        m.draft = true;
        for (line, expected) in [
            ("a SEARCH ALL", true),
            ("a SEARCH ANSWERED", true),
            ("a SEARCH UNANSWERED", false),
            ("a SEARCH DRAFT", true),
            ("a SEARCH UNDRAFT", false),
            ("a SEARCH FLAGGED", false),
            ("a SEARCH UNFLAGGED", true),
            ("a SEARCH DELETED", false),
            ("a SEARCH UNDELETED", true),
            ("a SEARCH SEEN", false),
            ("a SEARCH UNSEEN", true),
            ("a SEARCH RECENT", false),
            ("a SEARCH NEW", false),
            ("a SEARCH OLD", true),
            ("a SEARCH NOT RECENT", true),
        ] {
            assert_eq!(matches_line(line, &m), expected, "{line}");
        }
    }

    #[test]
    fn nested_lists_or_and_not() {
        let mut m = candidate(None);
        m.seen = true;
        m.flagged = true;
        assert!(matches_line("a SEARCH (SEEN FLAGGED)", &m));
        assert!(!matches_line("a SEARCH (SEEN DRAFT)", &m));
        assert!(matches_line("a SEARCH OR (SEEN DRAFT) FLAGGED", &m));
        assert!(!matches_line(
            "a SEARCH OR (SEEN DRAFT) (ANSWERED FLAGGED)",
            &m
        ));
        assert!(matches_line("a SEARCH NOT (SEEN DRAFT)", &m));
        assert!(!matches_line("a SEARCH NOT NOT (SEEN DRAFT)", &m));
        assert!(matches_line("a SEARCH SEEN (OR DRAFT (FLAGGED (ALL)))", &m));
    }

    #[test]
    fn uid_key_and_sequence_key_use_their_own_star() {
        let mut m = candidate(None);
        m.seq = 3;
        m.uid = 30;
        assert!(matches_line("a SEARCH UID *", &m));
        assert!(matches_line("a SEARCH *", &m));
        assert!(!matches_line("a SEARCH UID 3", &m));
        assert!(matches_line("a SEARCH UID 25:35", &m));
        assert!(matches_line("a UID SEARCH 3 UID 30", &m));
        m.seq = 2;
        assert!(!matches_line("a SEARCH *", &m));
    }

    #[test]
    fn in_set_star_reversed_and_lists() {
        assert!(in_set(&set("*"), 5, 5));
        assert!(!in_set(&set("*"), 4, 5));
        // Reversed ranges are the same range.
        for n in 2..=5 {
            assert!(in_set(&set("5:2"), n, 9), "{n} in 5:2");
        }
        assert!(!in_set(&set("5:2"), 1, 9));
        assert!(!in_set(&set("5:2"), 6, 9));
        // `*:3` with 5 messages is 3:5.
        assert!(in_set(&set("*:3"), 4, 5));
        assert!(!in_set(&set("*:3"), 2, 5));
        // `10:*` when the largest is 7 is 7:10: it includes the last one.
        assert!(in_set(&set("10:*"), 7, 7));
        assert!(!in_set(&set("10:*"), 6, 7));
        let list = set("1,3,5:7");
        let members: Vec<u32> = (0..=9).filter(|n| in_set(&list, *n, 9)).collect();
        assert_eq!(members, vec![1, 3, 5, 6, 7]);
    }

    #[test]
    fn in_set_with_star_in_an_empty_mailbox_is_empty() {
        for text in ["*", "1:*", "*:1", "1,*"] {
            let s = set(text);
            for n in 0..=3 {
                let expected = text == "1,*" && n == 1;
                assert_eq!(in_set(&s, n, 0), expected, "{n} in {text} with no messages");
            }
        }
        assert!(!in_set(&set("1:3"), 0, 3), "0 is never a message number");
    }

    #[test]
    fn unparseable_or_empty_content_matches_no_content_key() {
        for content in [&b""[..], b"\xff\xfe\x00garbage", b"no header at all"] {
            let m = candidate(Some(content));
            assert!(!matches_line("a SEARCH SUBJECT x", &m));
            assert!(matches_line("a SEARCH NOT HEADER X-Mailer \"\"", &m));
        }
    }

    proptest! {
        #[test]
        fn any_content_is_searched_without_panicking(content in proptest::collection::vec(any::<u8>(), 0..600)) {
            let k = keys("a SEARCH OR OR (SUBJECT a BODY b) (TEXT c HEADER X \"\") OR (FROM d TO e) OR (CC f BCC g) (SENTON 1-Feb-2026 SENTBEFORE 1-Jan-2000 SENTSINCE 1-Jan-2030)");
            let m = candidate(Some(&content));
            let _ = matches(&k, &m, BOUNDS);
        }

        #[test]
        fn a_range_and_its_reverse_agree(a in 1u32..50, b in 1u32..50, n in 0u32..60, largest in 0u32..60, star in any::<bool>()) {
            let forward = if star { format!("{a}:*") } else { format!("{a}:{b}") };
            let backward = if star { format!("*:{a}") } else { format!("{b}:{a}") };
            let high = if star { largest } else { b };
            let inside = (!star || largest != 0) && n >= a.min(high) && n <= a.max(high);
            prop_assert_eq!(in_set(&set(&forward), n, largest), inside);
            prop_assert_eq!(in_set(&set(&backward), n, largest), inside);
        }
    }
}
