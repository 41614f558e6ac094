//! Web Key Directory (draft-koch-openpgp-webkey-service): where a mail
//! client looks for a hosted address's OpenPGP key. The local part is
//! lower-cased, hashed with SHA-1 and written in z-base-32.

use sha1::{Digest, Sha1};
use tenants::{AccountStatus, EmailAddress, Store};

use crate::https::Https;

const ZBASE32: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";

/// z-base-32 of `bytes` (20 bytes of SHA-1 give 32 characters).
fn zbase32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ZBASE32[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ZBASE32[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The `hu` name of a local part.
pub fn hash(local_part: &str) -> String {
    zbase32(&Sha1::digest(local_part.to_lowercase().as_bytes()))
}

/// Where a recipient's key was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// An account hosted here.
    Hosted,
    /// The recipient domain's Web Key Directory.
    Directory,
}

/// A recipient's OpenPGP key, ASCII-armored, and where it was found.
#[derive(Debug, Clone)]
pub struct FoundKey {
    pub armored: String,
    pub source: KeySource,
}

/// A recipient's OpenPGP key: ours when we host them (an active account),
/// else what their domain's Web Key Directory serves (advanced layout
/// first, then direct), when an HTTPS client is at hand.
pub async fn recipient_key(
    store: &Store,
    https: Option<&Https>,
    recipient: &str,
) -> Option<String> {
    find_key(store, https, recipient).await.map(|k| k.armored)
}

/// [`recipient_key`], saying where the key came from.
pub async fn find_key(store: &Store, https: Option<&Https>, recipient: &str) -> Option<FoundKey> {
    let address = EmailAddress::parse(recipient).ok()?;
    match store.hosted_account(&address).await {
        Ok(Some(account)) if account.status == AccountStatus::Active => {
            return Some(FoundKey {
                armored: account.public_key,
                source: KeySource::Hosted,
            });
        }
        Ok(Some(_)) => return None,
        _ => {}
    }
    let https = https?;
    let (local, domain) = (address.local(), address.domain());
    let hash = hash(local);
    let local_query: String = local
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let places = [
        (
            format!("openpgpkey.{domain}"),
            format!("/.well-known/openpgpkey/{domain}/hu/{hash}?l={local_query}"),
        ),
        (
            domain.to_string(),
            format!("/.well-known/openpgpkey/hu/{hash}?l={local_query}"),
        ),
    ];
    for (host, path) in places {
        match https.get(&host, &path, 256 * 1024).await {
            Ok(Some(binary)) => {
                match vault::openpgp::AccountKey::armored_for_address(&binary, address.as_str()) {
                    Ok(armored) => {
                        return Some(FoundKey {
                            armored,
                            source: KeySource::Directory,
                        });
                    }
                    Err(e) => tracing::info!(error = %e, %host, "a WKD key was refused"),
                }
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, %host, "no WKD answer"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_draft_example() {
        // draft-koch-openpgp-webkey-service, section 3.1.
        assert_eq!(hash("Joe.Doe"), "iy9q119eutrkn8s1mk4r39qejnbu3n5q");
    }
}
