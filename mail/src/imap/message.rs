//! What a FETCH says about one message: the bytes of a `BODY[section]`, the
//! ENVELOPE and the BODY/BODYSTRUCTURE, in IMAP wire syntax (RFC 9051, RFC
//! 3501). Pure functions of the message's bytes; MIME is read with
//! `mail-parser`, and whatever it cannot make sense of is one `text/plain` body.

use std::borrow::Cow;
use std::ops::Range;
use std::panic;

use mail_parser::{
    Encoding, Header, HeaderName, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};

/// Bodies nested deeper than this (multiparts and message/rfc822 parts
/// count alike) are described as `text/plain`: it bounds the recursion a
/// hostile message can cause, and real mail stays far below it.
const MAX_NESTING: usize = 16;

/// Longer strings go as literals even when they could be quoted, so that no
/// response line grows without bound.
const MAX_QUOTED: usize = 1000;

/// What part of a message a BODY[...] fetch names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SectionText {
    Full,
    Header,
    HeaderFields(Vec<String>),
    HeaderFieldsNot(Vec<String>),
    Text,
    Mime,
}

/// A `BODY[<section>]`: `part` empty is the whole message, `[1, 2]` is part 1.2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub part: Vec<u32>,
    pub text: SectionText,
}

/// The exact bytes of the section, by the rules of RFC 9051 §6.4.5: HEADER
/// ends with the blank line, HEADER.FIELDS keeps the named fields in message
/// order and adds the blank line, a non-multipart message's part 1 is its
/// body, a message/rfc822 part can be entered (`2.HEADER`, `2.1`), MIME is a
/// part's own header. `None` when the section names nothing in this message
/// (a missing part, HEADER or TEXT of a part that is not a message, MIME
/// without a part number).
pub fn section(message: &[u8], section: &Section) -> Option<Vec<u8>> {
    let parsed = parse(message);
    locate(message, &parsed, &section.part, &section.text, 0)
}

/// What BINARY serves of a part (RFC 3516, RFC 9051 §6.4.5): its content
/// decoded from its Content-Transfer-Encoding; the message as it is for no
/// part. `None` when there is no such part, `Err` with the encoding when it
/// is one this server does not know (answered `NO [UNKNOWN-CTE]`).
pub fn binary(message: &[u8], part: &[u32]) -> Option<Result<Vec<u8>, String>> {
    if part.is_empty() {
        return Some(Ok(message.to_vec()));
    }
    let body = section(
        message,
        &Section {
            part: part.to_vec(),
            text: SectionText::Full,
        },
    )?;
    let header = section(
        message,
        &Section {
            part: part.to_vec(),
            text: SectionText::Mime,
        },
    )
    .unwrap_or_default();
    let encoding = transfer_encoding(&header);
    Some(match encoding.as_str() {
        "" | "7bit" | "8bit" | "binary" => Ok(body),
        "base64" => mail_parser::decoders::base64::base64_decode(&body)
            .ok_or_else(|| "base64 that does not decode".to_owned()),
        "quoted-printable" => {
            mail_parser::decoders::quoted_printable::quoted_printable_decode(&body)
                .ok_or_else(|| "quoted-printable that does not decode".to_owned())
        }
        other => Err(other.to_owned()),
    })
}

/// The message with every part sent as `Content-Transfer-Encoding:
/// binary` re-encoded as base64, so that BODY[] stays text a client can
/// read while BINARY[] still gives the bytes back (RFC 3516 §4.2: APPEND of
/// binary content); `None` when there is no such part. Parts of the top
/// message are converted; a message enclosed in a part is kept as sent.
pub fn binary_parts_as_base64(raw: &[u8]) -> Option<Vec<u8>> {
    let parsed = parse(raw);
    let mut edits: Vec<(Range<usize>, Range<usize>)> = Vec::new();
    for id in 0..parsed.parts.len() {
        let node = Node::root(raw, &parsed, 0).child(id, false);
        let part = node.part()?;
        if matches!(part.body, PartType::Multipart(_) | PartType::Message(_)) {
            continue;
        }
        let (header, body) = node.extent();
        if transfer_encoding(&raw[header.clone()]) == "binary" {
            edits.push((header, body));
        }
    }
    if edits.is_empty() {
        return None;
    }
    edits.sort_by_key(|(header, _)| header.start);
    let mut out = Vec::with_capacity(raw.len() * 4 / 3 + 64);
    let mut from = 0;
    for (header, body) in edits {
        if header.start < from {
            continue;
        }
        out.extend_from_slice(&raw[from..header.start]);
        out.extend_from_slice(&with_base64_encoding(&raw[header.clone()]));
        let encoded = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            &raw[body.clone()],
        );
        for line in encoded.as_bytes().chunks(76) {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        from = body.end;
        // The line break before a boundary belongs to the boundary.
        if out.ends_with(b"\r\n") && raw[from..].starts_with(b"\r\n") {
            out.truncate(out.len() - 2);
        }
    }
    out.extend_from_slice(&raw[from..]);
    Some(out)
}

/// A MIME header with its Content-Transfer-Encoding field (and the
/// field's folded lines) replaced by `base64`.
fn with_base64_encoding(header: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len());
    let mut in_field = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        if in_field && line.starts_with(b" ") | line.starts_with(b"\t") {
            continue;
        }
        in_field = line.split(|&b| b == b':').next().is_some_and(|name| {
            name.len() < line.len() && trim(name).eq_ignore_ascii_case(b"content-transfer-encoding")
        });
        if in_field {
            out.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n");
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

/// The Content-Transfer-Encoding named in a MIME header, lowercase; empty
/// when there is none.
fn transfer_encoding(header: &[u8]) -> String {
    let text = String::from_utf8_lossy(header);
    let mut value = None::<String>;
    for line in text.split("\r\n") {
        match &mut value {
            Some(v) if line.starts_with([' ', '\t']) => v.push_str(line),
            Some(_) => break,
            None => {
                if let Some((name, rest)) = line.split_once(':')
                    && name
                        .trim()
                        .eq_ignore_ascii_case("content-transfer-encoding")
                {
                    value = Some(rest.to_owned());
                }
            }
        }
    }
    value
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// The ENVELOPE (RFC 9051 §7.5.2) of the message, wire form. Values are the
/// header fields as sent (unfolded, encoded-words untouched), NIL when absent;
/// Sender and Reply-To fall back to From.
pub fn envelope(message: &[u8]) -> Vec<u8> {
    // The header alone, read as `parse` reads it.
    let parsed = starts_with_header(message)
        .then(|| {
            panic::catch_unwind(|| MessageParser::default().parse_headers(message))
                .ok()
                .flatten()
        })
        .flatten();
    let headers = parsed
        .as_ref()
        .and_then(|m| m.parts.first())
        .map_or(&[][..], |p| p.headers.as_slice());
    let mut out = Vec::new();
    write_envelope(&mut out, message, headers);
    out
}

/// BODYSTRUCTURE (`extensible`, with the extension data of RFC 9051 §7.5.2)
/// or BODY, wire form. Sizes are those of the bodies as they stand in the
/// message, transfer encoding included: what [`section`] returns for the part.
pub fn body_structure(message: &[u8], extensible: bool) -> Vec<u8> {
    let parsed = parse(message);
    let mut out = Vec::new();
    write_body(&mut out, &Node::root(message, &parsed, 0), extensible);
    out
}

/// What FETCH answers of a message without its body: the header section
/// and the wire forms of ENVELOPE, BODY and BODYSTRUCTURE. Computed once,
/// when the message is stored (see `Inbound::store_readable`), and kept
/// beside it, so that a client listing a mailbox is answered without each
/// message being read, decrypted and parsed again. Every answer it gives is
/// the one the whole message would give.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The top-level header, blank line included: `BODY[HEADER]`.
    pub header: Vec<u8>,
    pub envelope: Vec<u8>,
    pub body: Vec<u8>,
    pub body_structure: Vec<u8>,
}

/// The first byte of an encoded [`Summary`]: a later layout gets another.
const SUMMARY_FORMAT: u8 = 1;

impl Summary {
    /// The summary of a message as IMAP serves it.
    pub fn of(message: &[u8]) -> Summary {
        let parsed = parse(message);
        let root = Node::root(message, &parsed, 0);
        let header = root.header_bytes().to_vec();
        let mut body = Vec::new();
        write_body(&mut body, &root, false);
        let mut body_structure = Vec::new();
        write_body(&mut body_structure, &root, true);
        Summary {
            envelope: envelope(message),
            header,
            body,
            body_structure,
        }
    }

    /// Whether [`Summary::section`] answers `section`: the top-level header
    /// and its fields; anything else needs the message.
    pub fn answers(section: &Section) -> bool {
        section.part.is_empty()
            && matches!(
                section.text,
                SectionText::Header
                    | SectionText::HeaderFields(_)
                    | SectionText::HeaderFieldsNot(_)
            )
    }

    /// What [`section`] gives of the whole message, for a section
    /// [`Summary::answers`]; `None` for the others.
    pub fn section(&self, section: &Section) -> Option<Vec<u8>> {
        if !section.part.is_empty() {
            return None;
        }
        match &section.text {
            SectionText::Header => Some(self.header.clone()),
            SectionText::HeaderFields(names) => Some(select_fields(&self.header, names, true)),
            SectionText::HeaderFieldsNot(names) => Some(select_fields(&self.header, names, false)),
            _ => None,
        }
    }

    /// The stored form: a format byte, then each field as a 4-byte
    /// little-endian length and its bytes.
    pub fn encode(&self) -> Vec<u8> {
        let fields = [
            &self.header,
            &self.envelope,
            &self.body,
            &self.body_structure,
        ];
        let mut out = Vec::with_capacity(1 + fields.iter().map(|f| 4 + f.len()).sum::<usize>());
        out.push(SUMMARY_FORMAT);
        for field in fields {
            let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(field.get(..len as usize).unwrap_or(field));
        }
        out
    }

    /// Reads [`Summary::encode`]'s form; `None` for anything else (another
    /// format, or damaged bytes), and the message is then read instead.
    pub fn decode(bytes: &[u8]) -> Option<Summary> {
        let (&format, mut rest) = bytes.split_first()?;
        if format != SUMMARY_FORMAT {
            return None;
        }
        let mut field = || {
            let (len, tail) = rest.split_first_chunk::<4>()?;
            let len = u32::from_le_bytes(*len) as usize;
            let value = tail.get(..len)?.to_vec();
            rest = tail.get(len..)?;
            Some(value)
        };
        let summary = Summary {
            header: field()?,
            envelope: field()?,
            body: field()?,
            body_structure: field()?,
        };
        rest.is_empty().then_some(summary)
    }
}

/// Appends an IMAP string: quoted when the bytes allow it (no CR, LF, NUL or
/// 8-bit byte, not too long), otherwise a literal. A literal carries the bytes
/// as given, so the caller keeps NUL out of it (IMAP forbids it in literals).
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    let quotable = s.len() <= MAX_QUOTED
        && s.iter()
            .all(|&b| matches!(b, 0x01..=0x09 | 0x0b..=0x0c | 0x0e..=0x7f));
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
        out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
        out.extend_from_slice(s);
    }
}

/// [`string`] of text taken from a message, NULs dropped: IMAP allows them
/// in no string.
fn message_string(out: &mut Vec<u8>, s: &[u8]) {
    if s.contains(&0) {
        let cleaned: Vec<u8> = s.iter().copied().filter(|&b| b != 0).collect();
        string(out, &cleaned);
    } else {
        string(out, s);
    }
}

/// `NIL` or [`string`].
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

// ---------------------------------------------------------------------------
// The parsed message

/// Parses a message; the offsets of its parts index `raw`. Bytes that do not
/// start with a header field (or the blank line of an empty header) have no
/// header: they are one text/plain body.
fn parse(raw: &[u8]) -> Message<'_> {
    // mail-parser has debug assertions and unchecked offset arithmetic that
    // malformed input can reach: a bad message must lose its structure, not
    // take the IMAP session down.
    let parsed = starts_with_header(raw)
        .then(|| {
            panic::catch_unwind(|| MessageParser::default().parse(raw))
                .ok()
                .flatten()
        })
        .flatten();
    match parsed {
        Some(message) if !message.parts.is_empty() => message,
        _ => Message {
            parts: vec![MessagePart {
                headers: Vec::new(),
                is_encoding_problem: true,
                body: PartType::Text(Cow::Borrowed("")),
                encoding: Encoding::None,
                offset_header: 0,
                offset_body: 0,
                offset_end: u32::try_from(raw.len()).unwrap_or(u32::MAX),
            }],
            raw_message: Cow::Borrowed(raw),
            ..Message::default()
        },
    }
}

/// Whether the first line is blank or a field: a name of printable ASCII
/// (RFC 5322 §2.2), then a colon. mail-parser takes any line with a colon
/// for a field, which would make a header of binary garbage.
fn starts_with_header(raw: &[u8]) -> bool {
    let line = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    if line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
        return true;
    }
    let name_end = line
        .iter()
        .position(|&b| !matches!(b, 0x21..=0x39 | 0x3b..=0x7e))
        .unwrap_or(line.len());
    name_end > 0
        && line
            .get(name_end..)
            .is_some_and(|rest| trim(rest).first() == Some(&b':'))
}

/// One part of one (top-level or enclosed) message, with what its
/// description depends on besides itself.
struct Node<'n, 'a> {
    /// The bytes the message's offsets index.
    raw: &'n [u8],
    message: &'n Message<'a>,
    id: usize,
    /// Parts of a multipart/digest default to message/rfc822 (RFC 2046 §5.1.5).
    in_digest: bool,
    /// How many bodies enclose this one.
    depth: usize,
}

/// A part as IMAP describes it, after defaults and fallbacks.
struct Media<'n> {
    kind: Kind,
    ty: &'n str,
    subtype: &'n str,
    params: Vec<(&'n str, &'n str)>,
}

impl Media<'_> {
    /// Whether the parts of this multipart default to message/rfc822.
    fn is_digest(&self) -> bool {
        self.subtype.eq_ignore_ascii_case("digest")
    }
}

enum Kind {
    /// The ids of the parts, never empty.
    Multipart(Vec<usize>),
    /// message/rfc822: the body is a message that can be entered.
    Message,
    Text,
    Basic,
}

impl<'n, 'a> Node<'n, 'a> {
    fn part(&self) -> Option<&'n MessagePart<'a>> {
        self.message.parts.get(self.id)
    }

    fn headers(&self) -> &'n [Header<'a>] {
        self.part().map_or(&[][..], |p| p.headers.as_slice())
    }

    /// The part's header (with the blank line) and body, clamped to the bytes.
    fn extent(&self) -> (Range<usize>, Range<usize>) {
        let len = self.raw.len();
        let Some(part) = self.part() else {
            return (len..len, len..len);
        };
        let start = if self.id == 0 {
            0
        } else {
            (part.offset_header as usize).min(len)
        };
        let body = (part.offset_body as usize).clamp(start, len);
        // The root's body runs to the end of its message whatever mail-parser recorded.
        let end = if self.id == 0 {
            len
        } else {
            (part.offset_end as usize).clamp(body, len)
        };
        (start..body, body..end)
    }

    fn header_bytes(&self) -> &'n [u8] {
        self.raw.get(self.extent().0).unwrap_or_default()
    }

    fn body_bytes(&self) -> &'n [u8] {
        self.raw.get(self.extent().1).unwrap_or_default()
    }

    /// The root part of a message `depth` bodies down.
    fn root(raw: &'n [u8], message: &'n Message<'a>, depth: usize) -> Node<'n, 'a> {
        Node {
            raw,
            message,
            id: 0,
            in_digest: false,
            depth,
        }
    }

    fn child(&self, id: usize, in_digest: bool) -> Node<'n, 'a> {
        Node {
            raw: self.raw,
            message: self.message,
            id,
            in_digest,
            depth: self.depth + 1,
        }
    }

    fn media(&self) -> Media<'n> {
        let part = self.part();
        let content_type = part.and_then(|p| p.content_type());
        let declared = content_type.and_then(|ct| {
            let subtype = ct.subtype().filter(|s| !s.is_empty())?;
            let params = ct.attributes().unwrap_or_default();
            (!ct.ctype().is_empty()).then(|| {
                (
                    ct.ctype(),
                    subtype,
                    params
                        .iter()
                        .map(|a| (a.name.as_ref(), a.value.as_ref()))
                        .collect(),
                )
            })
        });
        let plain = || Media {
            kind: Kind::Text,
            ty: "text",
            subtype: "plain",
            params: vec![(
                "charset",
                content_type
                    .and_then(|ct| ct.attribute("charset"))
                    .unwrap_or("us-ascii"),
            )],
        };
        let (ty, subtype, mut params) = match declared {
            Some(declared) => declared,
            None if content_type.is_none() && self.in_digest => ("message", "rfc822", Vec::new()),
            None => return plain(),
        };
        let kind = if ty.eq_ignore_ascii_case("multipart") {
            let children: Vec<usize> = match part.map(|p| &p.body) {
                // Ids after this part's own only, so that a walk always ends.
                Some(PartType::Multipart(ids)) => ids
                    .iter()
                    .map(|&i| i as usize)
                    .filter(|&i| i > self.id && i < self.message.parts.len())
                    .collect(),
                _ => Vec::new(),
            };
            // A multipart whose boundary never shows has no parts: its body is text.
            if children.is_empty() || self.depth >= MAX_NESTING {
                return plain();
            }
            Kind::Multipart(children)
        } else if ty.eq_ignore_ascii_case("message") && subtype.eq_ignore_ascii_case("rfc822") {
            if self.depth >= MAX_NESTING {
                return plain();
            }
            Kind::Message
        } else if ty.eq_ignore_ascii_case("text") {
            // RFC 2045 §5.2's default, said out loud as other servers do.
            if !params
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("charset"))
            {
                params.push(("charset", "us-ascii"));
            }
            Kind::Text
        } else {
            Kind::Basic
        };
        Media {
            kind,
            ty,
            subtype,
            params,
        }
    }

    /// The message a message/rfc822 part carries: its body, or the body
    /// decoded when it was (against RFC 2046 §5.2.1) base64 or
    /// quoted-printable, which mail-parser has done already.
    fn enclosed(&self) -> &'n [u8] {
        match self.part() {
            Some(part) if part.encoding != Encoding::None => part.contents(),
            _ => self.body_bytes(),
        }
    }

    /// The raw value of the last field of that name in the part's header, as
    /// mail-parser reads the last Content-Type and Content-Transfer-Encoding.
    fn field(&self, name: HeaderName<'_>) -> Option<Vec<u8>> {
        self.headers()
            .iter()
            .rev()
            .find(|h| h.name == name)
            .map(|h| field_value(self.raw, h))
    }
}

/// A field's value as sent: unfolded, NULs dropped, surrounding blanks trimmed.
fn field_value(raw: &[u8], header: &Header<'_>) -> Vec<u8> {
    let start = (header.offset_start as usize).min(raw.len());
    let end = (header.offset_end as usize).clamp(start, raw.len());
    let value: Vec<u8> = raw
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .copied()
        .filter(|&b| !matches!(b, b'\r' | b'\n' | 0))
        .collect();
    trim(&value).to_vec()
}

fn trim(s: &[u8]) -> &[u8] {
    let blank = |b: &u8| matches!(b, b' ' | b'\t');
    let start = s.iter().position(|b| !blank(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !blank(b)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

/// Lines of a body: its line ends, and a last line without one.
fn lines(body: &[u8]) -> usize {
    body.iter().filter(|&&b| b == b'\n').count()
        + usize::from(body.last().is_some_and(|&b| b != b'\n'))
}

// ---------------------------------------------------------------------------
// BODY[section]

/// Follows `path` from the root of a message.
fn locate(
    raw: &[u8],
    message: &Message<'_>,
    path: &[u32],
    text: &SectionText,
    depth: usize,
) -> Option<Vec<u8>> {
    let root = Node::root(raw, message, depth);
    let Some((&first, rest)) = path.split_first() else {
        let (header, body) = root.extent();
        return match text {
            SectionText::Full => Some(raw.to_vec()),
            SectionText::Header => raw.get(header).map(<[u8]>::to_vec),
            SectionText::Text => raw.get(body).map(<[u8]>::to_vec),
            SectionText::HeaderFields(names) => {
                Some(select_fields(root.header_bytes(), names, true))
            }
            SectionText::HeaderFieldsNot(names) => {
                Some(select_fields(root.header_bytes(), names, false))
            }
            SectionText::Mime => None,
        };
    };
    let media = root.media();
    let node = match &media.kind {
        Kind::Multipart(children) => {
            let id = *children.get(usize::try_from(first).ok()?.checked_sub(1)?)?;
            root.child(id, media.is_digest())
        }
        _ if first == 1 => root,
        _ => return None,
    };
    locate_in_part(&node, rest, text)
}

fn locate_in_part(node: &Node<'_, '_>, path: &[u32], text: &SectionText) -> Option<Vec<u8>> {
    let media = node.media();
    match (path.split_first(), &media.kind) {
        (None, _) if *text == SectionText::Full => Some(node.body_bytes().to_vec()),
        (None, _) if *text == SectionText::Mime => Some(node.header_bytes().to_vec()),
        (None, Kind::Message) => {
            let enclosed = node.enclosed();
            locate(enclosed, &parse(enclosed), &[], text, node.depth + 1)
        }
        (None, _) => None,
        (Some((&first, rest)), Kind::Multipart(children)) => {
            let id = *children.get(usize::try_from(first).ok()?.checked_sub(1)?)?;
            locate_in_part(&node.child(id, media.is_digest()), rest, text)
        }
        (Some(_), Kind::Message) => {
            let enclosed = node.enclosed();
            locate(enclosed, &parse(enclosed), path, text, node.depth + 1)
        }
        (Some(_), _) => None,
    }
}

/// HEADER.FIELDS (`keep`) or HEADER.FIELDS.NOT: the fields as they stand,
/// folded lines included, then the blank line.
fn select_fields(header: &[u8], names: &[String], keep: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut emit = |field: &[u8], name: Option<&[u8]>| {
        let named = name.is_some_and(|name| {
            names
                .iter()
                .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
        });
        if named == keep && !field.is_empty() {
            out.extend_from_slice(field);
            if !field.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    };
    let mut field = 0..0;
    let mut pos = 0;
    while pos < header.len() {
        let end = header
            .get(pos..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
            .map_or(header.len(), |i| pos + i + 1);
        let line = header.get(pos..end).unwrap_or_default();
        let blank = line
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
        if blank && (field.is_empty() || !matches!(line.first(), Some(b' ' | b'\t'))) {
            break;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) && !field.is_empty() {
            field.end = end;
        } else {
            let bytes = header.get(field.clone()).unwrap_or_default();
            emit(bytes, field_name(bytes));
            field = pos..end;
        }
        pos = end;
    }
    let bytes = header.get(field).unwrap_or_default();
    emit(bytes, field_name(bytes));
    out.extend_from_slice(b"\r\n");
    out
}

/// The name of a field, `None` for a line with no colon.
fn field_name(field: &[u8]) -> Option<&[u8]> {
    let first_line = field.split(|&b| b == b'\n').next().unwrap_or_default();
    let colon = first_line.iter().position(|&b| b == b':')?;
    Some(trim(first_line.get(..colon).unwrap_or_default()))
}

// ---------------------------------------------------------------------------
// BODY and BODYSTRUCTURE

fn write_body(out: &mut Vec<u8>, node: &Node<'_, '_>, extensible: bool) {
    let media = node.media();
    out.push(b'(');
    if let Kind::Multipart(children) = &media.kind {
        for &id in children {
            write_body(out, &node.child(id, media.is_digest()), extensible);
        }
        out.push(b' ');
        message_string(out, media.subtype.to_ascii_uppercase().as_bytes());
        if extensible {
            out.push(b' ');
            write_params(out, &media.params);
            write_extension_tail(out, node);
        }
        out.push(b')');
        return;
    }
    message_string(out, media.ty.to_ascii_uppercase().as_bytes());
    out.push(b' ');
    message_string(out, media.subtype.to_ascii_uppercase().as_bytes());
    out.push(b' ');
    write_params(out, &media.params);
    out.push(b' ');
    nstring(out, node.field(HeaderName::ContentId).as_deref());
    out.push(b' ');
    nstring(out, node.field(HeaderName::ContentDescription).as_deref());
    out.push(b' ');
    let encoding = node
        .field(HeaderName::ContentTransferEncoding)
        .filter(|e| !e.is_empty());
    string(
        out,
        &encoding
            .unwrap_or_else(|| b"7bit".to_vec())
            .to_ascii_uppercase(),
    );
    let body = node.body_bytes();
    out.extend_from_slice(format!(" {}", body.len()).as_bytes());
    match media.kind {
        Kind::Text => out.extend_from_slice(format!(" {}", lines(body)).as_bytes()),
        Kind::Message => {
            let raw = node.enclosed();
            let enclosed = parse(raw);
            let root = Node::root(raw, &enclosed, node.depth + 1);
            out.push(b' ');
            write_envelope(out, raw, root.headers());
            out.push(b' ');
            write_body(out, &root, extensible);
            out.extend_from_slice(format!(" {}", lines(body)).as_bytes());
        }
        Kind::Basic | Kind::Multipart(_) => {}
    }
    if extensible {
        // body-fld-md5: Content-MD5 is obsolete and nobody checks it.
        out.extend_from_slice(b" NIL");
        write_extension_tail(out, node);
    }
    out.push(b')');
}

/// body-fld-dsp, body-fld-lang and body-fld-loc, each after a space.
fn write_extension_tail(out: &mut Vec<u8>, node: &Node<'_, '_>) {
    out.push(b' ');
    match node
        .part()
        .and_then(|p| p.content_disposition())
        .filter(|d| !d.ctype().is_empty())
    {
        Some(disposition) => {
            out.push(b'(');
            message_string(out, disposition.ctype().to_ascii_uppercase().as_bytes());
            out.push(b' ');
            let params: Vec<(&str, &str)> = disposition
                .attributes()
                .unwrap_or_default()
                .iter()
                .map(|a| (a.name.as_ref(), a.value.as_ref()))
                .collect();
            write_params(out, &params);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    let language = node.field(HeaderName::ContentLanguage).unwrap_or_default();
    let tags: Vec<&[u8]> = language
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
        .collect();
    match tags.as_slice() {
        [] => out.extend_from_slice(b"NIL"),
        [tag] => string(out, tag),
        tags => {
            out.push(b'(');
            for (i, tag) in tags.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                string(out, tag);
            }
            out.push(b')');
        }
    }
    out.push(b' ');
    nstring(out, node.field(HeaderName::ContentLocation).as_deref());
}

/// body-fld-param. mail-parser hands over values decoded (RFC 2231, RFC 2047);
/// one that is not ASCII goes back out in RFC 2231 form, which every MIME
/// client reads, rather than as 8-bit in a literal.
fn write_params(out: &mut Vec<u8>, params: &[(&str, &str)]) {
    if params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        let name = name.to_ascii_uppercase();
        if value.is_ascii() {
            message_string(out, name.as_bytes());
            out.push(b' ');
            message_string(out, value.as_bytes());
        } else {
            message_string(out, format!("{name}*").as_bytes());
            out.push(b' ');
            let mut encoded = b"utf-8''".to_vec();
            for b in value.bytes() {
                if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                    encoded.push(b);
                } else {
                    encoded.extend_from_slice(format!("%{b:02X}").as_bytes());
                }
            }
            string(out, &encoded);
        }
    }
    out.push(b')');
}

// ---------------------------------------------------------------------------
// ENVELOPE

fn write_envelope(out: &mut Vec<u8>, raw: &[u8], headers: &[Header<'_>]) {
    let first = |name: HeaderName<'_>| {
        headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| field_value(raw, h))
    };
    let addresses =
        |name: HeaderName<'_>| first(name).map(|v| parse_addresses(&v)).unwrap_or_default();
    let from = addresses(HeaderName::From);
    let sender = Some(addresses(HeaderName::Sender))
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| from.clone());
    let reply_to = Some(addresses(HeaderName::ReplyTo))
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| from.clone());
    out.push(b'(');
    nstring(out, first(HeaderName::Date).as_deref());
    out.push(b' ');
    nstring(out, first(HeaderName::Subject).as_deref());
    for list in [
        &from,
        &sender,
        &reply_to,
        &addresses(HeaderName::To),
        &addresses(HeaderName::Cc),
        &addresses(HeaderName::Bcc),
    ] {
        out.push(b' ');
        write_addresses(out, list);
    }
    out.push(b' ');
    nstring(out, first(HeaderName::InReplyTo).as_deref());
    out.push(b' ');
    nstring(out, first(HeaderName::MessageId).as_deref());
    out.push(b')');
}

/// One entry of an ENVELOPE address list: a mailbox, or where a group starts
/// or ends (RFC 9051 §7.5.2).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    Mailbox {
        name: Option<Vec<u8>>,
        route: Option<Vec<u8>>,
        local: Vec<u8>,
        domain: Vec<u8>,
    },
    GroupStart(Vec<u8>),
    GroupEnd,
}

fn write_addresses(out: &mut Vec<u8>, list: &[Entry]) {
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for entry in list {
        match entry {
            // A mailbox's host is never NIL, even when the address has no
            // domain: NIL there means the start of a group.
            Entry::Mailbox {
                name,
                route,
                local,
                domain,
            } => {
                out.push(b'(');
                nstring(out, name.as_deref());
                out.push(b' ');
                nstring(out, route.as_deref());
                out.push(b' ');
                string(out, local);
                out.push(b' ');
                string(out, domain);
                out.push(b')');
            }
            Entry::GroupStart(name) => {
                out.extend_from_slice(b"(NIL NIL ");
                string(out, name);
                out.extend_from_slice(b" NIL)");
            }
            Entry::GroupEnd => out.extend_from_slice(b"(NIL NIL NIL NIL)"),
        }
    }
    out.push(b')');
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// An atom, the content of a quoted string or a domain literal.
    Word(Vec<u8>),
    Special(u8),
}

/// A token and whether blanks or a comment came before it.
type Spaced = (Token, bool);

/// The tokens of an address list (RFC 5322 §3.2) and its comments.
fn tokenize(value: &[u8]) -> (Vec<Spaced>, Vec<(usize, Vec<u8>)>) {
    let mut tokens = Vec::new();
    let mut comments = Vec::new();
    let mut spaced = false;
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' | b')' => {
                spaced = true;
                i += 1;
            }
            b'"' => {
                let mut word = Vec::new();
                i += 1;
                while let Some(&c) = value.get(i) {
                    i += 1;
                    match c {
                        b'\\' => {
                            if let Some(&escaped) = value.get(i) {
                                word.push(escaped);
                                i += 1;
                            }
                        }
                        b'"' => break,
                        _ => word.push(c),
                    }
                }
                tokens.push((Token::Word(word), spaced));
                spaced = false;
            }
            b'(' => {
                let mut comment = Vec::new();
                let mut depth = 0usize;
                while let Some(&c) = value.get(i) {
                    i += 1;
                    match c {
                        b'(' => {
                            if depth > 0 {
                                comment.push(c);
                            }
                            depth += 1;
                        }
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                            comment.push(c);
                        }
                        b'\\' => {
                            if let Some(&escaped) = value.get(i) {
                                comment.push(escaped);
                                i += 1;
                            }
                        }
                        _ => comment.push(c),
                    }
                }
                comments.push((tokens.len(), trim(&comment).to_vec()));
                spaced = true;
            }
            b'<' | b'>' | b'@' | b',' | b':' | b';' => {
                tokens.push((Token::Special(b), spaced));
                spaced = false;
                i += 1;
            }
            b'[' => {
                let end = value
                    .get(i..)
                    .and_then(|rest| rest.iter().position(|&c| c == b']'))
                    .map_or(value.len(), |j| i + j + 1);
                tokens.push((
                    Token::Word(value.get(i..end).unwrap_or_default().to_vec()),
                    spaced,
                ));
                spaced = false;
                i = end;
            }
            _ => {
                let end = value
                    .get(i..)
                    .and_then(|rest| rest.iter().position(|c| b" \t\r\n()<>@,:;\"[".contains(c)))
                    .map_or(value.len(), |j| i + j);
                tokens.push((
                    Token::Word(value.get(i..end).unwrap_or_default().to_vec()),
                    spaced,
                ));
                spaced = false;
                i = end;
            }
        }
    }
    (tokens, comments)
}

/// Tokens as text, a space where the value had blanks.
fn phrase(tokens: &[Spaced]) -> Vec<u8> {
    let mut out = Vec::new();
    for (token, spaced) in tokens {
        if *spaced && !out.is_empty() {
            out.push(b' ');
        }
        match token {
            Token::Word(word) => out.extend_from_slice(word),
            Token::Special(b) => out.push(*b),
        }
    }
    out
}

/// Tokens as text, blanks dropped (RFC 5322 allows CFWS around the dots of an
/// addr-spec).
fn joined(tokens: &[Spaced]) -> Vec<u8> {
    let mut out = Vec::new();
    for (token, _) in tokens {
        match token {
            Token::Word(word) => out.extend_from_slice(word),
            Token::Special(b) => out.push(*b),
        }
    }
    out
}

/// local-part and domain, split at the last `@`.
fn addr_spec(tokens: &[Spaced]) -> (Vec<u8>, Vec<u8>) {
    match tokens.iter().rposition(|(t, _)| *t == Token::Special(b'@')) {
        Some(at) => (
            joined(tokens.get(..at).unwrap_or_default()),
            joined(tokens.get(at + 1..).unwrap_or_default()),
        ),
        None => (joined(tokens), Vec::new()),
    }
}

/// An address list (RFC 5322 §3.4) as ENVELOPE entries. Display names stay
/// as sent (encoded-words included, quoting removed); whatever does not fit
/// the grammar is kept as best it can be rather than refused.
fn parse_addresses(value: &[u8]) -> Vec<Entry> {
    let (tokens, comments) = tokenize(value);
    let mut entries = Vec::new();
    let mut in_group = false;
    // The current address: tokens before `<`, tokens between `<` and `>`.
    let mut start = 0;
    let mut angle: Option<Range<usize>> = None;
    let mut in_angle = false;
    let finish = |entries: &mut Vec<Entry>, range: Range<usize>, angle: Option<Range<usize>>| {
        let comment = comments
            .iter()
            .rev()
            .find(|(at, c)| range.contains(at) || (*at == range.end && !c.is_empty()));
        let comment = comment.map(|(_, c)| c.clone()).filter(|c| !c.is_empty());
        let words = |r: Range<usize>| -> Vec<Spaced> {
            tokens
                .get(r)
                .unwrap_or_default()
                .iter()
                .filter(|(t, _)| !matches!(t, Token::Special(b'<' | b'>')))
                .cloned()
                .collect()
        };
        if let Some(angle) = angle {
            let display = words(range.start..angle.start.saturating_sub(1).max(range.start));
            let inner = words(angle);
            // An obsolete source route: `<@a.example,@b.example:user@c.example>`.
            let (route, spec) = match inner.iter().rposition(|(t, _)| *t == Token::Special(b':')) {
                Some(colon) => (
                    Some(joined(inner.get(..colon).unwrap_or_default())),
                    inner.get(colon + 1..).unwrap_or_default(),
                ),
                None => (None, inner.as_slice()),
            };
            let (local, domain) = addr_spec(spec);
            let name = Some(phrase(&display)).filter(|n| !n.is_empty()).or(comment);
            entries.push(Entry::Mailbox {
                name,
                route: route.filter(|r| !r.is_empty()),
                local,
                domain,
            });
        } else {
            let words = words(range);
            if words.is_empty() {
                return;
            }
            let has_at = words.iter().any(|(t, _)| *t == Token::Special(b'@'));
            if has_at || words.len() == 1 {
                let (local, domain) = addr_spec(&words);
                entries.push(Entry::Mailbox {
                    name: comment,
                    route: None,
                    local,
                    domain,
                });
            } else {
                entries.push(Entry::Mailbox {
                    name: Some(phrase(&words)),
                    route: None,
                    local: Vec::new(),
                    domain: Vec::new(),
                });
            }
        }
    };
    for (i, (token, _)) in tokens.iter().enumerate() {
        match token {
            Token::Special(b'<') if !in_angle && angle.is_none() => {
                in_angle = true;
                angle = Some(i + 1..i + 1);
            }
            Token::Special(b'>') if in_angle => {
                in_angle = false;
                if let Some(a) = angle.as_mut() {
                    a.end = i;
                }
            }
            _ if in_angle => {}
            Token::Special(b',') => {
                finish(&mut entries, start..i, angle.take());
                start = i + 1;
            }
            Token::Special(b':') if !in_group => {
                entries.push(Entry::GroupStart(phrase(
                    tokens.get(start..i).unwrap_or_default(),
                )));
                in_group = true;
                angle = None;
                start = i + 1;
            }
            Token::Special(b';') => {
                finish(&mut entries, start..i, angle.take());
                if in_group {
                    entries.push(Entry::GroupEnd);
                    in_group = false;
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_angle && let Some(a) = angle.as_mut() {
        a.end = tokens.len();
    }
    finish(&mut entries, start..tokens.len(), angle);
    if in_group {
        entries.push(Entry::GroupEnd);
    }
    entries
}

#[cfg(test)]
mod tests {
    #[test]
    fn binary_parts_become_base64_and_binary_fetch_gives_them_back() {
        use super::{Section, SectionText, binary, binary_parts_as_base64, section};
        let bytes = b"\x00\x01 -\xff\r\n\r\n";
        let mut single = b"From: a@example.org\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n".to_vec();
        single.extend_from_slice(bytes);
        let converted = binary_parts_as_base64(&single).expect("a binary part");
        assert!(!converted.contains(&0));
        assert!(
            String::from_utf8_lossy(&converted)
                .contains("Content-Transfer-Encoding: base64\r\n\r\nAAEgLf8NCg0K\r\n")
        );
        assert_eq!(binary(&converted, &[1]).unwrap().unwrap(), bytes);

        let mut multi = b"From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-transfer-encoding:\r\n  BINARY\r\n\r\n".to_vec();
        multi.extend_from_slice(bytes);
        multi.extend_from_slice(b"\r\n--b--\r\n");
        let converted = binary_parts_as_base64(&multi).expect("a binary part");
        assert!(!converted.contains(&0));
        assert_eq!(binary(&converted, &[2]).unwrap().unwrap(), bytes);
        let first = Section {
            part: vec![1],
            text: SectionText::Full,
        };
        assert_eq!(section(&converted, &first).unwrap(), b"hello");
        assert!(converted.ends_with(b"\r\n--b--\r\n"));
        // Nothing binary: nothing to convert.
        assert!(binary_parts_as_base64(b"From: a@example.org\r\n\r\nhi\r\n").is_none());
    }

    #[test]
    fn binary_undoes_the_transfer_encoding_of_a_part() {
        let message = b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 =\r\nau lait\r\n\
--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC/w==\r\n\
--b\r\nContent-Type: application/x-odd\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n\
--b--\r\n";
        assert_eq!(
            binary(message, &[1]).unwrap().unwrap(),
            "café au lait".as_bytes()
        );
        assert_eq!(binary(message, &[2]).unwrap().unwrap(), [0u8, 1, 2, 255]);
        assert_eq!(binary(message, &[3]).unwrap().unwrap_err(), "x-uuencode");
        assert!(binary(message, &[4]).is_none());
        assert_eq!(binary(message, &[]).unwrap().unwrap(), message);
    }

    use imap_codec::ResponseCodec;
    use imap_codec::decode::Decoder;
    use imap_types::body::{BodyStructure, SpecificFields};
    use imap_types::core::{IString, NString};
    use imap_types::envelope::{Address, Envelope};
    use imap_types::fetch::MessageDataItem;
    use imap_types::response::{Data, Response};
    use proptest::prelude::*;

    use super::*;

    const PLAIN: &[u8] = b"Return-Path: <alice@example.com>\r\n\
From: Alice Example <alice@example.com>\r\n\
To: Bob <bob@example.org>, carol@example.net\r\n\
Subject: Hello\r\n world\r\n\
Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\
Message-ID: <plain-1@example.com>\r\n\
\r\n\
Line one\r\n\
Line two\r\n";

    const ALTERNATIVE: &[u8] = b"From: \"Smith, John\" <john@example.com>\r\n\
To: undisclosed-recipients:;\r\n\
Subject: =?utf-8?q?Caf=C3=A9?=\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"alt\"\r\n\
\r\n\
--alt\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Plain text\r\n\
--alt\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
<p>HTML =C3=A9</p>\r\n\
--alt--\r\n";

    const MIXED: &[u8] = b"From: alice@example.com\r\n\
To: bob@example.org\r\n\
Subject: Report\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"mix\"\r\n\
\r\n\
This is a multi-part message in MIME format.\r\n\
--mix\r\n\
Content-Type: text/plain\r\n\
\r\n\
See attached.\r\n\
--mix\r\n\
Content-Type: application/pdf; name=\"report.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"report.pdf\"\r\n\
Content-ID: <att1@example.com>\r\n\
Content-Description: The report\r\n\
\r\n\
JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSL0ZpbHRlci9GbGF0ZURl\r\n\
Y29kZT4+CnN0cmVhbQp4nCvkMlAwUDA1NdUzMVGwMDHUszBSKErlCtfiyuMCAF9rBhQKZW5kc3Ry\r\n\
--mix--\r\n";

    const NESTED: &[u8] = b"From: alice@example.com\r\n\
To: bob@example.org\r\n\
Subject: Fwd: Lunch\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
--outer\r\n\
Content-Type: text/plain\r\n\
\r\n\
Forwarding.\r\n\
--outer\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: Carol <carol@example.net>\r\n\
To: alice@example.com\r\n\
Subject: Lunch\r\n\
Message-ID: <lunch@example.net>\r\n\
Content-Type: multipart/alternative; boundary=\"inner\"\r\n\
\r\n\
--inner\r\n\
Content-Type: text/plain\r\n\
\r\n\
Noon?\r\n\
--inner\r\n\
Content-Type: text/html\r\n\
\r\n\
<b>Noon?</b>\r\n\
--inner--\r\n\
--outer--\r\n";

    const PGP: &[u8] = b"From: Alice <alice@example.com>\r\n\
To: Bob <bob@example.org>\r\n\
Subject: ...\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n\
\x20boundary=\"pgp\"\r\n\
\r\n\
This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n\
--pgp\r\n\
Content-Type: application/pgp-encrypted\r\n\
Content-Description: PGP/MIME version identification\r\n\
\r\n\
Version: 1\r\n\
\r\n\
--pgp\r\n\
Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\
Content-Description: OpenPGP encrypted message\r\n\
Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\
\r\n\
-----BEGIN PGP MESSAGE-----\r\n\
\r\n\
hF4DAAAAAAAAAAASAQdAbm90IHJlYWxseSBlbmNyeXB0ZWQ=\r\n\
=ABCD\r\n\
-----END PGP MESSAGE-----\r\n\
\r\n\
--pgp--\r\n";

    const BARE_LF: &[u8] = b"From: alice@example.com\n\
To: bob@example.org\n\
Subject: Unix\n\
\x20line ends\n\
Content-Type: multipart/mixed; boundary=b\n\
\n\
--b\n\
Content-Type: text/plain\n\
\n\
one\n\
two\n\
--b\n\
Content-Type: text/plain; name=x.txt\n\
\n\
three\n\
--b--\n";

    const GARBAGE: &[u8] =
        b"\x00\xff\xfe garbage \x80\x81 no header (\"<>@,;:\r\n\xc3\x28 \\ {5}\r\n";

    /// What damage to a message is made of: line ends, MIME syntax, bytes IMAP forbids.
    const SNIPPETS: &[&[u8]] = &[
        b"\r",
        b"\n",
        b"\r\n",
        b"\r\n\r\n",
        b"-",
        b"--",
        b":",
        b";",
        b"\"",
        b"<",
        b">",
        b"=",
        b"\0",
        b"\xff",
        b" ",
        b"(",
        b"\\",
        b"\r\n--alt\r\n",
        b"\r\n--mix--\r\n",
        b"\r\n--outer\r\n",
        b"--inner--",
        b"\r\n--pgp\r\n",
        b"\n--b\n",
        b"Content-Type: message/rfc822\r\n",
        b"Content-Type: multipart/mixed; boundary=mix\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"From: \"a\" <a@b>, g: c@d;\r\n",
        b"Content-Type: text/plain; name*0*=utf-8''%C3; name*1=x\r\n",
    ];

    const SAMPLES: &[&[u8]] = &[PLAIN, ALTERNATIVE, MIXED, NESTED, PGP, BARE_LF, GARBAGE];

    fn get(message: &[u8], part: &[u32], text: SectionText) -> Option<Vec<u8>> {
        section(
            message,
            &Section {
                part: part.to_vec(),
                text,
            },
        )
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn fetched(item: &str, wire: &[u8]) -> MessageDataItem<'static> {
        let mut input = format!("* 1 FETCH ({item} ").into_bytes();
        input.extend_from_slice(wire);
        input.extend_from_slice(b")\r\n");
        let (rest, response) = ResponseCodec::default()
            .decode_static(&input)
            .unwrap_or_else(|e| {
                panic!(
                    "{item} does not parse ({e:?}): {}",
                    String::from_utf8_lossy(&input)
                )
            });
        assert!(rest.is_empty(), "left over: {rest:?}");
        let Response::Data(Data::Fetch { items, .. }) = response else {
            panic!("not a FETCH: {response:?}")
        };
        items.into_inner().remove(0)
    }

    fn structure(message: &[u8], extensible: bool) -> BodyStructure<'static> {
        let wire = body_structure(message, extensible);
        match fetched(if extensible { "BODYSTRUCTURE" } else { "BODY" }, &wire) {
            MessageDataItem::BodyStructure(b) if extensible => b,
            MessageDataItem::Body(b) if !extensible => b,
            other => panic!("unexpected item {other:?}"),
        }
    }

    fn decoded_envelope(message: &[u8]) -> Envelope<'static> {
        match fetched("ENVELOPE", &envelope(message)) {
            MessageDataItem::Envelope(e) => e,
            other => panic!("unexpected item {other:?}"),
        }
    }

    fn bytes<'s>(s: &'s IString<'_>) -> &'s [u8] {
        s.as_ref()
    }

    fn nbytes<'s>(s: &'s NString<'_>) -> Option<&'s [u8]> {
        s.0.as_ref().map(|s| s.as_ref())
    }

    /// An ENVELOPE address as (name, mailbox, host).
    type Triple = (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);

    fn address(a: &Address<'_>) -> Triple {
        (
            nbytes(&a.name).map(<[u8]>::to_vec),
            nbytes(&a.mailbox).map(<[u8]>::to_vec),
            nbytes(&a.host).map(<[u8]>::to_vec),
        )
    }

    fn addr(name: Option<&str>, mailbox: &str, host: &str) -> Triple {
        (
            name.map(|n| n.as_bytes().to_vec()),
            Some(mailbox.as_bytes().to_vec()),
            Some(host.as_bytes().to_vec()),
        )
    }

    /// (type, subtype, parameters, size) of a non-multipart body.
    fn single<'b>(
        body: &'b BodyStructure<'static>,
    ) -> (
        String,
        String,
        Vec<(String, String)>,
        u32,
        &'b SpecificFields<'static>,
    ) {
        let BodyStructure::Single { body, .. } = body else {
            panic!("multipart where a single part was expected: {body:?}")
        };
        let (ty, subtype) = match &body.specific {
            SpecificFields::Basic { r#type, subtype } => {
                (lossy(bytes(r#type)), lossy(bytes(subtype)))
            }
            SpecificFields::Text { subtype, .. } => ("TEXT".to_string(), lossy(bytes(subtype))),
            SpecificFields::Message { .. } => ("MESSAGE".to_string(), "RFC822".to_string()),
        };
        let params = body
            .basic
            .parameter_list
            .iter()
            .map(|(k, v)| (lossy(bytes(k)), lossy(bytes(v))))
            .collect();
        (
            ty.to_ascii_uppercase(),
            subtype.to_ascii_uppercase(),
            params,
            body.basic.size,
            &body.specific,
        )
    }

    fn multi<'b>(body: &'b BodyStructure<'static>) -> (&'b [BodyStructure<'static>], String) {
        let BodyStructure::Multi {
            bodies, subtype, ..
        } = body
        else {
            panic!("single part where a multipart was expected: {body:?}")
        };
        (bodies.as_ref(), lossy(bytes(subtype)).to_ascii_uppercase())
    }

    fn lossy(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    fn text_lines(specific: &SpecificFields<'_>) -> u32 {
        match specific {
            SpecificFields::Text {
                number_of_lines, ..
            } => *number_of_lines,
            other => panic!("not text: {other:?}"),
        }
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    /// Every size and line count in a decoded BODY(STRUCTURE) against what
    /// `section` returns for that part; `prefix` is where the message whose
    /// root this is sits (empty for the message itself).
    fn check_message(message: &[u8], root: &BodyStructure<'_>, prefix: &[u32]) {
        match root {
            BodyStructure::Multi { bodies, .. } => {
                for (i, body) in bodies.as_ref().iter().enumerate() {
                    check_part(message, body, &[prefix, &[i as u32 + 1]].concat());
                }
            }
            BodyStructure::Single { .. } => check_part(message, root, &[prefix, &[1]].concat()),
        }
    }

    fn check_part(message: &[u8], body: &BodyStructure<'_>, path: &[u32]) {
        assert!(
            get(message, path, SectionText::Mime).is_some(),
            "no MIME header for {path:?}"
        );
        match body {
            BodyStructure::Multi { bodies, .. } => {
                for (i, child) in bodies.as_ref().iter().enumerate() {
                    check_part(message, child, &[path, &[i as u32 + 1]].concat());
                }
            }
            BodyStructure::Single { body, .. } => {
                let content = get(message, path, SectionText::Full)
                    .unwrap_or_else(|| panic!("no part {path:?}"));
                assert_eq!(body.basic.size as usize, content.len(), "size of {path:?}");
                match &body.specific {
                    SpecificFields::Text {
                        number_of_lines, ..
                    } => {
                        assert_eq!(
                            *number_of_lines as usize,
                            lines(&content),
                            "lines of {path:?}"
                        )
                    }
                    SpecificFields::Message {
                        body_structure,
                        number_of_lines,
                        ..
                    } => {
                        assert_eq!(
                            *number_of_lines as usize,
                            lines(&content),
                            "lines of {path:?}"
                        );
                        let header = get(message, path, SectionText::Header)
                            .unwrap_or_else(|| panic!("no {path:?}.HEADER"));
                        let text = get(message, path, SectionText::Text)
                            .unwrap_or_else(|| panic!("no {path:?}.TEXT"));
                        if body
                            .basic
                            .content_transfer_encoding
                            .as_ref()
                            .eq_ignore_ascii_case(b"7BIT")
                        {
                            assert_eq!(
                                [header, text].concat(),
                                content,
                                "{path:?}.HEADER and .TEXT make up {path:?}"
                            );
                        }
                        check_message(message, body_structure, path);
                    }
                    SpecificFields::Basic { .. } => {}
                }
            }
        }
    }

    /// What must hold for any bytes: both forms and the envelope parse, sizes
    /// match the sections, HEADER and TEXT make up the message.
    fn consistent(message: &[u8]) {
        for extensible in [false, true] {
            let body = structure(message, extensible);
            check_message(message, &body, &[]);
        }
        decoded_envelope(message);
        let header =
            get(message, &[], SectionText::Header).expect("a message has a header, maybe empty");
        let text = get(message, &[], SectionText::Text).expect("a message has a text, maybe empty");
        assert_eq!([header, text].concat(), message);
        assert_eq!(
            get(message, &[], SectionText::Full).as_deref(),
            Some(message)
        );
        assert_eq!(get(message, &[], SectionText::Mime), None);
        summarized(message);
    }

    /// The summary kept at delivery answers as the whole message does, and
    /// reads back from its stored form.
    fn summarized(message: &[u8]) {
        let summary = Summary::of(message);
        assert_eq!(Summary::decode(&summary.encode()), Some(summary.clone()));
        assert_eq!(summary.envelope, envelope(message));
        assert_eq!(summary.body, body_structure(message, false));
        assert_eq!(summary.body_structure, body_structure(message, true));
        for text in [
            SectionText::Header,
            SectionText::HeaderFields(names(&["From", "subject", "X-Nowhere"])),
            SectionText::HeaderFieldsNot(names(&["Received", "Content-Type"])),
        ] {
            let wanted = Section { part: vec![], text };
            assert!(Summary::answers(&wanted));
            assert_eq!(summary.section(&wanted), section(message, &wanted));
        }
        let deeper = Section {
            part: vec![1],
            text: SectionText::Header,
        };
        assert!(!Summary::answers(&deeper));
        assert_eq!(summary.section(&deeper), None);
    }

    #[test]
    fn a_damaged_summary_is_not_read() {
        let encoded = Summary::of(SAMPLES[0]).encode();
        assert!(Summary::decode(&encoded).is_some());
        assert_eq!(Summary::decode(&encoded[..encoded.len() - 1]), None);
        assert_eq!(Summary::decode(&[encoded.as_slice(), b"x"].concat()), None);
        let mut other_format = encoded.clone();
        other_format[0] = 2;
        assert_eq!(Summary::decode(&other_format), None);
        assert_eq!(Summary::decode(&[]), None);
    }

    #[test]
    fn plain_text_sections() {
        let header = b"Return-Path: <alice@example.com>\r\n\
From: Alice Example <alice@example.com>\r\n\
To: Bob <bob@example.org>, carol@example.net\r\n\
Subject: Hello\r\n world\r\n\
Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\
Message-ID: <plain-1@example.com>\r\n\
\r\n";
        let text = b"Line one\r\nLine two\r\n";
        assert_eq!(get(PLAIN, &[], SectionText::Header).unwrap(), header);
        assert_eq!(get(PLAIN, &[], SectionText::Text).unwrap(), text);
        assert_eq!(get(PLAIN, &[1], SectionText::Full).unwrap(), text);
        assert_eq!(get(PLAIN, &[1], SectionText::Mime).unwrap(), header);
        assert_eq!(
            get(
                PLAIN,
                &[],
                SectionText::HeaderFields(names(&["SUBJECT", "from"]))
            )
            .unwrap(),
            b"From: Alice Example <alice@example.com>\r\nSubject: Hello\r\n world\r\n\r\n"
        );
        assert_eq!(
            get(
                PLAIN,
                &[],
                SectionText::HeaderFieldsNot(names(&["Return-Path", "To", "Subject", "Date"]))
            )
            .unwrap(),
            b"From: Alice Example <alice@example.com>\r\nMessage-ID: <plain-1@example.com>\r\n\r\n"
        );
        assert_eq!(
            get(PLAIN, &[], SectionText::HeaderFields(names(&["X-Absent"]))).unwrap(),
            b"\r\n"
        );
        // Part 1 of a text/plain message is not a message: no HEADER, no part 1.1.
        assert_eq!(get(PLAIN, &[1], SectionText::Header), None);
        assert_eq!(get(PLAIN, &[2], SectionText::Full), None);
        assert_eq!(get(PLAIN, &[0], SectionText::Full), None);
        assert_eq!(get(PLAIN, &[1, 1], SectionText::Full), None);
        consistent(PLAIN);
    }

    #[test]
    fn plain_text_envelope() {
        let e = decoded_envelope(PLAIN);
        assert_eq!(
            nbytes(&e.date),
            Some(&b"Mon, 7 Feb 1994 21:52:25 -0800"[..])
        );
        assert_eq!(nbytes(&e.subject), Some(&b"Hello world"[..]), "unfolded");
        let alice = || addr(Some("Alice Example"), "alice", "example.com");
        assert_eq!(e.from.iter().map(address).collect::<Vec<_>>(), [alice()]);
        assert_eq!(
            e.sender.iter().map(address).collect::<Vec<_>>(),
            [alice()],
            "Sender defaults to From"
        );
        assert_eq!(
            e.reply_to.iter().map(address).collect::<Vec<_>>(),
            [alice()],
            "Reply-To defaults to From"
        );
        assert_eq!(
            e.to.iter().map(address).collect::<Vec<_>>(),
            [
                addr(Some("Bob"), "bob", "example.org"),
                addr(None, "carol", "example.net")
            ]
        );
        assert!(e.cc.is_empty() && e.bcc.is_empty());
        assert_eq!(nbytes(&e.in_reply_to), None);
        assert_eq!(nbytes(&e.message_id), Some(&b"<plain-1@example.com>"[..]));
    }

    #[test]
    fn plain_text_body_structure() {
        for extensible in [false, true] {
            let body = structure(PLAIN, extensible);
            let (ty, subtype, params, size, specific) = single(&body);
            assert_eq!((ty.as_str(), subtype.as_str()), ("TEXT", "PLAIN"));
            assert_eq!(params, [pair("CHARSET", "us-ascii")]);
            assert_eq!(size, 20);
            assert_eq!(text_lines(specific), 2);
            let BodyStructure::Single {
                body,
                extension_data,
            } = &body
            else {
                unreachable!()
            };
            assert_eq!(bytes(&body.basic.content_transfer_encoding), b"7BIT");
            assert_eq!(extension_data.is_some(), extensible);
        }
        assert_eq!(
            body_structure(PLAIN, true),
            b"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 20 2 NIL NIL NIL NIL)"
        );
        assert_eq!(
            body_structure(PLAIN, false),
            b"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 20 2)"
        );
    }

    #[test]
    fn multipart_alternative() {
        assert_eq!(
            get(ALTERNATIVE, &[1], SectionText::Full).unwrap(),
            b"Plain text"
        );
        assert_eq!(
            get(ALTERNATIVE, &[2], SectionText::Full).unwrap(),
            b"<p>HTML =C3=A9</p>"
        );
        assert_eq!(
            get(ALTERNATIVE, &[2], SectionText::Mime).unwrap(),
            b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        );
        assert_eq!(
            get(
                ALTERNATIVE,
                &[],
                SectionText::HeaderFields(names(&["Subject", "From"]))
            )
            .unwrap(),
            b"From: \"Smith, John\" <john@example.com>\r\nSubject: =?utf-8?q?Caf=C3=A9?=\r\n\r\n"
        );
        assert!(
            get(ALTERNATIVE, &[], SectionText::Text)
                .unwrap()
                .starts_with(b"--alt\r\n")
        );
        assert_eq!(get(ALTERNATIVE, &[3], SectionText::Full), None);

        let body = structure(ALTERNATIVE, true);
        let (parts, subtype) = multi(&body);
        assert_eq!(subtype, "ALTERNATIVE");
        let (ty, st, params, size, specific) = single(&parts[0]);
        assert_eq!(
            (ty.as_str(), st.as_str(), size, text_lines(specific)),
            ("TEXT", "PLAIN", 10, 1)
        );
        assert_eq!(params, [pair("CHARSET", "utf-8")]);
        let (ty, st, _, size, _) = single(&parts[1]);
        assert_eq!((ty.as_str(), st.as_str(), size), ("TEXT", "HTML", 18));
        let BodyStructure::Single { body: html, .. } = &parts[1] else {
            unreachable!()
        };
        assert_eq!(
            bytes(&html.basic.content_transfer_encoding),
            b"QUOTED-PRINTABLE"
        );
        let BodyStructure::Multi {
            extension_data: Some(ext),
            ..
        } = &body
        else {
            panic!("no multipart extension data")
        };
        assert_eq!(
            ext.parameter_list
                .iter()
                .map(|(k, v)| (lossy(bytes(k)), lossy(bytes(v))))
                .collect::<Vec<_>>(),
            [pair("BOUNDARY", "alt")]
        );

        let e = decoded_envelope(ALTERNATIVE);
        assert_eq!(
            nbytes(&e.subject),
            Some(&b"=?utf-8?q?Caf=C3=A9?="[..]),
            "encoded-words are left to the client"
        );
        assert_eq!(
            e.from.iter().map(address).collect::<Vec<_>>(),
            [addr(Some("Smith, John"), "john", "example.com")]
        );
        // An empty group: its start and its end.
        assert_eq!(e.to.len(), 2);
        assert_eq!(
            nbytes(&e.to[0].mailbox),
            Some(&b"undisclosed-recipients"[..])
        );
        assert_eq!(nbytes(&e.to[0].host), None);
        assert_eq!(address(&e.to[1]), (None, None, None));
        consistent(ALTERNATIVE);
    }

    #[test]
    fn multipart_mixed_with_attachment() {
        let mime = b"Content-Type: application/pdf; name=\"report.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"report.pdf\"\r\n\
Content-ID: <att1@example.com>\r\n\
Content-Description: The report\r\n\
\r\n";
        let data =
            b"JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSL0ZpbHRlci9GbGF0ZURl\r\n\
Y29kZT4+CnN0cmVhbQp4nCvkMlAwUDA1NdUzMVGwMDHUszBSKErlCtfiyuMCAF9rBhQKZW5kc3Ry";
        assert_eq!(get(MIXED, &[2], SectionText::Mime).unwrap(), mime);
        assert_eq!(get(MIXED, &[2], SectionText::Full).unwrap(), data);
        assert_eq!(
            get(MIXED, &[1], SectionText::Full).unwrap(),
            b"See attached."
        );
        assert_eq!(
            get(MIXED, &[1], SectionText::Mime).unwrap(),
            b"Content-Type: text/plain\r\n\r\n"
        );
        assert_eq!(
            get(MIXED, &[2], SectionText::Text),
            None,
            "an attachment is not a message"
        );
        assert_eq!(
            get(
                MIXED,
                &[],
                SectionText::HeaderFields(names(&["subject", "FROM"]))
            )
            .unwrap(),
            b"From: alice@example.com\r\nSubject: Report\r\n\r\n"
        );

        let body = structure(MIXED, true);
        let (parts, subtype) = multi(&body);
        assert_eq!((parts.len(), subtype.as_str()), (2, "MIXED"));
        let (ty, st, params, size, specific) = single(&parts[0]);
        assert_eq!(
            (ty.as_str(), st.as_str(), size, text_lines(specific)),
            ("TEXT", "PLAIN", 13, 1)
        );
        assert_eq!(params, [pair("CHARSET", "us-ascii")], "the default charset");
        let (ty, st, params, size, _) = single(&parts[1]);
        assert_eq!(
            (ty.as_str(), st.as_str(), size as usize),
            ("APPLICATION", "PDF", data.len())
        );
        assert_eq!(params, [pair("NAME", "report.pdf")]);
        let BodyStructure::Single {
            body: pdf,
            extension_data: Some(ext),
        } = &parts[1]
        else {
            panic!("no extension data")
        };
        assert_eq!(bytes(&pdf.basic.content_transfer_encoding), b"BASE64");
        assert_eq!(nbytes(&pdf.basic.id), Some(&b"<att1@example.com>"[..]));
        assert_eq!(nbytes(&pdf.basic.description), Some(&b"The report"[..]));
        assert_eq!(nbytes(&ext.md5), None);
        let (disposition, params) = ext
            .tail
            .as_ref()
            .and_then(|t| t.disposition.as_ref())
            .expect("a disposition");
        assert_eq!(bytes(disposition), b"ATTACHMENT");
        assert_eq!(
            params
                .iter()
                .map(|(k, v)| (lossy(bytes(k)), lossy(bytes(v))))
                .collect::<Vec<_>>(),
            [pair("FILENAME", "report.pdf")]
        );

        // BODY has no extension data, at any depth.
        let BodyStructure::Multi {
            bodies,
            extension_data: None,
            ..
        } = structure(MIXED, false)
        else {
            panic!("extension data in BODY")
        };
        assert!(bodies.as_ref().iter().all(|b| matches!(
            b,
            BodyStructure::Single {
                extension_data: None,
                ..
            }
        )));
        consistent(MIXED);
    }

    #[test]
    fn nested_message() {
        let inner_header = b"From: Carol <carol@example.net>\r\n\
To: alice@example.com\r\n\
Subject: Lunch\r\n\
Message-ID: <lunch@example.net>\r\n\
Content-Type: multipart/alternative; boundary=\"inner\"\r\n\
\r\n";
        let inner_text = b"--inner\r\n\
Content-Type: text/plain\r\n\
\r\n\
Noon?\r\n\
--inner\r\n\
Content-Type: text/html\r\n\
\r\n\
<b>Noon?</b>\r\n\
--inner--";
        assert_eq!(
            get(NESTED, &[2], SectionText::Header).unwrap(),
            inner_header
        );
        assert_eq!(get(NESTED, &[2], SectionText::Text).unwrap(), inner_text);
        assert_eq!(
            get(NESTED, &[2], SectionText::Full).unwrap(),
            [&inner_header[..], inner_text].concat()
        );
        assert_eq!(
            get(NESTED, &[2], SectionText::Mime).unwrap(),
            b"Content-Type: message/rfc822\r\n\r\n"
        );
        assert_eq!(get(NESTED, &[2, 1], SectionText::Full).unwrap(), b"Noon?");
        assert_eq!(
            get(NESTED, &[2, 2], SectionText::Full).unwrap(),
            b"<b>Noon?</b>"
        );
        assert_eq!(
            get(NESTED, &[2, 2], SectionText::Mime).unwrap(),
            b"Content-Type: text/html\r\n\r\n"
        );
        assert_eq!(get(NESTED, &[2, 3], SectionText::Full), None);
        assert_eq!(
            get(
                NESTED,
                &[2],
                SectionText::HeaderFields(names(&["SUBJECT", "FROM"]))
            )
            .unwrap(),
            b"From: Carol <carol@example.net>\r\nSubject: Lunch\r\n\r\n"
        );
        assert_eq!(
            get(NESTED, &[1], SectionText::Full).unwrap(),
            b"Forwarding."
        );

        let body = structure(NESTED, true);
        let (parts, subtype) = multi(&body);
        assert_eq!(subtype, "MIXED");
        let (ty, st, _, size, specific) = single(&parts[1]);
        assert_eq!(
            (ty.as_str(), st.as_str(), size as usize),
            ("MESSAGE", "RFC822", inner_header.len() + inner_text.len())
        );
        let SpecificFields::Message {
            envelope,
            body_structure,
            number_of_lines,
        } = specific
        else {
            unreachable!()
        };
        assert_eq!(*number_of_lines, 15);
        assert_eq!(nbytes(&envelope.subject), Some(&b"Lunch"[..]));
        assert_eq!(
            envelope.from.iter().map(address).collect::<Vec<_>>(),
            [addr(Some("Carol"), "carol", "example.net")]
        );
        assert_eq!(
            nbytes(&envelope.message_id),
            Some(&b"<lunch@example.net>"[..])
        );
        let (inner, subtype) = multi(body_structure);
        assert_eq!(subtype, "ALTERNATIVE");
        let (ty, st, _, size, specific) = single(&inner[1]);
        assert_eq!(
            (ty.as_str(), st.as_str(), size, text_lines(specific)),
            ("TEXT", "HTML", 12, 1)
        );
        consistent(NESTED);
    }

    #[test]
    fn message_that_is_a_message() {
        let message = b"From: a@example.com\r\nContent-Type: message/rfc822\r\n\r\nFrom: b@example.com\r\nSubject: Inside\r\n\r\nHi\r\n";
        assert_eq!(
            get(message, &[1], SectionText::Header).unwrap(),
            b"From: b@example.com\r\nSubject: Inside\r\n\r\n"
        );
        assert_eq!(get(message, &[1, 1], SectionText::Full).unwrap(), b"Hi\r\n");
        let body = structure(message, true);
        let (ty, _, _, _, specific) = single(&body);
        assert_eq!(ty, "MESSAGE");
        let SpecificFields::Message { envelope, .. } = specific else {
            unreachable!()
        };
        assert_eq!(nbytes(&envelope.subject), Some(&b"Inside"[..]));
        consistent(message);
    }

    #[test]
    fn base64_encoded_message_is_entered_decoded() {
        // "From: b@example.com\r\nSubject: Inside\r\n\r\nHi\r\n"
        let message = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\
Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n\
RnJvbTogYkBleGFtcGxlLmNvbQ0KU3ViamVjdDogSW5zaWRlDQoNCkhpDQo=\r\n--x--\r\n";
        assert_eq!(
            get(message, &[1], SectionText::Header).unwrap(),
            b"From: b@example.com\r\nSubject: Inside\r\n\r\n"
        );
        assert_eq!(get(message, &[1, 1], SectionText::Full).unwrap(), b"Hi\r\n");
        let body = structure(message, true);
        let (parts, _) = multi(&body);
        let (_, _, _, size, specific) = single(&parts[0]);
        assert_eq!(size, 60, "the size is of the body as sent");
        let SpecificFields::Message { envelope, .. } = specific else {
            panic!("not a message: {specific:?}")
        };
        assert_eq!(nbytes(&envelope.subject), Some(&b"Inside"[..]));
        consistent(message);
    }

    #[test]
    fn digest_parts_default_to_messages() {
        let message = b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: One\r\n\r\nfirst\r\n--d\r\n\r\nSubject: Two\r\n\r\nsecond\r\n--d--\r\n";
        let body = structure(message, true);
        let (parts, subtype) = multi(&body);
        assert_eq!((parts.len(), subtype.as_str()), (2, "DIGEST"));
        let (ty, _, _, _, specific) = single(&parts[1]);
        assert_eq!(ty, "MESSAGE");
        let SpecificFields::Message { envelope, .. } = specific else {
            unreachable!()
        };
        assert_eq!(nbytes(&envelope.subject), Some(&b"Two"[..]));
        assert_eq!(get(message, &[2, 1], SectionText::Full).unwrap(), b"second");
        assert_eq!(get(message, &[2], SectionText::Mime).unwrap(), b"\r\n");
        consistent(message);
    }

    #[test]
    fn pgp_mime() {
        assert_eq!(
            get(PGP, &[1], SectionText::Full).unwrap(),
            b"Version: 1\r\n"
        );
        assert_eq!(
            get(PGP, &[1], SectionText::Mime).unwrap(),
            b"Content-Type: application/pgp-encrypted\r\nContent-Description: PGP/MIME version identification\r\n\r\n"
        );
        let armored = b"-----BEGIN PGP MESSAGE-----\r\n\
\r\n\
hF4DAAAAAAAAAAASAQdAbm90IHJlYWxseSBlbmNyeXB0ZWQ=\r\n\
=ABCD\r\n\
-----END PGP MESSAGE-----\r\n";
        assert_eq!(get(PGP, &[2], SectionText::Full).unwrap(), armored);
        assert_eq!(
            get(PGP, &[], SectionText::HeaderFields(names(&["Content-Type"]))).unwrap(),
            b"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n boundary=\"pgp\"\r\n\r\n"
        );

        let body = structure(PGP, true);
        let (parts, subtype) = multi(&body);
        assert_eq!(subtype, "ENCRYPTED");
        let BodyStructure::Multi {
            extension_data: Some(ext),
            ..
        } = &body
        else {
            panic!("no extension data")
        };
        assert_eq!(
            ext.parameter_list
                .iter()
                .map(|(k, v)| (lossy(bytes(k)), lossy(bytes(v))))
                .collect::<Vec<_>>(),
            [
                pair("PROTOCOL", "application/pgp-encrypted"),
                pair("BOUNDARY", "pgp")
            ]
        );
        let (ty, st, _, size, _) = single(&parts[0]);
        assert_eq!(
            (ty.as_str(), st.as_str(), size),
            ("APPLICATION", "PGP-ENCRYPTED", 12)
        );
        let (ty, st, params, size, _) = single(&parts[1]);
        assert_eq!(
            (ty.as_str(), st.as_str(), size as usize),
            ("APPLICATION", "OCTET-STREAM", armored.len())
        );
        assert_eq!(params, [pair("NAME", "encrypted.asc")]);
        let BodyStructure::Single {
            extension_data: Some(ext),
            ..
        } = &parts[1]
        else {
            panic!("no extension data")
        };
        let (disposition, _) = ext
            .tail
            .as_ref()
            .and_then(|t| t.disposition.as_ref())
            .expect("a disposition");
        assert_eq!(bytes(disposition), b"INLINE");
        consistent(PGP);
    }

    #[test]
    fn bare_line_feeds() {
        assert_eq!(
            get(BARE_LF, &[], SectionText::Header).unwrap(),
            b"From: alice@example.com\nTo: bob@example.org\nSubject: Unix\n line ends\nContent-Type: multipart/mixed; boundary=b\n\n"
        );
        assert_eq!(get(BARE_LF, &[1], SectionText::Full).unwrap(), b"one\ntwo");
        assert_eq!(get(BARE_LF, &[2], SectionText::Full).unwrap(), b"three");
        assert_eq!(
            get(BARE_LF, &[2], SectionText::Mime).unwrap(),
            b"Content-Type: text/plain; name=x.txt\n\n"
        );
        assert_eq!(
            get(
                BARE_LF,
                &[],
                SectionText::HeaderFields(names(&["Subject", "From"]))
            )
            .unwrap(),
            b"From: alice@example.com\nSubject: Unix\n line ends\n\r\n"
        );
        assert!(
            get(BARE_LF, &[], SectionText::Text)
                .unwrap()
                .starts_with(b"--b\n")
        );
        let body = structure(BARE_LF, true);
        let (parts, _) = multi(&body);
        let (_, _, _, size, specific) = single(&parts[0]);
        assert_eq!((size, text_lines(specific)), (7, 2));
        assert_eq!(
            nbytes(&decoded_envelope(BARE_LF).subject),
            Some(&b"Unix line ends"[..])
        );
        consistent(BARE_LF);
    }

    #[test]
    fn garbage_is_plain_text() {
        assert_eq!(get(GARBAGE, &[], SectionText::Header).unwrap(), b"");
        assert_eq!(get(GARBAGE, &[], SectionText::Text).unwrap(), GARBAGE);
        assert_eq!(get(GARBAGE, &[1], SectionText::Full).unwrap(), GARBAGE);
        assert_eq!(
            get(GARBAGE, &[], SectionText::HeaderFields(names(&["Subject"]))).unwrap(),
            b"\r\n"
        );
        let body = structure(GARBAGE, true);
        let (ty, st, _, size, specific) = single(&body);
        assert_eq!(
            (
                ty.as_str(),
                st.as_str(),
                size as usize,
                text_lines(specific)
            ),
            ("TEXT", "PLAIN", GARBAGE.len(), 2)
        );
        let e = decoded_envelope(GARBAGE);
        assert!(e.from.is_empty() && nbytes(&e.subject).is_none() && nbytes(&e.date).is_none());
        for raw in [
            &b""[..],
            b"\r\n",
            b"\n",
            b"x",
            b"Subject: no body",
            b"\x00",
            b"--\r\n--",
        ] {
            consistent(raw);
        }
    }

    #[test]
    fn broken_multiparts_are_described() {
        let no_boundary = b"Content-Type: multipart/mixed; boundary=zz\r\n\r\nnever a boundary\r\n";
        let (ty, ..) = single(&structure(no_boundary, true));
        assert_eq!(ty, "TEXT");
        consistent(no_boundary);
        let no_end = b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\ncut";
        assert_eq!(get(no_end, &[1], SectionText::Full).unwrap(), b"cut");
        consistent(no_end);
        let no_parameter = b"Content-Type: multipart/mixed\r\n\r\n--zz\r\n\r\nx\r\n--zz--\r\n";
        consistent(no_parameter);
        let bad_type = b"Content-Type: text\r\n\r\nx";
        let (ty, st, ..) = single(&structure(bad_type, false));
        assert_eq!((ty.as_str(), st.as_str()), ("TEXT", "PLAIN"));
    }

    #[test]
    fn every_truncation_is_described_consistently() {
        for sample in SAMPLES {
            for end in 0..=sample.len() {
                consistent(&sample[..end]);
            }
        }
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut message = b"text at the bottom\r\n".to_vec();
        for level in 0..200 {
            let boundary = format!("b{level}");
            message = [
                format!(
                    "Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n--{boundary}\r\n"
                )
                .as_bytes(),
                &message,
                format!("\r\n--{boundary}--\r\n").as_bytes(),
            ]
            .concat();
            if level % 3 == 0 {
                message = [b"Content-Type: message/rfc822\r\n\r\n".as_slice(), &message].concat();
            }
        }
        // The description goes MAX_NESTING bodies down, then says text/plain
        // (an envelope adds three levels of parentheses to a body's one).
        let structure = body_structure(&message, true);
        let (mut depth, mut deepest, mut quoted, mut escaped) = (0i32, 0, false, false);
        for &b in &structure {
            match b {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                b'(' if !quoted => depth += 1,
                b')' if !quoted => depth -= 1,
                _ => {}
            }
            deepest = deepest.max(depth);
        }
        assert_eq!(depth, 0);
        let deepest = deepest as usize;
        assert!(
            (MAX_NESTING..=MAX_NESTING + 4).contains(&deepest),
            "nesting {deepest}"
        );
        assert!(
            section(
                &message,
                &Section {
                    part: vec![1; 300],
                    text: SectionText::Full
                }
            )
            .is_none()
        );
        assert!(
            section(
                &message,
                &Section {
                    part: vec![1; 5],
                    text: SectionText::Full
                }
            )
            .is_some()
        );
    }

    #[test]
    fn addresses() {
        let parse = |v: &str| parse_addresses(v.as_bytes());
        let mailbox = |name: Option<&str>, local: &str, domain: &str| Entry::Mailbox {
            name: name.map(|n| n.as_bytes().to_vec()),
            route: None,
            local: local.as_bytes().to_vec(),
            domain: domain.as_bytes().to_vec(),
        };
        assert_eq!(parse("a@example.com"), [mailbox(None, "a", "example.com")]);
        assert_eq!(
            parse("\"Doe, J.\" <j@example.com>"),
            [mailbox(Some("Doe, J."), "j", "example.com")]
        );
        assert_eq!(
            parse("=?utf-8?q?J=C3=B6rg?= Smith <js@example.com>"),
            [mailbox(
                Some("=?utf-8?q?J=C3=B6rg?= Smith"),
                "js",
                "example.com"
            )]
        );
        assert_eq!(
            parse("j@example.com (Jane)"),
            [mailbox(Some("Jane"), "j", "example.com")]
        );
        assert_eq!(
            parse("j@example.com <j@example.com>"),
            [mailbox(Some("j@example.com"), "j", "example.com")]
        );
        assert_eq!(
            parse("\"john q\"@example.com"),
            [mailbox(None, "john q", "example.com")]
        );
        assert_eq!(parse("MAILER-DAEMON"), [mailbox(None, "MAILER-DAEMON", "")]);
        assert_eq!(parse("<>"), [mailbox(None, "", "")]);
        assert_eq!(
            parse("<@relay.example:u@example.com>"),
            [Entry::Mailbox {
                name: None,
                route: Some(b"@relay.example".to_vec()),
                local: b"u".to_vec(),
                domain: b"example.com".to_vec()
            }]
        );
        assert_eq!(
            parse("Friends: a@example.com, B <b@example.com>;, c@example.com"),
            [
                Entry::GroupStart(b"Friends".to_vec()),
                mailbox(None, "a", "example.com"),
                mailbox(Some("B"), "b", "example.com"),
                Entry::GroupEnd,
                mailbox(None, "c", "example.com"),
            ]
        );
        assert_eq!(
            parse("Unclosed: a@example.com"),
            [
                Entry::GroupStart(b"Unclosed".to_vec()),
                mailbox(None, "a", "example.com"),
                Entry::GroupEnd
            ]
        );
        assert_eq!(parse(""), []);
        assert_eq!(parse(" , ,"), []);
        // Whatever the bytes, something comes out and nothing panics.
        for junk in [
            "<<<",
            ">>>",
            "\"unterminated",
            "(((",
            ")))",
            "a@",
            "@",
            ":;:;",
            "<a@b",
            "[1.2.3.4]",
            "\\",
        ] {
            parse(junk);
        }

        let message =
            b"From: A <a@example.com>\r\nCc: Team: x@example.com, y@example.com;\r\nSender: S <s@example.com>\r\n\r\n";
        let e = decoded_envelope(message);
        assert_eq!(
            e.sender.iter().map(address).collect::<Vec<_>>(),
            [addr(Some("S"), "s", "example.com")]
        );
        assert_eq!(
            e.reply_to.iter().map(address).collect::<Vec<_>>(),
            [addr(Some("A"), "a", "example.com")]
        );
        assert_eq!(
            e.cc.iter().map(address).collect::<Vec<_>>(),
            [
                (None, Some(b"Team".to_vec()), None),
                addr(None, "x", "example.com"),
                addr(None, "y", "example.com"),
                (None, None, None)
            ]
        );
    }

    #[test]
    fn eight_bit_and_odd_header_values_are_literals() {
        let message =
            "Subject: Café \"quoted\" \\ back\r\nFrom: Jörg <j@example.com>\r\nTo: a\0b@example.com\r\n\r\n".as_bytes();
        let e = decoded_envelope(message);
        assert_eq!(
            nbytes(&e.subject),
            Some("Café \"quoted\" \\ back".as_bytes())
        );
        assert_eq!(
            e.from.iter().map(address).collect::<Vec<_>>(),
            [addr(Some("Jörg"), "j", "example.com")]
        );
        assert_eq!(
            e.to.iter().map(address).collect::<Vec<_>>(),
            [addr(None, "ab", "example.com")],
            "NUL never reaches the wire"
        );

        let message = "Content-Type: text/plain; name*=utf-8''%E2%82%AC.txt\r\n\r\nx".as_bytes();
        let (_, _, params, ..) = single(&structure(message, true));
        assert_eq!(
            params,
            [
                pair("NAME*", "utf-8''%E2%82%AC.txt"),
                pair("CHARSET", "us-ascii")
            ]
        );
    }

    #[test]
    fn extension_data() {
        let message =
            b"Content-Type: text/html\r\nContent-Language: en, fr\r\nContent-Location: http://example.com/a\r\n\r\n<p>";
        let BodyStructure::Single {
            extension_data: Some(ext),
            ..
        } = structure(message, true)
        else {
            panic!("no extension data")
        };
        let disposition = ext.tail.expect("disposition");
        assert!(disposition.disposition.is_none());
        let language = disposition.tail.expect("language");
        assert_eq!(
            language
                .language
                .iter()
                .map(|l| lossy(bytes(l)))
                .collect::<Vec<_>>(),
            ["en", "fr"]
        );
        let location = language.tail.expect("location");
        assert_eq!(
            nbytes(&location.location),
            Some(&b"http://example.com/a"[..])
        );
    }

    #[test]
    fn strings() {
        let quoted = |s: &[u8]| {
            let mut out = Vec::new();
            string(&mut out, s);
            out
        };
        assert_eq!(quoted(b""), b"\"\"");
        assert_eq!(quoted(b"a \"b\" \\c"), b"\"a \\\"b\\\" \\\\c\"");
        assert_eq!(quoted(b"two\r\nlines"), b"{10}\r\ntwo\r\nlines");
        assert_eq!(quoted("é".as_bytes()), b"{2}\r\n\xc3\xa9");
        assert_eq!(quoted(&[b'a'; 1001])[..7], *b"{1001}\r");
        let mut out = Vec::new();
        nstring(&mut out, None);
        out.push(b' ');
        nstring(&mut out, Some(b"x"));
        assert_eq!(out, b"NIL \"x\"");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_break_it(raw in proptest::collection::vec(any::<u8>(), 0..600)) {
            consistent(&raw);
        }

        #[test]
        fn damaged_samples_never_break_it(
            sample in 0..SAMPLES.len(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), prop::sample::select(SNIPPETS), any::<bool>()), 1..12),
        ) {
            let mut raw = SAMPLES[sample].to_vec();
            for (at, snippet, insert) in edits {
                let at = at.index(raw.len() + 1);
                let end = if insert { at } else { (at + snippet.len()).min(raw.len()) };
                raw.splice(at..end, snippet.iter().copied());
            }
            consistent(&raw);
        }
    }
}
