//! Sealing a received message to its recipient: the whole message, headers
//! included, encrypted with OpenPGP (SEIPDv1, AES-256, to the account's
//! X25519 subkey) and wrapped as PGP/MIME (RFC 3156), so the stored form is
//! an RFC 5322 message that GnuPG or Thunderbird decrypts to the original
//! bytes. Only delivery metadata stays outside: trace and authentication
//! headers, the envelope addresses, the date.

use pgp::composed::{ArmorOptions, Deserializable, MessageBuilder, SignedPublicKey};
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::types::KeyDetails;

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
    let mut builder = MessageBuilder::from_bytes("", message.to_vec()).seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
    for key in &keys {
        let subkey = key
            .public_subkeys
            .iter()
            .find(|k| k.algorithm().can_encrypt())
            .ok_or_else(|| VaultError::OpenPgp("a key has no encryption subkey".into()))?;
        builder.encrypt_to_key(&mut rng, subkey).map_err(pgp_err)?;
    }
    builder.to_armored_string(&mut rng, ArmorOptions::default()).map_err(pgp_err)
}

/// The PGP/MIME message that carries `message` sealed to the key.
pub fn seal(public_key_armored: &str, message: &[u8], outer: &Outer<'_>) -> Result<Vec<u8>, VaultError> {
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
    use pgp::composed::{Message, SignedSecretKey};

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
        let armored = &text[text.find("-----BEGIN PGP MESSAGE-----").unwrap()..text.find("-----END PGP MESSAGE-----").unwrap() + 25];
        let (secret, _) = SignedSecretKey::from_string(&key.secret_armored).unwrap();
        let (message, _) = Message::from_armor(armored.as_bytes()).unwrap();
        let mut decrypted = message.decrypt(&"bob's passphrase".into(), &secret).unwrap();
        assert_eq!(decrypted.as_data_vec().unwrap(), original);
    }
}
