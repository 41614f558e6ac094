//! Encryption at rest for `standard` messages: AES-256-GCM (aws-lc) under a
//! per-tenant data key; each data key is itself wrapped by the instance
//! master key, kept in the data directory (mode 0600).
//!
//! Sealed object format: `CAL1` ‖ 12-byte random nonce ‖ ciphertext ‖ tag.
//! The associated data binds the object to its purpose and id, so a
//! ciphertext moved to another row does not open.

use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use crate::VaultError;

const MAGIC: &[u8; 4] = b"CAL1";
/// How a sealed secret is marked in a text column.
const SEALED_SECRET_PREFIX: &str = "caliop-sealed:v1:";

/// A 256-bit AES-GCM key.
pub struct DataKey(LessSafeKey);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey([REDACTED])")
    }
}

fn random<const N: usize>() -> Result<[u8; N], VaultError> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| VaultError::Encoding("no randomness".into()))?;
    Ok(bytes)
}

impl DataKey {
    fn from_bytes(bytes: &[u8]) -> Result<DataKey, VaultError> {
        let key = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| VaultError::Encoding("bad AES-256 key".into()))?;
        Ok(DataKey(LessSafeKey::new(key)))
    }

    /// Encrypts `plaintext`, bound to `context` (e.g. a purpose and an object id).
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        let nonce: [u8; NONCE_LEN] = random()?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + plaintext.len() + 16);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut body,
            )
            .map_err(|_| VaultError::Encoding("encryption failed".into()))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
        let rest = sealed
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| VaultError::Encoding("not a Caliop object".into()))?;
        if rest.len() < NONCE_LEN + 16 {
            return Err(VaultError::Encoding("truncated object".into()));
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| VaultError::Encoding("bad nonce".into()))?;
        let mut body = body.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(context), &mut body)
            .map_err(|_| VaultError::Encoding("the object does not authenticate".into()))?;
        Ok(plain.to_vec())
    }
}

/// The instance master key: wraps tenant data keys.
pub struct MasterKey(DataKey);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

impl MasterKey {
    pub const FILE_NAME: &'static str = "master.key";

    /// Loads `dir/master.key`, creating it (32 random bytes, mode 0600) if missing.
    pub fn load_or_create(dir: &Path) -> Result<MasterKey, VaultError> {
        let path = dir.join(Self::FILE_NAME);
        let io = |source| VaultError::Io {
            path: path.display().to_string(),
            source,
        };
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io)?;
                let bytes: [u8; 32] = random()?;
                crate::instance::write_private(&path, &bytes).map_err(io)?;
                bytes.to_vec()
            }
            Err(e) => return Err(io(e)),
        };
        Ok(MasterKey(DataKey::from_bytes(&bytes)?))
    }

    /// Loads `dir/master.key`, which must exist: for commands that work on an
    /// instance's data and would otherwise seal it under a key nobody has.
    pub fn load(dir: &Path) -> Result<MasterKey, VaultError> {
        let path = dir.join(Self::FILE_NAME);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(MasterKey(DataKey::from_bytes(&bytes)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(VaultError::Encoding(format!(
                    "{} does not exist: this is not the data directory of an instance that has run (set CALIOP_DATA_DIR)",
                    path.display()
                )))
            }
            Err(source) => Err(VaultError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// A master key that lives only in memory (tests).
    pub fn ephemeral() -> Result<MasterKey, VaultError> {
        Ok(MasterKey(DataKey::from_bytes(&random::<32>()?)?))
    }

    /// A fresh data key for `owner`, and its wrapped form to store.
    pub fn new_data_key(&self, owner: &[u8]) -> Result<(DataKey, Vec<u8>), VaultError> {
        let bytes: [u8; 32] = random()?;
        let wrapped = self
            .0
            .seal(&[b"tenant-data-key:".as_slice(), owner].concat(), &bytes)?;
        Ok((DataKey::from_bytes(&bytes)?, wrapped))
    }

    /// Encrypts a small secret (a DKIM private key) for storage, bound to
    /// `context`; the result is text, for a text column.
    pub fn seal_secret(&self, context: &str, secret: &[u8]) -> Result<String, VaultError> {
        use base64::Engine;
        let sealed = self.0.seal(context.as_bytes(), secret)?;
        Ok(format!(
            "{SEALED_SECRET_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(sealed)
        ))
    }

    pub fn open_secret(&self, context: &str, stored: &str) -> Result<Vec<u8>, VaultError> {
        use base64::Engine;
        let encoded = stored
            .strip_prefix(SEALED_SECRET_PREFIX)
            .ok_or_else(|| VaultError::Encoding("not a sealed secret".into()))?;
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| VaultError::Encoding(e.to_string()))?;
        self.0.open(context.as_bytes(), &sealed)
    }

    /// The raw bytes of a wrapped data key, to carry it to another instance
    /// inside an encrypted archive (tenant export).
    pub fn unwrap_data_key_bytes(
        &self,
        owner: &[u8],
        wrapped: &[u8],
    ) -> Result<secrecy::SecretSlice<u8>, VaultError> {
        Ok(self
            .0
            .open(&[b"tenant-data-key:".as_slice(), owner].concat(), wrapped)?
            .into())
    }

    /// Wraps raw data key bytes that came from another instance (tenant import).
    pub fn wrap_data_key_bytes(&self, owner: &[u8], raw: &[u8]) -> Result<Vec<u8>, VaultError> {
        DataKey::from_bytes(raw)?;
        self.0
            .seal(&[b"tenant-data-key:".as_slice(), owner].concat(), raw)
    }

    pub fn unwrap_data_key(&self, owner: &[u8], wrapped: &[u8]) -> Result<DataKey, VaultError> {
        let bytes = self
            .0
            .open(&[b"tenant-data-key:".as_slice(), owner].concat(), wrapped)?;
        DataKey::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_open_only_in_their_context() {
        let master = MasterKey::ephemeral().unwrap();
        let (key, wrapped) = master.new_data_key(b"tenant-1").unwrap();
        let sealed = key.seal(b"message:1", b"hello").unwrap();
        assert!(!sealed.windows(5).any(|w| w == b"hello"));
        assert_eq!(key.open(b"message:1", &sealed).unwrap(), b"hello");
        assert!(key.open(b"message:2", &sealed).is_err(), "bound to its id");
        let again = master.unwrap_data_key(b"tenant-1", &wrapped).unwrap();
        assert_eq!(again.open(b"message:1", &sealed).unwrap(), b"hello");
        assert!(
            master.unwrap_data_key(b"tenant-2", &wrapped).is_err(),
            "bound to its tenant"
        );

        // Carried to another instance: the same key under another master.
        use secrecy::ExposeSecret;
        let other = MasterKey::ephemeral().unwrap();
        let raw = master.unwrap_data_key_bytes(b"tenant-1", &wrapped).unwrap();
        let rewrapped = other
            .wrap_data_key_bytes(b"tenant-1", raw.expose_secret())
            .unwrap();
        assert!(master.unwrap_data_key(b"tenant-1", &rewrapped).is_err());
        let moved = other.unwrap_data_key(b"tenant-1", &rewrapped).unwrap();
        let sealed = key.seal(b"ctx", b"mail").unwrap();
        assert_eq!(moved.open(b"ctx", &sealed).unwrap(), b"mail");
        let stored = master
            .seal_secret("dkim:acme.test", b"-----BEGIN PRIVATE KEY-----")
            .unwrap();
        assert!(stored.starts_with("caliop-sealed:v1:") && !stored.contains("PRIVATE KEY"));
        assert_eq!(
            master.open_secret("dkim:acme.test", &stored).unwrap(),
            b"-----BEGIN PRIVATE KEY-----"
        );
        assert!(master.open_secret("dkim:other.test", &stored).is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(key.open(b"message:1", &tampered).is_err());
    }
}
