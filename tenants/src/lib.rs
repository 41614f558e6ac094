//! The domain core of Caliop: tenants, resellers, domains, accounts, API keys,
//! the audit log, and the rules that bind them (hosting packages, who may see
//! what). Handlers in `api` parse and authorize, then call into this crate.
//!
//! Error policy: every fallible function returns [`Error`]. Its variants say
//! what the caller did wrong (`Invalid`, `NotFound`, `Conflict`,
//! `LimitExceeded`, `Forbidden`) with a sentence fit to show a user, or that
//! the server failed (`Database`, `Internal`), whose details are logged by
//! the API and never shown.

pub mod access;
pub mod dns_records;
pub mod login;
pub mod model;
pub mod password;
pub mod privacy;
pub mod store;

pub use access::{Actor, Role, Subject};
pub use model::*;
pub use store::{
    AccessChange, Account, AccountUpdate, ActivationKey, ApiKey, AppPassword, AuditEntry, Backend,
    Correspondent, DeadJob, Domain, Ended, HELD_FOR, KeyRefusal, KeyStanding, Mailbox, MessageMeta,
    NewAccount, NewApiKey, NewDomain, NewMessage, NewPasskey, NewTenant, OpaqueRegistration, Page,
    Passkey, PasskeyCredential, QueueDepth, RecipientAccount, Standing, Store, Tenant,
    TenantFilter, TenantUpdate, inactive_tenant, may_send_as,
};

/// What can go wrong in the domain core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that does not describe a valid object.
    #[error("{0}")]
    Invalid(String),
    /// The object does not exist, or the caller may not know it exists.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request clashes with the current state (a taken name, a non-empty domain).
    #[error("{0}")]
    Conflict(String),
    /// The tenant's hosting package does not allow it.
    #[error("{0}")]
    LimitExceeded(String),
    /// A sending rate (messages per hour, recipients per day) is used up.
    #[error("{0}")]
    RateLimited(String),
    /// The caller is known but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// The configuration or the database URL is unusable.
    #[error("{0}")]
    Config(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
