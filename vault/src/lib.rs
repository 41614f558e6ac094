//! Confidentiality: the keys Caliop holds and the ones it holds for users.
//! Today: OpenPGP account keys (generated here, stored locked with the
//! user's password), DKIM signing keys for hosted domains, and the instance
//! key that signs tokens. Sealing and k-of-n dispersal come with later issues.
//!
//! Error policy: every failure is a [`VaultError`]; a wrong passphrase is its
//! own variant so callers can tell a user error from a broken key.

pub mod dkim;
pub mod instance;
pub mod openpgp;
pub mod seal;
pub mod at_rest;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the passphrase does not unlock this key")]
    WrongPassphrase,
    #[error("OpenPGP: {0}")]
    OpenPgp(String),
    #[error("key encoding: {0}")]
    Encoding(String),
    #[error("key file {path}: {source}")]
    Io { path: String, source: std::io::Error },
}
