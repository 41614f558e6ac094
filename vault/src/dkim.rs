//! DKIM signing keys for hosted domains: RSA-2048, the size every verifier
//! accepts. The public half is published as `p=` in the selector's TXT record.

use base64::Engine;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::RsaPrivateKey;
use secrecy::SecretString;

use crate::VaultError;

pub struct DkimKey {
    /// Base64 of the DER SubjectPublicKeyInfo, as DNS wants it.
    pub public_key_b64: String,
    /// PKCS#8 PEM.
    pub private_key_pem: SecretString,
}

impl DkimKey {
    pub fn generate() -> Result<DkimKey, VaultError> {
        let key = RsaPrivateKey::new(&mut rand08::thread_rng(), 2048)
            .map_err(|e| VaultError::Encoding(e.to_string()))?;
        let public = key
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| VaultError::Encoding(e.to_string()))?;
        let private = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| VaultError::Encoding(e.to_string()))?;
        Ok(DkimKey {
            public_key_b64: base64::engine::general_purpose::STANDARD.encode(public.as_bytes()),
            private_key_pem: SecretString::from(private.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::DecodePublicKey;
    use secrecy::ExposeSecret;

    #[test]
    fn public_key_decodes_as_rsa_2048() {
        let key = DkimKey::generate().unwrap();
        let der = base64::engine::general_purpose::STANDARD.decode(&key.public_key_b64).unwrap();
        let public = rsa::RsaPublicKey::from_public_key_der(&der).unwrap();
        assert_eq!(rsa::traits::PublicKeyParts::size(&public), 256);
        assert!(key.private_key_pem.expose_secret().starts_with("-----BEGIN PRIVATE KEY-----"));
    }
}
