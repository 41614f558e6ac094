//! What leaves an instance whole: a tenant moving to another Caliop
//! instance ([`tenant`]), and what a court obtains of it ([`legal`]).
//!
//! Both read the store and the storage sites through the instance's own
//! [`mail::inbound::Inbound`] (which holds the master key and the tenant
//! data keys) and neither ever decrypts a message at `sealed` or above: those
//! travel as the OpenPGP ciphertext they are stored as.

pub mod legal;
pub mod tenant;

pub use mail::dispersed::{Progress, Quiet};

/// What can go wrong moving data out or in. Every message is a sentence for
/// the operator who ran the command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Archive(#[from] vault::archive::ArchiveError),
    #[error("{0}")]
    Store(#[from] tenants::Error),
    #[error("{0}")]
    Vault(#[from] vault::VaultError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The request cannot be carried out as asked.
    #[error("{0}")]
    Refused(String),
    /// The archive is readable but does not describe a tenant this instance can take.
    #[error("the archive cannot be imported: {0}")]
    Unusable(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

fn reply(r: mail::reply::Reply) -> Error {
    Error::Refused(format!(
        "the store could not open a message: {} {}",
        r.code, r.text
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Creates `path` for writing, readable by its owner only; never replaces a file.
fn create_private(path: &std::path::Path) -> Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(io(path))
}
