//! Sealing a received message to its recipient: the whole message, headers
//! included, encrypted with OpenPGP (SEIPDv1, AES-256, to the account's
//! X25519 subkey) and wrapped as PGP/MIME (RFC 3156), so the stored form is
//! an RFC 5322 message that GnuPG or Thunderbird decrypts to the original.
//! Inside, the message's Content-Type says `protected-headers="v1"`
//! ([`protect_headers`]): its own header fields are the ones to show, not
//! the wrapper's `Subject: ...`. Outside stay only delivery metadata (trace
//! and authentication headers, the envelope addresses, the date) and, as
//! the tenant chooses, the conversation it belongs to ([`Thread`]).
//! [`decrypt`] is the other way, for the few small messages Caliop itself
//! must open (an archive's key).

use std::borrow::Cow;
use std::io::Read;

use mail_builder::headers::Header as _;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::message_id::MessageId;
use mail_parser::{HeaderName, MessageParser};
use pgp::composed::{
    ArmorOptions, Deserializable, Esk, Message, MessageBuilder, SignedPublicKey, SignedSecretKey,
};
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::types::{KeyDetails, Password};

use crate::VaultError;

/// The headers the server may show outside the encryption.
pub struct Outer<'a> {
    /// Complete header lines added on receipt (`Received:`, `Authentication-Results:`), without CRLF.
    pub trace: &'a [String],
    /// The envelope sender, or `None` for the null sender.
    pub from: Option<&'a str>,
    /// The envelope recipients.
    pub to: &'a [&'a str],
    /// RFC 5322 date of receipt.
    pub date: &'a str,
    /// The wrapper's Message-ID, and what it shows of the conversation.
    pub thread: &'a Thread,
    /// The host name to name the null sender after.
    pub hostname: &'a str,
}

/// The Message-ID, In-Reply-To and References a sealed message shows
/// outside the seal; ids without their angle brackets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thread {
    pub message_id: String,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
}

/// The most References ids kept outside: the first (the thread's root) and
/// the latest ones, as RFC 5322 §3.6.4 trims a long chain.
const MAX_REFERENCES: usize = 20;

impl Thread {
    /// The wrapper's own id and nothing else: which conversation the
    /// message belongs to stays inside the seal.
    pub fn own(message_id: String) -> Thread {
        Thread {
            message_id,
            in_reply_to: Vec::new(),
            references: Vec::new(),
        }
    }

    /// The message's own threading headers, so that a client threads the
    /// sealed copy without opening it; `own` stands in for a Message-ID
    /// that is missing or unusable. An id is kept only as one token of
    /// visible ASCII without angle brackets, so that nothing the sender
    /// wrote can add a line to the wrapper's header.
    pub fn of(message: &mail_parser::Message<'_>, own: String) -> Thread {
        let ids = |value: &mail_parser::HeaderValue<'_>| -> Vec<String> {
            value
                .as_text_list()
                .unwrap_or_default()
                .iter()
                .filter(|id| is_plain_id(id))
                .map(|id| id.to_string())
                .collect()
        };
        let mut references = ids(message.references());
        if references.len() > MAX_REFERENCES {
            references.drain(1..references.len() - (MAX_REFERENCES - 1));
        }
        Thread {
            message_id: message
                .message_id()
                .filter(|id| is_plain_id(id))
                .map_or(own, str::to_owned),
            in_reply_to: ids(message.in_reply_to()),
            references,
        }
    }

    /// The header lines, without CRLF (folded where long).
    fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!("Message-ID: <{}>", self.message_id)];
        for (name, ids) in [
            ("In-Reply-To", &self.in_reply_to),
            ("References", &self.references),
        ] {
            if ids.is_empty() {
                continue;
            }
            let mut line = format!("{name}: ").into_bytes();
            MessageId::new_list(ids.iter().map(String::as_str))
                .write_header(&mut line, name.len() + 2);
            lines.push(String::from_utf8_lossy(&line).trim_end().to_owned());
        }
        lines
    }
}

/// `id` is one token of visible ASCII, not too long, with no angle bracket.
fn is_plain_id(id: &str) -> bool {
    (1..=250).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
}

/// The message as the seal carries it (header protection, as RFC 9788
/// describes and Thunderbird reads it): the message itself, whose header
/// section already holds its Subject, From, To, Cc, Date, Message-ID,
/// In-Reply-To and References, with `protected-headers="v1"` added to its
/// Content-Type, so that a client that decrypts it shows those fields
/// instead of the wrapper's. That one field is written anew (by
/// mail-builder, from what mail-parser read of the one it uses, others of
/// the name dropped); every other line, and the body, stay byte for byte.
/// (A DKIM signature of the sender's that covers Content-Type then no
/// longer verifies inside the seal: the verdict on arrival is in the
/// trace's Authentication-Results.) A message already encrypted by its
/// sender is left as it is: its clear headers are not the ones it protects.
pub fn protect_headers(message: &[u8]) -> Cow<'_, [u8]> {
    let Some(parsed) = MessageParser::default().parse_headers(message) else {
        return Cow::Borrowed(message);
    };
    let fields = parsed.headers();
    let read = fields
        .iter()
        .rev()
        .find(|h| h.name == HeaderName::ContentType);
    let current = read
        .and_then(|h| h.value.as_content_type())
        .filter(|c| !c.ctype().is_empty());
    if let Some(current) = current {
        let encrypted = current.ctype().eq_ignore_ascii_case("multipart")
            && current
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("encrypted"));
        if encrypted || current.attribute("protected-headers").is_some() {
            return Cow::Borrowed(message);
        }
    }
    let mut marked = match current {
        Some(current) => {
            let mut marked = ContentType::new(match current.subtype() {
                Some(subtype) => format!("{}/{subtype}", current.ctype()),
                None => current.ctype().to_owned(),
            });
            for attribute in current.attributes().unwrap_or_default() {
                marked = marked.attribute(attribute.name.as_ref(), attribute.value.as_ref());
            }
            marked
        }
        // RFC 2045's default, said out loud.
        None => ContentType::new("text/plain"),
    };
    marked = marked.attribute("protected-headers", "v1");
    let mut field = b"Content-Type: ".to_vec();
    let column = field.len();
    marked.write_header(&mut field, column);
    // The message's own line ending, so that it stays one kind.
    let bare_lf = message
        .iter()
        .position(|&b| b == b'\n')
        .is_some_and(|i| i == 0 || message[i - 1] != b'\r');
    if bare_lf {
        field.retain(|&b| b != b'\r');
    }
    // Where the field goes: in place of the one read, or at the end of the header.
    let at = match read {
        Some(h) => h.offset_field as usize,
        None => fields.last().map_or(0, |h| h.offset_end as usize),
    };
    let mut out = Vec::with_capacity(message.len() + field.len());
    let mut from = 0;
    for h in fields.iter().filter(|h| h.name == HeaderName::ContentType) {
        let (start, end) = (h.offset_field as usize, h.offset_end as usize);
        out.extend_from_slice(&message[from..start]);
        if start == at {
            out.extend_from_slice(&field);
        }
        from = end;
    }
    if read.is_none() {
        out.extend_from_slice(&message[..at]);
        out.extend_from_slice(&field);
        from = at;
    }
    out.extend_from_slice(&message[from..]);
    Cow::Owned(out)
}

fn pgp_err(e: impl std::fmt::Display) -> VaultError {
    VaultError::OpenPgp(e.to_string())
}

/// Encrypts `message` to the armored public key's encryption subkey.
pub fn encrypt(public_key_armored: &str, message: &[u8]) -> Result<String, VaultError> {
    encrypt_to_all(&[public_key_armored], message)
}

/// Encrypts `message` once, readable by each of the armored public keys.
pub fn encrypt_to_all(public_keys_armored: &[&str], message: &[u8]) -> Result<String, VaultError> {
    if public_keys_armored.is_empty() {
        return Err(VaultError::OpenPgp("no key to encrypt to".into()));
    }
    let mut keys = Vec::with_capacity(public_keys_armored.len());
    for armored in public_keys_armored {
        let (key, _) = SignedPublicKey::from_string(armored).map_err(pgp_err)?;
        keys.push(key);
    }
    let mut rng = rand08::thread_rng();
    let mut builder = MessageBuilder::from_bytes("", message.to_vec())
        .seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
    for key in &keys {
        let subkey = key
            .public_subkeys
            .iter()
            .find(|k| k.algorithm().can_encrypt())
            .ok_or_else(|| VaultError::OpenPgp("a key has no encryption subkey".into()))?;
        builder.encrypt_to_key(&mut rng, subkey).map_err(pgp_err)?;
    }
    builder
        .to_armored_string(&mut rng, ArmorOptions::default())
        .map_err(pgp_err)
}

/// Whether `armored` is an ASCII-armored OpenPGP *encrypted* message: a
/// `PGP MESSAGE` block whose packets are one or more session keys (PKESK or
/// SKESK, markers allowed before them) followed by exactly one encrypted
/// data packet (SEIPD, SED or GnuPG's AEAD), then nothing but padding. The
/// packets are parsed, not decrypted: an armour line over junk, a signed
/// or literal message, or a key block, is not encrypted.
pub fn is_encrypted_message(armored: &[u8]) -> bool {
    use pgp::armor::{BlockType, Dearmor};
    use pgp::packet::{Packet, PacketParser};

    let mut dearmor = Dearmor::new(armored);
    let mut packets = Vec::new();
    if dearmor.read_to_end(&mut packets).is_err() || dearmor.typ != Some(BlockType::Message) {
        return false;
    }
    let mut session_keys = 0usize;
    let mut encrypted_data = false;
    for packet in PacketParser::new(packets.as_slice()) {
        match packet {
            Ok(Packet::Marker(_)) if session_keys == 0 => {}
            Ok(Packet::PublicKeyEncryptedSessionKey(_) | Packet::SymKeyEncryptedSessionKey(_))
                if !encrypted_data =>
            {
                session_keys += 1;
            }
            Ok(
                Packet::SymEncryptedProtectedData(_)
                | Packet::SymEncryptedData(_)
                | Packet::GnupgAeadData(_),
            ) if session_keys > 0 && !encrypted_data => encrypted_data = true,
            Ok(Packet::Padding(_)) if encrypted_data => {}
            _ => return false,
        }
    }
    encrypted_data
}

/// Decrypts an armored OpenPGP message with an armored secret key locked
/// with `passphrase`. [`VaultError::NotARecipient`] when the message is not
/// encrypted to this key, [`VaultError::WrongPassphrase`] when it is but the
/// passphrase does not unlock it. The whole plaintext is held in memory: for
/// small messages only.
pub fn decrypt(
    secret_key_armored: &str,
    passphrase: &str,
    armored_message: &str,
) -> Result<Vec<u8>, VaultError> {
    decrypt_at_most(secret_key_armored, passphrase, armored_message, usize::MAX)
}

/// [`decrypt`], refusing a plaintext longer than `limit` bytes (a compressed
/// message could otherwise expand without bound).
pub(crate) fn decrypt_at_most(
    secret_key_armored: &str,
    passphrase: &str,
    armored_message: &str,
    limit: usize,
) -> Result<Vec<u8>, VaultError> {
    let (mut secret, _) = SignedSecretKey::from_string(secret_key_armored).map_err(pgp_err)?;
    let (message, _) = Message::from_armor(armored_message.as_bytes()).map_err(pgp_err)?;
    let Message::Encrypted { esk, .. } = &message else {
        return Err(VaultError::OpenPgp("the message is not encrypted".into()));
    };
    let recipients: Vec<_> = esk
        .iter()
        .filter_map(|esk| match esk {
            Esk::PublicKeyEncryptedSessionKey(pkesk) => Some(pkesk),
            Esk::SymKeyEncryptedSessionKey(_) => None,
        })
        .collect();
    // rpgp reports a missing key and a wrong password alike, so tell them
    // apart here: find the packets of this key the message names, and
    // unlock those (once: the unlocked key then decrypts without S2K).
    let password = Password::from(passphrase);
    let mut named = false;
    if recipients
        .iter()
        .any(|r| r.match_identity(secret.primary_key.public_key()))
    {
        named = true;
        secret
            .primary_key
            .remove_password(&password)
            .map_err(|_| VaultError::WrongPassphrase)?;
    }
    for sub in &mut secret.secret_subkeys {
        if recipients
            .iter()
            .any(|r| r.match_identity(sub.key.public_key()))
        {
            named = true;
            sub.key
                .remove_password(&password)
                .map_err(|_| VaultError::WrongPassphrase)?;
        }
    }
    if !named {
        return Err(VaultError::NotARecipient);
    }
    let mut plain = message
        .decrypt(&Password::empty(), &secret)
        .map_err(pgp_err)?;
    if plain.is_compressed() {
        plain = plain.decompress().map_err(pgp_err)?;
    }
    let mut out = Vec::new();
    (&mut plain)
        .take(limit.saturating_add(1) as u64)
        .read_to_end(&mut out)
        .map_err(pgp_err)?;
    if out.len() > limit {
        return Err(VaultError::OpenPgp(format!(
            "the message is longer than {limit} bytes"
        )));
    }
    Ok(out)
}

/// The PGP/MIME message that carries `message` sealed to the key, its
/// headers protected ([`protect_headers`]) and the wrapper showing only
/// `outer`.
pub fn seal(
    public_key_armored: &str,
    message: &[u8],
    outer: &Outer<'_>,
) -> Result<Vec<u8>, VaultError> {
    let armored = encrypt(public_key_armored, &protect_headers(message))?;
    Ok(wrap(outer, &armored))
}

/// The readable outside of a sealed message around its armored inside
/// ([`encrypt`] of [`protect_headers`]): what [`seal`] returns.
pub fn wrap(outer: &Outer<'_>, armored: &str) -> Vec<u8> {
    let from = match outer.from {
        Some(from) if !from.is_empty() => format!("<{from}>"),
        _ => format!("MAILER-DAEMON@{}", outer.hostname),
    };
    let to: Vec<String> = outer.to.iter().map(|a| format!("<{a}>")).collect();
    let mut headers = outer.trace.to_vec();
    headers.extend([
        format!("From: {from}"),
        format!("To: {}", to.join(", ")),
        format!("Date: {}", outer.date),
    ]);
    headers.extend(outer.thread.lines());
    headers.push("Subject: ...".to_owned());
    pgp_mime(&headers, armored)
}

/// Wraps an armored OpenPGP message as PGP/MIME (RFC 3156) under the given
/// complete header lines (without CRLF). The boundary holds `_`, which
/// armor never does, so it cannot occur inside the parts.
pub fn pgp_mime(headers: &[String], armored: &str) -> Vec<u8> {
    const BOUNDARY: &str = "caliop_pgp_mime";
    let mut out = String::with_capacity(armored.len() + 1024);
    for line in headers {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "MIME-Version: 1.0\r\n\
         Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"{BOUNDARY}\"\r\n\r\n\
         This is an OpenPGP/MIME encrypted message (RFC 3156).\r\n\r\n\
         --{BOUNDARY}\r\nContent-Type: application/pgp-encrypted\r\nContent-Description: PGP/MIME version identification\r\n\r\n\
         Version: 1\r\n\r\n\
         --{BOUNDARY}\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\
         Content-Description: OpenPGP encrypted message\r\nContent-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n"
    ));
    for line in armored.lines() {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!("\r\n--{BOUNDARY}--\r\n"));
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openpgp::AccountKey;
    use mail_parser::MimeHeaders;

    /// Finding 11: an armour line was enough to count as encrypted.
    #[test]
    fn only_session_keys_then_encrypted_data_count_as_encrypted() {
        use pgp::ser::Serialize;

        let key = AccountKey::generate("Bob <bob@example.com>", "pw").unwrap();
        let encrypted = encrypt(&key.public_armored, b"Subject: x\r\n\r\nhi\r\n").unwrap();
        assert!(is_encrypted_message(encrypted.as_bytes()));
        let to_two = encrypt_to_all(
            &[&key.public_armored, &key.public_armored],
            b"Subject: x\r\n\r\nhi\r\n",
        )
        .unwrap();
        assert!(is_encrypted_message(to_two.as_bytes()));

        // Any packets under a `PGP MESSAGE` armour line, as a forger would write them.
        let as_message = |bytes: &[u8]| {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            format!(
                "-----BEGIN PGP MESSAGE-----\n\n{}\n-----END PGP MESSAGE-----\n",
                lines.join("\n")
            )
            .into_bytes()
        };
        let mut packets = Vec::new();
        pgp::armor::Dearmor::new(encrypted.as_bytes())
            .read_to_end(&mut packets)
            .unwrap();
        assert!(
            is_encrypted_message(&as_message(&packets)),
            "re-armoured without a checksum"
        );
        let junk = "-----BEGIN PGP MESSAGE-----\n\nhQEMA junk, not base64 packets\n-----END PGP MESSAGE-----\n";
        let (public, _) = SignedPublicKey::from_string(&key.public_armored).unwrap();
        let public_packets = public.to_bytes().unwrap();
        let literal = MessageBuilder::from_bytes("", b"in clear".to_vec())
            .to_vec(rand08::thread_rng())
            .unwrap();
        let (secret, _) = SignedSecretKey::from_string(&key.secret_armored).unwrap();
        let mut signing = MessageBuilder::from_bytes("", b"signed, in clear".to_vec());
        signing.sign(
            &secret.primary_key,
            Password::from("pw"),
            pgp::crypto::hash::HashAlgorithm::Sha256,
        );
        let signed = signing.to_vec(rand08::thread_rng()).unwrap();
        let refused: Vec<(&str, Vec<u8>)> = vec![
            ("an armour line over junk", junk.as_bytes().to_vec()),
            (
                "a public key block",
                key.public_armored.clone().into_bytes(),
            ),
            (
                "key packets armoured as a message",
                as_message(&public_packets),
            ),
            ("a literal (unencrypted) message", as_message(&literal)),
            ("a signed-only message", as_message(&signed)),
            (
                "a session key cut short",
                as_message(&packets[..packets.len() / 4]),
            ),
            (
                "encrypted data cut short",
                as_message(&packets[..packets.len() - 10]),
            ),
            (
                "encrypted data twice",
                as_message(&[&packets[..], &packets[..]].concat()),
            ),
            ("nothing", Vec::new()),
        ];
        for (what, bytes) in refused {
            assert!(!is_encrypted_message(&bytes), "{what} counted as encrypted");
        }
    }

    /// The armored part of a PGP/MIME message.
    fn armored(sealed: &[u8]) -> &str {
        let text = std::str::from_utf8(sealed).unwrap();
        &text[text.find("-----BEGIN PGP MESSAGE-----").unwrap()
            ..text.find("-----END PGP MESSAGE-----").unwrap() + 25]
    }

    const REPLY: &str = "Received: from mail.example.org by relay.example.org; Thu, 26 Nov 2026 11:59:00 +0000\r\n\
        From: Alice <alice@example.org>\r\nTo: Bob <bob@example.com>\r\nCc: carol@example.net\r\n\
        Subject: Re: secret plans\r\nDate: Thu, 26 Nov 2026 12:00:00 +0000\r\n\
        Message-ID: <reply-2@example.org>\r\nIn-Reply-To: <plans-1@example.com>\r\n\
        References: <root-0@example.com>\r\n <plans-1@example.com>\r\n\
        MIME-Version: 1.0\r\nContent-Type: multipart/mixed;\r\n boundary=\"b-1\"\r\n\r\n\
        --b-1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nMeet at noon.\r\n\
        --b-1\r\nContent-Type: text/csv; name=\"q3.csv\"\r\n\r\na,b\r\n--b-1--\r\n";

    #[test]
    fn sealed_messages_decrypt_to_the_original_with_its_headers_protected() {
        let key = AccountKey::generate("Bob <bob@example.com>", "bob's passphrase").unwrap();
        let original = REPLY.as_bytes();
        let own = Thread::own("abc@mx.caliop.test".to_owned());
        let outer = Outer {
            trace: &["Received: from mx.example.org by mx.caliop.test".to_owned()],
            from: Some("alice@example.org"),
            to: &["bob@example.com"],
            date: "Thu, 26 Nov 2026 12:00:05 +0000",
            thread: &own,
            hostname: "mx.caliop.test",
        };
        let sealed = seal(&key.public_armored, original, &outer).unwrap();
        let text = String::from_utf8(sealed.clone()).unwrap();
        assert!(!text.contains("secret plans") && !text.contains("noon"));
        assert!(text.contains("multipart/encrypted"));

        let plain = decrypt(&key.secret_armored, "bob's passphrase", armored(&sealed)).unwrap();
        let inner = MessageParser::default().parse(&plain).unwrap();
        let content_type = inner.content_type().unwrap();
        assert_eq!(
            (content_type.ctype(), content_type.subtype()),
            ("multipart", Some("mixed"))
        );
        assert_eq!(content_type.attribute("protected-headers"), Some("v1"));
        assert_eq!(content_type.attribute("boundary"), Some("b-1"));
        assert_eq!(inner.subject(), Some("Re: secret plans"));
        let address = |a: Option<&mail_parser::Address<'_>>| {
            a.and_then(|a| a.first())
                .and_then(|a| a.address())
                .map(str::to_owned)
        };
        assert_eq!(address(inner.from()).as_deref(), Some("alice@example.org"));
        assert_eq!(address(inner.to()).as_deref(), Some("bob@example.com"));
        assert_eq!(address(inner.cc()).as_deref(), Some("carol@example.net"));
        assert_eq!(
            inner.date().map(|d| d.to_rfc3339()).as_deref(),
            Some("2026-11-26T12:00:00Z")
        );
        assert_eq!(inner.message_id(), Some("reply-2@example.org"));
        assert_eq!(inner.in_reply_to().as_text(), Some("plans-1@example.com"));
        assert_eq!(
            inner.references().as_text_list().unwrap(),
            ["root-0@example.com", "plans-1@example.com"]
        );
        assert_eq!(inner.body_text(0).as_deref(), Some("Meet at noon."));
        assert_eq!(inner.attachment(0).unwrap().contents(), b"a,b");
        // Only the Content-Type field is new: the rest is the message as it came.
        let original_text = std::str::from_utf8(original).unwrap();
        let plain_text = std::str::from_utf8(&plain).unwrap();
        let original_field = "Content-Type: multipart/mixed;\r\n boundary=\"b-1\"\r\n";
        let (before, after) = original_text.split_once(original_field).unwrap();
        assert!(
            plain_text.starts_with(before) && plain_text.ends_with(after),
            "{plain_text}"
        );
        assert_eq!(
            &plain_text[before.len()..plain_text.len() - after.len()],
            "Content-Type: multipart/mixed; boundary=\"b-1\"; protected-headers=\"v1\"\r\n"
        );
    }

    /// The wrapper's headers, as a client reads them without the key.
    fn outer_of(sealed: &[u8]) -> mail_parser::Message<'_> {
        MessageParser::default().parse_headers(sealed).unwrap()
    }

    #[test]
    fn the_wrapper_shows_the_conversation_only_where_the_policy_lets_it() {
        let key = AccountKey::generate("Bob <bob@example.com>", "pw").unwrap();
        let original = REPLY.as_bytes();
        let parsed = MessageParser::default().parse(original).unwrap();
        let own = || "0190-own@mx.caliop.test".to_owned();
        // `outer_thread_headers: true`, then `false`.
        let shown = Thread::of(&parsed, own());
        let sealed_thread = Thread::own(own());
        for (thread, shows) in [(&shown, true), (&sealed_thread, false)] {
            let outer = Outer {
                trace: &[],
                from: Some("alice@example.org"),
                to: &["bob@example.com"],
                date: "Thu, 26 Nov 2026 12:00:05 +0000",
                thread,
                hostname: "mx.caliop.test",
            };
            let sealed = seal(&key.public_armored, original, &outer).unwrap();
            let wrapper = outer_of(&sealed);
            assert_eq!(
                wrapper.subject(),
                Some("..."),
                "the Subject never leaves the seal"
            );
            if shows {
                assert_eq!(wrapper.message_id(), Some("reply-2@example.org"));
                assert_eq!(wrapper.in_reply_to().as_text(), Some("plans-1@example.com"));
                assert_eq!(
                    wrapper.references().as_text_list().unwrap(),
                    ["root-0@example.com", "plans-1@example.com"]
                );
            } else {
                assert_eq!(wrapper.message_id(), Some("0190-own@mx.caliop.test"));
                assert!(
                    wrapper.in_reply_to().is_empty(),
                    "{:?}",
                    wrapper.in_reply_to()
                );
                assert!(wrapper.references().is_empty());
                let text = String::from_utf8_lossy(&sealed);
                assert!(
                    !text.contains("reply-2") && !text.contains("plans-1"),
                    "{text}"
                );
            }
            // Either way the seal holds the same protected message.
            let plain = decrypt(&key.secret_armored, "pw", armored(&sealed)).unwrap();
            let inner = MessageParser::default().parse(&plain).unwrap();
            assert_eq!(inner.subject(), Some("Re: secret plans"));
            assert_eq!(inner.message_id(), Some("reply-2@example.org"));
            assert_eq!(
                inner.content_type().unwrap().attribute("protected-headers"),
                Some("v1")
            );
        }
    }

    #[test]
    fn threading_ids_that_could_add_a_line_to_the_wrapper_are_left_out() {
        let references: Vec<String> = (0..30).map(|n| format!("<r{n}@x.test>")).collect();
        let message = format!(
            "Message-ID: <evil\r\n X-Injected: yes@x.test>\r\nIn-Reply-To: <fine@x.test> <bad id@x.test>\r\n\
             References: {}\r\n\r\nbody\r\n",
            references.join("\r\n ")
        );
        let parsed = MessageParser::default().parse(message.as_bytes()).unwrap();
        let thread = Thread::of(&parsed, "own@mx.caliop.test".into());
        assert_eq!(thread.message_id, "own@mx.caliop.test");
        assert_eq!(thread.in_reply_to, ["fine@x.test"]);
        let kept: Vec<String> = std::iter::once(0)
            .chain(11..30)
            .map(|n| format!("r{n}@x.test"))
            .collect();
        assert_eq!(thread.references, kept, "the root and the latest 19");
        for line in thread.lines() {
            assert!(!line.contains("X-Injected"));
            for physical in line.split("\r\n") {
                assert!(physical.len() <= 78, "{physical:?}");
            }
        }
        // A message without any: the wrapper's own id only.
        let bare = MessageParser::default()
            .parse(b"Subject: x\r\n\r\nhi\r\n")
            .unwrap();
        assert_eq!(
            Thread::of(&bare, "own@h".into()),
            Thread::own("own@h".into())
        );
    }

    #[test]
    fn protected_headers_mark_one_content_type_and_leave_the_rest() {
        let cases = [
            (
                "plain, CRLF",
                "Subject: a\r\nContent-Type: text/plain; charset=utf-8\r\nX-After: 1\r\n\r\nbody\r\n",
                "Subject: a\r\nContent-Type: text/plain; charset=\"utf-8\"; protected-headers=\"v1\"\r\nX-After: 1\r\n\r\nbody\r\n",
            ),
            (
                "no Content-Type: RFC 2045's default, at the end of the header",
                "Subject: a\r\nFrom: x@y.test\r\n\r\nbody\r\n",
                "Subject: a\r\nFrom: x@y.test\r\nContent-Type: text/plain; protected-headers=\"v1\"\r\n\r\nbody\r\n",
            ),
            (
                "bare LF stays bare LF",
                "Subject: a\nContent-Type: text/html\n\n<p>x</p>\n",
                "Subject: a\nContent-Type: text/html; protected-headers=\"v1\"\n\n<p>x</p>\n",
            ),
            (
                "two Content-Types: the one mail-parser reads, in its place",
                "Content-Type: text/html\r\nSubject: a\r\nContent-Type: text/plain\r\n\r\nbody\r\n",
                "Subject: a\r\nContent-Type: text/plain; protected-headers=\"v1\"\r\n\r\nbody\r\n",
            ),
        ];
        for (what, message, expected) in cases {
            let protected = protect_headers(message.as_bytes());
            assert_eq!(String::from_utf8_lossy(&protected), expected, "{what}");
        }
        // A parameter mail-builder encodes again (RFC 2231): read it back.
        let protected = protect_headers(
            "Subject: a\r\nContent-Type: text/plain; name*=UTF-8''r%C3%A9sum%C3%A9.txt\r\n\r\nbody\r\n"
                .as_bytes(),
        );
        let parsed = MessageParser::default().parse(&protected).unwrap();
        let content_type = parsed.content_type().unwrap();
        assert_eq!(content_type.attribute("name"), Some("résumé.txt"));
        assert_eq!(content_type.attribute("protected-headers"), Some("v1"));
        assert!(protected.ends_with(b"\r\n\r\nbody\r\n"));
        for unchanged in [
            "Subject: ...\r\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=x\r\n\r\n",
            "Subject: a\r\nContent-Type: text/plain; protected-headers=\"v1\"\r\n\r\nbody\r\n",
            "",
        ] {
            assert_eq!(
                protect_headers(unchanged.as_bytes()).as_ref(),
                unchanged.as_bytes(),
                "{unchanged}"
            );
        }
    }

    #[test]
    fn decrypt_opens_archive_keys_and_tells_a_wrong_key_from_a_wrong_passphrase() {
        let bob = AccountKey::generate("Bob <bob@example.com>", "bob's passphrase").unwrap();
        let eve = AccountKey::generate("Eve <eve@example.com>", "eve's passphrase").unwrap();
        let armored = encrypt(&bob.public_armored, b"the archive key").unwrap();
        assert_eq!(
            decrypt(&bob.secret_armored, "bob's passphrase", &armored).unwrap(),
            b"the archive key"
        );
        assert!(matches!(
            decrypt(&bob.secret_armored, "wrong", &armored),
            Err(VaultError::WrongPassphrase)
        ));
        assert!(matches!(
            decrypt(&eve.secret_armored, "eve's passphrase", &armored),
            Err(VaultError::NotARecipient)
        ));
        let too_long =
            decrypt_at_most(&bob.secret_armored, "bob's passphrase", &armored, 4).unwrap_err();
        assert!(
            too_long.to_string().contains("longer than 4 bytes"),
            "{too_long}"
        );
    }
}
