//! Confidentiality: the keys Caliop holds and the ones it holds for users.
//! OpenPGP account keys (generated here, stored locked with the user's
//! password), DKIM signing keys for hosted domains, the instance key that
//! signs tokens; sealing to OpenPGP keys ([`seal`]); encryption at rest
//! ([`at_rest`]); encrypted, resumable tenant archives ([`archive`]); and
//! k-of-n dispersal of objects over storage sites in several jurisdictions
//! ([`dispersal`] for the format, [`sites`] for where the shards go).
//! CPU-heavy work of every crate (sealing, signing, Argon2id, erasure
//! coding) runs on one bounded pool, [`cpu`].
//!
//! Error policy: every failure is a [`VaultError`]; a wrong passphrase is its
//! own variant so callers can tell a user error from a broken key.

pub mod archive;
pub mod at_rest;
pub mod cpu;
pub mod dispersal;
pub mod dkim;
pub mod group_sync;
pub mod instance;
pub mod opaque;
pub mod openpgp;
pub mod seal;
pub mod sites;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the passphrase does not unlock this key")]
    WrongPassphrase,
    /// The message is not encrypted to the key given.
    #[error("the message is not encrypted to this key")]
    NotARecipient,
    #[error("OpenPGP: {0}")]
    OpenPgp(String),
    #[error("key encoding: {0}")]
    Encoding(String),
    /// A sign-in message or stored record that does not parse or verify.
    #[error("OPAQUE: {0}")]
    Opaque(String),
    #[error("dispersal: {0}")]
    Dispersal(String),
    #[error("storage site: {0}")]
    Site(String),
    /// The policy cannot be met with the configured sites: refused, never downgraded.
    #[error("placement refused: {0}")]
    Placement(String),
    /// Too few sites answered.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}
