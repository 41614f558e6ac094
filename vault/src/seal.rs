//! Sealing a received message to its recipient: the whole message, headers
//! included, encrypted with OpenPGP (SEIPDv1, AES-256, to the account's
//! X25519 subkey) and wrapped as PGP/MIME (RFC 3156), so the stored form is
//! an RFC 5322 message that GnuPG or Thunderbird decrypts to the original
//! bytes. Only delivery metadata stays outside: trace and authentication
//! headers, the envelope addresses, the date. [`decrypt`] is the other
//! way, for the few small messages Caliop itself must open (an archive's key).

use std::io::Read;

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
    /// `<id@host>` for the wrapper.
    pub message_id: &'a str,
    /// The host name to name the null sender after.
    pub hostname: &'a str,
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

/// The PGP/MIME message that carries `message` sealed to the key.
pub fn seal(
    public_key_armored: &str,
    message: &[u8],
    outer: &Outer<'_>,
) -> Result<Vec<u8>, VaultError> {
    let armored = encrypt(public_key_armored, message)?;
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
        format!("Message-ID: {}", outer.message_id),
        "Subject: ...".to_owned(),
    ]);
    Ok(pgp_mime(&headers, &armored))
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

    #[test]
    fn sealed_messages_decrypt_to_the_original_bytes() {
        let key = AccountKey::generate("Bob <bob@example.com>", "bob's passphrase").unwrap();
        let original = b"Subject: secret plans\r\nFrom: alice@example.org\r\n\r\nMeet at noon.\r\n";
        let outer = Outer {
            trace: &["Received: from mx.example.org by mx.caliop.test".to_owned()],
            from: Some("alice@example.org"),
            to: &["bob@example.com"],
            date: "Thu, 26 Nov 2026 12:00:00 +0000",
            message_id: "<abc@mx.caliop.test>",
            hostname: "mx.caliop.test",
        };
        let sealed = seal(&key.public_armored, original, &outer).unwrap();
        let text = String::from_utf8(sealed.clone()).unwrap();
        assert!(!text.contains("secret plans") && !text.contains("noon"));
        assert!(text.contains("multipart/encrypted"));
        let armored = &text[text.find("-----BEGIN PGP MESSAGE-----").unwrap()
            ..text.find("-----END PGP MESSAGE-----").unwrap() + 25];
        let (secret, _) = SignedSecretKey::from_string(&key.secret_armored).unwrap();
        let (message, _) = Message::from_armor(armored.as_bytes()).unwrap();
        let mut decrypted = message
            .decrypt(&"bob's passphrase".into(), &secret)
            .unwrap();
        assert_eq!(decrypted.as_data_vec().unwrap(), original);
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
