//! The instance key: an Ed25519 key that signs what the instance vouches
//! for (API tokens now; exports and the warrant canary later). It lives in
//! the data directory, readable by the owner only, created on first start.

use std::path::Path;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use secrecy::{ExposeSecret, SecretSlice};

use crate::VaultError;

pub struct InstanceKey {
    pkcs8_der: SecretSlice<u8>,
    public: [u8; 32],
}

impl std::fmt::Debug for InstanceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl InstanceKey {
    pub const FILE_NAME: &'static str = "instance-key.pem";

    /// A new random key (not saved anywhere).
    pub fn generate() -> InstanceKey {
        Self::from_signing_key(&SigningKey::generate(&mut rand08::rngs::OsRng))
    }

    fn from_signing_key(key: &SigningKey) -> InstanceKey {
        let der = key
            .to_pkcs8_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        InstanceKey {
            pkcs8_der: der.into(),
            public: key.verifying_key().to_bytes(),
        }
    }

    /// Loads `dir/instance-key.pem`, creating it (mode 0600) if it does not exist.
    pub fn load_or_create(dir: &Path) -> Result<InstanceKey, VaultError> {
        let path = dir.join(Self::FILE_NAME);
        let io = |source| VaultError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(pem) => {
                let key = SigningKey::from_pkcs8_pem(&pem)
                    .map_err(|e| VaultError::Encoding(format!("{}: {e}", path.display())))?;
                Ok(Self::from_signing_key(&key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io)?;
                let key = SigningKey::generate(&mut rand08::rngs::OsRng);
                let pem = key
                    .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
                    .map_err(|e| VaultError::Encoding(e.to_string()))?;
                write_private(&path, pem.as_bytes()).map_err(io)?;
                Ok(Self::from_signing_key(&key))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Loads `dir/instance-key.pem`, which must exist (a signature by a fresh
    /// key nobody knows would be worthless).
    pub fn load(dir: &Path) -> Result<InstanceKey, VaultError> {
        let path = dir.join(Self::FILE_NAME);
        if !path.exists() {
            return Err(VaultError::Encoding(format!(
                "{} does not exist: this is not the data directory of an instance that has run (set CALIOP_DATA_DIR)",
                path.display()
            )));
        }
        Self::load_or_create(dir)
    }

    /// PKCS#8 DER of the private key, for signers that take it.
    pub fn pkcs8_der(&self) -> &[u8] {
        self.pkcs8_der.expose_secret()
    }

    /// The raw 32-byte Ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    /// An Ed25519 signature of `message` (exports, the warrant canary).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        let key = SigningKey::from_pkcs8_der(self.pkcs8_der())
            .expect("the instance key was valid PKCS#8 when loaded");
        key.sign(message).to_bytes()
    }
}

/// Whether `signature` is the Ed25519 signature of `message` by `public_key`.
pub fn verify(public_key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(public_key) else {
        return false;
    };
    let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
        return false;
    };
    key.verify_strict(message, &signature).is_ok()
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("caliop-instance-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = InstanceKey::load_or_create(&dir).unwrap();
        let b = InstanceKey::load_or_create(&dir).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        assert_ne!(a.public_key(), InstanceKey::generate().public_key());
        let signature = b.sign(b"statement");
        assert!(verify(a.public_key(), b"statement", &signature));
        assert!(!verify(a.public_key(), b"statement!", &signature));
        assert!(!verify(
            InstanceKey::generate().public_key(),
            b"statement",
            &signature
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(InstanceKey::FILE_NAME))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o077,
                0,
                "instance key must not be readable by others"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
