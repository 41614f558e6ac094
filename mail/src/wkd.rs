//! Web Key Directory (draft-koch-openpgp-webkey-service): where a mail
//! client looks for a hosted address's OpenPGP key. The local part is
//! lower-cased, hashed with SHA-1 and written in z-base-32.

use sha1::{Digest, Sha1};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_draft_example() {
        // draft-koch-openpgp-webkey-service, section 3.1.
        assert_eq!(hash("Joe.Doe"), "iy9q119eutrkn8s1mk4r39qejnbu3n5q");
    }
}
