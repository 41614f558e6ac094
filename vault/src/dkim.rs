//! DKIM signing keys for hosted domains: RSA-2048, the size every verifier
//! accepts, and Ed25519 (RFC 8463), small and fast, for verifiers that know
//! it. Domains sign with both. The public half is published as `p=` in the
//! selector's TXT record; the private half is PKCS#8 PEM, sealed at rest by
//! the caller.

use base64::Engine;
use rsa::RsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use secrecy::SecretString;

use crate::VaultError;

pub struct DkimKey {
    /// Base64 of the DER SubjectPublicKeyInfo, as DNS wants it.
    pub public_key_b64: String,
    /// PKCS#8 PEM.
    pub private_key_pem: SecretString,
}

impl DkimKey {
    /// An RSA-2048 key.
    pub fn generate() -> Result<DkimKey, VaultError> {
        let key = RsaPrivateKey::new(&mut rand08::thread_rng(), 2048)
            .map_err(|e| VaultError::Encoding(e.to_string()))?;
        let public = key
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| VaultError::Encoding(e.to_string()))?;
        let private = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| VaultError::Encoding(e.to_string()))?;
        Ok(DkimKey {
            public_key_b64: base64::engine::general_purpose::STANDARD.encode(public.as_bytes()),
            private_key_pem: SecretString::from(private.to_string()),
        })
    }

    /// An Ed25519 key; `p=` is the raw 32-byte public key (RFC 8463 §4.2).
    pub fn generate_ed25519() -> Result<DkimKey, VaultError> {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let key = ed25519_dalek::SigningKey::generate(&mut rand08::rngs::OsRng);
        let private = key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| VaultError::Encoding(e.to_string()))?;
        Ok(DkimKey {
            public_key_b64: base64::engine::general_purpose::STANDARD
                .encode(key.verifying_key().as_bytes()),
            private_key_pem: SecretString::from(private.to_string()),
        })
    }
}

/// The seed and public key of an Ed25519 DKIM key kept as PKCS#8 PEM.
pub fn ed25519_parts(pem: &str) -> Result<(secrecy::SecretBox<[u8; 32]>, [u8; 32]), VaultError> {
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
        .map_err(|e| VaultError::Encoding(e.to_string()))?;
    Ok((
        secrecy::SecretBox::new(Box::new(key.to_bytes())),
        key.verifying_key().to_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::DecodePublicKey;
    use secrecy::ExposeSecret;

    #[test]
    fn public_key_decodes_as_rsa_2048() {
        let key = DkimKey::generate().unwrap();
        let der = base64::engine::general_purpose::STANDARD
            .decode(&key.public_key_b64)
            .unwrap();
        let public = rsa::RsaPublicKey::from_public_key_der(&der).unwrap();
        assert_eq!(rsa::traits::PublicKeyParts::size(&public), 256);
        assert!(
            key.private_key_pem
                .expose_secret()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
    }

    #[test]
    fn ed25519_keys_round_trip_through_pem() {
        let key = DkimKey::generate_ed25519().unwrap();
        let public = base64::engine::general_purpose::STANDARD
            .decode(&key.public_key_b64)
            .unwrap();
        assert_eq!(public.len(), 32);
        let (seed, from_pem) = ed25519_parts(key.private_key_pem.expose_secret()).unwrap();
        assert_eq!(from_pem.as_slice(), public.as_slice());
        let again = ed25519_dalek::SigningKey::from_bytes(seed.expose_secret());
        assert_eq!(again.verifying_key().to_bytes(), from_pem);
        assert!(
            ed25519_parts("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .is_err()
        );
    }
}
