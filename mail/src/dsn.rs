//! Delivery status notifications: the bounce a sender finds in their Inbox
//! when outbound delivery has failed for good, because the remote server
//! refused a recipient with a 5xx reply or because the retry lifetime ran out.
//!
//! A notification is a `multipart/report; report-type=delivery-status`
//! (RFC 6522) of three parts: an explanation for people, quoting the remote
//! reply; the machine-readable `message/delivery-status` (RFC 3464), one block
//! per failed recipient; and the header block of the original message as
//! `text/rfc822-headers`. It is marked `Auto-Submitted: auto-replied`
//! (RFC 3834) so that no responder answers it.
//!
//! Building one is pure: the queue decides when to bounce (never for a null
//! reverse-path, RFC 5321 §6.1) and files the result. Everything that comes
//! from outside (the remote reply above all, but also addresses, host names
//! and the original headers) is made inert here: a line break can never start
//! a field of its own, header values are ASCII and folded, no line exceeds
//! RFC 5322's 998 octets, and the bodies that may carry 8-bit text go
//! quoted-printable, so the whole message is 7-bit.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

/// The subject of every notification.
pub const SUBJECT: &str = "Undelivered Mail Returned to Sender";

/// Where a folded field line is cut when its words allow (RFC 5322 §2.1.1).
const SOFT_LIMIT: usize = 78;
/// The length no line may exceed, CRLF excluded (RFC 5322 §2.1.1).
const HARD_LIMIT: usize = 998;
/// The longest line of a quoted-printable body, soft break included (RFC 2045 §6.7).
const QP_LIMIT: usize = 76;

/// One recipient the message could not be delivered to.
#[derive(Clone, Debug)]
pub struct FailedRecipient<'a> {
    /// The recipient as given in `RCPT TO`: `Final-Recipient: rfc822; address`
    /// (`utf-8;` with RFC 6533 escapes when it is not ASCII).
    pub address: &'a str,
    /// The enhanced status code (RFC 3463), such as `5.1.1`. The queue derives
    /// it (`5.0.0` for a bare 5xx, `4.4.7` for an expired lifetime); anything
    /// that is not `class.subject.detail` is reported as one of those two.
    pub status: &'a str,
    /// The host that gave the reply: `Remote-MTA: dns; host`.
    pub remote_mta: Option<&'a str>,
    /// The remote reply as received, all its lines, such as
    /// `550 5.1.1 <bob@example.net>: no such user`: `Diagnostic-Code: smtp; …`.
    pub diagnostic: Option<&'a str>,
    /// When delivery to this recipient was last tried.
    pub last_attempt: DateTime<Utc>,
}

/// What the notification reports: one message, some of whose recipients failed.
#[derive(Clone, Debug)]
pub struct Bounce<'a> {
    /// Our host name: `Reporting-MTA: dns; host` and the Message-ID's domain.
    pub reporting_mta: &'a str,
    /// The address of the `From: Mail Delivery System <…>`, such as `postmaster@host`.
    pub postmaster: &'a str,
    /// The original sender, whose Inbox the notification goes to.
    pub to: &'a str,
    /// The `ENVID` the sender gave, if any, passed on as received.
    pub original_envelope_id: Option<&'a str>,
    /// When the original message was accepted for delivery.
    pub arrival: DateTime<Utc>,
    /// The header block of the original message, up to its blank line (a body
    /// after it is ignored). The part is left out when this is empty.
    pub original_headers: &'a [u8],
    /// The recipients that failed, each reported in a block of its own.
    pub recipients: &'a [FailedRecipient<'a>],
    /// `true` when the retry lifetime ran out, `false` when a server refused.
    pub expired: bool,
    /// The sender's tenant's wording and brand (its `delivery_failure`
    /// template): subject, sender name and the opening of the explanation.
    pub notice: Option<Notice<'a>>,
}

/// A branded opening for the notification.
#[derive(Clone, Copy, Debug)]
pub struct Notice<'a> {
    pub subject: &'a str,
    /// The display name of the `From` (the tenant's product name).
    pub from_name: &'a str,
    /// Plain text, before the technical details.
    pub text: &'a str,
}

/// `text` as an RFC 2047 encoded word when it is not plain ASCII.
fn encode_word(text: &str) -> String {
    use base64::Engine;
    if text.is_ascii() {
        text.to_owned()
    } else {
        format!(
            "=?utf-8?b?{}?=",
            base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
        )
    }
}

/// The notification as a complete RFC 5322 message, CRLF line endings,
/// dated now, with a fresh Message-ID and MIME boundary.
pub fn build(bounce: &Bounce<'_>) -> Vec<u8> {
    // A UUIDv7: time-ordered, with 74 random bits.
    render(bounce, Utc::now(), &tenants::MessageId::new().to_string())
}

/// [`build`] with the date and the unique token given, so that the output is
/// a function of the input alone. `unique` (its letters, digits and `-`)
/// becomes the local part of the Message-ID and the core of the boundary.
pub fn render(bounce: &Bounce<'_>, date: DateTime<Utc>, unique: &str) -> Vec<u8> {
    let host = host_name(bounce.reporting_mta);
    let token = token(unique);
    let mut parts = vec![explanation_part(bounce, &host), report_part(bounce, &host)];
    parts.extend(headers_part(bounce.original_headers));
    let boundary = boundary(&token, &parts);

    let mut out = top_fields(bounce, date, &host, &token, &boundary);
    out.push_str("\r\nThis is a MIME-encapsulated delivery status notification.\r\n");
    for part in &parts {
        let _ = write!(out, "\r\n--{boundary}\r\n{part}");
    }
    let _ = write!(out, "\r\n--{boundary}--\r\n");
    out.into_bytes()
}

/// The header of the notification itself.
fn top_fields(
    bounce: &Bounce<'_>,
    date: DateTime<Utc>,
    host: &str,
    token: &str,
    boundary: &str,
) -> String {
    let postmaster = match address(bounce.postmaster) {
        empty if empty.is_empty() => format!("postmaster@{host}"),
        postmaster => postmaster,
    };
    let to = match address(bounce.to) {
        // Only with a null reverse-path, which is never to be bounced.
        empty if empty.is_empty() => "undisclosed-recipients:;".to_owned(),
        to => format!("<{to}>"),
    };
    let (from_name, subject) = match &bounce.notice {
        Some(n) => (
            n.from_name.replace(['"', '<', '>', '\r', '\n'], ""),
            encode_word(&n.subject.replace(['\r', '\n'], " ")),
        ),
        None => ("Mail Delivery System".to_owned(), SUBJECT.to_owned()),
    };
    [
        field(
            "From",
            &format!("{} <{postmaster}>", encode_word(&from_name)),
        ),
        field("To", &to),
        field("Subject", &subject),
        field("Date", &date.to_rfc2822()),
        field("Message-ID", &format!("<{token}@{host}>")),
        field("Auto-Submitted", "auto-replied"),
        field("MIME-Version", "1.0"),
        field(
            "Content-Type",
            &format!("multipart/report; report-type=delivery-status; boundary=\"{boundary}\""),
        ),
    ]
    .concat()
}

/// A boundary made of the token that occurs in no part. With a random token
/// the first candidate always wins; the loop guards [`render`] with a fixed one.
fn boundary(token: &str, parts: &[String]) -> String {
    (0u64..)
        .map(|n| format!("=_{token}.{n}"))
        .find(|candidate| parts.iter().all(|part| !part.contains(candidate.as_str())))
        .unwrap_or_else(|| format!("=_{token}"))
}

/// Part one: what happened, for people, each remote reply quoted as received.
fn explanation_part(bounce: &Bounce<'_>, host: &str) -> String {
    let text = explanation(bounce, host);
    let charset = if text.is_ascii() { "us-ascii" } else { "utf-8" };
    let (encoding, body) = text_body(text.as_bytes());
    [
        field("Content-Type", &format!("text/plain; charset={charset}")),
        field("Content-Description", "Notification"),
        field("Content-Transfer-Encoding", encoding),
        "\r\n".to_owned(),
        body,
    ]
    .concat()
}

/// The explanation as plain text, lines separated by `\n`.
fn explanation(bounce: &Bounce<'_>, host: &str) -> String {
    let mut text = match &bounce.notice {
        Some(n) => format!(
            "{}\n-- \nThe details, for your mail administrator (from {host}):\n\n",
            n.text.trim_end()
        ),
        None => format!("This is the mail delivery system at {host}.\n\n"),
    };
    if bounce.expired {
        let _ = writeln!(
            text,
            "Your message could not be delivered to the recipients below. It has been\n\
             retried since {},\n\
             until the retry period expired, and delivery has now been given up.",
            bounce.arrival.to_rfc2822()
        );
    } else {
        text.push_str(
            "Your message could not be delivered to the recipients below: the receiving\n\
             mail server refused it with a permanent error, so it will not be retried.\n",
        );
    }
    for recipient in bounce.recipients {
        explain_recipient(&mut text, recipient, bounce.expired);
    }
    if !header_lines(bounce.original_headers).is_empty() {
        text.push_str("\nThe headers of your original message are attached.\n");
    }
    text
}

/// One recipient's paragraph of the explanation.
fn explain_recipient(text: &mut String, recipient: &FailedRecipient<'_>, expired: bool) {
    let _ = writeln!(text, "\n<{}>", one_line(recipient.address));
    let _ = writeln!(text, "    Status: {}", status(recipient.status, expired));
    if let Some(mta) = recipient
        .remote_mta
        .map(one_line)
        .filter(|mta| !mta.is_empty())
    {
        let _ = writeln!(text, "    Remote server: {mta}");
    }
    let reply: Vec<String> = recipient.diagnostic.map(reply_lines).unwrap_or_default();
    if reply.is_empty() {
        text.push_str("    No reply from a remote server was recorded.\n");
    } else {
        text.push_str(if expired {
            "    The last reply was:\n"
        } else {
            "    The server replied:\n"
        });
        for line in reply {
            let _ = writeln!(text, "        {line}");
        }
    }
    let _ = writeln!(
        text,
        "    Last attempt: {}",
        recipient.last_attempt.to_rfc2822()
    );
}

/// Part two: the machine-readable report (RFC 3464 §2), always 7-bit.
fn report_part(bounce: &Bounce<'_>, host: &str) -> String {
    let mut part = [
        field("Content-Type", "message/delivery-status"),
        field("Content-Description", "Delivery report"),
        "\r\n".to_owned(),
    ]
    .concat();
    if let Some(id) = bounce
        .original_envelope_id
        .map(word)
        .filter(|id| !id.is_empty())
    {
        part.push_str(&field("Original-Envelope-Id", &id));
    }
    part.push_str(&field("Reporting-MTA", &format!("dns; {host}")));
    part.push_str(&field("Arrival-Date", &bounce.arrival.to_rfc2822()));
    for recipient in bounce.recipients {
        part.push_str("\r\n");
        part.push_str(&recipient_fields(recipient, bounce.expired));
    }
    part
}

/// One per-recipient block of the report.
fn recipient_fields(recipient: &FailedRecipient<'_>, expired: bool) -> String {
    let mut block = [
        field("Final-Recipient", &typed_address(recipient.address)),
        field("Action", "failed"),
        field("Status", status(recipient.status, expired)),
    ]
    .concat();
    if let Some(mta) = recipient.remote_mta.map(word).filter(|mta| !mta.is_empty()) {
        block.push_str(&field("Remote-MTA", &format!("dns; {mta}")));
    }
    if let Some(reply) = recipient
        .diagnostic
        .map(diagnostic)
        .filter(|reply| !reply.is_empty())
    {
        block.push_str(&field("Diagnostic-Code", &format!("smtp; {reply}")));
    }
    block.push_str(&field(
        "Last-Attempt-Date",
        &recipient.last_attempt.to_rfc2822(),
    ));
    block
}

/// Part three: the original header block, or nothing when there is none.
fn headers_part(original: &[u8]) -> Option<String> {
    let lines = header_lines(original);
    if lines.is_empty() {
        return None;
    }
    let block = lines.join(&b"\n"[..]);
    let content_type = match std::str::from_utf8(&block) {
        Ok(text) if !text.is_ascii() => "text/rfc822-headers; charset=utf-8",
        _ => "text/rfc822-headers",
    };
    let (encoding, body) = text_body(&block);
    Some(
        [
            field("Content-Type", content_type),
            field("Content-Description", "Undelivered message headers"),
            field("Content-Transfer-Encoding", encoding),
            "\r\n".to_owned(),
            body,
        ]
        .concat(),
    )
}

/// The lines of a header block, up to the first empty one.
fn header_lines(original: &[u8]) -> Vec<&[u8]> {
    lines(original)
        .into_iter()
        .take_while(|line| !line.is_empty())
        .collect()
}

/// `status` when it is an enhanced status code `class.subject.detail`
/// (RFC 3463 §2), otherwise the default for the kind of failure.
fn status(status: &str, expired: bool) -> &str {
    let number =
        |part: &str| (1..=3).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
    let mut parts = status.split('.');
    let valid = matches!(parts.next(), Some("2" | "4" | "5"))
        && parts.next().is_some_and(number)
        && parts.next().is_some_and(number)
        && parts.next().is_none();
    match (valid, expired) {
        (true, _) => status,
        (false, true) => "4.4.7",
        (false, false) => "5.0.0",
    }
}

/// An address as a report field types it: `rfc822; addr` when it is ASCII,
/// otherwise `utf-8; addr` in utf-8-addr-xtext (RFC 6533 §3): every
/// character but the printable ASCII ones other than `+`, `=` and `\` as
/// `\x{HEX}`, so that the report stays 7-bit.
fn typed_address(address: &str) -> String {
    let address = one_line(address);
    if address.is_ascii() {
        return format!("rfc822; {address}");
    }
    let mut escaped = String::with_capacity(address.len() * 2);
    for c in address.chars() {
        match c {
            '+' | '=' | '\\' => push_escape(&mut escaped, c),
            '!'..='~' => escaped.push(c),
            _ => push_escape(&mut escaped, c),
        }
    }
    format!("utf-8; {escaped}")
}

/// The remote reply for `Diagnostic-Code`: one line, its own lines joined with
/// a space, anything not ASCII as `\x{HEX}` (the escape of RFC 6533 §3).
fn diagnostic(reply: &str) -> String {
    let line = one_line(reply);
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if c.is_ascii() {
            out.push(c)
        } else {
            push_escape(&mut out, c)
        }
    }
    out
}

/// The remote reply for people: its lines as received, control characters
/// left out, empty lines dropped.
fn reply_lines(reply: &str) -> Vec<String> {
    reply
        .split(['\r', '\n'])
        .map(|line| line.chars().filter(|c| !c.is_control()).collect::<String>())
        .filter(|line| !line.trim().is_empty())
        .collect()
}

/// `text` on one line: each run of line breaks becomes one space, a tab a
/// space, other control characters are dropped, and the ends are trimmed.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_break = false;
    for c in text.chars() {
        match c {
            '\r' | '\n' => {
                if !in_break {
                    out.push(' ');
                }
                in_break = true;
                continue;
            }
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
        in_break = false;
    }
    out.trim().to_owned()
}

/// A single token for a field (a host name, an envelope id): no spaces or
/// control characters, anything not ASCII as `\x{HEX}`.
fn word(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
    {
        if c.is_ascii() {
            out.push(c)
        } else {
            push_escape(&mut out, c)
        }
    }
    out
}

/// An address for a header: a [`word`] without the angle brackets, which the
/// field adds. Local accounts are ASCII (`tenants::LocalPart`), so for them
/// this changes nothing.
fn address(text: &str) -> String {
    word(text).replace(['<', '>'], "")
}

/// Our host name as a dot-atom fit for a Message-ID: labels of letters,
/// digits and hyphens.
fn host_name(text: &str) -> String {
    let labels: Vec<String> = text
        .split('.')
        .map(|label| {
            label
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect::<String>()
        })
        .filter(|label| !label.is_empty())
        .collect();
    if labels.is_empty() {
        "localhost".to_owned()
    } else {
        labels.join(".")
    }
}

/// The unique token: letters, digits and `-` only, at most 40 of them.
fn token(unique: &str) -> String {
    let token: String = unique
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    if token.is_empty() {
        "dsn".to_owned()
    } else {
        token
    }
}

fn push_escape(out: &mut String, c: char) {
    let _ = write!(out, "\\x{{{:X}}}", u32::from(c));
}

/// A field `name: value`, CRLF-terminated, folded (RFC 5322 §2.2.3) before a
/// space so that lines keep to 78 characters where the words allow. A word
/// too long for 998 octets is cut with a fold, the only case where unfolding
/// does not give the value back exactly. `value` is ASCII without line breaks
/// (see [`one_line`], [`word`]).
fn field(name: &str, value: &str) -> String {
    let spaced = format!(" {value}");
    let mut out = String::with_capacity(name.len() + spaced.len() + 8);
    out.push_str(name);
    out.push(':');
    let mut width = out.len();
    for (i, (spaces, word)) in words(&spaced).into_iter().enumerate() {
        let overflows = width + spaces.len() + word.len() > SOFT_LIMIT;
        if i > 0 && overflows && !spaces.is_empty() && !word.is_empty() {
            // The last space starts the continuation line, so it is never blank.
            let (stay, lead) = spaces.split_at(spaces.len() - 1);
            push_capped(&mut out, &mut width, stay);
            out.push_str("\r\n");
            width = 0;
            push_capped(&mut out, &mut width, lead);
        } else {
            push_capped(&mut out, &mut width, spaces);
        }
        push_capped(&mut out, &mut width, word);
    }
    out.push_str("\r\n");
    out
}

/// Appends to a field line, folding inside a word when the line would pass
/// 998 octets. A space that would overflow is dropped: the fold puts one back.
fn push_capped(out: &mut String, width: &mut usize, text: &str) {
    for c in text.chars() {
        if *width + c.len_utf8() > HARD_LIMIT {
            if c == ' ' {
                continue;
            }
            out.push_str("\r\n ");
            *width = 1;
        }
        out.push(c);
        *width += c.len_utf8();
    }
}

/// `text` cut before each run of spaces: pairs of the spaces and the word after them.
fn words(text: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let start = rest.find(|c| c != ' ').unwrap_or(rest.len());
        let end = rest[start..].find(' ').map_or(rest.len(), |i| start + i);
        out.push((&rest[..start], &rest[start..end]));
        rest = &rest[end..];
    }
    out
}

/// The lines of `text`, split at CRLF, LF or a lone CR, without a last empty
/// one after a final line break.
fn lines(text: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.iter().position(|b| matches!(b, b'\r' | b'\n')) {
        out.push(&rest[..at]);
        let skip = if rest[at..].starts_with(b"\r\n") {
            2
        } else {
            1
        };
        rest = &rest[at + skip..];
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// A text body for a 7-bit message, with its Content-Transfer-Encoding:
/// `7bit` when every line is printable ASCII within 998 octets, otherwise
/// `quoted-printable`. Line breaks become CRLF either way.
fn text_body(text: &[u8]) -> (&'static str, String) {
    let lines = lines(text);
    let plain = |b: &u8| *b == b'\t' || (0x20..0x7f).contains(b);
    if lines
        .iter()
        .all(|line| line.len() <= HARD_LIMIT && line.iter().all(plain))
    {
        let mut body = String::with_capacity(text.len() + lines.len());
        for line in lines {
            body.extend(line.iter().map(|&b| char::from(b)));
            body.push_str("\r\n");
        }
        return ("7bit", body);
    }
    let mut body = String::with_capacity(text.len() * 3 / 2);
    for line in lines {
        quoted_printable_line(&mut body, line);
        body.push_str("\r\n");
    }
    ("quoted-printable", body)
}

/// One line in quoted-printable (RFC 2045 §6.7): printable ASCII but `=` as
/// itself, a space or tab as itself unless it ends the line, all else `=XX`,
/// with soft breaks to keep lines within 76 characters.
fn quoted_printable_line(out: &mut String, line: &[u8]) {
    let mut width = 0;
    for (i, &b) in line.iter().enumerate() {
        let last = i + 1 == line.len();
        let literal =
            ((0x21..0x7f).contains(&b) && b != b'=') || (matches!(b, b' ' | b'\t') && !last);
        let size = if literal { 1 } else { 3 };
        if width + size > QP_LIMIT - 1 {
            out.push_str("=\r\n");
            width = 0;
        }
        if literal {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "={b:02X}");
        }
        width += size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use mail_parser::{Message, MessageParser, MimeHeaders};
    use proptest::prelude::*;

    const ORIGINAL: &[u8] = b"From: Alice <alice@caliop.example>\r\n\
        To: bob@remote.example\r\n\
        Subject: Lunch\r\n\
        Message-ID: <1@caliop.example>\r\n\
        \r\n\
        The body, which stays out of the report.\r\n";

    const REPORT_FIELDS: &[&str] = &[
        "Original-Envelope-Id",
        "Reporting-MTA",
        "Arrival-Date",
        "Final-Recipient",
        "Action",
        "Status",
        "Remote-MTA",
        "Diagnostic-Code",
        "Last-Attempt-Date",
    ];

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 14, hour, 0, 0)
            .single()
            .expect("a valid date")
    }

    fn recipient<'a>(
        address: &'a str,
        status: &'a str,
        diagnostic: Option<&'a str>,
    ) -> FailedRecipient<'a> {
        FailedRecipient {
            address,
            status,
            remote_mta: Some("mx.remote.example"),
            diagnostic,
            last_attempt: at(12),
        }
    }

    fn bounce<'a>(recipients: &'a [FailedRecipient<'a>], expired: bool) -> Bounce<'a> {
        Bounce {
            notice: None,
            reporting_mta: "mx.caliop.example",
            postmaster: "postmaster@mx.caliop.example",
            to: "alice@caliop.example",
            original_envelope_id: Some("QQ314159"),
            arrival: at(9),
            original_headers: ORIGINAL,
            recipients,
            expired,
        }
    }

    fn parse(raw: &[u8]) -> Message<'_> {
        MessageParser::default()
            .parse(raw)
            .expect("the notification parses")
    }

    /// The parts under the root, in order.
    fn parts<'x>(message: &'x Message<'x>) -> Vec<&'x mail_parser::MessagePart<'x>> {
        let ids = message.root_part().sub_parts().expect("a multipart root");
        ids.iter()
            .map(|&id| message.part(id).expect("a listed part"))
            .collect()
    }

    fn content_type(part: &mail_parser::MessagePart<'_>) -> String {
        let ct = part.content_type().expect("a Content-Type");
        format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default())
    }

    fn explanation_text(message: &Message<'_>) -> String {
        parts(message)[0]
            .text_contents()
            .expect("a text explanation")
            .to_owned()
    }

    /// The delivery-status body, unfolded (RFC 5322 §2.2.3: CRLF before WSP removed).
    fn report_text(message: &Message<'_>) -> String {
        let raw = std::str::from_utf8(parts(message)[1].contents()).expect("an ASCII report");
        raw.replace("\r\n ", " ").replace("\r\n\t", "\t")
    }

    /// The report's blocks (per-message first), each a list of (name, value).
    fn report_blocks(message: &Message<'_>) -> Vec<Vec<(String, String)>> {
        report_text(message)
            .split("\r\n\r\n")
            .filter(|block| !block.trim().is_empty())
            .map(|block| {
                block
                    .split("\r\n")
                    .filter(|line| !line.is_empty())
                    .map(|line| {
                        let (name, value) = line.split_once(':').expect("a field line");
                        (name.to_owned(), value.trim_start().to_owned())
                    })
                    .collect()
            })
            .collect()
    }

    fn value<'b>(block: &'b [(String, String)], name: &str) -> Option<&'b str> {
        block
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every line within 998 octets, CRLF-terminated, no bare CR or LF, all ASCII.
    fn assert_wire_safe(raw: &[u8]) {
        assert!(raw.is_ascii(), "non-ASCII byte in the output");
        assert!(raw.ends_with(b"\r\n"));
        let lines: Vec<&[u8]> = raw.split(|&b| b == b'\n').collect();
        let (end, lines) = lines.split_last().expect("at least one line");
        assert!(end.is_empty());
        for line in lines {
            assert!(
                line.ends_with(b"\r"),
                "bare LF after {:?}",
                String::from_utf8_lossy(line)
            );
            let line = &line[..line.len() - 1];
            assert!(
                !line.contains(&b'\r'),
                "bare CR in {:?}",
                String::from_utf8_lossy(line)
            );
            assert!(line.len() <= 998, "a line of {} octets", line.len());
        }
    }

    #[test]
    fn is_a_multipart_report_with_three_parts() {
        let recipients = [recipient(
            "bob@remote.example",
            "5.1.1",
            Some("550 5.1.1 <bob@remote.example>: no such user"),
        )];
        let raw = build(&bounce(&recipients, false));
        let message = parse(&raw);

        let root = message.content_type().expect("a Content-Type");
        assert_eq!(
            (root.ctype(), root.subtype()),
            ("multipart", Some("report"))
        );
        assert_eq!(root.attribute("report-type"), Some("delivery-status"));
        let types: Vec<String> = parts(&message).into_iter().map(content_type).collect();
        assert_eq!(
            types,
            [
                "text/plain",
                "message/delivery-status",
                "text/rfc822-headers"
            ]
        );

        assert_eq!(message.subject(), Some(SUBJECT));
        assert_eq!(
            message.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-replied")
        );
        assert_eq!(
            message.header_raw("MIME-Version").map(str::trim),
            Some("1.0")
        );
        let from = message.from().and_then(|a| a.first()).expect("a From");
        assert_eq!(from.address(), Some("postmaster@mx.caliop.example"));
        assert_eq!(from.name(), Some("Mail Delivery System"));
        let to = message
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address());
        assert_eq!(to, Some("alice@caliop.example"));
        assert!(message.date().is_some());
        let id = message.message_id().expect("a Message-ID");
        assert!(id.ends_with("@mx.caliop.example"), "{id}");
    }

    #[test]
    fn original_headers_are_attached_without_the_body() {
        let recipients = [recipient("bob@remote.example", "5.1.1", None)];
        let raw = build(&bounce(&recipients, false));
        let message = parse(&raw);
        let headers = parts(&message)[2]
            .text_contents()
            .expect("text headers")
            .to_owned();
        assert!(headers.contains("Subject: Lunch\r\n"), "{headers}");
        assert!(
            headers.contains("Message-ID: <1@caliop.example>"),
            "{headers}"
        );
        assert!(!headers.contains("The body"), "{headers}");
    }

    #[test]
    fn the_remote_reply_is_quoted_verbatim_in_both_parts() {
        let reply = "550 5.1.1 <bob@remote.example>: Recipient address rejected: User unknown  (in \\ virtual table)";
        let recipients = [recipient("bob@remote.example", "5.1.1", Some(reply))];
        let raw = build(&bounce(&recipients, false));
        let message = parse(&raw);

        assert!(explanation_text(&message).contains(&format!("        {reply}\r\n")));
        let blocks = report_blocks(&message);
        assert_eq!(
            value(&blocks[1], "Diagnostic-Code"),
            Some(format!("smtp; {reply}").as_str())
        );
        assert_eq!(
            value(&blocks[1], "Remote-MTA"),
            Some("dns; mx.remote.example")
        );
    }

    #[test]
    fn a_multi_line_reply_becomes_one_field() {
        let reply = "550-5.7.1 Sorry, we do not accept mail from you.\r\n550-5.7.1 Please see\n550 5.7.1 https://remote.example/policy\r\n";
        let recipients = [recipient("bob@remote.example", "5.7.1", Some(reply))];
        let raw = build(&bounce(&recipients, false));
        let message = parse(&raw);

        let report = report_text(&message);
        let joined = "smtp; 550-5.7.1 Sorry, we do not accept mail from you. 550-5.7.1 Please see \
                      550 5.7.1 https://remote.example/policy";
        assert_eq!(
            value(&report_blocks(&message)[1], "Diagnostic-Code"),
            Some(joined)
        );
        for line in report.split("\r\n").filter(|line| !line.is_empty()) {
            let name = line.split_once(':').map(|(name, _)| name).unwrap_or(line);
            assert!(
                REPORT_FIELDS.contains(&name),
                "a stray line in the report: {line:?}"
            );
        }
        // People see the reply as it came, one line under the other.
        let text = explanation_text(&message);
        assert!(text.contains(
            "        550-5.7.1 Please see\r\n        550 5.7.1 https://remote.example/policy\r\n"
        ));
    }

    #[test]
    fn injected_line_breaks_cannot_add_fields() {
        let reply = "550 no such user\r\nBcc: victim@evil.example\r\n\r\nInjected body";
        let recipients = [FailedRecipient {
            address: "bob@remote.example\r\nBcc: a@evil.example",
            status: "5.1.1\r\nBcc: b@evil.example",
            remote_mta: Some("mx.remote.example\nBcc: c@evil.example"),
            diagnostic: Some(reply),
            last_attempt: at(12),
        }];
        let mut b = bounce(&recipients, false);
        b.to = "alice@caliop.example\r\nBcc: d@evil.example";
        b.postmaster = "postmaster@mx.caliop.example\rBcc: e@evil.example";
        b.original_envelope_id = Some("QQ\r\nBcc: f@evil.example");
        let raw = build(&b);
        assert_wire_safe(&raw);
        let text = String::from_utf8(raw.clone()).expect("ASCII");
        for line in text.split("\r\n") {
            assert!(
                !line.to_ascii_lowercase().starts_with("bcc:"),
                "an injected field: {line:?}"
            );
        }

        let message = parse(&raw);
        let names: Vec<&str> = message.headers().iter().map(|h| h.name()).collect();
        assert_eq!(
            names,
            [
                "From",
                "To",
                "Subject",
                "Date",
                "Message-ID",
                "Auto-Submitted",
                "MIME-Version",
                "Content-Type"
            ]
        );
        let blocks = report_blocks(&message);
        assert_eq!(
            blocks.len(),
            2,
            "one per-message and one per-recipient block"
        );
        assert_eq!(
            value(&blocks[1], "Status"),
            Some("5.0.0"),
            "a malformed status is replaced"
        );
        assert_eq!(
            value(&blocks[1], "Diagnostic-Code"),
            Some("smtp; 550 no such user Bcc: victim@evil.example Injected body")
        );
    }

    #[test]
    fn every_line_is_short_and_the_message_is_ascii() {
        let long_words = "refused ".repeat(300);
        let one_long_word = "x".repeat(2500);
        let unicode = "550 5.1.1 <jörg@bücher.example>: Empfänger unbekannt ✉";
        let recipients = [
            recipient("bob@remote.example", "5.1.1", Some(&long_words)),
            recipient("carol@remote.example", "5.1.1", Some(&one_long_word)),
            recipient("jörg@bücher.example", "5.1.1", Some(unicode)),
        ];
        let mut headers = b"Subject: =?utf-8?q?caf=C3=A9?= caf\xc3\xa9 \xff\r\nX-Long: ".to_vec();
        headers.extend(std::iter::repeat_n(b'y', 3000));
        headers.extend(b"\nX-Bare-LF: yes\r\n\r\nbody");
        let mut b = bounce(&recipients, false);
        b.original_headers = &headers;
        let raw = build(&b);
        assert_wire_safe(&raw);

        let message = parse(&raw);
        let text = explanation_text(&message);
        assert!(
            text.contains(unicode),
            "the human part keeps the reply as it came"
        );
        assert!(text.contains(&one_long_word));
        let blocks = report_blocks(&message);
        assert_eq!(
            value(&blocks[1], "Diagnostic-Code"),
            Some(format!("smtp; {}", long_words.trim_end()).as_str())
        );
        assert_eq!(
            value(&blocks[3], "Diagnostic-Code"),
            Some(
                "smtp; 550 5.1.1 <j\\x{F6}rg@b\\x{FC}cher.example>: Empf\\x{E4}nger unbekannt \\x{2709}"
            )
        );
        assert_eq!(
            value(&blocks[3], "Final-Recipient"),
            Some("utf-8; j\\x{F6}rg@b\\x{FC}cher.example")
        );
        let original = parts(&message)[2].contents().to_vec();
        assert!(
            original.windows(3000).any(|w| w.iter().all(|&b| b == b'y')),
            "the long header survives"
        );
        assert!(!original.ends_with(b"body"));
    }

    #[test]
    fn one_block_per_recipient_with_its_status() {
        let recipients = [
            recipient(
                "bob@remote.example",
                "5.1.1",
                Some("550 5.1.1 no such user"),
            ),
            recipient(
                "carol@other.example",
                "5.2.2",
                Some("552 5.2.2 mailbox full"),
            ),
            recipient("dave@third.example", "5.7.1", None),
        ];
        let raw = build(&bounce(&recipients, false));
        let message = parse(&raw);
        let blocks = report_blocks(&message);

        assert_eq!(
            value(&blocks[0], "Reporting-MTA"),
            Some("dns; mx.caliop.example")
        );
        assert_eq!(value(&blocks[0], "Original-Envelope-Id"), Some("QQ314159"));
        assert_eq!(
            value(&blocks[0], "Arrival-Date"),
            Some(at(9).to_rfc2822().as_str())
        );
        assert_eq!(value(&blocks[0], "Final-Recipient"), None);
        assert_eq!(blocks.len(), 1 + recipients.len());
        for (block, recipient) in blocks[1..].iter().zip(&recipients) {
            assert_eq!(
                value(block, "Final-Recipient"),
                Some(format!("rfc822; {}", recipient.address).as_str())
            );
            assert_eq!(value(block, "Action"), Some("failed"));
            assert_eq!(value(block, "Status"), Some(recipient.status));
            assert_eq!(
                value(block, "Last-Attempt-Date"),
                Some(at(12).to_rfc2822().as_str())
            );
        }
        assert_eq!(
            value(&blocks[3], "Diagnostic-Code"),
            None,
            "no reply, no Diagnostic-Code"
        );
        let text = explanation_text(&message);
        for recipient in &recipients {
            assert!(text.contains(&format!("<{}>", recipient.address)));
        }
    }

    #[test]
    fn an_expired_bounce_says_so() {
        let recipients = [recipient(
            "bob@remote.example",
            "4.4.7",
            Some("421 4.4.2 try again later"),
        )];
        let expired = parse_owned(build(&bounce(&recipients, true)));
        let text = explanation_text(&expired);
        assert!(text.contains("retry period expired"), "{text}");
        assert!(
            text.contains(&at(9).to_rfc2822()),
            "since when it was retried"
        );
        assert!(!text.contains("refused"), "{text}");
        assert_eq!(value(&report_blocks(&expired)[1], "Status"), Some("4.4.7"));

        let refused = parse_owned(build(&bounce(&recipients, false)));
        let text = explanation_text(&refused);
        assert!(text.contains("refused it with a permanent error"), "{text}");
        assert!(!text.contains("expired"), "{text}");
    }

    fn parse_owned(raw: Vec<u8>) -> Message<'static> {
        MessageParser::default()
            .parse(&raw)
            .expect("the notification parses")
            .into_owned()
    }

    #[test]
    fn malformed_statuses_get_the_default_for_the_failure() {
        assert_eq!(status("5.1.10", false), "5.1.10");
        assert_eq!(status("4.4.7", true), "4.4.7");
        assert_eq!(status("550", false), "5.0.0");
        assert_eq!(status("5.1", false), "5.0.0");
        assert_eq!(status("5.1.1.1", false), "5.0.0");
        assert_eq!(status("3.1.1", false), "5.0.0");
        assert_eq!(status("5.1.1000", true), "4.4.7");
        assert_eq!(status("", true), "4.4.7");
    }

    #[test]
    fn message_id_and_boundary_are_fresh() {
        let recipients = [recipient("bob@remote.example", "5.1.1", None)];
        let (one, two) = (
            parse_owned(build(&bounce(&recipients, false))),
            parse_owned(build(&bounce(&recipients, false))),
        );
        assert_ne!(one.message_id(), two.message_id());
        let boundary = |m: &Message<'_>| {
            m.content_type()
                .and_then(|ct| ct.attribute("boundary"))
                .map(str::to_owned)
        };
        assert!(boundary(&one).is_some());
        assert_ne!(boundary(&one), boundary(&two));
    }

    #[test]
    fn the_boundary_never_occurs_in_a_part() {
        let reply = "550 you said --=_fixed.0 and =_fixed.1";
        let recipients = [recipient("bob@remote.example", "5.1.1", Some(reply))];
        let mut b = bounce(&recipients, false);
        let headers = b"X-Trap: --=_fixed.2\r\n".to_vec();
        b.original_headers = &headers;
        let raw = render(&b, at(13), "fixed");
        let message = parse(&raw);
        let boundary = message
            .content_type()
            .and_then(|ct| ct.attribute("boundary"))
            .expect("a boundary");
        assert_eq!(boundary, "=_fixed.3");
        assert_eq!(parts(&message).len(), 3);
        assert_eq!(message.message_id(), Some("fixed@mx.caliop.example"));
        assert!(explanation_text(&message).contains(reply));
    }

    #[test]
    fn the_headers_part_is_left_out_when_there_are_none() {
        let recipients = [recipient("bob@remote.example", "5.1.1", None)];
        let mut b = bounce(&recipients, false);
        b.original_headers = b"\r\nonly a body";
        let message = parse_owned(build(&b));
        let types: Vec<String> = parts(&message).into_iter().map(content_type).collect();
        assert_eq!(types, ["text/plain", "message/delivery-status"]);
        assert!(!explanation_text(&message).contains("attached"));
    }

    #[test]
    fn fields_fold_at_spaces_near_78() {
        let value = "smtp; 550 5.7.1 Message rejected because the sending host is listed on several block lists, see https://remote.example/why";
        let folded = field("Diagnostic-Code", value);
        assert!(folded.lines().count() > 1, "{folded}");
        for line in folded.trim_end_matches("\r\n").split("\r\n") {
            assert!(line.len() <= SOFT_LIMIT, "{line:?}");
            assert!(!line.trim().is_empty(), "a blank continuation line");
        }
        assert_eq!(
            folded.replace("\r\n ", " "),
            format!("Diagnostic-Code: {value}\r\n")
        );
    }

    #[test]
    fn quoted_printable_keeps_lines_short_and_encodes_what_it_must() {
        let (encoding, body) = text_body("a=b \nçà trailing \t\n".as_bytes());
        assert_eq!(encoding, "quoted-printable");
        assert_eq!(body, "a=3Db=20\r\n=C3=A7=C3=A0 trailing =09\r\n");
        let (_, body) = text_body("é".repeat(100).as_bytes());
        assert!(
            body.split("\r\n").all(|line| line.len() <= QP_LIMIT),
            "{body}"
        );
        assert_eq!(text_body(b"plain\r\nascii\n").0, "7bit");
    }

    /// Text that mixes line breaks, header-looking lines, long runs and any characters.
    fn hostile_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("\r\n".to_owned()),
            Just("\n".to_owned()),
            Just("\r".to_owned()),
            Just("Bcc: x@evil.example".to_owned()),
            Just(" ".repeat(90)),
            Just("w".repeat(1200)),
            "[ -~]{1,40}",
            any::<String>(),
        ];
        prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        /// Whatever the remote server and the caller pass, the notification is
        /// 7-bit, its lines within 998 octets, and no line break of theirs
        /// starts a field or part of its own.
        #[test]
        fn any_input_gives_a_safe_notification(
            reply in hostile_text(),
            address in hostile_text(),
            mta in hostile_text(),
            status in hostile_text(),
            headers in prop::collection::vec(any::<u8>(), 0..3000),
        ) {
            let recipients = [
                FailedRecipient { address: &address, status: &status, remote_mta: Some(&mta), diagnostic: Some(&reply), last_attempt: at(12) },
                recipient("bob@remote.example", "5.1.1", Some(&reply)),
            ];
            let mut b = bounce(&recipients, false);
            b.original_headers = &headers;
            let raw = build(&b);
            assert_wire_safe(&raw);

            let message = parse(&raw);
            let names: Vec<&str> = message.headers().iter().map(|h| h.name()).collect();
            prop_assert_eq!(names, ["From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "MIME-Version", "Content-Type"]);
            let types: Vec<String> = parts(&message).into_iter().map(content_type).collect();
            prop_assert_eq!(&types[..2], ["text/plain", "message/delivery-status"]);
            prop_assert!(types.len() <= 3);

            let report = report_text(&message);
            for line in report.split("\r\n").filter(|line| !line.is_empty()) {
                let name = line.split_once(':').map(|(name, _)| name).unwrap_or(line);
                prop_assert!(REPORT_FIELDS.contains(&name), "a stray line in the report: {:?}", line);
            }
            let blocks = report_blocks(&message);
            prop_assert_eq!(blocks.len(), 3);
            let expected = diagnostic(&reply);
            // Only a word longer than a line is cut by a fold that adds a space.
            if !expected.is_empty() && expected.split(' ').all(|w| w.len() < 900) {
                let field = format!("smtp; {expected}");
                prop_assert_eq!(value(&blocks[2], "Diagnostic-Code"), Some(field.as_str()));
            }
            let text = explanation_text(&message);
            for line in reply_lines(&reply) {
                prop_assert!(text.contains(&line), "{:?} is not quoted", line);
            }
        }

        /// Folding gives the value back when unfolded, and never a blank line.
        #[test]
        fn folding_is_undone_by_unfolding(value in "[ -~]{0,400}") {
            let value = value.trim();
            let folded = field("Diagnostic-Code", value);
            for line in folded.trim_end_matches("\r\n").split("\r\n") {
                prop_assert!(line.len() <= HARD_LIMIT);
                prop_assert!(!line.trim().is_empty());
            }
            prop_assert_eq!(folded.replace("\r\n ", " "), format!("Diagnostic-Code: {value}\r\n"));
        }
    }
}
